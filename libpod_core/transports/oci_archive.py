"""The ``oci-archive:PATH[:REFERENCE]`` transport: a tar archive of an OCI image layout.

Reference syntax is the ``oci`` transport's (split at the first ``:``).

Source: the archive is indexed once (member offsets) and blobs are read from it by offset —
nothing is extracted, nothing is held in memory (:class:`~.docker_archive.TarIndex`; a
gzip/zstd-compressed archive is decompressed once into an unnamed temporary file).

Destination: the layout is written into a temporary directory next to PATH; at commit it is
packed into a temporary file, also next to PATH, which is renamed over PATH. A failed copy
leaves no archive behind (and an existing PATH untouched). Like containers/image, an existing
archive is replaced, not extended.
"""

from __future__ import annotations

import os
import shutil
import tarfile

from ..digest import CHUNK_SIZE
from ..errors import TransportError
from .base import SystemContext
from .dirtransport import staging_dir_for
from .docker_archive import TarIndex, _tarinfo
from .oci import (
    LayoutBackend,
    LayoutSource,
    LayoutWriter,
    OCILayoutDestination,
    OCILayoutReference,
    OCILayoutTransport,
)

__all__ = ["OCIArchiveTransport", "OCIArchiveReference", "OCIArchiveDestination", "TarLayoutBackend"]


class TarLayoutBackend(LayoutBackend):
    """Layout files read from an indexed tar archive."""

    def __init__(self, path: str, where: str):
        self.tar = TarIndex(path, where)
        self.description = where

    def read_small(self, rel, limit, what):
        return self.tar.read_small(rel, limit, what)

    def open(self, rel, what):
        return self.tar.open(rel, what)

    def exists(self, rel):
        return self.tar.exists(rel)

    def close(self):
        self.tar.close()


class OCIArchiveTransport(OCILayoutTransport):
    name = "oci-archive"


class OCIArchiveReference(OCILayoutReference):
    """``oci-archive:PATH[:REF]``: parsed and scoped like ``oci:``; the layout is a tar."""

    def new_source(self, ctx: SystemContext | None = None) -> LayoutSource:
        return LayoutSource(self, TarLayoutBackend(self.path, str(self)), self.name)

    def new_destination(self, ctx: SystemContext | None = None) -> "OCIArchiveDestination":
        return OCIArchiveDestination(self)


def _add_tree(out, root: str) -> None:
    """Append *root*'s files to the open tar file object *out* (deterministic order and
    metadata; blobs streamed in chunks)."""
    def add_dir(rel: str) -> None:
        out.write(_tarinfo(rel + "/", kind=tarfile.DIRTYPE, mode=0o755))

    def add_file(rel: str) -> None:
        p = os.path.join(root, rel)
        size = os.path.getsize(p)
        out.write(_tarinfo(rel, size, mode=0o644))
        with open(p, "rb") as f:
            left = size
            while left:
                chunk = f.read(min(CHUNK_SIZE, left))
                if not chunk:
                    raise TransportError(f"{p} shrank while it was archived")
                out.write(chunk)
                left -= len(chunk)
        if size % 512:
            out.write(b"\0" * (512 - size % 512))

    add_file("oci-layout")
    add_file("index.json")
    add_dir("blobs")
    blobs = os.path.join(root, "blobs")
    for algo in sorted(os.listdir(blobs)):
        d = os.path.join(blobs, algo)
        if not os.path.isdir(d):
            continue
        add_dir(f"blobs/{algo}")
        for name in sorted(os.listdir(d)):
            if name.startswith("."):
                continue
            add_file(f"blobs/{algo}/{name}")
    out.write(b"\0" * 1024)


class OCIArchiveDestination(OCILayoutDestination):
    """Writes a layout into a temporary directory; :meth:`commit` packs it into PATH."""

    def __init__(self, ref: OCIArchiveReference):
        if os.path.isdir(ref.path):
            raise TransportError(f"{ref}: {ref.path} is a directory, expected an archive file")
        self.staging = staging_dir_for(ref.path)
        try:
            super().__init__(ref, LayoutWriter(self.staging, str(ref)))
        except BaseException:
            shutil.rmtree(self.staging, ignore_errors=True)
            raise
        self._archived = False

    def commit(self) -> None:
        if self._archived:
            return
        super().commit()
        from ..fileutil import atomic_file

        with atomic_file(self.reference.path, 0o644, fsync=True) as out:
            _add_tree(out, self.staging)
        self._archived = True

    def close(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


OCIArchiveTransport.reference_class = OCIArchiveReference
