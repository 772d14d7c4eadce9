"""A VRRP machine's configuration for the pure core's unit tests (vrrp/machine.py)."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from hadirector.vrrp.machine import MachineConfig

OURS = IPv4Address("192.0.2.10")  # the machine's own primary address


def config(**overrides: Any) -> MachineConfig:
    """VRID 51, priority 100, 1 s adverts, VRRPv3, our address ``OURS``; ``overrides`` on top."""
    base: dict[str, Any] = {
        "vrid": 51,
        "priority": 100,
        "advert_interval_cs": 100,
        "version": 3,
        "primary_address": OURS,
        "max_adopted_interval_cs": 1000,
        "handover_hold_cs": 10,
    }
    base.update(overrides)
    return MachineConfig(**base)
