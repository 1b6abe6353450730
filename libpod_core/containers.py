"""Containers: the model, the ``containers`` table and the lifecycle.

    rt = Runtime(...)
    c = rt.containers.create(CreateOptions(image="busybox", command=["sh", "-c", "exit 3"]))
    c.start()
    print(c.wait())          # 3
    c.remove(force=True)

Where things live (``<id>`` is the 64-hex-digit container ID):

* ``<graphroot>/kpod.db`` table ``containers``: one row per container (create options as
  JSON, state columns). Names are UNIQUE in the table.
* ``<graphroot>/containers/<id>/``: ``config.json`` (the OCI spec made at create) and
  ``ctr.log`` (conmon's k8s-file log; kept across reboots).
* ``<runroot>/containers/<id>/``: the OCI bundle conmon and the runtime use (``config.json``
  with the mounted rootfs and the hooks, ``pidfile``, ``conmon.pid``, ``attach``, ``ctl``,
  ``exit``, ``oom``, and ``hostname``/``hosts``/``resolv.conf`` bind-mounted into the
  container).
* ``<runroot>/exits/<id>``: conmon's exit file; ``<runroot>/socket/<id>``: conmon's link to
  the attach socket; ``<runroot>/locks/ctr-<id>.lock``: the per-container flock.

States (column ``status``): ``configured`` (created, nothing running), ``created`` (conmon
and the runtime hold a created container), ``running``, ``paused``, ``stopped`` (the process
exited, cleanup pending), ``exited`` (cleaned up). As podman, ``configured`` shows as
"created", ``created`` as "initialized", ``stopped``/``exited`` as "exited".

The database is the record; reality is re-read when it matters: conmon's exit file means the
process exited; a missing ``<runroot>/containers/<id>`` means a reboot (running containers
read as exited); a dead conmon without an exit file means the monitor was lost: the
container is killed and reads as exited. Every state change happens under the container's
flock, after re-reading the row.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import sys
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from .errors import (
    AlreadyExists,
    ContainerStateError,
    InUse,
    InvalidArgument,
    KpodError,
    NotFound,
)
from .lazyre import lazy
from .state import FileLock, container_lock_path, register_schema
from . import store as _store  # noqa: F401 - registers the image tables our foreign keys point at
from .units import human_duration  # noqa: F401  (the CLI imports it from here too)
from .fileutil import write_atomic
from .plain import FRESH, plain_copy
from .log import getLogger

log = getLogger(__name__)


# Imported on first use: ``create`` and ``ps`` never need conmon, subprocess or shutil, and
# every millisecond of imports is paid by every kpod command.
def _conmon():
    from . import conmon

    return conmon


def _shutil():
    import shutil

    return shutil


def _token_hex(nbytes: int) -> str:
    return os.urandom(nbytes).hex()


def _choice(seq: Sequence[str]) -> str:
    return seq[int.from_bytes(os.urandom(4), "little") % len(seq)]


SCHEMA_VERSION = 1
register_schema(
    "containers",
    SCHEMA_VERSION,
    """
    CREATE TABLE IF NOT EXISTS containers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        image_id TEXT REFERENCES images(id),
        image_name TEXT,
        layer_id TEXT REFERENCES layers(id) ON DELETE CASCADE,
        config TEXT NOT NULL,
        spec_path TEXT,
        runtime TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'configured',
        pid INTEGER NOT NULL DEFAULT 0,
        conmon_pid INTEGER NOT NULL DEFAULT 0,
        exit_code INTEGER,
        oom_killed INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        restart_policy TEXT NOT NULL DEFAULT 'no',
        restart_max INTEGER NOT NULL DEFAULT 0,
        restart_count INTEGER NOT NULL DEFAULT 0,
        stopped_by_user INTEGER NOT NULL DEFAULT 0,
        mounted INTEGER NOT NULL DEFAULT 0,
        mount_point TEXT
    );
    CREATE INDEX IF NOT EXISTS containers_by_image ON containers(image_id);
    CREATE INDEX IF NOT EXISTS containers_by_layer ON containers(layer_id);
    CREATE TABLE IF NOT EXISTS container_exits (
        id TEXT PRIMARY KEY,
        name TEXT,
        exit_code INTEGER NOT NULL,
        oom_killed INTEGER NOT NULL DEFAULT 0,
        finished_at REAL NOT NULL
    )
    """,
)

# Namespaces joined from another container (``--network/--ipc/--uts/--pid container:ID``, a
# pod member's infra): one row per (dependent, dependency). ``depends_on`` has no ON DELETE
# action, so SQLite itself refuses to delete a container others depend on. A database made
# before this table gets it filled from the containers' stored options.
DEPENDENCIES_SCHEMA_VERSION = 1
register_schema(
    "container_dependencies",
    DEPENDENCIES_SCHEMA_VERSION,
    """
    CREATE TABLE IF NOT EXISTS container_dependencies (
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        depends_on TEXT NOT NULL REFERENCES containers(id),
        PRIMARY KEY (container_id, depends_on)
    );
    CREATE INDEX IF NOT EXISTS container_dependencies_by_target ON container_dependencies(depends_on);
    INSERT OR IGNORE INTO container_dependencies(container_id, depends_on)
        SELECT c.id, substr(j.value, 11) FROM containers AS c,
            json_each(json_array(json_extract(c.config, '$.network_mode'), json_extract(c.config, '$.ipc'),
                                 json_extract(c.config, '$.uts'), json_extract(c.config, '$.pid'))) AS j
        WHERE j.value LIKE 'container:%' AND substr(j.value, 11) IN (SELECT id FROM containers)
    """,
)


def dependency_ids(config: dict) -> list[str]:
    """IDs of the containers whose namespaces a container with *config* joins."""
    out: list[str] = []
    for mode in (config.get("network_mode"), config.get("ipc"), config.get("uts"), config.get("pid")):
        if isinstance(mode, str) and mode.startswith("container:") and mode[10:] not in out:
            out.append(mode[10:])
    return out


def _record_dependencies(tx, cid: str, config: dict) -> None:
    """In the transaction that inserts container *cid*: its dependencies, each checked to
    exist still (the write lock is held: none can go before the commit)."""
    for dep in dependency_ids(config):
        if tx.execute("SELECT 1 FROM containers WHERE id = ?", (dep,)).fetchone() is None:
            raise NotFound(f"container {dep[:12]}, whose namespaces the new container joins, was removed meanwhile")
        tx.execute("INSERT OR IGNORE INTO container_dependencies(container_id, depends_on) VALUES(?, ?)", (cid, dep))


#: statuses in which conmon may be alive
ACTIVE = ("created", "running", "paused")
#: how long removed containers' exit codes are kept (for ``wait`` and ``run --rm``)
EXIT_CODE_TTL = 600.0
NAME_RE = lazy(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")
PULL_POLICIES = ("always", "missing", "never", "newer")
DEFAULT_STOP_TIMEOUT = 10
CGROUP_PARENT = "/kpod"


# ---------------------------------------------------------------------------------------
# create options
# ---------------------------------------------------------------------------------------

class CreateOptions:
    """What ``kpod create``/``kpod run`` collected. Stored (as JSON) with the container.

    A plain class, not a dataclass: every ``create`` and ``run`` builds this class, and a
    dataclass's generated methods for these sixty fields cost over a millisecond of it.
    :meth:`as_dict` is what :func:`dataclasses.asdict` returned; nothing compares or prints
    these (identity equality, the default repr, as with ``eq=False, repr=False`` before).
    """

    #: the fields, in order (what :meth:`as_dict` returns)
    FIELDS: tuple[str, ...] = (
        "image", "command", "name", "entrypoint", "env", "env_files", "workdir", "user", "group_add",
        "hostname", "tty", "interactive", "volumes", "mounts", "tmpfs", "image_volume", "read_only",
        "cap_add", "cap_drop", "privileged", "security_opt", "memory", "memory_swap", "memory_reservation",
        "cpus", "cpu_shares", "cpuset_cpus", "cpuset_mems", "pids_limit", "ulimits", "shm_size", "sysctls",
        "oom_score_adj", "labels", "annotations", "init", "restart", "pull", "network", "networks", "ports",
        "publish_all", "ip", "mac_address", "network_aliases", "dns", "dns_search", "dns_option", "add_host",
        "no_hosts", "pod", "is_infra", "ipc", "uts", "pid", "cgroup_parent", "rm", "stop_signal",
        "stop_timeout", "create_command",
    )

    def __init__(
        self,
        image: str,
        command: list[str] | None = None,
        name: str | None = None,
        entrypoint: str | list[str] | None = None,
        env: list[str] = FRESH,
        env_files: list[str] = FRESH,
        workdir: str | None = None,
        user: str | None = None,
        group_add: list[str] = FRESH,
        hostname: str | None = None,
        tty: bool = False,
        interactive: bool = False,
        volumes: list[str] = FRESH,
        mounts: list[str] = FRESH,
        tmpfs: list[str] = FRESH,
        #: --image-volume: what the image's VOLUME paths get (bind: anonymous volumes, tmpfs,
        #: ignore); None: the config's image_volume_mode (stored resolved)
        image_volume: str | None = None,
        read_only: bool = False,
        cap_add: list[str] = FRESH,
        cap_drop: list[str] = FRESH,
        privileged: bool = False,
        security_opt: list[str] = FRESH,
        memory: str | None = None,
        memory_swap: str | None = None,
        memory_reservation: str | None = None,
        cpus: str | None = None,
        cpu_shares: int | None = None,
        cpuset_cpus: str | None = None,
        cpuset_mems: str | None = None,
        pids_limit: int | None = None,
        ulimits: list[str] = FRESH,
        shm_size: str | None = None,
        sysctls: dict[str, str] = FRESH,
        oom_score_adj: int | None = None,
        labels: dict[str, str] = FRESH,
        annotations: dict[str, str] = FRESH,
        init: bool = False,
        restart: str = "no",
        pull: str = "missing",
        network: str | None = None,
        #: network name -> per-network options (bridge networking; used by a network provider)
        networks: dict[str, dict[str, Any]] = FRESH,
        #: port mappings: dicts with host_ip, host_port, container_port, protocol
        ports: list[dict[str, Any]] = FRESH,
        # networking and pods (libpod_core.network, libpod_core.pods)
        publish_all: bool = False,                 #: -P: the image's ExposedPorts on free host ports
        ip: str | None = None,
        mac_address: str | None = None,
        network_aliases: list[str] = FRESH,       #: --network-alias (DNS names)
        dns: list[str] = FRESH,
        dns_search: list[str] = FRESH,
        dns_option: list[str] = FRESH,
        add_host: list[str] = FRESH,
        no_hosts: bool = False,
        pod: str | None = None,                    #: pod name or ID (stored as the ID)
        is_infra: bool = False,                    #: the pod's infra container
        #: ipc/uts/pid namespace: None (private), "host", "ns:PATH" or "container:ID"
        ipc: str | None = None,
        uts: str | None = None,
        pid: str | None = None,
        cgroup_parent: str | None = None,          #: default /kpod
        rm: bool = False,
        stop_signal: str | None = None,
        stop_timeout: int | None = None,
        create_command: list[str] = FRESH,
    ) -> None:
        self.image = image
        self.command = command
        self.name = name
        self.entrypoint = entrypoint
        self.env = [] if env is FRESH else env
        self.env_files = [] if env_files is FRESH else env_files
        self.workdir = workdir
        self.user = user
        self.group_add = [] if group_add is FRESH else group_add
        self.hostname = hostname
        self.tty = tty
        self.interactive = interactive
        self.volumes = [] if volumes is FRESH else volumes
        self.mounts = [] if mounts is FRESH else mounts
        self.tmpfs = [] if tmpfs is FRESH else tmpfs
        self.image_volume = image_volume
        self.read_only = read_only
        self.cap_add = [] if cap_add is FRESH else cap_add
        self.cap_drop = [] if cap_drop is FRESH else cap_drop
        self.privileged = privileged
        self.security_opt = [] if security_opt is FRESH else security_opt
        self.memory = memory
        self.memory_swap = memory_swap
        self.memory_reservation = memory_reservation
        self.cpus = cpus
        self.cpu_shares = cpu_shares
        self.cpuset_cpus = cpuset_cpus
        self.cpuset_mems = cpuset_mems
        self.pids_limit = pids_limit
        self.ulimits = [] if ulimits is FRESH else ulimits
        self.shm_size = shm_size
        self.sysctls = {} if sysctls is FRESH else sysctls
        self.oom_score_adj = oom_score_adj
        self.labels = {} if labels is FRESH else labels
        self.annotations = {} if annotations is FRESH else annotations
        self.init = init
        self.restart = restart
        self.pull = pull
        self.network = network
        self.networks = {} if networks is FRESH else networks
        self.ports = [] if ports is FRESH else ports
        self.publish_all = publish_all
        self.ip = ip
        self.mac_address = mac_address
        self.network_aliases = [] if network_aliases is FRESH else network_aliases
        self.dns = [] if dns is FRESH else dns
        self.dns_search = [] if dns_search is FRESH else dns_search
        self.dns_option = [] if dns_option is FRESH else dns_option
        self.add_host = [] if add_host is FRESH else add_host
        self.no_hosts = no_hosts
        self.pod = pod
        self.is_infra = is_infra
        self.ipc = ipc
        self.uts = uts
        self.pid = pid
        self.cgroup_parent = cgroup_parent
        self.rm = rm
        self.stop_signal = stop_signal
        self.stop_timeout = stop_timeout
        self.create_command = [] if create_command is FRESH else create_command

    def as_dict(self) -> dict[str, Any]:
        """The fields as a new dict, values deep-copied (:func:`dataclasses.asdict`)."""
        return {name: plain_copy(getattr(self, name)) for name in self.FIELDS}

    def copy(self) -> "CreateOptions":
        """A deep copy (what :func:`copy.deepcopy` makes, without importing :mod:`copy`
        for plain values)."""
        new = object.__new__(type(self))
        new.__dict__.update((k, plain_copy(v)) for k, v in self.__dict__.items())
        return new


def parse_restart(policy: str | None) -> tuple[str, int]:
    """``no``/``always``/``unless-stopped``/``on-failure[:N]`` -> (name, max retries)."""
    text = (policy or "no").strip()
    name, sep, count = text.partition(":")
    if name not in RESTART_POLICIES or (sep and name != "on-failure"):
        raise InvalidArgument(f"invalid restart policy {text!r}: must be no, always, unless-stopped or on-failure[:N]")
    if sep:
        if not count.isdigit():
            raise InvalidArgument(f"invalid restart policy {text!r}: the retry count must be a number >= 0")
        return name, int(count)
    return name, 0


def parse_env_file(path: str) -> list[str]:
    """``--env-file``: KEY=VALUE lines; ``#`` comments and blank lines skipped; a bare KEY
    takes kpod's own value."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise InvalidArgument(f"env file {path}: {exc.strerror}") from None
    out = []
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, _ = line.partition("=")
        if not key or any(c.isspace() for c in key):
            raise InvalidArgument(f"env file {path} line {n}: invalid variable {line!r}")
        if not sep and key not in os.environ:
            continue
        out.append(line if sep else f"{key}={os.environ[key]}")
    return out


def parse_security_opts(opts: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"no_new_privileges": False, "seccomp": None}
    for raw in opts:
        so = raw.strip()
        key, sep, value = so.replace(":", "=", 1).partition("=") if "=" in so or ":" in so else (so, "", "")
        if key == "no-new-privileges":
            if not sep or value in ("true", "1"):
                out["no_new_privileges"] = True
            elif value in ("false", "0"):
                out["no_new_privileges"] = False
            else:
                raise InvalidArgument(f"invalid --security-opt {raw!r}: no-new-privileges takes true or false")
        elif key == "seccomp" and sep and value:
            out["seccomp"] = value
        elif key in ("label", "apparmor") and sep and value in ("disable", "unconfined"):
            continue  # no SELinux/AppArmor confinement is applied by kpod
        else:
            raise InvalidArgument(
                f"invalid --security-opt {raw!r}: expected no-new-privileges, seccomp=unconfined or seccomp=PROFILE.json"
            )
    return out


_ADJ = ("admiring", "brave", "clever", "dazzling", "eager", "festive", "gallant", "happy", "jolly", "keen",
        "loving", "modest", "nifty", "optimistic", "peaceful", "quirky", "relaxed", "serene", "trusting",
        "upbeat", "vibrant", "wizardly", "youthful", "zealous", "bold", "calm", "charming", "elegant")
_NOUN = ("hopper", "lovelace", "turing", "ritchie", "thompson", "torvalds", "knuth", "dijkstra", "liskov",
         "hamilton", "curie", "noether", "shannon", "babbage", "goldberg", "kernighan", "mccarthy", "perlman",
         "wozniak", "allen", "backus", "cerf", "engelbart", "feynman", "lamport", "milner", "pike", "stallman")


def random_name() -> str:
    return f"{_choice(_ADJ)}_{_choice(_NOUN)}"


def _config_with(config, **values):
    """A copy of a Config with some values replaced (another runtime for one container)."""
    import copy

    new = copy.copy(config)
    new.__dict__["_values"] = dict(config.__dict__["_values"])
    new.__dict__["_sources"] = dict(config.__dict__["_sources"])
    new.__dict__["files"] = list(config.__dict__["files"])
    new.merge(values, "container")
    return new


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        _shutil().rmtree(path, ignore_errors=True)




# ---------------------------------------------------------------------------------------
# the manager: rt.containers
# ---------------------------------------------------------------------------------------

class ContainerManager:
    """The containers of one store (``Runtime.containers``)."""

    def __init__(self, runtime) -> None:
        self.rt = runtime
        self.config = runtime.config
        self.db = runtime.db
        self._ensure_schema()
        self.graphroot = self.config.graphroot
        self.runroot = self.config.runroot
        self.static_root = os.path.join(self.graphroot, "containers")
        self.run_root = os.path.join(self.runroot, "containers")
        self.exit_dir = os.path.join(self.runroot, "exits")
        self.socket_dir = os.path.join(self.runroot, "socket")
        self.lock_dir = os.path.join(self.runroot, "locks")
        #: ``pull(name, policy) -> Image``; None until the image commands wire one in
        #: (``Runtime.pull_image`` is used when it exists).
        self.puller: Callable[[str, str], Any] | None = getattr(runtime, "pull_image", None)
        #: bridge networking: an object with ``setup(container) -> dict`` (returning at
        #: least ``{"netns": path}``) and ``teardown(container)``; None = only none/host.
        self.network_provider = getattr(runtime, "container_network_provider", None)
        self._runtime_hooks: dict[str, Any] = {}
        if self.db.one("SELECT 1 FROM operations LIMIT 1"):
            self.images.cleanup_leftovers()  # the store removes what killed commands left


    def _ensure_schema(self) -> None:
        if getattr(self.db, "_kpod_containers_schema", False):
            return
        have = {r["area"]: r["version"] for r in self.db.read("SELECT area, version FROM schema_versions")}
        if have.get("containers", 0) < SCHEMA_VERSION or "images" not in have or \
                "container_dependencies" not in have:
            self.db._migrate()  # the database was opened before this module registered its schema
        self.db._kpod_containers_schema = True

    # -- plumbing -----------------------------------------------------------------------
    @property
    def images(self):
        return self.rt.images

    @property
    def storage(self):
        self.rt.plugins.driver("storage")
        return self.rt.hook

    def runtime_name(self) -> str:
        self.rt.plugins.driver("runtime")
        return self.rt.plugins.driver_name("runtime")

    def runtime_hook(self, name: str | None = None):
        """The hook relay whose runtime driver is *name* (the container's own runtime)."""
        current = self.runtime_name()
        if name is None or name == current:
            return self.rt.hook
        if name not in self._runtime_hooks:
            from .plugins import PluginManager

            pm = PluginManager(_config_with(self.config, runtime=name))
            pm.driver("runtime")
            self._runtime_hooks[name] = pm.hook
        return self._runtime_hooks[name]

    def event(self, name: str, container: "Container") -> None:
        """Record a lifecycle event in the events log (:mod:`libpod_core.events`) and tell
        general plugins about it (never fatal)."""
        from .events import container as record

        record(self.config, name, container)
        try:
            self.rt.plugins.load_general()
            self.rt.hook.container_event(event=name, container=container.summary())
        except Exception as exc:  # noqa: BLE001 - documented: plugin failures are logged
            log.warning("container_event %s for %s: %s", name, container.id[:12], exc)

    def exit_command(self, container: "Container") -> list[str]:
        """``kpod <global args> container cleanup [--rm] ID`` for conmon's --exit-command,
        run as ``python -P -m libpod_core.exitcmd <those args>`` by the interpreter running
        this kpod (which can import this libpod_core): that entry point returns at once when
        the container is already gone (run --rm, rm -f) without a whole kpod start-up."""
        if sys.executable and os.path.isabs(sys.executable):
            prefix = [sys.executable, "-P", "-m", "libpod_core.exitcmd"]
        else:  # an embedding interpreter without a known executable: the kpod script
            kpod = _shutil().which("kpod") or "/usr/bin/kpod"
            prefix = [kpod]
        cfg = self.config
        args = [*prefix, "--root", cfg.graphroot, "--runroot", cfg.runroot, "--runtime", container.runtime,
                "--storage-driver", cfg.storage_driver]
        for opt in cfg.storage_opts:
            args += ["--storage-opt", opt]
        from .config import SYSTEM_CONFIG, user_config_path

        for f in cfg.files:
            if f not in (SYSTEM_CONFIG, user_config_path()):
                args += ["--config", f]
        if cfg.conmon_path:
            args += ["--conmon", self.conmon_path()]
        args += ["--cni-config-dir", cfg.cni_config_dir, "--network-backend", cfg.network_backend]
        for d in cfg.hooks_dirs:
            args += ["--hooks-dir", d]
        args += ["--log-level", cfg.log_level]
        args += ["container", "cleanup"]
        if container.config.get("rm"):
            args.append("--rm")
        args.append(container.id)
        return args

    def conmon_path(self) -> str:
        return self.config.find_executable(self.config.conmon_path, "conmon", "conmon_path")

    # -- lookup -------------------------------------------------------------------------
    # containers whose create is still in progress (their layer is owned by an operation)
    # are not visible yet
    _VISIBLE = "layer_id NOT IN (SELECT id FROM layers WHERE owner IS NOT NULL)"

    def _rows(self, where: str = "", params: tuple = ()) -> list[sqlite3.Row]:
        cond = f"WHERE {self._VISIBLE}"
        if where.startswith("WHERE "):
            cond += " AND " + where[6:]
        elif where:
            cond += " " + where
        return self.db.read(f"SELECT * FROM containers {cond}", params)

    def get(self, name_or_id: str) -> "Container":
        """By full ID, name, or unique ID prefix."""
        from .state import find_by_name_or_id

        row = find_by_name_or_id(self._rows, name_or_id, "container")
        return Container(self, row)

    def exists(self, name_or_id: str) -> bool:
        try:
            self.get(name_or_id)
            return True
        except NotFound:
            return False

    def list(self) -> list["Container"]:
        return [Container(self, r) for r in self._rows("ORDER BY created_at DESC")]

    def latest(self) -> "Container":
        rows = self._rows("ORDER BY created_at DESC LIMIT 1")
        if not rows:
            raise NotFound("no containers to act on (--latest)")
        return Container(self, rows[0])

    def dependents(self, cid: str) -> list[str]:
        """IDs of the containers that join container *cid*'s namespaces, oldest first."""
        rows = self.db.read("SELECT d.container_id FROM container_dependencies AS d JOIN containers AS c "
                            "ON c.id = d.container_id WHERE d.depends_on = ? ORDER BY c.created_at", (cid,))
        return [r[0] for r in rows]

    def dependencies(self, cid: str) -> list[str]:
        """IDs of the containers whose namespaces container *cid* joins (inspect's Dependencies)."""
        return [r[0] for r in self.db.read("SELECT depends_on FROM container_dependencies WHERE container_id = ?",
                                           (cid,))]

    def recorded_exit(self, cid: str) -> tuple[int, bool] | None:
        row = self.db.one("SELECT exit_code, oom_killed FROM container_exits WHERE id = ?", (cid,))
        return (row["exit_code"], bool(row["oom_killed"])) if row else None

    # -- images -------------------------------------------------------------------------
    def resolve_image(self, name: str, policy: str = "missing"):
        """The image for *name* under the pull *policy*; ``(image, stored name)``."""
        if policy not in PULL_POLICIES:
            raise InvalidArgument(f"invalid pull policy {policy!r}: must be always, missing, never or newer")
        store = self.images
        img = None if policy == "always" and self.puller else store.find(name)
        if img is None:
            if policy == "never" or self.puller is None:
                raise NotFound(f"{name}: image not known")
            img = self.puller(name, policy)
        shown = img.id
        try:
            candidates = store.name_candidates(name)
        except KpodError:
            candidates = []
        for cand in candidates:
            if cand in img.names:
                shown = cand
                break
        else:
            if img.names and not img.id.startswith(name.replace("sha256:", "")):
                shown = img.names[0]
        return img, shown

    # -- create -------------------------------------------------------------------------
    def create(self, opts: CreateOptions, *, keep_mounted: bool = False) -> "Container":
        """Create a container: its read-write layer, its row and its OCI spec, all or nothing.

        The layer and the row are made under one store operation that finishes only when
        everything exists; a kill -9 in between leaves rows the next command removes.
        """
        from . import specgen

        opts = opts.copy()
        # cheap validation first: nothing is created for bad input
        if opts.name is not None and not NAME_RE.match(opts.name):
            raise InvalidArgument(f"invalid container name {opts.name!r}: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*")
        policy, max_retries = parse_restart(opts.restart)
        if opts.rm and policy != "no":
            raise InvalidArgument('the --rm option conflicts with --restart, when the restart policy is not "" and "no"')
        if opts.memory not in (None, ""):
            specgen.parse_size(opts.memory, what="memory")
        if opts.image_volume is not None:
            specgen.check_image_volume_mode(opts.image_volume)
        vol_uses = self._volume_uses(opts)
        secopts = parse_security_opts(opts.security_opt)
        env_from_files: list[str] = []
        for path in opts.env_files:
            env_from_files += parse_env_file(path)
        self._namespace_modes(opts)
        net_mode = self._network_mode(opts)
        for u in opts.ulimits:
            specgen.parse_ulimit(u)
        if opts.stop_signal:
            from .oci import signal_number

            try:
                signal_number(opts.stop_signal)
            except ValueError as exc:
                raise InvalidArgument(str(exc)) from None

        img, image_name = self.resolve_image(opts.image, opts.pull)
        image_config = img.config
        opts.image_volume = specgen.check_image_volume_mode(opts.image_volume or self.config.image_volume_mode)
        image_vol_paths = specgen.image_volume_paths(image_config)
        covered = specgen.user_mount_destinations(opts.volumes, opts.tmpfs, opts.mounts)
        image_vols = [p for p in image_vol_paths if p not in covered] if opts.image_volume != "ignore" else []
        if hasattr(self.network_provider, "resolve_ports"):
            self.network_provider.resolve_ports(opts, image_config)
        inner = image_config.get("config") or {}
        if not opts.stop_signal and inner.get("StopSignal"):
            opts.stop_signal = inner["StopSignal"]
        runtime = self.runtime_name()
        store = self.images
        cid = _token_hex(32)
        anon_vols = []
        if opts.image_volume == "bind":
            for dest in image_vols:
                vname = _token_hex(32)
                anon_vols.append({"name": vname, "destination": dest,
                                  "source": os.path.join(self.static_root, cid, "volumes", vname, "_data")})
        # -v /dst and --mount type=volume without a source: anonymous volumes like the image's
        for u in vol_uses:
            if u["name"] is None:
                vname = _token_hex(32)
                anon_vols.append({"name": vname, "destination": u["destination"], "options": u["options"],
                                  "copy": u["copy"],
                                  "source": os.path.join(self.static_root, cid, "volumes", vname, "_data")})
        named = [u for u in vol_uses if u["name"] is not None]
        vm = self.rt.volumes if named else None
        made_volumes = vm.ensure([u["name"] for u in named]) if vm is not None else []
        named = [{"name": u["name"], "destination": u["destination"], "options": u["options"], "copy": u["copy"],
                  "source": vm.get_exact(u["name"]).mountpoint} for u in named]
        lock = FileLock(container_lock_path(self.runroot, cid))
        lock.acquire(exclusive=True)
        op = None
        row_made = False
        c: Container | None = None
        try:
            with store.shared():
                op = store.operation(f"create container {cid[:12]}")
                layer = store.create_layer(op, img.top_layer, None, kind="container")
                conf = opts.as_dict()
                conf.update(env_from_files=env_from_files, network_mode=net_mode, restart_policy=policy,
                            restart_max=max_retries, image_id=img.id, image_volumes=image_vol_paths,
                            anonymous_volumes=anon_vols, named_volumes=named)
                now = time.time()
                for attempt in range(20):
                    name = opts.name or random_name() + ("" if attempt < 5 else f"_{_token_hex(2)}")
                    try:
                        with self.db.write() as tx:
                            tx.execute(
                                "INSERT INTO containers(id, name, image_id, image_name, layer_id, config, runtime, status, "
                                "created_at, restart_policy, restart_max" + (", pod_id" if opts.pod else "") + ") "
                                "VALUES(?,?,?,?,?,?,?,?,?,?,?" + (",?" if opts.pod else "") + ")",
                                (cid, name, img.id, image_name, layer["id"], json.dumps(conf), runtime, "configured",
                                 now, policy, max_retries) + ((opts.pod,) if opts.pod else ()),
                            )
                            _record_dependencies(tx, cid, conf)
                            if named:
                                vm.record_uses(tx, cid, named)
                        break
                    except sqlite3.IntegrityError as exc:
                        gone = [u["name"] for u in named if not vm.exists(u["name"])] if named else []
                        if gone:  # removed by another process since ensure()
                            raise NotFound(f'no volume with name "{gone[0]}" found: no such volume') from None
                        if "name" not in str(exc):
                            raise
                        if opts.name:
                            other = self.db.one("SELECT id FROM containers WHERE name = ?", (name,))
                            raise AlreadyExists(
                                f'creating container storage: the container name "{name}" is already in use by '
                                f'{other["id"] if other else "another container"}. You have to remove that container '
                                "to be able to reuse that name: that name is already in use"
                            ) from None
                else:
                    raise KpodError("could not pick a free random container name")
                row_made = True
                c = Container(self, self.db.one("SELECT * FROM containers WHERE id = ?", (cid,)))
                c._lock_depth = 1  # we hold its lock
                c._lock = lock
                os.makedirs(c.static_dir, mode=0o700, exist_ok=True)
                # A plain create needs of the rootfs only the image's /etc/passwd and /etc/group,
                # which the store keeps after the first create from an image: no mount then
                # (podman's create mounts nothing either). run keeps its mount for start;
                # image volumes are filled from the rootfs.
                user_files = None if keep_mounted or anon_vols else store.image_user_files(img.top_layer)
                rootfs = None
                if user_files is None:
                    rootfs = c.mount(read_only_use=not keep_mounted)
                    user_files = specgen.read_user_files(rootfs)
                    store.save_image_user_files(img.top_layer, user_files)
                c.write_etc_files()
                vol_mounts = [specgen.image_volume_mount(v["destination"], "bind", v["source"])
                              for v in anon_vols if "options" not in v]
                if opts.image_volume == "tmpfs":
                    vol_mounts = [specgen.image_volume_mount(p, "tmpfs") for p in image_vols]
                # the user's volumes are user mounts (a duplicate destination is an error)
                user_vol_mounts = [{"destination": v["destination"], "type": "bind", "source": v["source"],
                                    "options": v["options"]} for v in [*anon_vols, *named] if "options" in v]
                spec = self._generate_spec(c, opts, secopts, env_from_files, image_config, rootfs, vol_mounts,
                                           user_vol_mounts, user_files)
                user = spec["process"]["user"]
                for v in anon_vols:
                    fill_volume(rootfs, v["destination"], v["source"], (user["uid"], user["gid"]),
                                copy=v.get("copy", True), what="image volume" if "options" not in v else "volume")
                write_atomic(c.spec_template, json.dumps(spec), 0o600)
                args = spec["process"]["args"]
                if opts.init:
                    args = args[2:]
                conf["args"] = args
                with self.db.write() as tx:
                    tx.execute("UPDATE containers SET spec_path = ?, config = ? WHERE id = ?",
                               (c.spec_template, json.dumps(conf), cid))
                c.reload()
                if not keep_mounted:
                    c.unmount()
                op.finish()
        except BaseException:
            if c is not None:
                try:
                    c.unmount()
                except Exception:  # noqa: BLE001
                    pass
                _shutil().rmtree(os.path.join(self.static_root, cid), ignore_errors=True)
                _shutil().rmtree(os.path.join(self.run_root, cid), ignore_errors=True)
            if row_made:
                with self.db.write() as tx:
                    tx.execute("DELETE FROM containers WHERE id = ?", (cid,))
            if op is not None:
                try:
                    op.abort()
                except Exception:  # noqa: BLE001 - the next command's leftover cleanup retries
                    pass
            if made_volumes:
                vm.discard(made_volumes)  # podman removes the volumes it made for a failed create
            lock.release()
            _unlink(lock.path)
            raise
        c._lock_depth = 0
        c._lock = None
        lock.release()
        self.event("create", c)
        return c

    def _volume_uses(self, opts: CreateOptions) -> list[dict[str, Any]]:
        """The volumes ``-v``/``--mount`` ask for (:func:`specgen.volume_use`), checked
        before anything exists: volume names, one volume per destination."""
        from . import specgen

        uses = specgen.split_user_mounts(opts.volumes, opts.mounts)[2]
        seen: set[str] = set()
        for u in uses:
            if u["name"] is not None:
                from .volumes import check_name

                check_name(u["name"])
            if u["destination"] in seen:
                raise InvalidArgument(f"duplicate mount destination {u['destination']}")
            seen.add(u["destination"])
        return uses

    def _namespace_modes(self, opts: CreateOptions) -> None:
        """Check ``--ipc``/``--uts``/``--pid``/``--cgroup-parent``; ``container:NAME`` becomes
        ``container:<ID>``: the container must exist, and is started (if it is not running)
        when this one starts, which joins its namespaces then (network.prepare_start), as
        podman and as ``--network container:NAME``."""
        from . import specgen

        if opts.cgroup_parent is not None:
            specgen.check_cgroup_parent(opts.cgroup_parent)
        for kind in ("ipc", "uts", "pid"):
            if getattr(opts, kind) is None:
                continue
            mode, ref = specgen.parse_namespace_flag(kind, getattr(opts, kind))
            if ref is not None:
                target = self.get(ref)
                mode = f"container:{target.id}"
                if kind == "uts":  # podman: the hostname of the container whose UTS namespace is shared
                    if opts.hostname and opts.hostname != target.hostname:
                        raise InvalidArgument("cannot set a hostname: the container shares the UTS namespace "
                                              f"of container {target.name}")
                    opts.hostname = target.hostname
            elif kind == "uts" and mode == "host":
                if opts.hostname and opts.hostname != os.uname().nodename:
                    raise InvalidArgument("cannot set the hostname when sharing the host's UTS namespace")
                opts.hostname = os.uname().nodename
            setattr(opts, kind, mode)

    def _network_mode(self, opts: CreateOptions) -> str:
        if hasattr(self.network_provider, "prepare_create"):
            return self.network_provider.prepare_create(self, opts)
        mode = (opts.network or ("bridge" if self.network_provider else "none")).strip()
        if mode in ("none", "host"):
            return mode
        if mode.startswith("ns:") or mode.startswith("container:"):
            raise InvalidArgument(f"network mode {mode!r} is not supported yet (use none or host)")
        if self.network_provider is None:
            raise InvalidArgument(
                f"network mode {mode!r} is not supported yet: no network backend is wired to containers "
                "(use --network none or host)"
            )
        if mode != "bridge" and mode not in opts.networks:
            opts.networks[mode] = {}
        return "bridge"

    def _generate_spec(self, c: "Container", opts: CreateOptions, secopts: dict, env_from_files: list[str],
                       image_config: dict, rootfs: str | None, image_volumes: list[dict] | tuple = (),
                       volume_mounts: list[dict] | tuple = (),
                       user_files: dict[str, str | None] | None = None) -> dict:
        """The OCI spec; *volume_mounts* are the OCI mounts of the ``-v``/``--mount`` volumes
        (resolved by ``create``: their host directories). *rootfs* None: not mounted, the user
        is resolved from *user_files* and init sets ``root.path``."""
        from . import specgen
        from .network import spec_namespaces

        net = c.config.get("network_mode", "none")
        binds, other_mounts, _uses = specgen.split_user_mounts(opts.volumes, opts.mounts)
        so = specgen.SpecOptions(
            command=opts.command,
            entrypoint=opts.entrypoint,
            env=[*env_from_files, *opts.env],
            workdir=opts.workdir,
            user=opts.user,
            group_add=opts.group_add,
            hostname=c.hostname,
            tty=opts.tty,
            stdin=opts.interactive,
            read_only=opts.read_only,
            cap_add=opts.cap_add,
            cap_drop=opts.cap_drop,
            privileged=opts.privileged,
            no_new_privileges=secopts["no_new_privileges"],
            seccomp=secopts["seccomp"],
            volumes=binds,
            mounts=[*other_mounts, *volume_mounts],
            tmpfs=opts.tmpfs,
            image_volumes=image_volumes,
            shm_size=opts.shm_size,
            hosts_file=None if opts.no_hosts else c.hosts_path,
            resolv_conf=c.resolv_path,
            hostname_file=c.hostname_path,
            memory=opts.memory,
            memory_swap=opts.memory_swap,
            memory_reservation=opts.memory_reservation,
            cpus=opts.cpus,
            cpu_shares=opts.cpu_shares,
            cpuset_cpus=opts.cpuset_cpus,
            cpuset_mems=opts.cpuset_mems,
            pids_limit=opts.pids_limit,
            ulimits=[*self.config.default_ulimits, *opts.ulimits],
            oom_score_adj=opts.oom_score_adj,
            cgroups_path=f"{(opts.cgroup_parent or CGROUP_PARENT).rstrip('/')}/{c.id}",
            **spec_namespaces(opts, net),
            sysctls=opts.sysctls,
            annotations=opts.annotations,
            init=opts.init,
            init_path=self.config.init_path if opts.init else None,
        )
        return specgen.generate_spec(so, image_config, rootfs, user_files)

    # -- maintenance --------------------------------------------------------------------
    def prune(self, matches: Callable[["Container"], bool] | None = None,
              errors: list[tuple[str, KpodError]] | None = None) -> list[str]:
        """``container prune``: remove every stopped container (never run, or exited) that
        *matches* accepts; returns their IDs. A pod's infra container stays (it goes with its
        pod), and so does a container others join (the newer ones go first). A removal that
        fails is appended to *errors* as (ID, error) when given, else raised."""
        removed = []
        is_infra = getattr(self.network_provider, "is_infra", None)
        for c in self.list():  # newest first: dependents before what they join
            if c.refresh() not in ("configured", "stopped", "exited"):
                continue  # running, paused, or "created" (handed to conmon, about to start)
            if is_infra is not None and is_infra(c):
                continue
            if matches is not None and not matches(c):
                continue
            if self.dependents(c.id):
                continue
            try:
                c.remove(force=False)
                removed.append(c.id)
            except NotFound:
                continue
            except KpodError as exc:
                if errors is None:
                    raise
                errors.append((c.id, exc))
        self.sweep()
        return removed

    def sweep(self) -> int:
        """Remove leftovers of killed commands: container layers without a container, and
        container directories without a row. Returns how many things were removed."""
        n = 0
        store = self.images
        rows = self.db.read(
            "SELECT id FROM layers WHERE kind = 'container' AND owner IS NULL AND "
            "id NOT IN (SELECT layer_id FROM containers WHERE layer_id IS NOT NULL)"
        )
        with store.shared():
            for r in rows:
                try:
                    store._delete_layer(r["id"])
                    n += 1
                except Exception as exc:  # noqa: BLE001
                    log.warning("removing leftover layer %s: %s", r["id"], exc)
        ids = {r["id"] for r in self.db.read("SELECT id FROM containers")}
        for base in (self.static_root, self.run_root):
            try:
                names = os.listdir(base)
            except FileNotFoundError:
                continue
            for d in names:
                if re.fullmatch(r"[0-9a-f]{64}", d) and d not in ids:
                    lock = FileLock(container_lock_path(self.runroot, d))
                    if not lock.acquire(blocking=False):
                        continue  # being created right now
                    try:
                        if self.db.one("SELECT 1 FROM containers WHERE id = ?", (d,)) is None:
                            _shutil().rmtree(os.path.join(base, d), ignore_errors=True)
                            n += 1
                    finally:
                        lock.release()
        cutoff = time.time() - EXIT_CODE_TTL
        with self.db.write() as tx:
            tx.execute("DELETE FROM container_exits WHERE finished_at < ?", (cutoff,))
        return n


def fill_volume(rootfs: str, dest: str, data: str, owner: tuple[int, int], *, chown: bool = True,
                copy: bool = True, what: str = "image volume") -> None:
    """Make the volume directory *data* (when missing) for the container path *dest* and
    copy up what the image has there (podman's copy-up): contents with their owners, modes
    and symlinks, the directory itself taking the image directory's owner and mode. *dest*
    is resolved inside *rootfs* (a symlink never leads out of it). A path the image lacks
    gives an empty volume owned by the container's user (*owner*); a path that is not a
    directory in the image is refused (a directory cannot be mounted over it). *chown*
    false keeps the directory's owner and mode, *copy* false copies nothing."""
    import stat as _stat
    import tempfile

    from .copyfiles import SafeRoot, extract_tar, write_tar

    os.makedirs(data, mode=0o755, exist_ok=True)
    with SafeRoot(rootfs) as src:
        try:
            fd = src.open_path(dest, follow=True)
        except (FileNotFoundError, NotADirectoryError):
            if chown:
                os.chown(data, *owner)
            return
        except OSError as exc:
            raise InvalidArgument(f"{what} {dest}: cannot resolve it in the image: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        if not _stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(f"{what} {dest} is not a directory in the image")
        if chown:
            os.chown(data, st.st_uid, st.st_gid)
            os.chmod(data, _stat.S_IMODE(st.st_mode))
        if not copy:
            return
        with tempfile.TemporaryFile() as spool, SafeRoot(data) as dst:
            write_tar(spool, src, dest, None)
            spool.seek(0)
            extract_tar(spool, dst, "/", overwrite=True)


# ---------------------------------------------------------------------------------------
# one container
# ---------------------------------------------------------------------------------------

class Container:
    """One container: its row, its paths and its lifecycle operations."""

    def __init__(self, mgr: ContainerManager, row: sqlite3.Row) -> None:
        self.mgr = mgr
        self._lock: FileLock | None = None
        self._lock_depth = 0
        self._inited_here = False
        self._load(row)

    def _load(self, row: sqlite3.Row) -> None:
        self.row = dict(row)
        self.id: str = row["id"]
        self.name: str = row["name"]
        self.config: dict[str, Any] = json.loads(row["config"])
        self.runtime: str = row["runtime"]

    def reload(self) -> None:
        row = self.mgr.db.one("SELECT * FROM containers WHERE id = ?", (self.id,))
        if row is None:
            raise NotFound(f'no container with name or ID "{self.id}" found: no such container')
        self._load(row)

    def __getattr__(self, name: str) -> Any:
        row = self.__dict__.get("row")
        if row is not None and name in row:
            return row[name]
        raise AttributeError(name)

    def __repr__(self) -> str:
        return f"<Container {self.id[:12]} {self.name} {self.row.get('status')}>"

    # -- paths --------------------------------------------------------------------------
    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def static_dir(self) -> str:
        return os.path.join(self.mgr.static_root, self.id)

    @property
    def rundir(self) -> str:
        return os.path.join(self.mgr.run_root, self.id)

    bundle = rundir

    @property
    def spec_template(self) -> str:
        return os.path.join(self.static_dir, "config.json")

    @property
    def log_path(self) -> str:
        return os.path.join(self.static_dir, "ctr.log")

    @property
    def exit_file(self) -> str:
        return os.path.join(self.mgr.exit_dir, self.id)

    @property
    def attach_path(self) -> str:
        # conmon binds the socket in the bundle; SOCKET_DIR/<ID> is only its short-path symlink,
        # whose name is not always the ID (conmon.attach_link)
        return os.path.join(self.bundle, "attach")

    @property
    def hostname(self) -> str:
        return self.config.get("hostname") or self.id[:12]

    @property
    def hosts_path(self) -> str:
        return os.path.join(self.rundir, "hosts")

    @property
    def resolv_path(self) -> str:
        return os.path.join(self.rundir, "resolv.conf")

    @property
    def hostname_path(self) -> str:
        return os.path.join(self.rundir, "hostname")

    @property
    def lock_path(self) -> str:
        return container_lock_path(self.mgr.runroot, self.id)

    # -- locking ------------------------------------------------------------------------
    @contextmanager
    def locked(self, timeout: float | None = 600.0) -> Iterator["Container"]:
        """Hold the container's flock and re-read its row (NotFound if it went away)."""
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield self
            finally:
                self._lock_depth -= 1
            return
        lock = FileLock(self.lock_path)
        lock.acquire(exclusive=True, timeout=timeout)
        self._lock, self._lock_depth = lock, 1
        try:
            self.reload()
            yield self
        finally:
            self._lock_depth = 0
            self._lock = None
            lock.release()

    # -- summaries ------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The container as plugins see it (events, OCI hooks)."""
        return {
            "id": self.id,
            "name": self.name,
            "image": self.row.get("image_name"),
            "image_id": self.row.get("image_id"),
            "labels": dict(self.config.get("labels") or {}),
            "annotations": dict(self.config.get("annotations") or {}),
            "command": list(self.config.get("args") or []),
            "status": self.row.get("status"),
            "config": dict(self.config),
        }

    # -- state ----------------------------------------------------------------------------
    def _runtime(self):
        return self.mgr.runtime_hook(self.runtime)

    def _update(self, **values: Any) -> None:
        cols = ", ".join(f"{k} = ?" for k in values)
        with self.mgr.db.write() as tx:
            tx.execute(f"UPDATE containers SET {cols} WHERE id = ?", (*values.values(), self.id))
        self.row.update(values)

    def _read_exit(self) -> tuple[int, bool, float] | None:
        code = _conmon().read_exit_file(self.exit_file)
        if code is None:
            code = _conmon().read_exit_file(os.path.join(self.rundir, "exit"))
            if code is None:
                return None
            path = os.path.join(self.rundir, "exit")
        else:
            path = self.exit_file
        try:
            when = os.stat(path).st_mtime
        except OSError:
            when = time.time()
        return code, os.path.exists(os.path.join(self.rundir, "oom")), when

    def observe(self) -> dict[str, Any]:
        """The current state without changing anything: ``status``, ``exit_code``,
        ``oom_killed``, ``finished_at``, plus ``anomaly`` when a locked :meth:`sync` must
        repair something (lost monitor, reboot)."""
        st = {"status": self.row["status"], "exit_code": self.row["exit_code"],
              "oom_killed": bool(self.row["oom_killed"]), "finished_at": self.row["finished_at"], "anomaly": None}
        if st["status"] not in ACTIVE and st["status"] != "stopped":
            return st
        if not os.path.isdir(self.rundir):
            st["anomaly"] = "reboot"
            if st["status"] == "created":
                st["status"] = "configured"
            else:
                st["status"] = "exited"
            return st
        if st["status"] == "stopped":
            return st
        ex = self._read_exit()
        if ex is not None:
            st.update(status="stopped", exit_code=ex[0], oom_killed=ex[1], finished_at=ex[2])
            return st
        if not _conmon().process_alive(self.row["conmon_pid"], self.id):
            ex = self._read_exit()
            if ex is not None:
                st.update(status="stopped", exit_code=ex[0], oom_killed=ex[1], finished_at=ex[2])
            else:
                st.update(status="stopped", exit_code=self.row["exit_code"], anomaly="monitor lost")
        return st

    def sync(self) -> str:
        """Bring the row up to date with reality (container lock held). Returns the status."""
        assert self._lock_depth, "sync() needs the container lock"
        st = self.observe()
        if st["status"] == self.row["status"] and not st["anomaly"]:
            return st["status"]
        if st["anomaly"] == "reboot":
            values = {"status": st["status"], "pid": 0, "conmon_pid": 0}
            if st["status"] == "exited" and self.row["status"] != "stopped":
                values.update(finished_at=self.row["finished_at"] or time.time())
                if self.row["exit_code"] is None:
                    values["exit_code"] = 255
            self._update(**values)
            return st["status"]
        if st["anomaly"] == "monitor lost":
            # conmon died without recording an exit: nobody holds this container's stdio or
            # will record its exit, so it is stopped for good (killed if still running).
            killed, state = False, None
            try:
                state = self._runtime().runtime_state(container_id=self.id)
                alive = bool(state) and state.get("status") in ("running", "paused", "created")
            except KpodError as exc:
                log.warning("%s: runtime state: %s", self.short_id, exc)
                alive = True  # unknown: make sure nothing of it keeps running
            if alive:
                self._kill_processes()
                killed = bool(state)
            ex = self._read_exit()
            if ex is not None:
                code, oom, when = ex
            else:
                # 137: kpod's SIGKILL ended it; -1: it had exited, with a code nobody
                # collected (podman's "exit file did not appear" code)
                code, oom, when = (137 if killed else -1), False, time.time()
            self._update(status="stopped", exit_code=code, oom_killed=int(oom), finished_at=when, pid=0,
                         error="conmon (the container's monitor) died; " + (
                             "the container was killed" if killed else "the container's exit code is unknown"))
            return "stopped"
        self._update(status=st["status"], exit_code=st["exit_code"], oom_killed=int(st["oom_killed"]),
                     finished_at=st["finished_at"])
        return st["status"]

    def state(self) -> str:
        """The observed status (no lock, no writes)."""
        return self.observe()["status"]

    def refresh(self) -> str:
        """Observed status; repairs anomalies under the lock when the lock is free."""
        st = self.observe()
        if not st["anomaly"]:
            return st["status"]
        lock = FileLock(self.lock_path)
        if not lock.acquire(exclusive=True, blocking=False):
            return st["status"]
        self._lock, self._lock_depth = lock, 1
        try:
            self.reload()
            return self.sync()
        except NotFound:
            return "removed"
        finally:
            self._lock_depth = 0
            self._lock = None
            lock.release()

    def observe_repaired(self) -> dict[str, Any]:
        """:meth:`observe` after :meth:`refresh` repaired an anomaly (a lost monitor is
        killed and its exit recorded first, so nothing reports a stale state or exit code).
        ``anomaly`` stays set when another process holds the lock. Raises NotFound when the
        container was removed meanwhile."""
        st = self.observe()
        if st["anomaly"]:
            self.refresh()
            self.reload()  # NotFound when it was removed meanwhile
            st = self.observe()
        return st

    # -- storage --------------------------------------------------------------------------
    def mount(self, read_only_use: bool = False) -> str:
        """Mount the rootfs once for this container (idempotent; lock held).
        *read_only_use*: the caller only reads through this mount and unmounts it again
        (``create`` reading /etc/passwd): it is volatile, so its unmount syncs nothing."""
        storage = self.mgr.storage
        if self.row["mounted"]:
            mp = storage.storage_mounted(layer_id=self.layer_id)
            if mp:
                return mp
            self._update(mounted=0)  # recorded but gone (reboot): take a fresh reference
        # a --rm container's layer does not outlive it (podman does the same), nor does a
        # pod's infra hold anything worth a sync: volatile, no syncs
        volatile = read_only_use or bool(self.config.get("rm") or self.config.get("is_infra"))
        path = storage.storage_mount(layer_id=self.layer_id, mount_label="", volatile=volatile)
        self._update(mounted=1, mount_point=path)
        return path

    def unmount(self, force: bool = False) -> None:
        if not self.row["mounted"] and not force:
            return
        self.mgr.storage.storage_unmount(layer_id=self.layer_id, force=force)
        self._update(mounted=0)

    # -- files ------------------------------------------------------------------------------
    def write_etc_files(self) -> None:
        if self.mgr.network_provider is not None:
            from .network import write_etc_files

            write_etc_files(self)  # with the container's IP, --add-host and --dns
            return
        os.makedirs(self.rundir, mode=0o700, exist_ok=True)
        net = self.config.get("network_mode", "none")
        hostname = self.hostname
        write_atomic(self.hostname_path, hostname + "\n")
        if net == "host":
            try:
                with open("/etc/hosts") as f:
                    hosts = f.read()
            except OSError:
                hosts = ""
            if hosts and not hosts.endswith("\n"):
                hosts += "\n"
            hosts += f"127.0.1.1\t{hostname} {self.name}\n"
        else:
            hosts = ("127.0.0.1\tlocalhost localhost.localdomain localhost4 localhost4.localdomain4\n"
                     "::1\tlocalhost localhost.localdomain localhost6 localhost6.localdomain6\n"
                     f"127.0.1.1\t{hostname} {self.name}\n")
        write_atomic(self.hosts_path, hosts)
        write_atomic(self.resolv_path, resolv_conf(net))

    # -- lifecycle ----------------------------------------------------------------------------
    def init(self, console_size: tuple[int, int] | None = None) -> None:
        """Prepare the bundle and hand the container to conmon (created, not started).
        *console_size* (rows, columns) sets the terminal size of a ``tty`` container."""
        with self.locked():
            status = self.sync()
            if status in ACTIVE:
                return
            if status == "stopped":
                self._cleanup_locked()
            if status in ("stopped", "exited"):
                self._teardown()
            self._init_locked(console_size)

    def _init_locked(self, console_size: tuple[int, int] | None = None) -> None:
        from .hooksdir import apply_hooks

        mgr = self.mgr
        for d in (mgr.exit_dir, mgr.socket_dir, self.static_dir):
            os.makedirs(d, mode=0o700, exist_ok=True)
        rootfs = self.mount()
        mounted_here = True
        try:
            self.write_etc_files()
            if self.config.get("named_volumes"):
                mgr.rt.volumes.prepare(self, rootfs)  # mounts with options; first use: chown, copy-up
            with open(self.spec_template) as f:
                spec = json.load(f)
            spec["root"]["path"] = os.path.realpath(rootfs)
            if console_size and spec["process"].get("terminal"):
                spec["process"]["consoleSize"] = {"height": int(console_size[0]), "width": int(console_size[1])}
            hook = self._runtime()
            if any(os.path.exists(os.path.join(self.rundir, f)) for f in ("pidfile", "conmon.pid", "exit")):
                # a previous init was interrupted (kpod killed): clear what it left running
                # (before the network setup: that conmon still holds the published ports)
                self._kill_conmon()
                try:
                    hook.runtime_delete(container_id=self.id, force=True)
                except KpodError as exc:
                    log.info("%s: removing stale runtime state: %s", self.short_id, exc)
            netns = None
            # the CNI ADD runs in the background while conmon and the runtime create the
            # container; finish_start waits for it before anything runs in the container
            finish_net = getattr(mgr.network_provider, "finish_start", None)
            if finish_net is not None:
                mgr.network_provider.prepare_start(self, spec, background=True)
            elif hasattr(mgr.network_provider, "prepare_start"):
                mgr.network_provider.prepare_start(self, spec)  # network setup, joined namespaces
            elif self.config.get("network_mode") == "bridge":
                netns = self._network_setup()
                for ns in spec["linux"]["namespaces"]:
                    if ns["type"] == "network":
                        ns["path"] = netns
            if self.config.get("is_infra") or (self.config.get("ipc") or "").startswith("container:"):
                from .pods import prepare_shm

                prepare_shm(self, spec)  # a pod's /dev/shm: the infra's, shared with its IPC namespace
            mgr.rt.plugins.load_general()
            apply_hooks(spec, self.summary(), dirs=mgr.config.hooks_dirs,
                        has_bind_mounts=bool(self.config.get("volumes")) or any(
                            "bind" in str(m) for m in self.config.get("mounts") or []),
                        plugin_hook=mgr.rt.hook)
            if finish_net is not None and spec.get("hooks"):
                finish_net(self)  # OCI hooks run during the runtime's create: they see the network up
            hook.runtime_prepare_spec(container_id=self.id, spec=spec)
            write_atomic(os.path.join(self.bundle, "config.json"), json.dumps(spec), 0o600)
            for p in (self.exit_file, os.path.join(self.rundir, "exit"), os.path.join(self.rundir, "oom"),
                      os.path.join(self.rundir, "pidfile"), os.path.join(self.rundir, "conmon.pid"),
                      _conmon().attach_link(mgr.socket_dir, self.id)):
                _unlink(p)
            path, gargs = hook.runtime_command()
            env = hook.runtime_env() or {}
            opts = _conmon().ConmonOptions(
                conmon_path=mgr.conmon_path(), container_id=self.id, name=self.name, runtime_path=path,
                runtime_args=list(gargs), bundle=self.bundle, pid_file=os.path.join(self.rundir, "pidfile"),
                conmon_pid_file=os.path.join(self.rundir, "conmon.pid"), log_path=self.log_path,
                exit_dir=mgr.exit_dir, persist_dir=self.rundir, socket_dir=mgr.socket_dir,
                exit_command=mgr.exit_command(self), tty=bool(self.config.get("tty")),
                stdin=bool(self.config.get("interactive")),
                log_level="debug" if mgr.config.log_level == "debug" else "warning", env=env,
            )
            port_fds = getattr(mgr.network_provider, "port_fds", None)
            if port_fds is not None:
                opts.extra_fds = port_fds(self)  # conmon holds the published host ports from now on
            try:
                pid, conmon_pid = _conmon().spawn(opts)
                if finish_net is not None:
                    finish_net(self)  # the network is up before the container's process starts
            except BaseException:
                self._kill_conmon()
                try:
                    hook.runtime_delete(container_id=self.id, force=True)
                except KpodError:
                    pass
                raise
            finally:
                if port_fds is not None:
                    mgr.network_provider.release_ports(self)
        except BaseException:
            if mounted_here:
                try:
                    self.unmount()
                except Exception:  # noqa: BLE001
                    pass
            if self.config.get("is_infra"):
                from .pods import release_shm

                release_shm(self)
            if self.config.get("network_mode") == "bridge":
                self._network_teardown()
            if self.config.get("named_volumes"):
                try:
                    mgr.rt.volumes.release(self)
                except Exception as exc:  # noqa: BLE001 - the next teardown retries
                    log.warning("%s: releasing volumes: %s", self.short_id, exc)
            _unlink(self.exit_file)
            raise
        self._update(status="created", pid=pid, conmon_pid=conmon_pid, exit_code=None, oom_killed=0,
                     finished_at=None, error=None, stopped_by_user=0)
        self._inited_here = True
        mgr.event("init", self)

    def start(self) -> None:
        """Start the container (initialising it first when needed)."""
        with self.locked():
            status = self.sync()
            if status == "running":
                return
            if status == "paused":
                raise ContainerStateError(f"cannot start paused container {self.id}: unpause it instead")
            if status == "stopped":
                self._cleanup_locked()
            if status in ("stopped", "exited"):
                self._teardown()
                status = "configured"
            if status == "configured":
                self._init_locked()
            elif status == "created" and not self._inited_here:
                # initialised by an earlier command: it may have been started by one that died
                state = self._runtime().runtime_state(container_id=self.id)
                if state is None or state.get("status") == "stopped":
                    self._kill_processes()
                    self._teardown(force=True)
                    self._update(status="configured", pid=0, conmon_pid=0)
                    self._init_locked()
                elif state.get("status") in ("running", "paused"):
                    self._update(status=state["status"], started_at=self.row["started_at"] or time.time())
                    return
            try:
                self._runtime().runtime_start(container_id=self.id)
            except KpodError:
                self._kill_processes()
                self._teardown()
                self._update(status="configured", pid=0, conmon_pid=0)
                raise
            self._update(status="running", started_at=time.time())
        self.mgr.event("start", self)

    def _wait_exit_file(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        delay = 0.0005  # a SIGKILLed process is gone in a moment
        while True:
            if os.path.exists(self.exit_file):
                return True
            if not _conmon().process_alive(self.row["conmon_pid"], self.id):
                return os.path.exists(self.exit_file)
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(delay, left))  # stop -t N kills at N seconds, not up to 50 ms later
            delay = min(delay * 2, 0.05)

    def stop(self, timeout: int | None = None) -> None:
        """SIGTERM (or the stop signal), then SIGKILL after *timeout* seconds."""
        if timeout is None:
            timeout = self.config.get("stop_timeout")
            timeout = DEFAULT_STOP_TIMEOUT if timeout is None else timeout
        with self.locked(timeout=timeout + 600):
            status = self.sync()
            if status in ("configured", "exited"):
                return
            if status in ACTIVE:
                self._update(stopped_by_user=1)
                rt = self._runtime()
                sig = self.config.get("stop_signal") or "TERM"
                try:
                    if status == "paused":
                        rt.runtime_kill(container_id=self.id, signal="KILL", all_processes=True)
                        rt.runtime_resume(container_id=self.id)
                    elif status == "running" and timeout > 0:
                        rt.runtime_kill(container_id=self.id, signal=sig, all_processes=False)
                except KpodError as exc:
                    log.info("%s: stop signal: %s", self.short_id, exc)
                if status == "created" or timeout <= 0 or not self._wait_exit_file(timeout):
                    self._kill_processes()
                    self._wait_exit_file(10)
                self.sync()
            self._cleanup_locked(event="stop")

    def _kill_processes(self) -> None:
        """SIGKILL every process of the container (through the runtime; failing that, the
        init process directly when /proc shows it is still this container's)."""
        try:
            rt = self._runtime()
        except KpodError as exc:
            log.warning("%s: runtime %s unavailable: %s", self.short_id, self.runtime, exc)
            rt = None
        if rt is not None:
            for all_procs in (True, False):
                try:
                    rt.runtime_kill(container_id=self.id, signal="KILL", all_processes=all_procs)
                    return
                except KpodError as exc:
                    log.info("%s: kill: %s", self.short_id, exc)
        pid = self.row["pid"]
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                ours = self.id in f.read()
        except (OSError, TypeError):
            ours = False
        if pid and ours:
            import signal as _signal  # (not at import: its enums cost half a millisecond)

            try:
                os.kill(pid, _signal.SIGKILL)
            except OSError:
                pass

    def kill(self, signal: str | int = "KILL") -> None:
        from .oci import signal_number

        try:
            signum = signal_number(signal)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        with self.locked():
            status = self.sync()
            if status not in ("running", "paused"):
                why = f" ({self.row['error']})" if self.row["error"] else ""  # a lost monitor
                raise ContainerStateError(
                    f"can only kill running containers. {self.id} is in state {display_state(status)}{why}")
            self._runtime().runtime_kill(container_id=self.id, signal=signum, all_processes=False)
        self.mgr.event("kill", self)

    def pause(self) -> None:
        with self.locked():
            status = self.sync()
            if status != "running":
                raise ContainerStateError(f'"{self.name}" is not running, can\'t pause: it is {display_state(status)}')
            self._runtime().runtime_pause(container_id=self.id)
            self._update(status="paused")
        self.mgr.event("pause", self)

    def unpause(self) -> None:
        with self.locked():
            status = self.sync()
            if status != "paused":
                raise ContainerStateError(f'"{self.name}" is not paused, can\'t unpause: it is {display_state(status)}')
            self._runtime().runtime_resume(container_id=self.id)
            self._update(status="running")
        self.mgr.event("unpause", self)

    def restart(self, timeout: int | None = None) -> None:
        with self.locked():
            if self.sync() in ACTIVE:
                self.stop(timeout)
            self._update(restart_count=0)
            self.start()

    def rename(self, new_name: str) -> None:
        if not NAME_RE.match(new_name or ""):
            raise InvalidArgument(f"invalid container name {new_name!r}: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*")
        with self.locked():
            try:
                self._update(name=new_name)
            except sqlite3.IntegrityError:
                raise AlreadyExists(f'the container name "{new_name}" is already in use: that name is already in use') from None
            self.name = new_name
        self.mgr.event("rename", self)

    # -- cleanup and removal ------------------------------------------------------------------
    def _conmon_pids(self) -> list[int]:
        """Live conmon processes of this container (the recorded one and the pid file's)."""
        pids = {self.row["conmon_pid"], _conmon().read_pid(os.path.join(self.rundir, "conmon.pid"))}
        return [p for p in pids if p and _conmon().process_alive(p, self.id)]

    def _kill_conmon(self) -> None:
        import signal as _signal

        for pid in self._conmon_pids():
            try:
                os.kill(pid, _signal.SIGKILL)
            except OSError:
                pass

    def _teardown(self, force: bool = False) -> list[str]:
        """Release what a run held: runtime state, rootfs mount, network, socket link.
        With *force* errors are collected instead of raised."""
        errors: list[str] = []

        def attempt(what: str, fn: Callable[[], Any]) -> None:
            try:
                fn()
            except Exception as exc:  # noqa: BLE001
                if not force:
                    raise
                errors.append(f"{what}: {exc}")

        if force:
            attempt("kill conmon", self._kill_conmon)
        net_done = None
        if self.config.get("network_mode") == "bridge":
            begin = getattr(self.mgr.network_provider, "teardown_begin", None)
            if begin is None:
                net_done = self._network_teardown
            else:
                try:
                    net_done = begin(self)  # the CNI DEL runs while the runtime state and the mount go
                except Exception as exc:  # noqa: BLE001
                    if not force:
                        raise
                    errors.append(f"network teardown: {exc}")
        try:
            attempt("runtime delete", lambda: self._runtime().runtime_delete(container_id=self.id, force=True))
            attempt("unmount", lambda: self.unmount(force=force))
            if self.config.get("named_volumes"):
                attempt("release volumes", lambda: self.mgr.rt.volumes.release(self))
            if self.config.get("is_infra"):
                from .pods import release_shm

                attempt("unmount shm", lambda: release_shm(self))
        finally:
            if net_done is not None:
                attempt("network teardown", net_done)
        _unlink(_conmon().attach_link(self.mgr.socket_dir, self.id))
        if not errors:
            # the run is over: its pid files no longer mean anything (see _init_locked)
            for f in ("pidfile", "conmon.pid", "exit", "oom"):
                _unlink(os.path.join(self.rundir, f))
        return errors

    def _cleanup_locked(self, event: str | None = None) -> None:
        status = self.row["status"]
        if status not in ("stopped", "exited"):
            return
        self._teardown()
        code = self.row["exit_code"]
        values: dict[str, Any] = {"status": "exited", "pid": 0}
        if not self.row["finished_at"]:
            values["finished_at"] = time.time()
        self._update(**values)
        _unlink(self.exit_file)
        if status == "stopped":
            self._record_exit(code if code is not None else 255, bool(self.row["oom_killed"]))
            self.mgr.event("died", self)
        if event:
            self.mgr.event(event, self)

    def _record_exit(self, code: int, oom: bool) -> None:
        with self.mgr.db.write() as tx:
            tx.execute("DELETE FROM container_exits WHERE finished_at < ?", (time.time() - EXIT_CODE_TTL,))
            tx.execute(
                "INSERT INTO container_exits(id, name, exit_code, oom_killed, finished_at) VALUES(?,?,?,?,?) "
                "ON CONFLICT(id) DO UPDATE SET exit_code = excluded.exit_code, oom_killed = excluded.oom_killed, "
                "finished_at = excluded.finished_at",
                (self.id, self.name, code, int(oom), self.row["finished_at"] or time.time()),
            )

    def cleanup(self, remove: bool = False) -> None:
        """conmon's exit command: record the exit, release resources, then ``--rm`` or the
        restart policy."""
        with self.locked():
            status = self.sync()
            if status not in ("stopped", "exited"):
                return
            self._cleanup_locked()
            if remove or self.config.get("rm"):
                if self.mgr.dependents(self.id):  # kept, exited, until they go (rm --depend)
                    log.info("%s: not removed: other containers join its namespaces", self.short_id)
                    return
                self._remove_locked(force=True)
                return
            if self._should_restart():
                count = self.row["restart_count"] + 1
                time.sleep(min(0.1 * (2 ** min(count - 1, 6)), 2.0))
                self._update(restart_count=count)
                self.start()

    def _should_restart(self) -> bool:
        policy = self.row["restart_policy"]
        if policy == "no" or self.row["stopped_by_user"]:
            return False
        if policy in ("always", "unless-stopped"):
            return True
        if policy == "on-failure":
            code = self.row["exit_code"]
            if not code:
                return False
            mx = self.row["restart_max"]
            return mx == 0 or self.row["restart_count"] < mx
        return False

    def remove(self, force: bool = False, volumes: bool = False, timeout: int | None = None,
               depend: bool = False) -> list[str]:
        """Remove the container. With *force* a running (or half-created, or crashed)
        container is killed and removed whatever state it is in. Containers that join its
        namespaces refuse the removal, *force* or not (podman's rule), unless *depend*
        removes them first, recursively. Returns the IDs removed, dependents first."""
        if hasattr(self.mgr.network_provider, "check_remove"):
            self.mgr.network_provider.check_remove(self)  # a pod's infra goes with its pod
        removed: list[str] = []
        if depend:
            for dep in self.mgr.dependents(self.id):
                try:
                    removed += self.mgr.get(dep).remove(force=force, volumes=volumes, timeout=timeout, depend=True)
                except NotFound:
                    continue
        with self.locked():
            try:
                status = self.sync()
            except Exception as exc:  # noqa: BLE001
                if not force:
                    raise
                log.warning("%s: reading state: %s", self.short_id, exc)
                status = "unknown"
            if status in ACTIVE and not force:
                raise ContainerStateError(
                    f"cannot remove container {self.id} as it is {display_state(status)} - running or paused "
                    "containers cannot be removed without force",
                    exit_code=2,
                )
            self._check_dependents()  # before anything is stopped
            if status in ACTIVE:
                try:
                    self.stop(timeout or 0)
                except Exception as exc:  # noqa: BLE001 - whatever is left, removal kills it
                    log.warning("%s: stop: %s", self.short_id, exc)
                    try:
                        self.reload()
                    except NotFound:
                        return removed + [self.id]
            self._remove_locked(force=True)
        return removed + [self.id]

    def _check_dependents(self) -> None:
        deps = self.mgr.dependents(self.id)
        if deps:
            raise InUse(f"container {self.id} has dependent containers which must be removed before it: "
                        f"{', '.join(deps)}")

    def _remove_locked(self, force: bool) -> None:
        self._check_dependents()
        status = self.row["status"]
        if status in ACTIVE:
            self._kill_processes()
        errors = self._teardown(force=True)
        for e in errors:
            log.info("%s: removing: %s", self.short_id, e)
        if status in ACTIVE or status == "stopped":
            st = self.observe()
            self._record_exit(st["exit_code"] if st["exit_code"] is not None else 137, bool(st["oom_killed"]))
            self.mgr.event("died", self)  # no cleanup ran (run --rm, rm -f): the exit is news here
        store = self.mgr.images
        try:
            with self.mgr.db.write() as tx:
                tx.execute("DELETE FROM containers WHERE id = ?", (self.id,))
        except sqlite3.IntegrityError:  # a dependent created since the check (foreign key)
            self._check_dependents()
            raise
        try:
            with store.shared():
                store._delete_layer(self.layer_id)
        except Exception as exc:  # noqa: BLE001 - the layer row is swept later (container prune)
            log.warning("%s: removing layer %s: %s", self.short_id, self.layer_id, exc)
        _shutil().rmtree(self.rundir, ignore_errors=True)
        _shutil().rmtree(self.static_dir, ignore_errors=True)
        _unlink(self.exit_file)
        _unlink(_conmon().attach_link(self.mgr.socket_dir, self.id))
        self.row["status"] = "removed"
        self.mgr.event("remove", self)
        if self._lock is not None:
            _unlink(self._lock.path)

    # -- waiting ----------------------------------------------------------------------------
    def wait(self, conditions: Sequence[str] = ("stopped",), interval: float = 0.05,
             timeout: float | None = None) -> int:
        """Block until the container reaches one of *conditions* (``stopped``/``exited``
        wait for the process to exit). Returns the exit code (or -1 for other conditions)."""
        wanted = set()
        for cond in conditions:
            cond = cond.strip().lower()
            if cond in ("stopped", "exited"):
                wanted |= {"stopped", "exited"}
            elif cond in ("configured", "created"):
                wanted |= {"configured", "created"}
            elif cond == "initialized":  # podman's name of a created container the runtime holds
                wanted.add("created")
            elif cond in ("running", "paused"):
                wanted.add(cond)
            else:
                raise InvalidArgument(f"invalid condition {cond!r}: expected created, initialized, running, paused, "
                                      "stopped or exited")
        deadline = None if timeout is None else time.monotonic() + timeout
        # run's wait starts as the process exits: conmon writes the exit file a moment later
        delay = 0.0005
        while True:
            try:
                self.reload()
            except NotFound:
                rec = self.mgr.recorded_exit(self.id)
                if rec is not None and wanted & {"stopped", "exited"}:
                    return rec[0]
                raise
            try:
                st = self.observe_repaired()
            except NotFound:
                continue  # removed meanwhile: its recorded exit code (above)
            if st["status"] in wanted and not st["anomaly"]:  # else another process is repairing it
                if st["status"] in ("stopped", "exited"):
                    code = st["exit_code"]
                    return code if code is not None else -1
                return -1
            if deadline is not None and time.monotonic() > deadline:
                raise KpodError(f"timed out waiting for container {self.short_id}")
            time.sleep(delay)
            delay = min(delay * 2, interval)

    def exit_status(self) -> tuple[int | None, bool]:
        st = self.observe()
        return st["exit_code"], bool(st["oom_killed"])

    # -- network --------------------------------------------------------------------------
    def _network_setup(self) -> str:
        provider = self.mgr.network_provider
        if provider is None:
            raise InvalidArgument("bridge networking is not available: no network backend is wired to containers")
        result = provider.setup(self) or {}
        netns = result.get("netns")
        if not netns:
            raise KpodError("the network provider returned no network namespace")
        return netns

    def _network_teardown(self) -> None:
        provider = self.mgr.network_provider
        if provider is not None:
            provider.teardown(self)

    # -- inspect ----------------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        try:
            with open(self.spec_template) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------

def display_state(status: str) -> str:
    """podman's state names: created, initialized (the runtime holds it, not started),
    running, paused, exited."""
    return {"configured": "created", "created": "initialized", "stopped": "exited"}.get(status, status)


def resolv_conf(network_mode: str) -> str:
    """The container's resolv.conf: the host's; loopback name servers are dropped when the
    container has its own network namespace (they would not answer there)."""
    src = "/etc/resolv.conf"
    try:
        with open(src) as f:
            text = f.read()
    except OSError:
        text = ""
    if network_mode == "host":
        return text
    lines = text.splitlines()
    servers = [l for l in lines if l.split()[:1] == ["nameserver"]]
    if servers and all(_is_loopback(l.split()[1]) for l in servers if len(l.split()) > 1):
        try:
            with open("/run/systemd/resolve/resolv.conf") as f:
                lines = f.read().splitlines()
        except OSError:
            pass
    out = [l for l in lines if not (l.split()[:1] == ["nameserver"] and len(l.split()) > 1 and _is_loopback(l.split()[1]))]
    if network_mode == "bridge" and not any(l.split()[:1] == ["nameserver"] for l in out):
        out += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    return "\n".join(out) + ("\n" if out else "")


def _is_loopback(addr: str) -> bool:
    return addr.startswith("127.") or addr == "::1"


# ---------------------------------------------------------------------------------------
# reports (inspect, ps)
# ---------------------------------------------------------------------------------------

ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(ts: float | None) -> str:
    """podman's time format (RFC 3339 with nanoseconds and the local offset)."""
    if not ts:
        return ZERO_TIME
    from datetime import datetime

    dt = datetime.fromtimestamp(ts).astimezone()
    frac = f"{ts % 1:.9f}"[2:]
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + frac + dt.strftime("%z")[:3] + ":" + dt.strftime("%z")[3:]


def human_size(size: float) -> str:
    """go-units' HumanSize (decimal units, 4 significant digits): ``1.23MB``."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.4g}{units[i]}"


def status_text(status: str, exit_code: int | None, started_at: float | None, finished_at: float | None,
                now: float | None = None) -> str:
    """podman ps's STATUS column: ``Up 3 seconds``, ``Exited (0) 2 seconds ago``, ``Created``."""
    now = now or time.time()
    if status in ("running",):
        return f"Up {human_duration(now - (started_at or now))}"
    if status == "paused":
        return "Paused"
    if status in ("stopped", "exited"):
        code = exit_code if exit_code is not None else -1
        return f"Exited ({code}) {human_duration(now - (finished_at or now))} ago"
    if status == "configured":
        return "Created"
    if status == "created":
        return "Initialized"
    return status.capitalize()


def _signal_name(sig: str | None) -> str:
    import signal as _signal

    from .oci import signal_number

    try:
        return _signal.Signals(signal_number(sig or "TERM")).name
    except (ValueError, KeyError):
        return str(sig)


def inspect_container(c: Container, size: bool = False) -> dict[str, Any]:
    """``kpod inspect`` data for one container, shaped like podman's."""
    from . import specgen

    mgr = c.mgr
    st = c.observe_repaired()  # a lost monitor or a reboot is repaired first, as ps does
    status = st["status"]
    conf = c.config
    spec = c.spec()
    proc = spec.get("process") or {}
    linux = spec.get("linux") or {}
    res = linux.get("resources") or {}
    args = list(conf.get("args") or proc.get("args") or [])
    driver = mgr.rt.plugins.driver_name("storage") or mgr.config.storage_driver
    gd: dict[str, Any] = {}
    try:
        drv = mgr.rt.storage_driver
        if driver == "overlay" and hasattr(drv, "layer_dir"):
            d = drv.layer_dir(c.layer_id)
            lowers = [os.path.join(drv.layer_dir(r["id"]), "diff")
                      for r in reversed(mgr.images.layer_chain(mgr.images.layer(c.layer_id)["parent"]))]
            gd = {"LowerDir": ":".join(lowers), "UpperDir": os.path.join(d, "diff"),
                  "WorkDir": os.path.join(d, "work"), "MergedDir": os.path.join(d, "merged")}
        elif hasattr(drv, "layer_dir"):
            gd = {"MergedDir": os.path.join(drv.layer_dir(c.layer_id), "root")}
    except Exception:  # noqa: BLE001 - layer gone: report what is known
        gd = {}
    mounts = []
    for v in conf.get("volumes") or []:
        if not specgen.is_bind_volume(v):
            continue  # a volume: below
        try:
            m = specgen.parse_volume(v)
        except KpodError:
            continue
        mounts.append(_mount_entry("bind", m["source"], m["destination"], m["options"]))
    for v in conf.get("named_volumes") or []:
        mounts.append(_mount_entry("volume", v["source"], v["destination"], v["options"], name=v["name"]))
    for v in conf.get("anonymous_volumes") or []:
        mounts.append(_mount_entry("volume", v["source"], v["destination"],
                                   v.get("options") or ["rbind", "rprivate", "rw", "nosuid", "nodev"], name=v["name"]))
    caps = proc.get("capabilities") or {}
    mem = res.get("memory") or {}
    cpu = res.get("cpu") or {}
    pids = (res.get("pids") or {}).get("limit", 0)
    tmpfs = {}
    for t in conf.get("tmpfs") or []:
        dest, _, o = t.partition(":")
        tmpfs[dest] = o or "rw,noexec,nosuid,nodev"
    nanocpus = 0
    if cpu.get("quota") and cpu.get("period"):
        nanocpus = int(cpu["quota"] * 1_000_000_000 // cpu["period"])
    stop_timeout = conf.get("stop_timeout")
    data: dict[str, Any] = {
        "Id": c.id,
        "Created": rfc3339(c.created_at),
        "Path": args[0] if args else "",
        "Args": args[1:],
        "State": {
            "OciVersion": spec.get("ociVersion", ""),
            "Status": display_state(status),
            "Running": status == "running",
            "Paused": status == "paused",
            "Restarting": False,
            "OOMKilled": bool(st["oom_killed"]),
            "Dead": False,
            "Pid": c.pid if status in ACTIVE else 0,
            "ConmonPid": c.conmon_pid if status in ACTIVE else 0,
            "ExitCode": st["exit_code"] if st["exit_code"] is not None else 0,
            "Error": c.error or "",
            "StartedAt": rfc3339(c.started_at),
            "FinishedAt": rfc3339(st["finished_at"]),
        },
        "Image": c.image_id,
        "ImageName": c.image_name,
        "Rootfs": "",
        "Pod": "",
        "ResolvConfPath": c.resolv_path,
        "HostnamePath": c.hostname_path,
        "HostsPath": c.hosts_path,
        "StaticDir": c.static_dir,
        "OCIConfigPath": os.path.join(c.bundle, "config.json"),
        "OCIRuntime": c.runtime,
        "ConmonPidFile": os.path.join(c.rundir, "conmon.pid"),
        "PidFile": os.path.join(c.rundir, "pidfile"),
        "Name": c.name,
        "RestartCount": c.restart_count,
        "Driver": driver,
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "EffectiveCaps": list(caps.get("effective") or []),
        "BoundingCaps": list(caps.get("bounding") or []),
        "ExecIDs": _exec_ids(c),
        "GraphDriver": {"Name": driver, "Data": gd},
        "Mounts": mounts,
        "Dependencies": [],
        "NetworkSettings": {"EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
                            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "MacAddress": "", "Bridge": "",
                            "SandboxID": "", "HairpinMode": False, "LinkLocalIPv6Address": "",
                            "LinkLocalIPv6PrefixLen": 0, "Ports": {}, "SandboxKey": "",
                            "Networks": {n: {} for n in (conf.get("networks") or {})}},
        "Namespace": "",
        "IsInfra": False,
        "Config": {
            "Hostname": c.hostname,
            "Domainname": "",
            "User": conf.get("user") or "",
            "AttachStdin": bool(conf.get("interactive")),
            "AttachStdout": False,
            "AttachStderr": False,
            "Tty": bool(conf.get("tty")),
            "OpenStdin": bool(conf.get("interactive")),
            "StdinOnce": False,
            "Env": list(proc.get("env") or []),
            "Cmd": conf.get("command"),
            "Image": c.image_name,
            "Volumes": {p: {} for p in conf.get("image_volumes") or []} or None,
            "WorkingDir": proc.get("cwd", "/"),
            "Entrypoint": conf.get("entrypoint"),
            "OnBuild": None,
            "Labels": dict(conf.get("labels") or {}) or None,
            "Annotations": dict(spec.get("annotations") or {}),
            "StopSignal": _signal_name(conf.get("stop_signal")),
            "CreateCommand": list(conf.get("create_command") or []),
            "Umask": "0022",
            "Timeout": 0,
            "StopTimeout": DEFAULT_STOP_TIMEOUT if stop_timeout is None else stop_timeout,
        },
        "HostConfig": {
            "Binds": list(conf.get("volumes") or []),
            "CgroupManager": "cgroupfs",
            "CgroupMode": "host",
            "CgroupParent": CGROUP_PARENT,
            "ContainerIDFile": "",
            "LogConfig": {"Type": "k8s-file", "Config": None, "Path": c.log_path},
            "NetworkMode": conf.get("network_mode", "none"),
            "PortBindings": {},
            "RestartPolicy": {"Name": c.restart_policy if c.restart_policy != "no" else "",
                              "MaximumRetryCount": c.restart_max},
            "AutoRemove": bool(conf.get("rm")),
            "CapAdd": list(conf.get("cap_add") or []),
            "CapDrop": list(conf.get("cap_drop") or []),
            "GroupAdd": list(conf.get("group_add") or []),
            "OomScoreAdj": conf.get("oom_score_adj") or 0,
            "Privileged": bool(conf.get("privileged")),
            "ReadonlyRootfs": bool(conf.get("read_only")),
            "SecurityOpt": list(conf.get("security_opt") or []),
            "Tmpfs": tmpfs,
            "ShmSize": 65536 * 1024 if not conf.get("shm_size") else specgen.parse_size(conf["shm_size"]),
            "Runtime": "oci",
            "CpuShares": cpu.get("shares", 0),
            "CpuPeriod": cpu.get("period", 0),
            "CpuQuota": cpu.get("quota", 0),
            "NanoCpus": nanocpus,
            "CpusetCpus": cpu.get("cpus", ""),
            "CpusetMems": cpu.get("mems", ""),
            "Memory": mem.get("limit", 0),
            "MemoryReservation": mem.get("reservation", 0),
            "MemorySwap": mem.get("swap", 0),
            "PidsLimit": pids,
            "Ulimits": [{"Name": r["type"], "Soft": r["soft"], "Hard": r["hard"]} for r in proc.get("rlimits") or []],
            "Init": bool(conf.get("init")),
            "Annotations": dict(conf.get("annotations") or {}),
        },
    }
    if hasattr(mgr.network_provider, "inspect"):
        mgr.network_provider.inspect(c, data)  # NetworkSettings, Pod, network HostConfig
    if size:
        data["SizeRw"], data["SizeRootFs"] = container_sizes(c)
    return data


def _mount_entry(kind: str, source: str, dest: str, options: list[str], name: str | None = None) -> dict[str, Any]:
    """One of inspect's ``Mounts`` (podman's shape) from an OCI bind mount's options."""
    shown = [x for x in options if x in ("rbind", "bind", "nosuid", "nodev", "noexec")]
    if kind == "volume":
        shown.sort(key=lambda x: x in ("rbind", "bind"))  # podman's order: nosuid, nodev, rbind
    entry: dict[str, Any] = {"Type": kind}
    if name is not None:
        entry["Name"] = name
    entry.update({
        "Source": source, "Destination": dest, "Driver": "local" if kind == "volume" else "", "Mode": "",
        "Options": shown,
        "RW": "ro" not in options,
        "Propagation": next((x for x in options if "private" in x or "shared" in x or "slave" in x), "rprivate"),
    })
    return entry


def _exec_ids(c: Container) -> list[str]:
    """The container's exec sessions (libpod_core.execs) for ``inspect``."""
    from .execs import exec_ids

    return exec_ids(c)


def container_sizes(c: Container) -> tuple[int, int]:
    """(bytes in the container's own layer, that plus the image's layers)."""
    mgr = c.mgr
    try:
        rw = mgr.storage.storage_layer_size(layer_id=c.layer_id) or 0  # (loads the driver if need be)
    except Exception:  # noqa: BLE001
        rw = 0
    img = mgr.images.get_by_id(c.image_id) if c.image_id else None
    return rw, rw + (img.size if img else 0)
