"""``kpod version``, ``kpod info``, ``kpod plugins``."""

from __future__ import annotations

import click

from .formatting import Template, render_many, table, to_json, to_yaml


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


@click.group("system")
def system() -> None:
    """Manage kpod: check the store, show information."""


system.add_command(system_check, "check")
system.add_command(info, "info")
