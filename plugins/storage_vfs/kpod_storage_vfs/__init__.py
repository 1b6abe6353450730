"""kpod storage driver that keeps a full copy of the filesystem in every layer (vfs).

Slow and large, but works on any filesystem and needs no kernel support. Layout:
``<graphroot>/vfs/<id>/root`` holds the complete tree of the layer with its parents, and
``<id>/parent`` names the parent layer (for diffs).
"""

from __future__ import annotations

import os
import subprocess

from libpod_core.errors import StorageError
from libpod_core.graphdriver import GraphDriverBase, dir_size, fs_type, hookimpl, rmtree


class VfsDriver(GraphDriverBase):
    name = "vfs"
    options = ()

    def root_dir(self, layer_id: str) -> str:
        return os.path.join(self.layer_dir(layer_id), "root")

    def _parent(self, layer_id: str) -> str | None:
        try:
            with open(os.path.join(self.layer_dir(layer_id), "parent")) as f:
                return f.read().strip() or None
        except FileNotFoundError:
            return None

    @hookimpl
    def storage_status(self):
        return [("Backing Filesystem", fs_type(self.home))]

    @hookimpl
    def storage_create_layer(self, layer_id, parent_id, read_write):
        if parent_id:
            self.require(parent_id)
        d = self.new_layer_dir(layer_id)
        try:
            root = os.path.join(d, "root")
            if parent_id:
                # cp -a keeps owners, modes, times, links, devices and xattrs; reflinks where possible.
                proc = subprocess.run(
                    ["cp", "-a", "--reflink=auto", self.root_dir(parent_id), root],
                    capture_output=True,
                    text=True,
                )
                if proc.returncode != 0:
                    raise StorageError(f"copy parent layer {parent_id}: {proc.stderr.strip()}")
                with open(os.path.join(d, "parent"), "w") as f:
                    f.write(parent_id)
            else:
                os.mkdir(root, 0o755)
        except BaseException:
            self.storage_remove(layer_id)
            raise
        return True

    @hookimpl
    def storage_apply_diff(self, layer_id, parent_id, stream):
        self.require(layer_id)
        from libpod_core import tarapply

        return tarapply.apply_layer(stream, self.root_dir(layer_id), whiteout_format="vfs")

    def _parent_root(self, layer_id: str) -> list[str]:
        parent = self._parent(layer_id)
        return [self.root_dir(parent)] if parent else []

    @hookimpl
    def storage_changes(self, layer_id, parent_id):
        self.require(layer_id)
        from libpod_core import tardiff

        return tardiff.changes(self.root_dir(layer_id), self._parent_root(layer_id), "vfs")

    @hookimpl
    def storage_diff(self, layer_id, parent_id, out):
        self.require(layer_id)
        from libpod_core import tardiff

        return tardiff.diff_tar(self.root_dir(layer_id), self._parent_root(layer_id), "vfs", out)

    @hookimpl
    def storage_mount(self, layer_id, mount_label):
        self.require(layer_id)
        with self.locked(layer_id) as count_file:
            self.write_count(count_file, self.read_count(count_file) + 1)
        return self.root_dir(layer_id)

    @hookimpl
    def storage_mounted(self, layer_id):
        with self.locked(layer_id) as count_file:
            return self.root_dir(layer_id) if self.read_count(count_file) > 0 else None

    @hookimpl
    def storage_unmount(self, layer_id, force):
        with self.locked(layer_id) as count_file:
            n = 0 if force else self.read_count(count_file) - 1
            self.write_count(count_file, n)
            return n <= 0

    @hookimpl
    def storage_remove(self, layer_id):
        d = self.layer_dir(layer_id)
        rmtree(d)
        self.drop_counts(layer_id)
        return True

    @hookimpl
    def storage_layer_size(self, layer_id):
        self.require(layer_id)
        return dir_size(self.root_dir(layer_id))
