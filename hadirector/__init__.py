"""hadirector: a high-availability agent for pairs of LVS directors.

VRRP election, virtual address moves and announcements, IPVS programming, health
checks and connection sync. See README.md, and docs/ARCHITECTURE.md for the map.
"""

__version__ = "0.1.0"
