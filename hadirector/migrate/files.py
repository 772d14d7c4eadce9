"""The file side of the migration commands: a ``kaconf.Source`` over the disk."""

from __future__ import annotations

import glob
from pathlib import Path

STDIN = "<stdin>"


class DiskSource:
    """Reads included files from the disk; ``stdin_text`` is the file named ``<stdin>``."""

    def __init__(self, stdin_text: str | None = None) -> None:
        self.stdin_text = stdin_text

    def read(self, path: str) -> str:
        if path == STDIN and self.stdin_text is not None:
            return self.stdin_text
        return Path(path).read_text(encoding="utf-8")

    def glob(self, pattern: str) -> list[str]:
        return sorted(p for p in glob.glob(pattern) if Path(p).is_file())
