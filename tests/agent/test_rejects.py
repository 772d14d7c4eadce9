"""Adverts the agent must refuse (RFC 5798 §7.1, RFC 3768 §7.1, accepted sources, HMAC):
each is counted and changes nothing, and in particular does not reset the Master_Down_Timer,
so a backup still takes over on time when the real master falls silent."""

from __future__ import annotations

import ipaddress
import random
import struct
import time
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hadirector.vrrp.timers import master_down_interval_s
from tests.agent.fakes import (
    MCAST_V4,
    Frame,
    Lab,
    Running,
    Wire,
    advert_bytes,
    instance_toml,
    pair,
    run_lab,
)

VIP = "192.0.2.100/24"
INTERVAL_CS = 10
A = ipaddress.IPv4Address("192.0.2.1")
B = ipaddress.IPv4Address("192.0.2.2")
STRANGER = ipaddress.IPv4Address("192.0.2.66")
DOWN_100 = master_down_interval_s(100, INTERVAL_CS, 3)


def _flip_checksum(packet: bytes) -> bytes:
    (checksum,) = struct.unpack_from("!H", packet, 6)
    return packet[:6] + struct.pack("!H", checksum ^ 0x0101) + packet[8:]


# Each entry: (name, payload, ttl, reasons the agent may count it under).
def bad_packets(rng: random.Random) -> list[tuple[str, bytes, int]]:
    good_hi = advert_bytes(vrid=51, priority=254, src=STRANGER)
    good_zero = advert_bytes(vrid=51, priority=0, src=STRANGER)
    return [
        ("short", bytes([0x31, 51, 254]), 255),
        ("garbage", rng.randbytes(rng.randrange(0, 64)), 255),
        ("ttl", good_hi, 64),
        ("ttl", good_zero, 1),
        ("checksum", _flip_checksum(good_hi), 255),
        ("checksum", _flip_checksum(good_zero), 255),
        ("other_vrid", advert_bytes(vrid=52, priority=254, src=STRANGER), 255),
        ("other_vrid", advert_bytes(vrid=52, priority=0, src=STRANGER), 255),
        (
            "version",
            advert_bytes(vrid=51, priority=254, src=STRANGER, version=2, interval_cs=100),
            255,
        ),
        ("type", bytes([0x32]) + good_hi[1:], 255),
        ("length", good_hi + b"\0\0\0\0", 255),
        ("count", bytes([0x31, 51, 254, 0, 0, 10, 0, 0]), 255),
        ("vrid", bytes([0x31, 0]) + good_hi[2:], 255),
    ]


def test_garbage_burst_changes_nothing_and_backup_takes_over_on_time() -> None:
    rng = random.Random(5798)

    async def scenario(lab: Lab) -> None:
        wire, _, _ = pair(lab)
        ra = await lab.start(lab.hosts["a"], instance_toml(priority=200))
        rb = await lab.start(lab.hosts["b"], instance_toml(priority=100))
        await trio.sleep(2)
        t_burst = trio.current_time()
        injected: list[tuple[str, Frame]] = []

        async def burst() -> None:
            while trio.current_time() < t_burst + 2:
                for name, payload, ttl in bad_packets(rng):
                    injected.append((name, wire.inject(payload, src=STRANGER, ttl=ttl)))
                await trio.sleep(0.007)

        lab.nursery.start_soon(burst)
        await trio.sleep(1.03)
        wire.isolate("a")  # the master falls silent in the middle of the burst
        await trio.sleep(1.5)
        wire.heal()
        assert rb.state("VI_1") == "MASTER"
        # Nothing but the takeover happened on b, exactly Master_Down_Interval after the last
        # real advert: no injected packet reset (or shortened) the timer.
        assert lab.transitions("b") == [("b", "INIT", "BACKUP"), ("b", "BACKUP", "MASTER")]
        assert lab.transitions("a") == [("a", "INIT", "BACKUP"), ("a", "BACKUP", "MASTER")]
        last_heard = max(f.time for f, _ in wire.adverts_from("a") if "b" in f.delivered_to)
        took_over = lab.find("transition", host="b")[-1].time
        assert took_over - last_heard == pytest.approx(DOWN_100, abs=1e-3)
        # Every injected packet b saw is counted as a rejection or another VRID, and the
        # machine saw only a's adverts.
        inst = rb.instance("VI_1")
        seen = [name for name, f in injected if "b" in f.delivered_to]
        assert len(seen) > 1000
        rejected = sum(v for k, v in inst.counters.items() if k.startswith("rejected_"))
        assert rejected + inst.counters["other_vrid"] == len(seen)
        heard = sum(1 for f, _ in wire.adverts_from("a") if "b" in f.delivered_to)
        assert inst.counters["adverts_accepted"] == heard
        assert inst.machine.counters["received"] == heard
        # Random garbage lands under various reasons; the crafted ones under their own.
        for reason in ("ttl", "checksum", "version", "type", "length", "count", "short", "vrid"):
            assert seen.count(reason) <= inst.counters[f"rejected_{reason}"], reason
        assert inst.counters["rejected_ttl"] == seen.count("ttl")  # checked before decoding
        assert inst.counters["other_vrid"] >= seen.count("other_vrid")
        # a (master while it could hear) was not moved either.
        assert ra.machine("VI_1").counters["received"] == 0

    run_lab(scenario)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    packets=st.lists(
        st.tuples(st.binary(max_size=80), st.sampled_from([255, 255, 254, 64, 1])),
        min_size=1,
        max_size=30,
    )
)
def test_arbitrary_junk_never_moves_a_backup(packets: list[tuple[bytes, int]]) -> None:
    async def scenario(lab: Lab) -> None:
        wire, _, _ = pair(lab)
        await lab.start(lab.hosts["a"], instance_toml(priority=200))
        rb = await lab.start(lab.hosts["b"], instance_toml(priority=100))
        await trio.sleep(1)
        for payload, ttl in packets:
            wire.inject(payload, src=STRANGER, ttl=ttl)
            await trio.sleep(0.003)
        await trio.sleep(1)
        assert lab.transitions("b") == [("b", "INIT", "BACKUP")]
        inst = rb.instance("VI_1")
        heard = sum(1 for f, _ in wire.adverts_from("a") if "b" in f.delivered_to)
        # Only what passed the agent's checks reached the state machine.
        assert inst.machine.counters["received"] == inst.counters["adverts_accepted"]
        # Junk that happens to be a valid advert for VRID 51 reaches the machine; anything
        # else is counted as refused.
        refused = sum(v for k, v in inst.counters.items() if k.startswith("rejected_"))
        valid = inst.counters["adverts_accepted"] - heard
        assert refused + inst.counters["other_vrid"] + valid == len(packets)

    run_lab(scenario)


UNICAST_A = f'unicast_src = "{A}"\nunicast_peers = ["{B}"]\n'
UNICAST_B = f'unicast_src = "{B}"\nunicast_peers = ["{A}"]\n'


async def unicast_pair(lab: Lab) -> tuple[Wire, Running, Running]:
    wire, a, b = pair(lab)
    ra = await lab.start(a, instance_toml(priority=100, extra=UNICAST_A))
    rb = await lab.start(b, instance_toml(priority=200, extra=UNICAST_B))
    await trio.sleep(2)
    assert (ra.state("VI_1"), rb.state("VI_1")) == ("BACKUP", "MASTER")
    assert {f.dst for f, _ in wire.adverts_from("b")} == {A}  # unicast, not 224.0.0.18
    return wire, ra, rb


def test_unlisted_source_cannot_preempt_nor_hold_off_takeover() -> None:
    async def scenario(lab: Lab) -> None:
        wire, ra, rb = await unicast_pair(lab)
        # A well-formed higher-priority advert from a source that is not a unicast peer.
        for _ in range(5):
            wire.inject(
                advert_bytes(vrid=51, priority=254, src=STRANGER, dst=B), src=STRANGER, dst=B
            )
            await trio.sleep(0.05)
        assert rb.state("VI_1") == "MASTER"
        assert rb.instance("VI_1").counters["rejected_source"] == 5
        # A backup fed such adverts still takes over when the real master falls silent.
        wire.isolate("b")

        async def spoof() -> None:
            for _ in range(40):
                wire.inject(
                    advert_bytes(vrid=51, priority=254, src=STRANGER, dst=A), src=STRANGER, dst=A
                )
                await trio.sleep(0.02)

        lab.nursery.start_soon(spoof)
        await trio.sleep(1)
        assert ra.state("VI_1") == "MASTER"
        last = max(f.time for f, _ in wire.adverts_from("b") if "a" in f.delivered_to)
        took = lab.find("transition", host="a")[-1].time
        assert took - last == pytest.approx(DOWN_100, abs=1e-3)
        assert ra.instance("VI_1").counters["rejected_source"] > 0

    run_lab(scenario)


def test_interval_above_max_adopted_from_allowed_peer_is_rejected() -> None:
    async def scenario(lab: Lab) -> None:
        wire, ra, rb = await unicast_pair(lab)
        huge = 4095  # 40.95 s, above max_adopted_interval (4 x 0.1 s)
        # To the master: a higher priority with that interval does not preempt it.
        wire.inject(
            advert_bytes(vrid=51, priority=254, src=A, dst=B, interval_cs=huge), src=A, dst=B
        )
        await trio.sleep(0.5)
        assert rb.state("VI_1") == "MASTER"
        assert rb.instance("VI_1").counters["rejected_interval_out_of_bounds"] == 1
        # To the backup, while the master falls silent: not adopted, the backup takes over
        # after 3 x 0.1 s + skew, not after 3 x 40.95 s.
        wire.isolate("b")
        wire.inject(
            advert_bytes(vrid=51, priority=254, src=B, dst=A, interval_cs=huge), src=B, dst=A
        )
        await trio.sleep(1)
        assert ra.state("VI_1") == "MASTER"
        assert ra.instance("VI_1").counters["rejected_interval_out_of_bounds"] == 1
        machine = ra.machine("VI_1")
        assert machine.master_adver_interval_cs == INTERVAL_CS
        last = max(f.time for f, _ in wire.adverts_from("b") if "a" in f.delivered_to)
        took = lab.find("transition", host="a")[-1].time
        assert took - last == pytest.approx(DOWN_100, abs=1e-3)

    run_lab(scenario)


def test_hmac_election_works_and_unsigned_or_replayed_adverts_are_rejected(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "vrrp.key"
    key_file.write_text(random.Random(1).randbytes(32).hex() + "\n")
    key_file.chmod(0o600)  # a secret: the agent refuses wider
    extra = f'hmac_key_file = "{key_file}"\n'

    async def scenario(lab: Lab) -> None:
        wire, a, b = pair(lab)
        ra = await lab.start(a, instance_toml(priority=200, extra=extra))
        rb = await lab.start(b, instance_toml(priority=100, extra=extra))
        await trio.sleep(2)
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "BACKUP")
        sent = wire.adverts_from("a", hmac=True)
        assert sent and not wire.adverts_from("a")  # every advert carries the trailer
        inst = rb.instance("VI_1")
        accepted = inst.counters["adverts_accepted"]
        assert accepted == sum(1 for f, _ in sent if "b" in f.delivered_to)
        # Unsigned, and signed-then-tampered (priority raised), adverts are refused.
        wire.inject(advert_bytes(vrid=51, priority=254, src=A), src=A)
        last = sent[-1][0].payload
        wire.inject(last[:2] + bytes([254]) + last[3:], src=A)
        await trio.sleep(0.01)
        assert inst.counters["rejected_auth"] == 2
        # Replays of captured adverts cannot keep b from taking over when a falls silent.
        wire.isolate("a")
        captured = [f.payload for f, _ in wire.adverts_from("a", hmac=True)]
        for payload in captured[-10:]:
            wire.inject(payload, src=A)
            await trio.sleep(0.03)
        await trio.sleep(1)
        assert rb.state("VI_1") == "MASTER"
        assert inst.counters["rejected_replay"] == 10
        heard = max(f.time for f, _ in wire.adverts_from("a", hmac=True) if "b" in f.delivered_to)
        took = lab.find("transition", host="b")[-1].time
        assert took - heard == pytest.approx(DOWN_100, abs=1e-3)
        assert lab.transitions("b") == [("b", "INIT", "BACKUP"), ("b", "BACKUP", "MASTER")]
        assert MCAST_V4 in {f.dst for f, _ in wire.adverts_from("b", hmac=True)}

    run_lab(scenario)


def test_hmac_master_survives_its_wall_clock_stepping_back(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "vrrp.key"
    key_file.write_text(random.Random(2).randbytes(32).hex())
    key_file.chmod(0o600)  # a secret: the agent refuses wider
    extra = f'hmac_key_file = "{key_file}"\n'
    offset_ns = 0  # a's wall clock against the real one

    async def scenario(lab: Lab) -> None:
        nonlocal offset_ns
        _, a, b = pair(lab)
        a.wall_clock_ns = lambda: time.time_ns() + offset_ns
        ra = await lab.start(a, instance_toml(priority=200, extra=extra))
        rb = await lab.start(b, instance_toml(priority=100, extra=extra))
        await trio.sleep(2)
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "BACKUP")
        offset_ns = -3600 * 10**9  # a's clock is set back one hour
        await trio.sleep(3)
        # The sequence numbers must keep increasing: b keeps hearing its master.
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "BACKUP")
        assert rb.instance("VI_1").counters["rejected_replay"] == 0

    run_lab(scenario)
