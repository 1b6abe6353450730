"""contrib/systemd/kpod-restart.service and its installation by the Makefile.

What the unit's commands do is tested for real in tests/integration/test_restart_boot.py.
"""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = os.path.join(ROOT, "contrib", "systemd", "kpod-restart.service")


def _parse(path: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None, strict=True)
    cp.optionxform = str  # systemd keys are case-sensitive
    cp.read(path)
    return cp


def test_unit_is_podman_restart_service_for_kpod():
    unit = _parse(UNIT)
    svc = unit["Service"]
    assert svc["Type"] == "oneshot" and svc["RemainAfterExit"] == "true"
    assert shlex.split(svc["ExecStart"]) == ["/usr/bin/kpod", "$LOGGING", "start", "--all", "--filter",
                                             "restart-policy=always"]
    assert shlex.split(svc["ExecStop"]) == ["/usr/bin/kpod", "$LOGGING", "stop", "--filter", "restart-policy=always"]
    assert unit["Unit"]["After"] == "network-online.target"
    assert unit["Install"]["WantedBy"] == "default.target"


def test_start_and_stop_take_the_units_arguments():
    from click.testing import CliRunner

    from libpod_core.cli.main import cli

    for key in ("ExecStart", "ExecStop"):
        argv = shlex.split(_parse(UNIT)["Service"][key])[2:]
        result = CliRunner().invoke(cli, ["--log-level=info", *argv, "--help"])
        assert result.exit_code == 0, result.output
        assert "--filter" in result.output


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("variables, unit_path, kpod", [
    ([], "usr/local/lib/systemd/system", "/usr/local/bin/kpod"),
    (["PREFIX=/usr"], "usr/lib/systemd/system", "/usr/bin/kpod"),
    (["PREFIX=/usr", "SYSTEMD_UNIT_DIR=/lib/systemd/system", "BINDIR=/opt/kpod/bin"], "lib/systemd/system",
     "/opt/kpod/bin/kpod"),
])
def test_make_install_systemd(tmp_path, variables, unit_path, kpod):
    """Packagers' variables: PREFIX, BINDIR, SYSTEMD_UNIT_DIR, DESTDIR; no venv needed."""
    subprocess.run(["make", "-s", "-C", ROOT, "install-systemd", f"DESTDIR={tmp_path}", *variables], check=True,
                   capture_output=True)
    installed = tmp_path / unit_path / "kpod-restart.service"
    assert oct(installed.stat().st_mode & 0o777) == "0o644"
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files == [installed]
    svc = _parse(str(installed))["Service"]
    assert shlex.split(svc["ExecStart"])[0] == kpod and shlex.split(svc["ExecStop"])[0] == kpod
    with open(UNIT) as f:
        assert installed.read_text() == f.read().replace("/usr/bin/kpod ", kpod + " ")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None or shutil.which("make") is None,
                    reason="needs systemd-analyze and make")
def test_systemd_accepts_the_unit(tmp_path):
    """systemd's own parser, with ExecStart naming an existing kpod (the one running the tests)."""
    bindir = os.path.dirname(sys.executable)  # the venv's, where its kpod console script is
    if not os.path.exists(os.path.join(bindir, "kpod")):
        pytest.skip("no kpod console script")
    subprocess.run(["make", "-s", "-C", ROOT, "install-systemd", f"DESTDIR={tmp_path}", f"BINDIR={bindir}",
                    "SYSTEMD_UNIT_DIR=/units"], check=True, capture_output=True)
    p = subprocess.run(["systemd-analyze", "verify", "--man=no", str(tmp_path / "units" / "kpod-restart.service")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_container_filters_parse_and_refuse():
    """ps, start and stop share one filter parser: restart-policy= is one of its keys."""
    from libpod_core.cli.cmd_containers import _parse_filters
    from libpod_core.errors import InvalidArgument

    assert _parse_filters(["restart-policy=always", "RESTART-POLICY=unless-stopped", "label=a=b", "exited=-1"]) == {
        "restart-policy": ["always", "unless-stopped"], "label": ["a=b"], "exited": ["-1"]}
    for bad in ("restart-policy", "restart-policy=", "restart-policy=on-failure:3", "colour=red", "=x",
                "status=sleeping", "exited=one", "exited=--3", "name=["):
        with pytest.raises(InvalidArgument, match="invalid filter"):
            _parse_filters([bad])
