"""The nftables text the agent owns: PFMC marks and FULLNAT SNAT rules (pure rendering)."""

from __future__ import annotations

from hadirector.ipvs import nft
from tests.unit.nftkit import fullnat, pfmc


def test_no_rules_removes_the_table() -> None:
    assert nft.render([]) is None
    assert nft.script([]) == "add table inet hadirector\ndelete table inet hadirector\n"


def test_pfmc_marks_listed_ports_with_the_service_mark() -> None:
    rules = nft.mark_rules([pfmc((443, 80, 80))])
    assert rules == ["ip daddr 192.0.2.100 tcp dport { 80, 443 } meta mark set 0x7"]


def test_pfmc_without_ports_marks_the_protocol() -> None:
    assert nft.mark_rules([pfmc(())]) == ["ip daddr 192.0.2.100 meta l4proto tcp meta mark set 0x7"]


def test_fullnat_ipv6_snat_matches_the_original_destination() -> None:
    rules = nft.snat_rules([fullnat()])
    assert rules == [
        "ip6 daddr 2001:db8:2::11 udp dport 5353 ct original ip6 daddr 2001:db8::100 "
        "snat ip6 to 2001:db8::1"
    ]


def test_script_replaces_the_whole_table_atomically() -> None:
    text = nft.script([pfmc((80,)), fullnat()])
    assert text.startswith("add table inet hadirector\ndelete table inet hadirector\ntable inet")
    assert "chain pfmc_mark" in text and "chain fullnat_snat" in text
    assert "priority mangle" in text and "priority srcnat" in text
