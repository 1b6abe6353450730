"""``libpod_core.Runtime``: the library API the ``kpod`` CLI wraps.

    from libpod_core import Runtime
    rt = Runtime(runtime="crun", storage_driver="vfs", graphroot="/tmp/g", runroot="/tmp/r")
    print(rt.info()["host"]["ociRuntime"]["name"])

Keyword arguments override every configuration layer (they are the library's flags).
Drivers are loaded on first use, so building a Runtime is cheap.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from . import __version__, API_VERSION
from .config import Config
from .errors import ConfigError, KpodError


class Runtime:
    def __init__(
        self,
        config: Config | None = None,
        *,
        config_file: str | None = None,
        override_source: str | dict[str, str] = "argument",
        **overrides: Any,
    ) -> None:
        if config is None:
            config = Config.load(config_file, overrides=overrides, override_source=override_source)
        else:
            for k, v in overrides.items():
                if v is not None:
                    config.set(k, v, override_source if isinstance(override_source, str) else override_source[k])
        self.config = config
        self._resolve_runtime_path()
        self._plugins = None
        self._db = None
        self._images = None
        self._containers = None
        self._pods = None
        self._volumes = None
        self._network_provider = None

    def _resolve_runtime_path(self) -> None:
        """``runtime`` may be a path: use the driver named after the file, with that path."""
        value = self.config.runtime
        if "/" in value:
            path = os.path.abspath(value)
            if not (os.path.isfile(path) and os.access(path, os.X_OK)):
                raise ConfigError(f"runtime {value!r}: no executable at that path")
            name = os.path.basename(path)
            source = self.config.source("runtime")
            self.config.merge({"runtime": name}, source)
            runtimes = dict(self.config.runtimes)
            runtimes[name] = [path]
            self.config.merge({"runtimes": runtimes}, source)

    # -- plugins ----------------------------------------------------------------------
    @property
    def plugins(self):
        if self._plugins is None:
            from .plugins import PluginManager

            self._plugins = PluginManager(self.config)
        return self._plugins

    @property
    def hook(self):
        return self.plugins.hook

    @property
    def runtime_driver(self):
        """The selected OCI runtime driver instance (loaded on first use)."""
        return self.plugins.driver("runtime")

    @property
    def storage_driver(self):
        """The selected storage driver instance (loaded on first use)."""
        return self.plugins.driver("storage")

    @property
    def network_driver(self):
        """The selected network backend instance (loaded on first use)."""
        return self.plugins.driver("network")

    def load_drivers(self, *kinds: str) -> None:
        for kind in kinds or ("runtime", "storage"):
            self.plugins.driver(kind)

    # -- state and stores ----------------------------------------------------------------
    @property
    def db(self):
        """The SQLite state database in the graphroot (opened on first use)."""
        if self._db is None:
            from .state import Database

            self._db = Database(self.config.graphroot)
        return self._db

    @property
    def images(self):
        """The image and layer store (:class:`libpod_core.store.ImageStore`)."""
        if self._images is None:
            from .store import ImageStore

            self._images = ImageStore(self)
        return self._images

    @property
    def containers(self):
        """The containers of this store (:class:`libpod_core.containers.ContainerManager`)."""
        if self._containers is None:
            from .containers import ContainerManager

            self._containers = ContainerManager(self)
        return self._containers

    @property
    def pods(self):
        """The pods of this store (:class:`libpod_core.pods.PodManager`)."""
        if self._pods is None:
            from .pods import PodManager

            self._pods = PodManager(self)
        return self._pods

    @property
    def volumes(self):
        """The named volumes of this store (:class:`libpod_core.volumes.VolumeManager`)."""
        if self._volumes is None:
            from .volumes import VolumeManager

            self._volumes = VolumeManager(self)
        return self._volumes

    @property
    def container_network_provider(self):
        """What wires containers to the network backend (:class:`libpod_core.network.NetworkProvider`)."""
        if self._network_provider is None:
            from .network import NetworkProvider

            self._network_provider = NetworkProvider(self)
        return self._network_provider

    def pull_image(self, name: str, policy: str = "missing"):
        """Pull *name* for ``create``/``run --pull`` (through the signature policy)."""
        import sys

        from .pull import pull

        log = (lambda m: print(m, file=sys.stderr)) if sys.stderr.isatty() else None
        return pull(self, name, quiet=log is None, log=log)[0]

    def system_context(self, **kw: Any):
        """A transport SystemContext carrying this runtime's configuration."""
        from .transports import SystemContext

        ctx = SystemContext(config=self.config, registries_conf=self.config.registries_conf,
                            signature_policy=self.config.signature_policy, registries_d=self.config.registries_d)
        for k, v in kw.items():
            if v is not None:
                setattr(ctx, k, v)
        return ctx

    # -- reports ----------------------------------------------------------------------
    @staticmethod
    def version() -> dict[str, Any]:
        return version_info()

    def list_plugins(self, kind: str | None = None, load: bool = True) -> list[dict[str, Any]]:
        return [p.as_dict() for p in self.plugins.describe(kind, load=load)]

    def runtime_info(self) -> dict[str, Any]:
        self.plugins.driver("runtime")
        hook = self.hook
        info = hook.runtime_info()
        if info is None:
            path, _args = hook.runtime_command()
            info = {"name": self.plugins.driver_name("runtime"), "path": path, "version": hook.runtime_version()}
        return info

    def info(self) -> dict[str, Any]:
        """What ``kpod info`` shows: host, runtime, store, network, plugins, config."""
        self.load_drivers("runtime", "storage")
        network: dict[str, Any] = {"backend": self.config.network_backend}
        try:
            self.plugins.driver("network")
            extra = self.hook.network_info()
            if extra:
                network.update(extra)
        except KpodError as exc:
            network["error"] = exc.message
        self.plugins.load_general()
        extras: dict[str, Any] = {}
        for part in self.hook.kpod_info(config=self.config):
            if part:
                extras.update(part)
        plugins: dict[str, list] = {}
        for p in self.plugins.describe(load=True):
            plugins.setdefault(p.kind, []).append(p.as_dict())
        return {
            "host": host_info(self),
            "store": {
                "graphRoot": self.config.graphroot,
                "runRoot": self.config.runroot,
                "graphDriverName": self.plugins.driver_name("storage"),
                "graphOptions": self.config.storage_options(),
                "graphStatus": dict(self.hook.storage_status() or []),
                **self._store_counts(),
            },
            "network": network,
            "plugins": plugins,
            "pluginInfo": extras,
            "registries": {"conf": self.config.registries_conf, "policy": self.config.signature_policy},
            "version": version_info(),
            "config": {"files": list(self.config.files), "settings": self.config.describe()},
        }

    def _store_counts(self) -> dict[str, Any]:
        counts: dict[str, Any] = {"imageStore": {"number": len(self.images.list_images())}}
        try:
            rows = self.db.read("SELECT COUNT(*) AS n FROM containers")
            counts["containerStore"] = {"number": rows[0]["n"]}
        except Exception:
            counts["containerStore"] = {"number": 0}
        try:
            counts["volumeCount"] = {"number": len(self.volumes.list())}
        except Exception:
            counts["volumeCount"] = {"number": 0}
        return counts


def version_info() -> dict[str, Any]:
    return {
        "Version": __version__,
        "APIVersion": API_VERSION,
        "PythonVersion": sys.version.split()[0],  # platform.python_version(), without platform
        "OsArch": f"{sys.platform}/{os.uname().machine}",
    }


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def cgroup_version() -> str:
    """``v2``, ``v1`` or ``v1 (hybrid)`` from what is mounted at /sys/fs/cgroup."""
    mounts = _read("/proc/self/mounts").splitlines()
    types = {line.split()[1]: line.split()[2] for line in mounts if len(line.split()) > 2}
    if types.get("/sys/fs/cgroup") == "cgroup2":
        return "v2"
    if types.get("/sys/fs/cgroup/unified") == "cgroup2":
        return "v1 (hybrid)"
    return "v1"


def host_info(rt: Runtime | None = None) -> dict[str, Any]:
    uname = os.uname()
    mem = 0
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) * 1024
    info: dict[str, Any] = {
        "arch": uname.machine,
        "os": sys.platform,
        "kernel": uname.release,
        "hostname": uname.nodename,
        "cpus": os.cpu_count(),
        "memTotal": mem,
        "cgroupVersion": cgroup_version(),
        "cgroupManager": "cgroupfs",
        "rootless": os.geteuid() != 0,
    }
    if rt is not None:
        info["ociRuntime"] = rt.runtime_info()
        try:
            path = rt.config.find_executable(rt.config.conmon_path, "conmon", "conmon_path")
            info["conmon"] = {"path": path, "version": conmon_version(path)}
        except ConfigError as exc:
            info["conmon"] = {"error": exc.message}
    return info


def conmon_version(path: str) -> str:
    import subprocess

    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({exc})"
    return out.splitlines()[0].strip() if out else "unknown"
