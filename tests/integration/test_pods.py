"""Pods through the real kpod CLI: an infra container (catatonit -P from the local
localhost/kpod-pause image) holding the shared namespaces, members joining them, pod-level
ports and cgroup limits, and the pod lifecycle. Same isolation as tests/integration/
test_network.py (own CNI dir, default subnet and bridge; nothing left behind)."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.request

import pytest

from tests.conftest import assert_one_error_line
from tests.helpers_images import CtrEnv, mounts_under

pytestmark = pytest.mark.integration

if os.geteuid() != 0:
    pytest.skip("pod tests need root", allow_module_level=True)
if not os.path.exists("/usr/lib/cni/bridge") or not os.path.exists("/usr/bin/catatonit"):
    pytest.skip("CNI plugins or catatonit not installed", allow_module_level=True)

HTTPD = ("trap 'exit 0' TERM; mkdir -p /www && echo hello-$(hostname) > /www/index.html && "
         "{ httpd -f -p 80 -h /www & wait; }")


def _env(kpod, runtime):
    env = CtrEnv(kpod, runtime, "overlay")
    yield env
    env.kpod("pod", "rm", "-fa", check=False)
    env.finalize()
    problems = kpod.network_leftovers(env.seen)
    assert not problems, problems


@pytest.fixture
def pods(kpod):
    yield from _env(kpod, "runc")


@pytest.fixture(params=["runc", "crun"])
def pods_rt(kpod, request):
    yield from _env(kpod, request.param)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(port: int, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def pod_cgroup_dirs(pod_id: str) -> list[str]:
    out = []
    for root, dirs, _files in os.walk("/sys/fs/cgroup"):
        for d in dirs:
            if d == f"pod-{pod_id}":
                out.append(os.path.join(root, d))
        if root.count("/") > 6:
            dirs[:] = []
    return out


def test_pod_lifecycle(pods_rt):
    k = pods_rt
    port = free_port()
    pod_id = k("pod", "create", "--name", "web", "-p", f"127.0.0.1:{port}:80", "--label", "tier=front",
               "--hostname", "podhost").stdout.strip()
    assert len(pod_id) == 64
    infra_id = k("pod", "inspect", "--format", "{{.InfraContainerID}}", "web").stdout.strip()
    assert k.inspect(infra_id, "{{.ImageName}}").startswith("localhost/kpod-pause:")
    assert k("pod", "ps", "--format", "{{.Name}} {{.Status}} {{.NumberOfContainers}}").stdout == "web Created 1\n"
    # members share the pod's network, IPC and UTS namespaces
    k("run", "-d", "--pod", "web", "--name", "srv", "busybox", "sh", "-c", HTTPD)
    assert fetch(port) == "hello-podhost\n"  # the pod's port, the pod's hostname
    p = k("run", "--rm", "--pod", "web", "--name", "cli", "busybox", "sh", "-c",
          "wget -qO- http://127.0.0.1:80/; hostname; for n in net ipc uts; do readlink /proc/self/ns/$n; done")
    lines = p.stdout.splitlines()
    assert lines[:2] == ["hello-podhost", "podhost"]
    srv_pid = int(k.inspect("srv", "{{.State.Pid}}"))
    infra_pid = int(k.inspect(infra_id, "{{.State.Pid}}"))
    for kind in ("net", "ipc", "uts"):
        assert os.readlink(f"/proc/{srv_pid}/ns/{kind}") == os.readlink(f"/proc/{infra_pid}/ns/{kind}")
    assert os.readlink(f"/proc/{srv_pid}/ns/pid") != os.readlink(f"/proc/{infra_pid}/ns/pid")
    assert lines[2:] == [os.readlink(f"/proc/{infra_pid}/ns/{kind}") for kind in ("net", "ipc", "uts")]
    # the infra process is catatonit in pause mode
    with open(f"/proc/{infra_pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"/catatonit", b"-P"]
    # members' cgroups are under the pod's
    with open(f"/proc/{srv_pid}/cgroup") as f:
        assert f"/pod-{pod_id}/" in f.read()

    # ps --pod, pod ls/ps, inspect
    ps = k("ps", "-a", "--pod").stdout.splitlines()
    assert ps[0].split()[-3:] == ["POD", "ID", "PODNAME"]
    assert len(ps) == 3 and all(l.split()[-2:] == [pod_id[:12], "web"] for l in ps[1:])
    assert k("ps", "--format", "{{.Names}} {{.PodName}} {{.Ports}}", "--filter", "name=srv").stdout == \
        f"srv web 127.0.0.1:{port}->80/tcp\n"
    assert k("ps", "-aq", "--filter", "pod=web").stdout.split() == [k.inspect("srv", "{{.Id}}")[:12], infra_id[:12]]
    table = k("pod", "ls", "--ctr-names").stdout.splitlines()
    assert table[0].split() == ["POD", "ID", "NAME", "STATUS", "CREATED", "INFRA", "ID", "NAMES"]
    assert table[1].startswith(pod_id[:12]) and "Running" in table[1] and table[1].endswith(f"{pod_id[:12]}-infra,srv")
    assert k("pod", "ps", "-q").stdout == pod_id[:12] + "\n"
    assert k("pod", "ps", "-q", "--no-trunc").stdout == pod_id + "\n"
    assert k("pod", "ls", "-q", "--filter", "label=tier=front").stdout == pod_id[:12] + "\n"
    assert k("pod", "ls", "-q", "--filter", "status=exited").stdout == ""
    assert k("pod", "ls", "--ctr-ids", "--no-trunc", "--format", "{{.ContainerIds}}").stdout.strip().split(",") == \
        [infra_id, k.inspect("srv", "{{.Id}}")]
    info = json.loads(k("pod", "inspect", "web").stdout)
    assert info["Name"] == "web" and info["State"] == "Running" and info["Hostname"] == "podhost"
    assert info["SharedNamespaces"] == ["net", "ipc", "uts"] and info["Labels"] == {"tier": "front"}
    assert info["NumContainers"] == 2 and info["InfraConfig"]["PortBindings"] == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert k.inspect("srv", "{{.Pod}}") == pod_id
    assert k.inspect(infra_id, "{{.IsInfra}}") == "true"
    # pod top and pod stats
    top = k("pod", "top", "web").stdout
    assert "/catatonit -P" in top and "httpd -f -p 80" in top and top.split()[:3] == ["USER", "PID", "PPID"]
    stats = k("pod", "stats", "--no-stream", "--format", "json", "web").stdout
    assert sorted(s["Name"] for s in json.loads(stats)) == sorted([f"{pod_id[:12]}-infra", "srv"])

    # the infra goes only with its pod; a pod with containers only with -f
    assert_one_error_line(k("rm", "-f", infra_id, check=False), 125, "infra container of pod")
    assert_one_error_line(k("pod", "rm", "web", check=False), 125, "use --force")

    # pause / unpause / stop / start / restart / kill
    assert k("pod", "pause", "web").stdout.strip() == pod_id
    assert k("pod", "ps", "--format", "{{.Status}}").stdout == "Paused\n"
    k("pod", "unpause", "web")
    assert k.state("srv") == "running"
    k("pod", "stop", "-t", "0", "web")
    assert k("pod", "ps", "--format", "{{.Status}}").stdout == "Exited\n"
    assert not os.listdir(os.path.join(k.runroot, "netns"))
    k("pod", "start", "web")
    assert k("pod", "ps", "--format", "{{.Status}}").stdout == "Running\n"
    assert fetch(port) == "hello-podhost\n"
    old = k.inspect("srv", "{{.State.Pid}}")
    k("pod", "restart", "web")
    assert k.inspect("srv", "{{.State.Pid}}") != old and fetch(port) == "hello-podhost\n"
    k("stop", "-t", "0", "srv")
    assert k("pod", "ps", "--format", "{{.Status}}").stdout == "Degraded\n"
    k("pod", "kill", "web")
    k.wait_for(lambda: k("pod", "ps", "--format", "{{.Status}}").stdout == "Exited\n", what="pod to exit")

    # rm -f: containers, infra, namespace, cgroup, the pod
    srv = k.inspect("srv", "{{.Id}}")
    assert k("pod", "rm", "-f", "web").stdout.strip() == pod_id
    assert k("pod", "exists", "web", check=False).returncode == 1
    assert k("ps", "-aq").stdout == ""
    assert not pod_cgroup_dirs(pod_id)
    assert not k.kpod.network_leftovers([pod_id, infra_id, srv])


def test_pod_cgroup_limits_and_options(pods):
    k = pods
    parent = f"/kpodtest{os.getpid()}"
    try:
        pod_id = k("pod", "create", "--name", "lim", "--cpus", "0.5", "--memory", "64m", "--cgroup-parent", parent,
                   "--share", "+pid", "--dns", "10.9.9.9", "--dns-search", "pod.example",
                   "--add-host", "pdb:10.1.1.1").stdout.strip()
        k("run", "-d", "--pod", "lim", "--name", "m", "busybox", "sleep", "100")
        pid = int(k.inspect("m", "{{.State.Pid}}"))
        cg = f"/sys/fs/cgroup/memory{parent}/pod-{pod_id}"
        with open(f"/proc/{pid}/cgroup") as f:
            assert f"memory:{parent}/pod-{pod_id}/" in f.read()
        assert open(f"{cg}/memory.limit_in_bytes").read().strip() == str(64 * 1024 * 1024)
        assert open(f"/sys/fs/cgroup/cpu{parent}/pod-{pod_id}/cpu.cfs_quota_us").read().strip() == "50000"
        info = json.loads(k("pod", "inspect", "lim").stdout)
        assert info["CgroupPath"] == f"{parent}/pod-{pod_id}" and info["Memory"] == 64 * 1024 * 1024
        assert info["SharedNamespaces"] == ["net", "ipc", "uts", "pid"]
        # shared PID namespace: the member sees catatonit as PID 1
        p = k("run", "--rm", "--pod", "lim", "busybox", "cat", "/proc/1/cmdline")
        assert p.stdout.split("\0")[0] == "/catatonit"
        # the pod's DNS settings and extra hosts reach its containers
        p = k("run", "--rm", "--pod", "lim", "busybox", "cat", "/etc/resolv.conf", "/etc/hosts")
        assert "nameserver 10.9.9.9" in p.stdout and "search pod.example" in p.stdout
        assert "10.1.1.1\tpdb" in p.stdout and "\tlim " in p.stdout
        k("pod", "rm", "-f", "lim")
        assert not pod_cgroup_dirs(pod_id)
        # --infra=false: a group of containers without shared namespaces
        k("pod", "create", "--name", "bare", "--infra=false")
        assert k("pod", "inspect", "--format", "{{.InfraContainerID}}|{{.SharedNamespaces}}", "bare").stdout == "|[]\n"
        k("create", "--pod", "bare", "--name", "b1", "busybox")
        assert k.inspect("b1", "{{.HostConfig.NetworkMode}}") == "bridge"
        # --pod new:NAME creates the pod (with the container's ports)
        port = free_port()
        k("run", "-d", "--pod", "new:fresh", "--name", "f1", "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c", HTTPD)
        assert k("pod", "exists", "fresh").returncode == 0
        assert fetch(port) == "hello-fresh\n"
        # prune: pods with nothing running
        k("stop", "-t", "0", "f1")
        k("pod", "stop", "fresh")
        ids = sorted(k("pod", "inspect", "--format", "{{.Id}}", n).stdout.strip() for n in ("bare", "fresh"))
        assert sorted(k("pod", "prune", "-f").stdout.split()) == ids
        assert k("pod", "ps", "-q").stdout == "" and k("ps", "-aq").stdout == ""
    finally:
        for root in os.listdir("/sys/fs/cgroup"):
            try:
                os.rmdir(f"/sys/fs/cgroup/{root}{parent}")
            except OSError:
                pass


def test_pod_bad_input(pods):
    k = pods
    k("pod", "create", "--name", "a")
    k("pod", "create", "--name", "b", "--share", "ipc")
    assert_one_error_line(k("create", "--pod", "nope", "busybox", check=False), 125, 'no pod with name or ID "nope"')
    assert_one_error_line(k("create", "--pod", "a", "--pod", "b", "busybox", check=False), 125,
                          "can only join one pod")
    assert_one_error_line(k("create", "--pod", "a", "-p", "8080:80", "busybox", check=False), 125,
                          "when the pod is created")
    assert_one_error_line(k("create", "--pod", "a", "--network", "none", "busybox", check=False), 125,
                          "shares the pod's network")
    assert_one_error_line(k("create", "--pod", "a", "--hostname", "x", "busybox", check=False), 125, "hostname")
    k("create", "--pod", "b", "--name", "inb", "busybox", "sleep", "100")
    assert_one_error_line(k("create", "--pod", "a", "--network", "container:inb", "busybox", check=False), 125,
                          "shares the pod's network")
    infra_a = k("pod", "inspect", "--format", "{{.InfraContainerID}}", "a").stdout.strip()
    infra_b = k("pod", "inspect", "--format", "{{.InfraContainerID}}", "b").stdout.strip()
    # pod b shares only IPC: its members pick their network, but not another pod's
    assert_one_error_line(k("create", "--pod", "b", "--network", f"container:{infra_a}", "busybox", check=False),
                          125, "can only join one pod")
    k("create", "--name", "joiner", "--network", f"container:{infra_b}", "busybox")  # not a pod member
    assert_one_error_line(k("pod", "create", "--name", "a", check=False), 125, "already exists")
    assert_one_error_line(k("pod", "create", "--share", "bogus", check=False), 125, "invalid namespace to share")
    assert_one_error_line(k("pod", "create", "--infra=false", "-p", "80", check=False), 125, "infra container")
    assert_one_error_line(k("pod", "create", "--memory", "lots", check=False), 125, "invalid memory")
    assert_one_error_line(k("pod", "create", "-p", "1:2:3:4", check=False), 125, "invalid port")
    assert_one_error_line(k("pod", "start", "nope", check=False), 125, "no such pod")
    assert_one_error_line(k("pod", "rm", "nope", check=False), 1, "no such pod")
    assert k("pod", "rm", "-i", "nope").returncode == 0
    assert sorted(k("pod", "ps", "--format", "{{.Name}}").stdout.split()) == ["a", "b"]
    pod_ids = [k("pod", "inspect", "--format", "{{.Id}}", n).stdout.strip() for n in ("a", "b")]
    assert sorted(k("ps", "-a", "--format", "{{.Names}}").stdout.split()) == sorted(
        ["inb", "joiner"] + [f"{i[:12]}-infra" for i in pod_ids])
    # a failed pod create leaves no pod and no infra container
    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        assert_one_error_line(k("pod", "create", "--name", "clash", "-p", f"127.0.0.1:{port}:80", check=False), 125,
                              "already in use")
    assert k("pod", "exists", "clash", check=False).returncode == 1
    assert len(k("ps", "-aq").stdout.split()) == 4
    k("rm", "joiner")
    assert k("pod", "rm", "-fa").returncode == 0
    assert k("ps", "-aq").stdout == ""


def test_pod_infra_image_command_name(pods_rt):
    k = pods_rt
    port = free_port()
    # the busybox test image running `sleep 1000` (podman splits --infra-command on spaces)
    pod_id = k("pod", "create", "--name", "custom", "--infra-image", "busybox", "--infra-command", "sleep 1000",
               "--infra-name", "custom-infra", "-p", f"127.0.0.1:{port}:80").stdout.strip()
    info = json.loads(k("pod", "inspect", "custom").stdout)
    infra_id = info["InfraContainerID"]
    assert k.inspect("custom-infra", "{{.Id}}") == infra_id
    assert (info["InfraConfig"]["InfraImage"], info["InfraConfig"]["InfraCommand"], info["InfraConfig"]["InfraName"]) \
        == ("busybox", ["sleep", "1000"], "custom-infra")
    assert k.inspect("custom-infra", "{{.ImageName}}") == "localhost/busybox:latest"
    assert k.inspect("custom-infra", "{{.IsInfra}}") == "true"
    # members start the infra, which runs that command, and share its network namespace
    k("run", "-d", "--pod", "custom", "--name", "srv", "busybox", "sh", "-c", HTTPD)
    infra_pid = int(k.inspect("custom-infra", "{{.State.Pid}}"))
    with open(f"/proc/{infra_pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"sleep", b"1000"]
    assert fetch(port) == "hello-custom\n"
    srv_pid = int(k.inspect("srv", "{{.State.Pid}}"))
    for kind in ("net", "ipc", "uts"):
        assert os.readlink(f"/proc/{srv_pid}/ns/{kind}") == os.readlink(f"/proc/{infra_pid}/ns/{kind}")
    p = k("run", "--rm", "--pod", "custom", "busybox", "wget", "-qO-", "http://127.0.0.1:80/")
    assert p.stdout == "hello-custom\n"
    assert k("ps", "--format", "{{.Names}} {{.IsInfra}}", "--filter", "pod=custom").stdout.split("\n")[:2] == \
        ["srv false", "custom-infra true"]
    # the default: kpod's pause image with catatonit -P, named <pod ID>-infra
    k("pod", "create", "--name", "plain")
    plain = json.loads(k("pod", "inspect", "plain").stdout)["InfraConfig"]
    assert plain["InfraImage"].startswith("localhost/kpod-pause:") and plain["InfraCommand"] == ["/catatonit", "-P"]
    assert plain["InfraName"].endswith("-infra")
    # --infra-command alone keeps the pause image
    k("pod", "create", "--name", "cmdonly", "--infra-command", "/catatonit -g -P")
    k("pod", "start", "cmdonly")
    cmdonly = json.loads(k("pod", "inspect", "cmdonly").stdout)["InfraContainerID"]
    with open(f"/proc/{k.inspect(cmdonly, '{{.State.Pid}}')}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:3] == [b"/catatonit", b"-g", b"-P"]
    # bad input: one error line, no pod, no container
    before = sorted(k("ps", "-aq").stdout.split())
    for args, message in ((["--infra-image", "nosuch-image"], "nosuch-image"),
                          (["--infra=false", "--infra-image", "busybox"], "need an infra container"),
                          (["--infra=false", "--infra-command", "sleep 1"], "need an infra container"),
                          (["--infra-command", ""], "invalid --infra-command"),
                          (["--infra-name", "bad/name"], "invalid --infra-name"),
                          (["--infra-name", "srv"], "already in use")):
        assert_one_error_line(k("pod", "create", "--name", "broken", *args, check=False), 125, message)
        assert k("pod", "exists", "broken", check=False).returncode == 1
    assert sorted(k("ps", "-aq").stdout.split()) == before
    assert k("pod", "rm", "-f", "custom").stdout.strip() == pod_id
    assert k("ps", "-aq", "--filter", "name=custom").stdout == ""


def test_pod_shares_dev_shm(pods_rt):
    k = pods_rt
    k("pod", "create", "--name", "shm")
    k("run", "-d", "--pod", "shm", "--name", "writer", "busybox", "sh", "-c",
      "echo from-writer > /dev/shm/note; sleep 1000")
    k.wait_for(lambda: k("exec", "writer", "cat", "/dev/shm/note", check=False).returncode == 0, what="the note")
    # another member sees the file (the infra's /dev/shm, as podman mounts it into members)
    assert k("run", "--rm", "--pod", "shm", "busybox", "cat", "/dev/shm/note").stdout == "from-writer\n"
    k("run", "--rm", "--pod", "shm", "busybox", "sh", "-c", "echo back > /dev/shm/reply")
    assert k("exec", "writer", "cat", "/dev/shm/reply").stdout == "back\n"
    infra = json.loads(k("pod", "inspect", "shm").stdout)["InfraContainerID"]
    infra_pid = k.inspect(infra, "{{.State.Pid}}")
    assert sorted(os.listdir(f"/proc/{infra_pid}/root/dev/shm")) == ["note", "reply"]
    # so does a container outside the pod that joins the infra's IPC namespace
    assert k("run", "--rm", "--ipc", f"container:{infra}", "busybox", "cat", "/dev/shm/reply").stdout == "back\n"
    # stopping the pod unmounts the infra's shm from the host
    shm = os.path.join(k.runroot, "containers", infra, "shm")
    assert shm in mounts_under(k.runroot)
    k("pod", "stop", "-t", "0", "shm")
    assert shm not in mounts_under(k.runroot)
    k("pod", "start", "shm")
    # a fresh one (as after podman's pod restart): the writer's new note, not the old reply
    k.wait_for(lambda: k("exec", "writer", "cat", "/dev/shm/note", check=False).returncode == 0, what="the note")
    assert k("exec", "writer", "ls", "/dev/shm").stdout == "note\n"
    # a pod that does not share IPC keeps /dev/shm private
    k("pod", "create", "--name", "noipc", "--share", "net,uts")
    k("run", "-d", "--pod", "noipc", "--name", "w2", "busybox", "sh", "-c", "echo x > /dev/shm/note; sleep 1000")
    k.wait_for(lambda: k("exec", "w2", "cat", "/dev/shm/note", check=False).returncode == 0, what="the note")
    assert k("run", "--rm", "--pod", "noipc", "busybox", "ls", "/dev/shm").stdout == ""
    k("pod", "rm", "-f", "shm", "noipc")
    assert not mounts_under(k.runroot) and not mounts_under(k.graphroot)


def test_inspect_finds_pods_and_networks(pods):
    """kpod inspect looks names up as podman 4 does: containers, images, volumes, networks,
    then pods; --type network and --type pod pick one kind."""
    k = pods
    k("pod", "create", "--name", "ipod")
    own = json.loads(k("pod", "inspect", "ipod").stdout)
    assert json.loads(k("inspect", "--type", "pod", "ipod").stdout) == [own]
    assert json.loads(k("inspect", "ipod").stdout) == [own]  # no other object has that name
    assert k("inspect", "--type", "pod", "--latest", "--format", "{{.Name}}").stdout == "ipod\n"
    [net] = k("network", "ls", "--format", "{{.Name}}").stdout.split()
    listed = json.loads(k("network", "inspect", net).stdout)
    assert json.loads(k("inspect", "--type", "network", net).stdout) == listed
    assert json.loads(k("inspect", net).stdout) == listed
    # a pod named like the network: the network comes first, as podman; --type picks
    k("pod", "create", "--name", net)
    assert json.loads(k("inspect", net).stdout) == json.loads(k("network", "inspect", net).stdout)
    assert json.loads(k("inspect", "--type", "pod", net).stdout)[0]["Name"] == net
    assert_one_error_line(k("inspect", "--type", "pod", "nope", check=False), contains="no such pod nope")
    assert_one_error_line(k("inspect", "--type", "network", "nope", check=False), contains="no such network nope")
    assert_one_error_line(k("inspect", "--type", "network", "--latest", check=False), contains="latest")
