"""The ``docker://`` transport: images in registries speaking the registry v2 API.

``docker://busybox`` is normalised like podman: ``docker.io/library/busybox:latest``. A
reference with both a tag and a digest is refused (as containers/image does).

Sources read through registries.conf: mirrors first (as allowed for tag or digest pulls),
then the primary location; the first endpoint that serves the manifest serves the blobs too.
Signatures come from registries.d: simple-signing signatures from the lookaside storage,
sigstore signatures from ``sha256-<hex>.sig`` tags when ``use-sigstore-attachments`` is on.

Destinations push to the reference itself (no mirrors), reuse blobs the repository already
has or can mount from another repository of the same registry (known from earlier pulls and
pushes, kept in ``<graphroot>/cache/blob-locations.json`` when the engine config is known),
upload small blobs in one PUT and large ones in chunks, and write simple-signing signatures
to a ``file://`` lookaside (``lookaside-staging`` or ``lookaside`` in registries.d) and
sigstore signatures to the ``sha256-<hex>.sig`` tag (an OCI manifest with one layer per
signature, as cosign writes it), when ``use-sigstore-attachments`` is on for the registry.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from typing import IO, Any

from .. import reference as _reference
from ..errors import DigestMismatch, InvalidArgument, TransportError
from .base import ImageDestination, ImageReference, ImageSource, SystemContext, Transport

__all__ = [
    "DockerTransport",
    "DockerReference",
    "DockerImageSource",
    "DockerImageDestination",
    "list_tags",
    "sigstore_tag",
]


def sigstore_tag(digest: str) -> str:
    """The tag holding sigstore signatures for a manifest digest: ``sha256-<hex>.sig``."""
    algo, _, hexpart = digest.partition(":")
    return f"{algo}-{hexpart}.sig"


class DockerTransport(Transport):
    name = "docker"

    def parse_reference(self, ref: str) -> "DockerReference":
        s = ref[2:] if ref.startswith("//") else ref
        r = _reference.normalize_docker_hub(s)
        if r.tag is not None and r.digest is not None:
            raise InvalidArgument(
                f"invalid reference {s!r}: docker references with both a tag and digest are not supported"
            )
        return DockerReference(self, r)

    def validate_policy_scope(self, scope: str) -> None:
        from ..registry.policy import validate_docker_scope

        validate_docker_scope(scope)


class DockerReference(ImageReference):
    def __init__(self, transport: DockerTransport, ref: _reference.Reference):
        self.transport = transport
        self.ref = ref

    def __repr__(self) -> str:
        return f"DockerReference({str(self.ref)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DockerReference) and other.ref == self.ref

    def __hash__(self) -> int:
        return hash(("docker", str(self.ref)))

    def string_within_transport(self) -> str:
        return str(self.ref)

    def docker_reference(self) -> _reference.Reference:
        return self.ref

    def policy_configuration_identity(self) -> str:
        return str(self.ref)

    def policy_configuration_namespaces(self) -> list[str]:
        from ..registry.policy import docker_namespaces

        return docker_namespaces(self.ref)

    def new_source(self, ctx: SystemContext | None = None) -> "DockerImageSource":
        return DockerImageSource(self, ctx or SystemContext())

    def new_destination(self, ctx: SystemContext | None = None) -> "DockerImageDestination":
        return DockerImageDestination(self, ctx or SystemContext())

    def delete(self, ctx: SystemContext | None = None) -> None:
        """Delete the manifest the reference names (the registry must allow deletes)."""
        ctx = ctx or SystemContext()
        conf = _registries_conf(ctx)
        dest = conf.push_destination(self.ref)
        client = _client_for(dest.registry, ctx, dest.insecure, self.ref.name)
        try:
            repo = self.ref.path
            digest = self.ref.digest
            if digest is None:
                head = client.head_manifest(repo, self.ref.tag or "latest")
                if head is None or not head[0]:
                    from ..registry.client import ManifestUnknown

                    raise ManifestUnknown(f"deleting {self}: manifest unknown: image not found", status=404)
                digest = head[0]
            client.delete_manifest(repo, digest)
        finally:
            client.close()


# ------------------------------------------------------------------------------------------
# helpers


def _registries_conf(ctx: Any):
    from ..registry.registries_conf import load_registries_conf

    return load_registries_conf(ctx)


def _registries_d(ctx: Any):
    from ..registry.registries_d import RegistriesD

    return RegistriesD.load(getattr(ctx, "registries_d", None))


def _client_for(registry: str, ctx: Any, insecure: bool, image: str):
    from ..registry.client import make_client

    return make_client(registry, ctx, insecure=insecure, image=image)


class _BlobLocations:
    """digest -> [(registry, repository)] seen recently, for cross-repository mounts."""

    MAX_DIGESTS = 2000
    MAX_PER_DIGEST = 4
    _lock = threading.Lock()
    _memory: dict[str, list[list[str]]] = {}

    def __init__(self, ctx: Any):
        self.path = None
        cfg = getattr(ctx, "config", None)
        graphroot = None
        if cfg is not None:
            try:
                graphroot = cfg.get("graphroot")
            except (KeyError, AttributeError):
                graphroot = None
        if graphroot:
            self.path = os.path.join(graphroot, "cache", "blob-locations.json")
        self.dirty = False
        self.data: dict[str, list[list[str]]] = self._memory
        if self.path and os.path.exists(self.path):
            try:
                with open(self.path) as f:
                    loaded = json.load(f)
                if isinstance(loaded, dict):
                    with self._lock:
                        for d, locs in loaded.items():
                            if isinstance(locs, list):
                                for loc in locs:
                                    if isinstance(loc, list) and len(loc) == 2:
                                        self._add(d, loc[0], loc[1])
            except (OSError, ValueError):
                pass  # a cache: ignore a broken file

    def _add(self, digest: str, registry: str, repo: str) -> None:
        locs = self.data.setdefault(digest, [])
        entry = [registry, repo]
        if entry in locs:
            locs.remove(entry)
        locs.insert(0, entry)
        del locs[self.MAX_PER_DIGEST:]
        while len(self.data) > self.MAX_DIGESTS:
            self.data.pop(next(iter(self.data)))

    def record(self, digest: str, registry: str, repo: str) -> None:
        with self._lock:
            self._add(digest, registry, repo)
        self.dirty = True

    def candidates(self, digest: str, registry: str, exclude_repo: str) -> list[str]:
        with self._lock:
            return [repo for reg, repo in self.data.get(digest, []) if reg == registry and repo != exclude_repo]

    def save(self) -> None:
        if not (self.dirty and self.path):
            return
        try:
            d = os.path.dirname(self.path)
            os.makedirs(d, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".blob-locations.", dir=d)
            with os.fdopen(fd, "w") as f, self._lock:
                json.dump(self.data, f)
            os.replace(tmp, self.path)
        except OSError:
            pass
        self.dirty = False


def _sigstore_manifest(client, repo: str, digest: str, what: str):
    """The manifest tagged ``sha256-<hex>.sig`` for *digest* (parsed), or None."""
    from ..manifest import Manifest, parse_manifest
    from ..registry.client import ManifestUnknown, RegistryError

    try:
        raw, mt, _ = client.get_manifest(repo, sigstore_tag(digest))
    except ManifestUnknown:
        return None
    except RegistryError as exc:
        if exc.status == 404:
            return None
        raise
    try:
        m = parse_manifest(raw, mt)
    except Exception as exc:
        raise TransportError(f"{what}: invalid signature manifest: {exc}") from None
    if not isinstance(m, Manifest):
        raise TransportError(f"{what}: the signature tag is not an image manifest")
    return m


def _small_blob(client, repo: str, desc, what: str) -> bytes:
    """A signature-sized blob (payload or config), verified."""
    from ..digest import DigestReader
    from ..registry.registries_d import MAX_SIGNATURE_SIZE

    if desc.size > MAX_SIGNATURE_SIZE:
        raise TransportError(f"{what}: blob {desc.digest} is too large ({desc.size} bytes)")
    stream = client.get_blob(repo, desc.digest)
    try:
        reader = DigestReader(stream, desc.digest, desc.size)
        data = reader.read()
        reader.verify()
    finally:
        stream.close()
    return data


class _RegistriesDUser:
    """registries.d, loaded once per source or destination."""

    ctx: Any
    _regd = None

    def _regd_conf(self):
        if self._regd is None:
            self._regd = _registries_d(self.ctx)
        return self._regd


# ------------------------------------------------------------------------------------------
# Source


class DockerImageSource(_RegistriesDUser, ImageSource):
    def __init__(self, reference: DockerReference, ctx: SystemContext):
        self.reference = reference
        self.ctx = ctx
        conf = _registries_conf(ctx)
        self.pull_sources = conf.resolve_pull_sources(reference.ref)  # raises if blocked
        self._clients: dict[tuple[str, bool, str], Any] = {}
        self._chosen = None  # (PullSource, client)
        self._top: tuple[bytes, str | None] | None = None
        self._instances: dict[str, tuple[bytes, str | None]] = {}
        self._locations = _BlobLocations(ctx)

    def _client(self, src) -> Any:
        key = (src.registry, src.insecure, src.reference.name)
        c = self._clients.get(key)
        if c is None:
            c = _client_for(src.registry, self.ctx, src.insecure, src.reference.name)
            self._clients[key] = c
        return c

    def _choose(self) -> None:
        if self._chosen is not None:
            return
        from ..registry.client import RegistryError

        errors: list[tuple[Any, Exception]] = []
        for src in self.pull_sources:
            client = self._client(src)
            ref = src.reference
            try:
                raw, mt, _ = client.get_manifest(ref.path, ref.digest or ref.tag or "latest")
            except (TransportError, DigestMismatch) as exc:
                errors.append((src, exc))
                continue
            self._chosen = (src, client)
            self._top = (raw, mt)
            return
        src, last = errors[-1]
        if len(errors) == 1:
            raise last
        mirrors = "; ".join(f"{s.location}: {e}" for s, e in errors[:-1])
        msg = f"{last} (mirrors also failed: {mirrors})"
        if isinstance(last, RegistryError):
            raise type(last)(msg, status=last.status, code=last.code) from last
        raise type(last)(msg) from last

    @property
    def physical_reference(self) -> _reference.Reference:
        """The reference actually used (rewritten for the mirror or location that answered)."""
        self._choose()
        return self._chosen[0].reference

    def get_manifest(self, instance_digest: str | None = None) -> tuple[bytes, str | None]:
        self._choose()
        if instance_digest is None:
            return self._top
        got = self._instances.get(instance_digest)
        if got is None:
            src, client = self._chosen
            raw, mt, _ = client.get_manifest(src.reference.path, instance_digest)
            got = self._instances[instance_digest] = (raw, mt)
        return got

    def get_blob(self, digest: str, size: int | None = None, media_type: str | None = None) -> tuple[IO[bytes], int | None]:
        self._choose()
        src, client = self._chosen
        stream = client.get_blob(src.reference.path, digest)
        self._locations.record(digest, src.registry, src.reference.path)
        return stream, (stream.size if stream.size is not None else size)

    def has_blob(self, digest: str) -> bool:
        self._choose()
        src, client = self._chosen
        return client.head_blob(src.reference.path, digest) is not None

    def _manifest_digest(self, instance_digest: str | None) -> str:
        if instance_digest is not None:
            return instance_digest
        raw, _ = self.get_manifest()
        return _reference.digest_bytes(raw)

    def get_signatures(self, instance_digest: str | None = None) -> list[bytes]:
        from ..registry.policy import docker_namespaces
        from ..registry.registries_d import read_lookaside_signatures

        digest = self._manifest_digest(instance_digest)
        ref = self._chosen[0].reference
        base = self._regd_conf().lookaside_base(str(ref), docker_namespaces(ref), ref.path)
        return read_lookaside_signatures(base, digest, timeout=self.ctx.timeout)

    def get_sigstore_signatures(self, instance_digest: str | None = None) -> list[dict[str, Any]]:
        from ..registry.policy import docker_namespaces

        digest = self._manifest_digest(instance_digest)
        src, client = self._chosen
        ref = src.reference
        if not self._regd_conf().use_sigstore_attachments(str(ref), docker_namespaces(ref)):
            return []
        what = f"reading sigstore signatures of {self.reference}"
        m = _sigstore_manifest(client, ref.path, digest, what)
        if m is None:
            return []
        return [{"payload": _small_blob(client, ref.path, layer, what), "annotations": dict(layer.annotations or {}),
                 "media_type": layer.media_type} for layer in m.layers]

    def close(self) -> None:
        for c in self._clients.values():
            c.close()
        self._clients.clear()
        self._locations.save()


# ------------------------------------------------------------------------------------------
# Destination


class DockerImageDestination(_RegistriesDUser, ImageDestination):
    #: blobs up to this size (with a known digest) go in one PUT
    monolithic_max = 64 * 1024 * 1024
    #: larger or unknown blobs: None streams them in one PATCH (containers/image's way: the
    #: layer is compressed, hashed and sent at once, with bounded memory); a size sends PATCH
    #: chunks of that many bytes (``Content-Range``) instead
    chunk_size: int | None = None

    def __init__(self, reference: DockerReference, ctx: SystemContext):
        self.reference = reference
        self.ctx = ctx
        conf = _registries_conf(ctx)
        self.dest = conf.push_destination(reference.ref)  # raises if blocked
        self.client = _client_for(self.dest.registry, ctx, self.dest.insecure, reference.ref.name)
        self.repo = reference.ref.path
        self._manifest_digest: str | None = None
        self._locations = _BlobLocations(ctx)

    def supported_manifest_types(self) -> list[str]:
        return []

    def accepts_foreign_layers(self) -> bool:
        return True

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        return self.client.head_blob(self.repo, digest, push=True) is not None

    def reuse_blob(self, digest: str, size: int | None, media_type: str | None, *,
                   layer_index: int | None = None, diff_id: str | None = None) -> tuple[str, int] | None:
        found = self.client.head_blob(self.repo, digest, push=True)
        if found is not None:
            return digest, (found if found >= 0 else (size or 0))
        for other in self._locations.candidates(digest, self.dest.registry, self.repo):
            try:
                mounted = self.client.mount_blob(self.repo, digest, other)
            except TransportError:
                mounted = False
            if mounted:
                self._locations.record(digest, self.dest.registry, self.repo)
                got = self.client.head_blob(self.repo, digest, push=True)
                return digest, (got if got is not None and got >= 0 else (size or 0))
        return None

    def put_blob(self, stream: IO[bytes], digest: str | None, size: int | None, media_type: str | None, *,
                 is_config: bool = False, layer_index: int | None = None, diff_id: str | None = None) -> tuple[str, int]:
        d, n = self.client.upload_blob(self.repo, stream, digest, size,
                                       monolithic_max=self.monolithic_max, chunk_size=self.chunk_size)
        self._locations.record(d, self.dest.registry, self.repo)
        return d, n

    def put_manifest(self, raw: bytes, media_type: str | None, instance_digest: str | None = None) -> None:
        digest = _reference.digest_bytes(raw)
        if instance_digest is not None:
            if instance_digest != digest:
                raise DigestMismatch(f"manifest for instance {instance_digest} has digest {digest}")
            self.client.put_manifest(self.repo, digest, raw, media_type)
            return
        ref = self.reference.ref
        if ref.digest is not None:
            if ref.digest != digest:
                raise DigestMismatch(f"pushing to {self.reference}: the manifest has digest {digest}, "
                                     f"not the one in the reference")
            self.client.put_manifest(self.repo, digest, raw, media_type)
        else:
            self.client.put_manifest(self.repo, ref.tag or "latest", raw, media_type)
        self._manifest_digest = digest

    @property
    def manifest_digest(self) -> str | None:
        """The digest of the manifest pushed (after :meth:`put_manifest`)."""
        return self._manifest_digest

    def _signed_digest(self, instance_digest: str | None) -> str:
        digest = instance_digest or self._manifest_digest
        if digest is None:
            raise TransportError(f"{self.reference}: signatures can only be written after the manifest")
        return digest

    def _lookaside_for_write(self) -> str:
        from ..registry.policy import docker_namespaces

        ref = self.reference.ref
        regd = self._regd_conf()
        base = regd.lookaside_base(str(ref), docker_namespaces(ref), ref.path, write=True, use_default=False)
        if base is None:
            raise TransportError(
                f"{self.reference}: cannot store signatures: the registry has no signature API and no "
                f"lookaside (lookaside-staging) is configured for it in {regd.directory}"
            )
        from urllib.parse import urlsplit

        if urlsplit(base).scheme != "file":
            raise TransportError(f"{self.reference}: cannot store signatures at {base}: only file:// lookaside "
                                 f"URLs can be written (set lookaside-staging in {regd.directory})")
        return base

    def supports_signatures(self) -> None:
        self._lookaside_for_write()

    def supports_sigstore_signatures(self) -> None:
        from ..registry.policy import docker_namespaces

        ref = self.reference.ref
        regd = self._regd_conf()
        if not regd.use_sigstore_attachments(str(ref), docker_namespaces(ref)):
            raise TransportError(f"{self.reference}: cannot store sigstore signatures: use-sigstore-attachments "
                                 f"is not enabled for this registry in {regd.directory}")

    def put_signatures(self, signatures: list[bytes], instance_digest: str | None = None) -> None:
        if not signatures:
            return
        from ..registry.registries_d import write_lookaside_signatures

        digest = self._signed_digest(instance_digest)
        base = self._lookaside_for_write()
        try:
            write_lookaside_signatures(base, digest, signatures)
        except OSError as exc:
            raise TransportError(f"writing signatures to {base}: {exc.strerror or exc}") from None

    def put_sigstore_signatures(self, signatures: list[dict[str, Any]], instance_digest: str | None = None) -> None:
        """Add the signatures as layers of the OCI manifest tagged ``sha256-<hex>.sig``
        (cosign's layout), keeping those already there; a signature already present is not
        added twice."""
        if not signatures:
            return
        import io

        from ..manifest import MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_OCI_MANIFEST, build_manifest, descriptor_for
        from ..registry.policy import SIGSTORE_PAYLOAD_MEDIA_TYPE
        from ..registry.registries_d import MAX_SIGNATURES

        self.supports_sigstore_signatures()
        digest = self._signed_digest(instance_digest)
        where = f"{self.reference}: sigstore signatures ({sigstore_tag(digest)})"
        old = _sigstore_manifest(self.client, self.repo, digest, where)
        layers = []
        config: dict[str, Any] = {"architecture": "", "os": "", "config": {}, "rootfs": {"type": "layers", "diff_ids": []}}
        if old is not None:
            if old.media_type != MEDIA_TYPE_OCI_MANIFEST:
                raise TransportError(f"{where}: the tag exists and is not an OCI image manifest")
            try:
                config = json.loads(_small_blob(self.client, self.repo, old.config, where))
                if not isinstance(config["rootfs"]["diff_ids"], list):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                raise TransportError(f"{where}: the existing signature config is not an image config") from None
            layers = list(old.layers)
        for sig in signatures:
            payload = bytes(sig["payload"])
            d = descriptor_for(payload, sig.get("media_type") or SIGSTORE_PAYLOAD_MEDIA_TYPE,
                               annotations=dict(sig.get("annotations") or {}))
            if any(l.digest == d.digest and l.media_type == d.media_type and dict(l.annotations or {}) == d.annotations
                   for l in layers):
                continue
            if len(layers) >= MAX_SIGNATURES:
                raise TransportError(f"{where}: more than {MAX_SIGNATURES} signatures")
            if self.client.head_blob(self.repo, d.digest, push=True) is None:
                self.client.upload_blob(self.repo, io.BytesIO(payload), d.digest, d.size)
            layers.append(d)
            config["rootfs"]["diff_ids"].append(d.digest)
        cfg_raw = json.dumps(config, separators=(",", ":")).encode()
        cdesc = descriptor_for(cfg_raw, MEDIA_TYPE_OCI_CONFIG)
        if self.client.head_blob(self.repo, cdesc.digest, push=True) is None:
            self.client.upload_blob(self.repo, io.BytesIO(cfg_raw), cdesc.digest, cdesc.size)
        self.client.put_manifest(self.repo, sigstore_tag(digest), build_manifest(cdesc, layers), MEDIA_TYPE_OCI_MANIFEST)

    def commit(self) -> None:
        """Nothing to do: the image is visible once the manifest is in."""

    def close(self) -> None:
        self.client.close()
        self._locations.save()


# ------------------------------------------------------------------------------------------


def list_tags(ref: DockerReference | str, ctx: SystemContext | None = None, *, page_size: int | None = None) -> list[str]:
    """Every tag of the repository *ref* names (``--all-tags``, ``skopeo list-tags``)."""
    ctx = ctx or SystemContext()
    if isinstance(ref, str):
        s = ref[len("docker://"):] if ref.startswith("docker://") else ref
        ref = DockerTransport().parse_reference(s)
    conf = _registries_conf(ctx)
    dest = conf.push_destination(ref.ref)
    client = _client_for(dest.registry, ctx, dest.insecure, ref.ref.name)
    try:
        return client.list_tags(ref.ref.path, page_size=page_size)
    finally:
        client.close()
