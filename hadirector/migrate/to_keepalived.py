"""hadirector's configuration -> keepalived.conf, for a way back (``hadirector export keepalived``).

Everything keepalived can express is written, explicitly (version, priority, intervals,
check timings), so that ``hadirector import keepalived`` of the result gives the same
configuration back for that subset. What keepalived cannot express is a finding at the
TOML line of its key (or the key path): HMAC authentication, ``accept_from``, the v3
checksum without pseudo-header, FULLNAT, fwmark ``match`` rules, ``rise`` other than 1,
``expect_body``, ``tls_verify``, connection sync led by a sync group, STARTTLS and SMTP
login, webhooks and Alertmanager.

keepalived ignores tracking weights inside a sync group; when a member has weights,
``sync_group_tracking_weight`` is written so keepalived keeps them, as hadirector does.

Pure: the TOML text comes in, the keepalived.conf text goes out (``export_path`` alone
reads the file).
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path

from hadirector.config.load import load_text
from hadirector.config.schema import (
    Config,
    HealthCheck,
    NotifyScripts,
    RealServer,
    SyncGroup,
    VirtualServer,
    VirtualServerGroup,
    VrrpInstance,
    default_state_dir,
)
from hadirector.migrate.report import Findings, Where

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.]+)\s*\]\]?")
_KEY = re.compile(r"^\s*([A-Za-z0-9_]+)\s*=")


def key_lines(text: str) -> dict[str, int]:
    """The line of each table and key, by key path in index form (``vrrp_instance[0].vrid``)."""
    lines: dict[str, int] = {}
    counts: dict[str, int] = {}
    current = ""
    for n, raw in enumerate(text.splitlines(), 1):
        m = _HEADER.match(raw)
        if m:
            parts = m.group(2).split(".")
            if m.group(1) == "[[":
                # the parent path is that of the latest open array table
                parent = ""
                for p in parts[:-1]:
                    base = f"{parent}.{p}" if parent else p
                    idx = counts.get(base, 0) - 1
                    parent = f"{base}[{idx}]" if idx >= 0 else base
                base = f"{parent}.{parts[-1]}" if parent else parts[-1]
                counts[base] = counts.get(base, 0) + 1
                # a new parent item restarts its children's count
                for k in list(counts):
                    if k.startswith(f"{base}[{counts[base] - 1}]."):
                        del counts[k]
                current = f"{base}[{counts[base] - 1}]"
            else:
                parent = ""
                for p in parts:
                    base = f"{parent}.{p}" if parent else p
                    idx = counts.get(base, 0) - 1
                    parent = f"{base}[{idx}]" if idx >= 0 and p != parts[-1] else base
                current = parent
            lines.setdefault(current, n)
            continue
        key = _KEY.match(raw)
        if key:
            lines.setdefault(f"{current}.{key.group(1)}" if current else key.group(1), n)
    return lines


class _Exporter:
    def __init__(self, config: Config, source: str, lines: dict[str, int], findings: Findings):
        self.c = config
        self.source = source
        self.lines = lines
        self.f = findings
        self.out: list[str] = []
        self.group_inet6 = False  # the group being written has IPv6 marks

    def where(self, path: str) -> Where:
        # a real server's check may come from its service's check table
        own = re.match(r"^(.*\.real_server\[\d+\]\.check)", path)
        if own is not None and own.group(1) not in self.lines:
            path = re.sub(r"\.real_server\[\d+\]\.check", ".check", path)
        while path:
            if path in self.lines:
                return Where(self.source, self.lines[path])
            path = path.rsplit(".", 1)[0] if "." in path else ""
        return Where(self.source)

    def dropped(self, path: str, message: str) -> None:
        self.f.dropped(self.where(path), f"{path}: {message}")

    def changed(self, path: str, message: str) -> None:
        self.f.changed(self.where(path), f"{path}: {message}")

    def note(self, path: str, message: str) -> None:
        self.f.note(self.where(path), f"{path}: {message}")

    def w(self, depth: int, text: str) -> None:
        self.out.append("    " * depth + text)

    # --- the file -----------------------------------------------------------------------

    def run(self) -> str:
        self.global_defs()
        for i, ts in enumerate(self.c.track_scripts):
            self.track_script(i, ts)
        for tf in self.c.track_files:
            self.w(0, f"vrrp_track_file {tf.name} {{")
            self.w(1, f"file {_quote(tf.path)}")
            self.w(1, f"weight {tf.weight}")
            self.w(0, "}")
            self.w(0, "")
        for i, inst in enumerate(self.c.vrrp_instances):
            self.instance(i, inst)
        for i, group in enumerate(self.c.sync_groups):
            self.sync_group(i, group)
        for vs_group in self.c.virtual_server_groups:
            self.vs_group(vs_group)
        written: set[str] = set()
        for i, vs in enumerate(self.c.virtual_servers):
            if vs.group is not None:
                if vs.group in written:
                    continue
                written.add(vs.group)
                members = [m for m in self.c.virtual_servers if m.group == vs.group]
                # the protocol of its addresses, the family of its marks
                vs = next((m for m in members if m.address is not None), vs)
                marked = next((m for m in members if m.fwmark is not None), None)
                if marked is not None and marked.family == 6:
                    self.group_inet6 = True
            self.virtual_server(i, vs)
            self.group_inet6 = False
        while self.out and self.out[-1] == "":
            self.out.pop()
        return "\n".join(self.out) + "\n"

    def global_defs(self) -> None:
        g = self.c.global_
        body: list[str] = []
        if g.router_id is not None:
            body.append(f"router_id {_word(g.router_id)}")
        c = self.c
        notifies: list[NotifyScripts] = [i.notify for i in c.vrrp_instances]
        notifies += [grp.notify for grp in c.sync_groups]
        scripts = (
            bool(c.track_scripts)
            or any(n != NotifyScripts() for n in notifies)
            or any(
                rs.check is not None and rs.check.type == "script"
                for vs in c.virtual_servers
                for rs in vs.real_servers
            )
        )
        if g.script_user is not None:
            suffix = f" {g.script_group}" if g.script_group is not None else ""
            body.append(f"script_user {_word(g.script_user)}{suffix}")
        elif scripts:
            # hadirector's default (the agent's user: root under a root agent); keepalived's
            # would be the user keepalived_script where it exists
            body.append("script_user root")
        if g.script_security:
            body.append("enable_script_security")
        if g.realtime_priority:
            body.append(f"vrrp_rt_priority {g.realtime_priority}")
        intervals = {(i.family, i.garp_interval_s) for i in self.c.vrrp_instances}
        for family, name in ((4, "vrrp_garp_interval"), (6, "vrrp_gna_interval")):
            values = sorted({v for fam, v in intervals if fam == family})
            if not values or values == [0]:
                continue  # 0 is keepalived's default, and it refuses 0 written out
            chosen = next(v for v in values if v != 0)
            body.append(f"{name} {_num(chosen)}")
            if len(values) > 1:
                self.changed(
                    "vrrp_instance",
                    f"garp_interval differs between IPv{family} instances: keepalived has "
                    f"one ({name}); {_num(chosen)} used",
                )
        ipvs = self.c.ipvs
        timeouts = [
            f"{k} {v}"
            for k, v in (
                ("tcp", ipvs.timeout_tcp_s),
                ("tcpfin", ipvs.timeout_tcpfin_s),
                ("udp", ipvs.timeout_udp_s),
            )
            if v is not None
        ]
        if timeouts:
            body.append("lvs_timeouts " + " ".join(timeouts))
        if ipvs.sync is not None:
            s = ipvs.sync
            inst = s.instance
            if inst is None and s.group is not None:
                group = next(g for g in self.c.sync_groups if g.name == s.group)
                inst = group.instances[0]
                self.changed(
                    "ipvs.sync.group",
                    f"keepalived's sync daemon follows one instance, not a group: {inst} used",
                )
            parts = [f"lvs_sync_daemon {s.interface}"]
            if inst is not None:
                parts.append(f"inst {inst}")
            parts.append(f"id {s.syncid}")
            if s.maxlen:
                parts.append(f"maxlen {s.maxlen}")
            parts.append(f"port {s.mcast_port} ttl {s.mcast_ttl} group {s.mcast_group}")
            body.append(" ".join(parts))
        if ipvs.own_whole_table:
            self.dropped(
                "ipvs.own_whole_table",
                "keepalived has no equivalent (lvs_flush only empties the table at start)",
            )
        if ipvs.reconcile_interval_s != 10.0:
            self.note("ipvs.reconcile_interval", "keepalived does not repair IPVS drift")
        defaults = replace(type(g)(), state_dir=default_state_dir(g.control_socket))
        for key, attr in (
            ("log_level", "log_level"),
            ("control_socket", "control_socket"),
            ("notify_timeout", "notify_timeout_s"),
            ("state_dir", "state_dir"),
            ("metrics_listen", "metrics_listen"),
            ("status_group", "status_group"),
        ):
            if getattr(g, attr) != getattr(defaults, attr):
                self.note(f"global.{key}", "hadirector's own; keepalived has no equivalent")
        body += self.mail()
        if body:
            self.w(0, "global_defs {")
            for line in body:
                self.w(1, line)
            self.w(0, "}")
            self.w(0, "")

    def mail(self) -> list[str]:
        """``[alerts.email]`` as global_defs' notification_email, smtp_server, ...; each
        object's smtp_alert is written on it (keepalived's defaults differ)."""
        alerts = self.c.alerts
        for key, dest in (("webhook", alerts.webhook), ("alertmanager", alerts.alertmanager)):
            if dest is not None:
                self.dropped(f"alerts.{key}", "keepalived has no equivalent: use a notify script")
        e = alerts.email
        if e is None:
            return []
        lines = ["notification_email {", *(f"    {a}" for a in e.to), "}"]
        lines.append(f"notification_email_from {e.from_}")
        lines.append(f"smtp_server {e.server_host.strip('[]')} {e.server_port}")
        timeout = max(1, math.ceil(e.timeout_s))
        if timeout != e.timeout_s:
            self.changed(
                "alerts.email.timeout",
                f"keepalived takes whole seconds (smtp_connect_timeout): {e.timeout_s:g} "
                f"written as {timeout}",
            )
        lines.append(f"smtp_connect_timeout {timeout}")
        if e.starttls:
            self.dropped(
                "alerts.email.starttls",
                "keepalived speaks plain SMTP (no STARTTLS): its mail goes unencrypted; point "
                "smtp_server at a relay that accepts it",
            )
        if e.ca_file is not None:
            self.dropped("alerts.email.ca_file", "keepalived has no STARTTLS, hence no CA file")
        if e.username is not None:
            self.dropped(
                "alerts.email.username",
                "keepalived has no SMTP login (AUTH): the relay must accept mail without one",
            )
        return lines

    def smtp_alert(self, depth: int, on: bool) -> None:
        if self.c.alerts.email is not None:
            self.w(depth, f"smtp_alert {'true' if on else 'false'}")

    def track_script(self, i: int, ts: object) -> None:
        from hadirector.config.schema import TrackScript

        assert isinstance(ts, TrackScript)
        path = f"track_script[{i}]"
        self.w(0, f"vrrp_script {ts.name} {{")
        self.w(1, f"script {_command(ts.script)}")
        for key, value in (("interval", ts.interval_s), ("timeout", ts.timeout_s)):
            whole = max(1, math.ceil(value))
            if whole != value:
                self.changed(
                    f"{path}.{key}", f"keepalived takes whole seconds: {value:g} written as {whole}"
                )
            self.w(1, f"{key} {whole}")
        self.w(1, f"weight {ts.weight}")
        self.w(1, f"rise {ts.rise}")
        self.w(1, f"fall {ts.fall}")
        self.w(0, "}")
        self.w(0, "")

    # --- VRRP -----------------------------------------------------------------------------

    def instance(self, i: int, inst: VrrpInstance) -> None:
        path = f"vrrp_instance[{i}]"
        self.w(0, f"vrrp_instance {inst.name} {{")
        self.w(1, f"state {'MASTER' if inst.priority == 255 else 'BACKUP'}")
        self.w(1, f"interface {inst.interface}")
        self.w(1, f"virtual_router_id {inst.vrid}")
        self.w(1, f"priority {inst.priority}")
        self.w(1, f"version {inst.version}")
        self.w(1, f"advert_int {_num(inst.advert_interval_cs / 100)}")
        if not inst.preempt and inst.priority == 255:
            self.changed(
                f"{path}.preempt",
                "keepalived refuses nopreempt with priority 255 (the owner always takes over)",
            )
        elif not inst.preempt:
            self.w(1, "nopreempt")
        elif inst.preempt_delay_s:
            self.w(1, f"preempt_delay {_num(inst.preempt_delay_s)}")
        if inst.unicast_peers:
            if inst.unicast_src is not None:
                self.w(1, f"unicast_src_ip {inst.unicast_src}")
            self.w(1, "unicast_peer {")
            for peer in inst.unicast_peers:
                self.w(2, str(peer))
            self.w(1, "}")
            self.w(1, "check_unicast_src")
            if set(inst.accept_from) != set(inst.unicast_peers):
                self.dropped(
                    f"{path}.accept_from",
                    "keepalived accepts unicast adverts from its peers only "
                    "(check_unicast_src); other accepted sources are not expressible",
                )
            if inst.old_unicast_checksum:
                self.w(1, "old_unicast_checksum")
        elif inst.accept_from:
            self.dropped(
                f"{path}.accept_from",
                "keepalived cannot restrict multicast adverts by source: it accepts any",
            )
        if not inst.v3_checksum_pseudo_header:
            self.dropped(
                f"{path}.v3_checksum_pseudo_header",
                "keepalived always includes the pseudo-header: this peer will not talk to it",
            )
        if inst.hmac_key_file is not None:
            self.dropped(
                f"{path}.hmac_key_file",
                "keepalived has no HMAC authentication: the exported instance sends and accepts "
                "unauthenticated adverts (its peer must drop HMAC as well)",
            )
        if inst.auth_type == "pass" and inst.auth_pass is not None:
            self.w(1, "authentication {")
            self.w(2, "auth_type PASS")
            self.w(2, f"auth_pass {_quote(inst.auth_pass)}")
            self.w(1, "}")
        if inst.version == 3 and inst.max_adopted_interval_cs != min(
            4 * inst.advert_interval_cs, 4095
        ):
            self.changed(
                f"{path}.max_adopted_interval",
                "keepalived adopts whatever interval the master advertises",
            )
        if inst.handover_hold_s != 0.1:
            self.note(f"{path}.handover_hold", "keepalived has no make-before-break hold")
        self.w(1, "virtual_ipaddress {")
        for vip in inst.virtual_addresses:
            words = [str(vip.interface)]
            if vip.dev != inst.interface:
                words.append(f"dev {vip.dev}")
            if vip.label is not None:
                words.append(f"label {vip.label}")
            self.w(2, " ".join(words))
        self.w(1, "}")
        self.w(1, f"garp_master_delay {_whole(inst.garp_master_delay_s, path, self)}")
        self.w(1, f"garp_master_repeat {inst.garp_master_repeat}")
        if inst.garp_master_refresh_s:
            refresh = _whole(inst.garp_master_refresh_s, path, self)
            self.w(1, f"garp_master_refresh {refresh}")
        for key, refs in (
            ("track_interface", inst.track_interfaces),
            ("track_script", inst.track_scripts),
            ("track_file", inst.track_files),
        ):
            if key == "track_interface":
                for ref in refs:
                    if ref.name == inst.interface and ref.weight != 0:
                        self.changed(
                            f"{path}.track_interfaces",
                            f"{ref.name} weight {ref.weight}: keepalived does not track its "
                            "own interface by weight (it is always down = FAULT)",
                        )
                refs = tuple(r for r in refs if r.name != inst.interface)
            if refs:
                self.w(1, f"{key} {{")
                for ref in refs:
                    self.w(2, f"{ref.name} weight {ref.weight}")
                self.w(1, "}")
        self.smtp_alert(1, inst.smtp_alert)
        self.notify(1, inst.notify)
        self.w(0, "}")
        self.w(0, "")

    def notify(self, depth: int, n: NotifyScripts) -> None:
        for key, argv in (
            ("notify_master", n.master),
            ("notify_backup", n.backup),
            ("notify_fault", n.fault),
            ("notify_stop", n.stop),
            ("notify", n.notify),
        ):
            if argv is not None:
                self.w(depth, f"{key} {_command(argv)}")

    def sync_group(self, i: int, group: SyncGroup) -> None:
        self.w(0, f"vrrp_sync_group {group.name} {{")
        self.w(1, "group {")
        for name in group.instances:
            self.w(2, name)
        self.w(1, "}")
        weighted = any(
            ref.weight != 0
            for name in group.instances
            for inst in [self.c.instance(name)]
            if inst is not None
            for ref in (*inst.track_interfaces, *inst.track_scripts, *inst.track_files)
        )
        if weighted:
            self.w(1, "sync_group_tracking_weight")
            self.note(
                f"sync_group[{i}]",
                "members track with weights: sync_group_tracking_weight written, or keepalived "
                "would ignore them",
            )
        self.smtp_alert(1, group.smtp_alert)
        self.notify(1, group.notify)
        self.w(0, "}")
        self.w(0, "")

    # --- IPVS ---------------------------------------------------------------------------

    def vs_group(self, group: VirtualServerGroup) -> None:
        self.w(0, f"virtual_server_group {group.name} {{")
        for address in group.addresses:
            host, port = address.rsplit(":", 1)
            self.w(1, f"{host.strip('[]')} {port}")
        for mark in group.fwmarks:
            self.w(1, f"fwmark {mark}")
        self.w(0, "}")
        self.w(0, "")

    def virtual_server(self, i: int, vs: VirtualServer) -> None:
        path = f"virtual_server[{i}]"
        if vs.group is not None:
            self.w(0, f"virtual_server group {vs.group} {{")
            if vs.address is not None:
                self.w(1, f"protocol {(vs.protocol or 'tcp').upper()}")
            if self.group_inet6:
                self.w(1, "ip_family inet6")
        elif vs.fwmark is not None:
            self.w(0, f"virtual_server fwmark {vs.fwmark} {{")
            if vs.family == 6:
                self.w(1, "ip_family inet6")
        else:
            self.w(0, f"virtual_server {vs.address} {vs.port} {{")
            self.w(1, f"protocol {(vs.protocol or 'tcp').upper()}")
        self.w(1, f"lvs_sched {vs.scheduler}")
        for flag in vs.scheduler_flags:
            self.w(1, flag)
        if vs.one_packet:
            self.w(1, "ops")
        self.w(1, f"lvs_method {self.method(path, vs.forwarding, vs)}")
        if vs.persistent:
            self.w(1, f"persistence_timeout {vs.persistence_timeout_s}")
            full = 32 if vs.family == 4 else 128
            if vs.persistence_netmask != full:
                mask = vs.persistence_netmask_dotted or str(vs.persistence_netmask)
                self.w(1, f"persistence_granularity {mask}")
        if vs.match is not None:
            self.dropped(
                f"{path}.match",
                "keepalived does not mark traffic: add the firewall rule that sets mark "
                f"{vs.fwmark} yourself",
            )
        if vs.health_action == "quiesce":
            self.w(1, "inhibit_on_failure")  # the default of every real server
        self.pool(path, vs)
        for j, rs in enumerate(vs.real_servers):
            self.real_server(f"{path}.real_server[{j}]", vs, rs)
        self.w(0, "}")
        self.w(0, "")

    def pool(self, path: str, vs: VirtualServer) -> None:
        """quorum, hysteresis, their commands and the sorry server (same meanings)."""
        if vs.quorum != 1:
            self.w(1, f"quorum {vs.quorum}")
        if vs.hysteresis:
            self.w(1, f"hysteresis {vs.hysteresis}")
        if vs.quorum_up is not None:
            self.w(1, f"quorum_up {_command(vs.quorum_up)}")
        if vs.quorum_down is not None:
            self.w(1, f"quorum_down {_command(vs.quorum_down)}")
        sorry = vs.sorry_server
        if sorry is None:
            return
        self.w(1, f"sorry_server {sorry.address} {sorry.port if sorry.port is not None else 0}")
        if sorry.forwarding != vs.forwarding:
            self.w(1, f"sorry_server_lvs_method {self.method(path, sorry.forwarding, vs)}")
        if sorry.inhibit:
            self.w(1, "sorry_server_inhibit")
        if sorry.weight != 1:
            self.dropped(
                f"{path}.sorry_server.weight",
                "keepalived gives its sorry server weight 1: left out",
            )

    def method(self, path: str, fwd: str, vs: VirtualServer) -> str:
        if fwd == "fullnat":
            self.dropped(
                f"{path}.forwarding",
                "keepalived has no FULLNAT: written as NAT; add the SNAT rule (and "
                "net.ipv4.vs.conntrack=1) yourself",
            )
            return "NAT"
        if fwd != "tun":
            return fwd.upper()
        words = ["TUN", "type", vs.tunnel_type]
        if vs.tunnel_type == "gue" and vs.tunnel_port is not None:
            words += ["port", str(vs.tunnel_port)]
        words += list(vs.tunnel_flags)
        return " ".join(words)

    def real_server(self, path: str, vs: VirtualServer, rs: RealServer) -> None:
        port = rs.port if rs.port is not None else 0
        self.w(1, f"real_server {rs.address} {port} {{")
        self.w(2, f"weight {rs.weight}")
        if rs.upper_threshold:
            self.w(2, f"uthreshold {rs.upper_threshold}")
        if rs.lower_threshold:
            self.w(2, f"lthreshold {rs.lower_threshold}")
        if rs.forwarding != vs.forwarding:
            self.w(2, f"lvs_method {self.method(path, rs.forwarding, vs)}")
        self.smtp_alert(2, vs.smtp_alert)  # keepalived's is per real server
        if rs.notify_up is not None:
            self.w(2, f"notify_up {_command(rs.notify_up)}")
        if rs.notify_down is not None:
            self.w(2, f"notify_down {_command(rs.notify_down)}")
        checks = (rs.check, *rs.extra_checks) if rs.check is not None else ()
        for k, check in enumerate(checks):
            self.check(path + (".check" if len(checks) == 1 else f".check[{k}]"), check)
        self.w(1, "}")

    def check(self, path: str, c: HealthCheck) -> None:
        name = {
            "tcp": "TCP_CHECK",
            "http": "HTTP_GET",
            "https": "SSL_GET",
            "script": "MISC_CHECK",
            "udp": "UDP_CHECK",
            "dns": "DNS_CHECK",
        }
        self.w(2, f"{name[c.type]} {{")
        if c.connect_ip is not None:
            self.w(3, f"connect_ip {c.connect_ip}")
        if c.port is not None and c.type != "script":
            self.w(3, f"connect_port {c.port}")
        if c.bindto is not None:
            self.w(3, f"bindto {c.bindto}")
        if c.warmup_s is not None:
            self.w(3, f"warmup {_num(c.warmup_s)}")
        self.w(3, f"delay_loop {_num(c.interval_s)}")
        if c.type == "script":
            assert c.script is not None
            self.w(3, f"misc_path {_command(c.script)}")
            self.w(3, f"misc_timeout {max(1, math.ceil(c.timeout_s))}")
            if math.ceil(c.timeout_s) != c.timeout_s:
                self.changed(f"{path}.timeout", "misc_timeout takes whole seconds: rounded up")
            if c.dynamic_weight:
                self.w(3, "misc_dynamic")
        else:
            self.w(3, f"connect_timeout {_num(c.timeout_s)}")
        self.w(3, f"retry {c.fall - 1}")
        retry_s = c.delay_before_retry_s if c.delay_before_retry_s is not None else c.interval_s
        self.w(3, f"delay_before_retry {_num(retry_s)}")
        if c.alpha:
            self.w(3, "alpha")
        if c.rise != 1:
            self.changed(
                f"{path}.rise",
                f"keepalived brings a server back after one success, not {c.rise}",
            )
        if c.type in ("http", "https"):
            if c.host is not None:
                self.w(3, f"virtualhost {_word(c.host)}")
            if c.http_version != "1.0":
                self.w(3, f"http_protocol {c.http_version}")
            for u in c.http_urls:
                self.w(3, "url {")
                self.w(4, f"path {_word(u.path)}")
                self.w(4, "status_code " + " ".join(_ranges(u.expect_status)))
                if u.digest is not None:
                    self.w(4, f"digest {u.digest}")
                self.w(3, "}")
                if u.expect_body is not None:
                    self.dropped(
                        f"{path}.expect_body",
                        "keepalived compares a digest of the whole body, not a substring: "
                        "add digest by hand (genhash) if you need it",
                    )
                if u.expect_body_regex is not None:
                    self.dropped(
                        f"{path}.expect_body_regex",
                        "keepalived's url regex is not written: add it by hand if you need it",
                    )
            if c.tls_verify:
                self.dropped(f"{path}.tls_verify", "keepalived's SSL_GET does not verify")
        if c.type == "udp":
            if c.payload is not None:
                self.w(3, f"payload {c.payload}")
            if c.require_reply or c.expect_reply is not None:
                reply = f" {c.expect_reply}" if c.expect_reply is not None else ""
                self.w(3, f"require_reply{reply}")
        if c.type == "dns":
            self.w(3, f"type {c.query_type}")
            self.w(3, f"name {c.query_name}")
            if c.expect_rcode != "NOERROR" or c.expect_answer is not None:
                self.dropped(
                    f"{path}.expect_answer",
                    "keepalived's DNS_CHECK only wants an answer: expect_rcode / "
                    "expect_answer left out",
                )
        self.w(2, "}")


def _num(v: float) -> str:
    return str(int(v)) if v == int(v) else f"{v:g}"


def _whole(v: float, path: str, exporter: _Exporter) -> str:
    if v != int(v):
        exporter.changed(path, f"keepalived takes whole seconds for GARP timers: {v:g} rounded")
    return str(round(v))


def _word(text: str) -> str:
    return text if text and not re.search(r'[\s"#!{}]', text) else _quote(text)


def _quote(text: str) -> str:
    return '"' + text.replace('"', "'") + '"'


def _command(argv: tuple[str, ...]) -> str:
    """argv as keepalived's script string: words split at spaces, single quotes group."""
    words = []
    for a in argv:
        if a and not re.search(r"[\s'\"#!{}\\]", a):
            words.append(a)
        else:
            words.append("'" + a.replace("'", "'\\''") + "'")
    return '"' + " ".join(words) + '"'


def _ranges(codes: tuple[int, ...]) -> list[str]:
    out: list[str] = []
    values = sorted(set(codes))
    start = prev = values[0]
    for v in [*values[1:], None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return out


def export_text(text: str, source: str, findings: Findings) -> str:
    """keepalived.conf for the TOML ``text`` (raises ConfigError when it does not load)."""
    config = load_text(text, source)
    exporter = _Exporter(config, source, key_lines(text), findings)
    header = [
        f"# Exported from hadirector configuration {source} by `hadirector export keepalived`.",
        "# What keepalived cannot express was reported on stderr.",
        "",
        "",
    ]
    return "\n".join(header) + exporter.run()


def export_path(path: str, findings: Findings) -> str:
    return export_text(Path(path).read_text(encoding="utf-8"), path, findings)
