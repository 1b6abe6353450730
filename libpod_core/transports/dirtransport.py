"""The ``dir:PATH`` transport: an image as plain files in a directory (containers/image "dir").

Layout (what skopeo reads and writes)::

    PATH/version                      "Directory Transport Version: 1.1\\n"
    PATH/manifest.json                the (top-level) manifest, exact bytes
    PATH/<hex>                        each blob (config, layers), named by its sha256 hex
    PATH/<hex>.manifest.json          per-instance manifests when the image is an index
    PATH/signature-1, signature-2...  simple-signing signatures of the top-level manifest
    PATH/<hex>.signature-1...         signatures of an instance

The destination stages everything in a hidden directory next to PATH and swaps it in at
:meth:`DirDestination.commit`, so a failed copy leaves PATH as it was. It creates PATH, replaces
an existing dir-transport directory, and refuses a non-empty directory that is not one.

This module also holds the small filesystem helpers the other local transports share (confined
opens that refuse symlinks leaving a root, blob writes that become visible only once their
content is complete and verified, bounded reads of small JSON documents).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import tempfile
from typing import IO

from ..digest import CHUNK_SIZE, parse_digest
from ..errors import DigestMismatch, ImageError, InvalidArgument, NotFound, TransportError
from ..manifest import MAX_MANIFEST_SIZE
from .base import ImageDestination, ImageReference, ImageSource, SystemContext, Transport

__all__ = [
    "DirTransport",
    "DirReference",
    "DirSource",
    "DirDestination",
    "DIR_VERSION",
    "MAX_SIGNATURE_SIZE",
]

DIR_VERSION = b"Directory Transport Version: 1.1\n"
_VERSION_PREFIX = b"Directory Transport Version: "
MAX_SIGNATURE_SIZE = 4 * 1024 * 1024
_MAX_SIGNATURES = 1000

FILE_MODE = 0o644
DIR_MODE = 0o755


# ------------------------------------------------------------------------------------------
# Shared helpers (used by the oci, oci-archive and docker-archive transports too)
# ------------------------------------------------------------------------------------------


def read_limited(stream: IO[bytes], limit: int, what: str) -> bytes:
    """Read *stream* to its end, refusing more than *limit* bytes (ImageError)."""
    parts: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(min(CHUNK_SIZE, limit + 1 - total))
        if not chunk:
            return b"".join(parts)
        total += len(chunk)
        if total > limit:
            raise ImageError(f"{what} is too large: more than {limit} bytes")
        parts.append(chunk)


def resolve_path(path: str) -> str:
    """An absolute path with the symlinks of its existing part resolved (as containers/image
    does, so that policy scopes and comparisons see one spelling)."""
    if not path:
        raise InvalidArgument("empty path")
    if "\0" in path:
        raise InvalidArgument(f"invalid path {path!r}: contains a NUL byte")
    return os.path.realpath(os.path.abspath(path))


def confined_path(root: str, rel: str, what: str) -> str:
    """``root/rel`` with symlinks resolved; TransportError if it leaves *root*."""
    p = os.path.join(root, rel)
    real = os.path.realpath(p)
    rroot = os.path.realpath(root)
    if real != rroot and not real.startswith(rroot.rstrip(os.sep) + os.sep):
        raise TransportError(f"{what} {p} resolves to {real}, outside {rroot}: refusing to follow it")
    return real


def open_confined(root: str, rel: str, what: str) -> tuple[IO[bytes], int]:
    """Open the regular file ``root/rel`` for reading, refusing symlinks that lead out of
    *root*. Returns ``(file, size)``; NotFound if it does not exist."""
    real = confined_path(root, rel, what)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise NotFound(f"{what} {os.path.join(root, rel)} does not exist") from None
    except OSError as exc:
        raise TransportError(f"cannot open {what} {os.path.join(root, rel)}: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise TransportError(f"{what} {os.path.join(root, rel)} is not a regular file")
    return os.fdopen(fd, "rb"), st.st_size


def read_small_file(root: str, rel: str, limit: int, what: str) -> bytes:
    f, size = open_confined(root, rel, what)
    with f:
        if size > limit:
            raise ImageError(f"{what} {os.path.join(root, rel)} is too large: {size} bytes, the limit is {limit}")
        return read_limited(f, limit, what)


def exists_confined(root: str, rel: str) -> bool:
    p = os.path.join(root, rel)
    if not os.path.lexists(p):
        return False
    try:
        confined_path(root, rel, "file")
    except TransportError:
        return False
    return os.path.isfile(p)


def atomic_write(path: str, data: bytes, mode: int = FILE_MODE) -> None:
    """Write *data* to *path* via a temporary file in the same directory and a rename."""
    d = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def write_blob_file(directory: str, stream: IO[bytes], digest: str | None, size: int | None,
                    name_for=None) -> tuple[str, int]:
    """Copy *stream* into a file of *directory* named after its digest.

    The bytes go to a temporary file first; the file is renamed into place only after the
    stream reached its end (a verifying stream raises there) and the digest and size computed
    here match *digest* and *size* when those are given. *name_for* maps a digest to the file
    name (default: the hex part). Returns ``(digest, size)``.
    """
    algo = parse_digest(digest)[0] if digest else "sha256"
    h = hashlib.new(algo)
    n = 0
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-blob-")
    try:
        with os.fdopen(fd, "wb") as f:
            while True:
                chunk = stream.read(CHUNK_SIZE)
                if not chunk:
                    break
                h.update(chunk)
                n += len(chunk)
                f.write(chunk)
            f.flush()
        actual = f"{algo}:{h.hexdigest()}"
        if size is not None and size >= 0 and n != size:
            raise DigestMismatch(f"blob {digest or actual}: size mismatch: expected {size} bytes, got {n}")
        if digest is not None and actual != digest:
            raise DigestMismatch(f"blob digest mismatch: expected {digest}, got {actual}")
        os.chmod(tmp, FILE_MODE)
        final = os.path.join(directory, (name_for or _hex_name)(actual))
        os.replace(tmp, final)
    except BaseException:
        _unlink(tmp)
        raise
    return actual, n


def _hex_name(digest: str) -> str:
    algo, hexpart = parse_digest(digest)
    return hexpart if algo == "sha256" else f"{algo}-{hexpart}"


def guess_manifest_type(raw: bytes) -> str | None:
    """The ``mediaType`` a manifest declares (or its shape implies), None if unclear."""
    from ..manifest import parse_manifest

    try:
        return parse_manifest(raw).media_type
    except Exception:
        return None


def check_not_dir_file(path: str, what: str) -> None:
    if os.path.isdir(path):
        raise TransportError(f"{what} {path} is a directory, expected a file")


def staging_dir_for(path: str, kind: str = "tmp") -> str:
    """A new hidden directory next to *path* (same filesystem, so renames are atomic)."""
    parent = os.path.dirname(path) or "."
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise TransportError(f"cannot create directory {parent}: {exc.strerror}") from None
    try:
        d = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}.kpod-{kind}-")
    except OSError as exc:
        raise TransportError(f"cannot create a temporary directory in {parent}: {exc.strerror}") from None
    os.chmod(d, DIR_MODE)
    return d


# ------------------------------------------------------------------------------------------
# The transport
# ------------------------------------------------------------------------------------------


class DirTransport(Transport):
    name = "dir"

    def parse_reference(self, ref: str) -> "DirReference":
        return DirReference(self, ref)

    def validate_policy_scope(self, scope: str) -> None:
        if not scope.startswith("/"):
            raise InvalidArgument(f"invalid dir: policy scope {scope!r}: the path must be absolute")
        if scope == "/":
            raise InvalidArgument('invalid dir: policy scope "/": use the default scope instead')
        if os.path.normpath(scope) != scope:
            raise InvalidArgument(f"invalid dir: policy scope {scope!r}: the path must be clean (normalized)")


class DirReference(ImageReference):
    def __init__(self, transport: Transport, path: str):
        if not path:
            raise InvalidArgument("invalid dir: reference: an empty path")
        self.transport = transport
        self.path = resolve_path(path)

    def string_within_transport(self) -> str:
        return self.path

    def policy_configuration_identity(self) -> str:
        return self.path

    def policy_configuration_namespaces(self) -> list[str]:
        out = []
        p = self.path
        while True:
            parent = os.path.dirname(p)
            if parent == p or parent == "/":
                break
            out.append(parent)
            p = parent
        return out

    def new_source(self, ctx: SystemContext) -> "DirSource":
        return DirSource(self, ctx)

    def new_destination(self, ctx: SystemContext) -> "DirDestination":
        return DirDestination(self, ctx)


def _manifest_name(instance_digest: str | None) -> str:
    if instance_digest is None:
        return "manifest.json"
    return f"{_hex_name(instance_digest)}.manifest.json"


def _signature_name(instance_digest: str | None, i: int) -> str:
    if instance_digest is None:
        return f"signature-{i}"
    return f"{_hex_name(instance_digest)}.signature-{i}"


class DirSource(ImageSource):
    def __init__(self, ref: DirReference, ctx: SystemContext | None = None):
        self.reference = ref
        self.root = ref.path
        if not os.path.isdir(self.root):
            if os.path.exists(self.root):
                raise TransportError(f"{ref}: {self.root} is not a directory")
            raise NotFound(f"{ref}: directory {self.root} does not exist")

    def get_manifest(self, instance_digest: str | None = None) -> tuple[bytes, str | None]:
        name = _manifest_name(instance_digest)
        what = "manifest" if instance_digest is None else f"manifest of instance {instance_digest}"
        raw = read_small_file(self.root, name, MAX_MANIFEST_SIZE, what)
        return raw, guess_manifest_type(raw)

    def get_blob(self, digest: str, size: int | None = None, media_type: str | None = None):
        return open_confined(self.root, _hex_name(digest), f"blob {digest}")

    def has_blob(self, digest: str) -> bool:
        return exists_confined(self.root, _hex_name(digest))

    def get_signatures(self, instance_digest: str | None = None) -> list[bytes]:
        sigs = []
        for i in range(1, _MAX_SIGNATURES + 1):
            name = _signature_name(instance_digest, i)
            if not os.path.lexists(os.path.join(self.root, name)):
                break
            sigs.append(read_small_file(self.root, name, MAX_SIGNATURE_SIZE, f"signature {i}"))
        return sigs


def is_dir_image(path: str) -> bool:
    """True if *path* holds a ``version`` file of the dir transport."""
    try:
        with open(os.path.join(path, "version"), "rb") as f:
            return f.read(len(_VERSION_PREFIX) + 16).startswith(_VERSION_PREFIX)
    except OSError:
        return False


class DirDestination(ImageDestination):
    def __init__(self, ref: DirReference, ctx: SystemContext | None = None):
        self.reference = ref
        self.target = ref.path
        if os.path.lexists(self.target):
            if not os.path.isdir(self.target):
                raise TransportError(f"{ref}: {self.target} exists and is not a directory")
            if os.listdir(self.target) and not is_dir_image(self.target):
                raise TransportError(
                    f"{ref}: non-empty directory {self.target} is not a dir-transport image "
                    "(it has no version file); refusing to overwrite it"
                )
        self.staging = staging_dir_for(self.target)
        self._committed = False
        atomic_write(os.path.join(self.staging, "version"), DIR_VERSION)

    def supported_manifest_types(self) -> list[str]:
        return []

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        p = os.path.join(self.staging, _hex_name(digest))
        try:
            st = os.lstat(p)
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode) and (size is None or size < 0 or st.st_size == size)

    def reuse_blob(self, digest, size, media_type, *, layer_index=None, diff_id=None):
        if self.has_blob(digest, size):
            return digest, os.path.getsize(os.path.join(self.staging, _hex_name(digest)))
        return None

    def put_blob(self, stream, digest, size, media_type, *, is_config=False, layer_index=None, diff_id=None):
        return write_blob_file(self.staging, stream, digest, size)

    def put_manifest(self, raw: bytes, media_type: str | None, instance_digest: str | None = None) -> None:
        atomic_write(os.path.join(self.staging, _manifest_name(instance_digest)), bytes(raw))

    def put_signatures(self, signatures: list[bytes], instance_digest: str | None = None) -> None:
        for i, sig in enumerate(signatures, 1):
            atomic_write(os.path.join(self.staging, _signature_name(instance_digest, i)), bytes(sig))

    def commit(self) -> None:
        if self._committed:
            return
        if not os.path.exists(os.path.join(self.staging, "manifest.json")):
            raise TransportError(f"{self.reference}: no manifest was written; nothing to commit")
        target = self.target
        old = None
        if os.path.lexists(target):
            # Re-check: someone may have filled it meanwhile.
            if not os.path.isdir(target) or (os.listdir(target) and not is_dir_image(target)):
                raise TransportError(f"{self.reference}: {target} changed and is not a dir-transport image any more")
            old = staging_dir_for(target, "old")
            os.rmdir(old)
            try:
                os.rename(target, old)
            except OSError as exc:
                if exc.errno not in (errno.EBUSY, errno.EXDEV, errno.EPERM, errno.EACCES):
                    raise TransportError(f"{self.reference}: cannot replace {target}: {exc.strerror}") from None
                # A mount point or an undeletable directory: replace its contents instead.
                self._replace_contents(target)
                self._committed = True
                return
        try:
            os.rename(self.staging, target)
        except OSError as exc:
            if old is not None:
                os.rename(old, target)
            raise TransportError(f"{self.reference}: cannot move the image into {target}: {exc.strerror}") from None
        self._committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def _replace_contents(self, target: str) -> None:
        for name in os.listdir(target):
            p = os.path.join(target, name)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            else:
                os.unlink(p)
        names = sorted(os.listdir(self.staging), key=lambda n: n == "manifest.json")
        for name in names:  # manifest.json last: a reader sees a complete image or none
            os.rename(os.path.join(self.staging, name), os.path.join(target, name))
        shutil.rmtree(self.staging, ignore_errors=True)

    def close(self) -> None:
        if not self._committed and os.path.isdir(self.staging):
            shutil.rmtree(self.staging, ignore_errors=True)
