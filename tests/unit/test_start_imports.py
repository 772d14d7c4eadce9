"""What ``hadirector run`` imports before its VRRP instances start, in a fresh interpreter.

Start -> first advert is mostly the interpreter importing modules. The probe runs the real
``cli.main(["run", ...])`` on the example configuration (VRRP, a sync group, IPVS services
with health checks, sync daemons) up to the point where the agent's trio loop would start:
``trio.run`` is replaced by building the ``Agent`` as ``run_agent`` does, with the real
adapters. Everything loaded by then is on the way to the first advert; code the first
advert does not need must not be among it (the IPVS kernel adapter, nftables and sync
daemon drivers are imported when their tasks run, after the instances started; the control
server and metrics when the agent serves them), and libraries the daemon never uses not
at all. A configuration with VRRP alone loads none of the optional parts (alerts,
connection sync, the LVS side: IPVS manager, pools, health checks, anycast).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "conf" / "director.toml"

# Never on the start path: libraries the daemon does not use, and the agent's code that
# runs only after the VRRP instances have started (or never, for `hadirector run`).
NOT_AT_START = (
    "pyroute2",
    "scapy",
    "hadirector.ipvs.kernel",
    "hadirector.ipvs.genl",
    "hadirector.ipvs.nft",
    "hadirector.ipvs.save",
    "hadirector.ipvs.importer",
    "hadirector.sync.kernel",
    "hadirector.control.server",
    "hadirector.control.client",
    "hadirector.metrics",
    "hadirector.demo",
    "hadirector.config.diff",  # a reload's plan
    "difflib",  # the loader's "did you mean", for a mistake only
)

PROBE = """
import json, sys
import trio
from hadirector import cli
seen = {}

def start(run_agent, config, path, clock=None):
    from hadirector import agent
    agent.Agent(config, path)  # what run_agent builds first, real adapters included
    seen["modules"] = sorted(sys.modules)
    seen["entry"] = run_agent is agent.run_agent
    seen["clock"] = type(clock).__name__

trio.run = start
code = cli.main(["run", "--config", sys.argv[1], "--log-format", "json"])
print(json.dumps({"code": code, **seen}))
"""


# What a VRRP-only configuration never builds before its first advert (agent/supervisor.py
# builds alerts, connection sync and the LVS side only when the configuration has them).
# The configuration's own pure pieces (ipvs.model's ServiceKey, the checks' message
# formats, rise/fall counting) are not among them: the loader and tracking use them.
NOT_FOR_VRRP_ONLY = (
    "hadirector.ipvs.manager",
    "hadirector.ipvs.reconcile",
    "hadirector.ipvs.pool",
    "hadirector.agent.pools",
    "hadirector.checks.runner",
    "hadirector.checks.probes",
    "hadirector.alerts.dispatch",
    "hadirector.alerts.wiring",
    "hadirector.alerts.events",
    "hadirector.alerts.transport",
    "hadirector.anycast",
    "hadirector.sync",
    "hadirector.status",  # the snapshot's types: a status request's
)

VRRP_ONLY = """
[global]
router_id = "dir-a"

[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
vrid = 1
priority = 150
advert_interval = 1.0
virtual_addresses = ["198.18.0.1/32"]
"""


def loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    """The ``modules`` that are one of ``names`` or inside one of them."""
    return [m for m in modules if any(m == name or m.startswith(name + ".") for name in names)]


def start_path_modules(config: Path = CONFIG) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["code"] == 0, proc.stderr
    assert result["entry"] is True
    assert result["clock"] == "MonotonicClock"  # trio runs on the hot loop's clock
    modules: list[str] = result["modules"]
    return modules


def test_the_start_path_loads_only_what_the_first_advert_needs() -> None:
    modules = start_path_modules()
    # The probe got as far as the agent and its real adapters...
    for needed in ("trio", "hadirector.agent", "hadirector.net.vrrp_socket"):
        assert needed in modules
    assert "hadirector.ipvs.manager" in modules
    # ...without loading any of these.
    assert loaded(modules, NOT_AT_START) == []


def test_a_vrrp_only_start_loads_no_optional_part(tmp_path: Path) -> None:
    config = tmp_path / "vrrp.toml"
    config.write_text(VRRP_ONLY)
    modules = start_path_modules(config)
    for needed in ("trio", "hadirector.agent", "hadirector.net.vrrp_socket"):
        assert needed in modules
    assert loaded(modules, NOT_AT_START + NOT_FOR_VRRP_ONLY) == []
