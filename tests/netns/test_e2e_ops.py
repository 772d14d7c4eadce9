"""End to end: what an operator sees of ``hadirector run`` in the namespace lab.

Notify scripts (order and arguments, the per-state scripts, a script killed with its whole
process group on timeout), SIGHUP reloads (a bad file changes nothing, a good one adds a
VIP to a master without a transition), ``check-config`` listing every problem with its key
path, and real-time scheduling for the agent but not for the scripts it starts.

Waits are condition loops with generous timeouts; nothing here asserts a speed.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .e2e_util import STATE_TIMEOUT_S, E2EDirector, is_garp, start_pair, wait_adverts
from .lab import Lab, hadirector_command, vip_address, wait_for
from .prober import ProberRun

pytestmark = pytest.mark.netns

WIRE_TIMEOUT_S = 15.0


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def _toml_argv(*argv: object) -> str:
    return "[" + ", ".join(f'"{a}"' for a in argv) + "]"


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def _proc_stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (field 3, state, is index 0)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def _stat_policy(fields: list[str]) -> tuple[int, int]:
    """(rt_priority, policy): stat fields 40 and 41."""
    return int(fields[40 - 3]), int(fields[41 - 3])


# -- notify scripts --------------------------------------------------------------------


def test_notify_scripts_run_in_transition_order(netlab: Lab) -> None:
    out = netlab.tmpdir / "notify.out"
    script = _script(netlab.tmpdir / "notify.sh", f'echo "$*" >> {out}\n')
    a = E2EDirector(
        netlab,
        "dir-a",
        150,
        instance_extra={
            "notify": _toml_argv(script),
            "notify_master": _toml_argv(script, "master"),
            "notify_backup": _toml_argv(script, "backup"),
            "notify_stop": _toml_argv(script, "stop"),
        },
    )
    a.start()
    a.wait_state("MASTER", STATE_TIMEOUT_S)
    wait_for(lambda: len(_lines(out)) >= 4, 15, "four notify lines")
    a.stop()
    assert a.proc is not None and a.proc.returncode == 0
    assert _lines(out) == [
        "backup",
        "INSTANCE VI_1 BACKUP 150",
        "master",
        "INSTANCE VI_1 MASTER 150",
        "stop",
        "INSTANCE VI_1 STOP 150",
    ], a.log()[-3000:]


def test_notify_timeout_kills_the_whole_process_group(netlab: Lab) -> None:
    out = netlab.tmpdir / "notify.out"
    pids = netlab.tmpdir / "pids"
    slow = _script(
        netlab.tmpdir / "slow.sh",
        f"sleep 300 &\necho $! >> {pids}\necho $$ >> {pids}\nwait\necho finished >> {out}\n",
    )
    after = _script(netlab.tmpdir / "after.sh", f'echo "$*" >> {out}\n')
    a = E2EDirector(
        netlab,
        "dir-a",
        150,
        global_extra={"notify_timeout": "1.0"},
        instance_extra={"notify_master": _toml_argv(slow), "notify": _toml_argv(after)},
    )
    a.start()
    a.wait_state("MASTER", STATE_TIMEOUT_S)
    wait_for(lambda: len(_lines(pids)) == 2, 15, "the slow script running")
    grandchild, child = (int(p) for p in _lines(pids))
    timeout = wait_for(lambda: a.records("notify.timeout"), 30, "notify.timeout")[0]
    assert timeout["script"] == str(slow)

    def gone(pid: int) -> bool:
        try:
            return _proc_stat(pid)[0] in ("Z", "X")
        except FileNotFoundError:
            return True

    wait_for(lambda: gone(grandchild) and gone(child), 15, "the script's group killed")
    # Nothing of it is left in the director's namespace.
    for pid_text in netlab.run("dir-a", "ip", "netns", "pids", netlab.ns("dir-a")).stdout.split():
        with_cmd = Path(f"/proc/{pid_text}/cmdline")
        if with_cmd.exists():
            assert b"sleep" not in with_cmd.read_bytes(), pid_text
    # The queue moved on: the generic notify for MASTER ran after the killed script.
    wait_for(lambda: "INSTANCE VI_1 MASTER 150" in _lines(out), 15, "the next script")
    assert "finished" not in _lines(out)
    assert a.state() == "MASTER"


# -- SIGHUP ----------------------------------------------------------------------------


def test_sighup_bad_file_kept_good_file_adds_vip(netlab: Lab) -> None:
    a, b = start_pair(netlab)
    wait_for(lambda: netlab.who_has_vip() == {"dir-a"}, 15, "the VIP on dir-a")
    before = (a.transitions(), b.transitions())
    good_text = a.conf_path.read_text()
    assert "priority = 150" in good_text
    a.conf_path.write_text(good_text.replace("priority = 150", "priority = 300"))
    a.signal(signal.SIGHUP)
    failed = wait_for(lambda: a.records("config.reload_failed"), 15, "config.reload_failed")[0]
    assert any("vrrp_instance[0].priority" in p for p in failed["problems"]), failed
    wait_adverts(netlab, netlab.mac("dir-a"), time.monotonic(), 5)
    assert a.running() and netlab.who_has_vip() == {"dir-a"}
    assert (a.transitions(), b.transitions()) == before

    extra = "192.0.2.101"
    spec = a.instances[0]
    a.instances = [dataclasses.replace(spec, vips=(*spec.vips, f"{extra}/24"))]
    a.prepare()
    t_reload = time.monotonic()
    a.signal(signal.SIGHUP)
    wait_for(lambda: a.records("config.reloaded"), 15, "config.reloaded")
    wait_for(lambda: netlab.who_has(extra) == {"dir-a"}, 15, "the new VIP on dir-a")
    netlab.wait_wire(is_garp(extra, netlab.mac("dir-a")), WIRE_TIMEOUT_S, "GARP", t_reload)
    advert = netlab.wait_wire(
        lambda f: f.kind == "vrrp" and f.src_mac == netlab.mac("dir-a")
        and len(f.info["addresses"]) == 2,
        WIRE_TIMEOUT_S, "adverts naming both VIPs", t_reload,
    )  # fmt: skip
    assert advert.info["addresses"] == [vip_address(), extra]
    assert advert.info["priority"] == 150
    wait_adverts(netlab, netlab.mac("dir-a"), advert.t, 6)
    assert (a.transitions(), b.transitions()) == before
    assert netlab.who_has_vip() == {"dir-a"}
    result = netlab.run("client", "ping", "-c", "1", "-W", "5", extra, check=False)
    assert result.returncode == 0, result.stdout + result.stderr

    # A lower priority by reload (maintenance): dir-b takes over, make-before-break, and
    # neither agent restarts its instance.
    run = ProberRun(netlab, vip_address())
    wait_for(lambda: netlab.neigh("client", vip_address()) == netlab.mac("dir-a"), 15, "neigh")
    netlab.wait_echo_replies("dir-a")
    a.instances = [dataclasses.replace(a.instances[0], priority=50)]
    a.prepare()
    t_lower = time.monotonic()
    a.signal(signal.SIGHUP)
    netlab.wait_wire(
        lambda f: f.kind == "vrrp" and f.src_mac == netlab.mac("dir-a")
        and f.info["priority"] == 50,
        WIRE_TIMEOUT_S, "dir-a advertising 50", t_lower,
    )  # fmt: skip
    b.wait_state("MASTER", STATE_TIMEOUT_S)
    a.wait_state("BACKUP", STATE_TIMEOUT_S)
    wait_for(lambda: netlab.who_has_vip() == {"dir-b"}, 15, "the VIP on dir-b only")
    wait_for(lambda: netlab.who_has(extra) == set(), 15, "the second VIP released")
    wait_for(lambda: netlab.neigh("client", vip_address()) == netlab.mac("dir-b"), 15, "neigh")
    netlab.wait_echo_replies("dir-b")
    moved = run.stop()
    assert moved["sent"] > 0 and moved["lost"] == 0, moved
    assert a.states() == ["BACKUP", "MASTER", "BACKUP"]
    assert b.states() == ["BACKUP", "MASTER"]
    wait_for(lambda: len(a.records("config.reloaded")) >= 2, 15, "the second config.reloaded")
    assert len(a.records("config.reloaded")) == 2
    assert a.records("vrrp.start")[1:] == []  # the instance was never restarted


# -- check-config ----------------------------------------------------------------------


def test_check_config_lists_every_problem(tmp_path: Path) -> None:
    command = hadirector_command()
    if command is None:
        pytest.skip("hadirector is not installed")
    conf = tmp_path / "bad.toml"
    conf.write_text(
        "[global]\n"
        'log_level = "loud"\n'
        "\n"
        "[[vrrp_instance]]\n"
        'name = "VI_1"\n'
        'interface = "eth0"\n'
        "vrid = 51\n"
        "priority = 300\n"
        "advert_interval = 0.005\n"
        'virtual_addresses = ["192.0.2.100/24"]\n'
    )
    done = subprocess.run(
        [*command, "check-config", "--config", str(conf)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done
    text = done.stdout + done.stderr
    lines = [line.strip() for line in text.splitlines()]
    paths = ["global.log_level", "vrrp_instance[0].priority", "vrrp_instance[0].advert_interval"]
    for path in paths:
        assert sum(line.startswith(path + ":") for line in lines) == 1, text
    # Exactly three problem lines, and the count in the heading agrees.
    assert sum(": must be" in line or ": unknown key" in line for line in lines) == 3, text
    assert "3 problem" in text


# -- real-time scheduling --------------------------------------------------------------


def test_realtime_priority_for_the_agent_not_its_scripts(netlab: Lab) -> None:
    out = netlab.tmpdir / "script.stat"
    script = _script(netlab.tmpdir / "stat.sh", f"cat /proc/$$/stat > {out}\n")
    a = E2EDirector(
        netlab,
        "dir-a",
        150,
        global_extra={"realtime_priority": "10"},
        instance_extra={"notify_master": _toml_argv(script)},
    )
    a.start()
    a.wait_state("MASTER", STATE_TIMEOUT_S)
    wait_for(lambda: a.records("agent.realtime"), 15, "agent.realtime")
    assert b"hadirector" in Path(f"/proc/{a.pid}/cmdline").read_bytes()
    policy = os.sched_getscheduler(a.pid)
    assert policy & ~os.SCHED_RESET_ON_FORK == os.SCHED_RR
    assert policy & os.SCHED_RESET_ON_FORK
    assert os.sched_getparam(a.pid).sched_priority == 10
    assert _stat_policy(_proc_stat(a.pid)) == (10, os.SCHED_RR)
    wait_for(lambda: out.exists() and out.read_text(), 15, "the script's /proc stat")
    text = out.read_text()
    fields = text[text.rindex(")") + 2 :].split()
    assert _stat_policy(fields) == (0, os.SCHED_OTHER)
