"""The command layer's policies: discovery on a recorded tree, the JSON filter, colour, doctor's
quiet text, the check registry against its docs, the option tables against the parser."""

from __future__ import annotations

import argparse
import io
import os
import re
from pathlib import Path

import pytest

from vethpeer import checks, cli, commands
from vethpeer.checks import Diagnosis, Finding, Severity
from vethpeer.environment import Environment
from vethpeer.netns import discover, nsfs_mounts
from vethpeer.render import findings
from vethpeer.render import json as jsonrender

from .builders import cri_pods
from .fakeproc import FakeProc

ROOT = Path(__file__).resolve().parents[2]


def _nsfs_device(fake: FakeProc) -> str:
    """MAJOR:MINOR as mountinfo prints the nsfs device: here, the device of the fake namespace files."""
    dev = os.stat(fake.root / "1/ns/net").st_dev
    return f"{os.major(dev)}:{os.minor(dev)}"


def test_discovery_on_a_recorded_tree(tmp_path: Path) -> None:
    fake = FakeProc(tmp_path / "proc")
    pid = fake.container("c" * 64)
    pinned = tmp_path / "run" / "netns" / "vp-pinned"
    pinned.parent.mkdir(parents=True)
    pinned.write_text("")
    mount = f"42 30 {_nsfs_device(fake)} net:[4026532999] {pinned} rw - nsfs nsfs rw\n"
    (fake.root / "self/mountinfo").write_text(mount)
    found = discover(str(fake.root))
    assert found.host_found_via == "pid 1"
    by_pid = {ns.pids: ns for ns in found.namespaces}
    assert by_pid[(1,)].is_host and by_pid[(pid,)].comm == "sleep"
    (named,) = [ns for ns in found.namespaces if ns.mounts]
    assert named.mounts == (str(pinned),) and named.netns_names == ("vp-pinned",)


def test_nsfs_mounts_from_mountinfo_text() -> None:
    """Only network-namespace mounts on the nsfs device, whatever their optional fields; escaped
    paths (space, tab, backslash; a mount point unlinked since, as the kernel prints it); a mount
    point mounted over twice names the mount on top (listed later); a source that reads like a
    device or a namespace is not a mount of one."""
    table = (
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        "40 22 0:4 net:[11] /run/netns/a rw shared:5 master:2 - nsfs nsfs rw\n"
        "41 22 0:4 net:[11] /tmp/with\\040space rw - nsfs nsfs rw\n"
        "42 22 0:4 mnt:[12] /tmp/mnt-ns rw - nsfs nsfs rw\n"
        "43 22 0:50 / /tmp/x rw - tmpfs net:[13] rw\n"
        "44 22 0:4 net:[14] /run/netns/b rw - nsfs nsfs rw\n"
        "45 44 0:4 net:[15] /run/netns/b rw - nsfs nsfs rw\n"
        "46 22 0:5 net:[16] /tmp/another-device rw - nsfs nsfs rw\n"
        "47 22 0:51 / /tmp/y rw - tmpfs 0:4 rw,size=4k\n"
        "48 22 0:4 net:[17] /tmp/tab\\011and\\134back rw - nsfs nsfs rw\n"
        "49 22 0:4 net:[18] /tmp/gone\\040(deleted) rw - nsfs nsfs rw\n"
        "50 22 0:4 net:[17] /tmp/twice rw - nsfs nsfs rw\n"
        "51 50 0:4 net:[17] /tmp/twice rw - nsfs nsfs rw\n"
    )
    assert nsfs_mounts(table, os.makedev(0, 4)) == {
        "11": ["/run/netns/a", "/tmp/with space"],
        "15": ["/run/netns/b"],
        "17": ["/tmp/tab\tand\\back", "/tmp/twice"],
        "18": ["/tmp/gone (deleted)"],
    }
    assert nsfs_mounts(table, os.makedev(0, 5)) == {"16": ["/tmp/another-device"]}


def test_discovery_reads_the_nodes_mount_table_from_a_container(tmp_path: Path) -> None:
    """PID 1 in another mount namespace (a pod with hostPID): its table, reached through /proc/1/root."""
    fake = FakeProc(tmp_path / "proc")
    (fake.root / "1/ns/mnt").unlink()
    (fake.root / "1/ns/mnt").write_text("")  # another inode: another mount namespace
    node_path = fake.root / "1/root/run/netns/vp-node-only"
    node_path.parent.mkdir(parents=True)
    node_path.write_text("")
    (fake.root / "1/mountinfo").write_text(
        f"7 1 {_nsfs_device(fake)} net:[4026533000] /run/netns/vp-node-only rw - nsfs nsfs rw\n"
    )
    (named,) = [ns for ns in discover(str(fake.root)).namespaces if ns.mounts]
    assert named.mounts == ("/run/netns/vp-node-only",)  # as the node names it
    assert named.reachable == (f"{fake.root}/1/root/run/netns/vp-node-only",)  # how we open it
    assert named.netns_names == ("vp-node-only",)


def test_namespace_filter_applies_to_workloads_too() -> None:
    report = cri_pods()
    everything = jsonrender.report_json(report)
    shop = jsonrender.report_json(report, namespace="shop")
    assert {w["workload"]["namespace"] for w in everything["workloads"]} == {"shop", "blog"}
    assert {w["workload"]["namespace"] for w in shop["workloads"]} == {"shop"}


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("environ", "color"),
    [({}, True), ({"NO_COLOR": "1"}, False), ({"NO_COLOR": ""}, True), ({"TERM": "dumb"}, False)],
)
def test_no_color_as_no_color_org_words_it(environ: dict[str, str], color: bool) -> None:
    """no-color.org: NO_COLOR "when present and not an empty string (regardless of its value),
    prevents the addition of ANSI color"."""
    assert Environment(stdout=_Tty(), environ=environ).color is color
    assert Environment(stdout=io.StringIO(), environ=environ).color is False  # never on a pipe


def test_json_is_indented_on_a_terminal_and_compact_on_a_pipe() -> None:
    tty, pipe = _Tty(), io.StringIO()
    jsonrender.write({"a": [1]}, Environment(stdout=tty))
    jsonrender.write({"a": [1]}, Environment(stdout=pipe))
    assert tty.getvalue() == '{\n  "a": [\n    1\n  ]\n}\n' and pipe.getvalue() == '{"a":[1]}\n'


def _diagnosis(*severities: Severity) -> Diagnosis:
    report = cri_pods()
    end = report.rows[0].end
    found = tuple(Finding(f"check-{i}", s, end, f"message {i}") for i, s in enumerate(severities))
    return Diagnosis(found, interfaces=3, namespaces=3)


def test_doctor_text_hides_info_findings_unless_all() -> None:
    d = _diagnosis(Severity.WARNING, *[Severity.INFO] * 5)
    quiet, loud = io.StringIO(), io.StringIO()
    findings.write_text(d, Environment(stdout=quiet))
    findings.write_text(d, Environment(stdout=loud), show_info=True)
    assert quiet.getvalue().count("INFO") == 0 and quiet.getvalue().count("WARNING") == 1
    assert "5 info findings not shown (--all to show)\n" in quiet.getvalue()
    assert loud.getvalue().count("INFO ") == 5 and "not shown" not in loud.getvalue()


def test_every_check_id_has_an_entry_in_troubleshooting() -> None:
    text = (ROOT / "docs" / "troubleshooting.md").read_text()
    headings = re.findall(r"^###? (.*)$", text, re.M)
    documented = {i for heading in headings for i in re.findall(r"`([a-z0-9-]+)`", heading)}
    assert checks.all_ids(), "no check registered"
    missing = [i for i in checks.all_ids() if i not in documented]
    assert not missing, f"check ids without a docs/troubleshooting.md entry: {missing}"


def _parser_options(command: str | None) -> set[str]:
    parser = cli.build_parser()
    if command is not None:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[command]
    return {o for a in parser._actions for o in a.option_strings if o not in ("-h", "--help")}


def _documented_options(path: Path, command: str) -> set[str]:
    """Options in the table under the heading "### `vethpeer COMMAND ...`" (first column, `-x`/`--long`);
    the options of every command under "### `vethpeer` (every command)"."""
    text = path.read_text()
    heading = r"`vethpeer` " if command == "common" else rf"`vethpeer {command}(?: [^`]*)?`"
    section = re.search(rf"^### {heading}[^\n]*\n(.*?)(?=^#|\Z)", text, re.M | re.S)
    assert section, f"{path.name} has no section for vethpeer {command}"
    cells = re.findall(r"^\|((?:[^|\\]|\\.)+)\|", section.group(1), re.M)  # the first column; \| is escaped
    return {o for cell in cells for o in re.findall(r"`(-[-\w]+)", cell)}


@pytest.mark.parametrize("command", ["common", *commands.NAMES])
def test_usage_md_option_tables_match_the_parser(command: str) -> None:
    if command == "common":
        wanted = _parser_options(None) - {"--version"}
    else:
        wanted = _parser_options(command) - _parser_options(None)
    assert _documented_options(ROOT / "docs" / "usage.md", command) == wanted


def test_the_man_page_is_the_parser() -> None:
    """The page is generated from build_parser() at build time (pyproject.toml's cmdclass): every
    command and option of the parser is in it."""
    from argparse_manpage.manpage import Manpage

    parser = cli.build_parser()
    page = str(Manpage(parser))
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        assert f"vethpeer {name}" in page
        for option in (o for a in command._actions for o in a.option_strings if o not in ("-h", "--help")):
            assert f"\\fB{option.replace('-', chr(92) + '-')}\\fR" in page, (name, option)


def test_readme_command_table_matches_the_parser() -> None:
    """README's "Commands" table: one row a command, and every option it shows is the parser's."""
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Commands\n(.*?)(?=^## )", text, re.M | re.S)
    assert section, "README.md has no '## Commands' section"
    rows = re.findall(r"^\| `vethpeer (\w+)((?:[^|\\]|\\.)*)\|", section.group(1), re.M)  # the first cell
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {name for name, _ in rows} == set(sub.choices)
    for name, cell in rows:
        shown = set(re.findall(r"(?<![\w-])(--?[a-zA-Z][-\w]*)", cell))
        assert shown <= _parser_options(name), (name, shown - _parser_options(name))
