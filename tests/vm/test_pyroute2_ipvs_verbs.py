"""Pins pyroute2 0.9's IPVS verbs against the kernel, for anyone tempted to use them.

The adapter encodes its own messages (hadirector.ipvs.genl); pyroute2's ``IPVS`` object is
not on any path of the daemon. These tests record, against the real kernel, the traps its
verb map holds: "set" sends IPVS_CMD_SET_DEST and replaces the whole destination (an
``IPVSDest`` defaults to DR, so a masq server given only a weight becomes DR), and "update"
sends a *delete*.
"""

from __future__ import annotations

import pytest

from .lvslab import in_netns

pytestmark = pytest.mark.vm

SCRIPT = """
import socket, sys
from pyroute2 import IPVS, IPVSDest, IPVSService
ipvs = IPVS()
svc = IPVSService(addr="192.0.2.1", port=80, protocol=socket.IPPROTO_TCP)
ipvs.service("add", service=svc)
ipvs.dest("add", service=svc, dest=IPVSDest(addr="198.51.100.1", port=80, fwd_method=0))
ipvs.dest("add", service=svc, dest=IPVSDest(addr="198.51.100.2", port=80, fwd_method=0))
ipvs.dest("set", service=svc, dest=IPVSDest(addr="198.51.100.1", port=80, weight=5))
ipvs.dest("update", service=svc, dest=IPVSDest(addr="198.51.100.2", port=80, weight=9))
ipvs.close()
"""


def test_pyroute2_set_replaces_the_dest_and_update_deletes(netns: str) -> None:
    in_netns(netns, "python3", "-c", SCRIPT)
    saved = in_netns(netns, "ipvsadm", "-S", "-n").splitlines()
    assert saved == [
        "-A -t 192.0.2.1:80 -s wlc",
        # "set" with only a weight: forwarding fell back to DR (-g), not masq (-m).
        "-a -t 192.0.2.1:80 -r 198.51.100.1:80 -g -w 5",
        # "update" deleted 198.51.100.2 instead of changing its weight.
    ]
