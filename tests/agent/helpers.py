"""Topologies and configurations that several agent test modules share."""

from __future__ import annotations

from tests.agent.fakes import Host, Lab, Wire, instance_toml

VIP = "192.0.2.100/24"

SYNC_PAIR = """
[[sync_group]]
name = "G1"
instances = ["VI_1", "VI_2"]
"""


def sync_config(priority: int) -> str:
    return (
        instance_toml(name="VI_1", interface="eth0", vrid=51, priority=priority)
        + instance_toml(
            name="VI_2", interface="eth1", vrid=52, priority=priority, vips=["198.51.100.1/24"]
        )
        + SYNC_PAIR
    )


def sync_hosts(lab: Lab) -> tuple[Wire, Wire, Host, Host]:
    """Two directors on a client LAN (eth0) and a server LAN (eth1), as a NAT pair."""
    lan, srv = lab.wire("lan"), lab.wire("srv")
    a = lab.host("a", {"eth0": (lan, "192.0.2.1"), "eth1": (srv, "198.51.100.11")})
    b = lab.host("b", {"eth0": (lan, "192.0.2.2"), "eth1": (srv, "198.51.100.12")})
    return lan, srv, a, b
