"""registries.d: where an image's signatures are kept (containers-registries.d(5)).

Each ``*.yaml`` file in the directory (``~/.config/containers/registries.d`` if it exists,
else ``/etc/containers/registries.d``) may hold::

    default-docker:
      lookaside: https://sigs.example.com        # reading (and writing without staging)
      lookaside-staging: file:///srv/sigs        # writing
      use-sigstore-attachments: true             # sigstore signatures as registry tags
    docker:
      registry.example.com/ns:                   # a policy.json-like scope
        lookaside: file:///var/lib/sigs

(``sigstore``/``sigstore-staging`` are the old names of ``lookaside``/``lookaside-staging``.)
A scope is chosen like policy.json's: the image's identity (``host/repo:tag``), then its
repository, namespaces, host, wildcard domains, then ``default-docker``. Unknown keys, wrong
types and a scope defined in two files are errors naming the file.

Simple-signing signatures of a manifest with digest ``sha256:H`` in repository ``ns/repo``
live at ``<lookaside>/ns/repo@sha256=H/signature-1``, ``signature-2``... .
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import ConfigError, TransportError
from ..fileutil import write_atomic

__all__ = [
    "Namespace",
    "RegistriesD",
    "default_dir",
    "default_lookaside",
    "lookaside_url",
    "read_lookaside_signatures",
    "write_lookaside_signatures",
]

SYSTEM_DIR = "/etc/containers/registries.d"
_NS_KEYS = {
    "lookaside": "lookaside",
    "lookaside-staging": "lookaside_staging",
    "sigstore": "lookaside",
    "sigstore-staging": "lookaside_staging",
    "use-sigstore-attachments": "use_sigstore_attachments",
    "use-cosign-attachments": "use_sigstore_attachments",
}
MAX_SIGNATURE_SIZE = 4 * 1024 * 1024
MAX_SIGNATURES = 128


@dataclass
class Namespace:
    lookaside: str | None = None
    lookaside_staging: str | None = None
    use_sigstore_attachments: bool | None = None
    source: str = ""


def default_dir(environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    home = env.get("HOME") or os.path.expanduser("~")
    user = os.path.join(home, ".config", "containers", "registries.d")
    return user if os.path.isdir(user) else SYSTEM_DIR


def default_lookaside() -> str:
    """Where signatures go when nothing is configured (containers/image's built-in)."""
    if os.geteuid() == 0:
        return "file:///var/lib/containers/sigstore"
    home = os.environ.get("HOME") or os.path.expanduser("~")
    return "file://" + os.path.join(home, ".local", "share", "containers", "sigstore")


def _parse_ns(path: str, where: str, value: Any) -> Namespace:
    if value is None:
        return Namespace(source=path)
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {where} must be a mapping")
    ns = Namespace(source=path)
    for k, v in value.items():
        attr = _NS_KEYS.get(k)
        if attr is None:
            raise ConfigError(f"{path}: unknown key {where}.{k} (known: {', '.join(sorted(_NS_KEYS))})")
        if attr == "use_sigstore_attachments":
            if not isinstance(v, bool):
                raise ConfigError(f"{path}: key {where}.{k} must be true or false")
        else:
            if not isinstance(v, str):
                raise ConfigError(f"{path}: key {where}.{k} must be a URL string")
            parts = urlsplit(v)
            if parts.scheme not in ("file", "http", "https"):
                raise ConfigError(f"{path}: key {where}.{k}: {v!r} is not a file://, http:// or https:// URL")
        setattr(ns, attr, v)
    return ns


class RegistriesD:
    def __init__(self) -> None:
        self.default_docker: Namespace | None = None
        self.docker: dict[str, Namespace] = {}
        self.directory: str | None = None

    @classmethod
    def load(cls, directory: str | None = None) -> "RegistriesD":
        import yaml

        directory = directory or default_dir()
        conf = cls()
        conf.directory = directory
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            return conf
        except NotADirectoryError:
            raise ConfigError(f"{directory}: not a directory") from None
        default_from = ""
        ns_from: dict[str, str] = {}
        for name in names:
            if not name.endswith(".yaml"):
                continue
            path = os.path.join(directory, name)
            try:
                with open(path, "rb") as f:
                    data = yaml.safe_load(f)
            except yaml.YAMLError as exc:
                raise ConfigError(f"{path}: invalid YAML: {exc}") from None
            if data is None:
                continue
            if not isinstance(data, dict):
                raise ConfigError(f"{path}: the top level must be a mapping")
            for k in data:
                if k not in ("default-docker", "docker"):
                    raise ConfigError(f"{path}: unknown key {k!r} (known: default-docker, docker)")
            if "default-docker" in data:
                if conf.default_docker is not None:
                    raise ConfigError(f'{path}: "default-docker" is also defined in {default_from}')
                conf.default_docker = _parse_ns(path, "default-docker", data["default-docker"])
                default_from = path
            docker = data.get("docker") or {}
            if not isinstance(docker, dict):
                raise ConfigError(f"{path}: key 'docker' must be a mapping of scopes")
            for scope, value in docker.items():
                if not isinstance(scope, str):
                    raise ConfigError(f"{path}: docker scope {scope!r} must be a string")
                if scope in conf.docker:
                    raise ConfigError(f'{path}: docker scope "{scope}" is also defined in {ns_from[scope]}')
                conf.docker[scope] = _parse_ns(path, f"docker.{scope}", value)
                ns_from[scope] = path
        return conf

    def _namespaces(self, identity: str, namespaces: list[str]):
        for scope in [identity, *namespaces]:
            ns = self.docker.get(scope)
            if ns is not None:
                yield ns
        if self.default_docker is not None:
            yield self.default_docker

    def lookaside_base(self, identity: str, namespaces: list[str], repo_path: str, *, write: bool = False,
                       use_default: bool = True) -> str | None:
        """The lookaside URL for a repository (``<top>/<repo path>``), for writing if
        *write*; the built-in default directory when nothing matches and *use_default*."""
        top = None
        for ns in self._namespaces(identity, namespaces):
            if write and ns.lookaside_staging:
                top = ns.lookaside_staging
                break
            if ns.lookaside:
                top = ns.lookaside
                break
        if top is None:
            if not use_default:
                return None
            top = default_lookaside()
        if os.path.normpath("/" + repo_path) != "/" + repo_path:
            raise TransportError(f"unexpected path elements in repository {repo_path!r}")
        return top.rstrip("/") + "/" + repo_path

    def use_sigstore_attachments(self, identity: str, namespaces: list[str]) -> bool:
        for ns in self._namespaces(identity, namespaces):
            if ns.use_sigstore_attachments is not None:
                return ns.use_sigstore_attachments
        return False


def lookaside_url(base: str, digest: str, index: int) -> str:
    """``<base>@sha256=<hex>/signature-<index+1>``."""
    algo, _, hexpart = digest.partition(":")
    return f"{base}@{algo}={hexpart}/signature-{index + 1}"


def _file_path(url: str) -> str:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise TransportError(f"lookaside URL {url!r}: file:// URLs must not name a host")
    return unquote(parts.path)


def read_lookaside_signatures(base: str, digest: str, *, timeout: float = 60.0) -> list[bytes]:
    """Every signature at *base* for the manifest *digest*, in order (stops at the first
    missing one)."""
    out: list[bytes] = []
    scheme = urlsplit(base).scheme
    for i in range(MAX_SIGNATURES):
        url = lookaside_url(base, digest, i)
        if scheme == "file":
            path = _file_path(url)
            try:
                with open(path, "rb") as f:
                    data = f.read(MAX_SIGNATURE_SIZE + 1)
            except FileNotFoundError:
                break
            except OSError as exc:
                raise TransportError(f"reading signature {path}: {exc.strerror or exc}") from None
        else:
            data = _http_get(url, timeout)
            if data is None:
                break
        if len(data) > MAX_SIGNATURE_SIZE:
            raise TransportError(f"signature {url} is larger than {MAX_SIGNATURE_SIZE} bytes")
        out.append(data)
    return out


def _http_get(url: str, timeout: float) -> bytes | None:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"User-Agent": "kpod"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - configured URL
            return resp.read(MAX_SIGNATURE_SIZE + 1)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise TransportError(f"reading signature {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise TransportError(f"reading signature {url}: {getattr(exc, 'reason', exc)}") from None


def write_lookaside_signatures(base: str, digest: str, signatures: list[bytes]) -> None:
    """Replace the signatures of *digest* at a ``file://`` *base* with *signatures*."""
    if urlsplit(base).scheme != "file":
        raise TransportError(f"writing signatures to {base} is not supported: only file:// lookaside URLs can be written")
    first = _file_path(lookaside_url(base, digest, 0))
    d = os.path.dirname(first)
    os.makedirs(d, exist_ok=True)
    for i, sig in enumerate(signatures):
        write_atomic(os.path.join(d, f"signature-{i + 1}"), sig, 0o600)
    i = len(signatures)
    while True:
        path = os.path.join(d, f"signature-{i + 1}")
        if not os.path.exists(path):
            break
        os.unlink(path)
        i += 1
    if not signatures:
        try:
            os.rmdir(d)
        except OSError:
            pass
