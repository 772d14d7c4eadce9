#!/usr/bin/env python3
"""Generate the man pages hadirector(8) and hadirector.toml(5) from README.md and the CLI.

tools/build-deb runs this at package build time, so the pages never drift from the README:
hadirector.toml(5) is the README's configuration reference (between ``<!-- config:start -->``
and ``<!-- config:end -->``); hadirector(8) is the README's opening, the subcommands and
options read from the CLI's own argument parser, and the README's sections on failover,
logs and signals, operations and security. Standard library only (runs with any python3 >= 3.11;
the CLI's parser imports nothing beyond it).

The Markdown it converts is the README's own subset: headings, paragraphs, ``-`` lists
(one level, continuation lines indented), fenced code blocks, pipe tables (each row becomes
a tagged paragraph: the first cell is the tag, the others follow as ``header: value``),
inline code and bold. Anything outside ASCII is written as a groff ``\\[uXXXX]`` escape.

    python3 tools/manpages.py OUTDIR [--version V] [--date YYYY-MM-DD]
"""

from __future__ import annotations

import argparse
import datetime
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG_START = "<!-- config:start -->"
CONFIG_END = "<!-- config:end -->"
#: README sections (level-2 headings) that go into hadirector(8), in this order.
SECTIONS_8 = (
    "How a failover works",
    "Logs, notify scripts, signals",
    "Operations: status, reload, metrics",
    "Security",
)
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_ITEM = re.compile(r"^(\s*)- (.*)$")


# --- inline text ---------------------------------------------------------------------------


def escape(text: str, *, code: bool = False) -> str:
    """Text as roff: backslashes escaped, non-ASCII as \\[uXXXX]; in code, '-' is a minus."""
    out = []
    for char in text:
        if char == "\\":
            out.append("\\e")
        elif code and char == "-":
            out.append("\\-")
        elif ord(char) > 127:
            out.append(f"\\[u{ord(char):04X}]")
        else:
            out.append(char)
    return "".join(out)


def inline(text: str) -> str:
    """Markdown inline markup (`code`, **bold**) as roff fonts; the rest escaped."""
    out = []
    for index, part in enumerate(text.split("`")):
        if index % 2:
            out.append("\\fB" + escape(part, code=True) + "\\fR")
        else:
            pieces = part.split("**")
            out.append(
                "".join(
                    ("\\fB" + escape(p) + "\\fR") if i % 2 else escape(p)
                    for i, p in enumerate(pieces)
                )
            )
    return "".join(out)


def _line(text: str) -> str:
    """One output line; a leading '.' or "'" would be read as a request."""
    return "\\&" + text if text.startswith((".", "'")) else text


def split_row(line: str) -> list[str]:
    """The cells of a Markdown table row; a '|' inside `code` does not split."""
    cells, current, in_code = [], [], False
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") else body
    for char in body:
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code:
            cells.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    cells.append("".join(current).strip())
    return cells


# --- blocks --------------------------------------------------------------------------------


def markdown_to_roff(markdown: str, *, top_level: int) -> list[str]:
    """Markdown blocks as man(7) requests. Headings of level <= top_level become .SH."""
    lines = markdown.splitlines()
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.strip()
        if not stripped or stripped == "---" or stripped.startswith("<!--"):
            index += 1
            continue
        heading = _HEADING.match(line)
        if heading:
            level, title = len(heading.group(1)), heading.group(2).strip()
            out.append((".SH " if level <= top_level else ".SS ") + _quote(inline(title)))
            index += 1
            continue
        if stripped.startswith("```"):
            indent = len(line) - len(line.lstrip())
            index += 1
            out += [".PP", ".RS 4", ".nf"]
            while index < len(lines) and not lines[index].strip().startswith("```"):
                out.append(_line(escape(lines[index][indent:], code=True)))
                index += 1
            out += [".fi", ".RE"]
            index += 1
            continue
        if stripped.startswith("|"):
            rows = []
            while index < len(lines) and lines[index].strip().startswith("|"):
                rows.append(split_row(lines[index]))
                index += 1
            out += _table(rows)
            continue
        item = _ITEM.match(line)
        if item:
            indent = len(item.group(1))
            words = [item.group(2)]
            index += 1
            while index < len(lines):
                nxt = lines[index]
                if not nxt.strip() or _ITEM.match(nxt) or len(nxt) - len(nxt.lstrip()) <= indent:
                    break
                if nxt.strip().startswith(("```", "|")):
                    break
                words.append(nxt.strip())
                index += 1
            out += [".IP \\(bu 2", _line(inline(" ".join(words)))]
            continue
        words = []
        while index < len(lines):
            nxt = lines[index]
            if not nxt.strip() or _HEADING.match(nxt) or _ITEM.match(nxt):
                break
            if nxt.strip().startswith(("```", "|", "<!--")):
                break
            words.append(nxt.strip())
            index += 1
        out += [".PP", _line(inline(" ".join(words)))]
    return out


def _table(rows: list[list[str]]) -> list[str]:
    """A pipe table as tagged paragraphs: the first cell tags, 'header: value' for the rest."""
    header, body = rows[0], [r for r in rows[2:] if any(r)]
    out = [".PP"]
    for row in body:
        out += [".TP", _line(inline(row[0]) or "\\&")]
        parts = []
        for name, cell in zip(header[1:], row[1:], strict=False):
            if cell:
                parts.append(f"{inline(name)}: {inline(cell)}" if name else inline(cell))
        for number, part in enumerate(parts):
            if number:
                out.append(".br")
            out.append(_line(part))
    return out


def _quote(text: str) -> str:
    return '"' + text.replace('"', "\\(dq") + '"'


# --- README pieces -------------------------------------------------------------------------


def config_reference(readme: str) -> str:
    """The configuration reference: the README between its config markers."""
    start, end = readme.index(CONFIG_START), readme.index(CONFIG_END)
    return readme[start + len(CONFIG_START) : end]


def section(readme: str, title: str) -> str:
    """A level-2 section of the README (its body, without the heading)."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", readme, re.M | re.S)
    if match is None:
        raise ValueError(f"README.md has no section '## {title}'")
    return match.group(1)


def opening(readme: str) -> str:
    """The README's first paragraph after the title."""
    body = readme.split("\n## ", 1)[0]
    paragraphs = [p for p in body.split("\n\n") if p.strip() and not p.startswith("# ")]
    return paragraphs[0]


# --- pages ---------------------------------------------------------------------------------


def _header(name: str, number: int, title: str, version: str, date: str, manual: str) -> list[str]:
    return [
        f'.\\" Generated by tools/manpages.py from README.md (hadirector {version}); do not edit.',
        f'.TH {name.upper()} {number} "{date}" "hadirector {version}" "{manual}"',
        ".SH NAME",
        f"{escape(name)} \\- {escape(title)}",
    ]


def page_config(readme: str, version: str, date: str) -> str:
    """hadirector.toml(5)."""
    out = _header(
        "hadirector.toml", 5, "configuration file of hadirector", version, date, "File Formats"
    )
    out += [".SH SYNOPSIS", "/etc/hadirector/hadirector.toml", ".SH DESCRIPTION"]
    out += markdown_to_roff(config_reference(readme), top_level=3)
    out += [
        ".SH FILES",
        ".TP",
        "/etc/hadirector/hadirector.toml",
        "the configuration (an example, commented, as installed)",
        ".TP",
        "/usr/share/doc/hadirector/examples/",
        "a pair of directors: director-a.toml and director-b.toml",
        ".SH SEE ALSO",
        ".BR hadirector (8),",
        ".BR ipvsadm (8),",
        ".BR keepalived.conf (5)",
    ]
    return "\n".join(out) + "\n"


def page_agent(readme: str, parser: argparse.ArgumentParser, version: str, date: str) -> str:
    """hadirector(8)."""
    description = parser.description or "hadirector"
    out = _header("hadirector", 8, description, version, date, "System Administration")
    commands = _subcommands(parser)
    out.append(".SH SYNOPSIS")
    out += [f"{_line(escape(_usage(p), code=True))}\n.br" for _, p, _ in commands]
    out += [".SH DESCRIPTION", ".PP", _line(inline(" ".join(opening(readme).split())))]
    out.append(".SH COMMANDS")
    for name, sub, help_text in commands:
        out += [".TP", f"\\fB{escape(name, code=True)}\\fR", _line(escape(help_text))]
        for action in sub._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            flags = ", ".join(escape(s, code=True) for s in action.option_strings)
            text = escape(action.help or "")
            if action.choices:
                text = (
                    (text + "; " if text else "") + "one of " + ", ".join(map(str, action.choices))
                )
            out += [".RS", ".TP", f"\\fB{flags}\\fR", _line(text or "\\&"), ".RE"]
        for action in sub._actions:
            if not action.option_strings and action.help and not action.choices:
                out += [
                    ".RS",
                    ".TP",
                    f"\\fI{escape(action.dest)}\\fR",
                    _line(escape(action.help)),
                    ".RE",
                ]
    for title in SECTIONS_8:
        out.append(".SH " + _quote(inline(title).upper()))
        out += markdown_to_roff(section(readme, title), top_level=2)
    out += [
        ".SH FILES",
        ".TP",
        "/etc/hadirector/hadirector.toml",
        "the configuration, see \\fBhadirector.toml\\fR(5)",
        ".TP",
        "/run/hadirector/hadirector.sock",
        "the control socket (\\fBhadirector status\\fR, \\fBhadirector reload\\fR)",
        ".TP",
        "/lib/systemd/system/hadirector.service",
        "the systemd unit (Type=notify, watchdog, reload by SIGHUP)",
        ".TP",
        "/usr/share/doc/hadirector/README.md",
        "the whole documentation",
        ".SH SEE ALSO",
        ".BR hadirector.toml (5),",
        ".BR ipvsadm (8),",
        ".BR keepalived (8),",
        ".BR systemctl (1)",
    ]
    return "\n".join(out) + "\n"


def _subcommands(
    parser: argparse.ArgumentParser, prefix: str = ""
) -> list[tuple[str, argparse.ArgumentParser, str]]:
    """(name, parser, help) of every leaf subcommand, 'ipvs save' style for nested ones."""
    found: list[tuple[str, argparse.ArgumentParser, str]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                full = f"{prefix}{name}"
                nested = _subcommands(sub, full + " ")
                found += nested or [(full, sub, helps.get(name, ""))]
    return found


def _usage(parser: argparse.ArgumentParser) -> str:
    return " ".join(parser.format_usage().removeprefix("usage:").split())


def cli_parser() -> argparse.ArgumentParser:
    sys.path.insert(0, str(REPO))
    from hadirector import cli

    return cli._parser()


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("outdir", type=Path)
    args.add_argument("--version", default=None, help="default: hadirector.__version__")
    args.add_argument("--date", default=datetime.date.today().isoformat())
    opts = args.parse_args(argv)
    readme = (REPO / "README.md").read_text()
    parser = cli_parser()
    if opts.version is None:
        from hadirector import __version__

        opts.version = __version__
    opts.outdir.mkdir(parents=True, exist_ok=True)
    (opts.outdir / "hadirector.8").write_text(page_agent(readme, parser, opts.version, opts.date))
    (opts.outdir / "hadirector.toml.5").write_text(page_config(readme, opts.version, opts.date))
    return 0


if __name__ == "__main__":
    sys.exit(main())
