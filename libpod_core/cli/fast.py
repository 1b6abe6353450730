"""The ``kpod`` console script: the most frequent commands without importing click.

Importing click and declaring a command's hundred flags costs ~25 ms, a sixth of a whole
``kpod run --rm``, a third of a ``kpod create``. For ``create``, ``run``, ``pod create`` and
``pod start`` this module parses the command line itself, from the flag table generated out
of the click commands (:mod:`libpod_core.cli._fastspec`, by :mod:`libpod_core.cli.fastspec`),
and calls the same click-free body the click command calls (:mod:`libpod_core.cli.bodies`).

It only takes command lines it can read exactly as click would: every option known and
plain (no callbacks, environment variables or optional values), every value converting
cleanly, the right number of arguments, no ``--help``. Anything else, including every
mistake, goes to click (:func:`libpod_core.cli.main.run`), so errors, help and usage
messages are click's. tests/unit/test_fastpath.py checks both parsers against each other.
"""

from __future__ import annotations

import sys
from typing import Any

_NO = object()


def _table(spec: dict[str, Any]) -> tuple[dict[str, dict], list[dict]]:
    opts: dict[str, dict] = {}
    args: list[dict] = []
    for p in spec["params"]:
        if p["kind"] == "argument":
            args.append(p)
            continue
        for o in p.get("opts", ()):
            opts[o] = p
        for o in p.get("secondary", ()):
            opts[o] = dict(p, value=p.get("secondary_value"))
    return opts, args


def _convert(p: dict, value: str) -> Any:
    kind = p["type"]
    if kind == "int":
        try:
            return int(value)
        except ValueError:
            return _NO
    if kind == "choice":
        return value if value in p["choices"] else _NO
    return value


def _scan(spec: dict[str, Any], argv: list[str]) -> tuple[dict[str, Any], list[str]] | None:
    """(option values, positionals) as click's parser reads *argv*; None when click must."""
    opts, _ = _table(spec)
    values: dict[str, Any] = {}
    positionals: list[str] = []
    i, n = 0, len(argv)
    while i < n:
        a = argv[i]
        i += 1
        if a == "--":
            positionals += argv[i:]
            break
        if a[:1] != "-" or len(a) == 1:
            positionals.append(a)
            if not spec["interspersed"]:
                positionals += argv[i:]  # the rest is the command's, options or not
                break
            continue
        if a[:2] == "--":
            name, eq, explicit = a.partition("=")
            p = opts.get(name)
            if p is None or p["kind"] == "unsupported":
                return None
            if p["kind"] == "flag":
                if eq:
                    return None  # click: "option does not take a value"
                values[p["name"]] = p["value"]
                continue
            if not eq:
                if i >= n:
                    return None
                explicit = argv[i]
                i += 1
            if not _store(values, p, explicit):
                return None
            continue
        j = 1
        while j < len(a):  # a cluster of short options: -it, -dit, -eK=V, -e K=V
            p = opts.get("-" + a[j])
            if p is None or p["kind"] == "unsupported":
                return None
            j += 1
            if p["kind"] == "flag":
                values[p["name"]] = p["value"]
                continue
            if j < len(a):
                value = a[j:]
            elif i < n:
                value = argv[i]
                i += 1
            else:
                return None
            if not _store(values, p, value):
                return None
            break
    return values, positionals


def parse(spec: dict[str, Any], argv: list[str]) -> dict[str, Any] | None:
    """The parameters click would pass the command for *argv* (what follows the command's
    name), or None when click must read this command line."""
    scanned = _scan(spec, argv)
    if scanned is None:
        return None
    values, positionals = scanned
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["defaults"].items()}
    params.update(values)
    for p in spec["params"]:
        if p["kind"] != "argument":
            continue
        if p["nargs"] == -1:
            params[p["name"]] = tuple(positionals)
            positionals = []
        elif positionals:
            params[p["name"]] = positionals.pop(0)
        else:
            return None  # a missing argument: click's message
    return params if not positionals else None


def _store(values: dict[str, Any], p: dict, raw: str) -> bool:
    value = _convert(p, raw)
    if value is _NO:
        return False
    if p["multiple"]:
        values[p["name"]] = values.get(p["name"], ()) + (value,)
    else:
        values[p["name"]] = value
    return True


def split(argv: list[str]) -> tuple[dict[str, Any], str, dict[str, Any]] | None:
    """(global params, command path, command params) for a command line the fast path
    takes; None for everything else."""
    from ._fastspec import SPEC

    group = SPEC["group"]
    scanned = _scan(group, argv)  # the global flags end at the first word: the command
    if scanned is None or not scanned[1] or "--" in argv[: len(argv) - len(scanned[1])]:
        return None
    values, rest = scanned
    if values.get("show_version"):
        return None
    words = 2 if rest[0] == "pod" else 1
    path = " ".join(rest[:words])
    cmd = SPEC["commands"].get(path)
    if cmd is None:
        return None
    params = parse(cmd, rest[words:])
    if params is None:
        return None
    gparams = {k: tuple(v) if isinstance(v, list) else v for k, v in group["defaults"].items()}
    gparams.update(values)
    return gparams, path, params


def run(argv: list[str]) -> int | None:
    """Run the command if the fast path takes it: its exit code, else None."""
    parsed = split(argv)
    if parsed is None:
        return None
    gparams, path, params = parsed
    from . import bodies
    from .base import CliState, report, setup_logging, wants_debug

    debug = wants_debug(argv)
    try:
        state = CliState(gparams)
        if gparams.get("log_level"):
            setup_logging(gparams["log_level"])
        from ._fastspec import SPEC

        getattr(bodies, SPEC["commands"][path]["body"])(state, **params)
        return 0
    except Exception as e:
        return report(e, debug)
    except KeyboardInterrupt as e:
        return report(e, debug)


#: the cyclic collector's first threshold while kpod runs (Python's default is 700):
#: importing the engine allocates enough to run it a dozen times for nothing (~3 ms of a
#: create); long commands (pull, logs -f) still collect every 50,000 allocations
GC_THRESHOLD = 50_000


def main() -> None:
    """Console-script entry point."""
    import gc

    gc.set_threshold(GC_THRESHOLD, 20, 20)
    argv = sys.argv[1:]
    code = run(argv)
    if code is None:
        from .main import run as click_run

        code = click_run(argv)
    leave(code)


def leave(code: int) -> None:
    """Exit with *code*, skipping the interpreter's finalisation when nothing needs it.

    Freeing every module and object one by one, and SQLite's checkpoint when its last
    connection closes, cost ~11 ms of a ~65 ms ``kpod create``. What a normal exit does
    that matters is done here: standard streams are flushed and atexit handlers run (logging's
    flush among them). While a non-daemon thread still runs, the normal exit waits for it as
    usual. The state database is left as after a crash, which SQLite's WAL mode is made for
    (committed transactions are in the WAL; the next command reads them, and checkpoints
    happen at commits)."""
    import atexit
    import os

    threading = sys.modules.get("threading")
    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)  # CPython's; else exit normally
    if run_exitfuncs is None or (threading is not None and any(
            t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread())):
        sys.exit(code)
    run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(code if isinstance(code, int) else 0)
