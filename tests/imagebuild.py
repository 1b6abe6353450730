"""Build test images on disk without network: OCI layouts and archives from busybox-static."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile

from libpod_core.testimage import rootfs_tar


def _blob(layout: str, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest[7:])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return digest, len(data)


def layer_with(files: dict[str, bytes], whiteouts: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        dirs = set()
        for name in list(files) + list(whiteouts):
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        for d in sorted(dirs):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
            tf.addfile(ti)
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1_700_000_000
            tf.addfile(ti, io.BytesIO(data))
        for w in whiteouts:
            d, _, base = w.rpartition("/")
            ti = tarfile.TarInfo(f"{d}/.wh.{base}" if d else f".wh.{base}")
            ti.mtime = 1_700_000_000
            tf.addfile(ti, io.BytesIO(b""))
    return buf.getvalue()


def add_image(layout: str, ref_name: str, layers: list[bytes], *, cmd=("sh",), labels=None, gz: bool = True) -> str:
    """Add an image to an OCI layout (created if needed); returns the config digest."""
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    diff_ids, descs = [], []
    for raw in layers:
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        data = gzip.compress(raw, mtime=0) if gz else raw
        d, n = _blob(layout, data)
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gz else ""), "digest": d, "size": n})
    config = {
        "created": "2024-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": list(cmd), "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Labels": labels or {}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"layer {i}"} for i in range(len(layers))],
    }
    cd, cn = _blob(layout, json.dumps(config).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
                "layers": descs}
    md, mn = _blob(layout, json.dumps(manifest).encode())
    idx_path = os.path.join(layout, "index.json")
    index = {"schemaVersion": 2, "manifests": []}
    if os.path.exists(idx_path):
        index = json.load(open(idx_path))
    index["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn,
                               "annotations": {"org.opencontainers.image.ref.name": ref_name}})
    with open(idx_path, "w") as f:
        json.dump(index, f)
    return cd


def tar_dir(src: str, dest: str) -> str:
    with tarfile.open(dest, "w") as tf:
        for name in sorted(os.listdir(src)):
            tf.add(os.path.join(src, name), arcname=name)
    return dest


def busybox_layout(path: str, ref: str = "busybox") -> str:
    add_image(path, ref, [rootfs_tar()])
    return path
