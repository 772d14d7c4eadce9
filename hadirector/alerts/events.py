"""Alert events and how they read: a mail's subject and body, a webhook's JSON document.

An ``Event`` is one change a person may need to know of: a VRRP instance or a sync group
entering a state, a real server going down or coming back. It carries what changed,
where (director, interface, VRID, addresses, service), since when the old state held, why,
and the peer's view (the last advert heard: who, at what priority, how long before).
Everything here is pure: the agent fills the event, this module only words it, so the
text is tested exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["instance", "group", "real_server", "service"]

KIND_WORDS: dict[str, str] = {
    "instance": "VRRP instance",
    "group": "sync group",
    "real_server": "real server",
    "service": "virtual service",
}


@dataclass(frozen=True)
class Peer:
    """The last advert an instance accepted: its source, priority and age (seconds)."""

    address: str
    priority: int
    age_s: float


@dataclass(frozen=True)
class Event:
    """One change, as reported to people and machines.

    ``name`` is the instance or group name, or "SERVICE SERVER" for a real server (the
    service and server as logs spell them: ``tcp 192.0.2.1:80`` and ``10.0.0.5:80``).
    ``at`` is wall-clock time (seconds since the epoch); ``since_s`` how long the old state
    had held (None: since the agent started, no earlier change seen).
    """

    kind: Kind
    name: str
    old: str
    new: str
    reason: str
    director: str
    at: float
    since_s: float | None = None
    # Where: interface, vrid, vips, priority for an instance; members for a group;
    # service, server, check for a real server. Strings, in display order.
    where: tuple[tuple[str, str], ...] = ()
    peer: Peer | None = None
    # The states of the director's other instances and groups at the time ("VI_1=MASTER").
    now: tuple[str, ...] = ()
    smtp_alert: bool = True

    @property
    def bad(self) -> bool:
        """A change for the worse (a mail's subject says so first)."""
        return self.new in ("FAULT", "DOWN", "STOPPED", "QUORUM LOST")


def duration(seconds: float) -> str:
    """A duration as a person reads it: "3.6 s", "45 s", "12 min 5 s", "3 h 12 min", "2 d 4 h"."""
    if seconds < 10:
        return f"{max(0.0, seconds):.1f} s"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    minutes, s = divmod(s, 60)
    if minutes < 60:
        return f"{minutes} min {s} s" if s else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def timestamp(at: float) -> str:
    """Wall-clock time in UTC, to the second: "2026-12-05 03:00:12 UTC"."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def iso8601(at: float) -> str:
    """RFC 3339 time in UTC with milliseconds (what Alertmanager and JSON readers take)."""
    whole = int(at)
    millis = round((at - whole) * 1000)
    if millis == 1000:
        whole, millis = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def subject(ev: Event) -> str:
    """One line that says it all in a mail client's list."""
    tag = f"[hadirector {ev.director}]"
    if ev.kind == "real_server":
        service, server = _split_server(ev.name)
        return f"{tag} {ev.new}: real server {server} of {service}"
    what = KIND_WORDS[ev.kind]
    if ev.kind == "service":
        return f"{tag} {ev.new}: {what} {ev.name}"
    return f"{tag} {ev.new}: {what} {ev.name} (was {ev.old})"


def body(ev: Event) -> str:
    """The mail's text: what, where, when, why, the peer's view, the director's state."""
    lines: list[str] = []
    was = f"was {ev.old}"
    if ev.since_s is not None:
        was += f" for {duration(ev.since_s)}"
    else:
        was += " since the agent started"
    if ev.kind == "real_server":
        service, server = _split_server(ev.name)
        verb = "is DOWN" if ev.new == "DOWN" else "is UP again"
        lines.append(f"What:   real server {server} of service {service} {verb} ({was})")
    elif ev.kind == "service":
        verb = "lost its quorum" if ev.new == "QUORUM LOST" else "has its quorum again"
        lines.append(f"What:   virtual service {ev.name} {verb} ({was})")
    else:
        lines.append(f"What:   {KIND_WORDS[ev.kind]} {ev.name} is now {ev.new} ({was})")
    where = [f"director {ev.director}", *(f"{k} {v}" for k, v in ev.where)]
    lines.append("Where:  " + ", ".join(where))
    lines.append(f"When:   {timestamp(ev.at)}")
    lines.append(f"Why:    {ev.reason or 'not given'}")
    if ev.kind == "instance":
        if ev.peer is None:
            lines.append("Peer:   no advert heard from another router since this one started")
        else:
            lines.append(
                f"Peer:   last advert from {ev.peer.address} at priority {ev.peer.priority}, "
                f"{duration(ev.peer.age_s)} before this change"
                + (" (it steps down: priority 0)" if ev.peer.priority == 0 else "")
            )
    if ev.now:
        lines.append("Now:    " + ", ".join(ev.now))
    lines.append("")
    lines.append(_advice(ev))
    return "\n".join(lines) + "\n"


def _advice(ev: Event) -> str:
    """One sentence on what the change means for traffic."""
    if ev.kind == "service":
        if ev.new == "QUORUM LOST":
            return (
                "Too few real servers are up: the sorry server, if configured, answers "
                "instead, and quorum_down ran."
            )
        return "Enough real servers are up again: the sorry server, if any, is out."
    if ev.kind == "real_server":
        if dict(ev.where).get("cause") == "drain":
            if ev.new == "DOWN":
                return "The operator drained it (hadirector drain): weight 0 until undrained."
            return "The operator undrained it: back in rotation with its configured weight."
        if ev.new == "DOWN":
            return (
                "The server is out of rotation (weight 0 or removed, per the service's "
                "health_action) until its check passes again."
            )
        return "The server is back in rotation with its configured weight."
    if ev.new == "MASTER":
        return "This director now holds the virtual addresses and answers for them."
    if ev.new == "BACKUP":
        return "This director no longer holds the virtual addresses: the peer should."
    if ev.new == "FAULT":
        return (
            "This director cannot take over until the fault clears: if the peer fails "
            "too, nobody answers for the virtual addresses."
        )
    if ev.new == "STOPPED":
        return "The agent stopped here (a graceful stop hands over to the peer)."
    return ""


def _split_server(name: str) -> tuple[str, str]:
    """("tcp 192.0.2.1:80", "10.0.0.5:80") from "tcp 192.0.2.1:80 10.0.0.5:80"."""
    service, _, server = name.rpartition(" ")
    return service, server


def document(ev: Event) -> dict[str, Any]:
    """The webhook's JSON document for one event (stable keys, documented in README)."""
    doc: dict[str, Any] = {
        "version": 1,
        "kind": ev.kind,
        "name": ev.name,
        "old": ev.old,
        "new": ev.new,
        "reason": ev.reason,
        "director": ev.director,
        "at": iso8601(ev.at),
        "since_seconds": None if ev.since_s is None else round(ev.since_s, 3),
        "where": dict(ev.where),
        "summary": subject(ev),
    }
    if ev.kind == "real_server":
        doc["service"], doc["server"] = _split_server(ev.name)
    if ev.peer is not None:
        doc["peer"] = {
            "address": ev.peer.address,
            "priority": ev.peer.priority,
            "age_seconds": round(ev.peer.age_s, 3),
        }
    return doc
