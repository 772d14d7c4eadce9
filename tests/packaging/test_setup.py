"""tools/setup on a stock Debian: the distribution's python3 only, a stock PATH.

Debian's python3 is externally managed (PEP 668): `pip install` into it is refused, so
setup makes a virtual environment. Here setup runs with PATH=/usr/sbin:/usr/bin:/sbin:/bin
(so `python3` is Debian's /usr/bin/python3), a temporary venv and a temporary directory
for the `hadirector` link, and the agent's own dependencies only (HADIRECTOR_EXTRAS=""; the
test extras are the same pip step with more packages). It needs the Debian packages setup
lists to be installed already (as after any tools/setup) and the wheels of trio and
structlog (PyPI or pip's cache).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import hadirector

REPO = Path(__file__).resolve().parents[2]
STOCK_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
DEBIAN_PYTHON = Path("/usr/bin/python3")


def _debian_python_ok() -> bool:
    if not DEBIAN_PYTHON.exists():
        return False
    probe = subprocess.run(
        [str(DEBIAN_PYTHON), "-c", "import sys; sys.exit(sys.version_info < (3, 11))"]
    )
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(
    not _debian_python_ok(), reason="no distribution python3 >= 3.11 at /usr/bin/python3"
)


def _setup(tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": STOCK_PATH,
        "HOME": os.environ.get("HOME", "/root"),
        "HADIRECTOR_VENV": str(tmp / "venv"),
        "HADIRECTOR_BINDIR": str(tmp / "bin"),
        "HADIRECTOR_EXTRAS": "",
    }
    proc = subprocess.run(
        [str(REPO / "tools" / "setup")], env=env, capture_output=True, text=True, cwd="/"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_setup_with_debian_python_makes_a_venv_and_puts_hadirector_on_path(
    tmp_path: Path,
) -> None:
    # The situation setup is for: Debian marks its python3 externally managed.
    stdlib = subprocess.run(
        [str(DEBIAN_PYTHON), "-I", "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not (Path(stdlib) / "EXTERNALLY-MANAGED").exists():
        pytest.skip(f"{DEBIAN_PYTHON} is not marked externally managed (not Debian's?)")

    first = _setup(tmp_path)
    assert "creating the virtual environment" in first.stdout
    venv = tmp_path / "venv"
    cfg = dict(
        line.split(" = ", 1) for line in (venv / "pyvenv.cfg").read_text().splitlines() if line
    )
    assert cfg["home"] == "/usr/bin"  # made from the distribution's interpreter
    link = tmp_path / "bin" / "hadirector"
    assert os.readlink(link) == str(venv / "bin" / "hadirector")

    stock = {"PATH": f"{tmp_path / 'bin'}:{STOCK_PATH}"}
    version = subprocess.run(["hadirector", "--version"], env=stock, capture_output=True, text=True)
    assert version.stdout.strip() == hadirector.__version__, version.stderr
    # Editable: the venv runs this checkout's code, also as `python -m hadirector`.
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import hadirector; print(hadirector.__file__)"],
        env=stock,
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert where.stdout.strip() == str(REPO / "hadirector" / "__init__.py"), where.stderr
    # Nothing went into the distribution's python3.
    system = subprocess.run(
        [str(DEBIAN_PYTHON), "-I", "-c", "import hadirector"], capture_output=True, cwd="/"
    )
    assert system.returncode != 0

    # Idempotent: a second run keeps the venv and installs nothing.
    before = (venv / "pyvenv.cfg").stat().st_mtime_ns
    second = _setup(tmp_path)
    assert "creating" not in second.stdout and "installing" not in second.stdout, second.stdout
    assert (venv / "pyvenv.cfg").stat().st_mtime_ns == before
    assert os.readlink(link) == str(venv / "bin" / "hadirector")
