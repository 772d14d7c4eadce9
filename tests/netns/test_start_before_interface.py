"""A director booting before its network: ``hadirector run`` started before its interface
exists waits for it (and for its address), tells systemd it is ready meanwhile, and comes up
once the interface appears; the process is never restarted.

Two lab directors (dir-a 150, dir-b 100, 0.1 s adverts). dir-b's eth0 is deleted before its
agent starts; the agent gets a real ``NOTIFY_SOCKET`` (a datagram socket of the test, as
systemd gives a Type=notify unit), so what systemd would see is checked: READY=1 arrives
while the interface is missing, with a STATUS= saying what the instance waits for. The
interface is then created without its address (still waiting), then the address is added:
dir-b comes up as BACKUP under dir-a, and takes over when dir-a stops.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .e2e_util import STATE_TIMEOUT_S, E2EDirector
from .lab import Lab, wait_for

pytestmark = pytest.mark.netns


class NotifySocket:
    """A systemd-like notification socket: collects every datagram sent to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[list[str]] = []

    def read(self) -> list[list[str]]:
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return self.messages
            self.messages.append(data.decode().split("\n"))

    def fields(self, prefix: str) -> list[str]:
        return [f for m in self.read() for f in m if f.startswith(prefix)]

    def close(self) -> None:
        self.sock.close()


class NotifiedDirector(E2EDirector):
    """An ``E2EDirector`` whose agent has ``NOTIFY_SOCKET`` set."""

    def __init__(self, lab: Lab, node: str, priority: int, notify: NotifySocket) -> None:
        super().__init__(lab, node, priority)
        self.notify = notify

    def popen_kwargs(self) -> dict[str, Any]:
        kwargs = super().popen_kwargs()
        kwargs["env"] = {**kwargs.get("env", os.environ), "NOTIFY_SOCKET": str(self.notify.path)}
        return kwargs


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify")
    yield sock
    sock.close()


def test_agent_started_before_its_interface_waits_and_comes_up(
    netlab: Lab, notify_socket: NotifySocket
) -> None:
    lab = netlab
    a = E2EDirector(lab, "dir-a", 150)
    a.start()
    a.wait_state("MASTER", STATE_TIMEOUT_S)
    lab.delete_link("dir-b")
    b = NotifiedDirector(lab, "dir-b", 100, notify_socket)
    b.start()
    # Ready while the interface is missing: a boot must not wait for the agent's network.
    wait_for(lambda: "READY=1" in notify_socket.fields("READY="), STATE_TIMEOUT_S, "READY=1")
    status = notify_socket.fields("STATUS=")[-1]
    assert status.startswith("STATUS=VI_1=INIT (waiting for eth0: "), status
    assert b.running()
    assert b.records("vrrp.socket_error")  # said once why it waits
    pid = b.pid
    # The interface appears without an address: still waiting.
    lab.create_link("dir-b", addresses=False)
    wait_for(lambda: b.records("link.change"), STATE_TIMEOUT_S, "the link seen")
    assert b.states() == []
    # With its address: up as backup under dir-a, the same process.
    lab.add_lan_addresses("dir-b")
    b.wait_state("BACKUP", STATE_TIMEOUT_S)
    assert b.pid == pid and b.running()
    assert wait_for(
        lambda: notify_socket.fields("STATUS=")[-1] == "STATUS=VI_1=BACKUP",
        STATE_TIMEOUT_S,
        "STATUS= of the started instance",
    )
    assert notify_socket.fields("READY=") == ["READY=1"]  # once, at start
    # And it works: dir-a stops, dir-b takes over.
    a.stop()
    b.wait_state("MASTER", STATE_TIMEOUT_S)
    assert lab.who_has_vip() == {"dir-b"}
