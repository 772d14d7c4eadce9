"""Network adapters: VRRP raw sockets, VIP netlink, GARP/NA, link watch. The only I/O here."""
