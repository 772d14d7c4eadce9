"""Inside the VM (run by test_deb.py): install, upgrade under a running agent, purge.

    /usr/bin/python3 deb_guest.py OLD.deb NEW.deb REPORT.json

Standard library only, run with Debian's python3 (not the project's venv). The VM's root
is the host's under a writable overlay, so dpkg really installs here and nothing reaches
the host. Every step's facts go into the JSON report; test_deb.py asserts on them. A step
that fails records its error and the script goes on where it can, so one report tells the
whole story.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

OLD_DEB, NEW_DEB, REPORT = sys.argv[1:4]
#: Where a package, its maintainer scripts or its agent could leave something.
SCAN_ROOTS = (
    "/etc",
    "/var/lib",
    "/var/cache",
    "/var/log",
    "/run",
    "/usr/sbin",
    "/usr/bin",
    "/usr/lib/hadirector",
    "/lib/systemd/system",
    "/usr/share/doc/hadirector",
    "/usr/share/man/man5",
    "/usr/share/man/man8",
    "/opt",
    "/home",
    "/srv",
)
NS = "hdebtest"
CONFIG = "/root/hadirector-debtest.toml"
SOCKET = "/run/hadirector/hadirector.sock"
AGENT_CONFIG = f"""
[global]
router_id = "deb-test"
control_socket = "{SOCKET}"

[[vrrp_instance]]
name = "VI_DEB"
interface = "v0"
vrid = 77
priority = 150
advert_interval = 0.1
virtual_addresses = ["10.77.0.100/24"]
"""
report: dict[str, Any] = {"errors": []}


def run(*argv: str, check: bool = False, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", PATH="/usr/sbin:/usr/bin:/sbin:/bin")
    env.pop("PYTHONPATH", None)
    # cwd /: the host's cwd (this checkout) must not be importable by a `python3 -c`.
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, cwd="/")
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr}{proc.stdout}")
    return proc


def snapshot() -> dict[str, str]:
    """Every path under SCAN_ROOTS with its type (and, for regular files in /etc, content)."""
    seen: dict[str, str] = {}
    for top in SCAN_ROOTS:
        if not os.path.lexists(top):
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            # /run's own mounts in the guest (none here) and /var/lib/dpkg's tmp are not ours.
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                mode = os.lstat(path).st_mode
                kind = "d" if stat.S_ISDIR(mode) else "l" if stat.S_ISLNK(mode) else "f"
                if kind == "f" and path.startswith("/etc/"):
                    kind += ":" + hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
                if kind == "l":
                    kind += ":" + os.readlink(path)
                seen[path] = kind
    return seen


def dpkg_install(deb: str) -> dict[str, Any]:
    start = time.monotonic()
    proc = run("dpkg", "-i", "--force-confdef", "--force-confold", deb)
    return {
        "rc": proc.returncode,
        "output": proc.stdout + proc.stderr,
        "seconds": round(time.monotonic() - start, 1),
        "version": run("dpkg-query", "-W", "-f=${Version}", "hadirector").stdout,
    }


def installed_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {}
    facts["files"] = run("dpkg", "-L", "hadirector").stdout.split()
    facts["conffiles"] = run("dpkg-query", "-W", "-f=${Conffiles}", "hadirector").stdout
    facts["which"] = run("sh", "-c", "command -v hadirector").stdout.strip()
    facts["realpath"] = os.path.realpath("/usr/sbin/hadirector")
    version = run("hadirector", "--version")
    facts["version"] = (version.returncode, version.stdout.strip())
    check = run("hadirector", "check-config", "--config", "/etc/hadirector/hadirector.toml")
    facts["check_config"] = (check.returncode, check.stdout + check.stderr)
    probe = run(
        "/usr/lib/hadirector/venv/bin/python3",
        "-c",
        "import sys, trio, structlog, hadirector; "
        "print(sys.prefix, trio.__file__, structlog.__file__, hadirector.__file__)",
    )
    facts["imports"] = (probe.returncode, probe.stdout.strip() + probe.stderr)
    user = run("getent", "passwd", "hadirector").stdout.strip()
    facts["user"] = user
    facts["group"] = run("getent", "group", "hadirector").stdout.strip()
    facts["pycache"] = sorted(
        str(p) for p in Path("/usr/lib/hadirector").rglob("__pycache__") if p.is_dir()
    )[:3]
    facts["pycache_count"] = sum(1 for _ in Path("/usr/lib/hadirector").rglob("*.pyc"))
    facts["man"] = run("man", "-w", "hadirector.toml").stdout.strip()
    return facts


def start_agent() -> subprocess.Popen[str]:
    for argv in (
        ("ip", "netns", "add", NS),
        ("ip", "-n", NS, "link", "set", "lo", "up"),
        ("ip", "-n", NS, "link", "add", "v0", "type", "veth", "peer", "name", "v1"),
        ("ip", "-n", NS, "addr", "add", "10.77.0.1/24", "dev", "v0"),
        ("ip", "-n", NS, "link", "set", "v0", "up"),
        ("ip", "-n", NS, "link", "set", "v1", "up"),
    ):
        run(*argv, check=True)
    Path(CONFIG).write_text(AGENT_CONFIG)
    env = dict(os.environ, PATH="/usr/sbin:/usr/bin:/sbin:/bin")
    env.pop("PYTHONPATH", None)
    proc = subprocess.Popen(
        ["ip", "netns", "exec", NS, "hadirector", "run", "--config", CONFIG],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd="/",
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "vrrp.transition" and event.get("new") == "MASTER":
            # Keep reading its log, so that a full pipe never blocks the agent.
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc
    raise RuntimeError(f"the agent exited ({proc.wait()}) before becoming MASTER")


def agent_status() -> dict[str, Any]:
    proc = run("hadirector", "status", "--json", "--socket", SOCKET)
    if proc.returncode != 0:
        return {"rc": proc.returncode, "error": proc.stdout + proc.stderr}
    data = json.loads(proc.stdout)
    data = data.get("status", data)
    return {
        "rc": 0,
        "pid": data.get("pid"),
        "states": [i.get("state") for i in data.get("instances", [])],
    }


def step(name: str, action: Any) -> Any:
    start = time.monotonic()
    try:
        result = action()
        print(f"deb_guest: {name} ({time.monotonic() - start:.1f} s)", flush=True)
    except Exception as exc:  # recorded for the host; the next steps still run
        report["errors"].append(f"{name}: {type(exc).__name__}: {exc}")
        return None
    report[name] = result
    return result


def main() -> None:
    before = step("snapshot_before", snapshot) or {}
    step("install", lambda: dpkg_install(OLD_DEB))
    step("installed", installed_facts)
    conffile = Path("/etc/hadirector/hadirector.toml")
    step("local_edit", lambda: conffile.write_text(conffile.read_text() + "# local edit\n"))
    agent = None
    try:
        agent = start_agent()
    except Exception as exc:
        report["errors"].append(f"agent_start: {type(exc).__name__}: {exc}")
    report["agent_pid"] = agent.pid if agent else None
    report["status_before"] = agent_status()
    step("upgrade", lambda: dpkg_install(NEW_DEB))
    report["agent_alive_after_upgrade"] = agent is not None and agent.poll() is None
    report["status_after"] = agent_status()
    report["conffile_kept"] = conffile.exists() and conffile.read_text().endswith("# local edit\n")
    report["upgraded"] = step("upgraded_facts", installed_facts) is not None
    if agent is not None:
        # ip netns exec execs the agent: the pid is the agent's own.
        agent.send_signal(signal.SIGTERM)
        report["agent_exit"] = agent.wait(timeout=120)
    run("ip", "netns", "del", NS)
    Path(CONFIG).unlink(missing_ok=True)
    purge = step("purge_run", lambda: run("dpkg", "--purge", "hadirector"))
    report.pop("purge_run", None)
    report["purge"] = {"rc": purge.returncode, "output": purge.stdout + purge.stderr}
    report["status_after_purge"] = run("dpkg-query", "-W", "-f=${Status}", "hadirector").stdout
    report["user_after_purge"] = run("getent", "passwd", "hadirector").stdout.strip()
    report["group_after_purge"] = run("getent", "group", "hadirector").stdout.strip()
    after = step("snapshot_after", snapshot) or {}
    report.pop("snapshot_before", None)
    report.pop("snapshot_after", None)
    report["scanned"] = len(after)
    report["added"] = sorted(p for p in after if p not in before)
    report["removed"] = sorted(p for p in before if p not in after)
    report["changed"] = sorted(p for p in after if p in before and after[p] != before[p])


if __name__ == "__main__":
    try:
        main()
    finally:
        Path(REPORT).write_text(json.dumps(report, indent=1))
