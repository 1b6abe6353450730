"""Small file helpers shared by the state, store, registry and network code (no heavy imports)."""

from __future__ import annotations

import os


def write_atomic(path: str, data: str | bytes, mode: int = 0o644, *, fsync: bool = False) -> None:
    """Replace *path* with *data* through ``PATH.tmpPID`` and a rename: a reader sees the
    old or the new content, never a part. The temporary file is private (0600, never a
    symlink followed) until it is complete, so secrets are safe to write; *fsync* makes the
    content durable before the rename. A failed write leaves no temporary file."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with open(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
            os.fchmod(f.fileno(), mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
