"""Put test images into a kpod store through the library (no ``kpod load`` needed).

    from tests.helpers_images import add_busybox
    add_busybox(graphroot, runroot, storage_driver="overlay")

The image is Debian's busybox-static as one layer (libpod_core.testimage), with an OCI
manifest and config, committed with :meth:`ImageStore.commit_image`.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

from libpod_core import manifest, testimage
from libpod_core.runtime import Runtime

DEFAULT_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]

_TAR_CACHE: dict[str, bytes] = {}


def _rootfs_tar() -> bytes:
    if "busybox" not in _TAR_CACHE:
        _TAR_CACHE["busybox"] = testimage.rootfs_tar()
    return _TAR_CACHE["busybox"]


def add_image(rt: Runtime, name: str = "localhost/busybox:latest", *, config: dict[str, Any] | None = None,
              layer_tar: bytes | None = None):
    """Commit a one-layer image named *name* into *rt*'s store; returns the Image."""
    store = rt.images
    cfg = {"Cmd": ["sh"], "Env": list(DEFAULT_ENV)}
    cfg.update(config or {})
    with store.shared():
        op = store.operation("test image")
        try:
            layer = store.create_layer(op, None, io.BytesIO(layer_tar if layer_tar is not None else _rootfs_tar()))
            image_config = manifest.make_image_config([layer["diff_id"]], config=cfg)
            raw = manifest.config_bytes(image_config)
            m = manifest.build_manifest(
                manifest.descriptor_for(raw, manifest.MEDIA_TYPE_OCI_CONFIG),
                [manifest.Descriptor(media_type=manifest.MEDIA_TYPE_OCI_LAYER, digest=layer["diff_id"],
                                     size=layer["size"])],
            )
            return store.commit_image(
                op, config_raw=raw, manifest_raw=m, manifest_type=manifest.MEDIA_TYPE_OCI_MANIFEST,
                manifest_digest="sha256:" + hashlib.sha256(m).hexdigest(), top_layer=layer["id"], names=[name],
            )
        except BaseException:
            op.abort()
            raise


def add_busybox(graphroot: str, runroot: str, storage_driver: str = "overlay", runtime: str = "runc",
                name: str = "localhost/busybox:latest", config: dict[str, Any] | None = None):
    """Open a Runtime on these roots and add the busybox image; returns its ID."""
    rt = Runtime(graphroot=graphroot, runroot=runroot, storage_driver=storage_driver, runtime=runtime,
                 config_file=None)
    try:
        return add_image(rt, name, config=config).id
    finally:
        rt.db.close()


# ---------------------------------------------------------------------------------------
# container test environment (used by tests/integration/test_containers*.py)
# ---------------------------------------------------------------------------------------

import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402


def processes_mentioning(text: str, names: tuple[str, ...] = ("conmon",)) -> list[int]:
    """PIDs of live processes whose argv[0] basename is in *names* and whose command line
    contains *text* (a store's runroot)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if process_gone(int(d)):
            continue
        heads = {os.path.basename(a).decode(errors="replace") for a in argv[:2]}
        if heads & set(names) and text.encode() in b" ".join(argv):
            out.append(int(d))
    return out


def process_gone(pid: int) -> bool:
    """*pid* has exited (gone, or a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rindex(b")") + 2: stat.rindex(b")") + 3] == b"Z"


def simulate_reboot(env: "CtrEnv") -> None:
    """Do to *env*'s store what a reboot does: every conmon and container process of the
    store SIGKILLed, the runtime's record of its containers deleted (``<runtime> --root
    <runroot>/runtime/<runtime> delete --force``, their cgroups with it), every mount under
    its roots gone and the runroot (on /run, a tmpfs) emptied. The graphroot (rows, logs,
    layers) stays, as a disk does."""
    import signal
    import subprocess

    ids = env.ids()
    pids = [int(p) for p in env.kpod("inspect", "--format", "{{.State.Pid}}", *ids).stdout.split()] if ids else []
    pids = [p for p in pids if p > 0]
    for pid in processes_mentioning(env.runroot) + pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    env.wait_for(lambda: all(process_gone(p) for p in pids), what="the containers' processes to die")
    state_root = os.path.join(env.runroot, "runtime", env.runtime)
    for cid in ids:
        subprocess.run([env.runtime, "--root", state_root, "delete", "--force", cid], capture_output=True)
    for m in sorted(mounts_under(env.graphroot) + mounts_under(env.runroot), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], check=True)  # rootfs, /dev/shm, network namespaces
    subprocess.run(["rm", "-rf", env.runroot], check=True)
    for cid in ids:
        for d in cgroup_dirs(cid):  # what the runtime's delete could not remove
            os.rmdir(d)


def mounts_under(prefix: str) -> list[str]:
    with open("/proc/self/mounts") as f:
        return [l.split()[1] for l in f if l.split()[1].startswith(prefix)]


def cgroup_dirs(container_id: str) -> list[str]:
    base = "/sys/fs/cgroup"
    out = []
    for ctrl in os.listdir(base):
        p = os.path.join(base, ctrl, "kpod", container_id)
        if os.path.isdir(p):
            out.append(p)
    return out


def proc_cgroup(pid: int, controller: str) -> str | None:
    """The host path of *pid*'s cgroup for a v1 *controller*."""
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _n, ctrls, path = line.rstrip("\n").split(":", 2)
            if controller in ctrls.split(","):
                return os.path.join("/sys/fs/cgroup", ctrls, path.lstrip("/"))
    return None


class CtrEnv:
    """A kpod CLI (conftest's ``kpod``) pinned to one runtime and storage driver, with the
    busybox image in its store, and a finalizer that proves nothing was left behind."""

    def __init__(self, kpod, runtime: str = "runc", driver: str = "overlay") -> None:
        self.kpod = kpod
        self.runtime = runtime
        self.driver = driver
        kpod.global_args = kpod.global_args + ["--runtime", runtime, "--storage-driver", driver]
        # every kpod process (and conmon's exit command) would recompile its modules otherwise
        kpod.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.graphroot = kpod.graphroot
        self.runroot = kpod.runroot
        self.image_id = add_busybox(kpod.graphroot, kpod.runroot, storage_driver=driver, runtime=runtime)
        self.seen: set[str] = set()

    def __call__(self, *args, **kw):
        return self.kpod(*args, **kw)

    def ids(self) -> list[str]:
        out = self.kpod("ps", "-aq", "--no-trunc").stdout.split()
        self.seen.update(out)
        return out

    def inspect(self, name: str, fmt: str | None = None):
        if fmt:
            return self.kpod("inspect", "--format", fmt, name).stdout.strip()
        return json.loads(self.kpod("inspect", name).stdout)[0]

    def state(self, name: str) -> str:
        return self.inspect(name, "{{.State.Status}}")

    def wait_for(self, predicate, timeout: float = 15.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.1)

    def finalize(self) -> None:
        """rm -fa with the same roots, then: no conmon, no mounts, no cgroups left."""
        try:
            self.ids()
        except AssertionError:
            pass
        proc = self.kpod("rm", "-fa", check=False)
        problems = []
        if proc.returncode != 0:
            problems.append(f"rm -fa exited {proc.returncode}: {proc.stderr}")
        deadline = time.monotonic() + 10
        while processes_mentioning(self.runroot, ("conmon", "kpod")) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = processes_mentioning(self.runroot, ("conmon",))
        if left:
            problems.append(f"conmon still running: {left}")
            for pid in left:
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass
        log = os.path.join(self.runroot, "kpod-cleanup.log")
        if os.path.exists(log):
            problems.append(f"conmon's exit command failed: {open(log).read()}")
        mounts = mounts_under(self.graphroot) + mounts_under(self.runroot)
        if mounts:
            problems.append(f"mounts left: {mounts}")
            import subprocess

            for m in sorted(mounts, key=len, reverse=True):
                subprocess.run(["umount", "-l", m], capture_output=True)
        for cid in self.seen:
            dirs = cgroup_dirs(cid)
            if dirs:
                problems.append(f"cgroups left: {dirs}")
                for d in dirs:
                    try:
                        os.rmdir(d)
                    except OSError:
                        pass
        assert not problems, problems
