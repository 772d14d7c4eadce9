"""Start, stop and list the kernel's IPVS connection-sync daemons.

The kernel replicates IPVS connections itself (sync protocol v1, UDP multicast, by default
224.0.0.81:8848): a *master* daemon on the active director sends, a *backup* daemon on the
standby receives. This module drives them over the IPVS generic netlink family
(IPVS_CMD_NEW_DAEMON / DEL_DAEMON / GET_DAEMON, messages in :mod:`hadirector.ipvs.genl`),
sharing the socket of an open :class:`hadirector.ipvs.kernel.IpvsKernel`, so it works in the
same network namespace as that adapter.

The agent calls ``start_daemon(MASTER, ...)`` when becoming VRRP master and
``start_daemon(BACKUP, ...)`` when becoming backup, stopping the other role first. This
module holds no state of its own and must not decide roles.
"""

from __future__ import annotations

import errno as errno_module

from hadirector.errors import KernelError
from hadirector.ipvs import genl
from hadirector.ipvs.kernel import IpvsKernel, IpvsOpError, decoding
from hadirector.ipvs.types import SyncDaemon, SyncState

__all__ = ["SyncDaemon", "SyncKernel", "SyncState"]


class SyncKernel:
    """Sync-daemon control for the namespace of ``ipvs`` (which must be open)."""

    def __init__(self, ipvs: IpvsKernel) -> None:
        self.ipvs = ipvs

    async def start_daemon(
        self,
        state: SyncState,
        ifname: str,
        syncid: int,
        *,
        sync_maxlen: int = 0,
        mcast_group: str = "",
        mcast_port: int = 0,
        mcast_ttl: int = 0,
    ) -> None:
        """Start the ``state`` daemon on ``ifname`` for sync id ``syncid`` (0..255).

        Optional fields left at 0/"" take the kernel defaults (group 224.0.0.81, port
        8848, TTL 1, message size from the MTU). Raises IpvsOpError (EEXIST if that role
        already runs, ENODEV for an unknown interface).
        """
        if not 0 <= syncid <= 255:
            raise ValueError(f"sync id must be 0..255, got {syncid}")
        attrs = genl.daemon_attr(
            state,
            ifname,
            syncid,
            sync_maxlen=sync_maxlen,
            mcast_group=mcast_group,
            mcast_port=mcast_port,
            mcast_ttl=mcast_ttl,
        )
        what = f"start sync {state.name.lower()} daemon on {ifname} (syncid {syncid})"
        await self.ipvs.command(what, genl.IPVS_CMD_NEW_DAEMON, attrs)

    async def stop_daemon(self, state: SyncState, *, missing_ok: bool = True) -> None:
        """Stop the ``state`` daemon; not running is fine unless ``missing_ok`` is False.

        The stop goes with a listing of the daemons, and the listing says whether it
        worked: a daemon stopped before its kernel thread first ran (a stop right after a
        start, e.g. VRRP master for a few milliseconds) makes the kernel's thread stop
        return EINTR, and for EINTR the kernel answers nothing, not even the ACK asked for
        (an exchange waiting for that ACK would wait for ever). The daemon is gone all the
        same. KernelError if it still runs.
        """
        what = f"stop sync {state.name.lower()} daemon"
        try:
            replies = await self.ipvs.command_then_dump(
                what, genl.IPVS_CMD_DEL_DAEMON, genl.daemon_attr(state), genl.IPVS_CMD_GET_DAEMON
            )
        except IpvsOpError as error:
            if not (missing_ok and error.errno == errno_module.ESRCH):
                raise
            return
        with decoding(what):
            running = [genl.decode_daemon(reply) for reply in replies]
        if any(daemon.state is state for daemon in running):
            raise KernelError(f"{what}: the kernel still lists it after the stop")

    async def daemons(self) -> list[SyncDaemon]:
        """The running daemons (none, one or both roles)."""
        replies = await self.ipvs.command("list sync daemons", genl.IPVS_CMD_GET_DAEMON, dump=True)
        with decoding("list sync daemons"):
            return [genl.decode_daemon(reply) for reply in replies]
