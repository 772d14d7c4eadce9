"""The journal severity of log lines: ``<N>`` prefixes only when stdout is the journal.

The agent's stdout is a real file here; ``JOURNAL_STREAM`` is set to its own device and inode (what
systemd does for a unit's journal stream), to another inode, or left unset.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest
import structlog

from hadirector import logs


@pytest.fixture
def stdout_file(tmp_path: Path) -> Iterator[TextIO]:
    with open(tmp_path / "stdout", "w+", encoding="utf-8") as stream:
        yield stream
    structlog.reset_defaults()


def _journal_stream(stream: TextIO) -> str:
    st = os.fstat(stream.fileno())
    return f"{st.st_dev}:{st.st_ino}"


def _log_each_level(stream: TextIO) -> list[str]:
    logs.configure("json", "debug", stream)
    log = logs.get(component="test")
    log.debug("t.debug")
    log.info("t.info")
    log.warning("t.warning")
    log.error("t.error")
    stream.flush()
    stream.seek(0)
    return stream.read().splitlines()


def test_priority_of_each_level() -> None:
    assert [logs.priority_of(m) for m in ("debug", "info", "warning", "error")] == [7, 6, 4, 3]
    assert logs.priority_of("warn") == 4
    assert logs.priority_of("critical") == 2
    assert logs.priority_of("exception") == 3
    assert logs.priority_of("something-else") == 6


def test_lines_to_the_journal_carry_their_syslog_level(
    stdout_file: TextIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", _journal_stream(stdout_file))
    lines = _log_each_level(stdout_file)
    assert len(lines) == 4
    seen = []
    for line in lines:
        match = re.fullmatch(r"<(\d)>(\{.*\})", line)
        assert match is not None, line
        record = json.loads(match.group(2))  # the message itself stays one JSON object
        seen.append((int(match.group(1)), record["event"], record["level"]))
    assert seen == [
        (7, "t.debug", "debug"),
        (6, "t.info", "info"),
        (4, "t.warning", "warning"),
        (3, "t.error", "error"),
    ]


@pytest.mark.parametrize("value", [None, "0:0", "garbage", "12"])
def test_lines_elsewhere_are_plain_json(
    stdout_file: TextIO, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    else:
        monkeypatch.setenv("JOURNAL_STREAM", value)
    lines = _log_each_level(stdout_file)
    assert [json.loads(line)["event"] for line in lines] == [
        "t.debug",
        "t.info",
        "t.warning",
        "t.error",
    ]


def test_journal_stream_of_another_file_is_not_ours(tmp_path: Path, stdout_file: TextIO) -> None:
    with open(tmp_path / "other", "w") as other:
        assert logs.stream_is_journal(other, {"JOURNAL_STREAM": _journal_stream(other)})
        assert not logs.stream_is_journal(stdout_file, {"JOURNAL_STREAM": _journal_stream(other)})


def test_console_format_is_prefixed_too(
    stdout_file: TextIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", _journal_stream(stdout_file))
    logs.configure("console", "info", stdout_file)
    logs.get().warning("t.console")
    stdout_file.flush()
    stdout_file.seek(0)
    (line,) = stdout_file.read().splitlines()
    assert line.startswith("<4>") and "t.console" in line
