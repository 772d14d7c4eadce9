"""The sync component on this host's own kernel, which has no IPVS (the build machines'
kernels lack it: docs/ARCHITECTURE.md, "The kernel we test against"): said once, clearly,
never fatal; and a configuration without ``[ipvs.sync]`` never opens the kernel at all.
The daemons themselves are driven against a real IPVS kernel in tests/vm/test_lvs_sync.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from hadirector.config.load import load_text
from hadirector.config.schema import Config
from hadirector.ipvs.kernel import IpvsKernel
from hadirector.sync.daemon import SyncDaemons

CONFIG = """
[[vrrp_instance]]
name = "web"
interface = "eth0"
vrid = 1
priority = 100
virtual_addresses = ["192.0.2.1/24"]

[ipvs.sync]
interface = "eth1"
"""

HAS_IPVS = Path("/proc/net/ip_vs").exists() or Path("/sys/module/ip_vs").exists()


@pytest.mark.skipif(HAS_IPVS, reason="this kernel has IPVS (the VM test covers it)")
def test_a_kernel_without_ipvs_is_said_once_and_nothing_fails() -> None:
    sync = SyncDaemons(load_text(CONFIG))

    async def main() -> None:
        await sync.apply()  # start: wants the backup daemon
        sync.on_instance("web", "MASTER")
        await sync.apply()
        sync.on_instance("web", "BACKUP")
        await sync.apply()
        await sync.stop()

    with capture_logs() as events:
        trio.run(main)
    names = [e["event"] for e in events]
    assert names == ["sync.unavailable"], events
    assert "IPVS is not available" in events[0]["error"]
    assert sync.available is False
    assert sync.counters == {"starts": 0, "stops": 0, "errors": 0}


def test_without_sync_settings_the_kernel_is_never_opened() -> None:
    def no_kernel() -> IpvsKernel:
        raise AssertionError("the kernel must not be opened")

    sync = SyncDaemons(Config(), kernel_factory=no_kernel)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(sync.run)
            sync.on_instance("web", "MASTER")
            sync.on_group("lvs", "MASTER")
            await trio.testing.wait_all_tasks_blocked()  # whatever it would do, it has done
            await sync.stop()
            nursery.cancel_scope.cancel()

    with capture_logs() as events:
        trio.run(main)
    assert events == []
    assert sync.available is None


def test_the_deciding_state_follows_instance_or_group() -> None:
    by_instance = SyncDaemons(load_text(CONFIG))
    assert by_instance.deciding_state is None
    by_instance.on_instance("other", "MASTER")
    assert by_instance.deciding_state is None
    by_instance.on_instance("web", "FAULT")
    assert by_instance.deciding_state == "FAULT"

    grouped = load_text(
        CONFIG.replace('interface = "eth1"', 'interface = "eth1"\ngroup = "g"')
        + '\n[[sync_group]]\nname = "g"\ninstances = ["web"]\n'
    )
    by_group = SyncDaemons(grouped)
    by_group.on_instance("web", "MASTER")
    assert by_group.deciding_state is None  # the group has not reported yet
    by_group.on_group("g", "MASTER")
    assert by_group.deciding_state == "MASTER"


def test_bulk_resync_follows_the_role_unless_off_or_both() -> None:
    from hadirector.ipvs.types import SyncState

    sync = SyncDaemons(load_text(CONFIG))
    assert sync._resync_wanted() is None  # the kernel not known to have IPVS yet
    sync.available = True
    assert sync._resync_wanted() is SyncState.BACKUP  # starting: ask the master
    sync.on_instance("web", "MASTER")
    assert sync._resync_wanted() is SyncState.MASTER  # answer joiners
    sync.on_instance("web", "STOPPED")
    assert sync._resync_wanted() is None
    off = SyncDaemons(load_text(CONFIG + "bulk_resync = false\n"))
    off.available = True
    assert off._resync_wanted() is None
    both_text = CONFIG.replace('interface = "eth1"', 'interface = "eth1"\nboth = true')
    both = SyncDaemons(load_text(both_text))
    both.available = True
    assert both._resync_wanted() is None


# --- the task, on a fake kernel ------------------------------------------------------------


class _FakeSync:
    """The kernel's daemons as SyncDaemons drives them (SyncKernel's three calls); a stop
    may be made to hang (a kernel that never answers)."""

    def __init__(self) -> None:
        from hadirector.ipvs.types import SyncDaemon, SyncState

        self.SyncDaemon, self.SyncState = SyncDaemon, SyncState
        self.running: dict[object, object] = {}
        self.stop_hangs = False
        self.on_start: list[object] = []  # called with the state after each start

    async def daemons(self) -> list[object]:
        await trio.lowlevel.checkpoint()
        return list(self.running.values())

    async def start_daemon(self, state: object, ifname: str, syncid: int, **kw: object) -> None:
        await trio.lowlevel.checkpoint()
        self.running[state] = self.SyncDaemon(state, ifname, syncid, **kw)  # type: ignore[arg-type]
        for hook in self.on_start:
            hook(state)  # type: ignore[operator]

    async def stop_daemon(self, state: object) -> None:
        if self.stop_hangs:
            await trio.sleep_forever()
        await trio.lowlevel.checkpoint()
        self.running.pop(state, None)


def _faked(sync: SyncDaemons, fake: _FakeSync, asks: list[str]) -> None:
    """``sync`` on ``fake``, its resync tasks recorded instead of run on sockets."""

    async def open_kernel() -> object:
        sync.available = True
        return object()

    async def resync_task(role: str, _settings: object, scope: trio.CancelScope) -> None:
        asks.append(role)
        with scope:
            await trio.sleep_forever()

    sync._open = open_kernel  # type: ignore[method-assign,assignment]
    sync._control = lambda _kernel: fake  # type: ignore[method-assign,assignment,return-value]
    sync._ask = lambda s, c: resync_task("ask", s, c)  # type: ignore[method-assign]
    sync._answer = lambda s, c: resync_task("answer", s, c)  # type: ignore[method-assign]


def test_a_backup_daemon_started_again_asks_for_a_resync_again() -> None:
    """A master for a few milliseconds (MASTER then BACKUP before the task saw MASTER) had
    its backup daemon stopped and started again: what the master sent meanwhile is lost,
    so it asks again. FAULT and back, with the backup daemon kept, does not."""
    sync = SyncDaemons(load_text(CONFIG))
    fake = _FakeSync()
    asks: list[str] = []
    _faked(sync, fake, asks)

    async def main() -> list[list[str]]:
        seen = []
        async with trio.open_nursery() as nursery:
            await nursery.start(sync.run)
            sync.on_instance("web", "BACKUP")
            await trio.testing.wait_all_tasks_blocked()
            seen.append(list(asks))

            # Preempted again while the master daemon was being started: the task saw
            # MASTER, then BACKUP, and never had a resync task of MASTER in between.
            def back_to_backup(state: object) -> None:
                if state is fake.SyncState.MASTER:
                    sync.on_instance("web", "BACKUP")

            fake.on_start.append(back_to_backup)
            sync.on_instance("web", "MASTER")
            await trio.testing.wait_all_tasks_blocked()
            fake.on_start.clear()
            seen.append(list(asks))
            sync.on_instance("web", "FAULT")
            await trio.testing.wait_all_tasks_blocked()
            sync.on_instance("web", "BACKUP")
            await trio.testing.wait_all_tasks_blocked()
            seen.append(list(asks))
            sync.on_instance("web", "MASTER")
            await trio.testing.wait_all_tasks_blocked()
            seen.append(list(asks))
            await sync.stop()
            nursery.cancel_scope.cancel()
        return seen

    seen = trio.run(main)
    assert seen[0] == ["ask"]
    assert seen[1] == ["ask", "ask"]
    assert seen[2] == ["ask", "ask"]
    assert seen[3] == ["ask", "ask", "answer"]


def test_a_stop_is_bounded_when_the_kernel_does_not_answer() -> None:
    from hadirector.sync import daemon

    sync = SyncDaemons(load_text(CONFIG))
    fake = _FakeSync()
    _faked(sync, fake, [])

    async def main() -> float:
        async with trio.open_nursery() as nursery:
            await nursery.start(sync.run)
            await trio.testing.wait_all_tasks_blocked()
            fake.stop_hangs = True
            started = trio.current_time()
            await sync.stop()
            nursery.cancel_scope.cancel()
        return trio.current_time() - started

    with capture_logs() as events:
        waited = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert waited == daemon.STOP_TIMEOUT_S
    assert [e["event"] for e in events if e["event"] == "sync.stop_timeout"] == [
        "sync.stop_timeout"
    ]
