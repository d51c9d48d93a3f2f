"""`vethpeer serve` as a real process over real namespaces: every endpoint, every bad request, SIGTERM,
a source that hangs, a scrape storm. (The Prometheus join is in test_serve_prometheus.py.)"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from tests.lab.serve_lab import PYTHON, ROOT, BridgeLab, Served, get, hung_unix_socket, raw, serve
from tests.policy import need_binary

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab() -> Iterator[BridgeLab]:
    need_binary("ip")
    with BridgeLab(3) as built:
        subprocess.run(["ip", "-n", built.members[0].netns, "link", "set", "eth0", "mtu", "1400"], check=True)
        built.traffic()
        yield built


@pytest.fixture(scope="module", params=["walks", "live"])
def server(lab: BridgeLab, request: pytest.FixtureRequest) -> Iterator[Served]:
    """The same answers whether walks on demand or the live model (`serve --live`) serve them."""
    live = ("--live",) if request.param == "live" else ()
    with serve(*live, "--min-interval", "1", "--no-kube") as served:
        wait_for_checks(served)
        yield served


def wait_for_checks(served: Served, timeout: float = 20.0) -> None:
    """Until findings are served: the doctor's checks run after the first walk (scrapes do not wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if samples(get(served.port, "/metrics").body.decode(), "vethpeer_doctor_up")[0].value == 1:
            return
        time.sleep(0.2)
    raise AssertionError("the doctor's checks never ran")


def samples(text: str, name: str) -> list[Any]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples if s.name == name]


def cli_json(*args: str) -> Any:
    done = subprocess.run(
        [PYTHON, "-m", "vethpeer", *args, "--no-kube"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode in (0, 6), done.stderr
    return json.loads(done.stdout)


def lab_entries(document: dict[str, Any], lab: BridgeLab) -> list[Any]:
    """The document's interface entries in the lab's namespaces (other labs on this machine come and go)."""
    inodes = {m.inode for m in lab.members}
    return sorted(
        (e for e in document["interfaces"] if e["netns"]["inode"] in inodes),
        key=lambda e: e["netns"]["inode"],
    )


def test_interface_info_is_one_series_per_lab_veth_with_its_workload(lab: BridgeLab, server: Served) -> None:
    reply = get(server.port, "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = reply.body.decode()
    info = samples(text, "vethpeer_interface_info")
    devices = [s.labels["device"] for s in info]
    assert len(devices) == len(set(devices)), "device must be unique"
    by_device = {s.labels["device"]: s for s in info}
    for m in lab.members:
        s = by_device[m.host_veth]
        assert s.value == 1
        assert s.labels == {
            "device": m.host_veth,
            "interface": "eth0",
            "netns_inode": str(m.inode),
            "workload_kind": "netns",
            "workload": f"netns/{m.netns}",
            "bridge": lab.bridge,
        }
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            assert "" not in s.labels.values(), f"empty label in {s}"
            assert not any("198.18" in v or "198.19" in v for v in s.labels.values()), (
                "no addresses in labels"
            )


def test_workload_counters_come_from_the_same_dump(lab: BridgeLab, server: Served) -> None:
    text = get(server.port, "/metrics").body.decode()
    received = {
        s.labels["device"]: s.value for s in samples(text, "vethpeer_workload_network_receive_packets_total")
    }
    sent = {
        s.labels["device"]: s.value for s in samples(text, "vethpeer_workload_network_transmit_packets_total")
    }
    for m in lab.members:
        assert received[m.host_veth] >= 5 and sent[m.host_veth] >= 5
    for name in (
        "receive_drop",
        "transmit_drop",
        "receive_errs",
        "transmit_errs",
        "receive_bytes",
        "transmit_bytes",
    ):
        assert {m.host_veth for m in lab.members} <= {
            s.labels["device"] for s in samples(text, f"vethpeer_workload_network_{name}_total")
        }


def test_findings_are_series_an_alert_can_page_on(lab: BridgeLab, server: Served) -> None:
    text = get(server.port, "/metrics").body.decode()
    ours = {f"netns/{m.netns}" for m in lab.members}  # other labs on this machine have findings too
    findings = [s for s in samples(text, "vethpeer_finding") if s.labels["workload"] in ours]
    mtu = [s for s in findings if s.labels["check"] == "mtu-mismatch"]
    assert [s.labels["workload"] for s in mtu] == [f"netns/{lab.members[0].netns}"]
    assert mtu[0].labels["severity"] == "warning"
    assert mtu[0].labels["device"] == lab.members[0].host_veth
    no_route = {s.labels["workload"] for s in findings if s.labels["check"] == "no-default-route"}
    assert {f"netns/{m.netns}" for m in lab.members} <= no_route


def test_health_metrics(server: Served) -> None:
    text = get(server.port, "/metrics").body.decode()
    values = {s.name: s for family in text_string_to_metric_families(text) for s in family.samples}
    assert values["vethpeer_walk_namespaces"].value >= 3
    assert values["vethpeer_walk_duration_seconds"].value > 0
    assert values["vethpeer_result_stale"].value == 0
    assert values["vethpeer_walks_total"].value >= 1
    assert "vethpeer_walk_errors_total" in values
    assert "vethpeer_result_age_seconds" in values
    up = {s.labels["source"]: s.value for s in samples(text, "vethpeer_source_up")}
    assert up["kernel"] == 1


def test_openmetrics_when_the_scraper_asks(lab: BridgeLab, server: Served) -> None:
    reply = get(server.port, "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"})
    assert reply.headers["content-type"].startswith("application/openmetrics-text")
    text = reply.body.decode()
    assert text.endswith("# EOF\n") and text.count("# EOF") == 1
    families = {f.name: f for f in parse_openmetrics(text)}
    assert families["vethpeer_interface"].type == "info"
    devices = {s.labels["device"] for s in families["vethpeer_interface"].samples}
    assert {m.host_veth for m in lab.members} <= devices


def test_table_is_the_cli_document(lab: BridgeLab, server: Served) -> None:
    reply = get(server.port, "/api/v1/table")
    assert reply.status == 200 and reply.headers["content-type"] == "application/json"
    served, cli = reply.json(), cli_json("table", "--json")
    assert served.keys() == cli.keys()
    assert served["schema_version"] == cli["schema_version"] == 1
    assert lab_entries(served, lab) == lab_entries(cli, lab)
    assert len(lab_entries(served, lab)) == 3


def test_which_is_the_cli_document(lab: BridgeLab, server: Served) -> None:
    m = lab.members[1]
    for target in (m.host_veth, m.netns, m.address):
        reply = get(server.port, f"/api/v1/which/{target}")
        assert reply.status == 200, reply.body
        served, cli = reply.json(), cli_json("which", target, "--json")
        assert served.keys() == cli.keys()
        assert served["interfaces"] == cli["interfaces"]
        assert [e["netns"]["inode"] for e in served["interfaces"]] == [m.inode]


def test_which_errors_are_json(server: Served) -> None:
    missing = get(server.port, "/api/v1/which/vps-no-such-thing")
    assert missing.status == 404 and "nothing named" in missing.json()["error"]["message"]
    for evil in (
        "/api/v1/which/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/which/%2Frun%2Fnetns%2Fx",
        "/api/v1/which/../../etc/passwd",
        "/api/v1/which/%ff%fe",
        "/api/v1/which/a%00b",
        "/api/v1/which/" + "a" * 300,
        "/api/v1/which/",
    ):
        reply = get(server.port, evil)
        assert reply.status in (400, 404), (evil, reply.status)
        assert reply.headers["content-type"] == "application/json"


def test_doctor_is_the_cli_document(lab: BridgeLab, server: Served) -> None:
    served, cli = get(server.port, "/api/v1/doctor").json(), cli_json("doctor", "--json")
    assert served.keys() == cli.keys() and served["schema_version"] == cli["schema_version"]

    def lab_findings(document: dict[str, Any]) -> list[Any]:
        inodes = {m.inode for m in lab.members}
        return sorted(
            (f for f in document["findings"] if f["interface"]["netns"]["inode"] in inodes),
            key=lambda f: (f["check"], f["interface"]["netns"]["inode"]),
        )

    assert lab_findings(served) == lab_findings(cli)
    one = get(server.port, f"/api/v1/doctor?target={lab.members[0].netns}").json()
    assert {f["check"] for f in one["findings"]} >= {"mtu-mismatch", "no-default-route"}
    assert {f["interface"]["netns"]["inode"] for f in one["findings"]} == {lab.members[0].inode}


def test_findings_follow_routes_and_the_gateway_at_the_next_round(server: Served) -> None:
    """The doctor reads each workload's default routes and its gateway's neighbour entry at every round
    (no event tells of every change: a neighbour turning INCOMPLETE is announced by none): a default
    route added, its gateway not answering ARP, its subnet gone, the route deleted, each shows."""
    with BridgeLab(1) as pod:
        member = pod.members[0]

        def findings() -> dict[str, str]:
            document = get(server.port, "/api/v1/doctor").json()
            ours = (f for f in document["findings"] if f["interface"]["netns"]["inode"] == member.inode)
            return {f["check"]: f["message"] for f in ours}

        def until(wanted: Callable[[dict[str, str]], bool], what: str) -> None:
            deadline = time.monotonic() + 20
            while not wanted(found := findings()):
                assert time.monotonic() < deadline, f"{what}: still {found}"
                time.sleep(0.2)

        def ip(*args: str) -> None:
            subprocess.run(["ip", "-n", member.netns, *args], check=True)

        until(lambda f: "no-default-route" in f, "the pod without a default route")
        ip("addr", "add", "198.51.100.2/24", "dev", "eth0")  # a second subnet; its .1 is nobody's
        ip("route", "add", "default", "via", "198.51.100.1")
        until(lambda f: not f.keys() & {"no-default-route", "gateway-unreachable"}, "a default route added")
        # one datagram: the pod asks ARP for the gateway, unanswered (INCOMPLETE, then FAILED)
        probe = "import socket as s\ns.socket(s.AF_INET, s.SOCK_DGRAM).sendto(b'x', ('198.51.100.1', 9))"
        subprocess.run(["ip", "netns", "exec", member.netns, PYTHON, "-c", probe], check=True)
        until(lambda f: "nobody answers" in f.get("gateway-unreachable", ""), "a gateway not answering")
        ip("addr", "del", "198.51.100.2/24", "dev", "eth0")  # the route stays, its gateway in no subnet
        until(lambda f: "in no subnet" in f.get("gateway-unreachable", ""), "the gateway's subnet gone")
        ip("route", "del", "default")
        until(lambda f: "no-default-route" in f and "gateway-unreachable" not in f, "the route deleted")


def test_health_and_readiness(server: Served) -> None:
    assert get(server.port, "/healthz").body == b"ok\n"
    assert get(server.port, "/readyz").status == 200
    head = get(server.port, "/metrics", method="HEAD")
    assert head.status == 200 and head.body == b"" and int(head.headers["content-length"]) > 0


def test_other_methods_are_405_and_other_paths_404(server: Served) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        reply = get(server.port, "/metrics", method=method)
        assert reply.status == 405 and reply.headers["allow"] == "GET, HEAD"
    for path in ("/", "/metrics/", "/api/v1", "/api/v2/table", "/../etc/passwd", "/favicon.ico"):
        assert get(server.port, path).status == 404


def test_bad_requests_get_an_answer_and_the_server_lives_on(server: Served) -> None:
    port = server.port
    huge_header = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    assert raw(port, huge_header).startswith(b"HTTP/1.1 431")
    many = b"GET /metrics HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n"
    assert raw(port, many).startswith(b"HTTP/1.1 431")
    assert raw(port, b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 414")
    assert raw(port, b"\xff\xfe\x00\x01 garbage\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert raw(port, b"GET /api/v1/which/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n")[:12] in (
        b"HTTP/1.1 400",
        b"HTTP/1.1 404",
    )
    assert raw(port, b"GET /healthz HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n").startswith(b"HTTP/1.1 200")
    assert raw(port, b"BREW /healthz HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405")
    assert raw(port, b"GET /healthz HTTP/9.9\r\n\r\n")[:12] in (b"HTTP/1.1 505", b"HTTP/1.1 400")
    body = b"x" * 1_000_000
    post = b"POST /metrics HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    assert raw(port, post).startswith(b"HTTP/1.1 405")
    raw(port, b"GET /metr")  # and hang up mid-request
    assert get(port, "/healthz").status == 200
    assert server.process.poll() is None
    assert "Traceback" not in server.stderr()


def test_an_answer_is_not_reset_away_by_a_body_left_unread(server: Served) -> None:
    """A 405 to a POST whose body the server never reads: closing with the body unread would make
    the kernel reset the connection, and a client still sending gets EPIPE or ECONNRESET instead of
    the answer (this test's first version failed so, now and then). The server closes gently:
    it stops writing and drops what the client still sends, for a moment (a lingering close)."""
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"POST /metrics HTTP/1.1\r\nContent-Length: 300000\r\n\r\n" + b"x" * 100_000)
            time.sleep(0.05)  # the server answers and closes meanwhile
            sock.sendall(b"x" * 200_000)  # EPIPE here if it reset the connection
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 405"), answer[:100]
    assert get(server.port, "/healthz").status == 200


def test_slow_clients_do_not_stall_others_and_are_cut_off(server: Served) -> None:
    """20 slow clients from one address: 16 are held to the header deadline, the rest refused at
    once (--max-per-client, default an eighth of 128); another address is served meanwhile."""
    slow = []
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nX-Drip: ")
        slow.append(sock)
    try:
        start = time.monotonic()
        assert get(server.port, "/metrics", source="127.0.0.2").status == 200
        assert time.monotonic() - start < 2.0
        for _ in range(3):  # dripping one byte a second: the deadline is for the whole request
            time.sleep(1)
            for sock in slow:
                with contextlib.suppress(OSError):
                    sock.sendall(b"a")
        cut = 0
        deadline = time.monotonic() + 5
        for sock in slow:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                data = sock.recv(100)
            except OSError:
                data = b""
            cut += data == b"" or data.startswith(b"HTTP/1.1 503")  # cut off, or refused at once
        assert cut == len(slow), "every slow client is cut off within the header deadline (5 s)"
    finally:
        for sock in slow:
            sock.close()
    assert get(server.port, "/healthz").status == 200


def test_more_clients_than_slots_get_503_at_once_not_a_stall(lab: BridgeLab) -> None:
    with serve("--max-clients", "2", "--no-kube") as served:
        held = [socket.create_connection(("127.0.0.1", served.port)) for _ in range(2)]
        try:
            time.sleep(0.2)
            start = time.monotonic()
            assert raw(served.port, b"GET /healthz HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 503")
            assert time.monotonic() - start < 1.0
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.2)
        assert get(served.port, "/healthz").status == 200


def test_a_scrape_storm_costs_one_walk(lab: BridgeLab) -> None:
    with serve("--min-interval", "30", "--no-kube") as served:

        def walks() -> float:
            text = get(served.port, "/metrics").body.decode()
            return samples(text, "vethpeer_walks_total")[0].value

        before = walks()
        with ThreadPoolExecutor(50) as pool:
            statuses = list(pool.map(lambda _: get(served.port, "/metrics").status, range(100)))
        assert statuses == [200] * 100
        assert walks() == before  # inside --min-interval: every scrape from the cached walk


def test_a_storm_after_the_interval_shares_one_walk(lab: BridgeLab) -> None:
    with serve("--min-interval", "1", "--no-kube") as served:
        time.sleep(1.2)
        with ThreadPoolExecutor(40) as pool:
            replies = list(pool.map(lambda _: get(served.port, "/metrics"), range(40)))
        assert all(r.status == 200 for r in replies)
        counts = {samples(r.body.decode(), "vethpeer_walks_total")[0].value for r in replies}
        assert max(counts) - min(counts) <= 1 and max(counts) <= 2  # the warm-up walk, then one


def test_a_hanging_source_answers_from_the_last_good_walk_marked_stale(lab: BridgeLab) -> None:
    with (
        hung_unix_socket() as docker,
        serve("--docker-host", docker, "--timeout", "2", "--min-interval", "0.2", "--no-kube") as served,
    ):
        time.sleep(0.3)  # the warm-up walk (docker timed out: 2 s) is now older than --min-interval
        start = time.monotonic()
        reply = get(served.port, "/metrics", {"X-Prometheus-Scrape-Timeout-Seconds": "1.5"})
        took = time.monotonic() - start
        assert reply.status == 200 and took < 1.4, took
        assert reply.headers["x-vethpeer-stale"] == "1"
        text = reply.body.decode()
        assert samples(text, "vethpeer_result_stale")[0].value == 1
        up = {s.labels["source"]: s.value for s in samples(text, "vethpeer_source_up")}
        assert up["docker"] == 0
        devices = {s.labels["device"] for s in samples(text, "vethpeer_interface_info")}
        assert {m.host_veth for m in lab.members} <= devices
        table = get(served.port, "/api/v1/table", {"X-Prometheus-Scrape-Timeout-Seconds": "1"})
        assert table.status == 200 and table.headers["x-vethpeer-stale"] == "1"
        assert "docker: timeout" in served.stderr()


def test_sigterm_stops_within_a_second_even_mid_walk_and_with_a_client_hanging(lab: BridgeLab) -> None:
    with (
        hung_unix_socket() as docker,
        serve("--docker-host", docker, "--timeout", "5", "--no-kube", ready=False) as served,
    ):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", served.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        hanging = socket.create_connection(("127.0.0.1", served.port))
        hanging.sendall(
            b"GET /metrics HTTP/1.1\r\n"
        )  # and never finishes; the warm-up walk is stuck on docker
        try:
            time.sleep(0.3)
            start = time.monotonic()
            served.process.send_signal(signal.SIGTERM)
            served.process.wait(5)
            assert time.monotonic() - start < 1.0
            assert served.process.returncode == 0
            assert "stopped" in served.stderr()
        finally:
            hanging.close()


def test_listening_on_a_busy_port_is_a_clean_error(server: Served) -> None:
    done = subprocess.run(
        [PYTHON, "-m", "vethpeer", "serve", "--listen", f"127.0.0.1:{server.port}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=20,
        check=False,
    )
    assert done.returncode == 1 and "cannot listen" in done.stderr and "Traceback" not in done.stderr


def test_listen_address_must_be_an_address() -> None:
    done = subprocess.run(
        [PYTHON, "-m", "vethpeer", "serve", "--listen", "localhost:80"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=20,
        check=False,
    )
    assert done.returncode == 2 and "not an IP address" in done.stderr
