"""Small file helpers shared by the state, store, registry and network code (no heavy imports)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import IO, Iterator

#: the temporary file of an atomic write: .NAME.kpod-tmp-PID-RANDOM beside NAME
TMP_MARK = ".kpod-tmp-"


def temp_name(path: str) -> str:
    """A new hidden name in *path*'s directory for the file that will replace *path*; it
    carries this process's PID (system check: whose writer is gone)."""
    d, base = os.path.split(os.path.abspath(path))
    return os.path.join(d, f".{base}{TMP_MARK}{os.getpid()}-{os.urandom(4).hex()}")


@contextmanager
def atomic_file(path: str, mode: int | None = 0o644, *, fsync: bool = False) -> Iterator[IO[bytes]]:
    """A binary file to write *path*'s new content to: a private temporary file beside it
    (never a symlink followed, 0600 until complete, so secrets are safe to write), renamed
    over *path* when the block ends and removed when it fails, so that a reader sees the old
    or the new content, never a part. *mode*: the file's final mode (None: 0666 less the
    umask, like open()); *fsync*: the content is on disk before the rename."""
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o666 if mode is None else 0o600)
    try:
        with open(fd, "wb") as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
            if mode is not None:
                os.fchmod(f.fileno(), mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_atomic(path: str, data: str | bytes, mode: int = 0o644, *, fsync: bool = False) -> None:
    """Replace *path* with *data* (see :func:`atomic_file`)."""
    with atomic_file(path, mode, fsync=fsync) as f:
        f.write(data.encode() if isinstance(data, str) else data)
