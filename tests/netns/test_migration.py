"""Rolling migration of a live keepalived pair to hadirector, one director at a time.

A keepalived 2.2.7 pair (dir-a priority 150, dir-b 100) runs two instances in a
``vrrp_sync_group`` (VI_1: 192.0.2.100 on LAN 1, VI_2: 198.51.100.100 on LAN 2) while the
client probes both VIPs every 2 ms (one prober per VIP, every probe counted). In one run:

1. baseline, keepalived ↔ keepalived: a graceful failover (the master's keepalived stopped,
   SIGTERM) and a fail-back (it starts again and preempts); the probes each step lost;
2. dir-b (the backup) is migrated: its keepalived is stopped and hadirector started on it
   from ``hadirector import keepalived`` of its keepalived.conf (the file keepalived ran,
   less the lab's notify FIFO; the importer converts all of it: exit 0). It joins
   as backup: its only transitions are INIT → BACKUP, keepalived on dir-a reports nothing
   (no transition, no event), dir-b sends no advert, and no probe is lost, over a window of
   more than hadirector's Master_Down_Interval (counted in dir-a's adverts on the wire);
3. failover and fail-back between keepalived (dir-a) and hadirector (dir-b), as in 1;
4. dir-a is migrated the way a master is: its keepalived is stopped (failover to dir-b's
   hadirector, as in 3) and hadirector started on it from the imported form of its file;
   being the 150 director it preempts;
5. hadirector ↔ hadirector: a graceful failover and a fail-back.

What is asserted is what the protocol and make-before-break decide, not how fast either
implementation reacts (``Migration.check``):
- a join loses nothing;
- where hadirector gives the VIPs up (stopped, or preempted) nothing is lost
  (make-before-break): no worse than keepalived ↔ keepalived, which loses Skew_Time's worth
  of probes when stopped and sometimes a few when preempted;
- where a stopped keepalived gives them up, it removes them with its priority-0 advert and
  any taker must wait Skew_Time (RFC 5798 §6.4.2): hadirector's first gratuitous ARP on
  each LAN comes no earlier than Skew_Time after the group's first priority-0 advert
  (it does not jump the gun), and the client's entry moves once.
The loss of those steps is Skew_Time (30.5 probes at 0.1 s, 305 at 1 s) plus the taker's
reaction, which depends on the machine's load: it is printed, not asserted, side by side
for both takers of the same run (keepalived b in the baseline, hadirector b after the
join): probes lost per VIP, the taker's first gratuitous ARP after the priority-0
advert less Skew_Time, and when the first and last lost probes were sent against that
window (inside it, give or take a probe crossing those frames on the wire).
``bench/failover.py --impl keepalived,ka-hd --scenario stop`` repeats that comparison.

After every step the taker holds both VIPs alone, the client's neighbour entries name it,
and it has answered probes; in the steps with hadirector the client's entry moved exactly
once (old MAC → new, no flapping). At the end neither side complained about the other's
adverts (no ``vrrp.advert_rejected`` from hadirector, no receive-path error in keepalived's
log).

Before hadirector is preempted, the test waits until its delayed announcement (its
``garp_master_delay`` after it took over: keepalived's 5 s, kept by the importer) is on the
wire: a preemption crossing it is a race of the protocol that keepalived has too
(``Migration.announced_all``).

The directors do not forward (``net.ipv4.ip_forward = 0``, set here, not inherited from
the host): a forwarding director that has just given a VIP up passes the client's packets
on to whoever holds it (through its own neighbour entry, which depends on earlier steps),
and the counts would measure neighbour caches instead of the handover.

Cases: VRRPv2 multicast with ``auth_type PASS`` (1 s adverts, v2 has whole seconds), v3
multicast, v3 unicast, and v3 unicast with keepalived's ``old_unicast_checksum`` (0.1 s).
The figures of every step are printed (``-s`` shows them).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hadirector.config.load import load_text

from .keepalived import KEEPALIVED_COMPLAINTS, KeepalivedDirector, keepalived_conf
from .lab import (
    REPO_ROOT,
    HadirectorDirector,
    InstanceSpec,
    Lab,
    ProcessDirector,
    default_instances,
    iface,
    vip_address,
    wait_for,
)
from .prober import ProberRun

pytestmark = [pytest.mark.netns, pytest.mark.keepalived]

STATE_TIMEOUT_S = 30.0
PRIORITY = {"dir-a": 150, "dir-b": 100}
SYNC_GROUP = "G1"
LANS = (0, 1)
PROBE_INTERVAL_S = 0.002  # the prober's default


@dataclass(frozen=True)
class Case:
    version: int
    advert_s: float
    unicast: bool = False
    auth_pass: str | None = None
    old_unicast_checksum: bool = False


CASES = {
    "v2-pass": Case(version=2, advert_s=1.0, auth_pass="s3cret"),
    "v3-multicast": Case(version=3, advert_s=0.1),
    "v3-unicast": Case(version=3, advert_s=0.1, unicast=True),
    "v3-unicast-old-checksum": Case(
        version=3, advert_s=0.1, unicast=True, old_unicast_checksum=True
    ),
}


def _specs(lab: Lab, node: str, case: Case) -> list[InstanceSpec]:
    specs = default_instances(
        lab,
        node,
        PRIORITY[node],
        case.advert_s,
        case.version,
        unicast=case.unicast,
        auth_pass=case.auth_pass,
    )
    return [dataclasses.replace(s, old_unicast_checksum=case.old_unicast_checksum) for s in specs]


def users_keepalived_conf(lab: Lab, node: str, case: Case) -> str:
    """The keepalived.conf a user runs on ``node`` (the lab's notify FIFO left out)."""
    return keepalived_conf(_specs(lab, node, case), router_id=f"lab-{node}", sync_group=SYNC_GROUP)


def imported_toml(lab: Lab, node: str, case: Case) -> str:
    """``hadirector import keepalived`` of ``users_keepalived_conf`` (this repository's
    code): the TOML it writes on stdout. Everything must convert (exit 0; its notes on
    stderr, such as ``script_user root`` left unset, are allowed)."""
    conf = lab.tmpdir / f"keepalived-{node}.conf"
    conf.write_text(users_keepalived_conf(lab, node, case))
    done = subprocess.run(
        [sys.executable, "-m", "hadirector", "import", "keepalived", str(conf)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, (done.returncode, done.stderr)
    return done.stdout


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def with_lab_paths(toml: str, state_dir: Path) -> str:
    """``toml`` with ``[global]`` state_dir and control_socket in the lab's directory."""
    keys = (
        f"state_dir = {json.dumps(str(state_dir))}\n"
        f"control_socket = {json.dumps(str(state_dir / 'hadirector.sock'))}\n"
    )
    lines = toml.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.strip() == "[global]":
            return "".join([*lines[: i + 1], keys, *lines[i + 1 :]])
    return f"[global]\n{keys}\n{toml}"


class MigratedDirector(HadirectorDirector):
    """hadirector run from a given TOML text (this repository's code, whatever is on PATH)."""

    def __init__(self, lab: Lab, node: str, instances: Sequence[InstanceSpec], toml: str) -> None:
        super().__init__(lab, node, instances=instances)
        self.toml = toml

    def prepare(self) -> None:
        self.conf_path.write_text(with_lab_paths(self.toml, self.dir))

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "hadirector", "run", "--config", str(self.conf_path),
                "--log-format", "json"]  # fmt: skip

    def popen_kwargs(self) -> dict[str, Any]:
        return {"env": _env()}


@dataclass
class Step:
    label: str
    kind: str  # "failover", "failback" or "join"
    with_hadirector: bool
    releaser: str  # "keepalived" or "hadirector": the side giving the VIPs up
    lost: tuple[int, ...]  # per VIP (LAN 1, LAN 2)
    gap_ms: tuple[float, ...]
    lost_runs: tuple[list[dict[str, Any]], ...]
    #: per LAN, (releasing side's priority-0 advert, taker's first gratuitous ARP), wire
    #: times; only for a stopped keepalived
    windows: tuple[tuple[float, float], ...] = ()


class Migration:
    """The lab, the four directors (two keepalived, two hadirector) and the steps' figures."""

    def __init__(self, lab: Lab, case: Case, converted: Callable[[Lab, str, Case], str]) -> None:
        self.lab = lab
        self.case = case
        self.keepalived = {
            node: KeepalivedDirector(
                lab, node, instances=_specs(lab, node, case), sync_group=SYNC_GROUP
            )
            for node in PRIORITY
        }
        self.hadirector = {
            node: MigratedDirector(lab, node, _specs(lab, node, case), converted(lab, node, case))
            for node in PRIORITY
        }
        self.vips = [vip_address(lan) for lan in LANS]
        self.steps: list[Step] = []
        # When the step that made each node master began (its announcements since then
        # are its mastership's).
        self.master_since: dict[str, float] = {}

    def all_directors(self) -> list[ProcessDirector]:
        return [*self.keepalived.values(), *self.hadirector.values()]

    def logs(self) -> str:
        parts = []
        for d in self.all_directors():
            log = d.log() if isinstance(d, HadirectorDirector | KeepalivedDirector) else ""
            parts.append(f"--- {type(d).__name__} {d.node}\n{log[-3000:]}")
        return "\n".join(parts)

    def wait(self, director: ProcessDirector, state: str) -> None:
        try:
            director.wait_state(state, STATE_TIMEOUT_S)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from exc

    def mac(self, node: str, lan: int) -> str:
        return self.lab.mac(node, iface(lan))

    def probers(self) -> list[ProberRun]:
        return [
            ProberRun(self.lab, vip, dev=iface(lan))
            for lan, vip in zip(LANS, self.vips, strict=True)
        ]

    def settled_on(self, node: str) -> None:
        """``node`` alone holds both VIPs and the client's entries name it."""
        for lan, vip in zip(LANS, self.vips, strict=True):
            wait_for(lambda v=vip: self.lab.who_has(v) == {node}, 15, f"{vip} on {node} only")
            mac, dev = self.mac(node, lan), iface(lan)
            wait_for(
                lambda v=vip, m=mac, d=dev: self.lab.neigh("client", v, d) == m,
                15,
                f"the client resolving {vip} to {node}",
            )

    def measure(
        self,
        label: str,
        kind: str,
        action: Callable[[], None],
        taker: ProcessDirector,
        loser: ProcessDirector,
    ) -> Step:
        """Run ``action`` while both VIPs are probed; wait until ``taker`` serves them."""
        with_hadirector = any(isinstance(d, MigratedDirector) for d in (taker, loser))
        releaser = "hadirector" if isinstance(loser, MigratedDirector) else "keepalived"
        runs = self.probers()
        self.lab.wait_echo_replies(loser.node, count=20)
        t_start = time.monotonic()
        action()
        self.master_since[taker.node] = t_start
        self.settled_on(taker.node)
        self.lab.wait_echo_replies(taker.node, count=20)
        results = [run.stop() for run in runs]
        for lan, result in enumerate(results):
            assert result["sent"] > 0 and result["send_errors"] == 0, result
            if with_hadirector:
                moves = [(c["old"], c["new"]) for c in result["mac_changes"]]
                want = [(self.mac(loser.node, lan), self.mac(taker.node, lan))]
                assert moves == want, (label, result)
        windows = ()
        if kind == "failover" and releaser == "keepalived":
            windows = tuple(self.window(lan, t_start, taker, loser) for lan in LANS)
        step = Step(
            label,
            kind,
            with_hadirector,
            releaser,
            tuple(int(r["lost"]) for r in results),
            tuple(float(r["longest_gap_ms"]) for r in results),
            tuple(list(r["lost_runs"]) for r in results),
            windows,
        )
        self.steps.append(step)
        return step

    def window(
        self, lan: int, since: float, taker: ProcessDirector, loser: ProcessDirector
    ) -> tuple[float, float]:
        """(the loser's priority-0 advert, the taker's first gratuitous ARP) on ``lan``."""
        frames = self.lab.wire(since=since)
        loser_mac, taker_mac = self.mac(loser.node, lan), self.mac(taker.node, lan)
        prio0 = next(
            f
            for f in frames
            if f.kind == "vrrp" and f.lan == lan and f.src_mac == loser_mac
            and f.info["priority"] == 0
        )  # fmt: skip
        garp = next(
            f
            for f in frames
            if f.kind == "arp" and f.lan == lan and f.src_mac == taker_mac and f.t >= prio0.t
            and f.info["gratuitous"] and f.info["sender_ip"] == self.vips[lan]
        )  # fmt: skip
        return prio0.t, garp.t

    def failover(self, label: str, master: ProcessDirector, backup: ProcessDirector) -> None:
        def act() -> None:
            master.stop()
            self.wait(backup, "MASTER")

        self.measure(label, "failover", act, taker=backup, loser=master)

    def announced_all(self, director: MigratedDirector) -> None:
        """Wait until hadirector master ``director`` has sent every announcement of its
        mastership: the first burst and the delayed one ``garp_master_delay`` later (keepalived's
        5 s, which the importer keeps), with no refresh after them.

        A preemption that crosses the old master's delayed burst can draw the client back
        to it just before it lets the VIPs go; the client then waits for the new master's
        next announcement (keepalived's own delayed burst: 5 s). That race is the
        protocol's, keepalived preempted has it too; a preemption about 4.5 s after a
        takeover at 1 s adverts (keepalived's start and Master_Down_Interval) falls on it.
        Waiting it out keeps the client's single move (asserted) a fact, not a race."""
        since = self.master_since[director.node]
        for inst in load_text(director.toml).vrrp_instances:
            assert inst.garp_master_refresh_s == 0, inst
            if inst.garp_master_delay_s <= 0:
                continue
            lan = next(la for la in LANS if iface(la) == inst.interface)
            mac, vip = self.mac(director.node, lan), self.vips[lan]

            def garps(m: str = mac, v: str = vip) -> list[float]:
                return [
                    f.t for f in self.lab.wire("arp", since) if f.src_mac == m
                    and f.info["gratuitous"] and f.info["sender_ip"] == v
                ]  # fmt: skip

            first = wait_for(garps, 15, f"{director.node}'s first announcement of {vip}")[0]
            delayed = first + inst.garp_master_delay_s
            wait_for(
                lambda g=garps, d=delayed, n=inst.garp_master_repeat: (
                    len([t for t in g() if t >= d]) >= n
                ),
                inst.garp_master_delay_s + 15,
                f"{director.node}'s delayed announcement of {vip}",
            )

    def failback(self, label: str, master: ProcessDirector, backup: ProcessDirector) -> None:
        """``master`` (the 150 director, stopped) starts and preempts ``backup``."""
        if isinstance(backup, MigratedDirector):
            self.announced_all(backup)

        def act() -> None:
            master.start()
            self.wait(master, "MASTER")
            self.wait(backup, "BACKUP")

        self.measure(label, "failback", act, taker=master, loser=backup)

    def join_as_backup(self, node: str, master: ProcessDirector) -> None:
        """Replace ``node``'s keepalived (the backup) by hadirector: nothing happens."""
        old, new = self.keepalived[node], self.hadirector[node]
        master_transitions = master.transitions()
        master_events = list(getattr(master, "events", []))
        runs = self.probers()
        self.lab.wait_echo_replies(master.node, count=20)
        t0 = time.monotonic()
        old.stop()
        new.start()
        self.wait(new, "BACKUP")
        joined = time.monotonic()
        # More than the newcomer's Master_Down_Interval (3 intervals + skew < 4) of the
        # master's adverts on each LAN after it settled in BACKUP.
        for lan in LANS:
            mac = self.mac(master.node, lan)
            wait_for(
                lambda m=mac, la=lan: (
                    len(
                        [f for f in self.lab.wire("vrrp", joined) if f.src_mac == m and f.lan == la]
                    )
                    >= 5
                ),
                15 * self.case.advert_s + 15,
                f"5 adverts from {master.node} on LAN {lan + 1}",
            )
        self.lab.wait_echo_replies(master.node, count=20)
        results = [run.stop() for run in runs]
        step = Step(
            f"hadirector joins on {node} (keepalived stopped there)",
            "join",
            True,
            "keepalived",
            tuple(int(r["lost"]) for r in results),
            tuple(float(r["longest_gap_ms"]) for r in results),
            tuple(list(r["lost_runs"]) for r in results),
        )
        self.steps.append(step)
        assert [(t.old, t.new) for t in new.transitions()] == [("INIT", "BACKUP")] * 2, (
            new.transitions()
        )
        assert master.transitions() == master_transitions, master.transitions()
        assert list(getattr(master, "events", [])) == master_events
        newcomer = {self.mac(node, lan) for lan in LANS}
        adverts = [f for f in self.lab.wire("vrrp", t0) if f.src_mac in newcomer]
        assert adverts == [], adverts
        for result in results:
            assert result["sent"] > 0 and result["send_errors"] == 0, result
            assert result["lost"] == 0 and result["mac_changes"] == [], result

    def no_complaints(self) -> None:
        for d in self.hadirector.values():
            assert d.records("vrrp.advert_rejected") == [], d.log()[-4000:]
        for k in self.keepalived.values():
            bad = [line for line in k.log().splitlines() if KEEPALIVED_COMPLAINTS.search(line)]
            assert bad == [], bad

    def skew_s(self) -> float:
        """The taker's (dir-b, priority 100) Skew_Time: (256 - priority) / 256 x interval
        (RFC 5798 §6.1; RFC 3768 in whole seconds, the same at 1 s)."""
        return (256 - PRIORITY["dir-b"]) / 256 * self.case.advert_s

    def check(self) -> list[str]:
        """Every protocol fact violated (empty when the run passes), per VIP:

        - a join loses nothing;
        - where hadirector gives the VIPs up (stopped, or preempted) it loses nothing
          (make-before-break), which is no worse than keepalived whatever keepalived lost;
        - where a stopped keepalived gives them up, hadirector announces no earlier than
          Skew_Time after the group's first priority-0 advert (RFC 5798 §6.4.2; the sync
          group takes over together, so a member may go a little before its own advert's
          Skew_Time, never before the first one's).
        The losses of those steps are printed (``comparison``), not asserted.
        """
        problems = []
        for step in self.steps:
            if not step.with_hadirector:
                continue
            if step.kind == "join" or step.releaser == "hadirector":
                for lan in LANS:
                    if step.lost[lan]:
                        problems.append(f"{step.label}: {self.vips[lan]} lost {step.lost[lan]}")
                continue
            if not step.windows:
                continue
            first_zero = min(released for released, _ in step.windows)
            for lan in LANS:
                announced = step.windows[lan][1]
                if announced - first_zero < self.skew_s():
                    problems.append(
                        f"{step.label}: {self.vips[lan]} announced "
                        f"{(announced - first_zero) * 1000:.1f} ms after the first priority 0,"
                        f" before Skew_Time ({self.skew_s() * 1000:.1f} ms)"
                    )
        return problems

    def edges(self, step: Step, lan: int) -> str:
        """When ``step``'s lost probes on ``lan`` were sent, against the window the protocol
        leaves open: the first one's send time less the releaser's priority-0 advert, and
        the last one's less the taker's first gratuitous ARP, ms (wire times; inside the
        window: first >= 0, last <= 0, give or take a probe crossing those frames)."""
        runs = step.lost_runs[lan]
        if not runs:
            return "-"
        released, announced = step.windows[lan]
        first = (min(r["start"] for r in runs) - released) * 1000
        last = (max(r["end"] for r in runs) - announced) * 1000
        return f"{first:+.1f},{last:+.1f}"

    def comparison(self) -> str:
        """The stopped-keepalived failovers of this run, keepalived and hadirector taking
        over, side by side."""
        skew_ms = self.skew_s() * 1000
        lines = [
            f"keepalived master stopped (Skew_Time {skew_ms:.1f} ms, a probe every "
            f"{PROBE_INTERVAL_S * 1000:g} ms), per VIP LAN 1/LAN 2:",
            f"  {'taker':28} {'lost':>9} {'GARP - p0 - Skew_Time ms':>25} "
            f"{'lost sent: first - p0, last - GARP ms':>40} {'GARPs apart ms':>15}",
        ]
        for step in self.steps:
            if not step.windows:
                continue
            taker = "hadirector" if step.with_hadirector else "keepalived (baseline)"
            if "to migrate" in step.label:
                taker += " (to migrate a)"
            late = "/".join(f"{((b - a) * 1000 - skew_ms):.2f}" for a, b in step.windows)
            lost = "/".join(str(n) for n in step.lost)
            edges = "/".join(self.edges(step, lan) for lan in LANS)
            garps = [announced for _, announced in step.windows]
            apart = f"{(max(garps) - min(garps)) * 1000:.2f}"
            lines.append(f"  {taker:28} {lost:>9} {late:>25} {edges:>40} {apart:>15}")
        return "\n".join(lines)

    def table(self, label: str) -> str:
        lines = [
            f"migration {label}: probes lost per VIP (LAN 1/LAN 2), longest reply gap ms"
            " [taker's first gratuitous ARP after the priority-0 advert, ms]"
        ]
        for s in self.steps:
            lost = "/".join(str(n) for n in s.lost)
            gaps = "/".join(f"{g:.1f}" for g in s.gap_ms)
            line = f"  {s.kind:8} {s.label}: lost {lost}, gap {gaps}"
            if s.windows:
                line += " [" + "/".join(f"{(b - a) * 1000:.1f}" for a, b in s.windows) + "]"
            lines.append(line)
        return "\n".join(lines)


@pytest.mark.parametrize("label", list(CASES))
def test_rolling_migration(netlab2: Lab, keepalived_bin: str, label: str) -> None:
    case = CASES[label]
    m = Migration(netlab2, case, imported_toml)
    ka, kb = m.keepalived["dir-a"], m.keepalived["dir-b"]
    ha, hb = m.hadirector["dir-a"], m.hadirector["dir-b"]

    for node in PRIORITY:  # see the module docstring
        netlab2.sysctl(node, "net.ipv4.ip_forward", "0")
    # The keepalived pair, one director at a time (the 150 one first).
    ka.start()
    m.wait(ka, "MASTER")
    kb.start()
    m.wait(kb, "BACKUP")
    for node, k in m.keepalived.items():  # what was converted is what keepalived runs
        ran = [line for line in k.conf_path.read_text().splitlines() if "notify_fifo" not in line]
        assert ran == (netlab2.tmpdir / f"keepalived-{node}.conf").read_text().splitlines()
    for lan, vip in zip(LANS, m.vips, strict=True):  # the client resolves the VIPs
        ProberRun(netlab2, vip, dev=iface(lan), duration_s=0.2).result(60)
    m.settled_on("dir-a")

    # Baseline: keepalived ↔ keepalived.
    m.failover("keepalived a → keepalived b (a stopped)", ka, kb)
    m.failback("keepalived a preempts keepalived b", ka, kb)

    # dir-b: keepalived → hadirector, then failover and fail-back with keepalived on a.
    m.join_as_backup("dir-b", ka)
    m.failover("keepalived a → hadirector b (a stopped)", ka, hb)
    m.failback("keepalived a preempts hadirector b", ka, hb)

    # dir-a: its keepalived hands over to b, hadirector starts there and preempts.
    m.failover("keepalived a → hadirector b (a stopped, to migrate a)", ka, hb)
    m.failback("hadirector a (migrated) preempts hadirector b", ha, hb)

    # hadirector ↔ hadirector.
    m.failover("hadirector a → hadirector b (a stopped)", ha, hb)
    m.failback("hadirector a preempts hadirector b", ha, hb)

    print(f"\n{m.table(label)}\n{m.comparison()}\nload average {os.getloadavg()}")
    m.no_complaints()
    problems = m.check()
    assert problems == [], "\n".join([*problems, m.table(label), m.comparison()])
