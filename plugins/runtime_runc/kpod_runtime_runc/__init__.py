"""kpod runtime driver for runc: the OCI runtime command line, through the core's base."""

from __future__ import annotations

from libpod_core.oci import OCIRuntimeDriver


class RuncDriver(OCIRuntimeDriver):
    name = "runc"
    package = "runc"
