"""Image manifests, indexes and configs: OCI image-spec v1 and Docker v2 schema 2.

Parsing is strict and keeps the bytes it was given: a manifest's digest is always computed on
those raw bytes, never on a re-serialisation.  Building produces compact JSON with a fixed key
order, so the same inputs always give the same bytes (and digest).

Errors are :class:`~libpod_core.errors.ImageError` with a message saying what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from typing import Any, Iterable, Mapping, Sequence

from libpod_core.errors import ImageError, InvalidArgument
from .lazyre import lazy
from libpod_core.reference import digest_bytes, split_digest

__all__ = [
    # media types
    "MEDIA_TYPE_OCI_MANIFEST",
    "MEDIA_TYPE_OCI_INDEX",
    "MEDIA_TYPE_OCI_CONFIG",
    "MEDIA_TYPE_OCI_LAYER",
    "MEDIA_TYPE_OCI_LAYER_GZIP",
    "MEDIA_TYPE_OCI_LAYER_ZSTD",
    "MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE",
    "MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE_GZIP",
    "MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE_ZSTD",
    "MEDIA_TYPE_OCI_EMPTY",
    "MEDIA_TYPE_DOCKER_MANIFEST",
    "MEDIA_TYPE_DOCKER_MANIFEST_LIST",
    "MEDIA_TYPE_DOCKER_CONFIG",
    "MEDIA_TYPE_DOCKER_LAYER",
    "MEDIA_TYPE_DOCKER_LAYER_GZIP",
    "MEDIA_TYPE_DOCKER_FOREIGN_LAYER",
    "MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP",
    "MEDIA_TYPE_DOCKER_SCHEMA1",
    "MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED",
    "MANIFEST_MEDIA_TYPES",
    "INDEX_MEDIA_TYPES",
    "LAYER_MEDIA_TYPES",
    "MAX_MANIFEST_SIZE",
    "MAX_CONFIG_SIZE",
    "FORMAT_OCI",
    "FORMAT_V2S2",
    # types
    "Platform",
    "Descriptor",
    "Manifest",
    "Index",
    # functions
    "parse_manifest",
    "parse_descriptor",
    "manifest_digest",
    "descriptor_for",
    "build_manifest",
    "build_index",
    "convert_manifest",
    "convert_layer_media_type",
    "convert_config_media_type",
    "layer_media_type",
    "layer_compression",
    "is_layer_media_type",
    "is_foreign_layer",
    "parse_image_config",
    "make_image_config",
    "config_bytes",
    "history_matches_layers",
    "format_rfc3339",
    "normalize_platform",
    "host_platform",
]

# ---------------------------------------------------------------------------------------------
# Media types

MEDIA_TYPE_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPE_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar"
MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE_GZIP = (
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
)
MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE_ZSTD = (
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
)
MEDIA_TYPE_OCI_EMPTY = "application/vnd.oci.empty.v1+json"

MEDIA_TYPE_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_TYPE_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_TYPE_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MEDIA_TYPE_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MEDIA_TYPE_DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar"
MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
MEDIA_TYPE_DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

FORMAT_OCI = "oci"
FORMAT_V2S2 = "v2s2"
_FORMATS = (FORMAT_OCI, FORMAT_V2S2)

MANIFEST_MEDIA_TYPES = frozenset({MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST})
INDEX_MEDIA_TYPES = frozenset({MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_DOCKER_MANIFEST_LIST})
_SCHEMA1_MEDIA_TYPES = frozenset({MEDIA_TYPE_DOCKER_SCHEMA1, MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED})

# (format, compression, foreign) <-> media type
_LAYER_TYPES: dict[tuple[str, str, bool], str] = {
    (FORMAT_OCI, "none", False): MEDIA_TYPE_OCI_LAYER,
    (FORMAT_OCI, "gzip", False): MEDIA_TYPE_OCI_LAYER_GZIP,
    (FORMAT_OCI, "zstd", False): MEDIA_TYPE_OCI_LAYER_ZSTD,
    (FORMAT_OCI, "none", True): MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE,
    (FORMAT_OCI, "gzip", True): MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE_GZIP,
    (FORMAT_OCI, "zstd", True): MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE_ZSTD,
    (FORMAT_V2S2, "none", False): MEDIA_TYPE_DOCKER_LAYER,
    (FORMAT_V2S2, "gzip", False): MEDIA_TYPE_DOCKER_LAYER_GZIP,
    (FORMAT_V2S2, "none", True): MEDIA_TYPE_DOCKER_FOREIGN_LAYER,
    (FORMAT_V2S2, "gzip", True): MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP,
}
_LAYER_INFO: dict[str, tuple[str, str, bool]] = {v: k for k, v in _LAYER_TYPES.items()}
LAYER_MEDIA_TYPES = frozenset(_LAYER_INFO)
COMPRESSIONS = ("none", "gzip", "zstd")

MAX_MANIFEST_SIZE = 4 * 1024 * 1024
MAX_CONFIG_SIZE = 4 * 1024 * 1024

# RFC 6838 media type syntax, as the OCI descriptor spec requires it.
_MEDIA_TYPE_RE = lazy(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}", re.ASCII
)

# ---------------------------------------------------------------------------------------------
# JSON helpers


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f'duplicate key {_q(key)}')
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON number {name}")


def _load_json(raw: bytes, what: str, limit: int) -> dict[str, Any]:
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be bytes, not {type(raw).__name__}")
    if len(raw) > limit:
        raise ImageError(f"{what} is too large: {len(raw)} bytes, the limit is {limit}")
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ImageError(f"{what} is not valid UTF-8: {exc}") from None
    if text.startswith("\ufeff"):
        raise ImageError(f"{what} starts with a byte order mark")
    try:
        data = json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except (ValueError, RecursionError) as exc:
        raise ImageError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ImageError(f"{what} must be a JSON object, got {_json_type(data)}")
    return data


def _q(value: Any, limit: int = 100) -> str:
    """*value* quoted for an error message: control characters escaped, long text cut."""
    text = value if isinstance(value, str) else str(value)
    cut = len(text) > limit
    text = text[:limit]
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return f'"{text}..."' if cut else f'"{text}"'


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _string_map(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ImageError(f"{where} must be an object of strings, got {_json_type(value)}")
    for k, v in value.items():
        if not isinstance(v, str):
            raise ImageError(f'{where}[{_q(k)}] must be a string, got {_json_type(v)}')
    return dict(value)


def _string_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list):
        raise ImageError(f"{where} must be an array of strings, got {_json_type(value)}")
    for i, v in enumerate(value):
        if not isinstance(v, str):
            raise ImageError(f"{where}[{i}] must be a string, got {_json_type(v)}")
    return list(value)


def _check_media_type(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ImageError(f"{where} must be a string, got {_json_type(value)}")
    if not _MEDIA_TYPE_RE.fullmatch(value):
        raise ImageError(f'{where} {_q(value)} is not a valid media type')
    return value


def _check_digest(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ImageError(f"{where} must be a string, got {_json_type(value)}")
    try:
        split_digest(value)
    except InvalidArgument as exc:
        raise ImageError(f"{where}: {exc.message}") from None
    return value


def _strip_params(media_type: str | None) -> str | None:
    if media_type is None:
        return None
    return media_type.split(";", 1)[0].strip().lower() or None


# ---------------------------------------------------------------------------------------------
# Platforms

# Python's platform.machine() (and common aliases) -> (GOARCH, variant)
_MACHINE_ARCH: dict[str, tuple[str, str | None]] = {
    "x86_64": ("amd64", None),
    "amd64": ("amd64", None),
    "x64": ("amd64", None),
    "i386": ("386", None),
    "i486": ("386", None),
    "i586": ("386", None),
    "i686": ("386", None),
    "x86": ("386", None),
    "386": ("386", None),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv8b": ("arm64", "v8"),
    "aarch64_be": ("arm64", "v8"),
    "armv8l": ("arm", "v8"),
    "armv7l": ("arm", "v7"),
    "armv7": ("arm", "v7"),
    "armhf": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armv6": ("arm", "v6"),
    "armel": ("arm", "v6"),
    "armv5l": ("arm", "v5"),
    "armv5tel": ("arm", "v5"),
    "armv5tejl": ("arm", "v5"),
    "arm": ("arm", None),
    "ppc64le": ("ppc64le", None),
    "ppc64": ("ppc64", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
    "mips": ("mips", None),
    "mipsel": ("mipsle", None),
    "mips64": ("mips64", None),
    "mips64el": ("mips64le", None),
    "loongarch64": ("loong64", None),
}

# Variants an architecture's CPU can run, most capable first.
_VARIANT_COMPATIBILITY: dict[str, list[str]] = {
    "arm": ["v8", "v7", "v6", "v5"],
    "arm64": ["v8"],
}
# The variant assumed when none is asked for.
_DEFAULT_VARIANT: dict[str, str] = {"arm": "v7", "arm64": "v8"}


@dataclass(frozen=True)
class Platform:
    """An OCI platform: os, architecture (GOARCH names) and optional variant."""

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] = ()
    features: tuple[str, ...] = ()

    def __str__(self) -> str:
        s = f"{self.os}/{self.architecture}"
        return f"{s}/{self.variant}" if self.variant else s

    @classmethod
    def parse(cls, spec: str) -> Platform:
        """Parse ``os/arch[/variant]`` (as ``--platform`` takes it), normalising aliases."""
        parts = spec.split("/") if isinstance(spec, str) else []
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidArgument(f'invalid platform {_q(spec)}: expected os/arch[/variant]')
        os_, arch, variant = normalize_platform(
            parts[0], parts[1], parts[2] if len(parts) == 3 else None
        )
        return cls(os_, arch, variant)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            d["os.version"] = self.os_version
        if self.os_features:
            d["os.features"] = list(self.os_features)
        if self.variant:
            d["variant"] = self.variant
        if self.features:
            d["features"] = list(self.features)
        return d


def normalize_platform(
    os: str, arch: str, variant: str | None = None
) -> tuple[str, str, str | None]:
    """Map aliases to Go's names: ``x86_64`` -> ``amd64``, ``aarch64`` -> ``arm64``,
    ``armhf`` -> ``arm``/``v7``, ``macos`` -> ``darwin``; ``8`` -> ``v8``.

    An alias that implies a 32-bit arm variant supplies it when none is given; arm64 never
    gets an implied variant (an arm64 entry without one counts as v8 anyway).  An empty
    variant is ``None``.
    """
    os_ = os.strip().lower()
    if os_ in ("macos", "osx"):
        os_ = "darwin"
    key = arch.strip().lower()
    mapped, implied = _MACHINE_ARCH.get(key, (key, None))
    if mapped == "arm64":
        implied = None
    v = (variant or "").strip().lower() or implied
    if v and v.isdigit():
        v = f"v{v}"
    return os_, mapped, v or None


def host_platform() -> Platform:
    """The platform kpod runs on, in Go's names (``linux/amd64``, ``linux/arm/v7``...)."""
    uname = os.uname()  # platform.system()/machine(), without importing platform
    system = uname.sysname.lower() or "linux"
    machine = uname.machine.lower()
    arch, variant = _MACHINE_ARCH.get(machine, (machine or "unknown", None))
    return Platform(system, arch, variant)


def _parse_platform(value: Any, where: str) -> Platform:
    if not isinstance(value, dict):
        raise ImageError(f"{where} must be an object, got {_json_type(value)}")
    for key in ("architecture", "os"):
        if key not in value:
            raise ImageError(f'{where} has no {_q(key)}')
        if not isinstance(value[key], str):
            raise ImageError(f"{where}.{key} must be a string, got {_json_type(value[key])}")
    for key in ("variant", "os.version"):
        if key in value and not isinstance(value[key], str):
            raise ImageError(f"{where}.{key} must be a string, got {_json_type(value[key])}")
    os_features: list[str] = []
    if value.get("os.features") is not None:
        os_features = _string_list(value["os.features"], f"{where}.os.features")
    features: list[str] = []
    if value.get("features") is not None:
        features = _string_list(value["features"], f"{where}.features")
    return Platform(
        os=value["os"],
        architecture=value["architecture"],
        variant=value.get("variant") or None,
        os_version=value.get("os.version") or None,
        os_features=tuple(os_features),
        features=tuple(features),
    )


# ---------------------------------------------------------------------------------------------
# Descriptors


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor: what a blob is (media type), its digest and size, plus extras."""

    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    artifact_type: str | None = None
    data: bytes | None = None

    def __hash__(self) -> int:
        return hash((self.media_type, self.digest, self.size))

    def to_dict(self, fmt: str = FORMAT_OCI) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type}
        if fmt == FORMAT_V2S2:  # Docker's own key order
            d.update(size=self.size, digest=self.digest)
        else:
            d.update(digest=self.digest, size=self.size)
        if self.urls:
            d["urls"] = list(self.urls)
        if self.annotations:
            d["annotations"] = dict(sorted(self.annotations.items()))
        if self.data is not None and fmt == FORMAT_OCI:
            d["data"] = base64.b64encode(self.data).decode("ascii")
        if self.platform is not None:
            d["platform"] = self.platform.to_dict()
        if self.artifact_type and fmt == FORMAT_OCI:
            d["artifactType"] = self.artifact_type
        return d


def parse_descriptor(value: Any, where: str = "descriptor") -> Descriptor:
    """Validate one descriptor object (already decoded JSON) and return it."""
    if not isinstance(value, dict):
        raise ImageError(f"{where} must be an object, got {_json_type(value)}")
    if "mediaType" not in value:
        raise ImageError(f'{where} has no "mediaType"')
    media_type = _check_media_type(value["mediaType"], f"{where}.mediaType")
    if "digest" not in value:
        raise ImageError(f'{where} has no "digest"')
    digest = _check_digest(value["digest"], f"{where}.digest")
    if "size" not in value:
        raise ImageError(f'{where} has no "size"')
    size = value["size"]
    if not _is_int(size):
        raise ImageError(f"{where}.size must be an integer, got {_json_type(size)}")
    if size < 0:
        raise ImageError(f"{where}.size must not be negative, got {size}")
    urls: list[str] = []
    if value.get("urls") is not None:
        urls = _string_list(value["urls"], f"{where}.urls")
        for u in urls:
            if not (u.startswith("https://") or u.startswith("http://")):
                raise ImageError(f'{where}.urls: {_q(u)} is not an http(s) URL')
    annotations: dict[str, str] = {}
    if value.get("annotations") is not None:
        annotations = _string_map(value["annotations"], f"{where}.annotations")
    platform = None
    if value.get("platform") is not None:
        platform = _parse_platform(value["platform"], f"{where}.platform")
    artifact_type = None
    if value.get("artifactType") is not None:
        artifact_type = _check_media_type(value["artifactType"], f"{where}.artifactType")
    data = None
    if value.get("data") is not None:
        if not isinstance(value["data"], str):
            raise ImageError(f"{where}.data must be a base64 string")
        try:
            data = base64.b64decode(value["data"], validate=True)
        except (binascii.Error, ValueError):
            raise ImageError(f"{where}.data is not valid base64") from None
        if len(data) != size or digest_bytes(data, split_digest(digest)[0]) != digest:
            raise ImageError(f"{where}.data does not match its size and digest")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        urls=tuple(urls),
        annotations=annotations,
        platform=platform,
        artifact_type=artifact_type,
        data=data,
    )


def descriptor_for(
    data: bytes,
    media_type: str,
    *,
    annotations: Mapping[str, str] | None = None,
    platform: Platform | None = None,
) -> Descriptor:
    """A descriptor for *data* (its sha256 digest and its length)."""
    _check_media_type(media_type, "media type")
    return Descriptor(
        media_type=media_type,
        digest=digest_bytes(bytes(data)),
        size=len(data),
        annotations=dict(annotations or {}),
        platform=platform,
    )


def manifest_digest(raw: bytes) -> str:
    """The digest of a manifest: sha256 of its exact bytes."""
    return digest_bytes(bytes(raw))


# ---------------------------------------------------------------------------------------------
# Manifest and index


@dataclass(frozen=True, eq=False)
class Manifest:
    """An image manifest (OCI or Docker v2s2) with the exact bytes it was parsed from."""

    media_type: str
    config: Descriptor
    layers: list[Descriptor]
    annotations: dict[str, str]
    raw: bytes
    subject: Descriptor | None = None
    artifact_type: str | None = None

    @cached_property
    def digest(self) -> str:
        return manifest_digest(self.raw)

    @property
    def format(self) -> str:
        return FORMAT_V2S2 if self.media_type == MEDIA_TYPE_DOCKER_MANIFEST else FORMAT_OCI

    @property
    def size(self) -> int:
        return len(self.raw)

    def descriptor(self, platform: Platform | None = None) -> Descriptor:
        """A descriptor pointing at this manifest."""
        return Descriptor(self.media_type, self.digest, len(self.raw), platform=platform)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Manifest) and self.raw == other.raw

    def __hash__(self) -> int:
        return hash(self.raw)


@dataclass(frozen=True, eq=False)
class Index:
    """An image index (OCI) or manifest list (Docker) with its exact bytes."""

    media_type: str
    manifests: list[Descriptor]
    annotations: dict[str, str]
    raw: bytes
    subject: Descriptor | None = None
    artifact_type: str | None = None

    @cached_property
    def digest(self) -> str:
        return manifest_digest(self.raw)

    @property
    def format(self) -> str:
        return FORMAT_V2S2 if self.media_type == MEDIA_TYPE_DOCKER_MANIFEST_LIST else FORMAT_OCI

    @property
    def size(self) -> int:
        return len(self.raw)

    def platforms(self) -> list[str]:
        """``os/arch[/variant]`` of each entry that declares a platform, in order."""
        return [str(d.platform) for d in self.manifests if d.platform is not None]

    def choose(
        self, os: str = "linux", arch: str = "amd64", variant: str | None = None
    ) -> Descriptor:
        """Pick the entry for a platform, the way containers/image does.

        The OS and architecture must match exactly (after alias normalisation).  Variants are
        tried from the one asked for down to the older ones the CPU also runs (arm: v8, v7, v6,
        v5), then an entry declaring no variant.  Without a variant, arm prefers v7 and arm64
        v8 (an arm64 entry without a variant counts as v8); if nothing preferred matches, the
        first entry for the OS and architecture is taken.
        """
        want_os, want_arch, want_variant = normalize_platform(os, arch, variant)
        candidates = [
            d
            for d in self.manifests
            if d.platform is not None
            and d.platform.os.lower() == want_os
            and d.platform.architecture.lower() == want_arch
        ]
        if candidates:
            for v in _variant_order(want_arch, want_variant):
                for d in candidates:
                    if _entry_variant(want_arch, d) == v:
                        return d
            if want_variant is None:
                return candidates[0]
        names = [_q(p, 60)[1:-1] for p in self.platforms()]
        if len(names) > 20:
            names = names[:20] + [f"and {len(names) - 20} more"]
        available = ", ".join(names) or "none"
        raise ImageError(
            f'no image found in manifest list for architecture {_q(want_arch)}, variant '
            f'{_q(want_variant or "")}, OS {_q(want_os)}; available platforms: {available}'
        )


def _entry_variant(arch: str, d: Descriptor) -> str:
    v = (d.platform.variant or "").lower() if d.platform else ""
    if arch == "arm64" and v == "":
        return "v8"
    return v


def _variant_order(arch: str, variant: str | None) -> list[str]:
    compat = _VARIANT_COMPATIBILITY.get(arch)
    wanted = variant if variant is not None else _DEFAULT_VARIANT.get(arch)
    if wanted is None:
        return [""]
    if compat and wanted in compat:
        order = compat[compat.index(wanted) :]
    else:
        order = [wanted]
    return order + [""]


def _check_unambiguous(data: dict[str, Any], kind: str) -> None:
    # Refuse documents that carry fields of another kind (containers/image does the same), so
    # no two readers can disagree about what a blob is.
    if kind == "manifest" and "manifests" in data:
        raise ImageError('manifest has a "manifests" field: it is ambiguous with an index')
    if kind == "index" and ("config" in data or "layers" in data):
        raise ImageError('index has a "config" or "layers" field: it is ambiguous with a manifest')


def _parse_annotations(data: dict[str, Any], where: str) -> dict[str, str]:
    if data.get("annotations") is None:
        return {}
    return _string_map(data["annotations"], f"{where}.annotations")


def parse_manifest(raw: bytes, media_type: str | None = None) -> Manifest | Index:
    """Parse and validate a manifest or an index from its exact bytes.

    *media_type* is the type the bytes came with (a registry's Content-Type, a layout's
    descriptor); parameters such as ``; charset=utf-8`` are ignored, and generic types
    (``application/json``...) are treated as unknown.  The type is taken from the document's
    own ``mediaType`` field, else from *media_type*, else from the shape (``manifests`` means
    an OCI index; ``layers``/``config`` a manifest: Docker v2s2 if the config is a Docker
    config, else OCI).  Schema 1 is refused.
    """
    data = _load_json(raw, "manifest", MAX_MANIFEST_SIZE)
    declared = data.get("mediaType")
    hint = _strip_params(media_type)
    if declared is not None and not isinstance(declared, str):
        raise ImageError(f"manifest mediaType must be a string, got {_json_type(declared)}")
    schema = data.get("schemaVersion")
    if (
        (_is_int(schema) and schema == 1)
        or declared in _SCHEMA1_MEDIA_TYPES
        or hint in _SCHEMA1_MEDIA_TYPES
        or "fsLayers" in data
        or "signatures" in data
    ):
        raise ImageError("schema 1 manifests are not supported")
    if "schemaVersion" not in data:
        raise ImageError('manifest has no "schemaVersion"')
    if not _is_int(schema) or schema != 2:
        shown = _q(json.dumps(schema))[1:-1]
        raise ImageError(f"unsupported manifest schemaVersion {shown}, expected 2")

    known = MANIFEST_MEDIA_TYPES | INDEX_MEDIA_TYPES
    if hint is not None and hint not in known:
        hint = None  # application/json, application/octet-stream, ...: say nothing
    if declared is not None:
        if declared not in known:
            raise ImageError(f'unsupported manifest media type {_q(declared)}')
        if hint is not None and hint != declared:
            raise ImageError(
                f'manifest media type mismatch: the document says {_q(declared)}, '
                f'it was served as {_q(hint)}'
            )
        kind = declared
    elif hint is not None:
        kind = hint
    elif "manifests" in data:
        kind = MEDIA_TYPE_OCI_INDEX
    elif "layers" in data or "config" in data:
        config = data.get("config")
        docker = isinstance(config, dict) and config.get("mediaType") == MEDIA_TYPE_DOCKER_CONFIG
        kind = MEDIA_TYPE_DOCKER_MANIFEST if docker else MEDIA_TYPE_OCI_MANIFEST
    else:
        raise ImageError('cannot tell the manifest type: no "mediaType", "manifests" or "layers"')

    raw_bytes = bytes(raw)
    if kind in INDEX_MEDIA_TYPES:
        return _parse_index(data, kind, raw_bytes)
    return _parse_image_manifest(data, kind, raw_bytes)


def _parse_subject(
    data: dict[str, Any], kind: str, where: str
) -> tuple[Descriptor | None, str | None]:
    subject = artifact_type = None
    if data.get("subject") is not None:
        subject = parse_descriptor(data["subject"], f"{where}.subject")
    if data.get("artifactType") is not None:
        artifact_type = _check_media_type(data["artifactType"], f"{where}.artifactType")
    if kind in (MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST_LIST) and (
        subject or artifact_type
    ):
        raise ImageError(f"{where}: subject and artifactType are OCI-only fields")
    return subject, artifact_type


def _parse_image_manifest(data: dict[str, Any], kind: str, raw: bytes) -> Manifest:
    _check_unambiguous(data, "manifest")
    if "config" not in data:
        raise ImageError('manifest has no "config"')
    config = parse_descriptor(data["config"], "manifest config")
    if "layers" not in data or data["layers"] is None:
        raise ImageError('manifest has no "layers"')
    if not isinstance(data["layers"], list):
        raise ImageError(f"manifest layers must be an array, got {_json_type(data['layers'])}")
    layers = [parse_descriptor(d, f"manifest layer {i}") for i, d in enumerate(data["layers"])]
    if kind == MEDIA_TYPE_DOCKER_MANIFEST:
        if config.media_type != MEDIA_TYPE_DOCKER_CONFIG:
            raise ImageError(
                f'Docker v2s2 manifest config has media type {_q(config.media_type)}, '
                f'expected {_q(MEDIA_TYPE_DOCKER_CONFIG)}'
            )
        for i, layer in enumerate(layers):
            info = _LAYER_INFO.get(layer.media_type)
            if info is None or info[0] != FORMAT_V2S2:
                raise ImageError(
                    f"Docker v2s2 manifest layer {i} has unsupported media type "
                    f"{_q(layer.media_type)}"
                )
    annotations = _parse_annotations(data, "manifest")
    subject, artifact_type = _parse_subject(data, kind, "manifest")
    return Manifest(kind, config, layers, annotations, raw, subject, artifact_type)


def _parse_index(data: dict[str, Any], kind: str, raw: bytes) -> Index:
    _check_unambiguous(data, "index")
    if "manifests" not in data or data["manifests"] is None:
        raise ImageError('index has no "manifests"')
    if not isinstance(data["manifests"], list):
        raise ImageError(f"index manifests must be an array, got {_json_type(data['manifests'])}")
    entries = [parse_descriptor(d, f"index entry {i}") for i, d in enumerate(data["manifests"])]
    annotations = _parse_annotations(data, "index")
    subject, artifact_type = _parse_subject(data, kind, "index")
    return Index(kind, entries, annotations, raw, subject, artifact_type)


# ---------------------------------------------------------------------------------------------
# Media type conversion


def _check_format(fmt: str) -> str:
    if fmt not in _FORMATS:
        raise InvalidArgument(f'unknown manifest format {_q(fmt)} (use "oci" or "v2s2")')
    return fmt


def is_layer_media_type(media_type: str) -> bool:
    return media_type in _LAYER_INFO


def is_foreign_layer(media_type: str) -> bool:
    """True for Docker foreign and OCI non-distributable layers (not pushed to registries)."""
    info = _LAYER_INFO.get(media_type)
    return bool(info and info[2])


def layer_compression(media_type: str) -> str:
    """``"none"``, ``"gzip"`` or ``"zstd"`` for a known layer media type, else ImageError."""
    info = _LAYER_INFO.get(media_type)
    if info is None:
        raise ImageError(f'{_q(media_type)} is not a known layer media type')
    return info[1]


def layer_media_type(fmt: str, compression: str = "gzip", *, foreign: bool = False) -> str:
    """The layer media type of *fmt* for *compression* (``none``, ``gzip``, ``zstd``)."""
    _check_format(fmt)
    if compression not in COMPRESSIONS:
        raise InvalidArgument(f'unknown compression {_q(compression)} (use none, gzip or zstd)')
    mt = _LAYER_TYPES.get((fmt, compression, foreign))
    if mt is None:
        raise ImageError(
            f"{compression}-compressed layers cannot be used in a Docker v2s2 manifest"
        )
    return mt


def convert_layer_media_type(media_type: str, fmt: str, compression: str | None = None) -> str:
    """Map a layer media type to *fmt*, keeping its compression unless *compression* is given.

    zstd has no Docker v2s2 media type: converting a zstd layer to v2s2 is an ImageError.
    """
    _check_format(fmt)
    info = _LAYER_INFO.get(media_type)
    if info is None:
        raise ImageError(f'cannot convert unknown layer media type {_q(media_type)}')
    _, current, foreign = info
    return layer_media_type(fmt, compression or current, foreign=foreign)


def convert_config_media_type(media_type: str, fmt: str) -> str:
    _check_format(fmt)
    if media_type in (MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_DOCKER_CONFIG):
        return MEDIA_TYPE_DOCKER_CONFIG if fmt == FORMAT_V2S2 else MEDIA_TYPE_OCI_CONFIG
    if fmt == FORMAT_OCI:
        return media_type  # an OCI artifact keeps its own config type
    raise ImageError(
        f"config media type {_q(media_type)} cannot be stored in a Docker v2s2 manifest"
    )


def _convert_descriptor(d: Descriptor, media_type: str, fmt: str) -> Descriptor:
    return Descriptor(
        media_type=media_type,
        digest=d.digest,
        size=d.size,
        urls=d.urls,
        annotations=d.annotations,
        platform=None,
        artifact_type=d.artifact_type if fmt == FORMAT_OCI else None,
        data=d.data if fmt == FORMAT_OCI else None,
    )


def build_manifest(
    config: Descriptor,
    layers: Sequence[Descriptor],
    fmt: str = FORMAT_OCI,
    *,
    annotations: Mapping[str, str] | None = None,
    compression: str | None = None,
) -> bytes:
    """Serialise a manifest of *fmt* (``"oci"`` or ``"v2s2"``) as compact JSON bytes.

    The config's and layers' media types are converted to *fmt*; *compression* (when the
    caller recompresses) sets every layer's compression.  Annotations are OCI-only and are
    dropped for v2s2.  The result parses back with :func:`parse_manifest`.
    """
    _check_format(fmt)
    cfg = _convert_descriptor(config, convert_config_media_type(config.media_type, fmt), fmt)
    out_layers = [
        _convert_descriptor(l, convert_layer_media_type(l.media_type, fmt, compression), fmt)
        if l.media_type in _LAYER_INFO or fmt == FORMAT_V2S2
        else l  # an OCI artifact's custom layer type stays as it is
        for l in layers
    ]
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_DOCKER_MANIFEST if fmt == FORMAT_V2S2 else MEDIA_TYPE_OCI_MANIFEST,
        "config": cfg.to_dict(fmt),
        "layers": [l.to_dict(fmt) for l in out_layers],
    }
    if annotations and fmt == FORMAT_OCI:
        doc["annotations"] = dict(sorted(_string_map(dict(annotations), "annotations").items()))
    return _dumps(doc)


def build_index(
    manifests: Iterable[Descriptor],
    fmt: str = FORMAT_OCI,
    *,
    annotations: Mapping[str, str] | None = None,
) -> bytes:
    """Serialise an OCI index or a Docker manifest list as compact JSON bytes."""
    _check_format(fmt)
    entries = []
    for d in manifests:
        mt = d.media_type
        if fmt == FORMAT_V2S2:
            if mt == MEDIA_TYPE_OCI_MANIFEST:
                mt = MEDIA_TYPE_DOCKER_MANIFEST
            elif mt == MEDIA_TYPE_OCI_INDEX:
                mt = MEDIA_TYPE_DOCKER_MANIFEST_LIST
        entry = Descriptor(mt, d.digest, d.size, d.urls, d.annotations, d.platform,
                           d.artifact_type if fmt == FORMAT_OCI else None)
        entries.append(entry.to_dict(fmt))
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": (
            MEDIA_TYPE_DOCKER_MANIFEST_LIST if fmt == FORMAT_V2S2 else MEDIA_TYPE_OCI_INDEX
        ),
        "manifests": entries,
    }
    if annotations and fmt == FORMAT_OCI:
        doc["annotations"] = dict(sorted(_string_map(dict(annotations), "annotations").items()))
    return _dumps(doc)


def convert_manifest(manifest: Manifest, fmt: str, *, compression: str | None = None) -> bytes:
    """Re-express *manifest* in *fmt*.  Blobs are not touched: only media types change.

    Converting to v2s2 fails for zstd layers, OCI artifacts (non-image config) and manifests
    with a subject.
    """
    _check_format(fmt)
    if fmt == FORMAT_V2S2 and (manifest.subject is not None or manifest.artifact_type):
        raise ImageError(
            "a manifest with a subject or artifactType cannot be converted to Docker v2s2"
        )
    return build_manifest(
        manifest.config,
        manifest.layers,
        fmt,
        annotations=manifest.annotations,
        compression=compression,
    )


# ---------------------------------------------------------------------------------------------
# Image config


def format_rfc3339(when: datetime | None = None) -> str:
    """``2024-05-01T12:00:00.5Z``: UTC, RFC 3339 with ``Z``, fraction without trailing zeros."""
    if when is None:
        when = datetime.now(timezone.utc)
    elif when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    when = when.astimezone(timezone.utc)
    s = when.strftime("%Y-%m-%dT%H:%M:%S")
    if when.microsecond:
        s += f".{when.microsecond:06d}".rstrip("0")
    return s + "Z"


_RFC3339_RE = lazy(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})", re.ASCII
)

# key in "config" -> accepted JSON types (None = null allowed)
_CONTAINER_CONFIG_FIELDS: dict[str, str] = {
    "User": "str",
    "WorkingDir": "str",
    "StopSignal": "str",
    "Env": "strlist",
    "Cmd": "strlist",
    "Entrypoint": "strlist",
    "Shell": "strlist",
    "OnBuild": "strlist",
    "ExposedPorts": "set",
    "Volumes": "set",
    "Labels": "strmap",
    "ArgsEscaped": "bool",
    "Healthcheck": "object",
}

_EXPOSED_PORT_RE = lazy(r"[0-9]{1,5}(?:-[0-9]{1,5})?(?:/(?:tcp|udp|sctp))?", re.ASCII)


def _check_container_config(cfg: Any) -> None:
    if cfg is None:
        return
    if not isinstance(cfg, dict):
        raise ImageError(f"image config: config must be an object, got {_json_type(cfg)}")
    for key, kind in _CONTAINER_CONFIG_FIELDS.items():
        if key not in cfg or cfg[key] is None:
            continue
        value, where = cfg[key], f"image config: config.{key}"
        if kind == "str" and not isinstance(value, str):
            raise ImageError(f"{where} must be a string, got {_json_type(value)}")
        if kind == "bool" and not isinstance(value, bool):
            raise ImageError(f"{where} must be a boolean, got {_json_type(value)}")
        if kind == "object" and not isinstance(value, dict):
            raise ImageError(f"{where} must be an object, got {_json_type(value)}")
        if kind == "strlist":
            _string_list(value, where)
        if kind == "strmap":
            _string_map(value, where)
        if kind == "set":
            if not isinstance(value, dict):
                raise ImageError(f"{where} must be an object, got {_json_type(value)}")
            for k, v in value.items():
                if not isinstance(v, dict):
                    raise ImageError(f'{where}[{_q(k)}] must be an object, got {_json_type(v)}')
                if key == "ExposedPorts" and not _EXPOSED_PORT_RE.fullmatch(k):
                    raise ImageError(f'{where}: {_q(k)} is not a port (PORT[/tcp|udp|sctp])')


def parse_image_config(raw: bytes) -> dict[str, Any]:
    """Validate an image config blob (OCI or Docker) and return it as a dict.

    Checks the size limit, the JSON, ``architecture``/``os`` (strings), ``rootfs`` (type
    ``layers`` and valid ``diff_ids``), the container ``config`` fields kpod uses, and
    ``history``.  Unknown keys are kept untouched.
    """
    data = _load_json(raw, "image config", MAX_CONFIG_SIZE)
    for key in ("architecture", "os"):
        if key not in data:
            raise ImageError(f'image config has no {_q(key)}')
        if not isinstance(data[key], str) or not data[key]:
            raise ImageError(f"image config: {key} must be a non-empty string")
    for key in ("variant", "os.version", "author", "created"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise ImageError(f"image config: {key} must be a string, got {_json_type(data[key])}")
    if data.get("created") and not _RFC3339_RE.fullmatch(data["created"]):
        raise ImageError(f'image config: created {_q(data["created"])} is not an RFC 3339 time')
    if data.get("os.features") is not None:
        _string_list(data["os.features"], "image config: os.features")
    _check_container_config(data.get("config"))

    rootfs = data.get("rootfs")
    if rootfs is None:
        raise ImageError('image config has no "rootfs"')
    if not isinstance(rootfs, dict):
        raise ImageError(f"image config: rootfs must be an object, got {_json_type(rootfs)}")
    if rootfs.get("type") != "layers":
        got = _q(json.dumps(rootfs.get("type")))[1:-1]
        raise ImageError(f'image config: rootfs.type must be "layers", got {got}')
    diff_ids = rootfs.get("diff_ids")
    if diff_ids is None:
        diff_ids = []
    if not isinstance(diff_ids, list):
        raise ImageError(
            f"image config: rootfs.diff_ids must be an array, got {_json_type(diff_ids)}"
        )
    for i, d in enumerate(diff_ids):
        _check_digest(d, f"image config: rootfs.diff_ids[{i}]")

    history = data.get("history")
    if history is not None:
        if not isinstance(history, list):
            raise ImageError(f"image config: history must be an array, got {_json_type(history)}")
        for i, h in enumerate(history):
            where = f"image config: history[{i}]"
            if not isinstance(h, dict):
                raise ImageError(f"{where} must be an object, got {_json_type(h)}")
            for key in ("created", "created_by", "author", "comment"):
                if h.get(key) is not None and not isinstance(h[key], str):
                    raise ImageError(f"{where}.{key} must be a string, got {_json_type(h[key])}")
            if h.get("empty_layer") is not None and not isinstance(h["empty_layer"], bool):
                raise ImageError(f"{where}.empty_layer must be a boolean")
    return data


def history_matches_layers(config: Mapping[str, Any]) -> bool:
    """True if the config's non-empty history entries account for each diff_id one to one
    (or there is no history at all).  Many real images break this, so it is not enforced by
    :func:`parse_image_config`; builders that append history use it to decide whether they
    can."""
    history = config.get("history") or []
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    if not history:
        return True
    return sum(1 for h in history if not h.get("empty_layer")) == len(diff_ids)


def make_image_config(
    diff_ids: Sequence[str],
    *,
    base: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    architecture: str | None = None,
    os: str | None = None,
    variant: str | None = None,
    created: datetime | str | None = None,
    author: str | None = None,
    created_by: str | None = None,
    comment: str | None = None,
    add_history: bool = True,
) -> dict[str, Any]:
    """Build an image config for ``import`` (no *base*) or ``commit`` (*base* = the parent's).

    *diff_ids* are the layers this step adds (uncompressed digests); they are appended to the
    base's.  *config* replaces the container config (else the base's is kept).  Platform fields
    default to the base's, then to the host's.  One history entry is appended (marked
    ``empty_layer`` when no layer is added) unless *add_history* is false.
    """
    for i, d in enumerate(diff_ids):
        _check_digest(d, f"diff_ids[{i}]")
    base = dict(base or {})
    host = host_platform()
    when = created if isinstance(created, str) else format_rfc3339(created)
    if not _RFC3339_RE.fullmatch(when):
        raise InvalidArgument(f'created {_q(when)} is not an RFC 3339 time')

    out: dict[str, Any] = {"created": when}
    if author is not None:
        out["author"] = author
    elif base.get("author"):
        out["author"] = base["author"]
    out["architecture"] = architecture or base.get("architecture") or host.architecture
    out["os"] = os or base.get("os") or host.os
    v = variant if variant is not None else (
        base.get("variant") if (architecture is None or architecture == base.get("architecture"))
        else None
    )
    if v is None and architecture is None and os is None and not base:
        v = host.variant
    if v:
        out["variant"] = v
    container_config = dict(config) if config is not None else base.get("config")
    _check_container_config(container_config)
    if container_config is not None:
        out["config"] = dict(container_config)
    base_rootfs = base.get("rootfs") or {}
    out["rootfs"] = {
        "type": "layers",
        "diff_ids": list(base_rootfs.get("diff_ids") or []) + list(diff_ids),
    }
    history = [dict(h) for h in (base.get("history") or [])]
    if add_history:
        # One entry per added layer (the first carries the description), or one empty_layer
        # entry when the step adds no layer.
        step: dict[str, Any] = {"created": when}
        if created_by is not None:
            step["created_by"] = created_by
        if author is not None:
            step["author"] = author
        if comment is not None:
            step["comment"] = comment
        if not diff_ids:
            step["empty_layer"] = True
        history.append(step)
        history.extend({"created": when} for _ in range(1, len(diff_ids)))
    if history:
        out["history"] = history
    return out


def config_bytes(config: Mapping[str, Any]) -> bytes:
    """Serialise an image config as compact JSON (validated on the way out)."""
    raw = _dumps(dict(config))
    parse_image_config(raw)
    return raw
