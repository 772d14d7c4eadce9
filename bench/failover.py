"""Failover benchmark: what a client probing the VIP every 2 ms sees when the master goes.

For each implementation (keepalived; hadirector once it can run), advert interval and
scenario, a fresh namespace lab is built (tests/netns/lab.py): dir-a (priority 150) and
dir-b (priority 100) share VIP 192.0.2.100 over VRRPv3 multicast, and the client probes
the VIP every 2 ms (tests/netns/prober.py) from before the event until the pair has
settled after it. Scenarios:

- crash:   the master is SIGKILLed and taken off the wire at once (carrier loss);
- stop:    the master is stopped gracefully (SIGTERM: it sends priority 0);
- preempt: dir-a was stopped and dir-b took over; dir-a (higher priority) starts again
  and takes the VIP back.

Each run reports the longest time the client went without a reply, the probes lost
(counted, not estimated), how long after the event the new master reported MASTER and
sent its first gratuitous ARP, and spurious transitions: state changes beyond the expected
ones (e.g. a backup flapping to MASTER at a 10 ms advert interval on a busy machine).

Usage (root)::

    python bench/failover.py                       # full matrix, one run each
    python bench/failover.py --impl keepalived --advert 0.1 --scenario crash --repeat 5
    python bench/failover.py --json results.json   # also write every run as JSON

It prints figures; it asserts nothing about them. It must never leave namespaces or
processes behind (each run's lab is closed whatever happens) and never sends traffic
outside the lab.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.netns.keepalived import keepalived_factory  # noqa: E402
from tests.netns.lab import (  # noqa: E402
    Director,
    DirectorFactory,
    HadirectorDirector,
    Lab,
    Transition,
    hadirector_command,
    vip_address,
)
from tests.netns.prober import ProberRun  # noqa: E402

ADVERTS_S = (1.0, 0.1, 0.01)
SCENARIOS = ("crash", "stop", "preempt")
HIGH, LOW = 150, 100
VERSION = 3
# What each director is expected to report over a run, lifecycle markers left out.
EXPECTED = {
    "crash": {"dir-a": ["BACKUP", "MASTER"], "dir-b": ["BACKUP", "MASTER"]},
    "stop": {"dir-a": ["BACKUP", "MASTER"], "dir-b": ["BACKUP", "MASTER"]},
    "preempt": {
        "dir-a": ["BACKUP", "MASTER", "BACKUP", "MASTER"],
        "dir-b": ["BACKUP", "MASTER", "BACKUP"],
    },
}
LIFECYCLE = {"INIT", "STOP", "STOPPED", "DELETED"}


@dataclasses.dataclass(frozen=True)
class Impl:
    """A VRRP implementation the bench can run: why not (None = it can), and how."""

    name: str
    unavailable: Callable[[], str | None]
    factory: Callable[[], DirectorFactory]


def _keepalived_unavailable() -> str | None:
    return None if shutil.which("keepalived") else "keepalived is not installed"


def _hadirector_unavailable() -> str | None:
    command = hadirector_command()
    if command is None:
        return "hadirector is not installed"
    done = subprocess.run(
        [*command, "run", "--help"], capture_output=True, timeout=60, check=False, cwd=REPO
    )
    if done.returncode != 0:
        return f"`hadirector run` is not available: {done.stderr.decode(errors='replace')}"
    return None


def _hadirector_factory(
    lab: Lab, node: str, priority: int, advert_s: float, version: int
) -> Director:
    return HadirectorDirector(lab, node, priority, advert_s, version)


def _mixed_factory(lab: Lab, node: str, priority: int, advert_s: float, version: int) -> Director:
    """keepalived on dir-a (the master), hadirector on dir-b: a pair half migrated."""
    make = keepalived_factory if node == "dir-a" else _hadirector_factory
    return make(lab, node, priority, advert_s, version)


def _reverse_mixed_factory(
    lab: Lab, node: str, priority: int, advert_s: float, version: int
) -> Director:
    """hadirector on dir-a (the master), keepalived on dir-b: the other direction."""
    make = _hadirector_factory if node == "dir-a" else keepalived_factory
    return make(lab, node, priority, advert_s, version)


def _hadirector_tree() -> str:
    """Where the hadirector the directors run is imported from (``PYTHONPATH`` decides:
    the bench's own checkout is not on the directors' path)."""
    done = subprocess.run(
        [sys.executable, "-c", "import hadirector; print(hadirector.__file__)"],
        capture_output=True,
        timeout=60,
        check=False,
        cwd="/",
    )
    return done.stdout.decode(errors="replace").strip() or "? (not importable)"


def _mixed_unavailable() -> str | None:
    return _keepalived_unavailable() or _hadirector_unavailable()


IMPLS = {
    "keepalived": Impl("keepalived", _keepalived_unavailable, lambda: keepalived_factory),
    "hadirector": Impl("hadirector", _hadirector_unavailable, lambda: _hadirector_factory),
    "ka-hd": Impl("ka-hd", _mixed_unavailable, lambda: _mixed_factory),
    "hd-ka": Impl("hd-ka", _mixed_unavailable, lambda: _reverse_mixed_factory),
}


def spurious_transitions(transitions: Sequence[Transition], expected: Sequence[str]) -> int:
    """How many reported states are not part of the expected sequence, in order.

    Lifecycle markers (INIT, STOP) are ignored; the rest is matched greedily against
    ``expected`` as a subsequence, and every state left unmatched counts as spurious.
    """
    states = [t.new for t in transitions if t.new not in LIFECYCLE]
    i = 0
    spurious = 0
    for state in states:
        if i < len(expected) and state == expected[i]:
            i += 1
        else:
            spurious += 1
    return spurious


def _settle_s(advert_s: float) -> float:
    return max(0.5, 3 * advert_s)


def _state_timeout_s(advert_s: float) -> float:
    return 30.0 + 10 * advert_s


def run_once(impl: str, factory: DirectorFactory, advert_s: float, scenario: str) -> dict[str, Any]:
    """One run of ``scenario``: a fresh lab, two directors, the prober around the event."""
    row: dict[str, Any] = {"impl": impl, "advert_s": advert_s, "scenario": scenario}
    timeout_s = _state_timeout_s(advert_s)
    vip = vip_address()
    with Lab() as lab:
        hi = factory(lab, "dir-a", HIGH, advert_s, VERSION)
        lo = factory(lab, "dir-b", LOW, advert_s, VERSION)
        directors: list[Director] = [hi, lo]
        try:
            hi.start()
            hi.wait_state("MASTER", timeout_s)
            lo.start()
            lo.wait_state("BACKUP", timeout_s)
            old, new = hi, lo
            if scenario == "preempt":
                hi.stop()
                lo.wait_state("MASTER", timeout_s)
                old, new = lo, hi
            old_mac, new_mac = lab.mac(old.node), lab.mac(new.node)
            prober = ProberRun(lab, vip)
            _wait(lambda: lab.neigh("client", vip) == old_mac, 10, "client resolving the VIP")
            time.sleep(_settle_s(advert_s))

            t_event = time.monotonic()
            if scenario == "crash":
                hi.crash()
            elif scenario == "stop":
                hi.stop()
            else:
                hi.start()
            new.wait_state("MASTER", timeout_s)
            if scenario == "preempt":
                lo.wait_state("BACKUP", timeout_s)
            _wait(lambda: lab.neigh("client", vip) == new_mac, timeout_s, "client's entry moving")
            time.sleep(_settle_s(advert_s))
            t_end = time.monotonic()
            probes = prober.stop()
        except Exception as exc:  # a run that fails is reported, not fatal to the matrix
            row["error"] = f"{type(exc).__name__}: {exc}"
            return row
        finally:
            for director in directors:
                if director.running():
                    director.stop()

        takeover = [t.t for t in new.transitions() if t.new == "MASTER" and t.t >= t_event]
        garp = [
            f.t for f in lab.wire("arp", since=t_event)
            if f.src_mac == new_mac and f.info["gratuitous"] and f.info["sender_ip"] == vip
        ]  # fmt: skip
        # The stopping master's priority-0 advert, and the taker's first GARP after it.
        prio0 = [
            f.t for f in lab.wire("vrrp", since=t_event)
            if f.src_mac == old_mac and f.info["priority"] == 0
        ]  # fmt: skip
        announced = [t for t in garp if prio0 and t >= prio0[0]]
        spurious = sum(
            spurious_transitions(
                [t for t in d.transitions() if t.t <= t_end], EXPECTED[scenario][d.node]
            )
            for d in directors
        )
    row.update(
        gap_ms=probes["longest_gap_ms"],
        lost=probes["lost"],
        sent=probes["sent"],
        spurious=spurious,
        takeover_ms=round((takeover[0] - t_event) * 1000, 1) if takeover else None,
        garp_ms=round((garp[0] - t_event) * 1000, 1) if garp else None,
        late_ms=(
            round((announced[0] - prio0[0] - skew_time_s(LOW, advert_s)) * 1000, 2)
            if scenario == "stop" and announced
            else None
        ),
        skipped_slots=probes["skipped_slots"],
        max_send_gap_ms=probes["max_send_gap_ms"],
        max_send_gap_at=_since(probes["max_send_gap_at"], t_event),
        gaps=probes["gaps"],
        mac_changes=len(probes["mac_changes"]),
        transitions={
            d.node: [[round(t.t - t_event, 4), t.instance, t.new] for t in d.transitions()]
            for d in directors
        },
    )
    return row


def skew_time_s(priority: int, advert_s: float) -> float:
    """RFC 5798 Skew_Time: what a backup waits after a priority-0 advert."""
    return (256 - priority) / 256 * advert_s


def _since(t: float | None, t0: float) -> float | None:
    return None if t is None else round(t - t0, 4)


def _wait(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


COLUMNS = (
    ("impl", "impl", "<10"),
    ("advert_s", "advert s", ">8"),
    ("scenario", "scenario", "<8"),
    ("gap_ms", "gap ms", ">9"),
    ("lost", "lost", ">6"),
    ("spurious", "spurious", ">8"),
    ("takeover_ms", "master ms", ">9"),
    ("garp_ms", "garp ms", ">8"),
    ("late_ms", "late ms", ">7"),
    ("sent", "sent", ">6"),
    ("max_send_gap_ms", "stall ms", ">8"),
)


def _cell(value: Any, spec: str) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, float):
        text = f"{value:g}" if value < 10 else f"{value:.1f}"
    else:
        text = str(value)
    return format(text, spec)


def format_row(row: dict[str, Any]) -> str:
    if "error" in row:
        head = "  ".join(_cell(row.get(k), spec) for k, _, spec in COLUMNS[:3])
        return f"{head}  ERROR {row['error']}"
    return "  ".join(_cell(row.get(k), spec) for k, _, spec in COLUMNS)


def header() -> str:
    return "  ".join(format(title, spec) for _, title, spec in COLUMNS)


def median_row(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The per-column median of successful runs of one group (None if none succeeded)."""
    ok = [r for r in rows if "error" not in r]
    if not ok:
        return None
    out = {k: ok[0][k] for k in ("impl", "advert_s", "scenario")}
    out["impl"] = f"{out['impl']}~"
    keys = ("gap_ms", "lost", "spurious", "takeover_ms", "garp_ms", "late_ms", "sent")
    for key in (*keys, "max_send_gap_ms"):
        values = [r[key] for r in ok if r.get(key) is not None]
        out[key] = statistics.median(values) if values else None
    return out


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def _names(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [x for x in text.split(",") if x]
        bad = [n for n in names if n not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {list(choices)}")
        return names

    return parse


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--impl",
        type=_names(list(IMPLS)),
        default=list(IMPLS),
        help="comma-separated: keepalived,hadirector,ka-hd (keepalived on dir-a, hadirector "
        "on dir-b),hd-ka (the other way round) (default: all available)",
    )
    parser.add_argument(
        "--advert",
        type=_floats,
        default=list(ADVERTS_S),
        help="comma-separated advert intervals in seconds (default 1,0.1,0.01)",
    )
    parser.add_argument(
        "--scenario",
        type=_names(SCENARIOS),
        default=list(SCENARIOS),
        help="comma-separated: crash,stop,preempt (default: all)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per combination")
    parser.add_argument(
        "--json", metavar="FILE", help="write every run as JSON to FILE ('-' for stdout, no table)"
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("failover bench: needs root (network namespaces)", file=sys.stderr)
        return 2

    table = args.json != "-"
    say: Callable[[str], None] = print if table else (lambda _line: None)
    factories: dict[str, DirectorFactory] = {}
    for name in args.impl:
        reason = IMPLS[name].unavailable()
        if reason:
            say(f"# skipping {name}: {reason}")
        else:
            factories[name] = IMPLS[name].factory()
    if any(name != "keepalived" for name in factories):
        say(f"# hadirector: {' '.join(hadirector_command() or [])} importing {_hadirector_tree()}")
    load = os.getloadavg()
    say(
        f"# {platform.node()} {os.cpu_count()} cpus, load {load[0]:.2f} {load[1]:.2f}; "
        f"probe every 2 ms; VRRPv{VERSION} multicast, priorities {HIGH}/{LOW}"
    )
    say(header())
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    for name, factory in factories.items():
        for advert_s in args.advert:
            for scenario in args.scenario:
                group = []
                for _ in range(args.repeat):
                    row = run_once(name, factory, advert_s, scenario)
                    group.append(row)
                    say(format_row(row))
                    sys.stdout.flush()
                if args.repeat > 1:
                    summary = median_row(group)
                    if summary:
                        say(format_row(summary))
                rows.extend(group)
    say(
        f"# {len(rows)} runs in {time.monotonic() - started:.0f} s; gap = longest time "
        "without a reply; master/garp ms = event to MASTER report / first GARP; stall = "
        "longest pause of the prober itself (load); late = (stop) the taker's first GARP "
        "after the priority-0 advert on the wire, less Skew_Time; '~' rows are medians"
    )
    if args.json:
        text = json.dumps({"load": load, "cpus": os.cpu_count(), "runs": rows}, indent=1)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
