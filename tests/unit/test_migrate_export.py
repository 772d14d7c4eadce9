"""``hadirector export keepalived``: TOML -> keepalived.conf, the report, and the round trip.

The round trip: for what keepalived can express, importing the exported file gives the
same configuration back (compared as loaded ``Config`` objects). It is run on a written
file using every exportable feature and on the TOML of every keepalived sample (import,
export, import). tests/netns/test_migrate_keepalived.py has keepalived itself read the
exported files (``keepalived -t``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hadirector.config.load import load_text
from hadirector.config.schema import Config
from hadirector.migrate import kaconf
from hadirector.migrate.from_keepalived import convert
from hadirector.migrate.report import Findings
from hadirector.migrate.to_keepalived import export_text, key_lines
from tests.unit.kasamples import FULL, SAMPLES, sample_text, samples

REPO = Path(__file__).resolve().parents[2]

# Every feature the export can carry to keepalived and back.


def export(text: str, source: str = "in.toml") -> tuple[str, Findings]:
    findings = Findings()
    return export_text(text, source, findings), findings


def import_(text: str, source: str = "out.conf") -> tuple[str, Findings]:
    findings = Findings()
    nodes = kaconf.parse(source, kaconf.TextSource({source: text}), "x", findings)
    return convert(nodes, findings, source), findings


def comparable(config: Config) -> Config:
    """The configuration as keepalived carries it: real servers hold their resolved checks,
    a service's default ``check`` table is gone (the export writes checks per server)."""
    services = tuple(dataclasses.replace(vs, check=None) for vs in config.virtual_servers)
    return dataclasses.replace(config, virtual_servers=services)


def test_full_feature_file_round_trips_exactly() -> None:
    conf, findings = export(FULL)
    assert findings.exit_code == 0, findings.text()
    back, import_findings = import_(conf)
    assert comparable(load_text(back)) == comparable(load_text(FULL)), back
    # only the sync group's kept weights are said (keepalived warns about them itself)
    assert all(
        "sync_group_tracking_weight" in f.message for f in import_findings.items if f.kind != "note"
    )


def test_export_is_deterministic_and_keyword_shaped() -> None:
    first, _ = export(FULL)
    again, _ = export(FULL)
    assert first == again
    assert "vrrp_instance VI_1 {" in first
    assert "lvs_sync_daemon eth1 inst VI_1 id 9 maxlen 1400" in first
    assert "sync_group_tracking_weight" in first  # VI_1 tracks with weights
    assert "script_user nobody nogroup\n    enable_script_security" in first
    assert "status_code 200 204 301-303" in first
    assert "lvs_method TUN type gue port 6080 csum" in first
    assert first.count("inhibit_on_failure") == 1  # the quiesce service's one server


@pytest.mark.parametrize("sample", samples(), ids=lambda p: p.name)
def test_sample_import_export_import_is_the_same_configuration(sample: Path) -> None:
    toml1, _ = import_(sample_text(sample), sample.name)
    conf, _ = export(toml1)
    toml2, _ = import_(conf)
    assert comparable(load_text(toml2)) == comparable(load_text(toml1)), conf


NOT_EXPRESSIBLE = """
[global]
log_level = "debug"

[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
vrid = 1
priority = 100
virtual_addresses = ["10.0.0.1"]
accept_from = ["10.0.0.9"]
hmac_key_file = "/etc/hadirector/key"
v3_checksum_pseudo_header = false
max_adopted_interval = 2

[[virtual_server]]
fwmark = 3
forwarding = "fullnat"
fullnat_source = "10.1.0.1"
match = { address = "10.0.0.1", ports = [80] }
check = { type = "https", port = 443, rise = 3, tls_verify = true, expect_body = "ok" }

  [[virtual_server.real_server]]
  address = "10.1.0.11"
"""


def test_what_keepalived_cannot_express_is_reported_at_its_toml_line() -> None:
    _, findings = export(NOT_EXPRESSIBLE)
    text = findings.text()
    lines = NOT_EXPRESSIBLE.splitlines()

    def line_of(key: str, nth: int = 0) -> int:
        hits = [n for n, x in enumerate(lines, 1) if x.startswith(key)]
        return hits[nth]

    assert f"in.toml:{line_of('accept_from')}: dropped: vrrp_instance[0].accept_from" in text
    assert f"in.toml:{line_of('hmac_key_file')}: dropped: vrrp_instance[0].hmac_key_file" in text
    assert f"in.toml:{line_of('v3_checksum')}: dropped:" in text
    assert f"in.toml:{line_of('max_adopted')}: changed:" in text
    assert f"in.toml:{line_of('forwarding')}: dropped: virtual_server[0].forwarding" in text
    assert f"in.toml:{line_of('match')}: dropped: virtual_server[0].match" in text
    check = line_of("check")
    assert f"in.toml:{check}: changed: virtual_server[0].real_server[0].check.rise" in text
    assert f"in.toml:{check}: dropped: virtual_server[0].real_server[0].check.expect_body" in text
    assert f"in.toml:{check}: dropped: virtual_server[0].real_server[0].check.tls_verify" in text
    assert f"in.toml:{line_of('log_level')}: note: global.log_level" in text
    assert findings.exit_code == 3


def test_state_dir_following_the_control_socket_is_no_separate_note() -> None:
    """An unset state_dir is the socket's directory: only the socket is the file's own."""
    _, findings = export('[global]\ncontrol_socket = "/run/hadirector/web/hadirector.sock"\n')
    text = findings.text()
    assert "global.control_socket" in text
    assert "global.state_dir" not in text


def test_key_lines_follow_nested_arrays_of_tables() -> None:
    text = (
        "[global]\nrouter_id = 'a'\n\n[[virtual_server]]\nfwmark = 1\n"
        "  [[virtual_server.real_server]]\n  address = 'x'\n"
        "  [[virtual_server.real_server]]\n  address = 'y'\n"
        "[[virtual_server]]\nfwmark = 2\n  [[virtual_server.real_server]]\n  weight = 2\n"
        "[ipvs.sync]\ninterface = 'eth1'\n"
    )
    lines = key_lines(text)
    assert lines["global.router_id"] == 2
    assert lines["virtual_server[0].fwmark"] == 5
    assert lines["virtual_server[0].real_server[1].address"] == 9
    assert lines["virtual_server[1].real_server[0].weight"] == 13
    assert lines["ipvs.sync.interface"] == 15


def test_cli_export_exit_codes(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hadirector", *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
            check=False,
        )

    good = tmp_path / "good.toml"
    good.write_text(FULL)
    done = run("export", "keepalived", str(good))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("# Exported from hadirector configuration")
    lossy = tmp_path / "lossy.toml"
    lossy.write_text(NOT_EXPRESSIBLE)
    dropped = run("export", "keepalived", str(lossy))
    assert dropped.returncode == 3
    assert all(re.match(rf"{re.escape(str(lossy))}:\d+: ", x) for x in dropped.stderr.splitlines())
    bad = tmp_path / "bad.toml"
    bad.write_text("[[vrrp_instance]]\nname = 1\n")
    refused = run("export", "keepalived", str(bad))
    assert refused.returncode == 1 and "invalid configuration" in refused.stderr
    assert refused.stdout == ""


def test_samples_exist_for_the_round_trip() -> None:
    if not SAMPLES.is_dir():
        pytest.skip(f"{SAMPLES} absent")
    assert samples()


def test_mail_keepalived_cannot_express_is_reported() -> None:
    toml_text = FULL.replace(
        "timeout = 12\n",
        'timeout = 2.5\nstarttls = true\nca_file = "/etc/ssl/ca.pem"\nusername = "lb"\n'
        'password_file = "/etc/hadirector/pw"\n\n[alerts.webhook]\nurl = "http://h/x"\n',
    )
    lines = key_lines(toml_text)
    conf, findings = export(toml_text)
    assert "    smtp_server 2001:db8::25 2525\n    smtp_connect_timeout 3\n" in conf
    got = {(f.where.line, f.kind, f.message.split(":")[0]) for f in findings.items}
    for key, kind in (
        ("timeout", "changed"),
        ("starttls", "dropped"),
        ("ca_file", "dropped"),
        ("username", "dropped"),
    ):
        assert (lines[f"alerts.email.{key}"], kind, f"alerts.email.{key}") in got
    assert (lines["alerts.webhook"], "dropped", "alerts.webhook") in got
    # every object's smtp_alert is written, keepalived's defaults being others
    assert conf.count("smtp_alert false") == 2 and "smtp_alert true" in conf


def test_no_mail_no_smtp_alert_written() -> None:
    start = FULL.index("[alerts.email]")
    toml_text = FULL[:start] + FULL[FULL.index("[ipvs]") :]
    conf, findings = export(toml_text)
    assert "smtp" not in conf and "notification_email" not in conf
    assert findings.exit_code == 0


def test_pools_groups_and_checkers_are_written_with_keepalived_keywords() -> None:
    conf, findings = export(FULL)
    assert findings.exit_code == 0, findings.text()
    lines = {line.strip() for line in conf.splitlines()}
    for line in (
        "quorum 2",
        "hysteresis 1",
        "quorum_up \"/usr/bin/logger -t lb 'quorum up'\"",
        "quorum_down \"/usr/bin/logger 'quorum down'\"",
        "sorry_server 10.1.0.99 80",
        "sorry_server_lvs_method DR",
        "sorry_server_inhibit",
        "sorry_server 2001:db8::99 443",
        "virtual_server_group web {",
        "10.0.0.70 8080",
        "fwmark 9",
        "virtual_server group web {",
        "digest 9b3a3b6c5d4e2f1a0b9c8d7e6f5a4b3c",
        "status_code 200-204",
        "connect_ip 10.1.0.131",
        "bindto 10.0.0.11",
        "warmup 3",
        "delay_before_retry 2",
        "misc_dynamic",
        "UDP_CHECK {",
        "payload 0001beef",
        "require_reply 00",
        "DNS_CHECK {",
        "type AAAA",
        "name example.org",
        'notify_up "/usr/local/bin/rs-up 10.1.0.31"',
    ):
        assert line in lines, line
    # one virtual_server block for the group's five members
    assert conf.count("virtual_server group web {") == 1
    # both checkers of 10.1.0.31 in its block
    block = conf[conf.index("real_server 10.1.0.31 80") : conf.index("real_server 10.1.0.32 80")]
    assert "HTTP_GET {" in block and "MISC_CHECK {" in block
    assert block.count("url {") == 2
