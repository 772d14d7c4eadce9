"""Unit tests of hadirector.sync.table: /proc/net/ip_vs_conn to sync entries.

The listing is written in the kernel's format (heading, protocol name, hex IPv4 addresses
and ports, full IPv6 addresses, state name, seconds left); the IPVS table is built with the
model's own types. Properties (hypothesis): any text parses into entries and a count of bad
lines, never an exception; every built entry encodes.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from hypothesis import given
from hypothesis import strategies as st

from hadirector.ipvs import model
from hadirector.ipvs.model import Dest, DestKey, Entry, Service, ServiceKey
from hadirector.sync import codec, table

HEADING = "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n"
LISTING = HEADING + (
    "TCP C0000202 9C40 CB00710A 0050 C6336402 1F90 ESTABLISHED     897\n"
    "TCP C0000202 0000 CB00710A 0050 C6336402 1F90 NONE            297\n"
    "TCP C0000203 9C41 CB00710A 0050 C6336403 1F90 FIN_WAIT         97\n"
    "UDP C0000204 8000 CB00710A 0035 C6336402 0035 UDP              60\n"
    "TCP C0000205 9C42 0A000001 0050 C6336402 0050 ESTABLISHED     800\n"
    "IP  C0000206 0000 00000007 0000 C6336409 0000 ASSURED         250\n"
    "TCP 2001:0db8:0000:0000:0000:0000:0000:0002 9C40 "
    "2001:0db8:0000:0000:0000:0000:0000:0100 0050 "
    "2001:0db8:0001:0000:0000:0000:0000:0002 0050 ESTABLISHED     900\n"
    "UDP C0000207 1000 CB00710A 1388 C6336402 1388 UDP   10 sip  call-1\n"
)

VS = ServiceKey.virtual("tcp", "203.0.113.10", 80)
VS_UDP = ServiceKey.virtual("udp", "203.0.113.10", 53)
MARK = ServiceKey.mark(7)
VS6 = ServiceKey.virtual("tcp", "2001:db8::100", 80)
VS_SIP = ServiceKey.virtual("udp", "203.0.113.10", 5000)
TABLE = {
    VS: Entry(
        Service("rr", model.SVC_F_PERSISTENT, 300),
        {
            DestKey.of("198.51.100.2", 8080): Dest(model.FWD_MASQ),
            DestKey.of("198.51.100.3", 8080): Dest(model.FWD_MASQ),
        },
    ),
    VS_UDP: Entry(Service("rr"), {DestKey.of("198.51.100.2", 53): Dest(model.FWD_DROUTE)}),
    MARK: Entry(
        Service("rr", model.SVC_F_PERSISTENT, 600),
        {
            DestKey.of("198.51.100.2", 80): Dest(model.FWD_TUNNEL),
            DestKey.of("198.51.100.9", 80): Dest(model.FWD_TUNNEL),
        },
    ),
    VS6: Entry(Service("rr"), {DestKey.of("2001:db8:1::2", 80): Dest(model.FWD_MASQ)}),
    VS_SIP: Entry(Service("rr"), {DestKey.of("198.51.100.2", 5000): Dest(model.FWD_MASQ)}),
}


def test_parse_listing() -> None:
    entries, bad = table.parse_proc_conn(LISTING + "garbage line\n")
    assert bad == 1
    assert len(entries) == 8
    first = entries[0]
    assert (first.protocol, first.caddr, first.cport) == (6, IPv4Address("192.0.2.2"), 40000)
    assert (first.vaddr, first.vport) == (IPv4Address("203.0.113.10"), 80)
    assert (first.daddr, first.dport, first.state, first.expires_s) == (
        IPv4Address("198.51.100.2"),
        8080,
        "ESTABLISHED",
        897,
    )
    assert not first.template
    assert entries[1].template and entries[5].template
    assert entries[5].protocol == 0
    assert entries[6].caddr == IPv6Address("2001:db8::2")
    assert entries[7].pe_name == "sip"


def test_sync_entries_take_flags_mark_and_timeouts_from_the_table() -> None:
    entries, _ = table.parse_proc_conn(LISTING)
    built = table.sync_entries(entries, TABLE)
    assert (built.templates, built.skipped) == (2, 1)  # the persistence-engine entry
    conn, template, closing, udp, marked, fw_template, v6 = built.conns
    assert (conn.flags, conn.state, conn.timeout, conn.fwmark) == (codec.F_MASQ, 1, 0, 0)
    assert template.flags == codec.F_TEMPLATE | codec.F_MASQ
    assert (template.state, template.timeout, template.cport) == (0, 300, 0)
    assert closing.flags == codec.F_MASQ | codec.F_INACTIVE
    assert closing.state == table.TCP_STATES["FIN_WAIT"]
    assert (udp.protocol, udp.flags, udp.state) == (17, codec.F_DROUTE, 0)
    # 10.0.0.1:80 is no virtual service: the real server belongs to fwmark service 7.
    assert (marked.fwmark, marked.flags) == (7, codec.F_TUNNEL)
    assert (fw_template.protocol, fw_template.fwmark) == (0, 7)
    assert fw_template.flags == codec.F_TEMPLATE | codec.F_TUNNEL
    assert (fw_template.state, fw_template.timeout) == (1, 600)
    assert v6.ipv6 and v6.daddr == IPv6Address("2001:db8:1::2")
    for message in codec.pack(3, built.conns, 1472):
        codec.decode(message)


def test_entries_without_a_service_or_real_server_are_skipped() -> None:
    entries, _ = table.parse_proc_conn(LISTING)
    only_vs = {VS: TABLE[VS]}
    built = table.sync_entries(entries, only_vs)
    assert len(built.conns) == 3  # the connection, its template, the closing one
    assert built.skipped == 5


def test_unknown_state_is_skipped() -> None:
    entries, _ = table.parse_proc_conn(
        HEADING + "TCP C0000202 9C40 CB00710A 0050 C6336402 1F90 WEIRD 9\n"
    )
    assert table.sync_entries(entries, TABLE).skipped == 1


@given(st.text(max_size=400))
def test_any_text_parses_without_exceptions(text: str) -> None:
    entries, bad = table.parse_proc_conn(text)
    assert bad >= 0
    built = table.sync_entries(entries, TABLE)
    for conn in built.conns:
        codec.encode_conn(conn)


line_fields = st.tuples(
    st.sampled_from(["TCP", "UDP", "IP", "SCTP", "XX", "IP_99"]),
    st.integers(0, 2**32 - 1),
    st.integers(0, 0xFFFF),
    st.sampled_from(["ESTABLISHED", "NONE", "ASSURED", "UDP", "FIN_WAIT", "ERR!"]),
    st.integers(0, 10**6),
)


@given(st.lists(line_fields, max_size=30))
def test_well_formed_lines_all_parse(lines: list[tuple[str, int, int, str, int]]) -> None:
    text = HEADING + "".join(
        f"{p} {a:08X} {port:04X} CB00710A 0050 C6336402 1F90 {s} {e}\n"
        for p, a, port, s, e in lines
    )
    entries, bad = table.parse_proc_conn(text)
    assert bad == sum(1 for p, *_ in lines if p == "XX")
    assert len(entries) + bad == len(lines)
