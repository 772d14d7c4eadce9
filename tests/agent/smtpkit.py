"""A real SMTP server for the alert tests: aiosmtpd on a loopback port of its own.

The server runs in its own thread with its own asyncio loop (aiosmtpd is asyncio; the
agent is trio), listens on 127.0.0.1 on a port the kernel picks, and can be told to
accept, refuse (a permanent 550 or a transient 451), stall (take the DATA and never
answer), or go away and come back on the same port. Received mail is parsed with the
standard library and handed to the test through a thread-safe queue.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import queue
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    login: str | None


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_RCPT(
        self, _server: SMTP, _session: Session, envelope: Envelope, address: str, _options: Any
    ) -> str:
        if self.server.mode == "refuse":
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, _server: SMTP, session: Session, envelope: Envelope) -> str:
        self.server.attempts += 1
        mode = self.server.mode
        if mode == "busy":
            return "451 4.3.0 try again later"
        if mode == "stall":
            self.server.stalled.set()
            await asyncio.Event().wait()  # never answers: the client must time out
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        login = session.auth_data.login.decode() if session.auth_data else None
        self.server.received.put(
            Received(str(envelope.mail_from), list(envelope.rcpt_tos), msg, login)
        )
        return "250 OK queued"


class SmtpServer:
    """``with SmtpServer() as smtp:`` then ``smtp.port``, ``smtp.get()``, ``smtp.mode = ...``."""

    def __init__(
        self, *, tls: tuple[Path, Path] | None = None, login: tuple[str, str] | None = None
    ) -> None:
        self.mode = "accept"  # accept | refuse | busy | stall
        self.received: queue.Queue[Received] = queue.Queue()
        self.attempts = 0
        self.stalled = threading.Event()
        self.port = 0
        self._tls = tls
        self._login = login
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._protocols: list[SMTP] = []

    def _factory(self) -> SMTP:
        context = None
        if self._tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(self._tls[0]), str(self._tls[1]))
        protocol = SMTP(
            _Handler(self),
            hostname="mx.test",
            tls_context=context,
            require_starttls=context is not None,
            auth_required=self._login is not None,
            authenticator=self._authenticate if self._login else None,
            timeout=30,
        )
        self._protocols.append(protocol)
        return protocol

    def _authenticate(
        self, _server: SMTP, _session: Session, _envelope: Envelope, _mechanism: str, data: Any
    ) -> AuthResult:
        assert self._login is not None
        ok = (
            isinstance(data, LoginPassword)
            and (
                data.login.decode(),
                data.password.decode(),
            )
            == self._login
        )
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    def start(self) -> None:
        async def open_server() -> asyncio.base_events.Server:
            return await self._loop.create_server(
                self._factory, "127.0.0.1", self.port, reuse_address=True
            )

        if not self._thread.is_alive():
            self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(open_server(), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Close the listener and every open connection (the server disappears)."""

        async def close() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
            for protocol in self._protocols:
                if protocol.transport is not None:
                    protocol.transport.abort()
            self._protocols.clear()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._server = None

    def get(self, timeout_s: float = 30.0) -> Received:
        return self.received.get(timeout=timeout_s)

    def __enter__(self) -> SmtpServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
