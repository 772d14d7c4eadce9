"""The VRID socket filter (net/vrrp_filter.py), run through a classic BPF interpreter.

The interpreter below implements the instructions the program may use with the kernel's
semantics (linux/net/core/filter.c, ``sk_chk_filter`` and the classic BPF interpreter it
converts from): a load past the end of the datagram ends the program with 0 (drop), jumps
are relative to the next instruction and only forward. The kernel itself runs the same
programs in tests/netns/test_net_vrrp_socket.py.
"""

from __future__ import annotations

import ipaddress
import struct

import pytest

from hadirector.net import vrrp_filter as vf
from hadirector.vrrp import codec

SRC4 = ipaddress.IPv4Address("192.0.2.1")
SRC6 = ipaddress.IPv6Address("fe80::1")
VIP4 = ipaddress.IPv4Address("192.0.2.100")
VIP6 = ipaddress.IPv6Address("2001:db8::100")


class _OutOfBounds(Exception):
    pass


def run(program: list[vf.Instruction], packet: bytes) -> int:
    """What the kernel's classic BPF returns for ``packet`` (0 = drop)."""
    assert 0 < len(program) <= 4096
    a = x = 0
    mem = [0] * 16
    pc = 0

    def load(offset: int, size: int) -> int:
        if offset < 0 or offset + size > len(packet):
            raise _OutOfBounds
        return int.from_bytes(packet[offset : offset + size], "big")

    try:
        while True:
            code, jt, jf, k = program[pc]
            pc += 1
            if code == vf.BPF_LD | vf.BPF_B | vf.BPF_ABS:
                a = load(k, 1)
            elif code == vf.BPF_LD | vf.BPF_B | vf.BPF_IND:
                a = load(x + k, 1)
            elif code == vf.BPF_LD | vf.BPF_W | vf.BPF_IMM:
                a = k
            elif code == vf.BPF_LD | vf.BPF_MEM:
                a = mem[k]
            elif code == vf.BPF_LDX | vf.BPF_B | vf.BPF_MSH:
                x = 4 * (load(k, 1) & 0x0F)
            elif code == vf.BPF_ST:
                mem[k] = a
            elif code == vf.BPF_MISC | vf.BPF_TAX:
                x = a
            elif code == vf.BPF_ALU | vf.BPF_AND | vf.BPF_K:
                a &= k
            elif code == vf.BPF_ALU | vf.BPF_RSH | vf.BPF_K:
                a >>= k
            elif code == vf.BPF_ALU | vf.BPF_RSH | vf.BPF_X:
                assert x < 32, "the kernel rejects shifts of 32 or more at run time"
                a >>= x
            elif code == vf.BPF_JMP | vf.BPF_JEQ | vf.BPF_K:
                pc += jt if a == k else jf
            elif code == vf.BPF_RET | vf.BPF_K:
                return k
            else:
                raise AssertionError(f"instruction {code:#x} not in the interpreter")
            assert pc < len(program), "ran off the end (the kernel refuses such a program)"
    except _OutOfBounds:
        return 0


def ipv4_datagram(vrrp: bytes, *, protocol: int = 112, options: bytes = b"") -> bytes:
    """An IPv4 header (with ``options``) and ``vrrp``, as an IPv4 raw socket sees it."""
    ihl = 5 + len(options) // 4
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        0xC0,
        4 * ihl + len(vrrp),
        0,
        0,
        255,
        protocol,
        0,
        SRC4.packed,
        codec.MCAST_V4.packed,
    )
    return header + options + vrrp


def advert(vrid: int, family: int) -> bytes:
    src, dst, vip = (SRC4, codec.MCAST_V4, VIP4) if family == 4 else (SRC6, codec.MCAST_V6, VIP6)
    packet = codec.encode(codec.Advert(3, 1, 100, 100, (vip,)), src=src, dst=dst)
    return packet[:1] + bytes([vrid]) + packet[2:]  # any VRID, 0 included (checksum aside)


def datagram(vrid: int, family: int) -> bytes:
    vrrp = advert(vrid, family)
    return ipv4_datagram(vrrp) if family == 4 else vrrp


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize(
    "vrids",
    [{51}, {1, 2, 3}, {0, 31, 32, 63, 64, 255}, set(range(1, 256)), set(range(1, 256, 7))],
    ids=["one", "three", "word-edges", "all", "sparse"],
)
def test_accepts_exactly_the_vrids_of_the_set(family: int, vrids: set[int]) -> None:
    program = vf.vrid_filter(vrids, family)
    accepted = {vrid for vrid in range(256) if run(program, datagram(vrid, family))}
    assert accepted == vrids
    assert all(run(program, datagram(v, family)) == vf.ACCEPT for v in vrids)


@pytest.mark.parametrize("family", [4, 6])
def test_empty_set_drops_everything(family: int) -> None:
    program = vf.vrid_filter((), family)
    assert not any(run(program, datagram(vrid, family)) for vrid in range(256))


@pytest.mark.parametrize("family", [4, 6])
def test_cost_does_not_grow_with_the_set(family: int) -> None:
    # A bitmap of 8 words: 8 word tests at most, whatever the number of VRIDs.
    assert len(vf.vrid_filter(range(256), family)) == len(vf.vrid_filter({0, 32, 64}, family)) + 25


def test_ipv4_header_options_are_skipped_by_their_length() -> None:
    program = vf.vrid_filter({51}, 4)
    options = bytes([0x94, 0x04, 0, 0])  # router alert, as some senders add
    assert run(program, ipv4_datagram(advert(51, 4), options=options)) == vf.ACCEPT
    assert run(program, ipv4_datagram(advert(52, 4), options=options)) == 0
    assert vf.vrid_of(ipv4_datagram(advert(51, 4), options=options), 4) == 51


def test_ipv4_other_protocol_is_dropped() -> None:
    program = vf.vrid_filter({51}, 4)
    assert run(program, ipv4_datagram(advert(51, 4), protocol=17)) == 0


@pytest.mark.parametrize("family", [4, 6])
def test_too_short_for_a_vrid_is_dropped_and_has_none(family: int) -> None:
    program = vf.vrid_filter(range(256), family)
    for vrrp in (b"", b"\x31"):
        packet = ipv4_datagram(vrrp) if family == 4 else vrrp
        assert run(program, packet) == 0
        assert vf.vrid_of(packet, family) is None
    # Two bytes are enough: the instance, not the filter, says what is wrong with it.
    packet = ipv4_datagram(b"\x31\x33") if family == 4 else b"\x31\x33"
    assert run(program, packet) == vf.ACCEPT
    assert vf.vrid_of(packet, family) == 0x33


@pytest.mark.parametrize("family", [4, 6])
def test_vrid_of_reads_what_the_filter_tests(family: int) -> None:
    for vrid in (0, 1, 51, 255):
        assert vf.vrid_of(datagram(vrid, family), family) == vrid


def test_vrid_of_a_bad_ipv4_header_length_is_none() -> None:
    packet = bytearray(datagram(51, 4))
    packet[0] = 0x44  # IHL 4: shorter than an IPv4 header
    assert vf.vrid_of(bytes(packet), 4) is None


def test_pack_is_an_array_of_sock_filter() -> None:
    program = vf.vrid_filter({51}, 6)
    packed = vf.pack(program)
    assert len(packed) == 8 * len(program)
    assert struct.unpack("HBBI", packed[:8]) == program[0]


@pytest.mark.parametrize("bad", [-1, 256])
def test_bad_vrid_or_family_is_a_clear_error(bad: int) -> None:
    with pytest.raises(ValueError, match=r"VRID must be 0\.\.255"):
        vf.vrid_filter({bad}, 4)
    with pytest.raises(ValueError, match="family must be 4 or 6"):
        vf.vrid_filter({51}, 5)
