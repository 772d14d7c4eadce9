"""tools/manpages.py: the man pages carry the README's reference and the CLI, and render.

hadirector.toml(5) must name every key of every table in the README's configuration
reference and every heading of it; hadirector(8) every subcommand and option of the CLI's
parser and the README sections it takes. groff must render both without a warning. The
pinned requirements of the package are checked against pyproject's ranges here too.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("manpages", REPO / "tools" / "manpages.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["manpages"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("man")
    subprocess.run(
        [sys.executable, str(REPO / "tools" / "manpages.py"), str(out), "--date", "2026-01-01"],
        check=True,
    )
    return {p.name: p.read_text() for p in out.iterdir()}


def _reference_keys() -> list[str]:
    """The first cell of every row of every table whose first column is 'Key'."""
    gen = _generator()
    keys, header = [], None
    for line in gen.config_reference(README).splitlines():
        if not line.strip().startswith("|"):
            header = None
            continue
        cells = gen.split_row(line)
        if header is None:
            header = cells
        elif header[0] == "Key" and not set(cells[0]) <= set("-: "):
            keys += re.findall(r"`([^`]+)`", cells[0])
    return keys


def test_the_config_page_names_every_key_and_heading_of_the_readme_reference(
    pages: dict[str, str],
) -> None:
    page = pages["hadirector.toml.5"]
    keys = _reference_keys()
    assert len(keys) > 80, keys  # every table was found
    tags = "\n".join(re.findall(r"^\.TP\n(.*)$", page, re.M))
    gen = _generator()
    missing = [k for k in keys if f"\\fB{gen.escape(k, code=True)}\\fR" not in tags]
    assert missing == []
    for title in re.findall(r"^#{3,4} (.*)$", gen.config_reference(README), re.M):
        assert gen.inline(title) in page, title


def test_the_agent_page_names_every_command_and_option_of_the_cli(pages: dict[str, str]) -> None:
    page = pages["hadirector.8"]
    gen = _generator()
    commands = gen._subcommands(gen.cli_parser())
    assert {name for name, _, _ in commands} >= {"run", "check-config", "status", "reload", "demo"}
    for name, sub, _ in commands:
        assert f"\\fB{gen.escape(name, code=True)}\\fR" in page, name
        for action in sub._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert gen.escape(flag, code=True) in page, (name, flag)
    for title in gen.SECTIONS_8:
        assert f'.SH "{gen.inline(title).upper()}"' in page
    assert "hadirector.toml\\fR(5)" in page


@pytest.mark.parametrize("name", ["hadirector.8", "hadirector.toml.5"])
def test_groff_renders_the_page_without_a_warning(pages: dict[str, str], name: str) -> None:
    if shutil.which("groff") is None:
        pytest.fail("groff is not installed (tools/setup installs groff-base)")
    proc = subprocess.run(
        ["groff", "-man", "-ww", "-z", "-Tutf8"],
        input=pages[name],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_generated_text_is_roff_safe() -> None:
    gen = _generator()
    assert gen.inline("`a-b\\c` \u00d7 **x**") == "\\fBa\\-b\\ec\\fR \\[u00D7] \\fBx\\fR"
    lines = gen.markdown_to_roff(".dot first\n\n- 'quote item\n", top_level=2)
    assert "\\&.dot first" in lines and "\\&'quote item" in lines
    assert gen.split_row("| `a|b` | c |") == ["`a|b`", "c"]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text.split(".post")[0]))


def test_the_package_pins_fall_inside_pyproject_ranges_and_are_hashed() -> None:
    lock = (REPO / "packaging" / "deb" / "requirements.txt").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", lock, re.M))
    hashes = re.findall(r"--hash=sha256:[0-9a-f]{64}", lock)
    assert len(hashes) == len(pins) > 2
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        name, spec = re.fullmatch(r"([A-Za-z0-9_.-]+)(.*)", requirement).groups()  # type: ignore[union-attr]
        assert name in pins, f"{name} is not pinned in packaging/deb/requirements.txt"
        pinned = _version(pins[name])
        for clause in spec.split(","):
            op, bound = re.fullmatch(r"(>=|<|==|<=|>)(.+)", clause.strip()).groups()  # type: ignore[union-attr]
            ok = {
                ">=": pinned >= _version(bound),
                "<": pinned < _version(bound),
                "<=": pinned <= _version(bound),
                ">": pinned > _version(bound),
                "==": pinned == _version(bound),
            }[op]
            assert ok, f"{name}=={pins[name]} is outside {spec}"
    copyright_text = (REPO / "packaging" / "deb" / "copyright").read_text()
    for name in pins:
        assert f"site-packages/{name.split('-')[0][:4]}" in copyright_text, name
