from __future__ import annotations

import hashlib

import pytest

from libpod_core.errors import InvalidArgument
from libpod_core.reference import (
    Reference,
    digest_bytes,
    id_hex,
    is_short_name,
    looks_like_id,
    normalize,
    normalize_docker_hub,
    normalize_local,
    parse,
    split_digest,
    split_tag_digest,
    validate_digest,
    validate_tag,
)

D = "sha256:" + "a" * 64
D512 = "sha512:" + "b" * 128


# --------------------------------------------------------------------------- valid references

VALID = [
    # input, domain, path, tag, digest
    ("busybox", None, "busybox", None, None),
    ("busybox:latest", None, "busybox", "latest", None),
    ("library/busybox:1.36", None, "library/busybox", "1.36", None),
    ("a/b/c/d/e", None, "a/b/c/d/e", None, None),
    ("docker.io/library/busybox", "docker.io", "library/busybox", None, None),
    ("quay.io/podman/stable:v4", "quay.io", "podman/stable", "v4", None),
    ("localhost/foo", "localhost", "foo", None, None),
    ("localhost:5000/foo/bar:tag", "localhost:5000", "foo/bar", "tag", None),
    ("localhost:5000", None, "localhost", "5000", None),  # no slash: a name with a tag
    ("127.0.0.1:5000/foo", "127.0.0.1:5000", "foo", None, None),
    ("example.com:0/foo", "example.com:0", "foo", None, None),
    ("example.com:65535/foo", "example.com:65535", "foo", None, None),
    ("[::1]/foo", "[::1]", "foo", None, None),
    ("[::1]:5000/foo:v1", "[::1]:5000", "foo", "v1", None),
    ("[fe80::1:2]:443/a/b", "[fe80::1:2]:443", "a/b", None, None),
    ("[2001:DB8::1]/x", "[2001:DB8::1]", "x", None, None),
    ("Foo/bar", "Foo", "bar", None, None),  # uppercase first component is a domain
    ("EXAMPLE.com/foo", "EXAMPLE.com", "foo", None, None),
    ("my-registry.example.com/a__b/c-d/e.f:t", "my-registry.example.com", "a__b/c-d/e.f", "t", None),
    ("a-b.c-d.e/x", "a-b.c-d.e", "x", None, None),
    ("foo.bar", None, "foo.bar", None, None),
    ("foo_bar", None, "foo_bar", None, None),
    ("foo__bar", None, "foo__bar", None, None),
    ("foo---bar", None, "foo---bar", None, None),
    ("foo.bar_baz-qux", None, "foo.bar_baz-qux", None, None),
    ("0", None, "0", None, None),
    ("foo:_v1", None, "foo", "_v1", None),
    ("foo:V1.2-rc_3", None, "foo", "V1.2-rc_3", None),
    ("foo:" + "t" * 128, None, "foo", "t" * 128, None),
    ("foo@" + D, None, "foo", None, D),
    ("foo:tag@" + D, None, "foo", "tag", D),
    ("quay.io/a/b:1@" + D512, "quay.io", "a/b", "1", D512),
    ("localhost:5000/foo@" + D, "localhost:5000", "foo", None, D),
    ("a" * 255, None, "a" * 255, None, None),
    ("example.com/" + "a" * 243, "example.com", "a" * 243, None, None),  # 255 in total
]


@pytest.mark.parametrize("text,domain,path,tag,digest", VALID)
def test_parse_valid(text, domain, path, tag, digest):
    ref = parse(text)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)
    assert str(ref) == text
    assert parse(str(ref)) == ref
    assert ref.is_tagged() is (tag is not None)
    assert ref.is_digested() is (digest is not None)
    assert ref.name == (path if domain is None else f"{domain}/{path}")


# --------------------------------------------------------------------------- invalid references

INVALID = [
    # input, fragment of the message
    ("", "empty reference"),
    ("Busybox", "must be lowercase"),
    ("foo/Bar", "must be lowercase"),
    ("docker.io/Library/busybox", "must be lowercase"),
    ("quay.io/a/B:tag", "must be lowercase"),
    ("foo/", "empty path component"),
    ("foo//bar", "empty path component"),
    ("/foo", "empty path component"),
    ("quay.io/", "repository name is empty"),
    ("quay.io/a/", "empty path component"),
    (":tag", "repository name is empty"),
    ("@" + D, "repository name is empty"),
    ("foo-", "invalid repository path component"),
    ("-foo", "invalid repository path component"),
    (".foo", "invalid repository path component"),
    ("_foo", "invalid repository path component"),
    ("foo..bar", "invalid repository path component"),
    ("foo___bar", "invalid repository path component"),
    ("foo._bar", "invalid repository path component"),
    ("foo-.bar", "invalid repository path component"),
    ("foo bar", "invalid repository path component"),
    ("foo\n", "invalid"),
    ("föö", "invalid repository path component"),
    ("foo:tag:tag2", "invalid repository path component"),
    ("foo:", "empty tag"),
    ("foo@", "empty digest"),
    ("foo:-tag", "invalid tag"),
    ("foo:.tag", "invalid tag"),
    ("foo:ta/g", "invalid"),
    ("foo:" + "t" * 129, "longer than 128"),
    ("foo@sha256:abc", "at least 32"),
    ("foo@sha256:" + "a" * 63, "needs 64"),
    ("foo@sha256:" + "a" * 65, "needs 64"),
    ("foo@sha256:" + "A" * 64, "lowercase"),
    ("foo@sha256:" + "g" * 64, "at least 32"),
    ("foo@md5:" + "a" * 32, "unsupported digest algorithm"),
    ("foo@" + "a" * 64, 'missing "algorithm:"'),
    ("foo@1sha:" + "a" * 64, "malformed algorithm"),
    ("foo@" + D + "@x", "invalid digest"),
    ("localhost:abc/foo", 'invalid port "abc"'),
    ("localhost:/foo", 'invalid port ""'),
    ("example.com:5000:80/foo", "invalid port"),
    ("example.com:-1/foo", "invalid port"),
    ("-example.com/foo", "invalid domain"),
    ("example-.com/foo", "invalid domain"),
    ("exa_mple.com/foo", "invalid domain"),
    ("example..com/foo", "invalid domain"),
    (".example.com/foo", "invalid domain"),
    ("[::1/foo", "unterminated IPv6"),
    ("[::1]x/foo", "invalid domain"),
    ("[zz::1]/foo", "invalid domain"),
    ("[]/foo", "invalid repository path component"),  # no "." or ":": not a domain
    ("[::1]", "invalid"),
    ("a" * 256, "more than 255"),
    ("example.com/" + "a" * 244, "more than 255"),
    ("example.com/" + "a" * 244 + ":tag@" + D, "more than 255"),
]


@pytest.mark.parametrize("text,fragment", INVALID)
def test_parse_invalid(text, fragment):
    with pytest.raises(InvalidArgument) as info:
        parse(text)
    msg = str(info.value)
    assert fragment in msg
    assert msg.startswith("invalid reference format")
    assert "\n" not in msg
    if text and len(text) < 100 and text.isprintable():
        assert f'"{text}"' in msg  # the message names the input


@pytest.mark.parametrize(
    "text",
    [
        "a" * 100000,
        "foo:" + "t" * 100000,
        "foo@sha256:" + "a" * 100000,
        "foo@" + "x" * 100000 + ":" + "a" * 64,
    ],
)
def test_huge_inputs_give_short_messages(text):
    with pytest.raises(InvalidArgument) as info:
        parse(text)
    assert len(str(info.value)) < 1000
    assert "100" in str(info.value)  # the length is reported


def test_control_characters_escaped_in_messages():
    with pytest.raises(InvalidArgument) as info:
        parse("foo\nbar\x1b[31m")
    msg = str(info.value)
    assert "\n" not in msg and "\x1b" not in msg
    assert "foo\\nbar" in msg


def test_parse_not_a_string():
    with pytest.raises(InvalidArgument):
        parse(None)  # type: ignore[arg-type]


def test_tag_is_only_after_last_slash():
    ref = parse("registry:5000/ns/app")
    assert ref.domain == "registry:5000" and ref.tag is None
    ref = parse("registry:5000/ns/app:1.0")
    assert ref.domain == "registry:5000" and ref.tag == "1.0"


# --------------------------------------------------------------------------- Reference object


def test_reference_constructor_validates():
    assert str(Reference("quay.io", "a/b", "t", D)) == f"quay.io/a/b:t@{D}"
    with pytest.raises(InvalidArgument, match="lowercase"):
        Reference(None, "Foo")
    with pytest.raises(InvalidArgument, match="invalid tag"):
        Reference(None, "foo", "-x")
    with pytest.raises(InvalidArgument, match="invalid domain"):
        Reference("bad_domain", "foo")
    with pytest.raises(InvalidArgument, match="needs 64"):
        Reference(None, "foo", None, "sha256:" + "a" * 40)
    # A path whose first component reads as a domain would not round-trip.
    with pytest.raises(InvalidArgument, match="read as a domain"):
        Reference(None, "example.com/foo")
    with pytest.raises(InvalidArgument, match="read as a domain"):
        Reference(None, "localhost/foo")


def test_reference_is_frozen_and_hashable():
    ref = parse("quay.io/a/b:1")
    with pytest.raises(Exception):
        ref.tag = "2"  # type: ignore[misc]
    assert {ref, parse("quay.io/a/b:1")} == {ref}


def test_with_tag_and_digest():
    ref = parse("quay.io/a/b:1")
    assert str(ref.with_tag("2")) == "quay.io/a/b:2"
    assert str(ref.with_digest(D)) == f"quay.io/a/b:1@{D}"
    assert str(parse(f"quay.io/a/b@{D}").with_tag("x")) == f"quay.io/a/b:x@{D}"
    assert str(ref.bare()) == "quay.io/a/b"
    with pytest.raises(InvalidArgument):
        ref.with_tag("bad tag")
    with pytest.raises(InvalidArgument):
        ref.with_tag("")
    with pytest.raises(InvalidArgument):
        ref.with_digest("sha256:xyz")


FAMILIAR = [
    ("docker.io/library/busybox:latest", "busybox:latest", "busybox"),
    ("docker.io/library/busybox", "busybox", "busybox"),
    (f"docker.io/library/busybox@{D}", f"busybox@{D}", "busybox"),
    ("docker.io/user/app:1", "user/app:1", "user/app"),
    ("index.docker.io/library/busybox", "busybox", "busybox"),
    ("docker.io/library/a/b", "library/a/b", "library/a/b"),
    ("quay.io/library/busybox", "quay.io/library/busybox", "quay.io/library/busybox"),
    ("localhost/busybox:latest", "localhost/busybox:latest", "localhost/busybox"),
    ("busybox", "busybox", "busybox"),
    # dropping docker.io would turn "localhost" / "a.b" into a domain: keep it
    ("docker.io/localhost/foo", "docker.io/localhost/foo", "docker.io/localhost/foo"),
    ("docker.io/a.b/foo", "docker.io/a.b/foo", "docker.io/a.b/foo"),
]


@pytest.mark.parametrize("text,familiar,familiar_name", FAMILIAR)
def test_familiar(text, familiar, familiar_name):
    ref = parse(text)
    assert ref.familiar() == familiar
    assert ref.familiar_name() == familiar_name


# --------------------------------------------------------------------------- normalisation

NORMALIZE = [
    # input, docker hub form, local form
    ("busybox", "docker.io/library/busybox:latest", "localhost/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "localhost/busybox:1.36"),
    ("user/app", "docker.io/user/app:latest", "localhost/user/app:latest"),
    ("a/b/c", "docker.io/a/b/c:latest", "localhost/a/b/c:latest"),
    (f"busybox@{D}", f"docker.io/library/busybox@{D}", f"localhost/busybox@{D}"),
    (f"busybox:1@{D}", f"docker.io/library/busybox:1@{D}", f"localhost/busybox:1@{D}"),
    ("quay.io/x/y", "quay.io/x/y:latest", "quay.io/x/y:latest"),
    ("quay.io/y", "quay.io/y:latest", "quay.io/y:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest", "docker.io/library/busybox:latest"),
    ("index.docker.io/busybox:1", "docker.io/library/busybox:1", "docker.io/library/busybox:1"),
    ("index.docker.io/user/app", "docker.io/user/app:latest", "docker.io/user/app:latest"),
    ("localhost/foo", "localhost/foo:latest", "localhost/foo:latest"),
    ("localhost:5000/foo", "localhost:5000/foo:latest", "localhost:5000/foo:latest"),
    ("[::1]:5000/foo", "[::1]:5000/foo:latest", "[::1]:5000/foo:latest"),
]


@pytest.mark.parametrize("text,hub,local", NORMALIZE)
def test_normalize(text, hub, local):
    assert str(normalize_docker_hub(text)) == hub
    assert str(normalize_local(text)) == local
    assert str(normalize(text, default_domain="docker.io")) == hub
    # idempotent
    assert normalize_docker_hub(hub) == normalize_docker_hub(text)
    assert normalize_local(local) == normalize_local(text)


def test_normalize_without_default_domain():
    ref = normalize("busybox")
    assert (ref.domain, ref.path, ref.tag) == (None, "busybox", "latest")
    assert str(normalize("user/app:2")) == "user/app:2"
    assert str(normalize("example.org:8080/app", default_domain="registry.local")) == (
        "example.org:8080/app:latest"
    )
    assert str(normalize("app", default_domain="registry.local")) == "registry.local/app:latest"


@pytest.mark.parametrize("fn", [normalize, normalize_local, normalize_docker_hub])
def test_normalize_refuses_full_id(fn):
    with pytest.raises(InvalidArgument, match="64-byte hexadecimal"):
        fn("a" * 64)


@pytest.mark.parametrize("text", ["Busybox", "foo:", "", "foo@sha256:1"])
def test_normalize_invalid(text):
    with pytest.raises(InvalidArgument):
        normalize_docker_hub(text)


@pytest.mark.parametrize(
    "text,short",
    [
        ("busybox", True),
        ("busybox:1", True),
        ("user/app", True),
        (f"user/app@{D}", True),
        ("localhost:5000", True),  # the name "localhost" with tag "5000"
        ("quay.io/x", False),
        ("localhost/x", False),
        ("localhost:5000/x", False),
        ("Registry/x", False),
        ("[::1]/x", False),
    ],
)
def test_is_short_name(text, short):
    assert is_short_name(text) is short


def test_is_short_name_invalid_raises():
    with pytest.raises(InvalidArgument):
        is_short_name("Busybox")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("foo", ("foo", None, None)),
        ("foo:1", ("foo", "1", None)),
        (f"foo@{D}", ("foo", None, D)),
        (f"foo:1@{D}", ("foo", "1", D)),
        ("host:5000/foo", ("host:5000/foo", None, None)),
        ("host:5000/foo:1", ("host:5000/foo", "1", None)),
        ("foo:", ("foo", "", None)),
        ("foo@", ("foo", None, "")),
        ("[::1]:5/a:b@x", ("[::1]:5/a", "b", "x")),
    ],
)
def test_split_tag_digest(text, expected):
    assert split_tag_digest(text) == expected


# --------------------------------------------------------------------------- tags, digests, IDs


@pytest.mark.parametrize("tag", ["latest", "1", "_", "v1.0-rc.1", "A" * 128])
def test_validate_tag_ok(tag):
    assert validate_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", ".x", "-x", "a b", "a/b", "ä", "A" * 129])
def test_validate_tag_bad(tag):
    with pytest.raises(InvalidArgument):
        validate_tag(tag)


def test_digest_helpers():
    assert split_digest(D) == ("sha256", "a" * 64)
    assert split_digest(D512) == ("sha512", "b" * 128)
    assert validate_digest("sha256:" + "c" * 64) == "sha256:" + "c" * 64
    data = b"hello"
    assert digest_bytes(data) == "sha256:" + hashlib.sha256(data).hexdigest()
    assert digest_bytes(data, "sha512") == "sha512:" + hashlib.sha512(data).hexdigest()
    with pytest.raises(InvalidArgument):
        digest_bytes(data, "md5")


@pytest.mark.parametrize(
    "digest",
    [
        "",
        "sha256",
        "sha256:",
        ":" + "a" * 64,
        "sha256:" + "a" * 63,
        "sha256:" + "A" * 64,
        "sha256:" + "a" * 63 + "g",
        "sha1:" + "a" * 40,
        "sha256+b64u:" + "a" * 64,
        "sha512:" + "a" * 64,
        "sha384:" + "a" * 96,  # not an algorithm kpod verifies
        None,
    ],
)
def test_digest_invalid(digest):
    with pytest.raises(InvalidArgument):
        validate_digest(digest)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text,ok",
    [
        ("abc", True),
        ("0123456789abcdef", True),
        ("a" * 64, True),
        ("sha256:abc", True),
        ("sha256:" + "f" * 64, True),
        ("ab", False),
        ("a" * 65, False),
        ("ABC", False),
        ("xyz", False),
        ("sha256:", False),
        ("sha256:ab", False),
        ("sha512:abc", False),
        ("busybox", False),
        ("", False),
        (None, False),
    ],
)
def test_looks_like_id(text, ok):
    assert looks_like_id(text) is ok


def test_id_hex():
    assert id_hex("sha256:abcd") == "abcd"
    assert id_hex("abcd") == "abcd"
    with pytest.raises(InvalidArgument):
        id_hex("busybox")


def test_reference_keeps_the_frozen_dataclass_behaviour():
    ref = Reference("quay.io", "a/b", "1")
    assert repr(ref) == "Reference(domain='quay.io', path='a/b', tag='1', digest=None)"
    assert ref == Reference("quay.io", "a/b", tag="1") and ref != Reference("quay.io", "a/b")
    assert hash(ref) == hash(Reference("quay.io", "a/b", "1"))
    assert ref != ("quay.io", "a/b", "1", None)
    for attr in ("tag", "extra"):
        with pytest.raises(AttributeError):
            setattr(ref, attr, "2")
    with pytest.raises(AttributeError):
        del ref.tag
    import copy
    import pickle

    assert copy.deepcopy(ref) == ref and pickle.loads(pickle.dumps(ref)) == ref
