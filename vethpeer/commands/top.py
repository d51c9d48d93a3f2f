"""`vethpeer top [TARGET]`: traffic, drops and errors per workload interface, live or once."""

from __future__ import annotations

import argparse
import os
import select
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..environment import Environment
from ..errors import ExitStatus
from . import options

if TYPE_CHECKING:
    from ..collect import Request
    from ..live.model import LiveModel, State
    from ..live.rates import Rates, Sample
    from ..model import Report

NAME = "top"
HELP = "live traffic, drops and errors per workload interface (--once for scripts)"
DESCRIPTION = (
    "A full-screen view, refreshed every -d seconds: one row per workload interface with its "
    "host-side device, rx/tx bytes and packets per second, and drops and errors per second on "
    "both ends. Directions are the workload's: RX is what the workload received (its host-side "
    "device's TX). Keys: s sort, r/t/d/n sort by rx/tx/drops/name, / filter, p pause, q quit. "
    "--once prints one sample over -d seconds (default 2) and exits."
)
LONG_RUNNING = True
WAIT = 30.0  # seconds the live model may take to read the counters before --once gives up


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET", nargs="?", help="only this (anything `which` accepts)")
    parser.add_argument(
        "-d", "--delay", type=options.positive_seconds, metavar="SECONDS", default=None, help="interval"
    )
    parser.add_argument("--once", action="store_true", help="one sample over the interval, printed once")
    parser.add_argument("--sort", choices=("total", "rx", "tx", "drops", "name"), default="total")
    options.add_output(parser, formats=("table", "json"))


def _request(args: argparse.Namespace) -> Request:
    from dataclasses import replace

    return replace(options.request(args), stats=True, ovs=False)


def select_rows(
    found: Sequence[Rates], report: Report, args: argparse.Namespace, env: Environment
) -> list[Rates]:
    """TARGET's interfaces (resolved like `which`, again each round), or the rows -n keeps."""
    from ..targets import resolve, scoped

    if args.target:
        rows = resolve(report, args.target, namespace=args.namespace, proc=env.proc).rows
    else:
        rows = scoped(report, args.namespace).rows
    keys = {(r.end.ns.key, r.end.link.index) for r in rows}
    return [r for r in found if (r.row.end.ns.key, r.row.end.link.index) in keys]


def sampled(state: State) -> Sample:
    """The counters of a report the live model published, each namespace at its own read time."""
    from ..live.rates import sample

    return sample(state.report, state.read_at, state.read)


def counted(model: LiveModel, timeout: float) -> State:
    """A report whose counters were all read from now on; the model's failure, or a clear error."""
    from ..errors import VethpeerError
    from ..live.reading import counters

    state = counters(model, timeout)
    if state is None:
        raise VethpeerError(f"the live model read no counters within {timeout:g} s")
    return state


def measure(model: LiveModel, older: Sample, timeout: float) -> tuple[Report, Sample, list[Rates]] | None:
    """One refresh: counters read from now on, and the rates since ``older`` (None: the model
    read none within ``timeout`` s)."""
    from ..live.rates import rates
    from ..live.reading import counters

    state = counters(model, timeout)
    if state is None:
        return None
    newer = sampled(state)
    return state.report, newer, rates(state.report.rows, older, newer)


def live_model(request: Request, env: Environment, *, addresses: bool) -> LiveModel:
    """The engine `top` runs on (and `benchmarks/bench_live.py` measures): the live model keeps
    the links (names, peers, bridges) current from the kernel's events, and each refresh asks it
    for the counters (RTM_GETSTATS), each namespace's read time kept. Its looks are not spaced
    out (``gap=0``): a refresh asked while events arrive would wait for the spacing."""
    from ..live.model import LiveModel
    from ..live.reading import log_to

    return LiveModel(request, env, log_to(env.warn), addresses=addresses, gap=0.0)


def run(args: argparse.Namespace, env: Environment) -> ExitStatus:
    from ..live.reading import first

    seconds = args.delay if args.delay is not None else (2.0 if args.once else 1.0)
    model = live_model(_request(args), env, addresses=bool(args.target))
    model.start()
    try:
        first(model)
        if args.once or not env.stdout_isatty or args.output == "json":
            return _once(model, args, env, seconds)
        return _live(model, args, env, seconds)
    finally:
        model.stop()


def _once(model: LiveModel, args: argparse.Namespace, env: Environment, seconds: float) -> ExitStatus:
    from ..live.rates import rates, sort
    from ..render import OutputFormat
    from ..render import json as jsonrender
    from ..render import top_screen as toprender

    first = sampled(counted(model, WAIT))  # the counters alone, read quickly (a rate needs a sharp time)
    time.sleep(max(0.0, first.at + seconds - time.monotonic()))
    state = counted(model, WAIT)
    report, newer = state.report, sampled(state)
    found = rates(report.rows, first, newer)
    chosen = sort(select_rows(found, report, args, env), args.sort)
    elapsed = newer.at - first.at
    if OutputFormat(args.output) is OutputFormat.JSON:
        jsonrender.write(toprender.document(report, chosen, round(elapsed, 3)), env)
    else:
        toprender.write_once(chosen, round(elapsed, 2), env)
    return ExitStatus.SUCCESS


@contextmanager
def _keyboard(fd: int) -> Iterator[bool]:
    """The terminal in cbreak mode (keys arrive one by one, unechoed); restored on the way out."""
    import termios
    import tty

    try:
        saved = termios.tcgetattr(fd)
    except termios.error:
        yield False
        return
    tty.setcbreak(fd)
    try:
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


_NAMED = {"\r": "enter", "\n": "enter", "\x1b": "escape", "\x7f": "backspace", "\x08": "backspace"}


def _keys(fd: int, timeout: float) -> list[str]:
    """Keys typed within ``timeout`` seconds (none: the timeout passed)."""
    ready, _, _ = select.select([fd], [], [], max(0.0, timeout))
    if not ready:
        return []
    data = os.read(fd, 64).decode("utf-8", "replace")
    if data.startswith("\x1b["):  # arrows and the like: ignored
        return []
    return [_NAMED.get(c, c) for c in data]


def _live(model: LiveModel, args: argparse.Namespace, env: Environment, seconds: float) -> ExitStatus:
    import sys

    from rich.console import Console
    from rich.live import Live

    from ..errors import VethpeerError
    from ..live.view import HELP as KEYS
    from ..live.view import View, press, shown
    from ..render import top_screen as toprender

    view = View(sort=args.sort)
    console = Console(file=env.stdout, no_color=not env.color, highlight=False, markup=False, emoji=False)
    older = sampled(counted(model, WAIT))
    found: list[Rates] = []
    status = "measuring..."
    stdin = sys.stdin.fileno()
    with _keyboard(stdin) as has_keys, Live(console=console, screen=True, auto_refresh=False) as live:
        due = time.monotonic() + seconds
        while not view.quit:
            line = f"filter: {view.filter}_" if view.editing else (KEYS if has_keys else "Ctrl-C quits")
            state = (
                ("PAUSED — " if view.paused else "")
                + status
                + (f" — filter '{view.filter}'" if view.filter else "")
            )
            page = toprender.screen(
                shown(found, view), seconds, f"sort {view.sort} — {state}", line, console.height
            )
            live.update(page, refresh=True)
            keys = _keys(stdin, due - time.monotonic()) if has_keys else []
            if not has_keys:
                time.sleep(max(0.0, due - time.monotonic()))
            for key in keys:
                view = press(view, key)
            if time.monotonic() < due:
                continue
            due += seconds
            measured = measure(model, older, seconds)
            if measured is None:  # the model is busy (a full walk): the figures stay, and say so
                status = "waiting for the live model..."
                continue
            report, older, fresh = measured
            if not view.paused:
                try:
                    found = select_rows(fresh, report, args, env)
                    status = f"{len(found)} interfaces"
                except VethpeerError as error:
                    found, status = [], str(error)
    return ExitStatus.SUCCESS
