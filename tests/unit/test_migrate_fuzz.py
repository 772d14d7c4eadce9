"""Property tests of the keepalived import: any text either is a syntax error with a
place, or converts to TOML that loads, the same bytes every time; generated
keepalived-shaped files (odd values included) always convert and load."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hadirector.config.load import load_text
from hadirector.migrate import kaconf
from hadirector.migrate.from_keepalived import convert
from hadirector.migrate.report import Findings, SyntaxProblem

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ALPHABET = 'abcdeiv_0123456789.:/ {}"#!@^$=~()\\\n\t-'


def run(text: str, config_id: str = "a") -> tuple[str, Findings] | SyntaxProblem:
    findings = Findings()
    try:
        nodes = kaconf.parse("k.conf", kaconf.TextSource({"k.conf": text}), config_id, findings)
    except SyntaxProblem as exc:
        return exc
    return convert(nodes, findings, "k.conf"), findings


@SETTINGS
@given(st.text(alphabet=ALPHABET, max_size=300))
def test_any_text_is_a_placed_syntax_error_or_loadable_toml(text: str) -> None:
    first = run(text)
    if isinstance(first, SyntaxProblem):
        assert first.file == "k.conf"
        assert 1 <= first.line <= text.count("\n") + 1
        assert first.column >= 1
        return
    toml_text, findings = first
    load_text(toml_text)
    again = run(text)
    assert not isinstance(again, SyntaxProblem)
    assert again[0] == toml_text and again[1].text() == findings.text()


WORDS = st.sampled_from(
    ["0", "1", "2", "3", "255", "256", "-5", "0.5", "1.5", "40.95", "x", "", "10.0.0.1",
     "2001:db8::1", "10.0.0.1/24", "eth0", "eth1", "MASTER", "BACKUP", "PASS", "AH",
     "/bin/true", "true", "TCP", "UDP", "NAT", "DR", "TUN", "rr", "wlc", "bogus"]
)  # fmt: skip
INSTANCE_KEYS = st.sampled_from(
    ["state", "interface", "virtual_router_id", "priority", "advert_int", "version",
     "nopreempt", "preempt_delay", "unicast_src_ip", "garp_master_delay", "old_unicast_checksum",
     "notify_master", "mcast_src_ip", "use_vmac", "frob"]
)  # fmt: skip
VS_KEYS = st.sampled_from(
    ["lb_algo", "lb_kind", "protocol", "persistence_timeout", "delay_loop", "inhibit_on_failure",
     "alpha", "ops", "retry", "connect_timeout", "quorum"]
)  # fmt: skip


CHECKERS = st.sampled_from(
    ["", "TCP_CHECK { connect_port 81 }", "HTTP_GET { url { path /h } }",
     "MISC_CHECK { misc_path /bin/true }", "PING_CHECK { }", "SSL_GET {\n connect_timeout 90 }"]
)  # fmt: skip


@st.composite
def instance(draw: st.DrawFn, n: int) -> str:
    lines = [f"vrrp_instance VI_{n} {{"]
    for key in draw(st.lists(INSTANCE_KEYS, max_size=8)):
        lines.append(f"  {key} {' '.join(draw(st.lists(WORDS, max_size=2)))}")
    if draw(st.booleans()):
        lines.append(f"  interface eth{n % 2}")
        lines.append(f"  virtual_router_id {n + 1}")
    vips = draw(
        st.lists(st.sampled_from(["10.0.0.1", "10.0.0.2/24", "2001:db8::5", "x"]), max_size=3)
    )
    lines.append("  virtual_ipaddress {")
    lines.extend(f"    {v}" for v in vips)
    lines.append("  }")
    if draw(st.booleans()):
        lines.append(
            "  authentication {\n    auth_type PASS\n    auth_pass " + draw(WORDS) + "\n  }"
        )
    if draw(st.booleans()):
        lines.append("  unicast_peer {\n    " + draw(WORDS) + "\n  }")
    if draw(st.booleans()):
        lines.append("  track_script {\n    chk weight " + draw(WORDS) + "\n  }")
    lines.append("}")
    return "\n".join(lines)


@st.composite
def virtual_server(draw: st.DrawFn) -> str:
    head = draw(
        st.sampled_from(["10.0.0.50 80", "fwmark 3", "10.0.0.50 0", "2001:db8::9 443", "x y"])
    )
    lines = [f"virtual_server {head} {{"]
    for key in draw(st.lists(VS_KEYS, max_size=6)):
        lines.append(f"  {key} {' '.join(draw(st.lists(WORDS, max_size=1)))}")
    for host in draw(
        st.lists(st.sampled_from(["10.1.0.1 80", "10.1.0.2", "2001:db8::7 80"]), max_size=3)
    ):
        check = draw(CHECKERS)
        lines.append(f"  real_server {host} {{\n    weight {draw(WORDS)}\n    {check}\n  }}")
    lines.append("}")
    return "\n".join(lines)


@st.composite
def keepalived_file(draw: st.DrawFn) -> str:
    parts = ["vrrp_script chk {\n  script /bin/true\n  weight " + draw(WORDS) + "\n}"]
    parts += [draw(instance(n)) for n in range(draw(st.integers(0, 3)))]
    if draw(st.booleans()):
        parts.append("vrrp_sync_group G {\n  group {\n    VI_0 VI_1 VI_9\n  }\n}")
    if draw(st.booleans()):
        parts.append(
            "global_defs {\n  lvs_sync_daemon eth1 "
            + draw(WORDS)
            + "\n  vrrp_version "
            + draw(WORDS)
            + "\n}"
        )
    parts += [draw(virtual_server()) for _ in range(draw(st.integers(0, 2)))]
    return "\n".join(parts) + "\n"


@SETTINGS
@given(keepalived_file())
def test_generated_keepalived_files_always_convert_and_load(text: str) -> None:
    result = run(text)
    assert not isinstance(result, SyntaxProblem), (result, text)
    toml_text, findings = result
    load_text(toml_text)
    assert findings.exit_code in (0, 3)
    for f in findings.items:
        assert 1 <= f.where.line <= text.count("\n") + 1 or f.where.line == 0


# --- the round trip, on generated configurations keepalived can express -------------------


@st.composite
def exportable_toml(draw: st.DrawFn) -> str:
    lines: list[str] = []
    n_inst = draw(st.integers(0, 3))
    for n in range(n_inst):
        version = draw(st.sampled_from([2, 3]))
        advert = draw(st.integers(1, 5)) if version == 2 else draw(st.integers(1, 4095)) / 100
        priority = draw(st.integers(1, 254))
        lines += [
            "[[vrrp_instance]]",
            f'name = "VI_{n}"',
            f'interface = "eth{n % 2}"',
            f"vrid = {n + 1}",
            f"priority = {priority}",
            f"version = {version}",
            f"advert_interval = {advert}",
            f"preempt = {'true' if draw(st.booleans()) else 'false'}",
            f'virtual_addresses = ["10.{n}.0.1/24"]',
            "garp_interval = 0.005",
            f"garp_master_repeat = {draw(st.integers(1, 100))}",
            f"garp_master_delay = {draw(st.integers(0, 3600))}",
        ]
        if draw(st.booleans()):
            lines.append(f'unicast_peers = ["10.{n}.0.2"]')
            if version == 3 and draw(st.booleans()):
                lines.append("old_unicast_checksum = true")
        if version == 2 and draw(st.booleans()):
            lines += [
                'auth_type = "pass"',
                f'auth_pass = "{draw(st.sampled_from(["a", "pw12345"]))}"',
            ]
        weight = draw(st.integers(-253, 253))
        lines.append(f'track_interfaces = [{{ name = "eth9", weight = {weight} }}]')
        lines.append("")
    if n_inst and draw(st.booleans()):
        lines += ["[[sync_group]]", 'name = "G"', 'instances = ["VI_0"]', ""]
    for n in range(draw(st.integers(0, 2))):
        forwarding = draw(st.sampled_from(["nat", "dr", "tun"]))
        lines += [
            "[[virtual_server]]",
            f'address = "192.0.2.{n + 1}:80"',
            f'protocol = "{draw(st.sampled_from(["tcp", "udp"]))}"',
            f'scheduler = "{draw(st.sampled_from(["rr", "wrr", "wlc", "lc", "sh"]))}"',
            f'forwarding = "{forwarding}"',
            f'health_action = "{draw(st.sampled_from(["quiesce", "remove"]))}"',
            f"persistence_timeout = {draw(st.sampled_from([0, 60, 300]))}",
        ]
        for r in range(draw(st.integers(0, 3))):
            interval = draw(st.integers(2, 100))
            kind = draw(st.sampled_from(["tcp", "http", "https"]))
            lines += [
                "  [[virtual_server.real_server]]",
                f'  address = "10.9.{n}.{r + 1}:80"',
                f"  weight = {draw(st.integers(0, 1000))}",
                f'  check = {{ type = "{kind}", interval = {interval}, timeout = 1, rise = 1,'
                f" fall = {draw(st.integers(1, 10))} }}",
            ]
        lines.append("")
    return "\n".join(lines)


@SETTINGS
@given(exportable_toml())
def test_generated_exportable_configurations_round_trip(text: str) -> None:
    import dataclasses

    from hadirector.config.schema import Config
    from hadirector.migrate.to_keepalived import export_text

    def comparable(config: Config) -> Config:
        services = tuple(dataclasses.replace(vs, check=None) for vs in config.virtual_servers)
        return dataclasses.replace(config, virtual_servers=services)

    original = load_text(text)
    findings = Findings()
    conf = export_text(text, "in.toml", findings)
    assert findings.exit_code == 0, findings.text()
    back = run(conf)
    assert not isinstance(back, SyntaxProblem), back
    assert comparable(load_text(back[0])) == comparable(original), (conf, back[0])
