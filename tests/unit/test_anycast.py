"""Anycast: the ``[anycast]`` table and the per-service keys, and the pure decision of which
addresses a director announces (hadirector/anycast/decide.py)."""

from __future__ import annotations

import ipaddress

import pytest

from hadirector.anycast.decide import decide, live_servers
from hadirector.config.load import load_text
from hadirector.config.schema import AnycastSettings, Config
from hadirector.errors import ConfigError
from hadirector.ipvs import model

SERVICE = """
[[virtual_server]]
address = "198.51.100.10:53"
protocol = "udp"
anycast = true
anycast_min_servers = {min}
check = {{ type = "tcp", port = 53 }}
real_server = [
  {{ address = "10.0.1.1:53" }},
  {{ address = "10.0.1.2:53" }},
  {{ address = "10.0.1.3:53", weight = 0 }},
]
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_text(text)
    return [str(p) for p in info.value.problems]


def config(min_servers: int = 2, extra: str = "") -> Config:
    return load_text(SERVICE.format(min=min_servers) + extra)


def key(vs_index: int, rs_index: int, cfg: Config) -> tuple[model.ServiceKey, model.DestKey]:
    vs = cfg.virtual_servers[vs_index]
    return model.service_key_of(vs), model.dest_key_of(vs, vs.real_servers[rs_index])


# -- configuration ------------------------------------------------------------------------


def test_defaults() -> None:
    cfg = load_text("")
    assert cfg.anycast == AnycastSettings(4242, "hdvip0", 2.0)
    assert cfg.anycast_servers == ()
    cfg = config(2, '\n[anycast]\nroute_table = 100\ndevice = "bgp0"\nwithdraw_delay = 0.5\n')
    assert cfg.anycast == AnycastSettings(100, "bgp0", 0.5)
    assert [vs.anycast_min_servers for vs in cfg.anycast_servers] == [2]


def test_anycast_table_problems() -> None:
    found = problems('[anycast]\nroute_table = 254\ndevice = "a/b"\nwithdraw_delay = -1\nx = 1\n')
    assert "anycast.route_table: must not be the kernel's main table (254)" in found
    assert any(p.startswith("anycast.device: must be an interface name") for p in found)
    assert "anycast.withdraw_delay: must be 0..3600 seconds, got -1" in found
    assert any(p.startswith("anycast.x: unknown key") for p in found)


def test_service_problems() -> None:
    found = problems(SERVICE.format(min=4))
    assert found == [
        "virtual_server[0].anycast_min_servers: needs 4 real server(s) up but the service "
        "has 3: it would never be announced"
    ]
    found = problems("[[virtual_server]]\nfwmark = 3\nanycast = true\n")
    assert found == [
        "virtual_server[0].anycast: applies to address services only (an address is announced)"
    ]
    found = problems(
        '[[virtual_server]]\naddress = "192.0.2.1:80"\nanycast_min_servers = 1\n'
        'real_server = [{ address = "10.0.0.1:80" }]\n'
    )
    assert found == ["virtual_server[0].anycast_min_servers: applies only with anycast = true"]


def test_an_address_is_announced_as_a_whole_and_never_by_vrrp() -> None:
    other = '\n[[virtual_server]]\naddress = "198.51.100.10:80"\nreal_server = []\n'
    assert problems(SERVICE.format(min=1) + other) == [
        "virtual_server[1].anycast: must be true like virtual_server[0] on the same address "
        "198.51.100.10 (the address is announced as a whole)"
    ]
    vrrp = (
        '\n[[vrrp_instance]]\nname = "VI_1"\ninterface = "eth0"\nvrid = 1\npriority = 100\n'
        'virtual_addresses = ["198.51.100.10/32"]\n'
    )
    assert problems(SERVICE.format(min=1) + vrrp) == [
        'virtual_server[0].anycast: address 198.51.100.10 is also a VIP of vrrp_instance "VI_1": '
        "an anycast address is announced over BGP, not moved by VRRP"
    ]


# -- the decision -------------------------------------------------------------------------


def test_nothing_before_the_first_round_nor_while_stopping() -> None:
    cfg = config(1)
    (v,) = decide(cfg, set(), set(), first_round_done=False, stopping=False)
    assert (v.announce, v.reason) == (False, "starting: first check round not decided")
    (v,) = decide(cfg, set(), set(), first_round_done=True, stopping=True)
    assert (v.announce, v.reason) == (False, "stopping: withdrawn before exit")


def test_announced_while_enough_servers_are_live() -> None:
    cfg = config(2)
    (v,) = decide(cfg, set(), set(), first_round_done=True, stopping=False)
    assert v.address == ipaddress.ip_address("198.51.100.10")
    # The weight-0 server never counts.
    assert (v.announce, v.reason) == (True, "udp 198.51.100.10:53: 2 of 3 real servers up, needs 2")
    (v,) = decide(cfg, {key(0, 0, cfg)}, set(), first_round_done=True, stopping=False)
    assert (v.announce, v.reason) == (
        False,
        "udp 198.51.100.10:53: 1 of 3 real servers up, needs 2",
    )


def test_a_server_that_never_succeeded_is_not_live() -> None:
    cfg = config(2)
    vs = cfg.virtual_servers[0]
    assert live_servers(vs, set(), {key(0, 1, cfg)}) == 1
    (v,) = decide(cfg, set(), {key(0, 1, cfg)}, first_round_done=True, stopping=False)
    assert not v.announce


def test_every_service_of_an_address_must_be_healthy() -> None:
    extra = (
        '\n[[virtual_server]]\naddress = "198.51.100.10:80"\nanycast = true\n'
        'check = { type = "tcp" }\nreal_server = [{ address = "10.0.2.1:80" }]\n'
        '\n[[virtual_server]]\naddress = "198.51.100.20:80"\nanycast = true\n'
        'real_server = [{ address = "10.0.3.1:80" }]\n'
    )
    cfg = config(1, extra)
    verdicts = decide(cfg, {key(1, 0, cfg)}, set(), first_round_done=True, stopping=False)
    assert [(str(v.address), v.announce) for v in verdicts] == [
        ("198.51.100.10", False),
        ("198.51.100.20", True),  # no check: always live
    ]
    assert verdicts[0].reason == "tcp 198.51.100.10:80: 0 of 1 real servers up, needs 1"


# -- status, metrics, `hadirector status` --------------------------------------------------


def test_status_round_trip_metrics_and_text() -> None:
    import dataclasses

    from hadirector import metrics
    from hadirector.control.client import format_status
    from hadirector.status import AgentStatus, AnycastAddressStatus, AnycastStatus

    anycast = AnycastStatus(
        "hdvip0",
        4242,
        None,
        (
            AnycastAddressStatus("198.51.100.10", True, "udp 198.51.100.10:53: 2 of 2 up"),
            AnycastAddressStatus("198.51.100.20", False, "starting: first check round"),
        ),
    )
    st = AgentStatus("d1", "0", 1, 1.0, False, (), anycast=anycast)
    assert AgentStatus.from_json(st.to_json()) == st
    old = st.to_json()
    del old["anycast"]  # an agent older than anycast
    assert AgentStatus.from_json(old) == dataclasses.replace(st, anycast=AnycastStatus())
    page = metrics.render(st)
    assert 'hadirector_anycast_announced{address="198.51.100.10"} 1' in page
    assert 'hadirector_anycast_announced{address="198.51.100.20"} 0' in page
    text = format_status(st)
    assert "anycast: dev hdvip0 table 4242\n" in text
    assert "  198.51.100.20 withdrawn: starting: first check round\n" in text
    assert "hadirector_anycast" not in metrics.render(AgentStatus("d1", "0", 1, 1.0, False, ()))


# -- check-config's BIRD warnings -----------------------------------------------------------


def test_kernel_tables_read_past_comments() -> None:
    from hadirector.anycast.bird import kernel_tables

    text = (
        "# kernel table 1;\nprotocol kernel k {\n  kernel table 4242;  # ours\n"
        "  /* kernel table 7; */ learn;\n}\nprotocol kernel { kernel   table\n100 ; }\n"
    )
    assert kernel_tables(text) == [4242, 100]


def test_bird_warnings(tmp_path: pytest.TempPathFactory) -> None:
    from pathlib import Path

    from hadirector.anycast.bird import bird_warnings

    base = Path(str(tmp_path))
    cfg = config(1)
    good = base / "good.conf"
    good.write_text("protocol kernel { kernel table 4242; learn; }\n")
    other = base / "other.conf"
    other.write_text("protocol kernel { kernel table 100; learn; }\n")

    def installed(name: str) -> str | None:
        return f"/usr/sbin/{name}"

    assert bird_warnings(cfg, good, installed) == []
    assert bird_warnings(load_text(""), base / "missing.conf", lambda _: None) == []
    (found,) = bird_warnings(cfg, other, installed)
    assert found == (
        f"anycast: {other} names kernel table(s) 100, not [anycast] route_table 4242: "
        "BIRD will not see the announced addresses (`kernel table 4242;`)"
    )
    (found,) = bird_warnings(cfg, base / "missing.conf", installed)
    assert found.startswith(f"anycast: cannot read {base / 'missing.conf'} (")
    (found,) = bird_warnings(cfg, good, lambda _: None)
    assert found == (
        "anycast: BIRD is not installed (no `bird`): nothing will announce the routes the "
        "agent puts in table 4242 (Debian: apt install bird2; see conf/bird/)"
    )


def test_the_shipped_director_conf_matches_the_default_table() -> None:
    from pathlib import Path

    from hadirector.anycast.bird import kernel_tables

    conf = Path(__file__).resolve().parents[2] / "conf" / "bird" / "director.conf"
    # One kernel protocol per address family, both on the agent's table.
    assert kernel_tables(conf.read_text()) == [AnycastSettings().route_table] * 2


# -- consistent choice across directors (mh) ------------------------------------------------


def test_mh_destinations_are_added_in_one_order_whatever_the_file_order() -> None:
    """The kernel's mh table depends on the order destinations were added: directors whose
    files list the real servers differently must still add them in one (sorted) order."""
    from hadirector.ipvs import reconcile

    servers = ["10.0.1.3:53", "10.0.1.10:53", "10.0.1.1:53", "10.0.1.2:53"]

    def ops_for(order: list[str]) -> list[object]:
        listed = ", ".join(f'{{ address = "{a}" }}' for a in order)
        cfg = load_text(
            '[[virtual_server]]\naddress = "198.51.100.10:53"\nprotocol = "udp"\n'
            f'scheduler = "mh"\nanycast = true\nreal_server = [{listed}]\n'
        )
        return list(reconcile.plan(model.desired_from_config(cfg.virtual_servers), {}))

    first = ops_for(servers)
    assert ops_for(list(reversed(servers))) == first
    added = [op.dest_key.address for op in first if isinstance(op, reconcile.AddDest)]
    assert added == ["10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.10"]


# -- connection sync among anycast directors ------------------------------------------------


def test_sync_both_runs_master_and_backup_whatever_vrrp_says() -> None:
    from hadirector.ipvs.types import SyncState
    from hadirector.sync import roles

    cfg = load_text('[ipvs.sync]\ninterface = "eth0"\nboth = true\n')
    settings = cfg.ipvs.sync
    assert settings is not None and settings.both and settings.instance is None
    for state in (None, "BACKUP", "MASTER", "FAULT"):
        wanted = roles.desired(settings, state)
        assert [d.state for d in wanted] == [SyncState.MASTER, SyncState.BACKUP]
    steps = roles.plan([], roles.desired(settings, None))
    assert [type(s).__name__ for s in steps] == ["Start", "Start"]
    assert problems(
        '[ipvs.sync]\ninterface = "eth0"\nboth = true\ninstance = "VI_1"\n'
        '[[vrrp_instance]]\nname = "VI_1"\ninterface = "eth0"\nvrid = 1\npriority = 100\n'
        'virtual_addresses = ["192.0.2.1/32"]\n'
    ) == ["ipvs.sync.instance: not with both = true (no VRRP state decides)"]


def test_the_shipped_anycast_example_loads() -> None:
    from pathlib import Path

    from hadirector.config.load import load_path

    cfg = load_path(Path(__file__).resolve().parents[2] / "conf" / "anycast-director.toml")
    (vs,) = cfg.anycast_servers
    assert (vs.scheduler, vs.anycast_min_servers, len(vs.real_servers)) == ("mh", 2, 3)
    assert cfg.ipvs.sync is not None and cfg.ipvs.sync.both
    assert cfg.vrrp_instances == ()
