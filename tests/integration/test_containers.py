"""Container lifecycle through the real kpod CLI, with conmon and real runc/crun.

Every test has its own graphroot/runroot (conftest's ``kpod``) with the busybox image put in
by tests/helpers_images.py, and a finalizer that runs ``rm -fa`` with the same roots and
checks that no conmon, mount or cgroup of the test's containers is left.
"""

from __future__ import annotations

import json
import os
import pty
import select
import struct
import subprocess
import time

import pytest

from tests.conftest import KPOD, assert_one_error_line
from tests.helpers_images import CtrEnv, mounts_under, processes_mentioning, proc_cgroup

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


@pytest.fixture(params=[("runc", "overlay"), ("crun", "overlay"), ("runc", "vfs"), ("crun", "vfs")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def ctr_matrix(kpod, request):
    env = CtrEnv(kpod, *request.param)
    yield env
    env.finalize()


# ---------------------------------------------------------------------------------------
# the core lifecycle, on every runtime x storage combination
# ---------------------------------------------------------------------------------------

def test_lifecycle(ctr_matrix):
    k = ctr_matrix
    # run: exit code, stdout and stderr kept apart
    p = k("run", "--name", "once", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (p.returncode, p.stdout, p.stderr) == (3, "out\n", "err\n")
    assert k.state("once") == "exited"
    assert k.inspect("once", "{{.State.ExitCode}}") == "3"

    # a detached container that ignores SIGTERM
    cid = k("run", "-d", "--name", "svc", "busybox", "sh", "-c",
            "trap '' TERM; trap 'echo got-usr1' USR1; echo ready; while :; do sleep 0.1; done").stdout.strip()
    assert len(cid) == 64
    k.wait_for(lambda: "ready" in k("logs", "svc").stdout, what="ready in logs")
    assert k.state("svc") == "running"
    ps = k("ps").stdout
    assert "svc" in ps and "Up " in ps and "once" not in ps

    # pause / unpause: the freezer says so
    pid = int(k.inspect("svc", "{{.State.Pid}}"))
    freezer = os.path.join(proc_cgroup(pid, "freezer"), "freezer.state")
    k("pause", "svc")
    assert k.state("svc") == "paused"
    assert open(freezer).read().strip() == "FROZEN"
    k("unpause", "svc")
    assert k.state("svc") == "running"
    assert open(freezer).read().strip() == "THAWED"

    # kill -s delivers the signal
    assert k("kill", "-s", "USR1", "svc").stdout.strip() == "svc"
    k.wait_for(lambda: "got-usr1" in k("logs", "svc").stdout, what="USR1 handled")

    # stop: SIGTERM is ignored, SIGKILL after -t 1
    t0 = time.monotonic()
    assert k("stop", "-t", "1", "svc").stdout.strip() == "svc"
    assert 0.9 < time.monotonic() - t0 < 8
    assert k.state("svc") == "exited"
    assert k.inspect("svc", "{{.State.ExitCode}}") == "137"
    assert not processes_mentioning(cid, ("conmon",)) or k.wait_for(
        lambda: not processes_mentioning(cid, ("conmon",)), what="conmon to exit")

    # start again, then rm -f while it runs
    k("start", "svc")
    assert k.state("svc") == "running"
    assert k("rm", "-f", "svc").stdout.strip() == "svc"
    assert k("container", "exists", "svc", check=False).returncode == 1
    assert not any(m for m in mounts_under(k.graphroot) if cid in m)


# ---------------------------------------------------------------------------------------
# exit codes and bad input
# ---------------------------------------------------------------------------------------

def test_command_not_found_and_not_executable(ctr_rt):
    k = ctr_rt
    p = k("run", "--name", "nf", "busybox", "/nonexistent", check=False)
    assert_one_error_line(p, 127)
    assert "not found" in p.stderr or "no such file" in p.stderr
    p = k("run", "--name", "nx", "busybox", "/etc/passwd", check=False)
    assert_one_error_line(p, 126)
    # like podman, the container stays "created": no mount, no conmon, no cgroup
    assert k.state("nf") == "created" and k.state("nx") == "created"
    assert mounts_under(k.graphroot) == []
    time.sleep(0.3)
    assert processes_mentioning(k.runroot) == []
    p = k("run", "--rm", "busybox", "/nonexistent", check=False)
    assert p.returncode == 127
    assert sorted(k("ps", "-a", "--format", "{{.Names}}").stdout.split()) == ["nf", "nx"]


def test_bad_input_leaves_nothing(ctr, tmp_path):
    k = ctr
    assert_one_error_line(k("run", "--pull=never", "nosuchimage", "true", check=False), 125,
                          "nosuchimage: image not known")
    assert_one_error_line(k("create", "-m", "lots", "busybox", check=False), 125, "invalid memory")
    assert_one_error_line(k("create", "-v", f"{tmp_path}/nonexistent:/data", "busybox", check=False), 125,
                          "does not exist")
    assert_one_error_line(k("create", "--restart", "sometimes", "busybox", check=False), 125, "restart policy")
    assert_one_error_line(k("create", "--name", "bad/name", "busybox", check=False), 125, "invalid container name")
    assert_one_error_line(k("create", "--network", "nosuchnet", "busybox", check=False), 125, "network not found")
    assert_one_error_line(k("create", "--security-opt", "bogus", "busybox", check=False), 125, "security-opt")
    assert_one_error_line(k("create", "--ulimit", "nofile=abc", "busybox", check=False), 125, "ulimit")
    assert k("ps", "-aq").stdout == ""
    # nothing half-created: no container layers, no container directories, no mounts
    out = subprocess.run(["sqlite3", os.path.join(k.graphroot, "kpod.db"),
                          "SELECT COUNT(*) FROM layers WHERE kind = 'container'"], capture_output=True, text=True)
    if out.returncode == 0:
        assert out.stdout.strip() == "0"
    assert os.listdir(os.path.join(k.graphroot, "containers")) == [] if os.path.isdir(
        os.path.join(k.graphroot, "containers")) else True
    assert mounts_under(k.graphroot) == []

    # duplicate names
    k("create", "--name", "dup", "busybox")
    p = k("create", "--name", "dup", "busybox", check=False)
    assert_one_error_line(p, 125, 'the container name "dup" is already in use')
    assert k("ps", "-a", "--format", "{{.Names}}").stdout.split() == ["dup"]
    # unknown containers
    assert_one_error_line(k("start", "nope", check=False), 125, 'no container with name or ID "nope" found')
    assert_one_error_line(k("rm", "nope", check=False), 1, "no such container")
    k("run", "-d", "--name", "up", "busybox", "sleep", "100")
    p = k("rm", "up", check=False)
    assert_one_error_line(p, 2, "cannot remove container")
    assert "state improper" not in p.stderr


# ---------------------------------------------------------------------------------------
# detached containers, logs, wait
# ---------------------------------------------------------------------------------------

def test_detached_survives_kpod_and_logs(ctr):
    k = ctr
    # kpod exits right away; the container (and conmon) outlive it
    k("run", "-d", "--name", "talker", "busybox", "sh", "-c",
      "echo one; echo two >&2; sleep 0.5; printf part; echo ial; sleep 100")
    k.wait_for(lambda: "partial" in k("logs", "talker").stdout, what="log lines")
    # every kpod invocation is a new process: logs, state and ps come from disk
    p = k("logs", "talker")
    assert p.stdout == "one\npartial\n" and p.stderr == "two\n"
    assert k("logs", "--tail", "1", "talker").stdout == "partial\n"
    stamped = k("logs", "-t", "talker").stdout.splitlines()
    assert stamped[0].endswith(" one") and stamped[0][:4].isdigit() and "T" in stamped[0]
    assert k("logs", "--since", "2099-01-01T00:00:00Z", "talker").stdout == ""
    assert k("logs", "--until", "2000-01-01T00:00:00Z", "talker").stdout == ""
    assert k("logs", "--since", "10m", "talker").stdout == "one\npartial\n"
    assert k.state("talker") == "running"

    # logs -f follows until the container exits; several containers are prefixed
    k("run", "-d", "--name", "short", "busybox", "sh", "-c", "echo a; sleep 1; echo b")
    p = k("logs", "-f", "short", timeout=30)
    assert p.stdout == "a\nb\n"
    both = k("logs", "short", "talker").stdout.splitlines()
    short_id = k.inspect("short", "{{.Id}}")[:12]
    assert f"{short_id} a" in both and any(l.endswith(" one") for l in both)
    k("stop", "-t", "0", "talker")
    assert k("logs", "talker").stdout == "one\npartial\n"


def test_wait_start_attach_restart(ctr):
    k = ctr
    k("create", "--name", "w1", "busybox", "sh", "-c", "sleep 0.5; exit 7")
    k("create", "--name", "w2", "busybox", "sh", "-c", "exit 9")
    assert k.state("w1") == "created"
    k("start", "w1", "w2")
    assert k("wait", "w1", "w2").stdout.split() == ["7", "9"]
    # start -a: attached, exits with the container's code
    p = k("start", "-a", "w2", check=False)
    assert p.returncode == 9
    # wait --condition running
    k("create", "--name", "w3", "busybox", "sleep", "100")
    proc = subprocess.Popen([KPOD, *k.kpod.global_args, "wait", "--condition", "running", "w3"],
                            stdout=subprocess.PIPE, text=True, env=k.kpod.env)
    time.sleep(0.3)
    assert proc.poll() is None
    k("start", "w3")
    assert proc.wait(timeout=20) == 0
    # restart: a new process
    pid = k.inspect("w3", "{{.State.Pid}}")
    k("restart", "-t", "0", "w3")
    assert k.state("w3") == "running" and k.inspect("w3", "{{.State.Pid}}") != pid


def test_rm_variants_and_run_rm(ctr):
    k = ctr
    p = k("run", "--rm", "--name", "gone", "busybox", "sh", "-c", "echo bye; exit 2", check=False)
    assert (p.returncode, p.stdout) == (2, "bye\n")
    assert k("container", "exists", "gone", check=False).returncode == 1
    # detached --rm: removed by conmon's exit command; wait still reports the exit code
    k("run", "-d", "--rm", "--name", "dgone", "busybox", "sh", "-c", "sleep 1; exit 6")
    assert k("wait", "dgone").stdout.strip() == "6"
    k.wait_for(lambda: k("container", "exists", "dgone", check=False).returncode == 1, what="auto-removal")
    # stop -a / start --all / kill -a
    k("run", "-d", "--name", "a1", "busybox", "sleep", "100")
    k("run", "-d", "--name", "a2", "busybox", "sleep", "100")
    assert sorted(k("stop", "-a", "-t", "0").stdout.split()) == sorted(k.ids())
    assert k("ps", "-q").stdout == ""
    k("start", "--all")
    assert len(k("ps", "-q").stdout.split()) == 2
    k("kill", "-a")
    k.wait_for(lambda: k("ps", "-q").stdout == "", what="killed containers to exit")
    # container prune (with a label filter first)
    k("create", "--name", "keep", "--label", "keep=1", "busybox")
    k("container", "prune", "-f", "--filter", "label=keep")
    assert sorted(k("ps", "-a", "--format", "{{.Names}}").stdout.split()) == ["a1", "a2"]
    assert k("container", "prune", "-f").returncode == 0
    assert k("ps", "-aq").stdout == ""
    # rm -a refuses running containers without -f (exit 2), -f takes everything
    k("create", "--name", "c1", "busybox")
    k("run", "-d", "--name", "r1", "busybox", "sleep", "100")
    p = k("rm", "-a", check=False)
    assert p.returncode == 2
    assert k("ps", "-a", "--format", "{{.Names}}").stdout.split() == ["r1"]
    ids = k.ids()
    assert len(ids) == 1 and k("rm", "-fa").stdout.split() == ids
    assert k("ps", "-aq").stdout == ""


# ---------------------------------------------------------------------------------------
# ps, inspect, rename
# ---------------------------------------------------------------------------------------

def test_ps_filters_and_formats(ctr):
    k = ctr
    k("run", "--name", "ok0", "--label", "tier=web", "--label", "team=a", "busybox", "true")
    k("run", "--name", "bad1", "--label", "tier=db", "busybox", "sh", "-c", "exit 1", check=False)
    k("create", "--name", "fresh", "busybox")
    k("run", "-d", "--name", "live", "--label", "tier=web", "busybox", "sleep", "100")

    def names(*args):
        return sorted(k("ps", *args, "--format", "{{.Names}}").stdout.split())

    assert names() == ["live"]
    assert names("-a") == ["bad1", "fresh", "live", "ok0"]
    assert names("--filter", "status=exited") == ["bad1", "ok0"]
    assert names("--filter", "status=created") == ["fresh"]
    assert names("--filter", "status=running") == ["live"]
    assert names("-a", "--filter", "exited=1") == ["bad1"]
    assert names("-a", "--filter", "exited=0") == ["ok0"]
    assert names("-a", "--filter", "label=tier=web") == ["live", "ok0"]
    assert names("-a", "--filter", "label=team") == ["ok0"]
    assert names("-a", "--filter", "name=^ok") == ["ok0"]
    assert names("-a", "--filter", "ancestor=busybox") == ["bad1", "fresh", "live", "ok0"]
    assert names("-a", "--filter", "ancestor=localhost/busybox:latest", "--filter", "status=running") == ["live"]
    live_id = k.inspect("live", "{{.Id}}")
    assert names("-a", "--filter", f"id={live_id[:8]}") == ["live"]
    assert names("-l") == ["live"]
    assert len(k("ps", "-n", "2", "-q").stdout.split()) == 2
    assert k("ps", "-a", "--sort", "names", "--format", "{{.Names}}").stdout.split() == ["bad1", "fresh", "live", "ok0"]

    table = k("ps", "-a").stdout.splitlines()
    assert table[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    row = {l.split()[-1]: l for l in table[1:]}
    assert "Exited (1)" in row["bad1"] and " ago" in row["bad1"]
    assert "Created" in row["fresh"] and "Up " in row["live"]
    assert "localhost/busybox:latest" in row["live"]
    assert k("ps", "-q").stdout.split() == [live_id[:12]]
    assert k("ps", "-q", "--no-trunc").stdout.split() == [live_id]

    data = json.loads(k("ps", "-a", "--format", "json").stdout)
    by = {d["Names"][0]: d for d in data}
    assert by["bad1"]["ExitCode"] == 1 and by["bad1"]["State"] == "exited" and by["bad1"]["Exited"]
    assert by["live"]["State"] == "running" and by["live"]["Id"] == live_id and by["live"]["Pid"] > 0
    assert by["ok0"]["Labels"] == {"tier": "web", "team": "a"}
    assert by["live"]["Command"] == ["sleep", "100"]
    tpl = k("ps", "-a", "--format", "table {{.ID}}\\t{{.Names}}\\t{{.State}}").stdout.splitlines()
    assert tpl[0].split() == ["ID", "NAMES", "STATE"] and len(tpl) == 5
    sized = k("ps", "-s", "--format", "{{.Size}}").stdout.strip()
    assert "virtual" in sized
    assert_one_error_line(k("ps", "--filter", "colour=red", check=False), 125, "invalid filter")


def test_inspect_and_rename(ctr, tmp_path):
    k = ctr
    host = tmp_path / "data"
    host.mkdir()
    k("create", "--name", "insp", "-m", "64m", "--cpus", "0.5", "--pids-limit", "50", "--label", "a=b",
      "--annotation", "com.example.x=y", "-e", "FOO=bar", "-v", f"{host}:/data:ro", "--restart", "on-failure:3",
      "--hostname", "box", "-w", "/tmp", "busybox", "sleep", "5")
    d = k.inspect("insp")
    assert d["Name"] == "insp" and len(d["Id"]) == 64
    assert d["State"]["Status"] == "created" and d["State"]["Running"] is False
    assert d["Config"]["Labels"] == {"a": "b"} and d["Config"]["Hostname"] == "box"
    assert d["Config"]["Annotations"]["com.example.x"] == "y"
    assert "FOO=bar" in d["Config"]["Env"] and d["Config"]["WorkingDir"] == "/tmp"
    assert d["HostConfig"]["Memory"] == 64 * 1024 * 1024 and d["HostConfig"]["PidsLimit"] == 50
    assert d["HostConfig"]["NanoCpus"] == 500_000_000
    assert d["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert d["Mounts"][0]["Source"] == str(host) and d["Mounts"][0]["Destination"] == "/data"
    assert d["Mounts"][0]["RW"] is False
    assert d["GraphDriver"]["Name"] == "overlay" and d["GraphDriver"]["Data"]["UpperDir"].endswith("/diff")
    assert d["Path"] == "sleep" and d["Args"] == ["5"]
    assert d["OCIRuntime"] == "runc" and d["ImageName"] == "localhost/busybox:latest"
    assert k.inspect("insp", "{{.State.Status}} {{.HostConfig.Memory}} {{.Config.Labels.a}}") == "created 67108864 b"
    # images too (containers first), and a clear error for unknown names
    img = json.loads(k("inspect", "busybox").stdout)[0]
    assert img["Id"] == k.image_id
    assert json.loads(k("inspect", "--type", "container", "insp").stdout)[0]["Name"] == "insp"
    assert_one_error_line(k("inspect", "nothing", check=False), 125, "no such object")
    # rename
    k("rename", "insp", "renamed")
    assert k.inspect("renamed", "{{.Name}}") == "renamed"
    k("create", "--name", "other", "busybox")
    assert_one_error_line(k("rename", "other", "renamed", check=False), 125, "already in use")


# ---------------------------------------------------------------------------------------
# resources and isolation
# ---------------------------------------------------------------------------------------

def test_memory_limit_and_oom_kill(ctr_rt):
    k = ctr_rt
    p = k("run", "--rm", "-m", "32m", "busybox", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    assert p.stdout.strip() == str(32 * 1024 * 1024)
    p = k("run", "--name", "hog", "-m", "32m", "busybox", "sh", "-c", "head -c 300m /dev/zero | tail", check=False)
    assert p.returncode == 137
    assert k.inspect("hog", "{{.State.OOMKilled}} {{.State.ExitCode}}") == "true 137"


def test_pids_limit_stops_fork_bomb(ctr):
    k = ctr
    k("run", "-d", "--name", "bomb", "--pids-limit", "32", "busybox", "sh", "-c",
      "bomb() { bomb | bomb & }; bomb; sleep 100")
    pid = int(k.inspect("bomb", "{{.State.Pid}}"))
    pids_dir = proc_cgroup(pid, "pids")
    assert open(os.path.join(pids_dir, "pids.max")).read().strip() == "32"
    time.sleep(1.0)
    current = int(open(os.path.join(pids_dir, "pids.current")).read())
    assert 1 <= current <= 32
    assert int(open(os.path.join(pids_dir, "pids.events")).read().split()[1]) > 0  # forks were refused
    k("rm", "-f", "bomb")


def test_read_only_volumes_tmpfs(ctr, tmp_path):
    k = ctr
    host = tmp_path / "share"
    host.mkdir()
    (host / "in.txt").write_text("from host\n")
    p = k("run", "--rm", "--read-only", "busybox", "sh", "-c", "touch /x; echo rc=$?; touch /tmp/ok && echo tmp-ok",
          check=False)
    assert "Read-only file system" in p.stderr and "rc=1" in p.stdout and "tmp-ok" in p.stdout
    p = k("run", "--rm", "-v", f"{host}:/data", "busybox", "sh", "-c", "cat /data/in.txt; echo new > /data/out.txt")
    assert p.stdout == "from host\n" and (host / "out.txt").read_text() == "new\n"
    p = k("run", "--rm", "-v", f"{host}:/data:ro", "busybox", "sh", "-c", "echo x > /data/x", check=False)
    assert p.returncode != 0 and "Read-only" in p.stderr
    p = k("run", "--rm", "--tmpfs", "/scratch:size=1m", "busybox", "sh", "-c", "grep /scratch /proc/mounts")
    assert "tmpfs" in p.stdout and "size=1024k" in p.stdout


def test_process_settings(ctr, tmp_path):
    k = ctr
    envfile = tmp_path / "env"
    envfile.write_text("# comment\nFROM_FILE=1\nSHARED=file\n")
    script = ("echo $FOO $FROM_FILE $SHARED; pwd; id -u; hostname; cat /etc/hostname; grep -c box /etc/hosts; "
              "test -f /etc/resolv.conf && echo resolv; cat /proc/1/cmdline | tr '\\0' ' '; echo")
    p = k("run", "--rm", "-e", "FOO=bar", "--env-file", str(envfile), "-e", "SHARED=flag", "-w", "/tmp",
          "-u", "33", "--hostname", "box", "busybox", "sh", "-c", script)
    lines = p.stdout.splitlines()
    assert lines[:5] == ["bar 1 flag", "/tmp", "33", "box", "box"]
    assert lines[5] == "1" and lines[6] == "resolv"
    # --init: catatonit is PID 1
    p = k("run", "--rm", "--init", "busybox", "cat", "/proc/1/cmdline")
    assert p.stdout.split("\0")[0] == "/run/kpod-init"
    # --entrypoint and capabilities
    p = k("run", "--rm", "--entrypoint", "echo", "busybox", "from", "entrypoint")
    assert p.stdout == "from entrypoint\n"
    p = k("run", "--rm", "--cap-drop", "all", "busybox", "sh", "-c", "grep CapEff /proc/self/status")
    assert p.stdout.split()[-1] == "0000000000000000"
    p = k("run", "--rm", "--security-opt", "no-new-privileges", "busybox", "grep", "NoNewPrivs", "/proc/self/status")
    assert p.stdout.split()[-1] == "1"


def test_interactive_stdin_and_tty(ctr):
    k = ctr
    p = k("run", "-i", "--rm", "busybox", "sh", "-c", "cat; exit 4", input="hello stdin\n", check=False)
    assert (p.returncode, p.stdout) == (4, "hello stdin\n")
    # -it under a real pseudo-terminal
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - child
        os.environ.clear()
        os.environ.update(k.kpod.env)
        os.execv(KPOD, [KPOD, *k.kpod.global_args, "run", "-it", "--rm", "busybox", "sh", "-c",
                        "tty; stty size; exit 3"])
    import fcntl
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 77, 0, 0))
    out = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 1)
        if r:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            out += data
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 3, out
    assert b"/dev/pts/0" in out and b"33 77" in out


# ---------------------------------------------------------------------------------------
# restart policy
# ---------------------------------------------------------------------------------------

def test_restart_policy_on_failure(ctr):
    k = ctr
    k("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "echo run; exit 5")
    k.wait_for(lambda: k.inspect("flaky", "{{.RestartCount}} {{.State.Status}}") == "2 exited", timeout=30,
               what="two restarts")
    time.sleep(0.5)
    assert k.inspect("flaky", "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}") == "2 exited 5"
    assert k("logs", "flaky").stdout == "run\nrun\nrun\n"
    # a stopped container is not restarted
    k("run", "-d", "--name", "always", "--restart", "always", "busybox", "sleep", "100")
    k("stop", "-t", "0", "always")
    time.sleep(1)
    assert k.state("always") == "exited"


def test_fresh_store(kpod):
    # no image, no table yet: ps answers, run explains
    p = kpod("ps", "-a")
    assert p.stdout.split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    # the short name resolves nowhere (the tests' registries.conf has no search registries)
    assert_one_error_line(kpod("run", "--rm", "busybox", "true", check=False), 125, "busybox")
    assert_one_error_line(kpod("run", "--pull=never", "busybox", "true", check=False), 125, "busybox: image not known")
    assert kpod("container", "exists", "x", check=False).returncode == 1


def test_create_resolves_users_from_the_stores_copy(ctr):
    """A plain create mounts nothing once the store keeps the image's /etc/passwd and
    /etc/group (the first create or run from the image reads them); a damaged copy is read
    again from the image; the copy goes with the image's layer."""
    import glob

    k = ctr
    pattern = os.path.join(k.graphroot, "layer-cache", "overlay", "*.userfiles.json")
    assert glob.glob(pattern) == []
    k("create", "--name", "first", "-u", "nobody", "busybox", "id")
    [copy] = glob.glob(pattern)
    files = json.load(open(copy))
    assert "nobody:x:65534:65534:" in files["/etc/passwd"] and "/etc/group" in files
    assert k("start", "-a", "first").stdout.startswith("uid=65534(nobody) gid=65534")

    # the next creates read the copy, not the image: a user only the copy knows resolves,
    # and the created container holds no mount (its root.path waits for init)
    files["/etc/passwd"] += "copyuser:x:4242:4243::/home/copyuser:/bin/sh\n"
    with open(copy, "w") as f:
        json.dump(files, f)
    k("create", "--name", "second", "-u", "copyuser", "busybox", "id")
    assert k.inspect("second", "{{.State.Status}}") == "created"
    merged = k.inspect("second")["GraphDriver"]["Data"]["MergedDir"]
    assert merged.startswith(k.graphroot) and merged not in mounts_under(k.graphroot)
    assert json.load(open(os.path.join(k.graphroot, "containers", k.inspect("second")["Id"], "config.json")))[
        "root"]["path"] == "rootfs"
    assert k("start", "-a", "second").stdout.startswith("uid=4242 gid=4243")
    assert_one_error_line(k("create", "-u", "nosuchuser", "busybox", "id", check=False), 125,
                          "unable to find user nosuchuser")

    # a damaged copy: the create reads the image again, and mends the copy
    with open(copy, "w") as f:
        f.write("{not json")
    k("create", "--name", "third", "-u", "copyuser", "busybox", "id", check=False)
    assert "copyuser" not in json.load(open(copy))["/etc/passwd"]

    # system check: a copy whose layer is gone is an orphan, and --repair removes it
    orphan = os.path.join(os.path.dirname(copy), "e" * 64 + ".userfiles.json")
    with open(orphan, "w") as f:
        f.write("{}")
    proc = k("system", "check", check=False)
    assert proc.returncode == 125 and "cached user files of an unknown layer" in proc.stdout
    k("system", "check", "--repair")
    assert not os.path.exists(orphan)

    # removing the image removes its copy
    k("rm", "-fa")
    k("rmi", "busybox")
    assert glob.glob(pattern) == []
