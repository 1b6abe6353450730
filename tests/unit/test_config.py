"""Layered configuration: precedence, source tracking and every error path."""

from __future__ import annotations

import pytest

from libpod_core.config import SCHEMA, Config, load_file
from libpod_core.errors import ConfigError


def write(path, text):
    path.write_text(text)
    return str(path)


def load(tmp_path, system="", user="", explicit=None, env=None, flags=None):
    sysf = write(tmp_path / "system.yaml", system) if system else ""
    userf = write(tmp_path / "user.yaml", user) if user else ""
    expf = write(tmp_path / "explicit.yaml", explicit) if explicit else None
    return Config.load(expf, environ=env or {}, overrides=flags, override_source="flag", system_file=sysf, user_file=userf)


def test_defaults_without_any_file(tmp_path):
    cfg = load(tmp_path)
    assert cfg.runtime == "runc"
    assert cfg.storage_driver == "overlay"
    assert cfg.graphroot == "/var/lib/kpod" and cfg.runroot == "/run/kpod"
    assert cfg.source("runtime") == "default"
    assert set(cfg.describe()) == set(SCHEMA)


def test_precedence_each_layer_wins_over_the_one_below(tmp_path):
    cfg = load(tmp_path, system="runtime: a\nstorage_driver: s1\nlog_level: info\ngraphroot: /g1\n",
               user="runtime: b\nstorage_driver: s2\nlog_level: error\n",
               explicit="runtime: c\nstorage_driver: s3\n",
               env={"KPOD_RUNTIME": "d"},
               flags={"runtime": "e"})
    assert cfg.runtime == "e" and cfg.source("runtime") == "flag"
    assert cfg.storage_driver == "s3" and cfg.source("storage_driver").endswith("explicit.yaml")
    assert cfg.log_level == "error" and cfg.source("log_level").endswith("user.yaml")
    assert cfg.graphroot == "/g1" and cfg.source("graphroot").endswith("system.yaml")
    cfg = load(tmp_path, explicit="runtime: c\n", env={"KPOD_RUNTIME": "d"})
    assert cfg.runtime == "d" and cfg.source("runtime") == "env KPOD_RUNTIME"


def test_kpod_config_env_names_the_explicit_file(tmp_path):
    f = write(tmp_path / "k.yaml", "storage_driver: vfs\n")
    cfg = Config.load(None, environ={"KPOD_CONFIG": f}, system_file="", user_file="")
    assert cfg.storage_driver == "vfs" and cfg.source("storage_driver") == f


def test_maps_merge_per_entry_lists_replace(tmp_path):
    cfg = load(tmp_path, system="runtimes:\n  foo: [/opt/foo]\nhooks_dirs: [/a]\n", user="runtimes:\n  crun: /x/crun\nhooks_dirs: [/b]\n")
    assert cfg.runtimes["foo"] == ["/opt/foo"] and cfg.runtimes["crun"] == ["/x/crun"]
    assert "runc" in cfg.runtimes
    assert cfg.hooks_dirs == ["/b"]


def test_env_types(tmp_path):
    cfg = load(tmp_path, env={"KPOD_HOOKS_DIRS": "/a, /b", "KPOD_RUNTIMES": '{"x": ["/bin/x"]}'})
    assert cfg.hooks_dirs == ["/a", "/b"] and cfg.runtimes["x"] == ["/bin/x"]


@pytest.mark.parametrize(
    "text, words",
    [
        ("runtime: [1, 2]\n", ["'runtime'", "a string"]),
        ("hooks_dirs: /one\n", ["'hooks_dirs'", "list"]),
        ("bogus_key: 1\n", ["unknown key", "'bogus_key'"]),
        ("log_level: loud\n", ["'log_level'", "one of"]),
        ("runtimes: [a]\n", ["'runtimes'"]),
        ("runtimes:\n  runc: 5\n", ["'runtimes'", "'runc'"]),
        ("- just\n- a list\n", ["must be a mapping"]),
        ("runtime: 'unterminated\n", ["invalid YAML", "line"]),
        ("a: b: c\n", ["invalid YAML"]),
    ],
)
def test_file_errors_name_file_and_key(tmp_path, text, words):
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError) as err:
        load_file(path)
    msg = err.value.message
    assert path in msg
    for w in words:
        assert w in msg, msg


def test_missing_explicit_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        Config.load(str(tmp_path / "nope.yaml"), environ={}, system_file="", user_file="")


def test_empty_file_is_fine(tmp_path):
    assert load_file(write(tmp_path / "e.yaml", "")) == {}


def test_unknown_env_variable_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="KPOD_RUNTIMEX"):
        load(tmp_path, env={"KPOD_RUNTIMEX": "x"})


@pytest.mark.parametrize("var, value", [("KPOD_RUNTIMES", "not json"), ("KPOD_RUNTIMES", "[1]"), ("KPOD_LOG_LEVEL", "loud")])
def test_bad_env_values(tmp_path, var, value):
    with pytest.raises(ConfigError, match=var):
        load(tmp_path, env={var: value})


def test_flag_wrong_type(tmp_path):
    with pytest.raises(ConfigError, match="hooks_dirs"):
        load(tmp_path, flags={"hooks_dirs": "/x"})


def test_storage_options_parse(tmp_path):
    cfg = load(tmp_path, flags={"storage_opts": ["overlay.mountopt=nodev"]})
    assert cfg.storage_options() == {"overlay.mountopt": "nodev"}
    cfg = load(tmp_path, flags={"storage_opts": ["novalue"]})
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        cfg.storage_options()
