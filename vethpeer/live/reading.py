"""Reading the live model from a command's own thread (`top`, `watch`): its first report,
counters read after a given moment, and the model's failure as the command's error.

The model's thread does every read; a command only asks and waits. What stopped the
model (no privilege, ``--strict`` and a source that did not answer, a bug) is raised
here, on the command's thread, so that the command exits as documented.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .model import LiveModel, State

POLL = 1.0  # seconds between looks at whether the model failed while waiting for it
STOPPED = "vethpeer: the live model stopped: "  # what the model logs when its thread stops


def log_to(warn: Callable[[str], None]) -> Callable[[str], None]:
    """The model's log for a command: every line but the one saying why it stopped, which the
    command raises instead (:func:`check`), so that the reason is said once, on one line."""

    def log(line: str) -> None:
        if not line.startswith(STOPPED):
            warn(line)

    return log


def check(model: LiveModel) -> None:
    """Raise what stopped the model's thread, if it stopped."""
    failure = model.failure()
    if failure is not None:
        raise failure


def first(model: LiveModel) -> State:
    """The model's first report (its full walk), however long that takes."""
    while True:
        state = model.wait(POLL)
        check(model)
        if state is not None:
            return state


def fresh(state: State, asked: float) -> bool:
    """Whether every namespace's counters in ``state`` were read at ``asked`` or later."""
    return bool(state.read) and min(state.read.values()) >= asked


def counters(model: LiveModel, timeout: float) -> State | None:
    """A report whose counters were all read after now (None: not within ``timeout`` s).

    The model reads them when asked (:meth:`LiveModel.refresh`); a report it publishes
    meanwhile for another reason (namespaces came or went) may not have them all, and
    is passed over, the model asked again.
    """
    state = model.latest()  # before asking: the answer may come before we look again
    generation = state.generation if state is not None else 0
    asked = time.monotonic()
    deadline = asked + timeout
    model.refresh()
    while True:
        left = deadline - time.monotonic()
        state = model.newer(generation, min(POLL, max(0.0, left)))
        check(model)
        if state is not None:
            if fresh(state, asked):
                return state
            generation = state.generation
            model.refresh()  # the model may have read the namespaces that changed only
        elif left <= 0:
            return None
