"""`vethpeer serve --web-config-file`: TLS and basic auth as real clients meet them, and every bad input.

Certificates are made by ``openssl``, password hashes by Apache's ``htpasswd`` ($2y$), the
clients are Python's ssl, ``curl``, ``openssl s_client`` and Debian's ``slowhttptest``. Servers
listen on 127.0.0.1, ports 21100-21199; temp files are /tmp/vqb-*; the one lab (slowhttptest's)
is namespaces vqb-*. Every test ends by checking that the server process is still up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.lab.serve_lab import PYTHON, ROOT, BridgeLab, Served, free_port, get, raw, serve
from tests.lab.tls_lab import (
    PORTS,
    Pki,
    basic,
    client_context,
    htpasswd_hash,
    pki,
    secured,
    stalled_handshake,
    tls_get,
)
from tests.policy import need_binary, need_root

pytestmark = pytest.mark.integration


PASSWORD = "s3cret-vqb"


def port() -> int:
    return free_port(*PORTS)


def web_config(made: Pki, **tls: Any) -> dict[str, Any]:
    return {
        "tls_server_config": {"cert_file": "server.crt", "key_file": "server.key", **tls},
        "basic_auth_users": {"prometheus": htpasswd_hash("prometheus", PASSWORD)},
        "http_server_config": {"headers": {"X-Frame-Options": "deny"}},
    }


@pytest.fixture(scope="module")
def made() -> Iterator[Pki]:
    need_root()
    with pki() as built:
        built.issue("expired", days=-1)
        built.ca("other")
        built.issue("stranger", ca="other")
        yield built


@pytest.fixture(scope="module")
def server(made: Pki) -> Iterator[Served]:
    """TLS, client certificates verified if given (against ca.crt), one user."""
    config = web_config(made, client_auth_type="VerifyClientCertIfGiven", client_ca_file="ca.crt")
    with secured(made, config) as served:
        yield served


@pytest.fixture
def context(made: Pki) -> ssl.SSLContext:
    return client_context(made.path("ca.crt"))


def alive(served: Served) -> None:
    assert served.process.poll() is None, served.stderr()


def test_the_right_user_and_password_get_metrics(server: Served, context: ssl.SSLContext) -> None:
    reply = tls_get(server.port, "/metrics", context, basic("prometheus", PASSWORD))
    assert reply.status == 200 and b"vethpeer_interface_info" in reply.body
    assert reply.headers["x-frame-options"] == "deny"  # http_server_config.headers
    alive(server)


def test_a_wrong_password_is_401(server: Served, context: ssl.SSLContext) -> None:
    reply = tls_get(server.port, "/metrics", context, basic("prometheus", "wrong"))
    assert reply.status == 401 and reply.headers["www-authenticate"].startswith("Basic")
    assert b"vethpeer" not in reply.body
    alive(server)


def test_an_unknown_user_is_401(server: Served, context: ssl.SSLContext) -> None:
    assert tls_get(server.port, "/api/v1/table", context, basic("mallory", PASSWORD)).status == 401
    alive(server)


@pytest.mark.parametrize(
    "authorization", ["", "Basic", "Basic ###", "Basic " + "QQ==" * 2000, "Bearer x", "Basic bm9jb2xvbg=="]
)
def test_an_empty_or_malformed_authorization_header_is_401(
    server: Served, context: ssl.SSLContext, authorization: str
) -> None:
    assert tls_get(server.port, "/metrics", context, {"Authorization": authorization}).status in (401, 431)
    alive(server)


def test_no_credentials_is_401_but_the_probes_answer_ok_only(server: Served, context: ssl.SSLContext) -> None:
    assert tls_get(server.port, "/metrics", context).status == 401
    for path in ("/healthz", "/readyz"):
        reply = tls_get(server.port, path, context)
        assert (reply.status, reply.body) == (200, b"ok\n")
    alive(server)


def test_a_valid_client_certificate_is_accepted(made: Pki, server: Served) -> None:
    context = client_context(made.path("ca.crt"), made.path("client.crt"), made.path("client.key"))
    assert tls_get(server.port, "/metrics", context, basic("prometheus", PASSWORD)).status == 200
    alive(server)


@pytest.mark.parametrize("name", ["expired", "stranger"])
def test_an_expired_or_other_ca_client_certificate_is_refused_in_the_handshake(
    made: Pki, server: Served, name: str
) -> None:
    context = client_context(made.path("ca.crt"), made.path(f"{name}.crt"), made.path(f"{name}.key"))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls_get(server.port, "/healthz", context, basic("prometheus", PASSWORD))
    assert tls_get(server.port, "/healthz", client_context(made.path("ca.crt"))).status == 200
    assert "TLS handshake with 127.0.0.1 failed" in server.stderr()
    alive(server)


def test_curl_with_an_expired_client_certificate_fails(made: Pki, server: Served) -> None:
    curl = need_binary("curl")
    done = subprocess.run(
        [curl, "-sS", "--max-time", "5", "--cacert", made.path("ca.crt"), "--cert", made.path("expired.crt"),
         "--key", made.path("expired.key"), f"https://127.0.0.1:{server.port}/healthz"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode != 0, done.stdout
    alive(server)


def test_a_plaintext_request_to_the_tls_port_gets_go_s_400(server: Served) -> None:
    answer = raw(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 400 Bad Request\r\n")
    assert answer.endswith(b"Client sent an HTTP request to an HTTPS server.\n")
    curl = need_binary("curl")
    done = subprocess.run(
        [curl, "-sS", "--max-time", "5", f"http://127.0.0.1:{server.port}/metrics"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert "Client sent an HTTP request to an HTTPS server." in done.stdout
    alive(server)


@pytest.mark.parametrize(
    "garbage",
    [b"\x16\x03\x01\x00\x05hello", b"\x00" * 5000, os.urandom(4096), b"\x16\x03\x03\xff\xff" + b"A" * 70000],
)
def test_garbage_to_the_tls_port_is_closed_and_the_server_lives_on(
    server: Served, context: ssl.SSLContext, garbage: bytes
) -> None:
    raw(server.port, garbage, timeout=8)
    assert tls_get(server.port, "/healthz", context).status == 200
    alive(server)


def test_a_handshake_that_never_completes_does_not_hold_a_worker(made: Pki, context: ssl.SSLContext) -> None:
    """Six stalled handshakes on a server with eight slots: others are served at once, and the
    stalled ones are cut off at the header deadline (5 s)."""
    config = web_config(made)
    with secured(made, config, "--max-clients", "8", "--max-per-client", "8", name="small.yml") as served:
        stalled = [stalled_handshake(served.port) for _ in range(6)]
        try:
            time.sleep(0.3)
            start = time.monotonic()
            for _ in range(3):
                assert tls_get(served.port, "/metrics", context, basic("prometheus", PASSWORD)).status == 200
            assert time.monotonic() - start < 3.0
            cut = 0
            for sock in stalled:
                sock.settimeout(8)
                with contextlib.suppress(OSError):
                    cut += sock.recv(100) == b""
            assert cut == len(stalled)
        finally:
            for sock in stalled:
                sock.close()
        assert tls_get(served.port, "/healthz", context).status == 200


def test_stalled_handshakes_from_one_address_are_capped(made: Pki, context: ssl.SSLContext) -> None:
    with secured(made, web_config(made), "--max-per-client", "4", name="capped.yml") as served:
        stalled = [stalled_handshake(served.port) for _ in range(10)]
        try:
            time.sleep(0.3)
            closed = 0
            for sock in stalled:
                sock.settimeout(0.5)
                with contextlib.suppress(TimeoutError):
                    closed += sock.recv(100) == b""
            assert closed == 6, "beyond 4, closed at once (no plaintext 503 on a TLS port)"
            reply = tls_get(served.port, "/healthz", context, source="127.0.0.2")
            assert reply.status == 200
            assert "more than 4 connections from 127.0.0.1" in served.stderr()
        finally:
            for sock in stalled:
                sock.close()


def _s_client(port: int, made: Pki, version: str) -> subprocess.CompletedProcess[str]:
    openssl = need_binary("openssl")
    return subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(made.path("ca.crt")), version,
         "-verify_return_error", "-brief"],
        input="", capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(("version", "ok"), [("-tls1_3", True), ("-tls1_2", True), ("-tls1_1", False)])
def test_openssl_s_client_negotiates_tls_1_2_and_1_3_not_1_1(
    made: Pki, server: Served, version: str, ok: bool
) -> None:
    done = _s_client(server.port, made, version)
    wanted = {"-tls1_3": "TLSv1.3", "-tls1_2": "TLSv1.2"}.get(version)
    if ok:
        assert done.returncode == 0 and f"Protocol version: {wanted}" in done.stderr, done.stderr
    else:
        assert done.returncode != 0
    alive(server)


@pytest.mark.parametrize(("flags", "ok"), [(["--tlsv1.3"], True), (["--tlsv1.2", "--tls-max", "1.2"], True),
                                           (["--tlsv1.1", "--tls-max", "1.1"], False)])  # fmt: skip
def test_curl_negotiates_tls_1_2_and_1_3_not_1_1(
    made: Pki, server: Served, flags: list[str], ok: bool
) -> None:
    curl = need_binary("curl")
    done = subprocess.run(
        [curl, "-sS", "--max-time", "5", "--cacert", made.path("ca.crt"), *flags,
         "-u", f"prometheus:{PASSWORD}", "-o", "/dev/null", "-w", "%{http_code}",
         f"https://127.0.0.1:{server.port}/metrics"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert (done.returncode == 0 and done.stdout == "200") is ok, done.stderr
    alive(server)


def test_min_version_is_honoured(made: Pki) -> None:
    with secured(made, web_config(made, min_version="TLS13"), name="tls13.yml") as served:
        assert _s_client(served.port, made, "-tls1_3").returncode == 0
        assert _s_client(served.port, made, "-tls1_2").returncode != 0


def test_client_allowed_sans(made: Pki) -> None:
    config = web_config(
        made,
        client_auth_type="RequireAndVerifyClientCert",
        client_ca_file="ca.crt",
        client_allowed_sans=["prometheus.vqb.test"],
    )
    made.issue("wrongsan", sans="DNS:other.vqb.test")
    with secured(made, config, name="sans.yml", client="client") as served:
        ca = made.path("ca.crt")
        good = client_context(ca, made.path("client.crt"), made.path("client.key"))
        assert tls_get(served.port, "/metrics", good, basic("prometheus", PASSWORD)).status == 200
        wrong = client_context(ca, made.path("wrongsan.crt"), made.path("wrongsan.key"))
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            tls_get(served.port, "/healthz", wrong)
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):  # no certificate at all
            tls_get(served.port, "/healthz", client_context(ca))


def _serial(port: int, made: Pki) -> int:
    context = client_context(made.path("ca.crt"))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial"], input=der,
                         capture_output=True, check=True)  # fmt: skip
    return int(out.stdout.decode().strip().split("=")[1], 16)


def test_certificates_are_rotated_without_a_restart_and_a_broken_one_keeps_the_last(made: Pki) -> None:
    """The kubelet's Secret volume: a directory swapped behind a symlink, as cert-manager's renewal does."""
    live = made.path("secret")
    shutil.rmtree(live, ignore_errors=True)
    live.mkdir()

    def publish(version: str, cert: bytes, key: bytes) -> None:
        data = live / version
        data.mkdir()
        (data / "tls.crt").write_bytes(cert)
        (data / "tls.key").write_bytes(key)
        link = live / "..data_tmp"
        link.symlink_to(version)
        os.replace(link, live / "..data")  # atomic, as kubelet's AtomicWriter
        for name in ("tls.crt", "tls.key"):
            if not (live / name).is_symlink():
                (live / name).symlink_to(f"..data/{name}")

    publish("v1", made.path("server.crt").read_bytes(), made.path("server.key").read_bytes())
    config = {"tls_server_config": {"cert_file": "secret/tls.crt", "key_file": "secret/tls.key"}}
    with secured(made, config, name="rotate.yml") as served:
        first = _serial(served.port, made)
        made.issue("server2", sans="IP:127.0.0.1", server=True)
        publish("v2", made.path("server2.crt").read_bytes(), made.path("server2.key").read_bytes())
        second = _serial(served.port, made)
        assert second != first, "the next connection has the new certificate"
        assert "reloaded the web config" in served.stderr()
        publish("v3", b"-----BEGIN CERTIFICATE-----\nbroken\n", b"not a key\n")
        for _ in range(3):
            assert _serial(served.port, made) == second, "a broken new certificate keeps the last good one"
        assert served.stderr().count("cannot be used, keeping the last good one") == 1


def test_a_bad_web_config_is_a_one_line_usage_error(made: Pki) -> None:
    bad = made.write_config(
        {"tls_server_config": {"cert_file": "missing.crt", "key_file": "server.key"}}, "bad.yml"
    )
    for path, message in [
        (bad, "cannot load the certificate and key"),
        (made.path("nonexistent.yml"), "cannot read the web config"),
        (made.write_config({"basic_auth_users": {"u": "plain"}}, "plain.yml"), "is not a bcrypt hash"),
        (made.write_config({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key",
                            "client_auth_type": "RequireAnyClientCert"}}, "any.yml"), "not supported"),
    ]:  # fmt: skip
        done = subprocess.run(
            [PYTHON, "-m", "vethpeer", "serve", "--no-kube", "--listen", f"127.0.0.1:{port()}",
             "--web-config-file", str(path)],
            capture_output=True, text=True, cwd=ROOT, timeout=30, check=False,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("vethpeer: ") and message in lines[0], done.stderr


def test_no_web_config_is_plain_http_without_auth_as_before() -> None:
    need_root()
    with serve("--no-kube", port=port()) as served:
        assert get(served.port, "/metrics").status == 200
        assert (get(served.port, "/healthz").status, get(served.port, "/readyz").status) == (200, 200)
        assert "(--web-config-file)" not in served.stderr() and "listening on http://" in served.stderr()


# --- slow clients, with Debian's slowhttptest -----------------------------------------------------

NAMESPACES = int(os.environ.get("VQB_SLOW_NAMESPACES", "200"))
ATTACK_SECONDS = 12.0


def attack_and_probe(served: Served, slowhttptest: str) -> tuple[list[tuple[int, float]], str]:
    """``slowhttptest -H`` with 1,000 connections from 127.0.0.1, started again whenever a run ends
    (cut off at the header deadline, a run lasts ~5 s), for ATTACK_SECONDS; meanwhile one scrape
    from 127.0.0.2 every half second. Returns (status, seconds) per scrape and the last run's report."""
    url = f"http://127.0.0.1:{served.port}/metrics"
    argv = [slowhttptest, "-H", "-c", "1000", "-r", "1000", "-i", "3", "-l", "15", "-p", "2", "-u", url]
    stop = threading.Event()
    report: list[str] = [""]

    def attack() -> None:
        while not stop.is_set():
            run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                report[0] = run.communicate(timeout=30)[0]
            finally:
                if run.poll() is None:
                    run.kill()
                    run.wait()

    attacker = threading.Thread(target=attack, daemon=True)
    attacker.start()
    probes: list[tuple[int, float]] = []
    try:
        time.sleep(1.5)  # the first thousand connections are in
        end = time.monotonic() + ATTACK_SECONDS
        while time.monotonic() < end:
            start = time.monotonic()
            try:
                status = get(served.port, "/metrics", source="127.0.0.2", timeout=5).status
            except OSError:
                status = 0
            probes.append((status, time.monotonic() - start))
            time.sleep(0.5)
    finally:
        stop.set()
        attacker.join(40)
    return probes, report[0]


def test_slowhttptest_from_one_address_does_not_deny_another() -> None:
    """Slowloris (Debian's slowhttptest, 1,000 connections a run) from 127.0.0.1 at N namespaces:
    every scrape from 127.0.0.2 is a 200 within 2 s, and the attacker's address is served again
    afterwards. The control: with the per-client limit lifted (--max-per-client 1000), the same
    attack does deny service (a scrape is refused or slow), so the test measures the limit."""
    need_root()
    slowhttptest = need_binary("slowhttptest")
    with BridgeLab(NAMESPACES, inside=False, prefix="vqb") as lab:
        assert len(lab.members) == NAMESPACES
        with serve("--no-kube", port=port()) as served:
            probes, report = attack_and_probe(served, slowhttptest)
            assert "SLOW HEADERS" in report and "1000" in report, report[-2000:]
            assert len(probes) >= 10
            assert all(status == 200 for status, _ in probes), probes
            assert max(seconds for _, seconds in probes) < 2.0, probes
            assert "more than 16 connections from 127.0.0.1" in served.stderr()
            assert get(served.port, "/metrics").status == 200, "the attacker's address is served again"
            assert served.process.poll() is None
        with serve("--no-kube", "--max-per-client", "1000", port=port()) as served:
            probes, _report = attack_and_probe(served, slowhttptest)
            assert any(status != 200 or seconds >= 2.0 for status, seconds in probes), probes
            assert served.process.poll() is None


def test_tls_connections_good_and_bad_leave_no_file_descriptors_behind(made: Pki, server: Served) -> None:
    def fds() -> int:
        return len(os.listdir(f"/proc/{server.process.pid}/fd"))

    good = client_context(made.path("ca.crt"))
    stranger = client_context(made.path("ca.crt"), made.path("stranger.crt"), made.path("stranger.key"))
    tls_get(server.port, "/metrics", good, basic("prometheus", PASSWORD))
    time.sleep(0.5)
    before = fds()
    for _ in range(30):
        assert tls_get(server.port, "/metrics", good, basic("prometheus", PASSWORD)).status == 200
        assert tls_get(server.port, "/metrics", good, basic("prometheus", "wrong")).status == 401
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            tls_get(server.port, "/healthz", stranger)
        raw(server.port, b"GET / HTTP/1.1\r\n\r\n")
        raw(server.port, b"\x16\x03\x01\x00\x07garbage")  # a whole record, not a handshake
    time.sleep(1.0)
    assert fds() <= before + 2, (before, fds())
    alive(server)


def test_tls_from_the_web_config_with_kube_auth(made: Pki, context: ssl.SSLContext) -> None:
    """The contract between the modes: a web config with only TLS and --kube-auth is TLS, then a
    bearer token checked by the (stand-in) API server; the probes stay open, the counts say kube."""
    from tests.lab.kube_api import api_server, kubeconfig_file, service_account

    prometheus = service_account("monitoring", "prometheus-k8s")
    with api_server(port=port()) as api, kubeconfig_file(api.url, "vqb-agent", "vqb") as kubeconfig:
        api.reviews.tokens["prom"] = prometheus
        api.reviews.grant(prometheus.username, "get /metrics")
        config = {"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key"}}
        argv = ("--kube-auth", "--kube-auth-kubeconfig", kubeconfig)
        with secured(made, config, *argv, name="tls-kube.yml") as served:
            scrape = tls_get(served.port, "/metrics", context, {"Authorization": "Bearer prom"})
            assert scrape.status == 200
            assert 'vethpeer_auth_requests_total{mode="kube",result="allowed"}' in scrape.body.decode()
            refused = tls_get(served.port, "/metrics", context, basic("prometheus", PASSWORD))
            assert refused.status == 401 and refused.headers["www-authenticate"].startswith("Bearer")
            assert tls_get(served.port, "/readyz", context).body == b"ok\n"
            assert raw(served.port, b"GET /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.0 400")
            assert "listening on https://" in served.stderr() and "(--kube-auth)" in served.stderr()
