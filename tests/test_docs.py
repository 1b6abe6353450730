"""Man pages and the CLI stay in step, both directions; every hook is documented."""

from __future__ import annotations

import os
import re

import click

from libpod_core.cli.main import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")


def walk(group, prefix=()):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        path = prefix + (name,)
        yield path, cmd
        if isinstance(cmd, click.Group):
            yield from walk(cmd, path)


def page_for(path):
    return os.path.join(DOCS, "kpod-" + "-".join(path) + ".1.md")


def by_command():
    """Each command object with every path it is reachable by (aliases share one object)."""
    groups = {}
    for path, cmd in walk(cli):
        groups.setdefault(id(cmd), (cmd, []))[1].append(path)
    return groups.values()


def test_every_command_has_a_man_page_with_its_flags():
    missing, undocumented = [], []
    for cmd, paths in by_command():
        pages = [page_for(p) for p in paths if os.path.exists(page_for(p))]
        if not pages:
            missing.append(page_for(paths[0]))
            continue
        page = pages[0]
        text = open(page).read()
        for param in cmd.params:
            if isinstance(param, click.Option) and not param.hidden:
                for opt in param.opts:
                    if opt.startswith("--") and opt != "--help" and opt not in text:
                        undocumented.append(f"{os.path.basename(page)}: {opt}")
    assert not missing, missing
    assert not undocumented, undocumented


def test_every_man_page_has_a_command():
    commands = {"kpod-" + "-".join(p) + ".1.md" for p, _ in walk(cli)}
    pages = {f for f in os.listdir(DOCS) if re.match(r"kpod-.*\.1\.md$", f)}
    assert pages - commands == set()


def test_kpod_1_lists_every_top_level_command_and_global_flag():
    text = open(os.path.join(DOCS, "kpod.1.md")).read()
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        assert f"kpod-{name}(1)" in text, name
    for param in cli.params:
        for opt in param.opts:
            if opt.startswith("--") and opt != "--help":
                assert opt in text, opt


def test_plugins_md_documents_every_hook():
    from libpod_core import hookspecs

    text = open(os.path.join(DOCS, "plugins.md")).read()
    hooks = [n for n, f in vars(hookspecs).items() if callable(f) and hasattr(f, "kpod_spec")]
    assert hooks
    for h in hooks:
        assert f"`{h}`" in text, h
