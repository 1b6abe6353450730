"""Pulling into and pushing out of the local store, through any transport, with the
signature policy applied to every pull (``kpod pull``, ``kpod push``, ``kpod run`` of a
missing image)."""

from __future__ import annotations

import sys
from typing import Any, Callable

from . import reference as refmod
from .errors import InvalidArgument, KpodError, NotFound

Log = Callable[[str], None]


def _policy_check(ctx):
    from .registry.policy import check

    def policy(src_ref, src, raw, sigs):
        check(src_ref, raw, lambda: sigs, lambda: src.get_sigstore_signatures(), ctx=ctx)
        return True

    return policy


class Progress:
    """Per-blob progress on a terminal (one updating line), silent otherwise."""

    def __init__(self, stream=None, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.current = None

    def __call__(self, digest: str, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        short = digest.split(":", 1)[-1][:12]
        if total:
            pct = min(100, int(done * 100 / total)) if total else 0
            bar = "=" * (pct // 4)
            line = f"Copying blob {short} [{bar:<25}] {done / 1e6:.1f}MB / {total / 1e6:.1f}MB"
        else:
            line = f"Copying blob {short} {done / 1e6:.1f}MB"
        self.stream.write("\r" + line)
        if total and done >= total:
            self.stream.write("\n")
        self.stream.flush()


def resolve_pull_names(rt, name: str, ctx, *, interactive: bool = False, choose=None) -> list[str]:
    """Fully qualified names to try for *name* (registries.conf short-name rules).

    Several candidates on a non-terminal are an error, not a guess (unless short-name-mode is
    ``disabled``, which means "try them in order"); on a terminal *choose* picks one.
    """
    from .registry.registries_conf import load_registries_conf

    if not refmod.is_short_name(name):
        return [str(refmod.normalize(name))]
    conf = load_registries_conf(ctx)
    res = conf.resolve_short_name(name, interactive=interactive)
    cands = [str(c) for c in res.candidates]
    if len(cands) > 1 and res.mode != "disabled":
        if res.prompt and choose is not None:
            return [choose(cands)]
        raise InvalidArgument(
            f'short name "{name}" is ambiguous: it could be any of {", ".join(cands)}; '
            "use a fully qualified name, an alias in registries.conf, or run on a terminal to choose"
        )
    return cands


def pull(rt, name: str, *, all_tags: bool = False, quiet: bool = False, log: Log | None = None,
         interactive: bool = False, choose=None, **ctx_opts: Any) -> list:
    """Pull *name* (``docker://...``, a registry name, or any other transport) into the store.
    Returns the pulled images."""
    from .copy import copy_image
    from .store.transport import storage_reference
    from .transports import parse_image_reference, split_transport

    say = (lambda m: None) if quiet or log is None else log
    ctx = rt.system_context(quiet=quiet, **ctx_opts)
    if not quiet:
        ctx.progress = Progress()
    policy = _policy_check(ctx)
    transport, rest = split_transport(name)
    if transport not in (None, "docker"):
        src = parse_image_reference(name, rt.config)
        named = src.docker_reference()
        dest_name = "" if named is None else str(named)
        say("Getting image source signatures")
        result = copy_image(src, storage_reference(rt, dest_name), ctx, policy_check=policy)
        return [_image(rt, result, name)]
    refmod.parse(rest)  # a clear error for a malformed name before any resolution
    if all_tags:
        from .transports.docker import list_tags

        base = resolve_pull_names(rt, rest, ctx, interactive=interactive, choose=choose)[0]
        ref = refmod.normalize(base)
        if ref.tag and ref.tag != "latest" and ":" in rest.rsplit("/", 1)[-1]:
            raise InvalidArgument("--all-tags: the image name must not contain a tag")
        images = []
        for tag in list_tags(f"docker://{ref.name}", ctx):
            images += pull(rt, f"docker://{ref.name}:{tag}", quiet=quiet, log=log, **ctx_opts)
        return images
    names = resolve_pull_names(rt, rest, ctx, interactive=interactive, choose=choose)
    errors: list[KpodError] = []
    for full in names:
        say(f"Trying to pull {full}...")
        src = parse_image_reference(f"docker://{full}", rt.config)
        try:
            say("Getting image source signatures")
            result = copy_image(src, storage_reference(rt, full), ctx, policy_check=policy)
            say("Writing manifest to image destination")
            return [_image(rt, result, full)]
        except NotFound as exc:
            errors.append(exc)
            continue
    if len(errors) == 1:
        raise errors[0]
    raise NotFound(f"{rest}: image not found in any registry tried: " + "; ".join(e.message for e in errors))


def _image(rt, result, name: str):
    """The image a pull stored, recorded as pulled (as *name*) in the events log."""
    from .events import image as record
    from .images import _image_for

    img = _image_for(rt, result)
    record(rt.config, "pull", img.id, name)
    return img


def push(rt, source: str, destination: str | None = None, *, fmt: str | None = None,
         compression: str | None = None, digestfile: str | None = None, remove_signatures: bool = False,
         sign_by: str | None = None, sign_by_sigstore_private_key: str | None = None,
         sign_passphrase: str | None = None, passphrase_prompt: Callable[[str], str] | None = None,
         quiet: bool = False, log: Log | None = None, **ctx_opts: Any):
    """Push a local image to *destination* (default: its own name on its registry).

    *sign_by* (a GPG key) and *sign_by_sigstore_private_key* (an encrypted sigstore key
    file) sign the manifest pushed; *sign_passphrase* opens the key(s) (None: gpg-agent asks
    for the GPG key's, *passphrase_prompt(path)* for the sigstore key's). The keys are checked
    before anything is pushed."""
    from .copy import copy_image
    from .store.transport import storage_reference
    from .transports import parse_image_reference, split_transport

    say = (lambda m: None) if quiet or log is None else log
    store = rt.images
    img = store.lookup(source)
    if destination is None:
        if refmod.looks_like_id(source.removeprefix("sha256:")) and img.id.startswith(source.removeprefix("sha256:")):
            raise InvalidArgument(f"{source}: pushing an image by ID needs a destination")
        cands = [c for c in store.name_candidates(source) if c in img.names]
        destination = cands[0] if cands else source
    transport, rest = split_transport(destination)
    if transport is None:
        destination = f"docker://{refmod.normalize(destination)}"
        transport = "docker"
    if transport == "docker":
        named = refmod.normalize(destination.split("://", 1)[1])
        if named.domain == "localhost":
            raise InvalidArgument(f"{named}: localhost/ names are local only; give a registry destination")
    dst = parse_image_reference(destination, rt.config)
    signers = []
    if sign_by or sign_by_sigstore_private_key:
        from .registry.signing import make_signers

        signers = make_signers(sign_by, sign_by_sigstore_private_key, sign_passphrase, passphrase_prompt)
    ctx = rt.system_context(quiet=quiet, **ctx_opts)
    if not quiet:
        ctx.progress = Progress()
    if compression is None and transport == "docker":
        compression = "gzip"
    say("Getting image source signatures")
    result = copy_image(storage_reference(rt, img.id), dst, ctx, format=fmt, compression=compression,
                        digestfile=digestfile, remove_signatures=remove_signatures, signers=signers)
    say("Writing manifest to image destination")
    from .events import image as record

    record(rt.config, "push", img.id, destination)
    return result
