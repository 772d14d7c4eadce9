"""The README documents every configuration key the loader accepts, and the two commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from hadirector.config import load

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
KEY_LISTS = sorted(name for name in dir(load) if name.endswith("_KEYS"))


def test_key_lists_found() -> None:
    assert {"GLOBAL_KEYS", "INSTANCE_KEYS", "RS_KEYS"} <= set(KEY_LISTS)


@pytest.mark.parametrize("list_name", KEY_LISTS)
def test_every_key_is_in_the_reference(list_name: str) -> None:
    reference = README.split("## Configuration reference", 1)[1]
    # Top-level tables appear as `[name]` / `[[name]]`, keys as `name`.
    form = "{}]" if list_name == "TOP_KEYS" else "`{}`"
    missing = [k for k in getattr(load, list_name) if form.format(k) not in reference]
    assert missing == [], f"{list_name}: undocumented keys {missing}"


def test_the_two_commands_are_there() -> None:
    assert "\ntools/setup && hadirector demo\n" in README
    assert "\ntools/test\n" in README
    ci = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()
    assert "tools/test" in ci
