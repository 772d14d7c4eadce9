"""keepalived's own sample configurations, as Debian's keepalived package ships them.

tools/setup installs keepalived; its samples are read where the package puts them (some
distributions gzip them: handled). Shared by the import and export tests.
"""

from __future__ import annotations

import gzip
from pathlib import Path

SAMPLES = Path("/usr/share/doc/keepalived/samples")


def samples() -> list[Path]:
    """Every keepalived.conf sample (empty when the package's docs are not installed)."""
    if not SAMPLES.is_dir():
        return []
    return sorted(p for p in SAMPLES.iterdir() if p.name.startswith("keepalived.conf"))


def sample_text(path: Path) -> str:
    data = path.read_bytes()
    return (gzip.decompress(data) if path.suffix == ".gz" else data).decode()
