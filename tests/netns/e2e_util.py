"""Small tools for the end-to-end tests of ``hadirector run`` on two lab directors.

``E2EDirector`` is a ``HadirectorDirector`` whose configuration can carry keys the lab's
generic TOML writer does not know (tracking, accept_from, HMAC, notify commands, realtime
priority): they are inserted as raw TOML into ``[global]`` or into every
``[[vrrp_instance]]``. It also reads back the agent's JSON log as records and sends
signals; for IPv6 its VIP is 2001:db8:N::100 (``vip_for()``). ``start_pair`` starts the
usual pair (dir-a first, then dir-b) and waits until dir-a is MASTER and dir-b BACKUP.
Frame matchers pick announcements out of the wire log; the client sends hand-built frames.

This module only drives the lab; it must not change the lab's files or send traffic
anywhere but the lab's namespaces.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

from tests.checksum import internet_checksum

from .lab import Frame, HadirectorDirector, Lab, vip_address, wait_for

ADVERT_S = 0.1
STATE_TIMEOUT_S = 30.0
WIRE_TIMEOUT_S = 15.0


def vip_for(lan: int = 0, family: int = 4) -> str:
    """The VIP of LAN ``lan``: 192.0.2.100 / 198.51.100.100, or 2001:db8:N::100 for IPv6.

    (The lab's ``vip_address`` numbers IPv6 hosts in hex, giving ``::64``; these tests use
    the ``::100`` address the documentation of the lab and of the tests names.)
    """
    if family == 4:
        return vip_address(lan, 4)
    return f"2001:db8:{lan + 1}::100"


class E2EDirector(HadirectorDirector):
    """``hadirector run`` with extra raw TOML for ``[global]`` and every instance.

    ``global_extra`` / ``instance_extra`` map a key to its TOML value text, e.g.
    ``{"track_interfaces": '[{ name = "eth1", weight = -60 }]'}``.
    ``per_instance`` adds keys for one instance only, by instance name.
    """

    def __init__(
        self,
        lab: Lab,
        node: str,
        priority: int = 100,
        advert_s: float = ADVERT_S,
        *,
        global_extra: Mapping[str, str] | None = None,
        instance_extra: Mapping[str, str] | None = None,
        per_instance: Mapping[str, Mapping[str, str]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(lab, node, priority, advert_s, **kwargs)
        if kwargs.get("family") == 6 and kwargs.get("instances") is None:
            self.instances = [
                dataclasses.replace(spec, vips=(f"{vip_for(lan, 6)}/64",))
                for lan, spec in enumerate(self.instances)
            ]
        self.global_extra = dict(global_extra or {})
        self.instance_extra = dict(instance_extra or {})
        self.per_instance = {k: dict(v) for k, v in (per_instance or {}).items()}

    def config_text(self) -> str:
        """The TOML this director runs with (the lab's text plus the extra keys)."""
        self.prepare_base()
        text = self.conf_path.read_text()
        out: list[str] = []
        for line in text.splitlines():
            out.append(line)
            if line == "[global]":
                out += [f"{k} = {v}" for k, v in self.global_extra.items()]
            elif line.startswith("name = ") and out[-2:-1] == ["[[vrrp_instance]]"]:
                name = json.loads(line.removeprefix("name = "))
                extra = {**self.instance_extra, **self.per_instance.get(name, {})}
                out += [f"{k} = {v}" for k, v in extra.items()]
        return "\n".join(out) + "\n"

    def prepare_base(self) -> None:
        super().prepare()

    def prepare(self) -> None:
        self.conf_path.write_text(self.config_text())

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, signum: int = signal.SIGHUP) -> None:
        assert self.proc is not None and self.proc.poll() is None
        self.proc.send_signal(signum)

    def states(self, instance: str | None = None) -> list[str]:
        """The ``new`` states of every transition reported for ``instance`` (default first)."""
        name = instance or self.instances[0].name
        return [t.new for t in self.transitions() if t.instance == name]


def start_pair(
    lab: Lab,
    a_priority: int = 150,
    b_priority: int = 100,
    *,
    a_kwargs: Mapping[str, Any] | None = None,
    b_kwargs: Mapping[str, Any] | None = None,
    **common: Any,
) -> tuple[E2EDirector, E2EDirector]:
    """dir-a (150) then dir-b (100); returns once dir-a is MASTER and dir-b BACKUP.

    One at a time: started together on a loaded machine, the backup may time out first and
    be master for a moment, which is correct VRRP but not what the tests want to start from.
    """
    a = E2EDirector(lab, "dir-a", a_priority, **{**common, **(a_kwargs or {})})
    b = E2EDirector(lab, "dir-b", b_priority, **{**common, **(b_kwargs or {})})
    try:
        a.start()
        a.wait_state("MASTER", STATE_TIMEOUT_S)
        b.start()
        b.wait_state("BACKUP", STATE_TIMEOUT_S)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n--- dir-a\n{a.log()[-3000:]}\n--- dir-b\n{b.log()}") from exc
    return a, b


def is_garp(vip: str, mac: str) -> Callable[[Frame], bool]:
    """Matches a gratuitous ARP for ``vip`` sent from ``mac``."""

    def match(f: Frame) -> bool:
        return (
            f.kind == "arp"
            and f.src_mac == mac
            and bool(f.info["gratuitous"])
            and f.info["sender_ip"] == vip
            and f.info["sender_mac"] == mac
        )

    return match


def is_unsolicited_na(vip: str, mac: str) -> Callable[[Frame], bool]:
    """Matches an unsolicited, overriding neighbour advertisement for ``vip`` from ``mac``."""

    def match(f: Frame) -> bool:
        return (
            f.kind == "na"
            and f.src_mac == mac
            and f.info["target"] == vip
            and bool(f.info["override"])
            and not f.info["solicited"]
            and f.info.get("target_mac") in (None, mac)
        )

    return match


def adverts_from(lab: Lab, mac: str, since: float) -> list[Frame]:
    """VRRP frames sent from ``mac`` at or after ``since``."""
    return [f for f in lab.wire("vrrp", since) if f.src_mac == mac]


def wait_adverts(lab: Lab, mac: str, since: float, count: int) -> list[Frame]:
    """Wait until ``count`` VRRP frames from ``mac`` were on the wire at or after ``since``.

    A window measured in the sender's own advert intervals, for "nothing changed
    meanwhile" checks; and since one capture socket reads a LAN in order, every frame
    another host sent before the last of these has been read by then too.
    """
    return wait_for(
        lambda: adverts_from(lab, mac, since)[count - 1 :] and adverts_from(lab, mac, since),
        WIRE_TIMEOUT_S, f"{count} adverts from {mac}",
    )  # fmt: skip


# -- hand-built frames for the client to send ---------------------------------------------

VRRP_MCAST_MAC = "01:00:5e:00:00:12"
VRRP_MCAST_V4 = "224.0.0.18"


def vrrp_v3_ipv4(
    src: str,
    dst: str,
    *,
    vrid: int = 51,
    priority: int = 254,
    interval_cs: int = 10,
    addresses: tuple[str, ...] = ("192.0.2.100",),
    version: int = 3,
) -> bytes:
    """A VRRP advertisement with a correct checksum (RFC 5798 §5.2.8 for v3 with the IPv4
    pseudo-header, RFC 3768 §5.3.8 for v2 over the message only)."""
    addr = b"".join(socket.inet_aton(a) for a in addresses)
    if version == 3:
        head = bytes([0x31, vrid, priority, len(addresses)]) + interval_cs.to_bytes(2, "big")
        body = head + b"\0\0" + addr
        pseudo = (
            socket.inet_aton(src) + socket.inet_aton(dst) + bytes([0, 112])
            + len(body).to_bytes(2, "big")
        )  # fmt: skip
        csum = internet_checksum(pseudo + body)
    else:
        head = bytes([0x21, vrid, priority, len(addresses), 0, max(1, interval_cs // 100)])
        body = head + b"\0\0" + addr + bytes(8)
        csum = internet_checksum(body)
    return body[:6] + csum.to_bytes(2, "big") + body[8:]


def ipv4_frame(
    src_mac: str,
    src_ip: str,
    payload: bytes,
    *,
    dst_ip: str = VRRP_MCAST_V4,
    dst_mac: str = VRRP_MCAST_MAC,
    ttl: int = 255,
    protocol: int = 112,
) -> bytes:
    """An Ethernet frame carrying ``payload`` in an IPv4 datagram with a valid header."""
    total = 20 + len(payload)
    header = (
        bytes([0x45, 0xC0]) + total.to_bytes(2, "big") + b"\0\0\0\0"
        + bytes([ttl, protocol]) + b"\0\0" + socket.inet_aton(src_ip) + socket.inet_aton(dst_ip)
    )  # fmt: skip
    header = header[:10] + internet_checksum(header).to_bytes(2, "big") + header[12:]
    eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", ""))
    return eth + b"\x08\x00" + header + payload


_SEND_FRAMES = (
    "import socket, sys, time\n"
    "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
    "s.bind((sys.argv[1], 0))\n"
    "for _ in range(int(sys.argv[2])):\n"
    "    for h in sys.argv[3:]:\n"
    "        s.send(bytes.fromhex(h))\n"
    "    time.sleep(0.01)\n"
)


def send_frames(
    lab: Lab, node: str, frames: list[bytes], *, dev: str = "eth0", rounds: int = 1
) -> None:
    """Send raw Ethernet ``frames`` from ``node``'s ``dev`` (``rounds`` times, 10 ms apart)."""
    lab.run(node, sys.executable, "-c", _SEND_FRAMES, dev, str(rounds), *(f.hex() for f in frames))


def start_frames(
    lab: Lab, node: str, frames: list[bytes], *, dev: str = "eth0", rounds: int = 1
) -> subprocess.Popen[bytes]:
    """Like ``send_frames`` but in the background; the caller waits (or the lab kills it)."""
    hexes = [f.hex() for f in frames]
    return lab.popen(node, sys.executable, "-c", _SEND_FRAMES, dev, str(rounds), *hexes)
