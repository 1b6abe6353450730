"""kpod's loggers: the standard library's, imported only when a record is let through.

Importing :mod:`logging` (with traceback, threading, string and weakref behind it) costs a
short command like ``kpod create`` a few milliseconds, for debug and info records that
the CLI's default level (warn) drops anyway. The core and its plugins therefore take their
loggers from here: ``log = getLogger(__name__)``, then ``log.debug(...)`` and so on as usual.

Until the CLI sets a level with :func:`setup`, every record goes to :mod:`logging` as is, so
a program using the library API configures logging the usual way and sees everything. Once
:func:`setup` ran (``kpod --log-level``, ``log_level`` in the configuration), records below
that level are dropped here without importing logging; the first record at or above it
configures the root logger (``time=... level=... msg=...`` on stderr) and goes through.
"""

from __future__ import annotations

import sys
from typing import Any

LEVELS = {"debug": 10, "info": 20, "warn": 30, "warning": 30, "error": 40, "fatal": 50, "panic": 50}
FORMAT = "time=%(asctime)s level=%(levelname)s msg=%(message)s"

_gate = 0  # records below this level are dropped without logging (0: the library default)
_pending: int | None = None  # the level the root logger gets when logging is first needed


def setup(level: str) -> None:
    """The CLI's level (debug, info, warn, error, fatal, panic; anything else: critical)."""
    global _gate, _pending
    _gate = LEVELS.get(level, 50)
    _pending = _gate
    if "logging" in sys.modules:  # already imported (a plugin, the caller): configure now
        _configure()


def _configure():
    global _pending
    import logging

    if _pending is not None:
        logging.basicConfig(level=_pending, format=FORMAT)
        logging.getLogger().setLevel(_pending)
        _pending = None
    return logging


class Logger:
    """The subset of :class:`logging.Logger` kpod uses, in front of the real one."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def isEnabledFor(self, level: int) -> bool:
        return level >= _gate and _configure().getLogger(self.name).isEnabledFor(level)

    def _emit(self, level: int, msg: Any, args: tuple, kw: dict) -> None:
        # stacklevel: the record names the caller of debug()/log(), not this module
        kw["stacklevel"] = kw.get("stacklevel", 1) + 2
        _configure().getLogger(self.name).log(level, msg, *args, **kw)

    def log(self, level: int, msg: Any, *args: Any, **kw: Any) -> None:
        if level >= _gate:
            self._emit(level, msg, args, kw)

    def debug(self, msg: Any, *args: Any, **kw: Any) -> None:
        if _gate <= 10:
            self._emit(10, msg, args, kw)

    def info(self, msg: Any, *args: Any, **kw: Any) -> None:
        if _gate <= 20:
            self._emit(20, msg, args, kw)

    def warning(self, msg: Any, *args: Any, **kw: Any) -> None:
        if _gate <= 30:
            self._emit(30, msg, args, kw)

    def error(self, msg: Any, *args: Any, **kw: Any) -> None:
        if _gate <= 40:
            self._emit(40, msg, args, kw)

    def exception(self, msg: Any, *args: Any, **kw: Any) -> None:
        if _gate <= 40:
            kw.setdefault("exc_info", True)
            self._emit(40, msg, args, kw)


def getLogger(name: str) -> Logger:  # noqa: N802 - logging's name, on purpose
    return Logger(name)
