"""Generate the OCI runtime configuration (``config.json``, runtime-spec 1.0.2 shape).

:func:`generate_spec` turns what ``kpod create``/``kpod run`` collected (a :class:`SpecOptions`)
plus the image's configuration into the document an OCI runtime (runc, crun) reads from the
bundle. It applies podman's safe defaults:

* podman's default capability set in bounding/effective/permitted, nothing inheritable or
  ambient; ``--cap-add``/``--cap-drop`` accept ``ALL`` and names with or without ``CAP_``;
* masked and read-only ``/proc`` and ``/sys`` paths, the standard mounts, a device
  allow-list (deny everything, then allow the usual character devices);
* the default seccomp profile shipped in ``libpod_core/data/seccomp.json``, filtered by the
  container's capabilities and the host's architecture;
* ``RLIMIT_NOFILE``/``RLIMIT_NPROC`` as podman sets them, but never above the host's current
  hard limits (raising a hard limit needs CAP_SYS_RESOURCE, which kpod may not have).

Nothing here starts a process or changes the host; the only files read are the image's
``/etc/passwd`` and ``/etc/group`` (resolved inside the rootfs, never following a symlink out
of it), the seccomp profile, ``/proc/self/status`` and, for devices, ``/dev``.

Public helpers: :func:`parse_size`, :func:`parse_ulimit`, :func:`normalize_capability`,
:func:`resolve_capabilities`, :func:`resolve_user`, :func:`resolve_command`,
:func:`build_env`, :func:`load_seccomp_profile`, :func:`seccomp_to_oci`, :func:`caps_mask`.
"""

from __future__ import annotations

import json
import os
import re
import resource
import stat
from typing import Any, Iterable, Mapping, Sequence

from .errors import InvalidArgument
from .plain import FRESH
from .lazyre import lazy

__all__ = [
    "CAPABILITIES",
    "DEFAULT_CAPABILITIES",
    "MASKED_PATHS",
    "READONLY_PATHS",
    "DEFAULT_PATH_ENV",
    "INIT_PATH_IN_CONTAINER",
    "ExecUser",
    "SpecOptions",
    "build_env",
    "caps_mask",
    "find_init",
    "generate_spec",
    "host_bounding_caps",
    "host_devices",
    "host_hard_limit",
    "load_seccomp_profile",
    "normalize_capability",
    "parse_device",
    "parse_mount",
    "parse_size",
    "parse_tmpfs",
    "parse_ulimit",
    "parse_volume",
    "is_bind_volume",
    "volume_use",
    "split_user_mounts",
    "IMAGE_VOLUME_MODES",
    "check_image_volume_mode",
    "image_volume_paths",
    "image_volume_mount",
    "user_mount_destinations",
    "resolve_capabilities",
    "resolve_command",
    "resolve_user",
    "seccomp_to_oci",
]

OCI_VERSION = "1.0.2"
DEFAULT_PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Where the init (catatonit) binary is bind-mounted inside the container.
INIT_PATH_IN_CONTAINER = "/run/kpod-init"
INIT_SEARCH_PATHS = (
    "/usr/libexec/podman/catatonit",
    "/usr/libexec/catatonit/catatonit",
    "/usr/local/libexec/podman/catatonit",
    "/usr/bin/catatonit",
    "/usr/local/bin/catatonit",
)
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
DEFAULT_PIDS_LIMIT = 2048
DEFAULT_NOFILE = 1048576
DEFAULT_NPROC = 4194304
MIN_MEMORY = 6 * 1024 * 1024
CPU_PERIOD = 100000
#: RLIM_INFINITY as the runtime spec writes it (a uint64).
RLIM_INFINITY = 2**64 - 1
_MAX_ID = 2**32 - 2
_MAX_DB_SIZE = 16 * 1024 * 1024
_MAX_SYMLINKS = 40

#: Linux capabilities, index == bit number.
CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
_CAP_BIT = {name: bit for bit, name in enumerate(CAPABILITIES)}

#: podman's default capability set.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_NET_BIND_SERVICE", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID",
    "CAP_SYS_CHROOT",
)

MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    "/sys/fs/selinux", "/sys/dev/block", "/sys/devices/virtual/powercap",
)
READONLY_PATHS: tuple[str, ...] = (
    "/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)

# Character devices every container may use (the runtime creates the nodes itself). A
# missing major/minor is the wildcard: crun writes -1 literally into devices.allow on v1.
_DEFAULT_DEVICE_RULES: tuple[dict[str, Any], ...] = (
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},    # null
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},    # zero
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},    # full
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},    # tty
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},    # random
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},    # urandom
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},    # ptmx
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},  # pts/*
)

ULIMIT_TYPES: dict[str, str] = {
    "as": "RLIMIT_AS", "core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA",
    "fsize": "RLIMIT_FSIZE", "locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK",
    "msgqueue": "RLIMIT_MSGQUEUE", "nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE",
    "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS", "rtprio": "RLIMIT_RTPRIO",
    "rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING", "stack": "RLIMIT_STACK",
}
# Linux's generic resource numbers, for names the resource module lacks.
_RLIMIT_NUMBERS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8,
    "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}

_SECCOMP_ACTIONS = frozenset({
    "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY",
})
_SECCOMP_OPS = frozenset({
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
})
# Architecture names as docker/podman profiles spell them (Go's GOARCH), and uname -m's.
_ARCH_ALIASES = {
    "amd64": "SCMP_ARCH_X86_64", "x86_64": "SCMP_ARCH_X86_64", "386": "SCMP_ARCH_X86",
    "x86": "SCMP_ARCH_X86", "i386": "SCMP_ARCH_X86", "i486": "SCMP_ARCH_X86",
    "i586": "SCMP_ARCH_X86", "i686": "SCMP_ARCH_X86", "x32": "SCMP_ARCH_X32",
    "arm64": "SCMP_ARCH_AARCH64", "aarch64": "SCMP_ARCH_AARCH64", "arm": "SCMP_ARCH_ARM",
    "armv6l": "SCMP_ARCH_ARM", "armv7l": "SCMP_ARCH_ARM", "armv8l": "SCMP_ARCH_ARM",
    "ppc64le": "SCMP_ARCH_PPC64LE", "ppc64": "SCMP_ARCH_PPC64", "s390x": "SCMP_ARCH_S390X",
    "s390": "SCMP_ARCH_S390", "riscv64": "SCMP_ARCH_RISCV64", "mips64": "SCMP_ARCH_MIPS64",
    "mips64le": "SCMP_ARCH_MIPSEL64", "loong64": "SCMP_ARCH_LOONGARCH64",
    "loongarch64": "SCMP_ARCH_LOONGARCH64",
}

# sysctls that are namespaced, and which namespace they follow.
_IPC_SYSCTLS = frozenset({
    "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
    "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
})
_UTS_SYSCTLS = frozenset({"kernel.domainname", "kernel.hostname"})

DEFAULT_SECCOMP_PROFILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "seccomp.json")


class SpecOptions:
    """Everything ``kpod create``/``kpod run`` hands to :func:`generate_spec`.

    ``None`` means "not given": the image's value or kpod's default applies.
    Namespace modes (``network``, ``ipc``, ``uts``, ``pid``, ``cgroupns``) are ``"private"``
    (a new namespace), ``"host"`` (share the host's), ``"ns:/path"`` (join that namespace, as
    pods do; the caller resolves ``container:NAME`` to a path) and, for the network only,
    ``"none"`` (a new namespace nobody configures).

    A plain class, not a dataclass: building a dataclass's methods for this many fields
    costs a millisecond of every ``create`` (plus the import of :mod:`dataclasses`).
    Nothing compares, prints or copies these (as with ``eq=False, repr=False`` before).
    """

    def __init__(
        self,
        # --- process ---------------------------------------------------------------------
        command: Sequence[str] | None = None,          #: arguments after the image name (replace CMD)
        entrypoint: Sequence[str] | str | None = None,  #: --entrypoint; "" or [] clears it
        env: Sequence[str] = (),                        #: -e KEY=VALUE, or KEY (taken from kpod's env)
        image_env: bool = True,                         #: start from the image's Env
        workdir: str | None = None,                     #: -w; default the image's WorkingDir, else /
        user: str | None = None,                        #: -u user[:group], names or numbers
        group_add: Sequence[str] = (),                  #: --group-add, names or numbers
        hostname: str | None = None,                    #: --hostname (the caller passes the short ID)
        tty: bool = False,                              #: -t: process.terminal, TERM=xterm
        stdin: bool = False,                            #: -i: conmon's business; no effect on the spec
        umask: str = "0022",
        # --- security --------------------------------------------------------------------
        read_only: bool = False,
        read_only_tmpfs: bool = True,                   #: with read_only: tmpfs on /run, /tmp, /var/tmp
        cap_add: Sequence[str] = (),
        cap_drop: Sequence[str] = (),
        privileged: bool = False,
        no_new_privileges: bool = False,
        seccomp: str | None = None,                     #: None/"default", "unconfined" or a JSON path
        # --- storage ---------------------------------------------------------------------
        volumes: Sequence[str] = (),                    #: -v /host:/ctr[:opts]
        mounts: Sequence[str | Mapping[str, Any]] = (),  #: --mount type=bind|tmpfs,... or OCI dicts
        tmpfs: Sequence[str] = (),                      #: --tmpfs /ctr[:opts]
        #: OCI mounts for the image's VOLUME paths (see image_volume_mount); a user mount with
        #: the same destination replaces one
        image_volumes: Sequence[Mapping[str, Any]] = (),
        devices: Sequence[str] = (),                    #: --device /dev/x[:/dev/y][:rwm]
        shm_size: str | int | None = None,              #: default 64m
        shm_path: str | None = None,                    #: host dir bind-mounted on /dev/shm (pods)
        hosts_file: str | None = None,                  #: host file bind-mounted on /etc/hosts
        resolv_conf: str | None = None,                 #: ... on /etc/resolv.conf
        hostname_file: str | None = None,               #: ... on /etc/hostname
        # --- resources -------------------------------------------------------------------
        memory: str | int | None = None,
        memory_swap: str | int | None = None,           #: memory+swap; -1 = unlimited
        memory_reservation: str | int | None = None,
        cpus: float | str | None = None,
        cpu_shares: int | None = None,
        cpuset_cpus: str | None = None,
        cpuset_mems: str | None = None,
        pids_limit: int | None = None,                  #: None: 2048; 0 or -1: unlimited
        ulimits: Sequence[str] = (),                    #: --ulimit name=soft[:hard]
        oom_score_adj: int | None = None,
        cgroups_path: str | None = None,
        # --- namespaces ------------------------------------------------------------------
        network: str = "private",
        ipc: str = "private",
        uts: str = "private",
        pid: str = "private",
        cgroupns: str | None = None,                    #: None: private on cgroup v2, host on v1
        sysctls: Mapping[str, str] = FRESH,            #: default: a new empty dict
        # --- misc ------------------------------------------------------------------------
        annotations: Mapping[str, str] = FRESH,        #: default: a new empty dict
        init: bool = False,                             #: run catatonit as PID 1
        init_path: str | None = None,                   #: host path of catatonit
    ) -> None:
        self.command = command
        self.entrypoint = entrypoint
        self.env = env
        self.image_env = image_env
        self.workdir = workdir
        self.user = user
        self.group_add = group_add
        self.hostname = hostname
        self.tty = tty
        self.stdin = stdin
        self.umask = umask
        self.read_only = read_only
        self.read_only_tmpfs = read_only_tmpfs
        self.cap_add = cap_add
        self.cap_drop = cap_drop
        self.privileged = privileged
        self.no_new_privileges = no_new_privileges
        self.seccomp = seccomp
        self.volumes = volumes
        self.mounts = mounts
        self.tmpfs = tmpfs
        self.image_volumes = image_volumes
        self.devices = devices
        self.shm_size = shm_size
        self.shm_path = shm_path
        self.hosts_file = hosts_file
        self.resolv_conf = resolv_conf
        self.hostname_file = hostname_file
        self.memory = memory
        self.memory_swap = memory_swap
        self.memory_reservation = memory_reservation
        self.cpus = cpus
        self.cpu_shares = cpu_shares
        self.cpuset_cpus = cpuset_cpus
        self.cpuset_mems = cpuset_mems
        self.pids_limit = pids_limit
        self.ulimits = ulimits
        self.oom_score_adj = oom_score_adj
        self.cgroups_path = cgroups_path
        self.network = network
        self.ipc = ipc
        self.uts = uts
        self.pid = pid
        self.cgroupns = cgroupns
        self.sysctls = {} if sysctls is FRESH else sysctls
        self.annotations = {} if annotations is FRESH else annotations
        self.init = init
        self.init_path = init_path


class ExecUser:
    """A resolved user: IDs, supplementary groups, home and name (None: not in passwd).

    Immutable, compared and hashed by value, like the frozen dataclass it was (a plain
    class: the dataclass machinery costs half a millisecond of every ``create``)."""

    __match_args__ = ("uid", "gid", "additional_gids", "home", "name")

    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    home: str
    name: str | None

    def __init__(self, uid: int, gid: int, additional_gids: tuple[int, ...] = (), home: str = "/",
                 name: str | None = None) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "uid", uid)
        setattr_(self, "gid", gid)
        setattr_(self, "additional_gids", additional_gids)
        setattr_(self, "home", home)
        setattr_(self, "name", name)

    def _key(self) -> tuple:
        return (self.uid, self.gid, self.additional_gids, self.home, self.name)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._key() == other._key()  # type: ignore[attr-defined]
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"{self.__class__.__qualname__}(uid={self.uid!r}, gid={self.gid!r}, "
                f"additional_gids={self.additional_gids!r}, home={self.home!r}, name={self.name!r})")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}")


# ---------------------------------------------------------------------------------------
# small parsers
# ---------------------------------------------------------------------------------------

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "kb": 1024, "kib": 1024,
    "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
    "g": 1024**3, "gb": 1024**3, "gib": 1024**3,
    "t": 1024**4, "tb": 1024**4, "tib": 1024**4,
}
_SIZE_RE = lazy(r"^(\d+(?:\.\d+)?)\s*([a-z]*)$")


def parse_size(value: str | int, *, what: str = "size") -> int:
    """Parse a human size: ``"512m"`` -> 536870912. Units b, k, m, g, t (powers of 1024,
    optional ``b``/``ib`` suffix, any case). Integers are bytes. Negative, empty or
    malformed values raise :class:`InvalidArgument`."""
    if isinstance(value, bool):
        raise InvalidArgument(f"invalid {what} {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise InvalidArgument(f"invalid {what} {value}: must not be negative")
        return value
    if not isinstance(value, str):
        raise InvalidArgument(f"invalid {what} {value!r}")
    m = _SIZE_RE.match(value.strip().lower())
    if not m or m.group(2) not in _SIZE_UNITS:
        raise InvalidArgument(f"invalid {what} {value!r}: expected a number with an optional unit b, k, m or g")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])


def _parse_rlimit_value(text: str, spec: str) -> int:
    text = text.strip()
    if text.lower() in ("-1", "unlimited", "infinity"):
        return RLIM_INFINITY
    if not re.fullmatch(r"\d+", text):
        raise InvalidArgument(f"invalid ulimit {spec!r}: {text!r} is not a number (or -1 for unlimited)")
    return int(text)


def parse_ulimit(spec: str) -> dict[str, Any]:
    """Parse ``--ulimit name=soft[:hard]`` into an OCI rlimit ``{"type", "soft", "hard"}``.

    ``hard`` defaults to ``soft``; ``-1``/``unlimited`` means RLIM_INFINITY. Unknown names,
    malformed numbers and soft > hard raise :class:`InvalidArgument`. Whether the host lets
    the limit be set is checked by :func:`generate_spec`."""
    if not isinstance(spec, str) or "=" not in spec:
        raise InvalidArgument(f"invalid ulimit {spec!r}: expected name=soft[:hard]")
    name, _, values = spec.partition("=")
    key = name.strip().lower()
    if key.startswith("rlimit_"):
        key = key[len("rlimit_"):]
    if key not in ULIMIT_TYPES:
        raise InvalidArgument(f"invalid ulimit {spec!r}: unknown limit {name.strip()!r} "
                              f"(known: {', '.join(sorted(ULIMIT_TYPES))})")
    soft_s, sep, hard_s = values.partition(":")
    if not soft_s.strip() or (sep and not hard_s.strip()):
        raise InvalidArgument(f"invalid ulimit {spec!r}: expected name=soft[:hard]")
    soft = _parse_rlimit_value(soft_s, spec)
    hard = _parse_rlimit_value(hard_s, spec) if sep else soft
    if soft > hard:
        raise InvalidArgument(f"invalid ulimit {spec!r}: soft limit {soft} is above hard limit {hard}")
    return {"type": ULIMIT_TYPES[key], "soft": soft, "hard": hard}


def host_hard_limit(rlimit_type: str) -> int:
    """This process's current hard limit for ``RLIMIT_*`` (RLIM_INFINITY if unlimited).
    A runtime started by kpod inherits it and cannot go above it without CAP_SYS_RESOURCE."""
    num = getattr(resource, rlimit_type, None)
    if num is None:
        num = _RLIMIT_NUMBERS[rlimit_type]
    try:
        _soft, hard = resource.getrlimit(num)
    except (ValueError, OSError):
        return RLIM_INFINITY
    if hard == resource.RLIM_INFINITY or hard < 0:
        return RLIM_INFINITY
    return hard


def _format_limit(value: int) -> str:
    return "unlimited" if value == RLIM_INFINITY else str(value)


def build_rlimits(ulimits: Iterable[str]) -> list[dict[str, Any]]:
    """Default nofile/nproc (capped at the host's hard limits) plus the user's --ulimit."""
    wanted: dict[str, dict[str, Any]] = {}
    for rtype, default in (("RLIMIT_NOFILE", DEFAULT_NOFILE), ("RLIMIT_NPROC", DEFAULT_NPROC)):
        value = min(default, host_hard_limit(rtype))
        wanted[rtype] = {"type": rtype, "hard": value, "soft": value}
    for spec in ulimits:
        lim = parse_ulimit(spec)
        ceiling = host_hard_limit(lim["type"])
        if lim["hard"] > ceiling:
            raise InvalidArgument(
                f"ulimit {spec!r}: hard limit {_format_limit(lim['hard'])} is above the host's hard "
                f"limit {_format_limit(ceiling)} for {lim['type']}; kpod cannot raise it "
                f"(it lacks CAP_SYS_RESOURCE or the host forbids it)")
        wanted[lim["type"]] = {"type": lim["type"], "hard": lim["hard"], "soft": lim["soft"]}
    return list(wanted.values())


# ---------------------------------------------------------------------------------------
# capabilities
# ---------------------------------------------------------------------------------------

def normalize_capability(name: str) -> str:
    """``"net_admin"`` / ``"CAP_NET_ADMIN"`` / ``" Net_Admin "`` -> ``"CAP_NET_ADMIN"``;
    ``"all"`` -> ``"ALL"``. Unknown names raise :class:`InvalidArgument`."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgument(f"invalid capability {name!r}")
    upper = name.strip().upper()
    if upper in ("ALL", "CAP_ALL"):
        return "ALL"
    if not upper.startswith("CAP_"):
        upper = "CAP_" + upper
    if upper not in _CAP_BIT:
        raise InvalidArgument(f"unknown capability {name.strip()!r}")
    return upper


def _sort_caps(caps: Iterable[str]) -> list[str]:
    return sorted(set(caps), key=_CAP_BIT.__getitem__)


def caps_mask(caps: Iterable[str]) -> int:
    """The kernel's bit mask (as in /proc/PID/status CapEff) of a set of capability names."""
    mask = 0
    for cap in caps:
        mask |= 1 << _CAP_BIT[normalize_capability(cap)]
    return mask


def host_bounding_caps() -> frozenset[str]:
    """The capabilities kpod itself could hand out: its own bounding set."""
    try:
        # UTF-8, not ASCII: its codec is loaded at start-up, the ASCII one would be imported
        # (the line read is ASCII either way)
        with open("/proc/self/status", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("CapBnd:"):
                    mask = int(line.split(":", 1)[1].strip(), 16)
                    return frozenset(c for c, bit in _CAP_BIT.items() if mask >> bit & 1)
    except (OSError, ValueError):
        pass
    return frozenset(CAPABILITIES)


def resolve_capabilities(cap_add: Iterable[str] = (), cap_drop: Iterable[str] = (),
                         privileged: bool = False) -> list[str]:
    """The container's capability set, sorted by bit number.

    Start from :data:`DEFAULT_CAPABILITIES` (nothing if ``ALL`` is dropped, everything if
    ``ALL`` is added or ``privileged``), add ``cap_add``, remove ``cap_drop``. "Everything"
    means every capability in kpod's own bounding set; naming a capability the host does not
    have, or the same one in both lists, raises :class:`InvalidArgument`."""
    adds = [normalize_capability(c) for c in cap_add]
    drops = [normalize_capability(c) for c in cap_drop]
    both = (set(adds) & set(drops)) - {"ALL"}
    if both:
        raise InvalidArgument(f"capability {sorted(both)[0]} cannot be both added and dropped")
    host = host_bounding_caps()
    for cap in adds:
        if cap != "ALL" and cap not in host:
            raise InvalidArgument(f"capability {cap} is not available on this host (not in kpod's bounding set)")
    if "ALL" in adds or (privileged and "ALL" not in drops):
        caps = set(host)
    elif "ALL" in drops:
        caps = set()
    else:
        caps = set(DEFAULT_CAPABILITIES) & host
    caps |= set(a for a in adds if a != "ALL")
    caps -= set(d for d in drops if d != "ALL")
    return _sort_caps(caps)


# ---------------------------------------------------------------------------------------
# users: /etc/passwd and /etc/group inside the rootfs
# ---------------------------------------------------------------------------------------

def _resolve_in_root(root: str, path: str) -> str | None:
    """Resolve ``path`` as if ``root`` were ``/``: symlinks are followed, but absolute targets
    and ``..`` never leave ``root``. Returns a host path under ``root`` or ``None`` when a
    component does not exist."""
    todo = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    hops = 0
    while todo:
        comp = todo.pop(0)
        if comp == ".":
            continue
        if comp == "..":
            if done:
                done.pop()
            continue
        candidate = os.path.join(root, *done, comp)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            return None
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > _MAX_SYMLINKS:
                raise InvalidArgument(f"too many levels of symbolic links resolving {path} in the image")
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = []
            todo = [p for p in target.split("/") if p not in ("", ".")] + todo
            continue
        done.append(comp)
    return os.path.join(root, *done)


def _read_rootfs_file(rootfs: str, path: str) -> str | None:
    """Read a small regular text file of the image without leaving the rootfs."""
    host_path = _resolve_in_root(rootfs, path)
    if host_path is None:
        return None
    try:
        fd = os.open(host_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path} in the image: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidArgument(f"{path} in the image is not a regular file")
        if st.st_size > _MAX_DB_SIZE:
            raise InvalidArgument(f"{path} in the image is too large")
        chunks = []
        remaining = _MAX_DB_SIZE
        while remaining > 0:
            chunk = os.read(fd, min(65536, remaining))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", errors="replace")


#: the files user resolution reads, in the image
USER_FILES = ("/etc/passwd", "/etc/group")


def read_user_files(rootfs: str) -> dict[str, str | None]:
    """The image's :data:`USER_FILES` as text (None: absent), read inside *rootfs*. The
    result depends on the image alone, so the store keeps it for the next ``create``."""
    return {path: _read_rootfs_file(rootfs, path) for path in USER_FILES}


def _read_db(rootfs: str | None, path: str, min_fields: int,
             files: Mapping[str, str | None] | None = None) -> list[list[str]] | None:
    if files is not None:
        text = files.get(path)
    elif not rootfs:
        return None
    else:
        text = _read_rootfs_file(rootfs, path)
    if text is None:
        return None
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) < min_fields:
            continue
        rows.append(fields)
    return rows


def _parse_id(text: str) -> int | None:
    if re.fullmatch(r"\d+", text):
        value = int(text)
        if value > _MAX_ID:
            raise InvalidArgument(f"user or group ID {value} is out of range")
        return value
    return None


def _row_id(row: list[str], index: int) -> int | None:
    try:
        return int(row[index])
    except (ValueError, IndexError):
        return None


def _lookup_group(groups: list[list[str]] | None, spec: str) -> int:
    gid = _parse_id(spec)
    if gid is not None:
        return gid
    for row in groups or ():
        if row[0] == spec and _row_id(row, 2) is not None:
            return _row_id(row, 2)  # type: ignore[return-value]
    raise InvalidArgument(f"unable to find group {spec}: no matching entries in group file")


def resolve_user(rootfs: str | None, user: str | None, group_add: Iterable[str] = (),
                 files: Mapping[str, str | None] | None = None) -> ExecUser:
    """Resolve ``user[:group]`` (names or numbers) against the rootfs's /etc/passwd and
    /etc/group (or their texts in *files*, from :func:`read_user_files`). Empty means root.
    Without an explicit group the passwd entry's group is the primary one and the groups
    listing the user become supplementary groups."""
    spec = (user or "").strip()
    uspec, sep, gspec = spec.partition(":")
    if sep and not gspec:
        raise InvalidArgument(f"invalid user {spec!r}: empty group")
    if not uspec:
        uspec = "0"
    passwd = _read_db(rootfs, "/etc/passwd", 7, files)
    groups = _read_db(rootfs, "/etc/group", 4, files)

    entry: list[str] | None = None
    uid = _parse_id(uspec)
    if uid is None:
        for row in passwd or ():
            if row[0] == uspec and _row_id(row, 2) is not None:
                entry = row
                break
        if entry is None:
            raise InvalidArgument(f"unable to find user {uspec}: no matching entries in passwd file")
        uid = _row_id(entry, 2)
    else:
        for row in passwd or ():
            if _row_id(row, 2) == uid:
                entry = row
                break
    assert uid is not None

    if sep:
        gid = _lookup_group(groups, gspec)
    elif entry is not None and _row_id(entry, 3) is not None:
        gid = _row_id(entry, 3)  # type: ignore[assignment]
    else:
        gid = 0
    if gid > _MAX_ID:
        raise InvalidArgument(f"group ID {gid} is out of range")

    extra: list[int] = []
    name = entry[0] if entry else None
    if not sep and name is not None:
        for row in groups or ():
            members = [m.strip() for m in row[3].split(",")]
            gid_row = _row_id(row, 2)
            if name in members and gid_row is not None and gid_row not in extra:
                extra.append(gid_row)
    for g in group_add:
        gid_extra = _lookup_group(groups, str(g).strip())
        if gid_extra not in extra:
            extra.append(gid_extra)
    home = entry[5] if entry and entry[5] else "/"
    return ExecUser(uid=uid, gid=gid, additional_gids=tuple(extra), home=home, name=name)


# ---------------------------------------------------------------------------------------
# command and environment
# ---------------------------------------------------------------------------------------

def _image_config(image_config: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """Accept either the whole OCI image config or only its ``config`` section."""
    if not image_config:
        return {}
    inner = image_config.get("config")
    if isinstance(inner, Mapping):
        return inner
    if "config" in image_config and inner is None:
        return {}
    return image_config


def _as_argv(value: Sequence[str] | str | None, what: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
                return parsed
        return [value] if value else []
    argv = list(value)
    if not all(isinstance(x, str) for x in argv):
        raise InvalidArgument(f"invalid {what}: every element must be a string")
    if argv == [""]:
        return []
    return argv


def resolve_command(entrypoint: Sequence[str] | str | None, command: Sequence[str] | str | None,
                    image_entrypoint: Sequence[str] | None, image_cmd: Sequence[str] | None) -> list[str]:
    """docker/podman semantics: args = entrypoint + cmd. ``--entrypoint`` replaces the image's
    entrypoint and drops its CMD (unless a command is given); a command replaces the CMD."""
    ep_override = _as_argv(entrypoint, "entrypoint")
    cmd_override = _as_argv(command, "command")
    ep = ep_override if ep_override is not None else list(image_entrypoint or [])
    if cmd_override is not None:
        cmd = cmd_override
    elif ep_override is not None:
        cmd = []
    else:
        cmd = list(image_cmd or [])
    args = ep + cmd
    if not args:
        raise InvalidArgument("no command or entrypoint provided, and no CMD or ENTRYPOINT from image")
    return args


def _split_env(item: str, *, from_host: bool) -> tuple[str, str] | None:
    if not isinstance(item, str):
        raise InvalidArgument(f"invalid environment variable {item!r}")
    if "\0" in item:
        raise InvalidArgument("invalid environment variable: contains a NUL byte")
    key, sep, value = item.partition("=")
    if not key or any(c.isspace() for c in key):
        raise InvalidArgument(f"invalid environment variable {item!r}")
    if sep:
        return key, value
    if from_host:
        if key in os.environ:
            return key, os.environ[key]
        return None
    return key, ""


def build_env(image_env: Iterable[str] | None, user_env: Iterable[str], *, hostname: str | None = None,
              tty: bool = False, home: str | None = None) -> list[str]:
    """Merge defaults < image Env < ``-e`` (later wins, first position kept). Defaults: PATH,
    container=kpod, TERM=xterm with a tty, HOSTNAME and HOME. ``-e KEY`` without a value
    takes kpod's own value of KEY, or nothing if unset."""
    env: dict[str, str] = {"PATH": DEFAULT_PATH_ENV, "container": "kpod"}
    if tty:
        env["TERM"] = "xterm"
    if hostname:
        env["HOSTNAME"] = hostname
    if home:
        env["HOME"] = home
    for item in image_env or ():
        kv = _split_env(item, from_host=False)
        if kv:
            env[kv[0]] = kv[1]
    for item in user_env:
        kv = _split_env(item, from_host=True)
        if kv:
            env[kv[0]] = kv[1]
    return [f"{k}={v}" for k, v in env.items()]


# ---------------------------------------------------------------------------------------
# mounts
# ---------------------------------------------------------------------------------------

def _check_dest(dest: str, what: str) -> str:
    if not isinstance(dest, str) or not dest.startswith("/"):
        raise InvalidArgument(f"invalid {what} destination {dest!r}: must be an absolute path")
    norm = os.path.normpath(dest)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    if norm == "/":
        raise InvalidArgument(f"invalid {what} destination {dest!r}: cannot mount over /")
    return norm


_PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
_FLAG_PAIRS = {"nosuid": "suid", "suid": "nosuid", "nodev": "dev", "dev": "nodev",
               "noexec": "exec", "exec": "noexec"}


def _bind_mount(src: str, dest: str, options: Iterable[str], what: str) -> dict[str, Any]:
    """An OCI bind mount with podman's defaults (rbind, rprivate, nosuid, nodev)."""
    if not isinstance(src, str) or not src.startswith("/"):
        raise InvalidArgument(f"invalid {what} {src!r}: the source must be an absolute host path "
                              "(named volumes are resolved before the spec is generated)")
    if not os.path.exists(src):
        raise InvalidArgument(f"invalid {what}: source {src} does not exist")
    return {"destination": _check_dest(dest, what), "type": "bind", "source": src,
            "options": _bind_options(options, what)}


def _bind_options(options: Iterable[str], what: str) -> list[str]:
    """A bind mount's OCI options from the user's (``copy``/``nocopy`` and SELinux labels
    dropped): ``[rbind|bind, propagation, ro|rw, nosuid|suid, nodev|dev(, exec|noexec)]``."""
    rw: str | None = None
    prop: str | None = None
    bind = "rbind"
    flags: dict[str, str] = {"suid": "nosuid", "dev": "nodev"}
    for opt in options:
        opt = opt.strip()
        if not opt or opt in ("z", "Z", "copy", "nocopy"):
            continue
        if opt in ("ro", "rw"):
            if rw and rw != opt:
                raise InvalidArgument(f"invalid {what} options: both ro and rw given")
            rw = opt
        elif opt in _PROPAGATIONS:
            if prop and prop != opt:
                raise InvalidArgument(f"invalid {what} options: more than one propagation given")
            prop = opt
        elif opt in ("bind", "rbind"):
            bind = opt
        elif opt in _FLAG_PAIRS:
            key = opt[2:] if opt.startswith("no") else opt
            flags[key] = opt
        elif opt in ("U", "O", "idmap") or opt.startswith("idmap="):
            raise InvalidArgument(f"invalid {what} option {opt!r}: not supported by kpod")
        else:
            raise InvalidArgument(f"invalid {what} option {opt!r}")
    return [bind, prop or "rprivate", rw or "rw", *flags.values()]


def _volume_parts(spec: str) -> tuple[str | None, str, list[str]]:
    """``-v`` split podman's way: (source, destination, options); source None for an
    anonymous volume (``-v /ctr``)."""
    if not isinstance(spec, str) or not spec:
        raise InvalidArgument(f"invalid volume {spec!r}")
    parts = spec.split(":")
    if len(parts) > 3:
        raise InvalidArgument(f"invalid volume {spec!r}: expected [SOURCE:]/container[:options]")
    if len(parts) == 1:
        return None, parts[0], []
    return parts[0], parts[1], parts[2].split(",") if len(parts) == 3 else []


def is_bind_volume(spec: str) -> bool:
    """Whether ``-v`` *spec* bind-mounts a host path (a source starting with ``/`` or ``.``,
    as podman decides) rather than naming a volume (``NAME:/ctr``, or ``/ctr`` alone)."""
    src = _volume_parts(spec)[0]
    return src is not None and (src == "" or src.startswith(("/", ".")))


def parse_volume(spec: str) -> dict[str, Any]:
    """``-v /host:/ctr[:opt,opt]`` -> an OCI bind mount."""
    src, dest, opts = _volume_parts(spec)
    if src is None or not is_bind_volume(spec):
        raise InvalidArgument(f"invalid volume {spec!r}: volumes are resolved before the spec is generated")
    return _bind_mount(src, dest, opts, f"volume {spec!r}")


def _volume_use(name: str | None, dest: str, options: Iterable[str], what: str) -> dict[str, Any]:
    options = [o.strip() for o in options]
    return {"type": "volume", "name": name or None, "destination": _check_dest(dest, what),
            "options": _bind_options(options, what), "copy": "nocopy" not in options}


def volume_use(spec: str) -> dict[str, Any]:
    """``-v NAME:/ctr[:opts]`` or ``-v /ctr`` (anonymous) -> ``{"type": "volume", "name":
    NAME or None, "destination", "options": OCI bind options, "copy": False with nocopy}``."""
    src, dest, opts = _volume_parts(spec)
    if is_bind_volume(spec):
        raise InvalidArgument(f"invalid volume {spec!r}: {src} is a host path, not a volume name")
    return _volume_use(src, dest, opts, f"volume {spec!r}")


def split_user_mounts(volumes: Iterable[str], mounts: Iterable[str | Mapping[str, Any]]
                      ) -> tuple[list[str], list[str | Mapping[str, Any]], list[dict[str, Any]]]:
    """``-v`` and ``--mount`` values as (host-path ``-v``, bind/tmpfs/OCI ``--mount``, volume
    uses as :func:`volume_use` returns them, named and anonymous), all validated."""
    binds: list[str] = []
    others: list[str | Mapping[str, Any]] = []
    uses: list[dict[str, Any]] = []
    for v in volumes:
        if is_bind_volume(v):
            parse_volume(v)
            binds.append(v)
        else:
            uses.append(volume_use(v))
    for m in mounts:
        parsed = parse_mount(m) if isinstance(m, str) else _oci_mount(m)
        if parsed.get("type") == "volume" and isinstance(m, str):
            uses.append(parsed)
        else:
            others.append(m)
    return binds, others, uses


_TMPFS_VALUE_OPTS = lazy(r"^(size=\d+[kmg%]?|mode=[0-7]{3,4}|uid=\d+|gid=\d+|nr_inodes=\d+[kmg]?)$", re.I)


def _tmpfs_mount(dest: str, options: Iterable[str], what: str) -> dict[str, Any]:
    dest = _check_dest(dest, what)
    opts: dict[str, str] = {"rw": "rw", "exec": "noexec", "suid": "nosuid", "dev": "nodev"}
    values: dict[str, str] = {}
    copyup = True
    for opt in options:
        opt = opt.strip()
        if not opt:
            continue
        if opt in ("ro", "rw"):
            opts["rw"] = opt
        elif opt in _FLAG_PAIRS:
            opts[opt[2:] if opt.startswith("no") else opt] = opt
        elif opt in ("tmpcopyup", "notmpcopyup"):
            copyup = opt == "tmpcopyup"
        elif opt in _PROPAGATIONS:
            opts["propagation"] = opt
        elif _TMPFS_VALUE_OPTS.match(opt):
            values[opt.split("=", 1)[0].lower()] = opt
        else:
            raise InvalidArgument(f"invalid {what} option {opt!r}")
    out = list(opts.values()) + list(values.values())
    if copyup:
        out.append("tmpcopyup")
    return {"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": out}


def parse_tmpfs(spec: str) -> dict[str, Any]:
    """``--tmpfs /ctr[:opt,opt]`` -> an OCI tmpfs mount (rw,noexec,nosuid,nodev by default)."""
    if not isinstance(spec, str) or not spec:
        raise InvalidArgument(f"invalid tmpfs {spec!r}")
    dest, _, opts = spec.partition(":")
    return _tmpfs_mount(dest, opts.split(",") if opts else [], f"tmpfs {spec!r}")


def _truthy(value: str, spec: str) -> bool:
    v = value.strip().lower()
    if v in ("", "true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise InvalidArgument(f"invalid mount {spec!r}: {value!r} is not a boolean")


def parse_mount(spec: str) -> dict[str, Any]:
    """``--mount type=bind|tmpfs,source=..,target=..,ro,...`` -> an OCI mount."""
    if not isinstance(spec, str) or not spec:
        raise InvalidArgument(f"invalid mount {spec!r}")
    kind = "volume"
    src = dest = None
    opts: list[str] = []
    tmpfs_opts: list[str] = []
    for item in spec.split(","):
        key, sep, value = item.strip().partition("=")
        key = key.lower()
        if key == "type":
            kind = value.strip()
        elif key in ("source", "src"):
            src = value
        elif key in ("destination", "dst", "target"):
            dest = value
        elif key in ("ro", "readonly"):
            opts.append("ro" if _truthy(value if sep else "", spec) else "rw")
        elif key == "rw" and not sep:
            opts.append("rw")
        elif key == "bind-propagation":
            if value not in _PROPAGATIONS:
                raise InvalidArgument(f"invalid mount {spec!r}: bad bind-propagation {value!r}")
            opts.append(value)
        elif key == "bind-nonrecursive":
            if _truthy(value if sep else "", spec):
                opts.append("bind")
        elif key == "tmpfs-size":
            tmpfs_opts.append(f"size={parse_size(value, what='tmpfs-size')}")
        elif key == "tmpfs-mode":
            if not re.fullmatch(r"[0-7]{3,4}", value):
                raise InvalidArgument(f"invalid mount {spec!r}: bad tmpfs-mode {value!r}")
            tmpfs_opts.append(f"mode={value}")
        elif key in ("nocopy", "volume-nocopy"):
            if _truthy(value if sep else "", spec):
                opts.append("nocopy")
        elif key in ("relabel", "consistency", "z"):
            continue
        elif key in _FLAG_PAIRS and not sep:
            opts.append(key)
        else:
            raise InvalidArgument(f"invalid mount {spec!r}: unknown option {item.strip()!r}")
    if dest is None:
        raise InvalidArgument(f"invalid mount {spec!r}: a target is required")
    if kind == "bind":
        if src is None:
            raise InvalidArgument(f"invalid mount {spec!r}: a source is required")
        return _bind_mount(src, dest, opts, f"mount {spec!r}")
    if kind == "tmpfs":
        return _tmpfs_mount(dest, opts + tmpfs_opts, f"mount {spec!r}")
    if kind == "volume":
        return _volume_use(src, dest, opts, f"mount {spec!r}")
    raise InvalidArgument(f"invalid mount {spec!r}: type {kind!r} is not supported (bind, tmpfs or volume)")


# -- the image's VOLUME paths (--image-volume) -------------------------------------------

IMAGE_VOLUME_MODES = ("bind", "tmpfs", "ignore")


def check_image_volume_mode(mode: str) -> str:
    if mode not in IMAGE_VOLUME_MODES:
        raise InvalidArgument(f"invalid image volume mode {mode!r}: must be one of {', '.join(IMAGE_VOLUME_MODES)}")
    return mode


def image_volume_paths(image_config: Mapping[str, Any] | None) -> list[str]:
    """The image config's ``Volumes`` (Dockerfile VOLUME) as normalised absolute paths,
    sorted. A path that is not absolute, climbs with ``..`` or is ``/`` is refused."""
    vols = _image_config(image_config).get("Volumes") or {}
    if not isinstance(vols, Mapping):
        raise InvalidArgument(f"invalid image config: Volumes must be a mapping, not {type(vols).__name__}")
    out: set[str] = set()
    for path in vols:
        if not isinstance(path, str) or not path.startswith("/") or ".." in path.split("/") or "\0" in path:
            raise InvalidArgument(f"invalid image volume {path!r}: must be an absolute path without '..'")
        out.add(_check_dest(path, "image volume"))
    return sorted(out)


def image_volume_mount(dest: str, mode: str, source: str | None = None) -> dict[str, Any]:
    """The OCI mount for one image VOLUME path: an anonymous volume's host directory
    *source* bind-mounted read-write (``bind``), or a tmpfs filled with the image's content
    by the runtime's ``tmpcopyup`` (``tmpfs``)."""
    if mode == "tmpfs":
        return _tmpfs_mount(dest, ["rprivate", "rw", "nodev", "exec"], "image volume")  # podman's options
    if mode != "bind" or not source:
        raise InvalidArgument(f"invalid image volume mode {mode!r} for {dest}")
    return {"destination": _check_dest(dest, "image volume"), "type": "bind", "source": source,
            "options": ["rbind", "rprivate", "rw", "nosuid", "nodev"]}


def user_mount_destinations(volumes: Iterable[str], tmpfs: Iterable[str],
                            mounts: Iterable[str | Mapping[str, Any]]) -> set[str]:
    """The normalised destinations of ``-v``, ``--tmpfs`` and ``--mount`` (validating them)."""
    binds, others, uses = split_user_mounts(volumes, mounts)
    out = {parse_volume(v)["destination"] for v in binds}
    out |= {parse_tmpfs(t)["destination"] for t in tmpfs}
    out |= {(parse_mount(m) if isinstance(m, str) else _oci_mount(m))["destination"] for m in others}
    return out | {u["destination"] for u in uses}


def _oci_mount(value: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(value, Mapping) or "destination" not in value:
        raise InvalidArgument(f"invalid mount {value!r}: needs a destination")
    out = dict(value)
    out["destination"] = _check_dest(out["destination"], "mount")
    if "options" in out:
        out["options"] = list(out["options"])
    return out


def _depth(dest: str) -> int:
    return len([p for p in dest.split("/") if p])


# ---------------------------------------------------------------------------------------
# devices
# ---------------------------------------------------------------------------------------

_SKIP_DEV_DIRS = frozenset({"pts", "shm", "mqueue", "fd", ".lxc", ".lxd-mounts", ".udev"})
_SKIP_DEV_FILES = frozenset({"console", "ptmx"})


def _device_entry(host_path: str, ctr_path: str, st: os.stat_result) -> dict[str, Any]:
    return {
        "path": ctr_path,
        "type": "c" if stat.S_ISCHR(st.st_mode) else "b",
        "major": os.major(st.st_rdev),
        "minor": os.minor(st.st_rdev),
        "fileMode": stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
    }


def _walk_devices(host_dir: str, ctr_dir: str, *, top: bool) -> list[dict[str, Any]]:
    found = []
    try:
        names = sorted(os.listdir(host_dir))
    except OSError:
        return found
    for name in names:
        hp = os.path.join(host_dir, name)
        cp = os.path.join(ctr_dir, name)
        try:
            st = os.lstat(hp)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            if top and name in _SKIP_DEV_DIRS:
                continue
            found.extend(_walk_devices(hp, cp, top=False))
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            if top and name in _SKIP_DEV_FILES:
                continue
            found.append(_device_entry(hp, cp, st))
    return found


def host_devices() -> list[dict[str, Any]]:
    """Every character and block device under the host's /dev (for --privileged)."""
    return _walk_devices("/dev", "/dev", top=True)


def parse_device(spec: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``--device /dev/x[:/dev/y][:rwm]`` -> (linux.devices entries, cgroup allow rules).
    A directory adds every device below it."""
    parts = spec.split(":") if isinstance(spec, str) else []
    if not parts or len(parts) > 3 or not parts[0]:
        raise InvalidArgument(f"invalid device {spec!r}: expected /dev/host[:/dev/container][:rwm]")
    host = parts[0]
    ctr = host
    perms = "rwm"
    if len(parts) == 3:
        ctr, perms = parts[1], parts[2]
    elif len(parts) == 2:
        if parts[1].startswith("/"):
            ctr = parts[1]
        else:
            perms = parts[1]
    if not perms or any(c not in "rwm" for c in perms) or len(set(perms)) != len(perms):
        raise InvalidArgument(f"invalid device {spec!r}: permissions must be a combination of r, w and m")
    if not host.startswith("/") or not ctr.startswith("/"):
        raise InvalidArgument(f"invalid device {spec!r}: paths must be absolute")
    try:
        st = os.stat(host)
    except OSError as exc:
        raise InvalidArgument(f"invalid device {spec!r}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        devs = _walk_devices(host, os.path.normpath(ctr), top=False)
        if not devs:
            raise InvalidArgument(f"invalid device {spec!r}: no devices found in {host}")
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        devs = [_device_entry(host, os.path.normpath(ctr), st)]
    else:
        raise InvalidArgument(f"invalid device {spec!r}: {host} is not a device")
    rules = [{"allow": True, "type": d["type"], "major": d["major"], "minor": d["minor"], "access": perms}
             for d in devs]
    return devs, rules


# ---------------------------------------------------------------------------------------
# seccomp
# ---------------------------------------------------------------------------------------

def native_seccomp_arch(machine: str | None = None) -> str:
    machine = (machine or os.uname().machine).lower()  # platform.machine(), without importing platform
    try:
        return _ARCH_ALIASES[machine]
    except KeyError:
        raise InvalidArgument(f"no seccomp architecture known for machine {machine!r}") from None


def _norm_arch(name: str) -> str:
    if name.upper().startswith("SCMP_ARCH_"):
        return name.upper()
    return _ARCH_ALIASES.get(name.lower(), name.upper())


def load_seccomp_profile(path: str | None = None) -> dict[str, Any]:
    """Read a seccomp profile (kpod's default when ``path`` is None). Accepted shapes: kpod's
    and docker's (``archMap``, ``syscalls`` with ``includes``/``excludes``) and a plain OCI
    ``linux.seccomp`` object (``architectures``)."""
    path = path or DEFAULT_SECCOMP_PROFILE
    try:
        with open(path, encoding="utf-8") as fh:
            profile = json.load(fh)
    except OSError as exc:
        raise InvalidArgument(f"cannot read seccomp profile {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise InvalidArgument(f"seccomp profile {path} is not valid JSON: {exc}") from None
    if not isinstance(profile, dict) or "defaultAction" not in profile:
        raise InvalidArgument(f"seccomp profile {path} has no defaultAction")
    profile.setdefault("__source__", path)
    return profile


def _kernel_at_least(spec: str) -> bool:
    want = [int(x) for x in re.findall(r"\d+", spec)[:2]] or [0]
    have = [int(x) for x in re.findall(r"\d+", os.uname().release)[:2]] or [0]
    return have >= want


def _seccomp_rule_applies(entry: Mapping[str, Any], caps: frozenset[str], arches: list[str]) -> bool:
    inc = entry.get("includes") or {}
    exc = entry.get("excludes") or {}
    if inc.get("caps") and not any(normalize_capability(c) in caps for c in inc["caps"]):
        return False
    if inc.get("arches") and not any(_norm_arch(a) in arches for a in inc["arches"]):
        return False
    if inc.get("minKernel") and not _kernel_at_least(str(inc["minKernel"])):
        return False
    if exc.get("caps") and any(normalize_capability(c) in caps for c in exc["caps"]):
        return False
    if exc.get("arches") and any(_norm_arch(a) in arches for a in exc["arches"]):
        return False
    return True


def seccomp_to_oci(profile: Mapping[str, Any], caps: Iterable[str], machine: str | None = None) -> dict[str, Any]:
    """Turn a profile into the runtime's ``linux.seccomp``: keep the rules whose
    ``includes``/``excludes`` match the container's (bounding) capabilities and the host's
    architecture, pick the architectures for this machine, merge the unconditional rules."""
    source = profile.get("__source__", "seccomp profile")
    capset = frozenset(normalize_capability(c) for c in caps)
    default_action = profile.get("defaultAction")
    if default_action not in _SECCOMP_ACTIONS:
        raise InvalidArgument(f"{source}: invalid defaultAction {default_action!r}")

    native = native_seccomp_arch(machine)
    if "architectures" in profile and "archMap" not in profile:
        arches = [_norm_arch(a) for a in profile.get("architectures") or []]
    else:
        arches = [native]
        for item in profile.get("archMap") or []:
            if _norm_arch(item.get("architecture", "")) == native:
                arches += [_norm_arch(a) for a in item.get("subArchitectures") or []]
                break

    unconditional: dict[tuple[str, int | None], list[str]] = {}
    seen: dict[str, str] = {}  # name -> action of its first unconditional rule
    conditional: list[dict[str, Any]] = []
    for entry in profile.get("syscalls") or []:
        if not _seccomp_rule_applies(entry, capset, arches):
            continue
        names = entry.get("names")
        if names is None and entry.get("name"):
            names = [entry["name"]]
        if not names:
            continue
        action = entry.get("action")
        if action not in _SECCOMP_ACTIONS:
            raise InvalidArgument(f"{source}: invalid action {action!r} for {names[0]}")
        errno_ret = entry.get("errnoRet")
        args = entry.get("args") or []
        if args:
            oci_args = []
            for arg in args:
                if arg.get("op") not in _SECCOMP_OPS:
                    raise InvalidArgument(f"{source}: invalid operator {arg.get('op')!r} for {names[0]}")
                oci_args.append({"index": int(arg["index"]), "value": int(arg.get("value", 0)),
                                 "valueTwo": int(arg.get("valueTwo", 0)), "op": arg["op"]})
            rule: dict[str, Any] = {"names": list(names), "action": action, "args": oci_args}
            if errno_ret is not None:
                rule["errnoRet"] = int(errno_ret)
            conditional.append(rule)
            continue
        bucket = unconditional.setdefault((action, errno_ret), [])
        for name in names:
            if name not in seen:  # a later unconditional rule for the same name cannot apply
                seen[name] = action
                bucket.append(name)

    syscalls: list[dict[str, Any]] = []
    for (action, errno_ret), names in unconditional.items():
        if not names:
            continue
        rule = {"names": names, "action": action}
        if errno_ret is not None:
            rule["errnoRet"] = int(errno_ret)
        syscalls.append(rule)
    for rule in conditional:
        # redundant when the same action already applies to the name unconditionally
        rule["names"] = [n for n in rule["names"] if seen.get(n) != rule["action"]]
        if rule["names"]:
            syscalls.append(rule)

    out: dict[str, Any] = {"defaultAction": default_action, "architectures": arches, "syscalls": syscalls}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = int(profile["defaultErrnoRet"])
    for key in ("flags", "listenerPath", "listenerMetadata"):
        if profile.get(key):
            out[key] = profile[key]
    return out


# ---------------------------------------------------------------------------------------
# namespaces, resources, host facts
# ---------------------------------------------------------------------------------------

def host_cgroup_v2() -> bool:
    """True when /sys/fs/cgroup is the unified (v2) hierarchy."""
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def host_swap_accounting() -> bool:
    if host_cgroup_v2():
        return True
    return os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")


def host_pids_controller() -> bool:
    if host_cgroup_v2():
        try:
            with open("/sys/fs/cgroup/cgroup.controllers", encoding="ascii") as fh:
                return "pids" in fh.read().split()
        except OSError:
            return False
    return os.path.isdir("/sys/fs/cgroup/pids")


#: the modes ``--ipc``, ``--uts`` and ``--pid`` take besides ``container:NAME|ID`` and ``ns:PATH``
NAMESPACE_FLAG_MODES = {"ipc": ("host", "private", "shareable", "none"), "uts": ("host", "private"),
                        "pid": ("host", "private")}


def parse_namespace_flag(kind: str, value: str) -> tuple[str, str | None]:
    """Check ``--ipc``/``--uts``/``--pid`` *value* (podman's syntax); returns (the mode to
    store, the container reference of ``container:NAME|ID`` or None). A ``ns:PATH`` must
    exist. The caller resolves the container reference (to ``container:<full ID>``)."""
    modes = NAMESPACE_FLAG_MODES[kind]
    mode = (value or "").strip()
    if mode in modes:
        return mode, None
    if mode.startswith("container:"):
        ref = mode[len("container:"):]
        if not ref:
            raise InvalidArgument(f"invalid --{kind} {value!r}: expected container:NAME or container:ID")
        return mode, ref
    if mode.startswith("ns:"):
        path = mode[3:]
        if not path.startswith("/") or not os.path.exists(path):
            raise InvalidArgument(f"invalid --{kind} {value!r}: namespace path {path!r} does not exist")
        return mode, None
    raise InvalidArgument(f"invalid --{kind} {value!r}: expected {', '.join(modes)}, container:NAME|ID or ns:PATH")


def use_shm_dir(spec: dict[str, Any], path: str) -> None:
    """Make the spec's /dev/shm a bind mount of the host directory *path* (a pod's shared
    shm) in place of its own tmpfs."""
    mounts = [m for m in spec.get("mounts") or [] if m.get("destination") != "/dev/shm"]
    at = next((i for i, m in enumerate(mounts) if m.get("destination") == "/dev/mqueue"), len(mounts))
    mounts.insert(at, _bind_mount(path, "/dev/shm", ["rw", "noexec"], "shm path"))
    spec["mounts"] = mounts


def check_cgroup_parent(parent: str) -> str:
    """``--cgroup-parent`` (cgroupfs): an absolute cgroup path without ``..``."""
    if not parent.startswith("/") or ".." in parent.split("/") or "//" in parent or parent.rstrip("/") == "" \
            or any(ch.isspace() or ch == "\0" for ch in parent):
        raise InvalidArgument(f"invalid --cgroup-parent {parent!r}: expected an absolute cgroup path like /kpod")
    return parent


def _namespace(kind: str, mode: str | None, flag: str) -> dict[str, Any] | None:
    mode = (mode or "private").strip()
    if mode in ("private", ""):
        return {"type": kind}
    if mode == "host":
        return None
    if mode == "none" and kind in ("network", "ipc"):
        return {"type": kind}
    if mode == "shareable" and kind == "ipc":
        return {"type": kind}
    path = mode[3:] if mode.startswith("ns:") else mode if mode.startswith("/") else None
    if path is None:
        raise InvalidArgument(f"invalid --{flag} mode {mode!r}: expected private, host, ns:PATH"
                              + (" or none" if kind == "network" else ", shareable or none" if kind == "ipc" else ""))
    if not path.startswith("/") or not os.path.lexists(path):
        raise InvalidArgument(f"invalid --{flag} {mode!r}: namespace path {path!r} does not exist")
    return {"type": kind, "path": path}


def _memory_resources(opts: SpecOptions) -> dict[str, Any]:
    mem: dict[str, Any] = {}
    limit = parse_size(opts.memory, what="memory") if opts.memory not in (None, "") else 0
    if limit:
        if limit < MIN_MEMORY:
            raise InvalidArgument(f"invalid memory {opts.memory!r}: the minimum is 6m")
        mem["limit"] = limit
    if opts.memory_reservation not in (None, ""):
        res = parse_size(opts.memory_reservation, what="memory-reservation")
        if res:
            if limit and res > limit:
                raise InvalidArgument("memory-reservation must be smaller than memory")
            mem["reservation"] = res
    if opts.memory_swap not in (None, ""):
        if str(opts.memory_swap).strip() == "-1":
            swap = -1
        else:
            swap = parse_size(opts.memory_swap, what="memory-swap")
        if not limit:
            raise InvalidArgument("memory-swap needs a memory limit (--memory)")
        if swap != -1 and swap < limit:
            raise InvalidArgument("memory-swap must be at least as large as memory")
        if swap and host_swap_accounting():
            mem["swap"] = swap
    elif limit and host_swap_accounting():
        mem["swap"] = 2 * limit
    return mem


_CPUSET_RE = lazy(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def _cpu_resources(opts: SpecOptions) -> dict[str, Any]:
    cpu: dict[str, Any] = {}
    if opts.cpus not in (None, "", 0, "0"):
        try:
            cpus = float(opts.cpus)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InvalidArgument(f"invalid cpus {opts.cpus!r}: not a number") from None
        available = os.cpu_count() or 1
        if cpus < 0.01 or cpus > available:
            raise InvalidArgument(f"invalid cpus {opts.cpus!r}: range of CPUs is from 0.01 to {available}.00")
        cpu["period"] = CPU_PERIOD
        cpu["quota"] = int(round(cpus * CPU_PERIOD))
    if opts.cpu_shares not in (None, 0):
        shares = int(opts.cpu_shares)  # type: ignore[arg-type]
        if not 2 <= shares <= 262144:
            raise InvalidArgument(f"invalid cpu-shares {shares}: must be between 2 and 262144")
        cpu["shares"] = shares
    for key, value, flag in (("cpus", opts.cpuset_cpus, "cpuset-cpus"), ("mems", opts.cpuset_mems, "cpuset-mems")):
        if value:
            value = value.replace(" ", "")
            if not _CPUSET_RE.match(value):
                raise InvalidArgument(f"invalid {flag} {value!r}: expected a list like 0-2,4")
            cpu[key] = value
    return cpu


def _sysctls(opts: SpecOptions, netns_private: bool, netns_new: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    if netns_new:
        # podman's default: unprivileged ICMP sockets (ping without CAP_NET_RAW). Only for a
        # namespace of our own: a joined one is configured by its owner (runc refuses net.*
        # sysctls when the joined namespace is the host's).
        out["net.ipv4.ping_group_range"] = "0 0"
    for key, value in (opts.sysctls or {}).items():
        k = key.strip()
        if k in _IPC_SYSCTLS or k.startswith("fs.mqueue."):
            if opts.ipc == "host":
                raise InvalidArgument(f"sysctl {k} is not allowed with the host IPC namespace")
        elif k in _UTS_SYSCTLS:
            if opts.uts == "host":
                raise InvalidArgument(f"sysctl {k} is not allowed with the host UTS namespace")
        elif k.startswith("net."):
            if not netns_private:
                raise InvalidArgument(f"sysctl {k} is not allowed with the host network namespace")
        else:
            raise InvalidArgument(f"sysctl {k} is not allowed: it is not namespaced")
        out[k] = str(value)
    return out


def find_init(path: str | None = None) -> str:
    """The host path of catatonit: ``path`` if given, else the first of INIT_SEARCH_PATHS."""
    if path:
        if not os.path.isfile(path):
            raise InvalidArgument(f"init binary {path} does not exist")
        return path
    for candidate in INIT_SEARCH_PATHS:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise InvalidArgument("--init: catatonit not found (install catatonit or set init_path)")


# ---------------------------------------------------------------------------------------
# the generator
# ---------------------------------------------------------------------------------------

def _default_mounts(opts: SpecOptions) -> list[dict[str, Any]]:
    priv = opts.privileged
    sys_ro = [] if priv else ["ro"]
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    ]
    if opts.ipc == "host":
        mounts.append({"destination": "/dev/shm", "type": "bind", "source": "/dev/shm",
                       "options": ["rbind", "rprivate", "nosuid", "noexec", "nodev"]})
        if os.path.isdir("/dev/mqueue"):
            mounts.append({"destination": "/dev/mqueue", "type": "bind", "source": "/dev/mqueue",
                           "options": ["rbind", "rprivate", "nosuid", "noexec", "nodev"]})
        else:  # the host has none mounted: an mqueue mount in the host's IPC namespace is the same
            mounts.append({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                           "options": ["nosuid", "noexec", "nodev"]})
    else:
        if opts.ipc == "none":
            pass  # podman: a private IPC namespace without /dev/shm
        elif opts.shm_path:
            mounts.append(_bind_mount(opts.shm_path, "/dev/shm", ["rw", "noexec"], "shm path"))
        else:
            size = parse_size(opts.shm_size, what="shm-size") if opts.shm_size not in (None, "") else DEFAULT_SHM_SIZE
            if size <= 0:
                raise InvalidArgument("invalid shm-size: must be greater than 0")
            mounts.append({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                           "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={size}"]})
        mounts.append({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                       "options": ["nosuid", "noexec", "nodev"]})
    mounts.append({"destination": "/sys", "type": "sysfs", "source": "sysfs",
                   "options": ["nosuid", "noexec", "nodev", *sys_ro]})
    mounts.append({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                   "options": ["rprivate", "nosuid", "noexec", "nodev", "relatime", "ro" if not priv else "rw"]})
    return mounts


def generate_spec(opts: SpecOptions, image_config: Mapping[str, Any] | None, rootfs: str | None,
                  user_files: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """Build the OCI runtime ``config.json`` document (a dict) for one container.

    ``image_config`` is the OCI image configuration (whole, or only its ``config`` section);
    ``rootfs`` the host path of the mounted root filesystem, or None when it is not mounted:
    ``user_files`` (:func:`read_user_files`) then resolve the user, and ``root.path`` is the
    bundle's ``rootfs`` until the caller sets the mount's path. Raises
    :class:`InvalidArgument` for any malformed or impossible option, with a one-line message."""
    if rootfs is None:
        if user_files is None:
            raise InvalidArgument("generate_spec: an unmounted rootfs needs the image's user files")
        rootfs = "rootfs"
    elif not isinstance(rootfs, str) or not rootfs:
        raise InvalidArgument("generate_spec: rootfs must be a path")
    else:
        rootfs = os.path.realpath(rootfs)  # runc refuses a root.path that is (or goes through) a symlink
    cfg = _image_config(image_config)
    priv = bool(opts.privileged)

    # --- capabilities and user ------------------------------------------------------------
    caps = resolve_capabilities(opts.cap_add, opts.cap_drop, priv)
    user = resolve_user(rootfs, opts.user if opts.user not in (None, "") else cfg.get("User") or "", opts.group_add,
                        user_files)
    if user.uid == 0:
        capabilities = {"bounding": caps, "effective": caps, "permitted": caps,
                        "inheritable": [], "ambient": []}
    else:
        # A non-root process keeps only what was added explicitly, as ambient capabilities
        # (which need the same ones inheritable and permitted).
        explicit = {normalize_capability(c) for c in opts.cap_add} - {"ALL"}
        granted = _sort_caps(explicit & set(caps))
        capabilities = {"bounding": caps, "effective": granted, "permitted": granted,
                        "inheritable": granted, "ambient": granted}

    # --- process --------------------------------------------------------------------------
    args = resolve_command(opts.entrypoint, opts.command, cfg.get("Entrypoint"), cfg.get("Cmd"))
    init_host = find_init(opts.init_path) if opts.init else None
    if init_host:
        args = [INIT_PATH_IN_CONTAINER, "--", *args]
    if opts.hostname is not None:
        if opts.uts == "host" and opts.hostname != os.uname().nodename:  # the host's own name is no change
            raise InvalidArgument("cannot set the hostname when sharing the host's UTS namespace")
        if not opts.hostname or len(opts.hostname) > 64 or re.search(r"[\s/\0]", opts.hostname):
            raise InvalidArgument(f"invalid hostname {opts.hostname!r}")
    env = build_env(cfg.get("Env") if opts.image_env else None, opts.env,
                    hostname=opts.hostname, tty=opts.tty, home=user.home)
    cwd = opts.workdir if opts.workdir not in (None, "") else (cfg.get("WorkingDir") or "/")
    if not cwd.startswith("/"):
        raise InvalidArgument(f"invalid working directory {cwd!r}: must be an absolute path")
    cwd = os.path.normpath(cwd)
    if cwd.startswith("//"):
        cwd = "/" + cwd.lstrip("/")
    try:
        umask = int(str(opts.umask), 8)
    except ValueError:
        raise InvalidArgument(f"invalid umask {opts.umask!r}: expected an octal number") from None
    if not 0 <= umask <= 0o777:
        raise InvalidArgument(f"invalid umask {opts.umask!r}")

    process: dict[str, Any] = {
        "terminal": bool(opts.tty),
        "user": {"uid": user.uid, "gid": user.gid, "umask": umask},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": capabilities,
        "rlimits": build_rlimits(opts.ulimits),
        "noNewPrivileges": bool(opts.no_new_privileges),
    }
    if user.additional_gids:
        process["user"]["additionalGids"] = list(user.additional_gids)
    if opts.oom_score_adj is not None:
        adj = int(opts.oom_score_adj)
        if not -1000 <= adj <= 1000:
            raise InvalidArgument(f"invalid oom-score-adj {adj}: must be between -1000 and 1000")
        process["oomScoreAdj"] = adj

    # --- namespaces -----------------------------------------------------------------------
    namespaces = [{"type": "mount"}]
    for kind, mode, flag in (("pid", opts.pid, "pid"), ("network", opts.network, "network"),
                             ("ipc", opts.ipc, "ipc"), ("uts", opts.uts, "uts")):
        ns = _namespace(kind, mode, flag)
        if ns is not None:
            namespaces.append(ns)
    cgroupns = opts.cgroupns or ("private" if host_cgroup_v2() else "host")
    ns = _namespace("cgroup", cgroupns, "cgroupns")
    if ns is not None:
        namespaces.append(ns)
    netns_private = (opts.network or "private") != "host"
    netns_new = (opts.network or "private") in ("private", "none")

    # --- mounts ---------------------------------------------------------------------------
    mounts: dict[str, dict[str, Any]] = {}
    for m in _default_mounts(opts):
        mounts[m["destination"]] = m
    if opts.read_only and opts.read_only_tmpfs:
        for dest in ("/run", "/tmp", "/var/tmp"):
            mounts[dest] = {"destination": dest, "type": "tmpfs", "source": "tmpfs",
                            "options": ["rw", "rprivate", "nosuid", "nodev", "tmpcopyup"]}
    etc_opts = ["ro" if opts.read_only else "rw", "noexec"]
    for path, dest in ((opts.hosts_file, "/etc/hosts"), (opts.resolv_conf, "/etc/resolv.conf"),
                       (opts.hostname_file, "/etc/hostname")):
        if path:
            mounts[dest] = _bind_mount(path, dest, etc_opts, dest)
    if init_host:
        mounts[INIT_PATH_IN_CONTAINER] = {"destination": INIT_PATH_IN_CONTAINER, "type": "bind",
                                          "source": init_host, "options": ["bind", "private", "ro"]}
    for m in opts.image_volumes:
        m = _oci_mount(m)
        mounts[m["destination"]] = m
    user_mounts = [parse_volume(v) for v in opts.volumes]
    user_mounts += [parse_tmpfs(t) for t in opts.tmpfs]
    user_mounts += [parse_mount(m) if isinstance(m, str) else _oci_mount(m) for m in opts.mounts]
    seen_user: set[str] = set()
    for m in user_mounts:
        dest = m["destination"]
        if m.get("type") == "volume":
            raise InvalidArgument(f"invalid mount on {dest}: volumes are resolved before the spec is generated")
        if dest in seen_user:
            raise InvalidArgument(f"duplicate mount destination {dest}")
        seen_user.add(dest)
        mounts.pop(dest, None)
        mounts[dest] = m
    mount_list = sorted(mounts.values(), key=lambda m: _depth(m["destination"]))
    shared = any(p in ("shared", "rshared") for m in user_mounts for p in m.get("options", ()))

    # --- resources and devices ------------------------------------------------------------
    resources: dict[str, Any] = {}
    devices: list[dict[str, Any]] = []
    if priv:
        devices = host_devices()
        resources["devices"] = [{"allow": True, "access": "rwm"}]
    else:
        resources["devices"] = [dict(r) for r in _DEFAULT_DEVICE_RULES]
    for spec in opts.devices:
        devs, rules = parse_device(spec)
        have = {d["path"] for d in devices}
        devices += [d for d in devs if d["path"] not in have]
        if not priv:
            resources["devices"] += rules
    memory = _memory_resources(opts)
    if memory:
        resources["memory"] = memory
    cpu = _cpu_resources(opts)
    if cpu:
        resources["cpu"] = cpu
    if opts.pids_limit is None:
        if host_pids_controller():
            resources["pids"] = {"limit": DEFAULT_PIDS_LIMIT}
    elif int(opts.pids_limit) > 0:
        resources["pids"] = {"limit": int(opts.pids_limit)}
    elif int(opts.pids_limit) < -1:
        raise InvalidArgument(f"invalid pids-limit {opts.pids_limit}")

    # --- seccomp --------------------------------------------------------------------------
    seccomp_mode = (opts.seccomp or "default").strip()
    seccomp = None
    if seccomp_mode == "unconfined" or (priv and seccomp_mode == "default"):
        seccomp = None
    else:
        profile = load_seccomp_profile(None if seccomp_mode == "default" else seccomp_mode)
        seccomp = seccomp_to_oci(profile, caps)

    # --- assemble -------------------------------------------------------------------------
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "resources": resources,
    }
    if opts.cgroups_path:
        linux["cgroupsPath"] = opts.cgroups_path
    if seccomp is not None:
        linux["seccomp"] = seccomp
    if not priv:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
    if devices:
        linux["devices"] = devices
    sysctl = _sysctls(opts, netns_private, netns_new)
    if sysctl:
        linux["sysctl"] = sysctl
    if shared:
        linux["rootfsPropagation"] = "rshared"

    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": rootfs, "readonly": bool(opts.read_only)},
        "mounts": mount_list,
        "linux": linux,
    }
    if opts.hostname and opts.uts != "host":
        spec["hostname"] = opts.hostname
    annotations = {}
    for key, value in (opts.annotations or {}).items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise InvalidArgument(f"invalid annotation {key!r}")
        annotations[key] = value
    if annotations:
        spec["annotations"] = annotations
    return spec
