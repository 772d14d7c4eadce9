"""Strict TOML loading: text -> validated, defaulted, resolved ``schema.Config``.

Strict means: an unknown key, a wrong type or an out-of-range value is a problem, reported
with its key path in index form (``vrrp_instance[0].priority: must be 1..255, got 300``).
Every problem in the file is collected and raised at once as one ``ConfigError``; a TOML
syntax error is a single problem carrying its line and column. Nothing but ``ConfigError``
escapes for any input (anything else is a bug in this module).

Validation happens in three passes: each table on its own (types, ranges, defaults), each
object with itself (family of addresses, version rules, forwarding options), then the
whole file (references between tables, uniqueness). A cross check is skipped when a value
it depends on already has a problem, so one mistake is reported once.

The work is split in three: ``config.validate`` (the toolkit: typed getters, problems with
key paths, keys and defaults read off the schema), ``config.vrrp_sections`` and
``config.lvs_sections``; this module keeps the entry points and the document as a whole.
It must not import anything outside the standard library and the pure core, read the
clock or do I/O; the one exception is ``load_path``, a thin wrapper that reads the file's
bytes.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, cast

from hadirector.config.alert_sections import (
    ALERTMANAGER_KEYS,
    ALERTS_KEYS,
    EMAIL_KEYS,
    WEBHOOK_KEYS,
    AlertSections,
)
from hadirector.config.lvs_sections import (
    ANYCAST_KEYS,
    CHECK_KEY_TYPES,
    CHECK_KEYS,
    IPVS_KEYS,
    MATCH_KEYS,
    RS_KEYS,
    SORRY_KEYS,
    SYNC_KEYS,
    URL_KEYS,
    VS_GROUP_KEYS,
    VS_KEYS,
    LvsSections,
)
from hadirector.config.schema import (
    LOG_LEVELS,
    Config,
    GlobalConfig,
    TrackFile,
    TrackScript,
    VirtualServer,
    VrrpInstance,
    default_state_dir,
)
from hadirector.config.validate import (
    SUN_PATH_MAX,
    Defaults,
    Table,
    present,
    quote,
    show,
    toml_keys,
)
from hadirector.config.vrrp_sections import (
    FILE_KEYS,
    GROUP_KEYS,
    INSTANCE_KEYS,
    NOTIFY_KEYS,
    SCRIPT_KEYS,
    TRACK_REF_KEYS,
    VIP_KEYS,
    VrrpSections,
)
from hadirector.errors import ConfigError, Problem

__all__ = [
    "ALERTMANAGER_KEYS",
    "ALERTS_KEYS",
    "ANYCAST_KEYS",
    "CHECK_KEYS",
    "CHECK_KEY_TYPES",
    "EMAIL_KEYS",
    "FILE_KEYS",
    "GLOBAL_KEYS",
    "GROUP_KEYS",
    "INSTANCE_KEYS",
    "IPVS_KEYS",
    "MATCH_KEYS",
    "NOTIFY_KEYS",
    "RS_KEYS",
    "SCRIPT_KEYS",
    "SORRY_KEYS",
    "SYNC_KEYS",
    "TOP_KEYS",
    "TRACK_REF_KEYS",
    "URL_KEYS",
    "VIP_KEYS",
    "VS_GROUP_KEYS",
    "VS_KEYS",
    "WEBHOOK_KEYS",
    "load_mapping",
    "load_path",
    "load_text",
]

TOP_KEYS: Final = toml_keys(
    Config,
    {
        "global_": "global",
        "vrrp_instances": "vrrp_instance",
        "sync_groups": "sync_group",
        "track_scripts": "track_script",
        "track_files": "track_file",
        "virtual_servers": "virtual_server",
        "virtual_server_groups": "virtual_server_group",
    },
)
GLOBAL_KEYS: Final = toml_keys(GlobalConfig)
GLOBAL: Final = Defaults(GlobalConfig)
# A user or group: a name as useradd accepts it, or a numeric id.
ACCOUNT_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,30}\$?|[0-9]{1,10}")


# --------------------------------------------------------------------------- public API


def load_path(path: str | Path) -> Config:
    """Read and load a TOML configuration file; raises ``ConfigError`` listing every problem."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(Problem("", f"{path}: cannot read: {exc.strerror or exc}")) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            Problem("", f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})")
        ) from None
    return load_text(text, source=str(path))


def load_text(text: str, source: str = "<string>") -> Config:
    """Load configuration from TOML text; raises ``ConfigError`` listing every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_syntax_problem(text, source, str(exc))) from None
    return load_mapping(data)


def load_mapping(data: Mapping[str, object]) -> Config:
    """Validate an already parsed TOML document (as ``tomllib`` returns it)."""
    loader = _Loader()
    config = loader.document(data)
    if loader.problems or config is None:
        raise ConfigError(loader.problems or [Problem("", "invalid configuration")])
    return config


_AT_RE = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_END_RE = re.compile(r"\s*\(at end of document\)$")


def _syntax_problem(text: str, source: str, message: str) -> Problem:
    m = _AT_RE.search(message)
    if m:
        line, column = int(m.group(1)), int(m.group(2))
        message = message[: m.start()]
    else:
        line = text.count("\n") + 1
        column = len(text) - (text.rfind("\n") + 1) + 1
        e = _END_RE.search(message)
        if e:
            message = message[: e.start()] + " at end of document"
    return Problem("", f"{source}: line {line}, column {column}: TOML syntax error: {message}")


# --------------------------------------------------------------------------- the document


class _Loader(VrrpSections, LvsSections, AlertSections):
    """Collects problems while turning a parsed document into a ``Config``."""

    def document(self, data: Mapping[str, object]) -> Config | None:
        top = Table(self, data, "", TOP_KEYS)
        global_ = self.global_(top)
        ipvs = self.ipvs(top)
        # A track script or file with a problem keeps its name, so references to it from
        # instances do not add a second, misleading problem.
        scripts = [
            self.track_script(t, f"track_script[{i}]")
            for i, t in enumerate(self.section(top, "track_script"))
        ]
        files = [
            self.track_file(t, f"track_file[{i}]")
            for i, t in enumerate(self.section(top, "track_file"))
        ]
        script_by_name = self.unique_names(scripts, "track_script")
        file_by_name = self.unique_names(files, "track_file")

        instance_tables = self.section(top, "vrrp_instance")
        instances: list[VrrpInstance | None] = []
        instance_names: list[str | None] = []
        for i, t in enumerate(instance_tables):
            path = f"vrrp_instance[{i}]"
            inst, name = self.instance(t, path, script_by_name, file_by_name)
            instances.append(inst)
            instance_names.append(name)
        self.check_instances(instances, instance_names)

        groups = self.sync_groups(self.section(top, "sync_group"), instance_names)
        ipvs = self.check_sync(ipvs, instance_names, groups)
        vs_groups = self.vs_groups(self.section(top, "virtual_server_group"))
        vs_tables = self.section(top, "virtual_server")
        servers: list[VirtualServer | None] = []
        table_of: list[int] = []  # each service's table index (a group gives several)
        for i, t in enumerate(vs_tables):
            found = self.grouped_virtual_servers(t, f"virtual_server[{i}]", vs_groups)
            servers.extend(found)
            table_of.extend([i] * len(found))
        self.check_services(servers, table_of)
        alerts = self.alerts(top)
        anycast = self.anycast(top)
        vips = {
            v.address: f"vrrp_instance {quote(inst.name)}"
            for inst in present(instances)
            for v in inst.virtual_addresses
        }
        self.check_anycast(servers, vips)

        if self.problems:
            return None
        return Config(
            global_=global_,
            vrrp_instances=tuple(present(instances)),
            sync_groups=tuple(present(groups)),
            track_scripts=tuple(present([s for s, _ in scripts])),
            track_files=tuple(present([f for f, _ in files])),
            ipvs=ipvs,
            virtual_servers=tuple(present(servers)),
            virtual_server_groups=tuple(g for g in vs_groups.values() if g is not None),
            alerts=alerts,
            anycast=anycast,
        )

    def section(self, top: Table, key: str) -> list[Mapping[str, object] | None]:
        """A top-level array of tables ([[key]]), empty when absent."""
        return self.tables(top.raw(key), key, key) if top.has(key) else []

    def unique_names(
        self, objs: Sequence[tuple[TrackScript | TrackFile | None, str | None]], section: str
    ) -> dict[str, TrackScript | TrackFile | None]:
        seen: dict[str, TrackScript | TrackFile | None] = {}
        for i, (obj, name) in enumerate(objs):
            if name is None:
                continue
            if name in seen:
                self.add(f"{section}[{i}].name", f"duplicate name {quote(name)}")
                continue
            seen[name] = obj
        return seen

    def account(self, value: object, path: str) -> str | None:
        """A user or group: a name as useradd accepts it, or a numeric id (resolved on the
        host by ``hadirector.security``, not here)."""
        if not isinstance(value, str) or not ACCOUNT_NAME.fullmatch(value):
            self.add(path, f"must be a user or group name, or a numeric id, got {show(value)}")
            return None
        return value

    def global_(self, top: Table) -> GlobalConfig:
        if not top.has("global"):
            return GlobalConfig()
        data = self.table(top.raw("global"), "global")
        if data is None:
            return GlobalConfig()
        t = Table(self, data, "global", GLOBAL_KEYS)
        control_socket = t.opt(
            "control_socket", self.abspath(max_bytes=SUN_PATH_MAX), GLOBAL.control_socket
        )
        return GlobalConfig(
            router_id=t.maybe("router_id", self.text(max_len=255)),
            log_level=cast(Any, t.opt("log_level", self.choice(LOG_LEVELS), GLOBAL.log_level)),
            control_socket=control_socket,
            notify_timeout_s=t.opt(
                "notify_timeout", self.seconds(0, 3600, lo_open=True), GLOBAL.notify_timeout_s
            ),
            # Unset: the control socket's directory (one per hadirector@NAME instance).
            state_dir=t.opt("state_dir", self.abspath(), default_state_dir(control_socket)),
            realtime_priority=t.opt(
                "realtime_priority", self.integer(0, 99), GLOBAL.realtime_priority
            ),
            metrics_listen=t.maybe("metrics_listen", self.listen),
            script_user=t.maybe("script_user", self.account),
            script_group=t.maybe("script_group", self.account),
            script_security=t.opt("script_security", self.boolean(), GLOBAL.script_security),
            status_group=t.maybe("status_group", self.account),
        )
