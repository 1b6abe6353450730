"""``kpod events`` and the events log (podman's file backend) through the real CLI, with real
containers (conftest's ``kpod`` roots, tests/helpers_images.py's CtrEnv)."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import threading
import time

import pytest

from tests.conftest import KPOD, assert_one_error_line
from tests.helpers_images import CtrEnv

pytestmark = pytest.mark.integration

if os.geteuid() != 0:
    pytest.skip("container tests need root", allow_module_level=True)

IMAGE = "localhost/busybox:latest"
LINE_RE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,9})? [+-]\d{4} \S+ ")


@pytest.fixture
def ctr(kpod):
    env = CtrEnv(kpod, "runc", "overlay")
    yield env
    env.finalize()


def log_path(k) -> str:
    return os.path.join(k.runroot, "events", "events.log")


def events(k, *args, env=None) -> list[dict]:
    """Every recorded event (``--stream=false --format json``), oldest first."""
    out = k("events", "--stream=false", "--format", "json", *args, env=env).stdout
    return [json.loads(line) for line in out.splitlines()]


def of(evs, name) -> list[str]:
    return [e["Status"] for e in evs if e.get("Name") == name]


def raw_records(path) -> list[dict]:
    with open(path, "rb") as f:
        return [json.loads(line) for line in f.read().splitlines()]


# ---------------------------------------------------------------------------------------
# what is recorded
# ---------------------------------------------------------------------------------------

def test_container_lifecycle_events(ctr):
    k = ctr
    t0 = time.time_ns()
    k("run", "--rm", "--name", "once", "--label", "app=x", "--network", "none", "busybox", "true")
    evs = events(k)
    seq = of(evs, "once")
    # run --rm: the foreground kpod removes the container itself, "died" just before "remove"
    assert seq == ["create", "init", "start", "died", "remove"], seq
    mine = [e for e in evs if e.get("Name") == "once"]
    assert len({e["ID"] for e in mine}) == 1 and re.fullmatch(r"[0-9a-f]{64}", mine[0]["ID"])
    for e in mine:
        assert (e["Type"], e["Image"], e["Attributes"]) == ("container", IMAGE, {"app": "x"})
        assert [f for f in e if f != "ContainerExitCode"][:3] == ["ID", "Image", "Name"]  # podman's order (the exit code first when there is one)
        assert t0 <= e["timeNano"] <= time.time_ns()
        assert e["Time"].startswith(time.strftime("%Y-%m-%dT", time.localtime(e["timeNano"] // 10**9)))
    assert [e["timeNano"] for e in mine] == sorted(e["timeNano"] for e in mine)

    # a detached container that exits by itself: conmon's exit command records "died"
    # with the exit code; stop/kill/pause/unpause/rename/exec/rm of a running one
    k("run", "-d", "--name", "quits", "--network", "none", "busybox", "sh", "-c", "exit 3")
    died = k.wait_for(lambda: [e for e in events(k, "--filter", "event=died") if e["Name"] == "quits"],
                      what="the died event")
    assert died[0]["ContainerExitCode"] == 3
    k("run", "-d", "--name", "svc", "--network", "none", "busybox", "sleep", "300")
    k("pause", "svc")
    k("unpause", "svc")
    k("exec", "svc", "true")
    k("kill", "svc")
    k.wait_for(lambda: "died" in of(events(k, "--filter", "container=svc"), "svc"), what="svc's died event")
    k("rename", "svc", "svc2")
    k("rm", "svc2", "quits")
    assert of(events(k, "--filter", "container=svc"), "svc") == [
        "create", "init", "start", "pause", "unpause", "exec", "kill", "died"]
    assert of(events(k), "svc2") == ["rename", "remove"]
    assert of(events(k), "quits") == ["create", "init", "start", "died", "remove"]

    # the default output: podman's line
    lines = k("events", "--stream=false", "--filter", "container=once").stdout.splitlines()
    assert len(lines) == len(of(evs, "once"))
    cid = mine[0]["ID"]
    for line, e in zip(lines, mine):
        assert LINE_RE.match(line), line
        assert line.endswith(f" container {e['Status']} {cid} (image={IMAGE}, name=once, app=x)"), line
    short = k("events", "--stream=false", "--no-trunc=false", "--filter", "container=once").stdout.splitlines()
    assert f" container create {cid[:12]} (image=" in short[0]


def test_image_pod_volume_network_events(ctr, tmp_path):
    from libpod_core.testimage import rootfs_tar
    from tests.helpers_net import claim_subnet, delete_link, new_bridge, release_subnet

    k = ctr
    tar = tmp_path / "rootfs.tar"
    tar.write_bytes(rootfs_tar())
    iid = k("import", str(tar), "imported").stdout.strip().removeprefix("sha256:")
    k("tag", "imported", "imported:v2", "other/name:1")
    k("untag", "imported", "localhost/other/name:1")
    k("rmi", "imported:v2")  # untags (the image has two names)
    k("rmi", "imported")
    evs = events(k, "--filter", "type=image")
    assert [(e["Status"], e["Name"]) for e in evs] == [
        ("import", "localhost/imported:latest"), ("tag", "localhost/imported:v2"),
        ("tag", "localhost/other/name:1"), ("untag", "localhost/other/name:1"),
        ("untag", "localhost/imported:v2"), ("remove", "localhost/imported:latest")]
    assert {e["ID"] for e in evs} == {iid} and all(e["Type"] == "image" for e in evs)
    # image= matches an image event's name or ID prefix
    assert len(events(k, "--filter", f"image={iid[:10]}")) == 6
    assert of(events(k, "--filter", "image=localhost/other/name:1"), "localhost/other/name:1") == ["tag", "untag"]
    line = k("events", "--stream=false", "--filter", "event=import").stdout.strip()
    assert line.endswith(f" image import {iid} localhost/imported:latest")

    k("pod", "create", "--infra=false", "--name", "pd")
    k("pod", "start", "pd")
    k("pod", "stop", "pd")
    k("pod", "rm", "pd")
    pods = events(k, "--filter", "type=pod")
    assert [e["Status"] for e in pods] == ["create", "start", "stop", "remove"]
    assert {e["Name"] for e in pods} == {"pd"} and len({e["ID"] for e in pods}) == 1
    assert len(events(k, "--filter", "pod=pd")) == 4

    k("volume", "create", "vola")
    k("volume", "create", "volb")
    k("volume", "rm", "vola")
    k("volume", "prune", "-f")
    vols = events(k, "--filter", "type=volume")
    assert [(e["Status"], e["Name"]) for e in vols] == [
        ("create", "vola"), ("create", "volb"), ("remove", "vola"), ("remove", "volb"), ("prune", "volb")]
    assert [e["Status"] for e in events(k, "--filter", "volume=volb")] == ["create", "remove", "prune"]
    assert k("events", "--stream=false", "--filter", "volume=vola").stdout.splitlines()[0].endswith(
        " volume create vola")

    subnet, bridge = claim_subnet(), new_bridge()
    try:
        k("network", "create", "--subnet", subnet, "--interface-name", bridge, "--disable-dns", "side")
        k("create", "--name", "wired", "busybox", "true")
        k("network", "connect", "side", "wired")
        k("network", "disconnect", "side", "wired")
        nets = events(k, "--filter", "type=network")
        assert [(e["Status"], e["Name"], e["network"]) for e in nets] == [
            ("connect", "wired", "side"), ("disconnect", "wired", "side")]
        assert len(events(k, "--filter", "network=side")) == 2
        assert events(k, "--filter", "network=kpod") == []
        line = k("events", "--stream=false", "--filter", "type=network").stdout.splitlines()[0]
        assert line.endswith(f" network connect {nets[0]['ID']} (container={nets[0]['ID']}, name=side)")
        k("rm", "wired")
        k("network", "rm", "side")
    finally:
        delete_link(bridge)
        release_subnet(subnet)


# ---------------------------------------------------------------------------------------
# reading: filters, times, formats
# ---------------------------------------------------------------------------------------

def test_filters_times_and_formats(ctr):
    k = ctr
    k("create", "--name", "a", "--label", "tier=web", "--label", "team=x", "busybox", "true")
    time.sleep(0.05)
    mid = time.time()
    time.sleep(0.05)
    k("create", "--name", "b", "--label", "tier=db", "busybox", "true")
    k("start", "a")
    k.wait_for(lambda: events(k, "--filter", "event=died"), what="a's died event")
    end = time.time()

    def names(*args):
        return [(e["Name"], e["Status"]) for e in events(k, *args)]

    assert names("--filter", "container=a")[:3] == [("a", "create"), ("a", "init"), ("a", "start")]
    # one key: OR; different keys: AND; status= is event='s alias
    assert names("--filter", "event=create") == [("a", "create"), ("b", "create")]
    assert names("--filter", "container=a", "--filter", "container=b", "--filter", "event=create") == \
        [("a", "create"), ("b", "create")]
    assert names("--filter", "container=b", "--filter", "status=init") == []
    assert names("--filter", "event=create", "--filter", "status=init", "--filter", "container=b") == \
        [("b", "create")]
    assert names("--filter", "type=image") == []
    assert names("--filter", "type=container", "--filter", "event=create") == [("a", "create"), ("b", "create")]
    # label=KEY and label=KEY=VALUE; die is died
    assert {n for n, _ in names("--filter", "label=tier")} == {"a", "b"}
    assert {n for n, _ in names("--filter", "label=tier=db")} == {"b"}
    assert names("--filter", "label=tier=web", "--filter", "label=team=x", "--filter", "event=create") == \
        [("a", "create")]
    assert names("--filter", "container=a", "--filter", "event=die") == names("--filter", "event=died") != []
    # a container by ID prefix
    aid = k.inspect("a", "{{.Id}}")
    assert names("--filter", f"container={aid[:8]}") == names("--filter", "container=a")

    # --since / --until: a Unix time, RFC 3339, a duration
    assert names("--until", str(mid)) == [("a", "create")]
    assert names("--since", str(mid), "--filter", "event=create") == [("b", "create")]
    rfc = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(mid)) + ".%06dZ" % int(mid % 1 * 1e6)
    assert names("--since", rfc, "--filter", "event=create") == [("b", "create")]
    assert len(names("--since", "10m")) == len(names())
    assert names("--since", "10m", "--until", "9m") == []
    assert names("--since", str(end)) == []

    # templates over podman's fields; a field the event lacks prints its zero value
    out = k("events", "--stream=false", "--filter", "container=b", "--format",
            "{{.Name}} {{.Status}} {{.Type}} {{.ContainerExitCode}} {{.PodID}}|{{.Attributes.tier}}").stdout
    assert out == "b create container 0 |db\n"
    t = k("events", "--stream=false", "--filter", "container=b", "--format", "{{.Time}}").stdout.strip()
    assert LINE_RE.match(t + " ")
    first = k("events", "--stream=false", "--format", "{{json .}}").stdout.splitlines()[0]
    assert json.loads(first)["Name"] == "a"

    # a --until in the past ends a stream at once, after the events before it
    t0 = time.monotonic()
    p = k("events", "--until", str(mid), "--format", "{{.Name}} {{.Status}}", timeout=20)
    assert p.stdout == "a create\n" and time.monotonic() - t0 < 10
    # ... and one in the future ends it then
    t0 = time.monotonic()
    p = k("events", "--until", str(time.time() + 2), "--filter", "container=nosuch", timeout=30)
    assert p.returncode == 0 and p.stdout == "" and 1.5 < time.monotonic() - t0 < 20

    # bad input: one Error line, exit 125
    assert_one_error_line(k("events", "--stream=false", "--filter", "colour=red", check=False), 125, "colour")
    assert_one_error_line(k("events", "--stream=false", "--filter", "event", check=False), 125, "invalid filter")
    assert_one_error_line(k("events", "--stream=false", "--since", "yesterday", check=False), 125, "yesterday")
    assert_one_error_line(k("events", "--stream=false", "--until", "2026-13-45", check=False), 125, "invalid time")
    assert_one_error_line(k("events", "--stream=false", "--format", "{{.Nope}}", check=False), 125, "Nope")


# ---------------------------------------------------------------------------------------
# following
# ---------------------------------------------------------------------------------------

class Follower:
    """A ``kpod events ...`` subprocess whose output lines are collected as they come."""

    def __init__(self, k, *args):
        self.proc = subprocess.Popen([KPOD, *k.kpod.global_args, "events", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=k.kpod.env)
        self.buf = b""

    def lines(self) -> list[str]:
        fd = self.proc.stdout.fileno()
        while select.select([fd], [], [], 0)[0]:
            data = os.read(fd, 65536)
            if not data:
                break
            self.buf += data
        return self.buf.decode().splitlines()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()
        self.proc.stderr.close()


def test_stream_follows_new_events_and_rotation(ctr):
    k = ctr
    k("run", "--rm", "--name", "before", "--network", "none", "busybox", "true")
    f = Follower(k, "--filter", "event=start", "--format", "{{.Name}} {{.Status}}")
    try:
        # the follower starts at the end of the log: only new events (as podman)
        time.sleep(1.0)
        for n in range(1, 6):  # one more container if the follower was not reading yet
            k("run", "--rm", "--name", f"new{n}", "--network", "none", "busybox", "true")
            deadline = time.monotonic() + 3
            while not f.lines() and time.monotonic() < deadline:
                time.sleep(0.1)
            if f.lines():
                break
        assert f.lines() == [f"new{n} start"], f.lines()
        assert all("before" not in line for line in f.lines())
        seen = len(f.lines())
        # the log rotates under the follower: it goes on in the new file
        size = os.path.getsize(log_path(k))
        small = {"KPOD_EVENTS_LOGFILE_MAX_SIZE": str(size + 200)}
        for i in range(4):
            k("run", "--rm", "--name", f"rot{i}", "--network", "none", "busybox", "true", env=small)
        assert os.path.exists(log_path(k) + ".1")
        k.wait_for(lambda: len(f.lines()) >= seen + 4, what="the starts after the rotation")
        assert f.lines()[seen:] == [f"rot{i} start" for i in range(4)]
        assert f.proc.poll() is None  # still following
    finally:
        f.close()


# ---------------------------------------------------------------------------------------
# the log file: concurrency, rotation, none, torn lines
# ---------------------------------------------------------------------------------------

def test_concurrent_writers(ctr):
    k = ctr
    per, workers = 3, 4
    errors = []

    def work(w):
        for i in range(per):
            p = k("run", "--rm", "--name", f"w{w}c{i}", "--network", "none", "busybox", "true", check=False)
            if p.returncode:
                errors.append(p.stderr)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with open(log_path(k), "rb") as fh:
        raw = fh.read()
    assert raw.endswith(b"\n")
    records = [json.loads(line) for line in raw.splitlines()]  # every line whole JSON
    names = {f"w{w}c{i}" for w in range(workers) for i in range(per)}
    for status in ("create", "init", "start", "remove"):
        assert sorted(r["Name"] for r in records if r["Status"] == status) == sorted(names), status
    assert len({r["ID"] for r in records}) == workers * per
    assert len(events(k)) == len(records)


def test_rotation_keeps_events_across_both_files(ctr):
    k = ctr
    k("run", "--rm", "--name", "run0", "--network", "none", "busybox", "true")
    one_run = os.path.getsize(log_path(k))
    # over the limit during the third run: one rotation, then the rest in a new file
    env = {"KPOD_EVENTS_LOGFILE_MAX_SIZE": str(int(one_run * 2.5))}
    for i in range(1, 4):
        k("run", "--rm", "--name", f"run{i}", "--network", "none", "busybox", "true", env=env)
    old, cur = raw_records(log_path(k) + ".1"), raw_records(log_path(k))
    assert old and cur and old[0]["Name"] == "run0" and cur[-1]["Name"] == "run3"
    evs = events(k)
    assert evs == old + cur
    assert [e["Name"] for e in evs if e["Status"] == "create"] == ["run0", "run1", "run2", "run3"]
    assert [e["Name"] for e in evs if e["Status"] == "remove"] == ["run0", "run1", "run2", "run3"]
    assert os.path.getsize(log_path(k) + ".1") > int(one_run * 2.5)


def test_none_logger_records_nothing(ctr):
    k = ctr
    none = {"KPOD_EVENTS_LOGGER": "none"}
    k("run", "--rm", "--name", "quiet", "--network", "none", "busybox", "true", env=none)
    k("volume", "create", "quietvol", env=none)
    assert not os.path.exists(log_path(k))
    assert events(k) == []
    p = k("events", "--stream=false", env=none, check=False)
    assert_one_error_line(p, 125, 'cannot read events with the "none" backend')
    assert_one_error_line(k("events", env={"KPOD_EVENTS_LOGGER": "journald"}, check=False), 125, "events_logger")


def test_torn_lines_are_skipped(ctr):
    k = ctr
    k("run", "--rm", "--name", "first", "--network", "none", "busybox", "true")
    with open(log_path(k), "rb") as fh:
        whole = fh.read().splitlines()[0]
    with open(log_path(k), "ab") as fh:  # a writer killed half-way through its line
        fh.write(whole[: len(whole) // 2])
    # a torn last line is skipped ...
    assert of(events(k), "first") == ["create", "init", "start", "died", "remove"]
    # ... and the next writer's record, appended to it, is still found
    k("run", "--rm", "--name", "second", "--network", "none", "busybox", "true")
    evs = events(k)
    assert of(evs, "first") == ["create", "init", "start", "died", "remove"]
    assert of(evs, "second") == ["create", "init", "start", "died", "remove"]
    assert len(evs) == 10
    # garbage lines too
    with open(log_path(k), "ab") as fh:
        fh.write(b"not json\n{\"half\": \n")
    assert len(events(k)) == 10
    assert len(k("events", "--stream=false").stdout.splitlines()) == 10
