"""``kpod events``: the events log (:mod:`libpod_core.events`), as ``podman events`` shows
podman's file backend."""

from __future__ import annotations

import json
import sys
import time

import click

from ..errors import KpodError

_CTX = {"help_option_names": ["-h", "--help"]}


@click.command("events", context_settings=_CTX)
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="container=, event= (status=), image=, label=, network=, pod=, type=, volume= (repeatable; "
                   "values of one key OR, different keys AND)")
@click.option("--format", "fmt", metavar="FORMAT", help="'json' (JSON lines) or a Go template like '{{.Name}} {{.Status}}'")
@click.option("--since", metavar="TIME", help="Events after TIME (RFC 3339, Unix time or a duration like 10m)")
@click.option("--until", metavar="TIME", help="Events before TIME; streaming stops then")
@click.option("--stream", type=click.BOOL, is_flag=False, flag_value=True, default=True, metavar="[=BOOL]",
              help="Follow new events until interrupted (default true; --stream=false prints and exits)")
@click.option("--no-trunc", type=click.BOOL, is_flag=False, flag_value=True, default=True, metavar="[=BOOL]",
              help="Full IDs (default true)")
@click.pass_obj
def events(state, filters: tuple[str, ...], fmt: str | None, since: str | None, until: str | None, stream: bool,
           no_trunc: bool) -> None:
    """Show kpod events: past ones with --since/--until or --stream=false, then (by
    default) new ones as they happen."""
    from .. import events as ev
    from ..filters import parse_time
    from .formatting import Template

    now = time.time()
    since_t = parse_time(since, now) if since else None
    until_t = parse_time(until, now) if until else None
    match = ev.compile_filters(filters) if filters else None
    as_json = fmt is not None and fmt.strip() in ("json", "{{json .}}")
    tpl = Template(fmt) if fmt is not None and not as_json else None
    config = state.runtime.config
    if config.events_logger != "file":
        raise KpodError(f'cannot read events with the "{config.events_logger}" backend (setting events_logger '
                        f"from {config.source('events_logger')})")
    if tpl is not None and tpl.table:
        _out(tpl.headers())
    try:
        for e in ev.read(config, since=since_t, until=until_t, match=match, stream=stream):
            if as_json:
                _out(json.dumps(e, separators=(",", ":")))
            elif tpl is not None:
                _out(tpl.render(ev.template_view(e)))
            else:
                _out(ev.human(e, truncate=not no_trunc))
    except KeyboardInterrupt:  # the way to stop streaming: not an error
        return


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
