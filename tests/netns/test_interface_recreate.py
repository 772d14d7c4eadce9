"""End to end: the master's interface deleted and created again, the agent never restarted.

Two ``hadirector run`` directors in the namespace lab (dir-a 150, dir-b 100, 0.1 s adverts).
dir-a's veth is deleted (``ip link del``): dir-a goes to FAULT and says once that the
interface is gone, dir-b takes over. A veth of the same name is then created again (a new
ifindex, a new MAC), put on the bridge and brought up: in IPv4 first without its address,
so dir-a stays in FAULT and says why; once the address is there (IPv6: once the link-local
is) dir-a re-opens its VRRP socket, comes back as BACKUP and preempts to MASTER, and the
client reaches the VIP at the new MAC. The agent's pid never changes.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from .e2e_util import STATE_TIMEOUT_S, adverts_from, is_garp, is_unsolicited_na, start_pair, vip_for
from .lab import Lab, wait_for
from .prober import ProberRun

pytestmark = pytest.mark.netns

WIRE_TIMEOUT_S = 15.0


def _probe(lab: Lab, target: str) -> dict[str, Any]:
    return ProberRun(lab, target, duration_s=0.5).result(timeout_s=60)


@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_master_interface_deleted_and_created_again(netlab: Lab, family: int) -> None:
    a, b = start_pair(netlab, family=family)
    vip = vip_for(family=family)
    pid = a.pid
    wait_for(lambda: netlab.who_has(vip) == {"dir-a"}, 15, f"{vip} on dir-a")
    seen = len(a.states())
    old_mac_a, mac_b = netlab.mac("dir-a"), netlab.mac("dir-b")
    assert _probe(netlab, vip)["macs"].keys() == {old_mac_a}  # the client resolves the VIP

    # Deleted: FAULT, said once; the peer takes over.
    netlab.delete_link("dir-a")
    b.wait_state("MASTER", STATE_TIMEOUT_S)
    a.wait_state("FAULT", STATE_TIMEOUT_S)
    wait_for(lambda: netlab.who_has(vip) == {"dir-b"}, 15, f"{vip} on dir-b only")
    wait_for(lambda: netlab.neigh("client", vip) == mac_b, 15, "client resolving VIP to dir-b")
    time.sleep(1.0)  # ten advert intervals without the interface: no flood, no busy loop
    assert len(a.records("vrrp.interface_gone")) == 1
    assert a.records("vip.add_failed") == []
    assert a.records("vrrp.send_failed") == []
    assert a.running() and a.pid == pid

    # Created again (new ifindex, new MAC), on the bridge and up.
    t_create = time.monotonic()
    netlab.create_link("dir-a", addresses=family == 6)
    mac_a = netlab.mac("dir-a")
    assert mac_a != old_mac_a
    if family == 4:
        # No IPv4 address to send from yet: still FAULT, and it says why, once.
        wait_for(lambda: a.records("vrrp.interface_not_ready"), 15, "interface_not_ready")
        time.sleep(1.5)
        assert a.state() == "FAULT"
        assert len(a.records("vrrp.interface_not_ready")) == 1
        assert adverts_from(netlab, mac_a, t_create) == []
        netlab.add_lan_addresses("dir-a")

    # Back: BACKUP, then preemption (150 > 100) makes it MASTER; dir-b steps down.
    a.wait_state("MASTER", STATE_TIMEOUT_S)
    b.wait_state("BACKUP", STATE_TIMEOUT_S)
    assert a.states()[seen:] == ["FAULT", "BACKUP", "MASTER"]
    reopened = a.records("vrrp.socket_reopened")
    assert len(reopened) == 1
    assert reopened[0]["ifindex"] != reopened[0]["old_ifindex"]
    wait_for(lambda: netlab.who_has(vip) == {"dir-a"}, 15, f"{vip} back on dir-a only")
    announce = is_garp(vip, mac_a) if family == 4 else is_unsolicited_na(vip, mac_a)
    netlab.wait_wire(announce, WIRE_TIMEOUT_S, "announcement from the new MAC", t_create)
    assert adverts_from(netlab, mac_a, t_create), "no advert from the new interface"

    # The announcement moved the client's entry; it reaches the VIP at the new MAC.
    wait_for(lambda: netlab.neigh("client", vip) == mac_a, 15, "client's entry moving to dir-a")
    result = _probe(netlab, vip)
    assert result["sent"] > 0 and result["lost"] == 0, result
    assert set(result["macs"]) == {mac_a}, result

    # The same process throughout.
    assert a.running() and a.pid == pid
