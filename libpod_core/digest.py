"""Streaming digest and decompression helpers for layer blobs.

* :func:`parse_digest` validates an OCI digest string. Only ``sha256:`` + 64 and
  ``sha512:`` + 128 *lowercase* hex characters are accepted; anything else raises
  :class:`InvalidDigest` (an :class:`~libpod_core.errors.InvalidArgument` and a ``ValueError``).
* :func:`detect_compression` recognises gzip and zstd by their magic bytes.
* :func:`open_decompressed` returns a readable stream of the decompressed data of a plain,
  gzip (multi-member allowed, trailing NUL padding allowed) or zstd (multi-frame, skippable
  frames allowed) input. Output is produced in bounded chunks (no decompression bomb can make
  it buffer more than about one read's worth), the input is always read to its end, and
  corrupt, garbage-trailed or truncated compressed data raises
  :class:`~libpod_core.errors.InvalidLayer` — it never returns a silently shortened stream.
* :class:`DigestReader` hashes every byte read through it, can enforce an expected size
  while reading, and :meth:`DigestReader.verify` raises
  :class:`~libpod_core.errors.DigestMismatch` when the content does not match.
"""

from __future__ import annotations

import hashlib
import io
import zlib

from libpod_core.errors import DigestMismatch, InvalidArgument, InvalidLayer
from libpod_core.lazyre import lazy

__all__ = [
    "InvalidDigest",
    "SUPPORTED_ALGORITHMS",
    "parse_digest",
    "format_digest",
    "detect_compression",
    "open_decompressed",
    "sniff_compression",
    "DigestReader",
    "CHUNK_SIZE",
]

#: Default read size for all streaming helpers.
CHUNK_SIZE = 1 << 20

#: Supported digest algorithms and the length of their hex encoding.
SUPPORTED_ALGORITHMS = {"sha256": 64, "sha512": 128}

_DIGEST_RE = lazy(r"\A([a-z0-9]+):([0-9a-f]+)\Z")

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class InvalidDigest(InvalidArgument, ValueError):
    """A digest string is malformed or uses an unsupported algorithm."""


def parse_digest(s: str) -> tuple[str, str]:
    """Validate *s* (``algo:hex``) and return ``(algo, hex)``."""
    if not isinstance(s, str):
        raise InvalidDigest(f"invalid digest {s!r}: not a string")
    m = _DIGEST_RE.match(s)
    if m is None:
        raise InvalidDigest(f"invalid digest {s!r}: expected ALGORITHM:LOWERCASE-HEX")
    algo, hexpart = m.group(1), m.group(2)
    want = SUPPORTED_ALGORITHMS.get(algo)
    if want is None:
        raise InvalidDigest(f"invalid digest {s!r}: unsupported algorithm {algo!r}")
    if len(hexpart) != want:
        raise InvalidDigest(
            f"invalid digest {s!r}: {algo} needs {want} hex characters, got {len(hexpart)}"
        )
    return algo, hexpart


def format_digest(algo: str, hexdigest: str) -> str:
    """Return ``algo:hexdigest`` after validating it."""
    s = f"{algo}:{hexdigest}"
    parse_digest(s)
    return s


def detect_compression(first_bytes: bytes) -> str:
    """Return ``'gzip'``, ``'zstd'`` or ``'none'`` from the first bytes of a blob."""
    b = bytes(first_bytes[:4])
    if b.startswith(_GZIP_MAGIC):
        return "gzip"
    if b == _ZSTD_MAGIC:
        return "zstd"
    # zstd skippable frame: magic 0x184D2A50..0x184D2A5F (little endian)
    if len(b) == 4 and (b[0] & 0xF0) == 0x50 and b[1:] == b"\x2a\x4d\x18":
        return "zstd"
    return "none"


# --------------------------------------------------------------------------------------
# Input helpers
# --------------------------------------------------------------------------------------


class _Source:
    """Reads the compressed input: an already-read prefix, then the file object."""

    __slots__ = ("_prefix", "_f", "eof", "consumed")

    def __init__(self, prefix: bytes, fileobj):
        self._prefix = prefix
        self._f = fileobj
        self.eof = False
        self.consumed = 0

    def read(self, n: int = CHUNK_SIZE) -> bytes:
        if self._prefix:
            if n < 0 or n >= len(self._prefix):
                data, self._prefix = self._prefix, b""
            else:
                data, self._prefix = self._prefix[:n], self._prefix[n:]
            self.consumed += len(data)
            return data
        if self.eof:
            return b""
        data = self._f.read(n if n and n > 0 else CHUNK_SIZE)
        if not data:
            self.eof = True
            return b""
        self.consumed += len(data)
        return data


class _StreamBase(io.RawIOBase):
    """Common read()/readinto() plumbing; subclasses implement :meth:`_read`."""

    compression = "none"
    #: closed with the stream (``open_decompressed(..., close_source=True)``)
    _owned = None

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        owned, self._owned = self._owned, None
        try:
            if owned is not None:
                owned.close()
        finally:
            super().close()

    def _read(self, n: int) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = []
            while True:
                chunk = self._read(CHUNK_SIZE)
                if not chunk:
                    return b"".join(parts)
                parts.append(chunk)
        if n == 0:
            return b""
        return self._read(n)

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, b) -> int:
        data = self._read(len(b))
        n = len(data)
        memoryview(b).cast("B")[:n] = data
        return n


class _PlainStream(_StreamBase):
    compression = "none"

    def __init__(self, src: _Source):
        super().__init__()
        self._src = src

    def _read(self, n: int) -> bytes:
        return self._src.read(n)


_INFLATE = None


def _inflate_lib():
    """zlib-ng's zlib module (about twice zlib's inflate speed) when installed, else zlib."""
    global _INFLATE
    if _INFLATE is None:
        try:
            from zlib_ng import zlib_ng as lib
        except ImportError:  # a core dependency; plain zlib still works
            lib = zlib
        _INFLATE = lib
    return _INFLATE


class _GzipStream(_StreamBase):
    """gzip via zlib(-ng) with bounded output; multi-member; NUL padding after the last member."""

    compression = "gzip"

    def __init__(self, src: _Source):
        super().__init__()
        self._src = src
        self._z = _inflate_lib()
        self._d = self._z.decompressobj(31)
        self._pending = b""  # compressed input not yet given to the decompressor
        self._in_member = True  # inside a gzip member (header seen or expected)
        self._done = False

    def _next_member(self) -> bool:
        """After a member ended: skip NUL padding; return True if another member starts."""
        while True:
            data = self._pending.lstrip(b"\0")
            if data:
                if len(data) < 2:
                    more = self._src.read(CHUNK_SIZE)
                    if not more:
                        raise InvalidLayer("corrupt gzip stream: trailing garbage after the data")
                    self._pending = data + more
                    continue
                if not data.startswith(_GZIP_MAGIC):
                    raise InvalidLayer("corrupt gzip stream: trailing garbage after the data")
                self._pending = data
                self._d = self._z.decompressobj(31)
                return True
            more = self._src.read(CHUNK_SIZE)
            if not more:
                self._pending = b""
                return False
            self._pending = more

    def _read(self, n: int) -> bytes:
        while not self._done:
            if not self._in_member:
                if not self._next_member():
                    self._done = True
                    break
                self._in_member = True
            d = self._d
            data = d.unconsumed_tail or self._pending
            self._pending = b""
            if not data:
                data = self._src.read(CHUNK_SIZE)
                if not data:
                    # zlib may still hold output for input it already consumed
                    try:
                        out = d.decompress(b"", n)
                    except self._z.error as e:
                        raise InvalidLayer(f"corrupt gzip stream: {e}") from None
                    if d.eof:
                        self._pending = d.unused_data
                        self._in_member = False
                    if out:
                        return out
                    if not d.eof:
                        raise InvalidLayer(
                            "truncated gzip stream: unexpected end of compressed data"
                        )
                    continue
            try:
                out = d.decompress(data, n)
            except self._z.error as e:
                raise InvalidLayer(f"corrupt gzip stream: {e}") from None
            if d.eof:
                self._pending = d.unused_data
                self._in_member = False
            if out:
                return out
        return b""


class _ZstdFrameTracker:
    """Follows the zstd frame/block structure of the compressed bytes, without decoding,
    so that an input that stops in the middle of a frame is detected (the zstandard
    stream reader would otherwise just return a short result)."""

    __slots__ = ("_state", "_need", "_skip", "_hdr", "_checksum")

    def __init__(self):
        self._state = "magic"
        self._need = 4
        self._hdr = b""
        self._skip = 0
        self._checksum = False

    def complete(self) -> bool:
        return self._state == "magic" and not self._hdr and self._skip == 0

    def feed(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end:
            if self._skip:
                take = min(self._skip, end - pos)
                self._skip -= take
                pos += take
                continue
            if self._state == "bad":
                return
            take = min(self._need - len(self._hdr), end - pos)
            self._hdr += data[pos : pos + take]
            pos += take
            if len(self._hdr) < self._need:
                return
            hdr, self._hdr = self._hdr, b""
            self._advance(hdr)

    def _advance(self, hdr: bytes) -> None:
        st = self._state
        if st == "magic":
            if hdr == _ZSTD_MAGIC:
                self._state, self._need = "fhd", 1
            elif (hdr[0] & 0xF0) == 0x50 and hdr[1:] == b"\x2a\x4d\x18":
                self._state, self._need = "skipsize", 4
            else:
                self._state = "bad"  # the decoder reports the error
        elif st == "skipsize":
            self._skip = int.from_bytes(hdr, "little")
            self._state, self._need = "magic", 4
        elif st == "fhd":
            fhd = hdr[0]
            fcs_flag = fhd >> 6
            single = (fhd >> 5) & 1
            self._checksum = bool((fhd >> 2) & 1)
            did = (0, 1, 2, 4)[fhd & 3]
            fcs = (single, 2, 4, 8)[fcs_flag]
            self._skip = (0 if single else 1) + did + fcs
            self._state, self._need = "block", 3
        elif st == "block":
            v = int.from_bytes(hdr, "little")
            last = v & 1
            btype = (v >> 1) & 3
            bsize = v >> 3
            if btype == 3:
                self._state = "bad"
                return
            self._skip = 1 if btype == 1 else bsize
            if last:
                if self._checksum:
                    self._skip += 4
                self._state, self._need = "magic", 4
        else:  # pragma: no cover
            self._state = "bad"


class _TrackedSource:
    __slots__ = ("_src", "_tracker")

    def __init__(self, src: _Source, tracker: _ZstdFrameTracker):
        self._src = src
        self._tracker = tracker

    def read(self, n: int = CHUNK_SIZE) -> bytes:
        data = self._src.read(n)
        if data:
            self._tracker.feed(data)
        return data


class _ZstdStream(_StreamBase):
    compression = "zstd"

    def __init__(self, src: _Source):
        super().__init__()
        import zstandard

        self._zerr = zstandard.ZstdError
        self._src = src
        self._tracker = _ZstdFrameTracker()
        self._r = zstandard.ZstdDecompressor().stream_reader(
            _TrackedSource(src, self._tracker),
            read_size=CHUNK_SIZE,
            read_across_frames=True,
        )
        self._done = False

    def _read(self, n: int) -> bytes:
        if self._done:
            return b""
        stalls = 0
        while True:
            before = self._src.consumed
            try:
                out = self._r.read(n)
            except self._zerr as e:
                raise InvalidLayer(f"corrupt zstd stream: {e}") from None
            if out:
                return out
            if self._src.eof:
                break
            # An empty result before the end of the input (e.g. at a frame boundary):
            # go on while the decoder makes progress.
            stalls = stalls + 1 if self._src.consumed == before else 0
            if stalls >= 2:
                raise InvalidLayer(
                    "corrupt zstd stream: decoder stopped before the end of the input"
                )
        if not self._tracker.complete():
            raise InvalidLayer("truncated zstd stream: unexpected end of compressed data")
        self._done = True
        return b""


def sniff_compression(fileobj) -> tuple[str, "_Source"]:
    """``(kind, stream)``: *fileobj*'s compression (``'gzip'``, ``'zstd'`` or ``'none'``)
    from its magic bytes, and a stream that reads *fileobj* from where it was (the bytes
    looked at included)."""
    prefix = b""
    while len(prefix) < 4:
        chunk = fileobj.read(4 - len(prefix))
        if not chunk:
            break
        prefix += chunk
    return detect_compression(prefix), _Source(prefix, fileobj)


def open_decompressed(fileobj, *, compression: str | None = None, close_source: bool = False):
    """Return a readable binary stream of *fileobj*'s decompressed content.

    The compression is detected from the magic bytes unless *compression* (``'gzip'``,
    ``'zstd'`` or ``'none'``) is given. The returned object has ``read(n)``/``readinto()``
    and a ``compression`` attribute; it returns ``b''`` only at the real end of the input.
    With *close_source*, closing it closes *fileobj* (also when this call fails).
    """
    try:
        detected, src = sniff_compression(fileobj)
        kind = compression or detected
        if kind == "gzip":
            stream: _StreamBase = _GzipStream(src)
        elif kind == "zstd":
            stream = _ZstdStream(src)
        elif kind == "none":
            stream = _PlainStream(src)
        else:
            raise InvalidArgument(f"unsupported compression {kind!r}")
    except BaseException:
        if close_source:
            fileobj.close()
        raise
    if close_source:
        stream._owned = fileobj
    return stream


# --------------------------------------------------------------------------------------
# DigestReader
# --------------------------------------------------------------------------------------


class DigestReader(io.RawIOBase):
    """Wrap a binary stream and hash everything read through it.

    *expected_digest* (``algo:hex``) selects the algorithm (default *algorithm*, sha256);
    *expected_size* is enforced while reading (reading past it raises
    :class:`DigestMismatch` at once) and by :meth:`verify`.
    """

    def __init__(
        self,
        fileobj,
        expected_digest: str | None = None,
        expected_size: int | None = None,
        *,
        algorithm: str = "sha256",
    ):
        super().__init__()
        if expected_digest is not None:
            algorithm, _ = parse_digest(expected_digest)
        elif algorithm not in SUPPORTED_ALGORITHMS:
            raise InvalidDigest(f"unsupported digest algorithm {algorithm!r}")
        if expected_size is not None and expected_size < 0:
            raise InvalidArgument(f"invalid expected size {expected_size}")
        self._f = fileobj
        self._h = hashlib.new(algorithm)
        self.algorithm = algorithm
        self.expected_digest = expected_digest
        self.expected_size = expected_size
        self.size = 0
        self.eof = False

    def readable(self) -> bool:
        return True

    def _account(self, data) -> None:
        n = len(data)
        if not n:
            self.eof = True
            return
        self.size += n
        if self.expected_size is not None and self.size > self.expected_size:
            raise DigestMismatch(
                f"size mismatch: expected {self.expected_size} bytes, got more "
                f"(at least {self.size})"
            )
        self._h.update(data)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = []
            while True:
                chunk = self._f.read(CHUNK_SIZE)
                self._account(chunk)
                if not chunk:
                    return b"".join(parts)
                parts.append(chunk)
        if n == 0:
            return b""
        data = self._f.read(n)
        self._account(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, b) -> int:
        data = self.read(len(b))
        n = len(data)
        memoryview(b).cast("B")[:n] = data
        return n

    @property
    def digest(self) -> str:
        """``algo:hex`` of the bytes read so far."""
        return f"{self.algorithm}:{self._h.hexdigest()}"

    def drain(self) -> int:
        """Read (and hash) the rest of the stream; return the number of bytes skipped."""
        n = 0
        while True:
            chunk = self._f.read(CHUNK_SIZE)
            self._account(chunk)
            if not chunk:
                return n
            n += len(chunk)

    def verify(self, *, drain: bool = True) -> str:
        """Check size and digest (reading the rest of the stream first unless *drain* is
        False) and return the digest; raise :class:`DigestMismatch` on a mismatch."""
        if drain:
            self.drain()
        if self.expected_size is not None and self.size != self.expected_size:
            raise DigestMismatch(
                f"size mismatch: expected {self.expected_size} bytes, got {self.size}"
            )
        actual = self.digest
        if self.expected_digest is not None and actual != self.expected_digest:
            raise DigestMismatch(
                f"digest mismatch: expected {self.expected_digest}, got {actual}"
            )
        return actual


class ReadAhead(io.RawIOBase):
    """Reads *inner* in a background thread, *depth* chunks ahead (bounded memory).

    Layer pipelines put the network read, digest checks, decompression and the layer-cache
    compression (which release the GIL) on one core while the caller extracts files on the
    other. An exception in the reader thread is raised by the next :meth:`read`. With
    *close_inner*, :meth:`close` closes *inner* once the thread has stopped.
    """

    def __init__(self, inner, chunk: int = CHUNK_SIZE, depth: int = 8, *, close_inner: bool = False) -> None:
        import queue
        import threading

        self._inner = inner
        self._close_inner = close_inner
        self._q: "queue.Queue" = queue.Queue(maxsize=depth)
        self._buf = b""
        self._eof = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(chunk,), name="kpod-readahead", daemon=True)
        self._thread.start()

    def _run(self, chunk: int) -> None:
        try:
            while not self._stop.is_set():
                data = self._inner.read(chunk)
                self._produced(data)
                self._q.put(data)
                if not data:
                    return
        except BaseException as exc:  # handed to the consumer
            self._q.put(exc)

    def _produced(self, data: bytes) -> None:
        """Called in the reader thread with each chunk before the consumer sees it."""

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = [self._buf]
            self._buf = b""
            while not self._eof:
                parts.append(self._next())
            return b"".join(parts)
        while not self._buf and not self._eof:
            self._buf = self._next()
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def _next(self) -> bytes:
        item = self._q.get()
        if isinstance(item, BaseException):
            self._eof = True
            raise item
        if not item:
            self._eof = True
        return item

    def close(self) -> None:
        self._stop.set()
        # unblock the producer if it waits on a full queue
        while self._thread.is_alive():
            try:
                self._q.get_nowait()
            except Exception:
                self._thread.join(0.05)
        if self._close_inner and not self.closed:
            self._inner.close()
        super().close()


class HashedTarStream(ReadAhead):
    """An uncompressed layer tar read ahead in a background thread that also computes its
    digest (the layer's diff ID) there, so that the thread extracting files does not.

    :func:`libpod_core.tarapply.apply_layer` takes :attr:`digest` and :attr:`size` from a
    stream of this class instead of hashing it again. Both are final once the stream has
    been read to its end (:meth:`drain`).
    """

    def __init__(self, inner, chunk: int = CHUNK_SIZE, depth: int = 8, *, algorithm: str = "sha256") -> None:
        if algorithm not in SUPPORTED_ALGORITHMS:
            raise InvalidDigest(f"unsupported digest algorithm {algorithm!r}")
        self.algorithm = algorithm
        self._h = hashlib.new(algorithm)
        self.size = 0
        self._complete = False
        super().__init__(inner, chunk, depth)

    def _produced(self, data: bytes) -> None:
        if not data:
            self._complete = True
            return
        self._h.update(data)  # releases the GIL for chunks this size
        self.size += len(data)

    @property
    def digest(self) -> str:
        """``algo:hex`` of the whole stream (after it has been read to its end)."""
        if not (self._eof and self._complete):
            raise RuntimeError("HashedTarStream.digest read before the end of the stream")
        return f"{self.algorithm}:{self._h.hexdigest()}"

    def drain(self) -> int:
        """Read the rest of the stream; return the number of bytes skipped."""
        n = 0
        while True:
            chunk = self.read(CHUNK_SIZE)
            if not chunk:
                return n
            n += len(chunk)
