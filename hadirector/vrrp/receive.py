"""The receive checks of one VRRP instance (RFC 5798 §7.1, RFC 3768 §7.1), sans-IO.

``check`` takes one received VRRP packet (the IP payload, with the IP header's source,
destination and TTL / hop limit), the instance's ``ReceivePolicy``, its HMAC key ring (or
None) and its replay guard, and answers ``Accepted`` (the advert, and what the caller must
remember: the HMAC sequence number to commit, the key that verified it, whether it came in
keepalived's old unicast checksum form), ``Rejected`` (a reason and a detail, for the
counters and the log) or ``NotOurs`` (a well-formed advert for another VRID: not an error,
the segment carries other virtual routers).

The checks, in order; the first that fails decides the reason:

- ``ttl``: the TTL (IPv4) or hop limit (IPv6) must be 255 (RFC 5798 §7.1, RFC 3768 §7.1):
  an advert that crossed a router is not from this link.
- ``auth`` / ``replay`` (opt-in HMAC trailer, vrrp/auth.py): the trailer must verify with a
  key of the ring, and its sequence number must be above the last one accepted from that
  source. The guard is only read here: the caller commits ``Accepted.hmac_seq``.
- the codec's checks (codec.decode: ``short``, ``version``, ``type``, ``vrid``, ``family``,
  ``count``, ``length``, ``checksum``, v2 ``auth`` type, ``interval``): RFC 5798 §7.1
  (version, checksum, length), §5.2. In IPv4 v3 unicast mode a packet whose checksum only
  verifies over keepalived's old pseudo-header (destination 224.0.0.18) is accepted and
  flagged ``old_checksum``.
- ``NotOurs``: the VRID is not ours (RFC 5798 §7.1: "MUST verify that the VRID is
  configured on the receiving interface", otherwise discard).
- ``version``: a VRRP version other than the one configured.
- ``source``: a source not in ``accept_from`` (when it is given: unicast peers).
- ``auth`` (v2 only, RFC 3768 §7.1 and §5.3.6): the authentication type must be the
  configured one and, for a simple-text password, the data must match.
- ``interval_mismatch`` (v2, RFC 3768 §7.1): the advert interval must equal ours;
  ``interval_out_of_bounds`` (v3): an interval above ``max_adopted_interval_cs`` is never
  adopted (RFC 5798 §6.4.2 adopts the master's interval; a bound keeps a forged one from
  silencing a backup for minutes).

The address list is not compared with ours (RFC 5798 §7.1 allows logging a mismatch;
a peer with another list still elects correctly).

``Checker`` is ``check`` with a memory of the last advert it accepted without HMAC: a
master sends the same bytes every interval, so the same packet (bytes, source,
destination, TTL) under the same policy gets the same answer without decoding it again.

Pure: no I/O, no clock; the caller logs and counts.
"""

from __future__ import annotations

from dataclasses import dataclass

from hadirector.errors import DecodeError
from hadirector.vrrp import auth, codec
from hadirector.vrrp.codec import IPAddress

__all__ = [
    "Accepted",
    "Checker",
    "NotOurs",
    "ReceivePolicy",
    "Rejected",
    "Result",
    "check",
    "interval_rejection",
]

REQUIRED_TTL = 255


@dataclass(frozen=True, slots=True)
class ReceivePolicy:
    """What one instance accepts.

    ``v2_auth_data``: None for authentication type 0, the 8 bytes of the simple-text
    password (codec.v2_password) for type 1; ignored in v3. ``old_checksum_fallback``: also
    accept keepalived's old v3 unicast checksum form (IPv4 unicast mode only).
    """

    vrid: int
    version: int
    advert_interval_cs: int
    max_adopted_interval_cs: int
    accept_from: frozenset[IPAddress] = frozenset()
    v2_auth_data: bytes | None = None
    v3_ipv4_pseudo_header: bool = True
    old_checksum_fallback: bool = False


@dataclass(frozen=True, slots=True)
class Accepted:
    """The advert passed every check. ``hmac_seq``/``hmac_key_index``: the trailer's
    sequence number (the caller commits it to the replay guard) and which key of the ring
    verified it (0 the signing key); None without HMAC. ``old_checksum``: the advert came in
    keepalived's old unicast checksum form."""

    advert: codec.Advert
    hmac_seq: int | None = None
    hmac_key_index: int | None = None
    old_checksum: bool = False


@dataclass(frozen=True, slots=True)
class Rejected:
    """The packet is refused: ``reason`` (a counter and log key) and a human ``detail``."""

    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class NotOurs:
    """A valid advert for another virtual router on the segment: ignored, not an error."""

    vrid: int


Result = Accepted | Rejected | NotOurs


def interval_rejection(
    *, version: int, advert_interval_cs: int, max_adopted_interval_cs: int, interval_cs: int
) -> Rejected | None:
    """The interval check: v2 intervals must equal ours (RFC 3768 §7.1); a v3 interval
    outside 1..``max_adopted_interval_cs`` is not adopted (RFC 5798 §6.4.2, bounded)."""
    if version == 2:
        if interval_cs != advert_interval_cs:
            return Rejected(
                "interval_mismatch", f"interval {interval_cs} cs, configured {advert_interval_cs}"
            )
        return None
    if not 1 <= interval_cs <= max_adopted_interval_cs:
        return Rejected(
            "interval_out_of_bounds",
            f"interval {interval_cs} cs, at most {max_adopted_interval_cs} adopted",
        )
    return None


def _decode(
    payload: bytes, src: IPAddress, dst: IPAddress, policy: ReceivePolicy
) -> tuple[codec.Advert, bool]:
    """Decode; with ``old_checksum_fallback`` also accept keepalived's old checksum form
    (the flag says whether the advert came in it)."""
    pseudo = policy.v3_ipv4_pseudo_header
    try:
        return codec.decode(payload, src=src, dst=dst, v3_ipv4_pseudo_header=pseudo), False
    except DecodeError as exc:
        if exc.reason != "checksum" or not policy.old_checksum_fallback or src.version != 4:
            raise
        advert = codec.decode(payload, src=src, dst=codec.MCAST_V4, v3_ipv4_pseudo_header=pseudo)
        return advert, True


def check(
    payload: bytes,
    *,
    src: IPAddress,
    dst: IPAddress,
    ttl: int,
    policy: ReceivePolicy,
    keys: auth.KeyRing | None = None,
    replay: auth.ReplayGuard | None = None,
) -> Result:
    """Every receive check of one instance on one packet (see the module docstring)."""
    if ttl != REQUIRED_TTL:
        return Rejected("ttl", f"ttl/hop limit {ttl}, must be {REQUIRED_TTL}")
    seq: int | None = None
    key_index: int | None = None
    if keys is not None:
        try:
            payload, seq, key_index = keys.verify(payload, src=src, dst=dst)
        except DecodeError as exc:
            return Rejected("auth", str(exc))
        last = replay.highest(src) if replay is not None else None
        if last is not None and seq <= last:
            return Rejected("replay", f"sequence {seq} not newer")
    try:
        advert, old_checksum = _decode(payload, src, dst, policy)
    except DecodeError as exc:
        return Rejected(exc.reason, exc.detail)
    if advert.vrid != policy.vrid:
        return NotOurs(advert.vrid)
    if advert.version != policy.version:
        return Rejected("version", f"version {advert.version}, configured {policy.version}")
    if policy.accept_from and src not in policy.accept_from:
        return Rejected("source", "not an allowed peer")
    if policy.version == 2:
        want_type = codec.AUTH_NONE if policy.v2_auth_data is None else codec.AUTH_SIMPLE_TEXT
        if advert.auth_type != want_type or (
            policy.v2_auth_data is not None and advert.auth_data != policy.v2_auth_data
        ):
            return Rejected("auth", f"auth type {advert.auth_type} or password mismatch")
    rejected = interval_rejection(
        version=policy.version,
        advert_interval_cs=policy.advert_interval_cs,
        max_adopted_interval_cs=policy.max_adopted_interval_cs,
        interval_cs=advert.interval_cs,
    )
    if rejected is not None:
        return rejected
    return Accepted(advert, seq, key_index, old_checksum)


class Checker:
    """``check`` that remembers the last packet it accepted without HMAC (see the module
    docstring). Rejected packets are checked in full every time."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: tuple[bytes, IPAddress, IPAddress, int, ReceivePolicy, Accepted] | None = None

    def check(
        self,
        payload: bytes,
        *,
        src: IPAddress,
        dst: IPAddress,
        ttl: int,
        policy: ReceivePolicy,
        keys: auth.KeyRing | None = None,
        replay: auth.ReplayGuard | None = None,
    ) -> Result:
        """What ``check`` answers for these arguments."""
        last = self._last
        if (
            keys is None
            and last is not None
            and payload == last[0]
            and ttl == last[3]
            and policy is last[4]
            # The socket reuses address objects: identity first (ipaddress's == is Python).
            and (src is last[1] or src == last[1])
            and (dst is last[2] or dst == last[2])
        ):
            return last[5]
        result = check(payload, src=src, dst=dst, ttl=ttl, policy=policy, keys=keys, replay=replay)
        if keys is None and isinstance(result, Accepted):
            self._last = (payload, src, dst, ttl, policy, result)
        return result
