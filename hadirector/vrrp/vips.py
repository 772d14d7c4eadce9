"""VIP ownership: which virtual addresses an instance holds, and what to add or remove.

RFC 5798 section 6.4.3 (and 6.4.2 for the way out of MASTER): the master owns the virtual
addresses; it adds them on entering MASTER (``acquire``) and removes them when it leaves
(``release``). Around that, an agent that lives on a real box has more to decide:

- a reload changes the VIP list (``reload``): a master adds the new VIPs and removes the
  ones no longer configured; one that stepped down but still holds VIPs for the handover
  hold only drops the unconfigured ones (the release to come removes the rest). A VIP the
  same reload gave to another instance is that instance's now: forgotten, not removed.
- a VIP deleted behind our back is put back (``readd``), by a master that holds it, unless
  its device is down or gone (the VIP went with the link: the link's return puts it back).
- a device that is up again gets back the held VIPs that went with it (``restore_on``),
  except the instance's own interface, whose return the machine handles (it left MASTER).

``VipOwnership`` answers with typed commands (``AddVip``, ``RemoveVip``, ``Forget``,
``LostWithLink``); the driver performs them and reports each add's outcome (``added``,
``add_failed``, ``removed``), so the held set is exactly what was added and not removed
since.

This module must not do I/O or import anything but the standard library and the pure core.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from hadirector.config.schema import VirtualAddress
from hadirector.vrrp.machine import State

AddReason = Literal["acquire", "reload", "readd", "restore"]
RemoveReason = Literal["release", "reload"]


@dataclass(frozen=True)
class AddVip:
    """Add this VIP (announce it once added); report the outcome to ``VipOwnership``."""

    vip: VirtualAddress
    reason: AddReason


@dataclass(frozen=True)
class RemoveVip:
    """Remove this VIP; report ``removed`` once tried (no longer held, whatever the outcome)."""

    vip: VirtualAddress
    reason: RemoveReason


@dataclass(frozen=True)
class Forget:
    """A reload gave this VIP to another instance: no longer held, and left in place."""

    vip: VirtualAddress


@dataclass(frozen=True)
class LostWithLink:
    """This held VIP went away with its device (down or deleted): nothing to do until the
    device is up again."""

    vip: VirtualAddress


@dataclass(frozen=True)
class AddFailed:
    """An add failed for another reason than its link going away (to be logged as an error)."""

    vip: VirtualAddress


VipCommand = AddVip | RemoveVip | Forget | LostWithLink


def key(vip: VirtualAddress) -> str:
    """How a VIP is named in the held set (and by the VIP watcher): address/prefix."""
    return str(vip.interface)


class VipOwnership:
    """The VIPs one instance holds, and the decisions that change them."""

    def __init__(self) -> None:
        self._held: set[str] = set()

    @property
    def held(self) -> frozenset[str]:
        return frozenset(self._held)

    def holds(self, vip: VirtualAddress) -> bool:
        return key(vip) in self._held

    def held_vips(self, configured: Iterable[VirtualAddress]) -> list[VirtualAddress]:
        """The configured VIPs held now, in configuration order (what is announced)."""
        return [v for v in configured if key(v) in self._held]

    # -- decisions --------------------------------------------------------------------

    def acquire(self, configured: Sequence[VirtualAddress]) -> list[AddVip]:
        """Entering MASTER (RFC 5798 6.4.1/6.4.2): add every configured VIP."""
        return [AddVip(v, "acquire") for v in configured]

    def release(self, configured: Sequence[VirtualAddress]) -> list[RemoveVip]:
        """Leaving MASTER (RFC 5798 6.4.3): remove every configured VIP, held or not (one
        left by a crashed run must go too); each is held until its removal is reported
        (``removed``), and nothing configured is held afterwards."""
        return [RemoveVip(v, "release") for v in configured]

    def reload(
        self,
        state: State,
        old: Sequence[VirtualAddress],
        new: Sequence[VirtualAddress],
        elsewhere: Iterable[VirtualAddress] = (),
    ) -> list[VipCommand]:
        """A reload changed the configured VIPs from ``old`` to ``new``; ``elsewhere`` are
        the VIPs the new configuration gives to other instances.

        A master adds the new ones and removes the unconfigured ones. An instance that is
        not master but still holds VIPs (stepped down, holding them for the handover) drops
        the unconfigured ones and adds nothing. Anyone else holds nothing: nothing to do."""
        if tuple(old) == tuple(new):
            return []
        if state is State.MASTER:
            target = tuple(new)
        elif self._held:
            target = tuple(v for v in new if key(v) in self._held)
        else:
            return []
        before = set(old)
        after = set(target)
        others = {v.interface for v in elsewhere}
        commands: list[VipCommand] = []
        for vip in sorted(before - after, key=str):
            if vip.interface in others:
                self._held.discard(key(vip))
                commands.append(Forget(vip))
            else:
                commands.append(RemoveVip(vip, "reload"))
        commands.extend(AddVip(v, "reload") for v in target if v not in before)
        return commands

    def readd(
        self,
        state: State,
        configured: Sequence[VirtualAddress],
        vip_text: str,
        link_up: Callable[[str], bool],
    ) -> list[VipCommand]:
        """``vip_text`` vanished behind our back: a master that holds it puts it back
        (RFC 5798 6.4.3: the master owns it), unless its device is down or gone."""
        if state is not State.MASTER or vip_text not in self._held:
            return []
        for vip in configured:
            if key(vip) == vip_text:
                if not link_up(vip.dev):
                    return [LostWithLink(vip)]
                return [AddVip(vip, "readd")]
        return []

    def restore_on(
        self, state: State, configured: Sequence[VirtualAddress], own_interface: str, ifname: str
    ) -> list[AddVip]:
        """``ifname`` is up (again, perhaps created again): a master puts back the VIPs it
        holds there. Not on the instance's own interface: the machine left MASTER (for
        FAULT) when it went, and acquires when it is master again (RFC 5798 6.4.2)."""
        if state is not State.MASTER or ifname == own_interface:
            return []
        return [AddVip(v, "restore") for v in self.held_vips(configured) if v.dev == ifname]

    # -- outcomes ---------------------------------------------------------------------

    def added(self, command: AddVip) -> None:
        """The add succeeded (or the address was there already): the VIP is held."""
        self._held.add(key(command.vip))

    def removed(self, command: RemoveVip) -> None:
        """The removal was tried: the VIP is no longer held, whatever the outcome (a VIP the
        kernel would not remove is not ours to announce or put back)."""
        self._held.discard(key(command.vip))

    def add_failed(self, command: AddVip, *, link_up: bool) -> AddFailed | LostWithLink:
        """The add failed; ``link_up`` is its device's state now. The held set does not
        change: a VIP not held stays so, one held (a re-add) is still ours to put back.

        A re-add that failed because the link went after all (the kernel removes IPv6
        addresses just before it reports the link down or deleted) is lost with the link."""
        if command.reason == "readd" and not link_up:
            return LostWithLink(command.vip)
        return AddFailed(command.vip)
