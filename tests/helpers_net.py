"""Host network state for tests that start containers: each test's own default network
(subnet and bridge), and checks/clean-up of what CNI leaves on the host.

Every kpod store a test makes (conftest's ``Kpod``) gets its own default network: a /24 in
10.214.0.0/15 that no host interface or other running test uses (claimed with a file in
/run/kpod-test-subnets, released at the end) and a bridge ``kt<pid>n<N>``. Traffic only
goes to 127.0.0.1 and inside the tests' namespaces.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import random
import re
import shlex
import subprocess
import tempfile

CLAIM_DIR = "/run/kpod-test-subnets" if os.access("/run", os.W_OK) else os.path.join(tempfile.gettempdir(),
                                                                                    "kpod-test-subnets")
TAG = f"kt{os.getpid() % 100000}"
_bridges = itertools.count(1)

#: chains the CNI plugins share between containers (created on first use, never removed by them)
SHARED_CHAINS = {
    "filter": ("CNI-FORWARD", "CNI-ADMIN"),
    "nat": ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK"),
}
IPV4_RE = re.compile(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b")


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout
    except OSError:  # no iproute2 / iptables (unprivileged runs)
        return ""


def _host_networks() -> list[ipaddress.IPv4Network]:
    out = _run(["ip", "-4", "-o", "addr", "show"])
    nets = []
    for m in re.finditer(r"inet (\S+)", out):
        nets.append(ipaddress.ip_interface(m.group(1)).network)
    out = _run(["ip", "-4", "route", "show"])
    for line in out.splitlines():
        dst = line.split()[0] if line.split() else ""
        if "/" in dst:
            try:
                nets.append(ipaddress.ip_network(dst, strict=False))
            except ValueError:
                pass
    return nets


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def claim_subnet() -> str:
    """A free /24 in 10.214.0.0/15, claimed for this process until :func:`release_subnet`."""
    os.makedirs(CLAIM_DIR, exist_ok=True)
    used = _host_networks()
    cands = [f"10.{a}.{b}.0/24" for a in (214, 215) for b in range(1, 255)]
    random.shuffle(cands)
    for cand in cands:
        net = ipaddress.ip_network(cand)
        if any(net.overlaps(u) for u in used):
            continue
        path = os.path.join(CLAIM_DIR, cand.replace("/", "_"))
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                owner = int(open(path).read().strip() or 0)
            except (OSError, ValueError):
                owner = 0
            if owner and _alive(owner):
                continue
            try:
                os.unlink(path)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except OSError:
                continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return cand
    raise RuntimeError("no free test subnet in 10.214.0.0/15")


def release_subnet(subnet: str) -> None:
    try:
        os.unlink(os.path.join(CLAIM_DIR, subnet.replace("/", "_")))
    except OSError:
        pass


def new_bridge() -> str:
    return f"{TAG}n{next(_bridges)}"


# ---------------------------------------------------------------------------------------
# what is on the host
# ---------------------------------------------------------------------------------------

def host_links(kind: str | None = None) -> set[str]:
    out = _run(["ip", "-o", "link", "show"] + (["type", kind] if kind else []))
    return {ln.split(":")[1].strip().split("@")[0] for ln in out.splitlines() if ":" in ln}


def bridge_ports(bridge: str) -> list[str]:
    try:
        return os.listdir(f"/sys/class/net/{bridge}/brif")
    except OSError:
        return []


def iptables_save(cmds: tuple[str, ...] = ("iptables-save", "ip6tables-save")) -> list[str]:
    lines = []
    if os.geteuid() != 0:
        return lines
    for cmd in cmds:
        out = _run([cmd])
        lines += [re.sub(r"\s*\[\d+:\d+\]", "", ln) for ln in out.splitlines() if ln and not ln.startswith("#")]
    return lines


def rules_mentioning(*needles: str) -> list[str]:
    return [ln for ln in iptables_save() if any(n and n in ln for n in needles)]


def delete_link(name: str) -> None:
    if os.path.exists(f"/sys/class/net/{name}"):
        _run(["ip", "link", "del", name])


def leftovers(runroot: str, subnet: str, bridge: str, container_ids=()) -> list[str]:
    """Everything of one kpod store's networking still on the host."""
    problems = []
    netns_dir = os.path.join(runroot, "netns")
    if os.path.isdir(netns_dir):
        left = [n for n in os.listdir(netns_dir) if not n.startswith(".")]
        if left:
            problems.append(f"network namespaces left in {netns_dir}: {left}")
    ports = bridge_ports(bridge)
    if ports:
        problems.append(f"veths still on bridge {bridge}: {ports}")
    ipam = os.path.join(runroot, "cni", "ipam")
    if os.path.isdir(ipam):
        for net in os.listdir(ipam):
            leases = [f for f in os.listdir(os.path.join(ipam, net)) if IPV4_RE.fullmatch(f) or ":" in f]
            if leases:
                problems.append(f"IPAM leases left in network {net}: {leases}")
    prefix = ".".join(subnet.split("/")[0].split(".")[:3]) + "."  # "10.214.7."
    rules = [ln for ln in iptables_save() if prefix in ln or any(cid in ln for cid in container_ids)]
    if rules:
        problems.append(f"iptables rules left: {rules}")
    with open("/proc/self/mountinfo") as f:
        mounts = [ln.split()[4] for ln in f if netns_dir in ln.split()[4]]
    if [m for m in mounts if m != netns_dir]:
        problems.append(f"namespace mounts left: {mounts}")
    return problems


def force_cleanup(runroot: str, subnet: str, bridge: str) -> None:
    """Last resort after a failed test: remove namespaces, rules and the bridge."""
    netns_dir = os.path.join(runroot, "netns")
    if os.path.isdir(netns_dir):
        for n in os.listdir(netns_dir):
            p = os.path.join(netns_dir, n)
            subprocess.run(["umount", "-l", p], capture_output=True)
            try:
                os.unlink(p)
            except OSError:
                pass
        subprocess.run(["umount", "-l", netns_dir], capture_output=True)
    prefix = ".".join(subnet.split("/")[0].split(".")[:3]) + "."
    for cmd in ("iptables",):
        for table in ("filter", "nat", "mangle"):
            rules = subprocess.run([cmd, "-t", table, "-S"], capture_output=True, text=True).stdout.splitlines()
            chains = set()
            for r in rules:
                args = shlex.split(r)
                if len(args) > 2 and args[0] == "-A" and prefix in r:
                    subprocess.run([cmd, "-t", table, "-D", *args[1:]], capture_output=True)
                    if args[-1].startswith("CNI-") and args[-2] == "-j" and args[-1] not in sum(SHARED_CHAINS.values(), ()):
                        chains.add(args[-1])
            for c in chains:
                subprocess.run([cmd, "-t", table, "-F", c], capture_output=True)
                subprocess.run([cmd, "-t", table, "-X", c], capture_output=True)
    for name in host_links("veth"):
        if os.path.exists(f"/sys/class/net/{bridge}/brif/{name}"):
            delete_link(name)
    delete_link(bridge)


def delete_shared_chains(baseline: list[str] | dict[str, list[str]]) -> None:
    """Remove the CNI plugins' shared chains if they were not there at *baseline* (the
    ``iptables_save`` lines, or per command: ``{"ip6tables": [...]}``) and no container
    (of anybody) uses them any more."""
    for cmd in ("iptables", "ip6tables"):
        base = baseline.get(cmd, []) if isinstance(baseline, dict) else baseline
        for table, chains in SHARED_CHAINS.items():
            rules = subprocess.run([cmd, "-t", table, "-S"], capture_output=True, text=True).stdout.splitlines()
            new = [c for c in chains if f"-N {c}" in rules and not any(ln.startswith(f":{c} ") for ln in base)]
            if not new:
                continue
            shared = sum(SHARED_CHAINS.values(), ())
            if any(IPV4_RE.search(r) or "id: " in r for r in rules if r.startswith("-A CNI-")) or any(
                    r.startswith("-N CNI-") and r.split()[1] not in shared for r in rules):
                continue  # someone's containers still use them
            for r in rules:
                args = shlex.split(r)
                if len(args) > 2 and args[0] == "-A" and args[1] not in new and args[-1] in new:
                    subprocess.run([cmd, "-t", table, "-D", *args[1:]], capture_output=True)
            for c in new:
                subprocess.run([cmd, "-t", table, "-F", c], capture_output=True)
            for c in new:
                subprocess.run([cmd, "-t", table, "-X", c], capture_output=True)
