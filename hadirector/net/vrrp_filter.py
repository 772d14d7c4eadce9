"""The kernel's first look at a VRRP datagram: a classic BPF socket filter and the VRID.

One raw receive socket per (interface, address family) is shared by every VRRP instance
on it (net/vrrp_socket.py). ``vrid_filter(vrids, family)`` builds the classic BPF program
attached to that socket with ``SO_ATTACH_FILTER``: it accepts a datagram only when it is IP
protocol 112 and its VRID (byte 1 of the VRRP header) is one of ``vrids``, so adverts of
routers this agent does not run are dropped in the kernel and never wake Python. A
datagram too short to hold a VRID is dropped too (a load past the end ends the program
with 0). ``vrid_of(datagram, family)`` reads the VRID the same way in Python, to hand a
datagram to the instance that runs it.

What the filter sees: an IPv4 raw socket gets the IP header, so the program checks the
protocol byte and skips the header by its length (IHL); an IPv6 raw socket gets the packet
without the IPv6 header and extension headers (the socket's protocol, 112, is the upper
layer by construction), so the VRRP header is at offset 0.

The VRID set is a 256-bit bitmap split in 8 words: the program computes word = VRID >> 5
and bit = VRID & 31 and tests one bit of a constant, so its cost does not grow with the
number of VRIDs (at most 8 comparisons). Pure: no I/O, standard library only.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

__all__ = ["ACCEPT", "Instruction", "pack", "vrid_filter", "vrid_of"]

VRRP_PROTOCOL = 112
ACCEPT = 0xFFFFFFFF  # return value: keep the whole datagram
DROP = 0

# Classic BPF opcodes (linux/filter.h, linux/bpf_common.h).
BPF_LD, BPF_LDX, BPF_ST, BPF_ALU, BPF_JMP, BPF_RET, BPF_MISC = (
    0x00,
    0x01,
    0x02,
    0x04,
    0x05,
    0x06,
    0x07,
)
BPF_W, BPF_B = 0x00, 0x10
BPF_IMM, BPF_ABS, BPF_IND, BPF_MEM, BPF_MSH = 0x00, 0x20, 0x40, 0x60, 0xA0
BPF_AND, BPF_RSH = 0x50, 0x70
BPF_JEQ = 0x10
BPF_K, BPF_X = 0x00, 0x08
BPF_TAX = 0x00

# (code, jt, jf, k), as in struct sock_filter.
Instruction = tuple[int, int, int, int]


def _insn(code: int, k: int = 0, jt: int = 0, jf: int = 0) -> Instruction:
    return (code, jt, jf, k)


def vrid_filter(vrids: Iterable[int], family: int) -> list[Instruction]:
    """The classic BPF program accepting IP protocol 112 datagrams of one of ``vrids``.

    ``family`` is 4 (datagrams start with the IPv4 header) or 6 (with the VRRP header).
    An empty set gives a program that drops everything. ``ValueError`` for a VRID outside
    0..255 or another family.
    """
    if family not in (4, 6):
        raise ValueError(f"family must be 4 or 6, got {family!r}")
    words = [0] * 8
    for vrid in vrids:
        if not 0 <= vrid <= 255:
            raise ValueError(f"VRID must be 0..255, got {vrid!r}")
        words[vrid >> 5] |= 1 << (vrid & 31)
    if not any(words):
        return [_insn(BPF_RET | BPF_K, DROP)]
    program: list[Instruction] = []
    if family == 4:
        program += [
            _insn(BPF_LD | BPF_B | BPF_ABS, 9),  # A = protocol
            _insn(BPF_JMP | BPF_JEQ | BPF_K, VRRP_PROTOCOL, jt=0, jf=0),  # jf patched below
            _insn(BPF_LDX | BPF_B | BPF_MSH, 0),  # X = 4 * (IHL)
            _insn(BPF_LD | BPF_B | BPF_IND, 1),  # A = VRID
        ]
    else:
        program.append(_insn(BPF_LD | BPF_B | BPF_ABS, 1))  # A = VRID
    program += [
        _insn(BPF_ST, 0),  # M[0] = VRID
        _insn(BPF_ALU | BPF_AND | BPF_K, 31),
        _insn(BPF_MISC | BPF_TAX),  # X = bit
        _insn(BPF_LD | BPF_MEM, 0),
        _insn(BPF_ALU | BPF_RSH | BPF_K, 5),  # A = word
    ]
    # For each word that has a VRID: if A == word, test the bit; else next word.
    # Layout per word: jeq #w, 0, 4 | ld #bits | rsh x | and #1 | jeq #0, →drop, →accept
    tests = [(w, bits) for w, bits in enumerate(words) if bits]
    drop_at = len(program) + 5 * len(tests)
    accept_at = drop_at + 1
    for word, bits in tests:
        here = len(program)
        program += [
            _insn(BPF_JMP | BPF_JEQ | BPF_K, word, jt=0, jf=4),
            _insn(BPF_LD | BPF_W | BPF_IMM, bits),
            _insn(BPF_ALU | BPF_RSH | BPF_X),
            _insn(BPF_ALU | BPF_AND | BPF_K, 1),
            _insn(
                BPF_JMP | BPF_JEQ | BPF_K,
                0,
                jt=drop_at - (here + 5),
                jf=accept_at - (here + 5),
            ),
        ]
    program += [_insn(BPF_RET | BPF_K, DROP), _insn(BPF_RET | BPF_K, ACCEPT)]
    if family == 4:
        code, jt, _jf, k = program[1]
        program[1] = (code, jt, drop_at - 2, k)  # not protocol 112: drop
    return program


def pack(program: list[Instruction]) -> bytes:
    """The program as an array of ``struct sock_filter`` (native byte order)."""
    return b"".join(struct.pack("HBBI", code, jt, jf, k) for code, jt, jf, k in program)


def vrid_of(datagram: bytes, family: int) -> int | None:
    """The VRID of a datagram as a raw socket of ``family`` returns it; None when it is
    too short to hold one (or, for IPv4, its header length is not valid)."""
    if family == 4:
        if not datagram:
            return None
        header_len = (datagram[0] & 0x0F) * 4
        if header_len < 20 or len(datagram) <= header_len + 1:
            return None
        return datagram[header_len + 1]
    return datagram[1] if len(datagram) >= 2 else None
