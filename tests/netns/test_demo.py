"""``hadirector demo``, the README's first command, run as an operator would run it.

It must build its namespaces, show a graceful handover and a preemption back while the
client pings the VIP without losing a reply, and leave nothing behind: no namespace, no
control socket outside its own temporary directory.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]


def test_demo_hands_over_and_back_without_losing_a_ping() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "hadirector", "demo", "--duration", "9"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    out = proc.stdout
    assert proc.returncode == 0, (proc.returncode, out[-3000:], proc.stderr[-2000:])
    assert "demo: stopping director-a (SIGTERM): graceful handover to director-b" in out
    assert "demo: starting director-a again: it preempts back" in out
    assert out.rstrip().endswith("demo: namespaces removed"), out[-2000:]

    def transitions(director: str) -> list[tuple[str, str]]:
        found = re.findall(
            rf"^\[{director}\] .*vrrp\.transition .*new=(\w+) old=(\w+)", out, re.MULTILINE
        )
        return [(old, new) for new, old in found]

    # a: elected master, hands over on SIGTERM, comes back and preempts.
    assert transitions("director-a") == [
        ("INIT", "BACKUP"),
        ("BACKUP", "MASTER"),
        ("MASTER", "STOPPED"),
        ("INIT", "BACKUP"),
        ("BACKUP", "MASTER"),
        ("MASTER", "STOPPED"),
    ], out
    assert "reason='stopped (handed over)'" in out
    assert transitions("director-b") == [
        ("INIT", "BACKUP"),
        ("BACKUP", "MASTER"),
        ("MASTER", "BACKUP"),
        ("BACKUP", "STOPPED"),
    ], out

    # The client's ping statistics: replies all through (make-before-break).
    stats = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert stats is not None, out[-2000:]
    sent, received = int(stats[1]), int(stats[2])
    assert sent >= 30 and received == sent, stats[0]

    # Each agent had its own control socket in the demo's directory, removed with it.
    sockets = re.findall(r"control\.listening .*path=(\S+)", out)
    assert len(sockets) == 3 and len(set(sockets)) == 2, sockets
    for path in sockets:
        assert "hadirector-demo-" in path and not Path(path).exists(), path

    # No namespace of this demo is left (another run's, killed mid-way, is not its business).
    made = re.search(r"^demo: namespaces (.+)$", out, re.MULTILINE)
    assert made is not None, out[:2000]
    names = made[1].split()
    assert len(names) == 4 and all(n.startswith("hdd") for n in names), names
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    left = {line.split()[0] for line in listed.splitlines() if line.strip()} & set(names)
    assert not left, (left, proc.stderr[-2000:])
