"""The kube source's pure parts and its on/off rules. The API itself is tested in
tests/integration/test_cri.py against a stand-in server (no kube-apiserver can run here)."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.lab.kube_api import pod_json
from vethpeer.model import NsKey, SourceState, Workload, WorkloadKind
from vethpeer.sources import Context, Options, Paths, kube

HOST = NsKey(1, 1)
UID = "3d03fc08-9d14-41e0-a53e-16b15f0bd92d"
SANDBOX = "a" * 64
APP = "b" * 64


def home(tmp_path: Path) -> dict[str, str]:
    """The variables of a run whose user has an empty home and no Kubernetes settings."""
    return {"HOME": str(tmp_path / "home")}


def test_parse_pod_reads_the_fields_vethpeer_uses() -> None:
    item = pod_json(
        "web-5d9f8c7b6-x2x7q", "shop", UID, node="node-1", pod_ip="10.0.0.7",
        containers={"app": APP, "sidecar": ""}, owner=("ReplicaSet", "web-5d9f8c7b6"),
    )  # fmt: skip
    pod = kube.parse_pod(item)
    assert pod == kube.ApiPod(
        uid=UID, name="web-5d9f8c7b6-x2x7q", namespace="shop", node="node-1", pod_ip="10.0.0.7",
        host_network=False, containers=("app", "sidecar"), container_ids=(APP,),
        owner=("ReplicaSet", "web-5d9f8c7b6"),
    )  # fmt: skip
    assert kube.parse_pod({"metadata": {}}) is None
    assert kube._runtime_id("cri-o://" + APP) == APP


def test_enriched_keeps_the_cri_workload_and_adds_api_fields() -> None:
    pod = kube.parse_pod(pod_json("web", "shop", UID, node="n1", pod_ip="10.0.0.7", containers={"app": APP}))
    assert pod is not None
    from_cri = Workload(
        WorkloadKind.POD, "web", id=SANDBOX, namespace="shop", uid=UID, containers=("app",),
        container_ids=(APP,), source="cri",
    )  # fmt: skip
    w = kube.enriched(pod, kube.Local(NsKey(1, 5), from_cri), "Deployment/web")
    assert (w.id, w.containers, w.source, w.node, w.pod_ip, w.owner) == (
        SANDBOX, ("app",), "kube", "n1", "10.0.0.7", "Deployment/web",
    )  # fmt: skip
    # No CRI answer: built from the API; the sandbox is the one cgroup ID the API does not list.
    w = kube.enriched(pod, kube.Local(NsKey(1, 5), None, frozenset({SANDBOX, APP})), None)
    assert (w.kind, w.name, w.namespace, w.uid, w.id, w.container_ids) == (
        WorkloadKind.POD, "web", "shop", UID, SANDBOX, (APP,),
    )  # fmt: skip


def test_kubeconfig_files_follow_kubectl(tmp_path: Path) -> None:
    environ = home(tmp_path)
    assert kube.kubeconfig_files(environ) == []
    dot_kube = tmp_path / "home" / ".kube"
    dot_kube.mkdir(parents=True)
    (dot_kube / "config").write_text("")
    assert kube.kubeconfig_files(environ) == [str(dot_kube / "config")]
    other = tmp_path / "other"
    other.write_text("")
    environ["KUBECONFIG"] = f"{tmp_path / 'missing'}:{other}"
    assert kube.kubeconfig_files(environ) == [str(other)]  # $KUBECONFIG replaces ~/.kube/config


def test_node_name() -> None:
    assert kube.node_name({"NODE_NAME": "node-7"}) == "node-7"
    assert kube.node_name({"KUBE_NODE_NAME": "node-8"}) == "node-8"
    assert kube.node_name({}) == socket.gethostname().lower()


def _collect(
    environ: dict[str, str], paths: Paths | None = None, **options: object
) -> tuple[SourceState, str]:
    context = Context(HOST, (), Options(**options), environ=environ, paths=paths or Paths())  # type: ignore[arg-type]
    result = kube.KubePods().collect(context)
    assert result.claims == ()
    return result.status.state, result.status.detail


def test_when_it_runs(tmp_path: Path) -> None:
    environ = home(tmp_path)
    assert _collect(environ, kube=False) == (SourceState.SKIPPED, "--no-kube")
    state, detail = _collect(environ)
    assert state is SourceState.SKIPPED and detail.startswith("no kubeconfig")
    state, detail = _collect(environ, kube=True)
    assert state is SourceState.UNAVAILABLE and "no kubeconfig" in detail
    config = tmp_path / "kubeconfig"
    config.write_text("")
    environ["KUBECONFIG"] = str(config)
    laptop = Paths(
        kubelet_dir=str(tmp_path / "no-kubelet"), cri_sockets=(("containerd", str(tmp_path / "no.sock")),)
    )
    state, detail = _collect(environ, laptop)  # a kubeconfig, but this host runs no pods: a laptop
    assert state is SourceState.SKIPPED and detail.startswith("this host runs no pods")
    state, detail = _collect(environ, laptop, kube=True)  # asked for: an empty kubeconfig is a status
    assert state is SourceState.UNAVAILABLE and "cannot load the API configuration" in detail
