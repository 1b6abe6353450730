"""More container commands: exec, attach, cp, mount, umount, diff, export, stats, top and
commit (also reachable as ``kpod container <name>``).

Flags, output and exit codes follow podman's. The logic lives in :mod:`libpod_core.execs`,
:mod:`libpod_core.copyfiles`, :mod:`libpod_core.ctrstorage` and :mod:`libpod_core.ctrinfo`.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click

from ..errors import ContainerStateError, InvalidArgument, KpodError, NotFound
from .cmd_containers import _CTX, _RUN_CTX, _Failures, _mgr, _targets, _terminal_size, parse_detach_keys
from .formatting import Template, render_many, to_json


def _one(state, name: str | None, latest: bool):
    mgr = _mgr(state)
    if latest:
        if name:
            raise InvalidArgument("--latest and a container name cannot be used together")
        return mgr.latest()
    if not name:
        raise InvalidArgument("you must provide a container name or ID")
    return mgr.get(name)


# ---------------------------------------------------------------------------------------
# exec
# ---------------------------------------------------------------------------------------

@click.command("exec", context_settings=_RUN_CTX)
@click.option("-d", "--detach", is_flag=True, help="Run the command in the background; print the exec session ID")
@click.option("--detach-keys", default="ctrl-p,ctrl-q", metavar="KEYS",
              help="Key sequence that detaches from an interactive session (default ctrl-p,ctrl-q)")
@click.option("-e", "--env", multiple=True, metavar="KEY=VALUE", help="Set an environment variable")
@click.option("--env-file", multiple=True, metavar="FILE", help="Read environment variables from a file")
@click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open and forward it to the command")
@click.option("-l", "--latest", is_flag=True, help="Act on the latest container")
@click.option("--privileged", is_flag=True, help="Give the command all capabilities")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY")
@click.option("-u", "--user", metavar="USER[:GROUP]", help="Run as this user (name or UID)")
@click.option("-w", "--workdir", metavar="DIR", help="Working directory for the command")
@click.argument("container", required=False)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def exec_(state, detach: bool, detach_keys: str, env: tuple[str, ...], env_file: tuple[str, ...], interactive: bool,
          latest: bool, privileged: bool, tty: bool, user: str | None, workdir: str | None, container: str | None,
          command: tuple[str, ...]) -> None:
    """Run COMMAND in a running CONTAINER.

    Exits with the command's exit code; 125 when kpod fails, 126 when the command cannot be
    invoked, 127 when it is not found.
    """
    import signal
    import termios
    import tty as ttymod

    from .. import execs

    if latest:
        command = ((container,) if container else ()) + command
        container = None
    keys = parse_detach_keys(detach_keys)
    c = _one(state, container, latest)
    if not command:
        raise InvalidArgument("you must provide a command to exec")
    opts = execs.ExecOptions(command=list(command), env=list(env), env_files=list(env_file), user=user,
                             workdir=workdir, tty=tty, interactive=interactive, privileged=privileged,
                             detach=detach)
    sess = execs.create_session(c, opts, _terminal_size() if tty else None)
    try:
        _pid, sock, sync_r = sess.start(attach=not detach)
    except BaseException:
        sess.remove()
        raise
    c.mgr.event("exec", c)
    if detach:
        os.close(sync_r)
        click.echo(sess.id)
        return
    in_fd = sys.stdin.fileno() if interactive else None
    saved = None
    old_winch = None
    try:
        if tty and in_fd is not None and os.isatty(in_fd):
            saved = termios.tcgetattr(in_fd)
            ttymod.setraw(in_fd)
        if tty:
            def resize(*_a) -> None:
                size = _terminal_size()
                if size:
                    sess.resize(*size)

            old_winch = signal.signal(signal.SIGWINCH, resize)
            resize()
        sys.stdout.flush()
        finished = execs.stream(sess, sock, in_fd=in_fd, out_fd=sys.stdout.fileno(), err_fd=sys.stderr.fileno(),
                                detach_keys=keys, tty=tty)
    finally:
        if saved is not None:
            termios.tcsetattr(in_fd, termios.TCSADRAIN, saved)
        if old_winch is not None:
            signal.signal(signal.SIGWINCH, old_winch)
        sock.close()
    if not finished:  # detached with the detach keys: the session goes on
        os.close(sync_r)
        return
    try:
        code = sess.exit_code_from(sync_r)
    finally:
        os.close(sync_r)
    sess.remove()
    raise click.exceptions.Exit(code)


# ---------------------------------------------------------------------------------------
# attach
# ---------------------------------------------------------------------------------------

@click.command(context_settings=_CTX)
@click.option("--detach-keys", default="ctrl-p,ctrl-q", metavar="KEYS",
              help="Key sequence that detaches (default ctrl-p,ctrl-q)")
@click.option("--no-stdin", is_flag=True, help="Do not attach STDIN")
@click.option("--sig-proxy/--no-sig-proxy", default=True,
              help="Forward signals kpod receives to the container (default: yes, without a tty)")
@click.option("-l", "--latest", is_flag=True, help="Act on the latest container")
@click.argument("container", required=False)
@click.pass_obj
def attach(state, detach_keys: str, no_stdin: bool, sig_proxy: bool, latest: bool, container: str | None) -> None:
    """Attach to a running container's output (and input); exit with its exit code."""
    from .cmd_containers import attach_and_start

    keys = parse_detach_keys(detach_keys)
    c = _one(state, container, latest)
    status = c.refresh()
    if status not in ("running", "paused"):
        from ..containers import display_state

        raise ContainerStateError(f"you can only attach to running containers: {c.name} is {display_state(status)}")
    stdin = not no_stdin and bool(c.config.get("interactive"))
    code = attach_and_start(c, stdin=stdin, tty=bool(c.config.get("tty")), detach_keys=keys, sig_proxy=sig_proxy,
                            start=False)
    if code is not None:
        raise click.exceptions.Exit(code)


# ---------------------------------------------------------------------------------------
# cp / export
# ---------------------------------------------------------------------------------------

@click.command(context_settings=_CTX)
@click.option("-a", "--archive/--no-archive", default=True,
              help="Give files copied into a container to its main user (default); "
                   "--no-archive keeps their owners")
@click.option("--overwrite", is_flag=True, help="Allow replacing a directory with a non-directory and the reverse")
@click.argument("src")
@click.argument("dest")
@click.pass_obj
def cp(state, archive: bool, overwrite: bool, src: str, dest: str) -> None:
    """Copy files between a container and the host (or another container).

    SRC and DEST are CONTAINER:PATH or a host path; - is a tar stream on stdin (SRC) or
    stdout (DEST). Paths in a container never resolve outside its root filesystem.
    """
    from ..copyfiles import copy

    copy(state.runtime, src, dest, archive=archive, overwrite=overwrite,
         stdin=sys.stdin.buffer if src == "-" else None, stdout=sys.stdout.buffer if dest == "-" else None)


@click.command(context_settings=_CTX)
@click.option("-o", "--output", metavar="FILE", help="Write the tar archive to FILE instead of stdout")
@click.argument("container")
@click.pass_obj
def export(state, output: str | None, container: str) -> None:
    """Export a container's filesystem as a tar archive."""
    from ..copyfiles import export as export_tar

    c = _mgr(state).get(container)
    if not output:
        if sys.stdout.isatty():
            raise InvalidArgument("refusing to export to terminal: use -o or redirect the output")
        export_tar(c, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    path = os.path.abspath(output)
    d = os.path.dirname(path)
    if not os.path.isdir(d):
        raise NotFound(f"cannot write {output}: no such directory {d}")
    from ..fileutil import atomic_file

    with atomic_file(path, None) as f:
        export_tar(c, f)


# ---------------------------------------------------------------------------------------
# mount / umount
# ---------------------------------------------------------------------------------------

@click.command(context_settings=_CTX)
@click.option("-a", "--all", "all_", is_flag=True, help="Mount all containers")
@click.option("--format", "fmt", metavar="FORMAT", help="'json' or a Go template (listing only)")
@click.option("-l", "--latest", is_flag=True, help="Act on the latest container")
@click.option("--no-trunc", is_flag=True, help="Do not truncate IDs in the listing")
@click.argument("containers", nargs=-1)
@click.pass_obj
def mount(state, all_: bool, fmt: str | None, latest: bool, no_trunc: bool, containers: tuple[str, ...]) -> None:
    """Mount containers' root filesystems and print where; without arguments list the
    mounted containers."""
    from .. import ctrstorage

    mgr = _mgr(state)
    if containers or all_ or latest:
        fails = _Failures()
        for _raw, c in _targets(state, containers, all_, latest):
            if isinstance(c, Exception):
                fails.add(c)
                continue
            try:
                click.echo(ctrstorage.mount(c))
            except KpodError as exc:
                fails.add(exc)
        fails.exit()
        return
    rows = []
    for c in reversed(mgr.list()):
        path = ctrstorage.mount_path(c)
        if path:
            rows.append({"id": c.id, "ID": c.id if no_trunc else c.id[:12], "Names": [c.name], "mountpoint": path,
                         "Path": path})
    if fmt == "json":
        click.echo(to_json([{"id": r["id"], "Names": r["Names"], "mountpoint": r["mountpoint"]} for r in rows]))
        return
    if fmt:
        out = render_many(fmt, rows)
        if out:
            click.echo(out)
        return
    from .formatting import align_tabs

    if rows:
        click.echo(align_tabs([f"{r['ID']}\t{r['Path']}" for r in rows]))


@click.command(context_settings=_CTX)
@click.option("-a", "--all", "all_", is_flag=True, help="Unmount every container kpod mount mounted")
@click.option("-f", "--force", is_flag=True, help="Give back every reference kpod mount took, not just one")
@click.option("-l", "--latest", is_flag=True, help="Act on the latest container")
@click.argument("containers", nargs=-1)
@click.pass_obj
def umount(state, all_: bool, force: bool, latest: bool, containers: tuple[str, ...]) -> None:
    """Unmount containers' root filesystems mounted with kpod mount (a running container
    keeps its own mount)."""
    from .. import ctrstorage

    fails = _Failures()
    targets = _targets(state, containers, all_, latest,
                       select=(lambda c: ctrstorage.user_mounts(c) > 0) if all_ else None)
    for _raw, c in targets:
        if isinstance(c, Exception):
            fails.add(c)
            continue
        try:
            ctrstorage.unmount(c, force=force or all_)
            click.echo(c.id)
        except KpodError as exc:
            fails.add(exc)
    fails.exit()


# ---------------------------------------------------------------------------------------
# diff
# ---------------------------------------------------------------------------------------

@click.command(context_settings=_CTX)
@click.option("--format", "fmt", metavar="FORMAT", help="'json' for {changed, added, deleted} lists")
@click.option("-l", "--latest", is_flag=True, help="Act on the latest container")
@click.argument("name", required=False)
@click.pass_obj
def diff(state, fmt: str | None, latest: bool, name: str | None) -> None:
    """Show a container's (or an image's) changes: A added, C changed, D deleted."""
    from .. import ctrstorage

    rt = state.runtime
    if fmt and fmt != "json":
        raise InvalidArgument(f"invalid --format {fmt!r}: only json is supported")
    changes = None
    if latest or (name and rt.containers.exists(name)):
        changes = ctrstorage.container_changes(_one(state, name, latest))
    elif name:
        img = rt.images.find(name)
        if img is None:
            raise NotFound(f'no container or image with name or ID "{name}" found: no such object')
        changes = ctrstorage.image_changes(rt.images, rt.hook, img)
    else:
        raise InvalidArgument("you must provide a container or image name or ID")
    if fmt == "json":
        click.echo(to_json(ctrstorage.changes_json(changes)))
        return
    for kind, path in changes:
        click.echo(f"{kind} {path}")


# ---------------------------------------------------------------------------------------
# stats / top
# ---------------------------------------------------------------------------------------

@click.command(context_settings=_CTX)
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers (default: running ones)")
@click.option("--format", "fmt", metavar="FORMAT", help="'json' or a Go template like '{{.ID}} {{.MemUsage}}'")
@click.option("-i", "--interval", type=click.IntRange(min=1), default=5, metavar="SECONDS",
              help="Seconds between reports when streaming (default 5)")
@click.option("--no-stream", is_flag=True, help="Print one report and exit")
@click.option("--no-trunc", is_flag=True, help="Do not truncate container IDs")
@click.option("-l", "--latest", is_flag=True, help="Act on the latest container")
@click.argument("containers", nargs=-1)
@click.pass_obj
def stats(state, all_: bool, fmt: str | None, interval: int, no_stream: bool, no_trunc: bool, latest: bool,
          containers: tuple[str, ...]) -> None:
    """Live resource usage of containers: CPU, memory, network and block IO, PIDs."""
    from .. import ctrinfo

    mgr = _mgr(state)
    named = bool(containers or latest)

    def targets():
        if named:
            out = []
            for _raw, c in _targets(state, containers, latest=latest):
                if isinstance(c, Exception):
                    raise c
                out.append(c)
            return out
        cs = list(reversed(mgr.list()))
        return cs if all_ else [c for c in cs if c.refresh() == "running"]

    prev: dict[str, Any] = {}
    first = True
    while True:
        records = []
        for c in targets():
            cur = None
            try:
                c.reload()
                if c.refresh() in ("running", "paused") and c.pid:
                    cur = ctrinfo.sample(c.pid)
            except (OSError, NotFound):
                cur = None
            if cur is None and named and not all_ and first and c.refresh() not in ("running", "paused"):
                from ..containers import display_state

                raise ContainerStateError(f"container {c.name} is not running (it is {display_state(c.refresh())}): "
                                          "stats are only available for running containers")
            records.append(ctrinfo.stats_record(c, cur, prev.get(c.id), no_trunc))
            if cur is not None:
                prev[c.id] = cur
        if not no_stream and sys.stdout.isatty():
            click.echo("\033[2J\033[H", nl=False)
        if fmt == "json":
            click.echo(to_json([ctrinfo.stats_json(r) for r in records]))
        elif fmt:
            tpl = Template(fmt)
            out = render_many(fmt, records) if tpl.table else "\n".join(tpl.render(r) for r in records)
            if out:
                click.echo(out)
        else:
            rows = [ctrinfo.STATS_HEADERS] + [[str(r[f]) for f in ctrinfo.STATS_FIELDS] for r in records]
            click.echo(ctrinfo.tabwrite(rows))
        sys.stdout.flush()
        first = False
        if no_stream:
            return
        try:
            time.sleep(interval)
        except KeyboardInterrupt:  # the way to stop streaming: not an error
            return


@click.command(context_settings=_RUN_CTX)
@click.option("-l", "--latest", is_flag=True, help="Act on the latest container")
@click.argument("container", required=False)
@click.argument("descriptors", nargs=-1)
@click.pass_obj
def top(state, latest: bool, container: str | None, descriptors: tuple[str, ...]) -> None:
    """Display the running processes of a container (descriptors: user, pid, ppid, pcpu,
    etime, tty, time, args, comm, ...)."""
    from .. import ctrinfo

    if latest:
        descriptors = ((container,) if container else ()) + descriptors
        container = None
    c = _one(state, container, latest)
    try:
        wanted = ctrinfo.parse_descriptors(list(descriptors))
    except InvalidArgument as unknown:
        # podman's fallback: what is not a descriptor is ps(1) options, for ps in the container
        _top_with_ps(c, list(descriptors), unknown)
        return
    headers, rows = ctrinfo.top(c, wanted)
    click.echo(ctrinfo.tabwrite([headers] + rows))


def _top_with_ps(c, args: list[str], unknown: InvalidArgument) -> None:
    """Run ``ps ARGS`` in the running container *c*, its output straight to ours."""
    from .. import execs

    if c.state() not in ("running", "paused"):
        raise ContainerStateError(f"top can only be used on running containers: {c.short_id} is {c.state()}")
    sess = execs.create_session(c, execs.ExecOptions(command=["ps", *args]))
    try:
        _pid, sock, sync_r = sess.start(attach=True)
    except KpodError as exc:
        sess.remove()
        if exc.exit_code in (126, 127):
            raise InvalidArgument(f"{unknown.message}, and the container has no ps(1) to run them") from None
        raise
    try:
        sys.stdout.flush()
        execs.stream(sess, sock, in_fd=None, out_fd=sys.stdout.fileno(), err_fd=sys.stderr.fileno(),
                     detach_keys=b"", tty=False)
        code = sess.exit_code_from(sync_r)
    finally:
        sock.close()
        os.close(sync_r)
        sess.remove()
    if code in (126, 127):
        raise InvalidArgument(f"{unknown.message}, and the container has no ps(1) to run them")
    if code != 0:
        raise KpodError(f"ps(1) in container {c.short_id} failed with exit code {code}")


# ---------------------------------------------------------------------------------------
# commit
# ---------------------------------------------------------------------------------------

@click.command(context_settings=_CTX)
@click.option("-a", "--author", metavar="NAME", help="Author of the image (e.g. 'Jane <jane@example.com>')")
@click.option("-c", "--change", multiple=True, metavar="INSTRUCTION",
              help="Dockerfile instruction for the image: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, "
                   "STOPSIGNAL, USER, VOLUME, WORKDIR")
@click.option("-f", "--format", "fmt", default="oci", type=click.Choice(["oci", "docker"]),
              help="Image format: oci (default) or docker")
@click.option("--iidfile", metavar="FILE", help="Write the image ID to FILE")
@click.option("-m", "--message", metavar="TEXT", help="Commit message (the history entry's comment)")
@click.option("-p", "--pause/--no-pause", default=True,
              help="Pause a running container while committing (default); --no-pause does not")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image ID")
@click.argument("container")
@click.argument("image", required=False)
@click.pass_obj
def commit(state, author: str | None, change: tuple[str, ...], fmt: str, iidfile: str | None, message: str | None,
           pause: bool, quiet: bool, container: str, image: str | None) -> None:
    """Create an image from a container's changes; prints the image ID."""
    from .. import ctrstorage

    rt = state.runtime
    c = rt.containers.get(container)
    progress = not quiet and sys.stderr.isatty()
    if progress:
        click.echo(f"Committing container {c.name}...", err=True)
    img = ctrstorage.commit(rt, c, image, changes=change, message=message, author=author, pause=pause, fmt=fmt)
    if progress:
        click.echo("Writing manifest to image destination", err=True)
    if iidfile:
        with open(iidfile, "w") as f:
            f.write("sha256:" + img.id)
    click.echo(img.id)
