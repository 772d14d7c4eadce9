"""The dns health check's messages (checks/dnsmsg.py), with scapy as the referee, and the
configuration of udp and dns checks."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR, DNSRR  # type: ignore[import-untyped]

from hadirector.checks import dnsmsg
from hadirector.config.load import load_mapping
from hadirector.config.schema import HealthCheck
from hadirector.errors import ConfigError


def test_our_query_as_scapy_reads_it() -> None:
    raw = dnsmsg.query(0x1234, "www.example.org", dnsmsg.QTYPES["AAAA"])
    parsed = DNS(raw)
    assert parsed.id == 0x1234 and parsed.qr == 0 and parsed.rd == 1 and parsed.qdcount == 1
    assert parsed.qd[0].qname == b"www.example.org."
    assert parsed.qd[0].qtype == 28 and parsed.qd[0].qclass == 1
    assert dnsmsg.query(1, ".", 1)[12:] == b"\x00\x00\x01\x00\x01"


def answer(ident: int, name: str, rcode: int = 0, **over: Any) -> bytes:
    records = over.pop("records", [DNSRR(rrname=name, type="A", rdata="192.0.2.53")])
    reply = DNS(
        id=ident, qr=1, rd=1, ra=1, rcode=rcode, qd=DNSQR(qname=name, qtype="A"), an=records
    )
    for key, value in over.items():
        setattr(reply, key, value)
    return bytes(reply)


def test_scapys_response_as_we_read_it() -> None:
    ident, name = 0x4242, "svc.example.org"
    question = dnsmsg.query(ident, name, 1)[12:]
    records = [
        DNSRR(rrname=name, type="CNAME", rdata="real.example.org"),
        DNSRR(rrname="real.example.org", type="A", rdata="192.0.2.53"),
        DNSRR(rrname="real.example.org", type="AAAA", rdata="2001:db8::53"),
    ]
    response = dnsmsg.read_response(answer(ident, name, records=records), ident, question)
    assert response.rcode_name == "NOERROR"
    assert [r.address() for r in response.answers] == [None, "192.0.2.53", "2001:db8::53"]
    nx = dnsmsg.read_response(answer(ident, name, rcode=3, records=[]), ident, question)
    assert (nx.rcode, nx.rcode_name, nx.answers) == (3, "NXDOMAIN", ())


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"id": 7}, "id mismatch"),
        ({"qr": 0}, "not a response"),
        ({"tc": 1}, "truncated (TC)"),
    ],
)
def test_responses_we_refuse(over: dict[str, Any], reason: str) -> None:
    question = dnsmsg.query(9, "a.example", 1)[12:]
    with pytest.raises(dnsmsg.DnsError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        dnsmsg.read_response(answer(9, "a.example", **over), 9, question)
    other = dnsmsg.query(9, "b.example", 1)[12:]
    with pytest.raises(dnsmsg.DnsError, match="question mismatch"):
        dnsmsg.read_response(answer(9, "a.example"), 9, other)
    with pytest.raises(dnsmsg.DnsError, match="truncated record"):
        dnsmsg.read_response(answer(9, "a.example")[:-2], 9, question)


@given(st.binary(max_size=300))
def test_any_bytes_are_a_response_or_a_dns_error(data: bytes) -> None:
    try:
        dnsmsg.read_response(
            data, int.from_bytes(data[:2] or b"\0\0", "big"), b"\x00\x00\x01\x00\x01"
        )
    except dnsmsg.DnsError as exc:
        assert str(exc)


def test_a_record_whose_name_points_at_itself_is_read_not_followed() -> None:
    header = bytes.fromhex("0005 8180 0000 0001 0000 0000")
    looped = header + b"\xc0\x0c" + b"\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00"
    assert dnsmsg.read_response(looped, 5, b"").answers[0].rtype == 1


def check_of(check: dict[str, Any]) -> HealthCheck:
    doc = {
        "virtual_server": [
            {
                "address": "192.0.2.10:53",
                "protocol": "udp",
                "check": check,
                "real_server": [{"address": "198.51.100.11:53"}],
            }
        ]
    }
    found = load_mapping(doc).virtual_servers[0].real_servers[0].check
    assert found is not None
    return found


def problems(check: dict[str, Any]) -> list[str]:
    doc = {
        "virtual_server": [
            {
                "address": "192.0.2.10:53",
                "check": check,
                "real_server": [{"address": "198.51.100.11:53"}],
            }
        ]
    }
    with pytest.raises(ConfigError) as info:
        load_mapping(doc)
    return [str(p) for p in info.value.problems]


def test_udp_and_dns_checks_load() -> None:
    udp = check_of({"type": "udp", "payload": "DE AD be ef", "expect_reply": "dead"})
    assert (udp.payload, udp.expect_reply, udp.require_reply) == ("deadbeef", "dead", False)
    plain = check_of({"type": "udp"})
    assert (plain.payload, plain.expect_reply) == (None, None)
    dns = check_of(
        {
            "type": "dns",
            "query_name": "www.example.org",
            "query_type": "AAAA",
            "expect_answer": "2001:db8::53",
        }
    )
    assert (dns.query_name, dns.query_type, dns.expect_rcode) == (
        "www.example.org",
        "AAAA",
        "NOERROR",
    )
    assert dns.expect_answer == "2001:db8::53"
    default = check_of({"type": "dns"})
    assert (default.query_name, default.query_type, default.expect_answer) == (".", "A", None)
    nx = check_of({"type": "dns", "query_name": "gone.example", "expect_rcode": "NXDOMAIN"})
    assert nx.expect_rcode == "NXDOMAIN"
    # Keys of other types are cleared when a real server's own check changes the type.
    assert check_of({"type": "tcp"}).payload is None


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        ({"type": "udp", "payload": "xyz"}, "check.payload: must be bytes in hexadecimal digits"),
        ({"type": "udp", "payload": "abc"}, "check.payload: must be bytes in hexadecimal digits"),
        ({"type": "tcp", "payload": "00"}, "check.payload: applies to type udp only, not tcp"),
        ({"type": "udp", "query_name": "a"}, "check.query_name: applies to type dns only"),
        ({"type": "dns", "query_type": "HINFO"}, "check.query_type: must be one of"),
        ({"type": "dns", "expect_rcode": "OK"}, "check.expect_rcode: must be one of"),
        ({"type": "dns", "query_name": "a..b"}, "check.query_name: must be a domain name"),
        ({"type": "dns", "expect_answer": "host"}, "check.expect_answer: must be an IPv4 or IPv6"),
        (
            {"type": "dns", "expect_answer": "2001:db8::1"},
            'check.expect_answer: an AAAA address needs query_type = "AAAA", got A',
        ),
    ],
)
def test_invalid_udp_and_dns_checks(check: dict[str, Any], expected: str) -> None:
    found = problems(check)
    assert any(p.startswith(f"virtual_server[0].{expected}") for p in found), found
