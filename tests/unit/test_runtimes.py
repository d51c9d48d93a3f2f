"""The runtime resolvers' pure parts, on text in the formats the runtimes document, and the
correlator's tap rows. Not live runs: those are tests/integration/test_runtimes_*.py."""

from __future__ import annotations

import os
from pathlib import Path

from vethpeer.correlate import correlate
from vethpeer.model import (
    Link,
    LinkClaim,
    Namespace,
    NsKey,
    NsView,
    Relation,
    Snapshot,
    Workload,
    WorkloadKind,
)
from vethpeer.sources import Context, docker_sandboxes, endpoints, lxc, nspawn, podman, procfs, taps

from .builders import answered

HOST = NsKey(4, 1000)

UNIX = """\
Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 31337 /run/vpr/containerd.sock
0000000000000000: 00000002 00000000 00010000 0001 01 31338 /run/vpr/containerd.sock.ttrpc
0000000000000000: 00000003 00000000 00000000 0001 03 31339 /run/vpr/containerd.sock
0000000000000000: 00000002 00000000 00010000 0001 01 31340 @/containerd-shim/abc.sock
0000000000000000: 00000002 00000000 00010000 0001 01 31341
"""


def test_unix_table_keeps_listening_sockets_with_a_path() -> None:
    assert procfs.parse_unix_table(UNIX) == {
        31337: "/run/vpr/containerd.sock",
        31338: "/run/vpr/containerd.sock.ttrpc",
    }


def fake_proc(tmp_path: Path, pid: int, comm: str, argv: list[str], sockets: dict[str, int]) -> str:
    """A recorded /proc entry: comm, cmdline, fds that are sockets, the net/unix table."""
    base = tmp_path / "proc" / str(pid)
    (base / "fd").mkdir(parents=True)
    (base / "net").mkdir()
    (base / "comm").write_text(comm + "\n")
    (base / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    for fd, inode in enumerate(sockets.values(), start=3):
        os.symlink(f"socket:[{inode}]", base / "fd" / str(fd))
    os.symlink("/", base / "root")
    (base / "net" / "unix").write_text(UNIX)
    return str(tmp_path / "proc")


def test_listening_sockets_of_a_daemon_main_socket_first(tmp_path: Path) -> None:
    proc = fake_proc(
        tmp_path, 812, "containerd", ["containerd"], {"main": 31337, "ttrpc": 31338, "conn": 31339}
    )
    table = procfs.processes(proc)
    assert table == [procfs.Process(812, "containerd")]
    found = endpoints.listening(proc, table, endpoints.CRI_DAEMONS)
    assert found == [
        endpoints.Endpoint("/run/vpr/containerd.sock", "listening socket of containerd pid 812", 812)
    ]
    assert endpoints.listening(proc, table, endpoints.DOCKER_DAEMONS) == []


def test_kubelet_flag_beats_its_config(tmp_path: Path) -> None:
    config = tmp_path / "kubelet.yaml"
    config.write_text('kind: KubeletConfiguration\ncontainerRuntimeEndpoint: "unix:///run/k3s/c.sock"\n')
    proc = fake_proc(tmp_path, 77, "kubelet", ["kubelet", f"--config={config}"], {})
    [from_config] = endpoints.kubelet_endpoints(proc, procfs.processes(proc))
    assert from_config.path == "/run/k3s/c.sock" and from_config.why.startswith(
        f"from kubelet config {config}"
    )
    argv = ["kubelet", "--config", str(config), "--container-runtime-endpoint", "unix:/run/crio/crio.sock"]
    assert endpoints.flag_value(argv, endpoints.FLAG) == "unix:/run/crio/crio.sock"
    assert endpoints.config_endpoint('{"containerRuntimeEndpoint": "/run/x.sock", "a": 1}') == "/run/x.sock"
    assert endpoints.unix_path("npipe:////./pipe/x") is None


def test_conmon_command_line() -> None:
    cid = "a" * 64
    bundle = f"/home/u/.local/share/containers/storage/overlay-containers/{cid}/userdata"
    argv = ["/usr/bin/conmon", "--api-version", "1", "-c", cid, "-u", cid, "-b", bundle, "-n", "web"]
    argv += ["--exit-command-arg", "--network-backend", "--exit-command-arg", "netavark"]
    found = podman.parse_conmon(9, argv)
    assert found == podman.Conmon(9, cid, "web", "/home/u/.local/share/containers/storage", "netavark")
    assert podman.parse_conmon(9, ["conmon", "-c", "not-an-id"]) is None


def test_podman_pod_namespace_named_after_the_pod() -> None:
    infra = podman.Container("i" * 64, "f8b6e6dd31a3-infra", pod="p" * 64)
    app = podman.Container("c" * 64, "app", pod="p" * 64, joins="i" * 64, networks=("podman",))
    state = podman.State((app, infra), {"p" * 64: podman.Pod("p" * 64, "shop", "i" * 64)})
    key = NsKey(4, 7)
    [claim] = podman.claims(state, {infra.id: key, app.id: key}, HOST)
    assert claim.workload.label == "podman/shop" and claim.workload.containers == (
        "app",
        "f8b6e6dd31a3-infra",
    )
    assert claim.workload.networks == ("podman",)


def test_lxc_config_and_monitor() -> None:
    text = "# x\nlxc.net.0.type = veth\nlxc.net.0.link = br0\nlxc.net.0.veth.pair = web0\n"
    text += "lxc.net.1.type = empty\n"
    assert lxc.parse_config(text) == (lxc.NetConfig(0, "veth", "br0", "web0"), lxc.NetConfig(1, "empty"))
    assert lxc.parse_monitor(["[lxc monitor] /var/lib/lxc web"]) == ("/var/lib/lxc", "web")
    assert lxc.parse_monitor(["lxc-start", "-n", "web"]) is None


def test_nspawn_names() -> None:
    # systemd's own layout (machinectl start; a registered direct run), escaped as systemd does
    service = "0::/machine.slice/systemd-nspawn@web\\x2d1.service/payload\n"
    scope = "1:name=systemd:/machine.slice/machine-db.scope\n"
    assert nspawn.machine_of_cgroup(service) == "web-1"
    assert nspawn.machine_of_cgroup(scope) == "db"
    assert nspawn.machine_of_cgroup("0::/machine.slice/machine-qemu\\x2d1\\x2dvm.scope\n") is None  # libvirt
    assert nspawn.machine_of_argv(["systemd-nspawn", "-D", "/var/lib/machines/deb/", "-b"]) == "deb"
    assert nspawn.machine_of_argv(["systemd-nspawn", "--machine=m", "-D", "/x"]) == "m"
    assert nspawn.machine_of_argv(["systemd-nspawn", "-i", "/img/arch.raw"]) == "arch"


def test_qemu_names() -> None:
    assert taps.qemu_name(["qemu-system-x86_64", "-name", "guest=db,debug-threads=on"]) == "db"
    assert taps.qemu_name(["qemu-system-x86_64", "-name", "web"]) == "web"
    cgroup_text = "1:name=systemd:/machine.slice/machine-qemu\\x2d3\\x2dshop.scope/libvirt/emulator\n"
    holder = taps.Holder(42, "qemu-system-x86", ("vnet0",))
    vm = taps.workload_of(holder, ["qemu-system-x86_64", "-name", "guest=x"], cgroup_text)
    assert (vm.label, vm.source) == ("vm/shop", "libvirt cgroup")
    vpn = taps.workload_of(taps.Holder(7, "openvpn", ("tun0",)), ["openvpn"], None)
    assert vpn.kind is WorkloadKind.PROCESS and vpn.label == "pid/7 (openvpn)"


def test_tap_row_belongs_to_the_vm() -> None:
    host = Namespace(HOST, is_host=True)
    tap = Link(9, "vprtap0", kind="tun", mac="02:00:00:00:00:09", master=3)
    bridge = Link(3, "br0", kind="bridge")
    other = Link(10, "tun9", kind="tun")  # nobody holds it: not a row
    snapshot = Snapshot(HOST, (NsView(host, (bridge, tap, other)),))
    vm = Workload(WorkloadKind.VM, "vpr-vm1", id="42", source="taps")
    held = answered("taps", links=(LinkClaim(HOST, "vprtap0", vm, 40),))
    [row] = correlate(snapshot, [held]).rows
    assert row.relation is Relation.TAP and row.peer is None and row.unresolved is None
    assert row.end.workload == vm and row.end.link.name == "vprtap0" and row.end.master == "br0"


def test_context_reads_proc_through_its_root(tmp_path: Path) -> None:
    proc = fake_proc(
        tmp_path, 5, "dockerd", ["dockerd", "-H", "unix:///run/vpr/containerd.sock"], {"main": 31337}
    )
    context = Context(HOST, (), proc=proc)
    table = procfs.process_table(context)
    assert endpoints.listening(context.proc, table, endpoints.DOCKER_DAEMONS)[0].pid == 5


def test_docker_sandboxes_named_after_their_network() -> None:
    """Sandbox names as libnetwork makes them (12 characters), networks as GET /networks lists them."""
    overlay_id = "k3xq9r2mzp7w" + "0" * 13
    networks = [
        {"Name": "ingress", "Id": "a1b2c3d4e5f6" + "1" * 13, "Driver": "overlay", "Ingress": True},
        {"Name": "vpr-ov", "Id": overlay_id, "Driver": "overlay"},
        {"Name": "bridge", "Id": "ffffffffffff", "Driver": "bridge"},
    ]
    spaces = [
        Namespace(NsKey(4, 1), mounts=("/run/docker/netns/ingress_sbox",)),
        Namespace(NsKey(4, 2), mounts=(f"/run/docker/netns/1-{overlay_id[:10]}",)),
        Namespace(NsKey(4, 3), mounts=(f"/run/docker/netns/lb_{overlay_id[:9]}",)),
        Namespace(NsKey(4, 4), mounts=("/run/docker/netns/0123456789ab",)),  # a container's
        Namespace(NsKey(4, 5), mounts=("/run/docker/netns/1-zzzzzzzzzz",)),  # a network since removed
    ]
    found = docker_sandboxes.sandboxes(spaces)
    assert len(found) == 4
    named = {c.netns.ino: c.workload.label for c in docker_sandboxes.claims(found, networks)}
    assert named == {
        1: "docker-network/ingress-sbox",
        2: "docker-network/vpr-ov",
        3: "docker-network/lb-vpr-ov",
    }


def test_paths_inside_another_root_follow_its_own_symlinks(tmp_path: Path) -> None:
    """/proc/PID/root/var/run -> "/run" must mean the process's /run, not ours."""
    root = tmp_path / "node"
    (root / "run" / "netns").mkdir(parents=True)
    (root / "run" / "netns" / "cni-1").write_text("")
    (root / "var").mkdir()
    os.symlink("/run", root / "var" / "run")
    os.symlink("../run/netns", root / "var" / "ns")
    assert procfs.resolve_in_root(str(root), "/var/run/netns/cni-1") == f"{root}/run/netns/cni-1"
    assert procfs.resolve_in_root(str(root), "/var/ns/cni-1") == f"{root}/run/netns/cni-1"
    assert procfs.resolve_in_root("", "/var/run/x") == "/var/run/x"


def test_podman_sqlite_state(tmp_path: Path) -> None:
    """Podman 5's SQLite state, in the schema libpod/sqlite_state.go creates (not a live run:
    Debian 12's podman 4.3 keeps BoltDB)."""
    import json
    import sqlite3

    path = tmp_path / "db.sql"
    with sqlite3.connect(path) as db:
        key = "ID TEXT PRIMARY KEY NOT NULL"
        db.executescript(
            f"CREATE TABLE ContainerConfig({key}, Name TEXT UNIQUE NOT NULL, PodID TEXT, JSON TEXT NOT NULL);"
            f"CREATE TABLE ContainerState({key}, State INTEGER NOT NULL, ExitCode INTEGER, JSON TEXT);"
            f"CREATE TABLE PodConfig({key}, Name TEXT UNIQUE NOT NULL, JSON TEXT NOT NULL);"
            f"CREATE TABLE PodState({key}, InfraContainerID TEXT, JSON TEXT NOT NULL);"
        )
        web = {"name": "web", "newNetworks": {"podman": {}}, "networkMode": "bridge"}
        rows = [
            (
                "a" * 64,
                "web",
                None,
                json.dumps(web),
                3,
                json.dumps({"pid": 42, "netNS": "/run/netns/netns-x"}),
            )
        ]
        rows += [("b" * 64, "old", None, json.dumps({"name": "old"}), 4, "{}")]  # stopped
        for cid, name, pod, config, state, status in rows:
            db.execute("INSERT INTO ContainerConfig VALUES (?, ?, ?, ?)", (cid, name, pod, config))
            db.execute("INSERT INTO ContainerState VALUES (?, ?, 0, ?)", (cid, state, status))
        db.execute("INSERT INTO PodConfig VALUES (?, ?, ?)", ("p" * 64, "shop", "{}"))
        db.execute("INSERT INTO PodState VALUES (?, ?, ?)", ("p" * 64, "i" * 64, "{}"))
    state = podman.read_sqlite(str(path))
    assert state.containers == (
        podman.Container("a" * 64, "web", pid=42, netns_path="/run/netns/netns-x", networks=("podman",)),
    )
    assert state.pods == {"p" * 64: podman.Pod("p" * 64, "shop", "i" * 64)}


def test_one_comm_reader_keeps_undecodable_bytes(tmp_path: Path) -> None:
    """Discovery, the resolvers and doctor's fd holders read ``/proc/PID/comm`` the one way the
    rest of ``/proc`` is read: undecodable bytes kept (surrogateescape), not replaced."""
    from vethpeer.netns import discover

    from .fakeproc import FakeProc

    fake = FakeProc(tmp_path / "proc")
    pid = fake.container("ab" + "1" * 62)
    (fake.root / f"{pid}/comm").write_bytes(b"vq\xffe\n")
    found = [ns.comm for ns in discover(str(fake.root)).namespaces if ns.comm is not None]
    assert found == ["vq\udcffe"] == [procfs.comm(pid, str(fake.root))]


def test_kthreadd_is_told_by_its_stat(tmp_path: Path) -> None:
    from vethpeer.netns import _is_kthreadd

    stat = tmp_path / "proc/2/stat"
    stat.parent.mkdir(parents=True)
    stat.write_text("2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 3 0 0\n")
    assert _is_kthreadd(str(tmp_path / "proc"))
    stat.write_text("2 (a) b) S 1 2 2 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 3 0 0\n")  # a user process
    assert not _is_kthreadd(str(tmp_path / "proc"))
