"""What one walk of `serve` is: the report (links with counters, MAC tables) and the doctor's diagnosis.

:func:`walk` is the one place the engine is called, so a repeatable walker (sockets
kept open between rounds) can replace ``gather`` without touching the server.
With ``serve -n NS`` the report is cut to Kubernetes namespace NS right after the walk
(:func:`vethpeer.targets.scoped`): the checks, /metrics and the API only ever see NS.
"""

from __future__ import annotations

import io
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..checks import Diagnosis
from ..collect import Inflight, Request, gather
from ..environment import Environment
from ..model import Report, SourceState, SourceStatus
from ..targets import scoped


def walk(request: Request, env: Environment) -> Report:
    """One full walk. The swap point: keep every caller going through here."""
    return gather(request, env)


@dataclass(frozen=True, slots=True)
class Observation:
    """One walk's report, and the doctor's diagnosis.

    Until the checks have run on this report (``diagnosed``), ``diagnosis`` is the previous
    walk's, so finding series do not blink out between a walk and its checks.
    """

    report: Report
    diagnosis: Diagnosis | None = None
    diagnosed: bool = False
    diagnosis_error: str | None = None  # why the doctor checks could not run on this walk


def source_changes(before: dict[str, SourceStatus], after: tuple[SourceStatus, ...]) -> list[str]:
    """Log lines for sources whose state changed (a daemon that went away, or came back)."""
    lines = []
    for status in after:
        old = before.get(status.name)
        if old is None and status.state in (SourceState.OK, SourceState.SKIPPED, SourceState.UNAVAILABLE):
            continue
        if old is None or old.state is not status.state:
            detail = f" ({status.detail})" if status.detail else ""
            lines.append(f"vethpeer serve: source {status.name}: {status.state.value}{detail}")
    return lines


class Walker:
    """Callable for :class:`~vethpeer.agent.cache.WalkCache`: walk; :meth:`diagnose` is its ``then``.

    gather() warns on stderr about every failing source on every walk; a server walks
    every few seconds, so those go to a scratch stream and only changes are logged.
    ``namespace`` (``serve -n``): keep only that Kubernetes namespace's rows and workloads.
    """

    def __init__(
        self,
        request: Request,
        env: Environment,
        log: Callable[[str], None],
        walk_call: Callable[[Request, Environment], Report] = walk,
        *,
        namespace: str | None = None,
        observe: Callable[[Report, float], None] | None = None,
    ) -> None:
        # a source still hung from an earlier walk is reported, not started again (collect.Inflight)
        self._request = request if request.inflight is not None else replace(request, inflight=Inflight())
        self._env = env
        self._log = log
        self._walk = walk_call
        self._namespace = namespace
        self._sources: dict[str, SourceStatus] = {}
        self._diagnosis: Diagnosis | None = None  # the latest, carried into the next walk's result
        self._observe = observe  # the journal's recorder (cheap: a diff, no I/O)

    def __call__(self) -> Observation:
        report = self._walk(self._request, self._env.replace(stderr=io.StringIO()))
        for line in source_changes(self._sources, report.sources):
            self._log(line)
        self._sources = {s.name: s for s in report.sources}
        report = scoped(report, self._namespace)
        if self._observe is not None:
            try:
                self._observe(report, time.time())
            except Exception as error:  # the journal's bug must not cost the answer
                self._log(f"vethpeer serve: the journal's recorder failed: {type(error).__name__}: {error}")
        return Observation(report, self._diagnosis)

    def diagnose(self, observation: Observation) -> Observation:
        """The doctor's checks on the walk's report (the second step, see WalkCache's ``then``)."""
        from ..diagnosis import diagnose

        try:
            diagnosis = diagnose(observation.report, None, None, self._env.proc)
        except Exception as error:  # the checks' bug must not cost the interface metrics
            detail = f"{type(error).__name__}: {error}"
            if self._request.debug:
                detail += "\n" + traceback.format_exc()
            self._log(f"vethpeer serve: the doctor's checks failed: {detail}")
            self._diagnosis = None
            return replace(observation, diagnosis=None, diagnosed=True, diagnosis_error=detail)
        self._diagnosis = diagnosis
        return replace(observation, diagnosis=diagnosis, diagnosed=True)
