"""One place that runs everything: discover, walk the kernel, ask the sources, correlate.

The sources (daemons, sockets) run in daemon threads while this thread walks the
kernel, so a slow daemon costs at most its timeout, and a hung one never keeps
the process alive: its thread is abandoned and its status says ``timeout``.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import replace

from .correlate import correlate
from .model import Report, SourceResult, SourceState, SourceStatus
from .netns import discover
from .sources import Context, Options, Source, all_sources
from .walk import peer_namespace, snapshot

GRACE = 0.5  # seconds a source may overrun its own timeout before it is abandoned


def _run(source: Source, context: Context, debug: bool) -> SourceResult:
    try:
        return source.collect(context)
    except Exception as error:  # a bug in a source must not cost the whole answer
        detail = f"{type(error).__name__}: {error}"
        if debug:
            detail += "\n" + traceback.format_exc()
        return SourceResult(SourceStatus(source.name, SourceState.ERROR, detail))


class _Worker(threading.Thread):
    def __init__(self, source: Source, context: Context, debug: bool) -> None:
        super().__init__(name=f"vethpeer-{source.name}", daemon=True)
        self.source, self.context, self.debug = source, context, debug
        self.result: SourceResult | None = None

    def run(self) -> None:
        self.result = _run(self.source, self.context, self.debug)


def gather(
    options: Options | None = None,
    *,
    fdb: bool = False,
    sources: list[Source] | None = None,
    debug: bool = False,
    host_ifname: str | None = None,
) -> Report:
    """Everything, or with ``host_ifname`` only the host and that link's peer namespace.

    The focused walk is for `which vethXXXX`; if the peer cannot be located quickly
    it falls back to the full walk.
    """
    options = options or Options()
    discovery = discover()
    walked, host_links = discovery, None
    if host_ifname is not None:
        peer = peer_namespace(discovery, host_ifname)
        if peer is not None:
            keep = {discovery.host, peer}
            walked = replace(discovery, namespaces=tuple(ns for ns in discovery.namespaces if ns.key in keep))
            host_links = (host_ifname,)
    context = Context(discovery.host, discovery.namespaces, options)
    chosen = all_sources() if sources is None else sources
    inline = [s for s in chosen if s.name == "kernel"]  # cheap: no thread
    workers = [_Worker(s, context, debug) for s in chosen if s.name != "kernel"]
    for worker in workers:
        worker.start()
    snap = snapshot(walked, fdb=fdb, host_links=host_links)
    results = [_run(s, context, debug) for s in inline]
    deadline = time.monotonic() + options.timeout + GRACE
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.result is None:
            worker.result = SourceResult(
                SourceStatus(
                    worker.source.name, SourceState.TIMEOUT, f"no answer within {options.timeout:g} s"
                )
            )
        results.append(worker.result)
    return correlate(snap, results)
