"""Notify scripts, keepalived-compatible, run in transition order.

For a VRRP instance entering STATE, the per-state script (``notify_master``,
``notify_backup``, ``notify_fault``, ``notify_stop``) runs first as configured, then the
generic ``notify`` script with ``INSTANCE <name> <STATE> <priority>`` appended (``GROUP``
for sync groups), as keepalived does. Scripts are argv, never a shell; each starts in its
own session (process group) and the whole group is killed on timeout, so grandchildren do
not outlive it. Jobs run one at a time from a queue, so a slow script delays later scripts
but never the VRRP state machine. This module runs processes; it decides nothing.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import trio

from hadirector import logs, security

STATE_KEYS = {"MASTER": "master", "BACKUP": "backup", "FAULT": "fault", "STOPPED": "stop"}


@dataclass(frozen=True)
class NotifyJob:
    """One script run: argv, the reason (for logs) and a timeout."""

    argv: tuple[str, ...]
    what: str
    timeout_s: float


def jobs_for(
    scripts: Any, kind: str, name: str, state: str, priority: int, timeout_s: float
) -> list[NotifyJob]:
    """The jobs for ``kind`` ("INSTANCE"/"GROUP") ``name`` entering ``state``, in order.

    ``scripts`` has attributes notify, master, backup, fault, stop (argv tuples or None).
    """
    jobs: list[NotifyJob] = []
    key = STATE_KEYS.get(state)
    specific = getattr(scripts, key) if key else None
    what = f"{kind.lower()} {name} {state}"
    if specific:
        jobs.append(NotifyJob(tuple(specific), what, timeout_s))
    generic = getattr(scripts, "notify", None)
    if generic:
        # keepalived's words for the third argument: STOP, not our STOPPED.
        word = "STOP" if state == "STOPPED" else state
        argv = (*generic, kind, name, word, str(priority))
        jobs.append(NotifyJob(argv, what, timeout_s))
    return jobs


OUTPUT_LIMIT_BYTES = 2048


async def run_one(job: NotifyJob, log: Any, *, quiet: bool = False) -> int | None:
    """Run one script to completion or timeout; return its exit code (None on timeout/error).

    Its output (stdout and stderr, the first ``OUTPUT_LIMIT_BYTES``) goes into the log
    event, never onto the agent's own stdout. ``quiet`` (track scripts, run every second)
    logs only failures to start and timeouts.
    """
    try:
        proc = await trio.lowlevel.open_process(
            list(job.argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **security.spawn_kwargs(),
        )
    except OSError as exc:
        log.error("notify.failed", script=job.argv[0], what=job.what, error=str(exc))
        return None
    output = bytearray()

    async def drain() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.receive_some(4096):
            output.extend(chunk[: max(0, OUTPUT_LIMIT_BYTES - len(output))])

    code: int | None = None
    try:
        with trio.move_on_after(job.timeout_s if job.timeout_s > 0 else math.inf) as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain)
                code = await proc.wait()
                # A background grandchild may hold the pipe open: don't wait for it long.
                with trio.move_on_after(0.2):
                    while nursery.child_tasks:
                        await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
        if scope.cancelled_caught:
            kill_group(proc.pid)
            await proc.wait()
            log.error(
                "notify.timeout",
                script=job.argv[0],
                what=job.what,
                timeout_s=job.timeout_s,
                output=output.decode(errors="replace"),
            )
            return None
    finally:
        if proc.returncode is None:
            kill_group(proc.pid)
            with trio.CancelScope(shield=True):
                await proc.wait()
        if proc.stdout is not None:
            await proc.stdout.aclose()
    text = output.decode(errors="replace")
    if quiet:
        return code
    if code != 0:
        log.warning("notify.exit", script=job.argv[0], what=job.what, code=code, output=text)
    else:
        log.info("notify.done", script=job.argv[0], what=job.what, output=text)
    return code


def kill_group(pid: int) -> None:
    """SIGKILL the process group a script was started as (``start_new_session``)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class NotifyRunner:
    """A FIFO of notify jobs run one at a time by ``run()`` (a task in the agent's nursery)."""

    def __init__(self, buffer: int = 256) -> None:
        self._send, self._receive = trio.open_memory_channel[NotifyJob](buffer)
        self._log = logs.get(component="notify")
        self.pending = 0
        self.failures = 0

    def submit(self, jobs: Sequence[NotifyJob]) -> None:
        for job in jobs:
            try:
                self._send.send_nowait(job)
                self.pending += 1
            except trio.WouldBlock:
                self._log.error(
                    "notify.dropped", script=job.argv[0], what=job.what, reason="queue full"
                )

    async def run(self) -> None:
        async for job in self._receive:
            try:
                if await run_one(job, self._log) != 0:
                    self.failures += 1  # could not start, timed out, or exited non-zero
            finally:
                self.pending -= 1

    async def drain(self, timeout_s: float) -> None:
        """Wait until every queued job has run (used at shutdown), at most ``timeout_s``."""
        with trio.move_on_after(timeout_s):
            while self.pending:
                await trio.sleep(0.01)
