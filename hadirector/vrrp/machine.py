"""The VRRP router state machine of RFC 5798 §6 (and RFC 3768 for v2), sans-IO.

Theory of operation
-------------------
A ``VrrpMachine`` is one virtual router (one VRID on one interface). It never touches a
socket, an address or a clock: the caller feeds it events with the current monotonic time
(``now``, float seconds) and performs the actions it returns, in the order returned. Timers
are deadlines: the caller sleeps until ``next_deadline()`` (or the next event) and then calls
``timer(now)``, which runs every timer that is due. A caller that wakes anyway may call it
earlier: the Adver_Timer is due from ``ADVERT_EARLY_FRACTION`` (1/64) of the interval before
it expires (``timer_window()``), so the instances of one process send in shared wake-ups;
Master_Down and the other timers run only when they expire.

States (RFC 5798 §6.4): INIT until ``start``; BACKUP watches the Master_Down_Timer; MASTER
sends an advert every Advertisement_Interval (Adver_Timer) and holds the virtual addresses;
FAULT (not in the RFC, kept from keepalived) is neither: the link is down, a tracked resource
failed, or the sync group put us there; STOPPED is final.

- §6.4.1 start: priority 255 (address owner) goes straight to MASTER, anyone else to BACKUP
  with Master_Adver_Interval = our Advertisement_Interval and the Master_Down_Timer armed.
- §6.4.2 BACKUP, advert received: priority 0 (the master is leaving) -> Master_Down_Timer =
  Skew_Time; priority >= ours, or preemption off -> (v3) adopt the sender's interval as
  Master_Adver_Interval, recompute Skew_Time/Master_Down_Interval and reset the
  Master_Down_Timer; preemption on and lower priority -> discard (the timer keeps running, so
  we take over when it expires). The timer expiring makes us MASTER.
- §6.4.3 MASTER, advert received: priority 0 -> send an advert at once; higher priority, or
  equal priority and a greater primary address than ours -> BACKUP (v3: adopt its interval),
  after one last advert at our own priority (a deviation from §6.4.3, which sends none: it
  tells a winner that never heard us that there was a split brain, see below);
  anything else is discarded. Every advert a master hears comes from another master (a
  backup is silent), so a discarded one means split brain: we send an advert at once, which
  makes the other step down, and emit ``AcquireAddresses`` again so the caller re-announces
  (a fresh gratuitous ARP / unsolicited NA puts the neighbours' caches right).
- Receive checks: the caller runs them all (vrrp/receive.py, RFC 5798 §7.1). The interval
  check is repeated here with the same function (``receive.interval_rejection``) for a
  caller that feeds adverts directly: v2 adverts must carry our interval
  (``interval_mismatch``), v3 intervals above ``max_adopted_interval_cs`` are not adopted
  but rejected (``interval_out_of_bounds``). A rejected advert is counted and touches no
  timer and no state.

Timer arithmetic lives in ``timers.py`` (exact, never rounded to centiseconds).

Make-before-break, for a loss-free handover between the two directors of a pair:

- The taker emits ``[AcquireAddresses, SendAdvert, Transition]``: the addresses are up and
  announced before its first advert makes the old master step down, and both are on the
  wire before the transition is reported (its log line, notify scripts, sync group and
  alerts cost the caller time a client waiting for the announcement should not wait).
- ``stop()`` while MASTER sends a priority-0 advert (the peer then waits only Skew_Time,
  §6.4.2) but keeps the addresses: the machine is *draining* (state still MASTER, ``draining``
  true). It repeats the priority-0 advert every Advertisement_Interval in case one is lost.
  Hearing an advert with priority > 0 from another router means the taker is master: after
  ``handover_hold_cs`` more the machine emits ``[ReleaseAddresses, Transition(->STOPPED)]``.
  If nobody is heard within the Master_Down_Interval a priority-1 peer would use for our
  interval (3 * interval + 255/256 * interval in v3; a bound on the peer's view) it releases
  anyway. Not MASTER at ``stop()``: straight to STOPPED.
- A master preempted by a better one (or told BACKUP by its sync group) reports
  ``Transition(->BACKUP)`` at once but emits ``ReleaseAddresses`` only ``handover_hold_cs``
  later (the taker has already announced); becoming MASTER again before that cancels the
  pending release.
- FAULT releases at once: no hold. Leaving MASTER for FAULT because of tracking or the sync
  group sends a priority-0 advert first, then reports the transition, then releases; on link
  down no advert is sent (the link cannot carry it).

Preemption delay (what is implemented, close to keepalived's ``preempt_delay``): for
``preempt_delay_cs`` after the machine (re)enters BACKUP from INIT or FAULT, adverts from a
lower-priority master are accepted as if preemption were off (they reset the
Master_Down_Timer, counted as ``preempt_delayed``); after that window they are discarded and
preemption follows the normal §6.4.2 path (the Master_Down_Timer expires). The delay never
holds back a takeover from a master that fell silent or sent priority 0.

An outside hold (``hold_preempt``, used while a bulk resync of the connection table is
awaited: sync/daemon.py) works the same way until its deadline or its release: adverts from
a lower-priority master are accepted as if preemption were off (``preempt_held``). It too
never holds back a takeover from a master that fell silent or sent priority 0.

Tracking (``set_priority``) changes the effective priority: in BACKUP it applies to the next
Skew_Time/Master_Down_Interval computed, in MASTER from the next advert. ``None`` means a
tracked resource failed: FAULT. The address owner (base priority 255) keeps 255 whatever the
tracking says, except for a fault.

Sync groups (``force``): FAULT, BACKUP or MASTER on command. A machine that is faulty on its
own (link down, tracking) refuses BACKUP and MASTER, and reports ``Transition(FAULT, FAULT,
reason)``; a machine put in FAULT by its group that then becomes faulty on its own reports
the same, so the group learns the fault is this member's own (these reports change nothing
else and are not counted as transitions); recovering from an own fault leaves FAULT even if
the group had forced it there (the group decides whether to put it back).

This module must not do I/O, read a clock, or import anything but the standard library and
the rest of the pure core.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from hadirector.errors import ConfigError, Problem
from hadirector.vrrp import timers
from hadirector.vrrp.receive import interval_rejection

IPAddress = IPv4Address | IPv6Address

MAX_V3_INTERVAL_CS = 4095  # 12-bit field (RFC 5798 §5.2.7)
# An advert may go out this fraction of its interval before its Adver_Timer expires, when
# the caller wakes for another timer anyway (``timer_window``): instances sharing a process
# then send in one wake-up instead of one each.
ADVERT_EARLY_FRACTION = 1 / 64
MAX_V2_INTERVAL_S = 255  # 8-bit field (RFC 3768 §5.3.7)
OWNER_PRIORITY = 255
STOP_PRIORITY = 0


class State(enum.Enum):
    """Router states (RFC 5798 §6.4 plus FAULT and STOPPED)."""

    INIT = "INIT"
    BACKUP = "BACKUP"
    MASTER = "MASTER"
    FAULT = "FAULT"
    STOPPED = "STOPPED"


@dataclass(frozen=True, kw_only=True)
class MachineConfig:
    """Parameters of one virtual router; validated on construction (ConfigError)."""

    vrid: int
    priority: int
    advert_interval_cs: int
    version: int
    primary_address: IPAddress
    max_adopted_interval_cs: int
    preempt: bool = True
    preempt_delay_cs: int = 0
    handover_hold_cs: int = 10

    def __post_init__(self) -> None:
        problems: list[Problem] = []
        if not 1 <= self.vrid <= 255:
            problems.append(Problem("vrid", f"must be 1..255, got {self.vrid}"))
        if not 1 <= self.priority <= 255:
            problems.append(Problem("priority", f"must be 1..255, got {self.priority}"))
        if self.version not in (2, 3):
            problems.append(Problem("version", f"must be 2 or 3, got {self.version}"))
        if self.version == 2:
            if (
                self.advert_interval_cs % 100 != 0
                or not 1 <= self.advert_interval_cs // 100 <= MAX_V2_INTERVAL_S
            ):
                problems.append(
                    Problem(
                        "advert_interval_cs",
                        f"VRRPv2 needs whole seconds 1..{MAX_V2_INTERVAL_S}, "
                        f"got {self.advert_interval_cs} cs",
                    )
                )
        elif not 1 <= self.advert_interval_cs <= MAX_V3_INTERVAL_CS:
            problems.append(
                Problem(
                    "advert_interval_cs",
                    f"must be 1..{MAX_V3_INTERVAL_CS} cs, got {self.advert_interval_cs}",
                )
            )
        if not 1 <= self.max_adopted_interval_cs <= MAX_V3_INTERVAL_CS:
            problems.append(
                Problem(
                    "max_adopted_interval_cs",
                    f"must be 1..{MAX_V3_INTERVAL_CS} cs, got {self.max_adopted_interval_cs}",
                )
            )
        if self.preempt_delay_cs < 0:
            problems.append(Problem("preempt_delay_cs", "must not be negative"))
        if self.handover_hold_cs < 0:
            problems.append(Problem("handover_hold_cs", "must not be negative"))
        if not isinstance(self.primary_address, IPv4Address | IPv6Address):
            problems.append(Problem("primary_address", "must be an IP address"))
        if problems:
            raise ConfigError(problems)


@dataclass(frozen=True)
class SendAdvert:
    """Send one advertisement with this priority and interval."""

    priority: int
    interval_cs: int


@dataclass(frozen=True)
class AcquireAddresses:
    """Add the virtual addresses (if missing), then announce them (GARP / unsolicited NA)."""


@dataclass(frozen=True)
class ReleaseAddresses:
    """Remove the virtual addresses."""


@dataclass(frozen=True)
class Transition:
    """The machine moved from ``old`` to ``new`` (report: log, notify, sync group)."""

    old: State
    new: State
    reason: str


Action = SendAdvert | AcquireAddresses | ReleaseAddresses | Transition

COUNTER_NAMES = (
    "received",
    "rejected",
    "interval_mismatch",
    "interval_out_of_bounds",
    "ignored_inactive",
    "own_advert",
    "priority_zero_received",
    "priority_zero_sent",
    "adverts_sent",
    "accepted",
    "discarded_lower_priority",
    "preempt_delayed",
    "preempt_held",
    "preempted",
    "split_brain_won",
    "transitions",
    "became_master",
    "became_backup",
    "faults",
    "forced",
    "force_refused",
    "force_ignored",
    "drain_taker_heard",
    "drain_timeouts",
    "release_cancelled",
    "reconfigured",
)


def _address_key(address: IPAddress) -> tuple[int, int]:
    return (address.version, int(address))


class VrrpMachine:
    """One VRRP virtual router. See the module docstring for the theory of operation."""

    def __init__(self, cfg: MachineConfig) -> None:
        self.cfg = cfg
        self.state = State.INIT
        self.effective_priority = cfg.priority
        self.master_adver_interval_cs = cfg.advert_interval_cs
        self.counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self._link_up = True
        self._tracking_fault = False
        self._group_fault = False
        self._holding = False
        self._adver_at: float | None = None
        self._down_at: float | None = None
        self._down_reason = ""
        self._release_at: float | None = None
        self._drain_at: float | None = None
        self._draining = False
        self._taker_heard = False
        self._backup_since: float | None = None
        self._last_advert: SendAdvert | None = None
        self._adver_interval = (0, 0.0)  # (Advertisement_Interval in cs, in seconds)
        self._advert_early_s = timers.interval_s(cfg.advert_interval_cs) * ADVERT_EARLY_FRACTION
        self._preempt_hold_until: float | None = None
        # The last advert BACKUP accepted for a reason that does not depend on the time
        # (``receive_again``): priority, interval, source, and what the answer depended on.
        self._again: tuple[int, int, IPAddress, MachineConfig, int, int, float] | None = None

    # -- properties ------------------------------------------------------------------

    @property
    def stopped(self) -> bool:
        """True once the machine is STOPPED: the caller may exit."""
        return self.state is State.STOPPED

    @property
    def draining(self) -> bool:
        """True between ``stop()`` as MASTER and the final release."""
        return self._draining

    @property
    def holding_addresses(self) -> bool:
        """True while the actions emitted so far leave the virtual addresses held."""
        return self._holding

    @property
    def faulty(self) -> bool:
        """True while the machine is faulty on its own (link down or tracking fault)."""
        return not self._link_up or self._tracking_fault

    @property
    def fault_reasons(self) -> tuple[str, ...]:
        """Why the machine is (or would be) in FAULT, for status displays."""
        reasons = []
        if not self._link_up:
            reasons.append("link down")
        if self._tracking_fault:
            reasons.append("tracking")
        if self._group_fault:
            reasons.append("sync group")
        return tuple(reasons)

    def timer_window(self) -> tuple[float, float] | None:
        """When ``timer`` may next be called with effect, and when it must be: the
        Adver_Timer may run up to ``ADVERT_EARLY_FRACTION`` of the interval early, every
        other timer only when it expires. None if no timer is running."""
        adver_at = self._adver_at
        if self._down_at is None and self._release_at is None and self._drain_at is None:
            # A master's lone Adver_Timer, or none (the general case below, unrolled).
            return None if adver_at is None else (adver_at - self._advert_early_s, adver_at)
        down_at = self._down_at
        lone = adver_at is None and self._release_at is None and self._drain_at is None
        if lone and down_at is not None:
            return down_at, down_at  # a backup's lone Master_Down_Timer
        deadline = self.next_deadline()
        if deadline is None:
            return None
        adver_at = self._adver_at
        if adver_at is None:
            return deadline, deadline
        return min(deadline, adver_at - self._advert_early_s), deadline

    def next_deadline(self) -> float | None:
        """When ``timer`` must next be called, or None if no timer is running."""
        earliest = self._adver_at
        for t in (self._down_at, self._release_at, self._drain_at):
            if t is not None and (earliest is None or t < earliest):
                earliest = t
        return earliest

    # -- timer arithmetic ------------------------------------------------------------

    def _skew_s(self) -> float:
        return timers.skew_time_s(
            self.effective_priority, self.master_adver_interval_cs, self.cfg.version
        )

    def _master_down_s(self) -> float:
        return timers.master_down_interval_s(
            self.effective_priority, self.master_adver_interval_cs, self.cfg.version
        )

    def _advert(self, now: float, priority: int | None = None) -> SendAdvert:
        """An advert to send now; resets the Adver_Timer (RFC 5798 §6.4.3)."""
        interval_cs = self.cfg.advert_interval_cs
        if interval_cs != self._adver_interval[0]:  # (converted once per interval)
            self._adver_interval = (interval_cs, timers.interval_s(interval_cs))
        self._adver_at = now + self._adver_interval[1]
        self.counters["adverts_sent"] += 1
        if priority == STOP_PRIORITY:
            self.counters["priority_zero_sent"] += 1
        if priority is None:
            priority = self.effective_priority
        advert = self._last_advert
        if advert is None or advert.priority != priority or advert.interval_cs != interval_cs:
            advert = self._last_advert = SendAdvert(priority, interval_cs)  # a value: reused
        return advert

    def _clear_timers(self) -> None:
        self._adver_at = None
        self._down_at = None
        self._release_at = None
        self._drain_at = None

    # -- state changes ---------------------------------------------------------------

    def _transition(self, new: State, reason: str) -> Transition:
        old = self.state
        self.state = new
        self.counters["transitions"] += 1
        if new is State.MASTER:
            self.counters["became_master"] += 1
        elif new is State.BACKUP:
            self.counters["became_backup"] += 1
        elif new is State.FAULT:
            self.counters["faults"] += 1
        return Transition(old, new, reason)

    def _release(self) -> list[Action]:
        self._release_at = None
        if not self._holding:
            return []
        self._holding = False
        return [ReleaseAddresses()]

    def _become_master(self, now: float, reason: str) -> list[Action]:
        """Taker order: addresses up and announced, the first advert, then the transition
        reported (the state is MASTER from now on all the same)."""
        self._down_at = None
        if self._release_at is not None:
            self._release_at = None
            self.counters["release_cancelled"] += 1
        transition = self._transition(State.MASTER, reason)
        self._holding = True
        return [AcquireAddresses(), self._advert(now), transition]

    def _become_backup(self, now: float, reason: str) -> list[Action]:
        """§6.4.1 (and leaving FAULT): BACKUP with our own interval, Master_Down armed."""
        self._clear_timers()
        self.master_adver_interval_cs = self.cfg.advert_interval_cs
        self._backup_since = now
        self._arm_master_down(now, "master down interval expired")
        actions: list[Action] = [self._transition(State.BACKUP, reason)]
        actions += self._release()
        return actions

    def _arm_master_down(self, now: float, reason: str) -> None:
        self._down_at = now + self._master_down_s()
        self._down_reason = reason

    def _initialize(self, now: float, reason: str) -> list[Action]:
        """§6.4.1: owner to MASTER, others to BACKUP; FAULT while faulty on our own."""
        if self.faulty:
            if self.state is State.FAULT:
                return []
            return self._enter_fault(now, reason, send_advert=False)
        if self.effective_priority == OWNER_PRIORITY:
            self._clear_timers()
            self._backup_since = now
            return self._become_master(now, reason)
        return self._become_backup(now, reason)

    def _enter_fault(self, now: float, reason: str, *, send_advert: bool) -> list[Action]:
        """Leave BACKUP/MASTER for FAULT, releasing at once (no hold)."""
        actions: list[Action] = []
        if self.state is State.MASTER and send_advert:
            actions.append(self._advert(now, STOP_PRIORITY))
        self._clear_timers()
        actions.append(self._transition(State.FAULT, reason))
        actions += self._release()
        return actions

    def _finish_stop(self, reason: str) -> list[Action]:
        self._clear_timers()
        self._draining = False
        actions = self._release()
        actions.append(self._transition(State.STOPPED, reason))
        return actions

    def _step_down(self, now: float, reason: str) -> list[Action]:
        """MASTER -> BACKUP, the addresses kept for ``handover_hold_cs`` (make-before-break)."""
        self._adver_at = None
        self._arm_master_down(now, "master down interval expired")
        actions: list[Action] = [self._transition(State.BACKUP, reason)]
        if self.cfg.handover_hold_cs > 0:
            self._release_at = now + timers.interval_s(self.cfg.handover_hold_cs)
        else:
            actions += self._release()
        return actions

    # -- events ----------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """INIT -> MASTER (owner) or BACKUP (RFC 5798 §6.4.1); FAULT if already faulty."""
        if self.state is not State.INIT:
            return []
        return self._initialize(now, "startup")

    def receive(
        self, *, priority: int, interval_cs: int, source: IPAddress, now: float
    ) -> list[Action]:
        """An advert that passed the caller's checks (TTL, checksum, VRID, auth, sources)."""
        self.counters["received"] += 1
        if self.state not in (State.BACKUP, State.MASTER):
            self.counters["ignored_inactive"] += 1
            return []
        if source == self.cfg.primary_address:
            self.counters["own_advert"] += 1
            return []
        rejected = interval_rejection(  # RFC 3768 §7.1 (v2), bounded adoption (v3)
            version=self.cfg.version,
            advert_interval_cs=self.cfg.advert_interval_cs,
            max_adopted_interval_cs=self.cfg.max_adopted_interval_cs,
            interval_cs=interval_cs,
        )
        if rejected is not None:
            self.counters[rejected.reason] += 1
            self.counters["rejected"] += 1
            return []
        if priority == STOP_PRIORITY:
            self.counters["priority_zero_received"] += 1
        if self._draining:
            return self._receive_draining(priority, now)
        if self.state is State.BACKUP:
            return self._receive_backup(priority, interval_cs, source, now)
        return self._receive_master(priority, interval_cs, source, now)

    def receive_again(
        self, priority: int, interval_cs: int, source: IPAddress, now: float
    ) -> float | None:
        """``receive`` of the advert BACKUP last accepted whatever the time (priority at or
        above ours, or preemption off: RFC 5798 §6.4.2 "reset the Master_Down_Timer to
        Master_Down_Interval"), heard again from the same source object while the state,
        the configuration, our priority and Master_Adver_Interval are as they were then:
        the same answer (no action; ``received`` and ``accepted`` counted; the
        Master_Down_Timer reset from ``now``) in one call, and ``next_deadline()`` after
        it. None when it is not that case: nothing done, call ``receive``.

        The caller's receive checks (§7.1) are its own: it asks this only for a packet
        they accepted."""
        again = self._again
        if (
            again is None
            or again[2] is not source
            or again[0] != priority
            or again[1] != interval_cs
            or again[3] is not self.cfg
            or again[4] != self.effective_priority
            or again[5] != self.master_adver_interval_cs
            or self.state is not State.BACKUP
            or self._draining
        ):
            return None
        counters = self.counters
        counters["received"] += 1
        counters["accepted"] += 1
        self._down_at = down_at = now + again[6]
        self._down_reason = "master down interval expired"
        if self._adver_at is None and self._release_at is None and self._drain_at is None:
            return down_at  # the lone timer of a backup
        return self.next_deadline()

    def advert_tick(self, now: float) -> tuple[SendAdvert, float, float] | None:
        """``timer(now)`` when the Adver_Timer is the only timer running and it is due
        (RFC 5798 §6.4.3: send an advert, reset the Adver_Timer): that advert, and the
        timer window after it (``timer_window``), in one call. None when it is not that
        case: nothing done, call ``timer``."""
        adver_at = self._adver_at
        if (
            adver_at is None
            or adver_at - self._advert_early_s > now
            or self._down_at is not None
            or self._drain_at is not None
            or self._release_at is not None
        ):
            return None
        advert = self._advert(now, STOP_PRIORITY if self._draining else None)
        adver_at = self._adver_at
        assert adver_at is not None
        return advert, adver_at - self._advert_early_s, adver_at

    def _adopt_interval(self, interval_cs: int) -> None:
        if self.cfg.version == 3:  # RFC 5798 §6.4.2; v2 intervals are equal by the check
            self.master_adver_interval_cs = interval_cs

    def _receive_backup(
        self, priority: int, interval_cs: int, source: IPAddress, now: float
    ) -> list[Action]:
        if priority == STOP_PRIORITY:  # §6.4.2: the master is leaving, wait only Skew_Time
            self._down_at = now + self._skew_s()
            self._down_reason = "master released (priority 0)"
            return []
        held = (
            self.cfg.preempt
            and self._backup_since is not None
            and now < self._backup_since + timers.interval_s(self.cfg.preempt_delay_cs)
        )
        hold_until = self._preempt_hold_until
        outside = self.cfg.preempt and hold_until is not None and now < hold_until
        if not self.cfg.preempt or priority >= self.effective_priority or held or outside:
            if priority < self.effective_priority and held:
                self.counters["preempt_delayed"] += 1
            elif priority < self.effective_priority and outside:
                self.counters["preempt_held"] += 1
            self.counters["accepted"] += 1
            self._adopt_interval(interval_cs)
            self._arm_master_down(now, "master down interval expired")
            if not self.cfg.preempt or priority >= self.effective_priority:
                # Accepted whatever the time: the same advert gets the same answer while
                # nothing below changes (``receive_again``).
                self._again = (
                    priority,
                    interval_cs,
                    source,
                    self.cfg,
                    self.effective_priority,
                    self.master_adver_interval_cs,
                    self._master_down_s(),
                )
            return []
        self.counters["discarded_lower_priority"] += 1  # timer keeps running: we preempt
        return []

    def _receive_master(
        self, priority: int, interval_cs: int, source: IPAddress, now: float
    ) -> list[Action]:
        if priority == STOP_PRIORITY:  # §6.4.3: answer at once so backups see a master
            return [self._advert(now)]
        if priority > self.effective_priority or (
            priority == self.effective_priority
            and _address_key(source) > _address_key(self.cfg.primary_address)
        ):
            self.counters["preempted"] += 1
            self._adopt_interval(interval_cs)
            why = "higher priority" if priority > self.effective_priority else "tie, higher address"
            # A farewell advert at our own priority before stepping down: if the winner never
            # heard us (split brain, its advert crossed first), it now sees a lower master,
            # answers and re-announces (below), so neighbours' caches are put right.
            farewell = self._advert(now)
            return [farewell, *self._step_down(now, f"preempted by {source} ({why} {priority})")]
        # Split brain: another master we outrank. Advert now (it steps down), re-announce.
        self.counters["split_brain_won"] += 1
        return [self._advert(now), AcquireAddresses()]

    def _receive_draining(self, priority: int, now: float) -> list[Action]:
        if priority == STOP_PRIORITY:
            return []
        # A router with priority > 0 speaks: the taker is master. Release after the hold.
        self.counters["drain_taker_heard"] += 1
        self._taker_heard = True
        release_at = now + timers.interval_s(self.cfg.handover_hold_cs)
        if self._drain_at is None or release_at < self._drain_at:
            self._drain_at = release_at
        return []

    def timer(self, now: float) -> list[Action]:
        """Run every timer due at ``now``, earliest first.

        Ties run Master_Down first (becoming MASTER cancels a pending release), then the
        end of a drain, then the Adver_Timer, then a pending release. The Adver_Timer is due
        from ``ADVERT_EARLY_FRACTION`` of the interval before it expires (``timer_window``);
        the next one is then counted from ``now``.
        """
        if self._down_at is None and self._drain_at is None and self._release_at is None:
            # Only the Adver_Timer runs (a master, every interval): the loop below, unrolled.
            adver_at = self._adver_at
            if adver_at is None or adver_at - self._advert_early_s > now:
                return []
            return [self._advert(now, STOP_PRIORITY if self._draining else None)]
        actions: list[Action] = []
        while True:
            # The earliest due timer; on a tie the first in the order above (strict <).
            name = ""
            earliest = 0.0
            adver_at = self._adver_at
            for timer_name, t, due in (
                ("down", self._down_at, self._down_at),
                ("drain", self._drain_at, self._drain_at),
                ("adver", adver_at, None if adver_at is None else adver_at - self._advert_early_s),
                ("release", self._release_at, self._release_at),
            ):
                if t is not None and due is not None and due <= now and (not name or t < earliest):
                    name, earliest = timer_name, t
            if not name:
                return actions
            if name == "down":
                self._down_at = None
                actions += self._become_master(now, self._down_reason)
            elif name == "drain":
                if self._taker_heard:
                    actions += self._finish_stop("stopped (handed over)")
                else:
                    self.counters["drain_timeouts"] += 1
                    actions += self._finish_stop("stopped (no taker heard)")
            elif name == "adver":
                priority = STOP_PRIORITY if self._draining else None
                actions.append(self._advert(now, priority))
            else:
                actions += self._release()

    def set_priority(self, effective: int | None, now: float) -> list[Action]:
        """New effective priority from tracking; None = a tracked resource failed (FAULT)."""
        if self.state is State.STOPPED:
            return []
        if effective is None:
            if self._tracking_fault:
                return []
            was_faulty = self.faulty
            self._tracking_fault = True
            return self._own_fault(now, "tracking fault", was_faulty)
        if not 1 <= effective <= OWNER_PRIORITY:
            raise ValueError(f"effective priority must be 1..255, got {effective}")
        if self.cfg.priority == OWNER_PRIORITY:
            effective = OWNER_PRIORITY  # the address owner is never changed by tracking
        elif effective == OWNER_PRIORITY:
            raise ValueError("only the address owner (base priority 255) may have priority 255")
        self.effective_priority = effective
        if self._tracking_fault:
            self._tracking_fault = False
            return self._own_recovery(now, "tracking recovered")
        return []

    def set_link(self, up: bool, now: float) -> list[Action]:
        """The interface went down (FAULT) or came back (re-run §6.4.1)."""
        if self.state is State.STOPPED or up == self._link_up:
            return []
        if not up:
            was_faulty = self.faulty
            self._link_up = False
            return self._own_fault(now, "link down", was_faulty)
        self._link_up = True
        return self._own_recovery(now, "link up")

    def _own_fault(self, now: float, reason: str, was_faulty: bool) -> list[Action]:
        if self.state is State.INIT:
            return []  # start() will enter FAULT
        send_advert = self._link_up
        if self._draining:
            return self._finish_stop(f"stopped ({reason})")
        if self.state is State.FAULT:
            if was_faulty:
                return []
            # In FAULT by the sync group's command; the fault is now our own: report it.
            return [Transition(State.FAULT, State.FAULT, reason)]
        return self._enter_fault(now, reason, send_advert=send_advert)

    def _own_recovery(self, now: float, reason: str) -> list[Action]:
        if self.faulty or self.state is not State.FAULT:
            return []
        self._group_fault = False  # the group re-forces FAULT if another member is faulty
        return self._initialize(now, reason)

    def stop(self, now: float) -> list[Action]:
        """Graceful stop: hand over make-before-break if MASTER, else STOPPED at once."""
        if self.state is State.STOPPED or self._draining:
            return []
        if self.state is not State.MASTER:
            return self._finish_stop("stopped")
        self._draining = True
        self._down_at = None
        self._release_at = None
        # Bound on the peer's view: Master_Down_Interval of a priority-1 backup.
        self._drain_at = now + timers.master_down_interval_s(
            1, self.cfg.advert_interval_cs, self.cfg.version
        )
        return [self._advert(now, STOP_PRIORITY)]

    def hold_preempt(self, until: float | None) -> list[Action]:
        """Hold preemption until ``until`` (the clock of ``now``); None releases the hold.

        While held, a BACKUP accepts adverts from a lower-priority master as if preemption
        were off; once released (or past the deadline) the next one is discarded and the
        Master_Down_Timer runs out as usual. No action of its own."""
        self._preempt_hold_until = until
        return []

    def force(self, state: State, now: float, reason: str) -> list[Action]:
        """Sync-group command: go to ``state`` (FAULT, BACKUP or MASTER)."""
        if state not in (State.FAULT, State.BACKUP, State.MASTER):
            raise ValueError(f"cannot force {state.value}")
        if self.state in (State.INIT, State.STOPPED) or self._draining:
            self.counters["force_ignored"] += 1
            return []
        if state is self.state:
            if state is State.FAULT:
                self._group_fault = True
            return []
        if state is State.FAULT:
            self.counters["forced"] += 1
            self._group_fault = True
            return self._enter_fault(now, reason, send_advert=self._link_up)
        if self.faulty:
            # Refused: report the own fault so the group learns of it (FAULT -> FAULT).
            self.counters["force_refused"] += 1
            own = ", ".join(r for r in self.fault_reasons if r != "sync group")
            return [Transition(State.FAULT, State.FAULT, f"{reason} refused: {own}")]
        self.counters["forced"] += 1
        if self.state is State.FAULT:
            self._group_fault = False
            if state is State.MASTER:
                self._clear_timers()
                self._backup_since = now
                return self._become_master(now, reason)
            return self._become_backup(now, reason)
        if state is State.MASTER:
            return self._become_master(now, reason)
        # Told BACKUP without an advert to learn from: expect our own interval (§6.4.1).
        self.master_adver_interval_cs = self.cfg.advert_interval_cs
        return self._step_down(now, reason)

    def reconfigure(self, cfg: MachineConfig, now: float) -> list[Action]:
        """Apply a reloaded configuration without a transition of its own.

        The tracking offset (effective minus base priority) carries over to the new base;
        the address owner stays at 255. A MASTER whose advertised priority or interval
        changed sends an advert at once. Running timers keep their deadlines, except that a
        shorter interval brings the next advert forward.
        """
        if cfg.vrid != self.cfg.vrid:
            raise ValueError("the VRID of a running machine cannot change")
        old = self.cfg
        self.cfg = cfg
        self._advert_early_s = timers.interval_s(cfg.advert_interval_cs) * ADVERT_EARLY_FRACTION
        self.counters["reconfigured"] += 1
        old_priority = self.effective_priority
        if cfg.priority == OWNER_PRIORITY:
            self.effective_priority = OWNER_PRIORITY
        else:
            offset = self.effective_priority - old.priority
            self.effective_priority = min(max(cfg.priority + offset, 1), OWNER_PRIORITY - 1)
        if cfg.version == 2 or self.state is not State.BACKUP or cfg.version != old.version:
            self.master_adver_interval_cs = cfg.advert_interval_cs
        if self.state is not State.MASTER or self._draining:
            return []
        changed = (
            self.effective_priority != old_priority
            or cfg.advert_interval_cs != old.advert_interval_cs
        )
        if changed:
            return [self._advert(now)]
        return []


__all__ = [
    "AcquireAddresses",
    "Action",
    "IPAddress",
    "MachineConfig",
    "ReleaseAddresses",
    "SendAdvert",
    "State",
    "Transition",
    "VrrpMachine",
]
