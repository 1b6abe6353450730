"""Volume commands: the ``volume`` group (create, ls, inspect, rm, prune, exists, export,
import, mount, unmount). The logic lives in :mod:`libpod_core.volumes`."""

from __future__ import annotations

import os
import re
import sys

import click

from ..errors import InUse, InvalidArgument, KpodError, NotFound, StorageError
from .cmd_containers import _echo_err, _Failures  # one error-report style for multi-object commands
from .cmd_network import NetworkGroup, _filters, _kv
from .formatting import Template, align_tabs, render_many, to_json

_CTX = {"help_option_names": ["-h", "--help"]}

LS_FILTERS = ("name", "label", "label!", "driver", "dangling", "until", "opt", "scope")
PRUNE_FILTERS = ("label", "label!", "until")


def _volumes(state):
    return state.runtime.volumes


def _matcher(flt: dict[str, list[str]], in_use: set[str]):
    """A predicate over volumes for ``ls --filter``/``prune --filter``."""
    from ..filters import PRUNE_KEYS, PruneFilter, labels_match

    common = PruneFilter([f"{k}={v}" for k in PRUNE_KEYS for v in flt.get(k, [])])  # label, label!, until
    dangling = None
    if "dangling" in flt:
        v = flt["dangling"][-1].strip().lower()
        if v not in ("true", "1", "false", "0"):
            raise InvalidArgument(f"invalid filter dangling={v!r}: expected true or false")
        dangling = v in ("true", "1")

    def match(vol) -> bool:
        if "name" in flt and not any(re.search(v, vol.name) for v in flt["name"]):
            return False
        if "driver" in flt and vol.driver not in flt["driver"]:
            return False
        if "scope" in flt and "local" not in flt["scope"]:
            return False
        if not common.match(vol.labels, vol.created_at):
            return False
        if "opt" in flt and not labels_match(vol.options, flt["opt"]):
            return False
        if dangling is not None and (vol.name not in in_use) != dangling:
            return False
        return True

    return match


# ---------------------------------------------------------------------------------------
# the group
# ---------------------------------------------------------------------------------------

class VolumeGroup(NetworkGroup):
    """The network group's aliases (list = ls, remove = rm) and umount = unmount."""

    ALIASES = {**NetworkGroup.ALIASES, "umount": "unmount"}


@click.group(cls=VolumeGroup, context_settings=_CTX)
def volume() -> None:
    """Manage named volumes (the local driver: directories under <graphroot>/volumes)."""


@volume.command("create", context_settings=_CTX)
@click.option("-d", "--driver", default="local", metavar="DRIVER", help="Volume driver (local, the default)")
@click.option("-l", "--label", multiple=True, metavar="KEY=VALUE", help="Set a label on the volume")
@click.option("-o", "--opt", multiple=True, metavar="KEY=VALUE",
              help="Driver option: type=, device=, o= (mount options, uid=, gid=), nocopy")
@click.option("--ignore", is_flag=True, help="Do not fail when the volume already exists")
@click.argument("name", required=False)
@click.pass_obj
def volume_create(state, driver: str, label: tuple[str, ...], opt: tuple[str, ...], ignore: bool,
                  name: str | None) -> None:
    """Create a volume (a random name when NAME is not given); prints its name."""
    vol = _volumes(state).create(name, driver=driver, labels=_kv(label, "label"), options=_kv(opt, "option"),
                                 ignore=ignore)
    click.echo(vol.name)


@volume.command("ls", context_settings=_CTX)
@click.option("--format", "fmt", metavar="FORMAT",
              help="'json' or a Go template like '{{.Name}} {{.Mountpoint}}'")
@click.option("-q", "--quiet", is_flag=True, help="Print volume names only")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="name=, label=, label!=, driver=, dangling=true|false, until=, opt=, scope=")
@click.option("-n", "--noheading", is_flag=True, help="Do not print the header row")
@click.pass_obj
def volume_ls(state, fmt: str | None, quiet: bool, filters: tuple[str, ...], noheading: bool) -> None:
    """List volumes."""
    mgr = _volumes(state)
    flt = _filters(filters, LS_FILTERS)
    match = _matcher(flt, mgr.in_use() if "dangling" in flt else set())
    vols = [v for v in mgr.list() if match(v)]
    if quiet:
        for v in vols:
            click.echo(v.name)
        return
    recs = [v.inspect() for v in vols]
    if fmt == "json":
        click.echo(to_json(recs))
        return
    if fmt:
        out = render_many(fmt, recs, noheading=noheading)
        if out:
            click.echo(out)
        return
    lines = [] if noheading else ["DRIVER\tVOLUME NAME"]
    lines += [f"{r['Driver']}\t{r['Name']}" for r in recs]
    if lines:
        click.echo(align_tabs(lines, pad=6))


@volume.command("inspect", context_settings=_CTX)
@click.option("-f", "--format", "fmt", metavar="FORMAT",
              help="'json' (default) or a Go template like '{{.Mountpoint}}'")
@click.option("-a", "--all", "all_", is_flag=True, help="Inspect every volume")
@click.argument("names", nargs=-1)
@click.pass_obj
def volume_inspect(state, fmt: str | None, all_: bool, names: tuple[str, ...]) -> None:
    """Display the configuration of volumes as JSON."""
    mgr = _volumes(state)
    if all_ and names:
        raise InvalidArgument("--all takes no volume names")
    if not all_ and not names:
        raise InvalidArgument("provide one or more volume names or use --all")
    out, errors = [], []
    if all_:
        out = [v.inspect() for v in mgr.list()]
    for n in names:
        try:
            out.append(mgr.get(n).inspect())
        except KpodError as exc:
            errors.append(exc)
    if fmt and fmt != "json":
        tpl = Template(fmt)
        for d in out:
            click.echo(tpl.render(d))
    else:
        click.echo(to_json(out))
    if errors:
        for e in errors[:-1]:
            _echo_err(e.message)
        raise errors[-1]


@volume.command("exists", context_settings=_CTX)
@click.argument("name")
@click.pass_obj
def volume_exists(state, name: str) -> None:
    """Exit 0 if the volume exists, 1 if not."""
    raise click.exceptions.Exit(0 if _volumes(state).exists(name) else 1)


@volume.command("rm", context_settings=_CTX)
@click.option("-f", "--force", is_flag=True, help="Remove the containers using the volume too")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all volumes")
@click.option("-t", "--time", "timeout", type=int, default=None, metavar="SECONDS",
              help="With --force, seconds to wait for containers to stop before killing them")
@click.argument("names", nargs=-1)
@click.pass_obj
def volume_rm(state, force: bool, all_: bool, timeout: int | None, names: tuple[str, ...]) -> None:
    """Remove volumes. One used by containers needs --force, which removes them first.

    Exit status: 0 all removed; 1 a volume does not exist; 2 a volume is in use and
    --force was not given; 125 another error.
    """
    mgr = _volumes(state)
    if all_ and names:
        raise InvalidArgument("--all takes no volume names")
    if not all_ and not names:
        raise InvalidArgument("provide one or more volume names or use --all")
    fails = _Failures()
    for n in [v.name for v in mgr.list()] if all_ else names:
        try:
            click.echo(mgr.remove(n, force=force, timeout=timeout))
        except NotFound as exc:
            fails.add(exc, 1)
        except InUse as exc:
            fails.add(exc, 2)
        except KpodError as exc:
            fails.add(exc)
    fails.exit()


@volume.command("prune", context_settings=_CTX)
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation")
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="label=KEY[=VALUE], label!=KEY[=VALUE] or until=TIME")
@click.pass_obj
def volume_prune(state, force: bool, filters: tuple[str, ...]) -> None:
    """Remove every volume no container uses; prints their names."""
    mgr = _volumes(state)
    match = _matcher(_filters(filters, PRUNE_FILTERS), set())
    if not force:
        in_use = mgr.in_use()
        doomed = [v.name for v in mgr.list() if v.name not in in_use and match(v)]
        click.echo("WARNING! This will remove all volumes not used by at least one container. "
                   "The following volumes will be removed:")
        for n in doomed:
            click.echo(n)
        answer = click.prompt("Are you sure you want to continue? [y/N]", default="", show_default=False,
                              prompt_suffix=" ")
        if answer.strip().lower() not in ("y", "yes"):
            return
    for name in mgr.prune(match):
        click.echo(name)


@volume.command("export", context_settings=_CTX)
@click.option("-o", "--output", metavar="FILE", help="Write to FILE (default: standard output, which must be redirected)")
@click.argument("name")
@click.pass_obj
def volume_export(state, output: str | None, name: str) -> None:
    """Write the content of a volume as a tar archive."""
    mgr = _volumes(state)
    if output is None:
        if sys.stdout.isatty():
            raise InvalidArgument("cannot write to terminal, use command-line redirection or the --output flag")
        mgr.export(name, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    if not output:
        raise InvalidArgument("must provide valid path for file to write to")
    mgr.get(name)  # an unknown volume leaves no file behind
    path = os.path.abspath(output)
    # a new private name in the target's directory, renamed over it once complete: a reader
    # never sees part of an archive, and a failed export leaves what was there
    from ..fileutil import atomic_file

    started = False
    try:
        with atomic_file(path, None) as f:
            started = True
            mgr.export(name, f)
    except OSError as exc:
        if started:
            raise
        raise StorageError(f'unable to create target file path "{output}": {exc.strerror}') from None


@volume.command("import", context_settings=_CTX)
@click.argument("name")
@click.argument("source")
@click.pass_obj
def volume_import(state, name: str, source: str) -> None:
    """Merge a tar archive (plain, gzip, zstd, bzip2 or xz; '-' for standard input) into a
    volume; the archive's files win."""
    mgr = _volumes(state)
    mgr.get(name)
    if source == "-":
        if sys.stdin.isatty():
            raise InvalidArgument("cannot read an archive from a terminal: give a file or redirect standard input")
        mgr.import_tar(name, sys.stdin.buffer)
        return
    try:
        f = open(source, "rb")
    except OSError as exc:
        raise NotFound(f"open {source}: {exc.strerror}") from None
    with f:
        mgr.import_tar(name, f)


@volume.command("mount", context_settings=_CTX)
@click.argument("name")
@click.pass_obj
def volume_mount(state, name: str) -> None:
    """Mount a volume and print its mountpoint."""
    click.echo(_volumes(state).mount(name))


@volume.command("unmount", context_settings=_CTX)
@click.argument("name")
@click.pass_obj
def volume_unmount(state, name: str) -> None:
    """Unmount a volume (give back one 'volume mount'); prints its name."""
    click.echo(_volumes(state).unmount(name))
