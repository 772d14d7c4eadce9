"""The chaos soak, CI size: one deck of faults (every kind once) on a pair of directors.

The engine, the lab and the invariants are soaklab.py's (shared with bench/soak.py, the long
run). The seed is random unless HADIRECTOR_SOAK_SEED gives one; it is printed first, and
the same HADIRECTOR_SOAK_SEED replays the same faults. Every invariant the engine checks is
asserted here; the figures it only reports (gap and overlap lengths, memory growth, the
flood rate reached) are printed (``pytest -rP`` shows them).

Smaller than the long run in two ways, to keep the emulated VM's run short and its outcome
independent of the host's load: the control-socket abuse uses 200 simultaneous clients
(1,000 in the long run) and the spoofed advert flood runs at 200/s for 2-4 s (the long run
aims at 10,000/s; under emulation, on a loaded host, an agent may reject only a few hundred
a second, see README, known limits).

The judging functions are exercised on the host with made-up time lines (the tests without
the vm marker), so they are known to catch an overlap, a gap or a missed heal.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from .lvslab import Lab
from .soaklab import (
    KINDS,
    Settings,
    Soak,
    dual_master_excess,
    master_intervals,
    overlaps,
    owner_gaps,
    slope_kib_per_10min,
    summary,
)


@pytest.fixture
def lab(ipvs_modules: None) -> Iterator[Lab]:
    with Lab() as lab:
        yield lab


@pytest.mark.vm
def test_chaos_soak_one_deck(lab: Lab, tmp_path: Path) -> None:
    seed = int(os.environ.get("HADIRECTOR_SOAK_SEED") or random.SystemRandom().randrange(1 << 31))
    print(f"soak seed {seed} (HADIRECTOR_SOAK_SEED={seed} replays it)", flush=True)
    report = Soak(lab, tmp_path, Settings(seed=seed)).run()
    print(summary(report))
    print(json.dumps(report["faults"], indent=None)[:4000])
    assert report["netem"], "sch_netem did not load in the VM: netem faults were not injected"
    assert sorted(f["kind"] for f in report["faults"]) == sorted(KINDS)
    if report["violations"]:
        print("timeline (seconds from the start):\n" + "\n".join(report["timeline"]))
    assert report["violations"] == [], f"seed {seed}:\n" + summary(report)


def _transition(t: float, instance: str, new: str) -> dict[str, object]:
    stamp = datetime.fromtimestamp(t, tz=UTC).isoformat()
    return {"event": "vrrp.transition", "instance": instance, "new": new, "timestamp": stamp}


def test_master_intervals_and_their_overlaps() -> None:
    a = [_transition(10, "front", "MASTER"), _transition(30, "front", "BACKUP")]
    a += [_transition(40, "front", "MASTER"), _transition(41, "back", "MASTER")]
    b = [_transition(12, "front", "BACKUP"), _transition(25, "front", "MASTER")]
    b += [_transition(33, "front", "BACKUP")]
    spans_a = master_intervals(a, "front", end=50)
    spans_b = master_intervals(b, "front", end=50)
    assert spans_a == [(10, 30), (40, 50)]
    assert spans_b == [(25, 33)]
    assert overlaps(spans_a, spans_b) == [(25, 30)]
    assert master_intervals(a, "back", end=45) == [(41, 45)]


def test_two_masters_count_from_the_last_heal_before_they_end() -> None:
    dual = [(25.0, 30.0)]
    assert dual_master_excess(dual, []) == [(25.0, 30.0, 5.0)]  # no partition: all of it
    assert dual_master_excess(dual, [(20.0, 27.0)]) == [(25.0, 30.0, 3.0)]  # healed at 27
    assert dual_master_excess(dual, [(20.0, 31.0)]) == [(25.0, 30.0, 0.0)]  # still cut off
    assert dual_master_excess(dual, [(1.0, 2.0)]) == [(25.0, 30.0, 5.0)]  # an old partition
    late = dual_master_excess(dual, [(20.0, 26.0), (26.5, 28.0)])
    assert late == [(25.0, 30.0, 2.0)]  # the last heal counts


def test_vip_gaps_are_the_samples_without_a_live_holder() -> None:
    a, none = frozenset({"A"}), frozenset()
    samples = [(1.0, a, a), (2.0, none, a), (3.0, none, none), (4.0, a, a), (5.0, a, none)]
    assert owner_gaps(samples) == [(2.0, 4.0, "front"), (3.0, 4.0, "back"), (5.0, 5.0, "back")]


def test_memory_growth_is_a_least_squares_slope() -> None:
    assert slope_kib_per_10min([(0.0, 100), (600.0, 1124)]) == 1024.0
    assert slope_kib_per_10min([(0.0, 100), (300.0, 90), (600.0, 100)]) == 0.0
    assert slope_kib_per_10min([(5.0, 100)]) == 0.0
