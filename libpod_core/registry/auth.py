"""Registry credentials: auth.json and credential helpers, the way podman keeps them
(containers-auth.json(5), containers-registries.conf(5)).

Credential stores (registries.conf ``credential-helpers``)
----------------------------------------------------------
registries.conf's ``credential-helpers = ["NAME", ...]`` is the ordered list of credential
stores (callers pass it as ``credential_helpers``;
:func:`libpod_core.registry.registries_conf.credential_helpers` reads it for a
SystemContext). The name ``containers-auth.json`` (:data:`AUTH_FILE_HELPER`)
is the auth.json files below with the helpers they name; any other NAME is the program
``docker-credential-NAME``. Unset or empty, the list is ``["containers-auth.json"]``, so
without the key everything works as described below. As containers/image's
``pkg/docker/config``:

* lookup asks each store in order; the first that has credentials answers (a helper's
  "credentials not found": the next store). A store that fails (helper missing, crashing;
  a broken file) does not stop the lookup: its error is raised only when no store answered;
* ``login`` stores in the first store only (kpod does not try the next one when it fails;
  containers/image does);
* ``logout REGISTRY`` removes from every store; NotFound only when none held it;
* ``logout --all`` empties every store (an external helper: ``list``, then ``erase`` of each;
  a helper missing from ``$PATH`` holds nothing);
* external helpers hold registries (``host[:port]``): they are asked for the registry of an
  image, a namespaced login is refused when the first store is one, and logout skips them
  for a namespaced key;
* ``--authfile`` / ``$REGISTRY_AUTH_FILE`` only change the files of the
  ``containers-auth.json`` store; the list still decides which stores are used.

The ``containers-auth.json`` store
----------------------------------
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

Writes (the ``containers-auth.json`` store) go to the read/write file only, atomically
(temporary file + rename), mode 0600.

Credential helpers (containers/image's pkg/docker/config, plus Docker's ``credsStore``)
--------------------------------------------------------------------------------------
A file may name helpers: ``"credHelpers": {"REGISTRY": "NAME"}`` and ``"credsStore": "NAME"``.
Helper ``NAME`` is the program ``docker-credential-NAME`` on ``$PATH``, spoken to with the
docker-credential-helpers protocol: ``get`` (server on stdin, JSON ``{"ServerURL", "Username",
"Secret"}`` on stdout; "credentials not found" means none), ``store`` (that JSON on stdin),
``erase`` (server on stdin), ``list`` (JSON ``{server: username}``). The server is always the
registry ``host[:port]``: helpers do not hold namespaced keys.

Lookup, for each file in the order above (as containers/image's ``findCredentialsInFile``):
a ``credHelpers`` entry for the registry sends the lookup to that helper, and the file's
``auths`` are then not consulted for this registry (helper found nothing: next file); else
the ``auths`` keys, most specific first. When no file answered, the first ``credsStore``
found in the files is asked (Docker's default store; containers/image ignores
``credsStore``, kpod honours it after ``auths`` so that an explicit entry still wins).
A helper answering user name ``<token>`` gives an identity token (used as an OAuth2 refresh
token at the bearer-token realm, never sent as a basic-auth user name).

Writes (login/logout) look only at the read/write file's helpers: its ``credHelpers`` entry
for the registry, else its ``credsStore`` (then a Docker-style empty ``auths`` entry
records the login). A missing, failing, hanging (:data:`HELPER_TIMEOUT`) or garbling helper
is a :class:`CredentialHelperError` naming the helper; the file is then left as it was.
Secrets never appear in messages.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..errors import ConfigError, InvalidArgument, KpodError, NotFound
from ..log import getLogger

log = getLogger(__name__)

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
    "CredentialHelperError",
    "HELPER_TIMEOUT",
    "helper_get",
    "helper_store",
    "helper_erase",
    "helper_list",
    "find_helper",
    "store_helper",
    "AUTH_FILE_HELPER",
    "DEFAULT_CREDENTIAL_HELPERS",
    "credential_stores",
    "valid_helper_name",
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
# Credential helpers (docker-credential-helpers protocol)

#: seconds a helper may take for one action before it is killed
HELPER_TIMEOUT = 30.0
#: the answer that means "no credentials" (docker-credential-helpers' errCredentialsNotFound)
NOT_FOUND_MESSAGE = "credentials not found in native keychain"
TOKEN_USERNAME = "<token>"
_HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_MAX_HELPER_OUTPUT = 1 << 20


class CredentialHelperError(KpodError):
    """A credential helper is missing, failed, timed out or answered garbage."""


#: the ``credential-helpers`` name (registries.conf) that means the auth.json files
AUTH_FILE_HELPER = "containers-auth.json"
#: the stores when registries.conf sets no ``credential-helpers`` (or an empty list)
DEFAULT_CREDENTIAL_HELPERS: tuple[str, ...] = (AUTH_FILE_HELPER,)


def valid_helper_name(name: Any) -> bool:
    """Whether *name* can name ``docker-credential-NAME`` (no path, no blanks)."""
    return isinstance(name, str) and _HELPER_NAME.fullmatch(name) is not None


def credential_stores(credential_helpers: Sequence[str] | None) -> tuple[str, ...]:
    """registries.conf's ``credential-helpers`` in effect: the list, or the default."""
    return tuple(credential_helpers) if credential_helpers else DEFAULT_CREDENTIAL_HELPERS


def _one_error(errors: list[KpodError], what: str) -> KpodError:
    """The error for failures of several stores: the only one as it is, else one line."""
    if len(errors) == 1:
        return errors[0]
    return CredentialHelperError(f"{what}: " + "; ".join(e.message for e in errors))


def _prog(name: str) -> str:
    return f"docker-credential-{name}"


def find_helper(name: str, *, environ: Mapping[str, str] | None = None) -> str:
    """The path of helper *name* (``docker-credential-NAME`` on ``$PATH``)."""
    env = _env(environ)
    if not valid_helper_name(name):
        raise CredentialHelperError(f"invalid credential helper name {name!r}")
    path = shutil.which(_prog(name), path=env.get("PATH", os.defpath))
    if path is None:
        raise CredentialHelperError(f"credential helper {_prog(name)} not found in $PATH")
    return path


def _not_found(text: str) -> bool:
    return "credentials not found" in text.lower()


def _clean(text: str, secrets: tuple[str, ...] = ()) -> str:
    """One short line of a helper's complaint, with any secret blanked out."""
    for sec in secrets:
        if sec:
            text = text.replace(sec, "***")
    line = " ".join(text.split())
    return line[:200] + ("..." if len(line) > 200 else "")


def _run_helper(name: str, action: str, data: bytes,
                environ: Mapping[str, str] | None) -> tuple[int, str, str]:
    """Run ``docker-credential-NAME ACTION`` with *data* on stdin: (exit code, stdout, stderr).

    The helper runs in its own session so that a timeout kills it and its children."""
    path = find_helper(name, environ=environ)
    try:
        proc = subprocess.Popen([path, action], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=dict(_env(environ)), start_new_session=True,
                                close_fds=True)
    except OSError as exc:
        raise CredentialHelperError(f"credential helper {_prog(name)}: cannot run it: {exc.strerror or exc}") from None
    try:
        out, err = proc.communicate(data, timeout=HELPER_TIMEOUT)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()
        proc.communicate()
        raise CredentialHelperError(
            f"credential helper {_prog(name)}: {action} timed out after {HELPER_TIMEOUT:g}s") from None
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()
        raise
    return (proc.returncode, out[:_MAX_HELPER_OUTPUT].decode("utf-8", "replace"),
            err[:_MAX_HELPER_OUTPUT].decode("utf-8", "replace"))


def _failed(name: str, action: str, server: str | None, rc: int, out: str, err: str,
            secrets: tuple[str, ...] = ()) -> CredentialHelperError:
    what = f"{action} for {server}" if server else action
    how = f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"
    detail = _clean(out.strip() or err.strip(), secrets)
    return CredentialHelperError(f"credential helper {_prog(name)}: {what} failed ({how})"
                                 + (f": {detail}" if detail else ""))


def helper_get(name: str, server: str, *, environ: Mapping[str, str] | None = None,
               key: str = "") -> Credentials | None:
    """Ask helper *name* for *server*'s credentials; None when it has none."""
    rc, out, err = _run_helper(name, "get", server.encode(), environ)
    if rc != 0:
        if _not_found(out) or _not_found(err):
            return None
        raise _failed(name, "get", server, rc, out, err)
    try:
        doc = json.loads(out)
    except ValueError:
        doc = None
    # never quote the answer: it may hold the secret
    if not isinstance(doc, dict) or not isinstance(doc.get("Username", ""), str) \
            or not isinstance(doc.get("Secret", ""), str):
        raise CredentialHelperError(f"credential helper {_prog(name)}: get for {server}: invalid JSON answer "
                                    '(expected {"ServerURL", "Username", "Secret"})')
    user, secret = doc.get("Username") or "", doc.get("Secret") or ""
    source = f"credential helper {_prog(name)}"
    if user == TOKEN_USERNAME:
        return Credentials("", "", secret or None, source, key or server) if secret else None
    if not user and not secret:
        return None
    return Credentials(user, secret, None, source, key or server)


def helper_store(name: str, server: str, username: str, secret: str, *,
                 environ: Mapping[str, str] | None = None) -> None:
    data = json.dumps({"ServerURL": server, "Username": username, "Secret": secret}).encode()
    rc, out, err = _run_helper(name, "store", data, environ)
    if rc != 0:
        raise _failed(name, "store", server, rc, out, err, (secret,))


def helper_erase(name: str, server: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Erase *server* from helper *name*; False if it held nothing for it."""
    rc, out, err = _run_helper(name, "erase", server.encode(), environ)
    if rc != 0:
        if _not_found(out) or _not_found(err):
            return False
        raise _failed(name, "erase", server, rc, out, err)
    return True


def helper_list(name: str, *, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{server: username}`` of everything helper *name* holds."""
    rc, out, err = _run_helper(name, "list", b"", environ)
    if rc != 0:
        raise _failed(name, "list", None, rc, out, err)
    try:
        doc = json.loads(out)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in doc.items()):
        raise CredentialHelperError(f"credential helper {_prog(name)}: list: invalid JSON answer (expected an object)")
    return doc


def _cred_helpers(f: "AuthFile", data: Mapping[str, Any]) -> dict[str, str]:
    """A file's validated ``credHelpers`` (``{}`` for the legacy format)."""
    if f.legacy:
        return {}
    ch = data.get("credHelpers")
    if ch is None:
        return {}
    if not isinstance(ch, dict):
        raise ConfigError(f'auth file {f.path}: "credHelpers" must be a JSON object')
    for k, v in ch.items():
        if not isinstance(v, str) or not v:
            raise ConfigError(f'auth file {f.path}: "credHelpers" entry "{k}" must be a non-empty string')
    return ch


def _creds_store(f: "AuthFile", data: Mapping[str, Any]) -> str | None:
    if f.legacy:
        return None
    cs = data.get("credsStore")
    if cs is None or cs == "":
        return None
    if not isinstance(cs, str):
        raise ConfigError(f'auth file {f.path}: "credsStore" must be a string')
    return cs


def _helper_for(helpers: Mapping[str, str], registry: str) -> str | None:
    """The helper a ``credHelpers`` map names for *registry* (exact key first)."""
    if registry in helpers:
        return helpers[registry]
    for k in sorted(helpers):
        if "/" not in normalize_key(k) and normalize_key(k) == registry:
            return helpers[k]
    return None


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


def _get_from_files(wanted: list[str], authfile: str | None,
                    environ: Mapping[str, str] | None) -> Credentials | None:
    """The ``containers-auth.json`` store: the files in order, with their own helpers."""
    registry = wanted[-1]
    default_store: str | None = None
    for f in auth_files(authfile, environ=environ):
        data = _read_file(f)
        if not data:
            continue
        if default_store is None:
            default_store = _creds_store(f, data)
        helper = _helper_for(_cred_helpers(f, data), registry)
        if helper is not None:
            # containers/image: the helper answers for this file; nothing there: next file
            c = helper_get(helper, registry, environ=environ)
            if c is not None:
                return c
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
    if default_store is not None:
        return helper_get(default_store, registry, environ=environ)
    return None


def get_credentials(
    image_or_registry: str,
    authfile: str | None = None,
    *,
    creds: str | None = None,
    environ: Mapping[str, str] | None = None,
    credential_helpers: Sequence[str] | None = None,
) -> Credentials | None:
    """The credentials for an image (``host/ns/repo[:tag]``) or a registry (``host[:port]``).

    *creds* (``--creds user:password``) wins over every store. Else the stores of
    *credential_helpers* (registries.conf's list; default: the auth.json files) are asked
    in order and the first that has credentials answers. A store that fails does not stop
    the lookup (as containers/image); its error is raised only when no store answered.
    Returns None when none has any (anonymous access).
    """
    if creds is not None:
        user, password = parse_creds(creds)
        return Credentials(user, password or "", None, "--creds", "")
    wanted = lookup_keys(image_or_registry)
    registry = wanted[-1]
    errors: list[KpodError] = []
    for store in credential_stores(credential_helpers):
        try:
            if store == AUTH_FILE_HELPER:
                c = _get_from_files(wanted, authfile, environ)
            else:  # external helpers hold registries only, never namespaced keys
                c = helper_get(store, registry, environ=environ)
        except KpodError as exc:
            log.debug("looking up credentials for %s in %s: %s", registry, store, exc.message)
            errors.append(exc)
            continue
        if c is not None:
            return c
    if errors:
        raise _one_error(errors, f"looking up credentials for {registry}")
    return None


def list_credentials(authfile: str | None = None, *, environ: Mapping[str, str] | None = None,
                     credential_helpers: Sequence[str] | None = None) -> dict[str, str]:
    """``{key: username}`` of every store of *credential_helpers* (the first store wins for a
    key). For ``containers-auth.json``: every ``auths`` entry of every file (the helpers the
    files name are not run: use :func:`helper_list` for those); for an external helper: its
    ``list`` (a helper missing from ``$PATH`` holds nothing, as containers/image)."""
    out: dict[str, str] = {}
    for store in credential_stores(credential_helpers):
        if store != AUTH_FILE_HELPER:
            if _helper_installed(store, environ):
                for k, user in helper_list(store, environ=environ).items():
                    out.setdefault(normalize_key(k), user)
            continue
        for f in auth_files(authfile, environ=environ):
            data = _read_file(f)
            if not data:
                continue
            for k, entry in (data.get("auths") or {}).items():
                c = _decode_entry(f.path, k, entry)
                if c is not None:
                    out.setdefault(normalize_key(k), c.username)
    return out


def _helper_installed(name: str, environ: Mapping[str, str] | None) -> bool:
    try:
        find_helper(name, environ=environ)
    except CredentialHelperError:
        return False
    return True


# ------------------------------------------------------------------------------------------
# Writing


def _atomic_write_json(path: str, data: dict[str, Any]) -> None:
    from ..fileutil import write_atomic

    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    write_atomic(path, json.dumps(data, indent="\t") + "\n", 0o600, fsync=True)


def _load_writable(path: str) -> dict[str, Any]:
    data = _read_file(AuthFile(path, True)) or {}
    data.setdefault("auths", {})
    return data


def store_helper(key: str, authfile: str | None = None, *,
                 environ: Mapping[str, str] | None = None,
                 credential_helpers: Sequence[str] | None = None) -> tuple[str | None, bool]:
    """Where ``login`` stores *key*: ``(helper name, from credsStore)``, or ``(None, False)``
    for the read/write file itself. The first store of *credential_helpers* takes logins:
    an external helper, or (``containers-auth.json``) the read/write file, whose own helpers
    then decide (only that file's count, as podman)."""
    key = validate_key(key)
    host, slash, _ = key.partition("/")
    first = credential_stores(credential_helpers)[0]
    if first != AUTH_FILE_HELPER:
        if slash:
            raise InvalidArgument(f"namespaced key {key!r} is not supported for credential helper "
                                  f"{_prog(first)} (credential-helpers in registries.conf): log into {host}")
        return first, False
    path = write_path(authfile, environ=environ)
    data = _read_file(AuthFile(path, True)) or {}
    f = AuthFile(path, True)
    helper = _helper_for(_cred_helpers(f, data), host)
    if helper is not None:
        if slash:
            raise InvalidArgument(f"namespaced key {key!r} is not supported for credential helper "
                                  f"{_prog(helper)} (credHelpers in {path}): log into {host}")
        return helper, False
    store = _creds_store(f, data)
    if store is not None and not slash:
        return store, True
    return None, False


def set_credentials(
    key: str,
    username: str,
    password: str,
    authfile: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    credential_helpers: Sequence[str] | None = None,
) -> str:
    """Store credentials for *key* (``host[:port][/repo...]``) in the first store of
    *credential_helpers* (see :func:`store_helper`); returns the file written, or
    ``credential helper: NAME`` when a helper took them. A failing store is an error: the
    next store is not tried."""
    key = validate_key(key)
    if not username:
        raise InvalidArgument("username must not be empty")
    if ":" in username:
        raise InvalidArgument("username must not contain a colon")
    path = write_path(authfile, environ=environ)
    helper, default_store = store_helper(key, authfile, environ=environ, credential_helpers=credential_helpers)
    if helper is not None:
        helper_store(helper, key, username, password, environ=environ)
        if not default_store:
            return f"credential helper: {_prog(helper)}"
        # credsStore: drop any stale auths entry that would shadow the helper, and leave an
        # empty one as Docker does, so that ``logout --all`` knows what to erase
        data = _load_writable(path)
        auths = data["auths"]
        for k in [k for k in auths if normalize_key(k) == key]:
            del auths[k]
        auths[key] = {}
        _atomic_write_json(path, data)
        return f"credential helper: {_prog(helper)}"
    data = _load_writable(path)
    auths = data["auths"]
    # drop Docker-style aliases of the same key so the new entry is the one used
    for k in [k for k in auths if k != key and normalize_key(k) == key]:
        del auths[k]
    auths[key] = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode("ascii")}
    _atomic_write_json(path, data)
    return path


def _remove_from_files(key: str, authfile: str | None, environ: Mapping[str, str] | None) -> str:
    """The ``containers-auth.json`` store's logout (see :func:`remove_credentials`)."""
    path = write_path(authfile, environ=environ)
    f = AuthFile(path, True)
    data = _read_file(f) or {}
    logged_in = False
    host, slash, _ = key.partition("/")
    helper = _helper_for(_cred_helpers(f, data), host)
    if helper is None:
        helper = _creds_store(f, data)
    if helper is not None and not slash:  # helpers hold registries, never namespaced keys
        logged_in = helper_erase(helper, key, environ=environ)
    auths = data.get("auths") or {}
    matches = [k for k in auths if normalize_key(k) == key]
    if not matches and not logged_in:
        # podman says where the credentials do come from, if they exist elsewhere
        for other_f in auth_files(authfile, environ=environ)[1:]:
            other = _read_file(other_f) or {}
            if any(normalize_key(k) == key for k in (other.get("auths") or {})) \
                    or _helper_for(_cred_helpers(other_f, other), host) is not None:
                raise NotFound(f"not logged in via auth file {path}, but via {other_f.path}: remove the entry there")
        raise NotFound(f"not logged into {key}")
    if matches:
        for k in matches:
            del auths[k]
        data["auths"] = auths
        _atomic_write_json(path, data)
    return path


def remove_credentials(
    key: str,
    authfile: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    credential_helpers: Sequence[str] | None = None,
) -> str:
    """Remove *key*'s credentials from every store of *credential_helpers*, as podman.

    ``containers-auth.json``: from the read/write file's helper for the registry (its
    ``credHelpers`` entry, else its ``credsStore``) and its ``auths``; helpers are asked
    first, and if one fails the file is left as it was. An external helper is asked to
    ``erase`` the registry (never a namespaced key). NotFound if no store held any; a
    failing store does not stop the others, its error is raised at the end."""
    key = validate_key(key)
    path = write_path(authfile, environ=environ)
    logged_in = False
    not_found: NotFound | None = None
    errors: list[KpodError] = []
    for store in credential_stores(credential_helpers):
        try:
            if store == AUTH_FILE_HELPER:
                try:
                    _remove_from_files(key, authfile, environ)
                    logged_in = True
                except NotFound as exc:
                    not_found = exc
            elif "/" not in key and helper_erase(store, key, environ=environ):
                logged_in = True
        except KpodError as exc:
            errors.append(exc)
    if errors:
        raise _one_error(errors, f"removing credentials for {key}")
    if not logged_in:
        raise not_found or NotFound(f"not logged into {key}")
    return path


def _remove_all_from_files(path: str, environ: Mapping[str, str] | None) -> None:
    f = AuthFile(path, True)
    data = _read_file(f)
    if data is None:
        return
    for registry, helper in sorted(_cred_helpers(f, data).items()):
        helper_erase(helper, registry, environ=environ)
    store = _creds_store(f, data)
    if store is not None:
        for k in sorted({normalize_key(k) for k in (data.get("auths") or {})}):
            if "/" not in k:
                helper_erase(store, k, environ=environ)
    data["auths"] = {}
    data.pop("credHelpers", None)
    _atomic_write_json(path, data)


def remove_all_credentials(authfile: str | None = None, *, environ: Mapping[str, str] | None = None,
                           credential_helpers: Sequence[str] | None = None) -> str:
    """``logout --all``, as podman, for every store of *credential_helpers*.

    ``containers-auth.json``: erase every registry named in the read/write file's
    ``credHelpers`` from its helper, then empty the file's ``auths`` and ``credHelpers``.
    With a ``credsStore``, the registries recorded in ``auths`` are erased from it (the
    setting itself stays). A failing helper stops this store before the file is written.
    An external helper: everything its ``list`` names is erased (a helper missing from
    ``$PATH`` holds nothing). A failing store does not stop the others; its error is
    raised at the end."""
    path = write_path(authfile, environ=environ)
    errors: list[KpodError] = []
    for store in credential_stores(credential_helpers):
        try:
            if store == AUTH_FILE_HELPER:
                _remove_all_from_files(path, environ)
            elif _helper_installed(store, environ):
                for server in sorted(helper_list(store, environ=environ)):
                    helper_erase(store, server, environ=environ)
        except KpodError as exc:
            errors.append(exc)
    if errors:
        raise _one_error(errors, "removing all credentials")
    return path


def parse_creds(creds: str) -> tuple[str, str | None]:
    """``--creds USER[:PASSWORD]`` -> ``(user, password)``; password None if not given."""
    if creds is None or creds == "":
        raise InvalidArgument("credentials can't be empty")
    user, sep, password = creds.partition(":")
    if not user:
        raise InvalidArgument("username can't be empty in --creds (USERNAME[:PASSWORD])")
    return user, (password if sep else None)
