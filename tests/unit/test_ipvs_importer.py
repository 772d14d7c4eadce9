"""Importer: ipvsadm rules -> configuration TOML that loads back to the same IPVS table."""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hadirector.errors import ConfigError
from hadirector.ipvs import model as m
from hadirector.ipvs.importer import import_rules, parse_rules, toml_string
from hadirector.ipvs.save import format_table
from tests.unit.ipvsadm_scripts import EDITS, SCRIPT

try:
    from hadirector.config.load import load_text
except ImportError:  # pragma: no cover - the loader is part of the package
    load_text = None  # type: ignore[assignment]

needs_loader = pytest.mark.skipif(load_text is None, reason="hadirector.config.load missing")


def _loaded_table(toml_text: str) -> dict[m.ServiceKey, m.Entry]:
    assert load_text is not None
    config = load_text(toml_text)
    return m.desired_from_config(config.virtual_servers)


def _round_trip(rules: str) -> tuple[str, dict[m.ServiceKey, m.Entry]]:
    """The TOML for ``rules``, after checking it loads back to the table ipvsadm would build."""
    toml_text = import_rules(rules)
    expected = parse_rules(rules)
    got = _loaded_table(toml_text)
    assert m.tables_equal(got, expected), (toml_text, got, expected)
    return toml_text, expected


# --- realistic ipvsadm-save text ------------------------------------------------------------

NAT_SAVE = """\
-A -t 192.0.2.10:80 -s wlc
-a -t 192.0.2.10:80 -r 10.1.0.11:8080 -m -w 1
-a -t 192.0.2.10:80 -r 10.1.0.12:8080 -m -w 3
-A -t 192.0.2.10:443 -s wrr
-a -t 192.0.2.10:443 -r 10.1.0.11:8443 -m -w 100
-a -t 192.0.2.10:443 -r 10.1.0.12:8443 -m -w 0
"""

DR_SAVE = """\
-A -t 192.0.2.20:80 -s sh -b sh-fallback,sh-port
-a -t 192.0.2.20:80 -r 198.51.100.21:80 -g -w 1
-a -t 192.0.2.20:80 -r 198.51.100.22:80 -g -w 1
-A -u [2001:db8::20]:53 -s mh -o -b mh-port
-a -u [2001:db8::20]:53 -r [2001:db8:5::21]:53 -g -w 1
"""

TUN_SAVE = """\
-A -t 192.0.2.30:443 -s rr
-a -t 192.0.2.30:443 -r 203.0.113.31:443 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum
-a -t 192.0.2.30:443 -r 203.0.113.32:443 -i -w 2 --tun-type gue --tun-port 6080 --tun-csum
-A -t 192.0.2.31:80 -s rr
-a -t 192.0.2.31:80 -r 203.0.113.33:80 -i -w 1 --tun-type ipip
"""

# persistent client connection: every port of the VIP, clients stick for an hour
PCC_SAVE = """\
-A -t 192.0.2.40:0 -s wlc -p 3600
-a -t 192.0.2.40:0 -r 198.51.100.41:0 -g -w 1
-a -t 192.0.2.40:0 -r 198.51.100.42:0 -g -w 1
"""

# persistent firewall-mark service, clients grouped per /24 (IPv4) and /64 (IPv6)
PFMC_SAVE = """\
-A -f 7 -s rr -p 1800 -M 255.255.255.0
-a -f 7 -r 198.51.100.51:0 -g -w 1
-a -f 7 -r 198.51.100.52:0 -g -w 1
-A -f 8 -6 -s lc -p 600 -M 64
-a -f 8 -6 -r [2001:db8:5::51]:0 -g -w 1
"""


@needs_loader
def test_nat_save() -> None:
    toml_text, table = _round_trip(NAT_SAVE)
    data = tomllib.loads(toml_text)
    vs = data["virtual_server"]
    assert [v["address"] for v in vs] == ["192.0.2.10:80", "192.0.2.10:443"]
    assert all(v["forwarding"] == "nat" and v["protocol"] == "tcp" for v in vs)
    assert [r["address"] for r in vs[0]["real_server"]] == ["10.1.0.11:8080", "10.1.0.12:8080"]
    assert [r["weight"] for r in vs[1]["real_server"]] == [100, 0]
    assert all("forwarding" not in r for v in vs for r in v["real_server"])
    # and it prints back as it came
    assert format_table(table) == NAT_SAVE


@needs_loader
def test_dr_save_with_scheduler_flags_ipv6_and_one_packet() -> None:
    toml_text, table = _round_trip(DR_SAVE)
    vs = tomllib.loads(toml_text)["virtual_server"]
    assert vs[0]["scheduler_flags"] == ["sh-fallback", "sh-port"]
    assert vs[0]["forwarding"] == "dr"
    assert vs[1]["address"] == "[2001:db8::20]:53"
    assert vs[1]["protocol"] == "udp"
    assert vs[1]["one_packet"] is True
    assert vs[1]["real_server"][0]["address"] == "[2001:db8:5::21]:53"
    assert format_table(table) == DR_SAVE


@needs_loader
def test_tunnel_save() -> None:
    toml_text, table = _round_trip(TUN_SAVE)
    vs = tomllib.loads(toml_text)["virtual_server"]
    assert vs[0]["forwarding"] == "tun"
    assert (vs[0]["tunnel_type"], vs[0]["tunnel_port"], vs[0]["tunnel_flags"]) == (
        "gue",
        6080,
        ["csum"],
    )
    assert vs[1]["tunnel_type"] == "ipip"
    assert "tunnel_port" not in vs[1] and "tunnel_flags" not in vs[1]
    assert format_table(table) == TUN_SAVE


@needs_loader
def test_pcc_save() -> None:
    toml_text, table = _round_trip(PCC_SAVE)
    vs = tomllib.loads(toml_text)["virtual_server"][0]
    assert vs["address"] == "192.0.2.40:0"
    assert vs["persistence_timeout"] == 3600
    assert "persistence_netmask" not in vs
    assert format_table(table) == PCC_SAVE


@needs_loader
def test_pfmc_save_with_netmask() -> None:
    toml_text, table = _round_trip(PFMC_SAVE)
    v4, v6 = tomllib.loads(toml_text)["virtual_server"]
    assert (v4["fwmark"], v4["family"]) == (7, "inet")
    assert v4["persistence_netmask"] == "255.255.255.0"
    assert [r["address"] for r in v4["real_server"]] == ["198.51.100.51", "198.51.100.52"]
    assert (v6["fwmark"], v6["family"], v6["persistence_netmask"]) == (8, "inet6", 64)
    assert format_table(table) == PFMC_SAVE


# --- command lines --------------------------------------------------------------------------


@needs_loader
def test_script_with_long_options_bundles_comments_and_edits() -> None:
    # the backslash continuation in SCRIPT is a Python one: the line arrives joined
    toml_text, table = _round_trip(SCRIPT)
    k60 = m.ServiceKey.virtual("tcp", "192.0.2.60", 80)
    k61 = m.ServiceKey.virtual("tcp", "192.0.2.61", 25)
    k62 = m.ServiceKey.virtual("udp", "192.0.2.62", 53)
    assert list(table) == [k60, k61, k62]
    assert table[k60].service.scheduler == "wlc"  # -E replaced it
    assert table[k60].dests == {
        m.DestKey("198.51.100.61", 80): m.Dest(m.FWD_DROUTE, 2),
        m.DestKey("198.51.100.62", 80): m.Dest(m.FWD_DROUTE, 4, 1000, 800),
        m.DestKey("198.51.100.63", 80): m.Dest(m.FWD_MASQ, 1, 50, 0),
    }
    # bare -p: ipvsadm 1.31 sets 360 s (its manual says 300)
    assert table[k61].service == m.Service("lc", m.SVC_F_PERSISTENT, 360, 0xFFFFFFFF)
    assert table[k61].dests == {m.DestKey("198.51.100.64", 25): m.Dest(m.FWD_TUNNEL, 1)}
    assert table[k62] == m.Entry(m.Service("sed", 0, 0, 0xFFFFFFFF), {})  # -D then -A
    vs = tomllib.loads(toml_text)["virtual_server"]
    # two of three servers route directly: the service says dr, the third overrides
    assert vs[0]["forwarding"] == "dr"
    assert [r.get("forwarding") for r in vs[0]["real_server"]] == [None, None, "nat"]
    assert vs[0]["real_server"][1]["upper_threshold"] == 1000
    assert vs[0]["real_server"][1]["lower_threshold"] == 800
    assert "forwarding" not in vs[2]  # no real servers, nothing to say


def test_dr_and_tunnel_servers_take_the_service_port() -> None:
    table = parse_rules(
        "-A -t 192.0.2.1:80\n"
        "-a -t 192.0.2.1:80 -r 198.51.100.1:8080 -g\n"
        "-a -t 192.0.2.1:80 -r 198.51.100.2:8080 -m\n"
    )
    dests = table[m.ServiceKey.virtual("tcp", "192.0.2.1", 80)].dests
    assert set(dests) == {m.DestKey("198.51.100.1", 80), m.DestKey("198.51.100.2", 8080)}


def test_every_bad_line_is_reported() -> None:
    rules = "\n".join(
        [
            "-A -t 192.0.2.1:80 -s rr",  # 1 fine
            "-A -t 192.0.2.1:80 -s rr",  # 2 duplicate
            "-A -t 192.0.2.2:80 -Q",  # 3 unknown option
            "-a -t 192.0.2.9:80 -r 198.51.100.1",  # 4 no such service
            "-A -t www.example.org:80",  # 5 host name
            "-A -t 192.0.2.3:http",  # 6 port name
            "-L -n",  # 7 not a rule
            "--start-daemon master",  # 8 not a rule
            "-a -t 192.0.2.1:80 -r 198.51.100.1 -i --tun-type vxlan",  # 9 bad tunnel type
            "-a -t 192.0.2.1:80 -r 198.51.100.2 -g -w -1",  # 10 bad weight
            "-A -t 192.0.2.4:80 -p 0",  # 11 bad timeout
            "-A -t 192.0.2.5:80 -M 255.0.255.0 -p",  # 12 non-contiguous mask
            "-a -t 192.0.2.1:80 -r 198.51.100.3 -m -g",  # 13 two methods
            "-A -t 192.0.2.6:80 -s rr -b sh-nope",  # 14 bad flag
            '-A -t "192.0.2.7:80',  # 15 unbalanced quote
            "-A -t 192.0.2.8:80 -s",  # 16 missing value
            "-a -t 192.0.2.1:80 -r 198.51.100.4 -i --tun-type gue",  # 17 gue needs port
        ]
    )
    with pytest.raises(ConfigError) as info:
        import_rules(rules)
    text = str(info.value)
    lines = [p.path for p in info.value.problems]
    assert lines == [f"line {n}" for n in range(2, 18)], text
    assert "line 3: unknown option -Q" in text
    assert "line 7: -L: not a rule" in text
    assert "line 8: --start-daemon: not a rule" in text


@needs_loader
def test_what_the_configuration_cannot_express_is_reported_by_line() -> None:
    rules = "\n".join(
        [
            "-A -t 192.0.2.1:80 -s rr --pe sip -p 60",  # 1 persistence engine
            "-A -t 192.0.2.2:80 -s rr -b flag-1",  # 2 flag for a scheduler without flags
            "-A -t 192.0.2.3:80 -s rr",
            "-a -t 192.0.2.3:80 -r 198.51.100.1 -i --tun-type ipip",  # 4 (reported on 3)
            "-a -t 192.0.2.3:80 -r 198.51.100.2 -i --tun-type gre --tun-csum",
        ]
    )
    with pytest.raises(ConfigError) as info:
        import_rules(rules)
    assert [p.path for p in info.value.problems] == ["line 1", "line 2", "line 3"]
    # problems the loader finds come back with the rule's line too
    with pytest.raises(ConfigError) as info:
        import_rules("-A -t 192.0.2.1:80 -s nosuchsched\n-A -t 192.0.2.2:80 -o\n")
    paths = [p.path for p in info.value.problems]
    assert paths == ["line 1", "line 2"], str(info.value)
    assert "scheduler" in info.value.problems[0].message
    assert "one_packet" in info.value.problems[1].message


def test_empty_input_gives_empty_toml() -> None:
    assert import_rules("# nothing\n\n", header=False) == ""
    assert parse_rules("-A -t 192.0.2.1:80\n-C\n") == {}


@given(st.text())
def test_toml_string_round_trips(text: str) -> None:
    assert tomllib.loads(f"x = {toml_string(text)}")["x"] == text


# --- property: any configurable table survives save -> import -> load ------------------------

_v4_host = st.ip_addresses(v=4, network="198.51.100.0/24").map(str)
_v6_host = st.ip_addresses(v=6, network="2001:db8:5::/120").map(str)


@st.composite
def _configurable_entry(draw: st.DrawFn) -> tuple[m.ServiceKey, m.Entry]:
    family = draw(st.sampled_from([4, 6]))
    persistent = draw(st.booleans())
    if draw(st.booleans()):
        key = m.ServiceKey.mark(draw(st.integers(1, 2**32 - 1)), family)
    else:
        vip = draw(
            st.ip_addresses(v=family, network="192.0.2.0/24" if family == 4 else "2001:db8::/120")
        )
        port = draw(st.integers(0 if persistent else 1, 65535))
        key = m.ServiceKey.virtual(draw(st.sampled_from(["tcp", "udp", "sctp"])), str(vip), port)
    scheduler = draw(st.sampled_from(["rr", "wrr", "wlc", "lc", "sh", "mh", "fo", "twos"]))
    flags = 0
    if scheduler in ("sh", "mh"):
        flags |= draw(st.sampled_from([0, m.SVC_F_SCHED1, m.SVC_F_SCHED2, 0x18]))
    if key.is_fwmark or key.protocol == m.IPPROTO_UDP:
        flags |= draw(st.sampled_from([0, m.SVC_F_ONEPACKET]))
    timeout_s, netmask = 0, m.default_netmask(family)
    if persistent:
        flags |= m.SVC_F_PERSISTENT
        timeout_s = draw(st.integers(1, 86400 * 31))
        prefix = draw(st.integers(1, 32 if family == 4 else 128))
        netmask = m.netmask_from_prefix(family, prefix)
    service = m.Service(scheduler, flags, timeout_s, netmask)
    tun = (
        draw(st.sampled_from([m.TUN_TYPE_IPIP, m.TUN_TYPE_GUE, m.TUN_TYPE_GRE])),
        draw(st.integers(1, 65535)),
        draw(st.sampled_from([0, m.TUN_F_CSUM, m.TUN_F_REMCSUM])),
    )
    if tun[0] == m.TUN_TYPE_GRE and tun[2] == m.TUN_F_REMCSUM:
        tun = (tun[0], tun[1], m.TUN_F_CSUM)
    hosts = draw(st.lists(_v4_host if family == 4 else _v6_host, unique=True, max_size=4))
    dests: dict[m.DestKey, m.Dest] = {}
    for host in hosts:
        method = draw(st.sampled_from([m.FWD_MASQ, m.FWD_DROUTE, m.FWD_TUNNEL]))
        if key.is_fwmark:
            port = draw(st.sampled_from([0, 80]))
        elif method == m.FWD_MASQ:
            port = draw(st.integers(1 if key.port else 0, 65535))
        else:
            port = key.port
        weight = draw(st.integers(0, 2**31 - 1))
        dest = (
            m.Dest(method, weight, 0, 0, *tun) if method == m.FWD_TUNNEL else m.Dest(method, weight)
        )
        dests[m.DestKey(host, port)] = dest
    return key, m.Entry(service, dests)


@needs_loader
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_configurable_entry(), max_size=4, unique_by=lambda e: e[0]))
def test_any_configurable_table_survives_save_import_load(
    entries: list[tuple[m.ServiceKey, m.Entry]],
) -> None:
    table = dict(entries)
    saved = format_table(table)
    assert m.tables_equal(parse_rules(saved), table)
    assert m.tables_equal(_loaded_table(import_rules(saved)), table)


def test_marks_above_2_31_read_back_as_ipvsadm_prints_them() -> None:
    # ipvsadm -S prints marks with %d
    table = {m.ServiceKey.mark(0xFFFFFFFE): m.Entry(m.Service("rr"), {})}
    saved = format_table(table)
    assert saved == "-A -f -2 -s rr\n"
    assert parse_rules(saved) == {m.ServiceKey.mark(0xFFFFFFFE): m.Entry(m.Service("rr"), {})}


def test_edits_replace_every_attribute_with_ipvsadm_defaults() -> None:
    # as ipvsadm 1.31 does on the real kernel (test_ipvs_save_kernel checks the same text)
    table = parse_rules(EDITS)
    web = table[m.ServiceKey.virtual("tcp", "192.0.2.1", 80)]
    assert web.service == m.Service("wlc", 0, 0, 0xFFFFFFFF)
    assert web.dests == {
        m.DestKey("198.51.100.1", 8080): m.Dest(m.FWD_MASQ, 1),
        m.DestKey("198.51.100.2", 80): m.Dest(m.FWD_DROUTE, 3),
    }
    assert table[m.ServiceKey.virtual("tcp", "192.0.2.2", 80)].service == m.Service("rr")
    assert table[m.ServiceKey.mark(3)].dests == {
        m.DestKey("198.51.100.3", 8080): m.Dest(m.FWD_DROUTE, 1)
    }
    # an edit without -m means -g, which moves the server to the service port: no such server
    with pytest.raises(ConfigError, match=r"line 3: no such real server 198\.51\.100\.1:80"):
        parse_rules(
            "-A -t 192.0.2.1:80\n"
            "-a -t 192.0.2.1:80 -r 198.51.100.1:8080 -m\n"
            "-e -t 192.0.2.1:80 -r 198.51.100.1:8080\n"
        )


# --- property: any text gives TOML that loads, or a ConfigError with one problem per line ----

_WORDS = st.sampled_from(
    ["ipvsadm", "/sbin/ipvsadm", "-A", "-E", "-D", "-a", "-e", "-d", "-C", "-At", "-au", "-t",
     "-u", "-f", "-r", "-s", "-p", "-M", "-w", "-x", "-y", "-g", "-i", "-m", "-o", "-b", "-6",
     "--add-service", "--tcp-service", "--sctp-service", "--real-server", "--scheduler",
     "--persistent", "--tun-type", "--tun-port", "--tun-nocsum", "--tun-csum", "--tun-remcsum",
     "--weight", "--netmask", "--sched-flags", "--numeric", "--bogus", "rr", "wlc", "sh", "mh",
     "gue", "gre", "ipip", "flag-1", "sh-port", "mh-fallback", "0", "1", "80", "65536", "-1",
     "300", "255.255.255.0", "255.0.255.0", "192.0.2.1:80", "192.0.2.1", "198.51.100.1:8080",
     "198.51.100.2", "[2001:db8::1]:80", "[2001:db8::1", "2001:db8::1", "1.2.3.4:x", "7",
     "'quoted word'", '"', "'", "#", "\\", "x"]
)  # fmt: skip
_LINES = st.lists(_WORDS, max_size=8).map(" ".join)


@needs_loader
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_LINES | st.text(max_size=30), max_size=8).map("\n".join))
def test_any_text_gives_loadable_toml_or_a_problem_per_line(text: str) -> None:
    try:
        toml_text = import_rules(text)
    except ConfigError as exc:
        assert exc.problems
        lines = text.splitlines()
        for problem in exc.problems:
            assert problem.message
            word, number = problem.path.split()
            assert word == "line" and 1 <= int(number) <= len(lines), problem
        return
    load_text(toml_text)
