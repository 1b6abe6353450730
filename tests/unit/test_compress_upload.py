"""Layer compression for pushes (copy.ParallelGzip, CompressingReader), the single hash of an
uncompressed source layer, and the registry client's streamed upload (one chunked PATCH)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import os
import random
import threading
import zlib

import pytest

from libpod_core import copy as copymod
from libpod_core.copy import CompressingReader, ParallelGzip, copy_image
from libpod_core.errors import DigestMismatch
from libpod_core.manifest import (
    MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_LAYER,
    MEDIA_TYPE_OCI_LAYER_GZIP,
    Descriptor,
    build_manifest,
    descriptor_for,
    make_image_config,
    parse_manifest,
)
from libpod_core.registry.client import RegistryClient
from libpod_core.transports.base import SystemContext, parse_image_reference

BLOCK = ParallelGzip.BLOCK


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sample(n: int, seed: int = 1) -> bytes:
    """Half compressible text, half random bytes."""
    rnd = random.Random(seed)
    words = [b"layer", b"tar", b"python", b"def ", b"import os\n", b"    return x\n", b"\0" * 40]
    text = b"".join(rnd.choice(words) for _ in range(n // 6 + 1))
    out = bytearray()
    while len(out) < n:
        out += text[: 50_000] + rnd.randbytes(20_000)
        text = text[50_000:] or text
    return bytes(out[:n])


def gz(data: bytes, feed: int, **kw) -> bytes:
    c = ParallelGzip(**kw)
    parts = [c.compress(data[i:i + feed]) for i in range(0, len(data), feed)]
    parts.append(c.flush())
    return b"".join(parts)


@pytest.mark.parametrize("n", [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 17])
def test_parallel_gzip_round_trip(n):
    data = sample(n)
    out = gz(data, 300_000)
    assert out[:2] == b"\x1f\x8b"
    assert gzip.decompress(out) == data
    d = zlib.decompressobj(31)
    assert d.decompress(out) == data and d.eof and d.unused_data == b""  # one member, no trailer garbage


def test_parallel_gzip_is_deterministic():
    data = sample(2 * BLOCK + 5000, seed=7)
    a = gz(data, 1 << 20)
    assert gz(data, 12345) == a  # how the input is fed does not matter
    assert gz(data, 1 << 20, workers=1) == a  # nor how many workers deflate it
    assert gz(data, 1 << 20, workers=3) == a
    assert gz(data, 1 << 20, level=1) != a


def test_parallel_gzip_ratio_close_to_zlib_default():
    # text-like content: within a few per cent of zlib's own level 6
    data = sample(2 * BLOCK, seed=3)
    out = gz(data, 1 << 20)
    assert len(out) <= len(gzip.compress(data, 6)) * 1.05


def test_parallel_gzip_with_plain_zlib(monkeypatch):
    monkeypatch.setattr(copymod, "_deflate_lib", zlib)
    data = sample(BLOCK + 999, seed=5)
    c = ParallelGzip(level=6)
    assert c._combine is None  # the CRC is computed as the input comes
    out = c.compress(data) + c.flush()
    assert gzip.decompress(out) == data


def test_compressing_reader_short_reads_and_close():
    data = sample(BLOCK * 2 + 3, seed=9)
    r = CompressingReader(io.BytesIO(data), "gzip")
    parts = []
    while chunk := r.read(1000):
        assert len(chunk) <= 1000
        parts.append(chunk)
    assert r.read(10) == b""
    assert gzip.decompress(b"".join(parts)) == data
    # closed early: the workers stop, nothing hangs
    r2 = CompressingReader(io.BytesIO(data), "gzip")
    r2.read(10)
    r2.close()
    assert r2._c.finished


# ------------------------------------------------------------------------------------------
# An uncompressed source layer is hashed once, and still verified
# ------------------------------------------------------------------------------------------


def _plain_dir_image(path: str, layer: bytes) -> str:
    """A dir: image with one uncompressed layer; returns the layer blob's file."""
    ctx = SystemContext()
    cfg = json.dumps(make_image_config([sha(layer)], config={}, architecture="amd64", os="linux",
                                       created="2024-01-01T00:00:00Z")).encode()
    with parse_image_reference(f"dir:{path}").new_destination(ctx) as d:
        d.put_blob(io.BytesIO(layer), sha(layer), len(layer), MEDIA_TYPE_OCI_LAYER, layer_index=0)
        cd = descriptor_for(cfg, MEDIA_TYPE_OCI_CONFIG)
        d.put_blob(io.BytesIO(cfg), cd.digest, cd.size, cd.media_type, is_config=True)
        d.put_manifest(build_manifest(cd, [Descriptor(MEDIA_TYPE_OCI_LAYER, sha(layer), len(layer))]), None)
        d.commit()
    return os.path.join(path, sha(layer).split(":")[1])


def test_uncompressed_source_to_gzip(tmp_path, monkeypatch):
    layer = sample(BLOCK + 4321, seed=11)
    _plain_dir_image(str(tmp_path / "src"), layer)
    hashed = []

    class CountingHashlib:
        @staticmethod
        def new(algo, *a):
            hashed.append(algo)
            return hashlib.new(algo, *a)

    monkeypatch.setattr(copymod, "hashlib", CountingHashlib)
    res = copy_image(parse_image_reference(f"dir:{tmp_path}/src"), parse_image_reference(f"dir:{tmp_path}/out"),
                     SystemContext(), compression="gzip")
    assert hashed.count("sha256") == 2  # the config and the layer: not the layer twice
    m = parse_manifest(res.manifest)
    assert [l.media_type for l in m.layers] == [MEDIA_TYPE_OCI_LAYER_GZIP]
    with open(os.path.join(tmp_path, "out", m.layers[0].digest.split(":")[1]), "rb") as f:
        blob = f.read()
    assert sha(blob) == m.layers[0].digest and len(blob) == m.layers[0].size
    assert gzip.decompress(blob) == layer


def test_uncompressed_source_tampered_is_refused(tmp_path):
    layer = sample(BLOCK + 10, seed=12)
    blob = _plain_dir_image(str(tmp_path / "src"), layer)
    with open(blob, "r+b") as f:
        f.seek(BLOCK)
        f.write(b"X")
    with pytest.raises(DigestMismatch):
        copy_image(parse_image_reference(f"dir:{tmp_path}/src"), parse_image_reference(f"dir:{tmp_path}/out"),
                   SystemContext(), compression="gzip")


# ------------------------------------------------------------------------------------------
# Streamed upload: one PATCH with Transfer-Encoding: chunked
# ------------------------------------------------------------------------------------------


class _MiniRegistry(http.server.BaseHTTPRequestHandler):
    """Just the blob-upload endpoints of the distribution API, on 127.0.0.1."""

    protocol_version = "HTTP/1.1"
    uploads: dict = {}
    log: list = []

    def log_message(self, *a):
        pass

    def _answer(self, status: int, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self):
        self._answer(200)

    def do_POST(self):
        uid = str(len(self.uploads))
        self.uploads[uid] = bytearray()
        self._answer(202, [("Location", f"/v2/r/blobs/uploads/{uid}")])

    def do_PATCH(self):
        uid = self.path.split("?")[0].rsplit("/", 1)[1]
        self.log.append(("PATCH", self.headers.get("Transfer-Encoding"), self.headers.get("Content-Length")))
        self.uploads[uid] += self._body()
        self._answer(202, [("Location", f"/v2/r/blobs/uploads/{uid}")])

    def do_PUT(self):
        path, _, query = self.path.partition("?")
        uid = path.rsplit("/", 1)[1]
        self.uploads[uid] += self._body()
        digest = query.split("digest=")[1].replace("%3A", ":")
        ok = sha(bytes(self.uploads[uid])) == digest
        self._answer(201 if ok else 400, [("Docker-Content-Digest", digest)])


@pytest.fixture
def mini_registry():
    _MiniRegistry.uploads = {}
    _MiniRegistry.log = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MiniRegistry)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_streamed_upload_one_patch(mini_registry):
    data = sample(3 * (1 << 20) + 77, seed=21)
    with RegistryClient(mini_registry, insecure=True) as c:
        assert c.upload_blob("r", io.BytesIO(data), None, None) == (sha(data), len(data))
        assert c.stats["chunks"] == 1
        # a known digest that is too big for one PUT is streamed too
        assert c.upload_blob("r", io.BytesIO(data), sha(data), len(data), monolithic_max=0) == (sha(data), len(data))
        assert c.upload_blob("r", io.BytesIO(b""), None, None) == (sha(b""), 0)
    assert [e for e in _MiniRegistry.log] == [("PATCH", "chunked", None)] * 3
    assert [bytes(u) for u in _MiniRegistry.uploads.values()] == [data, data, b""]


class _Failing(io.RawIOBase):
    def __init__(self, exc: BaseException, after: int):
        self.exc, self.left = exc, after

    def readable(self):
        return True

    def read(self, n=-1):
        if self.left <= 0:
            raise self.exc
        n = min(n if n and n > 0 else 1 << 20, self.left)
        self.left -= n
        return b"x" * n


@pytest.mark.parametrize("exc", [DigestMismatch("layer 0: digest mismatch"), OSError(5, "Input/output error")])
def test_streamed_upload_source_error_is_raised_as_itself(mini_registry, exc):
    with RegistryClient(mini_registry, insecure=True) as c:
        with pytest.raises(type(exc)) as info:
            c.upload_blob("r", _Failing(exc, 2 << 20), None, None)
        assert info.value is exc
        # the client still works afterwards (the cut-off connection was dropped)
        assert c.upload_blob("r", io.BytesIO(b"abc"), None, None) == (sha(b"abc"), 3)
