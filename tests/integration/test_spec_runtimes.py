"""Specs from libpod_core.specgen, run for real by runc and by crun (through the hybrid wrapper).

Each test builds a busybox rootfs, generates config.json with specgen and runs it with a
unique container ID, a private runtime --root and a private cgroup path; everything is
deleted afterwards, also on failure.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

from libpod_core import specgen
from libpod_core.specgen import DEFAULT_CAPABILITIES, SpecOptions, caps_mask, generate_spec

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WRAPPER = os.path.join(ROOT, "plugins", "runtime_crun", "kpod_runtime_crun", "crun-hybrid-wrapper")
BUSYBOX = "/usr/bin/busybox"
APPLETS = ("sh", "true", "cat", "id", "ls", "stat", "echo", "grep", "touch", "mkdir", "mount", "unshare",
           "swapon", "sleep", "wc", "tr", "head")
SESSION = uuid.uuid4().hex[:8]
CGROUP_PARENT = f"kpod-spec-it-{SESSION}"


def _runtime_path(name):
    if name == "runc":
        return shutil.which("runc")
    if shutil.which("crun") and os.access(WRAPPER, os.X_OK):
        return WRAPPER
    return None


@pytest.fixture(scope="session", autouse=True)
def _remove_cgroup_parent():
    yield
    for ctrl_dir in _cgroup_dirs(""):
        try:
            os.rmdir(ctrl_dir)
        except OSError:
            pass


def _cgroup_dirs(cid):
    base = "/sys/fs/cgroup"
    out = []
    if not os.path.isdir(base):
        return out
    for ctrl in sorted(os.listdir(base)):
        path = os.path.join(base, ctrl, CGROUP_PARENT, cid) if cid else os.path.join(base, ctrl, CGROUP_PARENT)
        if os.path.isdir(path):
            out.append(path.rstrip("/"))
    return out


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static is not installed")
    root = tmp_path_factory.mktemp("rootfs")
    root.chmod(0o755)  # pytest makes 0700 directories; the container's / must be searchable by alice
    (root / "bin").mkdir()
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in APPLETS:
        os.symlink("busybox", root / "bin" / applet)
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nalice:x:1000:\nstaff:x:50:alice\n")
    return str(root)


class Runner:
    def __init__(self, name, path, tmp_path, rootfs):
        self.name, self.path, self.tmp, self.rootfs = name, path, tmp_path, rootfs
        self.state_root = str(tmp_path / f"{name}-root")
        os.makedirs(self.state_root, exist_ok=True)
        self.created: list[str] = []

    def _bundle(self, cid, opts):
        bundle = self.tmp / f"bundle-{cid}"
        bundle.mkdir()
        opts.cgroups_path = f"/{CGROUP_PARENT}/{cid}"
        spec = generate_spec(opts, {}, self.rootfs)
        (bundle / "config.json").write_text(json.dumps(spec))
        return str(bundle), spec

    def new_id(self):
        cid = f"kpod-spec-{self.name}-{uuid.uuid4().hex[:12]}"
        self.created.append(cid)
        return cid

    def cmd(self, *args, **kw):
        return subprocess.run([self.path, "--root", self.state_root, *args], capture_output=True, text=True,
                              timeout=60, **kw)

    def run(self, script, **opts):
        """Run ``sh -c script`` to completion; returns (exit code, stdout, stderr)."""
        cid = self.new_id()
        bundle, _ = self._bundle(cid, SpecOptions(command=["sh", "-c", script], **opts))
        proc = subprocess.run([self.path, "--root", self.state_root, "run", "-b", bundle, cid],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        return proc.returncode, proc.stdout, proc.stderr

    def create(self, script, **opts):
        cid = self.new_id()
        bundle, spec = self._bundle(cid, SpecOptions(command=["sh", "-c", script], **opts))
        # The container's process inherits the runtime's stdio: a pipe would never reach EOF.
        errfile = self.tmp / f"create-{cid}.err"
        with open(errfile, "w") as err:
            proc = subprocess.run([self.path, "--root", self.state_root, "create", "-b", bundle, cid],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, timeout=60)
        assert proc.returncode == 0, errfile.read_text()
        return cid, spec

    def cleanup(self):
        for cid in self.created:
            self.cmd("delete", "-f", cid)
            for path in sorted(_cgroup_dirs(cid), key=len, reverse=True):
                try:
                    os.rmdir(path)
                except OSError:
                    pass


@pytest.fixture(params=["runc", "crun"])
def rt(request, tmp_path, rootfs):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    path = _runtime_path(request.param)
    if not path:
        pytest.skip(f"{request.param} is not installed")
    runner = Runner(request.param, path, tmp_path, rootfs)
    try:
        yield runner
    finally:
        runner.cleanup()


def status_field(text, field):
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{field} not in {text!r}")


def expected_limit(res, default):
    hard = resource.getrlimit(res)[1]
    return default if hard == resource.RLIM_INFINITY else min(default, hard)


def test_exit_code(rt):
    code, out, err = rt.run("echo hello; exit 3")
    assert code == 3, err
    assert out == "hello\n"
    assert rt.run("true")[0] == 0


def test_default_capabilities(rt):
    code, out, err = rt.run("cat /proc/self/status")
    assert code == 0, err
    want = caps_mask(set(DEFAULT_CAPABILITIES) & specgen.host_bounding_caps())
    assert int(status_field(out, "CapEff"), 16) == want
    assert int(status_field(out, "CapPrm"), 16) == want
    assert int(status_field(out, "CapBnd"), 16) == want
    assert int(status_field(out, "CapInh"), 16) == 0
    assert int(status_field(out, "CapAmb"), 16) == 0


def test_cap_add_drop(rt):
    code, out, err = rt.run("cat /proc/self/status", cap_add=["net_raw"], cap_drop=["CAP_CHOWN"])
    assert code == 0, err
    want = caps_mask((set(DEFAULT_CAPABILITIES) | {"CAP_NET_RAW"}) - {"CAP_CHOWN"})
    assert int(status_field(out, "CapEff"), 16) == want


def test_non_root_user_from_passwd(rt):
    code, out, err = rt.run("id -u; id -g; id -G; grep CapEff /proc/self/status", user="alice")
    assert code == 0, err
    lines = out.split()
    assert lines[0] == "1000" and lines[1] == "1000" and "50" in lines[2:]
    assert out.strip().endswith("0000000000000000")


def test_masked_and_readonly_paths(rt):
    script = ("stat -c %t:%T /proc/keys; wc -c < /proc/keys; ls -A /proc/acpi | wc -l; "
              "echo 1 > /proc/sys/kernel/ns_last_pid; echo sysw=$?; "
              "if [ -e /proc/kcore ]; then wc -c < /proc/kcore; else echo 0; fi")
    code, out, err = rt.run(script)
    assert code == 0, err
    lines = out.split()
    assert lines[0] == "1:3"          # bind-mounted /dev/null
    assert lines[1] == "0"            # nothing to read
    assert lines[2] == "0"            # masked directory: empty tmpfs
    assert lines[3] == "sysw=1" and "Read-only file system" in err
    assert lines[4] == "0"            # /proc/kcore (when the kernel has one) reads empty


def test_rlimits_capped(rt):
    code, out, err = rt.run("ulimit -n; ulimit -Hn; ulimit -u")
    assert code == 0, err
    nofile = expected_limit(resource.RLIMIT_NOFILE, 1048576)
    nproc = expected_limit(resource.RLIMIT_NPROC, 4194304)
    assert out.split() == [str(nofile), str(nofile), str(nproc)]


def test_user_ulimit(rt):
    code, out, err = rt.run("ulimit -n; ulimit -Hn", ulimits=["nofile=512:1024"])
    assert code == 0, err
    assert out.split() == ["512", "1024"]


def test_seccomp_default_profile(rt, tmp_path):
    # Loaded: the kernel reports a filter; ordinary work goes on.
    code, out, err = rt.run("grep Seccomp: /proc/self/status; true && echo ok")
    assert code == 0, err
    assert status_field(out, "Seccomp") == "2"
    assert out.strip().endswith("ok")
    # A mount namespace is refused (no CAP_SYS_ADMIN, and the filter blocks the flag).
    code, out, err = rt.run("unshare -m true")
    assert code != 0 and "Operation not permitted" in err
    # With every capability, the filter still refuses swapon (EPERM) where the kernel
    # itself would answer EINVAL for a file that is not swap space.
    script = "echo x > /swapfile-test; swapon /swapfile-test; echo rc=$?"
    code, out, err = rt.run(script, cap_add=["ALL"])
    assert "rc=1" in out and "Operation not permitted" in err, (out, err)
    code, out, err = rt.run(script, cap_add=["ALL"], seccomp="unconfined")
    assert "rc=1" in out and "Invalid argument" in err, (out, err)
    os.unlink(os.path.join(rt.rootfs, "swapfile-test"))
    # CAP_SYS_ADMIN opens the gated mount syscalls.
    code, out, err = rt.run("mkdir -p /mnt && mount -t tmpfs none /mnt && echo mounted", cap_add=["SYS_ADMIN"])
    assert code == 0 and "mounted" in out, err


def test_custom_seccomp_profile(rt, tmp_path):
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}
    path = tmp_path / "deny-mkdir.json"
    path.write_text(json.dumps(profile))
    code, out, err = rt.run("mkdir /tmp/kpod-x", seccomp=str(path))
    assert code != 0 and "Permission denied" in err


def test_privileged(rt):
    code, out, err = rt.run("cat /proc/self/status; grep -E ' /sys(/fs/cgroup/memory)? ' /proc/mounts; "
                            "stat -c %t:%T /proc/keys", privileged=True)
    assert code == 0, err
    assert int(status_field(out, "CapEff"), 16) == caps_mask(specgen.host_bounding_caps())
    assert status_field(out, "Seccomp") == "0"
    mounts = [line.split() for line in out.splitlines() if line.startswith(("sysfs ", "cgroup "))]
    assert mounts and all(m[3].startswith("rw") for m in mounts), mounts
    assert out.split()[-1] != "1:3"  # not masked


def test_read_only_with_volume(rt, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("volume content\n")
    script = "cat /data/f; touch /x || echo rootro; touch /data/g || echo volro; touch /tmp/ok && echo tmpok"
    code, out, err = rt.run(script, read_only=True, volumes=[f"{data}:/data:ro"])
    assert code == 0, err
    assert out.split("\n")[:4] == ["volume content", "rootro", "volro", "tmpok"]


def test_init(rt):
    try:
        init = specgen.find_init()
    except Exception:
        pytest.skip("catatonit is not installed")
    code, out, err = rt.run("cat /proc/1/cmdline | tr '\\0' ' '; exit 4", init=True, init_path=init)
    assert code == 4, err
    assert out.startswith("/run/kpod-init -- sh -c")


def test_host_network_and_joined_namespace(rt):
    host_ifaces = sorted(os.listdir("/sys/class/net"))
    code, out, err = rt.run("ls /sys/class/net", network="host")
    assert code == 0, err
    assert out.split() == host_ifaces
    code, out, err = rt.run("ls /sys/class/net", network=f"ns:/proc/{os.getpid()}/ns/net")
    assert code == 0, err
    assert out.split() == host_ifaces
    code, out, err = rt.run("ls /sys/class/net")
    assert code == 0, err
    assert out.split() == ["lo"]


def test_memory_limit_in_v1_cgroup(rt):
    cid, spec = rt.create("sleep 30", memory="64m", pids_limit=77, cpus="0.5")
    state = json.loads(rt.cmd("state", cid).stdout)
    assert state["status"] == "created"
    pid = state["pid"]
    cg_path = spec["linux"]["cgroupsPath"]
    v2 = specgen.host_cgroup_v2()
    if v2:
        base = f"/sys/fs/cgroup{cg_path}"
        assert open(f"{base}/memory.max").read().strip() == str(64 * 1024 * 1024)
        assert open(f"{base}/pids.max").read().strip() == "77"
    else:
        mem = f"/sys/fs/cgroup/memory{cg_path}"
        assert int(open(f"{mem}/memory.limit_in_bytes").read()) == 64 * 1024 * 1024
        assert str(pid) in open(f"{mem}/cgroup.procs").read().split()
        assert open(f"/sys/fs/cgroup/pids{cg_path}/pids.max").read().strip() == "77"
        assert open(f"/sys/fs/cgroup/cpu{cg_path}/cpu.cfs_quota_us").read().strip() == "50000"
        assert f"memory:{cg_path}\n" in open(f"/proc/{pid}/cgroup").read()
    assert rt.cmd("start", cid).returncode == 0
    assert json.loads(rt.cmd("state", cid).stdout)["status"] == "running"
    assert rt.cmd("kill", cid, "KILL").returncode == 0
    for _ in range(100):
        if json.loads(rt.cmd("state", cid).stdout)["status"] == "stopped":
            break
        subprocess.run(["sleep", "0.05"])
    assert rt.cmd("delete", cid).returncode == 0
    assert not _cgroup_dirs(cid)


def test_wrapper_basics():
    if not shutil.which("crun"):
        pytest.skip("crun is not installed")
    out = subprocess.run([WRAPPER, "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.startswith("crun version")
    env = dict(os.environ, KPOD_CRUN="/nonexistent/crun")
    out = subprocess.run([WRAPPER, "--version"], capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode == 127 and "crun not found" in out.stderr
    env = dict(os.environ, KPOD_CRUN=WRAPPER)
    out = subprocess.run([WRAPPER, "--version"], capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode == 125 and "wrapper too" in out.stderr
    env = dict(os.environ, KPOD_CRUN_HYBRID="sometimes")
    out = subprocess.run([WRAPPER, "--version"], capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode == 125


def test_under_conmon(rt):
    """The sync-pipe handshake of docs/notes-conmon.md, with this runtime as conmon's -r."""
    if not shutil.which("conmon"):
        pytest.skip("conmon is not installed")
    cid = rt.new_id()
    bundle, _ = rt._bundle(cid, SpecOptions(command=["sh", "-c", "echo out; echo err >&2; exit 7"], memory="32m"))
    rundir = rt.tmp / f"run-{cid}"
    (rundir / "exits").mkdir(parents=True)
    # SOCKDIR/CUUID/attach must fit in sun_path (108 bytes): pytest's tmp paths are too long.
    sockdir = tempfile.mkdtemp(prefix="kpod-it-", dir="/run" if os.access("/run", os.W_OK) else None)
    sync_r, sync_w = os.pipe()
    start_r, start_w = os.pipe()
    args = ["conmon", "--api-version", "1", "-c", cid, "-u", cid, "-n", cid, "-r", rt.path, "-b", bundle,
            "-p", f"{rundir}/pidfile", "-P", f"{rundir}/conmon.pid", "-l", f"k8s-file:{rundir}/ctr.log",
            "--exit-dir", f"{rundir}/exits", "--persist-dir", str(rundir), "--socket-dir-path", sockdir,
            "--runtime-arg", "--root", "--runtime-arg", rt.state_root, "--log-level", "warning"]
    env = dict(os.environ, _OCI_SYNCPIPE=str(sync_w), _OCI_STARTPIPE=str(start_r))
    proc = subprocess.Popen(args, pass_fds=(sync_w, start_r), env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.close(sync_w)
    os.close(start_r)
    try:
        os.write(start_w, b"0")
        os.close(start_w)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        with os.fdopen(sync_r, "rb") as sync:
            reply = json.loads(sync.readline())
        assert reply["data"] > 0, reply
        assert int(open(f"{rundir}/pidfile").read()) == reply["data"]
        assert json.loads(rt.cmd("state", cid).stdout)["status"] == "created"
        if not specgen.host_cgroup_v2():
            assert "memory:" in open(f"/proc/{reply['data']}/cgroup").read()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.connect(f"{sockdir}/{cid}/attach")
        assert rt.cmd("start", cid).returncode == 0
        packets = []
        while True:
            pkt = sock.recv(32768)
            if not pkt:
                break
            packets.append(pkt)
        sock.close()
        assert b"".join(p[1:] for p in packets if p[0] == 2) == b"out\n"
        assert b"".join(p[1:] for p in packets if p[0] == 3) == b"err\n"
        for _ in range(100):
            if os.path.exists(f"{rundir}/exits/{cid}"):
                break
            time.sleep(0.05)
        assert open(f"{rundir}/exits/{cid}").read() == "7"
        assert open(f"{rundir}/exit").read() == "7"
        log = open(f"{rundir}/ctr.log").read().splitlines()
        assert [line.split(" ", 1)[1] for line in log] == ["stdout F out", "stderr F err"]
    finally:
        rt.cmd("delete", "-f", cid)
        try:  # only if that PID is still our conmon (it normally exits with the container)
            pid = int(open(f"{rundir}/conmon.pid").read())
            if cid.encode() in open(f"/proc/{pid}/cmdline", "rb").read():
                os.kill(pid, 9)
        except (OSError, ValueError):
            pass
        shutil.rmtree(sockdir, ignore_errors=True)
