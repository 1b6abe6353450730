"""The signature policy: policy.json (containers-policy.json(5)) and its verification.

Loading is strict: an unknown or duplicated field, a wrong type, a missing ``default``, an
empty requirement list, or a requirement missing what it needs is a :class:`ConfigError`
naming the file (and the transport and scope).

Evaluation (:meth:`Policy.check`) picks the requirements of the most specific scope for the
image's transport -- for ``docker``: the exact reference (tag or digest), the repository, each
parent namespace, the host[:port], wildcard domains ``*.example.com`` (most specific first),
then the transport default ``""`` -- or the global ``default``. Every requirement must accept:

- ``insecureAcceptAnything`` accepts; ``reject`` rejects;
- ``signedBy`` (GPG "simple signing"): at least one signature must verify with one of the
  requirement's keys (gpg in a throw-away home), carry type ``atomic container signature``,
  the manifest's digest, and an identity accepted by ``signedIdentity``;
- ``sigstoreSigned``: at least one sigstore (cosign) signature must verify with the public key
  (ECDSA P-256/P-384, RSA PKCS#1 v1.5, Ed25519; the ``cryptography`` package when installed,
  else the openssl command), with type ``cosign container image signature``, the manifest's
  digest, and an accepted identity.

``signedIdentity``: ``matchRepoDigestOrExact`` (default), ``matchExact``, ``matchRepository``,
``exactReference``, ``exactRepository``, ``remapIdentity``.

``kpod image trust show/set`` use :func:`trust_show` and :func:`trust_set`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ..errors import ConfigError, InvalidArgument, PolicyDenied
from .. import reference as _reference

__all__ = [
    "SignedIdentity",
    "Requirement",
    "Policy",
    "default_policy_path",
    "load_policy",
    "check",
    "check_image_source",
    "docker_namespaces",
    "validate_docker_scope",
    "trust_show",
    "trust_set",
    "SIMPLE_SIGNING_TYPE",
    "SIGSTORE_PAYLOAD_TYPE",
    "SIGSTORE_SIGNATURE_ANNOTATION",
    "SIGSTORE_PAYLOAD_MEDIA_TYPE",
]

SYSTEM_POLICY = "/etc/containers/policy.json"
SIMPLE_SIGNING_TYPE = "atomic container signature"
SIGSTORE_PAYLOAD_TYPE = "cosign container image signature"
SIGSTORE_SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIGSTORE_PAYLOAD_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
MAX_PAYLOAD = 4 * 1024 * 1024

_REQ_FIELDS = {
    "insecureAcceptAnything": {"type"},
    "reject": {"type"},
    "signedBy": {"type", "keyType", "keyPath", "keyPaths", "keyData", "signedIdentity"},
    "sigstoreSigned": {"type", "keyPath", "keyPaths", "keyData", "keyDatas", "fulcio", "rekorPublicKeyPath",
                       "rekorPublicKeyData", "signedIdentity"},
}
_IDENTITY_FIELDS = {
    "matchExact": {"type"},
    "matchRepoDigestOrExact": {"type"},
    "matchRepository": {"type"},
    "exactReference": {"type", "dockerReference"},
    "exactRepository": {"type", "dockerRepository"},
    "remapIdentity": {"type", "prefix", "signedPrefix"},
}


# ------------------------------------------------------------------------------------------
# Structures


@dataclass(frozen=True)
class SignedIdentity:
    type: str = "matchRepoDigestOrExact"
    docker_reference: str | None = None
    docker_repository: str | None = None
    prefix: str | None = None
    signed_prefix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type}
        if self.docker_reference is not None:
            d["dockerReference"] = self.docker_reference
        if self.docker_repository is not None:
            d["dockerRepository"] = self.docker_repository
        if self.prefix is not None:
            d["prefix"] = self.prefix
            d["signedPrefix"] = self.signed_prefix
        return d


@dataclass
class Requirement:
    type: str
    key_type: str | None = None
    key_paths: list[str] = field(default_factory=list)
    key_data: bytes | None = None
    signed_identity: SignedIdentity = field(default_factory=SignedIdentity)
    raw: dict[str, Any] = field(default_factory=dict)

    def key_blobs(self) -> list[bytes]:
        """The key material (keyring files' content or keyData)."""
        if self.key_data is not None:
            return [self.key_data]
        out = []
        for p in self.key_paths:
            try:
                with open(p, "rb") as f:
                    out.append(f.read())
            except OSError as exc:
                raise PolicyDenied(f"reading key {p} named in the signature policy: {exc.strerror or exc}") from None
        return out


def _dup_check(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate field {k!r}")
        out[k] = v
    return out


def _bad(source: str, where: str, msg: str) -> ConfigError:
    return ConfigError(f"{source}: {where}: {msg}" if where else f"{source}: {msg}")


def _parse_named(s: str) -> _reference.Reference:
    """A reference in docker's fully expanded form without adding a tag (docker.io/library/...)."""
    ref = _reference.parse(s)
    domain = ref.domain or _reference.DEFAULT_DOMAIN
    if domain == _reference.LEGACY_DEFAULT_DOMAIN:
        domain = _reference.DEFAULT_DOMAIN
    path = ref.path
    if domain == _reference.DEFAULT_DOMAIN and "/" not in path:
        path = f"{_reference.OFFICIAL_REPO_NAMESPACE}/{path}"
    return _reference.Reference(domain, path, ref.tag, ref.digest)


def _parse_identity(source: str, where: str, value: Any) -> SignedIdentity:
    if not isinstance(value, dict):
        raise _bad(source, where, "signedIdentity must be a JSON object")
    t = value.get("type")
    if t not in _IDENTITY_FIELDS:
        raise _bad(source, where, f"unknown signedIdentity type {t!r} (known: {', '.join(_IDENTITY_FIELDS)})")
    for k in value:
        if k not in _IDENTITY_FIELDS[t]:
            raise _bad(source, where, f"unknown field {k!r} in signedIdentity {t}")
    if t == "exactReference":
        r = value.get("dockerReference")
        if not isinstance(r, str):
            raise _bad(source, where, "exactReference needs a dockerReference string")
        try:
            ref = _parse_named(r)
        except InvalidArgument as exc:
            raise _bad(source, where, f"dockerReference: {exc.message}") from None
        if ref.tag is None and ref.digest is None:
            raise _bad(source, where, f"dockerReference {r!r} must have a tag or digest")
        return SignedIdentity(t, docker_reference=r)
    if t == "exactRepository":
        r = value.get("dockerRepository")
        if not isinstance(r, str):
            raise _bad(source, where, "exactRepository needs a dockerRepository string")
        try:
            _parse_named(r)
        except InvalidArgument as exc:
            raise _bad(source, where, f"dockerRepository: {exc.message}") from None
        return SignedIdentity(t, docker_repository=r)
    if t == "remapIdentity":
        p, sp = value.get("prefix"), value.get("signedPrefix")
        for name, v in (("prefix", p), ("signedPrefix", sp)):
            if not isinstance(v, str):
                raise _bad(source, where, f"remapIdentity needs a {name} string")
            _check_remap_prefix(source, where, name, v)
        return SignedIdentity(t, prefix=p, signed_prefix=sp)
    return SignedIdentity(t)


def _check_remap_prefix(source: str, where: str, name: str, v: str) -> None:
    host, slash, _ = v.partition("/")
    try:
        ok = _reference.parse(f"{host}/x").domain == host
        if ok and slash:
            ref = _reference.parse(v)
            ok = ref.tag is None and ref.digest is None
    except InvalidArgument:
        ok = False
    if not ok:
        raise _bad(source, where, f"remapIdentity {name} {v!r} must be host[:port] or a repository "
                                  "namespace without a tag or digest")


def _parse_requirement(source: str, where: str, value: Any) -> Requirement:
    if not isinstance(value, dict):
        raise _bad(source, where, "a policy requirement must be a JSON object")
    t = value.get("type")
    if t not in _REQ_FIELDS:
        raise _bad(source, where, f"unknown policy requirement type {t!r} (known: {', '.join(_REQ_FIELDS)})")
    for k in value:
        if k not in _REQ_FIELDS[t]:
            raise _bad(source, where, f"unknown field {k!r} in requirement {t}")
    req = Requirement(t, raw=dict(value))
    if t in ("insecureAcceptAnything", "reject"):
        return req
    if t == "signedBy":
        kt = value.get("keyType")
        if kt != "GPGKeys":
            raise _bad(source, where, f"signedBy keyType must be \"GPGKeys\", got {kt!r}")
        req.key_type = kt
    if t == "sigstoreSigned":
        for k in ("fulcio", "rekorPublicKeyPath", "rekorPublicKeyData", "keyDatas"):
            if k in value:
                raise _bad(source, where, f"sigstoreSigned field {k!r} is not supported by kpod (use keyPath or keyData)")
    present = [k for k in ("keyPath", "keyPaths", "keyData") if k in value]
    if len(present) != 1:
        raise _bad(source, where, f"{t} needs exactly one of keyPath, keyPaths and keyData")
    k = present[0]
    if k == "keyPath":
        if not isinstance(value[k], str) or not value[k]:
            raise _bad(source, where, "keyPath must be a non-empty string")
        req.key_paths = [value[k]]
    elif k == "keyPaths":
        v = value[k]
        if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v):
            raise _bad(source, where, "keyPaths must be a non-empty array of strings")
        req.key_paths = list(v)
    else:
        v = value[k]
        if not isinstance(v, str):
            raise _bad(source, where, "keyData must be a base64 string")
        try:
            req.key_data = base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            raise _bad(source, where, "keyData is not valid base64") from None
    if "signedIdentity" in value:
        req.signed_identity = _parse_identity(source, where, value["signedIdentity"])
    return req


def _parse_requirements(source: str, where: str, value: Any) -> list[Requirement]:
    if not isinstance(value, list):
        raise _bad(source, where, "policy requirements must be a JSON array")
    if not value:
        raise _bad(source, where, "no policy requirements (use [{\"type\": \"insecureAcceptAnything\"}] to accept anything)")
    return [_parse_requirement(source, f"{where}[{i}]", r) for i, r in enumerate(value)]


def validate_docker_scope(scope: str) -> None:
    """Raise InvalidArgument unless *scope* can match docker references: ``host[:port]``,
    ``host[:port]/ns[/repo[:tag|@digest]]`` in the fully expanded form, or ``*.domain``."""
    if scope == "":
        return
    if scope != scope.strip() or any(c.isspace() for c in scope):
        raise InvalidArgument(f"invalid docker scope {scope!r}: contains whitespace")
    if scope.startswith(("http://", "https://")):
        raise InvalidArgument(f"invalid docker scope {scope!r}: must not contain a URL scheme")
    if scope.startswith("*."):
        body = scope[2:]
        if "/" in body or ":" in body or "*" in body or not body:
            raise InvalidArgument(f"invalid docker scope {scope!r}: a wildcard scope is *.domain only")
        try:
            ok = _reference.parse(f"{body}/x").domain == body
        except InvalidArgument:
            ok = False
        if not ok:
            raise InvalidArgument(f"invalid docker scope {scope!r}: {body!r} is not a domain")
        return
    if "*" in scope:
        raise InvalidArgument(f"invalid docker scope {scope!r}: a wildcard is only allowed as a leading *.")
    host, slash, _ = scope.partition("/")
    try:
        host_ok = _reference.parse(f"{host}/x").domain == host
    except InvalidArgument:
        host_ok = False
    looks_like_host = "." in host or ":" in host or host == "localhost"
    if not host_ok or not looks_like_host:
        raise InvalidArgument(
            f"invalid docker scope {scope!r}: expected the fully expanded form host[:port][/namespace/repo] "
            "(for example docker.io/library/busybox, not busybox)"
        )
    if slash:
        try:
            _reference.parse(scope)
        except InvalidArgument as exc:
            raise InvalidArgument(f"invalid docker scope {scope!r}: {exc.message}") from None


def docker_namespaces(ref: _reference.Reference) -> list[str]:
    """Policy scopes less specific than the reference itself, most specific first:
    the repository, parent namespaces, host[:port], then ``*.`` wildcard domains."""
    name = ref.name
    out = []
    while True:
        out.append(name)
        slash = name.rfind("/")
        if slash == -1:
            break
        name = name[:slash]
    host = name
    if host.startswith("["):
        return out
    host = host.rsplit(":", 1)[0] if ":" in host else host
    while True:
        dot = host.find(".")
        if dot == -1:
            break
        host = host[dot + 1 :]
        out.append("*." + host)
    return out


# ------------------------------------------------------------------------------------------
# Policy


def default_policy_path(environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    home = env.get("HOME") or os.path.expanduser("~")
    xdg = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    user = os.path.join(xdg, "containers", "policy.json")
    return user if os.path.exists(user) else SYSTEM_POLICY


class Policy:
    def __init__(self, default: list[Requirement], transports: dict[str, dict[str, list[Requirement]]],
                 source: str = "policy.json", raw: dict[str, Any] | None = None):
        self.default = default
        self.transports = transports
        self.source = source
        self.raw = raw if raw is not None else {}

    # -- loading --------------------------------------------------------------------------
    @classmethod
    def from_bytes(cls, data: bytes | str, source: str = "policy.json") -> "Policy":
        if isinstance(data, bytes):
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError:
                raise ConfigError(f"{source}: not valid UTF-8") from None
        try:
            doc = json.loads(data, object_pairs_hook=_dup_check)
        except ValueError as exc:
            raise ConfigError(f"{source}: invalid policy JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"{source}: the policy must be a JSON object")
        for k in doc:
            if k not in ("default", "transports"):
                raise ConfigError(f"{source}: unknown field {k!r} (known: default, transports)")
        if "default" not in doc:
            raise ConfigError(f"{source}: the \"default\" policy is missing")
        default = _parse_requirements(source, "default", doc["default"])
        transports: dict[str, dict[str, list[Requirement]]] = {}
        ts = doc.get("transports", {})
        if ts is None:
            ts = {}
        if not isinstance(ts, dict):
            raise ConfigError(f"{source}: \"transports\" must be a JSON object")
        for tname, scopes in ts.items():
            if not tname:
                raise ConfigError(f"{source}: transports: empty transport name")
            if not isinstance(scopes, dict):
                raise ConfigError(f"{source}: transports.{tname} must be a JSON object of scopes")
            out: dict[str, list[Requirement]] = {}
            for scope, reqs in scopes.items():
                where = f'transports.{tname}["{scope}"]'
                if tname == "docker":
                    try:
                        validate_docker_scope(scope)
                    except InvalidArgument as exc:
                        raise ConfigError(f"{source}: {where}: {exc.message}") from None
                out[scope] = _parse_requirements(source, where, reqs)
            transports[tname] = out
        return cls(default, transports, source, doc)

    @classmethod
    def load(cls, path: str | None = None) -> "Policy":
        path = path or default_policy_path()
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise ConfigError(f"no signature policy file {path}: create one (see containers-policy.json(5)) "
                              "or pass --signature-policy") from None
        except OSError as exc:
            raise ConfigError(f"reading signature policy {path}: {exc.strerror or exc}") from None
        return cls.from_bytes(data, path)

    # -- lookup ---------------------------------------------------------------------------
    def requirements_for(self, transport: str, identity: str, namespaces: Iterable[str]) -> tuple[str, list[Requirement]]:
        """``(scope description, requirements)`` for an image."""
        scopes = self.transports.get(transport)
        if scopes is not None:
            if identity in scopes:
                return f'transports.{transport}["{identity}"]', scopes[identity]
            for ns in namespaces:
                if ns in scopes:
                    return f'transports.{transport}["{ns}"]', scopes[ns]
            if "" in scopes:
                return f'transports.{transport}[""]', scopes[""]
        return "default", self.default

    def requirements_for_reference(self, ref: Any) -> tuple[str, list[Requirement]]:
        return self.requirements_for(ref.transport.name, ref.policy_configuration_identity(),
                                     ref.policy_configuration_namespaces())

    # -- evaluation -----------------------------------------------------------------------
    def check(
        self,
        src_ref: Any,
        manifest_raw: bytes,
        get_signatures: Callable[[], list[bytes]] | None = None,
        get_sigstore_signatures: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> str:
        """Accept the image or raise :class:`PolicyDenied` saying why. Returns the scope used."""
        scope, reqs = self.requirements_for_reference(src_ref)
        image_ref = src_ref.docker_reference() if hasattr(src_ref, "docker_reference") else None
        cache: dict[str, Any] = {}

        def sigs() -> list[bytes]:
            if "gpg" not in cache:
                cache["gpg"] = list(get_signatures() if get_signatures else [])
            return cache["gpg"]

        def sigstore_sigs() -> list[dict[str, Any]]:
            if "sigstore" not in cache:
                cache["sigstore"] = list(get_sigstore_signatures() if get_sigstore_signatures else [])
            return cache["sigstore"]

        where = f"{src_ref} (policy {self.source}, {scope})"
        for req in reqs:
            if req.type == "insecureAcceptAnything":
                continue
            if req.type == "reject":
                raise PolicyDenied(f"Running image {src_ref} is rejected by policy ({self.source}, {scope})")
            if req.type == "signedBy":
                found = sigs()
                if not found:
                    raise PolicyDenied(f"{where}: a signature was required, but no signature exists")
                reasons = []
                with _GPG(req.key_blobs()) as gpg:
                    for i, sig in enumerate(found):
                        try:
                            payload, fpr = gpg.verify(sig)
                            _check_payload(payload, SIMPLE_SIGNING_TYPE, manifest_raw, req.signed_identity, image_ref)
                            break
                        except _Rejected as exc:
                            reasons.append(f"signature {i + 1}: {exc}")
                    else:
                        raise PolicyDenied(f"{where}: none of the signatures were accepted: {'; '.join(reasons)}")
                continue
            if req.type == "sigstoreSigned":
                found = sigstore_sigs()
                if not found:
                    raise PolicyDenied(f"{where}: a sigstore signature was required, but no signature exists")
                keys = req.key_blobs()
                reasons = []
                for i, sig in enumerate(found):
                    try:
                        payload = _verify_sigstore(sig, keys)
                        _check_payload(payload, SIGSTORE_PAYLOAD_TYPE, manifest_raw, req.signed_identity, image_ref)
                        break
                    except _Rejected as exc:
                        reasons.append(f"signature {i + 1}: {exc}")
                else:
                    raise PolicyDenied(f"{where}: none of the sigstore signatures were accepted: {'; '.join(reasons)}")
                continue
            raise PolicyDenied(f"{where}: unknown requirement type {req.type!r}")  # pragma: no cover
        return scope

    def to_dict(self) -> dict[str, Any]:
        return self.raw


def load_policy(ctx: Any = None, path: str | None = None) -> Policy:
    """The policy for a SystemContext: its ``signature_policy``, the engine config's
    ``signature_policy``, else ~/.config/containers/policy.json or the system file."""
    if path is None and ctx is not None:
        path = getattr(ctx, "signature_policy", None)
        cfg = getattr(ctx, "config", None)
        if path is None and cfg is not None:
            try:
                path = cfg.get("signature_policy")
            except (KeyError, AttributeError):
                path = None
    return Policy.load(path)


def check(src_ref: Any, manifest_raw: bytes, get_signatures=None, get_sigstore_signatures=None, *,
          policy: Policy | None = None, ctx: Any = None) -> str:
    """Evaluate the policy (loaded from *ctx* unless given) for an image; raise PolicyDenied."""
    return (policy or load_policy(ctx)).check(src_ref, manifest_raw, get_signatures, get_sigstore_signatures)


def check_image_source(source: Any, *, policy: Policy | None = None, ctx: Any = None) -> str:
    """Evaluate the policy for an open ImageSource (its top-level manifest and signatures)."""
    raw, _ = source.get_manifest()
    return check(source.reference, raw, lambda: source.get_signatures(),
                 lambda: source.get_sigstore_signatures(), policy=policy, ctx=ctx)


# ------------------------------------------------------------------------------------------
# Payloads and identities


class _Rejected(Exception):
    pass


def _check_payload(payload: bytes, want_type: str, manifest_raw: bytes, si: SignedIdentity,
                   image_ref: _reference.Reference | None) -> None:
    if len(payload) > MAX_PAYLOAD:
        raise _Rejected("signature payload too large")
    try:
        doc = json.loads(payload, object_pairs_hook=_dup_check)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Rejected(f"invalid signature payload JSON: {exc}") from None
    if not isinstance(doc, dict) or set(doc) - {"critical", "optional"} or "critical" not in doc:
        raise _Rejected("invalid signature payload: expected {\"critical\": ..., \"optional\": ...}")
    crit = doc["critical"]
    if not isinstance(crit, dict) or set(crit) != {"type", "image", "identity"}:
        raise _Rejected("invalid signature payload: critical must hold exactly type, image and identity")
    if "optional" in doc and not isinstance(doc["optional"], dict):
        raise _Rejected("invalid signature payload: optional must be an object")
    if crit["type"] != want_type:
        raise _Rejected(f"unexpected signature type {crit['type']!r} (expected {want_type!r})")
    image, ident = crit["image"], crit["identity"]
    if not isinstance(image, dict) or set(image) != {"docker-manifest-digest"} or \
            not isinstance(image["docker-manifest-digest"], str):
        raise _Rejected("invalid signature payload: critical.image must hold docker-manifest-digest")
    if not isinstance(ident, dict) or set(ident) != {"docker-reference"} or \
            not isinstance(ident["docker-reference"], str):
        raise _Rejected("invalid signature payload: critical.identity must hold docker-reference")
    signed_digest = image["docker-manifest-digest"]
    algo, _, _hex = signed_digest.partition(":")
    if algo not in ("sha256", "sha512"):
        raise _Rejected(f"unsupported digest {signed_digest!r} in the signature")
    actual = f"{algo}:{hashlib.new(algo, manifest_raw).hexdigest()}"
    if actual != signed_digest:
        raise _Rejected(f"the signature is for manifest {signed_digest}, the image's manifest is {actual}")
    try:
        signed_ref = _parse_named(ident["docker-reference"])
    except InvalidArgument as exc:
        raise _Rejected(f"invalid docker-reference in the signature: {exc.message}") from None
    if not match_identity(si, image_ref, signed_ref):
        raise _Rejected(
            f"the signature claims identity {str(signed_ref)!r}, which does not match {_describe(si, image_ref)}"
        )


def _describe(si: SignedIdentity, image_ref: _reference.Reference | None) -> str:
    if si.type == "exactReference":
        return f"exactReference {si.docker_reference!r}"
    if si.type == "exactRepository":
        return f"exactRepository {si.docker_repository!r}"
    return f"{si.type} of {str(image_ref)!r}" if image_ref is not None else si.type


def _prefix_match(s: str, prefix: str) -> bool:
    if not s.startswith(prefix):
        return False
    if len(s) == len(prefix):
        return True
    c = s[len(prefix)]
    return c == "/" or (c in ":@" and "/" in prefix)


def match_identity(si: SignedIdentity, image_ref: _reference.Reference | None,
                   signed_ref: _reference.Reference) -> bool:
    """Whether a signature claiming *signed_ref* is acceptable for *image_ref* under *si*."""
    t = si.type
    if t == "exactReference":
        return str(signed_ref) == str(_parse_named(si.docker_reference or ""))
    if t == "exactRepository":
        return signed_ref.name == _parse_named(si.docker_repository or "").name
    if image_ref is None:
        return False
    if t == "remapIdentity":
        s = str(image_ref)
        if _prefix_match(s, si.prefix or ""):
            try:
                image_ref = _reference.parse((si.signed_prefix or "") + s[len(si.prefix or ""):])
            except InvalidArgument:
                return False
        t = "matchRepoDigestOrExact"
    if t == "matchExact":
        if image_ref.tag is None and image_ref.digest is None:
            return False
        return str(signed_ref) == str(image_ref)
    if t == "matchRepository":
        return signed_ref.name == image_ref.name
    # matchRepoDigestOrExact
    if image_ref.tag is not None and image_ref.digest is None:
        return str(signed_ref) == str(image_ref)
    if image_ref.digest is not None:
        return signed_ref.name == image_ref.name
    return False


# ------------------------------------------------------------------------------------------
# GPG


class _GPG:
    """A throw-away gpg home with the requirement's keys imported."""

    def __init__(self, key_blobs: list[bytes]):
        self.blobs = key_blobs
        self.home: str | None = None
        self.fingerprints: set[str] = set()

    def __enter__(self):
        gpg = shutil.which("gpg")
        if gpg is None:
            raise PolicyDenied("signature verification needs gpg, which is not installed")
        self.gpg = gpg
        self.home = tempfile.mkdtemp(prefix="kpod-gpg-")
        os.chmod(self.home, 0o700)
        for i, blob in enumerate(self.blobs):
            p = os.path.join(self.home, f"key-{i}")
            with open(p, "wb") as f:
                f.write(blob)
            self._run(["--import", p])
        out = self._run(["--with-colons", "--list-keys"]).stdout.decode("utf-8", "replace")
        for line in out.splitlines():
            fields = line.split(":")
            if fields[0] == "fpr" and len(fields) > 9:
                self.fingerprints.add(fields[9].upper())
        if not self.fingerprints:
            self.__exit__(None, None, None)
            raise PolicyDenied("no public keys could be imported from the keys named in the signature policy")
        return self

    def _run(self, args: list[str], *, check: bool = False) -> subprocess.CompletedProcess:
        cmd = [self.gpg, "--homedir", self.home, "--batch", "--no-tty", "--no-permission-warning",
               "--no-auto-check-trustdb", "--trust-model", "always", *args]
        return subprocess.run(cmd, capture_output=True, timeout=60, env={**os.environ, "LC_ALL": "C"})

    def verify(self, sig: bytes) -> tuple[bytes, str]:
        d = tempfile.mkdtemp(dir=self.home)
        sig_path, out_path = os.path.join(d, "sig"), os.path.join(d, "payload")
        with open(sig_path, "wb") as f:
            f.write(sig)
        proc = self._run(["--status-fd", "1", "--output", out_path, "--decrypt", sig_path])
        status = [line.split()[1:] for line in proc.stdout.decode("utf-8", "replace").splitlines()
                  if line.startswith("[GNUPG:] ")]
        kinds = [s[0] for s in status if s]
        for bad in ("BEGIN_DECRYPTION", "DECRYPTION_OKAY", "ENC_TO"):
            if bad in kinds:
                raise _Rejected("the signature is an encrypted message, not a signed one")
        for s in status:
            if s and s[0] in ("ERRSIG", "NO_PUBKEY"):
                keyid = s[1] if len(s) > 1 else "?"
                raise _Rejected(f"signed by key {keyid}, which is not one of the policy's keys")
            if s and s[0] in ("BADSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG"):
                raise _Rejected({"BADSIG": "invalid signature (BADSIG)", "EXPSIG": "the signature has expired",
                                 "EXPKEYSIG": "signed by an expired key", "REVKEYSIG": "signed by a revoked key"}[s[0]])
        valid = [s for s in status if s and s[0] == "VALIDSIG"]
        if proc.returncode != 0 or len(valid) != 1 or "GOODSIG" not in kinds:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise _Rejected("not a valid signature" + (f" ({err[-1]})" if err else ""))
        fields = valid[0]
        candidates = {fields[1].upper()}
        if len(fields) > 10:
            candidates.add(fields[10].upper())
        if not candidates & self.fingerprints:
            raise _Rejected(f"signed by key {fields[1]}, which is not one of the policy's keys")
        try:
            with open(out_path, "rb") as f:
                payload = f.read(MAX_PAYLOAD + 1)
        except OSError:
            raise _Rejected("gpg gave no signed content") from None
        return payload, fields[1].upper()

    def __exit__(self, *exc):
        if self.home:
            gpgconf = shutil.which("gpgconf")
            if gpgconf and any(n.startswith("S.") for n in os.listdir(self.home)):
                subprocess.run([gpgconf, "--homedir", self.home, "--kill", "all"], capture_output=True, timeout=30)
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None


# ------------------------------------------------------------------------------------------
# sigstore


def _pem_blocks(data: bytes) -> list[bytes]:
    text = data.decode("ascii", "replace")
    out = []
    while True:
        start = text.find("-----BEGIN ")
        if start == -1:
            break
        end_marker = text.find("-----END ", start)
        if end_marker == -1:
            break
        end = text.find("-----", end_marker + 9)
        if end == -1:
            break
        out.append(text[start : end + 5].encode("ascii") + b"\n")
        text = text[end + 5 :]
    return out


def _verify_sigstore(sig: dict[str, Any], key_blobs: list[bytes]) -> bytes:
    payload = sig.get("payload")
    if not isinstance(payload, (bytes, bytearray)):
        raise _Rejected("sigstore signature without a payload")
    mt = sig.get("media_type") or sig.get("mediaType")
    if mt is not None and mt != SIGSTORE_PAYLOAD_MEDIA_TYPE:
        raise _Rejected(f"unexpected sigstore payload media type {mt!r}")
    annotations = sig.get("annotations") or {}
    b64 = annotations.get(SIGSTORE_SIGNATURE_ANNOTATION)
    if not isinstance(b64, str) or not b64:
        raise _Rejected(f"no {SIGSTORE_SIGNATURE_ANNOTATION} annotation")
    try:
        raw_sig = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise _Rejected("the signature annotation is not valid base64") from None
    keys = [k for blob in key_blobs for k in (_pem_blocks(blob) or [blob])]
    for key in keys:
        if verify_raw_signature(key, bytes(payload), raw_sig):
            return bytes(payload)
    raise _Rejected("the signature does not verify with the policy's public key(s)")


def verify_raw_signature(public_key_pem: bytes, data: bytes, signature: bytes) -> bool:
    """Verify *signature* over *data* with a PEM public key (ECDSA/RSA with SHA-256, Ed25519)."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
    except ImportError:
        return _verify_openssl(public_key_pem, data, signature)
    try:
        key = serialization.load_pem_public_key(public_key_pem)
    except (ValueError, TypeError) as exc:
        raise _Rejected(f"invalid public key in the policy: {exc}") from None
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            raise _Rejected(f"unsupported public key type {type(key).__name__}")
    except InvalidSignature:
        return False
    return True


_ED25519_OID = b"\x06\x03\x2b\x65\x70"


def _verify_openssl(public_key_pem: bytes, data: bytes, signature: bytes) -> bool:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise _Rejected("sigstore verification needs the cryptography package or the openssl command")
    blocks = _pem_blocks(public_key_pem)
    if not blocks or b"PUBLIC KEY" not in blocks[0]:
        raise _Rejected("invalid public key in the policy: not a PEM public key")
    body = b"".join(l for l in blocks[0].splitlines() if l and not l.startswith(b"-----"))
    try:
        der = base64.b64decode(body)
    except (binascii.Error, ValueError):
        raise _Rejected("invalid public key in the policy: bad PEM") from None
    with tempfile.TemporaryDirectory(prefix="kpod-sigstore-") as d:
        kp, dp, sp = (os.path.join(d, n) for n in ("key.pem", "data", "sig"))
        for p, b in ((kp, blocks[0]), (dp, data), (sp, signature)):
            with open(p, "wb") as f:
                f.write(b)
        if _ED25519_OID in der[:16]:
            cmd = [openssl, "pkeyutl", "-verify", "-pubin", "-inkey", kp, "-rawin", "-in", dp, "-sigfile", sp]
        else:
            cmd = [openssl, "dgst", "-sha256", "-verify", kp, "-signature", sp, dp]
        proc = subprocess.run(cmd, capture_output=True, timeout=60)
        out = proc.stdout + proc.stderr
        if proc.returncode == 0:
            return True
        if b"unable to load" in out.lower() or b"could not read" in out.lower():
            raise _Rejected("invalid public key in the policy: " + out.decode("utf-8", "replace").strip().splitlines()[0])
        return False


# ------------------------------------------------------------------------------------------
# kpod image trust


_TRUST_TYPES = {"insecureAcceptAnything": "accept", "reject": "reject", "signedBy": "signed",
                "sigstoreSigned": "sigstoreSigned"}


def _gpg_ids(blobs: list[bytes]) -> list[str]:
    gpg = shutil.which("gpg")
    if gpg is None:
        return []
    ids = []
    with tempfile.TemporaryDirectory(prefix="kpod-gpg-") as home:
        os.chmod(home, 0o700)
        for blob in blobs:
            proc = subprocess.run([gpg, "--homedir", home, "--batch", "--no-tty", "--with-colons", "--show-keys"],
                                  input=blob, capture_output=True, timeout=60)
            for line in proc.stdout.decode("utf-8", "replace").splitlines():
                f = line.split(":")
                if f[0] == "pub" and len(f) > 4:
                    ids.append(f[4])
    return ids


def trust_show(policy_path: str | None = None, registries_d: str | None = None, *,
               raw: bool = False) -> list[dict[str, Any]] | dict[str, Any]:
    """Rows for ``kpod image trust show``: ``{"transport", "name", "type", "gpg_ids",
    "sigstore"}`` per scope (``name`` "default" for the global default, transport "all").
    With *raw*, the policy document itself (``--raw``)."""
    policy = Policy.load(policy_path)
    if raw:
        return policy.raw
    from .registries_d import RegistriesD

    try:
        regd = RegistriesD.load(registries_d)
    except ConfigError:
        regd = None

    def rows(transport: str, name: str, reqs: list[Requirement]) -> list[dict[str, Any]]:
        out = []
        for r in reqs:
            lookaside = ""
            if regd is not None and transport == "docker":
                ns = regd.docker.get(name)
                if ns is not None and ns.lookaside:
                    lookaside = ns.lookaside
            out.append({
                "transport": transport,
                "name": name,
                "type": _TRUST_TYPES.get(r.type, r.type),
                "gpg_ids": _gpg_ids(r.key_blobs()) if r.type == "signedBy" else [],
                "keys": list(r.key_paths),
                "sigstore": lookaside,
            })
        return out

    result = rows("all", "default", policy.default)
    for tname in sorted(policy.transports):
        for scope in sorted(policy.transports[tname]):
            result.extend(rows(tname, scope or "default", policy.transports[tname][scope]))
    return result


def trust_set(policy_path: str | None, scope: str, trust_type: str, pubkeys: list[str] | None = None, *,
              transport: str = "docker") -> str:
    """``kpod image trust set``: make *scope* (``default`` for the global default, else a
    registry/repository) ``accept``, ``reject``, ``signedBy`` (GPG keys *pubkeys*) or
    ``sigstoreSigned`` (public key files). Writes the policy atomically; returns its path."""
    path = policy_path or default_policy_path()
    aliases = {"accept": "insecureAcceptAnything", "insecureAcceptAnything": "insecureAcceptAnything",
               "reject": "reject", "signedBy": "signedBy", "sigstoreSigned": "sigstoreSigned"}
    t = aliases.get(trust_type)
    if t is None:
        raise InvalidArgument(f"invalid trust type {trust_type!r}: must be accept, reject, signedBy or sigstoreSigned")
    pubkeys = list(pubkeys or [])
    if t in ("signedBy", "sigstoreSigned") and not pubkeys:
        raise InvalidArgument(f"at least one public key must be given for type {trust_type}")
    if t not in ("signedBy", "sigstoreSigned") and pubkeys:
        raise InvalidArgument(f"public keys can only be given for signedBy or sigstoreSigned, not {trust_type}")
    for k in pubkeys:
        if not os.path.isfile(k):
            raise InvalidArgument(f"public key {k}: no such file")
    if t == "sigstoreSigned" and len(pubkeys) > 1:
        raise InvalidArgument("sigstoreSigned takes one public key")
    if scope != "default" and transport == "docker":
        validate_docker_scope(scope)
    if os.path.exists(path):
        with open(path, "rb") as f:
            Policy.from_bytes(f.read(), path)  # refuse to rewrite a broken file
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    else:
        doc = {"default": [{"type": "insecureAcceptAnything"}]}
    reqs: list[dict[str, Any]]
    if t == "signedBy":
        reqs = [{"type": "signedBy", "keyType": "GPGKeys", **({"keyPath": os.path.abspath(pubkeys[0])}
                if len(pubkeys) == 1 else {"keyPaths": [os.path.abspath(k) for k in pubkeys]})}]
    elif t == "sigstoreSigned":
        reqs = [{"type": "sigstoreSigned", "keyPath": os.path.abspath(pubkeys[0])}]
    else:
        reqs = [{"type": t}]
    if scope == "default":
        doc["default"] = reqs
    else:
        doc.setdefault("transports", {}).setdefault(transport, {})[scope] = reqs
    data = (json.dumps(doc, indent=4) + "\n").encode()
    Policy.from_bytes(data, path)
    from ..fileutil import write_atomic

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomic(path, data, 0o644)
    return path
