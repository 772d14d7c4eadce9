"""The pure core stays pure: each core module, imported alone in a fresh interpreter, loads
none of trio, pyroute2, scapy, structlog, asyncio, socket or subprocess, and no hadirector
module outside the core (adapters, agent, cli). An import inside a function escapes that
check, so the source is also read: no import statement anywhere in a core module names
those libraries, nor the clock (``time``) or threads.

Modules are discovered by glob from ``PURE_MODULE_GLOBS``, the one list of what the core
is, so a core module added later is covered without touching this test.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# The pure core (docs/ARCHITECTURE.md, "The pure core"), as paths relative to the repository root.
PURE_MODULE_GLOBS = [
    "hadirector/errors.py",
    "hadirector/vrrp/*.py",
    "hadirector/config/*.py",
    "hadirector/ipvs/model.py",
    "hadirector/ipvs/reconcile.py",
    "hadirector/ipvs/save.py",
    "hadirector/ipvs/importer.py",
    "hadirector/ipvs/genl.py",
    "hadirector/ipvs/types.py",
    "hadirector/ipvs/pool.py",
    "hadirector/checks/risefall.py",
    "hadirector/checks/dnsmsg.py",
    "hadirector/checks/httpmsg.py",
    "hadirector/anycast/decide.py",
    "hadirector/net/vrrp_filter.py",
    "hadirector/sync/codec.py",
    "hadirector/sync/roles.py",
    "hadirector/sync/table.py",
    "hadirector/status.py",
    "hadirector/control/protocol.py",
    "hadirector/migrate/kaconf.py",
    "hadirector/migrate/from_keepalived.py",
    "hadirector/migrate/tomlout.py",
    "hadirector/migrate/report.py",
    "hadirector/migrate/to_keepalived.py",
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

# Never imported by a core module, at any depth (lazy imports included).
FORBIDDEN_IMPORTS = FORBIDDEN_TOP_LEVEL | {"time", "threading", "select", "selectors", "signal"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def pure_paths() -> list[Path]:
    found: set[Path] = set()
    for pattern in PURE_MODULE_GLOBS:
        found.update(p for p in REPO.glob(pattern) if p.is_file())
    return sorted(found)


PURE_PATHS = pure_paths()
PURE = sorted({module_name(p) for p in PURE_PATHS})


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
    assert "hadirector.vrrp.receive" in PURE
    assert "hadirector.vrrp.send" in PURE


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


def imported_names(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, top-level module) of every absolute import statement in ``tree``."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append((node.lineno, node.module.split(".")[0]))
    return names


@pytest.mark.parametrize("path", PURE_PATHS, ids=[module_name(p) for p in PURE_PATHS])
def test_pure_module_source_imports_nothing_impure(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = [
        f"line {line}: {name}" for line, name in imported_names(tree) if name in FORBIDDEN_IMPORTS
    ]
    assert not bad, f"{path.relative_to(REPO)} imports {bad}"


def test_source_scan_sees_lazy_imports() -> None:
    source = "from . import sibling\ndef f():\n    import time.x\n    from trio import lowlevel\n"
    assert imported_names(ast.parse(source)) == [(3, "time"), (4, "trio")]
