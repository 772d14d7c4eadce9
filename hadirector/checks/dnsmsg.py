"""DNS messages for the ``dns`` health check (RFC 1035): a query out, a response judged.

``query`` builds a standard query (one question, recursion desired); ``read_response``
reads a response to it: the header, the question echoed back, and the answer records
(their owner names skipped, compressed or not: a pointer ends a name, and nothing here
needs the names themselves). Anything malformed is a
``DnsError`` with a short reason, never another exception.

This module is part of the pure core: no I/O, no clock reads, standard library only.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Mapping
from dataclasses import dataclass

#: Query types a check may ask for (RFC 1035, 3596, 2782).
QTYPES: Mapping[str, int] = {
    "A": 1,
    "NS": 2,
    "CNAME": 5,
    "SOA": 6,
    "PTR": 12,
    "MX": 15,
    "TXT": 16,
    "AAAA": 28,
    "SRV": 33,
}
#: Response codes by name (RFC 1035 4.1.1, RFC 2136).
RCODES: Mapping[str, int] = {
    "NOERROR": 0,
    "FORMERR": 1,
    "SERVFAIL": 2,
    "NXDOMAIN": 3,
    "NOTIMP": 4,
    "REFUSED": 5,
}
RCODE_NAMES: Mapping[int, str] = {v: k for k, v in RCODES.items()}
CLASS_IN = 1
MAX_NAME_BYTES = 255


class DnsError(ValueError):
    """Bytes that are not an acceptable response (the message says why, briefly)."""


def encode_name(name: str) -> bytes:
    """A domain name in wire form; ValueError for an empty label or one over 63 bytes."""
    text = name.strip().rstrip(".")
    out = bytearray()
    if text:
        for label in text.split("."):
            raw = label.encode("idna") if not label.isascii() else label.encode("ascii")
            if not 1 <= len(raw) <= 63:
                raise ValueError(f"bad label {label!r} in {name!r}")
            out.append(len(raw))
            out += raw
    out.append(0)
    if len(out) > MAX_NAME_BYTES:
        raise ValueError(f"name {name!r} is longer than 255 bytes")
    return bytes(out)


def query(ident: int, name: str, qtype: int) -> bytes:
    """A standard query for ``name`` / ``qtype`` (class IN), recursion desired."""
    header = struct.pack("!HHHHHH", ident & 0xFFFF, 0x0100, 1, 0, 0, 0)
    return header + encode_name(name) + struct.pack("!HH", qtype, CLASS_IN)


@dataclass(frozen=True)
class Record:
    """One answer record: its type and raw data."""

    rtype: int
    data: bytes

    def address(self) -> str | None:
        """The address of an A or AAAA record, else None."""
        if self.rtype == QTYPES["A"] and len(self.data) == 4:
            return str(ipaddress.IPv4Address(self.data))
        if self.rtype == QTYPES["AAAA"] and len(self.data) == 16:
            return str(ipaddress.IPv6Address(self.data))
        return None


@dataclass(frozen=True)
class Response:
    rcode: int
    answers: tuple[Record, ...]

    @property
    def rcode_name(self) -> str:
        return RCODE_NAMES.get(self.rcode, str(self.rcode))


def _skip_name(data: bytes, offset: int) -> int:
    """The offset after the (possibly compressed) name at ``offset``."""
    while True:
        if offset >= len(data):
            raise DnsError("truncated name")
        length = data[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:
            if offset + 2 > len(data):
                raise DnsError("truncated name")
            return offset + 2  # a pointer ends the name in place
        if length & 0xC0:
            raise DnsError("bad label type")
        offset += 1 + length


def read_response(data: bytes, ident: int, sent_question: bytes) -> Response:
    """A response to our query ``ident`` whose question section is ``sent_question``."""
    if len(data) < 12:
        raise DnsError("short message")
    rid, flags, qdcount, ancount, _ns, _ar = struct.unpack_from("!HHHHHH", data)
    if rid != ident & 0xFFFF:
        raise DnsError("id mismatch")
    if not flags & 0x8000:
        raise DnsError("not a response")
    if flags & 0x0200:
        raise DnsError("truncated (TC)")
    offset = 12
    if qdcount:
        end = offset + len(sent_question)
        if data[offset:end].lower() != sent_question.lower():
            raise DnsError("question mismatch")
        offset = end
        for _ in range(qdcount - 1):
            offset = _skip_name(data, offset) + 4
    answers: list[Record] = []
    for _ in range(ancount):
        offset = _skip_name(data, offset)
        if offset + 10 > len(data):
            raise DnsError("truncated record")
        rtype, _rclass, _ttl, rdlength = struct.unpack_from("!HHIH", data, offset)
        offset += 10
        if offset + rdlength > len(data):
            raise DnsError("truncated record")
        answers.append(Record(rtype, data[offset : offset + rdlength]))
        offset += rdlength
    return Response(flags & 0x000F, tuple(answers))
