"""The loader's defaults and key lists are the schema's: what a file leaves out is what the
schema dataclass declares, and every field is spelled in the file as ``toml_keys`` says."""

from __future__ import annotations

import ipaddress

import pytest

from hadirector.config import load
from hadirector.config.load import load_text
from hadirector.config.schema import (
    Config,
    GlobalConfig,
    IpvsSettings,
    NotifyScripts,
    RealServer,
    SyncDaemonSettings,
    TrackFile,
    TrackRef,
    TrackScript,
    VirtualAddress,
    VirtualServer,
    VrrpInstance,
)
from hadirector.config.validate import Defaults, toml_keys

MINIMAL = """
[ipvs.sync]
interface = "eth1"

[[track_script]]
name = "chk"
script = "/bin/true"

[[track_file]]
name = "maint"
path = "/run/maint"

[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
vrid = 51
priority = 150
virtual_addresses = ["192.0.2.50/24"]
track_scripts = ["chk"]
track_files = ["maint"]

[[virtual_server]]
address = "198.51.100.10:80"
real_server = [{ address = "203.0.113.11:80" }]
"""


def test_what_a_file_leaves_out_is_the_schema_default() -> None:
    config = load_text(MINIMAL)
    assert config.global_ == GlobalConfig()
    assert config.ipvs == IpvsSettings(sync=SyncDaemonSettings("eth1", instance="VI_1"))
    assert config.track_scripts == (TrackScript("chk", ("/bin/true",)),)
    assert config.track_files == (TrackFile("maint", "/run/maint"),)
    vip = VirtualAddress(ipaddress.ip_interface("192.0.2.50/24"), "eth0")
    refs = {"track_scripts": (TrackRef("chk", 0),), "track_files": (TrackRef("maint", 1),)}
    assert config.vrrp_instances == (VrrpInstance("VI_1", "eth0", 51, 150, (vip,), **refs),)
    rs = RealServer(ipaddress.ip_address("203.0.113.11"), 80)
    address = ipaddress.ip_address("198.51.100.10")
    service = VirtualServer("tcp", address, 80, None, 4, real_servers=(rs,))
    assert config.virtual_servers == (service,)
    assert config.sync_groups == Config().sync_groups


def test_toml_keys_drop_unit_suffixes_and_follow_renames() -> None:
    assert toml_keys(TrackScript) == (
        "name",
        "script",
        "interval",
        "timeout",
        "weight",
        "rise",
        "fall",
    )
    assert "advert_interval" in load.INSTANCE_KEYS and "notify_master" in load.INSTANCE_KEYS
    assert "notify" in load.INSTANCE_KEYS and "port" not in load.VS_KEYS
    assert "real_server" in load.VS_KEYS and "real_servers" not in load.VS_KEYS


def test_defaults_read_the_dataclass_and_refuse_required_fields() -> None:
    defaults = Defaults(VrrpInstance)
    assert (defaults.preempt, defaults.advert_interval_cs, defaults.notify) == (
        True,
        100,
        NotifyScripts(),
    )
    with pytest.raises(AttributeError, match=r"VrrpInstance\.priority has no default"):
        _ = defaults.priority
