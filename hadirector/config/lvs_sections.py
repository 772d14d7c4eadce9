"""The LVS sections of the configuration: ``[ipvs]`` with its ``[ipvs.sync]`` daemon,
and ``[[virtual_server]]`` with its real servers, fwmark match and health checks.

Each table is checked on its own, then each service with itself (forwarding, tunnel and
port rules; a real server's check merged with the service's default), and
``check_services`` checks services against each other; ``check_sync`` resolves whose VRRP
state decides the sync daemon. Built on ``config.validate``; pure.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, cast

from hadirector.checks import dnsmsg
from hadirector.checks.httpmsg import HTTP_VERSIONS
from hadirector.config.schema import (
    CHECK_TYPES,
    DEFAULT_PROTOCOL,
    FORWARDINGS,
    HEALTH_ACTIONS,
    PROTOCOLS,
    SCHEDULER_FLAGS,
    SCHEDULERS,
    TUNNEL_FLAGS,
    TUNNEL_TYPES,
    AnycastSettings,
    Family,
    FwmarkMatch,
    HealthCheck,
    HttpUrl,
    IPAddress,
    IpvsSettings,
    RealServer,
    ServiceKey,
    SorryServer,
    SyncDaemonSettings,
    SyncGroup,
    VirtualServer,
    VirtualServerGroup,
)
from hadirector.config.validate import (
    INT32_MAX,
    UINT32_MAX,
    Check,
    Checker,
    Defaults,
    Table,
    dotted_prefix,
    got,
    num,
    parse_ip,
    quote,
    show,
    split_endpoint,
    toml_keys,
)

__all__ = [
    "ANYCAST_KEYS",
    "CHECK_KEYS",
    "CHECK_KEY_TYPES",
    "IPVS_KEYS",
    "MATCH_KEYS",
    "RS_KEYS",
    "SORRY_KEYS",
    "SYNC_KEYS",
    "URL_KEYS",
    "VS_GROUP_KEYS",
    "VS_KEYS",
    "LvsSections",
]

IPVS_KEYS: Final = toml_keys(IpvsSettings)
ANYCAST_KEYS: Final = toml_keys(AnycastSettings)
# Routing tables the kernel reserves: unspec, default, main, local.
RESERVED_TABLES: Final = {0: "unspec", 253: "default", 254: "main", 255: "local"}
SYNC_KEYS: Final = toml_keys(SyncDaemonSettings)
SYNC_MAXLEN_MAX: Final = 65507  # the largest UDP payload over IPv4
# A service's address holds its port (real servers' likewise); the file says real_server.
VS_KEYS: Final = toml_keys(
    VirtualServer, {"port": (), "real_servers": "real_server", "extra_checks": ()}
)
MATCH_KEYS: Final = toml_keys(FwmarkMatch)
VS_GROUP_KEYS: Final = toml_keys(VirtualServerGroup)
MAX_GROUP_RANGE: Final = 256
RS_KEYS: Final = toml_keys(RealServer, {"port": (), "extra_checks": ()})
CHECK_KEYS: Final = toml_keys(HealthCheck)
SORRY_KEYS: Final = toml_keys(SorryServer, {"port": ()})
URL_KEYS: Final = toml_keys(HttpUrl)
DIGEST_RE: Final = re.compile(r"[0-9a-fA-F]{32}")
STATUS_RANGE_RE: Final = re.compile(r"(\d{3})-(\d{3})")
MAX_URLS: Final = 16
MAX_CHECKS: Final = 8
# Check keys that apply to some check types only.
CHECK_KEY_TYPES: Final = {
    "path": ("http", "https"),
    "expect_status": ("http", "https"),
    "expect_body": ("http", "https"),
    "digest": ("http", "https"),
    "expect_body_regex": ("http", "https"),
    "dynamic_weight": ("script",),
    "connect_ip": ("tcp", "http", "https", "udp", "dns"),
    "bindto": ("tcp", "http", "https", "udp", "dns"),
    "urls": ("http", "https"),
    "payload": ("udp",),
    "expect_reply": ("udp",),
    "require_reply": ("udp",),
    "query_name": ("dns",),
    "query_type": ("dns",),
    "expect_rcode": ("dns",),
    "expect_answer": ("dns",),
    "host": ("http", "https"),
    "http_version": ("http", "https"),
    "tls_verify": ("https",),
    "tls_ca_file": ("https",),
    "tls_cert_file": ("https",),
    "tls_key_file": ("https",),
    "tls_server_name": ("https",),
    "script": ("script",),
}
HTTP_TOKEN_RE: Final = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces

IPVS: Final = Defaults(IpvsSettings)
ANYCAST: Final = Defaults(AnycastSettings)
SYNC: Final = Defaults(SyncDaemonSettings)
SERVICE: Final = Defaults(VirtualServer)
MATCH: Final = Defaults(FwmarkMatch)
REAL_SERVER: Final = Defaults(RealServer)
CHECK: Final = Defaults(HealthCheck)
SORRY: Final = Defaults(SorryServer)


class LvsSections(Checker):
    """The checks and builders of the LVS sections."""

    def ipvs(self, top: Table) -> IpvsSettings:
        if not top.has("ipvs"):
            return IpvsSettings()
        data = self.table(top.raw("ipvs"), "ipvs")
        if data is None:
            return IpvsSettings()
        t = Table(self, data, "ipvs", IPVS_KEYS)
        timeout = self.integer(0, INT32_MAX)
        return IpvsSettings(
            own_whole_table=t.opt("own_whole_table", self.boolean(), IPVS.own_whole_table),
            timeout_tcp_s=t.maybe("timeout_tcp", timeout),
            timeout_tcpfin_s=t.maybe("timeout_tcpfin", timeout),
            timeout_udp_s=t.maybe("timeout_udp", timeout),
            reconcile_interval_s=t.opt(
                "reconcile_interval",
                self.seconds(0, 86400, lo_open=True),
                IPVS.reconcile_interval_s,
            ),
            sync=self.sync_daemon(t.raw("sync")) if t.has("sync") else None,
        )

    def anycast(self, top: Table) -> AnycastSettings:
        """``[anycast]``: the route table and device of the announced addresses."""
        if not top.has("anycast"):
            return AnycastSettings()
        data = self.table(top.raw("anycast"), "anycast")
        if data is None:
            return AnycastSettings()
        t = Table(self, data, "anycast", ANYCAST_KEYS)
        table = t.opt("route_table", self.integer(1, UINT32_MAX), ANYCAST.route_table)
        if table in RESERVED_TABLES and not t.bad("route_table"):
            self.add(
                t.at("route_table"),
                f"must not be the kernel's {RESERVED_TABLES[table]} table ({table})",
            )
        return AnycastSettings(
            route_table=table,
            device=t.opt("device", self.ifname(), ANYCAST.device),
            withdraw_delay_s=t.opt(
                "withdraw_delay", self.seconds(0, 3600), ANYCAST.withdraw_delay_s
            ),
        )

    def check_anycast(
        self, servers: Sequence[VirtualServer | None], vips: Mapping[IPAddress, str]
    ) -> None:
        """Anycast services against each other and the VRRP addresses: every service of an
        announced address is announced too (one route per address), and no address is both
        announced and moved by VRRP."""
        by_address: dict[IPAddress, list[tuple[int, VirtualServer]]] = {}
        for i, vs in enumerate(servers):
            if vs is not None and vs.address is not None:
                by_address.setdefault(vs.address, []).append((i, vs))
        for address, entries in by_address.items():
            flags = {vs.anycast for _, vs in entries}
            if flags == {True, False}:
                first = next(i for i, vs in entries if vs.anycast)
                for i, vs in entries:
                    if not vs.anycast:
                        self.add(
                            f"virtual_server[{i}].anycast",
                            f"must be true like virtual_server[{first}] on the same address "
                            f"{address} (the address is announced as a whole)",
                        )
            if True in flags and address in vips:
                i = next(i for i, vs in entries if vs.anycast)
                self.add(
                    f"virtual_server[{i}].anycast",
                    f"address {address} is also a VIP of {vips[address]}: an anycast "
                    "address is announced over BGP, not moved by VRRP",
                )

    def sync_daemon(self, value: object) -> SyncDaemonSettings | None:
        """``[ipvs.sync]`` on its own; ``check_sync`` resolves whose state decides."""
        data = self.table(value, "ipvs.sync")
        if data is None:
            return None
        t = Table(self, data, "ipvs.sync", SYNC_KEYS)
        interface = t.req("interface", self.ifname())
        instance = t.maybe("instance", self.name())
        group = t.maybe("group", self.name())
        if t.has("instance") and t.has("group"):
            self.add(t.at("group"), "give either instance or group, not both")
        mcast_group = t.address("mcast_group", self.multicast_group)
        # Kept with a bad interface, so that check_sync still reports its own problems.
        return SyncDaemonSettings(
            interface=interface or "",
            instance=instance,
            group=group,
            syncid=t.opt("syncid", self.integer(0, 255), SYNC.syncid),
            maxlen=t.opt("maxlen", self.integer(0, SYNC_MAXLEN_MAX), SYNC.maxlen),
            mcast_group=SYNC.mcast_group if mcast_group is None else mcast_group,
            mcast_port=t.opt("mcast_port", self.integer(1, 65535), SYNC.mcast_port),
            mcast_ttl=t.opt("mcast_ttl", self.integer(1, 255), SYNC.mcast_ttl),
            both=t.opt("both", self.boolean(), SYNC.both),
            bulk_resync=t.opt("bulk_resync", self.boolean(), SYNC.bulk_resync),
            resync_timeout_s=t.opt(
                "resync_timeout", self.seconds(0, 600, lo_open=True), SYNC.resync_timeout_s
            ),
        )

    def multicast_group(self, value: object, path: str) -> IPAddress | None:
        if not isinstance(value, str):
            self.add(path, f"must be a string (multicast address), {got(value)}")
            return None
        address = parse_ip(value)
        if address is None or not address.is_multicast:
            self.add(path, f"must be an IPv4 or IPv6 multicast address, got {show(value)}")
            return None
        return address

    def check_sync(
        self,
        ipvs: IpvsSettings,
        instance_names: Sequence[str | None],
        groups: Sequence[SyncGroup | None],
    ) -> IpvsSettings:
        """Resolve whose VRRP state decides the sync daemon's role (``[ipvs.sync]``)."""
        sync = ipvs.sync
        if sync is None:
            return ipvs
        if sync.both:  # both daemons, always: no VRRP state decides
            for key in ("instance", "group"):
                if getattr(sync, key) is not None:
                    self.add(f"ipvs.sync.{key}", "not with both = true (no VRRP state decides)")
            return ipvs
        if sync.group is not None:
            known_groups = {g.name for g in groups if g is not None}
            if sync.group not in known_groups:
                self.add("ipvs.sync.group", f"no [[sync_group]] named {quote(sync.group)}")
            return ipvs
        if sync.instance is not None:
            if sync.instance not in instance_names:
                self.add("ipvs.sync.instance", f"no [[vrrp_instance]] named {quote(sync.instance)}")
            return ipvs
        if len(instance_names) != 1:
            self.add(
                "ipvs.sync.instance",
                "is required (or group) when there is not exactly one vrrp_instance, "
                f"got {len(instance_names)}",
            )
            return ipvs
        only = instance_names[0]
        if only is None:  # that instance has a problem of its own
            return ipvs
        return dataclasses.replace(ipvs, sync=dataclasses.replace(sync, instance=only))

    def virtual_server(self, data: Mapping[str, object] | None, path: str) -> VirtualServer | None:
        if data is None:
            return None
        t = Table(self, data, path, VS_KEYS)
        has_address, has_fwmark = t.has("address"), t.has("fwmark")
        address: IPAddress | None = None
        port: int | None = None
        fwmark: int | None = None
        family: Family | None = None
        protocol: str | None = None

        if has_address and has_fwmark:
            self.add(t.at("fwmark"), "address and fwmark are exclusive: use one")
        elif not has_address and not has_fwmark:
            self.add(path, "needs address (ip:port) or fwmark")
        if has_address and not has_fwmark:
            endpoint = t.req("address", self.endpoint(port_required=True, min_port=0))
            if endpoint is not None:
                address, port = endpoint
                family = 4 if address.version == 4 else 6
            if t.has("family"):
                self.add(t.at("family"), "applies to fwmark services only (address sets it)")
            protocol = t.opt("protocol", self.choice(PROTOCOLS), str(DEFAULT_PROTOCOL))
        elif has_fwmark and not has_address:
            fwmark = t.req("fwmark", self.integer(1, UINT32_MAX))
            fam_name = t.opt("family", self.choice(("inet", "inet6")), "inet")
            family = None if t.bad("family") else 4 if fam_name == "inet" else 6
            if t.has("protocol"):
                self.add(t.at("protocol"), "not with fwmark (the mark selects the traffic)")
        vs_ok = family is not None and (fwmark is not None or address is not None)

        scheduler = t.opt("scheduler", self.choice(SCHEDULERS), SERVICE.scheduler)
        flags = t.many("scheduler_flags", self.choice(tuple(SCHEDULER_FLAGS)))
        if not t.bad("scheduler"):
            for i, flag in enumerate(flags):
                if SCHEDULER_FLAGS[flag] != scheduler:
                    raw = t.raw("scheduler_flags")
                    k = raw.index(flag) if isinstance(raw, list) else i
                    self.add(
                        f"{t.at('scheduler_flags')}[{k}]",
                        f"{flag} needs scheduler {SCHEDULER_FLAGS[flag]}, got {scheduler}",
                    )
        one_packet = t.opt("one_packet", self.boolean(), SERVICE.one_packet)
        smtp_alert = t.opt("smtp_alert", self.boolean(), SERVICE.smtp_alert)
        if one_packet and protocol in ("tcp", "sctp") and not t.bad("protocol"):
            self.add(t.at("one_packet"), f"applies to udp or fwmark services only, not {protocol}")
        forwarding = t.opt("forwarding", self.choice(FORWARDINGS), SERVICE.forwarding)
        persistence_s = t.opt(
            "persistence_timeout", self.integer(0, INT32_MAX), SERVICE.persistence_timeout_s
        )
        if port == 0 and persistence_s == 0 and not t.bad("persistence_timeout"):
            self.add(t.at("address"), "port 0 (all ports) needs persistence_timeout > 0")
        netmask = self.persistence_netmask(t, family)

        health_action = t.opt("health_action", self.choice(HEALTH_ACTIONS), SERVICE.health_action)
        default_checks = t.maybe("check", lambda v, p: self.check_list(v, p, ())) or ()
        default_check = default_checks[0] if default_checks else None
        is_fwmark = has_fwmark and not has_address
        real_servers = self.real_servers(t, family, port, is_fwmark, forwarding, default_checks)
        quorum = t.opt("quorum", self.integer(1, INT32_MAX), SERVICE.quorum)
        hysteresis = t.opt("hysteresis", self.integer(0, INT32_MAX), SERVICE.hysteresis)
        quorum_up = t.maybe("quorum_up", self.argv)
        quorum_down = t.maybe("quorum_down", self.argv)
        slow_start_s = t.opt("slow_start", self.seconds(0, 86400), SERVICE.slow_start_s)
        sorry = None
        if t.has("sorry_server"):
            sorry = self.sorry_server(
                t.raw("sorry_server"), t.at("sorry_server"), family, port, is_fwmark, forwarding
            )
            if sorry is not None and any(
                r.key == (sorry.address, sorry.port) for r in real_servers
            ):
                self.add(
                    f"{t.at('sorry_server')}.address",
                    f"is also a real server of this service: {sorry.address} port {sorry.port}",
                )
                sorry = None
        any_tun = forwarding == "tun" or any(r.forwarding == "tun" for r in real_servers)
        any_tun = any_tun or (sorry is not None and sorry.forwarding == "tun")
        tunnel_type, tunnel_port, tunnel_flags = self.tunnel(t, any_tun)

        def fam_ip(value: object, p: str) -> IPAddress | None:
            return self.ip_of_family(value, p, family, "the service")

        fullnat_source = t.address("fullnat_source", fam_ip)
        if forwarding == "fullnat" and not t.has("fullnat_source") and not t.bad("forwarding"):
            self.add(t.at("fullnat_source"), 'is required with forwarding = "fullnat"')
        if t.has("fullnat_source") and forwarding != "fullnat" and not t.bad("forwarding"):
            self.add(t.at("fullnat_source"), 'applies only with forwarding = "fullnat"')
        match = None
        if t.has("match") and has_address:
            self.add(t.at("match"), "applies to fwmark services only")
        else:
            match = t.maybe("match", lambda v, p: self.fwmark_match(v, p, family))

        anycast = t.opt("anycast", self.boolean(), SERVICE.anycast)
        min_servers = t.opt(
            "anycast_min_servers", self.integer(1, 1_000_000), SERVICE.anycast_min_servers
        )
        if anycast and has_fwmark and not t.bad("anycast"):
            self.add(t.at("anycast"), "applies to address services only (an address is announced)")
        if t.has("anycast_min_servers") and not anycast and not t.bad("anycast_min_servers"):
            self.add(t.at("anycast_min_servers"), "applies only with anycast = true")
        elif (
            anycast
            and not has_fwmark
            and min_servers > len(real_servers)
            and not t.bad("anycast_min_servers")
        ):
            self.add(
                t.at("anycast_min_servers") if t.has("anycast_min_servers") else t.at("anycast"),
                f"needs {min_servers} real server(s) up but the service has "
                f"{len(real_servers)}: it would never be announced",
            )

        if not vs_ok or family is None:
            return None
        return VirtualServer(
            protocol=cast(Any, protocol),
            address=address,
            port=port,
            fwmark=fwmark,
            family=family,
            scheduler=scheduler,
            scheduler_flags=flags,
            one_packet=one_packet,
            forwarding=cast(Any, forwarding),
            persistence_timeout_s=persistence_s,
            persistence_netmask=netmask,
            tunnel_type=cast(Any, tunnel_type),
            tunnel_port=tunnel_port,
            tunnel_flags=tunnel_flags,
            fullnat_source=fullnat_source,
            match=match,
            real_servers=tuple(real_servers),
            health_action=cast(Any, health_action),
            check=default_check,
            extra_checks=default_checks[1:],
            quorum=quorum,
            hysteresis=hysteresis,
            quorum_up=quorum_up,
            quorum_down=quorum_down,
            sorry_server=sorry,
            slow_start_s=slow_start_s,
            smtp_alert=smtp_alert,
            anycast=anycast,
            anycast_min_servers=min_servers,
        )

    def sorry_server(
        self,
        value: object,
        path: str,
        family: int | None,
        service_port: int | None,
        is_fwmark: bool,
        forwarding: str,
    ) -> SorryServer | None:
        """``sorry_server = { address = "ip:port", forwarding, weight, inhibit }``."""
        data = self.table(value, path)
        if data is None:
            return None
        t = Table(self, data, path, SORRY_KEYS)
        endpoint = t.req("address", self.server_endpoint(service_port, is_fwmark))
        own = t.maybe("forwarding", self.rs_forwarding)
        weight = t.opt("weight", self.integer(1, INT32_MAX), SORRY.weight)
        inhibit = t.opt("inhibit", self.boolean(), SORRY.inhibit)
        if endpoint is None:
            return None
        resolved = own or forwarding
        placed = self.server_placed(t, endpoint, family, service_port, is_fwmark, resolved)
        if placed is None:
            return None
        address, port = placed
        return SorryServer(address, port, cast(Any, resolved), weight, inhibit)

    def server_endpoint(
        self, service_port: int | None, is_fwmark: bool
    ) -> Check[tuple[IPAddress, int | None]]:
        """A real or sorry server's ``address``. Ports: required for address services,
        except that a port-0 (all ports) service may leave them out or use 0; optional for
        fwmark services."""
        return self.endpoint(
            port_required=not is_fwmark and service_port != 0,
            min_port=0 if service_port == 0 else 1,
        )

    def server_placed(
        self,
        t: Table,
        endpoint: tuple[IPAddress, int | None],
        family: int | None,
        service_port: int | None,
        is_fwmark: bool,
        forwarding: str,
    ) -> tuple[IPAddress, int | None] | None:
        """A real or sorry server's address and port (the service's when it gives none),
        or None, said at its ``address``, when they do not fit the service: another address
        family, or another port with dr or tun forwarding (no port translation)."""
        address, port = endpoint
        if port is None and not is_fwmark:
            port = service_port
        if family is not None and address.version != family:
            self.add(
                t.at("address"),
                f"must be IPv{family} like the service, got IPv{address.version} {address}",
            )
            return None
        if (
            not is_fwmark
            and forwarding in ("dr", "tun")
            and service_port is not None
            and port != service_port
        ):
            self.add(
                t.at("address"),
                f"port must be the service port {service_port} with {forwarding} forwarding "
                f"(no port translation), got {port}",
            )
            return None
        return address, port

    def endpoint(
        self, *, port_required: bool, min_port: int = 1
    ) -> Check[tuple[IPAddress, int | None]]:
        """ "ip:port" / "[v6]:port" (or a bare address when the port is optional)."""

        def check(value: object, path: str) -> tuple[IPAddress, int | None] | None:
            if not isinstance(value, str):
                self.add(path, f'must be a string ("ip:port"), {got(value)}')
                return None
            form = (
                '"ip:port" or "[ipv6]:port"'
                if port_required
                else '"ip", "ip:port" or "[ipv6]:port"'
            )
            host, port_text = split_endpoint(value)
            if host is None or (port_required and port_text is None):
                self.add(path, f"must be {form}, got {show(value)}")
                return None
            address = self.ip_in(host, value, path, form)
            if address is None:
                return None
            if port_text is None:
                return address, None
            if not port_text.isdigit() or not min_port <= int(port_text) <= 65535:
                self.add(path, f"port must be {min_port}..65535, got {show(value)}")
                return None
            return address, int(port_text)

        return check

    def persistence_netmask(self, t: Table, family: int | None) -> int:
        default = 32 if family != 6 else 128
        if not t.has("persistence_netmask") or family is None:
            return default
        value, path = t.raw("persistence_netmask"), t.at("persistence_netmask")
        if family == 4:
            if not isinstance(value, str):
                self.add(path, f'must be a dotted IPv4 netmask like "255.255.255.0", {got(value)}')
                return default
            prefix = dotted_prefix(value)
            if prefix is None or prefix == 0:
                self.add(
                    path,
                    f"must be a contiguous IPv4 netmask 128.0.0.0..255.255.255.255, "
                    f"got {show(value)}",
                )
                return default
            return prefix
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(path, f"must be an IPv6 prefix length 1..128, {got(value)}")
            return default
        if not 1 <= value <= 128:
            self.add(path, f"must be 1..128, got {value}")
            return default
        return value

    def tunnel(self, t: Table, any_tun: bool) -> tuple[str, int | None, tuple[str, ...]]:
        tunnel_type = t.opt("tunnel_type", self.choice(TUNNEL_TYPES), SERVICE.tunnel_type)
        tunnel_port = t.maybe("tunnel_port", self.integer(1, 65535))
        flags = t.many("tunnel_flags", self.choice(TUNNEL_FLAGS))
        if not any_tun:
            for key in ("tunnel_type", "tunnel_port", "tunnel_flags"):
                if t.has(key) and not t.bad(key):
                    self.add(t.at(key), 'applies only with forwarding = "tun"')
            return tunnel_type, tunnel_port, flags
        if not t.bad("tunnel_type"):
            if tunnel_type == "gue" and not t.has("tunnel_port"):
                self.add(t.at("tunnel_port"), 'is required with tunnel_type = "gue"')
            if tunnel_type != "gue" and t.has("tunnel_port"):
                self.add(t.at("tunnel_port"), 'applies only with tunnel_type = "gue"')
            if flags and tunnel_type == "ipip":
                self.add(t.at("tunnel_flags"), "ipip tunnels take no flags (gue or gre only)")
            elif "remcsum" in flags and tunnel_type == "gre":
                self.add(t.at("tunnel_flags"), "remcsum applies to gue tunnels only")
            elif len(flags) > 1:
                self.add(t.at("tunnel_flags"), "takes one of nocsum|csum|remcsum")
        return tunnel_type, tunnel_port, flags

    def fwmark_match(self, value: object, path: str, family: int | None) -> FwmarkMatch | None:
        data = self.table(value, path)
        if data is None:
            return None
        t = Table(self, data, path, MATCH_KEYS)
        address = t.address(
            "address",
            lambda v, p: self.ip_of_family(v, p, family, "the service family"),
            required=True,
        )
        protocol = t.opt("protocol", self.choice(PROTOCOLS), MATCH.protocol)
        ports = t.many("ports", self.integer(1, 65535))
        if address is None:
            return None
        return FwmarkMatch(address, cast(Any, protocol), ports)

    def real_servers(
        self,
        vs: Table,
        family: int | None,
        service_port: int | None,
        is_fwmark: bool,
        forwarding: str,
        default_checks: tuple[HealthCheck, ...] = (),
    ) -> list[RealServer]:
        if not vs.has("real_server"):
            return []
        base = vs.at("real_server")
        tables = self.tables(vs.raw("real_server"), base, "virtual_server.real_server")
        out: list[RealServer] = []
        for i, data in enumerate(tables):
            path = f"{base}[{i}]"
            if data is None:
                continue
            t = Table(self, data, path, RS_KEYS)
            endpoint = t.req("address", self.server_endpoint(service_port, is_fwmark))
            weight = t.opt("weight", self.integer(0, INT32_MAX), REAL_SERVER.weight)
            upper = t.opt(
                "upper_threshold", self.integer(0, INT32_MAX), REAL_SERVER.upper_threshold
            )
            lower = t.opt(
                "lower_threshold", self.integer(0, INT32_MAX), REAL_SERVER.lower_threshold
            )
            if lower > upper:  # the kernel refuses it (ERANGE), even with no upper limit
                self.add(
                    t.at("lower_threshold"),
                    f"must be <= upper_threshold ({upper}), got {lower}",
                )
            own = t.maybe("forwarding", self.rs_forwarding)
            resolved = own or forwarding
            notify_up = t.maybe("notify_up", self.argv)
            notify_down = t.maybe("notify_down", self.argv)
            checks = default_checks
            if t.has("check"):
                checks = t.maybe("check", lambda v, p: self.check_list(v, p, default_checks)) or ()
            if endpoint is None:
                continue
            placed = self.server_placed(t, endpoint, family, service_port, is_fwmark, resolved)
            if placed is None:
                continue
            address, port = placed
            if any(r.key == (address, port) for r in out):
                self.add(t.at("address"), f"duplicate real server {show(t.raw('address'))}")
                continue
            portless = [k for k, c in enumerate(checks) if c.type != "script" and c.port is None]
            if portless and not port:
                where = t.at("check") if t.has("check") else vs.at("check")
                raw = t.raw("check") if t.has("check") else vs.raw("check")
                if isinstance(raw, list):
                    where = f"{where}[{portless[0]}]"
                self.add(
                    f"{where}.port",
                    f"is required: real server {show(t.raw('address'))} has no port to check",
                )
                checks = ()
            out.append(
                RealServer(
                    address,
                    port,
                    weight,
                    upper,
                    lower,
                    cast(Any, resolved),
                    checks[0] if checks else None,
                    notify_up,
                    notify_down,
                    checks[1:],
                )
            )
        return out

    def check_list(
        self, value: object, path: str, base: tuple[HealthCheck, ...]
    ) -> tuple[HealthCheck, ...] | None:
        """``check``: one table, or an array of tables (several checks, all must pass).

        A real server's single table is merged key by key onto the service's single
        check; an array, or a table where the service has several, replaces them."""
        if isinstance(value, list):
            if not value:
                self.add(path, "must not be empty (leave check out for no check)")
                return None
            if len(value) > MAX_CHECKS:
                self.add(path, f"at most {MAX_CHECKS} checks, got {len(value)}")
                return None
            found = [self.health_check(v, f"{path}[{i}]", None) for i, v in enumerate(value)]
            if any(c is None for c in found):
                return None
            return tuple(c for c in found if c is not None)
        one = self.health_check(value, path, base[0] if len(base) == 1 else None)
        return None if one is None else (one,)

    def health_check(
        self, value: object, path: str, base: HealthCheck | None
    ) -> HealthCheck | None:
        """A check table; keys it leaves out come from ``base`` (the service's default)."""
        data = self.table(value, path)
        if data is None:
            return None
        t = Table(self, data, path, CHECK_KEYS)
        dflt = base or HealthCheck("tcp")
        if base is None:
            kind = t.req("type", self.choice(CHECK_TYPES))
        else:
            kind = t.opt("type", self.choice(CHECK_TYPES), str(base.type))
        port = t.maybe("port", self.integer(1, 65535))
        if port is None and not t.has("port"):
            port = dflt.port
        interval_s = t.opt("interval", self.seconds(0, 86400, lo_open=True), dflt.interval_s)
        if base is not None and base.timeout_s < interval_s:
            default_timeout_s = base.timeout_s
        else:
            default_timeout_s = min(1.0, interval_s / 2)
        timeout_s = t.opt("timeout", self.seconds(0, 86400, lo_open=True), default_timeout_s)
        if timeout_s >= interval_s and not t.bad("timeout") and not t.bad("interval"):
            self.add(
                t.at("timeout") if t.has("timeout") else t.at("interval"),
                f"timeout ({num(timeout_s)} s) must be less than interval ({num(interval_s)} s)",
            )
        rise = t.opt("rise", self.integer(1, 1000), dflt.rise)
        fall = t.opt("fall", self.integer(1, 1000), dflt.fall)
        http_path = t.opt("path", self.http_path, dflt.path)
        expect_status = t.opt("expect_status", self.statuses, dflt.expect_status)
        expect_body = t.maybe("expect_body", self.text(max_len=4096))
        if expect_body is None and not t.has("expect_body"):
            expect_body = dflt.expect_body
        host = t.maybe("host", self.text(max_len=255, pattern=HTTP_TOKEN_RE))
        if host is None and not t.has("host"):
            host = dflt.host
        http_version = t.opt("http_version", self.http_version, dflt.http_version)
        tls_verify = t.opt("tls_verify", self.boolean(), dflt.tls_verify)
        alpha = t.opt("alpha", self.boolean(), dflt.alpha)
        tls: dict[str, str | None] = {}
        for key in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
            tls[key] = t.maybe(key, self.abspath())
            if tls[key] is None and not t.has(key):
                tls[key] = getattr(dflt, key)
        tls_server_name = t.maybe("tls_server_name", self.text(max_len=255, pattern=HTTP_TOKEN_RE))
        if tls_server_name is None and not t.has("tls_server_name"):
            tls_server_name = dflt.tls_server_name
        if (tls["tls_cert_file"] is None) != (tls["tls_key_file"] is None):
            missing = "tls_key_file" if tls["tls_key_file"] is None else "tls_cert_file"
            self.add(
                t.at(missing), "is required with tls_cert_file / tls_key_file (both or neither)"
            )
        if tls["tls_ca_file"] is not None:
            if t.has("tls_verify") and not tls_verify and not t.bad("tls_verify"):
                self.add(t.at("tls_verify"), "cannot be false with tls_ca_file")
            tls_verify = True
        delay_before_retry_s = t.maybe("delay_before_retry", self.seconds(0, 86400, lo_open=True))
        if delay_before_retry_s is None and not t.has("delay_before_retry"):
            delay_before_retry_s = dflt.delay_before_retry_s
        if (
            delay_before_retry_s is not None
            and delay_before_retry_s < timeout_s
            and not t.bad("timeout")
        ):
            self.add(
                t.at("delay_before_retry") if t.has("delay_before_retry") else t.at("timeout"),
                f"delay_before_retry ({num(delay_before_retry_s)} s) must be at least the "
                f"timeout ({num(timeout_s)} s)",
            )
        connect_ip = t.address("connect_ip", self.any_ip)
        if connect_ip is None and not t.has("connect_ip"):
            connect_ip = dflt.connect_ip
        bindto = t.address("bindto", self.any_ip)
        if bindto is None and not t.has("bindto"):
            bindto = dflt.bindto
        if connect_ip is not None and bindto is not None and connect_ip.version != bindto.version:
            self.add(t.at("bindto"), f"must be IPv{connect_ip.version} like connect_ip")
        dynamic_weight = t.opt("dynamic_weight", self.boolean(), dflt.dynamic_weight)
        warmup_s = t.maybe("warmup", self.seconds(0, 86400))
        if warmup_s is None and not t.has("warmup"):
            warmup_s = dflt.warmup_s
        digest = t.maybe("digest", self.digest)
        if digest is None and not t.has("digest"):
            digest = dflt.digest
        body_regex = t.maybe("expect_body_regex", self.regex)
        if body_regex is None and not t.has("expect_body_regex"):
            body_regex = dflt.expect_body_regex
        urls = dflt.urls
        if t.has("urls"):
            if t.has("path"):
                self.add(t.at("path"), "give the path in each entry of urls, not here")
            first = HttpUrl("/", expect_status, expect_body, digest, body_regex)
            urls = self.urls(t.raw("urls"), t.at("urls"), first) or ()
        payload = t.maybe("payload", self.hex_bytes)
        if payload is None and not t.has("payload"):
            payload = dflt.payload
        expect_reply = t.maybe("expect_reply", self.hex_bytes)
        if expect_reply is None and not t.has("expect_reply"):
            expect_reply = dflt.expect_reply
        require_reply = t.opt("require_reply", self.boolean(), dflt.require_reply)
        query_name = t.opt("query_name", self.dns_name, dflt.query_name)
        query_type = t.opt("query_type", self.choice(tuple(dnsmsg.QTYPES)), dflt.query_type)
        expect_rcode = t.opt("expect_rcode", self.choice(tuple(dnsmsg.RCODES)), dflt.expect_rcode)
        expect_answer = t.maybe("expect_answer", self.dns_answer)
        if expect_answer is None and not t.has("expect_answer"):
            expect_answer = dflt.expect_answer
        if expect_answer is not None and not t.bad("query_type"):
            want = "A" if ":" not in expect_answer else "AAAA"
            if query_type != want:
                self.add(
                    t.at("expect_answer") if t.has("expect_answer") else t.at("query_type"),
                    f'an {want} address needs query_type = "{want}", got {query_type}',
                )
        script = t.maybe("script", self.argv)
        if script is None and not t.has("script"):
            script = dflt.script
        if kind is None or t.bad("type"):
            return None
        for key, kinds in CHECK_KEY_TYPES.items():
            if t.has(key) and kind not in kinds:
                self.add(t.at(key), f"applies to type {'|'.join(kinds)} only, not {kind}")
        if kind == "script" and script is None and not t.bad("script"):
            self.add(t.at("script"), 'is required with type = "script"')
        if kind not in ("http", "https"):  # keep resolved checks free of inapplicable values
            http_path, expect_status = CHECK.path, CHECK.expect_status
            expect_body, host = CHECK.expect_body, CHECK.host
            http_version = CHECK.http_version
            digest, urls, body_regex = CHECK.digest, CHECK.urls, CHECK.expect_body_regex
        if kind != "udp":
            payload, expect_reply, require_reply = (
                CHECK.payload,
                CHECK.expect_reply,
                CHECK.require_reply,
            )
        if kind != "dns":
            query_name, query_type = CHECK.query_name, CHECK.query_type
            expect_rcode, expect_answer = CHECK.expect_rcode, CHECK.expect_answer
        if kind != "https":
            tls_verify = CHECK.tls_verify
            tls = {k: None for k in tls}
            tls_server_name = None
        if kind == "script":
            connect_ip, bindto = None, None
        else:
            dynamic_weight = False
        if kind != "script":
            script = None
        elif script is None:
            return None
        return HealthCheck(
            type=cast(Any, kind),
            port=port,
            interval_s=interval_s,
            timeout_s=timeout_s,
            rise=rise,
            fall=fall,
            path=http_path,
            expect_status=expect_status,
            expect_body=expect_body,
            host=host,
            http_version=http_version,
            tls_verify=tls_verify,
            script=script,
            alpha=alpha,
            digest=digest,
            expect_body_regex=body_regex,
            urls=urls,
            payload=payload,
            expect_reply=expect_reply,
            require_reply=require_reply,
            query_name=query_name,
            query_type=query_type,
            expect_rcode=expect_rcode,
            expect_answer=expect_answer,
            tls_ca_file=tls["tls_ca_file"],
            tls_cert_file=tls["tls_cert_file"],
            tls_key_file=tls["tls_key_file"],
            tls_server_name=tls_server_name,
            delay_before_retry_s=delay_before_retry_s,
            warmup_s=warmup_s,
            connect_ip=connect_ip,
            bindto=bindto,
            dynamic_weight=dynamic_weight,
        )

    def http_version(self, value: object, path: str) -> str | None:
        """``"1.0"`` or ``"1.1"``, as a string (a TOML number is refused, naming the
        spelling to use)."""
        if isinstance(value, str) and value in HTTP_VERSIONS:
            return value
        want = " or ".join(f'"{v}"' for v in HTTP_VERSIONS)
        self.add(path, f"must be {want} (a string), got {show(value)}")
        return None

    def hex_bytes(self, value: object, path: str) -> str | None:
        """Bytes written as hexadecimal digits (``"0a1b"``), at most 1,024 bytes."""
        text = self.text(max_len=2048)(value, path)
        if text is None:
            return None
        compact = text.replace(" ", "")
        try:
            bytes.fromhex(compact)
        except ValueError:
            self.add(path, f'must be bytes in hexadecimal digits like "0a1b", got {show(value)}')
            return None
        return compact.lower()

    def dns_name(self, value: object, path: str) -> str | None:
        text = self.text(max_len=255)(value, path)
        if text is None:
            return None
        try:
            dnsmsg.encode_name(text)
        except (ValueError, UnicodeError) as exc:
            self.add(path, f"must be a domain name: {exc}")
            return None
        return text

    def dns_answer(self, value: object, path: str) -> str | None:
        if not isinstance(value, str) or parse_ip(value) is None:
            self.add(path, f"must be an IPv4 or IPv6 address, got {show(value)}")
            return None
        address = parse_ip(value)
        assert address is not None
        return address.compressed

    def any_ip(self, value: object, path: str) -> IPAddress | None:
        address = parse_ip(value) if isinstance(value, str) else None
        if address is None:
            self.add(path, f"must be an IPv4 or IPv6 address, got {show(value)}")
        return address

    def regex(self, value: object, path: str) -> str | None:
        """A regular expression (Python's ``re``, searched in the body as bytes)."""
        text = self.text(max_len=1024)(value, path)
        if text is None:
            return None
        try:
            re.compile(text.encode())
        except re.error as exc:
            self.add(path, f"is not a regular expression: {exc}")
            return None
        return text

    def digest(self, value: object, path: str) -> str | None:
        """An MD5 digest as 32 hexadecimal digits (what keepalived's genhash prints)."""
        text = self.text(max_len=32)(value, path)
        if text is None:
            return None
        if not DIGEST_RE.fullmatch(text):
            self.add(path, f"must be an MD5 digest, 32 hexadecimal digits, got {show(value)}")
            return None
        return text.lower()

    def urls(self, value: object, path: str, dflt: HttpUrl) -> tuple[HttpUrl, ...] | None:
        """``urls = [{ path, expect_status, expect_body, digest }, ...]``: keys an entry
        leaves out come from the check's own (``path`` is required)."""
        tables = self.tables(value, path, "check.urls")
        if not tables:
            if isinstance(value, list) and not value:
                self.add(path, "must not be empty")
            return None
        if len(tables) > MAX_URLS:
            self.add(path, f"at most {MAX_URLS} URLs, got {len(tables)}")
            return None
        out: list[HttpUrl] = []
        for i, data in enumerate(tables):
            if data is None:
                continue
            t = Table(self, data, f"{path}[{i}]", URL_KEYS)
            url_path = t.req("path", self.http_path)
            expect_status = t.opt("expect_status", self.statuses, dflt.expect_status)
            expect_body = t.maybe("expect_body", self.text(max_len=4096))
            if expect_body is None and not t.has("expect_body"):
                expect_body = dflt.expect_body
            digest = t.maybe("digest", self.digest)
            if digest is None and not t.has("digest"):
                digest = dflt.digest
            regex = t.maybe("expect_body_regex", self.regex)
            if regex is None and not t.has("expect_body_regex"):
                regex = dflt.expect_body_regex
            if url_path is not None:
                out.append(HttpUrl(url_path, expect_status, expect_body, digest, regex))
        return tuple(out)

    def http_path(self, value: object, path: str) -> str | None:
        text = self.text(max_len=1024)(value, path)
        if text is None:
            return None
        if not text.startswith("/") or not HTTP_TOKEN_RE.fullmatch(text):
            self.add(
                path,
                f'must start with "/" and hold no spaces or control characters, got {show(value)}',
            )
            return None
        return text

    def statuses(self, value: object, path: str) -> tuple[int, ...] | None:
        """One HTTP status code, a range ``"200-299"`` (keepalived's ``status_code
        200-299``), or an array of them; ranges are spelled out."""

        def one(item: object, item_path: str) -> tuple[int, ...] | None:
            if isinstance(item, str):
                found = STATUS_RANGE_RE.fullmatch(item.strip())
                low, high = (int(found[1]), int(found[2])) if found else (0, 0)
                if not found or not 100 <= low <= high <= 599:
                    self.add(
                        item_path,
                        'must be a status code 100..599 or a range like "200-299", '
                        f"got {show(item)}",
                    )
                    return None
                return tuple(range(low, high + 1))
            code = self.integer(100, 599)(item, item_path)
            return None if code is None else (code,)

        if not isinstance(value, list):
            return one(value, path)
        items = self.unique_list(value, path, one)
        if items is None:
            return None
        if not items:
            if not value:
                self.add(path, "must not be empty")
            return None
        return tuple(dict.fromkeys(code for item in items for code in item))

    def rs_forwarding(self, value: object, path: str) -> str | None:
        if value == "fullnat":
            self.add(path, "fullnat is set per virtual_server, not per real server")
            return None
        return self.choice(("nat", "dr", "tun"))(value, path)

    def vs_groups(
        self, tables: Sequence[Mapping[str, object] | None]
    ) -> dict[str, VirtualServerGroup | None]:
        """``[[virtual_server_group]]``: name, ``addresses`` ("ip:port", IPv4 ranges
        "192.0.2.10-20:80") and ``fwmarks``; by name (None: a group with problems)."""
        out: dict[str, VirtualServerGroup | None] = {}
        for i, data in enumerate(tables):
            path = f"virtual_server_group[{i}]"
            if data is None:
                continue
            t = Table(self, data, path, VS_GROUP_KEYS)
            name = t.req("name", self.name())
            addresses: list[str] = []
            if t.has("addresses"):
                items = self.array(t.raw("addresses"), t.at("addresses")) or []
                for j, item in enumerate(items):
                    addresses += self.group_address(item, f"{t.at('addresses')}[{j}]")
            fwmarks = t.many("fwmarks", self.integer(1, UINT32_MAX))
            if not t.has("addresses") and not t.has("fwmarks"):
                self.add(path, "needs addresses or fwmarks")
            if name is None:
                continue
            if name in out:
                self.add(t.at("name"), f"duplicate name {quote(name)}")
                continue
            ok = not (t.bad("addresses") or t.bad("fwmarks"))
            group = VirtualServerGroup(name, tuple(dict.fromkeys(addresses)), fwmarks)
            out[name] = group if ok and (group.addresses or group.fwmarks) else None
        return out

    def group_address(self, value: object, path: str) -> list[str]:
        """One member: "ip:port", "[ipv6]:port", or a range where the last part varies:
        IPv4's last octet ("192.0.2.10-20:80"), IPv6's last 16-bit group, in hexadecimal
        as IPv6 writes it ("[2001:db8::a-1f]:80", keepalived's syntax)."""
        form = '"ip:port", "[ipv6]:port", "192.0.2.10-20:80" or "[2001:db8::a-1f]:80"'
        if not isinstance(value, str):
            self.add(path, f"must be a string ({form}), {got(value)}")
            return []
        host, port_text = split_endpoint(value)
        if host is None or port_text is None or not port_text.isdigit():
            self.add(path, f"must be {form}, got {show(value)}")
            return []
        port = int(port_text)
        if port > 65535:
            self.add(path, f"port must be 0..65535, got {show(value)}")
            return []
        first, dash, last_text = host.rpartition("-")
        if not dash:
            address = parse_ip(host)
            if address is None:
                self.add(path, f"must be {form}, got {show(value)}")
                return []
            shown = address.compressed if address.version == 4 else f"[{address.compressed}]"
            return [f"{shown}:{port}"]
        start = parse_ip(first)
        if start is not None and start.version == 6:
            return self.group_range6(start, last_text, port, value, path)
        if start is None or not last_text.isdigit():
            self.add(path, f"a range varies the last part of an address: {form}, got {show(value)}")
            return []
        octets = start.compressed.split(".")
        low, high = int(octets[3]), int(last_text)
        if not low <= high <= 255:
            self.add(path, f"range end must be {low}..255, got {show(value)}")
            return []
        prefix = ".".join(octets[:3])
        return [f"{prefix}.{n}:{port}" for n in range(low, high + 1)]

    def group_range6(
        self, start: IPAddress, last_text: str, port: int, value: object, path: str
    ) -> list[str]:
        """An IPv6 range: the last 16-bit group from the start's to ``last_text``
        (hexadecimal, as keepalived reads it), at most ``MAX_GROUP_RANGE`` addresses."""
        digits = "0123456789abcdefABCDEF"
        if not 1 <= len(last_text) <= 4 or last_text.strip(digits):
            self.add(
                path,
                f"an IPv6 range ends with the last group in hexadecimal (1..4 digits, "
                f'"[2001:db8::a-1f]:80"), got {show(value)}',
            )
            return []
        low, high = int(start) & 0xFFFF, int(last_text, 16)
        if high < low:
            self.add(
                path,
                f"range end must be {low:x}..ffff (hexadecimal, the last group), got {show(value)}",
            )
            return []
        if high - low + 1 > MAX_GROUP_RANGE:
            self.add(
                path,
                f"a range holds at most {MAX_GROUP_RANGE} addresses (one IPVS service each), "
                f"got {high - low + 1} in {show(value)}",
            )
            return []
        return [f"[{(start + (n - low)).compressed}]:{port}" for n in range(low, high + 1)]

    def grouped_virtual_servers(
        self,
        data: Mapping[str, object] | None,
        path: str,
        groups: Mapping[str, VirtualServerGroup | None],
    ) -> list[VirtualServer | None]:
        """A ``[[virtual_server]]``: itself, or with ``group``, one service per member of
        the group (the same pool, scheduler and checks), each marked with the group."""
        if data is None or "group" not in data:
            return [self.virtual_server(data, path)]
        name = data["group"]
        if "address" in data or "fwmark" in data:
            self.add(f"{path}.group", "give group, or address / fwmark, not both")
            return [None]
        group = groups.get(name) if isinstance(name, str) else None
        if group is None:
            if isinstance(name, str) and name in groups:
                return [None]  # the group has problems of its own
            self.add(f"{path}.group", f"no [[virtual_server_group]] named {show(name)}")
            return [None]
        before = len(self.problems)
        out: list[VirtualServer | None] = []
        members: list[dict[str, object]] = [{"address": a} for a in group.addresses]
        members += [{"fwmark": m} for m in group.fwmarks]
        for member in members:
            raw = {k: v for k, v in data.items() if k != "group"}
            if "address" in member:
                raw.pop("family", None)
                raw.pop("match", None)
            else:
                raw.pop("protocol", None)
            raw.update(member)
            vs = self.virtual_server(raw, path)
            out.append(None if vs is None else dataclasses.replace(vs, group=group.name))
        # Every member repeats the table's own problems: say each once.
        fresh = self.problems[before:]
        del self.problems[before:]
        for problem in fresh:
            if problem not in self.problems:
                self.problems.append(problem)
        return out

    def check_services(
        self, servers: Sequence[VirtualServer | None], tables: Sequence[int] | None = None
    ) -> None:
        """Services unique by key; ``tables`` gives each service's table index (a group
        expands one table into several services)."""
        seen: dict[ServiceKey, int] = {}
        for n, vs in enumerate(servers):
            if vs is None:
                continue
            i = n if tables is None else tables[n]
            key = vs.key
            if key in seen:
                field = "group" if vs.group is not None else "fwmark" if vs.fwmark else "address"
                self.add(
                    f"virtual_server[{i}].{field}",
                    f"duplicate service {_service_text(key)} (also virtual_server[{seen[key]}])",
                )
            else:
                seen[key] = i


def _service_text(key: ServiceKey) -> str:
    """A service as the loader names it: "tcp 192.0.2.1:80", "fwmark 7 inet6"."""
    if key.is_fwmark:
        return f"fwmark {key.fwmark} {'inet' if key.family == 4 else 'inet6'}"
    return str(key)
