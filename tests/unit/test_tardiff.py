from __future__ import annotations

import hashlib
import io
import os
import socket
import stat
import subprocess
import tarfile

import pytest

from libpod_core.errors import InvalidArgument
from libpod_core.tarapply import apply_layer
from libpod_core.tardiff import changes, diff_tar

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="layer tests run as root")

MTIME = 1_600_000_000


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def E(name, type=tarfile.REGTYPE, data=b"", mode=None, uid=0, gid=0, mtime=MTIME, link="",
      major=0, minor=0, pax=None):
    ti = tarfile.TarInfo(name)
    ti.type = type
    ti.mode = mode if mode is not None else (0o755 if type == tarfile.DIRTYPE else 0o644)
    ti.uid, ti.gid, ti.mtime, ti.linkname = uid, gid, mtime, link
    ti.devmajor, ti.devminor = major, minor
    if pax:
        ti.pax_headers = dict(pax)
    if type == tarfile.REGTYPE:
        ti.size = len(data)
    return ti, data


def F(name, data=b"", **kw):
    return E(name, tarfile.REGTYPE, data, **kw)


def D(name, **kw):
    return E(name, tarfile.DIRTYPE, **kw)


def S(name, target, **kw):
    return E(name, tarfile.SYMTYPE, link=target, mode=0o777, **kw)


def H(name, target, **kw):
    return E(name, tarfile.LNKTYPE, link=target, **kw)


def mktar(entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
    return buf.getvalue()


def apply(tar: bytes, dest, fmt):
    os.makedirs(dest, exist_ok=True)
    return apply_layer(io.BytesIO(tar), dest, whiteout_format=fmt)


def run_diff(layer, parents, fmt) -> bytes:
    out = io.BytesIO()
    size, diff_id = diff_tar(layer, parents, fmt, out)
    data = out.getvalue()
    assert size == len(data)
    assert diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    return data


def members(tar: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as tf:
        return tf.getmembers()


def tree(root, hardlinks=True) -> dict:
    """A comparable description of a tree: metadata at second resolution, content,
    xattrs (overlay bookkeeping except opacity left out), hardlink groups."""
    out = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for n in sorted(dirnames + filenames):
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            m = st.st_mode
            content = None
            if stat.S_ISREG(m):
                with open(p, "rb") as f:
                    content = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(m):
                content = os.readlink(p)
            xattrs = {}
            for k in os.listxattr(p, follow_symlinks=False):
                if k.startswith("trusted.overlay.") and k != "trusted.overlay.opaque":
                    continue
                if k.startswith("security.") and k != "security.capability":
                    continue
                xattrs[k] = os.getxattr(p, k, follow_symlinks=False)
            group = None
            if hardlinks and not stat.S_ISDIR(m) and st.st_nlink > 1:
                group = inodes.setdefault(st.st_ino, rel)
            is_whiteout = stat.S_ISCHR(m) and st.st_rdev == 0
            out[rel] = (
                m,
                st.st_uid,
                st.st_gid,
                None if is_whiteout else st.st_mtime_ns // 10**9,
                st.st_size if not stat.S_ISDIR(m) else None,
                st.st_rdev if (stat.S_ISCHR(m) or stat.S_ISBLK(m)) else None,
                content,
                tuple(sorted(xattrs.items())),
                group,
            )
    return out


CAP = b"\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

BASE = [
    D("etc"),
    F("etc/passwd", b"root:x:0:0\n"),
    F("etc/group", b"root:x:0:\n"),
    D("usr"),
    D("usr/bin"),
    F("usr/bin/a", b"a" * 100, mode=0o755),
    F("usr/bin/b", b"b"),
    D("opq"),
    F("opq/x", b"x"),
    D("opq/y"),
    F("opq/y/inner", b"inner"),
    D("var/log", mode=0o750),
    S("lib", "usr/lib"),
]

LAYER = [
    D("etc", mtime=MTIME + 5),
    F("etc/passwd", b"root:x:0:0\nuser:x:1000:1000\n", mtime=MTIME + 5),
    F("etc/.wh.group"),
    D("new", mode=0o700, uid=1000, gid=1000),
    F("new/file", b"new", uid=1000, gid=1000, pax={"SCHILY.xattr.user.note": "hello"}),
    H("new/link", "new/file"),
    S("new/sym", "/etc/passwd"),
    E("new/null", tarfile.CHRTYPE, mode=0o666, major=1, minor=3),
    E("new/fifo", tarfile.FIFOTYPE, mode=0o600),
    F("new/ping", b"ping", mode=0o4755,
      pax={"SCHILY.xattr.security.capability": CAP.decode("utf-8", "surrogateescape")}),
    D("opq", mode=0o711),
    F("opq/.wh..wh..opq"),
    F("opq/z", b"z"),
    D("usr"),
    D("usr/bin"),
    F("usr/bin/.wh.b"),
    D("var/log/sub"),
]


@pytest.fixture
def layers(tmp_path):
    lower = tmp_path / "lower"
    upper = tmp_path / "upper"
    apply(mktar(BASE), lower, "vfs")
    apply(mktar(LAYER), upper, "overlay")
    return lower, upper


# --------------------------------------------------------------------------------------
# changes
# --------------------------------------------------------------------------------------


def test_overlay_changes(layers):
    lower, upper = layers
    got = changes(upper, [lower], "overlay")
    assert got == [
        ("C", "/etc"),
        ("D", "/etc/group"),
        ("C", "/etc/passwd"),
        ("A", "/new"),
        ("A", "/new/fifo"),
        ("A", "/new/file"),
        ("A", "/new/link"),
        ("A", "/new/null"),
        ("A", "/new/ping"),
        ("A", "/new/sym"),
        ("C", "/opq"),
        ("D", "/opq/x"),
        ("D", "/opq/y"),
        ("A", "/opq/z"),
        ("C", "/usr"),
        ("C", "/usr/bin"),
        ("D", "/usr/bin/b"),
        ("C", "/var"),
        ("C", "/var/log"),
        ("A", "/var/log/sub"),
    ]


def test_overlay_changes_base_layer(layers):
    _, upper = layers
    got = dict((p, k) for k, p in changes(upper, None, "overlay"))
    assert got["/etc/group"] == "D" and got["/usr/bin/b"] == "D"
    assert got["/etc/passwd"] == "A" and got["/opq"] == "A"
    assert "/opq/x" not in got  # nothing below to hide


def test_overlay_changes_multiple_lowers(tmp_path):
    bottom, middle, upper = tmp_path / "bottom", tmp_path / "middle", tmp_path / "upper"
    apply(mktar([D("a"), F("a/f1", b"1"), F("a/f2", b"2"), D("b"), F("b/old", b"o"),
                 D("c"), F("c/deep", b"d"), F("plain", b"p")]), bottom, "vfs")
    apply(mktar([F("a/.wh.f1"), D("b"), F("b/.wh..wh..opq"), F("b/mid", b"m"),
                 F(".wh.c"), F("onlymid", b"m")]), middle, "overlay")
    apply(mktar([F("a/f1", b"again"), F("a/f2", b"changed"), F("b/old", b"again"),
                 F("b/mid", b"changed"), F("c/deep", b"again"), F("plain", b"x"),
                 F("onlymid", b"x")]), upper, "overlay")
    got = changes(upper, [middle, bottom], "overlay")
    assert got == [
        ("C", "/a"),
        ("A", "/a/f1"),  # hidden by the middle layer's whiteout
        ("C", "/a/f2"),
        ("C", "/b"),
        ("C", "/b/mid"),
        ("A", "/b/old"),  # the middle layer's opaque dir hides the bottom's b/old
        ("A", "/c"),  # whited out in the middle layer
        ("A", "/c/deep"),
        ("C", "/onlymid"),
        ("C", "/plain"),
    ]


def test_vfs_changes(tmp_path):
    parent = tmp_path / "parent"
    apply(mktar(BASE + [F("same-size", b"aaaa"), F("touched", b"t" * 10),
                        F("chowned", b"c"), F("xattr", b"x"), S("retarget", "a")]), parent, "vfs")
    child = tmp_path / "child"
    subprocess.run(["cp", "-a", str(parent), str(child)], check=True)
    assert changes(child, [parent], "vfs") == []
    (child / "etc/passwd").write_bytes(b"changed and longer\n")
    os.unlink(child / "etc/group")
    subprocess.run(["rm", "-rf", str(child / "opq")], check=True)
    (child / "newdir/sub").mkdir(parents=True)
    (child / "newdir/sub/f").write_bytes(b"f")
    os.chmod(child / "usr/bin/a", 0o700)
    os.chown(child / "chowned", 5, 5)
    os.setxattr(child / "xattr", "user.k", b"v")
    with open(child / "same-size", "wb") as f:
        f.write(b"bbbb")
    os.utime(child / "same-size", ns=(MTIME * 10**9, MTIME * 10**9 + 1))
    os.utime(child / "touched", (MTIME + 100, MTIME + 100))  # same content: not a change
    os.unlink(child / "retarget")
    os.symlink("b", child / "retarget")
    os.utime(child / "retarget", ns=(MTIME * 10**9, MTIME * 10**9), follow_symlinks=False)
    got = changes(child, [parent], "vfs")
    assert got == [
        ("C", "/chowned"),
        ("C", "/etc"),
        ("D", "/etc/group"),
        ("C", "/etc/passwd"),
        ("A", "/newdir"),
        ("A", "/newdir/sub"),
        ("A", "/newdir/sub/f"),
        ("D", "/opq"),
        ("C", "/retarget"),
        ("C", "/same-size"),
        ("C", "/usr"),
        ("C", "/usr/bin"),
        ("C", "/usr/bin/a"),
        ("C", "/xattr"),
    ]
    assert changes(child, str(parent), "vfs") == got
    base = dict((p, k) for k, p in changes(child, None, "vfs"))
    assert set(base.values()) == {"A"} and "/usr/bin/a" in base


def test_unknown_format(tmp_path):
    with pytest.raises(InvalidArgument):
        changes(tmp_path, None, "aufs")
    with pytest.raises(InvalidArgument):
        diff_tar(tmp_path, None, "aufs", io.BytesIO())


# --------------------------------------------------------------------------------------
# diff_tar
# --------------------------------------------------------------------------------------


def test_overlay_diff_tar_format(layers):
    lower, upper = layers
    tar = run_diff(upper, [lower], "overlay")
    assert run_diff(upper, [lower], "overlay") == tar  # deterministic
    ms = members(tar)
    names = [m.name for m in ms]
    assert names == [
        "etc",
        "etc/.wh.group",
        "etc/passwd",
        "new",
        "new/fifo",
        "new/file",
        "new/link",
        "new/null",
        "new/ping",
        "new/sym",
        "opq",
        "opq/.wh..wh..opq",
        "opq/z",
        "usr",
        "usr/bin",
        "usr/bin/.wh.b",
        "var",
        "var/log",
        "var/log/sub",
    ]
    by = {m.name: m for m in ms}
    assert by["etc/.wh.group"].isreg() and by["etc/.wh.group"].size == 0
    assert by["opq/.wh..wh..opq"].isreg()
    assert by["new/file"].isreg() and by["new/link"].islnk()
    assert by["new/link"].linkname == "new/file"
    assert by["new/file"].pax_headers["SCHILY.xattr.user.note"] == "hello"
    assert by["new/ping"].pax_headers["SCHILY.xattr.security.capability"].encode(
        "utf-8", "surrogateescape") == CAP
    assert by["new/ping"].mode == 0o4755
    assert by["new/null"].ischr() and (by["new/null"].devmajor, by["new/null"].devminor) == (1, 3)
    assert by["new/fifo"].isfifo()
    assert by["new/sym"].issym() and by["new/sym"].linkname == "/etc/passwd"
    assert (by["new"].uid, by["new"].gid, by["new"].mode) == (1000, 1000, 0o700)
    assert by["etc"].mtime == MTIME + 5
    assert by["new/file"].uname == "" and by["new/file"].gname == ""
    assert not any(k.startswith("SCHILY.xattr.trusted.overlay") for m in ms for k in m.pax_headers)


def test_diff_tar_skips_sockets(tmp_path):
    upper = tmp_path / "upper"
    upper.mkdir()
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(upper / "sock"))
        (upper / "file").write_bytes(b"x")
        assert [m.name for m in members(run_diff(upper, None, "overlay"))] == ["file"]
    finally:
        s.close()


def test_overlay_round_trip(layers, tmp_path):
    lower, upper = layers
    tar = run_diff(upper, [lower], "overlay")
    upper2 = tmp_path / "upper2"
    apply(tar, upper2, "overlay")
    assert tree(upper2) == tree(upper)
    assert run_diff(upper2, [lower], "overlay") == tar  # a fixed point


def test_vfs_round_trip(tmp_path):
    parent = tmp_path / "parent"
    apply(mktar(BASE), parent, "vfs")
    child = tmp_path / "child"
    subprocess.run(["cp", "-a", str(parent), str(child)], check=True)
    apply(mktar(LAYER), child, "vfs")
    tar = run_diff(child, [parent], "vfs")
    assert run_diff(child, [parent], "vfs") == tar
    names = [m.name for m in members(tar)]
    assert "etc/.wh.group" in names and "usr/bin/.wh.b" in names
    assert "opq/.wh.x" in names and "opq/.wh.y" in names  # vfs has no opaque marker
    assert "lib" not in names and "etc/passwd" in names
    again = tmp_path / "again"
    subprocess.run(["cp", "-a", str(parent), str(again)], check=True)
    apply(tar, again, "vfs")
    assert tree(again) == tree(child)


def test_diff_tar_base_vfs_layer_roundtrip(tmp_path):
    full = tmp_path / "full"
    apply(mktar(BASE + [F("h1", b"hard"), H("h2", "h1"), H("usr/h3", "h1")]), full, "vfs")
    tar = run_diff(full, None, "vfs")
    ms = members(tar)
    assert [m.name for m in ms if m.islnk()] == ["h2", "usr/h3"]
    copy = tmp_path / "copy"
    apply(tar, copy, "vfs")
    assert tree(copy) == tree(full)


# --------------------------------------------------------------------------------------
# real overlayfs
# --------------------------------------------------------------------------------------


def _mount(lower, upper, work, merged):
    os.makedirs(work, exist_ok=True)
    os.makedirs(merged, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o",
         f"lowerdir={lower},upperdir={upper},workdir={work}", str(merged)],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount overlayfs here: {proc.stderr.strip()}")


def _umount(merged):
    subprocess.run(["umount", str(merged)], check=True)


def merged_tree(root) -> dict:
    t = tree(root, hardlinks=False)
    # directory sizes/inode-dependent details are not comparable across mounts
    return {k: v[:4] + v[5:] for k, v in t.items()}


@pytest.mark.integration
def test_real_overlayfs(layers, tmp_path):
    lower, upper = layers
    merged = tmp_path / "merged"
    _mount(lower, upper, tmp_path / "work", merged)
    try:
        assert not os.path.lexists(merged / "etc/group")  # whiteout
        assert not os.path.lexists(merged / "usr/bin/b")
        assert (merged / "usr/bin/a").read_bytes() == b"a" * 100  # from the lower layer
        assert (merged / "etc/passwd").read_bytes().startswith(b"root:x:0:0\nuser")
        assert sorted(os.listdir(merged / "opq")) == ["z"]  # opaque: lower x, y hidden
        assert stat.S_IMODE(os.lstat(merged / "opq").st_mode) == 0o711
        assert os.lstat(merged / "new/link").st_nlink == 2
        assert os.readlink(merged / "lib") == "usr/lib"
        # let the kernel make changes too: a copy-up, a whiteout, a new opaque dir
        os.unlink(merged / "usr/bin/a")
        (merged / "etc/hostname").write_bytes(b"box\n")
        os.chmod(merged / "var/log", 0o755)
        subprocess.run(["rm", "-rf", str(merged / "opq")], check=True)
        os.mkdir(merged / "opq")
        (merged / "opq/fresh").write_bytes(b"f")
        before = merged_tree(merged)
    finally:
        _umount(merged)

    got = dict((p, k) for k, p in changes(upper, [lower], "overlay"))
    assert got["/usr/bin/a"] == "D"
    assert got["/etc/hostname"] == "A"
    assert got["/var/log"] == "C"
    assert got["/opq"] == "C" and got["/opq/fresh"] == "A"
    assert got["/opq/x"] == "D" and "/opq/z" not in got

    # what diff_tar produced, applied to a fresh upper dir, gives the same merged view
    tar = run_diff(upper, [lower], "overlay")
    upper2 = tmp_path / "upper2"
    apply(tar, upper2, "overlay")
    merged2 = tmp_path / "merged2"
    _mount(lower, upper2, tmp_path / "work2", merged2)
    try:
        after = merged_tree(merged2)
    finally:
        _umount(merged2)
    assert after == before
