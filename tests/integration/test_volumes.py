"""Named volumes through the real kpod CLI with runc and crun: ``kpod volume`` and
``create``/``run -v NAME:/dst`` / ``--mount type=volume``.

Every test has its own roots (conftest's ``kpod``); the fixture removes every volume
(``volume rm -af``, which removes their containers) and then runs CtrEnv's finalizer
(``rm -fa``, no conmon, mount or cgroup left), so a failing test cleans up too.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess

import pytest

from tests.conftest import KPOD, assert_one_error_line
from tests.helpers_images import CtrEnv, mounts_under
from tests.integration.test_image_volumes import DATA, IMG, _image

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
