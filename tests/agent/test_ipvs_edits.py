"""A health change reaches IPVS as a direct edit of the changed destinations (no table read).

The real pool keeper (agent/pools.py) and the real IPVS manager (ipvs/manager.py, its run
loop) over a kernel stand-in that keeps a table the way the kernel does
(``reconcile.apply_ops``: it refuses what the kernel refuses) and counts its reads and the
operations written to it. The checks' changes are fed in as the health checker would.
"""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from hadirector.agent.pools import PoolKeeper
from hadirector.alerts import notify
from hadirector.checks.risefall import Change
from hadirector.config.load import load_text
from hadirector.ipvs import model, reconcile
from hadirector.ipvs.kernel import IpvsOpError
from hadirector.ipvs.manager import IpvsManager

ERRNO = {"EEXIST": errno.EEXIST, "ESRCH": errno.ESRCH, "ENOENT": errno.ENOENT}
STEP_TIMEOUT_S = 10.0

QUIESCE = """
[ipvs]
reconcile_interval = 3600

[[virtual_server]]
address = "192.0.2.100:80"
quorum = 2
sorry_server = { address = "198.51.100.99:80" }
  [[virtual_server.real_server]]
  address = "198.51.100.11:80"
  weight = 3
  [[virtual_server.real_server]]
  address = "198.51.100.12:80"
  weight = 2
  [[virtual_server.real_server]]
  address = "198.51.100.13:80"
  weight = 2
"""

GROUP_REMOVE = """
[ipvs]
reconcile_interval = 3600

[[virtual_server_group]]
name = "web"
addresses = ["192.0.2.20:80", "192.0.2.21:80"]

[[virtual_server]]
group = "web"
health_action = "remove"
  [[virtual_server.real_server]]
  address = "198.51.100.11:80"
  weight = 4
  [[virtual_server.real_server]]
  address = "198.51.100.12:80"
"""


class TableKernel:
    """The kernel adapter's reads and writes over an in-memory table."""

    def __init__(self) -> None:
        self.entries: dict[model.ServiceKey, model.Entry] = {}
        self.reads = 0
        self.requests = 0
        self.dumps = 0
        self.batches: list[list[reconcile.Op]] = []
        self.wrote = trio.Event()
        self.traffic: dict[Any, Any] = {}

    async def table(self) -> dict[model.ServiceKey, model.Entry]:
        self.reads += 1
        self.requests += 2 + len(self.entries)  # services, each service's dests, services
        self.dumps += 2 + len(self.entries)
        return dict(self.entries)

    async def apply(self, ops: list[reconcile.Op]) -> list[IpvsOpError]:
        errors = []
        for op in ops:
            self.requests += 1
            try:
                self.entries = reconcile.apply_ops(self.entries, [op])
            except reconcile.SimulationError as exc:
                errors.append(IpvsOpError(reconcile.describe(op), ERRNO[exc.errno_name], "", op))
        self.batches.append(list(ops))
        self.wrote.set()
        return errors


class Rig:
    def __init__(self, text: str) -> None:
        self.config = load_text(text)
        self.kernel = TableKernel()
        self.manager = IpvsManager(self.config)
        self.manager.kernel = self.kernel  # type: ignore[assignment]
        self.manager.available = True
        self.keeper = PoolKeeper(self.config, self.manager, notify.NotifyRunner(), lambda _: None)
        self.keys = [model.service_key_of(vs) for vs in self.config.virtual_servers]
        vs = self.config.virtual_servers[0]
        self.servers = [model.dest_key_of(vs, rs) for rs in vs.real_servers]

    def weights(self) -> dict[str, dict[str, int]]:
        return {
            str(skey): {str(d): dest.weight for d, dest in entry.dests.items()}
            for skey, entry in self.kernel.entries.items()
        }

    async def step(self, change: Callable[[], None]) -> list[reconcile.Op]:
        """Make a change; the operations of the next write, which must follow no read."""
        self.kernel.wrote = trio.Event()
        reads = self.kernel.reads
        change()
        with trio.fail_after(STEP_TIMEOUT_S):
            await self.kernel.wrote.wait()
        assert self.kernel.reads == reads, "a health change read the table"
        return self.kernel.batches[-1]

    def in_step(self) -> None:
        """The kernel's table is what a full plan wants: nothing left to write."""
        assert reconcile.plan(self.manager.desired(), self.kernel.entries) == []


def run(text: str, scenario: Callable[[Rig], Awaitable[None]]) -> None:
    async def main() -> None:
        rig = Rig(text)
        rig.keeper.start(set())
        await rig.manager.reconcile("start")
        assert rig.kernel.reads == 1 and rig.manager.known is not None
        async with trio.open_nursery() as nursery:
            await nursery.start(rig.manager.run)
            await scenario(rig)
            nursery.cancel_scope.cancel()

    trio.run(main)


def check(rig: Rig, server: int, up: bool) -> None:
    """Server ``server``'s check changes in every service (as the health checker says)."""
    pairs = {(key, rig.servers[server]) for key in rig.keys}
    change = Change(up, "ok" if up else "connect refused")
    for pair in sorted(pairs, key=str):
        rig.keeper.on_check_change(pair, None, change)
    rig.keeper.set_down(rig.keeper.down - pairs if up else rig.keeper.down | pairs)


def test_check_down_and_up_are_one_edit_each_without_a_read() -> None:
    async def scenario(rig: Rig) -> None:
        skey = rig.keys[0]
        rs1, rs2, rs3 = rig.servers
        ops = await rig.step(lambda: check(rig, 0, up=False))
        assert [type(op) for op in ops] == [reconcile.EditDest]
        assert (ops[0].service_key, ops[0].dest_key, ops[0].dest.weight) == (skey, rs1, 0)
        rig.in_step()
        ops = await rig.step(lambda: check(rig, 0, up=True))
        assert [(type(op), op.dest.weight) for op in ops] == [(reconcile.EditDest, 3)]
        rig.in_step()
        # Drain and undrain (the operator): the same single edit, 0 and back to 2.
        ops = await rig.step(lambda: rig.keeper.drain(str(skey), str(rs2), True))
        assert [(type(op), op.dest_key, op.dest.weight) for op in ops] == [
            (reconcile.EditDest, rs2, 0)
        ]
        ops = await rig.step(lambda: rig.keeper.drain(str(skey), str(rs2), False))
        assert [(op.dest_key, op.dest.weight) for op in ops] == [(rs2, 2)]
        # A dynamic weight, then back to the configured one.
        ops = await rig.step(lambda: rig.keeper.on_check_weight((skey, rs3), None, 7))
        assert [(op.dest_key, op.dest.weight) for op in ops] == [(rs3, 7)]
        ops = await rig.step(lambda: rig.keeper.on_check_weight((skey, rs3), None, None))
        assert [(op.dest_key, op.dest.weight) for op in ops] == [(rs3, 2)]
        rig.in_step()
        assert rig.kernel.reads == 1
        assert rig.manager.counters["edits"] == 6 and rig.manager.counters["reconciles"] == 1

    run(QUIESCE, scenario)


def test_quorum_lost_puts_the_sorry_server_in_by_edits_and_takes_it_out() -> None:
    async def scenario(rig: Rig) -> None:
        sorry = model.DestKey.of("198.51.100.99", 80)
        await rig.step(lambda: check(rig, 1, up=False))  # live 5 of quorum 2: kept
        await rig.step(lambda: check(rig, 2, up=False))  # live 3: kept
        ops = await rig.step(lambda: check(rig, 0, up=False))  # live 0: the sorry server in
        assert any(isinstance(op, reconcile.AddDest) and op.dest_key == sorry for op in ops)
        assert rig.weights()["tcp 192.0.2.100:80"][str(sorry)] > 0
        rig.in_step()
        await rig.step(lambda: check(rig, 0, up=True))  # live 3 >= 2: the sorry server out
        assert str(sorry) not in rig.weights()["tcp 192.0.2.100:80"]
        rig.in_step()
        assert rig.kernel.reads == 1

    run(QUIESCE, scenario)


def test_a_group_member_change_edits_every_service_of_the_group() -> None:
    async def scenario(rig: Rig) -> None:
        assert len(rig.keys) == 2
        rs1 = rig.servers[0]
        ops = await rig.step(lambda: check(rig, 0, up=False))  # remove: deleted in both
        assert sorted((str(op.service_key), type(op).__name__) for op in ops) == [
            ("tcp 192.0.2.20:80", "DelDest"),
            ("tcp 192.0.2.21:80", "DelDest"),
        ]
        assert all(str(rs1) not in dests for dests in rig.weights().values())
        ops = await rig.step(lambda: check(rig, 0, up=True))  # added back in both, weight 4
        assert sorted((str(op.service_key), type(op).__name__, op.dest.weight) for op in ops) == [
            ("tcp 192.0.2.20:80", "AddDest", 4),
            ("tcp 192.0.2.21:80", "AddDest", 4),
        ]
        rig.in_step()
        assert rig.kernel.reads == 1

    run(GROUP_REMOVE, scenario)


def test_a_failed_edit_is_repaired_by_a_full_reconcile_at_once() -> None:
    async def scenario(rig: Rig) -> None:
        skey, rs1 = rig.keys[0], rig.servers[0]
        # Someone deletes rs1 by hand: the edit is refused (ENOENT)...
        rig.kernel.entries = reconcile.apply_ops(rig.kernel.entries, [reconcile.DelDest(skey, rs1)])
        rig.kernel.wrote = trio.Event()
        check(rig, 0, up=False)
        with trio.fail_after(STEP_TIMEOUT_S):
            while rig.kernel.reads < 2 or len(rig.kernel.batches) < 3:
                await rig.kernel.wrote.wait()
                rig.kernel.wrote = trio.Event()
        failed, repair = rig.kernel.batches[1:3]
        assert [type(op) for op in failed] == [reconcile.EditDest]
        # ... and the full reconcile that follows at once reads the table and re-adds it.
        assert [(type(op), op.dest_key, op.dest.weight) for op in repair] == [
            (reconcile.AddDest, rs1, 0)
        ]
        assert rig.manager.counters["errors"] == 1
        rig.in_step()
        assert rig.manager.known is not None  # edits again from now on
        await rig.step(lambda: check(rig, 0, up=True))
        assert rig.kernel.reads == 2
        rig.in_step()

    run(QUIESCE, scenario)


def test_a_reload_in_flight_is_a_full_reconcile_and_health_follows_it() -> None:
    async def scenario(rig: Rig) -> None:
        reloaded = load_text(QUIESCE.replace("weight = 3", "weight = 5"))

        async def prepare() -> None:  # schedulers, sysctls, nftables: not this test's
            await trio.sleep(0)

        rig.manager._prepare = prepare  # type: ignore[method-assign]
        rig.kernel.wrote = trio.Event()
        rig.manager.update(reloaded)
        rig.keeper.update(reloaded)
        check(rig, 1, up=False)  # a health change while the reload is pending
        with trio.fail_after(STEP_TIMEOUT_S):
            await rig.kernel.wrote.wait()
        assert rig.kernel.reads == 2  # the reload read the table
        rig.in_step()
        assert rig.weights()["tcp 192.0.2.100:80"] == {
            "198.51.100.11:80": 5,
            "198.51.100.12:80": 0,
            "198.51.100.13:80": 2,
        }
        ops = await rig.step(lambda: check(rig, 1, up=True))
        assert [(op.dest_key, op.dest.weight) for op in ops] == [(rig.servers[1], 2)]

    run(QUIESCE, scenario)
