"""Local image management through the real CLI: import, images, tag, rmi, history, inspect,
prune; bad input leaves the store as it was; concurrency and kill -9 never corrupt it."""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import subprocess
import tarfile
import time

import pytest

from conftest import KPOD, assert_one_error_line
from libpod_core.testimage import rootfs_tar


@pytest.fixture(params=["overlay", "vfs"])
def kp(request, kpod):
    kpod.global_args += ["--storage-driver", request.param]
    kpod.driver = request.param
    yield kpod
    kpod("rmi", "-a", "-f", check=False)


@pytest.fixture(scope="module")
def busybox_tgz(tmp_path_factory):
    p = tmp_path_factory.mktemp("img") / "busybox.tar.gz"
    p.write_bytes(rootfs_tar(compress="gzip"))
    return str(p)


def snapshot(kp):
    """What a failed command must leave unchanged: image listing and layer directories."""
    images = kp("images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}").stdout
    home = os.path.join(kp.graphroot, kp.driver)
    layers = sorted(d for d in os.listdir(home) if d != "l") if os.path.isdir(home) else []
    return images, layers


def test_import_list_tag_history_inspect_rmi(kp, busybox_tgz):
    out = kp("import", "-c", 'CMD ["sh", "-c", "echo hi"]', "-c", "ENV A=1", "-c", "LABEL x=y", "-m", "imported",
             busybox_tgz, "bb").stdout.strip()
    assert out.startswith("sha256:") and len(out) == 71
    iid = out[7:]
    rows = kp("images", "--format", "{{.Repository}} {{.Tag}} {{.ID}}").stdout.split()
    assert rows == ["localhost/bb", "latest", iid[:12]]
    kp("tag", "bb", "example.com/team/bb:v1", "other")
    names = kp("images", "--format", "{{.Repository}}:{{.Tag}}", "--sort", "repository").stdout.split()
    assert names == ["example.com/team/bb:v1", "localhost/bb:latest", "localhost/other:latest"]
    assert kp("images", "-q").stdout.split() == [iid[:12]]
    assert kp("images", "--filter", "reference=example.com/*", "--format", "{{.Tag}}").stdout.split() == ["v1"]
    assert kp("images", "--filter", "label=x=y", "-q").stdout.split() == [iid[:12]]
    assert kp("images", "--filter", "label=x=z", "-q").stdout.strip() == ""
    doc = json.loads(kp("image", "inspect", "bb").stdout)[0]
    assert doc["Id"] == iid and doc["Config"]["Cmd"] == ["sh", "-c", "echo hi"]
    assert "A=1" in doc["Config"]["Env"] and doc["Labels"] == {"x": "y"}
    assert doc["GraphDriver"]["Name"] == kp.driver and len(doc["RootFS"]["Layers"]) == 1
    assert kp("image", "inspect", "--format", "{{.Id}}", iid[:5]).stdout.strip() == iid
    hist = kp("history", "--format", "{{.ID}}|{{.Comment}}", "bb").stdout.strip()
    assert hist == f"{iid[:12]}|imported"
    # rmi by one of several names only untags
    out = kp("rmi", "other").stdout
    assert out.strip() == "Untagged: localhost/other:latest"
    proc = kp("rmi", iid[:12], check=False)
    assert_one_error_line(proc, 125, "more than one tag")
    kp("untag", "bb", "example.com/team/bb:v1")
    out = kp("rmi", "bb").stdout
    assert f"Deleted: {iid}" in out
    assert kp("images", "-qa").stdout.strip() == ""
    assert snapshot(kp)[1] == []


def test_image_exists_and_errors(kp, busybox_tgz):
    assert kp("image", "exists", "nope", check=False).returncode == 1
    kp("import", busybox_tgz, "bb")
    assert kp("image", "exists", "bb").returncode == 0
    assert kp("image", "exists", "localhost/bb:latest").returncode == 0
    assert_one_error_line(kp("rmi", "nope", check=False), 125, "nope: image not known")
    assert kp("rmi", "-i", "nope").returncode == 0
    assert_one_error_line(kp("tag", "bb", "team/UPPER", check=False), 125, "must be lowercase")
    assert_one_error_line(kp("images", "--filter", "color=red", check=False), 125, "invalid filter")
    assert_one_error_line(kp("import", "/nonexistent.tar", check=False), 125, "No such file")
    assert_one_error_line(kp("import", "-c", "FROM x", busybox_tgz, check=False), 125, "invalid change")


def test_dangling_and_prune(kp, busybox_tgz):
    kp("import", busybox_tgz, "a")
    kp("import", "-c", "ENV X=1", busybox_tgz, "a")  # takes the name: the first becomes dangling
    assert kp("images", "--filter", "dangling=true", "--format", "{{.Repository}}").stdout.split() == ["<none>"]
    pruned = kp("image", "prune", "-f").stdout.split()
    assert len(pruned) == 1
    assert kp("images", "--format", "{{.Repository}}").stdout.split() == ["localhost/a"]
    assert kp("image", "prune", "-a", "-f").stdout.strip() != ""
    assert kp("images", "-q").stdout.strip() == ""


def hostile_tars():
    def tar_of(entries):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            for ti, data in entries:
                tf.addfile(ti, io.BytesIO(data) if data else None)
        return buf.getvalue()

    def f(name, data=b"x"):
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        return ti, data

    def link(name, target, kind=tarfile.SYMTYPE):
        ti = tarfile.TarInfo(name)
        ti.type, ti.linkname = kind, target
        return ti, None

    return {
        "dotdot": tar_of([f("../../escape")]),
        "absolute-hardlink": tar_of([link("h", "/etc/passwd", tarfile.LNKTYPE)]),
        "through-symlink": tar_of([link("evil", "/tmp"), f("evil/planted")]),
        "truncated-gzip": gzip.compress(rootfs_tar())[:5000],
        "garbage": b"\x1f\x8b\x08\x00" + os.urandom(4000),
    }


@pytest.mark.parametrize("case", sorted(hostile_tars()))
def test_hostile_or_corrupt_tarball_leaves_store_unchanged(kp, busybox_tgz, tmp_path, case):
    kp("import", busybox_tgz, "keep")
    before = snapshot(kp)
    bad = tmp_path / "bad.tar"
    bad.write_bytes(hostile_tars()[case])
    proc = kp("import", str(bad), "evil", check=False)
    assert_one_error_line(proc, 125)
    assert snapshot(kp) == before
    assert not os.path.exists("/tmp/planted") and not os.path.exists(os.path.join(kp.graphroot, "..", "escape"))
    cache = os.path.join(kp.graphroot, "layer-cache", kp.driver)
    assert not [f for f in os.listdir(cache) if f.endswith(".tmp")]


def test_concurrent_imports_and_removals(kpod, busybox_tgz):
    procs = []
    for i in range(6):
        cmd = [KPOD, *kpod.global_args, "import", busybox_tgz, f"img{i}"]
        procs.append(subprocess.Popen(cmd, env=kpod.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    procs = [subprocess.Popen([KPOD, *kpod.global_args, "rmi", f"img{i}"], env=kpod.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(0, 6, 2)]
    procs += [subprocess.Popen([KPOD, *kpod.global_args, "images", "-q"], env=kpod.env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    names = sorted(kpod("images", "--format", "{{.Repository}}").stdout.split())
    assert names == ["localhost/img1", "localhost/img3", "localhost/img5"]
    kpod("rmi", "-a")


def test_kill_during_import_leaves_no_partial_image(kpod, tmp_path):
    # A slow, large stream: kpod is killed while it is extracting.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen([KPOD, *kpod.global_args, "import", str(fifo), "partial"], env=kpod.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with open(fifo, "wb") as w:
        data = rootfs_tar()
        w.write(data[: len(data) // 2])
        w.flush()
        time.sleep(1.0)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        try:
            w.write(data[len(data) // 2:])
        except BrokenPipeError:
            pass
    assert kpod("images", "-qa").stdout.strip() == ""
    # leftovers of the dead operation are gone after the next command
    home = os.path.join(kpod.graphroot, "overlay")
    assert [d for d in os.listdir(home) if d != "l"] == []
    assert os.listdir(os.path.join(home, "l")) == []
    import sqlite3

    db = sqlite3.connect(os.path.join(kpod.graphroot, "kpod.db"))
    assert db.execute("SELECT COUNT(*) FROM layers").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM operations").fetchone()[0] == 0


def test_system_check_finds_and_repairs(kpod, busybox_tgz):
    kpod("import", busybox_tgz, "a")
    assert kpod("system", "check").stdout.strip() == "No problems found"
    home = os.path.join(kpod.graphroot, "overlay")
    layer = [d for d in os.listdir(home) if d != "l"][0]
    # damage: driver data of the image's layer vanishes; an orphan appears
    subprocess.run(["rm", "-rf", os.path.join(home, layer)], check=True)
    os.makedirs(os.path.join(home, "f" * 64, "diff"))
    cache = os.path.join(kpod.graphroot, "layer-cache", "overlay")
    assert os.path.exists(os.path.join(cache, layer + ".blob"))  # the imported gzip, as it came
    orphans = [os.path.join(cache, "e" * 64 + ".blob"), os.path.join(cache, "d" * 64 + ".tar.zst")]
    for path in orphans:
        open(path, "wb").close()
    proc = kpod("system", "check", check=False)
    assert proc.returncode == 125 and "missing from the storage driver" in proc.stdout
    assert "no database row knows" in proc.stdout and "--repair" in proc.stderr
    assert proc.stdout.count("layer tar cache file of an unknown layer") == 2
    rows = json.loads(kpod("system", "check", "--repair", "--format", "json").stdout)
    assert rows and all(r["Repaired"] for r in rows)
    assert not any(os.path.exists(p) for p in orphans)
    assert kpod("system", "check").stdout.strip() == "No problems found"
    assert kpod("images", "-q").stdout.strip() == ""


def test_import_from_url(kp, busybox_tgz, tmp_path):
    """import fetches an http URL (a server of the test's own on 127.0.0.1); an HTTP error,
    an unreachable server and a transfer cut short are one error each and store nothing."""
    import http.server
    import socket
    import threading

    body = open(busybox_tgz, "rb").read()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            if self.path == "/rootfs.tar.gz":
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif self.path == "/cut.tar.gz":  # promises everything, sends a third, hangs up
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 3])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            else:
                self.send_error(404, "Not Found")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        before = snapshot(kp)
        p = kp("import", f"{base}/missing.tar", "fromurl", check=False)
        assert_one_error_line(p, 125, "HTTP 404")
        assert_one_error_line(kp("import", f"{base}/cut.tar.gz", "fromurl", check=False), 125)
        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            dead = s.getsockname()[1]
        assert_one_error_line(kp("import", f"http://127.0.0.1:{dead}/x.tar", "fromurl", check=False), 125,
                              "refused")
        assert snapshot(kp) == before
        iid = kp("import", "-q", f"{base}/rootfs.tar.gz", "fromurl").stdout.strip()
        assert json.loads(kp("inspect", "--type", "image", "fromurl").stdout)[0]["Id"] == iid
        history = kp("history", "--no-trunc", "--format", "{{.CreatedBy}}", "fromurl").stdout
        assert f"{base}/rootfs.tar.gz" in history
    finally:
        server.shutdown()
        server.server_close()
