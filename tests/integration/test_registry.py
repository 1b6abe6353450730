"""The docker:// transport and the registry client against a real registry.

Debian's docker-registry (distribution v2) runs on 127.0.0.1 at a free port with its storage
in a temporary directory, as plain HTTP, HTTPS with a CA made here by openssl, htpasswd basic
auth, and token auth with a small token issuer served here. Test images are built by hand as
an OCI layout (busybox layer + config) and put in the registry with skopeo; skopeo also makes
the GPG and sigstore signatures. Tiny fake servers on 127.0.0.1 play a registry that hangs
and one that answers wrong bytes. Every server is stopped in a finally/fixture.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import warnings
from urllib.parse import parse_qs, urlsplit

import pytest

from libpod_core import manifest as mf
from libpod_core.digest import DigestReader
from libpod_core.errors import DigestMismatch, NotFound, PolicyDenied, TransportError
from libpod_core.registry import auth as authmod
from libpod_core.registry.client import (
    AuthenticationError,
    ManifestUnknown,
    RegistryClient,
    RegistryUnreachable,
    login,
)
from libpod_core.registry.policy import Policy, check_image_source
from libpod_core.testimage import rootfs_tar
from libpod_core.transports.base import SystemContext
from libpod_core.transports.docker import DockerTransport, list_tags

pytestmark = pytest.mark.integration

REGISTRY_BIN = shutil.which("docker-registry")
SKOPEO = shutil.which("skopeo")
OPENSSL = shutil.which("openssl")
GPG = shutil.which("gpg")

if not (REGISTRY_BIN and SKOPEO and OPENSSL):
    pytest.skip("docker-registry, skopeo and openssl are needed", allow_module_level=True)

T = DockerTransport()


# ------------------------------------------------------------------------------------------
# helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("timeout", 60)
    proc = subprocess.run(cmd, **kw)
    if proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}): {proc.stderr!r}")
    return proc


def write_oci_layout(path: str, tag: str = "v1", extra_file: bytes | None = None) -> dict:
    """An OCI layout with one busybox image (gzip layer). Returns its pieces."""
    layer_tar = rootfs_tar()
    if extra_file is not None:
        layer_tar = rootfs_tar()  # same base; a second layer makes the image distinct
    layers = [(gzip.compress(layer_tar, mtime=0), "sha256:" + hashlib.sha256(layer_tar).hexdigest())]
    if extra_file is not None:
        import io
        import tarfile

        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            ti = tarfile.TarInfo("etc/extra")
            ti.size = len(extra_file)
            tf.addfile(ti, io.BytesIO(extra_file))
        raw = buf.getvalue()
        layers.append((gzip.compress(raw, mtime=0), "sha256:" + hashlib.sha256(raw).hexdigest()))
    config = mf.config_bytes(mf.make_image_config([d for _, d in layers], architecture="amd64", os="linux",
                                                  created="2024-01-01T00:00:00Z"))
    cdesc = mf.descriptor_for(config, mf.MEDIA_TYPE_OCI_CONFIG)
    ldescs = [mf.descriptor_for(blob, mf.MEDIA_TYPE_OCI_LAYER_GZIP) for blob, _ in layers]
    manifest = mf.build_manifest(cdesc, ldescs, mf.FORMAT_OCI)
    blobs = os.path.join(path, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    for data in [config, manifest] + [b for b, _ in layers]:
        with open(os.path.join(blobs, hashlib.sha256(data).hexdigest()), "wb") as f:
            f.write(data)
    with open(os.path.join(path, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    mdesc = {"mediaType": mf.MEDIA_TYPE_OCI_MANIFEST, "digest": mf.manifest_digest(manifest), "size": len(manifest),
             "annotations": {"org.opencontainers.image.ref.name": tag}}
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [mdesc]}, f)
    return {"manifest": manifest, "digest": mf.manifest_digest(manifest), "config": config, "cdesc": cdesc,
            "layers": [b for b, _ in layers], "ldescs": ldescs, "path": path, "tag": tag}


class RegistryProc:
    """docker-registry serve on 127.0.0.1:<free port>, storage in *workdir*."""

    def __init__(self, workdir: str, *, tls: tuple[str, str] | None = None, auth: dict | None = None):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        cfg = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": os.path.join(workdir, "data")},
                        "delete": {"enabled": True}},
            "http": {"addr": self.addr, "secret": "kpod-test-secret"},
        }
        if tls:
            cfg["http"]["tls"] = {"certificate": tls[0], "key": tls[1]}
        if auth:
            cfg["auth"] = auth
        self.config = os.path.join(workdir, "config.yml")
        with open(self.config, "w") as f:
            json.dump(cfg, f)  # JSON is YAML
        self.log = open(os.path.join(workdir, "registry.log"), "wb")
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", self.config], stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env={"PATH": os.environ.get("PATH", "/usr/bin")})
        try:
            deadline = time.monotonic() + 15
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(f"docker-registry exited: {self.read_log()}")
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"docker-registry did not listen: {self.read_log()}")
                    time.sleep(0.05)
        except BaseException:
            self.stop()
            raise

    def read_log(self) -> str:
        self.log.flush()
        with open(self.log.name, "rb") as f:
            return f.read().decode("utf-8", "replace")[-2000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


@contextlib.contextmanager
def registry(workdir, **kw):
    r = RegistryProc(workdir, **kw)
    try:
        yield r
    finally:
        r.stop()


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def http_server(handler_cls):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(10)


def skopeo(*args, env=None, timeout=120):
    return run([SKOPEO, *args], env={**os.environ, **(env or {})}, timeout=timeout)


def push_layout(layout: dict, dest: str, *extra, env=None):
    skopeo("copy", "--quiet", "--dest-tls-verify=false", *extra, f"oci:{layout['path']}:{layout['tag']}",
           f"docker://{dest}", env=env)


def ctx_for(tmp_path, **kw) -> SystemContext:
    """A context isolated from the host's files: empty registries.conf and registries.d,
    an auth file in tmp."""
    conf = tmp_path / "registries.conf"
    if not conf.exists():
        conf.write_text(kw.pop("registries_conf_text", ""))
    else:
        kw.pop("registries_conf_text", None)
    regd = kw.pop("registries_d", None) or str(tmp_path / "registries.d")
    os.makedirs(regd, exist_ok=True)
    kw.setdefault("authfile", str(tmp_path / "auth.json"))
    kw.setdefault("timeout", 10.0)
    ctx = SystemContext(registries_conf=str(conf), **kw)
    ctx.registries_d = regd
    return ctx


def fetch_verified(src, desc) -> bytes:
    stream, size = src.get_blob(desc.digest, desc.size, desc.media_type)
    try:
        reader = DigestReader(stream, desc.digest, desc.size)
        data = reader.read()
        reader.verify()
    finally:
        stream.close()
    return data


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("registry-it")


@pytest.fixture(scope="module")
def layout(work):
    return write_oci_layout(str(work / "layout"), "v1")


@pytest.fixture(scope="module")
def plain(work, layout):
    """A plain-HTTP registry holding test/busybox:v1."""
    with registry(str(work / "plain")) as r:
        push_layout(layout, f"{r.addr}/test/busybox:v1")
        yield r


# ------------------------------------------------------------------------------------------
# pull and push over plain HTTP


def test_pull_manifest_and_blobs_verified(plain, layout, tmp_path):
    ctx = ctx_for(tmp_path, tls_verify=False)
    ref = T.parse_reference(f"//{plain.addr}/test/busybox:v1")
    with ref.new_source(ctx) as src:
        raw, mt = src.get_manifest()
        assert raw == layout["manifest"]
        assert mt == mf.MEDIA_TYPE_OCI_MANIFEST
        m = mf.parse_manifest(raw, mt)
        assert fetch_verified(src, m.config) == layout["config"]
        assert fetch_verified(src, m.layers[0]) == layout["layers"][0]
        assert src.has_blob(m.layers[0].digest)
        assert not src.has_blob("sha256:" + "0" * 64)


def test_pull_by_digest(plain, layout, tmp_path):
    ctx = ctx_for(tmp_path, tls_verify=False)
    ref = T.parse_reference(f"//{plain.addr}/test/busybox@{layout['digest']}")
    with ref.new_source(ctx) as src:
        raw, _ = src.get_manifest()
        assert raw == layout["manifest"]
        # an instance by digest goes through the same verification
        raw2, _ = src.get_manifest(layout["digest"])
        assert raw2 == raw


def test_manifest_unknown_is_clear(plain, tmp_path):
    ctx = ctx_for(tmp_path, tls_verify=False)
    with T.parse_reference(f"//{plain.addr}/test/busybox:nope").new_source(ctx) as src:
        with pytest.raises(ManifestUnknown) as ei:
            src.get_manifest()
    msg = str(ei.value)
    assert "manifest unknown" in msg and "nope" in msg and f"{plain.addr}/test/busybox" in msg
    assert isinstance(ei.value, NotFound)
    with T.parse_reference(f"//{plain.addr}/test/nosuchrepo:v1").new_source(ctx) as src:
        with pytest.raises(ManifestUnknown):
            src.get_manifest()


def _push_image(dest, layout):
    for blob, desc in zip(layout["layers"], layout["ldescs"]):
        if dest.reuse_blob(desc.digest, desc.size, desc.media_type) is None:
            import io

            assert dest.put_blob(io.BytesIO(blob), desc.digest, desc.size, desc.media_type) == (desc.digest, desc.size)
    import io

    if not dest.has_blob(layout["cdesc"].digest):
        dest.put_blob(io.BytesIO(layout["config"]), layout["cdesc"].digest, layout["cdesc"].size,
                      layout["cdesc"].media_type, is_config=True)
    dest.put_manifest(layout["manifest"], mf.MEDIA_TYPE_OCI_MANIFEST)
    dest.commit()


def test_push_then_read_back_with_skopeo(plain, layout, tmp_path):
    ctx = ctx_for(tmp_path, tls_verify=False)
    ref = T.parse_reference(f"//{plain.addr}/pushed/busybox:v2")
    with ref.new_destination(ctx) as dest:
        _push_image(dest, layout)
        assert dest.manifest_digest == layout["digest"]
    out = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{plain.addr}/pushed/busybox:v2").stdout
    assert out == layout["manifest"]
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{plain.addr}/pushed/busybox:v2").stdout)
    assert info["Digest"] == layout["digest"]
    assert info["Architecture"] == "amd64"


def test_chunked_upload_and_unknown_digest(plain, tmp_path):
    import io

    ctx = ctx_for(tmp_path, tls_verify=False)
    ref = T.parse_reference(f"//{plain.addr}/chunks/blob:v1")
    data = os.urandom(700 * 1024 + 13)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with ref.new_destination(ctx) as dest:
        dest.monolithic_max = 0
        dest.chunk_size = 256 * 1024
        assert dest.put_blob(io.BytesIO(data), digest, len(data), "application/octet-stream") == (digest, len(data))
        assert dest.client.stats["chunks"] == 3
        # digest unknown: computed while streaming
        data2 = os.urandom(300 * 1024)
        d2, n2 = dest.put_blob(io.BytesIO(data2), None, None, "application/octet-stream")
        assert (d2, n2) == ("sha256:" + hashlib.sha256(data2).hexdigest(), len(data2))
        # a stream that does not match its announced digest is refused
        with pytest.raises(DigestMismatch):
            dest.put_blob(io.BytesIO(b"x" * 1000), digest, 1000, None)
        # an empty blob
        empty = "sha256:" + hashlib.sha256(b"").hexdigest()
        assert dest.put_blob(io.BytesIO(b""), empty, 0, None) == (empty, 0)
        assert dest.has_blob(d2)
    client = RegistryClient(plain.addr, insecure=True)
    try:
        s = client.get_blob("chunks/blob", digest)
        assert s.read() == data
        s.close()
    finally:
        client.close()


def test_cross_repo_mount(plain, layout, tmp_path):
    ctx = ctx_for(tmp_path, tls_verify=False)
    layer = layout["ldescs"][0]
    with T.parse_reference(f"//{plain.addr}/test/busybox:v1").new_source(ctx) as src:
        stream, _ = src.get_blob(layer.digest)  # records where the blob lives
        stream.close()
    with T.parse_reference(f"//{plain.addr}/mounted/busybox:v1").new_destination(ctx) as dest:
        assert not dest.has_blob(layer.digest)
        got = dest.reuse_blob(layer.digest, layer.size, layer.media_type)
        assert got == (layer.digest, layer.size)
        assert dest.has_blob(layer.digest)
        # no source known: nothing to reuse
        assert dest.reuse_blob("sha256:" + "1" * 64, 10, None) is None


def test_list_tags_with_pagination(plain, layout, tmp_path):
    ctx = ctx_for(tmp_path, tls_verify=False)
    for tag in ("a", "b", "c"):
        with T.parse_reference(f"//{plain.addr}/tags/busybox:{tag}").new_destination(ctx) as dest:
            _push_image(dest, layout)
    assert sorted(list_tags(f"docker://{plain.addr}/tags/busybox", ctx, page_size=1)) == ["a", "b", "c"]
    assert sorted(list_tags(T.parse_reference(f"//{plain.addr}/tags/busybox"), ctx)) == ["a", "b", "c"]


def test_tag_list_follows_link_pages(tmp_path):
    # docker-registry 2.8 answers tags in one page; a small server paginates like others do
    pages = {"": (["a", "b"], "/v2/r/tags/list?n=2&last=b"), "b": (["c", "d"], "/v2/r/tags/list?n=2&last=d"),
             "d": (["e"], None)}

    class Pager(_QuietHandler):
        def do_GET(self):
            u = urlsplit(self.path)
            if u.path == "/v2/":
                body, link = b"{}", None
            else:
                last = parse_qs(u.query).get("last", [""])[0]
                tags, link = pages[last]
                body = json.dumps({"name": "r", "tags": tags}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if link:
                self.send_header("Link", f'<{link}>; rel="next"')
            self.end_headers()
            self.wfile.write(body)

    with http_server(Pager) as srv:
        addr = f"127.0.0.1:{srv.server_address[1]}"
        assert list_tags(f"docker://{addr}/r", ctx_for(tmp_path, tls_verify=False), page_size=2) == \
            ["a", "b", "c", "d", "e"]


def test_delete(plain, layout, tmp_path):
    ctx = ctx_for(tmp_path, tls_verify=False)
    ref = T.parse_reference(f"//{plain.addr}/todelete/busybox:v1")
    with ref.new_destination(ctx) as dest:
        _push_image(dest, layout)
    ref.delete(ctx)
    with ref.new_source(ctx) as src, pytest.raises(ManifestUnknown):
        src.get_manifest()


def test_plain_http_needs_insecure(plain, tmp_path):
    # secure by default: HTTPS only, so a plain-HTTP registry is a clear TLS error
    ctx = ctx_for(tmp_path)
    with T.parse_reference(f"//{plain.addr}/test/busybox:v1").new_source(ctx) as src:
        with pytest.raises(RegistryUnreachable) as ei:
            src.get_manifest()
    assert "pinging container registry" in str(ei.value) and "https://" in str(ei.value)
    # registries.conf marks it insecure: HTTP is allowed
    (tmp_path / "insecure").mkdir()
    ctx = ctx_for(tmp_path / "insecure",
                  registries_conf_text=f'[[registry]]\nlocation = "{plain.addr}"\ninsecure = true\n')
    with T.parse_reference(f"//{plain.addr}/test/busybox:v1").new_source(ctx) as src:
        assert src.get_manifest()[0]


def test_mirror_then_primary(plain, layout, tmp_path):
    dead = free_port()
    conf = (
        f'[[registry]]\nprefix = "127.0.0.1:{dead}/upstream"\nlocation = "127.0.0.1:{dead}/upstream"\n'
        f'[[registry.mirror]]\nlocation = "{plain.addr}/test"\ninsecure = true\n'
    )
    ctx = ctx_for(tmp_path, registries_conf_text=conf)
    with T.parse_reference(f"//127.0.0.1:{dead}/upstream/busybox:v1").new_source(ctx) as src:
        raw, _ = src.get_manifest()
        assert raw == layout["manifest"]
        assert str(src.physical_reference) == f"{plain.addr}/test/busybox:v1"
        m = mf.parse_manifest(raw)
        assert fetch_verified(src, m.config) == layout["config"]
    # not on the mirror: the primary is tried and both failures are reported
    with T.parse_reference(f"//127.0.0.1:{dead}/upstream/busybox:missing").new_source(ctx) as src:
        with pytest.raises(RegistryUnreachable) as ei:
            src.get_manifest()
    assert "connection refused" in str(ei.value) and "mirrors also failed" in str(ei.value)


def test_blocked_registry(plain, tmp_path):
    ctx = ctx_for(tmp_path, registries_conf_text=f'[[registry]]\nlocation = "{plain.addr}"\nblocked = true\n')
    with pytest.raises(PolicyDenied, match="blocked"):
        T.parse_reference(f"//{plain.addr}/test/busybox:v1").new_source(ctx)
    with pytest.raises(PolicyDenied, match="blocked"):
        T.parse_reference(f"//{plain.addr}/test/busybox:v1").new_destination(ctx)


# ------------------------------------------------------------------------------------------
# network failures and lying servers


def test_registry_down_connection_refused(tmp_path):
    port = free_port()
    ctx = ctx_for(tmp_path, tls_verify=False, timeout=5)
    t0 = time.monotonic()
    with T.parse_reference(f"//127.0.0.1:{port}/x/y:v1").new_source(ctx) as src:
        with pytest.raises(RegistryUnreachable) as ei:
            src.get_manifest()
    assert "connection refused" in str(ei.value)
    assert f"127.0.0.1:{port}" in str(ei.value)
    assert time.monotonic() - t0 < 5


def test_hanging_server_times_out(tmp_path):
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    port = lsock.getsockname()[1]
    held, stop = [], threading.Event()

    def accept():
        lsock.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = lsock.accept()
                held.append(c)  # accept, never answer
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        ctx = ctx_for(tmp_path, timeout=1.0)  # secure: one attempt (HTTPS)
        t0 = time.monotonic()
        with T.parse_reference(f"//127.0.0.1:{port}/x/y:v1").new_source(ctx) as src:
            with pytest.raises(RegistryUnreachable) as ei:
                src.get_manifest()
        assert time.monotonic() - t0 < 4
        assert "timed out" in str(ei.value)
        ctx = ctx_for(tmp_path, timeout=1.0, tls_verify=False)  # HTTPS then HTTP
        t0 = time.monotonic()
        with T.parse_reference(f"//127.0.0.1:{port}/x/y:v1").new_source(ctx) as src:
            with pytest.raises(RegistryUnreachable, match="timed out"):
                src.get_manifest()
        assert time.monotonic() - t0 < 6
    finally:
        stop.set()
        t.join(5)
        for c in held:
            c.close()
        lsock.close()


def test_wrong_bytes_are_caught(layout, tmp_path):
    good = layout["manifest"]
    good_digest = layout["digest"]
    blob_digest = layout["cdesc"].digest
    evil = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":' \
           b'{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:' + b"0" * 64 + b'","size":1},"layers":[]}'

    class Liar(_QuietHandler):
        def _send(self, code, body, ctype="application/octet-stream", head=False):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def do_GET(self):
            p = self.path
            if p == "/v2/":
                return self._send(200, b"{}", "application/json")
            if p == "/v2/lie/image/manifests/v1":
                return self._send(200, good, mf.MEDIA_TYPE_OCI_MANIFEST)
            if p == f"/v2/lie/image/manifests/{good_digest}":
                return self._send(200, evil, mf.MEDIA_TYPE_OCI_MANIFEST)
            if p.startswith("/v2/lie/image/blobs/"):
                data = bytearray(layout["config"])
                data[10] ^= 0x01  # same size, wrong content
                return self._send(200, bytes(data))
            return self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}',
                              "application/json")

    with http_server(Liar) as srv:
        addr = f"127.0.0.1:{srv.server_address[1]}"
        ctx = ctx_for(tmp_path, tls_verify=False)
        with T.parse_reference(f"//{addr}/lie/image:v1").new_source(ctx) as src:
            raw, _ = src.get_manifest()
            assert raw == good
            stream, _ = src.get_blob(blob_digest, layout["cdesc"].size)
            reader = DigestReader(stream, blob_digest, layout["cdesc"].size)
            with pytest.raises(DigestMismatch, match="digest mismatch"):
                reader.verify()
            stream.close()
        with T.parse_reference(f"//{addr}/lie/image@{good_digest}").new_source(ctx) as src:
            with pytest.raises(DigestMismatch, match="manifest digest mismatch"):
                src.get_manifest()


# ------------------------------------------------------------------------------------------
# TLS


def make_tls(d: str) -> dict:
    os.makedirs(d, exist_ok=True)
    p = lambda n: os.path.join(d, n)  # noqa: E731
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run([OPENSSL, "req", "-x509", *ec, "-keyout", p("ca.key"), "-out", p("ca.crt"), "-days", "2",
         "-subj", "/CN=kpod test CA"])
    run([OPENSSL, "req", *ec, "-keyout", p("server.key"), "-out", p("server.csr"), "-subj", "/CN=127.0.0.1"])
    with open(p("ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    run([OPENSSL, "x509", "-req", "-in", p("server.csr"), "-CA", p("ca.crt"), "-CAkey", p("ca.key"),
         "-CAcreateserial", "-out", p("server.crt"), "-days", "2", "-extfile", p("ext.cnf")])
    certs = os.path.join(d, "certs.d")
    os.makedirs(certs)
    shutil.copy(p("ca.crt"), os.path.join(certs, "ca.crt"))
    return {"cert": p("server.crt"), "key": p("server.key"), "certs_d": certs, "ca": p("ca.crt")}


def test_tls_with_ca_without_ca_and_unverified(work, layout, tmp_path):
    tls = make_tls(str(work / "tls"))
    with registry(str(work / "tls-reg"), tls=(tls["cert"], tls["key"])) as r:
        push_layout(layout, f"{r.addr}/tls/busybox:v1")
        ref = T.parse_reference(f"//{r.addr}/tls/busybox:v1")
        # the CA from a certs.d directory
        with ref.new_source(ctx_for(tmp_path, cert_dir=tls["certs_d"])) as src:
            assert src.get_manifest()[0] == layout["manifest"]
            assert src._chosen[1].scheme == "https"
        # no CA: a clear certificate error
        with ref.new_source(ctx_for(tmp_path)) as src:
            with pytest.raises(RegistryUnreachable) as ei:
                src.get_manifest()
        msg = str(ei.value)
        assert "x509" in msg and "certificate" in msg and "--tls-verify=false" in msg
        # verification off: works, still over HTTPS
        with ref.new_source(ctx_for(tmp_path, tls_verify=False)) as src:
            assert src.get_manifest()[0] == layout["manifest"]
            assert src._chosen[1].scheme == "https"
        # push over verified TLS
        with T.parse_reference(f"//{r.addr}/tls/pushed:v1").new_destination(ctx_for(tmp_path, cert_dir=tls["certs_d"])) as dest:
            _push_image(dest, layout)


# ------------------------------------------------------------------------------------------
# basic auth


def bcrypt_hash(password: str) -> str:
    try:
        import bcrypt  # type: ignore

        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
    except ImportError:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # Python < 3.13, libxcrypt has bcrypt

        h = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    if not h or not h.startswith("$2"):
        pytest.skip("no bcrypt implementation available for htpasswd")
    return h


def test_basic_auth(work, layout, tmp_path):
    htpasswd = work / "htpasswd"
    htpasswd.write_text(f"alice:{bcrypt_hash('s3cret')}\n")
    auth = {"htpasswd": {"realm": "kpod-test", "path": str(htpasswd)}}
    with registry(str(work / "basic-reg"), auth=auth) as r:
        push_layout(layout, f"{r.addr}/private/busybox:v1", "--dest-creds", "alice:s3cret")
        ref = T.parse_reference(f"//{r.addr}/private/busybox:v1")
        # --creds
        with ref.new_source(ctx_for(tmp_path, tls_verify=False, creds="alice:s3cret")) as src:
            raw, _ = src.get_manifest()
            assert raw == layout["manifest"]
            assert fetch_verified(src, layout["cdesc"]) == layout["config"]
        # no credentials
        with ref.new_source(ctx_for(tmp_path, tls_verify=False)) as src:
            with pytest.raises(AuthenticationError) as ei:
                src.get_manifest()
        assert "authentication required" in str(ei.value) and "kpod login" in str(ei.value)
        # wrong password
        with ref.new_source(ctx_for(tmp_path, tls_verify=False, creds="alice:wrong")) as src:
            with pytest.raises(AuthenticationError) as ei:
                src.get_manifest()
        assert "unauthorized" in str(ei.value)
        # login: refused, then stored in the auth file and used
        authfile = str(tmp_path / "auth.json")
        ctx = ctx_for(tmp_path, tls_verify=False, authfile=authfile)
        with pytest.raises(AuthenticationError, match="invalid username/password"):
            login(r.addr, "alice", "nope", ctx)
        assert not os.path.exists(authfile)
        assert login(r.addr, "alice", "s3cret", ctx) == authfile
        assert os.stat(authfile).st_mode & 0o777 == 0o600
        with ref.new_source(ctx) as src:
            assert src.get_manifest()[0] == layout["manifest"]
        # push with the stored credentials
        with T.parse_reference(f"//{r.addr}/private/pushed:v1").new_destination(ctx) as dest:
            _push_image(dest, layout)
        authmod.remove_credentials(r.addr, authfile)
        with ref.new_source(ctx) as src, pytest.raises(AuthenticationError):
            src.get_manifest()


# ------------------------------------------------------------------------------------------
# token auth


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class TokenIssuer:
    """Issues RS256 JWTs the registry trusts (x5c header), signed with openssl."""

    SERVICE = "kpod-test-registry"
    ISSUER = "kpod-test-issuer"

    def __init__(self, d: str, users: dict[str, str]):
        self.d = d
        os.makedirs(d, exist_ok=True)
        self.key = os.path.join(d, "token.key")
        self.cert = os.path.join(d, "token.crt")
        run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key, "-out", self.cert,
             "-days", "2", "-subj", "/CN=kpod token issuer"])
        der = run([OPENSSL, "x509", "-in", self.cert, "-outform", "DER"]).stdout
        self.x5c = base64.b64encode(der).decode()
        self.users = users
        self.requests: list[dict] = []
        self.pull_only_next = 0  # grant only pull for the next N token requests

    def sign(self, claims: dict) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing_input = (b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())).encode()
        sig = run([OPENSSL, "dgst", "-sha256", "-sign", self.key], input=signing_input).stdout
        return signing_input.decode() + "." + b64url(sig)

    def handler(self):
        issuer = self

        class H(_QuietHandler):
            def do_GET(self):
                u = urlsplit(self.path)
                q = parse_qs(u.query)
                user = None
                hdr = self.headers.get("Authorization", "")
                if hdr.startswith("Basic "):
                    name, _, pw = base64.b64decode(hdr[6:]).decode().partition(":")
                    if issuer.users.get(name) != pw:
                        body = b'{"details":"invalid username or password"}'
                        self.send_response(401)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                        return
                    user = name
                scopes = q.get("scope", [])
                issuer.requests.append({"scopes": scopes, "user": user, "service": q.get("service")})
                access = []
                for s in scopes:
                    typ, _, rest = s.partition(":")
                    name, _, actions = rest.rpartition(":")
                    acts = actions.split(",") if user else [a for a in actions.split(",") if a == "pull" and name.startswith("public/")]
                    if issuer.pull_only_next > 0:
                        acts = [a for a in acts if a == "pull"]
                    access.append({"type": typ, "name": name, "actions": acts})
                if issuer.pull_only_next > 0:
                    issuer.pull_only_next -= 1
                now = int(time.time())
                token = issuer.sign({"iss": issuer.ISSUER, "sub": user or "", "aud": issuer.SERVICE, "exp": now + 300,
                                     "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access})
                body = json.dumps({"token": token, "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return H


def test_token_auth(work, layout, tmp_path):
    issuer = TokenIssuer(str(work / "token"), {"bob": "hunter2"})
    with http_server(issuer.handler()) as srv:
        realm = f"http://127.0.0.1:{srv.server_address[1]}/token"
        auth = {"token": {"realm": realm, "service": TokenIssuer.SERVICE, "issuer": TokenIssuer.ISSUER,
                          "rootcertbundle": issuer.cert}}
        with registry(str(work / "token-reg"), auth=auth) as r:
            push_layout(layout, f"{r.addr}/team/busybox:v1", "--dest-creds", "bob:hunter2")
            push_layout(layout, f"{r.addr}/public/busybox:v1", "--dest-creds", "bob:hunter2")
            ctx = ctx_for(tmp_path, tls_verify=False, creds="bob:hunter2")
            ref = T.parse_reference(f"//{r.addr}/team/busybox:v1")
            issuer.requests.clear()
            with ref.new_source(ctx) as src:
                raw, _ = src.get_manifest()
                m = mf.parse_manifest(raw)
                assert fetch_verified(src, m.config) == layout["config"]
                assert fetch_verified(src, m.layers[0]) == layout["layers"][0]
                client = src._chosen[1]
                # one token for the pull scope, reused for every request
                assert client.stats["token_requests"] == 1
            assert issuer.requests[0]["scopes"] == ["repository:team/busybox:pull"]
            assert issuer.requests[0]["user"] == "bob"
            # anonymous pull of a public repository (the token server grants pull)
            with T.parse_reference(f"//{r.addr}/public/busybox:v1").new_source(ctx_for(tmp_path, tls_verify=False)) as src:
                assert src.get_manifest()[0] == layout["manifest"]
            # anonymous pull of a private repository: the registry refuses
            with ref.new_source(ctx_for(tmp_path, tls_verify=False)) as src:
                with pytest.raises(AuthenticationError, match="unauthorized|authentication required"):
                    src.get_manifest()
            # wrong password: the token server says so
            with ref.new_source(ctx_for(tmp_path, tls_verify=False, creds="bob:nope")) as src:
                with pytest.raises(AuthenticationError, match="unable to retrieve auth token: invalid username/password"):
                    src.get_manifest()
            # push: the first token grants only pull -> 401 insufficient_scope -> a new token
            with T.parse_reference(f"//{r.addr}/team/pushed:v1").new_destination(ctx) as dest:
                issuer.pull_only_next = 1
                issuer.requests.clear()
                _push_image(dest, layout)
                assert dest.client.stats["token_requests"] >= 2
                assert any("push" in s for req in issuer.requests[1:] for s in req["scopes"])
            out = skopeo("inspect", "--raw", "--tls-verify=false", "--creds", "bob:hunter2",
                         f"docker://{r.addr}/team/pushed:v1").stdout
            assert out == layout["manifest"]
            # login checks the credentials through the token server
            assert login(r.addr, "bob", "hunter2", ctx, store=False) is None
            with pytest.raises(AuthenticationError, match="invalid username/password"):
                login(r.addr, "bob", "bad", ctx, store=False)


# ------------------------------------------------------------------------------------------
# signatures


def make_gpg_key(home: str, name: str, pub_dir, passphrase: str = "") -> dict:
    """A new ed25519 signing key in the GNUPGHOME *home* (created), its public key exported
    to ``<pub_dir>/<name>.gpg``. Stop its agent with :func:`kill_gpg_agent`."""
    os.makedirs(home, mode=0o700, exist_ok=True)
    env = {**os.environ, "GNUPGHOME": home}
    run([GPG, "--batch", "--pinentry-mode", "loopback", "--passphrase", passphrase, "--quick-gen-key",
         f"kpod {name} <{name}@example.com>", "ed25519", "sign", "never"], env=env)
    out = run([GPG, "--batch", "--with-colons", "--list-secret-keys"], env=env).stdout.decode()
    fpr = next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))
    pub = os.path.join(str(pub_dir), f"{name}.gpg")
    with open(pub, "wb") as f:
        f.write(run([GPG, "--batch", "--export", "--armor", fpr], env=env).stdout)
    return {"home": home, "fpr": fpr, "pub": pub}


def kill_gpg_agent(home: str) -> None:
    subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def gpg_keys(work):
    if GPG is None:
        pytest.skip("gpg is needed")
    homes = []
    keys = {}
    try:
        for name in ("trusted", "other"):
            home = str(work / f"gnupg-{name}")
            homes.append(home)
            keys[name] = make_gpg_key(home, name, work)
        yield keys
    finally:
        for home in homes:
            kill_gpg_agent(home)


def write_policy(path, scope, reqs):
    doc = {"default": [{"type": "reject"}], "transports": {"docker": {scope: reqs}}}
    with open(path, "w") as f:
        json.dump(doc, f)
    return Policy.load(str(path))


def test_gpg_signed_images(plain, gpg_keys, work, tmp_path):
    sigdir = work / "lookaside"
    regd = work / "registries.d-gpg"
    regd.mkdir()
    (regd / "default.yaml").write_text(f"default-docker:\n  lookaside: file://{sigdir}\n")
    t, o = gpg_keys["trusted"], gpg_keys["other"]
    a = plain.addr
    sk = ("--registries.d", str(regd))
    images = {name: write_oci_layout(str(tmp_path / f"l-{name}"), "v1", extra_file=name.encode())
              for name in ("signed", "other", "unsigned", "wrongid")}
    push_layout(images["signed"], f"{a}/sig/busybox:signed", *sk, "--sign-by", t["fpr"], env={"GNUPGHOME": t["home"]})
    push_layout(images["other"], f"{a}/sig/busybox:other", *sk, "--sign-by", o["fpr"], env={"GNUPGHOME": o["home"]})
    push_layout(images["unsigned"], f"{a}/sig/busybox:unsigned", *sk)
    push_layout(images["wrongid"], f"{a}/sig/busybox:wrongid", *sk, "--sign-by", t["fpr"], "--sign-identity",
                f"{a}/elsewhere/busybox:signed", env={"GNUPGHOME": t["home"]})
    ctx = ctx_for(tmp_path, tls_verify=False, registries_d=str(regd))
    policy = write_policy(tmp_path / "policy.json", f"{a}/sig", [
        {"type": "signedBy", "keyType": "GPGKeys", "keyPath": t["pub"]}])

    def verdict(tag, pol=policy):
        with T.parse_reference(f"//{a}/sig/busybox:{tag}").new_source(ctx) as src:
            return check_image_source(src, policy=pol)

    with T.parse_reference(f"//{a}/sig/busybox:signed").new_source(ctx) as src:
        sigs = src.get_signatures()
    assert len(sigs) == 1
    assert (sigdir / "sig" / f"busybox@sha256={images['signed']['digest'][7:]}" / "signature-1").exists()
    assert verdict("signed") == f'transports.docker["{a}/sig"]'
    with pytest.raises(PolicyDenied, match="no signature exists"):
        verdict("unsigned")
    with pytest.raises(PolicyDenied, match="not one of the policy's keys"):
        verdict("other")
    with pytest.raises(PolicyDenied, match="does not match"):
        verdict("wrongid")
    # the same signature is accepted with an identity rule that expects it
    p2 = write_policy(tmp_path / "policy2.json", f"{a}/sig/busybox", [
        {"type": "signedBy", "keyType": "GPGKeys", "keyPath": t["pub"],
         "signedIdentity": {"type": "exactReference", "dockerReference": f"{a}/elsewhere/busybox:signed"}}])
    assert verdict("wrongid", p2)
    # keyData instead of keyPath; both keys listed: the other key's image passes too
    with open(t["pub"], "rb") as f1, open(o["pub"], "rb") as f2:
        p3 = write_policy(tmp_path / "policy3.json", f"{a}/sig/busybox:other", [
            {"type": "signedBy", "keyType": "GPGKeys", "keyPaths": [t["pub"], o["pub"]]}])
        assert verdict("other", p3)
        p4 = write_policy(tmp_path / "policy4.json", f"{a}/sig", [
            {"type": "signedBy", "keyType": "GPGKeys", "keyData": base64.b64encode(f1.read()).decode()}])
        assert verdict("signed", p4)
        assert f2
    # a signature for another manifest (signed image's signature on the unsigned image)
    ref = T.parse_reference(f"//{a}/sig/busybox:unsigned")
    with pytest.raises(PolicyDenied, match="the signature is for manifest"):
        policy.check(ref, images["unsigned"]["manifest"], lambda: sigs)
    # the default scope rejects other repositories
    with pytest.raises(PolicyDenied, match="rejected by policy"):
        with T.parse_reference(f"//{a}/test/busybox:v1").new_source(ctx) as src:
            check_image_source(src, policy=policy)
    # writing signatures through the destination, read back through the source
    staging = tmp_path / "staging"
    regd2 = tmp_path / "regd2"
    regd2.mkdir()
    (regd2 / "x.yaml").write_text(f"docker:\n  {a}/copied:\n    lookaside: file://{staging}\n")
    ctx2 = ctx_for(tmp_path, tls_verify=False, registries_d=str(regd2))
    img = images["signed"]
    with T.parse_reference(f"//{a}/copied/busybox:v1").new_destination(ctx2) as dest:
        _push_image(dest, img)
        dest.put_signatures(sigs)
    with T.parse_reference(f"//{a}/copied/busybox:v1").new_source(ctx2) as src:
        assert src.get_signatures() == sigs
    assert (staging / "copied" / f"busybox@sha256={img['digest'][7:]}" / "signature-1").exists()
    # no lookaside configured: a clear error
    (tmp_path / "empty-regd").mkdir()
    with T.parse_reference(f"//{a}/nolookaside/busybox:v1").new_destination(
            ctx_for(tmp_path, tls_verify=False, registries_d=str(tmp_path / "empty-regd"))) as dest:
        _push_image(dest, img)
        with pytest.raises(TransportError, match="no lookaside"):
            dest.put_signatures(sigs)


# ------------------------------------------------------------------------------------------
# sigstore


def make_sigstore_key(d: str, kind: str = "ec") -> tuple[str, str]:
    """A key pair made by openssl: (private PEM, public PEM)."""
    os.makedirs(d, exist_ok=True)
    priv, pub = os.path.join(d, f"{kind}.key"), os.path.join(d, f"{kind}.pub")
    if kind == "ec":
        run([OPENSSL, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", priv])
    else:
        run([OPENSSL, "genpkey", "-algorithm", "ED25519", "-out", priv])
    run([OPENSSL, "pkey", "-in", priv, "-pubout", "-out", pub])
    return priv, pub


def sigstore_sign(priv: str, payload: bytes) -> str:
    """cosign's signature: base64 of an ECDSA-SHA256 (ASN.1) or Ed25519 signature over the payload."""
    with open(priv, "rb") as f:
        is_ed = b"BEGIN PRIVATE KEY" in f.read() and "ed25519" in priv
    if is_ed:
        import tempfile

        with tempfile.NamedTemporaryFile() as tf:
            tf.write(payload)
            tf.flush()
            sig = run([OPENSSL, "pkeyutl", "-sign", "-inkey", priv, "-rawin", "-in", tf.name]).stdout
    else:
        sig = run([OPENSSL, "dgst", "-sha256", "-sign", priv], input=payload).stdout
    return base64.b64encode(sig).decode()


def attach_sigstore_signatures(addr: str, repo: str, manifest_digest: str, payloads_and_sigs) -> None:
    """Store signatures the way cosign (and containers/image) do: an OCI manifest tagged
    sha256-<hex>.sig in the same repository, one simplesigning layer per signature with the
    signature in the dev.cosignproject.cosign/signature annotation."""
    import io

    client = RegistryClient(addr, insecure=True)
    try:
        layers = []
        for payload, sig in payloads_and_sigs:
            d = "sha256:" + hashlib.sha256(payload).hexdigest()
            client.upload_blob(repo, io.BytesIO(payload), d, len(payload))
            layers.append({"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": d,
                           "size": len(payload), "annotations": {"dev.cosignproject.cosign/signature": sig}})
        config = json.dumps({"architecture": "", "os": "", "config": {}, "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        cd = "sha256:" + hashlib.sha256(config).hexdigest()
        client.upload_blob(repo, io.BytesIO(config), cd, len(config))
        m = {"schemaVersion": 2, "mediaType": mf.MEDIA_TYPE_OCI_MANIFEST,
             "config": {"mediaType": mf.MEDIA_TYPE_OCI_CONFIG, "digest": cd, "size": len(config)}, "layers": layers}
        client.put_manifest(repo, "sha256-" + manifest_digest[7:] + ".sig", json.dumps(m).encode(), mf.MEDIA_TYPE_OCI_MANIFEST)
    finally:
        client.close()


def sigstore_payload(docker_reference: str, digest: str) -> bytes:
    return json.dumps({"critical": {"identity": {"docker-reference": docker_reference},
                                    "image": {"docker-manifest-digest": digest},
                                    "type": "cosign container image signature"},
                       "optional": {"creator": "kpod tests"}}).encode()


def test_skopeo_sigstore_signing_state(plain, work, tmp_path):
    """Debian's skopeo 1.9.3 is built with sigstore signing disabled; the sigstore tests below
    build signatures by hand in cosign's format. This notices when that changes."""
    priv, _ = make_sigstore_key(str(tmp_path / "k"))
    layout = write_oci_layout(str(tmp_path / "l"), "v1", extra_file=b"probe\n")
    proc = subprocess.run([SKOPEO, "copy", "--quiet", "--dest-tls-verify=false", "--sign-by-sigstore-private-key",
                           priv, f"oci:{layout['path']}:v1", f"docker://{plain.addr}/probe/x:v1"],
                          capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode != 0  # either "sigstore disabled" or the key is not in cosign's encrypted format


def test_sigstore_signed_images(plain, work, tmp_path):
    ec_priv, ec_pub = make_sigstore_key(str(tmp_path / "keys"), "ec")
    ed_priv, ed_pub = make_sigstore_key(str(tmp_path / "keys"), "ed25519")
    _, other_pub = make_sigstore_key(str(tmp_path / "other"), "ec")
    regd = tmp_path / "registries.d-sigstore"
    regd.mkdir()
    (regd / "sigstore.yaml").write_text("default-docker:\n  use-sigstore-attachments: true\n")
    a = plain.addr
    signed = write_oci_layout(str(tmp_path / "l-signed"), "v1", extra_file=b"sigstore signed\n")
    unsigned = write_oci_layout(str(tmp_path / "l-unsigned"), "v1", extra_file=b"sigstore unsigned\n")
    edimg = write_oci_layout(str(tmp_path / "l-ed"), "v1", extra_file=b"sigstore ed25519\n")
    push_layout(signed, f"{a}/cosign/busybox:signed")
    push_layout(unsigned, f"{a}/cosign/busybox:unsigned")
    push_layout(edimg, f"{a}/cosign/busybox:ed")
    payload = sigstore_payload(f"{a}/cosign/busybox:signed", signed["digest"])
    attach_sigstore_signatures(a, "cosign/busybox", signed["digest"], [(payload, sigstore_sign(ec_priv, payload))])
    # cosign's own style: the identity is the repository only
    edpayload = sigstore_payload(f"{a}/cosign/busybox", edimg["digest"])
    attach_sigstore_signatures(a, "cosign/busybox", edimg["digest"], [(edpayload, sigstore_sign(ed_priv, edpayload))])

    ctx = ctx_for(tmp_path, tls_verify=False, registries_d=str(regd))
    policy = write_policy(tmp_path / "policy.json", f"{a}/cosign", [{"type": "sigstoreSigned", "keyPath": ec_pub}])
    with T.parse_reference(f"//{a}/cosign/busybox:signed").new_source(ctx) as src:
        sigs = src.get_sigstore_signatures()
        assert len(sigs) == 1
        assert sigs[0]["media_type"] == "application/vnd.dev.cosign.simplesigning.v1+json"
        assert sigs[0]["payload"] == payload
        assert check_image_source(src, policy=policy)
    with T.parse_reference(f"//{a}/cosign/busybox:unsigned").new_source(ctx) as src:
        assert src.get_sigstore_signatures() == []
        with pytest.raises(PolicyDenied, match="no signature exists"):
            check_image_source(src, policy=policy)
    other = write_policy(tmp_path / "other.json", f"{a}/cosign", [{"type": "sigstoreSigned", "keyPath": other_pub}])
    with T.parse_reference(f"//{a}/cosign/busybox:signed").new_source(ctx) as src:
        with pytest.raises(PolicyDenied, match="does not verify"):
            check_image_source(src, policy=other)
    # pulled under another tag: the signed identity (:signed) does not match exactly...
    push_layout(signed, f"{a}/cosign/busybox:retagged")
    with T.parse_reference(f"//{a}/cosign/busybox:retagged").new_source(ctx) as src:
        with pytest.raises(PolicyDenied, match="does not match"):
            check_image_source(src, policy=policy)
    # ...but matchRepository accepts it
    repo = write_policy(tmp_path / "repo.json", f"{a}/cosign", [
        {"type": "sigstoreSigned", "keyPath": ec_pub, "signedIdentity": {"type": "matchRepository"}}])
    with T.parse_reference(f"//{a}/cosign/busybox:retagged").new_source(ctx) as src:
        assert check_image_source(src, policy=repo)
    # Ed25519 key, cosign-style repository identity: matchRepository (keyData) accepts, the
    # default matchRepoDigestOrExact does not
    with open(ed_pub, "rb") as f:
        ed_data = base64.b64encode(f.read()).decode()
    edrepo = write_policy(tmp_path / "ed.json", f"{a}/cosign", [
        {"type": "sigstoreSigned", "keyData": ed_data, "signedIdentity": {"type": "matchRepository"}}])
    edexact = write_policy(tmp_path / "edx.json", f"{a}/cosign", [{"type": "sigstoreSigned", "keyData": ed_data}])
    with T.parse_reference(f"//{a}/cosign/busybox:ed").new_source(ctx) as src:
        assert check_image_source(src, policy=edrepo)
        with pytest.raises(PolicyDenied, match="does not match"):
            check_image_source(src, policy=edexact)
    # a tampered payload (same signature) is refused
    bad = payload.replace(b"kpod tests", b"kpod tests!")
    attach_sigstore_signatures(a, "cosign/busybox", unsigned["digest"], [(bad, sigstore_sign(ec_priv, payload))])
    with T.parse_reference(f"//{a}/cosign/busybox:unsigned").new_source(ctx) as src:
        with pytest.raises(PolicyDenied, match="does not verify"):
            check_image_source(src, policy=policy)
    # attachments off in registries.d: no signatures are looked for
    (tmp_path / "empty-regd").mkdir()
    with T.parse_reference(f"//{a}/cosign/busybox:signed").new_source(
            ctx_for(tmp_path, tls_verify=False, registries_d=str(tmp_path / "empty-regd"))) as src:
        assert src.get_sigstore_signatures() == []


def test_blob_redirect_drops_authorization(layout, tmp_path):
    seen: dict[str, list] = {"storage": [], "registry": []}
    data = layout["config"]
    digest = layout["cdesc"].digest

    class Storage(_QuietHandler):
        def do_GET(self):
            seen["storage"].append(dict(self.headers))
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    with http_server(Storage) as storage:
        storage_url = f"http://127.0.0.1:{storage.server_address[1]}/bucket/blob?sig=x"

        class Reg(_QuietHandler):
            def _reply(self, code, body=b"", headers=()):
                self.send_response(code)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                seen["registry"].append(dict(self.headers))
                if self.headers.get("Authorization") != "Basic " + base64.b64encode(b"u:p").decode():
                    return self._reply(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                                       [("WWW-Authenticate", 'Basic realm="fake"'), ("Content-Type", "application/json")])
                if self.path == f"/v2/r/blobs/{digest}":
                    return self._reply(307, b"", [("Location", storage_url)])
                return self._reply(404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}',
                                   [("Content-Type", "application/json")])

        with http_server(Reg) as reg:
            addr = f"127.0.0.1:{reg.server_address[1]}"
            client = RegistryClient(addr, insecure=True, credentials=authmod.Credentials("u", "p"))
            try:
                stream = client.get_blob("r", digest)
                reader = DigestReader(stream, digest, len(data))
                assert reader.read() == data
                reader.verify()
                stream.close()
                from libpod_core.registry.client import BlobUnknown

                with pytest.raises(BlobUnknown, match="blob unknown"):
                    client.get_blob("r", "sha256:" + "9" * 64)
            finally:
                client.close()
    assert seen["storage"] and all("Authorization" not in h for h in seen["storage"])
    assert any("Authorization" in h for h in seen["registry"])


# ------------------------------------------------------------------------------------------
# credential helpers (credHelpers / credsStore): a fake docker-credential-kpodtest first on PATH


@pytest.fixture
def cred_helper(tmp_path, monkeypatch):
    from tests.helpers_credhelpers import FakeHelper

    h = FakeHelper(tmp_path / "credhelper")
    monkeypatch.setenv("PATH", h.env_path)
    return h


@pytest.fixture
def basic_reg(work, layout, tmp_path):
    """An htpasswd-protected registry holding private/busybox:v1 (alice / s3cret)."""
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"alice:{bcrypt_hash('s3cret')}\n")
    auth = {"htpasswd": {"realm": "kpod-test", "path": str(htpasswd)}}
    with registry(str(tmp_path / "basic-reg"), auth=auth) as r:
        push_layout(layout, f"{r.addr}/private/busybox:v1", "--dest-creds", "alice:s3cret")
        yield r


def test_pull_with_credentials_only_the_helper_knows(basic_reg, cred_helper, layout, tmp_path):
    r = basic_reg
    from tests.helpers_credhelpers import NAME

    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"credHelpers": {r.addr: NAME}}))
    ref = T.parse_reference(f"//{r.addr}/private/busybox:v1")
    ctx = ctx_for(tmp_path, tls_verify=False, authfile=str(authfile))
    with ref.new_source(ctx) as src, pytest.raises(AuthenticationError):
        src.get_manifest()  # the helper has nothing yet: anonymous, refused
    cred_helper.put(r.addr, "alice", "s3cret")
    with ref.new_source(ctx) as src:
        assert src.get_manifest()[0] == layout["manifest"]
        assert fetch_verified(src, layout["cdesc"]) == layout["config"]
    assert f"get {r.addr}" in cred_helper.calls()
    # library login stores through the helper: the file keeps no secret
    cred_helper.put(r.addr, "alice", "stale")
    assert login(r.addr, "alice", "s3cret", ctx) == "credential helper: docker-credential-kpodtest"
    assert cred_helper.store()[r.addr] == ["alice", "s3cret"]
    assert "s3cret" not in authfile.read_text()


def _kpod_env(cred_helper, tmp_path):
    return {"PATH": cred_helper.env_path, "XDG_RUNTIME_DIR": str(tmp_path / "run")}


def test_kpod_login_pull_logout_through_helper(kpod, basic_reg, cred_helper, tmp_path):
    from conftest import assert_one_error_line
    from tests.helpers_credhelpers import NAME

    r = basic_reg
    env = _kpod_env(cred_helper, tmp_path)
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"credHelpers": {r.addr: NAME}}))
    af = ["--authfile", str(authfile)]
    img = f"{r.addr}/private/busybox:v1"
    assert_one_error_line(kpod("pull", "-q", "--tls-verify=false", *af, img, env=env, check=False), 125)
    # a refused login stores nothing
    proc = kpod("login", *af, "--tls-verify=false", "-u", "alice", "--password-stdin", r.addr,
                input="wrong\n", env=env, check=False)
    assert_one_error_line(proc, 125, "invalid username/password")
    assert cred_helper.store() == {}
    out = kpod("login", *af, "--tls-verify=false", "-u", "alice", "--password-stdin", r.addr,
               input="s3cret\n", env=env)
    assert "Login Succeeded" in out.stdout and "s3cret" not in out.stdout + out.stderr
    assert cred_helper.store() == {r.addr: ["alice", "s3cret"]}
    assert json.loads(authfile.read_text()) == {"credHelpers": {r.addr: NAME}}
    assert kpod("login", *af, "--get-login", r.addr, env=env).stdout.strip() == "alice"
    kpod("pull", "-q", "--tls-verify=false", *af, img, env=env)
    kpod("rmi", "-a", "-f", env=env)
    out = kpod("logout", *af, r.addr, env=env)
    assert f"Removed login credentials for {r.addr}" in out.stdout
    assert cred_helper.store() == {}
    assert_one_error_line(kpod("logout", *af, r.addr, env=env, check=False), 125, "not logged into")
    assert_one_error_line(kpod("login", *af, "--get-login", r.addr, env=env, check=False), 125, "not logged into")
    assert_one_error_line(kpod("pull", "-q", "--tls-verify=false", *af, img, env=env, check=False), 125)
    # logout --all erases every credHelpers registry and empties the file, as podman
    cred_helper.put(r.addr, "alice", "s3cret")
    kpod("logout", *af, "--all", env=env)
    assert cred_helper.store() == {}
    assert json.loads(authfile.read_text()) == {"auths": {}}


def test_kpod_pull_with_docker_config_credhelpers_and_credsstore(kpod, basic_reg, cred_helper, tmp_path):
    """No --authfile: credHelpers in ~/.docker/config.json, then credsStore as the default."""
    from tests.helpers_credhelpers import NAME

    r = basic_reg
    env = _kpod_env(cred_helper, tmp_path)
    docker = os.path.join(kpod.env["HOME"], ".docker", "config.json")
    os.makedirs(os.path.dirname(docker), exist_ok=True)
    cred_helper.put(r.addr, "alice", "s3cret")
    img = f"{r.addr}/private/busybox:v1"
    for cfg in ({"credHelpers": {r.addr: NAME}}, {"credsStore": NAME}):
        with open(docker, "w") as f:
            json.dump(cfg, f)
        kpod("pull", "-q", "--tls-verify=false", img, env=env)
        kpod("rmi", "-a", "-f", env=env)
    assert cred_helper.calls().count(f"get {r.addr}") == 2


def test_kpod_credsstore_login_logout(kpod, basic_reg, cred_helper, tmp_path):
    from tests.helpers_credhelpers import NAME

    r = basic_reg
    env = _kpod_env(cred_helper, tmp_path)
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"credsStore": NAME}))
    af = ["--authfile", str(authfile)]
    kpod("login", *af, "--tls-verify=false", "-u", "alice", "-p", "s3cret", r.addr, env=env)
    assert cred_helper.store() == {r.addr: ["alice", "s3cret"]}
    assert json.loads(authfile.read_text()) == {"credsStore": NAME, "auths": {r.addr: {}}}
    kpod("pull", "-q", "--tls-verify=false", *af, f"{r.addr}/private/busybox:v1", env=env)
    kpod("rmi", "-a", "-f", env=env)
    kpod("logout", *af, "--all", env=env)
    assert cred_helper.store() == {}


@pytest.mark.parametrize("mode", ["missing", "crash", "garbage"])
def test_kpod_helper_failures_are_one_clear_error(kpod, basic_reg, cred_helper, tmp_path, mode):
    from conftest import assert_one_error_line
    from tests.helpers_credhelpers import NAME

    r = basic_reg
    env = _kpod_env(cred_helper, tmp_path)
    name = "kpodmissing" if mode == "missing" else NAME
    authfile = tmp_path / "auth.json"
    content = json.dumps({"credHelpers": {r.addr: name}, "auths": {"other.example": {"auth": "eDp5"}}})
    authfile.write_text(content)
    af = ["--authfile", str(authfile)]
    cred_helper.put(r.addr, "alice", "s3cret")
    if mode != "missing":
        cred_helper.set_mode(mode)
    prog = f"docker-credential-{name}"
    cases = [
        ("pull", "-q", "--tls-verify=false", *af, f"{r.addr}/private/busybox:v1"),
        ("login", *af, "--tls-verify=false", "-u", "alice", "-p", "s3cret", r.addr),
        ("login", "--get-login", *af, r.addr),
        ("logout", *af, r.addr),
        ("logout", *af, "--all"),
    ]
    for args in cases:
        if mode == "garbage" and args[:2] != ("login", "--get-login") and args[0] != "pull":
            continue  # only get's answer is read: store/erase output is ignored (as docker's client)
        proc = kpod(*args, env=env, check=False)
        assert_one_error_line(proc, 125, prog)
        assert "s3cret" not in proc.stdout + proc.stderr
        assert authfile.read_text() == content, args
    assert cred_helper.store() == {r.addr: ["alice", "s3cret"]}
    if mode == "missing":
        # login fails before the password is checked with the registry
        assert "not found in $PATH" in kpod(*cases[1], env=env, check=False).stderr


# ------------------------------------------------------------------------------------------
# registries.conf credential-helpers: the ordered list of credential stores


def _stores(kpod, tmp_path, cred_helper, *helpers):
    """Set ``credential-helpers`` in the kpod fixture's registries.conf; a second helper
    docker-credential-kpodtwo next to kpodtest. Returns (kpodtwo, env, conf path)."""
    from tests.helpers_credhelpers import FakeHelper

    two = FakeHelper(tmp_path / "credhelper2", "kpodtwo")
    conf = tmp_path / "containers" / "registries.conf"
    conf.write_text("unqualified-search-registries = []\n"
                    + (f"credential-helpers = {json.dumps(list(helpers))}\n" if helpers else ""))
    env = {**_kpod_env(cred_helper, tmp_path), "PATH": two.bin + os.pathsep + cred_helper.env_path}
    return two, env, conf


def test_kpod_credential_helpers_helper_first(kpod, basic_reg, cred_helper, tmp_path):
    from conftest import assert_one_error_line

    r = basic_reg
    two, env, _ = _stores(kpod, tmp_path, cred_helper, "kpodtwo", "containers-auth.json")
    rw = tmp_path / "run" / "containers" / "auth.json"
    img = f"{r.addr}/private/busybox:v1"
    out = kpod("login", "--tls-verify=false", "-u", "alice", "--password-stdin", r.addr, input="s3cret\n", env=env)
    assert "Login Succeeded" in out.stdout
    assert two.store() == {r.addr: ["alice", "s3cret"]} and not rw.exists()  # the first store took it
    assert kpod("login", "--get-login", r.addr, env=env).stdout.strip() == "alice"
    kpod("pull", "-q", "--tls-verify=false", img, env=env)
    kpod("rmi", "-a", "-f", env=env)
    assert f"get {r.addr}" in two.calls()
    # the helper has nothing: the auth.json files are asked next
    two.put(r.addr, "alice", "wrong")
    rw.parent.mkdir(parents=True)
    rw.write_text(json.dumps({"auths": {r.addr: {"auth": base64.b64encode(b"alice:s3cret").decode()}}}))
    assert_one_error_line(kpod("pull", "-q", "--tls-verify=false", img, env=env, check=False), 125)
    kpod("logout", r.addr, env=env)  # from every store
    assert two.store() == {} and json.loads(rw.read_text())["auths"] == {}
    rw.write_text(json.dumps({"auths": {r.addr: {"auth": base64.b64encode(b"alice:s3cret").decode()}}}))
    kpod("pull", "-q", "--tls-verify=false", img, env=env)
    kpod("rmi", "-a", "-f", env=env)
    kpod("logout", r.addr, env=env)  # held by one store only: fine
    assert_one_error_line(kpod("logout", r.addr, env=env, check=False), 125, f"not logged into {r.addr}")


def test_kpod_credential_helpers_auth_json_first(kpod, basic_reg, cred_helper, tmp_path):
    from tests.helpers_credhelpers import NAME

    r = basic_reg
    two, env, _ = _stores(kpod, tmp_path, cred_helper, "containers-auth.json", "kpodtwo")
    rw = tmp_path / "run" / "containers" / "auth.json"
    img = f"{r.addr}/private/busybox:v1"
    kpod("login", "--tls-verify=false", "-u", "alice", "-p", "s3cret", r.addr, env=env)
    assert r.addr in json.loads(rw.read_text())["auths"] and two.store() == {}
    # a registry only the second store knows
    kpod("logout", r.addr, env=env)
    two.put(r.addr, "alice", "s3cret")
    kpod("pull", "-q", "--tls-verify=false", img, env=env)
    kpod("rmi", "-a", "-f", env=env)
    assert kpod("login", "--get-login", r.addr, env=env).stdout.strip() == "alice"
    # logout --all: every store, the file's own credHelpers too
    two.put("other.example", "zed", "pw")
    cred_helper.put("inner.example", "in", "pw")
    rw.write_text(json.dumps({"credHelpers": {"inner.example": NAME},
                              "auths": {"f.example": {"auth": base64.b64encode(b"f:pw").decode()}}}))
    out = kpod("logout", "--all", env=env)
    assert "Removed login credentials for all registries" in out.stdout
    assert two.store() == {} and cred_helper.store() == {}
    assert json.loads(rw.read_text()) == {"auths": {}}


def test_kpod_credential_helpers_default_is_auth_json(kpod, basic_reg, cred_helper, tmp_path):
    r = basic_reg
    two, env, _ = _stores(kpod, tmp_path, cred_helper)  # no credential-helpers key
    rw = tmp_path / "run" / "containers" / "auth.json"
    two.put(r.addr, "alice", "s3cret")
    assert "not logged into" in kpod("login", "--get-login", r.addr, env=env, check=False).stderr
    kpod("login", "--tls-verify=false", "-u", "alice", "-p", "s3cret", r.addr, env=env)
    assert r.addr in json.loads(rw.read_text())["auths"]
    kpod("logout", r.addr, env=env)
    assert two.store() == {r.addr: ["alice", "s3cret"]} and two.calls() == []  # never asked


def test_kpod_authfile_does_not_bypass_credential_helpers(kpod, basic_reg, cred_helper, tmp_path):
    """As podman: --authfile names the containers-auth.json store's file; the list stays."""
    from conftest import assert_one_error_line

    r = basic_reg
    two, env, _ = _stores(kpod, tmp_path, cred_helper, "kpodtwo")
    authfile = tmp_path / "explicit.json"
    authfile.write_text(json.dumps({"auths": {r.addr: {"auth": base64.b64encode(b"alice:s3cret").decode()}}}))
    af = ["--authfile", str(authfile)]
    img = f"{r.addr}/private/busybox:v1"
    # the file is not a store here: anonymous, refused
    assert_one_error_line(kpod("pull", "-q", "--tls-verify=false", *af, img, env=env, check=False), 125)
    kpod("login", *af, "--tls-verify=false", "-u", "alice", "-p", "s3cret", r.addr, env=env)
    assert two.store() == {r.addr: ["alice", "s3cret"]}
    kpod("pull", "-q", "--tls-verify=false", *af, img, env=env)
    kpod("rmi", "-a", "-f", env=env)
    kpod("logout", *af, r.addr, env=env)
    assert two.store() == {} and r.addr in json.loads(authfile.read_text())["auths"]
    # with containers-auth.json in the list, --authfile is that store's file
    _stores(kpod, tmp_path, cred_helper, "containers-auth.json", "kpodtwo")
    kpod("pull", "-q", "--tls-verify=false", *af, img, env=env)
    kpod("rmi", "-a", "-f", env=env)
    kpod("logout", *af, r.addr, env=env)
    assert json.loads(authfile.read_text())["auths"] == {}


@pytest.mark.parametrize("value", ['["a/b"]', '[""]', '["two words"]'])
def test_kpod_bad_credential_helper_name_is_one_clear_error(kpod, basic_reg, cred_helper, tmp_path, value):
    from conftest import assert_one_error_line

    r = basic_reg
    two, env, conf = _stores(kpod, tmp_path, cred_helper)
    conf.write_text(f"credential-helpers = {value}\n")
    rw = tmp_path / "run" / "containers" / "auth.json"
    rw.parent.mkdir(parents=True)
    content = json.dumps({"auths": {r.addr: {"auth": base64.b64encode(b"alice:s3cret").decode()}}})
    rw.write_text(content)
    two.put(r.addr, "alice", "s3cret")
    for args in [("login", "--tls-verify=false", "-u", "alice", "-p", "s3cret", r.addr),
                 ("login", "--get-login", r.addr), ("logout", r.addr), ("logout", "--all"),
                 ("pull", "-q", "--tls-verify=false", f"{r.addr}/private/busybox:v1")]:
        proc = kpod(*args, env=env, check=False)
        assert_one_error_line(proc, 125, f"{conf}: key 'credential-helpers'")
        assert rw.read_text() == content, args
    assert two.store() == {r.addr: ["alice", "s3cret"]} and two.calls() == []


def test_kpod_missing_credential_helper_is_one_clear_error(kpod, basic_reg, cred_helper, tmp_path):
    from conftest import assert_one_error_line

    r = basic_reg
    _, env, _ = _stores(kpod, tmp_path, cred_helper, "kpodmissing", "containers-auth.json")
    prog = "docker-credential-kpodmissing"
    rw = tmp_path / "run" / "containers" / "auth.json"
    # login: before the password is checked with the registry; nothing goes to the next store
    proc = kpod("login", "--tls-verify=false", "-u", "alice", "-p", "s3cret", r.addr, env=env, check=False)
    assert_one_error_line(proc, 125, f"{prog} not found in $PATH")
    assert not rw.exists()
    for args in [("pull", "-q", "--tls-verify=false", f"{r.addr}/private/busybox:v1"),
                 ("login", "--get-login", r.addr), ("logout", r.addr)]:
        assert_one_error_line(kpod(*args, env=env, check=False), 125, prog)
    # as podman: the next store still answers a lookup, and logout --all skips a missing helper
    rw.parent.mkdir(parents=True)
    rw.write_text(json.dumps({"auths": {r.addr: {"auth": base64.b64encode(b"alice:s3cret").decode()}}}))
    kpod("pull", "-q", "--tls-verify=false", f"{r.addr}/private/busybox:v1", env=env)
    kpod("rmi", "-a", "-f", env=env)
    kpod("logout", "--all", env=env)
    assert json.loads(rw.read_text()) == {"auths": {}}
