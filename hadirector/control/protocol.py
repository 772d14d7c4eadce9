"""The control socket's wire format, pure (standard library ``json`` only).

Newline-delimited JSON. Each request is one line, an object ``{"command": "status"}`` or
``{"command": "reload"}`` (a bare word, ``status``, is accepted too, for ``socat``); each
reply is one line, ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. A request
line is at most ``MAX_REQUEST_BYTES``.

``parse_request`` turns any line into a command or a ``RequestError`` whose message is the
error reply: whatever bytes a client sends, nothing else escapes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

MAX_REQUEST_BYTES = 64 * 1024
COMMANDS = ("status", "reload")


class RequestError(ValueError):
    """A request line that is not a command (the message says why)."""


def parse_request(line: bytes) -> str:
    """The command of one request line (without its newline): a JSON object with
    ``"command"``, or a bare command word. ``RequestError`` for anything else."""
    if len(line) > MAX_REQUEST_BYTES:
        raise RequestError("request too long")
    try:
        text = line.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise RequestError("request is not UTF-8") from None
    if text.startswith("{"):
        try:
            request = json.loads(text)
        except ValueError as exc:
            raise RequestError(f"request is not valid JSON: {exc}") from None
        except RecursionError:
            raise RequestError("request is not valid JSON: nested too deeply") from None
        if not isinstance(request, dict):
            raise RequestError("request must be a JSON object")
        command = request.get("command")
    else:
        command = text
    if not isinstance(command, str) or command not in COMMANDS:
        shown = repr(command)
        if len(shown) > 40:
            shown = shown[:37] + "..."
        raise RequestError(f"unknown command {shown}; commands: {', '.join(COMMANDS)}")
    return command


def request_line(command: str) -> bytes:
    """The line a client sends for ``command``."""
    return json.dumps({"command": command}).encode() + b"\n"


def encode_reply(reply: Mapping[str, Any]) -> bytes:
    """One reply line."""
    return json.dumps(reply, separators=(",", ":")).encode() + b"\n"


def error_reply(error: str) -> dict[str, Any]:
    return {"ok": False, "error": error}


def decode_reply(data: bytes) -> dict[str, Any]:
    """The first line of what the agent sent, as a reply object (ValueError if it is not
    one)."""
    try:
        reply = json.loads(bytes(data).partition(b"\n")[0])
    except RecursionError:
        raise ValueError("reply nested too deeply") from None
    if not isinstance(reply, dict):
        raise ValueError("reply is not a JSON object")
    return reply
