"""Generic netlink messages for IPVS: framing, attributes, and the IPVS command set.

Encodes requests and decodes replies as bytes, with the numbers of
``include/uapi/linux/netlink.h``, ``genetlink.h`` and ``ip_vs.h``. It covers what the adapter
needs: family lookup (nlctrl), services, destinations, timeouts, info, flush, and the
connection-sync daemons (IPVS_CMD_*_DAEMON with the nested IPVS_CMD_ATTR_DAEMON), which
pyroute2 does not provide.

Byte orders follow the kernel exactly (and are pinned by the VM tests): ports and the tunnel
port are big-endian; the IPv4 persistence netmask is the mask in network order while the
IPv6 one is a prefix length in host order (both travel in the same u32 attribute); the
sync daemon's multicast port is host order.

Pure: no sockets, no clock, standard library and the pure IPVS model only. Malformed bytes
raise DecodeError.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from hadirector.errors import DecodeError
from hadirector.ipvs.model import SVC_F_HASHED, Dest, DestKey, Service, ServiceKey
from hadirector.ipvs.types import (
    DestState,
    IpvsInfo,
    ServiceState,
    Stats,
    SyncDaemon,
    SyncState,
    Timeouts,
)

# --- netlink / generic netlink -----------------------------------------------------------------

NETLINK_GENERIC = 16
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3

NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200

NLMSGERR_ATTR_MSG = 1

NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2

_NLMSGHDR = struct.Struct("=IHHII")
_GENLMSGHDR = struct.Struct("=BBH")
_NLATTR = struct.Struct("=HH")

# --- IPVS (include/uapi/linux/ip_vs.h) ---------------------------------------------------------

IPVS_GENL_NAME = "IPVS"
IPVS_GENL_VERSION = 1

IPVS_CMD_NEW_SERVICE = 1
IPVS_CMD_SET_SERVICE = 2
IPVS_CMD_DEL_SERVICE = 3
IPVS_CMD_GET_SERVICE = 4
IPVS_CMD_NEW_DEST = 5
IPVS_CMD_SET_DEST = 6
IPVS_CMD_DEL_DEST = 7
IPVS_CMD_GET_DEST = 8
IPVS_CMD_NEW_DAEMON = 9
IPVS_CMD_DEL_DAEMON = 10
IPVS_CMD_GET_DAEMON = 11
IPVS_CMD_SET_CONFIG = 12
IPVS_CMD_GET_CONFIG = 13
IPVS_CMD_SET_INFO = 14
IPVS_CMD_GET_INFO = 15
IPVS_CMD_ZERO = 16
IPVS_CMD_FLUSH = 17

IPVS_CMD_ATTR_SERVICE = 1
IPVS_CMD_ATTR_DEST = 2
IPVS_CMD_ATTR_DAEMON = 3
IPVS_CMD_ATTR_TIMEOUT_TCP = 4
IPVS_CMD_ATTR_TIMEOUT_TCP_FIN = 5
IPVS_CMD_ATTR_TIMEOUT_UDP = 6

IPVS_SVC_ATTR_AF = 1
IPVS_SVC_ATTR_PROTOCOL = 2
IPVS_SVC_ATTR_ADDR = 3
IPVS_SVC_ATTR_PORT = 4
IPVS_SVC_ATTR_FWMARK = 5
IPVS_SVC_ATTR_SCHED_NAME = 6
IPVS_SVC_ATTR_FLAGS = 7
IPVS_SVC_ATTR_TIMEOUT = 8
IPVS_SVC_ATTR_NETMASK = 9
IPVS_SVC_ATTR_STATS = 10
IPVS_SVC_ATTR_PE_NAME = 11
IPVS_SVC_ATTR_STATS64 = 12

IPVS_DEST_ATTR_ADDR = 1
IPVS_DEST_ATTR_PORT = 2
IPVS_DEST_ATTR_FWD_METHOD = 3
IPVS_DEST_ATTR_WEIGHT = 4
IPVS_DEST_ATTR_U_THRESH = 5
IPVS_DEST_ATTR_L_THRESH = 6
IPVS_DEST_ATTR_ACTIVE_CONNS = 7
IPVS_DEST_ATTR_INACT_CONNS = 8
IPVS_DEST_ATTR_PERSIST_CONNS = 9
IPVS_DEST_ATTR_STATS = 10
IPVS_DEST_ATTR_ADDR_FAMILY = 11
IPVS_DEST_ATTR_STATS64 = 12
IPVS_DEST_ATTR_TUN_TYPE = 13
IPVS_DEST_ATTR_TUN_PORT = 14
IPVS_DEST_ATTR_TUN_FLAGS = 15

# The counters of IPVS_*_ATTR_STATS (u32 but the byte counts) and _STATS64 (all u64).
IPVS_STATS_ATTR_CONNS = 1
IPVS_STATS_ATTR_INPKTS = 2
IPVS_STATS_ATTR_OUTPKTS = 3
IPVS_STATS_ATTR_INBYTES = 4
IPVS_STATS_ATTR_OUTBYTES = 5

IPVS_DAEMON_ATTR_STATE = 1
IPVS_DAEMON_ATTR_MCAST_IFN = 2
IPVS_DAEMON_ATTR_SYNC_ID = 3
IPVS_DAEMON_ATTR_SYNC_MAXLEN = 4
IPVS_DAEMON_ATTR_MCAST_GROUP = 5
IPVS_DAEMON_ATTR_MCAST_GROUP6 = 6
IPVS_DAEMON_ATTR_MCAST_PORT = 7
IPVS_DAEMON_ATTR_MCAST_TTL = 8

IPVS_INFO_ATTR_VERSION = 1
IPVS_INFO_ATTR_CONN_TAB_SIZE = 2

IP_VS_CONN_F_FWD_MASK = 0x7
IP_VS_IFNAME_MAXLEN = 16
IP_VS_SCHEDNAME_MAXLEN = 16

AF_INET = 2
AF_INET6 = 10
_AF_BY_VERSION = {4: AF_INET, 6: AF_INET6}
_VERSION_BY_AF = {AF_INET: 4, AF_INET6: 6}


# --- attributes --------------------------------------------------------------------------------


def nla(attr_type: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    length = _NLATTR.size + len(payload)
    if length > 0xFFFF:
        raise ValueError(f"attribute {attr_type} too long ({length} bytes)")
    return _NLATTR.pack(length, attr_type) + payload + b"\0" * (-length % 4)


def nla_u8(attr_type: int, value: int) -> bytes:
    return nla(attr_type, struct.pack("=B", value))


def nla_u16(attr_type: int, value: int) -> bytes:
    return nla(attr_type, struct.pack("=H", value))


def nla_be16(attr_type: int, value: int) -> bytes:
    return nla(attr_type, struct.pack("!H", value))


def nla_u32(attr_type: int, value: int) -> bytes:
    return nla(attr_type, struct.pack("=I", value))


def nla_string(attr_type: int, value: str) -> bytes:
    """A NUL-terminated string attribute (NLA_NUL_STRING)."""
    return nla(attr_type, value.encode() + b"\0")


def nla_nested(attr_type: int, children: Iterable[bytes]) -> bytes:
    return nla(attr_type, b"".join(children))


def parse_attrs(data: bytes) -> dict[int, bytes]:
    """Attribute type (flags masked off) -> payload; a repeated type keeps the last one."""
    attrs: dict[int, bytes] = {}
    offset = 0
    while offset + _NLATTR.size <= len(data):
        length, attr_type = _NLATTR.unpack_from(data, offset)
        if length < _NLATTR.size or offset + length > len(data):
            raise DecodeError("netlink-attr", f"bad attribute length {length} at {offset}")
        attrs[attr_type & NLA_TYPE_MASK] = data[offset + _NLATTR.size : offset + length]
        offset += (length + 3) & ~3
    return attrs


def _u8(attrs: dict[int, bytes], attr_type: int, default: int = 0) -> int:
    raw = attrs.get(attr_type)
    return raw[0] if raw else default


def _u16(attrs: dict[int, bytes], attr_type: int, default: int = 0) -> int:
    raw = attrs.get(attr_type)
    return int(struct.unpack_from("=H", raw)[0]) if raw is not None and len(raw) >= 2 else default


def _be16(attrs: dict[int, bytes], attr_type: int, default: int = 0) -> int:
    raw = attrs.get(attr_type)
    return int(struct.unpack_from("!H", raw)[0]) if raw is not None and len(raw) >= 2 else default


def _u32(attrs: dict[int, bytes], attr_type: int, default: int = 0) -> int:
    raw = attrs.get(attr_type)
    return int(struct.unpack_from("=I", raw)[0]) if raw is not None and len(raw) >= 4 else default


def _u64(attrs: dict[int, bytes], attr_type: int, default: int = 0) -> int:
    raw = attrs.get(attr_type)
    return int(struct.unpack_from("=Q", raw)[0]) if raw is not None and len(raw) >= 8 else default


def _counter(attrs: dict[int, bytes], attr_type: int) -> int:
    """A counter of either stats attribute: 8 bytes are a u64, 4 a u32."""
    raw = attrs.get(attr_type, b"")
    return _u64(attrs, attr_type) if len(raw) >= 8 else _u32(attrs, attr_type)


def decode_stats(attrs: dict[int, bytes], stats64: int, stats32: int) -> Stats | None:
    """The traffic counters of a service or destination (the 64-bit form when the kernel
    sends it), None when it sends neither."""
    raw = attrs.get(stats64, attrs.get(stats32))
    if raw is None:
        return None
    counters = parse_attrs(raw)
    return Stats(
        connections=_counter(counters, IPVS_STATS_ATTR_CONNS),
        packets_in=_counter(counters, IPVS_STATS_ATTR_INPKTS),
        packets_out=_counter(counters, IPVS_STATS_ATTR_OUTPKTS),
        bytes_in=_counter(counters, IPVS_STATS_ATTR_INBYTES),
        bytes_out=_counter(counters, IPVS_STATS_ATTR_OUTBYTES),
    )


def _string(attrs: dict[int, bytes], attr_type: int) -> str:
    raw = attrs.get(attr_type, b"")
    return raw.split(b"\0", 1)[0].decode(errors="replace")


# --- netlink messages --------------------------------------------------------------------------


@dataclass(frozen=True)
class NetlinkMessage:
    """One netlink message: header fields and the payload after the 16-byte header."""

    msg_type: int
    flags: int
    seq: int
    pid: int
    payload: bytes


def encode_message(msg_type: int, flags: int, seq: int, payload: bytes) -> bytes:
    """A netlink message with header; port id 0 (the kernel fills it in)."""
    length = _NLMSGHDR.size + len(payload)
    return _NLMSGHDR.pack(length, msg_type, flags, seq, 0) + payload + b"\0" * (-length % 4)


def parse_messages(data: bytes) -> list[NetlinkMessage]:
    """Split one datagram into netlink messages."""
    messages = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, msg_type, flags, seq, pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            raise DecodeError("netlink-message", f"bad message length {length} at {offset}")
        payload = data[offset + _NLMSGHDR.size : offset + length]
        messages.append(NetlinkMessage(msg_type, flags, seq, pid, payload))
        offset += (length + 3) & ~3
    return messages


def parse_error(message: NetlinkMessage) -> tuple[int, str]:
    """(errno, extended-ack text) of an NLMSG_ERROR or NLMSG_DONE; errno 0 is an ACK."""
    if len(message.payload) < 4:
        if message.msg_type == NLMSG_DONE:
            return 0, ""
        raise DecodeError("netlink-error", "error message without an error code")
    (error,) = struct.unpack_from("=i", message.payload)
    text = ""
    if message.msg_type == NLMSG_ERROR and message.flags & NLM_F_ACK_TLVS:
        # errno, then the request's header (and its payload unless capped), then TLVs.
        offset = 4 + _NLMSGHDR.size
        if not message.flags & NLM_F_CAPPED and len(message.payload) >= offset:
            (inner_length,) = struct.unpack_from("=I", message.payload, 4)
            offset = 4 + ((inner_length + 3) & ~3)
        tlvs = parse_attrs(message.payload[offset:])
        text = _string(tlvs, NLMSGERR_ATTR_MSG)
    return -error, text


def genl_body(cmd: int, attrs: bytes) -> bytes:
    """The payload of a generic netlink request (version 1): genl header and attributes."""
    return _GENLMSGHDR.pack(cmd, IPVS_GENL_VERSION, 0) + attrs


def genl_request(family_id: int, cmd: int, attrs: bytes, seq: int, flags: int) -> bytes:
    """A whole generic netlink request message for ``family_id``."""
    return encode_message(family_id, flags, seq, genl_body(cmd, attrs))


def parse_genl(message: NetlinkMessage) -> tuple[int, dict[int, bytes]]:
    """(command, top-level attributes) of a generic netlink message."""
    if len(message.payload) < _GENLMSGHDR.size:
        raise DecodeError("genl-message", "payload shorter than the genl header")
    cmd, _version, _reserved = _GENLMSGHDR.unpack_from(message.payload)
    return cmd, parse_attrs(message.payload[_GENLMSGHDR.size :])


def family_body(name: str) -> bytes:
    """The payload of CTRL_CMD_GETFAMILY (send to GENL_ID_CTRL) for a family name."""
    return genl_body(CTRL_CMD_GETFAMILY, nla_string(CTRL_ATTR_FAMILY_NAME, name))


def family_id(attrs: dict[int, bytes]) -> int:
    if CTRL_ATTR_FAMILY_ID not in attrs:
        raise DecodeError("genl-family", "reply without CTRL_ATTR_FAMILY_ID")
    return _u16(attrs, CTRL_ATTR_FAMILY_ID)


# --- addresses ---------------------------------------------------------------------------------


def af_of(version: int) -> int:
    """Kernel address family (AF_INET/AF_INET6) for an IP version (4/6)."""
    try:
        return _AF_BY_VERSION[version]
    except KeyError:
        raise ValueError(f"IP version must be 4 or 6, got {version}") from None


def version_of(af: int) -> int:
    """IP version (4/6) of a kernel address family."""
    try:
        return _VERSION_BY_AF[af]
    except KeyError:
        raise DecodeError("ipvs-family", f"unknown address family {af}") from None


@functools.lru_cache(maxsize=65536)
def _packed(address: str) -> bytes:
    return ipaddress.ip_address(address).packed


def _address(raw: bytes, version: int) -> str:
    size = 4 if version == 4 else 16
    if len(raw) < size:
        raise DecodeError("ipvs-address", f"{len(raw)} bytes for an IPv{version} address")
    if version == 4:
        return ipaddress.IPv4Address(raw[:4]).compressed
    return ipaddress.IPv6Address(raw[:16]).compressed


# --- services ----------------------------------------------------------------------------------


def _service_key_attrs(key: ServiceKey) -> list[bytes]:
    attrs = [nla_u16(IPVS_SVC_ATTR_AF, af_of(key.family))]
    if key.fwmark:
        attrs.append(nla_u32(IPVS_SVC_ATTR_FWMARK, key.fwmark))
    else:
        attrs += [
            nla_u16(IPVS_SVC_ATTR_PROTOCOL, key.protocol),
            nla(IPVS_SVC_ATTR_ADDR, _packed(key.address)),
            nla_be16(IPVS_SVC_ATTR_PORT, key.port),
        ]
    return attrs


def _netmask_bytes(family: int, netmask: int) -> bytes:
    # IPv4: the mask itself in network order; IPv6: a prefix length, host order.
    return struct.pack("!I" if family == 4 else "=I", netmask)


def _netmask_value(family: int, raw: bytes) -> int:
    if len(raw) < 4:
        raise DecodeError("ipvs-netmask", f"{len(raw)} bytes")
    return int(struct.unpack_from("!I" if family == 4 else "=I", raw)[0])


@functools.lru_cache(maxsize=4096)
def service_key_attr(key: ServiceKey) -> bytes:
    """IPVS_CMD_ATTR_SERVICE naming a service (for delete, get, and dest commands)."""
    return nla_nested(IPVS_CMD_ATTR_SERVICE, _service_key_attrs(key))


def service_attr(key: ServiceKey, service: Service) -> bytes:
    """IPVS_CMD_ATTR_SERVICE with every attribute (for add and edit: edit replaces them)."""
    if len(service.scheduler.encode()) >= IP_VS_SCHEDNAME_MAXLEN:
        raise ValueError(f"scheduler name too long: {service.scheduler!r}")
    flags = service.flags & ~SVC_F_HASHED
    attrs = [
        *_service_key_attrs(key),
        nla_string(IPVS_SVC_ATTR_SCHED_NAME, service.scheduler),
        nla(IPVS_SVC_ATTR_FLAGS, struct.pack("=II", flags, 0xFFFFFFFF)),
        nla_u32(IPVS_SVC_ATTR_TIMEOUT, service.timeout_s),
        nla(IPVS_SVC_ATTR_NETMASK, _netmask_bytes(key.family, service.netmask)),
    ]
    if service.pe_name:
        attrs.append(nla_string(IPVS_SVC_ATTR_PE_NAME, service.pe_name))
    return nla_nested(IPVS_CMD_ATTR_SERVICE, attrs)


def decode_service(top: dict[int, bytes]) -> ServiceState:
    """The service of a GET_SERVICE reply (top-level attributes of the message)."""
    if IPVS_CMD_ATTR_SERVICE not in top:
        raise DecodeError("ipvs-service", "reply without IPVS_CMD_ATTR_SERVICE")
    attrs = parse_attrs(top[IPVS_CMD_ATTR_SERVICE])
    family = version_of(_u16(attrs, IPVS_SVC_ATTR_AF))
    fwmark = _u32(attrs, IPVS_SVC_ATTR_FWMARK)
    if fwmark:
        key = ServiceKey.mark(fwmark, family)
    else:
        key = ServiceKey(
            family,
            _u16(attrs, IPVS_SVC_ATTR_PROTOCOL),
            _address(attrs.get(IPVS_SVC_ATTR_ADDR, b""), family),
            _be16(attrs, IPVS_SVC_ATTR_PORT),
            0,
        )
    flags_raw = attrs.get(IPVS_SVC_ATTR_FLAGS, b"\0" * 8)
    flags = int(struct.unpack_from("=I", flags_raw)[0]) if len(flags_raw) >= 4 else 0
    service = Service(
        scheduler=_string(attrs, IPVS_SVC_ATTR_SCHED_NAME),
        flags=flags,
        timeout_s=_u32(attrs, IPVS_SVC_ATTR_TIMEOUT),
        netmask=_netmask_value(family, attrs.get(IPVS_SVC_ATTR_NETMASK, b"\0" * 4)),
        pe_name=_string(attrs, IPVS_SVC_ATTR_PE_NAME),
    )
    return ServiceState(
        key, service, decode_stats(attrs, IPVS_SVC_ATTR_STATS64, IPVS_SVC_ATTR_STATS)
    )


# --- destinations ------------------------------------------------------------------------------


def dest_key_attr(dest_key: DestKey) -> bytes:
    """IPVS_CMD_ATTR_DEST naming a destination (for delete)."""
    return nla_nested(
        IPVS_CMD_ATTR_DEST,
        [
            nla(IPVS_DEST_ATTR_ADDR, _packed(dest_key.address)),
            nla_be16(IPVS_DEST_ATTR_PORT, dest_key.port),
            nla_u16(IPVS_DEST_ATTR_ADDR_FAMILY, af_of(dest_key.family)),
        ],
    )


def dest_attr(dest_key: DestKey, dest: Dest) -> bytes:
    """IPVS_CMD_ATTR_DEST with every attribute: "set" replaces the whole destination."""
    return nla_nested(
        IPVS_CMD_ATTR_DEST,
        [
            nla(IPVS_DEST_ATTR_ADDR, _packed(dest_key.address)),
            nla_be16(IPVS_DEST_ATTR_PORT, dest_key.port),
            nla_u16(IPVS_DEST_ATTR_ADDR_FAMILY, af_of(dest_key.family)),
            nla_u32(IPVS_DEST_ATTR_FWD_METHOD, dest.forwarding),
            nla_u32(IPVS_DEST_ATTR_WEIGHT, dest.weight),
            nla_u32(IPVS_DEST_ATTR_U_THRESH, dest.upper_threshold),
            nla_u32(IPVS_DEST_ATTR_L_THRESH, dest.lower_threshold),
            nla_u8(IPVS_DEST_ATTR_TUN_TYPE, dest.tunnel_type),
            nla_be16(IPVS_DEST_ATTR_TUN_PORT, dest.tunnel_port),
            nla_u16(IPVS_DEST_ATTR_TUN_FLAGS, dest.tunnel_flags),
        ],
    )


def decode_dest(top: dict[int, bytes], service_family: int) -> DestState:
    """The destination of a GET_DEST reply; its family defaults to the service's."""
    if IPVS_CMD_ATTR_DEST not in top:
        raise DecodeError("ipvs-dest", "reply without IPVS_CMD_ATTR_DEST")
    attrs = parse_attrs(top[IPVS_CMD_ATTR_DEST])
    af = _u16(attrs, IPVS_DEST_ATTR_ADDR_FAMILY)
    family = version_of(af) if af else service_family
    key = DestKey(
        _address(attrs.get(IPVS_DEST_ATTR_ADDR, b""), family), _be16(attrs, IPVS_DEST_ATTR_PORT)
    )
    dest = Dest(
        forwarding=_u32(attrs, IPVS_DEST_ATTR_FWD_METHOD) & IP_VS_CONN_F_FWD_MASK,
        weight=_u32(attrs, IPVS_DEST_ATTR_WEIGHT),
        upper_threshold=_u32(attrs, IPVS_DEST_ATTR_U_THRESH),
        lower_threshold=_u32(attrs, IPVS_DEST_ATTR_L_THRESH),
        tunnel_type=_u8(attrs, IPVS_DEST_ATTR_TUN_TYPE),
        tunnel_port=_be16(attrs, IPVS_DEST_ATTR_TUN_PORT),
        tunnel_flags=_u16(attrs, IPVS_DEST_ATTR_TUN_FLAGS),
    )
    return DestState(
        key,
        dest,
        active_conns=_u32(attrs, IPVS_DEST_ATTR_ACTIVE_CONNS),
        inactive_conns=_u32(attrs, IPVS_DEST_ATTR_INACT_CONNS),
        persistent_conns=_u32(attrs, IPVS_DEST_ATTR_PERSIST_CONNS),
        stats=decode_stats(attrs, IPVS_DEST_ATTR_STATS64, IPVS_DEST_ATTR_STATS),
    )


# --- timeouts and info -------------------------------------------------------------------------


def timeouts_attrs(timeouts: Timeouts) -> bytes:
    """Top-level attributes of IPVS_CMD_SET_CONFIG."""
    return b"".join(
        [
            nla_u32(IPVS_CMD_ATTR_TIMEOUT_TCP, timeouts.tcp_s),
            nla_u32(IPVS_CMD_ATTR_TIMEOUT_TCP_FIN, timeouts.tcpfin_s),
            nla_u32(IPVS_CMD_ATTR_TIMEOUT_UDP, timeouts.udp_s),
        ]
    )


def decode_timeouts(top: dict[int, bytes]) -> Timeouts:
    return Timeouts(
        tcp_s=_u32(top, IPVS_CMD_ATTR_TIMEOUT_TCP),
        tcpfin_s=_u32(top, IPVS_CMD_ATTR_TIMEOUT_TCP_FIN),
        udp_s=_u32(top, IPVS_CMD_ATTR_TIMEOUT_UDP),
    )


def decode_info(top: dict[int, bytes]) -> IpvsInfo:
    version = _u32(top, IPVS_INFO_ATTR_VERSION)
    return IpvsInfo(
        version=((version >> 16) & 0xFF, (version >> 8) & 0xFF, version & 0xFF),
        conn_tab_size=_u32(top, IPVS_INFO_ATTR_CONN_TAB_SIZE),
    )


# --- sync daemons ------------------------------------------------------------------------------


def daemon_attr(
    state: SyncState,
    ifname: str = "",
    syncid: int | None = None,
    *,
    sync_maxlen: int = 0,
    mcast_group: str = "",
    mcast_port: int = 0,
    mcast_ttl: int = 0,
) -> bytes:
    """IPVS_CMD_ATTR_DAEMON for NEW_DAEMON (all given fields) or DEL_DAEMON (state only).

    Zero/empty optional fields are left out, so the kernel uses its defaults (group
    224.0.0.81, port 8848, TTL 1, message size from the interface MTU).
    """
    attrs = [nla_u32(IPVS_DAEMON_ATTR_STATE, int(state))]
    if ifname:
        if len(ifname.encode()) >= IP_VS_IFNAME_MAXLEN:
            raise ValueError(f"interface name too long: {ifname!r}")
        attrs.append(nla_string(IPVS_DAEMON_ATTR_MCAST_IFN, ifname))
    if syncid is not None:
        attrs.append(nla_u32(IPVS_DAEMON_ATTR_SYNC_ID, syncid))
    if sync_maxlen:
        attrs.append(nla_u16(IPVS_DAEMON_ATTR_SYNC_MAXLEN, sync_maxlen))
    if mcast_group:
        group = ipaddress.ip_address(mcast_group)
        kind = IPVS_DAEMON_ATTR_MCAST_GROUP if group.version == 4 else IPVS_DAEMON_ATTR_MCAST_GROUP6
        attrs.append(nla(kind, group.packed))
    if mcast_port:
        attrs.append(nla_u16(IPVS_DAEMON_ATTR_MCAST_PORT, mcast_port))
    if mcast_ttl:
        attrs.append(nla_u8(IPVS_DAEMON_ATTR_MCAST_TTL, mcast_ttl))
    return nla_nested(IPVS_CMD_ATTR_DAEMON, attrs)


def decode_daemon(top: dict[int, bytes]) -> SyncDaemon:
    """One daemon of a GET_DAEMON dump."""
    if IPVS_CMD_ATTR_DAEMON not in top:
        raise DecodeError("ipvs-daemon", "reply without IPVS_CMD_ATTR_DAEMON")
    attrs = parse_attrs(top[IPVS_CMD_ATTR_DAEMON])
    state_value = _u32(attrs, IPVS_DAEMON_ATTR_STATE)
    try:
        state = SyncState(state_value)
    except ValueError:
        raise DecodeError("ipvs-daemon", f"unknown daemon state {state_value}") from None
    if IPVS_DAEMON_ATTR_MCAST_GROUP6 in attrs:
        group = _address(attrs[IPVS_DAEMON_ATTR_MCAST_GROUP6], 6)
    elif IPVS_DAEMON_ATTR_MCAST_GROUP in attrs:
        group = _address(attrs[IPVS_DAEMON_ATTR_MCAST_GROUP], 4)
    else:
        group = ""
    return SyncDaemon(
        state=state,
        ifname=_string(attrs, IPVS_DAEMON_ATTR_MCAST_IFN),
        syncid=_u32(attrs, IPVS_DAEMON_ATTR_SYNC_ID),
        sync_maxlen=_u16(attrs, IPVS_DAEMON_ATTR_SYNC_MAXLEN),
        mcast_group=group,
        mcast_port=_u16(attrs, IPVS_DAEMON_ATTR_MCAST_PORT),
        mcast_ttl=_u8(attrs, IPVS_DAEMON_ATTR_MCAST_TTL),
    )
