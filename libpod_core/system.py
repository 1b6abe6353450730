"""Store-wide views and clean-up: ``kpod system df`` (:func:`disk_usage`, :func:`summarize`)
and ``kpod system prune`` (:func:`system_prune`).

Nothing here removes anything by itself: :func:`system_prune` composes the prunes of each
kind (``ContainerManager.prune``, ``PodManager.prune``, :func:`libpod_core.images.prune`,
``NetworkProvider.prune``, ``VolumeManager.prune``) with one :class:`~libpod_core.filters.PruneFilter`.

Sizes are what the store measures elsewhere: an image is the sum of its layers' sizes (as
``kpod images``), a container its read-write layer (``ps -s``' SizeRw, the storage driver's
``storage_layer_size``), a volume the disk usage under its ``_data`` directory
(:func:`libpod_core.graphdriver.dir_size`: symlinks are not followed, hard links count once).
"""

from __future__ import annotations

from typing import Any, Iterable

from .errors import KpodError
from .filters import PruneFilter

#: ``system prune`` repeats its round (pods, containers, images, networks, volumes) while a
#: round removes something, at most this many times (podman's limit)
MAX_ROUNDS = 50


# ---------------------------------------------------------------------------------------
# df
# ---------------------------------------------------------------------------------------

def disk_usage(rt) -> dict[str, Any]:
    """podman's disk-usage report: ``Images`` (one entry per name, like ``kpod images``),
    ``Containers`` and ``Volumes`` entries, plus ``ImagesSize`` (every layer once) and
    ``ImagesReclaimable`` (the layers no image a container uses needs)."""
    from .containers import container_sizes, display_state
    from .graphdriver import dir_size
    from .images import image_rows

    store = rt.images
    chains = {img.id: [(r["id"], r["size"] or 0) for r in store.image_layers(img)] for img in store.list_images()}
    layer_size: dict[str, int] = {}
    layer_users: dict[str, int] = {}
    for chain in chains.values():
        for lid, size in chain:
            layer_size[lid] = size
            layer_users[lid] = layer_users.get(lid, 0) + 1
    used: set[str] = set()
    images = []
    for row in image_rows(store, all_images=True):
        iid = row["Id"]
        if row["Containers"]:
            used.update(lid for lid, _ in chains[iid])
        shared = sum(size for lid, size in chains[iid] if layer_users[lid] > 1)
        images.append({
            "Repository": row["Repository"], "Tag": row["Tag"], "ImageID": iid, "Created": row["Created"],
            "Size": row["Size"], "SharedSize": shared, "UniqueSize": row["Size"] - shared,
            "Containers": row["Containers"],
        })

    containers = []
    for c in rt.containers.list():
        status = c.refresh()
        rw, root = container_sizes(c)
        containers.append({
            "ContainerID": c.id, "Image": c.image_id or "", "Command": list(c.config.get("args") or []),
            "LocalVolumes": len(c.config.get("named_volumes") or []), "Size": root, "RWSize": rw,
            "Created": c.created_at, "Status": display_state(status), "Names": c.name,
        })

    volumes = []
    for v in rt.volumes.list():
        links = len(v.users())
        size = dir_size(v.mountpoint)
        volumes.append({"VolumeName": v.name, "Links": links, "Size": size, "ReclaimableSize": 0 if links else size})

    return {
        "ImagesSize": sum(layer_size.values()),
        "ImagesReclaimable": sum(size for lid, size in layer_size.items() if lid not in used),
        "Images": images,
        "Containers": containers,
        "Volumes": volumes,
    }


def summarize(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The three rows of ``system df``: Type, Total, Active, RawSize, RawReclaimable.
    Active counts the images some container uses, the running containers and the volumes
    some container uses."""
    images = {i["ImageID"]: i for i in report["Images"]}
    ctrs = report["Containers"]
    vols = report["Volumes"]
    return [
        {"Type": "Images", "Total": len(images), "Active": sum(1 for i in images.values() if i["Containers"]),
         "RawSize": report["ImagesSize"], "RawReclaimable": report["ImagesReclaimable"]},
        {"Type": "Containers", "Total": len(ctrs), "Active": sum(1 for c in ctrs if c["Status"] == "running"),
         "RawSize": sum(c["RWSize"] for c in ctrs),
         "RawReclaimable": sum(c["RWSize"] for c in ctrs if c["Status"] != "running")},
        {"Type": "Local Volumes", "Total": len(vols), "Active": sum(1 for v in vols if v["Links"]),
         "RawSize": sum(v["Size"] for v in vols), "RawReclaimable": sum(v["ReclaimableSize"] for v in vols)},
    ]


# ---------------------------------------------------------------------------------------
# prune
# ---------------------------------------------------------------------------------------

def system_prune(rt, *, all_images: bool = False, volumes: bool = False,
                 filters: PruneFilter | Iterable[str] = ()) -> dict[str, Any]:
    """Remove stopped containers, pods with nothing running, dangling images (every image
    no container uses with *all_images*), networks no container uses but the default one,
    and with *volumes* the volumes no container uses; what *filters* (label=, label!=,
    until=) refuses stays. Returns the removed IDs/names per kind (``Containers``, ``Pods``,
    ``Images``, ``Networks``, ``Volumes``), the (ID, error) pairs of containers that could
    not be removed (``Errors``) and ``ReclaimedSpace`` in bytes."""
    from .containers import container_sizes
    from .graphdriver import dir_size
    from .images import prune as prune_images

    flt = filters if isinstance(filters, PruneFilter) else PruneFilter(filters)
    out: dict[str, Any] = {"Containers": [], "Pods": [], "Images": [], "Networks": [], "Volumes": [],
                           "Errors": [], "ReclaimedSpace": 0}
    provider = rt.container_network_provider
    for _ in range(MAX_ROUNDS):
        n = sum(len(out[k]) for k in ("Containers", "Pods", "Images", "Networks", "Volumes"))

        out["Pods"] += rt.pods.prune(lambda p: flt.match(p.config.get("labels"), p.created_at))

        mgr = rt.containers
        sizes = {c.id: container_sizes(c)[0] for c in mgr.list() if c.refresh() not in ("running", "paused")}
        errors: list[tuple[str, KpodError]] = []
        gone = mgr.prune(lambda c: flt.match(c.config.get("labels"), c.created_at), errors)
        out["Containers"] += gone
        out["Errors"] += errors
        out["ReclaimedSpace"] += sum(sizes.get(cid, 0) for cid in gone)

        sizes = {img.id: img.size for img in rt.images.list_images()}
        gone = prune_images(rt, all_images=all_images, filters=flt.items)
        out["Images"] += gone
        out["ReclaimedSpace"] += sum(sizes.get(iid, 0) for iid in gone)

        if provider.available():
            out["Networks"] += provider.prune(lambda net: flt.match(net.get("labels"), provider.created_at(net)))

        if volumes:
            vm = rt.volumes
            in_use = vm.in_use()
            sizes = {v.name: dir_size(v.mountpoint) for v in vm.list() if v.name not in in_use}
            gone = vm.prune(lambda v: flt.match(v.labels, v.created_at))
            out["Volumes"] += gone
            out["ReclaimedSpace"] += sum(sizes.get(name, 0) for name in gone)

        if sum(len(out[k]) for k in ("Containers", "Pods", "Images", "Networks", "Volumes")) == n:
            break
    return out
