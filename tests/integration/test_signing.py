"""Creating signatures: ``kpod push --sign-by`` (GPG simple signing into a lookaside),
``kpod push --sign-by-sigstore-private-key`` (cosign-style ``sha256-<hex>.sig`` tags) and
``kpod image sign``, against a real docker-registry on 127.0.0.1.

The GPG keys are made here (GNUPGHOME in tmp, agent stopped after each test); skopeo verifies
kpod's GPG signatures under its own --policy. The sigstore key is made by ``skopeo
generate-sigstore-key`` when skopeo has it; Debian's skopeo 1.9.3 does not (and is built with
sigstore disabled: it finds the signature but refuses to verify it), so the key is then
written here in the same format (scrypt + NaCl secretbox around the PKCS#8 key), and the
signatures are checked with openssl and by kpod's own policy.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess

import pytest

from conftest import assert_one_error_line
from libpod_core.errors import NotFound
from libpod_core.registry.client import RegistryClient
from test_pull_push import kp, reg, write_config  # noqa: F401 - fixtures
from test_registry import GPG, OPENSSL, SKOPEO, kill_gpg_agent, make_gpg_key, make_sigstore_key, run

pytestmark = pytest.mark.integration

if GPG is None:
    pytest.skip("gpg is needed", allow_module_level=True)


@pytest.fixture
def gpg(tmp_path):
    """``gpg(name, passphrase="")``: a new key in its own GNUPGHOME; agents stopped at the end."""
    keys = {}

    def make(name, passphrase=""):
        keys[name] = make_gpg_key(str(tmp_path / f"g-{name}"), name, tmp_path, passphrase)
        return keys[name]

    yield make
    for k in keys.values():
        kill_gpg_agent(k["home"])


def make_encrypted_sigstore_key(d, passphrase: str) -> tuple[str, str]:
    """(private key file, public key file) as ``skopeo generate-sigstore-key`` writes them."""
    os.makedirs(d, exist_ok=True)
    pwfile = os.path.join(d, "passphrase")
    with open(pwfile, "w") as f:
        f.write(passphrase + "\n")
    prefix = os.path.join(d, "key")
    proc = subprocess.run([SKOPEO, "generate-sigstore-key", "--output-prefix", prefix, "--passphrase-file", pwfile],
                          capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    if proc.returncode == 0:
        return prefix + ".private", prefix + ".pub"
    # skopeo < 1.10 (Debian's): the same format, made here
    from tests.helpers_signing import encrypt_sigstore_key

    priv, pub = make_sigstore_key(d, "ec")
    der = run([OPENSSL, "pkcs8", "-topk8", "-nocrypt", "-in", priv, "-outform", "DER"]).stdout
    with open(prefix + ".private", "wb") as f:
        f.write(encrypt_sigstore_key(der, passphrase))
    os.replace(pub, prefix + ".pub")
    os.unlink(priv)  # only the encrypted key stays
    return prefix + ".private", prefix + ".pub"


def regd_file(tmp_path, text: str) -> None:
    """The registries.d of write_config's kpod (tmp_path/registries.d) holds *text*."""
    (tmp_path / "registries.d" / "signing.yaml").write_text(text)


def tags(reg, repo: str) -> list[str]:
    client = RegistryClient(reg.addr, insecure=True)
    try:
        return client.list_tags(repo)
    except NotFound:
        return []
    finally:
        client.close()


def policy_file(path, scope: str, reqs: list) -> str:
    with open(path, "w") as f:
        json.dump({"default": [{"type": "reject"}],
                   "transports": {"docker": {scope: reqs}, "dir": {"": [{"type": "insecureAcceptAnything"}]}}}, f)
    return str(path)


def skopeo_copy(policy: str, regd, src: str, dest_dir) -> subprocess.CompletedProcess:
    return subprocess.run([SKOPEO, "--policy", policy, "--registries.d", str(regd), "copy", "--quiet",
                           "--src-tls-verify=false", f"docker://{src}", f"dir:{dest_dir}"],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def lookaside_sigs(sigdir, repo: str, digest: str) -> list[str]:
    d = sigdir / f"{repo}@sha256={digest.split(':', 1)[1]}"
    return sorted(os.listdir(d)) if d.exists() else []


# ------------------------------------------------------------------------------------------
# GPG


def test_push_sign_by_gpg_verified_by_kpod_and_skopeo(kp, reg, gpg, tmp_path):
    t, o = gpg("trusted"), gpg("other")
    sigdir = tmp_path / "sigs"
    regd_file(tmp_path, f"default-docker:\n  lookaside: file://{sigdir}\n")
    dest = f"{reg.addr}/signed/busybox:1"
    digestfile = tmp_path / "digest"
    kp("push", "--sign-by", t["fpr"], "--digestfile", str(digestfile), "busybox", dest, env={"GNUPGHOME": t["home"]})
    digest = digestfile.read_text().strip()
    assert lookaside_sigs(sigdir, "signed/busybox", digest) == ["signature-1"]
    # the payload gpg signed names the destination and the pushed manifest
    sig = sigdir / f"signed/busybox@sha256={digest[7:]}" / "signature-1"
    payload = json.loads(run([GPG, "--batch", "--decrypt", str(sig)], env={**os.environ, "GNUPGHOME": t["home"]}).stdout)
    assert payload["critical"] == {"identity": {"docker-reference": dest}, "image": {"docker-manifest-digest": digest},
                                   "type": "atomic container signature"}

    good = policy_file(tmp_path / "good.json", f"{reg.addr}/signed",
                       [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": t["pub"]}])
    bad = policy_file(tmp_path / "bad.json", f"{reg.addr}/signed",
                      [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": o["pub"]}])
    # skopeo (containers/image) accepts kpod's signature under its own policy, and only that one
    proc = skopeo_copy(good, tmp_path / "registries.d", dest, tmp_path / "out-good")
    assert proc.returncode == 0, proc.stderr
    proc = skopeo_copy(bad, tmp_path / "registries.d", dest, tmp_path / "out-bad")
    assert proc.returncode != 0 and "Source image rejected" in proc.stderr, proc.stderr
    # kpod pull: accepted by the right key, rejected by another
    kp("rmi", "-a")
    kp("pull", "-q", "--signature-policy", good, dest)
    kp("rmi", "-a")
    assert_one_error_line(kp("pull", "--signature-policy", bad, dest, check=False), 125, "not one of the policy's keys")
    assert kp("images", "-qa").stdout.strip() == ""


def test_gpg_signing_errors_push_nothing(kp, reg, gpg, tmp_path):
    locked = gpg("locked", "s3cret")
    env = {"GNUPGHOME": locked["home"]}
    wrong, right = tmp_path / "wrong", tmp_path / "right"
    wrong.write_text("nope\n")
    right.write_text("s3cret\n")
    sigdir = tmp_path / "sigs"
    regd_file(tmp_path, f"default-docker:\n  lookaside-staging: file://{sigdir}\n")
    for args, msg in [
        # first: once gpg-agent has the right passphrase cached, it signs whatever is given
        (["--sign-by", locked["fpr"], "--sign-passphrase-file", str(wrong)], "wrong passphrase"),
        (["--sign-by", "0123456789ABCDEF0123456789ABCDEF01234567", "--sign-passphrase-file", str(right)], "no such secret key"),
        (["--sign-by", locked["fpr"]], "passphrase"),  # no passphrase, no terminal to ask on
        (["--sign-passphrase-file", str(right)], "--sign-passphrase-file needs"),
        (["--sign-by", locked["fpr"], "--sign-passphrase-file", str(tmp_path / "missing")], "No such file"),
    ]:
        proc = kp("push", *args, "busybox", f"{reg.addr}/a/busybox:1", env=env, check=False)
        assert_one_error_line(proc, 125, msg)
        assert tags(reg, "a/busybox") == []
        assert not sigdir.exists()
    # no lookaside for the registry: refused before anything is pushed
    (tmp_path / "registries.d" / "signing.yaml").unlink()
    proc = kp("push", "--sign-by", locked["fpr"], "--sign-passphrase-file", str(right), "busybox",
              f"{reg.addr}/a/busybox:1", env=env, check=False)
    assert_one_error_line(proc, 125, "no lookaside")
    assert tags(reg, "a/busybox") == []
    regd_file(tmp_path, f"default-docker:\n  lookaside-staging: file://{sigdir}\n")
    # the right passphrase: pushed and signed; the signature is written to lookaside-staging
    kp("push", "--sign-by", locked["fpr"], "--sign-passphrase-file", str(right), "busybox", f"{reg.addr}/a/busybox:1",
       env=env)
    assert tags(reg, "a/busybox") == ["1"]
    assert len(list(sigdir.glob("a/busybox@sha256=*/signature-1"))) == 1


def test_pushing_a_signed_image_again_needs_remove_signatures(kp, reg, gpg, tmp_path):
    """A pulled signed image keeps its signatures in the store; pushing it in another format
    changes its manifest, so the old signatures cannot be kept: refused unless
    --remove-signatures, and --sign-by then signs the manifest actually pushed."""
    t = gpg("t")
    env = {"GNUPGHOME": t["home"]}
    sigdir = tmp_path / "sigs"
    regd_file(tmp_path, f"default-docker:\n  lookaside: file://{sigdir}\n")
    kp("push", "--sign-by", t["fpr"], "busybox", f"{reg.addr}/one/busybox:1", env=env)
    policy = policy_file(tmp_path / "policy.json", reg.addr, [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": t["pub"]}])
    kp("rmi", "-a")
    kp("pull", "-q", "--signature-policy", policy, f"{reg.addr}/one/busybox:1")
    proc = kp("push", "--format", "v2s2", f"{reg.addr}/one/busybox:1", f"{reg.addr}/two/busybox:1", check=False)
    assert_one_error_line(proc, 125, "signatures")
    for fmt in ("docker-archive", "oci-archive", "docker-dir"):  # save drops them, as podman's does
        kp("save", "--format", fmt, "-o", str(tmp_path / f"saved-{fmt}"), f"{reg.addr}/one/busybox:1")
    assert tags(reg, "two/busybox") == []
    digestfile = tmp_path / "digest"
    kp("push", "--format", "v2s2", "--remove-signatures", "--sign-by", t["fpr"], "--digestfile", str(digestfile),
       f"{reg.addr}/one/busybox:1", f"{reg.addr}/two/busybox:1", env=env)
    assert lookaside_sigs(sigdir, "two/busybox", digestfile.read_text().strip()) == ["signature-1"]
    kp("rmi", "-a")
    kp("pull", "-q", "--signature-policy", policy, f"{reg.addr}/two/busybox:1")


def test_image_sign(kp, reg, gpg, tmp_path):
    t, o = gpg("t"), gpg("o")
    sigdir = tmp_path / "sigs"
    regd_file(tmp_path, f"default-docker:\n  lookaside: file://{sigdir}\n")
    digestfile = tmp_path / "digest"
    kp("push", "--digestfile", str(digestfile), "busybox", f"{reg.addr}/later/busybox:1")
    digest = digestfile.read_text().strip()
    policy = policy_file(tmp_path / "policy.json", reg.addr, [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": t["pub"]}])
    kp("rmi", "-a")
    assert_one_error_line(kp("pull", "--signature-policy", policy, f"{reg.addr}/later/busybox:1", check=False), 125,
                          "no signature exists")
    # errors write nothing
    for args, msg in [
        (["--sign-by", "0123456789ABCDEF0123456789ABCDEF01234567", f"docker://{reg.addr}/later/busybox:1"], "no such secret key"),
        (["--sign-by", t["fpr"], f"dir:{tmp_path}"], "only images in registries"),
        (["--sign-by", t["fpr"], f"docker://{reg.addr}/later/nothing:1"], "manifest unknown"),
    ]:
        assert_one_error_line(kp("image", "sign", *args, env={"GNUPGHOME": t["home"]}, check=False), 125, msg)
        assert not sigdir.exists()
    kp("image", "sign", "--sign-by", o["fpr"], f"docker://{reg.addr}/later/busybox:1", env={"GNUPGHOME": o["home"]})
    kp("image", "sign", "--sign-by", t["fpr"], f"{reg.addr}/later/busybox:1", env={"GNUPGHOME": t["home"]})
    assert lookaside_sigs(sigdir, "later/busybox", digest) == ["signature-1", "signature-2"]
    kp("pull", "-q", "--signature-policy", policy, f"{reg.addr}/later/busybox:1")  # the second one is accepted
    proc = skopeo_copy(policy, tmp_path / "registries.d", f"{reg.addr}/later/busybox:1", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    # --directory: the same layout in another place
    other = tmp_path / "elsewhere"
    kp("image", "sign", "--sign-by", t["fpr"], "-d", str(other), f"docker://{reg.addr}/later/busybox:1",
       env={"GNUPGHOME": t["home"]})
    assert lookaside_sigs(other, "later/busybox", digest) == ["signature-1"]
    assert_one_error_line(kp("image", "sign", "--all", "--sign-by", t["fpr"], f"docker://{reg.addr}/later/busybox:1",
                             env={"GNUPGHOME": t["home"]}, check=False), 125, "not a multi-architecture image")


# ------------------------------------------------------------------------------------------
# sigstore


def sig_manifest(reg, repo: str, digest: str):
    client = RegistryClient(reg.addr, insecure=True)
    try:
        raw, _, _ = client.get_manifest(repo, f"sha256-{digest[7:]}.sig")
        m = json.loads(raw)
        payloads = []
        for layer in m["layers"]:
            stream = client.get_blob(repo, layer["digest"])
            try:
                payloads.append(stream.read())
            finally:
                stream.close()
        return m, payloads
    finally:
        client.close()


def openssl_verifies(pub: str, data: bytes, sig_b64: str, tmp_path) -> bool:
    (tmp_path / "v-data").write_bytes(data)
    (tmp_path / "v-sig").write_bytes(base64.b64decode(sig_b64))
    proc = subprocess.run([OPENSSL, "dgst", "-sha256", "-verify", pub, "-signature", str(tmp_path / "v-sig"),
                           str(tmp_path / "v-data")], capture_output=True, timeout=60)
    return proc.returncode == 0


def test_push_sigstore_signed(kp, reg, tmp_path):
    priv, pub = make_encrypted_sigstore_key(str(tmp_path / "cosign"), "kpod-pass")
    _, other_pub = make_encrypted_sigstore_key(str(tmp_path / "other"), "x")
    pw = str(tmp_path / "cosign" / "passphrase")
    regd_file(tmp_path, "default-docker:\n  use-sigstore-attachments: true\n")
    dest = f"{reg.addr}/cosign/busybox:1"
    digestfile = tmp_path / "digest"
    kp("push", "--sign-by-sigstore-private-key", priv, "--sign-passphrase-file", pw, "--digestfile", str(digestfile),
       "busybox", dest)
    digest = digestfile.read_text().strip()
    # cosign's layout: an OCI manifest tagged sha256-<hex>.sig, one simplesigning layer per signature
    m, payloads = sig_manifest(reg, "cosign/busybox", digest)
    assert m["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert [l["mediaType"] for l in m["layers"]] == ["application/vnd.dev.cosign.simplesigning.v1+json"]
    doc = json.loads(payloads[0])
    assert doc["critical"] == {"identity": {"docker-reference": dest}, "image": {"docker-manifest-digest": digest},
                               "type": "cosign container image signature"}
    sig1 = m["layers"][0]["annotations"]["dev.cosignproject.cosign/signature"]
    assert openssl_verifies(pub, payloads[0], sig1, tmp_path)
    assert not openssl_verifies(other_pub, payloads[0], sig1, tmp_path)
    # signing again appends to the signatures already in the tag
    kp("push", "--sign-by-sigstore-private-key", priv, "--sign-passphrase-file", pw, "busybox", dest)
    m2, payloads2 = sig_manifest(reg, "cosign/busybox", digest)
    assert len(m2["layers"]) == 2 and m2["layers"][0] == m["layers"][0]
    assert openssl_verifies(pub, payloads2[1], m2["layers"][1]["annotations"]["dev.cosignproject.cosign/signature"], tmp_path)
    assert sorted(tags(reg, "cosign/busybox")) == sorted(["1", f"sha256-{digest[7:]}.sig"])

    good = policy_file(tmp_path / "good.json", f"{reg.addr}/cosign", [{"type": "sigstoreSigned", "keyPath": pub}])
    bad = policy_file(tmp_path / "bad.json", f"{reg.addr}/cosign", [{"type": "sigstoreSigned", "keyPath": other_pub}])
    kp("rmi", "-a")
    kp("pull", "-q", "--signature-policy", good, dest)
    kp("rmi", "-a")
    assert_one_error_line(kp("pull", "--signature-policy", bad, dest, check=False), 125, "does not verify")
    # skopeo finds kpod's sigstore signature; Debian's build then refuses to verify any
    proc = skopeo_copy(bad, tmp_path / "registries.d", dest, tmp_path / "out-bad")
    assert proc.returncode != 0 and "no signature exists" not in proc.stderr, proc.stderr
    proc = skopeo_copy(good, tmp_path / "registries.d", dest, tmp_path / "out-good")
    assert proc.returncode == 0 or "sigstore disabled" in proc.stderr, proc.stderr


def test_sigstore_signing_errors_push_nothing(kp, reg, tmp_path):
    priv, _ = make_encrypted_sigstore_key(str(tmp_path / "cosign"), "kpod-pass")
    plain, _ = make_sigstore_key(str(tmp_path / "plain"), "ec")
    pw = str(tmp_path / "cosign" / "passphrase")
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    dest = f"{reg.addr}/c/busybox:1"
    # use-sigstore-attachments is off: refused before anything is pushed
    proc = kp("push", "--sign-by-sigstore-private-key", priv, "--sign-passphrase-file", pw, "busybox", dest, check=False)
    assert_one_error_line(proc, 125, "use-sigstore-attachments")
    assert tags(reg, "c/busybox") == []
    regd_file(tmp_path, "default-docker:\n  use-sigstore-attachments: true\n")
    for args, msg in [
        (["--sign-by-sigstore-private-key", priv, "--sign-passphrase-file", str(wrong)], "wrong passphrase"),
        (["--sign-by-sigstore-private-key", str(tmp_path / "missing.key"), "--sign-passphrase-file", pw], "No such file"),
        (["--sign-by-sigstore-private-key", priv], "passphrase"),  # none given, no terminal to ask on
        (["--sign-by-sigstore-private-key", plain, "--sign-passphrase-file", pw], "unsupported PEM type"),
    ]:
        assert_one_error_line(kp("push", *args, "busybox", dest, check=False), 125, msg)
        assert tags(reg, "c/busybox") == []
    kp("push", "--sign-by-sigstore-private-key", priv, "--sign-passphrase-file", pw, "busybox", dest)
    assert len(tags(reg, "c/busybox")) == 2
