"""What a run of vethpeer gets from the outside world, handed down from ``main()``.

Streams, the environment variables and the procfs root are passed, never read from
globals deeper down, so tests (and library users) can run any command in-process
against their own streams, variables and a recorded ``/proc`` tree.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TextIO


def _process_environ() -> Mapping[str, str]:
    return dict(os.environ)


@dataclass(frozen=True, slots=True, kw_only=True)
class Environment:
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    environ: Mapping[str, str] = field(default_factory=_process_environ)
    proc: str = "/proc"  # the procfs root: processes, their namespaces and cgroups, the mount table

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
        """A diagnostic line for people: stderr, never mixed with the data on stdout."""
        print(line, file=self.stderr)
