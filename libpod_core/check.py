"""``kpod system check``: find (and with repair, fix) inconsistencies in the store.

Checks the SQLite database itself, leftovers of dead operations, layers recorded but missing
from the driver (and the images that need them), driver data no row knows, and layer-cache
files (needed to save/push byte-identical layers) that are missing or orphaned.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .store import CACHE_SUFFIXES, USER_FILES_SUFFIX

#: fileutil's temporary file: .NAME.kpod-tmp-PID-RANDOM
_TMP_PID = re.compile(r"^\..*\.kpod-tmp-(\d+)-[0-9a-f]+$")


def _dead_writer(name: str) -> bool:
    """*name* is a write_atomic temporary file whose process is gone."""
    m = _TMP_PID.search(name)
    if not m:
        return False
    try:
        os.kill(int(m.group(1)), 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):
        return False
    return False


@dataclass
class Problem:
    kind: str
    subject: str
    detail: str
    repaired: bool = False


def check(rt, repair: bool = False) -> list[Problem]:
    store = rt.images  # runs the ordinary leftover clean-up first
    db = rt.db
    problems: list[Problem] = []
    ok = db.one("PRAGMA integrity_check")[0]
    if ok != "ok":
        problems.append(Problem("database", db.path, f"integrity check: {ok}"))
    for row in db.read("PRAGMA foreign_key_check"):
        problems.append(Problem("database", f"{row[0]} row {row[1]}", f"references a missing {row[2]} row"))
    if repair:
        store.cleanup_leftovers()
    for row in db.read("SELECT o.id, o.pid, o.what FROM operations o"):
        problems.append(Problem("operation", row["id"], f"unfinished operation of pid {row['pid']}: {row['what']}"))

    with store.exclusive():
        driver_ids = set(rt.hook.storage_list_layers() or [])
        rows = db.read("SELECT id, kind, incomplete FROM layers")
        known = {r["id"] for r in rows}
        missing = [r["id"] for r in rows if r["id"] not in driver_ids]
        damaged_images = set()
        for lid in missing:
            users = db.read(
                "WITH RECURSIVE up(id) AS (SELECT ? UNION ALL SELECT l.id FROM layers l JOIN up ON l.parent = up.id) "
                "SELECT images.id FROM images JOIN up ON images.top_layer = up.id", (lid,))
            damaged_images.update(u["id"] for u in users)
            problems.append(Problem("layer", lid, "recorded in the database but missing from the storage driver"))
        for iid in sorted(damaged_images):
            p = Problem("image", iid, "a layer it needs is missing")
            if repair:
                img = store.get_by_id(iid)
                if img is not None and not store.containers_using(iid):
                    with db.write() as tx:
                        tx.execute("DELETE FROM images WHERE id = ?", (iid,))
                    p.repaired = True
            problems.append(p)
        if repair:
            # drop rows of missing layers that nothing references any more, children first
            for lid in store._order_children_first(missing):
                try:
                    store._delete_layer(lid)
                except Exception:
                    continue
                for p in problems:
                    if p.kind == "layer" and p.subject == lid:
                        p.repaired = True
        for lid in sorted(driver_ids - known):
            p = Problem("layer", lid, "storage driver data that no database row knows")
            if repair:
                rt.hook.storage_remove(layer_id=lid)
                p.repaired = True
            problems.append(p)
        cache_dir = store.cache_dir
        cache_files = {}  # layer ID -> its cache file names
        for f in os.listdir(cache_dir):
            for suffix in CACHE_SUFFIXES.values():
                if f.endswith(suffix):
                    cache_files.setdefault(f[: -len(suffix)], []).append(f)
        cached = set(cache_files)
        for r in db.read("SELECT id FROM layers WHERE kind = 'image' AND incomplete = 0 AND diff_id IS NOT NULL"):
            if r["id"] not in cached and r["id"] in driver_ids:
                problems.append(Problem("cache", r["id"], "layer tar cache missing: images with this layer cannot be saved or pushed"))
        for lid in sorted(cached - known):
            p = Problem("cache", lid, "layer tar cache file of an unknown layer")
            if repair:
                for f in cache_files[lid]:
                    os.unlink(os.path.join(cache_dir, f))
                p.repaired = True
            problems.append(p)
        user_files = {f[: -len(USER_FILES_SUFFIX)] for f in os.listdir(cache_dir) if f.endswith(USER_FILES_SUFFIX)}
        for lid in sorted(user_files - known):
            p = Problem("cache", lid, "cached user files of an unknown layer")
            if repair:
                os.unlink(os.path.join(cache_dir, lid + USER_FILES_SUFFIX))
                p.repaired = True
            problems.append(p)
        for f in os.listdir(cache_dir):
            if f.endswith(".tmp") or _dead_writer(f):
                p = Problem("cache", f, "temporary file of an interrupted write")
                if repair:
                    os.unlink(os.path.join(cache_dir, f))
                    p.repaired = True
                problems.append(p)
    return problems
