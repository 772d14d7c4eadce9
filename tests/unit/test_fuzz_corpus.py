"""Replay of the fuzzing corpus kept in bench/fuzz-corpus/: every input the long
coverage-guided run (bench/fuzz.py) found reaching new code goes through its parser again,
and gives a result or that parser's documented clean error (tests/unit/fuzz_targets.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.fuzz_targets import MAX_LEN, TARGETS

CORPUS = Path(__file__).resolve().parents[2] / "bench" / "fuzz-corpus"


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_kept_input_gives_a_result_or_the_clean_error(target: str) -> None:
    files = sorted((CORPUS / target).iterdir())
    assert files, f"no kept corpus for {target}: run bench/fuzz.py --target {target}"
    run = TARGETS[target]
    for path in files:
        data = path.read_bytes()
        assert len(data) <= MAX_LEN[target]
        try:
            run(data)
        except Exception as exc:  # name the input that broke, the exception chained
            raise AssertionError(f"{target}: {path.name} raised {exc!r}") from exc
