"""Where the tools the tests drive are: found where the install put them, not assumed on PATH.

``scripts/install --test`` puts Debian's tools in ``/usr/sbin``, ``/usr/bin``, ``/sbin``
and ``/bin``, and the Python ones (``protoc-gen-mypy``, ...) in the scripts folder of the
virtual environment whose interpreter runs the tests. Neither has to be on the ``PATH`` of
the shell that started pytest: a fresh shell or CI (``env -i PATH=/usr/sbin:/usr/bin:...``)
does not have the venv on it, and an ordinary user's ``PATH`` on Debian lacks ``/usr/sbin``.

:func:`search_path` is the folder list the test session runs with (tests/conftest.py puts it
in ``os.environ["PATH"]``, so the labs' commands and the daemons they start, which look up
their own helpers such as ``runc`` and ``containerd-shim-runc-v2`` on ``PATH``, find them).
The venv's folder is not added to it (its ``python3`` would shadow Debian's); Python tools are
looked up there by :func:`find_tool` with ``python_tool=True``.
"""

from __future__ import annotations

import os
import sys
import sysconfig

# Where Debian's packages install programs, in the order a root login shell searches them.
SYSTEM_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


def interpreter_scripts_dirs() -> tuple[str, ...]:
    """The running interpreter's scripts folder (the venv's ``bin``), then the folder it lies in."""
    found = [sysconfig.get_path("scripts"), os.path.dirname(sys.executable)]
    return tuple(dict.fromkeys(d for d in found if d))


def search_path(inherited: str | None = None) -> str:
    """``inherited`` (default: the current PATH), then the system folders it lacks."""
    current = os.environ.get("PATH", "") if inherited is None else inherited
    dirs = [d for d in current.split(os.pathsep) if d]
    dirs += SYSTEM_DIRS
    return os.pathsep.join(dict.fromkeys(dirs))


def find_tool(name: str, *, python_tool: bool = False) -> str | None:
    """Absolute path of the executable ``name``, or None.

    ``python_tool``: a console script of a Python package (``protoc-gen-mypy``): the running
    interpreter's own scripts folder comes first, so the tool matches the interpreter.
    """
    first = interpreter_scripts_dirs() if python_tool else ()
    dirs = [*first, *search_path().split(os.pathsep)]
    for folder in dict.fromkeys(dirs):
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None
