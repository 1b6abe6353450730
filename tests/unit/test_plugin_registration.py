"""kpod's pluggy manager skips most of pluggy's static attribute lookups; it must find exactly
the hook implementations pluggy finds, whatever shape a plugin has."""

from __future__ import annotations

import types

import pluggy
import pytest

from libpod_core import epcache, hookspecs
from libpod_core.plugins import _PluggyManager

hookimpl = pluggy.HookimplMarker("kpod")


def _found(pm_cls, plugin) -> list[tuple[str, str]]:
    pm = pm_cls("kpod")
    pm.add_hookspecs(hookspecs)
    pm.register(plugin)
    return sorted((c.name, impl.function.__name__) for c in pm.get_hookcallers(plugin) or []
                  for impl in c.get_hookimpls() if impl.plugin is plugin)


class Base:
    @hookimpl
    def runtime_version(self):
        return {}

    def helper(self):
        return None


class Odd(Base):
    """Every shape pluggy accepts, plus attributes that are not hooks."""

    @staticmethod
    @hookimpl
    def runtime_info():
        return {}

    @classmethod
    @hookimpl
    def runtime_features(cls):
        return {}

    @hookimpl(specname="runtime_state")
    def _state_under_another_name(self, container_id):
        return {}

    @property
    def runtime_command(self):  # a property is never a hook (and must not run)
        raise AssertionError("evaluated a property")

    not_a_hook = 3


def _instance_with_attribute_hook():
    obj = Odd()

    @hookimpl
    def runtime_env():
        return {}

    obj.runtime_env = runtime_env  # an instance attribute carrying the marker
    return obj


def _module_plugin():
    mod = types.ModuleType("kpod_test_module_plugin")

    @hookimpl
    def runtime_env():
        return {}

    def plain():
        return None

    mod.runtime_env, mod.plain = runtime_env, plain
    return mod


def _installed():
    out = []
    for group in ("kpod.runtime", "kpod.storage", "kpod.network", "kpod.plugins"):
        out += [epcache.load(e.value) for e in epcache.entries(group)]
    return out


@pytest.mark.parametrize("plugin", [Odd(), Odd, _instance_with_attribute_hook(), _module_plugin(), *_installed()],
                         ids=lambda p: getattr(p, "__name__", type(p).__name__))
def test_same_hooks_as_pluggy(plugin):
    ours = _found(_PluggyManager, plugin)
    assert ours == _found(pluggy.PluginManager, plugin)
    assert ours  # every plugin here implements something
