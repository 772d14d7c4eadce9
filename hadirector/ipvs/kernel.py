"""The IPVS kernel adapter: services, destinations, timeouts over generic netlink, from trio.

``IpvsKernel`` owns one generic netlink socket, driven as a trio socket; messages are encoded
and decoded by :mod:`hadirector.ipvs.genl` (no pyroute2 on this path: its sync objects keep
per-thread state that trio's worker threads would re-create and leak). One request is in
flight at a time (a lock); a request cancelled half-way retires the socket, and the next call
opens a fresh one, so a late reply can never be taken for the answer to another request.

Objects are the model's: ``ServiceKey``/``Service`` and ``DestKey``/``Dest`` from
:mod:`hadirector.ipvs.model`; reads return :mod:`hadirector.ipvs.types` states. ``apply()``
takes the reconciler's operations and sends them as one batch (many messages per datagram,
one ACK each), reporting every failure with the object it concerns. Every exchange is
bounded: a reply that does not come within ``REPLY_TIMEOUT_S`` of the last one raises
KernelError (the socket is retired), so a silent kernel never holds the lock.

Destination edits use IPVS_CMD_SET_DEST, which replaces the whole destination: this adapter
always sends the forwarding method, weight, thresholds and tunnel fields, never a subset.

The adapter changes IPVS only when asked; ``flush()`` exists but nothing here calls it. It
must not log (the caller does) and must not block the event loop beyond opening the socket.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno as errno_module
import os
import re
import socket
import struct
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

import trio

from hadirector.errors import DecodeError, IpvsUnavailable, KernelError
from hadirector.ipvs import genl
from hadirector.ipvs.model import Dest, DestKey, Entry, Service, ServiceKey
from hadirector.ipvs.reconcile import (
    AddDest,
    AddService,
    DelDest,
    DelService,
    EditDest,
    Op,
    describe,
    service_text,
)
from hadirector.ipvs.reconcile import EditService as EditServiceOp
from hadirector.ipvs.types import DestState, IpvsInfo, ServiceState, ServiceTraffic, Timeouts

__all__ = ["IpvsKernel", "IpvsOpError", "decoding", "ensure_scheduler"]

RECV_BUFFER_BYTES = 65536
SOCKET_RCVBUF_BYTES = 1 << 20
#: Most messages sent in one datagram by ``apply`` (each ACK is ~36 bytes back).
BATCH_MAX_BYTES = 32768
TABLE_READ_ATTEMPTS = 5  # reads of the whole table before giving up until the next reconcile
#: Longest wait for the kernel's next reply datagram to a request in flight. The kernel
#: answers a netlink request while handling its send (a dump's later parts as they are
#: read): a reply that does not come (lost, or never sent) must not hold the adapter's lock,
#: and with it every later request, forever. The socket is retired and KernelError raised.
REPLY_TIMEOUT_S = 10.0
CLONE_NEWNET = 0x40000000

_ERRNO_HINTS = {
    errno_module.ESRCH: "no such service",
    errno_module.EEXIST: "already exists",
}


class IpvsOpError(KernelError):
    """The kernel refused one IPVS operation.

    ``what`` names the operation and its object (``add dest 10.0.0.1:80 to TCP
    192.0.2.1:80``), ``errno`` is the kernel's error number, ``detail`` a hint and the
    kernel's extended-ack text, ``op`` the reconciler operation (None for other commands).
    """

    def __init__(self, what: str, error: int, detail: str = "", op: Op | None = None) -> None:
        self.what = what
        self.errno = error
        self.detail = detail
        self.op = op
        name = errno_module.errorcode.get(error, str(error))
        hint = _ERRNO_HINTS.get(error, "")
        extra = "; ".join(part for part in (hint, detail) if part)
        suffix = f" ({name}: {extra})" if extra else f" ({name})"
        super().__init__(f"{what}: {os.strerror(error)}{suffix}")


def _encode_op(op: Op) -> tuple[int, bytes]:
    match op:
        case AddService(key=key, service=service):
            return genl.IPVS_CMD_NEW_SERVICE, genl.service_attr(key, service)
        case EditServiceOp(key=key, service=service):
            return genl.IPVS_CMD_SET_SERVICE, genl.service_attr(key, service)
        case DelService(key=key):
            return genl.IPVS_CMD_DEL_SERVICE, genl.service_key_attr(key)
        case AddDest(service_key=skey, dest_key=dkey, dest=dest):
            return genl.IPVS_CMD_NEW_DEST, genl.service_key_attr(skey) + genl.dest_attr(dkey, dest)
        case EditDest(service_key=skey, dest_key=dkey, dest=dest):
            return genl.IPVS_CMD_SET_DEST, genl.service_key_attr(skey) + genl.dest_attr(dkey, dest)
        case DelDest(service_key=skey, dest_key=dkey):
            return genl.IPVS_CMD_DEL_DEST, genl.service_key_attr(skey) + genl.dest_key_attr(dkey)
    raise TypeError(f"not an IPVS operation: {op!r}")


def _op_hint(op: Op, error: int) -> str:
    if isinstance(op, AddService | EditServiceOp) and error == errno_module.ENOENT:
        name = op.service.scheduler
        return f"scheduler {name!r} not found: is module ip_vs_{name} available?"
    if isinstance(op, EditDest | DelDest) and error == errno_module.ENOENT:
        return "no such destination"
    if isinstance(op, AddDest | EditDest) and error == errno_module.ERANGE:
        return "lower connection threshold above the upper one (0 counts as 0 here)"
    if (
        isinstance(op, AddService | EditServiceOp)
        and error == errno_module.EINVAL
        and op.key.family == 6
        and not 1 <= op.service.netmask <= 128
    ):
        return f"IPv6 netmask must be a prefix length 1..128, got {op.service.netmask}"
    return ""


# --- the socket ----------------------------------------------------------------------------------


@contextlib.contextmanager
def decoding(what: str) -> Iterator[None]:
    """Turn a DecodeError from reading a kernel reply into a KernelError naming ``what``."""
    try:
        yield
    except DecodeError as error:
        raise KernelError(f"{what}: undecodable kernel reply: {error}") from error


class _NetlinkFailure(Exception):
    def __init__(self, error: int, detail: str) -> None:
        self.error = error
        self.detail = detail
        super().__init__(f"{os.strerror(error)} {detail}".strip())


@contextlib.contextmanager
def _naming(what: str) -> Iterator[None]:
    """Name ``what`` was asked in what goes wrong: a kernel refusal becomes IpvsOpError,
    any other KernelError (no answer, a failed socket) gets ``what`` in front."""
    try:
        yield
    except _NetlinkFailure as failure:
        raise IpvsOpError(what, failure.error, failure.detail) from None
    except IpvsOpError:
        raise
    except KernelError as error:
        raise KernelError(f"{what}: {error}") from error


def _netns_path(netns: str) -> str:
    return netns if "/" in netns else f"/run/netns/{netns}"


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def _new_netlink_socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, genl.NETLINK_GENERIC)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_RCVBUF_BYTES)
        for option in (genl.NETLINK_CAP_ACK, genl.NETLINK_EXT_ACK):
            with contextlib.suppress(OSError):  # older kernels: plain ACKs only
                sock.setsockopt(genl.SOL_NETLINK, option, 1)
        sock.bind((0, 0))
    except BaseException:
        sock.close()
        raise
    return sock


def _open_socket(netns: str | None) -> socket.socket:
    """A generic netlink socket in ``netns`` (a name under /run/netns or a path), or here.

    A socket belongs to the network namespace it was created in; a short-lived thread
    enters the namespace, creates it and dies, so no thread is left in the wrong one.
    """
    if netns is None:
        return _new_netlink_socket()
    result: list[socket.socket] = []
    failure: list[BaseException] = []

    def worker() -> None:
        try:
            with open(_netns_path(netns)) as target, open("/proc/thread-self/ns/net") as home:
                _setns(target.fileno())
                try:
                    result.append(_new_netlink_socket())
                finally:
                    _setns(home.fileno())
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=worker, name="ipvs-netns-socket")
    thread.start()
    thread.join()
    if failure:
        raise KernelError(f"cannot open IPVS netlink socket in netns {netns}: {failure[0]}")
    return result[0]


class IpvsKernel:
    """IPVS of one network namespace (``netns`` name or path; None = this process's)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self.reply_timeout_s = REPLY_TIMEOUT_S
        self._sock: trio.socket.SocketType | None = None
        self._family_id = 0
        self._seq = 0
        self._lock = trio.Lock()
        # Traffic counters of every service and destination as of the last ``table()``
        # (the reconciler reads the table anyway: metrics come at no extra kernel request).
        self.traffic: dict[ServiceKey, ServiceTraffic] = {}
        # Generic netlink requests sent since open (family lookups included), and how many
        # of them were dumps: the manager logs what each reconcile or edit cost.
        self.requests = 0
        self.dumps = 0

    # -- life cycle --

    async def open(self) -> None:
        """Open the socket and find the IPVS family; IpvsUnavailable if the kernel has none.

        The family lookup makes the kernel load ``ip_vs`` on demand; if that is not
        enough, ``modprobe ip_vs`` is tried once before giving up.
        """
        async with self._lock:
            await self._open_locked()

    async def _reopen_if_retired_locked(self) -> None:
        """A new socket if the last one was retired (a request abandoned or unanswered);
        KernelError if the adapter was never opened. Called with the lock held."""
        if self._sock is None:
            if not self._family_id:
                raise KernelError("IPVS adapter is not open (call open() first)")
            await self._open_locked()

    async def _open_locked(self) -> None:
        """Open the socket and look the family up; every failure is a KernelError."""
        self._close_socket()
        try:
            self._sock = trio.socket.from_stdlib_socket(_open_socket(self.netns))
        except OSError as error:  # EMFILE, ENFILE, ENOBUFS, EPERM...
            raise KernelError(f"cannot open IPVS netlink socket: {error}") from error
        try:
            self._family_id = await self._find_family()
        except BaseException:
            self._close_socket()
            raise

    async def _find_family(self) -> int:
        try:
            return await self._lookup_family()
        except _NetlinkFailure as failure:
            if failure.error != errno_module.ENOENT:
                raise KernelError(f"generic netlink family lookup failed: {failure}") from None
        if not may_load_modules():
            raise IpvsUnavailable(
                f"IPVS is not loaded in this kernel ({os.uname().release}) and this agent may "
                "not load modules (no CAP_SYS_MODULE): load it before the agent starts, in "
                f"the unit: {unit_modprobe('ip_vs')}"
            )
        loaded = await _modprobe("ip_vs")
        try:
            return await self._lookup_family()
        except _NetlinkFailure:
            raise IpvsUnavailable(
                f"IPVS is not available in this kernel ({os.uname().release}): the generic "
                f"netlink family {genl.IPVS_GENL_NAME!r} is not registered and "
                f"'modprobe ip_vs' did not help ({loaded or 'it succeeded'}). "
                "Use a kernel with CONFIG_IP_VS (Debian's linux-image-amd64) and load ip_vs."
            ) from None

    async def aclose(self) -> None:
        self._close_socket()

    def _close_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def __aenter__(self) -> IpvsKernel:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- transport --

    def _next_seq(self) -> int:
        self._seq = (self._seq % 0x7FFFFFFF) + 1
        return self._seq

    async def _exchange(
        self,
        payloads: list[tuple[int, bytes]],
        flags: int,
        *,
        ack_last_only: bool = False,
        quiet_flags: int | None = None,
    ) -> list[tuple[list[dict[int, bytes]], int, str]]:
        """Send (msg_type, body) requests in one datagram; per request: replies, errno, text.

        For a dump the end is NLMSG_DONE; otherwise the ACK (NLMSG_ERROR, errno 0 or not).
        ``ack_last_only`` (writes): only the last request asks for an ACK. The kernel reports
        a failed request whether or not it was asked to, and handles a datagram's requests in
        order, so when the last ACK arrives every earlier error has arrived before it; the
        requests without an error then succeeded. It halves what has to be read back.
        ``quiet_flags`` (with ``ack_last_only``): the flags of every request but the last
        (default: ``flags`` without NLM_F_ACK), e.g. a command followed by a dump.
        """
        sock = self._sock
        if sock is None:
            raise KernelError("IPVS adapter is not open (call open() first)")
        seqs = []
        chunks = []
        if not ack_last_only:
            quiet_flags = flags
        elif quiet_flags is None:
            quiet_flags = flags & ~genl.NLM_F_ACK
        for i, (msg_type, body) in enumerate(payloads):
            seq = self._next_seq()
            seqs.append(seq)
            last = i == len(payloads) - 1
            chunks.append(genl.encode_message(msg_type, flags if last else quiet_flags, seq, body))
        replies: dict[int, list[dict[int, bytes]]] = {seq: [] for seq in seqs}
        status: dict[int, tuple[int, str]] = {}
        completed = False
        self.requests += len(payloads)
        if flags & genl.NLM_F_DUMP == genl.NLM_F_DUMP:
            self.dumps += len(payloads)
        try:
            await sock.send(b"".join(chunks))
            while (seqs[-1] not in status) if ack_last_only else (len(status) < len(seqs)):
                data = b""
                with trio.move_on_after(self.reply_timeout_s):
                    data = await sock.recv(RECV_BUFFER_BYTES)
                if not data:
                    raise KernelError(
                        f"no answer from the kernel to a netlink request in "
                        f"{self.reply_timeout_s:g} s ({len(status)} of {len(seqs)} "
                        "answered): socket retired, the next request opens a new one"
                    )
                for message in genl.parse_messages(data):
                    if message.seq not in replies or message.seq in status:
                        continue  # a late reply to an abandoned request
                    if message.msg_type in (genl.NLMSG_ERROR, genl.NLMSG_DONE):
                        status[message.seq] = genl.parse_error(message)
                    elif message.msg_type != genl.NLMSG_NOOP:
                        replies[message.seq].append(genl.parse_genl(message)[1])
            completed = True
        except OSError as error:  # e.g. ENOBUFS: replies were lost, the socket is retired
            raise KernelError(f"IPVS netlink socket failed: {error}") from error
        except DecodeError as error:
            raise KernelError(f"undecodable netlink reply from the kernel: {error}") from error
        finally:
            if not completed:
                self._close_socket()  # cancelled or failed half-way: never reuse
        return [(replies[seq], *status.get(seq, (0, ""))) for seq in seqs]

    async def _lookup_family(self) -> int:
        body = genl.family_body(genl.IPVS_GENL_NAME)
        flags = genl.NLM_F_REQUEST | genl.NLM_F_ACK
        [(replies, error, detail)] = await self._exchange([(genl.GENL_ID_CTRL, body)], flags)
        if error:
            raise _NetlinkFailure(error, detail)
        if not replies:
            raise KernelError("generic netlink family lookup: the kernel sent no reply")
        try:
            return genl.family_id(replies[0])
        except DecodeError as exc:
            raise KernelError(f"undecodable generic netlink family reply: {exc}") from exc

    async def _request(
        self, cmd: int, attrs: bytes = b"", *, dump: bool = False
    ) -> list[dict[int, bytes]]:
        """One IPVS command; the top-level attributes of each reply message.

        Raises ``_NetlinkFailure`` for a kernel error; callers turn it into a
        KernelError naming the object. Reopens the socket if a previous request was
        abandoned.
        """
        async with self._lock:
            await self._reopen_if_retired_locked()
            flags = genl.NLM_F_REQUEST | (genl.NLM_F_DUMP if dump else genl.NLM_F_ACK)
            body = genl.genl_body(cmd, attrs)
            [(replies, error, detail)] = await self._exchange([(self._family_id, body)], flags)
        if error:
            raise _NetlinkFailure(error, detail)
        return replies

    async def command(
        self, what: str, cmd: int, attrs: bytes = b"", *, dump: bool = False
    ) -> list[dict[int, bytes]]:
        """One IPVS command (``genl.IPVS_CMD_*`` and encoded attributes); the top-level
        attributes of each reply. A kernel refusal raises IpvsOpError naming ``what``."""
        with _naming(what):
            return await self._request(cmd, attrs, dump=dump)

    async def command_then_dump(
        self, what: str, cmd: int, attrs: bytes, dump_cmd: int
    ) -> list[dict[int, bytes]]:
        """Command ``cmd`` without asking for its ACK, then the dump ``dump_cmd``, in one
        datagram; the dump's replies. A refusal of the command raises IpvsOpError.

        For a command whose success the kernel may leave unanswered: it handles a request
        whole while the datagram is sent, and sends an error whether asked or not, except
        EINTR, for which it sends nothing at all (netlink_rcv_skb), even when an ACK was
        asked. The dump after it always ends (NLMSG_DONE) and says what the command did.
        """
        with _naming(what):
            async with self._lock:
                await self._reopen_if_retired_locked()
                payloads = [
                    (self._family_id, genl.genl_body(cmd, attrs)),
                    (self._family_id, genl.genl_body(dump_cmd, b"")),
                ]
                [(_, error, detail), (replies, _, _)] = await self._exchange(
                    payloads,
                    genl.NLM_F_REQUEST | genl.NLM_F_DUMP,
                    ack_last_only=True,
                    quiet_flags=genl.NLM_F_REQUEST,
                )
            if error:
                raise _NetlinkFailure(error, detail)
            return replies

    # -- reads --

    async def info(self) -> IpvsInfo:
        [reply] = await self.command("get IPVS info", genl.IPVS_CMD_GET_INFO)
        with decoding("get IPVS info"):
            return genl.decode_info(reply)

    async def services(self) -> list[ServiceState]:
        """Every virtual service of this namespace, in the kernel's order."""
        replies = await self.command("list services", genl.IPVS_CMD_GET_SERVICE, dump=True)
        with decoding("list services"):
            return [genl.decode_service(reply) for reply in replies]

    async def service(self, key: ServiceKey) -> ServiceState | None:
        """One service, or None if the kernel has no such service."""
        try:
            replies = await self._request(genl.IPVS_CMD_GET_SERVICE, genl.service_key_attr(key))
        except _NetlinkFailure as failure:
            if failure.error == errno_module.ESRCH:
                return None
            raise IpvsOpError(
                f"get service {service_text(key)}", failure.error, failure.detail
            ) from None
        with decoding(f"get service {service_text(key)}"):
            return genl.decode_service(replies[0]) if replies else None

    async def dests(self, key: ServiceKey) -> list[DestState]:
        """Destinations of a service (empty if the service does not exist)."""
        replies = await self.command(
            f"list dests of {service_text(key)}",
            genl.IPVS_CMD_GET_DEST,
            genl.service_key_attr(key),
            dump=True,
        )
        with decoding(f"list dests of {service_text(key)}"):
            return [genl.decode_dest(reply, key.family) for reply in replies]

    async def table(self) -> dict[ServiceKey, Entry]:
        """The whole table in the model's shape, for the reconciler.

        The kernel lists services and each service's destinations in separate dumps, and
        a service deleted in between (``ipvsadm -D``) lists no destinations rather than an
        error: read that way, it would look like a service whose destinations were all
        removed. So the service list is read again after the destinations, and the whole
        read repeated (a few times at most) until the two lists agree.
        """
        services = await self.services()
        for _attempt in range(TABLE_READ_ATTEMPTS):
            table: dict[ServiceKey, Entry] = {}
            traffic: dict[ServiceKey, ServiceTraffic] = {}
            for state in services:
                read = await self.dests(state.key)
                table[state.key] = Entry(state.service, {d.key: d.dest for d in read})
                traffic[state.key] = ServiceTraffic(state.stats, tuple(read))
            again = await self.services()
            if [s.key for s in again] == [s.key for s in services]:
                self.traffic = traffic
                return table
            services = again
        raise KernelError(
            f"the IPVS table kept changing while it was read ({TABLE_READ_ATTEMPTS} attempts)"
        )

    async def get_timeouts(self) -> Timeouts:
        [reply] = await self.command("get timeouts", genl.IPVS_CMD_GET_CONFIG)
        with decoding("get timeouts"):
            return genl.decode_timeouts(reply)

    # -- writes --

    async def set_timeouts(self, timeouts: Timeouts) -> None:
        """Set the tcp / tcpfin / udp timeouts (seconds; 0 leaves one unchanged)."""
        what = f"set timeouts tcp {timeouts.tcp_s} tcpfin {timeouts.tcpfin_s} udp {timeouts.udp_s}"
        await self.command(what, genl.IPVS_CMD_SET_CONFIG, genl.timeouts_attrs(timeouts))

    async def flush(self) -> None:
        """Delete every service and destination of this namespace (only when asked)."""
        await self.command("flush IPVS table", genl.IPVS_CMD_FLUSH)

    async def add_service(self, key: ServiceKey, service: Service) -> None:
        await self._apply_one(AddService(key, service))

    async def edit_service(self, key: ServiceKey, service: Service) -> None:
        """Replace a service's scheduler, flags, timeout, netmask and engine."""
        await self._apply_one(EditServiceOp(key, service))

    async def del_service(self, key: ServiceKey) -> None:
        await self._apply_one(DelService(key))

    async def add_dest(self, key: ServiceKey, dest_key: DestKey, dest: Dest) -> None:
        await self._apply_one(AddDest(key, dest_key, dest))

    async def edit_dest(self, key: ServiceKey, dest_key: DestKey, dest: Dest) -> None:
        """Replace the whole destination (IPVS_CMD_SET_DEST): every field of ``dest`` counts."""
        await self._apply_one(EditDest(key, dest_key, dest))

    async def del_dest(self, key: ServiceKey, dest_key: DestKey) -> None:
        await self._apply_one(DelDest(key, dest_key))

    async def _apply_one(self, op: Op) -> None:
        errors = await self.apply([op])
        if errors:
            raise errors[0]

    async def apply(self, ops: Sequence[Op]) -> list[IpvsOpError]:
        """Run operations in order, batched; return one IpvsOpError per refused operation.

        The kernel handles the messages of a batch one after the other, exactly as if
        they were sent one by one; a refused operation does not stop the next ones.
        """
        try:
            encoded = [_encode_op(op) for op in ops]
        except (ValueError, struct.error) as exc:  # a value the kernel's format cannot hold
            raise KernelError(f"cannot encode IPVS operation: {exc}") from exc
        errors: list[IpvsOpError] = []
        start = 0
        while start < len(ops):
            end = start
            size = 0
            while end < len(ops) and (
                end == start or size + len(encoded[end][1]) < BATCH_MAX_BYTES
            ):
                size += len(encoded[end][1]) + 24
                end += 1
            results = await self._batch(encoded[start:end])
            for op, (error, detail) in zip(ops[start:end], results, strict=True):
                if error:
                    hint = _op_hint(op, error)
                    text = "; ".join(p for p in (hint, detail) if p)
                    errors.append(IpvsOpError(describe(op), error, text, op))
            start = end
        return errors

    async def _batch(self, encoded: list[tuple[int, bytes]]) -> list[tuple[int, str]]:
        async with self._lock:
            await self._reopen_if_retired_locked()
            payloads = [(self._family_id, genl.genl_body(cmd, attrs)) for cmd, attrs in encoded]
            flags = genl.NLM_F_REQUEST | genl.NLM_F_ACK
            results = await self._exchange(payloads, flags, ack_last_only=True)
        return [(error, detail) for _replies, error, detail in results]


# --- modules -------------------------------------------------------------------------------------


def may_load_modules() -> bool:
    """Whether this process may load kernel modules (CAP_SYS_MODULE, i.e. a root agent).

    An agent run as its own user (the shipped unit) may not: the unit loads what it needs
    before start (``ExecStartPre=+...``), and the agent only says which module is missing."""
    from hadirector.security import CAP_SYS_MODULE, has_capability

    return has_capability(CAP_SYS_MODULE)


def unit_modprobe(module: str) -> str:
    """The unit line that loads ``module`` before the agent starts, as root."""
    return f"ExecStartPre=+/sbin/modprobe {module}"


async def _modprobe(module: str) -> str:
    """Run ``modprobe MODULE``; return "" on success, else its complaint."""
    try:
        result = await trio.run_process(
            ["modprobe", module], capture_stdout=True, check=False, capture_stderr=True
        )
    except OSError as error:
        return f"cannot run modprobe: {error}"
    if result.returncode == 0:
        return ""
    text = result.stderr.decode(errors="replace").strip().splitlines()
    return text[-1] if text else f"modprobe exited {result.returncode}"


_SCHEDULER_NAME = re.compile(r"[a-z0-9_]{1,15}")


async def ensure_scheduler(name: str) -> str | None:
    """Make sure IPVS scheduler ``name`` (rr, wlc, mh, ...) is loaded; KernelError if not.

    An agent that may not load modules does not try: it returns a warning naming the unit
    line that would load it (the kernel may still load it on demand when the first service
    using it is added; if it cannot, that service's add fails and says so)."""
    if not _SCHEDULER_NAME.fullmatch(name):
        raise KernelError(f"invalid IPVS scheduler name {name!r}")
    if Path(f"/sys/module/ip_vs_{name}").exists():
        return None
    if not may_load_modules():
        return (
            f"IPVS scheduler module ip_vs_{name} is not loaded and this agent may not load "
            f"modules (no CAP_SYS_MODULE); load it before start, in the unit: "
            f"{unit_modprobe(f'ip_vs_{name}')}"
        )
    complaint = await _modprobe(f"ip_vs_{name}")
    if complaint:
        raise KernelError(
            f"IPVS scheduler {name!r} is not available in this kernel "
            f"({os.uname().release}): modprobe ip_vs_{name}: {complaint}"
        )
    return None
