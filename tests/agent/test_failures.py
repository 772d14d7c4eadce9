"""The kernel refusing things (VIP add/remove, a missing interface) must not take the agent
down: it logs, keeps the rest going, and VRRP goes on."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import trio

from tests.agent.fakes import Lab, instance_toml, pair, run_lab

VIP1 = "192.0.2.100/24"
VIP2 = "192.0.2.101/24"


def test_refused_vip_add_on_takeover_keeps_the_others_and_the_agent() -> None:
    async def scenario(lab: Lab) -> None:
        _, a, _ = pair(lab)
        a.addresses.refuse_add.add(VIP1)
        ra = await lab.start(a, instance_toml(priority=200, vips=[VIP1, VIP2]))
        await trio.sleep(2)
        assert ra.state("VI_1") == "MASTER"
        assert a.held() == {VIP2}
        assert lab.find("vip.add_failed", host="a")
        assert not ra.returned.is_set()

    run_lab(scenario)


def test_refused_cleanup_at_start_does_not_stop_the_agent() -> None:
    async def scenario(lab: Lab) -> None:
        _, a, _ = pair(lab)
        a.addresses.refuse_remove.add(VIP2)
        ra = await lab.start(a, instance_toml(priority=200, vips=[VIP1, VIP2]))
        await trio.sleep(2)
        assert not ra.returned.is_set()
        assert ra.state("VI_1") == "MASTER"
        assert a.held() == {VIP1, VIP2}
        assert lab.find("vip.remove_failed", host="a")

    run_lab(scenario)


def test_refused_add_on_reload_does_not_stop_the_agent(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"

    async def scenario(lab: Lab) -> None:
        _, a, _ = pair(lab)
        path.write_text(instance_toml(priority=200))
        ra = await lab.start(a, path.read_text(), config_path=path)
        await trio.sleep(2)
        a.addresses.refuse_add.add(VIP2)
        path.write_text(instance_toml(priority=200, vips=[VIP1, VIP2]))
        await ra.reload()
        await trio.sleep(1)
        assert not ra.returned.is_set()
        assert ra.state("VI_1") == "MASTER"
        assert a.held() == {VIP1}
        # Nothing announced for an address that is not there.
        assert not lab.find("garp", host="a", subject="192.0.2.101")

    run_lab(scenario)


def test_refused_readd_after_external_delete_does_not_stop_the_agent() -> None:
    async def scenario(lab: Lab) -> None:
        _, a, _ = pair(lab)
        ra = await lab.start(a, instance_toml(priority=200))
        await trio.sleep(2)
        a.addresses.refuse_add.add(VIP1)
        a.addresses.vanish(VIP1)
        await trio.sleep(1)
        assert not ra.returned.is_set()
        assert ra.state("VI_1") == "MASTER"
        assert lab.find("vip.add_failed", host="a")

    run_lab(scenario)


def test_missing_interface_is_retried_and_other_instances_run() -> None:
    async def scenario(lab: Lab) -> None:
        _, a, _ = pair(lab)
        config = instance_toml(priority=200) + instance_toml(
            name="VI_2", interface="eth9", vrid=52, priority=200, vips=["198.51.100.1/24"]
        )
        ra = await lab.start(a, config)
        await trio.sleep(2.5)
        assert ra.state("VI_1") == "MASTER"
        assert ra.state("VI_2") == "INIT"
        assert len(lab.find("vrrp.socket_error", host="a")) == 1  # logged once, not each retry
        srv = lab.wire("srv")
        a.interfaces["eth9"] = (srv, ipaddress.ip_address("198.51.100.11"))
        await trio.sleep(2)
        assert ra.state("VI_2") == "MASTER"
        assert "198.51.100.1/24" in a.held()
        ra.stop()
        with trio.fail_after(5):
            await ra.wait()
        assert a.held() == set()

    run_lab(scenario)


def test_stop_while_an_interface_is_missing_returns_promptly() -> None:
    async def scenario(lab: Lab) -> None:
        _, a, _ = pair(lab)
        config = instance_toml(priority=200) + instance_toml(
            name="VI_2", interface="eth9", vrid=52, priority=200, vips=["198.51.100.1/24"]
        )
        ra = await lab.start(a, config)
        await trio.sleep(2.5)
        t_stop = trio.current_time()
        ra.stop()
        await ra.wait()
        assert ra.returned_at is not None and ra.returned_at - t_stop <= 1.0
        assert a.held() == set()
        assert not lab.find("agent.stop_timeout", host="a")

    run_lab(scenario)


def test_a_vip_that_could_not_be_added_is_not_announced() -> None:
    async def scenario(lab: Lab) -> None:
        _, a, _ = pair(lab)
        a.addresses.refuse_add.add(VIP1)
        await lab.start(a, instance_toml(priority=200, vips=[VIP1, VIP2]))
        await trio.sleep(7)
        assert not lab.find("garp", host="a", subject="192.0.2.100")
        assert lab.find("garp", host="a", subject="192.0.2.101")

    run_lab(scenario)
