"""The human tables: a rich one on a terminal, plain aligned columns on a pipe.

Also the notes under a table and `which`'s MAC-table evidence lines. Every cell and line
holds names from the system: :func:`write_columns` and :func:`write_lines` show them through
:func:`.safe.shown`, and rich gets ``Text``, never markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from ..environment import Environment
from ..fdb import classify, row_key
from ..model import End, Relation, Report, Row, Workload, WorkloadKind
from .safe import shown


def _addresses(end: End) -> str:
    return ",".join(a for a in end.link.addresses if not a.startswith("fe80:")) or "-"


def _peer_cell(row: Row) -> str:
    if row.relation is Relation.TAP:
        return "(tap)"  # the other end is the VM's file descriptor, not a device
    if row.peer is not None:
        suffix = "" if row.relation is Relation.VETH else " (parent)"
        return row.peer.link.name + suffix
    if row.unresolved is not None:
        return "?"
    return "-"


def _bridge(row: Row) -> str:
    if row.peer is not None and row.peer.master:
        return row.peer.master
    return row.end.master or "-"


def _state(row: Row) -> str:
    if row.peer is None:
        return row.end.link.operstate
    return f"{row.end.link.operstate}/{row.peer.link.operstate}"


def _workload_cell(w: Workload) -> str:
    if w.kind is WorkloadKind.POD:
        return w.name if w.namespace else w.label  # known only from its cgroup: pod/<uid>
    label = f"docker/{w.name}" if w.kind is WorkloadKind.DOCKER else w.label
    joined = [name for name in w.containers if name != w.name]  # `--network container:NAME`
    return f"{label} (+{', '.join(joined)})" if joined else label


def columns(report: Report, rows: Sequence[Row], wide: bool) -> tuple[list[str], list[list[str]]]:
    pods = any(r.end.workload.kind is WorkloadKind.POD for r in rows)
    only_pods = pods and all(r.end.workload.kind is WorkloadKind.POD for r in rows)
    header = (["NAMESPACE", "POD" if only_pods else "WORKLOAD"] if pods else ["WORKLOAD"]) + [
        "IF",
        "MAC",
        "ADDRESSES",
        "PEER",
        "PEER NETNS",
        "BRIDGE",
        "STATE",
    ]
    if wide:
        header += ["IFINDEX", "PEER IFINDEX", "MTU", "KIND", "NETNS", "FDB"]
    verdicts = classify(report, rows) if wide else {}
    table = []
    for row in rows:
        w = row.end.workload
        cells = ([w.namespace or "-"] if pods else []) + [
            _workload_cell(w),
            row.end.link.name,
            row.end.link.mac or "-",
            _addresses(row.end),
            _peer_cell(row),
            row.peer.workload.label if row.peer is not None else "-",
            _bridge(row),
            _state(row),
        ]
        if wide:
            peer = row.peer.link if row.peer is not None else None
            cells += [
                str(row.end.link.index),
                str(peer.index) if peer else (str(row.end.link.link) if row.end.link.link else "-"),
                str(row.end.link.mtu) + (f"/{peer.mtu}" if peer and peer.mtu != row.end.link.mtu else ""),
                (row.end.link.kind or "-")
                + (f"/{peer.kind}" if peer and peer.kind != row.end.link.kind else ""),
                str(row.end.ns.key.ino),
                verdicts[row_key(row)].cell if row_key(row) in verdicts else "-",
            ]
        table.append(cells)
    return header, table


def notes(report: Report, rows: Sequence[Row], host_network: Sequence[Workload] | None = None) -> list[str]:
    """Lines under the table: host-network workloads (all, or those given), unresolved peers."""
    lines = []
    shared = report.host_network if host_network is None else host_network
    if shared:
        names = ", ".join(w.label for w in shared)
        lines.append(f"sharing the host network namespace (no veth of their own): {names}")
    for row in rows:
        if row.unresolved:
            lines.append(f"{row.end.workload.label} {row.end.link.name}: peer unresolved: {row.unresolved}")
    return lines


def evidence(report: Report, rows: Sequence[Row]) -> list[str]:
    """For `which`: what the bridge's MAC table says about each row (independent of ifindex/iflink)."""
    verdicts = classify(report, rows)
    return [
        f"fdb: {row.end.workload.label} {row.end.link.name}: {verdicts[row_key(row)].evidence()}"
        for row in rows
        if row_key(row) in verdicts
    ]


def write_table(
    report: Report,
    env: Environment,
    rows: Sequence[Row] | None = None,
    *,
    wide: bool = False,
    host_network: Sequence[Workload] | None = None,  # None: all of report.host_network
) -> None:
    rows_shown = report.rows if rows is None else rows
    header, table = columns(report, rows_shown, wide)
    out = env.stdout
    if not table:
        out.write("no interfaces found in any workload namespace\n")
    else:
        write_columns(header, table, env)
    write_lines(notes(report, rows_shown, host_network), env)


def write_lines(lines: Sequence[str], env: Environment) -> None:
    """Lines of text holding names from the system, each shown as one visible line."""
    for line in lines:
        env.stdout.write(shown(line) + "\n")


def write_columns(header: Sequence[str], table: Sequence[Sequence[str]], env: Environment) -> None:
    """Any table of strings: rich on a terminal, plain aligned columns on a pipe; every cell
    shown by :func:`.safe.shown` (names from the system, or from a remote agent)."""
    header = [shown(h) for h in header]
    table = [[shown(c) for c in cells] for cells in table]
    if env.stdout_isatty:
        _rich_table(header, table, env.stdout, color=env.color)
        return
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(header)]
    for cells in [header, *table]:
        env.stdout.write("   ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip() + "\n")


def _rich_table(header: Sequence[str], table: Sequence[Sequence[str]], out: TextIO, *, color: bool) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # Never shorten a name to fit the terminal ("veth1a…" is no answer): the table is as
    # wide as its content needs, and a narrow terminal wraps lines, as with kubectl.
    natural = sum(max(len(h), *(len(r[i]) for r in table)) + 3 for i, h in enumerate(header))
    console = Console(
        file=out, no_color=not color, highlight=False, markup=False, emoji=False, soft_wrap=False
    )
    console.width = max(console.width, natural)
    t = Table(box=box.SIMPLE_HEAD, header_style="bold" if color else "", pad_edge=False)
    for name in header:
        t.add_column(Text(name), no_wrap=True)
    for cells in table:  # Text, not str: a name like "[/]x[link=y]" is no markup
        t.add_row(*(Text(c) for c in cells))
    console.print(t)
