"""``hadirector status`` and ``reload``: the CLI in a fresh interpreter, against no agent
and against a canned agent (a unix socket served by a thread here). The client is standard
library only: neither trio, structlog, pyroute2 nor the agent's modules are loaded, which
is what makes ``hadirector status`` answer as fast as the interpreter starts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hadirector import cli
from hadirector.config.schema import DEFAULT_CONTROL_SOCKET
from hadirector.control.protocol import encode_reply
from tests.unit.statuskit import snapshot

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("trio", "structlog", "pyroute2", "scapy", "hadirector.agent", "hadirector.control.server")

PROBE = """
import json, sys
from hadirector.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def hadirector(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m hadirector ARGS`` from this repository, in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "hadirector", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        check=False,
    )


def probe(*args: str) -> tuple[int, list[str], str]:
    """Run ``main(ARGS)`` in a fresh interpreter: exit code, modules loaded, stderr."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        check=False,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["code"], result["modules"], proc.stderr


def heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


@pytest.mark.parametrize("command", ["status", "reload"])
def test_no_agent_running_loads_nothing_heavy(tmp_path: Path, command: str) -> None:
    path = tmp_path / "none.sock"
    code, modules, stderr = probe(command, "--socket", str(path))
    assert code == 1
    assert stderr == (
        f"hadirector {command}: hadirector is not running "
        f"(no agent answers on {path}: No such file or directory)\n"
    )
    assert heavy(modules) == []
    assert "hadirector.config.load" not in modules  # --socket: no configuration read


def test_the_socket_from_a_configuration_file_loads_nothing_heavy(tmp_path: Path) -> None:
    conf = tmp_path / "h.toml"
    conf.write_text(f'[global]\ncontrol_socket = "{tmp_path / "h.sock"}"\n')
    code, modules, stderr = probe("status", "--config", str(conf))
    assert code == 1 and f"no agent answers on {tmp_path / 'h.sock'}" in stderr
    assert heavy(modules) == []


def test_only_the_control_socket_of_a_configuration_file_is_read(tmp_path: Path) -> None:
    """A file being edited elsewhere does not keep the operator from the status; a bad
    control_socket or a file that is not TOML is said, with the key path."""
    conf = tmp_path / "h.toml"
    sock = tmp_path / "h.sock"
    conf.write_text(f'[global]\ncontrol_socket = "{sock}"\nbogus = 1\n[[vrrp_instance]]\n')
    code, modules, stderr = probe("status", "--config", str(conf))
    assert code == 1 and f"no agent answers on {sock}" in stderr
    assert "hadirector.config.load" not in modules
    conf.write_text('[global]\ncontrol_socket = "relative.sock"\n')
    code, _modules, stderr = probe("status", "--config", str(conf))
    assert code == 1
    assert 'global.control_socket: must be an absolute path, got "relative.sock"' in stderr
    conf.write_text("[global\n")
    code, _modules, stderr = probe("status", "--config", str(conf))
    assert code == 1 and f"{conf}: cannot read control_socket: " in stderr
    conf.write_text("[vrrp]\n")  # no [global]: the default socket
    code, _modules, stderr = probe("status", "--config", str(conf))
    assert code == 1 and f"no agent answers on {DEFAULT_CONTROL_SOCKET}" in stderr


def test_the_default_socket_is_the_configurations() -> None:
    assert cli.DEFAULT_CONTROL_SOCKET == DEFAULT_CONTROL_SOCKET


class CannedAgent:
    """A control socket that answers one request with ``reply`` (bytes as sent)."""

    def __init__(self, path: Path, reply: bytes) -> None:
        self.request = b""
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(1)
        self._server.settimeout(60)
        self._reply = reply
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with self._server:
            conn, _ = self._server.accept()
            with conn:
                while b"\n" not in self.request:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    self.request += chunk
                conn.sendall(self._reply)

    def join(self) -> bytes:
        self._thread.join(60)
        assert not self._thread.is_alive()
        return self.request


# What a canned agent reports (tests/unit/statuskit.py).
WIRE = snapshot().to_json()

TABLE = """\
router dir-a  version 0.1.0  pid 4242  up 12.5s
INSTANCE  STATE  PRIO  EFF  VRID  IFACE  ADVER  SENT  RCVD  REJ  VIPS HELD
VI_1      FAULT  150   -    51    eth0   -      3     0     2    -
VI_1 in FAULT: link down
sync group G: - (VI_1=FAULT)
ipvs: available, 1 service(s) owned, reconciles 1, last reconcile 0.5s ago
checks: 2 running, down: tcp 192.0.2.100:80 10.0.0.1:80
notify: 0 pending, 1 failed
"""


def test_status_table_and_json(tmp_path: Path) -> None:
    path = tmp_path / "a.sock"
    agent = CannedAgent(path, encode_reply({"ok": True, "status": WIRE}))
    proc = hadirector("status", "--socket", str(path))
    assert json.loads(agent.join()) == {"command": "status"}
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, TABLE, "")

    path.unlink()
    agent = CannedAgent(path, encode_reply({"ok": True, "status": WIRE}))
    proc = hadirector("status", "--json", "--socket", str(path))
    agent.join()
    assert proc.returncode == 0 and json.loads(proc.stdout) == WIRE


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (
            encode_reply({"ok": True, "status": dict(WIRE, pid="x")}),
            "the agent on {path} sent an unreadable status: "
            "status.pid: expected an integer, got a string",
        ),
        (b"garbage\n", "the agent on {path} sent an unreadable reply"),
        (b"", "the agent on {path} sent an unreadable reply"),
        (encode_reply({"ok": False, "error": "busy"}), "busy"),
    ],
    ids=["bad-status", "not-json", "nothing", "error-reply"],
)
def test_bad_replies_are_reported_not_crashed_on(tmp_path: Path, reply: bytes, error: str) -> None:
    path = tmp_path / "a.sock"
    agent = CannedAgent(path, reply)
    proc = hadirector("status", "--socket", str(path))
    agent.join()
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == f"hadirector status: {error.format(path=path)}\n"


def test_reload_reports_the_problems(tmp_path: Path) -> None:
    path = tmp_path / "a.sock"
    reply = {"ok": False, "error": "configuration not applied", "problems": ["p1", "p2"]}
    agent = CannedAgent(path, encode_reply(reply))
    proc = hadirector("reload", "--socket", str(path))
    assert json.loads(agent.join()) == {"command": "reload"}
    assert proc.returncode == 1
    assert proc.stderr == "hadirector reload: configuration not applied\n  p1\n  p2\n"


def test_the_control_server_does_not_import_the_agent() -> None:
    """No import cycle: the agent starts the server, the server knows it as ``Controlled``."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys, hadirector.control.server; print(json.dumps(sorted(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        check=True,
    )
    modules = json.loads(proc.stdout)
    assert "hadirector.control.server" in modules and "hadirector.agent" not in modules
