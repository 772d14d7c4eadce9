"""Session-wide test setup: the one-boot VM plugin for every ``@pytest.mark.vm`` test.

Registering it here (and again from tests/vm/conftest.py, which is harmless) makes vm tests
anywhere in the tree run inside the IPVS VM rather than on the host.
"""

from __future__ import annotations

import pytest

from tests.vm import vmplugin


def pytest_configure(config: pytest.Config) -> None:
    vmplugin.register(config)
