"""Who may use the control socket: mode 0600, SO_PEERCRED, ``status_group``.

The server (control/server.py) runs on the real trio clock with a stand-in agent that
counts reloads; the clients are the real ``hadirector`` CLI, started as root (this test)
and as ``nobody`` (``setpriv``), so the kernel's own peer credentials are what is checked.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import trio

from hadirector.control import server
from hadirector.status import AgentStatus
from tests.unit.statuskit import snapshot

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"
)
NOBODY = pwd.getpwnam("nobody")
REPO = Path(__file__).resolve().parents[2]


class StandIn:
    """The agent as the server sees it: a fixed snapshot, and reloads counted."""

    def __init__(self) -> None:
        self.reloads = 0

    def status(self) -> AgentStatus:
        return snapshot()

    async def reload(self) -> list[str]:
        self.reloads += 1
        return []


@pytest.fixture
def rundir() -> Iterator[Path]:
    """A directory everyone may enter (pytest's own tree is root's only)."""
    d = Path(tempfile.mkdtemp(prefix="hd-control-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d)


async def cli(path: Path, command: str, *, as_nobody: bool) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "hadirector", command, "--socket", str(path)]
    if as_nobody:
        argv = [
            "setpriv",
            f"--reuid={NOBODY.pw_uid}",
            f"--regid={NOBODY.pw_gid}",
            "--init-groups",
            "--",
            *argv,
        ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = await trio.run_process(
        argv, capture_stdout=True, capture_stderr=True, check=False, env=env
    )
    return subprocess.CompletedProcess(
        argv, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def serve(
    path: Path, status_gid: int | None, scenario: Callable[[StandIn], Awaitable[None]]
) -> None:
    async def main() -> None:
        agent = StandIn()
        ops = server.Operations(agent, status_gid=status_gid)
        async with trio.open_nursery() as nursery:
            await nursery.start(ops.serve_control, str(path))
            await scenario(agent)
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_without_status_group_only_root_and_the_agent_user_get_in(rundir: Path) -> None:
    path = rundir / "hadirector.sock"

    async def scenario(agent: StandIn) -> None:
        st = os.stat(path)
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, 0)
        # The file mode keeps others out before the agent sees them.
        denied = await cli(path, "status", as_nobody=True)
        assert denied.returncode == 1
        assert f"permission denied on {path}" in denied.stderr
        # Had the mode been widened by mistake, SO_PEERCRED still refuses them.
        os.chmod(path, 0o666)
        refused = await cli(path, "status", as_nobody=True)
        assert refused.returncode == 1
        assert refused.stderr.strip() == (
            f"hadirector status: permission denied: uid {NOBODY.pw_uid} may not use this "
            "socket (only root)"
        )
        assert (await cli(path, "status", as_nobody=False)).returncode == 0
        done = await cli(path, "reload", as_nobody=False)
        assert (done.returncode, done.stdout.strip()) == (0, "configuration reloaded")
        assert agent.reloads == 1

    serve(path, None, scenario)


def test_status_group_members_may_read_status_but_not_reload(rundir: Path) -> None:
    path = rundir / "hadirector.sock"
    gid = grp.getgrnam("nogroup").gr_gid

    async def scenario(agent: StandIn) -> None:
        st = os.stat(path)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o660, 0, gid)
        shown = await cli(path, "status", as_nobody=True)
        assert shown.returncode == 0, shown.stderr
        assert "VI_1" in shown.stdout and "dir-a" in shown.stdout
        refused = await cli(path, "reload", as_nobody=True)
        assert refused.returncode == 1
        assert refused.stderr.strip() == (
            f"hadirector reload: permission denied: uid {NOBODY.pw_uid} may only run status "
            "(status_group); 'reload' needs root"
        )
        assert agent.reloads == 0
        assert (await cli(path, "reload", as_nobody=False)).returncode == 0
        assert agent.reloads == 1

    serve(path, gid, scenario)
