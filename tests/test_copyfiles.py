"""SafeRoot, write_tar and extract_tar against hostile symlinks, with openat2 and with the
portable component walk (the kernel here has openat2; the walk is forced too)."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from libpod_core import copyfiles as cf

MODES = [pytest.param(True, id="openat2"), pytest.param(False, id="walk")]


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    host = tmp_path / "host"
    (root / "etc").mkdir(parents=True)
    (root / "tmp").mkdir()
    host.mkdir()
    (host / "canary").write_text("host\n")
    (root / "etc" / "passwd").write_text("inside\n")
    os.symlink("/", root / "slash")
    os.symlink("../../../../../../../../..", root / "up")
    os.symlink(str(host), root / "abs")
    os.symlink(str(host / "canary"), root / "abs_file")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    return root, host


def _tar(*entries) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, kind, data in entries:
            ti = tarfile.TarInfo(name)
            if kind == "file":
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            elif kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, data
                tf.addfile(ti)
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
    buf.seek(0)
    return buf


@pytest.mark.parametrize("use_openat2", MODES)
def test_lookups_stay_inside(tree, use_openat2):
    root, host = tree
    if use_openat2 and not cf.have_openat2():
        pytest.skip("no openat2 on this kernel")
    with cf.SafeRoot(str(root), use_openat2=use_openat2) as r:
        for path in ("/slash/etc/passwd", "/up/etc/passwd", "/up/up/slash/etc/passwd", "/etc/../../../etc/passwd",
                     "etc/passwd"):
            assert r.read_small_file(path) == b"inside\n", path
        for path in ("/abs/canary", "/abs_file", f"/up{host}/canary", f"/slash{host}/canary"):
            assert r.read_small_file(path) is None, path
        with pytest.raises(OSError):
            r.open_path("/loop1/x")
        fd = r.open_path("/abs_file", follow=False)  # the link itself
        os.close(fd)


@pytest.mark.parametrize("use_openat2", MODES)
def test_extract_never_writes_outside(tree, use_openat2):
    root, host = tree
    if use_openat2 and not cf.have_openat2():
        pytest.skip("no openat2 on this kernel")
    own = (os.getuid(), os.getgid())
    with cf.SafeRoot(str(root), use_openat2=use_openat2) as r:
        for dest in ("/slash/tmp", "/up/tmp"):
            cf.extract_tar(_tar(("a.txt", "file", b"x")), r, dest, chown=own)
        # a dangling absolute link as a directory: its target is created inside the root
        fd = r.ensure_dir("/abs")
        os.close(fd)
        cf.extract_tar(_tar(("canary", "file", b"PWNED")), r, "/abs", chown=own)
        # a symlink in the archive and a file "through" it
        cf.extract_tar(_tar(("lnk", "symlink", str(host)), ("lnk/canary", "file", b"PWNED")), r, "/tmp", chown=own)
        with pytest.raises(cf.CopyError, match="outside the destination"):
            cf.extract_tar(_tar(("../../escape", "file", b"PWNED")), r, "/tmp", chown=own)
        # an existing symlink is replaced, never written through
        cf.extract_tar(_tar(("abs_file", "file", b"replaced")), r, "/", chown=own)
    assert (host / "canary").read_text() == "host\n" and os.listdir(host) == ["canary"]
    assert (root / "tmp" / "a.txt").read_text() == "x"
    assert (root / str(host).lstrip("/") / "canary").read_text() == "PWNED"
    assert not os.path.islink(root / "abs_file") and (root / "abs_file").read_text() == "replaced"
    assert not (root.parent / "escape").exists()


@pytest.mark.parametrize("use_openat2", MODES)
def test_write_tar_round_trip(tree, tmp_path, use_openat2):
    root, host = tree
    if use_openat2 and not cf.have_openat2():
        pytest.skip("no openat2 on this kernel")
    (root / "etc" / "hard").write_bytes(b"")
    os.link(root / "etc" / "passwd", root / "etc" / "passwd2")
    with cf.SafeRoot(str(root), use_openat2=use_openat2) as r:
        buf = io.BytesIO()
        n = cf.write_tar(buf, r, "/slash/etc", "etc")  # followed inside the root
        buf.seek(0)
        tf = tarfile.open(fileobj=buf)
        members = {m.name: m for m in tf.getmembers()}
        assert n == len(members)
        assert set(members) == {"etc", "etc/hard", "etc/passwd", "etc/passwd2"}
        assert members["etc/passwd2"].islnk() and members["etc/passwd2"].linkname == "etc/passwd"
        buf = io.BytesIO()
        cf.write_tar(buf, r, "/", None)
        buf.seek(0)
        names = tarfile.open(fileobj=buf).getnames()
        assert "abs" in names and not any(n.startswith("abs/") for n in names)  # links are not walked
    out = tmp_path / "out"
    out.mkdir()
    with cf.SafeRoot(str(out), use_openat2=use_openat2) as o, cf.SafeRoot(str(root)) as r:
        buf = io.BytesIO()
        cf.write_tar(buf, r, "/etc", "copy")
        buf.seek(0)
        cf.extract_tar(buf, o, "/", chown=(os.getuid(), os.getgid()))
    assert (out / "copy" / "passwd").read_text() == "inside\n"
    assert os.stat(out / "copy" / "passwd").st_ino == os.stat(out / "copy" / "passwd2").st_ino


def test_parse_location():
    assert cf.parse_location("ctr:/etc") == ("ctr", "/etc")
    assert cf.parse_location("/a:b") == (None, "/a:b")
    assert cf.parse_location("./a:b") == (None, "./a:b")
    assert cf.parse_location("-") == (None, "-")
    assert cf.parse_location("file") == (None, "file")
    assert cf.parse_location("ctr:") == ("ctr", "")


def test_go_duration():
    from libpod_core.ctrinfo import go_duration

    assert go_duration(0) == "0s"
    assert go_duration(1500) == "1.5µs"
    assert go_duration(12_500_000) == "12.5ms"
    assert go_duration(4_285_064_575) == "4.285064575s"
    assert go_duration(62 * 10**9) == "1m2s"
    assert go_duration(3723 * 10**9 + 5 * 10**8) == "1h2m3.5s"
