"""The nftables script is accepted by the real nft/kernel, replaces itself, and removes itself."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hadirector.ipvs import nft

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("nft") is None, reason="needs root and the nft binary"
    ),
]


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"hdnft{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _rules(ns: str) -> list[str]:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-j", "list", "ruleset"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    items = json.loads(out)["nftables"]
    return [
        f"{i['rule']['chain']}" for i in items if "rule" in i and i["rule"]["table"] == nft.TABLE
    ]


def _apply_in(ns: str, which: str) -> str | None:
    """Run nft.apply inside the namespace (a child process: setns needs Python 3.12)."""
    code = (
        "import sys, trio\n"
        "from hadirector.ipvs import nft\n"
        "from tests.unit import nftkit as t\n"
        f"services = {which}\n"
        "err = trio.run(nft.apply, services)\n"
        "print(err or '', end='')\n"
    )
    out = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    return out or None


def test_apply_replace_and_remove(netns: str) -> None:
    assert _apply_in(netns, "[t.pfmc((80, 443)), t.fullnat()]") is None
    assert sorted(_rules(netns)) == ["fullnat_snat", "pfmc_mark"]
    assert _apply_in(netns, "[t.pfmc((80,))]") is None  # replaced, not appended
    assert _rules(netns) == ["pfmc_mark"]
    assert _apply_in(netns, "[]") is None
    assert _rules(netns) == []


def test_bad_rule_is_reported_and_leaves_the_old_table(netns: str) -> None:
    assert _apply_in(netns, "[t.pfmc((80,))]") is None
    error = _apply_in(netns, "[t.pfmc((80,))]; services[0].match.protocol = 'nosuchproto'")
    assert error is not None and "nosuchproto" in error
    assert _rules(netns) == ["pfmc_mark"]
