"""Times: what a person types (``--at``, ``--since``) and what a log line starts with. Pure.

:func:`parse_when` reads RFC 3339 (``2026-12-04T03:12:00Z``), a relative time before now
(``-2h``, ``90m``, ``1d12h``, ``30s``) and Unix time (``1764818000``). :func:`line_time` reads the
time a log line carries: dmesg's ``[seconds.micros]`` since boot (plus the boot time), ``dmesg -T``,
journalctl's ``short``, ``short-precise`` and ``short-iso``, syslog (RFC 3164 and 5424) and
RFC 3339. Times without a zone are local, as the tools that print them mean them.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RELATIVE = re.compile(r"^-?((?:\d+(?:\.\d+)?[smhdw])+)$")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIX = re.compile(r"^\d{9,11}(?:\.\d+)?$")
MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


def _iso(text: str) -> float | None:
    """RFC 3339 / ISO 8601 with a date and a time (``T`` or a space); a zone of ``Z``, ``+01:00`` or
    ``+0100``; none means local time."""
    text = text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    zone = re.search(r"([+-])(\d{2})(\d{2})$", text)
    if zone and text[-5] in "+-" and ":" not in text[-5:]:
        text = text[:-4] + zone.group(2) + ":" + zone.group(3)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if len(text) < 16:  # a date alone is not a moment
        return None
    return (
        moment.timestamp()
        if moment.tzinfo is not None
        else time.mktime(moment.timetuple()) + moment.microsecond / 1e6
    )


def parse_when(text: str, now: float) -> float:
    """A moment the user names, as Unix time; ValueError with a short reason otherwise."""
    text = text.strip()
    if text == "now":
        return now
    relative = _RELATIVE.match(text)
    if relative:
        return now - sum(float(n) * _UNITS[u] for n, u in _PART.findall(relative.group(1)))
    if _UNIX.match(text):
        return float(text)
    moment = _iso(text)
    if moment is None:
        raise ValueError(
            f"not a time: {text!r} (RFC 3339 such as 2026-12-04T03:12:00Z, -2h, 90m, or Unix time)"
        )
    return moment


# -- the time at the start of a log line ------------------------------------------------------
_DMESG = re.compile(rb"^\[\s*(\d+)\.(\d+)\]")
_DMESG_T = re.compile(rb"^\[(?:\w{3} )?(\w{3}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) (\d{4})\]")
_ISO = re.compile(
    rb"^(?:<\d{1,3}>1 )?(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|z|[+-]\d{2}:?\d{2})?)"
)
_SYSLOG = re.compile(rb"^(?:<\d{1,3}>)?(\w{3}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2})(\.\d+)?\s")


def _local(year: int, month: int, day: int, hms: tuple[int, int, int], fraction: float = 0.0) -> float | None:
    try:
        return time.mktime((year, month, day, *hms, 0, 0, -1)) + fraction
    except (OverflowError, ValueError):
        return None


def _wall(fields: tuple[bytes, ...], year: int, fraction: float = 0.0) -> float | None:
    """Local time from (month name, day, hours, minutes, seconds) as a regex matched them."""
    month = MONTHS.get(fields[0].decode("ascii", "replace"))
    if month is None:
        return None
    day, hours, minutes, seconds = (int(f) for f in fields[1:5])
    return _local(year, month, day, (hours, minutes, seconds), fraction)


def line_time(line: bytes, boot: float, now: float) -> float | None:
    """The Unix time a log line starts with, None if it carries none that is understood.

    ``boot`` is the boot time (for dmesg's seconds since boot); ``now`` settles the year of
    syslog's and journalctl's ``short`` lines, which have none (a time that would be more
    than a day ahead is last year's)."""
    head = line[:48]
    m = _DMESG.match(head)
    if m:
        return boot + int(m.group(1)) + float(b"0." + m.group(2))
    m = _ISO.match(head)
    if m:
        return _iso(m.group(1).decode("ascii").replace(",", "."))
    m = _DMESG_T.match(head)
    if m:
        return _wall(m.groups()[:5], int(m.group(6)))
    m = _SYSLOG.match(head)
    if m:
        fraction = float(m.group(6)) if m.group(6) else 0.0
        year = time.localtime(now).tm_year
        moment = _wall(m.groups()[:5], year, fraction)
        if moment is not None and moment > now + 86400:
            moment = _wall(m.groups()[:5], year - 1, fraction)
        return moment
    return None


def boot_time() -> float:
    """When this machine booted, as ``dmesg -T`` computes it (now less CLOCK_BOOTTIME)."""
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


def rfc3339(moment: float) -> str:
    """Unix time as RFC 3339 in UTC, to the millisecond: ``2026-12-04T03:12:00.123Z``."""
    text = datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")
