"""What the IPVS benchmarks (bench/ipvs.py, detection.py, failback.py) share: whether this
kernel has IPVS, and if not, the same script run again in the test VM
(tools/vm/run-in-vm, whose kernel has it)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

RUNNER = Path(__file__).resolve().parents[1] / "tools" / "vm" / "run-in-vm"


def has_ipvs() -> bool:
    """IPVS is in this kernel (``ip_vs`` loaded now if it was not)."""
    if Path("/proc/net/ip_vs").exists():
        return True
    subprocess.run(["modprobe", "-q", "ip_vs"], check=False, capture_output=True)
    return Path("/proc/net/ip_vs").exists()


def run_in_vm(
    script: str,
    argv: Sequence[str],
    *,
    timeout_s: int,
    memory_mib: int | None = None,
    rw: Sequence[Path] = (),
) -> int:
    """``script`` with ``argv`` run again in the VM, for a kernel without IPVS; its exit
    status. Already in the VM (whose kernel should have it): said, and 1."""
    name = f"bench/{Path(script).name}"
    if os.environ.get("HADIRECTOR_IN_VM") == "1":
        print(f"{name}: no IPVS even in the VM (modprobe ip_vs failed)", file=sys.stderr)
        return 1
    print(f"{name}: no IPVS in this kernel; running in the VM", flush=True)
    command = [sys.executable, str(RUNNER), "--timeout", str(timeout_s)]
    if memory_mib is not None:
        command += ["--memory", str(memory_mib)]
    for directory in rw:
        command += ["--rw", str(directory)]
    script_path = str(Path(script).resolve())
    return subprocess.call([*command, "--", sys.executable, script_path, *argv])
