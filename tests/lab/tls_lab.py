"""Certificates, password hashes and web configs for the secured agent's tests, made by real tools.

:class:`Pki` makes a CA, a server certificate for 127.0.0.1 / localhost, client certificates
(valid, expired, from another CA) with ``openssl``; :func:`htpasswd_hash` makes a ``$2y$`` bcrypt
hash with Apache's ``htpasswd`` (the hashes users really paste). :func:`tls_get` is a client
with the lab's CA (and optionally a client certificate and basic auth). Everything lives in
one temporary directory (prefix ``vqb``), removed by :func:`pki`'s context manager. Reusable
for other modes (a bearer token is just a header).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.lab.serve_lab import Reply, Served, free_port, serve
from tests.policy import need_binary

PREFIX = "vqb"
PORTS = (21100, 21199)  # this lab's loopback ports
EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])}: {done.stderr.strip()[-400:]}")


@dataclass
class Pki:
    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / name

    def ca(self, name: str = "ca") -> None:
        _openssl(
            "req", "-x509", *EC, "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "30",
            "-subj", f"/CN={PREFIX}-{name}", cwd=self.directory,
        )  # fmt: skip

    def issue(
        self, name: str, *, ca: str = "ca", days: int = 30, sans: str = "", server: bool = False
    ) -> None:
        """``name.crt``/``name.key`` signed by ``ca``; ``days=-1`` makes an expired one."""
        _openssl("req", *EC, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={PREFIX}-{name}",
                 cwd=self.directory)  # fmt: skip
        usage = "serverAuth" if server else "clientAuth"
        ext = [f"extendedKeyUsage={usage}", "basicConstraints=CA:FALSE"]
        if sans:
            ext.append(f"subjectAltName={sans}")
        self.path(f"{name}.ext").write_text("\n".join(ext) + "\n")
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", str(days), "-extfile", f"{name}.ext",
            cwd=self.directory,
        )  # fmt: skip

    def write_config(self, document: dict[str, Any], name: str = "web.yml") -> Path:
        path = self.path(name)
        path.write_text(json.dumps(document))  # JSON is YAML
        return path


@contextlib.contextmanager
def pki() -> Iterator[Pki]:
    """A CA, a server certificate (server.crt for 127.0.0.1, 127.0.0.2, localhost), a client one."""
    need_binary("openssl")
    directory = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-pki-"))
    try:
        made = Pki(directory)
        made.ca()
        made.issue("server", sans="IP:127.0.0.1,IP:127.0.0.2,DNS:localhost", server=True)
        made.issue("client", sans="DNS:prometheus.vqb.test")
        yield made
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def htpasswd_hash(user: str, password: str, cost: int = 10) -> str:
    """Apache's ``htpasswd -nbBC`` hash: ``$2y$...``."""
    htpasswd = need_binary("htpasswd")
    done = subprocess.run(
        [htpasswd, "-nbBC", str(cost), user, password], capture_output=True, text=True, check=True
    )
    return done.stdout.strip().split(":", 1)[1]


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def client_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key else None)
    return context


def tls_get(
    port: int,
    path: str,
    context: ssl.SSLContext,
    headers: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    source: str | None = None,
    timeout: float = 10.0,
) -> Reply:
    conn = http.client.HTTPSConnection(
        host, port, context=context, timeout=timeout, source_address=(source, 0) if source else None
    )
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def stalled_handshake(port: int, host: str = "127.0.0.1") -> socket.socket:
    """A connection that sends half a ClientHello and then nothing (the caller closes it)."""
    sock = socket.create_connection((host, port), timeout=10)
    sock.sendall(bytes.fromhex("160301"))  # a TLS record header, and no more
    return sock


@contextlib.contextmanager
def secured(
    made: Pki, config: dict[str, Any], *args: str, name: str = "web.yml", client: str | None = None
) -> Iterator[Served]:
    """A server with this web config; ready once /readyz answers over TLS (as ``client``, if given)."""
    path = made.write_config(config, name)
    argv = ("--no-kube", "--web-config-file", str(path), *args)
    with serve(*argv, port=free_port(*PORTS), ready=False) as served:
        ca = made.path("ca.crt")
        context = (
            client_context(ca, made.path(f"{client}.crt"), made.path(f"{client}.key")) if client else None
        )
        wait_ready_tls(served, context or client_context(ca))
        yield served
        assert served.process.poll() is None, "the server stays up: " + served.stderr()


def wait_ready_tls(served: Served, context: ssl.SSLContext, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise RuntimeError(f"vethpeer serve exited {served.process.returncode}: {served.stderr()}")
        with contextlib.suppress(OSError):
            if tls_get(served.port, "/readyz", context, timeout=2).status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"not ready over TLS within {timeout} s: {served.stderr()}")
