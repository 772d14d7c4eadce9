"""Checks of a loaded configuration against this host: key files, scripts, and the files
an email alert reads (``password_file``, ``ca_file``).

The loader (config/) is pure and cannot look at files; these problems are reported the
same way, with key path and message, by ``check-config``, at start and on reload. This
module reads files but changes nothing, and imports neither trio nor pyroute2. It also
reads an instance's HMAC keys for the agent (``read_hmac_keys``), so that what is checked
and what is used are read the same way; no message ever shows key material.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hadirector import security
from hadirector.config.schema import Config, VrrpInstance
from hadirector.errors import Problem
from hadirector.vrrp import auth


def preflight(config: Config) -> list[Problem]:
    """Checks of the configuration against this host: key files and scripts.

    The loader is pure and cannot look at files; these problems are reported the same way
    (key path and message) by ``check-config``, at start and on reload.
    """
    problems: list[Problem] = []

    def script(path: str, argv: Sequence[str] | None) -> None:
        if not argv:
            return
        exe = Path(argv[0])
        if not exe.is_file():
            problems.append(Problem(path, f"{exe}: no such file"))
        elif not os.access(exe, os.X_OK):
            problems.append(Problem(path, f"{exe}: not executable"))

    def notify_scripts(path: str, scripts: Any) -> None:
        for key, attr in (
            ("notify", "notify"),
            ("notify_master", "master"),
            ("notify_backup", "backup"),
            ("notify_fault", "fault"),
            ("notify_stop", "stop"),
        ):
            script(f"{path}.{key}", getattr(scripts, attr))

    for i, inst in enumerate(config.vrrp_instances):
        path = f"vrrp_instance[{i}]"
        problems.extend(read_hmac_keys(inst, path)[1])
        notify_scripts(path, inst.notify)
    for i, group in enumerate(config.sync_groups):
        notify_scripts(f"sync_group[{i}]", group.notify)
    for i, ts in enumerate(config.track_scripts):
        script(f"track_script[{i}].script", ts.script)
    for i, vs in config.service_tables():
        script(f"virtual_server[{i}].quorum_up", vs.quorum_up)
        script(f"virtual_server[{i}].quorum_down", vs.quorum_down)
        for j, rs in enumerate(vs.real_servers):
            for k, check in enumerate(rs.checks):
                where = f"virtual_server[{i}].real_server[{j}].check"
                where += "" if len(rs.checks) == 1 else f"[{k}]"
                for key in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
                    file = getattr(check, key)
                    if file is not None and not os.access(file, os.R_OK):
                        problems.append(Problem(f"{where}.{key}", f"{file}: cannot be read"))
            script(f"virtual_server[{i}].real_server[{j}].notify_up", rs.notify_up)
            script(f"virtual_server[{i}].real_server[{j}].notify_down", rs.notify_down)
    # Who scripts run as, script_security, status_group, secret files' permissions.
    problems.extend(security.preflight_problems(config))
    email = config.alerts.email
    for key, file in (
        ("password_file", email.password_file if email else None),
        ("ca_file", email.ca_file if email else None),
    ):
        if file is None:
            continue
        try:
            with open(file, "rb"):
                pass
        except OSError as exc:
            problems.append(Problem(f"alerts.email.{key}", f"{file}: {exc.strerror or exc}"))
            continue
        found = security.exposed(file) if key == "password_file" else None
        if found:  # as an HMAC key file: the secret must not be readable by others
            fix, mode = found
            problems.append(
                Problem(
                    f"alerts.email.{key}",
                    f"{file}: holds a secret but is readable by group or others "
                    f"(mode {mode:04o}); run: {fix}",
                )
            )
    return problems


def read_hmac_keys(inst: VrrpInstance, path: str) -> tuple[auth.KeyRing | None, list[Problem]]:
    """The instance's HMAC keys read from their files now: ``(ring, [])``, or ``(None,
    problems)`` naming the key (``path.hmac_key_file``, ``path.hmac_accept_key_files[i]``)
    of each file that cannot be read or holds no valid key. ``(None, [])`` without HMAC."""
    if not inst.hmac_key_file:
        return None, []
    problems: list[Problem] = []
    keys: list[bytes] = []
    files = [(f"{path}.hmac_key_file", inst.hmac_key_file)]
    files += [
        (f"{path}.hmac_accept_key_files[{i}]", file)
        for i, file in enumerate(inst.hmac_accept_key_files)
    ]
    for key_path, file in files:
        try:
            keys.append(auth.load_key(Path(file).read_bytes()))
        except OSError as exc:
            problems.append(Problem(key_path, f"{file}: {exc.strerror or exc}"))
        except ValueError as exc:
            problems.append(Problem(key_path, f"{file}: {exc}"))
    if problems:
        return None, problems
    return auth.KeyRing(keys[0], keys[1:]), []
