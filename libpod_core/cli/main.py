"""The ``kpod`` command: a thin click layer over :class:`libpod_core.Runtime`.

Commands are registered by name in :data:`COMMANDS` and imported only when invoked, so
``kpod --help`` and ``kpod version`` import no plugin, no stevedore and no yaml.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from ..errors import EXIT_ENGINE
from .base import FLAG_KEYS, CliState, report, wants_debug  # noqa: F401 - FLAG_KEYS, CliState: public names
from .base import one_line  # noqa: F401 - commands import it from here
from .base import setup_logging as _setup_logging

# name -> (module under libpod_core.cli, attribute, one-line help shown by `kpod --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    # Each area adds its commands here; the module is imported only when the command runs.
    "container": ("cmd_containers", "container", "Manage containers"),
    "create": ("cmd_containers", "create", "Create but do not start a container"),
    "init": ("cmd_containers", "init", "Initialize one or more containers (prepare them to start)"),
    "inspect": ("cmd_containers", "inspect", "Display the configuration of containers, images, volumes, networks and pods"),
    "kill": ("cmd_containers", "kill", "Send a signal to one or more running containers"),
    "logs": ("cmd_containers", "logs", "Fetch the logs of one or more containers"),
    "pause": ("cmd_containers", "pause", "Pause all the processes in one or more containers"),
    "ps": ("cmd_containers", "ps", "List containers"),
    "rename": ("cmd_containers", "rename", "Rename an existing container"),
    "restart": ("cmd_containers", "restart", "Restart one or more containers"),
    "rm": ("cmd_containers", "rm", "Remove one or more containers"),
    "run": ("cmd_containers", "run", "Run a command in a new container"),
    "start": ("cmd_containers", "start", "Start one or more containers"),
    "stop": ("cmd_containers", "stop", "Stop one or more containers"),
    "unpause": ("cmd_containers", "unpause", "Unpause the processes in one or more containers"),
    "wait": ("cmd_containers", "wait", "Wait for containers to stop and print their exit codes"),
    "attach": ("cmd_containers_more", "attach", "Attach to a running container"),
    "commit": ("cmd_containers_more", "commit", "Create a new image from a container's changes"),
    "cp": ("cmd_containers_more", "cp", "Copy files between a container and the local filesystem"),
    "diff": ("cmd_containers_more", "diff", "Inspect changes to a container's or image's filesystem"),
    "events": ("cmd_events", "events", "Show kpod events"),
    "exec": ("cmd_containers_more", "exec_", "Run a process in a running container"),
    "export": ("cmd_containers_more", "export", "Export a container's filesystem as a tar archive"),
    "mount": ("cmd_containers_more", "mount", "Mount a container's root filesystem"),
    "stats": ("cmd_containers_more", "stats", "Display a live stream of container resource usage"),
    "top": ("cmd_containers_more", "top", "Display the running processes of a container"),
    "umount": ("cmd_containers_more", "umount", "Unmount a container's root filesystem"),
    "network": ("cmd_network", "network", "Manage networks"),
    "pod": ("cmd_pods", "pod", "Manage pods"),
    "port": ("cmd_network", "port", "List the port mappings of a container"),
    "history": ("cmd_images", "history", "Show the history of an image"),
    "image": ("cmd_images", "image", "Manage images"),
    "images": ("cmd_images", "images", "List images in local storage"),
    "import": ("cmd_images", "import_", "Create an image from a filesystem tarball"),
    "load": ("cmd_images", "load", "Load images from an archive"),
    "login": ("cmd_registry", "login", "Log in to a container registry"),
    "logout": ("cmd_registry", "logout", "Log out of a container registry"),
    "pull": ("cmd_registry", "pull", "Pull images from a registry"),
    "push": ("cmd_registry", "push", "Push an image to a registry"),
    "rmi": ("cmd_images", "rmi", "Remove one or more local images"),
    "save": ("cmd_images", "save", "Save images to an archive or directory"),
    "system": ("cmd_system", "system", "Manage kpod: check and prune the store, show disk usage and information"),
    "tag": ("cmd_images", "tag", "Add names to a local image"),
    "untag": ("cmd_images", "untag", "Remove names from a local image"),
    "info": ("cmd_system", "info", "Display kpod system information"),
    "plugins": ("cmd_system", "plugins", "List installed plugins and drivers"),
    "version": ("cmd_system", "version", "Display the kpod version information"),
    "volume": ("cmd_volumes", "volume", "Manage named volumes"),
}

class LazyGroup(click.Group):
    """A click group whose subcommands are imported on demand."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str, str]] | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = super().get_command(ctx, name)
        if cmd is not None or name not in self.lazy:
            return cmd
        module, attr, _ = self.lazy[name]
        import importlib

        mod = importlib.import_module(f"libpod_core.cli.{module}")
        cmd = getattr(mod, attr)
        self.add_command(cmd, name)
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in self.lazy and name not in self.commands:
                rows.append((name, self.lazy[name][2]))
            else:
                cmd = self.commands.get(name)
                if cmd is not None and not cmd.hidden:
                    rows.append((name, cmd.get_short_help_str(limit=80)))
        if rows:
            with formatter.section("Available Commands"):
                formatter.write_dl(rows)


CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings=CONTEXT_SETTINGS, invoke_without_command=True)
@click.option("-c", "--config", metavar="FILE", help="Configuration file (also $KPOD_CONFIG)")
@click.option("--root", metavar="DIR", help="Path to the persistent storage root (graphroot)")
@click.option("--runroot", metavar="DIR", help="Path to the per-boot state root (runroot)")
@click.option("--runtime", metavar="NAME|PATH", help="OCI runtime driver name (runc, crun) or runtime path")
@click.option("-s", "--storage-driver", metavar="NAME", help="Storage driver (overlay, vfs)")
@click.option("--storage-opt", multiple=True, metavar="KEY=VALUE", help="Storage driver option (repeatable)")
@click.option("--conmon", metavar="PATH", help="Path of the conmon binary")
@click.option("--cni-config-dir", metavar="DIR", help="Directory of CNI network configurations")
@click.option("--network-backend", metavar="NAME", help="Network backend driver (cni)")
@click.option("--hooks-dir", multiple=True, metavar="DIR", help="OCI hooks.d directory (repeatable)")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warn", "error", "fatal", "panic"]),
    help="Log messages at and above this level (default warn)",
)
@click.option("-v", "--version", "show_version", is_flag=True, help="Print the kpod version and exit")
@click.pass_context
def cli(ctx: click.Context, show_version: bool, **params: Any) -> None:
    """kpod: manage pods, containers and images without a daemon."""
    ctx.obj = CliState(params)
    if params.get("log_level"):
        _setup_logging(params["log_level"])
    if show_version:
        from .. import __version__

        click.echo(f"kpod version {__version__}")
        ctx.exit(0)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
        ctx.exit(0)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs the CLI and turns errors into ``Error: ...``."""
    args = sys.argv[1:] if argv is None else argv
    code = run(args)
    sys.exit(code)


def run(args: list[str]) -> int:
    debug = wants_debug(args)
    try:
        rv = cli.main(args=args, prog_name="kpod", standalone_mode=False)
        # click returns (not raises) the code of a click.exceptions.Exit without standalone mode
        return rv if type(rv) is int else 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("Error: aborted", err=True)
        return EXIT_ENGINE
    except click.ClickException as e:
        msg = one_line(e.format_message())
        click.echo(f"Error: {msg}", err=True)
        return EXIT_ENGINE
    except Exception as e:
        return report(e, debug)
    except KeyboardInterrupt as e:
        return report(e, debug)
