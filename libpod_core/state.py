"""The SQLite state database (``<graphroot>/kpod.db``) and the store's file locks.

Short transactions, foreign keys, WAL and a busy timeout make many kpod processes at once
safe. Long work (pulling, extracting) happens outside transactions; the result is committed
in one step, and rows for work in progress are marked ``incomplete`` so that the next command
can remove what a killed process left.

Schemas are registered per area (:func:`register_schema`) and applied in order once per
database; each is idempotent (``CREATE TABLE IF NOT EXISTS``) and versioned in
``schema_versions``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
import time
from contextlib import contextmanager
from typing import Iterator

from .errors import LockTimeout, StorageError

DB_NAME = "kpod.db"


def container_lock_path(runroot: str, container_id: str) -> str:
    """``<runroot>/locks/ctr-<id>.lock``: the per-container flock."""
    return os.path.join(runroot, "locks", f"ctr-{container_id}.lock")
BUSY_TIMEOUT_MS = 30_000

_SCHEMAS: list[tuple[str, int, str]] = []


def register_schema(area: str, version: int, sql: str) -> None:
    """Register DDL for *area* at *version* (applied once, in registration order)."""
    _SCHEMAS.append((area, version, sql))


class Database:
    """One connection to the state database with transaction helpers."""

    def __init__(self, graphroot: str) -> None:
        os.makedirs(graphroot, mode=0o700, exist_ok=True)
        self.path = os.path.join(graphroot, DB_NAME)
        try:
            self.conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StorageError(f"state database {self.path}: {exc}") from None
        self.conn.row_factory = sqlite3.Row
        self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self.conn.execute("PRAGMA foreign_keys = ON")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        try:
            mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError:
            mode = "delete"
        self.wal = mode == "wal"
        self._migrate()

    def _migrate(self) -> None:
        with self.write() as c:
            c.execute("CREATE TABLE IF NOT EXISTS schema_versions (area TEXT PRIMARY KEY, version INTEGER NOT NULL)")
            have = {r["area"]: r["version"] for r in c.execute("SELECT area, version FROM schema_versions")}
            for area, version, sql in _SCHEMAS:
                if have.get(area, 0) >= version:
                    continue
                c.executescript_safe(sql)
                c.execute(
                    "INSERT INTO schema_versions(area, version) VALUES(?, ?) "
                    "ON CONFLICT(area) DO UPDATE SET version = excluded.version",
                    (area, version),
                )
                have[area] = version

    def ensure_schema(self, area: str, version: int) -> None:
        """Apply the registered schemas again when *area* is below *version* here: its module
        registered them after this database was opened (modules load on first use)."""
        done = self.__dict__.setdefault("_ensured", set())
        if area in done:
            return
        row = self.one("SELECT version FROM schema_versions WHERE area = ?", (area,))
        if row is None or row["version"] < version:
            self._migrate()
        done.add(area)

    @contextmanager
    def write(self) -> Iterator["_Tx"]:
        """An immediate (write-locked) transaction: committed on success, rolled back on error."""
        for attempt in range(200):
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 199:
                    raise StorageError(f"state database {self.path}: {exc}") from None
                time.sleep(0.05)
        try:
            yield _Tx(self.conn)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def read(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: tuple = ()) -> sqlite3.Row | None:
        return self.conn.execute(sql, params).fetchone()

    def close(self) -> None:
        self.conn.close()


class _Tx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: tuple | dict = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, seq) -> sqlite3.Cursor:
        return self.conn.executemany(sql, seq)

    def executescript_safe(self, sql: str) -> None:
        # executescript() would COMMIT the open transaction; run statement by statement.
        for stmt in sql.split(";"):
            if stmt.strip():
                self.conn.execute(stmt)


class FileLock:
    """An flock(2) on a file; shared or exclusive, blocking with a timeout, or non-blocking."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self, exclusive: bool = True, timeout: float | None = 300.0, blocking: bool = True) -> bool:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        op = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, op | fcntl.LOCK_NB)
                self.fd = fd
                return True
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
            if not blocking:
                os.close(fd)
                return False
            if deadline is not None and time.monotonic() > deadline:
                os.close(fd)
                raise LockTimeout(f"timed out waiting for lock {self.path}")
            time.sleep(0.02)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    @contextmanager
    def held(self, exclusive: bool = True, timeout: float | None = 300.0) -> Iterator["FileLock"]:
        self.acquire(exclusive, timeout)
        try:
            yield self
        finally:
            self.release()


def find_by_name_or_id(rows, name_or_id: str, kind: str):
    """The one row whose ID or name is *name_or_id*, else the one whose ID starts with it.

    *rows(where, params)* runs ``SELECT * FROM <table> <where>`` (callers add their own
    conditions). Raises NotFound, or InvalidArgument for an ambiguous ID prefix.
    """
    import re

    from .errors import InvalidArgument, NotFound

    found = rows("WHERE (id = ? OR name = ?) ORDER BY id = ? DESC LIMIT 1", (name_or_id, name_or_id, name_or_id)) \
        if name_or_id else []
    if not found and re.fullmatch(r"[0-9a-f]{1,63}", name_or_id or ""):
        found = rows("WHERE id LIKE ?", (name_or_id + "%",))
        if len(found) > 1:
            raise InvalidArgument(f'more than one {kind} matches "{name_or_id}": use more of the ID')
    if not found:
        raise NotFound(f'no {kind} with name or ID "{name_or_id}" found: no such {kind}')
    return found[0]
