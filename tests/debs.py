"""The Debian package built from this tree, for the tests that install it.

``build(version, out)`` runs tools/build-deb (HADIRECTOR_DEB_VERSION, HADIRECTOR_DEB_OUT)
and returns the .deb. ``OLD`` and ``NEW`` are the two versions the install and upgrade
tests use (the second only bumps the Debian revision). tests/packaging/test_deb.py builds
them in a session fixture; tests/vm/test_systemd_pair.py builds them on the host before its
VM boots (``vm_host_setup``), since the guest has no package index to build from.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import hadirector

REPO = Path(__file__).resolve().parents[1]
OLD = f"{hadirector.__version__}-1"
NEW = f"{hadirector.__version__}-2"


def build(version: str, out: Path) -> Path:
    """tools/build-deb for ``version`` into ``out``; the path of the .deb."""
    env = dict(os.environ, HADIRECTOR_DEB_VERSION=version, HADIRECTOR_DEB_OUT=str(out))
    proc = subprocess.run(
        [str(REPO / "tools" / "build-deb")], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise AssertionError(f"tools/build-deb {version} failed:\n{proc.stdout}{proc.stderr}")
    (deb,) = out.glob(f"hadirector_{version}_*.deb")
    return deb


def build_both(out: Path) -> dict[str, Path]:
    """The package built twice, versions OLD and NEW."""
    return {version: build(version, out) for version in (OLD, NEW)}
