"""conmon's exit command entry point: the quick answer only when the container is gone."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time

from libpod_core import exitcmd
from libpod_core.state import DB_NAME, container_lock_path

CID = "ab" * 32


def _store(tmp_path, rows=()):
    root, runroot = tmp_path / "g", tmp_path / "r"
    root.mkdir()
    (runroot / "locks").mkdir(parents=True)
    conn = sqlite3.connect(root / DB_NAME)
    conn.execute("CREATE TABLE containers(id TEXT PRIMARY KEY)")
    conn.executemany("INSERT INTO containers(id) VALUES(?)", [(r,) for r in rows])
    conn.commit()
    conn.close()
    return str(root), str(runroot)


def _argv(root, runroot, cid=CID):
    return ["--root", root, "--runroot", runroot, "--runtime", "runc", "container", "cleanup", "--rm", cid]


def test_gone_and_present(tmp_path):
    root, runroot = _store(tmp_path, rows=["cd" * 32])
    assert exitcmd.container_gone(_argv(root, runroot)) is True
    assert exitcmd.container_gone(_argv(root, runroot, "cd" * 32)) is False


def test_doubt_means_the_real_command(tmp_path):
    root, runroot = _store(tmp_path)
    assert exitcmd.container_gone(_argv(root, runroot, "not-an-id")) is False
    assert exitcmd.container_gone(["container", "cleanup", CID]) is False  # no --root
    assert exitcmd.container_gone(_argv(str(tmp_path / "nowhere"), runroot)) is False  # no database
    os.unlink(os.path.join(root, DB_NAME))
    open(os.path.join(root, DB_NAME), "w").write("not a database")
    assert exitcmd.container_gone(_argv(root, runroot)) is False


def test_waits_for_a_removal_in_progress(tmp_path):
    root, runroot = _store(tmp_path, rows=[CID])
    lock = container_lock_path(runroot, CID)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)

    def remove():
        time.sleep(0.3)
        conn = sqlite3.connect(os.path.join(root, DB_NAME))
        conn.execute("DELETE FROM containers WHERE id = ?", (CID,))
        conn.commit()
        conn.close()
        os.unlink(lock)
        os.close(fd)  # releases the lock

    t = threading.Thread(target=remove)
    t.start()
    start = time.monotonic()
    assert exitcmd.container_gone(_argv(root, runroot)) is True
    assert time.monotonic() - start >= 0.25
    t.join()
    assert not os.path.exists(lock)  # not recreated


def test_exit_command_runs_this_entry_point():
    from libpod_core.containers import ContainerManager

    class Cfg:
        graphroot, runroot, storage_driver, storage_opts, files = "/g", "/r", "overlay", [], []
        conmon_path, cni_config_dir, network_backend, hooks_dirs, log_level = [], "/cni", "cni", [], "warning"

    class C:
        runtime, id, config = "runc", CID, {"rm": True}

    mgr = ContainerManager.__new__(ContainerManager)
    mgr.config = Cfg()
    argv = mgr.exit_command(C())
    assert argv[1:4] == ["-P", "-m", "libpod_core.exitcmd"]
    assert argv[-4:] == ["container", "cleanup", "--rm", CID]
