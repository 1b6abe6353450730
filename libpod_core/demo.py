"""``make run``: a real container from a locally built busybox image, on runc and on crun.

Runs the real ``kpod`` console script next to this interpreter with its own store under
/var/tmp/kpod-demo (so it touches nothing of the user's), then removes what it made.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from .testimage import rootfs_tar

KPOD = os.path.join(os.path.dirname(sys.executable), "kpod")
ROOT = "/var/tmp/kpod-demo"


def kpod(*args: str, check: bool = True) -> int:
    shown = " ".join(a if " " not in a else repr(a) for a in args)
    print(f"$ kpod {shown}", flush=True)
    code = subprocess.run([KPOD, "--root", f"{ROOT}/graph", "--runroot", f"{ROOT}/run", *args]).returncode
    if check and code != 0:
        print(f"(exit code {code})", flush=True)
        sys.exit(code)
    return code


def main() -> None:
    os.makedirs(ROOT, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=ROOT, suffix=".tar.gz") as f:
        f.write(rootfs_tar(compress="gzip"))
        f.flush()
        kpod("import", "-q", "-c", 'CMD ["sh"]', "-m", "busybox-static from Debian", f.name, "busybox")
    kpod("images")
    try:
        for runtime in ("runc", "crun"):
            kpod("--runtime", runtime, "run", "--rm", "--network", "none", "busybox",
                 "sh", "-c", f"echo hello from a kpod container on {runtime}; uname -sr; id; ls /")
        kpod("run", "-d", "--name", "demo", "--network", "none", "busybox", "sh", "-c", "echo detached; sleep 30")
        kpod("ps")
        kpod("logs", "demo")
        kpod("rm", "-f", "demo")
        code = kpod("run", "--rm", "--network", "none", "busybox", "sh", "-c", "exit 3", check=False)
        print(f"(exit code {code}, the container's own)")
    finally:
        subprocess.run([KPOD, "--root", f"{ROOT}/graph", "--runroot", f"{ROOT}/run", "rm", "-fa"], capture_output=True)
        subprocess.run([KPOD, "--root", f"{ROOT}/graph", "--runroot", f"{ROOT}/run", "rmi", "-a", "-f"], capture_output=True)
        shutil.rmtree(ROOT, ignore_errors=True)


if __name__ == "__main__":
    main()
