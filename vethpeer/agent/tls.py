"""TLS for the listener: an ``ssl.SSLContext`` built from ``tls_server_config``, and the SAN check.

The mapping to OpenSSL, field by field: min/max_version are the context's bounds (below TLS
1.2 also lowers OpenSSL's security level, which otherwise refuses them whatever the bounds
say); cipher_suites are the same suites under OpenSSL's names (TLS 1.3 suites are not
configurable, as in Go); prefer_server_cipher_suites is ``OP_CIPHER_SERVER_PREFERENCE``; one
curve of curve_preferences is the only group offered; VerifyClientCertIfGiven and
RequireAndVerifyClientCert are ``CERT_OPTIONAL`` and ``CERT_REQUIRED``, against client_ca_file
or client_ca (the system's roots without one, as Go does); client_allowed_sans is checked
after the handshake (:func:`peer_allowed`). Inline ``cert``/``key`` are loaded through a memfd:
no file is written.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

from .webconfig import TLSSettings, WebConfigError

_VERSIONS = {
    (1, 0): ssl.TLSVersion.TLSv1,
    (1, 1): ssl.TLSVersion.TLSv1_1,
    (1, 2): ssl.TLSVersion.TLSv1_2,
    (1, 3): ssl.TLSVersion.TLSv1_3,
}


@dataclass(frozen=True, slots=True)
class Listener:
    """What a handshake needs: the context, and the SANs a client certificate must carry."""

    context: ssl.SSLContext
    allowed_sans: frozenset[str] | None = None

    def peer_allowed(self, conn: ssl.SSLSocket) -> bool:
        return self.allowed_sans is None or peer_allowed(conn.getpeercert(), self.allowed_sans)


def listener(settings: TLSSettings) -> Listener:
    allowed = None
    if settings.client_allowed_sans is not None:
        allowed = frozenset(_canonical(s) for s in settings.client_allowed_sans)
    return Listener(server_context(settings), allowed)


def server_context(settings: TLSSettings) -> ssl.SSLContext:
    """The server's context; reads the certificate, key and CA files (WebConfigError if unusable)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _VERSIONS[settings.min_version]
    context.maximum_version = _VERSIONS[settings.max_version]
    level = ":@SECLEVEL=0" if settings.min_version < (1, 2) else ""
    try:
        if settings.ciphers or level:
            context.set_ciphers(":".join(settings.ciphers or ("DEFAULT",)) + level)
        if settings.curve is not None:
            context.set_ecdh_curve(settings.curve)
    except (ssl.SSLError, ValueError) as error:
        raise WebConfigError(f"tls_server_config: OpenSSL refuses the ciphers or curve: {error}") from None
    if settings.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_alpn_protocols(["http/1.1"])
    with _pem(settings.cert_file, settings.cert) as cert, _pem(settings.key_file, settings.key) as key:
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as error:
            raise WebConfigError(
                f"tls_server_config: cannot load the certificate and key: {_why(error)}"
            ) from None
    if settings.client_cert is not None:
        context.verify_mode = ssl.CERT_REQUIRED if settings.client_cert else ssl.CERT_OPTIONAL
        try:
            if settings.client_ca_file is not None:
                context.load_verify_locations(cafile=str(settings.client_ca_file))
            elif settings.client_ca is not None:
                context.load_verify_locations(cadata=settings.client_ca)
            else:
                context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        except (OSError, ssl.SSLError) as error:
            raise WebConfigError(f"tls_server_config: cannot load the client CA: {_why(error)}") from None
    return context


@contextlib.contextmanager
def _pem(path: os.PathLike[str] | None, inline: str | None) -> Iterator[str]:
    """A path to read the PEM from: the file, or the inline text in an anonymous memory file."""
    if path is not None:
        yield os.fspath(path)
        return
    fd = os.memfd_create("vethpeer-pem", os.MFD_CLOEXEC)
    try:
        os.write(fd, (inline or "").encode())
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _why(error: Exception) -> str:
    if isinstance(error, ssl.SSLError):
        return str(error.reason or error).replace("_", " ").lower()
    if isinstance(error, OSError) and error.strerror:
        return f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    return str(error)


def _canonical(name: str) -> str:
    """An IP address as Go's ``net.IP.String`` writes it; anything else as it is."""
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def peer_allowed(cert: object, allowed: frozenset[str]) -> bool:
    """Whether a verified client certificate (``getpeercert()``) has one of ``allowed`` as a SAN:
    DNS, IP, e-mail or URI, compared exactly (IP addresses in canonical form)."""
    if not isinstance(cert, dict):
        return False
    for kind, value in cert.get("subjectAltName", ()):
        if kind in ("DNS", "email", "URI") and value in allowed:
            return True
        if kind == "IP Address" and _canonical(value.strip()) in allowed:
            return True
    return False
