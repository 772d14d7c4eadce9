"""The VRRP sections of the configuration: ``[[vrrp_instance]]`` (with its virtual
addresses and tracking references), ``[[sync_group]]``, ``[[track_script]]`` and
``[[track_file]]``.

Each table is checked on its own, then each object with itself (address family, version
rules), and ``check_instances`` checks the instances against each other; references to
track scripts and files are resolved here. Built on ``config.validate``; pure.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, cast

from hadirector.config.schema import (
    AUTH_TYPES,
    MAX_V3_INTERVAL_CS,
    Family,
    IPAddress,
    IPInterface,
    NotifyScripts,
    SyncGroup,
    TrackFile,
    TrackRef,
    TrackScript,
    VirtualAddress,
    VrrpInstance,
)
from hadirector.config.validate import (
    IFNAMSIZ,
    Check,
    Checker,
    Defaults,
    Table,
    got,
    parse_ip,
    quote,
    show,
    toml_keys,
)

__all__ = [
    "FILE_KEYS",
    "GROUP_KEYS",
    "INSTANCE_KEYS",
    "NOTIFY_KEYS",
    "SCRIPT_KEYS",
    "TRACK_REF_KEYS",
    "VIP_KEYS",
    "VrrpSections",
]

NOTIFY_KEYS: Final = ("notify", "notify_master", "notify_backup", "notify_fault", "notify_stop")
INSTANCE_KEYS: Final = toml_keys(VrrpInstance, {"notify": NOTIFY_KEYS})
VIP_KEYS: Final = toml_keys(VirtualAddress, {"interface": "address"})
TRACK_REF_KEYS: Final = toml_keys(TrackRef)
GROUP_KEYS: Final = toml_keys(SyncGroup, {"notify": NOTIFY_KEYS})
SCRIPT_KEYS: Final = toml_keys(TrackScript)
FILE_KEYS: Final = toml_keys(TrackFile)

INSTANCE: Final = Defaults(VrrpInstance)
SCRIPT: Final = Defaults(TrackScript)
FILE: Final = Defaults(TrackFile)


class VrrpSections(Checker):
    """The checks and builders of the VRRP sections."""

    def notify(self, t: Table) -> NotifyScripts:
        return NotifyScripts(*(t.maybe(key, self.argv) for key in NOTIFY_KEYS))

    def track_script(
        self, data: Mapping[str, object] | None, path: str
    ) -> tuple[TrackScript | None, str | None]:
        if data is None:
            return None, None
        t = Table(self, data, path, SCRIPT_KEYS)
        name = t.req("name", self.name())
        script = t.req("script", self.argv)
        interval_s = t.opt("interval", self.seconds(0, 86400, lo_open=True), SCRIPT.interval_s)
        timeout_s = t.opt("timeout", self.seconds(0, 86400, lo_open=True), interval_s)
        weight = t.opt("weight", self.integer(-253, 253), SCRIPT.weight)
        rise = t.opt("rise", self.integer(1, 1000), SCRIPT.rise)
        fall = t.opt("fall", self.integer(1, 1000), SCRIPT.fall)
        if name is None or script is None:
            return None, name
        return TrackScript(name, script, interval_s, timeout_s, weight, rise, fall), name

    def track_file(
        self, data: Mapping[str, object] | None, path: str
    ) -> tuple[TrackFile | None, str | None]:
        if data is None:
            return None, None
        t = Table(self, data, path, FILE_KEYS)
        name = t.req("name", self.name())
        file_path = t.req("path", self.abspath())
        weight = t.opt("weight", self.integer(-253, 253), FILE.weight)
        if name is None or file_path is None:
            return None, name
        return TrackFile(name, file_path, weight), name

    def instance(
        self,
        data: Mapping[str, object] | None,
        path: str,
        scripts: Mapping[str, TrackScript | TrackFile | None],
        files: Mapping[str, TrackScript | TrackFile | None],
    ) -> tuple[VrrpInstance | None, str | None]:
        if data is None:
            return None, None
        t = Table(self, data, path, INSTANCE_KEYS)
        name = t.req("name", self.name())
        interface = t.req("interface", self.ifname())
        vrid = t.req("vrid", self.integer(1, 255))
        priority = t.req("priority", self.integer(1, 255))
        version = cast(Literal[2, 3], t.opt("version", self.version, INSTANCE.version))
        version_ok = not t.bad("version")
        preempt = t.opt("preempt", self.boolean(), INSTANCE.preempt)
        preempt_delay_s = t.opt("preempt_delay", self.seconds(0, 1000), INSTANCE.preempt_delay_s)
        if not preempt and preempt_delay_s > 0 and not t.bad("preempt"):
            self.add(t.at("preempt_delay"), "has no effect with preempt = false")

        # Addresses first: they decide the family every other address must have.
        vips = self.virtual_addresses(t, interface)
        families = {v.family for v in vips}
        family: Family | None = None
        if len(families) > 1:
            self.add(t.at("virtual_addresses"), "must all be one family (IPv4 or IPv6), got both")
        elif families:
            family = vips[0].family
        if family == 6 and version == 2 and version_ok:
            self.add(t.at("version"), "version 2 is IPv4 only; these virtual_addresses are IPv6")

        # Intervals.
        if version_ok:
            advert_cs = t.opt(
                "advert_interval", self.interval(version), INSTANCE.advert_interval_cs
            )
        else:  # the range depends on the version: only the type can be checked
            t.maybe("advert_interval", self.number)
            advert_cs = INSTANCE.advert_interval_cs
        if t.has("max_adopted_interval") and version_ok and version == 2:
            self.add(t.at("max_adopted_interval"), "applies to version 3 only")
            max_adopted_cs = advert_cs
        elif version == 2:
            max_adopted_cs = advert_cs
        else:
            default_max = min(4 * advert_cs, MAX_V3_INTERVAL_CS)
            max_adopted_cs = t.opt("max_adopted_interval", self.interval(3), default_max)
            if (
                t.has("max_adopted_interval")
                and not t.bad("max_adopted_interval")
                and not t.bad("advert_interval")
                and max_adopted_cs < advert_cs
            ):
                self.add(
                    t.at("max_adopted_interval"),
                    f"must be >= advert_interval ({_cs(advert_cs)}), got {_cs(max_adopted_cs)}",
                )

        # Unicast and source filtering.
        def fam_ip(value: object, p: str) -> IPAddress | None:
            return self.ip_of_family(value, p, family, "the virtual_addresses")

        unicast_src: IPAddress | None = t.address("unicast_src", fam_ip)
        peers: tuple[IPAddress, ...] = t.many("unicast_peers", fam_ip)
        if unicast_src is not None and unicast_src in peers:
            raw_peers = cast(list[object], t.raw("unicast_peers"))
            idx = next(
                i
                for i, r in enumerate(raw_peers)
                if isinstance(r, str) and parse_ip(r) == unicast_src
            )
            self.add(f"{t.at('unicast_peers')}[{idx}]", "must not be our own unicast_src")
        accept_from: tuple[IPAddress, ...] = t.many("accept_from", fam_ip)
        if not t.has("accept_from"):
            accept_from = peers

        # Checksum and authentication.
        pseudo = t.opt(
            "v3_checksum_pseudo_header", self.boolean(), INSTANCE.v3_checksum_pseudo_header
        )
        if not pseudo and family == 6:
            self.add(
                t.at("v3_checksum_pseudo_header"),
                "must be true for IPv6 (the IPv6 pseudo-header is always part of the checksum)",
            )
        old_unicast = t.opt("old_unicast_checksum", self.boolean(), INSTANCE.old_unicast_checksum)
        if (
            old_unicast
            and family is not None
            and version_ok
            and (family != 4 or version != 3 or not peers)
        ):
            self.add(
                t.at("old_unicast_checksum"),
                "applies to IPv4 VRRPv3 with unicast_peers only",
            )
        auth_type = t.opt("auth_type", self.choice(AUTH_TYPES), INSTANCE.auth_type)
        if auth_type != "none" and version == 3 and version_ok:
            self.add(t.at("auth_type"), "authentication exists in version 2 only")
        auth_pass = t.maybe("auth_pass", self.auth_pass)
        if auth_type == "pass" and auth_pass is None and not t.has("auth_pass"):
            self.add(t.at("auth_pass"), 'is required with auth_type = "pass"')
        if auth_type == "none" and auth_pass is not None and not t.bad("auth_type"):
            self.add(t.at("auth_pass"), 'applies only with auth_type = "pass"')
        hmac_key_file = t.maybe("hmac_key_file", self.abspath())
        hmac_accept: tuple[str, ...] = t.many("hmac_accept_key_files", self.abspath())
        if t.has("hmac_accept_key_files") and not t.has("hmac_key_file"):
            self.add(
                t.at("hmac_accept_key_files"),
                "needs hmac_key_file (accepted keys verify, only hmac_key_file signs)",
            )

        # Announcements and handover.
        garp_repeat = t.opt("garp_master_repeat", self.integer(1, 100), INSTANCE.garp_master_repeat)
        garp_interval_s = t.opt("garp_interval", self.seconds(0, 10), INSTANCE.garp_interval_s)
        garp_delay_s = t.opt(
            "garp_master_delay", self.seconds(0, 3600), INSTANCE.garp_master_delay_s
        )
        garp_refresh_s = t.opt(
            "garp_master_refresh", self.seconds(0, 86400), INSTANCE.garp_master_refresh_s
        )
        handover_hold_s = t.opt("handover_hold", self.seconds(0, 5), INSTANCE.handover_hold_s)

        # Tracking.
        track_ifs = self.track_refs(t, "track_interfaces", self.ifname(), None)
        track_scripts = self.track_refs(
            t, "track_scripts", self.ref(scripts, "track_script"), scripts
        )
        track_files = self.track_refs(t, "track_files", self.ref(files, "track_file"), files)
        track_quorum = t.maybe("track_quorum", self.integer(-253, 253))
        notify = self.notify(t)
        smtp_alert = t.opt("smtp_alert", self.boolean(), INSTANCE.smtp_alert)

        if name is None or interface is None or vrid is None or priority is None or not vips:
            return None, name
        instance = VrrpInstance(
            name=name,
            interface=interface,
            vrid=vrid,
            priority=priority,
            virtual_addresses=tuple(vips),
            advert_interval_cs=advert_cs,
            version=version,
            preempt=preempt,
            preempt_delay_s=preempt_delay_s,
            unicast_src=unicast_src,
            unicast_peers=peers,
            accept_from=accept_from,
            max_adopted_interval_cs=max_adopted_cs,
            v3_checksum_pseudo_header=pseudo,
            old_unicast_checksum=old_unicast,
            auth_type=cast(Any, auth_type),
            auth_pass=auth_pass,
            hmac_key_file=hmac_key_file,
            hmac_accept_key_files=hmac_accept,
            garp_master_repeat=garp_repeat,
            garp_interval_s=garp_interval_s,
            garp_master_delay_s=garp_delay_s,
            garp_master_refresh_s=garp_refresh_s,
            handover_hold_s=handover_hold_s,
            track_interfaces=track_ifs,
            track_scripts=track_scripts,
            track_files=track_files,
            track_quorum=track_quorum,
            notify=notify,
            smtp_alert=smtp_alert,
        )
        return instance, name

    def version(self, value: object, path: str) -> int | None:
        if isinstance(value, bool) or value not in (2, 3) or not isinstance(value, int):
            self.add(path, f"must be 2 or 3, got {show(value)}")
            return None
        return value

    def interval(self, version: int) -> Check[int]:
        """A VRRP interval in seconds -> centiseconds (v3: 0.01 steps, v2: whole seconds)."""

        def check(value: object, path: str) -> int | None:
            number = self.number(value, path)
            if number is None:
                return None
            if version == 2:
                if not 1 <= number <= 255:
                    self.add(path, f"must be 1..255 seconds (version 2), got {show(value)}")
                    return None
                if not float(number).is_integer():
                    self.add(path, f"must be whole seconds in version 2, got {show(value)}")
                    return None
                return int(number) * 100
            if not 0.01 <= number <= 40.95:
                self.add(path, f"must be 0.01..40.95 seconds, got {show(value)}")
                return None
            centis = round(number * 100)
            if abs(number * 100 - centis) > 1e-6:
                self.add(path, f"must be a multiple of 0.01 seconds, got {show(value)}")
                return None
            return int(centis)

        return check

    def auth_pass(self, value: object, path: str) -> str | None:
        if not isinstance(value, str):
            self.add(path, f"must be a string, {got(value)}")
            return None
        if not value.isascii() or not value.isprintable() or not 1 <= len(value) <= 8:
            self.add(path, "must be 1..8 printable ASCII characters")
            return None
        return value

    def virtual_addresses(self, t: Table, interface: str | None) -> list[VirtualAddress]:
        path = t.at("virtual_addresses")
        if not t.has("virtual_addresses"):
            self.add(path, "is required")
            return []
        items = self.array(t.raw("virtual_addresses"), path)
        if items is None:
            return []
        if not items:
            self.add(path, "must not be empty")
            return []
        out: list[VirtualAddress] = []
        for i, item in enumerate(items):
            vip = self.virtual_address(item, f"{path}[{i}]", interface)
            if vip is None:
                continue
            if any(v.address == vip.address for v in out):
                self.add(f"{path}[{i}]", f"duplicate address {vip.address}")
                continue
            out.append(vip)
        return out

    def virtual_address(
        self, value: object, path: str, interface: str | None
    ) -> VirtualAddress | None:
        if isinstance(value, str):
            iface = self.ip_interface(value, path)
            if iface is None:
                return None
            # A missing interface is reported elsewhere; keep the family for cross checks.
            return VirtualAddress(iface, interface or "", None)
        data = self.table(value, path)
        if data is None:
            return None
        t = Table(self, data, path, VIP_KEYS)
        iface = cast(IPInterface | None, t.req("address", self.ip_interface))
        dev = t.opt("dev", self.ifname(), interface or "")
        label = t.maybe("label", self.text())
        if label is not None and iface is not None and dev is not None:
            if iface.version != 4:
                self.add(t.at("label"), "labels exist for IPv4 addresses only")
            elif not label.startswith(dev):
                self.add(t.at("label"), f"must start with the device name {quote(dev)}")
            elif len(label.encode("utf-8")) >= IFNAMSIZ:
                self.add(t.at("label"), "must be at most 15 bytes (kernel limit)")
        if iface is None or dev is None:
            return None
        return VirtualAddress(iface, dev, label)

    def ip_interface(
        self, value: object, path: str
    ) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface | None:
        if not isinstance(value, str):
            self.add(path, f'must be a string ("address/prefix"), {got(value)}')
            return None
        addr_text, slash, prefix_text = value.partition("/")
        address = self.ip_in(addr_text, value, path, '"address" or "address/prefix"')
        if address is None:
            return None
        max_prefix = 32 if address.version == 4 else 128
        if slash:
            if not prefix_text.isdigit() or not 1 <= int(prefix_text) <= max_prefix:
                self.add(path, f"prefix must be 1..{max_prefix}, got {show(value)}")
                return None
            prefix = int(prefix_text)
        else:
            prefix = max_prefix
        return ipaddress.ip_interface(f"{address}/{prefix}")

    def track_refs(
        self,
        t: Table,
        key: str,
        name_check: Check[str],
        targets: Mapping[str, TrackScript | TrackFile | None] | None,
    ) -> tuple[TrackRef, ...]:
        """Entries "name" or {name, weight}; weight defaults to the target's (or 0)."""
        if not t.has(key):
            return ()
        path = t.at(key)
        items = self.array(t.raw(key), path)
        if items is None:
            return ()
        out: list[TrackRef] = []
        for i, item in enumerate(items):
            p = f"{path}[{i}]"
            weight: int | None = None
            if isinstance(item, Mapping):
                t = Table(self, cast(Mapping[str, object], item), p, TRACK_REF_KEYS)
                name = t.req("name", name_check)
                weight = t.maybe("weight", self.integer(-253, 253))
            else:
                name = name_check(item, p)
            if name is None:
                continue
            if any(r.name == name for r in out):
                self.add(p, f"duplicate {quote(name)}")
                continue
            if weight is None:
                target = targets.get(name) if targets is not None else None
                weight = target.weight if target is not None else 0
            out.append(TrackRef(name, weight))
        return tuple(out)

    def ref(
        self, targets: Mapping[str, TrackScript | TrackFile | None], section: str
    ) -> Check[str]:
        names = self.name()

        def check(value: object, path: str) -> str | None:
            name = names(value, path)
            if name is None:
                return None
            if name not in targets:
                self.add(path, f"no [[{section}]] named {quote(name)}")
                return None
            return name

        return check

    def check_instances(
        self, instances: Sequence[VrrpInstance | None], names: Sequence[str | None]
    ) -> None:
        seen_names: dict[str, int] = {}
        for i, name in enumerate(names):
            if name is None:
                continue
            if name in seen_names:
                self.add(
                    f"vrrp_instance[{i}].name",
                    f"duplicate name {quote(name)} (also vrrp_instance[{seen_names[name]}])",
                )
            else:
                seen_names[name] = i
        routers: dict[tuple[str, int, int], VrrpInstance] = {}
        vip_owner: dict[IPAddress, VrrpInstance] = {}
        for i, inst in enumerate(instances):
            if inst is None:
                continue
            router = (inst.interface, inst.vrid, inst.family)
            other = routers.get(router)
            if other is not None:
                self.add(
                    f"vrrp_instance[{i}].vrid",
                    f"vrid {inst.vrid} on {inst.interface} (IPv{inst.family}) is already used "
                    f"by instance {quote(other.name)}",
                )
            else:
                routers[router] = inst
            for j, vip in enumerate(inst.virtual_addresses):
                owner = vip_owner.get(vip.address)
                if owner is not None and owner is not inst:
                    self.add(
                        f"vrrp_instance[{i}].virtual_addresses[{j}]",
                        f"{vip.address} is already a virtual address of instance "
                        f"{quote(owner.name)}",
                    )
                else:
                    vip_owner[vip.address] = inst

    def sync_groups(
        self,
        tables: Sequence[Mapping[str, object] | None],
        instance_names: Sequence[str | None],
    ) -> list[SyncGroup | None]:
        known = {n for n in instance_names if n is not None}
        member_of: dict[str, str] = {}
        names: set[str] = set()
        out: list[SyncGroup | None] = []
        for i, data in enumerate(tables):
            path = f"sync_group[{i}]"
            if data is None:
                out.append(None)
                continue
            t = Table(self, data, path, GROUP_KEYS)
            name = t.req("name", self.name())
            if name is not None:
                if name in names:
                    self.add(t.at("name"), f"duplicate name {quote(name)}")
                names.add(name)
            members = t.req("instances", lambda v, p: self.unique_list(v, p, self.name()))
            if members is not None and not members and not t.bad("instances"):
                self.add(t.at("instances"), "must name at least one vrrp_instance")
            notify = self.notify(t)
            smtp_alert = t.opt("smtp_alert", self.boolean(), True)
            raw = t.raw("instances")
            for j, member in enumerate(members or []):
                # Index in the raw list (duplicates were dropped from members).
                k = raw.index(member) if isinstance(raw, list) else j
                p = f"{t.at('instances')}[{k}]"
                if member not in known:
                    self.add(p, f"no [[vrrp_instance]] named {quote(member)}")
                elif member in member_of:
                    self.add(
                        p,
                        f"instance {quote(member)} is already in sync_group "
                        f"{quote(member_of[member])}",
                    )
                elif name is not None:
                    member_of[member] = name
            if name is None or not members:
                out.append(None)
                continue
            out.append(SyncGroup(name, tuple(members), notify, smtp_alert))
        return out


def _cs(centis: int) -> str:
    return f"{centis / 100:g}"
