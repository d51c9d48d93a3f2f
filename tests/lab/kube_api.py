"""A stand-in for the Kubernetes API server, on loopback, for testing the "kube" source.

Why a stand-in: no kube-apiserver, kubelet, kind, k3s or minikube binary is available
from any package registry reachable on the machines these tests run on, so the real
thing cannot run here. This server answers the few GETs vethpeer makes with documents
shaped like the real API's (v1 Pod / PodList, apps/v1 ReplicaSet, batch/v1 Job, v1
Status errors), including ``fieldSelector=spec.nodeName=...`` filtering, and records
every request so tests can assert what was asked.

It also answers the two reviews `serve --kube-auth` POSTs (:class:`Reviews`): a TokenReview
(authentication.k8s.io/v1) authenticates the tokens the test lists, a SubjectAccessReview
(authorization.k8s.io/v1) allows what the test grants, RBAC-style, to a user or one of its
groups; ``reviews.mode`` "hang" never answers them (an API server that times out) and
"down" drops the connection unanswered (one that is going away).

It is reached through an ordinary kubeconfig (:meth:`ApiServer.kubeconfig`), so the
``kubernetes`` client's own configuration loading and transport are what is exercised.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

CREATED = "2024-05-01T10:00:00Z"


def pod_json(
    name: str,
    namespace: str,
    uid: str,
    *,
    node: str,
    pod_ip: str | None,
    containers: dict[str, str] | None = None,  # container name -> runtime container ID ("" = not started)
    owner: tuple[str, str] | None = None,  # (kind, name) of the controller
    host_network: bool = False,
) -> dict[str, Any]:
    """A v1 Pod as the API server returns it (the fields vethpeer reads, and typical neighbours)."""
    containers = containers or {"app": ""}
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": uid,
        "resourceVersion": "4711",
        "creationTimestamp": CREATED,
        "labels": {"app": name.rsplit("-", 2)[0]},
    }
    if owner is not None:
        owner_api = "apps/v1" if owner[0] == "ReplicaSet" else "batch/v1"
        meta["ownerReferences"] = _controlled_by(*owner, owner_api)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "containers": [
                {"name": c, "image": "registry.example/vpk:1", "imagePullPolicy": "IfNotPresent"}
                for c in containers
            ],
            "nodeName": node,
            "hostNetwork": host_network,
            "restartPolicy": "Always",
            "serviceAccountName": "default",
        },
        "status": {
            "phase": "Running",
            "hostIP": "192.0.2.10",
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}] if pod_ip else [],
            "startTime": CREATED,
            "containerStatuses": [
                {
                    "name": c,
                    "ready": True,
                    "restartCount": 0,
                    "image": "registry.example/vpk:1",
                    "imageID": "registry.example/vpk@sha256:" + "0" * 64,
                    "started": True,
                    "state": {"running": {"startedAt": CREATED}},
                    **({"containerID": f"containerd://{cid}"} if cid else {}),
                }
                for c, cid in containers.items()
            ],
        },
    }


def _controlled_by(kind: str, name: str, api_version: str) -> list[dict[str, Any]]:
    """``metadata.ownerReferences`` naming one controller: ``kind`` ``name`` of ``api_version``."""
    return [
        {
            "apiVersion": api_version,
            "kind": kind,
            "name": name,
            "uid": str(uuid.uuid4()),
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def controller_json(kind: str, name: str, namespace: str, owner: tuple[str, str] | None) -> dict[str, Any]:
    """An apps/v1 ReplicaSet or batch/v1 Job, with its own controller reference."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": str(uuid.uuid4())}
    if owner is not None:
        owner_api = "apps/v1" if owner[0] == "Deployment" else "batch/v1"
        meta["ownerReferences"] = _controlled_by(*owner, owner_api)
    api = "apps/v1" if kind == "ReplicaSet" else "batch/v1"
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": {}, "status": {}}


def status_json(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@dataclass(frozen=True)
class User:
    username: str
    groups: tuple[str, ...] = ()
    uid: str = ""


def service_account(namespace: str, name: str) -> User:
    """A ServiceAccount as a TokenReview names it."""
    return User(
        f"system:serviceaccount:{namespace}:{name}",
        ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"),
        str(uuid.uuid4()),
    )


def asked(spec: dict[str, Any]) -> str:
    """A SubjectAccessReview's attributes as a grant string: ``get /metrics``,
    ``get nodes/proxy NODE`` (the name left out when the review names none)."""
    if "nonResourceAttributes" in spec:
        n = spec["nonResourceAttributes"]
        return f"{n['verb']} {n['path']}"
    r = spec["resourceAttributes"]
    resource = r["resource"] + (f"/{r['subresource']}" if r.get("subresource") else "")
    return " ".join(filter(None, (r["verb"], resource, r.get("name", ""))))


@dataclass
class Reviews:
    """TokenReview and SubjectAccessReview, as the test configures them.

    ``tokens``: token -> the user it authenticates; ``grants``: subject (user or group) ->
    grant strings as :func:`asked` writes them (``get /metrics``, ``get nodes/proxy node-0``;
    a grant without a name allows every name). ``calls`` records each review's kind.
    """

    tokens: dict[str, User] = field(default_factory=dict)
    grants: dict[str, set[str]] = field(default_factory=dict)
    mode: str = "ok"  # "ok", "hang" (never answers), "down" (drops the connection)
    calls: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def grant(self, subject: str, *what: str) -> None:
        self.grants.setdefault(subject, set()).update(what)

    def allowed(self, spec: dict[str, Any]) -> bool:
        wanted = asked(spec)
        unnamed = " ".join(wanted.split()[:2])
        for subject in (spec.get("user", ""), *spec.get("groups", [])):
            held = self.grants.get(subject, set())
            if wanted in held or unnamed in held:
                return True
        return False

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """The reply to a POST of a review; None for any other path."""
        if path == "/apis/authentication.k8s.io/v1/tokenreviews":
            self.calls.append("TokenReview")
            user = self.tokens.get(body.get("spec", {}).get("token", ""))
            status: dict[str, Any] = {"authenticated": user is not None}
            if user is not None:
                status["user"] = {"username": user.username, "groups": list(user.groups), "uid": user.uid}
            return 201, {**body, "status": status}
        if path == "/apis/authorization.k8s.io/v1/subjectaccessreviews":
            self.calls.append("SubjectAccessReview")
            allowed = self.allowed(body.get("spec", {}))
            reason = "RBAC: allowed" if allowed else ""
            return 201, {**body, "status": {"allowed": allowed, **({"reason": reason} if reason else {})}}
        return None


def review_post(handler: BaseHTTPRequestHandler, reviews: Reviews) -> None:
    """A POST to the stand-in: a review answered (or hung, or dropped), anything else 405."""
    length = int(handler.headers.get("Content-Length") or 0)
    try:
        body = json.loads(handler.rfile.read(length) or b"{}")
    except ValueError:
        body = None
    if reviews.mode == "hang":
        reviews.calls.append("hung")
        reviews.release.wait(30)
        return
    if reviews.mode == "down":
        reviews.calls.append("dropped")
        handler.close_connection = True
        with contextlib.suppress(OSError):
            handler.connection.shutdown(2)
        return
    reply = reviews.answer(handler.path.partition("?")[0], body) if isinstance(body, dict) else None
    send_json(
        handler, *(reply or (405, status_json(405, "MethodNotAllowed", "the server does not allow this")))
    )


def send_json(handler: BaseHTTPRequestHandler, code: int, document: dict[str, Any]) -> None:
    data = json.dumps(document).encode()
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


@dataclass
class ApiServer:
    """The stand-in: ``pods`` and ``controllers`` are served; ``mode`` "ok", "forbidden" or "hang"."""

    pods: list[dict[str, Any]] = field(default_factory=list)
    controllers: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)  # (ns, kind, name)
    mode: str = "ok"
    port: int = 0  # on 127.0.0.1; 0: any free one
    requests: list[str] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    reviews: Reviews = field(default_factory=Reviews)
    _server: ThreadingHTTPServer | None = None
    _release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}"

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        url = urlparse(path)
        query = parse_qs(url.query)
        parts = [p for p in url.path.split("/") if p]
        if parts == ["api", "v1", "pods"]:
            selector = query.get("fieldSelector", [""])[0]
            items = self.pods
            if selector.startswith("spec.nodeName="):
                node = selector.split("=", 1)[1]
                items = [p for p in items if p["spec"].get("nodeName") == node]
            return 200, {
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": "4711"},
                "items": items,
            }
        if len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods":
            for pod in self.pods:
                if pod["metadata"]["namespace"] == parts[3] and pod["metadata"]["name"] == parts[5]:
                    return 200, pod
            return 404, status_json(404, "NotFound", f'pods "{parts[5]}" not found')
        if len(parts) == 7 and parts[0] == "apis" and parts[3] == "namespaces":
            kind = {"replicasets": "ReplicaSet", "jobs": "Job"}.get(parts[5], "")
            found = self.controllers.get((parts[4], kind, parts[6]))
            if found is not None:
                return 200, found
            return 404, status_json(404, "NotFound", f'{parts[5]}.{parts[2]} "{parts[6]}" not found')
        return 404, status_json(404, "NotFound", "the server could not find the requested resource")

    def start(self) -> None:
        server_self = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

            def do_GET(self) -> None:
                server_self.requests.append(self.path)
                server_self.authorizations.append(self.headers.get("Authorization"))
                if server_self.mode == "hang":
                    server_self._release.wait(30)
                    return
                if server_self.mode == "forbidden":
                    code, body = (
                        403,
                        status_json(
                            403,
                            "Forbidden",
                            'pods is forbidden: User "system:serviceaccount:default:default" cannot list '
                            'resource "pods" in API group "" at the cluster scope',
                        ),
                    )
                else:
                    code, body = server_self.answer(self.path)
                send_json(self, code, body)

            def do_POST(self) -> None:
                server_self.requests.append(f"POST {self.path}")
                review_post(self, server_self.reviews)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="vpk-kube-api", daemon=True
        ).start()

    def stop(self) -> None:
        self._release.set()
        self.reviews.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def kubeconfig(self, token: str = "vpk-token") -> AbstractContextManager[str]:
        """A kubeconfig file pointing at this server (bearer token auth); removed afterwards."""
        return kubeconfig_file(self.url, token, "vpk")


@contextlib.contextmanager
def kubeconfig_file(
    url: str, token: str, name: str, namespace: str | None = None, ca: str | None = None
) -> Iterator[str]:
    """A kubeconfig file for the API server at ``url``, bearer ``token``: cluster, user and context
    all named ``name``, the context in ``namespace`` if one is given, the server's certificate
    checked against ``ca`` (a file) for https. Removed afterwards."""
    fd, path = tempfile.mkstemp(prefix=f"{name}-kubeconfig-", suffix=".yaml")
    ns = f"    namespace: {namespace}\n" if namespace else ""
    authority = f"    certificate-authority: {ca}\n" if ca else ""
    with os.fdopen(fd, "w") as f:
        f.write(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: {name}\n  cluster:\n    server: {url}\n{authority}"
            f"users:\n- name: {name}\n  user:\n    token: {token}\n"
            f"contexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n{ns}"
            f"current-context: {name}\n"
        )
    try:
        yield path
    finally:
        os.unlink(path)


@contextlib.contextmanager
def self_signed(prefix: str, address: str = "127.0.0.1") -> Iterator[tuple[str, str]]:
    """(certificate, key) files of a self-signed server certificate for IP ``address`` (a day long,
    made by Debian's openssl); removed afterwards. The certificate is its own CA."""
    folder = tempfile.mkdtemp(prefix=f"{prefix}-tls-")
    cert, key = os.path.join(folder, "tls.crt"), os.path.join(folder, "tls.key")
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "1", "-subj", f"/CN={prefix}-apiserver",
             "-addext", f"subjectAltName=IP:{address}", "-keyout", key, "-out", cert],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        yield cert, key
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def api_server(**kwargs: Any) -> Iterator[ApiServer]:
    server = ApiServer(**kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop()
