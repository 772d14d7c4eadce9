"""Errors split by fault.

- ``ConfigError``: the operator's configuration is wrong. Carries every problem found at
  once, each with its key path (``vrrp_instance[0].priority: must be 1..255, got 300``).
- ``DecodeError``: a peer sent bytes we cannot accept. Counted, logged (rate-limited) and
  dropped by the caller; it never changes state.
- ``KernelError``: the kernel refused an operation; the message names the object.
- ``IpvsUnavailable``: the running kernel has no IPVS (module missing).

Anything else escaping is our own bug. This module must not import anything but the
standard library.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One configuration problem: where (dotted key path) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class HadirectorError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(HadirectorError):
    """The configuration is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = [Problem("", problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class DecodeError(HadirectorError):
    """A packet from the wire is malformed or not for us; ``reason`` is a short tag."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class KernelError(HadirectorError):
    """The kernel refused an operation on a named object."""


class IpvsUnavailable(KernelError):
    """This kernel has no IPVS support (CONFIG_IP_VS unset or the module cannot load)."""
