"""The control socket: a running agent's status and commands over a local unix socket.

- ``protocol``: the wire format, pure (request parsing, reply encoding and decoding).
- ``server``: the agent's side (trio), serving the control socket and the metrics page.
- ``client``: the CLI's side, standard library only, so that ``hadirector status`` and
  ``reload`` start fast and work while the agent's own dependencies are broken.

This package imports none of them: importing the client loads neither trio nor the agent.
"""
