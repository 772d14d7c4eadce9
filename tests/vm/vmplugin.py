"""pytest glue: run every ``@pytest.mark.vm`` test inside one VM boot, report each on the host.

On the host (HADIRECTOR_IN_VM unset), each collected vm test is replaced by a stand-in item
with the same node id and markers, so none of its fixtures run on the host. When the first
stand-in runs, ``tools/vm/run-in-vm`` boots the VM once and runs
``python -m pytest <every selected vm node id>`` in it, with a writable exchange directory;
the guest writes one JSON record per test there (outcome, phase, failure text, captured
output) and each stand-in then passes, fails, skips or xfails exactly as its guest test did,
with the guest's message. A VM that fails to boot fails every stand-in with the runner's
reason (which names the packages to install). Only HADIRECTOR_SKIP_VM=1 skips them.

Tests marked ``@pytest.mark.vm(systemd=True)`` run in a boot of their own, with systemd as
PID 1 (``run-in-vm --systemd``; HADIRECTOR_VM_SYSTEMD=1 in the guest): one boot for all of
them, started when the first of them runs; its output goes to
``.vmcache/last-vm-systemd-run.log``.

A test module may define ``vm_host_setup(exchange: Path) -> dict[str, str]``: called on the
host before its boot (once per module), with the boot's writable exchange directory; what
it returns is added to the guest's environment (name it ``HADIRECTOR_*`` so it passes
through). For what only the host can do, such as building the Debian package.

Inside the VM (HADIRECTOR_IN_VM=1) the tests run normally; when HADIRECTOR_VM_REPORT names a
file, the per-test records are written to it.

Knobs: HADIRECTOR_VM_TIMEOUT (seconds for the whole VM run, default 1500),
HADIRECTOR_VM_STREAM=1 (echo the guest's output live; also on with ``-s`` or ``-v``). The full
guest output of the last run is kept in ``.vmcache/last-vm-run.log``.

This plugin only changes vm-marked items; it must not touch any other test.
"""

from __future__ import annotations

import compileall
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNNER = REPO / "tools" / "vm" / "run-in-vm"
IN_VM = os.environ.get("HADIRECTOR_IN_VM") == "1"
REPORT_ENV = "HADIRECTOR_VM_REPORT"
PLUGIN_NAME = "hadirector-vm"
DEFAULT_TIMEOUT_S = 1500.0
_TAIL_LINES = 60


def register(config: pytest.Config) -> None:
    """Register the plugin once per session (safe to call from several conftest files)."""
    if not config.pluginmanager.has_plugin(PLUGIN_NAME):
        plugin = GuestReporter() if IN_VM else HostVmRunner(config)
        config.pluginmanager.register(plugin, PLUGIN_NAME)


# --- in the guest --------------------------------------------------------------------------------


class GuestReporter:
    """Collects each test's result in the VM and writes them to $HADIRECTOR_VM_REPORT."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = self.records.setdefault(
            report.nodeid, {"outcome": "passed", "when": "call", "text": "", "output": ""}
        )
        # The call phase decides; a setup/teardown failure or skip counts if call passed.
        if report.when == "call" or (report.outcome != "passed" and record["outcome"] == "passed"):
            record["outcome"] = report.outcome
            record["when"] = report.when
            if report.outcome == "skipped" and isinstance(report.longrepr, tuple):
                record["text"] = str(report.longrepr[2])
            else:
                record["text"] = report.longreprtext
            if hasattr(report, "wasxfail"):
                record["xfail"] = str(report.wasxfail) or "xfail"
        output = "".join(
            content for name, content in report.sections if name.startswith("Captured stdout")
        )
        if output and report.when == "call":
            record["output"] = output
        record.setdefault("duration_s", 0.0)
        record["duration_s"] += report.duration

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        target = os.environ.get(REPORT_ENV)
        if target:
            Path(target).write_text(json.dumps(self.records, indent=1))


# --- on the host ---------------------------------------------------------------------------------


class VmStandIn(pytest.Item):
    """Host stand-in for a vm test: replays the guest's outcome, runs none of its code."""

    def __init__(self, *, original: pytest.Item, runner: HostVmRunner, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.original = original
        self.runner = runner
        self.own_markers = list(original.own_markers)
        self.keywords.update(original.keywords)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.original.reportinfo()

    def runtest(self) -> None:
        record = self.runner.result_for(self)
        outcome = record.get("outcome")
        if record.get("output"):
            sys.stdout.write(record["output"])
        if outcome == "passed":
            return
        if outcome == "skipped":
            if "xfail" in record:
                pytest.xfail(f"[VM] {record['xfail']}")
            pytest.skip(f"[VM] {record.get('text', '')}")
        where = "" if record.get("when") == "call" else f" (in {record.get('when')})"
        pytest.fail(f"[VM]{where} {record.get('text', '')}", pytrace=False)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> str:  # type: ignore[override]
        return str(excinfo.value)


class HostVmRunner:
    """Swaps vm items for stand-ins and runs them all in one VM boot, on first demand."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        # One boot per kind (plain, systemd as PID 1): its results and why it failed.
        self.results: dict[bool, dict[str, dict[str, Any]]] = {}
        self.failure: dict[bool, str] = {}

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        for index, item in enumerate(items):
            if item.get_closest_marker("vm") is not None and not isinstance(item, VmStandIn):
                assert item.parent is not None
                items[index] = VmStandIn.from_parent(
                    item.parent, name=item.name, original=item, runner=self
                )

    def result_for(self, item: VmStandIn) -> dict[str, Any]:
        if os.environ.get("HADIRECTOR_SKIP_VM") == "1":
            pytest.skip("HADIRECTOR_SKIP_VM=1: VM tests skipped explicitly")
        systemd = wants_systemd(item)
        if systemd not in self.results:
            self.results[systemd] = self._run_vm(item.session, systemd)
        results = self.results[systemd]
        if item.nodeid in results:
            return results[item.nodeid]
        text = f"no result from the VM; {self.failure.get(systemd, '')}"
        return {"outcome": "failed", "when": "call", "text": text}

    def _run_vm(self, session: pytest.Session, systemd: bool) -> dict[str, dict[str, Any]]:
        # The guest cannot write bytecode (PYTHONDONTWRITEBYTECODE, and its writes vanish):
        # compiled here once, every Python start in the guest (agents, probers) reads it
        # instead of compiling the package again under emulation.
        compileall.compile_dir(REPO / "hadirector", quiet=1)
        node_ids = [
            i.nodeid
            for i in session.items
            if isinstance(i, VmStandIn) and wants_systemd(i) == systemd
        ]
        timeout_s = float(os.environ.get("HADIRECTOR_VM_TIMEOUT", DEFAULT_TIMEOUT_S))
        stream = (
            os.environ.get("HADIRECTOR_VM_STREAM") == "1"
            or self.config.option.capture == "no"
            or self.config.option.verbose > 0
        )
        log_path = REPO / ".vmcache" / ("last-vm-systemd-run.log" if systemd else "last-vm-run.log")
        log_path.parent.mkdir(exist_ok=True)
        writer = self.config.get_terminal_writer()
        capture = self.config.pluginmanager.getplugin("capturemanager")
        uncaptured = (
            capture.global_and_fixture_disabled if capture is not None else contextlib.nullcontext
        )
        with uncaptured():
            kind = "VM boot with systemd as PID 1" if systemd else "VM boot"
            writer.line(f"\nvm: running {len(node_ids)} test(s) in one {kind} (log: {log_path})")
        with tempfile.TemporaryDirectory(prefix="hadirector-vmx-") as exchange:
            report = Path(exchange) / "report.json"
            command = [
                sys.executable,
                str(RUNNER),
                "--timeout",
                str(timeout_s),
                "--rw",
                exchange,
                *(["--systemd"] if systemd else []),
                "--",
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                "-v",
                "--color=no",
                f"--rootdir={REPO}",
                *node_ids,
            ]
            env = dict(os.environ, **{REPORT_ENV: str(report)})
            env.update(self._host_setup(session, systemd, Path(exchange)))
            tail: list[str] = []
            with (
                log_path.open("w") as log,
                subprocess.Popen(
                    command,
                    cwd=REPO,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    errors="replace",
                ) as process,
            ):
                assert process.stdout is not None
                for line in _lines(process.stdout):
                    log.write(line)
                    log.flush()
                    tail = [*tail[-(_TAIL_LINES - 1) :], line]
                    if stream:
                        with uncaptured():
                            writer.line("vm| " + line.rstrip("\n"))
                status = process.wait()
            results: dict[str, dict[str, Any]] = {}
            if report.exists():
                results = json.loads(report.read_text())
            meaning = {124: "timed out", 125: "the VM failed"}.get(status, "pytest status")
            self.failure[systemd] = (
                f"VM run exited {status} ({meaning}); tail of {log_path}:\n" + "".join(tail)
            )
        return results

    @staticmethod
    def _host_setup(session: pytest.Session, systemd: bool, exchange: Path) -> dict[str, str]:
        """Each module's ``vm_host_setup(exchange)``, once; the environment they return."""
        env: dict[str, str] = {}
        seen: set[str] = set()
        for item in session.items:
            if not isinstance(item, VmStandIn) or wants_systemd(item) != systemd:
                continue
            module = getattr(item.original, "module", None)
            setup = getattr(module, "vm_host_setup", None)
            if module is None or setup is None or module.__name__ in seen:
                continue
            seen.add(module.__name__)
            env.update(setup(exchange))
        return env


def wants_systemd(item: pytest.Item) -> bool:
    """True for a test marked ``@pytest.mark.vm(systemd=True)``: it runs in a boot of its
    own with systemd as PID 1 (``run-in-vm --systemd``)."""
    marker = item.get_closest_marker("vm")
    return bool(marker is not None and marker.kwargs.get("systemd"))


def _lines(stream: Any) -> Iterator[str]:
    yield from iter(stream.readline, "")
