"""Names are data, never terminal commands: the sanitiser (vethpeer/render/safe.py), the shell
quoting of command lines, and every text renderer on rows whose names hold control bytes, bytes
that are not UTF-8 and rich markup. JSON keeps the exact strings."""

from __future__ import annotations

import io
import json
import random
import re
import subprocess
from datetime import datetime, timezone

import pytest

from vethpeer import cli, shell
from vethpeer.checks import Diagnosis, Finding, Severity
from vethpeer.drawing import text as graphtext
from vethpeer.environment import Environment
from vethpeer.kubectl import render as kubectlrender
from vethpeer.kubectl.fanout import NodeAnswer
from vethpeer.live.changes import Event, subject
from vethpeer.live.rates import Rates
from vethpeer.model import Claim, Report, Workload, WorkloadKind
from vethpeer.netlink_wire import cstr
from vethpeer.render import event_lines, findings, top_screen
from vethpeer.render import json as jsonrender
from vethpeer.render import tables as tablerender
from vethpeer.render.safe import command_line, message, shown

from .builders import HOST, Topo, answered

TITLE = "\x1b]0;own\x07"  # sets the terminal's title
CLEAR = "hq\x1b[2Jx"  # clears the screen
NOT_UTF8 = "a\udcffb"  # the byte 0xff, read with surrogateescape
MARKUP = "[/]hq[link=x]"  # rich markup: a MarkupError, or a forged hyperlink
C1 = "c\x9b2J"  # CSI as one C1 character
EVIL = [TITLE, CLEAR, NOT_UTF8, MARKUP, C1, "back\\slash", "new\nline", "tab\tbed", ":smile:"]
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")  # what must never reach a terminal


def _raw(text: str) -> list[str]:
    return RAW.findall(text)


# ---------------------------------------------------------------- the sanitiser


def test_every_c0_del_and_c1_character_is_escaped() -> None:
    for code in [*range(0x20), 0x7F]:
        assert shown(f"a{chr(code)}b") == f"a\\x{code:02x}b"
    for code in range(0x80, 0xA0):
        assert shown(f"a{chr(code)}b") == f"a\\u{code:04x}b"  # not \xNN: that is a byte


def test_backslash_and_bytes_that_are_not_utf8() -> None:
    assert shown("q\\z") == "q\\\\z"
    assert shown("a\\x1bb") != shown("a\x1bb")  # a literal backslash never looks like an escape
    for byte in range(0x80, 0x100):
        name = bytes([0x61, byte]).decode("utf-8", "surrogateescape")
        assert shown(name) == f"a\\x{byte:02x}"
        name.encode("utf-8", "surrogateescape")  # the exact byte is still there
    assert shown("\ud800") == "\\ud800"  # a lone surrogate that is no byte


def test_printable_text_is_itself_and_other_invisible_characters_are_escaped() -> None:
    for text in [
        "veth1a2b3c",
        "pod/shop/web",
        "caf\u00e9",
        "\u65e5\u672c",
        "a b",
        "[/]hq[link=x]",
        ":smile:",
    ]:
        assert shown(text) is text or shown(text) == text
    assert shown("a\u200bb") == "a\\u200bb"  # zero width space: would make two names look alike
    assert shown("a\u2028b") == "a\\u2028b"  # line separator
    assert shown("a\u00a0b") == "a\\u00a0b"  # no-break space
    assert shown("a\U000e0001b") == "a\\U000e0001b"  # language tag


def _unescape(text: str) -> str:
    """The inverse of shown(), as bash reads the same escapes in $'...'."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != "\\":
            out.append(text[i])
            i += 1
            continue
        kind = text[i + 1]
        if kind == "\\":
            out.append("\\")
            i += 2
            continue
        width = {"x": 2, "u": 4, "U": 8}[kind]
        code = int(text[i + 2 : i + 2 + width], 16)
        out.append(chr(code if kind != "x" or code < 0x80 else 0xDC00 + code))
        i += 2 + width
    return "".join(out)


def test_one_to_one_and_always_printable() -> None:
    rng = random.Random(17)
    alphabet = [chr(c) for c in range(0x100)] + ["\udc80", "\udcff", "\u200b", "\u2028", "\u00e9", "\\"]
    seen: dict[str, str] = {}
    for _ in range(3000):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        out = shown(name)
        assert out.isprintable() and not _raw(out)
        out.encode("utf-8")  # never a UnicodeEncodeError
        assert _unescape(out) == name
        assert seen.setdefault(out, name) == name


def test_command_line_keeps_backslashes_and_escapes_controls() -> None:
    assert command_line("ip link show dev $'hq\\x1b[2Jx'") == "ip link show dev $'hq\\x1b[2Jx'"
    assert command_line("ip link del dev 'a\x1bb'") == "ip link del dev 'a\\x1bb'"


# ---------------------------------------------------------------- command lines


@pytest.mark.parametrize("word", [*EVIL, "it's", "x y", "plain", "caf\u00e9", "\u00e9\x85"])
def test_shell_words_are_exact_and_printable(word: str) -> None:
    quoted = shell.quote(word)
    assert quoted.isprintable()
    done = subprocess.run(["bash", "-c", f"printf %s {quoted}"], capture_output=True, check=True)
    assert done.stdout == word.encode("utf-8", "surrogateescape")


def test_doctor_command_lines_quote_names() -> None:
    t = Topo()
    ns = t.netns(TITLE)
    t.veth(ns, CLEAR, HOST, NOT_UTF8)
    row = next(r for r in t.report().rows if r.end.link.name == CLEAR)
    line = shell.show_link(row.end, HOST)
    assert line == "ip -n $'\\x1b]0;own\\x07' -d link show dev $'hq\\x1b[2Jx'"


# ---------------------------------------------------------------- the renderers


def _report() -> Report:
    """A namespace named TITLE with a pair CLEAR <-> NOT_UTF8 (host side), a namespace held by a
    process whose comm is MARKUP with a pair C1 <-> "back\\slash", others for the rest."""
    t = Topo()
    named = t.netns(TITLE)
    t.veth(named, CLEAR, HOST, NOT_UTF8)
    held = t.netns("held")
    t.veth(held, C1, HOST, "back\\slash")
    other = t.netns("new\nline")
    t.veth(other, "tab\tbed", HOST, ":smile:")
    claims = [Claim(k, Workload(WorkloadKind.NETNS, n, id=n), 20) for k, n in t.names.items() if k != held]
    claims.append(Claim(held, Workload(WorkloadKind.PROCESS, f"pid/42 ({MARKUP})", id="42"), 30))
    from vethpeer.correlate import correlate

    return correlate(t.snapshot(), [answered("kernel", claims)])


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _check(text: str) -> None:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # rich's own styles (bold, colours)
    assert not _raw(text), _raw(text)
    assert "\x1b]8;" not in text  # no hyperlink


@pytest.mark.parametrize("tty", [False, True])
@pytest.mark.parametrize("wide", [False, True])
def test_table(tty: bool, wide: bool) -> None:
    out = _Tty() if tty else io.StringIO()
    tablerender.write_table(_report(), Environment(stdout=out, environ={"NO_COLOR": "1"}), wide=wide)
    text = out.getvalue()
    _check(text)
    for name in [CLEAR, NOT_UTF8, C1, "back\\slash", "tab\tbed", MARKUP, "new\nline"]:
        assert shown(name) in text
    assert ":smile:" in text and "\N{SMILING FACE WITH OPEN MOUTH}" not in text


def test_rich_table_with_colour_gets_text_not_markup() -> None:
    out = _Tty()
    tablerender.write_columns(["A"], [[MARKUP], ["[bold]x[/bold]"], [":smile:"]], Environment(stdout=out))
    text = out.getvalue()
    assert MARKUP in text and "[bold]x[/bold]" in text and ":smile:" in text and "\x1b]8;" not in text


def test_notes_and_evidence_lines() -> None:
    report = _report()
    out = io.StringIO()
    tablerender.write_lines(
        [*tablerender.notes(report, report.rows, report.host_network), f"x {TITLE}"], Environment(stdout=out)
    )
    assert out.getvalue() == f"x {shown(TITLE)}\n"


def test_doctor_text() -> None:
    report = _report()
    row = next(r for r in report.rows if r.end.link.name == CLEAR)
    finding = Finding(
        "link-down",
        Severity.ERROR,
        row.end,
        f"{NOT_UTF8} is down",
        evidence=(f"operstate of {CLEAR}: down",),
        confirm=(shell.show_link(row.end, HOST),),
        fix=(shell.ip_in(row.end, HOST, "link", "set", "dev", CLEAR, "up"),),
        peer=row.peer,
    )
    out = io.StringIO()
    findings.write_text(
        Diagnosis((finding,), 1, 1, skipped=(f"netns {TITLE}: gone",)),
        Environment(stdout=out),
        show_info=True,
    )
    text = out.getvalue()
    _check(text)
    assert (
        shown(CLEAR) in text and "a\\xffb is down" in text and "not checked: netns \\x1b]0;own\\x07" in text
    )
    assert "fix:      ip -n $'\\x1b]0;own\\x07' link set dev $'hq\\x1b[2Jx' up" in text


def test_watch_line() -> None:
    report = _report()
    row = next(r for r in report.rows if r.end.link.name == C1)
    message = f"{subject(row, HOST)} created"
    event = Event("created", row.end.workload, row.end.ns.key, message, row)
    line = event_lines.line(event, datetime.now(timezone.utc))
    _check(line)
    assert f"pid/42 ({MARKUP}) c\\u009b2J <-> back\\\\slash created" in line
    out = io.StringIO()
    event_lines.write([event], True, out)
    assert json.loads(out.getvalue())["interface"]["ifname"] == C1  # JSON Lines: the exact name


def test_top_once_and_screen() -> None:
    from rich.console import Console

    rates = [Rates(row, None) for row in _report().rows]
    for out in (io.StringIO(), _Tty()):
        top_screen.write_once(rates, 1.0, Environment(stdout=out))
        _check(out.getvalue())
        assert shown(CLEAR) in out.getvalue()
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=200, height=40, markup=False, emoji=False)
    console.print(top_screen.screen(rates, 1.0, f"filter {TITLE}", f"filter: {CLEAR}_", 40))
    text = re.sub(r"\x1b\[[0-9;]*m", "", screen.getvalue())
    _check(text)
    assert shown(NOT_UTF8) in text and shown(MARKUP) in text and "filter: hq\\x1b[2Jx_" in text


def test_errors_on_stderr() -> None:
    err = io.StringIO()
    status = cli.main(["table", f"--{CLEAR}"], Environment(stdout=io.StringIO(), stderr=err))
    assert status == 2
    assert "--hq\\x1b[2Jx" in err.getvalue() and not _raw(err.getvalue())
    err = io.StringIO()
    Environment(stderr=err).warn(f"warning: docker: error: {TITLE}{NOT_UTF8}")
    assert err.getvalue() == "warning: docker: error: \\x1b]0;own\\x07a\\xffb\n"


def test_kubectl_plugin_output_from_an_untrusted_agent() -> None:
    document = jsonrender.report_json(_report())
    document["findings"] = [
        {
            "severity": "error",
            "check": f"x{TITLE}",
            "interface": {"workload": MARKUP, "ifname": CLEAR},
            "peer": {"ifname": NOT_UTF8},
            "message": C1,
            "evidence": [TITLE],
            "fix": [f"ip link del dev {CLEAR}"],
        }
    ]
    document["summary"] = TITLE
    answers = [
        NodeAnswer(f"node{CLEAR}", "ok", document=json.loads(json.dumps(document))),
        NodeAnswer("other", "error", detail=f"agent said {TITLE}"),
    ]
    for wide in (False, True):
        for out in (io.StringIO(), _Tty()):
            err = io.StringIO()
            kubectlrender.write_table(answers, Environment(stdout=out, stderr=err), wide=wide)
            _check(out.getvalue() + err.getvalue())
            assert shown(f"node{CLEAR}") in out.getvalue() and shown(TITLE) in err.getvalue()
    out, err = io.StringIO(), io.StringIO()
    kubectlrender.write_findings(answers, Environment(stdout=out, stderr=err))
    _check(out.getvalue() + err.getvalue())
    assert "fix:      ip link del dev hq\\x1b[2Jx" in out.getvalue()


def test_graph_labels_use_the_same_escapes() -> None:
    assert graphtext.visible(NOT_UTF8) == "a\\xffb" == shown(NOT_UTF8)


# ---------------------------------------------------------------- JSON and reading names


@pytest.mark.parametrize("tty", [False, True])
def test_json_keeps_the_exact_strings(tty: bool) -> None:
    out = _Tty() if tty else io.StringIO()
    jsonrender.write(jsonrender.report_json(_report()), Environment(stdout=out))
    text = out.getvalue()
    assert text.isascii() and "\\u001b]0;own\\u0007" in text and "a\\udcffb" in text
    data = json.loads(text)
    names = {i["ifname"] for i in data["interfaces"]} | {i["peer"]["ifname"] for i in data["interfaces"]}
    assert {CLEAR, NOT_UTF8, C1, "back\\slash", "tab\tbed", ":smile:"} <= names
    assert NOT_UTF8.encode("utf-8", "surrogateescape") == b"a\xffb"  # how a Python reader gets the bytes


def test_netlink_names_keep_their_bytes() -> None:
    raw = b"a\xffb\x1b\0junk"
    assert cstr(raw, 0, len(raw)) == "a\udcffb\x1b"


def test_metrics_labels_stay_utf8() -> None:
    from vethpeer.agent.metrics import interface_labels

    row = next(r for r in _report().rows if r.end.link.name == CLEAR)
    labels = interface_labels(row)
    assert labels["device"] == "a\\xffb" and labels["interface"] == CLEAR
    for value in labels.values():
        value.encode("utf-8")


def test_a_traceback_under_debug_keeps_its_lines() -> None:
    try:
        raise ValueError(f"bad {CLEAR}")
    except ValueError:
        import traceback

        text = f"vethpeer serve: error serving {TITLE}\n" + traceback.format_exc().rstrip()
    lines = message(text).split("\n")
    assert lines[0] == f"vethpeer serve: error serving {shown(TITLE)}"
    assert lines[1] == "Traceback (most recent call last):" and len(lines) > 3
    assert lines[-1] == f"ValueError: bad {shown(CLEAR)}"
    assert message(f"a\n{TITLE}") == "a\\x0a\\x1b]0;own\\x07"  # no traceback: one line


def test_a_terminal_that_is_not_utf8_gets_escapes_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = io.BytesIO()
    latin = io.TextIOWrapper(raw, encoding="latin-1", errors="strict")
    monkeypatch.setattr("sys.stdout", latin)
    assert cli.main(["--version"]) == 0
    print("\u65e5", file=latin)
    latin.flush()
    assert raw.getvalue().endswith(b"\\u65e5\n")
