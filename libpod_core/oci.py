"""A base class for runtime drivers that drive an OCI runtime command line (runc, crun...).

Runtime plugins subclass :class:`OCIRuntimeDriver`, set :attr:`name` (the key in the
``runtimes`` setting) and get every ``runtime_*`` hook implemented through the standard OCI
verbs. The runtime keeps its state under ``<runroot>/runtime/<name>`` (``--root``) so that two
kpod stores never see each other's containers.
"""

from __future__ import annotations

import json
import os
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import subprocess

import pluggy

from .errors import ConfigError, NotFound, RuntimeFailure

hookimpl = pluggy.HookimplMarker("kpod")


def signal_number(sig: int | str) -> int:
    """``9``, ``"9"``, ``"KILL"``, ``"SIGKILL"``, ``"sigkill"`` -> 9; else ValueError."""
    if isinstance(sig, int):
        return sig
    s = str(sig).strip().upper()
    if s.isdigit():
        return int(s)
    if not s.startswith("SIG"):
        s = "SIG" + s
    import signal as _signal  # (not at import: its enums cost half a millisecond of every command)

    if s.startswith("SIGRTMIN+") or s.startswith("SIGRTMAX-"):
        base, off = s[:8], int(s[9:])
        return (_signal.SIGRTMIN + off) if base == "SIGRTMIN" else (_signal.SIGRTMAX - off)
    try:
        return int(getattr(_signal.Signals, s))
    except AttributeError:
        raise ValueError(f"invalid signal: {sig}") from None


class OCIRuntimeDriver:
    """Implements the runtime hooks by running ``<binary> --root DIR <verb> ...``."""

    #: driver name; also the key in the ``runtimes`` setting
    name = "oci"
    #: Debian package that ships the binary (for error messages)
    package = ""

    def __init__(self, config) -> None:
        self.config = config
        candidates = config.runtimes.get(self.name)
        if not candidates:
            raise ConfigError(
                f"runtime {self.name!r}: no paths configured in 'runtimes' ({config.source('runtimes')})"
            )
        try:
            self.path = config.find_executable(candidates, f"OCI runtime {self.name}", "runtimes")
        except ConfigError as exc:
            hint = f"; install the {self.package} package" if self.package else ""
            raise ConfigError(exc.message + hint) from None
        self.root = os.path.join(config.runroot, "runtime", self.name)
        self._version: str | None = None

    # -- helpers ------------------------------------------------------------------------
    def executable(self) -> str:
        """The program conmon and the hooks run (subclasses may return a wrapper)."""
        return self.path

    def global_args(self) -> list[str]:
        return ["--root", self.root]

    def extra_env(self) -> dict[str, str]:
        """Environment the runtime binary (or its wrapper) needs; see runtime_env."""
        return {}

    def _env(self) -> dict[str, str] | None:
        extra = self.extra_env()
        return {**os.environ, **extra} if extra else None

    def run(self, *args: str, check: bool = True, timeout: float | None = 120, **kw: Any) -> subprocess.CompletedProcess:
        import subprocess  # here, not at import: creating a container runs no runtime command

        os.makedirs(self.root, mode=0o700, exist_ok=True)
        cmd = [self.executable(), *self.global_args(), *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self._env(), **kw)
        except subprocess.TimeoutExpired:
            raise RuntimeFailure(f"{self.name} {args[0]}: timed out after {timeout}s") from None
        except OSError as exc:
            raise RuntimeFailure(f"{self.name}: cannot run {cmd[0]}: {exc.strerror}") from None
        if check and proc.returncode != 0:
            raise RuntimeFailure(f"{self.name} {args[0]}: {self.clean_error(proc.stderr)}")
        return proc

    @staticmethod
    def clean_error(stderr: str) -> str:
        """The runtime's last meaningful error line, without logrus/json decoration."""
        lines = [l.strip() for l in (stderr or "").splitlines() if l.strip()]
        if not lines:
            return "failed with no message"
        line = lines[-1]
        try:
            obj = json.loads(line)
            if isinstance(obj, dict) and "msg" in obj:
                return str(obj["msg"])
        except ValueError:
            pass
        m = re.search(r'msg="((?:[^"\\]|\\.)*)"', line)
        if m:
            return m.group(1).replace('\\"', '"')
        return line

    # -- hooks ----------------------------------------------------------------------------
    @hookimpl
    def runtime_command(self):
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        return self.executable(), self.global_args()

    @hookimpl
    def runtime_env(self):
        return self.extra_env()

    @hookimpl
    def runtime_version(self):
        if self._version is None:
            import subprocess

            try:
                out = subprocess.run([self.path, "--version"], capture_output=True, text=True, timeout=20).stdout
            except (OSError, subprocess.SubprocessError) as exc:
                raise RuntimeFailure(f"{self.name} --version: {exc}") from None
            lines = out.strip().splitlines()
            self._version = lines[0].strip() if lines else "unknown"
        return self._version

    @hookimpl
    def runtime_info(self):
        return {
            "name": self.name,
            "path": self.path,
            "command": self.executable(),
            "version": self.runtime_version(),
            "package": self.package,
            "root": self.root,
        }

    @hookimpl
    def runtime_features(self):
        proc = self.run("features", check=False, timeout=20)
        if proc.returncode != 0:
            return {}
        try:
            return json.loads(proc.stdout)
        except ValueError:
            return {}

    def _run_detached(self, verb: str, args: list[str], container_id: str, timeout: float = 120) -> int:
        """Run a verb whose container process inherits our stdio.

        The container keeps the inherited descriptors open, so the runtime's stderr goes to
        a temporary file rather than a pipe (a pipe would never reach EOF).
        """
        import subprocess
        import tempfile

        os.makedirs(self.root, mode=0o700, exist_ok=True)
        cmd = [self.executable(), *self.global_args(), *args, container_id]
        with tempfile.TemporaryFile(mode="w+") as err:
            try:
                proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                      timeout=timeout, env=self._env())
            except subprocess.TimeoutExpired:
                raise RuntimeFailure(f"{self.name} {verb}: timed out after {timeout}s") from None
            if proc.returncode != 0:
                err.seek(0)
                raise RuntimeFailure(f"{self.name} {verb}: {self.clean_error(err.read())}")
        return proc.returncode

    @hookimpl
    def runtime_create(self, container_id, bundle, pid_file, console_socket):
        args = ["create", "--bundle", bundle, "--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        self._run_detached("create", args, container_id)
        return True

    @hookimpl
    def runtime_start(self, container_id):
        self.run("start", container_id)
        return True

    @hookimpl
    def runtime_state(self, container_id):
        proc = self.run("state", container_id, check=False, timeout=30)
        if proc.returncode != 0:
            err = self.clean_error(proc.stderr).lower()
            if "does not exist" in err or "not exist" in err or "no such" in err or "not found" in err:
                return None
            raise RuntimeFailure(f"{self.name} state: {self.clean_error(proc.stderr)}")
        try:
            return json.loads(proc.stdout)
        except ValueError:
            raise RuntimeFailure(f"{self.name} state: invalid JSON output") from None

    @hookimpl
    def runtime_kill(self, container_id, signal, all_processes):
        args = ["kill"]
        if all_processes:
            args.append("--all")
        self.run(*args, container_id, str(signal_number(signal)))
        return True

    @hookimpl
    def runtime_delete(self, container_id, force):
        args = ["delete"] + (["--force"] if force else [])
        proc = self.run(*args, container_id, check=False)
        if proc.returncode != 0:
            err = self.clean_error(proc.stderr)
            low = err.lower()
            if "does not exist" in low or "not exist" in low or "no such" in low or "not found" in low:
                return True
            raise RuntimeFailure(f"{self.name} delete: {err}")
        return True

    @hookimpl
    def runtime_pause(self, container_id):
        self.run("pause", container_id)
        return True

    @hookimpl
    def runtime_resume(self, container_id):
        self.run("resume", container_id)
        return True

    @hookimpl
    def runtime_exec(self, container_id, process_file, detach, pid_file, console_socket):
        args = ["exec", "--process", process_file]
        if pid_file:
            args += ["--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        if detach:
            return self._run_detached("exec", args + ["--detach"], container_id)
        import subprocess

        os.makedirs(self.root, mode=0o700, exist_ok=True)
        cmd = [self.executable(), *self.global_args(), *args, container_id]
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=self._env()).returncode


def require_state(state: dict | None, container_id: str) -> dict:
    if state is None:
        raise NotFound(f"container {container_id} does not exist in the runtime")
    return state
