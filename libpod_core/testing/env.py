"""Helpers that build an isolated engine configuration for a test."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

from ..config import Config


def make_config(tmp_path: str, **overrides: Any) -> Config:
    """A Config with graphroot/runroot (and CNI dir) under *tmp_path* and no config files."""
    empty = os.path.join(str(tmp_path), "no-registries.conf")
    if not os.path.exists(empty):
        with open(empty, "w") as f:  # never resolve a short name to a registry on the internet
            f.write("unqualified-search-registries = []\n")
    values = {
        "graphroot": os.path.join(str(tmp_path), "graph"),
        "runroot": os.path.join(str(tmp_path), "run"),
        "cni_config_dir": os.path.join(str(tmp_path), "cni"),
        "registries_conf": empty,
    }
    values.update(overrides)
    return Config.load(system_file="", user_file="", environ={}, overrides=values, override_source="test")


@contextmanager
def driver_env(kind: str, name: str, tmp_path: str, **overrides: Any) -> Iterator[Any]:
    """Load driver *name* of *kind* like the engine does; yields ``(hook, driver, config)``."""
    from ..plugins import PluginManager

    setting = {"runtime": "runtime", "storage": "storage_driver", "network": "network_backend"}[kind]
    config = make_config(tmp_path, **{setting: name, **overrides})
    pm = PluginManager(config)
    drv = pm.driver(kind)
    try:
        yield pm.hook, drv, config
    finally:
        if kind == "storage":
            pm.hook.storage_cleanup()
