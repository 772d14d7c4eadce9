"""Values the IPVS kernel adapter reads back, on top of the model's keys and attributes.

The desired-table vocabulary (``ServiceKey``, ``DestKey``, ``Service``, ``Dest`` and the
kernel's numbers) lives in :mod:`hadirector.ipvs.model`; the adapter takes and returns those
same objects, so the reconciler compares like with like. This module adds what only the
kernel knows: a service or destination *as read back* (with connection counters), the global
protocol timeouts, the sync-daemon record (also what ``sync.roles`` wants running) and the
IPVS version.

Pure: standard library and the pure model only; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from hadirector.ipvs.model import Dest, DestKey, Entry, Service, ServiceKey

__all__ = [
    "SYNC_MCAST_GROUP",
    "SYNC_MCAST_PORT",
    "SYNC_MCAST_TTL",
    "Dest",
    "DestKey",
    "DestState",
    "Entry",
    "IpvsInfo",
    "Service",
    "ServiceKey",
    "ServiceState",
    "ServiceTraffic",
    "Stats",
    "SyncDaemon",
    "SyncState",
    "Timeouts",
]


@dataclass(frozen=True)
class Stats:
    """Traffic counters the kernel keeps for a service or a destination, since it was
    added (or since ``ipvsadm --zero``): connections scheduled, packets and bytes from the
    client side (in) and from the real servers (out)."""

    connections: int = 0
    packets_in: int = 0
    packets_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


@dataclass(frozen=True)
class ServiceState:
    """A virtual service as the kernel reports it.

    ``service.flags`` is as the kernel reports it, including the internal HASHED bit
    (``Service.effective()`` drops it for comparisons). ``stats`` (its traffic counters)
    takes no part in comparisons.
    """

    key: ServiceKey
    service: Service
    stats: Stats | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ServiceTraffic:
    """A service's counters and its destinations as last read (for metrics)."""

    stats: Stats | None
    dests: tuple[DestState, ...]


@dataclass(frozen=True)
class DestState:
    """A destination as the kernel reports it, with its connection counters.

    ``active_conns`` are established connections, ``inactive_conns`` all others (TIME_WAIT,
    SYN_RECV, ...), ``persistent_conns`` persistence templates pointing at it.
    """

    key: DestKey
    dest: Dest
    active_conns: int = 0
    inactive_conns: int = 0
    persistent_conns: int = 0
    stats: Stats | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Timeouts:
    """Global IPVS protocol timeouts in seconds (``ipvsadm --set tcp tcpfin udp``).

    When setting, 0 leaves that timeout unchanged (the kernel's convention).
    """

    tcp_s: int
    tcpfin_s: int
    udp_s: int


@dataclass(frozen=True)
class IpvsInfo:
    """The kernel's IPVS version (``(1, 2, 1)``) and connection hash table size."""

    version: tuple[int, int, int]
    conn_tab_size: int


class SyncState(IntEnum):
    """Role of a kernel connection-sync daemon (IP_VS_STATE_MASTER / _BACKUP)."""

    MASTER = 1
    BACKUP = 2


# The kernel's defaults for a sync daemon's multicast (include/net/ip_vs.h): the one place
# they are written, for the configuration, the roles and the kernel adapter alike.
SYNC_MCAST_GROUP = "224.0.0.81"
SYNC_MCAST_PORT = 8848
SYNC_MCAST_TTL = 1


@dataclass(frozen=True)
class SyncDaemon:
    """One kernel sync daemon: as it should run (``sync.roles``) or as GET_DAEMON reports it.

    ``mcast_group`` is the multicast group in text form; ``sync_maxlen`` the largest sync
    message payload in bytes (0 = from the MTU: the kernel's choice, which a wanted daemon
    leaves open).
    """

    state: SyncState
    ifname: str
    syncid: int
    sync_maxlen: int = 0
    mcast_group: str = SYNC_MCAST_GROUP
    mcast_port: int = SYNC_MCAST_PORT
    mcast_ttl: int = SYNC_MCAST_TTL
