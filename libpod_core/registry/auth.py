"""Registry credentials: auth.json, the way podman keeps them (containers-auth.json(5)).

Files are consulted in podman's order until one has an entry for the registry:

1. ``--authfile`` (or ``$REGISTRY_AUTH_FILE``), else ``${XDG_RUNTIME_DIR}/containers/auth.json``
   (``/run/containers/UID/auth.json`` without XDG_RUNTIME_DIR): the read/write file;
2. ``${XDG_CONFIG_HOME:-~/.config}/containers/auth.json`` (only without an explicit file);
3. ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json`` (read only);
4. ``~/.dockercfg`` (Docker's legacy format, read only; only without an explicit file).

Keys are ``host[:port]`` or ``host[:port]/namespace.../repo``; for an image the most specific
key wins (``reg/ns/user/image``, ``reg/ns/user``, ``reg/ns``, ``reg``). Keys written by Docker
(``https://index.docker.io/v1/``) are normalised to their host. Values hold ``auth``: base64 of
``user:password``, and optionally ``identitytoken`` (an OAuth2 refresh token).

Writes go to the read/write file only, atomically (temporary file + rename), mode 0600.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import ConfigError, InvalidArgument, NotFound

__all__ = [
    "Credentials",
    "AuthFile",
    "auth_files",
    "write_path",
    "lookup_keys",
    "normalize_key",
    "validate_key",
    "get_credentials",
    "set_credentials",
    "remove_credentials",
    "remove_all_credentials",
    "list_credentials",
    "parse_creds",
]

DOCKER_HUB = "docker.io"
_DOCKER_HUB_ALIASES = {"index.docker.io", "registry-1.docker.io", "docker.io"}


@dataclass(frozen=True)
class Credentials:
    """What to present to a registry: a user name and password, or an identity token."""

    username: str
    password: str
    identity_token: str | None = None
    #: where they came from (a file path, or ``--creds``)
    source: str = ""
    #: the auth.json key that matched
    key: str = ""

    def __repr__(self) -> str:  # never show the secret
        return f"Credentials(username={self.username!r}, source={self.source!r}, key={self.key!r})"


@dataclass(frozen=True)
class AuthFile:
    path: str
    writable: bool
    legacy: bool = False  # ~/.dockercfg: the top level is the "auths" mapping itself


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def _home(env: Mapping[str, str]) -> str:
    return env.get("HOME") or os.path.expanduser("~")


def write_path(authfile: str | None = None, *, environ: Mapping[str, str] | None = None) -> str:
    """The read/write auth file: --authfile, $REGISTRY_AUTH_FILE, else the runtime-dir file."""
    env = _env(environ)
    if authfile:
        return authfile
    if env.get("REGISTRY_AUTH_FILE"):
        return env["REGISTRY_AUTH_FILE"]
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "containers", "auth.json")
    return os.path.join("/run/containers", str(os.geteuid()), "auth.json")


def auth_files(authfile: str | None = None, *, environ: Mapping[str, str] | None = None) -> list[AuthFile]:
    """The files consulted for credentials, in order (see the module docstring)."""
    env = _env(environ)
    explicit = bool(authfile or env.get("REGISTRY_AUTH_FILE"))
    out = [AuthFile(write_path(authfile, environ=env), True)]
    home = _home(env)
    if not explicit:
        xdg = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
        out.append(AuthFile(os.path.join(xdg, "containers", "auth.json"), False))
    docker_dir = env.get("DOCKER_CONFIG") or os.path.join(home, ".docker")
    out.append(AuthFile(os.path.join(docker_dir, "config.json"), False))
    if not explicit:
        out.append(AuthFile(os.path.join(home, ".dockercfg"), False, legacy=True))
    seen: set[str] = set()
    unique = []
    for f in out:
        if f.path not in seen:
            seen.add(f.path)
            unique.append(f)
    return unique


# ------------------------------------------------------------------------------------------
# Keys


def _normalize_host(host: str) -> str:
    return DOCKER_HUB if host in _DOCKER_HUB_ALIASES else host


def normalize_key(key: str) -> str:
    """A key as found in a file, normalised for matching.

    ``https://index.docker.io/v1/`` -> ``docker.io``; ``http://host:5000/v2/`` -> ``host:5000``
    (Docker's URL keys name a host only); ``index.docker.io/x`` -> ``docker.io/x``.
    """
    k = key.strip()
    for scheme in ("https://", "http://"):
        if k.startswith(scheme):
            k = k[len(scheme):].split("/", 1)[0]
            return _normalize_host(k)
    host, slash, rest = k.partition("/")
    host = _normalize_host(host)
    return f"{host}/{rest.rstrip('/')}" if slash and rest.strip("/") else host


def validate_key(key: str) -> str:
    """Check a key given to login/logout: ``host[:port][/namespace.../repo]`` with no scheme,
    tag or digest. Returns it normalised (``index.docker.io`` -> ``docker.io``)."""
    from .. import reference

    if not isinstance(key, str) or not key.strip():
        raise InvalidArgument("registry must not be empty")
    if key.startswith(("http://", "https://")):
        raise InvalidArgument(f"registry {key!r} must not contain an http[s]:// prefix")
    key = key.rstrip("/")
    host, slash, path = key.partition("/")
    try:
        ref = reference.parse(f"{host}/x")
    except InvalidArgument:
        ref = None
    if ref is None or ref.domain != host:
        raise InvalidArgument(f"invalid registry {key!r}: expected host[:port][/namespace/repository]")
    if slash:
        try:
            pref = reference.parse(key)
        except InvalidArgument as exc:
            raise InvalidArgument(f"invalid registry {key!r}: {exc.message}") from None
        if pref.tag is not None or pref.digest is not None:
            raise InvalidArgument(f"invalid registry {key!r}: must not contain a tag or digest")
    return normalize_key(key)


def lookup_keys(image_or_registry: str) -> list[str]:
    """Keys to try for an image name or registry, most specific first.

    ``reg/ns/user/image:tag`` -> ``reg/ns/user/image``, ``reg/ns/user``, ``reg/ns``, ``reg``.
    """
    s = image_or_registry
    for scheme in ("https://", "http://"):
        if s.startswith(scheme):
            s = s[len(scheme):]
    s = s.split("@", 1)[0]
    host, slash, path = s.partition("/")
    if slash:
        colon = path.rfind(":")
        if colon != -1:
            path = path[:colon]
    host = _normalize_host(host)
    parts = [p for p in path.split("/") if p] if slash else []
    keys = []
    for i in range(len(parts), 0, -1):
        keys.append(host + "/" + "/".join(parts[:i]))
    keys.append(host)
    return keys


# ------------------------------------------------------------------------------------------
# Reading


def _read_file(f: AuthFile) -> dict[str, Any] | None:
    try:
        with open(f.path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    except OSError as exc:
        raise ConfigError(f"reading auth file {f.path}: {exc.strerror or exc}") from None
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"auth file {f.path}: invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"auth file {f.path}: the top level must be a JSON object")
    if f.legacy:
        return {"auths": data}
    auths = data.get("auths")
    if auths is not None and not isinstance(auths, dict):
        raise ConfigError(f'auth file {f.path}: "auths" must be a JSON object')
    return data


def _decode_entry(path: str, key: str, entry: Any) -> Credentials | None:
    if not isinstance(entry, dict):
        raise ConfigError(f'auth file {path}: entry "{key}" must be a JSON object')
    token = entry.get("identitytoken") or None
    if token is not None and not isinstance(token, str):
        raise ConfigError(f'auth file {path}: entry "{key}": "identitytoken" must be a string')
    auth = entry.get("auth")
    if not auth:
        if token:
            return Credentials("", "", token, path, key)
        return None
    if not isinstance(auth, str):
        raise ConfigError(f'auth file {path}: entry "{key}": "auth" must be a string')
    try:
        decoded = base64.b64decode(auth.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ConfigError(f'auth file {path}: entry "{key}": "auth" is not valid base64') from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise ConfigError(f'auth file {path}: entry "{key}": "auth" must encode USER:PASSWORD')
    return Credentials(user, password.strip("\x00"), token, path, key)


def get_credentials(
    image_or_registry: str,
    authfile: str | None = None,
    *,
    creds: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Credentials | None:
    """The credentials for an image (``host/ns/repo[:tag]``) or a registry (``host[:port]``).

    *creds* (``--creds user:password``) wins over every file. Returns None when no file has
    an entry (anonymous access).
    """
    if creds is not None:
        user, password = parse_creds(creds)
        return Credentials(user, password or "", None, "--creds", "")
    wanted = lookup_keys(image_or_registry)
    for f in auth_files(authfile, environ=environ):
        data = _read_file(f)
        if not data:
            continue
        auths = data.get("auths") or {}
        by_norm: dict[str, list[str]] = {}
        for k in auths:
            by_norm.setdefault(normalize_key(k), []).append(k)
        for want in wanted:
            keys = by_norm.get(want)
            if not keys:
                continue
            # an exactly written key wins over one that normalises to it
            keys = sorted(keys, key=lambda k: (k != want, k))
            for k in keys:
                c = _decode_entry(f.path, k, auths[k])
                if c is not None:
                    return c
    return None


def list_credentials(authfile: str | None = None, *, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{key: username}`` for every entry of every file (the first file wins for a key)."""
    out: dict[str, str] = {}
    for f in auth_files(authfile, environ=environ):
        data = _read_file(f)
        if not data:
            continue
        for k, entry in (data.get("auths") or {}).items():
            c = _decode_entry(f.path, k, entry)
            if c is not None:
                out.setdefault(normalize_key(k), c.username)
    return out


# ------------------------------------------------------------------------------------------
# Writing


def _atomic_write_json(path: str, data: dict[str, Any]) -> None:
    d = os.path.dirname(path) or "."
    os.makedirs(d, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".auth.json.", dir=d)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent="\t")
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _load_writable(path: str) -> dict[str, Any]:
    data = _read_file(AuthFile(path, True)) or {}
    data.setdefault("auths", {})
    return data


def set_credentials(
    key: str,
    username: str,
    password: str,
    authfile: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Store credentials for *key* (``host[:port][/repo...]``); returns the file written."""
    key = validate_key(key)
    if not username:
        raise InvalidArgument("username must not be empty")
    if ":" in username:
        raise InvalidArgument("username must not contain a colon")
    path = write_path(authfile, environ=environ)
    data = _load_writable(path)
    auths = data["auths"]
    # drop Docker-style aliases of the same key so the new entry is the one used
    for k in [k for k in auths if k != key and normalize_key(k) == key]:
        del auths[k]
    auths[key] = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode("ascii")}
    _atomic_write_json(path, data)
    return path


def remove_credentials(
    key: str,
    authfile: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Remove the entry for *key* from the read/write file; NotFound if there is none."""
    key = validate_key(key)
    path = write_path(authfile, environ=environ)
    data = _read_file(AuthFile(path, True)) or {}
    auths = data.get("auths") or {}
    matches = [k for k in auths if normalize_key(k) == key]
    if not matches:
        # podman says where the credentials do come from, if they exist elsewhere
        for f in auth_files(authfile, environ=environ)[1:]:
            other = _read_file(f) or {}
            if any(normalize_key(k) == key for k in (other.get("auths") or {})):
                raise NotFound(f"not logged in via auth file {path}, but via {f.path}: remove the entry there")
        raise NotFound(f"not logged into {key}")
    for k in matches:
        del auths[k]
    data["auths"] = auths
    _atomic_write_json(path, data)
    return path


def remove_all_credentials(authfile: str | None = None, *, environ: Mapping[str, str] | None = None) -> str:
    """``logout --all``: empty the read/write file's ``auths``."""
    path = write_path(authfile, environ=environ)
    data = _read_file(AuthFile(path, True))
    if data is None:
        return path
    data["auths"] = {}
    _atomic_write_json(path, data)
    return path


def parse_creds(creds: str) -> tuple[str, str | None]:
    """``--creds USER[:PASSWORD]`` -> ``(user, password)``; password None if not given."""
    if creds is None or creds == "":
        raise InvalidArgument("credentials can't be empty")
    user, sep, password = creds.partition(":")
    if not user:
        raise InvalidArgument("username can't be empty in --creds (USERNAME[:PASSWORD])")
    return user, (password if sep else None)
