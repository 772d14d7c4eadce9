"""HTTP response parsing and judging on canned bytes; the runner's cadence, hysteresis and
reload behaviour against a scripted prober on trio's mock clock."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import itertools
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from hadirector.checks import httpmsg, probes
from hadirector.checks.httpmsg import HttpParseError, parse_response
from hadirector.checks.probes import ProbeResult, judge
from hadirector.checks.runner import (
    BATCH_MAX,
    DURATION_BUCKETS_S,
    CheckKey,
    Durations,
    HealthChecker,
)
from hadirector.config.load import load_mapping
from hadirector.config.schema import Config, HealthCheck, IPAddress
from hadirector.errors import ConfigError

OK_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"


def test_parse_complete_response() -> None:
    r = parse_response(OK_RESPONSE, eof=False)
    assert r is not None
    assert (r.status, r.body, r.complete) == (200, b"hello", True)
    assert r.headers["content-type"] == "text/plain"


def test_parse_needs_more_until_headers_end() -> None:
    assert parse_response(b"HTTP/1.0 200 OK\r\nServer: x\r\n", eof=False) is None


def test_body_incomplete_until_content_length_or_close() -> None:
    r = parse_response(b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nhel", eof=False)
    assert r is not None and not r.complete
    r = parse_response(b"HTTP/1.0 200 OK\r\n\r\nhello wor", eof=False)
    assert r is not None and not r.complete
    r = parse_response(b"HTTP/1.0 200 OK\r\n\r\nhello wor", eof=True)
    assert r is not None and r.complete and r.body == b"hello wor"


def test_body_beyond_content_length_is_ignored() -> None:
    r = parse_response(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOKjunk", eof=False)
    assert r is not None and r.body == b"OK" and r.complete


def test_bare_lf_line_ends() -> None:
    r = parse_response(b"HTTP/1.0 503 Busy\nRetry-After: 1\n\nbusy", eof=True)
    assert r is not None and r.status == 503 and r.body == b"busy"


@pytest.mark.parametrize(
    ("data", "eof", "message"),
    [
        (b"", True, "empty response"),
        (b"HTTP/1.0 200 OK\r\n", True, "truncated headers"),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", False, "bad status line"),
        (b"HTTP/1.0 2x0 OK\r\n\r\n", False, "bad status code"),
        (b"HTTP/2 200\r\n\r\n", False, "bad status line"),
        (b"HTTP/1.0 200 OK\r\nno colon here\r\n\r\n", False, "bad header line"),
        (b"HTTP/1.0 200 OK\r\nContent-Length: -1\r\n\r\n", False, "bad Content-Length"),
        (b"x" * (httpmsg.MAX_HEADER_BYTES + 1), False, "headers too long"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", False, "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\n", False, "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc", False, "line end"),
    ],
)
def test_malformed(data: bytes, eof: bool, message: str) -> None:
    with pytest.raises(HttpParseError, match=message):
        parse_response(data, eof=eof)


@given(st.binary(max_size=300), st.booleans())
def test_parse_never_raises_anything_else(data: bytes, eof: bool) -> None:
    with contextlib.suppress(HttpParseError):
        parse_response(data, eof=eof)


@given(
    st.integers(200, 599).filter(lambda s: s not in (204, 304)),
    st.binary(max_size=100),
    st.integers(0, 120),
)
def test_status_and_body_survive_any_split(status: int, body: bytes, cut: int) -> None:
    data = b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n" % (status, len(body)) + body
    cut = min(cut, len(data))
    partial = parse_response(data[:cut], eof=False)
    assert partial is None or partial.status == status
    whole = parse_response(data, eof=False)
    assert whole is not None and (whole.status, whole.body, whole.complete) == (status, body, True)


def chunked(body: bytes, sizes: list[int], trailer: bytes = b"") -> bytes:
    """``body`` as an HTTP/1.1 chunked answer, cut into chunks of ``sizes`` (then the rest)."""
    out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
    pos = 0
    for size in [*sizes, len(body)]:
        piece = body[pos : pos + size]
        if piece:
            out += b"%x;ext=1\r\n" % len(piece) + piece + b"\r\n"
        pos += len(piece)
    return out + b"0\r\n" + trailer + b"\r\n"


def test_a_chunked_body_is_decoded_and_complete_at_its_last_chunk() -> None:
    data = chunked(b"healthy and well", [3, 4], trailer=b"X-Check: 1\r\n")
    r = parse_response(data + b"HTTP/1.1 200 OK\r\n", eof=False)  # what follows is not read
    assert r is not None and (r.status, r.body, r.complete) == (200, b"healthy and well", True)
    # Not complete before the last chunk's empty line, whatever Content-Length says.
    r = parse_response(data[:-2], eof=False)
    assert r is not None and r.body == b"healthy and well" and not r.complete
    assert judge(r, (200,), "well").ok
    digest = hashlib.md5(b"healthy and well").hexdigest()
    assert judge(r, (200,), None, digest) == ProbeResult(
        False, f"body over {probes.MAX_RESPONSE_BYTES} bytes for digest"
    )
    whole = parse_response(data, eof=False)
    assert whole is not None and judge(whole, (200,), None, digest).ok


@given(st.binary(max_size=200), st.lists(st.integers(1, 50), max_size=6), st.integers(0, 400))
def test_a_chunked_body_survives_any_chunking_and_any_split(
    body: bytes, sizes: list[int], cut: int
) -> None:
    data = chunked(body, sizes)
    whole = parse_response(data, eof=False)
    assert whole is not None and (whole.body, whole.complete) == (body, True)
    partial = parse_response(data[: min(cut, len(data) - 1)], eof=False)
    assert partial is None or (body.startswith(partial.body) and not partial.complete)


def test_interim_answers_no_body_answers_and_other_codings() -> None:
    r = parse_response(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n", eof=False)
    assert r is None  # the final answer's headers are still to come
    r = parse_response(
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        eof=False,
    )
    assert r is not None and (r.status, r.body, r.complete) == (200, b"ok", True)
    for status in (204, 304):
        r = parse_response(b"HTTP/1.1 %d X\r\nContent-Length: 9\r\n\r\n" % status, eof=False)
        assert r is not None and (r.body, r.complete) == (b"", True)
    # A last coding other than chunked: the body ends when the server closes.
    gz = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 1\r\n\r\nabc"
    r = parse_response(gz, eof=False)
    assert r is not None and (r.body, r.complete) == (b"abc", False)


def test_judge() -> None:
    r = parse_response(OK_RESPONSE, eof=False)
    assert r is not None
    assert judge(r, (200,), None).ok
    assert judge(r, (200,), "ell").ok
    assert judge(r, (200,), "bye") == ProbeResult(False, "body mismatch")
    assert judge(r, (204, 301), None) == ProbeResult(False, "status 200")


def test_judge_digest() -> None:
    r = parse_response(OK_RESPONSE, eof=False)
    assert r is not None and r.complete
    good = hashlib.md5(r.body).hexdigest()
    assert judge(r, (200,), None, good).ok
    assert judge(r, (200,), None, "0" * 32) == ProbeResult(False, "digest mismatch")
    cut = parse_response(OK_RESPONSE.replace(b"Content-Length: 5", b"Content-Length: 9"), eof=False)
    assert cut is not None and not cut.complete
    assert judge(cut, (200,), None, good) == ProbeResult(
        False, f"body over {probes.MAX_RESPONSE_BYTES} bytes for digest"
    )


def test_judge_body_regex() -> None:
    r = parse_response(OK_RESPONSE, eof=False)
    assert r is not None
    assert judge(r, (200,), None, None, r"^h.l+o$").ok
    assert judge(r, (200,), None, None, r"bye|ciao") == ProbeResult(False, "body regex mismatch")


def test_request_and_host_header() -> None:
    assert httpmsg.request_bytes("/h?x=1", "example.com").startswith(
        b"GET /h?x=1 HTTP/1.0\r\nHost: example.com\r\n"
    )
    assert httpmsg.request_bytes("/", "a").endswith(b"Connection: close\r\n\r\n")
    assert httpmsg.request_bytes("/", "www.example.com", "1.1") == (
        b"GET / HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: hadirector-check\r\n"
        b"Accept: */*\r\nConnection: close\r\n\r\n"
    )
    v4, v6 = ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("2001:db8::1")
    assert httpmsg.host_header(v4, 80, 80) == "192.0.2.1"
    assert httpmsg.host_header(v4, 8080, 80) == "192.0.2.1:8080"
    assert httpmsg.host_header(v6, 8443, 443) == "[2001:db8::1]:8443"


# --------------------------------------------------------------------------- runner


def config(rise: int = 2, fall: int = 3, interval: float = 1.0, action: str = "quiesce") -> Config:
    return load_mapping(
        {
            "virtual_server": [
                {
                    "address": "192.0.2.10:80",
                    "health_action": action,
                    "check": {"type": "tcp", "interval": interval, "rise": rise, "fall": fall},
                    "real_server": [
                        {"address": "198.51.100.11:8080"},
                        {"address": "198.51.100.12:8080"},
                    ],
                }
            ]
        }
    )


class ScriptedProber:
    """Answers by server address from a mutable table; records probe times."""

    def __init__(self) -> None:
        self.failing: set[str] = set()
        self.calls: list[tuple[float, str]] = []

    async def __call__(
        self, check: HealthCheck, address: IPAddress, port: int | None
    ) -> ProbeResult:
        self.calls.append((trio.current_time(), str(address)))
        await trio.sleep(0.1)  # a probe takes time: the cadence must not drift by it
        if str(address) in self.failing:
            return ProbeResult(False, "connect refused")
        return probes.UP


def run_mocked(fn: Callable[[], Awaitable[None]]) -> None:
    trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


def down_servers(reports: list[set[CheckKey]]) -> list[set[str]]:
    return [{k[1].address for k in r} for r in reports]


async def run_checker(
    cfg: Config, prober: ScriptedProber, body: Callable[[HealthChecker], Awaitable[None]]
) -> list[set[CheckKey]]:
    reports: list[set[CheckKey]] = []
    checker = HealthChecker(cfg, reports.append, prober=prober)
    async with trio.open_nursery() as nursery:
        await nursery.start(checker.run)
        await body(checker)
        nursery.cancel_scope.cancel()
    return reports


def test_fixed_cadence_spread_and_fall_rise() -> None:
    run_mocked(_fixed_cadence_spread_and_fall_rise)


async def _fixed_cadence_spread_and_fall_rise() -> None:
    prober = ScriptedProber()

    async def scenario(checker: HealthChecker) -> None:
        await trio.sleep(10.05)
        prober.failing.add("198.51.100.12")
        await trio.sleep(10)
        prober.failing.clear()
        await trio.sleep(10)

    start = trio.current_time()
    reports = await run_checker(config(rise=2, fall=3), prober, scenario)
    # Start: all up (nothing to report); then .12 down, then up again.
    assert down_servers(reports) == [{"198.51.100.12"}, set()]
    times_11 = [t - start for t, a in prober.calls if a == "198.51.100.11"]
    times_12 = [t - start for t, a in prober.calls if a == "198.51.100.12"]
    # Exactly every interval, no drift from the 0.1 s probe time; the two spread by 0.5 s.
    assert times_11[:4] == pytest.approx([0.0, 1.0, 2.0, 3.0])
    assert times_12[:4] == pytest.approx([0.5, 1.5, 2.5, 3.5])
    assert len(times_11) == 31


def test_fall_count_is_respected() -> None:
    run_mocked(_fall_count_is_respected)


async def _fall_count_is_respected() -> None:
    prober = ScriptedProber()
    prober.failing.add("198.51.100.11")
    seen: list[int] = []

    async def scenario(checker: HealthChecker) -> None:
        for _ in range(6):
            await trio.sleep(1)
            seen.append(len(checker.down))

    await run_checker(config(rise=1, fall=4), prober, scenario)
    # Probes at 0, 1, 2, 3 (+0.1 s each): the 4th failure (at 3.1 s) takes it down.
    assert seen == [0, 0, 0, 1, 1, 1]


def test_reload_keeps_unchanged_and_restarts_changed() -> None:
    run_mocked(_reload_keeps_unchanged_and_restarts_changed)


async def _reload_keeps_unchanged_and_restarts_changed() -> None:
    prober = ScriptedProber()
    prober.failing.add("198.51.100.11")

    async def scenario(checker: HealthChecker) -> None:
        await trio.sleep(5)
        assert {k[1].address for k in checker.down} == {"198.51.100.11"}
        tasks_before = {k: id(r) for k, r in checker.running.items()}
        same = config(rise=2, fall=3)
        checker.update(same)
        assert {k: id(r) for k, r in checker.running.items()} == tasks_before
        changed = config(rise=2, fall=3, interval=2.0)
        checker.update(changed)
        assert all(id(r) != tasks_before[k] for k, r in checker.running.items())
        # The failing server keeps its state across the restart.
        assert {k[1].address for k in checker.down} == {"198.51.100.11"}
        prober.calls.clear()
        t0 = trio.current_time()
        await trio.sleep(3.95)
        # Two servers every 2 s, spread by 1 s: probes at 0, 1, 2, 3 after the restart.
        assert [round(t - t0) for t, _ in prober.calls] == [0, 1, 2, 3]
        checker.update(load_mapping({}))
        assert checker.running == {}
        calls = len(prober.calls)
        await trio.sleep(5)
        assert len(prober.calls) == calls

    reports = await run_checker(config(), prober, scenario)
    # Down, then the reload that drops every check leaves nothing down.
    assert down_servers(reports) == [{"198.51.100.11"}, set()]


def test_a_reload_that_drops_a_check_cancels_its_probe_in_flight() -> None:
    class Slow(ScriptedProber):
        def __init__(self) -> None:
            super().__init__()
            self.cancelled: list[str] = []

        async def __call__(
            self, check: HealthCheck, address: IPAddress, port: int | None
        ) -> ProbeResult:
            self.calls.append((trio.current_time(), str(address)))
            try:
                await trio.sleep(0.8)
            except trio.Cancelled:
                self.cancelled.append(str(address))
                raise
            return probes.UP

    prober = Slow()

    async def main() -> None:
        checker = HealthChecker(config(), lambda _d: None, prober=prober)
        async with trio.open_nursery() as nursery:
            await nursery.start(checker.run)
            await trio.sleep(0.1)  # .11's first probe is in flight, .12's not yet due
            checker.update(load_mapping({}))
            await trio.sleep(3)
            nursery.cancel_scope.cancel()
        assert checker.running == {}

    run_mocked(main)
    assert prober.cancelled == ["198.51.100.11"]
    assert [a for _, a in prober.calls] == ["198.51.100.11"]  # nothing probed after it


def test_a_backlog_of_due_checks_starts_in_slices_between_other_tasks() -> None:
    """300 checks due at the same instant (warmup 0): the scheduler starts at most
    BATCH_MAX probes per pass, and another task gets a turn in every run of trio's loop,
    so it sees at most two passes' probes between two of its turns (trio runs a batch's
    tasks in random order), never the whole backlog at once."""
    cfg = load_mapping(
        {
            "virtual_server": [
                {
                    "address": "192.0.2.10:80",
                    "check": {"type": "tcp", "interval": 5, "warmup": 0},
                    "real_server": [
                        {"address": f"198.51.{100 + i // 200}.{i % 200 + 1}:8080"}
                        for i in range(300)
                    ],
                }
            ]
        }
    )
    prober = ScriptedProber()
    seen: list[int] = []

    async def main() -> None:
        checker = HealthChecker(cfg, lambda _d: None, prober=prober, rng=random.Random(1))
        async with trio.open_nursery() as nursery:
            await nursery.start(checker.run)
            while len(prober.calls) < 300:
                seen.append(len(prober.calls))
                await trio.sleep(0)  # another task of the agent, taking its turns
            nursery.cancel_scope.cancel()

    run_mocked(main)
    steps = [b - a for a, b in itertools.pairwise([*seen, 300])]
    assert max(steps) <= 2 * BATCH_MAX < 300, steps
    assert len({t for t, _ in prober.calls}) == 1  # all at their due time all the same


def test_the_down_set_follows_every_change_reload_and_alpha() -> None:
    """``down`` (kept as checks change) against the states of every running check, after
    each step of a seeded walk: servers failing and recovering, two checks per server,
    a group of two services, reloads that add, change and drop checks, alpha servers."""

    def cfg(count: int, interval: float, alpha_from: int) -> Config:
        checks: list[dict[str, Any]] = [
            {"type": "tcp", "interval": interval, "rise": 1, "fall": 1},
            {"type": "http", "interval": 1.5, "rise": 2, "fall": 1},
        ]
        alpha = [{**c, "alpha": True} for c in checks]
        servers = [
            {"address": f"198.51.100.{i}:8080", **({"check": alpha} if i >= alpha_from else {})}
            for i in range(1, count + 1)
        ]
        return load_mapping(
            {
                "virtual_server_group": [{"name": "g", "addresses": ["192.0.2.10-11:80"]}],
                "virtual_server": [{"group": "g", "check": checks, "real_server": servers}],
            }
        )

    prober = ScriptedProber()
    rng = random.Random(11)

    def expected(checker: HealthChecker) -> set[CheckKey]:
        out: set[CheckKey] = set()
        for (s, d, _), r in checker.running.items():
            if not r.hysteresis.up:
                out.add((s, d))
                out.update((m, d) for m in r.spec.members)
        return out

    async def main() -> None:
        checker = HealthChecker(cfg(8, 1.0, 99), lambda _d: None, prober=prober)
        seen_down = 0
        async with trio.open_nursery() as nursery:
            await nursery.start(checker.run)
            for step in range(40):
                prober.failing = {f"198.51.100.{i}" for i in range(1, 11) if rng.random() < 0.3}
                if step % 7 == 3:
                    count, interval = rng.choice([(6, 1.0), (8, 1.0), (10, 2.0), (8, 2.0)])
                    checker.update(cfg(count, interval, rng.choice([3, 7, 99])))
                    assert checker.down == expected(checker)
                await trio.sleep(rng.uniform(0.2, 1.5))
                assert checker.down == expected(checker)
                seen_down += len(checker.down)
            assert seen_down, "no server was ever down: the walk tested nothing"
            nursery.cancel_scope.cancel()

    run_mocked(main)


def test_probe_durations_histogram_is_cumulative() -> None:
    d = Durations()
    for seconds in (0.0005, 0.001, 0.003, 0.2, 20.0):
        d.observe(seconds)
    assert d.count == 5 and d.sum_s == pytest.approx(20.2045)
    # 0.001 s counts in the 1 ms bucket (<=); 20 s in none (only +Inf).
    expected = [sum(1 for s in (0.0005, 0.001, 0.003, 0.2) if s <= b) for b in DURATION_BUCKETS_S]
    assert d.buckets == expected
    assert d.buckets[0] == 2 and d.buckets[-1] == 4


def test_a_probe_that_raises_counts_as_a_failure() -> None:
    class Broken(ScriptedProber):
        async def __call__(
            self, check: HealthCheck, address: IPAddress, port: int | None
        ) -> ProbeResult:
            self.calls.append((trio.current_time(), str(address)))
            if str(address) == "198.51.100.12":
                raise ValueError("bug")
            return probes.UP

    prober = Broken()
    reports: list[set[CheckKey]] = []

    async def main() -> None:
        checker = HealthChecker(config(rise=1, fall=1), reports.append, prober=prober)
        async with trio.open_nursery() as nursery:
            await nursery.start(checker.run)
            await trio.sleep(3)
            nursery.cancel_scope.cancel()

    run_mocked(main)
    assert down_servers(reports) == [{"198.51.100.12"}]
    assert sum(1 for _, a in prober.calls if a == "198.51.100.12") == 3  # kept probing


class TypedProber:
    """Answers by check type from a mutable set of failing types."""

    def __init__(self) -> None:
        self.failing: set[str] = set()

    async def __call__(
        self, check: HealthCheck, address: IPAddress, port: int | None
    ) -> ProbeResult:
        await trio.sleep(0.05)
        if check.type in self.failing:
            return ProbeResult(False, f"{check.type} failed")
        return probes.UP


def test_a_server_with_several_checks_is_down_while_any_fails() -> None:
    cfg = load_mapping(
        {
            "virtual_server": [
                {
                    "address": "192.0.2.10:80",
                    "check": [
                        {"type": "tcp", "interval": 1, "rise": 1, "fall": 1},
                        {"type": "http", "interval": 1, "rise": 1, "fall": 1},
                    ],
                    "real_server": [{"address": "198.51.100.11:8080"}],
                }
            ]
        }
    )
    prober = TypedProber()
    changes: list[tuple[str, bool, str]] = []

    async def main() -> None:
        reports: list[set[CheckKey]] = []
        checker = HealthChecker(
            cfg,
            reports.append,
            prober=prober,
            on_change=lambda key, spec, change: changes.append(
                (str(key[1]), change.up, change.reason)
            ),
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(checker.run)
            assert len(checker.running) == 2  # one task per check
            await trio.sleep(2.2)
            prober.failing = {"http"}  # the second check fails: the server goes
            await trio.sleep(2)
            prober.failing = {"http", "tcp"}  # both: no second change
            await trio.sleep(2)
            prober.failing = {"http"}  # one passes again: still down
            await trio.sleep(2)
            assert checker.down == {next(iter(checker.running))[:2]}
            prober.failing = set()  # the last one passes: back
            await trio.sleep(2)
            nursery.cancel_scope.cancel()
        assert down_servers(reports) == [{"198.51.100.11"}, set()]

    run_mocked(main)
    assert changes == [
        ("198.51.100.11:8080", False, "http failed"),
        ("198.51.100.11:8080", True, "ok"),
    ]


def test_a_group_runs_one_check_per_real_server_for_all_its_services() -> None:
    cfg = load_mapping(
        {
            "virtual_server_group": [{"name": "g", "addresses": ["192.0.2.10-12:80"]}],
            "virtual_server": [
                {
                    "group": "g",
                    "check": {"type": "tcp", "interval": 1, "rise": 1, "fall": 1},
                    "real_server": [
                        {"address": "198.51.100.11:8080"},
                        {"address": "198.51.100.12:8080"},
                    ],
                }
            ],
        }
    )
    prober = ScriptedProber()
    prober.failing.add("198.51.100.12")

    async def main() -> None:
        reports: list[set[CheckKey]] = []
        checker = HealthChecker(cfg, reports.append, prober=prober)
        async with trio.open_nursery() as nursery:
            await nursery.start(checker.run)
            assert len(checker.running) == 2  # not 6: one per real server
            await trio.sleep(2.5)
            nursery.cancel_scope.cancel()
        down = reports[-1]
        assert {str(s) for s, _ in down} == {f"tcp 192.0.2.1{i}:80" for i in range(3)}
        assert {d.address for _, d in down} == {"198.51.100.12"}

    run_mocked(main)
    assert {a for _, a in prober.calls[:2]} == {"198.51.100.11", "198.51.100.12"}


def test_delay_before_retry_and_warmup() -> None:
    def cfg(**check: Any) -> Config:
        return load_mapping(
            {
                "virtual_server": [
                    {
                        "address": "192.0.2.10:80",
                        "check": {"type": "tcp", "interval": 5, "rise": 1, "fall": 3, **check},
                        "real_server": [{"address": f"198.51.100.{i}:8080"} for i in range(11, 21)],
                    }
                ]
            }
        )

    prober = ScriptedProber()
    prober.failing.add("198.51.100.11")

    async def main() -> None:
        reports: list[set[CheckKey]] = []
        checker = HealthChecker(
            cfg(delay_before_retry=0.5, timeout=0.4), reports.append, prober=prober
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(checker.run)
            await trio.sleep(6.5)
            nursery.cancel_scope.cancel()
        # Three failures 0.5 s apart (after each 0.1 s probe): down well before 3 intervals.
        assert down_servers(reports) == [{"198.51.100.11"}]

    start = [0.0]

    async def timed() -> None:
        start[0] = trio.current_time()
        await main()

    run_mocked(timed)
    times = [t - start[0] for t, a in prober.calls if a == "198.51.100.11"]
    assert times[:3] == pytest.approx([0.0, 0.6, 1.2])  # probe 0.1 s + retry 0.5 s
    assert times[3] == pytest.approx(6.2)  # down: back to the interval from there

    # warmup: first probes at random times within it (a seeded generator here).
    prober = ScriptedProber()

    async def warm() -> None:
        checker = HealthChecker(
            cfg(warmup=2.0), lambda _d: None, prober=prober, rng=random.Random(7)
        )
        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            await nursery.start(checker.run)
            await trio.sleep(2.5)
            nursery.cancel_scope.cancel()
        firsts = sorted(t - t0 for t, _ in prober.calls)
        assert len(firsts) == 10 and all(0 <= t < 2.0 for t in firsts), firsts
        assert firsts != [2.0 * i / 10 for i in range(10)]  # not the even spread

    run_mocked(warm)


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        (
            {"delay_before_retry": 0.2, "timeout": 0.5},
            "check.delay_before_retry: delay_before_retry (0.2 s) must be at least the "
            "timeout (0.5 s)",
        ),
        ({"warmup": -1}, "check.warmup: must be 0..86400 seconds"),
    ],
)
def test_invalid_retry_and_warmup(check: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_mapping(
            {
                "virtual_server": [
                    {
                        "address": "192.0.2.10:80",
                        "check": {"type": "tcp", **check},
                        "real_server": [{"address": "198.51.100.11:8080"}],
                    }
                ]
            }
        )
    found = [str(p) for p in info.value.problems]
    assert any(p.startswith(f"virtual_server[0].{expected}") for p in found), found


def test_a_dynamic_weight_script_sets_the_weight_by_its_exit_status() -> None:
    def script(code: int, dynamic: bool = True) -> HealthCheck:
        return HealthCheck(
            "script", script=("/bin/sh", "-c", f"exit {code}"), dynamic_weight=dynamic
        )

    address = ipaddress.ip_address("198.51.100.11")

    async def main() -> list[ProbeResult]:
        return [
            await probes.probe(script(0), address, 80),
            await probes.probe(script(1), address, 80),
            await probes.probe(script(7), address, 80),
            await probes.probe(script(2), address, 80),
            await probes.probe(script(7, dynamic=False), address, 80),
        ]

    assert trio.run(main) == [
        probes.UP,
        ProbeResult(False, "exit 1"),
        ProbeResult(True, "ok", 5),
        ProbeResult(True, "ok", 0),
        ProbeResult(False, "exit 7"),
    ]


def test_the_runner_hands_on_a_dynamic_weight_when_it_changes() -> None:
    cfg = load_mapping(
        {
            "virtual_server": [
                {
                    "address": "192.0.2.10:80",
                    "check": {
                        "type": "script",
                        "script": "/bin/true",
                        "dynamic_weight": True,
                        "interval": 1,
                        "rise": 1,
                        "fall": 1,
                    },
                    "real_server": [{"address": "198.51.100.11:8080"}],
                }
            ]
        }
    )
    answers = iter(
        [
            ProbeResult(True, "ok", 5),
            ProbeResult(True, "ok", 5),
            ProbeResult(True, "ok", 9),
            ProbeResult(False, "exit 1"),
            probes.UP,
        ]
    )
    seen: list[int | None] = []

    async def prober(check: HealthCheck, address: IPAddress, port: int | None) -> ProbeResult:
        return next(answers)

    async def main() -> None:
        checker = HealthChecker(
            cfg, lambda _d: None, prober=prober, on_weight=lambda k, s, w: seen.append(w)
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(checker.run)
            await trio.sleep(4.5)
            nursery.cancel_scope.cancel()

    run_mocked(main)
    assert seen == [5, 9, None]  # unchanged weights are not repeated; a failure clears it
