"""Real HTTP peers for the alert tests, on loopback ports of their own.

``WebhookServer``: the standard library's HTTP server in a thread, recording each POST
(headers and JSON body) and answering with a status the test sets.
``Alertmanager``: Debian's ``prometheus-alertmanager`` started with a temporary
configuration and storage path, clustering off, on a loopback port; ``alerts()`` is its
``GET /api/v2/alerts``.
"""

from __future__ import annotations

import json
import queue
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ALERTMANAGER = "prometheus-alertmanager"


class WebhookServer:
    def __init__(self) -> None:
        self.status = 200
        self.posts: queue.Queue[tuple[dict[str, str], Any]] = queue.Queue()
        self.attempts = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                outer.attempts += 1
                status = outer.status
                if status == 200:
                    outer.posts.put((dict(self.headers.items()), json.loads(body)))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def get(self, timeout_s: float = 30.0) -> tuple[dict[str, str], Any]:
        return self.posts.get(timeout=timeout_s)

    def __enter__(self) -> WebhookServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Alertmanager:
    def __init__(self, workdir: Path) -> None:
        if shutil.which(ALERTMANAGER) is None:
            pytest.skip(f"{ALERTMANAGER} is not installed (tools/setup installs it)")
        self.workdir = workdir
        (workdir / "am.yml").write_text("route:\n  receiver: none\nreceivers:\n  - name: none\n")
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start on the port it had (started again), else on a free one."""
        fixed = self.port != 0
        for _ in range(1 if fixed else 5):  # a free port may be taken first: pick another
            if not fixed:
                self.port = free_port()
            log = (self.workdir / "am.log").open("wb")
            self.proc = subprocess.Popen(
                [
                    ALERTMANAGER,
                    f"--config.file={self.workdir / 'am.yml'}",
                    f"--storage.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--cluster.listen-address=",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            if self._ready():
                return
            self.stop()
        raise RuntimeError("alertmanager did not start: " + (self.workdir / "am.log").read_text())

    def _ready(self) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + 30  # a start guard, not a measurement
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def alerts(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(self.url + "/api/v2/alerts", timeout=5) as r:
            return list(json.loads(r.read()))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> Alertmanager:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
