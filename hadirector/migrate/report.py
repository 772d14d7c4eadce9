"""Findings of a conversion: where, what happened, what to do.

A finding is ``dropped`` (the construct is not in the output), ``changed`` (converted, but
it means something else in the target) or ``note`` (converted as is; said for information,
e.g. a keepalived default written out). ``dropped`` and ``changed`` make the command exit 3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["dropped", "changed", "note"]

EXIT_OK = 0
EXIT_SYNTAX = 1
EXIT_DROPPED = 3


@dataclass(frozen=True)
class Where:
    """A place in a source file (``line`` counts from 1; 0: the file as a whole)."""

    file: str
    line: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True)
class Finding:
    where: Where
    kind: Kind
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.kind}: {self.message}"


class SyntaxProblem(Exception):
    """A source that cannot be read as a whole: ``file:line:column: message``."""

    def __init__(self, file: str, line: int, column: int, message: str) -> None:
        self.file, self.line, self.column, self.message = file, line, column, message
        super().__init__(f"{file}:{line}:{column}: {message}")


class Findings:
    """The findings of one conversion, in the order they were made (deduplicated)."""

    def __init__(self) -> None:
        self.items: list[Finding] = []
        self._seen: set[Finding] = set()

    def add(self, where: Where, kind: Kind, message: str) -> None:
        finding = Finding(where, kind, message)
        if finding not in self._seen:
            self._seen.add(finding)
            self.items.append(finding)

    def dropped(self, where: Where, message: str) -> None:
        self.add(where, "dropped", message)

    def changed(self, where: Where, message: str) -> None:
        self.add(where, "changed", message)

    def note(self, where: Where, message: str) -> None:
        self.add(where, "note", message)

    @property
    def exit_code(self) -> int:
        return EXIT_DROPPED if any(f.kind != "note" for f in self.items) else EXIT_OK

    def text(self) -> str:
        return "".join(f"{f}\n" for f in self.items)
