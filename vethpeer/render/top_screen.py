"""`vethpeer top`'s output: the table of rates (plain or rich), the JSON document, the sort orders.

Directions are the workload's point of view: RX is what the workload received, which
its host-side device transmitted. ``PEER DROP/s`` and ``PEER ERR/s`` are the host-side
device's own counters (rx + tx), as ``ip -s link show vethXXXX`` prints them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..environment import Environment
from ..live.rates import Delta, Rates, totals
from ..model import Report
from . import json as jsonrender
from .safe import shown
from .tables import write_columns

DIRECTIONS = "rx/tx as the workload sees them: RX = received by the workload = sent by its host-side device"
HEADER = ["WORKLOAD", "IF", "HOST DEV", "RX/s", "TX/s", "RX pkt/s", "TX pkt/s", "DROP/s", "ERR/s"]
HEADER += ["PEER DROP/s", "PEER ERR/s"]


def human_bytes(value: float) -> str:
    """Bytes per second with SI prefixes, as iftop and iperf3 print them (but in bytes, not bits)."""
    for unit in ("B", "kB", "MB", "GB"):
        if value < 999.5:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def _count(value: float) -> str:
    if value == 0:
        return "0"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def host_device(r: Rates) -> str:
    peer = r.row.peer
    if peer is None:
        return "-"
    return peer.link.name + (f" ({peer.master})" if peer.master else "")


def cells(r: Rates) -> list[str]:
    end = r.row.end
    head = [end.workload.label, end.link.name, host_device(r)]
    if r.own is None:
        return head + ["new"] + ["-"] * 7
    own, peer = r.own, r.peer
    return [
        *head,
        human_bytes(own.bytes.rx),
        human_bytes(own.bytes.tx),
        _count(own.packets.rx),
        _count(own.packets.tx),
        _count(own.dropped.total),
        _count(own.errors.total),
        _count(peer.dropped.total) if peer else "-",
        _count(peer.errors.total) if peer else "-",
    ]


def total_cells(found: Sequence[Rates]) -> list[str]:
    t = totals(found)
    peer_drops = sum(r.peer.dropped.total for r in found if r.peer is not None)
    peer_errors = sum(r.peer.errors.total for r in found if r.peer is not None)
    return [f"total ({len(found)})", "", "", human_bytes(t.bytes.rx), human_bytes(t.bytes.tx)] + [
        _count(v)
        for v in (t.packets.rx, t.packets.tx, t.dropped.total, t.errors.total, peer_drops, peer_errors)
    ]


def write_once(found: Sequence[Rates], seconds: float, env: Environment) -> None:
    """`top --once`: the header line, the table and the totals."""
    env.stdout.write(f"over {seconds:g} s; {DIRECTIONS}\n")
    if not found:
        env.stdout.write("no workload interfaces\n")
        return
    write_columns(HEADER, [cells(r) for r in found] + [total_cells(found)], env)


# ---------------------------------------------------------------- JSON


def _pair(value: Any) -> dict[str, float]:
    return {"rx": round(value.rx, 3), "tx": round(value.tx, 3)}


def delta_json(d: Delta | None) -> dict[str, Any] | None:
    if d is None:
        return None
    return {
        "bytes_per_s": _pair(d.bytes),
        "packets_per_s": _pair(d.packets),
        "dropped_per_s": _pair(d.dropped),
        "errors_per_s": _pair(d.errors),
        "reset": d.reset,
    }


def rates_json(r: Rates) -> dict[str, Any]:
    end, peer = r.row.end, r.row.peer
    return {
        "workload": jsonrender.workload_json(end.workload),
        "netns": {"inode": end.ns.key.ino, "dev": end.ns.key.dev, "names": list(end.ns.netns_names)},
        "ifname": end.link.name,
        "ifindex": end.link.index,
        "peer": None
        if peer is None
        else {
            "workload": peer.workload.label,
            "ifname": peer.link.name,
            "ifindex": peer.link.index,
            "master": peer.master,
        },
        "new": r.new,
        "rates": delta_json(r.own),
        "peer_rates": delta_json(r.peer),
    }


def document(report: Report, found: Sequence[Rates], seconds: float) -> dict[str, Any]:
    """The `top --once --json` document (docs/live.md)."""
    return {
        **jsonrender.header(report),
        "interval_s": seconds,
        "directions": "workload",
        "interfaces": [rates_json(r) for r in found],
        "totals": delta_json(totals(found)),
    }


# ---------------------------------------------------------------- the live screen


def aligned(header: Sequence[str], table: Sequence[Sequence[str]], right_from: int = 3) -> list[str]:
    """Columns padded to their widest cell; numbers (from column ``right_from``) right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in table)) if table else len(h) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i >= right_from else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(cells) for cells in [header, *table]]


def screen(found: Sequence[Rates], seconds: float, status: str, help_line: str, height: int = 0) -> Any:
    """The live screen as a rich renderable: status line, the table with its totals, the keys.

    With ``height`` (the terminal's lines), only the rows that fit are rendered (the totals
    still count them all). The table is laid out here as plain lines: a rich Table costs
    about 4 ms per row to measure and render, too much to redraw every second.
    """
    from rich.console import Group
    from rich.text import Text

    room = max(1, height - 7) if height else len(found)
    if len(found) > room:
        status += f" — {room} of {len(found)} shown"
    table = [[shown(c) for c in cells(r)] for r in found[:room]]  # names: visible, one line each
    lines = aligned(HEADER, [*table, total_cells(found)] if found else [])
    head, body = lines[0], lines[1:]
    return Group(
        Text(f"vethpeer top — every {seconds:g} s — {shown(status)}", style="bold"),
        Text(DIRECTIONS),
        Text(head, style="bold reverse"),
        Text("\n".join(body[:-1]), no_wrap=True, overflow="crop") if len(body) > 1 else Text(""),
        Text(body[-1] if body else "no workload interfaces", style="bold"),
        Text(shown(help_line), style="reverse"),
    )
