"""`serve --kube-auth`: who may ask, decided by the Kubernetes API, as kube-rbac-proxy does.

A request's bearer token is checked with a TokenReview (authentication.k8s.io/v1), then what
it asks for with a SubjectAccessReview (authorization.k8s.io/v1) for that user:

* ``/metrics`` (and any path that is not the API): ``nonResourceAttributes`` path, verb
  ``get``. Prometheus' ClusterRole grants ``nonResourceURLs: ["/metrics"], verbs: ["get"]``.
* ``/api/v1/...``: ``resourceAttributes`` ``get`` on ``nodes/proxy`` named after this node
  (``$NODE_NAME``; without it, no name: a grant on every node is needed). The API tells
  what pod is where on the node, which is what ``nodes/proxy`` already gives (the kubelet's
  API), so it asks no new grant of anyone who can read the node.

The answers: no or malformed ``Authorization: Bearer`` header, or a token the TokenReview
does not authenticate: 401 (``WWW-Authenticate: Bearer``); authenticated but not allowed:
403; the API server unreachable, slow (``timeout``, for both reviews together) or answering
nonsense: 503, *fail closed*. Decisions (allowed and denied, not errors) are cached for
``ttl`` seconds, keyed by the token's SHA-256 and the attributes, at most ``size`` of them.

The API server's pod proxy (``kubectl vethpeer``, ``kubectl get --raw .../proxy/...``)
authenticates the user itself, checks ``get`` on ``pods/proxy`` and then *deletes* the
Authorization header (k8s.io/apiserver filters/authentication.go) before connecting to the
pod from its own address with no credentials at all. So that path can only be told apart
by its source address: ``proxy_sources`` (``--kube-auth-proxy-cidr``) are networks whose
requests *without* an Authorization header are taken as the API server's proxy and allowed
for ``/api/v1/...`` only (never ``/metrics``). Nothing is trusted by default.
"""

from __future__ import annotations

import hashlib
import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .auth import PEER_HEADER, Decision

TOKENREVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
SUBJECTACCESSREVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
CHALLENGE = 'Bearer realm="vethpeer"'
PROXY_USER = "system:apiserver-proxy"  # who a request through the API server's pod proxy is, to the log
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ReviewFailed(Exception):
    """The API server could not decide: unreachable, too slow, or an answer that is not a review."""


class Reviewer(Protocol):
    def create(self, path: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        """POST a review to ``path`` and return the API server's answer (its ``status`` is read)."""
        ...


def attributes(method: str, path: str, node: str | None) -> dict[str, Any]:
    """What a request asks for, as a SubjectAccessReview spec's attributes."""
    path = path.partition("?")[0]
    verb = "get" if method in ("GET", "HEAD") else method.lower()
    if path == "/api" or path.startswith("/api/"):
        resource = {"verb": verb, "resource": "nodes", "subresource": "proxy"}
        if node:
            resource["name"] = node
        return {"resourceAttributes": resource}
    return {"nonResourceAttributes": {"path": path, "verb": verb}}


def bearer(headers: Mapping[str, str]) -> str | None:
    """The token of ``Authorization: Bearer TOKEN``; None if absent or anything else."""
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or any(c.isspace() for c in token):
        return None
    return token


def parse_networks(texts: Sequence[str]) -> tuple[Network, ...]:
    """``--kube-auth-proxy-cidr`` values; ValueError names the one that is not a network."""
    return tuple(ipaddress.ip_network(text, strict=False) for text in texts)


@dataclass
class _Cache:
    """(token hash, attributes) -> decision, for ``ttl`` seconds, the ``size`` most recent."""

    ttl: float
    size: int
    clock: Callable[[], float]
    _entries: OrderedDict[tuple[str, str], tuple[float, Decision]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: tuple[str, str]) -> Decision | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= self.clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: tuple[str, str], decision: Decision) -> None:
        with self._lock:
            self._entries[key] = (self.clock() + self.ttl, decision)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


class KubeAuth:
    """The Authenticator of ``serve --kube-auth`` (see the module's docstring)."""

    name = "kube"

    def __init__(
        self,
        reviewer: Reviewer,
        *,
        node: str | None = None,
        timeout: float = 2.0,
        ttl: float = 5.0,
        size: int = 1024,
        proxy_sources: Sequence[Network] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reviewer, self.node, self.timeout = reviewer, node, timeout
        self.proxy_sources = tuple(proxy_sources)
        self.clock = clock
        self._cache = _Cache(ttl, size, clock)

    def check(self, method: str, path: str, headers: Mapping[str, str]) -> Decision:
        wanted = attributes(method, path, self.node)
        if "authorization" not in headers and self._from_proxy(headers, wanted):
            return Decision(True, user=PROXY_USER)
        token = bearer(headers)
        if token is None:
            reason = "no bearer token" if "authorization" not in headers else "malformed Authorization header"
            return Decision(False, 401, reason=reason, challenge=CHALLENGE)
        key = (hashlib.sha256(token.encode()).hexdigest(), repr(sorted(wanted.items())))
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        try:
            decision = self._review(token, wanted)
        except ReviewFailed as error:
            return Decision(False, 503, reason=f"the API server could not decide: {error}")
        self._cache.put(key, decision)
        return decision

    def _from_proxy(self, headers: Mapping[str, str], wanted: Mapping[str, Any]) -> bool:
        if not self.proxy_sources or "resourceAttributes" not in wanted:
            return False
        try:
            peer = ipaddress.ip_address(headers.get(PEER_HEADER, ""))
        except ValueError:
            return False
        return any(peer in network for network in self.proxy_sources)

    def _review(self, token: str, wanted: dict[str, Any]) -> Decision:
        deadline = self.clock() + self.timeout
        review = self._create(
            TOKENREVIEWS,
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}},
            deadline,
        )
        if not review.get("authenticated"):
            reason = str(review.get("error") or "the TokenReview did not authenticate the token")
            return Decision(False, 401, reason=reason, challenge=CHALLENGE)
        user = review.get("user")
        if not isinstance(user, dict) or not isinstance(user.get("username"), str):
            raise ReviewFailed("a TokenReview without status.user.username")
        spec: dict[str, Any] = {"user": user["username"], **wanted}
        for name in ("uid", "groups", "extra"):
            if user.get(name):
                spec[name] = user[name]
        access = self._create(
            SUBJECTACCESSREVIEWS,
            {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec},
            deadline,
        )
        username = str(user["username"])
        if access.get("allowed") is True and not access.get("denied"):
            return Decision(True, user=username)
        reason = str(access.get("reason") or access.get("evaluationError") or "no RBAC grant")
        return Decision(False, 403, user=username, reason=f"{username}: {_asked(wanted)}: {reason}")

    def _create(self, path: str, body: dict[str, Any], deadline: float) -> dict[str, Any]:
        left = deadline - self.clock()
        if left <= 0:
            raise ReviewFailed(f"no answer within {self.timeout:g} s")
        answer = self.reviewer.create(path, body, left)
        status = answer.get("status") if isinstance(answer, dict) else None
        if not isinstance(status, dict):
            raise ReviewFailed(f"{body['kind']}: the answer has no status")
        return status


def _asked(wanted: Mapping[str, Any]) -> str:
    """The grant a request needs, as RBAC spells it (for the 403's log line)."""
    if "resourceAttributes" in wanted:
        r = wanted["resourceAttributes"]
        name = f" {r['name']}" if r.get("name") else ""
        return f"{r['verb']} {r['resource']}/{r['subresource']}{name}"
    n = wanted["nonResourceAttributes"]
    return f"{n['verb']} {n['path']}"


class ClientReviewer:
    """Reviews through the ``kubernetes`` client's typed calls (every client generation has
    ``create_token_review`` and ``create_subject_access_review``), answers read as plain JSON."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self._calls: dict[str, Any] = {
            TOKENREVIEWS: client.AuthenticationV1Api(api_client).create_token_review,
            SUBJECTACCESSREVIEWS: client.AuthorizationV1Api(api_client).create_subject_access_review,
        }

    def create(self, path: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        import json

        import urllib3.exceptions
        from kubernetes.client.exceptions import ApiException

        try:
            response = self._calls[path](
                body, _preload_content=False, _request_timeout=(min(timeout, 1.0), timeout)
            )
            answer = json.loads(response.data)
        except ApiException as error:
            answered = f"the API server answered {error.status} {error.reason}"
            raise ReviewFailed(f"{body['kind']}: {answered}") from None
        except urllib3.exceptions.HTTPError as error:
            reason = getattr(error, "reason", None) or error
            raise ReviewFailed(f"{body['kind']}: {reason}") from None
        except ValueError:
            raise ReviewFailed(f"{body['kind']}: the answer is not JSON") from None
        if not isinstance(answer, dict):
            raise ReviewFailed(f"{body['kind']}: the answer is not an object")
        return answer


def api_client(kubeconfig: str | None, environ: Mapping[str, str]) -> Any:
    """The ``kubernetes`` client for the reviews: ``kubeconfig`` if given, else in a pod the
    service account (the agent's: it needs the ``system:auth-delegator`` ClusterRole), else
    ``$KUBECONFIG`` or ``~/.kube/config``. Raises ValueError with a one-line reason."""
    import os

    import kubernetes.client
    import kubernetes.config
    from kubernetes.config.config_exception import ConfigException

    client: Any = kubernetes.client
    config: Any = kubernetes.config
    configuration = client.Configuration()
    try:
        if kubeconfig is None and environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
        else:
            default = environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
            config.load_kube_config(
                config_file=kubeconfig or default,
                client_configuration=configuration,
                persist_config=False,
            )
    except (ConfigException, OSError, TypeError, ValueError) as error:
        raise ValueError(f"cannot load the Kubernetes configuration for --kube-auth: {error}") from None
    configuration.retries = False  # one attempt: the deadline is ours, and a dead API server denies
    configuration.connection_pool_maxsize = 16
    return client.ApiClient(configuration)


def from_options(kubeconfig: str | None, proxy_cidrs: Sequence[str], environ: Mapping[str, str]) -> KubeAuth:
    """``serve --kube-auth``'s Authenticator; ValueError (one line) when its configuration fails."""
    node = next((environ[var] for var in ("NODE_NAME", "KUBE_NODE_NAME") if environ.get(var)), None)
    return KubeAuth(
        ClientReviewer(api_client(kubeconfig, environ)), node=node, proxy_sources=parse_networks(proxy_cidrs)
    )
