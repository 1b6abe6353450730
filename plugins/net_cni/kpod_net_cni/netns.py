"""Persistent named network namespaces (what ``ip netns add`` does, under a directory of ours).

A namespace is made by a short-lived thread that unshares its network namespace (a Linux
thread has its own), turns its loopback device on and bind-mounts ``/proc/thread-self/ns/net``
onto ``<dir>/<name>``; the bind mount keeps the namespace alive after the thread ends. As with
iproute2, ``<dir>`` itself is made a shared mount so that the namespace mount and its removal
propagate to mount namespaces created later (containers, conmon), which would otherwise keep
a removed namespace alive.

Only ctypes (imported on first use) and the standard library: no fork, no pyroute2 import.
"""

from __future__ import annotations

import errno
import fcntl
import os
from contextlib import contextmanager

CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20
MNT_DETACH = 2

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1

_libc = None


def _c():
    """libc through ctypes, imported on first use (creating a container needs neither)."""
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _errno() -> int:
    import ctypes

    return ctypes.get_errno()


def _ulong(v: int):
    import ctypes

    return ctypes.c_ulong(v)


def _oserror(what: str, path: str) -> OSError:
    err = _errno()
    return OSError(err, f"{what}: {os.strerror(err)}", path)


def _mount(source: str | None, target: str, fstype: str | None, flags: int) -> None:
    src = source.encode() if source is not None else None
    fst = fstype.encode() if fstype is not None else None
    if _c().mount(src, target.encode(), fst, _ulong(flags), None) != 0:
        raise _oserror("mount", target)


def _umount(target: str) -> int:
    """Lazily unmount *target*; returns 0 or the errno."""
    if _c().umount2(target.encode(), MNT_DETACH) != 0:
        return _errno()
    return 0


def is_netns(path: str) -> bool:
    """True if *path* is a mounted network namespace (an nsfs file)."""
    try:
        st = os.stat(path)
        ref = os.stat("/proc/self/ns/net")
    except OSError:
        return False
    return st.st_dev == ref.st_dev


def _mountinfo() -> list[tuple[str, str]]:
    """(root, mount point) of every mount in our mount namespace."""
    out = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 4:
                dec = lambda s: s.encode().decode("unicode_escape")  # noqa: E731 (octal escapes)
                out.append((dec(parts[3]), dec(parts[4])))
    return out


def _ensure_shared_dir(directory: str) -> None:
    os.makedirs(directory, mode=0o755, exist_ok=True)
    flags = MS_SHARED | MS_REC
    if _c().mount(b"none", directory.encode(), None, _ulong(flags), None) == 0:
        return
    if _errno() != errno.EINVAL:  # EINVAL: not a mount point yet
        raise _oserror("make shared", directory)
    _mount(directory, directory, None, MS_BIND | MS_REC)
    _mount("none", directory, None, flags)


@contextmanager
def _dir_lock(directory: str):
    parent = os.path.dirname(directory.rstrip("/")) or "/"
    os.makedirs(parent, mode=0o755, exist_ok=True)
    fd = os.open(os.path.join(parent, ".netns.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _lo_up() -> None:
    import socket
    import struct  # (here: every create imports this module, few make a namespace)

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))


def _new_ns_thread(path: str, box: dict) -> None:
    # Runs in its own OS thread: the unshare changes only this thread's namespace and the
    # thread ends right after, so no other code ever runs in the new namespace.
    try:
        if _c().unshare(CLONE_NEWNET) != 0:
            raise _oserror("unshare", path)
        _lo_up()
        import threading  # imported already by the caller that started this thread

        _mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", path, None, MS_BIND)
    except BaseException as exc:  # handed to the caller
        box["error"] = exc


def create(path: str) -> str:
    """Create a persistent network namespace bind-mounted at *path* (loopback up).

    Raises FileExistsError if a namespace is already mounted there; a stale plain file left
    by a crash is replaced.
    """
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    with _dir_lock(directory):
        _ensure_shared_dir(directory)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
        except FileExistsError:
            if is_netns(path):
                raise
            _umount(path)
            os.unlink(path)
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
        os.close(fd)
        import threading  # here: a command that makes no namespace (create) does not import it

        box: dict = {}
        t = threading.Thread(target=_new_ns_thread, args=(path, box), name="kpod-netns", daemon=True)
        t.start()
        t.join()
        if "error" in box:
            _umount(path)
            try:
                os.unlink(path)
            except OSError:
                pass
            raise box["error"]
    return path


def remove(path: str, tidy_dir: bool = True) -> bool:
    """Unmount and delete the namespace at *path*; a missing path is not an error.

    With *tidy_dir*, when the directory is left empty, the shared bind mount made by
    :func:`create` on it is undone too, so nothing stays mounted.
    """
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    if not os.path.lexists(path) and not os.path.isdir(directory):
        return True
    with _dir_lock(directory):
        err = _umount(path)
        if err not in (0, errno.EINVAL, errno.ENOENT):
            raise OSError(err, f"unmount: {os.strerror(err)}", path)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        try:
            empty = tidy_dir and not os.listdir(directory)
        except FileNotFoundError:
            empty = False
        if empty:
            # Undo our self bind mount (its root is the directory itself, not "/").
            for root, mnt in _mountinfo():
                if mnt == directory and root != "/":
                    _umount(directory)
                    break
    return True


def _probe_thread(path: str, ifname: str, box: dict) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _c().setns(fd, CLONE_NEWNET) != 0:
                raise _oserror("setns", path)
        finally:
            os.close(fd)
        import socket

        try:
            socket.if_nametoindex(ifname)
            box["exists"] = True
        except OSError:
            box["exists"] = False
    except BaseException as exc:  # handed to the caller
        box["error"] = exc


def link_exists(path: str, ifname: str) -> bool:
    """True if the namespace at *path* has an interface named *ifname*.

    A short-lived thread joins the namespace (only that thread moves) and looks the name up.
    """
    import threading

    box: dict = {}
    t = threading.Thread(target=_probe_thread, args=(path, ifname, box), name="kpod-netns-probe", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return bool(box.get("exists"))
