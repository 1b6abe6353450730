"""A cache of kpod's entry points, so that a command does not scan every installed distribution.

Finding one entry point through ``importlib.metadata`` (which stevedore uses) costs every kpod
command the import of ``importlib.metadata`` and its helpers (email, zipfile, pathlib, csv)
plus a read of every distribution's metadata: together a large part of a short command's
start-up. This module keeps the ``kpod.*`` groups in one small JSON file under
``$XDG_CACHE_HOME/kpod`` (``~/.cache/kpod``), valid for one interpreter and ``sys.path``
and checked against a fingerprint of what could change them: the distributions' metadata
directories on ``sys.path`` and their ``entry_points.txt`` files' times and sizes
(installing, upgrading or removing a distribution changes that list).

The cache only makes lookups faster; it never decides an error. Callers use it for the
common case (exactly one entry point of that name, which imports) and fall back to stevedore
and ``importlib.metadata`` for everything else, so missing, duplicated or broken plugins get
the same messages as without a cache. A cache that cannot be read or written is ignored.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import zlib
from operator import itemgetter
from typing import Any

PREFIX = "kpod."
VERSION = 3


class Entry(tuple):
    """One entry point: ``(name, value, dist, version)``, value being ``"module:attr"``.

    A tuple with named fields, as the ``typing.NamedTuple`` it was, built by hand: every
    command that loads a driver imports this module, and a NamedTuple class costs
    half a millisecond to make (its generated ``__new__`` and its annotations)."""

    __slots__ = ()
    _fields = ("name", "value", "dist", "version")

    def __new__(cls, name: str, value: str, dist: str | None, version: str | None) -> Entry:
        return tuple.__new__(cls, (name, value, dist, version))

    def __getnewargs__(self) -> tuple:
        return tuple(self)

    def __repr__(self) -> str:
        return "{}(name={!r}, value={!r}, dist={!r}, version={!r})".format(self.__class__.__name__, *self)

    name = property(itemgetter(0), doc="the entry point's name")
    value = property(itemgetter(1), doc='what it names, ``"module:attr"``')
    dist = property(itemgetter(2), doc="the distribution that declares it")
    version = property(itemgetter(3), doc="that distribution's version")


_memo: dict[str, list[Entry]] | None = None


def _cache_path() -> str | None:
    base = os.environ.get("XDG_CACHE_HOME") or (
        os.path.join(os.environ["HOME"], ".cache") if os.environ.get("HOME") else None
    )
    if not base:
        return None
    key = zlib.crc32("\0".join([sys.executable, *sys.path]).encode("utf-8", "surrogateescape"))
    return os.path.join(base, "kpod", f"entry-points-{key:08x}.json")


def _fingerprint() -> list[Any]:
    """What, if changed, may change the installed entry points: every distribution's
    metadata directory on sys.path and its entry_points.txt (not the directories' own
    mtimes, which change with any file created there, such as the script's directory)."""
    out: list[Any] = []
    for entry in sys.path:
        if not entry:  # the current directory (python -c / -m): not a place kpod is installed
            continue
        try:
            names = sorted(os.listdir(entry))
        except NotADirectoryError:  # a zip archive
            try:
                out.append([entry, os.stat(entry).st_mtime_ns])
            except OSError:
                pass
            continue
        except OSError:
            continue
        for n in names:
            if n.endswith((".dist-info", ".egg-info")):
                try:
                    ep = os.stat(os.path.join(entry, n, "entry_points.txt"))
                except OSError:
                    out.append([entry, n])
                    continue
                out.append([entry, n, ep.st_mtime_ns, ep.st_size])
    return out


def _scan() -> dict[str, list[Entry]]:
    from importlib import metadata

    groups: dict[str, list[Entry]] = {}
    seen: set[str] = set()
    for dist in metadata.distributions():
        # The first of a distribution found twice on sys.path wins (an editable install's
        # egg-info beside its dist-info), as in importlib.metadata.entry_points().
        key = (dist.metadata["Name"] or "").lower().replace("_", "-").replace(".", "-")
        if key in seen:
            continue
        seen.add(key)
        name = version = None
        for ep in dist.entry_points:
            if not ep.group.startswith(PREFIX):
                continue
            if name is None:
                name, version = dist.metadata["Name"], dist.version
            groups.setdefault(ep.group, []).append(Entry(ep.name, ep.value, name, version))
    return groups


def _read(path: str, fingerprint: list[Any]) -> dict[str, list[Entry]] | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("version") != VERSION or data.get("fingerprint") != fingerprint:
            return None
        return {g: [Entry(*e) for e in ents] for g, ents in data["groups"].items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


#: cache files not rewritten for this long are removed when another one is written
STALE_SECONDS = 30 * 24 * 3600


def _write(path: str, fingerprint: list[Any], groups: dict[str, list[Entry]]) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"version": VERSION, "fingerprint": fingerprint,
                       "groups": {g: [list(e) for e in ents] for g, ents in groups.items()}}, f)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return
    _prune(os.path.dirname(path))


def _prune(directory: str) -> None:
    """Drop cache files not written for a month: those of venvs and sys.paths no longer
    used go away; one still in use is merely rebuilt on its next command (one scan)."""
    import time

    limit = time.time() - STALE_SECONDS
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for n in names:
        if n.startswith("entry-points-") and (n.endswith(".json") or n.endswith(".tmp")):
            p = os.path.join(directory, n)
            try:
                if os.stat(p).st_mtime < limit:
                    os.unlink(p)
            except OSError:
                pass


def groups() -> dict[str, list[Entry]]:
    """Every ``kpod.*`` entry point installed, by group, in discovery order."""
    global _memo
    if _memo is None:
        path = _cache_path()
        fingerprint = _fingerprint() if path else []
        found = _read(path, fingerprint) if path else None
        if found is None:
            found = _scan()
            if path:
                _write(path, fingerprint, found)
        _memo = found
    return _memo


def entries(group: str, name: str | None = None) -> list[Entry]:
    """The entry points of *group* (named *name*, if given)."""
    ents = groups().get(group, [])
    return [e for e in ents if e.name == name] if name is not None else list(ents)


def load(value: str) -> Any:
    """Import what an entry point value (``module:attr.attr``) names."""
    module, _, attrs = value.split("[", 1)[0].partition(":")
    obj = importlib.import_module(module.strip())
    for attr in filter(None, attrs.strip().split(".")):
        obj = getattr(obj, attr)
    return obj


def forget() -> None:
    """Drop the in-process memo (after installing or removing a distribution in-process)."""
    global _memo
    _memo = None
