"""Checks of a loaded configuration against this host: key files and scripts.

The loader (config/) is pure and cannot look at files; these problems are reported the
same way, with key path and message, by ``check-config``, at start and on reload. This
module reads files but changes nothing, and imports neither trio nor pyroute2.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hadirector.config.schema import Config
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
        if inst.hmac_key_file:
            try:
                auth.load_key(Path(inst.hmac_key_file).read_bytes())
            except (OSError, ValueError) as exc:
                problems.append(Problem(f"{path}.hmac_key_file", str(exc)))
        notify_scripts(path, inst.notify)
    for i, group in enumerate(config.sync_groups):
        notify_scripts(f"sync_group[{i}]", group.notify)
    for i, ts in enumerate(config.track_scripts):
        script(f"track_script[{i}].script", ts.script)
    return problems
