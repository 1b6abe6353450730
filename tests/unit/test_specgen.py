"""The OCI config.json generator: defaults, parsers, merges and every error path."""

from __future__ import annotations

import json
import os
import resource

import pytest

from libpod_core import specgen
from libpod_core.errors import InvalidArgument
from libpod_core.specgen import (
    DEFAULT_CAPABILITIES,
    DEFAULT_PATH_ENV,
    INIT_PATH_IN_CONTAINER,
    MASKED_PATHS,
    READONLY_PATHS,
    SpecOptions,
    build_env,
    caps_mask,
    generate_spec,
    load_seccomp_profile,
    normalize_capability,
    parse_mount,
    parse_size,
    parse_tmpfs,
    parse_ulimit,
    parse_volume,
    resolve_capabilities,
    resolve_command,
    resolve_user,
    seccomp_to_oci,
)

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
alice:x:1000:1000:Alice:/home/alice:/bin/sh
# a comment
broken line
bob:x:1001:100::/home/bob:/bin/sh
"""
GROUP = """\
root:x:0:root
daemon:x:1:
users:x:100:
alice:x:1000:
staff:x:50:alice,bob
wheel:x:10:root,alice
"""


@pytest.fixture
def rootfs(tmp_path):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    return str(root)


def gen(rootfs, image=None, **kw):
    kw.setdefault("command", ["sh"])
    return generate_spec(SpecOptions(**kw), image or {}, rootfs)


def mount_at(spec, dest):
    found = [m for m in spec["mounts"] if m["destination"] == dest]
    assert len(found) <= 1, found
    return found[0] if found else None


def seccomp_names(spec, action="SCMP_ACT_ALLOW", unconditional=True):
    names = set()
    for rule in spec["linux"]["seccomp"]["syscalls"]:
        if rule["action"] == action and (not unconditional or not rule.get("args")):
            names.update(rule["names"])
    return names


# --------------------------------------------------------------------------------------
# parse_size / parse_ulimit
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("0", 0), ("512", 512), ("512b", 512), ("1k", 1024), ("1K", 1024), ("512m", 512 * 1024**2),
    ("512M", 512 * 1024**2), ("2g", 2 * 1024**3), ("1.5g", int(1.5 * 1024**3)), ("64mb", 64 * 1024**2),
    ("64MiB", 64 * 1024**2), (" 10k ", 10240), (4096, 4096), ("1t", 1024**4),
])
def test_parse_size_valid(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "-1", "1x", "m", "1.2.3m", "12 34", -5, True, None, "1e3", "k1"])
def test_parse_size_invalid(text):
    with pytest.raises(InvalidArgument):
        parse_size(text)


def test_parse_ulimit_forms():
    assert parse_ulimit("nofile=1024:2048") == {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048}
    assert parse_ulimit("nofile=1024") == {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024}
    assert parse_ulimit("NPROC=10:20")["type"] == "RLIMIT_NPROC"
    assert parse_ulimit("core=-1") == {"type": "RLIMIT_CORE", "soft": 2**64 - 1, "hard": 2**64 - 1}
    assert parse_ulimit("memlock=0:-1")["hard"] == 2**64 - 1


@pytest.mark.parametrize("text", ["bogus=1", "nofile", "nofile=", "nofile=a", "nofile=2:1", "nofile=1:",
                                  "nofile=-2", "=1", "nofile=1:2:3"])
def test_parse_ulimit_invalid(text):
    with pytest.raises(InvalidArgument):
        parse_ulimit(text)


# --------------------------------------------------------------------------------------
# capabilities
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["net_admin", "NET_ADMIN", "CAP_NET_ADMIN", "cap_net_admin", " Net_Admin "])
def test_normalize_capability(name):
    assert normalize_capability(name) == "CAP_NET_ADMIN"


def test_normalize_capability_all_and_unknown():
    assert normalize_capability("all") == "ALL"
    for bad in ("CAP_FOO", "foo", "", "  "):
        with pytest.raises(InvalidArgument):
            normalize_capability(bad)


def test_default_capabilities_are_podmans():
    assert set(DEFAULT_CAPABILITIES) == {
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_NET_BIND_SERVICE",
        "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT"}
    assert set(resolve_capabilities()) == set(DEFAULT_CAPABILITIES) & specgen.host_bounding_caps()


def test_cap_add_and_drop():
    caps = resolve_capabilities(["net_raw", "CAP_SYS_PTRACE"], ["chown", "Cap_Kill"])
    assert "CAP_NET_RAW" in caps and "CAP_SYS_PTRACE" in caps
    assert "CAP_CHOWN" not in caps and "CAP_KILL" not in caps
    # sorted by bit number
    assert caps == sorted(caps, key=specgen.CAPABILITIES.index)


def test_cap_drop_all_then_add():
    assert resolve_capabilities(["NET_BIND_SERVICE"], ["ALL"]) == ["CAP_NET_BIND_SERVICE"]
    assert resolve_capabilities([], ["all"]) == []


def test_cap_add_all_is_the_hosts_bounding_set(monkeypatch):
    host = frozenset(specgen.CAPABILITIES) - {"CAP_SYS_RESOURCE"}
    monkeypatch.setattr(specgen, "host_bounding_caps", lambda: host)
    caps = resolve_capabilities(["ALL"], ["SYS_ADMIN"])
    assert set(caps) == host - {"CAP_SYS_ADMIN"}
    assert set(resolve_capabilities(privileged=True)) == host


def test_cap_not_on_host_or_added_and_dropped(monkeypatch):
    monkeypatch.setattr(specgen, "host_bounding_caps", lambda: frozenset(DEFAULT_CAPABILITIES))
    with pytest.raises(InvalidArgument, match="not available"):
        resolve_capabilities(["SYS_RESOURCE"])
    with pytest.raises(InvalidArgument, match="both added and dropped"):
        resolve_capabilities(["CHOWN"], ["chown"])
    with pytest.raises(InvalidArgument, match="unknown capability"):
        resolve_capabilities(["CAP_MAGIC"])


def test_caps_mask():
    assert caps_mask(["CAP_CHOWN"]) == 1
    assert caps_mask(["CAP_CHOWN", "CAP_KILL"]) == 1 | (1 << 5)
    assert caps_mask(DEFAULT_CAPABILITIES) == 0x800405FB


def test_spec_capabilities_default(rootfs):
    caps = gen(rootfs)["process"]["capabilities"]
    expected = resolve_capabilities()
    assert caps["bounding"] == caps["effective"] == caps["permitted"] == expected
    assert caps["inheritable"] == [] and caps["ambient"] == []


def test_spec_capabilities_non_root(rootfs):
    caps = gen(rootfs, user="alice")["process"]["capabilities"]
    assert caps["bounding"] == resolve_capabilities()
    assert caps["effective"] == caps["permitted"] == caps["ambient"] == caps["inheritable"] == []
    caps = gen(rootfs, user="alice", cap_add=["NET_RAW"])["process"]["capabilities"]
    assert caps["effective"] == caps["permitted"] == caps["ambient"] == caps["inheritable"] == ["CAP_NET_RAW"]


# --------------------------------------------------------------------------------------
# rlimits
# --------------------------------------------------------------------------------------

def rlimits(spec):
    return {r["type"]: (r["soft"], r["hard"]) for r in spec["process"]["rlimits"]}


def test_default_rlimits_capped_at_host_hard_limits(rootfs):
    got = rlimits(gen(rootfs))
    for rtype, default, res in (("RLIMIT_NOFILE", 1048576, resource.RLIMIT_NOFILE),
                                ("RLIMIT_NPROC", 4194304, resource.RLIMIT_NPROC)):
        hard = resource.getrlimit(res)[1]
        want = default if hard == resource.RLIM_INFINITY else min(default, hard)
        assert got[rtype] == (want, want)


def test_default_rlimits_with_fake_host_limits(rootfs, monkeypatch):
    fake = {"RLIMIT_NOFILE": 4096, "RLIMIT_NPROC": specgen.RLIM_INFINITY}
    monkeypatch.setattr(specgen, "host_hard_limit", lambda t: fake.get(t, specgen.RLIM_INFINITY))
    got = rlimits(gen(rootfs))
    assert got["RLIMIT_NOFILE"] == (4096, 4096)
    assert got["RLIMIT_NPROC"] == (4194304, 4194304)


def test_user_ulimit_within_and_above_host_limit(rootfs, monkeypatch):
    monkeypatch.setattr(specgen, "host_hard_limit", lambda t: 4096)
    got = rlimits(gen(rootfs, ulimits=["nofile=100:200", "core=0"]))
    assert got["RLIMIT_NOFILE"] == (100, 200)
    assert got["RLIMIT_CORE"] == (0, 0)
    with pytest.raises(InvalidArgument, match="above the host's hard limit"):
        gen(rootfs, ulimits=["nofile=100:5000"])
    with pytest.raises(InvalidArgument, match="above the host's hard limit"):
        gen(rootfs, ulimits=["nproc=-1"])


def test_real_host_hard_limit_refuses_more(rootfs):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard limit on this host")
    with pytest.raises(InvalidArgument):
        gen(rootfs, ulimits=[f"nofile={hard + 1}"])
    assert rlimits(gen(rootfs, ulimits=[f"nofile={hard}"]))["RLIMIT_NOFILE"] == (hard, hard)


# --------------------------------------------------------------------------------------
# command and environment
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("ep,cmd,img_ep,img_cmd,expected", [
    (None, None, ["/entry"], ["a", "b"], ["/entry", "a", "b"]),
    (None, ["x"], ["/entry"], ["a", "b"], ["/entry", "x"]),
    (["/other"], None, ["/entry"], ["a", "b"], ["/other"]),
    (["/other"], ["x", "y"], ["/entry"], ["a"], ["/other", "x", "y"]),
    ("/other", None, None, ["a"], ["/other"]),
    ('["/bin/sh", "-c"]', ["echo hi"], None, None, ["/bin/sh", "-c", "echo hi"]),
    ("", None, ["/entry"], ["a"], None),
    ("", ["ls"], ["/entry"], ["a"], ["ls"]),
    ([""], ["ls"], ["/entry"], ["a"], ["ls"]),
    (None, None, None, ["sh"], ["sh"]),
    (None, [], ["/entry"], ["a"], ["/entry"]),
])
def test_entrypoint_and_cmd(ep, cmd, img_ep, img_cmd, expected):
    if expected is None:
        with pytest.raises(InvalidArgument, match="no command"):
            resolve_command(ep, cmd, img_ep, img_cmd)
    else:
        assert resolve_command(ep, cmd, img_ep, img_cmd) == expected


def test_no_command_at_all(rootfs):
    with pytest.raises(InvalidArgument, match="no command or entrypoint"):
        generate_spec(SpecOptions(), {"config": {}}, rootfs)


def test_image_config_whole_or_inner(rootfs):
    inner = {"Cmd": ["echo", "hi"], "Env": ["A=1"], "WorkingDir": "/srv", "User": "alice"}
    for image in (inner, {"architecture": "amd64", "config": inner}):
        spec = generate_spec(SpecOptions(), image, rootfs)
        assert spec["process"]["args"] == ["echo", "hi"]
        assert "A=1" in spec["process"]["env"]
        assert spec["process"]["cwd"] == "/srv"
        assert spec["process"]["user"]["uid"] == 1000


def envdict(env):
    return dict(e.split("=", 1) for e in env)


def test_env_merge_order_and_defaults(monkeypatch):
    monkeypatch.setenv("KPOD_TEST_FROM_HOST", "hostvalue")
    monkeypatch.delenv("KPOD_TEST_UNSET", raising=False)
    env = build_env(["A=image", "B=image", "PATH=/img/bin"],
                    ["B=user", "C=user", "A=", "KPOD_TEST_FROM_HOST", "KPOD_TEST_UNSET", "B=last"],
                    hostname="abc123", tty=True, home="/root")
    d = envdict(env)
    assert d["A"] == "" and d["B"] == "last" and d["C"] == "user"
    assert d["PATH"] == "/img/bin"
    assert d["TERM"] == "xterm" and d["HOSTNAME"] == "abc123" and d["container"] == "kpod"
    assert d["HOME"] == "/root"
    assert d["KPOD_TEST_FROM_HOST"] == "hostvalue"
    assert "KPOD_TEST_UNSET" not in d
    assert len(env) == len(d)  # one entry per key


def test_env_defaults_without_image_env():
    d = envdict(build_env(None, []))
    assert d["PATH"] == DEFAULT_PATH_ENV
    assert "TERM" not in d and "HOSTNAME" not in d


def test_env_user_overrides_defaults():
    d = envdict(build_env([], ["TERM=vt100", "container=other"], tty=True))
    assert d["TERM"] == "vt100" and d["container"] == "other"


@pytest.mark.parametrize("bad", ["=value", "", "A B=1", "X=\0"])
def test_env_invalid(bad):
    with pytest.raises(InvalidArgument):
        build_env([], [bad])


def test_image_env_can_be_ignored(rootfs):
    spec = gen(rootfs, {"Env": ["FROM_IMAGE=1"]}, image_env=False)
    assert "FROM_IMAGE" not in envdict(spec["process"]["env"])


def test_workdir(rootfs):
    assert gen(rootfs)["process"]["cwd"] == "/"
    assert gen(rootfs, {"WorkingDir": "/app"})["process"]["cwd"] == "/app"
    assert gen(rootfs, {"WorkingDir": "/app"}, workdir="/x/../y/")["process"]["cwd"] == "/y"
    with pytest.raises(InvalidArgument):
        gen(rootfs, workdir="relative")


# --------------------------------------------------------------------------------------
# users
# --------------------------------------------------------------------------------------

def test_resolve_user_by_name(rootfs):
    u = resolve_user(rootfs, "alice")
    assert (u.uid, u.gid, u.home) == (1000, 1000, "/home/alice")
    assert set(u.additional_gids) == {50, 10}


def test_resolve_user_root_default(rootfs):
    u = resolve_user(rootfs, "")
    assert (u.uid, u.gid, u.home) == (0, 0, "/root")
    assert set(u.additional_gids) == {0, 10}


def test_resolve_user_numeric_and_groups(rootfs):
    assert resolve_user(rootfs, "1001").gid == 100
    u = resolve_user(rootfs, "4242")
    assert (u.uid, u.gid, u.home, u.additional_gids) == (4242, 0, "/", ())
    u = resolve_user(rootfs, "alice:staff")
    assert (u.uid, u.gid, u.additional_gids) == (1000, 50, ())
    assert resolve_user(rootfs, "4242:4243").gid == 4243
    assert resolve_user(rootfs, ":staff").uid == 0
    u = resolve_user(rootfs, "bob", group_add=["wheel", "777"])
    assert u.additional_gids == (50, 10, 777)


@pytest.mark.parametrize("bad,match", [
    ("nobody", "unable to find user nobody"),
    ("alice:nogroup", "unable to find group nogroup"),
    ("alice:", "empty group"),
    ("99999999999", "out of range"),
])
def test_resolve_user_errors(rootfs, bad, match):
    with pytest.raises(InvalidArgument, match=match):
        resolve_user(rootfs, bad)


def test_resolve_user_without_passwd(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert resolve_user(str(empty), "123:456").uid == 123
    with pytest.raises(InvalidArgument):
        resolve_user(str(empty), "alice")


def test_passwd_symlink_resolved_inside_rootfs(tmp_path):
    root = tmp_path / "r"
    (root / "etc" / "real").mkdir(parents=True)
    (root / "etc" / "real" / "passwd").write_text("carol:x:2000:2000::/home/carol:/bin/sh\n")
    os.symlink("/etc/real/passwd", root / "etc" / "passwd")  # absolute: means the rootfs's /etc
    assert resolve_user(str(root), "carol").uid == 2000


def test_passwd_symlink_cannot_escape_rootfs(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("mallory:x:0:0::/:/bin/sh\n")
    root = tmp_path / "r"
    (root / "etc").mkdir(parents=True)
    os.symlink("../../outside/passwd", root / "etc" / "passwd")
    os.symlink(str(outside / "passwd"), root / "etc" / "group")
    with pytest.raises(InvalidArgument, match="unable to find user mallory"):
        resolve_user(str(root), "mallory")


def test_passwd_symlink_loop_and_fifo(tmp_path):
    root = tmp_path / "r"
    (root / "etc").mkdir(parents=True)
    os.symlink("passwd", root / "etc" / "passwd")
    with pytest.raises(InvalidArgument, match="symbolic links"):
        resolve_user(str(root), "x")
    os.unlink(root / "etc" / "passwd")
    os.mkfifo(root / "etc" / "passwd")
    with pytest.raises(InvalidArgument, match="not a regular file"):
        resolve_user(str(root), "x")


def test_spec_user(rootfs):
    spec = gen(rootfs, user="alice", group_add=["users"])
    assert spec["process"]["user"] == {"uid": 1000, "gid": 1000, "umask": 0o022, "additionalGids": [50, 10, 100]}
    assert envdict(spec["process"]["env"])["HOME"] == "/home/alice"


# --------------------------------------------------------------------------------------
# defaults: paths, mounts, devices, namespaces
# --------------------------------------------------------------------------------------

def test_default_spec_shape(rootfs):
    spec = gen(rootfs, hostname="abc", cgroups_path="/kpod/abc")
    json.dumps(spec)  # serialisable
    assert spec["ociVersion"] == "1.0.2"
    assert spec["root"] == {"path": os.path.realpath(rootfs), "readonly": False}
    assert spec["hostname"] == "abc"
    assert spec["process"]["terminal"] is False
    assert spec["process"]["noNewPrivileges"] is False
    linux = spec["linux"]
    assert linux["cgroupsPath"] == "/kpod/abc"
    assert linux["maskedPaths"] == list(MASKED_PATHS)
    for path in ("/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                 "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                 "/sys/fs/selinux", "/sys/dev/block"):
        assert path in linux["maskedPaths"]
    assert linux["readonlyPaths"] == list(READONLY_PATHS)
    assert set(READONLY_PATHS) == {"/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                   "/proc/sysrq-trigger"}
    types = {ns["type"] for ns in linux["namespaces"]}
    assert {"mount", "pid", "network", "ipc", "uts"} <= types
    assert "user" not in types


def test_default_mounts(rootfs):
    spec = gen(rootfs)
    dests = [m["destination"] for m in spec["mounts"]]
    for d in ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"):
        assert d in dests
    assert mount_at(spec, "/proc")["type"] == "proc"
    assert mount_at(spec, "/dev")["type"] == "tmpfs"
    assert mount_at(spec, "/dev/pts")["type"] == "devpts"
    shm = mount_at(spec, "/dev/shm")
    assert shm["type"] == "tmpfs" and f"size={64 * 1024 * 1024}" in shm["options"]
    assert mount_at(spec, "/dev/mqueue")["type"] == "mqueue"
    sys_ = mount_at(spec, "/sys")
    assert sys_["type"] == "sysfs" and {"ro", "nosuid", "noexec", "nodev"} <= set(sys_["options"])
    cg = mount_at(spec, "/sys/fs/cgroup")
    assert cg["type"] == "cgroup" and "ro" in cg["options"]
    # parents are mounted before children
    assert dests.index("/dev") < dests.index("/dev/pts") and dests.index("/sys") < dests.index("/sys/fs/cgroup")


def test_shm_size(rootfs):
    assert "size=1048576" in mount_at(gen(rootfs, shm_size="1m"), "/dev/shm")["options"]
    with pytest.raises(InvalidArgument):
        gen(rootfs, shm_size="big")


def test_default_devices_allow_list(rootfs):
    spec = gen(rootfs)
    rules = spec["linux"]["resources"]["devices"]
    assert rules[0] == {"allow": False, "access": "rwm"}
    allowed = {(r.get("type"), r.get("major"), r.get("minor")) for r in rules[1:] if r["allow"] and "w" in r["access"]}
    assert allowed == {("c", 1, 3), ("c", 1, 5), ("c", 1, 7), ("c", 5, 0), ("c", 1, 8), ("c", 1, 9),
                       ("c", 5, 2), ("c", 136, None)}
    assert "devices" not in spec["linux"]  # the runtime creates the standard nodes itself


def test_device_option(rootfs):
    spec = gen(rootfs, devices=["/dev/null:/dev/mynull:r"])
    dev = [d for d in spec["linux"]["devices"] if d["path"] == "/dev/mynull"][0]
    assert (dev["type"], dev["major"], dev["minor"]) == ("c", 1, 3)
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"} in spec["linux"]["resources"]["devices"]
    for bad in ("/dev/null:xyz", "relative", "/nonexistent-device", "/etc/hostname"):
        with pytest.raises(InvalidArgument):
            gen(rootfs, devices=[bad])


def test_tty_and_no_new_privileges(rootfs):
    spec = gen(rootfs, tty=True, no_new_privileges=True, oom_score_adj=100)
    assert spec["process"]["terminal"] is True
    assert "TERM=xterm" in spec["process"]["env"]
    assert spec["process"]["noNewPrivileges"] is True
    assert spec["process"]["oomScoreAdj"] == 100
    with pytest.raises(InvalidArgument):
        gen(rootfs, oom_score_adj=1001)


def test_privileged(rootfs):
    spec = gen(rootfs, privileged=True)
    caps = spec["process"]["capabilities"]
    assert set(caps["bounding"]) == set(caps["effective"]) == specgen.host_bounding_caps()
    assert caps["inheritable"] == []
    linux = spec["linux"]
    assert "seccomp" not in linux
    assert "maskedPaths" not in linux and "readonlyPaths" not in linux
    assert "ro" not in mount_at(spec, "/sys")["options"]
    assert "ro" not in mount_at(spec, "/sys/fs/cgroup")["options"]
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert any(d["path"] == "/dev/null" for d in linux.get("devices", []))
    # an explicit profile still applies
    assert "seccomp" in gen(rootfs, privileged=True, seccomp=specgen.DEFAULT_SECCOMP_PROFILE)["linux"]


def test_read_only(rootfs):
    spec = gen(rootfs, read_only=True)
    assert spec["root"]["readonly"] is True
    for dest in ("/run", "/tmp", "/var/tmp"):
        assert mount_at(spec, dest)["type"] == "tmpfs"
    spec = gen(rootfs, read_only=True, read_only_tmpfs=False)
    assert mount_at(spec, "/tmp") is None


def test_volumes_and_mounts(rootfs, tmp_path):
    src = tmp_path / "data"
    src.mkdir()
    spec = gen(rootfs, volumes=[f"{src}:/data:ro", f"{src}:/data2"], tmpfs=["/scratch:size=1m,exec"],
               mounts=[f"type=bind,source={src},target=/data3,readonly,bind-propagation=rslave",
                       "type=tmpfs,target=/t,tmpfs-size=2m,tmpfs-mode=1777",
                       {"destination": "/raw", "type": "bind", "source": str(src), "options": ["bind"]}])
    m = mount_at(spec, "/data")
    assert m["type"] == "bind" and m["source"] == str(src)
    assert {"rbind", "rprivate", "ro", "nosuid", "nodev"} <= set(m["options"])
    assert "rw" in mount_at(spec, "/data2")["options"]
    t = mount_at(spec, "/scratch")
    assert t["type"] == "tmpfs" and "size=1m" in t["options"] and "exec" in t["options"] and "noexec" not in t["options"]
    m3 = mount_at(spec, "/data3")
    assert "ro" in m3["options"] and "rslave" in m3["options"] and "rprivate" not in m3["options"]
    t2 = mount_at(spec, "/t")
    assert f"size={2 * 1024 * 1024}" in t2["options"] and "mode=1777" in t2["options"]
    assert mount_at(spec, "/raw")["options"] == ["bind"]


def test_user_mount_replaces_default(rootfs, tmp_path):
    spec = gen(rootfs, volumes=[f"{tmp_path}:/dev/shm"])
    assert mount_at(spec, "/dev/shm")["type"] == "bind"
    spec = gen(rootfs, tmpfs=["/sys/fs/cgroup"])
    assert mount_at(spec, "/sys/fs/cgroup")["type"] == "tmpfs"


@pytest.mark.parametrize("vol", ["relative:/data", "/nonexistent-kpod-src:/data", "{src}:relative", "{src}:/",
                                 "{src}:/data:bogus", "{src}:/data:ro,rw", "{src}:/data:O", "namedvol",
                                 "{src}:/a:ro:extra"])
def test_bad_volumes(rootfs, tmp_path, vol):
    with pytest.raises(InvalidArgument):
        gen(rootfs, volumes=[vol.format(src=tmp_path)])


def test_bad_mounts_and_tmpfs(rootfs, tmp_path):
    for bad in ("type=bind,dst=/x", "type=bind,src=/tmp", "type=tmpfs,dst=/x,wat=1",
                "type=bind,src=/tmp,dst=/x,bind-propagation=weird", "type=image,src=x,dst=/x",
                "type=volume,src=x,dst=/x,bogus", "type=volume,src=x,dst=relative"):
        with pytest.raises(InvalidArgument):
            parse_mount(bad)
    # a volume is resolved to a host directory by create, never by the spec generator
    with pytest.raises(InvalidArgument, match="resolved"):
        gen(rootfs, mounts=["type=volume,src=x,dst=/x"])
    for bad in ("relative", "/x:bogus", "/x:size=big"):
        with pytest.raises(InvalidArgument):
            parse_tmpfs(bad)
    with pytest.raises(InvalidArgument, match="duplicate"):
        gen(rootfs, volumes=[f"{tmp_path}:/d"], tmpfs=["/d"])
    assert parse_volume(f"{tmp_path}:/x:z,Z,nosuid,exec")["options"][-1] == "exec"


def test_volume_flags_split_into_binds_and_volumes(tmp_path):
    assert [specgen.is_bind_volume(v) for v in (f"{tmp_path}:/a", "./rel:/a", ":/a", "name:/a", "/anon")] == \
        [True, True, True, False, False]
    binds, others, uses = specgen.split_user_mounts(
        [f"{tmp_path}:/a:ro", "vol:/b:ro,nocopy", "/c"],
        ["type=volume,source=x,target=/d,volume-nocopy", "type=tmpfs,target=/e", "type=volume,target=/f,ro",
         {"destination": "/g", "type": "bind", "source": str(tmp_path)}])
    assert binds == [f"{tmp_path}:/a:ro"]
    assert others == ["type=tmpfs,target=/e", {"destination": "/g", "type": "bind", "source": str(tmp_path)}]
    assert [(u["name"], u["destination"], "ro" in u["options"], u["copy"]) for u in uses] == [
        ("vol", "/b", True, False), (None, "/c", False, True), ("x", "/d", False, False), (None, "/f", True, True)]
    assert uses[0]["options"] == ["rbind", "rprivate", "ro", "nosuid", "nodev"]
    assert specgen.user_mount_destinations(["vol:/b", "/c/"], ["/t"], ["type=volume,target=/f"]) == \
        {"/b", "/c", "/t", "/f"}
    for bad in ("vol:relative", "vol:/x:bogus", "vol:/x:ro,rw", "a:/b:ro:x", "vol:/"):
        with pytest.raises(InvalidArgument):
            specgen.volume_use(bad)


def test_etc_files_and_init(rootfs, tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")
    init = tmp_path / "catatonit"
    init.write_text("")
    spec = gen(rootfs, hosts_file=str(hosts), resolv_conf=str(resolv), hostname_file=str(hosts),
               init=True, init_path=str(init), command=["sleep", "1"])
    assert mount_at(spec, "/etc/hosts")["source"] == str(hosts)
    assert mount_at(spec, "/etc/resolv.conf")["source"] == str(resolv)
    assert mount_at(spec, "/etc/hostname")["type"] == "bind"
    assert spec["process"]["args"] == [INIT_PATH_IN_CONTAINER, "--", "sleep", "1"]
    m = mount_at(spec, INIT_PATH_IN_CONTAINER)
    assert m["source"] == str(init) and "ro" in m["options"]
    with pytest.raises(InvalidArgument):
        gen(rootfs, init=True, init_path=str(tmp_path / "missing"))


# --------------------------------------------------------------------------------------
# namespaces and sysctls
# --------------------------------------------------------------------------------------

def ns_types(spec):
    return {ns["type"]: ns.get("path") for ns in spec["linux"]["namespaces"]}


def test_network_modes(rootfs, tmp_path):
    assert "network" in ns_types(gen(rootfs, network="none"))
    spec = gen(rootfs, network="host")
    assert "network" not in ns_types(spec)
    assert mount_at(spec, "/sys")["type"] == "sysfs"
    assert "net.ipv4.ping_group_range" not in spec["linux"].get("sysctl", {})
    nsfile = tmp_path / "netns"
    nsfile.write_text("")
    joined = gen(rootfs, network=f"ns:{nsfile}")
    assert ns_types(joined)["network"] == str(nsfile)
    assert "net.ipv4.ping_group_range" not in joined["linux"].get("sysctl", {})
    assert gen(rootfs, network="none")["linux"]["sysctl"]["net.ipv4.ping_group_range"] == "0 0"
    assert ns_types(gen(rootfs, ipc=f"ns:{nsfile}", uts=str(nsfile), pid="host"))["ipc"] == str(nsfile)
    with pytest.raises(InvalidArgument):
        gen(rootfs, network="bogus")
    with pytest.raises(InvalidArgument):
        gen(rootfs, network="ns:/nonexistent/netns")
    with pytest.raises(InvalidArgument):
        gen(rootfs, pid="none")
    with pytest.raises(InvalidArgument):
        gen(rootfs, uts="shareable")


def test_ipc_none_and_shareable(rootfs):
    none = gen(rootfs, ipc="none")
    assert ns_types(none)["ipc"] is None and mount_at(none, "/dev/shm") is None
    assert mount_at(none, "/dev/mqueue")["type"] == "mqueue"
    shareable = gen(rootfs, ipc="shareable")
    assert ns_types(shareable)["ipc"] is None and mount_at(shareable, "/dev/shm")["type"] == "tmpfs"


def test_parse_namespace_flag(tmp_path):
    nsfile = tmp_path / "ipc"
    nsfile.write_text("")
    assert specgen.parse_namespace_flag("ipc", "shareable") == ("shareable", None)
    assert specgen.parse_namespace_flag("pid", "host") == ("host", None)
    assert specgen.parse_namespace_flag("uts", "container:web") == ("container:web", "web")
    assert specgen.parse_namespace_flag("ipc", f"ns:{nsfile}") == (f"ns:{nsfile}", None)
    for kind, value in (("pid", "none"), ("uts", "shareable"), ("ipc", "bogus"), ("ipc", ""),
                        ("pid", "container:"), ("uts", "ns:/nonexistent/uts"), ("ipc", "ns:relative"),
                        ("pid", str(nsfile))):
        with pytest.raises(InvalidArgument, match=f"invalid --{kind}"):
            specgen.parse_namespace_flag(kind, value)


def test_check_cgroup_parent():
    assert specgen.check_cgroup_parent("/kpodtest/sub") == "/kpodtest/sub"
    for bad in ("relative", "/a/../b", "//a", "/", "/a b", ""):
        with pytest.raises(InvalidArgument, match="cgroup-parent"):
            specgen.check_cgroup_parent(bad)


def test_uts_host_hostname(rootfs):
    spec = gen(rootfs, uts="host", hostname=os.uname().nodename)
    assert "uts" not in ns_types(spec) and "hostname" not in spec
    assert f"HOSTNAME={os.uname().nodename}" in spec["process"]["env"]


def test_ipc_host_binds_shm(rootfs):
    spec = gen(rootfs, ipc="host")
    assert "ipc" not in ns_types(spec)
    assert mount_at(spec, "/dev/shm")["source"] == "/dev/shm"


def test_cgroupns_follows_host(rootfs, monkeypatch):
    monkeypatch.setattr(specgen, "host_cgroup_v2", lambda: False)
    assert "cgroup" not in ns_types(gen(rootfs))
    monkeypatch.setattr(specgen, "host_cgroup_v2", lambda: True)
    assert "cgroup" in ns_types(gen(rootfs))
    assert "cgroup" not in ns_types(gen(rootfs, cgroupns="host"))


def test_hostname_rules(rootfs):
    with pytest.raises(InvalidArgument, match="UTS"):
        gen(rootfs, hostname="x", uts="host")
    with pytest.raises(InvalidArgument):
        gen(rootfs, hostname="a" * 65)


def test_sysctls(rootfs):
    spec = gen(rootfs, sysctls={"net.ipv4.ip_forward": "1", "kernel.shmmax": "100", "fs.mqueue.msg_max": "20"})
    assert spec["linux"]["sysctl"]["net.ipv4.ip_forward"] == "1"
    assert spec["linux"]["sysctl"]["net.ipv4.ping_group_range"] == "0 0"
    with pytest.raises(InvalidArgument, match="not namespaced"):
        gen(rootfs, sysctls={"vm.swappiness": "1"})
    with pytest.raises(InvalidArgument, match="host network"):
        gen(rootfs, network="host", sysctls={"net.ipv4.ip_forward": "1"})
    with pytest.raises(InvalidArgument, match="host IPC"):
        gen(rootfs, ipc="host", sysctls={"kernel.shmmax": "1"})


# --------------------------------------------------------------------------------------
# resources
# --------------------------------------------------------------------------------------

def test_memory(rootfs, monkeypatch):
    monkeypatch.setattr(specgen, "host_swap_accounting", lambda: True)
    mem = gen(rootfs, memory="64m")["linux"]["resources"]["memory"]
    assert mem == {"limit": 64 * 1024**2, "swap": 128 * 1024**2}
    mem = gen(rootfs, memory="64m", memory_swap="-1", memory_reservation="32m")["linux"]["resources"]["memory"]
    assert mem == {"limit": 64 * 1024**2, "swap": -1, "reservation": 32 * 1024**2}
    assert gen(rootfs, memory="64m", memory_swap="100m")["linux"]["resources"]["memory"]["swap"] == 100 * 1024**2
    monkeypatch.setattr(specgen, "host_swap_accounting", lambda: False)
    assert gen(rootfs, memory="64m")["linux"]["resources"]["memory"] == {"limit": 64 * 1024**2}
    assert "memory" not in gen(rootfs)["linux"]["resources"]


@pytest.mark.parametrize("kw", [{"memory": "1m"}, {"memory": "lots"}, {"memory_swap": "100m"},
                                {"memory": "64m", "memory_swap": "32m"},
                                {"memory": "64m", "memory_reservation": "128m"}])
def test_memory_errors(rootfs, kw):
    with pytest.raises(InvalidArgument):
        gen(rootfs, **kw)


def test_cpu_and_pids(rootfs, monkeypatch):
    spec = gen(rootfs, cpus="0.5", cpu_shares=512, cpuset_cpus="0", pids_limit=100)
    res = spec["linux"]["resources"]
    assert res["cpu"] == {"period": 100000, "quota": 50000, "shares": 512, "cpus": "0"}
    assert res["pids"] == {"limit": 100}
    assert "pids" not in gen(rootfs, pids_limit=0)["linux"]["resources"]
    assert "pids" not in gen(rootfs, pids_limit=-1)["linux"]["resources"]
    monkeypatch.setattr(specgen, "host_pids_controller", lambda: True)
    assert gen(rootfs)["linux"]["resources"]["pids"] == {"limit": 2048}
    for bad in ({"cpus": "abc"}, {"cpus": "0.001"}, {"cpus": str((os.cpu_count() or 1) + 1)},
                {"cpu_shares": 1}, {"cpuset_cpus": "0-"}, {"cpuset_mems": "a"}, {"pids_limit": -5}):
        with pytest.raises(InvalidArgument):
            gen(rootfs, **bad)


def test_misc_options(rootfs):
    spec = gen(rootfs, annotations={"org.example/a": "b"}, umask="0077")
    assert spec["annotations"] == {"org.example/a": "b"}
    assert spec["process"]["user"]["umask"] == 0o077
    with pytest.raises(InvalidArgument):
        gen(rootfs, umask="999")
    with pytest.raises(InvalidArgument):
        gen(rootfs, annotations={"a": 1})


# --------------------------------------------------------------------------------------
# seccomp
# --------------------------------------------------------------------------------------

DANGEROUS = {"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "mount",
             "umount2", "reboot", "swapon", "swapoff", "bpf", "perf_event_open", "keyctl", "add_key",
             "request_key", "open_by_handle_at", "pivot_root", "setns", "unshare", "userfaultfd"}


def test_default_profile_file_is_valid():
    profile = load_seccomp_profile()
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO" and profile["defaultErrnoRet"] == 1
    archs = {a["architecture"] for a in profile["archMap"]}
    assert archs == {"SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"}
    for entry in profile["syscalls"]:
        assert entry["names"] and entry["action"] in specgen._SECCOMP_ACTIONS


def test_default_seccomp_allows_common_and_blocks_dangerous(rootfs):
    spec = gen(rootfs)
    sc = spec["linux"]["seccomp"]
    assert sc["defaultAction"] == "SCMP_ACT_ERRNO" and sc["defaultErrnoRet"] == 1
    allowed = seccomp_names(spec)
    for name in ("read", "write", "openat", "execve", "exit_group", "futex", "mmap", "wait4", "chroot", "ptrace"):
        assert name in allowed, name
    assert not (DANGEROUS & allowed), DANGEROUS & allowed
    all_rules = {n for r in sc["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" for n in r["names"]}
    assert {"clone", "personality", "socket", "unshare"} <= all_rules  # with argument filters
    clone = [r for r in sc["syscalls"] if "clone" in r["names"]][0]
    assert clone["args"][0]["op"] == "SCMP_CMP_MASKED_EQ" and clone["args"][0]["value"] & 0x20000
    clone3 = [r for r in sc["syscalls"] if "clone3" in r["names"]][0]
    assert clone3["action"] == "SCMP_ACT_ERRNO" and clone3["errnoRet"] == 38
    for rule in sc["syscalls"]:
        assert set(rule) <= {"names", "action", "args", "errnoRet"}


def test_seccomp_cap_gating(rootfs):
    spec = gen(rootfs, cap_add=["SYS_ADMIN", "SYS_PTRACE"])
    allowed = seccomp_names(spec)
    assert {"mount", "umount2", "setns", "unshare", "clone", "clone3", "process_vm_readv"} <= allowed
    assert "kexec_load" not in allowed and "swapon" not in allowed
    assert not [r for r in spec["linux"]["seccomp"]["syscalls"] if "clone3" in r["names"] and r["action"] != "SCMP_ACT_ALLOW"]
    assert "chroot" not in seccomp_names(gen(rootfs, cap_drop=["SYS_CHROOT"]))


def test_seccomp_architectures():
    profile = load_seccomp_profile()
    caps = list(DEFAULT_CAPABILITIES)
    x86 = seccomp_to_oci(profile, caps, machine="x86_64")
    assert x86["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert "arch_prctl" in {n for r in x86["syscalls"] for n in r["names"]}
    arm = seccomp_to_oci(profile, caps, machine="aarch64")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    names = {n for r in arm["syscalls"] for n in r["names"]}
    assert "arch_prctl" not in names and "set_tls" in names


def test_seccomp_names_are_not_repeated(rootfs):
    spec = gen(rootfs, cap_add=["ALL"])
    seen = []
    for rule in spec["linux"]["seccomp"]["syscalls"]:
        if not rule.get("args"):
            seen += rule["names"]
    assert len(seen) == len(set(seen))


def test_seccomp_unconfined_and_custom(rootfs, tmp_path):
    assert "seccomp" not in gen(rootfs, seccomp="unconfined")["linux"]
    oci = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
           "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(oci))
    sc = gen(rootfs, seccomp=str(path))["linux"]["seccomp"]
    assert sc["defaultAction"] == "SCMP_ACT_ALLOW" and sc["architectures"] == ["SCMP_ARCH_X86_64"]
    assert sc["syscalls"] == [{"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    docker_style = {"defaultAction": "SCMP_ACT_ERRNO", "archMap": [
        {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                     {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                     {"names": ["sync"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}}]}
    sc = seccomp_to_oci(docker_style, DEFAULT_CAPABILITIES, machine="x86_64")
    names = {n for r in sc["syscalls"] for n in r["names"]}
    assert names == {"read", "sync"}


def test_seccomp_bad_profiles(rootfs, tmp_path):
    with pytest.raises(InvalidArgument):
        gen(rootfs, seccomp=str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidArgument):
        gen(rootfs, seccomp=str(bad))
    bad.write_text(json.dumps({"defaultAction": "SCMP_ACT_MAYBE", "syscalls": []}))
    with pytest.raises(InvalidArgument):
        gen(rootfs, seccomp=str(bad))
    bad.write_text(json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "LIKE"}]}]}))
    with pytest.raises(InvalidArgument):
        gen(rootfs, seccomp=str(bad))
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(InvalidArgument):
        gen(rootfs, seccomp=str(bad))


def test_seccomp_merge_keeps_conflicting_rules_apart():
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["write", "close"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        {"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
        {"names": ["kill"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}]},
    ]}
    sc = seccomp_to_oci(profile, [], machine="x86_64")
    assert sc["syscalls"][0] == {"names": ["read", "write", "close"], "action": "SCMP_ACT_ALLOW"}
    assert sc["syscalls"][1] == {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
    # the conditional "read" is redundant; the conditional "kill" has another action and stays
    assert [r["names"] for r in sc["syscalls"][2:]] == [["kill"]]
    assert sc["syscalls"][2]["args"] == [{"index": 1, "value": 0, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]


def test_spec_options_and_exec_user_keep_the_dataclass_behaviour():
    a, b = specgen.SpecOptions(), specgen.SpecOptions(sysctls=None)
    assert a.sysctls == {} and a.annotations == {} and a.sysctls is not specgen.SpecOptions().sysctls
    assert b.sysctls is None and a.network == "private" and a.umask == "0022" and a.env == ()
    with pytest.raises(TypeError):
        specgen.SpecOptions(no_such_option=1)  # type: ignore[call-arg]
    u = specgen.ExecUser(1, 2, (3,), "/h", "n")
    assert u == specgen.ExecUser(uid=1, gid=2, additional_gids=(3,), home="/h", name="n")
    assert u != specgen.ExecUser(1, 2) and hash(u) == hash(specgen.ExecUser(1, 2, (3,), "/h", "n"))
    assert repr(specgen.ExecUser(0, 0)) == "ExecUser(uid=0, gid=0, additional_gids=(), home='/', name=None)"
    with pytest.raises(AttributeError):
        u.uid = 5  # type: ignore[misc]
