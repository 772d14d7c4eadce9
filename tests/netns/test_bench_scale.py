"""bench/scale.py runs end to end: its quick mode, with tiny windows, prints a markdown table
in which every measure has a figure for hadirector and for keepalived.

The figures themselves are not checked (they are the bench's business, and a loaded
machine makes any bound on them flaky); only that each cell holds a measurement of the
right shape, not an error or a blank.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
HEADER = ["measure", "hadirector", "keepalived", "ratio", "target", "met"]
NUMBER = r"-?\d+(\.\d+)?(e[-+]?\d+)?"
CELL = {
    "CPU": re.compile(rf"^{NUMBER} % \(master {NUMBER} %, backup {NUMBER} %\)$"),
    "start": re.compile(rf"^{NUMBER} s"),
    "PSS": re.compile(rf"^{NUMBER} / {NUMBER} MiB$"),
}


def _table(output: str) -> list[list[str]]:
    rows = []
    for line in output.splitlines():
        if line.startswith("|"):
            assert line.endswith("|"), line
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


@pytest.mark.usefixtures("netns_required", "keepalived_bin")
def test_quick_run_prints_both_columns() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "scale.py"), "--quick", "--window", "0.2",
         "--settle", "0.2", "--start-runs", "1"],
        capture_output=True, text=True, timeout=900, check=False, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    table = _table(done.stdout)
    assert table[0] == HEADER, done.stdout
    assert set("".join(table[1])) == {"-"}, done.stdout
    rows = table[2:]
    # --quick: CPU at 1 and 100 instances, start -> first advert, PSS at 1 and 100.
    kinds = [row[0].split()[0] for row in rows]
    assert kinds == ["CPU", "CPU", "start", "PSS", "PSS"], done.stdout
    assert "1 instance," in rows[0][0] and "100 instances," in rows[1][0]
    for row in rows:
        assert len(row) == len(HEADER), row
        pattern = CELL[row[0].split()[0]]
        for cell in row[1:3]:
            assert pattern.match(cell), f"{row[0]}: {cell!r}\n{done.stdout}"
        # No ratio when keepalived's figure is 0 (a tiny window can hold none of its work).
        assert row[3] == "-" or re.fullmatch(NUMBER, row[3]), row
        assert row[5] in ("yes", "**no**", "-"), row
