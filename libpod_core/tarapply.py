"""Apply a layer tar stream to a directory (containers/storage ``ApplyDiff`` semantics).

:func:`apply_layer` reads a plain, gzip or zstd tar stream, hashes the *uncompressed* bytes
(the layer's ``diff_id``, every byte up to the end of the stream, tar padding included) and
extracts it into ``dest_dir`` as root:

* regular files, directories, symlinks, hardlinks, character/block devices and fifos, with
  numeric owners, modes (setuid/setgid/sticky included), nanosecond mtimes (directories get
  theirs after their content) and PAX ``SCHILY.xattr.*`` extended attributes. xattrs the
  filesystem refuses (``ENOTSUP``/``EPERM``, e.g. ``user.*`` on a symlink) are skipped like
  docker does; ``trusted.overlay.*``/``user.overlay.*`` from the tar are always ignored —
  only whiteout markers may produce overlay metadata.
* an entry over an existing path replaces it, except a directory over a directory, which
  merges (only the metadata is applied). Missing parent directories are created (0755, or
  with the mode/owner/mtime of the parent layer's directory when ``parent_lookup`` gives one).
* whiteouts: ``DIR/.wh.NAME`` deletes ``DIR/NAME``; ``DIR/.wh..wh..opq`` makes ``DIR``
  opaque. With ``whiteout_format='overlay'`` (``dest_dir`` is an overlay upper dir) a
  whiteout becomes a 0/0 character device ``NAME`` (owner and mtime from the whiteout
  entry) and an opaque dir gets the xattr ``trusted.overlay.opaque=y`` (the dir is created
  if missing). With ``'vfs'`` (``dest_dir`` is a full copy of the parent) ``NAME`` is
  removed recursively, and an opaque dir loses the entries that existed before this layer
  (entries created earlier by this same layer stay). Other ``.wh..wh.*`` names (AUFS
  metadata) and anything under a top-level ``.wh..wh.*`` are skipped, like docker does.
* a hardlink's target must already exist in ``dest_dir`` (for ``'overlay'`` that means in
  this layer; for ``'vfs'`` the parent's files count too).
* an empty stream is an empty layer; a tar that ends at a header boundary without the
  end-of-archive blocks is accepted (like Go's archive/tar); whatever follows the
  end-of-archive marker is read and counted in the ``diff_id`` but not interpreted.

Security — nothing is ever written outside ``dest_dir``: every path is resolved from a
descriptor of ``dest_dir`` one component at a time with ``O_NOFOLLOW``; all changes use
``*at()`` calls relative to the parent's descriptor. :class:`~libpod_core.errors.InvalidLayer`
is raised for names that are absolute or escape with ``..``, for writing *through* a symlink
(a symlink itself may point anywhere), for hardlinks whose target escapes, goes through a
symlink, is missing or is a directory (a hardlink to a symlink links the symlink itself), for
bad whiteout names, unsupported entry types, and for corrupt or truncated tar, gzip or zstd
data. On error ``dest_dir`` is left half-written; the caller discards it.

``parent_lookup(relpath) -> str | None`` (optional) maps a layer-relative path (``a/b``) to
the path of the same entry in the parent's merged view; it is only used to give implicitly
created parent directories their parent-layer metadata.
"""

from __future__ import annotations

import errno
import os
import posixpath
import shutil
import stat
import struct
import tarfile
from dataclasses import dataclass
from typing import Callable

from libpod_core.digest import CHUNK_SIZE, DigestReader, HashedTarStream, open_decompressed
from libpod_core.errors import InvalidArgument, InvalidLayer, KpodError, StorageError

__all__ = [
    "ApplyResult",
    "apply_layer",
    "WHITEOUT_PREFIX",
    "WHITEOUT_META_PREFIX",
    "WHITEOUT_OPAQUE",
    "OVERLAY_OPAQUE_XATTR",
    "WHITEOUT_FORMATS",
    "SafeTarInfo",
]

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
WHITEOUT_FORMATS = ("overlay", "vfs")

_IGNORED_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
_SKIPPABLE_XATTR_ERRNOS = {errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM}
_RESOURCE_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EIO,
    errno.EROFS,
    errno.ENOMEM,
    errno.EMFILE,
    errno.ENFILE,
}

#: the largest pax extended header or GNU long name/link kpod reads (Go's archive/tar, which
#: podman uses, has the same limit): tarfile would read any size into memory
MAX_SPECIAL_HEADER = 1 << 20

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _O_CLOEXEC


@dataclass(frozen=True)
class ApplyResult:
    """What :func:`apply_layer` extracted."""

    size: int  #: bytes of the uncompressed tar stream
    diff_id: str  #: ``sha256:`` digest of the uncompressed tar stream


# --------------------------------------------------------------------------------------
# Tar input plumbing
# --------------------------------------------------------------------------------------


class _TarSource:
    """A forward-only, seekable-looking buffered reader for tarfile's ``r:`` mode.

    tarfile only ever seeks forward when its members are read in order; skipping forward
    reads and discards. Reading or skipping past the end raises :class:`InvalidLayer`.
    """

    def __init__(self, raw):
        self._raw = raw
        self._buf = b""
        self._off = 0
        self._pos = 0
        self._eof = False

    def tell(self) -> int:
        return self._pos

    def _more(self, want: int) -> bytes:
        if self._eof:
            return b""
        chunk = self._raw.read(max(CHUNK_SIZE, want))
        if not chunk:
            self._eof = True
        return chunk

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = [self._buf[self._off :]]
            self._buf, self._off = b"", 0
            while True:
                chunk = self._more(CHUNK_SIZE)
                if not chunk:
                    break
                parts.append(chunk)
            data = b"".join(parts)
            self._pos += len(data)
            return data
        buf, off = self._buf, self._off
        end = off + n
        if end <= len(buf):
            self._off = end
            self._pos += n
            return buf[off:end]
        have = len(buf) - off
        parts = [buf[off:] if off else buf] if have else []
        self._buf, self._off = b"", 0
        while have < n:
            chunk = self._more(n - have)
            if not chunk:
                break
            need = n - have
            if len(chunk) > need:
                parts.append(chunk[:need])
                self._buf, self._off = chunk, need
                have = n
            else:
                parts.append(chunk)
                have += len(chunk)
        self._pos += have
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos += self._pos
        elif whence != 0:
            raise InvalidLayer("internal error: unsupported seek in tar stream")
        skip = pos - self._pos
        if skip < 0:
            raise InvalidLayer("corrupt tar stream: backwards seek requested")
        while skip:
            avail = len(self._buf) - self._off
            if avail:
                take = min(avail, skip)
                self._off += take
                self._pos += take
                skip -= take
                continue
            chunk = self._more(skip)
            if not chunk:
                raise InvalidLayer("truncated tar stream: unexpected end of data")
            self._buf, self._off = chunk, 0
        return self._pos

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


_HEADER = struct.Struct("100s8s8s8s12s12s8sc100s8s32s32s8s8s155s12s")
_GNU_TYPES = frozenset(tarfile.GNU_TYPES)


class _Fallback(Exception):
    pass


def _octal(field: bytes) -> int:
    if field[0] in (0o200, 0o377):  # base-256: let tarfile decode it
        raise _Fallback
    p = field.find(b"\0")
    if p != -1:
        field = field[:p]
    try:
        return int(field.strip() or b"0", 8)
    except ValueError:
        raise _Fallback from None


def _string(field: bytes, encoding: str, errors: str) -> str:
    p = field.find(b"\0")
    if p != -1:
        field = field[:p]
    return field.decode(encoding, errors)


class SafeTarInfo(tarfile.TarInfo):
    """tarfile's TarInfo for untrusted archives (``tarfile.open(tarinfo=SafeTarInfo)``): pax
    headers parsed in linear time, pax headers and GNU long names capped at
    MAX_SPECIAL_HEADER, a faster header decoder for the common ustar case (anything unusual
    goes to tarfile's own), and a record of why tarfile stopped reading (it silently ends
    the archive on a bad header that is not the first)."""

    @classmethod
    def fromtarfile(cls, tf):
        try:
            return super().fromtarfile(tf)
        except tarfile.HeaderError as e:
            tf._kpod_header_error = e
            raise

    def _special_size(self, what: str) -> None:
        if self.size > MAX_SPECIAL_HEADER:
            raise InvalidLayer(f"invalid tar stream: a {what} of {self.size} bytes (the limit is {MAX_SPECIAL_HEADER})")

    def _proc_gnulong(self, tf):
        self._special_size("GNU long name or link")
        return super()._proc_gnulong(tf)

    def _proc_pax(self, tf):
        """tarfile's pax header processing with the records parsed in linear time.

        tarfile before Python 3.11.10 and 3.12.6 finds ``hdrcharset`` and GNU sparse records
        with regular expressions that backtrack quadratically on a header holding a long run
        of digits (CVE-2024-6232): a 20 kB header took 0.4 s, a 1 MB one would take
        minutes. This follows the fixed version: a malformed record is an error."""
        self._special_size("pax extended header")
        buf = tf.fileobj.read(self._block(self.size))
        pax_headers = tf.pax_headers if self.type == tarfile.XGLTYPE else tf.pax_headers.copy()
        records = _pax_records(buf)
        charset = next((v for k, v in records if k == b"hdrcharset"), None)
        if charset is not None:
            pax_headers["hdrcharset"] = charset.decode("utf-8")
        encoding = tf.encoding if pax_headers.get("hdrcharset") == "BINARY" else "utf-8"
        decode = self._decode_pax_field
        for keyword, value in records:
            keyword = decode(keyword, "utf-8", "utf-8", tf.errors)
            if keyword in tarfile.PAX_NAME_FIELDS:
                pax_headers[keyword] = decode(value, encoding, tf.encoding, tf.errors)
            else:
                pax_headers[keyword] = decode(value, "utf-8", "utf-8", tf.errors)
        try:
            nxt = self.fromtarfile(tf)
        except tarfile.HeaderError as e:
            raise tarfile.SubsequentHeaderError(str(e)) from None
        if "GNU.sparse.map" in pax_headers:  # GNU sparse 0.1
            self._proc_gnusparse_01(nxt, pax_headers)
        elif "GNU.sparse.size" in pax_headers:  # GNU sparse 0.0: offset/numbytes record pairs
            offsets = [v for k, v in records if k == b"GNU.sparse.offset"]
            numbytes = [v for k, v in records if k == b"GNU.sparse.numbytes"]
            if not all(v.isdigit() and len(v) <= 20 for v in offsets + numbytes):
                raise InvalidLayer("invalid tar stream: a malformed GNU sparse map")
            nxt.sparse = list(zip(map(int, offsets), map(int, numbytes)))
        elif pax_headers.get("GNU.sparse.major") == "1" and pax_headers.get("GNU.sparse.minor") == "0":
            self._proc_gnusparse_10(nxt, pax_headers, tf)
        if self.type in (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE):
            nxt._apply_pax_info(pax_headers, tf.encoding, tf.errors)
            nxt.offset = self.offset
            if "size" in pax_headers:  # the data (and so the next header) moved
                offset = nxt.offset_data
                if nxt.isreg() or nxt.type not in tarfile.SUPPORTED_TYPES:
                    offset += nxt._block(nxt.size)
                tf.offset = offset
        return nxt

    @classmethod
    def frombuf(cls, buf, encoding, errors):
        if len(buf) != tarfile.BLOCKSIZE:
            return super().frombuf(buf, encoding, errors)
        (name, mode, uid, gid, size, mtime, chk, typ, linkname, _magic, uname, gname,
         devmajor, devminor, prefix, _pad) = _HEADER.unpack(buf)
        if typ == tarfile.GNUTYPE_SPARSE:
            return super().frombuf(buf, encoding, errors)
        try:
            chksum = _octal(chk)
            if chksum != 256 + sum(buf) - sum(chk):
                raise _Fallback  # signed checksum, zero block or a bad header
            obj = cls()
            obj.mode = _octal(mode)
            obj.uid = _octal(uid)
            obj.gid = _octal(gid)
            obj.size = _octal(size)
            obj.mtime = _octal(mtime)
            obj.devmajor = _octal(devmajor)
            obj.devminor = _octal(devminor)
        except _Fallback:
            return super().frombuf(buf, encoding, errors)
        obj.chksum = chksum
        obj.type = typ
        obj.name = _string(name, encoding, errors)
        obj.linkname = _string(linkname, encoding, errors)
        obj.uname = _string(uname, encoding, errors)
        obj.gname = _string(gname, encoding, errors)
        prefix = _string(prefix, encoding, errors)
        if typ == tarfile.AREGTYPE and obj.name.endswith("/"):
            obj.type = tarfile.DIRTYPE
        if obj.type == tarfile.DIRTYPE:
            obj.name = obj.name.rstrip("/")
        if prefix and obj.type not in _GNU_TYPES:
            obj.name = prefix + "/" + obj.name
        return obj


def _pax_records(buf: bytes) -> list[tuple[bytes, bytes]]:
    """The ``(keyword, value)`` records of a pax extended header (``"%d %s=%s\\n"``, the
    length counting the whole record), up to the NUL padding; a malformed record raises
    :class:`InvalidLayer`. Linear in the header's size."""
    records = []
    pos, end = 0, len(buf)
    while pos < end and buf[pos] != 0:
        sp = buf.find(b" ", pos, pos + 21)
        digits = buf[pos:sp] if sp > pos else b""
        if not digits.isdigit():
            raise InvalidLayer("invalid tar stream: a malformed pax extended header record")
        length = int(digits)
        nl = pos + length - 1  # where the record's newline must be
        if length < 5 or nl >= end or nl <= sp or buf[nl] != 0x0A:
            raise InvalidLayer("invalid tar stream: a malformed pax extended header record")
        keyword, eq, value = buf[sp + 1 : nl].partition(b"=")
        if not keyword or not eq:
            raise InvalidLayer("invalid tar stream: a malformed pax extended header record")
        records.append((keyword, value))
        pos += length
    return records


def _clean(name: str, what: str = "entry") -> tuple[str, ...]:
    """Normalise a member name to its components (``()`` is the layer root)."""
    if "\0" in name:
        raise InvalidLayer(f"invalid {what} name {name!r}: contains NUL")
    if name.startswith("/"):
        raise InvalidLayer(f"invalid {what} name {name!r}: absolute path")
    norm = posixpath.normpath(name) if name else "."
    if norm == ".":
        return ()
    parts = tuple(norm.split("/"))
    if parts[0] == ".." or norm.startswith("/"):
        raise InvalidLayer(f"invalid {what} name {name!r}: escapes the layer root")
    return parts


def _ns(ti: tarfile.TarInfo, key: str, default: int | None) -> int | None:
    """Nanosecond timestamp from a PAX record (exact) or the ustar field."""
    v = ti.pax_headers.get(key)
    if v is not None:
        try:
            neg = v.startswith("-")
            s = v[1:] if neg else v
            whole, _, frac = s.partition(".")
            ns = int(whole or "0") * 1_000_000_000 + int((frac + "000000000")[:9] or "0")
            return -ns if neg else ns
        except ValueError:
            raise InvalidLayer(f"invalid PAX {key} {v!r} for {ti.name!r}") from None
    if key == "mtime":
        return int(ti.mtime * 1_000_000_000)
    return default


def _xattrs(ti: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    out = []
    for k, v in ti.pax_headers.items():
        if k.startswith("SCHILY.xattr."):
            name = k[13:]
            if not name or name.startswith(_IGNORED_XATTR_PREFIXES):
                continue
            out.append((name, v.encode("utf-8", "surrogateescape")))
    return out


# --------------------------------------------------------------------------------------
# The extractor
# --------------------------------------------------------------------------------------


class _Applier:
    def __init__(self, dest: str, overlay: bool, parent_lookup: Callable | None):
        self.dest = dest
        self.overlay = overlay
        self.parent_lookup = parent_lookup
        self.root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | _O_CLOEXEC)
        # The chain of open directory descriptors from the root to the last parent used.
        self._names: list[str] = []
        self._fds: list[int] = []
        self.unpacked: set[str] = set()
        self.dir_times: list[tuple[tuple[str, ...], int, int]] = []
        self.skipped_xattrs: list[tuple[str, str]] = []

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
        self._names.clear()
        os.close(self.root_fd)

    # -- directory resolution -----------------------------------------------------------

    def _classify_fail(self, cur: int, name: str, rel: tuple[str, ...], create: bool):
        try:
            st = os.stat(name, dir_fd=cur, follow_symlinks=False)
        except FileNotFoundError:
            return None
        rels = "/".join(rel)
        if stat.S_ISLNK(st.st_mode):
            raise InvalidLayer(f"refusing to write through symlink {rels!r} in the layer")
        if create:
            raise InvalidLayer(f"cannot create an entry under {rels!r}: not a directory")
        return None

    def _open_dir(self, cur: int, name: str, rel: tuple[str, ...], create: bool) -> int | None:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=cur)
        except FileNotFoundError:
            if not create:
                return None
        except NotADirectoryError:
            self._classify_fail(cur, name, rel, create)
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:
                self._classify_fail(cur, name, rel, create)
                return None
            raise
        os.mkdir(name, 0o755, dir_fd=cur)
        fd = os.open(name, _DIR_FLAGS, dir_fd=cur)
        try:
            self._implicit_dir_metadata(fd, rel)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _implicit_dir_metadata(self, fd: int, rel: tuple[str, ...]) -> None:
        if self.parent_lookup is None:
            return
        host = self.parent_lookup("/".join(rel))
        if not host:
            return
        try:
            st = os.lstat(host)
        except OSError:
            return
        if not stat.S_ISDIR(st.st_mode):
            return
        os.fchown(fd, st.st_uid, st.st_gid)
        os.fchmod(fd, stat.S_IMODE(st.st_mode))
        self.dir_times.append((rel, st.st_atime_ns, st.st_mtime_ns))

    def _dir_fd(self, parts: tuple[str, ...], create: bool) -> int | None:
        """Descriptor of directory ``dest/parts`` (borrowed: valid until the next call)."""
        names, fds = self._names, self._fds
        k = 0
        n = min(len(names), len(parts))
        while k < n and names[k] == parts[k]:
            k += 1
        while len(fds) > k:
            os.close(fds.pop())
            names.pop()
        cur = fds[-1] if fds else self.root_fd
        for i in range(k, len(parts)):
            fd = self._open_dir(cur, parts[i], parts[: i + 1], create)
            if fd is None:
                return None
            names.append(parts[i])
            fds.append(fd)
            cur = fd
        return cur

    def _push(self, name: str, fd: int) -> None:
        """Make *fd* (the directory *name* inside the current chain's last dir) the top."""
        self._names.append(name)
        self._fds.append(fd)

    def _fresh_dir_fd(self, parts: tuple[str, ...]) -> int | None:
        """Like :meth:`_dir_fd` without creating and without touching the cached chain;
        the caller closes the returned descriptor."""
        cur = os.dup(self.root_fd)
        try:
            for i, name in enumerate(parts):
                nxt = self._open_dir(cur, name, parts[: i + 1], False)
                os.close(cur)
                cur = -1
                if nxt is None:
                    return None
                cur = nxt
            fd, cur = cur, -1
            return fd
        finally:
            if cur >= 0:
                os.close(cur)

    # -- helpers --------------------------------------------------------------------------

    @staticmethod
    def _lstat(pfd: int, name: str):
        try:
            return os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    @staticmethod
    def _remove(pfd: int, name: str, st) -> None:
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=pfd)
        else:
            os.unlink(name, dir_fd=pfd)

    def _setxattrs(self, target, xattrs, rel: str, follow: bool = True) -> None:
        for name, value in xattrs:
            try:
                os.setxattr(target, name, value, follow_symlinks=follow)
            except OSError as e:
                if e.errno in _SKIPPABLE_XATTR_ERRNOS:
                    self.skipped_xattrs.append((rel, name))
                    continue
                raise

    # -- entry handling ----------------------------------------------------------------------

    def entry(self, tar: tarfile.TarFile, ti: tarfile.TarInfo, src: _TarSource) -> None:
        parts = _clean(ti.name)
        if parts and parts[0].startswith(WHITEOUT_META_PREFIX):
            return  # AUFS metadata (.wh..wh.plnk, .wh..wh.aufs, ...)
        if not parts:
            if not ti.isdir():
                raise InvalidLayer(f"invalid entry {ti.name!r}: the layer root must be a directory")
            self._root_dir(ti)
            return
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            if base == WHITEOUT_OPAQUE:
                self._opaque(parts[:-1])
            elif base.startswith(WHITEOUT_META_PREFIX):
                return
            else:
                self._whiteout(parts[:-1], base[len(WHITEOUT_PREFIX) :], ti)
            return

        if ti.islnk():
            # Resolve the target before touching anything at the entry's own path.
            tparts = _clean(ti.linkname, "hardlink target")
            if not tparts:
                raise InvalidLayer(f"invalid hardlink {ti.name!r}: target is the layer root")
        else:
            tparts = None

        pfd = self._dir_fd(parts[:-1], True)
        name = base
        rel = "/".join(parts)
        st = self._lstat(pfd, name)
        isdir = ti.isdir()
        if st is not None and not (isdir and stat.S_ISDIR(st.st_mode)):
            self._remove(pfd, name, st)

        if ti.isreg():
            self._regular(tar, pfd, name, ti, src, rel)
        elif isdir:
            merge = st is not None and stat.S_ISDIR(st.st_mode)
            self._directory(pfd, name, ti, parts, existing=merge)
        elif ti.issym():
            os.symlink(ti.linkname, name, dir_fd=pfd)
            self._finish_node(pfd, name, ti, rel, chmod=False)
        elif ti.islnk():
            self._hardlink(pfd, name, tparts, ti)
        elif ti.ischr() or ti.isblk():
            kind = stat.S_IFCHR if ti.ischr() else stat.S_IFBLK
            os.mknod(name, kind | 0o600, os.makedev(ti.devmajor, ti.devminor), dir_fd=pfd)
            self._finish_node(pfd, name, ti, rel, chmod=True)
        elif ti.isfifo():
            os.mkfifo(name, 0o600, dir_fd=pfd)
            self._finish_node(pfd, name, ti, rel, chmod=True)
        else:
            raise InvalidLayer(f"unsupported tar entry type {ti.type!r} for {ti.name!r}")
        self.unpacked.add(rel)

    def _root_dir(self, ti: tarfile.TarInfo) -> None:
        fd = self.root_fd
        os.fchown(fd, ti.uid, ti.gid)
        os.fchmod(fd, ti.mode & 0o7777)
        self._setxattrs(fd, _xattrs(ti), ".")
        mt = _ns(ti, "mtime", None)
        self.dir_times.append(((), _ns(ti, "atime", mt), mt))

    def _regular(self, tar, pfd: int, name: str, ti, src: _TarSource, rel: str) -> None:
        fd = os.open(name, _FILE_FLAGS, 0o600, dir_fd=pfd)
        try:
            if ti.sparse is not None:
                f = tar.extractfile(ti)
                while True:
                    chunk = f.read(CHUNK_SIZE)
                    if not chunk:
                        break
                    _write_all(fd, chunk)
            else:
                src.seek(ti.offset_data)
                remaining = ti.size
                while remaining:
                    chunk = src.read(CHUNK_SIZE if remaining > CHUNK_SIZE else remaining)
                    if not chunk:
                        raise InvalidLayer(f"truncated tar stream: data of {ti.name!r} is cut")
                    _write_all(fd, chunk)
                    remaining -= len(chunk)
            os.fchown(fd, ti.uid, ti.gid)
            os.fchmod(fd, ti.mode & 0o7777)
            xa = _xattrs(ti)
            if xa:
                self._setxattrs(fd, xa, rel)
            mt = _ns(ti, "mtime", None)
            os.utime(fd, ns=(_ns(ti, "atime", mt), mt))
        finally:
            os.close(fd)

    def _directory(self, pfd: int, name: str, ti, parts, existing: bool) -> None:
        if not existing:
            os.mkdir(name, 0o700, dir_fd=pfd)
        fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
        try:
            os.fchown(fd, ti.uid, ti.gid)
            os.fchmod(fd, ti.mode & 0o7777)
            xa = _xattrs(ti)
            if xa:
                self._setxattrs(fd, xa, "/".join(parts))
        except BaseException:
            os.close(fd)
            raise
        self._push(name, fd)  # the next entries are most likely inside it
        mt = _ns(ti, "mtime", None)
        self.dir_times.append((parts, _ns(ti, "atime", mt), mt))

    def _finish_node(self, pfd: int, name: str, ti, rel: str, chmod: bool) -> None:
        os.chown(name, ti.uid, ti.gid, dir_fd=pfd, follow_symlinks=False)
        if chmod:
            # the node was just created by us and is not a symlink
            os.chmod(name, ti.mode & 0o7777, dir_fd=pfd)
        xa = _xattrs(ti)
        if xa:
            self._setxattrs(f"/proc/self/fd/{pfd}/{name}", xa, rel, follow=False)
        mt = _ns(ti, "mtime", None)
        os.utime(name, ns=(_ns(ti, "atime", mt), mt), dir_fd=pfd, follow_symlinks=False)

    def _hardlink(self, pfd: int, name: str, tparts, ti) -> None:
        tfd = self._fresh_dir_fd(tparts[:-1])
        if tfd is None:
            raise InvalidLayer(
                f"invalid hardlink {ti.name!r} -> {ti.linkname!r}: target does not exist"
            )
        try:
            tst = self._lstat(tfd, tparts[-1])
            if tst is None:
                raise InvalidLayer(
                    f"invalid hardlink {ti.name!r} -> {ti.linkname!r}: target does not exist"
                )
            if stat.S_ISDIR(tst.st_mode):
                raise InvalidLayer(
                    f"invalid hardlink {ti.name!r} -> {ti.linkname!r}: target is a directory"
                )
            os.link(tparts[-1], name, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tfd)

    def _whiteout(self, dparts: tuple[str, ...], orig: str, ti) -> None:
        if orig in ("", ".", ".."):
            raise InvalidLayer(f"invalid whiteout {ti.name!r}")
        if self.overlay:
            pfd = self._dir_fd(dparts, True)
            st = self._lstat(pfd, orig)
            if st is not None:
                self._remove(pfd, orig, st)
            os.mknod(orig, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=pfd)
            os.chown(orig, ti.uid, ti.gid, dir_fd=pfd, follow_symlinks=False)
            mt = _ns(ti, "mtime", None)
            os.utime(orig, ns=(_ns(ti, "atime", mt), mt), dir_fd=pfd, follow_symlinks=False)
            self.unpacked.add("/".join(dparts + (orig,)))
        else:
            pfd = self._dir_fd(dparts, False)
            if pfd is None:
                return
            st = self._lstat(pfd, orig)
            if st is not None:
                self._remove(pfd, orig, st)

    def _opaque(self, dparts: tuple[str, ...]) -> None:
        if self.overlay:
            dfd = self._dir_fd(dparts, True)
            os.setxattr(dfd, OVERLAY_OPAQUE_XATTR, b"y")
        else:
            dfd = self._dir_fd(dparts, False)
            if dfd is not None:
                self._clear_lower(dfd, dparts)

    def _clear_lower(self, dfd: int, dparts: tuple[str, ...]) -> None:
        """vfs opaque dir: remove what did not come from this layer (recursively)."""
        with os.scandir(dfd) as it:
            entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        for name, isdir in entries:
            rel = dparts + (name,)
            if "/".join(rel) in self.unpacked:
                if isdir:
                    cfd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
                    try:
                        self._clear_lower(cfd, rel)
                    finally:
                        os.close(cfd)
                continue
            if isdir:
                shutil.rmtree(name, dir_fd=dfd)
            else:
                os.unlink(name, dir_fd=dfd)

    def finish(self) -> None:
        """Set directory times last (creating their content changed them)."""
        for parts, at, mt in self.dir_times:
            if not parts:
                os.utime(self.root_fd, ns=(at, mt))
                continue
            try:
                pfd = self._dir_fd(parts[:-1], False)
            except InvalidLayer:
                continue  # a later entry replaced a parent with a symlink
            if pfd is None:
                continue
            st = self._lstat(pfd, parts[-1])
            if st is None or not stat.S_ISDIR(st.st_mode):
                continue
            os.utime(parts[-1], ns=(at, mt), dir_fd=pfd, follow_symlinks=False)


def _write_all(fd: int, data: bytes) -> None:
    n = os.write(fd, data)
    if n == len(data):
        return
    view = memoryview(data)
    while n < len(view):
        n += os.write(fd, view[n:])


def _oserror(e: OSError, name: str | None) -> KpodError:
    where = f" {name!r}" if name else ""
    msg = f"cannot extract{where}: {e.strerror or e}"
    if e.errno in _RESOURCE_ERRNOS:
        return StorageError(msg)
    return InvalidLayer(msg)


def apply_layer(
    stream,
    dest_dir,
    *,
    whiteout_format: str = "overlay",
    parent_lookup: Callable[[str], str | None] | None = None,
) -> ApplyResult:
    """Extract the layer tar *stream* (plain, gzip or zstd) into *dest_dir*.

    A :class:`~libpod_core.digest.HashedTarStream` (what the store hands a storage driver)
    is a plain tar whose digest its reader thread computes; it is not hashed again here.

    Returns the uncompressed size and ``diff_id``. Raises :class:`InvalidLayer` for a
    corrupt or hostile stream, :class:`StorageError` when the filesystem fails (no space...).
    The whole input stream is consumed.
    """
    if whiteout_format not in WHITEOUT_FORMATS:
        raise InvalidArgument(
            f"unknown whiteout format {whiteout_format!r} (expected one of {WHITEOUT_FORMATS})"
        )
    dest = os.fspath(dest_dir)
    try:
        applier = _Applier(dest, whiteout_format == "overlay", parent_lookup)
    except OSError as e:
        raise StorageError(f"cannot open layer directory {dest!r}: {e.strerror or e}") from None
    current: str | None = None
    try:
        if isinstance(stream, HashedTarStream):  # already plain and hashed in its own thread
            hashed = stream
        else:
            hashed = DigestReader(open_decompressed(stream))
        src = _TarSource(hashed)
        try:
            tar = tarfile.open(
                fileobj=src,
                mode="r:",
                tarinfo=SafeTarInfo,
                encoding="utf-8",
                errors="surrogateescape",
            )
        except tarfile.ReadError as e:
            if hashed.size == 0:  # an empty stream is an empty layer, as in docker
                return ApplyResult(size=0, diff_id=hashed.digest)
            raise InvalidLayer(f"invalid tar stream: {e}") from None
        count = 0
        while True:
            ti = tar.next()
            if ti is None:
                break
            count += 1
            if count % 256 == 0:
                tar.members.clear()
            current = ti.name
            applier.entry(tar, ti, src)
        current = None
        err = getattr(tar, "_kpod_header_error", None)
        if isinstance(err, tarfile.TruncatedHeaderError):
            raise InvalidLayer("truncated tar stream: header cut short")
        if isinstance(err, tarfile.InvalidHeaderError):
            raise InvalidLayer(f"invalid tar stream: bad header at offset {tar.offset}: {err}")
        applier.finish()
        hashed.drain()  # padding after the end-of-archive marker is part of the diff_id
        return ApplyResult(size=hashed.size, diff_id=hashed.digest)
    except KpodError:
        raise
    except (tarfile.TarError, EOFError, UnicodeError) as e:
        where = f" at {current!r}" if current else ""
        raise InvalidLayer(f"invalid tar stream{where}: {e}") from None
    except OSError as e:
        raise _oserror(e, current) from None
    finally:
        applier.close()
