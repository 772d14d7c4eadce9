"""The agent shell: one ``hadirector run`` process in trio, split by role.

- ``supervisor.py``: ``Agent``, the process as a whole: start order, the watchers (links,
  VIPs), sync groups, status, stop and reload.
- ``instance.py``: ``Instance``, one VRRP instance's driver: its queues, the machine, its
  endpoint on the shared VRRP sockets, its VIPs and announcements.
- ``tracking.py``: tracked interfaces, scripts and files, and the effective priority.

Protocol decisions belong to the pure core (vrrp/, config/): the shell gathers inputs,
calls the core and performs what it returns.
"""

from hadirector.agent.instance import (
    ADVERT_QUEUE,
    REOPEN_RETRY_S,
    Instance,
    RateLimitedLog,
    machine_config,
    receive_policy,
    send_policy,
)
from hadirector.agent.supervisor import STOP_TIMEOUT_S, Agent, run_agent
from hadirector.agent.tracking import Tracking, TrackStates

__all__ = [
    "ADVERT_QUEUE",
    "REOPEN_RETRY_S",
    "STOP_TIMEOUT_S",
    "Agent",
    "Instance",
    "RateLimitedLog",
    "TrackStates",
    "Tracking",
    "machine_config",
    "receive_policy",
    "run_agent",
    "send_policy",
]
