"""Writes :mod:`libpod_core.cli._fastspec`: the flags of the commands :mod:`libpod_core.cli.fast`
parses without click, taken from the click commands themselves.

Run ``python -m libpod_core.cli.fastspec`` after changing the flags of
``create``, ``run``, ``pod create``, ``pod start`` or the global flags;
tests/unit/test_fastpath.py fails while the file is stale. A flag the file does not know
is never misread: the fast path hands any command line it cannot parse exactly to click.
"""

from __future__ import annotations

import os
import pprint
from typing import Any

import click

#: command path -> (body in libpod_core.cli.bodies, the smallest valid argv after the path)
FAST_COMMANDS: dict[str, tuple[str, list[str]]] = {
    "create": ("create", ["IMAGE"]),
    "run": ("run", ["IMAGE"]),
    "pod create": ("pod_create", []),
    "pod start": ("pod_start", []),
}

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_fastspec.py")


def _type(p: click.Parameter) -> tuple[str, list[str] | None]:
    t = p.type
    if type(t) is click.Choice:
        choices = [str(c) for c in t.choices]
        return ("choice" if all(isinstance(c, str) for c in t.choices) and t.case_sensitive
                else "unsupported"), choices
    kinds = {click.types.StringParamType: "str", click.types.IntParamType: "int",
             click.types.UnprocessedParamType: "raw", click.types.BoolParamType: "bool"}
    return kinds.get(type(t), "unsupported"), None


def _given(cmd: click.Command, parent: click.Context | None, minimal: list[str], opt: str, name: str) -> Any:
    """What click makes of flag *opt* alone: the value the fast path must give it."""
    ctx = cmd.make_context(cmd.name or "kpod", [opt, *minimal], parent=parent)
    return ctx.params[name]


def _param(p: click.Parameter, given) -> dict[str, Any]:
    kind, choices = _type(p)
    out: dict[str, Any] = {"name": p.name, "type": kind}
    if choices is not None:
        out["choices"] = choices
    plain = not p.envvar and p.callback is None and p.expose_value
    if isinstance(p, click.Option):
        out["opts"] = list(p.opts)
        out["secondary"] = list(p.secondary_opts)
        out["multiple"] = bool(p.multiple)
        odd_name = any(not (len(o) == 2 and o[0] == "-" and o[1] != "-") and not (o.startswith("--") and len(o) > 2)
                       for o in p.opts + p.secondary_opts)
        if p.is_flag and not p.count:
            # a flag: its value when given (and, for --x/--no-x, the other spelling's)
            out["kind"] = "flag"
            out["value"] = given(p.opts[0], p.name)
            if p.secondary_opts:
                out["secondary_value"] = given(p.secondary_opts[0], p.name)
            ok = plain and kind in ("bool", "str", "int") and not p.multiple
        else:
            out["kind"] = "value"
            # options with an optional value (is_flag=False with a flag_value) need click's rules
            ok = (plain and p.nargs == 1 and not p.count and not getattr(p, "_flag_needs_value", False)
                  and kind in ("str", "int", "choice", "raw"))
        ok = ok and not odd_name and not p.is_eager
    else:
        out["kind"] = "argument"
        out["nargs"] = p.nargs
        out["required"] = bool(p.required)
        ok = plain and kind in ("str", "raw") and p.nargs in (1, -1)
    if not ok:
        out["kind"] = "unsupported"
    return out


def _spec(cmd: click.Command, ctx_parent: click.Context | None, body: str | None,
          minimal: list[str] | None) -> dict[str, Any]:
    ctx = cmd.make_context(cmd.name or "kpod", list(minimal or []), parent=ctx_parent)
    help_names = set(ctx.help_option_names)
    params = [_param(p, lambda opt, name: _given(cmd, ctx_parent, list(minimal or []), opt, name))
              for p in cmd.get_params(ctx) if not (set(getattr(p, "opts", ())) & help_names)]
    defaults = {}
    for name, value in ctx.params.items():
        arg = next(p for p in params if p["name"] == name)
        if arg["kind"] == "argument" and arg["nargs"] == 1:
            continue  # always given (required)
        defaults[name] = list(value) if isinstance(value, tuple) else value
    return {
        "body": body,
        "params": params,
        "defaults": defaults,
        "interspersed": bool(ctx.allow_interspersed_args),
    }


def build() -> dict[str, Any]:
    """The spec of the global flags and of every command in :data:`FAST_COMMANDS`."""
    from .main import cli

    root = cli.make_context("kpod", ["version"], resilient_parsing=True)
    spec: dict[str, Any] = {"group": _spec(cli, None, None, ["version"]), "commands": {}}
    spec["group"]["defaults"].pop("show_version", None)
    for path, (body, minimal) in FAST_COMMANDS.items():
        ctx = root
        cmd: click.Command = cli
        for word in path.split():
            assert isinstance(cmd, click.Group)
            sub = cmd.get_command(ctx, word)
            assert sub is not None, path
            if isinstance(sub, click.Group):
                ctx = sub.make_context(word, [], parent=ctx, resilient_parsing=True)
            cmd = sub
        spec["commands"][path] = _spec(cmd, ctx, body, minimal)
    return spec


def render(spec: dict[str, Any]) -> str:
    return (
        '"""Generated by ``python -m libpod_core.cli.fastspec`` from the click commands: the flags\n'
        'the fast path (libpod_core.cli.fast) parses. Do not edit by hand."""\n\n'
        f"SPEC = {pprint.pformat(spec, width=110, sort_dicts=True)}\n"
    )


def main() -> None:
    text = render(build())
    with open(PATH, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {PATH}")


if __name__ == "__main__":
    main()
