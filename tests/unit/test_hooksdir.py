"""hooks.d parsing and matching (libpod_core.hooksdir)."""

from __future__ import annotations

import json

import pytest

from libpod_core.hooksdir import HookError, apply_hooks, parse_hook_file, read_hooks_dirs


def write(d, name, doc):
    p = d / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


def hook(when, stages=("prestart",), path="/bin/true", args=None):
    return {"version": "1.0.0", "hook": {"path": path, "args": args or [path]}, "when": when, "stages": list(stages)}


SPEC = {"process": {"args": ["/bin/sh", "-c", "x"]}, "annotations": {"com.example.gpu": "yes", "other": "1"}}


def test_all_conditions_must_match(tmp_path):
    hf = parse_hook_file(str(write(tmp_path, "a.json", hook({"commands": ["sh$"], "annotations": {"gpu$": "^yes$"}}))))
    assert hf.matches(SPEC, SPEC["annotations"], False)
    assert not hf.matches(SPEC, {"com.example.gpu": "no"}, False)
    assert not hf.matches({"process": {"args": ["/bin/true"]}}, SPEC["annotations"], False)
    hb = parse_hook_file(str(write(tmp_path, "b.json", hook({"hasBindMounts": True}))))
    assert hb.matches(SPEC, {}, True) and not hb.matches(SPEC, {}, False)
    never = parse_hook_file(str(write(tmp_path, "c.json", hook({"always": False}))))
    assert not never.matches(SPEC, {}, True)


def test_later_dirs_override_and_order(tmp_path):
    d1, d2 = tmp_path / "1", tmp_path / "2"
    d1.mkdir()
    d2.mkdir()
    write(d1, "B.json", hook({"always": True}, args=["/bin/true", "b1"]))
    write(d1, "a.json", hook({"always": True}, args=["/bin/true", "a"]))
    write(d2, "B.json", hook({"always": True}, args=["/bin/true", "b2"]))
    write(d2, "notes.txt", "ignored")
    hooks = read_hooks_dirs([str(d1), str(d2), str(tmp_path / "missing")])
    assert [h.name for h in hooks] == ["a.json", "B.json"]
    assert hooks[1].hook["args"] == ["/bin/true", "b2"]


@pytest.mark.parametrize("doc, message", [
    ("{nope", "invalid JSON"),
    ({"version": "2.0.0", "hook": {"path": "/bin/true"}, "when": {"always": True}, "stages": ["prestart"]}, "version"),
    (hook({}), "at least one of"),
    (hook({"always": True}, stages=["later"]), "unknown stage"),
    (hook({"commands": ["("]}), "invalid regular expression"),
    (hook({"always": True}, path="/no/such/hook"), "does not exist"),
    (hook({"always": "yes"}), "must be a boolean"),
    (hook({"sometimes": True}), "unknown key"),
])
def test_malformed_files_name_the_file(tmp_path, doc, message):
    p = write(tmp_path, "bad.json", doc)
    with pytest.raises(HookError) as exc:
        read_hooks_dirs([str(tmp_path)])
    assert str(p) in exc.value.message and message in exc.value.message


def test_legacy_schema_any_condition(tmp_path):
    write(tmp_path, "old.json", {"hook": "/bin/true", "arguments": ["x"], "stage": ["poststop"], "cmds": ["^nomatch$"],
                                 "annotations": ["^yes$"]})
    (hf,) = read_hooks_dirs([str(tmp_path)])
    assert hf.hook == {"path": "/bin/true", "args": ["/bin/true", "x"]} and hf.stages == ["poststop"]
    assert hf.matches(SPEC, SPEC["annotations"], False)  # the annotation alone is enough
    assert not hf.matches(SPEC, {}, False)


def test_apply_hooks_with_plugins(tmp_path):
    write(tmp_path, "01.json", hook({"always": True}, stages=("prestart", "poststop")))

    class Relay:
        def oci_hooks(self, spec, container):
            return [{"createRuntime": [{"path": "/bin/echo", "args": ["echo", container["name"]]}]}, None]

        def oci_spec_modify(self, spec, container):
            spec["annotations"]["modified"] = "yes"

    spec = json.loads(json.dumps(SPEC))
    matched = apply_hooks(spec, {"name": "c1"}, dirs=[str(tmp_path)], plugin_hook=Relay())
    assert matched == ["01.json"]
    assert [h["path"] for h in spec["hooks"]["prestart"]] == ["/bin/true"]
    assert spec["hooks"]["poststop"][0]["path"] == "/bin/true"
    assert spec["hooks"]["createRuntime"][0]["args"] == ["echo", "c1"]
    assert spec["annotations"]["modified"] == "yes"
