"""keepalived.conf as a tree of statements (keepalived.conf(5)'s grammar).

What is read, in keepalived's order, line by line:

- comments: ``#`` or ``!`` to the end of the line, anywhere outside double quotes;
- conditional lines: ``@ID rest`` keeps ``rest`` only when ID is the config id,
  ``@^ID rest`` only when it is not (the config id defaults to the host name's first part);
- parameters: ``$NAME=value`` defines, ``$NAME`` (followed by white space or the end of the
  line) and ``${NAME}`` are replaced, recursively, at use; undefined ones stay as written;
  a value ending in ``\\`` goes on over the following lines (a multi-line definition,
  whose use expands to several lines, each read again); ``${_PWD}``, ``${_INSTANCE}``,
  ``${_HASH}``, ``${_BANG}`` and ``${_RANDOM [MIN [MAX]]}`` are predefined;
- ``~SEQ(var, start, step, end) rest`` (and ``~SEQx`` in hexadecimal) repeats ``rest``;
- ``include FILE`` (and includer/includem/includew/includeb/includea): FILE may be a glob,
  relative to the including file's directory;
- statements: words (a ``"double quoted"`` string is one word) ending at the end of the
  line, or at ``{`` which opens a block of statements up to its ``}``; a ``{`` alone on a
  line opens the block of the statement before it.

Every statement keeps the file and line it came from. A syntax error (unbalanced braces,
an unterminated quote, a parameter that expands forever) raises ``SyntaxProblem`` with
``file:line:column``; a missing include is a finding, as keepalived goes on without it.

Pure: files are read through a ``Source`` (``files.DiskSource`` reads the disk).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from hadirector.migrate.report import Findings, SyntaxProblem, Where

INCLUDE_WORDS = ("include", "includer", "includem", "includew", "includeb", "includea")
MAX_INCLUDE_DEPTH = 32
MAX_EXPANSIONS = 10000  # parameter replacements in one line, against self-reference loops


class Source(Protocol):
    """Where included files come from."""

    def read(self, path: str) -> str:
        """The file's text; raises OSError."""
        ...

    def glob(self, pattern: str) -> list[str]:
        """Paths matching a glob pattern (may be empty)."""
        ...


@dataclass(frozen=True)
class Node:
    """One statement: its words (``words[0]`` is the keyword) and its block, if any."""

    words: tuple[str, ...]
    where: Where
    column: int = 1
    block: tuple[Node, ...] | None = None

    @property
    def keyword(self) -> str:
        return self.words[0]

    @property
    def args(self) -> tuple[str, ...]:
        return self.words[1:]

    def children(self) -> tuple[Node, ...]:
        return self.block or ()


@dataclass
class _Line:
    text: str
    where: Where


@dataclass
class _State:
    config_id: str
    source: Source
    findings: Findings
    params: dict[str, str] = field(default_factory=dict)
    out: list[_Line] = field(default_factory=list)
    open_files: list[str] = field(default_factory=list)


def strip_comment(text: str) -> str:
    """The line without its comment (``#`` or ``!`` outside double quotes)."""
    quoted = False
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "#!":
            return text[:i]
    return text


_COND = re.compile(r"^(\s*)@(\^?)(\S*)(\s|$)")
_DEF = re.compile(r"^\s*\$([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_PARAM = re.compile(
    r"\$\{([A-Za-z_][A-Za-z0-9_]*)((?:\s+[^}]*)?)\}|\$([A-Za-z_][A-Za-z0-9_]*)(?=\s|$)"
)
_SEQ = re.compile(r"^\s*~SEQ(x?)\(([^)]*)\)(.*)$")


def _conditional(text: str, config_id: str) -> str | None:
    """The line with its ``@ID`` prefix blanked out, or None when it does not apply."""
    m = _COND.match(text)
    if m is None:
        return text
    negative, ident = m.group(2) == "^", m.group(3)
    if (ident == config_id) == negative:
        return None
    return " " * m.end(3) + text[m.end(3) :]


def _substitute(line: str, state: _State, where: Where, directory: str) -> str:
    count = 0

    def value(name: str, extra: str) -> str | None:
        if name == "_PWD":
            return directory
        if name == "_INSTANCE":
            return state.config_id
        if name == "_HASH":
            return "#"
        if name == "_BANG":
            return "!"
        if name == "_RANDOM":
            numbers = extra.split()
            low = int(numbers[0]) if numbers and numbers[0].isdigit() else 0
            state.findings.changed(
                where,
                f"${{_RANDOM}} is a random number in keepalived; written as {low}, its "
                "lowest value (the conversion is deterministic): put the value you want",
            )
            return str(low)
        return state.params.get(name)

    while True:
        changed = False

        def replace(m: re.Match[str]) -> str:
            nonlocal changed, count
            name = m.group(1) or m.group(3)
            got = value(name, m.group(2) or "")
            if got is None:
                return m.group(0)
            changed = True
            count += 1
            if count > MAX_EXPANSIONS:
                raise SyntaxProblem(
                    where.file, where.line, m.start() + 1, f"${name} expands without end"
                )
            return got

        line = _PARAM.sub(replace, line)
        if not changed:
            return line


def _seq_values(spec: str, where: Where, column: int) -> tuple[str, list[int]]:
    parts = [p.strip() for p in spec.split(",")]
    try:
        var, numbers = parts[0], [int(p, 0) for p in parts[1:]]
    except (ValueError, IndexError):
        raise SyntaxProblem(where.file, where.line, column, f"bad ~SEQ({spec})") from None
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", var) or not 1 <= len(numbers) <= 3:
        raise SyntaxProblem(where.file, where.line, column, f"bad ~SEQ({spec})")
    if len(numbers) == 1:
        end = numbers[0]
        start = 1 if end > 0 else -1
        step = 1 if end >= start else -1
    elif len(numbers) == 2:
        start, end = numbers
        step = 1 if end >= start else -1
    else:
        start, step, end = numbers
    if step == 0 or abs((end - start) // step) > 100000:
        raise SyntaxProblem(where.file, where.line, column, f"bad ~SEQ({spec})")
    values = []
    v = start
    while (step > 0 and v <= end) or (step < 0 and v >= end):
        values.append(v)
        v += step
    return var, values


def _process_line(
    text: str, where: Where, state: _State, directory: str, lines: Iterator[tuple[str, int]]
) -> None:
    """One physical (or expanded) line: conditional, definition, substitution, include."""
    kept = _conditional(strip_comment(text), state.config_id)
    if kept is None:
        return
    m = _DEF.match(kept)
    if m is not None:
        name, value = m.group(1), m.group(2).strip()
        if value.endswith("\\"):
            parts = [value[:-1].strip()] if value[:-1].strip() else []
            for raw, _ in lines:
                more = strip_comment(raw).rstrip()
                if more.endswith("\\"):
                    parts.append(more[:-1])
                else:
                    parts.append(more)
                    break
            value = "\n".join(parts)
        state.params[name] = value
        return
    seq = _SEQ.match(kept)
    if seq is not None:
        var, values = _seq_values(seq.group(2), where, kept.index("~") + 1)
        saved = state.params.get(var)
        for v in values:
            state.params[var] = format(v, "x") if seq.group(1) else str(v)
            _process_line(seq.group(3), where, state, directory, iter(()))
        if saved is None:
            state.params.pop(var, None)
        else:
            state.params[var] = saved
        return
    expanded = _substitute(kept, state, where, directory)
    if "\n" in expanded:
        for piece in expanded.split("\n"):
            _process_line(piece, where, state, directory, iter(()))
        return
    words = expanded.split()
    if words and words[0] in INCLUDE_WORDS:
        _include(words[1:], where, state, directory)
        return
    state.out.append(_Line(expanded, where))


def _include(args: list[str], where: Where, state: _State, directory: str) -> None:
    if not args:
        state.findings.dropped(where, "include without a file name: nothing included")
        return
    for pattern in args:
        pattern = pattern.strip('"')
        full = pattern if pattern.startswith("/") else posixpath.join(directory, pattern)
        wild = any(ch in pattern for ch in "*?[{")
        matches = (
            sorted({m for alt in expand_braces(full) for m in state.source.glob(alt)})
            if wild
            else [full]
        )
        if not matches:
            state.findings.note(where, f"include {pattern}: no file matches; nothing included")
        for path in matches:
            if len(state.open_files) >= MAX_INCLUDE_DEPTH or path in state.open_files:
                state.findings.dropped(
                    where, f"include {path}: included from itself (a loop); not read again"
                )
                continue
            read_file(path, state, where)


def expand_braces(pattern: str) -> list[str]:
    """csh-style ``{a,b}`` alternatives, nested, in order (``glob()`` with GLOB_BRACE)."""
    depth, start = 0, -1
    for i, ch in enumerate(pattern):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                inner, alts, level, begin = pattern[start + 1 : i], [], 0, 0
                for j, c in enumerate(inner):
                    if c == "{":
                        level += 1
                    elif c == "}":
                        level -= 1
                    elif c == "," and level == 0:
                        alts.append(inner[begin:j])
                        begin = j + 1
                alts.append(inner[begin:])
                if len(alts) == 1:
                    continue
                head, tail = pattern[:start], pattern[i + 1 :]
                return [r for alt in alts for r in expand_braces(head + alt + tail)]
    return [pattern]


def read_file(path: str, state: _State, included_from: Where | None = None) -> None:
    try:
        text = state.source.read(path)
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        if included_from is None:
            raise SyntaxProblem(path, 0, 0, f"cannot read: {reason}") from None
        state.findings.dropped(
            included_from,
            f"include {path}: cannot read ({reason}); its configuration is missing from the "
            "output: fix the path or copy what it held",
        )
        return
    state.open_files.append(path)
    directory = posixpath.dirname(path) or "."
    numbered = iter([(raw, n) for n, raw in enumerate(text.splitlines(), 1)])
    for raw, n in numbered:
        _process_line(raw, Where(path, n), state, directory, _lines_only(numbered))
    state.open_files.pop()


def _lines_only(numbered: Iterator[tuple[str, int]]) -> Iterator[tuple[str, int]]:
    return numbered


# --- tokens and the tree -----------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # "word", "{", "}", "eol"
    text: str
    where: Where
    column: int


def _tokens(lines: list[_Line]) -> Iterator[_Token]:
    for line in lines:
        text, i = line.text, 0
        while i < len(text):
            ch = text[i]
            if ch.isspace():
                i += 1
            elif ch in "{}":
                yield _Token(ch, ch, line.where, i + 1)
                i += 1
            elif ch == '"':
                end = text.find('"', i + 1)
                if end < 0:
                    raise SyntaxProblem(
                        line.where.file, line.where.line, i + 1, "unterminated quoted string"
                    )
                yield _Token("word", text[i + 1 : end], line.where, i + 1)
                i = end + 1
            else:
                start = i
                while i < len(text) and not text[i].isspace() and text[i] not in '{}"':
                    i += 1
                yield _Token("word", text[start:i], line.where, start + 1)
        yield _Token("eol", "", line.where, len(text) + 1)


class _Parser:
    def __init__(self, tokens: Iterator[_Token]) -> None:
        self.tokens = list(tokens)
        self.pos = 0

    def block(self, opener: _Token | None) -> tuple[Node, ...]:
        nodes: list[Node] = []
        while self.pos < len(self.tokens):
            tok = self.tokens[self.pos]
            self.pos += 1
            if tok.kind == "eol":
                continue
            if tok.kind == "}":
                if opener is None:
                    raise SyntaxProblem(
                        tok.where.file, tok.where.line, tok.column, "'}' without a matching '{'"
                    )
                return tuple(nodes)
            if tok.kind == "{":
                if not nodes or nodes[-1].block is not None:
                    raise SyntaxProblem(
                        tok.where.file,
                        tok.where.line,
                        tok.column,
                        "'{' without a keyword before it",
                    )
                last = nodes.pop()
                nodes.append(Node(last.words, last.where, last.column, self.block(tok)))
                continue
            words = [tok.text]
            while self.pos < len(self.tokens) and self.tokens[self.pos].kind == "word":
                words.append(self.tokens[self.pos].text)
                self.pos += 1
            block = None
            if self.pos < len(self.tokens) and self.tokens[self.pos].kind == "{":
                opening = self.tokens[self.pos]
                self.pos += 1
                block = self.block(opening)
            nodes.append(Node(tuple(words), tok.where, tok.column, block))
        if opener is not None:
            raise SyntaxProblem(
                opener.where.file, opener.where.line, opener.column, "'{' is never closed"
            )
        return tuple(nodes)


def parse(path: str, source: Source, config_id: str, findings: Findings) -> tuple[Node, ...]:
    """The statements of ``path`` (includes read), or SyntaxProblem."""
    state = _State(config_id=config_id, source=source, findings=findings)
    read_file(path, state)
    return _Parser(_tokens(state.out)).block(None)


class TextSource:
    """A Source over texts held in memory (tests, stdin): path -> text."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files

    def read(self, path: str) -> str:
        path = posixpath.normpath(path)
        for name, text in self.files.items():
            if posixpath.normpath(name) == path:
                return text
        raise FileNotFoundError(2, "No such file or directory", path)

    def glob(self, pattern: str) -> list[str]:
        import fnmatch

        pattern = posixpath.normpath(pattern)
        return sorted(
            posixpath.normpath(n)
            for n in self.files
            if fnmatch.fnmatchcase(posixpath.normpath(n), pattern)
        )
