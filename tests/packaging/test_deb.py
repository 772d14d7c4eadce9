"""tools/build-deb: the package's contents, lintian, and install/upgrade/purge in the VM.

Two packages are built once per session (the second with a bumped version, through
HADIRECTOR_DEB_VERSION); the VM run installs the first, starts an agent from it in a
network namespace, upgrades to the second under it, stops it and purges, and reports
(tests/packaging/deb_guest.py). The VM is booted without systemd, so the maintainer
scripts' systemd branches are the ones Debian takes on a machine without it (the restart
of running units on upgrade under systemd is not tested here).

Needs root, dpkg-dev, python3-venv, lintian (tools/setup installs them), access to the
pinned wheels (PyPI or pip's cache), and for the VM tests qemu and the kernel
(HADIRECTOR_SKIP_VM=1 skips only those).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import hadirector
from tests.debs import NEW, OLD, build_both

REPO = Path(__file__).resolve().parents[2]
RUNNER = REPO / "tools" / "vm" / "run-in-vm"
GUEST = Path(__file__).with_name("deb_guest.py")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (dpkg, the VM)")


@pytest.fixture(scope="session")
def debs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The package built twice, versions OLD and NEW (once per session)."""
    return build_both(tmp_path_factory.mktemp("debs"))


def _field(deb: Path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_package_holds_the_agent_the_unit_the_conffile_docs_and_man_pages(
    debs: dict[str, Path],
) -> None:
    deb = debs[OLD]
    assert deb.name == f"hadirector_{OLD}_all.deb"
    listing = subprocess.run(
        ["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True
    ).stdout
    paths = {line.split()[5].removeprefix(".") for line in listing.splitlines()}
    for path in (
        "/usr/sbin/hadirector",
        "/usr/lib/hadirector/venv/bin/hadirector",
        "/usr/lib/hadirector/venv/pyvenv.cfg",
        "/lib/systemd/system/hadirector.service",
        "/etc/hadirector/hadirector.toml",
        "/usr/share/doc/hadirector/README.md",
        "/usr/share/doc/hadirector/copyright",
        "/usr/share/doc/hadirector/changelog.Debian.gz",
        "/usr/share/man/man8/hadirector.8.gz",
        "/usr/share/man/man5/hadirector.toml.5.gz",
    ):
        assert path in paths, path
    site = {p.split("/")[8] for p in paths if "/site-packages/" in p and p.count("/") > 8}
    for dist in ("trio", "structlog", "hadirector", "attrs", "sniffio", "outcome", "idna"):
        assert any(entry.startswith(dist) for entry in site), dist
    assert not [p for p in paths if "__pycache__" in p or p.endswith(".pyc")]
    depends = {d.strip().split()[0] for d in _field(deb, "Depends").split(",")}
    assert {"iproute2", "nftables", "adduser"} <= depends
    assert any(re.fullmatch(r"python3\.\d+", d) for d in depends), depends
    assert _field(deb, "Recommends") == "ipvsadm"
    assert _field(deb, "Version") == OLD
    tar = subprocess.run(
        ["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        member = archive.extractfile("./lib/systemd/system/hadirector.service")
        assert member is not None
        unit = member.read().decode()
    assert "ExecStart=/usr/sbin/hadirector run" in unit
    assert "/usr/local/bin" not in unit
    control = subprocess.run(
        ["dpkg-deb", "-I", str(deb), "conffiles"], capture_output=True, text=True, check=True
    ).stdout
    assert control.split() == ["/etc/hadirector/hadirector.toml"]


def test_lintian_finds_no_error_and_only_the_warnings_the_readme_explains(
    debs: dict[str, Path],
) -> None:
    if shutil.which("lintian") is None:
        pytest.fail("lintian is not installed (tools/setup installs it)")
    proc = subprocess.run(
        ["lintian", "--no-tag-display-limit", str(debs[OLD])], capture_output=True, text=True
    )
    tags = [line for line in proc.stdout.splitlines() if re.match(r"^[EW]: ", line)]
    assert not [t for t in tags if t.startswith("E: ")], proc.stdout
    readme = (REPO / "README.md").read_text()
    explained = set(re.findall(r"`([a-z0-9-]+)`", _readme_section(readme, "Debian package")))
    warnings = {t.split()[2] for t in tags if t.startswith("W: ")}
    assert warnings <= explained, f"not explained in README: {warnings - explained}"


def _readme_section(readme: str, title: str) -> str:
    match = re.search(rf"^### {re.escape(title)}\n(.*?)(?=^##)", readme, re.M | re.S)
    assert match is not None, f"README has no '### {title}'"
    return match.group(1)


# --- in the VM ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vm_report(debs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One VM boot: install OLD, run an agent, upgrade to NEW under it, stop, purge."""
    if os.environ.get("HADIRECTOR_SKIP_VM") == "1":
        pytest.skip("HADIRECTOR_SKIP_VM=1: VM tests skipped explicitly")
    exchange = tmp_path_factory.mktemp("deb-vm")
    shutil.copy(debs[OLD], exchange / "old.deb")
    shutil.copy(debs[NEW], exchange / "new.deb")
    report = exchange / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(RUNNER),
            "--timeout",
            "1500",
            "--rw",
            str(exchange),
            "--",
            "/usr/bin/python3",
            str(GUEST),
            str(exchange / "old.deb"),
            str(exchange / "new.deb"),
            str(report),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    log = proc.stdout + proc.stderr
    # The guest's output and report, kept for a look after the run (as vmplugin keeps its log).
    keep = REPO / ".vmcache"
    keep.mkdir(exist_ok=True)
    (keep / "last-deb-vm-run.log").write_text(log)
    if report.exists():
        shutil.copy(report, keep / "last-deb-vm-report.json")
    assert report.exists(), f"no report from the VM (exit {proc.returncode}):\n{log[-4000:]}"
    data = json.loads(report.read_text())
    data["vm_log"] = log[-4000:]
    yield data


def test_install_puts_a_working_agent_on_path_with_its_user(vm_report: Any) -> None:
    r = vm_report
    assert not r["errors"], r["errors"]
    assert r["install"]["rc"] == 0, r["install"]["output"]
    assert r["install"]["version"] == OLD
    facts = r["installed"]
    assert facts["which"] == "/usr/sbin/hadirector"
    assert facts["realpath"] == "/usr/lib/hadirector/venv/bin/hadirector"
    assert facts["version"] == [0, hadirector.__version__]
    assert facts["check_config"][0] == 0, facts["check_config"]
    rc, imports = facts["imports"]
    assert rc == 0, imports
    prefix, *modules = imports.split()
    assert prefix == "/usr/lib/hadirector/venv"
    assert all(m.startswith("/usr/lib/hadirector/venv/lib/") for m in modules), modules
    # A system user (uid < 1000), no home, no login shell.
    name, _, uid, _, _, home, shell = facts["user"].split(":")
    assert name == "hadirector" and int(uid) < 1000
    assert home == "/nonexistent" and shell.endswith("nologin")
    assert facts["group"].startswith("hadirector:")
    assert "/etc/hadirector/hadirector.toml" in facts["conffiles"]
    assert facts["pycache_count"] > 0  # compiled by postinst, so no agent writes into /usr
    assert facts["man"].endswith("hadirector.toml.5.gz")


def test_upgrade_under_a_running_agent_keeps_it_running_and_keeps_the_conffile(
    vm_report: Any,
) -> None:
    r = vm_report
    assert not r["errors"], r["errors"]
    assert r["status_before"] == {"rc": 0, "pid": r["agent_pid"], "states": ["MASTER"]}
    assert r["upgrade"]["rc"] == 0, r["upgrade"]["output"]
    assert r["upgrade"]["version"] == NEW
    assert r["agent_alive_after_upgrade"]
    assert r["status_after"] == {"rc": 0, "pid": r["agent_pid"], "states": ["MASTER"]}
    assert r["conffile_kept"]
    assert r["upgraded"]
    assert r["agent_exit"] == 0


def test_purge_leaves_nothing_behind(vm_report: Any) -> None:
    r = vm_report
    assert r["purge"]["rc"] == 0, r["purge"]["output"]
    assert r["status_after_purge"] == ""
    assert r["user_after_purge"] == "" and r["group_after_purge"] == ""
    # Compared: every path under /etc, /var/lib, /var/cache, /var/log, /run, /usr/sbin,
    # /usr/bin, /lib/systemd/system, the doc and man directories, /opt, /home, /srv (with
    # /etc's file contents) before the install and after the purge.
    assert r["scanned"] > 1000
    leftovers = [p for p in r["added"] + r["changed"] if not _expected_change(p)]
    assert leftovers == [], leftovers
    assert r["removed"] == []


def _expected_change(path: str) -> bool:
    """Changes any package's install and purge make, named one by one."""
    return path in {
        # dpkg's own records: the status database and its backup, the log.
        "/var/lib/dpkg/status",
        "/var/lib/dpkg/status-old",
        "/var/lib/dpkg/lock",
        "/var/lib/dpkg/lock-frontend",
        "/var/lib/dpkg/triggers/Lock",
        "/var/log/dpkg.log",
        # The shadow tools keep the previous account files as name- (adduser, deluser).
        "/etc/passwd-",
        "/etc/group-",
        "/etc/shadow-",
        "/etc/gshadow-",
        # adduser's lock file, left by every adduser/deluser run (in /run: gone at boot).
        "/run/adduser",
        # man-db's index, updated by its trigger for any package with man pages.
        "/var/cache/man/index.db",
    } or path.startswith("/var/cache/man/")
