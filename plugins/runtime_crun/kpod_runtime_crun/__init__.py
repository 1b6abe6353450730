"""kpod runtime driver for crun.

crun 1.8 refuses to run on hosts with hybrid cgroups (v1 controllers plus a cgroup2 mount at
/sys/fs/cgroup/unified). On such hosts every crun invocation — by kpod and by conmon — goes
through ``crun-hybrid-wrapper``, which runs crun in a private mount namespace where the
cgroup2 mount is unmounted, so crun sees a plain v1 host.

Compiled seccomp filters are reused. crun compiles the spec's ``linux.seccomp`` with
libseccomp at every ``create`` (20 ms of a 29 ms create here, for the default profile) and
leaves the result in its state directory (``<root>/<id>/seccomp.bpf``). The first container
started with a profile hands that file to a cache; later containers with the same profile get
it through crun's ``run.oci.seccomp_bpf_data`` annotation, which crun loads instead of
compiling (``runtime_prepare_spec``). An entry is used only for the identical profile (the
whole ``linux.seccomp`` object, compared in full) compiled by the same crun binary with the same
libseccomp on the same kernel; the cache lives under the runroot, so a reboot empties it.
Profiles with ``flags``, a notify listener or ``run.oci.seccomp*`` annotations are never
cached (crun treats those beyond the filter itself).
"""

from __future__ import annotations

import os

from libpod_core.log import getLogger
from libpod_core.oci import OCIRuntimeDriver, hookimpl
from libpod_core.runtime import cgroup_version

log = getLogger(__name__)

#: crun loads this base64 BPF program instead of compiling linux.seccomp
BPF_ANNOTATION = "run.oci.seccomp_bpf_data"
#: at most this many compiled profiles are kept (the default one per capability set, mostly)
MAX_CACHED = 64
#: a seccomp program is at most BPF_MAXINSNS (4096) instructions of 8 bytes
MAX_BPF = 4096 * 8

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

    # -- the compiled seccomp filter cache ------------------------------------------------
    @property
    def seccomp_cache(self) -> str:
        # beside crun's --root, not in it: crun lists every directory there as a container
        return self.root + "-seccomp"

    def _seccomp_profile(self, spec: dict) -> str | None:
        """The canonical text of *spec*'s seccomp profile with what it was compiled by, or
        None when it must not come from the cache."""
        import json

        sec = (spec.get("linux") or {}).get("seccomp")
        if not isinstance(sec, dict) or not sec:
            return None
        if sec.get("flags") or sec.get("listenerPath") or sec.get("listenerMetadata"):
            return None
        actions = [sec.get("defaultAction")] + [r.get("action") for r in sec.get("syscalls") or []
                                                if isinstance(r, dict)]
        if "SCMP_ACT_NOTIFY" in actions:
            return None
        if any(str(k).startswith("run.oci.seccomp") for k in spec.get("annotations") or {}):
            return None
        ident = _compiler_identity(self.path)
        if ident is None:
            return None
        return json.dumps([ident, sec], sort_keys=True, separators=(",", ":"))

    def _entry_path(self, profile: str) -> str:
        import zlib

        # the name only indexes: an entry holds its whole profile, compared before use
        return os.path.join(self.seccomp_cache, f"{zlib.crc32(profile.encode()):08x}-{len(profile)}.json")

    def _cached_bpf(self, profile: str) -> str | None:
        import json

        try:
            with open(self._entry_path(profile), encoding="utf-8") as f:
                entry = json.load(f)
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or entry.get("profile") != profile or not isinstance(entry.get("bpf"), str):
            return None
        return entry["bpf"]

    def _pending_path(self, container_id: str) -> str:
        return os.path.join(self.seccomp_cache, f"pending-{container_id}")

    @hookimpl
    def runtime_prepare_spec(self, container_id, spec):
        pending = self._pending_path(container_id)
        profile = self._seccomp_profile(spec)
        bpf = self._cached_bpf(profile) if profile is not None else None
        if bpf is not None:
            spec.setdefault("annotations", {})[BPF_ANNOTATION] = bpf
            _unlink(pending)
        elif profile is not None:
            try:  # start() takes crun's compiled filter for the cache
                from libpod_core.fileutil import write_atomic

                os.makedirs(self.seccomp_cache, mode=0o700, exist_ok=True)
                write_atomic(pending, profile, 0o600)
            except OSError as exc:
                log.debug("crun seccomp cache: %s", exc)
        else:
            _unlink(pending)
        return None

    def _harvest(self, container_id: str) -> None:
        """Keep the filter crun compiled for *container_id* (see runtime_prepare_spec)."""
        pending = self._pending_path(container_id)
        try:
            with open(pending, encoding="utf-8") as f:
                profile = f.read()
        except OSError:
            return
        try:
            import base64
            import json

            from libpod_core.fileutil import write_atomic

            with open(os.path.join(self.root, container_id, "seccomp.bpf"), "rb") as f:
                bpf = f.read(MAX_BPF + 1)
            cached = [n for n in os.listdir(self.seccomp_cache) if n.endswith(".json")]
            if bpf and len(bpf) <= MAX_BPF and len(bpf) % 8 == 0 and len(cached) < MAX_CACHED:
                write_atomic(self._entry_path(profile),
                             json.dumps({"profile": profile, "bpf": base64.b64encode(bpf).decode()}), 0o600)
        except OSError as exc:
            log.debug("crun seccomp cache: %s: %s", container_id, exc)
        finally:
            _unlink(pending)

    @hookimpl
    def runtime_start(self, container_id):
        self._harvest(container_id)  # created: crun's state holds the filter it compiled
        return super().runtime_start(container_id)

    @hookimpl
    def runtime_delete(self, container_id, force):
        try:
            return super().runtime_delete(container_id, force)
        finally:
            _unlink(self._pending_path(container_id))


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


#: where a libseccomp crun may have been linked with lives
_LIB_DIRS = ("/usr/lib/{triplet}", "/lib/{triplet}", "/usr/lib64", "/lib64", "/usr/lib", "/lib",
             "/usr/local/lib")


def _compiler_identity(crun: str) -> list | None:
    """What a compiled filter depends on besides the profile: the crun binary, libseccomp
    (its file) and the kernel. None when libseccomp cannot be found: then nothing is cached."""
    triplet = f"{os.uname().machine}-linux-gnu"
    seen: list[list] = []
    for d in _LIB_DIRS:
        path = os.path.join(d.format(triplet=triplet), "libseccomp.so.2")
        try:
            real = os.path.realpath(path)
            st = os.stat(real)
        except OSError:
            continue
        key = [real, st.st_ino, st.st_size, st.st_mtime_ns]
        if key not in seen:
            seen.append(key)
    if not seen:
        return None
    try:
        st = os.stat(crun)
    except OSError:
        return None
    return [os.uname().release, [crun, st.st_ino, st.st_size, st.st_mtime_ns], seen]
