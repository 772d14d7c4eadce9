"""End to end: the master's interface deleted and created again, the agent never restarted.

Two ``hadirector run`` directors in the namespace lab (dir-a 150, dir-b 100, 0.1 s adverts).
dir-a's veth is deleted (``ip link del``): dir-a goes to FAULT and says once that the
interface is gone, dir-b takes over. A veth of the same name is then created again (a new
MAC; a new ifindex, or the old one, as the kernel may give), put on the bridge and brought
up: in IPv4 first without its address, so dir-a stays in FAULT and says why; once the
address is there (IPv6: once the link-local is) dir-a re-opens its VRRP socket, comes back
as BACKUP and preempts to MASTER, and the client reaches the VIP at the new MAC. The
agent's pid never changes. Multicast and unicast (where the missing address is the
configured ``unicast_src``), IPv4 and IPv6.

The adapters are also checked alone: the link watcher counts a new incarnation of the name
and the announcer sends from the new interface, with a new ifindex or the old one.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hadirector.net.announce import Announcer
from hadirector.net.links import LinkUnavailable, LinkWatcher
from hadirector.net.netlink import IFF_RUNNING, IFF_UP, LinkInfo

from .e2e_util import (
    STATE_TIMEOUT_S,
    adverts_from,
    is_garp,
    is_unsolicited_na,
    start_pair,
    vip_for,
    wait_adverts,
)
from .lab import Lab, Netns, wait_for
from .prober import ProberRun

pytestmark = pytest.mark.netns

WIRE_TIMEOUT_S = 15.0


def _probe(lab: Lab, target: str) -> dict[str, Any]:
    return ProberRun(lab, target, duration_s=0.5).result(timeout_s=60)


@pytest.mark.parametrize(
    ("family", "same_index", "unicast"),
    [(4, False, False), (4, True, False), (4, False, True), (6, False, False)],
    ids=["ipv4", "ipv4-same-ifindex", "ipv4-unicast", "ipv6"],
)
def test_master_interface_deleted_and_created_again(
    netlab: Lab, family: int, same_index: bool, unicast: bool
) -> None:
    a, b = start_pair(netlab, family=family, unicast=unicast)
    vip = vip_for(family=family)
    pid = a.pid
    wait_for(lambda: netlab.who_has(vip) == {"dir-a"}, 15, f"{vip} on dir-a")
    seen = len(a.states())
    old_mac_a, mac_b = netlab.mac("dir-a"), netlab.mac("dir-b")
    assert _probe(netlab, vip)["macs"].keys() == {old_mac_a}  # the client resolves the VIP

    # Deleted: FAULT, said once; the peer takes over.
    old_index = netlab.ifindex("dir-a")
    netlab.delete_link("dir-a")
    b.wait_state("MASTER", STATE_TIMEOUT_S)
    a.wait_state("FAULT", STATE_TIMEOUT_S)
    wait_for(lambda: netlab.who_has(vip) == {"dir-b"}, 15, f"{vip} on dir-b only")
    wait_for(lambda: netlab.neigh("client", vip) == mac_b, 15, "client resolving VIP to dir-b")
    # Ten advert intervals (dir-b's, on the wire) without the interface: no flood, no busy
    # loop. (interface_gone is logged before the FAULT transition: it is in the log.)
    wait_adverts(netlab, mac_b, time.monotonic(), 10)
    assert len(a.records("vrrp.interface_gone")) == 1
    assert a.records("vip.add_failed") == []
    # An advert due between the deletion and the instance hearing of it may fail (logged
    # once, before interface_gone); after that, nothing is sent.
    events = [r["event"] for r in a.records()]
    gone = events.index("vrrp.interface_gone")
    assert "vrrp.send_failed" not in events[gone:], a.log()[-3000:]
    assert a.running() and a.pid == pid

    # Created again (new ifindex, new MAC), on the bridge and up.
    t_create = time.monotonic()
    # The kernel may give the new interface the old ifindex: it is a new interface all the
    # same (multicast membership and packet socket binding went with the old one).
    netlab.create_link("dir-a", addresses=family == 6, index=old_index if same_index else None)
    mac_a = netlab.mac("dir-a")
    assert mac_a != old_mac_a
    assert (netlab.ifindex("dir-a") == old_index) is same_index
    if family == 4:
        # No IPv4 address to send from yet: still FAULT, and it says why, once.
        wait_for(lambda: a.records("vrrp.interface_not_ready"), 15, "interface_not_ready")
        wait_adverts(netlab, mac_b, time.monotonic(), 15)  # 1.5 s of dir-b's intervals
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
    assert reopened[0]["old_ifindex"] == old_index
    assert (reopened[0]["ifindex"] == old_index) is same_index
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


@pytest.mark.parametrize("same_index", [False, True], ids=["new-ifindex", "same-ifindex"])
def test_announcer_and_link_watcher_follow_a_recreated_interface(
    netlab: Lab, same_index: bool
) -> None:
    """The adapters alone: the link watcher counts the new incarnation, the announcer's
    packet socket (unbound by the kernel with the old device) sends from the new one."""
    vip = ipaddress.IPv4Address(vip_for())
    with Netns(netlab.ns("dir-a")).entered():
        announcer = Announcer.open("eth0")
        watcher = LinkWatcher()
        watcher.open_blocking()
    try:
        old_index, old_mac = netlab.ifindex("dir-a"), netlab.mac("dir-a")
        incarnation = watcher.incarnation("eth0")
        announcer.send_garp(vip)
        netlab.delete_link("dir-a")
        wait_for(lambda: watcher.index_of("eth0") is None, 10, "the watcher seeing eth0 go")
        with pytest.raises(LinkUnavailable):
            announcer.send_garp(vip)
        netlab.create_link("dir-a", index=old_index if same_index else None)
        wait_for(lambda: watcher.is_up("eth0"), 10, "the watcher seeing eth0 up again")
        assert watcher.incarnation("eth0") == incarnation + 1
        assert (watcher.index_of("eth0") == old_index) is same_index
        mac = netlab.mac("dir-a")
        since = time.monotonic()
        announcer.send_garp(vip)
        assert (announcer.ifindex, announcer.mac.hex(":")) == (netlab.ifindex("dir-a"), mac)
        assert mac != old_mac
        netlab.wait_wire(is_garp(str(vip), mac), WIRE_TIMEOUT_S, "GARP from the new eth0", since)
    finally:
        announcer.close()
        watcher.close()


# -- the link watcher's bookkeeping, without a kernel ----------------------------------------

_NAMES = ("eth0", "eth1")
_FLAGS = (0, IFF_UP, IFF_UP | IFF_RUNNING)


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(("new", "flags", "rename", "delete")),
            st.integers(1, 3),
            st.sampled_from(_NAMES),
            st.sampled_from(_FLAGS),
        ),
        max_size=40,
    )
)
def test_incarnation_counts_each_new_owner_of_a_name(
    script: list[tuple[str, int, str, int]],
) -> None:
    """Whatever the sequence of creations (new or reused ifindex), flag changes, renames and
    deletions: a name's incarnation goes up exactly when a link newly carries it, and a
    deletion is always reported as a change to down."""
    watcher = LinkWatcher()
    kernel: dict[int, LinkInfo] = {}
    appeared: dict[str, int] = {}
    for op, index, name, flags in script:
        owner = next((i for i in kernel.values() if i.name == name), None)
        reported_before = len(watcher._pending)
        if op == "new":
            if index in kernel or owner is not None:
                continue
            info = LinkInfo(index, name, flags, None)
            kernel[index] = info
            appeared[name] = appeared.get(name, 0) + 1
        elif op == "flags":
            if index not in kernel:
                continue
            info = LinkInfo(index, kernel[index].name, flags, None)
            kernel[index] = info
        elif op == "rename":
            if index not in kernel or owner is not None:
                continue
            info = LinkInfo(index, name, kernel[index].flags, None)
            kernel[index] = info
            appeared[name] = appeared.get(name, 0) + 1
        else:
            if index not in kernel:
                continue
            info = LinkInfo(index, kernel.pop(index).name, 0, None, deleted=True)
        watcher._apply(info)
        if op == "delete":
            assert watcher._pending[-1] == (info.name, False)
            assert len(watcher._pending) > reported_before
        for n in _NAMES:
            assert watcher.incarnation(n) == appeared.get(n, 0), (n, script)
