"""The storage driver conformance suite: containers/storage's graph-driver contract."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from ..errors import AlreadyExists, InvalidArgument, InvalidLayer, KpodError
from .env import driver_env


def make_tar(entries: list[tuple]) -> bytes:
    """Build a tar: entries are (name, kind, data) with kind file/dir/symlink/hardlink."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, data in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_600_000_000
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            elif kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, data
                tf.addfile(ti)
            elif kind == "hardlink":
                ti.type, ti.linkname = tarfile.LNKTYPE, data
                tf.addfile(ti)
            else:
                raw = data.encode() if isinstance(data, str) else data
                ti.size, ti.mode = len(raw), 0o644
                tf.addfile(ti, io.BytesIO(raw))
    return buf.getvalue()


BASE = [
    ("etc", "dir", None),
    ("etc/hostname", "file", "base\n"),
    ("etc/gone", "file", "to be deleted\n"),
    ("data", "dir", None),
    ("data/a", "file", "a\n"),
    ("data/b", "file", "b\n"),
    ("bin", "dir", None),
    ("bin/sh", "file", "#!fake\n"),
    ("bin/ash", "hardlink", "bin/sh"),
    ("bin/link", "symlink", "sh"),
]

CHILD = [
    ("etc", "dir", None),
    ("etc/.wh.gone", "file", ""),
    ("etc/new", "file", "new\n"),
    ("data", "dir", None),
    ("data/.wh..wh..opq", "file", ""),
    ("data/c", "file", "c\n"),
]


class StorageDriverSuite:
    """Subclass and set :attr:`driver_name`."""

    driver_name: str = ""

    @pytest.fixture
    def storage(self, tmp_path):
        if not self.driver_name:
            pytest.skip("no driver_name set")
        with driver_env("storage", self.driver_name, str(tmp_path)) as env:
            yield env[0]

    def _layer(self, hook, layer_id, parent, entries):
        hook.storage_create_layer(layer_id=layer_id, parent_id=parent, read_write=False)
        return hook.storage_apply_diff(layer_id=layer_id, parent_id=parent, stream=io.BytesIO(make_tar(entries)))

    def test_status_is_pairs(self, storage):
        status = storage.storage_status()
        assert status and all(isinstance(k, str) and isinstance(v, str) for k, v in status)

    def test_create_exists_remove(self, storage):
        assert not storage.storage_exists(layer_id="l1")
        storage.storage_create_layer(layer_id="l1", parent_id=None, read_write=False)
        assert storage.storage_exists(layer_id="l1")
        with pytest.raises(AlreadyExists):
            storage.storage_create_layer(layer_id="l1", parent_id=None, read_write=False)
        storage.storage_remove(layer_id="l1")
        assert not storage.storage_exists(layer_id="l1")
        storage.storage_remove(layer_id="l1")  # removing a missing layer is fine

    @pytest.mark.parametrize("bad", ["../x", "a/b", "", ".", "..", "x" * 200])
    def test_invalid_ids_refused(self, storage, bad):
        with pytest.raises(InvalidArgument):
            storage.storage_create_layer(layer_id=bad, parent_id=None, read_write=False)

    def test_apply_and_mount(self, storage):
        result = self._layer(storage, "base", None, BASE)
        assert result.diff_id.startswith("sha256:") and result.size > 0
        root = storage.storage_mount(layer_id="base", mount_label=None, volatile=False)
        try:
            with open(os.path.join(root, "etc/hostname")) as f:
                assert f.read() == "base\n"
            assert os.readlink(os.path.join(root, "bin/link")) == "sh"
            assert os.stat(os.path.join(root, "bin/ash")).st_ino == os.stat(os.path.join(root, "bin/sh")).st_ino
        finally:
            storage.storage_unmount(layer_id="base", force=False)

    def test_child_layer_whiteouts_and_changes(self, storage):
        self._layer(storage, "base", None, BASE)
        self._layer(storage, "child", "base", CHILD)
        root = storage.storage_mount(layer_id="child", mount_label=None, volatile=False)
        try:
            assert not os.path.exists(os.path.join(root, "etc/gone"))
            assert os.path.exists(os.path.join(root, "etc/new"))
            assert sorted(os.listdir(os.path.join(root, "data"))) == ["c"]
            assert os.path.exists(os.path.join(root, "bin/sh"))
        finally:
            storage.storage_unmount(layer_id="child", force=False)
        changes = dict((p, k) for k, p in storage.storage_changes(layer_id="child", parent_id="base"))
        assert changes.get("/etc/gone") == "D"
        assert changes.get("/etc/new") == "A"
        assert changes.get("/data/c") == "A"
        out = io.BytesIO()
        size, diff_id = storage.storage_diff(layer_id="child", parent_id="base", out=out)
        assert size == len(out.getvalue()) and diff_id.startswith("sha256:")
        names = tarfile.open(fileobj=io.BytesIO(out.getvalue())).getnames()
        assert "etc/.wh.gone" in names and "etc/new" in names
        again = io.BytesIO()
        assert storage.storage_diff(layer_id="child", parent_id="base", out=again)[1] == diff_id
        assert again.getvalue() == out.getvalue()

    def test_mount_is_counted(self, storage):
        self._layer(storage, "base", None, BASE)
        p1 = storage.storage_mount(layer_id="base", mount_label=None, volatile=False)
        p2 = storage.storage_mount(layer_id="base", mount_label=None, volatile=False)
        assert p1 == p2
        assert storage.storage_unmount(layer_id="base", force=False) is False
        assert storage.storage_mounted(layer_id="base") == p1
        assert storage.storage_unmount(layer_id="base", force=False) is True

    def test_hostile_layer_is_refused(self, storage, tmp_path):
        storage.storage_create_layer(layer_id="evil", parent_id=None, read_write=False)
        canary = tmp_path / "outside"
        with pytest.raises(InvalidLayer):
            storage.storage_apply_diff(
                layer_id="evil", parent_id=None, stream=io.BytesIO(make_tar([("../../outside", "file", "x")]))
            )
        assert not canary.exists()
        storage.storage_remove(layer_id="evil")
        assert not storage.storage_exists(layer_id="evil")

    def test_garbage_stream_is_refused(self, storage):
        storage.storage_create_layer(layer_id="junk", parent_id=None, read_write=False)
        with pytest.raises(KpodError):
            storage.storage_apply_diff(layer_id="junk", parent_id=None, stream=io.BytesIO(b"\x1f\x8b\x08garbage" * 10))
        storage.storage_remove(layer_id="junk")

    def test_remove_mounted_layer(self, storage):
        self._layer(storage, "base", None, BASE)
        storage.storage_create_layer(layer_id="rw", parent_id="base", read_write=True)
        root = storage.storage_mount(layer_id="rw", mount_label=None, volatile=False)
        with open(os.path.join(root, "written"), "w") as f:
            f.write("x")
        storage.storage_remove(layer_id="rw")
        assert not storage.storage_exists(layer_id="rw")
        assert storage.storage_exists(layer_id="base")

    def test_volatile_mount_can_be_mounted_again(self, storage):
        """A disposable (``--rm``) layer: mounted volatile, written, unmounted, mounted
        again (drivers that honour *volatile* must cope with what the first mount left)."""
        self._layer(storage, "base", None, BASE)
        storage.storage_create_layer(layer_id="rm", parent_id="base", read_write=True)
        for round_ in range(3):  # volatile, volatile, then a plain mount of the same layer
            root = storage.storage_mount(layer_id="rm", mount_label=None, volatile=round_ < 2)
            with open(os.path.join(root, f"written{round_}"), "w") as f:
                f.write("x")
            assert sorted(n for n in os.listdir(root) if n.startswith("written")) == [
                f"written{i}" for i in range(round_ + 1)]
            assert storage.storage_unmount(layer_id="rm", force=False)
        storage.storage_remove(layer_id="rm")
        assert not storage.storage_exists(layer_id="rm")

    def test_cleanup_unmounts_everything(self, storage):
        self._layer(storage, "base", None, BASE)
        storage.storage_mount(layer_id="base", mount_label=None, volatile=False)
        storage.storage_cleanup()
        assert storage.storage_mounted(layer_id="base") is None
