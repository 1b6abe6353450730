"""Plugin discovery and driver selection.

stevedore loads only the driver whose name the configuration picks (a ``DriverManager``:
nothing else of that kind is imported); the driver instance registers its hook
implementations with one pluggy ``PluginManager``. General plugins (group ``kpod.plugins``)
are all loaded, except those named in ``disabled_plugins``. After every load
``check_pending()`` catches hook implementations that match no specification.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from importlib import metadata

from . import epcache, hookspecs
from .errors import PluginError
from .log import getLogger

log = getLogger(__name__)

PROJECT = "kpod"

# kind -> entry-point group
GROUPS = {
    "runtime": "kpod.runtime",
    "storage": "kpod.storage",
    "network": "kpod.network",
    "transport": "kpod.transport",
    "plugin": "kpod.plugins",
}

# Distributions known to provide a driver name, for the "missing driver" error.
KNOWN_PROVIDERS = {
    ("runtime", "runc"): "kpod-runtime-runc",
    ("runtime", "crun"): "kpod-runtime-crun",
    ("storage", "overlay"): "kpod-storage-overlay",
    ("storage", "vfs"): "kpod-storage-vfs",
    ("network", "cni"): "kpod-net-cni",
}

_SETTING = {"runtime": "runtime", "storage": "storage_driver", "network": "network_backend"}


class PluginInfo:
    """What ``kpod plugins`` and ``kpod info`` show about one entry point. (A plain class:
    this module loads with every driver, and a dataclass's generated methods cost 0.5 ms.)"""

    __slots__ = ("kind", "name", "target", "distribution", "version", "selected", "loaded", "hooks", "error")

    def __init__(self, kind: str, name: str, target: str, distribution: str | None, version: str | None,
                 selected: bool = False, loaded: bool = False, hooks: list[str] | None = None,
                 error: str | None = None) -> None:
        self.kind = kind
        self.name = name
        self.target = target
        self.distribution = distribution
        self.version = version
        self.selected = selected
        self.loaded = loaded
        self.hooks: list[str] = [] if hooks is None else hooks
        self.error = error

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "entryPoint": self.target,
            "distribution": self.distribution,
            "version": self.version,
            "selected": self.selected,
            "loaded": self.loaded,
            "hooks": self.hooks,
            "error": self.error,
        }


def entry_points(kind: str) -> list[metadata.EntryPoint]:
    """Installed entry points of one kind, sorted by name (first of duplicate names wins)."""
    from importlib import metadata

    seen: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=GROUPS[kind]):
        seen.setdefault(ep.name, ep)
    return [seen[n] for n in sorted(seen)]


def installed_names(kind: str) -> list[str]:
    return sorted({e.name for e in epcache.entries(GROUPS[kind])})


def _dist(ep: metadata.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def _missing_message(kind: str, name: str) -> str:
    installed = installed_names(kind)
    choices = ", ".join(installed) if installed else "none"
    provider = KNOWN_PROVIDERS.get((kind, name))
    hint = (
        f"; install the {provider} distribution to get it"
        if provider
        else "; no known distribution provides it"
    )
    return f"{kind} driver {name!r} is not installed (installed {kind} drivers: {choices}){hint}"


def _impl_names(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    return sorted(caller.name for caller in (pm.get_hookcallers(plugin) or []))


class _PluggyManager(pluggy.PluginManager):
    """pluggy's manager, minus most of the static attribute lookups (inspect.getattr_static,
    a third of a driver's start-up) it makes for every attribute of every plugin registered:
    dunder names are never hook implementations, and neither is a plain function without
    the hookimpl marker. Anything else (markers, descriptors, instance attributes) is left to
    pluggy, so what counts as a hook implementation does not change."""

    def parse_hookimpl_opts(self, plugin, name: str):
        if name[:2] == "__" and name[-2:] == "__":
            return None
        func = _plain_function(plugin, name)
        if func is not None and getattr(func, f"{self.project_name}_impl", None) is None:
            return None
        return super().parse_hookimpl_opts(plugin, name)


def _plain_function(plugin: object, name: str):
    """The plain function *name* is on *plugin*, found in the namespaces' dicts without
    running any descriptor; None when it is anything else or found elsewhere."""
    import types

    if isinstance(plugin, types.ModuleType):
        obj = plugin.__dict__.get(name)
    else:
        own = getattr(plugin, "__dict__", None)
        if not isinstance(plugin, type) and isinstance(own, dict) and name in own:
            return None  # an instance attribute: pluggy decides
        obj = None
        for klass in (plugin if isinstance(plugin, type) else type(plugin)).__mro__:
            if name in klass.__dict__:
                obj = klass.__dict__[name]
                break
    return obj if isinstance(obj, types.FunctionType) else None


class PluginManager:
    """Owns the pluggy manager, the selected drivers and the general plugins."""

    def __init__(self, config) -> None:
        self.config = config
        self.pm = _PluggyManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.hook = self.pm.hook
        self._drivers: dict[str, tuple[str, object]] = {}
        self._general_loaded = False
        self._general: list[PluginInfo] = []

    # -- drivers ------------------------------------------------------------------------
    def driver(self, kind: str, name: str | None = None) -> object:
        """Load (once) and return the driver instance of *kind* named by the config."""
        if kind in self._drivers:
            return self._drivers[kind][1]
        if name is None:
            name = self.config.get(_SETTING[kind])
        obj = self._load_driver(kind, name)
        self._drivers[kind] = (name, obj)
        return obj

    def driver_name(self, kind: str) -> str | None:
        return self._drivers[kind][0] if kind in self._drivers else None

    def _load_driver(self, kind: str, name: str) -> object:
        # The common case through the entry-point cache (no importlib.metadata, no
        # stevedore); anything unusual (not found, several, failing) goes through stevedore,
        # which gives the clear errors below.
        found = epcache.entries(GROUPS[kind], name)
        if len(found) == 1:
            try:
                cls = epcache.load(found[0].value)
            except Exception:
                pass
            else:
                return self._start_driver(kind, name, cls, found[0].value)
        return self._load_driver_stevedore(kind, name)

    def _load_driver_stevedore(self, kind: str, name: str) -> object:
        from stevedore import driver as sdriver
        from stevedore.exception import NoMatches

        # stevedore logs its own warning for a failed load; ours is the one clear error.
        import logging

        logging.getLogger("stevedore").setLevel(logging.CRITICAL)
        failure: list[BaseException] = []

        def on_fail(_mgr, ep, exc):
            failure.append(exc)

        try:
            mgr = sdriver.DriverManager(
                namespace=GROUPS[kind],
                name=name,
                invoke_on_load=False,
                on_load_failure_callback=on_fail,
            )
        except NoMatches:
            if failure:
                exc = failure[0]
                raise PluginError(
                    f"{kind} driver {name!r} failed to load: {type(exc).__name__}: {exc}"
                ) from exc
            raise PluginError(_missing_message(kind, name)) from None
        except RuntimeError as exc:  # several distributions register the name
            raise PluginError(f"{kind} driver {name!r}: {exc}") from exc
        return self._start_driver(kind, name, mgr.driver, mgr.extensions[0].entry_point.value)

    def _start_driver(self, kind: str, name: str, cls: Any, value: str) -> object:
        try:
            obj = cls(self.config) if isinstance(cls, type) else cls
        except Exception as exc:
            if isinstance(exc, PluginError) or hasattr(exc, "exit_code"):
                raise
            raise PluginError(f"{kind} driver {name!r} ({value}) failed to start: {exc}") from exc
        self._register(obj, f"{kind}:{name}", f"{kind} driver {name!r} ({value})")
        implemented = set(_impl_names(self.pm, obj))
        missing = [h for h in hookspecs.REQUIRED_HOOKS.get(kind, ()) if h not in implemented]
        if missing:
            self.pm.unregister(obj)
            raise PluginError(
                f"{kind} driver {name!r} ({value}) does not implement required hooks: {', '.join(missing)}"
            )
        return obj

    def _register(self, obj: object, reg_name: str, label: str) -> None:
        try:
            self.pm.register(obj, name=reg_name)
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            if self.pm.is_registered(obj):
                self.pm.unregister(obj)
            raise PluginError(f"{label} does not match the hook specifications: {exc}") from exc
        except ValueError as exc:
            raise PluginError(f"{label}: {exc}") from exc

    # -- general plugins ----------------------------------------------------------------
    def load_general(self) -> list[PluginInfo]:
        """Load every ``kpod.plugins`` entry point not disabled. Broken ones are errors."""
        if self._general_loaded:
            return self._general
        disabled = set(self.config.disabled_plugins)  # also KPOD_DISABLED_PLUGINS
        seen: dict[str, epcache.Entry] = {}
        for e in epcache.entries(GROUPS["plugin"]):
            seen.setdefault(e.name, e)
        for ep in (seen[n] for n in sorted(seen)):
            dist, ver = ep.dist, ep.version
            info = PluginInfo("plugin", ep.name, ep.value, dist, ver)
            if ep.name in disabled:
                info.error = "disabled"
                self._general.append(info)
                continue
            try:
                target = epcache.load(ep.value)
                obj = target(self.config) if isinstance(target, type) else target
            except Exception as exc:
                raise PluginError(
                    f"plugin {ep.name!r} ({ep.value}, from {dist or 'unknown distribution'}) failed to load: "
                    f"{type(exc).__name__}: {exc} (disable it with KPOD_DISABLED_PLUGINS={ep.name})"
                ) from exc
            self._register(obj, f"plugin:{ep.name}", f"plugin {ep.name!r} ({ep.value})")
            info.loaded = True
            info.hooks = _impl_names(self.pm, obj)
            self._general.append(info)
        self._general_loaded = True
        return self._general

    # -- discovery for info / plugins ----------------------------------------------------
    def describe(self, kind: str | None = None, load: bool = True) -> list[PluginInfo]:
        """Every installed entry point (of *kind*), with the hooks each implements.

        Drivers that are not selected are loaded into a scratch manager only to list their
        hooks (``load=False`` skips that); failures are reported, not raised.
        """
        kinds = [kind] if kind else list(GROUPS)
        out: list[PluginInfo] = []
        for k in kinds:
            if k == "plugin":
                try:
                    self.load_general()
                except PluginError as exc:
                    out.append(PluginInfo("plugin", "?", "", None, None, error=exc.message))
                infos = {i.name: i for i in self._general}
                for ep in entry_points("plugin"):
                    if ep.name in infos:
                        out.append(infos[ep.name])
                continue
            for ep in entry_points(k):
                dist, ver = _dist(ep)
                info = PluginInfo(k, ep.name, ep.value, dist, ver)
                if k in self._drivers and self._drivers[k][0] == ep.name:
                    info.selected = info.loaded = True
                    info.hooks = _impl_names(self.pm, self._drivers[k][1])
                elif k != "transport" and self.config.get(_SETTING[k]) == ep.name:
                    info.selected = True
                if load and not info.hooks and k != "transport":
                    info.hooks, info.error = _probe_hooks(ep, self.config)
                out.append(info)
        return out


def _probe_hooks(ep: metadata.EntryPoint, config) -> tuple[list[str], str | None]:
    """Load a driver into a scratch pluggy manager to see which hooks it implements."""
    scratch = pluggy.PluginManager(PROJECT)
    scratch.add_hookspecs(hookspecs)
    try:
        target = ep.load()
        # Only the class's hook implementations are needed; don't start the driver.
        obj = target if isinstance(target, type) else target
        scratch.register(obj, name=ep.name)
        scratch.check_pending()
        return _impl_names(scratch, obj), None
    except Exception as exc:  # reported in the listing, not raised
        return [], f"{type(exc).__name__}: {exc}"
