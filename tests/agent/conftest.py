"""Agent tests run on recording fakes (fakes.py): structlog events go to the lab's ledger.

Every log event of the agent under test is filed into the running ``Lab`` (with the host
it came from, bound per agent task) instead of being printed, so tests can count
transitions and rejections from what the agent reported.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

import pytest
import structlog

from tests.agent import fakes


def _to_lab(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Mapping[str, Any]:
    lab = fakes.active_lab()
    if lab is not None:
        lab.record_log(event_dict)
    raise structlog.DropEvent


@pytest.fixture(autouse=True)
def record_logs() -> Iterator[None]:
    """Route structlog into the lab for the duration of one test."""
    old = structlog.get_config()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _to_lab,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        cache_logger_on_first_use=False,
    )
    try:
        yield
    finally:
        structlog.configure(**old)
