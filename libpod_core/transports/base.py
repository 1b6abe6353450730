"""The transport contract: Transport, ImageReference, ImageSource, ImageDestination.

Mirrors containers/image: a reference is parsed per transport; a source yields the manifest,
blobs and signatures; a destination accepts blobs, then the manifest, then signatures, and
makes the image visible only in :meth:`ImageDestination.commit`. Blobs are streams (binary
file objects); nobody holds a whole layer in memory. Sources do not verify digests: the copy
pipeline does, while streaming, for every blob and manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import IO, Any, Callable

from ..errors import InvalidArgument, TransportError


@dataclass
class SystemContext:
    """Options for sources and destinations (containers/image's types.SystemContext)."""

    config: Any = None                      #: the engine Config (paths of registries.conf, policy...)
    authfile: str | None = None             #: --authfile
    creds: str | None = None                #: --creds user[:password]
    tls_verify: bool | None = None          #: --tls-verify (None: registries.conf decides)
    cert_dir: str | None = None             #: --cert-dir
    os: str | None = None                   #: --os / --platform
    arch: str | None = None                 #: --arch / --platform
    variant: str | None = None              #: --variant / --platform
    signature_policy: str | None = None     #: --signature-policy
    registries_conf: str | None = None
    registries_d: str | None = None         #: registries.d directory (signature lookaside)
    timeout: float = 60.0                   #: network timeout per request (seconds)
    progress: Callable[[str, int, int | None], None] | None = None  #: (blob digest, done, total)
    quiet: bool = False
    remove_signatures: bool = False
    sign_by: str | None = None              #: GPG key copy_image signs with (no passphrase: gpg-agent asks)
    #: docker-archive destinations: extra names to record for the image
    extra_names: list[str] = field(default_factory=list)


class Transport:
    """One transport (``docker``, ``docker-archive``, ``oci``...). Subclass and register the
    class in the ``kpod.transport`` entry-point group under :attr:`name`."""

    name: str = ""

    def parse_reference(self, ref: str) -> "ImageReference":
        """Parse the part after ``NAME:`` (for docker, after ``docker://``)."""
        raise NotImplementedError

    def validate_policy_scope(self, scope: str) -> None:
        """Raise InvalidArgument if *scope* is not a valid policy.json scope for this transport."""


class ImageReference:
    """A parsed reference within one transport."""

    transport: Transport

    def string_within_transport(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        sep = "://" if self.transport.name == "docker" else ":"
        return f"{self.transport.name}{sep}{self.string_within_transport()}"

    def docker_reference(self):
        """The named :class:`libpod_core.reference.Reference` this image carries, or None."""
        return None

    def policy_configuration_identity(self) -> str:
        """The most specific policy.json scope for this reference."""
        return self.string_within_transport()

    def policy_configuration_namespaces(self) -> list[str]:
        """Less specific scopes, most specific first (the default scope ``""`` excluded)."""
        return []

    def new_source(self, ctx: SystemContext) -> "ImageSource":
        raise NotImplementedError

    def new_destination(self, ctx: SystemContext) -> "ImageDestination":
        raise NotImplementedError

    def delete(self, ctx: SystemContext) -> None:
        raise TransportError(f"{self}: deleting images is not supported by the {self.transport.name} transport")


class ImageSource:
    """Reads one image (or an index). Use as a context manager."""

    reference: ImageReference

    def get_manifest(self, instance_digest: str | None = None) -> tuple[bytes, str | None]:
        """The raw manifest bytes and their media type (None if unknown). With
        *instance_digest*, the manifest of that instance of an index."""
        raise NotImplementedError

    def get_blob(self, digest: str, size: int | None = None, media_type: str | None = None) -> tuple[IO[bytes], int | None]:
        """A binary stream of the blob and its size if known. The caller closes it."""
        raise NotImplementedError

    def has_blob(self, digest: str) -> bool:
        return False

    def get_compressed_blob(self, digest: str, compression: str) -> tuple[IO[bytes], str, int] | None:
        """The uncompressed layer *digest* already compressed with *compression* (``'gzip'``
        or ``'zstd'``) when the source keeps such a copy, as ``(stream, digest, size)``; the
        caller closes the stream. None (the default) when it does not: a copy that needs
        the layer compressed then compresses it itself."""
        return None

    def get_signatures(self, instance_digest: str | None = None) -> list[bytes]:
        """Simple-signing signatures (raw GPG messages) for the manifest."""
        return []

    def get_sigstore_signatures(self, instance_digest: str | None = None) -> list[dict[str, Any]]:
        """sigstore (cosign) signatures: dicts with ``payload`` bytes and ``annotations``."""
        return []

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ImageDestination:
    """Writes one image. Nothing becomes visible before :meth:`commit`."""

    reference: ImageReference

    def supported_manifest_types(self) -> list[str]:
        """Manifest media types accepted, preferred first; empty means any."""
        return []

    def desired_layer_compression(self) -> str | None:
        """``"gzip"``, ``"zstd"``, ``"none"`` to force a compression, None to keep the
        source's."""
        return None

    def accepts_foreign_layers(self) -> bool:
        return False

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        """True if the destination already holds this blob (it will not be sent)."""
        return False

    def put_blob(self, stream: IO[bytes], digest: str | None, size: int | None, media_type: str | None,
                 *, is_config: bool = False, layer_index: int | None = None, diff_id: str | None = None) -> tuple[str, int]:
        """Store a blob read from *stream* (verified by the caller's stream wrapper when
        *digest* is given). Layers arrive in order; *layer_index* is the position in the
        manifest and *diff_id* the uncompressed digest from the config, if known.
        Returns ``(digest, size)`` as stored."""
        raise NotImplementedError

    def reuse_blob(self, digest: str, size: int | None, media_type: str | None, *,
                   layer_index: int | None = None, diff_id: str | None = None) -> tuple[str, int] | None:
        """Reuse a blob the destination has (a layer already in the store, a blob in the
        repository, a cross-repository mount). Returns ``(digest, size)`` or None."""
        return None

    def put_manifest(self, raw: bytes, media_type: str | None, instance_digest: str | None = None) -> None:
        raise NotImplementedError

    def put_signatures(self, signatures: list[bytes], instance_digest: str | None = None) -> None:
        """Store the simple-signing signatures of the manifest (after :meth:`put_manifest`),
        replacing any it had."""
        if signatures:
            raise TransportError(f"{self.reference}: this destination cannot store signatures")

    def put_sigstore_signatures(self, signatures: list[dict[str, Any]], instance_digest: str | None = None) -> None:
        """Add sigstore signatures (dicts as :meth:`ImageSource.get_sigstore_signatures`
        returns them) to those the destination keeps for the manifest (after
        :meth:`put_manifest`)."""
        if signatures:
            raise TransportError(f"{self.reference}: this destination cannot store sigstore signatures")

    def supports_signatures(self) -> None:
        """Raise TransportError, to show the user, when this destination certainly cannot
        store simple-signing signatures. Called before anything is written when a copy has
        signatures to store. The default: supported when :meth:`put_signatures` is
        overridden."""
        if type(self).put_signatures is ImageDestination.put_signatures:
            raise TransportError(f"{self.reference}: this destination cannot store signatures")

    def supports_sigstore_signatures(self) -> None:
        """As :meth:`supports_signatures`, for sigstore signatures."""
        if type(self).put_sigstore_signatures is ImageDestination.put_sigstore_signatures:
            raise TransportError(f"{self.reference}: this destination cannot store sigstore signatures")

    def commit(self) -> None:
        """Make the image visible (atomically)."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------------------------------
# Lookup
# ------------------------------------------------------------------------------------------

_cache: dict[str, Transport] = {}


def transport_names() -> list[str]:
    from ..plugins import installed_names

    return installed_names("transport")


def get_transport(name: str, config: Any = None) -> Transport:
    """The transport registered as *name* in ``kpod.transport`` (or by a general plugin)."""
    if name in _cache:
        return _cache[name]
    from .. import epcache

    for ep in epcache.entries("kpod.transport", name)[:1]:
        if ep.name == name:
            try:
                cls = epcache.load(ep.value)
            except Exception as exc:
                raise TransportError(f"transport {name!r} ({ep.value}) failed to load: {exc}") from exc
            t = cls() if isinstance(cls, type) else cls
            _cache[name] = t
            return t
    if config is not None:
        from ..plugins import PluginManager

        pm = PluginManager(config)
        pm.load_general()
        for group in pm.hook.kpod_transports(config=config):
            for cls in group or []:
                t = cls() if isinstance(cls, type) else cls
                _cache.setdefault(t.name, t)
        if name in _cache:
            return _cache[name]
    known = ", ".join(transport_names()) or "none"
    raise InvalidArgument(f"unknown transport {name!r} (installed transports: {known})")


def split_transport(ref: str) -> tuple[str | None, str]:
    """``docker://x`` -> ("docker", "x"); ``oci:/p:t`` -> ("oci", "/p:t"); ``busybox`` -> (None, ...).

    A prefix counts as a transport only if it is installed (``localhost:5000/x`` is a name).
    """
    if "://" in ref:
        name, _, rest = ref.partition("://")
        if name == "docker":
            return name, rest
    name, sep, rest = ref.partition(":")
    if sep and name and "/" not in name and name in transport_names():
        if name == "docker":
            if not rest.startswith("//"):
                raise InvalidArgument(f"invalid reference {ref!r}: the docker transport needs docker://")
            rest = rest[2:]
        return name, rest
    return None, ref


def parse_image_reference(ref: str, config: Any = None) -> ImageReference:
    """Parse ``TRANSPORT:REF``; raises InvalidArgument naming the input."""
    name, rest = split_transport(ref)
    if name is None:
        raise InvalidArgument(f"invalid image reference {ref!r}: no transport (expected e.g. docker://, oci:, dir:)")
    return get_transport(name, config).parse_reference(rest)
