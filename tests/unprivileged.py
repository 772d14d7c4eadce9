"""Run a command as an unprivileged user holding only the agent's two capabilities.

``unprivileged_argv(argv)`` wraps ``argv`` so that it runs as ``nobody``/``nogroup``
(65534, or the given ids) with CAP_NET_ADMIN and CAP_NET_RAW as its only capabilities,
inheritable and ambient (kept across exec), and a bounding set of those two: what the
shipped unit gives the agent (``User=``, ``AmbientCapabilities=``,
``CapabilityBoundingSet=``), done with ``setpriv``.

This Python may live where other users cannot reach it (pyenv under ``/root``, mode
0700). Then the command first enters a private mount namespace of its own in which the
blocking directory is a fresh mode-0755 tmpfs holding only this Python's installation
(bind-mounted at the same path): same paths, nothing else of that directory visible, the
host's mounts untouched.

Standard library only; it starts nothing itself.
"""

from __future__ import annotations

import os
import pwd
import shlex
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

NOBODY = 65534
AGENT_CAPS = ("net_admin", "net_raw")

_REMOUNT = """set -e
mount --make-rprivate /
stage=$(mktemp -d)
mount --bind {prefix} "$stage"
mount -t tmpfs -o mode=0755 hd-unprivileged {blocked}
mkdir -p {prefix}
mount --move "$stage" {prefix}
rmdir "$stage"
exec "$@"
"""


def blocked_directory(path: str | Path) -> Path | None:
    """The outermost directory above ``path`` that others may not enter, or None."""
    for parent in reversed(Path(path).resolve().parents):
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            return parent
    return None


def unprivileged_argv(
    argv: Sequence[str],
    uid: int = NOBODY,
    gid: int = NOBODY,
    caps: Sequence[str] = AGENT_CAPS,
) -> list[str]:
    """``argv`` as ``uid``/``gid`` with only ``caps`` (setpriv), reachable Python included."""
    wanted = "".join(f",+{c}" for c in caps)
    try:
        pwd.getpwuid(uid)
        groups = "--init-groups"
    except KeyError:
        groups = "--clear-groups"
    inner = [
        "setpriv",
        f"--reuid={uid}",
        f"--regid={gid}",
        groups,
        f"--inh-caps=-all{wanted}",
        *([f"--ambient-caps={wanted[1:]}"] if caps else []),
        f"--bounding-set=-all{wanted}",
        "--",
        *argv,
    ]
    prefix = Path(sys.base_prefix).resolve()
    blocked = blocked_directory(prefix / "bin")
    if blocked is None:
        return inner
    script = _REMOUNT.format(prefix=shlex.quote(str(prefix)), blocked=shlex.quote(str(blocked)))
    return ["unshare", "--mount", "sh", "-c", script, "sh", *inner]
