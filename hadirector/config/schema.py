"""The typed configuration: frozen dataclasses built by ``config.load`` from a TOML file.

Every value here is already validated, defaulted and resolved (a VRRP instance's
``accept_from`` in unicast mode, a track reference's weight, a real server's forwarding
method), so consumers never re-apply defaults. Everything is immutable and hashable:
tuples, never lists or dicts, so two configurations compare with ``==`` and ``config.diff``
can tell what a reload changes.

Units are in the names: VRRP intervals are integer centiseconds (``*_cs``), every other
duration is seconds (``*_s``, float, or int where the kernel takes whole seconds).

This module must not do I/O, read the clock or import anything outside the standard
library and the pure core (the IPVS model's ``ServiceKey``): it is part of the pure core.
"""

from __future__ import annotations

import ipaddress
import posixpath
from dataclasses import dataclass, field
from typing import Literal

# One ServiceKey for the configuration, the reload plan and the kernel table.
from hadirector.ipvs.model import ServiceKey as ServiceKey
from hadirector.ipvs.model import service_key_of
from hadirector.ipvs.types import SYNC_MCAST_GROUP, SYNC_MCAST_PORT, SYNC_MCAST_TTL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

Family = Literal[4, 6]
LogLevel = Literal["debug", "info", "warning", "error"]
Protocol = Literal["tcp", "udp", "sctp"]
Forwarding = Literal["nat", "dr", "tun", "fullnat"]
TunnelType = Literal["ipip", "gue", "gre"]
AuthType = Literal["none", "pass"]
HealthAction = Literal["quiesce", "remove"]
CheckType = Literal["tcp", "http", "https", "script", "udp", "dns"]

LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")
PROTOCOLS: tuple[str, ...] = ("tcp", "udp", "sctp")
DEFAULT_PROTOCOL: Protocol = "tcp"  # of an address service and of an fwmark match
AUTH_TYPES: tuple[str, ...] = ("none", "pass")
FORWARDINGS: tuple[str, ...] = ("nat", "dr", "tun", "fullnat")
SCHEDULERS: tuple[str, ...] = (
    "rr",
    "wrr",
    "lc",
    "wlc",
    "lblc",
    "lblcr",
    "dh",
    "sh",
    "sed",
    "nq",
    "mh",
    "fo",
    "ovf",
    "twos",
)
# Scheduler flag -> the scheduler it belongs to (IP_VS_SVC_F_SCHED1 = *-fallback,
# IP_VS_SVC_F_SCHED2 = *-port).
SCHEDULER_FLAGS: dict[str, str] = {
    "sh-fallback": "sh",
    "sh-port": "sh",
    "mh-fallback": "mh",
    "mh-port": "mh",
}
TUNNEL_TYPES: tuple[str, ...] = ("ipip", "gue", "gre")
TUNNEL_FLAGS: tuple[str, ...] = ("nocsum", "csum", "remcsum")
HEALTH_ACTIONS: tuple[str, ...] = ("quiesce", "remove")
CHECK_TYPES: tuple[str, ...] = ("tcp", "http", "https", "script", "udp", "dns")

DEFAULT_CONTROL_SOCKET = "/run/hadirector/hadirector.sock"
DEFAULT_STATE_DIR = "/run/hadirector"
MAX_V3_INTERVAL_CS = 4095  # 12-bit Max Adver Int field (RFC 5798 §5.2.7)


def default_state_dir(control_socket: str) -> str:
    """``state_dir`` when the file sets none: the control socket's directory, so that each
    ``hadirector@NAME`` instance (socket in /run/hadirector/NAME, its runtime directory)
    keeps its drained servers apart from the others' (``DEFAULT_STATE_DIR`` for the
    default socket)."""
    return posixpath.dirname(control_socket)


@dataclass(frozen=True)
class GlobalConfig:
    """The ``[global]`` table."""

    router_id: str | None = None  # None: the agent uses the host name
    log_level: LogLevel = "info"
    control_socket: str = DEFAULT_CONTROL_SOCKET
    notify_timeout_s: float = 10.0
    state_dir: str = DEFAULT_STATE_DIR
    realtime_priority: int = 0  # 0: normal scheduling; 1..99: SCHED_RR
    # Address and TCP port of the Prometheus endpoint (GET /metrics); None: not served.
    metrics_listen: tuple[IPAddress, int] | None = None
    # Who notify, track and check scripts run as (names or numeric ids, resolved at start
    # by hadirector/security.py); None: the agent's own user (root: keepalived's default).
    script_user: str | None = None
    script_group: str | None = None  # None: script_user's primary group
    # Refuse scripts a non-root user could modify (keepalived's enable_script_security).
    script_security: bool = False
    # A group whose members may run `hadirector status` (read-only) on the control socket.
    status_group: str | None = None


@dataclass(frozen=True)
class NotifyScripts:
    """Notify commands as argv tuples (``None`` = not configured)."""

    notify: tuple[str, ...] | None = None
    master: tuple[str, ...] | None = None
    backup: tuple[str, ...] | None = None
    fault: tuple[str, ...] | None = None
    stop: tuple[str, ...] | None = None


@dataclass(frozen=True)
class VirtualAddress:
    """One VIP: address with prefix, the device it goes on, an optional IPv4 label."""

    interface: IPInterface
    dev: str
    label: str | None = None

    @property
    def address(self) -> IPAddress:
        return self.interface.ip

    @property
    def family(self) -> Family:
        return 4 if self.interface.version == 4 else 6


@dataclass(frozen=True)
class TrackRef:
    """A tracked object's name and its resolved weight (0 = going down means FAULT)."""

    name: str
    weight: int


@dataclass(frozen=True)
class VrrpInstance:
    """One ``[[vrrp_instance]]``: a VRRP router for one VRID on one interface and family."""

    name: str
    interface: str
    vrid: int
    priority: int
    virtual_addresses: tuple[VirtualAddress, ...]
    advert_interval_cs: int = 100
    version: Literal[2, 3] = 3
    preempt: bool = True
    preempt_delay_s: float = 0.0
    unicast_src: IPAddress | None = None  # None: picked at runtime
    unicast_peers: tuple[IPAddress, ...] = ()
    # Sources adverts are accepted from; empty = any. In unicast mode this is resolved to
    # unicast_peers unless given explicitly.
    accept_from: tuple[IPAddress, ...] = ()
    # v3: the largest interval a backup adopts from a master; v2: equal to advert_interval_cs.
    max_adopted_interval_cs: int = 400
    v3_checksum_pseudo_header: bool = True
    old_unicast_checksum: bool = False  # keepalived's: unicast v3 pseudo-header names 224.0.0.18
    auth_type: AuthType = "none"
    auth_pass: str | None = None
    hmac_key_file: str | None = None  # signs and verifies the HMAC trailer
    # Keys that verify but never sign (a rotation in progress); only with hmac_key_file.
    hmac_accept_key_files: tuple[str, ...] = ()
    garp_master_repeat: int = 5
    garp_interval_s: float = 0.001
    garp_master_delay_s: float = 5.0
    garp_master_refresh_s: float = 0.0
    handover_hold_s: float = 0.1
    track_interfaces: tuple[TrackRef, ...] = ()
    track_scripts: tuple[TrackRef, ...] = ()
    track_files: tuple[TrackRef, ...] = ()
    # Weight of the virtual servers' quorum as a tracked input (None: not tracked): the
    # input is up while any virtual server has quorum (ipvs/pool.py).
    track_quorum: int | None = None
    notify: NotifyScripts = field(default_factory=NotifyScripts)
    smtp_alert: bool = True  # mail on state changes (only with [alerts.email])

    @property
    def family(self) -> Family:
        """The address family of the instance: that of its VIPs (all one family)."""
        return self.virtual_addresses[0].family

    @property
    def unicast(self) -> bool:
        """True when adverts go unicast to ``unicast_peers`` instead of multicast."""
        return bool(self.unicast_peers)

    @property
    def primary_vip(self) -> IPAddress:
        return self.virtual_addresses[0].address

    @property
    def preempt_delay_cs(self) -> int:
        """``preempt_delay_s`` in whole centiseconds (the VRRP machine's clock unit)."""
        return round(self.preempt_delay_s * 100)

    @property
    def handover_hold_cs(self) -> int:
        """``handover_hold_s`` in whole centiseconds (the VRRP machine's clock unit)."""
        return round(self.handover_hold_s * 100)


@dataclass(frozen=True)
class SyncGroup:
    """A ``[[sync_group]]``: instances that change state together."""

    name: str
    instances: tuple[str, ...]
    notify: NotifyScripts = field(default_factory=NotifyScripts)
    smtp_alert: bool = True  # mail on the group's state changes (only with [alerts.email])


@dataclass(frozen=True)
class TrackScript:
    """A ``[[track_script]]``: a command whose exit status adjusts priority or faults."""

    name: str
    script: tuple[str, ...]
    interval_s: float = 1.0
    timeout_s: float = 1.0
    weight: int = 0
    rise: int = 1
    fall: int = 1


@dataclass(frozen=True)
class TrackFile:
    """A ``[[track_file]]``: a file holding an integer that, times weight, adjusts priority."""

    name: str
    path: str
    weight: int = 1


DEFAULT_SYNC_MCAST_GROUP = ipaddress.IPv4Address(SYNC_MCAST_GROUP)  # the kernel's default


@dataclass(frozen=True)
class SyncDaemonSettings:
    """The ``[ipvs.sync]`` table: the kernel's connection-sync daemons and who decides.

    Exactly one of ``instance`` / ``group`` is set after loading (a single VRRP instance
    is filled in when neither is given): its state picks the daemon's role; with ``both``
    neither is set and both daemons run.
    """

    interface: str
    instance: str | None = None
    group: str | None = None
    syncid: int = 0
    maxlen: int = 0  # largest sync message payload in bytes; 0: from the interface MTU
    mcast_group: IPAddress = DEFAULT_SYNC_MCAST_GROUP
    mcast_port: int = SYNC_MCAST_PORT
    mcast_ttl: int = SYNC_MCAST_TTL
    # Run the master and the backup daemon together, whatever VRRP says (anycast directors:
    # each sends its connections to all the others and receives theirs).
    both: bool = False
    # Bulk resync (sync/bulk.py): as master, answer a joiner's request with the whole
    # connection table; as a joiner (backup), ask for it and wait up to resync_timeout_s.
    bulk_resync: bool = True
    resync_timeout_s: float = 10.0


@dataclass(frozen=True)
class IpvsSettings:
    """The ``[ipvs]`` table."""

    own_whole_table: bool = False
    timeout_tcp_s: int | None = None
    timeout_tcpfin_s: int | None = None
    timeout_udp_s: int | None = None
    reconcile_interval_s: float = 10.0
    sync: SyncDaemonSettings | None = None  # None: no connection sync


@dataclass(frozen=True)
class FwmarkMatch:
    """Traffic an fwmark service owns: the agent keeps an nftables rule marking it."""

    address: IPAddress
    protocol: Protocol = DEFAULT_PROTOCOL
    ports: tuple[int, ...] = ()  # empty: every port


@dataclass(frozen=True)
class HttpUrl:
    """One URL of an HTTP(S) check: what it must answer."""

    path: str = "/"
    expect_status: tuple[int, ...] = (200,)
    expect_body: str | None = None
    digest: str | None = None  # MD5 of the whole body, lowercase hex (keepalived's genhash)
    expect_body_regex: str | None = None  # a regular expression the body must match


@dataclass(frozen=True)
class HealthCheck:
    """A real server's health check, resolved (the service default merged with its own)."""

    type: CheckType
    port: int | None = None  # None: the real server's port
    interval_s: float = 2.0
    timeout_s: float = 1.0
    rise: int = 2
    fall: int = 3
    path: str = "/"  # http(s)
    expect_status: tuple[int, ...] = (200,)  # http(s)
    expect_body: str | None = None  # http(s): a substring the body must contain
    host: str | None = None  # http(s): Host header (and TLS server name); None: the address
    http_version: str = "1.0"  # http(s): the request's version, "1.0" or "1.1"
    tls_verify: bool = False  # https
    script: tuple[str, ...] | None = None  # script: argv
    alpha: bool = False  # the server starts down (out of rotation) until `rise` successes
    digest: str | None = None  # http(s): MD5 of the body, lowercase hex
    expect_body_regex: str | None = None  # http(s): a regular expression the body must match
    # http(s): several URLs, each on its own connection, all must pass; empty: the one
    # given by path / expect_status / expect_body / digest.
    urls: tuple[HttpUrl, ...] = ()
    payload: str | None = None  # udp: the datagram, lowercase hex (None: empty)
    expect_reply: str | None = None  # udp: hex bytes the reply must start with
    require_reply: bool = False  # udp: a reply must come (else no ICMP error is enough)
    query_name: str = "."  # dns
    query_type: str = "A"  # dns: A, AAAA, NS, SOA, ...
    expect_rcode: str = "NOERROR"  # dns
    expect_answer: str | None = None  # dns: an address the A/AAAA answers must hold
    tls_ca_file: str | None = None  # https: verify against this CA file (turns tls_verify on)
    tls_cert_file: str | None = None  # https: client certificate (with tls_key_file)
    tls_key_file: str | None = None
    tls_server_name: str | None = None  # https: SNI and the name verified; None: host/address
    # After a failed probe of a server still up, the next probe comes this soon (None: at
    # the next interval); keepalived's delay_before_retry.
    delay_before_retry_s: float | None = None
    # The first probe comes at a random time within this many seconds of the start (None:
    # first probes spread evenly over one interval); keepalived's warmup.
    warmup_s: float | None = None
    connect_ip: IPAddress | None = None  # probe this address instead of the real server's
    bindto: IPAddress | None = None  # the probes' source address
    # script: exit 2..255 means up with weight (code - 2), keepalived's misc_dynamic.
    dynamic_weight: bool = False

    @property
    def http_urls(self) -> tuple[HttpUrl, ...]:
        """The URLs an HTTP(S) check fetches, in order."""
        if self.urls:
            return self.urls
        return (
            HttpUrl(
                self.path,
                self.expect_status,
                self.expect_body,
                self.digest,
                self.expect_body_regex,
            ),
        )


@dataclass(frozen=True)
class RealServer:
    """A ``[[virtual_server.real_server]]`` with its forwarding method resolved."""

    address: IPAddress
    port: int | None
    weight: int = 1
    upper_threshold: int = 0
    lower_threshold: int = 0
    forwarding: Forwarding = "nat"
    check: HealthCheck | None = None  # None: no health check (always in rotation)
    notify_up: tuple[str, ...] | None = None  # argv run when its check brings it back
    notify_down: tuple[str, ...] | None = None  # argv run when its check takes it out
    # Checks beyond ``check`` (``check`` given as an array): all must pass.
    extra_checks: tuple[HealthCheck, ...] = ()

    @property
    def checks(self) -> tuple[HealthCheck, ...]:
        """Every check of this server, in order (empty: always in rotation)."""
        return () if self.check is None else (self.check, *self.extra_checks)

    @property
    def key(self) -> tuple[IPAddress, int | None]:
        return (self.address, self.port)


@dataclass(frozen=True)
class SorryServer:
    """A virtual server's ``sorry_server``: in rotation only while the pool lacks quorum."""

    address: IPAddress
    port: int | None  # resolved like a real server's: None only for fwmark services
    forwarding: Forwarding = "nat"  # resolved: the service's unless given
    weight: int = 1
    inhibit: bool = False  # out of use: kept with weight 0 instead of deleted


@dataclass(frozen=True)
class VirtualServer:
    """A ``[[virtual_server]]``: one IPVS service and its real servers."""

    protocol: Protocol | None  # None for fwmark services
    address: IPAddress | None
    port: int | None
    fwmark: int | None
    family: Family
    scheduler: str = "wlc"
    scheduler_flags: tuple[str, ...] = ()
    one_packet: bool = False
    forwarding: Forwarding = "nat"
    persistence_timeout_s: int = 0
    persistence_netmask: int = 32  # prefix length, for both families
    tunnel_type: TunnelType = "ipip"
    tunnel_port: int | None = None
    tunnel_flags: tuple[str, ...] = ()
    fullnat_source: IPAddress | None = None
    match: FwmarkMatch | None = None
    real_servers: tuple[RealServer, ...] = ()
    health_action: HealthAction = "quiesce"  # what a failed check does: weight 0, or delete
    check: HealthCheck | None = None  # the default check of every real server (resolved there)
    # Pool (ipvs/pool.py): quorum is the least sum of live servers' weights; hysteresis
    # widens it both ways; the commands run when it is gained or lost.
    quorum: int = 1
    hysteresis: int = 0
    quorum_up: tuple[str, ...] | None = None
    quorum_down: tuple[str, ...] | None = None
    sorry_server: SorryServer | None = None
    # Seconds over which a recovered server's weight climbs back (0: at once).
    slow_start_s: float = 0.0
    # Default checks beyond ``check`` (``check`` given as an array).
    extra_checks: tuple[HealthCheck, ...] = ()
    # The virtual_server_group this service was expanded from (None: its own address).
    group: str | None = None
    smtp_alert: bool = True  # mail when a real server goes down or up (only with [alerts.email])
    # Announced over BGP (through the [anycast] route table) while at least
    # anycast_min_servers real servers are up; see hadirector/anycast/.
    anycast: bool = False
    anycast_min_servers: int = 1

    @property
    def key(self) -> ServiceKey:
        """What identifies the service to the kernel (and to ``config.diff``)."""
        return service_key_of(self)

    @property
    def persistence_netmask_dotted(self) -> str | None:
        """The persistence netmask as a dotted quad for IPv4 services, else None."""
        if self.family != 4:
            return None
        return str(ipaddress.IPv4Network(f"0.0.0.0/{self.persistence_netmask}").netmask)

    @property
    def persistent(self) -> bool:
        return self.persistence_timeout_s > 0


DEFAULT_ANYCAST_TABLE = 4242
DEFAULT_ANYCAST_DEVICE = "hdvip0"


@dataclass(frozen=True)
class AnycastSettings:
    """The ``[anycast]`` table: where the agent puts the routes of the addresses it announces.

    Each announced address is a ``/32`` (``/128``) route in ``route_table`` through
    ``device``, a TUN device the agent holds open (gone with the process); the local BGP
    speaker (BIRD) learns that table and announces its routes."""

    route_table: int = DEFAULT_ANYCAST_TABLE
    device: str = DEFAULT_ANYCAST_DEVICE
    withdraw_delay_s: float = 2.0  # on SIGTERM: routes withdrawn, then this long before exit


@dataclass(frozen=True)
class EmailAlerts:
    """``[alerts.email]``: mail to people on state changes (keepalived's smtp_alert)."""

    to: tuple[str, ...]
    from_: str
    server_host: str
    server_port: int = 25
    starttls: bool = False
    ca_file: str | None = None  # STARTTLS: trust this CA (PEM) instead of the system's
    username: str | None = None
    password_file: str | None = None  # read at start and on reload; None: no login
    timeout_s: float = 10.0  # per SMTP operation (connect, each command)


@dataclass(frozen=True)
class WebhookAlerts:
    """``[alerts.webhook]``: a JSON document POSTed per event."""

    url: str
    headers: tuple[tuple[str, str], ...] = ()
    timeout_s: float = 5.0


@dataclass(frozen=True)
class AlertmanagerAlerts:
    """``[alerts.alertmanager]``: alerts posted to Alertmanager's v2 API while they hold."""

    url: str  # base URL, e.g. http://127.0.0.1:9093 (the agent posts to /api/v2/alerts)
    timeout_s: float = 5.0
    repeat_interval_s: float = 60.0  # a firing alert is posted again this often
    labels: tuple[tuple[str, str], ...] = ()  # added to every alert (e.g. site, cluster)


@dataclass(frozen=True)
class AlertsConfig:
    """The ``[alerts]`` table: where events go besides the log and notify scripts."""

    email: EmailAlerts | None = None
    webhook: WebhookAlerts | None = None
    alertmanager: AlertmanagerAlerts | None = None
    queue: int = 1000  # events waiting per destination; the oldest is dropped beyond
    flush_timeout_s: float = 10.0  # a graceful stop delivers what is queued within this


@dataclass(frozen=True)
class VirtualServerGroup:
    """A ``[[virtual_server_group]]``: addresses and marks sharing one pool of servers."""

    name: str
    addresses: tuple[str, ...] = ()  # "ip:port" each, ranges expanded
    fwmarks: tuple[int, ...] = ()


@dataclass(frozen=True)
class Config:
    """The whole configuration of one director."""

    global_: GlobalConfig = field(default_factory=GlobalConfig)
    vrrp_instances: tuple[VrrpInstance, ...] = ()
    sync_groups: tuple[SyncGroup, ...] = ()
    track_scripts: tuple[TrackScript, ...] = ()
    track_files: tuple[TrackFile, ...] = ()
    ipvs: IpvsSettings = field(default_factory=IpvsSettings)
    virtual_servers: tuple[VirtualServer, ...] = ()
    virtual_server_groups: tuple[VirtualServerGroup, ...] = ()
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    anycast: AnycastSettings = field(default_factory=AnycastSettings)

    def service_tables(self) -> list[tuple[int, VirtualServer]]:
        """Each ``[[virtual_server]]`` table once, with its index in the file: a group's
        members (consecutive, from one table) count once, by their first service."""
        out: list[tuple[int, VirtualServer]] = []
        previous: str | None = None
        for vs in self.virtual_servers:
            if vs.group is None or vs.group != previous:
                out.append((len(out), vs))
            previous = vs.group
        return out

    @property
    def anycast_servers(self) -> tuple[VirtualServer, ...]:
        """The virtual servers announced over BGP (``anycast = true``)."""
        return tuple(vs for vs in self.virtual_servers if vs.anycast)

    def instance(self, name: str) -> VrrpInstance | None:
        return next((i for i in self.vrrp_instances if i.name == name), None)

    def group_of(self, instance_name: str) -> SyncGroup | None:
        return next((g for g in self.sync_groups if instance_name in g.instances), None)
