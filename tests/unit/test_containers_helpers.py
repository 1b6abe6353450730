"""Pure helpers of the container code: option parsers, podman's humanised output, conmon's
command line and error classification."""

from __future__ import annotations

import pytest

from libpod_core import conmon
from libpod_core.cli.cmd_containers import parse_detach_keys, parse_duration, parse_time
from libpod_core.containers import (
    display_state,
    human_duration,
    human_size,
    parse_env_file,
    parse_restart,
    parse_security_opts,
    rfc3339,
    status_text,
)
from libpod_core.errors import InvalidArgument


def test_parse_restart():
    assert parse_restart("no") == ("no", 0)
    assert parse_restart(None) == ("no", 0)
    assert parse_restart("always") == ("always", 0)
    assert parse_restart("on-failure") == ("on-failure", 0)
    assert parse_restart("on-failure:3") == ("on-failure", 3)
    for bad in ("sometimes", "always:2", "on-failure:x", "on-failure:-1"):
        with pytest.raises(InvalidArgument):
            parse_restart(bad)


def test_parse_env_file(tmp_path, monkeypatch):
    monkeypatch.setenv("FROM_HOST", "h")
    monkeypatch.delenv("UNSET_ONE", raising=False)
    p = tmp_path / "env"
    p.write_text("# c\n\nA=1\nB = x\nFROM_HOST\nUNSET_ONE\nC=a=b\n")
    with pytest.raises(InvalidArgument):
        parse_env_file(str(p))
    p.write_text("# c\n\nA=1\nFROM_HOST\nUNSET_ONE\nC=a=b\n")
    assert parse_env_file(str(p)) == ["A=1", "FROM_HOST=h", "C=a=b"]
    with pytest.raises(InvalidArgument):
        parse_env_file(str(tmp_path / "missing"))


def test_parse_security_opts():
    assert parse_security_opts(["no-new-privileges"]) == {"no_new_privileges": True, "seccomp": None}
    assert parse_security_opts(["no-new-privileges=false", "seccomp=unconfined"]) == {
        "no_new_privileges": False, "seccomp": "unconfined"}
    assert parse_security_opts(["seccomp:/p.json", "label=disable"])["seccomp"] == "/p.json"
    for bad in ("apparmor=foo", "bogus", "seccomp="):
        with pytest.raises(InvalidArgument):
            parse_security_opts([bad])


@pytest.mark.parametrize("seconds, text", [
    (0.2, "Less than a second"), (1, "1 second"), (42, "42 seconds"), (61, "About a minute"),
    (300, "5 minutes"), (3600, "About an hour"), (5 * 3600, "5 hours"), (3 * 86400, "3 days"),
    (20 * 86400, "2 weeks"), (90 * 86400, "3 months"), (800 * 86400, "2 years"),
])
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


def test_status_and_sizes():
    assert status_text("running", None, 100.0, None, now=103.0) == "Up 3 seconds"
    assert status_text("exited", 0, 100.0, 110.0, now=112.0) == "Exited (0) 2 seconds ago"
    assert status_text("stopped", 137, 100.0, 110.0, now=110.5) == "Exited (137) Less than a second ago"
    assert status_text("configured", None, None, None) == "Created"
    assert status_text("paused", None, 1.0, None) == "Paused"
    assert human_size(0) == "0B" and human_size(1234) == "1.234kB" and human_size(2_500_000) == "2.5MB"
    assert display_state("configured") == "created" and display_state("stopped") == "exited"
    assert rfc3339(None) == "0001-01-01T00:00:00Z"
    stamp = rfc3339(1700000000.5)
    assert stamp[:4] == "2023" and ".500000000" in stamp and stamp[-3] == ":"


def test_detach_keys_and_times():
    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert parse_detach_keys("") == b""
    assert parse_detach_keys("a,ctrl-[") == b"a\x1b"
    with pytest.raises(InvalidArgument):
        parse_detach_keys("ctrl-pp")
    assert parse_duration("1h30m") == 5400 and parse_duration("250ms") == 0.25
    with pytest.raises(InvalidArgument):
        parse_duration("10 minutes")
    assert parse_time("10m", now=1000.0) == 400.0
    assert parse_time("1700000000") == 1700000000.0
    assert parse_time("2023-11-14T22:13:20Z") == 1700000000.0
    assert parse_time("2023-11-14T22:13:20.25Z") == 1700000000.25
    with pytest.raises(InvalidArgument):
        parse_time("yesterday")


def test_conmon_command_line_and_errors():
    o = conmon.ConmonOptions(conmon_path="/usr/bin/conmon", container_id="c" * 64, name="n", runtime_path="/usr/sbin/runc",
                             runtime_args=["--root", "/r"], bundle="/b", pid_file="/b/pidfile", conmon_pid_file="/b/conmon.pid",
                             log_path="/s/ctr.log", exit_dir="/x", persist_dir="/b", socket_dir="/sock",
                             exit_command=["/k/kpod", "--root", "/g", "container", "cleanup", "c" * 64], tty=True)
    argv = o.argv()
    assert argv[:3] == ["/usr/bin/conmon", "--api-version", "1"]
    assert argv[argv.index("--runtime-arg") + 1] == "--root" and "-t" in argv and "-i" not in argv
    assert argv[argv.index("--exit-command") + 1] == "/k/kpod"
    assert argv.count("--exit-command-arg") == 5
    assert argv[argv.index("-l") + 1] == "k8s-file:/s/ctr.log"
    runc_nf = 'runc create failed: unable to start container process: exec: "/x": stat /x: no such file or directory'
    assert conmon.classify_runtime_error(runc_nf) == 127
    assert conmon.classify_runtime_error("executable file `/x` not found in $PATH: No such file or directory") == 127
    assert conmon.classify_runtime_error('exec: "/etc/passwd": permission denied') == 126
    assert conmon.classify_runtime_error("open executable: Operation not permitted") == 126
    assert conmon.classify_runtime_error("cgroup setup failed") == 125
    # a namespace to join that is gone, a cgroup write refused: the engine's failure
    assert conmon.classify_runtime_error("runc create failed: unable to create new parent process: namespace "
                                         "path: lstat /proc/1/ns/ipc: no such file or directory") == 125
    assert conmon.classify_runtime_error("write /sys/fs/cgroup/x/cpu.max: permission denied") == 125
    assert conmon._clean_message('time="x" level=error msg="runc create failed: \\"quoted\\""') == 'runc create failed: "quoted"'


def test_create_options_is_what_the_dataclass_was():
    """CreateOptions is a plain class (start-up cost); it must keep the dataclass's behaviour:
    fields in order, fresh list/dict defaults, an explicit None kept, asdict's deep copy."""
    import inspect

    from libpod_core.containers import CreateOptions

    assert list(inspect.signature(CreateOptions).parameters) == list(CreateOptions.FIELDS)
    a, b = CreateOptions("img"), CreateOptions(image="img")
    assert a.env == [] and a.labels == {} and a.env is not b.env and a.labels is not b.labels
    assert a.restart == "no" and a.pull == "missing" and a.name is None and a.tty is False
    assert CreateOptions("img", env=None).env is None
    with pytest.raises(TypeError):
        CreateOptions("img", no_such_option=1)  # type: ignore[call-arg]
    o = CreateOptions("img", ["sh"], env=["A=1"], networks={"n": {"aliases": ["x"]}}, ports=[{"container_port": 80}])
    d = o.as_dict()
    assert list(d) == list(CreateOptions.FIELDS)
    assert d["command"] == ["sh"] and d["networks"] == {"n": {"aliases": ["x"]}}
    assert d["networks"]["n"]["aliases"] is not o.networks["n"]["aliases"] and d["env"] is not o.env
    o.extra = "kept"  # type: ignore[attr-defined]
    c = o.copy()
    assert type(c) is CreateOptions and vars(c) == vars(o)
    assert c.ports[0] is not o.ports[0] and c.networks["n"] is not o.networks["n"]
    assert o != c and o == o  # identity equality, as with eq=False
