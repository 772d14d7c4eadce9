"""The tests' own Internet checksum (tests/checksum.py), on worked examples: every other
test that checks a checksum relies on it."""

from __future__ import annotations

from tests.checksum import internet_checksum, ones_complement_sum, pseudo_header


def test_rfc1071_worked_example() -> None:
    # RFC 1071 §3: words 0001 f203 f4f5 f6f7 sum to 0xddf2 after carries.
    data = bytes([0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7])
    assert ones_complement_sum(data) == 0xDDF2
    assert internet_checksum(data) == 0x220D
    # the checksum written into the data makes the whole sum check to 0
    assert internet_checksum(data + (0x220D).to_bytes(2, "big")) == 0


def test_odd_length_is_padded_with_a_zero_byte() -> None:
    assert internet_checksum(b"\x01") == internet_checksum(b"\x01\x00") == 0xFEFF


def test_pseudo_headers_by_family() -> None:
    assert pseudo_header("192.0.2.1", "224.0.0.18", 12) == bytes.fromhex("c0000201e00000120070000c")
    assert pseudo_header("fe80::1", "ff02::12", 12) == (
        bytes.fromhex("fe800000000000000000000000000001")
        + bytes.fromhex("ff020000000000000000000000000012")
        + bytes.fromhex("0000000c00000070")
    )
