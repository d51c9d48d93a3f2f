"""`vethpeer watch [TARGET]`: veth and namespace events as they happen, one line each."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..environment import Environment
from ..errors import ExitStatus
from . import options

if TYPE_CHECKING:
    from ..live.changes import Event

NAME = "watch"
HELP = "stream veth and namespace events as they happen (--json: JSON Lines)"
DESCRIPTION = (
    "Print one line per event, as it happens: a workload namespace appeared or went away; a veth "
    "created, deleted, moved, up/down, carrier on/off, enslaved to or released from a bridge; an "
    "address added or removed; an MTU changed. Each line names the workload and the peer as `which` "
    "does. --json prints JSON Lines (schema in docs/live.md). TARGET keeps the events whose workload, "
    "interface or peer it names."
)
LONG_RUNNING = True
QUEUED = 1024  # batches of events waiting for stdout


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target", metavar="TARGET", nargs="?", help="a workload, netns, interface or peer name"
    )
    options.add_output(parser, formats=("text", "json"))


def concerns(event: Event, target: str | None, namespace: str | None) -> bool:
    """Whether the event is about TARGET (a name, label, ID prefix, netns or interface name)."""
    from ..targets import in_scope

    w = event.workload
    if not in_scope(w, namespace):
        return False
    if not target:
        return True
    names = {w.name, w.label, *w.containers}
    if event.row is not None:
        names |= {event.row.end.link.name, *event.row.end.ns.netns_names}
        if event.row.peer is not None:
            names |= {event.row.peer.link.name, event.row.peer.workload.label}
    ids = [i for i in (w.id, *w.container_ids) if i]
    return target in names or (len(target) >= 4 and any(i.startswith(target) for i in ids))


def run(args: argparse.Namespace, env: Environment) -> ExitStatus:
    import queue
    import threading
    from dataclasses import replace

    from ..live.model import LiveModel
    from ..live.reading import POLL, check, first, log_to
    from ..render import OutputFormat
    from ..render import event_lines as eventrender

    as_json = OutputFormat(args.output) is OutputFormat.JSON
    request = replace(options.request(args), ovs=False)
    # The live model computes the events between its reports (on its own thread); they are
    # printed here, so a closed pipe or Ctrl-C ends the command as it always did.
    model = LiveModel(request, env, log_to(env.warn), changes=True, gap=0.0)
    # Bounded: a stdout that does not drain holds the model back (its socket then overflows and
    # a resync marks what it finds), rather than memory growing; ``done`` lets the model go.
    found: queue.Queue[list[Event]] = queue.Queue(maxsize=QUEUED)
    done = threading.Event()

    def deliver(events: list[Event]) -> None:
        while not done.is_set():
            try:
                found.put(events, timeout=POLL)
                return
            except queue.Full:
                continue

    model.subscribe_changes(deliver)
    model.start()
    try:
        first(model)
        env.warn("watching (Ctrl-C to stop)")
        while True:
            try:
                events = found.get(timeout=POLL)
            except queue.Empty:
                check(model)
                continue
            chosen = [e for e in events if concerns(e, args.target, args.namespace)]
            if chosen:
                eventrender.write(chosen, as_json, env.stdout)
    finally:
        done.set()
        model.stop()
