"""Conformance suites for kpod drivers (pytest).

Each driver kind has a suite class here. A driver's own tests subclass it and name the
driver; the suite loads it through the same entry points and plugin manager the engine uses,
so a third-party driver passes exactly the checks the bundled ones pass::

    # tests/test_conformance.py of a storage plugin
    from libpod_core.testing import StorageDriverSuite

    class TestMyDriver(StorageDriverSuite):
        driver_name = "mydriver"

Run with ``pytest``; integration suites need root and the real backends (runtime binaries,
conmon, overlayfs...).
"""

from __future__ import annotations

from .env import driver_env, make_config
from .runtime_suite import RuntimeDriverSuite
from .storage_suite import StorageDriverSuite

__all__ = ["RuntimeDriverSuite", "StorageDriverSuite", "driver_env", "make_config"]
