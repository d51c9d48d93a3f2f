"""A stand-in Kubernetes API server for `kubectl vethpeer`: nodes, pods, and the pod proxy.

Why a stand-in: no kube-apiserver (nor kubelet, kind, k3s, minikube) binary is available from
any registry reachable here, so the real thing cannot run. This serves, on 127.0.0.1, the
GETs the plugin makes with documents shaped like the real API's — v1 NodeList, PodList with
``labelSelector`` / ``fieldSelector=spec.nodeName=`` filtering, Pod, v1 Status errors — and
the pod proxy ``/api/v1/namespaces/NS/pods/NAME:PORT/proxy/PATH``, which it forwards to the
real `vethpeer serve` process standing in for that pod (one per simulated node), with the
real API server's behaviour when the pod does not answer (503 Status "error trying to reach
service"). A bearer token is required, as a real server would.

Like the real one, the proxy forwards without the client's Authorization header (kube-apiserver
deletes it once it has authenticated the request) and connects from an address of its own,
:data:`PROXY_SOURCE`, so an agent running ``serve --kube-auth --kube-auth-proxy-cidr`` can be
tested as in a cluster; ``https:NAME:PORT`` is forwarded over TLS without verifying the pod's
certificate, as the real one does. ``proxy_forbidden`` answers the pod proxy 403, as for a user
without ``get`` on ``pods/proxy``. POSTed TokenReviews and SubjectAccessReviews (the agents'
``--kube-auth``) are answered by :class:`tests.lab.kube_api.Reviews`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import ssl
import threading
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from tests.lab.kube_api import Reviews, kubeconfig_file, pod_json, review_post, send_json, status_json
from tests.lab.serve_lab import free_port

TOKEN = "vps-token"
PROXY_SOURCE = "127.0.0.3"  # the stand-in API server's own address, as the agents see its proxy
AGENT_LABELS = {"app.kubernetes.io/name": "vethpeer", "app.kubernetes.io/component": "node-agent"}


def node_json(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "uid": str(uuid.uuid4()), "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def agent_pod(node: str, index: int, port_name: str = "http-metrics") -> dict[str, Any]:
    pod = pod_json(
        f"vethpeer-{index:05x}",
        "vethpeer",
        str(uuid.uuid4()),
        node=node,
        pod_ip=f"10.244.{index // 250}.{index % 250 + 2}",
    )
    pod["metadata"]["labels"] = dict(AGENT_LABELS)
    pod["spec"]["containers"] = [
        {
            "name": "vethpeer",
            "image": "vethpeer:0.1.0",
            "ports": [{"name": port_name, "containerPort": 10098, "protocol": "TCP"}],
        }
    ]
    pod["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    return pod


def _selected(pod: dict[str, Any], query: dict[str, list[str]]) -> bool:
    labels = pod["metadata"].get("labels", {})
    for term in filter(None, query.get("labelSelector", [""])[0].split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    field_selector = query.get("fieldSelector", [""])[0]
    if field_selector.startswith("spec.nodeName="):
        return bool(pod["spec"].get("nodeName") == field_selector.split("=", 1)[1])
    return True


@dataclass
class Cluster:
    nodes: list[str] = field(default_factory=list)
    pods: list[dict[str, Any]] = field(default_factory=list)
    backends: dict[str, int] = field(default_factory=dict)  # agent pod name -> 127.0.0.1 port of its serve
    requests: list[str] = field(default_factory=list)
    nodes_forbidden: bool = False
    proxy_forbidden: bool = False
    reviews: Reviews = field(default_factory=Reviews)
    port: int = 0  # 0: one from serve_lab's range
    tls: tuple[str, str] | None = None  # (certificate, key): serve https (kubectl sends tokens only over TLS)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self._server.server_port}"

    def answer(self, raw_path: str, encoding: str = "") -> tuple[int, str, bytes, dict[str, str]]:
        url = urlparse(raw_path)
        query = parse_qs(url.query)
        parts = [unquote(p) for p in url.path.split("/") if p]

        def doc(code: int, body: dict[str, Any]) -> tuple[int, str, bytes, dict[str, str]]:
            return code, "application/json", json.dumps(body).encode(), {}

        if parts == ["api", "v1", "nodes"]:
            if self.nodes_forbidden:
                return doc(
                    403,
                    status_json(
                        403, "Forbidden", 'nodes is forbidden: User "vps" cannot list resource "nodes"'
                    ),
                )
            return doc(
                200,
                {
                    "kind": "NodeList",
                    "apiVersion": "v1",
                    "metadata": {},
                    "items": [node_json(n) for n in self.nodes],
                },
            )
        if parts == ["api", "v1", "pods"]:  # what the agents' kube source lists (its node's pods)
            items = [p for p in self.pods if _selected(p, query)]
            return doc(
                200,
                {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items},
            )
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) >= 5 and parts[4] == "pods":
            namespace = parts[3]
            if len(parts) == 5:
                items = [
                    p for p in self.pods if p["metadata"]["namespace"] == namespace and _selected(p, query)
                ]
                return doc(
                    200,
                    {
                        "kind": "PodList",
                        "apiVersion": "v1",
                        "metadata": {"resourceVersion": "1"},
                        "items": items,
                    },
                )
            scheme, _, rest = parts[5].partition(":")
            if scheme not in ("http", "https") or not rest:
                scheme, rest = "http", parts[5]
            name, _, port = rest.partition(":")
            pod = next(
                (
                    p
                    for p in self.pods
                    if p["metadata"]["namespace"] == namespace and p["metadata"]["name"] == name
                ),
                None,
            )
            if pod is None:
                return doc(404, status_json(404, "NotFound", f'pods "{name}" not found'))
            if len(parts) == 6:
                return doc(200, pod)
            if parts[6] == "proxy":
                if self.proxy_forbidden:
                    message = (
                        f'pods "{parts[5]}" is forbidden: User "vps" cannot get resource "pods/proxy" '
                        f'in API group "" in the namespace "{namespace}"'
                    )
                    return doc(403, status_json(403, "Forbidden", message))
                rest = "/" + url.path.split("/proxy/", 1)[1] + (f"?{url.query}" if url.query else "")
                return self.forward(name, rest, pod, port, encoding, scheme)
        return doc(404, status_json(404, "NotFound", "the server could not find the requested resource"))

    def forward(
        self, name: str, path: str, pod: dict[str, Any], port: str, encoding: str, scheme: str = "http"
    ) -> tuple[int, str, bytes, dict[str, str]]:
        """As the API server's proxy: the request's Accept-Encoding goes up, Content-Encoding comes back."""
        backend = self.backends.get(name)
        target = f"{pod['status']['podIP']}:{port or 80}"
        refused = json.dumps(
            status_json(
                503,
                "ServiceUnavailable",
                f"error trying to reach service: dial tcp {target}: connect: connection refused",
            )
        ).encode()
        if backend is None:
            return 503, "application/json", refused, {}
        conn: http.client.HTTPConnection
        if scheme == "https":
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # as the real proxy
            conn = http.client.HTTPSConnection(
                "127.0.0.1", backend, timeout=30, source_address=(PROXY_SOURCE, 0), context=context
            )
        else:
            conn = http.client.HTTPConnection(
                "127.0.0.1", backend, timeout=30, source_address=(PROXY_SOURCE, 0)
            )
        try:
            conn.request("GET", path, headers={"Accept-Encoding": encoding} if encoding else {})
            response = conn.getresponse()
            extra = (
                {"Content-Encoding": response.getheader("Content-Encoding")}
                if response.getheader("Content-Encoding")
                else {}
            )
            return (
                response.status,
                response.getheader("Content-Type", "application/octet-stream"),
                response.read(),
                extra,
            )
        except OSError:
            return 503, "application/json", refused, {}
        finally:
            conn.close()

    def start(self) -> None:
        cluster = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

            def do_GET(self) -> None:
                cluster.requests.append(self.path)
                extra: dict[str, str] = {}
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    unauthorized = status_json(401, "Unauthorized", "Unauthorized")
                    code, kind, body = 401, "application/json", json.dumps(unauthorized).encode()
                else:
                    code, kind, body, extra = cluster.answer(
                        self.path, self.headers.get("Accept-Encoding", "")
                    )
                self.send_response(code)
                self.send_header("Content-Type", kind)
                for header, value in extra.items():
                    self.send_header(header, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                cluster.requests.append(f"POST {self.path}")
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    send_json(self, 401, status_json(401, "Unauthorized", "Unauthorized"))
                    return
                review_post(self, cluster.reviews)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port or free_port()), Handler)
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._server.daemon_threads = True
        self._server.request_queue_size = 256
        threading.Thread(target=self._server.serve_forever, name="vps-kube-api", daemon=True).start()

    def stop(self) -> None:
        self.reviews.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def kubeconfig(self, namespace: str | None = None) -> AbstractContextManager[str]:
        """A kubeconfig file pointing at this cluster (its token), in ``namespace``; removed afterwards."""
        return kubeconfig_file(self.url, TOKEN, "vps", namespace, self.tls[0] if self.tls else None)


@contextlib.contextmanager
def cluster(**kwargs: Any) -> Iterator[Cluster]:
    built = Cluster(**kwargs)
    built.start()
    try:
        yield built
    finally:
        built.stop()
