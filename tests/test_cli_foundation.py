"""The kpod CLI foundation: help, version, info, plugins, driver selection, errors, startup cost."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import KPOD, assert_one_error_line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_help_lists_every_command(kpod):
    from libpod_core.cli.main import COMMANDS

    out = kpod("--help", global_args=False).stdout
    for name in COMMANDS:
        assert f"  {name} " in out or out.rstrip().endswith(f"  {name}"), name


def test_version_formats(kpod):
    out = kpod("version", global_args=False).stdout
    assert "Version:" in out and "Python:" in out
    data = json.loads(kpod("version", "--format", "json", global_args=False).stdout)
    assert data["Client"]["Version"] == data["Version"]
    assert kpod("version", "--format", "{{.Client.Version}}", global_args=False).stdout.strip() == data["Version"]


@pytest.mark.parametrize("argv", [["--help"], ["version"], ["-v"]])
def test_startup_imports_no_plugin_stevedore_or_yaml(argv):
    code = (
        "import sys\n"
        "from libpod_core.cli.main import run\n"
        f"rc = run({argv!r})\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('stevedore', 'yaml', 'kpod_runtime_runc', 'kpod_runtime_crun', 'kpod_storage_overlay', "
        "'kpod_storage_vfs', 'kpod_net_cni', 'pluggy', 'sqlite3', 'zstandard'))\n"
        "print('BAD', bad, file=sys.stderr)\n"
        "sys.exit(1 if bad or rc else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_info_defaults_select_runc_and_overlay(kpod):
    info = json.loads(kpod("info", "--format", "json").stdout)
    assert info["host"]["ociRuntime"]["name"] == "runc"
    assert info["host"]["ociRuntime"]["path"].endswith("/runc")
    assert "runc" in info["host"]["ociRuntime"]["version"]
    assert info["store"]["graphDriverName"] == "overlay"
    assert info["store"]["graphRoot"] == kpod.graphroot
    assert info["config"]["settings"]["graphroot"]["source"] == "flag --root"
    assert info["config"]["settings"]["runtime"]["source"] == "default"
    names = {(p["kind"], p["name"]) for ps in info["plugins"].values() for p in ps}
    assert {("runtime", "runc"), ("runtime", "crun"), ("storage", "overlay"), ("storage", "vfs"), ("network", "cni")} <= names
    runc = next(p for p in info["plugins"]["runtime"] if p["name"] == "runc")
    assert runc["distribution"] == "kpod-runtime-runc" and runc["selected"]
    assert "runtime_create" in runc["hooks"]


def test_info_yaml_default_and_template(kpod):
    out = kpod("info").stdout
    assert "host:" in out and "store:" in out
    assert kpod("info", "--format", "{{.Store.GraphDriverName}}").stdout.strip() == "overlay"


def test_runtime_crun_and_vfs_selected_by_flags(kpod):
    info = json.loads(kpod("--runtime", "crun", "-s", "vfs", "info", "--format", "json").stdout)
    assert info["host"]["ociRuntime"]["name"] == "crun"
    assert "crun" in info["host"]["ociRuntime"]["version"]
    assert info["store"]["graphDriverName"] == "vfs"
    assert info["config"]["settings"]["runtime"]["source"] == "flag --runtime"


def test_runtime_given_as_a_path(kpod):
    crun = subprocess.run(["sh", "-c", "command -v crun"], capture_output=True, text=True).stdout.strip()
    info = json.loads(kpod("--runtime", crun, "info", "--format", "json").stdout)
    assert info["host"]["ociRuntime"]["name"] == "crun" and info["host"]["ociRuntime"]["path"] == crun


def test_config_file_env_and_flag_precedence(kpod, tmp_path):
    cfg = tmp_path / "kpod.yaml"
    cfg.write_text("runtime: crun\nstorage_driver: vfs\n")
    fmt = "{{.Host.OciRuntime.Name}} {{.Store.GraphDriverName}}"
    assert kpod("--config", str(cfg), "info", "--format", fmt).stdout.split() == ["crun", "vfs"]
    assert kpod("info", "--format", fmt, env={"KPOD_CONFIG": str(cfg)}).stdout.split() == ["crun", "vfs"]
    out = kpod("--config", str(cfg), "info", "--format", fmt, env={"KPOD_RUNTIME": "runc"}).stdout.split()
    assert out == ["runc", "vfs"]
    out = kpod("--config", str(cfg), "--runtime", "crun", "-s", "overlay", "info", "--format", fmt,
               env={"KPOD_RUNTIME": "runc"}).stdout.split()
    assert out == ["crun", "overlay"]


def test_user_config_file_is_read(kpod, tmp_path):
    user = tmp_path / "home" / ".config" / "kpod"
    user.mkdir(parents=True, exist_ok=True)
    with open(user / "kpod.yaml", "a") as f:
        f.write("storage_driver: vfs\n")
    info = json.loads(kpod("info", "--format", "json").stdout)
    assert info["store"]["graphDriverName"] == "vfs"
    assert info["config"]["settings"]["storage_driver"]["source"].endswith("/.config/kpod/kpod.yaml")


@pytest.mark.parametrize(
    "args, env, contains",
    [
        (["--runtime", "nosuch", "info"], {}, "runtime driver 'nosuch' is not installed (installed runtime drivers: crun, runc)"),
        (["-s", "zfs", "info"], {}, "storage driver 'zfs' is not installed"),
        (["--runtime", "/nonexistent/runc", "info"], {}, "no executable at that path"),
        (["info"], {"KPOD_BOGUS": "1"}, "KPOD_BOGUS"),
        (["info"], {"KPOD_LOG_LEVEL": "loud"}, "KPOD_LOG_LEVEL"),
        (["--storage-opt", "overlay.nosuch=1", "info"], {}, "overlay.nosuch"),
        (["nosuchcommand"], {}, "No such command"),
        (["info", "--bogus-flag"], {}, "--bogus-flag"),
        (["info", "--format", "{{.Nope}}"], {}, "can't evaluate field Nope"),
    ],
)
def test_errors_are_one_line_exit_125(kpod, args, env, contains):
    proc = kpod(*args, check=False, env=env)
    assert_one_error_line(proc, 125, contains)


def test_bad_config_file_errors(kpod, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("runtime: crun\nnot_a_key: 1\n")
    assert_one_error_line(kpod("--config", str(bad), "info", check=False), 125, str(bad))
    bad.write_text("runtime: [crun\n")
    assert_one_error_line(kpod("--config", str(bad), "info", check=False), 125, "invalid YAML")
    assert_one_error_line(kpod("--config", str(tmp_path / "missing.yaml"), "info", check=False), 125, "not found")


def test_missing_provider_names_distribution(kpod, tmp_path):
    cfg = tmp_path / "kpod.yaml"
    cfg.write_text("runtimes:\n  crun: [/nonexistent/crun]\n")
    proc = kpod("--config", str(cfg), "--runtime", "crun", "info", check=False)
    assert_one_error_line(proc, 125, "OCI runtime crun not found")


def test_debug_shows_traceback(kpod):
    proc = kpod("--log-level", "debug", "--runtime", "nosuch", "info", check=False)
    assert proc.returncode == 125 and "Traceback" in proc.stderr and "Error: " in proc.stderr


def test_plugins_listing(kpod):
    out = kpod("plugins").stdout.splitlines()
    assert out[0].split() == ["KIND", "NAME", "DISTRIBUTION", "VERSION", "SELECTED"]
    assert kpod("plugins", "--kind", "storage", "-q").stdout.split() == ["overlay", "vfs"]
    rows = json.loads(kpod("plugins", "--kind", "runtime", "--format", "json").stdout)
    assert {r["name"] for r in rows} == {"runc", "crun"}
    assert all("runtime_kill" in r["hooks"] for r in rows)
    assert kpod("plugins", "--kind", "network", "--format", "{{.Name}} {{.Distribution}}").stdout.strip() == "cni kpod-net-cni"
