"""End to end: two ``hadirector run`` directors in the namespace lab, a client probing the VIP.

Each test starts dir-a (priority 150) and dir-b (priority 100), 0.1 s adverts, and checks
what the protocol promises on the real kernel: one master holding the VIP, the backup
silent, failover on a crash, carrier loss or a tracked interface, a graceful handover with
no lost probe (make-before-break), preemption back, unicast mode, IPv6, a two-LAN sync
group, split-brain healing, and that malformed or unauthenticated adverts change nothing.

Waits are condition loops with generous timeouts (the machine is small and shared); no
figure of speed is asserted. "0 probes lost" on a handover is the make-before-break
guarantee, not a timing.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from typing import Any

import pytest

from tests.checksum import internet_checksum

from .e2e_util import (
    STATE_TIMEOUT_S,
    E2EDirector,
    adverts_from,
    ipv4_frame,
    is_garp,
    is_unsolicited_na,
    send_frames,
    start_frames,
    start_pair,
    vip_for,
    vrrp_v3_ipv4,
    wait_adverts,
)
from .lab import InstanceSpec, Lab, lan_address, vip_address, wait_for
from .prober import ProberRun

pytestmark = pytest.mark.netns

WIRE_TIMEOUT_S = 15.0


def _probe(lab: Lab, target: str, seconds: float, dev: str = "eth0") -> dict[str, Any]:
    return ProberRun(lab, target, dev=dev, duration_s=seconds).result(timeout_s=seconds + 60)


def _vip_only_on(lab: Lab, node: str, vip: str | None = None) -> None:
    vip = vip or vip_address()
    wait_for(lambda: lab.who_has(vip) == {node}, 15, f"{vip} on {node} only")


def _announce(family: int, vip: str, mac: str) -> Any:
    return is_garp(vip, mac) if family == 4 else is_unsolicited_na(vip, mac)


# -- election --------------------------------------------------------------------------


def test_election_one_master_backup_silent(netlab: Lab) -> None:
    a, b = start_pair(netlab)
    _vip_only_on(netlab, "dir-a")
    mac_a, mac_b = netlab.mac("dir-a"), netlab.mac("dir-b")
    since = time.monotonic()
    advert = netlab.wait_wire(
        lambda f: f.kind == "vrrp" and f.src_mac == mac_a, WIRE_TIMEOUT_S, "advert", since
    )
    assert (advert.info["version"], advert.info["vrid"], advert.info["priority"]) == (3, 51, 150)
    assert advert.info["addresses"] == [vip_address()]
    assert advert.info["interval_cs"] == 10
    assert (advert.info["dst"], advert.info["ttl"]) == ("224.0.0.18", 255)
    # RFC 5798 §5.2.8: the checksum covers the IPv4 pseudo-header and the message.
    raw = bytes.fromhex(advert.info["raw"])
    pseudo = socket.inet_aton(lan_address("dir-a")) + socket.inet_aton("224.0.0.18")
    assert internet_checksum(pseudo + bytes([0, 112]) + len(raw).to_bytes(2, "big") + raw) == 0
    # Ten advert intervals: the master keeps advertising, the backup says nothing (one
    # capture socket: whatever dir-b sent before dir-a's tenth advert was read before it).
    wait_adverts(netlab, mac_a, since, 10)
    assert adverts_from(netlab, mac_b, since) == []
    result = _probe(netlab, vip_address(), 0.3)
    assert result["sent"] > 0 and result["lost"] == 0, result
    assert set(result["macs"]) == {mac_a}
    assert a.states() == ["BACKUP", "MASTER"]
    assert b.states() == ["BACKUP"]
    assert b.records("vip.added") == []


# -- crash failover (IPv4 and IPv6) ----------------------------------------------------


@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_crash_failover(netlab: Lab, family: int) -> None:
    a, b = start_pair(netlab, family=family)
    vip = vip_for(family=family)
    mac_a, mac_b = netlab.mac("dir-a"), netlab.mac("dir-b")
    _vip_only_on(netlab, "dir-a", vip)
    run = ProberRun(netlab, vip)
    wait_for(lambda: netlab.neigh("client", vip) == mac_a, 15, "client resolving VIP to dir-a")
    netlab.wait_echo_replies("dir-a")
    t_crash = time.monotonic()
    a.crash()
    b.wait_state("MASTER", STATE_TIMEOUT_S)
    netlab.wait_wire(_announce(family, vip, mac_b), WIRE_TIMEOUT_S, "announcement", t_crash)
    wait_for(lambda: netlab.neigh("client", vip) == mac_b, 15, "client's entry moving to dir-b")
    # Replies resume from dir-b: wait until some arrive, then stop.
    netlab.wait_echo_replies("dir-b")
    result = run.stop()
    assert result["send_errors"] == 0
    assert result["macs"].get(mac_b, 0) > 0, result
    assert [(c["old"], c["new"]) for c in result["mac_changes"]] == [(mac_a, mac_b)]
    assert result["mac_changes"][0]["t"] > t_crash
    # The tail of the run is answered: the last lost probe was sent before the last reply.
    assert result["lost"] > 0
    assert all(r["end"] < result["mac_changes"][0]["t"] for r in result["lost_runs"])
    assert b.states() == ["BACKUP", "MASTER"]
    assert b.transitions()[-1].t > t_crash
    # Logged with the takeover: it may still be on its way through the log pipe.
    added = wait_for(lambda: b.records("vip.added"), 15, "vip.added from dir-b")
    assert added[0]["vips"] == [f"{vip}/{24 if family == 4 else 64}"]


_RECEIVABLE_CHECK = """
import ipaddress, json, sys
from dataclasses import dataclass
import trio
from pyroute2 import IPRoute
from hadirector.net.addresses import AddressManager

@dataclass(frozen=True)
class Vip:
    interface: ipaddress.IPv6Interface
    dev: str = "eth0"
    label: None = None

async def main(rounds: int) -> None:
    manager = AddressManager()
    await manager.open()
    vip = Vip(ipaddress.IPv6Interface(sys.argv[2]))
    lookups = IPRoute()
    late = 0
    for _ in range(rounds):
        assert await manager.add(vip)
        route = lookups.route("get", dst=str(vip.interface.ip), family=10)[0]
        late += route["type"] != 2  # RTN_LOCAL: the kernel delivers it to this host
        assert await manager.remove(vip)
        await trio.sleep(0.002)
    print(json.dumps({"late": late}))

trio.run(main, int(sys.argv[1]))
"""


def test_ipv6_vip_receivable_when_added(netlab: Lab) -> None:
    """The kernel acknowledges an IPv6 address before it routes it locally; announcing it
    then loses the first packets it draws. The agent's add returns only once it is local."""
    done = netlab.run(
        "dir-a", sys.executable, "-c", _RECEIVABLE_CHECK, "300", f"{vip_for(family=6)}/64"
    )
    assert json.loads(done.stdout) == {"late": 0}


# -- graceful stop and preemption back -------------------------------------------------


@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_sigterm_handover_then_preemption_back(netlab: Lab, family: int) -> None:
    a, b = start_pair(netlab, family=family)
    vip = vip_for(family=family)
    mac_a, mac_b = netlab.mac("dir-a"), netlab.mac("dir-b")
    _vip_only_on(netlab, "dir-a", vip)
    run = ProberRun(netlab, vip)
    wait_for(lambda: netlab.neigh("client", vip) == mac_a, 15, "client → dir-a")
    netlab.wait_echo_replies("dir-a")
    t_stop = time.monotonic()
    a.stop()
    assert a.proc is not None and a.proc.returncode == 0, a.log()[-3000:]
    b.wait_state("MASTER", STATE_TIMEOUT_S)
    prio0 = netlab.wait_wire(
        lambda f: f.kind == "vrrp" and f.info["priority"] == 0, WIRE_TIMEOUT_S, "prio 0", t_stop
    )
    assert prio0.src_mac == mac_a
    netlab.wait_wire(
        _announce(family, vip, mac_b), WIRE_TIMEOUT_S, "announcement from dir-b", t_stop
    )
    # The stopped agent removed its VIP before exiting.
    assert netlab.who_has(vip) == {"dir-b"}
    assert a.records("vip.removed")[-1]["vips"] == [f"{vip}/{24 if family == 4 else 64}"]
    wait_for(lambda: netlab.neigh("client", vip) == mac_b, 15, "client → dir-b")
    netlab.wait_echo_replies("dir-b")
    handover = run.stop()
    assert handover["sent"] > 0 and handover["send_errors"] == 0
    assert handover["lost"] == 0, handover
    assert [(c["old"], c["new"]) for c in handover["mac_changes"]] == [(mac_a, mac_b)]
    assert a.states() == ["BACKUP", "MASTER", "STOPPED"]
    assert b.states() == ["BACKUP", "MASTER"]

    # Preemption back: dir-a (150) restarts and takes over from dir-b (100).
    run = ProberRun(netlab, vip)
    netlab.wait_echo_replies("dir-b")
    t_restart = time.monotonic()
    a.start()
    a.wait_state("MASTER", STATE_TIMEOUT_S)
    b.wait_state("BACKUP", STATE_TIMEOUT_S)
    netlab.wait_wire(_announce(family, vip, mac_a), WIRE_TIMEOUT_S, "announcement", t_restart)
    _vip_only_on(netlab, "dir-a", vip)
    wait_for(lambda: netlab.neigh("client", vip) == mac_a, 15, "client → dir-a")
    netlab.wait_echo_replies("dir-a")
    preempt = run.stop()
    assert preempt["sent"] > 0 and preempt["lost"] == 0, preempt
    assert [(c["old"], c["new"]) for c in preempt["mac_changes"]] == [(mac_b, mac_a)]
    assert a.states() == ["BACKUP", "MASTER", "STOPPED", "BACKUP", "MASTER"]
    assert b.states() == ["BACKUP", "MASTER", "BACKUP"]

    # Stopping the backup moves nothing and puts nothing on the wire.
    t_stop_b = time.monotonic()
    b.stop()
    assert b.proc is not None and b.proc.returncode == 0, b.log()[-3000:]
    assert b.states() == ["BACKUP", "MASTER", "BACKUP", "STOPPED"]
    # Five adverts of dir-a's after the stop (one capture socket: anything dir-b sent
    # before them was read before them), and none from dir-b.
    wait_adverts(netlab, mac_a, t_stop_b, 5)
    assert adverts_from(netlab, mac_b, t_stop_b) == []
    assert a.state() == "MASTER" and len(a.transitions()) == 5
    assert netlab.who_has(vip) == {"dir-a"}


# -- carrier loss and tracked interfaces -----------------------------------------------


def test_link_down_fault_and_back(netlab: Lab) -> None:
    a, b = start_pair(netlab)
    _vip_only_on(netlab, "dir-a")
    netlab.link("dir-a", "eth0", up=False)
    a.wait_state("FAULT", STATE_TIMEOUT_S)
    b.wait_state("MASTER", STATE_TIMEOUT_S)
    _vip_only_on(netlab, "dir-b")
    netlab.link("dir-a", "eth0", up=True)
    a.wait_state("MASTER", STATE_TIMEOUT_S)
    b.wait_state("BACKUP", STATE_TIMEOUT_S)
    _vip_only_on(netlab, "dir-a")
    assert a.states() == ["BACKUP", "MASTER", "FAULT", "BACKUP", "MASTER"]
    assert b.states() == ["BACKUP", "MASTER", "BACKUP"]
    result = _probe(netlab, vip_address(), 0.3)
    assert result["lost"] == 0 and set(result["macs"]) == {netlab.mac("dir-a")}, result


def test_tracked_interface_lowers_priority(netlab2: Lab) -> None:
    # One instance, on eth0 only: eth1 is merely tracked.
    track = {"track_interfaces": '[{ name = "eth1", weight = -60 }]'}
    a, b = start_pair(
        netlab2,
        a_kwargs={"instances": [InstanceSpec(priority=150, advert_s=0.1)], "instance_extra": track},
        b_kwargs={"instances": [InstanceSpec(priority=100, advert_s=0.1)]},
    )
    mac_a = netlab2.mac("dir-a")
    t_down = time.monotonic()
    netlab2.link("dir-a", "eth1", up=False)
    # dir-a advertises 150 - 60 = 90, below dir-b's 100: dir-b preempts it.
    netlab2.wait_wire(
        lambda f: f.kind == "vrrp" and f.src_mac == mac_a and f.info["priority"] == 90,
        WIRE_TIMEOUT_S, "dir-a advertising 90", t_down,
    )  # fmt: skip
    b.wait_state("MASTER", STATE_TIMEOUT_S)
    a.wait_state("BACKUP", STATE_TIMEOUT_S)
    _vip_only_on(netlab2, "dir-b")
    assert a.states() == ["BACKUP", "MASTER", "BACKUP"]  # not FAULT: eth0 is fine
    netlab2.link("dir-a", "eth1", up=True)
    a.wait_state("MASTER", STATE_TIMEOUT_S)
    b.wait_state("BACKUP", STATE_TIMEOUT_S)
    _vip_only_on(netlab2, "dir-a")
    assert b.states() == ["BACKUP", "MASTER", "BACKUP"]


# -- unicast ---------------------------------------------------------------------------


def test_unicast_election_and_crash(netlab: Lab) -> None:
    since = time.monotonic()
    a, b = start_pair(netlab, unicast=True)
    _vip_only_on(netlab, "dir-a")
    mac_a, mac_b = netlab.mac("dir-a"), netlab.mac("dir-b")
    netlab.wait_wire(
        lambda f: f.kind == "vrrp" and f.src_mac == mac_a, WIRE_TIMEOUT_S, "advert", since
    )
    a.crash()
    b.wait_state("MASTER", STATE_TIMEOUT_S)
    netlab.wait_wire(is_garp(vip_address(), mac_b), WIRE_TIMEOUT_S, "GARP from dir-b", since)
    netlab.wait_wire(
        lambda f: f.kind == "vrrp" and f.src_mac == mac_b, WIRE_TIMEOUT_S, "advert from b", since
    )
    frames = netlab.wire("vrrp", since)
    assert frames
    peers = {mac_a: lan_address("dir-b"), mac_b: lan_address("dir-a")}
    for f in frames:
        assert f.info["dst"] == peers[f.src_mac], f
        assert not int(f.dst_mac.split(":")[0], 16) & 1, f  # not a multicast MAC
    assert b.states() == ["BACKUP", "MASTER"]
    result = _probe(netlab, vip_address(), 0.3)
    assert result["answered"] > 0 and set(result["macs"]) == {mac_b}, result


# -- sync group on two LANs ------------------------------------------------------------


def test_sync_group_moves_both_instances(netlab2: Lab) -> None:
    a, b = start_pair(netlab2, sync_group="G1")
    assert [s.interface for s in a.instances] == ["eth0", "eth1"]
    vips = [vip_address(lan) for lan in (0, 1)]
    for vip in vips:
        _vip_only_on(netlab2, "dir-a", vip)
    netlab2.link("dir-a", "eth1", up=False)
    b.wait_state("MASTER", STATE_TIMEOUT_S)  # both instances
    a.wait_state("FAULT", STATE_TIMEOUT_S, instance="VI_2")
    for vip in vips:
        _vip_only_on(netlab2, "dir-b", vip)
    a.wait_state("FAULT", STATE_TIMEOUT_S)  # VI_1 too: the group left MASTER as one
    result = _probe(netlab2, vips[0], 0.3)
    assert result["lost"] == 0 and set(result["macs"]) == {netlab2.mac("dir-b")}, result
    netlab2.link("dir-a", "eth1", up=True)
    a.wait_state("MASTER", STATE_TIMEOUT_S)
    b.wait_state("BACKUP", STATE_TIMEOUT_S)
    for vip in vips:
        _vip_only_on(netlab2, "dir-a", vip)
    for name in ("VI_1", "VI_2"):
        assert a.states(name) == ["BACKUP", "MASTER", "FAULT", "BACKUP", "MASTER"], name
        assert b.states(name) == ["BACKUP", "MASTER", "BACKUP"], name
    # The group's transition may be logged after its members': wait for the third.
    records = wait_for(
        lambda: b.records("vrrp.group_transition")[2:] and b.records("vrrp.group_transition"),
        15, "three group transitions on dir-b",
    )  # fmt: skip
    groups = [(r["group"], r["new"]) for r in records]
    assert groups == [("G1", "BACKUP"), ("G1", "MASTER"), ("G1", "BACKUP")]


def test_sync_group_sigterm_handover_on_both_lans(netlab2: Lab) -> None:
    a, b = start_pair(netlab2, sync_group="G1")
    vips = [vip_address(lan) for lan in (0, 1)]
    for vip in vips:
        _vip_only_on(netlab2, "dir-a", vip)
    runs = [ProberRun(netlab2, vips[lan], dev=f"eth{lan}") for lan in (0, 1)]

    def client_on(node: str) -> bool:
        return all(
            netlab2.neigh("client", vips[lan]) == netlab2.mac(node, f"eth{lan}") for lan in (0, 1)
        )

    wait_for(lambda: client_on("dir-a"), 15, "client resolving both VIPs to dir-a")
    netlab2.wait_echo_replies("dir-a", count=20)
    a.stop()
    assert a.proc is not None and a.proc.returncode == 0, a.log()[-3000:]
    b.wait_state("MASTER", STATE_TIMEOUT_S)
    wait_for(lambda: client_on("dir-b"), 15, "client resolving both VIPs to dir-b")
    for vip in vips:
        _vip_only_on(netlab2, "dir-b", vip)
    netlab2.wait_echo_replies("dir-b", count=20)
    for lan, run in enumerate(runs):
        result = run.stop()
        assert result["sent"] > 0 and result["lost"] == 0, (lan, result)
    assert a.states("VI_1") == a.states("VI_2") == ["BACKUP", "MASTER", "STOPPED"]


# -- split brain -----------------------------------------------------------------------


def test_split_brain_heals_to_one_master_with_fresh_garp(netlab: Lab) -> None:
    # No delayed second burst: every announcement after the first burst comes from the split
    # and its healing.
    a, b = start_pair(netlab, instance_extra={"garp_master_delay": "0"})
    mac_a, mac_b = netlab.mac("dir-a"), netlab.mac("dir-b")
    _vip_only_on(netlab, "dir-a")
    run = ProberRun(netlab, vip_address())
    wait_for(lambda: netlab.neigh("client", vip_address()) == mac_a, 15, "client → dir-a")
    netlab.cut()
    b.wait_state("MASTER", STATE_TIMEOUT_S)
    assert a.state() == "MASTER"
    wait_for(lambda: netlab.who_has_vip() == {"dir-a", "dir-b"}, 15, "two masters")
    # The client hears both: the newer master's announcement wins its neighbour entry.
    wait_for(lambda: netlab.neigh("client", vip_address()) == mac_b, 15, "client → dir-b")
    netlab.wait_echo_replies("dir-b")  # the prober has had answers from dir-b
    t_heal = time.monotonic()
    netlab.heal()
    b.wait_state("BACKUP", STATE_TIMEOUT_S)
    _vip_only_on(netlab, "dir-a")
    netlab.wait_wire(is_garp(vip_address(), mac_a), WIRE_TIMEOUT_S, "fresh GARP", t_heal)
    wait_for(lambda: netlab.neigh("client", vip_address()) == mac_a, 15, "client → dir-a")
    netlab.wait_echo_replies("dir-a")
    result = run.stop()
    assert [(c["old"], c["new"]) for c in result["mac_changes"]] == [
        (mac_a, mac_b),
        (mac_b, mac_a),
    ], result["mac_changes"]
    assert result["mac_changes"][-1]["t"] > t_heal
    assert a.states() == ["BACKUP", "MASTER"]
    assert b.states() == ["BACKUP", "MASTER", "BACKUP"]
    tail = _probe(netlab, vip_address(), 0.3)
    assert tail["lost"] == 0 and set(tail["macs"]) == {mac_a}, tail


# -- hostile input ---------------------------------------------------------------------


def _rejections(directors: list[E2EDirector]) -> set[str]:
    return {str(r.get("reason")) for d in directors for r in d.records("vrrp.advert_rejected")}


def test_malformed_adverts_change_nothing(netlab: Lab) -> None:
    allowed = f'["{lan_address("dir-a")}", "{lan_address("dir-b")}"]'
    a, b = start_pair(netlab, instance_extra={"accept_from": allowed})
    _vip_only_on(netlab, "dir-a")
    client, mac = lan_address("client"), netlab.mac("client")
    good = vrrp_v3_ipv4(client, "224.0.0.18", priority=254)
    bad_checksum = good[:6] + bytes([good[6] ^ 0xFF, good[7]]) + good[8:]
    v2 = vrrp_v3_ipv4(client, "224.0.0.18", priority=254, version=2, interval_cs=100)
    # Garbage for the pair's VRID (51): other VRIDs never get past the kernel's socket filter.
    garbage = bytes([0x3F, 51]) + bytes((i * 73 + 41) % 256 for i in range(2, 40))
    frames = {
        "type": ipv4_frame(mac, client, garbage),  # "version 3", no such packet type
        "checksum": ipv4_frame(mac, client, bad_checksum),
        "ttl": ipv4_frame(mac, client, good, ttl=64),
        "length": ipv4_frame(mac, client, good[:10]),  # truncated
        "short": ipv4_frame(mac, client, good[:5]),  # truncated inside the header
        "source": ipv4_frame(mac, client, good),  # valid, higher priority, not allowed
        "version": ipv4_frame(mac, client, v2),  # a valid v2 advert to a v3 instance
    }
    before = (a.transitions(), b.transitions())
    send_frames(netlab, "client", list(frames.values()), rounds=20)
    t_sent = time.monotonic()

    for director in (a, b):
        wait_for(
            lambda d=director: set(frames) <= _rejections([d]) or None,  # type: ignore[misc]
            15, f"{director.node} logging every rejection",
        )  # fmt: skip
    assert _rejections([a, b]) == set(frames)
    # Five advert intervals of dir-a's after the last frame was sent.
    wait_adverts(netlab, netlab.mac("dir-a"), t_sent, 5)
    assert (a.transitions(), b.transitions()) == before
    assert a.state() == "MASTER" and b.state() == "BACKUP"
    assert netlab.who_has_vip() == {"dir-a"}

    # Rejected adverts do not reset the backup's master-down timer: with the master gone
    # and the client flooding higher-priority adverts from a source not allowed, dir-b
    # still takes over.
    flood = start_frames(netlab, "client", [frames["source"], frames["checksum"]], rounds=2000)
    a.crash()
    b.wait_state("MASTER", STATE_TIMEOUT_S)
    assert flood.poll() is None, "the flood ended before the takeover"
    netlab.kill(flood)
    assert b.states() == ["BACKUP", "MASTER"]


def test_hmac_election_forged_and_replayed_adverts(netlab: Lab) -> None:
    key = netlab.tmpdir / "vrrp.key"
    key.write_text("5a" * 32 + "\n")
    key.chmod(0o600)
    a, b = start_pair(netlab, instance_extra={"hmac_key_file": f'"{key}"'})
    _vip_only_on(netlab, "dir-a")
    mac_a = netlab.mac("dir-a")
    signed = netlab.wait_wire(
        lambda f: f.kind == "vrrp" and f.src_mac == mac_a, WIRE_TIMEOUT_S, "advert"
    )
    client, mac = lan_address("client"), netlab.mac("client")
    forged = ipv4_frame(mac, client, vrrp_v3_ipv4(client, "224.0.0.18", priority=254))
    before = (a.transitions(), b.transitions())
    send_frames(netlab, "client", [forged], rounds=20)
    t_sent = time.monotonic()
    for director in (a, b):
        wait_for(
            lambda d=director: "auth" in _rejections([d]) or None,  # type: ignore[misc]
            15, f"{director.node} rejecting the forged advert",
        )  # fmt: skip
    wait_adverts(netlab, mac_a, t_sent, 5)
    assert (a.transitions(), b.transitions()) == before
    assert a.state() == "MASTER" and b.state() == "BACKUP"
    assert netlab.who_has_vip() == {"dir-a"}

    # A recorded advert of dir-a, replayed (from the client, with dir-a's source address)
    # after dir-a crashed, does not keep dir-b from taking over.
    replayed = ipv4_frame(mac, lan_address("dir-a"), bytes.fromhex(signed.info["raw"]))
    flood = start_frames(netlab, "client", [replayed], rounds=6000)
    # The flood is on the wire before the crash (its sender may start late on a busy
    # machine): dir-b already refuses the old advert as a replay while dir-a lives.
    wait_for(
        lambda: "replay" in _rejections([b]) or None, 15, "dir-b rejecting the replayed advert"
    )
    a.crash()
    b.wait_state("MASTER", STATE_TIMEOUT_S)
    assert flood.poll() is None, "the replay ended before the takeover"
    netlab.kill(flood)
    assert "replay" in _rejections([b])
    assert b.states() == ["BACKUP", "MASTER"]
