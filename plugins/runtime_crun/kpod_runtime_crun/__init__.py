"""kpod runtime driver for crun.

crun 1.8 refuses to run on hosts with hybrid cgroups (v1 controllers plus a cgroup2 mount at
/sys/fs/cgroup/unified). On such hosts every crun invocation — by kpod and by conmon — goes
through ``crun-hybrid-wrapper``, which runs crun in a private mount namespace where the
cgroup2 mount is unmounted, so crun sees a plain v1 host.
"""

from __future__ import annotations

import os

from libpod_core.oci import OCIRuntimeDriver
from libpod_core.runtime import cgroup_version

WRAPPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crun-hybrid-wrapper")


class CrunDriver(OCIRuntimeDriver):
    name = "crun"
    package = "crun"

    def __init__(self, config) -> None:
        super().__init__(config)
        self.hybrid = cgroup_version() == "v1 (hybrid)"

    def executable(self) -> str:
        return WRAPPER if self.hybrid else self.path

    def runtime_env(self) -> dict[str, str]:
        return {"KPOD_CRUN_PATH": self.path}
