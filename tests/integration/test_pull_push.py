"""kpod pull / push / login / logout / image trust against a real docker-registry on
127.0.0.1, with registries.conf, policy.json and registries.d given through kpod's config."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import time

import pytest

from conftest import KPOD, assert_one_error_line
from libpod_core.testimage import rootfs_tar
from test_registry import bcrypt_hash, registry

pytestmark = pytest.mark.integration


def write_config(kpod, tmp_path, *, search=(), policy=None, insecure=()):
    conf = tmp_path / "registries.conf"
    lines = [f"unqualified-search-registries = {json.dumps(list(search))}"]
    for loc in insecure:
        lines += ["[[registry]]", f'location = "{loc}"', "insecure = true"]
    conf.write_text("\n".join(lines) + "\n")
    pol = tmp_path / "policy.json"
    pol.write_text(json.dumps(policy or {"default": [{"type": "insecureAcceptAnything"}]}))
    regd = tmp_path / "registries.d"
    regd.mkdir(exist_ok=True)
    cfg = tmp_path / "kpod.yaml"
    cfg.write_text(f"registries_conf: {conf}\nsignature_policy: {pol}\nregistries_d: {regd}\n")
    kpod.global_args = ["--config", str(cfg)] + kpod.global_args
    return pol


@pytest.fixture
def reg(tmp_path):
    with registry(str(tmp_path / "reg")) as r:
        yield r


@pytest.fixture
def kp(kpod, tmp_path, reg):
    write_config(kpod, tmp_path, search=[reg.addr], insecure=[reg.addr])
    src = tmp_path / "bb.tar"
    src.write_bytes(rootfs_tar())
    kpod("import", "-q", "-c", 'CMD ["sh"]', str(src), "busybox")
    yield kpod
    kpod("rmi", "-a", "-f", check=False)


def layer_count(kpod):
    return sqlite3.connect(os.path.join(kpod.graphroot, "kpod.db")).execute("SELECT COUNT(*) FROM layers").fetchone()[0]


def test_push_pull_round_trip_keeps_the_image_id(kp, reg, tmp_path):
    iid = kp("images", "--no-trunc", "-q").stdout.strip()
    digestfile = tmp_path / "digest"
    kp("push", "--digestfile", str(digestfile), "busybox", f"{reg.addr}/lib/busybox:1")
    assert digestfile.read_text().startswith("sha256:")
    kp("rmi", "-a")
    out = kp("pull", "-q", f"{reg.addr}/lib/busybox:1").stdout.split()
    assert out == [iid]
    row = kp("images", "--digests", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}}").stdout.split()
    assert row == [f"{reg.addr}/lib/busybox:1", digestfile.read_text().strip()]
    # pulling again reuses every layer; a short name resolves through the one search registry
    kp("pull", "-q", "lib/busybox:1")
    assert layer_count(kp) == 1
    proc = kp("pull", "-q", f"docker://{reg.addr}/lib/busybox:1")
    assert proc.stdout.split() == [iid]


@pytest.mark.parametrize("fmt, comp", [("v2s2", "gzip"), ("oci", "zstd")])
def test_push_formats_and_compression(kp, reg, fmt, comp, tmp_path):
    kp("push", "--format", fmt, "--compression-format", comp, "busybox", f"{reg.addr}/f/{fmt}:1")
    raw = json.loads(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{reg.addr}/f/{fmt}:1"],
                                    capture_output=True, text=True, check=True).stdout)
    want = "application/vnd.docker.distribution.manifest.v2+json" if fmt == "v2s2" else "application/vnd.oci.image.manifest.v1+json"
    assert raw["mediaType"] == want
    assert raw["layers"][0]["mediaType"].endswith("zstd" if comp == "zstd" else "gzip")
    iid = kp("images", "--no-trunc", "-q").stdout.strip()
    kp("rmi", "-a")
    assert kp("pull", "-q", f"{reg.addr}/f/{fmt}:1").stdout.split() == [iid]
    # the layer cache keeps the compressed blob exactly as pulled (no recompression)
    blobs = [p for p in glob.glob(os.path.join(kp.graphroot, "layer-cache", "*", "*")) if p.endswith((".blob", ".tar.zst"))]
    assert len(blobs) == 1 and blobs[0].endswith(".blob")
    with open(blobs[0], "rb") as f:
        assert "sha256:" + hashlib.file_digest(f, "sha256").hexdigest() == raw["layers"][0]["digest"]
    # and gives the exact tar stream back: save/load and push/pull keep the image ID
    kp("save", "-o", str(tmp_path / "saved.tar"), f"{reg.addr}/f/{fmt}:1")
    kp("push", f"{reg.addr}/f/{fmt}:1", f"{reg.addr}/again/{fmt}:1")
    again = json.loads(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{reg.addr}/again/{fmt}:1"],
                                      capture_output=True, text=True, check=True).stdout)
    # push compresses with gzip by default: a kept gzip blob goes as it is, a zstd one is recompressed
    assert (again["layers"][0]["digest"] == raw["layers"][0]["digest"]) == (comp == "gzip")
    assert again["layers"][0]["mediaType"].endswith("gzip")
    kp("rmi", "-a")
    assert kp("load", "-q", "-i", str(tmp_path / "saved.tar")).returncode == 0
    assert kp("images", "--no-trunc", "-q").stdout.split() == [iid]
    kp("rmi", "-a")
    assert kp("pull", "-q", f"{reg.addr}/again/{fmt}:1").stdout.split() == [iid]
    assert kp("system", "check").stdout.strip() == "No problems found"


def test_pull_errors_leave_store_unchanged(kp, reg, tmp_path):
    before = kp("images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}").stdout
    assert_one_error_line(kp("pull", f"{reg.addr}/nope/nothing:1", check=False), 125, "manifest unknown")
    assert_one_error_line(kp("pull", "Bad//Name", check=False), 125)
    assert_one_error_line(kp("pull", "--tls-verify=false", "127.0.0.1:1/x/y:1", check=False), 125)
    assert kp("images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}").stdout == before


def test_ambiguous_short_name_is_an_error_on_a_non_terminal(kpod, tmp_path, reg):
    write_config(kpod, tmp_path, search=[reg.addr, "127.0.0.2:5999"], insecure=[reg.addr])
    proc = kpod("pull", "busybox", check=False)
    assert_one_error_line(proc, 125, "ambiguous")


def test_policy_reject_and_trust_commands(kp, reg, tmp_path):
    kp("push", "busybox", f"{reg.addr}/t/busybox:1")
    policy = tmp_path / "policy.json"
    kp("image", "trust", "set", "--policypath", str(policy), "-t", "reject", f"{reg.addr}/t")
    shown = json.loads(kp("image", "trust", "show", "--policypath", str(policy), "--json").stdout)
    assert any(r["name"] == f"{reg.addr}/t" and r["type"] == "reject" for r in shown)
    kp("rmi", "-a")
    proc = kp("pull", f"{reg.addr}/t/busybox:1", check=False)
    assert_one_error_line(proc, 125, "reject")
    assert kp("images", "-qa").stdout.strip() == ""
    # a malformed policy rejects every pull, naming the file
    policy.write_text('{"default": [{"type": "insecureAcceptAnything", "bogus": 1}]}')
    assert_one_error_line(kp("pull", f"{reg.addr}/t/busybox:1", check=False), 125, str(policy))


def test_login_logout_with_basic_auth(kpod, tmp_path):
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"alice:{bcrypt_hash('s3cret')}\n")
    auth = {"htpasswd": {"realm": "kpod-test", "path": str(htpasswd)}}
    with registry(str(tmp_path / "authreg"), auth=auth) as r:
        write_config(kpod, tmp_path, insecure=[r.addr])
        src = tmp_path / "bb.tar"
        src.write_bytes(rootfs_tar())
        kpod("import", "-q", str(src), "busybox")
        authfile = str(tmp_path / "auth.json")
        proc = kpod("login", "--authfile", authfile, "-u", "alice", "--password-stdin", r.addr, input="wrong\n", check=False)
        assert_one_error_line(proc, 125, "invalid username/password")
        assert not os.path.exists(authfile)
        assert_one_error_line(kpod("push", "busybox", f"{r.addr}/p/bb:1", check=False), 125, "authentication required")
        out = kpod("login", "--authfile", authfile, "-u", "alice", "--password-stdin", r.addr, input="s3cret\n").stdout
        assert "Login Succeeded" in out and os.stat(authfile).st_mode & 0o777 == 0o600
        assert kpod("login", "--authfile", authfile, "--get-login", r.addr).stdout.strip() == "alice"
        kpod("push", "--authfile", authfile, "busybox", f"{r.addr}/p/bb:1")
        kpod("rmi", "-a")
        kpod("pull", "-q", "--authfile", authfile, f"{r.addr}/p/bb:1")
        kpod("logout", "--authfile", authfile, r.addr)
        assert_one_error_line(kpod("pull", "--authfile", authfile, f"{r.addr}/p/bb:1", check=False), 125)
        kpod("pull", "-q", "--creds", "alice:s3cret", f"{r.addr}/p/bb:1")


def test_pull_killed_midway_then_completes(kp, reg, tmp_path):
    big = tmp_path / "big.tar"
    import io
    import tarfile

    with tarfile.open(big, "w") as tf:
        for i in range(4):
            data = os.urandom(24 * 1024 * 1024)
            ti = tarfile.TarInfo(f"blob{i}")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    kp("import", "-q", str(big), "big")
    kp("push", "big", f"{reg.addr}/big/img:1")
    iid = kp("images", "--no-trunc", "--format", "{{.ID}}", "big").stdout.strip()
    kp("rmi", "-a")
    proc = subprocess.Popen([KPOD, *kp.global_args, "pull", "-q", f"{reg.addr}/big/img:1"], env=kp.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = os.path.join(kp.graphroot, "kpod.db")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill while a layer is being written
        try:
            n = sqlite3.connect(db, timeout=0.1).execute("SELECT COUNT(*) FROM layers WHERE incomplete = 1").fetchone()[0]
        except sqlite3.Error:
            n = 0
        if n:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert kp("images", "-qa").stdout.strip() == ""
    assert kp("pull", "-q", f"{reg.addr}/big/img:1").stdout.split() == [iid]
    assert kp("system", "check").stdout.strip() == "No problems found"


def _gzip_layers_archive(kp, tmp_path, name, corrupt=False):
    """busybox saved by kpod as a docker-archive, its layer file then gzipped (as skopeo and
    older docker versions write them); with *corrupt*, bytes in the middle are damaged."""
    import gzip
    import tarfile

    plain = tmp_path / f"{name}-plain.tar"
    kp("save", "-o", str(plain), "busybox")
    work = tmp_path / name
    work.mkdir()
    with tarfile.open(plain) as tf:
        tf.extractall(work, filter="fully_trusted")
    manifest = json.loads((work / "manifest.json").read_text())
    layer = work / manifest[0]["Layers"][0]
    gz = gzip.compress(layer.read_bytes(), mtime=0)
    if corrupt:
        gz = gz[: len(gz) // 2] + bytes(64) + gz[len(gz) // 2 + 64:]
    layer.write_bytes(gz)
    manifest[0]["RepoTags"] = [f"example.com/{name}:1"]
    (work / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / f"{name}.tar"
    subprocess.run(["tar", "-cf", str(out), "-C", str(work), "."], check=True)
    return out, "sha256:" + hashlib.sha256(gz).hexdigest()


def test_loaded_gzip_layer_is_kept_and_pushed_as_it_is(kp, reg, tmp_path):
    iid = kp("images", "--no-trunc", "-q").stdout.strip()
    archive, gz_digest = _gzip_layers_archive(kp, tmp_path, "gz")
    kp("rmi", "-a")
    kp("load", "-q", "-i", str(archive))
    assert kp("images", "--no-trunc", "-q").stdout.split() == [iid]  # the same config, so the same ID
    blobs = glob.glob(os.path.join(kp.graphroot, "layer-cache", "*", "*.blob"))
    assert len(blobs) == 1
    with open(blobs[0], "rb") as f:
        assert "sha256:" + hashlib.file_digest(f, "sha256").hexdigest() == gz_digest
    kp("push", "example.com/gz:1", f"{reg.addr}/kept/gz:1")
    raw = json.loads(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{reg.addr}/kept/gz:1"],
                                    capture_output=True, text=True, check=True).stdout)
    assert [l["digest"] for l in raw["layers"]] == [gz_digest]  # sent as it was loaded, not recompressed
    kp("rmi", "-a")
    assert kp("pull", "-q", f"{reg.addr}/kept/gz:1").stdout.split() == [iid]


def test_load_of_a_corrupt_gzip_layer_leaves_the_store_unchanged(kp, tmp_path):
    archive, _ = _gzip_layers_archive(kp, tmp_path, "bad", corrupt=True)
    kp("rmi", "-a")  # (else the stored layer with the same diff ID would be reused, unread)
    assert_one_error_line(kp("load", "-i", str(archive), check=False), 125)
    assert kp("images", "-a", "-q").stdout.strip() == ""
    assert layer_count(kp) == 0
    assert kp("system", "check").stdout.strip() == "No problems found"
