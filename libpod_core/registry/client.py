"""An HTTP(S) client for the registry v2 API (the OCI distribution spec), on http.client.

One :class:`RegistryClient` talks to one registry host. It pings ``/v2/`` first (HTTPS, then
plain HTTP only when the registry may be reached insecurely), learns the auth challenge
(``WWW-Authenticate: Basic`` or ``Bearer realm=,service=,scope=``), and attaches credentials
to every request: Basic, or a bearer token fetched from the realm for the request's scope
(cached per scope until it expires; fetched again when the registry answers 401
``insufficient_scope``).

TLS: the system CAs plus ``/etc/containers/certs.d/HOST[:PORT]/*.crt`` (or ``cert_dir``) as
CAs; ``*.cert``/``*.key`` pairs there are client certificates. ``tls_verify=False`` (or an
insecure registry) skips verification and allows plain HTTP, like podman.

Every failure is a :class:`RegistryError` (a TransportError) with one clear line: connection
refused, timeouts (each socket operation is bounded by ``timeout``), certificate problems,
401 (authentication required / unauthorized), 404 (manifest or blob unknown), registry error
bodies (``{"errors":[{"code":...,"message":...}]}``).
"""

from __future__ import annotations

import base64
import glob
import hashlib
import http.client
import io
import json
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import IO, Any, Iterable, Mapping
from urllib.parse import quote, urlencode, urljoin, urlsplit

from ..errors import DigestMismatch, NotFound, TransportError
from .auth import Credentials

__all__ = [
    "RegistryError",
    "AuthenticationError",
    "ManifestUnknown",
    "BlobUnknown",
    "RegistryUnreachable",
    "RegistryClient",
    "MANIFEST_ACCEPT",
    "parse_www_authenticate",
    "parse_link_next",
    "certs_dirs",
    "endpoint_host",
]

USER_AGENT = "kpod/0.1 (libpod_core; registry-v2)"
CERTS_D = ("/etc/containers/certs.d", "/etc/docker/certs.d")
MANIFEST_ACCEPT = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
)
MAX_MANIFEST = 4 * 1024 * 1024
MAX_ERROR_BODY = 64 * 1024
CHUNK = 1 << 20
MAX_REDIRECTS = 5
_IDEMPOTENT = {"GET", "HEAD", "PUT", "DELETE"}


class RegistryError(TransportError):
    """A registry request failed. *status* is the HTTP status (None for network errors),
    *code* the registry's error code (``MANIFEST_UNKNOWN``...)."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class AuthenticationError(RegistryError):
    """401: no, wrong or insufficient credentials."""


class RegistryUnreachable(RegistryError):
    """Connection refused, timeout, TLS failure: nothing usable came back."""


class ManifestUnknown(RegistryError, NotFound):
    """404 for a manifest: the image (tag or digest) does not exist."""


class BlobUnknown(RegistryError, NotFound):
    """404 for a blob."""


# ------------------------------------------------------------------------------------------
# Header parsing


def parse_www_authenticate(value: str) -> list[tuple[str, dict[str, str]]]:
    """``Bearer realm="x",service="y", Basic realm="z"`` -> ``[("bearer", {...}), ("basic", {...})]``.

    Quoted strings may hold commas (``scope="repository:a:pull,push"``) and ``\\"`` escapes.
    """
    out: list[tuple[str, dict[str, str]]] = []
    i, n = 0, len(value)
    scheme: str | None = None
    params: dict[str, str] = {}

    def skip_ws(j: int) -> int:
        while j < n and value[j] in " \t,":
            j += 1
        return j

    while True:
        i = skip_ws(i)
        if i >= n:
            break
        j = i
        while j < n and value[j] not in " \t,=":
            j += 1
        token = value[i:j]
        k = j
        while k < n and value[k] in " \t":
            k += 1
        if k < n and value[k] == "=" and scheme is not None:
            # a parameter
            k += 1
            while k < n and value[k] in " \t":
                k += 1
            if k < n and value[k] == '"':
                k += 1
                buf = []
                while k < n and value[k] != '"':
                    if value[k] == "\\" and k + 1 < n:
                        k += 1
                    buf.append(value[k])
                    k += 1
                k += 1
                params[token.lower()] = "".join(buf)
            else:
                e = k
                while e < n and value[e] not in ",":
                    e += 1
                params[token.lower()] = value[k:e].strip()
                k = e
            i = k
            continue
        # a new scheme (or a token68 after a scheme, ignored)
        if scheme is not None and params:
            out.append((scheme, params))
            scheme, params = None, {}
        if scheme is None:
            scheme = token.lower()
        i = j
    if scheme is not None:
        out.append((scheme, params))
    return out


def parse_link_next(value: str | None) -> str | None:
    """The URL of ``rel="next"`` in a Link header (``</v2/x/tags/list?n=2&last=b>; rel="next"``)."""
    if not value:
        return None
    for part in value.split(","):
        seg = part.strip()
        if not seg.startswith("<") or ">" not in seg:
            continue
        url, _, rest = seg[1:].partition(">")
        for p in rest.split(";"):
            k, _, v = p.strip().partition("=")
            if k.strip().lower() == "rel" and "next" in v.strip().strip('"').split():
                return url
    return None


def endpoint_host(registry: str) -> str:
    """The host to contact for a registry name: Docker Hub's is registry-1.docker.io."""
    return "registry-1.docker.io" if registry in ("docker.io", "index.docker.io") else registry


def certs_dirs(hostport: str, cert_dir: str | None = None) -> list[str]:
    """Directories holding CAs/client certificates for *hostport* (``cert_dir`` replaces them)."""
    if cert_dir:
        return [cert_dir]
    dirs = []
    home = os.environ.get("HOME") or os.path.expanduser("~")
    if os.geteuid() != 0:
        dirs.append(os.path.join(home, ".config", "containers", "certs.d", hostport))
    dirs.extend(os.path.join(base, hostport) for base in CERTS_D)
    return dirs


def _registry_error_text(body: bytes) -> tuple[str | None, str | None]:
    """``(code, "code words: message")`` from a registry error body, if it is one."""
    try:
        data = json.loads(body.decode("utf-8", "replace"))
    except ValueError:
        return None, None
    errs = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errs, list) or not errs:
        if isinstance(data, dict) and isinstance(data.get("details"), str):  # token servers
            return None, data["details"]
        return None, None
    parts, code0 = [], None
    for e in errs[:3]:
        if not isinstance(e, dict):
            continue
        code = str(e.get("code") or "")
        code0 = code0 or code
        msg = str(e.get("message") or "")
        words = code.lower().replace("_", " ")
        parts.append(f"{words}: {msg}" if msg and msg.lower() != words else (words or msg))
    return code0, "; ".join(parts) if parts else None


def _short(b: bytes, limit: int = 200) -> str:
    s = b.decode("utf-8", "replace").strip().replace("\n", " ")
    return s[:limit] + ("..." if len(s) > limit else "")


# ------------------------------------------------------------------------------------------
# Streams


class BlobStream(io.RawIOBase):
    """A response body as a binary stream; errors become RegistryError; closing releases
    the connection (back to the pool when fully read)."""

    def __init__(self, client: "RegistryClient", resp: http.client.HTTPResponse, conn, key, what: str):
        super().__init__()
        self._client, self._resp, self._conn, self._key, self._what = client, resp, conn, key, what
        self._done = False
        length = resp.getheader("Content-Length")
        self.size = int(length) if length and length.isdigit() else None

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._done:
            return b""
        try:
            data = self._resp.read() if n is None or n < 0 else self._resp.read(n)
        except http.client.IncompleteRead as exc:
            self._abort()
            raise RegistryError(
                f"{self._what}: the connection closed early (got {len(exc.partial)} more bytes, "
                f"{exc.expected} missing)"
            ) from None
        except (socket.timeout, TimeoutError):
            self._abort()
            raise RegistryUnreachable(f"{self._what}: timed out reading from the registry") from None
        except (OSError, http.client.HTTPException) as exc:
            self._abort()
            raise RegistryError(f"{self._what}: reading from the registry: {exc}") from None
        if not data and (n is None or n != 0):
            self._finish()
        return data

    def readinto(self, b) -> int:
        data = self.read(len(b))
        memoryview(b).cast("B")[: len(data)] = data
        return len(data)

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        if self._conn is not None:
            self._client._release(self._key, self._conn, self._resp)
            self._conn = None

    def _abort(self) -> None:
        self._done = True
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def close(self) -> None:
        if not self._done:
            if self._resp.isclosed() or self._resp.length == 0:
                self._finish()
            else:
                self._abort()
        super().close()


class _HashingReader:
    """Hashes (and counts) what a body stream reads, for uploads of unknown digest."""

    def __init__(self, f: IO[bytes], algorithm: str = "sha256"):
        self.f = f
        self.h = hashlib.new(algorithm)
        self.algorithm = algorithm
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        if data:
            self.h.update(data)
            self.size += len(data)
        return data

    @property
    def digest(self) -> str:
        return f"{self.algorithm}:{self.h.hexdigest()}"


class _BodyError(Exception):
    """An exception raised by a streamed request body's source (not by the network)."""

    def __init__(self, exc: BaseException):
        super().__init__(str(exc))
        self.exc = exc


class _StreamedBody:
    """A request body read from a stream (sent with ``Transfer-Encoding: chunked``): an
    error of the source is carried out as :class:`_BodyError`, so that it is not mistaken
    for a network error, and is raised as itself by the caller."""

    def __init__(self, f):
        self.f = f

    def read(self, n: int = -1) -> bytes:
        try:
            return self.f.read(n)
        except BaseException as exc:
            raise _BodyError(exc) from exc


@dataclass
class _Token:
    value: str
    expires: float


# ------------------------------------------------------------------------------------------


class RegistryClient:
    """A client for one registry host (``host[:port]``).

    *insecure*: plain HTTP is allowed (after HTTPS fails) and TLS certificates are not
    verified. *tls_verify* (True/False) overrides *insecure* like ``--tls-verify``.
    *credentials*: a :class:`~libpod_core.registry.auth.Credentials` or None (anonymous).
    """

    def __init__(
        self,
        registry: str,
        *,
        insecure: bool = False,
        tls_verify: bool | None = None,
        cert_dir: str | None = None,
        credentials: Credentials | None = None,
        timeout: float = 60.0,
        user_agent: str = USER_AGENT,
    ):
        self.registry = registry
        self.host = endpoint_host(registry)
        if tls_verify is not None:
            insecure = not tls_verify
        self.insecure = insecure
        self.cert_dir = cert_dir
        self.credentials = credentials
        self.timeout = float(timeout)
        self.user_agent = user_agent
        self.scheme: str | None = None
        self._challenge: tuple[str, dict[str, str]] | None = None
        self._tokens: dict[str, _Token] = {}
        self._pool: dict[tuple[str, str], list[http.client.HTTPConnection]] = {}
        self._ssl: dict[tuple[str, bool], ssl.SSLContext] = {}
        self._lock = threading.Lock()
        #: counters for tests and debugging
        self.stats = {"token_requests": 0, "requests": 0}

    # -- connections ----------------------------------------------------------------------
    def _ssl_context(self, hostport: str, verify: bool) -> ssl.SSLContext:
        key = (hostport, verify)
        ctx = self._ssl.get(key)
        if ctx is not None:
            return ctx
        if verify:
            ctx = ssl.create_default_context()
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        for d in certs_dirs(hostport, self.cert_dir if hostport == self.host else None):
            if not os.path.isdir(d):
                continue
            try:
                for ca in sorted(glob.glob(os.path.join(d, "*.crt"))):
                    if verify:
                        ctx.load_verify_locations(cafile=ca)
                for cert in sorted(glob.glob(os.path.join(d, "*.cert"))):
                    keyfile = cert[: -len(".cert")] + ".key"
                    if not os.path.exists(keyfile):
                        raise RegistryError(f"missing key {os.path.basename(keyfile)} for client certificate {cert}")
                    ctx.load_cert_chain(cert, keyfile)
                for keyfile in sorted(glob.glob(os.path.join(d, "*.key"))):
                    if not os.path.exists(keyfile[: -len(".key")] + ".cert"):
                        raise RegistryError(f"missing client certificate {os.path.basename(keyfile)[:-4]}.cert for key {keyfile}")
            except (ssl.SSLError, OSError) as exc:
                raise RegistryError(f"loading certificates from {d}: {exc}") from None
            if self.cert_dir and hostport == self.host:
                break
        self._ssl[key] = ctx
        return ctx

    def _new_conn(self, scheme: str, hostport: str) -> http.client.HTTPConnection:
        host, port = _split_hostport(hostport, 443 if scheme == "https" else 80)
        if scheme == "https":
            verify = not (self.insecure and hostport == self.host)
            return http.client.HTTPSConnection(
                host, port, timeout=self.timeout, context=self._ssl_context(hostport, verify), blocksize=CHUNK
            )
        return http.client.HTTPConnection(host, port, timeout=self.timeout, blocksize=CHUNK)

    def _get_conn(self, key: tuple[str, str]) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            idle = self._pool.get(key)
            if idle:
                return idle.pop(), True
        return self._new_conn(*key), False

    def _release(self, key, conn, resp) -> None:
        if resp.will_close or not resp.isclosed():
            try:
                conn.close()
            except Exception:
                pass
            return
        with self._lock:
            idle = self._pool.setdefault(key, [])
            if len(idle) < 4:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            pools, self._pool = self._pool, {}
        for conns in pools.values():
            for c in conns:
                try:
                    c.close()
                except Exception:
                    pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- one HTTP exchange ----------------------------------------------------------------
    def _exchange(self, method: str, url: str, headers: Mapping[str, str], body, what: str):
        """Send one request; return ``(response, conn, key)``; network errors -> RegistryUnreachable."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        hdrs = {"User-Agent": self.user_agent, **headers}
        if body is None and method in ("PUT", "POST", "PATCH"):
            hdrs.setdefault("Content-Length", "0")
        for attempt in (0, 1):
            conn, reused = self._get_conn(key)
            self.stats["requests"] += 1
            try:
                conn.request(method, path, body=body, headers=hdrs)
                resp = conn.getresponse()
                return resp, conn, key
            except _BodyError:
                conn.close()  # the request was cut off midway
                raise
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                conn.close()
                rewindable = body is None or isinstance(body, (bytes, bytearray))
                if reused and attempt == 0 and rewindable and method in _IDEMPOTENT | {"POST"}:
                    continue  # a kept-alive connection the server had closed: retry once
                raise RegistryUnreachable(f"{what}: {url}: connection closed by the registry ({exc.__class__.__name__})") from None
            except ssl.SSLCertVerificationError as exc:
                conn.close()
                reason = exc.verify_message or exc.reason or str(exc)
                raise RegistryUnreachable(
                    f"{what}: {url}: x509: TLS certificate verification failed: {reason} (add the CA to "
                    f"/etc/containers/certs.d/{parts.netloc}/ or use --cert-dir, or --tls-verify=false)"
                ) from None
            except ssl.SSLError as exc:
                conn.close()
                raise RegistryUnreachable(f"{what}: {url}: TLS error: {exc.reason or exc}") from None
            except ConnectionRefusedError:
                conn.close()
                raise RegistryUnreachable(f"{what}: {url}: connection refused") from None
            except (socket.timeout, TimeoutError):
                conn.close()
                raise RegistryUnreachable(f"{what}: {url}: no answer within {self.timeout:g} s (timed out)") from None
            except socket.gaierror as exc:
                conn.close()
                raise RegistryUnreachable(f"{what}: {url}: cannot resolve host {parts.hostname}: {exc.strerror}") from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                msg = getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__
                raise RegistryUnreachable(f"{what}: {url}: {msg}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _read_small(self, resp, conn, key, limit: int, what: str) -> bytes:
        try:
            data = resp.read(limit + 1)
        except (socket.timeout, TimeoutError):
            conn.close()
            raise RegistryUnreachable(f"{what}: timed out reading the answer") from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise RegistryError(f"{what}: reading the answer: {exc}") from None
        if len(data) > limit:
            conn.close()
            raise RegistryError(f"{what}: the answer is larger than {limit} bytes")
        self._release(key, conn, resp)
        return data

    def _discard(self, resp, conn, key) -> None:
        try:
            resp.read(MAX_ERROR_BODY)
        except Exception:
            conn.close()
            return
        self._release(key, conn, resp)

    # -- ping and auth --------------------------------------------------------------------
    def base_url(self) -> str:
        if self.scheme is None:
            self.ping()
        return f"{self.scheme}://{self.host}"

    def ping(self) -> None:
        """``GET /v2/``: pick the scheme and learn the auth challenge."""
        if self.scheme is not None:
            return
        what = f"pinging container registry {self.registry}"
        schemes = ["https", "http"] if self.insecure else ["https"]
        errors = []
        for scheme in schemes:
            url = f"{scheme}://{self.host}/v2/"
            try:
                resp, conn, key = self._exchange("GET", url, {}, None, what)
            except RegistryUnreachable as exc:
                errors.append(exc)
                continue
            body = self._read_small(resp, conn, key, MAX_ERROR_BODY, what)
            if resp.status in (200, 401):
                self.scheme = scheme
                if resp.status == 401:
                    self._challenge = self._pick_challenge(resp)
                return
            _, text = _registry_error_text(body)
            errors.append(RegistryError(f"{what}: {url}: unexpected HTTP status {resp.status}{': ' + text if text else ''}", status=resp.status))
        if len(errors) == 1:
            raise errors[0]
        raise RegistryUnreachable("; ".join(str(e) for e in errors))

    def _pick_challenge(self, resp) -> tuple[str, dict[str, str]] | None:
        challenges = []
        for v in resp.headers.get_all("WWW-Authenticate") or []:
            challenges.extend(parse_www_authenticate(v))
        for want in ("bearer", "basic"):
            for scheme, params in challenges:
                if scheme == want:
                    return scheme, params
        return challenges[0] if challenges else None

    def _basic_header(self) -> str | None:
        c = self.credentials
        if c is None or not c.username:
            return None
        raw = f"{c.username}:{c.password}".encode("utf-8")
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def _auth_header(self, scopes: Iterable[str], *, force_new: bool = False) -> str | None:
        if self._challenge is None:
            return None
        scheme, params = self._challenge
        if scheme == "basic":
            return self._basic_header()
        if scheme == "bearer":
            return "Bearer " + self._token(sorted(set(scopes)), params, force_new)
        return None

    def _token(self, scopes: list[str], params: dict[str, str], force_new: bool, alias: str | None = None) -> str:
        cache_key = " ".join(scopes)
        tok = self._tokens.get(cache_key)
        if tok is not None and not force_new and tok.expires > time.monotonic():
            return tok.value
        realm = params.get("realm")
        if not realm:
            raise AuthenticationError(f"registry {self.registry} asked for a bearer token without a realm")
        what = f"requesting a bearer token from {realm}"
        c = self.credentials
        self.stats["token_requests"] += 1
        query: list[tuple[str, str]] = []
        if params.get("service"):
            query.append(("service", params["service"]))
        for s in scopes:
            query.append(("scope", s))
        if c is not None and c.identity_token:
            form = [("grant_type", "refresh_token"), ("refresh_token", c.identity_token),
                    ("client_id", "kpod"), ("access_type", "offline")] + query
            body = urlencode(form).encode()
            resp, conn, key = self._exchange_realm(
                "POST", realm, {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
                                "Content-Length": str(len(body))}, body, what)
        else:
            if c is not None and c.username:
                query.append(("account", c.username))
            url = realm + ("&" if "?" in realm else "?") + urlencode(query)
            hdrs = {}
            basic = self._basic_header()
            if basic:
                hdrs["Authorization"] = basic
            resp, conn, key = self._exchange_realm("GET", url, hdrs, None, what)
        data = self._read_small(resp, conn, key, MAX_MANIFEST, what)
        if resp.status in (401, 403):
            _, text = _registry_error_text(data)
            detail = text or _short(data) or "authentication required"
            if c is None:
                raise AuthenticationError(
                    f"unable to retrieve auth token: authentication required: {detail}", status=resp.status)
            raise AuthenticationError(
                f"unable to retrieve auth token: invalid username/password: {detail}", status=resp.status)
        if resp.status != 200:
            raise AuthenticationError(f"{what}: unexpected HTTP status {resp.status}: {_short(data)}", status=resp.status)
        try:
            doc = json.loads(data)
            value = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            value, doc = None, {}
        if not isinstance(value, str) or not value:
            raise AuthenticationError(f"{what}: the answer holds no token")
        expires_in = doc.get("expires_in")
        if not isinstance(expires_in, (int, float)) or isinstance(expires_in, bool) or expires_in <= 0:
            expires_in = 60
        # renew a little early
        tok = _Token(value, time.monotonic() + max(1.0, float(expires_in) - 5))
        self._tokens[cache_key] = tok
        if alias is not None:
            self._tokens[alias] = tok
        return value

    def _exchange_realm(self, method, url, headers, body, what):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise AuthenticationError(f"{what}: invalid realm URL {url!r}")
        return self._exchange(method, url, headers, body, what)

    # -- requests -------------------------------------------------------------------------
    def _url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return self.base_url() + path_or_url

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        scopes: Iterable[str] = (),
        headers: Mapping[str, str] | None = None,
        body=None,
        what: str,
        follow_redirects: bool = True,
    ):
        """Send an authenticated request. Returns ``(response, conn, key)`` for any status
        except 401 after a retry (raised as AuthenticationError). Redirects (for GET/HEAD)
        are followed; Authorization is dropped when they leave this host."""
        scopes = list(scopes)
        url = self._url(path_or_url)
        hdrs = dict(headers or {})
        # credentials go to the registry only (not to an upload URL on another host)
        same_host = urlsplit(url).netloc == self.host
        auth = self._auth_header(scopes) if same_host else None
        if auth:
            hdrs["Authorization"] = auth
        resp, conn, key = self._exchange(method, url, hdrs, body, what)
        if resp.status == 401:
            body_bytes = self._read_small(resp, conn, key, MAX_ERROR_BODY, what)
            challenge = self._pick_challenge(resp) if same_host else None
            rewindable = body is None or isinstance(body, (bytes, bytearray))
            retry = False
            if challenge is not None and rewindable:
                scheme, params = challenge
                if scheme == "bearer":
                    known = self._challenge[1] if self._challenge and self._challenge[0] == "bearer" else {}
                    base = {k: params[k] for k in ("realm", "service") if params.get(k)} or \
                        {k: v for k, v in known.items() if k in ("realm", "service")}
                    self._challenge = ("bearer", base)
                    extra = [s for s in (params.get("scope") or "").split(" ") if s]
                    # a token for what we asked plus what the registry says it needs; cached
                    # under both keys so the next request of this kind reuses it
                    token = self._token(sorted(set(scopes) | set(extra)), base, True,
                                        alias=" ".join(sorted(set(scopes))))
                    hdrs["Authorization"] = "Bearer " + token
                    retry = True
                elif scheme == "basic":
                    self._challenge = challenge
                    basic = self._basic_header()
                    if basic and hdrs.get("Authorization") != basic:
                        hdrs["Authorization"] = basic
                        retry = True
            if retry:
                resp, conn, key = self._exchange(method, url, hdrs, body, what)
                if resp.status == 401:
                    body_bytes = self._read_small(resp, conn, key, MAX_ERROR_BODY, what)
            if resp.status == 401:
                raise self._auth_error(what, body_bytes, resp)
        hops = 0
        while follow_redirects and resp.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD"):
            hops += 1
            location = resp.getheader("Location")
            self._discard(resp, conn, key)
            if not location or hops > MAX_REDIRECTS:
                raise RegistryError(f"{what}: too many or broken redirects", status=resp.status)
            new_url = urljoin(url, location)
            if urlsplit(new_url).netloc != urlsplit(url).netloc or urlsplit(new_url).scheme != urlsplit(url).scheme:
                hdrs.pop("Authorization", None)
            url = new_url
            resp, conn, key = self._exchange(method, url, hdrs, None, what)
        return resp, conn, key

    def _auth_error(self, what: str, body: bytes, resp) -> AuthenticationError:
        code, text = _registry_error_text(body)
        text = text or "authentication required"
        if self.credentials is None:
            hint = f" (no credentials for {self.registry}: use kpod login {self.registry} or --creds)"
            return AuthenticationError(f"{what}: unauthorized: {text.removeprefix('unauthorized: ')}{hint}", status=401, code=code)
        challenge = self._pick_challenge(resp)
        if challenge and challenge[1].get("error") == "insufficient_scope":
            return AuthenticationError(f"{what}: insufficient scope: {text} (the credentials of "
                                       f"{self.credentials.username!r} do not allow this)", status=401, code=code)
        return AuthenticationError(f"{what}: {text if text.startswith('unauthorized') else 'unauthorized: ' + text}"
                                   f" (invalid username/password for {self.registry}?)", status=401, code=code)

    def _error(self, what: str, resp, body: bytes, *, not_found=None) -> RegistryError:
        code, text = _registry_error_text(body)
        if resp.status == 404 and not_found is not None:
            return not_found
        if text is None:
            text = f"HTTP {resp.status} {resp.reason}" + (f": {_short(body)}" if body.strip() else "")
        return RegistryError(f"{what}: {text}", status=resp.status, code=code)

    # -- scopes ---------------------------------------------------------------------------
    @staticmethod
    def scope(repo: str, actions: str = "pull") -> str:
        return f"repository:{repo}:{actions}"

    def check_login(self) -> None:
        """Verify the credentials (``kpod login``): a token for the registry or an
        authenticated ``GET /v2/``. Raises AuthenticationError when refused."""
        self.ping()
        what = f"logging into {self.registry}"
        if self._challenge is None:
            return  # the registry wants no credentials
        if self._challenge[0] == "bearer":
            try:
                self._token([], self._challenge[1], True)
            except AuthenticationError as exc:
                raise AuthenticationError(f"{what}: {exc.message}", status=exc.status) from None
            return
        resp, conn, key = self.request("GET", "/v2/", what=what)
        body = self._read_small(resp, conn, key, MAX_ERROR_BODY, what)
        if resp.status != 200:
            raise self._error(what, resp, body)

    # -- manifests ------------------------------------------------------------------------
    def get_manifest(self, repo: str, ref: str, accept: Iterable[str] = MANIFEST_ACCEPT) -> tuple[bytes, str | None, str | None]:
        """``(raw, media type, Docker-Content-Digest)`` of ``repo:ref`` (a tag or digest).
        When *ref* is a digest, the bytes are checked against it (DigestMismatch)."""
        what = f"reading manifest {ref} in {self.registry}/{repo}"
        resp, conn, key = self.request(
            "GET", f"/v2/{repo}/manifests/{quote(ref, safe=':')}", scopes=[self.scope(repo)],
            headers={"Accept": ", ".join(accept)}, what=what)
        body = self._read_small(resp, conn, key, MAX_MANIFEST, what)
        if resp.status != 200:
            raise self._error(what, resp, body, not_found=ManifestUnknown(
                f"{what}: manifest unknown: image not found", status=404, code="MANIFEST_UNKNOWN"))
        if ":" in ref:
            algo, _, hexpart = ref.partition(":")
            try:
                actual = f"{algo}:{hashlib.new(algo, body).hexdigest()}"
            except ValueError:
                raise RegistryError(f"{what}: unsupported digest algorithm {algo!r}") from None
            if actual != ref:
                raise DigestMismatch(f"{what}: manifest digest mismatch: expected {ref}, got {actual}")
        media_type = _media_type(resp.getheader("Content-Type"), body)
        return body, media_type, resp.getheader("Docker-Content-Digest")

    def head_manifest(self, repo: str, ref: str, accept: Iterable[str] = MANIFEST_ACCEPT) -> tuple[str | None, str | None, int | None] | None:
        """``(digest, media type, size)`` of ``repo:ref``, or None if it does not exist."""
        what = f"checking manifest {ref} in {self.registry}/{repo}"
        resp, conn, key = self.request(
            "HEAD", f"/v2/{repo}/manifests/{quote(ref, safe=':')}", scopes=[self.scope(repo)],
            headers={"Accept": ", ".join(accept)}, what=what)
        self._discard(resp, conn, key)
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise RegistryError(f"{what}: HTTP {resp.status} {resp.reason}", status=resp.status)
        length = resp.getheader("Content-Length")
        ct = resp.getheader("Content-Type")
        return resp.getheader("Docker-Content-Digest"), (ct.split(";")[0].strip() if ct else None), (
            int(length) if length and length.isdigit() else None)

    def put_manifest(self, repo: str, ref: str, raw: bytes, media_type: str | None) -> str:
        """Upload a manifest under a tag or digest; returns its digest."""
        what = f"writing manifest {ref} to {self.registry}/{repo}"
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        if media_type is None:
            media_type = _media_type(None, raw) or "application/vnd.oci.image.manifest.v1+json"
        resp, conn, key = self.request(
            "PUT", f"/v2/{repo}/manifests/{quote(ref, safe=':')}", scopes=[self.scope(repo, "pull,push")],
            headers={"Content-Type": media_type, "Content-Length": str(len(raw))}, body=bytes(raw), what=what)
        body = self._read_small(resp, conn, key, MAX_ERROR_BODY, what)
        if resp.status not in (200, 201, 202):
            raise self._error(what, resp, body)
        got = resp.getheader("Docker-Content-Digest")
        if got and got.startswith("sha256:") and got != digest:
            raise DigestMismatch(f"{what}: the registry stored digest {got}, expected {digest}")
        return digest

    def delete_manifest(self, repo: str, digest: str) -> None:
        what = f"deleting manifest {digest} in {self.registry}/{repo}"
        resp, conn, key = self.request("DELETE", f"/v2/{repo}/manifests/{digest}",
                                       scopes=[self.scope(repo, "delete"), self.scope(repo, "pull,push")], what=what)
        body = self._read_small(resp, conn, key, MAX_ERROR_BODY, what)
        if resp.status not in (200, 202):
            raise self._error(what, resp, body, not_found=ManifestUnknown(f"{what}: manifest unknown", status=404))

    # -- blobs ----------------------------------------------------------------------------
    def get_blob(self, repo: str, digest: str) -> BlobStream:
        """A stream of the blob (redirects followed). The caller verifies and closes it."""
        what = f"fetching blob {digest} from {self.registry}/{repo}"
        resp, conn, key = self.request("GET", f"/v2/{repo}/blobs/{digest}", scopes=[self.scope(repo)], what=what)
        if resp.status != 200:
            body = self._read_small(resp, conn, key, MAX_ERROR_BODY, what)
            raise self._error(what, resp, body, not_found=BlobUnknown(f"{what}: blob unknown", status=404, code="BLOB_UNKNOWN"))
        return BlobStream(self, resp, conn, key, what)

    def head_blob(self, repo: str, digest: str, *, push: bool = False) -> int | None:
        """The blob's size if the repository has it, else None."""
        what = f"checking blob {digest} in {self.registry}/{repo}"
        resp, conn, key = self.request("HEAD", f"/v2/{repo}/blobs/{digest}",
                                       scopes=[self.scope(repo, "pull,push" if push else "pull")], what=what)
        self._discard(resp, conn, key)
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise RegistryError(f"{what}: HTTP {resp.status} {resp.reason}", status=resp.status)
        length = resp.getheader("Content-Length")
        return int(length) if length and length.isdigit() else -1

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repository mount; True if the registry mounted it."""
        what = f"mounting blob {digest} from {from_repo} to {self.registry}/{repo}"
        q = urlencode({"mount": digest, "from": from_repo})
        resp, conn, key = self.request("POST", f"/v2/{repo}/blobs/uploads/?{q}",
                                       scopes=[self.scope(repo, "pull,push"), self.scope(from_repo, "pull")], what=what)
        body = self._read_small(resp, conn, key, MAX_ERROR_BODY, what)
        if resp.status == 201:
            return True
        if resp.status == 202:
            # an upload session was started instead: cancel it
            loc = resp.getheader("Location")
            if loc:
                try:
                    r2, c2, k2 = self.request("DELETE", urljoin(self.base_url() + "/", loc),
                                              scopes=[self.scope(repo, "pull,push")], what=what)
                    self._discard(r2, c2, k2)
                except RegistryError:
                    pass
            return False
        if resp.status in (401, 403, 404):
            return False
        raise self._error(what, resp, body)

    def _start_upload(self, repo: str, what: str) -> str:
        resp, conn, key = self.request("POST", f"/v2/{repo}/blobs/uploads/", scopes=[self.scope(repo, "pull,push")], what=what)
        body = self._read_small(resp, conn, key, MAX_ERROR_BODY, what)
        if resp.status not in (202, 201):
            raise self._error(what, resp, body)
        loc = resp.getheader("Location")
        if not loc:
            raise RegistryError(f"{what}: the registry gave no upload location")
        return urljoin(self.base_url() + "/", loc)

    def _send_body(self, method: str, url: str, scopes, stream, headers, what: str):
        """:meth:`request` with a body read from *stream*; an exception of the stream is
        raised as itself (the connection is dropped), not as a network error."""
        try:
            return self.request(method, url, scopes=scopes, body=_StreamedBody(stream), headers=headers, what=what)
        except _BodyError as exc:
            raise exc.exc from None

    @staticmethod
    def _with_query(url: str, **params: str) -> str:
        return url + ("&" if "?" in url else "?") + urlencode(params)

    def upload_blob(
        self,
        repo: str,
        stream: IO[bytes],
        digest: str | None,
        size: int | None,
        *,
        monolithic_max: int = 64 * 1024 * 1024,
        chunk_size: int | None = None,
    ) -> tuple[str, int]:
        """Upload a blob: one PUT when digest and size are known and size <= *monolithic_max*;
        else, with *chunk_size* None, one PATCH streaming the whole blob
        (``Transfer-Encoding: chunked``, as containers/image does: the stream is read, hashed
        and sent as it is produced, nothing is buffered) and a final PUT; with a
        *chunk_size*, PATCH chunks of that size (``Content-Range``) and a final PUT.
        Returns ``(digest, size)``."""
        what = f"uploading blob {digest or ''} to {self.registry}/{repo}".replace("  ", " ")
        location = self._start_upload(repo, what)
        scopes = [self.scope(repo, "pull,push")]
        if digest is not None and size is not None and size <= monolithic_max:
            url = self._with_query(location, digest=digest)
            resp, conn, key = self._send_body("PUT", url, scopes, stream,
                                              {"Content-Type": "application/octet-stream",
                                               "Content-Length": str(size)}, what)
            body = self._read_small(resp, conn, key, MAX_ERROR_BODY, what)
            if resp.status != 201:
                raise self._error(what, resp, body)
            self._check_uploaded(resp, digest, what)
            return digest, size
        hasher = _HashingReader(stream, (digest or "sha256:").split(":")[0])
        if chunk_size is None:
            resp, conn, key = self._send_body(
                "PATCH", location, scopes, hasher, {"Content-Type": "application/octet-stream"}, what)
            body = self._read_small(resp, conn, key, MAX_ERROR_BODY, what)
            if resp.status != 202:
                raise self._error(what, resp, body)
            self.stats["chunks"] = self.stats.get("chunks", 0) + 1
            loc = resp.getheader("Location")
            if loc:
                location = urljoin(location, loc)
        offset = 0
        while chunk_size is not None:
            buf, got = [], 0
            while got < chunk_size:
                more = hasher.read(min(CHUNK, chunk_size - got))
                if not more:
                    break
                buf.append(more)
                got += len(more)
            if not got:
                break
            data = b"".join(buf)
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(got),
                       "Content-Range": f"{offset}-{offset + got - 1}"}
            resp, conn, key = self.request("PATCH", location, scopes=scopes, body=data, headers=headers, what=what)
            body = self._read_small(resp, conn, key, MAX_ERROR_BODY, what)
            if resp.status != 202:
                raise self._error(what, resp, body)
            offset += got
            self.stats["chunks"] = self.stats.get("chunks", 0) + 1
            loc = resp.getheader("Location")
            if loc:
                location = urljoin(location, loc)
            if got < chunk_size:
                break
        final = hasher.digest
        if digest is not None and final != digest:
            raise DigestMismatch(f"{what}: the data read has digest {final}, expected {digest}")
        if size is not None and hasher.size != size:
            raise DigestMismatch(f"{what}: read {hasher.size} bytes, expected {size}")
        resp, conn, key = self.request("PUT", self._with_query(location, digest=final), scopes=scopes,
                                       headers={"Content-Length": "0"}, body=b"", what=what)
        body = self._read_small(resp, conn, key, MAX_ERROR_BODY, what)
        if resp.status != 201:
            raise self._error(what, resp, body)
        self._check_uploaded(resp, final, what)
        return final, hasher.size

    @staticmethod
    def _check_uploaded(resp, digest: str, what: str) -> None:
        got = resp.getheader("Docker-Content-Digest")
        if got and got != digest:
            raise DigestMismatch(f"{what}: the registry stored digest {got}, expected {digest}")

    # -- tags -----------------------------------------------------------------------------
    def list_tags(self, repo: str, page_size: int | None = None) -> list[str]:
        """Every tag of *repo*, following ``Link: <...>; rel="next"`` pages."""
        what = f"listing tags of {self.registry}/{repo}"
        url: str | None = f"/v2/{repo}/tags/list" + (f"?n={page_size}" if page_size else "")
        tags: list[str] = []
        pages = 0
        while url:
            pages += 1
            if pages > 10000:
                raise RegistryError(f"{what}: too many pages")
            resp, conn, key = self.request("GET", url, scopes=[self.scope(repo)], what=what)
            body = self._read_small(resp, conn, key, 16 * 1024 * 1024, what)
            if resp.status != 200:
                raise self._error(what, resp, body, not_found=NotFoundRepo(f"{what}: repository name not known to registry", status=404, code="NAME_UNKNOWN"))
            try:
                doc = json.loads(body)
                page = doc.get("tags") or []
            except (ValueError, AttributeError):
                raise RegistryError(f"{what}: invalid JSON answer") from None
            if not isinstance(page, list) or not all(isinstance(t, str) for t in page):
                raise RegistryError(f"{what}: invalid tag list")
            tags.extend(page)
            nxt = parse_link_next(resp.getheader("Link"))
            url = urljoin(self.base_url() + "/", nxt) if nxt else None
        return tags


class NotFoundRepo(RegistryError, NotFound):
    """404 for a repository (tag list)."""


def _split_hostport(hostport: str, default: int) -> tuple[str, int]:
    if hostport.startswith("["):
        end = hostport.index("]")
        host, rest = hostport[1:end], hostport[end + 1 :]
        return host, int(rest[1:]) if rest.startswith(":") else default
    host, sep, port = hostport.rpartition(":")
    if sep and port.isdigit():
        return host, int(port)
    return hostport, default


def _media_type(content_type: str | None, body: bytes) -> str | None:
    ct = (content_type or "").split(";")[0].strip().lower()
    if ct in MANIFEST_ACCEPT:
        return ct
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if isinstance(doc, dict):
        mt = doc.get("mediaType")
        if isinstance(mt, str) and mt:
            return mt
        if doc.get("schemaVersion") == 1:
            return "application/vnd.docker.distribution.manifest.v1+prettyjws" if "signatures" in doc else \
                "application/vnd.docker.distribution.manifest.v1+json"
        if doc.get("schemaVersion") == 2:
            if "manifests" in doc:
                return "application/vnd.oci.image.index.v1+json"
            if "config" in doc:
                return "application/vnd.oci.image.manifest.v1+json"
    return None


def make_client(registry: str, ctx: Any = None, *, insecure: bool = False, image: str | None = None,
                credentials: Credentials | None | bool = True) -> RegistryClient:
    """A client configured from a SystemContext: ``tls_verify``, ``cert_dir``, ``timeout``,
    and credentials from ``creds``, else the stores registries.conf's ``credential-helpers``
    lists (``authfile`` for the auth.json files), for *image* (``host/repo``) or the
    registry. Pass ``credentials=None`` for anonymous access."""
    from .auth import get_credentials

    if credentials is True:
        creds = getattr(ctx, "creds", None)
        helpers = None
        if creds is None:
            from .registries_conf import credential_helpers

            helpers = credential_helpers(ctx)
        credentials = get_credentials(image or registry, getattr(ctx, "authfile", None),
                                      creds=creds, credential_helpers=helpers)
    tls_verify = getattr(ctx, "tls_verify", None)
    return RegistryClient(
        registry,
        insecure=insecure,
        tls_verify=tls_verify,
        cert_dir=getattr(ctx, "cert_dir", None),
        credentials=credentials or None,
        timeout=getattr(ctx, "timeout", 60.0) or 60.0,
    )


def login(registry: str, username: str, password: str, ctx: Any = None, *, insecure: bool | None = None,
          authfile: str | None = None, store: bool = True) -> str | None:
    """``kpod login``: check *username*/*password* against *registry* (``host[:port]`` or
    ``host/repo``) and store them in the first credential store (registries.conf's
    ``credential-helpers``; by default the auth file). Returns the file written or the
    helper (None if not stored). Raises AuthenticationError with a clear message when refused."""
    from .auth import Credentials as _C, set_credentials, validate_key
    from .registries_conf import load_registries_conf

    key = validate_key(registry)
    host = key.partition("/")[0]
    conf = None
    if store:  # where to store: a broken registries.conf fails before the registry is asked
        conf = load_registries_conf(ctx)
    if insecure is None:
        try:
            insecure = (conf or load_registries_conf(ctx)).is_insecure(host)
        except Exception:
            insecure = False
    client = make_client(host, ctx, insecure=insecure, credentials=_C(username, password, None, "login", key))
    try:
        try:
            client.check_login()
        except AuthenticationError as exc:
            raise AuthenticationError(f"logging into {key!r}: invalid username/password ({exc.message})", status=401) from None
    finally:
        client.close()
    if conf is not None:
        return set_credentials(key, username, password, authfile or getattr(ctx, "authfile", None),
                               credential_helpers=conf.credential_helpers)
    return None
