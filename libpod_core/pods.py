"""Pods: groups of containers sharing namespaces, held open by an infra container.

    rt = Runtime(...)
    pod = rt.pods.create(PodOptions(name="web", ports=[...]))
    c = rt.containers.create(CreateOptions(image="busybox", pod="web", command=[...]))
    pod.start()
    pod.remove(force=True)

* Table ``pods`` (one row per pod: ID, UNIQUE name, create options as JSON, infra container
  ID); ``containers.pod_id`` (a column this module adds) references it, so a pod row cannot
  be deleted while a container still names it.
* The infra container runs ``catatonit -P`` (pause mode) from a one-layer local image,
  ``localhost/kpod-pause:<version>``, built from the host's static catatonit on first use.
  It owns the namespaces the pod shares (``net,ipc,uts`` by default; ``pid`` on request):
  its network is set up like any bridge container's (a persistent namespace under
  ``<runroot>/netns``), and members join ``/proc/<infra pid>/ns/{ipc,uts,pid}`` and the
  infra's network namespace when they start (the infra is started first when needed).
* The pod's cgroup is ``<cgroup parent, default /kpod>/pod-<ID>``; members' ``cgroupsPath``
  is under it, and pod-level ``--cpus``/``--memory`` limits are written to it (cgroup v1
  cpu and memory hierarchies, or the unified hierarchy on a pure v2 host).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from . import containers as _containers  # noqa: F401 - the containers schema comes before ours
from .errors import AlreadyExists, ContainerStateError, InvalidArgument, KpodError, NotFound
from .network import DEFAULT_POD_SHARE, POD_SHARES, parse_add_host
from .state import FileLock, register_schema
from .log import getLogger

log = getLogger(__name__)

SCHEMA_VERSION = 1
register_schema(
    "pods",
    SCHEMA_VERSION,
    """
    CREATE TABLE IF NOT EXISTS pods (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        config TEXT NOT NULL,
        infra_id TEXT,
        created_at REAL NOT NULL
    );
    ALTER TABLE containers ADD COLUMN pod_id TEXT REFERENCES pods(id);
    CREATE INDEX IF NOT EXISTS containers_by_pod ON containers(pod_id)
    """,
)

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
CGROUP_PARENT = "/kpod"
CGROUP_ROOT = "/sys/fs/cgroup"
PAUSE_REPO = "localhost/kpod-pause"
PAUSE_COMMAND = ["/catatonit", "-P"]


def pause_image_name() -> str:
    from . import __version__

    return f"{PAUSE_REPO}:{__version__}"


# eq/repr are not generated: nothing compares or prints these, and for this many fields
# generating them is a millisecond of every command's start-up
@dataclass(eq=False, repr=False)
class PodOptions:
    """What ``kpod pod create`` collected. Stored (as JSON) with the pod."""

    name: str | None = None
    infra: bool = True
    share: list[str] | None = None          #: None: net,ipc,uts
    hostname: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    cgroup_parent: str | None = None
    cpus: str | None = None
    memory: str | None = None
    # network of the infra container (the pod's)
    network: str | None = None
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    ports: list[dict[str, Any]] = field(default_factory=list)
    ip: str | None = None
    mac_address: str | None = None
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_option: list[str] = field(default_factory=list)
    add_host: list[str] = field(default_factory=list)
    no_hosts: bool = False
    create_command: list[str] = field(default_factory=list)
    # the infra container: None is kpod's pause image running catatonit -P, "<pod ID[:12]>-infra"
    infra_image: str | None = None
    #: its entrypoint; a string is split on spaces, as podman's --infra-command is
    infra_command: str | list[str] | None = None
    infra_name: str | None = None


def parse_infra_command(command: str | list[str] | None) -> list[str] | None:
    """``--infra-command``: podman splits the string on single spaces (no shell quoting)."""
    if command is None:
        return None
    argv = command.split(" ") if isinstance(command, str) else list(command)
    if not argv or not argv[0]:
        raise InvalidArgument(f"invalid --infra-command {command!r}: expected a command")
    return argv


def parse_share(share: str | list[str] | None, infra: bool) -> list[str]:
    """``--share``: ``net,ipc,uts`` (default), ``+pid`` (add to the default), ``none``."""
    if share is None:
        return list(DEFAULT_POD_SHARE) if infra else []
    items = share.split(",") if isinstance(share, str) else list(share)
    items = [i.strip() for i in items if i.strip()]
    if items in ([], ["none"]):
        return []
    base: list[str] = list(DEFAULT_POD_SHARE) if all(i.startswith("+") for i in items) else []
    for i in items:
        name = i.lstrip("+")
        if name not in POD_SHARES:
            raise InvalidArgument(f"invalid namespace to share {name!r}: options are {', '.join(POD_SHARES)} or none")
        if name not in base:
            base.append(name)
    if base and not infra:
        raise InvalidArgument("namespaces can only be shared with an infra container (--infra=false)")
    return [s for s in POD_SHARES if s in base]


# ---------------------------------------------------------------------------------------
# cgroups
# ---------------------------------------------------------------------------------------

def _unified_only() -> bool:
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[1] == CGROUP_ROOT:
                    return parts[2] == "cgroup2"
    except OSError:
        pass
    return False


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def make_pod_cgroup(path: str, cpus: str | None, memory: str | None) -> None:
    """Create the pod's cgroup and write its limits (idempotent)."""
    quota = int(float(cpus) * 100000) if cpus else None
    mem = None
    if memory:
        from .specgen import parse_size

        mem = parse_size(memory, what="memory")
    rel = path.lstrip("/")
    if _unified_only():
        d = os.path.join(CGROUP_ROOT, rel)
        # enable the controllers down the path (each parent's subtree_control)
        parts = rel.split("/")
        cur = CGROUP_ROOT
        for p in parts:
            try:
                _write(os.path.join(cur, "cgroup.subtree_control"), "+cpu +memory +pids")
            except OSError as exc:
                log.debug("enabling controllers in %s: %s", cur, exc)
            cur = os.path.join(cur, p)
            os.makedirs(cur, exist_ok=True)
        if quota:
            _write(os.path.join(d, "cpu.max"), f"{quota} 100000")
        if mem:
            _write(os.path.join(d, "memory.max"), str(mem))
        return
    for ctrl in ("cpu", "memory", "pids"):
        base = os.path.join(CGROUP_ROOT, ctrl)
        if not os.path.isdir(base):
            continue
        os.makedirs(os.path.join(base, rel), exist_ok=True)
    if quota:
        d = os.path.join(CGROUP_ROOT, "cpu", rel)
        _write(os.path.join(d, "cpu.cfs_period_us"), "100000")
        _write(os.path.join(d, "cpu.cfs_quota_us"), str(quota))
    if mem:
        _write(os.path.join(CGROUP_ROOT, "memory", rel, "memory.limit_in_bytes"), str(mem))


def remove_pod_cgroup(path: str) -> list[str]:
    """rmdir the pod's cgroup in every hierarchy; returns the directories left behind."""
    rel = path.lstrip("/")
    left = []
    try:
        hierarchies = [os.path.join(CGROUP_ROOT, d) for d in os.listdir(CGROUP_ROOT)] + [CGROUP_ROOT]
    except OSError:
        return []
    for base in hierarchies:
        d = os.path.join(base, rel)
        if not os.path.isdir(d):
            continue
        # children first (the runtime removes the containers' own; anything else is ours)
        for root, dirs, _files in sorted(os.walk(d), key=lambda t: -len(t[0])):
            try:
                os.rmdir(root)
            except OSError as exc:
                if os.path.isdir(root):
                    left.append(f"{root}: {exc.strerror}")
    return left


# ---------------------------------------------------------------------------------------
# the pod's /dev/shm
# ---------------------------------------------------------------------------------------

def shm_dir(c) -> str:
    return os.path.join(c.rundir, "shm")


def prepare_shm(c, spec: dict) -> None:
    """At start (``Container._init_locked``, after the joined namespaces are resolved): an
    infra container with its own IPC namespace gets a tmpfs mounted on the host at
    ``<rundir>/shm`` as its /dev/shm, and a container joining its IPC namespace (a pod
    member, ``--ipc container:<infra>``) bind-mounts the same directory, so POSIX shared
    memory is shared with the namespace, as podman does. A container joining one without
    that mount keeps a tmpfs of its own (the other's /dev/shm lives in another mount
    namespace: the kernel refuses to bind-mount it)."""
    from .specgen import DEFAULT_SHM_SIZE, parse_size, use_shm_dir

    ipc = c.config.get("ipc") or ""
    if ipc.startswith("container:"):
        try:
            target = c.mgr.get(ipc[len("container:"):])
        except NotFound:
            return
        if os.path.ismount(shm_dir(target)):
            use_shm_dir(spec, shm_dir(target))
    elif c.config.get("is_infra") and ipc in ("", "private", "shareable"):
        from .graphdriver import mount

        d = shm_dir(c)
        os.makedirs(d, mode=0o700, exist_ok=True)
        if not os.path.ismount(d):
            size = parse_size(c.config["shm_size"], what="shm-size") if c.config.get("shm_size") else DEFAULT_SHM_SIZE
            mount("shm", d, "tmpfs", f"mode=1777,size={size}", 0x2 | 0x4 | 0x8)  # nosuid, nodev, noexec
        use_shm_dir(spec, d)


def release_shm(c) -> None:
    """Unmount an infra container's shm (stop, clean-up, a failed start); idempotent."""
    from .graphdriver import umount

    umount(shm_dir(c))


# ---------------------------------------------------------------------------------------
# the infra image
# ---------------------------------------------------------------------------------------

def pause_layer_tar(catatonit: str) -> bytes:
    """A deterministic one-layer root filesystem holding only /catatonit (static)."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d, mode in (("dev", 0o755), ("etc", 0o755), ("proc", 0o555), ("run", 0o755), ("sys", 0o555),
                        ("tmp", 0o1777)):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, mode, 0
            tf.addfile(ti)
        with open(catatonit, "rb") as f:
            data = f.read()
        ti = tarfile.TarInfo("catatonit")
        ti.size, ti.mode, ti.mtime = len(data), 0o755, 0
        tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def ensure_pause_image(rt):
    """``localhost/kpod-pause:<version>``, built on first use from the host's catatonit."""
    name = pause_image_name()
    store = rt.images
    img = store.find(name)
    if img is not None:
        return img
    import hashlib
    import io

    from . import manifest
    from .specgen import find_init

    with FileLock(os.path.join(rt.config.graphroot, "locks", "pause-image.lock")).held():
        img = store.find(name)
        if img is not None:
            return img
        catatonit = find_init(rt.config.init_path)
        with open(catatonit, "rb") as f:
            head = f.read(4)
        if head != b"\x7fELF":
            raise KpodError(f"{catatonit} is not an executable for the pod infra image")
        tar = pause_layer_tar(catatonit)
        with store.shared():
            op = store.operation("pod infra image")
            try:
                layer = store.create_layer(op, None, io.BytesIO(tar))
                cfg = {"Entrypoint": list(PAUSE_COMMAND), "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                       "StopSignal": "SIGTERM", "Labels": {"io.kpod.infra": "true"}}
                image_config = manifest.make_image_config([layer["diff_id"]], config=cfg, created="1970-01-01T00:00:00Z",
                                                          created_by="kpod pod infra image")
                raw = manifest.config_bytes(image_config)
                m = manifest.build_manifest(
                    manifest.descriptor_for(raw, manifest.MEDIA_TYPE_OCI_CONFIG),
                    [manifest.Descriptor(media_type=manifest.MEDIA_TYPE_OCI_LAYER, digest=layer["diff_id"],
                                         size=layer["size"])],
                )
                return store.commit_image(op, config_raw=raw, manifest_raw=m, manifest_type=manifest.MEDIA_TYPE_OCI_MANIFEST,
                                          manifest_digest="sha256:" + hashlib.sha256(m).hexdigest(),
                                          top_layer=layer["id"], names=[name])
            except BaseException:
                op.abort()
                raise


# ---------------------------------------------------------------------------------------
# the manager: rt.pods
# ---------------------------------------------------------------------------------------

def _event(status: str, pod: "Pod") -> None:
    """Record a pod event (:mod:`libpod_core.events`; never fails)."""
    from .events import pod as record

    record(pod.mgr.config, status, pod)


class PodManager:
    """The pods of one store (``Runtime.pods``)."""

    def __init__(self, runtime) -> None:
        self.rt = runtime
        self.config = runtime.config
        self.db = runtime.db
        self.containers = runtime.containers  # registers and migrates the containers schema first
        self._ensure_schema()
        self.lock_dir = os.path.join(self.config.runroot, "locks")

    def _ensure_schema(self) -> None:
        if getattr(self.db, "_kpod_pods_schema", False):
            return
        have = {r["area"]: r["version"] for r in self.db.read("SELECT area, version FROM schema_versions")}
        if have.get("pods", 0) < SCHEMA_VERSION:
            self.db._migrate()
        self.db._kpod_pods_schema = True

    # -- lookup -------------------------------------------------------------------------
    def get(self, name_or_id: str) -> "Pod":
        from .state import find_by_name_or_id

        row = find_by_name_or_id(lambda where, params: self.db.read(f"SELECT * FROM pods {where}", params),
                                 name_or_id, "pod")
        return Pod(self, row)

    def exists(self, name_or_id: str) -> bool:
        try:
            self.get(name_or_id)
            return True
        except NotFound:
            return False

    def list(self) -> list["Pod"]:
        return [Pod(self, r) for r in self.db.read("SELECT * FROM pods ORDER BY created_at DESC")]

    # -- create -------------------------------------------------------------------------
    def create(self, opts: PodOptions) -> "Pod":
        """Create a pod (and its infra container), all or nothing."""
        from .containers import random_name
        from .specgen import check_cgroup_parent, parse_size

        if opts.name is not None and not NAME_RE.match(opts.name):
            raise InvalidArgument(f"invalid pod name {opts.name!r}: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*")
        share = parse_share(opts.share, opts.infra)
        if opts.memory not in (None, ""):
            parse_size(opts.memory, what="memory")
        if opts.cpus not in (None, ""):
            try:
                if float(opts.cpus) <= 0:
                    raise ValueError
            except ValueError:
                raise InvalidArgument(f"invalid --cpus {opts.cpus!r}: expected a number greater than 0") from None
        parent = check_cgroup_parent(opts.cgroup_parent or CGROUP_PARENT)
        for h in opts.add_host:
            parse_add_host(h)
        if not opts.infra and (opts.ports or opts.network or opts.networks or opts.ip or opts.mac_address or opts.dns
                               or opts.add_host):
            raise InvalidArgument("network options need an infra container: they are the pod's (--infra=false)")
        if not opts.infra and (opts.infra_image or opts.infra_command is not None or opts.infra_name):
            raise InvalidArgument("--infra-image, --infra-command and --infra-name need an infra container "
                                  "(--infra=false)")
        infra_command = parse_infra_command(opts.infra_command)
        if opts.infra_image is not None and not opts.infra_image.strip():
            raise InvalidArgument("invalid --infra-image '': expected an image name")
        if opts.infra_name is not None and not NAME_RE.match(opts.infra_name):
            raise InvalidArgument(f"invalid --infra-name {opts.infra_name!r}: names must match "
                                  "[a-zA-Z0-9][a-zA-Z0-9_.-]*")
        if opts.infra_name and self.containers.exists(opts.infra_name):
            raise AlreadyExists(f"--infra-name {opts.infra_name}: the container name is already in use")
        hostname = opts.hostname or None
        if hostname is not None and (len(hostname) > 64 or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]*", hostname)):
            raise InvalidArgument(f"invalid hostname {hostname!r}")

        pod_id = os.urandom(32).hex()
        conf = asdict(opts)
        conf.update(share=share, cgroup_parent=parent, infra_command=infra_command)
        now = time.time()
        for attempt in range(20):
            name = opts.name or random_name() + ("" if attempt < 5 else f"_{os.urandom(2).hex()}")
            conf["name"] = name
            conf["hostname"] = hostname or name
            try:
                with self.db.write() as tx:
                    tx.execute("INSERT INTO pods(id, name, config, created_at) VALUES(?,?,?,?)",
                               (pod_id, name, json.dumps(conf), now))
                break
            except sqlite3.IntegrityError as exc:
                if "name" not in str(exc):
                    raise
                if opts.name:
                    other = self.db.one("SELECT id FROM pods WHERE name = ?", (name,))
                    raise AlreadyExists(f"{name}: pod already exists (ID {other['id'][:12] if other else '?'})") from None
        else:
            raise KpodError("could not pick a free random pod name")
        pod = self.get(pod_id)
        try:
            make_pod_cgroup(pod.cgroup_path, opts.cpus, opts.memory)
            if opts.infra:
                pod.ensure_infra()
        except BaseException:
            try:
                pod.remove(force=True)
            except Exception as exc:  # noqa: BLE001
                log.warning("pod %s: cleaning up a failed create: %s", pod_id[:12], exc)
            raise
        pod = self.get(pod_id)
        _event("create", pod)
        return pod

    def infra_options(self, pod: "Pod"):
        from .containers import CreateOptions

        c = pod.config
        return CreateOptions(
            image=c.get("infra_image") or pause_image_name(), name=pod.infra_name,
            entrypoint=c.get("infra_command"), hostname=c.get("hostname") or pod.name,
            network=c.get("network"), networks=dict(c.get("networks") or {}), ports=list(c.get("ports") or []),
            ip=c.get("ip"), mac_address=c.get("mac_address"), dns=list(c.get("dns") or []),
            dns_search=list(c.get("dns_search") or []), dns_option=list(c.get("dns_option") or []),
            add_host=list(c.get("add_host") or []), no_hosts=bool(c.get("no_hosts")),
            pull="missing" if c.get("infra_image") else "never",
            cgroup_parent=pod.cgroup_path, pod=pod.id, is_infra=True, create_command=list(c.get("create_command") or []),
            stop_timeout=10,
        )

    def prune(self, matches=None) -> list[str]:
        """Remove every pod with no running or paused container (and that *matches(pod)*
        accepts, when given); returns their IDs."""
        out = []
        for pod in self.list():
            if matches is not None and not matches(pod):
                continue
            if any(c.refresh() in ("running", "paused", "created") for c in pod.containers()):
                continue
            try:
                pod.remove(force=True)
                out.append(pod.id)
            except NotFound:
                continue
        return out


# ---------------------------------------------------------------------------------------
# one pod
# ---------------------------------------------------------------------------------------

class Pod:
    def __init__(self, mgr: PodManager, row) -> None:
        self.mgr = mgr
        self._load(row)

    def _load(self, row) -> None:
        self.row = dict(row)
        self.id: str = row["id"]
        self.name: str = row["name"]
        self.config: dict[str, Any] = json.loads(row["config"])
        self.infra_id: str | None = row["infra_id"]
        self.created_at: float = row["created_at"]

    def reload(self) -> None:
        row = self.mgr.db.one("SELECT * FROM pods WHERE id = ?", (self.id,))
        if row is None:
            raise NotFound(f'no pod with name or ID "{self.id}" found: no such pod')
        self._load(row)

    def __repr__(self) -> str:
        return f"<Pod {self.id[:12]} {self.name}>"

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def shared(self) -> list[str]:
        return list(self.config.get("share") or [])

    @property
    def hostname(self) -> str:
        return self.config.get("hostname") or self.name

    @property
    def infra_name(self) -> str:
        return self.config.get("infra_name") or f"{self.id[:12]}-infra"

    @property
    def cgroup_parent(self) -> str:
        return self.config.get("cgroup_parent") or CGROUP_PARENT

    @property
    def cgroup_path(self) -> str:
        return f"{self.cgroup_parent.rstrip('/')}/pod-{self.id}"

    def locked(self):
        return FileLock(os.path.join(self.mgr.lock_dir, f"pod-{self.id}.lock")).held(timeout=600)

    # -- members ----------------------------------------------------------------------
    def containers(self) -> list:
        """Every container of the pod (infra included), oldest first."""
        cm = self.mgr.containers
        rows = cm._rows("WHERE pod_id = ? ORDER BY created_at ASC", (self.id,))
        from .containers import Container

        return [Container(cm, r) for r in rows]

    def infra(self):
        if not self.infra_id:
            return None
        try:
            return self.mgr.containers.get(self.infra_id)
        except NotFound:
            return None

    def members(self) -> list:
        return [c for c in self.containers() if c.id != self.infra_id]

    def ensure_infra(self):
        """The infra container, created when the pod wants one and has none (a pod create
        interrupted before it existed, or its first use)."""
        if not self.config.get("infra", True):
            return None
        infra = self.infra()
        if infra is not None:
            return infra
        with self.locked():
            self.reload()
            infra = self.infra()
            if infra is not None:
                return infra
            cm = self.mgr.containers
            try:  # a create that finished after an interrupted pod create
                old = cm.get(self.infra_name)
                if old.config.get("pod") == self.id:
                    self._set_infra(old.id)
                    return old
            except NotFound:
                pass
            if not self.config.get("infra_image"):
                ensure_pause_image(self.mgr.rt)
            # kept mounted for the pod's start (like run's create): no unmount now and mount
            # again at start; an overlay unmount syncs the upper file system, which is slow
            infra = cm.create(self.mgr.infra_options(self), keep_mounted=True)
            self._set_infra(infra.id)
            return infra

    def _set_infra(self, cid: str | None) -> None:
        with self.mgr.db.write() as tx:
            tx.execute("UPDATE pods SET infra_id = ? WHERE id = ?", (cid, self.id))
        self.infra_id = cid

    # -- state ------------------------------------------------------------------------
    def status(self, states: dict[str, str] | None = None) -> str:
        """podman's pod states: Created, Running, Degraded, Paused, Stopped, Exited."""
        from .containers import display_state

        if states is None:
            states = {c.id: c.refresh() for c in self.containers()}
        shown = [display_state(s) for s in states.values()]
        n = len(shown)
        if n == 0:
            return "Created"
        running, paused = shown.count("running"), shown.count("paused")
        exited, created = shown.count("exited"), shown.count("created")
        if running == n:
            return "Running"
        if running:
            return "Degraded"
        if paused == n or (paused and paused + exited + created == n and not exited and not created):
            return "Paused"
        if paused:
            return "Degraded"
        if exited == n:
            return "Exited"
        if exited:
            return "Stopped"
        return "Created"

    # -- lifecycle ------------------------------------------------------------------------
    def _each(self, cs: list, action: Callable[[Any], None]) -> list[tuple[Any, KpodError]]:
        errors = []
        for c in cs:
            try:
                action(c)
            except NotFound:
                continue
            except KpodError as exc:
                errors.append((c, exc))
        return errors

    def _sync_cgroup(self) -> None:
        make_pod_cgroup(self.cgroup_path, self.config.get("cpus"), self.config.get("memory"))

    def start(self) -> list[tuple[Any, KpodError]]:
        """Start the infra container, then every member. Returns the members' errors."""
        self._sync_cgroup()
        infra = self.ensure_infra()
        if infra is not None:
            infra.start()
        errors = self._each(self.members(), lambda c: c.start() if c.refresh() not in ("running",) else None)
        _event("start", self)
        return errors

    def stop(self, timeout: int | None = None) -> list[tuple[Any, KpodError]]:
        def stop(c):
            if c.refresh() in ("running", "paused", "created"):
                c.stop(timeout)
        errors = self._each(list(reversed(self.members())), stop)
        infra = self.infra()
        if infra is not None:
            errors += self._each([infra], stop)
        _event("stop", self)
        return errors

    def restart(self, timeout: int | None = None) -> list[tuple[Any, KpodError]]:
        errors = self._each(list(reversed(self.members())),
                            lambda c: c.stop(timeout) if c.refresh() in ("running", "paused", "created") else None)
        _event("stop", self)  # podman's restart: stop, then start
        return errors + self.start()

    def kill(self, signal: str | int = "KILL") -> list[tuple[Any, KpodError]]:
        cs = [c for c in self.members() if c.refresh() in ("running", "paused")]
        infra = self.infra()
        if infra is not None and infra.refresh() in ("running", "paused"):
            cs.append(infra)
        if not cs:
            raise ContainerStateError(f"no running containers in pod {self.name} to kill")
        errors = self._each(cs, lambda c: c.kill(signal))
        _event("kill", self)
        return errors

    def pause(self) -> list[tuple[Any, KpodError]]:
        cs = [c for c in self.containers() if c.refresh() == "running"]
        errors = self._each(cs, lambda c: c.pause())
        _event("pause", self)
        return errors

    def unpause(self) -> list[tuple[Any, KpodError]]:
        cs = [c for c in self.containers() if c.refresh() == "paused"]
        errors = self._each(cs, lambda c: c.unpause())
        _event("unpause", self)
        return errors

    def remove(self, force: bool = False, timeout: int | None = None) -> None:
        """Remove the pod. Its containers (other than the infra) and a running infra need
        *force*; then every container is removed (killed first), the row and the cgroup."""
        with self.locked():
            self.reload()
            members = self.members()
            if members and not force:
                raise ContainerStateError(
                    f"pod {self.name} has {len(members)} container(s): use --force to remove the pod and its "
                    "containers", exit_code=125)
            infra = self.infra()
            if infra is not None and not force and infra.refresh() in ("running", "paused"):
                raise ContainerStateError(f"pod {self.name} is running: stop it or use --force to remove it")
            errors = []
            for c in reversed(members):
                try:
                    c.remove(force=True, timeout=timeout)
                except NotFound:
                    continue
                except KpodError as exc:
                    errors.append(f"container {c.short_id}: {exc.message}")
            if infra is not None:
                self._set_infra(None)  # from here on it is an ordinary container
                try:
                    infra.remove(force=True, timeout=timeout)
                except NotFound:
                    pass
                except KpodError as exc:
                    errors.append(f"infra container {infra.short_id}: {exc.message}")
            for c in self.containers():  # joined meanwhile, or an infra left by an interrupted create
                try:
                    c.remove(force=True, timeout=timeout)
                except KpodError as exc:
                    if not isinstance(exc, NotFound):
                        errors.append(f"container {c.short_id}: {exc.message}")
            if errors:
                raise KpodError(f"removing pod {self.name}: {'; '.join(errors)}")
            try:
                with self.mgr.db.write() as tx:
                    tx.execute("DELETE FROM pods WHERE id = ?", (self.id,))
            except sqlite3.IntegrityError:
                raise ContainerStateError(f"pod {self.name}: a container joined it while it was being removed; "
                                          "remove it again") from None
            left = remove_pod_cgroup(self.cgroup_path)
            if left:
                log.warning("pod %s: cgroups left: %s", self.short_id, ", ".join(left))
            _event("remove", self)
        try:
            os.unlink(os.path.join(self.mgr.lock_dir, f"pod-{self.id}.lock"))
        except OSError:
            pass

    # -- reports ------------------------------------------------------------------------
    def inspect(self) -> dict[str, Any]:
        from .containers import display_state, rfc3339

        cs = self.containers()
        states = {c.id: c.refresh() for c in cs}
        c = self.config
        infra = self.infra()
        ports: dict[str, list] = {}
        if infra is not None:
            from .network import port_bindings

            ports = port_bindings(infra.config.get("ports") or [])
        mode = (infra.config.get("network_mode") if infra is not None else "") or ""
        networks = sorted((infra.config.get("networks") or {}) if infra is not None else {})
        return {
            "Id": self.id,
            "Name": self.name,
            "Created": rfc3339(self.created_at),
            "CreateCommand": list(c.get("create_command") or []),
            "ExitPolicy": "continue",
            "State": self.status(states),
            "Hostname": self.hostname,
            "Labels": dict(c.get("labels") or {}),
            "CreateCgroup": True,
            "CgroupParent": self.cgroup_parent,
            "CgroupPath": self.cgroup_path,
            "CreateInfra": bool(c.get("infra", True)),
            "InfraContainerID": self.infra_id or "",
            "InfraConfig": {
                "PortBindings": ports,
                "HostNetwork": mode == "host",
                "StaticIP": c.get("ip") or "",
                "StaticMAC": c.get("mac_address") or "",
                "NoManageResolvConf": False,
                "DNSServer": list(c.get("dns") or []),
                "DNSSearch": list(c.get("dns_search") or []),
                "DNSOption": list(c.get("dns_option") or []),
                "NoManageHosts": bool(c.get("no_hosts")),
                "HostAdd": list(c.get("add_host") or []),
                "Networks": networks,
                "NetworkMode": mode,
                "InfraImage": c.get("infra_image") or pause_image_name(),
                "InfraCommand": list(c.get("infra_command") or (infra.config.get("args") if infra is not None else None)
                                     or []),
                "InfraName": self.infra_name,
            } if infra is not None or c.get("infra", True) else None,
            "SharedNamespaces": self.shared,
            "CPUPeriod": 100000 if c.get("cpus") else 0,
            "CPUQuota": int(float(c["cpus"]) * 100000) if c.get("cpus") else 0,
            "Memory": _mem(c.get("memory")),
            "NumContainers": len(cs),
            "Containers": [{"Id": x.id, "Name": x.name, "State": display_state(states[x.id])} for x in cs],
        }


def _mem(value: str | None) -> int:
    if not value:
        return 0
    from .specgen import parse_size

    return parse_size(value, what="memory")


# ---------------------------------------------------------------------------------------
# create/run --pod
# ---------------------------------------------------------------------------------------

def create_with_pod(mgr, opts, **kw):
    """``ContainerManager.create`` for ``create``/``run``: ``--pod new:NAME`` makes the pod
    first (removed again when the container cannot be created)."""
    new_pod = None
    if opts.pod and opts.pod.startswith("new:"):
        name = opts.pod[len("new:"):]
        if not name:
            raise InvalidArgument("--pod new:NAME needs a pod name")
        pods = mgr.rt.pods
        if pods.exists(name):
            raise AlreadyExists(f"{name}: pod already exists")
        # podman's behaviour: the new pod publishes the container's ports
        new_pod = pods.create(PodOptions(name=name, ports=list(opts.ports or []), create_command=opts.create_command))
        opts.ports = []
        opts.pod = new_pod.id
    try:
        return mgr.create(opts, **kw)
    except BaseException:
        if new_pod is not None:
            try:
                new_pod.remove(force=True)
            except Exception as exc:  # noqa: BLE001
                log.warning("removing pod %s after a failed create: %s", new_pod.short_id, exc)
        raise
