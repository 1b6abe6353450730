"""create/run --ipc, --uts, --pid and --cgroup-parent through the real kpod CLI, with real
runc and crun: the host's namespaces, another container's (joined at start the way pod members
join their infra's), ns:PATH, a cgroup parent of the test's own, and bad input that creates
nothing. Same isolation as tests/integration/test_containers.py."""

from __future__ import annotations

import os
import socket

import pytest

from libpod_core.pods import remove_pod_cgroup
from tests.conftest import assert_one_error_line
from tests.helpers_images import mounts_under, processes_mentioning
from tests.integration.test_containers import ctr, ctr_rt  # noqa: F401 - the same fixtures

pytestmark = pytest.mark.integration

if os.geteuid() != 0:
    pytest.skip("namespace tests need root", allow_module_level=True)


def _cgroup_parent_dirs(parent: str) -> list[str]:
    return [d for d in {f"/sys/fs/cgroup/{ctrl}{parent}" for ctrl in os.listdir("/sys/fs/cgroup")}
            | {f"/sys/fs/cgroup{parent}"} if os.path.isdir(d)]


def test_host_namespaces(ctr_rt):
    k = ctr_rt
    # --pid host: the host's PID 1 is the container's PID 1
    with open("/proc/1/cmdline", "rb") as f:
        host_init = f.read()
    p = k("run", "--rm", "--pid", "host", "busybox", "cat", "/proc/1/cmdline")
    assert p.stdout.encode() == host_init
    # --uts host: the host's name, in the kernel and in /etc/hostname and $HOSTNAME
    p = k("run", "--rm", "--uts", "host", "busybox", "sh", "-c", "hostname; cat /etc/hostname; echo $HOSTNAME")
    assert p.stdout.split() == [socket.gethostname()] * 3
    # --ipc host: the host's IPC namespace (and its /dev/shm)
    p = k("run", "--rm", "--ipc", "host", "busybox", "readlink", "/proc/self/ns/ipc")
    assert p.stdout.strip() == os.readlink("/proc/self/ns/ipc")
    # private by default; --ipc none has no /dev/shm; shareable is a private namespace
    p = k("run", "--rm", "busybox", "sh", "-c", "for n in ipc pid uts; do readlink /proc/self/ns/$n; done")
    assert not set(p.stdout.split()) & {os.readlink(f"/proc/self/ns/{n}") for n in ("ipc", "pid", "uts")}
    p = k("run", "--rm", "--ipc", "none", "busybox", "sh", "-c", "readlink /proc/self/ns/ipc; ls -d /dev/shm",
          check=False)
    assert p.returncode == 1 and p.stdout.strip() != os.readlink("/proc/self/ns/ipc"), p
    p = k("run", "--rm", "--ipc", "shareable", "busybox", "sh", "-c", "readlink /proc/self/ns/ipc; ls -d /dev/shm")
    assert p.stdout.split()[1] == "/dev/shm" and p.stdout.split()[0] != os.readlink("/proc/self/ns/ipc")
    # inspect shows the modes
    k("create", "--name", "h", "--pid", "host", "--uts", "host", "--ipc", "host", "busybox")
    hc = k.inspect("h")["HostConfig"]
    assert (hc["PidMode"], hc["UTSMode"], hc["IpcMode"]) == ("host", "host", "host")
    assert k.inspect("h", "{{.Config.Hostname}}") == socket.gethostname()
    k("create", "--name", "none", "--ipc", "none", "busybox")
    hc = k.inspect("none")["HostConfig"]
    assert (hc["PidMode"], hc["UTSMode"], hc["IpcMode"]) == ("private", "private", "none")


def test_join_container_namespaces(ctr_rt):
    k = ctr_rt
    k("run", "-d", "--name", "target", "--hostname", "tgt", "busybox", "sleep", "1000")
    tid = k.inspect("target", "{{.Id}}")
    tpid = int(k.inspect("target", "{{.State.Pid}}"))
    # --pid container:X sees X's processes (X's sleep is PID 1 there)
    p = k("run", "--rm", "--pid", "container:target", "busybox", "sh", "-c", "cat /proc/1/cmdline; echo; ps")
    assert p.stdout.split("\n")[0].split("\0")[:2] == ["sleep", "1000"]
    assert "sleep 1000" in p.stdout
    # --uts container:X has X's host name
    p = k("run", "--rm", "--uts", f"container:{tid[:12]}", "busybox", "sh", "-c", "hostname; cat /etc/hostname")
    assert p.stdout.split() == ["tgt", "tgt"]
    # --ipc container:X shares X's IPC namespace: same link in both containers
    k("run", "-d", "--name", "joiner", "--ipc", "container:target", "--pid", f"container:{tid}", "busybox",
      "sleep", "1000")
    mine = k("exec", "joiner", "readlink", "/proc/self/ns/ipc").stdout.strip()
    theirs = k("exec", "target", "readlink", "/proc/self/ns/ipc").stdout.strip()
    assert mine == theirs == os.readlink(f"/proc/{tpid}/ns/ipc")
    assert mine != os.readlink("/proc/self/ns/ipc")
    jpid = int(k.inspect("joiner", "{{.State.Pid}}"))
    assert os.readlink(f"/proc/{jpid}/ns/pid") == os.readlink(f"/proc/{tpid}/ns/pid")
    assert os.readlink(f"/proc/{jpid}/ns/uts") != os.readlink(f"/proc/{tpid}/ns/uts")
    hc = k.inspect("joiner")["HostConfig"]
    assert (hc["IpcMode"], hc["PidMode"], hc["UTSMode"]) == (f"container:{tid}", f"container:{tid}", "private")
    assert k.inspect("joiner")["Dependencies"] == [tid]
    # ns:PATH joins that namespace
    path = f"/proc/{tpid}/ns/ipc"
    p = k("run", "--rm", "--ipc", f"ns:{path}", "busybox", "readlink", "/proc/self/ns/ipc")
    assert p.stdout.strip() == theirs
    assert k.inspect("joiner", "{{.HostConfig.IpcMode}}") == f"container:{tid}"
    k("rm", "-f", "joiner")
    k("rm", "-f", "target")


def test_cgroup_parent(ctr_rt):
    k = ctr_rt
    parent = f"/kpodtest-{os.getpid()}"
    try:
        cid = k("run", "-d", "--name", "cg", "--cgroup-parent", parent, "busybox", "sleep", "1000").stdout.strip()
        pid = int(k.inspect("cg", "{{.State.Pid}}"))
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
        memory = [l.split(":", 2)[2] for l in lines if "memory" in l.split(":")[1].split(",")]
        assert memory == [f"{parent}/{cid}"]
        mine = [os.path.join(d, cid) for d in _cgroup_parent_dirs(parent) if os.path.isdir(os.path.join(d, cid))]
        assert "/sys/fs/cgroup/memory" + f"{parent}/{cid}" in mine
        assert k.inspect("cg", "{{.HostConfig.CgroupParent}}") == parent
        # default parent
        k("create", "--name", "plain", "busybox")
        assert k.inspect("plain", "{{.HostConfig.CgroupParent}}") == "/kpod"
        k("rm", "-f", "cg")
        assert not [d for d in mine if os.path.isdir(d)]
    finally:
        k("rm", "-fa", check=False)
        remove_pod_cgroup(parent)  # the parent and anything left in it, in every hierarchy
    assert not _cgroup_parent_dirs(parent)


def test_namespace_bad_input(ctr):
    k = ctr
    k("create", "--name", "created", "busybox", "sleep", "100")
    k("run", "--name", "exited", "busybox", "true")
    before = k("ps", "-aq", "--no-trunc").stdout.split()
    assert len(before) == 2
    cases = [
        (["--ipc", "container:nope"], 'no container with name or ID "nope"'),
        (["--pid", "container:nope"], "no such container"),
        (["--ipc", "ns:/nonexistent/ipc"], "does not exist"),
        (["--uts", "ns:relative/uts"], "does not exist"),
        (["--pid", "bogus"], "invalid --pid 'bogus'"),
        (["--pid", "shareable"], "invalid --pid"),
        (["--uts", "none"], "invalid --uts"),
        (["--ipc", "container:"], "invalid --ipc"),
        (["--ipc", ""], "invalid --ipc"),
        (["--cgroup-parent", "relative/path"], "invalid --cgroup-parent"),
        (["--cgroup-parent", "/a/../b"], "invalid --cgroup-parent"),
        (["--uts", "host", "--hostname", "other-name"], "host's UTS namespace"),
        (["--uts", "container:exited", "--hostname", "x"], "cannot set a hostname"),
    ]
    for cmd in ("create", "run"):
        for flags, message in cases:
            assert_one_error_line(k(cmd, *flags, "busybox", "true", check=False), 125, message)
    assert k("ps", "-aq", "--no-trunc").stdout.split() == before
    assert not mounts_under(k.graphroot) and not mounts_under(k.runroot)
    assert not processes_mentioning(k.runroot, ("conmon",))
    # the target's hostname is the joiner's: another one is refused
    k("run", "-d", "--name", "live", "busybox", "sleep", "100")
    assert_one_error_line(k("create", "--uts", "container:live", "--hostname", "x", "busybox", check=False), 125,
                          "cannot set a hostname")
    assert len(k("ps", "-aq").stdout.split()) == 3
    # a pod member cannot pick a namespace its pod shares
    k("pod", "create", "--name", "p")
    try:
        assert_one_error_line(k("create", "--pod", "p", "--ipc", "host", "busybox", check=False), 125,
                              "joins the pod's")
    finally:
        k("pod", "rm", "-f", "p")


def test_ipc_container_dev_shm(ctr):
    k = ctr
    # joining an ordinary container shares its IPC namespace; /dev/shm stays the joiner's own
    # (only a pod's infra keeps its /dev/shm on the host: tests/integration/test_pods.py)
    k("run", "-d", "--name", "owner", "busybox", "sh", "-c", "echo hi > /dev/shm/f; sleep 1000")
    k.wait_for(lambda: k("exec", "owner", "cat", "/dev/shm/f", check=False).returncode == 0, what="the file")
    assert k("run", "--rm", "--ipc", "container:owner", "busybox", "ls", "/dev/shm").stdout == ""
    # the owner without /dev/shm (--ipc none): the joiner has a tmpfs of its own
    k("run", "-d", "--name", "noshm", "--ipc", "none", "busybox", "sleep", "1000")
    assert k("run", "--rm", "--ipc", "container:noshm", "busybox", "sh", "-c",
             "ls /dev/shm; touch /dev/shm/x && echo ok").stdout == "ok\n"
    k("rm", "-f", "owner", "noshm")
