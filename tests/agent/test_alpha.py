"""``alpha`` health checks on the whole agent: a server that starts down is out of the IPVS
table's rotation from the very first reconcile, not one check later.

The checks are scripts (``/bin/false``, ``/bin/true``): no traffic leaves the test.
"""

from __future__ import annotations

import trio

from hadirector.ipvs import model
from tests.agent.fakes import Lab, instance_toml, pair, run_lab

SERVICE = """
[[virtual_server]]
address = "192.0.2.100:80"
  [virtual_server.check]
  type = "script"
  script = "/bin/false"
  interval = 1.0
  timeout = 0.5
  rise = 2
  [[virtual_server.real_server]]
  address = "198.51.100.11:80"
  [virtual_server.real_server.check]
  alpha = true
  [[virtual_server.real_server]]
  address = "198.51.100.12:80"
"""


def test_alpha_servers_are_down_before_ipvs_runs() -> None:
    async def scenario(lab: Lab) -> None:
        _, a, _ = pair(lab)
        running = await lab.start(a, instance_toml(priority=200) + SERVICE)
        await trio.sleep(0.01)
        [ipvs] = a.ipvs
        cfg = running.agent.config
        [vs] = cfg.virtual_servers
        skey = model.service_key_of(vs)
        alpha, plain = (model.dest_key_of(vs, rs) for rs in vs.real_servers)
        # Handed to IPVS before its run() started: the first reconcile already knows.
        assert ipvs.health_before_run[0] is True
        assert ipvs.health[0] == {(skey, alpha)}
        assert (skey, plain) not in ipvs.health[0]

    run_lab(scenario)
