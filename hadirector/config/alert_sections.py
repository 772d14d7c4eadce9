"""The ``[alerts]`` table: email, webhook and Alertmanager destinations.

``[alerts.email]`` takes keepalived's ``notification_email`` / ``notification_email_from``
/ ``smtp_server`` as ``to`` / ``from`` / ``server`` (host or host:port, port 25 by default),
with optional ``starttls`` and a login (``username`` and ``password_file``, read when a
mail is sent: the secret is not in the configuration). ``[alerts.webhook]`` is a URL with
optional headers; ``[alerts.alertmanager]`` the base URL of an Alertmanager.

Like the other section modules: no I/O, no clock, standard library and pure core only.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Final, TypeVar

from hadirector.config.schema import (
    AlertmanagerAlerts,
    AlertsConfig,
    EmailAlerts,
    WebhookAlerts,
)
from hadirector.config.validate import (
    Checker,
    Defaults,
    Table,
    got,
    show,
    split_endpoint,
    toml_keys,
)

T = TypeVar("T")

ALERTS_KEYS: Final = toml_keys(
    AlertsConfig, {"email": "email", "webhook": "webhook", "alertmanager": "alertmanager"}
)
EMAIL_KEYS: Final = toml_keys(
    EmailAlerts, {"from_": "from", "server_host": "server", "server_port": ()}
)
WEBHOOK_KEYS: Final = toml_keys(WebhookAlerts)
ALERTMANAGER_KEYS: Final = toml_keys(AlertmanagerAlerts)
ALERTS: Final = Defaults(AlertsConfig)
EMAIL: Final = Defaults(EmailAlerts)
WEBHOOK: Final = Defaults(WebhookAlerts)
ALERTMANAGER: Final = Defaults(AlertmanagerAlerts)

# An address as mail servers take it in MAIL FROM / RCPT TO: local@domain, no spaces,
# no angle brackets or commas (one address per entry).
_MAILBOX_RE = re.compile(r"[^\s<>,@\"]+@[^\s<>,@\"]+")
_HOST_RE = re.compile(r"[A-Za-z0-9._:-]+")
_LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_HEADER_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token


class AlertSections(Checker):
    """The checks and builders of the ``[alerts]`` table."""

    def alerts(self, top: Table) -> AlertsConfig:
        if not top.has("alerts"):
            return AlertsConfig()
        data = self.table(top.raw("alerts"), "alerts")
        if data is None:
            return AlertsConfig()
        t = Table(self, data, "alerts", ALERTS_KEYS)
        return AlertsConfig(
            email=self._sub(t, "email", self.email),
            webhook=self._sub(t, "webhook", self.webhook),
            alertmanager=self._sub(t, "alertmanager", self.alertmanager),
            queue=t.opt("queue", self.integer(1, 100000), ALERTS.queue),
            flush_timeout_s=t.opt("flush_timeout", self.seconds(0, 600), ALERTS.flush_timeout_s),
        )

    def _sub(
        self, t: Table, key: str, build: Callable[[Mapping[str, object], str], T | None]
    ) -> T | None:
        if not t.has(key):
            return None
        data = self.table(t.raw(key), t.at(key))
        return None if data is None else build(data, t.at(key))

    def email(self, data: Mapping[str, object], path: str) -> EmailAlerts | None:
        t = Table(self, data, path, EMAIL_KEYS)
        to = t.req("to", self.mailboxes)
        sender = t.req("from", self.mailbox)
        server = t.req("server", self.server)
        starttls = t.opt("starttls", self.boolean(), EMAIL.starttls)
        ca_file = t.maybe("ca_file", self.abspath())
        username = t.maybe("username", self.text(max_len=255))
        password_file = t.maybe("password_file", self.abspath())
        timeout_s = t.opt("timeout", self.seconds(0, 300, lo_open=True), EMAIL.timeout_s)
        if (username is None) != (password_file is None) and not (
            t.bad("username") or t.bad("password_file")
        ):
            self.add(path, "username and password_file go together (a login needs both)")
        if to is None or sender is None or server is None:
            return None
        return EmailAlerts(
            to=to,
            from_=sender,
            server_host=server[0],
            server_port=server[1],
            starttls=starttls,
            ca_file=ca_file,
            username=username,
            password_file=password_file,
            timeout_s=timeout_s,
        )

    def webhook(self, data: Mapping[str, object], path: str) -> WebhookAlerts | None:
        t = Table(self, data, path, WEBHOOK_KEYS)
        url = t.req("url", self.http_url)
        headers = t.maybe("headers", self.headers)
        timeout_s = t.opt("timeout", self.seconds(0, 300, lo_open=True), WEBHOOK.timeout_s)
        if url is None:
            return None
        return WebhookAlerts(url=url, headers=headers or (), timeout_s=timeout_s)

    def alertmanager(self, data: Mapping[str, object], path: str) -> AlertmanagerAlerts | None:
        t = Table(self, data, path, ALERTMANAGER_KEYS)
        url = t.req("url", self.http_url)
        timeout_s = t.opt("timeout", self.seconds(0, 300, lo_open=True), ALERTMANAGER.timeout_s)
        repeat_s = t.opt("repeat_interval", self.seconds(1, 86400), ALERTMANAGER.repeat_interval_s)
        labels = t.maybe("labels", self.labels)
        if url is None:
            return None
        return AlertmanagerAlerts(
            url=url.rstrip("/"),
            timeout_s=timeout_s,
            repeat_interval_s=repeat_s,
            labels=labels or (),
        )

    # -- values ---------------------------------------------------------------------

    def mailbox(self, value: object, path: str) -> str | None:
        if not isinstance(value, str):
            self.add(path, f"must be a string, {got(value)}")
            return None
        if not _MAILBOX_RE.fullmatch(value):
            self.add(path, f"must be one mail address local@domain, got {show(value)}")
            return None
        return value

    def mailboxes(self, value: object, path: str) -> tuple[str, ...] | None:
        if isinstance(value, str):  # one address: allowed as a plain string
            one = self.mailbox(value, path)
            return None if one is None else (one,)
        items = self.unique_list(value, path, self.mailbox)
        if value == []:
            self.add(path, "must name at least one address")
            return None
        return None if items is None else tuple(items)

    def server(self, value: object, path: str) -> tuple[str, int] | None:
        """ "host" or "host:port" ("[v6]:port"), port 25 when not given."""
        if not isinstance(value, str):
            self.add(path, f'must be a string "HOST[:PORT]", {got(value)}')
            return None
        host, port = split_endpoint(value)
        if (
            not host
            or not _HOST_RE.fullmatch(host)
            or (port is not None and (not port.isdigit() or not 1 <= int(port) <= 65535))
        ):
            self.add(path, f'must be "HOST" or "HOST:PORT" (port 1-65535), got {show(value)}')
            return None
        return (host, int(port) if port is not None else 25)

    def http_url(self, value: object, path: str) -> str | None:
        if not isinstance(value, str):
            self.add(path, f"must be a string, {got(value)}")
            return None
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.add(path, f"must be an http:// or https:// URL, got {show(value)}")
            return None
        return value

    def headers(self, value: object, path: str) -> tuple[tuple[str, str], ...] | None:
        return self._pairs(value, path, _HEADER_RE, "an HTTP header name")

    def labels(self, value: object, path: str) -> tuple[tuple[str, str], ...] | None:
        return self._pairs(value, path, _LABEL_RE, "a Prometheus label name")

    def _pairs(
        self, value: object, path: str, key_re: re.Pattern[str], what: str
    ) -> tuple[tuple[str, str], ...] | None:
        data = self.table(value, path)
        if data is None:
            return None
        out: list[tuple[str, str]] = []
        for key, item in data.items():
            p = f"{path}.{key}"
            if not key_re.fullmatch(key):
                self.add(p, f"must be {what}")
            elif not isinstance(item, str) or "\n" in item or "\r" in item:
                self.add(p, f"must be a one-line string, {got(item)}")
            else:
                out.append((key, item))
        return tuple(out)
