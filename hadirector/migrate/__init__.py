"""Migration between keepalived.conf and hadirector's TOML.

``hadirector import keepalived`` and ``hadirector export keepalived``.

``kaconf`` reads keepalived.conf into a tree, ``from_keepalived`` turns the tree into TOML,
``to_keepalived`` turns a loaded configuration back into keepalived.conf, ``tomlout`` writes
TOML deterministically and ``report`` holds the findings both directions print. All of it is
pure: file access comes in through ``kaconf.Source``; ``files`` is the one adapter.
"""
