"""The agent's status snapshot: a tree of frozen dataclasses, built by the agent, read by
the control server (which sends it as JSON), the metrics page and ``hadirector status``.

``AgentStatus.to_json()`` is the body of the control socket's ``status`` reply;
``AgentStatus.from_json()`` reads one back (the CLI's side) and raises ``StatusError``,
naming the field, for anything that is not a well-formed report, so a client never
crashes on what an agent sends.

Pure: standard library only, no clock and no I/O. The values are what the agent saw when
it built the snapshot; ages and uptimes are computed by the builder.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, cast

# Every state a VRRP instance (or a sync group, once its members agree) reports.
STATES = ("INIT", "BACKUP", "MASTER", "FAULT", "STOPPED")

Json = dict[str, Any]


class StatusError(ValueError):
    """A status report that is not well formed (what is wrong, and where)."""


def counts(values: Mapping[str, int]) -> Mapping[str, int]:
    """A read-only copy of ``values``, sorted by key."""
    return MappingProxyType(dict(sorted(values.items())))


class _ToJson:
    """``to_json()`` for the snapshot's dataclasses: every field, in declaration order,
    under its own name; tuples become lists, mappings dicts, nested parts their JSON."""

    def to_json(self) -> Json:
        return {f.name: _json_value(getattr(self, f.name)) for f in fields(cast(Any, self))}


def _json_value(value: object) -> Any:
    if isinstance(value, _ToJson):
        return value.to_json()
    if isinstance(value, tuple):
        return [_json_value(item) for item in value]
    if isinstance(value, Mapping):
        return dict(value)
    return value


@dataclass(frozen=True)
class InstanceStatus(_ToJson):
    """One VRRP instance."""

    name: str
    state: str  # one of STATES
    interface: str
    vrid: int
    version: int
    family: int
    unicast: bool
    source: str | None  # the address adverts are sent from; None without a socket
    priority: int  # configured
    effective_priority: int | None  # after tracking; None before the machine exists
    advert_interval_cs: int  # configured
    master_adver_interval_cs: int | None  # in use (a v3 backup adopts the master's)
    vips: tuple[str, ...]  # configured
    vips_held: tuple[str, ...]  # on the interfaces now, sorted
    fault_reasons: tuple[str, ...]  # empty unless in FAULT
    counters: Mapping[str, int]  # the instance's own (adverts, rejects, transitions...)
    machine_counters: Mapping[str, int]  # the state machine's

    def __post_init__(self) -> None:
        object.__setattr__(self, "counters", counts(self.counters))
        object.__setattr__(self, "machine_counters", counts(self.machine_counters))

    @classmethod
    def from_json(cls, data: object, where: str = "instance") -> InstanceStatus:
        r = _Reader(data, where)
        return cls(
            name=r.text("name"),
            state=r.state("state"),
            interface=r.text("interface"),
            vrid=r.integer("vrid"),
            version=r.integer("version"),
            family=r.integer("family"),
            unicast=r.flag("unicast"),
            source=r.opt_text("source"),
            priority=r.integer("priority"),
            effective_priority=r.opt_integer("effective_priority"),
            advert_interval_cs=r.integer("advert_interval_cs"),
            master_adver_interval_cs=r.opt_integer("master_adver_interval_cs"),
            vips=r.texts("vips"),
            vips_held=r.texts("vips_held"),
            fault_reasons=r.texts("fault_reasons"),
            counters=r.counts("counters"),
            machine_counters=r.counts("machine_counters"),
        )

    @property
    def rejected(self) -> int:
        """Adverts rejected, all reasons together."""
        return sum(v for k, v in self.counters.items() if k.startswith("rejected_"))


@dataclass(frozen=True)
class SyncGroupStatus(_ToJson):
    """A sync group: its common state (None until the members first agree) and theirs."""

    name: str
    state: str | None
    members: Mapping[str, str]  # member instance -> state, in configuration order

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", MappingProxyType(dict(self.members)))

    @classmethod
    def from_json(cls, data: object, where: str = "sync group") -> SyncGroupStatus:
        r = _Reader(data, where)
        state = r.opt_text("state")
        if state is not None and state not in STATES:
            raise StatusError(f"{where}.state: unknown state {state!r}")
        members = r.obj("members")
        for member, value in members.items():
            if value not in STATES:
                raise StatusError(f"{where}.members.{member}: unknown state {value!r}")
        return cls(name=r.text("name"), state=state, members=members)


@dataclass(frozen=True)
class IpvsStatus(_ToJson):
    """The IPVS component. ``available`` is None when IPVS is not used (no virtual
    servers); the other optional fields are None when the component does not keep them."""

    available: bool | None = None
    configured_services: int | None = None
    services: tuple[str, ...] | None = None  # owned (programmed by this agent)
    refused: tuple[str, ...] | None = None  # left out (e.g. a scheduler the kernel lacks)
    last_reconcile_age_s: float | None = None
    counters: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "counters", counts(self.counters))

    @classmethod
    def from_json(cls, data: object, where: str = "ipvs") -> IpvsStatus:
        r = _Reader(data, where)
        return cls(
            available=r.opt_flag("available"),
            configured_services=r.opt_integer("configured_services"),
            services=r.opt_texts("services"),
            refused=r.opt_texts("refused"),
            last_reconcile_age_s=r.opt_number("last_reconcile_age_s"),
            counters=r.counts("counters"),
        )


@dataclass(frozen=True)
class ChecksStatus(_ToJson):
    """Health checks: how many run, and the real servers they hold down; pools: the
    servers the operator drained and the services without quorum."""

    running: int = 0
    down: tuple[str, ...] = ()  # "service server", sorted
    drained: tuple[str, ...] = ()  # "service server", sorted
    quorum_lost: tuple[str, ...] = ()  # services, sorted

    @classmethod
    def from_json(cls, data: object, where: str = "checks") -> ChecksStatus:
        r = _Reader(data, where)
        return cls(
            running=r.integer("running"),
            down=r.texts("down"),
            drained=r.texts("drained"),
            quorum_lost=r.texts("quorum_lost"),
        )


@dataclass(frozen=True)
class NotifyStatus(_ToJson):
    """Notify scripts: queued or running, and how many failed (None if not counted)."""

    pending: int = 0
    failures: int | None = None

    @classmethod
    def from_json(cls, data: object, where: str = "notify") -> NotifyStatus:
        r = _Reader(data, where)
        return cls(pending=r.integer("pending"), failures=r.opt_integer("failures"))


@dataclass(frozen=True)
class AnycastAddressStatus(_ToJson):
    """One anycast address: announced over BGP or not, and why."""

    address: str
    announced: bool
    reason: str

    @classmethod
    def from_json(cls, data: object, where: str) -> AnycastAddressStatus:
        r = _Reader(data, where)
        return cls(r.text("address"), r.flag("announced"), r.text("reason"))


@dataclass(frozen=True)
class AnycastStatus(_ToJson):
    """Anycast: the device and table the routes go in, and each address's verdict. Empty
    (``device`` None) when no virtual server is anycast."""

    device: str | None = None
    route_table: int = 0
    error: str | None = None  # the device could not be made: nothing is announced
    addresses: tuple[AnycastAddressStatus, ...] = ()

    @classmethod
    def from_json(cls, data: object, where: str = "anycast") -> AnycastStatus:
        r = _Reader(data, where)
        return cls(
            device=r.opt_text("device"),
            route_table=r.integer("route_table"),
            error=r.opt_text("error"),
            addresses=tuple(
                AnycastAddressStatus.from_json(item, f"{where}.addresses[{i}]")
                for i, item in enumerate(r.array("addresses"))
            ),
        )


@dataclass(frozen=True)
class ResyncStatus(_ToJson):
    """The last bulk resync (sync/bulk.py): ``role`` "master" (sent to a joiner) or
    "backup" (asked for; ``arrived`` False: nothing within resync_timeout, ``seconds`` is
    then the time waited); ``age_s`` since it ended."""

    role: str
    arrived: bool
    entries: int
    seconds: float
    age_s: float

    @classmethod
    def from_json(cls, data: object, where: str = "resync") -> ResyncStatus:
        r = _Reader(data, where)
        return cls(
            role=r.text("role"),
            arrived=r.flag("arrived"),
            entries=r.integer("entries"),
            seconds=r.number("seconds"),
            age_s=r.number("age_s"),
        )


@dataclass(frozen=True)
class AgentStatus(_ToJson):
    """The whole report: the router, its instances (by name), sync groups, IPVS, checks
    and notify scripts."""

    router_id: str
    version: str
    pid: int
    uptime_s: float
    stopping: bool
    instances: tuple[InstanceStatus, ...]
    sync_groups: tuple[SyncGroupStatus, ...] = ()
    ipvs: IpvsStatus = IpvsStatus()
    checks: ChecksStatus = ChecksStatus()
    notify: NotifyStatus = NotifyStatus()
    anycast: AnycastStatus = AnycastStatus()
    resync: ResyncStatus | None = None  # None: no bulk resync yet

    def instance(self, name: str) -> InstanceStatus:
        """The instance called ``name`` (KeyError if there is none)."""
        for inst in self.instances:
            if inst.name == name:
                return inst
        raise KeyError(name)

    @classmethod
    def from_json(cls, data: object) -> AgentStatus:
        """A report read back from JSON; ``StatusError`` if it is not well formed."""
        r = _Reader(data, "status")
        return cls(
            router_id=r.text("router_id"),
            version=r.text("version"),
            pid=r.integer("pid"),
            uptime_s=r.number("uptime_s"),
            stopping=r.flag("stopping"),
            instances=tuple(
                InstanceStatus.from_json(item, f"status.instances[{i}]")
                for i, item in enumerate(r.array("instances"))
            ),
            sync_groups=tuple(
                SyncGroupStatus.from_json(item, f"status.sync_groups[{i}]")
                for i, item in enumerate(r.array("sync_groups"))
            ),
            ipvs=IpvsStatus.from_json(r.get("ipvs"), "status.ipvs"),
            checks=ChecksStatus.from_json(r.get("checks"), "status.checks"),
            notify=NotifyStatus.from_json(r.get("notify"), "status.notify"),
            # Absent from an agent older than anycast: nothing announced.
            anycast=(
                AnycastStatus.from_json(r.data["anycast"], "status.anycast")
                if "anycast" in r.data
                else AnycastStatus()
            ),
            # Absent from an agent older than bulk resync.
            resync=(
                ResyncStatus.from_json(r.data["resync"], "status.resync")
                if r.data.get("resync") is not None
                else None
            ),
        )


class _Reader:
    """Typed reads of one JSON object's fields; any mismatch is a ``StatusError``."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise StatusError(f"{where}: expected an object, got {_kind(data)}")
        self.data: dict[str, Any] = data
        self.where = where

    def get(self, key: str) -> Any:
        if key not in self.data:
            raise StatusError(f"{self.where}.{key}: missing")
        return self.data[key]

    def _wrong(self, key: str, expected: str, value: object) -> StatusError:
        return StatusError(f"{self.where}.{key}: expected {expected}, got {_kind(value)}")

    def text(self, key: str) -> str:
        value = self.get(key)
        if not isinstance(value, str):
            raise self._wrong(key, "a string", value)
        return value

    def opt_text(self, key: str) -> str | None:
        return None if self.get(key) is None else self.text(key)

    def flag(self, key: str) -> bool:
        value = self.get(key)
        if not isinstance(value, bool):
            raise self._wrong(key, "true or false", value)
        return value

    def opt_flag(self, key: str) -> bool | None:
        return None if self.get(key) is None else self.flag(key)

    def integer(self, key: str) -> int:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._wrong(key, "an integer", value)
        return value

    def opt_integer(self, key: str) -> int | None:
        return None if self.get(key) is None else self.integer(key)

    def number(self, key: str) -> float:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._wrong(key, "a number", value)
        return float(value)

    def opt_number(self, key: str) -> float | None:
        return None if self.get(key) is None else self.number(key)

    def state(self, key: str) -> str:
        value = self.text(key)
        if value not in STATES:
            raise StatusError(f"{self.where}.{key}: unknown state {value!r}")
        return value

    def array(self, key: str) -> list[Any]:
        value = self.get(key)
        if not isinstance(value, list):
            raise self._wrong(key, "a list", value)
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        items = self.array(key)
        if not all(isinstance(v, str) for v in items):
            raise self._wrong(key, "a list of strings", items)
        return tuple(items)

    def opt_texts(self, key: str) -> tuple[str, ...] | None:
        return None if self.get(key) is None else self.texts(key)

    def obj(self, key: str) -> dict[str, Any]:
        value = self.get(key)
        if not isinstance(value, dict):
            raise self._wrong(key, "an object", value)
        return value

    def counts(self, key: str) -> Mapping[str, int]:
        value = self.obj(key)
        for name, count in value.items():
            if isinstance(count, bool) or not isinstance(count, int):
                raise StatusError(
                    f"{self.where}.{key}.{name}: expected an integer, got {_kind(count)}"
                )
        return value


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def sorted_strs(values: Iterable[object]) -> tuple[str, ...]:
    """Values as sorted strings (VIPs held, IPVS services): the order status shows."""
    return tuple(sorted(str(v) for v in values))
