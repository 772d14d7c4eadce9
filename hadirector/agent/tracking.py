"""Tracking: the states of tracked interfaces, scripts, files and the virtual servers'
quorum, the tasks that gather them, and the effective priority they give an instance
(vrrp/track.py decides it).

A track script runs every ``interval`` with rise/fall hysteresis (checks/risefall.py); a
track file is read every second (its integer is the weight input); interfaces come from the
agent's link watcher. Every change calls ``on_change`` once, and the agent posts each
instance its new effective priority.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from hadirector import logs
from hadirector.alerts import notify
from hadirector.checks.risefall import RiseFall
from hadirector.config.schema import Config, TrackScript, VrrpInstance
from hadirector.ports import LinksPort
from hadirector.vrrp import track

TRACK_FILE_INTERVAL_S = 1.0


@dataclass
class TrackStates:
    """Current tracked-resource states shared by every instance."""

    interfaces: dict[str, bool] = field(default_factory=dict)
    scripts: dict[str, bool] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)
    quorum: bool = True  # some virtual server has quorum (agent/pools.py)


class Tracking:
    """Tracked states and their tasks, restarted when the configuration's change."""

    def __init__(self, links: LinksPort, on_change: Callable[[], None]) -> None:
        self.states = TrackStates()
        self._links = links
        self._on_change = on_change
        self._scope: trio.CancelScope | None = None

    def effective_priority(self, cfg: VrrpInstance) -> int | None:
        """Priority after tracking (None = FAULT), from the current tracked states."""
        states = self.states
        items: list[tuple[track.TrackSpec, Any]] = []
        for ref in cfg.track_interfaces:
            up = states.interfaces.get(ref.name, self._links.is_up(ref.name))
            items.append((track.TrackSpec("interface", ref.name, ref.weight), up))
        for ref in cfg.track_scripts:
            ok = states.scripts.get(ref.name, True)
            items.append((track.TrackSpec("script", ref.name, ref.weight), ok))
        for ref in cfg.track_files:
            value = states.files.get(ref.name, 0)
            items.append((track.TrackSpec("file", ref.name, ref.weight), value))
        if cfg.track_quorum is not None:
            spec = track.TrackSpec("quorum", "virtual servers", cfg.track_quorum)
            items.append((spec, states.quorum))
        return track.effective_priority(cfg.priority, items)

    def set_interface(self, ifname: str, up: bool) -> None:
        """A tracked interface went up or down (from the agent's link watcher)."""
        self.states.interfaces[ifname] = up
        self._on_change()

    def set_quorum(self, up: bool) -> None:
        """Whether any virtual server has quorum changed (from the pool keeper)."""
        self.states.quorum = up
        self._on_change()

    def start(self, nursery: trio.Nursery, config: Config) -> None:
        """(Re)start the script and file tasks of ``config`` in ``nursery``."""
        if self._scope is not None:
            self._scope.cancel()
        scope = trio.CancelScope()
        self._scope = scope

        async def tracking() -> None:
            with scope:
                async with trio.open_nursery() as n:
                    for ts in config.track_scripts:
                        n.start_soon(self._script_loop, ts)
                    for tf in config.track_files:
                        n.start_soon(self._file_loop, tf.name, tf.path)

        nursery.start_soon(tracking)

    async def _script_loop(self, ts: TrackScript) -> None:
        log = logs.get(track_script=ts.name)
        hysteresis = RiseFall(ts.rise, ts.fall, up=None)
        while True:
            job = notify.NotifyJob(ts.script, f"track_script {ts.name}", ts.timeout_s)
            code = await notify.run_one(job, log, quiet=True)
            change = hysteresis.update(code == 0)
            if change is not None:
                self.states.scripts[ts.name] = change.up
                log.info("track.script", name=ts.name, ok=change.up, code=code)
                self._on_change()
            await trio.sleep(ts.interval_s)

    async def _file_loop(self, name: str, path: str) -> None:
        log = logs.get(track_file=name)
        last: int | None = None
        while True:
            try:
                value = int(Path(path).read_text().strip() or "0")
            except (OSError, ValueError) as exc:
                if last != 0:
                    log.warning("track.file_unreadable", name=name, path=path, error=str(exc))
                value = 0
            if value != last:
                last = value
                self.states.files[name] = value
                log.info("track.file", name=name, value=value)
                self._on_change()
            await trio.sleep(TRACK_FILE_INTERVAL_S)
