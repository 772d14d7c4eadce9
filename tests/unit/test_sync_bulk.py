"""Bulk resync at scale, found by bench/failback.py (10,000 connections under the VM's
emulation):

- bulk.resync builds its messages off the event loop: reading, parsing and packing a big
  connection table take seconds of CPU on a slow machine, and the master's adverts stopped
  meanwhile: the joiner became master by Master_Down_Interval before the resync arrived;
- the joiner counts entries from the message headers and does not decode them (the kernel
  takes them in): decoding every entry kept it from reading its socket fast enough, and
  the DONE at the end of the queue was dropped."""

from __future__ import annotations

import socket
import threading
from ipaddress import IPv4Address

import pytest
import trio
import trio.testing

from hadirector.ipvs import model
from hadirector.ipvs.model import Dest, DestKey, Entry, Service, ServiceKey
from hadirector.sync import bulk, codec, table

LISTING = (
    "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n"
    "TCP C0000202 9C40 CB00710A 0050 C6336402 1F90 ESTABLISHED     897\n"
    "TCP C0000202 0000 CB00710A 0050 C6336402 1F90 NONE            297\n"
)
TABLE = {
    ServiceKey.virtual("tcp", "203.0.113.10", 80): Entry(
        Service("rr", model.SVC_F_PERSISTENT, 300),
        {DestKey.of("198.51.100.2", 8080): Dest(model.FWD_MASQ)},
    )
}


def test_the_loop_runs_while_a_resync_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    entered, release = threading.Event(), threading.Event()
    parse = table.parse_proc_conn

    def parse_once_released(text: str) -> tuple[list[table.ProcConn], int]:
        entered.set()
        assert release.wait(30), "the event loop did not run while the resync was built"
        return parse(text)

    monkeypatch.setattr(table, "parse_proc_conn", parse_once_released)
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
    ):
        receiver.bind(("127.0.0.1", 0))
        port = receiver.getsockname()[1]

        async def main() -> bulk.Sent:
            async def loop_task() -> None:  # another task of the agent's loop
                while not entered.is_set():
                    await trio.sleep(0.001)
                release.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(loop_task)
                return await bulk.resync(
                    TABLE, ifname="lo", syncid=7, group="127.0.0.1", port=port,
                    maxlen=1400, proc_text=LISTING, sock=sender,
                )  # fmt: skip

        sent = trio.run(main)
        assert (sent.entries, sent.templates, sent.skipped, sent.messages) == (2, 1, 0, 1)
        receiver.settimeout(5)
        first, done = codec.decode(receiver.recv(2000)), codec.decode(receiver.recv(2000))
    assert [c.template for c in first.conns] == [False, True]
    assert done.control == codec.Control(codec.DONE, 2)


def _conns(n: int) -> list[codec.Conn]:
    base = int(IPv4Address("10.0.0.0"))
    return [
        codec.Conn(6, IPv4Address(base + i), 40000 + i % 20000, IPv4Address("203.0.113.10"), 80,
                   IPv4Address("198.51.100.2"), 8080, flags=codec.F_MASQ, state=1)
        for i in range(n)
    ]  # fmt: skip


def test_the_joiner_counts_entries_from_headers_and_stops_at_done() -> None:
    messages = codec.pack(7, _conns(1000), 1400)
    other = codec.encode(8, _conns(3))  # another sync id: not counted
    done = codec.encode_control(7, codec.Control(codec.DONE, 1000))
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
    ):
        listener.bind(("127.0.0.1", 0))
        for data in [*messages, other, b"\x00junk", done]:
            sender.sendto(data, listener.getsockname())

        async def main() -> bulk.Arrival:
            with trio.fail_after(30):
                return await bulk.wait_for_resync(listener, 7, trio.current_time())

        arrival = trio.run(main)
    assert (arrival.received, arrival.announced) == (1000, 1000)


def test_the_joiner_asks_again_until_the_master_answers() -> None:
    """The soak's preemption: the joiner asks at the instant the other director becomes
    master, whose answering task does not listen yet; one REQUEST was lost and the joiner
    waited out its resync_timeout. It now asks again until the DONE comes."""
    request = codec.encode_control(7, codec.Control(codec.REQUEST))
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as master,
    ):
        listener.bind(("127.0.0.1", 0))
        master.bind(("127.0.0.1", 0))
        heard: list[bytes] = []

        async def master_listens_late() -> None:
            tsock = trio.socket.from_stdlib_socket(master)
            while len(heard) < 3:  # the first two REQUESTs fall where nobody listens
                heard.append(await tsock.recv(2000))
            done = codec.encode_control(7, codec.Control(codec.DONE, 0))
            await tsock.sendto(done, listener.getsockname())

        async def main() -> bulk.Arrival:
            with trio.fail_after(30):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(master_listens_late)
                    return await bulk.ask_resync(
                        listener, sender, 7, "127.0.0.1", master.getsockname()[1], every_s=0.01
                    )

        arrival = trio.run(main)
    assert heard == [request] * 3
    assert (arrival.received, arrival.announced) == (0, 0)


def test_the_master_answers_once_for_the_repeats_queued_meanwhile() -> None:
    request = codec.encode_control(7, codec.Control(codec.REQUEST))
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as joiner,
    ):
        listener.bind(("127.0.0.1", 0))
        answers: list[float] = []
        answered = trio.Event()

        async def respond() -> None:
            answers.append(trio.current_time())
            for _ in range(4):  # repeats queued while the answer is sent
                joiner.sendto(request, listener.getsockname())
            answered.set()

        async def main() -> None:
            with trio.fail_after(30):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(bulk.answer_requests, listener, 7, respond)
                    joiner.sendto(request, listener.getsockname())
                    await answered.wait()
                    await trio.sleep(bulk.QUIET_AFTER_DONE_S)
                    await trio.testing.wait_all_tasks_blocked()
                    assert len(answers) == 1  # the four repeats were dropped
                    joiner.sendto(request, listener.getsockname())  # a new request: answered
                    while len(answers) < 2:
                        await trio.sleep(0.01)
                    nursery.cancel_scope.cancel()

        trio.run(main)
    assert len(answers) == 2
