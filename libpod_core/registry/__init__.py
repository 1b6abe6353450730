"""Talking to container registries: the registry v2 HTTP API and the files around it.

- :mod:`.client`: an HTTP(S) client for the distribution (registry v2) API: ping, auth
  challenges (Basic, Bearer tokens), manifests, blobs, uploads, mounts, tag lists.
- :mod:`.auth`: auth.json credentials (``kpod login``/``logout``), podman's file order.
- :mod:`.registries_conf`: /etc/containers/registries.conf (v2): search registries,
  short-name aliases, mirrors, insecure and blocked registries.
- :mod:`.registries_d`: /etc/containers/registries.d: where signatures live (lookaside,
  sigstore attachments).
- :mod:`.policy`: /etc/containers/policy.json: the signature policy and its verification
  (simple signing with GPG, sigstore keys), plus ``kpod image trust`` helpers.

Importing this package does nothing on the network and imports none of the submodules.
"""

from __future__ import annotations
