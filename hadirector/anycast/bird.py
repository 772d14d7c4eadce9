"""What ``hadirector check-config`` says about BIRD when anycast services are configured.

Two warnings, never errors (BIRD may run elsewhere or be installed after the agent): BIRD is
not installed, or its configuration does not learn the agent's table. The configuration is
read simply: comments removed (``#`` to the end of the line, ``/* ... */``), then every
``kernel table N;`` statement is taken as a table BIRD learns. ``include`` files are not
followed and a ``kernel table`` inside a protocol that lacks ``learn`` still counts: the
check catches a mistyped or forgotten table, it does not validate BIRD's configuration
(``bird -p -c FILE`` does that).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

from hadirector.config.schema import Config

DEFAULT_BIRD_CONF = "/etc/bird/bird.conf"

_COMMENT = re.compile(r"/\*.*?\*/|#[^\n]*", re.S)
_KERNEL_TABLE = re.compile(r"\bkernel\s+table\s+(\d+)\s*;")


def kernel_tables(text: str) -> list[int]:
    """The ``kernel table N;`` values of a BIRD configuration, in file order (pure)."""
    return [int(m.group(1)) for m in _KERNEL_TABLE.finditer(_COMMENT.sub(" ", text))]


def find_program(name: str) -> str | None:
    """``name`` on PATH, else in /usr/sbin or /usr/local/sbin (not on a user's PATH)."""
    found = shutil.which(name)
    if found is not None:
        return found
    return next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/local/sbin/{name}") if Path(p).exists()), None
    )


def bird_warnings(
    config: Config,
    bird_conf: str | Path = DEFAULT_BIRD_CONF,
    which: Callable[[str], str | None] = find_program,
) -> list[str]:
    """Warnings about BIRD for a configuration with anycast services (none without)."""
    if not config.anycast_servers:
        return []
    table = config.anycast.route_table
    out: list[str] = []
    if which("bird") is None:
        out.append(
            f"anycast: BIRD is not installed (no `bird`): nothing will announce the routes "
            f"the agent puts in table {table} (Debian: apt install bird2; see conf/bird/)"
        )
    try:
        text = Path(bird_conf).read_text(errors="replace")
    except OSError as exc:
        out.append(
            f"anycast: cannot read {bird_conf} ({exc.strerror}): make sure BIRD's kernel "
            f"protocol learns table {table} (`kernel table {table}; learn;`)"
        )
        return out
    tables = kernel_tables(text)
    if table not in tables:
        named = ", ".join(str(t) for t in tables) or "none"
        out.append(
            f"anycast: {bird_conf} names kernel table(s) {named}, not [anycast] route_table "
            f"{table}: BIRD will not see the announced addresses (`kernel table {table};`)"
        )
    return out
