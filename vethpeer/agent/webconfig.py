"""The exporter-toolkit web configuration file (node_exporter's ``--web.config.file``), field for field.

The format is prometheus/exporter-toolkit ``docs/web-configuration.md``: ``tls_server_config``,
``http_server_config``, ``basic_auth_users`` and ``rate_limit``. :func:`parse` is pure: text in,
a :class:`WebConfig` out, or a :class:`WebConfigError` whose message is one line. As in Go's
``yaml.UnmarshalStrict``, an unknown or repeated key is an error, and relative file names are
relative to the file's own directory. What Python's ``ssl`` module cannot do as Go's
``crypto/tls`` would (request a client certificate without verifying it, a curve *list*,
HTTP/2) is refused here, never ignored. Files named in the configuration are read later,
by :mod:`.tls` (certificates) and :mod:`.basic_auth` (nothing: the hashes are inline).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError


class WebConfigError(UsageError):
    """The web configuration cannot be used as written (exit 2, like any bad option value)."""


# client_auth_type -> whether a certificate is required (True), optional (False); the two
# that Go accepts without verifying the certificate are refused (see REFUSED_CLIENT_AUTH).
CLIENT_AUTH = {"NoClientCert": None, "VerifyClientCertIfGiven": False, "RequireAndVerifyClientCert": True}
REFUSED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
TLS_VERSIONS = {"TLS10": (1, 0), "TLS11": (1, 1), "TLS12": (1, 2), "TLS13": (1, 3)}
# Go's tls.CipherSuites() names -> OpenSSL's; the TLS 1.3 suites are not configurable in Go
# either (cipher_suites applies "up to TLS 1.2"), so they are accepted and change nothing.
CIPHERS = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_AES_128_GCM_SHA256": "",
    "TLS_AES_256_GCM_SHA384": "",
    "TLS_CHACHA20_POLY1305_SHA256": "",
}
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}
# http_server_config.headers: the names exporter-toolkit allows, with their allowed values (None: any)
HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}
BCRYPT_HASH = re.compile(r"^\$2[abxy]?\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

_TLS_KEYS = frozenset(
    {
        "cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type", "client_ca_file",
        "client_allowed_sans", "min_version", "max_version", "cipher_suites",
        "prefer_server_cipher_suites", "curve_preferences",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """``tls_server_config``, paths already joined with the file's directory."""

    cert_file: Path | None = None
    key_file: Path | None = None
    cert: str | None = None  # inline PEM, instead of cert_file
    key: str | None = None
    client_ca_file: Path | None = None
    client_ca: str | None = None
    client_cert: bool | None = None  # None: not asked; False: verified if given; True: required
    client_allowed_sans: tuple[str, ...] | None = None
    min_version: tuple[int, int] = (1, 2)
    max_version: tuple[int, int] = (1, 3)
    ciphers: tuple[str, ...] = ()  # OpenSSL names of the TLS <= 1.2 suites, in order
    prefer_server_cipher_suites: bool = True
    curve: str | None = None  # OpenSSL's name of the one curve configured

    @property
    def files(self) -> tuple[Path, ...]:
        """The files whose change means new certificates."""
        return tuple(p for p in (self.cert_file, self.key_file, self.client_ca_file) if p is not None)


@dataclass(frozen=True, slots=True)
class RateLimit:
    interval: float  # seconds between two requests (0: no limit)
    burst: int


@dataclass(frozen=True, slots=True)
class WebConfig:
    tls: TLSSettings | None = None
    users: Mapping[str, str] = field(default_factory=dict)  # user -> bcrypt hash
    headers: Mapping[str, str] = field(default_factory=dict)
    rate_limit: RateLimit | None = None


def parse(text: str, directory: Path, source: str = "web config") -> WebConfig:
    """The configuration in ``text`` (YAML), with relative paths joined to ``directory``."""
    document = _load_yaml(text, source)
    if document is None:
        return WebConfig()
    top = _mapping(document, source)
    _known(top, {"tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"}, source)
    tls = _tls(_mapping(top.get("tls_server_config") or {}, "tls_server_config"), directory)
    headers = _http(_mapping(top.get("http_server_config") or {}, "http_server_config"))
    users = _users(_mapping(top.get("basic_auth_users") or {}, "basic_auth_users"))
    rate = _rate_limit(_mapping(top.get("rate_limit") or {}, "rate_limit"))
    return WebConfig(tls, users, headers, rate)


def _load_yaml(text: str, source: str) -> Any:
    import yaml

    class StrictLoader(yaml.SafeLoader):
        pass

    def mapping(loader: StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in out:
                raise WebConfigError(
                    f"{source}: key {key!r} appears twice (line {key_node.start_mark.line + 1})"
                )
            out[key] = loader.construct_object(value_node, deep=True)
        return out

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        return yaml.load(text, Loader=StrictLoader)  # a SafeLoader
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "not YAML"
        raise WebConfigError(f"{source}: {problem}{where}") from None


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise WebConfigError(f"{where}: expected a mapping of names to values")
    return value


def _known(mapping: Mapping[str, Any], known: set[str] | frozenset[str], where: str) -> None:
    unknown = sorted(set(mapping) - set(known))
    if unknown:
        raise WebConfigError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})")


def _scalar_text(value: Any) -> str | None:
    """A YAML scalar as text, as Go's yaml.v2 puts a number or boolean into a string field."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def _string(mapping: Mapping[str, Any], key: str, where: str) -> str | None:
    value = mapping.get(key)
    if value is None or value == "":
        return None
    text = _scalar_text(value)
    if text is None:
        raise WebConfigError(f"{where}.{key}: expected a string, got {type(value).__name__}")
    return text


def _strings(mapping: Mapping[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    value = mapping.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise WebConfigError(f"{where}.{key}: expected a list of strings")
    return tuple(value)


def _path(mapping: Mapping[str, Any], key: str, directory: Path) -> Path | None:
    value = _string(mapping, key, "tls_server_config")
    return None if value is None else directory / value


def _tls(raw: Mapping[str, Any], directory: Path) -> TLSSettings | None:
    where = "tls_server_config"
    _known(raw, _TLS_KEYS, where)
    cert_file, key_file = _path(raw, "cert_file", directory), _path(raw, "key_file", directory)
    cert, key = _string(raw, "cert", where), _string(raw, "key", where)
    client_ca_file, client_ca = _path(raw, "client_ca_file", directory), _string(raw, "client_ca", where)
    auth_type = _string(raw, "client_auth_type", where)
    enabled = any(
        v is not None for v in (cert_file, key_file, cert, key, client_ca_file, client_ca, auth_type)
    )
    if not enabled:
        if raw:
            raise WebConfigError(f"{where}: TLS settings without cert_file and key_file")
        return None
    if cert_file is None and cert is None:
        raise WebConfigError(f"{where}: missing one of cert or cert_file")
    if key_file is None and key is None:
        raise WebConfigError(f"{where}: missing one of key or key_file")
    client_cert = _client_auth(auth_type or "NoClientCert")
    if (client_ca_file or client_ca) and client_cert is None:
        raise WebConfigError(f"{where}: client CA's have been configured without a Client Auth Policy")
    versions = (_version(raw, "min_version", "TLS12"), _version(raw, "max_version", "TLS13"))
    if versions[0] > versions[1]:
        raise WebConfigError(f"{where}: min_version is above max_version")
    prefer = raw.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise WebConfigError(f"{where}.prefer_server_cipher_suites: expected true or false, got {prefer!r}")
    return TLSSettings(
        cert_file=cert_file,
        key_file=key_file,
        cert=cert,
        key=key,
        client_ca_file=client_ca_file,
        client_ca=client_ca,
        client_cert=client_cert,
        client_allowed_sans=_strings(raw, "client_allowed_sans", where),
        min_version=versions[0],
        max_version=versions[1],
        ciphers=_ciphers(_strings(raw, "cipher_suites", where) or ()),
        prefer_server_cipher_suites=prefer,
        curve=_curve(_strings(raw, "curve_preferences", where) or ()),
    )


def _client_auth(name: str) -> bool | None:
    if name in REFUSED_CLIENT_AUTH:
        raise WebConfigError(
            f"tls_server_config.client_auth_type {name} is not supported: Python's ssl cannot ask for "
            "a client certificate without verifying it "
            "(use VerifyClientCertIfGiven or RequireAndVerifyClientCert)"
        )
    if name not in CLIENT_AUTH:
        raise WebConfigError(f"tls_server_config.client_auth_type: invalid ClientAuth: {name}")
    return CLIENT_AUTH[name]


def _version(raw: Mapping[str, Any], key: str, default: str) -> tuple[int, int]:
    name = _string(raw, key, "tls_server_config") or default
    if name not in TLS_VERSIONS:
        raise WebConfigError(f"tls_server_config.{key}: unknown TLS version: {name} (TLS10 … TLS13)")
    return TLS_VERSIONS[name]


def _ciphers(names: tuple[str, ...]) -> tuple[str, ...]:
    for name in names:
        if name not in CIPHERS:
            raise WebConfigError(f"tls_server_config.cipher_suites: unknown cipher: {name}")
    return tuple(CIPHERS[n] for n in names if CIPHERS[n])


def _curve(names: tuple[str, ...]) -> str | None:
    for name in names:
        if name not in CURVES:
            raise WebConfigError(f"tls_server_config.curve_preferences: unknown curve: {name}")
    if len(names) > 1:
        raise WebConfigError(
            "tls_server_config.curve_preferences: only one curve is supported "
            "(Python's ssl sets one ECDH curve, not a preference list)"
        )
    return CURVES[names[0]] if names else None


def _http(raw: Mapping[str, Any]) -> dict[str, str]:
    _known(raw, {"http2", "headers"}, "http_server_config")
    http2 = raw.get("http2")
    if http2 is not None and http2 is not False:
        raise WebConfigError(
            "http_server_config.http2: vethpeer serves HTTP/1.1 only; remove http2 or set it to false"
        )
    headers = _mapping(raw.get("headers") or {}, "http_server_config.headers")
    out: dict[str, str] = {}
    for name, value in headers.items():
        if name not in HEADERS:
            raise WebConfigError(f"http_server_config.headers: HTTP header {name!r} can not be configured")
        if value is None or value == "":
            continue  # "unset if blank"
        allowed, value = HEADERS[name], _scalar_text(value)
        if value is None or (allowed is not None and value not in allowed):
            expected = f"one of {list(allowed)}" if allowed else "a string"
            raise WebConfigError(f"http_server_config.headers: invalid value for {name}: expected {expected}")
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise WebConfigError(f"http_server_config.headers: control characters in {name}")
        out[name] = value
    return out


def _users(raw: Mapping[str, Any]) -> dict[str, str]:
    users: dict[str, str] = {}
    for user, hashed in raw.items():
        if not isinstance(hashed, str) or not BCRYPT_HASH.match(hashed):
            raise WebConfigError(f"basic_auth_users: the password of {user!r} is not a bcrypt hash")
        users[user] = hashed
    return users


def _rate_limit(raw: Mapping[str, Any]) -> RateLimit | None:
    _known(raw, {"interval", "burst"}, "rate_limit")
    if not raw:
        return None
    interval, burst = duration_seconds(raw.get("interval", 0)), raw.get("burst", 0)
    if not isinstance(burst, int) or isinstance(burst, bool) or burst < 0:
        raise WebConfigError(f"rate_limit.burst: expected a whole number, got {burst!r}")
    return RateLimit(interval, burst) if interval > 0 else None


def duration_seconds(value: Any) -> float:
    """A Go ``time.Duration`` as YAML gives it: ``"1m30s"``, ``"250ms"``, or nanoseconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value / 1e9
    if isinstance(value, str):
        text = value.strip()
        if text == "0":
            return 0.0
        parts = _DURATION_PART.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    raise WebConfigError(f"rate_limit.interval: not a duration: {value!r} (e.g. 1s, 250ms, 1m30s)")
