"""``kpod system df`` and ``kpod system prune`` through the real CLI: runc containers on
overlay, real volumes and CNI networks, each test with its own roots (conftest's ``kpod``).
df's numbers are checked against what the test created; prune against what must go and what
must stay; the finalizer proves no conmon, mount or cgroup is left."""

from __future__ import annotations

import json
import os

import pytest

from libpod_core.containers import human_size
from tests.conftest import assert_one_error_line
from tests.helpers_images import CtrEnv, add_busybox, mounts_under

pytestmark = pytest.mark.integration

if os.geteuid() != 0:
    pytest.skip("container tests need root", allow_module_level=True)
if not os.path.exists("/usr/lib/cni/bridge"):
    pytest.skip("CNI plugins not installed", allow_module_level=True)

NONET = ("--network", "none")


@pytest.fixture
def env(kpod):
    e = CtrEnv(kpod, "runc", "overlay")
    yield e
    e("pod", "rm", "-fa", check=False)
    vols = e("volume", "rm", "-af", check=False)
    e.finalize()
    assert vols.returncode == 0, vols.stderr
    problems = kpod.network_leftovers(e.seen)
    assert not problems, problems


def _add_image(env, name: str, cmd: str) -> str:
    """Another one-layer image (its own copy of busybox's layer; *cmd* makes its ID differ)."""
    return add_busybox(env.graphroot, env.runroot, name=name, config={"Cmd": [cmd]})


def _disk_usage(path: str) -> int:
    """What the files and directories under *path* take on disk (independently of kpod): their
    blocks, or the length of what has none (a short symlink: its target, never followed)."""
    total = 0
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            st = os.lstat(os.path.join(root, n))
            total += st.st_blocks * 512 or st.st_size
    return total


def _size_rw(env, name: str) -> int:
    return int(env("inspect", "-s", "--format", "{{.SizeRw}}", name).stdout)


def _image_size(env, ref: str) -> int:
    return int(env("image", "inspect", "--format", "{{.Size}}", ref).stdout)


def _reclaimable(part: int, whole: int) -> str:
    return f"{human_size(part)} ({int(part * 100 / whole + 0.5) if whole else 0}%)"


def _state(env) -> dict[str, list[str]]:
    """Every object of the store, by kind."""
    def ids(*args):
        return sorted(env(*args).stdout.split())

    return {
        "containers": ids("ps", "-aq", "--no-trunc"),
        "pods": ids("pod", "ps", "-q", "--no-trunc"),
        "images": ids("images", "-aq", "--no-trunc"),
        "volumes": ids("volume", "ls", "-q"),
        "networks": ids("network", "ls", "-q"),
    }


def _sections(out: str) -> dict[str, list[str]]:
    """The output of ``system prune``: heading -> the lines under it."""
    sections: dict[str, list[str]] = {}
    cur = None
    for line in out.splitlines():
        if line.startswith("Deleted "):
            cur = sections.setdefault(line, [])
        elif line.startswith("Total reclaimed space: "):
            sections["total"] = [line.split(": ", 1)[1]]
            cur = None
        elif cur is not None:
            cur.append(line)
    return sections


# ---------------------------------------------------------------------------------------
# df
# ---------------------------------------------------------------------------------------

def test_df_matches_what_was_created(env):
    k = env
    spare = _add_image(k, "localhost/spare:1", "spare")
    k("volume", "create", "data")
    k("volume", "create", "busy")
    data_dir = json.loads(k("volume", "inspect", "data").stdout)[0]["Mountpoint"]
    with open(os.path.join(data_dir, "blob"), "wb") as f:
        f.write(b"v" * 50_000)
    os.makedirs(os.path.join(data_dir, "sub"))
    os.symlink("/usr", os.path.join(data_dir, "sub", "usr"))  # not followed
    vol_size = _disk_usage(data_dir)
    assert 50_000 <= vol_size < 50_000 + 64 * 1024

    up = k("run", "-d", "--name", "up", *NONET, "-v", "busy:/busy", "busybox", "sleep", "1000").stdout.strip()
    k("run", "--name", "done", *NONET, "busybox", "sh", "-c", "head -c 200000 /dev/urandom > /blob")
    rw_up, rw_done = _size_rw(k, "up"), _size_rw(k, "done")
    assert 200_000 <= rw_done < 200_000 + 64 * 1024  # the file written into its layer
    img = _image_size(k, "busybox")
    assert _image_size(k, spare) == img  # the same layer content, stored twice

    # the table
    lines = k("system", "df").stdout.splitlines()
    assert lines[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    head = lines[0]
    rows = {}
    for l in lines[1:]:
        typ = l[:head.index("TOTAL")].strip()
        rows[typ] = l[head.index("TOTAL"):].split(None, 3)
    assert rows == {
        "Images": ["2", "1", human_size(2 * img), _reclaimable(img, 2 * img)],
        "Containers": ["2", "1", human_size(rw_up + rw_done), _reclaimable(rw_done, rw_up + rw_done)],
        "Local Volumes": ["2", "1", human_size(vol_size), _reclaimable(vol_size, vol_size)],
    }
    assert rows["Images"][3].endswith("(50%)") and rows["Local Volumes"][3].endswith("(100%)")

    # --format json: the raw numbers too
    js = json.loads(k("system", "df", "--format", "json").stdout)
    assert [(r["Type"], r["Total"], r["Active"], r["RawSize"], r["RawReclaimable"]) for r in js] == [
        ("Images", 2, 1, 2 * img, img),
        ("Containers", 2, 1, rw_up + rw_done, rw_done),
        ("Local Volumes", 2, 1, vol_size, vol_size),
    ]
    assert js[2]["Size"] == human_size(vol_size) and js[0]["Reclaimable"] == _reclaimable(img, 2 * img)

    # a Go template, with and without a table header
    out = k("system", "df", "--format", "{{.Type}}|{{.Total}}|{{.RawSize}}").stdout.splitlines()
    assert out == [f"Images|2|{2 * img}", f"Containers|2|{rw_up + rw_done}", f"Local Volumes|2|{vol_size}"]
    out = k("system", "df", "--format", "table {{.Type}}\t{{.Active}}").stdout.splitlines()
    assert out[0].split() == ["TYPE", "ACTIVE"] and len(out) == 4

    # -v: three sections
    out = k("system", "df", "-v").stdout
    parts = out.split("\n\n")
    assert [p.strip() for p in parts[0::2]] == ["Images space usage:", "Containers space usage:",
                                                 "Local Volumes space usage:"]
    images, ctrs, vols = ([l.split("  ") for l in p.splitlines()] for p in parts[1::2])
    cells = [[c.strip() for c in row if c.strip()] for row in images]
    assert cells[0] == ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"]
    by_repo = {c[0]: c for c in cells[1:]}
    assert set(by_repo) == {"localhost/busybox", "localhost/spare"}
    assert by_repo["localhost/busybox"][1:3] == ["latest", k.image_id[:12]]
    assert by_repo["localhost/busybox"][4:] == [human_size(img), "0B", human_size(img), "2"]
    assert by_repo["localhost/spare"][4:] == [human_size(img), "0B", human_size(img), "0"]
    cells = [[c.strip() for c in row if c.strip()] for row in ctrs]
    assert cells[0] == ["CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE", "CREATED", "STATUS", "NAMES"]
    by_name = {c[-1]: c for c in cells[1:]}
    assert by_name["up"][:5] == [up[:12], k.image_id[:12], "sleep 1000", "1", human_size(rw_up)]
    assert by_name["up"][-2] == "running"
    assert by_name["done"][3:5] == ["0", human_size(rw_done)] and by_name["done"][-2] == "exited"
    cells = [[c.strip() for c in row if c.strip()] for row in vols]
    assert cells[0] == ["VOLUME NAME", "LINKS", "SIZE"]
    assert sorted(cells[1:]) == [["busy", "1", "0B"], ["data", "0", human_size(vol_size)]]

    assert_one_error_line(k("system", "df", "-v", "--format", "json", check=False), 125, "--verbose")
    # df mounts nothing: only the running container's root file system is mounted
    k("stop", "-t", "0", "up")
    assert mounts_under(k.graphroot) == []


# ---------------------------------------------------------------------------------------
# prune
# ---------------------------------------------------------------------------------------

def test_prune_asks_then_removes_what_is_unused(env):
    k = env
    up = k("run", "-d", "--name", "up", "-v", "used:/u", "busybox", "sleep", "1000").stdout.strip()  # default net
    done = k("create", "--name", "done", *NONET, "busybox", "sh", "-c", "head -c 100000 /dev/zero > /f").stdout.strip()
    k("start", "-a", "done")
    rw_done = _size_rw(k, "done")
    assert rw_done >= 100_000
    pod = k("pod", "create", "--name", "idle", "--infra=false").stdout.strip()
    dangling = _add_image(k, "localhost/dangle:1", "dangle")
    k("untag", "localhost/dangle:1")
    dangling_size = _image_size(k, dangling)
    spare = _add_image(k, "localhost/spare:1", "spare")
    k("volume", "create", "loose")
    loose_dir = json.loads(k("volume", "inspect", "loose").stdout)[0]["Mountpoint"]
    with open(os.path.join(loose_dir, "f"), "wb") as f:
        f.write(b"l" * 30_000)
    loose_size = _disk_usage(loose_dir)
    k("network", "create", "extra")
    before = _state(k)
    assert before["volumes"] == ["loose", "used"] and "extra" in before["networks"]
    default = [n for n in before["networks"] if n != "extra"]
    assert default == ["kpod"]

    # no -f: the warning, the question, and "n" (or nothing) removes nothing
    for answer in ("n\n", "", "nope\n", "\n"):
        p = k("system", "prune", input=answer)
        assert p.returncode == 0, p.stderr
        assert p.stdout.startswith("WARNING! This command removes:\n")
        assert "all dangling images" in p.stdout and "volumes" not in p.stdout
        assert p.stdout.rstrip().endswith("Are you sure you want to continue? [y/N]")
        assert "Deleted" not in p.stdout and "Total reclaimed" not in p.stdout
        assert _state(k) == before
    p = k("system", "prune", "-a", "--volumes", input="n\n")
    assert "all images without at least one container associated with them" in p.stdout
    assert "all volumes not used by at least one container" in p.stdout
    assert _state(k) == before

    # "y": the exited container, the unused pod, the dangling image and the unused network go
    p = k("system", "prune", input="y\n")
    assert p.returncode == 0, p.stderr
    got = _sections(p.stdout.split("[y/N] ", 1)[1])
    assert got == {
        "Deleted Containers": [done],
        "Deleted Pods": [pod],
        "Deleted Images": [dangling],
        "Deleted Networks": ["extra"],
        "total": [human_size(rw_done + dangling_size)],
    }
    after = _state(k)
    assert after["containers"] == [up] and after["pods"] == []
    assert after["images"] == sorted([k.image_id, spare])
    assert after["volumes"] == ["loose", "used"]  # no --volumes
    assert after["networks"] == ["kpod"]
    assert k.state("up") == "running"

    # --volumes: the unused volume goes, the one in use stays
    p = k("system", "prune", "-f", "--volumes")
    assert _sections(p.stdout) == {"Deleted Volumes": ["loose"], "total": [human_size(loose_size)]}
    assert _state(k)["volumes"] == ["used"]

    # -a: every image no container uses; the running container's image stays
    p = k("system", "prune", "-af")
    assert _sections(p.stdout) == {"Deleted Images": [spare], "total": [human_size(_image_size(k, k.image_id))]}
    assert _state(k)["images"] == [k.image_id]

    # nothing left to prune
    assert k("system", "prune", "-af", "--volumes").stdout == "Total reclaimed space: 0B\n"

    # once stopped, everything but the default network goes, and nothing stays mounted
    k("stop", "-t", "0", "up")
    p = k("system", "prune", "-af", "--volumes")
    got = _sections(p.stdout)
    assert got["Deleted Containers"] == [up] and got["Deleted Volumes"] == ["used"]
    assert got["Deleted Images"] == [k.image_id] and "Deleted Networks" not in got
    assert _state(k) == {"containers": [], "pods": [], "images": [], "volumes": [], "networks": ["kpod"]}
    assert mounts_under(k.graphroot) == [] and mounts_under(k.runroot) == []


def test_prune_filters(env):
    k = env
    a = k("create", "--name", "a", *NONET, "--label", "keep=no", "busybox").stdout.strip()
    b = k("create", "--name", "b", *NONET, "busybox").stdout.strip()
    k("volume", "create", "--label", "keep=no", "va")
    k("volume", "create", "vb")
    # created an hour ago or earlier: nothing
    assert k("system", "prune", "-f", "--volumes", "--filter", "until=1h").stdout == "Total reclaimed space: 0B\n"
    # label=: only what carries it
    got = _sections(k("system", "prune", "-f", "--volumes", "--filter", "label=keep=no").stdout)
    assert got["Deleted Containers"] == [a] and got["Deleted Volumes"] == ["va"]
    # label!=: what does not carry it
    k("create", "--name", "c", *NONET, "--label", "keep=yes", "busybox")
    got = _sections(k("system", "prune", "-f", "--volumes", "--filter", "label!=keep=yes").stdout)
    assert got["Deleted Containers"] == [b] and got["Deleted Volumes"] == ["vb"]
    assert k("ps", "-a", "--format", "{{.Names}}").stdout.split() == ["c"]


def test_prune_bad_input_removes_nothing(env):
    k = env
    k("create", "--name", "idle", *NONET, "busybox")
    k("volume", "create", "v")
    before = _state(k)
    for args in (["--filter", "colour=red"], ["--filter", "until=someday"], ["--filter", "label"],
                 ["--filter", "dangling=true"]):
        for force in ([], ["-f"]):
            p = k("system", "prune", *force, "--volumes", *args, input="y\n", check=False)
            assert_one_error_line(p, 125, "invalid filter")
            assert "WARNING" not in p.stdout and p.stdout == ""
    p = k("system", "prune", "-f", "--filter", "until=someday", check=False)
    assert "until=someday" in p.stderr and "invalid time" in p.stderr
    assert _state(k) == before
    assert_one_error_line(k("system", "prune", "--bogus", check=False), 125)
    assert_one_error_line(k("system", "df", "--verbose", "--format", "{{.Type}}", check=False), 125,
                          "cannot combine --format and --verbose")
    assert _state(k) == before
