"""Containers that join another container's namespaces depend on it (podman's dependency
tracking), through the real kpod CLI with runc and crun: inspect's Dependencies, rm refused
(with or without --force) until the dependents go, rm --depend, start of a dependent starts
what it joins, rm -a / prune / run --rm in the right order, and bad input that creates
nothing. Same isolation as tests/integration/test_containers.py."""

from __future__ import annotations

import os

import pytest

from tests.conftest import assert_one_error_line
from tests.integration.test_containers import ctr, ctr_rt  # noqa: F401 - the same fixtures

pytestmark = pytest.mark.integration

if os.geteuid() != 0:
    pytest.skip("container tests need root", allow_module_level=True)


def _names(k) -> list[str]:
    return sorted(k("ps", "-a", "--format", "{{.Names}}").stdout.split())


def test_dependents_block_removal(ctr_rt):
    k = ctr_rt
    k("run", "-d", "--name", "base", "busybox", "sleep", "1000")
    base = k.inspect("base", "{{.Id}}")
    k("create", "--name", "netdep", "--network", "container:base", "busybox", "sleep", "1000")
    k("create", "--name", "ipcdep", "--ipc", "container:base", "--uts", "container:base", "busybox", "sleep", "1000")
    netdep, ipcdep = k.inspect("netdep", "{{.Id}}"), k.inspect("ipcdep", "{{.Id}}")
    k("create", "--name", "nested", "--network", "container:netdep", "busybox", "true")
    nested = k.inspect("nested", "{{.Id}}")
    assert k.inspect("netdep")["Dependencies"] == [base]
    assert k.inspect("ipcdep")["Dependencies"] == [base]  # once, though two namespaces
    assert k.inspect("nested")["Dependencies"] == [netdep]
    assert k.inspect("base")["Dependencies"] == []
    # refused, --force or not, and nothing is stopped
    msg = f"container {base} has dependent containers which must be removed before it: {netdep}, {ipcdep}"
    assert_one_error_line(k("rm", "base", check=False), 2, "as it is running")
    assert_one_error_line(k("rm", "-f", "base", check=False), 125, msg)
    assert_one_error_line(k("rm", "-f", "-t", "0", base[:12], check=False), 125, msg)
    assert k.state("base") == "running"
    k("stop", "-t", "0", "base")
    assert_one_error_line(k("rm", "base", check=False), 125, msg)
    assert _names(k) == ["base", "ipcdep", "nested", "netdep"]
    # starting a dependent starts what it joins first (here two levels)
    k("start", "nested")
    assert k.state("base") == "running" and k.state("netdep") == "running"
    k("wait", "nested")
    # --depend: dependents first, recursively; running ones still need --force (the exited
    # one it reached first is gone)
    p = k("rm", "--depend", "base", check=False)
    assert_one_error_line(p, 2, f"cannot remove container {netdep} as it is running")
    assert _names(k) == ["base", "ipcdep", "netdep"]
    k("create", "--name", "nested", "--network", "container:netdep", "busybox", "true")
    nested = k.inspect("nested", "{{.Id}}")
    p = k("rm", "-f", "-t", "0", "--depend", "base")
    lines = p.stdout.split()
    assert set(lines) == {nested, netdep, ipcdep, "base"} and lines[-1] == "base"
    assert lines.index(nested) < lines.index(netdep)
    assert _names(k) == []


def test_dependencies_and_removal_order(ctr):
    k = ctr
    # named together: dependents are removed first, whatever the order on the command line
    k("create", "--name", "a", "busybox", "true")
    k("create", "--name", "b", "--network", "container:a", "busybox", "true")
    assert k("rm", "a", "b").stdout.split() == ["b", "a"]
    # rm -a (the finalizer's rm -fa too): newest first
    k("run", "-d", "--name", "a", "busybox", "sleep", "1000")
    k("run", "-d", "--name", "b", "--pid", "container:a", "busybox", "sleep", "1000")
    k("rm", "-fa", "-t", "0")
    assert _names(k) == []
    # prune: the exited dependents go, then what they joined
    k("run", "-d", "--name", "a", "busybox", "sleep", "1000")
    k("run", "--name", "b", "--network", "container:a", "busybox", "true")
    k("run", "--name", "c", "--ipc", "container:a", "busybox", "true")
    k("stop", "-t", "0", "a")
    out = k("container", "prune", "-f").stdout.split()
    assert len(out) == 3 and _names(k) == []
    # a --rm container others joined stays (exited) when it exits, until they are gone
    k("run", "-d", "--rm", "--name", "r", "busybox", "sleep", "1000")
    k("run", "-d", "--name", "j", "--network", "container:r", "busybox", "sleep", "1000")
    k("stop", "-t", "0", "r")
    k.wait_for(lambda: k.state("r") == "exited", what="r to exit")
    assert _names(k) == ["j", "r"]
    k("rm", "-f", "-t", "0", "j")
    k("rm", "r")
    assert _names(k) == []


def test_join_unknown_container(ctr):
    k = ctr
    for flag in ("--network", "--ipc", "--uts", "--pid"):
        p = k("create", flag, "container:nosuch", "busybox", check=False)
        assert_one_error_line(p, 125, 'no container with name or ID "nosuch" found')
        p = k("run", "--rm", flag, "container:nosuch", "busybox", "true", check=False)
        assert_one_error_line(p, 125, 'no container with name or ID "nosuch" found')
    assert k("ps", "-aq").stdout == ""


def test_namespace_joins_start_what_they_join(ctr_rt):
    """--pid/--ipc/--uts container:X accept an X that is not running, as podman and as
    --network container:X: starting the joiner starts X first, then joins its namespaces."""
    k = ctr_rt
    k("create", "--name", "target", "--hostname", "tgt", "busybox", "sleep", "1000")
    k("run", "-d", "--name", "gone", "busybox", "sleep", "1000")
    k("stop", "-t", "0", "gone")
    k("create", "--name", "pidj", "--pid", "container:target", "busybox", "ps", "-o", "comm")
    k("create", "--name", "ipcj", "--ipc", "container:gone", "--uts", "container:gone", "busybox", "hostname")
    assert k.state("target") == "created" and k.state("gone") == "exited"
    # start -a of the joiner starts the target first: the joiner sees the target's sleep
    out = k("start", "-a", "pidj").stdout.split()
    assert "sleep" in out and "ps" in out
    assert k.state("target") == "running"
    # an exited target is started again; the joiner has its hostname
    assert k("start", "-a", "ipcj").stdout.strip() == k.inspect("gone", "{{.Config.Hostname}}")
    assert k.state("gone") == "running"
    # run joins a target that is not running the same way
    k("stop", "-t", "0", "target")
    out = k("run", "--rm", "--pid", "container:target", "busybox", "ps", "-o", "comm").stdout.split()
    assert "sleep" in out and k.state("target") == "running"
    k("rm", "-f", "-t", "0", "pidj", "ipcj", "target", "gone")
