"""No test module is imported by another module: what tests share lives in helper modules
(fixtures in conftest.py, the rest in modules not named ``test_*``), so running, moving or
deleting one test file never changes another.

The scan reads every Python file under tests/ and bench/: its import statements, and the
import lines of any string that is Python code run in a child process."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_IMPORT_LINE = re.compile(r"^\s*(?:from\s+\S+\s+import\s+.+|import\s+.+)$", re.MULTILINE)


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def _is_test_module(dotted: str) -> bool:
    return dotted.rsplit(".", 1)[-1].startswith("test_")


def _resolve(importer: str, level: int, module: str | None) -> str:
    """The absolute name ``from <level dots><module>`` means inside ``importer``."""
    if level == 0:
        return module or ""
    package = importer.split(".")[:-level]
    return ".".join([*package, *([module] if module else [])])


def imported_test_modules(importer: str, tree: ast.AST) -> list[str]:
    """The ``test_*`` modules that the statements in ``tree`` import."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if _is_test_module(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(importer, node.level, node.module)
            if _is_test_module(base):
                found.append(base)
            found += [f"{base}.{a.name}" for a in node.names if a.name.startswith("test_")]
    return found


def _imports_in(path: Path) -> list[str]:
    importer = _module_name(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    found = imported_test_modules(importer, tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for line in _IMPORT_LINE.findall(node.value):
                try:
                    snippet = ast.parse(line.strip())
                except SyntaxError:
                    continue
                found += imported_test_modules(importer, snippet)
    return found


def test_no_test_module_is_imported_by_another() -> None:
    offenders = [
        f"{path.relative_to(REPO)} imports {name}"
        for folder in ("tests", "bench")
        for path in sorted((REPO / folder).rglob("*.py"))
        for name in _imports_in(path)
    ]
    assert offenders == []


def test_the_scan_sees_every_form_of_import() -> None:
    forms = {
        "import tests.unit." + "test_x": "tests.unit.test_x",
        "from tests.unit." + "test_x import y": "tests.unit.test_x",
        "from tests.unit import " + "test_x": "tests.unit.test_x",
        "from ." + "test_x import y": "tests.agent.test_x",
        "from . import " + "test_x as t": "tests.agent.test_x",
        "def f():\n    from .." + "unit.test_x import y": "tests.unit.test_x",
    }
    for source, expected in forms.items():
        assert imported_test_modules("tests.agent.helpers", ast.parse(source)) == [expected]
    assert imported_test_modules("tests.agent.helpers", ast.parse("from .fakes import Lab")) == []
