"""A container's storage as users see it: ``mount``/``umount``, ``diff`` and ``commit``.

Mounts are counted by the storage driver (``storage_mount``/``storage_unmount``). A
container holds at most one reference of its own while it runs (the ``mounted`` column, see
:mod:`libpod_core.containers`); references taken by ``kpod mount`` are counted apart in
``<runroot>/containers/<ID>/usermounts`` (per boot, like the driver's own counts), so
``kpod umount`` only ever gives back what ``kpod mount`` took and a running container keeps
its root filesystem.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from typing import Any, Iterable

from .errors import ContainerStateError, InvalidArgument, KpodError, NotFound

# What the runtime and kpod put into every container's root (mount points for /etc/hosts
# and friends): not the user's changes, so ``diff`` and ``commit`` leave them out, like podman.
INIT_PATHS = frozenset({
    "/dev", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/proc", "/run", "/run/notify",
    "/run/.containerenv", "/run/secrets", "/sys", "/etc/mtab", "/run/kpod-init",
})
# ... of which these are files the runtime creates empty (left out of committed layers)
INIT_FILES = frozenset({"etc/hostname", "etc/hosts", "etc/resolv.conf", "run/.containerenv", "etc/mtab",
                        "run/kpod-init"})


# ---------------------------------------------------------------------------------------
# mount / umount
# ---------------------------------------------------------------------------------------

def _count_file(c) -> str:
    return os.path.join(c.rundir, "usermounts")


def user_mounts(c) -> int:
    """References taken by ``kpod mount`` that are still real (a reboot drops them)."""
    try:
        with open(_count_file(c)) as f:
            n = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0
    if n > 0 and not c.mgr.storage.storage_mounted(layer_id=c.layer_id):
        return 0
    return max(n, 0)


def _write_count(c, n: int) -> None:
    path = _count_file(c)
    if n <= 0:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    os.makedirs(c.rundir, mode=0o700, exist_ok=True)
    from .fileutil import write_atomic

    write_atomic(path, str(n))


def mount(c) -> str:
    """Mount the container's root filesystem (one more counted reference); its path."""
    with c.locked():
        n = user_mounts(c)
        path = c.mgr.storage.storage_mount(layer_id=c.layer_id, mount_label="", volatile=False)
        try:
            _write_count(c, n + 1)
        except BaseException:
            c.mgr.storage.storage_unmount(layer_id=c.layer_id, force=False)
            raise
    return path


def unmount(c, force: bool = False) -> bool:
    """Give back one reference ``kpod mount`` took (all of them with *force*). Returns
    True if one was given back."""
    with c.locked():
        n = user_mounts(c)
        if n <= 0:
            _write_count(c, 0)
            return False
        drop = n if force else 1
        storage = c.mgr.storage
        for _ in range(drop):
            storage.storage_unmount(layer_id=c.layer_id, force=False)
        _write_count(c, n - drop)
    return True


def mount_path(c) -> str | None:
    """The root filesystem's path when it is mounted (by kpod mount or because it runs)."""
    if not (user_mounts(c) or c.row.get("mounted")):
        return None
    return c.mgr.storage.storage_mounted(layer_id=c.layer_id)


# ---------------------------------------------------------------------------------------
# diff
# ---------------------------------------------------------------------------------------

def container_changes(c) -> list[tuple[str, str]]:
    """The container's changes against its image: ``[(kind, path)]`` with kind A/C/D."""
    img = c.mgr.images.get_by_id(c.image_id) if c.image_id else None
    parent = img.top_layer if img else c.mgr.images.layer(c.layer_id)["parent"]
    changes = c.mgr.storage.storage_changes(layer_id=c.layer_id, parent_id=parent) or []
    return [(k, p) for k, p in changes if p not in INIT_PATHS]


def image_changes(store, hook, img) -> list[tuple[str, str]]:
    """The image's top layer against its parent."""
    if not img.top_layer:
        return []
    row = store.layer(img.top_layer)
    return list(hook.storage_changes(layer_id=img.top_layer, parent_id=row["parent"] if row else None) or [])


def changes_json(changes: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """podman's ``diff --format json``: {"changed": [...], "added": [...], "deleted": [...]}."""
    out: dict[str, list[str]] = {}
    for kind, path in changes:
        key = {"A": "added", "C": "changed", "D": "deleted"}[kind]
        out.setdefault(key, []).append(path)
    return {k: out[k] for k in ("changed", "added", "deleted") if k in out}


# ---------------------------------------------------------------------------------------
# commit
# ---------------------------------------------------------------------------------------

def _filter_init_files(src, dst) -> None:
    """Copy the layer tar *src* to *dst* without the runtime's empty mount-point files."""
    from .tarapply import SafeTarInfo

    with tarfile.open(fileobj=src, mode="r|", encoding="utf-8", errors="surrogateescape", tarinfo=SafeTarInfo) as tin, \
            tarfile.open(fileobj=dst, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8",
                         errors="surrogateescape") as tout:
        for ti in tin:
            name = ti.name.lstrip("./") if ti.name.startswith("./") else ti.name.lstrip("/")
            if name.rstrip("/") in INIT_FILES and ti.isreg() and ti.size == 0:
                continue
            tout.addfile(ti, tin.extractfile(ti) if ti.isreg() else None)


def _image_section(c, img, changes: Iterable[str]) -> dict[str, Any]:
    """The new image's ``config``: the base image's, updated from the container (like
    podman: entrypoint, command, environment, labels, user, working directory), then the
    ``--change`` instructions."""
    from .images import apply_changes
    from .specgen import _as_argv

    section = dict((img.config.get("config") or {}) if img else {})
    conf = c.config
    spec = c.spec()
    proc = spec.get("process") or {}
    if conf.get("entrypoint") is not None:
        ep = _as_argv(conf["entrypoint"], "entrypoint")
        section["Entrypoint"] = ep or None
        section["Cmd"] = list(conf["command"]) if conf.get("command") else None
    elif conf.get("command"):
        section["Cmd"] = list(conf["command"])
    env = [e for e in proc.get("env") or [] if e.split("=", 1)[0] not in ("HOSTNAME", "container")]
    if env:
        section["Env"] = env
    labels = dict(section.get("Labels") or {})
    labels.update(conf.get("labels") or {})
    if labels:
        section["Labels"] = labels
    if conf.get("user"):
        section["User"] = conf["user"]
    if conf.get("workdir"):
        section["WorkingDir"] = conf["workdir"]
    if conf.get("stop_signal") and conf.get("stop_signal") != section.get("StopSignal"):
        section["StopSignal"] = conf["stop_signal"]
    section = {k: v for k, v in section.items() if v is not None}
    return apply_changes(section, changes)


def commit(rt, c, name: str | None = None, *, changes: Iterable[str] = (), message: str | None = None,
           author: str | None = None, pause: bool = True, fmt: str = "oci"):
    """Make an image of the container: its changes become a new layer on top of its image's
    layers, with the image's config updated (history, diff IDs, ``--change``). Returns the
    Image."""
    from . import manifest as mf
    from . import reference as refmod

    fmt = {"oci": mf.FORMAT_OCI, "docker": mf.FORMAT_V2S2}.get(fmt or "oci")
    if fmt is None:
        raise InvalidArgument("invalid --format: must be oci or docker")
    changes = list(changes)
    store = rt.images
    img = store.get_by_id(c.image_id) if c.image_id else None
    if img is None:
        raise NotFound(f"the image of container {c.name} is gone: cannot commit")
    section = _image_section(c, img, changes)  # bad --change fails before anything happens
    names: list[str] = []
    if name:
        ref = refmod.normalize_local(name) if refmod.is_short_name(name) else refmod.normalize(name)
        if getattr(ref, "digest", None):
            raise InvalidArgument(f"{name}: an image name for commit cannot contain a digest")
        names.append(str(ref))
    paused_here = False
    if pause and c.refresh() == "running":
        try:
            c.pause()
            paused_here = True
        except ContainerStateError:
            pass
    try:
        tmpdir = os.path.join(rt.config.graphroot, "tmp")
        os.makedirs(tmpdir, mode=0o700, exist_ok=True)
        with tempfile.TemporaryFile(dir=tmpdir) as raw, tempfile.TemporaryFile(dir=tmpdir) as layer_tar:
            with c.locked():
                rt.hook.storage_diff(layer_id=c.layer_id, parent_id=img.top_layer, out=raw)
            raw.seek(0)
            _filter_init_files(raw, layer_tar)
            layer_tar.seek(0)
            created_by = " ".join(c.config.get("args") or [])
            with store.shared():
                op = store.operation(f"commit container {c.short_id}")
                try:
                    layer = store.create_layer(op, img.top_layer, layer_tar)
                    cfg = mf.make_image_config([layer["diff_id"]], base=img.config, config=section, author=author or None,
                                               created_by=created_by or None, comment=message or None)
                    config_raw = mf.config_bytes(cfg)
                    chain = store.layer_chain(layer["id"])
                    layers = [mf.Descriptor(media_type=mf.layer_media_type(fmt, "none"), digest=r["diff_id"],
                                            size=r["size"]) for r in chain]
                    cfg_type = mf.MEDIA_TYPE_DOCKER_CONFIG if fmt == mf.FORMAT_V2S2 else mf.MEDIA_TYPE_OCI_CONFIG
                    manifest = mf.build_manifest(mf.descriptor_for(config_raw, cfg_type), layers, fmt)
                    new = store.commit_image(
                        op, config_raw=config_raw, manifest_raw=manifest,
                        manifest_type=mf.MEDIA_TYPE_DOCKER_MANIFEST if fmt == mf.FORMAT_V2S2 else mf.MEDIA_TYPE_OCI_MANIFEST,
                        manifest_digest=refmod.digest_bytes(manifest), top_layer=layer["id"], names=names,
                    )
                except BaseException:
                    op.abort()
                    raise
    finally:
        if paused_here:
            try:
                c.unpause()
            except KpodError:
                pass
    from .events import container as record

    record(rt.config, "commit", c)  # podman records a commit as the container's event
    try:
        rt.plugins.load_general()
        rt.hook.image_event(event="commit", image={"id": new.id, "names": list(new.names)})
    except Exception:  # noqa: BLE001 - plugin failures are logged, never fatal
        pass
    return new


__all__ = ["mount", "unmount", "mount_path", "user_mounts", "container_changes", "image_changes",
           "changes_json", "commit", "INIT_PATHS"]
