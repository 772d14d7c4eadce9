"""Turn the difference between a desired and an actual IPVS table into kernel operations.

``plan(desired, actual, ...)`` returns the shortest ordered list of operations that makes the
kernel's table agree with the desired one, and nothing for what already agrees: an agent
restarted over a correct table writes nothing, so no connection is reset.

Rules:

- A service whose attributes differ is edited in place (``EditService``), never deleted and
  re-added: that would drop its connections. A service whose *key* changes is a different
  service (added, then the old one deleted, if owned).
- Destinations: missing ones are added, differing ones edited (``EditDest`` carries the whole
  desired destination, since the kernel's "set" replaces all of it), extra ones deleted.
- Services absent from the desired table are deleted only when this agent owns them: all of
  them with ``own_whole_table``, else those listed in ``owned``. Others are never touched.
- Order: services in numeric key order; for each, the service add/edit, then its dest adds,
  edits and deletes (adds first, so a pool never empties on the way to a new pool); service
  deletions last (a replacement is up before the old service goes). A deleted service takes
  its destinations with it: no ``DelDest`` is emitted for it.

``plan_edits(desired, known)`` is the health path's planner: given the table as this agent
last wrote it (``known``, no kernel read), it returns just the destination operations a
change of health, drain, slow-start or dynamic weight needs (an ``EditDest`` per changed
weight; ``DelDest`` / ``AddDest`` for a removed or returning server and a sorry server going
in or out), in the order ``plan`` would emit them, or None when the change is not one of
destinations only (a service added, deleted or edited: that is a full reconcile's work).
With ``known`` equal to the kernel's table, its operations are exactly ``plan``'s.

``apply_ops(actual, ops)`` simulates the kernel on a table (refusing what the kernel refuses),
so tests can check that a plan converges and is idempotent.

This module is part of the pure core: no I/O, no clock, standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hadirector.ipvs.model import (
    SVC_F_HASHED,
    Dest,
    DestKey,
    Entry,
    Service,
    ServiceKey,
    Table,
    sorted_dests,
    sorted_services,
)


@dataclass(frozen=True)
class AddService:
    """Create a virtual service (IPVS_CMD_NEW_SERVICE)."""

    key: ServiceKey
    service: Service


@dataclass(frozen=True)
class EditService:
    """Change a service's attributes in place (IPVS_CMD_SET_SERVICE); carries all of them."""

    key: ServiceKey
    service: Service


@dataclass(frozen=True)
class DelService:
    """Delete a virtual service and, with it, its destinations (IPVS_CMD_DEL_SERVICE)."""

    key: ServiceKey


@dataclass(frozen=True)
class AddDest:
    """Add a destination to a service (IPVS_CMD_NEW_DEST)."""

    service_key: ServiceKey
    dest_key: DestKey
    dest: Dest


@dataclass(frozen=True)
class EditDest:
    """Replace a destination's attributes (IPVS_CMD_SET_DEST); carries the whole dest."""

    service_key: ServiceKey
    dest_key: DestKey
    dest: Dest


@dataclass(frozen=True)
class DelDest:
    """Remove a destination from a service (IPVS_CMD_DEL_DEST)."""

    service_key: ServiceKey
    dest_key: DestKey


Op = AddService | EditService | DelService | AddDest | EditDest | DelDest


class SimulationError(Exception):
    """An operation the kernel would refuse (the errno it would return is in ``errno_name``)."""

    def __init__(self, errno_name: str, op: Op) -> None:
        self.errno_name = errno_name
        self.op = op
        super().__init__(f"{errno_name}: {op}")


def _plan_dests(key: ServiceKey, desired: Entry, actual: Entry | None) -> list[Op]:
    ops: list[Op] = []
    have = actual.dests if actual is not None else {}
    for dkey in sorted_dests(desired.dests):
        want = desired.dests[dkey]
        if dkey not in have:
            ops.append(AddDest(key, dkey, want))
    for dkey in sorted_dests(desired.dests):
        want = desired.dests[dkey]
        if dkey in have and have[dkey].effective() != want.effective():
            ops.append(EditDest(key, dkey, want))
    for dkey in sorted_dests(have):
        if dkey not in desired.dests:
            ops.append(DelDest(key, dkey))
    return ops


def plan(
    desired: Table,
    actual: Table,
    *,
    own_whole_table: bool = False,
    owned: Iterable[ServiceKey] | None = None,
) -> list[Op]:
    """The ordered operations that turn ``actual`` into ``desired`` (see module docstring)."""
    ops: list[Op] = []
    for key in sorted_services(desired):
        want = desired[key]
        have = actual.get(key)
        if have is None:
            ops.append(AddService(key, want.service))
        elif have.service.effective() != want.service.effective():
            ops.append(EditService(key, want.service))
        ops.extend(_plan_dests(key, want, have))
    owned_keys = frozenset(owned) if owned is not None else frozenset()
    for key in sorted_services(actual):
        if key not in desired and (own_whole_table or key in owned_keys):
            ops.append(DelService(key))
    return ops


def plan_edits(desired: Table, known: Table) -> list[Op] | None:
    """The destination operations from ``known`` to ``desired``; None if services differ.

    ``known`` is the table of this agent's services as last written; services not in
    ``desired`` and not in ``known`` are not looked at (the full reconcile owns them).
    """
    if desired.keys() != known.keys():
        return None
    ops: list[Op] = []
    for key in sorted_services(desired):
        want, have = desired[key], known[key]
        if have.service.effective() != want.service.effective():
            return None
        ops.extend(_plan_dests(key, want, have))
    return ops


def _kernel_service(service: Service) -> Service:
    """A service as a kernel dump would show it back (the HASHED bit set)."""
    return Service(
        service.scheduler,
        service.flags | SVC_F_HASHED,
        service.timeout_s,
        service.netmask,
        service.pe_name,
    )


def apply_ops(actual: Table, ops: Sequence[Op]) -> dict[ServiceKey, Entry]:
    """A new table: ``actual`` after the kernel carried out ``ops`` in order.

    Raises SimulationError where the kernel would fail: adding what exists (EEXIST),
    editing or deleting what does not (ESRCH for services, ENOENT for dests).
    """
    table: dict[ServiceKey, tuple[Service, dict[DestKey, Dest]]] = {
        k: (e.service, dict(e.dests)) for k, e in actual.items()
    }
    for op in ops:
        match op:
            case AddService(key=key, service=service):
                if key in table:
                    raise SimulationError("EEXIST", op)
                table[key] = (_kernel_service(service), {})
            case EditService(key=key, service=service):
                if key not in table:
                    raise SimulationError("ESRCH", op)
                table[key] = (_kernel_service(service), table[key][1])
            case DelService(key=key):
                if key not in table:
                    raise SimulationError("ESRCH", op)
                del table[key]
            case AddDest(service_key=skey, dest_key=dkey, dest=dest):
                if skey not in table:
                    raise SimulationError("ESRCH", op)
                if dkey in table[skey][1]:
                    raise SimulationError("EEXIST", op)
                table[skey][1][dkey] = dest
            case EditDest(service_key=skey, dest_key=dkey, dest=dest):
                if skey not in table:
                    raise SimulationError("ESRCH", op)
                if dkey not in table[skey][1]:
                    raise SimulationError("ENOENT", op)
                table[skey][1][dkey] = dest
            case DelDest(service_key=skey, dest_key=dkey):
                if skey not in table:
                    raise SimulationError("ESRCH", op)
                if dkey not in table[skey][1]:
                    raise SimulationError("ENOENT", op)
                del table[skey][1][dkey]
    return {k: Entry(s, d) for k, (s, d) in table.items()}


def service_text(key: ServiceKey) -> str:
    return str(key).replace("tcp ", "TCP ").replace("udp ", "UDP ").replace("sctp ", "SCTP ")


def describe(op: Op) -> str:
    """An operation in logs and errors: ``add dest 10.0.0.1:80 to TCP 192.0.2.1:80``."""
    match op:
        case AddService(key=key, service=service):
            return f"add service {service_text(key)} (scheduler {service.scheduler})"
        case EditService(key=key, service=service):
            return f"edit service {service_text(key)} (scheduler {service.scheduler})"
        case DelService(key=key):
            return f"delete service {service_text(key)}"
        case AddDest(service_key=skey, dest_key=dkey):
            return f"add dest {dkey} to {service_text(skey)}"
        case EditDest(service_key=skey, dest_key=dkey):
            return f"edit dest {dkey} of {service_text(skey)}"
        case DelDest(service_key=skey, dest_key=dkey):
            return f"delete dest {dkey} from {service_text(skey)}"
    raise TypeError(f"not an IPVS operation: {op!r}")
