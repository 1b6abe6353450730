"""The core's storage conformance suite, run against the overlay driver."""

from libpod_core.testing import StorageDriverSuite


class TestOverlayConformance(StorageDriverSuite):
    driver_name = "overlay"
