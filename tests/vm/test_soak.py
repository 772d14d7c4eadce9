"""The chaos soak, CI size: one deck of faults (every kind once) on a pair of directors.

The engine, the lab and the invariants are soaklab.py's (shared with bench/soak.py, the long
run). The seed is random unless HADIRECTOR_SOAK_SEED gives one; it is printed first, and
``python3 bench/soak.py --seed N --deck`` replays the same faults. Every invariant the engine
checks is asserted here; the figures it only reports (gap and overlap lengths, memory
growth, the flood rate reached) are printed.

The control-socket abuse uses 200 simultaneous clients here (1,000 in the long run) to keep
the emulated VM's run short; every other fault is the long run's.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from .lvslab import Lab
from .soaklab import KINDS, Settings, Soak, summary

pytestmark = pytest.mark.vm


@pytest.fixture
def lab(ipvs_modules: None) -> Iterator[Lab]:
    with Lab() as lab:
        yield lab


def test_chaos_soak_one_deck(lab: Lab, tmp_path: Path) -> None:
    seed = int(os.environ.get("HADIRECTOR_SOAK_SEED") or random.SystemRandom().randrange(1 << 31))
    print(f"soak seed {seed} (HADIRECTOR_SOAK_SEED={seed} replays it)", flush=True)
    report = Soak(lab, tmp_path, Settings(seed=seed)).run()
    print(summary(report))
    print(json.dumps(report["faults"], indent=None)[:4000])
    assert report["netem"], "sch_netem did not load in the VM: netem faults were not injected"
    assert sorted(f["kind"] for f in report["faults"]) == sorted(KINDS)
    assert report["violations"] == [], f"seed {seed}:\n" + summary(report)
