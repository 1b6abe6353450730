"""Image commands: images, tag, untag, rmi, history, import, load, save, and the
``image`` group (ls, inspect, exists, prune, ... aliases)."""

from __future__ import annotations

import os
import sys

import click

from ..errors import InvalidArgument, NotFound
from .formatting import human_size, render_many, table, time_ago, to_json


def _rt(state):
    return state.runtime


# --------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------

SORT_KEYS = ("created", "id", "repository", "size", "tag")


@click.command("images")
@click.argument("names", nargs=-1)
@click.option("-a", "--all", "all_images", is_flag=True, help="Show all images, intermediate ones included")
@click.option("-q", "--quiet", is_flag=True, help="Show image IDs only")
@click.option("--no-trunc", is_flag=True, help="Do not truncate IDs")
@click.option("--digests", is_flag=True, help="Show digests")
@click.option("-n", "--noheading", is_flag=True, help="Do not print the header row")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="dangling=true|false, reference=PATTERN, label=KEY[=VALUE], before=IMAGE, since=IMAGE, id=ID")
@click.option("--sort", type=click.Choice(SORT_KEYS), default="created", show_default=True, help="Sort by")
@click.option("--format", "fmt", metavar="FORMAT", help="'json' or a Go template like '{{.Repository}}:{{.Tag}}'")
@click.pass_obj
def images(state, names, all_images, quiet, no_trunc, digests, noheading, filters, sort, fmt):
    """List images in local storage."""
    from .. import images as imgs

    store = _rt(state).images
    rows = imgs.image_rows(store, all_images=all_images)
    for n in names:
        filters = filters + (f"reference={n}",)
    rows = imgs.filter_rows(store, rows, filters)
    key = {
        "created": lambda r: -r["Created"],
        "id": lambda r: r["Id"],
        "repository": lambda r: (r["Repository"], r["Tag"]),
        "size": lambda r: -r["Size"],
        "tag": lambda r: r["Tag"],
    }[sort]
    rows.sort(key=key)
    if quiet:
        seen = []
        for r in rows:
            i = r["Id"] if no_trunc else r["Id"][:12]
            if i not in seen:
                seen.append(i)
        click.echo("\n".join(seen)) if seen else None
        return
    if fmt == "json":
        out, seen = [], set()
        for r in rows:
            if r["Id"] in seen:
                continue
            seen.add(r["Id"])
            out.append({k: v for k, v in r.items() if not k.startswith("_") and k not in ("Repository", "Tag", "ID")})
        click.echo(to_json(out))
        return
    for r in rows:
        r["Size"] = human_size(r["Size"]) if fmt is None or "Size" in (fmt or "") else r["Size"]
        r["CreatedSince"] = time_ago(r["Created"])
        r["ID"] = r["Id"] if no_trunc else r["Id"][:12]
        r["Digest"] = r["Digest"]
    if fmt:
        out = render_many(fmt, rows)
        if out:
            click.echo(out)
        return
    headers = ["REPOSITORY", "TAG"] + (["DIGEST"] if digests else []) + ["IMAGE ID", "CREATED", "SIZE"]
    data = [
        [r["Repository"], r["Tag"]] + ([r["Digest"]] if digests else []) + [r["ID"], r["CreatedSince"], r["Size"]]
        for r in rows
    ]
    text = table(headers, data)
    if noheading:
        text = "\n".join(text.splitlines()[1:])
    if text:
        click.echo(text)


# --------------------------------------------------------------------------------------
# tag / untag / rmi
# --------------------------------------------------------------------------------------


@click.command("tag")
@click.argument("image")
@click.argument("target_names", nargs=-1, required=True)
@click.pass_obj
def tag(state, image, target_names):
    """Add one or more names to a local image."""
    store = _rt(state).images
    img = store.lookup(image)
    for n in target_names:
        store.tag(img, n)


@click.command("untag")
@click.argument("image")
@click.argument("names", nargs=-1)
@click.pass_obj
def untag(state, image, names):
    """Remove names from a local image (all of them when none is given)."""
    store = _rt(state).images
    img = store.lookup(image)
    if not names:
        store.untag(img)
    for n in names:
        store.untag(img, n)


def _container_remover(rt):
    def remove(cid):
        rt.containers.get(cid).remove(force=True)

    return remove


@click.command("rmi")
@click.argument("images", nargs=-1)
@click.option("-a", "--all", "all_images", is_flag=True, help="Remove all images")
@click.option("-f", "--force", is_flag=True, help="Remove images used by containers (and those containers)")
@click.option("-i", "--ignore", is_flag=True, help="Ignore images that do not exist")
@click.pass_obj
def rmi(state, images, all_images, force, ignore):
    """Remove one or more local images."""
    from .. import images as imgs

    if not images and not all_images:
        raise click.UsageError("image name or ID must be specified")
    if images and all_images:
        raise click.UsageError("when using the --all switch, you may not pass any image names or IDs")
    rt = _rt(state)
    untagged, deleted, errors = imgs.remove_images(
        rt, list(images), force=force, all_images=all_images, remove_container=_container_remover(rt)
    )
    for n in untagged:
        click.echo(f"Untagged: {n}")
    for i in deleted:
        click.echo(f"Deleted: {i}")
    errors = [(n, e) for n, e in errors if not (ignore and isinstance(e, NotFound))]
    if errors:
        for _, e in errors[:-1]:
            click.echo(f"Error: {e.message}", err=True)
        name, last = errors[-1]
        raise last


# --------------------------------------------------------------------------------------
# history / inspect / exists / prune
# --------------------------------------------------------------------------------------


@click.command("history")
@click.argument("image")
@click.option("-H", "--human/--no-human", default=True, help="Show sizes and dates in human-readable form")
@click.option("--no-trunc", is_flag=True, help="Do not truncate the output")
@click.option("-q", "--quiet", is_flag=True, help="Show image IDs only")
@click.option("--format", "fmt", metavar="FORMAT", help="'json' or a Go template like '{{.ID}} {{.CreatedBy}}'")
@click.pass_obj
def history(state, image, human, no_trunc, quiet, fmt):
    """Show the history of an image."""
    from .. import images as imgs

    store = _rt(state).images
    img = store.lookup(image)
    rows = imgs.history(store, img)
    if quiet:
        click.echo("\n".join(r["id"] if no_trunc or r["id"] == "<missing>" else r["id"][:12] for r in rows))
        return
    if fmt == "json":
        click.echo(to_json([
            {"id": r["id"], "created": r["created"], "createdBy": r["createdBy"], "size": r["size"],
             "comment": r["comment"], "tags": r["tags"]} for r in rows]))
        return
    view = []
    for r in rows:
        created_by = r["createdBy"]
        if not no_trunc and len(created_by) > 45:
            created_by = created_by[:42] + "..."
        view.append({
            "ID": r["id"] if no_trunc or r["id"] == "<missing>" else r["id"][:12],
            "Created": time_ago(r["created"]) if human else (r["created"] or ""),
            "CreatedBy": created_by,
            "Size": human_size(r["size"]) if human else r["size"],
            "Comment": r["comment"],
            "Tags": r["tags"],
        })
    if fmt:
        click.echo(render_many(fmt, view))
        return
    click.echo(table(["ID", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
                     [[v["ID"], v["Created"], v["CreatedBy"], v["Size"], v["Comment"]] for v in view]))


def inspect_data(rt, img):
    """The image inspect document (also used by ``kpod inspect``)."""
    from .. import images as imgs

    data = _graph_data(rt, img.top_layer) if img.top_layer else {}
    return imgs.inspect(rt.images, img, rt.plugins.driver_name("storage"), data)


def inspect_images(rt, names, fmt):
    from .. import images as imgs
    from .formatting import Template

    store = rt.images
    docs, errors = [], []
    for n in names:
        try:
            img = store.lookup(n)
        except NotFound as exc:
            errors.append(exc)
            continue
        data = {}
        if img.top_layer:
            data = _graph_data(rt, img.top_layer)
        docs.append(imgs.inspect(store, img, rt.plugins.driver_name("storage"), data))
    if fmt and fmt != "json":
        tpl = Template(fmt)
        for d in docs:
            click.echo(tpl.render(d))
    else:
        click.echo(to_json(docs))
    if errors:
        raise errors[-1]


def _graph_data(rt, layer_id):
    home = os.path.join(rt.config.graphroot, rt.plugins.driver_name("storage"))
    if rt.plugins.driver_name("storage") == "overlay":
        chain = rt.images.layer_chain(layer_id)
        lowers = [os.path.join(home, r["id"], "diff") for r in reversed(chain[:-1])]
        data = {"UpperDir": os.path.join(home, layer_id, "diff"), "WorkDir": os.path.join(home, layer_id, "work")}
        if lowers:
            data["LowerDir"] = ":".join(lowers)
        return data
    return {"Dir": os.path.join(home, layer_id, "root")}


@click.command("inspect")
@click.argument("images", nargs=-1, required=True)
@click.option("-f", "--format", "fmt", metavar="FORMAT", help="'json' (default) or a Go template like '{{.Id}}'")
@click.pass_obj
def image_inspect(state, images, fmt):
    """Display the configuration of one or more images."""
    inspect_images(_rt(state), images, fmt)


@click.command("exists")
@click.argument("image")
@click.pass_obj
def image_exists(state, image):
    """Exit 0 if an image exists in local storage, 1 if not."""
    try:
        _rt(state).images.lookup(image)
    except NotFound:
        sys.exit(1)


@click.command("prune")
@click.option("-a", "--all", "all_images", is_flag=True, help="Remove all images not used by containers")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation")
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE", help="Only prune images matching the filter")
@click.pass_obj
def image_prune(state, all_images, force, filters):
    """Remove unused images (dangling ones, or all unused with --all)."""
    from .. import images as imgs

    if not force and sys.stdin.isatty():
        what = "all images not used by containers" if all_images else "all dangling images"
        if not click.confirm(f"WARNING! This command removes {what}.\nAre you sure you want to continue?"):
            return
    for i in imgs.prune(_rt(state), all_images=all_images, filters=filters):
        click.echo(i)


# --------------------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------------------


@click.command("import")
@click.argument("source")
@click.argument("reference", required=False)
@click.option("-c", "--change", "changes", multiple=True, metavar="INSTRUCTION",
              help="Apply a Dockerfile instruction (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL)")
@click.option("-m", "--message", default="", help="Commit message for the image's history")
@click.option("--os", "os_", metavar="OS", help="Set the image's OS")
@click.option("--arch", metavar="ARCH", help="Set the image's architecture")
@click.option("--variant", metavar="VARIANT", help="Set the image's architecture variant")
@click.option("-q", "--quiet", is_flag=True, help="Print the image ID only")
@click.pass_obj
def import_(state, source, reference, changes, message, os_, arch, variant, quiet):
    """Create an image from a filesystem tarball (a file, an http(s) URL, or - for standard input)."""
    from .. import images as imgs

    rt = _rt(state)
    if reference:
        from .. import reference as refmod

        refmod.parse(reference)  # validate before reading anything
    if source.startswith(("http://", "https://")):
        stream = _open_url(source)
    elif source == "-":
        stream = sys.stdin.buffer
    else:
        try:
            stream = open(source, "rb")
        except OSError as exc:
            raise InvalidArgument(f"{source}: {exc.strerror}") from None
    try:
        img = imgs.import_tarball(rt, stream, name=reference, changes=changes, message=message,
                                  platform_os=os_, arch=arch, variant=variant,
                                  source=source if "://" in source else os.path.basename(source))
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    click.echo(img.id if quiet else f"sha256:{img.id}")


#: seconds without data from an import URL before giving up
URL_TIMEOUT = 60


def _open_url(url: str):
    """The body of *url* (http or https, the system's CAs, proxies from the environment) as
    a stream; an HTTP error or an unreachable server is one clear error before anything is
    stored."""
    import urllib.error
    import urllib.request

    from .. import __version__

    req = urllib.request.Request(url, headers={"User-Agent": f"kpod/{__version__}"})
    try:
        return urllib.request.urlopen(req, timeout=URL_TIMEOUT)  # noqa: S310 - http(s) only, checked above
    except urllib.error.HTTPError as exc:
        raise InvalidArgument(f"importing from {url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason.strerror if isinstance(exc.reason, OSError) and exc.reason.strerror else exc.reason
        raise InvalidArgument(f"importing from {url}: {reason}") from None
    except (OSError, ValueError) as exc:  # a timeout, a malformed URL
        raise InvalidArgument(f"importing from {url}: {exc}") from None


# --------------------------------------------------------------------------------------
# load / save
# --------------------------------------------------------------------------------------


def _spool_stdin(rt) -> str:
    """Copy standard input to a temporary file in the graphroot (archives need seeking)."""
    import shutil
    import tempfile

    tmpdir = os.path.join(rt.config.graphroot, "tmp")
    os.makedirs(tmpdir, mode=0o700, exist_ok=True)
    fd, path = tempfile.mkstemp(dir=tmpdir, prefix="load-", suffix=".tar")
    with os.fdopen(fd, "wb") as f:
        shutil.copyfileobj(sys.stdin.buffer, f, 1 << 20)
    return path


@click.command("load")
@click.option("-i", "--input", "input_", metavar="FILE", help="Read from an archive file instead of standard input")
@click.option("-q", "--quiet", is_flag=True, help="Suppress progress output")
@click.pass_obj
def load(state, input_, quiet):
    """Load images from a docker-archive or oci-archive (file or standard input)."""
    from .. import images as imgs

    rt = _rt(state)
    spooled = None
    if input_ is None:
        if sys.stdin.isatty():
            raise InvalidArgument("cannot read an archive from a terminal: use -i FILE or redirect standard input")
        spooled = path = _spool_stdin(rt)
    else:
        path = input_
        if not os.path.exists(path):
            raise InvalidArgument(f"{path}: no such file")
    try:
        loaded = imgs.load_archive(rt, path, quiet=quiet)
    finally:
        if spooled:
            os.unlink(spooled)
    for img, names in loaded:
        for n in names or [f"sha256:{img.id}"]:
            click.echo(f"Loaded image: {n}")


@click.command("save")
@click.argument("images", nargs=-1, required=True)
@click.option("-o", "--output", metavar="FILE", help="Write to a file (a directory for oci-dir and docker-dir)")
@click.option("--format", "fmt", type=click.Choice(["docker-archive", "oci-archive", "oci-dir", "docker-dir"]),
              default="docker-archive", show_default=True, help="Archive format")
@click.option("-m", "--multi-image-archive", is_flag=True, help="Several images in one docker-archive (the default with several images)")
@click.option("--compress", is_flag=True, help="Compress layers (docker-dir only)")
@click.option("-q", "--quiet", is_flag=True, help="Suppress progress output")
@click.pass_obj
def save(state, images, output, fmt, multi_image_archive, compress, quiet):
    """Save images to an archive (docker-archive by default) or a directory."""
    import shutil
    import tempfile

    from .. import images as imgs

    rt = _rt(state)
    if compress and fmt != "docker-dir":
        raise InvalidArgument("--compress can only be used with --format docker-dir")
    if output is None:
        if fmt in ("oci-dir", "docker-dir"):
            raise InvalidArgument(f"--format {fmt} needs --output DIR")
        if sys.stdout.isatty():
            raise InvalidArgument("refusing to save to a terminal: use -o FILE or redirect standard output")
        tmpdir = os.path.join(rt.config.graphroot, "tmp")
        os.makedirs(tmpdir, mode=0o700, exist_ok=True)
        fd, path = tempfile.mkstemp(dir=tmpdir, prefix="save-", suffix=".tar")
        os.close(fd)
        try:
            imgs.save_images(rt, list(images), path, fmt=fmt, quiet=quiet)
            with open(path, "rb") as f:
                shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)
            sys.stdout.buffer.flush()
        finally:
            if os.path.exists(path):
                os.unlink(path)
        return
    imgs.save_images(rt, list(images), output, fmt=fmt, compress=compress, quiet=quiet)


# --------------------------------------------------------------------------------------
# the image group
# --------------------------------------------------------------------------------------


@click.group("image", cls=click.Group)
def image():
    """Manage images."""


image.add_command(images, "ls")
image.add_command(images, "list")
image.add_command(tag, "tag")
image.add_command(untag, "untag")
image.add_command(rmi, "rm")
image.add_command(history, "history")
image.add_command(image_inspect, "inspect")
image.add_command(image_exists, "exists")
image.add_command(image_prune, "prune")
image.add_command(import_, "import")
image.add_command(load, "load")
image.add_command(save, "save")


def _registry_commands():
    from . import cmd_registry

    image.add_command(cmd_registry.pull, "pull")
    image.add_command(cmd_registry.push, "push")
    image.add_command(cmd_registry.trust, "trust")
    image.add_command(cmd_registry.sign, "sign")


_registry_commands()


