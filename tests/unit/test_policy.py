"""policy.json: strict parsing, scope matching like containers/image, identities, payloads,
sigstore signature checks (openssl-made keys), trust show/set."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess

import pytest

from libpod_core.errors import ConfigError, InvalidArgument, PolicyDenied
from libpod_core.reference import parse
from libpod_core.registry import policy as pol
from libpod_core.registry.policy import Policy, SignedIdentity, docker_namespaces, match_identity
from libpod_core.transports.docker import DockerTransport

T = DockerTransport()
ACCEPT = [{"type": "insecureAcceptAnything"}]
REJECT = [{"type": "reject"}]
D = "sha256:" + "a" * 64


def P(doc, source="/etc/containers/policy.json"):
    return Policy.from_bytes(json.dumps(doc) if not isinstance(doc, str) else doc, source)


def ref(s):
    return T.parse_reference(s)


# ------------------------------------------------------------------------------ parsing errors


GPG = {"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k.gpg"}

ERRORS = [
    ("{", "invalid policy JSON"),
    ("[]", "must be a JSON object"),
    ({}, '"default" policy is missing'),
    ({"default": []}, "no policy requirements"),
    ({"default": ACCEPT, "extra": 1}, "unknown field 'extra'"),
    ('{"default": [{"type": "reject"}], "default": []}', "duplicate field 'default'"),
    ({"default": [{"type": "acceptEverything"}]}, "unknown policy requirement type 'acceptEverything'"),
    ({"default": [{}]}, "unknown policy requirement type None"),
    ({"default": [{"type": "reject", "why": "x"}]}, "unknown field 'why' in requirement reject"),
    ({"default": ["reject"]}, "must be a JSON object"),
    ({"default": {"type": "reject"}}, "must be a JSON array"),
    ({"default": [{"type": "signedBy", "keyPath": "/k"}]}, 'keyType must be "GPGKeys"'),
    ({"default": [{"type": "signedBy", "keyType": "X509", "keyPath": "/k"}]}, 'keyType must be "GPGKeys"'),
    ({"default": [{"type": "signedBy", "keyType": "GPGKeys"}]}, "exactly one of keyPath, keyPaths and keyData"),
    ({"default": [{**GPG, "keyData": "AAAA"}]}, "exactly one of keyPath, keyPaths and keyData"),
    ({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyData": "not base64!"}]}, "keyData is not valid base64"),
    ({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPaths": []}]}, "keyPaths must be a non-empty array"),
    ({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": ""}]}, "keyPath must be a non-empty string"),
    ({"default": [{**GPG, "signedIdentity": {"type": "matchAnything"}}]}, "unknown signedIdentity type 'matchAnything'"),
    ({"default": [{**GPG, "signedIdentity": {"type": "matchExact", "x": 1}}]}, "unknown field 'x' in signedIdentity"),
    ({"default": [{**GPG, "signedIdentity": {"type": "exactReference"}}]}, "needs a dockerReference"),
    ({"default": [{**GPG, "signedIdentity": {"type": "exactReference", "dockerReference": "quay.io/a/b"}}]},
     "must have a tag or digest"),
    ({"default": [{**GPG, "signedIdentity": {"type": "exactRepository", "dockerRepository": "BAD REF"}}]},
     "dockerRepository"),
    ({"default": [{**GPG, "signedIdentity": {"type": "remapIdentity", "prefix": "quay.io/a:tag",
                                              "signedPrefix": "x.example"}}]}, "remapIdentity prefix"),
    ({"default": [{**GPG, "signedIdentity": {"type": "remapIdentity", "prefix": "quay.io"}}]}, "needs a signedPrefix"),
    ({"default": [{**GPG, "signedIdentity": "matchExact"}]}, "signedIdentity must be a JSON object"),
    ({"default": [{"type": "sigstoreSigned", "keyPath": "/k.pub", "fulcio": {}}]}, "'fulcio' is not supported"),
    ({"default": [{"type": "sigstoreSigned"}]}, "exactly one of keyPath"),
    ({"default": ACCEPT, "transports": []}, '"transports" must be a JSON object'),
    ({"default": ACCEPT, "transports": {"docker": []}}, "transports.docker must be a JSON object"),
    ({"default": ACCEPT, "transports": {"docker": {"busybox": ACCEPT}}}, "fully expanded form"),
    ({"default": ACCEPT, "transports": {"docker": {"*.example.com/foo": ACCEPT}}}, "wildcard scope is *.domain only"),
    ({"default": ACCEPT, "transports": {"docker": {"example.*.com": ACCEPT}}}, "wildcard"),
    ({"default": ACCEPT, "transports": {"docker": {"https://quay.io": ACCEPT}}}, "URL scheme"),
    ({"default": ACCEPT, "transports": {"docker": {"quay.io/a b": ACCEPT}}}, "whitespace"),
    ({"default": ACCEPT, "transports": {"docker": {"quay.io/UPPER": ACCEPT}}}, "invalid docker scope"),
    ({"default": ACCEPT, "transports": {"docker": {"quay.io": []}}}, 'transports.docker["quay.io"]: no policy requirements'),
    ({"default": ACCEPT, "transports": {"docker": {"quay.io": [{"type": "nope"}]}}}, 'transports.docker["quay.io"][0]'),
]


@pytest.mark.parametrize("doc,msg", ERRORS)
def test_parse_errors_name_the_file(doc, msg):
    with pytest.raises(ConfigError) as ei:
        P(doc)
    assert msg in str(ei.value)
    assert str(ei.value).startswith("/etc/containers/policy.json: ")


def test_valid_policies_parse():
    p = P({
        "default": REJECT,
        "transports": {
            "docker": {
                "": ACCEPT,
                "*.example.com": ACCEPT,
                "localhost:5000": ACCEPT,
                "docker.io/library/busybox:latest": ACCEPT,
                f"quay.io/a/b@{D}": ACCEPT,
                "quay.io/signed": [{**GPG, "signedIdentity": {"type": "remapIdentity", "prefix": "quay.io/signed",
                                                               "signedPrefix": "vendor.example"}}],
                "quay.io/cosign": [{"type": "sigstoreSigned", "keyData": base64.b64encode(b"k").decode(),
                                    "signedIdentity": {"type": "matchRepository"}}],
            },
            "docker-daemon": {"": ACCEPT},  # a transport kpod lacks is still valid
            "dir": {"": ACCEPT},
        },
    })
    assert p.transports["docker"]["quay.io/cosign"][0].key_data == b"k"
    assert p.transports["docker"]["quay.io/signed"][0].signed_identity.signed_prefix == "vendor.example"
    assert p.default[0].type == "reject"


def test_load_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no signature policy file"):
        Policy.load(str(tmp_path / "nope.json"))


# ------------------------------------------------------------------------------ scopes


def test_docker_namespaces():
    assert docker_namespaces(parse("a.b.example.com:5000/ns/sub/repo:tag")) == [
        "a.b.example.com:5000/ns/sub/repo", "a.b.example.com:5000/ns/sub", "a.b.example.com:5000/ns",
        "a.b.example.com:5000", "*.b.example.com", "*.example.com", "*.com"]
    assert docker_namespaces(parse("localhost/x")) == ["localhost/x", "localhost"]


SCOPES = {
    "default": REJECT,
    "transports": {"docker": {
        "": [{"type": "insecureAcceptAnything"}],
        "docker.io/library/busybox:latest": ACCEPT,
        "docker.io/library/busybox": ACCEPT,
        "docker.io/library": ACCEPT,
        "docker.io": ACCEPT,
        "quay.io:5000": ACCEPT,
        "*.example.com": ACCEPT,
        "*.sub.example.com": ACCEPT,
        f"reg.example.org/app@{D}": ACCEPT,
    }},
}


@pytest.mark.parametrize("image,scope", [
    ("docker://busybox", 'transports.docker["docker.io/library/busybox:latest"]'),
    ("docker://busybox:1.36", 'transports.docker["docker.io/library/busybox"]'),
    ("docker://alpine", 'transports.docker["docker.io/library"]'),
    ("docker://user/app", 'transports.docker["docker.io"]'),
    ("docker://quay.io:5000/a/b", 'transports.docker["quay.io:5000"]'),
    ("docker://quay.io/a/b", 'transports.docker[""]'),
    ("docker://x.example.com/a", 'transports.docker["*.example.com"]'),
    ("docker://x.sub.example.com:5000/a", 'transports.docker["*.sub.example.com"]'),
    ("docker://example.com/a", 'transports.docker[""]'),
    (f"docker://reg.example.org/app@{D}", f'transports.docker["reg.example.org/app@{D}"]'),
    ("docker://reg.example.org/app:v1", 'transports.docker[""]'),
])
def test_scope_lookup(image, scope):
    from libpod_core.transports.base import split_transport

    _, rest = split_transport(image)
    r = T.parse_reference(rest)
    assert P(SCOPES).requirements_for_reference(r)[0] == scope


def test_transport_without_scopes_uses_global_default():
    p = P({"default": REJECT, "transports": {"dir": {"": ACCEPT}}})
    assert p.requirements_for_reference(ref("//quay.io/a/b"))[0] == "default"
    assert p.requirements_for("dir", "/some/path", [])[0] == 'transports.dir[""]'


def test_reject_and_accept():
    p = P({"default": REJECT, "transports": {"docker": {"quay.io/ok": ACCEPT,
                                                          "quay.io/both": ACCEPT + REJECT}}})
    assert p.check(ref("//quay.io/ok/x:1"), b"{}") == 'transports.docker["quay.io/ok"]'
    with pytest.raises(PolicyDenied, match="rejected by policy"):
        p.check(ref("//quay.io/other/x:1"), b"{}")
    with pytest.raises(PolicyDenied, match="rejected by policy"):  # every requirement must pass
        p.check(ref("//quay.io/both/x:1"), b"{}")


def test_signature_requirement_without_signatures():
    p = P({"default": [GPG]})
    called = []
    with pytest.raises(PolicyDenied, match="no signature exists"):
        p.check(ref("//quay.io/a/b:1"), b"{}", lambda: called.append(1) or [])
    assert called == [1]
    p = P({"default": [{"type": "sigstoreSigned", "keyPath": "/k.pub"}]})
    with pytest.raises(PolicyDenied, match="no signature exists"):
        p.check(ref("//quay.io/a/b:1"), b"{}", None, lambda: [])


# ------------------------------------------------------------------------------ identities


def SI(t, **kw):
    return SignedIdentity(t, **kw)


IDENTITY = [
    # type, image, signed, ok
    (SI("matchRepoDigestOrExact"), "quay.io/a/b:1", "quay.io/a/b:1", True),
    (SI("matchRepoDigestOrExact"), "quay.io/a/b:1", "quay.io/a/b:2", False),
    (SI("matchRepoDigestOrExact"), "quay.io/a/b:1", "quay.io/a/b", False),
    (SI("matchRepoDigestOrExact"), f"quay.io/a/b@{D}", "quay.io/a/b:anything", True),
    (SI("matchRepoDigestOrExact"), f"quay.io/a/b@{D}", "quay.io/a/c:1", False),
    (SI("matchExact"), "quay.io/a/b:1", "quay.io/a/b:1", True),
    (SI("matchExact"), f"quay.io/a/b@{D}", "quay.io/a/b:1", False),
    (SI("matchExact"), f"quay.io/a/b@{D}", f"quay.io/a/b@{D}", True),
    (SI("matchRepository"), "quay.io/a/b:1", "quay.io/a/b:2", True),
    (SI("matchRepository"), "quay.io/a/b:1", "quay.io/a/b", True),
    (SI("matchRepository"), "quay.io/a/b:1", "quay.io/a/bb:1", False),
    (SI("matchRepository"), "docker.io/library/busybox:1", "busybox:7", True),  # signatures are normalised
    (SI("exactReference", docker_reference="vendor.example/p:1"), "quay.io/a/b:1", "vendor.example/p:1", True),
    (SI("exactReference", docker_reference="vendor.example/p:1"), "quay.io/a/b:1", "vendor.example/p:2", False),
    (SI("exactRepository", docker_repository="vendor.example/p"), "quay.io/a/b:1", "vendor.example/p:9", True),
    (SI("exactRepository", docker_repository="vendor.example/p"), "quay.io/a/b:1", "vendor.example/q:9", False),
    (SI("remapIdentity", prefix="mirror.local/vendor", signed_prefix="vendor.example"),
     "mirror.local/vendor/prod/img:1", "vendor.example/prod/img:1", True),
    (SI("remapIdentity", prefix="mirror.local/vendor", signed_prefix="vendor.example"),
     "mirror.local/vendor/prod/img:1", "mirror.local/vendor/prod/img:1", False),
    (SI("remapIdentity", prefix="mirror.local/vendor", signed_prefix="vendor.example"),
     "mirror.local/vendorx/img:1", "mirror.local/vendorx/img:1", True),  # no match: used unchanged
    (SI("remapIdentity", prefix="mirror.local/vendor", signed_prefix="vendor.example"),
     f"mirror.local/vendor/img@{D}", "vendor.example/img:any", True),
]


@pytest.mark.parametrize("si,image,signed,ok", IDENTITY)
def test_match_identity(si, image, signed, ok):
    assert match_identity(si, parse(image), pol._parse_named(signed)) is ok


def test_identity_without_docker_reference():
    assert not match_identity(SI("matchRepository"), None, parse("quay.io/a/b:1"))
    assert match_identity(SI("exactRepository", docker_repository="quay.io/a/b"), None, parse("quay.io/a/b:1"))


# ------------------------------------------------------------------------------ payloads


MANIFEST = b'{"schemaVersion":2}'
MD = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


def payload(**over):
    doc = {"critical": {"type": pol.SIMPLE_SIGNING_TYPE, "image": {"docker-manifest-digest": MD},
                        "identity": {"docker-reference": "quay.io/a/b:1"}},
           "optional": {"creator": "test"}}
    for k, v in over.items():
        if k == "critical_extra":
            doc["critical"]["extra"] = v
        elif v is None:
            doc.pop(k, None)
        else:
            doc[k] = v
    return json.dumps(doc).encode()


@pytest.mark.parametrize("raw,msg", [
    (b"not json", "invalid signature payload JSON"),
    (b"[]", "expected"),
    (payload(optional=None), None),
    (payload(critical_extra=1), "exactly type, image and identity"),
    (payload(extra={}), "expected"),
    (json.dumps({"critical": {"type": "other", "image": {"docker-manifest-digest": MD},
                              "identity": {"docker-reference": "quay.io/a/b:1"}}}).encode(), "unexpected signature type"),
    (json.dumps({"critical": {"type": pol.SIMPLE_SIGNING_TYPE, "image": {"docker-manifest-digest": D},
                              "identity": {"docker-reference": "quay.io/a/b:1"}}}).encode(), "the signature is for manifest"),
    (json.dumps({"critical": {"type": pol.SIMPLE_SIGNING_TYPE, "image": {"docker-manifest-digest": MD, "x": 1},
                              "identity": {"docker-reference": "quay.io/a/b:1"}}}).encode(), "critical.image"),
    (json.dumps({"critical": {"type": pol.SIMPLE_SIGNING_TYPE, "image": {"docker-manifest-digest": MD},
                              "identity": {"docker-reference": "NOT A REF"}}}).encode(), "invalid docker-reference"),
    (json.dumps({"critical": {"type": pol.SIMPLE_SIGNING_TYPE, "image": {"docker-manifest-digest": MD},
                              "identity": {"docker-reference": "quay.io/a/b:2"}}}).encode(), "does not match"),
])
def test_payload_checks(raw, msg):
    si, image = SignedIdentity(), parse("quay.io/a/b:1")
    if msg is None:
        pol._check_payload(raw, pol.SIMPLE_SIGNING_TYPE, MANIFEST, si, image)
        return
    with pytest.raises(pol._Rejected, match=msg):
        pol._check_payload(raw, pol.SIMPLE_SIGNING_TYPE, MANIFEST, si, image)


# ------------------------------------------------------------------------------ sigstore


OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl is needed")


def keypair(tmp_path, kind):
    priv, pub = str(tmp_path / f"{kind}.key"), str(tmp_path / f"{kind}.pub")
    args = {"ec": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "ed25519": ["-algorithm", "ED25519"],
            "rsa": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]}[kind]
    subprocess.run([OPENSSL, "genpkey", *args, "-out", priv], check=True, capture_output=True)
    subprocess.run([OPENSSL, "pkey", "-in", priv, "-pubout", "-out", pub], check=True, capture_output=True)
    return priv, pub


def sign(priv, kind, data, tmp_path):
    if kind == "ed25519":
        f = tmp_path / "data"
        f.write_bytes(data)
        return subprocess.run([OPENSSL, "pkeyutl", "-sign", "-inkey", priv, "-rawin", "-in", str(f)],
                              check=True, capture_output=True).stdout
    return subprocess.run([OPENSSL, "dgst", "-sha256", "-sign", priv], input=data, check=True,
                          capture_output=True).stdout


@needs_openssl
@pytest.mark.parametrize("kind", ["ec", "ed25519", "rsa"])
def test_verify_raw_signature_with_openssl(tmp_path, kind, monkeypatch):
    priv, pub = keypair(tmp_path, kind)
    data = b"payload bytes"
    sig = sign(priv, kind, data, tmp_path)
    pem = open(pub, "rb").read()
    assert pol._verify_openssl(pem, data, sig)
    assert not pol._verify_openssl(pem, data + b"!", sig)
    assert pol.verify_raw_signature(pem, data, sig)  # cryptography when installed, else openssl
    assert not pol.verify_raw_signature(pem, b"other", sig)


@needs_openssl
def test_sigstore_requirement(tmp_path):
    priv, pub = keypair(tmp_path, "ec")
    _, other = keypair(tmp_path, "ed25519")
    image = ref("//quay.io/a/b:1")
    body = json.dumps({"critical": {"type": pol.SIGSTORE_PAYLOAD_TYPE, "image": {"docker-manifest-digest": MD},
                                    "identity": {"docker-reference": "quay.io/a/b:1"}}, "optional": None}).encode()
    good = {"payload": body, "media_type": pol.SIGSTORE_PAYLOAD_MEDIA_TYPE,
            "annotations": {pol.SIGSTORE_SIGNATURE_ANNOTATION: base64.b64encode(sign(priv, "ec", body, tmp_path)).decode()}}
    p = P({"default": [{"type": "sigstoreSigned", "keyPath": pub}]})
    with pytest.raises(PolicyDenied, match="optional must be an object"):
        p.check(image, MANIFEST, None, lambda: [good])
    body = body.replace(b'"optional": null', b'"optional": {}')
    good["payload"] = body
    good["annotations"] = {pol.SIGSTORE_SIGNATURE_ANNOTATION: base64.b64encode(sign(priv, "ec", body, tmp_path)).decode()}
    assert p.check(image, MANIFEST, None, lambda: [good]) == "default"
    bad_sig = {**good, "annotations": {pol.SIGSTORE_SIGNATURE_ANNOTATION: base64.b64encode(b"x" * 70).decode()}}
    no_ann = {**good, "annotations": {}}
    wrong_mt = {**good, "media_type": "text/plain"}
    for sig, msg in ((bad_sig, "does not verify"), (no_ann, "no dev.cosignproject.cosign/signature"),
                     (wrong_mt, "media type")):
        with pytest.raises(PolicyDenied, match=msg):
            p.check(image, MANIFEST, None, lambda s=sig: [s])
    # one good signature among bad ones is enough
    assert p.check(image, MANIFEST, None, lambda: [bad_sig, good])
    # another key
    p2 = P({"default": [{"type": "sigstoreSigned", "keyData": base64.b64encode(open(other, "rb").read()).decode()}]})
    with pytest.raises(PolicyDenied, match="does not verify"):
        p2.check(image, MANIFEST, None, lambda: [good])
    # the manifest must be the signed one
    with pytest.raises(PolicyDenied, match="the signature is for manifest"):
        p.check(image, b"{}", None, lambda: [good])
    # a GPG (simple signing) type payload is not a sigstore payload
    p3 = P({"default": [{"type": "sigstoreSigned", "keyPath": pub}]})
    simple = body.replace(pol.SIGSTORE_PAYLOAD_TYPE.encode(), pol.SIMPLE_SIGNING_TYPE.encode())
    ss = {**good, "payload": simple,
          "annotations": {pol.SIGSTORE_SIGNATURE_ANNOTATION: base64.b64encode(sign(priv, "ec", simple, tmp_path)).decode()}}
    with pytest.raises(PolicyDenied, match="unexpected signature type"):
        p3.check(image, MANIFEST, None, lambda: [ss])


# ------------------------------------------------------------------------------ trust show / set


def test_trust_set_and_show(tmp_path):
    path = str(tmp_path / "policy.json")
    assert pol.trust_set(path, "default", "reject") == path
    pol.trust_set(path, "quay.io/ok", "accept")
    key = tmp_path / "k.pub"
    key.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    pol.trust_set(path, "quay.io/cosign", "sigstoreSigned", [str(key)])
    doc = json.load(open(path))
    assert doc["default"] == REJECT
    assert doc["transports"]["docker"]["quay.io/ok"] == ACCEPT
    assert doc["transports"]["docker"]["quay.io/cosign"] == [{"type": "sigstoreSigned", "keyPath": str(key)}]
    rows = pol.trust_show(path)
    assert [(r["transport"], r["name"], r["type"]) for r in rows] == [
        ("all", "default", "reject"), ("docker", "quay.io/cosign", "sigstoreSigned"), ("docker", "quay.io/ok", "accept")]
    assert pol.trust_show(path, raw=True) == doc
    Policy.load(path)  # still valid


@pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is needed")
def test_trust_set_signed_by_shows_gpg_ids(tmp_path):
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    try:
        subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "t <t@example.com>", "ed25519",
                        "sign", "never"], env=env, check=True, capture_output=True)
        pub = tmp_path / "t.gpg"
        pub.write_bytes(subprocess.run(["gpg", "--batch", "--export"], env=env, check=True, capture_output=True).stdout)
        path = str(tmp_path / "policy.json")
        pol.trust_set(path, "quay.io/signed", "signedBy", [str(pub)])
        row = [r for r in pol.trust_show(path) if r["name"] == "quay.io/signed"][0]
        assert row["type"] == "signed" and len(row["gpg_ids"]) == 1 and len(row["gpg_ids"][0]) == 16
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True)


@pytest.mark.parametrize("scope,typ,keys,msg", [
    ("default", "maybe", None, "invalid trust type"),
    ("quay.io", "signedBy", None, "at least one public key"),
    ("quay.io", "accept", ["/k"], "only be given for signedBy"),
    ("quay.io", "signedBy", ["/nonexistent/key.gpg"], "no such file"),
    ("busybox", "accept", None, "fully expanded form"),
])
def test_trust_set_errors(tmp_path, scope, typ, keys, msg):
    with pytest.raises(InvalidArgument, match=msg):
        pol.trust_set(str(tmp_path / "p.json"), scope, typ, keys)
    assert not (tmp_path / "p.json").exists()


def test_trust_set_refuses_broken_policy(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"default": []}')
    with pytest.raises(ConfigError, match="no policy requirements"):
        pol.trust_set(str(path), "quay.io", "accept")
    assert path.read_text() == '{"default": []}'
