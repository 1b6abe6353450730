"""The bodies of the most frequent commands, without click: ``create``, ``run`` (with the
attach loop ``start -a`` and ``attach`` share), ``pod create`` and ``pod start``.

:mod:`libpod_core.cli.cmd_containers` and :mod:`libpod_core.cli.cmd_pods` declare the flags
and call these with what click parsed; :mod:`libpod_core.cli.fast` calls them with the same
values parsed without importing click (a ``kpod run`` does not pay for click's import).
Nothing here may import click.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Iterable

from ..errors import InvalidArgument, KpodError, NotFound
from .base import CommandExit, Failures, echo, echo_err, lookup_each


def _kv_list(items: Iterable[str], what: str, need_value: bool = False) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key or (need_value and not sep):
            raise InvalidArgument(f"invalid {what} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def network_options_from_flags(kw: dict[str, Any]) -> dict[str, Any]:
    """CreateOptions keyword arguments from the flags of :func:`network_flags`."""
    from ..network import parse_publish

    ports: list[dict] = []
    for spec in kw.get("publish") or ():
        ports += parse_publish(spec)
    pods = list(dict.fromkeys(kw.get("pods") or ()))
    if len(pods) > 1:
        raise InvalidArgument(f"a container can only join one pod (--pod {' --pod '.join(pods)})")
    return {
        "ports": ports,
        "publish_all": bool(kw.get("publish_all")),
        "ip": kw.get("ip"),
        "mac_address": kw.get("mac_address"),
        "network_aliases": list(dict.fromkeys(kw.get("network_aliases") or ())),
        "dns": list(kw.get("dns") or ()),
        "dns_search": list(kw.get("dns_search") or ()),
        "dns_option": list(kw.get("dns_option") or ()),
        "add_host": list(kw.get("add_host") or ()),
        "no_hosts": bool(kw.get("no_hosts")),
        "pod": pods[0] if pods else None,
    }


def options_from_flags(image: str, command: tuple[str, ...], kw: dict[str, Any]):
    from ..containers import CreateOptions

    labels = _kv_list(kw["label"], "label")
    annotations = _kv_list(kw["annotation"], "annotation", need_value=True)
    sysctls = _kv_list(kw["sysctl"], "sysctl", need_value=True)
    return CreateOptions(
        image=image,
        command=list(command) if command else None,
        name=kw["name"],
        entrypoint=kw["entrypoint"],
        env=list(kw["env"]),
        env_files=list(kw["env_file"]),
        workdir=kw["workdir"],
        user=kw["user"],
        group_add=list(kw["group_add"]),
        hostname=kw["hostname"],
        tty=kw["tty"],
        interactive=kw["interactive"],
        volumes=list(kw["volume"]),
        mounts=list(kw["mount"]),
        tmpfs=list(kw["tmpfs"]),
        image_volume=kw["image_volume"],
        read_only=kw["read_only"],
        cap_add=list(kw["cap_add"]),
        cap_drop=list(kw["cap_drop"]),
        privileged=kw["privileged"],
        security_opt=list(kw["security_opt"]),
        memory=kw["memory"],
        memory_swap=kw["memory_swap"],
        memory_reservation=kw["memory_reservation"],
        cpus=kw["cpus"],
        cpu_shares=kw["cpu_shares"],
        cpuset_cpus=kw["cpuset_cpus"],
        cpuset_mems=kw["cpuset_mems"],
        pids_limit=kw["pids_limit"],
        ulimits=list(kw["ulimit"]),
        shm_size=kw["shm_size"],
        sysctls=sysctls,
        oom_score_adj=kw["oom_score_adj"],
        ipc=kw["ipc"],
        uts=kw["uts"],
        pid=kw["pid"],
        cgroup_parent=kw["cgroup_parent"],
        labels=labels,
        annotations=annotations,
        init=kw["init"],
        restart=kw["restart"],
        pull=kw["pull"],
        network=kw["network"],
        **network_options_from_flags(kw),
        rm=kw["rm"],
        stop_signal=kw["stop_signal"],
        stop_timeout=kw["stop_timeout"],
        create_command=["kpod", *sys.argv[1:]] if sys.argv else [],
    )


def create_container(mgr, opts, **kw):
    """``create``/``run``: through the pods module only with ``--pod`` (which may make one)."""
    if opts.pod:
        from ..pods import create_with_pod

        return create_with_pod(mgr, opts, **kw)
    return mgr.create(opts, **kw)


def create(state, image: str, command: tuple[str, ...], **kw: Any) -> None:
    """``kpod create``: prints the new container's ID."""
    c = create_container(state.runtime.containers, options_from_flags(image, command, kw))
    echo(c.id)


def run(state, image: str, command: tuple[str, ...], detach: bool, detach_keys: str, sig_proxy: bool,
        **kw: Any) -> None:
    """Run COMMAND in a new container from IMAGE.

    Exits with the container's exit code; 125 when kpod fails, 126 when the command cannot
    be invoked, 127 when it is not found.
    """
    opts = options_from_flags(image, command, kw)
    if detach and opts.rm and opts.restart not in ("no", ""):
        raise InvalidArgument('the --rm option conflicts with --restart, when the restart policy is not "" and "no"')
    keys = parse_detach_keys(detach_keys)
    mgr = state.runtime.containers
    c = create_container(mgr, opts, keep_mounted=True)
    try:
        if detach:
            c.start()
            echo(c.id)
            return
        code = attach_and_start(c, stdin=opts.interactive, tty=opts.tty, detach_keys=keys, sig_proxy=sig_proxy)
    except BaseException:
        if opts.rm:
            _quiet_remove(c)
        else:
            _release_mount(c)
        raise
    if code is None:  # detached with the detach keys
        return
    if opts.rm:
        _quiet_remove(c)
    raise CommandExit(code)


def _quiet_remove(c) -> None:
    try:
        c.remove(force=True)
    except NotFound:
        pass
    except KpodError as exc:
        echo_err(exc.message)


def _release_mount(c) -> None:
    """run's create kept the rootfs mounted for start; give it back when start failed."""
    try:
        with c.locked():
            if c.row["status"] == "configured":
                c.unmount()
    except KpodError:
        pass


# ---------------------------------------------------------------------------------------
# attaching: stream stdio over conmon's attach socket
# ---------------------------------------------------------------------------------------

def parse_detach_keys(spec: str) -> bytes:
    """``ctrl-p,ctrl-q`` -> b"\\x10\\x11"; "" disables detaching."""
    out = bytearray()
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        low = part.lower()
        if low.startswith("ctrl-") and len(low) == 6:
            ch = low[5]
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
                continue
            codes = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}
            if ch in codes:
                out.append(codes[ch])
                continue
        elif len(part) == 1:
            out.append(ord(part))
            continue
        raise InvalidArgument(f"invalid detach keys {spec!r}: expected a list like ctrl-p,ctrl-q")
    return bytes(out)


def _write_all(fd: int, data: bytes) -> None:
    from ..conmon import write_all  # conmon is imported lazily: keep 'kpod ps' light

    write_all(fd, data)


def _terminal_size() -> tuple[int, int] | None:
    """(rows, columns) of the terminal on stdout or stdin, if any."""
    for fd in (sys.stdout.fileno(), sys.stdin.fileno()):
        try:
            if os.isatty(fd):
                size = os.get_terminal_size(fd)
                if size.lines and size.columns:
                    return size.lines, size.columns
        except OSError:
            continue
    return None


def attach_and_start(c, *, stdin: bool, tty: bool, detach_keys: bytes = b"\x10\x11", sig_proxy: bool = True,
                     start: bool = True) -> int | None:
    """Initialise *c*, connect to its attach socket, start it and stream until it exits.
    Returns the exit code, or None when the user detached."""
    import signal
    import termios
    import tty as ttymod

    from .. import conmon

    in_fd = sys.stdin.fileno() if stdin else None
    raw_saved = None
    old_handlers: dict[int, Any] = {}

    def resize(*_a) -> None:
        size = _terminal_size()
        if size:
            conmon.resize(c.bundle, *size)

    if start:
        c.init(console_size=_terminal_size() if tty else None)
    sock = conmon.connect_attach(c.attach_path)

    def proxy(signum, _frame) -> None:
        try:
            c.mgr.runtime_hook(c.runtime).runtime_kill(container_id=c.id, signal=signum, all_processes=False)
        except KpodError:
            pass

    try:
        if tty and in_fd is not None and os.isatty(in_fd):
            raw_saved = termios.tcgetattr(in_fd)
            ttymod.setraw(in_fd)
        if tty:
            old_handlers[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, resize)
        elif sig_proxy:
            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
                old_handlers[s] = signal.signal(s, proxy)
        if start:
            c.start()
        if tty:
            resize()
        out_fd, err_fd = sys.stdout.fileno(), sys.stderr.fileno()
        sys.stdout.flush()
        if not conmon.relay(sock, in_fd=in_fd, out_fd=out_fd, err_fd=err_fd, detach_keys=detach_keys, tty=tty):
            return None  # detached: the container goes on
    finally:
        if raw_saved is not None:
            termios.tcsetattr(in_fd, termios.TCSADRAIN, raw_saved)
        for s, h in old_handlers.items():
            signal.signal(s, h)
        sock.close()
    return c.wait()


# ---------------------------------------------------------------------------------------
# pods
# ---------------------------------------------------------------------------------------

def pod_targets(state, names: Iterable[str], all_: bool = False, latest: bool = False):
    """(raw input, Pod or exception) for NAME arguments, --all or --latest."""
    mgr = state.runtime.pods
    names = list(names)
    if all_ or latest:
        if names:
            raise InvalidArgument("--all and --latest take no pod names")
        pods = mgr.list()
        return [(p.id, p) for p in (pods if all_ else pods[:1])]
    if not names:
        raise InvalidArgument("you must provide at least one pod name or ID")
    return lookup_each(mgr, names)


def each_pod(state, names, all_: bool, latest: bool, action: Callable[[Any], list]) -> None:
    """Run *action* on each pod; print the IDs of those it went through for."""
    fails = Failures()
    for raw, p in pod_targets(state, names, all_, latest):
        if isinstance(p, Exception):
            fails.add(p)
            continue
        try:
            errors = action(p) or []
        except KpodError as exc:
            fails.add(exc)
            continue
        for c, exc in errors:
            fails.add(KpodError(f"{exc.message} (container {c.name})", exit_code=exc.exit_code))
        if not errors:
            echo(p.id)
    fails.exit()


def pod_create(state, name: str | None, publish: tuple[str, ...], infra: bool, infra_image: str | None,
               infra_command: str | None, infra_name: str | None, share: str | None,
               hostname: str | None, label: tuple[str, ...], cgroup_parent: str | None, cpus: str | None,
               memory: str | None, network: str | None, ip: str | None, mac_address: str | None,
               dns: tuple[str, ...], dns_search: tuple[str, ...], dns_option: tuple[str, ...],
               add_host: tuple[str, ...], no_hosts: bool) -> None:
    """``kpod pod create``: prints the new pod's ID."""
    from ..network import parse_publish
    from ..pods import PodOptions

    ports: list[dict] = []
    for spec in publish:
        ports += parse_publish(spec)
    opts = PodOptions(
        name=name, infra=infra, share=share, hostname=hostname, labels=_kv_list(label, "label"),
        cgroup_parent=cgroup_parent, cpus=cpus, memory=memory, network=network, ports=ports, ip=ip,
        mac_address=mac_address, dns=list(dns), dns_search=list(dns_search), dns_option=list(dns_option),
        add_host=list(add_host), no_hosts=no_hosts, create_command=["kpod", *sys.argv[1:]] if sys.argv else [],
        infra_image=infra_image, infra_command=infra_command, infra_name=infra_name,
    )
    echo(state.runtime.pods.create(opts).id)


def pod_start(state, all_: bool, latest: bool, names: tuple[str, ...]) -> None:
    """``kpod pod start``: the infra container, then every container of the pod."""
    each_pod(state, names, all_, latest, lambda p: p.start())
