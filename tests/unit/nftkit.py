"""Service stand-ins for the nftables renderer: only the attributes ``nft`` reads."""

from __future__ import annotations

from ipaddress import ip_address
from types import SimpleNamespace as NS


def pfmc(ports: tuple[int, ...]) -> NS:
    return NS(
        fwmark=7,
        match=NS(address=ip_address("192.0.2.100"), protocol="tcp", ports=ports),
        forwarding="nat",
        fullnat_source=None,
        real_servers=(),
        protocol=None,
        address=None,
        port=None,
    )


def fullnat() -> NS:
    return NS(
        fwmark=None,
        match=None,
        forwarding="fullnat",
        fullnat_source=ip_address("2001:db8::1"),
        protocol="udp",
        address=ip_address("2001:db8::100"),
        port=53,
        real_servers=(NS(address=ip_address("2001:db8:2::11"), port=5353),),
    )
