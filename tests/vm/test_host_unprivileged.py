"""On the host (no IPVS in its kernel): an agent without CAP_SYS_MODULE runs no modprobe
and names the unit line that would load the module.

The adapter runs in a child process as ``nobody`` with only CAP_NET_ADMIN and CAP_NET_RAW
(tests/unprivileged.py), as the shipped unit runs the agent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unprivileged import unprivileged_argv

from . import vmplugin
from .test_host import host_has_ipvs

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    vmplugin.IN_VM or os.geteuid() != 0 or shutil.which("setpriv") is None or host_has_ipvs(),
    reason="for a root host without IPVS, with setpriv",
)

PROGRAM = """
import trio
from hadirector.errors import IpvsUnavailable
from hadirector.ipvs.kernel import IpvsKernel, ensure_scheduler

async def main():
    print("scheduler:", await ensure_scheduler("wlc"))
    try:
        await IpvsKernel().open()
    except IpvsUnavailable as exc:
        print("open:", exc)

trio.run(main)
"""


def test_without_cap_sys_module_the_missing_modules_are_named_not_loaded() -> None:
    done = subprocess.run(
        unprivileged_argv([sys.executable, "-c", PROGRAM]),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    release = os.uname().release
    assert done.stdout.splitlines() == [
        "scheduler: IPVS scheduler module ip_vs_wlc is not loaded and this agent may not "
        "load modules (no CAP_SYS_MODULE); load it before start, in the unit: "
        "ExecStartPre=+/sbin/modprobe ip_vs_wlc",
        f"open: IPVS is not loaded in this kernel ({release}) and this agent may not load "
        "modules (no CAP_SYS_MODULE): load it before the agent starts, in the unit: "
        "ExecStartPre=+/sbin/modprobe ip_vs",
    ]
