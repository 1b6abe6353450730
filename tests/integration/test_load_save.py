"""load and save through the real CLI: formats, multi-image archives, shared layers, interop
with skopeo and podman, and bad archives that must leave the store unchanged."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from conftest import assert_one_error_line
from imagebuild import add_image, busybox_layout, layer_with, tar_dir
from libpod_core.testimage import rootfs_tar


def skopeo(*args):
    proc = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def two_images(tmp_path):
    """A docker-archive (written by skopeo) with two images sharing the busybox base layer."""
    layout = str(tmp_path / "layout")
    base = rootfs_tar()
    add_image(layout, "base", [base], cmd=("sh",))
    add_image(layout, "app", [base, layer_with({"app/hello": b"hi\n"}, whiteouts=("etc/group",))], cmd=("cat", "/app/hello"))
    archive = str(tmp_path / "two.tar")
    skopeo("copy", f"oci:{layout}:base", f"docker-archive:{archive}:example.com/base:1")
    return layout, archive


def test_load_save_round_trip_all_formats(kpod, tmp_path, two_images):
    layout, _ = two_images
    oa = tar_dir(layout, str(tmp_path / "in.oci.tar"))
    out = kpod("load", "-i", oa).stdout.split("\n")
    assert "Loaded image: localhost/base:latest" in out and "Loaded image: localhost/app:latest" in out
    ids = {l.split()[1]: l.split()[0] for l in kpod("images", "--no-trunc", "--format", "{{.ID}} {{.Repository}}").stdout.splitlines()}
    app_id = ids["localhost/app"]
    for fmt, target in (("docker-archive", "a.tar"), ("oci-archive", "b.tar"), ("oci-dir", "c"), ("docker-dir", "d")):
        dest = str(tmp_path / target)
        kpod("save", "--format", fmt, "-o", dest, "app")
        transport = {"docker-archive": "docker-archive", "oci-archive": "oci-archive", "oci-dir": "oci", "docker-dir": "dir"}[fmt]
        cfg = json.loads(skopeo("inspect", "--config", f"{transport}:{dest}"))
        assert cfg["rootfs"]["diff_ids"][1] == json.loads(kpod("image", "inspect", "app").stdout)[0]["RootFS"]["Layers"][1]
        raw = json.loads(skopeo("inspect", "--raw", f"{transport}:{dest}"))
        assert raw["config"]["digest"] == f"sha256:{app_id}"
    # a fresh store loads the saved archives back with the same image ID
    other = type(kpod)(tmp_path / "other")
    try:
        for f in ("a.tar", "b.tar"):
            other("load", "-i", str(tmp_path / f))
            assert other("images", "--no-trunc", "-q").stdout.split() == [app_id]
            other("rmi", "-a")
    finally:
        assert not other.cleanup_network()  # its subnet claim and bridge name go too


def test_multi_image_archive_and_shared_layers(kpod, tmp_path, two_images):
    layout, _ = two_images
    kpod("load", "-i", tar_dir(layout, str(tmp_path / "in.tar")))
    layers_dir = os.path.join(kpod.graphroot, "overlay")
    assert len([d for d in os.listdir(layers_dir) if d != "l"]) == 2  # base layer stored once
    kpod("save", "-o", str(tmp_path / "both.tar"), "base", "app")
    listing = json.loads(subprocess.run(["tar", "xOf", str(tmp_path / "both.tar"), "manifest.json"],
                                        capture_output=True, check=True).stdout)
    assert sorted(t for m in listing for t in m["RepoTags"]) == ["localhost/app:latest", "localhost/base:latest"]
    # removing one image keeps the shared layer for the other
    kpod("rmi", "base")
    assert len([d for d in os.listdir(layers_dir) if d != "l"]) == 2
    kpod("rmi", "app")
    assert [d for d in os.listdir(layers_dir) if d != "l"] == []
    out = kpod("load", "-i", str(tmp_path / "both.tar")).stdout
    assert out.count("Loaded image:") == 2
    assert len([d for d in os.listdir(layers_dir) if d != "l"]) == 2


def test_load_from_stdin_and_save_to_stdout(kpod, tmp_path, two_images):
    _, archive = two_images
    with open(archive, "rb") as f:
        out = kpod("load", input=f.read()).stdout
    assert b"Loaded image: example.com/base:1" in out
    data = kpod("save", "example.com/base:1", input=b"").stdout
    assert isinstance(data, bytes) and len(data) > 1_000_000
    assert b"manifest.json" in data[:1_000_000] or b"manifest.json" in data


def test_skopeo_reads_and_writes(kpod, tmp_path):
    layout = busybox_layout(str(tmp_path / "l"), "bb")
    for transport in ("docker-archive", "oci-archive"):
        dest = str(tmp_path / f"{transport}.tar")
        skopeo("copy", f"oci:{layout}:bb", f"{transport}:{dest}" + (":example.com/bb:1" if transport == "docker-archive" else ":bb"))
        kpod("load", "-i", dest)
    assert kpod("image", "exists", "example.com/bb:1").returncode == 0


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman not installed")
def test_podman_loads_kpod_archive_with_same_id(kpod, tmp_path, two_images):
    layout, _ = two_images
    kpod("load", "-i", tar_dir(layout, str(tmp_path / "in.tar")))
    app_id = kpod("images", "--no-trunc", "--format", "{{.ID}}", "app").stdout.strip()
    kpod("save", "-o", str(tmp_path / "k.tar"), "app")
    import tempfile

    proot = tempfile.mkdtemp(prefix="kp-", dir="/tmp")  # podman wants a runroot under 50 characters
    p = ["podman", "--root", f"{proot}/root", "--runroot", f"{proot}/run", "--storage-driver", "vfs",
         "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
    try:
        proc = subprocess.run([*p, "load", "-i", str(tmp_path / "k.tar")], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        ids = subprocess.run([*p, "images", "--no-trunc", "-q"], capture_output=True, text=True).stdout.split()
        assert ids == [f"sha256:{app_id}"]
    finally:
        subprocess.run([*p, "system", "reset", "-f"], capture_output=True, timeout=120)
        shutil.rmtree(proot, ignore_errors=True)


def _snapshot(kpod):
    return kpod("images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}").stdout


@pytest.mark.parametrize("damage", ["truncated", "wrong-digest", "not-a-tar", "missing-layer", "traversal"])
def test_bad_archives_leave_store_unchanged(kpod, tmp_path, two_images, damage):
    layout, archive = two_images
    if damage != "wrong-digest":  # (a stored layer with the right diff ID would be reused, unread)
        kpod("load", "-i", archive)
    before = _snapshot(kpod)
    bad = str(tmp_path / "bad.tar")
    if damage == "truncated":
        data = open(archive, "rb").read()
        open(bad, "wb").write(data[: len(data) // 2])
    elif damage == "not-a-tar":
        open(bad, "wb").write(b"hello, this is not an archive" * 100)
    else:
        work = tmp_path / "x"
        subprocess.run(["mkdir", "-p", str(work)], check=True)
        subprocess.run(["tar", "-xf", archive, "-C", str(work)], check=True)
        manifest = json.load(open(work / "manifest.json"))
        layer = manifest[0]["Layers"][0]
        if damage == "wrong-digest":
            with open(work / layer, "r+b") as f:
                f.seek(2048)
                f.write(b"CORRUPTED")
        elif damage == "missing-layer":
            os.unlink(work / layer)
        elif damage == "traversal":
            manifest[0]["Layers"][0] = "../../etc/passwd"
            json.dump(manifest, open(work / "manifest.json", "w"))
        manifest[0]["RepoTags"] = ["example.com/evil:1"]
        if damage != "traversal":
            json.dump(manifest, open(work / "manifest.json", "w"))
        subprocess.run(["tar", "-cf", bad, "-C", str(work), "."], check=True)
    proc = kpod("load", "-i", bad, check=False)
    assert_one_error_line(proc, 125)
    assert _snapshot(kpod) == before
    assert kpod("system", "check").returncode == 0


def test_save_errors(kpod, tmp_path):
    assert_one_error_line(kpod("save", "-o", str(tmp_path / "x.tar"), "nope", check=False), 125, "image not known")
    assert_one_error_line(kpod("save", "--format", "oci-dir", "nope", check=False), 125, "needs --output")
    assert not os.path.exists(tmp_path / "x.tar")
    assert_one_error_line(kpod("load", "-i", str(tmp_path / "missing.tar"), check=False), 125, "no such file")


@pytest.mark.timeout(120)
def test_archive_with_a_hostile_pax_header_loads_without_delay(kpod, tmp_path, two_images):
    """A pax header holding a 1 MB run of digits: Python's own tar reader (before 3.11.10 and
    3.12.6, CVE-2024-6232) takes about 15 minutes over it; kpod reads it at once. One over
    1 MiB is refused."""
    import tarfile

    _, archive = two_images

    def repack(out, comment):
        with tarfile.open(archive) as src, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
            for i, ti in enumerate(src.getmembers()):
                if i == 0:
                    ti.pax_headers = {"comment": comment}
                dst.addfile(ti, src.extractfile(ti) if ti.isreg() else None)

    digits = tmp_path / "digits.tar"
    repack(digits, "1" * 1_000_000)
    kpod("load", "-q", "-i", str(digits))
    assert kpod("images", "-q").stdout.split()
    kpod("rmi", "-a", "-f")
    huge = tmp_path / "huge.tar"
    repack(huge, "x" * (1 << 20))
    assert_one_error_line(kpod("load", "-i", str(huge), check=False), 125, "pax extended header")
    assert kpod("images", "-q").stdout.strip() == ""
