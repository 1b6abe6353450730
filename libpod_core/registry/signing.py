"""Creating image signatures: GPG "simple signing" and sigstore (cosign) key signatures.

Both kinds sign a small JSON payload that names the image by its manifest digest and the
identity (docker reference) it is published under::

    {"critical": {"identity": {"docker-reference": "registry.example.com/ns/app:1"},
                  "image": {"docker-manifest-digest": "sha256:..."},
                  "type": "atomic container signature"},          # sigstore: "cosign container image signature"
     "optional": {"creator": "kpod 0.1.0", "timestamp": 1700000000}}

- :class:`GPGSigner` signs it with the ``gpg`` command (the user's keyring: ``GNUPGHOME`` or
  ``~/.gnupg``; a passphrase goes through ``--pinentry-mode loopback`` on a pipe). The
  result is the binary OpenPGP message stored as ``signature-N`` in a lookaside.
- :class:`SigstoreSigner` signs it with a private key in the format of ``skopeo
  generate-sigstore-key`` and ``cosign generate-key-pair``: a PEM block ``ENCRYPTED SIGSTORE
  PRIVATE KEY`` (or ``ENCRYPTED COSIGN PRIVATE KEY``) holding JSON with an scrypt key
  derivation and a NaCl secretbox (XSalsa20-Poly1305) around the PKCS#8 private key. The
  signature (ECDSA/RSA with SHA-256, or Ed25519) is base64 in the
  ``dev.cosignproject.cosign/signature`` annotation of a layer whose content is the payload.

Signers check what they can when they are made (the key exists, the passphrase opens it,
gpg can sign with it), so a copy that is going to sign fails before anything is written.
The copy pipeline (:func:`libpod_core.copy.copy_image`) calls :meth:`sign` once the
manifest is at the destination, with the digest of the manifest actually written.

scrypt comes from :mod:`hashlib`; the secretbox from PyNaCl (neither the standard library,
the openssl command nor ``cryptography`` implement XSalsa20-Poly1305). Signing uses
``cryptography`` when it is installed, else the ``openssl`` command, like verification in
:mod:`.policy`; the decrypted key reaches openssl through a pipe, never a file.
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
import time
from typing import Any, Callable

from ..errors import ImageError, InvalidArgument
from .policy import (
    SIGSTORE_PAYLOAD_MEDIA_TYPE,
    SIGSTORE_PAYLOAD_TYPE,
    SIGSTORE_SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING_TYPE,
    _ED25519_OID,
    _pem_blocks,
)

__all__ = [
    "Signer",
    "GPGSigner",
    "SigstoreSigner",
    "make_signers",
    "signature_payload",
    "read_passphrase_file",
    "decrypt_sigstore_private_key",
    "check_sign_identity",
]

SIGSTORE_PRIVATE_KEY_TYPES = ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY")
#: scrypt parameters go-securesystemslib (cosign, skopeo) writes and accepts: N with r=8, p=1
_SCRYPT_N = (32768, 65536, 131072)
_GPG_TIMEOUT = 120


def signature_payload(payload_type: str, identity: str, manifest_digest: str) -> bytes:
    """The JSON payload both kinds of signature sign."""
    from .. import __version__

    doc = {
        "critical": {
            "identity": {"docker-reference": identity},
            "image": {"docker-manifest-digest": manifest_digest},
            "type": payload_type,
        },
        "optional": {"creator": f"kpod {__version__}", "timestamp": int(time.time())},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _read_file(path: str, what: str, limit: int = 1024 * 1024) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError as exc:
        raise InvalidArgument(f"reading {what} {path}: {exc.strerror or exc}") from None


def read_passphrase_file(path: str) -> str:
    """The passphrase in *path*: its first line, without the line ending (as podman)."""
    data = _read_file(path, "passphrase file", 64 * 1024)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument(f"passphrase file {path}: not valid UTF-8") from None
    return text.split("\n", 1)[0].removesuffix("\r")


def make_signers(sign_by: str | None = None, sigstore_private_key: str | None = None,
                 passphrase: str | None = None, prompt: Callable[[str], str] | None = None) -> list["Signer"]:
    """The signers for ``--sign-by`` and ``--sign-by-sigstore-private-key``, checked now.
    Without *passphrase*, gpg-agent asks for the GPG key's and *prompt(path)* for the
    sigstore key's."""
    signers: list[Signer] = []
    if sign_by:
        signers.append(GPGSigner(sign_by, passphrase))
    if sigstore_private_key:
        signers.append(SigstoreSigner(sigstore_private_key, passphrase, prompt=prompt))
    return signers


def check_sign_identity(identity: Any, what: str) -> str:
    """*identity* (a reference or its text) as the fully qualified docker reference a
    signature claims; it must carry a tag or a digest."""
    from .. import reference as _reference

    if identity is None:
        raise InvalidArgument(
            f"cannot sign {what}: it has no docker reference to put in the signature (sign when pushing to docker://)")
    ref = identity if isinstance(identity, _reference.Reference) else _reference.normalize_docker_hub(str(identity))
    if ref.tag is None and ref.digest is None:
        raise InvalidArgument(f"cannot sign {what} as {ref}: the identity has neither a tag nor a digest")
    return str(ref)


class Signer:
    """One way of signing. :attr:`kind` is ``"simple"`` (the signature is bytes for a
    lookaside) or ``"sigstore"`` (a dict: ``payload``, ``annotations``, ``media_type``)."""

    kind = ""

    def sign(self, identity: str, manifest_digest: str) -> Any:
        raise NotImplementedError


# ------------------------------------------------------------------------------------------
# GPG


class GPGSigner(Signer):
    """Simple signing with the ``gpg`` command and the secret key *key* (a fingerprint, or
    anything gpg's ``--local-user`` takes). *passphrase* None lets gpg-agent ask (pinentry)."""

    kind = "simple"

    def __init__(self, key: str, passphrase: str | None = None, *, homedir: str | None = None):
        if not key or key.startswith("-") or any(c in key for c in "\r\n\0"):
            raise InvalidArgument(f"invalid GPG key identity {key!r}")
        self.key = key
        self.passphrase = passphrase
        self.homedir = homedir or os.environ.get("GNUPGHOME") or None
        self.gpg = shutil.which("gpg")
        if self.gpg is None:
            raise InvalidArgument("signing with --sign-by needs gpg, which is not installed")
        self._check()

    def _where(self) -> str:
        return f"GPG key {self.key!r} ({'GNUPGHOME ' + self.homedir if self.homedir else '~/.gnupg'})"

    def _check(self) -> None:
        proc = self._gpg(["--with-colons", "--list-secret-keys", "--", self.key])
        if proc.returncode != 0 or not any(l.startswith("sec:") for l in proc.stdout.decode("utf-8", "replace").splitlines()):
            raise InvalidArgument(f"signing with {self._where()}: no such secret key")
        # A throw-away signature proves the key can sign and the passphrase opens it, before
        # the copy writes anything.
        self._sign_bytes(b"kpod signing check\n")

    def _gpg(self, args: list[str], *, input: bytes | None = None, pass_fds=()) -> subprocess.CompletedProcess:
        env = {**os.environ, "LC_ALL": "C"}
        cmd = [self.gpg, "--batch", "--no-permission-warning"]
        if self.passphrase is None and os.isatty(0):
            env.setdefault("GPG_TTY", os.ttyname(0))  # where gpg-agent's pinentry asks
        else:
            cmd.append("--no-tty")
        if self.homedir:
            cmd += ["--homedir", self.homedir]
        try:
            return subprocess.run(cmd + args, input=input, capture_output=True, timeout=_GPG_TIMEOUT,
                                  pass_fds=pass_fds, env=env)
        except subprocess.TimeoutExpired:
            raise ImageError(f"signing with {self._where()}: gpg did not finish in {_GPG_TIMEOUT} s") from None

    def _sign_bytes(self, data: bytes) -> bytes:
        args = ["--status-fd", "2", "--local-user", self.key, "--sign", "--output", "-"]
        fds: tuple[int, ...] = ()
        r = None
        if self.passphrase is not None:
            r, w = os.pipe()
            os.write(w, self.passphrase.encode() + b"\n")  # far below a pipe's buffer
            os.close(w)
            fds = (r,)
            args = ["--pinentry-mode", "loopback", "--passphrase-fd", str(r)] + args
        try:
            proc = self._gpg(args, input=data, pass_fds=fds)
        finally:
            if r is not None:
                os.close(r)
        status, messages = [], []
        for line in proc.stderr.decode("utf-8", "replace").splitlines():
            if line.startswith("[GNUPG:] "):
                status.append(line.split()[1:])
            elif line.strip():
                messages.append(line.strip())
        kinds = {s[0] for s in status if s}
        if proc.returncode == 0 and "SIG_CREATED" in kinds and proc.stdout:
            return proc.stdout
        if "BAD_PASSPHRASE" in kinds or any("bad passphrase" in m.lower() for m in messages):
            raise InvalidArgument(f"signing with {self._where()}: wrong passphrase")
        if "INV_SGNR" in kinds or any("no secret key" in m.lower() for m in messages):
            raise InvalidArgument(f"signing with {self._where()}: no usable secret key")
        if "PINENTRY_LAUNCHED" in kinds or any("pinentry" in m.lower() or "inappropriate ioctl" in m.lower()
                                               for m in messages):
            raise InvalidArgument(f"signing with {self._where()}: the key needs a passphrase "
                                  "(give it with --sign-passphrase-file)")
        detail = messages[-1] if messages else f"exit status {proc.returncode}"
        raise ImageError(f"signing with {self._where()}: gpg failed: {detail}")

    def sign(self, identity: str, manifest_digest: str) -> bytes:
        return self._sign_bytes(signature_payload(SIMPLE_SIGNING_TYPE, identity, manifest_digest))


# ------------------------------------------------------------------------------------------
# sigstore


def _pem_label_and_body(block: bytes, where: str) -> tuple[str, bytes]:
    lines = block.decode("ascii", "replace").strip().splitlines()
    label = lines[0][len("-----BEGIN "):].rstrip("-").strip()
    body = "".join(l.strip() for l in lines[1:-1] if l.strip() and ":" not in l)
    try:
        return label, base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"{where}: the PEM block is not valid base64") from None


def _b64field(doc: Any, path: tuple[str, ...], where: str) -> bytes:
    v = doc
    for k in path:
        v = v.get(k) if isinstance(v, dict) else None
    if not isinstance(v, str):
        raise InvalidArgument(f"{where}: the encrypted key has no {'.'.join(path)}")
    try:
        return base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"{where}: {'.'.join(path)} is not valid base64") from None


def decrypt_sigstore_private_key(data: bytes, passphrase: bytes, where: str = "sigstore private key") -> bytes:
    """The PKCS#8 (DER) private key inside an encrypted sigstore/cosign key file."""
    blocks = _pem_blocks(data)
    if not blocks:
        raise InvalidArgument(f"{where}: not a PEM file")
    label, body = _pem_label_and_body(blocks[0], where)
    if label not in SIGSTORE_PRIVATE_KEY_TYPES:
        raise InvalidArgument(f"{where}: unsupported PEM type {label!r} (expected {SIGSTORE_PRIVATE_KEY_TYPES[0]}, "
                              "as made by skopeo generate-sigstore-key or cosign generate-key-pair)")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument(f"{where}: the encrypted key is not valid JSON") from None
    kdf, cipher = (doc.get("kdf"), doc.get("cipher")) if isinstance(doc, dict) else (None, None)
    if not isinstance(kdf, dict) or kdf.get("name") != "scrypt":
        raise InvalidArgument(f"{where}: unsupported key derivation {kdf.get('name') if isinstance(kdf, dict) else kdf!r}"
                              " (only scrypt)")
    if not isinstance(cipher, dict) or cipher.get("name") != "nacl/secretbox":
        raise InvalidArgument(f"{where}: unsupported cipher (only nacl/secretbox)")
    params = kdf.get("params")
    n, r, p = (params.get("N"), params.get("r"), params.get("p")) if isinstance(params, dict) else (None, None, None)
    if n not in _SCRYPT_N or r != 8 or p != 1:
        raise InvalidArgument(f"{where}: unsupported scrypt parameters {params!r}")
    salt = _b64field(doc, ("kdf", "salt"), where)
    nonce = _b64field(doc, ("cipher", "nonce"), where)
    ciphertext = _b64field(doc, ("ciphertext",), where)
    if len(nonce) != 24:
        raise InvalidArgument(f"{where}: the secretbox nonce must be 24 bytes")
    try:
        from nacl.exceptions import CryptoError
        from nacl.secret import SecretBox
    except ImportError:  # pragma: no cover - PyNaCl is a dependency
        raise ImageError("sigstore private keys need PyNaCl (pip install pynacl)") from None
    key = hashlib.scrypt(passphrase, salt=salt, n=n, r=r, p=p, dklen=32, maxmem=128 * r * (n + p + 2) + (1 << 20))
    try:
        return SecretBox(key).decrypt(ciphertext, nonce)
    except CryptoError:
        raise InvalidArgument(f"{where}: wrong passphrase (or a damaged key file)") from None


def _sign_raw(der_key: bytes, data: bytes, where: str) -> bytes:
    """Sign *data* with a PKCS#8 DER private key: ECDSA/RSA (PKCS#1 v1.5) with SHA-256, or
    Ed25519."""
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
    except ImportError:
        return _sign_openssl(der_key, data, where)
    try:
        key = serialization.load_der_private_key(der_key, None)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"{where}: invalid private key: {exc}") from None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    raise InvalidArgument(f"{where}: unsupported private key type {type(key).__name__}")


def _sign_openssl(der_key: bytes, data: bytes, where: str) -> bytes:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ImageError("sigstore signing needs the cryptography package or the openssl command")
    r, w = os.pipe()
    try:
        os.write(w, der_key)  # a few hundred bytes: fits the pipe
        os.close(w)
        w = -1
        key = f"/dev/fd/{r}"
        with tempfile.TemporaryDirectory(prefix="kpod-sign-") as d:
            if _ED25519_OID in der_key[:16]:
                # pkeyutl signs Ed25519 from a file only (it needs the size); the payload is public
                dp = os.path.join(d, "payload")
                with open(dp, "wb") as f:
                    f.write(data)
                cmd = [openssl, "pkeyutl", "-sign", "-keyform", "DER", "-inkey", key, "-rawin", "-in", dp]
                proc = subprocess.run(cmd, capture_output=True, timeout=60, pass_fds=(r,))
            else:
                cmd = [openssl, "dgst", "-sha256", "-keyform", "DER", "-sign", key]
                proc = subprocess.run(cmd, input=data, capture_output=True, timeout=60, pass_fds=(r,))
    finally:
        os.close(r)
        if w != -1:
            os.close(w)
    if proc.returncode != 0 or not proc.stdout:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise InvalidArgument(f"{where}: signing failed: {err[0] if err else 'openssl exit status ' + str(proc.returncode)}")
    return proc.stdout


class SigstoreSigner(Signer):
    """Signs with the encrypted sigstore private key in *path*, decrypted now with
    *passphrase* (None: asked through *prompt(path)*)."""

    kind = "sigstore"

    def __init__(self, path: str, passphrase: str | None, *, prompt: Callable[[str], str] | None = None):
        self.path = path
        where = f"sigstore private key {path}"
        data = _read_file(path, "sigstore private key")
        if passphrase is None:
            if prompt is None:
                raise InvalidArgument(f"{where}: a passphrase is needed and cannot be asked for "
                                      "(give it with --sign-passphrase-file)")
            passphrase = prompt(path)
        self._key = decrypt_sigstore_private_key(data, passphrase.encode(), where)
        self._where = where
        _sign_raw(self._key, b"kpod signing check\n", where)  # the key is usable, before anything is written

    def sign(self, identity: str, manifest_digest: str) -> dict[str, Any]:
        payload = signature_payload(SIGSTORE_PAYLOAD_TYPE, identity, manifest_digest)
        sig = _sign_raw(self._key, payload, self._where)
        return {"payload": payload, "media_type": SIGSTORE_PAYLOAD_MEDIA_TYPE,
                "annotations": {SIGSTORE_SIGNATURE_ANNOTATION: base64.b64encode(sig).decode()}}


# ------------------------------------------------------------------------------------------
# kpod image sign


def sign_images(names: list[str], signer: GPGSigner, ctx: Any, *, directory: str | None = None,
                all_instances: bool = False) -> list[str]:
    """``kpod image sign``: sign images already in a registry (``docker://`` references, or
    fully qualified names) and add the signatures to the lookaside: *directory* if given, else
    where registries.d says to write for the image (``lookaside-staging``, else
    ``lookaside``, else the built-in default), as ``<repo>@sha256=<hex>/signature-N`` after
    those already there. With *all_instances* the image must be a manifest list (or index):
    the list and each of its instances are signed. Returns the lookaside URLs written."""
    from ..manifest import Index, parse_manifest
    from ..reference import digest_bytes
    from ..transports import split_transport
    from ..transports.docker import DockerTransport
    from .policy import docker_namespaces
    from .registries_d import RegistriesD, lookaside_url, read_lookaside_signatures, write_lookaside_signatures

    refs = []
    for name in names:
        transport, rest = split_transport(name)
        if transport not in (None, "docker"):
            raise InvalidArgument(f"{name}: only images in registries (docker://) can be signed")
        refs.append(DockerTransport().parse_reference(rest))
    regd = None if directory else RegistriesD.load(getattr(ctx, "registries_d", None))
    written = []
    for ref in refs:
        named = ref.docker_reference()
        identity = check_sign_identity(named, str(ref))
        if directory:
            base = "file://" + os.path.join(os.path.abspath(directory), named.path)
        else:
            base = regd.lookaside_base(str(named), docker_namespaces(named), named.path, write=True)
            if not base.startswith("file://"):
                raise InvalidArgument(f"{ref}: cannot write signatures to {base}: only file:// lookasides can be "
                                      "written (set lookaside-staging in registries.d, or use --directory)")
        with ref.new_source(ctx) as src:
            raw, mt = src.get_manifest()
            digests = [digest_bytes(raw)]
            if all_instances:
                top = parse_manifest(raw, mt)
                if not isinstance(top, Index):
                    raise InvalidArgument(f"{ref} is not a multi-architecture image (manifest list or image index)")
                for d in top.manifests:
                    src.get_manifest(d.digest)  # it exists (the registry client checks its digest)
                    digests.append(d.digest)
        for digest in digests:
            sigs = read_lookaside_signatures(base, digest)
            sig = signer.sign(identity, digest)
            try:
                write_lookaside_signatures(base, digest, sigs + [sig])
            except OSError as exc:
                raise ImageError(f"writing signatures to {base}: {exc.strerror or exc}") from None
            written.append(lookaside_url(base, digest, len(sigs)))
    return written
