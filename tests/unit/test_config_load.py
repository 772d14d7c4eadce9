"""Strict configuration loading: every key valid and invalid, exact key paths, every
problem at once, the reference examples load as they are.

Documents are written as Python dicts and turned into TOML text (``to_toml``) so every
case goes through the real parser and ``load_text``.
"""

from __future__ import annotations

import ipaddress
import math
from pathlib import Path
from typing import Any

import pytest

from hadirector.config.load import load_path, load_text
from hadirector.config.schema import Config, ServiceKey
from hadirector.errors import ConfigError
from tests.unit.configkit import DROP, fw, inst, inst6, to_toml, vs

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- builders


def load(doc: dict[str, Any]) -> Config:
    return load_text(to_toml(doc))


def problems(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(doc)
    found = [str(p) for p in info.value.problems]
    assert str(info.value) == "\n".join(found)
    return found


def one_instance(**over: Any) -> list[str]:
    return problems({"vrrp_instance": [inst(**over)]})


# --------------------------------------------------------------------------- examples


EXAMPLE = """\
[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
vrid = 51
priority = 150
advert_interval = 1.0        # seconds; v3 accepts 0.01 steps
version = 3
preempt = true
virtual_addresses = ["10.0.0.50/24"]
# optional: unicast_peers = ["10.0.0.12"], track_interfaces = ["eth1"],
#           notify = "/etc/hadirector/notify.sh", preempt_delay = 0.0
[[sync_group]]
name = "G1"
instances = ["VI_1"]
"""

IPVS_EXAMPLE = """\
[[virtual_server]]
address = "192.168.98.128:80"
protocol = "tcp"
scheduler = "wlc"
forwarding = "nat"
persistence_timeout = 0
persistence_netmask = "255.255.255.255"
  [[virtual_server.real_server]]
  address = "172.25.136.11:80"
  weight = 1
  [[virtual_server.real_server]]
  address = "172.25.136.12:80"
  weight = 3
"""


def test_reference_example_loads_as_is() -> None:
    config = load_text(EXAMPLE)
    (vi,) = config.vrrp_instances
    assert (vi.name, vi.interface, vi.vrid, vi.priority) == ("VI_1", "eth0", 51, 150)
    assert vi.advert_interval_cs == 100
    assert vi.version == 3
    assert vi.preempt is True
    assert vi.family == 4
    (vip,) = vi.virtual_addresses
    assert vip.interface == ipaddress.ip_interface("10.0.0.50/24")
    assert vip.dev == "eth0"
    assert vip.label is None
    (group,) = config.sync_groups
    assert (group.name, group.instances) == ("G1", ("VI_1",))
    assert config.virtual_servers == ()


def test_ipvs_example_loads_as_is() -> None:
    config = load_text(IPVS_EXAMPLE)
    assert config.vrrp_instances == ()
    (service,) = config.virtual_servers
    assert service.key == ServiceKey.virtual("tcp", "192.168.98.128", 80)
    assert str(service.key) == "tcp 192.168.98.128:80"
    assert (service.protocol, service.address, service.port, service.fwmark) == (
        "tcp",
        ipaddress.ip_address("192.168.98.128"),
        80,
        None,
    )
    assert (service.scheduler, service.forwarding) == ("wlc", "nat")
    assert service.persistence_timeout_s == 0
    assert service.persistence_netmask == 32
    assert service.persistence_netmask_dotted == "255.255.255.255"
    assert [(str(r.address), r.port, r.weight, r.forwarding) for r in service.real_servers] == [
        ("172.25.136.11", 80, 1, "nat"),
        ("172.25.136.12", 80, 3, "nat"),
    ]


@pytest.mark.parametrize("name", ["director.toml", "director-a.toml", "director-b.toml"])
def test_shipped_configs_load(name: str) -> None:
    config = load_path(REPO / "conf" / name)
    assert config.vrrp_instances
    assert config.virtual_servers


def test_pair_configs_hold_two_synced_instances_and_a_nat_service() -> None:
    a = load_path(REPO / "conf" / "director-a.toml")
    b = load_path(REPO / "conf" / "director-b.toml")
    for config in (a, b):
        assert [i.name for i in config.vrrp_instances] == ["VI_1", "VI_2"]
        (group,) = config.sync_groups
        assert set(group.instances) == {"VI_1", "VI_2"}
        (service,) = config.virtual_servers
        assert service.forwarding == "nat"
        assert len(service.real_servers) == 2
    # Same routers, different priorities: the pair can elect a master.
    for ia, ib in zip(a.vrrp_instances, b.vrrp_instances, strict=True):
        assert (ia.interface, ia.vrid, ia.family) == (ib.interface, ib.vrid, ib.family)
        assert ia.virtual_addresses == ib.virtual_addresses
        assert ia.priority != ib.priority
    assert a.virtual_servers == b.virtual_servers


def test_empty_document_is_a_valid_empty_config() -> None:
    assert load_text("") == Config()


# --------------------------------------------------------------------------- defaults


def test_instance_defaults_are_resolved() -> None:
    vi = load({"vrrp_instance": [inst()]}).vrrp_instances[0]
    assert vi.advert_interval_cs == 100
    assert vi.version == 3
    assert vi.preempt is True
    assert vi.preempt_delay_s == 0.0
    assert vi.unicast_src is None
    assert vi.unicast_peers == ()
    assert vi.accept_from == ()
    assert vi.unicast is False
    assert vi.max_adopted_interval_cs == 400  # 4 x 1 s
    assert vi.v3_checksum_pseudo_header is True
    assert (vi.auth_type, vi.auth_pass, vi.hmac_key_file) == ("none", None, None)
    assert vi.garp_master_repeat == 5
    assert vi.garp_interval_s == 0.001
    assert vi.garp_master_delay_s == 5.0
    assert vi.garp_master_refresh_s == 0.0
    assert vi.handover_hold_s == 0.1
    assert (vi.preempt_delay_cs, vi.handover_hold_cs) == (0, 10)
    assert (vi.track_interfaces, vi.track_scripts, vi.track_files) == ((), (), ())
    assert vi.notify.notify is None and vi.notify.master is None


def test_global_and_ipvs_defaults() -> None:
    config = load({})
    g = config.global_
    assert g.router_id is None
    assert g.log_level == "info"
    assert g.control_socket == "/run/hadirector/hadirector.sock"
    assert g.notify_timeout_s == 10.0
    assert g.state_dir == "/run/hadirector"
    i = config.ipvs
    assert i.own_whole_table is False
    assert (i.timeout_tcp_s, i.timeout_tcpfin_s, i.timeout_udp_s) == (None, None, None)
    assert i.reconcile_interval_s == 10.0


def test_state_dir_defaults_to_the_control_sockets_directory() -> None:
    """hadirector@NAME: a file that gives only its socket keeps its drained servers there."""
    socket = {"control_socket": "/run/hadirector/web/hadirector.sock"}
    g = load({"global": socket}).global_
    assert g.state_dir == "/run/hadirector/web"
    g = load({"global": {**socket, "state_dir": "/var/lib/hadirector"}}).global_
    assert g.state_dir == "/var/lib/hadirector"
    assert load({"global": {"log_level": "debug"}}).global_.state_dir == "/run/hadirector"


def test_virtual_server_defaults() -> None:
    service = load({"virtual_server": [vs()]}).virtual_servers[0]
    assert service.protocol == "tcp"
    assert service.family == 4
    assert service.scheduler == "wlc"
    assert service.scheduler_flags == ()
    assert service.one_packet is False
    assert service.forwarding == "nat"
    assert service.persistence_timeout_s == 0
    assert service.persistence_netmask == 32
    assert service.tunnel_type == "ipip"
    assert (service.tunnel_port, service.tunnel_flags) == (None, ())
    assert (service.fullnat_source, service.match) == (None, None)
    rs = service.real_servers[0]
    assert (rs.weight, rs.upper_threshold, rs.lower_threshold, rs.forwarding) == (1, 0, 0, "nat")


# --------------------------------------------------------------------------- valid values


VALID_INSTANCE = [
    ({"advert_interval": 0.01}, "advert_interval_cs", 1),
    ({"advert_interval": 40.95}, "advert_interval_cs", 4095),
    ({"advert_interval": 0.35}, "advert_interval_cs", 35),
    ({"advert_interval": 3}, "advert_interval_cs", 300),
    ({"advert_interval": 20.0}, "max_adopted_interval_cs", 4095),  # 4 x 20 s capped
    ({"advert_interval": 0.5}, "max_adopted_interval_cs", 200),
    ({"version": 2, "advert_interval": 3}, "advert_interval_cs", 300),
    ({"version": 2, "advert_interval": 2.0}, "max_adopted_interval_cs", 200),
    ({"version": 2, "advert_interval": 255}, "advert_interval_cs", 25500),
    ({"max_adopted_interval": 1.0}, "max_adopted_interval_cs", 100),
    ({"vrid": 1, "priority": 255}, "priority", 255),
    ({"vrid": 255, "priority": 1}, "vrid", 255),
    ({"preempt": False}, "preempt", False),
    ({"preempt_delay": 300}, "preempt_delay_s", 300.0),
    ({"preempt_delay": 1000.0}, "preempt_delay_s", 1000.0),
    ({"preempt_delay": 2.5}, "preempt_delay_cs", 250),
    ({"handover_hold": 0.25}, "handover_hold_cs", 25),
    ({"unicast_src": "192.0.2.11"}, "unicast_src", ipaddress.ip_address("192.0.2.11")),
    (
        {"unicast_peers": ["192.0.2.12", "192.0.2.13"]},
        "unicast_peers",
        (ipaddress.ip_address("192.0.2.12"), ipaddress.ip_address("192.0.2.13")),
    ),
    # Unicast mode accepts only the peers unless accept_from says otherwise.
    ({"unicast_peers": ["192.0.2.12"]}, "accept_from", (ipaddress.ip_address("192.0.2.12"),)),
    (
        {"unicast_peers": ["192.0.2.12"], "accept_from": ["192.0.2.14"]},
        "accept_from",
        (ipaddress.ip_address("192.0.2.14"),),
    ),
    ({"accept_from": ["192.0.2.12"]}, "accept_from", (ipaddress.ip_address("192.0.2.12"),)),
    ({"v3_checksum_pseudo_header": False}, "v3_checksum_pseudo_header", False),
    ({"version": 2, "auth_type": "pass", "auth_pass": "secret12"}, "auth_pass", "secret12"),
    ({"version": 2, "auth_type": "pass", "auth_pass": "s"}, "auth_type", "pass"),
    ({"hmac_key_file": "/etc/hadirector/vrrp.key"}, "hmac_key_file", "/etc/hadirector/vrrp.key"),
    ({"garp_master_repeat": 1}, "garp_master_repeat", 1),
    ({"garp_master_repeat": 100}, "garp_master_repeat", 100),
    ({"garp_interval": 0}, "garp_interval_s", 0.0),
    ({"garp_interval": 0.02}, "garp_interval_s", 0.02),
    ({"garp_master_delay": 0}, "garp_master_delay_s", 0.0),
    ({"garp_master_refresh": 60}, "garp_master_refresh_s", 60.0),
    ({"handover_hold": 0}, "handover_hold_s", 0.0),
    ({"handover_hold": 5}, "handover_hold_s", 5.0),
    ({"notify": "/etc/n.sh 'a b' c"}, "notify", ("/etc/n.sh", "a b", "c")),
]


@pytest.mark.parametrize(("over", "attr", "expected"), VALID_INSTANCE)
def test_valid_instance_value(over: dict[str, Any], attr: str, expected: Any) -> None:
    vi = load({"vrrp_instance": [inst(**over)]}).vrrp_instances[0]
    actual = getattr(vi, attr)
    if attr == "notify":
        actual = actual.notify
    assert actual == expected


def test_notify_keys_string_and_argv_forms() -> None:
    vi = load(
        {
            "vrrp_instance": [
                inst(
                    notify="/usr/local/bin/notify --all",
                    notify_master=["/usr/bin/logger", "-t", "ha", "became master"],
                    notify_backup='/bin/sh -c "echo backup"',
                    notify_fault="/bin/true",
                    notify_stop=["/bin/true"],
                )
            ]
        }
    ).vrrp_instances[0]
    assert vi.notify.notify == ("/usr/local/bin/notify", "--all")
    assert vi.notify.master == ("/usr/bin/logger", "-t", "ha", "became master")
    assert vi.notify.backup == ("/bin/sh", "-c", "echo backup")
    assert vi.notify.fault == ("/bin/true",)
    assert vi.notify.stop == ("/bin/true",)


def test_virtual_address_forms() -> None:
    vi = load(
        {
            "vrrp_instance": [
                inst(
                    virtual_addresses=[
                        "192.0.2.50",
                        "192.0.2.51/24",
                        {"address": "192.0.2.52/25", "dev": "eth1", "label": "eth1:vip"},
                        {"address": "192.0.2.53"},
                    ]
                )
            ]
        }
    ).vrrp_instances[0]
    got = [(str(v.interface), v.dev, v.label) for v in vi.virtual_addresses]
    assert got == [
        ("192.0.2.50/32", "eth0", None),
        ("192.0.2.51/24", "eth0", None),
        ("192.0.2.52/25", "eth1", "eth1:vip"),
        ("192.0.2.53/32", "eth0", None),
    ]
    assert vi.primary_vip == ipaddress.ip_address("192.0.2.50")


def test_ipv6_instance() -> None:
    vi = load(
        {
            "vrrp_instance": [
                inst6(
                    virtual_addresses=["2001:db8::50/64", "2001:db8::51"],
                    unicast_peers=["fe80::2"],
                )
            ]
        }
    ).vrrp_instances[0]
    assert vi.family == 6
    assert [str(v.interface) for v in vi.virtual_addresses] == [
        "2001:db8::50/64",
        "2001:db8::51/128",
    ]
    assert vi.accept_from == (ipaddress.ip_address("fe80::2"),)


def test_same_vrid_on_one_interface_for_both_families_is_allowed() -> None:
    config = load({"vrrp_instance": [inst(), inst6(name="VI_6")]})
    assert [i.family for i in config.vrrp_instances] == [4, 6]


def test_tracking_resolves_weights() -> None:
    config = load(
        {
            "track_script": [
                {"name": "chk", "script": "/usr/bin/check", "weight": -30},
                {"name": "chk2", "script": ["/usr/bin/check", "--two"]},
            ],
            "track_file": [{"name": "maint", "path": "/run/maint"}],
            "vrrp_instance": [
                inst(
                    track_interfaces=["eth1", {"name": "eth2", "weight": -50}],
                    track_scripts=["chk", {"name": "chk2", "weight": 20}],
                    track_files=[{"name": "maint", "weight": -5}],
                ),
                inst(name="VI_2", vrid=52, virtual_addresses=["192.0.2.60"], track_files=["maint"]),
            ],
        }
    )
    one, two = config.vrrp_instances
    assert [(r.name, r.weight) for r in one.track_interfaces] == [("eth1", 0), ("eth2", -50)]
    assert [(r.name, r.weight) for r in one.track_scripts] == [("chk", -30), ("chk2", 20)]
    assert [(r.name, r.weight) for r in one.track_files] == [("maint", -5)]
    assert [(r.name, r.weight) for r in two.track_files] == [("maint", 1)]
    chk, chk2 = config.track_scripts
    assert (chk.script, chk.interval_s, chk.timeout_s, chk.rise, chk.fall) == (
        ("/usr/bin/check",),
        1.0,
        1.0,
        1,
        1,
    )
    assert chk2.script == ("/usr/bin/check", "--two")
    assert config.track_files[0].weight == 1


def test_track_script_timeout_defaults_to_interval() -> None:
    config = load(
        {"track_script": [{"name": "c", "script": "/bin/true", "interval": 5, "rise": 3}]}
    )
    script = config.track_scripts[0]
    assert (script.interval_s, script.timeout_s, script.rise, script.fall) == (5.0, 5.0, 3, 1)


def test_global_and_ipvs_values() -> None:
    config = load(
        {
            "global": {
                "router_id": "lvs-a",
                "log_level": "debug",
                "control_socket": "/run/x.sock",
                "notify_timeout": 2,
                "state_dir": "/var/lib/hadirector",
            },
            "ipvs": {
                "own_whole_table": True,
                "timeout_tcp": 900,
                "timeout_tcpfin": 0,
                "timeout_udp": 2**31 - 1,
                "reconcile_interval": 0.5,
            },
        }
    )
    g = config.global_
    assert (g.router_id, g.log_level, g.control_socket, g.notify_timeout_s, g.state_dir) == (
        "lvs-a",
        "debug",
        "/run/x.sock",
        2.0,
        "/var/lib/hadirector",
    )
    i = config.ipvs
    assert (i.own_whole_table, i.timeout_tcp_s, i.timeout_tcpfin_s, i.timeout_udp_s) == (
        True,
        900,
        0,
        2**31 - 1,
    )
    assert i.reconcile_interval_s == 0.5


def test_sync_group_with_notify() -> None:
    config = load(
        {
            "vrrp_instance": [inst(), inst(name="VI_2", vrid=52, virtual_addresses=["192.0.2.9"])],
            "sync_group": [
                {"name": "G1", "instances": ["VI_2", "VI_1"], "notify_fault": "/bin/fault x"}
            ],
        }
    )
    (group,) = config.sync_groups
    assert group.instances == ("VI_2", "VI_1")
    assert group.notify.fault == ("/bin/fault", "x")
    assert config.group_of("VI_1") is group
    assert config.instance("VI_2") is config.vrrp_instances[1]


def test_virtual_server_full_options() -> None:
    config = load(
        {
            "virtual_server": [
                vs(
                    address="[2001:db8::10]:443",
                    protocol="sctp",
                    scheduler="mh",
                    scheduler_flags=["mh-fallback", "mh-port"],
                    forwarding="tun",
                    tunnel_type="gue",
                    tunnel_port=6080,
                    tunnel_flags=["remcsum"],
                    persistence_timeout=300,
                    persistence_netmask=64,
                    real_server=[
                        {"address": "[2001:db8:1::11]:443", "weight": 2**31 - 1},
                        {
                            "address": "[2001:db8:1::12]:8443",
                            "forwarding": "nat",
                            "upper_threshold": 100,
                            "lower_threshold": 100,
                            "weight": 0,
                        },
                    ],
                ),
                vs(
                    address="198.51.100.10:53",
                    protocol="udp",
                    one_packet=True,
                    forwarding="fullnat",
                    fullnat_source="198.51.100.2",
                    real_server=[{"address": "203.0.113.11:53", "forwarding": "dr"}],
                ),
            ]
        }
    )
    six, udp = config.virtual_servers
    assert six.family == 6
    assert str(six.key) == "sctp [2001:db8::10]:443"
    assert six.scheduler_flags == ("mh-fallback", "mh-port")
    assert (six.tunnel_type, six.tunnel_port, six.tunnel_flags) == ("gue", 6080, ("remcsum",))
    assert (six.persistence_timeout_s, six.persistence_netmask) == (300, 64)
    assert six.persistent is True
    assert six.persistence_netmask_dotted is None
    assert [(r.port, r.weight, r.forwarding) for r in six.real_servers] == [
        (443, 2**31 - 1, "tun"),
        (8443, 0, "nat"),
    ]
    assert (six.real_servers[1].upper_threshold, six.real_servers[1].lower_threshold) == (100, 100)
    assert udp.one_packet is True
    assert udp.fullnat_source == ipaddress.ip_address("198.51.100.2")
    assert udp.real_servers[0].forwarding == "dr"


def test_fwmark_services() -> None:
    config = load(
        {
            "virtual_server": [
                fw(
                    persistence_timeout=60,
                    persistence_netmask="255.255.255.0",
                    match={"address": "198.51.100.10", "ports": [25, 465]},
                    real_server=[{"address": "203.0.113.11"}, {"address": "203.0.113.12:25"}],
                ),
                fw(
                    family="inet6",
                    one_packet=True,
                    match={"address": "2001:db8::10", "protocol": "udp"},
                    real_server=[{"address": "2001:db8:1::11"}, {"address": "[2001:db8:1::12]"}],
                ),
            ]
        }
    )
    four, six = config.virtual_servers
    assert (four.protocol, four.address, four.port, four.fwmark, four.family) == (
        None,
        None,
        None,
        7,
        4,
    )
    assert (four.key, six.key) == (ServiceKey.mark(7, 4), ServiceKey.mark(7, 6))
    assert four.key != six.key
    assert four.persistence_netmask == 24
    assert four.persistence_netmask_dotted == "255.255.255.0"
    assert four.match is not None
    assert (str(four.match.address), four.match.protocol, four.match.ports) == (
        "198.51.100.10",
        "tcp",
        (25, 465),
    )
    assert [(str(r.address), r.port) for r in four.real_servers] == [
        ("203.0.113.11", None),
        ("203.0.113.12", 25),
    ]
    assert six.family == 6
    assert six.persistence_netmask == 128
    assert six.match is not None and six.match.ports == ()
    assert [r.port for r in six.real_servers] == [None, None]


def test_port_zero_service_with_persistence() -> None:
    config = load(
        {
            "virtual_server": [
                vs(
                    address="198.51.100.10:0",
                    persistence_timeout=60,
                    forwarding="dr",
                    real_server=[{"address": "203.0.113.11"}, {"address": "203.0.113.12:0"}],
                )
            ]
        }
    )
    assert [r.port for r in config.virtual_servers[0].real_servers] == [0, 0]


def test_dr_real_server_on_the_service_port_is_fine() -> None:
    config = load(
        {"virtual_server": [vs(forwarding="dr", real_server=[{"address": "203.0.113.11:80"}])]}
    )
    assert config.virtual_servers[0].real_servers[0].forwarding == "dr"


def test_same_real_server_in_two_services_is_fine() -> None:
    config = load(
        {
            "virtual_server": [
                vs(),
                vs(address="198.51.100.10:81"),
                vs(protocol="udp"),
            ]
        }
    )
    assert len({v.key for v in config.virtual_servers}) == 3


# --------------------------------------------------------------------------- invalid values

P = "vrrp_instance[0]"

INVALID_INSTANCE: list[tuple[dict[str, Any], list[str]]] = [
    ({"name": DROP}, [f"{P}.name: is required"]),
    ({"name": "VI 1"}, [f'{P}.name: must match [A-Za-z0-9_.-]+, got "VI 1"']),
    ({"name": ""}, [f"{P}.name: must not be empty"]),
    ({"name": 5}, [f"{P}.name: must be a string, got integer 5"]),
    ({"interface": DROP}, [f"{P}.interface: is required"]),
    (
        {"interface": "eth0/1"},
        [
            f"{P}.interface: must be an interface name (1..15 bytes, no '/', ':' or spaces), "
            'got "eth0/1"'
        ],
    ),
    (
        {"interface": "a" * 16},
        [
            f"{P}.interface: must be an interface name (1..15 bytes, no '/', ':' or spaces), "
            f'got "{"a" * 16}"'
        ],
    ),
    ({"vrid": DROP}, [f"{P}.vrid: is required"]),
    ({"vrid": 0}, [f"{P}.vrid: must be 1..255, got 0"]),
    ({"vrid": 256}, [f"{P}.vrid: must be 1..255, got 256"]),
    ({"vrid": "51"}, [f'{P}.vrid: must be an integer, got string "51"']),
    ({"vrid": 51.0}, [f"{P}.vrid: must be an integer, got float 51.0"]),
    ({"priority": DROP}, [f"{P}.priority: is required"]),
    ({"priority": 300}, [f"{P}.priority: must be 1..255, got 300"]),
    ({"priority": 0}, [f"{P}.priority: must be 1..255, got 0"]),
    ({"priority": True}, [f"{P}.priority: must be an integer, got boolean true"]),
    ({"advert_interval": 0.005}, [f"{P}.advert_interval: must be 0.01..40.95 seconds, got 0.005"]),
    ({"advert_interval": 41}, [f"{P}.advert_interval: must be 0.01..40.95 seconds, got 41"]),
    (
        {"advert_interval": 0.015},
        [f"{P}.advert_interval: must be a multiple of 0.01 seconds, got 0.015"],
    ),
    ({"advert_interval": "1s"}, [f'{P}.advert_interval: must be a number, got string "1s"']),
    ({"advert_interval": math.inf}, [f"{P}.advert_interval: must be a finite number, got inf"]),
    (
        {"version": 2, "advert_interval": 1.5},
        [f"{P}.advert_interval: must be whole seconds in version 2, got 1.5"],
    ),
    (
        {"version": 2, "advert_interval": 256},
        [f"{P}.advert_interval: must be 1..255 seconds (version 2), got 256"],
    ),
    ({"version": 4}, [f"{P}.version: must be 2 or 3, got 4"]),
    ({"version": "3"}, [f'{P}.version: must be 2 or 3, got "3"']),
    ({"preempt": "yes"}, [f'{P}.preempt: must be true or false, got string "yes"']),
    ({"preempt_delay": -1}, [f"{P}.preempt_delay: must be 0..1000 seconds, got -1"]),
    ({"preempt_delay": 1000.5}, [f"{P}.preempt_delay: must be 0..1000 seconds, got 1000.5"]),
    (
        {"preempt": False, "preempt_delay": 10},
        [f"{P}.preempt_delay: has no effect with preempt = false"],
    ),
    ({"virtual_addresses": DROP}, [f"{P}.virtual_addresses: is required"]),
    ({"virtual_addresses": []}, [f"{P}.virtual_addresses: must not be empty"]),
    (
        {"virtual_addresses": "192.0.2.50"},
        [f'{P}.virtual_addresses: must be an array, got string "192.0.2.50"'],
    ),
    (
        {"virtual_addresses": ["192.0.2.50/33"]},
        [f'{P}.virtual_addresses[0]: prefix must be 1..32, got "192.0.2.50/33"'],
    ),
    (
        {"virtual_addresses": ["192.0.2.50/0"]},
        [f'{P}.virtual_addresses[0]: prefix must be 1..32, got "192.0.2.50/0"'],
    ),
    (
        {"virtual_addresses": ["vip.example"]},
        [f'{P}.virtual_addresses[0]: must be "address" or "address/prefix", got "vip.example"'],
    ),
    (
        {"virtual_addresses": ["224.0.0.18"]},
        [f"{P}.virtual_addresses[0]: must be a unicast address, got multicast 224.0.0.18"],
    ),
    (
        {"virtual_addresses": ["0.0.0.0/8"]},
        [f"{P}.virtual_addresses[0]: must be a unicast address, got unspecified 0.0.0.0"],
    ),
    (
        {"virtual_addresses": ["192.0.2.50", "192.0.2.50/24"]},
        [f"{P}.virtual_addresses[1]: duplicate address 192.0.2.50"],
    ),
    (
        {"virtual_addresses": ["192.0.2.50", "2001:db8::1"]},
        [f"{P}.virtual_addresses: must all be one family (IPv4 or IPv6), got both"],
    ),
    (
        {"virtual_addresses": [{"address": "192.0.2.50", "label": "eth1:x"}]},
        [f'{P}.virtual_addresses[0].label: must start with the device name "eth0"'],
    ),
    (
        {"virtual_addresses": [{"address": "192.0.2.50", "label": "eth0:0123456789a"}]},
        [f"{P}.virtual_addresses[0].label: must be at most 15 bytes (kernel limit)"],
    ),
    (
        {"virtual_addresses": [{"address": "2001:db8::1", "label": "eth0:x"}]},
        [f"{P}.virtual_addresses[0].label: labels exist for IPv4 addresses only"],
    ),
    (
        {"virtual_addresses": [{"address": "192.0.2.50", "device": "eth1"}]},
        [f'{P}.virtual_addresses[0].device: unknown key (did you mean "dev"?)'],
    ),
    ({"virtual_addresses": [{"dev": "eth1"}]}, [f"{P}.virtual_addresses[0].address: is required"]),
    (
        {"virtual_addresses": [{"address": "192.0.2.50", "dev": "bad dev"}]},
        [
            f"{P}.virtual_addresses[0].dev: must be an interface name (1..15 bytes, no '/', ':' "
            'or spaces), got "bad dev"'
        ],
    ),
    (
        {"virtual_addresses": [7]},
        [f"{P}.virtual_addresses[0]: must be a table, got integer 7"],
    ),
    (
        {"unicast_src": "2001:db8::1"},
        [f'{P}.unicast_src: must be IPv4 like the virtual_addresses, got IPv6 "2001:db8::1"'],
    ),
    (
        {"unicast_src": "192.0.2.11%eth0"},
        [f'{P}.unicast_src: must be an IPv4 or IPv6 address, got "192.0.2.11%eth0"'],
    ),
    (
        {"unicast_peers": ["192.0.2.12", "192.0.2.12"]},
        [f'{P}.unicast_peers[1]: duplicate "192.0.2.12"'],
    ),
    (
        {"unicast_peers": ["192.0.2.12", "2001:db8::2"]},
        [f'{P}.unicast_peers[1]: must be IPv4 like the virtual_addresses, got IPv6 "2001:db8::2"'],
    ),
    (
        {"unicast_src": "192.0.2.11", "unicast_peers": ["192.0.2.12", "192.0.2.11"]},
        [f"{P}.unicast_peers[1]: must not be our own unicast_src"],
    ),
    (
        {"unicast_src": "192.0.2.11", "unicast_peers": [1, "192.0.2.12", "192.0.2.11"]},
        [
            f"{P}.unicast_peers[0]: must be a string (IP address), got integer 1",
            f"{P}.unicast_peers[2]: must not be our own unicast_src",
        ],
    ),
    (
        {"unicast_peers": "192.0.2.12"},
        [f'{P}.unicast_peers: must be an array, got string "192.0.2.12"'],
    ),
    (
        {"accept_from": ["224.0.0.18"]},
        [f"{P}.accept_from[0]: must be a unicast address, got multicast 224.0.0.18"],
    ),
    (
        {"advert_interval": 2, "max_adopted_interval": 1.5},
        [f"{P}.max_adopted_interval: must be >= advert_interval (2), got 1.5"],
    ),
    (
        {"max_adopted_interval": 41},
        [f"{P}.max_adopted_interval: must be 0.01..40.95 seconds, got 41"],
    ),
    (
        {"version": 2, "max_adopted_interval": 4},
        [f"{P}.max_adopted_interval: applies to version 3 only"],
    ),
    (
        {"v3_checksum_pseudo_header": "no"},
        [f'{P}.v3_checksum_pseudo_header: must be true or false, got string "no"'],
    ),
    (
        {"virtual_addresses": ["2001:db8::1"], "v3_checksum_pseudo_header": False},
        [
            f"{P}.v3_checksum_pseudo_header: must be true for IPv6 (the IPv6 pseudo-header is "
            "always part of the checksum)"
        ],
    ),
    (
        {"virtual_addresses": ["2001:db8::1"], "version": 2},
        [f"{P}.version: version 2 is IPv4 only; these virtual_addresses are IPv6"],
    ),
    (
        {"auth_type": "pass", "auth_pass": "x"},
        [f"{P}.auth_type: authentication exists in version 2 only"],
    ),
    (
        {"version": 2, "auth_type": "ah"},
        [f'{P}.auth_type: must be one of none|pass, got "ah"'],
    ),
    (
        {"version": 2, "auth_type": "pass"},
        [f'{P}.auth_pass: is required with auth_type = "pass"'],
    ),
    (
        {"version": 2, "auth_type": "pass", "auth_pass": "123456789"},
        [f"{P}.auth_pass: must be 1..8 printable ASCII characters"],
    ),
    (
        {"version": 2, "auth_type": "pass", "auth_pass": ""},
        [f"{P}.auth_pass: must be 1..8 printable ASCII characters"],
    ),
    ({"version": 2, "auth_pass": "x"}, [f'{P}.auth_pass: applies only with auth_type = "pass"']),
    (
        {"hmac_key_file": "vrrp.key"},
        [f'{P}.hmac_key_file: must be an absolute path, got "vrrp.key"'],
    ),
    ({"garp_master_repeat": 0}, [f"{P}.garp_master_repeat: must be 1..100, got 0"]),
    ({"garp_master_repeat": 101}, [f"{P}.garp_master_repeat: must be 1..100, got 101"]),
    ({"garp_interval": -0.5}, [f"{P}.garp_interval: must be 0..10 seconds, got -0.5"]),
    ({"garp_master_delay": 3601}, [f"{P}.garp_master_delay: must be 0..3600 seconds, got 3601"]),
    (
        {"garp_master_refresh": "1m"},
        [f'{P}.garp_master_refresh: must be a number, got string "1m"'],
    ),
    ({"handover_hold": 5.5}, [f"{P}.handover_hold: must be 0..5 seconds, got 5.5"]),
    (
        {"track_interfaces": [{"name": "eth1", "weight": 254}]},
        [f"{P}.track_interfaces[0].weight: must be -253..253, got 254"],
    ),
    (
        {"track_interfaces": [{"weight": 10}]},
        [f"{P}.track_interfaces[0].name: is required"],
    ),
    (
        {"track_interfaces": ["eth1", {"name": "eth1", "weight": -1}]},
        [f'{P}.track_interfaces[1]: duplicate "eth1"'],
    ),
    (
        {"track_interfaces": [{"name": "eth1", "wieght": 1}]},
        [f'{P}.track_interfaces[0].wieght: unknown key (did you mean "weight"?)'],
    ),
    (
        {"track_scripts": ["missing"]},
        [f'{P}.track_scripts[0]: no [[track_script]] named "missing"'],
    ),
    (
        {"track_files": [{"name": "missing", "weight": 3}]},
        [f'{P}.track_files[0].name: no [[track_file]] named "missing"'],
    ),
    (
        {"notify": "notify.sh"},
        [f'{P}.notify: the program must be an absolute path, got "notify.sh"'],
    ),
    (
        {"notify_master": "/bin/x 'unclosed"},
        [f"{P}.notify_master: cannot split into arguments: No closing quotation"],
    ),
    ({"notify_backup": []}, [f"{P}.notify_backup: must not be empty"]),
    ({"notify_fault": ""}, [f"{P}.notify_fault: must not be empty"]),
    (
        {"notify_stop": ["/bin/x", 1]},
        [f"{P}.notify_stop[1]: must be a string, got integer 1"],
    ),
    ({"notify": 1}, [f"{P}.notify: must be a string or an array of strings, got integer 1"]),
    ({"priorty": 100}, [f'{P}.priorty: unknown key (did you mean "priority"?)']),
    ({"state": "MASTER"}, [f"{P}.state: unknown key"]),
]


@pytest.mark.parametrize(("over", "expected"), INVALID_INSTANCE)
def test_invalid_instance_value(over: dict[str, Any], expected: list[str]) -> None:
    assert one_instance(**over) == expected


INVALID_DOCUMENT: list[tuple[dict[str, Any], list[str]]] = [
    ({"vrrp_instances": []}, ['vrrp_instances: unknown key (did you mean "vrrp_instance"?)']),
    (
        {"vrrp_instance": inst()},
        ["vrrp_instance: must be an array of tables ([[vrrp_instance]]), got a single table"],
    ),
    ({"vrrp_instance": [1]}, ["vrrp_instance[0]: must be a table, got integer 1"]),
    ({"global": 3}, ["global: must be a table, got integer 3"]),
    (
        {"global": {"loglevel": "info"}},
        ['global.loglevel: unknown key (did you mean "log_level"?)'],
    ),
    ({"global": {"router_id": ""}}, ["global.router_id: must not be empty"]),
    (
        {"global": {"log_level": "verbose"}},
        ['global.log_level: must be one of debug|info|warning|error, got "verbose"'],
    ),
    (
        {"global": {"control_socket": "hadirector.sock"}},
        ['global.control_socket: must be an absolute path, got "hadirector.sock"'],
    ),
    (
        {"global": {"control_socket": "/run/" + "s" * 103}},
        ["global.control_socket: must be at most 107 bytes long (socket path limit)"],
    ),
    (
        {"global": {"notify_timeout": 0}},
        ["global.notify_timeout: must be more than 0 and at most 3600 seconds, got 0"],
    ),
    (
        {"global": {"state_dir": 5}},
        ["global.state_dir: must be a string (absolute path), got integer 5"],
    ),
    ({"ipvs": []}, ["ipvs: must be a table, got array"]),
    (
        {"ipvs": {"own_whole_table": 1}},
        ["ipvs.own_whole_table: must be true or false, got integer 1"],
    ),
    ({"ipvs": {"timeout_tcp": -1}}, ["ipvs.timeout_tcp: must be 0..2147483647, got -1"]),
    ({"ipvs": {"timeout_tcpfin": 1.5}}, ["ipvs.timeout_tcpfin: must be an integer, got float 1.5"]),
    ({"ipvs": {"timeout_udp": 2**31}}, ["ipvs.timeout_udp: must be 0..2147483647, got 2147483648"]),
    (
        {"ipvs": {"reconcile_interval": 0}},
        ["ipvs.reconcile_interval: must be more than 0 and at most 86400 seconds, got 0"],
    ),
    (
        {"ipvs": {"timeout": 5}},
        ['ipvs.timeout: unknown key (did you mean "timeout_udp"?)'],
    ),
    # duplicates and cross checks between instances
    (
        {"vrrp_instance": [inst(), inst(vrid=52, virtual_addresses=["192.0.2.9"])]},
        ['vrrp_instance[1].name: duplicate name "VI_1" (also vrrp_instance[0])'],
    ),
    (
        {"vrrp_instance": [inst(), inst(name="VI_2", virtual_addresses=["192.0.2.9"])]},
        ['vrrp_instance[1].vrid: vrid 51 on eth0 (IPv4) is already used by instance "VI_1"'],
    ),
    (
        {"vrrp_instance": [inst(), inst(name="VI_2", vrid=52, interface="eth1")]},
        [
            "vrrp_instance[1].virtual_addresses[0]: 192.0.2.50 is already a virtual address of "
            'instance "VI_1"'
        ],
    ),
    # sync groups
    (
        {"vrrp_instance": [inst()], "sync_group": [{"instances": ["VI_1"]}]},
        ["sync_group[0].name: is required"],
    ),
    (
        {"vrrp_instance": [inst()], "sync_group": [{"name": "G"}]},
        ["sync_group[0].instances: is required"],
    ),
    (
        {"vrrp_instance": [inst()], "sync_group": [{"name": "G", "instances": []}]},
        ["sync_group[0].instances: must name at least one vrrp_instance"],
    ),
    (
        {"vrrp_instance": [inst()], "sync_group": [{"name": "G", "instances": ["VI_1", "VI_9"]}]},
        ['sync_group[0].instances[1]: no [[vrrp_instance]] named "VI_9"'],
    ),
    (
        {"vrrp_instance": [inst()], "sync_group": [{"name": "G", "instances": ["VI_1", "VI_1"]}]},
        ['sync_group[0].instances[1]: duplicate "VI_1"'],
    ),
    (
        {
            "vrrp_instance": [inst()],
            "sync_group": [
                {"name": "G", "instances": ["VI_1"]},
                {"name": "H", "instances": ["VI_1"]},
            ],
        },
        ['sync_group[1].instances[0]: instance "VI_1" is already in sync_group "G"'],
    ),
    (
        {
            "vrrp_instance": [inst(), inst(name="VI_2", vrid=52, virtual_addresses=["192.0.2.9"])],
            "sync_group": [
                {"name": "G", "instances": ["VI_1"]},
                {"name": "G", "instances": ["VI_2"]},
            ],
        },
        ['sync_group[1].name: duplicate name "G"'],
    ),
    (
        {
            "vrrp_instance": [inst()],
            "sync_group": [{"name": "G", "instances": ["VI_1"], "notify": "x.sh"}],
        },
        ['sync_group[0].notify: the program must be an absolute path, got "x.sh"'],
    ),
    # track scripts and files
    ({"track_script": [{"name": "c"}]}, ["track_script[0].script: is required"]),
    ({"track_script": [{"script": "/bin/true"}]}, ["track_script[0].name: is required"]),
    (
        {"track_script": [{"name": "c", "script": "true"}]},
        ['track_script[0].script: the program must be an absolute path, got "true"'],
    ),
    (
        {"track_script": [{"name": "c", "script": "/bin/true", "interval": 0}]},
        ["track_script[0].interval: must be more than 0 and at most 86400 seconds, got 0"],
    ),
    (
        {"track_script": [{"name": "c", "script": "/bin/true", "timeout": -1}]},
        ["track_script[0].timeout: must be more than 0 and at most 86400 seconds, got -1"],
    ),
    (
        {"track_script": [{"name": "c", "script": "/bin/true", "weight": -254}]},
        ["track_script[0].weight: must be -253..253, got -254"],
    ),
    (
        {"track_script": [{"name": "c", "script": "/bin/true", "rise": 0}]},
        ["track_script[0].rise: must be 1..1000, got 0"],
    ),
    (
        {"track_script": [{"name": "c", "script": "/bin/true", "fall": 1001}]},
        ["track_script[0].fall: must be 1..1000, got 1001"],
    ),
    (
        {"track_script": [{"name": "c", "script": "/a"}, {"name": "c", "script": "/b"}]},
        ['track_script[1].name: duplicate name "c"'],
    ),
    (
        {"track_file": [{"name": "f", "path": "run/f"}]},
        ['track_file[0].path: must be an absolute path, got "run/f"'],
    ),
    ({"track_file": [{"name": "f"}]}, ["track_file[0].path: is required"]),
    (
        {"track_file": [{"name": "f", "path": "/f", "weight": 300}]},
        ["track_file[0].weight: must be -253..253, got 300"],
    ),
    (
        {"track_file": [{"name": "f", "path": "/f"}, {"name": "f", "path": "/g"}]},
        ['track_file[1].name: duplicate name "f"'],
    ),
]


@pytest.mark.parametrize(("doc", "expected"), INVALID_DOCUMENT)
def test_invalid_document(doc: dict[str, Any], expected: list[str]) -> None:
    assert problems(doc) == expected


V = "virtual_server[0]"
R = "virtual_server[0].real_server"

INVALID_SERVICE: list[tuple[dict[str, Any], list[str]]] = [
    (vs(fwmark=3), [f"{V}.fwmark: address and fwmark are exclusive: use one"]),
    (vs(address=DROP), [f"{V}: needs address (ip:port) or fwmark"]),
    (
        vs(address="198.51.100.10"),
        [f'{V}.address: must be "ip:port" or "[ipv6]:port", got "198.51.100.10"'],
    ),
    (
        vs(address="2001:db8::10:80"),
        [f'{V}.address: must be "ip:port" or "[ipv6]:port", got "2001:db8::10:80"'],
    ),
    (
        vs(address="[2001:db8::10]80"),
        [f'{V}.address: must be "ip:port" or "[ipv6]:port", got "[2001:db8::10]80"'],
    ),
    (
        vs(address="www.example:80"),
        [f'{V}.address: must be "ip:port" or "[ipv6]:port", got "www.example:80"'],
    ),
    (
        vs(address="198.51.100.10:65536"),
        [f'{V}.address: port must be 0..65535, got "198.51.100.10:65536"'],
    ),
    (
        vs(address="198.51.100.10:http"),
        [f'{V}.address: port must be 0..65535, got "198.51.100.10:http"'],
    ),
    (
        vs(address="198.51.100.10:0"),
        [f"{V}.address: port 0 (all ports) needs persistence_timeout > 0"],
    ),
    (
        vs(address="224.1.1.1:80"),
        [f"{V}.address: must be a unicast address, got multicast 224.1.1.1"],
    ),
    (vs(family="inet"), [f"{V}.family: applies to fwmark services only (address sets it)"]),
    (vs(protocol="icmp"), [f'{V}.protocol: must be one of tcp|udp|sctp, got "icmp"']),
    (fw(fwmark=0), [f"{V}.fwmark: must be 1..4294967295, got 0"]),
    (fw(fwmark=2**32), [f"{V}.fwmark: must be 1..4294967295, got 4294967296"]),
    (
        fw(family="inet7", real_server=[{"address": "2001:db8::1"}]),
        [f'{V}.family: must be one of inet|inet6, got "inet7"'],
    ),
    (fw(protocol="tcp"), [f"{V}.protocol: not with fwmark (the mark selects the traffic)"]),
    (
        vs(scheduler="roundrobin"),
        [
            f"{V}.scheduler: must be one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|mh|fo|ovf|twos, "
            'got "roundrobin"'
        ],
    ),
    (
        vs(scheduler_flags=["sh-port"]),
        [f"{V}.scheduler_flags[0]: sh-port needs scheduler sh, got wlc"],
    ),
    (
        vs(scheduler="sh", scheduler_flags=["sh-port", "mh-port"]),
        [f"{V}.scheduler_flags[1]: mh-port needs scheduler mh, got sh"],
    ),
    (
        vs(scheduler="sh", scheduler_flags=["sh-port", "sh-port"]),
        [f'{V}.scheduler_flags[1]: duplicate "sh-port"'],
    ),
    (
        vs(scheduler="sh", scheduler_flags=["flag-1"]),
        [
            f"{V}.scheduler_flags[0]: must be one of sh-fallback|sh-port|mh-fallback|mh-port, "
            'got "flag-1"'
        ],
    ),
    (vs(one_packet=True), [f"{V}.one_packet: applies to udp or fwmark services only, not tcp"]),
    (
        vs(forwarding="masq"),
        [f'{V}.forwarding: must be one of nat|dr|tun|fullnat, got "masq"'],
    ),
    (
        vs(persistence_timeout=-1),
        [f"{V}.persistence_timeout: must be 0..2147483647, got -1"],
    ),
    (
        vs(persistence_timeout=300.0),
        [f"{V}.persistence_timeout: must be an integer, got float 300.0"],
    ),
    (
        vs(persistence_netmask="255.0.255.0"),
        [
            f"{V}.persistence_netmask: must be a contiguous IPv4 netmask "
            '128.0.0.0..255.255.255.255, got "255.0.255.0"'
        ],
    ),
    (
        vs(persistence_netmask="0.0.0.255"),
        [
            f"{V}.persistence_netmask: must be a contiguous IPv4 netmask "
            '128.0.0.0..255.255.255.255, got "0.0.0.255"'
        ],
    ),
    (
        vs(persistence_netmask=24),
        [
            f'{V}.persistence_netmask: must be a dotted IPv4 netmask like "255.255.255.0", '
            "got integer 24"
        ],
    ),
    (
        fw(family="inet6", persistence_netmask="ffff::", real_server=[]),
        [f'{V}.persistence_netmask: must be an IPv6 prefix length 1..128, got string "ffff::"'],
    ),
    (
        fw(family="inet6", persistence_netmask=129, real_server=[]),
        [f"{V}.persistence_netmask: must be 1..128, got 129"],
    ),
    (vs(tunnel_type="gre"), [f'{V}.tunnel_type: applies only with forwarding = "tun"']),
    (vs(tunnel_port=5555), [f'{V}.tunnel_port: applies only with forwarding = "tun"']),
    (vs(tunnel_flags=["csum"]), [f'{V}.tunnel_flags: applies only with forwarding = "tun"']),
    (
        vs(forwarding="tun", tunnel_type="gue"),
        [f'{V}.tunnel_port: is required with tunnel_type = "gue"'],
    ),
    (
        vs(forwarding="tun", tunnel_port=5555),
        [f'{V}.tunnel_port: applies only with tunnel_type = "gue"'],
    ),
    (
        vs(forwarding="tun", tunnel_type="gue", tunnel_port=0),
        [f"{V}.tunnel_port: must be 1..65535, got 0"],
    ),
    (
        vs(forwarding="tun", tunnel_type="vxlan"),
        [f'{V}.tunnel_type: must be one of ipip|gue|gre, got "vxlan"'],
    ),
    (
        vs(forwarding="tun", tunnel_flags=["csum"]),
        [f"{V}.tunnel_flags: ipip tunnels take no flags (gue or gre only)"],
    ),
    (
        vs(forwarding="tun", tunnel_type="gre", tunnel_flags=["remcsum"]),
        [f"{V}.tunnel_flags: remcsum applies to gue tunnels only"],
    ),
    (
        vs(forwarding="tun", tunnel_type="gre", tunnel_flags=["csum", "nocsum"]),
        [f"{V}.tunnel_flags: takes one of nocsum|csum|remcsum"],
    ),
    (
        vs(forwarding="tun", tunnel_type="gre", tunnel_flags=["crc"]),
        [f'{V}.tunnel_flags[0]: must be one of nocsum|csum|remcsum, got "crc"'],
    ),
    (vs(forwarding="fullnat"), [f'{V}.fullnat_source: is required with forwarding = "fullnat"']),
    (
        vs(fullnat_source="198.51.100.2"),
        [f'{V}.fullnat_source: applies only with forwarding = "fullnat"'],
    ),
    (
        vs(forwarding="fullnat", fullnat_source="2001:db8::2"),
        [f'{V}.fullnat_source: must be IPv4 like the service, got IPv6 "2001:db8::2"'],
    ),
    (
        vs(match={"address": "198.51.100.10"}),
        [f"{V}.match: applies to fwmark services only"],
    ),
    (fw(match={"protocol": "tcp"}), [f"{V}.match.address: is required"]),
    (
        fw(match={"address": "2001:db8::1"}),
        [f'{V}.match.address: must be IPv4 like the service family, got IPv6 "2001:db8::1"'],
    ),
    (
        fw(match={"address": "198.51.100.10", "ports": [0]}),
        [f"{V}.match.ports[0]: must be 1..65535, got 0"],
    ),
    (
        fw(match={"address": "198.51.100.10", "protocol": "icmp"}),
        [f'{V}.match.protocol: must be one of tcp|udp|sctp, got "icmp"'],
    ),
    (
        fw(match={"address": "198.51.100.10", "port": 80}),
        [f'{V}.match.port: unknown key (did you mean "ports"?)'],
    ),
    (fw(match="198.51.100.10"), [f'{V}.match: must be a table, got string "198.51.100.10"']),
    (vs(real_servers=[]), [f'{V}.real_servers: unknown key (did you mean "real_server"?)']),
    (
        vs(real_server={"address": "203.0.113.11:80"}),
        [f"{R}: must be an array of tables ([[virtual_server.real_server]]), got a single table"],
    ),
    (vs(real_server=[{"weight": 1}]), [f"{R}[0].address: is required"]),
    (
        vs(real_server=[{"address": "203.0.113.11"}]),
        [f'{R}[0].address: must be "ip:port" or "[ipv6]:port", got "203.0.113.11"'],
    ),
    (
        vs(real_server=[{"address": "203.0.113.11:0"}]),
        [f'{R}[0].address: port must be 1..65535, got "203.0.113.11:0"'],
    ),
    (
        vs(real_server=[{"address": "[2001:db8::11]:80"}]),
        [f"{R}[0].address: must be IPv4 like the service, got IPv6 2001:db8::11"],
    ),
    (
        vs(real_server=[{"address": "203.0.113.11:80", "weight": -1}]),
        [f"{R}[0].weight: must be 0..2147483647, got -1"],
    ),
    (
        vs(real_server=[{"address": "203.0.113.11:80", "upper_threshold": -1}]),
        [f"{R}[0].upper_threshold: must be 0..2147483647, got -1"],
    ),
    (
        vs(
            real_server=[
                {"address": "203.0.113.11:80", "upper_threshold": 10, "lower_threshold": 11}
            ]
        ),
        [f"{R}[0].lower_threshold: must be <= upper_threshold (10), got 11"],
    ),
    (
        vs(real_server=[{"address": "203.0.113.11:80", "forwarding": "fullnat"}]),
        [f"{R}[0].forwarding: fullnat is set per virtual_server, not per real server"],
    ),
    (
        vs(real_server=[{"address": "203.0.113.11:80", "forwarding": "local"}]),
        [f'{R}[0].forwarding: must be one of nat|dr|tun, got "local"'],
    ),
    (
        vs(forwarding="dr", real_server=[{"address": "203.0.113.11:8080"}]),
        [
            f"{R}[0].address: port must be the service port 80 with dr forwarding "
            "(no port translation), got 8080"
        ],
    ),
    (
        vs(real_server=[{"address": "203.0.113.11:8080", "forwarding": "tun"}]),
        [
            f"{R}[0].address: port must be the service port 80 with tun forwarding "
            "(no port translation), got 8080"
        ],
    ),
    (
        vs(
            real_server=[
                {"address": "203.0.113.11:80"},
                {"address": "203.0.113.11:80", "weight": 2},
            ]
        ),
        [f'{R}[1].address: duplicate real server "203.0.113.11:80"'],
    ),
    (
        vs(real_server=[{"address": "203.0.113.11:80", "healthcheck": "tcp"}]),
        [f'{R}[0].healthcheck: unknown key (did you mean "check"?)'],
    ),
    (vs(lb_algo="wlc"), [f"{V}.lb_algo: unknown key"]),
]


@pytest.mark.parametrize(("service", "expected"), INVALID_SERVICE)
def test_invalid_virtual_server(service: dict[str, Any], expected: list[str]) -> None:
    assert problems({"virtual_server": [service]}) == expected


def test_duplicate_service_keys() -> None:
    assert problems({"virtual_server": [vs(), vs(real_server=[])]}) == [
        "virtual_server[1].address: duplicate service tcp 198.51.100.10:80 (also virtual_server[0])"
    ]
    assert problems({"virtual_server": [fw(), fw(real_server=[])]}) == [
        "virtual_server[1].fwmark: duplicate service fwmark 7 inet (also virtual_server[0])"
    ]
    # Same mark in both families, same address:port on two protocols: distinct services.
    config = load(
        {
            "virtual_server": [
                fw(),
                fw(family="inet6", real_server=[]),
                vs(),
                vs(protocol="udp"),
                vs(address="[2001:db8::10]:80", real_server=[]),
            ]
        }
    )
    assert len({v.key for v in config.virtual_servers}) == 5


# --------------------------------------------------------------------------- all at once


FIVE_PROBLEMS = """\
[global]
log_level = "loud"

[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
vrid = 51
priority = 300
advert_interval = 1.0
virtual_addresses = ["10.0.0.50/24"]
unicast_peers = ["2001:db8::12"]

[[sync_group]]
name = "G1"
instances = ["VI_1", "VI_X"]

[[virtual_server]]
address = "10.0.0.50:80"
scheduler = "wlc"

  [[virtual_server.real_server]]
  address = "10.1.0.11:80"
  wieght = 2
"""


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        load_text(FIVE_PROBLEMS, source="five.toml")
    assert [(p.path, p.message) for p in info.value.problems] == [
        ("global.log_level", 'must be one of debug|info|warning|error, got "loud"'),
        ("vrrp_instance[0].priority", "must be 1..255, got 300"),
        (
            "vrrp_instance[0].unicast_peers[0]",
            'must be IPv4 like the virtual_addresses, got IPv6 "2001:db8::12"',
        ),
        ("sync_group[0].instances[1]", 'no [[vrrp_instance]] named "VI_X"'),
        ("virtual_server[0].real_server[0].wieght", 'unknown key (did you mean "weight"?)'),
    ]


def test_problems_in_many_sections_and_items_keep_their_indexes() -> None:
    found = problems(
        {
            "vrrp_instance": [
                inst(),
                inst(name="VI_2", vrid=0, virtual_addresses=["192.0.2.70"]),
                inst(name="VI_3", vrid=53, priority=0, virtual_addresses=["192.0.2.80"]),
            ],
            "virtual_server": [vs(), vs(address="198.51.100.11:80", scheduler="x")],
        }
    )
    assert found == [
        "vrrp_instance[1].vrid: must be 1..255, got 0",
        "vrrp_instance[2].priority: must be 1..255, got 0",
        "virtual_server[1].scheduler: must be one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|mh|"
        'fo|ovf|twos, got "x"',
    ]


def test_a_broken_instance_does_not_cascade_into_its_references() -> None:
    # VI_1's vrid is wrong, but its name is fine: the sync group reference still resolves.
    found = problems(
        {
            "vrrp_instance": [inst(vrid=999)],
            "sync_group": [{"name": "G", "instances": ["VI_1"]}],
        }
    )
    assert found == ["vrrp_instance[0].vrid: must be 1..255, got 999"]


def test_a_broken_track_script_does_not_cascade_into_its_references() -> None:
    found = problems(
        {
            "track_script": [{"name": "chk", "script": "check.sh"}],
            "track_file": [{"name": "maint", "path": 3}],
            "vrrp_instance": [inst(track_scripts=["chk"], track_files=["maint"])],
        }
    )
    assert found == [
        'track_script[0].script: the program must be an absolute path, got "check.sh"',
        "track_file[0].path: must be a string (absolute path), got integer 3",
    ]


def test_wrong_version_does_not_cascade() -> None:
    # An invalid version must not produce version-dependent follow-up problems.
    assert one_instance(version=5, auth_type="pass", auth_pass="x", advert_interval=100) == [
        f"{P}.version: must be 2 or 3, got 5"
    ]
    assert one_instance(version="2", advert_interval="1") == [
        f'{P}.version: must be 2 or 3, got "2"',
        f'{P}.advert_interval: must be a number, got string "1"',
    ]


# --------------------------------------------------------------------------- syntax and files


def test_toml_syntax_error_has_line_and_column() -> None:
    text = '[[vrrp_instance]]\nname = "VI_1"\nvrid = = 5\n'
    with pytest.raises(ConfigError) as info:
        load_text(text, source="bad.toml")
    (problem,) = info.value.problems
    assert problem.path == ""
    assert problem.message.startswith("bad.toml: line 3, column 8: TOML syntax error: ")


def test_toml_syntax_error_at_end_of_document() -> None:
    with pytest.raises(ConfigError) as info:
        load_text("a = 1\nb = [1,\n  2", source="cut.toml")
    (problem,) = info.value.problems
    assert problem.message.startswith("cut.toml: line 3, column 4: TOML syntax error: ")
    assert problem.message.endswith("at end of document")


def test_duplicate_toml_key_is_a_syntax_problem() -> None:
    with pytest.raises(ConfigError) as info:
        load_text("[global]\nlog_level = 'info'\nlog_level = 'debug'\n")
    assert "TOML syntax error" in str(info.value)


def test_load_path_missing_and_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_path(tmp_path / "nope.toml")
    assert "nope.toml: cannot read: No such file or directory" in str(info.value)
    raw = tmp_path / "latin1.toml"
    raw.write_bytes(b'[global]\nrouter_id = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_path(raw)
    assert "not UTF-8" in str(info.value)


def test_load_path_reports_source_in_syntax_errors(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text("[global\n")
    with pytest.raises(ConfigError) as info:
        load_path(path)
    assert str(info.value).startswith(f"{path}: line 1, column ")


def test_loaded_config_is_hashable_and_equal_across_loads() -> None:
    text = (REPO / "conf" / "director.toml").read_text()
    one, two = load_text(text), load_text(text)
    assert one == two
    assert hash(one) == hash(two)


def test_old_unicast_checksum_is_for_ipv4_v3_unicast_only() -> None:
    from hadirector.config.load import load_text
    from hadirector.errors import ConfigError

    base = """
[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
vrid = 51
priority = 100
virtual_addresses = ["192.0.2.100/24"]
old_unicast_checksum = true
"""
    cfg = load_text(base + 'unicast_peers = ["192.0.2.2"]\n')
    assert cfg.vrrp_instances[0].old_unicast_checksum is True
    with pytest.raises(ConfigError) as info:
        load_text(base)
    assert [str(p) for p in info.value.problems] == [
        "vrrp_instance[0].old_unicast_checksum: applies to IPv4 VRRPv3 with unicast_peers only"
    ]
