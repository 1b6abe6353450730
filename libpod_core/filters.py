"""``--filter`` and time parsing the list and prune commands share.

* :func:`parse_duration` and :func:`parse_time`: Go durations (``1h30m``) and podman's
  ``--since``/``--until``/``until=`` times (RFC 3339, a date, a Unix time or a duration ago).
* :func:`group_filters`: ``KEY=VALUE`` arguments grouped by key, unknown keys refused.
* :class:`PruneFilter`: podman's prune filters (``label=``, ``label!=``, ``until=``) as one
  predicate over (labels, creation time); every prune (containers, pods, images, networks,
  volumes) and ``system prune`` use it.
"""

from __future__ import annotations

import re
import time
from typing import Iterable, Mapping

from .errors import InvalidArgument, KpodError
from .lazyre import lazy

_DURATION_RE = lazy(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")

#: the keys every prune understands (podman's)
PRUNE_KEYS = ("label", "label!", "until")


def parse_duration(text: str) -> float:
    """Go durations: ``1h30m``, ``10s``, ``250ms`` -> seconds."""
    mult = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    text = text.strip()
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * mult[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise InvalidArgument(f"invalid duration {text!r}: expected something like 10s, 5m or 1h30m")
    return total


def parse_time(text: str, now: float | None = None) -> float:
    """``--since``/``--until``: an RFC 3339 time, a date, a Unix timestamp or a duration
    before now (``10m``)."""
    from datetime import datetime

    text = text.strip()
    now = now or time.time()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    try:
        return now - parse_duration(text)
    except InvalidArgument:
        pass
    t = text.replace("Z", "+00:00")
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)$", t)
    frac = 0.0
    if m:
        t = m.group(1) + m.group(3)
        frac = float("0." + m.group(2))
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            dt = datetime.strptime(t, fmt)
        except ValueError:
            continue
        if dt.tzinfo is None:
            dt = dt.astimezone()
        return dt.timestamp() + frac
    raise InvalidArgument(f"invalid time {text!r}: expected RFC 3339 (2006-01-02T15:04:05Z), a Unix time or a duration")


def group_filters(items: Iterable[str], valid: tuple[str, ...]) -> dict[str, list[str]]:
    """``KEY=VALUE`` arguments -> {key: [values]}; a key not in *valid* is an error that
    names the valid ones."""
    out: dict[str, list[str]] = {}
    for f in items:
        k, sep, v = f.partition("=")
        k = k.strip().lower()
        if not sep or k not in valid:
            raise InvalidArgument(f"invalid filter {f!r}: expected one of {', '.join(x + '=' for x in valid)}")
        out.setdefault(k, []).append(v)
    return out


def labels_match(labels: Mapping[str, str], wanted: Iterable[str]) -> bool:
    """Every ``KEY[=VALUE]`` in *wanted* is among *labels* (podman's label filter)."""
    return all(k in labels and (not sep or labels[k] == v) for k, sep, v in (w.partition("=") for w in wanted))


class PruneFilter:
    """podman's prune filters: ``label=KEY[=VALUE]`` (all must match), ``label!=KEY[=VALUE]``
    (none may match) and ``until=TIME`` (created before it). Bad keys or times are an
    :class:`~libpod_core.errors.InvalidArgument` at construction, before anything is removed."""

    def __init__(self, items: Iterable[str] = (), valid: tuple[str, ...] = PRUNE_KEYS) -> None:
        self.items = tuple(items)
        grouped = group_filters(self.items, valid)
        self.labels = grouped.get("label", [])
        self.not_labels = grouped.get("label!", [])
        self.until: float | None = None
        for v in grouped.get("until", []):
            try:
                t = parse_time(v)
            except KpodError as exc:
                raise InvalidArgument(f"invalid filter 'until={v}': {exc.message}") from None
            self.until = t if self.until is None else min(self.until, t)

    def __bool__(self) -> bool:
        return bool(self.items)

    def match(self, labels: Mapping[str, str] | None, created: float | None) -> bool:
        labels = labels or {}
        if self.labels and not labels_match(labels, self.labels):
            return False
        if any(labels_match(labels, [v]) for v in self.not_labels):
            return False
        if self.until is not None and (created is None or created >= self.until):
            return False
        return True
