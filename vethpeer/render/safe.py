"""Strings from the system made safe to show: the one place text output neutralises them.

Names of interfaces, namespaces, containers, pods and processes are chosen by whoever made
them, an unprivileged user included (``unshare -rn`` and ``ip link add``, ``prctl``), and a
remote agent's documents are no better. Shown raw, ``ESC ] 0 ; ... BEL`` would set root's
terminal title, ``ESC [ 2 J`` clear the screen, a newline fake a row or split a completion
candidate. So every string that reaches text output (tables, ``which``, ``doctor``, ``watch``,
``top``, messages on stderr, completion candidates) passes through :func:`shown` first:

* a printable character other than ``\\`` is itself;
* ``\\`` is ``\\\\``, so an escape in the output always means an escape;
* C0 controls (tab and newline too: a name is one line) and DEL are ``\\xNN``;
* a byte that is not UTF-8 (read with ``surrogateescape``, U+DC80..U+DCFF) is ``\\xNN``,
  the byte itself, never an exception on output;
* anything else that is not printable (C1 controls, other lone surrogates, format and
  separator characters such as U+200B or U+2028) is ``\\uNNNN`` or ``\\UNNNNNNNN``.

The mapping is one-to-one (two different names never look the same) and its escapes are
bash's ``$'...'`` ones: ``which $'hq\\x1b[2Jx'`` names the interface shown as ``hq\\x1b[2Jx``.
What comes out is printable, so rich gets it as a ``Text`` (never markup) and any stream can
encode it. JSON output does not come here: it keeps the exact strings (docs/json.md).

Command lines for people (doctor's confirm and fix lines) are quoted by :mod:`vethpeer.shell`
into exact shell words; :func:`command_line` only neutralises what is left, keeping their
backslashes as the shell needs them.
"""

from __future__ import annotations

_SURROGATE_BYTES = range(0xDC80, 0xDD00)  # what surrogateescape makes of bytes 0x80..0xff
_TRACEBACK = "\nTraceback (most recent call last):\n"  # how traceback.format_exc() begins


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    if code in _SURROGATE_BYTES:
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _neutralise(text: str, backslash: bool) -> str:
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\" if backslash else char)
        elif char.isprintable():
            out.append(char)
        else:
            out.append(_escape(char))
    return "".join(out)


def shown(text: str) -> str:
    """``text`` as one visible line: control characters, undecodable bytes and ``\\`` escaped."""
    if text.isprintable() and "\\" not in text:  # the usual case, in C
        return text
    return _neutralise(text, backslash=True)


def command_line(text: str) -> str:
    """A shell command line, its backslashes kept: only what is not printable is escaped.

    The names in it are already exact shell words (:func:`vethpeer.shell.quote`); this is
    the guard for a line built elsewhere (a remote agent's fix line).
    """
    if text.isprintable():
        return text
    return _neutralise(text, backslash=False)


def message(text: str) -> str:
    """A line for stderr: shown as one line, except a Python traceback appended to it after a
    newline (``serve --debug`` logs a bug's so), whose lines stay lines, each shown."""
    head, marker, trace = text.partition(_TRACEBACK)
    if not marker:
        return shown(text)
    return "\n".join([shown(head), *(shown(line) for line in (marker[1:] + trace).split("\n"))])
