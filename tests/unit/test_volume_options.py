"""The local volume driver's ``-o`` options and volume names (libpod_core.volumes)."""

from __future__ import annotations

import pytest

from libpod_core.errors import InvalidArgument
from libpod_core.volumes import check_name, parse_options


def test_no_options_no_mount():
    p = parse_options({})
    assert (p["mount"], p["uid"], p["gid"], p["copy"], p["options"]) == (None, None, None, True, {})


def test_owner_alone_needs_no_mount():
    p = parse_options({"o": "uid=1000,gid=100"})
    assert (p["mount"], p["uid"], p["gid"]) == (None, 1000, 100)


def test_tmpfs():
    p = parse_options({"TYPE": "tmpfs", "o": "size=2m,uid=5,nodev"})
    assert p["options"] == {"type": "tmpfs", "o": "size=2m,uid=5,nodev"}  # keys lower case, values as given
    assert p["mount"] == ("tmpfs", "tmpfs", "size=2m,uid=5,nodev")
    assert p["uid"] == 5


def test_bind_and_other_types(tmp_path):
    assert parse_options({"type": "none", "o": "bind", "device": str(tmp_path)})["mount"] == \
        ("none", str(tmp_path), "bind")
    assert parse_options({"o": "bind", "device": str(tmp_path)})["mount"] == ("", str(tmp_path), "bind")
    assert parse_options({"type": "ext4", "device": "/dev/sdz9"})["mount"] == ("ext4", "/dev/sdz9", "")


def test_nocopy():
    assert parse_options({"nocopy": ""})["copy"] is False
    assert parse_options({"copy": ""})["copy"] is True


@pytest.mark.parametrize("opts", [
    {"foo": "bar"}, {"o": "uid=abc"}, {"o": "gid"}, {"o": "size=10m"}, {"type": "tmpfs", "o": "size=huge"},
    {"o": "inodes=10"}, {"o": "noquota"}, {"type": "ext4"}, {"device": "/dev/sdz9"}, {"o": "noexec"},
    {"type": "bad type", "device": "x"}, {"type": ""}, {"nocopy": "yes"}, {"copy": "", "nocopy": ""},
    {"o": "bind", "device": "relative"}, {"o": "bind", "device": "/nonexistent-kpod-dir"},
])
def test_bad_options(opts):
    with pytest.raises(InvalidArgument):
        parse_options(opts)


@pytest.mark.parametrize("name", ["", "-x", ".x", "a/b", "..", "a b", "x" * 256, "é"])
def test_bad_names(name):
    with pytest.raises(InvalidArgument):
        check_name(name)


def test_good_names():
    for name in ("a", "my-vol_1.2", "0" * 64):
        assert check_name(name) == name
