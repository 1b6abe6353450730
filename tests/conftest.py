"""Shared fixtures: an isolated kpod CLI per test, and clean-up checks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.dirname(sys.executable)
KPOD = os.path.join(VENV_BIN, "kpod")


class Kpod:
    """Runs the real ``kpod`` console script with its own roots and no config files."""

    def __init__(self, tmp_path, env=None):
        self.graphroot = str(tmp_path / "graph")
        self.runroot = str(tmp_path / "run")
        self.cni_dir = str(tmp_path / "cni")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KPOD_")}
        self.env["HOME"] = str(tmp_path / "home")
        self.env.update(env or {})
        # The user config keeps tests off the host's registries.conf, policy.json and
        # registries.d: no short name ever resolves to a registry on the internet.
        isolate_registries(tmp_path, os.path.join(self.env["HOME"], ".config", "kpod", "kpod.yaml"))
        self.global_args = ["--root", self.graphroot, "--runroot", self.runroot, "--cni-config-dir", self.cni_dir]

    def __call__(self, *args, check=True, input=None, timeout=120, env=None, global_args=True):
        cmd = [KPOD, *(self.global_args if global_args else []), *args]
        proc = subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            text=not isinstance(input, bytes),
            timeout=timeout,
            env={**self.env, **(env or {})},
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc


def isolate_registries(tmp_path, config_path):
    d = tmp_path / "containers"
    d.mkdir(parents=True, exist_ok=True)
    (d / "registries.conf").write_text("unqualified-search-registries = []\n")
    (d / "policy.json").write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')
    (d / "registries.d").mkdir(exist_ok=True)
    os.makedirs(os.path.dirname(config_path), exist_ok=True)
    with open(config_path, "w") as f:
        f.write(f"registries_conf: {d}/registries.conf\nsignature_policy: {d}/policy.json\n"
                f"registries_d: {d}/registries.d\n")


@pytest.fixture
def kpod(tmp_path):
    return Kpod(tmp_path)


def assert_one_error_line(proc, code=125, contains=None):
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    if contains:
        assert contains in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
