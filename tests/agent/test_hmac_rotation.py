"""HMAC key rotation by reload on a running pair, in virtual time.

Two hadirector peers go through the three-step rotation (accept the new key, sign with it,
drop the old one), one director reloaded after the other with a pause between them longer
than Master_Down_Interval, in both orders: no advert is rejected, nobody changes state, the
instances are not restarted (same object, same socket) and the adverts on the wire are
signed with the expected key at each step (checked with hmac/hashlib from the trailer
layout, not with the code under test). A peer that skips step 1 does reject the other's
adverts and a split brain follows, which shows these checks can fail. A key file rewritten
in place is picked up by the next reload; one that became invalid refuses the reload.
Turning HMAC on or off, by contrast, restarts the instance.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import random
from pathlib import Path

import pytest
import trio

from hadirector.vrrp import auth
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

A = ipaddress.IPv4Address("192.0.2.1")
B = ipaddress.IPv4Address("192.0.2.2")
OLD = random.Random(11).randbytes(32)
NEW = random.Random(12).randbytes(32)
# Longer than Master_Down_Interval at 0.1 s adverts (0.3 s + skew): a peer refusing the
# other's adverts for this long becomes master.
PAUSE_S = 2.0


def signed_with(frame: Frame, key: bytes) -> bool:
    """True if the frame's trailer carries the MAC of ``key`` (rebuilt by hand)."""
    data = frame.payload
    packet, magic = data[: -auth.TRAILER_LEN], data[-auth.TRAILER_LEN : -auth.TRAILER_LEN + 4]
    seq_bytes, mac = data[-40:-32], data[-32:]
    message = frame.src.packed + frame.dst.packed + packet + magic + seq_bytes
    return magic == b"HDA1" and hmac.compare_digest(
        mac, hmac.new(key, message, hashlib.sha256).digest()
    )


def keys_extra(signing: Path, accepted: list[Path]) -> str:
    extra = f'hmac_key_file = "{signing}"\n'
    if accepted:
        extra += "hmac_accept_key_files = [" + ", ".join(f'"{p}"' for p in accepted) + "]\n"
    return extra


class Director:
    """One peer: its config file, priority and the running agent."""

    def __init__(self, path: Path, priority: int) -> None:
        self.path = path
        self.priority = priority
        self.running: Running | None = None

    def write(self, signing: Path, accepted: list[Path]) -> str:
        text = instance_toml(priority=self.priority, extra=keys_extra(signing, accepted))
        self.path.write_text(text)
        return text

    async def reload(self) -> None:
        assert self.running is not None
        await self.running.reload()


class Pair:
    def __init__(self, lab: Lab, tmp: Path, a_keys: list[Path], b_keys: list[Path]) -> None:
        self.lab = lab
        self.wire: Wire
        self.a = Director(tmp / "a.toml", 200)
        self.b = Director(tmp / "b.toml", 100)
        self._keys = (a_keys, b_keys)

    async def start(self) -> tuple[Running, Running]:
        self.wire, host_a, host_b = pair(self.lab)
        a_keys, b_keys = self._keys
        text_a = self.a.write(a_keys[0], a_keys[1:])
        text_b = self.b.write(b_keys[0], b_keys[1:])
        ra = await self.lab.start(host_a, text_a, config_path=self.a.path)
        rb = await self.lab.start(host_b, text_b, config_path=self.b.path)
        self.a.running, self.b.running = ra, rb
        await trio.sleep(2)
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "BACKUP")
        return ra, rb


def key_files(tmp: Path) -> tuple[Path, Path]:
    old, new = tmp / "old.key", tmp / "new.key"
    old.write_text(OLD.hex() + "\n")
    old.chmod(0o600)  # a secret: the agent refuses wider
    new.write_text(NEW.hex() + "\n")
    new.chmod(0o600)  # a secret: the agent refuses wider
    return old, new


def adverts_since(wire: Wire, host: str, since: float) -> list[Frame]:
    return [f for f, _ in wire.adverts_from(host, hmac=True) if f.time > since]


@pytest.mark.parametrize("first", ["a", "b"])
def test_three_step_rotation_rejects_nothing_and_changes_no_state(
    tmp_path: Path, first: str
) -> None:
    old, new = key_files(tmp_path)
    steps = [(old, [new]), (new, [old]), (new, [])]
    sign_key = [OLD, NEW, NEW]

    async def scenario(lab: Lab) -> None:
        peers = Pair(lab, tmp_path, [old], [old])
        ra, rb = await peers.start()
        instances = {"a": ra.instance("VI_1"), "b": rb.instance("VI_1")}
        sockets = {h: inst.sock for h, inst in instances.items()}
        transitions = lab.transitions()
        order = [peers.a, peers.b] if first == "a" else [peers.b, peers.a]
        a_signs = b_signs = OLD
        probes = 0
        for (signing, accepted), key in zip(steps, sign_key, strict=True):
            for director in order:
                director.write(signing, accepted)
                if director is peers.a:
                    a_signs = key
                else:
                    b_signs = key
                t_reload = trio.current_time()
                accepted_before = instances["b"].counters["adverts_accepted"]
                await director.reload()
                await trio.sleep(PAUSE_S)
                # The master's adverts since this reload carry the MAC of the key it should
                # sign with now, and the backup accepted every one of them.
                sent = adverts_since(peers.wire, "a", t_reload)
                assert len(sent) >= PAUSE_S / 0.1 - 1
                assert all(signed_with(f, a_signs) for f in sent)
                accepted_now = instances["b"].counters["adverts_accepted"]
                assert accepted_now - accepted_before == len(sent)
                assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "BACKUP")
                # The backup sends nothing; what it would sign as master is accepted too.
                assert rb.instance("VI_1").hmac_keys.signing == b_signs
                heard = instances["a"].counters["adverts_accepted"]
                probes += 1
                probe = auth.sign(
                    advert_bytes(vrid=51, priority=100, src=B),
                    key=b_signs,
                    seq=probes,
                    src=B,
                    dst=MCAST_V4,
                )
                peers.wire.drop = lambda f, ep: f.sender == "probe" and ep.host.name == "b"
                peers.wire.inject(probe, src=B, sender="probe")
                await trio.sleep(0.01)
                peers.wire.drop = None
                assert instances["a"].counters["adverts_accepted"] == heard + 1
        assert not lab.find("config.reload_failed")
        assert lab.transitions() == transitions
        assert not lab.find("vrrp.advert_rejected")
        for host, inst in instances.items():
            running = ra if host == "a" else rb
            assert running.instance("VI_1") is inst  # not restarted
            assert inst.sock is sockets[host]
            assert inst.counters["rejected_auth"] == inst.counters["rejected_replay"] == 0
            assert inst.counters["hmac_keys_changed"] == 3
        # b heard a all along: its accepted count grew through every step.
        heard_by_b = sum(
            1 for f, _ in peers.wire.adverts_from("a", hmac=True) if "b" in f.delivered_to
        )
        assert instances["b"].counters["adverts_accepted"] == heard_by_b
        # The old key is gone on both: an advert signed with it is refused now.
        forged = auth.sign(
            advert_bytes(vrid=51, priority=254, src=A), key=OLD, seq=2**63, src=A, dst=MCAST_V4
        )
        peers.wire.inject(forged, src=A)
        await trio.sleep(0.01)
        assert instances["b"].counters["rejected_auth"] == 1
        assert rb.state("VI_1") == "BACKUP"

    run_lab(scenario)


def test_skipping_the_accept_step_is_refused_and_splits_the_pair(tmp_path: Path) -> None:
    old, new = key_files(tmp_path)

    async def scenario(lab: Lab) -> None:
        peers = Pair(lab, tmp_path, [old], [old])
        ra, rb = await peers.start()
        # Step 2 on a while b never did step 1: a signs with a key b does not know.
        peers.a.write(new, [old])
        await peers.a.reload()
        await trio.sleep(PAUSE_S)
        assert rb.instance("VI_1").counters["rejected_auth"] > 0
        rejected = lab.find("vrrp.advert_rejected", host="b")
        assert rejected and rejected[0].detail["reason"] == "auth"
        assert NEW.hex() not in str(rejected[0].detail) and OLD.hex() not in str(rejected[0].detail)
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "MASTER")

    run_lab(scenario)


def test_key_file_rewritten_in_place_is_picked_up_on_reload(tmp_path: Path) -> None:
    a_key, b_key, b_next = tmp_path / "a.key", tmp_path / "b.key", tmp_path / "b-next.key"
    a_key.write_text(OLD.hex())
    a_key.chmod(0o600)  # a secret: the agent refuses wider
    b_key.write_text(OLD.hex())
    b_key.chmod(0o600)  # a secret: the agent refuses wider
    b_next.write_text(NEW.hex())
    b_next.chmod(0o600)  # a secret: the agent refuses wider

    async def scenario(lab: Lab) -> None:
        peers = Pair(lab, tmp_path, [a_key], [b_key, b_next])
        ra, rb = await peers.start()
        inst_a = ra.instance("VI_1")
        transitions = lab.transitions()
        a_key.write_text(NEW.hex() + "\n")  # same path, new content
        await trio.sleep(0.5)
        t_reload = trio.current_time()
        # Not before the reload: the running key stays until asked.
        before = adverts_since(peers.wire, "a", t_reload - 0.5)
        assert before and all(signed_with(f, OLD) for f in before)
        await ra.reload()
        await trio.sleep(PAUSE_S)
        after = adverts_since(peers.wire, "a", t_reload)
        assert after and all(signed_with(f, NEW) for f in after)
        assert ra.instance("VI_1") is inst_a
        assert inst_a.counters["hmac_keys_changed"] == 1
        assert lab.transitions() == transitions
        assert rb.instance("VI_1").counters["rejected_auth"] == 0
        # b says its peer now verifies with its accepted key (index 1, the file), no key.
        moved = lab.find("vrrp.hmac_peer_key", host="b")
        assert [(e.detail["key_index"], e.detail["key_file"]) for e in moved] == [
            (0, str(b_key)),
            (1, str(b_next)),
        ]
        assert rb.instance("VI_1").counters["hmac_verified_by_accepted_key"] > 0

    run_lab(scenario)


def test_a_key_file_gone_bad_refuses_the_reload_and_the_running_keys_stay(
    tmp_path: Path,
) -> None:
    old, new = key_files(tmp_path)

    async def scenario(lab: Lab) -> None:
        peers = Pair(lab, tmp_path, [old], [old])
        ra, rb = await peers.start()
        config = ra.agent.config
        new.write_text("not a key")
        peers.a.write(old, [new])
        await peers.a.reload()
        failed = lab.find("config.reload_failed", host="a")
        assert len(failed) == 1
        assert any(
            "vrrp_instance[0].hmac_accept_key_files[0]" in p for p in failed[0].detail["problems"]
        )
        # Rewriting the signing key in place with garbage: refused as well.
        old.write_text("short")
        peers.a.write(old, [])
        await peers.a.reload()
        assert len(lab.find("config.reload_failed", host="a")) == 2
        t = trio.current_time()
        await trio.sleep(PAUSE_S)
        assert ra.agent.config is config
        assert ra.instance("VI_1").counters["hmac_keys_changed"] == 0
        sent = adverts_since(peers.wire, "a", t)
        assert sent and all(signed_with(f, OLD) for f in sent)
        assert (ra.state("VI_1"), rb.state("VI_1")) == ("MASTER", "BACKUP")

    run_lab(scenario)


def test_turning_hmac_on_or_off_by_reload_restarts_the_instance(tmp_path: Path) -> None:
    old, _ = key_files(tmp_path)
    path = tmp_path / "a.toml"

    async def scenario(lab: Lab) -> None:
        wire, host_a, _ = pair(lab)
        text = instance_toml(priority=200)
        path.write_text(text)
        ra = await lab.start(host_a, text, config_path=path)
        await trio.sleep(1)
        plain = ra.instance("VI_1")
        assert plain.hmac_keys is None
        path.write_text(instance_toml(priority=200, extra=keys_extra(old, [])))
        await ra.reload()
        await trio.sleep(1)
        signed = ra.instance("VI_1")
        assert signed is not plain and signed.hmac_keys == auth.KeyRing(OLD)
        assert lab.find("config.instance_removed", host="a")
        t = trio.current_time()
        await trio.sleep(0.5)
        sent = adverts_since(wire, "a", t)
        assert sent and all(signed_with(f, OLD) for f in sent)
        path.write_text(instance_toml(priority=200))
        await ra.reload()
        await trio.sleep(1)
        assert ra.instance("VI_1") is not signed and ra.instance("VI_1").hmac_keys is None
        assert len(lab.find("config.instance_removed", host="a")) == 2

    run_lab(scenario)
