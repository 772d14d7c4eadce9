"""Least privilege: who scripts run as, which scripts are safe, which secrets are exposed.

- **Script identity.** ``[global] script_user`` / ``script_group`` name the user notify,
  track and check scripts run as. Unset, they run as the agent's own user (root under a
  root agent: keepalived's default). An agent that is not root cannot change user, so
  its scripts always run as its own user. ``script_identity`` resolves the names once
  (at start and on reload) and ``spawn_kwargs()`` gives the ``subprocess`` arguments
  every script start uses (``user``, ``group``, ``extra_groups``).
- **Script security** (``script_security = true``, as keepalived's
  ``enable_script_security``): a script is refused at load when it, or any directory on
  its path, could be modified by a user other than root: owned by a non-root user,
  writable by a group other than root's, or writable by anyone (a directory with the
  sticky bit excepted: nobody but an entry's owner may replace it there).
- **Secrets.** An HMAC key file readable by group or others is a problem (the file exists
  only to hold the secret); a configuration file holding a v2 ``auth_pass`` readable by
  group or others is a warning naming the ``chmod`` to run.
- **Capabilities.** ``has_capability`` reads the effective set of this process, so the
  agent can tell "may load modules" from "must ask the unit to".

This module reads files and the user database, changes nothing, and imports neither trio
nor pyroute2 (``check-config`` uses it).
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hadirector.config.schema import Config
from hadirector.errors import Problem

CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
CAP_SYS_MODULE = 16


def has_capability(cap: int, status_path: str = "/proc/self/status") -> bool:
    """Whether this process holds capability ``cap`` in its effective set."""
    try:
        for line in Path(status_path).read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> cap & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


# --------------------------------------------------------------------------- accounts


def _user(name: str) -> pwd.struct_passwd:
    """The passwd entry of a name or numeric uid; KeyError when there is none."""
    if name.isdigit():
        return pwd.getpwuid(int(name))
    return pwd.getpwnam(name)


def _group(name: str) -> grp.struct_group:
    if name.isdigit():
        return grp.getgrgid(int(name))
    return grp.getgrnam(name)


def resolve_group(name: str) -> int:
    """A group name or numeric gid to a gid; KeyError when unknown."""
    return _group(name).gr_gid


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


@dataclass(frozen=True)
class ScriptIdentity:
    """Who scripts run as. ``uid is None``: as the agent itself (no change)."""

    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] = ()
    name: str = ""

    def spawn_kwargs(self) -> dict[str, Any]:
        """``subprocess``/``trio`` process arguments that start a script as this user."""
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}

    def describe(self) -> str:
        if self.uid is None:
            return f"{user_name(os.geteuid())} (the agent's user)"
        return f"{self.name} (uid {self.uid}, gid {self.gid})"


def script_identity(config: Config) -> tuple[ScriptIdentity, list[Problem]]:
    """Resolve ``script_user`` / ``script_group`` on this host.

    A non-root agent cannot switch users: its scripts run as itself whatever is set."""
    glob = config.global_
    if glob.script_user is None:
        if glob.script_group is not None:
            return ScriptIdentity(), [
                Problem("global.script_group", "needs script_user (the user scripts run as)")
            ]
        return ScriptIdentity(), []
    problems: list[Problem] = []
    try:
        user = _user(glob.script_user)
    except KeyError:
        return ScriptIdentity(), [
            Problem("global.script_user", f"no user {glob.script_user!r} on this host")
        ]
    gid = user.pw_gid
    if glob.script_group is not None:
        try:
            gid = resolve_group(glob.script_group)
        except KeyError:
            problems.append(
                Problem("global.script_group", f"no group {glob.script_group!r} on this host")
            )
    if problems:
        return ScriptIdentity(), problems
    if os.geteuid() != 0:
        return ScriptIdentity(), []  # the agent's own user: see startup_warnings
    groups = tuple(g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem)
    return ScriptIdentity(user.pw_uid, gid, groups, user.pw_name), []


_current = ScriptIdentity()


def set_script_identity(identity: ScriptIdentity) -> None:
    """Make ``identity`` the one every script started from now on runs as."""
    global _current
    _current = identity


def spawn_kwargs() -> dict[str, Any]:
    """Process arguments for starting a script now (notify, track, check)."""
    return _current.spawn_kwargs()


# --------------------------------------------------------------------------- scripts


def script_paths(config: Config) -> Iterator[tuple[str, str]]:
    """Every configured script as (key path, program path)."""
    keys = (
        ("notify", "notify"),
        ("notify_master", "master"),
        ("notify_backup", "backup"),
        ("notify_fault", "fault"),
        ("notify_stop", "stop"),
    )
    for i, inst in enumerate(config.vrrp_instances):
        for key, attr in keys:
            argv = getattr(inst.notify, attr)
            if argv:
                yield f"vrrp_instance[{i}].{key}", argv[0]
    for i, group in enumerate(config.sync_groups):
        for key, attr in keys:
            argv = getattr(group.notify, attr)
            if argv:
                yield f"sync_group[{i}].{key}", argv[0]
    for i, ts in enumerate(config.track_scripts):
        yield f"track_script[{i}].script", ts.script[0]
    for i, vs in config.service_tables():
        for key, argv in (("quorum_up", vs.quorum_up), ("quorum_down", vs.quorum_down)):
            if argv:
                yield f"virtual_server[{i}].{key}", argv[0]
        for j, rs in enumerate(vs.real_servers):
            for k, check in enumerate(rs.checks):
                if check.script:
                    where = "check" if len(rs.checks) == 1 else f"check[{k}]"
                    yield f"virtual_server[{i}].real_server[{j}].{where}.script", check.script[0]
            for key, argv in (("notify_up", rs.notify_up), ("notify_down", rs.notify_down)):
                if argv:
                    yield f"virtual_server[{i}].real_server[{j}].{key}", argv[0]


def _unsafe(path: str, st: os.stat_result) -> str | None:
    """Why a non-root user could change ``path`` (a file or directory), or None."""
    mode = st.st_mode
    if st.st_uid != 0:
        return f"{path} is owned by {user_name(st.st_uid)} (uid {st.st_uid}), not root"
    if mode & stat.S_IWGRP and st.st_gid != 0:
        return f"{path} is writable by group {st.st_gid} (mode {stat.S_IMODE(mode):04o})"
    if mode & stat.S_IWOTH and not (stat.S_ISDIR(mode) and mode & stat.S_ISVTX):
        return f"{path} is writable by everyone (mode {stat.S_IMODE(mode):04o})"
    return None


def script_insecure(program: str) -> str | None:
    """Why ``program`` is not safe to run for the agent, or None when only root can
    change it: the file and every directory above it, as written and once resolved."""
    chains: list[str] = [program]
    real = os.path.realpath(program)
    if real != program:
        chains.append(real)
    for start in chains:
        p = Path(start)
        for part in (p, *p.parents):
            try:
                st = os.stat(part)
            except OSError as exc:
                return f"{part}: {exc.strerror or exc}"
            reason = _unsafe(str(part), st)
            if reason:
                return reason
    return None


def check_scripts(config: Config) -> list[Problem]:
    """With ``script_security``, a problem for every script a non-root user could alter."""
    if not config.global_.script_security:
        return []
    problems = []
    seen: dict[str, str | None] = {}
    for key, program in script_paths(config):
        if program not in seen:
            seen[program] = script_insecure(program)
        reason = seen[program]
        if reason:
            problems.append(Problem(key, f"{program}: refused by script_security: {reason}"))
    return problems


# --------------------------------------------------------------------------- secrets


#: The agent's own group as the package creates it: a secret may be readable by it.
AGENT_GROUP = "hadirector"


def _agent_group(gid: int) -> bool:
    """Whether ``gid`` is the agent's own group (its egid when not root, or ``hadirector``)."""
    if gid == 0:
        return False
    if gid == os.getegid():
        return True
    try:
        return grp.getgrgid(gid).gr_name == AGENT_GROUP
    except KeyError:
        return False


def exposed(path: str) -> tuple[str, int] | None:
    """(the chmod to run, mode) when ``path`` is readable by others, or by a group that
    is not the agent's own (see ``_agent_group``); None when it is not."""
    try:
        st = os.stat(path)
    except OSError:
        return None  # reported by whoever reads it
    mode = stat.S_IMODE(st.st_mode)
    group_ok = _agent_group(st.st_gid)
    if mode & 0o007 or (mode & 0o070 and not group_ok):
        return f"chmod {'o' if group_ok else 'go'}-rwx {path}", mode
    return None


def check_secret_files(config: Config) -> list[Problem]:
    """A problem for every HMAC key file readable by group or others."""
    problems = []
    for i, inst in enumerate(config.vrrp_instances):
        if not inst.hmac_key_file:
            continue
        files = [(f"vrrp_instance[{i}].hmac_key_file", inst.hmac_key_file)]
        files += [
            (f"vrrp_instance[{i}].hmac_accept_key_files[{j}]", f)
            for j, f in enumerate(inst.hmac_accept_key_files)
        ]
        for key, file in files:
            found = exposed(file)
            if found:
                fix, mode = found
                problems.append(
                    Problem(
                        key,
                        f"{file}: holds a secret but is readable by group or others "
                        f"(mode {mode:04o}); run: {fix}",
                    )
                )
    return problems


def config_secret_warning(config: Config, path: Path | str | None) -> str | None:
    """A warning when the configuration file holds an ``auth_pass`` and group or others
    may read it, with the chmod to run; None otherwise."""
    if path is None or not any(i.auth_pass for i in config.vrrp_instances):
        return None
    found = exposed(str(path))
    if not found:
        return None
    fix, mode = found
    return (
        f"{path} holds auth_pass but is readable by group or others (mode {mode:04o}); run: {fix}"
    )


def preflight_problems(config: Config) -> list[Problem]:
    """Everything of this module that makes a configuration unusable on this host."""
    problems = script_identity(config)[1]
    if config.global_.status_group is not None:
        try:
            resolve_group(config.global_.status_group)
        except KeyError:
            problems.append(
                Problem(
                    "global.status_group", f"no group {config.global_.status_group!r} on this host"
                )
            )
    problems += check_scripts(config)
    problems += check_secret_files(config)
    return problems


def startup_notes(config: Config) -> list[tuple[str, dict[str, Any]]]:
    """(event, fields) of what the agent says once at start at info level: a non-root
    agent without ``script_user`` runs its scripts as itself (as the shipped units do)."""
    if os.geteuid() == 0 or config.global_.script_user is not None:
        return []
    if not any(True for _ in script_paths(config)):
        return []
    fields = {
        "user": user_name(os.geteuid()),
        "detail": "the agent is not root: scripts run as its own user",
    }
    return [("security.scripts_as_agent_user", fields)]


def startup_warnings(
    config: Config, config_path: Path | str | None
) -> list[tuple[str, dict[str, Any]]]:
    """(event, fields) of the warnings the agent logs once at start."""
    out: list[tuple[str, dict[str, Any]]] = []
    scripts = any(True for _ in script_paths(config))
    glob = config.global_
    me = os.geteuid()
    if scripts and me == 0 and glob.script_user is None:
        out.append(
            (
                "security.scripts_as_root",
                {
                    "detail": "notify, track and check scripts run as root; set "
                    "[global] script_user to run them unprivileged"
                },
            )
        )
    if scripts and me != 0 and glob.script_user is not None:
        # The operator asked for another user, and an agent that is not root cannot
        # switch: worth a warning. Without script_user it is the expected set-up (the
        # shipped units): an info line, startup_notes.
        out.append(
            (
                "security.scripts_as_agent_user",
                {
                    "user": user_name(me),
                    "detail": "the agent is not root: scripts run as its own user",
                    "ignored": f"script_user = {glob.script_user!r}",
                },
            )
        )
    warning = config_secret_warning(config, config_path)
    if warning:
        out.append(("security.secret_readable", {"detail": warning}))
    return out
