"""A client probing a VIP every few milliseconds, counting every probe and every reply.

Run in the client namespace::

    ip netns exec CLIENT python tests/netns/prober.py --target 192.0.2.100 --duration 10

It sends ICMP (or ICMPv6) echo requests from a raw socket, or with ``--udp PORT`` UDP
datagrams to an echo server (``--echo-server PORT`` runs one, e.g. on real servers behind
IPVS), on a fixed schedule (default every 2 ms; a slot the process was too late for is
skipped and counted, never sent in a burst), at SCHED_FIFO priority unless
``--no-realtime``. It receives the replies on a packet socket bound to the client's
interface, so each reply's source MAC is known. Each request carries a 64-bit sequence
number; replies are matched by it, so the counts are exact: ``lost`` is the number of
probes sent that got no reply by the end of the run plus a grace period.

It stops at ``--duration`` or on SIGTERM/SIGINT and prints one JSON object:
sent, answered, lost, duplicates, send_errors, skipped_slots, slots (sent + skipped: every
slot from the start to the end of the run), max_send_gap_ms,
longest_gap_ms (longest time without a reply, counting from the first probe to the last),
gaps (every reply gap over ``--gap-ms``, with its times and the probes lost in it),
lost_runs (runs of consecutive lost probes), mac_changes and replies per MAC. Times are
CLOCK_MONOTONIC seconds (send: just before sendto; reply: the kernel's receive stamp), so
they line up with ``time.monotonic()`` in the test process and with the lab's wire log.

``ProberRun`` starts it through a lab and collects the result; ``start_echo_server``
starts an echo server in a lab node.

This program must stay standard-library only (tests/checksum.py, the one module of the
repository it imports, too) and fast to start, must only send to the target it is given,
and must never estimate a count.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

if __package__ in (None, ""):  # run as a program: the repository root makes tests importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.checksum import internet_checksum

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35
ICMP_FILTER = 1  # SOL_RAW option: bitmap of ICMP types to drop
SOL_RAW = 255
ICMP6_FILTER = 1
MAGIC = b"hdlprobe"
PAYLOAD = struct.Struct("!8sQ")
REALTIME_PRIORITY = 10
IP_PKTINFO = 8  # Linux; not exported by Python 3.11's socket module


def echo_request(family: int, ident: int, seq: int) -> bytes:
    """An ICMP/ICMPv6 echo request carrying ``seq`` (64 bits) in its payload."""
    payload = PAYLOAD.pack(MAGIC, seq) + bytes(16)
    if family == 6:  # the kernel fills in the ICMPv6 checksum for raw ICMPv6 sockets
        return struct.pack("!BBHHH", 128, 0, 0, ident, seq & 0xFFFF) + payload
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq & 0xFFFF)
    csum = internet_checksum(header + payload)
    return struct.pack("!BBHHH", 8, 0, csum, ident, seq & 0xFFFF) + payload


def parse_reply(
    frame: bytes, family: int, ident: int, target: bytes, udp: tuple[int, int] | None = None
) -> int | None:
    """The sequence number of a reply from ``target`` to us in the Ethernet ``frame``.

    ICMP: an echo reply with identifier ``ident``. UDP (``udp`` = (server port, our
    port)): a datagram between those ports echoing our payload. None for anything else.
    """
    if len(frame) < 14:
        return None
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    protocol = 17 if udp else (1 if family == 4 else 58)
    if family == 4:
        if ethertype != ETH_P_IP or len(frame) < 34:
            return None
        ihl = (frame[14] & 0x0F) * 4
        if frame[14 + 9] != protocol or frame[26:30] != target:
            return None
        l4 = frame[14 + ihl :]
    else:
        if ethertype != ETH_P_IPV6 or len(frame) < 54:
            return None
        if frame[14 + 6] != protocol or frame[22:38] != target:
            return None
        l4 = frame[54:]
    if len(l4) < 8 + PAYLOAD.size:
        return None
    if udp:
        if struct.unpack_from("!HH", l4, 0) != udp:
            return None
    else:
        if l4[0] != (0 if family == 4 else 129) or l4[1] != 0:
            return None
        if struct.unpack_from("!H", l4, 4)[0] != ident:
            return None
    magic, seq = PAYLOAD.unpack_from(l4, 8)
    return int(seq) if magic == MAGIC else None


def udp_payload(seq: int) -> bytes:
    """The payload of a UDP probe carrying ``seq``, padded as the ICMP probes are."""
    return PAYLOAD.pack(MAGIC, seq) + bytes(16)


def _kernel_monotonic(ancdata: list[tuple[int, int, bytes]]) -> float:
    mono_now = time.monotonic()
    real_now = time.time()
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            return float(mono_now - max(0.0, real_now - (sec + nsec / 1e9)))
    return mono_now


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def summarize(
    send_times: Sequence[float],
    replies: dict[int, tuple[float, str]],
    duplicates: int = 0,
    gap_ms: float = 10.0,
) -> dict[str, Any]:
    """The result of a run from per-probe send times and first replies (seq -> (t, mac)).

    Probe ``seq`` was sent at ``send_times[seq]``. Pure function: the unit under test for
    the counting rules.
    """
    sent = len(send_times)
    answered = sum(1 for seq in replies if 0 <= seq < sent)
    result: dict[str, Any] = {
        "sent": sent,
        "answered": answered,
        "lost": sent - answered,
        "duplicates": duplicates,
    }
    send_gaps = [(b - a, a) for a, b in itertools.pairwise(send_times)]
    worst, worst_at = max(send_gaps, default=(0.0, None))
    result["max_send_gap_ms"] = round(worst * 1000, 3)
    result["max_send_gap_at"] = worst_at
    # Reply gaps, bounded by the first and the last probe sent.
    ordered = sorted((t, seq, mac) for seq, (t, mac) in replies.items() if 0 <= seq < sent)
    gaps = []
    if sent:
        points = [(send_times[0], -1), *((t, seq) for t, seq, _ in ordered)]
        end = send_times[-1]
        if not ordered or end > ordered[-1][0]:
            points.append((end, sent))
        for (t0, s0), (t1, s1) in itertools.pairwise(points):
            ms = (t1 - t0) * 1000
            if ms > gap_ms:
                lo, hi = min(s0, s1), max(s0, s1)
                lost_inside = sum(
                    1 for s in range(max(lo, 0), min(hi + 1, sent)) if s not in replies
                )
                gaps.append({"start": t0, "end": t1, "ms": round(ms, 3), "lost": lost_inside})
        longest = max(
            ((t1 - t0) for (t0, _), (t1, _) in itertools.pairwise(points)),
            default=0.0,
        )
    else:
        longest = 0.0
    result["longest_gap_ms"] = round(longest * 1000, 3)
    result["gaps"] = gaps
    runs = []
    run_start: int | None = None
    for seq in range(sent + 1):
        missing = seq < sent and seq not in replies
        if missing and run_start is None:
            run_start = seq
        elif not missing and run_start is not None:
            runs.append(
                {
                    "first_seq": run_start,
                    "count": seq - run_start,
                    "start": send_times[run_start],
                    "end": send_times[seq - 1],
                }
            )
            run_start = None
    result["lost_runs"] = runs
    changes = []
    macs: dict[str, int] = {}
    last_mac: str | None = None
    for t, seq, mac in ordered:
        macs[mac] = macs.get(mac, 0) + 1
        if last_mac is not None and mac != last_mac:
            changes.append({"t": t, "seq": seq, "old": last_mac, "new": mac})
        last_mac = mac
    result["mac_changes"] = changes
    result["macs"] = macs
    return result


def probe(
    target: str,
    dev: str,
    interval_s: float,
    duration_s: float,
    grace_s: float,
    gap_ms: float,
    ready: Path | None = None,
    realtime: bool = True,
    udp_port: int | None = None,
) -> dict[str, Any]:
    """Probe ``target`` through ``dev``; return the summary of the run.

    ICMP echo by default; with ``udp_port``, UDP datagrams to an echo server on that port
    (``--echo-server``). With ``realtime`` the process asks for SCHED_FIFO (reported back
    as ``realtime``).
    """
    family = 6 if ":" in target else 4
    af = socket.AF_INET6 if family == 6 else socket.AF_INET
    target_raw = socket.inet_pton(af, target)
    ident = os.getpid() & 0xFFFF
    ethertype = ETH_P_IP if family == 4 else ETH_P_IPV6
    udp: tuple[int, int] | None = None
    if udp_port is not None:
        tx = socket.socket(af, socket.SOCK_DGRAM)
        tx.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
        tx.bind(("::" if family == 6 else "0.0.0.0", 0))
        udp = (udp_port, tx.getsockname()[1])
    elif family == 4:
        tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        tx.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("I", 0xFFFFFFFF))
    else:
        tx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        tx.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, b"\xff" * 32)
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
    tx.setblocking(False)
    rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
    rx.bind((dev, 0))
    rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    rx.setblocking(False)

    if realtime:
        # A 2 ms schedule on a busy machine needs the scheduler's help; the prober sleeps
        # between probes, so real-time priority costs the rest of the machine little.
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
        except (OSError, AttributeError):
            realtime = False
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    send_times: list[float] = []
    replies: dict[int, tuple[float, str]] = {}
    duplicates = 0
    send_errors: dict[str, int] = {}
    skipped = 0
    poller = select.poll()
    poller.register(rx.fileno(), select.POLLIN)

    def drain() -> None:
        nonlocal duplicates
        while udp is not None:  # replies are counted from the packet socket
            try:
                tx.recv(2048)
            except (BlockingIOError, ConnectionRefusedError):
                break
        while True:
            try:
                data, ancdata, _flags, addr = rx.recvmsg(2048, socket.CMSG_SPACE(16))
            except BlockingIOError:
                return
            if addr[2] == PACKET_OUTGOING:
                continue
            seq = parse_reply(data, family, ident, target_raw, udp)
            if seq is None:
                continue
            if seq in replies:
                duplicates += 1
            else:
                replies[seq] = (_kernel_monotonic(ancdata), _mac(data[6:12]))

    if ready is not None:
        ready.touch()
    start = time.monotonic()
    end = start + duration_s
    slot = 0
    while not stop:
        now = time.monotonic()
        if now >= end:
            break
        due = start + slot * interval_s
        if now < due:
            with contextlib.suppress(InterruptedError):
                poller.poll(max(0.0, (due - now) * 1000))
            drain()
            continue
        seq = len(send_times)
        packet = echo_request(family, ident, seq) if udp is None else udp_payload(seq)
        send_times.append(time.monotonic())
        try:
            tx.sendto(packet, (target, udp_port or 0))
        except OSError as exc:
            name = type(exc).__name__ if exc.errno is None else os.strerror(exc.errno)
            send_errors[name] = send_errors.get(name, 0) + 1
        late_slots = int((time.monotonic() - start) / interval_s) - slot
        if late_slots > 0:
            skipped += late_slots
            slot += late_slots
        slot += 1
        drain()
    last_send = time.monotonic()
    # Slots that fell due after the last probe while the process was not running (or was
    # stopped) are skipped too: afterwards every slot up to the end of the run is either
    # probed or skipped, exactly, by the prober's own clock readings.
    overdue = int((last_send - start) / interval_s) + 1 - slot
    if overdue > 0:
        skipped += overdue
        slot += overdue
    while True:
        remaining = last_send + grace_s - time.monotonic()
        if remaining <= 0:
            break
        with contextlib.suppress(InterruptedError):
            poller.poll(remaining * 1000)
        drain()
    result = summarize(send_times, replies, duplicates, gap_ms)
    result.update(
        target=target,
        protocol="udp" if udp else "icmp",
        interval_ms=interval_s * 1000,
        started=start,
        ended=last_send,
        send_errors=sum(send_errors.values()),
        send_error_kinds=send_errors,
        skipped_slots=skipped,
        slots=slot,
        realtime=realtime,
    )
    return result


def echo_server(port: int, ready: Path | None = None, realtime: bool = True) -> int:
    """Echo every UDP datagram received on ``port`` (any address, IPv4 and IPv6) back to
    its sender, from the address it was sent to (a VIP, not the interface's primary
    address), until SIGTERM/SIGINT.

    With ``realtime`` it runs at SCHED_FIFO, as the prober does: an echo delayed by the
    scheduler would be sent after a change the test made later (a VIP removed), and a
    probe answered in time would count as lost.
    """
    if realtime:
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
    v4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    v4.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    v6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    for sock, anywhere in ((v4, "0.0.0.0"), (v6, "::")):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((anywhere, port))
        sock.setblocking(False)
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    poller = select.poll()
    for sock in (v4, v6):
        poller.register(sock.fileno(), select.POLLIN)
    if ready is not None:
        ready.touch()
    while not stop:
        with contextlib.suppress(InterruptedError):
            poller.poll(200)
        for sock in (v4, v6):
            while True:
                try:
                    data, ancdata, _flags, peer = sock.recvmsg(65535, 256)
                except BlockingIOError:
                    break
                reply_from = []
                for level, kind, value in ancdata:
                    if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                        # struct in_pktinfo {ifindex, spec_dst, addr}: answer from addr.
                        reply_from.append((level, kind, bytes(4) + value[8:12] + bytes(4)))
                    elif level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                        reply_from.append((level, kind, value[:16] + bytes(4)))
                with contextlib.suppress(OSError):
                    sock.sendmsg([data], reply_from, 0, peer)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", help="address to probe (IPv4 or IPv6)")
    parser.add_argument(
        "--udp",
        type=int,
        metavar="PORT",
        help="probe a UDP echo server on PORT instead of ICMP echo",
    )
    parser.add_argument(
        "--echo-server",
        type=int,
        metavar="PORT",
        help="run a UDP echo server on PORT (IPv4 and IPv6) instead of probing",
    )
    parser.add_argument("--dev", default="eth0", help="client interface (default eth0)")
    parser.add_argument("--interval-ms", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=3600.0, help="seconds (or signal)")
    parser.add_argument(
        "--grace-ms",
        type=float,
        default=250.0,
        help="how long to wait for late replies after the last probe",
    )
    parser.add_argument("--gap-ms", type=float, default=10.0, help="report reply gaps over this")
    parser.add_argument("--ready", type=Path, help="file to create once probing starts")
    parser.add_argument(
        "--no-realtime", action="store_true", help="do not ask for SCHED_FIFO scheduling"
    )
    parser.add_argument("--out", type=Path, help="write the JSON here instead of stdout")
    args = parser.parse_args(argv)
    if args.echo_server is not None:
        return echo_server(args.echo_server, args.ready, realtime=not args.no_realtime)
    if not args.target:
        parser.error("--target is required")
    result = probe(
        args.target,
        args.dev,
        args.interval_ms / 1000,
        args.duration,
        args.grace_ms / 1000,
        args.gap_ms,
        args.ready,
        realtime=not args.no_realtime,
        udp_port=args.udp,
    )
    text = json.dumps(result)
    if args.out:
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.rename(args.out)
    else:
        print(text)
    return 0


class _LabLike(Protocol):
    tmpdir: Path

    def popen(self, node: str, *argv: str, **kwargs: Any) -> subprocess.Popen[bytes]: ...


class ProberRun:
    """The prober running in a lab's client namespace; ``stop()`` returns its result."""

    _count = 0

    def __init__(
        self,
        lab: _LabLike,
        target: str,
        *,
        node: str = "client",
        dev: str = "eth0",
        interval_ms: float = 2.0,
        duration_s: float = 3600.0,
        gap_ms: float = 10.0,
        udp_port: int | None = None,
        ready_timeout_s: float = 30.0,
    ) -> None:
        ProberRun._count += 1
        base = lab.tmpdir / f"probe{ProberRun._count}"
        self.out = base.with_suffix(".json")
        ready = base.with_suffix(".ready")
        self.err = base.with_suffix(".err")
        udp = ["--udp", str(udp_port)] if udp_port is not None else []
        with open(self.err, "wb") as err:
            self.proc = lab.popen(
                node, sys.executable, str(Path(__file__).resolve()),
                "--target", target, "--dev", dev, "--interval-ms", str(interval_ms),
                "--duration", str(duration_s), "--gap-ms", str(gap_ms), *udp,
                "--ready", str(ready), "--out", str(self.out),
                stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
        _wait_ready(self.proc, ready, self.err, ready_timeout_s)

    def stop(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """Stop probing (SIGTERM) and return the result."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.result(timeout_s)

    def result(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """Wait for the run to end on its own and return the result."""
        self.proc.wait(timeout=timeout_s)
        if not self.out.exists():
            raise RuntimeError(f"prober exited {self.proc.returncode}: {self.err.read_text()}")
        data: dict[str, Any] = json.loads(self.out.read_text())
        return data


def _wait_ready(proc: subprocess.Popen[bytes], ready: Path, err: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{ready.stem} did not start: {err.read_text()}")
        time.sleep(0.01)


def start_echo_server(
    lab: _LabLike, node: str, port: int, timeout_s: float = 30.0
) -> subprocess.Popen[bytes]:
    """Start a UDP echo server on ``port`` in ``node`` (the lab stops it on close)."""
    base = lab.tmpdir / f"echo-{node}-{port}"
    ready, err_path = base.with_suffix(".ready"), base.with_suffix(".err")
    with open(err_path, "wb") as err:
        proc = lab.popen(node, sys.executable, str(Path(__file__).resolve()),
                         "--echo-server", str(port), "--ready", str(ready),
                         stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
    _wait_ready(proc, ready, err_path, timeout_s)
    return proc


if __name__ == "__main__":
    sys.exit(main())
