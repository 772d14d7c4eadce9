"""Tracking: effective priority from tracked interfaces, scripts and files (keepalived rules)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hadirector.errors import ConfigError
from hadirector.vrrp.track import TrackSpec, effective_priority, evaluate


def iface(weight: int, name: str = "eth1") -> TrackSpec:
    return TrackSpec("interface", name, weight)


def script(weight: int, name: str = "chk") -> TrackSpec:
    return TrackSpec("script", name, weight)


def file(weight: int, name: str = "prio") -> TrackSpec:
    return TrackSpec("file", name, weight)


def test_no_tracking_keeps_base() -> None:
    assert effective_priority(100, []) == 100


def test_interface_weight_zero_down_is_fault() -> None:
    assert effective_priority(100, [(iface(0), True)]) == 100
    assert effective_priority(100, [(iface(0), False)]) is None


def test_interface_negative_weight_subtracts_when_down() -> None:
    assert effective_priority(100, [(iface(-30), True)]) == 100
    assert effective_priority(100, [(iface(-30), False)]) == 70


def test_interface_positive_weight_adds_when_up() -> None:
    assert effective_priority(100, [(iface(20), True)]) == 120
    assert effective_priority(100, [(iface(20), False)]) == 100


def test_script_weights() -> None:
    assert effective_priority(100, [(script(0), False)]) is None
    assert effective_priority(100, [(script(0), True)]) == 100
    assert effective_priority(100, [(script(15), True)]) == 115
    assert effective_priority(100, [(script(15), False)]) == 100
    assert effective_priority(100, [(script(-15), False)]) == 85
    assert effective_priority(100, [(script(-15), True)]) == 100


def test_file_value_times_weight() -> None:
    assert effective_priority(100, [(file(2), 10)]) == 120
    assert effective_priority(100, [(file(-3), 10)]) == 70
    assert effective_priority(100, [(file(5), 0)]) == 100


def test_file_weight_zero_nonzero_value_is_fault() -> None:
    assert effective_priority(100, [(file(0), 0)]) == 100
    assert effective_priority(100, [(file(0), 7)]) is None
    assert effective_priority(100, [(file(0), -1)]) is None


def test_contributions_sum_and_faults_are_named() -> None:
    items = [(iface(-10, "eth1"), False), (script(25), True), (file(1), 3)]
    assert effective_priority(100, items) == 118
    result = evaluate(100, [*items, (iface(0, "eth2"), False), (script(0, "web"), False)])
    assert result.priority is None
    assert result.faults == ("interface eth2", "script web")


def test_clamped_to_1_254() -> None:
    assert effective_priority(250, [(iface(50), True)]) == 254
    assert effective_priority(20, [(script(-100), False)]) == 1
    assert effective_priority(20, [(file(10), -100)]) == 1


def test_owner_unchanged_unless_fault() -> None:
    assert effective_priority(255, [(iface(-50), False), (script(10), True)]) == 255
    assert effective_priority(255, [(iface(0), False)]) is None


def test_bad_specs_are_config_errors() -> None:
    with pytest.raises(ConfigError) as info:
        TrackSpec("disk", "", 300)  # type: ignore[arg-type]
    assert {p.path for p in info.value.problems} == {"kind", "name", "weight"}
    with pytest.raises(ValueError):
        effective_priority(0, [])


specs = st.builds(
    TrackSpec,
    st.sampled_from(["interface", "script", "file"]),
    st.sampled_from(["a", "b"]),
    st.integers(-254, 254),
)


@given(
    base=st.integers(1, 254),
    items=st.lists(st.tuples(specs, st.one_of(st.booleans(), st.integers(-5, 5))), max_size=6),
)
def test_result_is_fault_or_in_range(base: int, items: list[tuple[TrackSpec, bool | int]]) -> None:
    result = evaluate(base, items)
    zero_weight_fault = any(
        s.weight == 0 and (int(v) != 0 if s.kind == "file" else not v) for s, v in items
    )
    if zero_weight_fault:
        assert result.priority is None
    else:
        assert result.priority is not None
        assert 1 <= result.priority <= 254
        assert result.priority == min(max(base + result.adjustment, 1), 254)
