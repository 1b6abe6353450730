from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import struct
import tarfile

import pytest
import zstandard

from libpod_core.errors import InvalidArgument, InvalidLayer
from libpod_core.tarapply import ApplyResult, apply_layer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="layer extraction tests run as root")

FORMATS = ["overlay", "vfs"]
MTIME = 1_600_000_000


# --------------------------------------------------------------------------------------
# helpers: build tar streams in memory
# --------------------------------------------------------------------------------------


def E(name, type=tarfile.REGTYPE, data=b"", mode=None, uid=0, gid=0, mtime=MTIME, link="",
      major=0, minor=0, pax=None):
    ti = tarfile.TarInfo(name)
    ti.type = type
    ti.mode = mode if mode is not None else (0o755 if type == tarfile.DIRTYPE else 0o644)
    ti.uid, ti.gid = uid, gid
    ti.mtime = mtime
    ti.linkname = link
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


def mktar(entries, fmt=tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
    return buf.getvalue()


def apply(tar: bytes, dest, fmt="overlay", **kw) -> ApplyResult:
    return apply_layer(io.BytesIO(tar), dest, whiteout_format=fmt, **kw)


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def snapshot(root, exclude):
    """Everything under *root* except *exclude*: path -> (type, mode, content/target, mtime)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if os.path.abspath(dirpath) == os.path.abspath(exclude):
            dirnames[:] = []
            continue
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            if os.path.abspath(p) == os.path.abspath(exclude):
                continue
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    content = f.read()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(p)
            else:
                content = None
            out[os.path.relpath(p, root)] = (stat.S_IFMT(st.st_mode), st.st_mode, content, st.st_mtime_ns)
    return out


@pytest.fixture
def sandbox(tmp_path):
    """dest dir plus a canary 'victim' sibling that a hostile layer must not touch."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "hello").write_bytes(b"hello canary")
    (victim / "sub").mkdir()
    (victim / "sub" / "deep").write_bytes(b"deep")
    dest = tmp_path / "dest"
    dest.mkdir()
    before = snapshot(tmp_path, dest)
    yield dest
    assert snapshot(tmp_path, dest) == before, "something outside dest_dir changed"


def assert_hostile(tar, dest, fmt):
    with pytest.raises(InvalidLayer):
        apply(tar, dest, fmt)


# --------------------------------------------------------------------------------------
# basic extraction
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_extract_all_types(tmp_path, fmt):
    big = os.urandom(3 << 20) + b"end"
    cap = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)  # cap_net_bind_service
    tar = mktar(
        [
            D("etc", mode=0o755, mtime=MTIME + 1),
            F("etc/passwd", b"root:x:0:0\n", mode=0o644, uid=0, gid=0),
            F("etc/shadow", b"secret", mode=0o640, uid=0, gid=42),
            D("tmp", mode=0o1777),
            F("bin/su", b"su", mode=0o4755),
            F("bin/wall", b"wall", mode=0o2755, gid=5),
            F("bin/ping", b"ping", mode=0o755,
              pax={"SCHILY.xattr.security.capability": cap.decode("utf-8", "surrogateescape")}),
            F("big", big, uid=1000, gid=1000),
            S("bin/sh", "busybox", uid=7, gid=8),
            S("abs", "/etc/passwd"),
            S("dangling", "../../../../nowhere"),
            H("etc/passwd-link", "etc/passwd"),
            E("dev/null", tarfile.CHRTYPE, mode=0o666, major=1, minor=3),
            E("dev/loop0", tarfile.BLKTYPE, mode=0o660, major=7, minor=0, gid=6),
            E("run/fifo", tarfile.FIFOTYPE, mode=0o620),
            F("x/user", b"x", pax={"SCHILY.xattr.user.comment": "hi", "SCHILY.xattr.trusted.t": "v"}),
            D("x/d", pax={"SCHILY.xattr.trusted.dirattr": "1"}),
            F("nsec", b"n", pax={"mtime": "1600000000.123456789"}),
            F("..data", b"dotdot file"),
            F("x/..foo", b"dotdot 2"),
            F("...", b"three dots"),
            D("..dir"),
            F("..dir/f", b"in dotdot dir"),
            F("a" * 50 + "/" + "b" * 120, b"long name"),
        ]
    )
    dest = tmp_path / "dest"
    dest.mkdir()
    res = apply(tar, dest, fmt)
    assert res == ApplyResult(size=len(tar), diff_id=sha(tar))

    st = os.lstat(dest / "etc/shadow")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 0, 42)
    assert st.st_mtime_ns == MTIME * 10**9
    assert (dest / "etc/passwd").read_bytes() == b"root:x:0:0\n"
    assert os.lstat(dest / "etc").st_mtime_ns == (MTIME + 1) * 10**9  # set after its content
    assert stat.S_IMODE(os.lstat(dest / "tmp").st_mode) == 0o1777
    assert stat.S_IMODE(os.lstat(dest / "bin/su").st_mode) == 0o4755
    st = os.lstat(dest / "bin/wall")
    assert stat.S_IMODE(st.st_mode) == 0o2755 and st.st_gid == 5
    assert os.getxattr(dest / "bin/ping", "security.capability") == cap
    assert (dest / "big").read_bytes() == big
    assert os.lstat(dest / "big").st_uid == 1000
    st = os.lstat(dest / "bin/sh")
    assert stat.S_ISLNK(st.st_mode) and os.readlink(dest / "bin/sh") == "busybox"
    assert (st.st_uid, st.st_gid) == (7, 8)
    assert os.readlink(dest / "abs") == "/etc/passwd"
    assert os.readlink(dest / "dangling") == "../../../../nowhere"
    assert os.lstat(dest / "etc/passwd-link").st_ino == os.lstat(dest / "etc/passwd").st_ino
    st = os.lstat(dest / "dev/null")
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
    assert stat.S_IMODE(st.st_mode) == 0o666
    st = os.lstat(dest / "dev/loop0")
    assert stat.S_ISBLK(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (7, 0)
    assert st.st_gid == 6
    st = os.lstat(dest / "run/fifo")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o620
    assert os.getxattr(dest / "x/user", "user.comment") == b"hi"
    assert os.getxattr(dest / "x/user", "trusted.t") == b"v"
    assert os.getxattr(dest / "x/d", "trusted.dirattr") == b"1"
    assert os.lstat(dest / "nsec").st_mtime_ns == 1_600_000_000_123_456_789
    assert (dest / "..data").read_bytes() == b"dotdot file"
    assert (dest / "x/..foo").read_bytes() == b"dotdot 2"
    assert (dest / "...").read_bytes() == b"three dots"
    assert (dest / "..dir/f").read_bytes() == b"in dotdot dir"
    assert (dest / ("a" * 50) / ("b" * 120)).read_bytes() == b"long name"
    # implicit parents are 0755 root
    st = os.lstat(dest / "bin")
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755


def _header_variants():
    out = []
    for fmt in (tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        for ti, _ in [
            F("plain", b""),
            F("p" * 90 + "/" + "q" * 90, b""),  # ustar prefix field
            D("dir/"),
            E("dev", tarfile.CHRTYPE, major=4095, minor=255),
            S("sym", "target" * 10),
            H("hard", "plain"),
            E("fifo", tarfile.FIFOTYPE, mode=0o7777, uid=0o7777777, gid=65534),
        ]:
            try:
                out.append(ti.tobuf(fmt, "utf-8", "surrogateescape"))
            except ValueError:
                pass
    big = tarfile.TarInfo("big")
    big.uid = 8**8 + 5  # base-256 in GNU format
    big.size = 8**11 + 7
    out.append(big.tobuf(tarfile.GNU_FORMAT))
    v7 = bytearray(tarfile.TarInfo("v7dir/").tobuf(tarfile.USTAR_FORMAT)[:512])
    v7[156:157] = tarfile.AREGTYPE
    v7[148:156] = b" " * 8
    v7[148:156] = b"%06o\0 " % (sum(v7))
    out.append(bytes(v7))
    blocks = []
    for raw in out:
        blocks.extend(raw[i : i + 512] for i in range(0, len(raw), 512))
    return blocks


def test_fast_header_decoder_matches_tarfile():
    from libpod_core.tarapply import SafeTarInfo

    attrs = ("name", "mode", "uid", "gid", "size", "mtime", "chksum", "type", "linkname",
             "uname", "gname", "devmajor", "devminor")
    for blk in _header_variants():
        try:
            want = tarfile.TarInfo.frombuf(blk, "utf-8", "surrogateescape")
        except tarfile.HeaderError as e:
            with pytest.raises(type(e)):
                SafeTarInfo.frombuf(blk, "utf-8", "surrogateescape")
            continue
        got = SafeTarInfo.frombuf(blk, "utf-8", "surrogateescape")
        assert [getattr(got, a) for a in attrs] == [getattr(want, a) for a in attrs]
    bad = bytearray(_header_variants()[0])
    bad[0] ^= 1
    with pytest.raises(tarfile.InvalidHeaderError):
        SafeTarInfo.frombuf(bytes(bad), "utf-8", "surrogateescape")
    with pytest.raises(tarfile.EOFHeaderError):
        SafeTarInfo.frombuf(b"\0" * 512, "utf-8", "surrogateescape")


def test_root_entry_applies_metadata(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    apply(mktar([D("./", mode=0o750, uid=3, gid=4, mtime=MTIME), F("./f", b"x")]), dest)
    st = os.lstat(dest)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns) == (0o750, 3, 4, MTIME * 10**9)


def test_gnu_and_ustar_formats(tmp_path):
    for i, fmt in enumerate((tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT)):
        dest = tmp_path / f"d{i}"
        dest.mkdir()
        long = "l" * 90 + "/" + "m" * 90 if fmt == tarfile.USTAR_FORMAT else "n" * 200 + "/" + "o" * 150
        tar = mktar([F(long, b"data"), S("s", "data-link")], fmt)
        assert apply(tar, dest).diff_id == sha(tar)
        assert (dest / long).read_bytes() == b"data"


def test_non_utf8_names(tmp_path):
    name = b"caf\xe9".decode("utf-8", "surrogateescape")
    dest = tmp_path / "dest"
    dest.mkdir()
    apply(mktar([F(name, b"latin1")], tarfile.GNU_FORMAT), dest)
    assert os.listdir(os.fsencode(dest)) == [b"caf\xe9"]


def test_entry_order_child_before_parent(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    apply(mktar([F("a/b/c", b"c"), D("a/b", mode=0o700, uid=9), D("a", mode=0o711)]), dest)
    assert stat.S_IMODE(os.lstat(dest / "a/b").st_mode) == 0o700
    assert os.lstat(dest / "a/b").st_uid == 9
    assert stat.S_IMODE(os.lstat(dest / "a").st_mode) == 0o711
    assert (dest / "a/b/c").read_bytes() == b"c"


def test_parent_lookup_gives_implicit_dirs_metadata(tmp_path):
    parent = tmp_path / "parent"
    (parent / "tmp").mkdir(parents=True)
    os.chmod(parent / "tmp", 0o1777)
    os.chown(parent / "tmp", 0, 12)
    os.utime(parent / "tmp", ns=(MTIME * 10**9, MTIME * 10**9))
    dest = tmp_path / "dest"
    dest.mkdir()
    seen = []

    def lookup(rel):
        seen.append(rel)
        p = parent / rel
        return str(p) if os.path.lexists(p) else None

    apply(mktar([F("tmp/file", b"x"), F("new/file", b"y")]), dest, parent_lookup=lookup)
    st = os.lstat(dest / "tmp")
    assert (stat.S_IMODE(st.st_mode), st.st_gid, st.st_mtime_ns) == (0o1777, 12, MTIME * 10**9)
    assert stat.S_IMODE(os.lstat(dest / "new").st_mode) == 0o755
    assert "tmp" in seen and "new" in seen


@pytest.mark.parametrize("fmt", FORMATS)
def test_replace_existing(tmp_path, fmt):
    dest = tmp_path / "dest"
    (dest / "dir_to_file/sub").mkdir(parents=True)
    (dest / "dir_to_file/sub/f").write_bytes(b"old")
    (dest / "merge").mkdir()
    (dest / "merge/old").write_bytes(b"old")
    (dest / "file_to_dir").write_bytes(b"old")
    os.symlink("/etc", dest / "link_to_dir")
    (dest / "file").write_bytes(b"old")
    tar = mktar(
        [
            F("dir_to_file", b"new file"),
            D("merge", mode=0o700),
            F("merge/new", b"new"),
            D("file_to_dir"),
            F("file_to_dir/x", b"x"),
            D("link_to_dir"),
            F("file", b"new"),
            F("file", b"newer"),  # the same name twice: the last one wins
        ]
    )
    apply(tar, dest, fmt)
    assert (dest / "dir_to_file").read_bytes() == b"new file"
    assert (dest / "merge/old").read_bytes() == b"old"
    assert (dest / "merge/new").read_bytes() == b"new"
    assert stat.S_IMODE(os.lstat(dest / "merge").st_mode) == 0o700
    assert (dest / "file_to_dir/x").read_bytes() == b"x"
    assert stat.S_ISDIR(os.lstat(dest / "link_to_dir").st_mode)
    assert (dest / "file").read_bytes() == b"newer"


def test_user_xattr_on_symlink_is_skipped(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    apply(mktar([S("s", "t", pax={"SCHILY.xattr.user.x": "1", "SCHILY.xattr.trusted.y": "2"})]), dest)
    assert os.getxattr(dest / "s", "trusted.y", follow_symlinks=False) == b"2"


def test_overlay_xattrs_from_tar_are_ignored(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    tar = mktar([D("d", pax={"SCHILY.xattr.trusted.overlay.opaque": "y",
                             "SCHILY.xattr.trusted.overlay.redirect": "/etc"})])
    apply(tar, dest, "overlay")
    assert not any(n.startswith("trusted.overlay.") for n in os.listxattr(dest / "d"))


# --------------------------------------------------------------------------------------
# digests, compression, stream handling
# --------------------------------------------------------------------------------------

LAYER = [D("d"), F("d/f", os.urandom(100_000)), F("g", b"x" * 5000), S("d/s", "f")]


@pytest.mark.parametrize("comp", ["none", "gzip", "zstd"])
def test_diff_id_is_sha256_of_uncompressed(tmp_path, comp):
    tar = mktar(LAYER) + b"\0" * 2048  # extra padding after the end marker counts too
    blob = {"none": tar, "gzip": gzip.compress(tar),
            "zstd": zstandard.ZstdCompressor().compress(tar)}[comp]
    src = io.BytesIO(blob)
    dest = tmp_path / "dest"
    dest.mkdir()
    res = apply_layer(src, dest, whiteout_format="vfs")
    assert res.diff_id == sha(tar)
    assert res.size == len(tar)
    assert src.tell() == len(blob)  # the whole blob was consumed
    assert (dest / "d/f").stat().st_size == 100_000


def test_empty_stream_and_empty_tar(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    assert apply(b"", dest) == ApplyResult(0, sha(b""))
    empty = mktar([])
    assert apply(empty, dest) == ApplyResult(len(empty), sha(empty))
    assert apply(b"\0" * 1024, dest) == ApplyResult(1024, sha(b"\0" * 1024))
    assert os.listdir(dest) == []


def test_tar_without_end_marker_is_accepted(tmp_path):
    tar = mktar([F("a", b"abc")])
    body = tar[:1024]  # header + data block, no end-of-archive marker
    dest = tmp_path / "dest"
    dest.mkdir()
    res = apply(body, dest)
    assert res.size == 1024 and (dest / "a").read_bytes() == b"abc"


def test_unknown_whiteout_format(tmp_path):
    with pytest.raises(InvalidArgument):
        apply(mktar([]), tmp_path, "aufs")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "blob",
    [
        pytest.param(lambda t: os.urandom(10_000), id="garbage"),
        pytest.param(lambda t: b"\x1f\x8b\x08\x00" + os.urandom(10_000), id="garbage-gzip"),
        pytest.param(lambda t: b"\x28\xb5\x2f\xfd" + os.urandom(10_000), id="garbage-zstd"),
        pytest.param(lambda t: gzip.compress(t)[: len(gzip.compress(t)) // 2], id="truncated-gzip"),
        pytest.param(lambda t: gzip.compress(t)[:-4], id="truncated-gzip-trailer"),
        pytest.param(lambda t: zstandard.ZstdCompressor().compress(t)[:-10], id="truncated-zstd"),
        pytest.param(lambda t: zstandard.ZstdCompressor().compress(t)[:200], id="truncated-zstd-early"),
        pytest.param(lambda t: t[:2000], id="truncated-tar-data"),
        pytest.param(lambda t: t[:512 + 100352 + 100], id="truncated-tar-header"),
        pytest.param(lambda t: t[:1024 + 512 * 196] + os.urandom(512) * 3, id="garbage-after-members"),
    ],
)
def test_corrupt_streams(sandbox, fmt, blob):
    tar = mktar([F("a", os.urandom(100_000)), F("b", b"b")])
    assert_hostile(blob(tar), sandbox, fmt)


def test_truncated_in_skipped_region(tmp_path):
    # A pax header's data region cut short.
    tar = mktar([F("x" * 200, b"data")])
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(InvalidLayer):
        apply(tar[:600], dest)


def test_unsupported_entry_type(sandbox):
    ti, _ = E("weird", type=b"Z")
    assert_hostile(mktar([(ti, b"")]), sandbox, "overlay")


def test_root_must_be_a_directory(sandbox):
    assert_hostile(mktar([F("./", b"")]), sandbox, "vfs")


# --------------------------------------------------------------------------------------
# hostile layers (containers/storage's breakout cases)
# --------------------------------------------------------------------------------------


INVALID_FILENAMES = [
    [F("../victim/dotdot", b"x")],
    [F("../../../../../../../../../../../../victim/dotdot", b"x")],
    [F("/../victim/slash-dotdot", b"x")],
    [F("/etc/absolute", b"x")],
    [F("a/../../victim/hello", b"x")],
    [D("../victim/newdir")],
    [S("../victim/sym", "/etc")],
    [E("../victim/node", tarfile.CHRTYPE, major=1, minor=3)],
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("entries", INVALID_FILENAMES)
def test_invalid_filenames(sandbox, fmt, entries):
    assert_hostile(mktar(entries), sandbox, fmt)


INVALID_HARDLINKS = [
    [H("dotdot", "../victim/hello")],
    [H("dotdot", "../../../../../../../../../../../../victim/hello")],
    [H("slash-dotdot", "/../victim/hello")],
    [H("absolute", "/etc/passwd")],
    # through a symlink
    [S("loophole-victim", "../victim"), H("hardlink", "loophole-victim/hello")],
    [S("loophole-abs", str("/tmp")), H("hardlink", "loophole-abs/x")],
    # to a directory
    [H("loophole-victim", "../victim")],
    [D("dir"), H("dirlink", "dir")],
    # target missing / not in this layer
    [H("missing", "nothing-here")],
    [H("root", ".")],
    [H("loophole-victim", "../victim"), F("loophole-victim", b"x")],
    [H("loophole-victim", "../victim"), F("loophole-victim/file", b"x")],
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("entries", INVALID_HARDLINKS)
def test_invalid_hardlinks(sandbox, fmt, entries):
    assert_hostile(mktar(entries), sandbox, fmt)


WRITE_THROUGH_SYMLINK = [
    [S("dotdot", "../victim"), F("dotdot/hello", b"pwned")],
    [S("slash-dotdot", "/../victim"), F("slash-dotdot/hello", b"pwned")],
    [S("loophole-victim", "../victim"), F("loophole-victim/file", b"pwned")],
    [S("loophole-victim", "../victim"), D("loophole-victim/newdir")],
    [S("loophole-victim", "../victim"), F("loophole-victim/sub/deep", b"pwned")],
    [S("loophole-victim", "../victim"), S("loophole-victim/sym", "x")],
    [S("loophole-victim", "../victim"), E("loophole-victim/fifo", tarfile.FIFOTYPE)],
    [S("loophole-victim", "../victim"), F("loophole-victim/.wh.hello")],
    [S("loophole-victim", "../victim"), F("loophole-victim/sub/.wh.deep")],
    [S("loophole-victim", "../victim"), F("loophole-victim/.wh..wh..opq")],
    [S("loophole-victim", "../victim"), F("loophole-victim/sub/.wh..wh..opq")],
    # a symlink pointing inside the layer is still not written through
    [D("real"), S("inner", "real"), F("inner/file", b"x")],
    [S("self", "."), F("self/file", b"x")],
    # chains of symlinks
    [S("a", "b"), S("b", "../victim"), F("a/hello", b"pwned")],
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("entries", WRITE_THROUGH_SYMLINK)
def test_no_write_through_symlinks(sandbox, fmt, entries):
    assert_hostile(mktar(entries), sandbox, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_symlink_through_lower_symlink(sandbox, fmt):
    # the symlink already exists in dest (e.g. from the parent in vfs)
    os.symlink("../victim", sandbox / "lib")
    assert_hostile(mktar([F("lib/hello", b"pwned")]), sandbox, fmt)
    assert_hostile(mktar([F("lib/.wh.hello")]), sandbox, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_allowed_symlink_cases(sandbox, fmt):
    """Symlinks may point anywhere; reading links or replacing them is fine."""
    tar = mktar(
        [
            S("loophole-victim", "../victim"),
            S("symlink", "loophole-victim/hello"),  # symlink to symlink
            S("abs", "/victim/hello"),
            S("replace-me", "../victim"),
            F("replace-me", b"a regular file now"),  # replaces the symlink, not its target
            S("replace-dir", "../victim"),
            D("replace-dir"),
        ]
    )
    apply(tar, sandbox, fmt)
    assert os.readlink(sandbox / "symlink") == "loophole-victim/hello"
    assert (sandbox / "replace-me").read_bytes() == b"a regular file now"
    assert not os.path.islink(sandbox / "replace-me")
    assert os.path.isdir(sandbox / "replace-dir") and not os.path.islink(sandbox / "replace-dir")


@pytest.mark.parametrize("fmt", FORMATS)
def test_hardlink_to_symlink(sandbox, fmt):
    tar = mktar([S("symlink1", "regfile"), H("symlink2", "symlink1"), F("regfile", b"content")])
    apply(tar, sandbox, fmt)
    st1 = os.lstat(sandbox / "symlink1")
    st2 = os.lstat(sandbox / "symlink2")
    assert stat.S_ISLNK(st2.st_mode)
    assert st1.st_ino == st2.st_ino
    assert os.readlink(sandbox / "symlink2") == "regfile"
    assert (sandbox / "symlink2").read_bytes() == b"content"


@pytest.mark.parametrize("fmt", FORMATS)
def test_hardlink_to_outside_pointing_symlink_is_a_symlink(sandbox, fmt):
    tar = mktar([S("s", "../victim/hello"), H("h", "s")])
    apply(tar, sandbox, fmt)
    assert os.readlink(sandbox / "h") == "../victim/hello"


@pytest.mark.parametrize("fmt", FORMATS)
def test_hardlinks_within_layer(sandbox, fmt):
    tar = mktar([D("a"), F("a/f", b"data", mode=0o600), H("b/g", "a/f"), H("a/./h", "./a/../a/f")])
    apply(tar, sandbox, fmt)
    ino = os.lstat(sandbox / "a/f").st_ino
    assert os.lstat(sandbox / "b/g").st_ino == ino
    assert os.lstat(sandbox / "a/h").st_ino == ino
    assert os.lstat(sandbox / "a/f").st_nlink == 3


def test_hardlink_to_parent_file(tmp_path):
    for fmt in FORMATS:
        dest = tmp_path / fmt
        dest.mkdir()
        (dest / "lowerfile").write_bytes(b"from the parent")
        tar = mktar([H("link", "lowerfile")])
        if fmt == "vfs":  # dest is the full parent tree: the target is there
            apply(tar, dest, fmt)
            assert os.lstat(dest / "link").st_ino == os.lstat(dest / "lowerfile").st_ino
        else:  # an upper dir only holds this layer: linking to a lower file is refused
            upper = tmp_path / "upper"
            upper.mkdir()
            with pytest.raises(InvalidLayer, match="does not exist"):
                apply(tar, upper, fmt)


def test_sparse_files(tmp_path):
    import shutil
    import subprocess

    if shutil.which("tar") is None:
        pytest.skip("no tar binary")
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.truncate(8 << 20)
        f.seek(3 << 20)
        f.write(b"hello")
        f.seek((8 << 20) - 3)
        f.write(b"end")
    for fmt in ("gnu", "pax"):
        tarpath = tmp_path / f"{fmt}.tar"
        subprocess.run(["tar", "--sparse", f"--format={fmt}", "-cf", str(tarpath), "-C", str(src), "."],
                       check=True)
        dest = tmp_path / f"out-{fmt}"
        dest.mkdir()
        data = tarpath.read_bytes()
        assert apply(data, dest).diff_id == sha(data)
        assert (dest / "sparse").read_bytes() == (src / "sparse").read_bytes()


BAD_WHITEOUTS = [
    [F(".wh..")],
    [F("dir/.wh..")],
    [F(".wh.")],
    [F("dir/.wh.")],
    [F("dir/.wh..", mode=0)],
    [F("../.wh.victim")],
    [F("../victim/.wh.hello")],
    [F("../victim/.wh..wh..opq")],
    [F("/victim/.wh.hello")],
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("entries", BAD_WHITEOUTS)
def test_bad_whiteouts(sandbox, fmt, entries):
    (sandbox / "dir").mkdir()
    assert_hostile(mktar(entries), sandbox, fmt)


# --------------------------------------------------------------------------------------
# whiteouts
# --------------------------------------------------------------------------------------


def test_overlay_whiteouts(tmp_path):
    dest = tmp_path / "upper"
    dest.mkdir()
    tar = mktar(
        [
            D("etc"),
            F("etc/.wh.removed", uid=5, gid=6),
            F("deep/er/.wh.gone"),  # parents created
            D("opq"),
            F("opq/.wh..wh..opq"),
            F("opq/kept", b"k"),
            F("newopq/.wh..wh..opq"),  # dir created if missing
            F("redo", b"first"),
            F(".wh.redo"),  # deleting something of this same layer leaves a whiteout
            F(".wh..wh..plnk/123", b"aufs"),  # aufs metadata is skipped
            F("x/.wh..wh.aufs"),
        ]
    )
    res = apply(tar, dest, "overlay")
    assert res.diff_id == sha(tar)
    for p in ("etc/removed", "deep/er/gone", "redo"):
        st = os.lstat(dest / p)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, p
    assert (os.lstat(dest / "etc/removed").st_uid, os.lstat(dest / "etc/removed").st_gid) == (5, 6)
    assert not os.path.lexists(dest / "etc/.wh.removed")
    assert os.getxattr(dest / "opq", "trusted.overlay.opaque") == b"y"
    assert os.getxattr(dest / "newopq", "trusted.overlay.opaque") == b"y"
    assert (dest / "opq/kept").read_bytes() == b"k"
    assert not os.path.lexists(dest / "opq/.wh..wh..opq")
    assert not os.path.lexists(dest / ".wh..wh..plnk")
    assert not os.path.lexists(dest / "x/.wh..wh.aufs")


def test_vfs_whiteouts(tmp_path):
    dest = tmp_path / "full"
    (dest / "etc").mkdir(parents=True)
    (dest / "etc/removed").write_bytes(b"r")
    (dest / "etc/kept").write_bytes(b"k")
    (dest / "tree/sub").mkdir(parents=True)
    (dest / "tree/sub/f").write_bytes(b"f")
    os.symlink("/etc", dest / "link")
    (dest / "opq/old/deeper").mkdir(parents=True)
    (dest / "opq/old/deeper/f").write_bytes(b"old")
    (dest / "opq/keepdir").mkdir()
    (dest / "opq/keepdir/old").write_bytes(b"old")
    (dest / "opq/oldfile").write_bytes(b"old")
    tar = mktar(
        [
            F("etc/.wh.removed"),
            F(".wh.tree"),
            F(".wh.link"),  # removes the symlink, not its target
            F(".wh.not-there"),
            F("missing-parent/.wh.x"),
            D("opq"),
            F("opq/early", b"created before the marker"),
            D("opq/keepdir"),
            F("opq/keepdir/new", b"new"),
            F("opq/.wh..wh..opq"),
            F("opq/late", b"created after the marker"),
            F("nodir/.wh..wh..opq"),
        ]
    )
    apply(tar, dest, "vfs")
    assert sorted(os.listdir(dest / "etc")) == ["kept"]
    assert not os.path.lexists(dest / "tree")
    assert not os.path.lexists(dest / "link")
    assert os.path.exists("/etc/passwd")
    assert not os.path.lexists(dest / "missing-parent")
    assert not os.path.lexists(dest / "nodir")
    assert sorted(os.listdir(dest / "opq")) == ["early", "keepdir", "late"]
    assert os.listdir(dest / "opq/keepdir") == ["new"]
    assert not any(".wh." in n for _, ds, fs in os.walk(dest) for n in ds + fs)


# --------------------------------------------------------------------------------------
# a larger layer (sanity of the buffered reader across many small members)
# --------------------------------------------------------------------------------------


def test_many_small_files(tmp_path):
    entries = [D("d%02d" % i) for i in range(20)]
    payloads = {}
    for i in range(2000):
        name = "d%02d/f%04d" % (i % 20, i)
        payloads[name] = os.urandom(i % 1500)
        entries.append(F(name, payloads[name]))
    tar = mktar(entries)
    for comp in (lambda b: b, gzip.compress, zstandard.ZstdCompressor().compress):
        dest = tmp_path / ("d%d" % len(os.listdir(tmp_path)))
        dest.mkdir()
        res = apply(comp(tar), dest, "overlay")
        assert res.diff_id == sha(tar)
        for name, data in list(payloads.items())[::97]:
            assert (dest / name).read_bytes() == data


def test_hashed_tar_stream_is_not_hashed_again(tmp_path, monkeypatch):
    """The store hands drivers a HashedTarStream: apply_layer takes its digest and size."""
    from libpod_core import tarapply
    from libpod_core.digest import HashedTarStream

    tar = mktar([D("etc"), F("etc/hosts", b"127.0.0.1 localhost\n"), F("big", os.urandom(3 << 20))])
    def no_rehash(*a, **kw):
        raise AssertionError("DigestReader used for a HashedTarStream")

    monkeypatch.setattr(tarapply, "DigestReader", no_rehash)
    stream = HashedTarStream(io.BytesIO(tar))
    try:
        (tmp_path / "d").mkdir()
        res = apply_layer(stream, tmp_path / "d")
    finally:
        stream.close()
    assert res.diff_id == sha(tar) and res.size == len(tar)
    assert (tmp_path / "d" / "etc" / "hosts").read_bytes() == b"127.0.0.1 localhost\n"


# --------------------------------------------------------------------------------------
# pax extended headers and GNU long names: parsed in linear time, bounded in size
# --------------------------------------------------------------------------------------


def _pax_block(records: bytes, type=tarfile.XHDTYPE) -> bytes:
    ti = tarfile.TarInfo("././@PaxHeader")
    ti.type, ti.size = type, len(records)
    pad = -len(records) % tarfile.BLOCKSIZE
    return ti.tobuf(tarfile.USTAR_FORMAT) + records + b"\0" * pad


def _with_pax(records: bytes, name="f", data=b"x") -> bytes:
    """A tar whose one file comes after a hand-made pax header holding *records*."""
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime = len(data), MTIME
    body = ti.tobuf(tarfile.USTAR_FORMAT) + data + b"\0" * (-len(data) % tarfile.BLOCKSIZE)
    return _pax_block(records) + body + b"\0" * (2 * tarfile.BLOCKSIZE)


def _record(keyword: bytes, value: bytes) -> bytes:
    rest = b" " + keyword + b"=" + value + b"\n"
    n = len(rest) + 1
    while len(str(n)) + len(rest) != n:
        n += 1
    return str(n).encode() + rest


@pytest.mark.timeout(60)
def test_pax_header_with_a_long_run_of_digits_is_parsed_in_linear_time(tmp_path):
    # Python's own parser (before 3.11.10/3.12.6, CVE-2024-6232) searches this header with a
    # backtracking regular expression: about 15 minutes for a 1 MB run of digits
    tar = _with_pax(_record(b"comment", b"1" * 1_000_000) + _record(b"path", b"renamed"))
    (tmp_path / "d").mkdir()
    apply(tar, tmp_path / "d")
    assert os.listdir(tmp_path / "d") == ["renamed"]


def test_oversized_pax_header_and_gnu_long_name_are_refused(tmp_path):
    (tmp_path / "d").mkdir()
    big = _with_pax(_record(b"comment", b"x" * (1 << 20)))
    with pytest.raises(InvalidLayer, match="pax extended header of .* bytes"):
        apply(big, tmp_path / "d")
    long_name = mktar([F("a/" * 600_000 + "f", b"x")], tarfile.GNU_FORMAT)
    with pytest.raises(InvalidLayer, match="GNU long name or link of .* bytes"):
        apply(long_name, tmp_path / "d")
    assert os.listdir(tmp_path / "d") == []


@pytest.mark.parametrize("records", [
    b"x",                               # no length
    b"10 path=abc",                     # no newline where the length says
    b"9 path\n",                        # no "="
    b"4 =\n",                           # shorter than any record
    b"99999 path=a\n",                  # past the header's end
    b"12 path=abc\n" + b"7 =x=y\n",     # an empty keyword
    b"-5 p=\n",                         # not a number
])
def test_malformed_pax_records_are_refused(tmp_path, records):
    (tmp_path / "d").mkdir()
    with pytest.raises(InvalidLayer, match="malformed pax"):
        apply(_with_pax(records), tmp_path / "d")
    assert os.listdir(tmp_path / "d") == []


def test_pax_headers_read_as_tarfile_reads_them():
    from libpod_core.tarapply import SafeTarInfo

    raw_name = b"caf\xe9/x"
    cases = [
        mktar([F("a" * 200 + "/f", b"data", pax={"mtime": "1600000000.25", "SCHILY.xattr.user.k": "v",
                                                  "uname": "someone", "gname": "group", "uid": "70000"}),
               S("link", "t" * 300)]),
        _with_pax(_record(b"hdrcharset", b"BINARY") + _record(b"path", raw_name)),
        _with_pax(_record(b"size", b"1"), data=b"y"),
        _pax_block(_record(b"comment", b"global") + _record(b"uname", b"g"), tarfile.XGLTYPE)
        + _with_pax(_record(b"gid", b"42")),
    ]
    attrs = ("name", "linkname", "size", "mtime", "uid", "gid", "uname", "gname", "type", "pax_headers", "offset",
             "offset_data")
    for tar in cases:
        with tarfile.open(fileobj=io.BytesIO(tar), encoding="utf-8", errors="surrogateescape") as want, \
                tarfile.open(fileobj=io.BytesIO(tar), tarinfo=SafeTarInfo, encoding="utf-8", errors="surrogateescape") as got:
            w = [[getattr(m, a) for a in attrs] for m in want.getmembers()]
            g = [[getattr(m, a) for a in attrs] for m in got.getmembers()]
        assert g == w and w
