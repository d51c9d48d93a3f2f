"""vethpeer's calls through the `kubernetes` client work on both ends of the range pyproject.toml
allows: the venv's (newest) and the oldest (``kubernetes==29.*``, which scripts/install --test puts
in .cache/kubernetes-29). The plugin's GET (kubectl/cluster.py) and the agent's reviews
(serve/kubeauth.py) run in a subprocess with each client against the stand-in API server
(tests/lab/kube_api.py). Generations differ in ``ApiClient.call_api`` and
``update_params_for_auth``; vethpeer uses neither."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.lab.kube_api import ApiServer, User, api_server, kubeconfig_file, pod_json
from tests.lab.serve_lab import ROOT, free_port
from tests.policy import need_files

OLDEST = re.search(r'"kubernetes>=([0-9.]+)"', (ROOT / "pyproject.toml").read_text())
assert OLDEST is not None
OLDEST_DIR = ROOT / ".cache" / f"kubernetes-{OLDEST.group(1)}"
SCRIPT = """
import json, sys
import kubernetes
from vethpeer.kubectl.cluster import Cluster
from vethpeer.agent.kubeauth import from_options
cluster = Cluster(sys.argv[1])
pod = cluster.get_json("/api/v1/namespaces/shop/pods/web-1", 5)
missing = cluster.get("/api/v1/namespaces/shop/pods/nope", 5)
auth = from_options(sys.argv[1], [], {"NODE_NAME": "node-0"})
allowed = auth.check("GET", "/metrics", {"authorization": "Bearer prom"})
denied = auth.check("GET", "/api/v1/table", {"authorization": "Bearer prom"})
print(json.dumps({"version": kubernetes.__version__, "pod": pod["metadata"]["name"],
                  "missing": missing.status, "allowed": allowed.allowed, "denied": denied.status}))
"""


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with api_server(port=free_port(21200, 21299)) as server:
        server.pods.append(pod_json("web-1", "shop", "u-1", node="node-0", pod_ip="198.18.0.2"))
        server.reviews.tokens["prom"] = User("prometheus")
        server.reviews.grant("prometheus", "get /metrics")
        yield server


def run(api: ApiServer, pythonpath: list[str]) -> dict[str, object]:
    with kubeconfig_file(api.url, "vqc-token", "vqc") as kubeconfig:
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, kubeconfig],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([*pythonpath, str(ROOT)])},
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    answer: dict[str, object] = json.loads(done.stdout)
    assert {k: answer[k] for k in ("pod", "missing", "allowed", "denied")} == {
        "pod": "web-1",
        "missing": 404,
        "allowed": True,
        "denied": 403,
    }
    assert set(api.authorizations) == {"Bearer vqc-token"}
    return answer


def test_the_newest_client(api: ApiServer) -> None:
    import kubernetes

    assert run(api, [])["version"] == kubernetes.__version__


def test_the_oldest_client_allowed(api: ApiServer) -> None:
    need_files([str(OLDEST_DIR / "kubernetes" / "__init__.py")], "scripts/install --test")
    assert str(run(api, [str(OLDEST_DIR)])["version"]).startswith(f"{OLDEST.group(1)}.")
