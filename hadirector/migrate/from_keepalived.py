"""keepalived.conf (a ``kaconf`` tree) -> hadirector's TOML, with a report.

keepalived's defaults are written out wherever hadirector's differ, so that a converted
director behaves as the keepalived one did: VRRP version 2 (``vrrp_version``), GARP
bursts without a gap (``vrrp_garp_interval 0``), health checks every 60 s
(``delay_loop``) with a 5 s timeout (``connect_timeout``), HTTP status 200-299, a failed
real server removed (not quiesced: ``inhibit_on_failure`` off), back after one success,
out after ``retry`` + 1 failures, the sync daemon's id = the instance's VRID, and tracking
weights of sync group members set to 0 (keepalived ignores them, a failure is FAULT).

Every construct that is not converted, or converted with a different meaning, is a
finding with its ``file:line`` and what to do. The document is finally checked with the
configuration loader; anything it still refuses is dropped with its reason (a finding),
so the TOML written always loads.

Pure: no I/O (the tree comes from ``kaconf``), standard library and the configuration
loader only.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

from hadirector.config.schema import MAX_V3_INTERVAL_CS, SCHEDULERS
from hadirector.errors import ConfigError
from hadirector.migrate import tomlout
from hadirector.migrate.kaconf import Node
from hadirector.migrate.report import Findings, Where

Table = dict[str, Any]

KA_VRRP_VERSION = 2  # keepalived's default vrrp_version (IPv6 instances always use 3)
KA_PRIORITY = 100
KA_DELAY_LOOP = 60.0
KA_CONNECT_TIMEOUT = 5.0
KA_RETRY = 1  # TCP_CHECK, HTTP_GET, SSL_GET, UDP_CHECK, DNS_CHECK; MISC_CHECK's is 0
KA_DELAY_BEFORE_RETRY = 1.0  # seconds after a failed check before the retry
_CHECKERS = {
    "TCP_CHECK": "tcp",
    "HTTP_GET": "http",
    "SSL_GET": "https",
    "MISC_CHECK": "script",
    "UDP_CHECK": "udp",
    "DNS_CHECK": "dns",
}
# Checker settings keepalived lets a virtual_server or real_server give for the checkers
# below it (a checker's own win); inhibit_on_failure is not a checker's.
_CHECKER_INHERITED = (
    "delay_loop",
    "connect_timeout",
    "retry",
    "nb_get_retry",
    "delay_before_retry",
    "alpha",
    "virtualhost",
    "warmup",
)
_INHERITED = (*_CHECKER_INHERITED, "inhibit_on_failure")
KA_PERSISTENCE = 360  # persistence_timeout without a value
KA_HTTP_STATUS = list(range(200, 300))
KA_GARP_INTERVAL = 0.0
KA_SMTP_PORT = 25  # smtp_server without a port
KA_SMTP_TIMEOUT = 30  # smtp_connect_timeout's default, in seconds (each SMTP step)
KA_MAIL_FROM = "keepalived@localhost"  # keepalived's default is keepalived@<host name>
_KA_TRUE = ("true", "on", "yes")
_KA_FALSE = ("false", "off", "no")
_MAIL_KEYS = (
    "notification_email",
    "notification_email_from",
    "smtp_server",
    "smtp_connect_timeout",
    "smtp_alert",
    "smtp_alert_vrrp",
    "smtp_alert_checker",
)

_MAILBOX = re.compile(r"[^\s<>,@\"]+@[^\s<>,@\"]+")  # as [alerts.email] takes them
_NAME_BAD = re.compile(r"[^A-Za-z0-9_.-]")

# Keywords dropped with the same advice wherever they appear.
_UNSUPPORTED_ADVICE = {
    "smtp_helo_name": "hadirector greets the mail server (EHLO) with the host's fully "
    "qualified name, as Python's smtplib does; there is no setting for another name",
    "no_email_faults": "hadirector mails FAULT transitions too; set smtp_alert = false on an "
    "instance or sync group to stop all of its mail",
    "use_vmac": "hadirector has no VMAC interfaces: the VIPs go on the interface itself, "
    "announced with its MAC",
    "vmac_xmit_base": "hadirector has no VMAC interfaces",
    "virtual_routes": "hadirector adds no routes: keep them in the system's network configuration",
    "virtual_rules": "hadirector adds no policy rules: keep them in the system's network "
    "configuration",
    "static_ipaddress": "keep static addresses in the system's network configuration",
    "static_routes": "keep static routes in the system's network configuration",
    "static_rules": "keep static rules in the system's network configuration",
    "vrrp_strict": "hadirector has no strict mode (no no_accept firewall rules)",
    "strict_mode": "hadirector has no strict mode",
    "no_accept": "hadirector always lets the VIP owner receive traffic for the VIPs",
    "mcast_dst_ip": "hadirector sends to 224.0.0.18 / ff02::12 (or unicast peers)",
    "track_src_ip": "hadirector goes to FAULT when the interface has no usable source address",
    "unicast_ttl": "hadirector sends with TTL 255 and accepts only 255 (RFC 5798)",
    "min_ttl": "hadirector accepts only TTL 255",
    "max_ttl": "hadirector accepts only TTL 255",
    "dont_track_primary": "hadirector always puts an instance in FAULT when its interface is down",
    "track_process": "track the process with a track_script instead",
    "vrrp_track_process": "track the process with a track_script instead",
    "track_bfd": "track BFD with a track_script instead",
    "bfd_instance": "hadirector has no BFD",
    "garp_group": "hadirector has no GARP groups: set garp_interval per instance",
    "net_namespace": "run hadirector inside the namespace instead (ip netns exec)",
    "notify_fifo": "hadirector has no notify FIFO: use notify scripts",
    "vrrp_notify_fifo": "hadirector has no notify FIFO: use notify scripts",
    "lvs_notify_fifo": "hadirector has no notify FIFO: use notify scripts",
    "enable_snmp_vrrp": "hadirector has no SNMP: use metrics_listen (Prometheus)",
    "enable_snmp_checker": "hadirector has no SNMP: use metrics_listen (Prometheus)",
    "enable_snmp_rfc": "hadirector has no SNMP: use metrics_listen (Prometheus)",
    "enable_traps": "hadirector has no SNMP: use metrics_listen (Prometheus)",
    "snmp_socket": "hadirector has no SNMP: use metrics_listen (Prometheus)",
    "snmp_name": "hadirector has no SNMP",
    "ssl": "hadirector's HTTPS checks use no client certificate",
}

# Keywords dropped without changing what the directors do (said as notes).
_HARMLESS = {
    "state": None,  # handled where it matters
    "debug": "hadirector logs with log_level instead",
    "native_ipv6": None,
    "check_unicast_src": None,  # hadirector always accepts only its unicast peers
    "accept": None,  # hadirector always lets the master receive traffic for the VIPs
    "vrrp_check_unicast_src": None,
    "vrrp_skip_check_adv_addr": None,
    "skip_check_adv_addr": None,
    "unicast_fault_no_peer": None,
    "snmp_name": None,
    "lvs_flush_on_stop": "hadirector leaves the IPVS table as it is on stop",
    "max_auto_priority": "use realtime_priority",
    "vrrp_no_swap": None,
    "checker_no_swap": None,
    "vrrp_priority": None,
    "checker_priority": None,
    "bfd_priority": None,
    "vrrp_process_priority": None,
    "process_names": None,
    "dynamic_interfaces": "hadirector follows interfaces that appear later by itself",
    "vrrp_iptables": None,
    "vrrp_ipsets": None,
    "nftables": None,
    "nftables_priority": None,
    "nftables_counters": None,
    "nftables_ifindex": None,
    "vrrp_lower_prio_no_advert": None,
    "lower_prio_no_advert": None,
    "vrrp_higher_prio_send_advert": "hadirector always does so",
    "higher_prio_send_advert": "hadirector always does so",
    "vrrp_garp_lower_prio_delay": None,
    "vrrp_garp_lower_prio_repeat": None,
    "garp_lower_prio_delay": None,
    "garp_lower_prio_repeat": None,
    "vrrp_garp_master_refresh_repeat": None,
    "garp_master_refresh_repeat": None,
    "vrrp_min_garp": None,
    "ha_suspend": "hadirector checks real servers whether or not it holds the VIP",
    "notify_priority_changes": None,
    "user": None,
    "instance": None,
    "linkbeat_use_polling": None,
    "linkbeat_interfaces": None,
    "umask": None,
}


def _name(text: str) -> str:
    cleaned = _NAME_BAD.sub("_", text)[:64]
    return cleaned or "_"


def _seconds(v: float) -> float | int:
    return int(v) if v == int(v) else round(v, 6)


class _Converter:
    def __init__(self, findings: Findings) -> None:
        self.f = findings
        self.doc: Table = {}
        self.globals: Table = {}
        self.ipvs: Table = {}
        self.instances: list[Table] = []
        self.groups: list[Table] = []
        self.scripts: list[Table] = []
        self.files: list[Table] = []
        self.services: list[Table] = []
        self.origin: dict[int, Where] = {}
        self.alive: list[object] = []  # keeps the tables `origin` names alive (ids stay unique)
        self.names: dict[str, str] = {}  # keepalived name -> TOML name (per kind prefix)
        self.vrrp_version = KA_VRRP_VERSION
        self.garp: Table = {}  # instance defaults from global_defs
        self.vs_groups: dict[str, Node] = {}
        self.vs_group_tables: list[Table] = []
        self.sync_daemon: tuple[Node, Table] | None = None
        self.script_weights: dict[str, int] = {}
        self.file_weights: dict[str, int] = {}
        self.mail: Table = {}  # [alerts.email] as global_defs gives it
        self.mail_nodes: list[Node] = []  # the global_defs statements about mail
        self.smtp_defaults: dict[str, bool] = {}  # smtp_alert, smtp_alert_vrrp, ..._checker

    # --- helpers ------------------------------------------------------------------------

    def where_of(self, table: Table, where: Where) -> None:
        self.origin[id(table)] = where
        self.alive.append(table)

    def unsupported(self, node: Node, context: str) -> None:
        advice = _UNSUPPORTED_ADVICE.get(node.keyword)
        if advice is not None:
            self.f.dropped(node.where, f"{node.keyword}: not supported ({advice})")
        elif node.keyword in _HARMLESS:
            why = _HARMLESS[node.keyword]
            if why:
                self.f.note(node.where, f"{node.keyword}: not converted ({why})")
        else:
            self.f.dropped(
                node.where,
                f"unknown keyword {node.keyword!r} in {context}: not converted; check what it "
                "did and whether hadirector needs an equivalent",
            )

    def number(
        self, node: Node, index: int = 0, *, low: float, high: float, integer: bool = True
    ) -> Any:
        args = node.args
        if len(args) <= index:
            self.f.dropped(node.where, f"{node.keyword}: value missing; not converted")
            return None
        text = args[index]
        try:
            v: float = int(text, 10) if integer else float(text)
        except ValueError:
            self.f.dropped(node.where, f"{node.keyword} {text}: not a number; not converted")
            return None
        if not low <= v <= high or v != v:
            self.f.dropped(
                node.where, f"{node.keyword} {text}: out of range {low:g}..{high:g}; not converted"
            )
            return None
        return v

    def word(self, node: Node, index: int = 0) -> str | None:
        if len(node.args) <= index:
            self.f.dropped(node.where, f"{node.keyword}: value missing; not converted")
            return None
        return node.args[index]

    def command(self, node: Node, what: str) -> str | list[str] | None:
        text = " ".join(node.args)
        if not text:
            self.f.dropped(node.where, f"{node.keyword}: no command; not converted")
            return None
        first = text.split()[0].strip("'\"")
        if not first.startswith("/"):
            self.f.changed(
                node.where,
                f"{node.keyword} {text!r}: not an absolute path (keepalived looks it up in PATH "
                f"or hands it to /bin/sh); written as /bin/sh -c '...': better give the {what} "
                "its full path",
            )
            return ["/bin/sh", "-c", text]
        return text

    def ref_name(self, kind: str, text: str, where: Where) -> str:
        key = f"{kind}:{text}"
        if key not in self.names:
            cleaned = _name(text)
            if cleaned != text:
                self.f.changed(
                    where,
                    f"{kind} name {text!r} written as {cleaned!r} (hadirector names are "
                    "1..64 of A-Z a-z 0-9 _ . -): notify scripts get the new name",
                )
            self.names[key] = cleaned
        return self.names[key]

    # --- the file -------------------------------------------------------------------------

    def run(self, nodes: tuple[Node, ...]) -> None:
        for node in nodes:
            if node.keyword == "global_defs":
                self.global_defs(node)
            elif node.keyword == "virtual_server_group":
                if node.args:
                    self.vs_groups[node.args[0]] = node
                else:
                    self.f.dropped(node.where, "virtual_server_group without a name: dropped")
        for node in nodes:
            k = node.keyword
            if k == "vrrp_script":
                self.vrrp_script(node)
            elif k in ("vrrp_track_file", "track_file"):
                self.track_file(node)
        handlers: dict[str, Callable[[Node], None]] = {
            "vrrp_instance": self.vrrp_instance,
            "virtual_server": self.virtual_server,
        }
        for node in nodes:
            k = node.keyword
            if k in handlers:
                handlers[k](node)
            elif k in (
                "global_defs",
                "virtual_server_group",
                "vrrp_script",
                "vrrp_track_file",
                "track_file",
                "vrrp_sync_group",
            ):
                continue
            else:
                self.unsupported(node, "the file")
        for node in nodes:
            if node.keyword == "vrrp_sync_group":
                self.sync_group(node)
        self.finish_sync_daemon()

    # --- global_defs ----------------------------------------------------------------------

    def global_defs(self, node: Node) -> None:
        v: Any
        for n in node.children():
            k = n.keyword
            if k == "router_id":
                v = self.word(n)
                if v is not None:
                    self.globals["router_id"] = v[:255]
            elif k == "vrrp_version":
                v = self.number(n, low=2, high=3)
                if v is not None:
                    self.vrrp_version = v
            elif k in ("vrrp_garp_master_delay", "vrrp_garp_master_repeat"):
                v = self.number(n, low=0, high=3600 if k.endswith("delay") else 100)
                if v is not None:
                    key = k.removeprefix("vrrp_")
                    if key == "garp_master_repeat" and v == 0:
                        v = 1
                        self.f.changed(n.where, "garp_master_repeat 0 written as 1 (at least 1)")
                    self.garp[key] = v
            elif k == "vrrp_garp_master_refresh":
                v = self.number(n, low=0, high=86400)
                if v is not None:
                    self.garp["garp_master_refresh"] = v
            elif k in ("vrrp_garp_interval", "vrrp_gna_interval"):
                v = self.number(n, low=0, high=10, integer=False)
                if v is not None:
                    self.garp["garp_interval" if "garp" in k else "gna_interval"] = _seconds(v)
            elif k == "vrrp_rt_priority":
                v = self.number(n, low=1, high=99)
                if v is not None:
                    self.globals["realtime_priority"] = v
            elif k == "lvs_sync_daemon":
                self.sync_daemon = (n, {})
            elif k == "lvs_timeouts":
                self.lvs_timeouts(n)
            elif k == "script_user":
                if n.args and n.args[0] in ("root", "0") and len(n.args) == 1:
                    self.f.note(
                        n.where,
                        "script_user root: left unset, scripts run as the agent's user (root "
                        "under a root agent)",
                    )
                elif n.args:
                    self.globals["script_user"] = n.args[0]
                    if len(n.args) > 1:
                        self.globals["script_group"] = n.args[1]
                else:
                    self.f.dropped(n.where, "script_user without a user: not converted")
            elif k == "enable_script_security":
                self.globals["script_security"] = True
            elif k == "lvs_flush":
                self.f.changed(
                    n.where,
                    "lvs_flush (empty the IPVS table at start): hadirector leaves services it "
                    "does not own alone; set [ipvs] own_whole_table = true if the file must be "
                    "the whole table",
                )
            elif k in _MAIL_KEYS:
                self.mail_global(n)
            else:
                self.unsupported(n, "global_defs")

    # --- e-mail -----------------------------------------------------------------------------

    def flag(self, n: Node) -> bool | None:
        """keepalived's boolean: none = true, true/on/yes, false/off/no; else it ignores it."""
        if not n.args:
            return True
        word = n.args[0].lower()
        if word in _KA_TRUE or word in _KA_FALSE:
            return word in _KA_TRUE
        self.f.note(
            n.where,
            f"{n.keyword} {n.args[0]}: not a boolean; keepalived ignores it, so is it here "
            "(the default applies)",
        )
        return None

    def mail_global(self, n: Node) -> None:
        k = n.keyword
        self.mail_nodes.append(n)
        v: Any
        if k == "notification_email":
            to = self.mail.setdefault("to", [])
            for c in n.children():
                for w in c.words:
                    self.mail["#keepalived_to"] = True
                    if _MAILBOX.fullmatch(w):
                        to.append(w)
                    else:
                        self.f.dropped(
                            c.where,
                            f"notification_email {w}: hadirector sends to local@domain "
                            "addresses only; left out (write the address the relay delivers "
                            "it to)",
                        )
        elif k == "notification_email_from":
            v = self.word(n)
            if v is not None and _MAILBOX.fullmatch(v):
                self.mail["from"] = v
            elif v is not None:
                self.f.dropped(
                    n.where,
                    f"notification_email_from {v}: hadirector sends from a local@domain "
                    "address only; left out",
                )
        elif k == "smtp_server":
            host = self.word(n)
            port = self.number(n, 1, low=1, high=65535) if len(n.args) > 1 else KA_SMTP_PORT
            if host is not None and port is not None:
                host = f"[{host}]" if ":" in host else host
                self.mail["server"] = f"{host}:{port}"
                self.where_of(self.mail, n.where)
        elif k == "smtp_connect_timeout":
            v = self.number(n, low=1, high=2**31)
            if v is not None and v > 300:
                self.f.changed(
                    n.where, f"smtp_connect_timeout {v}: hadirector waits at most 300 s; 300 used"
                )
                v = 300
            if v is not None:
                self.mail["timeout"] = v
        else:  # smtp_alert, smtp_alert_vrrp, smtp_alert_checker
            v = self.flag(n)
            if v is not None:
                self.smtp_defaults[k] = v

    @property
    def mail_on(self) -> bool:
        """keepalived mails only with addresses (notification_email) and a server."""
        return bool(self.mail.get("to")) and "server" in self.mail

    def smtp_default(self, kind: str) -> bool:
        """An object's smtp_alert when it says none: global_defs' smtp_alert_vrrp (instances,
        sync groups) or smtp_alert_checker (real servers), then smtp_alert, then keepalived's
        own default: no mail for instances and sync groups, mail for real servers."""
        d = self.smtp_defaults
        own = d.get(f"smtp_alert_{kind}", d.get("smtp_alert"))
        return own if own is not None else kind == "checker"

    def mail_table(self) -> Table | None:
        if not self.mail_on:
            if self.mail.get("#keepalived_to") and "server" in self.mail:
                self.f.dropped(
                    self.mail_nodes[0].where,
                    "e-mail alerts: no notification_email address hadirector can send to, so "
                    "no [alerts.email] (nor smtp_alert) written: keepalived's mail stops until "
                    "you add one",
                )
            elif self.mail_nodes:
                self.f.note(
                    self.mail_nodes[0].where,
                    "e-mail settings: keepalived sends no mail without both notification_email "
                    "addresses and smtp_server; none written (hadirector sends none without "
                    "[alerts.email])",
                )
            return None
        t: Table = {"to": self.mail["to"]}
        if "from" in self.mail:
            t["from"] = self.mail["from"]
        else:
            t["from"] = KA_MAIL_FROM
            self.f.changed(
                self.mail_nodes[0].where,
                "no usable notification_email_from: keepalived's default is keepalived@<its "
                f"host name>; written as {KA_MAIL_FROM}: put the director's own address in "
                "[alerts.email] from",
            )
        t["server"] = self.mail["server"]
        t["timeout"] = self.mail.get("timeout", KA_SMTP_TIMEOUT)
        self.where_of(t, self.origin.get(id(self.mail), self.mail_nodes[0].where))
        return t

    def lvs_timeouts(self, n: Node) -> None:
        args = list(n.args)
        names = {"tcp": "timeout_tcp", "tcpfin": "timeout_tcpfin", "udp": "timeout_udp"}
        while args:
            key = args.pop(0)
            if key in names and args and args[0].isdigit():
                self.ipvs[names[key]] = min(int(args.pop(0)), 2147483647)
            else:
                self.f.dropped(n.where, f"lvs_timeouts {key}: not understood; not converted")

    # --- tracking ----------------------------------------------------------------------

    def vrrp_script(self, node: Node) -> None:
        if not node.args:
            self.f.dropped(node.where, "vrrp_script without a name: dropped")
            return
        t: Table = {"name": self.ref_name("vrrp_script", node.args[0], node.where)}
        self.where_of(t, node.where)
        weight = 0
        for n in node.children():
            k = n.keyword
            if k == "script":
                cmd = self.command(n, "script")
                if cmd is not None:
                    t["script"] = cmd
            elif k == "interval":
                v = self.number(n, low=0.000001, high=86400, integer=False)
                if v is not None:
                    t["interval"] = _seconds(v)
            elif k == "timeout":
                v = self.number(n, low=0.000001, high=86400, integer=False)
                if v is not None:
                    t["timeout"] = _seconds(v)
            elif k == "weight":
                v = self.number(n, low=-253, high=253)
                if v is not None:
                    weight = v
                    if "reverse" in n.args[1:]:
                        self.f.dropped(n.where, "weight ... reverse: not supported; plain weight")
            elif k in ("rise", "fall"):
                v = self.number(n, low=1, high=1000)
                if v is not None:
                    t[k] = v
            elif k == "init_fail":
                self.f.changed(
                    n.where,
                    "init_fail: hadirector counts a script as up until it fails (fall) ",
                )
            elif k == "user":
                self.f.changed(n.where, "user: hadirector runs scripts as its own user (root)")
            else:
                self.unsupported(n, "vrrp_script")
        if "script" not in t:
            self.f.dropped(node.where, f"vrrp_script {node.args[0]}: no usable script; dropped")
            return
        t.setdefault("interval", 1)
        t["weight"] = weight
        self.script_weights[t["name"]] = weight
        self.scripts.append(t)

    def track_file(self, node: Node) -> None:
        if not node.args:
            self.f.dropped(node.where, f"{node.keyword} without a name: dropped")
            return
        t: Table = {"name": self.ref_name("track_file", node.args[0], node.where)}
        self.where_of(t, node.where)
        weight = 1
        for n in node.children():
            if n.keyword == "file":
                v = self.word(n)
                if v is not None:
                    t["path"] = v
            elif n.keyword == "weight":
                w = self.number(n, low=-253, high=253)
                if w is not None:
                    weight = w
                    if "reverse" in n.args[1:]:
                        self.f.dropped(n.where, "weight ... reverse: not supported; plain weight")
            elif n.keyword == "init_file":
                self.f.dropped(
                    n.where,
                    "init_file: hadirector does not create the file; create it before starting",
                )
            else:
                self.unsupported(n, node.keyword)
        if "path" not in t:
            self.f.dropped(node.where, f"{node.keyword} {node.args[0]}: no file; dropped")
            return
        t["weight"] = weight
        self.file_weights[t["name"]] = weight
        self.files.append(t)

    def track_list(self, node: Node, kind: str) -> list[Any]:
        out: list[Any] = []
        for n in node.children():
            name = n.keyword
            if kind == "script":
                name = self.ref_name("vrrp_script", name, n.where)
            elif kind == "file":
                name = self.ref_name("track_file", name, n.where)
            entry: Table = {"name": name}
            rest = list(n.args)
            if rest[:1] == ["weight"] and len(rest) >= 2:
                try:
                    w = int(rest[1])
                except ValueError:
                    w = None
                if w is None or not -253 <= w <= 253:
                    self.f.dropped(n.where, f"{name} weight {rest[1]}: not -253..253; weight 0")
                    w = 0
                entry["weight"] = w
                rest = rest[2:]
            if "reverse" in rest:
                self.f.dropped(n.where, f"{name} ... reverse: not supported; plain weight")
            out.append(entry if len(entry) > 1 else name)
        return out

    # --- vrrp_instance --------------------------------------------------------------------

    def vrrp_instance(self, node: Node) -> None:
        if not node.args:
            self.f.dropped(node.where, "vrrp_instance without a name: dropped")
            return
        name = self.ref_name("vrrp_instance", node.args[0], node.where)
        t: Table = {"name": name}
        self.where_of(t, node.where)
        state = None
        version = None
        vips: list[tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, Table | str]] = []
        peers: list[str] = []
        auth: Table = {}
        tracks: dict[str, list[Any]] = {}
        local_garp: Table = {}
        notify: Table = {}
        nopreempt = False
        smtp_alert: bool | None = None
        v: Any
        for n in node.children():
            k = n.keyword
            if k == "state":
                state = (n.args[0] if n.args else "").upper()
                if state not in ("MASTER", "BACKUP"):
                    self.f.dropped(n.where, f"state {state}: not MASTER or BACKUP; ignored")
                    state = None
                else:
                    state_where = n.where
            elif k == "interface":
                v = self.word(n)
                if v is not None:
                    t["interface"] = v
            elif k == "virtual_router_id":
                v = self.number(n, low=1, high=255)
                if v is not None:
                    t["vrid"] = v
            elif k == "priority":
                v = self.number(n, low=1, high=255)
                if v is not None:
                    t["priority"] = v
            elif k == "advert_int":
                v = self.number(n, low=0.01, high=255, integer=False)
                if v is not None:
                    t["advert_interval"] = v
                    advert_where = n.where
            elif k == "version":
                v = self.number(n, low=2, high=3)
                if v is not None:
                    version = v
            elif k == "nopreempt" or k == "no_preempt":
                nopreempt = True
            elif k == "preempt":
                nopreempt = False
            elif k == "preempt_delay":
                v = self.number(n, low=0, high=1000, integer=False)
                if v is not None:
                    t["preempt_delay"] = _seconds(v)
            elif k == "virtual_ipaddress":
                for c in n.children():
                    vip = self.vip(c, t.get("interface"))
                    if vip is not None:
                        vips.append(vip)
            elif k == "virtual_ipaddress_excluded":
                self.f.dropped(
                    n.where,
                    "virtual_ipaddress_excluded: not supported (hadirector names every VIP in "
                    "its adverts); put these addresses in a second instance with its own VRID "
                    "on both directors",
                )
            elif k == "unicast_src_ip":
                v = self.word(n)
                if v is not None:
                    t["unicast_src"] = v
            elif k == "mcast_src_ip":
                v = self.word(n)
                if v is not None:
                    t["#mcast_src"] = (v, n.where)
            elif k == "unicast_peer":
                for c in n.children():
                    peers.append(c.keyword)
                    if c.args:
                        self.f.dropped(
                            c.where,
                            f"unicast_peer {c.keyword} {' '.join(c.args)}: the options are not "
                            "supported (hadirector checks TTL 255 always)",
                        )
            elif k == "old_unicast_checksum":
                if n.args[:1] == ("never",):
                    self.f.changed(
                        n.where,
                        "old_unicast_checksum never: hadirector always accepts both forms",
                    )
                else:
                    t["old_unicast_checksum"] = True
                    old_where = n.where
            elif k == "authentication":
                for c in n.children():
                    if c.keyword == "auth_type" and c.args:
                        auth["type"] = (c.args[0].upper(), c.where)
                    elif c.keyword == "auth_pass" and c.args:
                        auth["pass"] = (c.args[0], c.where)
                    else:
                        self.unsupported(c, "authentication")
            elif k in ("track_interface", "track_script", "track_file"):
                tracks.setdefault(k, []).extend(
                    self.track_list(n, {"track_interface": "if"}.get(k, k.split("_")[1]))
                )
                tracks.setdefault("#where", []).append(n.where)
            elif k in ("notify", "notify_master", "notify_backup", "notify_fault", "notify_stop"):
                cmd = self.command(n, k)
                if cmd is not None:
                    notify[k] = cmd
            elif k == "notify_master_rx_lower_pri":
                self.f.dropped(n.where, f"{k}: not supported (no such event in hadirector)")
            elif k in ("garp_master_delay", "garp_master_repeat", "garp_master_refresh"):
                v = self.number(
                    n, low=0, high={"delay": 3600, "repeat": 100, "refresh": 86400}[k[12:]]
                )
                if v is not None:
                    if k == "garp_master_repeat" and v == 0:
                        v = 1
                        self.f.changed(n.where, "garp_master_repeat 0 written as 1 (at least 1)")
                    local_garp[k] = v
            elif k in ("garp_interval", "gna_interval"):
                v = self.number(n, low=0, high=10, integer=False)
                if v is not None:
                    local_garp[k] = _seconds(v)
            elif k == "lvs_sync_daemon_interface":
                if n.args:
                    self.sync_daemon = (n, {"interface": n.args[0], "instance": name})
            elif k == "unicast_ttl" and n.args[:1] == ("255",):
                continue
            elif k == "down_timer_adverts":
                if n.args[:1] != ("3",):
                    self.f.dropped(
                        n.where, "down_timer_adverts: hadirector follows RFC 5798 (3 adverts)"
                    )
            elif k == "smtp_alert":
                smtp_alert = self.flag(n)
            else:
                self.unsupported(n, f"vrrp_instance {node.args[0]}")

        for key in ("interface", "vrid"):
            if key not in t:
                self.f.dropped(
                    node.where,
                    f"vrrp_instance {node.args[0]}: no "
                    f"{'interface' if key == 'interface' else 'virtual_router_id'}; hadirector "
                    "needs one: instance dropped",
                )
                return
        if not vips:
            self.f.dropped(
                node.where,
                f"vrrp_instance {node.args[0]}: no virtual_ipaddress hadirector can use: "
                "instance dropped",
            )
            return
        family = vips[0][0].version
        kept: list[tuple[Any, Any]] = []
        for vip in vips:
            if vip[0].version != family:
                continue
            if any(vip[0].ip == k[0].ip for k in kept):
                self.f.note(node.where, f"virtual_ipaddress {vip[0].ip} listed twice: written once")
                continue
            kept.append(vip)
        if any(v[0].version != family for v in vips):
            self.f.dropped(
                node.where,
                f"vrrp_instance {node.args[0]}: VIPs of the other address family than the first "
                "were dropped (one family per instance): put them in an instance of their own",
            )
        if "priority" not in t:
            if state == "MASTER":
                t["priority"] = 255
                self.f.changed(
                    state_where,
                    "state MASTER without priority: keepalived runs it as the address owner "
                    "(priority 255), and so does the TOML; give both directors explicit "
                    "priorities",
                )
            else:
                t["priority"] = KA_PRIORITY
        elif state == "BACKUP" and t["priority"] == 255:
            self.f.changed(
                state_where,
                "state BACKUP with priority 255: hadirector starts an address owner as master "
                "at once (RFC 5798); keepalived waited for an election",
            )
        if version is None:
            version = self.vrrp_version
        if family == 6 and version == 2:
            version = 3
        t["version"] = version
        interval = t.pop("advert_interval", 1)
        if version == 2 and interval != int(interval):
            self.f.changed(
                advert_where,
                f"advert_int {interval:g} with VRRP version 2: v2 has whole seconds; written "
                f"as {max(1, round(interval))}",
            )
            interval = max(1, round(interval))
        if version == 3 and interval * 100 > MAX_V3_INTERVAL_CS:
            self.f.changed(advert_where, "advert_int above 40.95 s: written as 40.95 (v3 limit)")
            interval = MAX_V3_INTERVAL_CS / 100
        t["advert_interval"] = _seconds(round(interval * 100) / 100 if version == 3 else interval)
        if nopreempt and t["priority"] == 255:
            nopreempt = False
            self.f.note(
                node.where,
                "nopreempt with priority 255: keepalived resets it (the owner always takes "
                "over), and so does the TOML",
            )
        if nopreempt:
            t["preempt"] = False
            if "preempt_delay" in t:
                t.pop("preempt_delay")
                self.f.note(node.where, "preempt_delay with nopreempt has no effect: left out")
        t["virtual_addresses"] = [v[1] for v in kept]
        mcast = t.pop("#mcast_src", None)
        if peers:
            t["unicast_peers"] = peers
        elif "unicast_src" in t:
            t.pop("unicast_src")
            self.f.note(node.where, "unicast_src_ip without unicast_peer: not used; left out")
        if mcast is not None:
            self.f.changed(
                mcast[1],
                "mcast_src_ip: hadirector sends from the interface's primary address; give the "
                "interface that address first",
            )
        if t.get("old_unicast_checksum") and not (peers and family == 4 and version == 3):
            t.pop("old_unicast_checksum")
            self.f.note(old_where, "old_unicast_checksum: only matters for IPv4 unicast v3")
        if auth:
            self.authentication(t, auth, version)
        t.update(self.garp)
        if family == 6 and "gna_interval" in t:
            t["garp_interval"] = t["gna_interval"]
        t.pop("gna_interval", None)
        t.setdefault("garp_interval", KA_GARP_INTERVAL)
        for k, v in local_garp.items():
            if k == "gna_interval":
                if family == 6:
                    t["garp_interval"] = v
            elif k == "garp_interval":
                if family == 4:
                    t["garp_interval"] = v
            else:
                t[k] = v
        own = [
            r
            for r in tracks.get("track_interface", [])
            if (r if isinstance(r, str) else r["name"]) == t["interface"]
        ]
        if own:
            self.f.note(
                tracks["#where"][0],
                f"track_interface {t['interface']}: keepalived ignores the instance's own "
                "interface there (down is always FAULT, in both); left out",
            )
            tracks["track_interface"] = [r for r in tracks["track_interface"] if r not in own]
        for key in ("track_interface", "track_script", "track_file"):
            if tracks.get(key):
                t[key + "s"] = tracks[key]
        t["#track_where"] = tracks.get("#where", [node.where])
        for k in ("notify", "notify_master", "notify_backup", "notify_fault", "notify_stop"):
            if k in notify:
                t[k] = notify[k]
        if self.mail_on:
            t["smtp_alert"] = self.smtp_default("vrrp") if smtp_alert is None else smtp_alert
        self.instances.append(t)

    def authentication(self, t: Table, auth: Table, version: int) -> None:
        kind, where = auth.get("type", ("", None))
        if kind == "AH":
            self.f.dropped(
                where,
                "auth_type AH: not supported (and not interoperable); hadirector peers can use "
                "hmac_key_file, a keepalived peer must drop AH as well",
            )
            return
        if kind != "PASS":
            self.f.dropped(where or Where("?"), f"auth_type {kind or '(none)'}: not converted")
            return
        if version != 2:
            self.f.dropped(
                where,
                "auth_type PASS with VRRP version 3: v3 has no authentication (keepalived "
                "ignores it too)",
            )
            return
        password, pwhere = auth.get("pass", ("", where))
        if len(password) > 8:
            self.f.note(
                pwhere, "auth_pass longer than 8 characters: keepalived uses the first 8, so do we"
            )
            password = password[:8]
        if not password or not all(0x20 < ord(c) < 0x7F for c in password):
            self.f.dropped(pwhere, "auth_pass: hadirector needs 1..8 printable characters")
            return
        t["auth_type"] = "pass"
        t["auth_pass"] = password

    def vip(
        self, node: Node, interface: str | None
    ) -> tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, Table | str] | None:
        text = node.keyword
        try:
            iface = ipaddress.ip_interface(text)
        except ValueError:
            self.f.dropped(node.where, f"virtual_ipaddress {text}: not an address; dropped")
            return None
        entry: Table = {"address": text}
        rest = list(node.args)
        while rest:
            opt = rest.pop(0)
            if opt in ("dev", "label", "brd", "scope", "preferred_lft", "track_group") and rest:
                val = rest.pop(0)
                if opt in ("dev", "label"):
                    entry[opt] = val
                elif opt == "scope" and val == "global":
                    pass
                else:
                    self.f.dropped(
                        node.where,
                        f"virtual_ipaddress {text} {opt} {val}: not supported; left out",
                    )
            elif opt in ("no_track", "home", "nodad", "noprefixroute", "autojoin", "-", "use_vmac"):
                self.f.dropped(
                    node.where, f"virtual_ipaddress {text} {opt}: not supported; left out"
                )
            else:
                self.f.dropped(
                    node.where, f"virtual_ipaddress {text} {opt}: not understood; left out"
                )
        if "label" in entry and iface.version == 6:
            entry.pop("label")
            self.f.note(node.where, f"{text}: labels are IPv4 only; left out")
        if "label" in entry:
            dev = entry.get("dev", interface or "")
            if not entry["label"].startswith(dev) or len(entry["label"].encode()) > 15:
                self.f.dropped(
                    node.where,
                    f"{text} label {entry['label']}: must start with the device name and fit "
                    "15 bytes; left out",
                )
                entry.pop("label")
        if "dev" in entry and entry["dev"] == interface:
            entry.pop("dev")
        return iface, (entry if len(entry) > 1 else text)

    # --- vrrp_sync_group ------------------------------------------------------------------

    def sync_group(self, node: Node) -> None:
        if not node.args:
            self.f.dropped(node.where, "vrrp_sync_group without a name: dropped")
            return
        g: Table = {"name": self.ref_name("vrrp_sync_group", node.args[0], node.where)}
        self.where_of(g, node.where)
        members: list[str] = []
        keep_weights = False
        group_tracks: list[tuple[str, list[Any]]] = []
        notify: Table = {}
        smtp_alert: bool | None = None
        for n in node.children():
            k = n.keyword
            if k == "group":
                for c in n.children():  # names, several to a line if need be
                    members.extend(self.ref_name("vrrp_instance", w, c.where) for w in c.words)
            elif k in ("sync_group_tracking_weight", "global_tracking"):
                keep_weights = True
                self.f.changed(
                    n.where,
                    f"{k}: tracking weights of the members are kept; hadirector applies each "
                    "to its own instance (keepalived warns this probably won't work: make the "
                    "weights the same on every member)",
                )
            elif k in ("track_interface", "track_script", "track_file"):
                group_tracks.append(
                    (k, self.track_list(n, {"track_interface": "if"}.get(k, k[6:])))
                )
            elif k in ("notify", "notify_master", "notify_backup", "notify_fault", "notify_stop"):
                cmd = self.command(n, k)
                if cmd is not None:
                    notify[k] = cmd
            elif not n.args and n.block is None and f"vrrp_instance:{k}" in self.names:
                self.f.dropped(
                    n.where,
                    f"{k} directly inside vrrp_sync_group: keepalived 2 does not take it as a "
                    "member (members go in group { ... }); left out, as keepalived does",
                )
            elif k == "smtp_alert":
                smtp_alert = self.flag(n)
            else:
                self.unsupported(n, f"vrrp_sync_group {node.args[0]}")
        known = {i["name"]: i for i in self.instances}
        kept = []
        for m in members:
            if m not in known:
                self.f.dropped(node.where, f"sync group member {m}: no such instance; left out")
            elif any(m in other["instances"] for other in self.groups):
                self.f.dropped(node.where, f"{m} is already in another sync group; left out")
            elif m not in kept:
                kept.append(m)
        if not kept:
            self.f.dropped(node.where, f"vrrp_sync_group {node.args[0]}: no members; dropped")
            return
        g["instances"] = kept
        g.update(notify)
        if self.mail_on:
            g["smtp_alert"] = self.smtp_default("vrrp") if smtp_alert is None else smtp_alert
        self.groups.append(g)
        for m in kept:
            inst = known[m]
            for key, refs in group_tracks:
                lst = inst.setdefault(key + "s", [])
                for ref in refs:
                    name = ref if isinstance(ref, str) else ref["name"]
                    if all((r if isinstance(r, str) else r["name"]) != name for r in lst):
                        lst.append({"name": name, "weight": 0})
            if not keep_weights:
                self.zero_weights(inst)

    def zero_weights(self, inst: Table) -> None:
        """What keepalived 2.2.7 does to the tracking of a sync group member (its -d dump):
        an interface's weight becomes 0 (down = FAULT); a script or file with a weight is
        not tracked at all ("ignoring tracked script ... with weights due to SYNC group")."""
        where = inst["#track_where"][0]
        defaults = {"track_scripts": self.script_weights, "track_files": self.file_weights}
        for key in ("track_interfaces", "track_scripts", "track_files"):
            refs = inst.get(key)
            if not refs:
                continue
            out = []
            for ref in refs:
                name = ref if isinstance(ref, str) else ref["name"]
                weight = ref.get("weight") if isinstance(ref, dict) else None
                if weight is None:
                    weight = defaults.get(key, {}).get(name, 0)
                if weight == 0:
                    out.append(ref)
                elif key == "track_interfaces":
                    self.f.note(
                        where,
                        f"{inst['name']}: track_interface {name} weight {weight} inside a sync "
                        "group: keepalived ignores the weight (down = FAULT); written as weight 0",
                    )
                    out.append({"name": name, "weight": 0})
                else:
                    self.f.note(
                        where,
                        f"{inst['name']}: {key[:-1]} {name} with weight {weight} inside a sync "
                        "group: keepalived does not track it at all; left out (give it weight 0 "
                        "to make a failure FAULT, or set sync_group_tracking_weight)",
                    )
            if out:
                inst[key] = out
            else:
                inst.pop(key)

    # --- lvs_sync_daemon -------------------------------------------------------------------

    def finish_sync_daemon(self) -> None:
        if self.sync_daemon is None:
            return
        node, preset = self.sync_daemon
        s: Table = dict(preset)
        args = list(node.args)
        if node.keyword == "lvs_sync_daemon":
            if not args:
                self.f.dropped(node.where, "lvs_sync_daemon without an interface: dropped")
                return
            s["interface"] = args.pop(0)
            if args and args[0] not in ("id", "maxlen", "port", "ttl", "group"):
                if args[0] == "inst":
                    args.pop(0)
                if args:
                    s["instance"] = self.ref_name("vrrp_instance", args.pop(0), node.where)
            while args:
                key = args.pop(0)
                if not args:
                    self.f.dropped(node.where, f"lvs_sync_daemon {key}: value missing")
                    break
                val = args.pop(0)
                try:
                    if key == "id":
                        s["syncid"] = int(val)
                    elif key == "maxlen":
                        s["maxlen"] = int(val)
                    elif key == "port":
                        s["mcast_port"] = int(val)
                    elif key == "ttl":
                        s["mcast_ttl"] = int(val)
                    elif key == "group":
                        s["mcast_group"] = val
                    else:
                        self.f.dropped(node.where, f"lvs_sync_daemon {key}: not understood")
                except ValueError:
                    self.f.dropped(node.where, f"lvs_sync_daemon {key} {val}: not a number")
        instances = {i["name"]: i for i in self.instances}
        if "instance" not in s:
            if len(self.instances) == 1:
                s["instance"] = self.instances[0]["name"]
                self.f.changed(
                    node.where,
                    "lvs_sync_daemon without an instance: keepalived runs both daemons "
                    "all the time; hadirector lets the only instance decide master or backup",
                )
            else:
                self.f.dropped(
                    node.where,
                    "lvs_sync_daemon without an instance (keepalived runs both daemons all the "
                    "time): hadirector needs the instance or sync group that decides; add "
                    "[ipvs.sync] instance = ... by hand",
                )
                return
        inst = instances.get(s["instance"])
        if inst is None:
            self.f.dropped(node.where, f"lvs_sync_daemon: no instance {s['instance']}; dropped")
            return
        if "syncid" not in s:
            s["syncid"] = inst["vrid"]
        self.ipvs["sync"] = {
            k: s[k]
            for k in (
                "interface",
                "instance",
                "syncid",
                "maxlen",
                "mcast_group",
                "mcast_port",
                "mcast_ttl",
            )
            if k in s
        }
        self.where_of(self.ipvs["sync"], node.where)

    # --- virtual servers -----------------------------------------------------------------

    def virtual_server(self, node: Node) -> None:
        args = node.args
        keys: list[Table] = []
        group_name: str | None = None
        if args[:1] == ("group",) and len(args) >= 2:
            group = self.vs_groups.get(args[1])
            if group is None:
                self.f.dropped(
                    node.where, f"virtual_server group {args[1]}: no such group; dropped"
                )
                return
            for c in group.children():
                keys.extend(self.vs_group_entry(c))
            group_name = args[1]
        elif args[:1] == ("fwmark",) and len(args) >= 2 and args[1].isdigit():
            keys.append({"fwmark": int(args[1]), "#where": node.where})
        elif len(args) >= 1:
            key = self.endpoint(args[0], args[1] if len(args) > 1 else "0", node.where)
            if key is not None:
                keys.append(key)
        if not keys:
            self.f.dropped(node.where, f"virtual_server {' '.join(args)}: not understood; dropped")
            return
        vs, servers = self.vs_body(node)
        made: list[Table] = []
        for key in keys:
            t: Table = {}
            where = key.pop("#where", node.where)
            t.update(key)
            t.update(vs)
            if "fwmark" in t:
                t.pop("protocol", None)
                if t.pop("#family", None) == "inet6":
                    t["family"] = "inet6"
            else:
                t.pop("#family", None)
                if t.pop("one_packet", False) and t["protocol"] == "udp":
                    t["one_packet"] = True
            if "address" in t and t["address"].endswith(":0") and not t.get("persistence_timeout"):
                self.f.dropped(
                    where, f"{t['address']}: port 0 needs persistence_timeout; service dropped"
                )
                continue
            if "sorry_server" in t:
                self.finish_sorry(t, where)
            t["real_server"] = [self.finish_rs(dict(rs), t) for rs in servers]
            t["real_server"] = [rs for rs in t["real_server"] if rs is not None]
            self.service_alert(t, where)
            self.finish_health_action(t, node)
            _hoist_check(t)
            self.where_of(t, where)
            made.append(t)
        if group_name is not None and made:
            made = self.as_group(group_name, made, node.where)
        self.services.extend(made)

    def as_group(self, name: str, made: list[Table], where: Where) -> list[Table]:
        """A ``virtual_server group``'s services as one ``[[virtual_server_group]]`` and one
        service naming it, when they differ only in address / fwmark (else left expanded)."""
        keyish = ("address", "fwmark", "family", "protocol")
        rest = [{k: v for k, v in t.items() if k not in keyish} for t in made]
        if any(r != rest[0] for r in rest[1:]):
            self.f.note(
                where,
                f"virtual_server group {name}: written as {len(made)} virtual servers (its "
                "members differ in what hadirector resolves per service), each with the same "
                "real servers",
            )
            return made
        group: Table = {"name": _name(name)}
        addresses = [t["address"] for t in made if "address" in t]
        fwmarks = [t["fwmark"] for t in made if "fwmark" in t]
        if addresses:
            group["addresses"] = addresses
        if fwmarks:
            group["fwmarks"] = fwmarks
        self.where_of(group, where)
        self.vs_group_tables.append(group)
        service: Table = {"group": group["name"]}
        for t in made:
            service.update((k, t[k]) for k in ("protocol", "family") if k in t)
        service.update(rest[0])
        self.where_of(service, where)
        return [service]

    def finish_sorry(self, t: Table, where: Where) -> None:
        """The sorry server as the service takes it: a bare address on a fwmark service,
        the service's port with DR/TUN (no port translation, as for real servers)."""
        sorry = dict(t["sorry_server"])
        bare = sorry.pop("#portless", None)
        if "address" not in sorry:
            self.f.dropped(where, "sorry_server_* without sorry_server: left out")
            del t["sorry_server"]
            return
        if bare is not None and "fwmark" in t:
            sorry["address"] = bare
        fwd = sorry.get("forwarding", t.get("forwarding", "nat"))
        if "address" in t and fwd in ("dr", "tun") and bare is None:
            vport = t["address"].rsplit(":", 1)[1]
            host, port = sorry["address"].rsplit(":", 1)
            if port != vport:
                self.f.changed(
                    where,
                    f"sorry_server {host} {port} with DR/TUN: no port translation there, so "
                    f"the kernel uses port {vport}; written as {vport}",
                )
                sorry["address"] = f"{host}:{vport}"
        if sorry.get("forwarding") == t.get("forwarding", "nat"):
            sorry.pop("forwarding")
        t["sorry_server"] = sorry

    def service_alert(self, t: Table, where: Where) -> None:
        """hadirector's smtp_alert is per service: the real servers' (keepalived's), when
        they agree; mail for all of them when they do not (reported)."""
        default = self.smtp_default("checker")
        alerts = [rs.pop("#smtp_alert", default) for rs in t["real_server"]]
        if not self.mail_on:
            return
        if len(set(alerts)) > 1:
            self.f.changed(
                where,
                f"{t.get('address', t.get('fwmark'))}: its real servers differ in smtp_alert; "
                "hadirector has one smtp_alert per service: written true (mail about every "
                "real server), set false to mail about none",
            )
        t["smtp_alert"] = any(alerts) if alerts else default

    def endpoint(self, addr: str, port: str, where: Where) -> Table | None:
        try:
            ip = ipaddress.ip_address(addr)
            p = int(port)
            if not 0 <= p <= 65535:
                raise ValueError
        except ValueError:
            self.f.dropped(where, f"{addr} {port}: not an address and port; dropped")
            return None
        text = f"[{ip}]:{p}" if ip.version == 6 else f"{ip}:{p}"
        return {"address": text, "#where": where}

    def vs_group_entry(self, c: Node) -> list[Table]:
        if c.keyword == "fwmark" and c.args and c.args[0].isdigit():
            return [{"fwmark": int(c.args[0]), "#where": c.where}]
        port = c.args[0] if c.args else "0"
        m = re.fullmatch(r"(.+)-(\d+)", c.keyword)
        if m and ":" not in c.keyword:
            try:
                first = ipaddress.IPv4Address(m.group(1))
            except ValueError:
                self.f.dropped(c.where, f"{c.keyword}: not an address range; dropped")
                return []
            last = int(m.group(2))
            low = int(str(first).rsplit(".", 1)[1])
            out = []
            for n in range(low, min(last, 255) + 1):
                e = self.endpoint(str(first + (n - low)), port, c.where)
                if e is not None:
                    out.append(e)
            return out
        m6 = re.fullmatch(r"(.+:.*)-([0-9a-fA-F]{1,4})", c.keyword)
        if m6:  # keepalived's IPv6 range: the last 16-bit group, in hexadecimal
            try:
                start = ipaddress.IPv6Address(m6.group(1))
            except ValueError:
                self.f.dropped(c.where, f"{c.keyword}: not an address range; dropped")
                return []
            low, high = int(start) & 0xFFFF, int(m6.group(2), 16)
            if high <= low:
                self.f.dropped(
                    c.where, f"{c.keyword}: the range end is not above its start; dropped"
                )
                return []
            out = []
            for n in range(low, high + 1):
                e = self.endpoint(str(start + (n - low)), port, c.where)
                if e is not None:
                    out.append(e)
            return out
        if "/" in c.keyword:
            self.f.dropped(c.where, f"{c.keyword}: address prefixes not supported; dropped")
            return []
        e = self.endpoint(c.keyword, port, c.where)
        return [e] if e is not None else []

    def vs_body(self, node: Node) -> tuple[Table, list[Table]]:
        vs: Table = {}
        inherit: Table = {}
        v: Any
        servers: list[Table] = []
        for n in node.children():
            k = n.keyword
            if k in ("lb_algo", "lvs_sched"):
                v = (n.args[0] if n.args else "").lower()
                if v in SCHEDULERS:
                    vs["scheduler"] = v
                else:
                    self.f.dropped(n.where, f"{k} {v}: unknown scheduler; wlc used")
            elif k in ("lb_kind", "lvs_method"):
                self.method(n, vs)
            elif k == "protocol":
                v = (n.args[0] if n.args else "").lower()
                if v in ("tcp", "udp", "sctp"):
                    vs["protocol"] = v
                else:
                    self.f.dropped(n.where, f"protocol {v}: not TCP, UDP or SCTP; tcp used")
            elif k == "persistence_timeout":
                v = self.number(n, low=1, high=2147483647) if n.args else KA_PERSISTENCE
                if v is not None:
                    vs["persistence_timeout"] = v
            elif k == "persistence_granularity":
                v = self.word(n)
                if v is not None:
                    vs["persistence_netmask"] = v if "." in v else int(v) if v.isdigit() else v
            elif k == "ops":
                vs["one_packet"] = True
            elif k in ("sh-port", "sh-fallback", "mh-port", "mh-fallback"):
                vs.setdefault("scheduler_flags", []).append(k)
            elif k in ("flag-1", "flag-2", "flag-3"):
                vs.setdefault("#flags", []).append((k, n.where))
            elif k == "ip_family":
                vs["#family"] = n.args[0] if n.args else "inet"
            elif k in _INHERITED:
                self.inherited(n, inherit)
            elif k == "real_server":
                servers.append({"#node": n, "#inherit": inherit})
            elif k in ("quorum", "hysteresis"):
                v = self.number(n, low=1 if k == "quorum" else 0, high=2147483647)
                if v is not None:
                    vs[k] = v
            elif k in ("quorum_up", "quorum_down"):
                cmd = self.command(n, k)
                if cmd is not None:
                    vs[k] = cmd
            elif k == "sorry_server":
                if len(n.args) >= 1:
                    ip_text = n.args[0]
                    port_text = n.args[1] if len(n.args) > 1 else "0"
                    e = self.endpoint(ip_text, port_text, n.where)
                    if e is not None:
                        e.pop("#where")
                        sorry = vs.setdefault("sorry_server", {})
                        sorry["address"] = e["address"]
                        if port_text == "0":
                            sorry["#portless"] = ip_text
                else:
                    self.f.dropped(n.where, "sorry_server without an address: dropped")
            elif k == "sorry_server_lvs_method":
                m: Table = {}
                self.method(n, m)
                if "forwarding" in m:
                    vs.setdefault("sorry_server", {})["forwarding"] = m["forwarding"]
            elif k == "sorry_server_inhibit":
                if self.flag(n):
                    vs.setdefault("sorry_server", {})["inhibit"] = True
            elif k == "omega":
                self.f.dropped(n.where, "omega: not supported (no notify on shutdown)")
            elif k == "persistence_engine":
                self.f.dropped(n.where, "persistence_engine: not supported")
            elif k == "smtp_alert":
                self.flag(n)
                self.f.note(
                    n.where,
                    "smtp_alert on a virtual_server: keepalived's is for quorum mails (quorum "
                    "is not converted); the service's smtp_alert follows its real servers' "
                    "smtp_alert",
                )
            else:
                self.unsupported(n, "virtual_server")
        flags = vs.pop("#flags", [])
        for flag, where in flags:
            sched = vs.get("scheduler", "wlc")
            name = {"flag-1": "fallback", "flag-2": "port"}.get(flag)
            if sched in ("sh", "mh") and name:
                vs.setdefault("scheduler_flags", []).append(f"{sched}-{name}")
            else:
                self.f.dropped(where, f"{flag}: no equivalent for scheduler {sched}")
        if "scheduler_flags" in vs:
            sched = vs.get("scheduler", "wlc")
            ok = [f for f in dict.fromkeys(vs["scheduler_flags"]) if f.startswith(sched + "-")]
            if len(ok) != len(vs["scheduler_flags"]):
                self.f.dropped(node.where, f"scheduler flags not of {sched}: left out")
            vs["scheduler_flags"] = ok
            if not ok:
                vs.pop("scheduler_flags")
        vs.setdefault("scheduler", "wlc")
        vs.setdefault("forwarding", "nat")
        vs.setdefault("protocol", "tcp")
        for key in ("persistence_netmask",):
            if key in vs and not vs.get("persistence_timeout"):
                vs.pop(key)
        vs["#inhibit"] = inherit  # filled in as the block is read: the service's default
        return vs, servers

    def method(self, n: Node, t: Table) -> None:
        args = [a.lower() for a in n.args]
        kind = args[0] if args else ""
        if kind in ("nat", "dr"):
            t["forwarding"] = kind
        elif kind == "tun":
            t["forwarding"] = "tun"
            rest = args[1:]
            if rest[:1] == ["type"] and len(rest) >= 2:
                t["tunnel_type"] = rest[1]
                rest = rest[2:]
                gue_port = rest[:1] == ["port"] and len(rest) >= 2 and rest[1].isdigit()
                if t["tunnel_type"] == "gue" and gue_port:
                    t["tunnel_port"] = int(rest[1])
                    rest = rest[2:]
                for flag in rest:
                    if flag in ("nocsum", "csum", "remcsum"):
                        t["tunnel_flags"] = [flag]
                    else:
                        self.f.dropped(n.where, f"lvs_method TUN ... {flag}: not understood")
        else:
            self.f.dropped(n.where, f"{n.keyword} {kind}: not NAT, DR or TUN; nat used")

    def inherited(self, n: Node, into: Table) -> None:
        k = n.keyword
        if k in ("alpha", "inhibit_on_failure"):
            into[k] = (n.args[0].lower() if n.args else "yes") in ("yes", "on", "true")
        elif k == "virtualhost":
            v = self.word(n)
            if v is not None:
                into[k] = v
        elif k in ("retry", "nb_get_retry"):
            v = self.number(n, low=0, high=999)
            if v is not None:
                into["retry"] = v
        elif k == "delay_before_retry":
            v = self.number(n, low=0, high=86400, integer=False)
            if v is not None:
                into["#delay_before_retry"] = (n.where, v)
        elif k == "warmup":
            v = self.number(n, low=0, high=86400, integer=False)
            if v is not None:
                into["#warmup"] = v
        else:
            v = self.number(n, low=0.000001, high=86400, integer=False)
            if v is not None:
                into[k] = v

    def finish_rs(self, rs: Table, vs: Table) -> Table | None:
        node: Node = rs["#node"]
        inherit: Table = dict(rs["#inherit"])
        args = node.args
        if not args:
            self.f.dropped(node.where, "real_server without an address: dropped")
            return None
        port = args[1] if len(args) > 1 else None
        try:
            ip = ipaddress.ip_address(args[0])
            p = int(port) if port is not None else None
            if p is not None and not 0 <= p <= 65535:
                raise ValueError
        except ValueError:
            self.f.dropped(node.where, f"real_server {' '.join(args)}: not an address; dropped")
            return None
        out: Table = {}
        fwd = vs["forwarding"]
        checkers: list[Node] = []
        local: Table = {}
        for n in node.children():
            k = n.keyword
            if k == "weight":
                v = self.number(n, low=0, high=2147483647)
                if v is not None:
                    out["weight"] = v
            elif k in ("uthreshold", "lthreshold"):
                v = self.number(n, low=0, high=2147483647)
                if v is not None:
                    out["upper_threshold" if k[0] == "u" else "lower_threshold"] = v
            elif k == "lvs_method":
                m: Table = {}
                self.method(n, m)
                if "forwarding" in m:
                    out["forwarding"] = m["forwarding"]
                    if len(m) > 1:
                        self.f.dropped(
                            n.where, "tunnel options on a real server: the service's are used"
                        )
            elif k in _CHECKERS:
                checkers.append(n)
            elif k in (
                "SMTP_CHECK",
                "PING_CHECK",
                "BFD_CHECK",
                "FILE_CHECK",
            ):
                self.f.dropped(
                    n.where,
                    f"{k}: not supported; replace it with a script check (MISC_CHECK) doing "
                    "the same test",
                )
            elif k in ("notify_up", "notify_down"):
                cmd = self.command(n, k)
                if cmd is not None:
                    out[k] = cmd
            elif k in _INHERITED:
                self.inherited(n, local)
            elif k == "smtp_alert":
                flag = self.flag(n)
                if flag is not None:
                    out["#smtp_alert"] = flag
            else:
                self.unsupported(n, "real_server")
        inherit.update(local)
        if fwd in ("dr", "tun") or out.get("forwarding") in ("dr", "tun"):
            vport = int(vs["address"].rsplit(":", 1)[1]) if "address" in vs else None
            if vport and p is not None and p != vport:
                self.f.changed(
                    node.where,
                    f"real_server {ip} {p} with DR/TUN: no port translation there, so the "
                    f"kernel uses port {vport}; written as {vport}",
                )
                p = vport
        if "address" in vs:
            vip = ipaddress.ip_address(vs["address"].rsplit(":", 1)[0].strip("[]"))
            if vip.version != ip.version and (out.get("forwarding") or fwd) != "tun":
                self.f.dropped(node.where, f"real_server {ip}: other address family; dropped")
                return None
        if p is None:
            p = int(vs["address"].rsplit(":", 1)[1]) if "address" in vs else 0
        if p == 0 and "fwmark" in vs:
            text = str(ip)
        else:
            text = f"[{ip}]:{p}" if ip.version == 6 else f"{ip}:{p}"
        out = {"address": text, **{"weight": 1}, **out}
        if out.get("forwarding") == fwd:
            out.pop("forwarding")
        if out.get("lower_threshold", 0) > out.get("upper_threshold", 0):
            self.f.dropped(node.where, "lthreshold above uthreshold: lthreshold left out")
            out.pop("lower_threshold")
        out["#inhibit"] = inherit.get("inhibit_on_failure", False)
        found = [self.checker(c, inherit, ip, p) for c in checkers]
        checks = [c for c in found if c is not None]
        if len(checks) == 1:
            out["check"] = checks[0]
        elif checks:  # keepalived needs every checker up, as hadirector does
            out["check"] = checks
        self.where_of(out, node.where)
        return out

    def checker(self, node: Node, inherit: Table, ip: Any, port: int) -> Table | None:
        kind = _CHECKERS[node.keyword]
        opts = dict(inherit)
        check: Table = {"type": kind}
        urls: list[Table] = []
        for n in node.children():
            k = n.keyword
            if k in ("connect_port",):
                v = self.number(n, low=1, high=65535)
                if v is not None:
                    check["port"] = v
            elif k in ("connect_ip", "bindto") and kind != "script":
                v = self.word(n)
                if v is not None:
                    check[k] = v
            elif k in ("bind_port", "bind_if", "connect_fwmark", "fwmark"):
                self.f.dropped(n.where, f"{k}: not supported; checks use the default source")
            elif k in _CHECKER_INHERITED:
                self.inherited(n, opts)
            elif k == "url" and kind in ("http", "https"):
                urls.append(self.url(n))
            elif k == "payload" and kind == "udp":
                v = self.hex_word(n)
                if v is not None:
                    check["payload"] = v
            elif k == "require_reply" and kind == "udp":
                check["require_reply"] = True
                if n.args:
                    v = self.hex_word(n)
                    if v is not None:
                        check["expect_reply"] = v
            elif k == "type" and kind == "dns":
                v = (self.word(n) or "").upper()
                if v != "A":  # keepalived's default, and hadirector's
                    check["query_type"] = v
            elif k == "name" and kind == "dns":
                v = self.word(n)
                if v is not None and v != ".":
                    check["query_name"] = v
            elif k == "misc_path" and kind == "script":
                cmd: str | list[str] | None = self.command(n, "check script")
                if cmd is not None:
                    check["script"] = cmd
            elif k == "misc_timeout" and kind == "script":
                v = self.number(n, low=0.000001, high=86400, integer=False)
                if v is not None:
                    opts["connect_timeout"] = v
            elif k == "misc_dynamic" and kind == "script":
                if self.flag(n):
                    check["dynamic_weight"] = True
            elif k == "user" and kind == "script":
                self.f.changed(n.where, "user: the script runs as hadirector's user (root)")
            elif k == "http_protocol" and kind in ("http", "https"):
                v = self.word(n)
                if v == "1.1":
                    check["http_version"] = "1.1"
                elif v in ("1.0", "1.0C"):
                    self.f.note(
                        n.where,
                        f"http_protocol {v}: hadirector's HTTP/1.0 request (the default) says "
                        "Connection: close, as keepalived's 1.0C does",
                    )
                else:
                    self.f.dropped(n.where, f"http_protocol {v}: not 1.0, 1.0C or 1.1; 1.0 used")
            elif k in ("enable_sni", "fast_recovery", "timeout"):
                self.f.note(n.where, f"{k}: not converted (SNI = host)")
            else:
                self.unsupported(n, node.keyword)
        if kind == "script" and "script" not in check:
            self.f.dropped(node.where, "MISC_CHECK without a usable misc_path: check dropped")
            return None
        interval = opts.get("delay_loop", KA_DELAY_LOOP)
        default_timeout = KA_CONNECT_TIMEOUT if kind != "script" else interval
        timeout = opts.get("connect_timeout", default_timeout)
        if timeout >= interval:
            new = interval / 2
            self.f.changed(
                node.where,
                f"check timeout {timeout:g} s is not below the interval {interval:g} s "
                f"(hadirector needs it below): written as {new:g} s",
            )
            timeout = new
        retry = opts.get("retry", 0 if kind == "script" else KA_RETRY)
        retry_where, delay = opts.get("#delay_before_retry", (None, KA_DELAY_BEFORE_RETRY))
        if retry and delay < timeout:
            if retry_where is not None:
                self.f.changed(
                    retry_where,
                    f"delay_before_retry {delay:g}: hadirector needs it at least the check "
                    f"timeout: written as {timeout:g} s",
                )
            delay = timeout  # keepalived's default 1 s likewise (documented)
        if port == 0 and "port" not in check and kind != "script":
            self.f.dropped(
                node.where,
                f"{node.keyword}: the real server has no port; add connect_port (check dropped)",
            )
            return None
        check["interval"] = _seconds(interval)
        check["timeout"] = _seconds(timeout)
        check["rise"] = 1
        check["fall"] = min(retry + 1, 1000)
        if retry and delay != interval:  # at the interval: the cadence itself
            check["delay_before_retry"] = _seconds(delay)
        if "#warmup" in opts:
            check["warmup"] = _seconds(opts["#warmup"])
        if kind in ("http", "https"):
            self.http_urls(node, check, urls, opts.get("virtualhost"))
        if opts.get("alpha"):
            check["alpha"] = True
        return check

    def http_urls(self, node: Node, check: Table, urls: list[Table], vhost: str | None) -> None:
        """One url: the check's path, status and digest; several: ``urls`` (one host)."""
        hosts = [u.get("host", vhost) for u in urls] or [vhost]
        if any(h != hosts[0] for h in hosts[1:]):
            self.f.changed(
                node.where,
                f"url blocks with different virtualhost: hadirector sends one host per check; "
                f"{hosts[0]} used for all",
            )
        if hosts[0] is not None:
            check["host"] = hosts[0]
        entries: list[Table] = []
        for u in urls or [{}]:
            entry: Table = {
                "path": u.get("path", "/"),
                "expect_status": u.get("status", KA_HTTP_STATUS),
            }
            if "digest" in u:
                entry["digest"] = u["digest"]
            entries.append(entry)
        if len(entries) == 1:
            check.update(entries[0])
        else:
            check["urls"] = entries

    def hex_word(self, n: Node) -> str | None:
        text = "".join(n.args).lower()
        if len(text) % 2 or not re.fullmatch(r"[0-9a-f]+", text):
            self.f.dropped(n.where, f"{n.keyword} {text}: not hexadecimal bytes; left out")
            return None
        return text

    def url(self, node: Node) -> Table:
        out: Table = {}
        for n in node.children():
            if n.keyword == "path" and n.args:
                path = n.args[0]
                if not path.startswith("/") or " " in path:
                    self.f.changed(n.where, f"path {path!r}: not a /path; / used")
                else:
                    out["path"] = path
            elif n.keyword == "status_code":
                codes: list[int] = []
                for a in n.args:
                    m = re.fullmatch(r"(\d+)(?:-(\d+))?", a)
                    if m is None:
                        self.f.dropped(n.where, f"status_code {a}: not understood")
                        continue
                    low, high = int(m.group(1)), int(m.group(2) or m.group(1))
                    codes.extend(c for c in range(max(low, 100), min(high, 599) + 1))
                if codes:
                    out["status"] = sorted(set(codes))
            elif n.keyword == "digest" and n.args:
                if re.fullmatch(r"[0-9a-fA-F]{32}", n.args[0]):
                    out["digest"] = n.args[0].lower()
                else:
                    self.f.dropped(n.where, f"digest {n.args[0]}: not an MD5 digest; left out")
            elif n.keyword == "virtualhost" and n.args:
                out["host"] = n.args[0]
            elif n.keyword in (
                "regex",
                "regex_no_match",
                "regex_options",
                "regex_stack",
                "regex_min_offset",
                "regex_max_offset",
            ):
                self.f.dropped(n.where, f"{n.keyword}: not supported; use expect_body")
            else:
                self.unsupported(n, "url")
        return out

    def finish_health_action(self, vs: Table, node: Node) -> None:
        servers = vs["real_server"]
        default = bool(vs.pop("#inhibit").get("inhibit_on_failure", False))
        flags = [rs.pop("#inhibit") for rs in servers]
        checked = [f for f, rs in zip(flags, servers, strict=True) if "check" in rs] or flags
        if not checked:
            checked = [default]
        first = checked[0]
        if any(f != first for f in checked):
            self.f.changed(
                node.where,
                "inhibit_on_failure differs between real servers: hadirector has one "
                f"health_action per service; {'quiesce' if first else 'remove'} used for all",
            )
        vs["health_action"] = "quiesce" if first else "remove"

    # --- the document --------------------------------------------------------------------

    def document(self) -> Table:
        doc: Table = {}
        if self.globals:
            doc["global"] = self.globals
        for i in self.instances:
            i.pop("#track_where", None)
        if self.instances:
            doc["vrrp_instance"] = [_ordered(i, _INSTANCE_ORDER) for i in self.instances]
        if self.groups:
            doc["sync_group"] = self.groups
        if self.scripts:
            doc["track_script"] = self.scripts
        if self.files:
            doc["track_file"] = self.files
        if self.ipvs:
            doc["ipvs"] = self.ipvs
        if self.vs_group_tables:
            doc["virtual_server_group"] = self.vs_group_tables
        if self.services:
            doc["virtual_server"] = self.services
        mail = self.mail_table()
        if mail is not None:
            doc["alerts"] = {"email": mail}
        return doc


def _hoist_check(vs: Table) -> None:
    """One service-level ``check`` when every real server has the same one."""
    servers = vs["real_server"]
    checks = [rs.get("check") for rs in servers]
    if len(servers) >= 2 and checks[0] is not None and all(c == checks[0] for c in checks):
        vs["check"] = checks[0]
        for rs in servers:
            del rs["check"]


_INSTANCE_ORDER = (
    "name",
    "interface",
    "vrid",
    "priority",
    "version",
    "advert_interval",
    "preempt",
    "preempt_delay",
    "virtual_addresses",
    "unicast_src",
    "unicast_peers",
    "old_unicast_checksum",
    "auth_type",
    "auth_pass",
    "garp_interval",
    "garp_master_delay",
    "garp_master_repeat",
    "garp_master_refresh",
    "track_interfaces",
    "track_scripts",
    "track_files",
)


def _ordered(table: Table, order: tuple[str, ...]) -> Table:
    """The table with the keys named in ``order`` first, in that order (same objects)."""
    out = {k: table[k] for k in order if k in table}
    out.update((k, v) for k, v in table.items() if k not in out)
    table.clear()
    table.update(out)  # in place: `origin` knows the table by its id
    return table


_PATH_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)")


def _settle(doc: Table, origin: dict[int, Where], findings: Findings, source: str) -> None:
    """Drop what the configuration loader still refuses, one problem at a time, reported."""
    from hadirector.config.load import load_mapping

    for _ in range(1000):
        try:
            load_mapping(doc)
            return
        except ConfigError as exc:
            problem = exc.problems[0]
        steps: list[tuple[Any, Any]] = []  # (container, key or index)
        node: Any = doc
        where = Where(source)
        for part in problem.path.split("."):
            m = _PATH_PART.fullmatch(part)
            if m is None or not isinstance(node, dict) or m.group(1) not in node:
                break
            steps.append((node, m.group(1)))
            node = node[m.group(1)]
            for idx in re.findall(r"\[(\d+)\]", m.group(2)):
                if not isinstance(node, list) or int(idx) >= len(node):
                    break
                steps.append((node, int(idx)))
                node = node[int(idx)]
                where = origin.get(id(node), where)
        # the deepest list item, else the deepest key (the parent table when it is missing)
        target = next((s for s in reversed(steps) if isinstance(s[1], int)), None)
        if target is None:
            if len(steps) >= 2 and problem.path.count(".") >= len(steps):
                target = steps[-1]
            elif steps:
                target = steps[-1] if len(steps) == 1 else steps[-2]
            else:
                target = None
        if target is None:
            findings.dropped(where, f"hadirector refuses the result ({problem}): nothing written")
            doc.clear()
            return
        container, key = target
        what = f"{problem.path}: {problem.message}"
        findings.dropped(where, f"hadirector refuses {what}; that part is left out")
        del container[key]
        _prune(doc)
    raise AssertionError("the conversion does not settle")  # pragma: no cover


def _prune(doc: Table) -> None:
    for key in list(doc):
        empty_list = isinstance(doc[key], list) and key in tomlout.ARRAY_TABLES
        if (empty_list or isinstance(doc[key], dict)) and not doc[key]:
            del doc[key]


def convert(nodes: tuple[Node, ...], findings: Findings, source: str) -> str:
    """The TOML for a parsed keepalived.conf; findings are added to ``findings``."""
    conv = _Converter(findings)
    conv.run(nodes)
    doc = conv.document()
    _settle(doc, conv.origin, findings, source)
    header = [
        f"Converted from keepalived configuration {source} by `hadirector import keepalived`.",
        "keepalived's defaults are written out where hadirector's differ; what could not be",
        "converted was reported on stderr.",
    ]
    return tomlout.dumps(doc, header)
