"""A third-party plugin, built and pip-installed in the test, is picked with no core change."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from conftest import assert_one_error_line

PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "1.2.3"
dependencies = ["libpod-core"]

[project.entry-points."{group}"]
{name} = "{target}"

[tool.setuptools]
py-modules = ["{module}"]
"""

RUNTIME_MODULE = '''
"""A third-party runtime driver: runc under another name, plus a marker hook."""
import shutil
from libpod_core import hookimpl
from libpod_core.oci import OCIRuntimeDriver


class ThirdRuntime(OCIRuntimeDriver):
    name = "thirdrt"

    def __init__(self, config):
        config.merge({"runtimes": {**config.runtimes, "thirdrt": [shutil.which("runc")]}}, "plugin thirdrt")
        super().__init__(config)

    @hookimpl
    def runtime_info(self):
        info = super().runtime_info()
        info["thirdParty"] = True
        return info
'''

BAD_MODULE = '''
from libpod_core import hookimpl

class Bad:
    def __init__(self, config):
        pass

    @hookimpl
    def runtime_state(self, container_id, not_in_spec):
        return None
'''

GENERAL_MODULE = '''
from libpod_core import hookimpl

@hookimpl
def kpod_info(config):
    return {"hello": {"from": "thirdparty", "runtime": config.runtime}}

@hookimpl
def oci_spec_modify(spec, container):
    spec.setdefault("annotations", {})["io.example.touched"] = "yes"
'''


def pip(*args):
    proc = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


def build_plugin(tmp_path, dist, group, name, module, attr, source):
    d = tmp_path / dist
    d.mkdir()
    (d / "pyproject.toml").write_text(PYPROJECT.format(dist=dist, group=group, name=name, module=module, target=f"{module}:{attr}" if attr else module))
    (d / f"{module}.py").write_text(textwrap.dedent(source))
    return d


@pytest.fixture
def installed(tmp_path):
    dists = []

    def install(dist, group, name, module, attr, source):
        d = build_plugin(tmp_path, dist, group, name, module, attr, source)
        pip("install", "--no-build-isolation", "--no-deps", str(d))
        dists.append(dist)

    yield install
    for dist in dists:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", dist], capture_output=True)


def test_third_party_runtime_is_selected_then_missing(installed, kpod):
    installed("kpod-runtime-thirdrt", "kpod.runtime", "thirdrt", "kpod_thirdrt", "ThirdRuntime", RUNTIME_MODULE)
    info = json.loads(kpod("--runtime", "thirdrt", "info", "--format", "json").stdout)
    assert info["host"]["ociRuntime"]["name"] == "thirdrt"
    assert info["host"]["ociRuntime"]["thirdParty"] is True
    plugin = next(p for p in info["plugins"]["runtime"] if p["name"] == "thirdrt")
    assert plugin["distribution"] == "kpod-runtime-thirdrt" and plugin["version"] == "1.2.3" and plugin["selected"]
    pip("uninstall", "-y", "kpod-runtime-thirdrt")
    proc = kpod("--runtime", "thirdrt", "info", check=False)
    assert_one_error_line(proc, 125, "runtime driver 'thirdrt' is not installed (installed runtime drivers: crun, runc)")


def test_plugin_not_matching_specs_is_a_clear_error(installed, kpod):
    installed("kpod-runtime-bad", "kpod.runtime", "badrt", "kpod_badrt", "Bad", BAD_MODULE)
    proc = kpod("--runtime", "badrt", "info", check=False)
    assert_one_error_line(proc, 125, "does not match the hook specifications")
    assert "not_in_spec" in proc.stderr


def test_driver_missing_required_hooks(installed, kpod, tmp_path):
    src = "from libpod_core import hookimpl\nclass Half:\n    def __init__(self, config): pass\n" \
          "    @hookimpl\n    def runtime_version(self):\n        return 'half 1'\n"
    installed("kpod-runtime-half", "kpod.runtime", "halfrt", "kpod_halfrt", "Half", src)
    proc = kpod("--runtime", "halfrt", "info", check=False)
    assert_one_error_line(proc, 125, "does not implement required hooks: runtime_command")


def test_driver_that_fails_to_import(installed, kpod):
    installed("kpod-runtime-broken", "kpod.runtime", "brokenrt", "kpod_brokenrt", "X", "import nonexistent_module_xyz\n")
    proc = kpod("--runtime", "brokenrt", "info", check=False)
    assert_one_error_line(proc, 125, "runtime driver 'brokenrt' failed to load: ModuleNotFoundError")


def test_general_plugin_loaded_and_disabled(installed, kpod):
    installed("kpod-plugin-hello", "kpod.plugins", "hello", "kpod_hello", "", GENERAL_MODULE)
    info = json.loads(kpod("info", "--format", "json").stdout)
    assert info["pluginInfo"]["hello"] == {"from": "thirdparty", "runtime": "runc"}
    gen = next(p for p in info["plugins"]["plugin"] if p["name"] == "hello")
    assert gen["loaded"] and "kpod_info" in gen["hooks"] and gen["distribution"] == "kpod-plugin-hello"
    info = json.loads(kpod("info", "--format", "json", env={"KPOD_DISABLED_PLUGINS": "hello"}).stdout)
    assert "hello" not in info["pluginInfo"]
    gen = next(p for p in info["plugins"]["plugin"] if p["name"] == "hello")
    assert not gen["loaded"] and gen["error"] == "disabled"
