"""What a reload changes: compare two ``Config`` objects section by section.

Named objects (VRRP instances, sync groups, track scripts, track files) are matched by
name, virtual servers by service key (protocol+address+port or fwmark+family), real
servers by (address, port). A renamed instance is therefore one removed and one added;
a virtual server whose address moves is one removed and one added service, as it is for
the kernel. Orders follow the configuration: added and changed in the new file's order,
removed in the old file's. Real servers and sync group members are compared as sets, so
reordering them in the file changes nothing.

For changed instances and services the names of the changed fields are given, and this
module is where the agent's reload plan is decided: an instance either restarts (stopped
and started again: ``InstanceChange.replaces``, ``restarts``) or is updated in place (see
``INSTANCE_RESTART_FIELDS``).

This module must not do I/O, read the clock or import anything outside the standard
library: it is part of the pure core.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from hadirector.config.schema import (
    Config,
    IPAddress,
    RealServer,
    ServiceKey,
    SyncGroup,
    VirtualServer,
    VrrpInstance,
)

__all__ = [
    "INSTANCE_RESTART_FIELDS",
    "Changes",
    "ConfigDiff",
    "InstanceChange",
    "ServiceChange",
    "diff",
    "restarts",
]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# The VRRP instance fields whose change restarts the instance (its socket, machine, key
# ring and replay state are made anew). Two are derived, not fields of ``VrrpInstance``:
# "family" (that of the VIPs) and "hmac" (HMAC turned on or off).
#   interface, family          the receive/send socket is bound to them
#   vrid, version              another router on the wire (the machine refuses a new VRID)
#   unicast_peers, unicast_src the socket's destinations, source address and multicast
#                              membership are chosen when it is opened
#   hmac                       a trailer appears or disappears: start with fresh sequence
#                              and replay state (a change of key files with HMAC on is
#                              handed over in place)
# Every other field is applied in place by the running instance: the machine's priority,
# intervals and preemption (``VrrpMachine.reconfigure``), the VIPs, and what is read for
# each advert sent or received (checksum forms, accept_from, v2 authentication, keys).
INSTANCE_RESTART_FIELDS = frozenset(
    {"interface", "vrid", "version", "family", "unicast_peers", "unicast_src", "hmac"}
)


@dataclass(frozen=True)
class Changes(Generic[K]):
    """Keys added, removed and changed between two versions of one section."""

    added: tuple[K, ...] = ()
    removed: tuple[K, ...] = ()
    changed: tuple[K, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


@dataclass(frozen=True)
class InstanceChange:
    """A VRRP instance present in both versions, and the fields that differ."""

    name: str
    fields: tuple[str, ...]

    @property
    def replaces(self) -> bool:
        """True when the instance restarts (a field of ``INSTANCE_RESTART_FIELDS`` changed)."""
        return not INSTANCE_RESTART_FIELDS.isdisjoint(self.fields)


RealServerKey = tuple[IPAddress, int | None]


@dataclass(frozen=True)
class ServiceChange:
    """A virtual server present in both versions: changed service fields, real servers."""

    key: ServiceKey
    fields: tuple[str, ...]  # service-level fields, never "real_servers"
    real_servers: Changes[RealServerKey]


@dataclass(frozen=True)
class ConfigDiff:
    """Everything a reload changes; falsy when the two configurations are equivalent."""

    global_fields: tuple[str, ...] = ()
    ipvs_fields: tuple[str, ...] = ()
    vrrp_instances: Changes[str] = Changes()
    instance_changes: tuple[InstanceChange, ...] = ()
    sync_groups: Changes[str] = Changes()
    track_scripts: Changes[str] = Changes()
    track_files: Changes[str] = Changes()
    virtual_servers: Changes[ServiceKey] = Changes()
    service_changes: tuple[ServiceChange, ...] = ()

    def __bool__(self) -> bool:
        return bool(
            self.global_fields
            or self.ipvs_fields
            or self.vrrp_instances
            or self.sync_groups
            or self.track_scripts
            or self.track_files
            or self.virtual_servers
        )

    def instance_change(self, name: str) -> InstanceChange | None:
        return next((c for c in self.instance_changes if c.name == name), None)

    def service_change(self, key: ServiceKey) -> ServiceChange | None:
        return next((c for c in self.service_changes if c.key == key), None)


def diff(old: Config, new: Config) -> ConfigDiff:
    """Compare two configurations (``old`` running, ``new`` to be applied)."""
    instances = _changes(old.vrrp_instances, new.vrrp_instances, _name)
    old_instances = {i.name: i for i in old.vrrp_instances}
    instance_changes = tuple(
        InstanceChange(i.name, _instance_fields(old_instances[i.name], i))
        for i in new.vrrp_instances
        if i.name in instances.changed
    )
    services = _changes(old.virtual_servers, new.virtual_servers, _key, _same_service)
    old_services = {v.key: v for v in old.virtual_servers}
    service_changes = tuple(
        _service_change(old_services[v.key], v)
        for v in new.virtual_servers
        if v.key in services.changed
    )
    return ConfigDiff(
        global_fields=_fields(old.global_, new.global_),
        ipvs_fields=_fields(old.ipvs, new.ipvs),
        vrrp_instances=instances,
        instance_changes=instance_changes,
        sync_groups=_changes(old.sync_groups, new.sync_groups, _name, _same_group),
        track_scripts=_changes(old.track_scripts, new.track_scripts, _name),
        track_files=_changes(old.track_files, new.track_files, _name),
        virtual_servers=services,
        service_changes=service_changes,
    )


def _name(obj: Any) -> str:
    return str(obj.name)


def _key(vs: VirtualServer) -> ServiceKey:
    return vs.key


def _rs_key(rs: RealServer) -> RealServerKey:
    return rs.key


def _changes(
    old: Iterable[V],
    new: Iterable[V],
    key: Callable[[V], K],
    same: Callable[[V, V], bool] | None = None,
) -> Changes[K]:
    old_by_key = {key(x): x for x in old}
    new_by_key = {key(x): x for x in new}
    equal = same or (lambda a, b: a == b)
    return Changes(
        added=tuple(k for k in new_by_key if k not in old_by_key),
        removed=tuple(k for k in old_by_key if k not in new_by_key),
        changed=tuple(
            k for k, v in new_by_key.items() if k in old_by_key and not equal(old_by_key[k], v)
        ),
    )


def _fields(old: Any, new: Any, skip: frozenset[str] = frozenset()) -> tuple[str, ...]:
    return tuple(
        f.name
        for f in dataclasses.fields(old)
        if f.name not in skip and getattr(old, f.name) != getattr(new, f.name)
    )


def restarts(old: VrrpInstance, new: VrrpInstance) -> bool:
    """True when a reload from ``old`` to ``new`` restarts the instance, False when it is
    updated in place (or unchanged)."""
    return not INSTANCE_RESTART_FIELDS.isdisjoint(_instance_fields(old, new))


def _instance_fields(old: VrrpInstance, new: VrrpInstance) -> tuple[str, ...]:
    """The changed fields, then the derived "family" and "hmac" when they changed."""
    derived = (
        ("family", old.family != new.family),
        ("hmac", (old.hmac_key_file is None) != (new.hmac_key_file is None)),
    )
    return (*_fields(old, new), *(name for name, changed in derived if changed))


def _same_group(a: SyncGroup, b: SyncGroup) -> bool:
    return set(a.instances) == set(b.instances) and a.notify == b.notify


def _same_service(a: VirtualServer, b: VirtualServer) -> bool:
    return not _fields(a, b, frozenset({"real_servers"})) and not _changes(
        a.real_servers, b.real_servers, _rs_key
    )


def _service_change(old: VirtualServer, new: VirtualServer) -> ServiceChange:
    return ServiceChange(
        key=new.key,
        fields=_fields(old, new, frozenset({"real_servers"})),
        real_servers=_changes(old.real_servers, new.real_servers, _rs_key),
    )
