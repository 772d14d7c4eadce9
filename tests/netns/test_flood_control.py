"""An advert flood on the threaded hot path delays neither a reload, a link loss nor a stop.

dir-a (priority 150) and dir-b (priority 100) run ``hadirector run`` as in production:
the VRRP hot path in its own thread (agent/hotloop.py), adverts every second. From the
client namespace a process of its own (``tests.vm.soakhelpers flood``: an AF_PACKET
transmit ring, paced in 10 ms slots) sends ~20,000 spoofed adverts a second for the
instance's VRID (TTL 254 or a bad checksum, made-up sources): they pass the kernel's VRID
filter, and the hot thread reads and rejects every one. Meanwhile, each action is taken
just after one of dir-a's adverts was seen on the wire (tcpdump in the client namespace,
filtered on dir-a's MAC in the kernel), and the test checks that it acted before dir-a's
next advert was due — by the order of events, not by a clock:

- reload (SIGHUP, priority 150 -> 160): the first advert after the signal carries 160;
- link loss (carrier down on dir-a's port): dir-a goes to FAULT, and its machine's
  ``adverts_sent`` counter is the same after as before (no advert timer ran in between);
- stop (SIGTERM): the first advert after the signal is the priority-0 one (RFC 5798 §6.4.3
  shutdown), dir-a exits and dir-b takes over.

The flood's arrival is shown by dir-a's reject counters growing across each action. Timings
(action -> effect) are printed, not asserted.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from .e2e_util import STATE_TIMEOUT_S, E2EDirector, start_pair
from .lab import Lab, hadirector_command, wait_for

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
ADVERT_S = 1.0
FLOOD_RATE = 20_000
FLOOD_SECONDS = 120.0
# An action is taken only this soon after an advert was seen (else the next one is awaited),
# so that dir-a's next advert is most of an interval away when it starts.
FRESH_S = 0.25
_ADVERT_LINE = re.compile(r"^(\d+\.\d+) .*VRRPv3, Advertisement, vrid (\d+), prio (\d+)")


class AdvertWatch:
    """dir-a's adverts as the client sees them: (wall-clock time, priority), live."""

    def __init__(self, lab: Lab, mac: str) -> None:
        self.adverts: list[tuple[float, int]] = []
        self._cond = threading.Condition()
        self.proc = lab.popen(
            "client",
            "tcpdump",
            *("-l", "-n", "-tt", "-e", "-i", "eth0"),
            f"ether src {mac} and ip proto 112",
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            m = _ADVERT_LINE.match(raw.decode(errors="replace"))
            if m:
                with self._cond:
                    self.adverts.append((float(m.group(1)), int(m.group(3))))
                    self._cond.notify_all()

    def wait_fresh(self, timeout_s: float = 30.0) -> tuple[float, int]:
        """Wait for an advert seen at most ``FRESH_S`` ago; return it."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            seen = len(self.adverts)
            while True:
                if len(self.adverts) > seen:
                    last = self.adverts[-1]
                    if time.time() - last[0] <= FRESH_S:
                        return last
                    seen = len(self.adverts)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no advert from dir-a on the wire")
                self._cond.wait(left)

    def first_after(self, t: float, timeout_s: float = 30.0) -> tuple[float, int]:
        """The first advert seen after wall-clock time ``t`` (waiting for it)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for advert in self.adverts:
                    if advert[0] > t:
                        return advert
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no advert from dir-a after the action")
                self._cond.wait(left)


def _status(lab: Lab, d: E2EDirector) -> dict[str, Any]:
    command = hadirector_command()
    assert command is not None
    proc = lab.run(d.node, *command, "status", "--json", "--socket", str(d.dir / "hadirector.sock"))
    assert proc.returncode == 0, proc.stderr
    st = json.loads(proc.stdout)
    (inst,) = st["instances"]
    assert isinstance(inst, dict)
    return inst


def _rejected(inst: dict[str, Any]) -> int:
    return sum(v for k, v in inst["counters"].items() if k.startswith("rejected_"))


def _record_time(record: dict[str, Any]) -> float:
    """A JSON log record's ISO time stamp as wall-clock seconds."""
    return datetime.fromisoformat(str(record["timestamp"]).replace("Z", "+00:00")).timestamp()


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def test_flood_delays_neither_reload_link_loss_nor_stop(netlab: Lab) -> None:
    a, b = start_pair(netlab, advert_s=ADVERT_S)
    # Production adapters: the hot path's thread runs beside trio's.
    assert _threads(a.pid) >= 2
    # The control socket (status) opens after the instances start.
    wait_for(lambda: a.records("control.listening"), STATE_TIMEOUT_S, "dir-a's control socket")
    watch = AdvertWatch(netlab, netlab.mac("dir-a"))
    watch.wait_fresh()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    flood = netlab.popen(
        "client",
        *(sys.executable, "-m", "tests.vm.soakhelpers", "flood"),
        *("--rate", str(FLOOD_RATE), "--seconds", str(FLOOD_SECONDS)),
        stdout=subprocess.PIPE,
        env=env,
        cwd=str(REPO),
    )
    timings: dict[str, float] = {}
    try:
        # The flood reaches dir-a's hot path before anything is asked of it.
        before = _rejected(_status(netlab, a))
        wait_for(lambda: _rejected(_status(netlab, a)) > before + 1000, 30, "flood at dir-a")
        t0, r0 = time.monotonic(), _rejected(_status(netlab, a))
        time.sleep(1.0)
        rate = (_rejected(_status(netlab, a)) - r0) / (time.monotonic() - t0)
        print(f"adverts rejected by dir-a under the flood: {rate:,.0f}/s")

        # -- reload: the next advert already carries the new priority --------------------
        rejected = _rejected(_status(netlab, a))
        a.instances = [dataclasses.replace(a.instances[0], priority=160)]
        a.prepare()
        watch.wait_fresh()
        t_hup = time.time()
        a.signal(signal.SIGHUP)
        wait_for(lambda: a.records("config.reloaded"), STATE_TIMEOUT_S, "config.reloaded")
        nxt = watch.first_after(t_hup)
        timings["reload: SIGHUP -> config.reloaded"] = (
            _record_time(a.records("config.reloaded")[-1]) - t_hup
        )
        timings["reload: SIGHUP -> next advert (priority 160)"] = nxt[0] - t_hup
        assert nxt[1] == 160, (nxt, watch.adverts[-5:])
        assert _rejected(_status(netlab, a)) > rejected  # flooded all along

        # -- link loss: FAULT before the next Adver_Timer --------------------------------
        rejected = _rejected(_status(netlab, a))
        watch.wait_fresh()
        sent = _status(netlab, a)["machine_counters"]["adverts_sent"]
        # The status read may have raced the next advert: act only on a fresh one.
        last = watch.adverts[-1]
        while time.time() - last[0] > FRESH_S:
            last = watch.wait_fresh()
            sent = _status(netlab, a)["machine_counters"]["adverts_sent"]
            last = watch.adverts[-1]
        assert watch.adverts[-1] == last  # no advert between the status read and the action
        t_down = time.time()
        netlab.link("dir-a", up=False)
        a.wait_state("FAULT", STATE_TIMEOUT_S)
        fault = [r for r in a.records("vrrp.transition") if r.get("new") == "FAULT"][-1]
        timings["link loss: carrier down -> FAULT"] = _record_time(fault) - t_down
        inst = _status(netlab, a)
        assert inst["state"] == "FAULT"
        assert inst["machine_counters"]["adverts_sent"] == sent, (sent, inst["machine_counters"])
        b.wait_state("MASTER", STATE_TIMEOUT_S)
        netlab.link("dir-a", up=True)
        wait_for(lambda: a.states()[-1] == "MASTER", STATE_TIMEOUT_S, "dir-a MASTER again")
        assert _rejected(_status(netlab, a)) > rejected

        # -- stop: the priority-0 advert before any other ---------------------------------
        watch.wait_fresh()
        t_term = time.time()
        a.signal(signal.SIGTERM)
        nxt = watch.first_after(t_term)
        timings["stop: SIGTERM -> priority-0 advert"] = nxt[0] - t_term
        assert nxt[1] == 0, (nxt, watch.adverts[-5:])
        assert a.proc is not None
        a.proc.wait(timeout=STATE_TIMEOUT_S + 15)
        assert a.proc.returncode == 0, a.log()[-3000:]
        wait_for(lambda: b.states()[-1] == "MASTER", STATE_TIMEOUT_S, "dir-b MASTER")
    finally:
        netlab.kill(flood)
        netlab.kill(watch.proc)
    for what, seconds in timings.items():
        print(f"{what}: {seconds * 1000:.1f} ms")
