"""The parsers that take outside input, each as a function of raw bytes that returns when
the parser gave a result or its documented clean error, and raises anything else.

Shared by the corpus replay in CI (test_fuzz_corpus.py) and the long coverage-guided run
(bench/fuzz.py). A target never reads the clock or files: the same bytes give the same
outcome.

| target | parser | the only error allowed |
|---|---|---|
| vrrp | ``vrrp.codec.parse_ipv4`` / ``decode`` (IPv4 and IPv6) | ``DecodeError`` with a reason |
| sync | ``sync.codec.decode`` | ``DecodeError``, reason ``sync.*`` |
| control | ``control.protocol.parse`` | ``RequestError`` with a message |
| config | ``config.load.load_text`` | ``ConfigError`` with problems |
| ipvsadm | ``ipvs.importer.import_rules`` | ``ConfigError``; its TOML loads |
| keepalived | ``kaconf.parse`` + ``from_keepalived.convert`` | ``SyntaxProblem``; TOML loads |

What parses is checked further where the format allows it: a decoded advert or sync message
re-encodes to one that decodes the same; imported TOML loads with the configuration loader.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address

from hadirector.config.load import load_text
from hadirector.control.protocol import COMMANDS, RequestError, parse
from hadirector.errors import ConfigError, DecodeError
from hadirector.ipvs.importer import import_rules
from hadirector.migrate import kaconf
from hadirector.migrate.from_keepalived import convert
from hadirector.migrate.report import Findings, SyntaxProblem
from hadirector.sync import codec as sync_codec
from hadirector.vrrp import codec as vrrp_codec

_V4 = (IPv4Address("192.0.2.1"), vrrp_codec.MCAST_V4)
_V6 = (IPv6Address("fe80::1"), vrrp_codec.MCAST_V6)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _fix_vrrp_checksum(packet: bytes, src: object, dst: object, pseudo: bool) -> bytes:
    """``packet`` with the checksum it would need, so that fuzzing gets past that check."""
    if len(packet) < 8:
        return packet
    version = packet[0] >> 4
    zeroed = packet[:6] + b"\x00\x00" + packet[8:]
    prefix = b""
    if version != 2 and (isinstance(src, IPv6Address) or pseudo):
        prefix = vrrp_codec.pseudo_header(src, dst, vrrp_codec.VRRP_PROTO, len(packet))  # type: ignore[arg-type]
    checksum = vrrp_codec.internet_checksum(prefix + zeroed)
    return packet[:6] + struct.pack("!H", checksum) + packet[8:]


def vrrp(data: bytes) -> None:
    """First byte: bit 0 IPv6, bit 1 v3 IPv4 pseudo-header, bit 2 fix the checksum, bit 3
    the rest is a whole IPv4 datagram (parse_ipv4 first, its addresses used)."""
    if not data:
        return
    flags, body = data[0], data[1:]
    pseudo = bool(flags & 2)
    src, dst = _V6 if flags & 1 else _V4
    if flags & 8:
        try:
            packet = vrrp_codec.parse_ipv4(body)
        except DecodeError as exc:
            assert exc.reason
            return
        src, dst, body = packet.src, packet.dst, packet.payload
    if flags & 4:
        body = _fix_vrrp_checksum(body, src, dst, pseudo)
    try:
        advert = vrrp_codec.decode(body, src=src, dst=dst, v3_ipv4_pseudo_header=pseudo)
    except DecodeError as exc:
        assert exc.reason
        return
    again = vrrp_codec.encode(advert, src=src, dst=dst, v3_ipv4_pseudo_header=pseudo)
    assert vrrp_codec.decode(again, src=src, dst=dst, v3_ipv4_pseudo_header=pseudo) == advert


def sync(data: bytes) -> None:
    try:
        message = sync_codec.decode(data)
    except DecodeError as exc:
        assert exc.reason.startswith("sync.")
        return
    if message.control is not None:
        again = sync_codec.encode_control(message.syncid, message.control)
    else:
        again = sync_codec.encode(message.syncid, message.conns)
    assert sync_codec.decode(again) == message


def control(data: bytes) -> None:
    try:
        request = parse(data)
    except RequestError as exc:
        assert str(exc)
        return
    assert request.command in COMMANDS


def config(data: bytes) -> None:
    try:
        load_text(_text(data))
    except ConfigError as exc:
        assert exc.problems and all(p.message for p in exc.problems)


def ipvsadm(data: bytes) -> None:
    try:
        toml = import_rules(_text(data))
    except ConfigError as exc:
        assert exc.problems and all(p.message for p in exc.problems)
        return
    load_text(toml)


def keepalived(data: bytes) -> None:
    text = _text(data)
    findings = Findings()
    try:
        nodes = kaconf.parse("k.conf", kaconf.TextSource({"k.conf": text}), "a", findings)
    except SyntaxProblem as exc:
        assert exc.file and exc.line >= 1 and exc.column >= 1
        return
    load_text(convert(nodes, findings, "k.conf"))


TARGETS: dict[str, Callable[[bytes], None]] = {
    "vrrp": vrrp,
    "sync": sync,
    "control": control,
    "config": config,
    "ipvsadm": ipvsadm,
    "keepalived": keepalived,
}

#: The longest input each target is given (packets are small, files are not).
MAX_LEN = {
    "vrrp": 1600,
    "sync": 1600,
    "control": 4096,
    "config": 8192,
    "ipvsadm": 4096,
    "keepalived": 8192,
}
