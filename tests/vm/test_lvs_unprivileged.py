"""The agent as ``nobody`` with only CAP_NET_ADMIN and CAP_NET_RAW, against the real IPVS
kernel, inside the VM (README: "Security").

One director namespace joined by a veth to a peer namespace (so VRRP and the sync daemon's
multicast have a link). The agent, started with ``setpriv`` (tests/unprivileged.py) as the
shipped unit starts it, must:

- program IPVS over generic netlink (a NAT service, a FULLNAT service with its nftables
  SNAT rule, an fwmark service with its nftables mark rule) and set the sysctls they need
  (``net.ipv4.ip_forward``, ``net.ipv4.vs.conntrack``: net sysctls, writable with
  CAP_NET_ADMIN in the namespace), read back with ``ipvsadm``, ``nft`` and ``/proc``;
- run no ``modprobe``: a scheduler whose module is not loaded is named with the unit line
  that loads it (``ExecStartPre=+/sbin/modprobe ip_vs_fo``), and the kernel, which loads
  schedulers on demand itself, still takes the service;
- start the master sync daemon once VRRP makes it master, apply a reload (SIGHUP: one
  weight edited) and stop the daemon on SIGTERM.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unprivileged import unprivileged_argv

from .lvslab import Lab, agent

pytestmark = pytest.mark.vm

START_TIMEOUT_S = 150.0
STEP_TIMEOUT_S = 40.0
NOBODY = pwd.getpwnam("nobody")

CONFIG = """
[global]
router_id = "unprivileged"
control_socket = "{dir}/hadirector.sock"

[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
vrid = 61
priority = 150
advert_interval = 1.0
virtual_addresses = ["192.0.2.100/24"]

[ipvs]
reconcile_interval = 1.0

[ipvs.sync]
interface = "eth0"
instance = "VI_1"
syncid = 7

[[virtual_server]]
address = "192.0.2.10:80"
scheduler = "wlc"
forwarding = "nat"
  [[virtual_server.real_server]]
  address = "198.51.100.11:8080"
  weight = {weight}

[[virtual_server]]
address = "192.0.2.11:80"
scheduler = "fo"
forwarding = "fullnat"
fullnat_source = "198.51.100.1"
  [[virtual_server.real_server]]
  address = "198.51.100.12:80"

[[virtual_server]]
fwmark = 9
scheduler = "rr"
persistence_timeout = 60
match = {{ address = "192.0.2.12", protocol = "tcp", ports = [443] }}
  [[virtual_server.real_server]]
  address = "198.51.100.13"
"""

EXPECTED_SAVE = """\
-A -t 192.0.2.10:80 -s wlc
-a -t 192.0.2.10:80 -r 198.51.100.11:8080 -m -w {weight}
-A -t 192.0.2.11:80 -s fo
-a -t 192.0.2.11:80 -r 198.51.100.12:80 -m -w 1
-A -f 9 -s rr -p 60
-a -f 9 -r 198.51.100.13:0 -m -w 1
"""


@pytest.fixture
def lab(ipvs_modules: None) -> Iterator[Lab]:
    with Lab() as lab:
        yield lab


@pytest.fixture
def agent_dir() -> Iterator[Path]:
    """The configuration and control socket's directory: the agent's user's own."""
    d = Path(tempfile.mkdtemp(prefix="hd-unprivileged-"))
    d.chmod(0o755)
    os.chown(d, NOBODY.pw_uid, NOBODY.pw_gid)
    try:
        yield d
    finally:
        shutil.rmtree(d)


def _unload(module: str, timeout_s: float = 60.0) -> None:
    """Unload ``module``, waiting while namespaces of earlier tests still hold it."""
    deadline = time.monotonic() + timeout_s
    while Path(f"/sys/module/{module}").exists():
        done = subprocess.run(["modprobe", "-r", module], capture_output=True, text=True)
        if done.returncode != 0 and time.monotonic() > deadline:
            raise AssertionError(f"cannot unload {module}: {done.stderr.strip()}")
        time.sleep(0.2)


def test_unprivileged_agent_programs_ipvs_nft_sysctls_and_sync(lab: Lab, agent_dir: Path) -> None:
    director, peer = lab.netns("dir"), lab.netns("peer")
    lab.link(director, "eth0", peer, "eth0")
    lab.ip(director, "addr", "add", "192.0.2.1/24", "dev", "eth0")
    lab.ip(director, "addr", "add", "198.51.100.1/24", "dev", "lo")
    lab.sysctl(director, **{"net.ipv4.ip_forward": 0, "net.ipv4.vs.conntrack": 0})
    # A scheduler module that is not loaded: the agent may not load it, the kernel may.
    _unload("ip_vs_fo")
    config = agent_dir / "director.toml"
    config.write_text(CONFIG.format(dir=agent_dir, weight=5))

    with agent(director, config, wrap=unprivileged_argv) as unpriv:
        done = unpriv.wait_for("ipvs.reconciled", START_TIMEOUT_S)
        status = Path(f"/proc/{unpriv.process.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines())
        assert fields["Uid"].split()[0] == str(NOBODY.pw_uid)
        assert int(fields["CapEff"], 16) == (1 << 12) | (1 << 13)  # NET_ADMIN, NET_RAW only

        assert done["failed"] == 0 and done["refused"] == 0, unpriv.transcript()
        assert lab.exec(director, "ipvsadm", "-S", "-n") == EXPECTED_SAVE.format(weight=5)
        assert not unpriv.named("ipvs.op_failed", "ipvs.nft_failed", "ipvs.sysctl_failed")
        [missing] = unpriv.named("ipvs.module_not_loaded")
        assert "ExecStartPre=+/sbin/modprobe ip_vs_fo" in missing["detail"]
        assert Path("/sys/module/ip_vs_fo").exists()  # loaded on demand by the kernel
        assert lab.exec(director, "cat", "/proc/sys/net/ipv4/ip_forward").strip() == "1"
        assert lab.exec(director, "cat", "/proc/sys/net/ipv4/vs/conntrack").strip() == "1"
        ruleset = lab.exec(director, "nft", "list", "table", "inet", "hadirector")
        assert "meta mark set 0x00000009" in ruleset
        assert "snat ip to 198.51.100.1" in ruleset

        # VRRP: master on its own link; then the master sync daemon.
        unpriv.wait_for("vrrp.transition", START_TIMEOUT_S, where=lambda e: e["new"] == "MASTER")
        unpriv.wait_for("sync.master", STEP_TIMEOUT_S)
        assert "master sync daemon (mcast=eth0, syncid=7" in lab.exec(
            director, "ipvsadm", "--list", "--daemon"
        )
        assert "192.0.2.100/24" in lab.ip(director, "addr", "show", "dev", "eth0")

        # Reload: one weight, one edit.
        config.write_text(CONFIG.format(dir=agent_dir, weight=9))
        mark = unpriv.mark()
        unpriv.signal(signal.SIGHUP)
        unpriv.wait_for("config.reloaded", STEP_TIMEOUT_S, mark)
        unpriv.wait_for("ipvs.dest.edit", STEP_TIMEOUT_S, mark)
        assert lab.exec(director, "ipvsadm", "-S", "-n") == EXPECTED_SAVE.format(weight=9)

        mark = unpriv.mark()
        assert unpriv.stop() == 0, unpriv.transcript()
        assert unpriv.named("sync.stopped", since=mark)
        assert "sync daemon" not in lab.exec(director, "ipvsadm", "--list", "--daemon")
