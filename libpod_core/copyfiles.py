"""Copying files into and out of a container's root filesystem without ever leaving it.

A container's filesystem is hostile ground: anything in it may be a symlink meant to send a
host-side reader or writer elsewhere (``/etc -> /``, ``x -> ../../../../``, an absolute link
to a host path). :class:`SafeRoot` resolves every path *inside* a root directory, the way the
container itself would see it:

* with ``openat2(2)`` and ``RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV`` when
  the kernel has it (Linux 5.6+): the kernel treats the root descriptor as ``/`` for
  absolute symlinks and ``..``;
* otherwise component by component: each component is opened with ``O_PATH | O_NOFOLLOW``
  relative to the descriptor of its parent, symlinks are read and re-rooted at the
  container's root (absolute targets restart there, ``..`` never climbs above it), at most
  40 links per lookup.

Everything after the lookup uses ``*at()`` calls on held descriptors, so renames racing with
a copy cannot redirect it outside the root either. Regular files are opened with
``O_NOFOLLOW`` and checked with ``fstat`` before being read; special files are never opened.

:func:`write_tar` streams a path of a :class:`SafeRoot` as a tar archive; :func:`extract_tar`
extracts a tar stream into a directory of a :class:`SafeRoot` (entries with ``..`` that would
leave the destination are refused; symlinks in the archive are created as symlinks, never
written through outside the root). :func:`copy` implements ``kpod cp`` on top of both.
"""

from __future__ import annotations

import ctypes
import errno
import os
import posixpath
import stat
import tarfile
import tempfile
from contextlib import contextmanager
from typing import IO, Iterator

from .errors import InvalidArgument, KpodError, NotFound

__all__ = ["SafeRoot", "write_tar", "extract_tar", "copy", "parse_location", "mounted_rootfs", "export"]

# -- openat2 ------------------------------------------------------------------------------

SYS_OPENAT2 = 437  # the same number on every architecture that has it
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
MAX_SYMLINKS = 40

_O_PATH = getattr(os, "O_PATH", 0o10000000)
_O_CLOEXEC = os.O_CLOEXEC


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_openat2_ok: bool | None = None


def _get_libc():
    from .graphdriver import libc

    return libc()


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """The ``openat2(2)`` system call; raises OSError (ENOSYS when the kernel lacks it)."""
    how = _OpenHow(flags | _O_CLOEXEC, mode, resolve)
    raw = os.fsencode(path)
    for _ in range(16):
        fd = _get_libc().syscall(ctypes.c_long(SYS_OPENAT2), ctypes.c_int(dirfd), ctypes.c_char_p(raw),
                                 ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err not in (errno.EAGAIN, errno.EINTR):  # EAGAIN: a rename raced with RESOLVE_IN_ROOT
            raise OSError(err, os.strerror(err), path)
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN), path)


def have_openat2() -> bool:
    global _openat2_ok
    if _openat2_ok is None:
        try:
            fd = openat2(-100, "/", _O_PATH, resolve=RESOLVE_IN_ROOT)  # AT_FDCWD
            os.close(fd)
            _openat2_ok = True
        except OSError:
            _openat2_ok = False
    return _openat2_ok


def _components(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def clean(path: str) -> str:
    """A container path, absolute and lexically normalised (``..`` cannot climb above /)."""
    out = posixpath.normpath("/" + path)
    return "/" + out.lstrip("/")


class SafeRoot:
    """A directory treated as ``/``: lookups never leave it (see the module docstring)."""

    def __init__(self, path: str, *, use_openat2: bool | None = None, same_mount: bool = True) -> None:
        """*same_mount* refuses lookups that cross a mount point (a container's root is one
        filesystem as the host sees it); the host's ``/`` as a root sets it false."""
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | _O_CLOEXEC)
        self.use_openat2 = have_openat2() if use_openat2 is None else use_openat2
        #: the kernel's file systems inside a running container's root (its /proc, /sys):
        #: nothing is written there, and a tree copied out of the root skips their contents
        self.no_write_devs: set[int] = set()
        self.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | (RESOLVE_NO_XDEV if same_mount else 0)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "SafeRoot":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- lookups ----------------------------------------------------------------------------
    def open_path(self, path: str, *, follow: bool = True) -> int:
        """An ``O_PATH`` descriptor for *path* resolved inside the root. With *follow* false
        a final symlink is not followed (the descriptor is the link itself)."""
        rel = "/".join(_components(path)) or "."
        if self.use_openat2:
            flags = _O_PATH | (0 if follow else os.O_NOFOLLOW)
            return openat2(self.fd, rel, flags, resolve=self.resolve)
        return self._walk(path, follow)

    def _walk(self, path: str, follow: bool) -> int:
        """The portable lookup: one ``O_PATH|O_NOFOLLOW`` open per component, symlinks
        re-rooted here, ``..`` handled on the stack of held descriptors."""
        stack = [os.dup(self.fd)]
        todo = _components(path)
        links = 0
        try:
            while todo:
                comp = todo.pop(0)
                if comp == "..":
                    if len(stack) > 1:
                        os.close(stack.pop())
                    continue
                fd = os.open(comp, _O_PATH | os.O_NOFOLLOW | _O_CLOEXEC, dir_fd=stack[-1])
                st = os.fstat(fd)
                if stat.S_ISLNK(st.st_mode) and (todo or follow):
                    try:
                        target = os.readlink("", dir_fd=fd)
                    finally:
                        os.close(fd)
                    links += 1
                    if links > MAX_SYMLINKS:
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                    if target.startswith("/"):
                        while len(stack) > 1:
                            os.close(stack.pop())
                    todo = _components(target) + todo
                    continue
                if todo and not stat.S_ISDIR(st.st_mode):
                    os.close(fd)
                    raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
                stack.append(fd)
            return stack.pop()
        finally:
            for fd in stack:
                os.close(fd)

    def lstat(self, path: str, follow: bool = True) -> os.stat_result:
        fd = self.open_path(path, follow=follow)
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def exists(self, path: str, follow: bool = True) -> bool:
        try:
            self.lstat(path, follow)
            return True
        except FileNotFoundError:
            return False

    def parent(self, path: str) -> tuple[int, str]:
        """(O_PATH descriptor of the resolved parent directory, final name) of *path*."""
        path = clean(path)
        head, name = posixpath.split(path)
        return self._writable_dir(self.open_path(head, follow=True), head), name

    def _writable_dir(self, fd: int, path: str) -> int:
        """*fd* if it is a directory copies may write into; else closed, and an error."""
        st = os.fstat(fd)
        if not stat.S_ISDIR(st.st_mode):
            os.close(fd)
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
        if st.st_dev in self.no_write_devs:
            os.close(fd)
            raise CopyError(f'"{path}" is on the container\'s /proc or /sys: kpod cp does not write there')
        return fd

    def ensure_dir(self, path: str, mode: int = 0o755, _hops: int = 0) -> int:
        """``mkdir -p`` inside the root; returns an O_PATH descriptor of the directory.
        A dangling symlink on the way is followed the way the container would: its target
        (re-rooted here) is created."""
        path = clean(path)
        if _hops > MAX_SYMLINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
        for _ in range(8):
            try:
                fd = self.open_path(path, follow=True)
            except FileNotFoundError:
                fd = -1
            if fd >= 0:
                return self._writable_dir(fd, path)
            head, name = posixpath.split(path)
            pfd = self.ensure_dir(head, mode, _hops)
            try:
                os.mkdir(name, mode, dir_fd=pfd)
            except FileExistsError:
                try:  # a dangling symlink: create what it points to
                    target = os.readlink(name, dir_fd=pfd)
                except OSError:
                    continue  # made meanwhile: look again
                os.close(pfd)
                pfd = -1
                return self.ensure_dir(posixpath.join(head, target), mode, _hops + 1)
            finally:
                if pfd >= 0:
                    os.close(pfd)
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)

    def read_small_file(self, path: str, limit: int = 4 << 20) -> bytes | None:
        """A small regular file's bytes (None if missing or not a regular file)."""
        try:
            pfd = self.open_path(path, follow=True)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            if not stat.S_ISREG(os.fstat(pfd).st_mode):
                return None
            fd = os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_NONBLOCK | _O_CLOEXEC)
        finally:
            os.close(pfd)
        try:
            return os.read(fd, limit)
        finally:
            os.close(fd)


def reopen(path_fd: int, flags: int = os.O_RDONLY) -> int:
    """A real descriptor for an O_PATH one (the same inode; no lookup by name)."""
    if flags & os.O_DIRECTORY:
        return os.open(".", flags | _O_CLOEXEC, dir_fd=path_fd)
    return os.open(f"/proc/self/fd/{path_fd}", flags | _O_CLOEXEC)


# -- tar out --------------------------------------------------------------------------------

class _SizedReader:
    """Exactly *size* bytes of *fd*: zero-padded if the file shrank, cut if it grew (a
    running container may change files while they are copied)."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.left = size

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        n = self.left if n is None or n < 0 else min(n, self.left)
        chunks, got = [], 0
        while got < n:
            data = os.read(self.fd, n - got)
            if not data:
                chunks.append(b"\0" * (n - got))
                break
            chunks.append(data)
            got += len(data)
        self.left -= n
        return b"".join(chunks)


def _tarinfo(name: str, st: os.stat_result, *, link: str = "", chown: tuple[int, int] | None = None) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = (chown if chown is not None else (st.st_uid, st.st_gid))
    ti.uname = ti.gname = ""
    ti.mtime = int(st.st_mtime)
    m = st.st_mode
    if stat.S_ISREG(m):
        ti.type = tarfile.REGTYPE
        ti.size = st.st_size
    elif stat.S_ISDIR(m):
        ti.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(m):
        ti.type = tarfile.SYMTYPE
        ti.linkname = link
    elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
        ti.type = tarfile.CHRTYPE if stat.S_ISCHR(m) else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(m):
        ti.type = tarfile.FIFOTYPE
    else:
        return None  # sockets are skipped, like docker
    return ti


def write_tar(out: IO[bytes], root: SafeRoot, path: str, arcname: str | None, *,
              follow: bool = True, chown: tuple[int, int] | None = None) -> int:
    """Write *path* (resolved inside *root*) as a tar stream to *out*.

    *arcname* names the top entry; None writes a directory's contents only (entries
    relative to it, no entry for the directory itself). Returns the number of entries.
    """
    top = root.open_path(path, follow=follow)
    count = 0
    links: dict[tuple[int, int], str] = {}
    tf = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape")
    try:
        st = os.fstat(top)
        if not stat.S_ISDIR(st.st_mode):
            if arcname is None:
                arcname = posixpath.basename(clean(path)) or "."
            ti = _tarinfo(arcname, st, chown=chown,
                          link=os.readlink("", dir_fd=top) if stat.S_ISLNK(st.st_mode) else "")
            if ti is not None:
                if ti.isreg():
                    fd = reopen(top, os.O_RDONLY | os.O_NONBLOCK)
                    try:
                        tf.addfile(ti, _SizedReader(fd, ti.size))
                    finally:
                        os.close(fd)
                else:
                    tf.addfile(ti)
                count += 1
            return count
        dfd = reopen(top, os.O_RDONLY | os.O_DIRECTORY)
        if arcname is not None:
            tf.addfile(_tarinfo(arcname, st, chown=chown))
            count += 1
        prefix = "" if arcname is None else arcname.rstrip("/") + "/"
        # depth-first, names sorted: the same tree always gives the same archive
        stack: list[tuple[int, str, list[str]]] = [(dfd, prefix, sorted(os.listdir(dfd), reverse=True))]
        while stack:
            cur, pre, names = stack[-1]
            if not names:
                os.close(cur)
                stack.pop()
                continue
            name = names.pop()
            try:
                est = os.stat(name, dir_fd=cur, follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed while we copy
            arc = pre + name
            m = est.st_mode
            if stat.S_ISDIR(m):
                try:
                    sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _O_CLOEXEC, dir_fd=cur)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        continue  # swapped for a symlink meanwhile: not followed
                    raise
                sst = os.fstat(sub)
                tf.addfile(_tarinfo(arc, sst, chown=chown))
                count += 1
                if sst.st_dev in root.no_write_devs:
                    os.close(sub)  # a running container's /proc, /sys: the directory, not the kernel's files
                    continue
                stack.append((sub, arc + "/", sorted(os.listdir(sub), reverse=True)))
                continue
            if stat.S_ISREG(m):
                try:
                    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _O_CLOEXEC, dir_fd=cur)
                except (FileNotFoundError, OSError) as exc:
                    if isinstance(exc, FileNotFoundError) or exc.errno == errno.ELOOP:
                        continue
                    raise
                try:
                    fst = os.fstat(fd)
                    if not stat.S_ISREG(fst.st_mode):
                        continue
                    key = (fst.st_dev, fst.st_ino)
                    if fst.st_nlink > 1 and key in links:
                        ti = _tarinfo(arc, fst, chown=chown)
                        ti.type, ti.linkname, ti.size = tarfile.LNKTYPE, links[key], 0
                        tf.addfile(ti)
                    else:
                        if fst.st_nlink > 1:
                            links[key] = arc
                        ti = _tarinfo(arc, fst, chown=chown)
                        tf.addfile(ti, _SizedReader(fd, ti.size))
                    count += 1
                finally:
                    os.close(fd)
                continue
            link = ""
            if stat.S_ISLNK(m):
                try:
                    link = os.readlink(name, dir_fd=cur)
                except OSError:
                    continue
            ti = _tarinfo(arc, est, link=link, chown=chown)
            if ti is not None:
                tf.addfile(ti)
                count += 1
        return count
    finally:
        os.close(top)
        tf.close()


# -- tar in ---------------------------------------------------------------------------------

class CopyError(KpodError):
    pass


def _entry_parts(name: str) -> list[str] | None:
    """The components of a tar entry name inside the destination; None for the root entry.
    Names that climb out of the destination are refused."""
    norm = posixpath.normpath("/" + name)  # a leading / or ./ is relative to the destination
    raw = _components(name)
    if ".." in raw:
        # "a/../b" stays inside; anything that would climb above the destination does not
        depth = 0
        for p in raw:
            depth += -1 if p == ".." else 1
            if depth < 0:
                raise CopyError(f"refusing to extract {name!r}: it points outside the destination")
    parts = _components(norm)
    return parts or None


def extract_tar(stream: IO[bytes], root: SafeRoot, dest: str, *, chown: tuple[int, int] | None = None,
                overwrite: bool = False) -> int:
    """Extract the tar *stream* into directory *dest* of *root* (which must exist).

    *chown* gives every entry this (uid, gid) instead of the archive's. A directory is
    not replaced by a non-directory (or the reverse) unless *overwrite*. Returns the number
    of entries extracted.
    """
    dest = clean(dest)
    dfd = root.open_path(dest, follow=True)
    try:
        if not stat.S_ISDIR(os.fstat(dfd).st_mode):
            raise CopyError(f"destination {dest!r} is not a directory")
    finally:
        os.close(dfd)
    from .tarapply import SafeTarInfo

    try:
        tf = tarfile.open(fileobj=stream, mode="r|*", encoding="utf-8", errors="surrogateescape", tarinfo=SafeTarInfo)
    except tarfile.ReadError as exc:
        raise CopyError(f"invalid tar stream: {exc}") from None
    count = 0
    dir_times: list[tuple[str, int]] = []
    try:
        for ti in tf:
            parts = _entry_parts(ti.name)
            if parts is None:
                continue
            target = clean(dest + "/" + "/".join(parts))
            _extract_one(tf, ti, root, target, dest, chown, overwrite, dir_times)
            count += 1
    except (tarfile.TarError, EOFError) as exc:
        raise CopyError(f"invalid tar stream: {exc}") from None
    finally:
        tf.close()
    for path, mtime in reversed(dir_times):
        try:
            fd = root.open_path(path, follow=False)
        except OSError:
            continue
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                os.utime(f"/proc/self/fd/{fd}", (mtime, mtime))
        except OSError:
            pass
        finally:
            os.close(fd)
    return count


def _extract_one(tf: tarfile.TarFile, ti: tarfile.TarInfo, root: SafeRoot, target: str, dest: str,
                 chown: tuple[int, int] | None, overwrite: bool, dir_times: list) -> None:
    head, name = posixpath.split(target)
    pfd = root.ensure_dir(head)
    uid, gid = chown if chown is not None else (ti.uid, ti.gid)
    mode = ti.mode & 0o7777
    try:
        try:
            old = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            old = None
        if old is not None:
            old_dir = stat.S_ISDIR(old.st_mode)
            if ti.isdir() and old_dir:
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _O_CLOEXEC, dir_fd=pfd)
                try:
                    os.fchown(fd, uid, gid)
                    os.fchmod(fd, mode)
                finally:
                    os.close(fd)
                dir_times.append((target, int(ti.mtime)))
                return
            # a symlink is replaced, never written through (like docker's untar)
            if old_dir != ti.isdir() and not overwrite:
                what = "directory" if old_dir else "non-directory"
                raise CopyError(f"cannot overwrite {what} {target!r} with "
                                f"{'a directory' if ti.isdir() else 'a non-directory'}: use --overwrite")
            if old_dir:
                import shutil

                shutil.rmtree(name, dir_fd=pfd)
            else:
                os.unlink(name, dir_fd=pfd)
        if ti.isdir():
            os.mkdir(name, 0o700, dir_fd=pfd)
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _O_CLOEXEC, dir_fd=pfd)
            try:
                os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
            dir_times.append((target, int(ti.mtime)))
        elif ti.isreg():
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _O_CLOEXEC, 0o600, dir_fd=pfd)
            try:
                src = tf.extractfile(ti)
                while src is not None:
                    chunk = src.read(1 << 20)
                    if not chunk:
                        break
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
                os.utime(fd, (ti.mtime, ti.mtime))
            finally:
                os.close(fd)
        elif ti.issym():
            os.symlink(ti.linkname, name, dir_fd=pfd)
            os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
            try:
                os.utime(name, (ti.mtime, ti.mtime), dir_fd=pfd, follow_symlinks=False)
            except OSError:
                pass
        elif ti.islnk():
            lparts = _entry_parts(ti.linkname)
            if lparts is None:
                raise CopyError(f"invalid hard link {ti.name!r} -> {ti.linkname!r}")
            lpath = clean(dest + "/" + "/".join(lparts))
            lfd, lname = root.parent(lpath)
            try:
                os.link(lname, name, src_dir_fd=lfd, dst_dir_fd=pfd, follow_symlinks=False)
            finally:
                os.close(lfd)
        elif ti.ischr() or ti.isblk():
            kind = stat.S_IFCHR if ti.ischr() else stat.S_IFBLK
            os.mknod(name, kind | mode, os.makedev(ti.devmajor, ti.devminor), dir_fd=pfd)
            os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
        elif ti.isfifo():
            os.mkfifo(name, mode, dir_fd=pfd)
            os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
        # other types (GNU sparse, volume headers) are ignored
    finally:
        os.close(pfd)


# -- kpod cp and export ---------------------------------------------------------------------

@contextmanager
def mounted_rootfs(c) -> Iterator[str]:
    """The container's root filesystem, mounted for the duration (one counted reference
    through the storage driver, taken and released under the container's lock)."""
    storage = c.mgr.storage
    with c.locked():
        path = storage.storage_mount(layer_id=c.layer_id, mount_label="", volatile=False)
    try:
        yield path
    finally:
        try:
            with c.locked():
                storage.storage_unmount(layer_id=c.layer_id, force=False)
        except NotFound:
            pass  # removed meanwhile: its removal unmounted everything


def live_root(c) -> SafeRoot | None:
    """A running (or paused) container's own root, ``/proc/PID/root``: the view of its
    mount namespace, with the tmpfs, volume and bind mounts its processes see (a copy into
    the storage mount would land underneath them). Lookups may cross those mounts, and are
    still confined to the root. None when the container has no live process."""
    if c.state() not in ("running", "paused"):
        return None
    pid = c.row["pid"]
    if not pid:
        return None
    try:
        root = SafeRoot(f"/proc/{pid}/root", same_mount=False)
    except OSError:  # exited meanwhile
        return None
    # the PID must still be the container's (not reused): its cgroup names the container
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            mine = c.id in f.read()
    except OSError:
        mine = False
    if not mine or c.state() not in ("running", "paused"):
        root.close()
        return None
    # its procfs and sysfs are the kernel's: a copy never writes there
    for kernel_fs in ("proc", "sys"):
        try:
            root.no_write_devs.add(root.lstat(f"/{kernel_fs}", follow=False).st_dev)
        except OSError:
            pass
    return root


def parse_location(arg: str) -> tuple[str | None, str]:
    """``CONTAINER:PATH`` -> (container, path); a host path or ``-`` -> (None, arg).
    Arguments starting with / or . are host paths (a colon may be part of them)."""
    if arg == "-" or arg.startswith("/") or arg.startswith("."):
        return None, arg
    name, sep, path = arg.partition(":")
    if sep and name:
        return name, path
    return None, arg


def container_user(c, rootfs: str) -> tuple[int, int]:
    """The container's main user and group (what ``--archive`` copies into it get)."""
    from .specgen import resolve_user

    user = c.config.get("user") or ""
    if not user and c.image_id:
        img = c.mgr.images.get_by_id(c.image_id)
        user = ((img.config.get("config") or {}).get("User") or "") if img else ""
    try:
        u = resolve_user(rootfs, user)
        return u.uid, u.gid
    except KpodError:
        return 0, 0


def _workdir(c) -> str:
    return (c.spec().get("process") or {}).get("cwd") or "/"


class _End:
    """One side of a copy: a path in a :class:`SafeRoot` (the host's ``/`` or a
    container's root), as the user typed it and as resolved."""

    def __init__(self, root: SafeRoot, path: str, typed: str, where: str) -> None:
        self.root = root
        self.path = clean(path)
        self.typed = typed
        self.where = where

    def missing(self, what: str = "no such file or directory") -> NotFound:
        return NotFound(f'"{self.typed}" could not be found on {self.where}: {what}')

    def stat(self) -> os.stat_result | None:
        try:
            return self.root.lstat(self.path, follow=True)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise CopyError(f'"{self.typed}" on {self.where}: {exc.strerror}') from None


def copy(rt, src: str, dst: str, *, archive: bool = True, overwrite: bool = False,
         stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None) -> None:
    """``kpod cp SRC DST`` (kpod-cp(1)): host <-> container and container <-> container,
    or ``-`` for a tar stream from stdin (into a container directory) or to stdout.

    The docker/podman rules: a source directory ending in ``/.`` copies its contents; into
    an existing directory an entry keeps the source's name; otherwise it takes the
    destination's name, whose parent must exist. Copies into a container belong to the
    container's main user with *archive* (default), else keep their owners; copies to the
    host belong to the user running kpod.
    """
    from contextlib import ExitStack

    src_ctr, src_path = parse_location(src)
    dst_ctr, dst_path = parse_location(dst)
    if src == "-" and dst == "-":
        raise InvalidArgument("invalid arguments: only one of SRC and DEST can be - (a tar stream)")
    if src_ctr is None and dst_ctr is None:
        raise InvalidArgument(f'invalid arguments "{src}" and "{dst}": one of them must be a container path (CONTAINER:PATH)')
    mgr = rt.containers
    ctrs = {n: mgr.get(n) for n in (src_ctr, dst_ctr) if n is not None}  # NotFound before mounting anything
    with ExitStack() as stack:
        host = stack.enter_context(SafeRoot("/", same_mount=False))
        roots: dict[str, tuple[SafeRoot, str]] = {}
        for name, c in ctrs.items():
            if c.id in roots:
                continue
            live = live_root(c)
            if live is not None:
                # what the container itself sees: its tmpfs and volume mounts included
                root = stack.enter_context(live)
                roots[c.id] = (root, root.path)
                continue
            path = stack.enter_context(mounted_rootfs(c))
            roots[c.id] = (stack.enter_context(SafeRoot(path)), path)

        def end(ctr_name: str | None, path: str) -> _End:
            if ctr_name is None:
                return _End(host, os.path.abspath(path), path, "the host")
            c = ctrs[ctr_name]
            full = path if path.startswith("/") else posixpath.join(_workdir(c), path)
            return _End(roots[c.id][0], full, path, f"container {ctr_name}")

        if dst_ctr is None:
            chown: tuple[int, int] | None = (os.getuid(), os.getgid())
        elif archive:
            chown = container_user(ctrs[dst_ctr], roots[ctrs[dst_ctr].id][1])
        else:
            chown = None

        if src == "-":
            target = end(dst_ctr, dst_path)
            st = target.stat()
            if st is None:
                raise target.missing()
            if not stat.S_ISDIR(st.st_mode):
                raise CopyError(f'"{dst_path}" on {target.where} is not a directory: a tar stream extracts into a directory')
            extract_tar(stdin, target.root, target.path, chown=chown, overwrite=overwrite)
            return

        source = end(src_ctr, src_path)
        sst = source.stat()
        if sst is None:
            raise source.missing()
        src_dir = stat.S_ISDIR(sst.st_mode)
        contents = src_path.endswith("/.") or source.path == "/"
        if contents and not src_dir:
            raise CopyError(f'"{src_path}" on {source.where} is not a directory')
        base = None if contents else posixpath.basename(source.path)

        if dst == "-":
            write_tar(stdout, source.root, source.path, base)
            stdout.flush()
            return

        target = end(dst_ctr, dst_path)
        dst_st = target.stat()
        if dst_st is not None and stat.S_ISDIR(dst_st.st_mode):
            into, name = target.path, base  # into the directory, under the source's name
        else:
            if dst_st is None and dst_path.endswith("/") and not src_dir:
                raise target.missing("no such directory")
            parent = _End(target.root, posixpath.dirname(target.path), posixpath.dirname(dst_path) or "/", target.where)
            pst = parent.stat()
            if pst is None:
                raise target.missing()
            if not stat.S_ISDIR(pst.st_mode):
                raise CopyError(f'"{parent.typed}" on {target.where} is not a directory')
            if dst_st is not None and src_dir and not overwrite:
                raise CopyError(f'cannot overwrite non-directory "{dst_path}" on {target.where} with a directory: use --overwrite')
            into, name = parent.path, posixpath.basename(target.path)  # under the destination's name
        with tempfile.TemporaryFile() as spool:
            write_tar(spool, source.root, source.path, name)
            spool.seek(0)
            extract_tar(spool, target.root, into, chown=chown, overwrite=overwrite)


def export(c, out: IO[bytes]) -> int:
    """``kpod export``: the container's whole filesystem as a tar stream."""
    with mounted_rootfs(c) as path, SafeRoot(path) as root:
        return write_tar(out, root, "/", None)
