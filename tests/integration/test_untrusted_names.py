"""Names are data, never terminal commands: what an unprivileged user names things cannot reach
root's terminal.

The user ``nobody`` (uid 65534) makes its own user and network namespace (``unshare -rn``,
which the kernel allows without privilege) and there gives veths names holding terminal control
sequences (``ESC ] 0 ; own BEL`` sets the title, ``ESC [ 2 J`` clears the screen), bytes that
are not UTF-8 (one of them 0x9b, CSI on an 8-bit terminal), C1 controls, a backslash and rich
markup; the kernel takes any byte in an interface name but ``/``, ``:`` and whitespace. Its
processes name themselves ``[/]hq[link=x]`` and ``vqa ESC [ 2 J 0xff`` (``/proc/self/comm``,
as ``prctl(PR_SET_NAME)``). Root, not the user, adds one ``ip netns`` name with a newline, for
the completion candidates (a file name: any byte but ``/``). Then every text command runs as
root, on a pipe and on a pty: no raw control byte and no byte that is not UTF-8 reaches the
output (rich's own styles aside), the escaped form is there, and the exit status is the
documented one. ``--json`` keeps the exact names.

Needs root, iproute2, util-linux (setpriv, unshare) and a kernel that lets unprivileged users
make user namespaces (with ``CI=true`` a sysctl forbidding it fails the test, naming it).
Everything is prefixed ``vqa``; the user's namespaces die with its processes.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.integration.conftest import ROOT, as_user, run_vethpeer
from tests.policy import need, need_binary, need_root
from tests.tools import find_tool

pytestmark = pytest.mark.integration

NOBODY = 65534

# (inside, peer) veth names as bytes, and the holder's comm, for each of the user's namespaces
PAIRS_A = [(b"\x1b]0;own\x07", b"hq\x1b[2Jx"), (b"vqa[link=x]", b"vqa\\z")]
COMM_A = b"[/]hq[link=x]"
PAIRS_B = [(b"vqa\xff", b"vqa\x9bx"), (b"vqa\xc2\x9b2J", b"vqa[b]x[i]")]
COMM_B = b"vqa\x1b[2J\xff"
NETNS = b"vqa\x1b]0;t\x07\nq"  # root's `ip netns add`: a newline too

# Run by nobody inside `unshare -rn`: make the veths (one end up), take the name, say so, then wait; a line
# on stdin ("hex hex") adds one more pair (for `watch`); EOF ends it.
HOLDER = r"""
import subprocess, sys
ip, comm, pairs = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3:]
def add(a, b):
    subprocess.run([ip, "link", "add", a, "type", "veth", "peer", "name", b], check=True)
    subprocess.run([ip, "link", "set", a, "up"], check=True)  # b stays down: doctor has findings
for pair in pairs:
    add(*(bytes.fromhex(h) for h in pair.split(",")))
with open("/proc/self/comm", "wb") as f:
    f.write(comm)
print("ready", flush=True)
for line in sys.stdin:
    add(*(bytes.fromhex(h) for h in line.split()))
    print("added", flush=True)
"""


def _names(pairs: list[tuple[bytes, bytes]]) -> list[bytes]:
    return [name for pair in pairs for name in pair]


def shown(name: bytes) -> str:
    """How text output shows a name (docs/usage.md, vethpeer/render/safe.py)."""
    from vethpeer.render.safe import shown as show

    return show(name.decode("utf-8", "surrogateescape"))


@dataclass
class Holder:
    proc: subprocess.Popen[bytes]
    comm: bytes
    pairs: list[tuple[bytes, bytes]]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def add(self, a: bytes, b: bytes) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{a.hex()} {b.hex()}\n".encode())
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == b"added\n"


def _userns_allowed(prefix: list[str], unshare: str) -> None:
    done = subprocess.run([*prefix, unshare, "-rn", "true"], capture_output=True, text=True, cwd="/")
    if done.returncode == 0:
        return
    settings = []
    for path in (
        "/proc/sys/kernel/unprivileged_userns_clone",
        "/proc/sys/user/max_user_namespaces",
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
    ):
        try:
            with open(path) as f:
                settings.append(f"{path}={f.read().strip()}")
        except OSError:
            pass
    need(
        False,
        "an unprivileged user cannot make a user namespace here "
        f"(unshare -rn: {done.stderr.strip()}; {', '.join(settings)}): this test needs it",
    )


def _interpreter_in_userns(prefix: list[str], unshare: str, candidates: list[str | None]) -> str:
    """A Python the user can run inside its own user namespace (where it is root, but a root
    that cannot enter root's 0700 home, where pyenv may have put this one)."""
    for candidate in dict.fromkeys(filter(None, candidates)):
        probe = [*prefix, unshare, "-rn", candidate, "-c", "pass"]
        if subprocess.run(probe, capture_output=True, cwd="/").returncode == 0:
            return candidate
    need(False, "needs a Python the user nobody can run in its own user namespace (apt-get install python3)")
    raise AssertionError


def _start(
    prefix: list[str], interpreter: str, unshare: str, ip: str, comm: bytes, pairs: list[tuple[bytes, bytes]]
) -> Holder:
    argv = [*prefix, unshare, "-rn", interpreter, "-c", HOLDER, ip, comm.hex()]
    argv += [f"{a.hex()},{b.hex()}" for a, b in pairs]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd="/")
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline() if ready else b""
    if line != b"ready\n":
        proc.kill()
        proc.wait()
        pytest.fail(f"the unprivileged holder did not start: {line!r}")
    return Holder(proc, comm, list(pairs))


@dataclass
class UserLab:
    """nobody's holders: each in its own user and network namespace, ended at the end."""

    prefix: list[str]
    interpreter: str
    unshare: str
    ip: str
    running: list[Holder]

    def start(self, comm: bytes, pairs: list[tuple[bytes, bytes]]) -> Holder:
        holder = _start(self.prefix, self.interpreter, self.unshare, self.ip, comm, pairs)
        self.running.append(holder)
        return holder

    def stop(self, holder: Holder) -> None:
        assert holder.proc.stdin is not None
        holder.proc.stdin.close()  # EOF: it exits, and its namespaces go with it
        try:
            holder.proc.wait(10)
        except subprocess.TimeoutExpired:
            holder.proc.kill()
            holder.proc.wait()
        self.running.remove(holder)


@pytest.fixture(scope="module")
def user_lab() -> Iterator[UserLab]:
    need_root()
    ip = need_binary("ip")
    unshare = need_binary("unshare")
    with as_user("nobody") as (prefix, found, _root):
        assert f"--reuid={NOBODY}" in prefix
        _userns_allowed(prefix, unshare)
        interpreter = _interpreter_in_userns(
            prefix, unshare, ["/usr/bin/python3", find_tool("python3"), found]
        )
        lab = UserLab(prefix, interpreter, unshare, ip, [])
        subprocess.run([ip, "netns", "add", NETNS], check=True)
        try:
            lab.start(COMM_A, PAIRS_A)
            lab.start(COMM_B, PAIRS_B)
            yield lab
        finally:
            for holder in list(lab.running):
                lab.stop(holder)
            subprocess.run([ip, "netns", "del", NETNS], check=False)


@pytest.fixture(scope="module")
def holders(user_lab: UserLab) -> list[Holder]:
    return user_lab.running[:2]


# ---------------------------------------------------------------- running the CLI


SGR = re.compile(rb"\x1b\[[0-9;]*m")  # rich's own styles: bold, colours, reset
# and, for `top`'s live screen, rich's own screen control: the alternate screen, the cursor shown
# or hidden, moved, a line erased (never ESC ] nor ESC [ 2 J, which the names hold)
SCREEN = re.compile(rb"\x1b\[\?(?:1049|25)[hl]|\x1b\[[0-9]*(?:;[0-9]*)?[HABCDGK]")
RAW = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x80-\x9f]")


def clean(output: bytes, *, tty: bool, screen: bool = False) -> str:
    """The output as text, asserting that nothing from a name could drive a terminal: valid
    UTF-8, no C0 control but newline (and CR, tab from a pty), no DEL, no C1, no ESC except
    rich's SGR styles on a terminal."""
    if tty:
        output = SGR.sub(b"", output)
    if screen:
        output = SCREEN.sub(b"", output)
    text = output.decode("utf-8")  # bytes that are not UTF-8 were escaped
    found = RAW.findall(text)
    assert not found, f"raw control characters reached the output: {found!r} in {text!r}"
    return text.replace("\r\n", "\n")


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str


def on_pipe(*args: str, timeout: float = 120) -> Run:
    done = subprocess.run(
        [sys.executable, "-m", "vethpeer", *args],
        capture_output=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return Run(done.returncode, clean(done.stdout, tty=False), clean(done.stderr, tty=False))


def on_pty(
    *args: str,
    timeout: float = 120,
    keys: bytes = b"",
    after: float = 0.0,
    interrupt: bool = False,
    screen: bool = False,
) -> Run:
    """The command with a terminal (150 columns) as stdin, stdout and stderr, in colour.

    ``keys`` are typed ``after`` seconds in (``top``'s ``q``); with ``interrupt``, SIGINT is sent
    then instead (Ctrl-C: the child has no controlling terminal to turn ``^C`` into it).
    """
    import fcntl
    import struct
    import termios

    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 150, 0, 0))
    environ = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vethpeer", *args],
        stdin=child,
        stdout=child,
        stderr=child,
        cwd=ROOT,
        env={**environ, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color"},
        start_new_session=True,
    )
    os.close(child)
    data = bytearray()
    start = time.monotonic()
    typed = not keys and not interrupt
    while True:
        if not typed and time.monotonic() - start >= after:
            if interrupt:
                proc.send_signal(signal.SIGINT)
            else:
                os.write(main, keys)
            typed = True
        ready, _, _ = select.select([main], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: every end of the terminal closed
                break
            if not chunk:
                break
            data += chunk
        elif proc.poll() is not None:
            break
        if time.monotonic() - start > timeout:
            proc.kill()
            break
    os.close(main)
    code = proc.wait()
    return Run(code, clean(bytes(data), tty=True, screen=screen), "")


RUNNERS = {"pipe": on_pipe, "pty": on_pty}


def _all_names(holders: list[Holder]) -> list[bytes]:
    return [name for holder in holders for name in _names(holder.pairs)]


# ---------------------------------------------------------------- the commands


@pytest.mark.parametrize("how", ["pipe", "pty"])
@pytest.mark.parametrize("wide", [False, True])
def test_table(holders: list[Holder], how: str, wide: bool) -> None:
    done = RUNNERS[how]("table", *(["-o", "wide"] if wide else []))
    assert done.returncode == 0, done
    for name in _all_names(holders):
        assert shown(name) in done.stdout, (shown(name), done.stdout)
    assert f"({COMM_A.decode()})" in done.stdout  # markup shown as text, not read as markup
    assert shown(COMM_B) in done.stdout
    assert "\x1b]8;" not in done.stdout  # no hyperlink forged


@pytest.mark.parametrize("how", ["pipe", "pty"])
def test_which_pid(holders: list[Holder], how: str) -> None:
    for holder in holders:
        done = RUNNERS[how]("which", str(holder.pid))
        assert done.returncode == 0, done
        for name in _names(holder.pairs):
            assert shown(name) in done.stdout
        assert shown(holder.comm) in done.stdout


@pytest.mark.parametrize("how", ["pipe", "pty"])
def test_which_name_not_found_is_a_clean_error(holders: list[Holder], how: str) -> None:
    """``which NAME``: the user's veths are not host interfaces, so exit 3 with a one-line
    error that quotes the target as typed, escaped."""
    target = PAIRS_A[0][1].decode()
    done = RUNNERS[how]("which", target)
    assert done.returncode == 3, done
    out = done.stderr if how == "pipe" else done.stdout
    assert shown(PAIRS_A[0][1]) in out and "internal error" not in out


@pytest.mark.parametrize("how", ["pipe", "pty"])
def test_which_netns_name_and_quiet(holders: list[Holder], how: str) -> None:
    target = NETNS.decode()
    done = RUNNERS[how]("which", target)
    assert done.returncode == 0, done
    assert shown(NETNS) in done.stdout  # "NAME: its network namespace has no interfaces"
    quiet = RUNNERS[how]("which", "-q", str(holders[0].pid))
    assert quiet.returncode == 3, quiet  # no peer in the host: an error, escaped, never raw
    assert "internal error" not in quiet.stdout + quiet.stderr


@pytest.mark.parametrize("how", ["pipe", "pty"])
def test_doctor(holders: list[Holder], how: str) -> None:
    done = RUNNERS[how]("doctor", "--all")
    assert done.returncode in (0, 6), done  # 6: findings at warning level or above
    text = done.stdout
    assert "internal error" not in text + done.stderr
    for holder in holders:
        for name in _names(holder.pairs):
            assert shown(name) in text, (shown(name), text)


def test_doctor_command_lines_are_exact_shell_words(holders: list[Holder]) -> None:
    """A confirm line, pasted into bash, names the interface exactly (read-only: ip link show)."""
    done = on_pipe("doctor", "--all")
    lines = [line.split("confirm:", 1)[1].strip() for line in done.stdout.splitlines() if "confirm:" in line]
    wanted = [line for line in lines if "nsenter" in line and "$'" in line and "link show" in line]
    assert wanted, done.stdout
    for line in wanted:
        ran = subprocess.run(["bash", "-c", line], capture_output=True)
        assert ran.returncode == 0, (line, ran.stderr)


@pytest.mark.parametrize("how", ["pipe", "pty"])
def test_graph(holders: list[Holder], how: str) -> None:
    # the label shown as in a table, then escaped for the format: DOT doubles a backslash,
    # Mermaid writes it as an entity
    for output, escaped in (("dot", "hq\\\\x1b[2Jx"), ("mermaid", "hq#92;x1b#91;2Jx")):
        done = RUNNERS[how]("graph", "-o", output)
        assert done.returncode == 0, done
        assert escaped in done.stdout


@pytest.mark.parametrize("how", ["pipe", "pty"])
def test_completion_candidates(holders: list[Holder], how: str) -> None:
    done = RUNNERS[how]("completion", "--list-targets")
    assert done.returncode == 0, done
    lines = done.stdout.splitlines()
    assert shown(NETNS) in lines  # one candidate, its newline shown as \x0a
    assert "q" not in lines


@pytest.mark.parametrize("how", ["pipe", "pty"])
def test_top_once(holders: list[Holder], how: str) -> None:
    done = RUNNERS[how]("top", "--once", "-d", "0.5")
    assert done.returncode == 0, done
    for name in _names(holders[1].pairs):
        assert shown(name) in done.stdout


def test_top_live_screen(holders: list[Holder]) -> None:
    done = on_pty("top", "-d", "0.5", keys=b"q", after=3.0, timeout=30, screen=True)
    assert done.returncode == 0, done
    assert shown(PAIRS_B[0][0]) in done.stdout or shown(PAIRS_A[0][1]) in done.stdout


@pytest.mark.parametrize("how", ["pipe", "pty"])
def test_watch(user_lab: UserLab, how: str) -> None:
    """`watch` as a person runs it: the user starts one more namespace while it watches (found by
    the process rescan: no nsid ties it to the host), then Ctrl-C."""
    comm = b"vqa\x1b]0;w\x07" + how.encode()[:2]
    new = (b"vqa\x1b[2Jw" + how.encode()[:2], b"vqa\x07\xfe" + how.encode()[:2])
    started: list[Holder] = []
    try:
        if how == "pipe":
            proc = subprocess.Popen(
                [sys.executable, "-m", "vethpeer", "watch"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            assert proc.stderr is not None
            assert b"watching" in proc.stderr.readline()
            started.append(user_lab.start(comm, [new]))
            time.sleep(3)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
            done = Run(proc.returncode, clean(out, tty=False), clean(err, tty=False))
        else:
            timer = threading.Timer(2.0, lambda: started.append(user_lab.start(comm, [new])))
            timer.start()
            done = on_pty("watch", interrupt=True, after=6.0, timeout=60)
            timer.join()
    finally:
        for holder in started:
            user_lab.stop(holder)
    assert done.returncode == 130, done  # interrupted, as documented
    for name in (comm, *new):
        assert shown(name) in done.stdout, (shown(name), done.stdout)


def test_json_keeps_the_exact_names(holders: list[Holder]) -> None:
    done = run_vethpeer("table", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    names = {
        end["ifname"].encode("utf-8", "surrogateescape")
        for entry in data["interfaces"]
        for end in (entry, entry["peer"] or entry)
    }
    assert set(_names(PAIRS_A) + _names(PAIRS_B)) <= names
    labels = {entry["workload"]["label"] for entry in data["interfaces"]}
    assert f"pid/{holders[0].pid} ({COMM_A.decode()})" in labels
    assert f"pid/{holders[1].pid} ({COMM_B.decode('utf-8', 'surrogateescape')})" in labels
