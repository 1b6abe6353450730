"""Named volumes through the real kpod CLI with runc and crun: ``kpod volume`` and
``create``/``run -v NAME:/dst`` / ``--mount type=volume``.

Every test has its own roots (conftest's ``kpod``); the fixture removes every volume
(``volume rm -af``, which removes their containers) and then runs CtrEnv's finalizer
(``rm -fa``, no conmon, mount or cgroup left), so a failing test cleans up too.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import sqlite3
import stat
import subprocess
import tarfile

import pytest
import zstandard

from tests.conftest import KPOD, assert_one_error_line
from tests.helpers_images import CtrEnv, mounts_under
from libpod_core.testing.storage_suite import make_tar
from tests.integration.test_image_volumes import DATA, IMG, _image
from tests.unit.test_tarapply import snapshot

pytestmark = pytest.mark.integration

if os.geteuid() != 0:
    pytest.skip("container tests need root", allow_module_level=True)

NONET = ("--network", "none")


def _env(kpod, runtime: str):
    env = CtrEnv(kpod, runtime, "overlay")
    env.volumes_dir = os.path.join(env.graphroot, "volumes")
    return env


def _finish(env: CtrEnv) -> None:
    proc = env("volume", "rm", "-af", check=False)
    env.finalize()
    assert proc.returncode == 0, proc.stderr
    assert env("volume", "ls", "-q").stdout == ""
    assert not os.path.isdir(env.volumes_dir) or os.listdir(env.volumes_dir) == []


@pytest.fixture
def ctr(kpod):
    env = _env(kpod, "runc")
    yield env
    _finish(env)


@pytest.fixture(params=["runc", "crun"])
def ctr_rt(kpod, request):
    env = _env(kpod, request.param)
    yield env
    _finish(env)


def _vol(k, name: str) -> dict:
    [data] = json.loads(k("volume", "inspect", name).stdout)
    return data


def _names(k, *args) -> list[str]:
    return k("volume", "ls", "-q", *args).stdout.split()


def test_persists_across_containers_with_copy_up(ctr_rt):
    k = ctr_rt
    _image(k, ["/data"], DATA)
    # a missing name is created by run; the image's content is copied in at the first start
    out = k("run", "--name", "first", *NONET, "-v", "vol:/data", IMG, "sh", "-c",
            "cat /data/hello; echo one > /data/new").stdout
    assert out == "from-image\n"
    v = _vol(k, "vol")
    assert v["Driver"] == "local" and v["Scope"] == "local" and v["Labels"] == {} and v["Options"] == {}
    assert v["Mountpoint"] == os.path.join(k.volumes_dir, "vol", "_data")
    assert (v["NeedsCopyUp"], v["NeedsChown"], v["MountCount"]) == (False, False, 0)
    src = v["Mountpoint"]
    st = os.lstat(src)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1000, 1001, 0o750)  # the image directory's
    assert sorted(os.listdir(src)) == ["hello", "link", "new", "sub"]
    assert os.readlink(os.path.join(src, "link")) == "hello"
    [m] = [m for m in k.inspect("first")["Mounts"] if m["Destination"] == "/data"]
    assert m == {"Type": "volume", "Name": "vol", "Source": src, "Destination": "/data", "Driver": "local",
                 "Mode": "", "Options": ["nosuid", "nodev", "rbind"], "RW": True, "Propagation": "rprivate"}
    assert "/data/new" not in k("diff", "first").stdout  # not the container's layer

    # rm -v removes anonymous volumes only: the named one keeps its data for the next container
    k("rm", "-v", "first")
    assert _names(k) == ["vol"]
    os.unlink(os.path.join(src, "hello"))  # a second container never copies up again
    out = k("run", "--rm", *NONET, "--mount", "type=volume,source=vol,target=/srv", IMG, "sh", "-c",
            "cat /srv/new; ls /srv").stdout
    assert out == "one\nlink\nnew\nsub\n"
    assert _names(k) == ["vol"]  # run --rm keeps it too

    # nocopy: an empty volume stays empty (and would still copy up for another container)
    out = k("run", "--rm", *NONET, "-v", "empty:/data:nocopy", IMG, "ls", "-A", "/data").stdout
    assert out == ""
    assert _vol(k, "empty")["NeedsCopyUp"] is True
    # a volume with content is never overwritten by the image's
    k("volume", "create", "full")
    with open(os.path.join(_vol(k, "full")["Mountpoint"], "mine"), "w") as f:
        f.write("host\n")
    assert k("run", "--rm", *NONET, "-v", "full:/data", IMG, "ls", "/data").stdout == "mine\n"
    # a path the image lacks: an empty volume owned by the container's user
    k("run", "--rm", *NONET, "-u", "123:456", "-v", "fresh:/nowhere", IMG, "true")
    st = os.stat(_vol(k, "fresh")["Mountpoint"])
    assert (st.st_uid, st.st_gid) == (123, 456)


def test_read_only_and_shared_between_running_containers(ctr):
    k = ctr
    k("volume", "create", "--label", "app=web", "shared")
    k("run", "-d", "--name", "w", *NONET, "-v", "shared:/d", "busybox", "sh", "-c",
      "echo from-w > /d/x; sleep 1000")
    src = _vol(k, "shared")["Mountpoint"]
    k.wait_for(lambda: os.path.exists(os.path.join(src, "x")), what="the writer")
    p = k("run", "--name", "r", *NONET, "-v", "shared:/d:ro", "busybox", "sh", "-c",
          "cat /d/x; echo no > /d/y", check=False)
    assert p.returncode != 0 and p.stdout == "from-w\n" and "Read-only" in p.stderr
    p = k("run", "--rm", *NONET, "--mount", "type=volume,src=shared,dst=/d,readonly", "busybox", "touch", "/d/z",
          check=False)
    assert p.returncode != 0
    assert sorted(os.listdir(src)) == ["x"]
    [m] = k.inspect("r")["Mounts"]
    assert (m["Name"], m["RW"]) == ("shared", False)
    assert k("exec", "w", "cat", "/d/x").stdout == "from-w\n"


def test_in_use_refused_then_rm_force_removes_the_containers(ctr):
    k = ctr
    k("run", "-d", "--name", "busy", *NONET, "-v", "data:/d", "busybox", "sleep", "1000")
    k("create", "--name", "idle", *NONET, "-v", "data:/e", "busybox", "true")
    k("create", "--name", "other", *NONET, "busybox", "true")
    path = os.path.join(k.volumes_dir, "data")
    p = k("volume", "rm", "data", check=False)
    assert_one_error_line(p, code=2, contains="volume data is being used")
    p = k("volume", "prune", "-f")
    assert p.stdout == ""
    assert _names(k) == ["data"] and os.path.isdir(path)
    assert _names(k, "--filter", "dangling=false") == ["data"]
    assert _names(k, "--filter", "dangling=true") == []
    # removing a container that used it does not remove the volume
    k("rm", "-v", "idle")
    assert _names(k) == ["data"]
    assert k("volume", "rm", "-f", "data").stdout == "data\n"
    assert _names(k) == [] and not os.path.exists(path)
    assert k("ps", "-a", "--format", "{{.Names}}").stdout.split() == ["other"]
    p = k("volume", "rm", "data", check=False)
    assert_one_error_line(p, code=1, contains='no volume with name "data" found')


def test_ls_inspect_filters_and_prune(ctr):
    k = ctr
    k("volume", "create", "--label", "team=web", "--label", "tier", "web1")
    k("volume", "create", "-l", "team=db", "db1")
    k("volume", "create", "-o", "o=uid=1000,gid=1001", "owned")
    anon = k("volume", "create").stdout.strip()
    assert len(anon) == 64
    k("create", "--name", "user", *NONET, "-v", "db1:/db", "busybox", "true")
    assert set(_names(k)) == {"web1", "db1", "owned", anon}
    assert _names(k, "--filter", "name=^web") == ["web1"]
    assert sorted(_names(k, "--filter", "name=^web", "--filter", "name=^db")) == ["db1", "web1"]
    assert _names(k, "--filter", "label=team=web") == ["web1"]
    assert sorted(_names(k, "--filter", "label=team")) == ["db1", "web1"]
    assert _names(k, "--filter", "label=team", "--filter", "label=tier") == ["web1"]
    assert sorted(_names(k, "--filter", "label!=team")) == sorted(["owned", anon])
    assert sorted(_names(k, "-f", "dangling=true")) == sorted(["web1", "owned", anon])
    assert _names(k, "-f", "driver=local", "-f", "name=owned") == ["owned"]
    assert _names(k, "--filter", "until=1970-01-02") == []
    assert_one_error_line(k("volume", "ls", "--filter", "bogus=1", check=False), contains="invalid filter")
    assert_one_error_line(k("volume", "ls", "--filter", "dangling=maybe", check=False), contains="dangling")

    table = k("volume", "ls").stdout.splitlines()
    assert table[0].split() == ["DRIVER", "VOLUME", "NAME"] and len(table) == 5
    assert "local" in table[1]
    assert k("volume", "ls", "--noheading", "--filter", "name=owned").stdout.split() == ["local", "owned"]
    assert k("volume", "ls", "--format", "{{.Name}} {{.Labels.team}}", "-f", "name=web1").stdout == "web1 web\n"
    out = k("volume", "ls", "--format", "table {{.Name}}\\t{{.Driver}}", "-f", "name=^db1$").stdout.splitlines()
    assert out[0].split() == ["NAME", "DRIVER"] and out[1].split() == ["db1", "local"]
    js = json.loads(k("volume", "ls", "--format", "json", "-f", "name=owned").stdout)
    assert [(d["Name"], d["UID"], d["GID"], d["NeedsChown"]) for d in js] == [("owned", 1000, 1001, False)]
    st = os.stat(js[0]["Mountpoint"])
    assert (st.st_uid, st.st_gid) == (1000, 1001)

    # inspect: several names, a unique prefix, templates, --all, a missing name
    assert k("volume", "inspect", "--format", "{{.Name}}={{.Labels.team}}", "web", "db1").stdout == \
        "web1=web\ndb1=db\n"
    assert len(json.loads(k("volume", "inspect", "--all").stdout)) == 4
    p = k("volume", "inspect", "web1", "nope", check=False)
    assert_one_error_line(p, contains='no volume with name "nope" found')
    assert [d["Name"] for d in json.loads(p.stdout)] == ["web1"]
    assert k("volume", "exists", "web1").returncode == 0
    assert k("volume", "exists", "web", check=False).returncode == 1  # exact names only

    # prune: filters, then everything unused; the volume in use stays
    assert k("volume", "prune", "-f", "--filter", "label=team=web").stdout == "web1\n"
    p = k("volume", "prune", input="n\n")
    assert "The following volumes will be removed" in p.stdout and "owned" in p.stdout
    assert set(_names(k)) == {"db1", "owned", anon}
    assert sorted(k("volume", "prune", "-f").stdout.split()) == sorted(["owned", anon])
    assert _names(k) == ["db1"]
    assert os.listdir(k.volumes_dir) == ["db1"]


def test_tmpfs_volume_mounted_while_containers_run(ctr):
    k = ctr
    k("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=2m,nodev", "scratch")
    v = _vol(k, "scratch")
    assert v["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=2m,nodev"}
    mp = v["Mountpoint"]
    assert mounts_under(mp) == []
    for name in ("t1", "t2"):
        k("run", "-d", "--name", name, *NONET, "-v", "scratch:/s", "busybox", "sh", "-c",
          f"echo {name} > /s/{name}; sleep 1000")
    assert mounts_under(mp) == [mp]
    assert _vol(k, "scratch")["MountCount"] == 2
    assert k("exec", "t2", "grep", " /s ", "/proc/mounts").stdout.split()[2] == "tmpfs"
    k.wait_for(lambda: sorted(os.listdir(mp)) == ["t1", "t2"], what="both writers")
    with open("/proc/self/mounts") as f:
        [line] = [l for l in f if l.split()[1] == mp]
    assert "size=2048k" in line and "nodev" in line
    k("stop", "-t", "0", "t1")
    assert mounts_under(mp) == [mp] and _vol(k, "scratch")["MountCount"] == 1
    k("stop", "-t", "0", "t2")
    assert mounts_under(mp) == [] and _vol(k, "scratch")["MountCount"] == 0
    assert os.listdir(mp) == []  # the tmpfs's files went with it
    k("start", "t1")
    assert mounts_under(mp) == [mp]
    k("rm", "-f", "t1")
    assert mounts_under(mp) == []
    # a mount that fails is a start error that leaves nothing mounted or running
    k("volume", "create", "-o", "type=ext4", "-o", "device=/dev/kpod-no-such-device", "broken")
    p = k("run", "--name", "b", *NONET, "-v", "broken:/b", "busybox", "true", check=False)
    assert_one_error_line(p, contains="mounting volume broken")
    assert k.state("b") == "created"
    assert mounts_under(k.graphroot) == []


def test_bad_input_creates_nothing(ctr, tmp_path):
    k = ctr

    def nothing():
        assert _names(k) == []
        assert not os.path.isdir(k.volumes_dir) or os.listdir(k.volumes_dir) == []
        assert k.ids() == []

    k("volume", "create", "taken")
    assert_one_error_line(k("volume", "create", "taken", check=False), contains="already exists")
    assert k("volume", "create", "--ignore", "taken").stdout == "taken\n"
    k("volume", "rm", "taken")
    for args, text in [
        (["bad/name"], "invalid volume name"),
        (["-x"], "No such option"),  # click: an option, as podman
        ([".hidden"], "invalid volume name"),
        (["--driver", "nfs", "v"], 'volume driver "nfs" is not supported'),
        (["-o", "bogus=1", "v"], "invalid volume option 'bogus'"),
        (["-o", "o=uid=me", "v"], "uid takes a number"),
        (["-o", "o=size=10m", "v"], "size needs type=tmpfs"),
        (["-o", "type=ext4", "v"], "needs device="),
        (["-o", "o=bind", "-o", "device=/kpod-no-such-dir", "v"], "existing absolute directory"),
        (["--label", "=x", "v"], "invalid label"),
    ]:
        p = k("volume", "create", *args, check=False)
        assert_one_error_line(p, contains=text)
        nothing()
    # through create/run: a bad name, a bad volume option, two volumes on one path
    for vol in ("b@d:/x", "v:/x:bogus", "v:relative"):
        assert_one_error_line(k("create", *NONET, "-v", vol, "busybox", check=False), contains="invalid volume")
        nothing()
    assert_one_error_line(k("create", *NONET, "--mount", "type=volume,src=v,dst=/x,bogus", "busybox", check=False),
                          contains="unknown option")
    assert_one_error_line(k("create", *NONET, "-v", "a:/x", "-v", "b:/x", "busybox", check=False),
                          contains="duplicate mount destination")
    nothing()
    # a container create that fails after its volumes were made removes them again
    assert_one_error_line(k("create", *NONET, "-v", f"{tmp_path}:/x", "-v", "made:/x", "busybox", check=False),
                          contains="duplicate mount destination")
    nothing()
    assert_one_error_line(k("create", *NONET, "--pull", "never", "-v", "made:/x", "no-such-image", check=False))
    nothing()


def test_concurrent_creates_of_one_name(ctr):
    k = ctr
    procs = [subprocess.Popen([KPOD, *k.kpod.global_args, "volume", "create", "same"], env=k.kpod.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)]
    results = [(p.communicate(timeout=60), p.returncode) for p in procs]
    results = [(code, out, err) for (out, err), code in results]
    assert sorted(r[0] for r in results) == [0] + [125] * 5, results
    for code, out, err in results:
        if code == 0:
            assert out == "same\n" and err == ""
        else:
            assert out == "" and err.count("\n") == 1 and "volume with name same already exists" in err
    assert _names(k) == ["same"]
    # implicit creation by run: every container gets the one volume
    procs = [subprocess.Popen([KPOD, *k.kpod.global_args, "run", "--rm", *NONET, "-v", "both:/d", "busybox",
                               "sh", "-c", f"echo {i} >> /d/log"], env=k.kpod.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(4)]
    results = [(p.communicate(timeout=120), p.returncode) for p in procs]
    results = [(code, out, err) for (out, err), code in results]
    assert [r[0] for r in results] == [0] * 4, results
    assert sorted(_names(k)) == ["both", "same"]
    with open(os.path.join(_vol(k, "both")["Mountpoint"], "log")) as f:
        assert sorted(f.read().split()) == ["0", "1", "2", "3"]
    assert sorted(os.listdir(k.volumes_dir)) == ["both", "same"]


def test_anonymous_volume_belongs_to_its_container(ctr):
    k = ctr
    _image(k, ["/data"], DATA)
    out = k("run", "--name", "a", *NONET, "-v", "/scratch", "--mount", "type=volume,target=/data", IMG, "sh", "-c",
            "echo x > /scratch/f; cat /data/hello").stdout
    assert out == "from-image\n"
    vols = {m["Destination"]: m for m in k.inspect("a")["Mounts"]}
    assert set(vols) == {"/scratch", "/data"} and all(m["Type"] == "volume" for m in vols.values())
    assert open(os.path.join(vols["/scratch"]["Source"], "f")).read() == "x\n"
    assert _names(k) == []
    k("rm", "a")
    assert not os.path.exists(vols["/scratch"]["Source"])


def test_existing_database_gets_the_volume_tables(ctr):
    k = ctr
    k("create", "--name", "old", *NONET, "busybox", "true")
    db = os.path.join(k.graphroot, "kpod.db")
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE IF EXISTS container_volumes")
        conn.execute("DROP TABLE IF EXISTS volumes")
        conn.execute("DELETE FROM schema_versions WHERE area = 'volumes'")
    conn.close()
    k("run", "--rm", *NONET, "-v", "later:/d", "busybox", "true")
    assert _names(k) == ["later"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version FROM schema_versions WHERE area = 'volumes'").fetchone() == (1,)
    conn.close()
    k("rm", "old")
    assert k.ids() == []


def test_leftovers_of_a_killed_kpod_are_removed(ctr):
    """A kpod killed between making a volume's directory and its row (or between deleting
    the row and the directory) leaves a directory without a row: creating that name again
    starts from an empty directory, and prune removes the others."""
    k = ctr
    for name in ("ghost", "orphan"):
        os.makedirs(os.path.join(k.volumes_dir, name, "_data", "junk"))
    k("volume", "create", "keep")
    assert _names(k) == ["keep"]
    k("volume", "create", "ghost")
    assert os.listdir(_vol(k, "ghost")["Mountpoint"]) == []
    assert k("volume", "prune", "-f", "--filter", "label=none").stdout == ""
    assert sorted(os.listdir(k.volumes_dir)) == ["ghost", "keep"]


# ---------------------------------------------------------------------------------------
# export, import, mount, unmount; kpod inspect of volumes
# ---------------------------------------------------------------------------------------

def _tree(root: str) -> dict:
    """The tarapply tests' snapshot of everything under *root* (type, mode, content or link
    target, mtime) with each entry's owner, and the root's own mode, owner and mtime as "."."""
    snap = snapshot(root, os.path.join(root, ".not-there"))
    out = {p: (*v, os.lstat(os.path.join(root, p)).st_uid, os.lstat(os.path.join(root, p)).st_gid)
           for p, v in snap.items()}
    st = os.lstat(root)
    out["."] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns)
    return out


def _fill(data: str) -> None:
    """A volume's worth of awkward content: owners, modes (setuid, sticky), old mtimes,
    relative, absolute and dangling symlinks, a hard link, a fifo, an empty directory."""
    os.makedirs(os.path.join(data, "sub", "deep"))
    os.mkdir(os.path.join(data, "empty"))
    for rel, content, mode, owner in [("top.txt", b"top\n", 0o640, (123, 456)),
                                      ("sub/deep/x.bin", bytes(range(256)) * 300, 0o4755, (0, 0)),
                                      ("sub/space name \u00e9", b"", 0o600, (1000, 1000))]:
        path = os.path.join(data, rel)
        with open(path, "wb") as f:
            f.write(content)
        os.chown(path, *owner)
        os.chmod(path, mode)
    os.link(os.path.join(data, "top.txt"), os.path.join(data, "sub", "hardlink"))
    os.symlink("../top.txt", os.path.join(data, "sub", "rel-link"))
    os.symlink("/etc/passwd", os.path.join(data, "abs-link"))
    os.symlink("nowhere", os.path.join(data, "dangling"))
    os.mkfifo(os.path.join(data, "fifo"), 0o620)
    os.chown(os.path.join(data, "sub"), 1000, 1001)
    os.chmod(os.path.join(data, "sub"), 0o1750)
    for rel in ("abs-link", "dangling", "fifo", "sub/space name \u00e9", "sub/rel-link", "top.txt", "sub/deep/x.bin",
                "sub/deep", "sub", "empty"):  # whole seconds: what a tar keeps
        os.utime(os.path.join(data, rel), (1_000_000_000, 1_000_000_000 + len(rel)), follow_symlinks=False)


def _tar(*members) -> bytes:
    return make_tar(list(members))


def _error(p, contains: str) -> None:
    """assert_one_error_line, also for a run whose output was bytes (input=bytes)."""
    if isinstance(p.stderr, bytes):
        p = subprocess.CompletedProcess(p.args, p.returncode, p.stdout.decode(errors="replace"),
                                        p.stderr.decode(errors="replace"))
    assert_one_error_line(p, contains=contains)


def _filled(k, name: str) -> tuple[str, dict]:
    """A new volume with _fill's content: its data directory and its _tree."""
    k("volume", "create", name)
    data = _vol(k, name)["Mountpoint"]
    _fill(data)
    return data, _tree(data)


def _stray(k) -> list[str]:
    """What an import leaves in a volume's directory besides _data (nothing, ever)."""
    return [f"{v}/{e}" for v in os.listdir(k.volumes_dir) for e in os.listdir(os.path.join(k.volumes_dir, v))
            if e != "_data"]


def test_export_import_round_trip(ctr, tmp_path):
    k = ctr
    src, before = _filled(k, "src")
    out = tmp_path / "src.tar"
    assert k("volume", "export", "-o", str(out), "src").stdout == ""
    assert not [p for p in os.listdir(tmp_path) if "kpod-tmp" in p]  # the temporary file was renamed
    with tarfile.open(out) as tf:
        names = tf.getnames()
    assert "top.txt" in names and "sub/deep/x.bin" in names and not any(n in (".", "./", "") for n in names)
    # stdout gives the same bytes (the walk is sorted)
    assert k("volume", "export", "src", input=b"").stdout == out.read_bytes()
    assert _tree(src) == before  # export changes nothing

    # into a fresh volume: the same tree (its root keeps its own metadata: no "." entry)
    k("volume", "create", "copy")
    dst = _vol(k, "copy")["Mountpoint"]
    root_before = os.lstat(dst)
    assert k("volume", "import", "copy", str(out)).stdout == ""
    after = _tree(dst)
    assert {p: v for p, v in after.items() if p != "."} == {p: v for p, v in before.items() if p != "."}
    assert after["."][:3] == (root_before.st_mode, root_before.st_uid, root_before.st_gid)
    assert os.lstat(os.path.join(dst, "top.txt")).st_ino == os.lstat(os.path.join(dst, "sub", "hardlink")).st_ino
    # parents the archive does not name: an existing one keeps its owner and mode, a new one is 0755
    k("volume", "import", "copy", "-", input=_tar(("sub/deep/added", "file", b"+\n"), ("fresh/x", "file", b"x")))
    again = _tree(dst)
    for p in ("sub", "sub/deep"):
        assert (again[p][:2], again[p][4:]) == (after[p][:2], after[p][4:]), p
    assert again["sub/deep/added"][2] == b"+\n" and stat.S_IMODE(again["fresh"][1]) == 0o755

    # into a volume with content: merged, the archive wins, a symlink in the way is replaced
    outside = tmp_path / "outside"
    outside.mkdir()
    k("volume", "create", "busy")
    busy = _vol(k, "busy")["Mountpoint"]
    with open(os.path.join(busy, "top.txt"), "w") as f:
        f.write("old\n")
    with open(os.path.join(busy, "mine"), "w") as f:
        f.write("kept\n")
    os.symlink(str(outside), os.path.join(busy, "sub"))  # the archive's sub/ must not go through it
    os.mkdir(os.path.join(busy, "empty"))
    with open(os.path.join(busy, "empty", "old-file"), "w") as f:
        f.write("stays\n")
    os.makedirs(os.path.join(busy, "fifo", "was-a-dir"))
    k("volume", "import", "busy", str(out))
    # an archive may replace its own symlink by a directory: replaced, never followed
    k("volume", "import", "busy", "-", input=_tar(("s", "symlink", str(outside)), ("s/", "dir", None), ("s/f", "file", b"x")))
    assert os.path.isdir(os.path.join(busy, "s")) and not os.path.islink(os.path.join(busy, "s"))
    merged = _tree(busy)
    assert os.listdir(outside) == []
    assert merged["mine"][2] == b"kept\n" and merged["empty/old-file"][2] == b"stays\n"
    for p, v in before.items():
        if p != ".":  # a merged directory ("empty") takes the archive's metadata too
            assert merged[p] == v, p
    assert _stray(k) == []


def test_export_to_stdout_and_its_errors(ctr, tmp_path):
    k = ctr
    k("volume", "create", "v")
    with open(os.path.join(_vol(k, "v")["Mountpoint"], "f"), "w") as f:
        f.write("data\n")
    with tarfile.open(fileobj=io.BytesIO(k("volume", "export", "v", input=b"").stdout)) as tf:
        assert tf.getnames() == ["f"] and tf.extractfile("f").read() == b"data\n"
    # a terminal is refused
    master, slave = os.openpty()
    try:
        p = subprocess.run([KPOD, *k.kpod.global_args, "volume", "export", "v"], stdout=slave,
                           stderr=subprocess.PIPE, env=k.kpod.env, text=True, timeout=60)
    finally:
        os.close(slave)
        os.close(master)
    assert_one_error_line(p, contains="cannot write to terminal")
    assert_one_error_line(k("volume", "export", "-o", "", "v", check=False), contains="must provide valid path")
    out = tmp_path / "out"
    out.mkdir()
    missing = out / "no-such-dir" / "v.tar"
    assert_one_error_line(k("volume", "export", "-o", str(missing), "v", check=False),
                          contains="unable to create target file path")
    # an unknown volume: podman's error, and no file (an existing one stays as it was)
    target = out / "keep.tar"
    target.write_bytes(b"previous")
    for args in (["export", "nope"], ["export", "-o", str(target), "nope"], ["import", "nope", str(target)],
                 ["import", "nope", "-"], ["mount", "nope"], ["unmount", "nope"], ["umount", "nope"]):
        p = k("volume", *args, check=False)
        assert_one_error_line(p, contains='no volume with name "nope" found: no such volume')
        assert p.stdout == ""
    assert target.read_bytes() == b"previous" and os.listdir(out) == ["keep.tar"]
    assert_one_error_line(k("volume", "import", "v", str(out / "absent.tar"), check=False),
                          contains="No such file or directory")
    assert_one_error_line(k("volume", "import", "v", check=False), contains="Missing argument 'SOURCE'")


def test_import_from_stdin_and_compressed(ctr, tmp_path):
    k = ctr
    k("volume", "create", "v")
    data = _vol(k, "v")["Mountpoint"]
    plain = _tar(("d", "dir", None), ("d/one", "file", b"1\n"), ("link", "symlink", "d/one"))
    k("volume", "import", "v", "-", input=plain)
    assert open(os.path.join(data, "link")).read() == "1\n"
    for n, packed in enumerate([gzip.compress(_tar(("gz", "file", b"gzip\n"))),
                                bz2.compress(_tar(("bz", "file", b"bzip2\n"))),
                                lzma.compress(_tar(("xz", "file", b"xz\n"))),
                                zstandard.ZstdCompressor().compress(_tar(("zst", "file", b"zstd\n")))]):
        path = tmp_path / f"a{n}.tar.x"
        path.write_bytes(packed)
        k("volume", "import", "v", str(path))
        k("volume", "import", "v", "-", input=packed)
    assert sorted(os.listdir(data)) == ["bz", "d", "gz", "link", "xz", "zst"]
    assert open(os.path.join(data, "xz")).read() == "xz\n"
    assert _stray(k) == []


HOSTILE = {
    "dot-dot": lambda out: [("../escape", "file", b"x")],
    "deep-dot-dot": lambda out: [("a/../../escape", "file", b"x")],
    "absolute": lambda out: [(f"{out}/abs", "file", b"x")],
    "symlink-out": lambda out: [("link", "symlink", str(out)), ("link/through", "file", b"x")],
    "symlink-up": lambda out: [("d", "dir", None), ("d/up", "symlink", "../../../../../../../.."),
                               ("d/up/" + str(out).lstrip("/") + "/through", "file", b"x")],
    "hardlink-out": lambda out: [("h", "hardlink", "/etc/passwd")],
    "hardlink-dot-dot": lambda out: [("h", "hardlink", "../../../../etc/passwd")],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_changes_nothing(ctr, tmp_path, case):
    k = ctr
    outside = tmp_path / "outside"
    outside.mkdir()
    data, before = _filled(k, "v")
    # good entries first (one overwriting an existing file), then the hostile ones
    archive = _tar(("new", "file", b"new\n"), ("top.txt", "file", b"overwritten\n"), *HOSTILE[case](outside))
    for how in ("file", "stdin"):
        if how == "file":
            (tmp_path / "bad.tar").write_bytes(archive)
            p = k("volume", "import", "v", str(tmp_path / "bad.tar"), check=False)
        else:
            p = k("volume", "import", "v", "-", input=archive, check=False)
        _error(p, "extracting into volume v")
        assert os.listdir(outside) == [], case
        assert not os.path.lexists(os.path.join(k.volumes_dir, "escape"))
        assert not os.path.lexists(os.path.join(k.volumes_dir, "v", "escape"))
        assert _tree(data) == before, case
        assert _stray(k) == []


def test_corrupt_archive_changes_nothing(ctr, tmp_path):
    k = ctr
    data, before = _filled(k, "v")
    good = _tar(("top.txt", "file", b"overwritten\n"), ("big", "file", os.urandom(20000)), ("z", "file", b"z"))
    gz = gzip.compress(good)
    bad_header = bytearray(good)
    bad_header[148:156] = b"garbage!"  # the first header's checksum
    for name, blob in [("cut in a file's data", good[:512 + 512 + 512 + 4000]),
                       ("cut in a header", good[:512 + 512 + 512 + 20480 + 100]),
                       ("bad checksum", bytes(bad_header)),
                       ("not a tar", b"this is not a tar archive at all\n" * 40),
                       ("cut gzip", gz[: len(gz) // 2]),
                       ("corrupt gzip", gz[:20] + bytes(200) + gz[220:]),
                       ("cut xz", lzma.compress(good)[:300]),
                       ("cut bzip2", bz2.compress(good)[:300])]:
        p = k("volume", "import", "v", "-", input=blob, check=False)
        assert p.returncode == 125, (name, p.stderr)
        _error(p, "extracting into volume v")
        assert _tree(data) == before, name
        assert _stray(k) == []
    # a leftover of a killed import is removed by the next one
    os.makedirs(os.path.join(k.volumes_dir, "v", ".kpod-import-999999999.abc", "junk"))
    k("volume", "import", "v", "-", input=_tar(("ok", "file", b"ok\n")))
    assert _stray(k) == [] and open(os.path.join(data, "ok")).read() == "ok\n"


def test_mount_unmount_plain_and_tmpfs(ctr, tmp_path):
    k = ctr
    k("volume", "create", "plain")
    mp = _vol(k, "plain")["Mountpoint"]
    assert k("volume", "mount", "plain").stdout == mp + "\n"
    assert k("volume", "unmount", "plain").stdout == "plain\n"
    assert k("volume", "umount", "plain").stdout == "plain\n"  # nothing to give back: no error
    assert _vol(k, "plain")["MountCount"] == 0 and mounts_under(k.graphroot) == []

    k("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=2m", "scratch")
    mp = _vol(k, "scratch")["Mountpoint"]
    try:
        # export/import of a volume nobody holds mount it for their duration only
        assert k("volume", "export", "scratch", input=b"").stdout == bytes(10240)  # an empty archive
        k("volume", "import", "scratch", "-", input=_tar(("gone", "file", b"x")))
        assert mounts_under(mp) == [] and _vol(k, "scratch")["MountCount"] == 0 and os.listdir(mp) == []

        assert k("volume", "mount", "scratch").stdout == mp + "\n"
        assert mounts_under(mp) == [mp] and _vol(k, "scratch")["MountCount"] == 1
        with open("/proc/self/mounts") as f:
            assert [l.split()[2] for l in f if l.split()[1] == mp] == ["tmpfs"]
        k("volume", "mount", "scratch")
        assert _vol(k, "scratch")["MountCount"] == 2 and mounts_under(mp) == [mp]
        # an import now lands on the tmpfs (staged inside it) and a container sees it
        k("volume", "import", "scratch", "-", input=_tar(("d", "dir", None), ("d/f", "file", b"on tmpfs\n")))
        assert sorted(os.listdir(mp)) == ["d"]
        k("run", "-d", "--name", "user", *NONET, "-v", "scratch:/s", "busybox", "sleep", "1000")
        assert _vol(k, "scratch")["MountCount"] == 3
        assert k("exec", "user", "cat", "/s/d/f").stdout == "on tmpfs\n"
        # into a volume a running container uses (podman allows it): the container sees it
        k("volume", "import", "scratch", "-", input=_tar(("later", "file", b"later\n")))
        assert k("exec", "user", "cat", "/s/later").stdout == "later\n"
        with tarfile.open(fileobj=io.BytesIO(k("volume", "export", "scratch", input=b"").stdout)) as tf:
            assert sorted(tf.getnames()) == ["d", "d/f", "later"]
        assert k("volume", "unmount", "scratch").stdout == "scratch\n"
        assert k("volume", "umount", "scratch").stdout == "scratch\n"
        assert _vol(k, "scratch")["MountCount"] == 1 and mounts_under(mp) == [mp]  # the container's
        k("volume", "unmount", "scratch")  # never takes the container's hold
        assert _vol(k, "scratch")["MountCount"] == 1 and mounts_under(mp) == [mp]
        k("volume", "mount", "scratch")
        k("stop", "-t", "0", "user")  # the container lets go; the volume mount still holds
        assert _vol(k, "scratch")["MountCount"] == 1 and mounts_under(mp) == [mp]
        assert sorted(os.listdir(mp)) == ["d", "later"]
        # a holder of a kpod process that is gone does not keep the mount
        open(os.path.join(k.runroot, "volumes", "scratch", "pid.999999999.ab"), "w").close()
        k("volume", "unmount", "scratch")
        assert mounts_under(mp) == [] and _vol(k, "scratch")["MountCount"] == 0 and os.listdir(mp) == []
        # a mount that fails counts nothing
        k("volume", "create", "-o", "type=ext4", "-o", "device=/dev/kpod-no-such-device", "broken")
        assert_one_error_line(k("volume", "mount", "broken", check=False), contains="mounting volume broken")
        assert _vol(k, "broken")["MountCount"] == 0
        # volume rm of a mounted volume unmounts it
        k("volume", "mount", "scratch")
        k("rm", "user")
        k("volume", "rm", "scratch")
        assert mounts_under(k.graphroot) == []
    finally:
        for m in reversed(mounts_under(k.graphroot)):
            subprocess.run(["umount", "-l", m], check=False)


def test_inspect_type_volume_and_fallback(ctr):
    k = ctr
    k("volume", "create", "--label", "a=b", "data")
    own = json.loads(k("volume", "inspect", "data").stdout)
    assert json.loads(k("inspect", "--type", "volume", "data").stdout) == own
    assert json.loads(k("inspect", "-t", "volume", "dat").stdout) == own  # a unique prefix, as volume inspect
    assert json.loads(k("inspect", "data").stdout) == own  # no container or image has that name
    assert k("inspect", "--format", "{{.Name}} {{.Labels.a}} {{.Driver}}", "data").stdout == "data b local\n"
    # a container of the same name comes first, as podman; --type picks
    k("create", "--name", "data", *NONET, "busybox", "true")
    assert "State" in json.loads(k("inspect", "data").stdout)[0]
    assert json.loads(k("inspect", "--type", "volume", "data").stdout) == own
    assert k("inspect", "--type", "container", "data", "--format", "{{.Name}}").stdout == "data\n"
    # an image name too: busybox is an image, not a volume
    k("volume", "create", "busybox")
    assert "RepoTags" in json.loads(k("inspect", "busybox").stdout)[0]
    assert json.loads(k("inspect", "--type", "volume", "busybox").stdout)[0]["Name"] == "busybox"
    # errors: the found ones are printed, then one error line per missing name
    p = k("inspect", "--type", "volume", "busybox", "nope", check=False)
    assert_one_error_line(p, contains="no such volume nope")
    assert [d["Name"] for d in json.loads(p.stdout)] == ["busybox"]
    assert_one_error_line(k("inspect", "nope", check=False), contains='no such object: "nope"')
    k("volume", "create", "busybox2")
    assert_one_error_line(k("inspect", "--type", "volume", "busy", check=False), contains="more than one volume")
    assert_one_error_line(k("inspect", "--type", "volume", "--latest", check=False), contains="latest")
    assert_one_error_line(k("inspect", "--type", "network", "data", check=False), contains="no such network data")
    k("rm", "data")
