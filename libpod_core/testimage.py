"""Build small images from Debian's busybox-static, with no network.

Used by the test suite, ``make run`` and bench/: a root filesystem with /bin/busybox and a
symlink per applet, minimal /etc files, as a directory or a layer tar.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile

BUSYBOX = "/usr/bin/busybox"

PASSWD = "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nwww:x:33:33:www:/var/www:/bin/sh\n"
GROUP = "root:x:0:\ndaemon:x:1:\nwww-data:x:33:\nnogroup:x:65534:\n"


def busybox_applets(busybox: str = BUSYBOX) -> list[str]:
    out = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout
    return sorted({a.strip() for a in out.split() if a.strip() and "/" not in a and a.strip() != "busybox"})


def make_busybox_rootfs(dest: str, busybox: str = BUSYBOX) -> str:
    """Create a busybox root filesystem in directory *dest* (created if needed)."""
    if not os.path.exists(busybox):
        raise FileNotFoundError(f"{busybox} not found: install Debian's busybox-static")
    for d in ("bin", "sbin", "etc", "root", "tmp", "proc", "sys", "dev", "var/www", "usr/bin", "home"):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    shutil.copy2(busybox, os.path.join(dest, "bin", "busybox"))
    for applet in busybox_applets(busybox):
        link = os.path.join(dest, "bin", applet)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    for name, text in (("passwd", PASSWD), ("group", GROUP), ("os-release", 'NAME="kpod test busybox"\nID=busybox\n')):
        with open(os.path.join(dest, "etc", name), "w") as f:
            f.write(text)
    return dest


def rootfs_tar(busybox: str = BUSYBOX, compress: str | None = None) -> bytes:
    """The busybox root filesystem as one layer tar (optionally gzip-compressed)."""
    buf = io.BytesIO()
    mtime = int(os.stat(busybox).st_mtime)
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d, mode in (("bin", 0o755), ("etc", 0o755), ("root", 0o700), ("tmp", 0o1777), ("proc", 0o555),
                        ("sys", 0o555), ("dev", 0o755), ("var", 0o755), ("var/www", 0o755), ("usr", 0o755),
                        ("usr/bin", 0o755), ("home", 0o755), ("sbin", 0o755)):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, mode, mtime
            tf.addfile(ti)
        with open(busybox, "rb") as f:
            data = f.read()
        ti = tarfile.TarInfo("bin/busybox")
        ti.size, ti.mode, ti.mtime = len(data), 0o755, mtime
        tf.addfile(ti, io.BytesIO(data))
        for applet in busybox_applets(busybox):
            ti = tarfile.TarInfo(f"bin/{applet}")
            ti.type, ti.linkname, ti.mtime = tarfile.SYMTYPE, "busybox", mtime
            tf.addfile(ti)
        for name, text in (("passwd", PASSWD), ("group", GROUP)):
            raw = text.encode()
            ti = tarfile.TarInfo(f"etc/{name}")
            ti.size, ti.mode, ti.mtime = len(raw), 0o644, mtime
            tf.addfile(ti, io.BytesIO(raw))
    data = buf.getvalue()
    if compress == "gzip":
        import gzip

        return gzip.compress(data, mtime=0)
    if compress == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(data)
    return data
