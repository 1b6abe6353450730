"""Local image management on top of the store: list, filter, inspect, history, import,
tag, remove, prune. The ``kpod`` image commands are thin wrappers over these functions.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import IO, Any, Iterable

from . import manifest as mf
from . import reference as refmod
from .errors import InvalidArgument, KpodError, NotFound

NONE = "<none>"


def parse_time(value: str | None) -> float | None:
    """RFC 3339 timestamp -> epoch seconds (None for empty)."""
    if not value:
        return None
    v = value.strip()
    if v.endswith("Z"):
        v = v[:-1] + "+00:00"
    # Python < 3.12 accepts at most 6 fractional digits.
    if "." in v:
        head, _, rest = v.partition(".")
        frac = "".join(c for c in rest if c.isdigit())
        tz = rest[len(frac):]
        v = f"{head}.{frac[:6]}{tz}"
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def split_name(name: str) -> tuple[str, str]:
    """``repo:tag`` -> (repo, tag), understanding ports in the domain."""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, NONE


def image_rows(store, *, all_images: bool = False) -> list[dict[str, Any]]:
    """One row per (image, name) like ``podman images`` (dangling images once, as <none>)."""
    images = store.list_images()
    intermediate: set[str] = set()
    if not all_images:
        tops = {img.top_layer for img in images}
        # An unnamed image whose top layer is a parent of another image's chain is intermediate.
        for img in images:
            if not img.names and img.top_layer:
                for other in images:
                    if other.id != img.id and other.top_layer in tops and other.top_layer != img.top_layer:
                        chain = {r["id"] for r in store.layer_chain(other.top_layer)}
                        if img.top_layer in chain:
                            intermediate.add(img.id)
                            break
    rows = []
    for img in images:
        if img.id in intermediate:
            continue
        cfg = img.config
        created = parse_time(cfg.get("created")) or img.added
        labels = ((cfg.get("config") or {}).get("Labels")) or {}
        digest = img.manifest_digest
        base = {
            "Id": img.id,
            "ID": img.id,
            "Digest": digest,
            "Created": int(created),
            "CreatedAt": datetime.fromtimestamp(created, timezone.utc).isoformat(),
            "Size": img.size,
            "VirtualSize": img.size,
            "Labels": labels,
            "Names": list(img.names),
            "RepoTags": img.repo_tags(),
            "RepoDigests": img.repo_digests(),
            "Dangling": not img.names,
            "Containers": len(store.containers_using(img.id)),
            "_image": img,
        }
        if img.names:
            for n in img.names:
                repo, tag = split_name(n)
                rows.append({**base, "Repository": repo, "Tag": tag})
        else:
            rows.append({**base, "Repository": NONE, "Tag": NONE})
    return rows


def _match_reference(pattern: str, row: dict[str, Any]) -> bool:
    import fnmatch

    if row["Repository"] == NONE:
        return False
    full = f"{row['Repository']}:{row['Tag']}"
    candidates = {full, row["Repository"]}
    for n in list(candidates):
        tail = n.split("/", 1)[1] if "/" in n and ("." in n.split("/")[0] or n.startswith("localhost/")) else n
        candidates.add(tail)
        if tail.startswith("library/"):
            candidates.add(tail[len("library/"):])
    return any(fnmatch.fnmatchcase(c, pattern) for c in candidates)


def filter_rows(store, rows: list[dict[str, Any]], filters: Iterable[str]) -> list[dict[str, Any]]:
    """Apply ``--filter KEY=VALUE`` (dangling, reference, label, label!, before, since, until, id,
    readonly)."""
    from .filters import labels_match, parse_time as parse_until

    grouped: dict[str, list[str]] = {}
    for f in filters:
        key, sep, value = f.partition("=")
        if not sep:
            raise InvalidArgument(f"invalid filter {f!r}: expected KEY=VALUE")
        key = key.strip().lower()
        if key not in ("dangling", "reference", "label", "label!", "before", "since", "until", "id", "readonly",
                       "intermediate"):
            raise InvalidArgument(f"invalid filter {key!r} (supported: dangling, reference, label, label!, before, "
                                  "since, until, id)")
        grouped.setdefault(key, []).append(value)

    def created_of(name: str) -> int:
        img = store.lookup(name)
        return int(parse_time(img.config.get("created")) or img.added)

    out = rows
    for key, values in grouped.items():
        if key == "dangling":
            for v in values:
                if v.lower() not in ("true", "false", "1", "0"):
                    raise InvalidArgument(f"invalid dangling filter value {v!r}: expected true or false")
            want = values[-1].lower() in ("true", "1")
            out = [r for r in out if r["Dangling"] == want]
        elif key == "reference":
            out = [r for r in out if any(_match_reference(v, r) for v in values)]
        elif key == "label":
            out = [r for r in out if labels_match(r["Labels"], values)]
        elif key == "label!":
            out = [r for r in out if not any(labels_match(r["Labels"], [v]) for v in values)]
        elif key == "until":
            t = min(parse_until(v) for v in values)
            out = [r for r in out if r["Created"] < t]
        elif key == "before":
            t = min(created_of(v) for v in values)
            out = [r for r in out if r["Created"] < t]
        elif key == "since":
            t = max(created_of(v) for v in values)
            out = [r for r in out if r["Created"] > t]
        elif key == "id":
            out = [r for r in out if any(r["Id"].startswith(v.removeprefix("sha256:")) for v in values)]
        elif key == "readonly":
            out = out if values[-1].lower() == "false" else []
        elif key == "intermediate":
            out = out if values[-1].lower() == "false" else []
    return out


def inspect(store, img, driver_name: str, graph_data: dict[str, Any] | None = None) -> dict[str, Any]:
    """podman's ``image inspect`` document."""
    cfg = img.config
    config = cfg.get("config") or {}
    chain = store.image_layers(img)
    history = cfg.get("history") or []
    parent = ""
    return {
        "Id": img.id,
        "Digest": img.manifest_digest,
        "RepoTags": img.repo_tags(),
        "RepoDigests": img.repo_digests(),
        "Parent": parent,
        "Comment": cfg.get("comment", ""),
        "Created": cfg.get("created"),
        "Config": config,
        "Version": cfg.get("docker_version", ""),
        "Author": cfg.get("author", ""),
        "Architecture": cfg.get("architecture", ""),
        "Os": cfg.get("os", ""),
        "Variant": cfg.get("variant", ""),
        "Size": img.size,
        "VirtualSize": img.size,
        "GraphDriver": {"Name": driver_name, "Data": graph_data or {}},
        "RootFS": {"Type": "layers", "Layers": [r["diff_id"] for r in chain]},
        "Labels": config.get("Labels") or {},
        "Annotations": _annotations(img),
        "ManifestType": img.manifest_type,
        "User": config.get("User", ""),
        "History": history,
        "NamesHistory": list(img.names),
    }


def _annotations(img) -> dict[str, str]:
    try:
        return json.loads(img.manifest).get("annotations") or {}
    except ValueError:
        return {}


def history(store, img) -> list[dict[str, Any]]:
    """``podman history`` rows, newest first: ID, Created, CreatedBy, Size, Comment, Tags."""
    cfg = img.config
    entries = cfg.get("history") or []
    chain = store.image_layers(img)
    sizes = [r["size"] or 0 for r in chain]
    rows = []
    li = 0
    for i, h in enumerate(entries):
        empty = bool(h.get("empty_layer"))
        size = 0
        if not empty and li < len(sizes):
            size = sizes[li]
            li += 1
        rows.append({
            "id": "<missing>",
            "created": parse_time(h.get("created")),
            "createdBy": h.get("created_by", ""),
            "size": size,
            "comment": h.get("comment", ""),
            "tags": [],
        })
    if not rows:  # no history: one row per layer
        for size in sizes:
            rows.append({"id": "<missing>", "created": parse_time(cfg.get("created")), "createdBy": "",
                         "size": size, "comment": "", "tags": []})
    rows.reverse()
    if rows:
        rows[0]["id"] = img.id
        rows[0]["tags"] = img.repo_tags()
    return rows


CHANGE_KEYS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "USER", "VOLUME", "WORKDIR", "STOPSIGNAL", "ONBUILD")


def apply_changes(config: dict[str, Any], changes: Iterable[str]) -> dict[str, Any]:
    """Apply Dockerfile-style ``--change`` instructions to an image ``config`` section."""
    config = dict(config)
    for change in changes:
        instr, _, rest = change.strip().partition(" ")
        if "=" in instr and not rest:
            instr, _, rest = change.strip().partition("=")
        key = instr.upper()
        rest = rest.strip()
        if key not in CHANGE_KEYS:
            raise InvalidArgument(f"invalid change {change!r}: instruction must be one of {', '.join(CHANGE_KEYS)}")
        if not rest:
            raise InvalidArgument(f"invalid change {change!r}: missing value")

        def argv(text: str) -> list[str]:
            if text.startswith("["):
                try:
                    v = json.loads(text)
                except ValueError:
                    raise InvalidArgument(f"invalid change {change!r}: malformed JSON array") from None
                if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                    raise InvalidArgument(f"invalid change {change!r}: expected a JSON array of strings")
                return v
            return ["/bin/sh", "-c", text]

        def pairs(text: str) -> list[tuple[str, str]]:
            import shlex

            items = shlex.split(text)
            if len(items) >= 2 and "=" not in items[0]:
                return [(items[0], " ".join(items[1:]))]
            out = []
            for item in items:
                k, sep, v = item.partition("=")
                if not sep or not k:
                    raise InvalidArgument(f"invalid change {change!r}: expected KEY=VALUE")
                out.append((k, v))
            return out

        if key == "CMD":
            config["Cmd"] = argv(rest)
        elif key == "ENTRYPOINT":
            config["Entrypoint"] = argv(rest)
        elif key == "ENV":
            env = [e for e in (config.get("Env") or [])]
            for k, v in pairs(rest):
                env = [e for e in env if e.split("=", 1)[0] != k] + [f"{k}={v}"]
            config["Env"] = env
        elif key == "LABEL":
            labels = dict(config.get("Labels") or {})
            labels.update(pairs(rest))
            config["Labels"] = labels
        elif key == "EXPOSE":
            ports = dict(config.get("ExposedPorts") or {})
            for p in rest.split():
                if "/" not in p:
                    p += "/tcp"
                num, _, proto = p.partition("/")
                if not num.isdigit() or not 0 < int(num) < 65536 or proto not in ("tcp", "udp", "sctp"):
                    raise InvalidArgument(f"invalid change {change!r}: bad port {p!r}")
                ports[p] = {}
            config["ExposedPorts"] = ports
        elif key == "VOLUME":
            vols = dict(config.get("Volumes") or {})
            for v in (json.loads(rest) if rest.startswith("[") else rest.split()):
                vols[v] = {}
            config["Volumes"] = vols
        elif key == "USER":
            config["User"] = rest
        elif key == "WORKDIR":
            config["WorkingDir"] = rest
        elif key == "STOPSIGNAL":
            config["StopSignal"] = rest
        elif key == "ONBUILD":
            config["OnBuild"] = list(config.get("OnBuild") or []) + [rest]
    return config


def import_tarball(rt, stream: IO[bytes], *, name: str | None = None, changes: Iterable[str] = (),
                   message: str = "", platform_os: str | None = None, arch: str | None = None,
                   variant: str | None = None, source: str = "-") -> Any:
    """``kpod import``: a filesystem tarball (plain/gzip/zstd) becomes a one-layer image."""
    store = rt.images
    config_section = apply_changes({"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}, changes)
    names = []
    if name:
        names.append(str(refmod.normalize_local(name)) if refmod.is_short_name(name) else str(refmod.normalize(name)))
    with store.shared():
        op = store.operation(f"import {source}")
        try:
            layer = store.create_layer(op, None, stream)
            cfg = mf.make_image_config(
                [layer["diff_id"]], config=config_section, os=platform_os, architecture=arch, variant=variant,
                created_by=f"/bin/sh -c #(nop) ADD file:{source} in /", comment=message or None,
            )
            raw = mf.config_bytes(cfg)
            m = mf.build_manifest(
                mf.descriptor_for(raw, mf.MEDIA_TYPE_OCI_CONFIG),
                [mf.Descriptor(media_type=mf.MEDIA_TYPE_OCI_LAYER, digest=layer["diff_id"], size=layer["size"])],
                mf.FORMAT_OCI,
            )
            img = store.commit_image(
                op, config_raw=raw, manifest_raw=m, manifest_type=mf.MEDIA_TYPE_OCI_MANIFEST,
                manifest_digest=refmod.digest_bytes(m), top_layer=layer["id"], names=names,
            )
        except BaseException:
            op.abort()
            raise
    _event(rt, "import", img.id, names[0] if names else source)
    return img


def remove_images(rt, names: list[str], *, force: bool = False, all_images: bool = False,
                  remove_container=None) -> tuple[list[str], list[str], list[tuple[str, KpodError]]]:
    """``kpod rmi``: returns (untagged names, deleted image IDs, errors).

    A name given by tag on an image with other names only untags it, like podman; an image
    used by containers is refused unless *force*, which first removes those containers via
    *remove_container(id)*.
    """
    store = rt.images
    untagged: list[str] = []
    deleted: list[str] = []
    errors: list[tuple[str, KpodError]] = []
    targets = [(img.id, img.id) for img in store.list_images()] if all_images else [(n, None) for n in names]
    for name, image_id in targets:
        try:
            img = store.get_by_id(image_id) if image_id else store.lookup(name)
            if img is None:
                continue
            by_id = image_id is not None or refmod.looks_like_id(name.removeprefix("sha256:")) and img.id.startswith(name.removeprefix("sha256:"))
            if not by_id and len(img.names) > 1 and not all_images:
                untagged += store.untag(img, name)
                continue
            users = store.containers_using(img.id)
            if users and force and remove_container is not None:
                for cid in users:
                    remove_container(cid)
            if len(img.names) > 1 and by_id and not force and not all_images:
                raise KpodError(
                    f"unable to delete image {img.id[:12]} by ID with more than one tag ({', '.join(img.names)}): "
                    "please force removal"
                )
            untagged += list(img.names)
            store.remove_image(img, force=False)
            deleted.append(img.id)
        except KpodError as exc:
            errors.append((name, exc))
    return untagged, deleted, errors


def prune(rt, *, all_images: bool = False, filters: Iterable[str] = ()) -> list[str]:
    """``kpod image prune``: remove dangling (or, with *all_images*, unused) images."""
    store = rt.images
    removed = []
    while True:
        rows = image_rows(store, all_images=True)
        rows = filter_rows(store, rows, filters) if filters else rows
        victims = []
        seen = set()
        for r in rows:
            img = r["_image"]
            if img.id in seen:
                continue
            seen.add(img.id)
            if store.containers_using(img.id):
                continue
            if (not img.names) or all_images:
                if store.children(img):
                    continue
                victims.append(img)
        if not victims:
            return removed
        for img in victims:
            try:
                store.remove_image(img)
                removed.append(img.id)
            except NotFound:
                pass


# --------------------------------------------------------------------------------------
# load / save
# --------------------------------------------------------------------------------------

def archive_format(path: str) -> str:
    """``docker-archive`` or ``oci-archive``, from the archive's top-level entries."""
    import tarfile

    from .errors import ImageError

    try:
        from .tarapply import SafeTarInfo

        with tarfile.open(path, "r:*", tarinfo=SafeTarInfo) as tf:
            names = set()
            for member in tf:
                names.add(member.name.lstrip("./"))
                if "manifest.json" in names:
                    return "docker-archive"
                if "oci-layout" in names:
                    return "oci-archive"
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ImageError(f"{path}: not a valid image archive: {exc}") from None
    raise ImageError(f"{path}: not a docker-archive or oci-archive (no manifest.json or oci-layout)")


def _oci_ref_names(path: str) -> list[str]:
    import tarfile

    from .errors import ImageError

    from .tarapply import SafeTarInfo

    with tarfile.open(path, "r:*", tarinfo=SafeTarInfo) as tf:
        try:
            member = tf.getmember("index.json")
        except KeyError:
            try:
                member = tf.getmember("./index.json")
            except KeyError:
                raise ImageError(f"{path}: OCI archive without index.json") from None
        f = tf.extractfile(member)
        raw = f.read(mf.MAX_MANIFEST_SIZE + 1) if f else b""
    try:
        index = json.loads(raw)
    except ValueError:
        raise ImageError(f"{path}: index.json is not valid JSON") from None
    out = []
    for m in index.get("manifests") or []:
        name = (m.get("annotations") or {}).get("org.opencontainers.image.ref.name")
        out.append(name or "")
    return out


def load_archive(rt, path: str, *, quiet: bool = True, policy_check=None) -> list[tuple[Any, list[str]]]:
    """``kpod load``: every image of a docker-archive or oci-archive into the store.

    Returns ``[(image, names)]``. An archive that fails part-way leaves the images it already
    stored and nothing of the one that failed.
    """
    from .copy import copy_image
    from .store.transport import storage_reference
    from .transports import parse_image_reference
    from .transports.docker_archive import DockerArchiveReader

    fmt = archive_format(path)
    loaded = []
    if fmt == "docker-archive":
        with DockerArchiveReader(path) as reader:
            for ref in reader.list_images():
                names = [str(refmod.normalize(t)) for t in (getattr(ref, "repo_tags", None) or [])]
                ctx = rt.system_context(quiet=quiet, extra_names=names)
                result = copy_image(ref, storage_reference(rt, ""), ctx, policy_check=policy_check)
                loaded.append((_image_for(rt, result), names))
                _event(rt, "loadfromarchive", loaded[-1][0].id, path)  # podman's status and Name
    else:
        ref_names = _oci_ref_names(path)
        for i, ref_name in enumerate(ref_names):
            names = []
            if ref_name:
                try:  # a ref name that is an image name names the image (short: localhost/...)
                    names = [str(refmod.normalize_local(ref_name) if refmod.is_short_name(ref_name) else refmod.normalize(ref_name))]
                except InvalidArgument:
                    names = []
            src_text = f"oci-archive:{path}:{ref_name}" if ref_name else f"oci-archive:{path}"
            if not ref_name and len(ref_names) > 1:
                src_text = f"oci-archive:{path}:@{i}"
            src = parse_image_reference(src_text, rt.config)
            ctx = rt.system_context(quiet=quiet, extra_names=names)
            result = copy_image(src, storage_reference(rt, ""), ctx, policy_check=policy_check)
            loaded.append((_image_for(rt, result), names))
            _event(rt, "loadfromarchive", loaded[-1][0].id, path)
    return loaded


def _image_for(rt, result):
    from .reference import digest_bytes

    img = None
    if result.config_digest:
        img = rt.images.get_by_id(result.config_digest.split(":", 1)[1])
    if img is None:
        try:
            cfg = json.loads(result.manifest)["config"]["digest"]
            img = rt.images.get_by_id(cfg.split(":", 1)[1])
        except (ValueError, KeyError):
            pass
    if img is None:
        raise NotFound(f"loaded image not found in the store (manifest {digest_bytes(result.manifest)})")
    return img


SAVE_FORMATS = ("docker-archive", "oci-archive", "oci-dir", "docker-dir")


def save_images(rt, names: list[str], output: str, *, fmt: str = "docker-archive", compress: bool = False,
                quiet: bool = True) -> None:
    """``kpod save``: images to a docker-archive (several allowed), oci-archive, oci-dir or
    docker-dir. The output appears only when complete."""
    from .copy import copy_image
    from .store.transport import storage_reference
    from .transports import parse_image_reference
    from .transports.docker_archive import DockerArchiveWriter

    if fmt not in SAVE_FORMATS:
        raise InvalidArgument(f"unknown format {fmt!r} (use {', '.join(SAVE_FORMATS)})")
    store = rt.images
    resolved = []
    for n in names:
        img = store.lookup(n)
        tag = None
        if not refmod.looks_like_id(n.removeprefix("sha256:")) or not img.id.startswith(n.removeprefix("sha256:")):
            cands = [c for c in store.name_candidates(n) if c in img.names]
            tag = cands[0] if cands else None
        resolved.append((img, tag))
    if fmt != "docker-archive" and len(resolved) > 1:
        raise InvalidArgument(f"--format {fmt} holds one image; use docker-archive for several")
    compression = "gzip" if compress and fmt == "docker-dir" else None
    # Like podman save: signatures (of a pulled signed image) are dropped in every format;
    # they sign a registry manifest, which an archive does not keep.
    if fmt == "docker-archive":
        with DockerArchiveWriter(output) as writer:
            for img, tag in resolved:
                ctx = rt.system_context(quiet=quiet)
                copy_image(storage_reference(rt, img.id), writer.reference([tag] if tag else []), ctx,
                           remove_signatures=True)
                _event(rt, "save", img.id, output)
        return
    img, tag = resolved[0]
    if fmt == "oci-archive":
        dst = f"oci-archive:{output}" + (f":{tag}" if tag else "")
    elif fmt == "oci-dir":
        dst = f"oci:{output}" + (f":{tag}" if tag else "")
    else:
        dst = f"dir:{output}"
    ctx = rt.system_context(quiet=quiet)
    copy_image(storage_reference(rt, img.id), parse_image_reference(dst, rt.config), ctx,
               format="v2s2" if fmt == "docker-dir" else "oci", compression=compression, remove_signatures=True)
    _event(rt, "save", img.id, output)


def _event(rt, status: str, image_id: str, name: str) -> None:
    """Record an image event (:mod:`libpod_core.events`; never fails)."""
    from .events import image as record

    record(rt.config, status, image_id, name)
