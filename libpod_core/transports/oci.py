"""The ``oci:PATH[:REFERENCE]`` transport: an OCI image layout directory.

Layout (OCI image-spec "image-layout")::

    PATH/oci-layout           {"imageLayoutVersion": "1.0.0"}
    PATH/index.json           an OCI index; each entry may carry the annotation
                              org.opencontainers.image.ref.name = REFERENCE
    PATH/blobs/sha256/<hex>   every blob: manifests, configs, layers

Reference syntax follows containers/image: the text after ``oci:`` is split at its *first*
``:`` — PATH cannot contain a colon, REFERENCE can (``oci:/l:busybox:latest`` names the ref
``busybox:latest``). REFERENCE must match the image-layout ref grammar.

The source picks the index entry whose ref name is REFERENCE; without one, the layout must
hold exactly one entry. The destination writes blobs straight into ``blobs/`` (each becomes
visible only complete and verified, under its digest) and adds or replaces the ref in
``index.json`` at commit: under a lock, via a temporary file and a rename. Several images can
share one layout; blobs already present are not written again.

The reading and writing logic is shared with ``oci-archive`` (a tar of such a layout) through a
small backend interface (:class:`LayoutBackend`).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from typing import IO, Any

from ..digest import parse_digest
from ..lazyre import lazy
from ..errors import DigestMismatch, ImageError, InvalidArgument, NotFound, TransportError
from ..manifest import (
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    MAX_MANIFEST_SIZE,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
    Descriptor,
    Index,
    parse_manifest,
)
from ..reference import digest_bytes
from .base import ImageDestination, ImageReference, ImageSource, SystemContext, Transport
from .dirtransport import (
    DIR_MODE,
    atomic_write,
    exists_confined,
    guess_manifest_type,
    open_confined,
    read_small_file,
    resolve_path,
    write_blob_file,
)

__all__ = [
    "OCILayoutTransport",
    "OCILayoutReference",
    "LayoutSource",
    "OCILayoutDestination",
    "LayoutBackend",
    "DirLayoutBackend",
    "LayoutWriter",
    "REF_NAME_ANNOTATION",
    "validate_ref_name",
    "split_path_and_ref",
]

REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
LAYOUT_VERSION = "1.0.0"
OCI_LAYOUT_BYTES = b'{"imageLayoutVersion": "1.0.0"}'
MAX_INDEX_SIZE = MAX_MANIFEST_SIZE

_ALNUM = r"[A-Za-z0-9]+"
_COMPONENT = rf"{_ALNUM}(?:(?:[-._:@+]|--){_ALNUM})*"
_REF_NAME_RE = lazy(rf"{_COMPONENT}(?:/{_COMPONENT})*", re.ASCII)


def validate_ref_name(name: str, transport: str = "oci") -> str:
    """Return *name* if it matches the image-layout ref grammar, else InvalidArgument."""
    if not _REF_NAME_RE.fullmatch(name):
        raise InvalidArgument(
            f"invalid {transport}: image reference {name!r}: a ref name is components of letters and "
            "digits separated by one of - . _ : @ + or --, joined by /"
        )
    return name


def split_path_and_ref(ref: str, transport: str = "oci") -> tuple[str, str]:
    """``/p:name:tag`` -> ("/p", "name:tag"): split at the first colon, like containers/image."""
    path, _, name = ref.partition(":")
    if not path:
        raise InvalidArgument(f"invalid {transport}: reference {ref!r}: the path is empty")
    if name:
        validate_ref_name(name, transport)
    return path, name


def _validate_scope(scope: str, transport: str) -> None:
    path, _, name = scope.partition(":")
    if not path.startswith("/"):
        raise InvalidArgument(f"invalid {transport}: policy scope {scope!r}: the path must be absolute")
    if path == "/":
        raise InvalidArgument(f'invalid {transport}: policy scope {scope!r}: use the default scope instead of "/"')
    if os.path.normpath(path) != path:
        raise InvalidArgument(f"invalid {transport}: policy scope {scope!r}: the path must be clean (normalized)")
    if name:
        validate_ref_name(name, transport)


def _blob_rel(digest: str) -> str:
    algo, hexpart = parse_digest(digest)  # validated: no path tricks through a digest
    return f"blobs/{algo}/{hexpart}"


# ------------------------------------------------------------------------------------------
# Reading a layout
# ------------------------------------------------------------------------------------------


class LayoutBackend:
    """Where a layout's files live (a directory, a tar archive)."""

    description = "layout"

    def read_small(self, rel: str, limit: int, what: str) -> bytes:
        raise NotImplementedError

    def open(self, rel: str, what: str) -> tuple[IO[bytes], int]:
        raise NotImplementedError

    def exists(self, rel: str) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        pass


class DirLayoutBackend(LayoutBackend):
    def __init__(self, root: str):
        self.root = root
        self.description = root

    def read_small(self, rel, limit, what):
        return read_small_file(self.root, rel, limit, what)

    def open(self, rel, what):
        return open_confined(self.root, rel, what)

    def exists(self, rel):
        return exists_confined(self.root, rel)


def read_index(backend: LayoutBackend, where: str) -> tuple[Index, dict[str, Any]]:
    """Parse ``oci-layout`` and ``index.json``; return the parsed index and its JSON."""
    try:
        layout_raw = backend.read_small("oci-layout", 64 * 1024, "oci-layout file")
    except NotFound:
        raise TransportError(f"{where} is not an OCI image layout: it has no oci-layout file") from None
    try:
        layout = json.loads(layout_raw)
    except ValueError:
        raise TransportError(f"{where}: oci-layout is not valid JSON") from None
    if not isinstance(layout, dict) or not isinstance(layout.get("imageLayoutVersion"), str):
        raise TransportError(f"{where}: oci-layout has no imageLayoutVersion")
    if not layout["imageLayoutVersion"].startswith("1."):
        raise TransportError(f"{where}: unsupported image layout version {layout['imageLayoutVersion']!r}")
    try:
        raw = backend.read_small("index.json", MAX_INDEX_SIZE, "index.json")
    except NotFound:
        raise TransportError(f"{where} is not an OCI image layout: it has no index.json") from None
    try:
        index = parse_manifest(raw)
    except ImageError as exc:
        raise ImageError(f"{where}: index.json: {exc.message}") from None
    if not isinstance(index, Index):
        raise ImageError(f"{where}: index.json is not an image index")
    return index, json.loads(raw)


def select_descriptor(index: Index, name: str, where: str) -> Descriptor:
    if name:
        matches = [d for d in index.manifests if d.annotations.get(REF_NAME_ANNOTATION) == name]
        if not matches:
            names = sorted({d.annotations[REF_NAME_ANNOTATION] for d in index.manifests if REF_NAME_ANNOTATION in d.annotations})
            shown = ", ".join(names[:20]) or "none"
            raise NotFound(f"{where}: no image named {name!r} in the layout (ref names: {shown})")
        d = matches[-1]
    else:
        if not index.manifests:
            raise NotFound(f"{where}: the layout holds no image")
        if len(index.manifests) > 1:
            raise TransportError(f"{where}: the layout holds {len(index.manifests)} images; choose one with :REFERENCE")
        d = index.manifests[0]
    if d.media_type not in MANIFEST_MEDIA_TYPES and d.media_type not in INDEX_MEDIA_TYPES:
        raise ImageError(f"{where}: the entry for {name or 'the image'} has unsupported media type {d.media_type!r}")
    return d


class LayoutSource(ImageSource):
    """An image in an OCI layout, read through a :class:`LayoutBackend`."""

    def __init__(self, reference: ImageReference, backend: LayoutBackend, name: str, *, own_backend: bool = True):
        self.reference = reference
        self.backend = backend
        self._own_backend = own_backend
        try:
            self.index, _ = read_index(backend, str(reference))
            self.descriptor = select_descriptor(self.index, name, str(reference))
        except BaseException:
            self.close()
            raise

    def get_manifest(self, instance_digest: str | None = None) -> tuple[bytes, str | None]:
        if instance_digest is None:
            d = self.descriptor
            if d.size > MAX_MANIFEST_SIZE:
                raise ImageError(f"{self.reference}: manifest is too large: {d.size} bytes, the limit is {MAX_MANIFEST_SIZE}")
            raw = self.backend.read_small(_blob_rel(d.digest), MAX_MANIFEST_SIZE, f"manifest {d.digest}")
            # index.json names the manifest by digest: check it here, it is cheap.
            if len(raw) != d.size or digest_bytes(raw, parse_digest(d.digest)[0]) != d.digest:
                raise DigestMismatch(f"{self.reference}: manifest blob {d.digest} does not match its digest or size")
            return raw, d.media_type
        raw = self.backend.read_small(_blob_rel(instance_digest), MAX_MANIFEST_SIZE, f"manifest {instance_digest}")
        return raw, guess_manifest_type(raw)

    def get_blob(self, digest: str, size: int | None = None, media_type: str | None = None):
        return self.backend.open(_blob_rel(digest), f"blob {digest}")

    def has_blob(self, digest: str) -> bool:
        return self.backend.exists(_blob_rel(digest))

    def close(self) -> None:
        if self._own_backend and self.backend is not None:
            self.backend.close()
            self.backend = None


# ------------------------------------------------------------------------------------------
# Writing a layout
# ------------------------------------------------------------------------------------------


class LayoutWriter:
    """Adds blobs and one image (a manifest or an index) to the layout in directory *root*."""

    def __init__(self, root: str, where: str, *, create: bool = True):
        self.root = root
        self.where = where
        if os.path.lexists(root) and not os.path.isdir(root):
            raise TransportError(f"{where}: {root} exists and is not a directory")
        if os.path.isdir(root) and os.listdir(root) and not os.path.exists(os.path.join(root, "oci-layout")):
            raise TransportError(
                f"{where}: non-empty directory {root} is not an OCI image layout (no oci-layout file); "
                "refusing to write into it"
            )
        try:
            os.makedirs(os.path.join(root, "blobs", "sha256"), mode=DIR_MODE, exist_ok=True)
        except OSError as exc:
            raise TransportError(f"{where}: cannot create {root}: {exc.strerror}") from None
        if not os.path.exists(os.path.join(root, "oci-layout")):
            atomic_write(os.path.join(root, "oci-layout"), OCI_LAYOUT_BYTES)
        self.top: Descriptor | None = None

    def _blob_dir(self, digest: str) -> str:
        algo = parse_digest(digest)[0]
        d = os.path.join(self.root, "blobs", algo)
        os.makedirs(d, mode=DIR_MODE, exist_ok=True)
        return d

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        try:
            rel = _blob_rel(digest)
        except InvalidArgument:
            return False
        p = os.path.join(self.root, rel)
        if os.path.islink(p) or not os.path.isfile(p):
            return False
        return size is None or size < 0 or os.path.getsize(p) == size

    def blob_size(self, digest: str) -> int:
        return os.path.getsize(os.path.join(self.root, _blob_rel(digest)))

    def put_blob(self, stream, digest, size) -> tuple[str, int]:
        d = self._blob_dir(digest or "sha256:" + "0" * 64)
        return write_blob_file(d, stream, digest, size, name_for=lambda dg: parse_digest(dg)[1])

    def put_manifest(self, raw: bytes, media_type: str | None, instance_digest: str | None) -> None:
        raw = bytes(raw)
        dg = digest_bytes(raw)
        if not self.has_blob(dg, len(raw)):
            atomic_write(os.path.join(self._blob_dir(dg), parse_digest(dg)[1]), raw)
        if instance_digest is None:
            mt = media_type or guess_manifest_type(raw)
            if mt not in MANIFEST_MEDIA_TYPES and mt not in INDEX_MEDIA_TYPES:
                raise ImageError(f"{self.where}: cannot record a manifest of unknown media type {mt!r}")
            self.top = Descriptor(mt, dg, len(raw))

    def commit(self, name: str) -> None:
        """Add (or replace) the entry for *name* in index.json, atomically and under a lock."""
        if self.top is None:
            raise TransportError(f"{self.where}: no manifest was written; nothing to commit")
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            path = os.path.join(self.root, "index.json")
            doc: dict[str, Any]
            if os.path.exists(path):
                index, doc = read_index(DirLayoutBackend(self.root), self.where)
                entries = list(doc.get("manifests") or [])
            else:
                doc, entries = {"schemaVersion": 2, "mediaType": MEDIA_TYPE_OCI_INDEX}, []
            new = {"mediaType": self.top.media_type, "digest": self.top.digest, "size": self.top.size}
            if name:
                new["annotations"] = {REF_NAME_ANNOTATION: name}
                entries = [e for e in entries if (e.get("annotations") or {}).get(REF_NAME_ANNOTATION) != name]
            else:
                entries = [
                    e for e in entries
                    if e.get("digest") != self.top.digest or (e.get("annotations") or {}).get(REF_NAME_ANNOTATION)
                ]
            entries.append(new)
            out = {"schemaVersion": 2, "mediaType": MEDIA_TYPE_OCI_INDEX}
            out.update({k: v for k, v in doc.items() if k not in ("schemaVersion", "mediaType", "manifests")})
            out["manifests"] = entries
            atomic_write(path, json.dumps(out, separators=(",", ":")).encode())
        finally:
            os.close(fd)


# ------------------------------------------------------------------------------------------
# The transport
# ------------------------------------------------------------------------------------------


class OCILayoutTransport(Transport):
    name = "oci"

    def parse_reference(self, ref: str) -> "OCILayoutReference":
        path, name = split_path_and_ref(ref, self.name)
        return self.reference_class(self, path, name)

    def validate_policy_scope(self, scope: str) -> None:
        _validate_scope(scope, self.name)


class OCILayoutReference(ImageReference):
    """``PATH[:REF]`` of an OCI layout; oci-archive's references share the parsing and the
    policy scopes and differ only in where the layout lives."""

    def __init__(self, transport: Transport, path: str, name: str = ""):
        self.transport = transport
        self.path = resolve_path(path)
        if ":" in self.path:
            raise InvalidArgument(f"invalid {transport.name}: reference: the path {self.path!r} contains a colon")
        self.name = validate_ref_name(name, transport.name) if name else ""

    def string_within_transport(self) -> str:
        return f"{self.path}:{self.name}" if self.name else self.path

    def policy_configuration_identity(self) -> str:
        return self.string_within_transport()

    def policy_configuration_namespaces(self) -> list[str]:
        out = [self.path] if self.name else []
        p = self.path
        while True:
            parent = os.path.dirname(p)
            if parent == p or parent == "/":
                break
            out.append(parent)
            p = parent
        return out

    def new_source(self, ctx: SystemContext) -> LayoutSource:
        if not os.path.isdir(self.path):
            if os.path.exists(self.path):
                raise TransportError(f"{self}: {self.path} is not a directory")
            raise NotFound(f"{self}: directory {self.path} does not exist")
        return LayoutSource(self, DirLayoutBackend(self.path), self.name)

    def new_destination(self, ctx: SystemContext) -> "OCILayoutDestination":
        return OCILayoutDestination(self, LayoutWriter(self.path, str(self)))

    def delete(self, ctx: SystemContext) -> None:
        raise TransportError(f"{self}: deleting images from an OCI layout is not supported")



class OCILayoutDestination(ImageDestination):
    """Writes into an OCI layout; the ref appears in index.json at :meth:`commit`."""

    def __init__(self, reference: ImageReference, writer: LayoutWriter):
        self.reference = reference
        self.writer = writer
        self._committed = False

    def supported_manifest_types(self) -> list[str]:
        return [MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_OCI_INDEX]

    def accepts_foreign_layers(self) -> bool:
        return True

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        return self.writer.has_blob(digest, size)

    def reuse_blob(self, digest, size, media_type, *, layer_index=None, diff_id=None):
        if self.writer.has_blob(digest, size):
            return digest, self.writer.blob_size(digest)
        return None

    def put_blob(self, stream, digest, size, media_type, *, is_config=False, layer_index=None, diff_id=None):
        return self.writer.put_blob(stream, digest, size)

    def put_manifest(self, raw: bytes, media_type: str | None, instance_digest: str | None = None) -> None:
        self.writer.put_manifest(raw, media_type, instance_digest)

    def commit(self) -> None:
        if not self._committed:
            self.writer.commit(getattr(self.reference, "name", ""))
            self._committed = True


OCILayoutTransport.reference_class = OCILayoutReference
