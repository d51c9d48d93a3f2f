"""The Kubernetes API server, as the plugin uses it: load a kubeconfig (or in-cluster config), GET JSON.

Configuration loading (contexts, client certificates, tokens, exec credential plugins) is
the ``kubernetes`` client's; requests go through its connection pool (its CA, client
certificate, proxy) with the headers of its ``Configuration.auth_settings()`` (bearer tokens,
refreshed by exec plugins). Both are the same in every client generation ``kubernetes>=29``
allows, unlike ``ApiClient.call_api`` and ``update_params_for_auth``, whose argument lists
changed. Every failure is a :class:`ClusterError` value with a one-line message.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ..errors import VethpeerError


class ClusterError(VethpeerError):
    """The API server could not be reached, or refused."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def message(self) -> str:
        """The API server's Status message, or the start of the body."""
        document = self.json()
        if isinstance(document, dict):
            if isinstance(document.get("message"), str):
                return str(document["message"])
            error = document.get("error")
            if isinstance(error, dict) and isinstance(error.get("message"), str):
                return str(error["message"])
        return self.body[:200].decode(errors="replace").strip() or f"HTTP {self.status}"


class Cluster:
    """One API server connection pool, shared by every (concurrent) request."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None, pool: int = 64) -> None:
        import kubernetes.client
        import kubernetes.config
        from kubernetes.config.config_exception import ConfigException

        config: Any = kubernetes.config  # the client's typing is partial; it is used through Any
        configuration: Any = kubernetes.client.Configuration()
        try:
            config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
            self.namespace = _context_namespace(kubeconfig, context)
        except (ConfigException, OSError, ValueError, TypeError) as error:
            if kubeconfig is not None or not os.environ.get("KUBERNETES_SERVICE_HOST"):
                raise ClusterError(f"cannot load the Kubernetes configuration: {error}") from None
            try:  # like kubectl: in a pod without a kubeconfig, the pod's service account
                config.load_incluster_config(client_configuration=configuration)
            except ConfigException as inner:
                raise ClusterError(f"cannot load the Kubernetes configuration: {inner}") from None
            self.namespace = "default"
        configuration.connection_pool_maxsize = pool
        configuration.retries = False  # a node that does not answer costs one timeout, not four
        self._configuration = configuration
        self._client: Any = kubernetes.client.ApiClient(configuration)
        self.host = str(configuration.host).rstrip("/")

    def get(self, path: str, timeout: float) -> Reply:
        """GET ``path`` (already quoted); a reply whatever its status, ClusterError if none came."""
        import urllib3

        headers = {"Accept": "application/json, */*", "Accept-Encoding": "gzip", **self._auth_headers()}
        try:
            response = self._client.rest_client.pool_manager.request(
                "GET",
                self.host + path,
                headers=headers,
                timeout=urllib3.Timeout(total=timeout),
                retries=False,
            )
            return Reply(int(response.status), response.data)
        except urllib3.exceptions.HTTPError as error:
            reason = getattr(error, "reason", None) or error
            raise ClusterError(f"{self.host}: {reason}") from None

    def _auth_headers(self) -> dict[str, str]:
        """The credentials the configuration puts in headers (a bearer token, refreshed if it expires)."""
        settings = self._configuration.auth_settings()
        return {
            str(s["key"]): str(s["value"])
            for s in settings.values()
            if s.get("in") == "header" and s.get("value")
        }

    def get_json(self, path: str, timeout: float) -> Any:
        reply = self.get(path, timeout)
        if reply.status != 200:
            raise ClusterError(f"{path.split('?')[0]}: {reply.status} {reply.message}")
        document = reply.json()
        if document is None:
            raise ClusterError(f"{path.split('?')[0]}: not JSON")
        return document

    def close(self) -> None:
        self._client.close()


def _context_namespace(kubeconfig: str | None, context: str | None) -> str:
    """The namespace the kubeconfig's (current or given) context sets, else ``default``."""
    import kubernetes.config

    config: Any = kubernetes.config
    contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else current
    namespace = (chosen or {}).get("context", {}).get("namespace")
    return str(namespace) if namespace else "default"


def pod_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}"


def proxy_path(namespace: str, pod: str, port: int, path: str, scheme: str = "http") -> str:
    """The API server's pod proxy: ``/api/v1/namespaces/NS/pods/POD:PORT/proxy/PATH``, or
    ``.../pods/https:POD:PORT/proxy/PATH`` for an agent that serves TLS (the API server does not
    verify the pod's certificate on that path)."""
    where = f"{pod_path(namespace, pod)}:{port}"
    if scheme == "https":
        head, _, name = where.rpartition("/")
        where = f"{head}/https:{name}"
    return f"{where}/proxy/{path.lstrip('/')}"
