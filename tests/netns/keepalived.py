"""keepalived (Debian's 2.2.x) as a real VRRP peer in a lab namespace.

``keepalived_conf()`` writes a VRRP-only configuration from implementation-neutral
``InstanceSpec``s; ``KeepalivedDirector`` runs it in a director namespace as
``keepalived -n -l -D -G -P -R -f CONF -p PID -r VRRP_PID`` (own pid files, so two can run
on one host) and follows its state through ``vrrp_notify_fifo``: keepalived writes one
line per transition, in order, "INSTANCE <name> <STATE> <priority>" (and "GROUP ..." for
sync groups), which a thread here reads and time-stamps.

Facts about keepalived 2.2.7 this relies on (see ``man keepalived.conf``):
- ``state MASTER`` still starts in BACKUP and claims master after its own Master_Down
  timer; ``nopreempt`` requires ``state BACKUP``. So every instance is written with
  ``state BACKUP`` unless its priority is 255 (address owner).
- The only VRRPv3/IPv4 checksum switch is ``old_unicast_checksum`` (per instance, unicast
  only): the pseudo-header then names the multicast group 224.0.0.18 instead of the
  unicast peer (seen on the wire; test_lab pins it). There is no option to leave the
  pseudo-header out (FRR's v2-style checksum), for multicast or unicast.
- VRRPv2 adverts carry whole seconds; IPv6 instances are always v3.
- On SIGTERM it sends priority 0, removes its VIPs and exits; on SIGKILL the VIPs stay.

This module must not start keepalived outside a lab namespace, nor read or write
/etc/keepalived.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from .lab import DIRECTORS, InstanceSpec, Lab, ProcessDirector, default_instances

KEEPALIVED = "keepalived"
_FIFO_STOP = b"__lab_reader_stop__\n"
STATES = frozenset({"BACKUP", "MASTER", "FAULT", "STOP", "DELETED"})
# keepalived 2.2.7's messages for an advert it drops (vrrp.c, receive path).
KEEPALIVED_COMPLAINTS = re.compile(
    r"Invalid VRRPv\d checksum|invalid TTL|TTL/HL \d+ not in range|wrong version"
    r"|received a \d+ auth|invalid passwd|interval mismatch|Invalid packet type"
    r"|unexpected ip number count|ip_tot_len mismatch|Expected \w+icast packet"
    r"|expected \d+ VIPs|not present in MASTER advert|not a unicast peer|vrrp packet too"
    r"|discarding \w+icast packet|checksum to old version|Invalid auth type",
    re.IGNORECASE,
)


def available() -> bool:
    """Whether a keepalived binary is on PATH."""
    return shutil.which(KEEPALIVED) is not None


def _advert(advert_s: float, version: int) -> str:
    if version == 2:
        if advert_s < 1 or advert_s != int(advert_s):
            raise ValueError("VRRPv2 advert intervals are whole seconds")
        return str(int(advert_s))
    centis = round(advert_s * 100)
    if not 1 <= centis <= 4095:
        raise ValueError("VRRPv3 advert intervals are 0.01..40.95 s")
    return f"{centis / 100:g}"


def keepalived_conf(
    instances: Sequence[InstanceSpec],
    *,
    router_id: str,
    notify_fifo: Path | None = None,
    sync_group: str | None = None,
    old_unicast_checksum: bool = False,
    global_extra: Sequence[str] = (),
    instance_extra: Sequence[str] = (),
) -> str:
    """The text of a VRRP-only keepalived.conf for ``instances``."""
    lines = ["global_defs {", f"    router_id {router_id}", "    script_user root"]
    if instances:
        lines.append(f"    vrrp_version {instances[0].version}")
    if notify_fifo is not None:
        lines.append(f"    vrrp_notify_fifo {notify_fifo}")
    lines += [f"    {extra}" for extra in global_extra]
    lines.append("}")
    if sync_group:
        lines += [f"vrrp_sync_group {sync_group} {{", "    group {"]
        lines += [f"        {spec.name}" for spec in instances]
        lines += ["    }", "}"]
    for spec in instances:
        lines += [
            f"vrrp_instance {spec.name} {{",
            f"    state {'MASTER' if spec.priority == 255 else 'BACKUP'}",
            f"    interface {spec.interface}",
            f"    virtual_router_id {spec.vrid}",
            f"    priority {spec.priority}",
            f"    advert_int {_advert(spec.advert_s, spec.version)}",
            f"    version {spec.version}",
        ]
        if not spec.preempt:
            lines.append("    nopreempt")
        if spec.unicast_src:
            lines.append(f"    unicast_src_ip {spec.unicast_src}")
        if spec.unicast_peers:
            lines.append("    unicast_peer {")
            lines += [f"        {peer}" for peer in spec.unicast_peers]
            lines.append("    }")
            if old_unicast_checksum or spec.old_unicast_checksum:
                lines.append("    old_unicast_checksum")
        if spec.auth_pass is not None:
            if spec.version != 2:
                raise ValueError("authentication exists only in VRRPv2")
            lines += [
                "    authentication {",
                "        auth_type PASS",
                f"        auth_pass {spec.auth_pass}",
                "    }",
            ]
        lines.append("    virtual_ipaddress {")
        lines += [f"        {vip} dev {spec.interface}" for vip in spec.vips]
        lines.append("    }")
        lines += [f"    {extra}" for extra in instance_extra]
        lines.append("}")
    return "\n".join(lines) + "\n"


class KeepalivedDirector(ProcessDirector):
    """keepalived running VRRP in one lab director namespace (a ``Director``).

    By default one instance per LAN (VIP .100, vrid 51+lan), multicast; pass
    ``instances`` for anything else. ``sync_group`` puts all instances in one
    vrrp_sync_group.
    """

    def __init__(
        self,
        lab: Lab,
        node: str,
        priority: int = 100,
        advert_s: float = 1.0,
        version: int = 3,
        *,
        instances: Sequence[InstanceSpec] | None = None,
        unicast: bool = False,
        preempt: bool = True,
        family: int = 4,
        auth_pass: str | None = None,
        sync_group: str | None = None,
        old_unicast_checksum: bool = False,
        global_extra: Sequence[str] = (),
        instance_extra: Sequence[str] = (),
    ) -> None:
        if node not in DIRECTORS:
            raise ValueError(f"keepalived runs in a director namespace, not {node!r}")
        if instances is None:
            instances = default_instances(
                lab,
                node,
                priority,
                advert_s,
                version,
                unicast=unicast,
                preempt=preempt,
                family=family,
                auth_pass=auth_pass,
            )
        super().__init__(lab, node, instances)
        self.sync_group = sync_group
        self.old_unicast_checksum = old_unicast_checksum
        self.global_extra = list(global_extra)
        self.instance_extra = list(instance_extra)
        self.conf_path = self.dir / "keepalived.conf"
        self.fifo_path = self.dir / "notify.fifo"
        self.log_path = self.dir / "keepalived.log"
        self.group_states: dict[str, str] = {}
        self.events: list[tuple[float, str, str]] = []
        self._fifo_fd: int | None = None
        self._fifo_thread: threading.Thread | None = None

    def prepare(self) -> None:
        for pid_file in ("keepalived.pid", "vrrp.pid"):
            (self.dir / pid_file).unlink(missing_ok=True)
        self.conf_path.write_text(
            keepalived_conf(
                self.instances,
                router_id=f"lab-{self.node}",
                notify_fifo=self.fifo_path,
                sync_group=self.sync_group,
                old_unicast_checksum=self.old_unicast_checksum,
                global_extra=self.global_extra,
                instance_extra=self.instance_extra,
            )
        )
        self._open_fifo()

    def argv(self) -> list[str]:
        return [
            KEEPALIVED, "-n", "-l", "-D", "-G", "-P", "-R",
            "-f", str(self.conf_path),
            "-p", str(self.dir / "keepalived.pid"),
            "-r", str(self.dir / "vrrp.pid"),
        ]  # fmt: skip

    def started(self, proc: subprocess.Popen[bytes]) -> None:
        stdout = proc.stdout
        assert stdout is not None
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed by the copying thread

        def copy() -> None:
            with log:
                for line in iter(stdout.readline, b""):
                    log.write(line)
                    log.flush()

        thread = threading.Thread(target=copy, name=f"klog-{self.node}", daemon=True)
        thread.start()
        self._readers.append(thread)

    def log(self) -> str:
        """keepalived's console output so far (for failure messages)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- notify FIFO -----------------------------------------------------------------------

    def _open_fifo(self) -> None:
        if self._fifo_fd is not None:
            return
        if not self.fifo_path.exists():
            os.mkfifo(self.fifo_path, 0o600)
        # O_RDWR: the open never blocks and keepalived restarts never give us EOF.
        fd = os.open(self.fifo_path, os.O_RDWR)
        self._fifo_fd = fd
        self.lab.on_close(self.close_fifo)
        self._fifo_thread = threading.Thread(
            target=self._read_fifo, args=(fd,), name=f"fifo-{self.node}", daemon=True
        )
        self._fifo_thread.start()

    def _read_fifo(self, fd: int) -> None:
        with open(fd, "rb", buffering=0, closefd=True) as fifo:
            pending = b""
            while True:
                chunk = fifo.read(4096)
                if not chunk:
                    return
                now = time.monotonic()
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    if raw + b"\n" == _FIFO_STOP:
                        return
                    self._fifo_line(raw.decode(errors="replace"), now)

    def _fifo_line(self, line: str, now: float) -> None:
        words = line.split()
        if len(words) < 3:
            return
        # keepalived 2.2 quotes the name: INSTANCE "VI_1" MASTER 150
        kind, name, state = words[0], words[1].strip('"'), words[2]
        if kind == "INSTANCE" and state in STATES:
            self.report(name, state, now)
        elif kind == "INSTANCE":  # an event, not a state: MASTER_RX_LOWER_PRI, *_PRIORITY
            self.events.append((now, name, state))
        elif kind == "GROUP":
            self.group_states[name] = state

    def close_fifo(self) -> None:
        """Stop the FIFO reader (the lab's temp dir removal does the rest)."""
        if self._fifo_fd is not None and self._fifo_thread is not None:
            if self._fifo_thread.is_alive():
                with contextlib.suppress(OSError):  # ENXIO: the reader is already gone
                    fd = os.open(self.fifo_path, os.O_WRONLY | os.O_NONBLOCK)
                    try:
                        os.write(fd, _FIFO_STOP)
                    finally:
                        os.close(fd)
                self._fifo_thread.join(timeout=5)
            self._fifo_fd = None
            self._fifo_thread = None


def keepalived_factory(
    lab: Lab, node: str, priority: int, advert_s: float, version: int
) -> KeepalivedDirector:
    """The bench's factory signature for keepalived."""
    return KeepalivedDirector(lab, node, priority, advert_s, version)


__all__ = [
    "KEEPALIVED_COMPLAINTS",
    "KeepalivedDirector",
    "available",
    "keepalived_conf",
    "keepalived_factory",
]
