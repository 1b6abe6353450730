"""The copy pipeline: move an image from any transport's source to any destination.

:func:`copy_image` reads the source manifest (choosing a platform from an index, or copying
every instance with ``all_images``), runs the signature policy check, copies the layers in
manifest order and then the config, converts the manifest when the destination needs another
format or the layers were recompressed, writes the manifest and the signatures (the copied
ones, plus new ones its signers make over the digest of the manifest written), and commits.

Every blob is verified while it streams: the stream handed to
:meth:`~libpod_core.transports.base.ImageDestination.put_blob` hashes and counts the bytes,
raises :class:`~libpod_core.errors.DigestMismatch` as soon as more bytes than announced arrive,
and on the read that reaches the end (the one returning ``b""``) raises ``DigestMismatch`` if
the size or the digest is wrong. **A destination must read the stream until it returns
``b""`` before making the blob visible**; then nothing unverified is ever committed (and the
destination's :meth:`commit` is not called at all after an error).

When a layer is decompressed (the destination wants ``none``, or the caller asked for another
compression), its uncompressed digest is computed on the way and checked against the config's
``rootfs.diff_ids``. Memory stays bounded: 1 MiB chunks, only manifests and configs
(at most 4 MiB each) are held whole.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import IO, Any, Callable

from .digest import CHUNK_SIZE, open_decompressed, parse_digest
from .errors import (
    DigestMismatch,
    ImageError,
    InvalidArgument,
    InvalidLayer,
    PolicyDenied,
    TransportError,
)
from .manifest import (
    FORMAT_OCI,
    FORMAT_V2S2,
    INDEX_MEDIA_TYPES,
    MAX_CONFIG_SIZE,
    MAX_MANIFEST_SIZE,
    MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
    Descriptor,
    Index,
    Manifest,
    build_index,
    build_manifest,
    host_platform,
    is_foreign_layer,
    is_layer_media_type,
    layer_compression,
    layer_media_type,
    manifest_digest,
    parse_image_config,
    parse_manifest,
)
from .transports.base import ImageDestination, ImageReference, ImageSource, SystemContext

__all__ = ["CopyResult", "copy_image", "VerifyingReader", "CompressingReader"]

_COMPRESSIONS = ("none", "gzip", "zstd")
_FORMATS = (FORMAT_OCI, FORMAT_V2S2)

PolicyCheck = Callable[[ImageReference, ImageSource, bytes, list], Any]
Progress = Callable[[str, int, "int | None"], None]


@dataclass
class CopyResult:
    """What was written: the manifest (or index) as stored at the destination."""

    manifest_digest: str
    manifest: bytes
    media_type: str
    config_digest: str | None
    #: with ``all_images``: the result of each instance, in index order
    instances: list["CopyResult"] = field(default_factory=list)


# ------------------------------------------------------------------------------------------
# Streams
# ------------------------------------------------------------------------------------------


class _SameAs:
    """Stands for the hash object of a reader whose bytes are exactly those of another
    reader that verifies them against *digest* (it raises before this one sees the end)."""

    def __init__(self, digest: str) -> None:
        self._hex = parse_digest(digest)[1]

    def update(self, data) -> None:
        pass

    def hexdigest(self) -> str:
        return self._hex


class VerifyingReader(io.RawIOBase):
    """Hashes and counts what is read through it; raises DigestMismatch when the content
    grows past *size*, and — on the read that reaches the end — when the size or the digest
    is wrong. *digest* None only computes (see :attr:`digest`)."""

    def __init__(self, inner: IO[bytes], digest: str | None, size: int | None, what: str,
                 progress: Progress | None = None, progress_name: str | None = None, *,
                 verified_by: "VerifyingReader | None" = None):
        super().__init__()
        algo = parse_digest(digest)[0] if digest else "sha256"
        self._inner = inner
        if verified_by is not None:
            # *inner* yields exactly the bytes *verified_by* checks: do not hash them twice
            if digest != verified_by.expected_digest or digest is None:
                raise ValueError("verified_by must check the same digest")
            self._h = _SameAs(digest)
        else:
            self._h = hashlib.new(algo)
        self._algo = algo
        self.expected_digest = digest
        self.expected_size = size if size is not None and size >= 0 else None
        self.size = 0
        self.what = what
        self.done = False
        self._progress = progress
        self._pname = progress_name or digest or what

    def readable(self) -> bool:
        return True

    @property
    def digest(self) -> str:
        return f"{self._algo}:{self._h.hexdigest()}"

    def read(self, n: int = -1) -> bytes:
        if self.done:
            return b""
        if n is None or n < 0:
            parts = []
            while True:
                chunk = self.read(CHUNK_SIZE)
                if not chunk:
                    return b"".join(parts)
                parts.append(chunk)
        if n == 0:
            return b""
        data = self._inner.read(n)
        if data:
            self.size += len(data)
            if self.expected_size is not None and self.size > self.expected_size:
                raise DigestMismatch(
                    f"{self.what}: size mismatch: expected {self.expected_size} bytes, got more"
                )
            self._h.update(data)
            if self._progress is not None:
                self._progress(self._pname, self.size, self.expected_size)
            return data
        self._finish()
        return b""

    def readinto(self, b) -> int:
        data = self.read(len(b))
        memoryview(b).cast("B")[: len(data)] = data
        return len(data)

    def _finish(self) -> None:
        if self.expected_size is not None and self.size != self.expected_size:
            raise DigestMismatch(
                f"{self.what}: size mismatch: expected {self.expected_size} bytes, got {self.size}"
            )
        if self.expected_digest is not None and self.digest != self.expected_digest:
            raise DigestMismatch(
                f"{self.what}: digest mismatch: expected {self.expected_digest}, got {self.digest}"
            )
        self.done = True

    def finish(self) -> str:
        """Read whatever is left and verify; return the digest."""
        while not self.done:
            self.read(CHUNK_SIZE)
        return self.digest


try:  # zlib-ng: the same deflate format, 3-4x faster than zlib at a like ratio
    from zlib_ng import zlib_ng as _deflate_lib
except ImportError:  # pragma: no cover - zlib-ng is a dependency; plain zlib still works
    _deflate_lib = zlib

#: The gzip level of layers kpod compresses. podman (containers/image: pgzip, its default
#: level) gives the bench's 264 MB text-heavy layer 70.5 MB; zlib-ng at 5 gives 68.9 MB at
#: ~120 MB/s a core, zlib at 6 (its default) 67.8 MB at ~35 MB/s. Never coarser than podman.
GZIP_LEVEL = 5 if _deflate_lib is not zlib else 6


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # pragma: no cover
        return os.cpu_count() or 1


class ParallelGzip:
    """A gzip compressor with the zlib ``compressobj`` interface that deflates 1 MiB blocks
    on every core (pigz's scheme: each block is primed with the previous block's last 32 KiB
    and ends with a sync flush, so the concatenation is one valid deflate stream; the last
    one, possibly empty, finishes the stream).

    zlib-ng (and zlib) release the GIL while they compress, so blocks really run in
    parallel, and each block's CRC is computed by its worker and combined in order. The
    output depends only on the input, the level and the deflate library, so a layer always
    compresses to the same blob (a second push finds it in the registry)."""

    BLOCK = 1 << 20
    WINDOW = 1 << 15

    def __init__(self, level: int | None = None, workers: int | None = None) -> None:
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        self.level = GZIP_LEVEL if level is None else level
        self.workers = workers or min(8, _cpus())
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="kpod-gzip")
        self.pending: "deque" = deque()  # futures of (deflated, crc, size), in order
        self.inbuf: list[bytes] = []
        self.inlen = 0
        self.prev_tail = b""
        self.crc = 0
        self.size = 0
        self.header_done = False
        self.finished = False
        self._combine = getattr(_deflate_lib, "crc32_combine", None)

    def _deflate(self, block, dictionary, last: bool):
        lib = _deflate_lib
        if dictionary:
            c = lib.compressobj(self.level, lib.DEFLATED, -15, 9, lib.Z_DEFAULT_STRATEGY, dictionary)
        else:
            c = lib.compressobj(self.level, lib.DEFLATED, -15, 9)
        out = c.compress(block) + c.flush(lib.Z_FINISH if last else lib.Z_SYNC_FLUSH)
        return out, (lib.crc32(block) if self._combine is not None else 0), len(block)

    def _submit(self, block, last: bool) -> None:
        if self._combine is None:
            self.crc = zlib.crc32(block, self.crc)
        self.pending.append(self.pool.submit(self._deflate, block, self.prev_tail, last))
        self.prev_tail = block[-self.WINDOW:]

    def _take(self) -> bytes:
        out, crc, n = self.pending.popleft().result()
        if self._combine is not None:
            self.crc = self._combine(self.crc, crc, n) if self.size else crc
        self.size += n
        return out

    def _collect(self, wait_all: bool) -> bytes:
        out = []
        if not self.header_done:
            out.append(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03")  # no name, mtime 0, unix
            self.header_done = True
        limit = 2 * self.workers
        while self.pending and (wait_all or self.pending[0].done() or len(self.pending) > limit):
            out.append(self._take())
        return b"".join(out) if len(out) != 1 else out[0]

    def compress(self, data) -> bytes:
        if data:
            self.inbuf.append(data)
            self.inlen += len(data)
        if self.inlen >= self.BLOCK:
            buf = b"".join(self.inbuf) if len(self.inbuf) > 1 else bytes(self.inbuf[0])
            view = memoryview(buf)
            pos = 0
            while len(buf) - pos >= self.BLOCK:
                self._submit(view[pos: pos + self.BLOCK], last=False)
                pos += self.BLOCK
            rest = buf[pos:]
            self.inbuf = [rest] if rest else []
            self.inlen = len(rest)
        return self._collect(False)

    def flush(self, mode: int | None = None) -> bytes:
        if self.finished:
            return b""
        self._submit(b"".join(self.inbuf), last=True)
        self.inbuf, self.inlen = [], 0
        try:
            out = self._collect(True)
        finally:
            self.finished = True
            self.pool.shutdown(wait=True)
        return out + struct.pack("<II", self.crc & 0xFFFFFFFF, self.size & 0xFFFFFFFF)

    def close(self) -> None:
        """Stop the workers (after an error; :meth:`flush` does it at the end)."""
        if not self.finished:
            self.finished = True
            for f in self.pending:
                f.cancel()
            self.pool.shutdown(wait=True)


class CompressingReader(io.RawIOBase):
    """Compresses *inner* on the fly (``gzip``: :class:`ParallelGzip`; ``zstd`` via
    zstandard). :meth:`read` returns up to *n* bytes (fewer when that is what one step of
    the compressor gave), ``b""`` only at the end."""

    def __init__(self, inner: IO[bytes], compression: str, level: int | None = None):
        super().__init__()
        self._inner = inner
        if compression == "gzip":
            self._c = ParallelGzip(level)
        elif compression == "zstd":
            import zstandard

            threads = min(4, os.cpu_count() or 1)
            self._c = zstandard.ZstdCompressor(level=3 if level is None else level, threads=threads).compressobj()
        else:
            raise InvalidArgument(f"unsupported compression {compression!r}")
        self._out = b""
        self._pos = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = CHUNK_SIZE
        while self._pos >= len(self._out):
            if self._eof:
                return b""
            chunk = self._inner.read(CHUNK_SIZE)
            if chunk:
                self._out = self._c.compress(chunk)
            else:
                self._out = self._c.flush()
                self._eof = True
            self._pos = 0
        if self._pos == 0 and len(self._out) <= n:
            out, self._out = self._out, b""
            return out
        out = self._out[self._pos: self._pos + n]
        self._pos += len(out)
        return out

    def readinto(self, b) -> int:
        data = self.read(len(b))
        memoryview(b).cast("B")[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if isinstance(self._c, ParallelGzip):
            self._c.close()
        super().close()


def _read_verified(src: ImageSource, d: Descriptor, limit: int, what: str) -> bytes:
    if d.size > limit:
        raise ImageError(f"{what} is too large: {d.size} bytes, the limit is {limit}")
    stream, _ = src.get_blob(d.digest, d.size, d.media_type)
    try:
        r = VerifyingReader(stream, d.digest, d.size, what)
        parts = []
        total = 0
        while True:
            chunk = r.read(CHUNK_SIZE)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise ImageError(f"{what} is too large: more than {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)
    finally:
        stream.close()


def _check_manifest_digest(raw: bytes, expected: str, what: str) -> None:
    algo = parse_digest(expected)[0]
    actual = f"{algo}:{hashlib.new(algo, raw).hexdigest()}"
    if actual != expected:
        raise DigestMismatch(f"{what}: digest mismatch: expected {expected}, got {actual}")


# ------------------------------------------------------------------------------------------
# Decisions
# ------------------------------------------------------------------------------------------


def _format_of_type(media_type: str) -> str | None:
    if media_type in (MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_OCI_INDEX):
        return FORMAT_OCI
    if media_type in (MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST_LIST):
        return FORMAT_V2S2
    return None


def _target_format(m: Manifest, requested: str | None, supported: list[str], where: str) -> str:
    if requested:
        target = requested
    elif not supported or m.media_type in supported:
        return m.format
    else:
        target = next((f for f in map(_format_of_type, supported) if f), None)
        if target is None:
            raise TransportError(f"{where}: the destination accepts none of the manifest types kpod can write ({', '.join(supported)})")
    if supported:
        wanted = MEDIA_TYPE_OCI_MANIFEST if target == FORMAT_OCI else MEDIA_TYPE_DOCKER_MANIFEST
        if wanted not in supported:
            raise TransportError(f"{where}: the destination does not accept {target} manifests")
    return target


def _layer_plan(mt: str, caller: str | None, desired: str | None) -> tuple[str | None, str | None]:
    """(source compression, target compression) of one layer; None: not a known layer type,
    copied untouched."""
    if not is_layer_media_type(mt):
        return None, None
    c_in = layer_compression(mt)
    if desired == "none":
        return c_in, "none"
    if caller:
        return c_in, caller
    if desired in ("gzip", "zstd"):
        return c_in, (c_in if c_in != "none" else desired)
    return c_in, c_in


# ------------------------------------------------------------------------------------------
# Copying
# ------------------------------------------------------------------------------------------


class _Copier:
    def __init__(self, src_ref, dst_ref, src: ImageSource, dst: ImageDestination, *, fmt, compression,
                 remove_signatures: bool, progress: Progress | None, signers: list | None = None,
                 sign_identity: str | None = None):
        self.src_ref = src_ref
        self.signers = list(signers or [])
        self.sign_identity = sign_identity
        self.dst_ref = dst_ref
        self.src = src
        self.dst = dst
        self.fmt = fmt
        self.compression = compression
        self.remove_signatures = remove_signatures
        self.progress = progress
        self.supported = list(dst.supported_manifest_types() or [])
        self.desired = dst.desired_layer_compression()
        self.where = f"copying {src_ref} to {dst_ref}"

    # -- one image ------------------------------------------------------------------------

    def copy_single(self, raw: bytes, instance_digest: str | None, signatures: list[bytes],
                    requested_fmt: str | None) -> CopyResult:
        m = parse_manifest(raw)
        if not isinstance(m, Manifest):  # pragma: no cover - callers handle indexes
            raise ImageError(f"{self.where}: nested image indexes are not supported")
        target_fmt = _target_format(m, requested_fmt, self.supported, self.where)
        plans = [_layer_plan(l.media_type, self.compression, self.desired) for l in m.layers]
        if target_fmt == FORMAT_V2S2:
            for i, (_, c_out) in enumerate(plans):
                if c_out == "zstd":
                    raise InvalidArgument(
                        f"{self.where}: layer {i} would be zstd-compressed, which a Docker v2s2 "
                        "manifest cannot describe; use the oci format or gzip compression"
                    )
        will_change = target_fmt != m.format or any(a != b for a, b in plans)
        if signatures and will_change:
            raise ImageError(
                f"{self.where}: the image has signatures and its manifest must change "
                "(format conversion or recompression), which would invalidate them; "
                "remove the signatures to copy it"
            )

        # Config first into memory (verified, bounded), put after the layers.
        cfg_what = f"{self.src_ref}: config {m.config.digest}"
        config_raw = _read_verified(self.src, m.config, MAX_CONFIG_SIZE, cfg_what)
        diff_ids: list[str | None] = [None] * len(m.layers)
        if m.config.media_type in (MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_DOCKER_CONFIG):
            cfg = parse_image_config(config_raw)
            ids = list(cfg["rootfs"].get("diff_ids") or [])
            if len(ids) != len(m.layers):
                raise ImageError(
                    f"{self.where}: the config lists {len(ids)} diff_ids for {len(m.layers)} layers"
                )
            diff_ids = ids

        new_layers: list[Descriptor] = []
        for i, (layer, (c_in, c_out), diff_id) in enumerate(zip(m.layers, plans, diff_ids)):
            new_layers.append(self._copy_layer(i, layer, c_in, c_out, diff_id))

        if not self.dst.has_blob(m.config.digest, m.config.size):
            self.dst.put_blob(io.BytesIO(config_raw), m.config.digest, m.config.size,
                              m.config.media_type, is_config=True)

        if target_fmt == m.format and all(
            a.media_type == b.media_type and a.digest == b.digest and a.size == b.size
            for a, b in zip(m.layers, new_layers)
        ):
            out = raw
        else:
            out = build_manifest(m.config, new_layers, target_fmt, annotations=m.annotations)
        if out != raw and signatures:
            raise ImageError(f"{self.where}: the manifest changed while copying; the signatures would be invalid")
        out_mt = MEDIA_TYPE_OCI_MANIFEST if target_fmt == FORMAT_OCI else MEDIA_TYPE_DOCKER_MANIFEST
        if out == raw:
            out_mt = m.media_type
        dg = manifest_digest(out)
        self.dst.put_manifest(out, out_mt, dg if instance_digest is not None else None)
        self._put_signatures(signatures, dg, instance_digest is None)
        return CopyResult(dg, out, out_mt, m.config.digest)

    def _put_signatures(self, signatures: list[bytes], digest: str, top: bool) -> None:
        """Store the copied signatures plus, for the top-level manifest, new ones made now
        over *digest*, the digest of the manifest just written."""
        instance = None if top else digest
        new_simple: list[bytes] = []
        new_sigstore: list[dict] = []
        if top:
            for signer in self.signers:
                sig = signer.sign(self.sign_identity, digest)
                (new_simple if signer.kind == "simple" else new_sigstore).append(sig)
        if signatures or new_simple:
            self.dst.put_signatures(list(signatures) + new_simple, instance)
        if new_sigstore:
            self.dst.put_sigstore_signatures(new_sigstore, instance)

    def _copy_layer(self, i: int, layer: Descriptor, c_in: str | None, c_out: str | None,
                    diff_id: str | None) -> Descriptor:
        what = f"{self.src_ref}: layer {i} ({layer.digest})"
        if layer.urls and is_foreign_layer(layer.media_type) and self.dst.accepts_foreign_layers():
            return layer
        same = c_in == c_out
        if same and c_in == "none" and diff_id is not None and layer.digest != diff_id:
            raise ImageError(f"{self.where}: {what} is uncompressed but its digest is not the config's diff_id {diff_id}")

        def with_type(digest: str, size: int, compression: str | None) -> Descriptor:
            mt = layer.media_type
            if compression is not None and c_in is not None and compression != c_in:
                fmt = FORMAT_V2S2 if mt.startswith("application/vnd.docker.") and compression != "zstd" else FORMAT_OCI
                mt = layer_media_type(fmt, compression, foreign=is_foreign_layer(mt))
            return Descriptor(mt, digest, size, layer.urls, layer.annotations)

        if same or self.compression is None:
            reused = self.dst.reuse_blob(layer.digest, layer.size, layer.media_type,
                                         layer_index=i, diff_id=diff_id)
            if reused is not None:
                dg, size = reused
                if dg == layer.digest:
                    return with_type(dg, size, c_in)
                if diff_id is not None and dg == diff_id:
                    return with_type(dg, size, "none")
                return with_type(dg, size, c_out)
        if same:
            if self.dst.has_blob(layer.digest, layer.size):
                return with_type(layer.digest, layer.size, c_in)
        elif c_out == "none" and diff_id is not None:
            # The uncompressed blob may be there already (a layer shared by two images of one
            # docker archive): its digest is the diff_id.
            plain_mt = with_type(diff_id, 0, "none").media_type
            reused = self.dst.reuse_blob(diff_id, None, plain_mt, layer_index=i, diff_id=diff_id)
            if reused is not None:
                dg, size = reused
                if size is None or size < 0:
                    size = self._uncompressed_size(layer, diff_id, what)
                return with_type(dg, size, "none")

        if c_in == "none" and c_out in ("gzip", "zstd") and diff_id is not None and layer.digest == diff_id:
            kept = self.src.get_compressed_blob(layer.digest, c_out)
            if kept is not None:  # e.g. a store layer pulled or loaded in this compression
                return self._copy_kept_blob(i, kept, with_type(diff_id, 0, c_out).media_type, diff_id, what)

        stream, _ = self.src.get_blob(layer.digest, layer.size, layer.media_type)
        closing = None
        try:
            verified = VerifyingReader(stream, layer.digest, layer.size, what, self.progress, layer.digest)
            if same:
                dg, size = self.dst.put_blob(verified, layer.digest, layer.size, layer.media_type,
                                             layer_index=i, diff_id=diff_id)
                verified.finish()
                return with_type(dg, size, c_in)
            # Detect the compression from the bytes: some tools label uncompressed layers as
            # gzip (docker-archive sources in containers/image do).
            plain = open_decompressed(verified)
            if plain.compression == "none" and diff_id is not None and diff_id == layer.digest:
                # An uncompressed source (a store's layer): its bytes are the content, so the
                # blob's own check (against the diff_id) is the diff_id check; hash them once.
                un = VerifyingReader(plain, diff_id, None, f"{what} uncompressed content (diff_id)",
                                     verified_by=verified)
            else:
                un = VerifyingReader(plain, diff_id, None, f"{what} uncompressed content (diff_id)")
            if c_out == "none":
                out_stream, out_digest = un, diff_id
            else:
                out_stream, out_digest = CompressingReader(un, c_out), None
                closing = out_stream
            out_mt = with_type("sha256:" + "0" * 64, 0, c_out).media_type
            try:
                dg, size = self.dst.put_blob(out_stream, out_digest, None, out_mt,
                                             layer_index=i, diff_id=diff_id)
                un.finish()
            except InvalidLayer:
                # Corrupt compressed data: if the blob does not match its digest, say that.
                if not verified.done:
                    verified.finish()
                raise
            verified.finish()
            return with_type(dg, size, c_out)
        finally:
            if closing is not None:
                closing.close()
            stream.close()

    def _copy_kept_blob(self, i: int, kept: tuple[IO[bytes], str, int], media_type: str, diff_id: str,
                        what: str) -> Descriptor:
        """Copy a compressed copy of an uncompressed layer that the source kept (the blob the
        layer was pulled or loaded from), as it is: no compressing again, and a destination
        that has that blob already is not sent it."""
        stream, digest, size = kept
        try:
            desc = Descriptor(media_type, digest, size)
            reused = self.dst.reuse_blob(digest, size, media_type, layer_index=i, diff_id=diff_id)
            if reused is not None:
                return Descriptor(media_type, reused[0], reused[1])
            if self.dst.has_blob(digest, size):
                return desc
            verified = VerifyingReader(stream, digest, size, f"{what} compressed copy {digest}", self.progress, digest)
            dg, n = self.dst.put_blob(verified, digest, size, media_type, layer_index=i, diff_id=diff_id)
            verified.finish()
            return Descriptor(media_type, dg, n)
        finally:
            stream.close()

    def _uncompressed_size(self, layer: Descriptor, diff_id: str, what: str) -> int:
        """The size of a layer's uncompressed content (streamed and verified, not stored)."""
        stream, _ = self.src.get_blob(layer.digest, layer.size, layer.media_type)
        try:
            verified = VerifyingReader(stream, layer.digest, layer.size, what)
            un = VerifyingReader(open_decompressed(verified), diff_id, None, f"{what} uncompressed content (diff_id)")
            un.finish()
            verified.finish()
            return un.size
        finally:
            stream.close()

    # -- indexes --------------------------------------------------------------------------

    def copy_index(self, index: Index, raw: bytes, signatures: list[bytes]) -> CopyResult:
        if self.supported and not any(t in INDEX_MEDIA_TYPES for t in self.supported):
            raise TransportError(
                f"{self.where}: the destination cannot store image indexes (manifest lists); "
                "copy a single image instead of all of them"
            )
        if self.fmt:
            idx_fmt = self.fmt
        elif not self.supported or index.media_type in self.supported:
            idx_fmt = index.format
        else:
            idx_fmt = next(f for f in map(_format_of_type, (t for t in self.supported if t in INDEX_MEDIA_TYPES)) if f)
        requested = self.fmt or (idx_fmt if idx_fmt != index.format else None)
        results: list[CopyResult] = []
        entries: list[Descriptor] = []
        for n, d in enumerate(index.manifests):
            if d.media_type in INDEX_MEDIA_TYPES:
                raise ImageError(f"{self.where}: nested image indexes are not supported (entry {n})")
            if d.size > MAX_MANIFEST_SIZE:
                raise ImageError(f"{self.where}: manifest of instance {d.digest} is too large: {d.size} bytes")
            inst_raw, _ = self.src.get_manifest(d.digest)
            _check_manifest_digest(inst_raw, d.digest, f"manifest of instance {d.digest}")
            sigs = [] if self.remove_signatures else self.src.get_signatures(d.digest)
            res = self.copy_single(inst_raw, d.digest, sigs, requested)
            results.append(res)
            entries.append(Descriptor(res.media_type, res.manifest_digest, len(res.manifest),
                                      d.urls, d.annotations, d.platform, d.artifact_type))
        unchanged = idx_fmt == index.format and all(
            a.digest == b.digest and a.media_type == b.media_type for a, b in zip(index.manifests, entries)
        )
        out = raw if unchanged else build_index(entries, idx_fmt, annotations=index.annotations)
        if out != raw and signatures:
            raise ImageError(
                f"{self.where}: the image index has signatures and must change, which would invalidate them; "
                "remove the signatures to copy it"
            )
        out_mt = index.media_type if unchanged else (MEDIA_TYPE_OCI_INDEX if idx_fmt == FORMAT_OCI else MEDIA_TYPE_DOCKER_MANIFEST_LIST)
        self.dst.put_manifest(out, out_mt, None)
        self._put_signatures(signatures, manifest_digest(out), True)
        return CopyResult(manifest_digest(out), out, out_mt, None, results)


def copy_image(
    src_ref: ImageReference,
    dst_ref: ImageReference,
    ctx: SystemContext | None = None,
    *,
    policy_check: PolicyCheck | None = None,
    format: str | None = None,
    compression: str | None = None,
    all_images: bool = False,
    digestfile: str | None = None,
    remove_signatures: bool = False,
    progress: Progress | None = None,
    signers: list | None = None,
    sign_identity: str | None = None,
) -> CopyResult:
    """Copy one image (or with *all_images* a whole index) from *src_ref* to *dst_ref*.

    *policy_check* ``(src_ref, src, raw_manifest, signatures)`` is called before any blob is
    read; it raises (PolicyDenied) or returns False to refuse. *format* (``"oci"``, ``"v2s2"``)
    forces the manifest format; *compression* (``"gzip"``, ``"zstd"``, ``"none"``) recompresses
    layers (a destination that needs uncompressed layers still gets them). The destination is
    committed only when everything succeeded. Returns a :class:`CopyResult`.

    *signers* (:class:`~libpod_core.registry.signing.GPGSigner`,
    :class:`~libpod_core.registry.signing.SigstoreSigner`; ``ctx.sign_by`` adds a GPG one)
    sign the top-level manifest once it is written, as *sign_identity* (default: the
    destination's docker reference); the new signatures are stored after the copied ones.
    Whether the destination can store them is checked before anything is written.
    """
    ctx = ctx or SystemContext()
    if format is not None and format not in _FORMATS:
        raise InvalidArgument(f"unknown manifest format {format!r} (use oci or v2s2)")
    if compression is not None and compression not in _COMPRESSIONS:
        raise InvalidArgument(f"unknown compression {compression!r} (use gzip, zstd or none)")
    remove_signatures = remove_signatures or ctx.remove_signatures
    progress = progress or (None if ctx.quiet else ctx.progress)
    signers = list(signers or [])
    if ctx.sign_by:
        from .registry.signing import GPGSigner

        signers.append(GPGSigner(ctx.sign_by))
    if signers:
        from .registry.signing import check_sign_identity

        sign_identity = check_sign_identity(sign_identity or dst_ref.docker_reference(), str(dst_ref))

    src = src_ref.new_source(ctx)
    try:
        dst = dst_ref.new_destination(ctx)
        try:
            raw, mt = src.get_manifest()
            if len(raw) > MAX_MANIFEST_SIZE:
                raise ImageError(f"{src_ref}: manifest is too large: {len(raw)} bytes")
            top = parse_manifest(raw, mt)
            signatures = src.get_signatures()
            if policy_check is not None:
                verdict = policy_check(src_ref, src, raw, signatures)
                if verdict is False:
                    raise PolicyDenied(f"{src_ref}: the signature policy rejected the image")
            sigs = [] if remove_signatures else list(signatures)
            if sigs or any(s.kind == "simple" for s in signers):
                dst.supports_signatures()
            if any(s.kind == "sigstore" for s in signers):
                dst.supports_sigstore_signatures()
            copier = _Copier(src_ref, dst_ref, src, dst, fmt=format, compression=compression,
                             remove_signatures=remove_signatures, progress=progress, signers=signers,
                             sign_identity=sign_identity)
            if isinstance(top, Index):
                if all_images:
                    result = copier.copy_index(top, raw, sigs)
                else:
                    host = host_platform()
                    os_ = ctx.os or host.os
                    arch = ctx.arch or host.architecture
                    variant = ctx.variant if (ctx.variant or ctx.arch) else host.variant
                    d = top.choose(os_, arch, variant)
                    if d.media_type in INDEX_MEDIA_TYPES:
                        raise ImageError(f"{src_ref}: nested image indexes are not supported")
                    if d.size > MAX_MANIFEST_SIZE:
                        raise ImageError(f"{src_ref}: manifest {d.digest} is too large: {d.size} bytes")
                    inst_raw, _ = src.get_manifest(d.digest)
                    _check_manifest_digest(inst_raw, d.digest, f"{src_ref}: manifest {d.digest}")
                    # The signatures sign the index, not this instance: they cannot be kept.
                    inst_sigs = [] if remove_signatures else src.get_signatures(d.digest)
                    result = copier.copy_single(inst_raw, None, inst_sigs, format)
            else:
                result = copier.copy_single(raw, None, sigs, format)
            dst.commit()
        finally:
            dst.close()
    finally:
        src.close()
    if digestfile:
        with open(digestfile, "w") as f:
            f.write(result.manifest_digest)
    return result
