"""The keepalived migration against keepalived 2.2.7 itself, in a namespace of the lab.

- Every exported file is one keepalived accepts: ``keepalived -t`` (config test mode)
  exits 0 on the export of a file using every exportable feature, of the repository's
  example files (conf/) and of every keepalived sample's import.
- The importer reads the samples as keepalived does: keepalived's own dump of its
  configuration (``-d``, VRRP process only) names the same instances with the same VRID,
  priority, version, advert interval and preemption as the TOML.
- keepalived resolves smtp_alert (global smtp_alert / smtp_alert_vrrp, per instance and
  sync group, its defaults) as the TOML's smtp_alert says (its dump again).

The namespace holds the interfaces the files name (eth0..eth3, and eth0.1 as a veth of
that name) and nothing else; keepalived runs with its own pid files in the lab's
directory.
"""

from __future__ import annotations

import re
import selectors
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from hadirector.migrate import kaconf
from hadirector.migrate.from_keepalived import convert
from hadirector.migrate.report import Findings
from hadirector.migrate.to_keepalived import export_text
from tests.unit.kasamples import FULL, sample_text, samples

from .lab import Lab, Netns

REPO = Path(__file__).resolve().parents[2]
IFACES = ("eth0", "eth1", "eth2", "eth3", "eth0.1")  # eth0.1: a veth (no 8021q here)


@pytest.fixture
def kans(netns_required: None, keepalived_bin: str) -> Iterator[tuple[Lab, Netns]]:
    with Lab(nodes=(), watch=False) as lab:
        ns = lab.namespace("ka")
        for i, name in enumerate(IFACES):
            ns.ip("link", "add", name, "type", "veth", "peer", "name", f"peer{i}")
            ns.ip("link", "set", name, "up")
            ns.ip("link", "set", f"peer{i}", "up")
            ns.ip("addr", "add", f"10.{200 + i}.0.1/24", "dev", name)
        yield lab, ns


def import_(text: str, source: str, config_id: str = "high") -> tuple[str, Findings]:
    findings = Findings()
    nodes = kaconf.parse(source, kaconf.TextSource({source: text}), config_id, findings)
    return convert(nodes, findings, source), findings


def config_test(lab: Lab, ns: Netns, text: str, name: str) -> subprocess.CompletedProcess[str]:
    path = lab.tmpdir / name
    path.write_text(text)
    log = lab.tmpdir / f"{name}.test.log"
    return ns.run("keepalived", f"--config-test={log}", "-f", str(path), check=False)


def test_exported_files_pass_keepalived_config_test(kans: tuple[Lab, Netns]) -> None:
    lab, ns = kans
    texts = {"full": FULL}
    for example in sorted((REPO / "conf").glob("*.toml")):  # the repository's examples
        texts[example.name] = example.read_text()
    for sample in samples():
        texts[sample.name] = import_(sample_text(sample), sample.name)[0]
    assert len(texts) > 1 or not samples()
    failures = []
    for name, toml_text in texts.items():
        conf = export_text(toml_text, f"{name}.toml", Findings())
        done = config_test(lab, ns, conf, f"{name}.export.conf")
        if done.returncode == 0:
            continue
        log = (lab.tmpdir / f"{name}.export.conf.test.log").read_text(errors="replace")
        if not all(_host_only(line, toml_text) for line in log.splitlines() if line):
            failures.append(f"{name}: exit {done.returncode}\n{log}{done.stdout}{done.stderr}")
    assert not failures, "\n".join(failures)


def _host_only(line: str, toml_text: str) -> bool:
    """A complaint about this host, not the file: a track script whose program the host
    lacks, or scripts without keepalived's script security when the TOML had none either
    (``script_security = false``: written faithfully, keepalived -t exits 6 and says so)."""
    if line.strip() in (
        "SECURITY VIOLATION - scripts are being executed but script_security not enabled.",
        "SECURITY VIOLATION - check scripts are being executed but script_security not enabled.",
    ):
        return not tomllib.loads(toml_text).get("global", {}).get("script_security", False)
    m = re.fullmatch(r"Disabling track script (\S+) since not found/accessible", line.strip())
    if m is None:
        return False
    scripts = {t["name"]: t["script"] for t in tomllib.loads(toml_text).get("track_script", [])}
    command = scripts.get(m.group(1))
    program = command.split()[0] if isinstance(command, str) else None
    return program is not None and not Path(program).exists()


def test_config_test_refuses_a_broken_file(kans: tuple[Lab, Netns]) -> None:
    """The check above can fail: keepalived -t does report an error."""
    lab, ns = kans
    done = config_test(lab, ns, "vrrp_instance X {\n  frobnicate 1\n}\n", "broken.conf")
    assert done.returncode != 0


def keepalived_dump(lab: Lab, ns: Netns, text: str, name: str) -> str:
    """keepalived's -d dump of ``text`` (VRRP only), read until an instance takes a state."""
    conf = lab.tmpdir / name
    conf.write_text(text)
    argv = [
        "keepalived", "-n", "-l", "-D", "-d", "--vrrp", "-i", "high", "-f", str(conf),
        "-p", str(lab.tmpdir / f"{name}.pid"), "-r", str(lab.tmpdir / f"{name}.vrrp.pid"),
    ]  # fmt: skip
    proc = ns.spawn(*argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    out: list[str] = []
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + 60
    pending = b""
    try:
        while time.monotonic() < deadline:
            if not sel.select(timeout=deadline - time.monotonic()):
                continue
            chunk = proc.stdout.read1(65536)  # type: ignore[attr-defined]
            if not chunk:
                break
            pending += chunk
            *lines, pending_last = pending.split(b"\n")
            pending = pending_last
            out.extend(x.decode(errors="replace") for x in lines)
            # the dump comes after start-up; the first state an instance enters follows it
            if any(re.search(r"\) Entering \w+ STATE|Stopped", x) for x in out):
                break
    finally:
        sel.close()
        proc.terminate()
        proc.wait(timeout=15)
    return "\n".join(out)


def instances_in_dump(dump: str) -> dict[str, dict[str, str]]:
    """Each instance's dumped settings; ``Tracked interfaces`` / ``Tracked scripts`` /
    ``Tracked files`` as "name weight N" lines joined by ``;``."""
    found: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    listing: str | None = None
    for line in dump.splitlines():
        text = re.sub(r"^.*?: ", "", line, count=1)  # the time stamp
        m = re.match(r"^ VRRP Instance = (\S+)", text)
        if m:
            current, listing = found.setdefault(m.group(1), {}), None
            continue
        if text.startswith(" ") and not text.startswith("   "):
            current = None
        if current is None:
            continue
        if listing is not None and text.startswith("     "):
            current[listing] = ";".join(filter(None, [current.get(listing), text.strip()]))
            continue
        listing = None
        m = re.match(r"^   (Tracked (?:interfaces|scripts|files)) :$", text)
        if m:
            listing = m.group(1)
            current[listing] = ""
            continue
        keys = "VRRP Version|Virtual Router ID|Priority|Advert interval|Preempt|Password"
        m = re.match(rf"^   ({keys}) = (.*)$", text)
        if m:
            current.setdefault(m.group(1), m.group(2).strip())
    return found


def _interval(text: str) -> float:
    number, unit = text.split()[:2]
    return float(number) / (1000 if unit.startswith("milli") else 1)


def vrrp_samples() -> list[Path]:
    return [p for p in samples() if "vrrp_instance" in sample_text(p)]


@pytest.mark.parametrize("sample", vrrp_samples(), ids=lambda p: p.name)
def test_import_reads_samples_as_keepalived_does(kans: tuple[Lab, Netns], sample: Path) -> None:
    lab, ns = kans
    text = sample_text(sample)
    # keepalived would enter the namespace `net_namespace` names (the importer drops it),
    # and stops without IPVS (this host's kernel has none) when a sync daemon is configured
    runnable = re.sub(r"(?m)^.*\b(net_namespace|lvs_sync_daemon\w*)\b.*$", "", text)
    dump = keepalived_dump(lab, ns, runnable, sample.name)
    theirs = instances_in_dump(dump)
    assert theirs, dump
    toml_text, findings = import_(text, sample.name)
    ours = {i["name"]: i for i in tomllib.loads(toml_text).get("vrrp_instance", [])}
    for name in theirs.keys() - ours.keys():
        assert name in findings.text(), f"{name}: keepalived runs it, not converted or said"
    assert ours.keys() <= theirs.keys()
    for name, inst in ours.items():
        ka = theirs[name]
        assert int(ka["Virtual Router ID"]) == inst["vrid"], name
        assert int(ka["Priority"]) == inst["priority"], name
        assert int(ka["VRRP Version"]) == inst["version"], name
        assert _interval(ka["Advert interval"]) == inst["advert_interval"], name
        assert (ka["Preempt"] == "enabled") == inst.get("preempt", True), name


TRACKING = """
vrrp_script chk {
  script "/bin/true"
  weight -30
}
vrrp_script chk0 {
  script "/bin/true"
}
vrrp_instance A {
  interface eth0
  virtual_router_id 51
  track_interface {
    eth1 weight -10
    eth2
  }
  track_script {
    chk
    chk0
  }
  authentication {
    auth_type PASS
    auth_pass 123456789
  }
  virtual_ipaddress {
    10.9.0.9/32
  }
}
vrrp_instance B {
  interface eth0
  virtual_router_id 52
  track_interface {
    eth1 weight -10
  }
  track_script {
    chk weight 20
  }
  virtual_ipaddress {
    10.9.0.8/32
  }
}
vrrp_instance C {
  state MASTER
  nopreempt
  interface eth1
  virtual_router_id 53
  virtual_ipaddress {
    10.9.1.9/32
  }
}
vrrp_sync_group G {
  group {
    A
  }
}
"""


def test_tracking_and_authentication_as_keepalived_reads_them(kans: tuple[Lab, Netns]) -> None:
    """In a sync group keepalived makes interface weights 0 and drops weighted scripts; it
    uses 8 characters of the password; state MASTER without a priority is 255, and
    nopreempt is reset there. The TOML must say the same."""
    lab, ns = kans
    theirs = instances_in_dump(keepalived_dump(lab, ns, TRACKING, "tracking.conf"))
    doc = tomllib.loads(import_(TRACKING, "tracking.conf")[0])
    weights = {t["name"]: t["weight"] for t in doc["track_script"]}

    def ours(inst: dict[str, object], key: str, default: dict[str, int]) -> str:
        refs = inst.get(key, [])
        assert isinstance(refs, list)
        out = []
        for ref in refs:
            name = ref if isinstance(ref, str) else ref["name"]
            weight = default.get(name, 0) if isinstance(ref, str) else ref["weight"]
            out.append(f"{name} weight {weight}")
        return ";".join(out)

    assert theirs["A"]["Tracked interfaces"] == "eth1 weight 0;eth2 weight 0"
    assert theirs["B"]["Tracked scripts"] == "chk weight 20"
    assert theirs["A"]["Password"] == "12345678"
    assert (theirs["C"]["Priority"], theirs["C"]["Preempt"]) == ("255", "enabled")
    for inst in doc["vrrp_instance"]:
        ka = theirs[inst["name"]]
        assert ours(inst, "track_interfaces", {}) == ka.get("Tracked interfaces", ""), ka
        assert ours(inst, "track_scripts", weights) == ka.get("Tracked scripts", ""), ka
        assert inst.get("auth_pass") == ka.get("Password"), ka
        assert inst["priority"] == int(ka["Priority"]), ka
        assert inst.get("preempt", True) == (ka["Preempt"] == "enabled"), ka


MAIL = """
global_defs {
  notification_email {
    ops@example.org
  }
  notification_email_from lb@example.org
  smtp_server 10.200.0.25 2525
  %s
}
vrrp_instance A {
  interface eth0
  virtual_router_id 61
  virtual_ipaddress {
    10.9.2.1/32
  }
  %s
}
vrrp_instance B {
  interface eth0
  virtual_router_id 62
  virtual_ipaddress {
    10.9.2.2/32
  }
}
vrrp_sync_group G {
  group {
    A
  }
  %s
}
"""


def smtp_in_dump(dump: str) -> dict[str, str]:
    """Each instance's and sync group's dumped smtp_alert ("yes" / "no")."""
    found: dict[str, str] = {}
    current: str | None = None
    for line in dump.splitlines():
        text = re.sub(r"^.*?: ", "", line, count=1)
        m = re.match(r"^ (?:VRRP Instance|VRRP Sync Group) = (\S+)", text)
        if m:
            current = m.group(1).rstrip(",")
            continue
        if text.startswith(" ") and not text.startswith("   "):
            current = None
        m = re.match(r"^   Using smtp notification = (\w+)", text)
        if m and current is not None:
            found[current] = m.group(1)
    return found


@pytest.mark.parametrize(
    ("globals_", "a", "group"),
    [
        ("", "", ""),
        ("smtp_alert", "", ""),
        ("smtp_alert_vrrp false", "", "smtp_alert"),
        ("smtp_alert\n  smtp_alert_vrrp off", "smtp_alert true", ""),
        ("smtp_alert_checker", "", "smtp_alert no"),
    ],
)
def test_smtp_alert_as_keepalived_resolves_it(
    kans: tuple[Lab, Netns], globals_: str, a: str, group: str
) -> None:
    """keepalived's dump says, per instance and sync group, whether it mails; the TOML's
    smtp_alert says the same (global defaults, per-block values, keepalived's defaults)."""
    lab, ns = kans
    text = MAIL % (globals_, a, group)
    dump = keepalived_dump(lab, ns, text, "mail.conf")
    theirs = smtp_in_dump(dump)
    assert theirs.keys() == {"A", "B", "G"}, dump
    doc = tomllib.loads(import_(text, "mail.conf")[0])
    ours = {i["name"]: i["smtp_alert"] for i in doc["vrrp_instance"]}
    ours["G"] = doc["sync_group"][0]["smtp_alert"]
    assert {k: "yes" if v else "no" for k, v in ours.items()} == theirs, dump
    assert doc["alerts"]["email"]["server"] == "10.200.0.25:2525"
