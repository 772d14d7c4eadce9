"""The chaos soak's helper processes (tests/vm/soaklab.py): a spoofed advert flood and
control-socket abuse, each run as ``python -m tests.vm.soakhelpers flood|abuse ...`` so that
they do not share the harness's interpreter lock; each prints one JSON line of results.

Standard library only (and tests/checksum.py): a Python start under the VM's emulation
costs seconds per imported package.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import mmap
import random
import resource
import selectors
import socket
import struct
import sys
import time
from typing import Any

from tests.checksum import internet_checksum

FRONT_VRID = 51
GROUP = "224.0.0.18"
VIP_PACKED = socket.inet_aton("203.0.113.10")  # synclab.VIP


def flood_frames(count: int, rng: random.Random) -> list[bytes]:
    """Spoofed VRRPv3 adverts for the front VRID as Ethernet frames: TTL 254 or a bad
    checksum, from made-up sources and MACs, low priority (each rejected by the receive
    checks: TTL first, then the checksum)."""
    frames = []
    group = socket.inet_aton(GROUP)
    for i in range(count):
        src = socket.inet_aton(f"203.0.113.{rng.randint(100, 199)}")
        payload = bytearray(
            struct.pack("!BBBBHH4s", 0x31, FRONT_VRID, rng.randint(1, 99), 1, 100, 0, VIP_PACKED)
        )
        pseudo = src + group + struct.pack("!BBH", 0, 112, len(payload))
        struct.pack_into("!H", payload, 6, internet_checksum(pseudo + bytes(payload)))
        ttl = 254
        if i % 2:
            ttl = 255
            payload[6] ^= 0xFF  # checksum wrong
        fields = (0x45, 0xC0, 20 + len(payload), rng.randrange(65536), 0, ttl, 112, 0)
        header = bytearray(struct.pack("!BBHHHBBH4s4s", *fields, src, group))
        struct.pack_into("!H", header, 10, internet_checksum(bytes(header)))
        mac = bytes([0x02, 0x00, 0x5E, rng.randrange(256), rng.randrange(256), rng.randrange(256)])
        ethernet = bytes.fromhex("01005e000012") + mac + b"\x08\x00"
        frames.append(ethernet + bytes(header) + bytes(payload))
    return frames


#: AF_PACKET transmit ring (linux/if_packet.h): frames written once into shared memory, each
#: marked for sending, then one send() call hands the kernel every marked frame.
SOL_PACKET, PACKET_TX_RING, PACKET_LOSS = 263, 13, 14
TP_STATUS_SEND_REQUEST = 1
RING_FRAME, RING_FRAMES, RING_BLOCK = 2048, 256, 65536
RING_DATA = 32  # TPACKET_ALIGN(sizeof(struct tpacket_hdr)): where a v1 frame's bytes start


def flush(sock: socket.socket) -> int:
    """Hand the kernel the ring's marked frames; 1 when the device queue was full (ENOBUFS:
    the frames stay marked and go with a later call), else 0."""
    try:
        sock.send(b"")
    except OSError:
        time.sleep(0.001)
        return 1
    return 0


def flood_main(rate: int, seconds: float, seed: int, dev: str = "eth0") -> dict[str, Any]:
    """Send spoofed adverts at ``rate`` per second for ``seconds``, paced in 10 ms slots,
    through a transmit ring (one system call per slot: Python under emulation cannot make
    10,000 send() calls a second)."""
    frames = flood_frames(RING_FRAMES, random.Random(seed))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((dev, 0))
    sock.setsockopt(SOL_PACKET, PACKET_LOSS, 1)  # a frame the device refuses is dropped
    blocks = RING_FRAME * RING_FRAMES // RING_BLOCK
    request_ = struct.pack("IIII", RING_BLOCK, blocks, RING_FRAME, RING_FRAMES)
    sock.setsockopt(SOL_PACKET, PACKET_TX_RING, request_)
    ring = mmap.mmap(sock.fileno(), RING_FRAME * RING_FRAMES)
    for index, frame in enumerate(frames):
        at = index * RING_FRAME
        ring[at + RING_DATA : at + RING_DATA + len(frame)] = frame
        struct.pack_into("=QII", ring, at, 0, len(frame), len(frame))  # status, len, snaplen
    sent = slot = index = full = 0
    start = time.time()
    began = time.monotonic()
    while True:
        now = time.monotonic() - began
        if now >= seconds:
            break
        batch = min(int(min(now + 0.01, seconds) * rate) - sent, RING_FRAMES)
        for _ in range(batch):
            at = index * RING_FRAME
            while struct.unpack_from("=Q", ring, at)[0] != 0:  # not yet sent: flush
                full += flush(sock)
            struct.pack_into("=Q", ring, at, TP_STATUS_SEND_REQUEST)
            index = (index + 1) % RING_FRAMES
        if batch > 0:
            full += flush(sock)
            sent += batch
        slot += 1
        left = (slot * 0.01) - (time.monotonic() - began)
        if left > 0:
            time.sleep(left)
    elapsed = time.monotonic() - began
    ring.close()
    sock.close()
    return {"start": start, "end": time.time(), "sent": sent, "seconds": elapsed,
            "rate": sent / elapsed if elapsed else 0.0, "target": rate,
            "queue_full": full}  # fmt: skip


def abuse_main(path: str, clients: int, seed: int) -> dict[str, Any]:
    """Abuse a control socket: garbage, half lines, oversized lines, ``clients`` at once."""
    rng = random.Random(seed)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, clients + 256)), hard))
    start = time.time()
    replies: dict[str, int] = {}

    def talk(payload: bytes, wait_reply: bool) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(60)
            sock.connect(path)
            with contextlib.suppress(OSError):
                sock.sendall(payload)
            if wait_reply:
                try:
                    answer = sock.recv(65536)
                    key = (
                        "error" if b'"ok": false' in answer or b'"ok":false' in answer else "other"
                    )
                except OSError:
                    key = "reset"
                replies[key] = replies.get(key, 0) + 1

    for _ in range(20):
        talk(bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))) + b"\n", True)
    talk(b'{"command": "status"', False)  # a half line, then the client goes
    talk(b'{"command": "sta', False)
    talk(b"{" * 100 + b"\n", True)
    talk(b'{"command": "no-such-thing"}\n', True)
    talk(b"x" * 70000 + b"\n", True)  # longer than any request may be
    opened: list[socket.socket] = []
    refused = 0
    timeout = struct.pack("ll", 30, 0)
    for _ in range(clients):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Blocking (a full backlog makes connect wait, not fail), for 30 s at most.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeout)
        try:
            sock.connect(path)
            sock.sendall(b'{"command": "st')  # half a line, held open
            opened.append(sock)
        except OSError:
            refused += 1
            sock.close()
    # Those beyond the agent's limit are answered "too many connections" and closed.
    busy = 0
    waiting = {sock.fileno(): sock for sock in opened}
    with selectors.DefaultSelector() as selector:
        for sock in opened:
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + 30
        while waiting and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=1.0):
                sock = waiting.pop(key.fd)
                selector.unregister(sock)
                with contextlib.suppress(OSError):
                    if b"too many" in sock.recv(65536):
                        busy += 1
            if len(waiting) <= 16 and busy + len(waiting) >= len(opened):
                break  # the rest hold the agent's slots, with no reply to come
    for sock in opened:
        sock.close()
    return {"start": start, "end": time.time(), "clients": clients, "connected": len(opened),
            "refused": refused, "busy_replies": busy, "replies": replies}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.vm.soakhelpers")
    sub = parser.add_subparsers(dest="command", required=True)
    flood = sub.add_parser("flood")
    flood.add_argument("--rate", type=int, required=True)
    flood.add_argument("--seconds", type=float, required=True)
    flood.add_argument("--seed", type=int, default=0)
    abuse = sub.add_parser("abuse")
    abuse.add_argument("--socket", required=True)
    abuse.add_argument("--clients", type=int, required=True)
    abuse.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "flood":
        result = flood_main(args.rate, args.seconds, args.seed)
    else:
        result = abuse_main(args.socket, args.clients, args.seed)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
