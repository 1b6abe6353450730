"""crun's compiled seccomp filters are reused (kpod_runtime_crun: runtime_prepare_spec).

Real crun through kpod, conmon and the hybrid-cgroup wrapper: the first container with a
profile leaves crun's own compiled filter in the cache, later ones load it through
run.oci.seccomp_bpf_data; the filter works (a syscall outside the profile fails with EPERM,
as under the profile crun compiles itself) and is byte for byte what crun compiles.
"""

from __future__ import annotations

import base64
import glob
import json
import os
import struct

import pytest

from tests.helpers_images import CtrEnv

pytestmark = pytest.mark.integration

if os.geteuid() != 0:
    pytest.skip("container tests need root", allow_module_level=True)


@pytest.fixture
def crun(kpod):
    env = CtrEnv(kpod, "crun", "overlay")
    yield env
    env.finalize()


def _probe(path: str) -> None:
    """A static x86-64 program: perf_event_open(NULL, 0, 0, -1... ) then exit(-result): 1 (EPERM)
    when a seccomp filter refuses the call, 14 (EFAULT) when the kernel reads the NULL attr."""
    code = bytes.fromhex("b82a010000" "31ff" "31f6" "31d2" "4d31d2" "4d31c0" "0f05" "89c7" "f7df" "b83c000000" "0f05")
    base, eh, ph = 0x400000, 64, 56
    ehdr = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8 + struct.pack(
        "<HHIQQQIHHHHHH", 2, 0x3E, 1, base + eh + ph, eh, 0, 0, eh, ph, 1, 0, 0, 0)
    total = eh + ph + len(code)
    with open(path, "wb") as f:
        f.write(ehdr + struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, total, total, 0x1000) + code)
    os.chmod(path, 0o755)


def _entries(k) -> list[str]:
    return sorted(glob.glob(os.path.join(k.runroot, "runtime", "crun-seccomp", "*.json")))


def _pending(k) -> list[str]:
    return glob.glob(os.path.join(k.runroot, "runtime", "crun-seccomp", "pending-*"))


def _probe_exit(k, tmp_path, *flags) -> int:
    probe = str(tmp_path / "probe")
    if not os.path.exists(probe):
        _probe(probe)
    k("create", "--name", "probe", *flags, "busybox", "/probe")
    k("cp", probe, "probe:/probe")
    k("start", "-a", "probe", check=False)
    code = int(k.inspect("probe", "{{.State.ExitCode}}"))
    k("rm", "probe")
    return code


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the probe program is x86-64 code")
def test_crun_reuses_its_compiled_seccomp_filter(crun, tmp_path):
    k = crun
    assert _entries(k) == []
    # first container with the default profile: crun compiles, the cache keeps the result
    assert _probe_exit(k, tmp_path) == 1
    [entry] = _entries(k)
    compiled = base64.b64decode(json.load(open(entry))["bpf"])
    assert compiled and len(compiled) % 8 == 0 and _pending(k) == []

    # the next one loads it: the annotation is in the bundle, crun's state holds the same bytes
    cid = k("run", "-d", "busybox", "sleep", "1000").stdout.strip()
    bundle_spec = json.load(open(os.path.join(k.runroot, "containers", cid, "config.json")))
    assert base64.b64decode(bundle_spec["annotations"]["run.oci.seccomp_bpf_data"]) == compiled
    with open(os.path.join(k.runroot, "runtime", "crun", cid, "seccomp.bpf"), "rb") as f:
        assert f.read() == compiled
    status = k("exec", cid, "cat", "/proc/self/status").stdout
    assert "Seccomp:\t2" in status
    # kpod's own spec (inspect) does not carry the annotation
    assert "run.oci.seccomp_bpf_data" not in json.dumps(k.inspect(cid)["Config"])
    k("rm", "-f", "-t", "0", cid)
    assert _probe_exit(k, tmp_path) == 1  # the cached filter refuses what the profile refuses
    assert _probe_exit(k, tmp_path, "--security-opt", "seccomp=unconfined") == 14

    # what crun compiles anew for the same profile is byte for byte the cached filter
    os.unlink(entry)
    k("run", "--rm", "busybox", "true")
    [again] = _entries(k)
    assert base64.b64decode(json.load(open(again))["bpf"]) == compiled

    # an entry that is not for this profile is never used: crun compiles, the entry is mended
    with open(again, "w") as f:
        json.dump({"profile": "something else", "bpf": base64.b64encode(b"\0" * 8).decode()}, f)
    assert _probe_exit(k, tmp_path) == 1
    assert base64.b64decode(json.load(open(again))["bpf"]) == compiled

    # another profile (SYS_ADMIN adds rules) gets an entry of its own; unconfined none
    k("run", "--rm", "--cap-add", "SYS_ADMIN", "busybox", "true")
    assert len(_entries(k)) == 2
    k("run", "--rm", "--security-opt", "seccomp=unconfined", "busybox", "true")
    assert len(_entries(k)) == 2 and _pending(k) == []


def test_runc_containers_leave_the_crun_cache_alone(kpod):
    k = CtrEnv(kpod, "runc", "overlay")
    try:
        k("run", "--rm", "busybox", "true")
        assert not os.path.exists(os.path.join(k.runroot, "runtime", "crun-seccomp"))
    finally:
        k.finalize()
