"""The container_dependencies table: filled from the stored options of containers made
before it existed (an existing database), and kept by SQLite's foreign keys."""

from __future__ import annotations

import json
import sqlite3

import pytest

from libpod_core import containers  # noqa: F401 - registers the tables
from libpod_core.containers import dependency_ids
from libpod_core.state import Database


def test_dependency_ids():
    assert dependency_ids({"network_mode": "bridge"}) == []
    assert dependency_ids({"network_mode": "container:a", "ipc": "container:b", "uts": "container:a",
                           "pid": "host"}) == ["a", "b"]
    assert dependency_ids({"network_mode": "ns:/run/netns/x", "ipc": None}) == []


def _add(db, cid: str, **config) -> None:
    with db.write() as tx:
        tx.execute("INSERT INTO containers(id, name, config, runtime, created_at) VALUES(?,?,?,?,?)",
                   (cid, f"n-{cid}", json.dumps(config), "runc", 1.0))


def test_existing_database_gets_its_dependencies(tmp_path):
    db = Database(str(tmp_path))
    _add(db, "a" * 64, network_mode="bridge")
    _add(db, "b" * 64, network_mode="container:" + "a" * 64, ipc="container:" + "a" * 64)
    _add(db, "c" * 64, network_mode="none", pid="container:" + "b" * 64, uts="container:" + "9" * 64)
    # the database as it was before the table existed
    with db.write() as tx:
        tx.execute("DROP TABLE container_dependencies")
        tx.execute("DELETE FROM schema_versions WHERE area = 'container_dependencies'")
    db.close()
    db = Database(str(tmp_path))
    rows = sorted((r[0][0], r[1][0]) for r in db.read("SELECT container_id, depends_on FROM container_dependencies"))
    assert rows == [("b", "a"), ("c", "b")]  # a dependency that no longer exists is not recorded
    # SQLite refuses to delete a container others depend on; the dependent goes with its row
    with pytest.raises(sqlite3.IntegrityError):
        with db.write() as tx:
            tx.execute("DELETE FROM containers WHERE id = ?", ("a" * 64,))
    with db.write() as tx:
        tx.execute("DELETE FROM containers WHERE id = ?", ("c" * 64,))
        tx.execute("DELETE FROM containers WHERE id = ?", ("b" * 64,))
        tx.execute("DELETE FROM containers WHERE id = ?", ("a" * 64,))
    assert db.read("SELECT * FROM container_dependencies") == []
    db.close()
