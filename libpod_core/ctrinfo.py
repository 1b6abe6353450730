"""What a running container is doing: ``stats`` (from its cgroups) and ``top`` (from /proc).

Both read the kernel directly, like podman: the container's cgroup v1 directories are the
ones ``/proc/<init PID>/cgroup`` names (``cgroupsPath`` is ``/kpod/<ID>``), network counters
come from ``/proc/<init PID>/net/dev`` (the container's network namespace), and ``top``
lists the processes in the container's PID namespace with PIDs as the container sees them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from .errors import ContainerStateError, InvalidArgument

CGROUP_ROOT = "/sys/fs/cgroup"
UNLIMITED = 1 << 62


def go_duration(ns: float) -> str:
    """Go's ``time.Duration.String()``: ``0s``, ``12.5ms``, ``4.285064575s``, ``1h2m3s``."""
    ns = int(ns)
    if ns == 0:
        return "0s"
    neg = ns < 0
    ns = abs(ns)

    def frac(value: int, unit: int, suffix: str) -> str:
        whole, rest = divmod(value, unit)
        digits = len(str(unit)) - 1
        text = str(whole)
        if rest:
            text += "." + f"{rest:0{digits}d}".rstrip("0")
        return text + suffix

    if ns < 1_000:
        out = f"{ns}ns"
    elif ns < 1_000_000:
        out = frac(ns, 1_000, "µs")
    elif ns < 1_000_000_000:
        out = frac(ns, 1_000_000, "ms")
    else:
        h, rem = divmod(ns, 3600 * 10**9)
        m, rem = divmod(rem, 60 * 10**9)
        out = (f"{h}h" if h else "") + (f"{m}m" if h or m else "") + frac(rem, 10**9, "s")
    return ("-" if neg else "") + out


# ---------------------------------------------------------------------------------------
# cgroups
# ---------------------------------------------------------------------------------------

def cgroup_dirs(pid: int) -> dict[str, str]:
    """controller -> host directory of *pid*'s cgroup (v1 hierarchies; ``""`` for v2)."""
    out: dict[str, str] = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _n, ctrls, path = line.rstrip("\n").split(":", 2)
            if not ctrls:
                d = os.path.join(CGROUP_ROOT, "unified", path.lstrip("/"))
                if not os.path.isdir(d):
                    d = os.path.join(CGROUP_ROOT, path.lstrip("/"))
                out.setdefault("", d)
                continue
            for ctrl in ctrls.split(","):
                for base in (ctrls, ctrl):
                    d = os.path.join(CGROUP_ROOT, base, path.lstrip("/"))
                    if os.path.isdir(d):
                        out[ctrl] = d
                        break
    return out


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _read_kv(path: str) -> dict[str, int]:
    out = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[1].lstrip("-").isdigit():
                    out[parts[0]] = int(parts[1])
    except OSError:
        pass
    return out


def host_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


@dataclass
class Sample:
    """One reading of a running container's counters."""

    at: float          # time.time() of the reading
    cpu_ns: int
    mem_usage: int
    mem_limit: int
    net_rx: int
    net_tx: int
    blk_read: int
    blk_write: int
    pids: int


def sample(pid: int) -> Sample:
    """Read the counters of the container whose init process is *pid*."""
    dirs = cgroup_dirs(pid)
    now = time.time()
    v2 = dirs.get("")
    cpu_ns = 0
    d = dirs.get("cpuacct")
    if d:
        cpu_ns = _read_int(os.path.join(d, "cpuacct.usage")) or 0
    elif v2 and "memory" not in dirs:
        cpu_ns = _read_kv(os.path.join(v2, "cpu.stat")).get("usage_usec", 0) * 1000
    mem_usage = mem_limit = 0
    d = dirs.get("memory")
    if d:
        usage = _read_int(os.path.join(d, "memory.usage_in_bytes")) or 0
        stat = _read_kv(os.path.join(d, "memory.stat"))
        inactive = stat.get("total_inactive_file", stat.get("inactive_file", 0))
        mem_usage = usage - inactive if inactive < usage else usage
        mem_limit = _read_int(os.path.join(d, "memory.limit_in_bytes")) or 0
    elif v2:
        mem_usage = _read_int(os.path.join(v2, "memory.current")) or 0
        inactive = _read_kv(os.path.join(v2, "memory.stat")).get("inactive_file", 0)
        if inactive < mem_usage:
            mem_usage -= inactive
        mem_limit = _read_int(os.path.join(v2, "memory.max")) or 0
    total = host_memory()
    if not mem_limit or mem_limit >= UNLIMITED or (total and mem_limit > total):
        mem_limit = total
    pids = 0
    d = dirs.get("pids") or v2
    if d:
        pids = _read_int(os.path.join(d, "pids.current")) or 0
    blk_read = blk_write = 0
    d = dirs.get("blkio")
    if d:
        for name in ("blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_service_bytes",
                     "blkio.io_service_bytes_recursive"):
            try:
                with open(os.path.join(d, name)) as f:
                    lines = f.read().splitlines()
            except OSError:
                continue
            for line in lines:
                parts = line.split()
                if len(parts) == 3 and parts[2].isdigit():
                    if parts[1] == "Read":
                        blk_read += int(parts[2])
                    elif parts[1] == "Write":
                        blk_write += int(parts[2])
            break
    elif v2:
        try:
            with open(os.path.join(v2, "io.stat")) as f:
                for line in f:
                    for kv in line.split()[1:]:
                        k, _, v = kv.partition("=")
                        if k == "rbytes":
                            blk_read += int(v)
                        elif k == "wbytes":
                            blk_write += int(v)
        except (OSError, ValueError):
            pass
    rx = tx = 0
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            for line in f.read().splitlines()[2:]:
                name, _, rest = line.partition(":")
                fields = rest.split()
                if name.strip() == "lo" or len(fields) < 9:
                    continue
                rx += int(fields[0])
                tx += int(fields[8])
    except (OSError, ValueError):
        pass
    return Sample(now, cpu_ns, mem_usage, mem_limit, rx, tx, blk_read, blk_write, pids)


def _human(n: float) -> str:
    from .containers import human_size

    return human_size(n)


def _pair(a: int, b: int) -> str:
    """podman's combineHumanValues."""
    if a == 0 and b == 0:
        return "-- / --"
    return f"{_human(a)} / {_human(b)}"


def _binary(n: float) -> str:
    """go-units' BytesSize: ``1.5MiB``."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024.0
        i += 1
    return f"{n:.4g}{units[i]}"


def _pct(v: float | None) -> str:
    return "--" if v is None or v < 0 else f"{v:.2f}%"


def stats_record(c, cur: Sample | None, prev: Sample | None, no_trunc: bool = False) -> dict[str, Any]:
    """One row: podman's template fields (``.ID``, ``.Name``, ``.CPUPerc``, ``.MemUsage``,
    ``.MemPerc``, ``.NetIO``, ``.BlockIO``, ``.PIDS``, ``.CPU``, ``.AVGCPU``, ``.UpTime``)."""
    rec: dict[str, Any] = {"ID": c.id if no_trunc else c.id[:12], "ContainerID": c.id, "Name": c.name}
    if cur is None:
        rec.update(CPUPerc="--", MemUsage="-- / --", MemUsageBytes="-- / --", MemPerc="--", NetIO="-- / --",
                   BlockIO="-- / --", PIDS="--", CPU="--", AVGCPU="--", UpTime="--",
                   CPUNano=0, MemUsageRaw=0, MemLimit=0, PIDs=0)
        return rec
    started = c.started_at or cur.at
    up = max(cur.at - started, 1e-9)
    avg = cur.cpu_ns / 1e9 / up * 100
    if prev is not None and cur.at > prev.at:
        cpu = (cur.cpu_ns - prev.cpu_ns) / 1e9 / (cur.at - prev.at) * 100
    else:
        cpu = avg  # first reading: the average since the container started, like podman
    mem_pct = cur.mem_usage / cur.mem_limit * 100 if cur.mem_limit else 0.0
    rec.update(
        CPUPerc=_pct(cpu), AVGCPU=_pct(avg), CPU=go_duration(cur.cpu_ns),
        MemUsage=_pair(cur.mem_usage, cur.mem_limit),
        MemUsageBytes=f"{_binary(cur.mem_usage)} / {_binary(cur.mem_limit)}",
        MemPerc=_pct(mem_pct), NetIO=_pair(cur.net_rx, cur.net_tx), BlockIO=_pair(cur.blk_read, cur.blk_write),
        PIDS=str(cur.pids) if cur.pids else "--", UpTime=go_duration(up * 1e9),
        CPUNano=cur.cpu_ns, MemUsageRaw=cur.mem_usage, MemLimit=cur.mem_limit, PIDs=cur.pids,
        NetInput=cur.net_rx, NetOutput=cur.net_tx, BlockInput=cur.blk_read, BlockOutput=cur.blk_write,
        CPUPercRaw=cpu, MemPercRaw=mem_pct,
    )
    return rec


def stats_json(rec: dict[str, Any]) -> dict[str, Any]:
    """podman's ``stats --format json`` object."""
    return {"id": rec["ID"], "name": rec["Name"], "cpu_time": rec["CPU"], "cpu_percent": rec["CPUPerc"],
            "avg_cpu": rec["AVGCPU"], "mem_usage": rec["MemUsage"], "mem_usage_bytes": rec["MemUsageBytes"],
            "mem_percent": rec["MemPerc"], "net_io": rec["NetIO"], "block_io": rec["BlockIO"], "pids": rec["PIDS"]}


STATS_HEADERS = ["ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET IO", "BLOCK IO", "PIDS", "CPU TIME",
                 "AVG CPU %"]
STATS_FIELDS = ["ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDS", "CPU", "AVGCPU"]


# ---------------------------------------------------------------------------------------
# top
# ---------------------------------------------------------------------------------------

# descriptor -> header (psgo's, which podman top uses); AIX-style codes map to them
DESCRIPTORS = {
    "args": "COMMAND", "comm": "COMMAND", "etime": "ELAPSED", "group": "GROUP", "hgroup": "HGROUP",
    "hpid": "HPID", "huser": "HUSER", "nice": "NI", "pcpu": "%CPU", "pgid": "PGID", "pid": "PID",
    "ppid": "PPID", "rgroup": "RGROUP", "ruser": "RUSER", "state": "STATE", "stime": "STIME", "time": "TIME",
    "tty": "TTY", "user": "USER", "vsz": "VSZ", "rss": "RSS", "uid": "UID", "gid": "GID",
}
AIX = {"%C": "pcpu", "%G": "group", "%P": "ppid", "%U": "user", "%a": "args", "%c": "comm", "%g": "rgroup",
       "%n": "nice", "%p": "pid", "%r": "pgid", "%t": "etime", "%u": "ruser", "%x": "time", "%y": "tty",
       "%z": "vsz"}
DEFAULT_DESCRIPTORS = ["user", "pid", "ppid", "pcpu", "etime", "tty", "time", "args"]


def parse_descriptors(args: list[str]) -> list[str]:
    out = []
    for a in args:
        for d in a.replace(",", " ").split():
            d = AIX.get(d, d).lower() if d.startswith("%") else d.lower()
            if d not in DESCRIPTORS:
                raise InvalidArgument(f"unknown descriptor: {d} (known: {', '.join(sorted(DESCRIPTORS))})")
            out.append(d)
    return out or list(DEFAULT_DESCRIPTORS)


def _boot_time() -> float:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def _status(pid: int) -> dict[str, list[str]]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.split()
    return out


def _container_pids(init_pid: int, cgroup_procs: str | None) -> list[int]:
    """Host PIDs of the processes in the container: those in its PID namespace (or, if it
    shares the host's, in its cgroup)."""
    try:
        ns = os.readlink(f"/proc/{init_pid}/ns/pid")
    except OSError:
        raise ContainerStateError("the container's processes are gone") from None
    if ns != os.readlink("/proc/self/ns/pid"):
        pids = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    if os.readlink(f"/proc/{d}/ns/pid") == ns:
                        pids.append(int(d))
                except OSError:
                    continue
        return sorted(pids)
    out = set()
    if cgroup_procs:
        for root, _dirs, files in os.walk(cgroup_procs):
            if "cgroup.procs" in files:
                with open(os.path.join(root, "cgroup.procs")) as f:
                    out.update(int(x) for x in f.read().split())
    return sorted(out or {init_pid})


class _Names:
    """uid/gid -> name from the container's /etc/passwd and /etc/group."""

    def __init__(self, rootfs: str | None) -> None:
        self.users: dict[int, str] = {}
        self.groups: dict[int, str] = {}
        if not rootfs:
            return
        from .copyfiles import SafeRoot

        try:
            with SafeRoot(rootfs) as root:
                for path, table in (("/etc/passwd", self.users), ("/etc/group", self.groups)):
                    data = root.read_small_file(path) or b""
                    for line in data.decode(errors="replace").splitlines():
                        f = line.split(":")
                        if len(f) >= 3 and f[2].isdigit():
                            table.setdefault(int(f[2]), f[0])
        except OSError:
            pass


def _host_name(kind: str, ident: int) -> str:
    import grp
    import pwd

    try:
        return pwd.getpwuid(ident).pw_name if kind == "user" else grp.getgrgid(ident).gr_name
    except KeyError:
        return str(ident)


def _tty_name(tty_nr: int) -> str:
    if tty_nr == 0:
        return "?"
    major = (tty_nr >> 8) & 0xFFF
    minor = (tty_nr & 0xFF) | ((tty_nr >> 12) & 0xFFF00)
    if 136 <= major <= 143:
        return f"pts/{(major - 136) * 256 + minor}"
    if major == 4:
        return f"tty{minor}" if minor < 64 else f"ttyS{minor - 64}"
    if major == 5 and minor == 1:
        return "console"
    return "?"


def top(c, descriptors: list[str]) -> tuple[list[str], list[list[str]]]:
    """``kpod top``: (headers, one row per process) for a running container."""
    st = c.refresh()
    if st not in ("running", "paused"):
        from .containers import display_state

        raise ContainerStateError(f"top can only be used on running containers: {c.name} is {display_state(st)}")
    init = c.pid
    try:
        dirs = cgroup_dirs(init)
    except OSError:
        raise ContainerStateError(f"top can only be used on running containers: {c.name} has no processes") from None
    names = _Names(c.mount_point if c.row.get("mounted") else None)
    ticks = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    btime = _boot_time()
    now = time.time()
    procs = []
    host_to_ns: dict[int, int] = {}
    for pid in _container_pids(init, dirs.get("pids") or dirs.get("memory")):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                raw = f.read()
            status = _status(pid)
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue  # exited meanwhile
        comm = raw[raw.index(b"(") + 1: raw.rindex(b")")].decode(errors="replace")
        fields = raw[raw.rindex(b")") + 2:].decode(errors="replace").split()
        nspid = status.get("NSpid") or [str(pid)]
        host_to_ns[pid] = int(nspid[-1])
        procs.append((pid, comm, fields, status, cmdline))
    rows = []
    for pid, comm, fields, status, cmdline in procs:
        ppid_host = int(fields[1])
        utime, stime = int(fields[11]), int(fields[12])
        start = btime + int(fields[19]) / ticks
        elapsed = max(now - start, 0.0)
        cpu_s = (utime + stime) / ticks
        uids = [int(x) for x in status.get("Uid", ["0", "0"])]
        gids = [int(x) for x in status.get("Gid", ["0", "0"])]
        nspgid = status.get("NSpgid") or [fields[2]]
        row = []
        for d in descriptors:
            if d == "pid":
                row.append(str(host_to_ns[pid]))
            elif d == "ppid":
                row.append(str(host_to_ns.get(ppid_host, 0)))
            elif d == "hpid":
                row.append(str(pid))
            elif d == "user":
                row.append(names.users.get(uids[1], str(uids[1])))
            elif d == "ruser":
                row.append(names.users.get(uids[0], str(uids[0])))
            elif d == "group":
                row.append(names.groups.get(gids[1], str(gids[1])))
            elif d == "rgroup":
                row.append(names.groups.get(gids[0], str(gids[0])))
            elif d == "huser":
                row.append(_host_name("user", uids[1]))
            elif d == "hgroup":
                row.append(_host_name("group", gids[1]))
            elif d == "uid":
                row.append(str(uids[1]))
            elif d == "gid":
                row.append(str(gids[1]))
            elif d == "pcpu":
                row.append(f"{(cpu_s / elapsed * 100) if elapsed > 0 else 0.0:.3f}")
            elif d == "etime":
                row.append(go_duration(elapsed * 1e9))
            elif d == "time":
                row.append(go_duration(cpu_s * 1e9))
            elif d == "tty":
                row.append(_tty_name(int(fields[4])))
            elif d == "args":
                row.append(" ".join(cmdline) if cmdline else f"[{comm}]")
            elif d == "comm":
                row.append(comm)
            elif d == "nice":
                row.append(fields[16])
            elif d == "pgid":
                row.append(nspgid[-1])
            elif d == "state":
                row.append(fields[0])
            elif d == "stime":
                row.append(time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(start)))
            elif d == "vsz":
                row.append(str(int(fields[20]) // 1024))
            elif d == "rss":
                row.append(str(int(fields[21]) * page // 1024))
        rows.append(row)
    return [DESCRIPTORS[d] for d in descriptors], rows


def tabwrite(rows: list[list[str]], minwidth: int = 12, padding: int = 2) -> str:
    """Go's tabwriter as podman top uses it (minwidth 12, padding 2; the last cell free)."""
    if not rows:
        return ""
    ncol = max(len(r) for r in rows)
    widths = [0] * ncol
    for r in rows:
        for i, cell in enumerate(r[:-1]):
            widths[i] = max(widths[i], len(cell) + padding, minwidth)
    lines = []
    for r in rows:
        parts = [cell.ljust(widths[i]) for i, cell in enumerate(r[:-1])]
        parts.append(r[-1] if r else "")
        lines.append("".join(parts))
    return "\n".join(lines)
