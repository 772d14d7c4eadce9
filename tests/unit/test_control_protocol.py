"""The control socket's wire format: request parsing (every bad line gets a clear error,
no input raises anything else), and the reply lines both sides write and read."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hadirector.control.protocol import (
    COMMANDS,
    MAX_REQUEST_BYTES,
    Request,
    RequestError,
    decode_reply,
    encode_reply,
    error_reply,
    parse,
    parse_request,
    request_line,
)


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (b'{"command": "status"}', "status"),
        (b'{"command": "reload"}', "reload"),
        (b'  {"command": "status", "extra": 1}  ', "status"),  # unknown keys are ignored
        (b"status", "status"),  # the bare word, for socat
        (b"reload\r", "reload"),
        (request_line("status").rstrip(b"\n"), "status"),  # what the CLI sends
    ],
)
def test_commands(line: bytes, command: str) -> None:
    assert parse_request(line) == command


ALL = "status, reload, drain, undrain"


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"{not json", "request is not valid JSON: "),
        (b"[1, 2]", "unknown command '[1, 2]'; commands: status, reload, drain, undrain"),
        (b'{"command": 7}', "unknown command 7; commands: status, reload, drain, undrain"),
        (b"{}", "unknown command None; commands: status, reload, drain, undrain"),
        (
            b'{"command": "STATUS"}',
            "unknown command 'STATUS'; commands: status, reload, drain, undrain",
        ),
        (b"shutdown", "unknown command 'shutdown'; commands: status, reload, drain, undrain"),
        (b"", "unknown command ''; commands: status, reload, drain, undrain"),
        (b"\xff", "request is not UTF-8"),
        (b'"status"', "unknown command '\"status\"'; commands: status, reload, drain, undrain"),
        (b'{"command": "status"} x', "request is not valid JSON: Extra data"),
        (b"x" * (MAX_REQUEST_BYTES + 1), "request too long"),
        # Nesting deep enough to exhaust the JSON decoder's recursion: an error, not a crash.
        (b'{"a": ' + b"[" * 60_000, "request is not valid JSON: nested too deeply"),
        # A number beyond Python's integer-string limit.
        (b'{"command": ' + b"9" * 5000 + b"}", "request is not valid JSON: "),
    ],
    ids=lambda x: repr(x)[:40] if isinstance(x, bytes) else "",
)
def test_bad_requests(line: bytes, error: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_request(line)
    assert str(caught.value).startswith(error)


def test_an_unknown_word_is_shown_shortened() -> None:
    with pytest.raises(RequestError) as caught:
        parse_request(b"y" * 1000)
    assert (
        str(caught.value)
        == "unknown command 'yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy...; commands: " + ALL
    )


@given(st.binary(max_size=300))
def test_any_bytes_give_a_command_or_a_request_error(line: bytes) -> None:
    try:
        assert parse_request(line) in COMMANDS
    except RequestError as exc:
        assert str(exc)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=10,
    )
)
def test_any_json_object_gives_a_command_or_a_request_error(value: object) -> None:
    line = json.dumps({"command": value}).encode()
    try:
        assert parse_request(line) == value
    except RequestError as exc:
        assert str(exc).startswith(("unknown command ", f"{value} needs "))


def test_drain_and_undrain_take_their_arguments_in_the_object() -> None:
    line = request_line("drain", service="tcp 192.0.2.1:80", server="10.0.0.1:80")
    assert parse(line.rstrip(b"\n")) == Request(
        "drain", {"service": "tcp 192.0.2.1:80", "server": "10.0.0.1:80"}
    )
    assert parse(b'{"command": "undrain", "service": "fwmark 7", "server": "10.0.0.1"}').args == {
        "service": "fwmark 7",
        "server": "10.0.0.1",
    }
    assert parse(b"status") == Request("status")


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"drain", "drain needs 'service', a non-empty string"),
        (b'{"command": "drain", "service": "x"}', "drain needs 'server', a non-empty string"),
        (b'{"command": "undrain", "service": 7, "server": "y"}', "undrain needs 'service'"),
        (b'{"command": "drain", "service": " ", "server": "y"}', "drain needs 'service'"),
        (
            b'{"command": "drain", "service": "' + b"s" * 300 + b'", "server": "y"}',
            "drain: 'service' is too long",
        ),
    ],
)
def test_drain_without_its_arguments(line: bytes, error: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse(line)
    assert str(caught.value).startswith(error)


def test_replies_round_trip_as_one_line() -> None:
    reply = {"ok": True, "status": {"name": "a\nb"}}
    line = encode_reply(reply)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_reply(line + b'{"ok": false}\n') == reply  # the first line only
    assert decode_reply(encode_reply(error_reply("no"))) == {"ok": False, "error": "no"}


@pytest.mark.parametrize(
    "data",
    [b"", b"not json\n", b"[1]\n", b"[" * 100_000 + b"\n"],
    ids=["empty", "text", "list", "deep"],
)
def test_unreadable_replies(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_reply(data)
