"""Structured logging setup: JSON lines on stdout (journald) or a console renderer for people.

Event names are dotted and stable (``vrrp.transition``, ``vip.added``, ``ipvs.dest.weight``);
context (instance name, router id) is bound per component. This module only configures
structlog; it must not log anything itself.

Severity in the journal: when stdout is the journal (systemd's ``JOURNAL_STREAM`` names the
device and inode of the stream stdout is connected to, see systemd.exec(5)), each line
starts with the syslog level of its record, ``<4>`` for a warning (sd-daemon(3)); journald
takes it off (``SyslogLevelPrefix=yes``, the default) and stores it as the entry's
PRIORITY, so ``journalctl -p warning`` selects warnings and errors. The entry's MESSAGE is
the JSON line unchanged, for log shippers. Anywhere else (a pipe, a terminal, a file) the
lines carry no prefix.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import structlog

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

#: structlog's method name -> syslog priority (RFC 5424 severity; journald's PRIORITY).
SYSLOG_PRIORITY = {
    "debug": 7,
    "info": 6,
    "msg": 6,
    "warning": 4,
    "warn": 4,
    "error": 3,
    "exception": 3,
    "critical": 2,
    "fatal": 2,
}


def priority_of(method_name: str) -> int:
    """The syslog priority of a record logged with ``method_name`` (info if unknown)."""
    return SYSLOG_PRIORITY.get(method_name, 6)


def stream_is_journal(stream: TextIO, environ: dict[str, str] | None = None) -> bool:
    """True when ``stream`` is the journal stream systemd connected (``JOURNAL_STREAM``
    holds its ``device:inode``, compared with the stream's own)."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, sep, inode = value.partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (OSError, ValueError, AttributeError):
        return False


class PriorityPrefix:
    """Wraps a renderer: each rendered line starts with ``<N>``, its syslog priority."""

    def __init__(self, renderer: Any) -> None:
        self.renderer = renderer

    def __call__(self, logger: Any, method_name: str, event_dict: Any) -> str:
        return f"<{priority_of(method_name)}>{self.renderer(logger, method_name, event_dict)}"


def configure(log_format: str = "json", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog once for the process (lines to ``stream``, default stdout); safe to
    call again on reload."""
    stream = sys.stdout if stream is None else stream
    renderer: Any
    if log_format == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    else:
        renderer = structlog.processors.JSONRenderer()
    if stream_is_journal(stream):
        renderer = PriorityPrefix(renderer)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get(**context: Any) -> Any:
    """A logger with ``context`` bound."""
    return structlog.get_logger().bind(**context)
