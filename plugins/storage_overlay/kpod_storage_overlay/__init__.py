"""kpod storage driver for kernel overlayfs.

Layout under ``<graphroot>/overlay``::

    <id>/diff     the layer's own files (whiteouts as 0/0 char devices, opaque xattrs)
    <id>/work     overlayfs work dir
    <id>/merged   mount point of the layer with its parents
    <id>/empty    empty lower dir for base layers
    <id>/link     short name of this layer's diff (for l/)
    <id>/lower    colon-separated short names of the parents' diffs, nearest first
    l/<short>     symlink to ../<id>/diff

Mounts use the short ``l/`` names relative to the driver home so that long layer chains fit
in the one page the kernel accepts for mount options.
"""

from __future__ import annotations

import os

from libpod_core.errors import StorageError
from libpod_core.graphdriver import GraphDriverBase, dir_size, fs_type, hookimpl, is_mountpoint, mount, rmtree, umount

LINK_DIR = "l"
# mount(2) takes one page of option data.
MAX_MOUNT_DATA = 4096


class OverlayDriver(GraphDriverBase):
    name = "overlay"
    options = ("mountopt",)

    def __init__(self, config) -> None:
        super().__init__(config)
        os.makedirs(os.path.join(self.home, LINK_DIR), mode=0o700, exist_ok=True)
        if not _overlay_supported():
            raise StorageError("the kernel does not support overlayfs ('overlay' missing from /proc/filesystems); use --storage-driver vfs")

    # -- paths ----------------------------------------------------------------------------
    def diff_dir(self, layer_id: str) -> str:
        return os.path.join(self.layer_dir(layer_id), "diff")

    def _lowers(self, layer_id: str) -> list[str]:
        """Short names of the parents' diff dirs, nearest parent first."""
        try:
            with open(os.path.join(self.layer_dir(layer_id), "lower")) as f:
                data = f.read().strip()
        except FileNotFoundError:
            return []
        return [p for p in data.split(":") if p]

    def _lower_dirs(self, layer_id: str) -> list[str]:
        return [os.path.realpath(os.path.join(self.home, p)) for p in self._lowers(layer_id)]

    # -- hooks ----------------------------------------------------------------------------
    @hookimpl
    def storage_status(self):
        return [
            ("Backing Filesystem", fs_type(self.home)),
            ("Supports d_type", "true"),
            ("Native Overlay Diff", "true"),
            ("Using metacopy", "false"),
            ("Mount Options", self.opts.get("mountopt", "")),
        ]

    @hookimpl
    def storage_create_layer(self, layer_id, parent_id, read_write):
        lower: list[str] = []
        if parent_id:
            pdir = self.require(parent_id)
            with open(os.path.join(pdir, "link")) as f:
                lower = [f"{LINK_DIR}/{f.read().strip()}"] + self._lowers(parent_id)
        d = self.new_layer_dir(layer_id)
        try:
            for sub in ("diff", "work", "merged", "empty"):
                os.mkdir(os.path.join(d, sub), 0o755 if sub == "diff" else 0o700)
            short = os.urandom(13).hex().upper()
            os.symlink(f"../{layer_id}/diff", os.path.join(self.home, LINK_DIR, short))
            with open(os.path.join(d, "link"), "w") as f:
                f.write(short)
            if lower:
                with open(os.path.join(d, "lower"), "w") as f:
                    f.write(":".join(lower))
        except BaseException:
            self.storage_remove(layer_id)
            raise
        return True

    @hookimpl
    def storage_apply_diff(self, layer_id, parent_id, stream):
        self.require(layer_id)
        from libpod_core import tarapply

        return tarapply.apply_layer(stream, self.diff_dir(layer_id), whiteout_format="overlay")

    @hookimpl
    def storage_changes(self, layer_id, parent_id):
        self.require(layer_id)
        from libpod_core import tardiff

        return tardiff.changes(self.diff_dir(layer_id), self._lower_dirs(layer_id), "overlay")

    @hookimpl
    def storage_diff(self, layer_id, parent_id, out):
        self.require(layer_id)
        from libpod_core import tardiff

        return tardiff.diff_tar(self.diff_dir(layer_id), self._lower_dirs(layer_id), "overlay", out)

    @hookimpl
    def storage_mount(self, layer_id, mount_label, volatile=False):
        d = self.require(layer_id)
        merged = os.path.join(d, "merged")
        with self.locked(layer_id) as count_file:
            n = self.read_count(count_file)
            if n > 0 and is_mountpoint(merged):
                self.write_count(count_file, n + 1)
                return merged
            lowers = self._lowers(layer_id) or [f"{layer_id}/empty"]
            opts = f"lowerdir={':'.join(lowers)},upperdir={layer_id}/diff,workdir={layer_id}/work"
            extra = self.opts.get("mountopt")
            if extra:
                opts += "," + extra
            if mount_label:
                opts += f",context={mount_label!r}"
            # The kernel refuses a workdir an earlier volatile mount marked. Only disposable
            # layers (--rm containers, pod infras) are ever mounted volatile, so the marker
            # is just removed, whatever this mount is (kpod mount of a stopped infra, say).
            rmtree(os.path.join(d, "work", "work", "incompat", "volatile"))
            if volatile and _volatile_supported is not False:
                opts += ",volatile"
            if len(opts) >= MAX_MOUNT_DATA:
                raise StorageError(f"layer {layer_id}: too many parent layers to mount ({len(lowers)})")
            # The same paths made absolute, when they fit in the one page mount(2) takes, are
            # mounted directly; longer ones go through mount(8) run in the driver's home,
            # against which the relative paths resolve (a process-wide chdir here is no option).
            home = self.home.rstrip("/") + "/"
            absolute = ",".join(
                (k + "=" + ":".join(home + p for p in v.split(":"))) if k in ("lowerdir", "upperdir", "workdir") else o
                for o in opts.split(",") for k, _, v in [o.partition("=")]
            )
            try:
                self._mount(layer_id, merged, opts, absolute, direct=not extra)
            except StorageError:
                if not opts.endswith(",volatile"):
                    raise
                # a kernel older than 5.10 does not know the option: mount without it
                self._mount(layer_id, merged, opts[: -len(",volatile")],
                            absolute[: -len(",volatile")], direct=not extra)
                _set_volatile_supported(False)
            self.write_count(count_file, 1)
            return merged

    def _mount(self, layer_id: str, merged: str, opts: str, absolute: str, direct: bool) -> None:
        # mount(8) turns options such as nodev into flags: user mount options go through it.
        if direct and len(absolute) < MAX_MOUNT_DATA - 1:
            try:
                mount("overlay", merged, "overlay", absolute)
            except StorageError as exc:
                raise StorageError(f"mount overlay for layer {layer_id}: {exc}") from None
            return
        import subprocess  # only for mount(8): the common mount above is a system call

        proc = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", opts, merged],
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if proc.returncode != 0:
            raise StorageError(f"mount overlay for layer {layer_id}: {proc.stderr.strip() or 'failed'}")

    @hookimpl
    def storage_mounted(self, layer_id):
        merged = os.path.join(self.layer_dir(layer_id), "merged")
        return merged if is_mountpoint(merged) else None

    @hookimpl
    def storage_unmount(self, layer_id, force):
        d = self.layer_dir(layer_id)
        merged = os.path.join(d, "merged")
        with self.locked(layer_id) as count_file:
            n = self.read_count(count_file) - 1
            if force or n <= 0:
                if os.path.isdir(merged):
                    umount(merged)
                self.write_count(count_file, 0)
                return True
            self.write_count(count_file, n)
            return False

    @hookimpl
    def storage_remove(self, layer_id):
        d = self.layer_dir(layer_id)
        if not os.path.lexists(d):
            return True
        merged = os.path.join(d, "merged")
        if os.path.isdir(merged):
            umount(merged)
        try:
            with open(os.path.join(d, "link")) as f:
                short = f.read().strip()
            if short and "/" not in short:
                link = os.path.join(self.home, LINK_DIR, short)
                if os.path.islink(link):
                    os.unlink(link)
        except FileNotFoundError:
            pass
        rmtree(d)
        self.drop_counts(layer_id)
        return True

    @hookimpl
    def storage_layer_size(self, layer_id):
        self.require(layer_id)
        return dir_size(self.diff_dir(layer_id))


#: None: not known yet; False: this kernel refused the ``volatile`` option once
_volatile_supported: bool | None = None


def _set_volatile_supported(value: bool) -> None:
    global _volatile_supported
    _volatile_supported = value


def _overlay_supported() -> bool:
    try:
        with open("/proc/filesystems") as f:
            if any(line.split()[-1] == "overlay" for line in f if line.strip()):
                return True
    except OSError:
        return False
    # The module may load on first use.
    import subprocess

    subprocess.run(["modprobe", "overlay"], capture_output=True)
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1] == "overlay" for line in f if line.strip())
    except OSError:
        return False
