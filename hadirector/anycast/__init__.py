"""Anycast: virtual server addresses announced over BGP by the local BIRD while their pools
are healthy. ``decide`` is the pure decision, ``device`` the TUN device and its routes,
``announcer`` the agent's component that ties them to the health checks."""
