"""The fast path (libpod_core.cli.fast) reads every command line it takes exactly as click
does, hands everything else to click, and does not import click."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from libpod_core.cli import fast, fastspec
from libpod_core.cli._fastspec import SPEC
from libpod_core.cli.main import cli


def _rest(ctx) -> list[str]:
    """The words a group left for its subcommand (click < 9 keeps the first apart)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return [*getattr(ctx, "protected_args", ()), *ctx.args]


def click_parse(argv: list[str]):
    """(global params, command path, params) as the click CLI parses *argv*."""
    ctx = cli.make_context("kpod", list(argv))
    gparams = dict(ctx.params)
    gparams.pop("show_version")
    args = _rest(ctx)
    path = []
    cmd, parent = cli, ctx
    while True:
        name, sub, args = cmd.resolve_command(parent, args)
        path.append(name)
        sub_ctx = sub.make_context(name, args, parent=parent)
        if not hasattr(sub, "resolve_command"):
            return gparams, " ".join(path), dict(sub_ctx.params)
        cmd, parent = sub, sub_ctx
        args = _rest(sub_ctx)


def test_spec_is_current():
    with open(fastspec.PATH, encoding="utf-8") as f:
        assert f.read() == fastspec.render(fastspec.build()), (
            "libpod_core/cli/_fastspec.py is stale: run python -m libpod_core.cli.fastspec")


def _sample(p: dict) -> str:
    return {"int": "7", "choice": (p.get("choices") or ["x"])[-1]}.get(p["type"], "k=v")


def _corpus() -> list[list[str]]:
    out: list[list[str]] = []
    for path, spec in SPEC["commands"].items():
        words = path.split()
        base = ["IMG"] if path in ("create", "run") else (["p1"] if path == "pod start" else [])
        for p in spec["params"]:
            if p["kind"] in ("argument", "unsupported"):
                continue
            for opt in p["opts"] + p.get("secondary", []):
                if p["kind"] == "flag":
                    out.append([*words, opt, *base])
                else:
                    v = _sample(p)
                    out.append([*words, opt, v, *base])
                    out.append([*words, f"{opt}={v}" if opt.startswith("--") else f"{opt}{v}", *base])
                    if p["multiple"]:
                        out.append([*words, opt, v, opt, v + "2", *base])
    run = ["run", "--rm", "-it", "-e", "A=1", "-eB=2", "--name=n", "-v", "/a:/b", "IMG", "sh", "-c", "echo --rm -x"]
    out += [
        run,
        ["--root", "/r", "--runroot=/rr", "--storage-opt", "a=b", "--storage-opt", "c=d", *run],
        ["--log-level", "debug", "-s", "vfs", "create", "--pull", "never", "IMG", "--", "ls", "-l"],
        ["create", "--", "IMG", "ls"],
        ["create", "IMG", "-"],
        ["run", "-dit", "--restart", "always", "IMG"],
        ["run", "-ie", "X=1", "IMG", "env"],
        ["run", "--no-sig-proxy", "--sig-proxy", "IMG"],
        ["run", "--cpu-shares", " 12 ", "IMG"],
        ["run", "--name", "a", "--name", "b", "IMG"],
        ["create", "-e", "-x", "IMG"],
        ["pod", "create"],
        ["pod", "create", "-n", "p", "-p", "8080:80", "--network", "none", "--label", "a=b", "--no-hosts"],
        ["pod", "start", "a", "--all", "b"],
        ["pod", "start", "-la"],
        ["pod", "start", "--", "-weird"],
    ]
    return out


FALLBACK = [
    ["run", "--help"], ["run", "-h"], ["--help"], ["-v"], ["--version"], [], ["run"],
    ["run", "--no-such-flag", "IMG"], ["run", "-Z", "IMG"], ["create", "--pull", "sometimes", "IMG"],
    ["create", "--cpu-shares", "many", "IMG"], ["create", "--rm=true", "IMG"], ["create", "--name"],
    ["--log-level", "loud", "create", "IMG"], ["pod", "create", "--infra=false"], ["pod", "create", "extra"],
    ["pod", "ls"], ["ps", "-a"], ["version"], ["--root"], ["--root", "/r"], ["--", "run", "IMG"],
    ["pod"], ["pod", "--help", "create"],
]


@pytest.mark.parametrize("argv", _corpus(), ids=lambda a: " ".join(a))
def test_parses_like_click(argv):
    got = fast.split(argv)
    assert got is not None, "the fast path should take this command line"
    assert got == click_parse(argv)


@pytest.mark.parametrize("argv", FALLBACK, ids=lambda a: " ".join(a) or "(nothing)")
def test_hands_the_rest_to_click(argv):
    assert fast.split(argv) is None


def test_runs_without_click(tmp_path):
    """A fast-path command, failing on purpose (no such image, --pull never), goes through
    its body and the one-line error without importing click."""
    code = (
        "import sys\n"
        "from libpod_core.cli import fast\n"
        f"rc = fast.run(['--root', {str(tmp_path / 'g')!r}, '--runroot', {str(tmp_path / 'r')!r},\n"
        f"             '--cni-config-dir', {str(tmp_path / 'cni')!r},  # never the host's /etc/cni/net.d\n"
        "             'create', '--pull', 'never', 'localhost/no/such:image', 'true'])\n"
        "print(rc, 'click' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPOD_")}
    env["HOME"] = str(tmp_path)
    host_conf = "/etc/cni/net.d/kpod.conflist"
    before = os.path.exists(host_conf)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert os.path.exists(host_conf) == before, "the test wrote the host's default network"
    assert proc.stdout.split() == ["125", "False"], proc.stderr
    assert proc.stderr.startswith("Error: ") and proc.stderr.count("\n") == 1, proc.stderr
