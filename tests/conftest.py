"""Shared fixtures: an isolated kpod CLI per test, and clean-up checks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.dirname(sys.executable)
KPOD = os.path.join(VENV_BIN, "kpod")


class Kpod:
    """Runs the real ``kpod`` console script with its own roots and no config files."""

    def __init__(self, tmp_path, env=None):
        self.graphroot = str(tmp_path / "graph")
        self.runroot = str(tmp_path / "run")
        self.cni_dir = str(tmp_path / "cni")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KPOD_")}
        self.env["HOME"] = str(tmp_path / "home")
        self.env.update(env or {})
        # The user config keeps tests off the host's registries.conf, policy.json and
        # registries.d: no short name ever resolves to a registry on the internet.
        isolate_registries(tmp_path, os.path.join(self.env["HOME"], ".config", "kpod", "kpod.yaml"))
        # ... and its own default network: never the host's 10.88.0.0/16 and kpod0 (tests/helpers_net.py)
        from tests.helpers_net import claim_subnet, new_bridge

        self.subnet = claim_subnet()
        self.bridge = new_bridge()
        with open(os.path.join(self.env["HOME"], ".config", "kpod", "kpod.yaml"), "a") as f:
            f.write(f"default_subnet: {self.subnet}\ndefault_bridge: {self.bridge}\n")
        self.global_args = ["--root", self.graphroot, "--runroot", self.runroot, "--cni-config-dir", self.cni_dir]

    def network_leftovers(self, container_ids=()) -> list[str]:
        """The store's namespaces, veths, leases and iptables rules still on the host."""
        from tests.helpers_net import leftovers

        return leftovers(self.runroot, self.subnet, self.bridge, container_ids)

    def cleanup_network(self) -> list[str]:
        """End of test: report and remove what is left, delete the bridge, free the subnet."""
        from tests.helpers_net import delete_link, force_cleanup, release_subnet

        problems = self.network_leftovers()
        if problems:
            force_cleanup(self.runroot, self.subnet, self.bridge)
        delete_link(self.bridge)
        release_subnet(self.subnet)
        return problems

    def __call__(self, *args, check=True, input=None, timeout=120, env=None, global_args=True):
        cmd = [KPOD, *(self.global_args if global_args else []), *args]
        proc = subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            text=not isinstance(input, bytes),
            timeout=timeout,
            env={**self.env, **(env or {})},
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc


def isolate_registries(tmp_path, config_path):
    d = tmp_path / "containers"
    d.mkdir(parents=True, exist_ok=True)
    (d / "registries.conf").write_text("unqualified-search-registries = []\n")
    (d / "policy.json").write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')
    (d / "registries.d").mkdir(exist_ok=True)
    os.makedirs(os.path.dirname(config_path), exist_ok=True)
    with open(config_path, "w") as f:
        f.write(f"registries_conf: {d}/registries.conf\nsignature_policy: {d}/policy.json\n"
                f"registries_d: {d}/registries.d\n")


@pytest.fixture
def kpod(tmp_path):
    k = Kpod(tmp_path)
    yield k
    k.cleanup_network()


@pytest.fixture(scope="session", autouse=True)
def _host_network_state():
    """Put back what the CNI plugins change host-wide when this session was the first to:
    the shared iptables chains, net.ipv4.ip_forward and (IPv6 networks) IPv6 forwarding."""
    if os.geteuid() != 0:
        yield
        return
    from tests.helpers_net import delete_shared_chains, iptables_save

    baseline = {cmd: iptables_save((f"{cmd}-save",)) for cmd in ("iptables", "ip6tables")}  # per family
    knobs = ("/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding")
    saved = {}
    for knob in knobs:
        try:
            with open(knob) as f:
                saved[knob] = f.read().strip()
        except OSError:
            pass
    yield
    delete_shared_chains(baseline)
    for knob, value in saved.items():
        try:
            with open(knob) as f:
                if f.read().strip() == value:
                    continue
            with open(knob, "w") as f:
                f.write(value)
        except OSError:
            pass


def assert_one_error_line(proc, code=125, contains=None):
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    if contains:
        assert contains in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
