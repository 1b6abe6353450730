from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
import zlib

import pytest
import zstandard

from libpod_core.digest import (
    DigestReader,
    HashedTarStream,
    ReadAhead,
    InvalidDigest,
    detect_compression,
    open_decompressed,
    parse_digest,
    sniff_compression,
)
from libpod_core.errors import DigestMismatch, InvalidArgument, InvalidLayer

SHA = hashlib.sha256(b"x").hexdigest()


class Trickle(io.RawIOBase):
    """A stream that returns at most *n* bytes per read (like a socket)."""

    def __init__(self, data: bytes, n: int = 7):
        self._b = io.BytesIO(data)
        self._n = n

    def readable(self):
        return True

    def read(self, size=-1):
        if size is None or size < 0:
            size = self._n
        return self._b.read(min(size, self._n))

    def readinto(self, b):
        d = self.read(len(b))
        b[: len(d)] = d
        return len(d)

    def tell(self):
        return self._b.tell()


def read_all(stream, size=65536) -> bytes:
    out = []
    while True:
        chunk = stream.read(size)
        if not chunk:
            return b"".join(out)
        out.append(chunk)


DATA = os.urandom(300_000) + b"\0" * 2_000_000 + b"tail" * 1000


# --------------------------------------------------------------------------------------
# parse_digest
# --------------------------------------------------------------------------------------


def test_parse_digest_valid():
    assert parse_digest("sha256:" + SHA) == ("sha256", SHA)
    h512 = hashlib.sha512(b"x").hexdigest()
    assert parse_digest("sha512:" + h512) == ("sha512", h512)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        SHA,  # no algorithm
        "sha256:" + SHA.upper(),
        "SHA256:" + SHA,
        "sha256:" + SHA[:-1],
        "sha256:" + SHA + "0",
        "sha256:" + SHA[:-1] + "g",
        "sha512:" + SHA,  # wrong length for sha512
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha256: " + SHA,
        "sha256:" + SHA + "\n",
        "sha256::" + SHA,
        ":" + SHA,
    ],
)
def test_parse_digest_invalid(bad):
    with pytest.raises(InvalidDigest) as ei:
        parse_digest(bad)
    assert isinstance(ei.value, InvalidArgument)
    assert isinstance(ei.value, ValueError)


def test_parse_digest_not_a_string():
    with pytest.raises(InvalidDigest):
        parse_digest(b"sha256:" + SHA.encode())  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# detect_compression
# --------------------------------------------------------------------------------------


def test_detect_compression():
    assert detect_compression(gzip.compress(b"abc")) == "gzip"
    assert detect_compression(zstandard.ZstdCompressor().compress(b"abc")) == "zstd"
    skippable = struct.pack("<II", 0x184D2A53, 3) + b"abc"
    assert detect_compression(skippable) == "zstd"
    assert detect_compression(b"ustar stuff") == "none"
    assert detect_compression(b"") == "none"
    assert detect_compression(b"\x1f") == "none"
    assert detect_compression(b"\x28\xb5\x2f") == "none"


# --------------------------------------------------------------------------------------
# open_decompressed
# --------------------------------------------------------------------------------------


def test_plain_passthrough():
    src = io.BytesIO(DATA)
    s = open_decompressed(src)
    assert s.compression == "none"
    assert read_all(s) == DATA
    assert src.tell() == len(DATA)


def test_empty_input():
    s = open_decompressed(io.BytesIO(b""))
    assert s.compression == "none"
    assert s.read(100) == b""


@pytest.mark.parametrize("readsize", [1, 511, 65536, 1 << 20, -1])
def test_gzip_roundtrip(readsize):
    comp = gzip.compress(DATA)
    src = io.BytesIO(comp)
    s = open_decompressed(src)
    assert s.compression == "gzip"
    if readsize == -1:
        assert s.read() == DATA
    elif readsize == 1:
        small = gzip.compress(DATA[:5000])
        s = open_decompressed(io.BytesIO(small))
        assert read_all(s, 1) == DATA[:5000]
        return
    else:
        assert read_all(s, readsize) == DATA
    assert src.tell() == len(comp)


@pytest.mark.parametrize("readsize", [1, 4096, 1 << 20])
def test_zstd_roundtrip(readsize):
    data = DATA if readsize != 1 else DATA[:5000]
    comp = zstandard.ZstdCompressor(write_checksum=True).compress(data)
    src = io.BytesIO(comp)
    s = open_decompressed(src)
    assert s.compression == "zstd"
    assert read_all(s, readsize) == data
    assert src.tell() == len(comp)


def test_trickling_source():
    for comp in (gzip.compress(DATA[:200_000]), zstandard.ZstdCompressor().compress(DATA[:200_000])):
        s = open_decompressed(Trickle(comp, 3))
        assert read_all(s, 10_000) == DATA[:200_000]


def test_readinto():
    s = open_decompressed(io.BytesIO(gzip.compress(b"hello world")))
    buf = bytearray(100)
    n = s.readinto(buf)
    assert bytes(buf[:n]) == b"hello world"[:n] and n > 0


def test_gzip_multi_member_and_zero_padding():
    comp = gzip.compress(b"first-") + gzip.compress(b"second") + b"\0" * 4096
    src = io.BytesIO(comp)
    assert read_all(open_decompressed(src)) == b"first-second"
    assert src.tell() == len(comp)


def test_gzip_trailing_garbage():
    comp = gzip.compress(b"payload") + b"\0\0garbage"
    with pytest.raises(InvalidLayer, match="gzip"):
        read_all(open_decompressed(io.BytesIO(comp)))


def test_gzip_output_is_bounded():
    # 200 MB of zeros compress to ~200 KB; a small read must not inflate everything
    comp = gzip.compress(b"\0" * (200 << 20), compresslevel=1)
    s = open_decompressed(io.BytesIO(comp))
    chunk = s.read(4096)
    assert 0 < len(chunk) <= 4096


def test_zstd_output_is_bounded():
    comp = zstandard.ZstdCompressor().compress(b"\0" * (200 << 20))
    s = open_decompressed(io.BytesIO(comp))
    chunk = s.read(4096)
    assert 0 < len(chunk) <= 4096


def test_zstd_multi_frame_and_skippable():
    c = zstandard.ZstdCompressor()
    comp = (
        c.compress(b"one-")
        + struct.pack("<II", 0x184D2A50, 5)
        + b"skip!"
        + c.compress(b"")
        + c.compress(b"two")
    )
    assert read_all(open_decompressed(io.BytesIO(comp))) == b"one-two"


@pytest.mark.parametrize("frac", [0.0, 0.01, 0.3, 0.5, 0.9, 0.999])
def test_truncated_gzip(frac):
    comp = gzip.compress(DATA)
    cut = max(3, int(len(comp) * frac))
    with pytest.raises(InvalidLayer, match="gzip"):
        read_all(open_decompressed(io.BytesIO(comp[:cut])))


def test_truncated_gzip_every_cut_small():
    comp = gzip.compress(b"some small payload" * 10)
    for cut in range(2, len(comp)):
        with pytest.raises(InvalidLayer):
            read_all(open_decompressed(io.BytesIO(comp[:cut])))


@pytest.mark.parametrize("frac", [0.0, 0.01, 0.3, 0.5, 0.9, 0.999])
def test_truncated_zstd(frac):
    comp = zstandard.ZstdCompressor(write_checksum=True).compress(DATA)
    cut = max(4, int(len(comp) * frac))
    with pytest.raises(InvalidLayer, match="zstd"):
        read_all(open_decompressed(io.BytesIO(comp[:cut])))


def test_truncated_zstd_every_cut_small():
    for checksum in (False, True):
        comp = zstandard.ZstdCompressor(write_checksum=checksum).compress(b"abcdefgh" * 50)
        for cut in range(4, len(comp)):
            with pytest.raises(InvalidLayer):
                read_all(open_decompressed(io.BytesIO(comp[:cut])))


def test_garbage_after_magic():
    rnd = os.urandom(5000)
    with pytest.raises(InvalidLayer, match="gzip"):
        read_all(open_decompressed(io.BytesIO(b"\x1f\x8b\x08\x00" + rnd)))
    with pytest.raises(InvalidLayer, match="zstd"):
        read_all(open_decompressed(io.BytesIO(b"\x28\xb5\x2f\xfd" + rnd)))


def test_zstd_trailing_garbage():
    comp = zstandard.ZstdCompressor().compress(b"payload") + b"garbage!"
    with pytest.raises(InvalidLayer, match="zstd"):
        read_all(open_decompressed(io.BytesIO(comp)))


def test_corrupted_gzip_crc():
    comp = bytearray(gzip.compress(b"payload" * 100))
    comp[-6] ^= 0xFF  # CRC32 trailer
    with pytest.raises(InvalidLayer, match="gzip"):
        read_all(open_decompressed(io.BytesIO(bytes(comp))))


def test_raw_deflate_is_not_gzip():
    comp = zlib.compress(b"payload")
    s = open_decompressed(io.BytesIO(comp))
    assert s.compression == "none"
    assert read_all(s) == comp


# --------------------------------------------------------------------------------------
# DigestReader
# --------------------------------------------------------------------------------------


def test_digest_reader_ok():
    data = os.urandom(100_000)
    want = "sha256:" + hashlib.sha256(data).hexdigest()
    r = DigestReader(io.BytesIO(data), want, len(data))
    assert read_all(r, 999) == data
    assert r.digest == want
    assert r.size == len(data)
    assert r.verify() == want


def test_digest_reader_sha512_and_default():
    data = b"hello"
    want = "sha512:" + hashlib.sha512(data).hexdigest()
    r = DigestReader(io.BytesIO(data), want)
    assert r.read() == data
    assert r.verify() == want
    r = DigestReader(io.BytesIO(data))
    r.read()
    assert r.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert r.verify() == r.digest


def test_digest_reader_mismatch():
    other = "sha256:" + hashlib.sha256(b"other").hexdigest()
    r = DigestReader(io.BytesIO(b"content"), other)
    r.read()
    with pytest.raises(DigestMismatch) as ei:
        r.verify()
    msg = str(ei.value)
    assert other in msg
    assert "sha256:" + hashlib.sha256(b"content").hexdigest() in msg
    assert "expected" in msg and "got" in msg


def test_digest_reader_verify_drains():
    data = os.urandom(5000)
    want = "sha256:" + hashlib.sha256(data).hexdigest()
    r = DigestReader(io.BytesIO(data), want)
    r.read(10)
    assert r.verify() == want
    assert r.size == 5000


def test_digest_reader_too_long_fails_while_reading():
    r = DigestReader(io.BytesIO(b"x" * 1000), None, 10)
    with pytest.raises(DigestMismatch, match="size"):
        read_all(r, 100)


def test_digest_reader_too_short():
    data = b"abc"
    r = DigestReader(io.BytesIO(data), "sha256:" + hashlib.sha256(data).hexdigest(), 4)
    r.read()
    with pytest.raises(DigestMismatch, match="expected 4 bytes, got 3"):
        r.verify()


def test_digest_reader_rejects_bad_expected_digest():
    with pytest.raises(InvalidDigest):
        DigestReader(io.BytesIO(b""), "sha256:XYZ")
    with pytest.raises(InvalidDigest):
        DigestReader(io.BytesIO(b""), algorithm="md5")


def test_digest_reader_readinto_and_buffered():
    data = os.urandom(70_000)
    r = DigestReader(io.BytesIO(data))
    b = io.BufferedReader(r, 4096)
    assert b.read() == data
    assert r.digest == "sha256:" + hashlib.sha256(data).hexdigest()


def test_digest_reader_over_decompressed_stream():
    data = os.urandom(50_000)
    comp = gzip.compress(data)
    outer = DigestReader(io.BytesIO(comp), "sha256:" + hashlib.sha256(comp).hexdigest())
    inner = DigestReader(open_decompressed(outer))
    assert read_all(inner) == data
    assert inner.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    outer.verify(drain=False)  # decompression consumed every compressed byte


@pytest.mark.parametrize("kind", ["gzip", "zstd", "none"])
def test_sniff_compression_replays_the_bytes_it_looked_at(kind):
    payload = os.urandom(3000)
    blob = {"gzip": gzip.compress, "zstd": zstandard.ZstdCompressor().compress, "none": bytes}[kind](payload)
    found, stream = sniff_compression(io.BytesIO(blob))
    assert found == kind
    assert read_all(stream, 7) == blob


def test_sniff_compression_short_input():
    assert sniff_compression(io.BytesIO(b"ab"))[0] == "none"
    found, stream = sniff_compression(io.BytesIO(b""))
    assert (found, stream.read(10)) == ("none", b"")


def test_hashed_tar_stream_digest_and_size_after_the_end():
    payload = os.urandom(3 * (1 << 20) + 17)
    stream = HashedTarStream(io.BytesIO(payload))
    try:
        assert stream.read(100) == payload[:100]
        with pytest.raises(RuntimeError):
            stream.digest  # noqa: B018 - not final before the end
        assert stream.drain() == len(payload) - 100
        assert stream.digest == "sha256:" + hashlib.sha256(payload).hexdigest()
        assert stream.size == len(payload)
    finally:
        stream.close()


def test_hashed_tar_stream_passes_reader_errors_on():
    class Broken(io.RawIOBase):
        def readable(self):
            return True

        def read(self, n=-1):
            raise InvalidLayer("corrupt gzip stream: boom")

    stream = HashedTarStream(Broken())
    try:
        with pytest.raises(InvalidLayer, match="boom"):
            stream.read(10)
        with pytest.raises(RuntimeError):
            stream.digest  # noqa: B018 - the stream never completed
    finally:
        stream.close()


@pytest.mark.parametrize("close_inner", [False, True])
def test_read_ahead_closes_its_source_only_when_asked(close_inner):
    payload = os.urandom(5 * (1 << 20))
    inner = io.BytesIO(payload)
    stream = ReadAhead(inner, close_inner=close_inner)
    assert stream.read(10) == payload[:10]
    stream.close()  # while the reader thread may still be blocked on a full queue
    assert stream.closed and inner.closed == close_inner


@pytest.mark.parametrize("close_source", [False, True])
def test_open_decompressed_closes_its_source_only_when_asked(close_source):
    src = io.BytesIO(gzip.compress(b"payload"))
    stream = open_decompressed(src, close_source=close_source)
    assert read_all(stream) == b"payload"
    stream.close()
    assert src.closed == close_source
    bad = io.BytesIO(b"\x1f\x8b")
    with pytest.raises(InvalidArgument):
        open_decompressed(bad, compression="lz4", close_source=True)
    assert bad.closed
