"""``[ipvs.sync]`` loading: defaults, every key's range, who decides (instance, group or the
only instance), and problems reported with their key paths."""

from __future__ import annotations

import ipaddress

import pytest

from hadirector.config.load import load_text
from hadirector.config.schema import SyncDaemonSettings
from hadirector.errors import ConfigError

INSTANCE = """
[[vrrp_instance]]
name = "{name}"
interface = "eth0"
vrid = {vrid}
priority = 100
virtual_addresses = ["192.0.2.{vrid}/24"]
"""


def document(sync: str, instances: tuple[str, ...] = ("web",), group: str = "") -> str:
    text = "".join(INSTANCE.format(name=n, vrid=i + 1) for i, n in enumerate(instances))
    if group:
        text += f'\n[[sync_group]]\nname = "{group}"\ninstances = {list(instances)!r}\n'.replace(
            "'", '"'
        )
    return text + "\n[ipvs.sync]\n" + sync


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_text(text)
    return [str(p) for p in caught.value.problems]


def test_defaults_follow_the_kernel_and_the_only_instance_decides() -> None:
    sync = load_text(document('interface = "eth1"')).ipvs.sync
    assert sync == SyncDaemonSettings(
        interface="eth1",
        instance="web",
        group=None,
        syncid=0,
        maxlen=0,
        mcast_group=ipaddress.IPv4Address("224.0.0.81"),
        mcast_port=8848,
        mcast_ttl=1,
    )


def test_no_table_means_no_sync() -> None:
    assert load_text(INSTANCE.format(name="web", vrid=1)).ipvs.sync is None


def test_every_key_is_read() -> None:
    text = document(
        'interface = "sync0"\ninstance = "db"\nsyncid = 255\nmaxlen = 1400\n'
        'mcast_group = "ff02::81"\nmcast_port = 9000\nmcast_ttl = 3\n',
        instances=("web", "db"),
    )
    sync = load_text(text).ipvs.sync
    assert sync is not None
    assert (sync.interface, sync.instance, sync.group) == ("sync0", "db", None)
    assert (sync.syncid, sync.maxlen, sync.mcast_port, sync.mcast_ttl) == (255, 1400, 9000, 3)
    assert sync.mcast_group == ipaddress.IPv6Address("ff02::81")


def test_bulk_resync_keys() -> None:
    sync = load_text(document('interface = "eth1"')).ipvs.sync
    assert sync is not None and (sync.bulk_resync, sync.resync_timeout_s) == (True, 10.0)
    text = document('interface = "eth1"\nbulk_resync = false\nresync_timeout = 2.5')
    sync = load_text(text).ipvs.sync
    assert sync is not None and (sync.bulk_resync, sync.resync_timeout_s) == (False, 2.5)
    assert any(
        p.startswith("ipvs.sync.resync_timeout:")
        for p in problems(document('interface = "eth1"\nresync_timeout = 0'))
    )
    assert any(
        p.startswith("ipvs.sync.bulk_resync:")
        for p in problems(document('interface = "eth1"\nbulk_resync = "yes"'))
    )


def test_a_sync_group_can_decide() -> None:
    text = document('interface = "eth1"\ngroup = "lvs"', instances=("a", "b"), group="lvs")
    sync = load_text(text).ipvs.sync
    assert sync is not None and (sync.group, sync.instance) == ("lvs", None)


@pytest.mark.parametrize(
    ("sync", "expected"),
    [
        ("syncid = 0", "ipvs.sync.interface: is required"),
        ('interface = "eth1"\nsyncid = 256', "ipvs.sync.syncid: must be 0..255, got 256"),
        ('interface = "eth1"\nsyncid = -1', "ipvs.sync.syncid: must be 0..255, got -1"),
        ('interface = "eth1"\nmcast_port = 0', "ipvs.sync.mcast_port: must be 1..65535, got 0"),
        ('interface = "eth1"\nmcast_ttl = 0', "ipvs.sync.mcast_ttl: must be 1..255, got 0"),
        ('interface = "eth1"\nmaxlen = 70000', "ipvs.sync.maxlen: must be 0..65507, got 70000"),
        (
            'interface = "eth1"\nmcast_group = "192.0.2.1"',
            'ipvs.sync.mcast_group: must be an IPv4 or IPv6 multicast address, got "192.0.2.1"',
        ),
        ('interface = "a/b"', "ipvs.sync.interface: must be an interface name"),
        ('interface = "eth1"\nid = 3', "ipvs.sync.id: unknown key"),
        (
            'interface = "eth1"\ninstance = "nope"',
            'ipvs.sync.instance: no [[vrrp_instance]] named "nope"',
        ),
        ('interface = "eth1"\ngroup = "nope"', 'ipvs.sync.group: no [[sync_group]] named "nope"'),
        (
            'interface = "eth1"\ninstance = "web"\ngroup = "g"',
            "ipvs.sync.group: give either instance or group, not both",
        ),
    ],
)
def test_problems_carry_their_key_path(sync: str, expected: str) -> None:
    found = problems(document(sync))
    assert any(p.startswith(expected) for p in found), found


def test_instance_is_required_with_several_instances() -> None:
    found = problems(document('interface = "eth1"', instances=("a", "b")))
    assert found == [
        "ipvs.sync.instance: is required (or group) when there is not exactly one "
        "vrrp_instance, got 2"
    ]


def test_instance_is_required_without_any_instance() -> None:
    found = problems('[ipvs.sync]\ninterface = "eth1"\n')
    assert found == [
        "ipvs.sync.instance: is required (or group) when there is not exactly one "
        "vrrp_instance, got 0"
    ]


def test_every_problem_at_once() -> None:
    found = problems(document('interface = ""\nsyncid = 300\nmcast_ttl = 0\ninstance = "x"'))
    assert len(found) == 4, found
