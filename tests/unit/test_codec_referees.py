"""Independent referees for the VRRP codec: scapy's VRRP/VRRPv3 layers and tshark.

scapy parses the bytes we encode (inside an IP/IPv6 packet it builds) and must find the
same fields; with our checksum removed, it recomputes one that must equal ours. tshark
reads a pcap written here (pcap format by hand, linktype 101 = raw IP) and must report the
same fields and a good checksum for v2, v3/IPv4 with the pseudo-header and v3/IPv6.

What tshark (4.0) says about v3/IPv4 *without* the pseudo-header (keepalived's
``v3_checksum_as_v2``): by default "Bad checksum [should be 0x....]", the value it
suggests being our pseudo-header checksum; with its preference
``vrrp.v3_checksum_as_in_v2:TRUE`` the same packet is good and the pseudo-header one bad.
IPv6 and v2 are unaffected by that preference.

scapy is imported here only (tests and tools), never by the daemon.
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hadirector.vrrp.codec import (
    MCAST_V4,
    MCAST_V6,
    Advert,
    IPAddress,
    encode,
    internet_checksum,
    pseudo_header,
)

scapy_inet = pytest.importorskip("scapy.layers.inet", reason="scapy is not installed")
scapy_inet6 = pytest.importorskip("scapy.layers.inet6")
scapy_vrrp = pytest.importorskip("scapy.layers.vrrp")
scapy_packet = pytest.importorskip("scapy.packet")

IP: Any = scapy_inet.IP
IPv6: Any = scapy_inet6.IPv6
VRRP: Any = scapy_vrrp.VRRP
VRRPv3: Any = scapy_vrrp.VRRPv3
Raw: Any = scapy_packet.Raw

scapy_settings = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


S4_PEER = IPv4Address("192.0.2.2")
S6_PEER = IPv6Address("fe80::2")

# --- cases -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    advert: Advert
    src: IPAddress
    dst: IPAddress
    pseudo: bool = True

    def wire(self) -> bytes:
        return encode(self.advert, src=self.src, dst=self.dst, v3_ipv4_pseudo_header=self.pseudo)


@st.composite
def v2_cases(draw: st.DrawFn) -> Case:
    auth_type = draw(st.sampled_from([0, 1]))
    auth = draw(st.binary(min_size=8, max_size=8)) if auth_type else b""
    advert = Advert(
        2,
        draw(st.integers(1, 255)),
        draw(st.integers(0, 255)),
        draw(st.integers(1, 255)) * 100,
        tuple(draw(st.lists(st.ip_addresses(v=4), min_size=1, max_size=12))),
        auth_type,
        auth,
    )
    return Case(advert, draw(st.ip_addresses(v=4)), draw(st.sampled_from([MCAST_V4, S4_PEER])))


@st.composite
def v3_cases(draw: st.DrawFn, v: Literal[4, 6]) -> Case:
    advert = Advert(
        3,
        draw(st.integers(1, 255)),
        draw(st.integers(0, 255)),
        draw(st.integers(1, 4095)),
        tuple(draw(st.lists(st.ip_addresses(v=v), min_size=1, max_size=12))),
    )
    if v == 4:
        dst: IPAddress = draw(st.sampled_from([MCAST_V4, S4_PEER]))
    else:
        dst = draw(st.sampled_from([MCAST_V6, S6_PEER]))
    return Case(advert, draw(st.ip_addresses(v=v)), dst, draw(st.booleans()))


def pseudo_sums_to_zero(case: Case, length: int) -> bool:
    """If the IPv4 pseudo-header adds nothing to the one's complement sum, both v3 checksum
    modes coincide (a one-in-65535 coincidence of addresses)."""
    return internet_checksum(pseudo_header(case.src, case.dst, 112, length)) in (0, 0xFFFF)


# --- scapy -----------------------------------------------------------------------------


def scapy_parse(case: Case) -> Any:
    wire = case.wire()
    if case.src.version == 4:
        return IP(bytes(IP(src=str(case.src), dst=str(case.dst), proto=112, ttl=255) / Raw(wire)))
    return IPv6(bytes(IPv6(src=str(case.src), dst=str(case.dst), nh=112, hlim=255) / Raw(wire)))


def scapy_recomputed_checksum(parsed: Any, layer: Any) -> int:
    rebuilt = parsed.copy()
    del rebuilt[layer].chksum
    ip_class = IP if parsed.haslayer(IP) else IPv6
    return int(ip_class(bytes(rebuilt))[layer].chksum)


@scapy_settings
@given(v2_cases())
def test_scapy_vrrp_v2(case: Case) -> None:
    parsed = scapy_parse(case)
    assert parsed.haslayer(VRRP), parsed.summary()
    layer = parsed[VRRP]
    advert = case.advert
    assert (layer.version, layer.type) == (2, 1)
    assert (layer.vrid, layer.priority) == (advert.vrid, advert.priority)
    assert layer.ipcount == len(advert.addresses)
    assert layer.authtype == advert.auth_type
    assert layer.adv * 100 == advert.interval_cs
    assert [IPv4Address(a) for a in layer.addrlist] == list(advert.addresses)
    auth = struct.pack("!II", layer.auth1, layer.auth2)
    assert auth == (advert.auth_data or bytes(8))
    wire = case.wire()
    assert layer.chksum == struct.unpack_from("!H", wire, 6)[0]
    assert scapy_recomputed_checksum(parsed, VRRP) == layer.chksum


def check_scapy_v3(case: Case) -> None:
    parsed = scapy_parse(case)
    assert parsed.haslayer(VRRPv3), parsed.summary()
    layer = parsed[VRRPv3]
    advert = case.advert
    assert (layer.version, layer.type, layer.res) == (3, 1, 0)
    assert (layer.vrid, layer.priority) == (advert.vrid, advert.priority)
    assert layer.ipcount == len(advert.addresses)
    assert layer.adv == advert.interval_cs
    family = IPv4Address if case.src.version == 4 else IPv6Address
    assert [family(a) for a in layer.addrlist] == list(advert.addresses)
    wire = case.wire()
    assert layer.chksum == struct.unpack_from("!H", wire, 6)[0]
    # scapy always computes the v3 checksum with the pseudo-header (RFC 5798 §5.2.8).
    recomputed = scapy_recomputed_checksum(parsed, VRRPv3)
    if case.pseudo or case.src.version == 6:
        assert recomputed == layer.chksum
    else:
        assume(not pseudo_sums_to_zero(case, len(wire)))
        assert recomputed != layer.chksum
        with_pseudo = Case(case.advert, case.src, case.dst, pseudo=True).wire()
        assert recomputed == struct.unpack_from("!H", with_pseudo, 6)[0]


@scapy_settings
@given(v3_cases(4))
def test_scapy_vrrp_v3_ipv4(case: Case) -> None:
    check_scapy_v3(case)


@scapy_settings
@given(v3_cases(6))
def test_scapy_vrrp_v3_ipv6(case: Case) -> None:
    check_scapy_v3(case)


# --- tshark ----------------------------------------------------------------------------

LINKTYPE_RAW = 101


def ipv4_datagram(src: IPv4Address, dst: IPv4Address, payload: bytes) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0xC0, 20 + len(payload), 0, 0, 255, 112, 0, src.packed, dst.packed
    )
    checksum = internet_checksum(header)
    return header[:10] + struct.pack("!H", checksum) + header[12:] + payload


def ipv6_datagram(src: IPv6Address, dst: IPv6Address, payload: bytes) -> bytes:
    return struct.pack("!IHBB", 6 << 28, len(payload), 112, 255) + src.packed + dst.packed + payload


def write_pcap(path: Path, datagrams: list[bytes]) -> None:
    """Classic pcap (microsecond, little-endian) with raw-IP link type."""
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW))
        for i, datagram in enumerate(datagrams):
            out.write(struct.pack("<IIII", 1_700_000_000 + i, 0, len(datagram), len(datagram)))
            out.write(datagram)


def datagram_of(case: Case) -> bytes:
    if isinstance(case.src, IPv4Address) and isinstance(case.dst, IPv4Address):
        return ipv4_datagram(case.src, case.dst, case.wire())
    assert isinstance(case.src, IPv6Address) and isinstance(case.dst, IPv6Address)
    return ipv6_datagram(case.src, case.dst, case.wire())


FIELDS = [
    "frame.number",
    "vrrp.version",
    "vrrp.virt_rtr_id",
    "vrrp.prio",
    "vrrp.addr_count",
    "vrrp.auth_type",
    "vrrp.adver_int",
    "vrrp.short_adver_int",
    "vrrp.ip_addr",
    "vrrp.ipv6_addr",
    "vrrp.checksum",
    "vrrp.checksum.status",
    "_ws.expert.message",
]

GOOD, BAD = "1", "0"  # tshark's checksum status values


def tshark_rows(pcap: Path, *prefs: str) -> list[dict[str, str]]:
    tshark = shutil.which("tshark")
    assert tshark
    command = [tshark, "-n", "-r", str(pcap), "-T", "fields", "-E", "separator=\t"]
    command += ["-E", "occurrence=a", "-E", "aggregator=,"]
    for pref in prefs:
        command += ["-o", pref]
    for field in FIELDS:
        command += ["-e", field]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return [dict(zip(FIELDS, line.split("\t"), strict=True)) for line in result.stdout.splitlines()]


def random_cases(rng: random.Random) -> list[Case]:
    """A deterministic spread of adverts: every kind, random fields and addresses."""

    def v4() -> IPv4Address:
        return IPv4Address(rng.getrandbits(32))

    def v6() -> IPv6Address:
        return IPv6Address(rng.getrandbits(128))

    cases = []
    for _ in range(25):
        n = rng.randint(1, 8)
        auth_type = rng.choice([0, 1])
        auth = rng.randbytes(8) if auth_type else b""
        cases.append(
            Case(
                Advert(
                    2,
                    rng.randint(1, 255),
                    rng.randint(0, 255),
                    rng.randint(1, 255) * 100,
                    tuple(v4() for _ in range(n)),
                    auth_type,
                    auth,
                ),
                v4(),
                rng.choice([MCAST_V4, v4()]),
            )
        )
        for family, make, mcast in ((4, v4, MCAST_V4), (6, v6, MCAST_V6)):
            advert = Advert(
                3,
                rng.randint(1, 255),
                rng.randint(0, 255),
                rng.randint(1, 4095),
                tuple(make() for _ in range(n)),
            )
            src, dst = make(), rng.choice([mcast, make()])
            cases.append(Case(advert, src, dst, pseudo=True))
            if family == 4:
                cases.append(Case(advert, src, dst, pseudo=False))
    return cases


def fixed_cases() -> list[Case]:
    s4, s6 = IPv4Address("192.0.2.1"), IPv6Address("fe80::1")
    v4_vips = (IPv4Address("192.0.2.10"), IPv4Address("192.0.2.11"))
    v6_vips = (IPv6Address("fe80::10"), IPv6Address("2001:db8::10"))
    return [
        Case(Advert(2, 51, 100, 100, v4_vips), s4, MCAST_V4),
        Case(Advert(2, 51, 100, 300, v4_vips, 1, b"secret\0\0"), s4, MCAST_V4),
        Case(Advert(3, 51, 100, 100, v4_vips), s4, MCAST_V4, pseudo=True),
        Case(Advert(3, 51, 100, 100, v4_vips), s4, MCAST_V4, pseudo=False),
        Case(Advert(3, 51, 255, 4095, v6_vips), s6, MCAST_V6),
        Case(Advert(3, 52, 0, 1, v4_vips[:1]), s4, IPv4Address("192.0.2.2"), pseudo=True),
    ]


def expected_fields(case: Case) -> dict[str, str]:
    advert = case.advert
    fields = {
        "vrrp.version": str(advert.version),
        "vrrp.virt_rtr_id": str(advert.vrid),
        "vrrp.prio": str(advert.priority),
        "vrrp.addr_count": str(len(advert.addresses)),
        "vrrp.checksum": f"0x{struct.unpack_from('!H', case.wire(), 6)[0]:04x}",
    }
    listed = ",".join(str(a) for a in advert.addresses)
    if case.src.version == 4:
        fields["vrrp.ip_addr"] = listed
    else:
        fields["vrrp.ipv6_addr"] = listed
    if advert.version == 2:
        fields["vrrp.auth_type"] = str(advert.auth_type)
        fields["vrrp.adver_int"] = str(advert.interval_cs // 100)
    else:
        fields["vrrp.short_adver_int"] = str(advert.interval_cs)
    return fields


def kind(case: Case) -> str:
    if case.advert.version == 2:
        return "v2"
    if case.src.version == 6:
        return "v3/ipv6"
    return "v3/ipv4" if case.pseudo else "v3/ipv4-as-v2"


requires_tshark = pytest.mark.skipif(
    shutil.which("tshark") is None,
    reason="tshark binary not found (Debian package tshark): the tshark referee cannot run",
)


@pytest.fixture(scope="module")
def tshark_pcap(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Case]]:
    cases = fixed_cases() + random_cases(random.Random(5798))
    pcap = tmp_path_factory.mktemp("tshark") / "adverts.pcap"
    write_pcap(pcap, [datagram_of(c) for c in cases])
    return pcap, cases


def check_rows(
    rows: list[dict[str, str]], cases: list[Case], status_of: Callable[[Case], str]
) -> None:
    assert len(rows) == len(cases)
    for row, case in zip(rows, cases, strict=True):
        for field, value in expected_fields(case).items():
            assert row[field] == value, (kind(case), field, row)
        assert row["vrrp.checksum.status"] == status_of(case), (kind(case), row)


@requires_tshark
def test_tshark_default_checksum_status(tshark_pcap: tuple[Path, list[Case]]) -> None:
    pcap, cases = tshark_pcap
    rows = tshark_rows(pcap)

    def status(case: Case) -> str:
        if kind(case) == "v3/ipv4-as-v2" and not pseudo_sums_to_zero(case, len(case.wire())):
            return BAD
        return GOOD

    check_rows(rows, cases, status)
    # For v3/IPv4 without the pseudo-header, tshark names the checksum it expected: the one
    # we compute with the pseudo-header.
    for row, case in zip(rows, cases, strict=True):
        if status(case) == BAD:
            with_pseudo = Case(case.advert, case.src, case.dst, pseudo=True).wire()
            suggested = f"0x{struct.unpack_from('!H', with_pseudo, 6)[0]:04x}"
            assert f"should be {suggested}" in row["_ws.expert.message"], row
    assert {kind(c) for c in cases} == {"v2", "v3/ipv4", "v3/ipv4-as-v2", "v3/ipv6"}


@requires_tshark
def test_tshark_v3_checksum_as_v2_preference(tshark_pcap: tuple[Path, list[Case]]) -> None:
    pcap, cases = tshark_pcap
    rows = tshark_rows(pcap, "vrrp.v3_checksum_as_in_v2:TRUE")

    def status(case: Case) -> str:
        if kind(case) == "v3/ipv4" and not pseudo_sums_to_zero(case, len(case.wire())):
            return BAD
        return GOOD

    check_rows(rows, cases, status)
