"""Property tests for the loader: junk never escapes as anything but ConfigError, the
TOML text path and the parsed-mapping path agree, valid values round trip exactly."""

from __future__ import annotations

import copy
import ipaddress
import tomllib
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hadirector.config import load as config_load
from hadirector.config.load import load_mapping, load_text
from hadirector.config.schema import Config
from hadirector.errors import ConfigError
from tests.unit.configkit import to_toml

REPO = Path(__file__).resolve().parents[2]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SECTION_KEYS = {
    "global": config_load.GLOBAL_KEYS,
    "ipvs": config_load.IPVS_KEYS,
    "vrrp_instance": config_load.INSTANCE_KEYS,
    "sync_group": config_load.GROUP_KEYS,
    "track_script": config_load.SCRIPT_KEYS,
    "track_file": config_load.FILE_KEYS,
    "virtual_server": config_load.VS_KEYS,
}
ALL_KEYS = sorted(
    {k for keys in SECTION_KEYS.values() for k in keys}
    | set(config_load.TOP_KEYS)
    | set(config_load.VIP_KEYS)
    | set(config_load.RS_KEYS)
    | set(config_load.MATCH_KEYS)
    | set(config_load.TRACK_REF_KEYS)
)

# Strings near the valid ones, so the junk gets past type checks into the deeper rules.
PLAUSIBLE = [
    "",
    " ",
    "VI_1",
    "VI_2",
    "G1",
    "chk",
    "eth0",
    "eth1",
    "eth0:vip",
    "lo",
    "192.0.2.1",
    "192.0.2.1/24",
    "192.0.2.1/33",
    "192.0.2.1:80",
    "192.0.2.1:0",
    "192.0.2.1:99999",
    "0.0.0.0",
    "224.0.0.18",
    "2001:db8::1",
    "2001:db8::1/64",
    "[2001:db8::1]:80",
    "[2001:db8::1]",
    "[2001:db8::1",
    "fe80::1%eth0",
    "255.255.255.0",
    "255.0.255.0",
    "/bin/true",
    "/bin/sh -c 'x'",
    "'unclosed",
    "relative.sh",
    "tcp",
    "udp",
    "sctp",
    "nat",
    "dr",
    "tun",
    "fullnat",
    "ipip",
    "gue",
    "gre",
    "csum",
    "remcsum",
    "sh",
    "mh",
    "wlc",
    "sh-port",
    "mh-fallback",
    "inet",
    "inet6",
    "pass",
    "none",
    "info",
    "\x00",
]

text_junk = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, 2, 3, 51, 255, 256, 65535, 65536, 2**31, 2**32, -1, -254]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 0.01, 0.015, 1.0, 1.5, 40.95, 40.96, 1e300, -0.0]),
    st.sampled_from(PLAUSIBLE),
    text_junk,
    st.dates(),
    st.times(),
    st.datetimes(),
)
keys = st.sampled_from(ALL_KEYS) | text_junk


def junk_values(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
        max_leaves=max_leaves,
    )


def section_table(names: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(names) | text_junk, junk_values(), max_size=8)


def virtual_server_table() -> st.SearchStrategy[dict[str, Any]]:
    real = st.dictionaries(st.sampled_from(config_load.RS_KEYS), junk_values(3), max_size=5)
    return st.builds(
        lambda t, rs: {**t, "real_server": rs} if rs is not None else t,
        section_table(config_load.VS_KEYS),
        st.none() | st.lists(real, max_size=3) | junk_values(3),
    )


def documents() -> st.SearchStrategy[dict[str, Any]]:
    sections: dict[str, st.SearchStrategy[Any]] = {
        "global": section_table(config_load.GLOBAL_KEYS) | junk_values(3),
        "ipvs": section_table(config_load.IPVS_KEYS) | junk_values(3),
        "vrrp_instance": st.lists(section_table(config_load.INSTANCE_KEYS), max_size=3)
        | junk_values(3),
        "sync_group": st.lists(section_table(config_load.GROUP_KEYS), max_size=2),
        "track_script": st.lists(section_table(config_load.SCRIPT_KEYS), max_size=2),
        "track_file": st.lists(section_table(config_load.FILE_KEYS), max_size=2),
        "virtual_server": st.lists(virtual_server_table(), max_size=3) | junk_values(3),
    }
    return st.fixed_dictionaries({}, optional=sections)


def outcome(fn: Any, *args: Any) -> Config | list[str]:
    """The loaded config, or the problem list; anything else escapes and fails the test."""
    try:
        return fn(*args)  # type: ignore[no-any-return]
    except ConfigError as exc:
        assert exc.problems, "a ConfigError must carry at least one problem"
        for problem in exc.problems:
            assert problem.message
        return [str(p) for p in exc.problems]


@SETTINGS
@given(documents())
def test_junk_documents_raise_only_config_error(doc: dict[str, Any]) -> None:
    from_mapping = outcome(load_mapping, doc)
    from_text = outcome(load_text, to_toml(doc))
    assert from_mapping == from_text


@SETTINGS
@given(st.text(max_size=200))
def test_random_text_raises_only_config_error(text: str) -> None:
    outcome(load_text, text)


@SETTINGS
@given(st.data())
def test_mutating_a_valid_config_raises_only_config_error(data: st.DataObject) -> None:
    doc = tomllib.loads((REPO / "conf" / "director.toml").read_text())
    # Pick a path to a value somewhere in the document and replace or delete it.
    paths: list[tuple[Any, ...]] = []

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                paths.append((*path, k))
                walk(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                paths.append((*path, i))
                walk(v, (*path, i))

    walk(doc, ())
    mutated = copy.deepcopy(doc)
    path = data.draw(st.sampled_from(paths))
    parent = mutated
    for step in path[:-1]:
        parent = parent[step]
    if data.draw(st.booleans()):
        parent[path[-1]] = data.draw(junk_values(4))
    else:
        del parent[path[-1]]
    result = outcome(load_mapping, mutated)
    if isinstance(result, list):
        # Every problem names a place in the file (or the file as a whole).
        assert all(p for p in result)


@SETTINGS
@given(
    vrid=st.integers(1, 255),
    priority=st.integers(1, 255),
    interval_cs=st.integers(1, 4095),
    preempt=st.booleans(),
    prefix=st.integers(1, 32),
    host=st.integers(1, 2**24 - 2),
)
def test_valid_instance_values_round_trip(
    vrid: int, priority: int, interval_cs: int, preempt: bool, prefix: int, host: int
) -> None:
    address = ipaddress.IPv4Address(int(ipaddress.IPv4Address("10.0.0.0")) + host)
    doc = {
        "vrrp_instance": [
            {
                "name": "VI_1",
                "interface": "eth0",
                "vrid": vrid,
                "priority": priority,
                "advert_interval": interval_cs / 100,
                "preempt": preempt,
                "virtual_addresses": [f"{address}/{prefix}"],
            }
        ]
    }
    vi = load_text(to_toml(doc)).vrrp_instances[0]
    assert (vi.vrid, vi.priority, vi.preempt) == (vrid, priority, preempt)
    assert vi.advert_interval_cs == interval_cs
    assert vi.max_adopted_interval_cs == min(4 * interval_cs, 4095)
    assert vi.virtual_addresses[0].interface == ipaddress.ip_interface(f"{address}/{prefix}")


@SETTINGS
@given(
    port=st.integers(1, 65535),
    weights=st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=5),
    mask=st.integers(1, 32),
    persistence_s=st.integers(0, 2**31 - 1),
)
def test_valid_service_values_round_trip(
    port: int, weights: list[int], mask: int, persistence_s: int
) -> None:
    netmask = str(ipaddress.IPv4Network(f"0.0.0.0/{mask}").netmask)
    doc = {
        "virtual_server": [
            {
                "address": f"198.51.100.10:{port}",
                "persistence_timeout": persistence_s,
                "persistence_netmask": netmask,
                "real_server": [
                    {"address": f"203.0.113.{i + 1}:{port}", "weight": w}
                    for i, w in enumerate(weights)
                ],
            }
        ]
    }
    service = load_text(to_toml(doc)).virtual_servers[0]
    assert service.port == port
    assert service.persistence_timeout_s == persistence_s
    assert service.persistence_netmask == mask
    assert service.persistence_netmask_dotted == netmask
    assert [r.weight for r in service.real_servers] == weights


@SETTINGS
@given(st.floats(min_value=0.01, max_value=40.95))
def test_v3_interval_is_accepted_exactly_on_centisecond_steps(seconds: float) -> None:
    centis = round(seconds * 100)
    on_step = abs(seconds * 100 - centis) <= 1e-6
    assume(on_step or abs(seconds * 100 - centis) > 1e-3)  # keep clear of the tolerance edge
    doc = {
        "vrrp_instance": [
            {
                "name": "VI_1",
                "interface": "eth0",
                "vrid": 1,
                "priority": 100,
                "advert_interval": seconds,
                "virtual_addresses": ["192.0.2.1"],
            }
        ]
    }
    result = outcome(load_mapping, doc)
    if on_step:
        assert isinstance(result, Config)
        assert result.vrrp_instances[0].advert_interval_cs == centis
    else:
        assert result == [
            f"vrrp_instance[0].advert_interval: must be a multiple of 0.01 seconds, got {seconds!r}"
        ]
