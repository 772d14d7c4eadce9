"""bulk.resync builds its messages off the event loop: reading, parsing and packing a big
connection table take seconds of CPU on a slow machine, and the agent's loop (its VRRP
adverts) must go on meanwhile. Found by bench/failback.py: with 10,000 connections under
the VM's emulation the master's adverts stopped while it built the resync, and the joiner
became master by Master_Down_Interval before the resync arrived."""

from __future__ import annotations

import socket
import threading

import pytest
import trio

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
