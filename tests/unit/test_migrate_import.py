"""``hadirector import keepalived``: keepalived.conf grammar, conversion, report, exit status.

keepalived's own sample files (Debian ships them with the keepalived package, which
tools/setup installs) are converted one by one: exit 0 or 3 (never a syntax error or a
crash), the TOML loads, ``check-config`` accepts it (apart from scripts the samples name
that this host does not have), and converting again gives the same bytes.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from hadirector.config.load import load_text
from hadirector.migrate import kaconf
from hadirector.migrate.from_keepalived import convert
from hadirector.migrate.report import Findings, SyntaxProblem
from hadirector.migrate.tomlout import dumps as tomlout_dumps
from tests.unit.kasamples import SAMPLES, sample_text, samples

REPO = Path(__file__).resolve().parents[2]


def hadirector(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hadirector", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        input=stdin,
        check=False,
    )


def convert_files(
    files: dict[str, str], main: str = "keepalived.conf", config_id: str = "main"
) -> tuple[str, Findings]:
    findings = Findings()
    nodes = kaconf.parse(main, kaconf.TextSource(files), config_id, findings)
    return convert(nodes, findings, main), findings


def convert_text(text: str, config_id: str = "main") -> tuple[dict[str, Any], Findings]:
    toml_text, findings = convert_files({"keepalived.conf": text}, config_id=config_id)
    load_text(toml_text)  # always loads
    return tomllib.loads(toml_text), findings


def messages(findings: Findings) -> str:
    return findings.text()


# --- keepalived's samples -------------------------------------------------------------------


@pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"{SAMPLES} absent (keepalived not installed)")
def test_the_samples_are_there() -> None:
    assert len(samples()) >= 20


@pytest.mark.parametrize("sample", samples(), ids=lambda p: p.name)
def test_sample_converts_loads_and_is_stable(sample: Path, tmp_path: Path) -> None:
    name = sample.name.removesuffix(".gz")
    conf = tmp_path / name
    conf.write_text(sample_text(sample))
    first = hadirector("import", "keepalived", str(conf), "--config-id", "high")
    assert first.returncode in (0, 3), first.stderr
    assert "Traceback" not in first.stderr
    for line in first.stderr.splitlines():
        assert re.match(rf"{re.escape(str(conf))}:\d+: (dropped|changed|note): ", line), line
    assert (first.returncode == 3) == any(
        ": dropped: " in x or ": changed: " in x for x in first.stderr.splitlines()
    )
    load_text(first.stdout)
    again = hadirector("import", "keepalived", str(conf), "--config-id", "high")
    assert again.stdout == first.stdout
    assert again.stderr == first.stderr
    out = tmp_path / "out.toml"
    out.write_text(first.stdout)
    check = hadirector("check-config", "--config", str(out))
    if check.returncode != 0:
        # Only scripts the sample names and this host lacks may be missing.
        problems = [x.strip() for x in check.stderr.splitlines()[1:]]
        assert problems, check.stderr
        for problem in problems:
            m = re.fullmatch(r"\S+: (/\S+): no such file", problem)
            assert m is not None, problem
            assert m.group(1) in conf.read_text(), problem


@pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"{SAMPLES} absent (keepalived not installed)")
def test_readme_sample_table_is_current() -> None:
    spec = importlib.util.spec_from_file_location("ka_table", REPO / "tools/keepalived_samples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    readme = (REPO / "README.md").read_text()
    start, end = "<!-- keepalived-samples:start -->\n", "<!-- keepalived-samples:end -->"
    current = readme.split(start, 1)[1].split(end, 1)[0]
    assert current == module.table(), "README table stale: run tools/keepalived_samples.py"


# --- the grammar -----------------------------------------------------------------------------

BASIC = """
global_defs {
    router_id lb1   # a comment
}
vrrp_instance VI_1 {      ! another comment
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass "se cret"
    }
    unicast_src_ip 10.0.0.11
    unicast_peer {
        10.0.0.12
    }
    virtual_ipaddress {
        10.0.0.50/24 dev eth0 label eth0:vip
        10.0.0.51
    }
}
"""


def test_basic_instance_with_keepalived_defaults_written_out() -> None:
    doc, findings = convert_text(BASIC)
    assert doc["global"] == {"router_id": "lb1"}
    (inst,) = doc["vrrp_instance"]
    assert inst["name"] == "VI_1"
    assert inst["interface"] == "eth0"
    assert inst["vrid"] == 51
    assert inst["priority"] == 150
    assert inst["version"] == 2  # keepalived's default vrrp_version
    assert inst["garp_interval"] == 0  # keepalived's vrrp_garp_interval default
    assert inst["unicast_src"] == "10.0.0.11"
    assert inst["unicast_peers"] == ["10.0.0.12"]
    assert inst["virtual_addresses"] == [
        {"address": "10.0.0.50/24", "label": "eth0:vip"},
        "10.0.0.51",
    ]
    # a quoted password with a space is one word; hadirector refuses the space
    assert "auth_pass" not in inst
    assert "auth_pass" in messages(findings)
    assert findings.exit_code == 3


def test_quoted_words_comments_and_braces_on_their_own_lines() -> None:
    text = """
vrrp_script "chk" {
    script "/usr/bin/test -f /run/x # not a comment"
}
vrrp_instance VI_1
{
    interface eth0
    virtual_router_id 7
    virtual_ipaddress { 10.0.0.50 }
    track_script { chk weight -20 }
}
"""
    doc, findings = convert_text(text)
    assert doc["track_script"][0]["script"] == "/usr/bin/test -f /run/x # not a comment"
    assert doc["vrrp_instance"][0]["virtual_addresses"] == ["10.0.0.50"]
    assert doc["vrrp_instance"][0]["track_scripts"] == [{"name": "chk", "weight": -20}]
    assert doc["vrrp_instance"][0]["priority"] == 100  # keepalived's default
    assert findings.exit_code == 0, messages(findings)


def test_conditional_lines_follow_the_config_id() -> None:
    text = """
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 7
@main    priority 200
@backup  priority 100
    unicast_peer {
@^main      10.0.0.11
@^backup    10.0.0.12
    }
    virtual_ipaddress { 10.0.0.50 }
}
"""
    main, _ = convert_text(text, config_id="main")
    backup, _ = convert_text(text, config_id="backup")
    other, _ = convert_text(text, config_id="other")
    assert main["vrrp_instance"][0]["priority"] == 200
    assert main["vrrp_instance"][0]["unicast_peers"] == ["10.0.0.12"]
    assert backup["vrrp_instance"][0]["priority"] == 100
    assert backup["vrrp_instance"][0]["unicast_peers"] == ["10.0.0.11"]
    assert other["vrrp_instance"][0]["priority"] == 100  # the default
    assert other["vrrp_instance"][0]["unicast_peers"] == ["10.0.0.11", "10.0.0.12"]


def test_parameters_recursive_at_use_time_and_conditional() -> None:
    text = """
$BASE=10.2.${SUB}
$SUB=0
@main $PRIO=240
@backup $PRIO=200
$IF_MAIN=@main
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 7
    priority $PRIO
    virtual_ipaddress {
        ${BASE}.100/32
$SUB=10
        ${BASE}.100/32
        $UNDEFINED
    }
}
"""
    doc, findings = convert_text(text, config_id="backup")
    inst = doc["vrrp_instance"][0]
    assert inst["priority"] == 200
    assert inst["virtual_addresses"] == ["10.2.0.100/32", "10.2.10.100/32"]
    assert "$UNDEFINED: not an address" in messages(findings)


def test_multi_line_parameter_definitions_expand_to_blocks() -> None:
    text = """
$INSTANCE= \\
vrrp_instance VI_${NUM} { \\
    interface eth0 \\
    virtual_router_id 1${NUM} \\
    @main priority 130 \\
    @backup priority 120 \\
    virtual_ipaddress { \\
        10.0.${NUM}.254/24 \\
    } \\
}

$NUM=0
$INSTANCE
$NUM=1
$INSTANCE
"""
    doc, _ = convert_text(text, config_id="backup")
    got = [
        (i["name"], i["vrid"], i["priority"], i["virtual_addresses"]) for i in doc["vrrp_instance"]
    ]
    assert got == [("VI_0", 10, 120, ["10.0.0.254/24"]), ("VI_1", 11, 120, ["10.0.1.254/24"])]


def test_seq_and_predefined_parameters() -> None:
    text = """
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 7
    virtual_ipaddress {
~SEQ(N, 1, 2, 5) 10.0.0.${N}
    }
    notify "/bin/echo ${_HASH}${_BANG} ${_INSTANCE}"
}
"""
    doc, _ = convert_text(text, config_id="lb7")
    inst = doc["vrrp_instance"][0]
    assert inst["virtual_addresses"] == ["10.0.0.1", "10.0.0.3", "10.0.0.5"]
    assert inst["notify"] == "/bin/echo #! lb7"


def test_include_with_glob_relative_to_the_including_file() -> None:
    files = {
        "/etc/keepalived/keepalived.conf": "include conf.d/*.conf\ninclude more/{a,b}.inc\n",
        "/etc/keepalived/conf.d/20-vs.conf": (
            "virtual_server 10.0.0.50 80 {\n real_server 10.1.0.1 80 {\n  TCP_CHECK {}\n }\n}\n"
        ),
        "/etc/keepalived/conf.d/10-vrrp.conf": (
            "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 1\n"
            " virtual_ipaddress { 10.0.0.50 }\n include ../prio.inc\n}\n"
        ),
        "/etc/keepalived/prio.inc": "priority 42\n",
        "/etc/keepalived/more/b.inc": "global_defs { router_id from_b }\n",
    }
    text, findings = convert_files(files, "/etc/keepalived/keepalived.conf")
    doc = tomllib.loads(text)
    assert doc["vrrp_instance"][0]["priority"] == 42
    assert doc["global"]["router_id"] == "from_b"
    assert doc["virtual_server"][0]["address"] == "10.0.0.50:80"
    assert findings.exit_code == 0, messages(findings)


def test_missing_include_is_reported_with_its_line_and_the_rest_converts() -> None:
    text, findings = convert_files(
        {
            "k.conf": "global_defs {\n router_id a\n}\ninclude /nonexistent/x.conf\n",
        },
        "k.conf",
    )
    assert tomllib.loads(text)["global"]["router_id"] == "a"
    assert re.search(
        r"^k\.conf:4: dropped: include /nonexistent/x\.conf: cannot read", messages(findings), re.M
    )
    assert findings.exit_code == 3


def test_include_loop_is_reported_not_followed() -> None:
    _, findings = convert_files(
        {"a.conf": "include b.conf\n", "b.conf": "include a.conf\n"}, "a.conf"
    )
    assert "loop" in messages(findings)


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("vrrp_instance VI_1 {\n  interface eth0\n", "k.conf:1:20", "never closed"),
        ("global_defs {\n}\n}\n", "k.conf:3:1", "without a matching"),
        ('vrrp_script x {\n script "/bin/true\n}\n', "k.conf:2:9", "unterminated"),
        ("{\n}\n", "k.conf:1:1", "without a keyword"),
        ("$A=${A}${A}\nx $A\n", "k.conf:2:", "without end"),
    ],
)
def test_syntax_errors_have_file_line_column(text: str, where: str, what: str) -> None:
    with pytest.raises(SyntaxProblem) as exc:
        kaconf.parse("k.conf", kaconf.TextSource({"k.conf": text}), "x", Findings())
    assert str(exc.value).startswith(where), str(exc.value)
    assert what in str(exc.value)


def test_unknown_keywords_are_dropped_with_their_line() -> None:
    doc, findings = convert_text(
        "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 1\n frobnicate 3\n"
        " virtual_ipaddress { 10.0.0.5 }\n}\nfoo_block {\n bar\n}\n"
    )
    text = messages(findings)
    assert "keepalived.conf:4: dropped: unknown keyword 'frobnicate'" in text
    assert "keepalived.conf:7: dropped: unknown keyword 'foo_block'" in text
    assert doc["vrrp_instance"][0]["vrid"] == 1


# --- meaning -------------------------------------------------------------------------------


def test_sync_group_members_tracking_weights_become_zero() -> None:
    text = """
vrrp_script chk { script /bin/true
 weight -30 }
vrrp_track_file maint { file /run/maint
 weight 5 }
vrrp_instance A { interface eth0
 virtual_router_id 1
 virtual_ipaddress { 10.0.0.1 }
 track_script { chk }
 track_file { maint weight 7 }
 track_interface { eth1 weight -10
  eth2 } }
vrrp_instance B { interface eth0
 virtual_router_id 2
 virtual_ipaddress { 10.0.0.2 }
 track_script { chk }
}
vrrp_instance C { interface eth0
 virtual_router_id 3
 virtual_ipaddress { 10.0.0.3 }
 track_script { chk }
}
vrrp_sync_group G { group { A B }
 track_interface { eth9 } }
"""
    doc, findings = convert_text(text)
    a, b, c = doc["vrrp_instance"]
    # keepalived 2.2.7 (-d): interface weights become 0, weighted scripts and files are
    # not tracked at all
    assert "track_scripts" not in a and "track_files" not in a
    assert a["track_interfaces"] == [
        {"name": "eth1", "weight": 0},
        "eth2",
        {"name": "eth9", "weight": 0},
    ]
    assert b["track_interfaces"] == [{"name": "eth9", "weight": 0}]
    assert "track_scripts" not in b
    assert c["track_scripts"] == ["chk"]  # not in a group: the script's weight applies
    assert doc["sync_group"] == [{"name": "G", "instances": ["A", "B"]}]
    assert "keepalived ignores the weight" in messages(findings)
    assert "does not track it at all" in messages(findings)


def test_sync_group_tracking_weight_keeps_weights() -> None:
    text = """
vrrp_instance A { interface eth0
 virtual_router_id 1
 virtual_ipaddress { 10.0.0.1 }
 track_interface { eth1 weight -10 } }
vrrp_sync_group G { group { A }
 sync_group_tracking_weight }
"""
    doc, findings = convert_text(text)
    assert doc["vrrp_instance"][0]["track_interfaces"] == [{"name": "eth1", "weight": -10}]
    assert findings.exit_code == 3


def test_virtual_server_checks_with_keepalived_defaults() -> None:
    text = """
virtual_server 10.0.0.50 80 {
    lb_algo rr
    lb_kind DR
    protocol TCP
    real_server 10.0.0.11 80 {
        weight 3
        HTTP_GET {
            url { path /health }
        }
    }
    real_server 10.0.0.12 80 {
        TCP_CHECK { connect_port 8080 }
    }
    real_server 10.0.0.13 80 {
        inhibit_on_failure
        MISC_CHECK { misc_path "/usr/bin/check 10.0.0.13" }
    }
}
"""
    doc, findings = convert_text(text)
    (vs,) = doc["virtual_server"]
    assert vs["scheduler"] == "rr"
    assert vs["forwarding"] == "dr"
    http, tcp, script = (rs["check"] for rs in vs["real_server"])
    assert http == {
        "type": "http",
        "interval": 60,
        "timeout": 5,
        "rise": 1,
        "fall": 2,
        # keepalived retries 1 s after a failure; hadirector's floor is the timeout
        "delay_before_retry": 5,
        "path": "/health",
        "expect_status": list(range(200, 300)),
    }
    assert tcp == {
        "type": "tcp",
        "port": 8080,
        "interval": 60,
        "timeout": 5,
        "rise": 1,
        "fall": 2,
        "delay_before_retry": 5,
    }
    assert script["type"] == "script" and script["fall"] == 1  # MISC_CHECK's retry is 0
    assert "delay_before_retry" not in script
    assert vs["health_action"] == "remove"  # keepalived removes unless inhibit_on_failure
    assert "inhibit_on_failure differs" in messages(findings)
    assert vs["real_server"][0]["weight"] == 3


def test_inherited_checker_options_and_status_ranges() -> None:
    text = """
virtual_server fwmark 7 {
    delay_loop 6
    inhibit_on_failure
    retry 4
    real_server 10.0.0.11 {
        connect_timeout 2
        SSL_GET {
            connect_port 443
            url { path /h
                  status_code 200 301-302 }
            virtualhost www.example.com
        }
    }
}
"""
    doc, findings = convert_text(text)
    (vs,) = doc["virtual_server"]
    assert vs["fwmark"] == 7 and "protocol" not in vs
    rs = vs["real_server"][0]
    assert rs["address"] == "10.0.0.11"
    assert rs["check"] == {
        "type": "https",
        "port": 443,
        "interval": 6,
        "timeout": 2,
        "rise": 1,
        "fall": 5,
        "delay_before_retry": 2,
        "path": "/h",
        "expect_status": [200, 301, 302],
        "host": "www.example.com",
    }
    assert vs["health_action"] == "quiesce"
    assert findings.exit_code == 0, messages(findings)


def test_http_protocol() -> None:
    text = """
virtual_server 192.0.2.10 80 {
    real_server 10.0.0.11 80 {
        HTTP_GET {
            url { path /h }
            http_protocol 1.1
            virtualhost www.example.com
        }
        HTTP_GET { url { path /a } http_protocol 1.0C }
        HTTP_GET { url { path /b } http_protocol 2 }
    }
}
"""
    doc, findings = convert_text(text)
    first, second, third = doc["virtual_server"][0]["real_server"][0]["check"]
    assert (first["http_version"], first["host"]) == ("1.1", "www.example.com")
    assert "http_version" not in second and "http_version" not in third
    said = messages(findings)
    assert "http_protocol 1.0C: hadirector's HTTP/1.0 request (the default) says" in said
    assert "dropped: http_protocol 2: not 1.0, 1.0C or 1.1; 1.0 used" in said, said


def test_virtual_server_group_expands_to_services() -> None:
    text = """
virtual_server_group G {
    10.0.0.1 80
    10.0.0.5-6 80
    fwmark 3
}
virtual_server group G {
    persistence_timeout
    real_server 10.1.0.1 80 { }
}
"""
    doc, findings = convert_text(text)
    assert doc["virtual_server_group"] == [
        {"name": "G", "addresses": ["10.0.0.1:80", "10.0.0.5:80", "10.0.0.6:80"], "fwmarks": [3]}
    ]
    (vs,) = doc["virtual_server"]
    assert vs["group"] == "G" and "address" not in vs and "fwmark" not in vs
    assert vs["persistence_timeout"] == 360
    config = load_text(tomlout_dumps(doc))
    keys = [str(s.address) if s.address else s.fwmark for s in config.virtual_servers]
    assert keys == ["10.0.0.1", "10.0.0.5", "10.0.0.6", 3]
    assert "group" not in messages(findings)


def test_an_ipv6_range_in_a_virtual_server_group() -> None:
    """keepalived's IPv6 range varies the last group, read in hexadecimal (its own
    ``-t`` refuses 2001:db8::1-10000 as too large, so 10 is 0x10)."""
    text = """
virtual_server_group G6 {
    2001:db8::e-10 80
    2001:db8::a-5 80
}
virtual_server group G6 {
    real_server 2001:db8:1::11 80 { }
}
"""
    doc, findings = convert_text(text)
    assert doc["virtual_server_group"] == [
        {"name": "G6", "addresses": ["[2001:db8::e]:80", "[2001:db8::f]:80", "[2001:db8::10]:80"]}
    ]
    assert "2001:db8::a-5: the range end is not above its start; dropped" in messages(findings)
    config = load_text(tomlout_dumps(doc))
    assert [str(s.address) for s in config.virtual_servers] == [
        "2001:db8::e",
        "2001:db8::f",
        "2001:db8::10",
    ]


def test_virtual_server_group_members_that_resolve_differently_stay_expanded() -> None:
    # ops applies to the mark only (not TCP): the services differ, so they stay apart
    text = """
virtual_server_group G {
    10.0.0.1 53
    fwmark 3
}
virtual_server group G {
    protocol TCP
    ops
    real_server 10.1.0.1 53 { }
}
"""
    doc, findings = convert_text(text)
    assert "virtual_server_group" not in doc
    keys = [vs.get("address", vs.get("fwmark")) for vs in doc["virtual_server"]]
    assert keys == ["10.0.0.1:53", 3]
    assert "written as 2 virtual servers" in messages(findings)


def test_lvs_sync_daemon_syncid_defaults_to_the_vrid() -> None:
    text = """
global_defs { lvs_sync_daemon eth1 VI_2 maxlen 1400 }
vrrp_instance VI_1 { interface eth0
 virtual_router_id 11
 virtual_ipaddress { 10.0.0.1 } }
vrrp_instance VI_2 { interface eth0
 virtual_router_id 12
 virtual_ipaddress { 10.0.0.2 } }
"""
    doc, findings = convert_text(text)
    assert doc["ipvs"]["sync"] == {
        "interface": "eth1",
        "instance": "VI_2",
        "syncid": 12,
        "maxlen": 1400,
    }
    assert findings.exit_code == 0, messages(findings)


def test_state_master_without_priority_and_v6_and_nopreempt() -> None:
    text = """
vrrp_instance V6 {
    state MASTER
    interface eth0
    virtual_router_id 9
    nopreempt
    preempt_delay 10
    advert_int 0.5
    virtual_ipaddress { 2001:db8::1/64 }
}
"""
    doc, findings = convert_text(text)
    inst = doc["vrrp_instance"][0]
    assert inst["priority"] == 255
    assert inst["version"] == 3  # IPv6 is always v3 in keepalived
    assert inst["advert_interval"] == 0.5
    # keepalived resets nopreempt for an address owner (its -d dump says so)
    assert "preempt" not in inst and inst["preempt_delay"] == 10
    assert "state MASTER without priority" in messages(findings)
    assert "nopreempt with priority 255" in messages(findings)


def test_relative_scripts_run_through_sh_and_are_reported() -> None:
    doc, findings = convert_text('vrrp_script c {\n script "killall -0 sshd"\n}\n')
    assert doc["track_script"][0]["script"] == ["/bin/sh", "-c", "killall -0 sshd"]
    assert "keepalived.conf:2: changed:" in messages(findings)


def test_whatever_the_loader_refuses_is_dropped_and_reported() -> None:
    # two instances with the same VRID on one interface: hadirector refuses the second
    text = """
vrrp_instance A { interface eth0
 virtual_router_id 1
 virtual_ipaddress { 10.0.0.1 } }
vrrp_instance B { interface eth0
 virtual_router_id 1
 virtual_ipaddress { 10.0.0.2 } }
"""
    doc, findings = convert_text(text)
    assert [i["name"] for i in doc["vrrp_instance"]] == ["A"]
    assert re.search(r"keepalived.conf:5: dropped: hadirector refuses", messages(findings))


# --- the command ---------------------------------------------------------------------------


def test_cli_exit_codes_and_stdin(tmp_path: Path) -> None:
    good = (
        "vrrp_instance A {\n interface eth0\n virtual_router_id 1\n"
        " virtual_ipaddress { 10.0.0.1 }\n}\n"
    )
    done = hadirector("import", "keepalived", "-", stdin=good)
    assert done.returncode == 0, done.stderr
    assert 'name = "A"' in done.stdout and done.stderr == ""
    dropped = hadirector("import", "keepalived", "-", stdin=good + "net_namespace blue\n")
    assert dropped.returncode == 3
    assert dropped.stderr.startswith("<stdin>:6: dropped: net_namespace")
    broken = tmp_path / "broken.conf"
    broken.write_text("vrrp_instance A {\n")
    bad = hadirector("import", "keepalived", str(broken))
    assert bad.returncode == 1
    assert bad.stderr.strip() == f"{broken}:1:17: '{{' is never closed"
    assert bad.stdout == ""
    missing = hadirector("import", "keepalived", str(tmp_path / "nope.conf"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr


def test_the_labs_keepalived_pair_config_converts_whole() -> None:
    """What tests/netns/keepalived.py writes for a unicast v3 pair in a sync group."""
    text = """
global_defs {
    router_id dir-a
    script_user root
    vrrp_version 3
}
vrrp_sync_group G {
    group {
        VI_0
        VI_1
    }
}
vrrp_instance VI_0 {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 0.5
    version 3
    unicast_src_ip 192.0.2.11
    unicast_peer {
        192.0.2.12
    }
    old_unicast_checksum
    virtual_ipaddress {
        192.0.2.100/24 dev eth0
    }
    accept
    unicast_ttl 255
}
vrrp_instance VI_1 {
    state BACKUP
    interface eth1
    virtual_router_id 52
    priority 150
    advert_int 1
    version 2
    authentication {
        auth_type PASS
        auth_pass pw
    }
    virtual_ipaddress {
        198.51.100.100/24 dev eth1
    }
}
"""
    doc, findings = convert_text(text)
    assert findings.exit_code == 0, messages(findings)
    a, b = doc["vrrp_instance"]
    assert a == {
        "name": "VI_0",
        "interface": "eth0",
        "vrid": 51,
        "priority": 150,
        "version": 3,
        "advert_interval": 0.5,
        "virtual_addresses": ["192.0.2.100/24"],
        "unicast_src": "192.0.2.11",
        "unicast_peers": ["192.0.2.12"],
        "old_unicast_checksum": True,
        "garp_interval": 0,
    }
    assert (b["version"], b["auth_type"], b["auth_pass"]) == (2, "pass", "pw")
    assert doc["sync_group"] == [{"name": "G", "instances": ["VI_0", "VI_1"]}]


def test_a_check_shared_by_every_real_server_is_written_once_on_the_service() -> None:
    text = """
virtual_server 10.0.0.50 80 {
    real_server 10.0.0.11 80 { TCP_CHECK { connect_timeout 3 } }
    real_server 10.0.0.12 80 { TCP_CHECK { connect_timeout 3 } }
}
"""
    toml_text, _ = convert_files({"keepalived.conf": text})
    doc = tomllib.loads(toml_text)
    (vs,) = doc["virtual_server"]
    assert vs["check"] == {
        "type": "tcp",
        "interval": 60,
        "timeout": 3,
        "rise": 1,
        "fall": 2,
        "delay_before_retry": 3,
    }
    assert all("check" not in rs for rs in vs["real_server"])
    config = load_text(toml_text)
    assert all(rs.check is not None for rs in config.virtual_servers[0].real_servers)
    # the service's check table comes before its real servers, indented under the service
    assert toml_text.index("  [virtual_server.check]") < toml_text.index(
        "  [[virtual_server.real_server]]"
    )


# --- e-mail alerts --------------------------------------------------------------------------

_MAIL = """global_defs {
    notification_email {
        ops@example.org
    }
    notification_email_from lb@example.org
    smtp_server %s
    %s
}
vrrp_instance A {
    interface eth0
    virtual_router_id 1
    virtual_ipaddress { 10.0.0.1 }
    %s
}
vrrp_instance B {
    interface eth0
    virtual_router_id 2
    virtual_ipaddress { 10.0.0.2 }
}
vrrp_sync_group G {
    group { A B }
    %s
}
virtual_server 10.0.0.1 80 {
    real_server 10.1.0.1 80 { %s }
    real_server 10.1.0.2 80 { %s }
}
"""


def mail_case(
    server: str = "192.0.2.25",
    globals_: str = "",
    a: str = "",
    group: str = "",
    rs1: str = "",
    rs2: str = "",
) -> tuple[dict[str, Any], Findings]:
    return convert_text(_MAIL % (server, globals_, a, group, rs1, rs2))


def alerts_of(doc: dict[str, Any]) -> tuple[bool, bool, bool, bool]:
    a, b = (i["smtp_alert"] for i in doc["vrrp_instance"])
    return a, b, doc["sync_group"][0]["smtp_alert"], doc["virtual_server"][0]["smtp_alert"]


def test_mail_settings_become_alerts_email_with_keepalived_defaults_written() -> None:
    doc, findings = mail_case()
    assert doc["alerts"]["email"] == {
        "to": ["ops@example.org"],
        "from": "lb@example.org",
        "server": "192.0.2.25:25",  # keepalived's default port
        "timeout": 30,  # keepalived's smtp_connect_timeout default (hadirector's is 10)
    }
    # keepalived mails about real servers by default, not about instances or groups
    assert alerts_of(doc) == (False, False, False, True)
    assert findings.exit_code == 0, messages(findings)


@pytest.mark.parametrize(
    ("globals_", "a", "group", "rs1", "want"),
    [
        ("smtp_alert", "", "", "", (True, True, True, True)),
        ("smtp_alert false", "", "", "", (False, False, False, False)),
        ("smtp_alert_vrrp on", "", "", "", (True, True, True, True)),
        ("smtp_alert_checker no", "", "", "", (False, False, False, False)),
        ("smtp_alert_vrrp\n smtp_alert off", "", "", "", (True, True, True, False)),
        ("smtp_alert_checker true\n smtp_alert no", "", "", "", (False, False, False, True)),
        ("", "smtp_alert", "", "", (True, False, False, True)),
        ("smtp_alert", "smtp_alert false", "smtp_alert no", "", (False, True, False, True)),
        ("", "", "smtp_alert yes", "", (False, False, True, True)),
    ],
)
def test_smtp_alert_global_and_per_block_as_keepalived_resolves_them(
    globals_: str, a: str, group: str, rs1: str, want: tuple[bool, ...]
) -> None:
    doc, findings = mail_case(globals_=globals_, a=a, group=group, rs1=rs1)
    assert alerts_of(doc) == want
    assert findings.exit_code == 0, messages(findings)


def test_real_servers_that_differ_in_smtp_alert_are_reported() -> None:
    doc, findings = mail_case(rs1="smtp_alert false")
    assert doc["virtual_server"][0]["smtp_alert"] is True
    assert re.search(
        r"keepalived.conf:24: changed: 10.0.0.1:80: its real servers differ in smtp_alert",
        messages(findings),
    )
    doc, findings = mail_case(rs1="smtp_alert false", rs2="smtp_alert off")
    assert doc["virtual_server"][0]["smtp_alert"] is False
    assert findings.exit_code == 0, messages(findings)


def test_smtp_server_port_ipv6_timeout_and_what_has_no_equivalent() -> None:
    doc, findings = mail_case(
        server="2001:db8::25 2525",
        globals_="smtp_connect_timeout 900\n smtp_helo_name lb1.example.org\n no_email_faults",
    )
    assert doc["alerts"]["email"]["server"] == "[2001:db8::25]:2525"
    assert doc["alerts"]["email"]["timeout"] == 300
    text = messages(findings)
    assert "keepalived.conf:7: changed: smtp_connect_timeout 900: hadirector waits at most" in text
    assert "keepalived.conf:8: dropped: smtp_helo_name: not supported (hadirector greets" in text
    assert "keepalived.conf:9: dropped: no_email_faults: not supported" in text


def test_no_mail_in_keepalived_is_no_mail_here() -> None:
    # no smtp_server: keepalived sends nothing, whatever smtp_alert says
    text = _MAIL.replace("smtp_server %s\n", "") % ("smtp_alert", "smtp_alert", "", "", "")
    doc, findings = convert_text(text)
    assert "alerts" not in doc
    assert all("smtp_alert" not in i for i in doc["vrrp_instance"])
    assert findings.exit_code == 0
    assert "keepalived.conf:2: note: e-mail settings: keepalived sends no mail" in messages(
        findings
    )


def test_addresses_and_sender_hadirector_cannot_take_are_reported() -> None:
    text = _MAIL.replace("ops@example.org", "ops@example.org\n        acassen").replace(
        "    notification_email_from lb@example.org\n", ""
    )
    doc, findings = convert_text(text % ("192.0.2.25", "", "", "", "", ""))
    assert doc["alerts"]["email"]["to"] == ["ops@example.org"]
    assert doc["alerts"]["email"]["from"] == "keepalived@localhost"
    text = messages(findings)
    assert "keepalived.conf:4: dropped: notification_email acassen: hadirector sends" in text
    assert "keepalived.conf:2: changed: no usable notification_email_from" in text
    bad_from = _MAIL.replace("from lb@example.org", "from lb") % ("192.0.2.25", "", "", "", "", "")
    doc, findings = convert_text(bad_from)
    assert doc["alerts"]["email"]["from"] == "keepalived@localhost"
    assert "keepalived.conf:5: dropped: notification_email_from lb: hadirector sends" in (
        messages(findings)
    )
    only_bare = _MAIL.replace("ops@example.org", "acassen") % ("192.0.2.25", "", "", "", "", "")
    doc, findings = convert_text(only_bare)
    assert "alerts" not in doc
    assert "keepalived.conf:2: dropped: e-mail alerts: no notification_email address" in (
        messages(findings)
    )


def test_quorum_hysteresis_commands_and_sorry_server() -> None:
    text = """
virtual_server 10.0.0.50 80 { lb_kind NAT
 quorum 3
 hysteresis 1
 quorum_up "/usr/bin/logger 'pool up'"
 quorum_down /usr/bin/logger down
 sorry_server 10.1.0.99 8080
 sorry_server_lvs_method DR
 sorry_server_inhibit
 real_server 10.1.0.11 8080 { weight 2 }
 real_server 10.1.0.12 8080 { weight 2 } }
virtual_server fwmark 5 { lb_kind DR
 sorry_server 10.1.0.98 0
 real_server 10.1.0.13 0 { weight 1 } }
"""
    doc, findings = convert_text(text)
    vs, fw = doc["virtual_server"]
    assert (vs["quorum"], vs["hysteresis"]) == (3, 1)
    assert vs["quorum_up"] == "/usr/bin/logger 'pool up'"
    assert vs["quorum_down"] == "/usr/bin/logger down"
    # DR: no port translation, so keepalived's kernel uses the service port
    assert vs["sorry_server"] == {"address": "10.1.0.99:80", "forwarding": "dr", "inhibit": True}
    assert fw["sorry_server"] == {"address": "10.1.0.98"}
    assert "quorum" not in fw and "hysteresis" not in fw
    assert "sorry_server 10.1.0.99 8080 with DR/TUN" in messages(findings)
    assert "quorum" not in messages(findings).replace("quorum_", "")


def test_checkers_several_urls_digest_retry_and_the_newer_check_types() -> None:
    text = """
virtual_server 10.0.0.50 80 {
    delay_loop 10
    real_server 10.0.0.11 80 {
        notify_up "/usr/bin/logger up"
        notify_down /usr/bin/logger down
        HTTP_GET {
            connect_ip 10.0.0.111
            bindto 10.0.0.1
            warmup 4
            connect_timeout 2
            retry 3
            delay_before_retry 3
            url { path /a
                  digest 9B3A3B6C5D4E2F1A0B9C8D7E6F5A4B3C }
            url { path /b
                  status_code 200 301-302 }
        }
        MISC_CHECK {
            misc_path "/usr/bin/w 10.0.0.11"
            misc_timeout 5
            misc_dynamic
        }
    }
    real_server 10.0.0.12 80 {
        UDP_CHECK {
            connect_port 53
            connect_timeout 2
            payload 00 01 ff
            require_reply 00
            delay_before_retry 1
        }
        DNS_CHECK { connect_port 53
            connect_timeout 2
            retry 0 }
        DNS_CHECK { connect_port 53
            connect_timeout 2
            retry 0
            type AAAA
            name example.org }
    }
}
"""
    doc, findings = convert_text(text)
    first, second = doc["virtual_server"][0]["real_server"]
    assert (first["notify_up"], first["notify_down"]) == (
        "/usr/bin/logger up",
        "/usr/bin/logger down",
    )
    http, script = first["check"]  # keepalived needs every checker up, as hadirector does
    assert http == {
        "type": "http",
        "connect_ip": "10.0.0.111",
        "bindto": "10.0.0.1",
        "interval": 10,
        "timeout": 2,
        "rise": 1,
        "fall": 4,
        "delay_before_retry": 3,
        "warmup": 4,
        "urls": [
            {
                "path": "/a",
                "expect_status": list(range(200, 300)),
                "digest": "9b3a3b6c5d4e2f1a0b9c8d7e6f5a4b3c",
            },
            {"path": "/b", "expect_status": [200, 301, 302]},
        ],
    }
    assert script["dynamic_weight"] is True and script["timeout"] == 5
    udp, dns_default, dns = second["check"]
    # an explicit delay below the timeout is raised to it, and said
    assert udp["delay_before_retry"] == 2
    assert (udp["payload"], udp["require_reply"], udp["expect_reply"]) == ("0001ff", True, "00")
    # keepalived's DNS_CHECK defaults (type A, name ".") are hadirector's: nothing written
    assert "query_type" not in dns_default and "query_name" not in dns_default
    assert (dns["query_type"], dns["query_name"]) == ("AAAA", "example.org")
    said = messages(findings)
    assert "delay_before_retry 1: hadirector needs it at least the check timeout" in said
    for word in ("url", "digest", "connect_ip", "bindto", "warmup", "misc_dynamic", "notify"):
        assert word not in said.replace("delay_before_retry 1", ""), said
    config = load_text(tomlout_dumps(doc))
    assert len(config.virtual_servers[0].real_servers[1].extra_checks) == 2
