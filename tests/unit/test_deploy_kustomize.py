"""deploy/kubernetes rendered by the real `kubectl kustomize` (offline; Debian's kubernetes-client
when no kubectl is installed: scripts/install), then every object checked as the manifests are."""

from __future__ import annotations

import subprocess

import yaml

from tests.policy import need_binary
from tests.unit.test_deploy_manifests import DEPLOY, KINDS, check_fields


def test_kubectl_kustomize_renders_deploy_kubernetes() -> None:
    kubectl = need_binary("kubectl")
    done = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    rendered = [d for d in yaml.safe_load_all(done.stdout) if d]
    kinds = sorted(d["kind"] for d in rendered)
    assert kinds.count("NetworkPolicy") == 1 and kinds.count("DaemonSet") == 1
    assert {"ConfigMap", "Namespace", "Service", "ServiceAccount", "Role"} <= set(kinds)
    for document in rendered:
        check_fields(document, KINDS[(document["apiVersion"], document["kind"])], document["kind"])
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in rendered}
    policy = by_name[("NetworkPolicy", "vethpeer")]
    assert policy["metadata"]["namespace"] == "vethpeer"
    cidr = by_name[("ConfigMap", "vethpeer-apiserver")]["data"]["cidr"]
    assert policy["spec"]["ingress"][1]["from"][0]["ipBlock"]["cidr"] == cidr
