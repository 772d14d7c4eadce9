"""End to end: the instances of an agent share one VRRP receive and one send socket per
(interface, family), and each hears only its own VRID; the shared sockets follow an
interface deleted and created again (the old ones close with the last instance leaving).

dir-a runs VRIDs 1-20 (priority 150), dir-b VRIDs 1-10 (100), all on eth0 at 0.1 s: dir-a's
adverts for 11-20 are on the link, for a router dir-b does not run. Each agent holds exactly
two raw sockets (counted in its /proc/PID/fd against the namespace's /proc/net/raw), every
backup instance accepts its master's adverts and none is handed another VRID's. That the
kernel filter, not Python, drops the other VRIDs is shown on the sockets alone in
test_net_vrrp_socket.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .e2e_util import STATE_TIMEOUT_S, E2EDirector
from .lab import REPO_ROOT, InstanceSpec, Lab, hadirector_command, wait_for

pytestmark = pytest.mark.netns


def _specs(priority: int, vrids: range) -> list[InstanceSpec]:
    return [
        InstanceSpec(
            name=f"VI_{vrid}",
            vrid=vrid,
            priority=priority,
            advert_s=0.1,
            vips=(f"192.0.2.{100 + vrid}/24",),
        )
        for vrid in vrids
    ]


def _raw_sockets(lab: Lab, director: E2EDirector) -> int:
    """Raw IPv4 and IPv6 sockets held by the director's agent process."""
    inodes: set[str] = set()
    for table in ("raw", "raw6"):
        text = subprocess.run(
            ["ip", "netns", "exec", lab.ns(director.node), "cat", f"/proc/net/{table}"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout  # fmt: skip
        inodes |= {line.split()[9] for line in text.splitlines()[1:] if line.strip()}
    held = set()
    for fd in Path(f"/proc/{director.pid}/fd").iterdir():
        try:
            match = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(fd))
        except OSError:
            continue
        if match:
            held.add(match.group(1))
    return len(inodes & held)


def _status(lab: Lab, director: E2EDirector) -> dict[str, Any]:
    command = hadirector_command()
    assert command is not None
    proc = subprocess.run(
        ["ip", "netns", "exec", lab.ns(director.node), *command, "status", "--json",
         "--socket", str(director.dir / "hadirector.sock")],
        capture_output=True, text=True, timeout=60, check=False,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert isinstance(status, dict)
    return status


def test_instances_share_one_socket_and_hear_only_their_vrid(netlab: Lab) -> None:
    a = E2EDirector(netlab, "dir-a", instances=_specs(150, range(1, 21)))
    b = E2EDirector(netlab, "dir-b", instances=_specs(100, range(1, 11)))
    a.start()
    for spec in a.instances:
        a.wait_state("MASTER", STATE_TIMEOUT_S, instance=spec.name)
    b.start()
    for spec in b.instances:
        b.wait_state("BACKUP", STATE_TIMEOUT_S, instance=spec.name)
    # One receive and one send socket each, for 20 and 10 instances.
    assert (_raw_sockets(netlab, a), _raw_sockets(netlab, b)) == (2, 2)

    # The control socket opens after the instances start: wait for it before asking.
    wait_for(lambda: b.records("control.listening"), STATE_TIMEOUT_S, "dir-b's control socket")

    def heard_by_all() -> list[dict[str, Any]] | None:
        instances = _status(netlab, b)["instances"]
        ok = all(i["counters"].get("adverts_accepted", 0) >= 10 for i in instances)
        return instances if ok else None

    instances = wait_for(heard_by_all, 30, "every backup instance accepting adverts", 0.5)
    assert sorted(i["vrid"] for i in instances) == list(range(1, 11))
    for inst in instances:
        assert inst["state"] == "BACKUP"
        assert inst["counters"].get("other_vrid", 0) == 0, inst
        assert not any(k.startswith("rejected_") for k in inst["counters"]), inst


def test_shared_socket_follows_a_recreated_interface(netlab: Lab) -> None:
    """Three instances on dir-a's eth0, which is deleted and created again: each re-opens
    on the new interface, the old sockets close with the last of them, and all three are
    heard again (as MASTER over dir-b)."""
    a = E2EDirector(netlab, "dir-a", instances=_specs(150, range(1, 4)))
    b = E2EDirector(netlab, "dir-b", instances=_specs(100, range(1, 4)))
    a.start()
    for spec in a.instances:
        a.wait_state("MASTER", STATE_TIMEOUT_S, instance=spec.name)
    b.start()
    for spec in b.instances:
        b.wait_state("BACKUP", STATE_TIMEOUT_S, instance=spec.name)
    pid = a.pid
    netlab.delete_link("dir-a")
    for spec in a.instances:
        a.wait_state("FAULT", STATE_TIMEOUT_S, instance=spec.name)
        b.wait_state("MASTER", STATE_TIMEOUT_S, instance=spec.name)
    netlab.create_link("dir-a")
    for spec in a.instances:
        a.wait_state("MASTER", STATE_TIMEOUT_S, instance=spec.name)
        b.wait_state("BACKUP", STATE_TIMEOUT_S, instance=spec.name)
    assert len(a.records("vrrp.socket_reopened")) == 3
    assert a.running() and a.pid == pid
    assert _raw_sockets(netlab, a) == 2  # the new pair only: the old went with the last
