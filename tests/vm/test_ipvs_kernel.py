"""The IPVS adapter against the real kernel (inside the VM), each test in its own namespace.

What the adapter reads back is checked against ``ipvsadm -S -n`` (an independent
implementation of the same netlink family), and every command is checked to do what its
name says, including the kernel's "set replaces the whole destination" rule.
"""

from __future__ import annotations

import errno
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TypeVar

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hadirector.errors import KernelError
from hadirector.ipvs import model
from hadirector.ipvs.kernel import IpvsKernel, IpvsOpError, ensure_scheduler
from hadirector.ipvs.model import Dest, DestKey, Entry, Service, ServiceKey
from hadirector.ipvs.reconcile import (
    AddDest,
    AddService,
    EditDest,
    apply_ops,
    plan,
)
from hadirector.ipvs.types import Timeouts

from .ipvsadm import merge_thresholds, parse_save
from .lvslab import in_netns

pytestmark = pytest.mark.vm

T = TypeVar("T")

TCP_VIP = ServiceKey.virtual("tcp", "192.0.2.1", 80)
UDP_VIP = ServiceKey.virtual("udp", "192.0.2.1", 53)
SCTP_VIP = ServiceKey.virtual("sctp", "192.0.2.2", 3868)
TCP6_VIP = ServiceKey.virtual("tcp", "2001:db8::1", 443)
MARK4 = ServiceKey.mark(5, 4)
MARK6 = ServiceKey.mark(6, 6)
RS1 = DestKey.of("198.51.100.1", 80)
RS2 = DestKey.of("198.51.100.2", 80)
RS6 = DestKey.of("2001:db8:1::10", 443)
MASQ = Dest(forwarding=model.FWD_MASQ, weight=1)


def with_kernel(netns: str, body: Callable[[IpvsKernel], Awaitable[T]]) -> T:
    async def main() -> T:
        async with IpvsKernel(netns) as kernel:
            return await body(kernel)

    return trio.run(main)


def ipvsadm_table(netns: str) -> dict[ServiceKey, Entry]:
    table = parse_save(in_netns(netns, "ipvsadm", "-S", "-n"))
    return merge_thresholds(table, in_netns(netns, "ipvsadm", "-L", "-n", "--thresholds"))


def effective(table: dict[ServiceKey, Entry]) -> dict[ServiceKey, tuple[Service, dict]]:
    return {
        key: (entry.service.effective(), {k: d.effective() for k, d in entry.dests.items()})
        for key, entry in table.items()
    }


SERVICES = {
    TCP_VIP: Service("rr"),
    UDP_VIP: Service("wrr", model.SVC_F_ONEPACKET),
    SCTP_VIP: Service("sh", model.SVC_F_SCHED1 | model.SVC_F_SCHED2),
    TCP6_VIP: Service("wlc", model.SVC_F_PERSISTENT, 600, 64),
    MARK4: Service("wlc", model.SVC_F_PERSISTENT, 300, 0xFFFFFF00),
    MARK6: Service("mh", model.SVC_F_PERSISTENT, 120, 48),
}


def test_services_of_each_kind_read_back_as_written(netns: str) -> None:
    async def body(kernel: IpvsKernel) -> dict[ServiceKey, Service]:
        for key, service in SERVICES.items():
            await kernel.add_service(key, service)
        return {state.key: state.service for state in await kernel.services()}

    read = with_kernel(netns, body)
    expected = {k: s.effective() for k, s in SERVICES.items()}
    assert {k: s.effective() for k, s in read.items()} == expected
    assert all(s.flags & model.SVC_F_HASHED for s in read.values())  # the kernel's own bit
    assert effective(ipvsadm_table(netns)) == {k: (s, {}) for k, s in expected.items()}


def test_edit_service_changes_attributes_and_keeps_dests(netns: str) -> None:
    edited = Service("lc", model.SVC_F_PERSISTENT, 900, 0xFFFF0000)

    async def body(kernel: IpvsKernel) -> tuple[Service | None, list[DestKey]]:
        await kernel.add_service(TCP_VIP, Service("rr"))
        await kernel.add_dest(TCP_VIP, RS1, MASQ)
        await kernel.edit_service(TCP_VIP, edited)
        state = await kernel.service(TCP_VIP)
        return state.service if state else None, [d.key for d in await kernel.dests(TCP_VIP)]

    service, dests = with_kernel(netns, body)
    assert service is not None and service.effective() == edited
    assert dests == [RS1]
    assert ipvsadm_table(netns)[TCP_VIP].service.effective() == edited


DESTS = {
    DestKey.of("198.51.100.1", 8080): Dest(model.FWD_MASQ, 3, 100, 10),
    DestKey.of("198.51.100.2", 80): Dest(model.FWD_DROUTE, 0),
    DestKey.of("198.51.100.3", 80): Dest(model.FWD_TUNNEL, 2, tunnel_type=model.TUN_TYPE_IPIP),
    DestKey.of("198.51.100.4", 80): Dest(
        model.FWD_TUNNEL, 1, 0, 0, model.TUN_TYPE_GUE, 6080, model.TUN_F_CSUM
    ),
    DestKey.of("198.51.100.5", 80): Dest(
        model.FWD_TUNNEL, 1, 0, 0, model.TUN_TYPE_GRE, 0, model.TUN_F_CSUM
    ),
    DestKey.of("198.51.100.6", 80): Dest(
        model.FWD_TUNNEL, 4, 0, 0, model.TUN_TYPE_GUE, 5555, model.TUN_F_REMCSUM
    ),
}


def test_dests_with_each_forwarding_method_and_thresholds(netns: str) -> None:
    async def body(kernel: IpvsKernel) -> dict[DestKey, Dest]:
        await kernel.add_service(TCP_VIP, Service("wlc"))
        for key, dest in DESTS.items():
            await kernel.add_dest(TCP_VIP, key, dest)
        return {d.key: d.dest for d in await kernel.dests(TCP_VIP)}

    read = with_kernel(netns, body)
    assert {k: d.effective() for k, d in read.items()} == DESTS
    assert effective(ipvsadm_table(netns))[TCP_VIP][1] == DESTS


def test_ipv6_dest_on_ipv6_service(netns: str) -> None:
    dest = Dest(model.FWD_MASQ, 7, 50, 5)

    async def body(kernel: IpvsKernel) -> list[tuple[DestKey, Dest]]:
        await kernel.add_service(TCP6_VIP, Service("rr", netmask=model.NETMASK_V6_HOST))
        await kernel.add_dest(TCP6_VIP, RS6, dest)
        return [(d.key, d.dest) for d in await kernel.dests(TCP6_VIP)]

    assert with_kernel(netns, body) == [(RS6, dest)]
    assert ipvsadm_table(netns)[TCP6_VIP].dests == {RS6: dest}


def test_set_dest_replaces_the_whole_destination(netns: str) -> None:
    """The trap: SET_DEST with only a weight would turn a masq server into DR.

    The adapter's edit_dest sends the whole Dest, so a masq server stays masq; and the
    kernel really does replace everything (a Dest with default forwarding becomes DR).
    """

    async def body(kernel: IpvsKernel) -> tuple[Dest, Dest]:
        await kernel.add_service(TCP_VIP, Service("wlc"))
        await kernel.add_dest(TCP_VIP, RS1, Dest(model.FWD_MASQ, 1, 40, 4))
        await kernel.edit_dest(TCP_VIP, RS1, Dest(model.FWD_MASQ, 9, 40, 4))
        [after_edit] = await kernel.dests(TCP_VIP)
        await kernel.edit_dest(TCP_VIP, RS1, Dest(weight=2))
        [after_partial] = await kernel.dests(TCP_VIP)
        return after_edit.dest, after_partial.dest

    after_edit, after_partial = with_kernel(netns, body)
    assert after_edit == Dest(model.FWD_MASQ, 9, 40, 4)
    assert after_partial.forwarding == model.FWD_DROUTE
    assert (after_partial.upper_threshold, after_partial.lower_threshold) == (0, 0)


def test_each_command_does_what_it_says(netns: str) -> None:
    """NEW/SET/DEL for services and dests, one step at a time, as ipvsadm sees it."""
    seen: list[dict[ServiceKey, Entry]] = []

    async def body(kernel: IpvsKernel) -> None:
        steps: list[Callable[[], Awaitable[None]]] = [
            lambda: kernel.add_service(TCP_VIP, Service("rr")),
            lambda: kernel.add_dest(TCP_VIP, RS1, MASQ),
            lambda: kernel.add_dest(TCP_VIP, RS2, MASQ),
            lambda: kernel.edit_dest(TCP_VIP, RS2, Dest(model.FWD_MASQ, 0)),
            lambda: kernel.del_dest(TCP_VIP, RS1),
            lambda: kernel.edit_service(TCP_VIP, Service("wrr")),
            lambda: kernel.del_service(TCP_VIP),
        ]
        for step in steps:
            await step()
            seen.append(await trio.to_thread.run_sync(ipvsadm_table, netns))

    with_kernel(netns, body)
    service_rr = Service("rr", 0, 0, model.NETMASK_V4_HOST)
    service_wrr = Service("wrr", 0, 0, model.NETMASK_V4_HOST)
    expected = [
        {TCP_VIP: Entry(service_rr, {})},
        {TCP_VIP: Entry(service_rr, {RS1: MASQ})},
        {TCP_VIP: Entry(service_rr, {RS1: MASQ, RS2: MASQ})},
        {TCP_VIP: Entry(service_rr, {RS1: MASQ, RS2: Dest(model.FWD_MASQ, 0)})},
        {TCP_VIP: Entry(service_rr, {RS2: Dest(model.FWD_MASQ, 0)})},
        {TCP_VIP: Entry(service_wrr, {RS2: Dest(model.FWD_MASQ, 0)})},
        {},
    ]
    assert seen == expected


def test_errors_name_the_object_and_the_reason(netns: str) -> None:
    async def body(kernel: IpvsKernel) -> list[IpvsOpError]:
        caught = []
        await kernel.add_service(TCP_VIP, Service("rr"))
        await kernel.add_dest(TCP_VIP, RS1, MASQ)
        attempts: list[Callable[[], Awaitable[None]]] = [
            lambda: kernel.add_service(TCP_VIP, Service("rr")),
            lambda: kernel.add_dest(TCP_VIP, RS1, MASQ),
            lambda: kernel.add_dest(UDP_VIP, RS1, MASQ),
            lambda: kernel.edit_dest(TCP_VIP, RS2, MASQ),
            lambda: kernel.del_dest(TCP_VIP, RS2),
            lambda: kernel.del_service(UDP_VIP),
            lambda: kernel.add_service(UDP_VIP, Service("nosuchsched")),
            lambda: kernel.add_dest(TCP_VIP, RS2, Dest(model.FWD_MASQ, 1, 0, 5)),
            lambda: kernel.add_service(TCP6_VIP, Service("rr")),  # IPv4 netmask on IPv6
        ]
        for attempt in attempts:
            with pytest.raises(IpvsOpError) as info:
                await attempt()
            caught.append(info.value)
        return caught

    caught = with_kernel(netns, body)
    messages = [str(e) for e in caught]
    assert [e.errno for e in caught] == [
        errno.EEXIST,
        errno.EEXIST,
        errno.ESRCH,
        errno.ENOENT,
        errno.ENOENT,
        errno.ESRCH,
        errno.ENOENT,
        errno.ERANGE,
        errno.EINVAL,
    ]
    assert messages[0].startswith("add service TCP 192.0.2.1:80 (scheduler rr): File exists")
    assert messages[1].startswith("add dest 198.51.100.1:80 to TCP 192.0.2.1:80: File exists")
    assert "add dest 198.51.100.1:80 to UDP 192.0.2.1:53" in messages[2]
    assert "no such service" in messages[2]
    assert "edit dest 198.51.100.2:80 of TCP 192.0.2.1:80" in messages[3]
    assert "no such destination" in messages[3]
    assert "ip_vs_nosuchsched" in messages[6]
    assert "lower connection threshold above the upper" in messages[7]
    assert "IPv6 netmask must be a prefix length" in messages[8]
    assert all(isinstance(e, KernelError) for e in caught)


def test_batch_reports_each_failure_and_carries_on(netns: str) -> None:
    ops = [
        AddService(TCP_VIP, Service("rr")),
        AddDest(TCP_VIP, RS1, MASQ),
        AddDest(TCP_VIP, RS1, MASQ),  # refused: exists
        AddDest(UDP_VIP, RS1, MASQ),  # refused: no such service
        AddDest(TCP_VIP, RS2, MASQ),
        EditDest(TCP_VIP, RS2, Dest(model.FWD_MASQ, 5)),
    ]

    async def body(kernel: IpvsKernel) -> tuple[list[IpvsOpError], dict[DestKey, Dest]]:
        errors = await kernel.apply(ops)
        return errors, {d.key: d.dest for d in await kernel.dests(TCP_VIP)}

    errors, dests = with_kernel(netns, body)
    assert [(e.what, e.errno) for e in errors] == [
        ("add dest 198.51.100.1:80 to TCP 192.0.2.1:80", errno.EEXIST),
        ("add dest 198.51.100.1:80 to UDP 192.0.2.1:53", errno.ESRCH),
    ]
    assert dests == {RS1: MASQ, RS2: Dest(model.FWD_MASQ, 5)}
    assert [e.op for e in errors] == [ops[2], ops[3]]


def test_large_batch_is_split_and_fully_applied(netns: str) -> None:
    dest_keys = [DestKey.of(f"198.51.{100 + i // 250}.{1 + i % 250}", 80) for i in range(600)]
    ops = [AddService(TCP_VIP, Service("wrr"))]
    ops += [AddDest(TCP_VIP, k, Dest(model.FWD_DROUTE, i % 7)) for i, k in enumerate(dest_keys)]

    async def body(kernel: IpvsKernel) -> tuple[list[IpvsOpError], dict[DestKey, int]]:
        errors = await kernel.apply(ops)
        return errors, {d.key: d.dest.weight for d in await kernel.dests(TCP_VIP)}

    errors, weights = with_kernel(netns, body)
    assert errors == []
    assert weights == {k: i % 7 for i, k in enumerate(dest_keys)}


def test_reconciler_plan_applied_by_the_kernel_converges(netns: str) -> None:
    desired = {
        TCP_VIP: Entry(Service("wlc"), {RS1: MASQ, RS2: Dest(model.FWD_MASQ, 3)}),
        MARK4: Entry(Service("rr", model.SVC_F_PERSISTENT, 60, 0xFFFFFF00), {RS1: Dest()}),
    }

    async def body(kernel: IpvsKernel) -> tuple[list[IpvsOpError], bool, list[object]]:
        await kernel.add_service(UDP_VIP, Service("rr"))  # not ours: must stay
        await kernel.add_service(TCP_VIP, Service("rr"))
        await kernel.add_dest(TCP_VIP, DestKey.of("198.51.100.9", 80), MASQ)
        errors = await kernel.apply(plan(desired, await kernel.table()))
        table = await kernel.table()
        return errors, UDP_VIP in table, plan(desired, table)

    errors, kept_foreign, second_plan = with_kernel(netns, body)
    assert errors == []
    assert kept_foreign
    assert second_plan == []
    table = ipvsadm_table(netns)
    assert effective({k: table[k] for k in desired}) == effective(desired)


KEYS = [TCP_VIP, UDP_VIP, MARK4]
POOL = [DestKey.of(f"198.51.100.{i}", 80) for i in range(1, 5)]
dest_strategy = st.builds(
    Dest,
    forwarding=st.sampled_from([model.FWD_MASQ, model.FWD_DROUTE]),
    weight=st.integers(0, 5),
    upper_threshold=st.sampled_from([0, 10]),
    lower_threshold=st.just(0),
).flatmap(
    # The kernel refuses a lower threshold above the upper one (0 included): ERANGE.
    lambda d: (
        st.just(d) if not d.upper_threshold else st.sampled_from([d, replace(d, lower_threshold=2)])
    )
)
entry_strategy = st.builds(
    Entry,
    service=st.sampled_from([Service("rr"), Service("wlc"), Service("sh", model.SVC_F_SCHED1)]),
    dests=st.dictionaries(st.sampled_from(POOL), dest_strategy, max_size=3),
)
table_strategy = st.dictionaries(st.sampled_from(KEYS), entry_strategy, max_size=3)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(first=table_strategy, second=table_strategy)
def test_kernel_agrees_with_the_reconcilers_simulation(
    netns: str, first: dict[ServiceKey, Entry], second: dict[ServiceKey, Entry]
) -> None:
    """Plan first->second on the real kernel; the kernel ends where apply_ops predicts."""

    async def body(kernel: IpvsKernel) -> dict[ServiceKey, Entry]:
        await kernel.flush()
        assert await kernel.apply(plan(first, {})) == []
        actual = await kernel.table()
        ops = plan(second, actual, own_whole_table=True)
        assert await kernel.apply(ops) == []
        after = await kernel.table()
        assert effective(after) == effective(apply_ops(actual, ops))
        return after

    after = with_kernel(netns, body)
    assert effective(after) == effective(second)


def test_timeouts_round_trip_and_zero_keeps(netns: str) -> None:
    async def body(kernel: IpvsKernel) -> tuple[Timeouts, Timeouts]:
        await kernel.set_timeouts(Timeouts(1000, 50, 60))
        first = await kernel.get_timeouts()
        await kernel.set_timeouts(Timeouts(0, 70, 0))
        return first, await kernel.get_timeouts()

    first, second = with_kernel(netns, body)
    assert first == Timeouts(1000, 50, 60)
    assert second == Timeouts(1000, 70, 60)
    assert in_netns(netns, "ipvsadm", "-L", "--timeout").split() == (
        ["Timeout", "(tcp", "tcpfin", "udp):", "1000", "70", "60"]
    )


def test_flush_empties_only_this_namespace(netns: str) -> None:
    async def body(kernel: IpvsKernel) -> list[object]:
        await kernel.add_service(TCP_VIP, Service("rr"))
        await kernel.add_dest(TCP_VIP, RS1, MASQ)
        async with IpvsKernel() as root_ns:
            root_before = await root_ns.services()
            await kernel.flush()
            root_after = await root_ns.services()
        return [await kernel.services(), root_before == root_after]

    services, root_untouched = with_kernel(netns, body)
    assert services == []
    assert root_untouched
    assert in_netns(netns, "ipvsadm", "-S", "-n").strip() == ""


def test_namespaces_have_separate_tables(netns: str) -> None:
    async def body(kernel: IpvsKernel) -> list[object]:
        await kernel.add_service(TCP_VIP, Service("rr"))
        async with IpvsKernel() as root_ns:
            return [s.key for s in await root_ns.services()]

    assert TCP_VIP not in with_kernel(netns, body)


def test_missing_service_reads_as_none_and_no_dests(netns: str) -> None:
    async def body(kernel: IpvsKernel) -> tuple[object, object]:
        return await kernel.service(TCP_VIP), await kernel.dests(TCP_VIP)

    assert with_kernel(netns, body) == (None, [])


def test_a_request_cancelled_after_sending_retires_the_socket(netns: str) -> None:
    """A dump abandoned between send and receive must not answer the next request."""

    async def body(kernel: IpvsKernel) -> tuple[bool, list[ServiceKey]]:
        await kernel.add_service(TCP_VIP, Service("rr"))
        sent_before = kernel._seq
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def abandoned_dump() -> None:
                with scope:
                    await kernel.services()

            nursery.start_soon(abandoned_dump)
            while kernel._seq == sent_before:  # sent, and now yielding before the recv
                await trio.sleep(0)
            scope.cancel()
        retired = kernel._sock is None
        await kernel.add_service(UDP_VIP, Service("rr"))
        return retired, sorted((s.key for s in await kernel.services()), key=ServiceKey.sort_key)

    retired, keys = with_kernel(netns, body)
    assert retired
    assert keys == sorted([TCP_VIP, UDP_VIP], key=ServiceKey.sort_key)


def test_concurrent_callers_share_one_adapter(netns: str) -> None:
    """Tasks writing and reading through one adapter at once each get their own answer."""
    pool = [DestKey.of(f"198.51.100.{i}", 80) for i in range(1, 21)]

    async def body(kernel: IpvsKernel) -> tuple[dict[DestKey, int], list[int]]:
        await kernel.add_service(TCP_VIP, Service("wrr"))
        await kernel.apply([AddDest(TCP_VIP, k, MASQ) for k in pool])
        counts: list[int] = []

        async def writer(index: int, key: DestKey) -> None:
            for round_index in range(5):
                await kernel.edit_dest(TCP_VIP, key, Dest(model.FWD_MASQ, index * 10 + round_index))

        async def reader() -> None:
            for _ in range(10):
                counts.append(len(await kernel.dests(TCP_VIP)))

        async with trio.open_nursery() as nursery:
            for index, key in enumerate(pool):
                nursery.start_soon(writer, index, key)
            nursery.start_soon(reader)
        return {d.key: d.dest.weight for d in await kernel.dests(TCP_VIP)}, counts

    weights, counts = with_kernel(netns, body)
    assert weights == {key: index * 10 + 4 for index, key in enumerate(pool)}
    assert counts == [len(pool)] * 10


def test_ensure_scheduler_loads_or_explains(netns: str) -> None:
    async def body() -> str:
        await ensure_scheduler("mh")
        with pytest.raises(KernelError) as info:
            await ensure_scheduler("nosuch")
        return str(info.value)

    message = trio.run(body)
    assert "IPVS scheduler 'nosuch' is not available" in message
    assert "modprobe ip_vs_nosuch" in message


def test_info_reports_the_kernel_version(netns: str) -> None:
    async def body(kernel: IpvsKernel) -> object:
        return await kernel.info()

    info = with_kernel(netns, body)
    assert info.version >= (1, 2, 0)
    header = in_netns(netns, "ipvsadm", "-L", "-n").splitlines()[0]
    assert header == f"IP Virtual Server version {'.'.join(map(str, info.version))} " + (
        f"(size={info.conn_tab_size})"
    )


def test_edit_dest_latency(netns: str) -> None:
    """Median time of one edit_dest (weight change) in the VM, printed for the bench notes."""

    async def body(kernel: IpvsKernel) -> list[float]:
        await kernel.add_service(TCP_VIP, Service("wlc"))
        await kernel.add_dest(TCP_VIP, RS1, MASQ)
        durations = []
        for round_index in range(200):
            started = time.perf_counter()
            await kernel.edit_dest(TCP_VIP, RS1, Dest(model.FWD_MASQ, round_index % 10 + 1))
            durations.append(time.perf_counter() - started)
        return durations

    durations = with_kernel(netns, body)
    median_ms = statistics.median(durations) * 1000
    print(f"edit_dest median {median_ms:.3f} ms over {len(durations)} calls (VM, TCG)")
    assert median_ms < 1000


class _ChangesDuringRead(IpvsKernel):
    """The real adapter, with another writer (as ``ipvsadm -D`` / ``-A`` would) deleting
    the ``victim`` service, or adding it back, between the kernel's dump of the services
    and its dumps of their dests: once per read of the service list, ``times`` times."""

    def __init__(self, netns: str, victim: ServiceKey) -> None:
        super().__init__(netns)
        self.victim = victim
        self.present = True
        self.times = 0
        self.armed = False
        self.service_reads = 0

    async def services(self) -> list:  # type: ignore[type-arg]
        self.service_reads += 1
        self.armed = True
        return await super().services()

    async def dests(self, key: ServiceKey) -> list:  # type: ignore[type-arg]
        if self.times and self.armed:
            self.times -= 1
            self.armed = False
            if self.present:
                await self.del_service(self.victim)
            else:
                await self.add_service(self.victim, SERVICES[self.victim])
            self.present = not self.present
        return await super().dests(key)


def test_table_read_while_a_service_is_deleted_is_consistent(netns: str) -> None:
    """A service deleted mid-read is not reported as a service without dests: the read is
    repeated, and a table that keeps changing is an error (the next reconcile tries again)."""

    async def body(times: int) -> tuple[dict[ServiceKey, Entry] | str, int]:
        async with _ChangesDuringRead(netns, TCP_VIP) as kernel:
            for key in (TCP_VIP, UDP_VIP):
                await kernel.add_service(key, SERVICES[key])
                await kernel.add_dest(key, RS1, MASQ)
            kernel.times, kernel.service_reads = times, 0
            try:
                table: dict[ServiceKey, Entry] | str = await kernel.table()
            except KernelError as exc:
                table = str(exc)
            await kernel.flush()
            return table, kernel.service_reads

    table, reads = trio.run(body, 1)
    assert isinstance(table, dict)
    assert set(table) == {UDP_VIP} and set(table[UDP_VIP].dests) == {RS1}
    assert reads == 3  # the first read, its check, and the check of the second read
    error, reads = trio.run(body, 100)
    assert isinstance(error, str) and "kept changing" in error
    assert reads == 6
