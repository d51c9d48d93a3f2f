"""Running Graphviz's ``dot`` for the layout (SVG, PNG): the one place this command forks.

``dot`` is looked up on PATH, then at /usr/bin/dot and /usr/local/bin/dot (root's PATH
under sudo may lack it). Missing, it is a :class:`~vethpeer.errors.MissingProgram`
(exit 8) naming the Debian package; a failing ``dot`` is a VethpeerError with its
first line of stderr.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping

from ..errors import MissingProgram, VethpeerError

PACKAGE = "graphviz"
FALLBACKS = ("/usr/bin/dot", "/usr/local/bin/dot")
TIMEOUT = 120.0


def find_dot(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    override = env.get("VETHPEER_DOT")
    if override is not None:
        if os.access(override, os.X_OK):
            return override
        raise MissingProgram(
            f"VETHPEER_DOT={override} is not an executable",
            hint=f"install Graphviz: apt-get install {PACKAGE}",
        )
    found = shutil.which("dot", path=env.get("PATH")) or next(
        (p for p in FALLBACKS if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise MissingProgram(
            "this output format needs Graphviz's `dot`, which is not installed",
            hint=f"apt-get install {PACKAGE}, or use -o dot / -o mermaid / -o json",
        )
    return found


def layout(dot_text: str, fmt: str, environ: Mapping[str, str] | None = None) -> bytes:
    """``dot -T<fmt>`` of the DOT text: the laid-out picture's bytes."""
    program = find_dot(environ)
    try:
        done = subprocess.run(
            [program, f"-T{fmt}"],
            input=dot_text.encode("utf-8", errors="replace"),
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise VethpeerError(f"Graphviz's dot took more than {TIMEOUT:g} s", hint="try --collapse") from None
    except OSError as error:
        raise MissingProgram(
            f"cannot run {program}: {error.strerror}", hint=f"apt-get install {PACKAGE}"
        ) from None
    if done.returncode != 0:
        first = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[0]
        raise VethpeerError(f"Graphviz's dot failed (exit {done.returncode}): {first}")
    return done.stdout
