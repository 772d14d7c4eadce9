"""The save formatter against the real ipvsadm on a real IPVS kernel (runs in the VM).

Rules are restored with ``ipvsadm -R`` into a fresh network namespace, read back with
``ipvsadm -S -n`` and compared byte for byte with what hadirector prints for the same
rules. Skipped where the kernel has no IPVS (the build machines).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from hadirector.ipvs.importer import parse_rules
from hadirector.ipvs.model import FWD_MASQ, Dest, DestKey, ServiceKey
from hadirector.ipvs.save import format_table
from tests.unit.ipvsadm_scripts import EDITS, SCRIPT

pytestmark = pytest.mark.vm

MODULES = ["ip_vs", "ip_vs_rr", "ip_vs_wlc", "ip_vs_sh", "ip_vs_mh", "ip_vs_wrr", "ip_vs_lc"]

# Input deliberately out of ipvsadm's order, with thresholds (which -S does not print),
# options in unusual order and long forms.
RULES = """\
-A -f 2 -6 -s sh -b sh-fallback,sh-port
-a -f 2 -6 -r [2001:db8:1::2]:0 -g -w 1
-A --fwmark-service 1 --scheduler rr --persistent 600 --netmask 255.255.255.0
-a -f 1 -r 203.0.113.6 -g -w 0
-a -f 1 -r 203.0.113.5 -g
-A -u [2001:db8::1]:53 -s rr -p -M 64
-a -u [2001:db8::1]:53 -r [2001:db8:1::1]:53 -g -w 1 -x 100 -y 50
-A --sctp-service 192.0.2.4:3868 -s wlc
-A -u 192.0.2.3:5060 -s mh -p 60 -M 255.255.0.0 -b mh-port
-A -u 192.0.2.3:53 -s rr -o
-A -t 192.0.2.5:0 -s wlc -p 300
-a -t 192.0.2.5:0 -r 203.0.113.8 -g
-A -t 192.0.2.20:80 -s wrr
-a -t 192.0.2.20:80 -r 203.0.113.10:80 -m -w 5
-a -t 192.0.2.20:80 -r 203.0.113.9:80 -m -w 5
-A -t 192.0.2.2:443 -s rr
-a -t 192.0.2.2:443 -r 203.0.113.9 -i -w 2 --tun-type gre --tun-nocsum
-a -t 192.0.2.2:443 -r 203.0.113.8 -i --tun-type gue --tun-port 6080 --tun-csum
-a -t 192.0.2.2:443 -r 203.0.113.7 -i --tun-type ipip
-a -t 192.0.2.2:443 -r 203.0.113.11 -i --tun-type gue --tun-port 6081 --tun-remcsum
-A -t 192.0.2.1:80 -s wlc
-a -t 192.0.2.1:80 -r 203.0.113.2:8080 -m -w 3 -x 10
-a -t 192.0.2.1:80 -r 203.0.113.1:8080 -m -w 1
-A -t 10.0.0.1:80 -s lc
-A -t 203.0.113.1:80 -s lc
"""


def _ipvs_available() -> str | None:
    """None if ipvsadm can reach IPVS in a new namespace, else why not.

    Only inside the throw-away VM: modules are never loaded on the host.
    """
    if os.environ.get("HADIRECTOR_IN_VM") != "1":
        return "runs in the IPVS VM only (tools/vm/run-in-vm sets HADIRECTOR_IN_VM=1)"
    if shutil.which("ipvsadm") is None or shutil.which("unshare") is None:
        return "ipvsadm or unshare missing"
    subprocess.run(["modprobe", "-a", *MODULES], capture_output=True, check=False)
    probe = subprocess.run(
        ["unshare", "--net", "ipvsadm", "-S", "-n"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        return f"no IPVS here: {probe.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def ipvs() -> None:
    reason = _ipvs_available()
    if reason is not None:
        pytest.skip(reason)


def _restore_and_save(rules: str) -> str:
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", "ip link set lo up && ipvsadm -R && ipvsadm -S -n"],
        input=rules,
        capture_output=True,
        text=True,
        check=False,
    )
    # ipvsadm -R reports a refused line on stderr and still exits 0
    assert done.returncode == 0 and not done.stderr, done.stderr
    return done.stdout


@pytest.mark.usefixtures("ipvs")
def test_save_matches_ipvsadm_byte_for_byte() -> None:
    real = _restore_and_save(RULES)
    ours = format_table(parse_rules(RULES))
    assert ours == real


@pytest.mark.usefixtures("ipvs")
def test_ipvsadm_reads_back_what_we_print() -> None:
    ours = format_table(parse_rules(RULES))
    assert _restore_and_save(ours) == ours


LARGE = """\
-A -f 4294967294 -s rr
-A -f 2147483648 -6 -s rr -p 2678400
-a -f 2147483648 -6 -r [2001:db8::a:0:0:1]:0 -g -w 2147483647
"""


@pytest.mark.usefixtures("ipvs")
def test_large_marks_print_as_ipvsadm_prints_them() -> None:
    # ipvsadm prints marks with %d; it cannot restore its own output for them, so only
    # the save direction is compared here
    assert format_table(parse_rules(LARGE)) == _restore_and_save(LARGE)


@pytest.mark.usefixtures("ipvs")
def test_importer_replays_a_script_as_ipvsadm_does() -> None:
    # the shell script run for real, command by command, against the importer's replay
    # (-E/-e replace every attribute, bare -p, -w5, --opt=value, bundled -At, DR ports)
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", f"ip link set lo up && {{\n{SCRIPT}\n}} && ipvsadm -S -n"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and not done.stderr, done.stderr
    assert format_table(parse_rules(SCRIPT)) == done.stdout


@pytest.mark.usefixtures("ipvs")
def test_edit_commands_replay_as_ipvsadm_does() -> None:
    table = parse_rules(EDITS)
    dests = table[ServiceKey.virtual("tcp", "192.0.2.1", 80)].dests
    assert dests[DestKey("198.51.100.1", 8080)] == Dest(FWD_MASQ, 1, 0, 0)
    assert format_table(table) == _restore_and_save(EDITS)
