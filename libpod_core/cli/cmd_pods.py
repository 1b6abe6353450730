"""Pod commands: the ``pod`` group (create, ls/ps, inspect, start, stop, restart, kill, pause,
unpause, rm, top, stats, exists, prune). The logic lives in :mod:`libpod_core.pods`."""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterable

import click

from ..errors import InvalidArgument, KpodError, NotFound
from . import bodies
from .cmd_containers import _echo_err, _Failures  # one error-report style for multi-object commands
from .formatting import Template, align_tabs, render_many, to_json

_CTX = {"help_option_names": ["-h", "--help"]}


def _pods(state):
    return state.runtime.pods


_targets = bodies.pod_targets


def _kv(items: Iterable[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        k, _, v = item.partition("=")
        if not k:
            raise InvalidArgument(f"invalid {what} {item!r}: expected KEY=VALUE")
        out[k] = v
    return out


# ---------------------------------------------------------------------------------------
# the group
# ---------------------------------------------------------------------------------------

class PodGroup(click.Group):
    """``kpod pod``; ``ps`` and ``list`` are aliases of ``ls``, ``remove`` of ``rm``."""

    ALIASES = {"ps": "ls", "list": "ls", "remove": "rm"}

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return super().get_command(ctx, self.ALIASES.get(name, name))


@click.group(cls=PodGroup, context_settings=_CTX)
def pod() -> None:
    """Manage pods: groups of containers sharing namespaces (pod ps = pod ls)."""


@pod.command("create", context_settings=_CTX)
@click.option("-n", "--name", metavar="NAME", help="Name of the pod")
@click.option("-p", "--publish", multiple=True, metavar="[IP:][HOSTPORT:]PORT[/PROTO]",
              help="Publish a port of the pod on the host")
@click.option("--infra", type=bool, is_flag=False, flag_value=True, default=True, metavar="[=true|false]",
              help="Create an infra container holding the shared namespaces (default true)")
@click.option("--infra-image", metavar="IMAGE", help="Image of the infra container (default: kpod's pause image)")
@click.option("--infra-command", metavar="COMMAND", help="Command of the infra container (split on spaces)")
@click.option("--infra-name", metavar="NAME", help="Name of the infra container (default: <pod ID>-infra)")
@click.option("--share", metavar="NAMESPACES", help="Namespaces to share: net,ipc,uts (default), pid, +pid, none")
@click.option("--hostname", metavar="NAME", help="Host name of the pod (default: its name)")
@click.option("-l", "--label", multiple=True, metavar="KEY=VALUE", help="Set a pod label")
@click.option("--cgroup-parent", metavar="PATH", help="Parent cgroup of the pod's cgroup (default /kpod)")
@click.option("--cpus", metavar="N", help="CPU limit of the whole pod (e.g. 1.5)")
@click.option("-m", "--memory", metavar="SIZE", help="Memory limit of the whole pod (e.g. 512m)")
@click.option("--network", "--net", "network", metavar="MODE", help="The pod's network: bridge, NAME[,NAME], none, host")
@click.option("--ip", metavar="ADDRESS", help="Static IPv4 address of the pod")
@click.option("--mac-address", metavar="MAC", help="Static MAC address of the pod's interface")
@click.option("--dns", multiple=True, metavar="IP", help="DNS server for the pod's containers")
@click.option("--dns-search", multiple=True, metavar="DOMAIN", help="DNS search domain")
@click.option("--dns-option", multiple=True, metavar="OPTION", help="resolv.conf option")
@click.option("--add-host", multiple=True, metavar="HOST:IP", help="Add a line to the pod's /etc/hosts")
@click.option("--no-hosts", is_flag=True, help="Do not create /etc/hosts for the pod's containers")
@click.pass_obj
def pod_create(state, **kw: Any) -> None:
    """Create a new, empty pod; prints its ID."""
    bodies.pod_create(state, **kw)


# ---------------------------------------------------------------------------------------
# ls / inspect / exists
# ---------------------------------------------------------------------------------------

def _pod_record(p, now: float, no_trunc: bool) -> tuple[dict, dict]:
    from ..containers import display_state, human_duration, rfc3339

    cs = p.containers()
    states = {c.id: c.refresh() for c in cs}
    status = p.status(states)
    infra = p.infra()
    networks = sorted((infra.config.get("networks") or {}) if infra is not None else {})
    if infra is not None and infra.config.get("network_mode") == "bridge" and not networks:
        networks = [p.mgr.config.default_network]
    js = {
        "Cgroup": p.cgroup_path,
        "Containers": [{"Id": c.id, "Names": c.name, "Status": display_state(states[c.id]),
                        "RestartCount": c.restart_count} for c in cs],
        "Created": rfc3339(p.created_at),
        "Id": p.id,
        "InfraId": p.infra_id or "",
        "Name": p.name,
        "Namespace": "",
        "Networks": networks,
        "Status": status,
        "Labels": dict(p.config.get("labels") or {}),
    }
    cut = (lambda s: s) if no_trunc else (lambda s: s[:12])
    tpl = dict(js)
    tpl.update(
        ID=cut(p.id),
        InfraID=cut(p.infra_id or ""),
        Created=f"{human_duration(now - p.created_at)} ago",
        NumberOfContainers=len(cs),
        ContainerNames=",".join(c.name for c in cs),
        ContainerIds=",".join(cut(c.id) for c in cs),
        ContainerStatuses=",".join(display_state(states[c.id]) for c in cs),
        Networks=",".join(networks),
        Labels=",".join(f"{k}={v}" for k, v in sorted(js["Labels"].items())),
        Label=js["Labels"],
        CgroupPath=p.cgroup_path,
    )
    return js, tpl


def _pod_filter(p, js: dict, tpl: dict, flt: dict[str, list[str]]) -> bool:
    import re

    for key, values in flt.items():
        if key == "id":
            ok = any(p.id.startswith(v) for v in values)
        elif key == "name":
            ok = any(re.search(v, p.name) for v in values)
        elif key == "label":
            labels = js["Labels"]
            ok = all((lambda k, s, v: k in labels and (not s or labels[k] == v))(*v.partition("=")) for v in values)
        elif key == "status":
            ok = js["Status"].lower() in {v.lower() for v in values}
        elif key == "ctr-names":
            ok = any(c["Names"] == v or re.search(v, c["Names"]) for v in values for c in js["Containers"])
        elif key == "ctr-ids":
            ok = any(c["Id"].startswith(v) for v in values for c in js["Containers"])
        elif key == "ctr-status":
            ok = any(c["Status"] == v for v in values for c in js["Containers"])
        elif key == "ctr-number":
            try:
                ok = any(len(js["Containers"]) == int(v) for v in values)
            except ValueError:
                raise InvalidArgument("invalid filter ctr-number=: expected a number") from None
        elif key == "network":
            ok = any(v in js["Networks"] for v in values)
        else:  # pragma: no cover - checked by the caller
            ok = True
        if not ok:
            return False
    return True


_POD_FILTERS = ("id", "name", "label", "status", "ctr-names", "ctr-ids", "ctr-status", "ctr-number", "network")


@pod.command("ls", context_settings=_CTX)
@click.option("-q", "--quiet", is_flag=True, help="Print pod IDs only")
@click.option("--ctr-names", is_flag=True, help="Show the names of the pod's containers")
@click.option("--ctr-ids", is_flag=True, help="Show the IDs of the pod's containers")
@click.option("--ctr-status", is_flag=True, help="Show the states of the pod's containers")
@click.option("--format", "fmt", metavar="FORMAT", help="'json' or a Go template like '{{.Name}} {{.Status}}'")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="id=, name=, label=, status=, ctr-names=, ctr-ids=, ctr-status=, ctr-number=, network=")
@click.option("--no-trunc", is_flag=True, help="Do not truncate IDs")
@click.option("--noheading", is_flag=True, help="Do not print the header row")
@click.option("--sort", default="created", type=click.Choice(["created", "id", "name", "number", "status"]),
              help="Sort by created (default), id, name, number of containers or status")
@click.pass_obj
def pod_ls(state, quiet: bool, ctr_names: bool, ctr_ids: bool, ctr_status: bool, fmt: str | None,
           filters: tuple[str, ...], no_trunc: bool, noheading: bool, sort: str) -> None:
    """List pods (pod ps)."""
    flt: dict[str, list[str]] = {}
    for f in filters:
        k, sep, v = f.partition("=")
        if not sep or k not in _POD_FILTERS:
            raise InvalidArgument(f"invalid filter {f!r}: expected one of {', '.join(x + '=' for x in _POD_FILTERS)}")
        flt.setdefault(k, []).append(v)
    now = time.time()
    recs = []
    for p in _pods(state).list():
        try:
            js, tpl = _pod_record(p, now, no_trunc)
        except NotFound:
            continue
        if _pod_filter(p, js, tpl, flt):
            recs.append((p, js, tpl))
    if sort != "created":
        key = {"id": lambda r: r[0].id, "name": lambda r: r[0].name, "number": lambda r: r[2]["NumberOfContainers"],
               "status": lambda r: r[1]["Status"]}[sort]
        recs.sort(key=key)
    if quiet:
        for _p, _js, tpl in recs:
            click.echo(tpl["ID"])
        return
    if fmt == "json":
        click.echo(to_json([js for _p, js, _t in recs]))
        return
    if fmt:
        out = render_many(fmt, [t for _p, _j, t in recs], noheading=noheading)
        if out:
            click.echo(out)
        return
    headers = ["POD ID", "NAME", "STATUS", "CREATED", "INFRA ID"]
    fields = ["ID", "Name", "Status", "Created", "InfraID"]
    if ctr_names:
        headers.append("NAMES")
        fields.append("ContainerNames")
    if ctr_ids:
        headers.append("IDS")
        fields.append("ContainerIds")
    if ctr_status:
        headers.append("STATUS")
        fields.append("ContainerStatuses")
    if not (ctr_names or ctr_ids or ctr_status):
        headers.append("# OF CONTAINERS")
        fields.append("NumberOfContainers")
    lines = [] if noheading else ["\t".join(headers)]
    lines += ["\t".join(str(t[f]) for f in fields) for _p, _j, t in recs]
    if lines:
        click.echo(align_tabs(lines, pad=2))


@pod.command("inspect", context_settings=_CTX)
@click.option("-f", "--format", "fmt", metavar="FORMAT", help="'json' (default) or a Go template like '{{.State}}'")
@click.option("-l", "--latest", is_flag=True, help="Inspect the latest pod")
@click.argument("names", nargs=-1)
@click.pass_obj
def pod_inspect(state, fmt: str | None, latest: bool, names: tuple[str, ...]) -> None:
    """Display the configuration and state of pods as JSON."""
    out, errors = [], []
    for raw, p in _targets(state, names, latest=latest):
        if isinstance(p, Exception):
            errors.append(p)
            continue
        out.append(p.inspect())
    if fmt and fmt != "json":
        tpl = Template(fmt)
        for d in out:
            click.echo(tpl.render(d))
    else:
        click.echo(to_json(out if len(names) != 1 or latest else out[0] if out else []))
    if errors:
        for e in errors[:-1]:
            _echo_err(e.message if isinstance(e, KpodError) else str(e))
        raise errors[-1]


@pod.command("exists", context_settings=_CTX)
@click.argument("name")
@click.pass_obj
def pod_exists(state, name: str) -> None:
    """Exit 0 if the pod exists, 1 if not."""
    raise click.exceptions.Exit(0 if _pods(state).exists(name) else 1)


# ---------------------------------------------------------------------------------------
# lifecycle
# ---------------------------------------------------------------------------------------

_each = bodies.each_pod


@pod.command("start", context_settings=_CTX)
@click.option("-a", "--all", "all_", is_flag=True, help="Start every pod")
@click.option("-l", "--latest", is_flag=True, help="Act on the latest pod")
@click.argument("names", nargs=-1)
@click.pass_obj
def pod_start(state, all_: bool, latest: bool, names: tuple[str, ...]) -> None:
    """Start pods: the infra container, then every container of the pod."""
    bodies.pod_start(state, all_, latest, names)


@pod.command("stop", context_settings=_CTX)
@click.option("-t", "--time", "timeout", type=int, default=None, metavar="SECONDS",
              help="Seconds to wait for each container to stop before killing it")
@click.option("-a", "--all", "all_", is_flag=True, help="Stop every pod")
@click.option("-l", "--latest", is_flag=True, help="Act on the latest pod")
@click.option("-i", "--ignore", is_flag=True, help="Ignore pods that do not exist")
@click.argument("names", nargs=-1)
@click.pass_obj
def pod_stop(state, timeout: int | None, all_: bool, latest: bool, ignore: bool, names: tuple[str, ...]) -> None:
    """Stop pods: their containers, then the infra container."""
    if ignore:
        names = tuple(n for n in names if _pods(state).exists(n))
        if not names and not (all_ or latest):
            return
    _each(state, names, all_, latest, lambda p: p.stop(timeout))


@pod.command("restart", context_settings=_CTX)
@click.option("-a", "--all", "all_", is_flag=True, help="Restart every pod")
@click.option("-l", "--latest", is_flag=True, help="Act on the latest pod")
@click.argument("names", nargs=-1)
@click.pass_obj
def pod_restart(state, all_: bool, latest: bool, names: tuple[str, ...]) -> None:
    """Restart the containers of pods (the infra keeps running)."""
    _each(state, names, all_, latest, lambda p: p.restart())


@pod.command("kill", context_settings=_CTX)
@click.option("-s", "--signal", "sig", default="KILL", metavar="SIGNAL", help="Signal to send (default KILL)")
@click.option("-a", "--all", "all_", is_flag=True, help="Signal every pod")
@click.option("-l", "--latest", is_flag=True, help="Act on the latest pod")
@click.argument("names", nargs=-1)
@click.pass_obj
def pod_kill(state, sig: str, all_: bool, latest: bool, names: tuple[str, ...]) -> None:
    """Send a signal to every running container of pods."""
    from ..oci import signal_number

    try:
        signal_number(sig)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
    _each(state, names, all_, latest, lambda p: p.kill(sig))


@pod.command("pause", context_settings=_CTX)
@click.option("-a", "--all", "all_", is_flag=True, help="Pause every pod")
@click.option("-l", "--latest", is_flag=True, help="Act on the latest pod")
@click.argument("names", nargs=-1)
@click.pass_obj
def pod_pause(state, all_: bool, latest: bool, names: tuple[str, ...]) -> None:
    """Pause (freeze) every running container of pods."""
    _each(state, names, all_, latest, lambda p: p.pause())


@pod.command("unpause", context_settings=_CTX)
@click.option("-a", "--all", "all_", is_flag=True, help="Unpause every pod")
@click.option("-l", "--latest", is_flag=True, help="Act on the latest pod")
@click.argument("names", nargs=-1)
@click.pass_obj
def pod_unpause(state, all_: bool, latest: bool, names: tuple[str, ...]) -> None:
    """Unpause every paused container of pods."""
    _each(state, names, all_, latest, lambda p: p.unpause())


@pod.command("rm", context_settings=_CTX)
@click.option("-f", "--force", is_flag=True, help="Stop and remove the pod's containers too")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove every pod")
@click.option("-i", "--ignore", is_flag=True, help="Ignore pods that do not exist")
@click.option("-t", "--time", "timeout", type=int, default=None, metavar="SECONDS",
              help="With --force, seconds to wait for containers to stop before killing them (default 0)")
@click.option("-l", "--latest", is_flag=True, help="Act on the latest pod")
@click.argument("names", nargs=-1)
@click.pass_obj
def pod_rm(state, force: bool, all_: bool, ignore: bool, timeout: int | None, latest: bool,
           names: tuple[str, ...]) -> None:
    """Remove pods. A pod with containers (or a running one) needs --force."""
    fails = _Failures()
    for raw, p in _targets(state, names, all_, latest):
        if isinstance(p, Exception):
            if isinstance(p, NotFound):
                if not ignore:
                    fails.add(p, 1)
                continue
            fails.add(p)
            continue
        try:
            p.remove(force=force, timeout=timeout)
            click.echo(p.id)
        except NotFound as exc:
            if not ignore:
                fails.add(exc, 1)
        except KpodError as exc:
            fails.add(exc)
    fails.exit()


@pod.command("prune", context_settings=_CTX)
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation")
@click.pass_obj
def pod_prune(state, force: bool) -> None:
    """Remove every pod that has no running container (and their containers)."""
    if not force:
        click.echo("WARNING! This will remove all stopped/exited pods.")
        answer = click.prompt("Are you sure you want to continue? [y/N]", default="", show_default=False,
                              prompt_suffix=" ")
        if answer.strip().lower() not in ("y", "yes"):
            return
    for pid in _pods(state).prune():
        click.echo(pid)


# ---------------------------------------------------------------------------------------
# top / stats
# ---------------------------------------------------------------------------------------

def _cgroup_procs(pid: int) -> list[int]:
    """PIDs in the cgroup of *pid* (a v1 hierarchy that has cgroup.procs, else v2)."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = [ln.rstrip("\n").split(":", 2) for ln in f]
    except OSError:
        return []
    order = {"pids": 0, "memory": 1, "cpu,cpuacct": 2, "cpuacct": 3, "": 9}
    cands = []
    for _n, ctrls, path in lines:
        key = next((k for k in order if k and k in ctrls.split(",")), "" if ctrls == "" else None)
        if key is None:
            continue
        base = "/sys/fs/cgroup" if ctrls == "" else os.path.join("/sys/fs/cgroup", ctrls)
        if ctrls == "" and not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            base = "/sys/fs/cgroup/unified"
        cands.append((order[key], os.path.join(base, path.lstrip("/"), "cgroup.procs")))
    for _o, p in sorted(cands):
        try:
            with open(p) as f:
                pids = [int(x) for x in f.read().split()]
            if pids:
                return pids
        except OSError:
            continue
    return [pid]


def _proc_info(pid: int, uid_names: dict[int, str]) -> dict[str, Any] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except OSError:
        return None
    comm = stat[stat.index("(") + 1:stat.rindex(")")]
    rest = stat[stat.rindex(")") + 2:].split()
    tck = os.sysconf("SC_CLK_TCK")
    ppid, tty_nr = int(rest[1]), int(rest[4])
    cpu = (int(rest[11]) + int(rest[12])) / tck
    elapsed = max(uptime - int(rest[19]) / tck, 0.001)
    uid = 0
    for line in status.splitlines():
        if line.startswith("Uid:"):
            uid = int(line.split()[1])
    minor = (tty_nr & 0xFF) | ((tty_nr >> 12) & 0xFFF00)
    major = (tty_nr >> 8) & 0xFFF
    tty = "?" if tty_nr == 0 else (f"pts/{minor}" if major == 136 else f"tty{minor}")
    return {"user": uid_names.get(uid, str(uid)), "pid": str(pid), "ppid": str(ppid),
            "pcpu": f"{cpu / elapsed * 100:.3f}", "etime": _go_duration(elapsed), "tty": tty,
            "time": _go_duration(cpu), "args": cmd or f"[{comm}]", "comm": comm}


def _go_duration(s: float) -> str:
    if s < 60:
        return f"{s:.3f}s".replace(".000s", "s")
    m, sec = divmod(int(s), 60)
    h, m = divmod(m, 60)
    return (f"{h}h" if h else "") + f"{m}m{sec}s"


_TOP_FIELDS = {"user": "USER", "pid": "PID", "ppid": "PPID", "pcpu": "%CPU", "etime": "ELAPSED", "tty": "TTY",
               "time": "TIME", "args": "COMMAND", "comm": "COMMAND"}


@pod.command("top", context_settings=_CTX)
@click.argument("name")
@click.argument("descriptors", nargs=-1)
@click.pass_obj
def pod_top(state, name: str, descriptors: tuple[str, ...]) -> None:
    """Display the running processes of a pod's containers.

    DESCRIPTORS: user, pid, ppid, pcpu, etime, tty, time, args, comm (default: all but comm).
    """
    fields = [d for part in descriptors for d in part.split(",") if d] or \
        ["user", "pid", "ppid", "pcpu", "etime", "tty", "time", "args"]
    for f in fields:
        if f not in _TOP_FIELDS:
            raise InvalidArgument(f"unknown descriptor {f!r}: expected {', '.join(_TOP_FIELDS)}")
    p = _pods(state).get(name)
    running = [c for c in p.containers() if c.refresh() in ("running", "paused")]
    if not running:
        raise KpodError(f"pod {p.name} is not running: no processes")
    rows = []
    for c in running:
        names: dict[int, str] = {0: "root"}
        try:
            with open(f"/proc/{c.pid}/root/etc/passwd") as f:
                for line in f:
                    parts = line.split(":")
                    if len(parts) > 2 and parts[2].isdigit():
                        names[int(parts[2])] = parts[0]
        except OSError:
            pass
        for pid in _cgroup_procs(c.pid):
            info = _proc_info(pid, names)
            if info:
                rows.append("\t".join(info[f] for f in fields))
    click.echo(align_tabs(["\t".join(_TOP_FIELDS[f] for f in fields)] + rows, pad=2))


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _container_stats(p, c, now: float) -> dict[str, Any]:
    from ..containers import human_size

    def cg(ctrl: str) -> str | None:
        try:
            with open(f"/proc/{c.pid}/cgroup") as f:
                for line in f:
                    _n, ctrls, path = line.rstrip("\n").split(":", 2)
                    if ctrl in ctrls.split(","):
                        return os.path.join("/sys/fs/cgroup", ctrls, path.lstrip("/"))
        except OSError:
            pass
        return None

    cpu_ns = _read_int(os.path.join(cg("cpuacct") or "/nonexistent", "cpuacct.usage")) or 0
    mem_dir = cg("memory")
    mem = _read_int(os.path.join(mem_dir, "memory.usage_in_bytes")) if mem_dir else None
    limit = _read_int(os.path.join(mem_dir, "memory.limit_in_bytes")) if mem_dir else None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        total = 0
    if not limit or limit > total > 0:
        limit = total
    pids = _read_int(os.path.join(cg("pids") or "/nonexistent", "pids.current"))
    rx = tx = 0
    try:
        with open(f"/proc/{c.pid}/net/dev") as f:
            for line in f.readlines()[2:]:
                ifname, _, data = line.partition(":")
                if ifname.strip() != "lo":
                    v = data.split()
                    rx += int(v[0])
                    tx += int(v[8])
    except OSError:
        pass
    rd = wr = 0
    blk = cg("blkio")
    if blk:
        try:
            with open(os.path.join(blk, "blkio.throttle.io_service_bytes")) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 3 and parts[1] == "Read":
                        rd += int(parts[2])
                    elif len(parts) == 3 and parts[1] == "Write":
                        wr += int(parts[2])
        except OSError:
            pass
    up = max(now - (c.started_at or now), 0.001)
    cpu_pct = cpu_ns / 1e9 / up * 100
    mem_pct = (mem or 0) / limit * 100 if limit else 0.0
    return {
        "Pod": p.id[:12], "CID": c.id[:12], "Name": c.name,
        "CPU": f"{cpu_pct:.2f}%", "MemUsage": f"{human_size(mem or 0)} / {human_size(limit or 0)}",
        "Mem": f"{mem_pct:.2f}%", "NetIO": f"{human_size(rx)} / {human_size(tx)}",
        "BlockIO": f"{human_size(rd)} / {human_size(wr)}", "PIDS": str(pids if pids is not None else "--"),
        "MemUsageBytes": mem or 0, "MemLimitBytes": limit or 0, "CPUNano": cpu_ns,
    }


@pod.command("stats", context_settings=_CTX)
@click.option("-a", "--all", "all_", is_flag=True, help="Show every pod (default when no pod is named)")
@click.option("--no-stream", is_flag=True, help="Print once instead of refreshing every second")
@click.option("--format", "fmt", metavar="FORMAT", help="'json' or a Go template like '{{.Name}} {{.CPU}}'")
@click.argument("names", nargs=-1)
@click.pass_obj
def pod_stats(state, all_: bool, no_stream: bool, fmt: str | None, names: tuple[str, ...]) -> None:
    """Display the resource use of pods' containers (CPU average since start, memory,
    network, block I/O, PIDs)."""
    mgr = _pods(state)
    pods = mgr.list() if all_ or not names else [mgr.get(n) for n in names]
    while True:
        now = time.time()
        recs = []
        for p in pods:
            for c in p.containers():
                try:
                    if c.refresh() in ("running", "paused"):
                        recs.append(_container_stats(p, c, now))
                except NotFound:
                    continue
        if fmt == "json":
            out = to_json(recs)
        elif fmt:
            tpl = Template(fmt)
            out = render_many(fmt, recs) if tpl.table else "\n".join(tpl.render(r) for r in recs)
        else:
            lines = ["POD\tCID\tNAME\tCPU %\tMEM USAGE / LIMIT\tMEM %\tNET IO\tBLOCK IO\tPIDS"]
            lines += ["\t".join(r[k] for k in ("Pod", "CID", "Name", "CPU", "MemUsage", "Mem", "NetIO", "BlockIO",
                                               "PIDS")) for r in recs]
            out = align_tabs(lines, pad=2)
        if not no_stream and sys.stdout.isatty():
            click.echo("\x1b[2J\x1b[H", nl=False)
        if out:
            click.echo(out)
        if no_stream:
            return
        try:
            time.sleep(1)
        except KeyboardInterrupt:
            return
