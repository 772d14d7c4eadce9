"""The agent (``hadirector run``) against the real IPVS kernel, inside the VM.

One director namespace, one configuration with services of every kind (TCP/UDP/SCTP/fwmark,
IPv4/IPv6, NAT/DR/TUN(ipip, gue)/FULLNAT, persistence with netmasks, thresholds, scheduler
flags, one service per scheduler of the 6.1 kernel, and one ``twos`` service the kernel
lacks). What the agent programs is read back by ``ipvsadm`` and compared with text written
by hand here. Then, with the same agent still running: drift made by hand with ipvsadm is
repaired, SIGHUP with one weight changed writes exactly one edit, a broken file on SIGHUP
changes nothing; a second agent adopts the table without writing, and deletes a service
(and its SNAT rule) once the file drops it; a foreign service stays untouched until
``own_whole_table`` is set.

Python start-up costs ~15 s under the VM's emulation, so the whole story runs as one test
with two agent starts; each step says what it checks.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .lvslab import WRITE_EVENTS, AgentProcess, Lab, agent

pytestmark = pytest.mark.vm

START_TIMEOUT_S = 120.0
STEP_TIMEOUT_S = 30.0

SCHEDULERS_61 = (
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf"
)  # fmt: skip

BASE_CONFIG = """
[ipvs]
reconcile_interval = 1.0
{extra_ipvs}

[[virtual_server]]
address = "192.0.2.10:80"
scheduler = "wlc"
forwarding = "nat"

  [[virtual_server.real_server]]
  address = "198.51.100.11:8080"
  weight = 100
  upper_threshold = 2000
  lower_threshold = 1500

  [[virtual_server.real_server]]
  address = "198.51.100.12:8080"
  weight = {weight_12}

[[virtual_server]]
address = "192.0.2.11:53"
protocol = "udp"
scheduler = "sh"
scheduler_flags = ["sh-fallback", "sh-port"]
one_packet = true
forwarding = "dr"

  [[virtual_server.real_server]]
  address = "198.51.100.11:53"

  [[virtual_server.real_server]]
  address = "198.51.100.12:53"
  weight = 0

[[virtual_server]]
address = "192.0.2.12:3868"
protocol = "sctp"
scheduler = "rr"
forwarding = "tun"

  [[virtual_server.real_server]]
  address = "198.51.100.13:3868"
  weight = 2

[[virtual_server]]
address = "192.0.2.13:443"
scheduler = "mh"
scheduler_flags = ["mh-port"]
persistence_timeout = 600
persistence_netmask = "255.255.255.0"
forwarding = "tun"
tunnel_type = "gue"
tunnel_port = 6080
tunnel_flags = ["csum"]

  [[virtual_server.real_server]]
  address = "198.51.100.14:443"

  [[virtual_server.real_server]]
  address = "198.51.100.15:443"
  forwarding = "dr"

[[virtual_server]]
address = "192.0.2.14:80"
forwarding = "fullnat"
fullnat_source = "198.51.100.1"

  [[virtual_server.real_server]]
  address = "198.51.100.16:80"

[[virtual_server]]
fwmark = 7
scheduler = "wlc"
persistence_timeout = 300
match = {{ address = "192.0.2.15", protocol = "tcp", ports = [80, 443] }}

  [[virtual_server.real_server]]
  address = "198.51.100.11"

  [[virtual_server.real_server]]
  address = "198.51.100.12"
  weight = 3

[[virtual_server]]
address = "[2001:db8::10]:80"
scheduler = "lc"
forwarding = "dr"
persistence_timeout = 60
persistence_netmask = 64

  [[virtual_server.real_server]]
  address = "[2001:db8:1::11]:80"
"""

SCHEDULER_SERVICE = """
[[virtual_server]]
address = "192.0.2.20:{port}"
scheduler = "{scheduler}"

  [[virtual_server.real_server]]
  address = "198.51.100.20:{port}"
"""


FULLNAT_BLOCK = (
    '[[virtual_server]]\naddress = "192.0.2.14:80"\nforwarding = "fullnat"\n'
    'fullnat_source = "198.51.100.1"\n\n'
    '  [[virtual_server.real_server]]\n  address = "198.51.100.16:80"\n\n'
)
FULLNAT_SAVE = "-A -t 192.0.2.14:80 -s wlc\n-a -t 192.0.2.14:80 -r 198.51.100.16:80 -m -w 1\n"


def config_text(weight_12: int = 50, extra_ipvs: str = "", fullnat: bool = True) -> str:
    text = BASE_CONFIG.format(weight_12=weight_12, extra_ipvs=extra_ipvs)
    if not fullnat:
        assert FULLNAT_BLOCK in text
        text = text.replace(FULLNAT_BLOCK, "")
    for index, name in enumerate((*SCHEDULERS_61, "twos")):
        text += SCHEDULER_SERVICE.format(port=8001 + index, scheduler=name)
    return text


#: ``ipvsadm -S -n`` of the configuration above (weight_12 = 50), written out by hand:
#: services in ipvsadm's order (addresses before marks; IPv4 before IPv6; TCP, UDP, SCTP;
#: then address and port), thresholds not shown (ipvsadm does not save them), no twos.
EXPECTED_SAVE = """\
-A -t 192.0.2.10:80 -s wlc
-a -t 192.0.2.10:80 -r 198.51.100.11:8080 -m -w 100
-a -t 192.0.2.10:80 -r 198.51.100.12:8080 -m -w 50
-A -t 192.0.2.13:443 -s mh -p 600 -M 255.255.255.0 -b mh-port
-a -t 192.0.2.13:443 -r 198.51.100.14:443 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum
-a -t 192.0.2.13:443 -r 198.51.100.15:443 -g -w 1
-A -t 192.0.2.14:80 -s wlc
-a -t 192.0.2.14:80 -r 198.51.100.16:80 -m -w 1
-A -t 192.0.2.20:8001 -s rr
-a -t 192.0.2.20:8001 -r 198.51.100.20:8001 -m -w 1
-A -t 192.0.2.20:8002 -s wrr
-a -t 192.0.2.20:8002 -r 198.51.100.20:8002 -m -w 1
-A -t 192.0.2.20:8003 -s lc
-a -t 192.0.2.20:8003 -r 198.51.100.20:8003 -m -w 1
-A -t 192.0.2.20:8004 -s wlc
-a -t 192.0.2.20:8004 -r 198.51.100.20:8004 -m -w 1
-A -t 192.0.2.20:8005 -s lblc
-a -t 192.0.2.20:8005 -r 198.51.100.20:8005 -m -w 1
-A -t 192.0.2.20:8006 -s lblcr
-a -t 192.0.2.20:8006 -r 198.51.100.20:8006 -m -w 1
-A -t 192.0.2.20:8007 -s dh
-a -t 192.0.2.20:8007 -r 198.51.100.20:8007 -m -w 1
-A -t 192.0.2.20:8008 -s sh
-a -t 192.0.2.20:8008 -r 198.51.100.20:8008 -m -w 1
-A -t 192.0.2.20:8009 -s sed
-a -t 192.0.2.20:8009 -r 198.51.100.20:8009 -m -w 1
-A -t 192.0.2.20:8010 -s nq
-a -t 192.0.2.20:8010 -r 198.51.100.20:8010 -m -w 1
-A -t 192.0.2.20:8011 -s mh
-a -t 192.0.2.20:8011 -r 198.51.100.20:8011 -m -w 1
-A -t 192.0.2.20:8012 -s fo
-a -t 192.0.2.20:8012 -r 198.51.100.20:8012 -m -w 1
-A -t 192.0.2.20:8013 -s ovf
-a -t 192.0.2.20:8013 -r 198.51.100.20:8013 -m -w 1
-A -u 192.0.2.11:53 -s sh -o -b sh-fallback,sh-port
-a -u 192.0.2.11:53 -r 198.51.100.11:53 -g -w 1
-a -u 192.0.2.11:53 -r 198.51.100.12:53 -g -w 0
-A --sctp-service 192.0.2.12:3868 -s rr
-a --sctp-service 192.0.2.12:3868 -r 198.51.100.13:3868 -i -w 2 --tun-type ipip
-A -t [2001:db8::10]:80 -s lc -p 60 -M 64
-a -t [2001:db8::10]:80 -r [2001:db8:1::11]:80 -g -w 1
-A -f 7 -s wlc -p 300
-a -f 7 -r 198.51.100.11:0 -m -w 1
-a -f 7 -r 198.51.100.12:0 -m -w 3
"""

FOREIGN = "-A -t 203.0.113.99:80 -s rr\n-a -t 203.0.113.99:80 -r 198.51.100.99:80 -m -w 1\n"


def with_foreign(save_text: str) -> str:
    """The save text with the foreign TCP service in ipvsadm's place (after 192.0.2.20:*)."""
    anchor = "-A -u 192.0.2.11:53"
    return save_text.replace(anchor, FOREIGN + anchor)


@pytest.fixture
def lab(ipvs_modules: None) -> Iterator[Lab]:
    with Lab() as lab:
        yield lab


def test_agent_programs_repairs_reloads_and_adopts(lab: Lab, tmp_path: Path) -> None:
    director = lab.netns("dir")

    def save() -> str:
        return lab.exec(director, "ipvsadm", "-S", "-n")

    def ipvsadm(*args: str) -> None:
        lab.exec(director, "ipvsadm", *args)

    # A service added by hand, before the agent: it must never be touched.
    for line in FOREIGN.splitlines():
        ipvsadm(*line.split())

    config = tmp_path / "director.toml"
    config.write_text(config_text())

    with agent(director, config) as first:
        # --- start: everything configured is applied, twos refused by name, foreign kept ---
        done = first.wait_for("ipvs.reconciled", START_TIMEOUT_S, where=_reason("start"))
        assert save() == with_foreign(EXPECTED_SAVE)
        assert done["services"] == 13 + 7 and done["refused"] == 1 and done["failed"] == 0
        [refused] = first.named("ipvs.service_refused")
        assert refused["service"] == "tcp 192.0.2.20:8014"
        assert "'twos'" in refused["error"] and "ip_vs_twos" in refused["error"]
        assert not first.named("ipvs.op_failed", "ipvs.nft_failed", "ipvs.sysctl_failed")
        # every scheduler of the kernel and every forwarding method was accepted
        assert all(f" -s {name}" in save() for name in SCHEDULERS_61)
        assert all(f" {switch} -w" in save() for switch in ("-m", "-g", "-i"))
        # thresholds are not in the save format: read them with ipvsadm's own listing
        assert _thresholds(lab, director, "198.51.100.11:8080") == (2000, 1500)
        # FULLNAT's sysctls and the nftables table (PFMC mark, SNAT) the agent owns
        assert lab.exec(director, "cat", "/proc/sys/net/ipv4/vs/conntrack").strip() == "1"
        assert lab.exec(director, "cat", "/proc/sys/net/ipv4/ip_forward").strip() == "1"
        ruleset = lab.exec(director, "nft", "list", "table", "inet", "hadirector")
        assert "meta mark set 0x00000007" in ruleset
        assert "snat ip to 198.51.100.1" in ruleset
        # the agent's own reader agrees byte for byte with ipvsadm
        ours = lab.exec(director, "python3", "-m", "hadirector", "ipvs", "save")
        assert ours == save()

        # --- drift made by hand is repaired within the 1 s reconcile interval ---
        _repair(
            first,
            lambda: ipvsadm("-d", "-t", "192.0.2.10:80", "-r", "198.51.100.12:8080"),
            {"ipvs.dest.add": ["add dest 198.51.100.12:8080 to TCP 192.0.2.10:80"]},
        )
        assert save() == with_foreign(EXPECTED_SAVE)
        # ipvsadm -e replaces the whole destination: weight and thresholds come back
        _repair(
            first,
            lambda: ipvsadm(
                "-e", "-t", "192.0.2.10:80", "-r", "198.51.100.11:8080", "-m", "-w", "7"
            ),
            {"ipvs.dest.edit": ["edit dest 198.51.100.11:8080 of TCP 192.0.2.10:80"]},
        )
        assert save() == with_foreign(EXPECTED_SAVE)
        assert _thresholds(lab, director, "198.51.100.11:8080") == (2000, 1500)
        _repair(
            first,
            lambda: ipvsadm("-D", "-u", "192.0.2.11:53"),
            {
                "ipvs.service.add": ["add service UDP 192.0.2.11:53 (scheduler sh)"],
                "ipvs.dest.add": [
                    "add dest 198.51.100.11:53 to UDP 192.0.2.11:53",
                    "add dest 198.51.100.12:53 to UDP 192.0.2.11:53",
                ],
            },
        )
        assert save() == with_foreign(EXPECTED_SAVE)

        # --- SIGHUP with one weight changed: exactly one edit, nothing else written ---
        config.write_text(config_text(weight_12=60))
        mark = first.mark()
        first.signal(signal.SIGHUP)
        done = first.wait_for("ipvs.reconciled", STEP_TIMEOUT_S, mark, _reason("reload"))
        writes = first.named(*WRITE_EVENTS, since=mark)
        assert [(e["event"], e["op"]) for e in writes] == [
            ("ipvs.dest.edit", "edit dest 198.51.100.12:8080 of TCP 192.0.2.10:80")
        ]
        assert done["written"] == 1
        reloaded = EXPECTED_SAVE.replace(
            "198.51.100.12:8080 -m -w 50", "198.51.100.12:8080 -m -w 60"
        )
        assert save() == with_foreign(reloaded)

        # --- a broken file on SIGHUP: reported, the running configuration stays ---
        config.write_text(config_text(weight_12=60).replace('scheduler = "lc"', "scheduler = 5"))
        mark = first.mark()
        first.signal(signal.SIGHUP)
        failed = first.wait_for("config.reload_failed", STEP_TIMEOUT_S, mark)
        assert any("scheduler" in problem for problem in failed["problems"])
        _sleep_events(first, 2.0)  # periodic reconciles run meanwhile: nothing to write
        assert not first.named(*WRITE_EVENTS, since=mark)
        assert len(first.named("ipvs.reconciled", since=mark)) == 0
        assert save() == with_foreign(reloaded)
        config.write_text(config_text(weight_12=60))
        assert first.stop() == 0

    # --- a new agent adopts the table as it finds it: zero netlink writes ---
    with agent(director, config) as second:
        adopted = second.wait_for("ipvs.reconciled", START_TIMEOUT_S, where=_reason("start"))
        assert adopted["written"] == 0 and adopted["failed"] == 0
        mark = second.mark()
        # a few periodic reconciles (1 s apart) must find nothing to do either
        _sleep_events(second, 3.0)
        assert not second.named(*WRITE_EVENTS), second.transcript()
        assert not second.named("ipvs.drift_repaired", since=mark)
        assert save() == with_foreign(reloaded)

        # --- a service the file no longer lists goes (this agent adopted it), with its
        # SNAT rule; the foreign one stays ---
        assert FULLNAT_SAVE in reloaded
        reduced = reloaded.replace(FULLNAT_SAVE, "")
        config.write_text(config_text(weight_12=60, fullnat=False))
        mark = second.mark()
        second.signal(signal.SIGHUP)
        second.wait_for("ipvs.reconciled", STEP_TIMEOUT_S, mark, _reason("reload"))
        writes = second.named(*WRITE_EVENTS, since=mark)
        assert [(e["event"], e["op"]) for e in writes] == [
            ("ipvs.service.del", "delete service TCP 192.0.2.14:80")
        ]
        assert save() == with_foreign(reduced)
        ruleset = lab.exec(director, "nft", "list", "table", "inet", "hadirector")
        assert "snat" not in ruleset and "meta mark set 0x00000007" in ruleset

        # --- own_whole_table: now, and only now, the foreign service goes ---
        config.write_text(
            config_text(weight_12=60, fullnat=False, extra_ipvs="own_whole_table = true")
        )
        mark = second.mark()
        second.signal(signal.SIGHUP)
        second.wait_for("ipvs.reconciled", STEP_TIMEOUT_S, mark, _reason("reload"))
        writes = second.named(*WRITE_EVENTS, since=mark)
        assert [(e["event"], e["op"]) for e in writes] == [
            ("ipvs.service.del", "delete service TCP 203.0.113.99:80")
        ]
        assert save() == reduced


def _reason(reason: str) -> Callable[[dict[str, Any]], bool]:
    return lambda event: event.get("reason") == reason


def _sleep_events(process: AgentProcess, seconds: float) -> None:
    """Let the agent run for ``seconds`` (it must stay alive)."""
    try:
        process.process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:  # still running: what we want
        return
    raise AssertionError("the agent exited:\n" + process.transcript())


def _repair(
    process: AgentProcess, damage: Callable[[], None], expected: dict[str, list[str]]
) -> None:
    """Damage the table by hand; the next periodic reconcile writes exactly ``expected``."""
    mark = process.mark()
    damage()
    damaged_s = time.monotonic()
    repaired = process.wait_for("ipvs.drift_repaired", STEP_TIMEOUT_S, mark)
    # How long it took is printed, not asserted: the repair must come from a periodic
    # reconcile (checked below), and how soon one runs is the scheduler's business.
    took_s = repaired["_received_s"] - damaged_s
    print(f"drift repaired {took_s:.2f} s after the damage: {expected}")
    writes = process.named(*WRITE_EVENTS, since=mark)
    got: dict[str, list[str]] = {}
    for event in writes:
        assert event["reason"] == "periodic"
        got.setdefault(event["event"], []).append(event["op"])
    assert {k: sorted(v) for k, v in got.items()} == expected
    assert repaired["operations"] == sum(len(v) for v in expected.values())


def _thresholds(lab: Lab, netns: str, dest: str) -> tuple[int, int]:
    """(upper, lower) of a destination as ``ipvsadm -L -n --thresholds`` lists it."""
    for line in lab.exec(netns, "ipvsadm", "-L", "-n", "--thresholds").splitlines():
        words = line.split()
        if len(words) >= 4 and words[0] == "->" and words[1] == dest:
            return int(words[2]), int(words[3])
    raise AssertionError(f"{dest} not listed")
