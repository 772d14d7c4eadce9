"""End to end: ``hadirector status`` / ``reload`` and the metrics endpoint of a real pair.

Two ``hadirector run`` processes in their director namespaces, each with its control socket
in its own directory and ``metrics_listen`` on the namespace's loopback. The CLI runs in
the same namespace as the agent it asks; metrics are fetched over HTTP inside the
namespace and parsed as Prometheus text. After a graceful handover the counters show the
transitions both sides went through.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .e2e_util import STATE_TIMEOUT_S, E2EDirector, start_pair
from .lab import REPO_ROOT, Lab, hadirector_command, wait_for

pytestmark = pytest.mark.netns

METRICS_PORT = 9650
SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _in_ns(lab: Lab, node: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(
        ["ip", "netns", "exec", lab.ns(node), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def _cli(lab: Lab, d: E2EDirector, *args: str) -> subprocess.CompletedProcess[str]:
    command = hadirector_command()
    assert command is not None
    return _in_ns(lab, d.node, [*command, *args])


def _socket(d: E2EDirector) -> str:
    return str(d.dir / "hadirector.sock")


def _status(lab: Lab, d: E2EDirector) -> dict[str, Any]:
    proc = _cli(lab, d, "status", "--json", "--socket", _socket(d))
    assert proc.returncode == 0, proc.stderr
    st = json.loads(proc.stdout)
    assert isinstance(st, dict)
    return st


FETCH = """
import sys, urllib.request
with urllib.request.urlopen("http://127.0.0.1:%d/metrics", timeout=10) as r:
    assert r.status == 200, r.status
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers
    sys.stdout.write(r.read().decode())
"""


def _metrics(lab: Lab, d: E2EDirector) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The endpoint's samples: (name, labels) -> value; every line must parse."""
    proc = _in_ns(lab, d.node, [sys.executable, "-c", FETCH % METRICS_PORT])
    assert proc.returncode == 0, proc.stderr
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) \w+ ", line), line
            continue
        m = SAMPLE_RE.match(line)
        assert m, f"unparsable sample line {line!r}"
        labels = frozenset(LABEL_RE.findall(m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def _value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_status_metrics_and_reload_of_a_pair(netlab: Lab) -> None:
    listen = {"metrics_listen": f'"127.0.0.1:{METRICS_PORT}"'}
    a, b = start_pair(netlab, a_kwargs={"global_extra": listen}, b_kwargs={"global_extra": listen})

    # The human table names each side's state; --config finds the socket from the file.
    wait_for(lambda: os.path.exists(_socket(a)) and os.path.exists(_socket(b)), 15, "sockets")
    # BACKUP comes before any advert is heard, and the VIP is added after MASTER: wait for
    # both rather than count on the time the CLI takes to start.
    wait_for(lambda: _status(netlab, a)["instances"][0]["vips_held"], 15, "dir-a holding")
    wait_for(
        lambda: _status(netlab, b)["instances"][0]["counters"].get("adverts_accepted", 0) > 0,
        15, "dir-b accepting an advert",
    )  # fmt: skip
    assert oct(os.stat(_socket(a)).st_mode & 0o777) == "0o600"
    table_a = _cli(netlab, a, "status", "--config", str(a.conf_path))
    table_b = _cli(netlab, b, "status", "--socket", _socket(b))
    assert table_a.returncode == 0 and table_b.returncode == 0, table_a.stderr + table_b.stderr
    assert "router lab-dir-a" in table_a.stdout
    rows_a = [ln.split() for ln in table_a.stdout.splitlines() if ln.split()[:1] != ["router"]]
    rows_b = [ln.split() for ln in table_b.stdout.splitlines() if ln.split()[:1] != ["router"]]
    assert rows_a[0][:2] == ["INSTANCE", "STATE"] and rows_a[1][1] == "MASTER", table_a.stdout
    assert rows_b[0][:2] == ["INSTANCE", "STATE"] and rows_b[1][1] == "BACKUP", table_b.stdout

    st_a, st_b = _status(netlab, a), _status(netlab, b)
    (inst_a,), (inst_b,) = st_a["instances"], st_b["instances"]
    name = inst_a["name"]
    assert (inst_a["state"], inst_b["state"]) == ("MASTER", "BACKUP")
    assert (inst_a["priority"], inst_b["priority"]) == (150, 100)
    assert len(inst_a["vips_held"]) == 1 and inst_b["vips_held"] == []
    assert inst_b["counters"]["adverts_accepted"] > 0
    assert st_a["ipvs"]["available"] is None  # no virtual servers configured: IPVS unused

    m_a, m_b = _metrics(netlab, a), _metrics(netlab, b)
    assert _value(m_a, "hadirector_vrrp_state", instance=name, state="MASTER") == 1
    assert _value(m_a, "hadirector_vrrp_state", instance=name, state="BACKUP") == 0
    assert _value(m_b, "hadirector_vrrp_state", instance=name, state="BACKUP") == 1
    assert _value(m_a, "hadirector_vrrp_transitions_total", instance=name, state="MASTER") == 1
    assert _value(m_b, "hadirector_vrrp_transitions_total", instance=name, state="MASTER") == 0
    assert _value(m_a, "hadirector_vrrp_adverts_sent_total", instance=name) > 0
    assert _value(m_b, "hadirector_vrrp_adverts_received_total", instance=name) > 0
    assert _value(m_a, "hadirector_vrrp_vips_held", instance=name) == 1

    # reload through the control socket: applied (same file), no transition.
    rel = _cli(netlab, b, "reload", "--socket", _socket(b))
    assert rel.returncode == 0 and "reloaded" in rel.stdout, rel.stderr
    # The reply comes over the socket; the log line through the log pipe, maybe later.
    wait_for(lambda: b.records("config.reloaded"), 15, "config.reloaded from dir-b")

    # Graceful handover: a stops, b takes over; b's counters show both transitions.
    a.stop()
    b.wait_state("MASTER", STATE_TIMEOUT_S)
    assert not os.path.exists(_socket(a)), "socket left behind after exit"
    gone = _cli(netlab, a, "status", "--socket", _socket(a))
    assert gone.returncode == 1 and "not running" in gone.stderr
    wait_for(
        lambda: _value(_metrics(netlab, b), "hadirector_vrrp_vips_held", instance=name) == 1,
        15, "dir-b holding the VIP",
    )  # fmt: skip
    m_b = _metrics(netlab, b)
    assert _value(m_b, "hadirector_vrrp_state", instance=name, state="MASTER") == 1
    assert _value(m_b, "hadirector_vrrp_transitions_total", instance=name, state="BACKUP") == 1
    assert _value(m_b, "hadirector_vrrp_transitions_total", instance=name, state="MASTER") == 1
    assert _value(m_b, "hadirector_vrrp_vips_held", instance=name) == 1
    assert _status(netlab, b)["instances"][0]["state"] == "MASTER"


def test_status_reports_a_bad_config_path(tmp_path: Path) -> None:
    command = hadirector_command()
    assert command is not None
    bad = tmp_path / "bad.toml"
    bad.write_text('[global]\ncontrol_socket = "relative.sock"\n')
    proc = subprocess.run(
        [*command, "status", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
    )
    assert proc.returncode == 1
    assert "global.control_socket" in proc.stderr
