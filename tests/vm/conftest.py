"""Fixtures for the IPVS VM tests, and registration of the one-boot VM plugin.

On the host, ``vmplugin`` turns every ``@pytest.mark.vm`` test into a stand-in that reports
the outcome of the same test run inside the VM (one boot for all of them). Inside the VM
(HADIRECTOR_IN_VM=1) the fixtures below give each test its own network namespace, so
IPVS state (per namespace) never leaks between tests.

Tests here that are not marked vm run on the host as usual. This module must not change
how tests outside this directory run.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from . import vmplugin
from .lvslab import Lab

#: Every scheduler module of the Debian 6.1 kernel (twos arrived in 6.2).
SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf")


def pytest_configure(config: pytest.Config) -> None:
    vmplugin.register(config)


@pytest.fixture(scope="session")
def ipvs_modules() -> None:
    """Load ip_vs and every scheduler once (inside the VM only)."""
    if not vmplugin.IN_VM:
        pytest.fail("this fixture is only for tests marked vm (run inside the VM)")
    modules = ["ip_vs"] + [f"ip_vs_{name}" for name in SCHEDULERS]
    subprocess.run(["modprobe", "-a", *modules], check=True)


@pytest.fixture
def netns(ipvs_modules: None) -> Iterator[str]:
    """A fresh network namespace (lo up) with its own empty IPVS table; deleted afterwards."""
    with Lab() as lab:
        yield lab.netns("t")
