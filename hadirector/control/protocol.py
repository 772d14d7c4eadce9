"""The control socket's wire format, pure (standard library ``json`` only).

Newline-delimited JSON. Each request is one line, an object ``{"command": "status"}`` or
``{"command": "reload"}`` (a bare word, ``status``, is accepted too, for ``socat``), or
``{"command": "drain", "service": "tcp 192.0.2.1:80", "server": "10.0.0.1:80"}`` (and
``undrain``: these two take their arguments, strings, in the object only); each reply is
one line, ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. A request line is at
most ``MAX_REQUEST_BYTES``.

``parse`` turns any line into a ``Request`` (``parse_request``: its command) or a
``RequestError`` whose message is the error reply: whatever bytes a client sends, nothing
else escapes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_REQUEST_BYTES = 64 * 1024
COMMANDS = ("status", "reload", "drain", "undrain")
#: The string arguments each command requires (others take none).
ARGUMENTS: Mapping[str, tuple[str, ...]] = {
    "drain": ("service", "server"),
    "undrain": ("service", "server"),
}
MAX_ARGUMENT_CHARS = 256


@dataclass(frozen=True)
class Request:
    """One parsed request: the command and its string arguments."""

    command: str
    args: Mapping[str, str] = field(default_factory=dict)


class RequestError(ValueError):
    """A request line that is not a command (the message says why)."""


def parse_request(line: bytes) -> str:
    """The command of one request line (without its newline): a JSON object with
    ``"command"``, or a bare command word. ``RequestError`` for anything else."""
    return parse(line).command


def parse(line: bytes) -> Request:
    """One request line (without its newline) as a ``Request``; ``RequestError`` for
    anything else, also a command without its arguments."""
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
        request = {}
        command = text
    if not isinstance(command, str) or command not in COMMANDS:
        shown = repr(command)
        if len(shown) > 40:
            shown = shown[:37] + "..."
        raise RequestError(f"unknown command {shown}; commands: {', '.join(COMMANDS)}")
    args: dict[str, str] = {}
    for name in ARGUMENTS.get(command, ()):
        value = request.get(name)
        if not isinstance(value, str) or not value.strip():
            raise RequestError(f"{command} needs {name!r}, a non-empty string")
        if len(value) > MAX_ARGUMENT_CHARS:
            raise RequestError(f"{command}: {name!r} is too long")
        args[name] = value
    return Request(command, args)


def request_line(command: str, **args: str) -> bytes:
    """The line a client sends for ``command`` with its arguments."""
    return json.dumps({"command": command, **args}).encode() + b"\n"


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
