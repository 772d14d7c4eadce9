#!/usr/bin/env python3
"""Print the per-sample table of ``hadirector import keepalived`` on keepalived's samples.

For each keepalived.conf sample Debian's keepalived package ships (config id ``high``,
which the conditional sample uses): the exit status (0 = everything converted, 3 =
something dropped or changed), how many findings of each kind, and what was reported,
by keyword. The README's "Migrating from keepalived" holds this table between markers;
tests/unit/test_migrate_import.py checks it is current. Run from the repository root:

    PYTHONPATH=$PWD python3 tools/keepalived_samples.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hadirector.migrate import kaconf
from hadirector.migrate.from_keepalived import convert
from hadirector.migrate.report import Findings
from tests.unit.kasamples import SAMPLES, sample_text, samples


def _topic(message: str) -> str:
    """The keyword a finding is about: what it names before its first colon."""
    m = re.match(r"hadirector refuses \S+?\.([a-z_]+)(?:\[\d+\])?:", message)
    if m:
        return f"refused {m.group(1)}"
    if re.match(r"(smtp_|notification_email)", message):
        return "e-mail alerts"
    head = message.split(":")[0]
    words = [w for w in head.split() if not re.fullmatch(r"[\d.]+", w)]
    if len(words) > 1 and words[1][0] in "'\"":
        return words[0]
    return " ".join(words) if len(words) <= 3 else " ".join(words[:2])


def table() -> str:
    rows = [
        "| sample | exit | dropped | changed | notes | reported |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for path in samples():
        findings = Findings()
        name = path.name.removesuffix(".gz")
        nodes = kaconf.parse(name, kaconf.TextSource({name: sample_text(path)}), "high", findings)
        convert(nodes, findings, name)
        count = {
            k: sum(1 for f in findings.items if f.kind == k) for k in ("dropped", "changed", "note")
        }
        topics: dict[str, None] = {}
        for f in findings.items:
            if f.kind != "note":
                topics[_topic(f.message)] = None
        rows.append(
            f"| `{name}` | {findings.exit_code} | {count['dropped']} | {count['changed']} "
            f"| {count['note']} | {', '.join(topics) or '—'} |"
        )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    if not SAMPLES.is_dir():
        sys.exit(f"{SAMPLES}: not installed (apt-get install keepalived)")
    sys.stdout.write(table())
