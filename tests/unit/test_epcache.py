"""The entry-point cache: used when valid, rebuilt when what it depends on changes, and
never the reason for a different answer than importlib.metadata's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from libpod_core import epcache


def _dist(site, name, eps: str, version="1.0"):
    d = site / f"{name}-{version}.dist-info"
    d.mkdir()
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (d / "entry_points.txt").write_text(textwrap.dedent(eps))
    return d


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setattr(sys, "path", [str(site)])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    epcache.forget()
    yield site
    epcache.forget()


def test_scan_write_then_read(sandbox, monkeypatch):
    _dist(sandbox, "kpod-runtime-x", "[kpod.runtime]\nx = mod_x:Driver\n[console_scripts]\nfoo = a:b\n")
    assert epcache.entries("kpod.runtime") == [epcache.Entry("x", "mod_x:Driver", "kpod-runtime-x", "1.0")]
    path = epcache._cache_path()
    data = json.loads(open(path).read())
    assert list(data["groups"]) == ["kpod.runtime"]  # only kpod groups are kept

    # a valid cache is used as is: no scan
    epcache.forget()
    monkeypatch.setattr(epcache, "_scan", lambda: pytest.fail("scanned although the cache is valid"))
    assert epcache.entries("kpod.runtime", "x")[0].value == "mod_x:Driver"


def test_install_upgrade_remove_invalidate(sandbox):
    d = _dist(sandbox, "kpod-runtime-x", "[kpod.runtime]\nx = mod_x:Driver\n")
    assert [e.name for e in epcache.entries("kpod.runtime")] == ["x"]
    # another distribution installed
    _dist(sandbox, "kpod-runtime-y", "[kpod.runtime]\ny = mod_y:Driver\n")
    epcache.forget()
    assert sorted(e.name for e in epcache.entries("kpod.runtime")) == ["x", "y"]
    # entry points rewritten in place (same directory entries)
    (d / "entry_points.txt").write_text("[kpod.runtime]\nx = mod_x2:Driver\n")
    os.utime(d / "entry_points.txt", ns=(1, 1))
    epcache.forget()
    assert epcache.entries("kpod.runtime", "x")[0].value == "mod_x2:Driver"
    # removed
    for p in d.iterdir():
        p.unlink()
    d.rmdir()
    epcache.forget()
    assert [e.name for e in epcache.entries("kpod.runtime")] == ["y"]


def test_corrupt_or_unwritable_cache_is_ignored(sandbox, tmp_path, monkeypatch):
    _dist(sandbox, "kpod-net-z", "[kpod.network]\nz = mod_z:Net\n")
    epcache.entries("kpod.network")
    path = epcache._cache_path()
    for junk in ("{not json", "[]", json.dumps({"version": epcache.VERSION, "fingerprint": None, "groups": 3})):
        open(path, "w").write(junk)
        epcache.forget()
        assert epcache.entries("kpod.network", "z")[0].value == "mod_z:Net"
    monkeypatch.setenv("XDG_CACHE_HOME", "/proc/no-such-place")
    epcache.forget()
    assert epcache.entries("kpod.network", "z")[0].value == "mod_z:Net"


def test_duplicate_distribution_first_wins(sandbox, tmp_path, monkeypatch):
    other = tmp_path / "other"
    other.mkdir()
    _dist(sandbox, "kpod-runtime-x", "[kpod.runtime]\nx = first:D\n")
    _dist(other, "kpod_runtime_x", "[kpod.runtime]\nx = second:D\n", version="0.9")
    monkeypatch.setattr(sys, "path", [str(sandbox), str(other)])
    epcache.forget()
    assert [e.value for e in epcache.entries("kpod.runtime")] == ["first:D"]


def test_load_resolves_attributes_and_extras():
    assert epcache.load("os.path:join") is os.path.join
    assert epcache.load("os:path.join [extra]") is os.path.join


def test_real_command_uses_no_importlib_metadata_when_cached(tmp_path):
    """A warm `kpod create`'s driver loading must not import importlib.metadata or stevedore."""
    code = textwrap.dedent("""
        import sys
        from libpod_core import config, plugins
        cfg = config.Config.load(overrides={"graphroot": sys.argv[1], "runroot": sys.argv[2]})
        pm = plugins.PluginManager(cfg)
        pm.driver("runtime"); pm.driver("storage"); pm.load_general()
        print(",".join(m for m in ("importlib.metadata", "stevedore") if m in sys.modules))
    """)
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    args = [sys.executable, "-c", code, str(tmp_path / "g"), str(tmp_path / "r")]
    first = subprocess.run(args, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    second = subprocess.run(args, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == ""


def test_stale_caches_of_other_paths_are_pruned(sandbox):
    _dist(sandbox, "kpod-runtime-x", "[kpod.runtime]\nx = mod_x:Driver\n")
    path = epcache._cache_path()
    d = os.path.dirname(path)
    os.makedirs(d, exist_ok=True)
    old, recent = os.path.join(d, "entry-points-00000000.json"), os.path.join(d, "entry-points-11111111.json")
    for p in (old, recent):
        open(p, "w").write("{}")
    os.utime(old, (1, 1))
    epcache.entries("kpod.runtime")  # a miss: writes its file and prunes
    assert os.path.exists(path) and os.path.exists(recent) and not os.path.exists(old)
