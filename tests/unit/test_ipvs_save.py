"""``ipvsadm -S -n`` text: golden lines, glibc address spelling, ipvsadm's sort order.

Every golden line here is also checked against the real ipvsadm on a real IPVS kernel by
``test_ipvs_save_kernel.py`` (VM): restore the rules, save them, compare byte for byte.
"""

from __future__ import annotations

import functools
import ipaddress
import random
import socket

from hypothesis import given
from hypothesis import strategies as st

from hadirector.ipvs import model as m
from hadirector.ipvs.importer import parse_rules
from hadirector.ipvs.save import (
    _c_int,
    _cmp_dests,
    _cmp_services,
    _glibc_msort,
    dest_rule,
    format_save,
    format_table,
    inet_ntop,
    ipvsadm_order,
    service_rule,
)

TCP80 = m.ServiceKey.virtual("tcp", "192.0.2.1", 80)
PERSIST = m.SVC_F_PERSISTENT


def test_nat_service_and_dests() -> None:
    text = format_save(
        [
            (
                TCP80,
                m.Service("wlc"),
                [
                    (m.DestKey.of("203.0.113.1", 8080), m.Dest(m.FWD_MASQ, 1)),
                    (m.DestKey.of("203.0.113.2", 8080), m.Dest(m.FWD_MASQ, 3)),
                ],
            )
        ]
    )
    assert text == (
        "-A -t 192.0.2.1:80 -s wlc\n"
        "-a -t 192.0.2.1:80 -r 203.0.113.1:8080 -m -w 1\n"
        "-a -t 192.0.2.1:80 -r 203.0.113.2:8080 -m -w 3\n"
    )


def test_ipv6_persistent_with_prefix() -> None:
    key = m.ServiceKey.virtual("udp", "2001:db8::1", 53)
    svc = m.Service("rr", PERSIST | m.SVC_F_HASHED, 300, 64)
    assert service_rule(key, svc) == "-A -u [2001:db8::1]:53 -s rr -p 300 -M 64"
    assert service_rule(key, m.Service("rr", PERSIST, 300, 128)) == (
        "-A -u [2001:db8::1]:53 -s rr -p 300"
    )
    dkey = m.DestKey.of("2001:db8:1::1", 53)
    assert dest_rule(key, dkey, m.Dest(m.FWD_DROUTE, 1)) == (
        "-a -u [2001:db8::1]:53 -r [2001:db8:1::1]:53 -g -w 1"
    )


def test_fwmark_services() -> None:
    v4 = m.ServiceKey.mark(1)
    svc = m.Service("rr", PERSIST, 600, 0xFFFFFF00)
    assert service_rule(v4, svc) == "-A -f 1 -s rr -p 600 -M 255.255.255.0"
    assert dest_rule(v4, m.DestKey.of("203.0.113.5", 0), m.Dest(m.FWD_DROUTE, 1)) == (
        "-a -f 1 -r 203.0.113.5:0 -g -w 1"
    )
    v6 = m.ServiceKey.mark(2, 6)
    sh = m.Service("sh", m.SVC_F_SCHED1 | m.SVC_F_SCHED2, 0, 128)
    assert service_rule(v6, sh) == "-A -f 2 -6 -s sh -b sh-fallback,sh-port"
    assert dest_rule(v6, m.DestKey.of("2001:db8:1::2", 0), m.Dest(m.FWD_DROUTE, 0)) == (
        "-a -f 2 -6 -r [2001:db8:1::2]:0 -g -w 0"
    )
    # ipvsadm prints the mark with %d
    assert service_rule(m.ServiceKey.mark(0xFFFFFFFE), m.Service("rr")) == "-A -f -2 -s rr"


def test_netmask_only_when_persistent() -> None:
    assert service_rule(TCP80, m.Service("rr", 0, 0, 0xFFFFFF00)) == "-A -t 192.0.2.1:80 -s rr"
    assert service_rule(TCP80, m.Service("rr", PERSIST, 300, 0xFFFFFFFF)) == (
        "-A -t 192.0.2.1:80 -s rr -p 300"
    )


def test_flag_order_persistence_pe_ops_sched_flags() -> None:
    key = m.ServiceKey.virtual("udp", "192.0.2.3", 5060)
    flags = PERSIST | m.SVC_F_ONEPACKET | m.SVC_F_SCHED2
    svc = m.Service("mh", flags, 60, 0xFFFF0000, "sip")
    assert service_rule(key, svc) == (
        "-A -u 192.0.2.3:5060 -s mh -p 60 -M 255.255.0.0 --pe sip -o -b mh-port"
    )
    assert service_rule(key, m.Service("rr", m.SVC_F_SCHED1 | m.SVC_F_SCHED3)) == (
        "-A -u 192.0.2.3:5060 -s rr -b flag-1,flag-3"
    )


def test_sctp_and_wildcard_port() -> None:
    assert service_rule(m.ServiceKey.virtual("sctp", "192.0.2.4", 3868), m.Service()) == (
        "-A --sctp-service 192.0.2.4:3868 -s wlc"
    )
    any_port = m.ServiceKey.virtual("tcp", "192.0.2.5", 0)
    assert service_rule(any_port, m.Service("wlc", PERSIST, 300)) == (
        "-A -t 192.0.2.5:0 -s wlc -p 300"
    )


def test_thresholds_are_not_saved() -> None:
    dest = m.Dest(m.FWD_MASQ, 2, upper_threshold=100, lower_threshold=50)
    assert dest_rule(TCP80, m.DestKey.of("203.0.113.1", 80), dest) == (
        "-a -t 192.0.2.1:80 -r 203.0.113.1:80 -m -w 2"
    )


def test_tunnel_destinations() -> None:
    key = m.ServiceKey.virtual("tcp", "192.0.2.2", 443)
    rs = m.DestKey.of("203.0.113.7", 443)
    base = "-a -t 192.0.2.2:443 -r 203.0.113.7:443 -i -w 1 --tun-type"
    ipip = m.Dest(m.FWD_TUNNEL, 1, tunnel_type=m.TUN_TYPE_IPIP)
    assert dest_rule(key, rs, ipip) == f"{base} ipip"
    gue = m.Dest(m.FWD_TUNNEL, 1, tunnel_type=m.TUN_TYPE_GUE, tunnel_port=6080, tunnel_flags=1)
    assert dest_rule(key, rs, gue) == f"{base} gue --tun-port 6080 --tun-csum"
    gue_rem = m.Dest(m.FWD_TUNNEL, 1, tunnel_type=m.TUN_TYPE_GUE, tunnel_port=5555, tunnel_flags=2)
    assert dest_rule(key, rs, gue_rem) == f"{base} gue --tun-port 5555 --tun-remcsum"
    gre = m.Dest(m.FWD_TUNNEL, 1, tunnel_type=m.TUN_TYPE_GRE)
    assert dest_rule(key, rs, gre) == f"{base} gre --tun-nocsum"


def test_local_node_prints_as_gatewaying() -> None:
    assert dest_rule(TCP80, m.DestKey.of("192.0.2.1", 80), m.Dest(m.FWD_LOCALNODE, 1)) == (
        "-a -t 192.0.2.1:80 -r 192.0.2.1:80 -g -w 1"
    )


def test_empty_table_is_empty_text() -> None:
    assert format_table({}) == ""


def test_whole_table_in_ipvsadm_order() -> None:
    def entry(*dests: str) -> m.Entry:
        return m.Entry(m.Service("rr"), {m.DestKey.of(d, 80): m.Dest(m.FWD_MASQ, 1) for d in dests})

    table = {
        m.ServiceKey.mark(2): entry(),
        m.ServiceKey.mark(1, 6): entry(),
        m.ServiceKey.virtual("udp", "192.0.2.1", 80): entry(),
        m.ServiceKey.virtual("tcp", "2001:db8::1", 80): entry("2001:db8::20", "2001:db8::3"),
        m.ServiceKey.virtual("tcp", "192.0.2.20", 80): entry(),
        m.ServiceKey.virtual("tcp", "192.0.2.3", 443): entry(),
        m.ServiceKey.virtual("tcp", "192.0.2.3", 80): entry("203.0.113.10", "203.0.113.9"),
        m.ServiceKey.virtual("sctp", "192.0.2.1", 80): entry(),
    }
    assert format_table(table) == (
        "-A -t 192.0.2.3:80 -s rr\n"
        "-a -t 192.0.2.3:80 -r 203.0.113.9:80 -m -w 1\n"
        "-a -t 192.0.2.3:80 -r 203.0.113.10:80 -m -w 1\n"
        "-A -t 192.0.2.3:443 -s rr\n"
        "-A -t 192.0.2.20:80 -s rr\n"
        "-A -u 192.0.2.1:80 -s rr\n"
        "-A --sctp-service 192.0.2.1:80 -s rr\n"
        "-A -t [2001:db8::1]:80 -s rr\n"
        "-a -t [2001:db8::1]:80 -r [2001:db8::3]:80 -m -w 1\n"
        "-a -t [2001:db8::1]:80 -r [2001:db8::20]:80 -m -w 1\n"
        "-A -f 1 -6 -s rr\n"
        "-A -f 2 -s rr\n"
    )


# --- properties -------------------------------------------------------------------------------


@given(st.integers(0, 2**128 - 1))
def test_ipv6_spelling_matches_glibc(value: int) -> None:
    packed = value.to_bytes(16, "big")
    assert inet_ntop(str(ipaddress.IPv6Address(value))) == socket.inet_ntop(socket.AF_INET6, packed)


@given(st.sampled_from([0, 0xFFFF]), st.integers(0, 2**32 - 1))
def test_ipv6_embedded_ipv4_spelling_matches_glibc(high: int, low: int) -> None:
    value = (high << 32) | low
    packed = value.to_bytes(16, "big")
    assert inet_ntop(str(ipaddress.IPv6Address(value))) == socket.inet_ntop(socket.AF_INET6, packed)


@given(st.lists(st.integers(-1000, 1000)), st.randoms())
def test_msort_sorts_like_sorted_for_a_total_order(items: list[int], rnd: random.Random) -> None:
    rnd.shuffle(items)
    assert _glibc_msort(items, lambda a, b: a - b) == sorted(items)


def test_msort_is_stable_and_keeps_ties_left() -> None:
    pairs = [(1, "a"), (0, "b"), (1, "c"), (0, "d")]
    assert _glibc_msort(pairs, lambda a, b: a[0] - b[0]) == [
        (0, "b"),
        (0, "d"),
        (1, "a"),
        (1, "c"),
    ]


service_keys = st.one_of(
    st.builds(
        m.ServiceKey.virtual,
        st.sampled_from(["tcp", "udp", "sctp"]),
        st.ip_addresses(v=4, network="192.0.2.0/24").map(str)
        | st.ip_addresses(v=6, network="2001:db8::/120").map(str),
        st.integers(0, 65535),
    ),
    st.builds(m.ServiceKey.mark, st.integers(1, 10_000), st.sampled_from([4, 6])),
)


@given(st.lists(service_keys, unique=True))
def test_ipvsadm_service_order_is_numeric_within_one_network(keys: list[m.ServiceKey]) -> None:
    # addresses within one /24 or /120: ipvsadm's wrapping comparison is a total order
    by_cmp = _glibc_msort(keys, _cmp_services)
    assert by_cmp == sorted(keys, key=functools.cmp_to_key(_cmp_services))

    def expected(k: m.ServiceKey) -> tuple[int, int, int, int, int]:
        addr = int(ipaddress.ip_address(k.address)) if k.address else 0
        return (k.fwmark, 2 if k.family == 4 else 10, k.protocol, addr, k.port)

    assert by_cmp == sorted(keys, key=expected)


def test_ipvsadm_wraparound_quirk_is_reproduced() -> None:
    # libipvs subtracts addresses as 32-bit values into an int: 203.0.113.1 - 10.0.0.1
    # is negative as an int, so ipvsadm lists 203.0.113.1 first.
    low = m.ServiceKey.virtual("tcp", "10.0.0.1", 80)
    high = m.ServiceKey.virtual("tcp", "203.0.113.1", 80)
    assert _cmp_services(high, low) < 0
    assert _c_int(0xCB007101 - 0x0A000001) < 0
    assert [
        k
        for k, _, _ in ipvsadm_order(
            {low: m.Entry(m.Service(), {}), high: m.Entry(m.Service(), {})}
        )
    ] == [high, low]
    assert _cmp_dests(m.DestKey.of("203.0.113.1", 1), m.DestKey.of("10.0.0.1", 1)) < 0


GOLDEN_RULES = """\
-A -t 192.0.2.1:80 -s wlc
-a -t 192.0.2.1:80 -r 203.0.113.1:8080 -m -w 1
-a -t 192.0.2.1:80 -r 203.0.113.2:8080 -m -w 3
-A -t 192.0.2.2:443 -s rr
-a -t 192.0.2.2:443 -r 203.0.113.7:443 -i -w 1 --tun-type ipip
-a -t 192.0.2.2:443 -r 203.0.113.8:443 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum
-a -t 192.0.2.2:443 -r 203.0.113.9:443 -i -w 2 --tun-type gre --tun-nocsum
-A -t 192.0.2.5:0 -s wlc -p 300
-a -t 192.0.2.5:0 -r 203.0.113.8:0 -g -w 1
-A -u 192.0.2.3:53 -s rr -o
-A -u 192.0.2.3:5060 -s mh -p 60 -M 255.255.0.0 -b mh-port
-A --sctp-service 192.0.2.4:3868 -s wlc
-A -u [2001:db8::1]:53 -s rr -p 300 -M 64
-a -u [2001:db8::1]:53 -r [2001:db8:1::1]:53 -g -w 1
-A -f 1 -s rr -p 600 -M 255.255.255.0
-a -f 1 -r 203.0.113.5:0 -g -w 1
-a -f 1 -r 203.0.113.6:0 -g -w 0
-A -f 2 -6 -s sh -b sh-fallback,sh-port
-a -f 2 -6 -r [2001:db8:1::2]:0 -g -w 1
"""


def test_golden_rules_read_back_and_print_identically() -> None:
    table = parse_rules(GOLDEN_RULES)
    assert format_table(table) == GOLDEN_RULES
    # and whatever order the dump comes in
    items = list(table.items())
    random.Random(7).shuffle(items)
    assert format_table(dict(items)) == GOLDEN_RULES


def test_format_save_of_a_mapping_sorts_like_ipvsadm() -> None:
    table = parse_rules(GOLDEN_RULES)
    reversed_table = dict(reversed(list(table.items())))
    assert format_save(reversed_table) == GOLDEN_RULES


def test_large_marks_and_weights_as_ipvsadm_prints_them() -> None:
    # seen from ipvsadm 1.31 on the 6.1 kernel: marks print with %d (and ipvsadm -R then
    # refuses them), the wrapped difference sorts 2**31 before 2**32 - 2
    table = {
        m.ServiceKey.mark(0xFFFFFFFE): m.Entry(m.Service("rr"), {}),
        m.ServiceKey.mark(0x80000000, 6): m.Entry(
            m.Service("rr", PERSIST, 2678400, 128),
            {m.DestKey.of("2001:db8::a:0:0:1", 0): m.Dest(m.FWD_DROUTE, 2**31 - 1)},
        ),
    }
    assert format_table(table) == (
        "-A -f -2147483648 -6 -s rr -p 2678400\n"
        "-a -f -2147483648 -6 -r [2001:db8::a:0:0:1]:0 -g -w 2147483647\n"
        "-A -f -2 -s rr\n"
    )
