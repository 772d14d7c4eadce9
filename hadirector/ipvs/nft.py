"""The nftables rules the agent owns next to IPVS: fwmark marking (PFMC) and FULLNAT's SNAT.

All of them live in one table, ``inet hadirector``, replaced atomically as a whole on every
change (``nft -f`` of "add table; delete table; table {...}"), and deleted when no rule is
needed. Nothing outside that table is ever touched.

- A firewall-mark service with a ``match`` gets a prerouting (mangle priority) rule setting
  the mark on the listed traffic: ``ip daddr A tcp dport {80, 443} meta mark set 0x1``.
- A ``fullnat`` service gets, per real server (and for its sorry server, unless that one
  has a forwarding of its own), a postrouting (srcnat) rule that rewrites the
  source of the connections IPVS forwarded to that server to the director address
  (``fullnat_source``), so the real server answers the director and needs no route back.
  IPVS keeps conntrack entries for them when ``net.ipv4.vs.conntrack = 1`` (set by the
  agent); the rule matches the original destination (the VIP), so the director's own
  traffic to the real server (health checks) keeps its source.

``render`` is pure; ``apply`` runs ``nft`` and is the only I/O here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

TABLE = "hadirector"


def _family_kw(address: Any) -> str:
    return "ip" if ipaddress.ip_address(address).version == 4 else "ip6"


def _ports(ports: Iterable[int]) -> str:
    values = sorted(set(ports))
    if len(values) == 1:
        return str(values[0])
    return "{ " + ", ".join(str(p) for p in values) + " }"


def mark_rules(virtual_servers: Iterable[Any]) -> list[str]:
    """Prerouting rules that mark PFMC traffic, one per fwmark service with a match."""
    rules = []
    for vs in virtual_servers:
        match = getattr(vs, "match", None)
        if vs.fwmark is None or match is None:
            continue
        parts = [f"{_family_kw(match.address)} daddr {match.address}"]
        if match.ports:
            parts.append(f"{match.protocol} dport {_ports(match.ports)}")
        else:
            parts.append(f"meta l4proto {match.protocol}")
        parts.append(f"meta mark set {vs.fwmark:#x}")
        rules.append(" ".join(parts))
    return rules


def snat_rules(virtual_servers: Iterable[Any]) -> list[str]:
    """Postrouting SNAT rules for FULLNAT services, one per real server."""
    rules = []
    for vs in virtual_servers:
        if vs.forwarding != "fullnat" or vs.fullnat_source is None:
            continue
        fam = _family_kw(vs.fullnat_source)
        servers = list(vs.real_servers)
        sorry = getattr(vs, "sorry_server", None)
        if sorry is not None and sorry.forwarding == "fullnat":
            servers.append(sorry)  # its own forwarding unless given: source NAT too
        for rs in servers:
            parts = [f"{fam} daddr {rs.address}"]
            port = rs.port if rs.port is not None else vs.port
            if vs.protocol is not None and port is not None:
                parts.append(f"{vs.protocol} dport {port}")
            elif vs.protocol is not None:
                parts.append(f"meta l4proto {vs.protocol}")
            if vs.address is not None:
                parts.append(f"ct original {fam} daddr {vs.address}")
            else:
                # fwmark service: the original traffic carried the mark.
                parts.append(f"meta mark {vs.fwmark:#x}")
            parts.append(f"snat {fam} to {vs.fullnat_source}")
            rules.append(" ".join(parts))
    return rules


def render(virtual_servers: Iterable[Any]) -> str | None:
    """The whole ``inet hadirector`` table, or None when no rule is needed."""
    services = list(virtual_servers)
    marks = mark_rules(services)
    snats = snat_rules(services)
    if not marks and not snats:
        return None
    lines = [f"table inet {TABLE} {{"]
    if marks:
        lines += [
            "  chain pfmc_mark {",
            "    type filter hook prerouting priority mangle; policy accept;",
            *(f"    {r}" for r in marks),
            "  }",
        ]
    if snats:
        lines += [
            "  chain fullnat_snat {",
            "    type nat hook postrouting priority srcnat; policy accept;",
            *(f"    {r}" for r in snats),
            "  }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def script(virtual_servers: Iterable[Any]) -> str:
    """An ``nft -f`` script replacing (or removing) the table atomically."""
    body = render(virtual_servers)
    # "add table" first so that "delete table" never fails on a missing table.
    head = f"add table inet {TABLE}\ndelete table inet {TABLE}\n"
    return head + (body or "")


async def apply(virtual_servers: Iterable[Any]) -> str | None:
    """Run the script through ``nft``; return None on success, the error text otherwise."""
    import trio

    text = script(virtual_servers)
    try:
        result = await trio.run_process(
            ["nft", "-f", "-"],
            stdin=text.encode(),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    except OSError as exc:
        return f"cannot run nft: {exc}"
    if result.returncode != 0:
        return result.stderr.decode(errors="replace").strip() or f"nft exit {result.returncode}"
    return None
