"""The state of `top`'s live screen and what each key does to it: pure, no terminal here.

Keys: ``s`` next sort order, ``r`` RX, ``t`` TX, ``d`` drops, ``n`` name, ``/`` type a
filter (Enter keeps it, Esc clears it), ``p`` or space pause, ``q`` quit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from .rates import Rates, sort

SORT_ORDER = ("total", "rx", "tx", "drops", "name")
SORT_KEYS = {"r": "rx", "t": "tx", "d": "drops", "n": "name"}
HELP = "s sort  r/t/d/n rx/tx/drops/name  / filter  p pause  q quit"


@dataclass(frozen=True, slots=True)
class View:
    sort: str = "total"
    filter: str = ""
    editing: bool = False  # typing a filter
    paused: bool = False
    quit: bool = False


def press(view: View, key: str) -> View:
    """The view after one key (a character, or "enter", "escape", "backspace")."""
    if view.editing:
        if key == "enter":
            return replace(view, editing=False)
        if key == "escape":
            return replace(view, editing=False, filter="")
        if key == "backspace":
            return replace(view, filter=view.filter[:-1])
        if len(key) == 1 and key.isprintable():
            return replace(view, filter=view.filter + key)
        return view
    if key in ("q", "Q"):
        return replace(view, quit=True)
    if key == "/":
        return replace(view, editing=True, filter="")
    if key == "escape":
        return replace(view, filter="")
    if key in ("p", " "):
        return replace(view, paused=not view.paused)
    if key == "s":
        return replace(view, sort=SORT_ORDER[(SORT_ORDER.index(view.sort) + 1) % len(SORT_ORDER)])
    if key in SORT_KEYS:
        return replace(view, sort=SORT_KEYS[key])
    return view


def matches(r: Rates, text: str) -> bool:
    """The filter: a case-insensitive substring of the workload, its interface or the host device."""
    if not text:
        return True
    peer = r.row.peer
    haystack = [r.row.end.workload.label, r.row.end.link.name]
    if peer is not None:
        haystack += [peer.link.name, peer.master or ""]
    needle = text.lower()
    return any(needle in item.lower() for item in haystack)


def shown(found: Sequence[Rates], view: View) -> list[Rates]:
    return sort([r for r in found if matches(r, view.filter)], view.sort)
