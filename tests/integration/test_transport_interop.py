"""Interoperability of kpod's local transports with skopeo (containers/image).

kpod writes dir / oci / oci-archive / docker-archive images that skopeo must read and copy;
kpod reads what skopeo writes in the same four formats. The test image (config, busybox layer,
a second layer with whiteouts) is built with kpod's own destination code.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile

import pytest

from libpod_core.copy import copy_image
from libpod_core.digest import open_decompressed
from libpod_core.manifest import (
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_LAYER_GZIP,
    MEDIA_TYPE_OCI_MANIFEST,
    Descriptor,
    Platform,
    build_index,
    build_manifest,
    descriptor_for,
    make_image_config,
    parse_manifest,
)
from libpod_core.testimage import rootfs_tar
from libpod_core.transports.base import SystemContext, parse_image_reference
from libpod_core.transports.docker_archive import DockerArchiveWriter, list_images

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed"),
]

CTX = SystemContext()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def ref(s: str):
    return parse_image_reference(s)


def skopeo(*args, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)} failed: {proc.stderr.decode()}")
    return proc


def _tar(entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in entries:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1700000000
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def plain_layers():
    return [
        rootfs_tar(),
        _tar([("etc/.wh.group", b""), ("var/www/.wh..wh..opq", b""), ("hello.txt", b"hello\n")]),
    ]


def write_image(dst: str, plain, *, arch="amd64", cmd="/bin/sh"):
    diff_ids = [sha(l) for l in plain]
    doc = make_image_config(diff_ids, config={"Cmd": [cmd]}, architecture=arch, os="linux",
                            created="2024-01-01T00:00:00Z")
    config = json.dumps(doc, separators=(",", ":")).encode()
    with ref(dst).new_destination(CTX) as d:
        descs = []
        for i, l in enumerate(plain):
            blob = gzip.compress(l, mtime=0)
            descs.append(Descriptor(MEDIA_TYPE_OCI_LAYER_GZIP, *d.put_blob(io.BytesIO(blob), sha(blob), len(blob),
                                                                             MEDIA_TYPE_OCI_LAYER_GZIP, layer_index=i)))
        cd = descriptor_for(config, MEDIA_TYPE_OCI_CONFIG)
        d.put_blob(io.BytesIO(config), cd.digest, cd.size, cd.media_type, is_config=True)
        raw = build_manifest(cd, descs)
        d.put_manifest(raw, MEDIA_TYPE_OCI_MANIFEST)
        d.commit()
    return raw, config, diff_ids


@pytest.fixture(scope="module")
def image(tmp_path_factory, plain_layers):
    root = tmp_path_factory.mktemp("interop")
    layout = root / "layout"
    raw, config, diff_ids = write_image(f"oci:{layout}:test:1", plain_layers)
    return {"root": root, "layout": str(layout), "manifest": raw, "config": config, "diff_ids": diff_ids}


def check_with_kpod(src: str, config: bytes, diff_ids: list[str]):
    """Read *src* with kpod's source and check config bytes and layer contents."""
    with ref(src).new_source(CTX) as s:
        raw, _ = s.get_manifest()
        m = parse_manifest(raw)
        f, _ = s.get_blob(m.config.digest)
        assert sha(f.read()) == sha(config)
        got = []
        for l in m.layers:
            f, _ = s.get_blob(l.digest)
            h = hashlib.sha256()
            d = open_decompressed(f)
            while chunk := d.read(1 << 20):
                h.update(chunk)
            got.append("sha256:" + h.hexdigest())
        assert got == diff_ids
    return raw


# ------------------------------------------------------------------------------------------
# kpod writes, skopeo reads
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dir", "oci", "oci-archive", "docker-archive"])
def test_skopeo_reads_kpod_output(image, kind, tmp_path):
    target = {
        "dir": f"dir:{tmp_path}/d",
        "oci": f"oci:{tmp_path}/l:mine",
        "oci-archive": f"oci-archive:{tmp_path}/o.tar:mine",
        "docker-archive": f"docker-archive:{tmp_path}/a.tar:localhost/mine:1",
    }[kind]
    res = copy_image(ref(f"oci:{image['layout']}:test:1"), ref(target), CTX)
    raw = skopeo("inspect", "--raw", target).stdout
    cfg = skopeo("inspect", "--config", "--raw", target).stdout
    assert sha(cfg) == sha(image["config"])
    if kind != "docker-archive":
        assert raw == res.manifest  # byte for byte
    else:
        # skopeo synthesizes its own manifest for archives; layers are the diff_ids
        assert [l["digest"] for l in json.loads(raw)["layers"]] == image["diff_ids"]
        with tarfile.open(f"{tmp_path}/a.tar") as tf:
            assert json.load(tf.extractfile("manifest.json"))[0]["RepoTags"] == ["localhost/mine:1"]
    # skopeo copies it on, and kpod reads skopeo's copies
    skopeo("copy", "-q", target, f"dir:{tmp_path}/sk-dir")
    skopeo("copy", "-q", target, f"oci:{tmp_path}/sk-oci:x")
    check_with_kpod(f"dir:{tmp_path}/sk-dir", image["config"], image["diff_ids"])
    check_with_kpod(f"oci:{tmp_path}/sk-oci:x", image["config"], image["diff_ids"])


def test_skopeo_reads_kpod_multi_image_archive(image, plain_layers, tmp_path):
    other = [plain_layers[0], _tar([("other.txt", b"x\n")])]
    _, other_cfg, other_ids = write_image(f"oci:{tmp_path}/l:other", other, cmd="/bin/true")
    out = tmp_path / "multi.tar"
    with DockerArchiveWriter(str(out)) as w:
        copy_image(ref(f"oci:{image['layout']}:test:1"), w.reference(["localhost/a:1"]), CTX)
        copy_image(ref(f"oci:{tmp_path}/l:other"), w.reference(["localhost/b:2", "localhost/b:latest"]), CTX)
    for sel, cfg in ((":@0", image["config"]), (":@1", other_cfg), (":localhost/b:2", other_cfg),
                     (":localhost/a:1", image["config"])):
        got = skopeo("inspect", "--config", "--raw", f"docker-archive:{out}{sel}").stdout
        assert sha(got) == sha(cfg), sel
    skopeo("copy", "-q", f"docker-archive:{out}:localhost/b:latest", f"dir:{tmp_path}/b")
    check_with_kpod(f"dir:{tmp_path}/b", other_cfg, other_ids)
    assert [r.repo_tags for r in list_images(str(out))] == [["localhost/a:1"], ["localhost/b:2", "localhost/b:latest"]]


def test_skopeo_copies_kpod_index(image, plain_layers, tmp_path):
    layout = tmp_path / "multi"
    descs = []
    configs = {}
    for arch in ("amd64", "arm64"):
        raw, cfg, _ = write_image(f"oci:{layout}:{arch}", plain_layers, arch=arch)
        descs.append(Descriptor(MEDIA_TYPE_OCI_MANIFEST, sha(raw), len(raw), platform=Platform("linux", arch)))
        configs[arch] = cfg
    index = build_index(descs)
    with ref(f"oci:{layout}:list").new_destination(CTX) as d:
        d.put_manifest(index, MEDIA_TYPE_OCI_INDEX)
        d.commit()
    skopeo("copy", "-q", "--all", f"oci:{layout}:list", f"oci:{tmp_path}/sk:list")
    assert skopeo("inspect", "--raw", f"oci:{tmp_path}/sk:list").stdout == index
    res = copy_image(ref(f"oci:{tmp_path}/sk:list"), ref(f"dir:{tmp_path}/all"), CTX, all_images=True)
    assert res.manifest == index
    got = skopeo("inspect", "--config", "--raw", "--override-arch", "arm64", f"dir:{tmp_path}/all").stdout
    assert sha(got) == sha(configs["arm64"])


# ------------------------------------------------------------------------------------------
# skopeo writes, kpod reads
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dir", "oci", "oci-archive", "docker-archive", "docker-archive-gz"])
def test_kpod_reads_skopeo_output(image, kind, tmp_path):
    target = {
        "dir": f"dir:{tmp_path}/d",
        "oci": f"oci:{tmp_path}/l:theirs",
        "oci-archive": f"oci-archive:{tmp_path}/o.tar:theirs",
        "docker-archive": f"docker-archive:{tmp_path}/a.tar:example.com/theirs:2",
        "docker-archive-gz": f"docker-archive:{tmp_path}/a.tar:example.com/theirs:2",
    }[kind]
    skopeo("copy", "-q", f"oci:{image['layout']}:test:1", target)
    if kind == "docker-archive-gz":  # `docker save | gzip` style
        data = open(f"{tmp_path}/a.tar", "rb").read()
        open(f"{tmp_path}/a.tar", "wb").write(gzip.compress(data, compresslevel=1))
    check_with_kpod(target, image["config"], image["diff_ids"])
    if kind.startswith("docker-archive"):
        with ref(f"docker-archive:{tmp_path}/a.tar").new_source(CTX) as s:
            assert s.repo_tags() == ["example.com/theirs:2"]
        refs = list_images(f"{tmp_path}/a.tar")
        assert [r.repo_tags for r in refs] == [["example.com/theirs:2"]]
    # and kpod copies it on to every local format
    for dst in (f"dir:{tmp_path}/k-dir", f"oci:{tmp_path}/k-oci:x", f"oci-archive:{tmp_path}/k.tar",
                f"docker-archive:{tmp_path}/k-a.tar:localhost/k:1"):
        res = copy_image(ref(target), ref(dst), CTX)
        assert res.config_digest == sha(image["config"])
        check_with_kpod(dst, image["config"], image["diff_ids"])


def test_kpod_reads_skopeo_mislabeled_and_zstd_layers(image, tmp_path):
    # skopeo's docker-archive source labels uncompressed layers as gzip; kept in a dir copy
    skopeo("copy", "-q", f"oci:{image['layout']}:test:1", f"docker-archive:{tmp_path}/a.tar:x/y:1")
    skopeo("copy", "-q", f"docker-archive:{tmp_path}/a.tar", f"dir:{tmp_path}/mislabeled")
    res = copy_image(ref(f"dir:{tmp_path}/mislabeled"), ref(f"docker-archive:{tmp_path}/b.tar"), CTX)
    assert res.media_type == MEDIA_TYPE_DOCKER_MANIFEST
    check_with_kpod(f"docker-archive:{tmp_path}/b.tar", image["config"], image["diff_ids"])
    # zstd layers written by skopeo
    skopeo("copy", "-q", "--dest-compress-format", "zstd", f"oci:{image['layout']}:test:1", f"oci:{tmp_path}/z:z")
    m = parse_manifest(skopeo("inspect", "--raw", f"oci:{tmp_path}/z:z").stdout)
    assert all(l.media_type.endswith("+zstd") for l in m.layers)
    check_with_kpod(f"oci:{tmp_path}/z:z", image["config"], image["diff_ids"])
    copy_image(ref(f"oci:{tmp_path}/z:z"), ref(f"docker-archive:{tmp_path}/z.tar"), CTX)
    assert sha(skopeo("inspect", "--config", "--raw", f"docker-archive:{tmp_path}/z.tar").stdout) == sha(image["config"])
    # kpod's zstd output is readable by skopeo
    copy_image(ref(f"oci:{image['layout']}:test:1"), ref(f"oci:{tmp_path}/kz:z"), CTX, compression="zstd")
    skopeo("copy", "-q", f"oci:{tmp_path}/kz:z", f"dir:{tmp_path}/kz-dir")
    check_with_kpod(f"dir:{tmp_path}/kz-dir", image["config"], image["diff_ids"])


def test_skopeo_and_kpod_share_a_layout(image, tmp_path):
    """Both tools add refs to one layout; each sees the other's."""
    layout = tmp_path / "shared"
    skopeo("copy", "-q", f"oci:{image['layout']}:test:1", f"oci:{layout}:from-skopeo")
    copy_image(ref(f"oci:{image['layout']}:test:1"), ref(f"oci:{layout}:from-kpod"), CTX)
    skopeo("copy", "-q", f"oci:{layout}:from-kpod", f"dir:{tmp_path}/d")
    check_with_kpod(f"oci:{layout}:from-skopeo", image["config"], image["diff_ids"])
    names = [e["annotations"]["org.opencontainers.image.ref.name"] for e in json.load(open(layout / "index.json"))["manifests"]]
    assert names == ["from-skopeo", "from-kpod"]
    # a blob skopeo wrote is reused (not rewritten) by kpod
    assert not [n for n in os.listdir(layout / "blobs" / "sha256") if n.startswith(".")]
