"""The image config's Volumes (Dockerfile VOLUME) through the real kpod CLI and runc:
``--image-volume bind`` (anonymous volumes, the default), ``tmpfs`` and ``ignore``.

Every test has its own roots (conftest's ``kpod``) and CtrEnv's finalizer (``rm -fa``, no
conmon, mount or cgroup left), so a failing test cleans up too.
"""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from libpod_core import testimage
from libpod_core.runtime import Runtime
from tests.conftest import assert_one_error_line
from tests.helpers_images import CtrEnv, add_image

pytestmark = pytest.mark.integration

if os.geteuid() != 0:
    pytest.skip("container tests need root", allow_module_level=True)

IMG = "localhost/vol:latest"


@pytest.fixture
def ctr(kpod):
    env = CtrEnv(kpod, "runc", "overlay")
    yield env
    env.finalize()


def _layer(extra: list[tuple[str, str, object, int, int, int]]) -> bytes:
    """busybox plus *extra* entries: (name, kind "dir"|"file"|"link", data/target, mode, uid, gid)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(testimage.rootfs_tar())) as src, \
            tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as out:
        for ti in src:
            out.addfile(ti, src.extractfile(ti) if ti.isreg() else None)
        for name, kind, data, mode, uid, gid in extra:
            ti = tarfile.TarInfo(name)
            ti.mode, ti.uid, ti.gid = mode, uid, gid
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                out.addfile(ti)
            elif kind == "link":
                ti.type, ti.linkname = tarfile.SYMTYPE, data
                out.addfile(ti)
            else:
                ti.size = len(data)
                out.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _image(k: CtrEnv, volumes, extra, name: str = IMG) -> None:
    rt = Runtime(graphroot=k.graphroot, runroot=k.runroot, storage_driver=k.driver, runtime=k.runtime,
                 config_file=None)
    try:
        add_image(rt, name, config={"Volumes": {v: {} for v in volumes}}, layer_tar=_layer(extra))
    finally:
        rt.db.close()


DATA = [("data", "dir", None, 0o750, 1000, 1001),
        ("data/hello", "file", b"from-image\n", 0o640, 1000, 1001),
        ("data/link", "link", "hello", 0o777, 0, 0),
        ("data/sub", "dir", None, 0o700, 5, 6)]


def _volume_mounts(k: CtrEnv, name: str) -> list[dict]:
    return [m for m in k.inspect(name)["Mounts"] if m["Type"] == "volume"]


def _static_volumes(k: CtrEnv, cid: str) -> str:
    return os.path.join(k.graphroot, "containers", cid, "volumes")


def test_bind_copy_up_persists_not_in_diff_removed_with_rm(ctr):
    k = ctr
    _image(k, ["/data"], DATA)
    cid = k("create", "--name", "v", IMG, "sh", "-c", "echo run >> /data/count; sleep 1000").stdout.strip()
    d = k.inspect("v")
    assert d["Config"]["Volumes"] == {"/data": {}}
    [m] = _volume_mounts(k, "v")
    assert m["Destination"] == "/data" and m["RW"] is True and len(m["Name"]) == 64
    src = m["Source"]
    assert src == os.path.join(_static_volumes(k, cid), m["Name"], "_data")
    # copied up with owners, modes and symlinks
    st = os.lstat(src)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1000, 1001, 0o750)
    st = os.lstat(os.path.join(src, "hello"))
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1000, 1001, 0o640)
    assert open(os.path.join(src, "hello")).read() == "from-image\n"
    assert os.readlink(os.path.join(src, "link")) == "hello"
    assert os.lstat(os.path.join(src, "sub")).st_uid == 5

    k("start", "v")
    k.wait_for(lambda: os.path.exists(os.path.join(src, "count")), what="the first write")
    assert k("exec", "v", "cat", "/data/hello").stdout == "from-image\n"
    assert " /data " in k("exec", "v", "cat", "/proc/mounts").stdout
    k("stop", "-t", "0", "v")
    k("start", "v")
    k.wait_for(lambda: open(os.path.join(src, "count")).read() == "run\nrun\n", what="the second write")
    k("stop", "-t", "0", "v")
    diff = k("diff", "v").stdout
    assert "/data/count" not in diff and "/data/hello" not in diff, diff
    k("rm", "v")
    assert not os.path.exists(src) and not os.path.exists(os.path.dirname(src))


def test_run_rm_removes_the_volume(ctr):
    k = ctr
    _image(k, ["/data"], DATA)
    before = set(os.listdir(os.path.join(k.graphroot, "containers"))) \
        if os.path.isdir(os.path.join(k.graphroot, "containers")) else set()
    out = k("run", "--rm", IMG, "sh", "-c", "cat /data/hello; echo x > /data/new; ls /data").stdout
    assert out.startswith("from-image\n") and "new" in out
    after = set(os.listdir(os.path.join(k.graphroot, "containers")))
    assert {d for d in after - before if len(d) == 64} == set()
    assert k.ids() == []


def test_user_volume_overrides_the_image_volume(ctr, tmp_path):
    k = ctr
    _image(k, ["/data", "/other"], DATA)
    host = tmp_path / "hostdir"
    host.mkdir()
    (host / "mine").write_text("host\n")
    out = k("run", "--name", "o", "-v", f"{host}:/data", IMG, "sh", "-c",
            "ls /data; cat /data/hello 2>/dev/null || echo no-hello").stdout
    assert out == "mine\nno-hello\n"
    mounts = k.inspect("o")["Mounts"]
    assert [(m["Type"], m["Destination"]) for m in mounts] == [("bind", "/data"), ("volume", "/other")]
    assert k.inspect("o")["Config"]["Volumes"] == {"/data": {}, "/other": {}}
    # --tmpfs and --mount with the same destination win as well
    out = k("run", "--rm", "--tmpfs", "/data", "--mount", "type=tmpfs,target=/other", IMG, "sh", "-c",
            "grep -E ' /(data|other) ' /proc/mounts | cut -d' ' -f1,2").stdout
    assert sorted(out.split("\n")) == ["", "tmpfs /data", "tmpfs /other"]


def test_tmpfs_mode(ctr):
    k = ctr
    _image(k, ["/data"], DATA)
    out = k("run", "--name", "t", "--image-volume", "tmpfs", IMG, "sh", "-c",
            "grep ' /data ' /proc/mounts | cut -d' ' -f1,3; cat /data/hello; echo x > /data/new").stdout
    assert out == "tmpfs tmpfs\nfrom-image\n"  # the runtime's tmpcopyup fills it
    assert _volume_mounts(k, "t") == []
    assert "/data/new" not in k("diff", "t").stdout
    assert not os.path.exists(_static_volumes(k, k.inspect("t", "{{.Id}}")))


def test_ignore_mode_and_config_key(ctr):
    k = ctr
    _image(k, ["/data"], DATA)
    out = k("run", "--name", "i", "--image-volume", "ignore", IMG, "sh", "-c",
            "grep ' /data ' /proc/mounts || echo no-mount; cat /data/hello; echo x > /data/new").stdout
    assert out == "no-mount\nfrom-image\n"
    assert _volume_mounts(k, "i") == []
    assert "/data/new" in k("diff", "i").stdout  # the layer, not a volume
    # the configuration's image_volume_mode (here from KPOD_IMAGE_VOLUME_MODE) is the default
    env = dict(k.kpod.env, KPOD_IMAGE_VOLUME_MODE="ignore")
    k("create", "--name", "c", IMG, env=env)
    assert _volume_mounts(k, "c") == [] and k.inspect("c", "{{.Config.Volumes}}") != ""
    env["KPOD_IMAGE_VOLUME_MODE"] = "bogus"
    assert_one_error_line(k("create", IMG, env=env, check=False))


def test_symlink_volume_stays_inside_the_rootfs(ctr, tmp_path):
    k = ctr
    outside = tmp_path / "outside"
    for d in ("d1", "d2"):
        (outside / d).mkdir(parents=True)
        (outside / d / "secret").write_text("host secret\n")
    rel = "../" * 12 + str(outside / "d1").lstrip("/")
    _image(k, ["/data", "/abs"], [("data", "link", rel, 0o777, 0, 0),
                                  ("abs", "link", str(outside / "d2"), 0o777, 0, 0)])
    out = k("run", "--name", "s", IMG, "sh", "-c",
            "cat /data/secret /abs/secret 2>/dev/null; echo w > /data/w; echo a > /abs/a; echo done").stdout
    assert out == "done\n"
    assert os.listdir(outside / "d1") == ["secret"] and os.listdir(outside / "d2") == ["secret"]
    srcs = {m["Destination"]: m["Source"] for m in _volume_mounts(k, "s")}
    assert os.listdir(srcs["/data"]) == ["w"] and os.listdir(srcs["/abs"]) == ["a"]


def test_bad_input_creates_nothing(ctr):
    k = ctr
    _image(k, ["/data"], DATA)
    assert_one_error_line(k("create", "--image-volume", "bogus", IMG, check=False), contains="image volume mode")
    _image(k, ["data"], DATA, name="localhost/rel:latest")
    assert_one_error_line(k("create", "localhost/rel", check=False), contains="image volume")
    _image(k, ["/data/../etc"], DATA, name="localhost/dots:latest")
    assert_one_error_line(k("create", "localhost/dots", check=False), contains="image volume")
    _image(k, ["/data/hello"], DATA, name="localhost/file:latest")
    assert_one_error_line(k("create", "localhost/file", check=False), contains="not a directory")
    assert k.ids() == []
    cdir = os.path.join(k.graphroot, "containers")
    assert not os.path.isdir(cdir) or [d for d in os.listdir(cdir) if len(d) == 64] == []
    # with a user mount on that path the file is no problem, and ignore skips it
    k("create", "--image-volume", "ignore", "localhost/file")
    k("create", "--tmpfs", "/data/hello", "localhost/file")
