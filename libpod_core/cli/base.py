"""What every command shares and what must not need click: the global state object, output,
exit codes and the one-line error report.

Both ways into a command use this module: the click CLI (:mod:`libpod_core.cli.main`) and
the fast path (:mod:`libpod_core.cli.fast`), which runs the most frequent commands without
importing click at all. So the code here, and the command bodies the fast path calls
(:mod:`libpod_core.cli.ctrrun`), import no click.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ..errors import EXIT_ENGINE, KpodError

# Global flags -> configuration keys (for source tracking: "flag --root").
FLAG_KEYS = {
    "root": ("graphroot", "--root"),
    "runroot": ("runroot", "--runroot"),
    "runtime": ("runtime", "--runtime"),
    "storage_driver": ("storage_driver", "--storage-driver"),
    "storage_opt": ("storage_opts", "--storage-opt"),
    "conmon": ("conmon_path", "--conmon"),
    "cni_config_dir": ("cni_config_dir", "--cni-config-dir"),
    "hooks_dir": ("hooks_dirs", "--hooks-dir"),
    "log_level": ("log_level", "--log-level"),
    "network_backend": ("network_backend", "--network-backend"),
}


class CommandExit(Exception):
    """End the command with this exit code (no message): a command body's click-free
    ``click.exceptions.Exit``."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def echo(text: str = "") -> None:
    """A line on stdout (flushed, like click.echo)."""
    out = sys.stdout
    out.write(f"{text}\n")
    out.flush()


def one_line(msg: str) -> str:
    """Errors are one line: fold a multi-line message (pluggy's, a runtime's) with '; '."""
    return "; ".join(line.strip() for line in str(msg).splitlines() if line.strip())


def echo_err(msg: str) -> None:
    """``Error: MSG`` on stderr, on one line."""
    err = sys.stderr
    err.write(f"Error: {one_line(msg)}\n")
    err.flush()


class Failures:
    """Per-object errors for commands that act on several containers or pods: each is
    printed as it happens; the command exits with the most relevant code at the end."""

    def __init__(self) -> None:
        self.code = 0

    def add(self, exc: Exception, code: int | None = None) -> None:
        msg = exc.message if isinstance(exc, KpodError) else str(exc)
        echo_err(msg)
        c = code if code is not None else (exc.exit_code if isinstance(exc, KpodError) else EXIT_ENGINE)
        if self.code == 0 or c == EXIT_ENGINE:
            self.code = c

    def exit(self) -> None:
        if self.code:
            raise CommandExit(self.code)


def lookup_each(mgr, names) -> list[tuple[str, Any]]:
    """(raw input, the object, or the error looking it up raised) for each name, so that a
    command acting on several reports each missing one and goes on with the rest."""
    out = []
    for n in names:
        try:
            out.append((n, mgr.get(n)))
        except KpodError as exc:
            out.append((n, exc))
    return out


def setup_logging(level: str) -> None:
    """The CLI's log level (libpod_core.log: logging itself is imported only when a record
    at or above it comes)."""
    from ..log import setup

    setup(level)


class CliState:
    """Global flags, and the Runtime built from them on first use."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self._runtime = None
        self.debug = params.get("log_level") == "debug"

    def overrides(self) -> tuple[dict[str, Any], dict[str, str]]:
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for param, (key, flag) in FLAG_KEYS.items():
            v = self.params.get(param)
            if v is None or v == ():
                continue
            if key == "conmon_path":
                v = [v]
            elif isinstance(v, tuple):
                v = list(v)
            values[key] = v
            sources[key] = f"flag {flag}"
        return values, sources

    @property
    def runtime(self):
        if self._runtime is None:
            from ..runtime import Runtime

            values, sources = self.overrides()
            self._runtime = Runtime(config_file=self.params.get("config"), override_source=sources, **values)
            level = self._runtime.config.log_level
            setup_logging(level)
            self.debug = self.debug or level == "debug"
        return self._runtime


def wants_debug(argv: list[str]) -> bool:
    for i, a in enumerate(argv):
        if a == "--log-level=debug" or (a == "--log-level" and i + 1 < len(argv) and argv[i + 1] == "debug"):
            return True
    return os.environ.get("KPOD_LOG_LEVEL") == "debug"


def report(exc: BaseException, debug: bool) -> int:
    """The exit code for an exception that ended a command, after printing its one
    ``Error:`` line (none for CommandExit, nothing at all for a closed stdout)."""
    if isinstance(exc, CommandExit):
        return exc.code
    if isinstance(exc, KpodError):
        if debug:
            import traceback

            traceback.print_exception(exc)
        echo_err(exc.message)
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        echo_err("interrupted")
        return 130
    if isinstance(exc, BrokenPipeError):
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    if isinstance(exc, Exception):  # an engine bug or an unexpected system error
        if debug:
            import traceback

            traceback.print_exception(exc)
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, OSError) and exc.filename:
            detail = f"{exc.strerror or detail}: {exc.filename}"
        echo_err(detail)
        return EXIT_ENGINE
    raise exc
