"""``hadirector import keepalived`` and ``hadirector export keepalived``: the I/O around the
pure converters (reading files, the host name, stdout and stderr, the exit status)."""

from __future__ import annotations

import socket
import sys

from hadirector.migrate import kaconf
from hadirector.migrate.files import STDIN, DiskSource
from hadirector.migrate.from_keepalived import convert
from hadirector.migrate.report import EXIT_SYNTAX, Findings, SyntaxProblem


def default_config_id() -> str:
    """keepalived's default config id: the first part of the node name."""
    return socket.gethostname().split(".")[0]


def import_keepalived(path: str, config_id: str | None = None) -> int:
    stdin_text = sys.stdin.read() if path == "-" else None
    if path == "-":
        path = STDIN  # includes are relative to the current directory
    findings = Findings()
    try:
        nodes = kaconf.parse(
            path, DiskSource(stdin_text), config_id or default_config_id(), findings
        )
    except SyntaxProblem as exc:
        sys.stderr.write(findings.text())
        print(f"{exc}", file=sys.stderr)
        return EXIT_SYNTAX
    text = convert(nodes, findings, path)
    sys.stdout.write(text)
    sys.stderr.write(findings.text())
    return findings.exit_code


def export_keepalived(path: str) -> int:
    from hadirector.errors import ConfigError
    from hadirector.migrate.to_keepalived import export_path

    findings = Findings()
    try:
        text = export_path(path, findings)
    except OSError as exc:
        print(f"{path}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_SYNTAX
    except ConfigError as exc:
        print(f"{path}: invalid configuration ({len(exc.problems)} problem(s)):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_SYNTAX
    sys.stdout.write(text)
    sys.stderr.write(findings.text())
    return findings.exit_code
