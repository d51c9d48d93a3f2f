"""deploy/kubernetes/ against the Kubernetes API's schemas, offline: the `kubernetes` client's models.

Every field of every object must be a field of the API type (the models' ``attribute_map``
and ``openapi_types``, generated from the API's OpenAPI spec), recursively; then the
document is deserialized into the model, whose setters reject missing required fields.
The prometheus-operator objects (CRDs, not in the client) are checked against their
fields as documented by the operator's API reference (monitoring.coreos.com/v1).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
KINDS = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "Service"): "V1Service",
    ("apps/v1", "DaemonSet"): "V1DaemonSet",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("networking.k8s.io/v1", "NetworkPolicy"): "V1NetworkPolicy",
}
PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object}
# monitoring.coreos.com/v1 (prometheus-operator API reference): the fields used here
ENDPOINT_FIELDS = {
    "port",
    "interval",
    "scrapeTimeout",
    "honorLabels",
    "relabelings",
    "path",
    "scheme",
    "bearerTokenFile",
    "tlsConfig",
}
RELABEL_FIELDS = {"sourceLabels", "targetLabel", "action", "regex", "replacement", "separator", "modulus"}


def documents() -> list[dict[str, Any]]:
    found = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        found += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return found


def check_fields(data: Any, type_name: str, where: str) -> None:
    """``data`` fits the client's type ``type_name`` (e.g. ``V1PodSpec``, ``list[V1Volume]``)."""
    type_name = re.sub(r"^List\[(.*)\]$", r"list[\1]", type_name)  # the client writes both spellings
    type_name = re.sub(r"^Dict\[str, (.*)\]$", r"dict(str, \1)", type_name)
    if type_name.startswith("list["):
        assert isinstance(data, list), f"{where}: expected a list"
        for i, item in enumerate(data):
            check_fields(item, type_name[5:-1], f"{where}[{i}]")
        return
    if type_name.startswith("dict("):
        inner = re.match(r"dict\(str, (.*)\)$", type_name)
        assert inner and isinstance(data, dict), f"{where}: expected a mapping"
        for key, value in data.items():
            check_fields(value, inner.group(1), f"{where}.{key}")
        return
    if type_name in PRIMITIVES:
        assert isinstance(data, PRIMITIVES[type_name]), f"{where}: expected {type_name}, got {data!r}"  # type: ignore[arg-type]
        return
    model = getattr(k8s, type_name)
    assert isinstance(data, dict), f"{where}: expected an object ({type_name})"
    by_json = {json_name: attr for attr, json_name in model.attribute_map.items()}
    for key, value in data.items():
        assert key in by_json, f"{where}: {key!r} is not a field of {type_name}"
        check_fields(value, model.openapi_types[by_json[key]], f"{where}.{key}")


@pytest.mark.parametrize("document", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_field_is_the_api_types(document: dict[str, Any]) -> None:
    key = (document["apiVersion"], document["kind"])
    if document["apiVersion"].startswith("monitoring.coreos.com/"):
        check_monitor(document)
        return
    assert key in KINDS, f"unexpected kind {key}"
    check_fields(document, KINDS[key], document["kind"])
    model = k8s.ApiClient()._ApiClient__deserialize(document, KINDS[key])  # the setters check required fields
    assert model.metadata.name == document["metadata"]["name"]


def check_monitor(document: dict[str, Any]) -> None:
    spec = document["spec"]
    assert spec["selector"]["matchLabels"]
    endpoints = spec.get("podMetricsEndpoints") or spec.get("endpoints")
    assert endpoints, "a monitor without endpoints scrapes nothing"
    for endpoint in endpoints:
        assert set(endpoint) <= ENDPOINT_FIELDS, set(endpoint) - ENDPOINT_FIELDS
        assert endpoint["honorLabels"] is True
        for relabel in endpoint["relabelings"]:
            assert set(relabel) <= RELABEL_FIELDS
        assert {
            "sourceLabels": ["__meta_kubernetes_pod_node_name"],
            "targetLabel": "instance",
            "action": "replace",
        } in endpoint["relabelings"]


def by_kind(kind: str, name: str | None = None) -> dict[str, Any]:
    return next(d for d in documents() if d["kind"] == kind and name in (None, d["metadata"]["name"]))


def test_the_daemonset_is_least_privilege() -> None:
    pod = by_kind("DaemonSet")["spec"]["template"]["spec"]
    assert pod["hostPID"] is True and pod["hostNetwork"] is False
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["privileged"] is False and security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["SYS_ADMIN", "SYS_PTRACE"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["netns"]["mountPropagation"] == "HostToContainer" and mounts["netns"]["readOnly"] is True
    assert mounts["runtime"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["runtime"]["hostPath"]["type"] == "Socket"
    written = [
        m["name"]
        for m in container["volumeMounts"]
        if "hostPath" in volumes[m["name"]] and not m.get("readOnly")
    ]
    assert written == ["journal"], "the journal is the only host path written"
    assert volumes["journal"]["hostPath"] == {"path": "/var/lib/vethpeer", "type": "DirectoryOrCreate"}
    assert mounts["journal"]["mountPath"] == "/var/lib/vethpeer"
    assert container["args"][:2] == ["--listen", "$(POD_IP):10098"]
    assert container["args"][container["args"].index("--journal") + 1] == "/var/lib/vethpeer/journal.sqlite"


def test_rbac_reads_pods_only() -> None:
    (rule,) = by_kind("ClusterRole", "vethpeer-read-pods")["rules"]
    assert rule == {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}


def test_the_agent_runs_kube_auth_and_may_ask_for_reviews() -> None:
    container = by_kind("DaemonSet")["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert "--kube-auth" in args
    assert args[args.index("--kube-auth-proxy-cidr") + 1] == "$(APISERVER_CIDR)"
    (env,) = [e for e in container["env"] if e["name"] == "APISERVER_CIDR"]
    assert env["valueFrom"]["configMapKeyRef"] == {"name": "vethpeer-apiserver", "key": "cidr"}
    binding = by_kind("ClusterRoleBinding", "vethpeer-auth-delegator")
    assert binding["roleRef"]["name"] == "system:auth-delegator"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "vethpeer", "namespace": "vethpeer"}]


def test_prometheus_may_get_metrics_and_nothing_else() -> None:
    (rule,) = by_kind("ClusterRole", "vethpeer-metrics-reader")["rules"]
    assert rule == {"nonResourceURLs": ["/metrics"], "verbs": ["get"]}
    binding = by_kind("ClusterRoleBinding", "vethpeer-metrics-reader")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "prometheus-k8s", "namespace": "monitoring"}
    ]
    (api,) = by_kind("ClusterRole", "vethpeer-api-reader")["rules"]
    assert api == {"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get"]}
    plugin = by_kind("Role", "vethpeer-plugin-user")
    assert {"apiGroups": [""], "resources": ["pods/proxy"], "verbs": ["get"]} in plugin["rules"]
    (endpoint,) = by_kind("ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["bearerTokenFile"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"


def test_the_network_policy_lets_in_prometheus_and_the_api_servers_proxy_only() -> None:
    policy = by_kind("NetworkPolicy")["spec"]
    pod = by_kind("DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"] == pod and policy["policyTypes"] == ["Ingress"]
    prometheus, apiserver = policy["ingress"]
    (source,) = prometheus["from"]
    assert source["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    assert source["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    assert apiserver["from"] == [
        {"ipBlock": {"cidr": by_kind("ConfigMap", "vethpeer-apiserver")["data"]["cidr"]}}
    ]
    for rule in policy["ingress"]:
        assert rule["ports"] == [{"port": 10098, "protocol": "TCP"}]


def test_the_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["resources"]
    on_disk = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml", "monitoring.yaml"}
    assert set(listed) == on_disk


def test_the_namespace_allows_the_privileged_pod_security_level() -> None:
    labels = by_kind("Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"


def test_the_port_is_the_documented_default() -> None:
    from vethpeer.agent import DEFAULT_PORT as PACKAGE_PORT
    from vethpeer.commands.serve import DEFAULT_PORT

    assert DEFAULT_PORT == PACKAGE_PORT == 10098
    assert by_kind("Service")["spec"]["ports"][0]["port"] == DEFAULT_PORT
    assert f"{DEFAULT_PORT}" in (ROOT / "Dockerfile").read_text()


def test_the_check_catches_a_misspelt_or_mistyped_field() -> None:
    daemonset = by_kind("DaemonSet")
    mount = daemonset["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]
    mount["mountPropagaton"] = mount.pop("mountPropagation")
    with pytest.raises(AssertionError, match="mountPropagaton"):
        check_fields(daemonset, "V1DaemonSet", "DaemonSet")
    daemonset = by_kind("DaemonSet")
    daemonset["spec"]["template"]["spec"]["hostPID"] = "yes"
    with pytest.raises(AssertionError, match="expected bool"):
        check_fields(daemonset, "V1DaemonSet", "DaemonSet")
