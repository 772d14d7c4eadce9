"""Real-server pools (ipvs/pool.py): quorum with keepalived's hysteresis, the sorry server
in place of the real servers while a service lacks quorum, drained servers at weight 0;
and their configuration (sorry_server, quorum, hysteresis, the commands, track_quorum)."""

from __future__ import annotations

from typing import Any

import pytest

from hadirector.config.load import load_mapping
from hadirector.config.schema import Config, SorryServer, VirtualServer
from hadirector.errors import ConfigError
from hadirector.ipvs import model, nft, pool
from hadirector.ipvs.model import FWD_DROUTE, FWD_MASQ, Dest, DestKey, ServiceKey
from hadirector.vrrp import track

from .configkit import inst, vs

SVC = ServiceKey.virtual("tcp", "198.51.100.10", 80)
RS1, RS2, RS3 = (DestKey.of(f"203.0.113.1{i}", 80) for i in (1, 2, 3))
SORRY = DestKey.of("203.0.113.99", 8080)


def service(**over: Any) -> dict[str, Any]:
    servers = [
        {"address": "203.0.113.11:80", "weight": 2},
        {"address": "203.0.113.12:80", "weight": 2},
        {"address": "203.0.113.13:80", "weight": 1},
    ]
    return vs(real_server=servers, **over)


def loaded(*services: dict[str, Any], **top: Any) -> Config:
    return load_mapping({"virtual_server": list(services), **top})


def problems(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_mapping(doc)
    return [str(p) for p in info.value.problems]


def table_of(config: Config) -> dict[ServiceKey, model.Entry]:
    return model.desired_from_config(config.virtual_servers)


def weights(table: dict[ServiceKey, model.Entry], key: ServiceKey = SVC) -> dict[DestKey, int]:
    return {d: dest.weight for d, dest in table[key].dests.items()}


# --- quorum and hysteresis --------------------------------------------------------------


@pytest.mark.parametrize(
    ("up", "live", "quorum", "hysteresis", "expected"),
    [
        (True, 5, 3, 0, True),
        (True, 3, 3, 0, True),
        (True, 2, 3, 0, False),  # below quorum
        (True, 2, 3, 1, True),  # within the hysteresis
        (True, 1, 3, 1, False),  # below quorum - hysteresis
        (True, 0, 1, 5, False),  # no live weight at all always loses
        (False, 3, 3, 0, True),
        (False, 3, 3, 1, False),  # must reach quorum + hysteresis
        (False, 4, 3, 1, True),
        (False, 0, 1, 0, False),
    ],
)
def test_next_quorum(up: bool, live: int, quorum: int, hysteresis: int, expected: bool) -> None:
    assert pool.next_quorum(up, live, quorum, hysteresis) is expected


def test_a_service_waits_for_its_servers_first_results_then_is_decided_for_good() -> None:
    config = loaded(service(quorum=3))
    pools = pool.Pools()
    everyone_out = {(SVC, RS1), (SVC, RS2), (SVC, RS3)}
    # One server without a first result: pending, whatever the others' states.
    assert pools.update(config.virtual_servers, everyone_out, unsettled={(SVC, RS3)}) == []
    assert (pools.pending, pools.up, pools.lost) == (frozenset({SVC}), {}, frozenset())
    assert pools.any_quorum()  # a pending service counts as having quorum
    # All results in: decided against the live weight then (0: lost).
    [change] = pools.update(config.virtual_servers, everyone_out)
    assert change == pool.QuorumChange(SVC, False, 0, 3, 0)
    assert pools.pending == frozenset() and not pools.any_quorum()
    # Decided once, never pending again (a reload adding a check to it changes nothing).
    [change] = pools.update(config.virtual_servers, set(), unsettled={(SVC, RS1)})
    assert change.up and pools.pending == frozenset()


def test_a_flapping_pool_changes_only_outside_the_hysteresis_band() -> None:
    config = loaded(service(quorum=3, hysteresis=1))
    pools = pool.Pools()
    assert pools.update(config.virtual_servers, set()) == []  # live 5: has quorum
    assert pools.update(config.virtual_servers, {(SVC, RS1)}) == []  # live 3
    assert pools.update(config.virtual_servers, {(SVC, RS1), (SVC, RS3)}) == []  # live 2 = 3-1
    lost = pools.update(config.virtual_servers, {(SVC, RS1), (SVC, RS2)})  # live 1
    assert lost == [pool.QuorumChange(SVC, False, 1, 3, 1)]
    assert lost[0].threshold == 2
    assert pools.lost == {SVC} and not pools.any_quorum()
    assert pools.update(config.virtual_servers, {(SVC, RS1)}) == []  # live 3 < 3+1
    gained = pools.update(config.virtual_servers, set())  # live 5
    assert gained == [pool.QuorumChange(SVC, True, 5, 3, 1)]
    assert gained[0].threshold == 4
    assert pools.lost == frozenset() and pools.any_quorum()


def test_a_service_that_starts_below_quorum_loses_it_at_once_and_a_removed_one_is_forgotten() -> (
    None
):
    config = loaded(service(quorum=10))
    pools = pool.Pools()
    assert pools.update(config.virtual_servers, set()) == [pool.QuorumChange(SVC, False, 5, 10, 0)]
    assert pools.update((), set()) == []
    assert pools.up == {} and pools.any_quorum()  # no service: nothing lacks quorum


def test_drained_and_failed_servers_count_nothing_and_any_quorum_spans_services() -> None:
    other = vs(address="198.51.100.20:80", real_server=[{"address": "203.0.113.21:80"}])
    config = loaded(service(), other)
    key2 = ServiceKey.virtual("tcp", "198.51.100.20", 80)
    pools = pool.Pools()
    out = {(SVC, RS1), (SVC, RS2), (SVC, RS3)}
    assert pools.update(config.virtual_servers, out) == [pool.QuorumChange(SVC, False, 0, 1, 0)]
    assert pools.any_quorum()  # the other service still has it
    pools.update(config.virtual_servers, out | {(key2, DestKey.of("203.0.113.21", 80))})
    assert not pools.any_quorum()
    assert pools.live == {SVC: 0, key2: 0}


# --- the table: sorry server, drained servers ---------------------------------------------


SORRY_CFG = {"address": "203.0.113.99:8080"}


def test_the_sorry_server_replaces_quiesced_real_servers_while_quorum_is_lost() -> None:
    config = loaded(service(sorry_server=SORRY_CFG))
    down = {(SVC, RS1), (SVC, RS2), (SVC, RS3)}
    table = model.apply_health(table_of(config), down, quiesce=True)
    out = pool.apply(table, config.virtual_servers, lost={SVC}, drained=set())
    assert weights(out) == {RS1: 0, RS2: 0, RS3: 0, SORRY: 1}
    assert out[SVC].dests[SORRY] == Dest(forwarding=FWD_MASQ, weight=1)
    # Quorum back: the sorry server is deleted.
    back = pool.apply(table_of(config), config.virtual_servers, lost=set(), drained=set())
    assert weights(back) == {RS1: 2, RS2: 2, RS3: 1}


def test_quorum_lost_with_live_servers_takes_them_out_too() -> None:
    # quorum 4: one live server of weight 2 is not enough; keepalived brings it down too.
    config = loaded(service(quorum=4, sorry_server=SORRY_CFG))
    table = model.apply_health(table_of(config), {(SVC, RS2), (SVC, RS3)}, quiesce=True)
    out = pool.apply(table, config.virtual_servers, lost={SVC}, drained=set())
    assert weights(out) == {RS1: 0, RS2: 0, RS3: 0, SORRY: 1}


def test_remove_action_deletes_real_servers_and_inhibit_keeps_the_sorry_server_at_zero() -> None:
    sorry = {**SORRY_CFG, "inhibit": True, "weight": 5}
    config = loaded(service(health_action="remove", sorry_server=sorry))
    down = {(SVC, RS1), (SVC, RS2), (SVC, RS3)}
    table = model.apply_health(table_of(config), down, quiesce=False)
    out = pool.apply(table, config.virtual_servers, lost={SVC}, drained=set())
    assert weights(out) == {SORRY: 5}
    back = pool.apply(table_of(config), config.virtual_servers, lost=set(), drained=set())
    assert weights(back) == {RS1: 2, RS2: 2, RS3: 1, SORRY: 0}


def test_the_sorry_server_has_its_own_forwarding_and_a_service_without_one_is_left_alone() -> None:
    config = loaded(
        service(sorry_server={"address": "203.0.113.99:80", "forwarding": "dr"}),
        vs(address="198.51.100.20:80"),
    )
    key2 = ServiceKey.virtual("tcp", "198.51.100.20", 80)
    table = table_of(config)
    out = pool.apply(table, config.virtual_servers, lost={SVC, key2}, drained=set())
    assert out[SVC].dests[DestKey.of("203.0.113.99", 80)].forwarding == FWD_DROUTE
    assert out[key2] == table[key2]  # no sorry server: quorum changes nothing in the table


def test_drained_servers_stay_at_weight_zero_and_a_refused_service_is_skipped() -> None:
    config = loaded(service(sorry_server=SORRY_CFG))
    table = table_of(config)
    out = pool.apply(table, config.virtual_servers, lost=set(), drained={(SVC, RS2)})
    assert weights(out) == {RS1: 2, RS2: 0, RS3: 1}
    assert pool.apply({}, config.virtual_servers, lost={SVC}, drained=set()) == {}


def test_a_fwmark_sorry_server_without_port_gets_port_zero() -> None:
    config = loaded(
        {
            "fwmark": 7,
            "real_server": [{"address": "203.0.113.11"}],
            "sorry_server": {"address": "203.0.113.99"},
        }
    )
    found = pool.sorry_dest(config.virtual_servers[0])
    assert found is not None and found[0] == DestKey.of("203.0.113.99", 0)


# --- configuration -----------------------------------------------------------------------


def test_defaults_and_a_full_pool() -> None:
    plain = loaded(service()).virtual_servers[0]
    assert (plain.quorum, plain.hysteresis, plain.sorry_server) == (1, 0, None)
    assert (plain.quorum_up, plain.quorum_down) == (None, None)
    full: VirtualServer = loaded(
        service(
            quorum=3,
            hysteresis=1,
            quorum_up="/usr/local/bin/pool up",
            quorum_down=["/usr/local/bin/pool", "down"],
            sorry_server={"address": "203.0.113.99:8080", "inhibit": True, "weight": 2},
        )
    ).virtual_servers[0]
    assert (full.quorum, full.hysteresis) == (3, 1)
    assert full.quorum_up == ("/usr/local/bin/pool", "up")
    assert full.quorum_down == ("/usr/local/bin/pool", "down")
    assert full.sorry_server == SorryServer(
        model.ipaddress.ip_address("203.0.113.99"), 8080, "nat", 2, True
    )
    rs = (
        loaded(
            vs(
                real_server=[
                    {
                        "address": "203.0.113.11:80",
                        "notify_up": "/bin/up 1",
                        "notify_down": ["/bin/down"],
                    }
                ]
            )
        )
        .virtual_servers[0]
        .real_servers[0]
    )
    assert (rs.notify_up, rs.notify_down) == (("/bin/up", "1"), ("/bin/down",))
    assert (
        load_mapping({"vrrp_instance": [inst(track_quorum=-50)]}).vrrp_instances[0].track_quorum
        == -50
    )


@pytest.mark.parametrize(
    ("over", "expected"),
    [
        ({"quorum": 0}, "virtual_server[0].quorum: must be 1..2147483647, got 0"),
        ({"hysteresis": -1}, "virtual_server[0].hysteresis: must be 0..2147483647, got -1"),
        (
            {"quorum_up": "relative/path"},
            "virtual_server[0].quorum_up: the program must be an absolute path",
        ),
        (
            {"sorry_server": {"address": "203.0.113.11:80"}},
            "virtual_server[0].sorry_server.address: is also a real server of this service",
        ),
        (
            {"sorry_server": {"address": "203.0.113.99:8080", "forwarding": "dr"}},
            "virtual_server[0].sorry_server.address: port must be the service port 80 with dr",
        ),
        (
            {"sorry_server": {"address": "2001:db8::99:80"}},
            'virtual_server[0].sorry_server.address: must be "ip:port"',
        ),
        (
            {"sorry_server": {"address": "[2001:db8::99]:80"}},
            "virtual_server[0].sorry_server.address: must be IPv4 like the service",
        ),
        (
            {"sorry_server": {"address": "203.0.113.99:80", "forwarding": "fullnat"}},
            "virtual_server[0].sorry_server.forwarding: fullnat is set per virtual_server",
        ),
        (
            {"sorry_server": {"address": "203.0.113.99:80", "weight": 0}},
            "virtual_server[0].sorry_server.weight: must be 1..2147483647, got 0",
        ),
        (
            {"sorry_server": {"address": "203.0.113.99:80", "colour": "red"}},
            "virtual_server[0].sorry_server.colour: unknown key",
        ),
        ({"sorry_server": "203.0.113.99:80"}, "virtual_server[0].sorry_server: must be a table"),
    ],
)
def test_invalid_pools(over: dict[str, Any], expected: str) -> None:
    found = problems({"virtual_server": [service(**over)]})
    assert any(p.startswith(expected) for p in found), found


def test_a_fullnat_services_sorry_server_is_masqueraded_and_source_natted() -> None:
    """On a fullnat service the sorry server takes the service's forwarding (masquerade,
    and the same SNAT rule as its real servers: it needs no route back either), or its
    own nat/dr/tun (no SNAT then)."""
    config = loaded(
        service(
            forwarding="fullnat",
            fullnat_source="203.0.113.1",
            sorry_server={"address": "203.0.113.99:8080"},
        )
    )
    [vs_] = config.virtual_servers
    assert vs_.sorry_server is not None and vs_.sorry_server.forwarding == "fullnat"
    sorry = pool.sorry_dest(vs_)
    assert sorry is not None and sorry[1].forwarding == FWD_MASQ
    rules = nft.snat_rules(config.virtual_servers)
    assert rules[-1] == (
        "ip daddr 203.0.113.99 tcp dport 8080 ct original ip daddr 198.51.100.10 "
        "snat ip to 203.0.113.1"
    )
    assert len(rules) == 4  # three real servers and the sorry server
    own = loaded(
        service(
            forwarding="fullnat",
            fullnat_source="203.0.113.1",
            sorry_server={"address": "203.0.113.99:80", "forwarding": "dr"},
        )
    )
    assert len(nft.snat_rules(own.virtual_servers)) == 3
    out = pool.apply(table_of(config), config.virtual_servers, lost={SVC}, drained=())
    assert out[SVC].dests[SORRY] == Dest(forwarding=FWD_MASQ, weight=1)


def test_invalid_track_quorum_and_notify() -> None:
    found = problems({"vrrp_instance": [inst(track_quorum=254)]})
    assert any(p.startswith("vrrp_instance[0].track_quorum: must be -253..253") for p in found)
    doc = vs(real_server=[{"address": "203.0.113.11:80", "notify_down": 5}])
    found = problems({"virtual_server": [doc]})
    assert any(
        p.startswith("virtual_server[0].real_server[0].notify_down: must be a string")
        for p in found
    )


@pytest.mark.parametrize(
    ("weight", "any_quorum", "expected"),
    [(0, True, 150), (0, False, None), (-100, False, 50), (-100, True, 150), (20, True, 170)],
)
def test_track_quorum_weighs_like_a_script(
    weight: int, any_quorum: bool, expected: int | None
) -> None:
    spec = track.TrackSpec("quorum", "virtual servers", weight)
    assert track.effective_priority(150, [(spec, any_quorum)]) == expected


def test_an_operator_names_a_server_in_any_of_the_usual_spellings() -> None:
    config = loaded(
        service(),
        vs(address="198.51.100.10:80", protocol="udp"),
        vs(address="[2001:db8::10]:53", real_server=[{"address": "[2001:db8::11]:53"}]),
        {"fwmark": 7, "real_server": [{"address": "203.0.113.11"}, {"address": "203.0.113.11:81"}]},
    )
    services = config.virtual_servers
    for name in ("tcp 198.51.100.10:80", "tcp:198.51.100.10:80", "TCP  198.51.100.10:80"):
        assert pool.find_server(services, name, "203.0.113.11:80") == (SVC, RS1)
    assert pool.find_server(services, "tcp 198.51.100.10:80", "203.0.113.12") == (SVC, RS2)
    v6 = ServiceKey.virtual("tcp", "2001:db8::10", 53)
    assert pool.find_server(services, "[2001:db8::10]:53", "[2001:db8::11]:53") == (
        v6,
        DestKey.of("2001:db8::11", 53),
    )
    mark = ServiceKey.mark(7)
    assert pool.find_server(services, "fwmark 7", "203.0.113.11:81") == (
        mark,
        DestKey.of("203.0.113.11", 81),
    )
    assert pool.find_server(services, "198.51.100.10:80", "203.0.113.11:80") == (
        "'198.51.100.10:80' names several virtual servers (tcp 198.51.100.10:80, "
        "udp 198.51.100.10:80): give the protocol"
    )
    assert pool.find_server(services, "fwmark 7", "203.0.113.11") == (
        "'203.0.113.11' names several real servers of fwmark 7: give the port"
    )
    assert pool.find_server(services, "tcp 192.0.2.1:80", "203.0.113.11:80") == (
        "no virtual server 'tcp 192.0.2.1:80' in the configuration"
    )
    assert pool.find_server(services, "fwmark 7", "203.0.113.99") == (
        "no real server '203.0.113.99' in fwmark 7"
    )


# --- slow start --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weight", "elapsed", "expected"),
    [
        (10, 0.0, 1),  # at least 1 from the first moment
        (10, 0.99, 1),
        (10, 2.0, 3),  # ten steps of one second over 10 s
        (10, 8.99, 9),
        (10, 9.0, 10),  # the last step
        (10, 10.0, 10),
        (100, 5.0, 60),  # at most ten steps: 10 % each
        (3, 3.4, 2),  # three steps of 3.33 s
        (3, 3.4 * 2, 3),
        (1, 0.0, 1),  # nothing to ramp
    ],
)
def test_ramp_weight(weight: int, elapsed: float, expected: int) -> None:
    assert pool.ramp_weight(weight, elapsed, 10.0) == expected


def test_the_next_step_is_when_the_weight_changes() -> None:
    assert pool.ramp_next_s(10, 0.0, 10.0) == 1.0
    assert pool.ramp_next_s(10, 4.5, 10.0) == 5.0
    assert pool.ramp_next_s(10, 9.0, 10.0) is None  # the last step is taken
    assert pool.ramp_next_s(1, 0.0, 10.0) is None
    assert pool.ramp_next_s(10, 0.0, 0.0) is None
    # Every step's deadline (as the keeper computes it) gives a new weight.
    times = [0.0]
    while (step := pool.ramp_next_s(7, times[-1], 10.0)) is not None:
        times.append(step)
    assert [pool.ramp_weight(7, t, 10.0) for t in times] == [1, 2, 3, 4, 5, 6, 7]


def test_slow_start_state() -> None:
    slow = pool.SlowStart()
    a, b = (SVC, RS1), (SVC, RS2)
    assert not slow.begin(a, 0.0, 1, 10.0)  # weight 1: nothing to ramp
    assert not slow.begin(a, 0.0, 10, 0.0)  # slow start off
    assert slow.begin(a, 100.0, 10, 10.0)
    assert slow.begin(b, 103.5, 4, 2.0)
    assert slow.weights(100.0) == {a: 1, b: 1}
    assert slow.next_deadline(103.6) == 104.0  # b's second step (0.5 s each)
    assert slow.weights(104.0) == {a: 5, b: 2}
    assert slow.weights(105.5) == {a: 6}  # b is done and forgotten
    slow.forget({b})
    assert slow.weights(106.0) == {} and slow.next_deadline(106.0) is None
    slow.begin(a, 0.0, 10, 10.0)
    slow.cancel(a)
    assert slow.started == {}


def test_ramped_weights_in_the_table_never_exceed_the_configured_or_quiesced_ones() -> None:
    config = loaded(service(slow_start=10))
    assert config.virtual_servers[0].slow_start_s == 10.0
    table = model.apply_health(table_of(config), {(SVC, RS3)}, quiesce=True)
    out = pool.apply(
        table,
        config.virtual_servers,
        lost=set(),
        drained=set(),
        ramp={(SVC, RS1): 1, (SVC, RS2): 50, (SVC, RS3): 1},
    )
    assert weights(out) == {RS1: 1, RS2: 2, RS3: 0}
    assert problems({"virtual_server": [service(slow_start=-1)]}) == [
        "virtual_server[0].slow_start: must be 0..86400 seconds, got -1"
    ]


# --- virtual_server_group ------------------------------------------------------------------

GROUP_DOC: dict[str, Any] = {
    "virtual_server_group": [
        {
            "name": "web",
            "addresses": ["198.51.100.10-11:80", "[2001:db8::10]:80"],
            "fwmarks": [7],
        }
    ],
}


def test_a_group_expands_to_one_service_per_member_sharing_the_pool() -> None:
    doc = {
        **GROUP_DOC,
        "virtual_server_group": [
            {"name": "web", "addresses": ["198.51.100.10-12:80"], "fwmarks": [7]}
        ],
        "virtual_server": [
            {
                "group": "web",
                "scheduler": "rr",
                "quorum": 2,
                "check": {"type": "tcp"},
                "real_server": [{"address": "203.0.113.11:80"}, {"address": "203.0.113.12:80"}],
            }
        ],
    }
    config = load_mapping(doc)
    keys = [str(vs.key) for vs in config.virtual_servers]
    assert keys == [
        "tcp 198.51.100.10:80",
        "tcp 198.51.100.11:80",
        "tcp 198.51.100.12:80",
        "fwmark 7",
    ]
    assert {vs.group for vs in config.virtual_servers} == {"web"}
    assert {vs.quorum for vs in config.virtual_servers} == {2}
    assert config.virtual_server_groups[0].addresses == (
        "198.51.100.10:80",
        "198.51.100.11:80",
        "198.51.100.12:80",
    )
    # The table programs every member; an IPv6 address member needs IPv6 real servers.
    assert len(model.desired_from_config(config.virtual_servers)) == 4
    found = problems({**GROUP_DOC, "virtual_server": [doc["virtual_server"][0]]})
    assert any("must be IPv6 like the service" in p for p in found), found


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            {"virtual_server": [{"group": "nope", "real_server": []}]},
            'virtual_server[0].group: no [[virtual_server_group]] named "nope"',
        ),
        (
            {**GROUP_DOC, "virtual_server": [{"group": "web", "address": "198.51.100.9:80"}]},
            "virtual_server[0].group: give group, or address / fwmark, not both",
        ),
        (
            {"virtual_server_group": [{"name": "g", "addresses": ["198.51.100.20-10:80"]}]},
            "virtual_server_group[0].addresses[0]: range end must be 20..255",
        ),
        (
            {"virtual_server_group": [{"name": "g", "addresses": ["[2001:db8::a-9]:80"]}]},
            "virtual_server_group[0].addresses[0]: range end must be a..ffff (hexadecimal",
        ),
        (
            {"virtual_server_group": [{"name": "g", "addresses": ["[2001:db8::1-10000]:80"]}]},
            "virtual_server_group[0].addresses[0]: an IPv6 range ends with the last group",
        ),
        (
            {
                "virtual_server_group": [
                    {"name": "g", "addresses": ["[2001:db8::1-2001:db8::9]:80"]}
                ]
            },
            "virtual_server_group[0].addresses[0]: an IPv6 range ends with the last group",
        ),
        (
            {"virtual_server_group": [{"name": "g", "addresses": ["[2001:db8::1-101]:80"]}]},
            "virtual_server_group[0].addresses[0]: a range holds at most 256 addresses "
            "(one IPVS service each), got 257",
        ),
        (
            {"virtual_server_group": [{"name": "g", "addresses": ["198.51.100.x-9:80"]}]},
            "virtual_server_group[0].addresses[0]: a range varies the last part of an address",
        ),
        (
            {"virtual_server_group": [{"name": "g", "addresses": ["198.51.100.1"]}]},
            'virtual_server_group[0].addresses[0]: must be "ip:port"',
        ),
        (
            {"virtual_server_group": [{"name": "g"}]},
            "virtual_server_group[0]: needs addresses or fwmarks",
        ),
        (
            {
                "virtual_server_group": [
                    {"name": "g", "fwmarks": [1]},
                    {"name": "g", "fwmarks": [2]},
                ]
            },
            'virtual_server_group[1].name: duplicate name "g"',
        ),
        (
            {
                "virtual_server_group": [{"name": "g", "addresses": ["198.51.100.10:80"]}],
                "virtual_server": [
                    {"group": "g", "real_server": []},
                    {"address": "198.51.100.10:80", "real_server": []},
                ],
            },
            "virtual_server[1].address: duplicate service tcp 198.51.100.10:80",
        ),
    ],
)
def test_invalid_groups(doc: dict[str, Any], expected: str) -> None:
    found = problems(doc)
    assert any(p.startswith(expected) for p in found), found


@pytest.mark.parametrize(
    ("member", "expected"),
    [
        ("[2001:db8::1-3]:80", ["[2001:db8::1]:80", "[2001:db8::2]:80", "[2001:db8::3]:80"]),
        ("[2001:db8::fffe-ffff]:443", ["[2001:db8::fffe]:443", "[2001:db8::ffff]:443"]),
        ("[2001:db8::9-B]:80", ["[2001:db8::9]:80", "[2001:db8::a]:80", "[2001:db8::b]:80"]),
        ("[2001:db8:0:1::5-5]:80", ["[2001:db8:0:1::5]:80"]),
        ("[2001:db8::1:0-1]:80", ["[2001:db8::1:0]:80", "[2001:db8::1:1]:80"]),
    ],
)
def test_an_ipv6_range_varies_the_last_group_in_hexadecimal(
    member: str, expected: list[str]
) -> None:
    doc = {
        "virtual_server_group": [{"name": "v6", "addresses": [member]}],
        "virtual_server": [{"group": "v6", "real_server": [{"address": "[2001:db8:1::11]:80"}]}],
    }
    config = load_mapping(doc)
    assert list(config.virtual_server_groups[0].addresses) == expected
    assert [f"[{vs.address}]:{vs.port}" for vs in config.virtual_servers] == expected
    assert {vs.group for vs in config.virtual_servers} == {"v6"}


def test_a_full_ipv6_range_of_256() -> None:
    doc = {"virtual_server_group": [{"name": "g", "addresses": ["[2001:db8::100-1ff]:80"]}]}
    addresses = load_mapping(doc).virtual_server_groups[0].addresses
    assert len(addresses) == 256 and addresses[-1] == "[2001:db8::1ff]:80"


def test_a_groups_problem_is_said_once() -> None:
    doc = {
        "virtual_server_group": [{"name": "g", "addresses": ["198.51.100.10-13:80"]}],
        "virtual_server": [{"group": "g", "scheduler": "bogus", "real_server": []}],
    }
    found = problems(doc)
    assert len([p for p in found if "scheduler" in p]) == 1, found


def test_a_duplicate_after_a_group_names_its_own_table() -> None:
    doc = {
        "virtual_server_group": [{"name": "g", "addresses": ["198.51.100.10-14:80"]}],
        "virtual_server": [
            {"group": "g", "real_server": []},
            {"address": "198.51.100.12:80", "real_server": []},
        ],
    }
    assert problems(doc) == [
        "virtual_server[1].address: duplicate service tcp 198.51.100.12:80 (also virtual_server[0])"
    ]


def test_dynamic_weights_replace_the_configured_one_in_rotation_and_count_for_quorum() -> None:
    config = loaded(service(quorum=5))
    table = model.apply_health(table_of(config), {(SVC, RS3)}, quiesce=True)
    dynamic = {(SVC, RS1): 7, (SVC, RS3): 9}
    out = pool.apply(table, config.virtual_servers, lost=set(), drained=set(), weights=dynamic)
    assert weights(out) == {RS1: 7, RS2: 2, RS3: 0}  # a quiesced server stays at 0
    ramped = pool.apply(
        table_of(config), config.virtual_servers, lost=set(), drained=set(),
        ramp={(SVC, RS1): 3}, weights=dynamic,
    )  # fmt: skip
    assert weights(ramped) == {RS1: 3, RS2: 2, RS3: 9}
    pools = pool.Pools()
    assert pools.update(config.virtual_servers, set(), {(SVC, RS1): 0, (SVC, RS2): 0}) == [
        pool.QuorumChange(SVC, False, 1, 5, 0)
    ]
    assert pools.update(config.virtual_servers, set(), dynamic) == [
        pool.QuorumChange(SVC, True, 18, 5, 0)
    ]
