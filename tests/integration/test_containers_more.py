"""exec, attach, cp, mount/umount, diff, export, stats, top and commit through the real kpod
CLI, with conmon and real runc/crun, on overlay and vfs.

Same set-up as test_containers.py: each test has its own store with the busybox image, and
a finalizer that runs ``rm -fa`` and checks that no conmon, mount or cgroup is left.
"""

from __future__ import annotations

import io
import json
import os
import pty
import select
import struct
import subprocess
import tarfile
import time

import pytest

from tests.conftest import KPOD, assert_one_error_line
from tests.helpers_images import CtrEnv, mounts_under, processes_mentioning

pytestmark = pytest.mark.integration

if os.geteuid() != 0:
    pytest.skip("container tests need root", allow_module_level=True)


@pytest.fixture
def ctr(kpod):
    env = CtrEnv(kpod, "runc", "overlay")
    yield env
    env.finalize()


@pytest.fixture(params=["runc", "crun"])
def ctr_rt(kpod, request):
    env = CtrEnv(kpod, request.param, "overlay")
    yield env
    env.finalize()


@pytest.fixture(params=["overlay", "vfs"])
def ctr_drv(kpod, request):
    env = CtrEnv(kpod, "runc", request.param)
    yield env
    env.finalize()


def _db(k, sql: str) -> str:
    """Rows of *sql* on the store's state database, like the sqlite3 shell prints them."""
    import sqlite3

    conn = sqlite3.connect(os.path.join(k.graphroot, "kpod.db"), timeout=30)
    try:
        rows = conn.execute(sql).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return ""
        raise
    finally:
        conn.close()
    return "\n".join("|".join("" if v is None else str(v) for v in r) for r in rows)


def _under_pty(k, *args, winsize=(33, 77), timeout=30, steps=()) -> tuple[int, bytes]:
    """Run kpod under a new pseudo-terminal. *steps*: (wait for these bytes in the output,
    then type these) pairs, in order."""
    import fcntl
    import signal
    import termios

    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - child
        os.environ.clear()
        os.environ.update(k.kpod.env)
        os.execv(KPOD, [KPOD, *k.kpod.global_args, *args])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", winsize[0], winsize[1], 0, 0))
    steps = list(steps)
    out = b""
    mark = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if steps and steps[0][0] in out[mark:]:
            time.sleep(0.3)
            os.write(fd, steps[0][1])
            mark = len(out)
            steps.pop(0)
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            out += data
    else:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out


# ---------------------------------------------------------------------------------------
# exec
# ---------------------------------------------------------------------------------------

def test_exec(ctr_rt, tmp_path):
    k = ctr_rt
    cid = k("run", "-d", "--name", "box", "-e", "FROM_RUN=1", "busybox", "sleep", "1000").stdout.strip()
    p = k("exec", "box", "sh", "-c", "echo out; echo err >&2; exit 5", check=False)
    assert (p.returncode, p.stdout, p.stderr) == (5, "out\n", "err\n")
    # env (the container's plus -e and --env-file), user, working directory
    envfile = tmp_path / "env"
    envfile.write_text("# c\nFROM_FILE=f\n")
    p = k("exec", "-e", "FOO=bar", "--env-file", str(envfile), "-u", "www", "-w", "/tmp", "box",
          "sh", "-c", "echo $FOO $FROM_FILE $FROM_RUN $HOME; id -u; id -g; pwd")
    assert p.stdout.splitlines() == ["bar f 1 /var/www", "33", "33", "/tmp"]
    assert k("exec", "-u", "33:0", "box", "id", "-g").stdout.strip() == "0"
    # stdin with -i (and none without)
    assert k("exec", "-i", "box", "cat", input="to stdin\n").stdout == "to stdin\n"
    assert k("exec", "box", "cat", input="ignored\n").stdout == ""
    # --privileged: every capability
    plain = k("exec", "box", "grep", "CapEff", "/proc/self/status").stdout.split()[-1]
    priv = k("exec", "--privileged", "box", "grep", "CapEff", "/proc/self/status").stdout.split()[-1]
    assert int(priv, 16) > int(plain, 16)
    # 127 / 126 / bad user: one error line
    p = k("exec", "box", "/nonexistent", check=False)
    assert_one_error_line(p, 127)
    assert "not found" in p.stderr or "no such file" in p.stderr
    assert_one_error_line(k("exec", "box", "/etc/passwd", check=False), 126)
    assert_one_error_line(k("exec", "-u", "nosuchuser", "box", "true", check=False), 125, "nosuchuser")
    # -d: the session ID, listed by inspect until the container stops
    eid = k("exec", "-d", "box", "sh", "-c", "echo bg > /tmp/bg; sleep 100").stdout.strip()
    assert len(eid) == 64
    assert eid in k.inspect("box")["ExecIDs"]
    k.wait_for(lambda: k("exec", "box", "cat", "/tmp/bg", check=False).stdout == "bg\n", what="detached exec")
    # foreground sessions are gone when they end, detached ones stay while they run
    assert _db(k, "SELECT id FROM exec_sessions").split() in ([eid], [])
    # -it under a real pseudo-terminal
    code, out = _under_pty(k, "exec", "-it", "box", "sh", "-c", "tty; stty size; exit 3")
    assert code == 3, out
    assert b"/dev/pts/" in out and b"33 77" in out
    # a stopped container: an error, no session, no conmon left
    k("stop", "-t", "0", "box")
    assert_one_error_line(k("exec", "box", "true", check=False), 125, "can only create exec sessions on running")
    assert k.inspect("box")["ExecIDs"] == []
    assert _db(k, "SELECT COUNT(*) FROM exec_sessions") in ("0", "")
    assert not processes_mentioning(cid, ("conmon",)) or k.wait_for(
        lambda: not processes_mentioning(cid, ("conmon",)), what="conmon to exit")
    assert_one_error_line(k("exec", "nosuch", "true", check=False), 125, "no such container")
    assert_one_error_line(k("exec", "box", check=False), 125, "command")


def test_exec_killed_kpod_leaves_nothing_inconsistent(ctr):
    k = ctr
    k("run", "-d", "--name", "box", "busybox", "sleep", "1000")
    proc = subprocess.Popen([KPOD, *k.kpod.global_args, "exec", "box", "sh", "-c", "sleep 1; exit 4"],
                            env=k.kpod.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    k.wait_for(lambda: _db(k, "SELECT status FROM exec_sessions") == "running", what="session running")
    proc.kill()
    proc.wait()
    eid = _db(k, "SELECT id FROM exec_sessions")
    # the session finishes without kpod; inspect still answers and the record is consistent
    assert k.inspect("box")["ExecIDs"] == [eid]
    time.sleep(1.5)
    assert k.inspect("box")["ExecIDs"] == [eid]  # finished: recorded from conmon's exit file
    assert _db(k, "SELECT status, exit_code FROM exec_sessions") == "exited|4"
    # a kpod killed before conmon reported leaves a "created" row owned by a dead process
    import sqlite3

    dead = subprocess.Popen(["true"])
    dead.wait()
    cid = k.inspect("box", "{{.Id}}")
    with sqlite3.connect(os.path.join(k.graphroot, "kpod.db")) as conn:
        conn.execute("INSERT INTO exec_sessions(id, container_id, status, owner_pid, config, created_at) "
                     "VALUES(?,?,?,?,?,?)", ("f" * 64, cid, "created", dead.pid, "{}", time.time()))
    assert k.inspect("box")["ExecIDs"] == [eid]
    assert _db(k, "SELECT COUNT(*) FROM exec_sessions") == "1"
    k("stop", "-t", "0", "box")
    assert k.inspect("box")["ExecIDs"] == []


# ---------------------------------------------------------------------------------------
# attach
# ---------------------------------------------------------------------------------------

def test_attach(ctr):
    k = ctr
    k("run", "-d", "--name", "talker", "busybox", "sh", "-c", "sleep 2; echo hello; echo oops >&2; sleep 0.3; exit 3")
    p = k("attach", "--no-stdin", "talker", check=False, timeout=30)
    assert (p.returncode, p.stdout, p.stderr) == (3, "hello\n", "oops\n")
    assert_one_error_line(k("attach", "talker", check=False), 125, "only attach to running containers")
    # -it container: detach with the keys (the container keeps running)
    k("run", "-dit", "--name", "shell", "busybox", "sh")
    time.sleep(0.5)
    code, out = _under_pty(k, "attach", "--detach-keys", "ctrl-a,d", "shell", timeout=20,
                           steps=[(b"", b"echo att$((40+2))\r"), (b"att42", b"\x01d")])
    assert code == 0 and b"att42" in out, out
    assert k.state("shell") == "running"
    assert_one_error_line(k("attach", "nosuch", check=False), 125, "no such container")


# ---------------------------------------------------------------------------------------
# cp
# ---------------------------------------------------------------------------------------

def _canaries(tmp_path):
    """Host files a hostile container would love to read or overwrite."""
    d = tmp_path / "hostsecret"
    d.mkdir()
    (d / "canary").write_text("host canary\n")
    (d / "sub").mkdir()
    (d / "sub" / "deep").write_text("deep canary\n")
    return d


def _snapshot(d):
    out = {}
    for root, dirs, files in os.walk(d):
        for n in dirs + files:
            p = os.path.join(root, n)
            out[p] = (os.path.islink(p), None if os.path.isdir(p) or os.path.islink(p) else open(p).read())
    return out


def test_cp(ctr_drv, tmp_path):
    k = ctr_drv
    host = _canaries(tmp_path)
    before = _snapshot(host)
    k("create", "--name", "c", "-w", "/root", "busybox", "sh", "-c", "cat /in/file.txt")
    # host -> container (created, never started: the rootfs is mounted for the copy only)
    src = tmp_path / "src"
    (src / "dir").mkdir(parents=True)
    (src / "file.txt").write_text("from host\n")
    (src / "dir" / "a").write_text("a\n")
    os.symlink("a", src / "dir" / "lnk")
    assert_one_error_line(k("cp", str(src / "file.txt"), "c:/in/", check=False), 125, "could not be found")
    k("cp", str(src), "c:/in")                       # /in does not exist: created with src's contents
    k("cp", str(src / "file.txt"), "c:/etc/")        # into an existing directory
    k("cp", str(src / "dir") + "/.", "c:/tmp")       # contents only
    k("cp", str(src / "file.txt"), "c:rel.txt")      # relative to the working directory
    assert mounts_under(k.graphroot) == [] or k.driver == "vfs"
    out = tmp_path / "out"
    out.mkdir()
    k("cp", "c:/in", str(out / "in"))
    assert (out / "in" / "file.txt").read_text() == "from host\n"
    assert os.readlink(out / "in" / "dir" / "lnk") == "a"
    k("cp", "c:/tmp/a", str(out))
    assert (out / "a").read_text() == "a\n"
    k("cp", "c:/root/rel.txt", str(out / "renamed.txt"))
    assert (out / "renamed.txt").read_text() == "from host\n"
    assert k("start", "-a", "c").stdout == "from host\n"
    # tar streams both ways
    tar = subprocess.run([KPOD, *k.kpod.global_args, "cp", "c:/in", "-"], capture_output=True, env=k.kpod.env,
                         check=True).stdout
    names = tarfile.open(fileobj=io.BytesIO(tar)).getnames()
    assert "in" in names and "in/file.txt" in names and "in/dir/lnk" in names
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("streamed/x.txt")
        ti.size = 3
        tf.addfile(ti, io.BytesIO(b"xyz"))
    subprocess.run([KPOD, *k.kpod.global_args, "cp", "-", "c:/tmp"], input=buf.getvalue(), env=k.kpod.env,
                   check=True, capture_output=True)
    k("cp", "c:/tmp/streamed/x.txt", str(out / "x.txt"))
    assert (out / "x.txt").read_text() == "xyz"

    # hostile symlinks inside the container (running, this time)
    k("run", "-d", "--name", "evil", "busybox", "sh", "-c",
      f"ln -s / /root_link; ln -s ../../../../../../../../.. /up; ln -s {host} /abs; "
      f"ln -s {host}/canary /abs_file; mkdir -p /data; echo inside > /data/f; sleep 1000")
    k.wait_for(lambda: k("exec", "evil", "test", "-L", "/abs_file", check=False).returncode == 0, what="links")
    # reading through the links reads the container's own paths (which do not exist)
    for src_path in ("/abs/canary", "/abs_file", f"/up{host}/canary", f"/root_link{host}/sub/deep", "/up/up/abs"):
        p = k("cp", f"evil:{src_path}", str(tmp_path / "leak"), check=False)
        assert_one_error_line(p, 125, "could not be found on container evil")
        assert not (tmp_path / "leak").exists()
    p = k("cp", "evil:/up", str(tmp_path / "leak"))  # the container's root, not the host's
    assert sorted(os.listdir(tmp_path / "leak")) == sorted(
        k("exec", "evil", "ls", "-A", "/").stdout.split()) and not (tmp_path / "leak" / "hostsecret").exists()
    # writing through them: the parent does not exist in the container...
    payload = tmp_path / "payload"
    payload.write_text("PWNED\n")
    for dest in (f"evil:/root_link{host}/canary", f"evil:/up{host}/canary", "evil:/abs/canary", "evil:/abs/"):
        assert_one_error_line(k("cp", str(payload), dest, check=False), 125, "could not be found on container evil")
    # ... and once it does, the copies land there, inside the container
    k("exec", "evil", "mkdir", "-p", f"{host}/sub")
    for dest in (f"evil:/root_link{host}/canary", f"evil:/up/up{host}/sub/deep", "evil:/abs/", "evil:/abs_file"):
        k("cp", str(payload), dest)
    assert k("exec", "evil", "sh", "-c", f"cat {host}/canary {host}/sub/deep {host}/payload").stdout == "PWNED\n" * 3
    # a tar stream with a symlink to the host path and a file "through" it
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("lnk")
        ti.type, ti.linkname = tarfile.SYMTYPE, str(host)
        tf.addfile(ti)
        ti = tarfile.TarInfo("lnk/canary")
        ti.size = 6
        tf.addfile(ti, io.BytesIO(b"PWNED\n"))
    subprocess.run([KPOD, *k.kpod.global_args, "cp", "-", "evil:/data"], input=buf.getvalue(), env=k.kpod.env,
                   capture_output=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("../../../../../../../../tmp/escaped")
        ti.size = 6
        tf.addfile(ti, io.BytesIO(b"PWNED\n"))
    p = subprocess.run([KPOD, *k.kpod.global_args, "cp", "-", "evil:/data"], input=buf.getvalue(), env=k.kpod.env,
                       capture_output=True, text=False)
    assert p.returncode == 125 and b"outside the destination" in p.stderr
    assert not os.path.exists("/tmp/escaped")
    # the host never changed; the container got its own copies
    assert _snapshot(host) == before
    assert k("exec", "evil", "cat", f"{host}/canary", "/data/f").stdout == "PWNED\ninside\n"

    # bad input: one error line, nothing left mounted for stopped containers
    assert_one_error_line(k("cp", "nosuch:/x", str(out), check=False), 125, "no such container")
    assert_one_error_line(k("cp", "c:/nonexistent", str(out), check=False), 125, "could not be found on container c")
    assert_one_error_line(k("cp", str(tmp_path / "nothing"), "c:/", check=False), 125, "could not be found on the host")
    assert_one_error_line(k("cp", str(out), str(out), check=False), 125, "container")
    assert_one_error_line(k("cp", str(src), "c:/in/file.txt", check=False), 125, "overwrite")
    k("stop", "-t", "0", "evil")
    assert mounts_under(k.graphroot) == []


# ---------------------------------------------------------------------------------------
# mount / umount
# ---------------------------------------------------------------------------------------

def test_cp_running_container_uses_its_own_view(ctr, tmp_path):
    """A running container's tmpfs and volume mounts are what cp reads and writes (not the
    layer underneath); its /proc and /sys are never written; symlinks stay inside."""
    k = ctr
    vol = tmp_path / "vol"
    vol.mkdir()
    host = _canaries(tmp_path)
    before = _snapshot(host)
    k("run", "-d", "--name", "live", "--tmpfs", "/scratch", "-v", f"{vol}:/vol", "busybox", "sleep", "300")
    src = tmp_path / "f.txt"
    src.write_text("copied\n")
    k("cp", str(src), "live:/scratch/")
    assert k("exec", "live", "cat", "/scratch/f.txt").stdout == "copied\n"
    k("cp", str(src), "live:/vol/g.txt")
    assert (vol / "g.txt").read_text() == "copied\n"
    k("exec", "live", "sh", "-c", "echo made inside > /scratch/h.txt; ln -s /proc /scratch/p; ln -s / /scratch/up")
    k("cp", "live:/scratch/h.txt", str(tmp_path / "h.txt"))
    assert (tmp_path / "h.txt").read_text() == "made inside\n"
    for dest in ("live:/proc/x", "live:/sys/kernel/", "live:/scratch/p/x"):
        assert_one_error_line(k("cp", str(src), dest, check=False), 125, "/proc or /sys")
    # a symlink to / is the container's /, not the host's
    k("cp", str(src), "live:/scratch/up/tmp/")
    assert k("exec", "live", "cat", "/tmp/f.txt").stdout == "copied\n"
    assert _snapshot(host) == before
    # stopped: the tmpfs is gone, the copy lands in the container's own layer
    k("stop", "-t", "0", "live")
    k("cp", str(src), "live:/scratch/after.txt")
    k("start", "live")
    # a fresh tmpfs: the first run's files are gone; the layer's (copied up, tmpcopyup) are there
    assert k("exec", "live", "ls", "/scratch").stdout == "after.txt\n"
    k("rm", "-f", "live")


def test_mount_umount(ctr):
    k = ctr
    cid = k("create", "--name", "m", "busybox").stdout.strip()
    layer = _db(k, f"SELECT layer_id FROM containers WHERE id = '{cid}'")
    counts = os.path.join(k.runroot, "overlay-mounts", layer)
    path = k("mount", "m").stdout.strip()
    assert k("mount", "m").stdout.strip() == path
    assert os.path.isfile(os.path.join(path, "bin", "busybox"))
    assert path in mounts_under(k.graphroot)
    assert open(counts).read().strip() == "2"
    listing = k("mount").stdout.split()
    assert listing == [cid[:12], path]
    assert json.loads(k("mount", "--format", "json").stdout)[0]["mountpoint"] == path
    assert k("umount", "m").stdout.strip() == cid
    assert path in mounts_under(k.graphroot) and open(counts).read().strip() == "1"
    k("umount", "m")
    assert path not in mounts_under(k.graphroot) and not os.path.exists(counts)
    assert k("umount", "m").stdout.strip() == cid  # nothing to give back: not an error
    assert k("mount").stdout == ""
    # a running container keeps its own mount: umount -a only gives back kpod mount's
    k("run", "-d", "--name", "r", "busybox", "sleep", "1000")
    rpath = k("mount", "r").stdout.strip()
    k("mount", "m")
    assert len(k("mount").stdout.splitlines()) == 2
    assert sorted(k("umount", "-a").stdout.split()) == sorted([cid, k.inspect("r", "{{.Id}}")])
    assert rpath in mounts_under(k.graphroot) and path not in mounts_under(k.graphroot)
    assert k("exec", "r", "true").returncode == 0
    assert k("container", "umount", "r").returncode == 0 and k("container", "mount").stdout.split()[1] == rpath
    assert_one_error_line(k("mount", "nosuch", check=False), 125, "no such container")
    assert_one_error_line(k("umount", "nosuch", check=False), 125, "no such container")
    k("mount", "m")
    k("rm", "-f", "m")  # removal takes the mounts with it
    assert path not in mounts_under(k.graphroot)


# ---------------------------------------------------------------------------------------
# diff / export
# ---------------------------------------------------------------------------------------

def test_diff_and_export(ctr_drv, tmp_path):
    k = ctr_drv
    k("run", "--name", "d", "busybox", "sh", "-c",
      "echo new > /newfile; echo more >> /etc/passwd; rm /etc/group; mkdir /newdir; touch /newdir/x")
    lines = k("diff", "d").stdout.splitlines()
    for want in ("A /newfile", "C /etc/passwd", "D /etc/group", "C /etc", "A /newdir", "A /newdir/x"):
        assert want in lines, (want, lines)
    assert not any(l.endswith(("/etc/hosts", "/etc/hostname", "/etc/resolv.conf", " /proc", " /sys", " /dev"))
                   for l in lines), lines
    data = json.loads(k("diff", "--format", "json", "d").stdout)
    assert "/newfile" in data["added"] and "/etc/passwd" in data["changed"] and data["deleted"] == ["/etc/group"]
    assert k("container", "diff", "d").stdout.splitlines() == lines
    img = k("diff", "busybox").stdout.splitlines()
    assert "A /bin/busybox" in img and "A /etc/passwd" in img
    assert_one_error_line(k("diff", "nosuch", check=False), 125, "no such object")
    # export: the merged filesystem as a tar
    tar = subprocess.run([KPOD, *k.kpod.global_args, "export", "d"], capture_output=True, env=k.kpod.env,
                         check=True).stdout
    tf = tarfile.open(fileobj=io.BytesIO(tar))
    names = tf.getnames()
    assert "newfile" in names and "bin/busybox" in names and "etc/passwd" in names and "etc/group" not in names
    assert tf.extractfile("newfile").read() == b"new\n"
    k("container", "export", "-o", str(tmp_path / "d.tar"), "d")
    assert sorted(tarfile.open(tmp_path / "d.tar").getnames()) == sorted(names)
    assert_one_error_line(k("export", "-o", str(tmp_path / "no" / "d.tar"), "d", check=False), 125)
    assert_one_error_line(k("export", "nosuch", check=False), 125, "no such container")
    assert [f for f in os.listdir(tmp_path) if "kpod-tmp" in f] == []
    assert mounts_under(k.graphroot) == []


# ---------------------------------------------------------------------------------------
# stats / top
# ---------------------------------------------------------------------------------------

def test_stats_and_top(ctr):
    k = ctr
    k("run", "-d", "--name", "s", "-m", "64m", "busybox", "sh", "-c", "sleep 1000 & sleep 1000; echo done")
    k("create", "--name", "idle", "busybox")
    table = k("stats", "--no-stream").stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "NAME", "CPU"] and "MEM USAGE / LIMIT" in table[0]
    assert len(table) == 2 and " s " in table[1]
    rec = json.loads(k("stats", "--no-stream", "--format", "json", "s").stdout)[0]
    assert rec["name"] == "s" and rec["mem_usage"].endswith("/ 67.11MB") and not rec["mem_usage"].startswith("0B")
    assert rec["cpu_percent"].endswith("%") and int(rec["pids"]) >= 3
    fields = k("stats", "--no-stream", "--format", "{{.Name}} {{.PIDS}} {{.MemPerc}}", "s").stdout.split()
    assert fields[0] == "s" and int(fields[1]) >= 3 and float(fields[2].rstrip("%")) > 0
    all_rows = sorted(k("stats", "-a", "--no-stream", "--format", "{{.Name}} {{.CPUPerc}}").stdout.splitlines())
    assert all_rows[0] == "idle --" and all_rows[1].startswith("s ") and all_rows[1].endswith("%")
    assert_one_error_line(k("stats", "--no-stream", "idle", check=False), 125, "not running")
    # top: podman's default columns, PIDs as the container sees them
    out = k("top", "s").stdout.splitlines()
    assert out[0].split() == ["USER", "PID", "PPID", "%CPU", "ELAPSED", "TTY", "TIME", "COMMAND"]
    rows = [l.split() for l in out[1:]]
    assert rows[0][:3] == ["root", "1", "0"] and rows[0][5] == "?"
    assert rows[0][7:] == ["sh", "-c", "sleep", "1000", "&", "sleep", "1000;", "echo", "done"]
    sleeps = [r for r in rows if r[7:] == ["sleep", "1000"]]
    assert len(sleeps) == 2 and all(r[2] == "1" for r in sleeps)
    out = k("container", "top", "s", "pid,comm", "huser").stdout.splitlines()
    assert out[0].split() == ["PID", "COMMAND", "HUSER"] and ["1", "sh", "root"] in [l.split() for l in out[1:]]
    # what psgo does not know goes to ps(1) in the container, as podman does
    out = k("top", "s", "-o", "pid,args").stdout.splitlines()
    assert out[0].split() == ["PID", "COMMAND"] and any(l.split()[1:] == ["sleep", "1000"] for l in out[1:])
    bad = k("top", "s", "--no-such-ps-option", check=False)
    assert bad.returncode == 125 and "ps(1) in container" in bad.stderr and "exit code 1" in bad.stderr
    k("exec", "s", "rm", "/bin/ps")
    assert_one_error_line(k("top", "s", "-o", "pid", check=False), 125, "has no ps(1)")
    assert_one_error_line(k("top", "idle", check=False), 125, "running")
    assert_one_error_line(k("top", "idle", "-o", "pid", check=False), 125, "running")


# ---------------------------------------------------------------------------------------
# commit
# ---------------------------------------------------------------------------------------

def test_commit(ctr_drv):
    k = ctr_drv
    k("run", "-d", "--name", "src", "-e", "FROM_RUN=yes", "--label", "l=1", "busybox", "sleep", "1000")
    k("exec", "src", "sh", "-c", "mkdir -p /app && echo committed > /app/file && rm /etc/group")
    images_before = k("images", "-q").stdout.split()
    p = k("commit", "-c", "CMD cat /app/file", "-c", "ENV EXTRA=1", "-m", "my message", "-a", "Jane", "src", "mine")
    image_id = p.stdout.strip()
    assert len(image_id) == 64 and p.stderr == ""
    assert k.state("src") == "running"  # paused during the commit, running again
    assert k("run", "--rm", "mine").stdout == "committed\n"
    p = k("run", "--rm", "mine", "sh", "-c", "echo $EXTRA $FROM_RUN; test -e /etc/group || echo nogroup; "
          "test -e /etc/hostname && echo hn")
    assert p.stdout.split() == ["1", "yes", "nogroup", "hn"]
    info = json.loads(k("image", "inspect", "mine").stdout)[0]
    assert info["Author"] == "Jane" and info["Config"]["Labels"] == {"l": "1"}
    assert len(info["RootFS"]["Layers"]) == 2
    hist = k("history", "--format", "{{.Comment}}", "mine").stdout.splitlines()
    assert hist[0] == "my message"
    # the committed layer has the changes only, not the runtime's mount points
    changes = k("diff", "mine").stdout.splitlines()
    assert "A /app/file" in changes and "D /etc/group" in changes
    assert not any(l.endswith(("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")) for l in changes)
    # a stopped container, docker format, -q, no name
    k("stop", "-t", "0", "src")
    anon = k("commit", "-q", "--format", "docker", "--no-pause", "src").stdout.strip()
    assert len(anon) == 64 and anon in k("images", "-q", "--no-trunc").stdout.replace("sha256:", "")
    # bad input: nothing created
    layers = _db(k, "SELECT COUNT(*) FROM layers")
    assert_one_error_line(k("commit", "-c", "BOGUS x", "src", "bad", check=False), 125, "invalid change")
    assert_one_error_line(k("commit", "nosuch", "bad", check=False), 125, "no such container")
    assert_one_error_line(k("commit", "src", "Bad Name!", check=False), 125)
    assert _db(k, "SELECT COUNT(*) FROM layers") == layers
    assert len(k("images", "-q").stdout.split()) == len(images_before) + 2


def test_attach_and_exec_with_socket_dir_at_conmon_corner_length(kpod):
    """conmon names its short-path symlink SOCKET_DIR/ID one byte shorter when that path is
    exactly 107 bytes (so a runroot of 35 bytes): attach (run, exec -i) goes through the
    socket in the bundle instead, and rm leaves no symlink behind in SOCKET_DIR."""
    import shutil
    import tempfile

    base = tempfile.mkdtemp(prefix="kpod-sock-", dir="/run" if os.access("/run", os.W_OK) else "/tmp")
    runroot = os.path.join(base, "r" * (35 - len(base) - 1))
    assert len(runroot) == 35 and len(os.path.join(runroot, "socket", "0" * 64)) == 107
    i = kpod.global_args.index("--runroot")
    kpod.global_args[i + 1] = kpod.runroot = runroot
    env = CtrEnv(kpod, "runc", "overlay")
    try:
        out = env("run", "--rm", "--network", "none", "busybox", "echo", "attached")
        assert out.stdout == "attached\n"
        cid = env("run", "-d", "--network", "none", "busybox", "sleep", "1000").stdout.strip()
        assert env("exec", cid, "echo", "exec-ok").stdout == "exec-ok\n"
        assert env("exec", "-i", cid, "cat", input="in\n").stdout == "in\n"
        env("rm", "-f", cid)
        assert os.listdir(os.path.join(runroot, "socket")) == []
    finally:
        env.finalize()
        shutil.rmtree(base, ignore_errors=True)


def test_init_prepares_without_starting(ctr):
    """kpod init: the runtime holds the created container (conmon alive, process not run),
    podman's 'initialized'; start then only starts it; --all leaves running ones alone."""
    k = ctr
    k("create", "--name", "a", "busybox", "sh", "-c", "echo ran; sleep 100")
    k("create", "--name", "b", "busybox", "true")
    assert k("init", "a").stdout == "a\n"
    assert k.state("a") == "initialized"
    assert k("ps", "-a", "--filter", "status=initialized", "--format", "{{.Names}} {{.Status}}").stdout == \
        "a Initialized\n"
    assert k("ps", "-a", "--filter", "status=created", "--format", "{{.Names}}").stdout == "b\n"
    assert int(k.inspect("a", "{{.State.ConmonPid}}")) > 0 and k("logs", "a").stdout == ""
    assert_one_error_line(k("init", "a", check=False), 125, "has already been created in runtime")
    k("start", "a")
    assert k.state("a") == "running"
    k.wait_for(lambda: k("logs", "a").stdout == "ran\n", what="the process ran once")
    # --all: created and exited ones; the running one is left alone (no error)
    out = k("container", "init", "--all").stdout.split()
    assert out == [k.inspect("b", "{{.Id}}")] and k.state("b") == "initialized"
    assert k("start", "-a", "b").returncode == 0 and k.state("b") == "exited"
    assert_one_error_line(k("init", "nosuch", check=False), 125, "no such container")
    k("rm", "-f", "-t", "0", "a", "b")
