"""The blocking halves of alert delivery: one mail over SMTP, one HTTP POST.

Each function runs in a worker thread (``trio.to_thread.run_sync``, see dispatch.py) and
is bounded by its timeout on every socket operation (connect, each SMTP command, each read),
so a server that stalls costs one thread for at most that long per operation. Why threads
and the standard library instead of an async client over trio streams: smtplib already
speaks the parts a mail server may ask for (STARTTLS, AUTH PLAIN/LOGIN/CRAM-MD5, multi-line
replies, dot-stuffing), urllib does HTTPS with the system's CA store; alerts are rare (a few
per failover), so a thread per delivery is cheap, and dispatch.py runs at most one per
destination at a time. The agent's trio loop never blocks on them.

A failure is a ``DeliveryError``: ``permanent`` when retrying cannot help (an SMTP 5xx
reply, an HTTP 4xx other than 408/429), otherwise the delivery is retried.
"""

from __future__ import annotations

import smtplib
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from hadirector.config.schema import EmailAlerts


class DeliveryError(Exception):
    """A delivery that failed; ``permanent``: retrying the same thing cannot succeed."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def build_mail(cfg: EmailAlerts, subject: str, text: str, at: float) -> EmailMessage:
    """The message as sent: plain text, UTF-8, Date from the event's time."""
    msg = EmailMessage()
    msg["From"] = cfg.from_
    msg["To"] = ", ".join(cfg.to)
    msg["Subject"] = subject
    msg["Date"] = formatdate(at, usegmt=True)
    msg["Message-ID"] = make_msgid(domain=cfg.from_.rpartition("@")[2])
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to this
    msg.set_content(text)
    return msg


def send_mail(cfg: EmailAlerts, msg: EmailMessage) -> None:
    """Deliver ``msg`` to ``cfg.server``; raises ``DeliveryError``. Blocking."""
    try:
        with smtplib.SMTP(cfg.server_host, cfg.server_port, timeout=cfg.timeout_s) as smtp:
            smtp.ehlo()
            if cfg.starttls:
                smtp.starttls(context=ssl.create_default_context(cafile=cfg.ca_file))
                smtp.ehlo()
            if cfg.username is not None and cfg.password_file is not None:
                password = _read_secret(cfg.password_file)
                smtp.login(cfg.username, password)
            refused = smtp.send_message(msg, from_addr=cfg.from_, to_addrs=list(cfg.to))
            if refused:
                # Some recipients took it: the rest would refuse it again.
                text = ", ".join(f"{k}: {v[0]} {v[1]!r}" for k, v in sorted(refused.items()))
                raise DeliveryError(f"recipients refused: {text}", permanent=True)
    except smtplib.SMTPResponseException as exc:
        detail = (
            exc.smtp_error.decode(errors="replace")
            if isinstance(exc.smtp_error, bytes)
            else str(exc.smtp_error)
        )
        raise DeliveryError(
            f"server said {exc.smtp_code} {detail}", permanent=500 <= exc.smtp_code < 600
        ) from None
    except smtplib.SMTPRecipientsRefused as exc:
        text = ", ".join(f"{k}: {v[0]}" for k, v in sorted(exc.recipients.items()))
        permanent = all(500 <= v[0] < 600 for v in exc.recipients.values())
        raise DeliveryError(f"recipients refused: {text}", permanent=permanent) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(_describe(exc)) from None


def post_json(url: str, body: bytes, headers: tuple[tuple[str, str], ...], timeout_s: float) -> int:
    """POST ``body`` (JSON) to ``url``; the status code, or raises ``DeliveryError``."""
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("User-Agent", "hadirector")
    for name, value in headers:
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read(65536)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        text = exc.read(512).decode(errors="replace").strip()
        permanent = 400 <= exc.code < 500 and exc.code not in (408, 429)
        raise DeliveryError(f"HTTP {exc.code} {text}".strip(), permanent=permanent) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        raise DeliveryError(
            _describe(reason) if isinstance(reason, BaseException) else str(reason)
        ) from None
    except OSError as exc:
        raise DeliveryError(_describe(exc)) from None


def _read_secret(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise DeliveryError(f"cannot read password_file {path}: {exc.strerror or exc}") from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) or type(exc).__name__ == "timeout":
        return "timed out"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return f"server disconnected: {exc}"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text)
