"""The runtime driver conformance suite: the OCI runtime command-line contract.

Each test builds a bundle from Debian's busybox-static with the core's spec generator and
drives the driver's hooks directly (no conmon), cleaning up with ``delete --force``.
"""

from __future__ import annotations

import json
import os
import secrets
import time

import pytest

from ..specgen import SpecOptions, generate_spec
from ..testimage import make_busybox_rootfs
from .env import driver_env


def wait_status(hook, cid, wanted, timeout=10.0):
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = hook.runtime_state(container_id=cid)
        status = state["status"] if state else None
        if status == wanted:
            return state
        time.sleep(0.05)
    raise AssertionError(f"container {cid} never reached {wanted!r}: {state}")


class RuntimeDriverSuite:
    """Subclass and set :attr:`driver_name`."""

    driver_name: str = ""

    @pytest.fixture
    def runtime(self, tmp_path):
        if not self.driver_name:
            pytest.skip("no driver_name set")
        with driver_env("runtime", self.driver_name, str(tmp_path)) as (hook, drv, config):
            yield hook
        # the runtimes remove each container's cgroup; remove the suite's parent too
        for controller in os.listdir("/sys/fs/cgroup"):
            parent = os.path.join("/sys/fs/cgroup", controller, "kpod-conformance")
            try:
                os.rmdir(parent)
            except OSError:
                pass

    @pytest.fixture
    def bundle(self, tmp_path, runtime):
        """A function making a bundle for a command; deletes every container at teardown."""
        made = []

        def make(command, **opts):
            cid = "conf-" + secrets.token_hex(6)
            bdir = tmp_path / cid
            rootfs = make_busybox_rootfs(str(bdir / "rootfs"))
            spec = generate_spec(
                SpecOptions(command=command, cgroups_path=f"/kpod-conformance/{cid}", **opts), {}, rootfs
            )
            (bdir / "config.json").write_text(json.dumps(spec))
            made.append(cid)
            return cid, str(bdir)

        yield make
        for cid in made:
            try:
                runtime.runtime_delete(container_id=cid, force=True)
            except Exception:
                pass

    def test_version_and_command(self, runtime):
        assert runtime.runtime_version().strip()
        path, args = runtime.runtime_command()
        assert os.access(path, os.X_OK) and isinstance(args, list)

    def test_unknown_container(self, runtime):
        assert runtime.runtime_state(container_id="conf-nosuch") is None
        assert runtime.runtime_delete(container_id="conf-nosuch", force=True) is True

    def test_lifecycle(self, runtime, bundle, tmp_path):
        cid, bdir = bundle(["sleep", "60"])
        pid_file = str(tmp_path / f"{cid}.pid")
        assert runtime.runtime_create(container_id=cid, bundle=bdir, pid_file=pid_file, console_socket=None)
        state = wait_status(runtime, cid, "created")
        pid = int(open(pid_file).read())
        assert state["pid"] == pid and state["id"] == cid
        runtime.runtime_start(container_id=cid)
        wait_status(runtime, cid, "running")
        runtime.runtime_pause(container_id=cid)
        wait_status(runtime, cid, "paused")
        runtime.runtime_resume(container_id=cid)
        wait_status(runtime, cid, "running")
        runtime.runtime_kill(container_id=cid, signal="KILL", all_processes=False)
        wait_status(runtime, cid, "stopped")
        runtime.runtime_delete(container_id=cid, force=False)
        assert runtime.runtime_state(container_id=cid) is None

    def test_exec_exit_code(self, runtime, bundle, tmp_path):
        cid, bdir = bundle(["sleep", "60"])
        runtime.runtime_create(container_id=cid, bundle=bdir, pid_file=str(tmp_path / "pid"), console_socket=None)
        runtime.runtime_start(container_id=cid)
        wait_status(runtime, cid, "running")
        spec = json.loads(open(os.path.join(bdir, "config.json")).read())
        process = dict(spec["process"], args=["sh", "-c", "exit 7"], terminal=False)
        pfile = tmp_path / "process.json"
        pfile.write_text(json.dumps(process))
        code = runtime.runtime_exec(container_id=cid, process_file=str(pfile), detach=False, pid_file=None, console_socket=None)
        assert code == 7
        runtime.runtime_delete(container_id=cid, force=True)
        assert runtime.runtime_state(container_id=cid) is None

    def test_signal_by_name_and_number(self, runtime, bundle, tmp_path):
        cid, bdir = bundle(["sleep", "60"])
        runtime.runtime_create(container_id=cid, bundle=bdir, pid_file=str(tmp_path / "pid"), console_socket=None)
        runtime.runtime_start(container_id=cid)
        wait_status(runtime, cid, "running")
        runtime.runtime_kill(container_id=cid, signal=9, all_processes=True)
        wait_status(runtime, cid, "stopped")
