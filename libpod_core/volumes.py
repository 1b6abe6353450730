"""Named volumes: podman's ``local`` volume driver.

    rt = Runtime(...)
    vol = rt.volumes.create("data", labels={"app": "web"})
    c = rt.containers.create(CreateOptions(image="busybox", volumes=["data:/srv"], command=[...]))
    rt.volumes.remove("data", force=True)     # removes the container first

Where things live:

* ``<graphroot>/kpod.db`` table ``volumes`` (name as the primary key, driver, labels and
  options as JSON, the ``o=uid=``/``gid=`` owner, podman's NeedsCopyUp/NeedsChown flags)
  and ``container_volumes`` (container ID, volume name, destination): the containers that
  use each volume. Its foreign keys make "in use" the database's business: the row of a
  volume a container names cannot be deleted, and a container's rows go with it
  (``ON DELETE CASCADE``).
* ``<graphroot>/volumes/<NAME>/_data``: the volume's data (its ``Mountpoint``). A volume
  with mount options (``-o type=tmpfs,device=tmpfs,o=size=64m``) has that file system
  mounted there on the host while containers using it run.
* ``<runroot>/volumes/<NAME>/<container ID>``: the running containers holding that mount
  (per boot, like the mount; the last one out unmounts it).
* ``<graphroot>/locks/volumes.lock``: taken (exclusive, for milliseconds) by create and
  remove, so two kpod processes creating one name cannot both make it;
  ``<runroot>/locks/volume-<NAME>.lock``: a volume's mount users and first-use copy-up.

A volume's first use by a container (at its start, after its root file system is
mounted) gives the volume directory the owner and mode of the image's directory at the
destination (or the container user's, when the image has none) and, when the volume is
empty, copies that directory's content in (``nocopy`` disables the copy) -- podman's
NeedsChown and NeedsCopyUp, each done once per volume.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

from . import containers as _containers  # noqa: F401 - the containers schema comes before ours
from .errors import AlreadyExists, InUse, InvalidArgument, KpodError, NotFound, StorageError
from .log import getLogger
from .state import FileLock, register_schema

log = getLogger(__name__)

SCHEMA_VERSION = 1
register_schema(
    "volumes",
    SCHEMA_VERSION,
    """
    CREATE TABLE IF NOT EXISTS volumes (
        name TEXT PRIMARY KEY,
        driver TEXT NOT NULL,
        labels TEXT NOT NULL,
        options TEXT NOT NULL,
        uid INTEGER,
        gid INTEGER,
        needs_copy_up INTEGER NOT NULL DEFAULT 1,
        needs_chown INTEGER NOT NULL DEFAULT 1,
        created_at REAL NOT NULL
    );
    CREATE TABLE IF NOT EXISTS container_volumes (
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        volume TEXT NOT NULL REFERENCES volumes(name),
        destination TEXT NOT NULL,
        PRIMARY KEY (container_id, destination)
    );
    CREATE INDEX IF NOT EXISTS container_volumes_by_volume ON container_volumes(volume)
    """,
)

DRIVERS = ("local",)
#: ``-o`` keys of the local driver (podman's)
OPTION_KEYS = ("type", "device", "o", "copy", "nocopy")
#: what ``o=`` may hold besides mount(8) options: taken out and kept apart
_OWNER_KEYS = ("uid", "gid")


def check_name(name: str) -> str:
    """Volume names follow container names' rule (they are also directory names)."""
    from .containers import NAME_RE

    if not isinstance(name, str) or not NAME_RE.match(name) or len(name) > 255:
        raise InvalidArgument(f"invalid volume name {name!r}: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*")
    return name


def parse_options(options: Mapping[str, str] | None) -> dict[str, Any]:
    """Check the local driver's ``-o`` options; returns ``{"options": as given (keys lower
    case), "uid", "gid", "copy": bool, "mount": (type, device, mount options) or None}``."""
    from .specgen import parse_size

    opts = {str(k).strip().lower(): str(v) for k, v in (options or {}).items()}
    out: dict[str, Any] = {"options": opts, "uid": None, "gid": None, "copy": True, "mount": None}
    for key, value in opts.items():
        if key not in OPTION_KEYS:
            raise InvalidArgument(f"invalid volume option {key!r}: the local driver takes "
                                  f"{', '.join(OPTION_KEYS)}")
        if key in ("copy", "nocopy") and value not in ("", "true"):
            raise InvalidArgument(f"invalid volume option {key}={value!r}: it takes no value")
    if "copy" in opts and "nocopy" in opts:
        raise InvalidArgument("invalid volume options: both copy and nocopy given")
    out["copy"] = "nocopy" not in opts
    fstype = opts.get("type", "").strip()
    device = opts.get("device", "").strip()
    mount_opts: list[str] = []
    for item in (i.strip() for i in opts.get("o", "").split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.lower()
        if key in _OWNER_KEYS:
            if not sep or not value.isdigit():
                raise InvalidArgument(f"invalid volume option o={item!r}: {key} takes a number")
            out[key] = int(value)
            if fstype == "tmpfs":
                mount_opts.append(f"{key}={value}")  # the tmpfs root gets the owner too
        elif key == "size" and fstype != "tmpfs":
            raise InvalidArgument(f"invalid volume option o={item!r}: size needs type=tmpfs "
                                  "(kpod sets no quotas on plain volumes)")
        elif key in ("inodes", "noquota"):
            raise InvalidArgument(f"invalid volume option o={item!r}: quotas are not supported by kpod")
        else:
            if key == "size":
                parse_size(value, what="volume size")
            mount_opts.append(item)
    if "type" in opts and not fstype:
        raise InvalidArgument("invalid volume option type='': expected a file system type")
    if fstype and not all(c.isalnum() or c in "._-" for c in fstype):
        raise InvalidArgument(f"invalid volume option type={fstype!r}: expected a file system type")
    bind = any(o in ("bind", "rbind") for o in mount_opts)
    if fstype == "tmpfs" and not device:
        device = "tmpfs"
    if fstype or device or mount_opts:
        if not device:
            raise InvalidArgument(f"invalid volume options: type={fstype} needs device=" if fstype
                                  else "invalid volume options: mount options (o=) need type= and device=")
        if not fstype and not bind:
            raise InvalidArgument(f"invalid volume options: device={device} needs type= (or o=bind)")
        if bind and not (device.startswith("/") and os.path.isdir(device)):
            raise InvalidArgument(f"invalid volume option device={device!r}: a bind mount needs an "
                                  "existing absolute directory")
        out["mount"] = (fstype, device, ",".join(mount_opts))
    return out


class Volume:
    """One volume: its row and its paths."""

    def __init__(self, mgr: "VolumeManager", row: sqlite3.Row) -> None:
        self.mgr = mgr
        self._load(row)

    def _load(self, row) -> None:
        self.row = dict(row)
        self.name: str = row["name"]
        self.driver: str = row["driver"]
        self.labels: dict[str, str] = json.loads(row["labels"])
        self.options: dict[str, str] = json.loads(row["options"])
        self.uid: int | None = row["uid"]
        self.gid: int | None = row["gid"]
        self.created_at: float = row["created_at"]

    def reload(self) -> None:
        row = self.mgr.db.one("SELECT * FROM volumes WHERE name = ?", (self.name,))
        if row is None:
            raise NotFound(f'no volume with name "{self.name}" found: no such volume')
        self._load(row)

    def __repr__(self) -> str:
        return f"<Volume {self.name}>"

    @property
    def path(self) -> str:
        return os.path.join(self.mgr.root, self.name)

    @property
    def mountpoint(self) -> str:
        return os.path.join(self.path, "_data")

    @property
    def mount_spec(self) -> tuple[str, str, str] | None:
        """(type, device, options) of the file system mounted at the mountpoint, or None."""
        return parse_options(self.options)["mount"]

    def users(self) -> list[str]:
        """IDs of the containers using the volume (created ones included)."""
        return self.mgr.users(self.name)

    def mount_count(self) -> int:
        try:
            return len(os.listdir(self.mgr.users_dir(self.name)))
        except FileNotFoundError:
            return 0

    def inspect(self) -> dict[str, Any]:
        """``kpod volume inspect`` data, shaped like podman's."""
        from .containers import rfc3339

        data: dict[str, Any] = {
            "Name": self.name,
            "Driver": self.driver,
            "Mountpoint": self.mountpoint,
            "CreatedAt": rfc3339(self.created_at),
            "Labels": dict(self.labels),
            "Scope": "local",
            "Options": dict(self.options),
            "MountCount": self.mount_count(),
            "NeedsCopyUp": bool(self.row["needs_copy_up"]),
            "NeedsChown": bool(self.row["needs_chown"]),
        }
        if self.uid is not None:
            data["UID"] = self.uid
        if self.gid is not None:
            data["GID"] = self.gid
        return data


class VolumeManager:
    """The named volumes of one store (``Runtime.volumes``)."""

    def __init__(self, runtime) -> None:
        self.rt = runtime
        self.config = runtime.config
        self.db = runtime.db
        self.containers = runtime.containers  # registers and migrates the containers schema first
        self.db.ensure_schema("volumes", SCHEMA_VERSION)
        self.root = os.path.join(self.config.graphroot, "volumes")
        self.run_root = os.path.join(self.config.runroot, "volumes")

    # -- paths and locks ------------------------------------------------------------------
    def users_dir(self, name: str) -> str:
        return os.path.join(self.run_root, name)

    @contextmanager
    def _store_lock(self) -> Iterator[None]:
        """Create and remove take this one: a name is made (or unmade) by one process at a time."""
        with FileLock(os.path.join(self.config.graphroot, "locks", "volumes.lock")).held():
            yield

    def _volume_lock(self, name: str) -> FileLock:
        return FileLock(os.path.join(self.config.runroot, "locks", f"volume-{name}.lock"))

    # -- lookup ---------------------------------------------------------------------------
    def get(self, name: str) -> Volume:
        """By name, or by a prefix that only one volume's name starts with (as podman)."""
        row = self.db.one("SELECT * FROM volumes WHERE name = ?", (name,)) if name else None
        if row is None and name:
            rows = self.db.read("SELECT * FROM volumes WHERE substr(name, 1, ?) = ?", (len(name), name))
            if len(rows) > 1:
                raise InvalidArgument(f'more than one volume matches "{name}": use the whole name')
            row = rows[0] if rows else None
        if row is None:
            raise NotFound(f'no volume with name "{name}" found: no such volume')
        return Volume(self, row)

    def exists(self, name: str) -> bool:
        return self.db.one("SELECT 1 FROM volumes WHERE name = ?", (name,)) is not None

    def list(self) -> list[Volume]:
        return [Volume(self, r) for r in self.db.read("SELECT * FROM volumes ORDER BY created_at, name")]

    def users(self, name: str) -> list[str]:
        return [r["container_id"] for r in
                self.db.read("SELECT DISTINCT container_id FROM container_volumes WHERE volume = ?", (name,))]

    def in_use(self) -> set[str]:
        """Names of the volumes some container uses."""
        return {r["volume"] for r in self.db.read("SELECT DISTINCT volume FROM container_volumes")}

    # -- create -----------------------------------------------------------------------------
    def create(self, name: str | None = None, *, driver: str = "local", labels: Mapping[str, str] | None = None,
               options: Mapping[str, str] | None = None, ignore: bool = False) -> Volume:
        """Create a volume (a random 64-hex name when *name* is None). An existing name is
        an error (AlreadyExists), or with *ignore* that volume is returned unchanged."""
        return self._create(name, driver, labels, options, exist_ok=ignore)[0]

    def _create(self, name: str | None, driver: str = "local", labels: Mapping[str, str] | None = None,
                options: Mapping[str, str] | None = None, exist_ok: bool = False) -> tuple[Volume, bool]:
        """(the volume, whether this call made it)."""
        name = check_name(name) if name is not None else os.urandom(32).hex()
        if driver not in DRIVERS:
            raise InvalidArgument(f'volume driver "{driver}" is not supported: kpod has the local driver only')
        labels = {str(k): str(v) for k, v in (labels or {}).items()}
        if any(not k for k in labels):
            raise InvalidArgument("invalid volume label: the key cannot be empty")
        parsed = parse_options(options)
        with self._store_lock():
            row = self.db.one("SELECT * FROM volumes WHERE name = ?", (name,))
            if row is not None:
                if exist_ok:
                    return Volume(self, row), False
                raise AlreadyExists(f"volume with name {name} already exists: volume already exists")
            path = os.path.join(self.root, name)
            self._remove_files(name)  # what a killed create or remove left (no row: nobody uses it)
            data = os.path.join(path, "_data")
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            os.makedirs(data, mode=0o755)
            try:
                os.chmod(path, 0o700)
                if parsed["uid"] is not None or parsed["gid"] is not None:
                    os.chown(data, -1 if parsed["uid"] is None else parsed["uid"],
                             -1 if parsed["gid"] is None else parsed["gid"])
                owned = parsed["uid"] is not None or parsed["gid"] is not None
                with self.db.write() as tx:
                    tx.execute(
                        "INSERT INTO volumes(name, driver, labels, options, uid, gid, needs_copy_up, needs_chown, "
                        "created_at) VALUES(?,?,?,?,?,?,?,?,?)",
                        (name, driver, json.dumps(labels), json.dumps(parsed["options"]), parsed["uid"],
                         parsed["gid"], int(parsed["copy"]), int(not owned), time.time()),
                    )
            except BaseException:
                self._remove_files(name)
                raise
            return Volume(self, self.db.one("SELECT * FROM volumes WHERE name = ?", (name,))), True

    def ensure(self, names: list[str]) -> list[str]:
        """The volumes ``create``/``run -v NAME:/dst`` name: made when missing (podman does
        the same); returns the names this call made. Another process making one at the same
        moment is no error: its volume is used."""
        made: list[str] = []
        try:
            for n in dict.fromkeys(names):
                if not self.exists(n) and self._create(n, exist_ok=True)[1]:
                    made.append(n)
        except BaseException:
            self.discard(made)
            raise
        return made

    def discard(self, names: list[str]) -> None:
        """Remove volumes :meth:`ensure` made for a container that was not created (unless
        something uses them by now)."""
        for n in names:
            try:
                self.remove(n)
            except KpodError as exc:
                log.info("volume %s: %s", n, exc)

    # -- remove -----------------------------------------------------------------------------
    def remove(self, name: str, force: bool = False, timeout: int | None = None) -> str:
        """Remove a volume and its data; returns its name. One in use by containers is
        refused (InUse) unless *force*, which removes those containers first (podman's
        ``volume rm -f``)."""
        vol = self.get(name)
        if force:
            for cid in vol.users():
                try:
                    self.containers.get(cid).remove(force=True, timeout=timeout)
                except NotFound:
                    continue
        with self._store_lock():
            users = vol.users()
            if users:
                raise InUse(f"volume {vol.name} is being used by the following container(s): "
                            f"{', '.join(users)}: volume is being used", exit_code=2)
            try:
                with self.db.write() as tx:
                    if tx.execute("DELETE FROM volumes WHERE name = ?", (vol.name,)).rowcount == 0:
                        raise NotFound(f'no volume with name "{vol.name}" found: no such volume')
            except sqlite3.IntegrityError:  # a container was created with it meanwhile
                raise InUse(f"volume {vol.name} is being used by a container: volume is being used",
                            exit_code=2) from None
            self._remove_files(vol.name)
        return vol.name

    def _remove_files(self, name: str) -> None:
        """Delete a volume's directories: never through a mount (a stale one is detached
        first; one that stays is an error and nothing is deleted)."""
        import shutil

        from .graphdriver import mountpoints_under, umount

        path = os.path.join(self.root, name)
        if not os.path.lexists(path):
            return
        for mp in mountpoints_under(path):
            umount(mp)
        left = mountpoints_under(path)
        if left:
            raise StorageError(f"volume {name}: {left[0]} is still mounted; not removing its data")
        shutil.rmtree(path)
        shutil.rmtree(self.users_dir(name), ignore_errors=True)
        try:
            os.unlink(self._volume_lock(name).path)
        except FileNotFoundError:
            pass

    def prune(self, matches=None) -> list[str]:
        """Remove every volume no container uses (and *matches(volume)* accepts); returns
        their names. Directories a killed create or remove left are removed too."""
        removed = []
        for vol in self.list():
            if vol.users() or (matches is not None and not matches(vol)):
                continue
            try:
                removed.append(self.remove(vol.name))
            except (InUse, NotFound):
                continue
        self.sweep()
        return removed

    def sweep(self) -> int:
        """Remove volume directories without a row (a create or remove killed half way)."""
        n = 0
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return 0
        with self._store_lock():
            known = {r["name"] for r in self.db.read("SELECT name FROM volumes")}
            for d in names:
                if d not in known:
                    try:
                        self._remove_files(d)
                        n += 1
                    except (OSError, KpodError) as exc:
                        log.warning("removing leftover volume directory %s: %s", d, exc)
        return n

    # -- containers -------------------------------------------------------------------------
    def record_uses(self, tx, container_id: str, uses: list[dict[str, Any]]) -> None:
        """Inside the container's create transaction: its ``container_volumes`` rows."""
        tx.executemany("INSERT INTO container_volumes(container_id, volume, destination) VALUES(?,?,?)",
                       [(container_id, u["name"], u["destination"]) for u in uses])

    def prepare(self, c, rootfs: str) -> None:
        """At a container's start (its lock held, *rootfs* mounted): mount the volumes that
        have mount options (counted per container), then each volume's first-use chown and
        copy-up from the image. :meth:`release` undoes the mounts."""
        from .containers import fill_volume

        user = (c.spec().get("process") or {}).get("user") or {}
        owner = (int(user.get("uid", 0)), int(user.get("gid", 0)))
        for use in c.config.get("named_volumes") or []:
            vol = self.get_exact(use["name"])
            lock = self._volume_lock(vol.name)
            with lock.held():
                spec = vol.mount_spec
                if spec is not None:
                    self._mount(vol, spec, c.id)
                vol.reload()
                chown = bool(vol.row["needs_chown"])
                copy = bool(vol.row["needs_copy_up"]) and use.get("copy", True)
                if not (chown or copy):
                    continue
                if copy and os.listdir(vol.mountpoint):
                    copy = False  # podman copies up into an empty volume only
                if chown or copy:
                    fill_volume(rootfs, use["destination"], vol.mountpoint, owner, chown=chown, copy=copy,
                                what="volume")
                with self.db.write() as tx:
                    tx.execute("UPDATE volumes SET needs_chown = 0" + (", needs_copy_up = 0" if use.get("copy", True)
                                                                        else "") + " WHERE name = ?", (vol.name,))

    def get_exact(self, name: str) -> Volume:
        row = self.db.one("SELECT * FROM volumes WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f'no volume with name "{name}" found: no such volume')
        return Volume(self, row)

    def _mount(self, vol: Volume, spec: tuple[str, str, str], container_id: str) -> None:
        """Mount *vol*'s file system for *container_id* (volume lock held)."""
        import subprocess

        from .graphdriver import is_mountpoint

        users = self.users_dir(vol.name)
        os.makedirs(users, mode=0o700, exist_ok=True)
        if not is_mountpoint(vol.mountpoint):
            fstype, device, opts = spec
            cmd = ["mount", *(["-t", fstype] if fstype else []), *(["-o", opts] if opts else []), device,
                   vol.mountpoint]
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            except (OSError, subprocess.SubprocessError) as exc:
                raise StorageError(f"mounting volume {vol.name}: {exc}") from None
            if p.returncode != 0:
                msg = (p.stderr or p.stdout).strip() or f"mount exited {p.returncode}"
                raise StorageError(f"mounting volume {vol.name}: {msg}")
        with open(os.path.join(users, container_id), "w"):
            pass

    def release(self, c) -> None:
        """A container no longer holds its volumes' mounts (teardown; idempotent): the last
        holder unmounts."""
        from .graphdriver import umount

        for use in c.config.get("named_volumes") or []:
            name = use["name"]
            users = self.users_dir(name)
            if not os.path.isdir(users):
                continue
            with self._volume_lock(name).held():
                try:
                    os.unlink(os.path.join(users, c.id))
                except FileNotFoundError:
                    pass
                if not os.listdir(users):
                    umount(os.path.join(self.root, name, "_data"))
                    try:
                        os.rmdir(users)
                    except OSError:
                        pass
