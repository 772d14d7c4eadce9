"""VIP ownership (vrrp/vips.py): what a master adds, removes, forgets and puts back.

RFC 5798 §6.4.3: the master owns the virtual addresses, and gives them up when it leaves
MASTER (§6.4.2 on the way in, §6.4.3 on the way out). The rest is what an agent on a real box
must decide around that: a reload, a VIP deleted behind its back, a device coming back."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from hadirector.config.schema import VirtualAddress
from hadirector.vrrp.machine import State
from hadirector.vrrp.vips import (
    AddFailed,
    AddVip,
    Forget,
    LostWithLink,
    RemoveVip,
    VipOwnership,
)

B, M, F = State.BACKUP, State.MASTER, State.FAULT


def vip(text: str, dev: str = "eth0") -> VirtualAddress:
    return VirtualAddress(ipaddress.ip_interface(text), dev)


V1 = vip("192.0.2.50/24")
V2 = vip("192.0.2.51/24")
V3 = vip("2001:db8::50/64")
OTHER = vip("203.0.113.10/32", "dummy0")


def up(*devices: str) -> Callable[[str], bool]:
    """Link states: these devices are up, every other one down."""
    return lambda dev: dev in devices


def holding(*vips: VirtualAddress) -> VipOwnership:
    """An ownership that acquired ``vips`` and had every add succeed."""
    own = VipOwnership()
    for cmd in own.acquire(vips):
        own.added(cmd)
    return own


def test_acquire_adds_every_configured_vip_and_holds_what_was_added() -> None:
    # RFC 5798 §6.4.1/§6.4.2: on becoming master, the virtual addresses are taken.
    own = VipOwnership()
    cmds = own.acquire((V1, V2))
    assert cmds == [AddVip(V1, "acquire"), AddVip(V2, "acquire")]
    assert own.held == frozenset()  # nothing held before an add is reported
    own.added(cmds[0])
    assert own.add_failed(cmds[1], link_up=True) == AddFailed(V2)
    # A refused address is not held: never announced (that would draw traffic to nothing).
    assert own.held == {"192.0.2.50/24"}
    assert own.held_vips((V1, V2)) == [V1]


def test_release_removes_every_configured_vip_held_or_not() -> None:
    # RFC 5798 §6.4.3: leaving MASTER removes the addresses; one left by a crashed run (not
    # held by this run) goes too.
    own = holding(V1)
    cmds = own.release((V1, V2))
    assert cmds == [RemoveVip(V1, "release"), RemoveVip(V2, "release")]
    assert own.holds(V1)  # still on the box until its removal was tried
    for cmd in cmds:
        own.removed(cmd)
    assert own.held == frozenset()


def test_reload_on_a_master_adds_new_vips_and_removes_unconfigured_ones() -> None:
    own = holding(V1, V2)
    cmds = own.reload(M, (V1, V2), (V1, V3))
    assert cmds == [RemoveVip(V2, "reload"), AddVip(V3, "reload")]
    own.removed(cmds[0])
    own.added(cmds[1])
    assert own.held == {"192.0.2.50/24", "2001:db8::50/64"}


def test_reload_leaves_a_vip_given_to_another_instance_in_place() -> None:
    # The same reload moved V2 to another instance: it is that instance's now, not removed.
    own = holding(V1, V2)
    assert own.reload(M, (V1, V2), (V1,), elsewhere=(V2,)) == [Forget(V2)]
    assert own.held == {"192.0.2.50/24"}


def test_reload_of_a_stepped_down_holder_drops_unconfigured_vips_and_adds_nothing() -> None:
    # Preempted, still holding its VIPs for the handover hold: the release to come only knows
    # the new list, so the unconfigured ones go now; a new one is not taken by a backup.
    own = holding(V1, V2)
    assert own.reload(B, (V1, V2), (V1, V3)) == [RemoveVip(V2, "reload")]


def test_reload_of_a_backup_holding_nothing_changes_nothing() -> None:
    # RFC 5798 §6.4.2: a backup does not own the addresses.
    assert VipOwnership().reload(B, (V1,), (V2,)) == []


def test_reload_without_vip_change_changes_nothing() -> None:
    assert holding(V1).reload(M, (V1,), (V1,)) == []


def test_a_master_puts_back_a_held_vip_deleted_behind_its_back() -> None:
    own = holding(V1, OTHER)
    assert own.readd(M, (V1, OTHER), "192.0.2.50/24", up("eth0", "dummy0")) == [AddVip(V1, "readd")]


def test_no_readd_unless_master_and_holding() -> None:
    # Only the master owns the address (RFC 5798 §6.4.3), and only one it holds: a VIP the
    # kernel refused, or one of another instance, is not ours to put back.
    own = holding(V1)
    links = up("eth0")
    assert own.readd(B, (V1,), "192.0.2.50/24", links) == []
    assert own.readd(F, (V1,), "192.0.2.50/24", links) == []
    assert own.readd(M, (V1, V2), "192.0.2.51/24", links) == []
    assert own.readd(M, (V1,), "198.51.100.1/24", links) == []


def test_a_vip_gone_with_its_link_is_not_put_back_until_the_link_returns() -> None:
    own = holding(V1, OTHER)
    assert own.readd(M, (V1, OTHER), "203.0.113.10/32", up("eth0")) == [LostWithLink(OTHER)]
    assert own.holds(OTHER)  # still ours: the device's return puts it back


def test_a_readd_failing_because_the_link_went_meanwhile_is_lost_with_the_link() -> None:
    # The kernel removes IPv6 addresses just before it reports the link down: the add fails,
    # and the link is seen down when the failure is looked at.
    own = holding(V3)
    [cmd] = own.readd(M, (V3,), "2001:db8::50/64", up("eth0"))
    assert own.add_failed(cmd, link_up=False) == LostWithLink(V3)
    assert own.add_failed(cmd, link_up=True) == AddFailed(V3)
    assert own.holds(V3)


def test_a_device_up_again_gets_back_the_held_vips_that_went_with_it() -> None:
    own = holding(V1, OTHER)
    assert own.restore_on(M, (V1, OTHER), "eth0", "dummy0") == [AddVip(OTHER, "restore")]
    assert own.restore_on(M, (V1, OTHER), "eth0", "dummy1") == []


def test_no_restore_on_the_own_interface_nor_when_not_master() -> None:
    # The instance's own interface going down took it out of MASTER (FAULT); it acquires
    # again when it becomes master, not here.
    own = holding(V1, OTHER)
    assert own.restore_on(M, (V1, OTHER), "eth0", "eth0") == []
    assert own.restore_on(B, (V1, OTHER), "eth0", "dummy0") == []
    assert VipOwnership().restore_on(M, (OTHER,), "eth0", "dummy0") == []
