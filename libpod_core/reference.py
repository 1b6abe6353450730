"""Image references: the docker/distribution reference grammar, podman-style normalisation.

A reference names an image in a repository::

    reference := name [ ":" tag ] [ "@" digest ]
    name      := [ domain "/" ] path
    domain    := host [ ":" port ]          host: DNS name, IPv4, or [IPv6]
    path      := component ( "/" component )*
    component := [a-z0-9]+ ( ( [._] | "__" | "-"+ ) [a-z0-9]+ )*
    tag       := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest    := algorithm ":" hex

The first ``/``-separated component of a name is a domain only when it could not be a
repository path component: it contains ``.`` or ``:``, is ``localhost``, or has an uppercase
letter.  Otherwise the whole name is the path (``user/app`` has no domain).

:func:`parse` keeps exactly what the user wrote.  The ``normalize*`` functions fill in what a
user may leave out: the domain (``docker.io`` for Docker Hub style, ``localhost`` for podman's
local images), Docker Hub's ``library/`` namespace, and the ``latest`` tag.

Digest helpers live here too (:func:`validate_digest`, :func:`split_digest`,
:func:`digest_bytes`) because references, manifests and stores all share them.
"""

from __future__ import annotations

import re

from libpod_core.errors import InvalidArgument
from libpod_core.lazyre import lazy

__all__ = [
    "DEFAULT_DOMAIN",
    "LEGACY_DEFAULT_DOMAIN",
    "LOCAL_DOMAIN",
    "OFFICIAL_REPO_NAMESPACE",
    "DEFAULT_TAG",
    "NAME_TOTAL_LENGTH_MAX",
    "TAG_LENGTH_MAX",
    "Reference",
    "parse",
    "normalize",
    "normalize_local",
    "normalize_docker_hub",
    "is_short_name",
    "split_tag_digest",
    "validate_tag",
    "validate_digest",
    "split_digest",
    "digest_bytes",
    "looks_like_id",
    "id_hex",
]

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
LOCAL_DOMAIN = "localhost"
OFFICIAL_REPO_NAMESPACE = "library"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255
TAG_LENGTH_MAX = 128

# ---------------------------------------------------------------------------------------------
# Grammar.  All patterns are ASCII-only (Go's RE2 \w is ASCII) and are used with fullmatch.

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_PATH_RE = lazy(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*", re.ASCII)
_PATH_COMPONENT_RE = lazy(_PATH_COMPONENT, re.ASCII)

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST_RE = lazy(rf"(?:{_DOMAIN_NAME}|{_IPV6})", re.ASCII)
_PORT_RE = lazy(r"[0-9]+", re.ASCII)

_TAG_RE = lazy(r"[\w][\w.-]{0,127}", re.ASCII)

_DIGEST_ALGO_RE = lazy(r"[A-Za-z][A-Za-z0-9]*(?:[+._-][A-Za-z][A-Za-z0-9]*)*", re.ASCII)
_DIGEST_HEX_RE = lazy(r"[0-9a-fA-F]{32,}", re.ASCII)
# Algorithms kpod verifies (the same set as libpod_core.digest): lowercase hex, fixed length.
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha512": 128}
_LOWER_HEX_RE = lazy(r"[0-9a-f]+", re.ASCII)

_ID_RE = lazy(r"(?:sha256:)?([0-9a-f]{3,64})", re.ASCII)
_FULL_ID_RE = lazy(r"[0-9a-f]{64}", re.ASCII)


_MESSAGE_INPUT_MAX = 300


def _shown(text: str, limit: int = _MESSAGE_INPUT_MAX) -> str:
    """*text* for an error message: control characters escaped, long inputs cut, so the
    message stays one short line."""
    cut = len(text) > limit
    shown = text[:limit] if cut else text
    if not shown.isprintable():
        shown = shown.encode("unicode_escape").decode("ascii")
    return shown + f"...({len(text)} characters)" if cut else shown


def _fail(text: str, reason: str) -> InvalidArgument:
    return InvalidArgument(f'invalid reference format "{_shown(text)}": {reason}')


# ---------------------------------------------------------------------------------------------
# Digests


def split_digest(digest: str) -> tuple[str, str]:
    """Validate *digest* (``algorithm:hex``) and return ``(algorithm, hex)``.

    Raises :class:`InvalidArgument` with the reason.  Only the algorithms kpod can verify
    (sha256, sha512) are accepted, and their hex must be lowercase and of the exact
    length.
    """
    if not isinstance(digest, str):
        raise InvalidArgument(f"invalid digest {digest!r}: not a string")
    shown = _shown(digest)
    algo, sep, encoded = digest.partition(":")
    if not sep:
        raise InvalidArgument(f'invalid digest "{shown}": missing "algorithm:" prefix')
    if not _DIGEST_ALGO_RE.fullmatch(algo):
        raise InvalidArgument(f'invalid digest "{shown}": malformed algorithm "{_shown(algo, 80)}"')
    if not _DIGEST_HEX_RE.fullmatch(encoded):
        raise InvalidArgument(
            f'invalid digest "{shown}": the encoded part must be at least 32 hexadecimal characters'
        )
    want = _DIGEST_HEX_LENGTHS.get(algo)
    if want is None:
        raise InvalidArgument(
            f'invalid digest "{shown}": unsupported digest algorithm "{_shown(algo, 80)}"'
        )
    if len(encoded) != want:
        raise InvalidArgument(
            f'invalid digest "{shown}": {algo} needs {want} hexadecimal characters, '
            f"got {len(encoded)}"
        )
    if not _LOWER_HEX_RE.fullmatch(encoded):
        raise InvalidArgument(f'invalid digest "{shown}": hexadecimal must be lowercase')
    return algo, encoded


def validate_digest(digest: str) -> str:
    """Return *digest* unchanged if it is valid, else raise :class:`InvalidArgument`."""
    split_digest(digest)
    return digest


def digest_bytes(data: bytes, algorithm: str = "sha256") -> str:
    """The digest string (``sha256:<hex>``) of *data*."""
    if algorithm not in _DIGEST_HEX_LENGTHS:
        raise InvalidArgument(f'unsupported digest algorithm "{algorithm}"')
    import hashlib

    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


# ---------------------------------------------------------------------------------------------
# IDs


def looks_like_id(s: str) -> bool:
    """True if *s* could be an image/container ID or a prefix of one.

    That is 3 to 64 lowercase hexadecimal characters, optionally after ``sha256:``.
    """
    return isinstance(s, str) and _ID_RE.fullmatch(s) is not None


def id_hex(s: str) -> str:
    """The hexadecimal part of an ID or ID prefix (``sha256:`` removed); raises if not an ID."""
    m = _ID_RE.fullmatch(s) if isinstance(s, str) else None
    if m is None:
        raise InvalidArgument(
            f'"{_shown(str(s))}" is not an ID (3 to 64 lowercase hexadecimal characters)'
        )
    return m.group(1)


# ---------------------------------------------------------------------------------------------
# Pieces


def split_tag_digest(s: str) -> tuple[str, str | None, str | None]:
    """Split ``name[:tag][@digest]`` into ``(name, tag, digest)`` without validating.

    The tag is the text after the last ``:`` that follows the last ``/`` (a ``:`` before a
    ``/`` belongs to the domain's port).  A missing part is ``None``; a present but empty part
    (``name:`` or ``name@``) is ``""``, which :func:`parse` rejects.
    """
    name, at, digest = s.partition("@")
    tag: str | None = None
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, (digest if at else None)


def _looks_like_domain(component: str) -> bool:
    return (
        "." in component
        or ":" in component
        or component == LOCAL_DOMAIN
        or component != component.lower()
    )


def _split_domain(name: str) -> tuple[str | None, str]:
    first, slash, rest = name.partition("/")
    if slash and _looks_like_domain(first):
        return first, rest
    return None, name


def _check_domain(domain: str, text: str) -> None:
    if domain == "":
        raise _fail(text, "empty domain")
    host, port = domain, None
    if domain.startswith("["):
        end = domain.find("]")
        if end == -1:
            raise _fail(text, f'invalid domain "{_shown(domain, 80)}": unterminated IPv6 address')
        host, rest = domain[: end + 1], domain[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise _fail(text, f'invalid domain "{_shown(domain, 80)}"')
            port = rest[1:]
    elif ":" in domain:
        host, _, port = domain.partition(":")
    if not _HOST_RE.fullmatch(host):
        raise _fail(text, f'invalid domain "{_shown(domain, 80)}"')
    if port is not None and not _PORT_RE.fullmatch(port):
        raise _fail(text, f'invalid port "{_shown(port, 80)}" in domain "{_shown(domain, 80)}"')


def _check_path(path: str, text: str) -> None:
    if _PATH_RE.fullmatch(path):
        return
    if path == "":
        raise _fail(text, "repository name is empty")
    if _PATH_RE.fullmatch(path.lower()):
        raise _fail(text, "repository name must be lowercase")
    for component in path.split("/"):
        if component == "":
            raise _fail(text, "repository name has an empty path component")
        if not _PATH_COMPONENT_RE.fullmatch(component.lower()):
            raise _fail(
                text,
                f'invalid repository path component "{_shown(component, 80)}" (lowercase '
                "letters, digits and single separators . _ __ - only, starting and ending "
                "with a letter or digit)",
            )
    raise _fail(text, "invalid repository name")  # pragma: no cover - unreachable


def validate_tag(tag: str, text: str | None = None) -> str:
    """Return *tag* if valid, else raise :class:`InvalidArgument` naming *text* (or the tag)."""
    text = tag if text is None else text
    if not isinstance(tag, str) or tag == "":
        raise _fail(text, "empty tag")
    if len(tag) > TAG_LENGTH_MAX:
        raise _fail(text, f"tag is longer than {TAG_LENGTH_MAX} characters")
    if not _TAG_RE.fullmatch(tag):
        raise _fail(
            text,
            f'invalid tag "{_shown(tag, 80)}" '
            "(letters, digits, _ . - only, not starting with . or -)",
        )
    return tag


def _check_digest(digest: str, text: str) -> None:
    if digest == "":
        raise _fail(text, "empty digest")
    try:
        split_digest(digest)
    except InvalidArgument as exc:
        raise _fail(text, exc.message) from None


def _check_name_length(name: str, text: str) -> None:
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise _fail(
            text, f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        )


# ---------------------------------------------------------------------------------------------
# Reference


class Reference:
    """A parsed image reference.  Construction validates every field.

    ``parse(str(ref)) == ref`` always holds. Immutable, compared and hashed by its four
    fields. (A plain class with what ``@dataclass(frozen=True)`` generated: every command
    that names an image imports this module, and the dataclass machinery costs half a
    millisecond of start-up.)
    """

    __match_args__ = ("domain", "path", "tag", "digest")

    domain: str | None
    path: str
    tag: str | None
    digest: str | None

    def __init__(self, domain: str | None, path: str, tag: str | None = None, digest: str | None = None) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "domain", domain)
        setattr_(self, "path", path)
        setattr_(self, "tag", tag)
        setattr_(self, "digest", digest)
        self.__post_init__()

    def __post_init__(self) -> None:
        text = self._text()
        if self.domain is not None:
            _check_domain(self.domain, text)
        elif "/" in self.path and _looks_like_domain(self.path.partition("/")[0]):
            raise _fail(text, "the first path component would be read as a domain")
        _check_name_length(self.name, text)
        _check_path(self.path, text)
        if self.tag is not None:
            validate_tag(self.tag, text)
        if self.digest is not None:
            _check_digest(self.digest, text)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return (self.domain, self.path, self.tag, self.digest) == (
                other.domain, other.path, other.tag, other.digest)  # type: ignore[attr-defined]
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.domain, self.path, self.tag, self.digest))

    def __repr__(self) -> str:
        return (f"{self.__class__.__qualname__}(domain={self.domain!r}, path={self.path!r}, tag={self.tag!r}, "
                f"digest={self.digest!r})")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}")

    def _text(self) -> str:
        s = self.path if self.domain is None else f"{self.domain}/{self.path}"
        if self.tag is not None:
            s += f":{self.tag}"
        if self.digest is not None:
            s += f"@{self.digest}"
        return s

    @property
    def name(self) -> str:
        """``domain/path``, or just ``path`` without a domain: the repository's name."""
        return self.path if self.domain is None else f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        return self._text()

    def is_tagged(self) -> bool:
        return self.tag is not None

    def is_digested(self) -> bool:
        return self.digest is not None

    def with_tag(self, tag: str) -> Reference:
        """The same repository with *tag* (a digest, if any, is kept)."""
        return Reference(self.domain, self.path, tag, self.digest)

    def with_digest(self, digest: str) -> Reference:
        """The same repository with *digest* (a tag, if any, is kept)."""
        return Reference(self.domain, self.path, self.tag, digest)

    def bare(self) -> Reference:
        """The repository alone: no tag, no digest."""
        return Reference(self.domain, self.path)

    def familiar_name(self) -> str:
        """The repository name as Docker users write it (``docker.io/library/x`` -> ``x``)."""
        if self.domain not in (DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN):
            return self.name
        path = self.path
        namespace, slash, rest = path.partition("/")
        if slash and namespace == OFFICIAL_REPO_NAMESPACE and "/" not in rest:
            path = rest
        first = path.partition("/")[0]
        if "/" in path and _looks_like_domain(first):
            # Dropping the domain would make the first component read as one.
            return self.name
        return path

    def familiar(self) -> str:
        """The reference as Docker users write it: ``docker.io/library/x:tag`` -> ``x:tag``."""
        s = self.familiar_name()
        if self.tag is not None:
            s += f":{self.tag}"
        if self.digest is not None:
            s += f"@{self.digest}"
        return s


def parse(s: str) -> Reference:
    """Parse ``[domain[:port]/]path[:tag][@digest]`` exactly as written (no defaults added).

    Raises :class:`InvalidArgument` naming *s* and the reason.
    """
    if not isinstance(s, str):
        raise InvalidArgument(
            f"invalid reference format: expected a string, got {type(s).__name__}"
        )
    if s == "":
        raise InvalidArgument('invalid reference format "": empty reference')
    name, tag, digest = split_tag_digest(s)
    if name == "":
        raise _fail(s, "repository name is empty")
    _check_name_length(name, s)
    domain, path = _split_domain(name)
    if domain is not None:
        _check_domain(domain, s)
    _check_path(path, s)
    if tag is not None:
        validate_tag(tag, s)
    if digest is not None:
        _check_digest(digest, s)
    return Reference(domain, path, tag, digest)


# ---------------------------------------------------------------------------------------------
# Normalisation


def normalize(s: str, *, default_domain: str | None = None) -> Reference:
    """Parse *s* and fill in the parts a user may leave out.

    - Without a domain, *default_domain* is used (when given; otherwise the domain stays
      ``None``).
    - ``index.docker.io`` becomes ``docker.io``; a one-component path on ``docker.io`` gets the
      ``library/`` namespace.
    - Without a tag and without a digest, the tag is ``latest``.

    A bare 64-character hex string is refused: it is an image ID, not a name.
    """
    if isinstance(s, str) and _FULL_ID_RE.fullmatch(s):
        raise InvalidArgument(
            f'invalid repository name "{s}": cannot specify 64-byte hexadecimal strings'
        )
    ref = parse(s)
    domain = ref.domain
    if domain is None and default_domain is not None:
        domain = default_domain
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    path = ref.path
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"{OFFICIAL_REPO_NAMESPACE}/{path}"
    tag = ref.tag
    if tag is None and ref.digest is None:
        tag = DEFAULT_TAG
    if (domain, path, tag) == (ref.domain, ref.path, ref.tag):
        return ref
    return Reference(domain, path, tag, ref.digest)


def normalize_local(s: str) -> Reference:
    """Podman's local-image form: ``busybox`` -> ``localhost/busybox:latest``."""
    return normalize(s, default_domain=LOCAL_DOMAIN)


def normalize_docker_hub(s: str) -> Reference:
    """Docker Hub form: ``busybox`` -> ``docker.io/library/busybox:latest``,
    ``user/app`` -> ``docker.io/user/app:latest``."""
    return normalize(s, default_domain=DEFAULT_DOMAIN)


def is_short_name(s: str) -> bool:
    """True if *s* names no domain (``busybox``, ``user/app:1``).

    Raises :class:`InvalidArgument` if *s* is not a valid reference.
    """
    return parse(s).domain is None
