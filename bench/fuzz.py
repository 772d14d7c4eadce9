#!/usr/bin/env python3
"""Long coverage-guided fuzzing of the parsers that take outside input, with a kept corpus.

Each target of tests/unit/fuzz_targets.py (vrrp, sync, control, config, ipvsadm,
keepalived) runs for a fixed time under atheris (libFuzzer for Python: the hadirector
modules and tomllib are instrumented for coverage), in its own niced process. The corpus is
kept in the repository, bench/fuzz-corpus/TARGET/: each run starts from it and adds the
inputs that reached new code, so the next run goes on from there; CI replays every file of
it through the same target functions (tests/unit/test_fuzz_corpus.py), no atheris needed.
An empty corpus is seeded from the repository's own examples (conf/*.toml, the ipvsadm and
keepalived samples of the unit tests, encoded adverts and sync messages).

A target that raises anything but its documented clean error is a failure. The run does not
stop at one: each distinct failure (exception type and the line it came from) is counted,
its first input saved to bench/fuzz-failures/TARGET/ (not kept: each becomes a regression
test and a fix) and the run goes on.

Usage::

    python3 bench/fuzz.py                         # every target, 1 minute each
    python3 bench/fuzz.py --minutes 5             # every target, 5 minutes each
    python3 bench/fuzz.py --target sync --minutes 30
    python3 bench/fuzz.py --json runs.json        # also the figures as JSON

Per target it prints: examples run, examples per second, libFuzzer's coverage counters at the
end (cov: code edges, ft: features), corpus files before and after, distinct failures, time.
Needs ``pip install atheris`` (the ``fuzz`` extra of pyproject.toml); it prints figures and
asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import traceback
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CORPUS = REPO / "bench" / "fuzz-corpus"
FAILURES = REPO / "bench" / "fuzz-failures"
TARGET_NAMES = ("vrrp", "sync", "control", "config", "ipvsadm", "keepalived")
TARGET_ENV, STATS_ENV = "HADIRECTOR_FUZZ_TARGET", "HADIRECTOR_FUZZ_STATS"


# --- seeds ----------------------------------------------------------------------------------

KEEPALIVED_SEED = """\
global_defs {
    router_id lb1   # a comment
    @a vrrp_garp_master_delay 2
}
$VIP=10.0.0.50
vrrp_script chk {
    script "/bin/true"
    interval 2
}
vrrp_instance VI_1 {      ! another comment
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass "se cret"
    }
    unicast_src_ip 10.0.0.11
    unicast_peer {
        10.0.0.12
    }
    virtual_ipaddress {
        $VIP/24 dev eth0 label eth0:vip
        10.0.0.51
    }
    track_script {
        chk
    }
}
virtual_server 10.0.0.50 80 {
    delay_loop 6
    lb_algo wlc
    lb_kind NAT
    persistence_timeout 300
    protocol TCP
    real_server 10.1.0.1 80 {
        weight 2
        HTTP_GET {
            url {
                path /health
                status_code 200
            }
            connect_timeout 3
        }
    }
    real_server 10.1.0.2 80 {
        TCP_CHECK {
            connect_port 80
        }
    }
}
"""


def seeds(target: str) -> list[bytes]:
    """Valid inputs to start an empty corpus from."""
    if target == "vrrp":
        from hadirector.vrrp.codec import MCAST_V4, MCAST_V6, Advert, encode, v2_password

        s4, s6 = IPv4Address("192.0.2.1"), IPv6Address("fe80::1")
        v4 = (IPv4Address("192.0.2.100"), IPv4Address("192.0.2.101"))
        out = [
            b"\x02" + encode(Advert(3, 51, 150, 100, v4), src=s4, dst=MCAST_V4),
            b"\x00" + encode(Advert(3, 51, 150, 100, v4), src=s4, dst=MCAST_V4,
                             v3_ipv4_pseudo_header=False),
            b"\x00" + encode(Advert(2, 7, 100, 100, v4[:1], 1, v2_password("secret")),
                             src=s4, dst=MCAST_V4),
            b"\x01" + encode(Advert(3, 9, 255, 5, (IPv6Address("2001:db8::1"),)),
                             src=s6, dst=MCAST_V6),
        ]  # fmt: skip
        payload = encode(Advert(3, 51, 150, 100, v4), src=s4, dst=MCAST_V4)
        header = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0xC0, 20 + len(payload), 0, 0, 255, 112, 0,
            s4.packed, MCAST_V4.packed,
        )  # fmt: skip
        from hadirector.vrrp.codec import internet_checksum

        header = header[:10] + struct.pack("!H", internet_checksum(header)) + header[12:]
        out.append(b"\x0a" + header + payload)
        return out
    if target == "sync":
        from hadirector.sync import codec

        conn = codec.Conn(6, IPv4Address("10.0.0.1"), 40000, IPv4Address("192.0.2.100"), 80,
                          IPv4Address("10.1.0.1"), 80, state=1, timeout=900)  # fmt: skip
        tmpl = codec.Conn(0, IPv4Address("10.0.0.1"), 0, IPv4Address("192.0.2.100"), 0,
                          IPv4Address("10.1.0.1"), 0, flags=codec.F_TEMPLATE, timeout=300,
                          pe_data=b"sip-id", pe_name=b"sip")  # fmt: skip
        conn6 = codec.Conn(17, IPv6Address("2001:db8::1"), 5000, IPv6Address("2001:db8::100"),
                           53, IPv6Address("2001:db8:1::1"), 53,
                           seq=(codec.SeqAdjust(1, 2, 3), codec.SeqAdjust(4, 5, 6)))  # fmt: skip
        return [
            codec.encode(1, [conn, tmpl]),
            codec.encode(2, [conn6]),
            codec.encode_control(1, codec.Control(codec.REQUEST)),
            codec.encode_control(1, codec.Control(codec.DONE, 10000)),
        ]
    if target == "control":
        return [
            b"status",
            b'{"command": "reload"}',
            b'{"command": "drain", "service": "web", "server": "10.1.0.1:80"}',
        ]
    if target == "config":
        return [p.read_bytes() for p in sorted((REPO / "conf").glob("*.toml"))]
    if target == "ipvsadm":
        from tests.unit import ipvsadm_scripts

        return [ipvsadm_scripts.SCRIPT.encode(), ipvsadm_scripts.EDITS.encode()]
    if target == "keepalived":
        return [KEEPALIVED_SEED.encode()]
    raise ValueError(target)


def seed_corpus(target: str) -> None:
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        return
    for data in seeds(target):
        (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)


# --- the worker: one target under atheris -----------------------------------------------------


def _signature(exc: BaseException) -> str:
    """Exception type and where it came from: the innermost frame in the repository, and
    the innermost frame of all (it may be in the standard library)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if str(REPO) in f.filename]
    where = [f"{Path(f.filename).name}:{f.lineno}" for f in (ours[-1:] + frames[-1:])]
    return f"{type(exc).__name__} at {' / '.join(where)}"


def worker(target: str, stats_path: Path, libfuzzer_args: list[str]) -> None:
    """Fuzz ``target`` under atheris with libFuzzer's own command line (``-merge=1`` makes
    libFuzzer run this script again, hence the target in the environment)."""
    import atheris

    with atheris.instrument_imports(include=["hadirector", "tomllib"]):
        from tests.unit import fuzz_targets
    run = fuzz_targets.TARGETS[target]
    failures: dict[str, dict[str, Any]] = {}
    state = {"runs": 0, "written": time.monotonic()}

    def write_stats() -> None:
        tmp = stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"runs": state["runs"], "failures": failures}))
        tmp.replace(stats_path)
        state["written"] = time.monotonic()

    def one_input(data: bytes) -> None:
        state["runs"] += 1
        try:
            run(data)
        except Exception as exc:
            key = _signature(exc)
            if key not in failures:
                digest = hashlib.sha1(data).hexdigest()
                saved = FAILURES / target / digest
                saved.parent.mkdir(parents=True, exist_ok=True)
                saved.write_bytes(data)
                failures[key] = {"count": 0, "input": str(saved.relative_to(REPO)),
                                 "message": str(exc)[:200]}  # fmt: skip
                write_stats()
            failures[key]["count"] += 1
        if time.monotonic() - state["written"] > 1.0:
            write_stats()

    write_stats()
    atheris.Setup([str(Path(__file__).resolve()), *libfuzzer_args], one_input)
    atheris.Fuzz()


# --- the driver ------------------------------------------------------------------------------


def _spawn(target: str, nice: int, stats_path: Path, libfuzzer_args: list[str]) -> str:
    """Run the worker for ``target`` (niced); libFuzzer's output."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONHASHSEED="0")
    env[TARGET_ENV], env[STATS_ENV] = target, str(stats_path)
    script = str(Path(__file__).resolve())
    proc = subprocess.run(
        ["nice", "-n", str(nice), sys.executable, script, *libfuzzer_args],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    return proc.stdout + f"\nexit status {proc.returncode}\n"


def minimize(target: str, nice: int) -> tuple[int, int]:
    """libFuzzer's merge of the kept corpus into a new one with the same coverage: files
    before and after."""
    corpus = CORPUS / target
    merged = CORPUS / f".{target}.merged"
    shutil.rmtree(merged, ignore_errors=True)
    merged.mkdir()
    stats_path = Path(f"/tmp/hadirector-fuzz-{os.getpid()}-{target}.json")
    log = _spawn(target, nice, stats_path, ["-merge=1", str(merged), str(corpus)])
    stats_path.unlink(missing_ok=True)
    before, after = len(list(corpus.iterdir())), len(list(merged.iterdir()))
    if "exit status 0" not in log or not after:
        shutil.rmtree(merged)
        raise RuntimeError(f"merge of {target} failed:\n" + "\n".join(log.splitlines()[-20:]))
    shutil.rmtree(corpus)
    merged.rename(corpus)
    return before, after


def run_target(target: str, seconds: int, nice: int) -> dict[str, Any]:
    from tests.unit.fuzz_targets import MAX_LEN  # the driver only: not instrumented

    seed_corpus(target)
    before = sum(1 for _ in (CORPUS / target).iterdir())
    stats_path = Path(f"/tmp/hadirector-fuzz-{os.getpid()}-{target}.json")
    started = time.monotonic()
    args = [
        f"-max_total_time={seconds}",
        f"-max_len={MAX_LEN[target]}",
        "-timeout=30",
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
        str(CORPUS / target),
    ]
    log = _spawn(target, nice, stats_path, args)
    elapsed = time.monotonic() - started
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    stats_path.unlink(missing_ok=True)
    covs = re.findall(r"cov: (\d+) ft: (\d+)", log)
    done = re.search(r"Done (\d+) runs in (\d+) second", log)
    after = sum(1 for _ in (CORPUS / target).iterdir())
    runs = int(stats.get("runs", 0))
    failures = stats.get("failures", {})
    if (
        "exit status 0" not in log
    ):  # libFuzzer itself stopped: a timeout, out of memory or a hard crash
        tail = "\n".join(log.splitlines()[-15:])
        failures["libFuzzer stopped"] = {"count": 1, "message": tail}
    return {
        "target": target,
        "seconds": round(elapsed, 1),
        "runs": runs,
        "libfuzzer_runs": int(done.group(1)) if done else None,
        "per_second": round(runs / elapsed) if elapsed else 0,
        "cov": int(covs[-1][0]) if covs else None,
        "ft": int(covs[-1][1]) if covs else None,
        "corpus_before": before,
        "corpus_after": after,
        "failures": failures,
    }


def table(results: list[dict[str, Any]]) -> str:
    head = (f"{'target':<11} {'examples':>10} {'per s':>7} {'cov':>6} {'ft':>7} "
            f"{'corpus':>13} {'failures':>8} {'time s':>7}")  # fmt: skip
    lines = [head]
    for r in results:
        corpus = f"{r['corpus_before']}->{r['corpus_after']}"
        lines.append(
            f"{r['target']:<11} {r['runs']:>10} {r['per_second']:>7} {r['cov'] or '-':>6} "
            f"{r['ft'] or '-':>7} {corpus:>13} {len(r['failures']):>8} {r['seconds']:>7}"
        )
    for r in results:
        for key, f in r["failures"].items():
            lines.append(f"FAILURE {r['target']}: {key} x{f['count']} ({f.get('input', '')})")
            lines.append(f"    {f['message']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", action="append", choices=TARGET_NAMES,
                        help="a target to run (repeatable; default: all)")  # fmt: skip
    parser.add_argument("--minutes", type=float, default=1.0, help="per target (default 1)")
    parser.add_argument("--nice", type=int, default=19, help="niceness of the fuzzing process")
    parser.add_argument("--json", help="also write the figures as JSON to this file")
    parser.add_argument("--minimize", action="store_true",
                        help="afterwards, merge each corpus down to the files that keep its "
                        "coverage (libFuzzer -merge=1)")  # fmt: skip
    if os.environ.get(TARGET_ENV):  # a worker: the rest is libFuzzer's command line
        worker(os.environ[TARGET_ENV], Path(os.environ[STATS_ENV]), sys.argv[1:])
        return 0
    args = parser.parse_args(argv)
    seconds = max(1, round(args.minutes * 60))
    results = []
    for target in args.target or TARGET_NAMES:
        results.append(run_target(target, seconds, args.nice))
        if args.minimize:
            results[-1]["corpus_after"] = minimize(target, args.nice)[1]
        print(table(results[-1:]).splitlines()[1], flush=True)
    print()
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 1 if any(r["failures"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
