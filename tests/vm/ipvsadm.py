"""An independent reading of the IPVS table: parse ipvsadm's output into the model's types.

ipvsadm talks to the kernel through libnl/its own code, not through our codec, so a table
that both read the same way was written as intended. ``ipvsadm -S`` leaves out connection
thresholds, so those come from ``ipvsadm -Ln --thresholds`` (see ``merge_thresholds``).
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import replace

from hadirector.ipvs import model
from hadirector.ipvs.model import Dest, DestKey, Entry, Service, ServiceKey

_PROTOCOLS = {"-t": model.IPPROTO_TCP, "-u": model.IPPROTO_UDP, "--sctp-service": 132}
_METHODS = {"-m": model.FWD_MASQ, "-g": model.FWD_DROUTE, "-i": model.FWD_TUNNEL}
_TUN_TYPES = {"ipip": 0, "gue": 1, "gre": 2}
_SWITCHES = {"-m", "-g", "-i", "-6", "-o", "--tun-nocsum", "--tun-csum", "--tun-remcsum"}


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return ipaddress.ip_address(host.strip("[]")).compressed, int(port)


def _service_key(flag: str, value: str, family: int) -> ServiceKey:
    if flag == "-f":
        return ServiceKey.mark(int(value), family)
    address, port = _host_port(value)
    return ServiceKey(ipaddress.ip_address(address).version, _PROTOCOLS[flag], address, port)


def parse_save(text: str) -> dict[ServiceKey, Entry]:
    """``ipvsadm -S -n`` output -> table (flags without HASHED, as ``Service.effective``)."""
    services: dict[ServiceKey, Service] = {}
    dests: dict[ServiceKey, dict[DestKey, Dest]] = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if not words:
            continue
        family = 6 if "-6" in words else 4
        key = None
        options: dict[str, str] = {}
        switches: set[str] = set()
        index = 1
        while index < len(words):
            word = words[index]
            if word in ("-t", "-u", "-f", "--sctp-service"):
                key = _service_key(word, words[index + 1], family)
                index += 2
            elif word in (
                "-m",
                "-g",
                "-i",
                "-6",
                "-o",
                "--tun-nocsum",
                "--tun-csum",
                "--tun-remcsum",
            ):
                switches.add(word)
                index += 1
            else:
                options[word] = words[index + 1] if index + 1 < len(words) else ""
                index += 2
        assert key is not None, line
        if words[0] == "-A":
            flags = 0
            timeout_s = 0
            if "-p" in options:
                flags |= model.SVC_F_PERSISTENT
                timeout_s = int(options["-p"])
            if "-o" in switches:
                flags |= model.SVC_F_ONEPACKET
            for name in filter(None, options.get("-b", "").split(",")):
                flags |= model.SCHED_FLAG_BITS[name]
            mask = options.get("-M")
            if mask is None:
                netmask = model.default_netmask(key.family)
            elif key.family == 4:
                netmask = int(ipaddress.IPv4Address(mask))
            else:
                netmask = int(mask)
            services[key] = Service(
                options.get("-s", "wlc"), flags, timeout_s, netmask, options.get("--pe", "")
            )
            dests.setdefault(key, {})
        elif words[0] == "-a":
            address, port = _host_port(options["-r"])
            method = next((_METHODS[s] for s in switches if s in _METHODS), model.FWD_DROUTE)
            tun_flags = 0
            if "--tun-csum" in switches:
                tun_flags = model.TUN_F_CSUM
            if "--tun-remcsum" in switches:
                tun_flags = model.TUN_F_REMCSUM
            dests.setdefault(key, {})[DestKey(address, port)] = Dest(
                forwarding=method,
                weight=int(options.get("-w", "1")),
                upper_threshold=int(options.get("-x", "0")),
                lower_threshold=int(options.get("-y", "0")),
                tunnel_type=_TUN_TYPES[options.get("--tun-type", "ipip")],
                tunnel_port=int(options.get("--tun-port", "0")),
                tunnel_flags=tun_flags,
            )
    return {key: Entry(services[key], dests.get(key, {})) for key in services}


_LIST_PROTOCOLS = {"TCP": model.IPPROTO_TCP, "UDP": model.IPPROTO_UDP, "SCTP": model.IPPROTO_SCTP}


def merge_thresholds(table: dict[ServiceKey, Entry], listing: str) -> dict[ServiceKey, Entry]:
    """``table`` with each dest's thresholds from ``ipvsadm -Ln --thresholds`` output."""
    found: dict[tuple[ServiceKey, DestKey], tuple[int, int]] = {}
    key: ServiceKey | None = None
    for line in listing.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] in _LIST_PROTOCOLS:
            address, port = _host_port(words[1])
            family = ipaddress.ip_address(address).version
            key = ServiceKey(family, _LIST_PROTOCOLS[words[0]], address, port)
        elif words[0] == "FWM":
            key = ServiceKey.mark(int(words[1]), 6 if "IPv6" in words else 4)
        elif words[0] == "->" and key is not None and ":" in words[1]:
            if words[1] == "RemoteAddress:Port":
                continue
            address, port = _host_port(words[1])
            found[(key, DestKey(address, port))] = (int(words[2]), int(words[3]))
    merged = {}
    for skey, entry in table.items():
        dests = {}
        for dkey, dest in entry.dests.items():
            upper, lower = found[(skey, dkey)]
            dests[dkey] = replace(dest, upper_threshold=upper, lower_threshold=lower)
        merged[skey] = Entry(entry.service, dests)
    return merged
