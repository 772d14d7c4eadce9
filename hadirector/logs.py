"""Structured logging setup: JSON lines on stdout (journald) or a console renderer for people.

Event names are dotted and stable (``vrrp.transition``, ``vip.added``, ``ipvs.dest.weight``);
context (instance name, router id) is bound per component. This module only configures
structlog; it must not log anything itself.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure(log_format: str = "json", level: str = "info") -> None:
    """Configure structlog once for the process; safe to call again on reload."""
    renderer: Any
    if log_format == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=False,
    )


def get(**context: Any) -> Any:
    """A logger with ``context`` bound."""
    return structlog.get_logger().bind(**context)
