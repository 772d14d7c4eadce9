"""Unit tests of the IPVS sync protocol v1 codec (hadirector.sync.codec).

A known vector is written byte by byte from the layout in the kernel's description of the
protocol (header 8 bytes; entry 24 bytes + addresses + parameters; 4-byte alignment between
entries). Properties (hypothesis): encode/decode round trips for IPv4 and IPv6 entries with
and without parameters; pack splits into messages that each decode and fit; decode answers
any bytes with a Message or DecodeError only, and refuses truncations of a valid message.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hadirector.errors import DecodeError
from hadirector.sync import codec
from hadirector.sync.codec import Conn, SeqAdjust

TCP, UDP = 6, 17


def test_known_vector_ipv4_connection_and_template() -> None:
    conn = Conn(
        protocol=TCP,
        caddr=IPv4Address("10.0.0.2"),
        cport=40000,
        vaddr=IPv4Address("10.0.0.100"),
        vport=80,
        daddr=IPv4Address("10.0.1.2"),
        dport=8080,
        flags=codec.F_MASQ,
        state=1,  # ESTABLISHED
        timeout=900,
    )
    template = Conn(
        protocol=TCP,
        caddr=IPv4Address("10.0.0.2"),
        cport=0,
        vaddr=IPv4Address("10.0.0.100"),
        vport=80,
        daddr=IPv4Address("10.0.1.2"),
        dport=8080,
        flags=codec.F_TEMPLATE,
        timeout=300,
        pe_name=b"sip",
    )
    entry1 = (
        bytes([0, TCP, 0x00, 36])  # type 0 (IPv4), protocol, version 0 | size 36
        + bytes([0, 0, 0, 0])  # flags
        + bytes([0, 1, 0x9C, 0x40])  # state 1, cport 40000
        + bytes([0, 80, 0x1F, 0x90])  # vport 80, dport 8080
        + bytes(4)  # fwmark
        + bytes([0, 0, 0x03, 0x84])  # timeout 900
        + bytes([10, 0, 0, 2, 10, 0, 0, 100, 10, 0, 1, 2])
    )
    entry2 = (
        bytes([0, TCP, 0x00, 41])  # size 36 + 2 + 3
        + bytes([0, 0, 0x10, 0])  # flags: template
        + bytes([0, 0, 0, 0])
        + bytes([0, 80, 0x1F, 0x90])
        + bytes(4)
        + bytes([0, 0, 0x01, 0x2C])  # 300
        + bytes([10, 0, 0, 2, 10, 0, 0, 100, 10, 0, 1, 2])
        + bytes([3, 3])
        + b"sip"
    )
    size = 8 + 36 + 41
    header = bytes([0, 7]) + size.to_bytes(2, "big") + bytes([2, 1, 0, 0])
    expected = header + entry1 + entry2
    assert codec.encode(7, [conn, template]) == expected
    assert codec.decode(expected) == codec.Message(7, (conn, template))


def test_padding_between_entries_and_not_after_the_last() -> None:
    odd = _v4(pe_data=b"x")  # 36 + 3 = 39 bytes: one byte of padding before the next
    data = codec.encode(0, [odd, odd])
    assert len(data) == 8 + 39 + 1 + 39
    assert data[8 + 39] == 0
    assert codec.decode(data).conns == (odd, odd)


def test_ipv6_entry_layout() -> None:
    conn = Conn(
        protocol=UDP,
        caddr=IPv6Address("2001:db8::2"),
        cport=5353,
        vaddr=IPv6Address("2001:db8::100"),
        vport=53,
        daddr=IPv6Address("2001:db8:1::2"),
        dport=53,
        seq=(SeqAdjust(1, 2, 3), SeqAdjust(4, 5, 6)),
    )
    data = codec.encode(1, [conn])
    entry = data[8:]
    assert entry[0] == codec.TYPE_INET6
    assert struct.unpack("!H", entry[2:4])[0] == 72 + 2 + 24
    assert entry[24:40] == conn.caddr.packed
    assert entry[72:74] == bytes([codec.OPT_SEQ, 24])
    assert struct.unpack("!6I", entry[74:98]) == (1, 2, 3, 4, 5, 6)
    assert codec.decode(data).conns == (conn,)


def test_skippable_unknown_parameter_is_skipped_mandatory_one_refused() -> None:
    base = codec.encode(0, [_v4()])

    def with_param(kind: int) -> bytes:
        body = bytearray(base)
        body += bytes([kind, 2, 0xAA, 0xBB])
        body[2:4] = len(body).to_bytes(2, "big")
        entry_size = 36 + 4
        body[8 + 2 : 8 + 4] = entry_size.to_bytes(2, "big")
        return bytes(body)

    assert codec.decode(with_param(codec.OPT_SKIPPABLE | 9)).conns == (_v4(),)
    with pytest.raises(DecodeError, match="param_unknown"):
        codec.decode(with_param(9))


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda b: b[:7], "truncated"),
        (lambda b: bytes([1]) + b[1:], "version"),  # a version 0 header (count 1)
        (lambda b: b[:5] + bytes([2]) + b[6:], "version"),
        (lambda b: b[:6] + bytes([0, 1]) + b[8:], "version"),  # spare not zero
        (lambda b: b + bytes(4), "size"),
        (lambda b: b[:4] + bytes([2]) + b[5:], "truncated"),  # count 2, one entry
        (lambda b: b[:10] + bytes([0x10, 36]) + b[12:], "entry_version"),
        (lambda b: b[:10] + bytes([0, 35]) + b[12:], "entry_size"),
        (lambda b: b[:8] + bytes([2]) + b[9:], "entry_type"),
    ],
)
def test_malformed_messages_are_refused_by_name(edit: object, reason: str) -> None:
    good = codec.encode(3, [_v4()])
    assert callable(edit)
    with pytest.raises(DecodeError, match=f"sync.{reason}"):
        codec.decode(edit(good))


def test_encode_refuses_what_does_not_fit() -> None:
    with pytest.raises(ValueError, match="one family"):
        codec.encode(0, [_v4(daddr=IPv6Address("::1"))])
    with pytest.raises(ValueError, match="cport"):
        codec.encode(0, [_v4(cport=70000)])
    with pytest.raises(ValueError, match=r"1\.\.16"):
        codec.encode(0, [_v4(pe_name=b"x" * 17)])
    with pytest.raises(ValueError, match="at most 255"):
        codec.encode(0, [_v4()] * 256)
    with pytest.raises(ValueError, match="sync id"):
        codec.encode(256, [])


def _v4(**changes: object) -> Conn:
    fields: dict[str, object] = dict(
        protocol=TCP,
        caddr=IPv4Address("192.0.2.10"),
        cport=1234,
        vaddr=IPv4Address("192.0.2.100"),
        vport=80,
        daddr=IPv4Address("198.51.100.2"),
        dport=80,
    )
    fields.update(changes)
    return Conn(**fields)  # type: ignore[arg-type]


# --- properties ------------------------------------------------------------------------

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
v4addr = st.builds(IPv4Address, u32)
v6addr = st.builds(IPv6Address, st.integers(0, 2**128 - 1))
seqs = st.none() | st.tuples(
    st.builds(SeqAdjust, u32, u32, u32), st.builds(SeqAdjust, u32, u32, u32)
)


@st.composite
def conns(draw: st.DrawFn) -> Conn:
    addr = draw(st.sampled_from([v4addr, v6addr]))
    return Conn(
        protocol=draw(st.integers(0, 255)),
        caddr=draw(addr),
        cport=draw(u16),
        vaddr=draw(addr),
        vport=draw(u16),
        daddr=draw(addr),
        dport=draw(u16),
        flags=draw(u32),
        state=draw(u16),
        fwmark=draw(u32),
        timeout=draw(u32),
        seq=draw(seqs),
        pe_data=draw(st.none() | st.binary(min_size=1, max_size=255)),
        pe_name=draw(st.none() | st.binary(min_size=1, max_size=16)),
    )


@given(st.integers(0, 255), st.lists(conns(), max_size=20))
def test_round_trip(syncid: int, entries: list[Conn]) -> None:
    data = codec.encode(syncid, entries)
    assert codec.decode(data) == codec.Message(syncid, tuple(entries))


@given(st.lists(conns(), max_size=60), st.integers(400, 9000))
def test_pack_splits_into_messages_that_fit_and_keep_order(
    entries: list[Conn], maxlen: int
) -> None:
    messages = codec.pack(5, entries, maxlen)
    assert all(len(m) <= maxlen for m in messages)
    decoded = [c for m in messages for c in codec.decode(m).conns]
    assert decoded == entries
    assert all(codec.decode(m).conns for m in messages)


@given(st.binary(max_size=600))
def test_garbage_gives_a_message_or_decode_error_only(data: bytes) -> None:
    try:
        message = codec.decode(data)
    except DecodeError as error:
        assert error.reason.startswith("sync.")
    else:  # what decoded re-encodes to a message that decodes the same
        if message.control is not None:
            again = codec.encode_control(message.syncid, message.control)
        else:
            again = codec.encode(message.syncid, message.conns)
        assert codec.decode(again) == message


@given(st.lists(conns(), min_size=1, max_size=5), st.data())
def test_every_truncation_or_size_lie_is_refused(entries: list[Conn], data: st.DataObject) -> None:
    good = codec.encode(0, entries)
    cut = data.draw(st.integers(0, len(good) - 1))
    with pytest.raises(DecodeError):
        codec.decode(good[:cut])
    fixed = bytearray(good[:cut])
    if cut >= 4:  # header size made to match the cut: the entries themselves must refuse
        fixed[2:4] = cut.to_bytes(2, "big")
        with pytest.raises(DecodeError):
            codec.decode(bytes(fixed))


@given(st.binary(min_size=1, max_size=200), st.data())
def test_mutated_valid_messages_give_message_or_decode_error(
    tail: bytes, data: st.DataObject
) -> None:
    good = bytearray(codec.encode(9, [_v4(pe_data=tail[:255])]))
    pos = data.draw(st.integers(0, len(good) - 1))
    good[pos] = data.draw(st.integers(0, 255))
    try:
        codec.decode(bytes(good))
    except DecodeError as error:
        assert error.reason.startswith("sync.")


def test_control_messages() -> None:
    request = codec.encode_control(4, codec.Control(codec.REQUEST))
    assert request == bytes([0, 4, 0, 20, 0, 1, 0, 0]) + b"HDRS" + bytes([1, 0, 0, 0]) + bytes(4)
    assert codec.decode(request) == codec.Message(4, (), codec.Control(codec.REQUEST))
    done = codec.encode_control(4, codec.Control(codec.DONE, 70000))
    assert codec.decode(done).control == codec.Control(codec.DONE, 70000)
    with pytest.raises(ValueError, match="kind"):
        codec.encode_control(4, codec.Control(3))
    bad_kind = request[:12] + bytes([3]) + request[13:]
    with pytest.raises(DecodeError, match="trailing"):
        codec.decode(bad_kind)


@given(st.integers(0, 255), st.sampled_from([codec.REQUEST, codec.DONE]), u32)
def test_control_round_trip(syncid: int, kind: int, entries: int) -> None:
    control = codec.Control(kind, entries)
    assert codec.decode(codec.encode_control(syncid, control)) == codec.Message(syncid, (), control)


@given(st.binary(max_size=600))
def test_peek_agrees_with_decode(data: bytes) -> None:
    try:
        message = codec.decode(data)
    except DecodeError:
        return
    assert codec.peek(data) == (message.syncid, len(message.conns))


@given(st.integers(0, 255), st.lists(conns(), max_size=20))
def test_peek_reads_the_header_of_encoded_messages(syncid: int, entries: list[Conn]) -> None:
    assert codec.peek(codec.encode(syncid, entries)) == (syncid, len(entries))
