"""HTTP/1.0 and HTTP/1.1 messages of the HTTP(S) health check: the request, and the
response read back from bytes.

The request is ``GET path HTTP/1.x`` with ``Host``, ``User-Agent``, ``Accept`` and
``Connection: close`` (HTTP/1.1 requires ``Host``; ``close`` asks the server to end the
connection after its answer). A response is parsed from what has been read so far:
``parse_response`` answers None while its headers are incomplete, and says whether the
body is all there, as the message's own framing says (RFC 9112, section 6.3):

- no body for 1xx, 204 and 304 answers; interim 1xx answers (``100 Continue``,
  ``103 Early Hints``) are skipped and the final answer read;
- ``Transfer-Encoding: chunked`` (it overrides ``Content-Length``): the chunks decoded,
  complete at the last (zero-size) chunk and the end of its trailers;
- ``Content-Length``: complete once that many bytes came;
- otherwise the body ends when the server closes the connection.

So a server that keeps the connection open after its answer (HTTP/1.1 keep-alive despite
``close``) is read exactly to the end of the answer, not until a timeout.

Part of the pure core: no I/O, standard library only; tested on canned bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from hadirector.config.schema import IPAddress

MAX_HEADER_BYTES = 16384
USER_AGENT = "hadirector-check"
HTTP_VERSIONS = ("1.0", "1.1")
HEX_DIGITS = b"0123456789abcdefABCDEF"


@dataclass(frozen=True)
class HttpResponse:
    """What a check needs of an HTTP response: status, headers, and the body read."""

    status: int
    headers: dict[str, str]
    body: bytes  # decoded (chunked transfer coding removed)
    complete: bool  # the body is all there, as the message's framing says


class HttpParseError(Exception):
    """The server's answer is not HTTP."""


def request_bytes(path: str, host: str, version: str = "1.0") -> bytes:
    """``GET path HTTP/<version>`` with ``Host`` and ``Connection: close``."""
    return (
        f"GET {path} HTTP/{version}\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode("ascii")


def host_header(address: IPAddress, port: int, default_port: int) -> str:
    """The ``Host`` value for an address: ``[v6]`` in brackets, the port unless default."""
    host = address.compressed if address.version == 4 else f"[{address.compressed}]"
    return host if port == default_port else f"{host}:{port}"


def parse_response(data: bytes, *, eof: bool) -> HttpResponse | None:
    """Parse what has been read so far; None when more bytes are needed.

    Raises ``HttpParseError`` for a malformed status line, headers or chunk, or headers
    larger than ``MAX_HEADER_BYTES``.
    """
    while True:
        head = _head(data, eof=eof)
        if head is None:
            return None
        status, headers, rest = head
        if 100 <= status < 200 and status != 101:
            data = rest  # an interim answer: the final one follows
            continue
        break
    if 100 <= status < 200 or status in (204, 304):
        return HttpResponse(status, headers, b"", True)
    coding = headers.get("transfer-encoding")
    if coding is not None:
        codings = [c.strip().lower() for c in coding.split(",")]
        if codings[-1] != "chunked":  # the body ends at close (RFC 9112, 6.3)
            return HttpResponse(status, headers, rest, eof)
        body, complete = dechunk(rest)
        return HttpResponse(status, headers, body, complete)
    length_text = headers.get("content-length")
    if length_text is not None:
        if not length_text.isdigit():
            raise HttpParseError(f"bad Content-Length {length_text[:20]!r}")
        length = int(length_text)
        if len(rest) >= length:
            return HttpResponse(status, headers, rest[:length], True)
    return HttpResponse(status, headers, rest, eof)


def _head(data: bytes, *, eof: bool) -> tuple[int, dict[str, str], bytes] | None:
    """The status and headers of the first message in ``data``, and the bytes after."""
    end = data.find(b"\r\n\r\n")
    sep = 4
    if end < 0:
        end = data.find(b"\n\n")  # tolerate bare LF line ends
        sep = 2
    if end < 0:
        if len(data) > MAX_HEADER_BYTES:
            raise HttpParseError("headers too long")
        if eof:
            if not data:
                raise HttpParseError("empty response")
            raise HttpParseError("truncated headers")
        return None
    text = data[:end].decode("latin-1")
    lines = text.replace("\r\n", "\n").split("\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or len(parts[0]) != 8:
        raise HttpParseError(f"bad status line {lines[0][:60]!r}")
    code = parts[1]
    if len(code) != 3 or not code.isdigit():
        raise HttpParseError(f"bad status code {code[:10]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise HttpParseError(f"bad header line {line[:60]!r}")
        headers[name.lower()] = value.strip()
    return int(code), headers, data[end + sep :]


def dechunk(data: bytes) -> tuple[bytes, bool]:
    """A chunked body read so far: (the data of its chunks, complete). Complete at the
    zero-size chunk and the empty line after its trailers. Raises ``HttpParseError`` for
    a bad chunk size or a chunk not followed by its line end."""
    body = bytearray()
    pos = 0
    while True:
        line_end = data.find(b"\n", pos)
        if line_end < 0:
            if len(data) - pos > 1024:
                raise HttpParseError("bad chunk size line")
            return bytes(body), False
        size_text = data[pos:line_end].rstrip(b"\r").split(b";", 1)[0].strip()
        if not size_text or len(size_text) > 16 or size_text.strip(HEX_DIGITS):
            raise HttpParseError(f"bad chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        pos = line_end + 1
        if size == 0:
            return bytes(body), _trailers_end(data, pos)
        if len(data) < pos + size + 1:
            body += data[pos : pos + size]
            return bytes(body), False
        body += data[pos : pos + size]
        pos += size
        if data[pos : pos + 2] == b"\r\n":
            pos += 2
        elif data[pos : pos + 1] == b"\n":
            pos += 1
        elif data[pos : pos + 1] == b"\r" and len(data) == pos + 1:
            return bytes(body), False
        else:
            raise HttpParseError("chunk without its line end")


def _trailers_end(data: bytes, pos: int) -> bool:
    """Whether the trailer section starting at ``pos`` has ended (an empty line)."""
    while True:
        line_end = data.find(b"\n", pos)
        if line_end < 0:
            return False
        if data[pos:line_end].rstrip(b"\r") == b"":
            return True
        pos = line_end + 1
