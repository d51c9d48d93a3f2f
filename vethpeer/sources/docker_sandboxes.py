"""Docker's own network sandboxes (overlay, swarm), named after their Docker network.

Next to the containers' namespaces, Docker's libnetwork keeps namespaces of its own,
bind-mounted in its exec root's ``netns`` folder (``/run/docker/netns/``) under names
cut to 12 characters (libnetwork's ``osl.GenerateKey``):

* ``1-<first 10 characters of the network ID>``: an overlay network's namespace (its
  bridge ``br0`` and ``vxlan0``, and the host-facing ends of the containers' veths);
* ``lb_<first 9 characters>``: the network's load balancer (swarm services, ``lb-NAME``
  as ``docker network inspect`` calls it);
* ``ingress_sbox``: the routing mesh's sandbox (``ingress-sbox``).

Those are named ``docker-network/NAME``, ``docker-network/lb-NAME`` and
``docker-network/ingress-sbox`` from the daemons' network list (``GET /networks``), asked
through the client the engine's URL needs (``--docker-host``, else ``DOCKER_HOST`` of the
run's environment: the standard library's on a unix socket, the SDK's for tcp:// or ssh://),
and of every other dockerd listening; without a daemon their path stays their name. Nothing
is asked on a host without them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..deadline import Deadline
from ..model import Claim, Namespace, SourceResult, SourceState, SourceStatus, Workload, WorkloadKind
from . import PRIORITY_RUNTIME, Context
from .absent import other_daemons
from .docker_api import Api, Timeout, classify, docker_host, open_api, socket_path

NAME = "docker-sandboxes"
_OVERLAY = re.compile(r"^1-([0-9a-z]{10})$")
_LB = re.compile(r"^lb_([0-9a-z]{9})$")
INGRESS = "ingress_sbox"


def sandbox_of(path: str) -> tuple[str, str] | None:
    """("overlay" | "lb", network ID prefix) or ("ingress", "") for a libnetwork sandbox path."""
    folder, _, base = path.rpartition("/")
    if not folder.endswith("/netns"):
        return None
    if base == INGRESS:
        return "ingress", ""
    if m := _OVERLAY.match(base):
        return "overlay", m.group(1)
    if m := _LB.match(base):
        return "lb", m.group(1)
    return None


def sandboxes(namespaces: Iterable[Namespace]) -> dict[str, tuple[Namespace, str, str]]:
    """Sandbox path -> (its namespace, what, network ID prefix)."""
    found = {}
    for ns in namespaces:
        for path in ns.mounts:
            kind = sandbox_of(path)
            if kind is not None:
                found[path] = (ns, *kind)
    return found


def claims(
    found: Mapping[str, tuple[Namespace, str, str]], networks: Sequence[Mapping[str, Any]]
) -> list[Claim]:
    """A claim per sandbox whose network is known (an ID prefix matching exactly one network)."""
    result = []
    for path, (ns, what, prefix) in sorted(found.items()):
        if what == "ingress":
            net = next((n for n in networks if n.get("Ingress") or n.get("Name") == "ingress"), None)
            name = "ingress-sbox"
        else:
            hits = [n for n in networks if str(n.get("Id", "")).startswith(prefix)]
            net = hits[0] if len(hits) == 1 else None
            name = f"lb-{net.get('Name')}" if net and what == "lb" else str(net.get("Name")) if net else ""
        if net is None:
            continue
        workload = Workload(
            WorkloadKind.DOCKER_NETWORK,
            name,
            id=str(net.get("Id") or path),
            networks=(str(net.get("Name")),),
            source=NAME,
        )
        result.append(Claim(ns.key, workload, PRIORITY_RUNTIME))
    return result


class DockerSandboxes:
    """Source "docker-sandboxes": overlay and swarm sandboxes, named after their network."""

    name = NAME

    def collect(self, context: Context) -> SourceResult:
        found = sandboxes(ns for ns in context.namespaces if not ns.is_host)
        if not found:
            return SourceResult(SourceStatus(self.name, SourceState.SKIPPED, "no overlay or swarm sandboxes"))
        url = docker_host(context.options.docker_host, context.environ)
        path = socket_path(url)
        urls = [url] if path is None or os.path.exists(path) else []
        urls += [f"unix://{e.path}" for e in other_daemons(context, url)]
        if not urls:
            detail = f"{len(found)} sandboxes, no Docker engine to name them (no socket at {path})"
            return SourceResult(SourceStatus(self.name, SourceState.UNAVAILABLE, detail))
        networks: list[dict[str, Any]] = []
        problems = []
        deadline = Deadline(context.options.timeout)

        def remaining() -> float:
            if deadline.expired():
                raise Timeout()
            return deadline.left()

        use_sdk = context.environ.get("VETHPEER_DOCKER_SDK") == "1"
        for target in urls:
            api: Api | None = None
            try:  # the I/O only: socket, HTTP and SDK errors alike are a status, not a crash
                api = open_api(target, remaining, context.environ, use_sdk=use_sdk)
                networks += api.networks(remaining())
            except ImportError:
                problems.append(f"{target}: the docker Python package is not installed")
            except Exception as error:
                problems.append(f"{target}: {classify(error)[1]}")
            finally:
                if api is not None:
                    api.close()
        named = claims(found, networks)
        detail = f"{len(named)} of {len(found)} sandboxes named" + (
            f" ({'; '.join(problems)})" if problems else ""
        )
        state = SourceState.OK if named or not problems else SourceState.UNAVAILABLE
        return SourceResult(SourceStatus(self.name, state, detail), tuple(named))
