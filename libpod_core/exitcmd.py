"""conmon's exit command: ``python -m libpod_core.exitcmd <kpod arguments>``.

conmon runs kpod's exit command (``kpod <global flags> container cleanup [--rm] ID``) each
time a container exits. Most of the time, for ``run --rm`` and ``rm -f``, the kpod that
started the container removes it itself, and the exit command then finds nothing to do,
after paying for a whole kpod start-up (click, plugins, the container code) on a machine
where that CPU time is taken from the commands that run next.

This entry point answers that common case first: it waits for the container's lock (held by
a kpod removing it) and looks the container up in the state database. If the container is
gone, it is done; otherwise it runs the real ``container cleanup`` command in the same
process, with the same arguments, so the behaviour is exactly the command's.
"""

from __future__ import annotations

import fcntl
import os
import string
import sys


def _option(argv: list[str], name: str) -> str | None:
    try:
        return argv[argv.index(name) + 1]
    except (ValueError, IndexError):
        return None


def container_gone(argv: list[str]) -> bool:
    """True when the container *argv* is about no longer exists (after waiting for whoever
    holds its lock). Any doubt answers False: the real command decides."""
    cid = argv[-1] if argv else ""
    root, runroot = _option(argv, "--root"), _option(argv, "--runroot")
    if len(cid) != 64 or not set(cid) <= set(string.hexdigits) or not root or not runroot:
        return False
    from .state import DB_NAME, container_lock_path

    db = os.path.join(root, DB_NAME)
    if not os.path.isfile(db):
        return False
    fd = None
    try:
        fd = os.open(container_lock_path(runroot, cid), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        pass  # removed with the container (or never made)
    except OSError:
        return False
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_SH)  # a removal in progress holds it exclusively
        import sqlite3

        conn = sqlite3.connect(db, timeout=30)
        try:
            return conn.execute("SELECT 1 FROM containers WHERE id = ?", (cid,)).fetchone() is None
        finally:
            conn.close()
    except Exception:  # noqa: BLE001 - the real command handles (and reports) any problem
        return False
    finally:
        if fd is not None:
            os.close(fd)  # before the real command takes the lock itself


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if container_gone(argv):
        return
    import gc

    from .cli.fast import GC_THRESHOLD, leave
    from .cli.main import run

    gc.set_threshold(GC_THRESHOLD, 20, 20)
    leave(run(argv))


if __name__ == "__main__":
    main()
