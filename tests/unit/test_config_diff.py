"""config.diff: what a reload changes, per section, by name and by service key."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hadirector.config.diff import INSTANCE_RESTART_FIELDS, Changes, diff, restarts
from hadirector.config.load import load_path, load_text
from hadirector.config.schema import (
    Config,
    NotifyScripts,
    ServiceKey,
    TrackRef,
    VirtualAddress,
    VrrpInstance,
)
from tests.unit.configkit import fw, inst, to_toml, vs

REPO = Path(__file__).resolve().parents[2]


def load(doc: dict[str, Any]) -> Config:
    return load_text(to_toml(doc))


def base(**sections: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "vrrp_instance": [
            inst(),
            inst(name="VI_2", interface="eth1", vrid=52, virtual_addresses=["192.0.2.60/24"]),
        ],
        "sync_group": [{"name": "G1", "instances": ["VI_1", "VI_2"]}],
        "track_script": [{"name": "chk", "script": "/bin/true", "weight": -10}],
        "virtual_server": [vs(), fw()],
    }
    doc.update(sections)
    return doc


HTTP = ServiceKey.virtual("tcp", "198.51.100.10", 80)
MARK = ServiceKey.mark(7)


def test_identical_configs_have_an_empty_diff() -> None:
    a = load(base())
    d = diff(a, load(base()))
    assert not d
    assert d.vrrp_instances == Changes()
    assert d.instance_changes == ()
    assert d.service_changes == ()


def test_shipped_pair_differs_only_in_router_id_and_priorities() -> None:
    a = load_path(REPO / "conf" / "director-a.toml")
    b = load_path(REPO / "conf" / "director-b.toml")
    d = diff(a, b)
    assert d.global_fields == ("router_id",)
    assert d.vrrp_instances == Changes(changed=("VI_1", "VI_2"))
    assert [(c.name, c.fields, c.replaces) for c in d.instance_changes] == [
        ("VI_1", ("priority",), False),
        ("VI_2", ("priority",), False),
    ]
    assert not d.virtual_servers
    assert not d.sync_groups


def test_priority_change_is_in_place() -> None:
    doc = base()
    doc["vrrp_instance"][0]["priority"] = 90
    doc["vrrp_instance"][0]["advert_interval"] = 0.5
    d = diff(load(base()), load(doc))
    assert d.vrrp_instances == Changes(changed=("VI_1",))
    change = d.instance_change("VI_1")
    assert change is not None
    assert change.fields == ("priority", "advert_interval_cs", "max_adopted_interval_cs")
    assert change.replaces is False
    assert d.instance_change("VI_2") is None


def test_vrid_interface_or_family_change_replaces_the_router() -> None:
    for over in (
        {"vrid": 60},
        {"interface": "eth9"},
        {"virtual_addresses": ["2001:db8::50/64"]},
    ):
        doc = base()
        doc["vrrp_instance"][0].update(over)
        change = diff(load(base()), load(doc)).instance_change("VI_1")
        assert change is not None, over
        assert change.replaces is True, over
    doc = base()
    doc["vrrp_instance"][0]["virtual_addresses"] = ["2001:db8::50/64"]
    change = diff(load(base()), load(doc)).instance_change("VI_1")
    assert change is not None
    assert change.fields == ("virtual_addresses", "family")


# --------------------------------------------------------------------------- reload plan

V4 = ipaddress.ip_address
VIP = VirtualAddress(ipaddress.ip_interface("192.0.2.50/24"), "eth0")
RUNNING = VrrpInstance(
    name="VI_1",
    interface="eth0",
    vrid=51,
    priority=150,
    virtual_addresses=(VIP,),
    hmac_key_file="/etc/hadirector/a.key",
)

# Every VrrpInstance field, changed to another value, and whether that restarts the
# instance (True) or is applied in place by the running one (False).
PLAN: dict[str, tuple[Any, bool]] = {
    "name": ("VI_1", False),  # the plan is per name: a rename is removed + added
    "interface": ("eth1", True),
    "vrid": (52, True),
    "version": (2, True),
    "unicast_src": (V4("192.0.2.1"), True),
    "unicast_peers": ((V4("192.0.2.2"),), True),
    "priority": (90, False),
    "virtual_addresses": (
        (VIP, VirtualAddress(ipaddress.ip_interface("192.0.2.51/24"), "eth0")),
        False,
    ),
    "advert_interval_cs": (50, False),
    "preempt": (False, False),
    "preempt_delay_s": (3.0, False),
    "accept_from": ((V4("192.0.2.2"),), False),
    "max_adopted_interval_cs": (200, False),
    "v3_checksum_pseudo_header": (False, False),
    "old_unicast_checksum": (True, False),
    "auth_type": ("pass", False),
    "auth_pass": ("secret", False),
    "hmac_key_file": ("/etc/hadirector/b.key", False),  # new keys, handed over in place
    "hmac_accept_key_files": (("/etc/hadirector/a.key",), False),
    "garp_master_repeat": (2, False),
    "garp_interval_s": (0.01, False),
    "garp_master_delay_s": (0.0, False),
    "garp_master_refresh_s": (60.0, False),
    "handover_hold_s": (0.5, False),
    "track_interfaces": ((TrackRef("eth2", 0),), False),
    "track_scripts": ((TrackRef("chk", -10),), False),
    "track_files": ((TrackRef("maint", 1),), False),
    "track_quorum": (0, False),
    "notify": (NotifyScripts(master=("/bin/true",)), False),
    "smtp_alert": (False, False),
}


def test_the_plan_decides_every_instance_field() -> None:
    assert set(PLAN) == {f.name for f in dataclasses.fields(VrrpInstance)}
    derived = {"family", "hmac"}
    assert {f for f, (_, restart) in PLAN.items() if restart} | derived == INSTANCE_RESTART_FIELDS


@pytest.mark.parametrize("field", [f for f in PLAN if f != "name"])
def test_reload_plan_per_instance_field(field: str) -> None:
    value, restart = PLAN[field]
    new = dataclasses.replace(RUNNING, **{field: value})
    assert new != RUNNING
    assert restarts(RUNNING, new) is restart
    change = diff(Config(vrrp_instances=(RUNNING,)), Config(vrrp_instances=(new,)))
    assert change.instance_change("VI_1") == change.instance_changes[0]
    assert change.instance_changes[0].fields == (field,)
    assert change.instance_changes[0].replaces is restart
    assert not restarts(RUNNING, RUNNING)


def test_family_change_restarts_the_instance() -> None:
    vip6 = VirtualAddress(ipaddress.ip_interface("2001:db8::50/64"), "eth0")
    new = dataclasses.replace(RUNNING, virtual_addresses=(vip6,))
    assert restarts(RUNNING, new)
    change = diff(Config(vrrp_instances=(RUNNING,)), Config(vrrp_instances=(new,)))
    assert change.instance_changes[0].fields == ("virtual_addresses", "family")


def test_hmac_turned_on_or_off_restarts_the_instance() -> None:
    plain = dataclasses.replace(RUNNING, hmac_key_file=None)
    for old, new in ((plain, RUNNING), (RUNNING, plain)):
        assert restarts(old, new)
        change = diff(Config(vrrp_instances=(old,)), Config(vrrp_instances=(new,)))
        assert change.instance_changes[0].fields == ("hmac_key_file", "hmac")
        assert change.instance_changes[0].replaces


def test_rename_is_removed_plus_added() -> None:
    doc = base(sync_group=[{"name": "G1", "instances": ["VI_9", "VI_2"]}])
    doc["vrrp_instance"][0]["name"] = "VI_9"
    d = diff(load(base()), load(doc))
    assert d.vrrp_instances == Changes(added=("VI_9",), removed=("VI_1",))
    assert d.sync_groups == Changes(changed=("G1",))


def test_reordering_group_members_or_real_servers_changes_nothing() -> None:
    doc = base(sync_group=[{"name": "G1", "instances": ["VI_2", "VI_1"]}])
    doc["virtual_server"][0]["real_server"].reverse()
    doc["virtual_server"].reverse()
    d = diff(load(base()), load(doc))
    assert not d


def test_track_script_weight_change_reaches_the_instances_using_it() -> None:
    doc = base(track_script=[{"name": "chk", "script": "/bin/true", "weight": -20}])
    doc["vrrp_instance"][0]["track_scripts"] = ["chk"]
    before = base()
    before["vrrp_instance"][0]["track_scripts"] = ["chk"]
    d = diff(load(before), load(doc))
    assert d.track_scripts == Changes(changed=("chk",))
    change = d.instance_change("VI_1")
    assert change is not None and change.fields == ("track_scripts",)


def test_real_server_weight_edit_is_one_changed_real_server() -> None:
    doc = base()
    doc["virtual_server"][0]["real_server"][1]["weight"] = 5
    d = diff(load(base()), load(doc))
    assert d.virtual_servers == Changes(changed=(HTTP,))
    (change,) = d.service_changes
    assert change.key == HTTP
    assert change.fields == ()
    rs_key = (ipaddress.ip_address("203.0.113.12"), 80)
    assert change.real_servers == Changes(changed=(rs_key,))
    assert d.service_change(MARK) is None


def test_real_server_added_and_removed() -> None:
    doc = base()
    doc["virtual_server"][0]["real_server"] = [
        {"address": "203.0.113.12:80"},
        {"address": "203.0.113.13:80"},
    ]
    change = diff(load(base()), load(doc)).service_change(HTTP)
    assert change is not None
    assert change.real_servers == Changes(
        added=((ipaddress.ip_address("203.0.113.13"), 80),),
        removed=((ipaddress.ip_address("203.0.113.11"), 80),),
    )


def test_service_field_change_and_moved_service() -> None:
    doc = base()
    doc["virtual_server"][0]["scheduler"] = "rr"
    doc["virtual_server"][1]["fwmark"] = 8
    d = diff(load(base()), load(doc))
    assert d.virtual_servers == Changes(
        added=(ServiceKey.mark(8),), removed=(MARK,), changed=(HTTP,)
    )
    change = d.service_change(HTTP)
    assert change is not None
    assert change.fields == ("scheduler",)
    assert change.real_servers == Changes()


def test_global_ipvs_and_track_file_sections() -> None:
    doc = base(
        ipvs={"own_whole_table": True, "timeout_udp": 60},
        track_file=[{"name": "maint", "path": "/run/maint"}],
    )
    doc["global"] = {"log_level": "debug"}
    d = diff(load(base()), load(doc))
    assert d.global_fields == ("log_level",)
    assert d.ipvs_fields == ("own_whole_table", "timeout_udp_s")
    assert d.track_files == Changes(added=("maint",))
    assert d
    back = diff(load(doc), load(base()))
    assert back.track_files == Changes(removed=("maint",))


# --------------------------------------------------------------------------- properties

POOL_INSTANCES = [
    inst(name=f"VI_{n}", vrid=n, priority=p, virtual_addresses=[f"192.0.2.{n}"])
    for n in range(1, 7)
    for p in (100, 150)
]
POOL_SERVICES = [
    vs(address=f"198.51.100.10:{port}", scheduler=sched, real_server=rs)
    for port in (80, 443, 8080)
    for sched in ("wlc", "rr")
    for rs in ([{"address": f"203.0.113.1:{port}"}], [{"address": f"203.0.113.2:{port}"}], [])
]


@st.composite
def configs(draw: st.DrawFn) -> Config:
    instances = draw(st.lists(st.sampled_from(POOL_INSTANCES), max_size=5))
    services = draw(st.lists(st.sampled_from(POOL_SERVICES), max_size=4))
    # Keep one variant per name / per service key, as a valid file would.
    unique_instances = {i["name"]: i for i in instances}
    unique_services = {s["address"]: s for s in services}
    return load(
        {
            "vrrp_instance": list(unique_instances.values()),
            "virtual_server": list(unique_services.values()),
        }
    )


def equivalent(a: Config, b: Config) -> bool:
    """Equal up to the order of instances, services and real servers (what diff ignores)."""

    def services(c: Config) -> set[Any]:
        return {
            (dataclasses.replace(v, real_servers=()), frozenset(v.real_servers))
            for v in c.virtual_servers
        }

    return set(a.vrrp_instances) == set(b.vrrp_instances) and services(a) == services(b)


@settings(max_examples=200, deadline=None)
@given(configs(), configs())
def test_diff_properties(a: Config, b: Config) -> None:
    forward, backward = diff(a, b), diff(b, a)
    assert not diff(a, a)
    assert bool(forward) == (not equivalent(a, b))
    # Added one way is removed the other way; changed is symmetric.
    assert set(forward.vrrp_instances.added) == set(backward.vrrp_instances.removed)
    assert set(forward.vrrp_instances.changed) == set(backward.vrrp_instances.changed)
    assert set(forward.virtual_servers.added) == set(backward.virtual_servers.removed)
    assert set(forward.virtual_servers.changed) == set(backward.virtual_servers.changed)
    # Applying the diff to a's names gives b's names.
    names_a = {i.name for i in a.vrrp_instances}
    names_b = {i.name for i in b.vrrp_instances}
    d = forward.vrrp_instances
    assert (names_a - set(d.removed)) | set(d.added) == names_b
    # Changed instances really differ, unchanged ones in both really are equal.
    for name in names_a & names_b:
        assert (name in d.changed) == (a.instance(name) != b.instance(name))
    keys_a = {v.key for v in a.virtual_servers}
    keys_b = {v.key for v in b.virtual_servers}
    s = forward.virtual_servers
    assert (keys_a - set(s.removed)) | set(s.added) == keys_b
    assert {c.key for c in forward.service_changes} == set(s.changed)
