"""Building the adverts one instance sends, sans-IO: bytes out, the caller sends them.

``build`` turns the machine's ``SendAdvert`` (priority, interval) into one packet per
destination (the multicast group, or each unicast peer), following the instance's
``SendPolicy``:

- RFC 5798 §5.1 (v3) / RFC 3768 §5.1 (v2) packet format; the v2 authentication type and
  simple-text password when configured (RFC 3768 §5.3.6), none in v3 (RFC 5798 §9). At
  most 255 addresses fit the Count field (RFC 5798 §5.2.6): the first 255 are sent.
- The v3 checksum over the pseudo-header of the real destination (RFC 5798 §5.2.8), or,
  toward a peer speaking keepalived's old unicast form (``old_checksum``), as if sent to
  224.0.0.18.
- With an HMAC key ring, each packet is signed with the signing key and a sequence number
  that strictly increases: ``next_seq(last, now_ns)`` takes wall-clock nanoseconds so that a
  restarted agent keeps increasing, but never a number at or below the last one sent, so a
  clock stepped back cannot turn our adverts into "replays" for the peer. The caller gives
  the clock reading and keeps the last sequence number (``Built.last_seq``).

``Builder`` is ``build`` with a memory: a master sends the same bytes every interval, so
without HMAC (whose sequence number changes every packet) the packets are encoded once and
again only when an input changes (priority, interval, source, destinations, policy).

Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from hadirector.vrrp import auth, codec
from hadirector.vrrp.codec import IPAddress

__all__ = ["Builder", "Built", "SendPolicy", "build", "next_seq"]

MAX_ADDRESSES = 255


@dataclass(frozen=True, slots=True)
class SendPolicy:
    """How one instance writes its adverts. ``v2_auth_data``: None for no authentication,
    the 8 bytes of the simple-text password (codec.v2_password) otherwise; v2 only."""

    version: int
    vrid: int
    addresses: tuple[IPAddress, ...]
    v2_auth_data: bytes | None = None
    v3_ipv4_pseudo_header: bool = True
    old_checksum: bool = False


@dataclass(frozen=True, slots=True)
class Built:
    """The packets to send, as (payload, destination), in order; the last HMAC sequence
    number used (unchanged without HMAC)."""

    packets: tuple[tuple[bytes, IPAddress], ...]
    last_seq: int


def next_seq(last: int, now_ns: int) -> int:
    """The next HMAC sequence number: the clock, but always above ``last``."""
    return max(now_ns, last + 1)


def advert(policy: SendPolicy, *, priority: int, interval_cs: int) -> codec.Advert:
    """The advert (fields, not yet bytes) for this priority and interval."""
    v2_auth = policy.version == 2 and policy.v2_auth_data is not None
    return codec.Advert(
        version=policy.version,
        vrid=policy.vrid,
        priority=priority,
        interval_cs=interval_cs,
        addresses=policy.addresses[:MAX_ADDRESSES],
        auth_type=codec.AUTH_SIMPLE_TEXT if v2_auth else codec.AUTH_NONE,
        auth_data=(policy.v2_auth_data or b"") if v2_auth else b"",
    )


def build(
    policy: SendPolicy,
    *,
    priority: int,
    interval_cs: int,
    src: IPAddress,
    destinations: tuple[IPAddress, ...],
    keys: auth.KeyRing | None = None,
    last_seq: int = 0,
    now_ns: int = 0,
) -> Built:
    """One packet per destination (see the module docstring). ``ValueError`` for fields
    the codec cannot carry (a configuration the loader should have refused)."""
    fields = advert(policy, priority=priority, interval_cs=interval_cs)
    packets: list[tuple[bytes, IPAddress]] = []
    for dst in destinations:
        payload = codec.encode(
            fields,
            src=src,
            dst=codec.MCAST_V4 if policy.old_checksum else dst,
            v3_ipv4_pseudo_header=policy.v3_ipv4_pseudo_header,
        )
        if keys is not None:
            last_seq = next_seq(last_seq, now_ns)
            payload = keys.sign(payload, seq=last_seq, src=src, dst=dst)
        packets.append((payload, dst))
    return Built(tuple(packets), last_seq)


class Builder:
    """``build`` that remembers its last answer without HMAC (see the module docstring):
    the same inputs give the same packets, encoded once."""

    __slots__ = ("_built", "_inputs")

    def __init__(self) -> None:
        self._inputs: tuple[object, ...] | None = None
        self._built: Built | None = None

    def build(
        self,
        policy: SendPolicy,
        *,
        priority: int,
        interval_cs: int,
        src: IPAddress,
        destinations: tuple[IPAddress, ...],
        keys: auth.KeyRing | None = None,
        last_seq: int = 0,
        now_ns: int = 0,
    ) -> Built:
        """What ``build`` answers for these arguments."""
        if keys is not None:
            return build(
                policy,
                priority=priority,
                interval_cs=interval_cs,
                src=src,
                destinations=destinations,
                keys=keys,
                last_seq=last_seq,
                now_ns=now_ns,
            )
        inputs = (policy, priority, interval_cs, src, destinations, last_seq)
        built = self._built
        if built is None or inputs != self._inputs:
            built = build(
                policy,
                priority=priority,
                interval_cs=interval_cs,
                src=src,
                destinations=destinations,
                last_seq=last_seq,
            )
            self._inputs = inputs
            self._built = built
        return built
