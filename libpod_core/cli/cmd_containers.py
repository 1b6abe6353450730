"""Container commands: create, run, start, stop, kill, pause, unpause, restart, rm, wait,
ps, logs, rename, inspect and the ``container`` group (exists, prune, cleanup, aliases).

Flags, output and exit codes follow podman's. The logic lives in
:mod:`libpod_core.containers`; this module parses flags, prints, and streams a container's
stdio over conmon's attach socket.
"""

from __future__ import annotations

import os
import re
import sys
import time
from typing import Any, Callable, Iterable

import click

from ..errors import ContainerStateError, InvalidArgument, KpodError, NotFound
from ..filters import PruneFilter, parse_duration, parse_time  # noqa: F401 - parse_*: commands import them from here
from . import bodies
from .base import Failures, echo_err, lookup_each
from .bodies import _terminal_size, _write_all, attach_and_start, parse_detach_keys  # noqa: F401 - cmd_containers_more uses some
from .formatting import render_many, to_json, Template

_RUN_CTX = {"allow_interspersed_args": False, "help_option_names": ["-h", "--help"]}
_CTX = {"help_option_names": ["-h", "--help"]}


def _mgr(state):
    return state.runtime.containers


_echo_err = echo_err
_Failures = Failures  # one error-report style for multi-object commands (base.Failures)


def _targets(state, names: Iterable[str], all_: bool = False, latest: bool = False,
             select: Callable[[Any], bool] | None = None, filters: Iterable[str] = ()):
    """(raw input, Container or exception) for NAME arguments, --all or --latest.
    *filters* (``--filter KEY=VALUE``, ps's keys) keep the containers that match (their raw
    input is then the ID); without names they select from all containers, as podman's start
    and stop do."""
    mgr = _mgr(state)
    names = list(names)
    flt = _parse_filters(filters)
    if all_ or latest or (flt and not names):
        if names:
            raise InvalidArgument("--all and --latest take no container names")
        cs = [mgr.latest()] if latest else mgr.list()
        return [(c.id, c) for c in cs
                if (select is None or select(c)) and (not flt or _match_filters(c, c.observe(), flt, mgr, {}))]
    if not names:
        raise InvalidArgument("you must provide at least one container name or ID")
    found = lookup_each(mgr, names)
    if not flt:
        return found
    return [(raw, c) if isinstance(c, Exception) else (c.id, c) for raw, c in found
            if isinstance(c, Exception) or _match_filters(c, c.observe(), flt, mgr, {})]


# ---------------------------------------------------------------------------------------
# create / run
# ---------------------------------------------------------------------------------------

def create_flags(f):
    """The flags create and run share (podman's names)."""
    from .cmd_network import network_flags

    opts = [
        click.option("--name", metavar="NAME", help="Assign a name to the container"),
        click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open even if not attached"),
        click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY for the container"),
        click.option("--rm", "rm", is_flag=True, help="Remove the container when it exits"),
        click.option("-e", "--env", multiple=True, metavar="KEY=VALUE", help="Set an environment variable"),
        click.option("--env-file", multiple=True, metavar="FILE", help="Read environment variables from a file"),
        click.option("-w", "--workdir", metavar="DIR", help="Working directory inside the container"),
        click.option("-u", "--user", metavar="USER[:GROUP]", help="User (name or UID) to run as"),
        click.option("--group-add", multiple=True, metavar="GROUP", help="Add a supplementary group"),
        click.option("-v", "--volume", multiple=True, metavar="[SRC:]DST[:OPTS]",
                     help="Bind mount a host path (/SRC) or mount a volume (NAME, made if missing; none: anonymous)"),
        click.option("--mount", multiple=True, metavar="type=bind|tmpfs|volume,...", help="Attach a filesystem mount"),
        click.option("--tmpfs", multiple=True, metavar="DST[:OPTS]", help="Mount a tmpfs"),
        click.option("--image-volume", metavar="MODE",
                     help="The image's VOLUME paths: bind (anonymous volumes, default), tmpfs or ignore"),
        click.option("--entrypoint", metavar="CMD", help="Override the image's ENTRYPOINT (string or JSON array)"),
        click.option("--hostname", metavar="NAME", help="Container host name (default: the short ID)"),
        click.option("--read-only", is_flag=True, help="Mount the container's root filesystem read-only"),
        click.option("--cap-add", multiple=True, metavar="CAP", help="Add a Linux capability"),
        click.option("--cap-drop", multiple=True, metavar="CAP", help="Drop a Linux capability"),
        click.option("--privileged", is_flag=True, help="Give extended privileges to the container"),
        click.option("--security-opt", multiple=True, metavar="OPT",
                     help="no-new-privileges, seccomp=unconfined or seccomp=PROFILE.json"),
        click.option("-m", "--memory", metavar="SIZE", help="Memory limit (e.g. 512m, 1g)"),
        click.option("--memory-swap", metavar="SIZE", help="Memory plus swap limit; -1 for unlimited swap"),
        click.option("--memory-reservation", metavar="SIZE", help="Memory soft limit"),
        click.option("--cpus", metavar="N", help="Number of CPUs (e.g. 1.5)"),
        click.option("-c", "--cpu-shares", type=int, metavar="N", help="CPU shares (relative weight)"),
        click.option("--cpuset-cpus", metavar="LIST", help="CPUs in which to allow execution (0-3, 0,1)"),
        click.option("--cpuset-mems", metavar="LIST", help="Memory nodes in which to allow execution"),
        click.option("--pids-limit", type=int, metavar="N", help="Process limit (-1 or 0 for unlimited)"),
        click.option("--ulimit", multiple=True, metavar="NAME=SOFT[:HARD]", help="Set a resource limit"),
        click.option("--shm-size", metavar="SIZE", help="Size of /dev/shm (default 64m)"),
        click.option("--sysctl", multiple=True, metavar="KEY=VALUE", help="Set a namespaced kernel parameter"),
        click.option("--oom-score-adj", type=int, metavar="N", help="Tune the OOM killer's preference"),
        click.option("--ipc", metavar="MODE",
                     help="IPC namespace: private, shareable, none, host, container:NAME|ID or ns:PATH"),
        click.option("--uts", metavar="MODE", help="UTS namespace: private, host, container:NAME|ID or ns:PATH"),
        click.option("--pid", metavar="MODE", help="PID namespace: private, host, container:NAME|ID or ns:PATH"),
        click.option("--cgroup-parent", metavar="PATH", help="Parent cgroup of the container's cgroup (default /kpod)"),
        click.option("-l", "--label", multiple=True, metavar="KEY=VALUE", help="Set a container label"),
        click.option("--annotation", multiple=True, metavar="KEY=VALUE", help="Add an OCI annotation"),
        click.option("--init", is_flag=True, help="Run catatonit as PID 1 to reap zombies and forward signals"),
        click.option("--restart", default="no", metavar="POLICY",
                     help="Restart policy: no, always, unless-stopped, on-failure[:N]"),
        click.option("--pull", default="missing", type=click.Choice(["always", "missing", "never", "newer"]),
                     help="Pull the image: always, missing (default), never, newer"),
        *network_flags(),  # --network, -p, -P, --ip, --dns..., --add-host, --pod (cmd_network)
        click.option("--stop-signal", metavar="SIGNAL", help="Signal that stops the container (default TERM)"),
        click.option("--stop-timeout", type=int, metavar="SECONDS", help="Seconds before stop kills (default 10)"),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


@click.command(context_settings=_RUN_CTX)
@create_flags
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def create(state, image: str, command: tuple[str, ...], **kw: Any) -> None:
    """Create a container from IMAGE without starting it; prints its ID."""
    bodies.create(state, image, command, **kw)


@click.command(context_settings=_RUN_CTX)
@click.option("-d", "--detach", is_flag=True, help="Run in the background and print the container ID")
@click.option("--detach-keys", default="ctrl-p,ctrl-q", metavar="KEYS",
              help="Key sequence that detaches from an interactive container (default ctrl-p,ctrl-q)")
@click.option("--sig-proxy/--no-sig-proxy", default=True,
              help="Forward signals kpod receives to the container (default: yes, without a tty)")
@create_flags
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def run(state, image: str, command: tuple[str, ...], detach: bool, detach_keys: str, sig_proxy: bool,
        **kw: Any) -> None:
    """Run COMMAND in a new container from IMAGE.

    Exits with the container's exit code; 125 when kpod fails, 126 when the command cannot
    be invoked, 127 when it is not found.
    """
    bodies.run(state, image, command, detach, detach_keys, sig_proxy, **kw)


# ---------------------------------------------------------------------------------------
# start / stop / kill / pause / unpause / restart
# ---------------------------------------------------------------------------------------

@click.command(context_settings=_CTX)
@click.option("-a", "--attach", is_flag=True, help="Attach to the container's output; exit with its exit code")
@click.option("-i", "--interactive", is_flag=True, help="Forward STDIN to the container (with --attach)")
@click.option("--detach-keys", default="ctrl-p,ctrl-q", metavar="KEYS", help="Key sequence that detaches")
@click.option("--sig-proxy/--no-sig-proxy", default=True, help="Forward signals to the container (with --attach)")
@click.option("--all", "all_", is_flag=True, help="Start all containers that are not running")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="Only containers that match (ps's filters, restart-policy= too); without names: all that match")
@click.argument("containers", nargs=-1)
@click.pass_obj
def start(state, attach: bool, interactive: bool, detach_keys: str, sig_proxy: bool, all_: bool,
          filters: tuple[str, ...], containers: tuple[str, ...]) -> None:
    """Start one or more containers."""
    if attach:
        if all_ or filters or len(containers) != 1:
            raise InvalidArgument("you cannot start and attach multiple containers at once")
        c = _mgr(state).get(containers[0])
        status = c.refresh()
        if status in ("running", "paused"):
            code = attach_and_start(c, stdin=interactive, tty=bool(c.config.get("tty")),
                                    detach_keys=parse_detach_keys(detach_keys), sig_proxy=sig_proxy, start=False)
        else:
            code = attach_and_start(c, stdin=interactive and bool(c.config.get("interactive")),
                                    tty=bool(c.config.get("tty")), detach_keys=parse_detach_keys(detach_keys),
                                    sig_proxy=sig_proxy)
        if code is not None:
            raise click.exceptions.Exit(code)
        return
    fails = _Failures()
    targets = _targets(state, containers, all_, filters=filters,
                       select=(lambda c: c.state() not in ("running", "paused")) if all_ or filters else None)
    for raw, c in targets:
        if isinstance(c, Exception):
            fails.add(c)
            continue
        try:
            c.start()
            click.echo(raw)
        except KpodError as exc:
            fails.add(exc)
    fails.exit()


def _simple(verb: str, action: Callable[[Any], None], containers, all_: bool, latest: bool, state,
            ignore: bool = False, select=None, filters: Iterable[str] = ()) -> None:
    fails = _Failures()
    for raw, c in _targets(state, containers, all_, latest, select=select, filters=filters):
        if isinstance(c, Exception):
            if ignore and isinstance(c, NotFound):
                continue
            fails.add(c)
            continue
        try:
            action(c)
            click.echo(raw)
        except NotFound as exc:
            if not ignore:
                fails.add(exc)
        except KpodError as exc:
            fails.add(exc)
    fails.exit()


@click.command(context_settings=_CTX)
@click.option("-t", "--time", "timeout", type=int, default=None, metavar="SECONDS",
              help="Seconds to wait before killing the container (default: its stop timeout, 10)")
@click.option("-a", "--all", "all_", is_flag=True, help="Stop all running containers")
@click.option("-l", "--latest", is_flag=True, help="Act on the latest container")
@click.option("-i", "--ignore", is_flag=True, help="Ignore errors when a container does not exist")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="Only containers that match (ps's filters, restart-policy= too); without names: all that match")
@click.argument("containers", nargs=-1)
@click.pass_obj
def stop(state, timeout: int | None, all_: bool, latest: bool, ignore: bool, filters: tuple[str, ...],
         containers: tuple[str, ...]) -> None:
    """Stop one or more containers: the stop signal (SIGTERM), then SIGKILL after the timeout."""
    _simple("stop", lambda c: c.stop(timeout), containers, all_, latest, state, ignore,
            select=(lambda c: c.state() in ("running", "paused", "created")) if all_ or filters else None,
            filters=filters)


@click.command(context_settings=_CTX)
@click.option("-s", "--signal", "sig", default="KILL", metavar="SIGNAL", help="Signal to send (default KILL)")
@click.option("-a", "--all", "all_", is_flag=True, help="Signal all running containers")
@click.option("-l", "--latest", is_flag=True, help="Act on the latest container")
@click.argument("containers", nargs=-1)
@click.pass_obj
def kill(state, sig: str, all_: bool, latest: bool, containers: tuple[str, ...]) -> None:
    """Send a signal to one or more running containers."""
    from ..oci import signal_number

    try:
        signal_number(sig)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
    _simple("kill", lambda c: c.kill(sig), containers, all_, latest, state,
            select=(lambda c: c.state() in ("running", "paused")) if all_ else None)


@click.command(context_settings=_CTX)
@click.option("-a", "--all", "all_", is_flag=True,
              help="Initialize all containers (those initialized already, or running, are left alone)")
@click.option("-l", "--latest", is_flag=True, help="Act on the latest container")
@click.argument("containers", nargs=-1)
@click.pass_obj
def init(state, all_: bool, latest: bool, containers: tuple[str, ...]) -> None:
    """Initialize containers: mount, network, OCI bundle and the runtime's create, not started."""
    def action(c) -> None:
        if c.refresh() in ("created", "running", "paused"):
            raise ContainerStateError(f"container {c.id} has already been created in runtime")
        c.init()

    _simple("init", action, containers, all_, latest, state,
            select=(lambda c: c.state() in ("configured", "stopped", "exited")) if all_ else None)


@click.command(context_settings=_CTX)
@click.option("-a", "--all", "all_", is_flag=True, help="Pause all running containers")
@click.option("-l", "--latest", is_flag=True, help="Act on the latest container")
@click.argument("containers", nargs=-1)
@click.pass_obj
def pause(state, all_: bool, latest: bool, containers: tuple[str, ...]) -> None:
    """Pause (freeze) all the processes of one or more containers."""
    _simple("pause", lambda c: c.pause(), containers, all_, latest, state,
            select=(lambda c: c.state() == "running") if all_ else None)


@click.command(context_settings=_CTX)
@click.option("-a", "--all", "all_", is_flag=True, help="Unpause all paused containers")
@click.option("-l", "--latest", is_flag=True, help="Act on the latest container")
@click.argument("containers", nargs=-1)
@click.pass_obj
def unpause(state, all_: bool, latest: bool, containers: tuple[str, ...]) -> None:
    """Unpause (thaw) one or more paused containers."""
    _simple("unpause", lambda c: c.unpause(), containers, all_, latest, state,
            select=(lambda c: c.state() == "paused") if all_ else None)


@click.command(context_settings=_CTX)
@click.option("-t", "--time", "timeout", type=int, default=None, metavar="SECONDS",
              help="Seconds to wait for stop before killing (default 10)")
@click.option("-a", "--all", "all_", is_flag=True, help="Restart all containers")
@click.option("--running", is_flag=True, help="With --all, only restart running containers")
@click.option("-l", "--latest", is_flag=True, help="Act on the latest container")
@click.argument("containers", nargs=-1)
@click.pass_obj
def restart(state, timeout: int | None, all_: bool, running: bool, latest: bool, containers: tuple[str, ...]) -> None:
    """Restart one or more containers (stop if running, then start)."""
    select = (lambda c: c.state() == "running") if (all_ and running) else None
    _simple("restart", lambda c: c.restart(timeout), containers, all_, latest, state, select=select)


# ---------------------------------------------------------------------------------------
# rm / wait / rename
# ---------------------------------------------------------------------------------------

@click.command(context_settings=_CTX)
@click.option("-f", "--force", is_flag=True, help="Remove running (or broken) containers too: kill them first")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all containers")
@click.option("-v", "--volumes", is_flag=True, help="Remove anonymous volumes (kpod removes them with the container anyway)")
@click.option("-t", "--time", "timeout", type=int, default=None, metavar="SECONDS",
              help="With --force, seconds to wait for stop before killing (default 0)")
@click.option("-i", "--ignore", is_flag=True, help="Ignore errors when a container does not exist")
@click.option("-l", "--latest", is_flag=True, help="Act on the latest container")
@click.option("--depend", is_flag=True,
              help="Remove the containers that join the container's namespaces first (recursively)")
@click.argument("containers", nargs=-1)
@click.pass_obj
def rm(state, force: bool, all_: bool, volumes: bool, timeout: int | None, ignore: bool, latest: bool,
       depend: bool, containers: tuple[str, ...]) -> None:
    """Remove one or more containers.

    A container whose namespaces others join is refused unless --depend removes them
    first; those named too are removed before it. Exit status: 0 all removed; 1 a
    container does not exist; 2 a container is running and --force was not given; 125
    another error.
    """
    fails = _Failures()
    done: set[str] = set()
    for raw, c in _dependents_first(_mgr(state), _targets(state, containers, all_, latest)):
        if isinstance(c, Exception):
            if isinstance(c, NotFound):
                if not ignore:
                    fails.add(c, 1)
                continue
            fails.add(c)
            continue
        if c.id in done:
            continue  # removed with a container it depends on
        try:
            removed = c.remove(force=force, volumes=volumes, timeout=timeout, depend=depend)
            done.update(removed)
            for cid in removed[:-1]:
                click.echo(cid)
            click.echo(raw)
        except NotFound as exc:
            if not ignore:
                fails.add(exc, 1)
        except KpodError as exc:
            fails.add(exc)
    fails.exit()


def _dependents_first(mgr, targets: list) -> list:
    """*targets* ((raw, Container or error) pairs) reordered so that a container comes
    after the targets that join its namespaces; otherwise in the given order."""
    by_id = {c.id: (raw, c) for raw, c in targets if not isinstance(c, Exception)}
    out: list = []
    seen: set[str] = set()

    def visit(raw, c) -> None:
        if c.id in seen:
            return
        seen.add(c.id)
        for dep in mgr.dependents(c.id):
            if dep in by_id:
                visit(*by_id[dep])
        out.append((raw, c))

    for raw, c in targets:
        if isinstance(c, Exception):
            out.append((raw, c))
        else:
            visit(raw, c)
    return out


@click.command(context_settings=_CTX)
@click.option("--condition", multiple=True, metavar="STATE",
              help="State to wait for: stopped (default), exited, created, running, paused")
@click.option("-i", "--interval", default="250ms", metavar="DURATION",
              help="Time between state checks (default 250ms)")
@click.option("-l", "--latest", is_flag=True, help="Act on the latest container")
@click.argument("containers", nargs=-1)
@click.pass_obj
def wait(state, condition: tuple[str, ...], interval: str, latest: bool, containers: tuple[str, ...]) -> None:
    """Wait for containers to stop and print their exit codes."""
    step = parse_duration(interval) if not interval.isdigit() else int(interval) / 1000.0
    fails = _Failures()
    for _raw, c in _targets(state, containers, latest=latest):
        if isinstance(c, Exception):
            fails.add(c)
            continue
        try:
            click.echo(c.wait(list(condition) or ["stopped"], interval=max(step, 0.01)))
        except KpodError as exc:
            fails.add(exc)
    fails.exit()


@click.command(context_settings=_CTX)
@click.argument("container")
@click.argument("new_name")
@click.pass_obj
def rename(state, container: str, new_name: str) -> None:
    """Rename a container."""
    _mgr(state).get(container).rename(new_name)


# ---------------------------------------------------------------------------------------
# ps
# ---------------------------------------------------------------------------------------

def _ps_record(c, st: dict, now: float, no_trunc: bool, size: bool) -> tuple[dict, dict]:
    """(JSON record, template record) for one container."""
    from ..containers import container_sizes, display_state, human_duration, human_size, status_text

    status = st["status"]
    args = list(c.config.get("args") or [])
    command = " ".join(args)
    status_str = status_text(status, st["exit_code"], c.started_at, st["finished_at"], now)
    state = display_state(status)
    created_human = f"{human_duration(now - c.created_at)} ago"
    js: dict[str, Any] = {
        "AutoRemove": bool(c.config.get("rm")),
        "Command": args,
        "CreatedAt": created_human,
        "Created": int(c.created_at),
        "Exited": state == "exited",
        "ExitedAt": int(st["finished_at"] or 0),
        "ExitCode": st["exit_code"] if st["exit_code"] is not None else 0,
        "Id": c.id,
        "Image": c.image_name,
        "ImageID": c.image_id,
        "IsInfra": False,
        "Labels": dict(c.config.get("labels") or {}) or None,
        "Mounts": [v.split(":")[1] for v in c.config.get("volumes") or [] if ":" in v],
        "Names": [c.name],
        "Namespaces": {},
        "Networks": sorted(c.config.get("networks") or {}),
        "Pid": c.pid if status in ("running", "paused") else 0,
        "Pod": "",
        "PodName": "",
        "Ports": None,
        "Restarts": c.restart_count,
        "Size": None,
        "StartedAt": int(c.started_at or 0),
        "State": state,
        "Status": status_str,
    }
    size_str = ""
    if size:
        rw, root = container_sizes(c)
        js["Size"] = {"rwSize": rw, "rootFsSize": root}
        size_str = f"{human_size(rw)} (virtual {human_size(root)})"
    cmd_short = command if no_trunc or len(command) <= 17 else command[:17] + "..."
    from datetime import datetime

    created_at = datetime.fromtimestamp(c.created_at).astimezone().strftime("%Y-%m-%d %H:%M:%S.%f %z %Z")
    tpl = dict(js)
    tpl.update({
        "ID": c.id if no_trunc else c.id[:12],
        "Command": cmd_short,
        "CreatedHuman": created_human,
        "CreatedAt": created_at,
        "RunningFor": created_human,
        "Names": c.name,
        "Ports": "",
        "Size": size_str,
        "Networks": ",".join(js["Networks"]),
        "Mounts": ",".join(js["Mounts"]),
        "Label": dict(c.config.get("labels") or {}),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted((c.config.get("labels") or {}).items())),
    })
    if hasattr(c.mgr.network_provider, "ps_fields"):
        c.mgr.network_provider.ps_fields(c, js, tpl)  # Ports, Pod, PodName
    return js, tpl


def _parse_filters(filters: Iterable[str]) -> dict[str, list[str]]:
    """``KEY=VALUE`` filters of ps, start and stop -> {key: [values]}; unknown keys and
    bad values are refused here, before any container is looked at."""
    from ..containers import RESTART_POLICIES

    out: dict[str, list[str]] = {}
    valid = ("status", "name", "label", "ancestor", "exited", "id", "before", "since", "pod", "network",
             "restart-policy")
    for f in filters:
        key, sep, value = f.partition("=")
        key = key.strip().lower()
        if not sep or key not in valid:
            raise InvalidArgument(f"invalid filter {f!r}: expected one of {', '.join(k + '=' for k in valid)}")
        if key == "name":
            try:
                re.compile(value)
            except re.error as exc:
                raise InvalidArgument(f"invalid filter name={value!r}: {exc}") from None
        if key == "status" and value not in _PS_STATES:
            raise InvalidArgument(f"invalid filter status={value!r}: expected one of {', '.join(_PS_STATES)}")
        if key == "exited":
            try:
                int(value)
            except ValueError:
                raise InvalidArgument(f"invalid filter exited={value!r}: expected an exit code") from None
        if key == "restart-policy" and value not in RESTART_POLICIES:
            raise InvalidArgument(f"invalid filter restart-policy={value!r}: expected one of {', '.join(RESTART_POLICIES)}")
        out.setdefault(key, []).append(value)
    return out


_PS_STATES = ("created", "initialized", "running", "paused", "exited", "stopped", "configured", "unknown", "removing")
#: status= filter values that name kpod's own states: the state podman shows for them
_STATUS_NAMES = {"configured": "created", "stopped": "exited"}


def _match_filters(c, st: dict, flt: dict[str, list[str]], mgr, id_order: dict[str, float]) -> bool:
    from ..containers import display_state

    for key, values in flt.items():
        if key == "status":
            if display_state(st["status"]) not in {_STATUS_NAMES.get(v, v) for v in values}:
                return False
        elif key == "restart-policy":
            if c.restart_policy not in values:
                return False
        elif key == "name":
            if not any(re.search(v, c.name) for v in values):
                return False
        elif key == "id":
            if not any(c.id.startswith(v) for v in values):
                return False
        elif key == "label":
            labels = c.config.get("labels") or {}
            for v in values:  # every label filter must match
                k, sep, val = v.partition("=")
                if k not in labels or (sep and labels[k] != val):
                    return False
        elif key == "exited":
            if display_state(st["status"]) != "exited":
                return False
            if st["exit_code"] not in {int(v) for v in values}:
                return False
        elif key == "ancestor":
            ok = False
            for v in values:
                if v in (c.image_id, c.image_name) or c.image_id.startswith(v.replace("sha256:", "")):
                    ok = True
                    break
                try:
                    img = mgr.images.find(v)
                except KpodError:
                    img = None
                if img is not None and img.id == c.image_id:
                    ok = True
                    break
                if c.image_name and (c.image_name.split("/", 1)[-1] == v or c.image_name.split("/", 1)[-1].split(":")[0] == v):
                    ok = True
                    break
            if not ok:
                return False
        elif key == "pod":
            pod_id = c.config.get("pod") or ""
            if not pod_id or not any(v == pod_id or (v and pod_id.startswith(v)) or mgr.rt.pods.exists(v)
                                     and mgr.rt.pods.get(v).id == pod_id for v in values):
                return False
        elif key == "network":
            nets = c.config.get("networks") or ({mgr.config.default_network: {}}
                                                if c.config.get("network_mode") == "bridge" else {})
            if not any(v in nets for v in values):
                return False
        elif key in ("before", "since"):
            for v in values:
                try:
                    ref = mgr.get(v)
                except KpodError:
                    raise InvalidArgument(f"invalid filter {key}={v}: no such container") from None
                if key == "before" and not c.created_at < ref.created_at:
                    return False
                if key == "since" and not c.created_at > ref.created_at:
                    return False
    return True


_SORT_KEYS = ("command", "created", "id", "image", "names", "runningfor", "size", "status")


@click.command(context_settings=_CTX)
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers (default: running ones)")
@click.option("-q", "--quiet", is_flag=True, help="Print container IDs only")
@click.option("-l", "--latest", is_flag=True, help="Show the latest container created (all states)")
@click.option("-n", "--last", type=int, default=-1, metavar="N", help="Show the N most recently created containers")
@click.option("-s", "--size", is_flag=True, help="Show container sizes")
@click.option("--no-trunc", is_flag=True, help="Do not truncate IDs and commands")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="status=, name=, label=, ancestor=, exited=, id=, before=, since=, pod=, network=, restart-policy=")
@click.option("--sort", default="created", type=click.Choice(_SORT_KEYS), help="Sort the output (default created)")
@click.option("--format", "fmt", metavar="FORMAT", help="'json' or a Go template like '{{.ID}} {{.Names}}'")
@click.option("--noheading", is_flag=True, help="Do not print the header row")
@click.option("-p", "--pod", "show_pod", is_flag=True, help="Show the pod (POD ID, PODNAME) of each container")
@click.pass_obj
def ps(state, all_: bool, quiet: bool, latest: bool, last: int, size: bool, no_trunc: bool,
       filters: tuple[str, ...], sort: str, fmt: str | None, noheading: bool, show_pod: bool = False) -> None:
    """List containers."""
    mgr = _mgr(state)
    flt = _parse_filters(filters)
    now = time.time()
    cs = mgr.list()  # newest first
    if latest:
        last = 1
    if last >= 0:
        cs = cs[:last]
    rows = []
    for c in cs:
        try:
            st = c.observe_repaired()
        except NotFound:
            continue
        if not (all_ or latest or last >= 0 or flt) and st["status"] != "running":
            continue
        if flt and not _match_filters(c, st, flt, mgr, {}):
            continue
        rows.append((c, st))
    records = [(_ps_record(c, st, now, no_trunc, size), c, st) for c, st in rows]
    if sort != "created":
        keyf = {
            "command": lambda r: r[0][1]["Command"],
            "id": lambda r: r[1].id,
            "image": lambda r: r[1].image_name or "",
            "names": lambda r: r[1].name,
            "runningfor": lambda r: -r[1].created_at,
            "size": lambda r: (r[0][0]["Size"] or {}).get("rwSize", 0),
            "status": lambda r: r[0][1]["Status"],
        }[sort]
        records.sort(key=keyf)
    if quiet:
        for (_js, tpl), _c, _st in records:
            click.echo(tpl["ID"])
        return
    if fmt == "json":
        click.echo(to_json([js for (js, _t), _c, _st in records]))
        return
    if fmt:
        out = render_many(fmt, [t for (_j, t), _c, _st in records], noheading=noheading)
        if out:
            click.echo(out)
        return
    from .formatting import align_tabs

    headers = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"] + (["SIZE"] if size else [])
    headers += ["POD ID", "PODNAME"] if show_pod else []
    lines = [] if noheading else ["\t".join(headers)]
    for (_js, t), _c, _st in records:
        cells = [t["ID"], t["Image"] or "", t["Command"], t["CreatedHuman"], t["Status"], t["Ports"], t["Names"]]
        if size:
            cells.append(t["Size"])
        if show_pod:
            cells += [t["Pod"] if no_trunc else t["Pod"][:12], t["PodName"]]
        lines.append("\t".join(cells))
    if lines:
        click.echo(align_tabs(lines, pad=2))


# ---------------------------------------------------------------------------------------
# logs
# ---------------------------------------------------------------------------------------

def _log_time(stamp: str) -> float:
    try:
        return parse_time(stamp)
    except InvalidArgument:
        return 0.0


class _LogReader:
    """Incremental reader of one k8s-file log (``<time> <stream> <P|F> <text>``)."""

    def __init__(self, c, prefix: str, timestamps: bool, since: float | None, until: float | None) -> None:
        self.c = c
        self.prefix = prefix
        self.timestamps = timestamps
        self.since = since
        self.until = until
        self.pos = 0
        self.rest = b""
        self.partial = {"stdout": False, "stderr": False}

    def lines(self) -> list[tuple[str, bytes]]:
        try:
            with open(self.c.log_path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
                self.pos = f.tell()
        except FileNotFoundError:
            return []
        data = self.rest + data
        parts = data.split(b"\n")
        self.rest = parts.pop()
        out = []
        for line in parts:
            fields = line.split(b" ", 3)
            if len(fields) < 3:
                continue
            stamp, stream, tag = fields[0].decode(errors="replace"), fields[1].decode(errors="replace"), fields[2]
            text = fields[3] if len(fields) > 3 else b""
            if self.since is not None or self.until is not None:
                t = _log_time(stamp)
                if self.since is not None and t < self.since:
                    continue
                if self.until is not None and t > self.until:
                    continue
            start_of_line = not self.partial.get(stream, False)
            head = b""
            if start_of_line:
                head = self.prefix.encode() + ((stamp + " ").encode() if self.timestamps else b"")
            full = tag == b"F"
            self.partial[stream] = not full
            out.append((stream, head + text + (b"\n" if full else b"")))
        return out


def _emit(stream: str, data: bytes) -> None:
    fd = sys.stderr.fileno() if stream == "stderr" else sys.stdout.fileno()
    _write_all(fd, data)


@click.command(context_settings=_CTX)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until the container exits")
@click.option("--since", metavar="TIME", help="Only output after TIME (RFC 3339, Unix time or a duration like 10m)")
@click.option("--until", metavar="TIME", help="Only output before TIME")
@click.option("--tail", type=int, default=-1, metavar="N", help="Only the last N lines (default all)")
@click.option("-t", "--timestamps", is_flag=True, help="Prefix each line with its time")
@click.option("-n", "--names", is_flag=True, help="Prefix each line with the container's name")
@click.option("-l", "--latest", is_flag=True, help="Act on the latest container")
@click.argument("containers", nargs=-1)
@click.pass_obj
def logs(state, follow: bool, since: str | None, until: str | None, tail: int, timestamps: bool, names: bool,
         latest: bool, containers: tuple[str, ...]) -> None:
    """Print the output of one or more containers (conmon's k8s-file log)."""
    now = time.time()
    since_t = parse_time(since, now) if since else None
    until_t = parse_time(until, now) if until else None
    targets = []
    for _raw, c in _targets(state, containers, latest=latest):
        if isinstance(c, Exception):
            raise c
        targets.append(c)
    multi = len(targets) > 1
    readers = []
    for c in targets:
        prefix = f"{c.name} " if names else (f"{c.short_id} " if multi else "")
        readers.append(_LogReader(c, prefix, timestamps, since_t, until_t))
    sys.stdout.flush()
    for r in readers:
        chunks = r.lines()
        if tail >= 0:
            # count full lines from the end
            kept, n = [], 0
            for stream, data in reversed(chunks):
                if data.endswith(b"\n"):
                    n += 1
                    if n > tail:
                        break
                kept.append((stream, data))
            chunks = list(reversed(kept))
        for stream, data in chunks:
            _emit(stream, data)
    if not follow:
        return
    active = list(readers)
    while active:
        time.sleep(0.1)
        still = []
        for r in active:
            try:
                r.c.reload()
                running = r.c.refresh() in ("running", "paused", "created")
            except NotFound:
                running = False
            for stream, data in r.lines():
                if until_t is not None and time.time() > until_t:
                    continue
                _emit(stream, data)
            if running and (until_t is None or time.time() <= until_t):
                still.append(r)
            else:
                for stream, data in r.lines():  # what conmon wrote last
                    _emit(stream, data)
        active = still


# ---------------------------------------------------------------------------------------
# inspect
# ---------------------------------------------------------------------------------------

def _image_inspect(rt, img) -> dict[str, Any]:
    """A container engine's view of an image (the image commands own the full version)."""
    try:
        from . import cmd_images  # noqa: F401

        fn = getattr(cmd_images, "inspect_data", None)
        if fn is not None:
            return fn(rt, img)
    except ImportError:
        pass
    cfg = img.config
    return {
        "Id": img.id,
        "Digest": img.digest,
        "RepoTags": img.repo_tags(),
        "RepoDigests": img.repo_digests(),
        "Created": cfg.get("created"),
        "Config": cfg.get("config") or {},
        "Architecture": cfg.get("architecture"),
        "Os": cfg.get("os"),
        "Size": img.size,
        "RootFS": cfg.get("rootfs"),
        "History": cfg.get("history"),
    }


#: _found_by_name's answer when the name was ambiguous and the error is recorded
_AMBIGUOUS = object()


def _found_by_name(inspect_one: Callable[[], Any], only_kind: bool, errors: list[str]):
    """inspect's lookup of one kind: the record, None when not found, _AMBIGUOUS when the
    name is a prefix of several (an error when that kind was asked for, else not found)."""
    try:
        return inspect_one()
    except NotFound:
        return None
    except KpodError as exc:  # a prefix of several names or IDs
        if only_kind:
            errors.append(exc.message)
            return _AMBIGUOUS
        return None


@click.command(context_settings=_CTX)
@click.option("-f", "--format", "fmt", metavar="FORMAT", help="'json' (default) or a Go template like '{{.State.Status}}'")
@click.option("-t", "--type", "kind", default="all",
              type=click.Choice(["container", "image", "volume", "network", "pod", "all"]),
              help="Which kind of object to inspect (default all: containers, images, volumes, networks, then pods)")
@click.option("-s", "--size", is_flag=True, help="Add the container's sizes (SizeRw, SizeRootFs)")
@click.option("-l", "--latest", is_flag=True, help="Inspect the latest container")
@click.argument("names", nargs=-1)
@click.pass_obj
def inspect(state, fmt: str | None, kind: str, size: bool, latest: bool, names: tuple[str, ...]) -> None:
    """Display the configuration and state of containers (or images, volumes, networks, pods) as JSON."""
    from ..containers import inspect_container

    rt = state.runtime
    mgr = rt.containers
    if latest:
        if names:
            raise InvalidArgument("--latest takes no names")
        if kind in ("image", "volume", "network"):
            raise InvalidArgument(f'latest is not supported for type "{kind}"')
        if kind == "pod":
            from .bodies import pod_targets

            names = tuple(pid for pid, _pod in pod_targets(state, (), latest=True))
            if not names:
                raise NotFound("no pods to inspect")
        else:
            names = (mgr.latest().id,)
    if not names:
        raise InvalidArgument("you must provide at least one name or ID")
    results = []
    errors = []
    for n in names:
        data = None
        if kind in ("container", "all"):
            try:
                data = inspect_container(mgr.get(n), size=size)
            except NotFound:
                data = None
        if data is None and kind in ("image", "all"):
            try:
                img = rt.images.find(n)
            except KpodError:
                img = None
            if img is not None:
                data = _image_inspect(rt, img)
        if data is None and kind in ("volume", "all"):  # podman's order: then networks, pods
            data = _found_by_name(lambda: rt.volumes.get(n).inspect(), kind == "volume", errors)
            if data is _AMBIGUOUS:
                continue
        if data is None and kind in ("network", "all"):
            from .cmd_network import inspect_network

            try:
                data = inspect_network(state, n)
            except KpodError:  # no network backend installed: no networks
                if kind == "network":
                    raise
        if data is None and kind in ("pod", "all"):
            data = _found_by_name(lambda: rt.pods.get(n).inspect(), kind == "pod", errors)
            if data is _AMBIGUOUS:
                continue
        if data is None:
            what = {"container": "no such container", "image": "no such image", "volume": "no such volume",
                    "network": "no such network", "pod": "no such pod", "all": "no such object"}[kind]
            errors.append(f'{what}: "{n}"' if kind == "all" else f"{what} {n}")
            continue
        results.append(data)
    if fmt and fmt != "json":
        tpl = Template(fmt)
        for r in results:
            click.echo(tpl.render(r))
    else:
        click.echo(to_json(results))
    if errors:
        for e in errors[:-1]:
            _echo_err(e)
        raise NotFound(errors[-1])


# ---------------------------------------------------------------------------------------
# the container group: exists, prune, cleanup and aliases
# ---------------------------------------------------------------------------------------

class ContainerGroup(click.Group):
    """``kpod container``: its own commands plus aliases for the top-level ones
    (``container ls`` = ``ps``...). Aliases resolve to the same command objects; they are
    listed in the help and in kpod-container(1), not as separate commands."""

    ALIASES = {
        "create": "create", "init": "init", "run": "run", "start": "start", "stop": "stop", "kill": "kill", "pause": "pause",
        "unpause": "unpause", "restart": "restart", "rm": "rm", "remove": "rm", "wait": "wait", "ps": "ps",
        "ls": "ps", "list": "ps", "logs": "logs", "rename": "rename", "inspect": "inspect",
    }
    #: aliases of the commands in cmd_containers_more (imported on first use): alias -> (command, attribute)
    MORE_ALIASES = {
        "attach": ("attach", "attach"), "commit": ("commit", "commit"), "cp": ("cp", "cp"), "diff": ("diff", "diff"),
        "exec": ("exec", "exec_"), "export": ("export", "export"), "mount": ("mount", "mount"),
        "stats": ("stats", "stats"), "top": ("top", "top"), "umount": ("umount", "umount"),
        "unmount": ("umount", "umount"),
    }

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = super().get_command(ctx, name)
        if cmd is not None:
            return cmd
        if name in self.MORE_ALIASES:
            from . import cmd_containers_more

            return getattr(cmd_containers_more, self.MORE_ALIASES[name][1])
        target = self.ALIASES.get(name)
        if target is None:
            return None
        return globals()[target]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_commands(ctx, formatter)
        rows = []
        for alias, target in sorted([*self.ALIASES.items(), *((a, t[0]) for a, t in self.MORE_ALIASES.items())]):
            rows.append((alias, f"= kpod {target}"))
        with formatter.section("Aliases"):
            formatter.write_dl(rows)


@click.group(cls=ContainerGroup, context_settings=_CTX)
def container() -> None:
    """Manage containers (kpod container ls, rm, start... are the top-level commands)."""


@container.command("exists", context_settings=_CTX)
@click.argument("name")
@click.pass_obj
def container_exists(state, name: str) -> None:
    """Exit 0 if the container exists, 1 if not."""
    raise click.exceptions.Exit(0 if _mgr(state).exists(name) else 1)


@container.command("prune", context_settings=_CTX)
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation")
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="label=KEY[=VALUE], label!=KEY[=VALUE] or until=TIME")
@click.pass_obj
def container_prune(state, force: bool, filters: tuple[str, ...]) -> None:
    """Remove all stopped (exited and created) containers."""
    flt = PruneFilter(filters)
    if not force:
        click.echo("WARNING! This will remove all non running containers.")
        answer = click.prompt("Are you sure you want to continue? [y/N]", default="", show_default=False,
                              prompt_suffix=" ")
        if answer.strip().lower() not in ("y", "yes"):
            return
    errors: list = []
    for cid in _mgr(state).prune(lambda c: flt.match(c.config.get("labels"), c.created_at), errors):
        click.echo(cid)
    fails = _Failures()
    for _cid, exc in errors:
        fails.add(exc)
    fails.exit()


@container.command("cleanup", hidden=True, context_settings=_CTX)
@click.option("--rm", "remove", is_flag=True, help="Remove the container after cleaning it up")
@click.argument("container_id")
@click.pass_obj
def container_cleanup(state, remove: bool, container_id: str) -> None:
    """Clean up after a container exits (conmon's exit command): record the exit code,
    unmount the rootfs, delete the runtime's state, then --rm or the restart policy."""
    try:
        c = _mgr(state).get(container_id)
    except NotFound:
        return  # already removed (run --rm, rm -f)
    try:
        c.cleanup(remove=remove)
    except NotFound:
        return
    except Exception as exc:
        # conmon discards our output: keep a trace in the runroot
        try:
            path = os.path.join(state.runtime.config.runroot, "kpod-cleanup.log")
            with open(path, "a") as f:
                f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {container_id}: {exc}\n")
        except OSError:
            pass
        raise
