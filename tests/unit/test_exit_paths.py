"""Every exit path of the CLI through the real command code, without root.

The commands run in-process against a recorded /proc tree (tests/unit/fakeproc.py):
the real parser, the real gather() (privilege check, discovery, walk, sources), the
real resolver and renderers. Each outcome is one line on stderr, its documented code,
no traceback — unless --debug.
"""

from __future__ import annotations

import gc
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.serve_lab import hung_unix_socket
from vethpeer import cli
from vethpeer.errors import ExitStatus

from .fakeproc import FakeProc

ID_A = "ab" + "1" * 62
ID_B = "ab" + "2" * 62


@pytest.fixture
def proc(tmp_path: Path) -> FakeProc:
    return FakeProc(tmp_path / "proc")


def one_line(fake: FakeProc) -> str:
    """The one message line (the sources' own warnings, about the sockets these tests point
    at nothing, may stand before it)."""
    lines = fake.err.getvalue().splitlines()
    assert "Traceback" not in fake.err.getvalue()
    messages = [line for line in lines if not line.startswith("warning: ")]
    assert len(messages) == 1 and messages[0].startswith("vethpeer: "), lines
    return messages[0] + "\n"


def test_success(proc: FakeProc) -> None:
    """What a recorded tree gives: its namespaces are plain files, so none can be entered and
    no link is read (no interface rows), but discovery and the kernel and cgroup sources run
    for real and name every namespace's workloads."""
    pid = proc.container(ID_A)
    assert proc.main("table", "--json") == ExitStatus.SUCCESS
    document = json.loads(proc.out.getvalue())
    assert document["schema_version"] == 1
    assert document["interfaces"] == []
    host, theirs = (os.stat(proc.root / f"{p}/ns/net").st_ino for p in (1, pid))
    assert document["host_netns"]["inode"] == host
    assert sorted(u["inode"] for u in document["namespaces"]["unreadable"]) == sorted((host, theirs))
    named = {
        (w["netns"]["inode"], w["workload"]["label"], w["workload"]["source"]) for w in document["workloads"]
    }
    assert named == {(theirs, f"docker/{ID_A[:12]}", "cgroup"), (theirs, f"pid/{pid} (sleep)", "kernel")}
    states = {s["name"]: s["status"] for s in document["sources"]}
    assert states["kernel"] == states["cgroup"] == "ok" and states["kube"] == "skipped"


def test_usage(proc: FakeProc) -> None:
    assert proc.main("table", "-o", "yaml") == ExitStatus.USAGE
    assert "invalid choice" in one_line(proc)


@pytest.mark.parametrize(
    "argv", [("which",), ("nosuchcommand",), ("doctor", "-o", "wide"), ("-n", "x", "-A")]
)
def test_more_usage_errors(proc: FakeProc, argv: tuple[str, ...]) -> None:
    assert proc.main(*argv) == ExitStatus.USAGE
    one_line(proc)


def test_not_found(proc: FakeProc) -> None:
    assert proc.main("which", "nope") == ExitStatus.NOT_FOUND
    assert "nothing named 'nope'" in one_line(proc)


def test_ambiguous_names_both_candidates(proc: FakeProc) -> None:
    proc.container(ID_A)
    proc.container(ID_B)
    assert proc.main("which", "ab") == ExitStatus.AMBIGUOUS
    err = one_line(proc)
    assert f"docker/{ID_A[:12]}" in err and f"docker/{ID_B[:12]}" in err


def test_no_privilege(tmp_path: Path) -> None:
    fake = FakeProc(tmp_path / "proc", caps="0000000000000000")
    assert fake.main("table") == ExitStatus.NO_PRIVILEGE
    assert "missing CAP_SYS_ADMIN and CAP_SYS_PTRACE" in one_line(fake)


def test_usage_is_checked_before_privilege(tmp_path: Path) -> None:
    fake = FakeProc(tmp_path / "proc", caps="0000000000000000")
    assert fake.main("--timeout", "0", "table") == ExitStatus.USAGE
    assert "--timeout" in one_line(fake)


@pytest.fixture
def silent_docker() -> Iterator[str]:
    """A unix socket that accepts connections and never answers: a hung daemon."""
    with hung_unix_socket() as url:
        yield url


def test_strict_source_failed(proc: FakeProc, silent_docker: str) -> None:
    argv = ["table", "--strict", "--timeout", "0.2", "--runtime-endpoint", "unix:///nonexistent/vp.sock"]
    code = cli.main([*argv, "--docker-host", silent_docker, "--no-kube"], proc.env())
    assert code == ExitStatus.SOURCE_FAILED
    assert "docker: timeout" in proc.err.getvalue().splitlines()[-1]


class _Exploding(io.StringIO):
    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def write(self, text: str) -> int:
        raise self.error


def test_internal_error_is_one_line(proc: FakeProc) -> None:
    assert proc.main("table", stdout=_Exploding(RuntimeError("a bug"))) == ExitStatus.ERROR
    assert "internal error: RuntimeError: a bug (run again with --debug" in one_line(proc)


def test_debug_shows_the_traceback(proc: FakeProc) -> None:
    with pytest.raises(RuntimeError):
        proc.main("table", "--debug", stdout=_Exploding(RuntimeError("a bug")))


def test_debug_abbreviated_is_debug(proc: FakeProc) -> None:
    with pytest.raises(RuntimeError):
        proc.main("table", "--deb", stdout=_Exploding(RuntimeError("a bug")))


def test_debug_after_the_double_dash_is_tcpdump_s() -> None:
    args = cli.parse(["capture", "web", "--", "--debug"])
    assert args.debug is False and args.tcpdump_args == ["--debug"]


def test_interrupted(proc: FakeProc) -> None:
    assert proc.main("table", stdout=_Exploding(KeyboardInterrupt())) == ExitStatus.INTERRUPTED
    assert one_line(proc) == "vethpeer: interrupted\n"


def test_broken_pipe_is_success(proc: FakeProc) -> None:
    assert proc.main("table", stdout=_Exploding(BrokenPipeError())) == ExitStatus.SUCCESS


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == ExitStatus.SUCCESS  # the fast path: no parser built
    fast = capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        cli.main(["--debug", "--version"])  # argparse's own --version: the same line
    assert done.value.code == 0
    assert capsys.readouterr().out == fast and fast.startswith("vethpeer ")


def test_main_leaves_the_collector_as_it_found_it(proc: FakeProc) -> None:
    assert gc.isenabled()
    proc.main("table")
    assert gc.isenabled()
    gc.disable()
    try:
        proc.main("table")
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_all_namespaces_cancels_namespace() -> None:
    assert cli.parse(["-n", "shop", "table"]).namespace == "shop"
    assert cli.parse(["-n", "shop", "table", "-A"]).namespace is None
    assert cli.parse(["table", "-A"]).namespace is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("serve", "--max-per-client", "0"), "--max-per-client must be at least 1"),
        (("serve", "--web-config-file", "/nonexistent/vqb-web.yml"), "cannot read the web config"),
    ],
)
def test_serve_security_usage_errors_come_before_privilege(
    tmp_path: Path, argv: tuple[str, ...], message: str
) -> None:
    fake = FakeProc(tmp_path / "proc", caps="0000000000000000")
    assert fake.main(*argv) == ExitStatus.USAGE
    assert message in one_line(fake)


def test_a_bad_web_config_is_one_line_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "web.yml"
    config.write_text("tls_server_config:\n  cert_filse: server.crt\n")
    fake = FakeProc(tmp_path / "proc", caps="0000000000000000")
    assert fake.main("serve", "--web-config-file", str(config)) == ExitStatus.USAGE
    assert "unknown field 'cert_filse'" in one_line(fake)


def test_basic_auth_users_with_kube_auth_is_one_line_exit_2(tmp_path: Path) -> None:
    """One request has one identity: a web config with users and --kube-auth do not go together."""
    config = tmp_path / "web.yml"
    config.write_text("basic_auth_users:\n  prometheus: $2y$10$" + "a" * 53 + "\n")
    fake = FakeProc(tmp_path / "proc", caps="0000000000000000")
    assert fake.main("serve", "--kube-auth", "--web-config-file", str(config)) == ExitStatus.USAGE
    assert "basic_auth_users cannot be combined with --kube-auth" in one_line(fake)
