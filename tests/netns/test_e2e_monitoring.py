"""End to end: a real pair's alerts and metrics, in the lab's namespaces.

Each director's namespace runs a real SMTP server (aiosmtpd, writing a maildir) on its
loopback, and dir-b's the real Alertmanager (prometheus-alertmanager, temporary
configuration and storage). Both ``hadirector run`` have ``[alerts.email]``, a virtual
server whose TCP checks find one real server up (the SMTP port) and one down (a closed
port), and ``metrics_listen``; dir-b also ``[alerts.alertmanager]``. Then:

- dir-a's mail says it became MASTER and that the closed port's real server is DOWN;
- after dir-a stops gracefully, dir-b's mail says it became MASTER, was BACKUP, and that
  dir-a's last advert had priority 0 (it stepped down);
- Alertmanager's API shows dir-b's HadirectorRealServerDown alert with its labels;
- every metric the rules and the dashboard name is on dir-b's endpoint (but the IPVS
  traffic counters: no IPVS in this kernel; tests/vm/test_lvs_traffic.py checks those).
"""

from __future__ import annotations

import json
import shutil
import sys
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import monitoring

from .e2e_util import STATE_TIMEOUT_S, E2EDirector
from .lab import Lab, Netns, hadirector_command, lan_address, vip_address, wait_for

pytestmark = pytest.mark.netns

METRICS_PORT = 9650
SMTP_PORT = 2525
AM_PORT = 9093
CLOSED_PORT = 1


class MonitoredDirector(E2EDirector):
    """A director with a virtual server and alerts (TOML appended to the lab's file)."""

    def __init__(self, lab: Lab, node: str, priority: int, tail: str) -> None:
        super().__init__(
            lab,
            node,
            priority,
            global_extra={"metrics_listen": f'"127.0.0.1:{METRICS_PORT}"'},
        )
        self.tail = tail

    def config_text(self) -> str:
        return super().config_text() + self.tail


def tail(alertmanager: bool) -> str:
    text = f"""
[[virtual_server]]
address = "{vip_address()}:80"
[virtual_server.check]
type = "tcp"
interval = 0.5
rise = 1
fall = 1
[[virtual_server.real_server]]
address = "127.0.0.1:{SMTP_PORT}"
[[virtual_server.real_server]]
address = "127.0.0.1:{CLOSED_PORT}"

[ipvs.sync]
interface = "eth0"

[alerts.email]
to = ["oncall@example.org"]
from = "hadirector@example.org"
server = "127.0.0.1:{SMTP_PORT}"
"""
    if alertmanager:
        text += f'\n[alerts.alertmanager]\nurl = "http://127.0.0.1:{AM_PORT}"\n'
    return text


def mails(maildir: Path) -> list[EmailMessage]:
    """The messages the SMTP server delivered to its maildir (complete files only: the
    Maildir format writes them in tmp/ and moves them into new/)."""
    out = []
    for path in sorted((maildir / "new").glob("*")) if (maildir / "new").exists() else []:
        msg = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        assert isinstance(msg, EmailMessage)
        out.append(msg)
    return out


def subjects(maildir: Path) -> list[str]:
    return [str(m["Subject"]) for m in mails(maildir)]


def mail_with(maildir: Path, text: str) -> EmailMessage:
    return next(m for m in mails(maildir) if text in str(m["Subject"]))


FETCH = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    sys.stdout.write(r.read().decode())
"""


def fetch(ns: Netns, url: str) -> str:
    proc = ns.run(sys.executable, "-c", FETCH, url, check=False)
    return proc.stdout if proc.returncode == 0 else ""


def am_alerts(ns: Netns) -> list[dict[str, Any]]:
    text = fetch(ns, f"http://127.0.0.1:{AM_PORT}/api/v2/alerts")
    return list(json.loads(text)) if text else []


def test_a_pairs_mail_alertmanager_alert_and_metrics(netlab: Lab, tmp_path: Path) -> None:
    if hadirector_command() is None:
        pytest.skip("hadirector is not runnable")
    if shutil.which("prometheus-alertmanager") is None:
        pytest.skip("prometheus-alertmanager is not installed (tools/setup installs it)")
    ns_a, ns_b = Netns(netlab.ns("dir-a")), Netns(netlab.ns("dir-b"))
    box_a, box_b = tmp_path / "mail-a", tmp_path / "mail-b"
    am_dir = tmp_path / "am"
    am_dir.mkdir()
    (am_dir / "am.yml").write_text("route:\n  receiver: none\nreceivers:\n  - name: none\n")
    a = MonitoredDirector(netlab, "dir-a", 150, tail(alertmanager=False))
    b = MonitoredDirector(netlab, "dir-b", 100, tail(alertmanager=True))
    try:
        for ns, box in ((ns_a, box_a), (ns_b, box_b)):
            ns.spawn(
                sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{SMTP_PORT}",
                "-c", "aiosmtpd.handlers.Mailbox", str(box),
                stdout=(tmp_path / f"smtp-{ns.name}.log").open("wb"), stderr=-2,
            )  # fmt: skip
        ns_b.spawn(
            "prometheus-alertmanager", f"--config.file={am_dir / 'am.yml'}",
            f"--storage.path={am_dir / 'data'}", f"--web.listen-address=127.0.0.1:{AM_PORT}",
            "--cluster.listen-address=",
            stdout=(am_dir / "am.log").open("wb"), stderr=-2,
        )  # fmt: skip
        wait_for(lambda: fetch(ns_b, f"http://127.0.0.1:{AM_PORT}/-/ready") != "", 30, "AM")

        a.start()
        a.wait_state("MASTER", STATE_TIMEOUT_S)
        b.start()
        b.wait_state("BACKUP", STATE_TIMEOUT_S)
        name = a.instances[0].name

        # dir-a: MASTER, and the closed port's real server DOWN (the SMTP one stays up).
        wait_for(lambda: len(subjects(box_a)) >= 2, 30, f"two mails from dir-a: {a.log()}")
        master_a = mail_with(box_a, f"MASTER: VRRP instance {name}")
        assert master_a["To"] == "oncall@example.org"
        down = mail_with(box_a, "DOWN: real server")
        assert str(down["Subject"]).endswith(
            f"DOWN: real server 127.0.0.1:{CLOSED_PORT} of tcp {vip_address()}:80"
        )
        assert f"127.0.0.1:{SMTP_PORT}" not in " ".join(subjects(box_a))
        print(f"--- dir-a's mail\nSubject: {down['Subject']}\n\n{down.get_content()}")

        # dir-a stops: dir-b takes over and says what it heard last from dir-a.
        a.stop()
        b.wait_state("MASTER", STATE_TIMEOUT_S)
        wait_for(
            lambda: any(f"MASTER: VRRP instance {name}" in s for s in subjects(box_b)),
            30, f"dir-b's MASTER mail: {b.log()}",
        )  # fmt: skip
        body = mail_with(box_b, f"MASTER: VRRP instance {name}").get_content()
        subject = mail_with(box_b, f"MASTER: VRRP instance {name}")["Subject"]
        print(f"--- dir-b's mail\nSubject: {subject}\n\n{body}")
        assert f"What:   VRRP instance {name} is now MASTER (was BACKUP for " in body
        assert f"Peer:   last advert from {lan_address('dir-a')} at priority 0" in body
        assert "(it steps down: priority 0)" in body

        # Alertmanager has dir-b's real server alert.
        def server_alert() -> dict[str, Any] | None:
            return next(
                (
                    x
                    for x in am_alerts(ns_b)
                    if x["labels"].get("alertname") == "HadirectorRealServerDown"
                ),
                None,
            )

        wait_for(lambda: server_alert() is not None, 30, f"AM alert: {b.log()}")
        alert = server_alert()
        assert alert is not None
        print(f"--- Alertmanager's alert\n{json.dumps(alert, indent=2)}")
        assert alert["labels"] == {
            "alertname": "HadirectorRealServerDown",
            "director": "lab-dir-b",
            "severity": "warning",
            "service": f"tcp {vip_address()}:80",
            "real_server": f"127.0.0.1:{CLOSED_PORT}",
        }
        assert alert["status"]["state"] == "active"

        # dir-b's endpoint has every metric the rules and the dashboard use.
        page = fetch(ns_b, f"http://127.0.0.1:{METRICS_PORT}/metrics")
        shown = ("hadirector_vrrp_state{", "hadirector_real_server_", "hadirector_alerts_")
        print("--- dir-b's metrics (part)")
        print("\n".join(ln for ln in page.splitlines() if ln.startswith(shown)))
        exported = {s.name for fam in text_string_to_metric_families(page) for s in fam.samples}
        used = {
            n for n in monitoring.used_metric_names()
            if not n.startswith(monitoring.IPVS_TRAFFIC_PREFIXES)
        }  # fmt: skip
        assert used - exported == set()
        up = {
            s.labels["server"]: s.value
            for fam in text_string_to_metric_families(page)
            for s in fam.samples
            if s.name == "hadirector_real_server_up"
        }
        assert up == {f"127.0.0.1:{SMTP_PORT}": 1.0, f"127.0.0.1:{CLOSED_PORT}": 0.0}
    finally:
        for d in (a, b):
            if d.running:
                d.stop()
        ns_a.stop_processes()
        ns_b.stop_processes()
