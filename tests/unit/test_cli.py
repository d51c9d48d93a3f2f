"""The CLI on hand-built reports: `which` targets, the JSON contract, the plain table."""

from __future__ import annotations

import io
import json

import pytest

from tests import contract
from vethpeer import cli
from vethpeer.environment import Environment
from vethpeer.errors import Ambiguous, NotFound
from vethpeer.render import json as jsonrender
from vethpeer.render import tables as tablerender
from vethpeer.targets import resolve

from .builders import cri_pods

# ---------------------------------------------------------------- which, on a hand-built report


def test_which_targets() -> None:
    report = cri_pods()
    assert [r.end.workload.label for r in resolve(report, "10.0.0.3").rows] == ["pod/blog/web"]
    assert [r.peer.link.name for r in resolve(report, "02:00:00:00:02:02").rows if r.peer] == ["veth2"]
    assert [r.end.workload.label for r in resolve(report, "veth0").rows] == ["pod/shop/web"]
    assert [r.end.workload.label for r in resolve(report, "shop/web").rows] == ["pod/shop/web"]
    assert [r.end.workload.label for r in resolve(report, "pod/web", namespace="blog").rows] == [
        "pod/blog/web"
    ]
    assert [r.end.workload.label for r in resolve(report, "db").rows] == ["pod/shop/db"]
    assert [r.end.workload.label for r in resolve(report, "abc2").rows] == ["pod/shop/db"]
    assert [r.end.workload.label for r in resolve(report, "cni-1").rows] == ["pod/blog/web"]
    with pytest.raises(Ambiguous) as many:
        resolve(report, "web")
    assert many.value.candidates == ["pod/blog/web", "pod/shop/web"]
    with pytest.raises(Ambiguous):
        resolve(report, "abc")  # a prefix of all three sandbox IDs
    with pytest.raises(NotFound):
        resolve(report, "10.9.9.9")
    with pytest.raises(NotFound):
        resolve(report, "br0")  # a host interface, but nothing behind it
    with pytest.raises(NotFound):
        resolve(report, "nope")


def test_json_contract_fields() -> None:
    report = cri_pods()
    out = io.StringIO()
    jsonrender.write(jsonrender.report_json(report), Environment(stdout=out))
    data = json.loads(out.getvalue())
    assert data["schema_version"] == 1
    assert contract.TOP_FIELDS | {"workloads"} <= data.keys()
    entry = data["interfaces"][0]
    assert entry.keys() >= contract.INTERFACE_FIELDS
    assert entry["workload"].keys() >= contract.WORKLOAD_FIELDS
    assert entry["netns"].keys() >= contract.NETNS_FIELDS
    assert entry["peer"].keys() >= contract.PEER_FIELDS
    assert entry["peer"]["relation"] == "veth" and entry["peer"]["master"] == "br0"


def test_plain_table_when_not_a_tty() -> None:
    report = cri_pods()
    out = io.StringIO()
    tablerender.write_table(report, Environment(stdout=out))
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:3] == ["NAMESPACE", "POD", "IF"] or lines[0].split()[:2] == [
        "NAMESPACE",
        "WORKLOAD",
    ]
    assert "\x1b[" not in out.getvalue()
    assert len(lines) == 4


@pytest.mark.parametrize(
    "argv",
    [
        ["table", "--json"],
        ["-n", "table", "which", "x"],  # a command's name as an option's value
        ["--timeout", "5", "which", "-q", "veth1"],
        ["which", "table"],
        ["doctor", "--json"],
        ["capture", "web", "--", "-c", "1"],
    ],
)
def test_one_commands_parser_parses_as_the_whole_one(argv: list[str]) -> None:
    """cli.parse builds only the named command's subparser: the result is the whole parser's."""
    from vethpeer.commands.options import split_argv
    from vethpeer.commands.parser import build_parser

    words, tcpdump_args = split_argv(argv)
    whole = vars(build_parser().parse_args(words))
    if tcpdump_args:
        whole["tcpdump_args"] = tcpdump_args
    assert vars(cli.parse(argv)) == whole
