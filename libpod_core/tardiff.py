"""Compute a layer's changes and write them as a docker-format layer tar.

Two layouts (the ``whiteout_format`` argument):

* ``'overlay'`` — ``layer_dir`` is an overlay upper dir; ``parent_dirs`` is the list of lower
  dirs, top first (or None for a base layer). A 0/0 character device is a deleted path
  (``D``); a directory with ``trusted.overlay.opaque=y`` replaces the lower directory (it is
  reported ``C``/``A`` and the lower entries it hides are reported ``D``); any other entry
  is ``C`` if the path is visible in the lower layers, else ``A``.
* ``'vfs'`` — ``layer_dir`` is a full tree and ``parent_dirs`` the parent's full tree (a path
  or a one-element list; None for a base layer). Entries are compared by type, mode,
  owner, device number, symlink target, size, mtime (for non-directories) and exported
  xattrs; when only the mtime of a regular file differs its content decides. A directory
  holding changes is reported ``C`` too.

:func:`changes` returns ``(kind, path)`` tuples sorted by path, paths absolute-style
(``/etc/passwd``), the root itself never listed. :func:`diff_tar` writes an uncompressed PAX
tar in docker layer format: a depth-first walk with names sorted at every level (so a tree
always gives the same bytes), relative member names, integer-second mtimes, empty
user/group names, no atime/ctime; deletions as empty ``DIR/.wh.NAME`` files, opaque
directories as the directory followed by ``DIR/.wh..wh..opq``; hardlinks inside the written
set are kept (first path as a file, later ones as links); sockets are skipped (like docker).
Exported xattrs are ``user.*``, ``trusted.*`` and ``security.capability``, never
``trusted.overlay.*``/``user.overlay.*`` (overlay's own bookkeeping).
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from dataclasses import dataclass

from libpod_core.digest import CHUNK_SIZE
from libpod_core.errors import InvalidArgument, KpodError, StorageError

__all__ = ["changes", "diff_tar", "Change"]

WHITEOUT_PREFIX = ".wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
_FORMATS = ("overlay", "vfs")
_EXCLUDED_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")


@dataclass
class Change:
    """One change record in walk order (internal detail, exposed for drivers)."""

    kind: str  # 'A', 'C' or 'D'
    parts: tuple[str, ...]
    st: os.stat_result | None = None  # the entry in layer_dir (the whiteout node for overlay D)
    opaque: bool = False  # overlay: the directory replaces the lower one
    implied: bool = False  # D hidden by an opaque parent: no whiteout needed in the tar

    @property
    def path(self) -> str:
        return "/" + "/".join(self.parts)


# --------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------


def _join(root: str, parts: tuple[str, ...]) -> str:
    return os.path.join(root, *parts) if parts else root


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OVERLAY_OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _export_xattr(name: str) -> bool:
    if name.startswith(_EXCLUDED_XATTR_PREFIXES):
        return False
    return name.startswith(("user.", "trusted.")) or name == "security.capability"


def _xattrs(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for name in names:
        if not _export_xattr(name):
            continue
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
    return out


def _scandir_sorted(path: str) -> list[os.DirEntry]:
    with os.scandir(path) as it:
        entries = list(it)
    entries.sort(key=lambda e: e.name)
    return entries


def _parents_list(parent_dirs, whiteout_format: str) -> list[str]:
    if whiteout_format not in _FORMATS:
        raise InvalidArgument(
            f"unknown whiteout format {whiteout_format!r} (expected one of {_FORMATS})"
        )
    if parent_dirs is None:
        return []
    if isinstance(parent_dirs, (str, bytes, os.PathLike)):
        return [os.fspath(parent_dirs)]
    return [os.fspath(p) for p in parent_dirs]


# --------------------------------------------------------------------------------------
# overlay
# --------------------------------------------------------------------------------------


class _LowerView:
    """Answers questions about the merged view of the lower dirs (top first)."""

    def __init__(self, lowers: list[str]):
        self.lowers = lowers
        self._cache: dict[tuple[int, tuple[str, ...]], str] = {}

    def _kind(self, i: int, parts: tuple[str, ...]) -> str:
        """'missing', 'dir', 'opaque', 'whiteout' or 'other' for lower *i* at *parts*
        (symlinks are 'other': nothing is followed)."""
        key = (i, parts)
        k = self._cache.get(key)
        if k is None:
            path = _join(self.lowers[i], parts)
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                k = "missing"
            else:
                if stat.S_ISDIR(st.st_mode):
                    k = "opaque" if _is_opaque(path) else "dir"
                elif _is_whiteout(st):
                    k = "whiteout"
                else:
                    k = "other"
            if len(self._cache) > 65536:
                self._cache.clear()
            self._cache[key] = k
        return k

    def _lookup(self, i: int, parts: tuple[str, ...]) -> tuple[str, bool]:
        """Kind of *parts* in lower *i*, and whether lower *i* hides the deeper lowers."""
        hides = False
        for j in range(1, len(parts)):
            k = self._kind(i, parts[:j])
            if k == "missing":
                return "missing", hides
            if k in ("whiteout", "other"):
                return "missing", True
            if k == "opaque":
                hides = True
        k = self._kind(i, parts)
        if k != "missing":
            hides = True
        return k, hides

    def exists(self, parts: tuple[str, ...]) -> bool:
        for i in range(len(self.lowers)):
            k, hides = self._lookup(i, parts)
            if k != "missing":
                return k != "whiteout"
            if hides:
                return False
        return False

    def children(self, parts: tuple[str, ...]) -> set[str]:
        seen: dict[str, bool] = {}
        for i, lower in enumerate(self.lowers):
            k, hides = self._lookup(i, parts)
            if k in ("dir", "opaque"):
                for e in _scandir_sorted(_join(lower, parts)):
                    if e.name not in seen:
                        try:
                            st = e.stat(follow_symlinks=False)
                        except FileNotFoundError:
                            continue
                        seen[e.name] = _is_whiteout(st)
                if k == "opaque":
                    break
            elif k != "missing" or hides:
                break
        return {n for n, wh in seen.items() if not wh}


def _overlay_records(layer_dir: str, lowers: list[str]) -> list[Change]:
    view = _LowerView(lowers)
    recs: list[Change] = []
    # stack items: (parts, stat, parent_added)
    stack: list[tuple[tuple[str, ...], os.stat_result, bool]] = []

    def push_children(parts: tuple[str, ...], added: bool) -> list[os.DirEntry]:
        entries = _scandir_sorted(_join(layer_dir, parts))
        for e in reversed(entries):
            stack.append((parts + (e.name,), e.stat(follow_symlinks=False), added))
        return entries

    push_children((), not lowers)
    while stack:
        parts, st, parent_added = stack.pop()
        if _is_whiteout(st):
            recs.append(Change("D", parts, st))
            continue
        added = parent_added or not view.exists(parts)
        if not stat.S_ISDIR(st.st_mode):
            recs.append(Change("A" if added else "C", parts, st))
            continue
        opaque = _is_opaque(_join(layer_dir, parts))
        recs.append(Change("A" if added else "C", parts, st, opaque=opaque))
        entries = push_children(parts, added)
        if opaque and not added:
            upper_names = {e.name for e in entries}
            for name in sorted(view.children(parts) - upper_names):
                recs.append(Change("D", parts + (name,), None, implied=True))
    return recs


# --------------------------------------------------------------------------------------
# vfs
# --------------------------------------------------------------------------------------


def _same_content(a: str, b: str) -> bool:
    try:
        fa = os.open(a, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        try:
            fb = os.open(b, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            while True:
                ca = os.read(fa, CHUNK_SIZE)
                cb = os.read(fb, CHUNK_SIZE)
                # regular files return full chunks until the end
                if ca != cb:
                    return False
                if not ca:
                    return True
        finally:
            os.close(fb)
    finally:
        os.close(fa)


def _differs(lpath: str, lst: os.stat_result, ppath: str, pst: os.stat_result) -> bool:
    if lst.st_mode != pst.st_mode or lst.st_uid != pst.st_uid or lst.st_gid != pst.st_gid:
        return True
    mode = lst.st_mode
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        if lst.st_rdev != pst.st_rdev:
            return True
    if stat.S_ISLNK(mode):
        if os.readlink(lpath) != os.readlink(ppath):
            return True
    if not stat.S_ISDIR(mode):
        if lst.st_size != pst.st_size:
            return True
        if lst.st_mtime_ns != pst.st_mtime_ns:
            if not stat.S_ISREG(mode) or not _same_content(lpath, ppath):
                return True
    return _xattrs(lpath) != _xattrs(ppath)


def _vfs_records(layer_dir: str, parent_dir: str | None) -> list[Change]:
    recs: list[Change] = []
    provisional: list[bool] = []
    # stack items: (parts, layer stat or None (deleted), parent stat or None (added))
    stack: list[tuple[tuple[str, ...], os.stat_result | None, os.stat_result | None]] = []

    def push_children(parts: tuple[str, ...], with_parent: bool) -> None:
        lents = {e.name: e for e in _scandir_sorted(_join(layer_dir, parts))}
        pents = (
            {e.name: e for e in _scandir_sorted(_join(parent_dir, parts))}
            if with_parent and parent_dir is not None
            else {}
        )
        for name in sorted(set(lents) | set(pents), reverse=True):
            le = lents.get(name)
            pe = pents.get(name)
            stack.append(
                (
                    parts + (name,),
                    le.stat(follow_symlinks=False) if le is not None else None,
                    pe.stat(follow_symlinks=False) if pe is not None else None,
                )
            )

    push_children((), True)
    while stack:
        parts, lst, pst = stack.pop()
        if lst is None:
            recs.append(Change("D", parts))
            provisional.append(False)
            continue
        isdir = stat.S_ISDIR(lst.st_mode)
        if pst is None:
            recs.append(Change("A", parts, lst))
            provisional.append(False)
            if isdir:
                push_children(parts, False)
            continue
        lpath = _join(layer_dir, parts)
        changed = _differs(lpath, lst, _join(parent_dir, parts), pst)
        if changed or isdir:
            recs.append(Change("C", parts, lst))
            provisional.append(not changed)
        if isdir:
            push_children(parts, stat.S_ISDIR(pst.st_mode))

    # keep an unchanged directory only if something inside it is kept
    out: list[Change] = []
    next_kept: tuple[str, ...] | None = None
    for rec, prov in zip(reversed(recs), reversed(provisional)):
        if prov:
            n = len(rec.parts)
            if next_kept is None or next_kept[:n] != rec.parts or len(next_kept) <= n:
                continue
        out.append(rec)
        next_kept = rec.parts
    out.reverse()
    return out


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------


def _records(layer_dir, parent_dirs, whiteout_format) -> list[Change]:
    parents = _parents_list(parent_dirs, whiteout_format)
    layer_dir = os.fspath(layer_dir)
    try:
        if whiteout_format == "overlay":
            return _overlay_records(layer_dir, parents)
        if len(parents) > 1:
            raise InvalidArgument("vfs diff takes a single parent directory")
        return _vfs_records(layer_dir, parents[0] if parents else None)
    except KpodError:
        raise
    except OSError as e:
        raise StorageError(f"cannot compute layer changes of {layer_dir!r}: {e}") from None


def changes(layer_dir, parent_dirs, whiteout_format: str) -> list[tuple[str, str]]:
    """Return the layer's changes as ``(kind, path)`` sorted by path (see module doc)."""
    recs = _records(layer_dir, parent_dirs, whiteout_format)
    out = [(r.kind, r.path) for r in recs]
    out.sort(key=lambda kp: kp[1])
    return out


class _HashingWriter:
    def __init__(self, out):
        self._out = out
        self._h = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        n = len(data)
        written = self._out.write(data)
        if written is not None and written < n:
            view = memoryview(data)
            while written < n:
                w = self._out.write(view[written:])
                if not w:
                    raise StorageError("short write while writing the layer tar")
                written += w
        self._h.update(data)
        self.size += n
        return n

    def tell(self) -> int:
        return self.size

    @property
    def digest(self) -> str:
        return "sha256:" + self._h.hexdigest()


def _base_info(name: str, st: os.stat_result) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid = st.st_uid
    ti.gid = st.st_gid
    ti.mtime = st.st_mtime_ns // 1_000_000_000
    ti.uname = ""
    ti.gname = ""
    return ti


def _set_xattrs(ti: tarfile.TarInfo, path: str) -> None:
    xa = _xattrs(path)
    for k in sorted(xa):
        ti.pax_headers["SCHILY.xattr." + k] = xa[k].decode("utf-8", "surrogateescape")


def diff_tar(layer_dir, parent_dirs, whiteout_format: str, out_fileobj) -> tuple[int, str]:
    """Write the layer's changes to *out_fileobj* as an uncompressed tar (see module doc).

    Returns ``(size, diff_id)`` of the bytes written.
    """
    layer_dir = os.fspath(layer_dir)
    recs = _records(layer_dir, parent_dirs, whiteout_format)
    overlay = whiteout_format == "overlay"
    w = _HashingWriter(out_fileobj)
    current = None
    try:
        tar = tarfile.open(
            fileobj=w,
            mode="w:",
            format=tarfile.PAX_FORMAT,
            encoding="utf-8",
            errors="surrogateescape",
            copybufsize=CHUNK_SIZE,
        )
        seen: dict[tuple[int, int], str] = {}
        for rec in recs:
            current = rec.path
            name = "/".join(rec.parts)
            if rec.kind == "D":
                if rec.implied:
                    continue
                wname = "/".join(rec.parts[:-1] + (WHITEOUT_PREFIX + rec.parts[-1],))
                ti = tarfile.TarInfo(wname)
                ti.type = tarfile.REGTYPE
                ti.size = 0
                ti.mode = 0o600
                ti.uname = ti.gname = ""
                if overlay and rec.st is not None:
                    ti.uid, ti.gid = rec.st.st_uid, rec.st.st_gid
                    ti.mtime = rec.st.st_mtime_ns // 1_000_000_000
                else:
                    ti.uid = ti.gid = 0
                    ti.mtime = 0
                tar.addfile(ti)
                continue
            st = rec.st
            mode = st.st_mode
            path = _join(layer_dir, rec.parts)
            if stat.S_ISSOCK(mode):
                continue
            ti = _base_info(name, st)
            if not stat.S_ISDIR(mode) and st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                first = seen.get(key)
                if first is not None:
                    ti.type = tarfile.LNKTYPE
                    ti.linkname = first
                    ti.size = 0
                    tar.addfile(ti)
                    continue
                seen[key] = name
            _set_xattrs(ti, path)
            if stat.S_ISREG(mode):
                ti.type = tarfile.REGTYPE
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                with os.fdopen(fd, "rb", buffering=0) as f:
                    ti.size = os.fstat(fd).st_size
                    tar.addfile(ti, f)
            elif stat.S_ISDIR(mode):
                ti.type = tarfile.DIRTYPE
                tar.addfile(ti)
                if overlay and rec.opaque:
                    oti = _base_info(name + "/" + WHITEOUT_OPAQUE, st)
                    oti.type = tarfile.REGTYPE
                    oti.mode = stat.S_IMODE(mode) & 0o777
                    oti.size = 0
                    tar.addfile(oti)
            elif stat.S_ISLNK(mode):
                ti.type = tarfile.SYMTYPE
                ti.linkname = os.readlink(path)
                tar.addfile(ti)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
                ti.devmajor = os.major(st.st_rdev)
                ti.devminor = os.minor(st.st_rdev)
                tar.addfile(ti)
            elif stat.S_ISFIFO(mode):
                ti.type = tarfile.FIFOTYPE
                tar.addfile(ti)
        current = None
        tar.close()
    except KpodError:
        raise
    except (OSError, tarfile.TarError, ValueError) as e:
        where = f" at {current!r}" if current else ""
        raise StorageError(f"cannot write the layer tar of {layer_dir!r}{where}: {e}") from None
    return w.size, w.digest
