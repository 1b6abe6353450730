"""The ``docker-archive:PATH[:NAME[:TAG]|:@INDEX]`` transport: ``docker save`` tar archives.

Archive format (Docker image spec v1.2 "combined image JSON + filesystem changeset")::

    manifest.json        [{"Config": "<hex>.json", "RepoTags": ["docker.io/library/x:1"],
                           "Layers": ["<hex>.tar", ...]}, ...]   one entry per image
    repositories         {"docker.io/library/x": {"1": "<legacy top layer id>"}}  (legacy)
    <hex>.json           an image config
    <hex>.tar            an uncompressed layer tar (older docker: <id>/layer.tar; newer:
                         blobs/sha256/<hex>); members may be symlinks to other members

Reading: the archive is indexed once (member name -> data offset and size, following the tar
headers with seeks only), then members are read by offset with ``pread`` — nothing is extracted
and no layer is held in memory. A gzip/zstd-compressed archive is first decompressed into an
unnamed temporary file. The source synthesizes a Docker v2s2 manifest whose layers are the
uncompressed layer tars: their digest is the config's ``diff_id`` (the copy pipeline verifies
it while the bytes flow); a layer file that is itself compressed is decompressed on the fly.

Choosing the image: ``:NAME[:TAG]`` matches a RepoTag (normalized the Docker Hub way),
``:@INDEX`` the INDEX-th entry of manifest.json, nothing the only image in the archive.
:meth:`DockerArchiveSource.repo_tags` gives the chosen image's names;
:func:`list_images` / :meth:`DockerArchiveReader.list_images` list every image.

Writing: :class:`DockerArchiveWriter` writes one archive holding any number of images, with
shared layers stored once. ``docker-archive:PATH:NAME`` as a destination uses a private writer
committed with the image; for several images share one writer::

    with DockerArchiveWriter("/tmp/x.tar") as w:         # commits on success, else removes
        copy_image(src1, w.reference(["localhost/a:1"]), ctx)
        copy_image(src2, w.reference(["localhost/b:latest"]), ctx)

The archive is built in a temporary file next to PATH and renamed over PATH at commit.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import stat
import tarfile
import tempfile
import threading
from dataclasses import dataclass, field
from typing import IO, Any

from ..digest import CHUNK_SIZE, detect_compression, open_decompressed, parse_digest
from ..errors import (
    DigestMismatch,
    ImageError,
    InvalidArgument,
    InvalidLayer,
    NotFound,
    TransportError,
)
from ..manifest import (
    MAX_CONFIG_SIZE,
    MAX_MANIFEST_SIZE,
    MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_DOCKER_LAYER,
    MEDIA_TYPE_DOCKER_LAYER_GZIP,
    MEDIA_TYPE_DOCKER_MANIFEST,
    FORMAT_V2S2,
    Descriptor,
    Manifest,
    build_manifest,
    is_layer_media_type,
    layer_compression,
    parse_image_config,
    parse_manifest,
)
from ..reference import Reference, digest_bytes, normalize_docker_hub, parse as parse_reference
from .base import ImageDestination, ImageReference, ImageSource, SystemContext, Transport
from .dirtransport import read_limited, resolve_path

__all__ = [
    "DockerArchiveTransport",
    "DockerArchiveReference",
    "DockerArchiveReader",
    "DockerArchiveSource",
    "DockerArchiveWriter",
    "DockerArchiveDestination",
    "ArchiveImage",
    "TarIndex",
    "list_images",
    "ArchiveWriter",
]

_MAX_LINK_HOPS = 32


# ------------------------------------------------------------------------------------------
# Reading tar archives by offset
# ------------------------------------------------------------------------------------------


def safe_member_name(name: str, what: str, where: str) -> str:
    """Normalize a member path named by a document in the archive; refuse absolute paths and
    paths that climb out of the archive (TransportError)."""
    if not isinstance(name, str) or not name or "\0" in name:
        raise TransportError(f"{where}: {what} has an invalid path {name!r}")
    if name.startswith("/"):
        raise TransportError(f"{where}: {what} {name!r} is an absolute path: refusing it (path traversal)")
    n = posixpath.normpath(name)
    if n == ".." or n.startswith("../"):
        raise TransportError(f"{where}: {what} {name!r} points outside the archive: refusing it (path traversal)")
    if n == ".":
        raise TransportError(f"{where}: {what} {name!r} names no file")
    return n


def _normalize_member(name: str) -> str | None:
    n = name
    while n.startswith("./"):
        n = n[2:]
    if n.startswith("/") or "\0" in n:
        return None
    n = posixpath.normpath(n) if n else "."
    if n in (".", "") or n == ".." or n.startswith("../"):
        return None
    return n


@dataclass(frozen=True)
class _Entry:
    kind: str  # "file", "symlink", "hardlink", "dir", "other"
    offset: int
    size: int
    linkname: str = ""


class _MemberReader(io.RawIOBase):
    """A bounded read-only view of ``size`` bytes at ``offset`` of a file descriptor (pread)."""

    def __init__(self, fd: int, offset: int, size: int, what: str):
        super().__init__()
        self._fd = fd
        self._offset = offset
        self._size = size
        self._pos = 0
        self._what = what

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        remaining = self._size - self._pos
        if n is None or n < 0:
            n = remaining
        n = min(n, remaining)
        if n <= 0:
            return b""
        data = os.pread(self._fd, n, self._offset + self._pos)
        if not data:
            raise TransportError(f"{self._what}: the archive is truncated")
        self._pos += len(data)
        return data

    def readinto(self, b) -> int:
        data = self.read(len(b))
        memoryview(b).cast("B")[: len(data)] = data
        return len(data)


class TarIndex:
    """An index of a tar archive: member name -> (offset, size, type). Members are read by
    offset afterwards; the archive is never extracted. A compressed archive (gzip, zstd) is
    decompressed once into an unnamed temporary file."""

    def __init__(self, path: str, where: str | None = None):
        self.path = path
        self.where = where or path
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise NotFound(f"{self.where}: archive {path} does not exist") from None
        except IsADirectoryError:
            raise TransportError(f"{self.where}: {path} is a directory, not an archive") from None
        except OSError as exc:
            raise TransportError(f"{self.where}: cannot open {path}: {exc.strerror}") from None
        try:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise TransportError(f"{self.where}: {path} is not a regular file")
            head = f.read(8)
            f.seek(0)
            kind = detect_compression(head)
            if kind != "none":
                f = self._decompress(f, kind)
            self._f = f
            self._fd = f.fileno()
            self._size = os.fstat(self._fd).st_size
            self.entries = self._scan()
        except BaseException:
            f.close()
            raise

    def _decompress(self, f, kind: str):
        tmp = tempfile.TemporaryFile()
        try:
            with f:
                d = open_decompressed(f, compression=kind)
                while True:
                    chunk = d.read(CHUNK_SIZE)
                    if not chunk:
                        break
                    tmp.write(chunk)
            tmp.flush()
            tmp.seek(0)
        except InvalidLayer as exc:
            tmp.close()
            raise TransportError(f"{self.where}: corrupt {kind}-compressed archive: {exc.message}") from None
        except BaseException:
            tmp.close()
            raise
        return tmp

    def _scan(self) -> dict[str, _Entry]:
        entries: dict[str, _Entry] = {}
        if self._size == 0:
            raise TransportError(f"{self.where}: the archive is empty")
        from ..tarapply import SafeTarInfo

        try:
            tf = tarfile.open(fileobj=self._f, mode="r:", tarinfo=SafeTarInfo)
            for ti in tf:
                name = _normalize_member(ti.name)
                if ti.isreg():
                    if ti.offset_data + ti.size > self._size:
                        raise TransportError(
                            f"{self.where}: the archive is truncated (member {ti.name!r} needs "
                            f"{ti.offset_data + ti.size} bytes, the file has {self._size})"
                        )
                    kind = "file"
                elif ti.issym():
                    kind = "symlink"
                elif ti.islnk():
                    kind = "hardlink"
                elif ti.isdir():
                    kind = "dir"
                else:
                    kind = "other"
                if name is not None:
                    entries[name] = _Entry(kind, ti.offset_data, ti.size if kind == "file" else 0, ti.linkname)
                tf.members.clear()  # the index above is all we keep
            end = tf.offset
        except TransportError:
            raise
        except (tarfile.TarError, EOFError, OSError, ValueError, UnicodeError) as exc:
            raise TransportError(f"{self.where}: not a valid tar archive (corrupt or truncated): {exc}") from None
        # tarfile stops quietly at a header it cannot parse after the first member: make sure
        # what follows the last member is the end-of-archive marker (zeros) or nothing.
        trailer = os.pread(self._fd, 512, end)
        if trailer.strip(b"\0"):
            raise TransportError(f"{self.where}: corrupt or truncated tar archive (bad header at offset {end})")
        return entries

    def resolve(self, name: str, what: str) -> _Entry:
        """The regular-file entry for *name*, following symlinks and hard links inside the
        archive (NotFound / TransportError)."""
        n = name
        for _ in range(_MAX_LINK_HOPS):
            e = self.entries.get(n)
            if e is None:
                raise NotFound(f"{self.where}: {what} {name!r} is not in the archive")
            if e.kind == "file":
                return e
            if e.kind == "symlink":
                target = e.linkname
                base = "" if target.startswith("/") else posixpath.dirname(n)
                joined = posixpath.normpath(posixpath.join(base, target.lstrip("/")))
                if joined == ".." or joined.startswith("../"):
                    raise TransportError(f"{self.where}: {what} {name!r} is a symlink pointing outside the archive")
                n = joined
                continue
            if e.kind == "hardlink":
                target = _normalize_member(e.linkname)
                if target is None:
                    raise TransportError(f"{self.where}: {what} {name!r} is a hard link pointing outside the archive")
                n = target
                continue
            raise TransportError(f"{self.where}: {what} {name!r} is not a regular file")
        raise TransportError(f"{self.where}: {what} {name!r}: too many levels of links")

    def exists(self, name: str) -> bool:
        try:
            self.resolve(name, "file")
            return True
        except (NotFound, TransportError):
            return False

    def open(self, name: str, what: str) -> tuple[IO[bytes], int]:
        e = self.resolve(name, what)
        return _MemberReader(self._fd, e.offset, e.size, f"{self.where}: {what}"), e.size

    def read_small(self, name: str, limit: int, what: str) -> bytes:
        f, size = self.open(name, what)
        if size > limit:
            raise ImageError(f"{self.where}: {what} is too large: {size} bytes, the limit is {limit}")
        return read_limited(f, limit, what)

    def close(self) -> None:
        f = getattr(self, "_f", None)
        if f is not None:
            f.close()
            self._f = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------------------------------
# References
# ------------------------------------------------------------------------------------------


def _normalize_name(name: str, where: str) -> Reference:
    try:
        ref = parse_reference(name)
    except InvalidArgument as exc:
        raise InvalidArgument(f"invalid {where} name {name!r}: {exc.message}") from None
    if ref.digest is not None:
        raise InvalidArgument(f"invalid {where} name {name!r}: docker-archive does not support digest references")
    return normalize_docker_hub(str(ref))


class DockerArchiveTransport(Transport):
    name = "docker-archive"

    def parse_reference(self, ref: str) -> "DockerArchiveReference":
        path, _, rest = ref.partition(":")
        if not path:
            raise InvalidArgument(f"invalid docker-archive reference {ref!r}: expected PATH[:NAME[:TAG]|:@INDEX]")
        named = None
        index = None
        if rest:
            if rest.startswith("@"):
                try:
                    index = int(rest[1:], 10)
                except ValueError:
                    index = -1
                if index < 0 or not rest[1:].isdigit():
                    raise InvalidArgument(f"invalid docker-archive reference {ref!r}: invalid source index {rest[1:]!r}")
            else:
                named = _normalize_name(rest, "docker-archive reference")
        return DockerArchiveReference(self, path, named=named, index=index)

    def validate_policy_scope(self, scope: str) -> None:
        # Like containers/image: an archive has no scopes besides the default one.
        raise InvalidArgument(f"invalid docker-archive: policy scope {scope!r}: docker-archive supports only the default scope")


class DockerArchiveReference(ImageReference):
    """``docker-archive:PATH[:NAME:TAG|:@INDEX]``.

    References made by :meth:`DockerArchiveWriter.reference` carry the writer and the names
    to record; references made by :meth:`DockerArchiveReader.list_images` carry the reader
    (sources opened from them reuse its index) and :attr:`repo_tags`.
    """

    def __init__(self, transport: Transport, path: str, *, named: Reference | None = None,
                 index: int | None = None, writer: "DockerArchiveWriter | None" = None,
                 names: list[str] | None = None, reader: "DockerArchiveReader | None" = None,
                 repo_tags: list[str] | None = None):
        self.transport = transport
        self.path = resolve_path(path)
        self.named = named
        self.index = index
        self.writer = writer
        self.names = list(names or [])
        self.reader = reader
        #: RepoTags of the image, when known (set by list_images)
        self.repo_tags = list(repo_tags) if repo_tags is not None else None

    def string_within_transport(self) -> str:
        if self.named is not None:
            return f"{self.path}:{self.named}"
        if self.index is not None:
            return f"{self.path}:@{self.index}"
        if self.names:
            return f"{self.path}:{self.names[0]}"
        return self.path

    def docker_reference(self):
        return self.named

    def policy_configuration_identity(self) -> str:
        return ""

    def policy_configuration_namespaces(self) -> list[str]:
        return []

    def new_source(self, ctx: SystemContext | None = None) -> "DockerArchiveSource":
        if self.reader is not None:
            return DockerArchiveSource(self, self.reader, own_reader=False)
        reader = DockerArchiveReader(self.path, where=str(self))
        return DockerArchiveSource(self, reader, own_reader=True)

    def new_destination(self, ctx: SystemContext | None = None) -> "DockerArchiveDestination":
        if self.index is not None:
            raise InvalidArgument(f"{self}: a docker-archive destination cannot take an @INDEX")
        if self.writer is not None:
            return DockerArchiveDestination(self, ctx, self.writer, own_writer=False)
        return DockerArchiveDestination(self, ctx, DockerArchiveWriter(self.path), own_writer=True)

    def list_images(self, ctx: SystemContext | None = None) -> list["DockerArchiveReference"]:
        """Every image of the archive as an ``@INDEX`` reference (with :attr:`repo_tags`)."""
        return list_images(self.path)


# ------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------


@dataclass
class ArchiveImage:
    """One entry of manifest.json."""

    index: int
    config: str
    repo_tags: list[str]
    layers: list[str]
    extra: dict[str, Any] = field(default_factory=dict)


def _parse_archive_manifest(raw: bytes, where: str) -> list[ArchiveImage]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImageError(f"{where}: manifest.json is not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise ImageError(f"{where}: manifest.json must be a JSON array of images")
    images = []
    for i, item in enumerate(data):
        w = f"{where}: manifest.json entry {i}"
        if not isinstance(item, dict):
            raise ImageError(f"{w} must be an object")
        config = item.get("Config")
        if not isinstance(config, str) or not config:
            raise ImageError(f'{w} has no "Config" file name')
        tags = item.get("RepoTags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ImageError(f"{w}: RepoTags must be an array of strings")
        layers = item.get("Layers") or []
        if not isinstance(layers, list) or not all(isinstance(l, str) for l in layers):
            raise ImageError(f"{w}: Layers must be an array of strings")
        images.append(ArchiveImage(i, config, list(tags), list(layers),
                                   {k: v for k, v in item.items() if k not in ("Config", "RepoTags", "Layers")}))
    return images


class DockerArchiveReader:
    """An indexed ``docker save`` archive; use as a context manager."""

    def __init__(self, path: str, *, where: str | None = None):
        self.path = resolve_path(path)
        self.where = where or f"docker-archive:{self.path}"
        self.tar = TarIndex(self.path, self.where)
        try:
            if not self.tar.exists("manifest.json"):
                if self.tar.exists("repositories"):
                    raise TransportError(f"{self.where}: a legacy archive without manifest.json is not supported")
                raise TransportError(f"{self.where}: not a docker archive (no manifest.json)")
            raw = self.tar.read_small("manifest.json", MAX_MANIFEST_SIZE, "manifest.json")
            self.images = _parse_archive_manifest(raw, self.where)
        except BaseException:
            self.tar.close()
            raise

    def list_images(self) -> list[DockerArchiveReference]:
        """Every image as an ``@INDEX`` reference bound to this reader (sources opened from
        them reuse the index; keep the reader open while using them)."""
        t = _transport()
        return [DockerArchiveReference(t, self.path, index=img.index, reader=self, repo_tags=img.repo_tags)
                for img in self.images]

    def select(self, named: Reference | None, index: int | None, where: str) -> ArchiveImage:
        if index is not None:
            if index >= len(self.images):
                raise NotFound(f"{where}: no image at index {index}: the archive holds {len(self.images)} image(s)")
            return self.images[index]
        if named is not None:
            want = str(named)
            for img in self.images:
                for tag in img.repo_tags:
                    try:
                        if str(normalize_docker_hub(tag)) == want:
                            return img
                    except InvalidArgument:
                        continue
            raise NotFound(f"{where}: no image named {named} in the archive")
        if len(self.images) == 1:
            return self.images[0]
        if not self.images:
            raise NotFound(f"{where}: the archive holds no image")
        raise TransportError(
            f"{where}: the archive holds {len(self.images)} images; choose one with :NAME:TAG or :@INDEX"
        )

    def close(self) -> None:
        self.tar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def list_images(path: str) -> list[DockerArchiveReference]:
    """The images of the archive at *path*: ``docker-archive:PATH:@INDEX`` references with
    :attr:`~DockerArchiveReference.repo_tags` set (each opens the archive on its own)."""
    t = _transport()
    with DockerArchiveReader(path) as r:
        return [DockerArchiveReference(t, r.path, index=img.index, repo_tags=img.repo_tags) for img in r.images]


def _transport() -> DockerArchiveTransport:
    try:
        from .base import get_transport

        t = get_transport("docker-archive")
        if isinstance(t, DockerArchiveTransport):
            return t
    except Exception:
        pass
    return DockerArchiveTransport()


@dataclass
class _Layer:
    member: str
    diff_id: str
    size: int          #: of the blob the manifest lists (the member itself when digest is its own)
    compression: str
    digest: str        #: the member's own digest (a gzip member), else the diff ID


class DockerArchiveSource(ImageSource):
    def __init__(self, ref: DockerArchiveReference, reader: DockerArchiveReader, *, own_reader: bool):
        self.reference = ref
        self.reader = reader
        self._own = own_reader
        self._where = str(ref)
        try:
            self.image = reader.select(ref.named, ref.index, self._where)
        except BaseException:
            self.close()
            raise
        self._config: bytes | None = None
        self._config_digest: str | None = None
        self._layers: list[_Layer] | None = None
        self._manifest: bytes | None = None

    def repo_tags(self) -> list[str]:
        """The names (RepoTags) the archive records for this image, as written there."""
        return list(self.image.repo_tags)

    def _prepare(self) -> None:
        if self._manifest is not None:
            return
        tar = self.reader.tar
        img = self.image
        cfg_name = safe_member_name(img.config, "Config", self._where)
        config = tar.read_small(cfg_name, MAX_CONFIG_SIZE, f"config {img.config!r}")
        try:
            parsed = parse_image_config(config)
        except ImageError as exc:
            raise ImageError(f"{self._where}: config {img.config!r}: {exc.message}") from None
        diff_ids = parsed["rootfs"].get("diff_ids") or []
        if len(diff_ids) != len(img.layers):
            raise ImageError(
                f"{self._where}: the config lists {len(diff_ids)} layer diff_ids but manifest.json "
                f"lists {len(img.layers)} layers"
            )
        layers = []
        for i, (path, diff_id) in enumerate(zip(img.layers, diff_ids)):
            member = safe_member_name(path, f"layer {i}", self._where)
            f, size = tar.open(member, f"layer {i}")
            kind = detect_compression(f.read(8))
            digest = diff_id
            if kind == "gzip":
                # Listed as the gzip blob it is (hashing it is cheaper than inflating it to
                # learn its size): a store keeps the blob, and a push of the image later
                # sends it without compressing the layer again. The store checks the diff ID.
                f, size = tar.open(member, f"layer {i}")
                h = hashlib.sha256()
                while True:
                    chunk = f.read(CHUNK_SIZE)
                    if not chunk:
                        break
                    h.update(chunk)
                digest = "sha256:" + h.hexdigest()
            elif kind != "none":  # zstd: a v2s2 manifest cannot list it; inflated to learn its size
                f, _ = tar.open(member, f"layer {i}")
                size = 0
                try:
                    d = open_decompressed(f, compression=kind)
                    while True:
                        chunk = d.read(CHUNK_SIZE)
                        if not chunk:
                            break
                        size += len(chunk)
                except InvalidLayer as exc:
                    raise InvalidLayer(f"{self._where}: layer {i} ({path!r}): {exc.message}") from None
            layers.append(_Layer(member, diff_id, size, kind, digest))
        self._config = config
        self._config_digest = digest_bytes(config)
        self._layers = layers
        cfg_desc = Descriptor(MEDIA_TYPE_DOCKER_CONFIG, self._config_digest, len(config))
        layer_descs = [Descriptor(MEDIA_TYPE_DOCKER_LAYER_GZIP if l.digest != l.diff_id else MEDIA_TYPE_DOCKER_LAYER,
                                  l.digest, l.size) for l in layers]
        self._manifest = build_manifest(cfg_desc, layer_descs, FORMAT_V2S2)

    def get_manifest(self, instance_digest: str | None = None) -> tuple[bytes, str | None]:
        if instance_digest is not None:
            raise NotFound(f"{self._where}: docker-archive images have no manifest instances ({instance_digest})")
        self._prepare()
        return self._manifest, MEDIA_TYPE_DOCKER_MANIFEST

    def get_blob(self, digest: str, size: int | None = None, media_type: str | None = None):
        self._prepare()
        if digest == self._config_digest:
            return io.BytesIO(self._config), len(self._config)
        for i, l in enumerate(self._layers):
            if l.digest == digest:  # the blob the manifest lists: a gzip member as it is
                f, _ = self.reader.tar.open(l.member, f"layer {i}")
                if l.compression != "none" and l.digest == l.diff_id:
                    return open_decompressed(f, compression=l.compression), l.size
                return f, l.size
            if l.diff_id == digest:  # a gzip member's content
                f, _ = self.reader.tar.open(l.member, f"layer {i}")
                return open_decompressed(f, compression=l.compression), None
        raise NotFound(f"{self._where}: blob {digest} is not part of this image")

    def has_blob(self, digest: str) -> bool:
        self._prepare()
        return digest == self._config_digest or any(digest in (l.digest, l.diff_id) for l in self._layers)

    def close(self) -> None:
        if self._own and self.reader is not None:
            self.reader.close()
            self.reader = None


# ------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------


def _tarinfo(name: str, size: int = 0, *, kind: bytes = tarfile.REGTYPE, mode: int = 0o444,
             linkname: str = "") -> bytes:
    ti = tarfile.TarInfo(name)
    ti.size = size if kind == tarfile.REGTYPE else 0
    ti.type = kind
    ti.mode = mode
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.linkname = linkname
    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


class _HashingReader:
    def __init__(self, stream, algo: str):
        self._s = stream
        self.h = hashlib.new(algo)
        self.n = 0

    def read(self, n: int = -1) -> bytes:
        data = self._s.read(n)
        if data:
            self.h.update(data)
            self.n += len(data)
        return data


class DockerArchiveWriter:
    """Writes one ``docker save`` archive with any number of images (layers stored once).

    Use :meth:`reference` to get a destination reference per image (``copy_image(src,
    writer.reference(names), ctx)``), then :meth:`commit` to write manifest.json and
    repositories and rename the archive into place; :meth:`close` without a commit removes the
    temporary file. As a context manager it commits on success and aborts on an exception.
    Safe to share between threads (one image is written at a time).
    """

    def __init__(self, path: str):
        self.path = resolve_path(path)
        if os.path.isdir(self.path):
            raise TransportError(f"docker-archive:{self.path}: is a directory, expected an archive file")
        parent = os.path.dirname(self.path)
        if not os.path.isdir(parent):
            raise NotFound(f"docker-archive:{self.path}: directory {parent} does not exist")
        try:
            fd, self._tmp = tempfile.mkstemp(dir=parent, prefix=f".{os.path.basename(self.path)}.kpod-tmp-", suffix=".tar")
        except OSError as exc:
            raise TransportError(f"docker-archive:{self.path}: cannot create a temporary file in {parent}: {exc.strerror}") from None
        self._f = os.fdopen(fd, "wb")
        self._lock = threading.RLock()
        self._blobs: dict[str, tuple[str, int]] = {}  # digest -> (member, size)
        self._images: list[dict[str, Any]] = []
        self._repositories: dict[str, dict[str, str]] = {}
        self._legacy: set[str] = set()
        self._state = "open"

    # -- public API -----------------------------------------------------------------------

    def reference(self, names: list[str] | str | None = None) -> DockerArchiveReference:
        """A destination reference bound to this writer; *names* become the image's RepoTags."""
        if isinstance(names, str):
            names = [names]
        return DockerArchiveReference(_transport(), self.path, writer=self, names=list(names or []))

    def new_destination(self, names: list[str] | str | None = None, ctx: SystemContext | None = None) -> "DockerArchiveDestination":
        return self.reference(names).new_destination(ctx)

    @property
    def image_count(self) -> int:
        return len(self._images)

    def has_blob(self, digest: str) -> bool:
        return digest in self._blobs

    def blob_size(self, digest: str) -> int:
        return self._blobs[digest][1]

    def add_blob(self, stream, digest: str | None, size: int | None, *, is_config: bool = False) -> tuple[str, int]:
        """Append a blob read from *stream* (to its end, so a verifying stream checks itself).
        Returns ``(digest, size)``."""
        with self._lock:
            self._check_open()
            if digest is not None and digest in self._blobs:
                self._drain(stream)
                return digest, self._blobs[digest][1]
            try:
                if digest is not None and size is not None and size >= 0:
                    return self._add_known(stream, digest, size, is_config)
                return self._add_spooled(stream, digest, size, is_config)
            except BaseException:
                self._state = "failed"
                raise

    def add_image(self, config_digest: str, layer_digests: list[str], repo_tags: list[str]) -> None:
        """Record an image whose config and layers were added with :meth:`add_blob`."""
        with self._lock:
            self._check_open()
            for d in [config_digest, *layer_digests]:
                if d not in self._blobs:
                    raise TransportError(f"docker-archive:{self.path}: blob {d} was not written to the archive")
            try:
                parent = ""
                for d in layer_digests:
                    layer_id = hashlib.sha256(f"{parent}\n{d}".encode()).hexdigest()
                    if layer_id not in self._legacy:
                        self._write_legacy_layer(layer_id, parent, d)
                        self._legacy.add(layer_id)
                    parent = layer_id
            except BaseException:
                self._state = "failed"
                raise
            self._images.append({
                "Config": self._blobs[config_digest][0],
                "RepoTags": list(repo_tags),
                "Layers": [self._blobs[d][0] for d in layer_digests],
            })
            for tag in repo_tags:
                repo, _, t = tag.rpartition(":")
                if repo and parent:
                    self._repositories.setdefault(repo, {})[t] = parent

    def commit(self) -> None:
        """Write manifest.json and repositories, and rename the archive over the target."""
        with self._lock:
            if self._state == "committed":
                return
            self._check_open()
            if not self._images:
                raise TransportError(f"docker-archive:{self.path}: no image was written; nothing to commit")
            try:
                self._add_bytes("manifest.json", json.dumps(self._images, separators=(",", ":")).encode())
                self._add_bytes("repositories", json.dumps(self._repositories, separators=(",", ":")).encode())
                self._f.write(b"\0" * 1024)
                self._f.flush()
                os.fsync(self._f.fileno())
                self._f.close()
                os.chmod(self._tmp, 0o644)
                os.replace(self._tmp, self.path)
            except BaseException:
                self._state = "failed"
                raise
            self._state = "committed"

    def close(self) -> None:
        """Abort (remove the temporary file) unless committed."""
        with self._lock:
            if self._state == "committed" or self._state == "closed":
                self._state = "committed" if self._state == "committed" else "closed"
                return
            try:
                self._f.close()
            finally:
                try:
                    os.unlink(self._tmp)
                except OSError:
                    pass
                self._state = "closed"

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.commit()
        finally:
            self.close()

    # -- internals ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state != "open":
            raise TransportError(f"docker-archive:{self.path}: the archive writer is {self._state}")

    @staticmethod
    def _drain(stream) -> None:
        while stream.read(CHUNK_SIZE):
            pass

    def _member_name(self, digest: str, is_config: bool) -> str:
        hexpart = parse_digest(digest)[1]
        return f"{hexpart}.json" if is_config else f"{hexpart}.tar"

    def _add_bytes(self, name: str, data: bytes, mode: int = 0o444) -> None:
        self._f.write(_tarinfo(name, len(data), mode=mode))
        self._f.write(data)
        self._pad(len(data))

    def _pad(self, n: int) -> None:
        rem = n % 512
        if rem:
            self._f.write(b"\0" * (512 - rem))

    def _add_known(self, stream, digest: str, size: int, is_config: bool) -> tuple[str, int]:
        algo = parse_digest(digest)[0]
        name = self._member_name(digest, is_config)
        h = _HashingReader(stream, algo)
        self._f.write(_tarinfo(name, size))
        remaining = size
        while remaining:
            chunk = h.read(min(CHUNK_SIZE, remaining))
            if not chunk:
                raise DigestMismatch(f"blob {digest}: size mismatch: expected {size} bytes, got {size - remaining}")
            if len(chunk) > remaining:
                raise DigestMismatch(f"blob {digest}: size mismatch: expected {size} bytes, got more")
            self._f.write(chunk)
            remaining -= len(chunk)
        if h.read(1):  # reaching the end lets a verifying stream check itself
            raise DigestMismatch(f"blob {digest}: size mismatch: expected {size} bytes, got more")
        self._pad(size)
        actual = f"{algo}:{h.h.hexdigest()}"
        if actual != digest:
            raise DigestMismatch(f"blob digest mismatch: expected {digest}, got {actual}")
        self._blobs[digest] = (name, size)
        return digest, size

    def _add_spooled(self, stream, digest: str | None, size: int | None, is_config: bool) -> tuple[str, int]:
        algo = parse_digest(digest)[0] if digest else "sha256"
        h = hashlib.new(algo)
        n = 0
        with tempfile.TemporaryFile(dir=os.path.dirname(self.path)) as spool:
            while True:
                chunk = stream.read(CHUNK_SIZE)
                if not chunk:
                    break
                h.update(chunk)
                n += len(chunk)
                spool.write(chunk)
            actual = f"{algo}:{h.hexdigest()}"
            if digest is not None and actual != digest:
                raise DigestMismatch(f"blob digest mismatch: expected {digest}, got {actual}")
            if size is not None and size >= 0 and n != size:
                raise DigestMismatch(f"blob {actual}: size mismatch: expected {size} bytes, got {n}")
            if actual in self._blobs:
                return actual, n
            spool.seek(0)
            return self._add_known(spool, actual, n, is_config)

    def _write_legacy_layer(self, layer_id: str, parent: str, diff_digest: str) -> None:
        doc: dict[str, Any] = {"id": layer_id}
        if parent:
            doc["parent"] = parent
        doc["created"] = "1970-01-01T00:00:00Z"
        doc["container_config"] = {}
        self._add_bytes(f"{layer_id}/VERSION", b"1.0")
        self._add_bytes(f"{layer_id}/json", json.dumps(doc, separators=(",", ":")).encode())
        self._f.write(_tarinfo(f"{layer_id}/layer.tar", kind=tarfile.SYMTYPE, mode=0o777,
                               linkname=f"../{self._blobs[diff_digest][0]}"))


class DockerArchiveDestination(ImageDestination):
    """One image written into a :class:`DockerArchiveWriter`. Layers are stored uncompressed
    (the copy pipeline decompresses them) and the manifest must be Docker v2s2."""

    def __init__(self, ref: DockerArchiveReference, ctx: SystemContext | None,
                 writer: DockerArchiveWriter, *, own_writer: bool):
        self.reference = ref
        self.writer = writer
        self._own = own_writer
        self._pending: tuple[str, list[str]] | None = None
        self._committed = False
        names: list[str] = []
        if ref.named is not None:
            names.append(str(ref.named))
        for n in [*ref.names, *((ctx.extra_names if ctx is not None else None) or [])]:
            try:
                r = _normalize_name(n, "image")
            except InvalidArgument:
                if own_writer:
                    writer.close()
                raise
            names.append(str(r))
        self.repo_tags = list(dict.fromkeys(names))

    def supported_manifest_types(self) -> list[str]:
        return [MEDIA_TYPE_DOCKER_MANIFEST]

    def desired_layer_compression(self) -> str | None:
        return "none"

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        return self.writer.has_blob(digest) and (size is None or size < 0 or self.writer.blob_size(digest) == size)

    def reuse_blob(self, digest, size, media_type, *, layer_index=None, diff_id=None):
        if self.has_blob(digest, size):
            return digest, self.writer.blob_size(digest)
        return None

    def put_blob(self, stream, digest, size, media_type, *, is_config=False, layer_index=None, diff_id=None):
        if not is_config and media_type and is_layer_media_type(media_type) and layer_compression(media_type) != "none":
            raise TransportError(f"{self.reference}: docker archives store uncompressed layers, got {media_type}")
        return self.writer.add_blob(stream, digest, size, is_config=is_config)

    def put_manifest(self, raw: bytes, media_type: str | None, instance_digest: str | None = None) -> None:
        if instance_digest is not None:
            raise TransportError(f"{self.reference}: docker archives cannot store manifest lists; copy a single image")
        m = parse_manifest(raw, media_type)
        if not isinstance(m, Manifest):
            raise TransportError(f"{self.reference}: docker archives cannot store manifest lists; copy a single image")
        for i, l in enumerate(m.layers):
            if is_layer_media_type(l.media_type) and layer_compression(l.media_type) != "none":
                raise TransportError(f"{self.reference}: layer {i} is compressed ({l.media_type}); docker archives need uncompressed layers")
            if not self.writer.has_blob(l.digest):
                raise TransportError(f"{self.reference}: layer {l.digest} was not written to the archive")
        if not self.writer.has_blob(m.config.digest):
            raise TransportError(f"{self.reference}: config {m.config.digest} was not written to the archive")
        self._pending = (m.config.digest, [l.digest for l in m.layers])

    def commit(self) -> None:
        if self._committed:
            return
        if self._pending is None:
            raise TransportError(f"{self.reference}: no manifest was written; nothing to commit")
        self.writer.add_image(self._pending[0], self._pending[1], self.repo_tags)
        if self._own:
            self.writer.commit()
        self._committed = True

    def close(self) -> None:
        if self._own:
            self.writer.close()


#: The name the design notes use for the shared multi-image writer.
ArchiveWriter = DockerArchiveWriter
