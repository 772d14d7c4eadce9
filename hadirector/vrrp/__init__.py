"""VRRP core: advert codec, RFC 5798 state machine, tracking, sync groups. Pure: no I/O."""
