from __future__ import annotations

import base64
import copy
import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest

from libpod_core import manifest as m
from libpod_core.errors import ImageError, InvalidArgument
from libpod_core.manifest import (
    MAX_CONFIG_SIZE,
    MAX_MANIFEST_SIZE,
    MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_DOCKER_FOREIGN_LAYER,
    MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP,
    MEDIA_TYPE_DOCKER_LAYER,
    MEDIA_TYPE_DOCKER_LAYER_GZIP,
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    MEDIA_TYPE_DOCKER_SCHEMA1,
    MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED,
    MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_LAYER,
    MEDIA_TYPE_OCI_LAYER_GZIP,
    MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE,
    MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE_GZIP,
    MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE_ZSTD,
    MEDIA_TYPE_OCI_LAYER_ZSTD,
    MEDIA_TYPE_OCI_MANIFEST,
    Descriptor,
    Index,
    Manifest,
    Platform,
    build_index,
    build_manifest,
    config_bytes,
    convert_config_media_type,
    convert_layer_media_type,
    convert_manifest,
    descriptor_for,
    format_rfc3339,
    history_matches_layers,
    host_platform,
    is_foreign_layer,
    is_layer_media_type,
    layer_compression,
    layer_media_type,
    make_image_config,
    normalize_platform,
    parse_descriptor,
    parse_image_config,
    parse_manifest,
)


def dg(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def desc(media_type: str, seed: str = "x", size: int = 10, **extra) -> dict:
    d = {"mediaType": media_type, "digest": dg(seed), "size": size}
    d.update(extra)
    return d


def oci_manifest(**over) -> dict:
    doc = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_OCI_MANIFEST,
        "config": desc(MEDIA_TYPE_OCI_CONFIG, "config", 100),
        "layers": [desc(MEDIA_TYPE_OCI_LAYER_GZIP, "l1", 1000), desc(MEDIA_TYPE_OCI_LAYER_GZIP, "l2", 2000)],
    }
    doc.update(over)
    return doc


def v2s2_manifest(**over) -> dict:
    doc = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_DOCKER_MANIFEST,
        "config": desc(MEDIA_TYPE_DOCKER_CONFIG, "config", 100),
        "layers": [desc(MEDIA_TYPE_DOCKER_LAYER_GZIP, "l1", 1000)],
    }
    doc.update(over)
    return doc


def plat(os_: str, arch: str, variant: str | None = None) -> dict:
    p = {"os": os_, "architecture": arch}
    if variant:
        p["variant"] = variant
    return p


def index_doc(platforms, media_type=MEDIA_TYPE_OCI_INDEX, entry_type=MEDIA_TYPE_OCI_MANIFEST) -> dict:
    entries = []
    for i, p in enumerate(platforms):
        e = desc(entry_type, f"m{i}", 500 + i)
        if p is not None:
            e["platform"] = p
        entries.append(e)
    return {"schemaVersion": 2, "mediaType": media_type, "manifests": entries}


def raw(doc) -> bytes:
    return json.dumps(doc).encode()


def without(doc: dict, key: str) -> dict:
    doc = copy.deepcopy(doc)
    del doc[key]
    return doc


# --------------------------------------------------------------------------- detection


DETECT = [
    # document, content type, expected class, expected media type
    (oci_manifest(), None, Manifest, MEDIA_TYPE_OCI_MANIFEST),
    (without(oci_manifest(), "mediaType"), None, Manifest, MEDIA_TYPE_OCI_MANIFEST),
    (v2s2_manifest(), None, Manifest, MEDIA_TYPE_DOCKER_MANIFEST),
    (v2s2_manifest(), MEDIA_TYPE_DOCKER_MANIFEST, Manifest, MEDIA_TYPE_DOCKER_MANIFEST),
    (without(v2s2_manifest(), "mediaType"), None, Manifest, MEDIA_TYPE_DOCKER_MANIFEST),
    (without(v2s2_manifest(), "mediaType"), MEDIA_TYPE_DOCKER_MANIFEST, Manifest, MEDIA_TYPE_DOCKER_MANIFEST),
    (
        without(v2s2_manifest(), "mediaType"),
        MEDIA_TYPE_DOCKER_MANIFEST + "; charset=utf-8",
        Manifest,
        MEDIA_TYPE_DOCKER_MANIFEST,
    ),
    (oci_manifest(), "application/json", Manifest, MEDIA_TYPE_OCI_MANIFEST),
    (without(oci_manifest(), "mediaType"), "application/octet-stream", Manifest, MEDIA_TYPE_OCI_MANIFEST),
    (index_doc([plat("linux", "amd64")]), None, Index, MEDIA_TYPE_OCI_INDEX),
    (without(index_doc([plat("linux", "amd64")]), "mediaType"), None, Index, MEDIA_TYPE_OCI_INDEX),
    (
        without(index_doc([plat("linux", "amd64")]), "mediaType"),
        MEDIA_TYPE_OCI_INDEX,
        Index,
        MEDIA_TYPE_OCI_INDEX,
    ),
    (
        index_doc([plat("linux", "amd64")], MEDIA_TYPE_DOCKER_MANIFEST_LIST, MEDIA_TYPE_DOCKER_MANIFEST),
        None,
        Index,
        MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    ),
    (index_doc([]), None, Index, MEDIA_TYPE_OCI_INDEX),
    (oci_manifest(layers=[]), None, Manifest, MEDIA_TYPE_OCI_MANIFEST),
]


@pytest.mark.parametrize("doc,ctype,cls,media_type", DETECT)
def test_detect(doc, ctype, cls, media_type):
    data = raw(doc)
    parsed = parse_manifest(data, ctype)
    assert type(parsed) is cls
    assert parsed.media_type == media_type
    assert parsed.raw == data
    assert parsed.digest == "sha256:" + hashlib.sha256(data).hexdigest()


def test_manifest_fields():
    doc = oci_manifest(annotations={"org.opencontainers.image.title": "x"})
    doc["layers"][0]["urls"] = ["https://example.com/blob"]
    doc["layers"][1]["annotations"] = {"a": "b"}
    man = parse_manifest(raw(doc))
    assert isinstance(man, Manifest)
    assert man.format == "oci"
    assert man.config == Descriptor(MEDIA_TYPE_OCI_CONFIG, dg("config"), 100)
    assert [l.digest for l in man.layers] == [dg("l1"), dg("l2")]
    assert [l.size for l in man.layers] == [1000, 2000]
    assert man.layers[0].urls == ("https://example.com/blob",)
    assert man.layers[1].annotations == {"a": "b"}
    assert man.annotations == {"org.opencontainers.image.title": "x"}
    assert man.size == len(man.raw)
    d = man.descriptor()
    assert (d.media_type, d.digest, d.size) == (MEDIA_TYPE_OCI_MANIFEST, man.digest, len(man.raw))


def test_digest_is_computed_on_raw_bytes():
    doc = oci_manifest()
    compact = json.dumps(doc, separators=(",", ":")).encode()
    pretty = json.dumps(doc, indent=3).encode() + b"\n"
    reordered = json.dumps(dict(reversed(list(doc.items())))).encode()
    parsed = [parse_manifest(b) for b in (compact, pretty, reordered)]
    assert [p.raw for p in parsed] == [compact, pretty, reordered]
    digests = {p.digest for p in parsed}
    assert len(digests) == 3
    for p, b in zip(parsed, (compact, pretty, reordered)):
        assert p.digest == m.manifest_digest(b) == "sha256:" + hashlib.sha256(b).hexdigest()
    # same content, different bytes: different objects
    assert parsed[0] != parsed[1]
    assert parsed[0] == parse_manifest(compact)


def test_bytes_like_accepted_str_refused():
    data = raw(oci_manifest())
    assert parse_manifest(bytearray(data)).raw == data
    assert parse_manifest(memoryview(data)).raw == data
    with pytest.raises(TypeError):
        parse_manifest(data.decode())  # type: ignore[arg-type]


# --------------------------------------------------------------------------- schema 1


@pytest.mark.parametrize(
    "doc,ctype",
    [
        ({"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": [], "history": []}, None),
        ({"schemaVersion": 1}, None),
        ({"schemaVersion": 2, "fsLayers": []}, None),
        ({"schemaVersion": 2, "mediaType": MEDIA_TYPE_DOCKER_SCHEMA1}, None),
        (oci_manifest(), MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED),
        ({"schemaVersion": 1, "signatures": []}, MEDIA_TYPE_DOCKER_SCHEMA1),
    ],
)
def test_schema1_refused(doc, ctype):
    with pytest.raises(ImageError, match="schema 1 manifests are not supported"):
        parse_manifest(raw(doc), ctype)


# --------------------------------------------------------------------------- validation errors


def _layer(**over):
    return oci_manifest(layers=[dict(desc(MEDIA_TYPE_OCI_LAYER_GZIP, "l1"), **over)])


def _drop_layer_key(key):
    doc = oci_manifest()
    del doc["layers"][0][key]
    return doc


INVALID_DOCS = [
    # raw bytes, content type, message fragment
    (b"", None, "not valid JSON"),
    (b"{", None, "not valid JSON"),
    (b"[]", None, "must be a JSON object"),
    (b'"x"', None, "must be a JSON object"),
    (b"null", None, "must be a JSON object"),
    (b'\xff\xfe{"a":1}', None, "UTF-8"),
    (b'\xef\xbb\xbf{"schemaVersion":2}', None, "byte order mark"),
    (b'{"schemaVersion":2,"schemaVersion":2,"layers":[]}', None, "duplicate key"),
    (b'{"schemaVersion":NaN}', None, "not valid JSON"),
    (raw({"layers": []}), None, 'no "schemaVersion"'),
    (raw(oci_manifest(schemaVersion=3)), None, "schemaVersion 3"),
    (raw(oci_manifest(schemaVersion="2")), None, 'schemaVersion "2"'),
    (raw(oci_manifest(schemaVersion=2.0)), None, "schemaVersion 2.0"),
    (raw(oci_manifest(schemaVersion=True)), None, "schemaVersion true"),
    (raw({"schemaVersion": 2}), None, "cannot tell the manifest type"),
    (raw(oci_manifest(mediaType="application/vnd.example+json")), None, "unsupported manifest media type"),
    (raw(oci_manifest(mediaType=5)), None, "mediaType must be a string"),
    (raw(oci_manifest()), MEDIA_TYPE_DOCKER_MANIFEST, "media type mismatch"),
    (raw(v2s2_manifest()), MEDIA_TYPE_OCI_MANIFEST, "media type mismatch"),
    (raw(oci_manifest()), MEDIA_TYPE_OCI_INDEX, "media type mismatch"),
    (raw(without(oci_manifest(), "config")), None, 'no "config"'),
    (raw(without(oci_manifest(), "layers")), None, 'no "layers"'),
    (raw(oci_manifest(layers=None)), None, 'no "layers"'),
    (raw(oci_manifest(layers={})), None, "layers must be an array"),
    (raw(oci_manifest(config="x")), None, "config must be an object"),
    (raw(oci_manifest(manifests=[])), None, "ambiguous"),
    (raw(dict(index_doc([]), layers=[])), None, "ambiguous"),
    (raw(dict(index_doc([]), config=desc(MEDIA_TYPE_OCI_CONFIG))), None, "ambiguous"),
    (raw(without(oci_manifest(), "mediaType")), MEDIA_TYPE_OCI_INDEX, "ambiguous"),
    (raw({"schemaVersion": 2}), MEDIA_TYPE_OCI_INDEX, 'no "manifests"'),
    (raw({"schemaVersion": 2}), MEDIA_TYPE_DOCKER_MANIFEST, 'no "config"'),
    (raw(dict(index_doc([]), manifests={})), None, "manifests must be an array"),
    (raw(_drop_layer_key("mediaType")), None, 'manifest layer 0 has no "mediaType"'),
    (raw(_drop_layer_key("digest")), None, 'manifest layer 0 has no "digest"'),
    (raw(_drop_layer_key("size")), None, 'manifest layer 0 has no "size"'),
    (raw(_layer(size=-1)), None, "must not be negative"),
    (raw(_layer(size="10")), None, "size must be an integer"),
    (raw(_layer(size=1.5)), None, "size must be an integer"),
    (raw(_layer(size=10.0)), None, "size must be an integer"),
    (raw(_layer(size=True)), None, "size must be an integer"),
    (raw(_layer(size=None)), None, "size must be an integer"),
    (raw(_layer(digest="sha256:abc")), None, "manifest layer 0.digest"),
    (raw(_layer(digest="sha256:" + "A" * 64)), None, "lowercase"),
    (raw(_layer(digest="md5:" + "a" * 32)), None, "unsupported digest algorithm"),
    (raw(_layer(digest=5)), None, "digest must be a string"),
    (raw(_layer(mediaType="")), None, "not a valid media type"),
    (raw(_layer(mediaType="layer")), None, "not a valid media type"),
    (raw(_layer(mediaType="a/b c")), None, "not a valid media type"),
    (raw(_layer(mediaType=None)), None, "mediaType must be a string"),
    (raw(_layer(urls="https://x")), None, "urls must be an array"),
    (raw(_layer(urls=[1])), None, "urls[0] must be a string"),
    (raw(_layer(urls=["file:///etc/passwd"])), None, "not an http(s) URL"),
    (raw(_layer(annotations={"a": 1})), None, 'annotations["a"] must be a string'),
    (raw(_layer(annotations=[])), None, "annotations must be an object"),
    (raw(_layer(data=5)), None, "data must be a base64 string"),
    (raw(_layer(data="!!!")), None, "not valid base64"),
    (raw(_layer(data=base64.b64encode(b"nope").decode())), None, "does not match"),
    (raw(oci_manifest(annotations={"a": None})), None, "must be a string"),
    (raw(oci_manifest(layers=["x"])), None, "manifest layer 0 must be an object"),
    (raw(index_doc([{"os": "linux"}])), None, 'platform has no "architecture"'),
    (raw(index_doc([{"architecture": "amd64"}])), None, 'platform has no "os"'),
    (raw(index_doc([{"os": "linux", "architecture": 1}])), None, "architecture must be a string"),
    (raw(index_doc([{"os": "linux", "architecture": "arm", "variant": 7}])), None, "variant must be"),
    (raw(index_doc(["linux/amd64"])), None, "platform must be an object"),
    (
        raw(v2s2_manifest(config=desc(MEDIA_TYPE_OCI_CONFIG, "c"))),
        None,
        "v2s2 manifest config has media type",
    ),
    (
        raw(v2s2_manifest(layers=[desc(MEDIA_TYPE_OCI_LAYER_GZIP, "l")])),
        None,
        "v2s2 manifest layer 0 has unsupported media type",
    ),
    (
        raw(v2s2_manifest(layers=[desc("application/x-foo", "l")])),
        None,
        "unsupported media type",
    ),
    (raw(v2s2_manifest(subject=desc(MEDIA_TYPE_OCI_MANIFEST))), None, "OCI-only"),
    (raw(oci_manifest(subject="x")), None, "subject must be an object"),
    (raw(oci_manifest(artifactType="nope")), None, "not a valid media type"),
]


@pytest.mark.parametrize("data,ctype,fragment", INVALID_DOCS)
def test_invalid_manifests(data, ctype, fragment):
    with pytest.raises(ImageError) as info:
        parse_manifest(data, ctype)
    assert fragment in str(info.value)


def test_unknown_fields_ignored_and_oci_11_fields_kept():
    doc = oci_manifest(
        artifactType="application/vnd.example.sbom",
        subject=desc(MEDIA_TYPE_OCI_MANIFEST, "subj", 123),
        futureField={"anything": [1, 2]},
    )
    doc["config"] = desc("application/vnd.oci.empty.v1+json", "empty", 2)
    doc["layers"] = [desc("application/spdx+json", "sbom", 50)]
    man = parse_manifest(raw(doc))
    assert man.artifact_type == "application/vnd.example.sbom"
    assert man.subject is not None and man.subject.digest == dg("subj")
    assert man.layers[0].media_type == "application/spdx+json"


def test_descriptor_embedded_data():
    data = b"{}"
    d = parse_descriptor(
        {
            "mediaType": m.MEDIA_TYPE_OCI_EMPTY,
            "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
            "size": 2,
            "data": base64.b64encode(data).decode(),
        }
    )
    assert d.data == data
    assert d.to_dict()["data"] == "e30="


# --------------------------------------------------------------------------- size limits


def _padded(size: int) -> bytes:
    body = raw(oci_manifest())
    return body + b" " * (size - len(body))


def test_manifest_size_limit():
    assert MAX_MANIFEST_SIZE == MAX_CONFIG_SIZE == 4 * 1024 * 1024
    ok = _padded(MAX_MANIFEST_SIZE)
    assert len(ok) == MAX_MANIFEST_SIZE
    assert parse_manifest(ok).raw == ok
    with pytest.raises(ImageError, match="too large"):
        parse_manifest(_padded(MAX_MANIFEST_SIZE + 1))


def test_config_size_limit():
    body = config_bytes(_config())
    with pytest.raises(ImageError, match="too large"):
        parse_image_config(body + b" " * (MAX_CONFIG_SIZE + 1 - len(body)))
    assert parse_image_config(body + b" " * (MAX_CONFIG_SIZE - len(body)))


def test_deep_nesting_is_an_image_error():
    with pytest.raises(ImageError):
        parse_manifest(b"[" * 100000 + b"]" * 100000)


# --------------------------------------------------------------------------- index: choose

FULL = [
    plat("linux", "amd64"),
    plat("linux", "arm", "v6"),
    plat("linux", "arm", "v7"),
    plat("linux", "arm64", "v8"),
    plat("linux", "ppc64le"),
    plat("windows", "amd64"),
    plat("linux", "386"),
    None,  # e.g. an attestation manifest without a platform
]

CHOOSE = [
    # platforms, (os, arch, variant), index of the expected entry or None for an error
    (FULL, ("linux", "amd64", None), 0),
    (FULL, ("windows", "amd64", None), 5),
    (FULL, ("linux", "x86_64", None), 0),
    (FULL, ("Linux", "AMD64", None), 0),
    (FULL, ("linux", "arm", None), 2),  # arm defaults to v7
    (FULL, ("linux", "arm", "v7"), 2),
    (FULL, ("linux", "arm", "7"), 2),
    (FULL, ("linux", "arm", "v6"), 1),
    (FULL, ("linux", "arm", "v8"), 2),  # v8 runs v7 before v6
    (FULL, ("linux", "armhf", None), 2),
    (FULL, ("linux", "armv6l", None), 1),
    (FULL, ("linux", "arm", "v5"), None),
    (FULL, ("linux", "arm64", None), 3),
    (FULL, ("linux", "aarch64", None), 3),
    (FULL, ("linux", "arm64", "v8"), 3),
    (FULL, ("linux", "i686", None), 6),
    (FULL, ("linux", "s390x", None), None),
    (FULL, ("darwin", "amd64", None), None),
    ([plat("linux", "arm64")], ("linux", "arm64", "v8"), 0),  # no variant on arm64 means v8
    ([plat("linux", "arm64")], ("linux", "arm64", None), 0),
    ([plat("linux", "arm64", "v9")], ("linux", "arm64", None), 0),  # fallback: first for os+arch
    ([plat("linux", "arm64", "v9")], ("linux", "arm64", "v8"), None),
    ([plat("linux", "arm")], ("linux", "arm", "v7"), 0),  # entry without variant: last resort
    ([plat("linux", "arm", "v6"), plat("linux", "arm")], ("linux", "arm", "v7"), 0),
    ([plat("linux", "arm"), plat("linux", "arm", "v7")], ("linux", "arm", "v7"), 1),
    ([plat("linux", "arm", "v6"), plat("linux", "arm", "v7")], ("linux", "arm", None), 1),
    ([plat("linux", "arm", "v8")], ("linux", "arm", None), 0),
    ([plat("linux", "arm", "v7")], ("linux", "arm", "v6"), None),
    ([plat("linux", "amd64"), plat("linux", "amd64")], ("linux", "amd64", None), 0),
    ([plat("linux", "riscv64")], ("linux", "riscv64", "rva20"), 0),  # unknown variant, then none
    ([plat("linux", "riscv64", "rva22")], ("linux", "riscv64", "rva20"), None),
    ([plat("linux", "riscv64", "rva20")], ("linux", "riscv64", "rva20"), 0),
    ([], ("linux", "amd64", None), None),
    ([None], ("linux", "amd64", None), None),
]


@pytest.mark.parametrize("platforms,want,expected", CHOOSE)
def test_index_choose(platforms, want, expected):
    idx = parse_manifest(raw(index_doc(platforms)))
    assert isinstance(idx, Index)
    if expected is None:
        with pytest.raises(ImageError) as info:
            idx.choose(*want)
        msg = str(info.value)
        assert "no image found in manifest list" in msg
        assert "available platforms:" in msg
        for p in idx.platforms():
            assert p in msg
    else:
        assert idx.choose(*want) is idx.manifests[expected]


def test_index_choose_defaults_and_platforms():
    idx = parse_manifest(raw(index_doc(FULL, MEDIA_TYPE_DOCKER_MANIFEST_LIST, MEDIA_TYPE_DOCKER_MANIFEST)))
    assert idx.format == "v2s2"
    assert idx.choose().digest == dg("m0")
    assert idx.platforms() == [
        "linux/amd64",
        "linux/arm/v6",
        "linux/arm/v7",
        "linux/arm64/v8",
        "linux/ppc64le",
        "windows/amd64",
        "linux/386",
    ]
    with pytest.raises(ImageError, match=r'available platforms: linux/amd64, linux/arm/v6, .*linux/386$'):
        idx.choose("linux", "mips64le")


def test_index_platform_details_parsed():
    p = dict(plat("windows", "amd64"), **{"os.version": "10.0.17763.1", "os.features": ["win32k"]})
    idx = parse_manifest(raw(index_doc([p])))
    platform = idx.manifests[0].platform
    assert platform == Platform("windows", "amd64", None, "10.0.17763.1", ("win32k",))
    assert platform.to_dict() == p


# --------------------------------------------------------------------------- media types & conversion

LAYER_CONVERSIONS = [
    # media type, target format, compression override, expected (None: ImageError)
    (MEDIA_TYPE_OCI_LAYER_GZIP, "v2s2", None, MEDIA_TYPE_DOCKER_LAYER_GZIP),
    (MEDIA_TYPE_OCI_LAYER, "v2s2", None, MEDIA_TYPE_DOCKER_LAYER),
    (MEDIA_TYPE_OCI_LAYER_ZSTD, "v2s2", None, None),
    (MEDIA_TYPE_OCI_LAYER_ZSTD, "v2s2", "gzip", MEDIA_TYPE_DOCKER_LAYER_GZIP),
    (MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE_GZIP, "v2s2", None, MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP),
    (MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE, "v2s2", None, MEDIA_TYPE_DOCKER_FOREIGN_LAYER),
    (MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE_ZSTD, "v2s2", None, None),
    (MEDIA_TYPE_DOCKER_LAYER_GZIP, "oci", None, MEDIA_TYPE_OCI_LAYER_GZIP),
    (MEDIA_TYPE_DOCKER_LAYER, "oci", None, MEDIA_TYPE_OCI_LAYER),
    (MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP, "oci", None, MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE_GZIP),
    (MEDIA_TYPE_DOCKER_FOREIGN_LAYER, "oci", None, MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE),
    (MEDIA_TYPE_DOCKER_LAYER_GZIP, "oci", "zstd", MEDIA_TYPE_OCI_LAYER_ZSTD),
    (MEDIA_TYPE_DOCKER_LAYER_GZIP, "v2s2", "none", MEDIA_TYPE_DOCKER_LAYER),
    (MEDIA_TYPE_DOCKER_LAYER_GZIP, "v2s2", "zstd", None),
    (MEDIA_TYPE_OCI_LAYER_ZSTD, "oci", None, MEDIA_TYPE_OCI_LAYER_ZSTD),
    (MEDIA_TYPE_OCI_LAYER_GZIP, "oci", None, MEDIA_TYPE_OCI_LAYER_GZIP),
    ("application/x-unknown", "oci", None, None),
    (MEDIA_TYPE_OCI_CONFIG, "v2s2", None, None),
]


@pytest.mark.parametrize("media_type,fmt,compression,expected", LAYER_CONVERSIONS)
def test_convert_layer_media_type(media_type, fmt, compression, expected):
    if expected is None:
        with pytest.raises(ImageError):
            convert_layer_media_type(media_type, fmt, compression)
    else:
        assert convert_layer_media_type(media_type, fmt, compression) == expected


def test_zstd_v2s2_message():
    with pytest.raises(ImageError, match="zstd-compressed layers cannot be used in a Docker v2s2"):
        convert_layer_media_type(MEDIA_TYPE_OCI_LAYER_ZSTD, "v2s2")


def test_bad_format_and_compression():
    with pytest.raises(InvalidArgument, match="unknown manifest format"):
        convert_layer_media_type(MEDIA_TYPE_OCI_LAYER_GZIP, "docker")
    with pytest.raises(InvalidArgument, match="unknown compression"):
        layer_media_type("oci", "bzip2")
    with pytest.raises(InvalidArgument):
        build_manifest(Descriptor(MEDIA_TYPE_OCI_CONFIG, dg("c"), 1), [], "v2s1")


@pytest.mark.parametrize(
    "media_type,compression,foreign",
    [
        (MEDIA_TYPE_OCI_LAYER, "none", False),
        (MEDIA_TYPE_OCI_LAYER_GZIP, "gzip", False),
        (MEDIA_TYPE_OCI_LAYER_ZSTD, "zstd", False),
        (MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE, "none", True),
        (MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE_GZIP, "gzip", True),
        (MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE_ZSTD, "zstd", True),
        (MEDIA_TYPE_DOCKER_LAYER, "none", False),
        (MEDIA_TYPE_DOCKER_LAYER_GZIP, "gzip", False),
        (MEDIA_TYPE_DOCKER_FOREIGN_LAYER, "none", True),
        (MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP, "gzip", True),
    ],
)
def test_layer_media_type_info(media_type, compression, foreign):
    assert is_layer_media_type(media_type)
    assert layer_compression(media_type) == compression
    assert is_foreign_layer(media_type) is foreign
    fmt = "oci" if ".oci." in media_type else "v2s2"
    assert layer_media_type(fmt, compression, foreign=foreign) == media_type


def test_layer_media_type_info_unknown():
    assert not is_layer_media_type(MEDIA_TYPE_OCI_CONFIG)
    assert not is_foreign_layer("application/x-foo")
    with pytest.raises(ImageError, match="not a known layer media type"):
        layer_compression(MEDIA_TYPE_DOCKER_CONFIG)


def test_convert_config_media_type():
    assert convert_config_media_type(MEDIA_TYPE_OCI_CONFIG, "v2s2") == MEDIA_TYPE_DOCKER_CONFIG
    assert convert_config_media_type(MEDIA_TYPE_DOCKER_CONFIG, "oci") == MEDIA_TYPE_OCI_CONFIG
    assert convert_config_media_type(MEDIA_TYPE_OCI_CONFIG, "oci") == MEDIA_TYPE_OCI_CONFIG
    assert convert_config_media_type("application/vnd.example", "oci") == "application/vnd.example"
    with pytest.raises(ImageError):
        convert_config_media_type("application/vnd.example", "v2s2")


def _descs():
    config = Descriptor(MEDIA_TYPE_OCI_CONFIG, dg("config"), 321)
    layers = [
        Descriptor(MEDIA_TYPE_OCI_LAYER_GZIP, dg("a"), 10),
        Descriptor(MEDIA_TYPE_OCI_LAYER, dg("b"), 20, annotations={"k": "v"}),
        Descriptor(MEDIA_TYPE_OCI_LAYER_NONDISTRIBUTABLE_GZIP, dg("c"), 30, urls=("https://x/y",)),
    ]
    return config, layers


def test_build_manifest_oci():
    config, layers = _descs()
    data = build_manifest(config, layers, "oci", annotations={"b": "2", "a": "1"})
    assert data == build_manifest(config, layers, "oci", annotations={"a": "1", "b": "2"})
    assert b" " not in data and not data.endswith(b"\n")
    doc = json.loads(data)
    assert list(doc) == ["schemaVersion", "mediaType", "config", "layers", "annotations"]
    assert doc["config"] == {"mediaType": MEDIA_TYPE_OCI_CONFIG, "digest": dg("config"), "size": 321}
    man = parse_manifest(data)
    assert man.media_type == MEDIA_TYPE_OCI_MANIFEST
    assert man.config == config
    assert man.layers == layers
    assert man.layers[1].annotations == {"k": "v"}
    assert man.layers[2].urls == ("https://x/y",)
    assert man.annotations == {"a": "1", "b": "2"}


def test_build_manifest_v2s2_and_back():
    config, layers = _descs()
    data = build_manifest(config, layers, "v2s2", annotations={"dropped": "yes"})
    man = parse_manifest(data)
    assert man.media_type == MEDIA_TYPE_DOCKER_MANIFEST and man.format == "v2s2"
    assert man.config.media_type == MEDIA_TYPE_DOCKER_CONFIG
    assert [l.media_type for l in man.layers] == [
        MEDIA_TYPE_DOCKER_LAYER_GZIP,
        MEDIA_TYPE_DOCKER_LAYER,
        MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP,
    ]
    assert [(l.digest, l.size) for l in man.layers] == [(l.digest, l.size) for l in layers]
    assert man.annotations == {}
    assert "annotations" not in json.loads(data)
    back = parse_manifest(convert_manifest(man, "oci"))
    assert back.config == config
    assert [l.media_type for l in back.layers] == [l.media_type for l in layers]
    # round trip again gives identical bytes
    assert convert_manifest(back, "v2s2") == data


def test_build_manifest_recompress():
    config, layers = _descs()
    man = parse_manifest(build_manifest(config, layers[:2], "oci", compression="zstd"))
    assert [l.media_type for l in man.layers] == [MEDIA_TYPE_OCI_LAYER_ZSTD] * 2


def test_convert_refuses_zstd_and_artifacts_to_v2s2():
    config, layers = _descs()
    zman = parse_manifest(build_manifest(config, layers, "oci", compression="zstd"))
    with pytest.raises(ImageError, match="zstd"):
        convert_manifest(zman, "v2s2")
    art = parse_manifest(
        raw(oci_manifest(artifactType="application/vnd.example", layers=[desc("application/x-y", "z")]))
    )
    with pytest.raises(ImageError, match="artifactType"):
        convert_manifest(art, "v2s2")
    with pytest.raises(ImageError):
        build_manifest(Descriptor("application/vnd.example", dg("c"), 1), [], "v2s2")
    # ... but an OCI artifact stays an OCI artifact
    kept = parse_manifest(convert_manifest(art, "oci"))
    assert kept.layers[0].media_type == "application/x-y"


def test_descriptor_for_and_hash():
    d = descriptor_for(b"abc", MEDIA_TYPE_OCI_CONFIG, annotations={"x": "y"})
    assert d.digest == "sha256:" + hashlib.sha256(b"abc").hexdigest() and d.size == 3
    assert len({d, Descriptor(d.media_type, d.digest, d.size, annotations={"x": "y"})}) == 1
    with pytest.raises(ImageError):
        descriptor_for(b"abc", "bad")


@pytest.mark.parametrize("fmt,mt,entry_mt", [("oci", MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST), ("v2s2", MEDIA_TYPE_DOCKER_MANIFEST_LIST, MEDIA_TYPE_DOCKER_MANIFEST)])
def test_build_index(fmt, mt, entry_mt):
    entries = [
        Descriptor(MEDIA_TYPE_OCI_MANIFEST, dg("a"), 1, platform=Platform("linux", "amd64")),
        Descriptor(MEDIA_TYPE_OCI_MANIFEST, dg("b"), 2, platform=Platform("linux", "arm", "v7")),
    ]
    idx = parse_manifest(build_index(entries, fmt))
    assert isinstance(idx, Index) and idx.media_type == mt
    assert [e.media_type for e in idx.manifests] == [entry_mt, entry_mt]
    assert idx.choose("linux", "arm").digest == dg("b")
    assert idx.platforms() == ["linux/amd64", "linux/arm/v7"]


# --------------------------------------------------------------------------- image config


def _config(**over) -> dict:
    cfg = {
        "created": "2024-01-02T03:04:05Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/bin"],
            "Cmd": ["sh"],
            "Entrypoint": None,
            "WorkingDir": "/",
            "User": "1000:1000",
            "ExposedPorts": {"80/tcp": {}, "53/udp": {}, "8080": {}},
            "Volumes": {"/data": {}},
            "Labels": {"a": "b"},
            "StopSignal": "SIGTERM",
        },
        "rootfs": {"type": "layers", "diff_ids": [dg("d1"), dg("d2")]},
        "history": [
            {"created": "2024-01-01T00:00:00Z", "created_by": "ADD rootfs"},
            {"created_by": "ENV x", "empty_layer": True},
            {"created_by": "RUN y"},
        ],
    }
    cfg.update(over)
    return cfg


def test_parse_image_config_ok():
    cfg = _config(unknownKey={"kept": True})
    out = parse_image_config(raw(cfg))
    assert out == cfg
    assert history_matches_layers(out)


@pytest.mark.parametrize(
    "cfg",
    [
        _config(config=None),
        _config(config={}),
        _config(config={"Cmd": None, "Env": None, "Labels": None, "ExposedPorts": None}),
        _config(history=None),
        without(_config(), "history"),
        without(_config(), "created"),
        _config(created="2024-01-02T03:04:05.123456789+02:00"),
        _config(rootfs={"type": "layers", "diff_ids": []}),
        _config(rootfs={"type": "layers"}),
        _config(variant="v7", architecture="arm"),
    ],
)
def test_parse_image_config_lenient_where_real_images_are(cfg):
    assert parse_image_config(raw(cfg)) == cfg


def _with_config(**fields):
    cfg = _config()
    cfg["config"] = dict(cfg["config"], **fields)
    return cfg


INVALID_CONFIGS = [
    (b"[]", "must be a JSON object"),
    (b"{bad", "not valid JSON"),
    (raw(without(_config(), "architecture")), 'no "architecture"'),
    (raw(without(_config(), "os")), 'no "os"'),
    (raw(_config(architecture=64)), "architecture must be a non-empty string"),
    (raw(_config(os="")), "os must be a non-empty string"),
    (raw(_config(created=5)), "created must be a string"),
    (raw(_config(created="yesterday")), "not an RFC 3339 time"),
    (raw(_config(author=[])), "author must be a string"),
    (raw(without(_config(), "rootfs")), 'no "rootfs"'),
    (raw(_config(rootfs=[])), "rootfs must be an object"),
    (raw(_config(rootfs={"type": "tar", "diff_ids": []})), 'rootfs.type must be "layers"'),
    (raw(_config(rootfs={"diff_ids": []})), 'rootfs.type must be "layers"'),
    (raw(_config(rootfs={"type": "layers", "diff_ids": "x"})), "diff_ids must be an array"),
    (raw(_config(rootfs={"type": "layers", "diff_ids": ["sha256:zz"]})), "diff_ids[0]"),
    (raw(_config(config=[])), "config must be an object"),
    (raw(_with_config(Env="PATH=/bin")), "config.Env must be an array"),
    (raw(_with_config(Env=[1])), "config.Env[0] must be a string"),
    (raw(_with_config(Cmd="sh")), "config.Cmd must be an array"),
    (raw(_with_config(Entrypoint={"a": 1})), "config.Entrypoint must be an array"),
    (raw(_with_config(WorkingDir=1)), "config.WorkingDir must be a string"),
    (raw(_with_config(User=0)), "config.User must be a string"),
    (raw(_with_config(StopSignal=15)), "config.StopSignal must be a string"),
    (raw(_with_config(Labels={"a": 1})), 'config.Labels["a"] must be a string'),
    (raw(_with_config(Labels=["a"])), "config.Labels must be an object"),
    (raw(_with_config(ExposedPorts=["80/tcp"])), "config.ExposedPorts must be an object"),
    (raw(_with_config(ExposedPorts={"http": {}})), "is not a port"),
    (raw(_with_config(ExposedPorts={"80/tcp": 1})), "must be an object"),
    (raw(_with_config(Volumes={"/data": None})), "must be an object"),
    (raw(_with_config(ArgsEscaped="yes")), "must be a boolean"),
    (raw(_config(history={})), "history must be an array"),
    (raw(_config(history=["x"])), "history[0] must be an object"),
    (raw(_config(history=[{"created_by": 1}])), "history[0].created_by must be a string"),
    (raw(_config(history=[{"empty_layer": "true"}])), "empty_layer must be a boolean"),
]


@pytest.mark.parametrize("data,fragment", INVALID_CONFIGS)
def test_parse_image_config_invalid(data, fragment):
    with pytest.raises(ImageError) as info:
        parse_image_config(data)
    assert fragment in str(info.value)


def test_history_matches_layers():
    assert history_matches_layers(_config())
    assert history_matches_layers(_config(history=[]))
    assert not history_matches_layers(_config(history=[{"created_by": "x"}]))


WHEN = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_make_image_config_import():
    cfg = make_image_config(
        [dg("layer")],
        architecture="arm64",
        os="linux",
        created=WHEN,
        created_by="kpod import",
        comment="imported from tarball",
        config={"Cmd": ["/bin/sh"]},
    )
    assert cfg == {
        "created": "2024-01-02T03:04:05Z",
        "architecture": "arm64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [dg("layer")]},
        "history": [
            {"created": "2024-01-02T03:04:05Z", "created_by": "kpod import", "comment": "imported from tarball"}
        ],
    }
    data = config_bytes(cfg)
    assert parse_image_config(data) == cfg
    assert history_matches_layers(cfg)


def test_make_image_config_defaults_to_host_platform():
    cfg = make_image_config([dg("l")])
    host = host_platform()
    assert (cfg["os"], cfg["architecture"], cfg.get("variant")) == (host.os, host.architecture, host.variant)
    assert cfg["created"].endswith("Z")
    parse_image_config(config_bytes(cfg))


def test_make_image_config_commit_on_base():
    base = _config(variant="v8", architecture="arm64", author="someone")
    cfg = make_image_config([dg("new")], base=base, created=WHEN, created_by="kpod commit", author="me")
    assert cfg["rootfs"]["diff_ids"] == [dg("d1"), dg("d2"), dg("new")]
    assert cfg["config"] == base["config"]
    assert (cfg["architecture"], cfg["variant"], cfg["author"]) == ("arm64", "v8", "me")
    assert len(cfg["history"]) == 4
    assert cfg["history"][-1] == {"created": "2024-01-02T03:04:05Z", "created_by": "kpod commit", "author": "me"}
    assert base["rootfs"]["diff_ids"] == [dg("d1"), dg("d2")]  # base untouched
    assert history_matches_layers(cfg)
    parse_image_config(config_bytes(cfg))


def test_make_image_config_empty_layer_and_config_change():
    base = _config()
    cfg = make_image_config([], base=base, created=WHEN, config={"Cmd": ["true"]}, comment="change")
    assert cfg["rootfs"]["diff_ids"] == base["rootfs"]["diff_ids"]
    assert cfg["config"] == {"Cmd": ["true"]}
    assert cfg["history"][-1]["empty_layer"] is True
    assert history_matches_layers(cfg)
    assert "variant" not in cfg


def test_make_image_config_several_layers():
    cfg = make_image_config([dg("a"), dg("b")], created=WHEN, created_by="x", architecture="amd64", os="linux")
    assert len(cfg["history"]) == 2 and history_matches_layers(cfg)


def test_make_image_config_no_history():
    cfg = make_image_config([dg("a")], created=WHEN, add_history=False, architecture="amd64", os="linux")
    assert "history" not in cfg


def test_make_image_config_invalid():
    with pytest.raises(ImageError):
        make_image_config(["sha256:nothex"])
    with pytest.raises(InvalidArgument):
        make_image_config([dg("a")], created="last tuesday")
    with pytest.raises(ImageError):
        make_image_config([dg("a")], config={"Cmd": "sh"})
    with pytest.raises(ImageError):
        config_bytes({"os": "linux"})


@pytest.mark.parametrize(
    "when,expected",
    [
        (WHEN, "2024-01-02T03:04:05Z"),
        (WHEN.replace(microsecond=500000), "2024-01-02T03:04:05.5Z"),
        (WHEN.replace(microsecond=123), "2024-01-02T03:04:05.000123Z"),
        (datetime(2024, 1, 2, 3, 4, 5), "2024-01-02T03:04:05Z"),  # naive means UTC
        (datetime(2024, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2))), "2024-01-02T03:04:05Z"),
    ],
)
def test_format_rfc3339(when, expected):
    assert format_rfc3339(when) == expected


# --------------------------------------------------------------------------- platforms


@pytest.mark.parametrize(
    "machine,system,expected",
    [
        ("x86_64", "Linux", "linux/amd64"),
        ("AMD64", "Windows", "windows/amd64"),
        ("aarch64", "Linux", "linux/arm64/v8"),
        ("arm64", "Darwin", "darwin/arm64/v8"),
        ("armv7l", "Linux", "linux/arm/v7"),
        ("armv6l", "Linux", "linux/arm/v6"),
        ("armv5tel", "Linux", "linux/arm/v5"),
        ("armv8l", "Linux", "linux/arm/v8"),
        ("i686", "Linux", "linux/386"),
        ("ppc64le", "Linux", "linux/ppc64le"),
        ("s390x", "Linux", "linux/s390x"),
        ("riscv64", "Linux", "linux/riscv64"),
        ("mips64", "Linux", "linux/mips64"),
        ("loongarch64", "Linux", "linux/loong64"),
        ("sparc64", "Linux", "linux/sparc64"),
    ],
)
def test_host_platform(monkeypatch, machine, system, expected):
    import types

    uname = types.SimpleNamespace(sysname=system, machine=machine)
    monkeypatch.setattr(m.os, "uname", lambda: uname)
    assert str(host_platform()) == expected


@pytest.mark.parametrize(
    "args,expected",
    [
        (("linux", "x86_64"), ("linux", "amd64", None)),
        (("Linux", "aarch64"), ("linux", "arm64", None)),
        (("linux", "arm64", "v8"), ("linux", "arm64", "v8")),
        (("linux", "armhf"), ("linux", "arm", "v7")),
        (("linux", "armel"), ("linux", "arm", "v6")),
        (("linux", "arm", "7"), ("linux", "arm", "v7")),
        (("linux", "arm", ""), ("linux", "arm", None)),
        (("macos", "arm64"), ("darwin", "arm64", None)),
        (("linux", "i386"), ("linux", "386", None)),
    ],
)
def test_normalize_platform(args, expected):
    assert normalize_platform(*args) == expected


def test_platform_parse():
    assert Platform.parse("linux/amd64") == Platform("linux", "amd64")
    assert Platform.parse("linux/arm/v7") == Platform("linux", "arm", "v7")
    assert str(Platform.parse("linux/aarch64")) == "linux/arm64"
    for bad in ("linux", "linux/", "/amd64", "a/b/c/d", ""):
        with pytest.raises(InvalidArgument):
            Platform.parse(bad)
