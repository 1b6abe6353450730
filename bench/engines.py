"""The two engines under test, each configured with throwaway stores under the bench directory.

Nothing here touches the host's default stores: every command gets explicit --root/--runroot,
its own CNI configuration directory and network (own bridge, own subnet, own IPAM data dir),
and podman gets its own containers.conf through $CONTAINERS_CONF.
"""

from __future__ import annotations

import ipaddress
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

# Markers of a kpod command that does not exist (yet) or an option it does not take.
UNSUPPORTED_MARKERS = (
    "no such command",
    "no such option",
    "no such argument",
    "got unexpected extra argument",
    "unknown command",
    "unknown flag",
    "not implemented",
    "notimplementederror",
    "not supported",
    "usage:",
)

MARK_ENV = "KPODBENCH_MARK"
BRIDGES = ("kbpodman0", "kbkpod0")  # the bench's own CNI bridges


@dataclass
class CmdResult:
    argv: list[str]
    rc: int
    secs: float
    maxrss_kb: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def first_error(self) -> str:
        for line in (self.stderr + "\n" + self.stdout).splitlines():
            line = line.strip()
            if line:
                return line[:300]
        return f"exit code {self.rc}"

    def unsupported(self) -> bool:
        text = (self.stderr + self.stdout).lower()
        return self.rc != 0 and any(m in text for m in UNSUPPORTED_MARKERS)


_local = threading.local()
_spawners: list[subprocess.Popen] = []
_spawners_lock = threading.Lock()


def _spawner() -> subprocess.Popen:
    sp = getattr(_local, "spawner", None)
    if sp is None or sp.poll() is not None:
        helper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spawn.py")
        sp = subprocess.Popen([sys.executable, "-I", "-S", helper], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, bufsize=1)
        _local.spawner = sp
        with _spawners_lock:
            _spawners.append(sp)
    return sp


def stop_spawners() -> None:
    with _spawners_lock:
        for sp in _spawners:
            if sp.poll() is None:
                sp.stdin.close()
                try:
                    sp.wait(5)
                except subprocess.TimeoutExpired:
                    sp.kill()
        _spawners.clear()


def run_cmd(argv: list[str], env: dict[str, str] | None = None, timeout: float = 600, keep_output: int = 200000) -> CmdResult:
    """Run *argv*, timing it and taking its peak RSS from wait4's rusage.

    The command is forked by a small helper process (bench/spawn.py) so that ru_maxrss is the
    command's own (the largest resident set of the command and of the descendants it waited for),
    not the bench's, which Linux carries across fork and exec.
    """
    fd_out, p_out = tempfile.mkstemp(prefix="kpodbench-out-")
    fd_err, p_err = tempfile.mkstemp(prefix="kpodbench-err-")
    os.close(fd_out)
    os.close(fd_err)
    try:
        sp = _spawner()
        req = {"argv": argv, "env": dict(os.environ if env is None else env), "stdout": p_out, "stderr": p_err,
               "timeout": timeout}
        sp.stdin.write(json.dumps(req) + "\n")
        sp.stdin.flush()
        line = sp.stdout.readline()
        if not line:
            raise RuntimeError("bench spawner died")
        res = json.loads(line)
        with open(p_out, "rb") as f:
            so = f.read(keep_output).decode(errors="replace")
        with open(p_err, "rb") as f:
            se = f.read(keep_output).decode(errors="replace")
        if res.get("error"):
            se += res["error"]
        if res["rc"] == -signal.SIGKILL and res["secs"] >= timeout:
            se += f"\n(killed after {timeout:.0f} s timeout)"
        return CmdResult(argv, res["rc"], res["secs"], res["maxrss_kb"], so, se)
    finally:
        for p in (p_out, p_err):
            try:
                os.unlink(p)
            except OSError:
                pass


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def host_ulimits() -> list[str]:
    """nofile/nproc limits for containers, within this host's hard limits.

    Without CAP_SYS_RESOURCE (this machine) nothing may raise a hard limit, so podman's own
    defaults (nofile 1048576) fail; podman also runs conmon with nproc at most 32768.
    """
    _, nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    _, nproc = resource.getrlimit(resource.RLIMIT_NPROC)
    nofile = 1048576 if nofile == resource.RLIM_INFINITY else min(nofile, 1048576)
    nproc = 32768 if nproc == resource.RLIM_INFINITY else min(nproc, 32768)
    return [f"nofile={nofile}:{nofile}", f"nproc={nproc}:{nproc}"]


def used_networks() -> list[ipaddress.IPv4Network]:
    nets = []
    try:
        out = subprocess.run(["ip", "-o", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
        out += subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    except OSError:
        return nets
    for tok in out.split():
        if "/" in tok and tok[0].isdigit():
            try:
                nets.append(ipaddress.ip_network(tok, strict=False))
            except ValueError:
                pass
    return nets


def free_subnets(count: int) -> list[str]:
    """*count* /24 subnets in 10.240-10.254 that nothing on the host routes or holds."""
    used = used_networks()
    out = []
    for third in range(240, 255):
        for second in (240, 241, 242, 243):
            net = ipaddress.ip_network(f"10.{second}.{third}.0/24")
            if not any(net.overlaps(u) for u in used) and str(net) not in out:
                out.append(str(net))
                break
        if len(out) == count:
            return out
    raise RuntimeError("no free /24 subnet found for the bench networks")


def conflist(name: str, bridge: str, subnet: str, ipam_dir: str) -> dict:
    net = ipaddress.ip_network(subnet)
    gw = str(next(net.hosts()))
    return {
        "cniVersion": "0.4.0",
        "name": name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": ipam_dir,
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "ranges": [[{"subnet": subnet, "gateway": gw}]],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "firewall"},
            {"type": "tuning"},
        ],
    }


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KPOD_", "CONTAINERS_", "REGISTRY_AUTH"))}
    # kpod runs from compiled bytecode, as an installed program does: a shell that forbids
    # writing it would make every command compile the modules changed since the last
    # compileall (tens of milliseconds each time)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PATH"] = env.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin"
    env["LC_ALL"] = "C.UTF-8"
    env[MARK_ENV] = "1"
    return env


@dataclass
class Engine:
    """One engine (kind "kpod" or "podman") with a runtime, and its stores under *home*."""

    kind: str
    exe: list[str]
    runtime: str
    home: str  # e.g. /var/tmp/kpod-bench/kpod
    env: dict[str, str] = field(default_factory=dict)
    extra_global: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.kind} ({self.runtime})"

    def store(self, name: str) -> tuple[str, str]:
        return os.path.join(self.home, name, "root"), os.path.join(self.home, name, "runroot")

    def argv(self, store: str, *args: str) -> list[str]:
        root, runroot = self.store(store)
        g = ["--root", root, "--runroot", runroot, "--runtime", self.runtime]
        if self.kind == "podman":
            g += [
                "--storage-driver", "overlay",
                "--cgroup-manager", "cgroupfs",
                "--events-backend", "file",
                "--network-config-dir", os.path.join(self.home, "cni"),
                "--tmpdir", os.path.join(runroot, "libpod-tmp"),
                "--volumepath", os.path.join(root, "volumes"),
            ]
        else:
            g += ["--storage-driver", "overlay", "--cni-config-dir", os.path.join(self.home, "cni")]
        return self.exe + g + self.extra_global + list(args)

    def run(self, store: str, *args: str, timeout: float = 600) -> CmdResult:
        return run_cmd(self.argv(store, *args), env=self.env, timeout=timeout)

    def stores(self) -> list[str]:
        if not os.path.isdir(self.home):
            return []
        return sorted(d for d in os.listdir(self.home) if os.path.isdir(os.path.join(self.home, d, "root")))


def setup_podman(home: str, subnet: str, runtime: str = "runc") -> Engine:
    os.makedirs(os.path.join(home, "cni"), exist_ok=True)
    name = "kpodbench-podman"
    with open(os.path.join(home, "cni", f"{name}.conflist"), "w") as f:
        json.dump(conflist(name, BRIDGES[0], subnet, os.path.join(home, "cni-ipam")), f, indent=1)
    ulimits = ", ".join(f'"{u}"' for u in host_ulimits())
    conf = os.path.join(home, "containers.conf")
    with open(conf, "w") as f:
        f.write(
            f"""# podman configuration for kpod's bench (CONTAINERS_CONF: the only file podman reads)
[containers]
default_ulimits = [{ulimits}]
log_driver = "k8s-file"

[network]
network_backend = "cni"
network_config_dir = "{home}/cni"
default_network = "{name}"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "{runtime}"
# file locks in the tmpdir instead of the host-wide /dev/shm/libpod_lock segment, which a
# podman on a fresh runroot resets for every other podman on the machine
lock_type = "file"
helper_binaries_dir = ["/usr/bin", "/usr/lib/podman", "/usr/libexec/podman"]
"""
        )
    regconf = os.path.join(home, "registries.conf")
    with open(regconf, "w") as f:
        f.write('unqualified-search-registries = []\nshort-name-mode = "permissive"\n')
    env = clean_env()
    env["CONTAINERS_CONF"] = conf
    env["CONTAINERS_REGISTRIES_CONF"] = regconf
    return Engine("podman", [shutil.which("podman") or "podman"], runtime, home, env)


def setup_kpod(home: str, kpod_exe: str, subnet: str, runtime: str) -> Engine:
    os.makedirs(os.path.join(home, "cni"), exist_ok=True)
    name = "kpodbench-kpod"
    with open(os.path.join(home, "cni", f"{name}.conflist"), "w") as f:
        json.dump(conflist(name, BRIDGES[1], subnet, os.path.join(home, "cni-ipam")), f, indent=1)
    # Settings go through KPOD_* variables, not a config file: a file would make every kpod
    # command import yaml, which kpod with its defaults does not do.
    env = clean_env()
    settings = {"default_network": name, "default_ulimits": ",".join(host_ulimits())}
    try:
        from libpod_core.config import SCHEMA
    except ImportError:
        SCHEMA = settings
    for key, value in settings.items():
        if key in SCHEMA:
            env[f"KPOD_{key.upper()}"] = value
    return Engine("kpod", [kpod_exe], runtime, home, env)


def engine_processes(base: str, use_marker: bool = True) -> dict[int, dict]:
    """Processes on the host that belong to the bench: their command line names a path under
    *base*, or they carry the bench's marker environment variable. Container workloads (in
    another PID namespace) are flagged."""
    own_pidns = os.readlink("/proc/self/ns/pid")
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        pid = int(d)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = f.read()
            except OSError:
                env = b""
            marked = base in cmd or (use_marker and (MARK_ENV.encode() + b"=1") in env.split(b"\0"))
            try:
                root = os.readlink(f"/proc/{pid}/root")
            except OSError:
                root = "/"
            if not marked and not root.startswith(base):
                continue
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            pidns = os.readlink(f"/proc/{pid}/ns/pid")
        except (OSError, ValueError):
            continue
        out[pid] = {"pid": pid, "ppid": ppid, "comm": comm, "cmd": cmd[:200], "workload": pidns != own_pidns or root.startswith(base)}
    return out


def mem_of(pid: int) -> tuple[int, int]:
    """(RSS KiB, PSS KiB) of a process."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def mounts_under(base: str) -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == base or mp.startswith(base.rstrip("/") + "/"):
                out.append(mp)
    return sorted(set(out), key=lambda p: -p.count("/"))


def kill_leftovers(base: str, use_marker: bool = True) -> list[dict]:
    """Kill (by PID) processes this bench started that are still alive: conmons and container
    workloads whose command line or root is under *base*, and anything with the marker."""
    me = os.getpid()
    procs = engine_processes(base, use_marker)
    killed = []
    for pid, p in procs.items():
        if pid == me or p["ppid"] == me and p["comm"] in ("python", "python3"):
            continue
        if _is_ancestor(pid, me):
            continue
        _kill(pid)
        killed.append(p)
    if killed:
        time.sleep(0.3)
    return killed


def _is_ancestor(pid: int, of: int) -> bool:
    cur = of
    for _ in range(64):
        if cur == pid:
            return True
        try:
            with open(f"/proc/{cur}/stat") as f:
                s = f.read()
            cur = int(s[s.rindex(")") + 2 :].split()[1])
        except (OSError, ValueError):
            return False
        if cur <= 1:
            return False
    return False


def unmount_all(base: str) -> None:
    for _ in range(3):
        mps = mounts_under(base)
        if not mps:
            return
        for mp in mps:
            subprocess.run(["umount", "-l", mp], capture_output=True)


def wipe(path: str, base: str) -> None:
    """Remove *path* (inside *base*) after unmounting anything mounted below it."""
    if not os.path.exists(path):
        return
    unmount_all(path)
    shutil.rmtree(path, ignore_errors=True)
    if os.path.exists(path):  # e.g. a busy mount: try once more after a lazy unmount
        unmount_all(path)
        subprocess.run(["rm", "-rf", "--one-file-system", path], capture_output=True)
