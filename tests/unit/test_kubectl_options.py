"""`kubectl vethpeer`: a shared option means the same before or after the command."""

from __future__ import annotations

import pytest

from vethpeer.errors import UsageError
from vethpeer.kubectl.plugin import build_parser


@pytest.mark.parametrize(
    "argv",
    [
        ["--debug", "-n", "shop", "-o", "json", "--timeout", "2", "table"],
        ["table", "--debug", "-n", "shop", "-o", "json", "--timeout", "2"],
        ["--debug", "-n", "shop", "table", "-o", "json", "--timeout", "2"],
    ],
)
def test_an_option_before_the_command_is_not_reset_by_the_commands_default(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.debug, args.namespace, args.output, args.timeout) == (True, "shop", "json", 2.0)


def test_the_defaults_hold_when_nothing_is_given() -> None:
    args = build_parser().parse_args(["which", "web"])
    assert (args.debug, args.namespace, args.output, args.timeout, args.all_namespaces) == (
        False,
        None,
        "table",
        5.0,
        False,
    )


def test_the_option_after_the_command_wins() -> None:
    assert build_parser().parse_args(["-o", "json", "table", "-o", "wide"]).output == "wide"


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_a_timeout_that_is_not_a_positive_number_of_seconds_is_a_usage_error(value: str) -> None:
    with pytest.raises(UsageError):
        build_parser().parse_args(["table", "--timeout", value])
