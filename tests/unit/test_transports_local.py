"""The local transports (dir, oci, oci-archive, docker-archive) and the copy pipeline.

A test image (a config, the busybox layer, and a second layer holding a whiteout) is written
with the transports' own destination code, then moved around and checked: config digest and
diff_ids survive every hop, blobs are verified while they stream, bad input gives a clear
KpodError and nothing is committed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile

import pytest
import zstandard

from libpod_core.copy import CopyResult, copy_image
from libpod_core.errors import (
    DigestMismatch,
    ImageError,
    InvalidArgument,
    KpodError,
    NotFound,
    PolicyDenied,
    TransportError,
)
from libpod_core.manifest import (
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_LAYER,
    MEDIA_TYPE_OCI_LAYER_GZIP,
    MEDIA_TYPE_OCI_LAYER_ZSTD,
    MEDIA_TYPE_OCI_MANIFEST,
    Descriptor,
    Index,
    Platform,
    build_index,
    build_manifest,
    descriptor_for,
    make_image_config,
    parse_manifest,
)
from libpod_core.testimage import rootfs_tar
from libpod_core.transports.base import SystemContext, parse_image_reference
from libpod_core.transports.docker_archive import (
    DockerArchiveReader,
    DockerArchiveWriter,
    list_images,
)

CTX = SystemContext()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def ref(s: str):
    return parse_image_reference(s)


# ------------------------------------------------------------------------------------------
# The test image
# ------------------------------------------------------------------------------------------


def _tar(entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in entries:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1700000000
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def layers():
    base = rootfs_tar()
    # a whiteout of /etc/group, an opaque directory marker and a new file
    top = _tar([("etc/.wh.group", b""), ("var/www/.wh..wh..opq", b""), ("hello.txt", b"hello\n")])
    other = _tar([("other.txt", b"another image\n")])
    return {"base": base, "top": top, "other": other}


def _compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


_LAYER_MT = {"gzip": MEDIA_TYPE_OCI_LAYER_GZIP, "zstd": MEDIA_TYPE_OCI_LAYER_ZSTD, "none": MEDIA_TYPE_OCI_LAYER}


def image_parts(plain_layers, *, compression="gzip", arch="amd64", cmd=("/bin/sh",), label=None):
    diff_ids = [sha(l) for l in plain_layers]
    cfg = {"Cmd": list(cmd)}
    if label:
        cfg["Labels"] = {"x": label}
    doc = make_image_config(diff_ids, config=cfg, architecture=arch, os="linux", created="2024-01-01T00:00:00Z")
    config = json.dumps(doc, separators=(",", ":")).encode()  # not validated: may be oversized
    blobs = [_compress(l, compression) for l in plain_layers]
    return config, blobs, diff_ids


def write_image(dst_ref: str, plain_layers, *, compression="gzip", arch="amd64", label=None, put_digest=True):
    """Write an image through the destination code of *dst_ref*; return (manifest, config)."""
    config, blobs, _ = image_parts(plain_layers, compression=compression, arch=arch, label=label)
    r = ref(dst_ref)
    with r.new_destination(CTX) as d:
        descs = []
        for i, b in enumerate(blobs):
            dg, size = d.put_blob(io.BytesIO(b), sha(b) if put_digest else None, len(b) if put_digest else None,
                                  _LAYER_MT[compression], layer_index=i)
            assert (dg, size) == (sha(b), len(b))
            descs.append(Descriptor(_LAYER_MT[compression], dg, size))
        cd = descriptor_for(config, MEDIA_TYPE_OCI_CONFIG)
        d.put_blob(io.BytesIO(config), cd.digest, cd.size, cd.media_type, is_config=True)
        raw = build_manifest(cd, descs)
        d.put_manifest(raw, MEDIA_TYPE_OCI_MANIFEST)
        d.commit()
    return raw, config


def read_image(src_ref: str):
    """(manifest, config bytes, uncompressed digests of the layers) read through a source."""
    from libpod_core.digest import open_decompressed

    with ref(src_ref).new_source(CTX) as s:
        raw, _ = s.get_manifest()
        m = parse_manifest(raw)
        f, _ = s.get_blob(m.config.digest)
        config = f.read()
        f.close()
        plain = []
        for l in m.layers:
            f, _ = s.get_blob(l.digest)
            h = hashlib.sha256()
            d = open_decompressed(f)
            while chunk := d.read(1 << 20):
                h.update(chunk)
            f.close()
            plain.append("sha256:" + h.hexdigest())
    return m, config, plain


@pytest.fixture
def oci_image(tmp_path, layers):
    path = tmp_path / "layout"
    raw, config = write_image(f"oci:{path}:test:1", [layers["base"], layers["top"]])
    return str(path), raw, config


def assert_same_image(src_ref, config, diff_ids):
    m, cfg, plain = read_image(src_ref)
    assert sha(cfg) == sha(config)
    assert json.loads(cfg)["rootfs"]["diff_ids"] == diff_ids
    assert plain == diff_ids
    return m


# ------------------------------------------------------------------------------------------
# References
# ------------------------------------------------------------------------------------------


def test_reference_parsing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = ref("oci:/x/layout:busybox:latest")
    assert (r.path, r.name) == ("/x/layout", "busybox:latest")
    assert str(r) == "oci:/x/layout:busybox:latest"
    assert r.policy_configuration_namespaces() == ["/x/layout", "/x"]
    assert ref("oci:/x/l:a/b@c+d").name == "a/b@c+d"
    assert ref("oci:/x/l").name == ""
    assert ref("oci:rel").path == str(tmp_path / "rel")
    with pytest.raises(InvalidArgument, match="ref name"):
        ref("oci:/x/l:bad name")
    with pytest.raises(InvalidArgument):
        ref("oci:/x/l:-lead")
    assert ref("oci-archive:/a.tar:x:1").name == "x:1"

    d = ref("docker-archive:/a.tar:busybox")
    assert str(d.named) == "docker.io/library/busybox:latest"
    assert d.docker_reference() == d.named
    assert ref("docker-archive:/a.tar:@2").index == 2
    assert ref("docker-archive:/a.tar").named is None
    for bad in ("docker-archive:/a.tar:@x", "docker-archive:/a.tar:@-1",
                "docker-archive:/a.tar:busybox@sha256:" + "a" * 64, "docker-archive:/a.tar:Bad"):
        with pytest.raises(InvalidArgument):
            ref(bad)
    with pytest.raises(InvalidArgument):
        ref("docker-archive:/a.tar:@1").new_destination(CTX)

    r = ref("dir:sub/img")
    assert r.path == str(tmp_path / "sub" / "img")
    assert "/" not in r.policy_configuration_namespaces()

    t = ref("dir:/x").transport
    t.validate_policy_scope("/a/b")
    for bad in ("a/b", "/", "/a/../b"):
        with pytest.raises(InvalidArgument):
            t.validate_policy_scope(bad)
    ref("oci:/x").transport.validate_policy_scope("/a/b:tag")
    with pytest.raises(InvalidArgument):
        ref("docker-archive:/x").transport.validate_policy_scope("/a")


# ------------------------------------------------------------------------------------------
# Round trips
# ------------------------------------------------------------------------------------------


def test_round_trip_all_local_transports(tmp_path, oci_image, layers):
    layout, raw, config = oci_image
    diff_ids = [sha(layers["base"]), sha(layers["top"])]
    chain = [
        f"oci:{layout}:test:1",
        f"dir:{tmp_path}/d1",
        f"oci:{tmp_path}/l2:copy",
        f"oci-archive:{tmp_path}/o.tar:x",
        f"docker-archive:{tmp_path}/a.tar:localhost/test:1",
        f"dir:{tmp_path}/d2",
    ]
    results = []
    for s, d in zip(chain, chain[1:]):
        res = copy_image(ref(s), ref(d), CTX)
        assert isinstance(res, CopyResult)
        assert res.config_digest == sha(config)
        results.append(res)
        assert_same_image(d, config, diff_ids)
    # dir, oci and oci-archive keep the manifest bytes; docker-archive rewrites it as v2s2
    assert {r.manifest_digest for r in results[:3]} == {sha(raw)}
    assert results[3].media_type == MEDIA_TYPE_DOCKER_MANIFEST
    m = parse_manifest(open(f"{tmp_path}/d2/manifest.json", "rb").read())
    assert [l.digest for l in m.layers] == diff_ids  # uncompressed, digests are the diff_ids
    assert open(f"{tmp_path}/d2/version").read() == "Directory Transport Version: 1.1\n"
    # back into an OCI layout next to the first image
    copy_image(ref(f"dir:{tmp_path}/d2"), ref(f"oci:{layout}:back"), CTX)
    idx = json.load(open(f"{layout}/index.json"))
    assert [e["annotations"]["org.opencontainers.image.ref.name"] for e in idx["manifests"]] == ["test:1", "back"]
    assert_same_image(f"oci:{layout}:back", config, diff_ids)


def test_oci_layout_refs_replace_and_select(tmp_path, oci_image, layers):
    layout, raw, config = oci_image
    with pytest.raises(NotFound, match="no image named 'nope'"):
        ref(f"oci:{layout}:nope").new_source(CTX)
    # the only image is chosen without a name
    assert read_image(f"oci:{layout}")[0].raw == raw
    write_image(f"oci:{layout}:other", [layers["other"]])
    with pytest.raises(TransportError, match="holds 2 images"):
        ref(f"oci:{layout}").new_source(CTX)
    # replacing a ref keeps one entry for it
    write_image(f"oci:{layout}:test:1", [layers["other"]], label="v2")
    idx = json.load(open(f"{layout}/index.json"))
    names = [e["annotations"]["org.opencontainers.image.ref.name"] for e in idx["manifests"]]
    assert sorted(names) == ["other", "test:1"]
    assert read_image(f"oci:{layout}:test:1")[0].raw != raw
    # the old blobs are still there, nothing was rewritten in place
    assert os.path.exists(f"{layout}/blobs/sha256/{sha(raw)[7:]}")
    assert json.load(open(f"{layout}/oci-layout")) == {"imageLayoutVersion": "1.0.0"}


def test_destination_reuses_blobs(tmp_path, oci_image):
    layout, raw, config = oci_image
    calls = []

    def progress(digest, done, total):
        calls.append(digest)

    copy_image(ref(f"oci:{layout}:test:1"), ref(f"oci:{tmp_path}/l2:a"), CTX, progress=progress)
    assert calls
    calls.clear()
    copy_image(ref(f"oci:{layout}:test:1"), ref(f"oci:{tmp_path}/l2:b"), CTX, progress=progress)
    assert calls == []  # every blob was already there


def test_recompression_and_format_conversion(tmp_path, oci_image, layers):
    layout, raw, config = oci_image
    diff_ids = [sha(layers["base"]), sha(layers["top"])]
    res = copy_image(ref(f"oci:{layout}:test:1"), ref(f"oci:{tmp_path}/z:z"), CTX, compression="zstd")
    m = parse_manifest(res.manifest)
    assert [l.media_type for l in m.layers] == [MEDIA_TYPE_OCI_LAYER_ZSTD] * 2
    assert res.manifest_digest != sha(raw)
    assert_same_image(f"oci:{tmp_path}/z:z", config, diff_ids)
    # zstd -> docker archive (decompressed) -> dir, uncompressed
    copy_image(ref(f"oci:{tmp_path}/z:z"), ref(f"docker-archive:{tmp_path}/z.tar"), CTX)
    assert_same_image(f"docker-archive:{tmp_path}/z.tar", config, diff_ids)
    res = copy_image(ref(f"oci:{tmp_path}/z:z"), ref(f"dir:{tmp_path}/plain"), CTX, compression="none")
    assert [l.digest for l in parse_manifest(res.manifest).layers] == diff_ids
    # to v2s2 with gzip
    res = copy_image(ref(f"oci:{tmp_path}/z:z"), ref(f"dir:{tmp_path}/v2"), CTX, format="v2s2", compression="gzip")
    assert res.media_type == MEDIA_TYPE_DOCKER_MANIFEST
    assert_same_image(f"dir:{tmp_path}/v2", config, diff_ids)
    # zstd cannot be described by v2s2
    with pytest.raises(InvalidArgument, match="zstd"):
        copy_image(ref(f"oci:{tmp_path}/z:z"), ref(f"dir:{tmp_path}/bad"), CTX, format="v2s2")
    assert not os.path.exists(f"{tmp_path}/bad")
    # the OCI destination converts a v2s2 manifest to OCI
    res = copy_image(ref(f"dir:{tmp_path}/v2"), ref(f"oci:{tmp_path}/z:fromv2"), CTX)
    assert res.media_type == MEDIA_TYPE_OCI_MANIFEST
    with pytest.raises(InvalidArgument):
        copy_image(ref(f"dir:{tmp_path}/v2"), ref(f"dir:{tmp_path}/x"), CTX, compression="lzma")


def test_digestfile_and_policy(tmp_path, oci_image):
    layout, raw, config = oci_image
    seen = []

    def policy(src_ref, src, manifest, sigs):
        seen.append((str(src_ref), manifest, sigs))
        return True

    copy_image(ref(f"oci:{layout}:test:1"), ref(f"dir:{tmp_path}/d"), CTX, policy_check=policy,
               digestfile=str(tmp_path / "digest"))
    assert seen == [(f"oci:{layout}:test:1", raw, [])]
    assert open(tmp_path / "digest").read() == sha(raw)

    def deny(*a):
        raise PolicyDenied("no")

    with pytest.raises(PolicyDenied):
        copy_image(ref(f"oci:{layout}:test:1"), ref(f"dir:{tmp_path}/d3"), CTX, policy_check=deny)
    with pytest.raises(PolicyDenied):
        copy_image(ref(f"oci:{layout}:test:1"), ref(f"dir:{tmp_path}/d3"), CTX, policy_check=lambda *a: False)
    assert not os.path.exists(f"{tmp_path}/d3")


def test_signatures(tmp_path, oci_image):
    layout, raw, config = oci_image
    copy_image(ref(f"oci:{layout}:test:1"), ref(f"dir:{tmp_path}/d"), CTX)
    (tmp_path / "d" / "signature-1").write_bytes(b"sig-one")
    (tmp_path / "d" / "signature-2").write_bytes(b"sig-two")
    copy_image(ref(f"dir:{tmp_path}/d"), ref(f"dir:{tmp_path}/d2"), CTX)
    assert (tmp_path / "d2" / "signature-2").read_bytes() == b"sig-two"
    with pytest.raises(TransportError, match="signatures"):
        copy_image(ref(f"dir:{tmp_path}/d"), ref(f"oci:{tmp_path}/l:x"), CTX)
    with pytest.raises(ImageError, match="signatures"):
        copy_image(ref(f"dir:{tmp_path}/d"), ref(f"dir:{tmp_path}/d3"), CTX, compression="zstd")
    assert not os.path.exists(f"{tmp_path}/d3")
    copy_image(ref(f"dir:{tmp_path}/d"), ref(f"oci:{tmp_path}/l:x"), CTX, remove_signatures=True)
    copy_image(ref(f"dir:{tmp_path}/d"), ref(f"dir:{tmp_path}/d4"), CTX, remove_signatures=True)
    assert not (tmp_path / "d4" / "signature-1").exists()


def test_dir_destination_rules(tmp_path, oci_image):
    layout, raw, config = oci_image
    other = tmp_path / "notimage"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    with pytest.raises(TransportError, match="not a dir-transport image"):
        copy_image(ref(f"oci:{layout}:test:1"), ref(f"dir:{other}"), CTX)
    assert os.listdir(other) == ["precious.txt"]
    # an empty directory and an existing dir image are fine (the latter is replaced)
    empty = tmp_path / "empty"
    empty.mkdir()
    copy_image(ref(f"oci:{layout}:test:1"), ref(f"dir:{empty}"), CTX)
    (empty / "signature-1").write_bytes(b"stale")
    copy_image(ref(f"oci:{layout}:test:1"), ref(f"dir:{empty}"), CTX)
    assert not (empty / "signature-1").exists()
    assert [n for n in os.listdir(tmp_path) if n.startswith(".")] == []  # no staging left


# ------------------------------------------------------------------------------------------
# docker-archive specifics
# ------------------------------------------------------------------------------------------


def test_multi_image_docker_archive(tmp_path, layers):
    a_raw, a_cfg = write_image(f"oci:{tmp_path}/l:a", [layers["base"], layers["top"]])
    b_raw, b_cfg = write_image(f"oci:{tmp_path}/l:b", [layers["base"], layers["other"]], compression="zstd")
    out = tmp_path / "multi.tar"
    with DockerArchiveWriter(str(out)) as w:
        copy_image(ref(f"oci:{tmp_path}/l:a"), w.reference(["localhost/a:1", "localhost/a:latest"]), CTX)
        assert not out.exists()  # nothing visible before the writer commits
        copy_image(ref(f"oci:{tmp_path}/l:b"), w.reference("quay.io/x/b:2"), CTX)
    with tarfile.open(out) as tf:
        names = tf.getnames()
        manifest = json.load(tf.extractfile("manifest.json"))
        repos = json.load(tf.extractfile("repositories"))
    # the busybox layer is stored once
    assert len([n for n in names if n.endswith(".tar") and "/" not in n]) == 3
    assert [m["RepoTags"] for m in manifest] == [["localhost/a:1", "localhost/a:latest"], ["quay.io/x/b:2"]]
    assert set(repos) == {"localhost/a", "quay.io/x/b"}

    refs = list_images(str(out))
    assert [r.repo_tags for r in refs] == [["localhost/a:1", "localhost/a:latest"], ["quay.io/x/b:2"]]
    assert [str(r) for r in refs] == [f"docker-archive:{out}:@0", f"docker-archive:{out}:@1"]
    with DockerArchiveReader(str(out)) as reader:
        for r, cfg in zip(reader.list_images(), (a_cfg, b_cfg)):
            with r.new_source(CTX) as s:
                assert s.repo_tags() == r.repo_tags
            res = copy_image(r, ref(f"dir:{tmp_path}/out{r.index}"), CTX)
            assert res.config_digest == sha(cfg)
    with pytest.raises(TransportError, match="holds 2 images"):
        ref(f"docker-archive:{out}").new_source(CTX)
    with ref(f"docker-archive:{out}:quay.io/x/b:2").new_source(CTX) as s:
        assert s.repo_tags() == ["quay.io/x/b:2"]
    with ref(f"docker-archive:{out}:localhost/a").new_source(CTX) as s:
        assert s.repo_tags()[0] == "localhost/a:1"
    with pytest.raises(NotFound, match="no image named"):
        ref(f"docker-archive:{out}:nothere").new_source(CTX)
    with pytest.raises(NotFound, match="index 5"):
        ref(f"docker-archive:{out}:@5").new_source(CTX)
    assert_same_image(f"docker-archive:{out}:@1", b_cfg, [sha(layers["base"]), sha(layers["other"])])


def test_docker_archive_writer_aborts(tmp_path, oci_image):
    layout, raw, config = oci_image
    out = tmp_path / "x.tar"
    with pytest.raises(NotFound):
        with DockerArchiveWriter(str(out)) as w:
            copy_image(ref(f"oci:{layout}:test:1"), w.reference("a"), CTX)
            copy_image(ref(f"oci:{layout}:missing"), w.reference("b"), CTX)
    assert os.listdir(tmp_path) == ["layout"]  # no archive, no temporary file
    with pytest.raises(TransportError, match="manifest lists"):
        d = ref(f"docker-archive:{out}").new_destination(CTX)
        try:
            d.put_manifest(build_index([]), MEDIA_TYPE_OCI_INDEX)
        finally:
            d.close()
    assert not out.exists()


def _docker_save_like(path, members: dict[str, bytes], *, links=None, gz=False):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        for name, target in (links or {}).items():
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname = tarfile.SYMTYPE, target
            tf.addfile(ti)
    data = buf.getvalue()
    with open(path, "wb") as f:
        f.write(gzip.compress(data, mtime=0) if gz else data)


def test_docker_archive_legacy_layout_and_compressed_layers(tmp_path, layers):
    """Old `docker save` (<id>/layer.tar, symlinked duplicates), gzip-compressed layer files
    and a gzip-compressed archive are all read."""
    config, _, diff_ids = image_parts([layers["base"], layers["top"]])
    members = {
        "aaaa/layer.tar": layers["base"],
        "bbbb/layer.tar": gzip.compress(layers["top"], mtime=0),
        "cfg.json": config,
        "manifest.json": json.dumps([{"Config": "cfg.json", "RepoTags": ["busybox:latest"],
                                      "Layers": ["./aaaa/layer.tar", "cccc/layer.tar"]}]).encode(),
        "repositories": b"{}",
    }
    _docker_save_like(tmp_path / "old.tar", members, links={"cccc/layer.tar": "../bbbb/layer.tar"})
    _docker_save_like(tmp_path / "old.tar.gz", members, links={"cccc/layer.tar": "../bbbb/layer.tar"}, gz=True)
    for p in ("old.tar", "old.tar.gz"):
        r = ref(f"docker-archive:{tmp_path}/{p}:busybox")
        with r.new_source(CTX) as s:
            assert s.repo_tags() == ["busybox:latest"]
        m = assert_same_image(str(r), config, diff_ids)
        # a gzip layer file is listed as the gzip blob it is (a store keeps it; a push sends it)
        top_gz = gzip.compress(layers["top"], mtime=0)
        assert [(l.media_type, l.digest, l.size) for l in m.layers] == [
            ("application/vnd.docker.image.rootfs.diff.tar", diff_ids[0], len(layers["base"])),
            ("application/vnd.docker.image.rootfs.diff.tar.gzip", sha(top_gz), len(top_gz))]
        copy_image(r, ref(f"oci:{tmp_path}/l:{p}"), CTX)
        assert_same_image(f"oci:{tmp_path}/l:{p}", config, diff_ids)


# ------------------------------------------------------------------------------------------
# Indexes
# ------------------------------------------------------------------------------------------


def _write_index(tmp_path, layers):
    """An OCI layout whose ref points at an index of an amd64 and an arm64 image."""
    layout = tmp_path / "multi"
    descs, configs = [], {}
    for arch in ("amd64", "arm64"):
        raw, cfg = write_image(f"oci:{layout}:{arch}", [layers["base"], layers["top"]], arch=arch)
        descs.append(Descriptor(MEDIA_TYPE_OCI_MANIFEST, sha(raw), len(raw), platform=Platform("linux", arch)))
        configs[arch] = cfg
    index = build_index(descs)
    d = ref(f"oci:{layout}:list").new_destination(CTX)
    with d:
        d.put_manifest(index, MEDIA_TYPE_OCI_INDEX)
        d.commit()
    return layout, index, configs


def test_index_single_and_all(tmp_path, layers):
    layout, index, configs = _write_index(tmp_path, layers)
    res = copy_image(ref(f"oci:{layout}:list"), ref(f"dir:{tmp_path}/one"), SystemContext(os="linux", arch="arm64"))
    assert res.config_digest == sha(configs["arm64"])
    res = copy_image(ref(f"oci:{layout}:list"), ref(f"dir:{tmp_path}/one2"), SystemContext(arch="amd64"))
    assert res.config_digest == sha(configs["amd64"])
    with pytest.raises(ImageError, match="no image found"):
        copy_image(ref(f"oci:{layout}:list"), ref(f"dir:{tmp_path}/none"), SystemContext(arch="s390x"))

    res = copy_image(ref(f"oci:{layout}:list"), ref(f"dir:{tmp_path}/all"), CTX, all_images=True)
    assert res.manifest == index and len(res.instances) == 2
    for inst in parse_manifest(index).manifests:
        assert (tmp_path / "all" / f"{inst.digest[7:]}.manifest.json").exists()
    # dir (with instances) -> oci-archive -> oci, all images
    copy_image(ref(f"dir:{tmp_path}/all"), ref(f"oci-archive:{tmp_path}/all.tar:l"), CTX, all_images=True)
    res = copy_image(ref(f"oci-archive:{tmp_path}/all.tar:l"), ref(f"oci:{tmp_path}/o2:l"), CTX, all_images=True)
    assert res.manifest_digest == sha(index)
    with ref(f"oci:{tmp_path}/o2:l").new_source(CTX) as s:
        assert isinstance(parse_manifest(s.get_manifest()[0]), Index)
    # to v2s2: the index becomes a Docker manifest list, instances are converted
    res = copy_image(ref(f"oci:{layout}:list"), ref(f"dir:{tmp_path}/v2"), CTX, all_images=True, format="v2s2")
    lst = parse_manifest(res.manifest)
    assert lst.media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
    assert [i.media_type for i in res.instances] == [MEDIA_TYPE_DOCKER_MANIFEST] * 2
    # docker archives cannot hold lists
    with pytest.raises(TransportError, match="indexes"):
        copy_image(ref(f"oci:{layout}:list"), ref(f"docker-archive:{tmp_path}/x.tar"), CTX, all_images=True)
    assert not (tmp_path / "x.tar").exists()


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------


def _corrupt_layer_blob(layout, raw):
    layer = parse_manifest(raw).layers[1]
    p = os.path.join(layout, "blobs", "sha256", layer.digest[7:])
    data = bytearray(open(p, "rb").read())
    data[len(data) // 2] ^= 0xFF
    with open(p, "wb") as f:
        f.write(bytes(data))
    return layer


@pytest.mark.parametrize("dest", ["oci", "oci-archive", "docker-archive", "dir"])
def test_digest_mismatch_commits_nothing(tmp_path, oci_image, layers, dest):
    layout, raw, config = oci_image
    write_image(f"oci:{tmp_path}/dst:keep", [layers["other"]])  # shares no blob with the image
    _corrupt_layer_blob(layout, raw)
    target = {"oci": f"oci:{tmp_path}/dst:new", "oci-archive": f"oci-archive:{tmp_path}/x.tar",
              "docker-archive": f"docker-archive:{tmp_path}/x.tar", "dir": f"dir:{tmp_path}/d"}[dest]
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(DigestMismatch):
        copy_image(ref(f"oci:{layout}:test:1"), ref(target), CTX)
    assert sorted(os.listdir(tmp_path)) == before  # no archive, no directory, no temp file
    idx = json.load(open(tmp_path / "dst" / "index.json"))
    assert [e["annotations"]["org.opencontainers.image.ref.name"] for e in idx["manifests"]] == ["keep"]
    assert not [n for n in os.listdir(tmp_path / "dst" / "blobs" / "sha256") if n.startswith(".")]


def test_diff_id_mismatch(tmp_path, layers):
    # a config whose second diff_id is wrong: noticed when the layer is decompressed
    config, blobs, diff_ids = image_parts([layers["base"], layers["top"]])
    cfg = json.loads(config)
    cfg["rootfs"]["diff_ids"][1] = sha(b"something else")
    config = json.dumps(cfg).encode()
    d = ref(f"oci:{tmp_path}/l:bad").new_destination(CTX)
    with d:
        descs = [Descriptor(MEDIA_TYPE_OCI_LAYER_GZIP, *d.put_blob(io.BytesIO(b), None, None, None)) for b in blobs]
        cd = descriptor_for(config, MEDIA_TYPE_OCI_CONFIG)
        d.put_blob(io.BytesIO(config), None, None, None, is_config=True)
        d.put_manifest(build_manifest(cd, descs), MEDIA_TYPE_OCI_MANIFEST)
        d.commit()
    with pytest.raises(DigestMismatch, match="diff_id"):
        copy_image(ref(f"oci:{tmp_path}/l:bad"), ref(f"docker-archive:{tmp_path}/a.tar"), CTX)
    assert not (tmp_path / "a.tar").exists()


def test_truncated_and_corrupt_archives(tmp_path, oci_image):
    layout, raw, config = oci_image
    copy_image(ref(f"oci:{layout}:test:1"), ref(f"docker-archive:{tmp_path}/a.tar:x"), CTX)
    copy_image(ref(f"oci:{layout}:test:1"), ref(f"oci-archive:{tmp_path}/o.tar:x"), CTX)
    for name in ("a.tar", "o.tar"):
        data = (tmp_path / name).read_bytes()
        for cut in (len(data) // 2, 700, len(data) - 2048 - 100):
            (tmp_path / "t.tar").write_bytes(data[:cut])
            kind = "docker-archive" if name == "a.tar" else "oci-archive"
            with pytest.raises(KpodError) as ei:
                copy_image(ref(f"{kind}:{tmp_path}/t.tar"), ref(f"dir:{tmp_path}/out"), CTX)
            assert isinstance(ei.value, (TransportError, NotFound, DigestMismatch)), ei.value
            assert not (tmp_path / "out").exists()
    (tmp_path / "garbage.tar").write_bytes(os.urandom(5000))
    with pytest.raises(TransportError, match="not a valid tar archive"):
        ref(f"docker-archive:{tmp_path}/garbage.tar").new_source(CTX)
    (tmp_path / "empty.tar").write_bytes(b"")
    with pytest.raises(TransportError, match="empty"):
        ref(f"oci-archive:{tmp_path}/empty.tar").new_source(CTX)
    (tmp_path / "bad.tar.gz").write_bytes(gzip.compress(b"x" * 1000)[:-20])
    with pytest.raises(TransportError, match="corrupt gzip"):
        ref(f"docker-archive:{tmp_path}/bad.tar.gz").new_source(CTX)
    with pytest.raises(NotFound):
        ref(f"docker-archive:{tmp_path}/missing.tar").new_source(CTX)
    with pytest.raises(TransportError, match="no manifest.json"):
        _docker_save_like(tmp_path / "nm.tar", {"x": b"1"})
        ref(f"docker-archive:{tmp_path}/nm.tar").new_source(CTX)
    with pytest.raises(TransportError, match="not an OCI image layout"):
        ref(f"oci-archive:{tmp_path}/nm.tar").new_source(CTX)


def test_docker_archive_missing_layer_and_traversal(tmp_path, layers):
    config, _, diff_ids = image_parts([layers["top"]])
    base = {"cfg.json": config, "l.tar": layers["top"]}
    cases = {
        "missing": (["nothere.tar"], NotFound, "not in the archive"),
        "traversal": (["../x"], TransportError, "path traversal"),
        "absolute": (["/etc/passwd"], TransportError, "path traversal"),
        "symlink-out": (["link.tar"], TransportError, "outside the archive"),
    }
    for name, (layer_paths, exc, msg) in cases.items():
        members = dict(base)
        members["manifest.json"] = json.dumps([{"Config": "cfg.json", "RepoTags": [], "Layers": layer_paths}]).encode()
        _docker_save_like(tmp_path / f"{name}.tar", members, links={"link.tar": "../../etc/passwd"})
        with pytest.raises(exc, match=msg):
            copy_image(ref(f"docker-archive:{tmp_path}/{name}.tar"), ref(f"dir:{tmp_path}/out"), CTX)
        assert not (tmp_path / "out").exists()
    members = dict(base)
    members["manifest.json"] = json.dumps([{"Config": "../cfg.json", "RepoTags": [], "Layers": ["l.tar"]}]).encode()
    _docker_save_like(tmp_path / "cfg.tar", members)
    with pytest.raises(TransportError, match="path traversal"):
        copy_image(ref(f"docker-archive:{tmp_path}/cfg.tar"), ref(f"dir:{tmp_path}/out"), CTX)
    # diff_ids and layers disagree
    members = dict(base)
    members["manifest.json"] = json.dumps([{"Config": "cfg.json", "Layers": ["l.tar", "l.tar"]}]).encode()
    _docker_save_like(tmp_path / "count.tar", members)
    with pytest.raises(ImageError, match="diff_ids"):
        copy_image(ref(f"docker-archive:{tmp_path}/count.tar"), ref(f"dir:{tmp_path}/out"), CTX)
    members["manifest.json"] = b'{"not": "a list"}'
    _docker_save_like(tmp_path / "shape.tar", members)
    with pytest.raises(ImageError, match="array"):
        ref(f"docker-archive:{tmp_path}/shape.tar").new_source(CTX)


def test_oversized_manifest_and_config(tmp_path, oci_image, layers):
    layout, raw, config = oci_image
    copy_image(ref(f"oci:{layout}:test:1"), ref(f"dir:{tmp_path}/d"), CTX)
    m = json.loads(raw)
    m["annotations"] = {"pad": "x" * (4 * 1024 * 1024 + 10)}
    (tmp_path / "d" / "manifest.json").write_bytes(json.dumps(m).encode())
    with pytest.raises(ImageError, match="too large"):
        copy_image(ref(f"dir:{tmp_path}/d"), ref(f"dir:{tmp_path}/out"), CTX)
    # a config over 4 MiB, with a correct digest
    big = write_image(f"oci:{tmp_path}/big:big", [layers["top"]], label="y" * (4 * 1024 * 1024 + 10))
    with pytest.raises(ImageError, match="too large"):
        copy_image(ref(f"oci:{tmp_path}/big:big"), ref(f"dir:{tmp_path}/out"), CTX)
    assert not (tmp_path / "out").exists()
    # the same through a docker archive
    config, _, _ = image_parts([layers["top"]], label="y" * (4 * 1024 * 1024 + 10))
    _docker_save_like(tmp_path / "bigcfg.tar", {
        "c.json": config, "l.tar": layers["top"],
        "manifest.json": json.dumps([{"Config": "c.json", "Layers": ["l.tar"]}]).encode()})
    with pytest.raises(ImageError, match="too large"):
        copy_image(ref(f"docker-archive:{tmp_path}/bigcfg.tar"), ref(f"dir:{tmp_path}/out"), CTX)
    del big


def test_symlinked_blob_outside_layout(tmp_path, oci_image):
    layout, raw, config = oci_image
    layer = parse_manifest(raw).layers[0]
    p = os.path.join(layout, "blobs", "sha256", layer.digest[7:])
    outside = tmp_path / "outside"
    os.rename(p, outside)
    os.symlink(str(outside), p)
    with pytest.raises(TransportError, match="outside"):
        copy_image(ref(f"oci:{layout}:test:1"), ref(f"dir:{tmp_path}/out"), CTX)
    assert not (tmp_path / "out").exists()
    # a symlinked manifest.json in a dir image too
    d = tmp_path / "dimg"
    d.mkdir()
    (d / "version").write_text("Directory Transport Version: 1.1\n")
    os.symlink("/etc/hostname", d / "manifest.json")
    with pytest.raises(TransportError, match="outside"):
        copy_image(ref(f"dir:{d}"), ref(f"dir:{tmp_path}/out"), CTX)


def test_bad_layout_files(tmp_path, oci_image):
    layout, raw, config = oci_image
    with pytest.raises(NotFound):
        ref(f"oci:{tmp_path}/nope:x").new_source(CTX)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "file").write_text("x")
    with pytest.raises(TransportError, match="oci-layout"):
        ref(f"oci:{tmp_path}/plain").new_source(CTX)
    with pytest.raises(TransportError, match="not an OCI image layout"):
        copy_image(ref(f"oci:{layout}:test:1"), ref(f"oci:{tmp_path}/plain:x"), CTX)
    idx = os.path.join(layout, "index.json")
    good = open(idx, "rb").read()
    open(idx, "w").write("{not json")
    with pytest.raises(ImageError, match="index.json"):
        ref(f"oci:{layout}:test:1").new_source(CTX)
    open(idx, "wb").write(good)
    # a manifest blob that does not match index.json's digest
    mp = os.path.join(layout, "blobs", "sha256", sha(raw)[7:])
    open(mp, "wb").write(raw.replace(b'"schemaVersion":2', b'"schemaVersion": 2'))
    with pytest.raises(DigestMismatch):
        copy_image(ref(f"oci:{layout}:test:1"), ref(f"dir:{tmp_path}/out"), CTX)
