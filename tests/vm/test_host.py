"""On the host: the adapter's behaviour without IPVS, and the VM runner itself.

The build machines' kernel has no IPVS: opening the adapter there must raise
IpvsUnavailable with a message an operator can act on, not crash. The runner tests boot one
small VM to check what the VM suite relies on (exit status, cwd, environment, writable
shares, a read-only host) and the runner's failure statuses.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import trio

from hadirector.errors import IpvsUnavailable, KernelError
from hadirector.ipvs.kernel import IpvsKernel, ensure_scheduler
from tests.unprivileged import unprivileged_argv

from . import vmplugin

RUNNER = vmplugin.RUNNER


def host_has_ipvs() -> bool:
    if Path("/proc/net/ip_vs").exists():
        return True
    probe = subprocess.run(["modprobe", "-n", "ip_vs"], capture_output=True)
    return probe.returncode == 0


needs_host_without_ipvs = pytest.mark.skipif(
    vmplugin.IN_VM or host_has_ipvs(), reason="this kernel has IPVS; the test is for one without"
)


@needs_host_without_ipvs
def test_open_without_ipvs_raises_a_clear_ipvs_unavailable() -> None:
    async def main() -> None:
        await IpvsKernel().open()

    with pytest.raises(IpvsUnavailable) as info:
        trio.run(main)
    message = str(info.value)
    assert "IPVS is not available in this kernel" in message
    assert os.uname().release in message
    assert "CONFIG_IP_VS" in message
    assert "modprobe ip_vs" in message


@needs_host_without_ipvs
def test_missing_scheduler_is_a_kernel_error_naming_the_module() -> None:
    with pytest.raises(KernelError, match="modprobe ip_vs_wlc"):
        trio.run(ensure_scheduler, "wlc")
    with pytest.raises(KernelError, match="invalid IPVS scheduler name"):
        trio.run(ensure_scheduler, "../x")


UNPRIVILEGED_PROGRAM = """
import trio
from hadirector.errors import IpvsUnavailable
from hadirector.ipvs.kernel import IpvsKernel, ensure_scheduler
from tests.unprivileged import unprivileged_argv

async def main():
    print("scheduler:", await ensure_scheduler("wlc"))
    try:
        await IpvsKernel().open()
    except IpvsUnavailable as exc:
        print("open:", exc)

trio.run(main)
"""


@needs_host_without_ipvs
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"
)
def test_without_cap_sys_module_missing_modules_are_named_not_loaded() -> None:
    """As the shipped unit runs it (nobody with CAP_NET_ADMIN and CAP_NET_RAW only,
    tests/unprivileged.py), the adapter runs no modprobe: it names the unit line."""
    done = subprocess.run(
        unprivileged_argv([sys.executable, "-c", UNPRIVILEGED_PROGRAM]),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
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


def test_requests_before_open_and_unknown_namespaces_are_kernel_errors() -> None:
    async def unopened() -> None:
        await IpvsKernel().services()

    async def bad_namespace() -> None:
        await IpvsKernel(netns=f"no-such-ns-{uuid.uuid4().hex[:6]}").open()

    with pytest.raises(KernelError, match="not open"):
        trio.run(unopened)
    with pytest.raises(KernelError, match="cannot open IPVS netlink socket in netns"):
        trio.run(bad_namespace)


def test_open_out_of_descriptors_is_a_kernel_error_not_ipvs_unavailable() -> None:
    async def main() -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        highest_fd = max(int(name) for name in os.listdir("/proc/self/fd"))
        fillers: list[int] = []
        resource.setrlimit(resource.RLIMIT_NOFILE, (highest_fd + 32, hard))
        try:
            with contextlib.suppress(OSError):
                while True:
                    fillers.append(os.open(os.devnull, os.O_RDONLY))
            await IpvsKernel().open()
        finally:
            for fd in fillers:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    with pytest.raises(KernelError, match="cannot open IPVS netlink socket") as info:
        trio.run(main)
    assert not isinstance(info.value, IpvsUnavailable)


def require_vm_tools() -> None:
    if os.environ.get("HADIRECTOR_SKIP_VM") == "1":
        pytest.skip("HADIRECTOR_SKIP_VM=1: VM tests skipped explicitly")
    if vmplugin.IN_VM:
        pytest.skip("runs on the host only")
    if shutil.which("qemu-system-x86_64") is None:
        pytest.fail(
            "qemu-system-x86_64 missing: apt-get install -y qemu-system-x86 linux-image-amd64 "
            "busybox-static (or HADIRECTOR_SKIP_VM=1 to skip VM tests explicitly)"
        )


@pytest.mark.parametrize("systemd", [False, True], ids=["sh", "systemd"])
def test_runner_passes_status_cwd_env_and_shares(tmp_path: Path, systemd: bool) -> None:
    require_vm_tools()
    shared = tmp_path / "shared"
    shared.mkdir()
    probe = Path.cwd() / ".vmcache" / f"guest-write-{uuid.uuid4().hex[:6]}"
    script = (
        "echo cwd=$(pwd); echo in_vm=$HADIRECTOR_IN_VM extra=$EXTRA; "
        "echo pid1=$(cat /proc/1/comm) systemd=${HADIRECTOR_VM_SYSTEMD:-0}; "
        f"echo from-guest > {shared}/out; touch {probe}; "
        "test -e /proc/net/ip_vs && echo ipvs=yes; exit 7"
    )
    result = subprocess.run(
        [
            *(sys.executable, str(RUNNER), "--timeout", "300", "--rw", str(shared)),
            *("--env", "EXTRA=a b", "--modprobe", "ip_vs"),
            *(["--systemd"] if systemd else []),
            *("--", "sh", "-c", script),
        ],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 7, result.stderr
    lines = result.stdout.splitlines()
    assert f"cwd={Path.cwd()}" in lines
    assert "in_vm=1 extra=a b" in lines
    assert "ipvs=yes" in lines
    assert ("pid1=systemd systemd=1" if systemd else "pid1=sh systemd=0") in lines, lines
    assert (shared / "out").read_text() == "from-guest\n"
    assert not probe.exists(), "guest writes outside --rw shares must vanish"


def test_runner_reports_its_own_failures() -> None:
    require_vm_tools()
    no_kernel = subprocess.run(
        [sys.executable, str(RUNNER), "--kernel", "0.0-none", "--", "true"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert no_kernel.returncode == 125
    assert "VM failed: kernel 0.0-none not found" in no_kernel.stderr
    too_slow = subprocess.run(
        [sys.executable, str(RUNNER), "--timeout", "2", "--", "true"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert too_slow.returncode == 124
    assert "timed out after 2 s" in too_slow.stderr


def test_runner_takes_qemu_down_when_terminated() -> None:
    require_vm_tools()
    runner = subprocess.Popen(
        [sys.executable, str(RUNNER), "--", "sleep", "600"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not (qemu := qemu_children(runner.pid)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert qemu, "qemu did not start"
        runner.terminate()
        assert runner.wait(timeout=30) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 10
        while Path(f"/proc/{qemu[0]}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not Path(f"/proc/{qemu[0]}").exists(), "qemu outlived its runner"
    finally:
        runner.kill()
        runner.wait()


def qemu_children(parent_pid: int) -> list[int]:
    """Pids of qemu processes whose parent is ``parent_pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        if name.startswith("qemu-system") and ppid == parent_pid:
            found.append(int(stat.parent.name))
    return found
