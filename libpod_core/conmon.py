"""Driving conmon, the per-container monitor (protocol in docs/notes-conmon.md).

kpod spawns one conmon per container. conmon double-forks (the process kpod starts exits as
soon as the monitor is running), runs ``<runtime> create`` itself, reports the container's
init PID (or the runtime's error) on the *sync pipe*, then holds the container's stdio, writes
the k8s-file log, serves the attach socket, records the exit code in ``<exit dir>/<ID>`` and
runs kpod's *exit command* (``kpod ... container cleanup ID``) when the container exits. No
Python process stays behind.

Everything here is mechanism; the container logic (state, locks, cleanup) is in
:mod:`libpod_core.containers`.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import socket

from .errors import EXIT_CANNOT_INVOKE, EXIT_ENGINE, EXIT_NOT_FOUND, RuntimeFailure
from .plain import FRESH

#: how long to wait for conmon's first line on the sync pipe
SYNC_TIMEOUT = 60.0

# Attach socket packet prefixes (conmon -> client).
STREAM_STDOUT = 2
STREAM_STDERR = 3


class ConmonOptions:
    """Everything conmon needs for one container (see docs/notes-conmon.md).

    (A plain class, not a dataclass: ``run`` builds it in every process, and the dataclass
    machinery costs start-up time.)"""

    def __init__(
        self,
        conmon_path: str,
        container_id: str,
        name: str,
        runtime_path: str,
        runtime_args: Sequence[str],
        bundle: str,                      #: dir with config.json; conmon puts attach, ctl, winsz here
        pid_file: str,                    #: the runtime's --pid-file (container init PID)
        conmon_pid_file: str,             #: the monitor's PID
        log_path: str,                    #: k8s-file log
        exit_dir: str,                    #: exit code lands in EXIT_DIR/<container ID>
        persist_dir: str,                 #: also gets exit and oom files
        socket_dir: str,                  #: conmon's short-path symlinks to the bundles (attach socket: BUNDLE/attach)
        exit_command: Sequence[str] = (),  #: argv; [0] must be absolute (execv)
        tty: bool = False,
        stdin: bool = False,
        log_level: str = "warning",
        log_size_max: int | None = None,
        env: dict[str, str] = FRESH,
        #: descriptors conmon inherits and keeps open until the container exits (the published
        #: host ports' sockets): conmon 2.1 notes every descriptor open at its start and closes
        #: them only before writing the exit file; its exit command and runc/crun's container
        #: process do not get them (both close descriptors above 2 before exec)
        extra_fds: Sequence[int] = (),
    ) -> None:
        self.conmon_path = conmon_path
        self.container_id = container_id
        self.name = name
        self.runtime_path = runtime_path
        self.runtime_args = runtime_args
        self.bundle = bundle
        self.pid_file = pid_file
        self.conmon_pid_file = conmon_pid_file
        self.log_path = log_path
        self.exit_dir = exit_dir
        self.persist_dir = persist_dir
        self.socket_dir = socket_dir
        self.exit_command = exit_command
        self.tty = tty
        self.stdin = stdin
        self.log_level = log_level
        self.log_size_max = log_size_max
        self.env = {} if env is FRESH else env
        self.extra_fds = extra_fds

    def argv(self) -> list[str]:
        cid = self.container_id
        args = [
            self.conmon_path, "--api-version", "1",
            "-c", cid, "-u", cid, "-n", self.name,
            "-r", self.runtime_path, "-b", self.bundle,
            "-p", self.pid_file, "-P", self.conmon_pid_file,
            "-l", f"k8s-file:{self.log_path}",
            "--exit-dir", self.exit_dir, "--persist-dir", self.persist_dir,
            "--socket-dir-path", self.socket_dir,
            "--log-level", self.log_level,
        ]
        for a in self.runtime_args:
            args += ["--runtime-arg", a]
        if self.exit_command:
            args += ["--exit-command", self.exit_command[0]]
            for a in self.exit_command[1:]:
                args += ["--exit-command-arg", a]
        if self.tty:
            args.append("-t")
        if self.stdin:
            args.append("-i")
        if self.log_size_max:
            args += ["--log-size-max", str(self.log_size_max)]
        return args


def classify_runtime_error(message: str) -> int:
    """Map the runtime's create error (from the sync pipe) to podman's exit codes:
    127 command not found, 126 cannot invoke, else 125."""
    low = message.lower()
    if "exec" not in low:  # (also "executable"): anything else, a missing namespace path or a
        return EXIT_ENGINE  # cgroup refusing, is the engine's failure, not the command's
    if "permission denied" in low or "not permitted" in low or "exec format error" in low or "is a directory" in low:
        return EXIT_CANNOT_INVOKE
    if "not found" in low or "no such file" in low:
        return EXIT_NOT_FOUND
    return EXIT_ENGINE


def _clean_message(message: str) -> str:
    """The runtime's message without logrus decoration (``time=... level=error msg="..."``)."""
    import re

    lines = [l.strip() for l in message.splitlines() if l.strip()]
    out = []
    for line in lines:
        m = re.search(r'msg="((?:[^"\\]|\\.)*)"', line)
        out.append(m.group(1).replace('\\"', '"') if m else line)
    return "; ".join(out) if out else "container create failed"


def _read_line(fd: int, timeout: float) -> bytes:
    """Read one line from *fd* without reading past it (the monitor keeps the pipe open)."""
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeFailure("conmon did not report the container's PID in time")
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            continue
        chunk = os.read(fd, 1)
        if not chunk:
            return bytes(buf)
        buf += chunk
        if chunk == b"\n":
            return bytes(buf)


def _stderr_file(directory: str):
    """An unnamed file in *directory* for conmon's stderr (O_TMPFILE: nothing to clean up;
    the tempfile module, which does the same, costs 3 ms of imports in every ``run``)."""
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except (OSError, AttributeError):  # a filesystem without O_TMPFILE
        import tempfile

        return tempfile.TemporaryFile(dir=directory)
    return open(fd, "w+b")


def spawn(opts: ConmonOptions) -> tuple[int, int]:
    """Start conmon for a created (not started) container.

    Returns ``(container init PID, conmon monitor PID)``. A runtime failure raises
    :class:`RuntimeFailure` with the runtime's message and the exit code 125/126/127.
    """
    sync_r, sync_w = os.pipe()
    start_r, start_w = os.pipe()
    env = dict(os.environ)
    env.update(opts.env)
    env["_OCI_SYNCPIPE"] = str(sync_w)
    env["_OCI_STARTPIPE"] = str(start_r)
    try:
        with _stderr_file(opts.bundle) as err:
            try:
                # conmon writes some files (an "oom" marker) to its working directory: the bundle
                proc = subprocess.Popen(opts.argv(), pass_fds=(sync_w, start_r, *opts.extra_fds), env=env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, close_fds=True,
                                        start_new_session=True, cwd=opts.bundle)
            except OSError as exc:
                raise RuntimeFailure(f"cannot run conmon {opts.conmon_path}: {exc.strerror}") from None
            finally:
                os.close(sync_w)
                os.close(start_r)
            try:
                os.write(start_w, b"0")
            except OSError:
                pass
            os.close(start_w)
            start_w = -1
            try:
                rc = proc.wait(timeout=SYNC_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise RuntimeFailure("conmon did not start in time") from None
            line = b""
            if rc == 0:
                line = _read_line(sync_r, SYNC_TIMEOUT)
            if rc != 0 or not line:
                err.seek(0)
                text = err.read().decode(errors="replace").strip()
                raise RuntimeFailure(f"conmon failed (exit status {rc}): {_clean_message(text) if text else 'no message'}")
    finally:
        if start_w != -1:
            os.close(start_w)
        os.close(sync_r)
    try:
        reply = json.loads(line)
    except ValueError:
        raise RuntimeFailure(f"conmon: unexpected reply on the sync pipe: {line[:200]!r}") from None
    pid = reply.get("data", -1)
    if not isinstance(pid, int) or pid < 0:
        message = _clean_message(str(reply.get("message") or "container create failed"))
        code = classify_runtime_error(message)
        suffix = {EXIT_NOT_FOUND: ": OCI runtime attempted to invoke a command that was not found",
                  EXIT_CANNOT_INVOKE: ": OCI runtime permission denied error"}.get(code, "")
        raise RuntimeFailure(message + suffix, exit_code=code)
    conmon_pid = read_pid(opts.conmon_pid_file) or 0
    return pid, conmon_pid


def read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def read_exit_file(path: str) -> int | None:
    """The exit code conmon wrote at *path*, or None if not (yet) written."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def process_alive(pid: int | None, container_id: str | None = None, name: str = "conmon") -> bool:
    """True if *pid* is a live process (not a zombie) whose command line is *name* for
    this container (a recycled PID does not count)."""
    if not pid or pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        state = stat[stat.rindex(b")") + 2: stat.rindex(b")") + 3]
        if state in (b"Z", b"X"):
            return False
        if container_id is None:
            return True
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except (OSError, ValueError):
        return False
    if not argv or name.encode() not in os.path.basename(argv[0]):
        return False
    return container_id.encode() in argv


def _short_path(path: str) -> tuple[str, int | None]:
    """An AF_UNIX-usable path for *path*: through /proc/self/fd when it is too long."""
    if len(path.encode()) < 100:
        return path, None
    fd = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
    return f"/proc/self/fd/{fd}/{os.path.basename(path)}", fd


def attach_link(socket_dir: str, cuuid: str) -> str:
    """The symlink conmon makes in --socket-dir-path for -u CUUID (to the bundle, where the
    attach socket is): SOCKET_DIR/CUUID, one byte shorter when that is exactly 107 bytes long
    (conmon's own rule, so that the link and SOCKET_DIR/CUUID/attach cut to sun_path differ)."""
    link = os.path.join(socket_dir, cuuid)
    return link[:-1] if len(link.encode()) == 107 else link


def connect_attach(path: str, timeout: float = 10.0) -> socket.socket:
    """Connect to a conmon attach socket (SOCK_SEQPACKET), whatever the path's length.

    conmon makes the socket's directory as well as the socket: until both are there, retry."""
    import socket  # (here, not at import: 2 ms that create and run -d do not need)

    deadline = time.monotonic() + timeout
    while True:
        fd = None
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            short, fd = _short_path(path)
            s.connect(short)
            return s
        except (FileNotFoundError, ConnectionRefusedError):
            s.close()
            if time.monotonic() > deadline:
                raise RuntimeFailure(f"cannot attach: conmon's attach socket {path} is not there") from None
            time.sleep(0.01)
        except OSError as exc:
            s.close()
            raise RuntimeFailure(f"cannot attach to {path}: {exc.strerror}") from None
        finally:
            if fd is not None:
                os.close(fd)


def resize(bundle: str, rows: int, cols: int) -> None:
    """Resize the container's terminal through conmon's control FIFO."""
    write_ctl(bundle, f"1 {rows} {cols}\n")


def reopen_logs(bundle: str) -> None:
    write_ctl(bundle, "2 0 0\n")


def write_ctl(bundle: str, message: str) -> None:
    path = os.path.join(bundle, "ctl")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.write(fd, message.encode())
    except OSError:
        pass
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """Write everything (a closed reader ends the copy quietly)."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BrokenPipeError:
            return
        view = view[n:]


def relay(sock, *, in_fd: int | None, out_fd: int, err_fd: int, detach_keys: bytes = b"",
          tty: bool = False) -> bool:
    """Copy *in_fd* to an attach socket and the socket's stdout/stderr packets to *out_fd*
    and *err_fd* until the stream ends (True) or the user types *detach_keys* on a
    terminal (False). Used by ``attach``/``start -a``/``run`` and by ``exec``."""
    import socket  # (loaded already: *sock* is one)

    held = b""
    stdin_open = in_fd is not None
    while True:
        rlist = [sock] + ([in_fd] if stdin_open else [])
        try:
            ready, _, _ = select.select(rlist, [], [])
        except InterruptedError:
            continue
        if sock in ready:
            try:
                pkt = sock.recv(65536)
            except ConnectionResetError:
                pkt = b""
            if not pkt:
                return True
            write_all(err_fd if pkt[0] == STREAM_STDERR else out_fd, pkt[1:])
        if stdin_open and in_fd in ready:
            try:
                data = os.read(in_fd, 4096)
            except OSError:
                data = b""
            if not data:
                stdin_open = False
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                continue
            if detach_keys and tty:
                buf = held + data
                idx = buf.find(detach_keys)
                if idx >= 0:
                    if idx:
                        sock.sendall(buf[:idx])
                    return False
                keep = 0
                for k in range(min(len(detach_keys) - 1, len(buf)), 0, -1):
                    if buf.endswith(detach_keys[:k]):
                        keep = k
                        break
                held = buf[len(buf) - keep:] if keep else b""
                data = buf[: len(buf) - keep]
            if data:
                try:
                    sock.sendall(data)
                except OSError:
                    stdin_open = False
