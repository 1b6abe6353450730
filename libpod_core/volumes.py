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
  mounted there on the host while containers using it run (and while ``volume mount``
  holds it, or an export or import runs). ``<graphroot>/volumes/<NAME>/.kpod-import-*``:
  an import's extraction directory (see :meth:`VolumeManager.import_tar`).
* ``<runroot>/volumes/<NAME>/<holder>``: who holds that mount (per boot, like the mount;
  the last one out unmounts it): running containers (their ID), ``kpod volume mount``
  (``mount.N``, one a call, given back by ``volume unmount``) and a running export or
  import (``pid.<PID>.<random>``; one whose process is gone does not count).
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
import stat
import time
from contextlib import contextmanager
from typing import IO, Any, Iterator, Mapping

from . import containers as _containers  # noqa: F401 - the containers schema comes before ours
from .errors import AlreadyExists, InUse, InvalidArgument, InvalidLayer, KpodError, NotFound, StorageError
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


def _event(status: str, name: str, config) -> None:
    """Record a volume event (:mod:`libpod_core.events`; never fails)."""
    from .events import volume as record

    record(config, status, name)


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
            _event("create", name, self.config)
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
        _event("remove", vol.name, self.config)
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
            _event("prune", vol.name, self.config)  # podman: remove, then prune
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
        for use in c.config.get("named_volumes") or []:
            name = use["name"]
            if not os.path.isdir(self.users_dir(name)):
                continue
            with self._volume_lock(name).held():
                self._let_go(name, c.id)

    def _let_go(self, name: str, holder: str) -> None:
        """Drop *holder* from the volume's mount holders (volume lock held); with none left
        (holders of dead kpod processes do not count), unmount. Idempotent."""
        from .graphdriver import umount

        users = self.users_dir(name)
        try:
            os.unlink(os.path.join(users, holder))
        except FileNotFoundError:
            pass
        try:
            left = os.listdir(users)
        except FileNotFoundError:
            return
        stale = [h for h in left if h.startswith(_PID_HOLDER) and not _alive(h[len(_PID_HOLDER):].partition(".")[0])]
        for h in stale:  # an export or import killed half way
            os.unlink(os.path.join(users, h))
        if len(stale) == len(left):
            umount(os.path.join(self.root, name, "_data"))
            try:
                os.rmdir(users)
            except OSError:
                pass

    # -- kpod volume mount / unmount / export / import ----------------------------------------
    def mount(self, name: str) -> str:
        """``kpod volume mount``: returns the volume's mountpoint. A volume with mount options
        gets its file system mounted there, counted as one more holder (``mount.N``) beside
        the running containers', until :meth:`unmount`; a plain one is just a directory."""
        vol = self.get(name)
        spec = vol.mount_spec
        if spec is not None:
            with self._volume_lock(vol.name).held():
                self._mount(vol, spec, f"{_MOUNT_HOLDER}{max(self._manual_mounts(vol.name), default=0) + 1}")
        return vol.mountpoint

    def unmount(self, name: str) -> str:
        """``kpod volume unmount``: give back one :meth:`mount` (the last holder unmounts);
        returns the volume's name. Nothing to give back is no error (as podman); the
        mounts running containers hold are theirs and never taken."""
        vol = self.get(name)
        if vol.mount_spec is not None:
            with self._volume_lock(vol.name).held():
                held = self._manual_mounts(vol.name)
                if held:
                    self._let_go(vol.name, f"{_MOUNT_HOLDER}{max(held)}")
        return vol.name

    def _manual_mounts(self, name: str) -> list[int]:
        try:
            names = os.listdir(self.users_dir(name))
        except FileNotFoundError:
            return []
        return [int(h[len(_MOUNT_HOLDER):]) for h in names
                if h.startswith(_MOUNT_HOLDER) and h[len(_MOUNT_HOLDER):].isdigit()]

    @contextmanager
    def _mounted(self, vol: Volume) -> Iterator[str]:
        """The volume's data directory for the duration of an export or import: a volume
        with mount options is mounted (a holder named after this process) and let go after."""
        spec = vol.mount_spec
        if spec is None:
            yield vol.mountpoint
            return
        holder = f"{_PID_HOLDER}{os.getpid()}.{os.urandom(4).hex()}"
        with self._volume_lock(vol.name).held():
            self._mount(vol, spec, holder)
        try:
            yield vol.mountpoint
        finally:
            with self._volume_lock(vol.name).held():
                self._let_go(vol.name, holder)

    def export(self, name: str, out: IO[bytes]) -> int:
        """``kpod volume export``: the volume's data directory as an uncompressed tar on
        *out*, entries relative to it (the writer of ``kpod export`` and ``kpod cp``, which
        reads through held descriptors and never follows a symlink). Returns the number of
        entries."""
        from .copyfiles import SafeRoot, write_tar

        vol = self.get(name)
        with self._mounted(vol) as data:
            try:
                with SafeRoot(data) as root:
                    return write_tar(out, root, "/", None)
            except BrokenPipeError:
                raise
            except OSError as exc:
                raise StorageError(f"exporting volume {vol.name}: {exc.strerror or exc}") from None

    def import_tar(self, name: str, stream: IO[bytes]) -> None:
        """``kpod volume import``: merge a tar (plain, gzip, zstd, bzip2 or xz) into the volume;
        the archive's entries win over the volume's (podman's rule).

        The archive is untrusted. It is first extracted whole by the layer extractor
        (:func:`libpod_core.tarapply.apply_layer`: no absolute or escaping names, no writing
        through symlinks, corrupt or truncated data refused) into a private directory on the
        volume's file system; only when that succeeded are its entries moved into the data
        directory, one rename(2) each, through held directory descriptors. So a hostile or
        broken archive is an error that leaves the volume as it was."""
        import lzma
        import shutil
        import tempfile

        from .graphdriver import is_mountpoint
        from .tarapply import apply_layer

        vol = self.get(name)
        with self._mounted(vol) as data:
            # next to _data, or inside it when it is a mount (rename(2) does not cross mounts)
            here = data if is_mountpoint(data) else vol.path
            _sweep_imports(here)
            stage = tempfile.mkdtemp(prefix=f"{_IMPORT_PREFIX}{os.getpid()}.", dir=here)
            # Inside a mounted volume, containers using it see this directory and could put a
            # symlink in its place: after this open it is used through the descriptor only.
            try:
                sfd = os.open(stage, _DIR_FLAGS)
            except BaseException:
                shutil.rmtree(stage, ignore_errors=True)
                raise
            try:
                st = os.stat(data)  # the root keeps its metadata unless the archive has a "." entry
                _set_dir_meta(sfd, st)
                implicit: set[str] = set()  # parents the archive has no entry for: called for each
                try:
                    apply_layer(_decompressing(stream), f"/proc/self/fd/{sfd}", whiteout_format="vfs",
                                parent_lookup=lambda rel: implicit.add(rel))
                except KpodError as exc:
                    raise type(exc)(f"extracting into volume {vol.name}: {exc.message}") from None
                except (lzma.LZMAError, EOFError) as exc:  # what the xz reader raises past the extractor
                    raise InvalidLayer(f"extracting into volume {vol.name}: invalid compressed data: {exc}") from None
                try:
                    _merge_tree(sfd, data, implicit)
                except OSError as exc:
                    raise StorageError(f"importing into volume {vol.name} (partly done): "
                                       f"{exc.strerror or exc}") from None
            finally:
                os.close(sfd)
                shutil.rmtree(stage, ignore_errors=True)


#: holder files in ``<runroot>/volumes/<NAME>/`` besides container IDs: ``kpod volume mount``'s
#: (numbered) and a running export's or import's (``pid.<PID>.<random>``)
_MOUNT_HOLDER = "mount."
_PID_HOLDER = "pid."
#: an import's private extraction directory: ``.kpod-import-<PID>.<random>``
_IMPORT_PREFIX = ".kpod-import-"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _alive(pid: str) -> bool:
    """Whether process *pid* (a decimal string) exists; anything unparsable counts as alive."""
    if not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _sweep_imports(directory: str) -> None:
    """Remove the extraction directories of imports whose kpod process is gone."""
    import shutil

    for entry in os.listdir(directory):
        if entry.startswith(_IMPORT_PREFIX) and not _alive(entry[len(_IMPORT_PREFIX):].partition(".")[0]):
            shutil.rmtree(os.path.join(directory, entry), ignore_errors=True)


def _decompressing(stream: IO[bytes]):
    """*stream* for the layer extractor, which reads plain, gzip and zstd tar itself: bzip2
    and xz (which podman takes too) are decompressed here."""
    import bz2
    import lzma

    from .digest import _Source  # the bytes read to look, then the rest

    head = b""
    while len(head) < 10:  # a pipe may give less at a time
        chunk = stream.read(10 - len(head))
        if not chunk:
            break
        head += chunk
    src = _Source(head, stream)
    if head[:3] == b"BZh" and head[4:10] in (b"\x31\x41\x59\x26\x53\x59", b"\x17\x72\x45\x38\x50\x90"):
        return bz2.BZ2File(src)
    if head[:6] == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(src)
    return src


def _set_dir_meta(fd: int, st: os.stat_result) -> None:
    os.fchown(fd, st.st_uid, st.st_gid)
    os.fchmod(fd, stat.S_IMODE(st.st_mode))  # after chown, which clears setuid/setgid
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _merge_tree(src_fd: int, dst: str, implicit: set[str] = frozenset()) -> None:
    """Move everything in the directory open as *src_fd* into directory *dst* (one file
    system). A directory over a directory merges and then takes the moved one's owner, mode
    and times, unless its relative path is in *implicit* (made only as a parent: the one in
    *dst* keeps its own); anything else replaces what is in *dst* by a rename (a directory
    in the way is removed first). Every step is relative to a directory descriptor opened without
    following symlinks, so a symlink in *dst* (a container may change the volume meanwhile)
    is replaced, never followed."""
    import shutil

    root_st = os.fstat(src_fd)
    sfd = os.dup(src_fd)
    stack: list[tuple[int, int, list[str], os.stat_result | None, str]] = []
    try:
        names = os.listdir(sfd)
        stack.append((sfd, os.open(dst, _DIR_FLAGS), names, root_st, ""))
        sfd = -1
        while stack:
            s, d, names, meta, rel = stack[-1]
            if not names:
                if meta is not None:
                    _set_dir_meta(d, meta)
                stack.pop()
                os.close(s)
                os.close(d)
                continue
            name = names.pop()
            sst = os.stat(name, dir_fd=s, follow_symlinks=False)
            is_dir = stat.S_ISDIR(sst.st_mode)
            try:
                old = os.stat(name, dir_fd=d, follow_symlinks=False)
            except FileNotFoundError:
                old = None
            if old is not None and stat.S_ISDIR(old.st_mode):
                if is_dir:
                    s2 = os.open(name, _DIR_FLAGS, dir_fd=s)
                    try:
                        inner = os.listdir(s2)
                        d2 = os.open(name, _DIR_FLAGS, dir_fd=d)
                    except BaseException:
                        os.close(s2)
                        raise
                    sub = f"{rel}/{name}" if rel else name
                    stack.append((s2, d2, inner, None if sub in implicit else sst, sub))
                    continue
                shutil.rmtree(name, dir_fd=d)
            elif old is not None and is_dir:
                os.unlink(name, dir_fd=d)  # rename(2) puts a directory over a directory only
            os.rename(name, name, src_dir_fd=s, dst_dir_fd=d)
            if is_dir:  # a moved directory keeps the archive's times
                os.utime(name, ns=(sst.st_atime_ns, sst.st_mtime_ns), dir_fd=d, follow_symlinks=False)
    finally:
        if sfd >= 0:
            os.close(sfd)
        for s, d, *_rest in stack:
            os.close(s)
            os.close(d)
