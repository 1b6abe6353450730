"""Shared pieces for storage (graph) drivers: layer IDs, locks, mount counts, mounts.

A driver keeps its data in ``<graphroot>/<name>``; per-boot mount reference counts live in
``<runroot>/<name>-mounts`` so that a reboot (a missing runroot) resets them with the mounts.
"""

from __future__ import annotations

import errno
import fcntl
import os
from contextlib import contextmanager
from typing import Iterator

import pluggy

from .errors import AlreadyExists, ConfigError, InvalidArgument, NotFound, StorageError
from .lazyre import lazy

hookimpl = pluggy.HookimplMarker("kpod")

_ID = lazy(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

MNT_DETACH = 2
_libc = None


def libc():
    """The C library, through ctypes (loaded on first use)."""
    global _libc
    if _libc is None:
        import ctypes

        try:
            _libc = ctypes.CDLL("libc.so.6", use_errno=True)
        except OSError:  # not glibc: ask the loader (find_library runs ldconfig: slow)
            import ctypes.util

            _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    return _libc


def errno_() -> int:
    import ctypes

    return ctypes.get_errno()


def mount(source: str, target: str, fstype: str, data: str, flags: int = 0) -> None:
    """mount(2) directly (no mount(8) process); raises StorageError."""
    import ctypes

    if libc().mount(os.fsencode(source), os.fsencode(target), fstype.encode(), ctypes.c_ulong(flags),
                    data.encode()) != 0:
        err = errno_()
        raise StorageError(f"mount {fstype} on {target}: {os.strerror(err)}")


def umount(path: str, detach: bool = True) -> None:
    """umount2(path, MNT_DETACH); a path that is not mounted is not an error."""
    if libc().umount2(os.fsencode(path), MNT_DETACH if detach else 0) != 0:
        err = errno_()
        if err in (errno.EINVAL, errno.ENOENT):
            return
        raise StorageError(f"unmount {path}: {os.strerror(err)}")


def mountpoints_under(prefix: str) -> list[str]:
    """Mount points at or below *prefix*, deepest first (from /proc/self/mountinfo)."""
    prefix = prefix.rstrip("/")
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == prefix or mp.startswith(prefix + "/"):
                out.append(mp)
    return sorted(set(out), key=len, reverse=True)


def is_mountpoint(path: str) -> bool:
    return path.rstrip("/") in mountpoints_under(path)


def fs_type(path: str) -> str:
    import subprocess

    try:
        out = subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True, timeout=10).stdout
        return out.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def dir_size(path: str) -> int:
    total = 0
    seen: set[tuple[int, int]] = set()
    for root, dirs, files in os.walk(path):
        for n in files + dirs:
            try:
                st = os.lstat(os.path.join(root, n))
            except OSError:
                continue
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
            total += st.st_blocks * 512 if st.st_blocks else st.st_size
    return total


def rmtree(path: str) -> None:
    """Remove a tree, tolerating its absence."""
    if os.path.lexists(path):
        if os.path.isdir(path) and not os.path.islink(path):
            import shutil

            shutil.rmtree(path, ignore_errors=False, onerror=_rm_error)
        else:
            os.unlink(path)


def _rm_error(func, path, exc_info) -> None:
    exc = exc_info[1]
    if isinstance(exc, FileNotFoundError):
        return
    raise StorageError(f"remove {path}: {exc}") from None


class GraphDriverBase:
    """Common state of the overlay and vfs drivers."""

    name = "base"
    #: storage options this driver accepts (``<name>.<key>``)
    options: tuple[str, ...] = ()

    def __init__(self, config) -> None:
        self.config = config
        self.home = os.path.join(config.graphroot, self.name)
        self.mount_counts = os.path.join(config.runroot, f"{self.name}-mounts")
        self.opts: dict[str, str] = {}
        for key, value in config.storage_options().items():
            drv, _, opt = key.partition(".")
            if drv != self.name:
                continue
            if opt not in self.options:
                raise ConfigError(
                    f"storage option {key!r} is not known to the {self.name} driver "
                    f"(known: {', '.join(self.name + '.' + o for o in self.options) or 'none'})"
                )
            self.opts[opt] = value
        os.makedirs(self.home, mode=0o700, exist_ok=True)

    # -- ids and paths ------------------------------------------------------------------
    @staticmethod
    def check_id(layer_id: str) -> str:
        if not isinstance(layer_id, str) or not _ID.match(layer_id) or layer_id in (".", ".."):
            raise InvalidArgument(f"invalid layer ID {layer_id!r}")
        return layer_id

    def layer_dir(self, layer_id: str) -> str:
        return os.path.join(self.home, self.check_id(layer_id))

    def require(self, layer_id: str) -> str:
        d = self.layer_dir(layer_id)
        if not os.path.isdir(d):
            raise NotFound(f"layer {layer_id} does not exist in the {self.name} driver")
        return d

    def new_layer_dir(self, layer_id: str) -> str:
        d = self.layer_dir(layer_id)
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            raise AlreadyExists(f"layer {layer_id} already exists") from None
        return d

    # -- mount reference counts ---------------------------------------------------------
    @contextmanager
    def locked(self, layer_id: str) -> Iterator[str]:
        """Hold the per-layer lock; yields the count file path."""
        os.makedirs(self.mount_counts, mode=0o700, exist_ok=True)
        path = os.path.join(self.mount_counts, self.check_id(layer_id))
        fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield path
        finally:
            os.close(fd)

    @staticmethod
    def read_count(path: str) -> int:
        try:
            with open(path) as f:
                return int(f.read().strip() or 0)
        except (OSError, ValueError):
            return 0

    @staticmethod
    def write_count(path: str, n: int) -> None:
        if n <= 0:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            return
        from .fileutil import write_atomic

        write_atomic(path, str(n))

    def drop_counts(self, layer_id: str) -> None:
        for suffix in ("", ".lock"):
            try:
                os.unlink(os.path.join(self.mount_counts, layer_id) + suffix)
            except FileNotFoundError:
                pass

    # -- shared hooks -------------------------------------------------------------------
    @hookimpl
    def storage_exists(self, layer_id):
        return os.path.isdir(self.layer_dir(layer_id))

    @hookimpl
    def storage_list_layers(self):
        out = []
        for name in os.listdir(self.home):
            if _ID.match(name) and os.path.isdir(os.path.join(self.home, name)) and name != "l":
                out.append(name)
        return sorted(out)

    @hookimpl
    def storage_cleanup(self):
        for mp in mountpoints_under(self.home):
            umount(mp)
        rmtree(self.mount_counts)
        return True
