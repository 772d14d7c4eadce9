"""IPVS model: mapping from configuration objects, netmasks, keys, purity."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hadirector.errors import ConfigError
from hadirector.ipvs import model as m


@dataclass(frozen=True)
class RS:
    address: str
    port: int | None = None
    weight: int = 1
    upper_threshold: int = 0
    lower_threshold: int = 0
    forwarding: str = "nat"


@dataclass(frozen=True)
class VS:
    protocol: str | None = "tcp"
    address: str | None = "192.0.2.10"
    port: int | None = 80
    fwmark: int | None = None
    family: int = 4
    scheduler: str = "wlc"
    scheduler_flags: tuple[str, ...] = ()
    one_packet: bool = False
    forwarding: str = "nat"
    persistence_timeout_s: int = 0
    persistence_netmask: int | None = None
    tunnel_type: str = "ipip"
    tunnel_port: int | None = None
    tunnel_flags: tuple[str, ...] = ()
    fullnat_source: str | None = None
    match: object = None
    real_servers: tuple[RS, ...] = field(default_factory=tuple)


def test_nat_service_from_config() -> None:
    vs = VS(real_servers=(RS("203.0.113.1", weight=3, upper_threshold=100), RS("203.0.113.2")))
    table = m.desired_from_config([vs])
    key = m.ServiceKey(4, m.IPPROTO_TCP, "192.0.2.10", 80)
    assert list(table) == [key]
    entry = table[key]
    assert entry.service == m.Service("wlc", 0, 0, 0xFFFFFFFF)
    assert entry.dests == {
        m.DestKey("203.0.113.1", 80): m.Dest(m.FWD_MASQ, 3, 100, 0),
        m.DestKey("203.0.113.2", 80): m.Dest(m.FWD_MASQ, 1, 0, 0),
    }


def test_persistent_fwmark_ipv6_sh_flags_one_packet() -> None:
    vs = VS(
        protocol=None,
        address=None,
        port=None,
        fwmark=5,
        family=6,
        scheduler="sh",
        scheduler_flags=("sh-fallback", "sh-port"),
        one_packet=True,
        forwarding="dr",
        persistence_timeout_s=600,
        persistence_netmask=64,
        real_servers=(RS("2001:db8:0:0::7", forwarding="dr"),),
    )
    table = m.desired_from_config([vs])
    key = m.ServiceKey.mark(5, 6)
    flags = m.SVC_F_PERSISTENT | m.SVC_F_ONEPACKET | m.SVC_F_SCHED1 | m.SVC_F_SCHED2
    assert table[key].service == m.Service("sh", flags, 600, 64)
    assert table[key].dests == {m.DestKey("2001:db8::7", 0): m.Dest(m.FWD_DROUTE, 1)}


def test_persistence_netmask_ipv4_and_fullnat_and_tunnel() -> None:
    vs = VS(
        persistence_timeout_s=300,
        persistence_netmask=24,
        forwarding="tun",
        tunnel_type="gue",
        tunnel_port=6080,
        tunnel_flags=("csum",),
        real_servers=(
            RS("203.0.113.1", port=8080, forwarding="tun"),
            RS("203.0.113.2", forwarding="fullnat"),
        ),
    )
    entry = m.desired_from_config([vs])[m.ServiceKey.virtual("tcp", "192.0.2.10", 80)]
    assert entry.service.netmask == 0xFFFFFF00
    assert entry.service.flags == m.SVC_F_PERSISTENT
    assert entry.dests[m.DestKey("203.0.113.1", 8080)] == m.Dest(
        m.FWD_TUNNEL, 1, 0, 0, m.TUN_TYPE_GUE, 6080, m.TUN_F_CSUM
    )
    assert entry.dests[m.DestKey("203.0.113.2", 80)] == m.Dest(m.FWD_MASQ, 1)


def test_netmask_ignored_without_persistence() -> None:
    vs = VS(persistence_netmask=24)
    entry = m.desired_from_config([vs])[m.ServiceKey.virtual("tcp", "192.0.2.10", 80)]
    assert entry.service.netmask == 0xFFFFFFFF and not entry.service.persistent


def test_every_collision_reported_at_once() -> None:
    vs = VS(real_servers=(RS("203.0.113.1"), RS("203.0.113.1", port=80)))
    bad = VS(scheduler_flags=("no-such-flag",), port=81)
    with pytest.raises(ConfigError) as info:
        m.desired_from_config([vs, VS(), bad])
    paths = [p.path for p in info.value.problems]
    assert paths == [
        "virtual_server[0].real_server[1]",
        "virtual_server[1]",
        "virtual_server[2]",
    ]


@given(st.integers(0, 32))
def test_ipv4_prefix_mask_round_trip(prefix: int) -> None:
    mask = m.netmask_from_prefix(4, prefix)
    assert int(ipaddress.IPv4Network(f"0.0.0.0/{prefix}").netmask) == mask
    assert m.prefix_from_netmask(4, mask) == prefix


def test_non_contiguous_mask_rejected() -> None:
    with pytest.raises(ValueError):
        m.prefix_from_netmask(4, 0xFF00FF00)
    with pytest.raises(ValueError):
        m.netmask_from_prefix(4, 33)
    assert m.netmask_from_prefix(6, 48) == 48


def test_addresses_have_one_spelling() -> None:
    a = m.ServiceKey.virtual("tcp", "2001:DB8:0::1", 80)
    b = m.ServiceKey.virtual("tcp", "2001:db8::1", 80)
    assert a == b and hash(a) == hash(b)
    assert m.DestKey.of(" 203.0.113.1", 80) == m.DestKey("203.0.113.1", 80)


def test_sort_is_numeric_not_textual() -> None:
    keys = [m.ServiceKey.virtual("tcp", f"192.0.2.{n}", 80) for n in (100, 9, 20)]
    assert [k.address for k in sorted(keys, key=m.ServiceKey.sort_key)] == [
        "192.0.2.9",
        "192.0.2.20",
        "192.0.2.100",
    ]


def test_pure_core_imports_no_io_libraries() -> None:
    code = (
        "import sys\n"
        "import hadirector.ipvs.model, hadirector.ipvs.reconcile\n"
        "import hadirector.ipvs.save, hadirector.ipvs.importer\n"
        "bad = {'trio', 'pyroute2', 'scapy', 'structlog'} & set(sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_desired_from_the_real_loader() -> None:
    load = pytest.importorskip("hadirector.config.load", reason="configuration loader missing")
    config = load.load_text(
        """
[[virtual_server]]
address = "192.0.2.10:443"
forwarding = "fullnat"
fullnat_source = "192.0.2.200"
persistence_timeout = 120
persistence_netmask = "255.255.255.0"
[[virtual_server.real_server]]
address = "203.0.113.1:8443"
weight = 4
upper_threshold = 100
lower_threshold = 80

[[virtual_server]]
fwmark = 9
family = "inet6"
scheduler = "mh"
scheduler_flags = ["mh-port"]
forwarding = "tun"
tunnel_type = "gre"
tunnel_flags = ["csum"]
[[virtual_server.real_server]]
address = "2001:db8:1::9"
[[virtual_server.real_server]]
address = "[2001:db8:1::a]:8080"
forwarding = "nat"
"""
    )
    table = m.desired_from_config(config.virtual_servers)
    web = table[m.ServiceKey.virtual("tcp", "192.0.2.10", 443)]
    assert web.service == m.Service("wlc", m.SVC_F_PERSISTENT, 120, 0xFFFFFF00)
    # fullnat is masquerade in IPVS (the source NAT lives in nftables)
    assert web.dests == {m.DestKey("203.0.113.1", 8443): m.Dest(m.FWD_MASQ, 4, 100, 80)}
    mark = table[m.ServiceKey.mark(9, 6)]
    assert mark.service == m.Service("mh", m.SVC_F_SCHED2, 0, 128)
    assert mark.dests == {
        m.DestKey("2001:db8:1::9", 0): m.Dest(
            m.FWD_TUNNEL, 1, 0, 0, m.TUN_TYPE_GRE, 0, m.TUN_F_CSUM
        ),
        m.DestKey("2001:db8:1::a", 8080): m.Dest(m.FWD_MASQ, 1),
    }


def test_apply_health_quiesces_or_removes_only_the_failed() -> None:
    svc = m.ServiceKey.virtual("tcp", "192.0.2.10", 80)
    other = m.ServiceKey.virtual("tcp", "192.0.2.11", 80)
    rs1, rs2 = m.DestKey("203.0.113.1", 80), m.DestKey("203.0.113.2", 80)
    nat = m.Dest(m.FWD_MASQ, 5, 100, 10)
    table = {
        svc: m.Entry(m.Service(), {rs1: nat, rs2: nat}),
        other: m.Entry(m.Service(), {rs1: nat}),
    }
    quiesced = m.apply_health(table, {(svc, rs1)}, quiesce=True)
    assert quiesced[svc].dests == {rs1: m.Dest(m.FWD_MASQ, 0, 100, 10), rs2: nat}
    assert quiesced[other] == table[other]  # same server, other service: untouched
    removed = m.apply_health(table, {(svc, rs1)}, quiesce=False)
    assert removed[svc].dests == {rs2: nat}
    assert removed[other] == table[other]
    assert m.apply_health(table, set(), quiesce=False) == table
