"""The nftables text the agent owns: PFMC marks and FULLNAT SNAT rules (pure rendering)."""

from __future__ import annotations

from ipaddress import ip_address
from types import SimpleNamespace as NS

from hadirector.ipvs import nft


def _pfmc(ports: tuple[int, ...]) -> NS:
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


def _fullnat() -> NS:
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


def test_no_rules_removes_the_table() -> None:
    assert nft.render([]) is None
    assert nft.script([]) == "add table inet hadirector\ndelete table inet hadirector\n"


def test_pfmc_marks_listed_ports_with_the_service_mark() -> None:
    rules = nft.mark_rules([_pfmc((443, 80, 80))])
    assert rules == ["ip daddr 192.0.2.100 tcp dport { 80, 443 } meta mark set 0x7"]


def test_pfmc_without_ports_marks_the_protocol() -> None:
    assert nft.mark_rules([_pfmc(())]) == [
        "ip daddr 192.0.2.100 meta l4proto tcp meta mark set 0x7"
    ]


def test_fullnat_ipv6_snat_matches_the_original_destination() -> None:
    rules = nft.snat_rules([_fullnat()])
    assert rules == [
        "ip6 daddr 2001:db8:2::11 udp dport 5353 ct original ip6 daddr 2001:db8::100 "
        "snat ip6 to 2001:db8::1"
    ]


def test_script_replaces_the_whole_table_atomically() -> None:
    text = nft.script([_pfmc((80,)), _fullnat()])
    assert text.startswith("add table inet hadirector\ndelete table inet hadirector\ntable inet")
    assert "chain pfmc_mark" in text and "chain fullnat_snat" in text
    assert "priority mangle" in text and "priority srcnat" in text
