"""hadirector/security.py: script identity, script_security, secret files, capabilities.

Real files in a temporary directory (owners and modes set with chown/chmod, so the
ownership cases need root), real processes for the identity scripts run as.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio

from hadirector import logs, security
from hadirector.alerts.notify import NotifyJob, run_one
from hadirector.config.load import load_text
from hadirector.errors import ConfigError
from hadirector.preflight import preflight

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown and setuid need root")
NOBODY = pwd.getpwnam("nobody")

INSTANCE = """
[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
vrid = 51
priority = 100
virtual_addresses = ["192.0.2.100/24"]
"""


def script(path: Path, body: str = "exit 0\n", mode: int = 0o755) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(mode)
    return path


@pytest.fixture
def root_dir(tmp_path: Path) -> Path:
    """A directory only root may change, under pytest's (root-owned, 0700) tree."""
    d = tmp_path / "scripts"
    d.mkdir(mode=0o755)
    d.chmod(0o755)
    return d


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory any user may write (pytest's own tree is root's only)."""
    d = Path(tempfile.mkdtemp(prefix="hd-security-"))
    d.chmod(0o777)
    try:
        yield d
    finally:
        shutil.rmtree(d)


# --------------------------------------------------------------------- script_security


@needs_root
def test_a_root_owned_script_in_root_owned_directories_is_safe(root_dir: Path) -> None:
    assert security.script_insecure(str(script(root_dir / "ok.sh"))) is None
    # group-writable by root's group only is still root's
    assert security.script_insecure(str(script(root_dir / "g.sh", mode=0o775))) is None


@needs_root
def test_a_script_owned_by_another_user_is_refused(root_dir: Path) -> None:
    s = script(root_dir / "theirs.sh")
    os.chown(s, NOBODY.pw_uid, 0)
    assert security.script_insecure(str(s)) == f"{s} is owned by nobody (uid 65534), not root"


@needs_root
def test_a_script_writable_by_a_group_or_everyone_is_refused(root_dir: Path) -> None:
    g = script(root_dir / "group.sh", mode=0o775)
    os.chown(g, 0, NOBODY.pw_gid)
    assert security.script_insecure(str(g)) == (
        f"{g} is writable by group {NOBODY.pw_gid} (mode 0775)"
    )
    o = script(root_dir / "other.sh", mode=0o757)
    assert security.script_insecure(str(o)) == f"{o} is writable by everyone (mode 0757)"


@needs_root
def test_a_writable_directory_in_the_chain_is_refused_unless_sticky(root_dir: Path) -> None:
    sub = root_dir / "open"
    sub.mkdir()
    s = script(sub / "ok.sh")
    sub.chmod(0o777)
    assert security.script_insecure(str(s)) == f"{sub} is writable by everyone (mode 0777)"
    sub.chmod(0o1777)  # like /tmp: only an entry's owner may replace it
    assert security.script_insecure(str(s)) is None
    os.chown(root_dir, NOBODY.pw_uid, 0)
    assert security.script_insecure(str(s)) == (
        f"{root_dir} is owned by nobody (uid 65534), not root"
    )


@needs_root
def test_a_symlink_to_an_unsafe_script_is_refused(root_dir: Path) -> None:
    other = root_dir / "other"
    other.mkdir()
    target = script(other / "real.sh")
    os.chown(other, NOBODY.pw_uid, NOBODY.pw_gid)
    link = root_dir / "link.sh"
    link.symlink_to(target)
    assert security.script_insecure(str(link)) == (
        f"{other} is owned by nobody (uid 65534), not root"
    )


@needs_root
def test_script_security_refuses_at_load_with_key_path_and_reason(root_dir: Path) -> None:
    good = script(root_dir / "good.sh")
    bad = script(root_dir / "bad.sh", mode=0o777)
    text = (
        f'[global]\nscript_security = true\n{INSTANCE}notify_master = "{good}"\n'
        f'notify = "{bad}"\n[[track_script]]\nname = "chk"\nscript = "{bad}"\n'
    )
    problems = [str(p) for p in preflight(load_text(text))]
    reason = f"{bad}: refused by script_security: {bad} is writable by everyone (mode 0777)"
    assert problems == [f"vrrp_instance[0].notify: {reason}", f"track_script[0].script: {reason}"]
    # Off (the default), the same file loads.
    assert preflight(load_text(text.replace("script_security = true", ""))) == []


# --------------------------------------------------------------------- secrets


def test_an_hmac_key_readable_by_others_fails_with_the_chmod(tmp_path: Path) -> None:
    key = tmp_path / "vrrp.key"
    key.write_text("ab" * 32)
    key.chmod(0o644)
    config = load_text(INSTANCE + f'hmac_key_file = "{key}"\n')
    assert [str(p) for p in preflight(config)] == [
        f"vrrp_instance[0].hmac_key_file: {key}: holds a secret but is readable by group or "
        f"others (mode 0644); run: chmod go-rwx {key}"
    ]
    key.chmod(0o600)
    assert preflight(config) == []


@needs_root
def test_a_key_readable_by_the_agents_own_group_only_is_accepted(tmp_path: Path) -> None:
    key = tmp_path / "vrrp.key"
    key.write_text("ab" * 32)
    key.chmod(0o640)
    os.chown(key, 0, NOBODY.pw_gid)  # a group that is not the agent's: exposed
    config = load_text(INSTANCE + f'hmac_key_file = "{key}"\n')
    assert len(preflight(config)) == 1
    os.setegid(NOBODY.pw_gid)  # the agent's own group (a non-root agent's egid)
    try:
        assert preflight(config) == []
        key.chmod(0o644)
        assert [p.message.rsplit("run: ", 1)[1] for p in preflight(config)] == [
            f"chmod o-rwx {key}"
        ]
    finally:
        os.setegid(0)


def test_a_config_file_with_auth_pass_readable_by_others_is_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "hadirector.toml"
    path.write_text(INSTANCE + 'version = 2\nauth_type = "pass"\nauth_pass = "s3cr3t"\n')
    path.chmod(0o644)
    config = load_text(path.read_text())
    warning = security.config_secret_warning(config, path)
    assert warning == (
        f"{path} holds auth_pass but is readable by group or others (mode 0644); "
        f"run: chmod go-rwx {path}"
    )
    assert "s3cr3t" not in warning
    path.chmod(0o600)
    assert security.config_secret_warning(config, path) is None
    # No secret in the file: no warning, whatever its mode.
    path.chmod(0o644)
    assert security.config_secret_warning(load_text(INSTANCE), path) is None


# --------------------------------------------------------------------- identity


@needs_root
def test_script_user_resolves_names_and_ids() -> None:
    ident, problems = security.script_identity(load_text('[global]\nscript_user = "nobody"\n'))
    assert problems == [] and (ident.uid, ident.gid) == (NOBODY.pw_uid, NOBODY.pw_gid)
    ident, _ = security.script_identity(
        load_text('[global]\nscript_user = "65534"\nscript_group = "0"\n')
    )
    assert (ident.uid, ident.gid) == (65534, 0)
    assert security.script_identity(load_text(INSTANCE))[0].spawn_kwargs() == {}


def test_unknown_accounts_and_a_group_without_user_are_problems() -> None:
    text = '[global]\nscript_user = "no-such-user-hd"\nstatus_group = "no-such-group-hd"\n'
    assert [str(p) for p in preflight(load_text(text))] == [
        "global.script_user: no user 'no-such-user-hd' on this host",
        "global.status_group: no group 'no-such-group-hd' on this host",
    ]
    assert [str(p) for p in preflight(load_text('[global]\nscript_group = "root"\n'))] == [
        "global.script_group: needs script_user (the user scripts run as)"
    ]


def test_account_names_are_checked_by_the_loader() -> None:
    with pytest.raises(ConfigError) as caught:
        load_text('[global]\nscript_user = "no body"\n')
    assert [str(p) for p in caught.value.problems] == [
        'global.script_user: must be a user or group name, or a numeric id, got "no body"'
    ]


@needs_root
def test_a_script_runs_as_script_user(open_dir: Path) -> None:
    """A real script records its uid and gid: the ones script_user names."""
    out = open_dir / "ids"
    prog = script(open_dir / "ids.sh", f"id -u > {out}\nid -g >> {out}\n")
    ident, _ = security.script_identity(load_text('[global]\nscript_user = "nobody"\n'))
    security.set_script_identity(ident)
    try:
        code = trio.run(run_one, NotifyJob((str(prog),), "test", 5.0), logs.get())
    finally:
        security.set_script_identity(security.ScriptIdentity())
    assert code == 0
    assert out.read_text().split() == [str(NOBODY.pw_uid), str(NOBODY.pw_gid)]


def test_has_capability_reads_the_effective_set(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapEff:\t0000000000003000\n")
    assert security.has_capability(security.CAP_NET_ADMIN, str(status))
    assert security.has_capability(security.CAP_NET_RAW, str(status))
    assert not security.has_capability(security.CAP_SYS_MODULE, str(status))


# --------------------------------------------------------------------- sysctls


class Recorder:
    """A logger that keeps (level, event, fields)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, object]]] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        def log(event: str, **fields: object) -> None:
            self.events.append((level, event, fields))

        return log


def test_a_sysctl_already_right_is_left_alone_and_one_that_cannot_be_set_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hadirector.ipvs import manager

    monkeypatch.setattr(manager, "SYSCTL_ROOT", tmp_path)
    (tmp_path / "net/ipv4").mkdir(parents=True)
    (tmp_path / "net/ipv4/ip_forward").write_text("1\n")
    (tmp_path / "net/ipv4/vs").mkdir()
    (tmp_path / "net/ipv4/vs/conntrack").mkdir()  # stands for a file that cannot be written
    ipvs = manager.IpvsManager(load_text(""))
    recorder = Recorder()
    ipvs.log = recorder  # type: ignore[assignment]
    ipvs._sysctl("net/ipv4/ip_forward", "1")
    assert recorder.events == []
    ipvs._sysctl("net/ipv4/vs/conntrack", "1")
    [(level, event, fields)] = recorder.events
    assert (level, event, fields["key"], fields["value"]) == (
        "error",
        "ipvs.sysctl_failed",
        "net.ipv4.vs.conntrack",
        "1",
    )
    assert fields["detail"] == (
        "cannot set net.ipv4.vs.conntrack = 1, which the configured forwarding needs; set it "
        "at boot: echo 'net.ipv4.vs.conntrack = 1' > /etc/sysctl.d/90-hadirector.conf"
    )


@needs_root
def test_a_check_script_runs_as_script_user(open_dir: Path) -> None:
    """A health-check script records its uid: script_user's, as notify and track scripts."""
    import ipaddress

    from hadirector.checks.probes import probe_script

    out = open_dir / "ids"
    prog = script(open_dir / "check.sh", f"id -u > {out}\n")
    config = load_text(
        '[global]\nscript_user = "nobody"\n[[virtual_server]]\naddress = "192.0.2.10:80"\n'
        f'check = {{ type = "script", script = "{prog}" }}\n'
        '[[virtual_server.real_server]]\naddress = "198.51.100.11:80"\n'
    )
    check = config.virtual_servers[0].real_servers[0].check
    assert check is not None
    security.set_script_identity(security.script_identity(config)[0])
    try:
        trio.run(probe_script, check, ipaddress.ip_address("198.51.100.11"), 80)
    finally:
        security.set_script_identity(security.ScriptIdentity())
    assert out.read_text().split() == [str(NOBODY.pw_uid)]


def test_who_runs_the_scripts_is_said_once_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    with_script = INSTANCE + 'notify = "/bin/true"\n'
    as_nobody = '[global]\nscript_user = "nobody"\n' + with_script

    def events(text: str) -> list[tuple[str, dict[str, object]]]:
        return security.startup_warnings(load_text(text), None)

    monkeypatch.setattr(security.os, "geteuid", lambda: 0)
    [(event, _)] = events(with_script)
    assert event == "security.scripts_as_root"
    assert events(as_nobody) == [] and events(INSTANCE) == []
    assert security.startup_notes(load_text(with_script)) == []
    # A non-root agent cannot switch users: a warning when script_user asks it to (it is
    # ignored); without script_user (the shipped units) it is expected: an info note.
    monkeypatch.setattr(security.os, "geteuid", lambda: NOBODY.pw_uid)
    [(event, fields)] = events(as_nobody)
    assert event == "security.scripts_as_agent_user"
    assert fields["user"] == "nobody" and fields["ignored"] == "script_user = 'nobody'"
    assert security.startup_notes(load_text(as_nobody)) == []
    assert events(with_script) == [] and events(INSTANCE) == []
    [(event, fields)] = security.startup_notes(load_text(with_script))
    assert event == "security.scripts_as_agent_user" and fields["user"] == "nobody"
    assert "ignored" not in fields and security.startup_notes(load_text(INSTANCE)) == []
