"""Signature creation without a registry: the sigstore key format, payloads, passphrase
files, and signing in the copy pipeline (to ``dir:`` destinations)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess

import pytest

from libpod_core.copy import copy_image
from libpod_core.errors import ImageError, InvalidArgument, TransportError
from libpod_core.registry import policy as pol
from libpod_core.registry.signing import (
    Signer,
    SigstoreSigner,
    check_sign_identity,
    decrypt_sigstore_private_key,
    read_passphrase_file,
    signature_payload,
)
from libpod_core.transports.base import SystemContext, parse_image_reference
from tests.helpers_signing import encrypt_sigstore_key, pem

OPENSSL = shutil.which("openssl")

# go-securesystemslib's own test vectors (encrypted/encrypted_test.go): JSON written by the Go
# implementation cosign and skopeo use, passphrase "supersecret"; the plaintext is
# "reallyimportant" (the second one holds it JSON-encoded, as its Marshal writes it)
GO_VECTORS = [
    (b'{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"N9a7x5JFGbrtB2uBR81jPwp0eiLR4A7FV3mjVAQrg1g="},'
     b'"cipher":{"name":"nacl/secretbox","nonce":"2h8HxMmgRfuYdpswZBQaU3xJ1nkA/5Ik"},'
     b'"ciphertext":"SEW6sUh0jf2wfdjJGPNS9+bkk2uB+Cxamf32zR8XkQ=="}', b"reallyimportant"),
    (b'{"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"FhzPOt9/bJG4PTq6lQ6ecG6GzaOuOy/ynG5+yRiFlNs="},'
     b'"cipher":{"name":"nacl/secretbox","nonce":"aw1ng1jHaDz/tQ7V2gR9O2+IGQ8xJEuE"},'
     b'"ciphertext":"HycvuLZL4sYH0BrYTh4E/H20VtAW6u5zL5Pr+IBjYLYnCPzDkq8="}', b'"cmVhbGx5aW1wb3J0YW50"'),
]
GO_UNSUPPORTED = (
    b'{"kdf":{"name":"scrypt","params":{"N":99,"r":99,"p":99},"salt":"cZFcQJdwPhPyhU1R4qkl0qVOIjZd4V/7LYYAavq166k="},'
    b'"cipher":{"name":"nacl/secretbox","nonce":"7vhRS7j0hEPBWV05skAdgLj81AkGeE7U"},'
    b'"ciphertext":"6WYU/YSXVbYzl/NzaeAzmjLyfFhOOjLc0d8/GFV0aBFdJvyCcXc="}'
)


@pytest.mark.parametrize("vector, plaintext", GO_VECTORS)
def test_decrypts_what_the_go_implementation_wrote(vector, plaintext):
    for label in ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY"):
        assert decrypt_sigstore_private_key(pem(label, vector), b"supersecret") == plaintext
    with pytest.raises(InvalidArgument, match="wrong passphrase"):
        decrypt_sigstore_private_key(pem("ENCRYPTED SIGSTORE PRIVATE KEY", vector), b"supersecreT")


@pytest.mark.parametrize("data, msg", [
    (pem("ENCRYPTED SIGSTORE PRIVATE KEY", GO_UNSUPPORTED), "unsupported scrypt parameters"),
    (pem("PRIVATE KEY", b"\x30\x00"), "unsupported PEM type 'PRIVATE KEY'"),
    (b"not a key\n", "not a PEM file"),
    (pem("ENCRYPTED SIGSTORE PRIVATE KEY", b"{not json"), "not valid JSON"),
    (pem("ENCRYPTED SIGSTORE PRIVATE KEY", GO_VECTORS[0][0].replace(b"nacl/secretbox", b"aes")), "unsupported cipher"),
    (pem("ENCRYPTED SIGSTORE PRIVATE KEY", GO_VECTORS[0][0].replace(b'"scrypt"', b'"pbkdf2"')), "unsupported key derivation"),
    (pem("ENCRYPTED SIGSTORE PRIVATE KEY", GO_VECTORS[0][0].replace(b"2h8HxMmgRfuYdpswZBQaU3xJ1nkA/5Ik", b"AAAA")), "24 bytes"),
])
def test_bad_key_files(data, msg):
    with pytest.raises(InvalidArgument, match=msg):
        decrypt_sigstore_private_key(data, b"supersecret", "k")


def test_payload_is_what_the_policy_accepts():
    from libpod_core.reference import digest_bytes, parse

    manifest = b'{"schemaVersion":2}'
    digest = digest_bytes(manifest)
    for kind in (pol.SIMPLE_SIGNING_TYPE, pol.SIGSTORE_PAYLOAD_TYPE):
        payload = signature_payload(kind, "example.com/ns/app:1", digest)
        doc = json.loads(payload)
        assert set(doc) == {"critical", "optional"} and isinstance(doc["optional"]["timestamp"], int)
        pol._check_payload(payload, kind, manifest, pol.SignedIdentity(), parse("example.com/ns/app:1"))
        with pytest.raises(pol._Rejected, match="does not match"):
            pol._check_payload(payload, kind, manifest, pol.SignedIdentity(), parse("example.com/ns/app:2"))


def test_identity_and_passphrase_file(tmp_path):
    assert check_sign_identity("busybox", "x") == "docker.io/library/busybox:latest"
    with pytest.raises(InvalidArgument, match="no docker reference"):
        check_sign_identity(None, "dir:/x")
    from libpod_core.reference import parse

    with pytest.raises(InvalidArgument, match="neither a tag nor a digest"):
        check_sign_identity(parse("example.com/a/b"), "x")
    f = tmp_path / "pw"
    f.write_bytes(b"first line\r\nsecond\n")
    assert read_passphrase_file(str(f)) == "first line"
    f.write_bytes(b"")
    assert read_passphrase_file(str(f)) == ""
    with pytest.raises(InvalidArgument, match="No such file"):
        read_passphrase_file(str(tmp_path / "missing"))


@pytest.mark.skipif(OPENSSL is None, reason="openssl is needed")
@pytest.mark.parametrize("kind", ["EC", "ED25519", "RSA"])
def test_sigstore_signer_signs_what_the_policy_verifies(tmp_path, kind):
    key = tmp_path / "key.pem"
    opts = {"EC": ["-pkeyopt", "ec_paramgen_curve:P-256"], "RSA": ["-pkeyopt", "rsa_keygen_bits:2048"]}.get(kind, [])
    subprocess.run([OPENSSL, "genpkey", "-algorithm", kind, *opts, "-out", str(key)], check=True, capture_output=True)
    der = subprocess.run([OPENSSL, "pkcs8", "-topk8", "-nocrypt", "-in", str(key), "-outform", "DER"],
                         check=True, capture_output=True).stdout
    pub = subprocess.run([OPENSSL, "pkey", "-in", str(key), "-pubout"], check=True, capture_output=True).stdout
    enc = tmp_path / "key.private"
    enc.write_bytes(encrypt_sigstore_key(der, "pw"))
    with pytest.raises(InvalidArgument, match="wrong passphrase"):
        SigstoreSigner(str(enc), "bad")
    with pytest.raises(InvalidArgument, match="cannot be asked for"):
        SigstoreSigner(str(enc), None)
    asked = []
    signer = SigstoreSigner(str(enc), None, prompt=lambda path: asked.append(path) or "pw")
    assert asked == [str(enc)]
    sig = signer.sign("example.com/a/b:1", "sha256:" + "a" * 64)
    assert sig["media_type"] == pol.SIGSTORE_PAYLOAD_MEDIA_TYPE
    raw = base64.b64decode(sig["annotations"][pol.SIGSTORE_SIGNATURE_ANNOTATION])
    assert pol.verify_raw_signature(pub, sig["payload"], raw)
    assert not pol.verify_raw_signature(pub, sig["payload"] + b" ", raw)
    assert pol._verify_sigstore(sig, [pub]) == sig["payload"]


# ------------------------------------------------------------------------------------------
# the copy pipeline


class FakeSigner(Signer):
    def __init__(self, kind="simple"):
        self.kind = kind
        self.calls = []

    def sign(self, identity, manifest_digest):
        self.calls.append((identity, manifest_digest))
        return f"signed {identity} {manifest_digest}".encode()


@pytest.fixture
def dir_image(tmp_path):
    from tests.unit.test_transports_local import write_image
    from libpod_core.testimage import rootfs_tar

    write_image(f"dir:{tmp_path}/src", [rootfs_tar()])
    return f"dir:{tmp_path}/src"


def test_copy_signs_the_manifest_it_wrote(tmp_path, dir_image):
    from libpod_core.reference import digest_bytes

    ctx = SystemContext()
    s = FakeSigner()
    # recompressed: the manifest changes, the signature is over the one written
    res = copy_image(parse_image_reference(dir_image), parse_image_reference(f"dir:{tmp_path}/d"), ctx,
                     compression="zstd", signers=[s], sign_identity="example.com/a/b:1")
    written = (tmp_path / "d" / "manifest.json").read_bytes()
    assert digest_bytes(written) == res.manifest_digest
    assert s.calls == [("example.com/a/b:1", res.manifest_digest)]
    assert (tmp_path / "d" / "signature-1").read_bytes() == f"signed example.com/a/b:1 {res.manifest_digest}".encode()
    # copied signatures stay first; the new one follows them
    copy_image(parse_image_reference(f"dir:{tmp_path}/d"), parse_image_reference(f"dir:{tmp_path}/d2"), ctx,
               signers=[FakeSigner()], sign_identity="example.com/a/b:2")
    assert (tmp_path / "d2" / "signature-1").read_bytes() == (tmp_path / "d" / "signature-1").read_bytes()
    assert (tmp_path / "d2" / "signature-2").read_bytes().startswith(b"signed example.com/a/b:2 ")
    # ...and a copy that would change the manifest under them is refused, new signer or not
    with pytest.raises(ImageError, match="signatures"):
        copy_image(parse_image_reference(f"dir:{tmp_path}/d"), parse_image_reference(f"dir:{tmp_path}/d3"), ctx,
                   compression="gzip", signers=[FakeSigner()], sign_identity="example.com/a/b:2")
    assert not (tmp_path / "d3").exists()


def test_copy_refuses_to_sign_before_writing(tmp_path, dir_image):
    ctx = SystemContext()
    src = parse_image_reference(dir_image)
    with pytest.raises(InvalidArgument, match="no docker reference"):
        copy_image(src, parse_image_reference(f"dir:{tmp_path}/d"), ctx, signers=[FakeSigner()])
    with pytest.raises(TransportError, match="cannot store sigstore signatures"):
        copy_image(src, parse_image_reference(f"dir:{tmp_path}/d"), ctx, signers=[FakeSigner("sigstore")],
                   sign_identity="example.com/a/b:1")
    with pytest.raises(TransportError, match="cannot store signatures"):
        copy_image(src, parse_image_reference(f"oci:{tmp_path}/l:1"), ctx, signers=[FakeSigner()],
                   sign_identity="example.com/a/b:1")
    assert not os.path.exists(tmp_path / "d") and not os.path.exists(tmp_path / "l" / "index.json")
