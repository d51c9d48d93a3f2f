#!/usr/bin/env python3
"""Run vethpeer with the well-kept libraries in place of the protocols it speaks by hand.

``python benchmarks/libraries.py pyroute2,docker,grpcio -- table --json`` runs the real CLI
(``vethpeer.cli.main``) after swapping, for this process only:

* ``pyroute2``: the walk's rtnetlink socket (``vethpeer.netlink.RtnlSocket``) for one built on
  pyroute2's ``IPRoute`` (made inside each namespace, as ours is);
* ``docker``: the Engine client on the local socket (``docker_api.LocalApi``) for the docker SDK;
* ``grpcio``: the CRI client on ``h2`` (``vethpeer.cri.client.Channel``) for a grpcio channel;
* ``protobuf``: the CRI messages by hand (``vethpeer.cri.messages``) for protobuf's generated
  ``api_pb2``, imported where ours would be (in the CRI source's thread, once a socket is found).

``none`` swaps nothing (the same runner, for a fair comparison). The switch lives here, in
the benchmarks, not in vethpeer or its CLI: the commands users run are unchanged, and
``bench_protocols.py`` times both ways in one run. The libraries are the oracles of the
hand-written clients in the tests (docs/development.md, "Protocols spoken by hand").
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BRPORT_STATES = ("disabled", "listening", "learning", "forwarding", "blocking")
CHOICES = ("pyroute2", "docker", "grpcio", "protobuf")


class Pyroute2Socket:
    """RtnlSocket's methods on pyroute2's IPRoute (opened in the namespace current now)."""

    def __init__(self) -> None:
        from pyroute2 import IPRoute

        self.ipr = IPRoute()

    def close(self) -> None:
        self.ipr.close()

    def _link(self, msg: Any, stats: bool) -> Any:
        from vethpeer.model import Link, LinkStats

        slave_kind = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_SLAVE_KIND")
        state = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_SLAVE_DATA", "IFLA_BRPORT_STATE")
        counters = msg.get("stats64") if stats else None
        link, netnsid = msg.get("link"), msg.get("link_netnsid")
        flags = msg["flags"]
        return Link(
            index=msg["index"],
            name=msg.get("ifname") or "",
            flags=flags,
            kind=msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND"),
            mac=msg.get("address") or ("00:00:00:00:00:00" if flags & 0x8 else None),
            mtu=msg.get("mtu"),
            operstate=(msg.get("operstate") or "unknown").lower(),
            master=msg.get("master"),
            link=msg["index"] if link is None and netnsid is not None else link,
            link_netnsid=netnsid,
            slave_kind=slave_kind,
            brport_state=BRPORT_STATES[state] if slave_kind == "bridge" and state is not None else None,
            stats=LinkStats(*(counters[f] for f in LinkStats.__dataclass_fields__)) if counters else None,
        )

    def links(self, stats: bool = False) -> list[Any]:
        return [self._link(msg, stats) for msg in self.ipr.get_links()]

    def link(self, name: str | None = None, index: int = 0, stats: bool = False) -> Any:
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            found = self.ipr.get_links(ifname=name) if name is not None else self.ipr.get_links(index)
        except NetlinkError:
            return None
        return self._link(found[0], stats) if found else None

    def addresses(self) -> list[Any]:
        from vethpeer.netlink import RawAddress

        found = []
        for msg in self.ipr.get_addr():
            address = msg.get("local") or msg.get("address")
            if address is not None:
                found.append(RawAddress(msg["index"], f"{address}/{msg['prefixlen']}"))
        return found

    def fdb(self) -> list[Any]:
        from vethpeer.model import FdbEntry

        return [
            FdbEntry(
                port=msg["ifindex"],
                mac=msg.get("lladdr"),
                master=msg.get("master"),
                vlan=msg.get("vlan"),
                state=msg["state"],
                flags=msg["flags"],
            )
            for msg in self.ipr.fdb("dump")
            if msg.get("lladdr") is not None
        ]

    def nsid_of(self, ns_fd: int) -> int | None:
        nsid = self.ipr.get_netnsid(fd=ns_fd)["nsid"]
        return None if nsid is None or nsid < 0 or nsid == 4294967295 else int(nsid)


class SdkLocalApi:
    """docker_api.LocalApi's methods through the docker SDK on the same unix socket."""

    def __init__(self, path: str, remaining: Callable[[], float]) -> None:
        from vethpeer.sources.docker_api import SdkApi

        self.sdk = SdkApi(f"unix://{path}", remaining(), os.environ)

    def containers(self, timeout: float) -> list[dict[str, Any]]:
        return self.sdk.containers(timeout)

    def networks(self) -> list[dict[str, Any]]:
        return list(self.sdk.client.api.networks())

    def inspect(self, container_id: str, timeout: float) -> dict[str, Any] | None:
        return self.sdk.inspect(container_id, timeout)

    def close(self) -> None:
        self.sdk.close()


class GrpcioChannel:
    """vethpeer.cri.client.Channel's methods on a grpcio channel to the same unix socket."""

    def __init__(self, path: str, deadline: Any, *, service: str, max_message: int) -> None:
        import grpc

        self.grpc, self.service, self.deadline = grpc, service, deadline
        options = [("grpc.max_receive_message_length", max_message)]
        self.channel = grpc.insecure_channel(f"unix://{path}", options=options)

    def __enter__(self) -> GrpcioChannel:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def _stub(self, method: str, reply_type: Any) -> Any:
        return self.channel.unary_unary(
            f"/{self.service}/{method}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=reply_type.FromString,
        )

    def start(self, method: str, request: Any, reply_type: Any) -> Any:
        return _Future(self, self._stub(method, reply_type).future(request, timeout=self.deadline.left()))

    def call(self, method: str, request: Any, reply_type: Any) -> Any:
        return self.start(method, request, reply_type).result()


class _Future:
    def __init__(self, channel: GrpcioChannel, future: Any) -> None:
        self.channel, self.future = channel, future

    def result(self) -> Any:
        from vethpeer.cri.client import Code, RpcError

        try:
            return self.future.result()
        except self.channel.grpc.RpcError as error:
            raise RpcError(Code(error.code().value[0]), error.details() or "") from None


class ProtobufMessages:
    """A finder that gives ``vethpeer.cri.messages`` protobuf's ``api_pb2`` when it is imported."""

    NAME = "vethpeer.cri.messages"

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        import importlib.util

        return importlib.util.spec_from_loader(name, self) if name == self.NAME else None

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: Any) -> None:
        from tests.lab import api_pb2

        module.__dict__.update({k: v for k, v in vars(api_pb2).items() if not k.startswith("__")})


def swap(libraries: set[str]) -> None:
    """Put the libraries in place, in this process."""
    if "pyroute2" in libraries:
        from vethpeer import focus, walk

        walk.RtnlSocket = focus.RtnlSocket = Pyroute2Socket  # type: ignore[misc,assignment]
    if "docker" in libraries:
        from vethpeer.sources import docker, docker_api

        docker.LocalApi = docker_api.LocalApi = SdkLocalApi  # type: ignore[misc,assignment]
    if "grpcio" in libraries:
        from vethpeer.cri import client

        client.Channel = GrpcioChannel  # type: ignore[misc,assignment]
    if "protobuf" in libraries:
        sys.meta_path.insert(0, ProtobufMessages())


def main(argv: list[str]) -> int:
    if "--" not in argv or not argv:
        print(f"usage: libraries.py {','.join(CHOICES)}|none -- VETHPEER-ARGS...", file=sys.stderr)
        return 2
    cut = argv.index("--")
    chosen = {name for name in argv[0].split(",") if name and name != "none"}
    if chosen - set(CHOICES):
        print(f"libraries.py: unknown: {', '.join(sorted(chosen - set(CHOICES)))}", file=sys.stderr)
        return 2
    swap(chosen)
    from vethpeer.cli import main as vethpeer

    return int(vethpeer(argv[cut + 1 :]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
