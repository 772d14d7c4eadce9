"""The pure core stays pure: each core module, imported alone in a fresh interpreter, loads
none of trio, pyroute2, scapy, structlog, asyncio, socket or subprocess, and no hadirector
module outside the core (adapters, agent, cli).

Modules are discovered by glob from ``PURE_MODULE_GLOBS``, the one list of what the core
is, so a core module added later is covered without touching this test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# The pure core (DESIGN.md §1), as paths relative to the repository root.
PURE_MODULE_GLOBS = [
    "hadirector/errors.py",
    "hadirector/vrrp/*.py",
    "hadirector/config/*.py",
    "hadirector/ipvs/model.py",
    "hadirector/ipvs/reconcile.py",
    "hadirector/ipvs/save.py",
    "hadirector/ipvs/importer.py",
    "hadirector/checks/risefall.py",
    "hadirector/sync/codec.py",
]

# Top-level modules a pure module must never cause to be loaded.
FORBIDDEN_TOP_LEVEL = {
    "trio",
    "pyroute2",
    "scapy",
    "structlog",
    "asyncio",
    "socket",
    "_socket",
    "subprocess",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def pure_modules() -> list[str]:
    found: set[str] = set()
    for pattern in PURE_MODULE_GLOBS:
        found.update(module_name(p) for p in REPO.glob(pattern) if p.is_file())
    return sorted(found)


PURE = pure_modules()


def allowed_project_modules() -> set[str]:
    """The core modules and the packages that contain them."""
    allowed = set(PURE)
    for name in PURE:
        parts = name.split(".")
        allowed.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return allowed


PROBE = """
import importlib, json, sys
sys.path.insert(0, sys.argv[2])
before = set(sys.modules)
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_discovery_finds_the_core() -> None:
    assert "hadirector.errors" in PURE
    assert "hadirector.vrrp.codec" in PURE
    assert "hadirector.vrrp.auth" in PURE


@pytest.mark.parametrize("name", PURE)
def test_pure_module_imports_nothing_impure(name: str) -> None:
    result = subprocess.run(
        [sys.executable, "-I", "-c", PROBE, name, str(REPO)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"importing {name} failed:\n{result.stderr}"
    loaded: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    forbidden = sorted(m for m in loaded if m.split(".")[0] in FORBIDDEN_TOP_LEVEL)
    assert not forbidden, f"{name} loads {forbidden}"
    allowed = allowed_project_modules()
    outside_core = sorted(m for m in loaded if m.split(".")[0] == "hadirector" and m not in allowed)
    assert not outside_core, (
        f"{name} loads non-core project modules {outside_core}"
        " (a module that is pure belongs in PURE_MODULE_GLOBS)"
    )
