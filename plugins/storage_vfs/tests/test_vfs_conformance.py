"""The core's storage conformance suite, run against the vfs driver."""

from libpod_core.testing import StorageDriverSuite


class TestVfsConformance(StorageDriverSuite):
    driver_name = "vfs"
