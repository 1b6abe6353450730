"""``make run``: show the engine working on this machine with real drivers.

Runs the real ``kpod`` console script next to this interpreter, so what it shows is what a
user gets.
"""

from __future__ import annotations

import os
import subprocess
import sys

KPOD = os.path.join(os.path.dirname(sys.executable), "kpod")


def kpod(*args: str) -> None:
    print("$ kpod " + " ".join(args), flush=True)
    proc = subprocess.run([KPOD, *args])
    if proc.returncode != 0:
        sys.exit(proc.returncode)


def main() -> None:
    fmt = "runtime: {{.Host.OciRuntime.Name}} ({{.Host.OciRuntime.Version}}) at {{.Host.OciRuntime.Path}}\\nstorage: {{.Store.GraphDriverName}} in {{.Store.GraphRoot}}\\nconmon: {{.Host.Conmon.Path}}\\ncgroups: {{.Host.CgroupVersion}}"
    kpod("version")
    kpod("plugins")
    for runtime, driver in (("runc", "overlay"), ("crun", "vfs")):
        kpod("--runtime", runtime, "--storage-driver", driver, "info", "--format", fmt)


if __name__ == "__main__":
    main()
