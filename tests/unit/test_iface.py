"""Following a deleted and re-created interface (vrrp/iface.py).

RFC 5798 §6.4 has no state for a dead interface; as keepalived does, the machine waits in
FAULT while it is down (vrrp/machine.py). A deleted interface kills the socket bound to it;
the one that comes back under the same name needs a new socket before the machine may leave
FAULT: a backup that hears nothing on a dead socket would take over (§6.4.2, Master_Down)."""

from __future__ import annotations

from hadirector.vrrp.iface import (
    REOPEN_RETRY_S,
    InterfaceFollower,
    InterfaceGone,
    NotReady,
    Reopen,
    Reopened,
    SetLink,
)


def test_link_down_and_up_with_a_live_socket_only_tell_the_machine() -> None:
    f = InterfaceFollower()
    assert f.link(False, stale=False) == [SetLink(False)]
    assert f.link(True, stale=False) == [SetLink(True)]
    assert f.next_deadline() is None


def test_a_deleted_interface_is_said_gone_once_per_disappearance() -> None:
    f = InterfaceFollower()
    assert f.link(False, stale=True, present=False) == [InterfaceGone(), SetLink(False)]
    assert f.link(False, stale=True, present=False) == [SetLink(False)]
    f.link(True, stale=True)
    f.reopened()
    # Gone again after it came back: said again.
    assert f.link(False, stale=True, present=False) == [InterfaceGone(), SetLink(False)]


def test_an_interface_back_under_its_name_gets_a_new_socket_before_the_link_is_up() -> None:
    # The machine must not leave FAULT on a socket that hears nothing: as a backup it would
    # take over when Master_Down_Timer fires (RFC 5798 §6.4.2) while a master exists.
    f = InterfaceFollower()
    f.link(False, stale=True, present=False)
    assert f.link(True, stale=True) == [Reopen()]
    assert f.reopened() == [Reopened(0), SetLink(True)]


def test_up_but_gone_again_before_looked_at_waits_for_its_down() -> None:
    f = InterfaceFollower()
    assert f.link(True, stale=True, present=False) == []
    assert f.next_deadline() is None


def test_a_failed_reopen_stays_down_says_why_once_and_retries_on_a_deadline() -> None:
    f = InterfaceFollower()
    f.link(True, stale=True)
    assert f.reopen_failed(10.0) == [NotReady(REOPEN_RETRY_S)]
    assert f.waiting_for_address
    assert f.next_deadline() == 10.0 + REOPEN_RETRY_S
    assert not f.due(10.0 + REOPEN_RETRY_S / 2)
    assert f.due(10.0 + REOPEN_RETRY_S)
    assert f.retry(link_up=True, stale=True) == [Reopen()]
    assert f.next_deadline() is None  # until this attempt's outcome is known
    assert f.reopen_failed(10.5) == []  # said once
    assert f.next_deadline() == 10.5 + REOPEN_RETRY_S
    assert f.retry(link_up=True, stale=True) == [Reopen()]
    # The success says how many attempts failed before it.
    assert f.reopened() == [Reopened(2), SetLink(True)]
    assert not f.waiting_for_address


def test_a_retry_finding_the_link_down_again_waits_for_its_next_up() -> None:
    f = InterfaceFollower()
    f.link(True, stale=True)
    f.reopen_failed(0.0)
    assert f.retry(link_up=False, stale=True) == []
    assert f.next_deadline() is None


def test_link_down_cancels_a_pending_retry() -> None:
    f = InterfaceFollower()
    f.link(True, stale=True)
    f.reopen_failed(0.0)
    assert f.link(False, stale=True, present=False) == [InterfaceGone(), SetLink(False)]
    assert f.next_deadline() is None


def test_a_retry_without_one_pending_does_nothing() -> None:
    # An address appearing is only a reason to retry while waiting for one.
    f = InterfaceFollower()
    assert f.retry(link_up=True, stale=True) == []


def test_the_socket_followed_meanwhile_means_the_link_is_simply_up() -> None:
    f = InterfaceFollower()
    f.link(True, stale=True)
    f.reopen_failed(0.0)
    assert f.retry(link_up=True, stale=False) == [SetLink(True)]


def test_retry_period_is_configurable() -> None:
    f = InterfaceFollower(retry_s=2.0)
    f.link(True, stale=True)
    assert f.reopen_failed(1.0) == [NotReady(2.0)]
    assert f.next_deadline() == 3.0
