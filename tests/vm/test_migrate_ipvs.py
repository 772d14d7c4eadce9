"""keepalived and the import agree on the IPVS table of every sample (runs in the VM).

For each keepalived sample with virtual servers: the sample without its health checkers
(a server without a checker is always in: the table is then the configuration alone, not
the health of servers that do not exist) is run by keepalived 2.2.7's checker process in
a fresh network namespace, and the IPVS table it programs (``ipvsadm -S -n``) must equal
the table hadirector derives from the imported TOML (``ipvs.model.desired_from_config``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hadirector.config.load import load_text
from hadirector.ipvs import model as m
from hadirector.ipvs.importer import parse_rules
from hadirector.ipvs.save import format_table
from hadirector.migrate import kaconf
from hadirector.migrate.from_keepalived import convert
from hadirector.migrate.kaconf import Node
from hadirector.migrate.report import Findings
from tests.unit.kasamples import sample_text, samples

from .lvslab import keepalived_table

pytestmark = pytest.mark.vm

CHECKERS = {
    "TCP_CHECK", "HTTP_GET", "SSL_GET", "MISC_CHECK", "SMTP_CHECK", "DNS_CHECK",
    "UDP_CHECK", "PING_CHECK", "BFD_CHECK", "FILE_CHECK",
}  # fmt: skip
# keepalived's checker process does not need these (and VRRP is not run here)
DROP_TOP = {"vrrp_instance", "vrrp_sync_group", "vrrp_script", "static_routes", "static_rules"}


def _word(w: str) -> str:
    return f'"{w}"' if not w or any(c.isspace() or c in "{}#!" for c in w) else w


def render(nodes: tuple[Node, ...], depth: int = 0) -> list[str]:
    """keepalived.conf text of a tree, without checkers and VRRP."""
    out = []
    for n in nodes:
        if n.keyword in CHECKERS or (depth == 0 and n.keyword in DROP_TOP):
            continue
        if depth == 1 and n.keyword in ("lvs_sync_daemon", "net_namespace"):
            continue
        line = "    " * depth + " ".join(_word(w) for w in n.words)
        if n.block is None:
            out.append(line)
        else:
            out.append(line + " {")
            out.extend(render(n.block, depth + 1))
            out.append("    " * depth + "}")
    return out


def lvs_samples() -> list[Path]:
    return [p for p in samples() if "virtual_server" in sample_text(p)]


@pytest.mark.parametrize("sample", lvs_samples(), ids=lambda p: p.name)
def test_keepalived_programs_the_table_the_import_describes(
    ipvs_modules: None, tmp_path: Path, sample: Path
) -> None:
    findings = Findings()
    tree = kaconf.parse(
        sample.name, kaconf.TextSource({sample.name: sample_text(sample)}), "high", findings
    )
    text = "\n".join(render(tree)) + "\n"
    conf = tmp_path / "keepalived.conf"
    conf.write_text(text)
    nodes = kaconf.parse(str(conf), kaconf.TextSource({str(conf): text}), "high", Findings())
    config = load_text(convert(nodes, Findings(), str(conf)))
    expected = m.desired_from_config(config.virtual_servers)
    assert expected, text
    saved, log = keepalived_table(
        conf, tmp_path, lambda table: m.tables_equal(parse_rules(table), expected)
    )
    assert m.tables_equal(parse_rules(saved), expected), (
        f"keepalived:\n{saved}\nimport:\n{format_table(expected)}\nconf:\n{text}\nlog:\n{log}"
    )
