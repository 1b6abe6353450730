"""``containers-storage:`` — the local image store as a transport.

Pulls, loads and imports copy *into* a :class:`StorageImageDestination`; saves and pushes
copy *from* a :class:`StorageImageSource`. The source presents the image with uncompressed
layers (digest = diff ID) read back byte for byte from the layer cache; the copy pipeline
compresses for destinations that want it. The config is served unchanged, so the image ID
survives every round trip.
"""

from __future__ import annotations

from typing import IO

from .. import manifest as mf
from .. import reference as refmod
from ..errors import ImageError, NotFound
from ..transports.base import ImageDestination, ImageReference, ImageSource, SystemContext, Transport


class StorageTransport(Transport):
    name = "containers-storage"

    def parse_reference(self, ref: str) -> "StorageReference":
        return StorageReference(self, ref)


class StorageReference(ImageReference):
    def __init__(self, transport: Transport, text: str, runtime=None) -> None:
        self.transport = transport
        self.text = text
        self.runtime = runtime
        self.named = None
        if text and not refmod.looks_like_id(text.removeprefix("sha256:")):
            self.named = refmod.normalize_local(text) if refmod.is_short_name(text) else refmod.normalize(text)

    def string_within_transport(self) -> str:
        return self.text

    def docker_reference(self):
        return self.named

    def _store(self, ctx: SystemContext):
        if self.runtime is None:
            from ..runtime import Runtime

            self.runtime = Runtime(ctx.config)
        return self.runtime.images

    def new_source(self, ctx: SystemContext) -> "StorageImageSource":
        store = self._store(ctx)
        return StorageImageSource(self, store, store.lookup(self.text))

    def new_destination(self, ctx: SystemContext) -> "StorageImageDestination":
        dest = StorageImageDestination(self, self._store(ctx))
        dest.extra_names = [_full_name(n) for n in (ctx.extra_names or [])]
        return dest


def _full_name(name: str) -> str:
    return str(refmod.normalize_local(name) if refmod.is_short_name(name) else refmod.normalize(name))


def storage_reference(runtime, text: str = "") -> StorageReference:
    """A containers-storage reference bound to *runtime*'s store."""
    return StorageReference(StorageTransport(), text, runtime)


class StorageImageSource(ImageSource):
    def __init__(self, ref: StorageReference, store, image) -> None:
        self.reference = ref
        self.store = store
        self.image = image
        self.chain = store.image_layers(image)
        cfg = image.config
        diff_ids = (cfg.get("rootfs") or {}).get("diff_ids") or []
        if len(diff_ids) != len(self.chain):
            raise ImageError(f"image {image.id[:12]}: config lists {len(diff_ids)} layers, the store holds {len(self.chain)}")
        self.by_diff = {row["diff_id"]: row for row in self.chain}
        stored = mf.parse_manifest(image.manifest, image.manifest_type)
        fmt = getattr(stored, "format", mf.FORMAT_OCI)
        config_desc = mf.descriptor_for(image.config_raw, mf.MEDIA_TYPE_DOCKER_CONFIG if fmt == mf.FORMAT_V2S2 else mf.MEDIA_TYPE_OCI_CONFIG)
        layer_mt = mf.layer_media_type(fmt, "none")
        layers = [mf.Descriptor(media_type=layer_mt, digest=row["diff_id"], size=row["size"]) for row in self.chain]
        self.manifest_raw = mf.build_manifest(config_desc, layers, fmt)
        self.manifest_type = mf.MEDIA_TYPE_DOCKER_MANIFEST if fmt == mf.FORMAT_V2S2 else mf.MEDIA_TYPE_OCI_MANIFEST
        self.config_digest = config_desc.digest

    def get_manifest(self, instance_digest: str | None = None) -> tuple[bytes, str | None]:
        return self.manifest_raw, self.manifest_type

    def get_blob(self, digest: str, size: int | None = None, media_type: str | None = None) -> tuple[IO[bytes], int | None]:
        import io

        if digest == self.config_digest:
            return io.BytesIO(self.image.config_raw), len(self.image.config_raw)
        row = self.by_diff.get(digest)
        if row is None:
            raise NotFound(f"blob {digest} is not part of image {self.image.id[:12]}")
        from ..digest import ReadAhead

        # inflating the cached tar on the other core while the caller hashes and writes it
        return ReadAhead(self.store.layer_tar(row["id"]), close_inner=True), row["size"]

    def has_blob(self, digest: str) -> bool:
        return digest == self.config_digest or digest in self.by_diff

    def get_compressed_blob(self, digest: str, compression: str) -> tuple[IO[bytes], str, int] | None:
        row = self.by_diff.get(digest)
        return None if row is None else self.store.layer_blob(row, compression)

    def get_signatures(self, instance_digest: str | None = None) -> list[bytes]:
        return self.store.signatures(self.image.id)


class StorageImageDestination(ImageDestination):
    def __init__(self, ref: StorageReference, store) -> None:
        self.reference = ref
        self.store = store
        self._lock = store.shared()
        self._lock.__enter__()
        self.op = store.operation(f"write image {ref.text or '<unnamed>'}")
        self.parent: str | None = None
        self.config_raw: bytes | None = None
        self.manifest: tuple[bytes, str | None] | None = None
        self.signatures: list[bytes] = []
        self.image = None
        self.extra_names: list[str] = []
        self.repo_digest_names: list[str] = []

    def desired_layer_compression(self) -> str | None:
        return None

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        return False

    def reuse_blob(self, digest, size, media_type, *, layer_index=None, diff_id=None):
        if layer_index is None:
            return None
        row = None
        if diff_id:
            row = self.store.find_layer(self.parent, diff_id)
        if row is None and digest:
            row = self.store.db.one(
                "SELECT * FROM layers WHERE (compressed_digest = ? OR diff_id = ?) AND parent IS ? "
                "AND incomplete = 0 AND owner IS NULL AND kind = 'image' LIMIT 1",
                (digest, digest, self.parent),
            )
        if row is None:
            return None
        self.parent = row["id"]
        return digest, size if size is not None else row["size"]

    def put_blob(self, stream, digest, size, media_type, *, is_config=False, layer_index=None, diff_id=None):
        if is_config or layer_index is None:
            data = stream.read(mf.MAX_CONFIG_SIZE + 1)
            if len(data) > mf.MAX_CONFIG_SIZE:
                raise ImageError(f"image config {digest or ''} is larger than {mf.MAX_CONFIG_SIZE} bytes")
            while stream.read(1 << 16):  # let a verifying reader see the end
                pass
            self.config_raw = data
            return refmod.digest_bytes(data), len(data)
        row = self.store.create_layer(
            self.op, self.parent, stream, expected_diff_id=diff_id,
            compressed_digest=digest if digest and digest != diff_id else None, compressed_size=size,
        )
        self.parent = row["id"]
        return digest or row["diff_id"], size if size is not None else row["size"]

    def put_manifest(self, raw: bytes, media_type: str | None, instance_digest: str | None = None) -> None:
        if instance_digest is None:
            self.manifest = (raw, media_type)

    def put_signatures(self, signatures: list[bytes], instance_digest: str | None = None) -> None:
        self.signatures = list(signatures)

    def commit(self) -> None:
        if self.config_raw is None or self.manifest is None:
            raise ImageError("internal error: image committed without a config or manifest")
        raw, mt = self.manifest
        parsed = mf.parse_manifest(raw, mt)
        cfg = mf.parse_image_config(self.config_raw)
        diff_ids = cfg["rootfs"]["diff_ids"]
        chain = self.store.layer_chain(self.parent)
        if [r["diff_id"] for r in chain] != list(diff_ids):
            raise ImageError("the image's layers do not match its configuration's diff IDs")
        names = []
        if self.reference.named is not None and not self.reference.named.digest:
            names.append(str(self.reference.named))
        names += [n for n in self.extra_names if n not in names]
        repo_digests = []
        if self.reference.named is not None:
            repo_digests.append((self.reference.named.name, parsed.digest))
        for n in self.repo_digest_names:
            repo_digests.append((n, parsed.digest))
        self.image = self.store.commit_image(
            self.op, config_raw=self.config_raw, manifest_raw=raw,
            manifest_type=mt or parsed.media_type, manifest_digest=parsed.digest,
            top_layer=self.parent, names=names, repo_digests=repo_digests, signatures=self.signatures,
        )

    def close(self) -> None:
        try:
            if self.image is None:
                self.op.abort()
        finally:
            if self._lock is not None:
                self._lock.__exit__(None, None, None)
                self._lock = None


__all__ = ["StorageTransport", "StorageReference", "storage_reference"]
