"""Containers under concurrency and crashes, OCI hooks, and the library API with plugins.

Real runc, conmon and overlayfs; each test has its own roots and the same no-leftovers
finalizer as test_containers.py (rm -fa, then no conmon, mount or cgroup left).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import KPOD, ROOT, assert_one_error_line
from tests.helpers_images import CtrEnv, mounts_under, process_gone, simulate_reboot

pytestmark = pytest.mark.integration

if os.geteuid() != 0:
    pytest.skip("container tests need root", allow_module_level=True)


@pytest.fixture
def ctr(kpod):
    env = CtrEnv(kpod, "runc", "overlay")
    yield env
    env.finalize()


def _db(k):
    conn = sqlite3.connect(os.path.join(k.graphroot, "kpod.db"))
    conn.row_factory = sqlite3.Row
    return conn


def _container_layers(k) -> int:
    with _db(k) as conn:
        return conn.execute("SELECT COUNT(*) FROM layers WHERE kind = 'container'").fetchone()[0]


# ---------------------------------------------------------------------------------------
# many kpod processes at once
# ---------------------------------------------------------------------------------------

def test_concurrent_kpod_processes(ctr):
    k = ctr
    args = " ".join(k.kpod.global_args)
    workers = []
    for n in range(6):
        script = textwrap.dedent(f"""
            set -e
            for i in 1 2; do
                {KPOD} {args} run -d --name w{n}-$i busybox sleep 30 >/dev/null
                {KPOD} {args} stop -t 0 w{n}-$i >/dev/null
                {KPOD} {args} rm w{n}-$i >/dev/null
            done
            {KPOD} {args} create --name c{n} busybox true >/dev/null
            {KPOD} {args} start c{n} >/dev/null
            {KPOD} {args} rm -f c{n} >/dev/null
        """)
        workers.append(subprocess.Popen(["bash", "-c", script], env=k.kpod.env, stderr=subprocess.PIPE, text=True))
    # ps -a keeps answering while they work
    answers = 0
    while any(w.poll() is None for w in workers):
        t0 = time.monotonic()
        p = k("ps", "-a", "--format", "{{.Names}} {{.State}}", check=False)
        assert p.returncode == 0, p.stderr
        assert time.monotonic() - t0 < 10
        answers += 1
    errors = [w.stderr.read() for w in workers if w.wait() != 0]
    assert not errors, errors
    assert answers >= 2
    assert k("ps", "-aq").stdout == ""
    assert _container_layers(k) == 0

    # several processes fighting over one container: one wins, the others fail cleanly
    k("run", "-d", "--name", "contested", "busybox", "sleep", "30")
    procs = [subprocess.Popen([KPOD, *k.kpod.global_args, "rm", "-f", "contested"], env=k.kpod.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
    assert sorted(r[0] for r in results) == [0, 1, 1], results
    assert all("Traceback" not in r[1] for r in results)
    assert k("ps", "-aq").stdout == ""


# ---------------------------------------------------------------------------------------
# crashes: kpod killed, conmon killed, reboot
# ---------------------------------------------------------------------------------------

def test_kpod_killed_at_any_point_of_run(ctr):
    k = ctr
    for i, delay in enumerate((0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.6)):
        p = subprocess.Popen([KPOD, *k.kpod.global_args, "run", "-d", "--name", f"k{i}", "busybox", "sleep", "30"],
                             env=k.kpod.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
    # the store stays consistent and ps answers; every container is in a sane state
    rows = k("ps", "-a", "--format", "{{.Names}} {{.State}}").stdout.splitlines()
    for line in rows:
        name, state = line.split()
        assert state in ("created", "initialized", "running", "exited"), line
        if state in ("created", "initialized"):  # initialized: killed between the runtime's create and start
            k("start", name)
            assert k.state(name) == "running"
    assert k("rm", "-fa").returncode == 0
    k("ps", "-a")  # the next command removes what a killed create left in the store
    assert _container_layers(k) == 0
    assert mounts_under(k.graphroot) == []


def _library_script(k, body: str) -> subprocess.CompletedProcess:
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {ROOT!r})
        from libpod_core.runtime import Runtime
        from libpod_core.containers import CreateOptions, ContainerManager
        rt = Runtime(graphroot={k.graphroot!r}, runroot={k.runroot!r}, runtime="runc", storage_driver="overlay",
                     cni_config_dir={k.kpod.cni_dir!r})
    """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], env=k.kpod.env, capture_output=True, text=True, timeout=60)


def test_kpod_killed_right_after_create_and_during_create(ctr):
    k = ctr
    # killed right after create (run keeps the rootfs mounted for start): a clean 'created'
    p = _library_script(k, """
        c = rt.containers.create(CreateOptions(image="busybox", name="half", command=["sleep", "30"]), keep_mounted=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert p.returncode == -9, p.stderr
    assert k.state("half") == "created"
    k("start", "half")
    assert k.state("half") == "running"
    k("rm", "-f", "half")
    assert mounts_under(k.graphroot) == []

    # killed in the middle of create (layer made and mounted, row inserted, no spec yet)
    p = _library_script(k, """
        def boom(*a, **kw):
            os.kill(os.getpid(), signal.SIGKILL)
        ContainerManager._generate_spec = boom
        rt.containers.create(CreateOptions(image="busybox", name="torn"))
    """)
    assert p.returncode == -9, p.stderr
    # the next command removes the dead operation's layer, and the row with it
    assert k("ps", "-a", "--format", "{{.Names}}").stdout == ""
    assert k("container", "exists", "torn", check=False).returncode == 1
    assert _container_layers(k) == 0
    k("container", "prune", "-f")
    assert os.listdir(os.path.join(k.graphroot, "containers")) == []
    assert mounts_under(k.graphroot) == []
    k("create", "--name", "torn", "busybox")  # the name is free again


def test_conmon_killed_reads_as_exited(ctr):
    k = ctr
    k("run", "-d", "--name", "orphan", "busybox", "sleep", "100")
    conmon_pid = int(k.inspect("orphan", "{{.State.ConmonPid}}"))
    pid = int(k.inspect("orphan", "{{.State.Pid}}"))
    assert conmon_pid > 0 and pid > 0
    os.kill(conmon_pid, signal.SIGKILL)
    time.sleep(0.2)
    assert "Exited (137)" in k("ps", "-a", "--format", "{{.Status}}").stdout
    assert k.state("orphan") == "exited"
    assert k.inspect("orphan", "{{.State.Error}}").startswith("conmon")
    k.wait_for(lambda: process_gone(pid), what="the orphaned container process to die")
    assert k("wait", "orphan").stdout.strip() == "137"
    # it can be started again, and removed without force once stopped
    k("start", "orphan")
    assert k.state("orphan") == "running"
    k("stop", "-t", "0", "orphan")
    k("rm", "orphan")


def test_reboot_runroot_vanished(ctr):
    k = ctr
    k("run", "-d", "--name", "was-running", "busybox", "sleep", "100")
    k("create", "--name", "never-started", "busybox", "echo", "hi")
    assert int(k.inspect("was-running", "{{.State.Pid}}")) > 0
    # "reboot": every process, mount and cgroup of the store goes away with the runroot
    simulate_reboot(k)
    # after the reboot
    rows = dict(l.split() for l in k("ps", "-a", "--format", "{{.Names}} {{.State}}").stdout.splitlines())
    assert rows == {"was-running": "exited", "never-started": "created"}
    p = k("start", "-a", "never-started")
    assert p.stdout == "hi\n"
    k("start", "was-running")
    assert k.state("was-running") == "running"
    k("rm", "-fa")


# ---------------------------------------------------------------------------------------
# OCI hooks
# ---------------------------------------------------------------------------------------

def _hook(path, when, stages, args=None):
    return json.dumps({"version": "1.0.0", "hook": {"path": path, "args": args or [path]}, "when": when,
                       "stages": stages})


def test_oci_hooks_dirs(ctr, tmp_path):
    k = ctr
    out = tmp_path / "hook-out"
    out.mkdir()
    script = tmp_path / "hook.sh"
    script.write_text(f"#!/bin/sh\ncat > {out}/$1-$2.json\n")
    script.chmod(0o755)
    d1, d2 = tmp_path / "hooks1", tmp_path / "hooks2"
    d1.mkdir()
    d2.mkdir()
    (d1 / "01-always.json").write_text(_hook(str(script), {"always": True}, ["prestart", "poststop"],
                                             [str(script), "always", "x"]))
    (d1 / "02-ann.json").write_text(_hook(str(script), {"annotations": {"^com\\.example\\.gpu$": "^yes$"}},
                                          ["createRuntime"], [str(script), "ann", "x"]))
    (d1 / "03-cmd.json").write_text(_hook(str(script), {"commands": ["^/bin/false$"]}, ["prestart"],
                                          [str(script), "cmd", "x"]))
    # a later directory overrides the same file name
    (d1 / "04-override.json").write_text(_hook(str(script), {"always": True}, ["prestart"],
                                               [str(script), "old", "x"]))
    (d2 / "04-override.json").write_text(_hook(str(script), {"always": True}, ["prestart"],
                                               [str(script), "new", "x"]))
    hooks = ["--hooks-dir", str(d1), "--hooks-dir", str(d2)]
    p = k(*hooks, "run", "--name", "hooked", "--annotation", "com.example.gpu=yes", "busybox", "true")
    cid = k.inspect("hooked", "{{.Id}}")
    k.wait_for(lambda: (out / "always-x.json").exists(), what="prestart hook")
    state = json.loads((out / "always-x.json").read_text())
    assert state["id"] == cid
    assert (out / "ann-x.json").exists() and (out / "new-x.json").exists()
    assert not (out / "old-x.json").exists() and not (out / "cmd-x.json").exists()
    # the annotation hook does not match a container without the annotation
    for f in out.iterdir():
        f.unlink()
    k(*hooks, "run", "--rm", "busybox", "true")
    assert not (out / "ann-x.json").exists() and (out / "always-x.json").exists()

    # a malformed file is a clear error naming it, and nothing is left behind
    (d2 / "05-bad.json").write_text('{"version": "1.0.0", "hook": {"path": "/bin/true"}, "when": {}, "stages": ["prestart"]}')
    p = k(*hooks, "run", "--rm", "busybox", "true", check=False)
    assert_one_error_line(p, 125, str(d2 / "05-bad.json"))
    (d2 / "05-bad.json").write_text("{not json")
    p = k(*hooks, "run", "--name", "bad", "busybox", "true", check=False)
    assert_one_error_line(p, 125, "05-bad.json")
    assert k.state("bad") == "created"
    assert mounts_under(k.graphroot) == []


# ---------------------------------------------------------------------------------------
# the library API, with a general plugin
# ---------------------------------------------------------------------------------------

def test_library_api_with_plugin_hooks(ctr, tmp_path):
    k = ctr
    from libpod_core import hookimpl
    from libpod_core.containers import CreateOptions
    from libpod_core.runtime import Runtime

    marker = tmp_path / "poststart"

    class Plugin:
        def __init__(self):
            self.events = []

        @hookimpl
        def container_event(self, event, container):
            self.events.append((event, container["name"]))

        @hookimpl
        def oci_spec_modify(self, spec, container):
            spec["process"]["env"].append(f"PLUGIN_SAW={container['name']}")

        @hookimpl
        def oci_hooks(self, spec, container):
            return {"poststart": [{"path": "/bin/sh", "args": ["sh", "-c", f"touch {marker}"]}]}

    rt = Runtime(graphroot=k.graphroot, runroot=k.runroot, runtime="runc", storage_driver="overlay",
                 config_file=None, cni_config_dir=k.kpod.cni_dir, default_subnet=k.kpod.subnet,
                 default_bridge=k.kpod.bridge)
    plugin = Plugin()
    rt.plugins.load_general()
    rt.plugins.pm.register(plugin)
    try:
        c = rt.containers.create(CreateOptions(image="busybox", name="lib", command=["sh", "-c", "echo $PLUGIN_SAW"]))
        c.start()
        assert c.wait() == 0
        assert open(c.log_path).read().split()[-1] == "lib"
        assert marker.exists()
        c.remove(force=True)
        assert [e for e, _ in plugin.events][:3] == ["create", "init", "start"]
        assert ("remove", "lib") in plugin.events
        assert not rt.containers.exists("lib")
    finally:
        rt.db.close()
