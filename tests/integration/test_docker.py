"""Docker containers against a real Docker engine, through the real CLI.

Needs root, Debian's ``docker.io`` (dockerd), ``busybox-static`` (the test image is a
``docker import`` of it: no registry is reachable) and the ``docker`` SDK. The engine on
/var/run/docker.sock is used as it is when one answers there (on a Debian host it is a
service: it is never stopped, frozen or reconfigured); if none answers, one is started and
stopped at the end. Everything created is named ``vpd-*`` or labelled
``vethpeer.test-owner=vpd`` and removed at the end, pass or fail (the test image too, if it
was not there before). The tests that stop or freeze an engine are in
test_docker_engine_away.py, on a private engine of their own.

Every assertion about a veth compares with the kernel's own answer for the container's
init PID: ``nsenter -t PID -n ip -j link show eth0`` -> IFLA_LINK -> the host interface
with that ifindex (see tests/lab/docker_lab.py: peer_ifindex_of, host_ifname).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import Cli, run_vethpeer
from tests.lab import docker_lab as lab
from tests.policy import need

pytestmark = pytest.mark.integration

PREFIX = "vpd-it"
NET1, NET2 = "vpd-it-net1", "vpd-it-net2"


# ---------------------------------------------------------------- the engine and the containers


@pytest.fixture(scope="module")
def engine() -> Iterator[tuple[lab.DockerDaemon, Any]]:
    need(os.geteuid() == 0, "needs root")
    need(os.access(lab.DOCKERD, os.X_OK), f"needs {lab.DOCKERD} (apt-get install docker.io)")
    need(os.access(lab.BUSYBOX, os.X_OK), f"needs {lab.BUSYBOX} (apt-get install busybox-static)")
    need(importlib.util.find_spec("docker") is not None, "needs the docker Python SDK")
    daemon = lab.ensure_dockerd()
    client = daemon.client()
    had_image = bool(client.images.list(name=lab.TEST_IMAGE))
    try:
        lab.cleanup(client, PREFIX)
        lab.ensure_image(client)
        lab.create_network(client, NET1, "10.213.101.0/24")
        lab.create_network(client, NET2, "10.213.102.0/24")
        yield daemon, client
    finally:
        try:
            lab.cleanup(client, PREFIX)
            lab.cleanup(client, "vpd")  # labelled k8s_* ones
            if not had_image:  # not forced: a container of someone else's may use it by now
                with contextlib.suppress(importlib.import_module("docker").errors.APIError):
                    client.images.remove(lab.TEST_IMAGE)
        finally:
            client.close()
            daemon.stop()


@pytest.fixture(scope="module")
def client(engine: tuple[lab.DockerDaemon, Any]) -> Any:
    return engine[1]


def run(client: Any, name: str, **kwargs: Any) -> Any:
    return lab.run_container(client, name, **kwargs)


@pytest.fixture(scope="module")
def containers(client: Any) -> dict[str, Any]:
    """The module's long-lived containers, one per network mode."""
    made = {
        "bridge": run(client, f"{PREFIX}-bridge"),
        "user": run(client, f"{PREFIX}-user", network=NET1),
        "two": run(client, f"{PREFIX}-two", network=NET1, networks=[NET2]),
        "host": run(client, f"{PREFIX}-host", network="host"),
        "none": run(client, f"{PREFIX}-none", network="none"),
    }
    made["join"] = run(client, f"{PREFIX}-join", network=f"container:{PREFIX}-bridge")
    return made


# ---------------------------------------------------------------- oracles and helpers


def pid_of(client: Any, name: str) -> int:
    pid = lab.container_pid(client, name)
    assert pid > 0, f"{name} is not running"
    return pid


def kernel_peer(client: Any, name: str, ifname: str = "eth0") -> str:
    """The host-side veth of IFNAME in the container, as the kernel says."""
    found = lab.host_ifname(lab.peer_ifindex_of(pid_of(client, name), ifname))
    assert found is not None, f"the kernel shows no host peer for {name}'s {ifname}"
    return found


def table() -> dict[str, Any]:
    done = run_vethpeer("table", "--json")
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = done.json()
    return data


def rows_of(data: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [i for i in data["interfaces"] if i["workload"]["name"] == name]


def by_ifname(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["ifname"]: r for r in rows}


def source(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in data["sources"] if s["name"] == name)


def which(*args: str) -> Cli:
    return run_vethpeer("which", *args)


def bridge_of(client: Any, network: str) -> str:
    """The Linux bridge behind a user-defined network: br-<first 12 of its ID>."""
    return "br-" + str(client.networks.get(network).id)[:12]


# ---------------------------------------------------------------- network modes


def test_default_bridge(client: Any, containers: dict[str, Any]) -> None:
    name = f"{PREFIX}-bridge"
    data = table()
    assert source(data, "docker")["status"] == "ok"
    rows = by_ifname(rows_of(data, name))
    assert set(rows) == {"eth0"}
    eth0 = rows["eth0"]
    workload = eth0["workload"]
    assert workload["kind"] == "docker"
    assert workload["id"] == containers["bridge"].id and len(workload["id"]) == 64
    assert workload["image"] == lab.TEST_IMAGE
    assert workload["networks"] == ["bridge"]
    assert eth0["peer"]["ifname"] == kernel_peer(client, name)
    default_bridge = client.networks.get("bridge").attrs["Options"]["com.docker.network.bridge.name"]
    assert eth0["peer"]["kind"] == "veth" and eth0["peer"]["master"] == default_bridge
    assert eth0["peer"]["netns"]["is_host"] is True


def test_user_defined_network(client: Any, containers: dict[str, Any]) -> None:
    name = f"{PREFIX}-user"
    (row,) = rows_of(table(), name)
    assert row["ifname"] == "eth0"
    assert row["peer"]["ifname"] == kernel_peer(client, name)
    assert row["peer"]["master"] == bridge_of(client, NET1)
    assert row["workload"]["networks"] == [NET1]
    assert row["addresses"][0].startswith("10.213.101.")


def test_two_networks_two_rows(client: Any, containers: dict[str, Any]) -> None:
    name = f"{PREFIX}-two"
    rows = by_ifname(rows_of(table(), name))
    assert set(rows) == {"eth0", "eth1"}
    assert rows["eth0"]["peer"]["ifname"] == kernel_peer(client, name, "eth0")
    assert rows["eth1"]["peer"]["ifname"] == kernel_peer(client, name, "eth1")
    assert rows["eth0"]["peer"]["ifname"] != rows["eth1"]["peer"]["ifname"]
    assert {rows["eth0"]["peer"]["master"], rows["eth1"]["peer"]["master"]} == {
        bridge_of(client, NET1),
        bridge_of(client, NET2),
    }
    assert rows["eth0"]["workload"]["networks"] == [NET1, NET2]
    quiet = which("-q", name)
    assert quiet.returncode == 0, quiet.stderr
    assert sorted(quiet.stdout.split()) == sorted(
        [kernel_peer(client, name, "eth0"), kernel_peer(client, name, "eth1")]
    )


def test_host_network(client: Any, containers: dict[str, Any]) -> None:
    name = f"{PREFIX}-host"
    data = table()
    assert rows_of(data, name) == []  # no interface is printed as the container's
    shared = [w for w in data["workloads"] if w["host_network"] and w["workload"]["name"] == name]
    assert len(shared) == 1 and shared[0]["workload"]["id"] == containers["host"].id
    hosted = [w for w in data["workloads"] if not w["host_network"] and w["workload"]["name"] == name]
    assert hosted == []
    plain = which(name)
    assert plain.returncode == 0, plain.stderr
    assert f"docker/{name} shares the host network namespace" in plain.stdout
    # Never the host's own veths as if they were the container's: no table at all.
    assert plain.stdout.splitlines() == [
        f"docker/{name} shares the host network namespace: it has no veth of its own"
    ]
    # -q has no veth to print: not-found (3), so `tcpdump -i "$(vethpeer which -q X)"` stops early.
    quiet = which("-q", name)
    assert (quiet.returncode, quiet.stdout) == (3, "")
    assert (
        quiet.stderr.strip()
        == f"vethpeer: {name} has no host-side veth (it shares the host network namespace)"
    )


def test_container_network_mode_shares_one_namespace(client: Any, containers: dict[str, Any]) -> None:
    owner, joiner = f"{PREFIX}-bridge", f"{PREFIX}-join"
    assert pid_of(client, owner) != pid_of(client, joiner)
    assert (
        os.stat(f"/proc/{pid_of(client, owner)}/ns/net").st_ino
        == os.stat(f"/proc/{pid_of(client, joiner)}/ns/net").st_ino
    )
    data = table()
    assert rows_of(data, joiner) == []  # one namespace, one set of rows: named after the owner
    (row,) = rows_of(data, owner)
    assert row["workload"]["containers"] == [owner, joiner]
    expected = kernel_peer(client, owner)
    for target in (joiner, containers["join"].id, containers["join"].id[:12]):
        quiet = which("-q", target)
        assert (quiet.returncode, quiet.stdout.split()) == (0, [expected]), (target, quiet.stderr)


def test_text_names_the_joined_container(client: Any, containers: dict[str, Any]) -> None:
    """In text too, not only in the JSON: the owner's row says who joined, `which join` says why."""
    owner, joiner = f"{PREFIX}-bridge", f"{PREFIX}-join"
    done = run_vethpeer("table")
    assert done.returncode == 0, done.stderr
    assert f"docker/{owner} (+{joiner})" in done.stdout
    answer = which(joiner)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.startswith(f"{joiner} shares docker/{owner}'s network namespace\n")
    assert kernel_peer(client, owner) in answer.stdout
    assert "shares" not in which(owner).stdout


def test_network_none_loopback_only(client: Any, containers: dict[str, Any]) -> None:
    name = f"{PREFIX}-none"
    rows = rows_of(table(), name)
    assert [r["ifname"] for r in rows] == ["lo"]
    assert rows[0]["peer"] is None and rows[0]["unresolved_peer"] is None
    quiet = which("-q", name)
    assert (quiet.returncode, quiet.stdout) == (3, "")
    assert quiet.stderr.strip() == f"vethpeer: {name} has no host-side veth (no peer is in the host)"


def test_back_to_back_containers_get_their_own_veths(client: Any, containers: dict[str, Any]) -> None:
    """Two containers started at once. Their eth0 ifindex inside may be equal (Docker 28 and CNI
    create the pair inside the namespace; this Debian 20.10 engine does not), so an ifindex alone
    proves nothing: each must get the veth the kernel pairs with its own eth0."""
    first, second = f"{PREFIX}-b2b-1", f"{PREFIX}-b2b-2"
    run(client, first)
    run(client, second)
    data = table()
    peers = {}
    for name in (first, second):
        (row,) = rows_of(data, name)
        assert row["peer"]["ifname"] == kernel_peer(client, name)
        peers[name] = row["peer"]["ifname"]
    assert peers[first] != peers[second]
    for name, veth in peers.items():  # and the reverse question
        back = which("--json", veth)
        assert back.returncode == 0, back.stderr
        assert {i["workload"]["name"] for i in back.json()["interfaces"]} == {name}


def test_reverse_lookup_names_the_container(client: Any, containers: dict[str, Any]) -> None:
    veth = kernel_peer(client, f"{PREFIX}-user")
    done = which(veth)
    assert done.returncode == 0, done.stderr
    assert f"docker/{PREFIX}-user" in done.stdout


def test_stopped_between_two_runs(client: Any, containers: dict[str, Any]) -> None:
    name = f"{PREFIX}-stopped"
    run(client, name)
    veth = kernel_peer(client, name)
    (before,) = rows_of(table(), name)
    assert before["peer"]["ifname"] == veth
    client.containers.get(name).stop(timeout=5)
    after = table()
    assert rows_of(after, name) == []
    assert veth not in {i["ifname"] for i in after["interfaces"]}
    assert all((i["peer"] or {}).get("ifname") != veth for i in after["interfaces"])
    gone = which(name)
    assert gone.returncode == 3, (gone.stdout, gone.stderr)  # not found
    assert gone.stderr.count("\n") == 1 and "Traceback" not in gone.stderr


# ---------------------------------------------------------------- IDs


def test_full_id_and_unique_prefix(client: Any, containers: dict[str, Any]) -> None:
    name = f"{PREFIX}-user"
    cid = containers["user"].id
    expected = [kernel_peer(client, name)]
    others = [c.id for c in client.containers.list() if c.id != cid]
    length = next(
        n for n in range(3, 65) if not any(o.startswith(cid[:n]) for o in others) and not cid[:n].isdigit()
    )
    for target in (cid, cid[:12], cid[:length]):
        done = which("-q", target)
        assert (done.returncode, done.stdout.split()) == (0, expected), (target, done.stderr)


def _shortest_prefix() -> int:
    from vethpeer import targets as which_module

    pattern: re.Pattern[str] = which_module._ID_PREFIX
    return next(n for n in range(1, 65) if pattern.match("a" * n))


def test_ambiguous_prefix(client: Any, containers: dict[str, Any]) -> None:
    """A prefix shared by a joined container (``--network container:``) and a container with its
    own namespace: exit 4, and the candidates name the containers whose IDs matched, the joined
    one with the namespace it shares. The prefix is chosen from the IDs at hand (containers of
    both kinds are added until two fit), so the case runs every time, not when random IDs collide."""
    length = _shortest_prefix()
    owner = containers["bridge"]
    joins_owner = (f"container:{owner.id}", f"container:{owner.name}")
    made: list[Any] = []

    def pick() -> tuple[str, Any, Any] | None:
        """(prefix, joined, alone): not all digits (a PID), not a prefix of the owner's own ID."""
        ours = [c for c in client.containers.list(filters={"name": PREFIX}) if c.name.startswith(PREFIX)]
        mode = {c.id: c.attrs["HostConfig"]["NetworkMode"] for c in ours}
        joined = [c for c in ours if mode[c.id] in joins_owner]
        alone = [c for c in ours if c.id != owner.id and not mode[c.id].startswith(("container:", "host"))]
        for j in joined:
            prefix = j.id[:length]
            if prefix.isdigit() or owner.id.startswith(prefix):
                continue
            for a in alone:
                if a.id.startswith(prefix):
                    return prefix, j, a
        return None

    try:
        while (found := pick()) is None:
            assert len(made) < 200, f"no joined and lone container share a usable prefix after {len(made)}"
            network = f"container:{owner.name}" if len(made) % 2 == 0 else "none"
            made.append(run(client, f"{PREFIX}-amb-{len(made)}", network=network))
        prefix, joined, alone = found
        done = which(prefix)
        assert done.returncode == 4, (prefix, done.stdout, done.stderr)
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        assert f"docker/{alone.name}" in done.stderr, done.stderr
        shares = f"(shares docker/{owner.name}'s netns)"
        joiners = [
            c.name for c in client.containers.list(filters={"name": PREFIX}) if c.id.startswith(prefix)
        ]
        assert joined.name in joiners
        assert any(f"docker/{name} {shares}" in done.stderr for name in joiners), done.stderr
        # The owner's own ID did not match: it appears only as the namespace that is shared.
        assert done.stderr.count(f"docker/{owner.name}") == done.stderr.count(shares), done.stderr
    finally:
        for c in made:
            c.remove(force=True)


# ---------------------------------------------------------------- Kubernetes through Docker


def test_dockershim_pod(client: Any, containers: dict[str, Any]) -> None:
    uid = str(uuid.uuid4())
    pod, ns = "vpd-web", "vpd-ns"
    labels = {"io.kubernetes.pod.name": pod, "io.kubernetes.pod.namespace": ns, "io.kubernetes.pod.uid": uid}
    sandbox = run(
        client,
        f"k8s_POD_{pod}_{ns}_{uid}_0",
        labels={**labels, "io.kubernetes.docker.type": "podsandbox"},
    )
    app = run(
        client,
        f"k8s_app_{pod}_{ns}_{uid}_0",
        network=f"container:{sandbox.id}",
        labels={**labels, "io.kubernetes.container.name": "app", "io.kubernetes.docker.type": "container"},
    )
    expected = kernel_peer(client, sandbox.name)
    data = table()
    rows = [i for i in data["interfaces"] if i["workload"]["uid"] == uid]
    assert [r["ifname"] for r in rows] == ["eth0"]
    w = rows[0]["workload"]
    assert (w["kind"], w["name"], w["namespace"], w["id"], w["containers"]) == (
        "pod",
        pod,
        ns,
        sandbox.id,
        ["app"],
    )
    assert w["container_ids"] == [app.id] and w["source"] == "docker"
    assert rows[0]["peer"]["ifname"] == expected
    for target in (f"{ns}/{pod}", f"pod/{pod}", sandbox.id[:12], app.id):
        done = which("-q", target)
        assert (done.returncode, done.stdout.split()) == (0, [expected]), (target, done.stderr)


def test_sdk_and_socket_clients_agree(client: Any, containers: dict[str, Any]) -> None:
    """The plain-socket client (local unix sockets) and the docker SDK (tcp://, ssh://, or
    VETHPEER_DOCKER_SDK=1) must produce the same claims."""
    from vethpeer.netns import discover
    from vethpeer.sources import Context, Options
    from vethpeer.sources.docker import DockerNames

    found = discover()
    context = Context(found.host, found.namespaces, Options(timeout=10))
    plain = DockerNames(use_sdk=False).collect(context)
    sdk = DockerNames(use_sdk=True).collect(context)
    assert plain.status.state.value == sdk.status.state.value == "ok", (plain.status, sdk.status)
    assert set(plain.claims) == set(sdk.claims)
    assert any(c.workload.name == f"{PREFIX}-bridge" for c in plain.claims)
