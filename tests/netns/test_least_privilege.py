"""Least privilege in real namespaces (README: "Security").

- A pair (IPv4, and IPv6) where dir-a runs as ``nobody`` with only CAP_NET_ADMIN and
  CAP_NET_RAW (ambient, ``setpriv``; tests/unprivileged.py) and dir-b as root: dir-a is
  elected, answers ``hadirector status`` over its control socket to its own user, reloads
  on SIGHUP without a transition, and hands over gracefully to dir-b with 0 lost probes.
  Both run notify scripts that record their uid: dir-a's run as its own user (it cannot
  switch), dir-b's as ``script_user = "nobody"`` with ``script_security`` on.
- A secret (an HMAC key in the pair, a v2 ``auth_pass`` on a single director) appears in
  no output of a run: JSON logs, ``hadirector status`` and ``--json``, the metrics page,
  notify scripts' arguments and environment.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.unprivileged import unprivileged_argv

from .e2e_util import STATE_TIMEOUT_S, E2EDirector, vip_for
from .lab import Lab, wait_for
from .prober import ProberRun

pytestmark = pytest.mark.netns

NOBODY = pwd.getpwnam("nobody")
REPO = Path(__file__).resolve().parents[2]
HMAC_KEY = "3c" * 16 + "a7" * 16  # 64 hex digits
METRICS_PORT = 9650


class UnprivilegedDirector(E2EDirector):
    """``hadirector run`` as nobody with CAP_NET_ADMIN and CAP_NET_RAW only."""

    def prepare(self) -> None:
        super().prepare()
        self.lab.tmpdir.chmod(0o711)  # nobody may reach its own directory, nothing else
        os.chown(self.dir, NOBODY.pw_uid, NOBODY.pw_gid)

    def argv(self) -> list[str]:
        command = [sys.executable, "-m", "hadirector", "run", "--config", str(self.conf_path)]
        return unprivileged_argv([*command, "--log-format", "json"])

    def popen_kwargs(self) -> dict[str, Any]:
        return {"env": {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}}


def _recorder(lab: Lab) -> tuple[Path, Path]:
    """A notify script (root's, in root's directories) that appends its uid, gid and
    arguments to the file named by its first argument, and its environment next to it;
    and an output directory anyone may write."""
    scripts = lab.tmpdir / "scripts"
    scripts.mkdir(mode=0o755)
    scripts.chmod(0o755)
    out = lab.tmpdir / "out"
    out.mkdir()
    out.chmod(0o777)
    rec = scripts / "record.sh"
    rec.write_text(
        '#!/bin/sh\nout=$1\nshift\necho "$(id -u) $(id -g) $*" >> "$out"\nenv > "$out.env"\n'
    )
    rec.chmod(0o755)
    return rec, out


def _cli(lab: Lab, node: str, *args: str, as_nobody: bool = False) -> str:
    argv = [sys.executable, "-m", "hadirector", *args]
    if as_nobody:
        argv = unprivileged_argv(argv, caps=())
    done = lab.run(node, "env", f"PYTHONPATH={REPO}", *argv)
    return done.stdout + done.stderr


def _metrics(lab: Lab, node: str) -> str:
    code = (
        "import urllib.request, sys; "
        f"sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:{METRICS_PORT}/metrics',"
        " timeout=10).read().decode())"
    )
    return lab.run(node, sys.executable, "-c", code).stdout


@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_nobody_with_two_capabilities_elects_reloads_and_hands_over(
    netlab: Lab, family: int
) -> None:
    rec, out = _recorder(netlab)
    key = netlab.tmpdir / "vrrp.key"
    key.write_text(HMAC_KEY + "\n")
    key.chmod(0o600)
    os.chown(key, NOBODY.pw_uid, NOBODY.pw_gid)  # the agent's own user reads its key
    common = {"hmac_key_file": json.dumps(str(key))}
    metrics = {"metrics_listen": json.dumps(f"127.0.0.1:{METRICS_PORT}")}
    a = UnprivilegedDirector(
        netlab,
        "dir-a",
        150,
        family=family,
        global_extra=metrics,
        instance_extra={**common, "notify": json.dumps([str(rec), str(out / "dir-a")])},
    )
    b = E2EDirector(
        netlab,
        "dir-b",
        100,
        family=family,
        global_extra={
            **metrics,
            "script_user": '"nobody"',
            "script_security": "true",
        },
        instance_extra={**common, "notify": json.dumps([str(rec), str(out / "dir-b")])},
    )
    a.start()
    a.wait_state("MASTER", STATE_TIMEOUT_S)
    b.start()
    b.wait_state("BACKUP", STATE_TIMEOUT_S)
    vip = vip_for(family=family)
    wait_for(lambda: netlab.who_has(vip) == {"dir-a"}, 15, "VIP on dir-a")

    # It is nobody, with exactly the two capabilities, and says who runs its scripts.
    assert a.proc is not None
    status = Path(f"/proc/{a.proc.pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines())
    assert fields["Uid"].split()[:2] == [str(NOBODY.pw_uid)] * 2
    assert int(fields["CapEff"], 16) == int(fields["CapAmb"], 16) == (1 << 12) | (1 << 13)
    # Said once, as information: running scripts as itself is what such an agent does.
    [said] = a.records("security.scripts_as_agent_user")
    assert (said["user"], said["level"]) == ("nobody", "info"), said
    assert b.records("security.scripts_run_as")[0]["user"].startswith("nobody (uid 65534")
    assert not a.records("control.unavailable") and not a.records("metrics.listen_failed")

    # Its control socket is its user's: status as nobody works, mode 0600.
    sock = a.dir / "hadirector.sock"
    st = os.stat(sock)
    assert (st.st_uid, st.st_mode & 0o777) == (NOBODY.pw_uid, 0o600)
    shown = _cli(netlab, "dir-a", "status", "--socket", str(sock), as_nobody=True)
    assert "MASTER" in shown

    # SIGHUP: applied, no transition.
    transitions = len(a.transitions())
    a.signal(signal.SIGHUP)
    wait_for(lambda: len(a.records("config.reloaded")) == 1, 15, "dir-a reloaded")
    assert len(a.transitions()) == transitions

    # Graceful stop: dir-b takes over with no probe lost.
    run = ProberRun(netlab, vip)
    netlab.wait_echo_replies("dir-a")
    a.stop()
    assert a.proc.returncode == 0, a.log()[-3000:]
    b.wait_state("MASTER", STATE_TIMEOUT_S)
    netlab.wait_echo_replies("dir-b")
    handover = run.stop()
    assert handover["sent"] > 0 and handover["lost"] == 0, handover
    assert a.states() == ["BACKUP", "MASTER", "STOPPED"]
    assert a.records("vip.removed"), "the unprivileged agent removed its VIP"

    # Scripts ran as nobody on both: dir-a's as its own user, dir-b's as script_user.
    wait_for(lambda: (out / "dir-b").exists(), 15, "dir-b's notify ran")
    lines_a = (out / "dir-a").read_text().splitlines()
    lines_b = (out / "dir-b").read_text().splitlines()
    ids = f"{NOBODY.pw_uid} {NOBODY.pw_gid}"
    assert lines_a[:2] == [f"{ids} INSTANCE VI_1 BACKUP 150", f"{ids} INSTANCE VI_1 MASTER 150"]
    assert lines_b[0] == f"{ids} INSTANCE VI_1 BACKUP 100"

    # The key is nowhere in what the run showed.
    outputs = {
        "dir-a log": a.log(),
        "dir-b log": b.log(),
        "status": _cli(netlab, "dir-b", "status", "--socket", str(b.dir / "hadirector.sock")),
        "status --json": _cli(
            netlab, "dir-b", "status", "--json", "--socket", str(b.dir / "hadirector.sock")
        ),
        "metrics": _metrics(netlab, "dir-b"),
        "notify": "".join(p.read_text() for p in out.iterdir()),
    }
    assert "VI_1" in outputs["status"] and "hadirector_vrrp_state" in outputs["metrics"]
    leaks = [
        name
        for name, text in outputs.items()
        for secret in (HMAC_KEY, HMAC_KEY.upper(), bytes.fromhex(HMAC_KEY).hex(" "))
        if secret in text
    ]
    assert leaks == []
    b.stop()


def test_auth_pass_appears_in_no_output(netlab: Lab) -> None:
    """A v2 director with a simple-text password: it goes on the wire, nowhere else."""
    secret = "Pz9!kQ2w"
    rec, out = _recorder(netlab)
    a = E2EDirector(
        netlab,
        "dir-a",
        150,
        1.0,
        version=2,
        auth_pass=secret,
        global_extra={"metrics_listen": json.dumps(f"127.0.0.1:{METRICS_PORT}")},
        instance_extra={"notify": json.dumps([str(rec), str(out / "dir-a")])},
    )
    a.start()
    a.wait_state("MASTER", STATE_TIMEOUT_S)
    wait_for(lambda: (out / "dir-a").exists(), 15, "notify ran")
    # The configuration file holds the password and is world-readable: warned, with the fix.
    warned = a.records("security.secret_readable")
    assert warned and f"run: chmod go-rwx {a.conf_path}" in warned[0]["detail"]
    sock = str(a.dir / "hadirector.sock")
    outputs = {
        "log": a.log(),
        "status": _cli(netlab, "dir-a", "status", "--socket", sock),
        "status --json": _cli(netlab, "dir-a", "status", "--json", "--socket", sock),
        "metrics": _metrics(netlab, "dir-a"),
        "notify": "".join(p.read_text() for p in out.iterdir()),
        "check-config": _cli(netlab, "dir-a", "check-config", "--config", str(a.conf_path)),
    }
    assert "MASTER" in outputs["status"] and "INSTANCE VI_1 MASTER" in outputs["notify"]
    assert f"run: chmod go-rwx {a.conf_path}" in outputs["check-config"]
    # Root runs the scripts (no script_user): said once, at start.
    assert len(a.records("security.scripts_as_root")) == 1
    assert [name for name, text in outputs.items() if secret in text] == []
    a.stop()
    assert secret not in a.log()
