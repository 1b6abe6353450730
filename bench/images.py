"""Test images for the benchmarks, built locally with no network (python stdlib only).

* busybox: one uncompressed layer from :func:`libpod_core.testimage.rootfs_tar`, as a
  docker-archive (the format both kpod and podman load).
* large: busybox plus a second, gzip-compressed layer holding a Python standard library tree
  (about 250 MB of tar in about 8,000 files), as a docker-archive with gzip layers.
* many: one docker-archive with N distinct images (configs differ by a label) that share the
  busybox layer, for the ``images`` scenario.

Everything is cached in a directory; a file that is present is reused.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import sysconfig
import tarfile
import tempfile

BUSYBOX_REF = "localhost/kpodbench/busybox:latest"
LARGE_REF = "localhost/kpodbench/large:latest"
MANY_REPO = "localhost/kpodbench/many"

# Target size of the large layer: ~250 MB of tar in ~8,000 files.
# The tree is copied once, then again under another prefix until both minimums are met.
LARGE_MIN_BYTES = 200 * 1024 * 1024
LARGE_MIN_ENTRIES = 7000

CREATED = "2024-01-01T00:00:00Z"
ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _config(diff_ids: list[str], labels: dict[str, str] | None = None, comment: str = "kpod bench") -> bytes:
    cfg = {
        "architecture": "amd64",
        "os": "linux",
        "created": CREATED,
        "config": {"Env": ENV, "Cmd": ["sh"], "Labels": labels or {}},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in diff_ids]},
        "history": [{"created": CREATED, "created_by": f"{comment} layer {i}"} for i in range(len(diff_ids))],
    }
    return json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = len(data), 0o644, 1704067200
    tf.addfile(ti, io.BytesIO(data))


def _add_file(tf: tarfile.TarFile, name: str, path: str) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = os.path.getsize(path), 0o644, 1704067200
    with open(path, "rb") as f:
        tf.addfile(ti, f)


def _write_archive(dest: str, images: list[tuple[bytes, list[str], list[tuple[str, str]]]]) -> None:
    """Write a docker-archive. images: (config bytes, repo tags, [(archive layer name, file path)])."""
    tmp = dest + ".tmp"
    manifest = []
    seen: set[str] = set()
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
        for cfg, tags, layers in images:
            cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
            if cfg_name not in seen:
                _add_bytes(tf, cfg_name, cfg)
                seen.add(cfg_name)
            for name, path in layers:
                if name not in seen:
                    _add_file(tf, name, path)
                    seen.add(name)
            manifest.append({"Config": cfg_name, "RepoTags": tags, "Layers": [n for n, _ in layers]})
        _add_bytes(tf, "manifest.json", json.dumps(manifest).encode())
    os.replace(tmp, dest)


def busybox_layer(cache: str) -> tuple[str, str]:
    """(path of the uncompressed busybox layer tar, its sha256 hex)."""
    path = os.path.join(cache, "busybox-layer.tar")
    if not os.path.exists(path):
        from libpod_core.testimage import rootfs_tar

        data = rootfs_tar()
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)
    return path, sha256_file(path)


def busybox_archive(cache: str) -> str:
    dest = os.path.join(cache, "busybox.tar")
    if not os.path.exists(dest):
        layer, diff = busybox_layer(cache)
        _write_archive(dest, [(_config([diff]), [BUSYBOX_REF], [(f"{diff}/layer.tar", layer)])])
    return dest


def many_archive(cache: str, count: int) -> str:
    """One docker-archive holding *count* distinct images: the shared busybox layer plus a tiny
    layer of their own (one file), so no two images have the same top layer (as real images)."""
    dest = os.path.join(cache, f"many-{count}.tar")
    if not os.path.exists(dest):
        layer, diff = busybox_layer(cache)
        tiny_dir = os.path.join(cache, "many-layers")
        os.makedirs(tiny_dir, exist_ok=True)
        images = []
        for i in range(count):
            tiny = os.path.join(tiny_dir, f"{i:04d}.tar")
            if not os.path.exists(tiny):
                with tarfile.open(tiny + ".tmp", "w", format=tarfile.PAX_FORMAT) as tf:
                    _add_bytes(tf, "etc/kpodbench-index", f"{i}\n".encode())
                os.replace(tiny + ".tmp", tiny)
            tdiff = sha256_file(tiny)
            cfg = _config([diff, tdiff], labels={"kpodbench.index": str(i)})
            layers = [(f"{diff}/layer.tar", layer), (f"{tdiff}/layer.tar", tiny)]
            images.append((cfg, [f"{MANY_REPO}{i:04d}:latest"], layers))
        _write_archive(dest, images)
        shutil.rmtree(tiny_dir, ignore_errors=True)
    return dest


def stdlib_source() -> str:
    """A Python standard library tree to copy (pyenv's 3.11 if present, else this interpreter's)."""
    for cand in ("/root/.pyenv/versions/3.11.7/lib/python3.11", sysconfig.get_paths()["stdlib"]):
        if os.path.isdir(cand):
            return cand
    raise FileNotFoundError("no Python standard library tree found")


def _stdlib_files(src: str) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if d not in ("site-packages", "dist-packages"))
        for fn in sorted(filenames):
            p = os.path.join(dirpath, fn)
            if os.path.isfile(p) and not os.path.islink(p):
                out.append(p)
    return out


def large_layer(cache: str) -> dict:
    """Build the stdlib layer: uncompressed tar (for diff_id) and its gzip form. Returns info."""
    info_path = os.path.join(cache, "large-layer.json")
    if os.path.exists(info_path):
        with open(info_path) as f:
            info = json.load(f)
        if os.path.exists(info["gz"]):
            return info
    src = stdlib_source()
    files = _stdlib_files(src)
    raw = os.path.join(cache, "large-layer.tar")
    total = 0
    nfiles = 0
    copies = 0
    if True:
        with tarfile.open(raw + ".tmp", mode="w", format=tarfile.PAX_FORMAT) as tf:
            # Copy the tree once, then pad with further copies until both targets are met.
            while copies == 0 or total < LARGE_MIN_BYTES or nfiles < LARGE_MIN_ENTRIES:
                prefix = "usr/lib/python3" if copies == 0 else f"usr/lib/python3-copy{copies}"
                for dirpath, dirnames, filenames in os.walk(src):
                    dirnames[:] = sorted(d for d in dirnames if d not in ("site-packages", "dist-packages"))
                    rel = os.path.relpath(dirpath, src)
                    arc = prefix if rel == "." else f"{prefix}/{rel}"
                    ti = tf.gettarinfo(dirpath, arc)
                    ti.uid = ti.gid = 0
                    ti.uname = ti.gname = "root"
                    tf.addfile(ti)
                    nfiles += 1
                    for fn in sorted(filenames):
                        p = os.path.join(dirpath, fn)
                        if not os.path.isfile(p) or os.path.islink(p):
                            continue
                        ti = tf.gettarinfo(p, f"{arc}/{fn}")
                        ti.uid = ti.gid = 0
                        ti.uname = ti.gname = "root"
                        with open(p, "rb") as f:
                            tf.addfile(ti, f)
                        total += ti.size
                        nfiles += 1
                copies += 1
                if copies > 50:
                    break
    os.replace(raw + ".tmp", raw)
    diff = sha256_file(raw)
    gz = os.path.join(cache, "large-layer.tar.gz")
    with open(raw, "rb") as fin, open(gz + ".tmp", "wb") as fout:
        # gzip header with mtime 0 for reproducibility; level 6 like the Go default.
        with gzip.GzipFile(fileobj=fout, mode="wb", compresslevel=6, mtime=0) as gzf:
            shutil.copyfileobj(fin, gzf, 1 << 20)
    os.replace(gz + ".tmp", gz)
    info = {
        "source": src,
        "entries": nfiles,
        "copies": copies,
        "content_bytes": total,
        "tar_bytes": os.path.getsize(raw),
        "gzip_bytes": os.path.getsize(gz),
        "diff_id": diff,
        "gz": gz,
        "raw": raw,
    }
    with open(info_path, "w") as f:
        json.dump(info, f, indent=1)
    return info


def large_archive(cache: str) -> tuple[str, dict]:
    """docker-archive of busybox + the stdlib layer, layers gzip-compressed."""
    dest = os.path.join(cache, "large.tar")
    info = large_layer(cache)
    if not os.path.exists(dest):
        bb_layer, bb_diff = busybox_layer(cache)
        bb_gz = os.path.join(cache, "busybox-layer.tar.gz")
        if not os.path.exists(bb_gz):
            with open(bb_layer, "rb") as fin, gzip.GzipFile(bb_gz + ".tmp", "wb", compresslevel=6, mtime=0) as g:
                shutil.copyfileobj(fin, g)
            os.replace(bb_gz + ".tmp", bb_gz)
        cfg = _config([bb_diff, info["diff_id"]], comment="kpod bench large")
        _write_archive(
            dest,
            [(cfg, [LARGE_REF], [(f"{bb_diff}/layer.tar.gz", bb_gz), (f"{info['diff_id']}/layer.tar.gz", info["gz"])])],
        )
    return dest, info


if __name__ == "__main__":  # manual use: python bench/images.py CACHE_DIR
    d = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()
    os.makedirs(d, exist_ok=True)
    print(busybox_archive(d))
    print(large_archive(d))
    print(many_archive(d, 5))
