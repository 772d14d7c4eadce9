"""LinkWatcher's bookkeeping without a kernel: whatever the order of link notifications
(flag changes, renames, deletions, lost notifications and re-dumps), the changes it reports
tell a consumer exactly which names are up now."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hadirector.net.links import LinkWatcher
from hadirector.net.netlink import IFF_RUNNING, IFF_UP, LinkInfo

NAMES = ("eth0", "eth1", "bond0")
FLAG_CHOICES = (0, IFF_UP, IFF_UP | IFF_RUNNING)

events = st.one_of(
    st.builds(
        lambda index, name, flags: LinkInfo(index, name, flags, None),
        st.integers(1, 4),
        st.sampled_from(NAMES),
        st.sampled_from(FLAG_CHOICES),
    ),
    st.builds(
        lambda index, name: LinkInfo(index, name, 0, None, deleted=True),
        st.integers(1, 4),
        st.sampled_from(NAMES),
    ),
)


@settings(max_examples=300)
@given(
    st.lists(st.tuples(events, st.sampled_from(("seen", "lost", "resync"))), max_size=50),
    st.data(),
)
def test_reported_changes_track_the_current_state(
    script: list[tuple[LinkInfo, str]], data: st.DataObject
) -> None:
    """Each notification is seen, lost (ENOBUFS), or lost and followed by a re-dump."""
    watcher = LinkWatcher()
    kernel: dict[int, LinkInfo] = {}
    believed: dict[str, bool] = {}
    in_sync = True
    for info, fate in script:
        # Keep the simulated kernel sane: one name per link, one link per name.
        if info.deleted:
            if info.index not in kernel:
                continue
            info = LinkInfo(info.index, kernel[info.index].name, 0, None, deleted=True)
            del kernel[info.index]
        else:
            if any(i.name == info.name and i.index != info.index for i in kernel.values()):
                continue
            kernel[info.index] = info
        if fate == "seen" and in_sync:
            watcher._apply(info)
        elif fate == "resync":
            dump = data.draw(st.permutations(list(kernel.values())))  # any dump order
            watcher._resync_infos(dump)
            in_sync = True
        else:
            in_sync = False  # from here on the watcher must re-dump before it is right
        while watcher._pending:
            change = watcher._pending.popleft()
            believed[change.ifname] = change.up
        if in_sync:
            for name in NAMES:
                actually_up = any(i.name == name and i.up for i in kernel.values())
                assert believed.get(name, False) is actually_up, (name, kernel, believed)


def test_redump_listing_a_names_new_owner_before_its_renamed_old_owner() -> None:
    """eth0 (index 1) is renamed eth1 and a new eth0 (index 2) appears, both unseen; the
    re-dump lists index 2 first. eth0 must end up reported up, not down."""
    watcher = LinkWatcher()
    up = IFF_UP | IFF_RUNNING
    watcher._apply(LinkInfo(1, "eth0", up, None))
    watcher._resync_infos([LinkInfo(2, "eth0", up, None), LinkInfo(1, "eth1", up, None)])
    believed: dict[str, bool] = {}
    for change in watcher._pending:
        believed[change.ifname] = change.up
    assert believed == {"eth0": True, "eth1": True}
