"""The core's runtime conformance suite, run against the crun driver."""

from libpod_core.testing import RuntimeDriverSuite


class TestCrunConformance(RuntimeDriverSuite):
    driver_name = "crun"
