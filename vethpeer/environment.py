"""What a run of vethpeer gets from the outside world, handed down from ``main()``.

Streams, the environment variables and the procfs root are passed, never read from
globals deeper down, so tests (and library users) can run any command in-process
against their own streams, variables and a recorded ``/proc`` tree.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TextIO


class Environment:
    """Streams, environment variables and the procfs root of one run (read-only once made).

    A plain class, not a dataclass: it is built on every start-up, `vethpeer --version`
    included, and ``dataclasses`` costs more to import than the rest of that start.
    """

    __slots__ = ("environ", "proc", "stderr", "stdout")

    def __init__(
        self,
        *,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        environ: Mapping[str, str] | None = None,
        proc: str = "/proc",  # the procfs root: processes, their namespaces and cgroups, the mount table
    ) -> None:
        self.stdout: TextIO = stdout if stdout is not None else sys.stdout
        self.stderr: TextIO = stderr if stderr is not None else sys.stderr
        self.environ: Mapping[str, str] = dict(os.environ) if environ is None else environ
        self.proc = proc

    def replace(self, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> Environment:
        """The same environment with other streams (a server's walk warns into a buffer)."""
        return Environment(
            stdout=stdout or self.stdout, stderr=stderr or self.stderr, environ=self.environ, proc=self.proc
        )

    @property
    def stdout_isatty(self) -> bool:
        try:
            return self.stdout.isatty()
        except (AttributeError, ValueError):  # a closed or exotic stream
            return False

    @property
    def color(self) -> bool:
        """Colour only on a terminal; ``NO_COLOR`` present and not empty (no-color.org) or
        ``TERM=dumb`` turn it off. An empty ``NO_COLOR`` does not, as no-color.org says."""
        return self.stdout_isatty and not self.environ.get("NO_COLOR") and self.environ.get("TERM") != "dumb"

    def warn(self, line: str) -> None:
        """A diagnostic line for people: stderr, never mixed with the data on stdout.

        Errors and warnings quote targets the user typed and names from the system (a
        daemon's reply, an interface name): the line is shown as one visible line, whatever
        it holds, and only a traceback under ``--debug`` keeps its lines
        (:func:`vethpeer.render.safe.message`)."""
        from .render.safe import message

        print(message(line), file=self.stderr)
