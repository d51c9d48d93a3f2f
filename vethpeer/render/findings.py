"""Doctor's findings for people (text) and for programs (the JSON document)."""

from __future__ import annotations

from typing import Any

from ..checks import Diagnosis, Finding, Severity
from ..environment import Environment
from ..model import End, Report
from . import json as jsonrender
from .safe import command_line, shown


def finding_json(f: Finding) -> dict[str, object]:
    def where(end: End) -> dict[str, object]:
        return {
            "workload": end.workload.label,
            "netns": {"inode": end.ns.key.ino, "dev": end.ns.key.dev, "names": list(end.ns.netns_names)},
            "ifname": end.link.name,
            "ifindex": end.link.index,
        }

    return {
        "check": f.check,
        "severity": f.severity.value,
        "interface": where(f.end),
        "peer": where(f.peer) if f.peer is not None else None,
        "message": f.message,
        "evidence": list(f.evidence),
        "confirm": list(f.confirm),
        "fix": list(f.fix),
    }


def summary(d: Diagnosis) -> str:
    counts = {s: sum(1 for f in d.findings if f.severity is s) for s in Severity}
    checked = f"checked {d.interfaces} interfaces in {d.namespaces} workload namespaces"
    if not d.findings:
        return f"no findings ({checked})"
    parts = ", ".join(
        f"{n} {s.value}{'s' if n != 1 and s is not Severity.INFO else ''}" for s, n in counts.items()
    )
    return f"{len(d.findings)} findings: {parts} ({checked})"


def document(report: Report, diagnosis: Diagnosis) -> dict[str, Any]:
    """The `doctor` JSON document: every finding, whatever its severity."""
    return {
        **jsonrender.header(report),
        "checked": {"interfaces": diagnosis.interfaces, "namespaces": diagnosis.namespaces},
        "not_checked": list(diagnosis.skipped),
        "findings": [finding_json(f) for f in diagnosis.findings],
        "summary": summary(diagnosis),
    }


def _write_finding(f: Finding, env: Environment) -> None:
    """Names shown by :func:`.safe.shown`; confirm and fix lines are shell command lines whose
    words :mod:`vethpeer.shell` already quoted, so only :func:`.safe.command_line` guards them."""
    stream = env.stdout
    stream.write(f"{f.severity.value.upper():8} {f.check}  {shown(f.subject)}\n")
    stream.write(f"    {shown(f.message)}\n")
    for line in f.evidence:
        stream.write(f"    evidence: {shown(line)}\n")
    for line in f.confirm:
        stream.write(f"    confirm:  {command_line(line)}\n")
    for line in f.fix:
        stream.write(f"    fix:      {command_line(line)}\n")
    stream.write("\n")


def write_text(d: Diagnosis, env: Environment, *, show_info: bool = False) -> None:
    """Findings at warning level and above (all of them with ``show_info``), then the summary."""
    hidden = 0
    for f in d.findings:
        if f.severity is Severity.INFO and not show_info:
            hidden += 1
            continue
        _write_finding(f, env)
    for line in d.skipped:
        env.stdout.write(f"not checked: {shown(line)}\n")
    if hidden:
        env.stdout.write(f"{hidden} info finding{'s' if hidden != 1 else ''} not shown (--all to show)\n")
    env.stdout.write(summary(d) + "\n")
