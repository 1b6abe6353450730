"""The image and layer store: containers/storage's model on SQLite and a graph driver.

* Layers have random IDs (never a user-chosen name in a path) and are found for reuse by
  ``(parent, diff_id)``: a layer shared by two images is stored once and removed with its
  last user.
* Every image layer keeps a zstd copy of its exact tar stream in ``layer-cache/`` so a saved
  or pushed image has the same diff_ids as when it came in (docs/architecture.md).
* Images are named by their config digest; names and tags point at them.
* Work in progress is owned by an *operation* holding an flock; rows it creates carry the
  operation's ID until its image commits. The next command removes rows (and driver data)
  whose operation is dead: a kill -9 at any moment leaves either the old or the new state.
* A shared store lock is held by anything that adds layers or images, an exclusive one by
  anything that removes them.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from typing import IO, Any, Iterator

from .. import reference as refmod
from ..errors import (
    DigestMismatch,
    InUse,
    InvalidArgument,
    NotFound,
    StorageError,
)
from ..log import getLogger
from ..state import FileLock, register_schema

log = getLogger(__name__)

register_schema(
    "images",
    1,
    """
    CREATE TABLE IF NOT EXISTS layers (
        id TEXT PRIMARY KEY,
        parent TEXT REFERENCES layers(id),
        diff_id TEXT,
        size INTEGER,
        compressed_digest TEXT,
        compressed_size INTEGER,
        created REAL NOT NULL,
        kind TEXT NOT NULL DEFAULT 'image',
        incomplete INTEGER NOT NULL DEFAULT 1,
        owner TEXT
    );
    CREATE INDEX IF NOT EXISTS layers_by_diff ON layers(diff_id, parent);
    CREATE INDEX IF NOT EXISTS layers_by_parent ON layers(parent);
    CREATE TABLE IF NOT EXISTS images (
        id TEXT PRIMARY KEY,
        top_layer TEXT REFERENCES layers(id),
        manifest BLOB NOT NULL,
        manifest_type TEXT NOT NULL,
        manifest_digest TEXT NOT NULL,
        config BLOB NOT NULL,
        created TEXT,
        added REAL NOT NULL,
        size INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS images_by_top ON images(top_layer);
    CREATE TABLE IF NOT EXISTS image_names (
        name TEXT PRIMARY KEY,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        added REAL NOT NULL
    );
    CREATE INDEX IF NOT EXISTS image_names_by_image ON image_names(image_id);
    CREATE TABLE IF NOT EXISTS image_digests (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        repo TEXT NOT NULL,
        digest TEXT NOT NULL,
        PRIMARY KEY (image_id, repo, digest)
    );
    CREATE TABLE IF NOT EXISTS image_signatures (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (image_id, idx)
    );
    CREATE TABLE IF NOT EXISTS operations (
        id TEXT PRIMARY KEY,
        pid INTEGER NOT NULL,
        started REAL NOT NULL,
        what TEXT NOT NULL
    )
    """,
)

CACHE_DIR = "layer-cache"
#: a layer's cached tar stream: "blob", the compressed blob exactly as it was pulled or
#: loaded (its digest is the row's compressed_digest), or "zstd", kpod's zstd copy of a plain tar
CACHE_SUFFIXES = {"zstd": ".tar.zst", "blob": ".blob"}
#: beside an image's top layer in the cache: the image's /etc/passwd and /etc/group texts
USER_FILES_SUFFIX = ".userfiles.json"


def new_id() -> str:
    return os.urandom(32).hex()


class Image:
    """One stored image. (A plain class, not a dataclass: every command that looks an image
    up imports this module, and generating a dataclass's methods costs 0.4 ms per process.)"""

    __slots__ = ("id", "top_layer", "manifest", "manifest_type", "manifest_digest", "config_raw", "created",
                 "added", "size", "names", "digests")

    def __init__(self, id: str, top_layer: str | None, manifest: bytes, manifest_type: str,  # noqa: A002
                 manifest_digest: str, config_raw: bytes, created: str | None, added: float, size: int,
                 names: list[str] | None = None, digests: list[tuple[str, str]] | None = None) -> None:
        self.id = id
        self.top_layer = top_layer
        self.manifest = manifest
        self.manifest_type = manifest_type
        self.manifest_digest = manifest_digest
        self.config_raw = config_raw
        self.created = created
        self.added = added
        self.size = size
        self.names: list[str] = [] if names is None else names
        self.digests: list[tuple[str, str]] = [] if digests is None else digests

    def __repr__(self) -> str:
        return f"Image(id={self.id[:12]!r}, names={self.names!r})"

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self.config_raw)

    @property
    def digest(self) -> str:
        return self.manifest_digest

    def repo_tags(self) -> list[str]:
        return [n for n in self.names if "@" not in n]

    def repo_digests(self) -> list[str]:
        out = []
        for repo, dg in self.digests:
            s = f"{repo}@{dg}"
            if s not in out:
                out.append(s)
        return out


class Operation:
    """A unit of work that adds rows: owns them until it finishes; dies -> leftovers."""

    def __init__(self, store: "ImageStore", what: str) -> None:
        self.store = store
        self.id = os.urandom(8).hex()
        self.lock = FileLock(os.path.join(store.lock_dir, f"op-{self.id}.lock"))
        self.lock.acquire(exclusive=True)
        with store.db.write() as tx:
            tx.execute("INSERT INTO operations(id, pid, started, what) VALUES(?,?,?,?)", (self.id, os.getpid(), time.time(), what))
        self.done = False

    def finish(self) -> None:
        """Release ownership of every row this operation made (they now stand on their own)."""
        if self.done:
            return
        with self.store.db.write() as tx:
            tx.execute("UPDATE layers SET owner = NULL WHERE owner = ?", (self.id,))
            tx.execute("DELETE FROM operations WHERE id = ?", (self.id,))
        self.done = True
        self.lock.release()
        _unlink(self.lock.path)

    def abort(self) -> None:
        """Remove every row and layer this operation made."""
        if self.done:
            return
        self.store._remove_owned(self.id)
        with self.store.db.write() as tx:
            tx.execute("DELETE FROM operations WHERE id = ?", (self.id,))
        self.done = True
        self.lock.release()
        _unlink(self.lock.path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class _TeeReader:
    """Reads *src* and writes every byte to *sink* (the layer cache compressor)."""

    def __init__(self, src: IO[bytes], sink) -> None:
        self.src = src
        self.sink = sink

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n)
        if data:
            self.sink.write(data)
        return data

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True


def _event(status: str, image_id: str, name: str, config) -> None:
    """Record an image event (:mod:`libpod_core.events`; never fails)."""
    from ..events import image as record

    record(config, status, image_id, name)


class ImageStore:
    """Layers and images on top of the selected storage driver."""

    def __init__(self, runtime) -> None:
        self.runtime = runtime
        self.config = runtime.config
        runtime.plugins.driver("storage")
        self.hook = runtime.hook
        self.driver_name = runtime.plugins.driver_name("storage")
        self.graphroot = self.config.graphroot
        self.lock_dir = os.path.join(self.graphroot, "locks")
        self.cache_dir = os.path.join(self.graphroot, CACHE_DIR, self.driver_name)
        os.makedirs(self.cache_dir, mode=0o700, exist_ok=True)
        self.db = runtime.db
        self.store_lock = FileLock(os.path.join(self.lock_dir, "store.lock"))
        self._shared_depth = 0
        self.cleanup_leftovers()

    # -- locking --------------------------------------------------------------------------
    @contextmanager
    def shared(self) -> Iterator[None]:
        """Held while adding layers/images (many at once)."""
        if self._shared_depth:
            self._shared_depth += 1
            try:
                yield
            finally:
                self._shared_depth -= 1
            return
        self.store_lock.acquire(exclusive=False, timeout=None)
        self._shared_depth = 1
        try:
            yield
        finally:
            self._shared_depth = 0
            self.store_lock.release()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Held while removing layers/images (alone)."""
        if self._shared_depth:
            raise StorageError("internal error: exclusive store lock requested while holding it shared")
        with self.store_lock.held(exclusive=True, timeout=None):
            yield

    def operation(self, what: str) -> Operation:
        return Operation(self, what)

    # -- crash recovery -----------------------------------------------------------------
    def cleanup_leftovers(self) -> int:
        """Remove rows and data of dead operations. Cheap when there is nothing to do."""
        ops = self.db.read("SELECT id FROM operations")
        if not ops:
            return 0
        removed = 0
        for row in ops:
            lock = FileLock(os.path.join(self.lock_dir, f"op-{row['id']}.lock"))
            if not lock.acquire(exclusive=True, blocking=False):
                continue  # alive
            try:
                if not self.store_lock.acquire(exclusive=True, blocking=False):
                    continue
                try:
                    removed += self._remove_owned(row["id"])
                    with self.db.write() as tx:
                        tx.execute("DELETE FROM operations WHERE id = ?", (row["id"],))
                finally:
                    self.store_lock.release()
            finally:
                lock.release()
                _unlink(lock.path)
        return removed

    def _remove_owned(self, op_id: str) -> int:
        rows = self.db.read("SELECT id FROM layers WHERE owner = ? ORDER BY created DESC", (op_id,))
        n = 0
        # children before parents
        for lid in self._order_children_first([r["id"] for r in rows]):
            self._delete_layer(lid)
            n += 1
        return n

    def _order_children_first(self, ids: list[str]) -> list[str]:
        idset = set(ids)
        parent = {r["id"]: r["parent"] for r in self.db.read(
            f"SELECT id, parent FROM layers WHERE id IN ({','.join('?' * len(ids))})", tuple(ids))} if ids else {}
        depth: dict[str, int] = {}

        def d(x: str) -> int:
            if x not in depth:
                p = parent.get(x)
                depth[x] = 0 if p not in idset else d(p) + 1
            return depth[x]

        return sorted(ids, key=d, reverse=True)

    def _delete_layer(self, layer_id: str) -> None:
        """Delete a layer's row (refused while children reference it), then its data."""
        with self.db.write() as tx:
            tx.execute("DELETE FROM layers WHERE id = ?", (layer_id,))
        self.hook.storage_remove(layer_id=layer_id)
        for suffix in CACHE_SUFFIXES.values():
            path = os.path.join(self.cache_dir, layer_id + suffix)
            _unlink(path)
            _unlink(path + ".tmp")  # a write a killed process left
        _unlink(self.user_files_path(layer_id))

    # -- layers ---------------------------------------------------------------------------
    def cache_path(self, layer_id: str, kind: str = "zstd") -> str:
        """The layer-cache file of *layer_id*: *kind* is a key of :data:`CACHE_SUFFIXES`."""
        return os.path.join(self.cache_dir, layer_id + CACHE_SUFFIXES[kind])

    def user_files_path(self, layer_id: str) -> str:
        return os.path.join(self.cache_dir, layer_id + USER_FILES_SUFFIX)

    def image_user_files(self, top_layer: str | None) -> dict[str, str | None] | None:
        """/etc/passwd and /etc/group of the image whose top layer is *top_layer*, as a
        ``create`` read them before (:meth:`save_image_user_files`), or None when unknown.
        Image layers never change, so the texts stay true while the layer exists."""
        if not top_layer:
            return None
        try:
            with open(self.user_files_path(top_layer), "rb") as f:
                data = json.loads(f.read(1 << 22))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or not all(isinstance(v, (str, type(None))) for v in data.values()):
            return None
        return data

    def save_image_user_files(self, top_layer: str | None, files: dict[str, str | None]) -> None:
        """Keep what a ``create`` read of the image's user files, so that the next one need
        not mount a root filesystem (best effort: without it, the next one reads them again)."""
        if not top_layer:
            return
        from ..fileutil import write_atomic

        try:
            write_atomic(self.user_files_path(top_layer), json.dumps(files), 0o600)
        except OSError as exc:
            log.debug("layer %s: user files not cached: %s", top_layer, exc)

    def layer(self, layer_id: str):
        return self.db.one("SELECT * FROM layers WHERE id = ?", (layer_id,))

    def layer_chain(self, top: str | None) -> list:
        """Rows from the base layer up to *top*."""
        if not top:
            return []
        rows = self.db.read(
            "WITH RECURSIVE chain(id, depth) AS (SELECT ?, 0 UNION ALL "
            "SELECT l.parent, c.depth + 1 FROM layers l JOIN chain c ON l.id = c.id WHERE l.parent IS NOT NULL) "
            "SELECT layers.* FROM chain JOIN layers ON layers.id = chain.id ORDER BY chain.depth DESC",
            (top,),
        )
        return rows

    def find_layer(self, parent: str | None, diff_id: str):
        """A finished layer with this diff on this parent (for reuse), or None."""
        if parent is None:
            return self.db.one(
                "SELECT * FROM layers WHERE diff_id = ? AND parent IS NULL AND incomplete = 0 AND owner IS NULL "
                "AND kind = 'image' LIMIT 1",
                (diff_id,),
            )
        return self.db.one(
            "SELECT * FROM layers WHERE diff_id = ? AND parent = ? AND incomplete = 0 AND owner IS NULL "
            "AND kind = 'image' LIMIT 1",
            (diff_id, parent),
        )

    def create_layer(self, op: Operation, parent: str | None, stream: IO[bytes] | None, *,
                     expected_diff_id: str | None = None, compressed_digest: str | None = None,
                     compressed_size: int | None = None, kind: str = "image"):
        """Create a layer on *parent* from a tar *stream* (plain/gzip/zstd), or an empty
        read-write layer when *stream* is None. Returns the row. On any failure nothing
        remains."""
        lid = new_id()
        with self.db.write() as tx:
            tx.execute(
                "INSERT INTO layers(id, parent, created, kind, incomplete, owner, compressed_digest, compressed_size) "
                "VALUES(?,?,?,?,1,?,?,?)",
                (lid, parent, time.time(), kind, op.id, compressed_digest, compressed_size),
            )
        tmp_cache = None
        try:
            self.hook.storage_create_layer(layer_id=lid, parent_id=parent, read_write=kind != "image")
            size, diff_id = None, None
            if stream is not None:
                from ..digest import HashedTarStream, open_decompressed, sniff_compression

                compression, src = sniff_compression(stream)
                # A gzip or zstd blob is cached as it came: writing it costs nothing, while
                # recompressing 250 MB of tar took 0.4 s of a pull's critical thread, and a
                # push can send it as it is. A plain tar gets a fast zstd copy.
                cache = self.cache_path(lid, "zstd" if compression == "none" else "blob")
                tmp_cache = cache + ".tmp"
                with open(tmp_cache, "wb") as raw_cache:
                    zw = None
                    if compression == "none":
                        import zstandard

                        zw = zstandard.ZstdCompressor(level=1).stream_writer(raw_cache, closefd=False)
                        plain = _TeeReader(open_decompressed(src, compression="none"), zw)
                    else:
                        plain = open_decompressed(_TeeReader(src, raw_cache), compression=compression)
                    # fetch + verify + inflate + cache + diff ID in a second thread, extract in this one
                    tee = HashedTarStream(plain)
                    try:
                        result = self.hook.storage_apply_diff(layer_id=lid, parent_id=parent, stream=tee)
                        tee.drain()
                    finally:
                        tee.close()
                    if zw is not None:
                        zw.close()  # ends the zstd frame
                size, diff_id = result.size, result.diff_id
                if expected_diff_id and diff_id != expected_diff_id:
                    raise DigestMismatch(
                        f"layer content does not match the image configuration: expected diff ID {expected_diff_id}, got {diff_id}"
                    )
                os.replace(tmp_cache, cache)
                tmp_cache = None
            with self.db.write() as tx:
                tx.execute("UPDATE layers SET incomplete = 0, size = ?, diff_id = ? WHERE id = ?", (size, diff_id, lid))
            return self.layer(lid)
        except BaseException:
            if tmp_cache:
                _unlink(tmp_cache)
            try:
                self._delete_layer(lid)
            except Exception:
                pass  # the operation's cleanup will retry
            raise

    def layer_tar(self, layer_id: str) -> IO[bytes]:
        """The exact tar stream an image layer came from (decompressed from the cache)."""
        path = self.cache_path(layer_id)
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            try:
                f = open(self.cache_path(layer_id, "blob"), "rb")
            except FileNotFoundError:
                raise StorageError(f"layer {layer_id}: its tar stream is missing from the layer cache ({path})") from None
            from ..digest import open_decompressed

            return open_decompressed(f, close_source=True)
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(f, closefd=True)  # (one frame: kpod's own)

    def layer_blob(self, row, compression: str) -> tuple[IO[bytes], str, int] | None:
        """The compressed blob layer *row* was pulled or loaded from, as ``(stream, digest,
        size)``, when the cache keeps it and it is *compression* (``'gzip'``/``'zstd'``);
        else None. A push sends it as it is instead of compressing the tar again."""
        from ..digest import detect_compression

        digest, size = row["compressed_digest"], row["compressed_size"]
        if not digest or size is None:
            return None
        try:
            f = open(self.cache_path(row["id"], "blob"), "rb")
        except FileNotFoundError:
            return None
        try:
            if os.fstat(f.fileno()).st_size == size and detect_compression(f.read(4)) == compression:
                f.seek(0)
                return f, digest, size
        except BaseException:
            f.close()
            raise
        f.close()
        return None

    # -- images ---------------------------------------------------------------------------
    def _image_from_row(self, row) -> Image:
        img = Image(
            id=row["id"], top_layer=row["top_layer"], manifest=bytes(row["manifest"]), manifest_type=row["manifest_type"],
            manifest_digest=row["manifest_digest"], config_raw=bytes(row["config"]), created=row["created"],
            added=row["added"], size=row["size"],
        )
        img.names = [r["name"] for r in self.db.read(
            "SELECT name FROM image_names WHERE image_id = ? ORDER BY added DESC, name", (img.id,))]
        img.digests = [(r["repo"], r["digest"]) for r in self.db.read(
            "SELECT repo, digest FROM image_digests WHERE image_id = ? ORDER BY repo", (img.id,))]
        return img

    def list_images(self) -> list[Image]:
        rows = self.db.read("SELECT * FROM images ORDER BY added DESC")
        names: dict[str, list[str]] = {}
        for r in self.db.read("SELECT name, image_id FROM image_names ORDER BY added DESC, name"):
            names.setdefault(r["image_id"], []).append(r["name"])
        digests: dict[str, list[tuple[str, str]]] = {}
        for r in self.db.read("SELECT image_id, repo, digest FROM image_digests ORDER BY repo"):
            digests.setdefault(r["image_id"], []).append((r["repo"], r["digest"]))
        out = []
        for row in rows:
            img = Image(
                id=row["id"], top_layer=row["top_layer"], manifest=bytes(row["manifest"]),
                manifest_type=row["manifest_type"], manifest_digest=row["manifest_digest"],
                config_raw=bytes(row["config"]), created=row["created"], added=row["added"], size=row["size"],
            )
            img.names = names.get(img.id, [])
            img.digests = digests.get(img.id, [])
            out.append(img)
        return out

    def get_by_id(self, image_id: str) -> Image | None:
        row = self.db.one("SELECT * FROM images WHERE id = ?", (image_id,))
        return self._image_from_row(row) if row else None

    def lookup(self, name: str) -> Image:
        """Find an image by ID, ID prefix, full name, short name or digest, like podman."""
        img = self.find(name)
        if img is None:
            raise NotFound(f"{name}: image not known")
        return img

    def find(self, name: str) -> Image | None:
        if not name:
            raise InvalidArgument("image name must not be empty")
        s = name[7:] if name.startswith("sha256:") else name
        if refmod.looks_like_id(s):
            rows = self.db.read("SELECT id FROM images WHERE id LIKE ?", (s + "%",))
            if len(rows) == 1:
                return self.get_by_id(rows[0]["id"])
            if len(rows) > 1 and len(s) < 64:
                raise InvalidArgument(f"{name}: image ID prefix is ambiguous ({len(rows)} images)")
        for candidate in self.name_candidates(name):
            if "@" in candidate:
                repo, _, dg = candidate.partition("@")
                row = self.db.one("SELECT image_id FROM image_digests WHERE repo = ? AND digest = ?", (repo, dg))
                if row is None:
                    row = self.db.one("SELECT id AS image_id FROM images WHERE manifest_digest = ? AND id IN "
                                      "(SELECT image_id FROM image_names WHERE name LIKE ?)", (dg, repo + ":%"))
            else:
                row = self.db.one("SELECT image_id FROM image_names WHERE name = ?", (candidate,))
            if row:
                return self.get_by_id(row["image_id"])
        return None

    def name_candidates(self, name: str) -> list[str]:
        """Stored names *name* may mean: itself normalised, localhost/..., then any registry."""
        try:
            ref = refmod.parse(name)
        except InvalidArgument:
            if refmod.looks_like_id(name):
                return []
            raise
        tag = ref.tag or (None if ref.digest else "latest")
        suffix = f"@{ref.digest}" if ref.digest else f":{tag}"
        if ref.domain:
            full = refmod.normalize(name)
            return [str(full) if not ref.digest else f"{full.name}@{ref.digest}"]
        out = [f"localhost/{ref.path}{suffix}"]
        rows = self.db.read(
            "SELECT name FROM image_names WHERE name LIKE ? OR name LIKE ?",
            (f"%/{ref.path}{suffix}", f"%/library/{ref.path}{suffix}"),
        )
        matches = sorted({r["name"] for r in rows
                          if r["name"].split("/", 1)[1] in (f"{ref.path}{suffix}", f"library/{ref.path}{suffix}")})
        if ref.digest:
            repos = {r["repo"] for r in self.db.read("SELECT repo FROM image_digests WHERE digest = ?", (ref.digest,))}
            matches += sorted(f"{repo}@{ref.digest}" for repo in repos if repo.split("/", 1)[-1] in (ref.path, f"library/{ref.path}"))
        return out + [m for m in matches if m not in out]

    def commit_image(self, op: Operation, *, config_raw: bytes, manifest_raw: bytes, manifest_type: str,
                     manifest_digest: str, top_layer: str | None, names: list[str] = (),
                     repo_digests: list[tuple[str, str]] = (), signatures: list[bytes] = ()) -> Image:
        """Make an image visible in one transaction (and end *op*'s ownership)."""
        from ..reference import digest_bytes

        image_id = digest_bytes(config_raw).split(":", 1)[1]
        cfg = json.loads(config_raw)
        chain = self.layer_chain(top_layer)
        size = sum((r["size"] or 0) for r in chain)
        now = time.time()
        with self.db.write() as tx:
            if tx.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone() is None:
                tx.execute(
                    "INSERT INTO images(id, top_layer, manifest, manifest_type, manifest_digest, config, created, added, size) "
                    "VALUES(?,?,?,?,?,?,?,?,?)",
                    (image_id, top_layer, manifest_raw, manifest_type, manifest_digest, config_raw,
                     cfg.get("created"), now, size),
                )
                for i, sig in enumerate(signatures):
                    tx.execute("INSERT INTO image_signatures(image_id, idx, data) VALUES(?,?,?)", (image_id, i, sig))
            for n in names:
                tx.execute(
                    "INSERT INTO image_names(name, image_id, added) VALUES(?,?,?) "
                    "ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id, added = excluded.added",
                    (n, image_id, now),
                )
            for repo, dg in repo_digests:
                tx.execute("INSERT OR IGNORE INTO image_digests(image_id, repo, digest) VALUES(?,?,?)", (image_id, repo, dg))
            tx.execute("UPDATE layers SET owner = NULL WHERE owner = ?", (op.id,))
        op.finish()
        return self.get_by_id(image_id)

    def signatures(self, image_id: str) -> list[bytes]:
        return [bytes(r["data"]) for r in self.db.read(
            "SELECT data FROM image_signatures WHERE image_id = ? ORDER BY idx", (image_id,))]

    def tag(self, image: Image, name: str) -> str:
        full = str(refmod.normalize_local(name)) if refmod.is_short_name(name) else str(refmod.normalize(name))
        if "@" in full:
            raise InvalidArgument(f"{name}: a tag cannot contain a digest")
        with self.db.write() as tx:
            tx.execute(
                "INSERT INTO image_names(name, image_id, added) VALUES(?,?,?) "
                "ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id, added = excluded.added",
                (full, image.id, time.time()),
            )
        _event("tag", image.id, full, self.config)
        return full

    def untag(self, image: Image, name: str | None = None) -> list[str]:
        if name is None:
            names = list(image.names)
        else:
            cands = [c for c in self.name_candidates(name) if c in image.names]
            if not cands:
                raise NotFound(f"{name}: tag not known for image {image.id[:12]}")
            names = cands[:1]
        with self.db.write() as tx:
            tx.executemany("DELETE FROM image_names WHERE name = ? AND image_id = ?", [(n, image.id) for n in names])
        for n in names:
            _event("untag", image.id, n, self.config)
        return names

    def containers_using(self, image_id: str) -> list[str]:
        try:
            rows = self.db.read("SELECT id FROM containers WHERE image_id = ?", (image_id,))
        except Exception:
            return []
        return [r["id"] for r in rows]

    def children(self, image: Image) -> list[Image]:
        """Images whose layer chain extends this image's top layer."""
        if not image.top_layer:
            return []
        out = []
        for other in self.list_images():
            if other.id != image.id and other.top_layer and other.top_layer != image.top_layer:
                if any(r["id"] == image.top_layer for r in self.layer_chain(other.top_layer)):
                    out.append(other)
        return out

    def remove_image(self, image: Image, force: bool = False) -> list[str]:
        """Remove *image* and the layers no one else uses. Returns removed layer IDs."""
        with self.exclusive():
            users = self.containers_using(image.id)
            if users and not force:
                raise InUse(
                    f"image {image.id[:12]} is in use by container(s) {', '.join(u[:12] for u in users)}: "
                    "remove them first or use --force"
                )
            with self.db.write() as tx:
                tx.execute("DELETE FROM images WHERE id = ?", (image.id,))
            _event("remove", image.id, image.names[0] if image.names else "", self.config)
            return self.remove_unused_layers([r["id"] for r in reversed(self.layer_chain(image.top_layer))])

    def remove_unused_layers(self, candidates: list[str]) -> list[str]:
        """Delete candidate layers (top first) that no image, container or child uses."""
        removed = []
        for lid in candidates:
            used = self.db.one(
                "SELECT 1 FROM images WHERE top_layer = ? UNION ALL SELECT 1 FROM layers WHERE parent = ? LIMIT 1",
                (lid, lid),
            )
            if used:
                break
            self._delete_layer(lid)
            removed.append(lid)
        return removed

    def image_layers(self, image: Image) -> list:
        return self.layer_chain(image.top_layer)


__all__ = ["ImageStore", "Image", "Operation"]
