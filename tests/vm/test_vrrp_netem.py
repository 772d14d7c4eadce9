"""VRRP under real delay and packet loss (netem), a pair of ``hadirector run`` in the VM.

The build machines' kernel has no netem; the VM's has (``sch_netem``). Topology (namespaces
of this module, documentation addresses only)::

    A eth0 192.0.2.1 (priority 150) ── bridge br0 (switch namespace) ── B eth0 192.0.2.2 (100)
                         one VRRPv3 instance, multicast, VRID 51, 1 s adverts,
                         VIP 192.0.2.100/32

netem sits on A's eth0 egress (B's too for the split brain). B's side of the wire is
captured with tcpdump in B's namespace: the kernel's receive time stamps and the agents' JSON
log time stamps are both the VM's CLOCK_REALTIME, so the two time lines can be compared.

With B priority 100 and A's 1 s interval, B's Master_Down_Interval (RFC 5798 §6.1) is
3 x 1 s + (256 - 100)/256 s = 3.609 s. The agents are started once for the whole module
(Python start-up is slow under emulation); each test starts from the steady state (A master
holding the VIP, B backup) and removes its qdiscs whatever happens:

1. delay 150 ms +- 100 ms on A's egress for 20 s: no transition on either side, the VIP
   stays on A alone.
2. 40 % random loss on A's egress for 45 s. Whatever the draw, (a) every takeover by B came
   after at least Master_Down_Interval without an advert from A reaching B's wire: never
   early; (b) every silence longer than Master_Down_Interval plus a slack for emulation,
   while B was backup, ended in a takeover by B; (c) after each takeover B steps down when
   it hears A again (A, outranking it, answers B's adverts and never leaves MASTER), and once
   the loss is removed A is the only master and the only holder of the VIP. A draw with no
   silence long enough still checks (a) and (c); a summary line says what was seen.
3. Split brain: 100 % loss both ways until B is master too, then healed: B steps down, A
   stays the only master, holds the VIP alone and re-announces it (gratuitous ARP).

The checks of (a), (b) and (c) are plain functions of the two time lines, exercised on the
host with made-up time lines (the tests without the vm marker), so they are known to catch
an early, a missing or an unhealed takeover.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .lvslab import (
    AgentProcess,
    Capture,
    CapturedFrame,
    Lab,
    agent,
    control_status,
    log_time_s,
    run,
)

PRIORITY_A, PRIORITY_B = 150, 100
ADDRESS_A, ADDRESS_B = "192.0.2.1", "192.0.2.2"
VIP = "192.0.2.100"
VRID = 51
INTERVAL_S = 1.0
#: RFC 5798 §6.1: 3 x Master_Adver_Interval + Skew_Time, for B (priority 100).
MASTER_DOWN_S = 3 * INTERVAL_S + (256 - PRIORITY_B) * INTERVAL_S / 256
#: Capture and log time stamps come from the same clock; this covers rounding and the odd
#: microsecond between the kernel's stamp and Python's ``time.time()``.
CLOCK_TOLERANCE_S = 0.05
#: How late a takeover may be logged after its Master_Down_Interval: reading the advert,
#: the timer's wake-up and the log line, under emulation.
LATE_SLACK_S = 0.7
#: An advert captured less than this before a transition's log line may still have been on
#: its way to the agent (the kernel stamps it before the agent reads it).
IN_FLIGHT_S = 0.2

LOSS_PERCENT = 40
LOSS_PHASE_S = 45.0
DELAY_PHASE_S = 20.0
START_TIMEOUT_S = 150.0
STEP_TIMEOUT_S = 20.0
#: After the pair is steady again, it must stay so for this many more adverts of A's.
SETTLE_ADVERTS = 2

CONFIG = """
[global]
router_id = "{name}"
control_socket = "{run_dir}/{name}.sock"
state_dir = "{run_dir}/{name}-state"

[[vrrp_instance]]
name = "lan"
interface = "eth0"
vrid = {vrid}
priority = {priority}
advert_interval = {interval}
virtual_addresses = ["{vip}/32"]
"""


# --- the two time lines and what RFC 5798 says about them ---------------------------------------


@dataclass(frozen=True)
class Transition:
    """One ``vrrp.transition`` of an agent: log time (epoch seconds), old and new state."""

    t: float
    old: str
    new: str
    reason: str = ""


def last_before(times: list[float], limit: float) -> float | None:
    """The latest of sorted ``times`` at or before ``limit``."""
    earlier = [t for t in times if t <= limit]
    return earlier[-1] if earlier else None


def first_after(times: list[float], limit: float) -> float | None:
    later = [t for t in times if t > limit]
    return later[0] if later else None


def state_at(transitions: list[Transition], initial: str, t: float) -> tuple[str, float | None]:
    """The state the log says at ``t`` and since when (None: since before the time line)."""
    state, since = initial, None
    for tr in transitions:
        if tr.t > t:
            break
        state, since = tr.new, tr.t
    return state, since


def early_takeovers(
    adverts: list[float], transitions: list[Transition], master_down_s: float
) -> list[str]:
    """(a) Takeovers not preceded by ``master_down_s`` of silence from the master.

    The silence before a takeover starts at the last advert captured ``IN_FLIGHT_S`` before
    its log line (a later one may not have reached the agent when its timer fired).
    """
    problems = []
    for tr in transitions:
        if tr.new != "MASTER":
            continue
        start = last_before(adverts, tr.t - IN_FLIGHT_S)
        if start is None:
            problems.append(f"takeover at {tr.t:.3f} with no advert from the master before it")
        elif tr.t - start < master_down_s - CLOCK_TOLERANCE_S:
            problems.append(
                f"takeover at {tr.t:.3f} after only {tr.t - start:.3f} s of silence "
                f"(last advert {start:.3f}, Master_Down_Interval {master_down_s:.3f} s)"
            )
    return problems


def long_silences(
    adverts: list[float], transitions: list[Transition], initial: str, master_down_s: float
) -> list[tuple[float, float, float]]:
    """The silences (b) judges, as (last advert, next advert, takeover deadline).

    A silence runs between two consecutive captured adverts ``p`` and ``q``. The backup's
    timer started when it read ``p`` (or when it stepped down, if ``p`` made it step down):
    it must have taken over by ``start + master_down_s + LATE_SLACK_S``, if the next advert
    ``q`` came after that. A gap where the log shows a master (or nothing yet) once ``p`` has
    been read (``LATE_SLACK_S`` after it) asks nothing.
    """
    judged = []
    for p, q in itertools.pairwise(adverts):
        state, since = state_at(transitions, initial, p + LATE_SLACK_S)
        if state != "BACKUP":
            continue
        start = max(p, since) if since is not None else p
        deadline = start + master_down_s + LATE_SLACK_S
        if q > deadline:
            judged.append((p, q, deadline))
    return judged


def missed_takeovers(
    adverts: list[float], transitions: list[Transition], initial: str, master_down_s: float
) -> list[str]:
    """(b) Silences while backup that outlasted Master_Down_Interval + slack without a takeover."""
    return [
        f"silence {p:.3f} -> {q:.3f} ({q - p:.3f} s) while backup, no takeover by {deadline:.3f}"
        for p, q, deadline in long_silences(adverts, transitions, initial, master_down_s)
        if not any(tr.new == "MASTER" and p < tr.t <= deadline for tr in transitions)
    ]


def unhealed_takeovers(adverts: list[float], transitions: list[Transition]) -> list[str]:
    """(c) Takeovers the backup did not give up on hearing the master again.

    Each takeover must be followed by a step-down, before any other transition, and not before
    the master's first advert captured after the takeover (give or take ``IN_FLIGHT_S``).
    """
    problems = []
    for index, tr in enumerate(transitions):
        if tr.new != "MASTER":
            continue
        following = transitions[index + 1 : index + 2]
        if not following or following[0].new != "BACKUP":
            problems.append(f"takeover at {tr.t:.3f} not followed by a step-down: {following}")
            continue
        heard = first_after(adverts, tr.t - IN_FLIGHT_S)
        if heard is None or following[0].t < heard - CLOCK_TOLERANCE_S:
            problems.append(
                f"step-down at {following[0].t:.3f} before any advert from the master "
                f"after the takeover at {tr.t:.3f} (first: {heard})"
            )
    return problems


# --- the lab ----------------------------------------------------------------------------------


@dataclass
class Pair:
    lab: Lab
    ns: dict[str, str]
    a: AgentProcess
    b: AgentProcess
    sockets: dict[str, Path]
    work: Path

    def holders(self) -> set[str]:
        """The directors whose eth0 carries the VIP."""
        found = set()
        for role in ("dira", "dirb"):
            listing = self.lab.ip(self.ns[role], "-4", "-o", "addr", "show", "dev", "eth0")
            if f" {VIP}/" in listing:
                found.add(role)
        return found

    def status(self, role: str) -> dict[str, Any]:
        (instance,) = control_status(self.sockets[role])["instances"]
        result: dict[str, Any] = instance
        return result

    def netem(self, role: str, *spec: str) -> None:
        self.lab.exec(
            self.ns[role], "tc", "qdisc", "replace", "dev", "eth0", "root", "netem", *spec
        )

    def heal(self, role: str) -> None:
        self.lab.exec(self.ns[role], "tc", "qdisc", "del", "dev", "eth0", "root", check=False)

    def capture(self, name: str, expression: str = "ip proto 112") -> Capture:
        return Capture(self.ns["dirb"], "eth0", self.work / f"{name}.pcap", expression)

    def settle(self, capture: Capture) -> None:
        """Steady, and still so after ``SETTLE_ADVERTS`` more adverts of A's on B's wire;
        then B's log read up to its last transition (which the control socket reports at
        once, the log pipe a moment later)."""
        self.wait_steady()
        since = time.time()  # the capture's clock (CLOCK_REALTIME)
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while len([t for t, _ in vrrp_adverts(capture.frames(), ADDRESS_A) if t > since]) < (
            SETTLE_ADVERTS
        ):
            assert time.monotonic() < deadline, "no adverts from A on B's wire"
            time.sleep(0.2)
        self.wait_steady()
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while (news := [e["new"] for e in self.b.named("vrrp.transition")])[-1:] not in (
            [],
            ["BACKUP"],
        ):
            assert time.monotonic() < deadline, f"B's log ends with {news[-1:]}, status BACKUP"
            time.sleep(0.2)

    def wait_steady(self) -> None:
        """A master, B backup, the VIP on A alone (after whatever came before)."""
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while True:
            states = (self.status("dira")["state"], self.status("dirb")["state"])
            if states == ("MASTER", "BACKUP") and self.holders() == {"dira"}:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not steady: states {states}, VIP on {self.holders()}")
            time.sleep(0.3)


def transitions(director: AgentProcess, since: int) -> list[Transition]:
    return [
        Transition(log_time_s(e), e["old"], e["new"], e.get("reason", ""))
        for e in director.named("vrrp.transition", since=since)
    ]


def vrrp_adverts(frames: list[CapturedFrame], source: str) -> list[tuple[float, int]]:
    """(time, priority) of each VRRP advert for our VRID from ``source`` among ``frames``."""
    wanted = bytes(int(x) for x in source.split("."))
    found = []
    for frame in frames:
        data = frame.data
        if len(data) < 34 or data[12:14] != b"\x08\x00":
            continue
        header_length = (data[14] & 0x0F) * 4
        if data[23] != 112 or data[26:30] != wanted:
            continue
        vrrp = data[14 + header_length :]
        if len(vrrp) >= 8 and vrrp[0] >> 4 == 3 and vrrp[1] == VRID:
            found.append((frame.t, vrrp[2]))
    return found


def garps(frames: list[CapturedFrame], address: str, mac: bytes) -> list[float]:
    """Times of gratuitous ARPs for ``address`` sent from ``mac`` among ``frames``."""
    ip = bytes(int(x) for x in address.split("."))
    found = []
    for frame in frames:
        data = frame.data
        if len(data) < 42 or data[12:14] != b"\x08\x06":
            continue
        arp = data[14:42]
        if data[6:12] == mac and arp[8:14] == mac and arp[14:18] == ip and arp[24:28] == ip:
            found.append(frame.t)
    return found


def write_config(work: Path, name: str, priority: int) -> Path:
    path = work / f"{name}.toml"
    path.write_text(
        CONFIG.format(
            name=name, run_dir=work, vrid=VRID, priority=priority, interval=INTERVAL_S, vip=VIP
        )
    )
    return path


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    run("modprobe", "sch_netem")
    work = tmp_path_factory.mktemp("netem")
    with Lab() as lab:
        ns = {role: lab.netns(role) for role in ("sw", "dira", "dirb")}
        lab.bridge(ns["sw"], "br0")
        for role, address in (("dira", ADDRESS_A), ("dirb", ADDRESS_B)):
            lab.plug(ns["sw"], "br0", f"p-{role}", ns[role], "eth0", f"{address}/24")
        sockets = {"dira": work / "A.sock", "dirb": work / "B.sock"}

        def became_master(event: dict[str, Any]) -> bool:
            return bool(event["new"] == "MASTER")

        with agent(ns["dira"], write_config(work, "A", PRIORITY_A)) as a:
            # B starts once A is master: the story starts with no takeover by B at all.
            a.wait_for("vrrp.transition", START_TIMEOUT_S, 0, became_master)
            with agent(ns["dirb"], write_config(work, "B", PRIORITY_B)) as b:
                b.wait_for("vrrp.transition", START_TIMEOUT_S)
                made = Pair(lab, ns, a, b, sockets, work)
                deadline = time.monotonic() + START_TIMEOUT_S
                while not all(path.exists() for path in sockets.values()):
                    assert time.monotonic() < deadline, "no control sockets"
                    time.sleep(0.3)
                made.wait_steady()
                yield made
                # No graceful stop: A, master, would drain for seconds waiting for a taker,
                # and the namespaces (VIPs included) go with the lab.
                for director in (b, a):
                    director.process.kill()


# --- the tests in the VM ------------------------------------------------------------------------


@pytest.mark.vm
def test_delay_and_jitter_change_nothing(pair: Pair) -> None:
    pair.wait_steady()
    mark_a, mark_b = pair.a.mark(), pair.b.mark()
    pair.netem("dira", "delay", "150ms", "100ms")
    try:
        # The delay is real: A's echo replies leave through netem, never faster than 50 ms.
        pings = pair.lab.exec(pair.ns["dirb"], "ping", "-n", "-c", "3", "-i", "0.3", ADDRESS_A)
        rtts = [float(x) for x in re.findall(r"time=([\d.]+) ms", pings)]
        assert len(rtts) == 3 and min(rtts) >= 50, pings
        end = time.monotonic() + DELAY_PHASE_S
        while time.monotonic() < end:
            assert pair.holders() == {"dira"}
            time.sleep(1.0)
        qdisc = pair.lab.exec(pair.ns["dira"], "tc", "-s", "qdisc", "show", "dev", "eth0")
    finally:
        pair.heal("dira")
    assert "delay 150ms  100ms" in qdisc or "delay 150ms 100ms" in qdisc, qdisc
    assert pair.a.named("vrrp.transition", since=mark_a) == []
    assert pair.b.named("vrrp.transition", since=mark_b) == []
    assert (pair.status("dira")["state"], pair.status("dirb")["state"]) == ("MASTER", "BACKUP")
    print(f"delay 150ms+-100ms for {DELAY_PHASE_S:.0f} s: no transition; ping rtts {rtts}")


@pytest.mark.vm
def test_random_loss_takeovers_follow_rfc5798(pair: Pair) -> None:
    pair.wait_steady()
    # Counted before the capture starts and after it ends: every captured advert of A's is
    # one of those sent in between.
    sent_before = pair.status("dira")["counters"].get("adverts_sent", 0)
    capture = pair.capture("loss")
    try:
        mark_a, mark_b = pair.a.mark(), pair.b.mark()
        accepted_before = pair.status("dirb")["counters"].get("adverts_accepted", 0)
        won_before = pair.status("dira")["machine_counters"].get("split_brain_won", 0)
        # The time lines start with an advert of A's on B's wire: every silence that follows
        # is seen from its beginning.
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while not vrrp_adverts(capture.frames(), ADDRESS_A):
            assert time.monotonic() < deadline, "no advert from A on B's wire"
            time.sleep(0.2)
        pair.netem("dira", "loss", f"{LOSS_PERCENT}%")
        try:
            time.sleep(LOSS_PHASE_S)
        finally:
            pair.heal("dira")
        # Loss gone: A's next advert reaches B, which steps down if it was master.
        pair.settle(capture)
    finally:
        frames = capture.stop()
    status_a, status_b = pair.status("dira"), pair.status("dirb")
    sent = status_a["counters"].get("adverts_sent", 0) - sent_before
    accepted = status_b["counters"].get("adverts_accepted", 0) - accepted_before
    won = status_a["machine_counters"].get("split_brain_won", 0) - won_before

    from_a = [t for t, priority in vrrp_adverts(frames, ADDRESS_A) if priority == PRIORITY_A]
    from_b = vrrp_adverts(frames, ADDRESS_B)
    trs_b = transitions(pair.b, mark_b)
    takeovers = [tr for tr in trs_b if tr.new == "MASTER"]
    gaps = [q - p for p, q in itertools.pairwise(from_a)]
    silences = [g for g in gaps if g > MASTER_DOWN_S]
    judged = long_silences(from_a, trs_b, "BACKUP", MASTER_DOWN_S)
    late = []
    for tr in takeovers:
        start = last_before(from_a, tr.t - IN_FLIGHT_S)
        if start is not None:
            late.append(round(tr.t - start - MASTER_DOWN_S, 3))
    print(
        f"netem loss {LOSS_PERCENT}% for {LOSS_PHASE_S:.0f} s: A sent {sent} adverts, B's wire "
        f"saw {len(from_a)} from A ({accepted} accepted by B); silences > MDI "
        f"({MASTER_DOWN_S:.3f} s): {len(silences)} (longest gap {max(gaps):.3f} s), > MDI + "
        f"{LATE_SLACK_S} s: {sum(g > MASTER_DOWN_S + LATE_SLACK_S for g in gaps)} ({len(judged)} "
        f"begun with B backup, each owing a takeover); takeovers "
        f"by B: {len(takeovers)} (logged after MDI + {late} s); B's adverts on the wire: "
        f"{len(from_b)}; A answered B {won} times"
    )

    # B only ever advertises its own priority (as master, and its farewell on stepping down).
    assert from_a and len(from_a) <= sent
    assert {priority for _t, priority in from_b} <= {PRIORITY_B}
    # (a) never early, (b) never missed, (c) always healed.
    assert early_takeovers(from_a, trs_b, MASTER_DOWN_S) == [], json.dumps(
        [tr.__dict__ for tr in trs_b]
    )
    assert missed_takeovers(from_a, trs_b, "BACKUP", MASTER_DOWN_S) == []
    assert unhealed_takeovers(from_a, trs_b) == []
    for tr in trs_b:
        if tr.new == "BACKUP":
            assert tr.reason.startswith(f"preempted by {ADDRESS_A}"), tr
    # A outranks B throughout: it never leaves MASTER and answers each of B's takeovers.
    assert pair.a.named("vrrp.transition", since=mark_a) == []
    assert won >= len(takeovers)
    # The end: one master, A, the VIP on A alone (wait_steady above), and B silent again.
    assert trs_b == [] or trs_b[-1].new == "BACKUP"
    assert (status_a["state"], status_b["state"]) == ("MASTER", "BACKUP")
    assert pair.holders() == {"dira"}


@pytest.mark.vm
def test_split_brain_heals_to_a(pair: Pair) -> None:
    pair.wait_steady()
    mac_a = bytes.fromhex(
        json.loads(pair.lab.ip(pair.ns["dira"], "-j", "link", "show", "dev", "eth0"))[0][
            "address"
        ].replace(":", "")
    )
    capture = pair.capture("split", "ip proto 112 or arp")
    try:
        mark_a, mark_b = pair.a.mark(), pair.b.mark()
        pair.netem("dira", "loss", "100%")
        # From here until A's qdisc goes, nothing A sends reaches B's wire.
        cut_at = time.time()
        pair.netem("dirb", "loss", "100%")
        try:
            pair.b.wait_for(
                "vrrp.transition", STEP_TIMEOUT_S, mark_b, lambda e: e["new"] == "MASTER"
            )
            # Both masters, each holding the VIP.
            deadline = time.monotonic() + STEP_TIMEOUT_S
            while pair.holders() != {"dira", "dirb"}:
                assert time.monotonic() < deadline, f"VIP on {pair.holders()}"
                time.sleep(0.3)
            assert (pair.status("dira")["state"], pair.status("dirb")["state"]) == (
                "MASTER",
                "MASTER",
            )
        finally:
            # B's side first: B's adverts reach A again (A answers into its own loss), then
            # A's side: A's next advert makes B step down, and B's farewell advert, which now
            # reaches A, makes A re-announce. Healed the other way round, B could step down
            # with its farewell lost and A would have no cause to announce.
            pair.heal("dirb")
            pair.heal("dira")
        pair.settle(capture)
    finally:
        frames = capture.stop()
    assert pair.a.named("vrrp.transition", since=mark_a) == []
    assert [(tr.old, tr.new) for tr in transitions(pair.b, mark_b)] == [
        ("BACKUP", "MASTER"),
        ("MASTER", "BACKUP"),
    ]
    # A re-announced the VIP after the heal (it heard B as a master it outranks): any of A's
    # gratuitous ARPs on B's wire after the cut was sent once A's side had healed.
    announced = [t for t in garps(frames, VIP, mac_a) if t > cut_at]
    assert announced, "no gratuitous ARP from A after the heal"
    print(f"split brain healed: B stepped down, A re-announced {len(announced)} time(s)")


# --- the checks themselves, on the host -------------------------------------------------------


MDI = MASTER_DOWN_S


def _every_second(start: int, stop: int, lost: Collection[int] = ()) -> list[float]:
    """Advert times once a second from ``start`` to ``stop``, but for the ``lost`` ones."""
    return [float(s) for s in range(int(start), int(stop)) if s not in lost]


def test_checks_accept_a_takeover_after_the_master_down_interval() -> None:
    adverts = _every_second(0, 30, lost={11, 12, 13, 14})
    takeover = Transition(10 + MDI + 0.1, "BACKUP", "MASTER")
    stepdown = Transition(15.01, "MASTER", "BACKUP")
    trs = [takeover, stepdown]
    assert early_takeovers(adverts, trs, MDI) == []
    assert missed_takeovers(adverts, trs, "BACKUP", MDI) == []
    assert unhealed_takeovers(adverts, trs) == []


def test_checks_catch_an_early_takeover() -> None:
    adverts = _every_second(0, 30, lost={11, 12, 13})
    trs = [Transition(12.5, "BACKUP", "MASTER"), Transition(14.01, "MASTER", "BACKUP")]
    assert len(early_takeovers(adverts, trs, MDI)) == 1
    # A takeover while adverts were flowing is early as well.
    trs = [Transition(5.5, "BACKUP", "MASTER"), Transition(6.01, "MASTER", "BACKUP")]
    assert len(early_takeovers(_every_second(0, 30), trs, MDI)) == 1


def test_checks_excuse_an_advert_still_in_flight() -> None:
    # The timer fired at 10 + MDI; an advert stamped 30 ms before the log line was unread.
    adverts = [*_every_second(0, 11), 10 + MDI + 0.05, *_every_second(15, 30)]
    trs = [Transition(10 + MDI + 0.08, "BACKUP", "MASTER"), Transition(13.7, "MASTER", "BACKUP")]
    assert early_takeovers(adverts, trs, MDI) == []
    assert unhealed_takeovers(adverts, trs) == []


def test_checks_catch_a_missed_takeover() -> None:
    adverts = _every_second(0, 30, lost={11, 12, 13, 14, 15})
    assert len(missed_takeovers(adverts, [], "BACKUP", MDI)) == 1
    # Too late counts as missed.
    trs = [Transition(10 + MDI + LATE_SLACK_S + 0.2, "BACKUP", "MASTER")]
    assert len(missed_takeovers(adverts, trs, "BACKUP", MDI)) == 1
    # A silence of 4 s (3 adverts lost) is inside the slack: no verdict either way.
    assert missed_takeovers(_every_second(0, 30, lost={11, 12, 13}), [], "BACKUP", MDI) == []
    # While B is master, a silence asks nothing.
    assert missed_takeovers(adverts, [], "MASTER", MDI) == []


def test_checks_time_a_silence_from_a_step_down() -> None:
    # B stepped down at 10.3 on A's advert of 10.0; A then fell silent until 15.
    adverts = _every_second(0, 30, lost={11, 12, 13, 14})
    trs = [Transition(8.0, "BACKUP", "MASTER"), Transition(10.3, "MASTER", "BACKUP")]
    assert len(missed_takeovers(adverts, trs, "BACKUP", MDI)) == 1
    late = [*trs, Transition(10.3 + MDI + 0.5, "BACKUP", "MASTER")]
    assert missed_takeovers(adverts, late, "BACKUP", MDI) == []


def test_checks_catch_a_takeover_never_given_up_or_given_up_unheard() -> None:
    adverts = _every_second(0, 30, lost={11, 12, 13, 14})
    assert len(unhealed_takeovers(adverts, [Transition(13.7, "BACKUP", "MASTER")])) == 1
    trs = [Transition(13.7, "BACKUP", "MASTER"), Transition(14.2, "MASTER", "BACKUP")]
    assert len(unhealed_takeovers(adverts, trs)) == 1
