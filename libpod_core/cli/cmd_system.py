"""``kpod version``, ``kpod info``, ``kpod plugins`` and the ``system`` group (check, df, prune, info)."""

from __future__ import annotations

import sys

import click

from .formatting import Template, align_tabs, render_many, table, to_json, to_yaml


def emit(data, fmt: str | None, default: str = "yaml") -> None:
    """Print *data* as yaml/json or through a Go-like template."""
    if fmt is None:
        fmt = default
    if fmt == "json":
        click.echo(to_json(data))
    elif fmt == "yaml":
        click.echo(to_yaml(data), nl=False)
    else:
        click.echo(Template(fmt).render(data))


@click.command()
@click.option("-f", "--format", "fmt", metavar="FORMAT", help="'json' or a Go template like '{{.Client.Version}}'")
def version(fmt: str | None) -> None:
    """Display the kpod version information."""
    from ..runtime import version_info

    data = version_info()
    if fmt is None:
        click.echo(f"Version:      {data['Version']}")
        click.echo(f"API Version:  {data['APIVersion']}")
        click.echo(f"Python:       {data['PythonVersion']}")
        click.echo(f"OS/Arch:      {data['OsArch']}")
        return
    emit({"Client": data, **data}, fmt)


@click.command()
@click.option("-f", "--format", "fmt", metavar="FORMAT", help="'json', 'yaml' (default) or a Go template")
@click.pass_obj
def info(state, fmt: str | None) -> None:
    """Display kpod system information.

    Shows the host, the selected OCI runtime (name, path, version), conmon, the storage
    driver and its roots, the network backend, every discovered plugin with its
    distribution, version and hooks, and where each configuration value came from.
    """
    emit(state.runtime.info(), fmt)


@click.command()
@click.option(
    "--kind",
    type=click.Choice(["runtime", "storage", "network", "transport", "plugin"]),
    help="Only list plugins of this kind",
)
@click.option("-f", "--format", "fmt", metavar="FORMAT", help="'json' or a Go template like '{{.Name}}'")
@click.option("-q", "--quiet", is_flag=True, help="Print names only")
@click.pass_obj
def plugins(state, kind: str | None, fmt: str | None, quiet: bool) -> None:
    """List installed plugins and drivers.

    Every entry point in the kpod.runtime, kpod.storage, kpod.network, kpod.transport and
    kpod.plugins groups, with the distribution that provides it and whether the
    configuration selects it.
    """
    rows = state.runtime.list_plugins(kind, load=fmt is not None)
    if quiet:
        for r in rows:
            click.echo(r["name"])
        return
    if fmt == "json":
        click.echo(to_json(rows))
        return
    if fmt:
        click.echo(render_many(fmt, rows))
        return
    click.echo(
        table(
            ["KIND", "NAME", "DISTRIBUTION", "VERSION", "SELECTED"],
            [
                (r["kind"], r["name"], r["distribution"] or "-", r["version"] or "-", "*" if r["selected"] else "")
                for r in rows
            ],
        )
    )


@click.command("check")
@click.option("-r", "--repair", is_flag=True, help="Fix what can be fixed (removes damaged images and orphaned data)")
@click.option("-f", "--format", "fmt", metavar="FORMAT", help="'json' or a Go template per problem")
@click.pass_obj
def system_check(state, repair: bool, fmt: str | None) -> None:
    """Check the store and the state database for inconsistencies."""
    from ..check import check
    from ..errors import KpodError

    problems = check(state.runtime, repair=repair)
    rows = [{"Kind": p.kind, "Subject": p.subject, "Detail": p.detail, "Repaired": p.repaired} for p in problems]
    if fmt == "json":
        click.echo(to_json(rows))
    elif fmt:
        if rows:
            click.echo(render_many(fmt, rows))
    elif rows:
        click.echo(table(["KIND", "SUBJECT", "PROBLEM", "REPAIRED"],
                         [(r["Kind"], r["Subject"][:64], r["Detail"], "yes" if r["Repaired"] else "no") for r in rows]))
    else:
        click.echo("No problems found")
    left = [p for p in problems if not p.repaired]
    if left:
        hint = "" if repair else "; run 'kpod system check --repair' to fix them"
        raise KpodError(f"{len(left)} problem(s) found{hint}")


def _percent_of(part: int, whole: int) -> int:
    """podman's rounded percentage (half away from zero; 0 of nothing is 0)."""
    return int(part * 100 / whole + 0.5) if whole > 0 else 0


def _df_verbose(report: dict) -> None:
    """podman's three sections (images, containers, local volumes), each its own table."""
    import time

    from ..containers import human_size
    from ..units import human_duration

    now = time.time()
    sections = [
        ("Images space usage:",
         ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"],
         [(i["Repository"], i["Tag"], i["ImageID"][:12], human_duration(now - i["Created"]), human_size(i["Size"]),
           human_size(i["SharedSize"]), human_size(i["UniqueSize"]), i["Containers"]) for i in report["Images"]]),
        ("Containers space usage:",
         ["CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE", "CREATED", "STATUS", "NAMES"],
         [(c["ContainerID"][:12], c["Image"][:12], " ".join(c["Command"]), c["LocalVolumes"], human_size(c["RWSize"]),
           human_duration(now - c["Created"]), c["Status"], c["Names"]) for c in report["Containers"]]),
        ("Local Volumes space usage:",
         ["VOLUME NAME", "LINKS", "SIZE"],
         [(v["VolumeName"], v["Links"], human_size(v["Size"])) for v in report["Volumes"]]),
    ]
    for n, (title, headers, rows) in enumerate(sections):
        click.echo(("\n" if n else "") + title + "\n")
        click.echo(align_tabs(["\t".join(headers)] + ["\t".join(str(c) for c in r) for r in rows], pad=2))


@click.command("df")
@click.option("-v", "--verbose", is_flag=True, help="Show each image, container and volume")
@click.option("--format", "fmt", metavar="FORMAT",
              help="'json' or a Go template like '{{.Type}} {{.Size}}' (not with --verbose)")
@click.pass_obj
def system_df(state, verbose: bool, fmt: str | None) -> None:
    """Show kpod's disk usage.

    Images, containers and local volumes: how many, how many in use, their size and how
    much removing the unused ones would free.
    """
    from ..containers import human_size
    from ..errors import InvalidArgument
    from ..system import disk_usage, summarize

    if verbose and fmt is not None:
        raise InvalidArgument("cannot combine --format and --verbose flags")
    report = disk_usage(state.runtime)
    if verbose:
        _df_verbose(report)
        return
    rows = []
    for r in summarize(report):
        size, reclaimable = r["RawSize"], r["RawReclaimable"]
        rows.append({**r, "TotalCount": r["Total"], "Size": human_size(size),
                     "Reclaimable": f"{human_size(reclaimable)} ({_percent_of(reclaimable, size)}%)"})
    if fmt == "json":
        click.echo(to_json(rows))
    elif fmt:
        out = render_many(fmt, rows)
        if out:
            click.echo(out)
    else:
        click.echo(align_tabs(["TYPE\tTOTAL\tACTIVE\tSIZE\tRECLAIMABLE"] + [
            f"{r['Type']}\t{r['Total']}\t{r['Active']}\t{r['Size']}\t{r['Reclaimable']}" for r in rows], pad=2))


def _prune_warning(all_images: bool, volumes: bool) -> str:
    items = ["all stopped containers", "all pods without a running container",
             "all networks not used by at least one container"]
    if volumes:
        items.append("all volumes not used by at least one container")
    items.append("all images without at least one container associated with them" if all_images
                 else "all dangling images")
    return "WARNING! This command removes:\n" + "".join(f"\t- {i}\n" for i in items) + "\n"


@click.command("prune")
@click.option("-a", "--all", "all_images", is_flag=True,
              help="Remove every image no container uses, not only dangling ones")
@click.option("--volumes", is_flag=True, help="Remove the volumes no container uses too")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation")
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="label=KEY[=VALUE], label!=KEY[=VALUE] or until=TIME")
@click.pass_obj
def system_prune(state, all_images: bool, volumes: bool, force: bool, filters: tuple[str, ...]) -> None:
    """Remove unused data.

    Stopped containers, pods with nothing running, dangling images (with --all every image
    no container uses), networks no container uses (not the default one) and, with
    --volumes, volumes no container uses.
    """
    from ..containers import human_size
    from ..filters import PruneFilter
    from ..system import system_prune as prune
    from .base import Failures

    flt = PruneFilter(filters)  # bad input is an error before the question
    if not force:
        click.echo(_prune_warning(all_images, volumes) + "Are you sure you want to continue? [y/N] ", nl=False)
        if sys.stdin.readline()[:1].lower() != "y":
            return
    done = prune(state.runtime, all_images=all_images, volumes=volumes, filters=flt)
    for key, title in (("Containers", "Deleted Containers"), ("Pods", "Deleted Pods"),
                       ("Volumes", "Deleted Volumes"), ("Images", "Deleted Images"),
                       ("Networks", "Deleted Networks")):
        if done[key]:
            click.echo(title)
            for name in done[key]:
                click.echo(name)
    click.echo(f"Total reclaimed space: {human_size(done['ReclaimedSpace'])}")
    fails = Failures()
    for _cid, exc in done["Errors"]:
        fails.add(exc)
    fails.exit()


@click.group("system")
def system() -> None:
    """Manage kpod: check and prune the store, show disk usage and information."""


system.add_command(system_check, "check")
system.add_command(system_df, "df")
system.add_command(info, "info")
system.add_command(system_prune, "prune")

from .cmd_events import events as _events  # noqa: E402 - podman's alias: kpod system events

system.add_command(_events, "events")
