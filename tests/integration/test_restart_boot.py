"""Restart policies where no exit command runs: after a reboot (kpod-restart.service's
``start --all --filter restart-policy=always``) and when a container's conmon was killed;
``start``/``stop --filter``.

Real runc, conmon and overlayfs; each test has its own roots and CtrEnv's finalizer (rm -fa,
then no conmon, mount or cgroup left).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time

import pytest

from tests.conftest import KPOD, ROOT, assert_one_error_line
from tests.helpers_images import CtrEnv, process_gone, simulate_reboot

pytestmark = pytest.mark.integration

if os.geteuid() != 0:
    pytest.skip("container tests need root", allow_module_level=True)

UNIT = os.path.join(ROOT, "contrib", "systemd", "kpod-restart.service")


@pytest.fixture
def ctr(kpod):
    env = CtrEnv(kpod, "runc", "overlay")
    yield env
    env.finalize()


def _unit_command(k, key: str) -> list[str]:
    """The unit's ExecStart/ExecStop as this store's command line: /usr/bin/kpod is the
    console script under test with the test's roots, $LOGGING the unit's value."""
    text = open(UNIT).read()
    [line] = [l for l in text.splitlines() if l.startswith(key + "=")]
    argv = shlex.split(line.split("=", 1)[1])
    assert argv[:2] == ["/usr/bin/kpod", "$LOGGING"], argv
    assert 'Environment=LOGGING="--log-level=info"' in text
    return [KPOD, *k.kpod.global_args, "--log-level=info", *argv[2:]]


def _run_unit(k, key: str) -> subprocess.CompletedProcess:
    p = subprocess.run(_unit_command(k, key), env=k.kpod.env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, (key, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    return p


def _states(k) -> dict[str, str]:
    return dict(l.split() for l in k("ps", "-a", "--format", "{{.Names}} {{.State}}").stdout.splitlines())


def _ids(k, *names: str) -> set[str]:
    return {k.inspect(n, "{{.Id}}") for n in names}


# ---------------------------------------------------------------------------------------
# boot: kpod-restart.service
# ---------------------------------------------------------------------------------------

def test_boot_starts_exactly_the_always_containers(ctr):
    k = ctr
    run = ("run", "-d", "--network", "none")
    cmd = ("busybox", "sh", "-c", "trap 'exit 0' TERM; echo up; sleep 1000 & wait")  # stops at once
    k(*run, "--name", "always-up", "--restart", "always", *cmd)
    k(*run, "--name", "always-stopped", "--restart", "always", *cmd)
    k("stop", "-t", "0", "always-stopped")  # a user stop: started at boot all the same (podman's unit does too)
    k(*run, "--name", "never", *cmd)
    k(*run, "--name", "no", "--restart", "no", *cmd)
    k(*run, "--name", "on-failure", "--restart", "on-failure:3", *cmd)
    k(*run, "--name", "unless-stopped", "--restart", "unless-stopped", *cmd)
    k("create", "--network", "none", "--name", "created", "busybox", "true")
    always = ("always-up", "always-stopped")
    ids = {n: k.inspect(n, "{{.Id}}") for n in _states(k)}

    simulate_reboot(k)
    assert _states(k) == {"always-up": "exited", "always-stopped": "exited", "never": "exited", "no": "exited",
                          "on-failure": "exited", "unless-stopped": "exited", "created": "created"}

    p = _run_unit(k, "ExecStart")
    assert set(p.stdout.split()) == {ids[n] for n in always}
    states = _states(k)
    assert {n for n, s in states.items() if s == "running"} == set(always)
    for n in always:
        # the same log file, appended to: the run before the reboot and the one after it
        k.wait_for(lambda: k("logs", n).stdout.count("up") == 2, what=f"{n}'s second start in its log")
        assert k("logs", n).stdout == "up\nup\n"
        pid = int(k.inspect(n, "{{.State.Pid}}"))
        assert pid > 0 and not process_gone(pid)
    assert k("logs", "never").stdout == "up\n"  # not started again

    # the unit is idempotent (a second start finds them running) ...
    assert _run_unit(k, "ExecStart").stdout == ""
    # ... and its stop, at shutdown, stops the always containers only
    k("start", "no")
    p = _run_unit(k, "ExecStop")
    assert set(p.stdout.split()) == {ids[n] for n in always}
    states = _states(k)
    assert {n for n, s in states.items() if s == "running"} == {"no"}
    assert k.inspect("always-up", "{{.State.ExitCode}}") == "0"  # stopped by its SIGTERM
    # the next boot brings them back again (stop's mark does not keep them down)
    p = _run_unit(k, "ExecStart")
    assert set(p.stdout.split()) == {ids[n] for n in always}


def test_boot_after_a_crash_of_an_always_container_with_a_dead_monitor(ctr):
    """A killed conmon, then a reboot: the container still comes back at boot."""
    k = ctr
    k("run", "-d", "--network", "none", "--name", "svc", "--restart", "always", "busybox", "sleep", "1000")
    os.kill(int(k.inspect("svc", "{{.State.ConmonPid}}")), signal.SIGKILL)
    assert k.state("svc") == "exited"  # nothing restarts it: no exit command ran
    simulate_reboot(k)
    _run_unit(k, "ExecStart")
    assert k.state("svc") == "running"


# ---------------------------------------------------------------------------------------
# start / stop --filter
# ---------------------------------------------------------------------------------------

def test_start_and_stop_filters(ctr):
    k = ctr
    create = ("create", "--network", "none")
    k(*create, "--name", "web1", "--label", "tier=web", "--restart", "always", "busybox", "sleep", "1000")
    k(*create, "--name", "web2", "--label", "tier=web", "busybox", "sleep", "1000")
    k(*create, "--name", "db", "--label", "tier=db", "--restart", "unless-stopped", "busybox", "sleep", "1000")
    assert k("ps", "-a", "--filter", "restart-policy=always", "--format", "{{.Names}}").stdout == "web1\n"
    assert k("ps", "-a", "--filter", "restart-policy=no", "--format", "{{.Names}}").stdout == "web2\n"

    # bad filters: one error line, exit 125, nothing started or stopped
    for args in (("start", "--all", "--filter", "colour=blue"),
                 ("start", "--all", "--filter", "restart-policy"),
                 ("start", "--filter", "restart-policy=sometimes"),
                 ("start", "--all", "--filter", "restart-policy=on-failure:3"),
                 ("start", "--filter", "status=sleeping"),
                 ("start", "--filter", "exited=one"),
                 ("start", "--all", "--filter", "name=["),
                 ("stop", "--filter", "colour=blue"),
                 ("stop", "--all", "--filter", "=x"),
                 ("ps", "--filter", "restart-policy=sometimes")):
        p = k(*args, check=False)
        assert_one_error_line(p, 125, "invalid filter")
        assert p.stdout == ""
    assert set(_states(k).values()) == {"created"}
    p = k("start", "--attach", "--filter", "name=web1", "web1", check=False)
    assert_one_error_line(p, 125)

    # without names: every matching container (not running), printed by ID
    p = k("start", "--filter", "label=tier=web")
    assert set(p.stdout.split()) == _ids(k, "web1", "web2")
    assert _states(k) == {"web1": "running", "web2": "running", "db": "created"}
    # several values of one key: any; different keys: all
    p = k("start", "--all", "--filter", "restart-policy=always", "--filter", "restart-policy=unless-stopped")
    assert p.stdout.split() == [k.inspect("db", "{{.Id}}")]  # web1 runs already
    # with names: those of them that match
    assert k("stop", "-t", "0", "--filter", "label=tier=web", "db").stdout == ""
    assert k.state("db") == "running"
    p = k("stop", "-t", "0", "--filter", "label=tier=web", "--filter", "restart-policy=always")
    assert p.stdout.split() == [k.inspect("web1", "{{.Id}}")]
    assert _states(k) == {"web1": "exited", "web2": "running", "db": "running"}
    p = k("start", "--filter", "name=^web", "web1", "db")
    assert p.stdout.split() == [k.inspect("web1", "{{.Id}}")]
    assert k.state("web1") == "running"
    p = k("stop", "-t", "0", "--filter", "status=running")
    assert set(p.stdout.split()) == _ids(k, "web1", "web2", "db")
    assert set(_states(k).values()) == {"exited"}
    p = k("start", "--all", "--filter", "exited=137", "--filter", "id=" + k.inspect("db", "{{.Id}}")[:6])
    assert p.stdout.split() == [k.inspect("db", "{{.Id}}")]
    # a name that does not exist is still reported, filter or not
    p = k("start", "--filter", "name=web", "nosuch", check=False)
    assert p.returncode != 0 and p.stdout == ""
    assert_one_error_line(p, p.returncode, "nosuch")


# ---------------------------------------------------------------------------------------
# a killed conmon: every command copes, the exit is recorded
# ---------------------------------------------------------------------------------------

def _orphan(k, name: str, *cmd: str, restart: str = "no", paused: bool = False) -> int:
    """Run *name* (and pause it) and SIGKILL its conmon; returns the container's PID (still
    there)."""
    k("run", "-d", "--network", "none", "--name", name, "--restart", restart, "busybox", *(cmd or ("sleep", "1000")))
    if paused:
        k("pause", name)
    conmon_pid = int(k.inspect(name, "{{.State.ConmonPid}}"))
    pid = int(k.inspect(name, "{{.State.Pid}}"))
    os.kill(conmon_pid, signal.SIGKILL)
    k.wait_for(lambda: process_gone(conmon_pid), what="conmon to die")
    assert not process_gone(pid)
    return pid


def _assert_killed_and_recorded(k, name: str, pid: int) -> None:
    data = k.inspect(name)  # repairs it when nothing did yet
    k.wait_for(lambda: process_gone(pid), what="the orphaned container process to die")
    assert data["State"]["Status"] == "exited"
    assert data["State"]["Running"] is False and data["State"]["Pid"] == 0 and data["State"]["ConmonPid"] == 0
    assert data["State"]["ExitCode"] == 137
    assert data["State"]["Error"] == "conmon (the container's monitor) died; the container was killed"
    assert k("wait", name).stdout == "137\n"


@pytest.mark.parametrize("first", ["ps", "inspect", "wait", "stop", "kill", "rm -f"])
def test_conmon_killed_then_each_command_first(ctr, first):
    """Whatever command looks at the container first repairs it: kills what is left of the
    container and records 137; none hangs, none reports it as running or exited 0."""
    k = ctr
    pid = _orphan(k, "orphan")
    t0 = time.monotonic()
    if first == "ps":
        assert k("ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout.startswith("orphan Exited (137) ")
        assert k("ps", "-q").stdout == ""
    elif first == "inspect":
        _assert_killed_and_recorded(k, "orphan", pid)
    elif first == "wait":
        assert k("wait", "orphan", timeout=30).stdout == "137\n"
    elif first == "stop":
        assert k("stop", "orphan", timeout=30).stdout == "orphan\n"
    elif first == "kill":
        p = k("kill", "-s", "HUP", "orphan", check=False)
        assert_one_error_line(p, 125, "is in state exited (conmon (the container's monitor) died; the container "
                                      "was killed)")
    else:
        assert k("rm", "-f", "orphan", timeout=30).stdout == "orphan\n"
        assert k("ps", "-aq").stdout == ""
        k.wait_for(lambda: process_gone(pid), what="the orphaned container process to die")
        return
    assert time.monotonic() - t0 < 20  # stop's 10 s timeout is not waited for: it is not running
    _assert_killed_and_recorded(k, "orphan", pid)
    # it starts again, on a fresh conmon, and stops normally
    k("start", "orphan")
    assert k.state("orphan") == "running"
    assert int(k.inspect("orphan", "{{.State.ConmonPid}}")) > 0
    k("stop", "-t", "0", "orphan")
    assert k.inspect("orphan", "{{.State.Error}}") == ""
    k("rm", "orphan")


def test_conmon_killed_then_the_container_exits_unknown_code(ctr):
    """The container exits after its conmon died: nobody collected the code, so it is -1
    (podman's code when the exit file never appears), not a made-up one."""
    k = ctr
    pid = _orphan(k, "gone", "sh", "-c", "sleep 1; exit 3")
    k.wait_for(lambda: process_gone(pid), what="the container to exit")
    assert k("wait", "gone", timeout=30).stdout == "-1\n"
    st = k.inspect("gone")["State"]
    assert (st["Status"], st["ExitCode"]) == ("exited", -1)
    assert st["Error"] == "conmon (the container's monitor) died; the container's exit code is unknown"
    assert "Exited (-1)" in k("ps", "-a", "--format", "{{.Status}}").stdout
    assert k("ps", "-a", "--filter", "exited=-1", "--format", "{{.Names}}").stdout == "gone\n"
    k("rm", "gone")


def test_conmon_killed_paused_and_restart_always(ctr):
    k = ctr
    # a paused container: killed all the same (frozen processes die when thawed)
    pid = _orphan(k, "frozen", paused=True)
    _assert_killed_and_recorded(k, "frozen", pid)
    # restart=always: no exit command runs, so nothing restarts it by itself; the boot
    # unit's command (or any start) brings it back
    pid = _orphan(k, "svc", restart="always")
    time.sleep(0.5)
    assert not process_gone(pid)  # nothing looked at it yet: nothing changed
    _assert_killed_and_recorded(k, "svc", pid)
    p = k("start", "--all", "--filter", "restart-policy=always")
    assert p.stdout.split() == [k.inspect("svc", "{{.Id}}")]
    assert k.state("svc") == "running" and k.state("frozen") == "exited"
    assert json.loads(k("ps", "--format", "json").stdout)[0]["Names"] == ["svc"]
