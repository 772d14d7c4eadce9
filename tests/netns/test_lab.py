"""Tests of the namespace lab itself, with keepalived as both directors.

They prove the lab's parts on the real kernel before the agent uses them: wiring and
cleanup, carrier loss, split brain by port isolation, the wire watcher, the prober's exact
counting, and keepalived elections and failovers (multicast, unicast, v2 with
authentication, IPv6, a two-LAN sync group). Waits are condition loops with generous
timeouts; time is only asserted as a protocol lower bound (a backup cannot take over
before hearing silence for longer than two advert intervals), never as a speed.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.checksum import internet_checksum, pseudo_header

from .keepalived import KeepalivedDirector, keepalived_conf
from .lab import (
    DIRECTORS,
    Frame,
    HadirectorDirector,
    InstanceSpec,
    Lab,
    Transition,
    decode_frame,
    hadirector_command,
    hadirector_toml,
    lan_address,
    vip_address,
    wait_for,
)
from .prober import ProberRun, start_echo_server, summarize

pytestmark = pytest.mark.netns

ADVERT_S = 0.1
STATE_TIMEOUT_S = 30.0


def _ns_exists(name: str) -> bool:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return any(line.split()[0] == name for line in listing.splitlines() if line.split())


def _probe_for(
    lab: Lab, target: str, seconds: float, node: str = "client", dev: str = "eth0"
) -> dict[str, Any]:
    run = ProberRun(lab, target, node=node, dev=dev, duration_s=seconds)
    return run.result(timeout_s=seconds + 60)


# -- the lab without agents -------------------------------------------------------------


def test_wiring_addresses_and_neighbours(netlab: Lab) -> None:
    for node in ("dir-a", "dir-b"):
        result = _probe_for(netlab, lan_address(node), 0.3)
        assert result["sent"] > 0
        assert result["lost"] == 0, result
        assert set(result["macs"]) == {netlab.mac(node)}
        assert netlab.neigh("client", lan_address(node)) == netlab.mac(node)
    v6 = _probe_for(netlab, lan_address("dir-b", family=6), 0.3)
    assert v6["sent"] > 0 and v6["lost"] == 0, v6
    assert set(v6["macs"]) == {netlab.mac("dir-b")}
    # The watcher saw the client resolve dir-a (ARP) and dir-b (neighbour solicitation).
    client_mac = netlab.mac("client")
    netlab.wait_wire(
        lambda f: f.kind == "arp" and f.src_mac == client_mac
        and f.info["target_ip"] == lan_address("dir-a"),
        10, "client's ARP request for dir-a",
    )  # fmt: skip
    netlab.wait_wire(
        lambda f: f.kind == "na" and f.src_mac == netlab.mac("dir-b")
        and f.info["target"] == lan_address("dir-b", family=6),
        10, "dir-b's neighbour advertisement",
    )  # fmt: skip


def test_link_down_is_carrier_loss_and_heals(netlab: Lab) -> None:
    netlab.link("dir-a", "eth0", up=False)
    out = netlab.run("dir-a", "ip", "link", "show", "dev", "eth0").stdout
    assert "NO-CARRIER" in out
    assert _probe_for(netlab, lan_address("dir-a"), 0.2)["answered"] == 0
    netlab.link("dir-a", "eth0", up=True)
    wait_for(
        lambda: "NO-CARRIER" not in netlab.run("dir-a", "ip", "link", "show", "eth0").stdout,
        10, "carrier back",
    )  # fmt: skip
    result = _probe_for(netlab, lan_address("dir-a"), 0.3)
    assert result["answered"] > 0


def test_cut_separates_directors_but_not_the_client(netlab: Lab) -> None:
    assert _probe_for(netlab, lan_address("dir-b"), 0.2, node="dir-a")["lost"] == 0
    netlab.cut()
    cut = _probe_for(netlab, lan_address("dir-b"), 0.3, node="dir-a")
    assert cut["sent"] > 0 and cut["answered"] == 0
    for node in DIRECTORS:
        assert _probe_for(netlab, lan_address(node), 0.2)["lost"] == 0
    netlab.heal()
    assert _probe_for(netlab, lan_address("dir-b"), 0.3, node="dir-a")["answered"] > 0
    netlab.cut("dir-b")  # one director named: cut from the other one
    assert _probe_for(netlab, lan_address("dir-a"), 0.3, node="dir-b")["answered"] == 0
    netlab.heal("dir-b")
    assert _probe_for(netlab, lan_address("dir-a"), 0.3, node="dir-b")["answered"] > 0


@pytest.mark.usefixtures("netns_required")
def test_close_removes_namespaces_and_processes() -> None:
    with Lab() as lab:
        names = [lab.ns(n) for n in ("switch", "dir-a", "dir-b", "client")]
        assert all(_ns_exists(n) for n in names)
        sleeper = lab.popen("dir-a", "sleep", "600")
        tmpdir = lab.tmpdir
    assert sleeper.poll() is not None
    assert not any(_ns_exists(n) for n in names)
    assert not tmpdir.exists()


@pytest.mark.usefixtures("netns_required")
def test_close_cleans_up_after_a_failing_body() -> None:
    with pytest.raises(RuntimeError, match="boom"), Lab() as lab:
        name = lab.ns("client")
        sleeper = lab.popen("client", "sleep", "600")
        raise RuntimeError("boom")
    assert sleeper.poll() is not None
    assert not _ns_exists(name)


# -- the prober's counting ---------------------------------------------------------------


def test_summary_counts_exactly() -> None:
    sends = [i * 0.002 for i in range(10)]
    replies = {i: (i * 0.002 + 0.0001, "aa") for i in range(10) if i not in (3, 4, 5)}
    replies[8] = (8 * 0.002 + 0.0001, "bb")
    result = summarize(sends, replies, duplicates=2, gap_ms=5)
    assert (result["sent"], result["answered"], result["lost"]) == (10, 7, 3)
    assert result["lost_runs"] == [{"first_seq": 3, "count": 3, "start": sends[3], "end": sends[5]}]
    assert [g["lost"] for g in result["gaps"]] == [3]
    assert result["longest_gap_ms"] == pytest.approx(8.0)
    assert [(c["old"], c["new"]) for c in result["mac_changes"]] == [("aa", "bb"), ("bb", "aa")]
    # A silent tail counts up to the last probe sent.
    tail = summarize(sends, {0: (0.0001, "aa")}, gap_ms=5)
    assert tail["lost"] == 9 and tail["longest_gap_ms"] == pytest.approx(17.9)


@pytest.mark.parametrize(
    ("family", "udp_port"), [(4, None), (6, None), (4, 7007), (6, 7007)],
    ids=["icmp4", "icmp6", "udp4", "udp6"],
)  # fmt: skip
def test_prober_counts_a_vip_taken_away_by_hand(
    netlab: Lab, family: int, udp_port: int | None
) -> None:
    vip = vip_address(family=family)
    plen = 24 if family == 4 else 64
    netlab.run("dir-a", "ip", "addr", "add", f"{vip}/{plen}", "dev", "eth0", "nodad")
    if udp_port is not None:
        start_echo_server(netlab, "dir-a", udp_port)
    run = ProberRun(netlab, vip, udp_port=udp_port)
    wait_for(lambda: netlab.neigh("client", vip), 10, "client resolving the VIP")
    time.sleep(0.3)
    t_del_start = time.monotonic()
    netlab.run("dir-a", "ip", "addr", "del", f"{vip}/{plen}", "dev", "eth0")
    t_del_done = time.monotonic()
    time.sleep(0.2)
    t_add_start = time.monotonic()
    netlab.run("dir-a", "ip", "addr", "add", f"{vip}/{plen}", "dev", "eth0", "nodad")
    # The VIP answers once the kernel has its local route, which for IPv6 comes from a
    # work queue some time after ``ip addr add`` returns: the window ends when it is seen.
    wait_for(lambda: _has_local_route(netlab, "dir-a", vip, family), 10, "the VIP's local route")
    t_add_done = time.monotonic()
    time.sleep(0.3)
    result = run.stop()

    assert result["send_errors"] == 0
    assert result["protocol"] == ("icmp" if udp_port is None else "udp")
    # Every slot of the run, by the prober's own clock readings, was either probed or
    # counted as skipped.
    assert result["sent"] + result["skipped_slots"] == result["slots"]
    interval_s = result["interval_ms"] / 1000
    assert result["slots"] == int((result["ended"] - result["started"]) / interval_s) + 1
    # All losses form one run, inside the window the VIP could have been missing, and
    # covering the window it certainly was missing.
    slack = 0.002 + result["max_send_gap_ms"] / 1000
    assert len(result["lost_runs"]) == 1, result["lost_runs"]
    lost_run = result["lost_runs"][0]
    assert lost_run["count"] == result["lost"]
    assert t_del_start - 0.001 <= lost_run["start"] <= t_del_done + slack
    assert t_add_start - slack <= lost_run["end"] <= t_add_done
    assert result["longest_gap_ms"] >= (t_add_start - t_del_done) * 1000
    assert result["mac_changes"] == []


def _has_local_route(lab: Lab, node: str, address: str, family: int) -> bool:
    routes = lab.run(node, "ip", f"-{family}", "route", "show", "table", "local", address)
    return any(line.split()[:2] == ["local", address] for line in routes.stdout.splitlines())


# -- keepalived as both directors -------------------------------------------------------


def _pair(lab: Lab, **kwargs: Any) -> tuple[KeepalivedDirector, KeepalivedDirector]:
    a = KeepalivedDirector(lab, "dir-a", 150, kwargs.pop("advert_s", ADVERT_S), **kwargs)
    b = KeepalivedDirector(lab, "dir-b", 100, a.instances[0].advert_s, **kwargs)
    try:
        # One at a time: started together on a loaded machine, the backup may time out
        # first and be master for a moment.
        a.start()
        a.wait_state("MASTER", STATE_TIMEOUT_S)
        b.start()
        b.wait_state("BACKUP", STATE_TIMEOUT_S)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n--- dir-a\n{a.log()[-3000:]}\n--- dir-b\n{b.log()}") from exc
    return a, b


def _is_garp_for(vip: str, mac: str) -> Any:
    def match(f: Frame) -> bool:
        return (
            f.kind == "arp"
            and f.src_mac == mac
            and f.info["gratuitous"]
            and (f.info["sender_ip"] == vip)
        )

    return match


def test_keepalived_conf_text() -> None:
    spec = InstanceSpec(name="VI_9", vrid=9, priority=120, advert_s=2, version=2,
                        preempt=False, unicast_src="192.0.2.1", unicast_peers=("192.0.2.2",),
                        auth_pass="secret")  # fmt: skip
    text = keepalived_conf([spec], router_id="r1", old_unicast_checksum=True)
    for line in ("vrrp_version 2", "virtual_router_id 9", "priority 120", "advert_int 2",
                 "nopreempt", "unicast_src_ip 192.0.2.1", "auth_pass secret",
                 "old_unicast_checksum", "192.0.2.100/24 dev eth0", "state BACKUP"):  # fmt: skip
        assert line in {t.strip() for t in text.splitlines()}, line
    with pytest.raises(ValueError):
        keepalived_conf([InstanceSpec(advert_s=0.5, version=2)], router_id="r")
    with pytest.raises(ValueError):
        keepalived_conf([InstanceSpec(auth_pass="x", version=3)], router_id="r")


@pytest.mark.keepalived
@pytest.mark.parametrize(
    ("label", "kwargs", "family"),
    [
        ("v3-multicast", {}, 4),
        ("v3-unicast", {"unicast": True}, 4),
        ("v2-auth", {"version": 2, "advert_s": 1.0, "auth_pass": "s3cret"}, 4),
        ("v3-ipv6", {"family": 6}, 6),
    ],
)
def test_keepalived_election(
    netlab: Lab, keepalived_bin: str, label: str, kwargs: dict[str, Any], family: int
) -> None:
    a, b = _pair(netlab, **kwargs)
    vip = vip_address(family=family)
    wait_for(lambda: netlab.who_has(vip) == {"dir-a"}, 10, "the VIP on dir-a only")
    # The master's adverts are on the wire as configured; the backup is silent.
    mac_a = netlab.mac("dir-a")
    version = kwargs.get("version", 3)
    since = time.monotonic()
    advert = netlab.wait_wire(
        lambda f: f.kind == "vrrp" and f.src_mac == mac_a, 15, "an advert from dir-a", since
    )
    assert advert.info["version"] == version
    assert advert.info["vrid"] == 51
    assert advert.info["priority"] == 150
    assert advert.info["addresses"] == [vip]
    assert advert.info["interval_cs"] == round(a.instances[0].advert_s * 100)
    if kwargs.get("unicast"):
        assert advert.info["dst"] == lan_address("dir-b")
    else:
        assert advert.info["ttl"] == 255
    # Three more adverts from dir-a (one capture socket: anything dir-b sent before the
    # last of them was read before it), and none from dir-b.
    wait_for(
        lambda: len([f for f in netlab.wire("vrrp", advert.t) if f.src_mac == mac_a]) >= 4,
        15, "three more adverts from dir-a",
    )  # fmt: skip
    assert not [f for f in netlab.wire("vrrp", since) if f.src_mac == netlab.mac("dir-b")]
    # The client reaches the VIP at dir-a.
    result = _probe_for(netlab, vip, 0.3)
    assert result["lost"] == 0 and set(result["macs"]) == {mac_a}
    assert [t.new for t in a.transitions()] == ["BACKUP", "MASTER"]
    assert [t.new for t in b.transitions()] == ["BACKUP"]


@pytest.mark.keepalived
@pytest.mark.parametrize("family", [4, 6])
def test_keepalived_crash_failover(netlab: Lab, keepalived_bin: str, family: int) -> None:
    a, b = _pair(netlab, family=family)
    vip = vip_address(family=family)
    mac_a, mac_b = netlab.mac("dir-a"), netlab.mac("dir-b")
    run = ProberRun(netlab, vip)
    wait_for(lambda: netlab.neigh("client", vip) == mac_a, 10, "client resolving VIP to dir-a")
    netlab.wait_echo_replies("dir-a")
    t_crash = time.monotonic()
    a.crash()
    b.wait_state("MASTER", STATE_TIMEOUT_S)
    wait_for(lambda: netlab.neigh("client", vip) == mac_b, 15, "client's entry moving to dir-b")
    if family == 4:
        netlab.wait_wire(_is_garp_for(vip, mac_b), 10, "a gratuitous ARP from dir-b", t_crash)
    else:
        netlab.wait_wire(
            lambda f: f.kind == "na" and f.src_mac == mac_b and f.info["target"] == vip
            and f.info["override"] and not f.info["solicited"],
            10, "an unsolicited NA from dir-b", t_crash,
        )  # fmt: skip
    wait_for(lambda: netlab.who_has(vip) >= {"dir-b"}, 10, "the VIP on dir-b")
    netlab.wait_echo_replies("dir-b")
    result = run.stop()

    assert result["lost"] > 0
    assert [(c["old"], c["new"]) for c in result["mac_changes"]] == [(mac_a, mac_b)]
    assert result["mac_changes"][0]["t"] > t_crash
    # No backup may take over before hearing silence for more than 2 advert intervals.
    assert result["longest_gap_ms"] >= 2 * ADVERT_S * 1000
    assert [t.new for t in b.transitions()] == ["BACKUP", "MASTER"]
    assert b.transitions()[-1].t > t_crash


@pytest.mark.keepalived
def test_keepalived_graceful_stop_and_preemption(netlab: Lab, keepalived_bin: str) -> None:
    a, b = _pair(netlab)
    run = ProberRun(netlab, vip_address())
    netlab.wait_echo_replies("dir-a")  # the prober has had answers from dir-a
    t_stop = time.monotonic()
    a.stop()
    b.wait_state("MASTER", STATE_TIMEOUT_S)
    # keepalived reports STOP through the notify FIFO, read by a thread of this process.
    a.wait_state("STOP", STATE_TIMEOUT_S)
    wait_for(lambda: netlab.who_has_vip() == {"dir-b"}, 10, "VIP released by dir-a")
    # Priority 0 from the stopping master: dir-b answers for the VIP well before a
    # crash would let it (it waits Skew_Time, not Master_Down_Interval).
    prio0 = netlab.wait_wire(
        lambda f: f.kind == "vrrp" and f.info["priority"] == 0, 10, "priority 0", t_stop
    )
    assert prio0.src_mac == netlab.mac("dir-a")
    netlab.wait_echo_replies("dir-b")  # ... and from dir-b, before dir-a takes back
    t_restart = time.monotonic()
    a.start()
    a.wait_state("MASTER", STATE_TIMEOUT_S)
    b.wait_state("BACKUP", STATE_TIMEOUT_S)
    wait_for(lambda: netlab.who_has_vip() == {"dir-a"}, 10, "VIP back on dir-a only")
    netlab.wait_wire(_is_garp_for(vip_address(), netlab.mac("dir-a")), 10, "GARP", t_restart)
    wait_for(lambda: netlab.neigh("client", vip_address()) == netlab.mac("dir-a"), 10, "neigh")
    netlab.wait_echo_replies("dir-a")
    result = run.stop()
    changes = [(c["old"], c["new"]) for c in result["mac_changes"]]
    mac_a, mac_b = netlab.mac("dir-a"), netlab.mac("dir-b")
    assert changes == [(mac_a, mac_b), (mac_b, mac_a)]
    assert [t.new for t in b.transitions()] == ["BACKUP", "MASTER", "BACKUP"]


@pytest.mark.keepalived
def test_keepalived_split_brain(netlab: Lab, keepalived_bin: str) -> None:
    a, b = _pair(netlab)
    netlab.cut()
    b.wait_state("MASTER", STATE_TIMEOUT_S)
    assert a.state() == "MASTER"
    wait_for(lambda: netlab.who_has_vip() == {"dir-a", "dir-b"}, 10, "two masters")
    # The client still hears both directors.
    for node in DIRECTORS:
        assert _probe_for(netlab, lan_address(node), 0.2)["lost"] == 0
    netlab.heal()
    b.wait_state("BACKUP", STATE_TIMEOUT_S)
    assert a.state() == "MASTER"
    wait_for(lambda: netlab.who_has_vip() == {"dir-a"}, 10, "one master again")


@pytest.mark.keepalived
def test_keepalived_sync_group_on_two_lans(netlab2: Lab, keepalived_bin: str) -> None:
    a, b = _pair(netlab2, sync_group="G1")
    assert [s.interface for s in a.instances] == ["eth0", "eth1"]

    def vips_on(node: str, only: bool) -> bool:
        holders = [netlab2.who_has(vip_address(lan)) for lan in (0, 1)]
        return all(h == {node} if only else node in h for h in holders)

    wait_for(lambda: vips_on("dir-a", only=True), 10, "VIPs on dir-a")
    a.crash()
    b.wait_state("MASTER", STATE_TIMEOUT_S)
    wait_for(lambda: vips_on("dir-b", only=False), 10, "VIPs moved to dir-b")
    for lan in (0, 1):
        result = _probe_for(netlab2, vip_address(lan), 0.2, dev=f"eth{lan}")
        assert result["lost"] == 0 and set(result["macs"]) == {netlab2.mac("dir-b", f"eth{lan}")}
    # The group's state comes through the notify FIFO after its members'.
    wait_for(lambda: b.group_states.get("G1") == "MASTER", 10, "group G1 MASTER on dir-b")


def test_decode_frame_arp_and_vrrp() -> None:
    garp = bytes.fromhex(
        "ffffffffffff" "020000000001" "0806" "0001080006040001" "020000000001" "c0000264"
        "ffffffffffff" "c0000264"
    )  # fmt: skip
    kind, info = decode_frame(garp) or ("", {})
    assert kind == "arp" and info["gratuitous"] and info["sender_ip"] == "192.0.2.100"
    vrrp = bytes.fromhex(
        "01005e000012" "020000000001" "0800"
        "45c00020000000 00ff70 0000 c0000201 e0000012".replace(" ", "")
        + "3133960100 0a 0000 c0000264".replace(" ", "")
    )  # fmt: skip
    kind, info = decode_frame(vrrp) or ("", {})
    assert kind == "vrrp"
    assert (info["version"], info["vrid"], info["priority"], info["interval_cs"]) == (
        3, 51, 150, 10
    )  # fmt: skip
    assert info["addresses"] == ["192.0.2.100"] and info["src"] == "192.0.2.1"


# -- the hadirector adapter (runs once `hadirector run` exists) --------------------------


def _hadirector_cli() -> list[str]:
    command = hadirector_command()
    if command is None:
        pytest.skip("hadirector is not installed")
    return command


@pytest.mark.parametrize(
    "specs",
    [
        [InstanceSpec(advert_s=0.01)],
        [InstanceSpec(version=2, advert_s=1.0, auth_pass="s3cret", unicast_src="192.0.2.1",
                      unicast_peers=("192.0.2.2",), preempt=False)],
        [InstanceSpec(unicast_peers=("192.0.2.2",), old_unicast_checksum=True)],
        [InstanceSpec(), InstanceSpec(name="VI_2", interface="eth1", vrid=52,
                                      vips=("2001:db8:2::100/64",))],
    ],
    ids=["v3", "v2-unicast-auth", "old-unicast-checksum", "two-families"],
)  # fmt: skip
def test_hadirector_toml_passes_check_config(tmp_path: Path, specs: list[InstanceSpec]) -> None:
    command = _hadirector_cli()
    conf = tmp_path / "hadirector.toml"
    group = "G1" if len(specs) > 1 else None
    conf.write_text(hadirector_toml(specs, router_id="lab", state_dir=tmp_path,
                                    sync_group=group))  # fmt: skip
    done = subprocess.run([*command, "check-config", "--config", str(conf)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.keepalived
def test_hadirector_adapter_against_keepalived(netlab: Lab, keepalived_bin: str) -> None:
    _hadirector_cli()
    a = HadirectorDirector(netlab, "dir-a", 150, ADVERT_S)
    b = KeepalivedDirector(netlab, "dir-b", 100, ADVERT_S)
    a.start()
    try:
        a.wait_state("MASTER", STATE_TIMEOUT_S)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{a.log()[-3000:]}") from exc
    b.start()
    b.wait_state("BACKUP", STATE_TIMEOUT_S)
    wait_for(lambda: netlab.who_has_vip() == {"dir-a"}, 10, "the VIP on dir-a only")
    mac_a, mac_b = netlab.mac("dir-a"), netlab.mac("dir-b")
    netlab.wait_wire(lambda f: f.kind == "vrrp" and f.src_mac == mac_a
                     and f.info["priority"] == 150, 10, "hadirector's adverts")  # fmt: skip
    t_crash = time.monotonic()
    a.crash()
    b.wait_state("MASTER", STATE_TIMEOUT_S)
    wait_for(lambda: netlab.neigh("client", vip_address()) in (mac_b, None), 10, "neigh")
    assert not a.running()
    assert [t.new for t in a.transitions()] == ["BACKUP", "MASTER"]
    assert b.transitions()[-1].t > t_crash
    # A restart after the crash clears the stale VIP, rejoins the wire and preempts.
    a.start()
    a.wait_state("MASTER", STATE_TIMEOUT_S)
    b.wait_state("BACKUP", STATE_TIMEOUT_S)
    wait_for(lambda: netlab.who_has_vip() == {"dir-a"}, 10, "the VIP back on dir-a only")
    netlab.wait_wire(_is_garp_for(vip_address(), mac_a), 10, "GARP from hadirector", t_crash)


def test_bench_counts_spurious_transitions() -> None:
    from bench.failover import EXPECTED, spurious_transitions

    def seq(*states: str) -> list[Transition]:
        return [Transition(float(i), "VI_1", "?", s) for i, s in enumerate(states)]

    expected = EXPECTED["preempt"]["dir-b"]
    assert spurious_transitions(seq("BACKUP", "MASTER", "BACKUP"), expected) == 0
    assert spurious_transitions(seq("BACKUP", "MASTER", "STOP"), EXPECTED["stop"]["dir-a"]) == 0
    # A backup that flapped before the real takeover: two extra changes.
    flap = seq("BACKUP", "MASTER", "BACKUP", "MASTER")
    assert spurious_transitions(flap, EXPECTED["crash"]["dir-b"]) == 2
    assert spurious_transitions(seq("BACKUP", "FAULT", "BACKUP", "MASTER", "BACKUP"),
                                expected) == 2  # fmt: skip


def _v3_checksum(vrrp: bytes, pseudo_dst: str | None, src: str) -> int:
    """The VRRPv3/IPv4 checksum of ``vrrp`` (checksum field zeroed): with the pseudo-header
    (src, ``pseudo_dst``, protocol 112, length) or, with ``pseudo_dst`` None, without."""
    body = vrrp[:6] + b"\0\0" + vrrp[8:]
    pseudo = b"" if pseudo_dst is None else pseudo_header(src, pseudo_dst, len(body))
    return internet_checksum(pseudo + body)


@pytest.mark.keepalived
@pytest.mark.parametrize("old_checksum", [False, True], ids=["rfc", "old_unicast_checksum"])
def test_keepalived_unicast_v3_checksum(
    netlab: Lab, keepalived_bin: str, old_checksum: bool
) -> None:
    """Pins what keepalived 2.2's ``old_unicast_checksum`` means on the wire: the IPv4
    pseudo-header names the multicast group 224.0.0.18 instead of the unicast peer (it does
    not leave the pseudo-header out)."""
    a, _ = _pair(netlab, unicast=True, old_unicast_checksum=old_checksum)
    since = time.monotonic()
    advert = netlab.wait_wire(
        lambda f: f.kind == "vrrp" and f.src_mac == netlab.mac("dir-a"), 15, "advert", since
    )
    raw = bytes.fromhex(advert.info["raw"])
    on_wire = int.from_bytes(raw[6:8], "big")
    src = advert.info["src"]
    assert advert.info["dst"] == lan_address("dir-b")
    expected_dst = "224.0.0.18" if old_checksum else lan_address("dir-b")
    assert on_wire == _v3_checksum(raw, expected_dst, src)
    assert on_wire != _v3_checksum(raw, None, src)
    assert a.state() == "MASTER"
