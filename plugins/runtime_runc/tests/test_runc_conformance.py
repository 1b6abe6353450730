"""The core's runtime conformance suite, run against the runc driver."""

from libpod_core.testing import RuntimeDriverSuite


class TestRuncConformance(RuntimeDriverSuite):
    driver_name = "runc"
