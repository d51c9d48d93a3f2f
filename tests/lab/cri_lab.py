"""A real containerd with the CRI plugin and CNI bridge networking, for vethpeer's tests.

Everything is named with the prefix ``vpk`` and removed afterwards: the containerd we
start (its own config, root, state dir and socket, never ``/run/containerd``), its
shims, the pod sandboxes and containers, the CNI bridge ``vpkcni0``, the CNI result
cache and IPAM store (``/var/lib/cni/{results,networks}``, only our network's files),
the ``cni-<uuid>`` netns bind mounts of our pods, and the ``/vpk/kubepods/...``
cgroup folders in every hierarchy.

Public API
----------
* :class:`Containerd` (``.start()``, ``.stop()``, ``.pid``, ``.socket``, ``.endpoint``,
  ``.log_tail()``) and :func:`cri_lab` (context manager: containerd + image + cleanup)
* :class:`CriClient`: ``run_pod``, ``create_container``, ``stop_pod``, ``remove_pod``,
  ``pod_info`` (the verbose ``info`` JSON), ``list_pods``
* :func:`build_pause_image` (an OCI image-layout tar made from ``busybox-static``)
* Oracles for tests: :func:`link_in` (``ip -j -d link`` inside a netns path)

Self-check: ``python -m tests.lab.cri_lab`` (from the repository root, as root).

Findings on this machine (Debian 12, containerd 1.6.20, runc 1.1, kernel 6.x, cgroup v1 hybrid)
-----------------------------------------------------------------------------------------------
* There is no registry and no ``crictl``: the sandbox ("pause") image is an OCI layout tar
  built here (busybox + ``sleep`` as the entrypoint) and imported with
  ``ctr -n k8s.io images import``; CRI is driven through ``vethpeer/cri`` (grpcio).
* ``restrict_oom_score_adj = true`` is required (root lacks CAP_SYS_RESOURCE here; the
  sandbox's oom_score_adj of -998 otherwise makes runc fail), as are ``SystemdCgroup = false``
  and the overlayfs snapshotter. ``stream_server_port = "0"`` avoids a fixed TCP port.
* ``sleep`` as PID 1 ignores SIGTERM: containers are stopped with timeout 0 (SIGKILL), and
  containerd stops sandboxes with SIGKILL anyway.
* runc's state goes to ``/run/containerd/runc`` unless the runtime option ``Root`` says
  otherwise (it does here); shim sockets always go to ``/run/containerd/s/<hash>`` (removed
  by the shims when they exit).
* Shims (``containerd-shim-runc-v2 ... -address <our socket>``) outlive containerd, and so do
  the pods: stopping containerd is how tests make "the CRI socket is gone" real; starting it
  again with the same root/state finds the pods again.
* Docker's own containerd runs with CRI disabled; :class:`Containerd` with ``cri=False``
  reproduces that (``disabled_plugins = ["io.containerd.grpc.v1.cri"]``): gRPC answers
  UNIMPLEMENTED "unknown service runtime.v1.RuntimeService".
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.lab.common import busybox_rootfs_tar
from tests.lab.daemons import log_tail, remove_tree, spawn, terminate, wait_answering, wait_gone

PREFIX = "vpk"
CONTAINERD = "/usr/bin/containerd"
CTR = "/usr/bin/ctr"
CNI_BIN_DIR = "/usr/lib/cni"
RUNC = "/usr/sbin/runc"
BINARIES = (CONTAINERD, CTR, RUNC, f"{CNI_BIN_DIR}/bridge")  # what the lab runs
INSTALL = "apt-get install containerd runc containernetworking-plugins"  # where they come from
BUSYBOX = "/bin/busybox"
IMAGE = "vpk.local/vpk-pause:1"  # the sandbox image, also used for the pods' containers
BRIDGE = "vpkcni0"
CNI_NETWORK = "vpk-net"
SUBNET = "10.213.0.0/24"
CGROUP_ROOT = "vpk"  # every pod's cgroup parent is /vpk/kubepods/besteffort/pod<uid>
CGROUP_FS = "/sys/fs/cgroup"
CNI_STATE = "/var/lib/cni"
K8S_NS = "k8s.io"  # containerd namespace the CRI plugin uses


class CriLabError(RuntimeError):
    """The lab could not provide a working containerd, image or pod."""


# ----------------------------------------------------------------------------- image


def _goarch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le"}.get(
        machine, machine
    )


def build_pause_image(dest: str, ref: str = IMAGE) -> str:
    """Write an OCI image-layout tar for ``ref`` into directory ``dest``; return its path.

    The entrypoint is ``sleep`` for ~68 years: what a pause container needs to do.
    """
    layer = busybox_rootfs_tar(BUSYBOX, ("sleep",))
    layer_gz = gzip.compress(layer, mtime=0)
    config = {
        "architecture": _goarch(),
        "os": "linux",
        "config": {"Entrypoint": ["/bin/sleep", "2147483647"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()

    def descriptor(media_type: str, blob: bytes) -> dict[str, Any]:
        return {
            "mediaType": media_type,
            "digest": "sha256:" + hashlib.sha256(blob).hexdigest(),
            "size": len(blob),
        }

    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", config_bytes),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer_gz)],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                **descriptor("application/vnd.oci.image.manifest.v1+json", manifest_bytes),
                "annotations": {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": "1"},
                "platform": {"architecture": _goarch(), "os": "linux"},
            }
        ],
    }
    path = os.path.join(dest, "vpk-pause.oci.tar")
    with tarfile.open(path, "w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 946684800
            tar.addfile(info, io.BytesIO(data))

        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", json.dumps(index).encode())
        for blob in (config_bytes, manifest_bytes, layer_gz):
            add("blobs/sha256/" + hashlib.sha256(blob).hexdigest(), blob)
    return path


# ------------------------------------------------------------------------ containerd


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _config_toml(root: str, state: str, socket: str, cni_conf_dir: str, cri: bool) -> str:
    disabled = ['"io.containerd.grpc.v1.cri"'] if not cri else []
    # Snapshotters that need tools or filesystems this machine does not have only add log noise.
    disabled += [
        '"io.containerd.snapshotter.v1.aufs"',
        '"io.containerd.snapshotter.v1.btrfs"',
        '"io.containerd.snapshotter.v1.zfs"',
        '"io.containerd.snapshotter.v1.devmapper"',
    ]
    text = f"""\
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [{", ".join(disabled)}]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"
"""
    if cri:
        text += f"""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{state}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni_conf_dir}"
    max_conf_num = 1
"""
    return text


def _cni_conflist() -> str:
    return json.dumps(
        {
            "cniVersion": "0.4.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,  # no NAT rules: nothing leaves the lab
                    "hairpinMode": False,
                    "ipam": {"type": "host-local", "ranges": [[{"subnet": SUBNET}]], "routes": []},
                }
            ],
        },
        indent=2,
    )


@dataclass
class Containerd:
    """Our own containerd: ``name`` decides every path (``/run/<name>-containerd/...``).

    ``cri=False`` runs it the way Docker's bundled containerd runs: CRI plugin disabled.
    """

    name: str = PREFIX
    cri: bool = True
    pid: int | None = None
    startup_seconds: float | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def root(self) -> str:
        return f"/var/lib/{self.name}-containerd"

    @property
    def state(self) -> str:
        return f"/run/{self.name}-containerd"

    @property
    def etc(self) -> str:
        return f"/etc/{self.name}-containerd"

    @property
    def socket(self) -> str:
        return f"{self.state}/containerd.sock"

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    @property
    def log_path(self) -> str:
        return f"{self.etc}/containerd.log"

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        """Write the config, exec containerd, wait until its socket answers (CRI Version if cri)."""
        if self.is_running():
            return
        for binary in BINARIES:
            if not os.path.exists(binary):
                raise CriLabError(f"{binary} not found ({INSTALL})")
        net_d = f"{self.etc}/net.d"
        os.makedirs(net_d, exist_ok=True)
        Path(f"{net_d}/10-{CNI_NETWORK}.conflist").write_text(_cni_conflist())
        config = f"{self.etc}/config.toml"
        Path(config).write_text(_config_toml(self.root, self.state, self.socket, net_d, self.cri))
        self._proc = spawn([CONTAINERD, "--config", config, "--log-level", "info"], self.log_path)
        self.pid = self._proc.pid
        began = time.monotonic()
        problem = wait_answering(self._proc, self._up, timeout, interval=0.1)
        if problem is None:
            self.startup_seconds = time.monotonic() - began
            return
        self.stop()
        raise CriLabError(f"containerd on {self.socket} {problem}:\n{self.log_tail()}")

    def _up(self) -> bool:
        return os.path.exists(self.socket) and self._answers()

    def _answers(self) -> bool:
        if not self.cri:
            return (
                subprocess.run(
                    [CTR, "--address", self.socket, "version"], capture_output=True, timeout=5
                ).returncode
                == 0
            )
        try:
            with CriClient(self.socket, timeout=2.0) as client:
                client.version()
            return True
        except Exception:  # not up yet
            return False

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM our containerd (by PID), then SIGKILL. Pods and shims keep running."""
        if self._proc is not None:
            terminate(self._proc, timeout)

    def shim_pids(self) -> list[int]:
        """Shims our containerd started: their command line names our socket."""
        found = []
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                argv = _cmdline(int(entry.name))
                if argv and "containerd-shim" in argv[0] and self.socket in argv:
                    found.append(int(entry.name))
        return found

    def import_image(self, tar_path: str) -> None:
        out = subprocess.run(
            [CTR, "--address", self.socket, "-n", K8S_NS, "images", "import", tar_path],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if out.returncode != 0:
            raise CriLabError(f"ctr images import failed: {out.stderr.strip()}")

    def destroy(self) -> None:
        """Stop containerd and its shims, unmount and delete its root/state/etc dirs."""
        self.stop()
        for pid in self.shim_pids():  # only when pods were not removed through CRI
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_gone(pid, 5)
        for base in (self.state, self.root):
            remove_tree(base)
        shutil.rmtree(self.etc, ignore_errors=True)


# ------------------------------------------------------------------------------- CRI


@dataclass(frozen=True)
class Pod:
    """A pod sandbox the lab created."""

    id: str
    name: str
    namespace: str
    uid: str
    host_network: bool
    config: Any  # api_pb2.PodSandboxConfig

    @property
    def cgroup_parent(self) -> str:
        return f"/{CGROUP_ROOT}/kubepods/besteffort/pod{self.uid}"


class CriClient:
    """A thin, typed-enough wrapper over the generated ``runtime.v1.RuntimeService`` stub."""

    def __init__(self, socket: str, timeout: float = 10.0) -> None:
        import grpc

        from tests.lab import (
            api_pb2,
            api_pb2_grpc,  # generated by vethpeer/cri/regen.sh: the tests' stubs
        )

        self.pb = api_pb2
        self.timeout = timeout
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.stub = api_pb2_grpc.RuntimeServiceStub(self.channel)

    def __enter__(self) -> CriClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.channel.close()

    def version(self) -> Any:
        return self.stub.Version(self.pb.VersionRequest(version="v1"), timeout=self.timeout)

    def run_pod(
        self, name: str, namespace: str, *, host_network: bool = False, uid: str | None = None
    ) -> Pod:
        pb = self.pb
        uid = uid or str(uuid.uuid4())
        labels = {
            "io.kubernetes.pod.name": name,
            "io.kubernetes.pod.namespace": namespace,
            "io.kubernetes.pod.uid": uid,
            "vpk.lab": "1",
        }
        mode = pb.NODE if host_network else pb.POD
        config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace=namespace, attempt=0),
            hostname="" if host_network else name[:63],  # host network shares the host's UTS ns
            labels=labels,
            annotations={"kubernetes.io/config.source": "vpk-lab"},
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent=f"/{CGROUP_ROOT}/kubepods/besteffort/pod{uid}",
                security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=pb.NamespaceOption(network=mode, pid=pb.CONTAINER, ipc=pb.POD)
                ),
            ),
        )
        reply = self.stub.RunPodSandbox(pb.RunPodSandboxRequest(config=config), timeout=60)
        return Pod(reply.pod_sandbox_id, name, namespace, uid, host_network, config)

    def create_container(self, pod: Pod, name: str, *, start: bool = True) -> str:
        pb = self.pb
        config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name, attempt=0),
            image=pb.ImageSpec(image=IMAGE),
            command=["/bin/sleep", "3600"],
            labels={
                "io.kubernetes.container.name": name,
                "io.kubernetes.pod.name": pod.name,
                "io.kubernetes.pod.namespace": pod.namespace,
                "io.kubernetes.pod.uid": pod.uid,
            },
            linux=pb.LinuxContainerConfig(
                security_context=pb.LinuxContainerSecurityContext(
                    namespace_options=pb.NamespaceOption(
                        network=pb.NODE if pod.host_network else pb.POD, pid=pb.CONTAINER, ipc=pb.POD
                    )
                )
            ),
        )
        reply = self.stub.CreateContainer(
            pb.CreateContainerRequest(pod_sandbox_id=pod.id, config=config, sandbox_config=pod.config),
            timeout=60,
        )
        if start:
            self.stub.StartContainer(pb.StartContainerRequest(container_id=reply.container_id), timeout=60)
        return str(reply.container_id)

    def list_pods(self, *, ready_only: bool = False) -> list[Any]:
        pb = self.pb
        flt = (
            pb.PodSandboxFilter(state=pb.PodSandboxStateValue(state=pb.SANDBOX_READY)) if ready_only else None
        )
        return list(
            self.stub.ListPodSandbox(pb.ListPodSandboxRequest(filter=flt), timeout=self.timeout).items
        )

    def pod_info(self, pod_id: str) -> dict[str, Any]:
        """The verbose PodSandboxStatus ``info["info"]`` JSON (pid, runtimeSpec, ...)."""
        reply = self.stub.PodSandboxStatus(
            self.pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True), timeout=self.timeout
        )
        info: dict[str, Any] = json.loads(reply.info.get("info", "{}"))
        return info

    def netns_path(self, pod_id: str) -> str | None:
        spec = self.pod_info(pod_id).get("runtimeSpec", {})
        for ns in spec.get("linux", {}).get("namespaces", []):
            if ns.get("type") == "network" and ns.get("path"):
                return str(ns["path"])
        return None

    def stop_pod(self, pod_id: str) -> None:
        pb = self.pb
        containers = self.stub.ListContainers(
            pb.ListContainersRequest(filter=pb.ContainerFilter(pod_sandbox_id=pod_id)), timeout=self.timeout
        ).containers
        for c in containers:
            if c.state == pb.CONTAINER_RUNNING:
                self.stub.StopContainer(pb.StopContainerRequest(container_id=c.id, timeout=0), timeout=60)
        self.stub.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)

    def remove_pod(self, pod_id: str) -> None:
        self.stop_pod(pod_id)
        self.stub.RemovePodSandbox(self.pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)


# ----------------------------------------------------------------------------- oracles


def link_in(netns_path: str, ifname: str = "eth0") -> dict[str, Any]:
    """``ip -j -d link show dev IF`` inside the namespace at ``netns_path`` (the kernel's own view)."""
    out = subprocess.run(
        ["nsenter", f"--net={netns_path}", "ip", "-j", "-d", "link", "show", "dev", ifname],
        capture_output=True,
        text=True,
        check=True,
    )
    link: dict[str, Any] = json.loads(out.stdout)[0]
    return link


def host_link(ifindex: int) -> dict[str, Any] | None:
    """The host interface with ``ifindex`` as ``ip -j -d link`` shows it, or None."""
    out = subprocess.run(["ip", "-j", "-d", "link", "show"], capture_output=True, text=True, check=True)
    for link in json.loads(out.stdout):
        if link["ifindex"] == ifindex:
            found: dict[str, Any] = link
            return found
    return None


# ----------------------------------------------------------------------------- cleanup


@dataclass
class _CniBefore:
    """What existed under /var/lib/cni before the lab: only what we add is removed."""

    existed: dict[str, bool] = field(default_factory=dict)

    @classmethod
    def record(cls) -> _CniBefore:
        paths = [CNI_STATE, f"{CNI_STATE}/results", f"{CNI_STATE}/networks"]
        return cls({p: os.path.isdir(p) for p in paths})


def cleanup_host(before: _CniBefore | None, netns_paths: Mapping[str, str] = {}) -> list[str]:
    """Remove the bridge, our CNI state, leftover netns mounts and cgroup folders; return what was left."""
    problems: list[str] = []
    if os.path.exists(f"/sys/class/net/{BRIDGE}"):
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
    results = Path(f"{CNI_STATE}/results")
    if results.is_dir():
        for entry in results.iterdir():
            if entry.name.startswith(f"{CNI_NETWORK}-"):
                entry.unlink(missing_ok=True)
    shutil.rmtree(f"{CNI_STATE}/networks/{CNI_NETWORK}", ignore_errors=True)
    if before is not None:  # directories the CNI plugins created for us
        for path in (f"{CNI_STATE}/results", f"{CNI_STATE}/networks", CNI_STATE):
            if not before.existed.get(path, True):
                with contextlib.suppress(OSError):
                    os.rmdir(path)
    for path in netns_paths.values():
        if os.path.exists(path):
            subprocess.run(["umount", path], capture_output=True, check=False)
            with contextlib.suppress(OSError):
                os.unlink(path)
    problems += _remove_cgroups()
    return problems


def _cgroup_dirs() -> list[Path]:
    base = Path(CGROUP_FS)
    found = []
    if (base / CGROUP_ROOT).is_dir():  # cgroup v2 only
        found.append(base / CGROUP_ROOT)
    if base.is_dir():
        for hierarchy in base.iterdir():
            if (hierarchy / CGROUP_ROOT).is_dir():
                found.append(hierarchy / CGROUP_ROOT)
    return found


def _remove_cgroups() -> list[str]:
    """Kill what is left in /vpk cgroups (only our pods can be there), then rmdir bottom-up."""
    problems = []
    for top in _cgroup_dirs():
        for pid in _procs_below(top):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda t: -t[0].count("/")):
            for _ in range(50):
                try:
                    os.rmdir(dirpath)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)  # processes still exiting
            else:
                problems.append(f"cgroup {dirpath} could not be removed")
    return problems


def _procs_below(top: Path) -> list[int]:
    pids: set[int] = set()
    for dirpath, _dirs, files in os.walk(top):
        if "cgroup.procs" in files:
            with contextlib.suppress(OSError):
                pids.update(int(x) for x in Path(dirpath, "cgroup.procs").read_text().split())
    return sorted(pids)


@dataclass
class Lab:
    """containerd + CRI client + every pod made through :meth:`run_pod`, for cleanup."""

    containerd: Containerd
    client: CriClient
    pods: dict[str, Pod] = field(default_factory=dict)
    netns_paths: dict[str, str] = field(default_factory=dict)

    def run_pod(
        self, name: str, namespace: str, *, host_network: bool = False, containers: tuple[str, ...] = ()
    ) -> Pod:
        pod = self.client.run_pod(name, namespace, host_network=host_network)
        self.pods[pod.id] = pod
        path = self.client.netns_path(pod.id)
        if path:
            self.netns_paths[pod.id] = path
        for container in containers:
            self.client.create_container(pod, container)
        return pod

    def remove_pod(self, pod: Pod) -> None:
        self.client.remove_pod(pod.id)
        self.pods.pop(pod.id, None)
        self.netns_paths.pop(pod.id, None)

    def reconnect(self) -> None:
        """A new client after containerd was restarted."""
        self.client.__exit__()
        self.client = CriClient(self.containerd.socket)


@contextlib.contextmanager
def cri_lab() -> Iterator[Lab]:
    """Our containerd with CRI + the pause image; on exit remove every pod and all traces."""
    before = _CniBefore.record()
    containerd = Containerd()
    lab: Lab | None = None
    try:
        containerd.start()
        with tempfile.TemporaryDirectory(prefix="vpk-image-") as tmp:
            containerd.import_image(build_pause_image(tmp))
        lab = Lab(containerd, CriClient(containerd.socket))
        yield lab
    finally:
        netns_paths: dict[str, str] = {}
        if lab is not None:
            netns_paths = dict(lab.netns_paths)
            if containerd.is_running():
                for pod_id in list(lab.pods):
                    with contextlib.suppress(Exception):
                        lab.client.remove_pod(pod_id)
                # Pods created by something else on our socket (a test that failed half-way).
                with contextlib.suppress(Exception):
                    for item in lab.client.list_pods():
                        lab.client.remove_pod(item.id)
            lab.client.__exit__()
        containerd.destroy()
        cleanup_host(before, netns_paths)


def leftovers() -> list[str]:
    """Traces of the lab still on the host (empty after a clean run)."""
    found = []
    if os.path.exists(f"/sys/class/net/{BRIDGE}"):
        found.append(f"bridge {BRIDGE}")
    for path in (
        "/run/vpk-containerd",
        "/var/lib/vpk-containerd",
        "/etc/vpk-containerd",
        "/run/vpk-nocri-containerd",
        "/var/lib/vpk-nocri-containerd",
        "/etc/vpk-nocri-containerd",
        f"{CNI_STATE}/networks/{CNI_NETWORK}",
    ):
        if os.path.exists(path):
            found.append(path)
    results = Path(f"{CNI_STATE}/results")
    if results.is_dir():
        found += [str(p) for p in results.iterdir() if p.name.startswith(f"{CNI_NETWORK}-")]
    found += [str(p) for p in _cgroup_dirs()]
    found += [f"shim pid {pid}" for pid in Containerd().shim_pids()]
    return found


def _selfcheck() -> int:
    with cri_lab() as lab:
        print(f"containerd pid {lab.containerd.pid} up in {lab.containerd.startup_seconds:.2f} s")
        pod = lab.run_pod("vpk-selfcheck", "vpk-ns", containers=("app",))
        info = lab.client.pod_info(pod.id)
        path = lab.netns_paths[pod.id]
        eth0 = link_in(path)
        print(
            f"pod {pod.id[:12]} pid {info['pid']} netns {path} eth0 ifindex {eth0['ifindex']} "
            f"peer {eth0.get('link_index')}"
        )
    left = leftovers()
    print("leftovers:", left or "none")
    return 1 if left else 0


if __name__ == "__main__":
    raise SystemExit(_selfcheck())
