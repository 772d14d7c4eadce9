"""Scale benchmark: CPU, memory and start-up of a pair, hadirector and keepalived side by side.

For each load (N VRRP instances at one advert interval) and each implementation, a fresh
one-LAN namespace lab (tests/netns/lab.py) gets two directors on its bridge: dir-a with
priority 150 and dir-b with priority 100, VRRPv3 multicast, instances with VRIDs 1..N on
eth0, one VIP each (198.18.0.VRID/32, the benchmarking range). dir-a starts and becomes
master of every instance, then dir-b starts and becomes backup of every instance; after a
settling pause the bench reads, for both agents:

- CPU: the first field of /proc/PID/task/TID/schedstat (nanoseconds on a CPU) of every
  thread of the agent and of its child processes (keepalived's VRRP child), at the start
  and at the end of a fixed window (default 20 s), as a percentage of one CPU;
- PSS: the ``Pss`` line of /proc/PID/smaps_rollup of the agent and its children, summed,
  at the end of the window.

It also measures start -> first advert less Master_Down_Interval: a lone dir-a (one
instance, advert 1 s) is started and the lab's wire watcher (in the switch namespace)
time-stamps its first advert; Master_Down_Interval (3 x advert + Skew_Time, 3.414 s at
priority 150) is what the protocol makes any implementation wait, the rest is start-up.

hadirector runs as it does on a director: the package byte-compiled first (what ``pip
install`` does; an environment with PYTHONDONTWRITEBYTECODE set would otherwise compile
every module from source at each start, ~0.1 s), and started through the console script of
the interpreter running the bench, not through whatever ``hadirector`` is first on PATH (a
version manager's shim, such as pyenv's shell script, costs ~0.2 s before Python starts).
The agents import the package of the checkout holding the bench (or ``--tree DIR``'s),
first on their PYTHONPATH: a console script installed from another checkout (an editable
install) would otherwise run that checkout's code.

Both implementations run at the same time, load after load: one pair per implementation,
each in a lab of its own, and their CPU is read over the same window. On a virtual machine
the CPU a process spends per wake-up changes with the host, from one moment to the next
and for every process alike (seen on the build VM: a hadirector pair and a keepalived pair
side by side, both moving 1.8 x at the same second, hadirector / keepalived staying
4.0-4.8): measured one after the other, the ratio depended on which moment each window
fell on (2.4 x to 4.8 x for the same code), measured together it holds. ``--apart``
measures one implementation after the other (each then has the machine alone). The table
(markdown) gives each figure, the ratio hadirector / keepalived and the target of the VRRP
engine's rewrite next to it. ``--soak SECONDS`` instead runs 255 instances at 1 s with a
CPU hog pinned (taskset) on the core the backup agent is pinned to, and counts spurious
transitions: any state change of either agent after the initial election.

Usage (root)::

    python3 bench/scale.py                     # 1, 100, 255 instances at 1 s; 1 at 0.01 s
    python3 bench/scale.py --quick             # 5 s windows, 1 and 100 instances
    python3 bench/scale.py --soak 600          # 10 minutes beside a CPU hog
    python3 bench/scale.py --json runs.json    # also every measurement as JSON
    python3 bench/scale.py --tree ../other     # the agents run another checkout's code
    python3 bench/scale.py --start-only --start-runs 5   # start -> first advert alone

It prints figures; it asserts nothing about them. Each lab is closed whatever happens
(processes killed, namespaces deleted).
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import dataclasses
import importlib.util
import json
import os
import platform
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

from bench.failover import IMPLS  # noqa: E402
from tests.netns.keepalived import KeepalivedDirector  # noqa: E402
from tests.netns.lab import (  # noqa: E402
    HadirectorDirector,
    InstanceSpec,
    Lab,
    ProcessDirector,
)

HIGH, LOW = 150, 100
VERSION = 3
IMPL_NAMES = ("hadirector", "keepalived")
SOAK_INSTANCES = 255
START_ADVERT_S = 1.0
MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Load:
    """N instances at one advert interval, and the issue's CPU target for it (a ratio)."""

    instances: int
    advert_s: float
    target_ratio: float | None = None

    @property
    def label(self) -> str:
        plural = "instance" if self.instances == 1 else "instances"
        return f"{self.instances} {plural}, advert {self.advert_s:g} s"


FULL_LOADS = (Load(1, 1.0), Load(100, 1.0, 1.5), Load(255, 1.0), Load(1, 0.01, 3.0))
QUICK_LOADS = FULL_LOADS[:2]
PSS_TARGET_MIB = 40.0
START_TARGET_S = 0.3


def instances(count: int, priority: int, advert_s: float) -> list[InstanceSpec]:
    """``count`` multicast VRRPv3 instances on eth0, VRIDs 1..count, one VIP each."""
    if not 1 <= count <= 255:
        raise ValueError("1..255 instances (one per VRID)")
    return [
        InstanceSpec(
            name=f"VI_{vrid}",
            interface="eth0",
            vrid=vrid,
            priority=priority,
            advert_s=advert_s,
            version=VERSION,
            vips=(f"198.18.0.{vrid}/32",),
        )
        for vrid in range(1, count + 1)
    ]


def deployed_command() -> list[str]:
    """``hadirector`` as installed for this interpreter: its console script beside it, else
    ``python -m hadirector`` (never a shim found on PATH)."""
    script = Path(sys.executable).with_name("hadirector")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "hadirector"]


def byte_compile(tree: Path | None = None) -> Path:
    """Byte-compile the hadirector package the agents will import (as ``pip install``
    does): the one in ``tree``, else the one this bench imports; return its directory."""
    if tree is not None:
        package = tree / "hadirector"
    else:
        spec = importlib.util.find_spec("hadirector")
        if spec is None or spec.origin is None:
            raise RuntimeError("hadirector is not importable")
        package = Path(spec.origin).parent
    if not (package / "__init__.py").is_file():
        raise RuntimeError(f"no hadirector package in {package.parent}")
    if not compileall.compile_dir(package, quiet=1):
        raise RuntimeError(f"byte-compiling {package} failed")
    return package


# The directory holding the hadirector package the agents import (first on their
# PYTHONPATH): the one this bench imports (its own checkout, unless --tree says another).
# Without it a console script installed from another checkout (an editable install) would
# run that checkout's code.
AGENT_TREE: Path | None = None


class DeployedHadirector(HadirectorDirector):
    """``hadirector run`` started through ``deployed_command()``, importing the package
    in ``AGENT_TREE``."""

    def argv(self) -> list[str]:
        return [*deployed_command(), "run", "--config", str(self.conf_path), "--log-format", "json"]

    def popen_kwargs(self) -> dict[str, Any]:
        kwargs = super().popen_kwargs()
        if AGENT_TREE is not None:
            env = kwargs["env"]
            rest = env.get("PYTHONPATH", "")
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(AGENT_TREE), rest) if p)
        return kwargs


def make_director(
    impl: str, lab: Lab, node: str, priority: int, count: int, advert_s: float
) -> ProcessDirector:
    specs = instances(count, priority, advert_s)
    if impl == "keepalived":
        return KeepalivedDirector(lab, node, instances=specs)
    return DeployedHadirector(lab, node, instances=specs)


def master_down_interval(advert_s: float, priority: int) -> float:
    """RFC 5798 section 6.1: 3 x Master_Adver_Interval + Skew_Time."""
    return 3 * advert_s + (256 - priority) * advert_s / 256


# -- /proc readings ---------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (from /proc/PID/task/TID/children)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            tids = os.listdir(f"/proc/{current}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            try:
                todo += [
                    int(c) for c in Path(f"/proc/{current}/task/{tid}/children").read_text().split()
                ]
            except FileNotFoundError:
                continue
    return out


def cpu_ns(pid: int) -> dict[tuple[int, int], int]:
    """Nanoseconds on a CPU so far of every thread of ``pid``'s process tree."""
    out: dict[tuple[int, int], int] = {}
    for member in process_tree(pid):
        try:
            tids = os.listdir(f"/proc/{member}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            try:
                text = Path(f"/proc/{member}/task/{tid}/schedstat").read_text()
            except FileNotFoundError:
                continue
            out[(member, int(tid))] = int(text.split()[0])
    return out


def cpu_delta_ns(before: dict[tuple[int, int], int], after: dict[tuple[int, int], int]) -> int:
    """CPU time spent between two ``cpu_ns`` readings by the threads alive at the second
    (a thread or child that ended in between is not counted)."""
    return sum(ns - before.get(key, 0) for key, ns in after.items())


def pss_bytes(pid: int) -> int:
    """The proportional set size of ``pid``'s process tree."""
    total = 0
    for member in process_tree(pid):
        try:
            text = Path(f"/proc/{member}/smaps_rollup").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1]) * 1024
    return total


def _pid(director: ProcessDirector) -> int:
    if director.proc is None:
        raise RuntimeError(f"{director.node}: the agent was not started")
    if not director.running():
        # The last line with words (a traceback's last line is a frame of "+---").
        lines = [line.strip(" |+-") for line in getattr(director, "log", str)().splitlines()]
        last = next((line for line in reversed(lines) if line), "(none)")
        raise RuntimeError(
            f"{director.node}: the agent exited with {director.proc.returncode}; "
            f"last output: {last}"
        )
    return director.proc.pid


# -- measurements ---------------------------------------------------------------------


def _elect(master: ProcessDirector, backup: ProcessDirector, advert_s: float) -> list[str]:
    """Start the pair (master first) and wait for the election; return notes on what did
    not settle (the measurement goes on: an agent that cannot keep up is a finding)."""
    notes = []
    timeout_s = 30.0 + 10 * advert_s + 0.2 * len(master.instances)
    for director, state in ((master, "MASTER"), (backup, "BACKUP")):
        director.start()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                director.wait_state(state, 1.0)
                break
            except TimeoutError:
                exited = not director.running()
                if exited or time.monotonic() > deadline:
                    states = [director.state(s.name) for s in director.instances]
                    end = "then the agent exited" if exited else f"after {timeout_s:.0f} s"
                    notes.append(
                        f"{director.node}: {states.count(state)}/{len(states)} instances "
                        f"{state}, {end}"
                    )
                    break
    return notes


def measure_loads(
    impls: Sequence[str], load: Load, window_s: float, settle_s: float
) -> dict[str, dict[str, Any]]:
    """CPU over one ``window_s`` and PSS of both agents of one pair per implementation,
    every pair running ``load`` at the same time, each in a lab of its own: the machine's
    changes of speed (module docstring) fall on every implementation alike."""
    rows: dict[str, dict[str, Any]] = {
        impl: {"impl": impl, "instances": load.instances, "advert_s": load.advert_s}
        for impl in impls
    }
    pairs: dict[str, tuple[ProcessDirector, ProcessDirector]] = {}
    with contextlib.ExitStack() as stack:
        for impl in impls:
            row = rows[impl]
            try:
                lab = stack.enter_context(Lab(watch=False))
                master = make_director(impl, lab, "dir-a", HIGH, load.instances, load.advert_s)
                backup = make_director(impl, lab, "dir-b", LOW, load.instances, load.advert_s)
                stack.callback(_stop, master, backup)
                pairs[impl] = (master, backup)
                row["notes"] = _elect(master, backup, load.advert_s)
            except Exception as exc:  # a failed measurement is reported, not fatal
                row["error"] = f"{type(exc).__name__}: {exc}"
                pairs.pop(impl, None)
        time.sleep(settle_s)
        pids: dict[str, dict[str, int]] = {}
        for impl, (master, backup) in pairs.items():
            try:
                pids[impl] = {"master": _pid(master), "backup": _pid(backup)}
            except Exception as exc:
                rows[impl]["error"] = f"{type(exc).__name__}: {exc}"

        def reading() -> dict[str, dict[str, dict[tuple[int, int], int]]]:
            return {impl: {role: cpu_ns(p) for role, p in ps.items()} for impl, ps in pids.items()}

        before = reading()
        t0 = time.monotonic()
        time.sleep(window_s)
        after = reading()
        elapsed = time.monotonic() - t0
        for impl, ps in pids.items():
            row = rows[impl]
            try:
                for role, pid in ps.items():
                    delta = cpu_delta_ns(before[impl][role], after[impl][role])
                    row[f"{role}_cpu_pct"] = delta / elapsed / 1e7
                    row[f"{role}_pss_mib"] = pss_bytes(pid) / MIB
                    row[f"{role}_processes"] = len(process_tree(pid))
                row["window_s"] = round(elapsed, 3)
                row["cpu_pct"] = row["master_cpu_pct"] + row["backup_cpu_pct"]
                row["pss_mib"] = max(row["master_pss_mib"], row["backup_pss_mib"])
                moved = [
                    [d.node, t.instance, t.new]
                    for d in pairs[impl]
                    for t in d.transitions()
                    if t0 <= t.t <= t0 + elapsed
                ]
                if moved:
                    row["notes"].append(f"{len(moved)} transitions during the window: {moved[:4]}")
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"
    return rows


def _stop(*directors: ProcessDirector) -> None:
    for director in directors:
        if director.running():
            director.stop()


def measure_start(impl: str) -> dict[str, Any]:
    """Process start to its first advert on the wire, for a lone director (priority 150,
    one instance at 1 s), less Master_Down_Interval."""
    row: dict[str, Any] = {"impl": impl}
    with Lab() as lab:
        director = make_director(impl, lab, "dir-a", HIGH, 1, START_ADVERT_S)
        mac = lab.mac("dir-a")
        try:
            t0 = time.monotonic()
            director.start()
            frame = lab.wait_wire(
                lambda f: f.kind == "vrrp" and f.src_mac == mac and f.info["priority"] == HIGH,
                30.0,
                "the first advert",
                since=t0,
            )
            row["first_advert_s"] = frame.t - t0
            row["start_s"] = frame.t - t0 - master_down_interval(START_ADVERT_S, HIGH)
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            if director.running():
                director.stop()
    return row


def soak(impl: str, seconds: float, core: int, settle_s: float) -> dict[str, Any]:
    """255 instances at 1 s, the backup and a CPU hog pinned on ``core`` for ``seconds``:
    count every state change after the initial election."""
    row: dict[str, Any] = {"impl": impl, "instances": SOAK_INSTANCES, "seconds": seconds}
    with Lab(watch=False) as lab:
        master = make_director(impl, lab, "dir-a", HIGH, SOAK_INSTANCES, 1.0)
        backup = make_director(impl, lab, "dir-b", LOW, SOAK_INSTANCES, 1.0)
        try:
            row["notes"] = _elect(master, backup, 1.0)
            elected = time.monotonic()
            time.sleep(settle_s)
            for pid in process_tree(_pid(backup)):
                subprocess.run(
                    ["taskset", "-a", "-p", "-c", str(core), str(pid)],
                    check=True,
                    capture_output=True,
                )
            hog = lab.popen(
                "client", "taskset", "-c", str(core), sys.executable, "-c", "while True: pass"
            )
            pids = {"master": _pid(master), "backup": _pid(backup), "hog": hog.pid}
            before = {role: cpu_ns(pid) for role, pid in pids.items()}
            t0 = time.monotonic()
            time.sleep(seconds)
            after = {role: cpu_ns(pid) for role, pid in pids.items()}
            elapsed = time.monotonic() - t0
            for role in pids:
                row[f"{role}_cpu_pct"] = cpu_delta_ns(before[role], after[role]) / elapsed / 1e7
            lab.kill(hog)
            changes = [
                [round(t.t - t0, 3), d.node, t.instance, t.old, t.new]
                for d in (master, backup)
                for t in d.transitions()
                if t.t > elected
            ]
            row["spurious"] = len(changes)
            row["changes"] = changes
            row["window_s"] = round(elapsed, 3)
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            for director in (master, backup):
                if director.running():
                    director.stop()
    return row


# -- the table ------------------------------------------------------------------------


def _pct(value: float) -> str:
    return f"{value:.3g} %"


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or theirs <= 0:
        return None
    return ours / theirs


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "**no**")


def _md(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


HEADER = ("measure", "hadirector", "keepalived", "ratio", "target", "met")


def _failed(row: dict[str, Any]) -> str:
    return "-" if row["error"] == "not run" else f"ERROR {row['error']}"


def cpu_cell(row: dict[str, Any]) -> str:
    if "error" in row:
        return _failed(row)
    return (
        f"{_pct(row['cpu_pct'])} (master {_pct(row['master_cpu_pct'])}, "
        f"backup {_pct(row['backup_cpu_pct'])})"
    )


def pss_cell(row: dict[str, Any]) -> str:
    if "error" in row:
        return _failed(row)
    return f"{row['master_pss_mib']:.1f} / {row['backup_pss_mib']:.1f} MiB"


def start_cell(rows: Sequence[dict[str, Any]]) -> tuple[str, float | None]:
    ok = [r["start_s"] for r in rows if "error" not in r]
    errors = [r["error"] for r in rows if "error" in r]
    if not ok:
        return (f"ERROR {errors[0]}" if errors else "-"), None
    median = statistics.median(ok)
    text = f"{median:.3f} s"
    if len(ok) > 1:
        text += f" ({min(ok):.3f}-{max(ok):.3f}, {len(ok)} runs)"
    if errors:
        text += f" ({len(errors)} failed)"
    return text, median


def table(
    loads: Sequence[Load],
    rows: dict[tuple[str, Load], dict[str, Any]],
    starts: dict[str, list[dict[str, Any]]],
) -> list[str]:
    """The markdown table: one row per measure, both implementations side by side."""
    lines = [_md(HEADER), _md(["---"] * len(HEADER))]
    for load in loads:
        ours, theirs = rows[("hadirector", load)], rows[("keepalived", load)]
        ratio = _ratio(ours.get("cpu_pct"), theirs.get("cpu_pct"))
        if load.target_ratio is None:
            target, ok = "-", None
        else:
            target = f"<= {load.target_ratio:g} x"
            ok = None if ratio is None else ratio <= load.target_ratio
        lines.append(
            _md(
                [
                    f"CPU master + backup, {load.label}",
                    cpu_cell(ours),
                    cpu_cell(theirs),
                    "-" if ratio is None else f"{ratio:.2g}",
                    target,
                    _verdict(ok),
                ]
            )
        )
    ours_text, ours_s = start_cell(starts["hadirector"])
    theirs_text, theirs_s = start_cell(starts["keepalived"])
    ratio = _ratio(ours_s, theirs_s)
    lines.append(
        _md(
            [
                "start -> first advert, less Master_Down_Interval",
                ours_text,
                theirs_text,
                "-" if ratio is None else f"{ratio:.2g}",
                f"<= {START_TARGET_S:g} s",
                _verdict(None if ours_s is None else ours_s <= START_TARGET_S),
            ]
        )
    )
    for load in loads:
        ours, theirs = rows[("hadirector", load)], rows[("keepalived", load)]
        ratio = _ratio(ours.get("pss_mib"), theirs.get("pss_mib"))
        pss = ours.get("pss_mib")
        lines.append(
            _md(
                [
                    f"PSS master / backup, {load.label}",
                    pss_cell(ours),
                    pss_cell(theirs),
                    "-" if ratio is None else f"{ratio:.2g}",
                    f"<= {PSS_TARGET_MIB:g} MiB",
                    _verdict(None if pss is None else pss <= PSS_TARGET_MIB),
                ]
            )
        )
    return lines


def soak_table(rows: dict[str, dict[str, Any]], seconds: float, core: int) -> list[str]:
    head = f"soak: {SOAK_INSTANCES} instances at 1 s, hog on CPU {core}, {seconds:g} s"
    lines = [_md((head, "hadirector", "keepalived", "target")), _md(["---"] * 4)]

    def cell(impl: str, key: str, fmt: Callable[[Any], str]) -> str:
        row = rows.get(impl)
        if row is None:
            return "-"
        if "error" in row:
            return f"ERROR {row['error']}"
        return fmt(row[key])

    lines.append(
        _md(
            (
                "spurious transitions",
                cell("hadirector", "spurious", str),
                cell("keepalived", "spurious", str),
                "0",
            )
        )
    )
    for role in ("master", "backup", "hog"):
        key = f"{role}_cpu_pct"
        lines.append(
            _md((f"CPU {role}", cell("hadirector", key, _pct), cell("keepalived", key, _pct), "-"))
        )
    return lines


# -- command line ---------------------------------------------------------------------


def _loads(text: str) -> list[Load]:
    """'1x1,100x1,1x0.01' -> loads (instances x advert seconds), targets kept from FULL_LOADS."""
    out = []
    for item in (x for x in text.split(",") if x):
        count, sep, advert = item.partition("x")
        try:
            load = Load(int(count), float(advert))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{item!r}: want INSTANCESxADVERT, e.g. 100x1"
            ) from None
        if not sep or not 1 <= load.instances <= 255 or not 0.01 <= load.advert_s <= 40.95:
            raise argparse.ArgumentTypeError(f"{item!r}: 1..255 instances, advert 0.01..40.95 s")
        known = [
            k for k in FULL_LOADS if (k.instances, k.advert_s) == (load.instances, load.advert_s)
        ]
        out.append(known[0] if known else load)
    return out


def _impls(text: str) -> list[str]:
    names = [x for x in text.split(",") if x]
    bad = [n for n in names if n not in IMPL_NAMES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {list(IMPL_NAMES)}")
    return names


def progress(what: str) -> None:
    """A progress line on stderr (the table goes to stdout)."""
    print(f"{time.strftime('%H:%M:%S')} {what} ({_load_line('now')})", file=sys.stderr)


def _load_line(label: str) -> str:
    one, five, fifteen = os.getloadavg()
    return f"{label}: load average {one:.2f} {five:.2f} {fifteen:.2f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="CI size: 5 s windows, 1 and 100 instances, one start run",
    )
    parser.add_argument("--window", type=float, help="CPU window in seconds (default 20; quick 5)")
    parser.add_argument(
        "--settle",
        type=float,
        help="pause after the election before the window (default 3 s; quick 1)",
    )
    parser.add_argument(
        "--loads",
        type=_loads,
        help="comma-separated INSTANCESxADVERT (default 1x1,100x1,255x1,1x0.01)",
    )
    parser.add_argument(
        "--start-runs",
        type=int,
        help="start -> first advert runs per implementation (default 3; quick 1)",
    )
    parser.add_argument(
        "--start-only",
        action="store_true",
        help="measure start -> first advert alone (no CPU or PSS loads)",
    )
    parser.add_argument(
        "--impl",
        type=_impls,
        default=list(IMPL_NAMES),
        help="comma-separated: hadirector,keepalived (default both)",
    )
    parser.add_argument(
        "--soak",
        type=float,
        metavar="SECONDS",
        help=f"soak instead: {SOAK_INSTANCES} instances at 1 s beside a CPU hog",
    )
    parser.add_argument(
        "--core", type=int, help="CPU the backup and the hog are pinned to (default: the last one)"
    )
    parser.add_argument(
        "--tree",
        metavar="DIR",
        help="run the agents from the hadirector package in DIR (a checkout; default: "
        "the one holding this bench)",
    )
    parser.add_argument(
        "--apart",
        action="store_true",
        help="CPU and PSS: one implementation after the other, not both in the same window",
    )
    parser.add_argument("--json", metavar="FILE", help="also write every measurement as JSON")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("scale bench: needs root (network namespaces)", file=sys.stderr)
        return 2
    window_s = args.window if args.window is not None else (5.0 if args.quick else 20.0)
    settle_s = args.settle if args.settle is not None else (1.0 if args.quick else 3.0)
    loads = args.loads or list(QUICK_LOADS if args.quick else FULL_LOADS)
    if args.start_only:
        loads = []
    start_runs = args.start_runs if args.start_runs is not None else (1 if args.quick else 3)

    impls = []
    for name in args.impl:
        reason = IMPLS[name].unavailable()
        if reason:
            print(f"skipping {name}: {reason}")
        else:
            impls.append(name)
    print(
        f"{platform.node()}, {os.cpu_count()} cpus, {platform.release()}; VRRPv{VERSION} "
        f"multicast, priorities {HIGH}/{LOW}; {_load_line('before')}"
    )
    if "hadirector" in impls:
        global AGENT_TREE
        package = byte_compile(None if args.tree is None else Path(args.tree).resolve())
        AGENT_TREE = package.parent
        print(
            f"hadirector: {' '.join(deployed_command())} importing {package} "
            "(first on its PYTHONPATH), byte-compiled"
        )
    sys.stdout.flush()
    started = time.monotonic()
    results: dict[str, Any] = {"cpus": os.cpu_count(), "load_before": os.getloadavg()}

    if args.soak is not None:
        core = args.core if args.core is not None else max(os.sched_getaffinity(0))
        soaks = {}
        for impl in impls:
            progress(f"{impl}: soak, {args.soak:g} s")
            soaks[impl] = soak(impl, args.soak, core, settle_s)
        print()
        for line in soak_table(soaks, args.soak, core):
            print(line)
        for impl, row in soaks.items():
            for change in row.get("changes", [])[:10]:
                print(f"- {impl}: {change}")
            for note in row.get("notes", []):
                print(f"- {impl}: {note}")
        results["soak"] = soaks
    else:
        rows: dict[tuple[str, Load], dict[str, Any]] = {}
        for load in loads:
            ordered = [impl for impl in IMPL_NAMES if impl in impls]
            groups = [[impl] for impl in ordered] if args.apart else [ordered]
            measured: dict[str, dict[str, Any]] = {}
            for group in groups:
                if group:
                    progress(f"{' + '.join(group)}: {load.label}")
                    measured |= measure_loads(group, load, window_s, settle_s)
            for impl in IMPL_NAMES:
                rows[(impl, load)] = measured.get(impl, {"error": "not run"})  # "-"
        starts: dict[str, list[dict[str, Any]]] = {impl: [] for impl in IMPL_NAMES}
        for _ in range(start_runs):
            for impl in impls:
                progress(f"{impl}: start -> first advert")
                starts[impl].append(measure_start(impl))
        if loads:
            print(f"\nCPU over {window_s:g} s windows (% of one CPU), PSS at the window's end")
        print()
        for line in table(loads, rows, starts):
            print(line)
        for (impl, load), row in rows.items():
            for note in row.get("notes", []):
                print(f"- {impl}, {load.label}: {note}")
        results["loads"] = [row for row in rows.values()]
        results["starts"] = starts
    print(f"\n{_load_line('after')}; {time.monotonic() - started:.0f} s")
    results["load_after"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
