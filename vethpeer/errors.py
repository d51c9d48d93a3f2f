"""Exit codes and the domain errors that map to them.

Every failure the user can cause or meet is one of these; ``cli.main`` is the one
place where they become a line on stderr and an exit code.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """vethpeer's exit codes (documented in docs/cli.md)."""

    SUCCESS = 0
    ERROR = 1  # anything unexpected
    USAGE = 2  # bad command line
    NOT_FOUND = 3  # `which` found nothing for the target
    AMBIGUOUS = 4  # the target matches more than one workload
    NO_PRIVILEGE = 5  # not allowed to enter namespaces / read /proc
    FINDINGS = 6  # `doctor` found problems at warning level or above
    SOURCE_FAILED = 7  # --strict and a source (docker, cri, ...) did not answer
    MISSING_PROGRAM = 8  # a program an output format needs is not installed (`graph -o svg`: Graphviz)
    GONE = 9  # `which`: the target is not on the host now; its last binding, from the journal, is shown
    INTERRUPTED = 130  # Ctrl-C


class VethpeerError(Exception):
    """An error with a message for the user and an exit status."""

    status = ExitStatus.ERROR

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class UsageError(VethpeerError):
    status = ExitStatus.USAGE


class NotFound(VethpeerError):
    status = ExitStatus.NOT_FOUND


class Ambiguous(VethpeerError):
    status = ExitStatus.AMBIGUOUS

    def __init__(self, message: str, candidates: list[str]) -> None:
        super().__init__(message, hint="candidates: " + ", ".join(candidates))
        self.candidates = candidates


class NoPrivilege(VethpeerError):
    status = ExitStatus.NO_PRIVILEGE


class SourceFailed(VethpeerError):
    status = ExitStatus.SOURCE_FAILED


class MissingProgram(VethpeerError):
    status = ExitStatus.MISSING_PROGRAM


class NamespaceGone(VethpeerError):
    """A namespace vanished between discovery and reading: a race to tolerate."""
