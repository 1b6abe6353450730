"""Events: podman's ``file`` events backend, read by ``kpod events``.

Every lifecycle event (containers, pods, images, volumes, network connect/disconnect) is one
JSON line appended to ``<runroot>/events/events.log`` -- per boot, like podman, which keeps
its file log under its tmpdir. A record is what ``podman events --format json`` prints
(podman 4's field names and order), plus ``timeNano`` (podman 5's name), the time as
integer nanoseconds, so that readers need not parse the RFC 3339 ``Time``::

    {"ID":"3f0c...","Image":"localhost/busybox:latest","Name":"web","Status":"start",
     "Time":"2026-12-04T16:20:01.123456789Z","timeNano":1796401201123456789,
     "Type":"container","Attributes":{"app":"x"}}

Writing (:func:`record`) is on every container's hot path (create, init, start, died,
remove), so it costs one ``open(O_APPEND)``, one ``write`` of the whole line, one ``fstat``
and one ``close``: no lock, no read, no fsync. Appends of many kpod processes at once do not
interleave (each line is one write on an O_APPEND descriptor); a writer killed mid-write can
leave at most one torn line, which readers skip (and the whole record a later writer glued
to it is still found). When the file has grown over ``events_logfile_max_size`` bytes, the
writer that noticed renames it to ``events.log.1`` under ``events.log.lock`` (replacing the
previous ``.1``) and the next write starts a new file; readers read ``.1``, then the current
file, and a follower notices the rename and goes on in the new file. Recording never fails
a command: any error is logged at debug level and forgotten. ``events_logger: none`` records
nothing.

This module imports only os, json and time (plus kpod's logger and errors, loaded anyway).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Iterable, Iterator

from .errors import InvalidArgument
from .log import getLogger

log = getLogger(__name__)

LOG_DIR = "events"
LOG_NAME = "events.log"
#: podman's event types; ``type=`` filters on these
TYPES = ("container", "image", "network", "pod", "system", "volume")
FILTER_KEYS = ("container", "event", "image", "label", "network", "pod", "status", "type", "volume")

_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC


def log_path(runroot: str) -> str:
    """``<runroot>/events/events.log``."""
    return os.path.join(runroot, LOG_DIR, LOG_NAME)


# ---------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------

def _local(ns: int) -> tuple[time.struct_time, str, str]:
    """(local time, ``.fraction`` without trailing zeros or "", ``+HHMM``) of *ns*."""
    sec, frac = divmod(ns, 1_000_000_000)
    lt = time.localtime(sec)
    off = lt.tm_gmtoff
    sign = "+" if off >= 0 else "-"
    off = abs(off)
    return lt, ("." + ("%09d" % frac).rstrip("0")) if frac else "", "%s%02d%02d" % (sign, off // 3600, off % 3600 // 60)


def rfc3339(ns: int) -> str:
    """Go's RFC3339Nano in local time, as podman writes ``Time``: trailing zeros of the
    fraction dropped, ``Z`` for a zero offset."""
    lt, frac, off = _local(ns)
    zone = "Z" if lt.tm_gmtoff == 0 else f"{off[:3]}:{off[3:]}"
    return "%04d-%02d-%02dT%02d:%02d:%02d" % lt[:6] + frac + zone


def record(config: Any, type_: str, status: str, *, id: str = "", name: str = "", image: str = "",
           network: str = "", pod_id: str = "", attributes: dict | None = None,
           exit_code: int | None = None) -> None:
    """Append one event to the log (nothing with ``events_logger: none``). Never raises."""
    try:
        if config.events_logger != "file":
            return
        ns = time.time_ns()
        # podman's order; its omitempty fields only when set (an exit code of 0 is kept)
        ev: dict[str, Any] = {k: v for k, v in (("ContainerExitCode", exit_code), ("ID", id), ("Image", image),
                                                ("Name", name), ("network", network)) if v is not None and v != ""}
        ev.update(Status=status, Time=rfc3339(ns), timeNano=ns, Type=type_)
        if pod_id:
            ev["PodID"] = pod_id
        ev["Attributes"] = attributes
        _append(config, (json.dumps(ev, separators=(",", ":")) + "\n").encode())
    except Exception as exc:  # noqa: BLE001 - an event must never fail the command
        log.debug("events: recording %s %s %s: %s", type_, status, id or name, exc)


def _append(config: Any, line: bytes) -> None:
    path = log_path(config.runroot)
    try:
        fd = os.open(path, _APPEND, 0o600)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, _APPEND, 0o600)
    try:
        os.write(fd, line)  # the whole line at once: O_APPEND writes do not interleave
        limit = config.events_logfile_max_size
        over = limit > 0 and os.fstat(fd).st_size > limit
    finally:
        os.close(fd)
    if over:
        _rotate(path, limit)


def _rotate(path: str, limit: int) -> None:
    """``events.log`` -> ``events.log.1``, by one process (the others find it done)."""
    from .state import FileLock  # loaded anyway by every command that records events

    lock = FileLock(path + ".lock")
    lock.acquire(timeout=2.0)  # LockTimeout: record() logs it; a later writer rotates
    try:
        try:
            if os.stat(path).st_size <= limit:
                return  # another process rotated it meanwhile
        except FileNotFoundError:
            return
        os.replace(path, path + ".1")
    finally:
        lock.release()


def container(config: Any, status: str, c: Any) -> None:
    """A container event (``c`` a :class:`libpod_core.containers.Container`): podman's
    fields, the labels as ``Attributes``, ``ContainerExitCode`` on ``died``."""
    try:
        row = c.row
        code = row.get("exit_code") if status == "died" else None
        fields = dict(id=c.id, name=c.name, image=row.get("image_name") or "", pod_id=row.get("pod_id") or "",
                      attributes=dict(c.config.get("labels") or {}), exit_code=code)
    except Exception as exc:  # noqa: BLE001 - an event must never fail the command
        log.debug("events: container %s: %s", status, exc)
        return
    record(config, "container", status, **fields)


def image(config: Any, status: str, image_id: str, name: str = "") -> None:
    record(config, "image", status, id=image_id, name=name)


def pod(config: Any, status: str, p: Any) -> None:
    record(config, "pod", status, id=p.id, name=p.name)


def volume(config: Any, status: str, name: str) -> None:
    record(config, "volume", status, name=name)


def network(config: Any, status: str, c: Any, network_name: str) -> None:
    """``connect``/``disconnect`` of container *c* to network *network_name*."""
    record(config, "network", status, id=c.id, name=c.name, network=network_name)


# ---------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------

def parse_line(line: bytes) -> dict | None:
    """One record, or None for a line that is not one (a torn write). A torn line followed
    by a whole record (a later writer's append glued to it) yields that record."""
    start = 0
    while start != -1:
        try:
            ev = json.loads(line[start:])
        except ValueError:
            ev = None
        if isinstance(ev, dict) and "Type" in ev and "Status" in ev:
            return ev
        start = line.find(b"{", start + 1)
    return None


def time_ns(ev: dict) -> int:
    """The event's time in nanoseconds (``timeNano``, else parsed from ``Time``)."""
    ns = ev.get("timeNano")
    if isinstance(ns, int):
        return ns
    return _parse_rfc3339(str(ev.get("Time") or ""))


def _parse_rfc3339(text: str) -> int:
    import calendar

    try:
        secs = calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return 0
    rest = text[19:]
    frac = ""
    if rest.startswith("."):
        i = 1
        while i < len(rest) and rest[i].isdigit():
            i += 1
        frac, rest = rest[1:i], rest[i:]
    off = 0
    if rest[:1] in ("+", "-") and len(rest) >= 6:
        off = (int(rest[1:3]) * 3600 + int(rest[4:6]) * 60) * (1 if rest[0] == "+" else -1)
    return (secs - off) * 1_000_000_000 + int((frac + "000000000")[:9])


def go_time(ns: int) -> str:
    """Go's ``time.Time.String()`` in local time, as podman prints an event's time:
    ``2026-12-04 16:20:01.123456789 +0000 UTC``."""
    lt, frac, off = _local(ns)
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', lt)}{frac} {off} {lt.tm_zone}"


def human(ev: dict, truncate: bool = False) -> str:
    """podman's default line for an event (``ToHumanReadable``)."""
    when = go_time(time_ns(ev))
    typ, status = ev.get("Type", ""), ev.get("Status", "")
    eid = ev.get("ID") or ""
    if truncate:
        eid = eid[:12]
    name = ev.get("Name") or ""
    if typ in ("container", "pod"):
        text = f"{when} {typ} {status} {eid} (image={ev.get('Image') or ''}, name={name}"
        if ev.get("PodID"):
            text += f", pod_id={ev['PodID']}"
        if ev.get("health_status"):
            text += f", health_status={ev['health_status']}"
        for k, v in (ev.get("Attributes") or {}).items():
            text += f", {k}={v}"
        return text + ")"
    if typ == "network":
        return f"{when} {typ} {status} {eid} (container={eid}, name={ev.get('network') or ''})"
    if typ == "image":
        return f"{when} {typ} {status} {eid} {name}"
    return " ".join(p for p in (when, typ, status, name) if p)


#: every field of podman's Event, so that a template naming one an event lacks prints its
#: zero value (as Go's templates do over podman's struct) instead of failing
_TEMPLATE_FIELDS = {"ContainerExitCode": 0, "ID": "", "Image": "", "Name": "", "Network": "", "Status": "",
                    "Type": "", "HealthStatus": "", "PodID": "", "Attributes": {}}


def template_view(ev: dict) -> dict:
    """What ``--format`` templates see: podman's field names, ``Time`` as Go prints it."""
    view = dict(_TEMPLATE_FIELDS)
    for k, v in ev.items():
        view[{"network": "Network", "health_status": "HealthStatus"}.get(k, k)] = v
    view["Attributes"] = view["Attributes"] or {}
    view["Time"] = go_time(time_ns(ev))
    return view


def compile_filters(specs: Iterable[str]) -> Callable[[dict], bool]:
    """``--filter KEY=VALUE`` as podman: values of one key OR, different keys AND.
    ``status`` is ``event``'s alias (one key); ``die`` means ``died`` (docker's name)."""
    groups: dict[str, list[Callable[[dict], bool]]] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        key = key.strip().lower()
        if not sep or key not in FILTER_KEYS:
            raise InvalidArgument(f"invalid filter {spec!r}: expected KEY=VALUE with KEY one of "
                                  f"{', '.join(FILTER_KEYS)}")
        if key == "status":
            key = "event"
        groups.setdefault(key, []).append(_predicate(key, value))
    preds = list(groups.values())

    def match(ev: dict) -> bool:
        return all(any(p(ev) for p in alts) for alts in preds)

    return match


def _predicate(key: str, value: str) -> Callable[[dict], bool]:
    def named(kind: str) -> Callable[[dict], bool]:
        v = value[7:] if value.startswith("sha256:") else value
        return lambda ev: ev.get("Type") == kind and (
            ev.get("Name") == value or bool(v) and (ev.get("ID") or "").startswith(v))

    if key in ("container", "image", "pod"):
        return named(key)
    if key == "event":
        want = "died" if value == "die" else value
        return lambda ev: ev.get("Status") == want
    if key == "type":
        return lambda ev: ev.get("Type") == value
    if key == "volume":
        return lambda ev: ev.get("Type") == "volume" and (ev.get("Name") or "").startswith(value)
    if key == "network":
        return lambda ev: ev.get("Type") == "network" and ev.get("network") == value
    lk, has_value, lv = value.partition("=")  # label=KEY or label=KEY=VALUE

    def label(ev: dict) -> bool:
        attrs = ev.get("Attributes") or {}
        return lk in attrs and (not has_value or attrs[lk] == lv)

    return label


class _Tail:
    """Whole lines of one open file, as it grows (a partial last line waits)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.rest = b""

    def lines(self) -> list[bytes]:
        chunks = [self.rest]
        while True:
            data = os.read(self.fd, 1 << 16)
            if not data:
                break
            chunks.append(data)
        lines = b"".join(chunks).split(b"\n")
        self.rest = lines.pop()
        return lines

    def close(self) -> None:
        os.close(self.fd)


def _open(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None


def read(config: Any, *, since: float | None = None, until: float | None = None,
         match: Callable[[dict], bool] | None = None, stream: bool = False, from_start: bool | None = None,
         interval: float = 0.1) -> Iterator[dict]:
    """The recorded events (oldest first) after *since* and before *until* (Unix times)
    that *match* accepts. With *stream*, then the new ones as they come, until *until*
    (forever without it). *from_start* (default: not *stream*, or a *since*/*until* given,
    as podman) reads the past events; otherwise only new ones are returned."""
    path = log_path(config.runroot)
    since_ns = None if since is None else int(since * 1e9)
    until_ns = None if until is None else int(until * 1e9)
    if from_start is None:
        from_start = not stream or since is not None or until is not None

    def wanted(raw: Iterable[bytes]) -> Iterator[dict]:
        for line in raw:
            if not line.strip():
                continue
            ev = parse_line(line)
            if ev is None:
                log.debug("events: skipping a torn line in %s", path)
                continue
            ns = time_ns(ev)
            if since_ns is not None and ns <= since_ns:
                continue
            if until_ns is not None and ns >= until_ns:
                continue
            if match is None or match(ev):
                yield ev

    # the current file first, then .1: a rotation in between makes them the same file
    fd = _open(path)
    if from_start:
        old = _open(path + ".1")
        if old is not None:
            try:
                if fd is None or os.fstat(old).st_ino != os.fstat(fd).st_ino:
                    tail = _Tail(old)
                    yield from wanted(tail.lines() + [tail.rest])
            finally:
                os.close(old)
    elif fd is not None:
        os.lseek(fd, 0, os.SEEK_END)
    cur = _Tail(fd) if fd is not None else None
    draining: list[tuple[_Tail, float]] = []  # rotated files late writers may still append to
    try:
        if cur is not None:
            yield from wanted(cur.lines())
        if not stream:
            if cur is not None:
                yield from wanted([cur.rest])  # a last line without its newline: torn, or whole
            return
        while until is None or time.time() < until:
            time.sleep(interval)
            if cur is not None:
                yield from wanted(cur.lines())
            for t, end in list(draining):
                yield from wanted(t.lines())
                if time.monotonic() > end:
                    draining.remove((t, end))
                    t.close()
            try:
                ino = os.stat(path).st_ino
            except FileNotFoundError:
                ino = None
            if ino is not None and (cur is None or os.fstat(cur.fd).st_ino != ino):
                new = _open(path)
                if new is None:
                    continue
                if cur is not None:
                    draining.append((cur, time.monotonic() + 2.0))
                cur = _Tail(new)
                yield from wanted(cur.lines())
    finally:
        if cur is not None:
            cur.close()
        for t, _end in draining:
            t.close()
