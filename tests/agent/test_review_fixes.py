"""Regressions found by review: sync groups across a reload, VIPs moved between instances,
stop timeouts derived from the drain bound, the stop state of groups, IPVS write failures."""

from __future__ import annotations

from typing import Any

import trio

from hadirector.config.load import load_text
from hadirector.errors import KernelError
from hadirector.ipvs import manager as manager_module
from tests.agent.fakes import Lab, instance_toml, run_lab
from tests.agent.helpers import VIP, sync_config, sync_hosts


def test_sync_group_still_moves_together_after_a_reload() -> None:
    async def scenario(lab: Lab) -> None:
        _lan, _srv, a, b = sync_hosts(lab)
        ra = await lab.start(a, sync_config(200))
        rb = await lab.start(b, sync_config(100))
        await trio.sleep(2)
        await ra.apply_config(sync_config(210))  # a reload that keeps the group
        await trio.sleep(1)
        a.links.set("eth1", False)
        await trio.sleep(2)
        assert [ra.state(i) for i in ("VI_1", "VI_2")] == ["FAULT", "FAULT"]
        assert [rb.state(i) for i in ("VI_1", "VI_2")] == ["MASTER", "MASTER"]
        a.links.set("eth1", True)
        await trio.sleep(3)
        assert [ra.state(i) for i in ("VI_1", "VI_2")] == ["MASTER", "MASTER"]
        assert a.held() == {VIP, "198.51.100.1/24"}

    run_lab(scenario)


def test_group_reaches_stopped_on_shutdown() -> None:
    async def scenario(lab: Lab) -> None:
        lan, srv = lab.wire("lan"), lab.wire("srv")
        a = lab.host("a", {"eth0": (lan, "192.0.2.1"), "eth1": (srv, "198.51.100.11")})
        ra = await lab.start(a, sync_config(200))
        await trio.sleep(2)
        ra.stop()
        await ra.wait()
        groups = [e.detail["new"] for e in lab.find("vrrp.group_transition", host="a")]
        assert groups[-1] == "STOPPED"

    run_lab(scenario)


def test_vip_moved_to_another_instance_by_a_reload_stays_up() -> None:
    two = instance_toml(name="VI_1", vrid=51, priority=200) + instance_toml(
        name="VI_2", vrid=52, priority=200, vips=["192.0.2.101/24"]
    )
    moved = instance_toml(name="VI_1", vrid=51, priority=200, vips=["192.0.2.101/24"]) + (
        instance_toml(name="VI_2", vrid=52, priority=200, vips=[VIP])
    )

    async def scenario(lab: Lab) -> None:
        lan = lab.wire("lan")
        a = lab.host("a", {"eth0": (lan, "192.0.2.1")})
        ra = await lab.start(a, two)
        await trio.sleep(2)
        assert a.held() == {VIP, "192.0.2.101/24"}
        await ra.apply_config(moved)
        await trio.sleep(1)
        assert [ra.state(i) for i in ("VI_1", "VI_2")] == ["MASTER", "MASTER"]
        assert a.held() == {VIP, "192.0.2.101/24"}

    run_lab(scenario)


def test_stop_timeout_covers_the_longest_drain() -> None:
    from hadirector.agent import STOP_TIMEOUT_S, Agent

    slow = load_text(instance_toml(priority=200, advert_interval_s=5.0))
    fast = load_text(instance_toml(priority=200, advert_interval_s=0.1))

    async def timeout_of(cfg: Any) -> float:
        return Agent(cfg).stop_timeout_s()  # builds adapters, opens nothing

    # A master with nobody to hand over to drains for up to ~4 intervals + the hold.
    assert trio.run(timeout_of, slow) >= 4 * 5.0 + 0.1
    assert trio.run(timeout_of, fast) == STOP_TIMEOUT_S


class _FailingKernel:
    requests = dumps = 0

    async def table(self) -> dict[Any, Any]:
        return {}

    async def apply(self, ops: Any) -> Any:
        raise KernelError("IPVS netlink socket failed: [Errno 105] No buffer space available")


def test_ipvs_write_failure_is_logged_not_fatal() -> None:
    cfg = load_text(
        '[[virtual_server]]\naddress = "192.0.2.100:80"\n'
        '  [[virtual_server.real_server]]\n  address = "10.0.0.1:80"\n'
    )

    async def main() -> None:
        mgr = manager_module.IpvsManager(cfg)
        mgr.kernel = _FailingKernel()  # type: ignore[assignment]
        assert await mgr.reconcile("start") == []
        assert mgr.counters["errors"] == 1
        assert mgr.owned  # the service stays ours: the next reconcile tries again

    trio.run(main)
