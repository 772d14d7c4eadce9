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
