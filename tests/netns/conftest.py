"""Fixtures for real-namespace tests: ``netlab`` (one LAN), ``netlab2`` (two LANs), and
``keepalived_bin`` (skips unless keepalived is installed).

Each lab is torn down after its test whatever the outcome; when a test fails, the tail of
every log the lab collected (agents' output, prober errors) is printed in the teardown
section of the report. Set HDL_KEEP_TMP=1 to keep the lab's temp directory.

This module only provides fixtures and the report hook they need; it must not change how
other tests in this directory run.
"""

from __future__ import annotations

import shutil
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from .lab import Lab, netns_unavailable

_LOG_TAIL_CHARS = 4000


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"lab_report_{report.when}", report)


def _lab(request: pytest.FixtureRequest, lans: int) -> Iterator[Lab]:
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)
    with Lab(lans=lans) as lab:
        yield lab
        report = getattr(request.node, "lab_report_call", None)
        if report is not None and report.failed:
            for path in sorted(lab.tmpdir.rglob("*")):
                if path.suffix in (".log", ".err") and path.stat().st_size:
                    text = path.read_text(errors="replace")[-_LOG_TAIL_CHARS:]
                    print(f"----- {path.relative_to(lab.tmpdir)} (tail)\n{text}")


@pytest.fixture
def netns_required() -> None:
    """Skips the test unless this process can build namespaces (root, iproute2)."""
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def netlab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A one-LAN lab: dir-a, dir-b and client on 192.0.2.0/24 and 2001:db8:1::/64."""
    yield from _lab(request, 1)


@pytest.fixture
def netlab2(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A two-LAN lab (adds eth1 on 198.51.100.0/24 and 2001:db8:2::/64)."""
    yield from _lab(request, 2)


@pytest.fixture
def keepalived_bin() -> str:
    """The keepalived binary's path; skips the test when it is not installed."""
    path = shutil.which("keepalived")
    if path is None:
        pytest.skip("needs keepalived")
    return path
