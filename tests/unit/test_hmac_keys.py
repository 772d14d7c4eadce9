"""HMAC key rotation, the pure and file-reading parts: ``auth.KeyRing`` verifying with several
keys, the loader's ``hmac_accept_key_files`` rules, ``preflight.read_hmac_keys`` reading the
files (problems named by key path, never showing a key) and what a reload diff says.

The MACs are built here with hmac/hashlib from the trailer layout (as in test_auth.py), not
with the code under test, so a ring that verified with the wrong key would be caught.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hadirector.config.diff import diff
from hadirector.config.load import load_text
from hadirector.errors import ConfigError, DecodeError
from hadirector.preflight import preflight, read_hmac_keys
from hadirector.vrrp.auth import MIN_KEY_LEN, KeyRing, sign, verify
from hadirector.vrrp.codec import MCAST_V4, IPAddress

OLD = bytes(range(32))
NEW = bytes(range(100, 140))
OTHER = b"\xaa" * 32
S4 = IPv4Address("192.0.2.1")
S6 = IPv6Address("fe80::1")
P = "vrrp_instance[0]"


def trailed(packet: bytes, key: bytes, seq: int, src: IPAddress, dst: IPAddress) -> bytes:
    """The trailer built by hand: magic, big-endian seq, HMAC-SHA256 over the addresses,
    the packet, the magic and the seq."""
    seq_bytes = struct.pack("!Q", seq)
    message = src.packed + dst.packed + packet + b"HDA1" + seq_bytes
    return packet + b"HDA1" + seq_bytes + hmac.new(key, message, hashlib.sha256).digest()


# --------------------------------------------------------------------------- KeyRing


def test_ring_verifies_with_signing_and_accepted_keys_and_says_which() -> None:
    ring = KeyRing(NEW, [OLD, OTHER])
    packet = b"\x31\x33\x64\x01payload"
    assert ring.verify(trailed(packet, NEW, 7, S4, MCAST_V4), src=S4, dst=MCAST_V4) == (
        packet,
        7,
        0,
    )
    assert ring.verify(trailed(packet, OLD, 8, S4, MCAST_V4), src=S4, dst=MCAST_V4)[2] == 1
    assert ring.verify(trailed(packet, OTHER, 9, S4, MCAST_V4), src=S4, dst=MCAST_V4)[2] == 2
    with pytest.raises(DecodeError) as info:
        ring.verify(trailed(packet, b"\x55" * 32, 9, S4, MCAST_V4), src=S4, dst=MCAST_V4)
    assert info.value.reason == "auth"


def test_ring_signs_with_the_signing_key_only() -> None:
    ring = KeyRing(NEW, [OLD])
    packet = b"\x31\x33\x64\x01payload"
    signed = ring.sign(packet, seq=42, src=S6, dst=IPv6Address("ff02::12"))
    assert signed == trailed(packet, NEW, 42, S6, IPv6Address("ff02::12"))
    # A peer that only knows the old key refuses it: accepted keys never sign.
    with pytest.raises(DecodeError):
        verify(signed, key=OLD, src=S6, dst=IPv6Address("ff02::12"))


def test_ring_without_accepted_keys_is_plain_verify() -> None:
    ring = KeyRing(OLD)
    data = sign(b"abc", key=OLD, seq=1, src=S4, dst=MCAST_V4)
    assert ring.verify(data, src=S4, dst=MCAST_V4) == (b"abc", 1, 0)
    assert verify(data, key=OLD, src=S4, dst=MCAST_V4) == (b"abc", 1)
    assert (ring.signing, ring.accepted, len(ring)) == (OLD, (), 1)


def test_ring_repr_equality_and_short_keys() -> None:
    ring = KeyRing(NEW, [OLD])
    assert NEW.hex() not in repr(ring) and OLD.hex() not in repr(ring)
    assert repr(NEW) not in repr(ring) and repr(OLD) not in repr(ring)
    assert ring == KeyRing(NEW, (OLD,))
    assert ring != KeyRing(NEW)
    assert ring != KeyRing(OLD, [NEW])  # which key signs matters
    assert hash(ring) == hash(KeyRing(NEW, [OLD]))
    with pytest.raises(ValueError, match=f"at least {MIN_KEY_LEN}"):
        KeyRing(NEW, [b"short"])
    with pytest.raises(ValueError, match=f"at least {MIN_KEY_LEN}"):
        KeyRing(b"")


keys = st.binary(min_size=32, max_size=64)


@given(
    st.lists(keys, min_size=1, max_size=5, unique=True),
    st.integers(0, 4),
    st.binary(min_size=1, max_size=80),
    st.integers(0, 2**64 - 1),
)
def test_ring_finds_the_key_that_signed(
    ring_keys: list[bytes], pick: int, packet: bytes, seq: int
) -> None:
    ring = KeyRing(ring_keys[0], ring_keys[1:])
    index = pick % len(ring_keys)
    data = trailed(packet, ring_keys[index], seq, S4, MCAST_V4)
    assert ring.verify(data, src=S4, dst=MCAST_V4) == (packet, seq, index)
    # Any flipped byte, or another key, is refused.
    for pos in (0, len(data) // 2, len(data) - 1):
        broken = data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1 :]
        with pytest.raises(DecodeError):
            ring.verify(broken, src=S4, dst=MCAST_V4)


@given(st.lists(keys, min_size=1, max_size=4, unique=True), keys)
def test_ring_refuses_a_key_it_does_not_hold(ring_keys: list[bytes], stranger: bytes) -> None:
    if stranger in ring_keys:
        return
    ring = KeyRing(ring_keys[0], ring_keys[1:])
    with pytest.raises(DecodeError) as info:
        ring.verify(trailed(b"x", stranger, 1, S4, MCAST_V4), src=S4, dst=MCAST_V4)
    assert info.value.reason == "auth"


# --------------------------------------------------------------------------- loader


def instance(extra: str) -> str:
    return (
        "[[vrrp_instance]]\n"
        'name = "VI_1"\ninterface = "eth0"\nvrid = 51\npriority = 100\n'
        'virtual_addresses = ["192.0.2.100/24"]\n' + extra
    )


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_text(text)
    return [str(p) for p in info.value.problems]


def test_accept_key_files_load() -> None:
    cfg = load_text(
        instance(
            'hmac_key_file = "/etc/hd/new.key"\n'
            'hmac_accept_key_files = ["/etc/hd/old.key", "/etc/hd/older.key"]\n'
        )
    )
    inst = cfg.vrrp_instances[0]
    assert inst.hmac_key_file == "/etc/hd/new.key"
    assert inst.hmac_accept_key_files == ("/etc/hd/old.key", "/etc/hd/older.key")
    assert load_text(instance("")).vrrp_instances[0].hmac_accept_key_files == ()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            'hmac_accept_key_files = ["/etc/hd/old.key"]\n',
            [
                f"{P}.hmac_accept_key_files: needs hmac_key_file (accepted keys verify, only"
                " hmac_key_file signs)"
            ],
        ),
        (
            "hmac_accept_key_files = []\n",
            [
                f"{P}.hmac_accept_key_files: needs hmac_key_file (accepted keys verify, only"
                " hmac_key_file signs)"
            ],
        ),
        (
            'hmac_key_file = "/k"\nhmac_accept_key_files = ["old.key"]\n',
            [f'{P}.hmac_accept_key_files[0]: must be an absolute path, got "old.key"'],
        ),
        (
            'hmac_key_file = "/k"\nhmac_accept_key_files = ["/a", "/a"]\n',
            [f'{P}.hmac_accept_key_files[1]: duplicate "/a"'],
        ),
    ],
)
def test_accept_key_files_problems(extra: str, expected: list[str]) -> None:
    assert problems(instance(extra)) == expected


def test_accept_key_files_must_be_an_array() -> None:
    found = problems(instance('hmac_key_file = "/k"\nhmac_accept_key_files = "/a"\n'))
    assert len(found) == 1 and found[0].startswith(f"{P}.hmac_accept_key_files: ")


# --------------------------------------------------------------------------- key files


def write_key(path: Path, key: bytes) -> str:
    path.write_text(key.hex() + "\n")
    path.chmod(0o600)  # a secret: the agent refuses wider
    return str(path)


def test_read_hmac_keys_reads_signing_then_accepted(tmp_path: Path) -> None:
    new = write_key(tmp_path / "new.key", NEW)
    old = tmp_path / "old.key"
    old.write_bytes(OTHER)  # raw form
    old.chmod(0o600)  # a secret: the agent refuses wider
    cfg = load_text(instance(f'hmac_key_file = "{new}"\nhmac_accept_key_files = ["{old}"]\n'))
    ring, found = read_hmac_keys(cfg.vrrp_instances[0], P)
    assert found == [] and ring == KeyRing(NEW, [OTHER])
    assert preflight(cfg) == []
    assert read_hmac_keys(load_text(instance("")).vrrp_instances[0], P) == (None, [])


def test_read_hmac_keys_names_each_bad_file_never_the_key(tmp_path: Path) -> None:
    new = write_key(tmp_path / "new.key", NEW)
    short = tmp_path / "short.key"
    short.write_text(OLD.hex()[:-2])  # 62 hex digits
    short.chmod(0o600)  # a secret: the agent refuses wider
    missing = tmp_path / "missing.key"
    cfg = load_text(
        instance(f'hmac_key_file = "{new}"\nhmac_accept_key_files = ["{missing}", "{short}"]\n')
    )
    ring, found = read_hmac_keys(cfg.vrrp_instances[0], P)
    assert ring is None
    text = [str(p) for p in found]
    assert text == [
        f"{P}.hmac_accept_key_files[0]: {missing}: No such file or directory",
        f"{P}.hmac_accept_key_files[1]: {short}: hex key must be an even number (>= 64) of"
        " hex digits, got 62",
    ]
    assert [str(p) for p in preflight(cfg)] == text
    assert all(NEW.hex()[:16] not in t for t in text)


def test_preflight_names_a_bad_signing_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_bytes(b"too short")
    bad.chmod(0o600)  # a secret: the agent refuses wider
    cfg = load_text(instance(f'hmac_key_file = "{bad}"\n'))
    assert [str(p) for p in preflight(cfg)] == [
        f"{P}.hmac_key_file: {bad}: key must be at least 32 raw bytes or 64 hex digits, got 9 bytes"
    ]


def test_key_changes_are_not_a_new_router() -> None:
    one = load_text(instance('hmac_key_file = "/a"\n'))
    two = load_text(instance('hmac_key_file = "/b"\nhmac_accept_key_files = ["/a"]\n'))
    change = diff(one, two).instance_change("VI_1")
    assert change is not None
    assert set(change.fields) == {"hmac_key_file", "hmac_accept_key_files"}
    assert not change.replaces
