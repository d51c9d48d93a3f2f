"""The commands. Each is a module with the same small interface:

* ``NAME``, ``HELP`` (one line for ``vethpeer --help``), ``DESCRIPTION`` (its own ``--help``);
* ``add_arguments(parser)``: its options (the shared ones come from :mod:`.options`);
* ``run(args, env) -> ExitStatus``: *collect* (one :func:`vethpeer.collect.gather`),
  a *pure step*, *render* (one of :mod:`vethpeer.render`) — nothing else prints data;
* ``LONG_RUNNING``: True for commands that stay (they keep the cyclic GC on).

Modules import only the standard library at the top, so building the parser for
``vethpeer --version`` or a completion stays cheap; the engine is imported in ``run``.
"""

from __future__ import annotations

import argparse
import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Protocol, cast

if TYPE_CHECKING:
    from ..environment import Environment
    from ..errors import ExitStatus

NAMES = (
    "table",
    "which",
    "history",
    "annotate",
    "doctor",
    "graph",
    "capture",
    "top",
    "watch",
    "serve",
    "completion",
)
DEFAULT = "table"


class Command(Protocol):
    NAME: str
    HELP: str
    DESCRIPTION: str
    LONG_RUNNING: bool

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace, env: Environment) -> ExitStatus: ...


def load(name: str) -> Command:
    module: ModuleType = importlib.import_module(f"{__name__}.{name}")
    return cast(Command, module)
