"""Registry commands: pull, push, login, logout, ``image trust`` and ``image sign``."""

from __future__ import annotations

import sys

import click

from ..errors import InvalidArgument
from .formatting import table, to_json


def _log(msg: str) -> None:
    """Progress lines: on a terminal only (quiet when piped, like the progress bars)."""
    if sys.stderr.isatty():
        click.echo(msg, err=True)


def _ctx_opts(authfile, creds, tls_verify, cert_dir, signature_policy=None, **extra):
    opts = {"authfile": authfile, "creds": creds, "tls_verify": tls_verify, "cert_dir": cert_dir,
            "signature_policy": signature_policy}
    opts.update(extra)
    return {k: v for k, v in opts.items() if v is not None}


def tls_verify_option(f):
    """podman's --tls-verify[=true|false]."""
    return click.option("--tls-verify", type=click.BOOL, is_flag=False, flag_value=True, default=None,
                        metavar="[=BOOL]", help="Require HTTPS and verify certificates (default: as registries.conf says)")(f)


def registry_options(f):
    f = click.option("--authfile", metavar="PATH", help="Path of the authentication file (default: podman's locations)")(f)
    f = click.option("--creds", metavar="USER[:PASSWORD]", help="Credentials for the registry")(f)
    f = tls_verify_option(f)
    f = click.option("--cert-dir", metavar="DIR", help="Certificates (*.crt, *.cert, *.key) for the registry")(f)
    return f


def _platform(platform, os_, arch, variant):
    if platform:
        parts = platform.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidArgument(f"invalid platform {platform!r}: expected OS/ARCH[/VARIANT]")
        os_, arch = parts[0], parts[1]
        variant = parts[2] if len(parts) == 3 else variant
    return os_, arch, variant


def _choose(candidates):
    for i, c in enumerate(candidates, 1):
        click.echo(f"  {i}) {c}", err=True)
    n = click.prompt("Select an image", type=click.IntRange(1, len(candidates)), err=True)
    return candidates[n - 1]


def _creds(creds):
    if creds is None:
        return None
    from ..registry.auth import parse_creds

    user, password = parse_creds(creds)
    if password is None:
        password = click.prompt("Password", hide_input=True, err=True)
    return f"{user}:{password}"


@click.command("pull")
@click.argument("names", nargs=-1, required=True)
@registry_options
@click.option("-a", "--all-tags", is_flag=True, help="Pull every tag of the repository")
@click.option("--platform", metavar="OS/ARCH[/VARIANT]", help="Pick this platform from a manifest list")
@click.option("--os", "os_", metavar="OS", help="Pick this OS from a manifest list")
@click.option("--arch", metavar="ARCH", help="Pick this architecture from a manifest list")
@click.option("--variant", metavar="VARIANT", help="Pick this architecture variant")
@click.option("--signature-policy", metavar="PATH", help="Signature policy file (default: the configured one)")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image ID")
@click.pass_obj
def pull(state, names, authfile, creds, tls_verify, cert_dir, all_tags, platform, os_, arch, variant,
         signature_policy, quiet):
    """Pull images from a registry (or any transport) into local storage."""
    from ..pull import pull as do_pull

    rt = state.runtime
    os_, arch, variant = _platform(platform, os_, arch, variant)
    opts = _ctx_opts(authfile, _creds(creds), tls_verify, cert_dir, signature_policy, os=os_, arch=arch, variant=variant)
    for name in names:
        images = do_pull(rt, name, all_tags=all_tags, quiet=quiet, log=_log,
                         interactive=sys.stdin.isatty() and sys.stderr.isatty(), choose=_choose, **opts)
        for img in images:
            click.echo(img.id)


@click.command("push")
@click.argument("image")
@click.argument("destination", required=False)
@registry_options
@click.option("-f", "--format", "fmt", type=click.Choice(["oci", "v2s2"]), help="Manifest format at the destination")
@click.option("--compression-format", type=click.Choice(["gzip", "zstd"]), help="Layer compression (default gzip)")
@click.option("--digestfile", metavar="PATH", help="Write the pushed manifest's digest to this file")
@click.option("--remove-signatures", is_flag=True, help="Do not copy signatures")
@click.option("--sign-by", metavar="FINGERPRINT", help="Sign the pushed image with this GPG key (simple signing)")
@click.option("--sign-by-sigstore-private-key", metavar="PATH", help="Sign the pushed image with this sigstore private key")
@click.option("--sign-passphrase-file", metavar="PATH", help="Read the signing key's passphrase from this file")
@click.option("-q", "--quiet", is_flag=True, help="Suppress progress output")
@click.pass_obj
def push(state, image, destination, authfile, creds, tls_verify, cert_dir, fmt, compression_format, digestfile,
         remove_signatures, sign_by, sign_by_sigstore_private_key, sign_passphrase_file, quiet):
    """Push an image to a registry (or any transport)."""
    from ..pull import push as do_push

    rt = state.runtime
    opts = _ctx_opts(authfile, _creds(creds), tls_verify, cert_dir)
    passphrase = _sign_passphrase(sign_passphrase_file, sign_by or sign_by_sigstore_private_key)
    do_push(rt, image, destination, fmt=fmt, compression=compression_format, digestfile=digestfile,
            remove_signatures=remove_signatures, sign_by=sign_by,
            sign_by_sigstore_private_key=sign_by_sigstore_private_key, sign_passphrase=passphrase,
            passphrase_prompt=_passphrase_prompt(), quiet=quiet, log=_log, **opts)


def _sign_passphrase(path, signing):
    if path is None:
        return None
    if not signing:
        raise InvalidArgument("--sign-passphrase-file needs --sign-by or --sign-by-sigstore-private-key")
    from ..registry.signing import read_passphrase_file

    return read_passphrase_file(path)


def _passphrase_prompt():
    """Asks for a key's passphrase on a terminal; None when there is none to ask on."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return None
    return lambda path: click.prompt(f"Passphrase for key {path}", hide_input=True, default="",
                                     show_default=False, err=True)


@click.command("sign")
@click.argument("images", nargs=-1, required=True)
@registry_options
@click.option("-a", "--all", "all_", is_flag=True, help="Sign a manifest list and every image in it")
@click.option("-d", "--directory", metavar="DIR", help="Store the signatures in this directory (default: as registries.d says)")
@click.option("--sign-by", metavar="FINGERPRINT", required=True, help="The GPG key to sign with")
@click.option("--sign-passphrase-file", metavar="PATH", help="Read the key's passphrase from this file")
@click.pass_obj
def sign(state, images, authfile, creds, tls_verify, cert_dir, all_, directory, sign_by, sign_passphrase_file):
    """Sign images in a registry (GPG simple signing); the signatures go to a lookaside."""
    from ..registry.signing import GPGSigner, sign_images

    rt = state.runtime
    signer = GPGSigner(sign_by, _sign_passphrase(sign_passphrase_file, True))
    ctx = rt.system_context(**_ctx_opts(authfile, _creds(creds), tls_verify, cert_dir))
    sign_images(list(images), signer, ctx, directory=directory, all_instances=all_)


@click.command("login")
@click.argument("registry", required=False)
@click.option("-u", "--username", metavar="USER", help="User name")
@click.option("-p", "--password", metavar="PASSWORD", help="Password (prefer --password-stdin)")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input")
@click.option("--authfile", metavar="PATH", help="Authentication file to write")
@tls_verify_option
@click.option("--cert-dir", metavar="DIR", help="Certificates for the registry")
@click.option("--get-login", is_flag=True, help="Print the user name stored for the registry")
@click.pass_obj
def login(state, registry, username, password, password_stdin, authfile, tls_verify, cert_dir, get_login):
    """Log in to a registry: check the credentials, then store them in the first credential
    store of registries.conf (by default auth.json, or the credential helper that auth.json
    names for the registry: credHelpers, else credsStore)."""
    from ..registry import auth
    from ..registry.client import login as do_login
    from ..registry.registries_conf import credential_helpers

    if not registry:
        raise click.UsageError("a registry is required")
    rt = state.runtime
    ctx = rt.system_context(authfile=authfile, tls_verify=tls_verify, cert_dir=cert_dir)
    helpers = credential_helpers(ctx)
    if get_login:
        creds = auth.get_credentials(auth.validate_key(registry), authfile, credential_helpers=helpers)
        if creds is None or not creds.username:  # an identity token has no user name (podman)
            raise InvalidArgument(f"not logged into {registry}")
        click.echo(creds.username)
        return
    # a helper that is missing fails now: before asking for a password or the registry
    helper, _ = auth.store_helper(registry, authfile, credential_helpers=helpers)
    if helper is not None:
        auth.find_helper(helper)
    if password_stdin:
        if password:
            raise click.UsageError("--password and --password-stdin are mutually exclusive")
        password = sys.stdin.readline().rstrip("\r\n")
    if not username:
        username = click.prompt("Username", err=True)
    if password is None:
        password = click.prompt("Password", hide_input=True, err=True)
    insecure = None if tls_verify is None else not tls_verify
    do_login(registry, username, password, ctx, insecure=insecure, authfile=authfile)
    click.echo("Login Succeeded!")


@click.command("logout")
@click.argument("registry", required=False)
@click.option("-a", "--all", "all_", is_flag=True, help="Remove the credentials of every registry")
@click.option("--authfile", metavar="PATH", help="Authentication file to change")
@click.pass_obj
def logout(state, registry, all_, authfile):
    """Remove stored credentials of a registry (or all of them) from every credential store
    of registries.conf (by default auth.json and the credential helpers it names)."""
    from ..registry import auth
    from ..registry.registries_conf import credential_helpers

    if not all_ and not registry:
        raise click.UsageError("a registry is required (or --all)")
    helpers = credential_helpers(state.runtime.system_context(authfile=authfile))
    if all_:
        auth.remove_all_credentials(authfile, credential_helpers=helpers)
        click.echo("Removed login credentials for all registries")
        return
    auth.remove_credentials(registry, authfile, credential_helpers=helpers)
    click.echo(f"Removed login credentials for {registry}")


@click.group("trust")
def trust():
    """Show or change the signature policy."""


@trust.command("show")
@click.argument("registry", required=False)
@click.option("--raw", is_flag=True, help="Print the policy file as JSON")
@click.option("-j", "--json", "as_json", is_flag=True, help="Print the rows as JSON")
@click.option("--policypath", metavar="PATH", help="Policy file (default: the configured one)")
@click.pass_obj
def trust_show(state, registry, raw, as_json, policypath):
    """Show the signature policy: the requirement for each scope."""
    from ..registry.policy import trust_show as show

    rt = state.runtime
    path = policypath or rt.config.signature_policy
    data = show(path, rt.config.registries_d, raw=raw)
    if raw:
        click.echo(to_json(data))
        return
    rows = [r for r in data if not registry or r["name"] == registry]
    if as_json:
        click.echo(to_json(rows))
        return
    click.echo(table(["TRANSPORT", "NAME", "TYPE", "ID", "STORE"],
                     [(r["transport"], r["name"], r["type"], ", ".join(r.get("gpg_ids") or r.get("keys") or []),
                       r.get("sigstore") or "") for r in rows]))


@trust.command("set")
@click.argument("registry")
@click.option("-t", "--type", "trust_type", required=True,
              type=click.Choice(["accept", "reject", "signedBy", "sigstoreSigned"]), help="Requirement for the scope")
@click.option("-f", "--pubkeysfile", "pubkeys", multiple=True, metavar="PATH", help="Public key file (repeatable)")
@click.option("--policypath", metavar="PATH", help="Policy file (default: the configured one)")
@click.pass_obj
def trust_set(state, registry, trust_type, pubkeys, policypath):
    """Set the requirement for a registry or repository (or 'default')."""
    from ..registry.policy import trust_set as do_set

    rt = state.runtime
    do_set(policypath or rt.config.signature_policy, registry, trust_type, list(pubkeys))
