"""Layered configuration.

Precedence, lowest first::

    built-in defaults < /etc/kpod/kpod.yaml < ~/.config/kpod/kpod.yaml
      < $KPOD_CONFIG or --config < KPOD_* environment < command-line flags

Each file is a YAML mapping of the keys in :data:`SCHEMA`. Mappings (``runtimes``) merge
per entry; every other value replaces the lower layer's. Unknown keys, wrong types and bad
YAML are :class:`~libpod_core.errors.ConfigError` naming the file and the key. The origin of
every value is kept (:meth:`Config.source`) for ``kpod info``.

``yaml`` is imported only when a file is actually read, so commands that need no config
(``kpod version``, ``--help``) stay fast.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Mapping

from .errors import ConfigError

SYSTEM_CONFIG = "/etc/kpod/kpod.yaml"
ENV_PREFIX = "KPOD_"
# KPOD_* variables that are not settings: the config file, and the crun wrapper's own.
ENV_RESERVED = frozenset({"KPOD_CONFIG", "KPOD_CRUN", "KPOD_CRUN_HYBRID"})


def _is_root() -> bool:
    return os.geteuid() == 0


def user_config_path() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "kpod", "kpod.yaml")


def _default_graphroot() -> str:
    if _is_root():
        return "/var/lib/kpod"
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "kpod", "storage")


def _default_runroot() -> str:
    if _is_root():
        return "/run/kpod"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(xdg, "kpod") if xdg else f"/tmp/kpod-run-{os.getuid()}"


_BIN_DIRS = ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin")


def _candidates(name: str, extra: tuple[str, ...] = ()) -> list[str]:
    return [os.path.join(d, name) for d in _BIN_DIRS] + list(extra)


class Key:
    """One configuration key: its type, default and meaning. (A plain class: every command
    builds SCHEMA, and a frozen dataclass's generated methods cost 0.4 ms per process.)"""

    __slots__ = ("name", "type", "default", "help", "choices")

    def __init__(self, name: str, type: str, default: Callable[[], Any], help: str,  # noqa: A002
                 choices: tuple[str, ...] = ()) -> None:
        self.name = name
        self.type = type  # "str", "int", "bool", "list", "map_list", "map_str"
        self.default = default
        self.help = help
        self.choices = choices

    def __repr__(self) -> str:
        return f"Key({self.name!r}, {self.type!r})"


LOG_LEVELS = ("debug", "info", "warn", "error", "fatal", "panic")

SCHEMA: dict[str, Key] = {
    k.name: k
    for k in (
        Key("runtime", "str", lambda: "runc", "OCI runtime driver to use (a name from 'runtimes', or a path)"),
        Key(
            "runtimes",
            "map_list",
            lambda: {"runc": _candidates("runc"), "crun": _candidates("crun")},
            "runtime name -> candidate executable paths, first existing wins",
        ),
        Key("storage_driver", "str", lambda: "overlay", "storage driver (graph driver) to use"),
        Key("storage_opts", "list", lambda: [], "driver options, KEY=VALUE (e.g. overlay.mountopt=nodev)"),
        Key("graphroot", "str", _default_graphroot, "persistent storage: layers, images, state database"),
        Key("runroot", "str", _default_runroot, "per-boot storage: runtime state, conmon files, locks"),
        Key(
            "conmon_path",
            "list",
            lambda: _candidates("conmon", ("/usr/libexec/podman/conmon", "/usr/local/libexec/podman/conmon")),
            "candidate paths of conmon, the container monitor",
        ),
        Key("network_backend", "str", lambda: "cni", "network backend driver"),
        Key("default_network", "str", lambda: "kpod", "network used by --network bridge"),
        Key("default_subnet", "str", lambda: "10.88.0.0/16", "subnet of the default network when kpod writes it"),
        Key("default_bridge", "str", lambda: "kpod0", "bridge of the default network when kpod writes it"),
        Key("cni_config_dir", "str", lambda: "/etc/cni/net.d", "directory of CNI .conflist files"),
        Key(
            "cni_plugin_dirs",
            "list",
            lambda: ["/usr/lib/cni", "/usr/libexec/cni", "/usr/local/libexec/cni", "/usr/local/lib/cni", "/opt/cni/bin"],
            "directories searched for CNI plugin executables",
        ),
        Key(
            "hooks_dirs",
            "list",
            lambda: ["/usr/share/containers/oci/hooks.d", "/etc/containers/oci/hooks.d"],
            "OCI hooks.d directories (later ones override same-named files)",
        ),
        Key("default_ulimits", "list", lambda: [], "ulimits for every container, NAME=SOFT[:HARD]"),
        Key("image_volume_mode", "str", lambda: "bind",
            "what the image's VOLUME paths get in a new container (default of --image-volume)",
            ("bind", "tmpfs", "ignore")),
        Key("init_path", "str", lambda: "/usr/bin/catatonit", "init binary used by --init and pod infra"),
        Key("registries_conf", "str", lambda: "/etc/containers/registries.conf", "registries.conf (v2) path"),
        Key("signature_policy", "str", lambda: "/etc/containers/policy.json", "signature policy path"),
        Key("registries_d", "str", lambda: "/etc/containers/registries.d", "registries.d directory (signature storage)"),
        Key("log_level", "str", lambda: "warn", "logging level", LOG_LEVELS),
        Key("disabled_plugins", "list", lambda: [], "general plugins (kpod.plugins entry points) not to load"),
        Key("events_logger", "str", lambda: "file",
            "where events go: file (<runroot>/events/events.log, read by 'kpod events') or none",
            ("file", "none")),
        Key("events_logfile_max_size", "int", lambda: 1_000_000,
            "bytes of the events log before it is rotated to events.log.1 (0: no limit)"),
    )
}


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper()


_ENV_TO_KEY = {env_name(k): k for k in SCHEMA}


def _type_name(t: str) -> str:
    return {
        "str": "a string",
        "int": "an integer",
        "bool": "a boolean",
        "list": "a list of strings",
        "map_list": "a mapping of names to lists of strings",
        "map_str": "a mapping of names to strings",
    }[t]


def check_value(key: Key, value: Any, where: str) -> Any:
    """Validate *value* for *key*; return it normalised or raise ConfigError naming *where*."""

    def bad() -> ConfigError:
        return ConfigError(f"{where}: key {key.name!r} must be {_type_name(key.type)}, got {type(value).__name__} {value!r}")

    t = key.type
    if t == "str":
        if not isinstance(value, str):
            raise bad()
        if key.choices and value not in key.choices:
            raise ConfigError(f"{where}: key {key.name!r} must be one of {', '.join(key.choices)}, got {value!r}")
        return value
    if t == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if t == "bool":
        if not isinstance(value, bool):
            raise bad()
        return value
    if t == "list":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad()
        return list(value)
    if t == "map_list":
        if not isinstance(value, dict):
            raise bad()
        out = {}
        for k, v in value.items():
            if isinstance(v, str):
                v = [v]
            if not isinstance(k, str) or not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ConfigError(f"{where}: key {key.name!r}: entry {k!r} must be a list of strings")
            out[k] = list(v)
        return out
    if t == "map_str":
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise bad()
        return dict(value)
    raise AssertionError(t)


def parse_env_value(key: Key, raw: str, where: str) -> Any:
    """Parse a KPOD_* environment value: lists are comma-separated, mappings JSON."""
    t = key.type
    if t == "str":
        return check_value(key, raw, where)
    if t == "int":
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{where}: must be an integer, got {raw!r}") from None
    if t == "bool":
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: must be true or false, got {raw!r}")
    if t == "list":
        return [p.strip() for p in raw.split(",") if p.strip()]
    try:
        value = json.loads(raw)
    except ValueError as e:
        raise ConfigError(f"{where}: must be a JSON object: {e}") from None
    return check_value(key, value, where)


def load_file(path: str) -> dict[str, Any]:
    """Read and validate one YAML config file. Returns {} for an empty file."""
    import yaml  # deferred: only commands that read a config file pay for it

    try:
        with open(path, "rb") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: not found") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path}: is a directory") from None
    except PermissionError:
        raise ConfigError(f"config file {path}: permission denied") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        pos = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"config file {path}: invalid YAML{pos}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: must be a mapping of settings, got {type(data).__name__}")
    out = {}
    for k, v in data.items():
        key = SCHEMA.get(k) if isinstance(k, str) else None
        if key is None:
            raise ConfigError(f"config file {path}: unknown key {k!r} (known keys: {', '.join(sorted(SCHEMA))})")
        out[k] = check_value(key, v, f"config file {path}")
    return out


class Config:
    """The merged configuration with the origin of every value.

    Values are read as attributes (``config.runtime``) or with :meth:`get`.
    """

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}
        self._sources: dict[str, str] = {}
        self.files: list[str] = []
        for name, key in SCHEMA.items():
            self._values[name] = key.default()
            self._sources[name] = "default"

    # -- building -----------------------------------------------------------------------
    def merge(self, values: Mapping[str, Any], source: str) -> None:
        for name, value in values.items():
            key = SCHEMA[name]
            if key.type in ("map_list", "map_str") and isinstance(self._values.get(name), dict):
                merged = dict(self._values[name])
                merged.update(value)
                value = merged
            self._values[name] = value
            self._sources[name] = source

    def set(self, name: str, value: Any, source: str) -> None:
        """Set one key from a flag or a library keyword (validated)."""
        key = SCHEMA.get(name)
        if key is None:
            raise ConfigError(f"{source}: unknown setting {name!r}")
        self.merge({name: check_value(key, value, source)}, source)

    @classmethod
    def load(
        cls,
        config_file: str | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        override_source: str = "argument",
        system_file: str = SYSTEM_CONFIG,
        user_file: str | None = None,
    ) -> "Config":
        """Build the configuration from every layer.

        *config_file* is --config (falls back to $KPOD_CONFIG); it must exist. The system and
        user files are read when present. *overrides* are flags or library keywords.
        """
        env = os.environ if environ is None else environ
        cfg = cls()
        for path in (system_file, user_file if user_file is not None else user_config_path()):
            if path and os.path.exists(path):
                cfg.merge(load_file(path), path)
                cfg.files.append(path)
        explicit = config_file or env.get("KPOD_CONFIG")
        if explicit:
            cfg.merge(load_file(explicit), explicit)
            cfg.files.append(explicit)
        env_values = {}
        for var in sorted(env):
            if not var.startswith(ENV_PREFIX) or var in ENV_RESERVED:
                continue
            name = _ENV_TO_KEY.get(var)
            if name is None:
                raise ConfigError(
                    f"environment variable {var}: unknown setting (known: {', '.join(sorted(_ENV_TO_KEY))}, KPOD_CONFIG)"
                )
            env_values[name] = (parse_env_value(SCHEMA[name], env[var], f"environment variable {var}"), var)
        for name, (value, var) in env_values.items():
            cfg.merge({name: value}, f"env {var}")
        for name, value in (overrides or {}).items():
            if value is None:
                continue
            cfg.set(name, value, override_source if isinstance(override_source, str) else override_source[name])
        return cfg

    # -- reading ------------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def get(self, name: str) -> Any:
        return self._values[name]

    def source(self, name: str) -> str:
        return self._sources[name]

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def describe(self) -> dict[str, dict[str, Any]]:
        """``{key: {"value": ..., "source": ...}}`` for ``kpod info``."""
        return {k: {"value": self._values[k], "source": self._sources[k]} for k in SCHEMA}

    def storage_options(self) -> dict[str, str]:
        """``storage_opts`` as a dict; each must be KEY=VALUE."""
        out = {}
        for opt in self.storage_opts:
            k, sep, v = opt.partition("=")
            if not sep or not k:
                raise ConfigError(f"storage option {opt!r}: must be KEY=VALUE ({self.source('storage_opts')})")
            out[k.strip()] = v.strip()
        return out

    def find_executable(self, candidates: list[str], what: str, setting: str) -> str:
        """First existing executable among *candidates*, else a ConfigError."""
        for path in candidates:
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
        raise ConfigError(
            f"{what} not found: none of {', '.join(candidates) or '(no paths)'} exists "
            f"(setting {setting!r} from {self.source(setting)})"
        )
