"""Image transports: where images come from and go to (containers/image's model).

A transport parses references of its own form (``docker://busybox``,
``docker-archive:/tmp/a.tar:busybox:latest``, ``oci:/dir:tag``, ``oci-archive:f.tar``,
``dir:/path``) and opens image *sources* (manifest, config, blobs, signatures) and
*destinations* (put blob, put manifest, put signatures, commit). The copy pipeline
(:mod:`libpod_core.copy`) moves an image from any source to any destination, verifying
every digest while bytes stream.

Transports are found through the ``kpod.transport`` entry-point group (name -> a
:class:`Transport` subclass); the core's own register the same way a third party's do.
"""

from __future__ import annotations

from .base import (
    ImageDestination,
    ImageReference,
    ImageSource,
    SystemContext,
    Transport,
    get_transport,
    parse_image_reference,
    split_transport,
    transport_names,
)

__all__ = [
    "ImageDestination",
    "ImageReference",
    "ImageSource",
    "SystemContext",
    "Transport",
    "get_transport",
    "parse_image_reference",
    "split_transport",
    "transport_names",
]
