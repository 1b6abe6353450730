"""registries.conf (v2, TOML): search registries, short-name aliases, mirrors, insecure and
blocked registries, and the credential stores (``credential-helpers``: used by
:mod:`.auth`; :func:`credential_helpers`) (containers-registries.conf(5)).

The file is ``$HOME/.config/containers/registries.conf`` if it exists, else
``/etc/containers/registries.conf`` (or the path given: ``--registries-conf``, the
``registries_conf`` setting). Drop-in files ``<file>.d/*.conf`` are merged after it in
lexical order: a later file's top-level values replace earlier ones, ``[[registry]]`` tables
with the same prefix replace earlier ones, aliases merge (an empty value removes one).

Parsing is strict: an unknown key, a wrong type, an invalid location, a duplicate prefix or a
v1 table (``[registries.search]``...) next to v2 keys is a :class:`ConfigError` naming the file
and the key. The v1 format alone is still read (converted to v2), as podman does.

Main entry points::

    conf = RegistriesConf.load(path)              # or load_registries_conf(ctx)
    conf.resolve_pull_sources(ref)                # mirrors then the primary location
    conf.push_destination(ref)                    # where a push goes (no mirrors)
    conf.resolve_short_name("busybox", interactive=False)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, InvalidArgument, PolicyDenied
from .. import reference as _reference

__all__ = [
    "SHORT_NAME_MODES",
    "Mirror",
    "Registry",
    "PullSource",
    "ShortNameResolution",
    "RegistriesConf",
    "default_path",
    "load_registries_conf",
    "credential_helpers",
    "resolve_pull_sources",
    "short_name_candidates",
]

SYSTEM_PATH = "/etc/containers/registries.conf"
SHORT_NAME_MODES = ("enforcing", "permissive", "disabled")
DEFAULT_SHORT_NAME_MODE = "permissive"
PULL_FROM_MIRROR = ("", "all", "digest-only", "tag-only")

_TOP_KEYS = {
    "unqualified-search-registries",
    "registry",
    "aliases",
    "short-name-mode",
    "credential-helpers",
    "additional-layer-store-auth-helper",
    "registries",  # v1
}
_REGISTRY_KEYS = {"prefix", "location", "insecure", "blocked", "mirror", "mirror-by-digest-only"}
_MIRROR_KEYS = {"location", "insecure", "pull-from-mirror"}
_V1_KEYS = {"search", "insecure", "block"}


@dataclass(frozen=True)
class Mirror:
    location: str
    insecure: bool = False
    pull_from_mirror: str = ""  # "", "all", "digest-only", "tag-only"


@dataclass(frozen=True)
class Registry:
    """One ``[[registry]]`` table."""

    prefix: str
    location: str
    insecure: bool = False
    blocked: bool = False
    mirror_by_digest_only: bool = False
    mirrors: tuple[Mirror, ...] = ()
    source: str = ""


@dataclass(frozen=True)
class PullSource:
    """One place to try: an endpoint (``host[:port][/path]``), whether it may be reached
    insecurely (HTTP, unverified TLS), and the reference rewritten for it."""

    location: str
    insecure: bool
    reference: _reference.Reference
    mirror: bool = False

    @property
    def registry(self) -> str:
        """``host[:port]`` to connect to."""
        return self.reference.domain or ""


@dataclass
class ShortNameResolution:
    """What a short name (``busybox``) may mean.

    *candidates* are fully qualified references to try in order. When *prompt* is true the
    caller (on a terminal) should let the user pick one of them; otherwise it tries them in
    order. *alias* is the file the alias came from, when one matched.
    """

    name: str
    candidates: list[_reference.Reference]
    mode: str
    alias: str | None = None
    prompt: bool = False


def _fail(source: str, msg: str) -> ConfigError:
    return ConfigError(f"{source}: {msg}")


def _type(value: Any) -> str:
    return {bool: "a boolean", str: "a string", list: "an array", dict: "a table",
            int: "an integer", float: "a float"}.get(type(value), type(value).__name__)


def _want_str(source: str, where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _fail(source, f"key {where!r} must be a string, got {_type(value)}")
    return value


def _want_bool(source: str, where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(source, f"key {where!r} must be true or false, got {_type(value)}")
    return value


def _want_str_list(source: str, where: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(source, f"key {where!r} must be an array of strings")
    return list(value)


def _valid_host(host: str) -> bool:
    try:
        return _reference.parse(f"{host}/x").domain == host
    except InvalidArgument:
        return False


def _check_location(source: str, where: str, loc: str, *, allow_tag: bool = False) -> str:
    """``host[:port][/ns.../repo]`` (and for prefixes ``:tag``/``@digest``), no scheme."""
    if loc.startswith(("http://", "https://")):
        raise _fail(source, f"key {where!r}: invalid location {loc!r}: URI schemes are not supported")
    loc = loc.rstrip("/")
    if not loc:
        return loc
    host, slash, rest = loc.partition("/")
    if not _valid_host(host):
        raise _fail(source, f"key {where!r}: invalid location {loc!r}: {host!r} is not a host[:port]")
    if slash:
        try:
            ref = _reference.parse(loc)
        except InvalidArgument as exc:
            raise _fail(source, f"key {where!r}: invalid location {loc!r}: {exc.message}") from None
        if not allow_tag and (ref.tag is not None or ref.digest is not None):
            raise _fail(source, f"key {where!r}: invalid location {loc!r}: must not contain a tag or digest")
    return loc


def _check_wildcard(source: str, where: str, prefix: str) -> None:
    body = prefix[2:]
    if not body or "/" in body or ":" in body or "*" in body or not _valid_host(body):
        raise _fail(
            source,
            f"key {where!r}: invalid prefix {prefix!r}: a wildcard must be *.domain "
            "(no port, path, tag or other *)",
        )


# ------------------------------------------------------------------------------------------


@dataclass
class _Parsed:
    source: str
    search: list[str] | None = None
    short_name_mode: str | None = None
    credential_helpers: list[str] | None = None
    registries: list[Registry] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)


def _parse_registry(source: str, i: int, table: Any) -> Registry:
    where = f"registry[{i}]"
    if not isinstance(table, dict):
        raise _fail(source, f"{where} must be a table")
    for k in table:
        if k not in _REGISTRY_KEYS:
            raise _fail(source, f"unknown key {where}.{k!r} (known: {', '.join(sorted(_REGISTRY_KEYS))})")
    location = _want_str(source, f"{where}.location", table.get("location", ""))
    prefix = _want_str(source, f"{where}.prefix", table.get("prefix", ""))
    insecure = _want_bool(source, f"{where}.insecure", table.get("insecure", False))
    blocked = _want_bool(source, f"{where}.blocked", table.get("blocked", False))
    by_digest = _want_bool(source, f"{where}.mirror-by-digest-only", table.get("mirror-by-digest-only", False))
    location = _check_location(source, f"{where}.location", location)
    if prefix.startswith("*."):
        _check_wildcard(source, f"{where}.prefix", prefix)
    elif prefix:
        prefix = _check_location(source, f"{where}.prefix", prefix, allow_tag=True)
    if not prefix:
        if not location:
            raise _fail(source, f"{where}: one of 'prefix' and 'location' must be set")
        prefix = location
    if not location and not prefix.startswith("*."):
        location = prefix
    mirrors_raw = table.get("mirror", [])
    if not isinstance(mirrors_raw, list):
        raise _fail(source, f"key {where}.mirror must be an array of tables ([[registry.mirror]])")
    mirrors = []
    for j, m in enumerate(mirrors_raw):
        mw = f"{where}.mirror[{j}]"
        if not isinstance(m, dict):
            raise _fail(source, f"{mw} must be a table")
        for k in m:
            if k not in _MIRROR_KEYS:
                raise _fail(source, f"unknown key {mw}.{k!r} (known: {', '.join(sorted(_MIRROR_KEYS))})")
        mloc = _want_str(source, f"{mw}.location", m.get("location", ""))
        mloc = _check_location(source, f"{mw}.location", mloc)
        if not mloc:
            raise _fail(source, f"{mw}: 'location' must be set")
        pfm = _want_str(source, f"{mw}.pull-from-mirror", m.get("pull-from-mirror", ""))
        if pfm not in PULL_FROM_MIRROR:
            raise _fail(source, f"key {mw}.pull-from-mirror: {pfm!r} is not one of all, digest-only, tag-only")
        if pfm and by_digest:
            raise _fail(
                source,
                f"{where}: cannot set mirror-by-digest-only and {mw}.pull-from-mirror at the same time",
            )
        mirrors.append(Mirror(mloc, _want_bool(source, f"{mw}.insecure", m.get("insecure", False)), pfm))
    return Registry(prefix, location, insecure, blocked, by_digest, tuple(mirrors), source)


def _parse_v1(source: str, table: Any) -> _Parsed:
    out = _Parsed(source)
    if not isinstance(table, dict):
        raise _fail(source, "key 'registries' must be a table")
    hosts: dict[str, dict[str, bool]] = {}
    for k, sub in table.items():
        if k not in _V1_KEYS:
            raise _fail(source, f"unknown key 'registries.{k}' (known: block, insecure, search)")
        if not isinstance(sub, dict):
            raise _fail(source, f"key 'registries.{k}' must be a table")
        for kk in sub:
            if kk != "registries":
                raise _fail(source, f"unknown key 'registries.{k}.{kk}'")
        regs = _want_str_list(source, f"registries.{k}.registries", sub.get("registries", []))
        for r in regs:
            r = _check_location(source, f"registries.{k}.registries", r)
            if k == "search":
                out.search = (out.search or []) + [r]
            else:
                hosts.setdefault(r, {})["insecure" if k == "insecure" else "blocked"] = True
    for loc, flags in hosts.items():
        out.registries.append(Registry(loc, loc, flags.get("insecure", False), flags.get("blocked", False), source=source))
    return out


def _parse(text: str, source: str) -> _Parsed:
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _fail(source, f"invalid TOML: {exc}") from None
    for k in data:
        if k not in _TOP_KEYS:
            raise _fail(source, f"unknown key {k!r} (known: {', '.join(sorted(_TOP_KEYS - {'registries'}))})")
    if "registries" in data:
        v2 = [k for k in ("registry", "unqualified-search-registries", "aliases", "short-name-mode") if k in data]
        if v2:
            raise _fail(source, f"mixing the v1 format ([registries.*]) with v2 keys ({', '.join(v2)}) is not supported")
        return _parse_v1(source, data["registries"])
    out = _Parsed(source)
    if "unqualified-search-registries" in data:
        regs = _want_str_list(source, "unqualified-search-registries", data["unqualified-search-registries"])
        for r in regs:
            if not _valid_host(r):
                raise _fail(source, f"key 'unqualified-search-registries': {r!r} is not a host[:port]")
        out.search = regs
    if "short-name-mode" in data:
        mode = _want_str(source, "short-name-mode", data["short-name-mode"])
        if mode and mode not in SHORT_NAME_MODES:
            raise _fail(source, f"key 'short-name-mode': {mode!r} is not one of {', '.join(SHORT_NAME_MODES)}")
        out.short_name_mode = mode or None
    if "credential-helpers" in data:
        out.credential_helpers = _check_helpers(source, data["credential-helpers"])
    if "additional-layer-store-auth-helper" in data:
        _want_str(source, "additional-layer-store-auth-helper", data["additional-layer-store-auth-helper"])
    regs_raw = data.get("registry", [])
    if not isinstance(regs_raw, list):
        raise _fail(source, "key 'registry' must be an array of tables ([[registry]])")
    seen: set[str] = set()
    for i, t in enumerate(regs_raw):
        r = _parse_registry(source, i, t)
        if r.prefix in seen:
            raise _fail(source, f"registry prefix {r.prefix!r} is defined more than once")
        seen.add(r.prefix)
        out.registries.append(r)
    aliases = data.get("aliases", {})
    if not isinstance(aliases, dict):
        raise _fail(source, "key 'aliases' must be a table")
    for name, value in aliases.items():
        where = f"aliases.{name!r}"
        value = _want_str(source, where, value)
        _check_alias(source, where, name, value)
        out.aliases[name] = value
    return out


def _check_helpers(source: str, value: Any) -> list[str]:
    """``credential-helpers``: ``containers-auth.json`` or NAME of ``docker-credential-NAME``."""
    from .auth import valid_helper_name

    helpers = _want_str_list(source, "credential-helpers", value)
    for name in helpers:
        if not valid_helper_name(name):
            raise _fail(source, f"key 'credential-helpers': {name!r} is not a credential helper name "
                                "(NAME of a docker-credential-NAME program on $PATH, or \"containers-auth.json\")")
    return helpers


def _check_alias(source: str, where: str, name: str, value: str) -> None:
    try:
        ref = _reference.parse(name)
    except InvalidArgument as exc:
        raise _fail(source, f"{where}: invalid short name: {exc.message}") from None
    if ref.domain is not None:
        raise _fail(source, f"{where}: the alias name must be a short name (no registry)")
    if ref.tag is not None or ref.digest is not None:
        raise _fail(source, f"{where}: the alias name must not contain a tag or digest")
    if value == "":
        return
    try:
        vref = _reference.parse(value)
    except InvalidArgument as exc:
        raise _fail(source, f"{where}: invalid alias value: {exc.message}") from None
    if vref.domain is None:
        raise _fail(source, f"{where}: the alias value {value!r} must be fully qualified (registry/repository)")
    if vref.tag is not None or vref.digest is not None:
        raise _fail(source, f"{where}: the alias value {value!r} must not contain a tag or digest")


# ------------------------------------------------------------------------------------------


def default_path(environ: dict[str, str] | None = None) -> str:
    """``~/.config/containers/registries.conf`` if it exists, else the system file."""
    env = os.environ if environ is None else environ
    home = env.get("HOME") or os.path.expanduser("~")
    xdg = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    user = os.path.join(xdg, "containers", "registries.conf")
    return user if os.path.exists(user) else SYSTEM_PATH


def _match_len(ref_str: str, domain: str, prefix: str) -> int:
    """Length of the match of *prefix* in *ref_str* (-1: none)."""
    if prefix.startswith("*."):
        host = domain.rsplit(":", 1)[0] if not domain.endswith("]") else domain
        if host.endswith(prefix[1:]):
            return len(domain)
        return -1
    if not ref_str.startswith(prefix):
        return -1
    if len(ref_str) == len(prefix):
        return len(prefix)
    c = ref_str[len(prefix)]
    if c == "/" or (c in ":@" and "/" in prefix):
        return len(prefix)
    return -1


class RegistriesConf:
    """The merged registries.conf (and its drop-ins)."""

    def __init__(self) -> None:
        self.search_registries: list[str] = []
        self.short_name_mode: str = DEFAULT_SHORT_NAME_MODE
        #: the credential stores in order ([]: unset, i.e. ["containers-auth.json"]; see registry.auth)
        self.credential_helpers: list[str] = []
        self.registries: list[Registry] = []
        self.aliases: dict[str, tuple[str, str]] = {}  # name -> (value, file)
        self.files: list[str] = []
        self._search_source = ""
        self._mode_source = ""

    # -- loading --------------------------------------------------------------------------
    def _merge(self, p: _Parsed) -> None:
        self.files.append(p.source)
        if p.search is not None:
            self.search_registries = list(p.search)
            self._search_source = p.source
        if p.short_name_mode is not None:
            self.short_name_mode = p.short_name_mode
            self._mode_source = p.source
        if p.credential_helpers is not None:
            self.credential_helpers = p.credential_helpers
        by_prefix = {r.prefix: r for r in self.registries}
        for r in p.registries:
            by_prefix[r.prefix] = r
        self.registries = list(by_prefix.values())
        for name, value in p.aliases.items():
            if value == "":
                self.aliases.pop(name, None)
            else:
                self.aliases[name] = (value, p.source)

    @classmethod
    def from_string(cls, text: str, source: str = "registries.conf") -> "RegistriesConf":
        conf = cls()
        conf._merge(_parse(text, source))
        return conf

    @classmethod
    def load(cls, path: str | None = None, *, dropins: bool = True) -> "RegistriesConf":
        """Read *path* (default: :func:`default_path`) and ``<path>.d/*.conf``. A missing
        main file is an empty configuration."""
        path = path or default_path()
        conf = cls()
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8")
        except FileNotFoundError:
            text = None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not valid UTF-8") from None
        except OSError as exc:
            raise ConfigError(f"reading {path}: {exc.strerror or exc}") from None
        if text is not None:
            conf._merge(_parse(text, path))
        d = path + ".d"
        if dropins and os.path.isdir(d):
            for name in sorted(os.listdir(d)):
                if not name.endswith(".conf"):
                    continue
                fp = os.path.join(d, name)
                try:
                    with open(fp, "rb") as f:
                        conf._merge(_parse(f.read().decode("utf-8"), fp))
                except UnicodeDecodeError:
                    raise ConfigError(f"{fp}: not valid UTF-8") from None
        return conf

    @property
    def source(self) -> str:
        return " or ".join(self.files) if self.files else "registries.conf"

    # -- matching -------------------------------------------------------------------------
    def find_registry(self, ref: _reference.Reference | str) -> Registry | None:
        """The ``[[registry]]`` table with the longest prefix matching *ref* (or a host)."""
        if isinstance(ref, str):
            ref_str, domain = ref, ref.partition("/")[0]
        else:
            ref_str, domain = str(ref), ref.domain or ""
        best, best_len = None, -1
        for r in self.registries:
            n = _match_len(ref_str, domain, r.prefix)
            # a wildcard only wins over shorter wildcards; exact prefixes win over wildcards
            if n < 0:
                continue
            rank = n if not r.prefix.startswith("*.") else len(r.prefix) - 10_000
            if best is None or rank > best_len:
                best, best_len = r, rank
        return best

    def is_insecure(self, ref_or_host: _reference.Reference | str) -> bool:
        r = self.find_registry(ref_or_host)
        return bool(r and r.insecure)

    def is_blocked(self, ref_or_host: _reference.Reference | str) -> bool:
        r = self.find_registry(ref_or_host)
        return bool(r and r.blocked)

    def _check_blocked(self, ref: _reference.Reference, r: Registry | None) -> None:
        if r is not None and r.blocked:
            raise PolicyDenied(f"registry {ref.domain} is blocked in {r.source or self.source} (prefix {r.prefix!r})")

    @staticmethod
    def _rewrite(ref: _reference.Reference, r: Registry, location: str) -> _reference.Reference:
        if not location:
            return ref
        ref_str = str(ref)
        n = _match_len(ref_str, ref.domain or "", r.prefix)
        if n < 0:  # pragma: no cover - find_registry matched it
            return ref
        new = location + ref_str[n:]
        try:
            return _reference.parse(new)
        except InvalidArgument as exc:
            raise ConfigError(
                f"{r.source}: rewriting {ref_str!r} with prefix {r.prefix!r} to location {location!r} "
                f"gives an invalid reference: {exc.message}"
            ) from None

    def resolve_pull_sources(self, ref: _reference.Reference | str) -> list[PullSource]:
        """Where to pull *ref* from, in order: mirrors (as allowed for a tag or digest pull),
        then the primary location. Raises :class:`PolicyDenied` if it is blocked."""
        if isinstance(ref, str):
            ref = _reference.parse(ref)
        if ref.domain is None:
            raise InvalidArgument(f"{ref}: not a fully qualified reference (no registry)")
        r = self.find_registry(ref)
        if r is None:
            return [PullSource(ref.domain, False, ref)]
        self._check_blocked(ref, r)
        out = []
        by_digest = ref.digest is not None
        for m in r.mirrors:
            if r.mirror_by_digest_only and not by_digest:
                continue
            if m.pull_from_mirror == "digest-only" and not by_digest:
                continue
            if m.pull_from_mirror == "tag-only" and by_digest:
                continue
            out.append(PullSource(m.location, m.insecure, self._rewrite(ref, r, m.location), True))
        out.append(PullSource(r.location or ref.domain, r.insecure, self._rewrite(ref, r, r.location)))
        return out

    def push_destination(self, ref: _reference.Reference | str) -> PullSource:
        """Where a push of *ref* goes: the reference itself (no rewriting, no mirrors, as
        containers/image does), insecure per its registry table; blocked raises."""
        if isinstance(ref, str):
            ref = _reference.parse(ref)
        r = self.find_registry(ref)
        self._check_blocked(ref, r)
        return PullSource(ref.domain or "", bool(r and r.insecure), ref)

    # -- short names ----------------------------------------------------------------------
    def resolve_short_name(self, name: str, interactive: bool = False) -> ShortNameResolution:
        """Resolve *name* the way podman does (aliases, then unqualified-search registries,
        per short-name-mode). A fully qualified name resolves to itself."""
        ref = _reference.parse(name)
        mode = self.short_name_mode or DEFAULT_SHORT_NAME_MODE
        if ref.domain is not None:
            return ShortNameResolution(name, [_normalize(str(ref))], mode)
        tail = ""
        if ref.tag is not None:
            tail += f":{ref.tag}"
        if ref.digest is not None:
            tail += f"@{ref.digest}"
        alias = self.aliases.get(ref.path)
        if alias is not None:
            value, src = alias
            return ShortNameResolution(name, [_normalize(value + tail)], mode, alias=src)
        if not self.search_registries:
            where = self._search_source or self.source
            raise InvalidArgument(
                f'short-name "{name}" did not resolve to an alias and no unqualified-search '
                f"registries are defined in {where}"
            )
        candidates = [_normalize(f"{reg}/{ref.path}{tail}") for reg in self.search_registries]
        if len(candidates) == 1 or mode == "disabled":
            return ShortNameResolution(name, candidates, mode)
        if interactive:
            return ShortNameResolution(name, candidates, mode, prompt=True)
        if mode == "enforcing":
            raise InvalidArgument(
                f'short-name resolution enforced but cannot prompt without a TTY: "{name}" could be '
                f"any of {', '.join(str(c) for c in candidates)} (use a fully qualified name, add an "
                f"alias, or set short-name-mode in {self._mode_source or self.source})"
            )
        return ShortNameResolution(name, candidates, mode)

    def short_name_candidates(self, name: str, interactive: bool = False) -> list[_reference.Reference]:
        return self.resolve_short_name(name, interactive).candidates


def _normalize(s: str) -> _reference.Reference:
    """Fill in docker.io's ``library/`` and the ``latest`` tag."""
    return _reference.normalize_docker_hub(s)


# ------------------------------------------------------------------------------------------
# Convenience


def load_registries_conf(ctx: Any = None, path: str | None = None) -> RegistriesConf:
    """The configuration for a SystemContext: its ``registries_conf``, the engine config's,
    or the default path."""
    if path is None and ctx is not None:
        path = getattr(ctx, "registries_conf", None)
        cfg = getattr(ctx, "config", None)
        if path is None and cfg is not None:
            try:
                path = cfg.get("registries_conf")
            except (KeyError, AttributeError):
                path = None
    return RegistriesConf.load(path)


def credential_helpers(ctx: Any = None, path: str | None = None) -> list[str]:
    """``credential-helpers`` of the configuration for a SystemContext (``[]``: not set; the
    credential functions of :mod:`.auth` then use ``containers-auth.json``)."""
    return load_registries_conf(ctx, path).credential_helpers


def resolve_pull_sources(ref: _reference.Reference | str, *, conf: RegistriesConf | None = None,
                         path: str | None = None) -> list[PullSource]:
    return (conf or RegistriesConf.load(path)).resolve_pull_sources(ref)


def short_name_candidates(name: str, interactive: bool = False, *, conf: RegistriesConf | None = None,
                          path: str | None = None) -> list[_reference.Reference]:
    return (conf or RegistriesConf.load(path)).short_name_candidates(name, interactive)
