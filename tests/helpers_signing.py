"""Sigstore private keys in the format ``skopeo generate-sigstore-key`` and ``cosign
generate-key-pair`` write, made here for tests (Debian's skopeo 1.9.3 has no
generate-sigstore-key): go-securesystemslib's "encrypted" JSON (scrypt N=32768 r=8 p=1, NaCl
secretbox) around the PKCS#8 DER key, in a PEM block.

    from tests.helpers_signing import encrypt_sigstore_key
    pem = encrypt_sigstore_key(pkcs8_der, "passphrase")
"""

from __future__ import annotations

import base64
import hashlib
import json
import os

PEM_TYPE = "ENCRYPTED SIGSTORE PRIVATE KEY"


def pem(label: str, body: bytes) -> bytes:
    b64 = base64.b64encode(body).decode()
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return ("\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"]) + "\n").encode()


def encrypt_sigstore_key(der: bytes, passphrase: str, *, label: str = PEM_TYPE) -> bytes:
    from nacl.secret import SecretBox

    salt, nonce = os.urandom(32), os.urandom(24)
    key = hashlib.scrypt(passphrase.encode(), salt=salt, n=32768, r=8, p=1, dklen=32, maxmem=64 << 20)
    doc = {"kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1}, "salt": base64.b64encode(salt).decode()},
           "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
           "ciphertext": base64.b64encode(SecretBox(key).encrypt(der, nonce).ciphertext).decode()}
    return pem(label, json.dumps(doc).encode())
