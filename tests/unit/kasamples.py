"""keepalived's own sample configurations, as Debian's keepalived package ships them.

tools/setup installs keepalived; its samples are read where the package puts them (some
distributions gzip them: handled). Shared by the import and export tests.
"""

from __future__ import annotations

import gzip
from pathlib import Path

SAMPLES = Path("/usr/share/doc/keepalived/samples")


def samples() -> list[Path]:
    """Every keepalived.conf sample (empty when the package's docs are not installed)."""
    if not SAMPLES.is_dir():
        return []
    return sorted(p for p in SAMPLES.iterdir() if p.name.startswith("keepalived.conf"))


def sample_text(path: Path) -> str:
    data = path.read_bytes()
    return (gzip.decompress(data) if path.suffix == ".gz" else data).decode()


# A TOML file with every feature the exporter can express (round-trip tests).
FULL = """
[global]
router_id = "lb-a"
realtime_priority = 10
script_user = "nobody"
script_group = "nogroup"
script_security = true

[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
vrid = 51
priority = 150
version = 2
advert_interval = 2
auth_type = "pass"
auth_pass = "s3cret"
unicast_src = "10.0.0.11"
unicast_peers = ["10.0.0.12"]
virtual_addresses = ["10.0.0.50/24", { address = "10.0.0.51/24", label = "eth0:web" }]
garp_interval = 0.002
garp_master_delay = 3
garp_master_repeat = 2
garp_master_refresh = 60
track_interfaces = [{ name = "eth1", weight = -20 }]
track_scripts = [{ name = "chk", weight = 10 }]
track_files = ["maint"]
notify_master = "/usr/bin/logger -t lb 'now master'"
smtp_alert = false

[[vrrp_instance]]
name = "VI_2"
interface = "eth1"
vrid = 52
priority = 200
version = 3
advert_interval = 0.5
preempt = false
virtual_addresses = ["2001:db8::50/64"]
unicast_peers = ["2001:db8::12"]

[[vrrp_instance]]
name = "VI_3"
interface = "eth1"
vrid = 53
priority = 100
version = 3
preempt_delay = 30
garp_interval = 0.002
virtual_addresses = [{ address = "10.1.0.1/24", dev = "eth0" }]
unicast_peers = ["10.1.0.12"]
old_unicast_checksum = true

[[sync_group]]
name = "G"
instances = ["VI_1", "VI_3"]
notify = ["/usr/bin/logger", "group changed"]
smtp_alert = true

[[track_script]]
name = "chk"
script = "/usr/bin/test -e /run/ok"
interval = 2
timeout = 1
weight = -5
rise = 2
fall = 3

[[track_file]]
name = "maint"
path = "/run/maint"
weight = 4

[alerts.email]
to = ["ops@example.org", "lb@example.org"]
from = "lb-a@example.org"
server = "[2001:db8::25]:2525"
timeout = 12

[ipvs]
timeout_tcp = 900
timeout_udp = 300

[ipvs.sync]
interface = "eth1"
instance = "VI_1"
syncid = 9
maxlen = 1400

[[virtual_server]]
address = "10.0.0.50:80"
protocol = "tcp"
scheduler = "sh"
scheduler_flags = ["sh-port"]
forwarding = "nat"
persistence_timeout = 300
persistence_netmask = "255.255.255.0"
health_action = "remove"
quorum = 2
hysteresis = 1
quorum_up = "/usr/bin/logger -t lb 'quorum up'"
quorum_down = ["/usr/bin/logger", "quorum down"]
sorry_server = { address = "10.1.0.99:80", forwarding = "dr", inhibit = true }

  [[virtual_server.real_server]]
  address = "10.1.0.11:8080"
  weight = 3
  upper_threshold = 100
  lower_threshold = 50
    [virtual_server.real_server.check]
    type = "http"
    path = "/health"
    expect_status = [200, 204, 301, 302, 303]
    host = "www.example.com"
    interval = 5
    timeout = 2
    rise = 1
    fall = 4
    alpha = true

  [[virtual_server.real_server]]
  address = "10.1.0.12:8080"
  check = { type = "tcp", port = 8081, interval = 3, timeout = 1, rise = 1, fall = 1 }

[[virtual_server]]
address = "[2001:db8::50]:443"
protocol = "tcp"
scheduler = "rr"
forwarding = "dr"
health_action = "quiesce"
smtp_alert = false
sorry_server = { address = "[2001:db8::99]:443" }

  [[virtual_server.real_server]]
  address = "[2001:db8::11]:443"
  check = { type = "https", interval = 10, timeout = 5, rise = 1, fall = 2, http_version = "1.1" }

[[virtual_server]]
fwmark = 7
scheduler = "wrr"
forwarding = "tun"
tunnel_type = "gue"
tunnel_port = 6080
tunnel_flags = ["csum"]
persistence_timeout = 60
health_action = "remove"

  [[virtual_server.real_server]]
  address = "10.2.0.11"
    [virtual_server.real_server.check]
    type = "script"
    script = "/usr/local/bin/check 10.2.0.11"
    interval = 10
    timeout = 4
    rise = 1
    fall = 1

[[virtual_server_group]]
name = "web"
addresses = ["10.0.0.60:80", "10.0.0.61:80", "10.0.0.62:80", "10.0.0.70:8080"]
fwmarks = [9]

[[virtual_server]]
group = "web"
protocol = "tcp"
scheduler = "rr"
forwarding = "nat"
health_action = "remove"

  [[virtual_server.real_server]]
  address = "10.1.0.21:80"
  check = { type = "tcp", interval = 6, timeout = 2, rise = 1, fall = 2 }

[[virtual_server]]
address = "10.0.0.50:53"
protocol = "udp"
one_packet = true
scheduler = "rr"
health_action = "remove"

  [[virtual_server.real_server]]
  address = "10.1.0.11:53"
  forwarding = "dr"
    [virtual_server.real_server.check]
    type = "dns"
    query_name = "example.org"
    query_type = "AAAA"
    interval = 4
    timeout = 2
    rise = 1
    fall = 2
    delay_before_retry = 3

  [[virtual_server.real_server]]
  address = "10.1.0.12:53"
    [virtual_server.real_server.check]
    type = "udp"
    payload = "0001beef"
    expect_reply = "00"
    require_reply = true
    interval = 4
    timeout = 2
    rise = 1
    fall = 1

[[virtual_server]]
address = "10.0.0.80:80"
scheduler = "wlc"
forwarding = "nat"
health_action = "remove"

  [[virtual_server.real_server]]
  address = "10.1.0.31:80"
  notify_up = "/usr/local/bin/rs-up 10.1.0.31"
  notify_down = ["/usr/local/bin/rs-down", "10.1.0.31"]
    [[virtual_server.real_server.check]]
    type = "http"
    interval = 5
    timeout = 2
    rise = 1
    fall = 3
    delay_before_retry = 2
    warmup = 3
    connect_ip = "10.1.0.131"
    bindto = "10.0.0.11"
    urls = [
      { path = "/a", expect_status = [200], digest = "9b3a3b6c5d4e2f1a0b9c8d7e6f5a4b3c" },
      { path = "/b", expect_status = [200, 201, 202, 203, 204] },
    ]
    [[virtual_server.real_server.check]]
    type = "script"
    script = "/usr/local/bin/weight 10.1.0.31"
    dynamic_weight = true
    interval = 10
    timeout = 4
    rise = 1
    fall = 1

  [[virtual_server.real_server]]
  address = "10.1.0.32:80"
    [virtual_server.real_server.check]
    type = "http"
    path = "/x"
    digest = "00112233445566778899aabbccddeeff"
    interval = 5
    timeout = 2
    rise = 1
    fall = 2
"""
