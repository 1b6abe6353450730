"""Exec sessions: extra processes in a running container, each watched by its own conmon.

    sess = create_session(container, ExecOptions(command=["ls", "/"]))
    code = sess.start_attached(...)   # or sess.start_detached()

Every session has a row in the ``exec_sessions`` table (listed in ``inspect`` as
``ExecIDs``) and a directory ``<container rundir>/exec/<exec ID>/`` that is conmon's bundle
for it: ``process.json`` (the OCI process), ``pid``, ``conmon.pid``, ``log``, ``attach``,
``ctl`` and ``exits/<container ID>`` (conmon names the exit file after ``-c``, so each session
has its own exit directory). conmon runs ``<runtime> exec --process ... --detach`` itself and
reports on the sync pipe: the process's PID, then its exit code (docs/notes-conmon.md).

States: ``created`` (row written, conmon not yet reporting), ``running``, ``exited``. The row
is the record, reality is re-read: an exit file means exited; a dead conmon without one
means the process is gone (exit code -1); a ``created`` row whose kpod died before conmon
reported is dropped. Foreground sessions are removed when they end (like podman); detached
ones stay listed until the container stops, then they are pruned.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from . import conmon as conmon_mod
from . import containers as _containers  # noqa: F401 - the containers table our rows reference
from .errors import ContainerStateError, InvalidArgument, KpodError, NotFound, RuntimeFailure
from .state import register_schema

SCHEMA_VERSION = 1
register_schema(
    "exec_sessions",
    SCHEMA_VERSION,
    """
    CREATE TABLE IF NOT EXISTS exec_sessions (
        id TEXT PRIMARY KEY,
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        status TEXT NOT NULL DEFAULT 'created',
        pid INTEGER NOT NULL DEFAULT 0,
        conmon_pid INTEGER NOT NULL DEFAULT 0,
        owner_pid INTEGER NOT NULL DEFAULT 0,
        exit_code INTEGER,
        detached INTEGER NOT NULL DEFAULT 0,
        config TEXT NOT NULL,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL
    );
    CREATE INDEX IF NOT EXISTS exec_sessions_by_container ON exec_sessions(container_id)
    """,
)

SYNC_TIMEOUT = 60.0


def _ensure_schema(db) -> None:
    if getattr(db, "_kpod_exec_schema", False):
        return
    have = {r["area"]: r["version"] for r in db.read("SELECT area, version FROM schema_versions")}
    if have.get("exec_sessions", 0) < SCHEMA_VERSION:
        db._migrate()  # the database was opened before this module registered its schema
    db._kpod_exec_schema = True


@dataclass
class ExecOptions:
    command: list[str]
    env: list[str] = field(default_factory=list)
    env_files: list[str] = field(default_factory=list)
    user: str | None = None
    workdir: str | None = None
    tty: bool = False
    interactive: bool = False
    privileged: bool = False
    detach: bool = False


def exec_dir(c, exec_id: str) -> str:
    return os.path.join(c.rundir, "exec", exec_id)


def _process_spec(c, opts: ExecOptions, console_size: tuple[int, int] | None) -> dict[str, Any]:
    """The OCI process for the session: the container's, with the command, env, user,
    working directory, terminal and capabilities of the exec."""
    from .containers import parse_env_file
    from .specgen import _sort_caps, build_env, normalize_capability, resolve_capabilities, resolve_user

    try:
        with open(os.path.join(c.bundle, "config.json")) as f:
            spec = json.load(f)
    except (OSError, ValueError):
        spec = c.spec()
    proc = dict(spec.get("process") or {})
    proc["args"] = list(opts.command)
    proc["terminal"] = bool(opts.tty)
    proc.pop("consoleSize", None)
    if opts.tty and console_size:
        proc["consoleSize"] = {"height": int(console_size[0]), "width": int(console_size[1])}
    extra_env: list[str] = []
    for path in opts.env_files:
        extra_env += parse_env_file(path)
    extra_env += list(opts.env)
    env = list(proc.get("env") or [])
    if opts.user:
        rootfs = (spec.get("root") or {}).get("path") or c.mount_point
        u = resolve_user(rootfs, opts.user)
        proc["user"] = {"uid": u.uid, "gid": u.gid, "umask": (proc.get("user") or {}).get("umask", 0o22)}
        if u.additional_gids:
            proc["user"]["additionalGids"] = list(u.additional_gids)
        if not any(e.split("=", 1)[0] == "HOME" for e in extra_env):
            extra_env.append(f"HOME={u.home}")
    if extra_env:
        env = build_env(env, extra_env)
        # build_env adds its defaults; keep the container's own order and values otherwise
    if opts.tty and not any(e.startswith("TERM=") for e in env):
        env.append("TERM=xterm")
    proc["env"] = env
    if opts.workdir:
        if not opts.workdir.startswith("/"):
            raise InvalidArgument(f"invalid working directory {opts.workdir!r}: must be an absolute path")
        proc["cwd"] = opts.workdir
    caps = dict(proc.get("capabilities") or {})
    bounding = list(caps.get("bounding") or [])
    if opts.privileged:
        bounding = resolve_capabilities((), (), True)
    uid = (proc.get("user") or {}).get("uid", 0)
    if uid == 0:
        granted = bounding
    else:
        explicit = {normalize_capability(x) for x in c.config.get("cap_add") or []} - {"ALL"}
        granted = _sort_caps(explicit & set(bounding))
    proc["capabilities"] = {"bounding": bounding, "effective": granted, "permitted": granted,
                            "inheritable": granted if uid else [], "ambient": granted if uid else []}
    return proc


class ExecSession:
    """One exec session of a container (see the module docstring)."""

    def __init__(self, c, row) -> None:
        self.c = c
        self.row = dict(row)
        self.id: str = row["id"]
        self.config: dict[str, Any] = json.loads(row["config"])

    @property
    def db(self):
        return self.c.mgr.db

    @property
    def dir(self) -> str:
        return exec_dir(self.c, self.id)

    @property
    def exit_file(self) -> str:
        return os.path.join(self.dir, "exits", self.c.id)

    @property
    def socket_link(self) -> str:
        return conmon_mod.attach_link(self.c.mgr.socket_dir, self.id)

    def _update(self, **values: Any) -> None:
        cols = ", ".join(f"{k} = ?" for k in values)
        with self.db.write() as tx:
            tx.execute(f"UPDATE exec_sessions SET {cols} WHERE id = ?", (*values.values(), self.id))
        self.row.update(values)

    # -- observing -----------------------------------------------------------------------
    def observe(self) -> str:
        """Bring the row up to date with reality; returns the status (``gone`` when the
        session was dropped)."""
        st = self.row["status"]
        if st == "exited":
            return st
        code = conmon_mod.read_exit_file(self.exit_file)
        if code is not None:
            self._update(status="exited", exit_code=code, finished_at=_mtime(self.exit_file))
            return "exited"
        if st == "created":
            if not _alive(self.row["owner_pid"]) and not conmon_mod.process_alive(self.row["conmon_pid"], self.c.id):
                self.remove()
                return "gone"
            return st
        if not conmon_mod.process_alive(self.row["conmon_pid"], self.c.id):
            code = conmon_mod.read_exit_file(self.exit_file)
            self._update(status="exited", exit_code=-1 if code is None else code, finished_at=time.time())
            return "exited"
        return st

    def remove(self) -> None:
        """Forget the session: row, directory and socket link (its process, if any, is left
        to the container's lifetime)."""
        with self.db.write() as tx:
            tx.execute("DELETE FROM exec_sessions WHERE id = ?", (self.id,))
        shutil.rmtree(self.dir, ignore_errors=True)
        try:
            os.unlink(self.socket_link)
        except OSError:
            pass

    # -- conmon ----------------------------------------------------------------------------
    def _conmon_argv(self, attach: bool) -> list[str]:
        c = self.c
        hook = c._runtime()
        path, gargs = hook.runtime_command()
        d = self.dir
        args = [c.mgr.conmon_path(), "--api-version", "1", "-c", c.id, "-u", self.id, "-n", c.name,
                "-r", path, "-b", d, "-p", os.path.join(d, "pid"), "-P", os.path.join(d, "conmon.pid"),
                "-l", f"k8s-file:{os.path.join(d, 'log')}", "--exit-dir", os.path.join(d, "exits"),
                "--socket-dir-path", c.mgr.socket_dir, "--exec", "--exec-process-spec",
                os.path.join(d, "process.json"),
                "--log-level", "debug" if c.mgr.config.log_level == "debug" and not attach else "warning"]
        for a in gargs:
            args += ["--runtime-arg", a]
        if self.config.get("tty"):
            args.append("-t")
        if self.config.get("interactive"):
            args.append("-i")
        if attach:
            args.append("--exec-attach")
        return args

    def _runtime_env(self) -> dict[str, str]:
        return self.c._runtime().runtime_env() or {}

    def start(self, attach: bool) -> tuple[int, socket.socket | None, int]:
        """Spawn conmon for the session. Returns (exec PID, attach socket or None, the
        sync pipe's read end — the exit code arrives on it)."""
        sync_r, sync_w = os.pipe()
        start_r, start_w = os.pipe()
        att_r = att_w = -1
        fds = [sync_w, start_r]
        env = dict(os.environ)
        env.update(self._runtime_env())
        env["_OCI_SYNCPIPE"] = str(sync_w)
        env["_OCI_STARTPIPE"] = str(start_r)
        if attach:
            att_r, att_w = os.pipe()
            fds.append(att_w)
            env["_OCI_ATTACHPIPE"] = str(att_w)
        sock = None
        ok = False
        try:
            with tempfile.TemporaryFile() as err:
                try:
                    proc = subprocess.Popen(self._conmon_argv(attach), pass_fds=fds, env=env, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=err, close_fds=True,
                                            start_new_session=True, cwd=self.dir)
                except OSError as exc:
                    raise RuntimeFailure(f"cannot run conmon: {exc.strerror}") from None
                finally:
                    for fd in fds:
                        os.close(fd)
                os.write(start_w, b"0")
                try:
                    rc = proc.wait(timeout=SYNC_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    raise RuntimeFailure("conmon did not start in time") from None
                if rc != 0:
                    err.seek(0)
                    text = err.read().decode(errors="replace").strip()
                    raise RuntimeFailure(f"conmon failed (exit status {rc}): {conmon_mod._clean_message(text) or 'no message'}")
            self._update(conmon_pid=conmon_mod.read_pid(os.path.join(self.dir, "conmon.pid")) or 0)
            if attach:
                line = conmon_mod._read_line(att_r, SYNC_TIMEOUT)
                if not line:
                    # conmon gave up before the attach socket (the sync pipe says why)
                    self._raise_sync(conmon_mod._read_line(sync_r, SYNC_TIMEOUT))
                sock = conmon_mod.connect_attach(os.path.join(self.dir, "attach"))
                os.write(start_w, b"0")  # conmon waits for this before running the runtime
            line = conmon_mod._read_line(sync_r, SYNC_TIMEOUT)
            pid = self._raise_sync(line)
            try:
                os.unlink(self.socket_link)  # connected (or not needed): no dangling link later
            except OSError:
                pass
            self._update(status="running", pid=pid, started_at=time.time())
            ok = True
            return pid, sock, sync_r
        finally:
            os.close(start_w)
            if att_r >= 0:
                os.close(att_r)
            if not ok:
                os.close(sync_r)
                if sock is not None:
                    sock.close()

    def _raise_sync(self, line: bytes) -> int:
        try:
            reply = json.loads(line) if line else {}
        except ValueError:
            raise RuntimeFailure(f"conmon: unexpected reply on the sync pipe: {line[:200]!r}") from None
        pid = reply.get("data", -1)
        if not isinstance(pid, int) or pid < 0:
            message = conmon_mod._clean_message(str(reply.get("message") or "exec failed: conmon exited"))
            code = conmon_mod.classify_runtime_error(message)
            suffix = {127: ": OCI runtime attempted to invoke a command that was not found",
                      126: ": OCI runtime permission denied error"}.get(code, "")
            raise RuntimeFailure(message + suffix, exit_code=code)
        return pid

    def exit_code_from(self, sync_r: int, timeout: float = 30.0) -> int:
        """The session's exit code: conmon's second sync line, else its exit file."""
        code = None
        try:
            line = conmon_mod._read_line(sync_r, timeout)
            if line:
                data = json.loads(line).get("data")
                if isinstance(data, int):
                    code = data
        except (RuntimeFailure, ValueError):
            pass
        if code is None:
            deadline = time.monotonic() + 5
            while code is None and time.monotonic() < deadline:
                code = conmon_mod.read_exit_file(self.exit_file)
                if code is None:
                    if not conmon_mod.process_alive(self.row["conmon_pid"], self.c.id):
                        code = conmon_mod.read_exit_file(self.exit_file)
                        break
                    time.sleep(0.02)
        if code is None:
            code = -1
        self._update(status="exited", exit_code=code, finished_at=time.time())
        return code

    def resize(self, rows: int, cols: int) -> None:
        conmon_mod.resize(self.dir, rows, cols)


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return time.time()


def _alive(pid: int) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


# ---------------------------------------------------------------------------------------
# the library API
# ---------------------------------------------------------------------------------------

def create_session(c, opts: ExecOptions, console_size: tuple[int, int] | None = None) -> ExecSession:
    """Check the container runs, write the session's row and bundle (under the container's
    lock). The caller then starts it (:meth:`ExecSession.start`)."""
    if not opts.command:
        raise InvalidArgument("you must provide a command to exec")
    db = c.mgr.db
    _ensure_schema(db)
    with c.locked():
        status = c.sync()
        if status != "running":
            from .containers import display_state

            raise ContainerStateError(
                f"can only create exec sessions on running containers: container {c.name} is {display_state(status)}")
        prune(c, running=True)
        proc = _process_spec(c, opts, console_size)
        eid = secrets.token_hex(32)
        d = exec_dir(c, eid)
        os.makedirs(os.path.join(d, "exits"), mode=0o700)
        try:
            with open(os.path.join(d, "process.json"), "w") as f:
                json.dump(proc, f)
            conf = {"command": list(opts.command), "tty": opts.tty, "interactive": opts.interactive,
                    "user": opts.user or "", "workdir": proc.get("cwd", "/"), "privileged": opts.privileged,
                    "detach": opts.detach}
            with db.write() as tx:
                tx.execute(
                    "INSERT INTO exec_sessions(id, container_id, status, owner_pid, detached, config, created_at) "
                    "VALUES(?,?,?,?,?,?,?)",
                    (eid, c.id, "created", os.getpid(), int(opts.detach), json.dumps(conf), time.time()))
        except BaseException:
            shutil.rmtree(d, ignore_errors=True)
            raise
        row = db.one("SELECT * FROM exec_sessions WHERE id = ?", (eid,))
    return ExecSession(c, row)


def sessions(c) -> list[ExecSession]:
    db = c.mgr.db
    _ensure_schema(db)
    rows = db.read("SELECT * FROM exec_sessions WHERE container_id = ? ORDER BY created_at", (c.id,))
    return [ExecSession(c, r) for r in rows]


def prune(c, running: bool | None = None) -> None:
    """Drop sessions that cannot matter any more: all of them when the container is not
    running, those of an earlier run, and abandoned ``created`` ones."""
    if running is None:
        running = c.state() in ("running", "paused")
    started = c.row.get("started_at") or 0
    for s in sessions(c):
        if not running or s.row["created_at"] < started:  # not running, or from an earlier run
            s.remove()
        else:
            s.observe()


def exec_ids(c) -> list[str]:
    """Session IDs for ``inspect`` (pruned first)."""
    try:
        prune(c)
        return [s.id for s in sessions(c)]
    except KpodError:
        return []


def get_session(c, exec_id: str) -> ExecSession:
    for s in sessions(c):
        if s.id == exec_id or (len(exec_id) >= 3 and s.id.startswith(exec_id)):
            return s
    raise NotFound(f"no exec session with ID {exec_id} found in container {c.name}: no such exec session")


def stream(sess: ExecSession, sock: socket.socket, *, in_fd: int | None, out_fd: int, err_fd: int,
           detach_keys: bytes = b"", tty: bool = False) -> bool:
    """Copy stdin to the session and its output to *out_fd*/*err_fd* until it ends.
    Returns False when the user detached with *detach_keys*."""
    return conmon_mod.relay(sock, in_fd=in_fd, out_fd=out_fd, err_fd=err_fd, detach_keys=detach_keys, tty=tty)
