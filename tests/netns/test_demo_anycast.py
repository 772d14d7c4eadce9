"""``hadirector demo --anycast``, run as an operator would run it: three directors with BIRD
behind a BIRD router; the router's route follows a pool failure and an agent's SIGKILL, no
probe of the client is lost while the directors are announced, and nothing is left behind."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]


def test_demo_anycast_follows_the_pools_and_the_agents() -> None:
    if os.geteuid() != 0 or shutil.which("bird") is None:
        pytest.skip("needs root and BIRD 2 (bird2)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "hadirector", "demo", "--anycast", "--duration", "4"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    out = proc.stdout
    assert proc.returncode == 0, (proc.returncode, out[-3000:], proc.stderr[-2000:])
    routes = re.findall(r"^demo: router: 198\.51\.100\.53 via (.*)$", out, re.MULTILINE)
    # Each step's routes, in order, with repeats collapsed.
    steps = [r for i, r in enumerate(routes) if i == 0 or routes[i - 1] != r]
    assert steps == ["d1, d2, d3", "d2, d3", "d1, d2, d3", "d1, d3", "d1, d2, d3"], out
    flows = re.findall(r"^demo: client: 12 flows -> (.*?)  \(", out, re.MULTILINE)
    assert flows and all("LOST" not in f for f in flows), out
    assert out.rstrip().endswith("demo: namespaces removed"), out[-2000:]
    made = re.search(r"; namespaces (.*)$", out, re.MULTILINE)
    assert made is not None, out
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    present = {line.split()[0] for line in listed.splitlines() if line.strip()}
    assert not set(made.group(1).split()) & present
