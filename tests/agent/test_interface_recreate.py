"""An interface deleted and created again under the same name (a new ifindex), agent on fakes.

The deletion is a link down: FAULT, said once, the master's VIPs gone with the interface and
the peer taking over. The new interface gets a new VRRP socket (the old one is closed and no
longer reads) before the instance leaves FAULT; without a source address yet it stays in
FAULT, says why once and tries again until one appears. The agent is never restarted, and
other instances, the IPVS side and VIPs on other devices are not disturbed.
"""

from __future__ import annotations

import ipaddress

import pytest
import trio

from hadirector.agent import REOPEN_RETRY_S
from hadirector.control.client import format_status
from tests.agent.fakes import Host, Lab, instance_toml, pair, run_lab

VIP = "192.0.2.100/24"
VIP_LAN2 = "198.51.100.100/24"


def _two_lans(lab: Lab) -> tuple[Host, Host]:
    """The usual pair, with a second LAN on eth1 (198.51.100.0/24)."""
    _, a, b = pair(lab)
    lan2 = lab.wire("lan2")
    a.interfaces["eth1"] = (lan2, ipaddress.ip_address("198.51.100.1"))
    b.interfaces["eth1"] = (lan2, ipaddress.ip_address("198.51.100.2"))
    return a, b


def _config(priority: int) -> str:
    return instance_toml(priority=priority) + instance_toml(
        name="VI_2", interface="eth1", vrid=52, priority=priority, vips=[VIP_LAN2]
    )


def test_deleted_then_recreated_interface_leaves_fault_without_restart() -> None:
    async def scenario(lab: Lab) -> None:
        a, b = _two_lans(lab)
        ra = await lab.start(a, _config(200))
        rb = await lab.start(b, _config(100))
        await trio.sleep(2)
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "BACKUP")
        old_endpoint = ra.instance("VI_1").sock
        old_index = old_endpoint.ifindex
        t_delete = trio.current_time()
        a.delete_interface("eth0")
        await trio.sleep(5)
        assert ra.state("VI_1") == "FAULT"
        assert rb.state("VI_1") == "MASTER"
        assert VIP in b.held() and VIP not in a.held()
        assert ra.agent.status().instance("VI_1").fault_reasons == ("link down",)
        gone = lab.find("vrrp.interface_gone", host="a")
        assert len(gone) == 1 and gone[0].detail["ifindex"] == old_index
        # No busy loop, no flood: five seconds in FAULT log next to nothing.
        logged = [
            e
            for e in lab.events
            if e.host == "a"
            and e.time > t_delete + 0.5
            and e.subject != "VI_2"
            and e.detail.get("interface") != "eth1"
        ]
        assert len(logged) <= 2, logged
        # The VIP went with the interface: not put back on a missing device.
        assert not lab.find("vip.add_failed", host="a")
        assert not lab.find("add_refused", host="a")

        t_create = trio.current_time()
        new_index = a.create_interface("eth0", "192.0.2.1")
        await trio.sleep(3)
        reopened = lab.find("vrrp.socket_reopened", host="a")
        assert len(reopened) == 1
        assert (reopened[0].detail["old_ifindex"], reopened[0].detail["ifindex"]) == (
            old_index,
            new_index,
        )
        new_endpoint = ra.instance("VI_1").sock
        assert new_endpoint is not old_endpoint and new_endpoint.ifindex == new_index
        assert old_endpoint.closed
        # Back through BACKUP, then preemption (priority 200 > 100) makes it MASTER again.
        after = [(o, n) for h, o, n in lab.transitions("a", "VI_1")]
        assert after[-2:] == [("FAULT", "BACKUP"), ("BACKUP", "MASTER")]
        assert ra.state("VI_1") == "MASTER" and rb.state("VI_1") == "BACKUP"
        assert VIP in a.held() and VIP not in b.held()
        garps = lab.find("garp", host="a", subject="192.0.2.100")
        assert any(g.time > t_create for g in garps)
        # Its adverts go out from the new socket and the peer hears them.
        wire = lab.wires["lan"]
        sent = [f for f, _ in wire.adverts_from("a") if f.time > t_create]
        assert sent and all("b" in f.delivered_to for f in sent)
        # Never restarted (and, VRRP only, no IPVS side built on the way); the other
        # instance was never disturbed.
        assert not ra.returned.is_set()
        assert a.ipvs == [] and ra.agent.built_parts() == ()
        assert [(o, n) for _, o, n in lab.transitions("a", "VI_2")] == [
            ("INIT", "BACKUP"),
            ("BACKUP", "MASTER"),
        ]
        assert VIP_LAN2 in a.held()

    run_lab(scenario)


@pytest.mark.parametrize("heard", [True, False], ids=["address-heard", "notification-lost"])
def test_recreated_interface_without_an_address_stays_in_fault_until_it_has_one(
    heard: bool,
) -> None:
    async def scenario(lab: Lab) -> None:
        _, a, b = pair(lab)
        ra = await lab.start(a, instance_toml(priority=200))
        rb = await lab.start(b, instance_toml(priority=100))
        await trio.sleep(2)
        a.delete_interface("eth0")
        await trio.sleep(2)
        a.create_interface("eth0", None)
        await trio.sleep(10 * REOPEN_RETRY_S)
        assert ra.state("VI_1") == "FAULT"
        assert rb.state("VI_1") == "MASTER"
        not_ready = lab.find("vrrp.interface_not_ready", host="a")
        assert len(not_ready) == 1  # said once, retried quietly
        assert "no IPv4 address" in not_ready[0].detail["error"]
        # The status command says why the instance is in FAULT.
        report = ra.agent.status()
        assert report.instance("VI_1").fault_reasons == ("eth0 re-created, no source address yet",)
        text = format_status(report)
        assert "VI_1 in FAULT: eth0 re-created, no source address yet" in text
        assert not lab.find("vrrp.socket_reopened", host="a")
        t_address = trio.current_time()
        a.set_address("eth0", "192.0.2.1", notify=heard)
        await trio.sleep(2)
        reopened = lab.find("vrrp.socket_reopened", host="a")
        assert len(reopened) == 1 and reopened[0].detail["failed_attempts"] >= 9
        # At once when the address is heard of; else by the next periodic retry.
        assert reopened[0].time - t_address <= (0 if heard else REOPEN_RETRY_S)
        assert ra.state("VI_1") == "MASTER" and rb.state("VI_1") == "BACKUP"
        assert ra.agent.status().instance("VI_1").fault_reasons == ()
        assert not ra.returned.is_set()

    run_lab(scenario)


def test_new_source_address_becomes_the_primary_address() -> None:
    async def scenario(lab: Lab) -> None:
        _, a, b = pair(lab)
        ra = await lab.start(a, instance_toml(priority=200))
        rb = await lab.start(b, instance_toml(priority=100))
        await trio.sleep(2)
        a.delete_interface("eth0")
        await trio.sleep(2)
        assert rb.state("VI_1") == "MASTER"
        t_create = trio.current_time()
        a.create_interface("eth0", "192.0.2.9")  # another address than before (192.0.2.1)
        await trio.sleep(3)
        assert str(ra.machine("VI_1").cfg.primary_address) == "192.0.2.9"
        wire = lab.wires["lan"]
        sources = {str(f.src) for f, _ in wire.adverts_from("a") if f.time > t_create}
        assert sources == {"192.0.2.9"}
        assert ra.state("VI_1") == "MASTER" and rb.state("VI_1") == "BACKUP"


def test_deleted_again_before_coming_up_stays_in_fault() -> None:
    async def scenario(lab: Lab) -> None:
        _, a, b = pair(lab)
        ra = await lab.start(a, instance_toml(priority=200))
        await lab.start(b, instance_toml(priority=100))
        await trio.sleep(2)
        a.delete_interface("eth0")
        await trio.sleep(1)
        a.create_interface("eth0", None)  # no address: retrying
        await trio.sleep(1)
        a.delete_interface("eth0")  # gone again: the retries stop
        await trio.sleep(5)
        assert ra.state("VI_1") == "FAULT"
        assert len(lab.find("vrrp.interface_not_ready", host="a")) == 1
        a.create_interface("eth0", "192.0.2.1")
        await trio.sleep(3)
        assert ra.state("VI_1") == "MASTER"
        assert len(lab.find("vrrp.socket_reopened", host="a")) == 1

    run_lab(scenario)


def test_stop_while_the_interface_is_gone_returns_promptly() -> None:
    async def scenario(lab: Lab) -> None:
        _, a, _ = pair(lab)
        ra = await lab.start(a, instance_toml(priority=200))
        await trio.sleep(2)
        a.delete_interface("eth0")
        a.create_interface("eth0", None)
        await trio.sleep(2)
        t_stop = trio.current_time()
        ra.stop()
        await ra.wait()
        assert ra.returned_at is not None and ra.returned_at - t_stop <= 1.0
        assert not lab.find("agent.stop_timeout", host="a")

    run_lab(scenario)


def test_vip_on_another_device_is_put_back_when_that_device_returns() -> None:
    async def scenario(lab: Lab) -> None:
        _, a, _ = pair(lab, extra_interfaces=["dummy0"])
        config = instance_toml(priority=200).replace(
            f'virtual_addresses = ["{VIP}"]',
            f'virtual_addresses = ["{VIP}", {{ address = "203.0.113.10/32", dev = "dummy0" }}]',
        )
        ra = await lab.start(a, config)
        await trio.sleep(2)
        assert a.held() == {VIP, "203.0.113.10/32"}
        a.delete_interface("dummy0")
        await trio.sleep(1)
        assert a.held() == {VIP}
        assert ra.state("VI_1") == "MASTER"  # its own interface is fine
        assert not lab.find("vip.add_failed", host="a")
        t_create = trio.current_time()
        a.create_interface("dummy0", None)
        await trio.sleep(1)
        assert a.held() == {VIP, "203.0.113.10/32"}
        readded = lab.find("vip.readded", host="a")
        assert readded and readded[-1].time >= t_create
        assert any(g.time >= t_create for g in lab.find("garp", host="a", subject="203.0.113.10"))

    run_lab(scenario)


def test_recreated_with_the_same_ifindex_is_still_a_new_interface() -> None:
    async def scenario(lab: Lab) -> None:
        _, a, b = pair(lab)
        ra = await lab.start(a, instance_toml(priority=200))
        rb = await lab.start(b, instance_toml(priority=100))
        await trio.sleep(2)
        old_endpoint = ra.instance("VI_1").sock
        a.delete_interface("eth0")
        await trio.sleep(2)
        assert rb.state("VI_1") == "MASTER"
        index = a.create_interface("eth0", "192.0.2.1", same_index=True)
        assert index == old_endpoint.ifindex
        await trio.sleep(3)
        assert old_endpoint.closed
        assert len(lab.find("vrrp.interface_gone", host="a")) == 1
        reopened = lab.find("vrrp.socket_reopened", host="a")
        assert len(reopened) == 1 and reopened[0].detail["ifindex"] == index
        assert ra.state("VI_1") == "MASTER" and rb.state("VI_1") == "BACKUP"

    run_lab(scenario)


def test_deleted_and_created_again_before_the_agent_looked() -> None:
    async def scenario(lab: Lab) -> None:
        _, a, b = pair(lab)
        ra = await lab.start(a, instance_toml(priority=200))
        rb = await lab.start(b, instance_toml(priority=100))
        await trio.sleep(2)
        # Both within one instant: the agent reads "down" when the new link already exists.
        a.delete_interface("eth0")
        a.create_interface("eth0", "192.0.2.1", same_index=True)
        await trio.sleep(3)
        assert len(lab.find("vrrp.interface_gone", host="a")) == 1
        assert len(lab.find("vrrp.socket_reopened", host="a")) == 1
        assert ra.state("VI_1") == "MASTER" and rb.state("VI_1") == "BACKUP"
        assert VIP in a.held() and VIP not in b.held()

    run_lab(scenario)


def test_a_link_flap_keeps_the_socket() -> None:
    async def scenario(lab: Lab) -> None:
        _, a, b = pair(lab)
        ra = await lab.start(a, instance_toml(priority=200))
        await lab.start(b, instance_toml(priority=100))
        await trio.sleep(2)
        endpoint = ra.instance("VI_1").sock
        a.links.set("eth0", False)
        await trio.sleep(2)
        assert ra.state("VI_1") == "FAULT"
        a.links.set("eth0", True)
        await trio.sleep(3)
        assert ra.state("VI_1") == "MASTER"
        assert ra.instance("VI_1").sock is endpoint and not endpoint.closed
        assert not lab.find("vrrp.interface_gone", host="a")
        assert not lab.find("vrrp.socket_reopened", host="a")

    run_lab(scenario)
