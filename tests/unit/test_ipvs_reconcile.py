"""Reconcile planner: convergence, idempotence, ownership and minimality, by property."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hadirector.ipvs import model as m
from hadirector.ipvs.reconcile import (
    AddDest,
    AddService,
    DelDest,
    DelService,
    EditDest,
    EditService,
    Op,
    SimulationError,
    apply_ops,
    describe,
    plan,
    plan_edits,
)

# --- strategies: small key spaces so desired and actual overlap often -------------------------

service_keys = st.one_of(
    st.builds(
        m.ServiceKey.virtual,
        st.sampled_from(["tcp", "udp", "sctp"]),
        st.sampled_from(["192.0.2.1", "192.0.2.2", "2001:db8::1", "198.51.100.7"]),
        st.sampled_from([0, 80, 443]),
    ),
    st.builds(m.ServiceKey.mark, st.integers(1, 3), st.sampled_from([4, 6])),
)

dest_keys = st.builds(
    m.DestKey.of,
    st.sampled_from(["203.0.113.1", "203.0.113.2", "203.0.113.3", "2001:db8:1::5"]),
    st.sampled_from([0, 80, 8080]),
)

services = st.builds(
    m.Service,
    scheduler=st.sampled_from(["rr", "wlc", "sh", "mh"]),
    flags=st.sampled_from([0, 1, 4, 5, 8, 0x18, 0x19]),
    timeout_s=st.sampled_from([0, 300, 60]),
    netmask=st.sampled_from([0xFFFFFFFF, 0xFFFFFF00, 128, 64]),
)

dests = st.builds(
    m.Dest,
    forwarding=st.sampled_from([m.FWD_MASQ, m.FWD_DROUTE, m.FWD_TUNNEL]),
    weight=st.integers(0, 3),
    upper_threshold=st.sampled_from([0, 100]),
    lower_threshold=st.sampled_from([0, 50]),
    tunnel_type=st.sampled_from([0, 1, 2]),
    tunnel_port=st.sampled_from([0, 6080]),
    tunnel_flags=st.sampled_from([0, 1, 2]),
)

entries = st.builds(m.Entry, services, st.dictionaries(dest_keys, dests, max_size=4))
tables = st.dictionaries(service_keys, entries, max_size=5)


def _restricted(table: m.Table, keys: set[m.ServiceKey]) -> dict[m.ServiceKey, m.Entry]:
    return {k: v for k, v in table.items() if k in keys}


# --- properties --------------------------------------------------------------------------------


@settings(max_examples=300)
@given(desired=tables, actual=tables, whole=st.booleans())
def test_plan_converges_and_is_idempotent(desired: m.Table, actual: m.Table, whole: bool) -> None:
    ops = plan(desired, actual, own_whole_table=whole, owned=None)
    after = apply_ops(actual, ops)  # raises if an op is one the kernel would refuse
    assert m.tables_equal(_restricted(after, set(desired)), desired)
    assert plan(desired, after, own_whole_table=whole, owned=None) == []
    if whole:
        assert set(after) == set(desired)


@settings(max_examples=300)
@given(desired=tables, actual=tables, owned=st.sets(service_keys, max_size=4))
def test_services_not_desired_nor_owned_are_untouched(
    desired: m.Table, actual: m.Table, owned: set[m.ServiceKey]
) -> None:
    ops = plan(desired, actual, own_whole_table=False, owned=owned)
    after = apply_ops(actual, ops)
    for key, entry in actual.items():
        if key in desired:
            continue
        if key in owned:
            assert key not in after
        else:
            assert after[key] == entry  # identical objects' values: not even re-written
    touched = {getattr(op, "key", None) or getattr(op, "service_key", None) for op in ops}
    assert touched <= set(desired) | (owned & set(actual))


@settings(max_examples=300)
@given(desired=tables, actual=tables, whole=st.booleans())
def test_plan_shape(desired: m.Table, actual: m.Table, whole: bool) -> None:
    ops = plan(desired, actual, own_whole_table=whole, owned=None)
    deleted = {op.key for op in ops if isinstance(op, DelService)}
    added = {op.key for op in ops if isinstance(op, AddService)}
    seen_service_ops: set[m.ServiceKey] = set()
    for i, op in enumerate(ops):
        if isinstance(op, AddDest | EditDest | DelDest):
            # no dest op for a service being deleted; a new service is added before its dests
            assert op.service_key not in deleted
            if op.service_key in added:
                assert op.service_key in seen_service_ops
        if isinstance(op, AddService | EditService):
            seen_service_ops.add(op.key)
        if isinstance(op, DelService):
            # deletions come last
            assert all(isinstance(later, DelService) for later in ops[i:])
    # minimal: every op changes something
    for op in ops:
        if isinstance(op, EditService):
            assert actual[op.key].service.effective() != op.service.effective()
        if isinstance(op, EditDest):
            have = actual[op.service_key].dests[op.dest_key]
            assert have.effective() != op.dest.effective()
    # exactly one op per difference
    n_diff = 0
    for key in desired:
        if key not in actual:
            n_diff += 1 + len(desired[key].dests)
            continue
        n_diff += actual[key].service.effective() != desired[key].service.effective()
        want, have = desired[key].dests, actual[key].dests
        n_diff += len(want.keys() ^ have.keys())
        n_diff += sum(want[d].effective() != have[d].effective() for d in want.keys() & have.keys())
    if whole:
        n_diff += len(actual.keys() - desired.keys())
    assert len(ops) == n_diff


@settings(max_examples=100)
@given(desired=tables, actual=tables, seed=st.integers(0, 2**32 - 1))
def test_plan_is_deterministic_whatever_the_dict_order(
    desired: m.Table, actual: m.Table, seed: int
) -> None:
    rng = random.Random(seed)

    def shuffled(table: m.Table) -> dict[m.ServiceKey, m.Entry]:
        items = list(table.items())
        rng.shuffle(items)
        out = {}
        for k, e in items:
            d = list(e.dests.items())
            rng.shuffle(d)
            out[k] = m.Entry(e.service, dict(d))
        return out

    assert plan(desired, actual, own_whole_table=True, owned=None) == plan(
        shuffled(desired), shuffled(actual), own_whole_table=True, owned=None
    )


@settings(max_examples=200)
@given(table=tables, data=st.data())
def test_one_weight_change_is_exactly_one_edit_dest(table: m.Table, data: st.DataObject) -> None:
    with_dests = [k for k, e in table.items() if e.dests]
    if not with_dests:
        return
    skey = data.draw(st.sampled_from(sorted(with_dests, key=m.ServiceKey.sort_key)))
    dkey = data.draw(st.sampled_from(m.sorted_dests(table[skey].dests)))
    old = table[skey].dests[dkey]
    new_weight = data.draw(st.integers(0, 100).filter(lambda w: w != old.weight))
    new = replace(old, weight=new_weight)
    desired = dict(table)
    desired[skey] = m.Entry(table[skey].service, {**table[skey].dests, dkey: new})
    assert plan(desired, table, own_whole_table=True, owned=None) == [EditDest(skey, dkey, new)]


@settings(max_examples=100)
@given(table=tables)
def test_restart_over_a_kernel_table_writes_nothing(table: m.Table) -> None:
    # what the kernel holds after creating the table from nothing (HASHED bits included)
    kernel = apply_ops({}, plan(table, {}, own_whole_table=True, owned=None))
    assert any(e.service.flags & m.SVC_F_HASHED for e in kernel.values()) or not kernel
    assert plan(table, kernel, own_whole_table=True, owned=None) == []


@settings(max_examples=300, deadline=None)
@given(desired=tables, known=tables, data=st.data())
def test_plan_edits_is_plan_when_services_agree_else_none(
    desired: m.Table, known: m.Table, data: st.DataObject
) -> None:
    # Often give both tables the same services (the health path's case): the desired one's
    # services with the known one's destinations, or the reverse.
    if data.draw(st.booleans()):
        known = {k: m.Entry(e.service, known.get(k, e).dests) for k, e in desired.items()}
    edits = plan_edits(desired, known)
    agree = desired.keys() == known.keys() and all(
        desired[k].service.effective() == known[k].service.effective() for k in desired
    )
    if not agree:
        assert edits is None
        return
    # Destination operations only, exactly the full planner's, and they converge.
    assert edits == plan(desired, known, own_whole_table=True, owned=None)
    assert all(isinstance(op, AddDest | EditDest | DelDest) for op in edits)
    after = apply_ops(known, edits)
    assert m.tables_equal(after, desired)
    assert plan_edits(desired, after) == []


@settings(max_examples=200, deadline=None)
@given(table=tables, data=st.data())
def test_a_health_change_is_one_edit_per_changed_destination(
    table: m.Table, data: st.DataObject
) -> None:
    """Quiesce (weight 0) a few destinations, remove one: an EditDest each, one DelDest."""
    pairs = [(k, d) for k in m.sorted_services(table) for d in m.sorted_dests(table[k].dests)]
    if not pairs:
        return
    chosen = data.draw(st.lists(st.sampled_from(pairs), min_size=1, max_size=3, unique=True))
    removed = data.draw(st.sampled_from(chosen)) if data.draw(st.booleans()) else None
    quiesced = [p for p in chosen if p != removed]
    desired = m.apply_health(table, quiesced, quiesce=True)
    desired = m.apply_health(desired, [removed] if removed else [], quiesce=False)
    edits = plan_edits(desired, table)
    assert edits is not None
    want_edits = {p for p in quiesced if table[p[0]].dests[p[1]].weight != 0}
    assert {(op.service_key, op.dest_key) for op in edits if isinstance(op, EditDest)} == (
        want_edits
    )
    assert all(op.dest.weight == 0 for op in edits if isinstance(op, EditDest))
    assert [(op.service_key, op.dest_key) for op in edits if isinstance(op, DelDest)] == (
        [removed] if removed else []
    )
    assert len(edits) == len(want_edits) + (removed is not None)


# --- examples ------------------------------------------------------------------------------


VIP = m.ServiceKey.virtual("tcp", "192.0.2.10", 80)
RS1 = m.DestKey.of("203.0.113.1", 80)
RS2 = m.DestKey.of("203.0.113.2", 80)
NAT = m.Dest(forwarding=m.FWD_MASQ, weight=1)


def test_scheduler_change_is_an_edit_never_delete_and_add() -> None:
    actual = {VIP: m.Entry(m.Service("rr"), {RS1: NAT})}
    desired = {VIP: m.Entry(m.Service("wlc"), {RS1: NAT})}
    assert plan(desired, actual, own_whole_table=True, owned=None) == [
        EditService(VIP, m.Service("wlc"))
    ]


def test_key_change_adds_new_before_deleting_old() -> None:
    new_vip = m.ServiceKey.virtual("tcp", "192.0.2.11", 80)
    actual = {VIP: m.Entry(m.Service("rr"), {RS1: NAT})}
    desired = {new_vip: m.Entry(m.Service("rr"), {RS1: NAT})}
    assert plan(desired, actual, own_whole_table=False, owned={VIP}) == [
        AddService(new_vip, m.Service("rr")),
        AddDest(new_vip, RS1, NAT),
        DelService(VIP),
    ]
    # not owned: the old one stays
    assert plan(desired, actual, own_whole_table=False, owned=None) == [
        AddService(new_vip, m.Service("rr")),
        AddDest(new_vip, RS1, NAT),
    ]


def test_pool_swap_adds_before_deleting() -> None:
    actual = {VIP: m.Entry(m.Service("rr"), {RS1: NAT})}
    desired = {VIP: m.Entry(m.Service("rr"), {RS2: NAT})}
    assert plan(desired, actual) == [AddDest(VIP, RS2, NAT), DelDest(VIP, RS1)]


def test_forwarding_change_carries_whole_dest() -> None:
    dr = m.Dest(forwarding=m.FWD_DROUTE, weight=5, upper_threshold=100, lower_threshold=10)
    actual = {VIP: m.Entry(m.Service("rr"), {RS1: replace(dr, forwarding=m.FWD_MASQ)})}
    desired = {VIP: m.Entry(m.Service("rr"), {RS1: dr})}
    assert plan(desired, actual) == [EditDest(VIP, RS1, dr)]


def test_irrelevant_kernel_values_cause_no_writes() -> None:
    # non-persistent service with leftover timeout/netmask; a DR dest with tunnel leftovers;
    # an ipip tunnel dest with a port
    svc_kernel = m.Service("rr", flags=m.SVC_F_HASHED, timeout_s=300, netmask=0xFFFFFF00)
    d_kernel = m.Dest(m.FWD_DROUTE, 1, tunnel_type=m.TUN_TYPE_GUE, tunnel_port=5555)
    t_kernel = m.Dest(m.FWD_TUNNEL, 1, tunnel_type=m.TUN_TYPE_IPIP, tunnel_port=9, tunnel_flags=1)
    actual = {VIP: m.Entry(svc_kernel, {RS1: d_kernel, RS2: t_kernel})}
    desired = {
        VIP: m.Entry(m.Service("rr"), {RS1: m.Dest(m.FWD_DROUTE, 1), RS2: m.Dest(m.FWD_TUNNEL)})
    }
    assert plan(desired, actual) == []


def test_persistence_netmask_change_is_an_edit() -> None:
    a = m.Service("rr", flags=m.SVC_F_PERSISTENT, timeout_s=300, netmask=0xFFFFFFFF)
    b = replace(a, netmask=0xFFFFFF00)
    assert plan({VIP: m.Entry(b, {})}, {VIP: m.Entry(a, {})}) == [EditService(VIP, b)]


def test_gue_tunnel_port_change_is_an_edit() -> None:
    a = m.Dest(m.FWD_TUNNEL, 1, tunnel_type=m.TUN_TYPE_GUE, tunnel_port=6080)
    b = replace(a, tunnel_port=6081)
    svc = m.Service("rr")
    assert plan({VIP: m.Entry(svc, {RS1: b})}, {VIP: m.Entry(svc, {RS1: a})}) == [
        EditDest(VIP, RS1, b)
    ]


def test_apply_ops_refuses_what_the_kernel_refuses() -> None:
    table = {VIP: m.Entry(m.Service("rr"), {RS1: NAT})}
    bad: list[tuple[Op, str]] = [
        (AddService(VIP, m.Service()), "EEXIST"),
        (EditService(m.ServiceKey.mark(9), m.Service()), "ESRCH"),
        (DelService(m.ServiceKey.mark(9)), "ESRCH"),
        (AddDest(VIP, RS1, NAT), "EEXIST"),
        (AddDest(m.ServiceKey.mark(9), RS1, NAT), "ESRCH"),
        (EditDest(VIP, RS2, NAT), "ENOENT"),
        (DelDest(VIP, RS2), "ENOENT"),
    ]
    for op, errno_name in bad:
        with pytest.raises(SimulationError) as info:
            apply_ops(table, [op])
        assert info.value.errno_name == errno_name
    # the input table is never modified
    assert table == {VIP: m.Entry(m.Service("rr"), {RS1: NAT})}


def test_describe_names_the_object() -> None:
    assert describe(EditDest(VIP, RS1, NAT)) == "edit dest 203.0.113.1:80 of TCP 192.0.2.10:80"
    v6 = m.ServiceKey.virtual("udp", "2001:db8::1", 53)
    assert describe(DelService(v6)) == "delete service UDP [2001:db8::1]:53"
    assert describe(AddService(m.ServiceKey.mark(7, 6), m.Service())) == (
        "add service fwmark 7 ipv6 (scheduler wlc)"
    )


def test_plan_edits_leaves_service_changes_to_the_full_reconcile() -> None:
    known = {VIP: m.Entry(m.Service("rr"), {RS1: NAT, RS2: NAT})}
    quiesced = {VIP: m.Entry(m.Service("rr"), {RS1: replace(NAT, weight=0), RS2: NAT})}
    assert plan_edits(quiesced, known) == [EditDest(VIP, RS1, replace(NAT, weight=0))]
    # A sorry server in place of the pool: added first, then the real servers out.
    sorry = m.DestKey.of("203.0.113.99", 80)
    pool = {VIP: m.Entry(m.Service("rr"), {sorry: NAT})}
    assert plan_edits(pool, known) == [
        AddDest(VIP, sorry, NAT),
        DelDest(VIP, RS1),
        DelDest(VIP, RS2),
    ]
    assert plan_edits(known, known) == []
    assert plan_edits({VIP: m.Entry(m.Service("wlc"), {RS1: NAT, RS2: NAT})}, known) is None
    assert plan_edits({}, known) is None  # a service deleted
    other = m.ServiceKey.virtual("tcp", "192.0.2.11", 80)
    assert plan_edits({**known, other: m.Entry(m.Service("rr"), {})}, known) is None
