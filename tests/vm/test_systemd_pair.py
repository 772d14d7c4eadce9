"""The pair under real systemd: two ``hadirector@`` units in two network namespaces of the VM.

The VM boots systemd as PID 1 (``@pytest.mark.vm(systemd=True)``: ``run-in-vm --systemd``,
one boot for this module). The agent is the Debian package of this tree: ``vm_host_setup``
builds it on the host before the boot (tools/build-deb, versions OLD and NEW, see
tests/debs.py) and the fixture installs OLD with ``dpkg -i`` in the VM's throw-away root: its
postinst creates the ``hadirector`` user, and the shipped units run the agent as that user
with CAP_NET_ADMIN and CAP_NET_RAW only. Topology (namespaces of this module,
documentation addresses only)::

    dir-a eth0 192.0.2.1 (priority 150) ─┐
    dir-b eth0 192.0.2.2 (priority 100) ─┼─ bridge br0 (switch namespace)
    client eth0 192.0.2.50 ─────────────┘     VIP 192.0.2.100, VRRPv3 VRID 51, 1 s adverts

``hadirector@a`` and ``hadirector@b`` run /etc/hadirector/{a,b}.toml, each put in its
namespace by a drop-in (``NetworkNamespacePath=``). The agents run with the shipped unit's
hardening and every feature that needs a privilege: VRRP (raw socket), gratuitous ARP
(packet socket), addresses (netlink), IPVS (generic netlink, ip_vs loaded by the unit's
``ExecStartPre=+``, the rr scheduler by the drop-in README documents; a NAT service with a
script health check, alpha) and nftables (a fwmark service's marking rule), a notify script,
a track script (scripts as the agent's user). The client probes the VIP every 10 ms with
tests/netns/prober.py (every probe numbered and matched: exact counts).

The tests run in file order, each from the steady state (a MASTER, b BACKUP) and back to it:

1. ``systemctl start`` returns once each instance has its first state; b is started before
   its interface exists (a director booting before its network): it is active at once, says
   what it waits for, and comes up as BACKUP once the interface appears.
2. The agent runs as ``hadirector`` with only CAP_NET_ADMIN and CAP_NET_RAW (effective,
   permitted, ambient, bounding); hardening leaves every feature working;
   ``systemd-analyze security`` prints the exposure.
3. ``systemctl reload`` applies a changed file; a broken file is refused, reported in
   ``systemctl status`` and in the journal at priority err, the old configuration runs on;
   ``journalctl -p warning`` shows warnings and errors only.
4. ``systemctl restart`` of the backup: no transition at the master, no probe lost.
   ``realtime_priority`` at the backup: refused under the shipped unit (said, the agent runs
   on); SCHED_RR with README's drop-in, which adds CAP_SYS_NICE and nothing else.
5. ``systemctl stop`` of the master hands over with 0 lost probes (the journal lines of the
   handover are printed); started again, a preempts back.
6. SIGSTOP of the master: b takes over, the watchdog kills a, systemd restarts it, b holds
   the VIP meanwhile; a preempts back. ``systemctl status`` of both units is printed.
7. Upgrade to NEW with both units running: the postinst restarts them one at a time (each
   stop hands over, each start returns once ready); the probes through it are counted.
7b. Runtime directories: ``hadirector.service`` (/run/hadirector) runs beside the
   instances (/run/hadirector/a, /b, inside it): stopping it leaves their control sockets
   and b's drained server (its drained.json, in b's directory: state_dir follows the
   socket) in place; stopping b leaves the plain unit's and a's; `hadirector status` finds
   the plain unit's socket by default, an instance's with ``-c``; b's drained server is
   still drained after its stop and start.
8. Shutdown order: a stand-in for the network service (its stop takes a's interface down,
   ordered ``Before=network.target`` as networking.service is) and a are stopped in one
   transaction, as a shutdown does: a hands over before its interface goes down (0 lost).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.debs import NEW, OLD, build_both
from tests.netns.prober import ProberRun

from .lvslab import Lab, control_status, in_netns, run

pytestmark = pytest.mark.vm(systemd=True)

T = TypeVar("T")

VIP = "192.0.2.100"
VIP2 = "192.0.2.101"
ADDRESS = {"a": "192.0.2.1", "b": "192.0.2.2"}
PRIORITY = {"a": 150, "b": 100}
CLIENT = "192.0.2.50"
REAL_SERVER = "192.0.2.60"
UNIT_DIR = Path("/lib/systemd/system")
ETC_UNITS = Path("/etc/systemd/system")
STATE_TIMEOUT_S = 90.0
NOTE = "security.scripts_as_agent_user"  # said once at start, at info level
PROBE_INTERVAL_MS = 10.0
SHUTDOWN_TARGET = "vmtest-shutdown.target"
#: Where the notify scripts (run as the agent's user) write.
NOTIFY_DIR = Path("/run/vmtest-notify")
NET_UNIT = "vmtest-net-a.service"
USER = "hadirector"
#: CAP_NET_ADMIN (12) and CAP_NET_RAW (13), and nothing else.
AGENT_CAPS = (1 << 12) | (1 << 13)
#: The drop-in README "Running under systemd" gives for scheduler modules.
SCHEDULER_DROPIN = "[Service]\nExecStartPre=+/sbin/modprobe -a ip_vs_rr\n"
#: The drop-in README "Running under systemd" gives for realtime_priority.
REALTIME_DROPIN = (
    "[Service]\nCapabilityBoundingSet=CAP_SYS_NICE\nAmbientCapabilities=CAP_SYS_NICE\n"
    "RestrictRealtime=no\n"
)
DEB_ENV = {OLD: "HADIRECTOR_TEST_DEB_OLD", NEW: "HADIRECTOR_TEST_DEB_NEW"}


def vm_host_setup(exchange: Path) -> dict[str, str]:
    """On the host, before the boot (tests/vm/vmplugin.py): build the package, OLD and NEW."""
    debs = build_both(exchange)
    return {DEB_ENV[version]: str(path) for version, path in debs.items()}


def deb(version: str) -> Path:
    path = os.environ.get(DEB_ENV[version], "")
    if not path or not Path(path).is_file():
        pytest.fail(f"no package {version}: {DEB_ENV[version]}={path!r} (built by vm_host_setup)")
    return Path(path)


def dpkg_install(version: str) -> str:
    """``dpkg -i`` the package; its output (the maintainer scripts' included)."""
    # The maintainer scripts run the package's own interpreter: none of this test's Python.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["DEBIAN_FRONTEND"] = "noninteractive"
    proc = subprocess.run(
        ["dpkg", "-i", str(deb(version))], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installed = run("dpkg-query", "-W", "-f", "${Version}", "hadirector").strip()
    assert installed == version, installed
    return proc.stdout + proc.stderr


def install_agent() -> None:
    """``dpkg -i`` OLD: the agent in /usr/lib/hadirector, the units, the ``hadirector`` user."""
    with pytest.raises(KeyError):
        pwd.getpwnam(USER)  # a fresh root: the package makes the user
    print(dpkg_install(OLD), end="")
    assert Path("/usr/sbin/hadirector").resolve() == Path("/usr/lib/hadirector/venv/bin/hadirector")
    assert (UNIT_DIR / "hadirector@.service").is_file()
    assert pwd.getpwnam(USER).pw_uid < 1000  # a system user


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


# --- small tools --------------------------------------------------------------------------


def wait_for(predicate: Callable[[], T | None], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.2)


def systemctl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["systemctl", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        units = [a for a in args if a.endswith(".service")]
        why = subprocess.run(
            ["journalctl", "--no-pager", "-o", "short-precise", "-n", "40"]
            + [f"--unit={u}" for u in units],
            capture_output=True,
            text=True,
        ).stdout
        raise AssertionError(
            f"systemctl {' '.join(args)}: {result.returncode} {result.stderr}\n{why}"
        )
    return result


def show(unit: str, prop: str) -> str:
    return systemctl("show", "-P", prop, unit).stdout.strip()


@dataclass
class Entry:
    """One journal entry of a unit: its priority, text and (for the agent's lines) record."""

    priority: int
    message: str
    record: dict[str, Any] | None
    cursor: str
    identifier: str


def journal(unit: str, *args: str) -> list[Entry]:
    out = run("journalctl", "-u", unit, "-o", "json", "--no-pager", *args)
    entries = []
    for line in out.splitlines():
        if not line.strip():
            continue
        raw = json.loads(line)
        message = raw.get("MESSAGE", "")
        if isinstance(message, list):  # journald's form of a non-UTF-8 message
            message = bytes(message).decode(errors="replace")
        record = None
        if message.startswith("{"):
            try:
                record = json.loads(message)
            except ValueError:
                record = None
        entries.append(
            Entry(
                int(raw.get("PRIORITY", 6)),
                message,
                record,
                raw["__CURSOR"],
                raw.get("SYSLOG_IDENTIFIER", ""),
            )
        )
    return entries


def events(unit: str, name: str, after: str = "") -> list[dict[str, Any]]:
    args = ("--after-cursor", after) if after else ()
    return [e.record for e in journal(unit, *args) if e.record and e.record.get("event") == name]


def cursor(unit: str) -> str:
    entries = journal(unit)
    return entries[-1].cursor if entries else ""


def print_journal(unit: str, after: str, title: str) -> None:
    print(f"--- journalctl -u {unit} ({title}) ---")
    args = ("--after-cursor", after) if after else ()
    print(run("journalctl", "-u", unit, "-o", "short-precise", "--no-pager", *args), end="")


class Director:
    def __init__(self, name: str, netns: str) -> None:
        self.name = name
        self.netns = netns
        self.unit = f"hadirector@{name}.service"
        self.config = Path(f"/etc/hadirector/{name}.toml")
        self.socket = Path(f"/run/hadirector/{name}/hadirector.sock")
        self.notify_log = NOTIFY_DIR / name

    def status(self) -> dict[str, Any] | None:
        try:
            return control_status(self.socket)
        except (OSError, ValueError):
            return None

    def state(self) -> str | None:
        status = self.status()
        return status["instances"][0]["state"] if status else None

    def wait_state(self, state: str, timeout_s: float = STATE_TIMEOUT_S) -> None:
        wait_for(lambda: self.state() == state, timeout_s, f"{self.unit} {state}")

    def pid(self) -> int:
        return int(show(self.unit, "MainPID"))

    def addresses(self) -> str:
        return in_netns(self.netns, "ip", "-4", "-o", "addr", "show", "dev", "eth0", check=False)

    def config_text(self, vips: tuple[str, ...] = (VIP,)) -> str:
        name = self.name
        vip_list = ", ".join(f'"{v}/24"' for v in vips)
        return f"""\
[global]
router_id = "dir-{name}"
control_socket = "{self.socket}"

[[track_script]]
name = "runs"
script = ["/bin/true"]
# Slack for a VM under TCG on a busy host: a 2 s timeout was seen to expire there (FAULT).
interval = 5.0
timeout = 5.0
weight = 0
fall = 1

[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
vrid = 51
priority = {PRIORITY[name]}
advert_interval = 1.0
virtual_addresses = [{vip_list}]
track_scripts = ["runs"]
notify = ["/bin/sh", "-c", 'echo "$*" >>{self.notify_log}', "notify"]

[[virtual_server]]
address = "{VIP}:80"
protocol = "tcp"
scheduler = "rr"
forwarding = "nat"
  [virtual_server.check]
  type = "script"
  script = ["/bin/true"]
  interval = 4.0
  timeout = 3.0
  rise = 1
  alpha = true
  [[virtual_server.real_server]]
  address = "{REAL_SERVER}:80"

[[virtual_server]]
fwmark = 7
family = "inet"
scheduler = "rr"
match = {{ address = "{VIP}", protocol = "tcp", ports = [25] }}
  [[virtual_server.real_server]]
  address = "{REAL_SERVER}"
"""

    def write_config(self, text: str | None = None) -> None:
        """As README says for a file that may hold secrets: 0640 root:hadirector."""
        self.config.parent.mkdir(parents=True, exist_ok=True)
        self.config.write_text(self.config_text() if text is None else text)
        os.chown(self.config, 0, pwd.getpwnam(USER).pw_gid)
        self.config.chmod(0o640)


class Probes:
    """tests/netns/prober.py in the client namespace (ProberRun's lab interface)."""

    def __init__(self, netns: str, tmpdir: Path) -> None:
        self.netns = netns
        self.tmpdir = tmpdir

    def popen(self, node: str, *argv: str, **kwargs: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["ip", "netns", "exec", self.netns, *argv], **kwargs)

    def start(self) -> ProberRun:
        return ProberRun(self, VIP, interval_ms=PROBE_INTERVAL_MS, ready_timeout_s=60.0)


@dataclass
class Pair:
    lab: Lab
    a: Director
    b: Director
    switch: str
    client: str
    probes: Probes

    def plug(self, d: Director) -> None:
        self.lab.plug(self.switch, "br0", f"p-{d.name}", d.netns, "eth0", f"{ADDRESS[d.name]}/24")

    def steady(self) -> None:
        self.a.wait_state("MASTER")
        self.b.wait_state("BACKUP")
        assert f"{VIP}/24" in self.a.addresses()
        assert f"{VIP}/24" not in self.b.addresses()


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    if os.environ.get("HADIRECTOR_VM_SYSTEMD") != "1" or not Path("/run/systemd/system").is_dir():
        pytest.fail("these tests need systemd as PID 1 (run-in-vm --systemd)")
    # ip_vs and its scheduler are loaded by the units (ExecStartPre=+), not here.
    assert not Path("/sys/module/ip_vs").exists(), "ip_vs loaded before the units started"
    subprocess.run(["modprobe", "-a", "nf_tables"], check=True)
    # The VM's root is the build machine's: a container image whose policy-rc.d (exit 101)
    # forbids maintainer scripts to start or restart services. A director has none; the
    # overlay's copy goes, so the postinst's restarts run as they would there.
    Path("/usr/sbin/policy-rc.d").unlink(missing_ok=True)
    install_agent()
    NOTIFY_DIR.mkdir(mode=0o1777, exist_ok=True)
    NOTIFY_DIR.chmod(0o1777)
    tmpdir = Path(tempfile.mkdtemp(prefix="vmtest-systemd-"))
    with Lab() as lab:
        switch = lab.netns("sw")
        lab.bridge(switch, "br0")
        client = lab.netns("client")
        lab.plug(switch, "br0", "p-client", client, "eth0", f"{CLIENT}/24")
        a = Director("a", lab.netns("a"))
        b = Director("b", lab.netns("b"))
        for d in (a, b):
            # NAT forwarding needs it; set here, the agent has no reason to warn (it would).
            lab.sysctl(d.netns, net__ipv4__ip_forward=1)
            d.write_config()
            dropin = ETC_UNITS / f"{d.unit}.d"
            dropin.mkdir(parents=True, exist_ok=True)
            (dropin / "netns.conf").write_text(
                f"[Service]\nNetworkNamespacePath=/run/netns/{d.netns}\n"
            )
            (dropin / "schedulers.conf").write_text(SCHEDULER_DROPIN)
        run("systemctl", "daemon-reload")
        p = Pair(lab, a, b, switch, client, Probes(client, tmpdir))
        p.plug(a)  # b's interface comes later (test 1)
        try:
            yield p
        finally:
            systemctl("stop", a.unit, b.unit, NET_UNIT, check=False)
            for d in (a, b):
                print_journal(d.unit, "", "whole run")


# --- 1. start --------------------------------------------------------------------------------


def test_start_returns_once_each_instance_has_its_first_state(pair: Pair) -> None:
    a, b = pair.a, pair.b
    systemctl("start", a.unit)
    # Type=notify: READY=1 only once the instance has its first state.
    state = a.state()
    assert state in ("BACKUP", "MASTER"), state
    assert show(a.unit, "ActiveState") == "active"
    print(f"after `systemctl start {a.unit}`: {state}; STATUS={show(a.unit, 'StatusText')!r}")
    # b: started before its interface exists, as at a boot with a late network.
    systemctl("start", b.unit)
    assert show(b.unit, "ActiveState") == "active"
    assert b.state() == "INIT"
    status_text = show(b.unit, "StatusText")
    print(f"after `systemctl start {b.unit}` (no eth0 yet): STATUS={status_text!r}")
    assert re.fullmatch(r"VI_1=INIT \(waiting for eth0: .+\)", status_text), status_text
    a.wait_state("MASTER")
    pid_b = b.pid()
    pair.plug(b)
    b.wait_state("BACKUP")
    assert b.pid() == pid_b  # the same process, never restarted
    assert show(b.unit, "StatusText") == "VI_1=BACKUP"
    assert show(b.unit, "NRestarts") == "0"
    pair.steady()


# --- 2. hardening ------------------------------------------------------------------------


def test_agent_runs_as_its_user_with_two_capabilities(pair: Pair) -> None:
    pair.steady()
    user = pwd.getpwnam(USER)
    for d in (pair.a, pair.b):
        pid = d.pid()
        status = proc_status(pid)
        ps_user = run("ps", "-o", "user=", "-p", str(pid)).strip()
        caps = {k: status[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
        print(f"{d.unit} pid {pid}: ps user {ps_user}; Uid {status['Uid']}; "
              f"Gid {status['Gid']}; Groups {status['Groups']!r}; NoNewPrivs "
              f"{status['NoNewPrivs']}; {caps}")  # fmt: skip
        assert ps_user == USER
        assert status["Uid"].split() == [str(user.pw_uid)] * 4
        assert status["Gid"].split() == [str(user.pw_gid)] * 4
        for key in ("CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(caps[key], 16) == AGENT_CAPS, (key, caps)
        assert status["NoNewPrivs"] == "1"
        # Its runtime directory (the control socket's) belongs to it.
        assert d.socket.parent.stat().st_uid == user.pw_uid
        assert d.socket.stat().st_uid == user.pw_uid
        # ip_vs came from the unit's ExecStartPre=+ (not loaded before: see the fixture).
        print(f"{d.unit} ExecStartPre: {show(d.unit, 'ExecStartPre')}")
    assert Path("/sys/module/ip_vs").exists() and Path("/sys/module/ip_vs_rr").exists()


def test_hardening_leaves_every_feature_working(pair: Pair) -> None:
    a = pair.a
    pair.steady()
    # Raw socket (VRRP), packet socket (gratuitous ARP), netlink (the VIP): the client
    # reaches the VIP at a's MAC.
    probe = pair.probes.start()
    time.sleep(1.0)
    result = probe.stop()
    assert result["answered"] > 0 and result["lost"] == 0, result
    mac_a = in_netns(a.netns, "cat", "/sys/class/net/eth0/address").strip()
    assert set(result["macs"]) == {mac_a}, result["macs"]

    # IPVS (generic netlink) in a's namespace; the script check (alpha) brought the real
    # server in: weight 1.
    def weighted() -> str | None:
        table = in_netns(a.netns, "ipvsadm", "-Ln")
        return table if re.search(rf"-> {REAL_SERVER}:80\s+Masq\s+1\s", table) else None

    table = wait_for(weighted, 60, "the real server in rotation")
    print(table)
    assert re.search(rf"TCP\s+{VIP}:80 rr", table), table
    assert re.search(rf"-> {REAL_SERVER}:80\s+Masq\s+1\s", table), table
    assert re.search(r"FWM\s+7 rr", table), table
    # nftables: the fwmark service's marking rule.
    ruleset = in_netns(a.netns, "nft", "list", "table", "inet", "hadirector")
    assert "mark set" in ruleset and "dport" in ruleset, ruleset
    # The notify script ran as the agent's user (keepalived's arguments), the track script
    # keeps running (a failure would be FAULT: weight 0).
    assert "INSTANCE VI_1 MASTER" in a.notify_log.read_text()
    assert a.notify_log.stat().st_uid == pwd.getpwnam(USER).pw_uid
    assert events(a.unit, "check.up")
    assert not events(a.unit, "ipvs.unavailable")
    # No warning at start: that scripts run as the agent's user (it cannot change user)
    # is said once as information, and the alpha pool's quorum is decided only after its
    # check's first result (it passes, rise 1: quorum is never lost).
    warned = [e for e in journal(a.unit) if e.priority <= 4]
    assert warned == [], [e.message for e in warned]
    said = [e for e in journal(a.unit) if e.record and e.record.get("event") == NOTE]
    assert len(said) == 1 and said[0].record and said[0].record["user"] == USER, said
    for unit in ("hadirector.service", a.unit):
        out = subprocess.run(
            ["systemd-analyze", "security", "--no-pager", unit], capture_output=True, text=True
        )
        last = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr
        print(f"systemd-analyze security {unit}: {last}")
        assert "Overall exposure level" in last, out.stdout + out.stderr
        # systemd's words: SAFE, OK, MEDIUM, EXPOSED, UNSAFE; README promises OK or better.
        assert re.search(r": \d+\.\d (SAFE|OK)\b", last), last


# --- 3. reload ---------------------------------------------------------------------------


def test_reload_applies_a_changed_file_and_refuses_a_broken_one(pair: Pair) -> None:
    a = pair.a
    pair.steady()
    mark = cursor(a.unit)
    pid = a.pid()
    a.write_config(a.config_text((VIP, VIP2)))
    systemctl("reload", a.unit)
    wait_for(lambda: f"{VIP2}/24" in a.addresses(), 60, "the added VIP")
    wait_for(lambda: events(a.unit, "config.reloaded", mark), 30, "config.reloaded")
    # Broken: refused, said in `systemctl status` and at priority err; the old one runs on.
    mark = cursor(a.unit)
    a.write_config(a.config_text((VIP, VIP2)) + "\n[[vrrp_instance]]\nname = 3\n")
    systemctl("reload", a.unit)
    wait_for(lambda: "reload refused" in show(a.unit, "StatusText"), 60, "reload refused")
    status = systemctl("status", "--no-pager", "-n", "5", a.unit, check=False).stdout
    print(status)
    assert "reload refused, previous configuration running: vrrp_instance[1]" in status
    assert show(a.unit, "ActiveState") == "active" and a.pid() == pid
    failed = wait_for(
        lambda: [e for e in journal(a.unit, "--after-cursor", mark) if e.record
                 and e.record.get("event") == "config.reload_failed"],
        30,
        "config.reload_failed in the journal",
    )  # fmt: skip
    assert failed[0].priority == 3, failed[0]
    assert a.state() == "MASTER"
    assert f"{VIP}/24" in a.addresses() and f"{VIP2}/24" in a.addresses()
    # journalctl -p warning: the refused reload, and nothing below warning.
    warnings = journal(a.unit, "-p", "warning")
    assert warnings and all(e.priority <= 4 for e in warnings), warnings
    assert any(e.record and e.record["event"] == "config.reload_failed" for e in warnings)
    assert not any(e.record and e.record["level"] == "info" for e in warnings)
    infos = [e for e in journal(a.unit) if e.record and e.record["level"] == "info"]
    assert infos and all(e.priority == 6 for e in infos)
    # For log shippers: every line the agent wrote is one JSON object, prefix taken off.
    own = [e for e in journal(a.unit) if e.identifier == "hadirector@a"]
    assert own and all(e.record is not None for e in own), [e.message for e in own][:5]
    print("--- journalctl -p warning -u", a.unit, "---")
    print(run("journalctl", "-p", "warning", "-u", a.unit, "--no-pager", "-o", "cat"), end="")
    # Back to the first file.
    mark = cursor(a.unit)
    a.write_config()
    systemctl("reload", a.unit)
    wait_for(lambda: events(a.unit, "config.reloaded", mark), 60, "config.reloaded")
    wait_for(lambda: f"{VIP2}/24" not in a.addresses(), 30, "the VIP removed")
    assert show(a.unit, "StatusText") == "VI_1=MASTER"
    assert not events(a.unit, "vrrp.transition", mark)


# --- 4. restart of the backup ------------------------------------------------------------


def test_restart_of_the_backup_changes_nothing_at_the_master(pair: Pair) -> None:
    a, b = pair.a, pair.b
    pair.steady()
    mark = cursor(a.unit)
    pid = b.pid()
    probe = pair.probes.start()
    systemctl("restart", b.unit)
    assert b.pid() != pid
    b.wait_state("BACKUP")
    result = probe.stop()
    assert result["lost"] == 0, result
    assert not events(a.unit, "vrrp.transition", mark)
    assert a.state() == "MASTER"
    print(f"restart of {b.unit}: no transition at the master; {result['sent']} probes, 0 lost")


# --- 4b. realtime_priority and the drop-in README gives for it ----------------------------


def sched_policy(pid: int) -> int:
    """The scheduling policy of the process (/proc/PID/sched: 0 SCHED_OTHER, 2 SCHED_RR)."""
    for line in Path(f"/proc/{pid}/sched").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "policy":
            return int(value)
    raise AssertionError(f"no policy in /proc/{pid}/sched")


def test_realtime_priority_needs_the_documented_drop_in(pair: Pair) -> None:
    """``realtime_priority`` under the shipped unit: refused (said, the agent runs on);
    with README's drop-in (CAP_SYS_NICE, RestrictRealtime=no): SCHED_RR. Both at the
    backup, with no transition at the master."""
    a, b = pair.a, pair.b
    pair.steady()
    mark_a = cursor(a.unit)
    text = b.config_text().replace("[global]\n", "[global]\nrealtime_priority = 10\n", 1)
    dropin = ETC_UNITS / f"{b.unit}.d" / "realtime.conf"
    try:
        b.write_config(text)
        mark = cursor(b.unit)
        systemctl("restart", b.unit)
        b.wait_state("BACKUP")
        failed = events(b.unit, "agent.realtime_failed", mark)
        print(f"shipped unit, realtime_priority = 10: {failed}")
        assert len(failed) == 1 and failed[0]["priority"] == 10, failed
        assert sched_policy(b.pid()) == 0  # SCHED_OTHER: it runs on
        dropin.write_text(REALTIME_DROPIN)
        run("systemctl", "daemon-reload")
        mark = cursor(b.unit)
        systemctl("restart", b.unit)
        b.wait_state("BACKUP")
        pid = b.pid()
        granted = events(b.unit, "agent.realtime", mark)
        caps = int(proc_status(pid)["CapEff"], 16)
        print(f"with the drop-in: {granted}; CapEff {caps:#x}; policy {sched_policy(pid)}")
        assert [(r["policy"], r["priority"]) for r in granted] == [("SCHED_RR", 10)], granted
        assert not events(b.unit, "agent.realtime_failed", mark)
        assert sched_policy(pid) == 2  # SCHED_RR
        assert caps == AGENT_CAPS | (1 << 23)  # + CAP_SYS_NICE, nothing else
    finally:
        dropin.unlink(missing_ok=True)
        run("systemctl", "daemon-reload")
        b.write_config()
        systemctl("restart", b.unit)
    b.wait_state("BACKUP")
    assert sched_policy(b.pid()) == 0
    assert not events(a.unit, "vrrp.transition", mark_a)
    pair.steady()


# --- 5. stop of the master ---------------------------------------------------------------


def test_stop_of_the_master_hands_over_without_a_lost_probe(pair: Pair) -> None:
    a, b = pair.a, pair.b
    pair.steady()
    marks = {d.unit: cursor(d.unit) for d in (a, b)}
    probe = pair.probes.start()
    time.sleep(0.5)
    systemctl("stop", a.unit)
    b.wait_state("MASTER")
    time.sleep(0.5)
    result = probe.stop()
    print(f"stop of the master: {result['sent']} probes, {result['lost']} lost, "
          f"longest gap {result['longest_gap_ms']} ms")  # fmt: skip
    for d in (a, b):
        print_journal(d.unit, marks[d.unit], "handover on `systemctl stop` of the master")
    assert result["lost"] == 0, result
    assert show(a.unit, "ActiveState") == "inactive"
    assert show(a.unit, "Result") == "success"
    assert f"{VIP}/24" not in a.addresses()
    systemctl("start", a.unit)
    pair.steady()


# --- 6. watchdog -------------------------------------------------------------------------


def test_watchdog_restarts_a_hung_agent_while_the_peer_holds_the_vip(pair: Pair) -> None:
    a, b = pair.a, pair.b
    pair.steady()
    marks = {d.unit: cursor(d.unit) for d in (a, b)}
    restarts = int(show(a.unit, "NRestarts"))
    pid = a.pid()
    os.kill(pid, signal.SIGSTOP)
    b.wait_state("MASTER")
    t_b_master = time.monotonic()
    wait_for(lambda: int(show(a.unit, "NRestarts")) > restarts, 120, "the watchdog restart")
    assert a.pid() != pid
    # While a was dead and starting again, b held the VIP.
    assert b.state() == "MASTER" and f"{VIP}/24" in b.addresses()
    pair.steady()
    took = time.monotonic() - t_b_master
    print(f"watchdog: b master, a killed and restarted, a master again {took:.1f} s later")
    texts = [e.message for e in journal(a.unit, "--after-cursor", marks[a.unit])]
    assert any("Watchdog timeout" in t for t in texts), texts
    b_records = events(b.unit, "vrrp.transition", marks[b.unit])
    assert [(r["old"], r["new"]) for r in b_records] == [("BACKUP", "MASTER"), ("MASTER", "BACKUP")]
    for unit in (a.unit, b.unit):
        print(systemctl("status", "--no-pager", "-n", "0", unit, check=False).stdout)


# --- 7. upgrade ---------------------------------------------------------------------------


def test_upgrade_restarts_the_running_units_and_the_vip_stays_served(pair: Pair) -> None:
    """``dpkg -i`` NEW under the running pair: the postinst restarts each running unit, one
    after the other (the master's stop hands over to the backup, its start returns once it
    is ready); no unit is left stopped and the VIP is answered throughout."""
    a, b = pair.a, pair.b
    pair.steady()
    marks = {d.unit: cursor(d.unit) for d in (a, b)}
    pids = {d.unit: d.pid() for d in (a, b)}
    probe = pair.probes.start()
    time.sleep(0.5)
    output = dpkg_install(NEW)
    print(output, end="")
    for d in (a, b):
        assert show(d.unit, "ActiveState") == "active", d.unit
        assert d.pid() != pids[d.unit], f"{d.unit} not restarted"
        assert proc_status(d.pid())["Uid"].split()[0] == str(pwd.getpwnam(USER).pw_uid)
    pair.steady()
    time.sleep(0.5)
    result = probe.stop()
    print(f"upgrade {OLD} -> {NEW} under the pair: {result['sent']} probes, "
          f"{result['lost']} lost, longest gap {result['longest_gap_ms']} ms "
          f"(the prober's own longest send gap {result['max_send_gap_ms']} ms, "
          f"{result['skipped_slots']} slots skipped)")  # fmt: skip
    for d in (a, b):
        print_journal(d.unit, marks[d.unit], f"upgrade to {NEW}")
    starts = {d.unit: events(d.unit, "agent.stopped", marks[d.unit]) for d in (a, b)}
    assert all(starts.values()), starts  # each stopped gracefully (and started again)
    assert result["lost"] == 0, result


# --- 7b. runtime directories: the plain unit beside the instances ----------------------


PLAIN_UNIT = "hadirector.service"
PLAIN_CONFIG = Path("/etc/hadirector/hadirector.toml")
PLAIN_SOCKET = Path("/run/hadirector/hadirector.sock")
PLAIN_ADDRESS = "192.0.2.3"
PLAIN_VIP = "192.0.2.102"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The packaged ``hadirector`` as an operator runs it (root, none of this test's Python)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return subprocess.run(["/usr/sbin/hadirector", *args], capture_output=True, text=True, env=env)


def answers(*args: str) -> str:
    """``hadirector status ARGS``: its output, or the failure with what it said."""
    result = cli("status", *args)
    assert result.returncode == 0, f"hadirector status {' '.join(args)}: {result.stderr}"
    return result.stdout


def drained(d: Director) -> list[str]:
    status = json.loads(answers("--json", "-c", str(d.config)))
    return list(status["checks"]["drained"])


def test_one_units_stop_leaves_the_others_runtime_directories(pair: Pair) -> None:
    """``hadirector.service`` (/run/hadirector) runs beside ``hadirector@a``/``@b``
    (/run/hadirector/a, /run/hadirector/b, inside it). Stopping the plain unit leaves the
    instances' control sockets and drained servers in place; stopping an instance leaves
    the plain unit's and the other's. ``hadirector status`` finds the plain unit's socket
    with no argument, an instance's with ``-c /etc/hadirector/NAME.toml``."""
    a, b = pair.a, pair.b
    pair.steady()
    marks = {d.unit: cursor(d.unit) for d in (a, b)}
    plain_ns = pair.lab.netns("plain")
    pair.lab.plug(pair.switch, "br0", "p-plain", plain_ns, "eth0", f"{PLAIN_ADDRESS}/24")
    # The package's example file, replaced (no control_socket, no state_dir: the defaults).
    PLAIN_CONFIG.write_text(
        '[global]\nrouter_id = "plain"\n\n[[vrrp_instance]]\nname = "VI_2"\n'
        f'interface = "eth0"\nvrid = 52\npriority = 100\nadvert_interval = 1.0\n'
        f'virtual_addresses = ["{PLAIN_VIP}/24"]\n'
    )
    os.chown(PLAIN_CONFIG, 0, pwd.getpwnam(USER).pw_gid)
    PLAIN_CONFIG.chmod(0o640)
    dropin = ETC_UNITS / f"{PLAIN_UNIT}.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "netns.conf").write_text(f"[Service]\nNetworkNamespacePath=/run/netns/{plain_ns}\n")
    run("systemctl", "daemon-reload")
    service, server = f"tcp {VIP}:80", f"{REAL_SERVER}:80"
    try:
        systemctl("start", PLAIN_UNIT)
        out = answers()
        print(f"{PLAIN_UNIT} started:", out, sep="\n", end="")
        assert "VI_2" in out, out
        # A drained server at b (the backup: nothing changes at the master), saved in b's
        # own runtime directory.
        result = cli("drain", "-c", str(b.config), service, server)
        assert result.returncode == 0, result.stderr
        assert (b.socket.parent / "drained.json").is_file()
        assert drained(b) == [f"{service} {server}"]
        print(*sorted(str(p) for p in Path("/run/hadirector").rglob("*")), sep="\n")

        # The plain unit stops: /run/hadirector stays, and with it the instances'.
        systemctl("stop", PLAIN_UNIT)
        assert not PLAIN_SOCKET.exists()  # the agent took its own socket away
        for d in (a, b):
            assert d.socket.is_socket(), d.socket
            answers("-c", str(d.config))
        assert drained(b) == [f"{service} {server}"]
        result = cli("status")
        assert result.returncode == 1 and str(PLAIN_SOCKET) in result.stderr, result
        print(f"after `systemctl stop {PLAIN_UNIT}`: `hadirector status` says "
              f"{result.stderr.strip()!r}; a and b answer")  # fmt: skip

        # An instance stops: the plain unit's socket and the other instance's stay.
        systemctl("start", PLAIN_UNIT)
        systemctl("stop", b.unit)
        assert not b.socket.exists()
        answers()
        answers("-c", str(a.config))
        # b again: its drained server with it (kept across stop and start).
        systemctl("start", b.unit)
        b.wait_state("BACKUP")
        assert drained(b) == [f"{service} {server}"]
        result = cli("undrain", "-c", str(b.config), service, server)
        assert result.returncode == 0, result.stderr
        assert drained(b) == []
    finally:
        systemctl("stop", PLAIN_UNIT, check=False)
        PLAIN_CONFIG.unlink(missing_ok=True)
        (dropin / "netns.conf").unlink(missing_ok=True)
        run("systemctl", "daemon-reload")
    assert not events(a.unit, "vrrp.transition", marks[a.unit])
    pair.steady()


# --- 8. shutdown order --------------------------------------------------------------------


def test_shutdown_stops_the_agent_before_the_network(pair: Pair) -> None:
    """A shutdown stops every unit in one transaction, in the reverse order of After=.

    Stand-ins: ``vmtest-net-a.service`` is the network service (Before=network.target,
    as ifupdown's networking.service; its stop takes a's eth0 down), and
    ``vmtest-shutdown.target`` is shutdown.target: the agent, the stand-in and
    network.target conflict with it as every unit with default dependencies conflicts
    with shutdown.target. Starting it stops all three in one transaction."""
    a, b = pair.a, pair.b
    pair.steady()
    (ETC_UNITS / SHUTDOWN_TARGET).write_text(
        "[Unit]\nDescription=stand-in for shutdown.target\nDefaultDependencies=no\n"
    )
    (ETC_UNITS / NET_UNIT).write_text(
        "[Unit]\nDescription=stand-in for the network service\n"
        "Before=network.target\nWants=network.target\n"
        f"Conflicts={SHUTDOWN_TARGET}\nBefore={SHUTDOWN_TARGET}\n"
        "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n"
        f"ExecStop=/bin/ip -n {a.netns} link set eth0 down\n"
    )
    for unit in ("network.target", a.unit):
        dropin = ETC_UNITS / f"{unit}.d"
        dropin.mkdir(parents=True, exist_ok=True)
        (dropin / "vmtest-shutdown.conf").write_text(
            f"[Unit]\nConflicts={SHUTDOWN_TARGET}\nBefore={SHUTDOWN_TARGET}\n"
        )
    run("systemctl", "daemon-reload")
    systemctl("start", NET_UNIT)
    assert show("network.target", "ActiveState") == "active"
    marks = {d.unit: cursor(d.unit) for d in (a, b)}
    probe = pair.probes.start()
    time.sleep(0.5)
    systemctl("start", SHUTDOWN_TARGET)
    b.wait_state("MASTER")
    time.sleep(0.5)
    result = probe.stop()
    print(f"shutdown: {result['sent']} probes, {result['lost']} lost")
    for d in (a, b):
        print_journal(d.unit, marks[d.unit], "shutdown stand-in")
    assert show(a.unit, "ActiveState") == "inactive"
    assert show(NET_UNIT, "ActiveState") == "inactive"
    assert "state DOWN" in in_netns(a.netns, "ip", "link", "show", "eth0")
    assert result["lost"] == 0, result
    # In the one transaction, systemd stopped the agent before the network stand-in.
    order = [e.message for e in journal(a.unit, "-u", NET_UNIT, "--after-cursor", marks[a.unit])]
    print("--- the order of the stops ---", *order, sep="\n")
    stopped_a = next(i for i, m in enumerate(order) if m.startswith("Stopped hadirector@a"))
    stopping_net = next(i for i, m in enumerate(order) if m.startswith(f"Stopping {NET_UNIT}"))
    assert stopped_a < stopping_net, order
    # a never saw its link go down: it had handed over and stopped before.
    transitions = events(a.unit, "vrrp.transition", marks[a.unit])
    assert transitions and all(r["new"] != "FAULT" for r in transitions), transitions
    assert events(a.unit, "agent.stopped", marks[a.unit])
