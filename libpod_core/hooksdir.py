"""OCI hooks: hooks.d directories (the 1.0.0 JSON schema) and the plugin hooks.

A hooks.d directory holds ``*.json`` files, each one hook::

    {
      "version": "1.0.0",
      "hook": {"path": "/usr/libexec/oci/hooks.d/my-hook", "args": ["my-hook", "prestart"],
               "env": ["KEY=value"], "timeout": 5},
      "when": {"always": true, "annotations": {"^com\\.example\\.gpu$": "^yes$"},
               "commands": [".*/init$"], "hasBindMounts": true},
      "stages": ["prestart", "poststop"]
    }

Rules, as in containers/common's ``pkg/hooks`` (oci-hooks(5)):

* directories are read in order; a file in a later directory replaces the file with the same
  name in an earlier one; a missing directory is skipped;
* matching hooks are injected in the order of their lower-cased file names;
* ``when`` needs at least one condition and *all* the conditions given must match:
  ``always`` true; every ``annotations`` key/value regex pair matches some annotation;
  ``process.args[0]`` matches one of ``commands``; ``hasBindMounts`` true and the caller asked
  for bind mounts (``-v``);
* regular expressions are anchored nowhere (``re.search``), like Go's ``regexp.MatchString``;
* a malformed file is an error naming the file;
* the deprecated 0.1.0 schema (``"hook": "/path"``, ``arguments``, ``stages``, ``cmds``,
  ``annotations``, ``hasbindmounts``) is read too; there any condition matching is enough.

After the files, every general plugin's :func:`~libpod_core.hookspecs.oci_hooks` results are
appended, then :func:`~libpod_core.hookspecs.oci_spec_modify` may change the spec in place.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Iterable, Mapping, Sequence

from .errors import ConfigError, KpodError
from .plain import FRESH

STAGES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
VERSION = "1.0.0"
_WHEN_KEYS = {"always", "annotations", "commands", "hasBindMounts"}
_HOOK_KEYS = {"path", "args", "env", "timeout"}


class HookError(ConfigError):
    """A hooks.d file is malformed."""


class HookFile:
    """One parsed hooks.d file.

    (A plain class with what ``@dataclass`` generated — init, repr, eq — because ``run``
    imports this module and the dataclass machinery costs start-up time in every process.)"""

    __hash__ = None  # type: ignore[assignment]
    _FIELDS = ("path", "hook", "stages", "always", "annotations", "commands", "has_bind_mounts",
               "any_condition", "_ann_re", "_cmd_re")

    def __init__(self, path: str, hook: dict[str, Any], stages: list[str], always: bool | None = None,
                 annotations: dict[str, str] = FRESH, commands: list[str] = FRESH,
                 has_bind_mounts: bool | None = None, any_condition: bool = False,
                 _ann_re: list[tuple[re.Pattern, re.Pattern]] = FRESH, _cmd_re: list[re.Pattern] = FRESH) -> None:
        self.path = path
        self.hook = hook
        self.stages = stages
        self.always = always
        self.annotations = {} if annotations is FRESH else annotations
        self.commands = [] if commands is FRESH else commands
        self.has_bind_mounts = has_bind_mounts
        #: 0.1.0 (legacy) files inject when *any* condition matches
        self.any_condition = any_condition
        self._ann_re = [] if _ann_re is FRESH else _ann_re
        self._cmd_re = [] if _cmd_re is FRESH else _cmd_re

    def __repr__(self) -> str:
        shown = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._FIELDS if not f.startswith("_"))
        return f"{self.__class__.__qualname__}({shown})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return all(getattr(self, f) == getattr(other, f) for f in self._FIELDS)
        return NotImplemented

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    def matches(self, spec: Mapping[str, Any], annotations: Mapping[str, str], has_bind_mounts: bool) -> bool:
        """True when every condition set in ``when`` matches (any, for 0.1.0 files)."""
        if self.any_condition:
            args = (spec.get("process") or {}).get("args") or []
            cmd = args[0] if args else ""
            return bool(
                self.always
                or (self.has_bind_mounts and has_bind_mounts)
                or any(kre.search(k) and vre.search(v) for kre, vre in self._ann_re for k, v in annotations.items())
                or any(r.search(cmd) for r in self._cmd_re)
            )
        if self.always is not None and not self.always:
            return False
        if self.has_bind_mounts is not None and self.has_bind_mounts and not has_bind_mounts:
            return False
        for kre, vre in self._ann_re:
            if not any(kre.search(k) and vre.search(v) for k, v in annotations.items()):
                return False
        if self._cmd_re:
            args = (spec.get("process") or {}).get("args") or []
            cmd = args[0] if args else ""
            if not any(r.search(cmd) for r in self._cmd_re):
                return False
        return True


def _fail(path: str, msg: str) -> HookError:
    return HookError(f"OCI hook file {path}: {msg}")


def _compile(path: str, pattern: Any, what: str) -> re.Pattern:
    if not isinstance(pattern, str):
        raise _fail(path, f"{what} must be a string regular expression, got {pattern!r}")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise _fail(path, f"invalid regular expression {pattern!r} in {what}: {exc}") from None


def parse_hook_file(path: str, data: bytes | str | None = None) -> HookFile:
    """Parse and validate one hooks.d file (1.0.0 schema)."""
    if data is None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise _fail(path, exc.strerror or str(exc)) from None
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise _fail(path, f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _fail(path, "must be a JSON object")
    if "version" not in doc and isinstance(doc.get("hook"), str):
        return _parse_legacy(path, doc)
    version = doc.get("version")
    if version != VERSION:
        raise _fail(path, f"unsupported version {version!r} (kpod reads the {VERSION} schema)")
    hook = doc.get("hook")
    if not isinstance(hook, dict):
        raise _fail(path, "'hook' must be an object with at least 'path'")
    unknown = set(hook) - _HOOK_KEYS
    if unknown:
        raise _fail(path, f"unknown key(s) in 'hook': {', '.join(sorted(unknown))}")
    hpath = hook.get("path")
    if not isinstance(hpath, str) or not hpath.startswith("/"):
        raise _fail(path, f"'hook.path' must be an absolute path, got {hpath!r}")
    if not os.path.exists(hpath):
        raise _fail(path, f"hook program {hpath} does not exist")
    for key in ("args", "env"):
        if key in hook and (not isinstance(hook[key], list) or not all(isinstance(x, str) for x in hook[key])):
            raise _fail(path, f"'hook.{key}' must be a list of strings")
    if "timeout" in hook and (isinstance(hook["timeout"], bool) or not isinstance(hook["timeout"], int)
                              or hook["timeout"] <= 0):
        raise _fail(path, "'hook.timeout' must be a positive integer (seconds)")
    stages = doc.get("stages")
    if not isinstance(stages, list) or not stages or not all(isinstance(s, str) for s in stages):
        raise _fail(path, "'stages' must be a non-empty list of strings")
    for s in stages:
        if s not in STAGES:
            raise _fail(path, f"unknown stage {s!r} (known: {', '.join(STAGES)})")
    when = doc.get("when")
    if not isinstance(when, dict):
        raise _fail(path, "'when' must be an object")
    unknown = set(when) - _WHEN_KEYS
    if unknown:
        raise _fail(path, f"unknown key(s) in 'when': {', '.join(sorted(unknown))}")
    if not any(k in when for k in _WHEN_KEYS):
        raise _fail(path, "'when' needs at least one of always, annotations, commands, hasBindMounts")
    hf = HookFile(path=path, hook=dict(hook), stages=list(stages))
    if "always" in when:
        if not isinstance(when["always"], bool):
            raise _fail(path, "'when.always' must be a boolean")
        hf.always = when["always"]
    if "hasBindMounts" in when:
        if not isinstance(when["hasBindMounts"], bool):
            raise _fail(path, "'when.hasBindMounts' must be a boolean")
        hf.has_bind_mounts = when["hasBindMounts"]
    if "annotations" in when:
        ann = when["annotations"]
        if not isinstance(ann, dict):
            raise _fail(path, "'when.annotations' must be an object of regular expressions")
        hf.annotations = dict(ann)
        hf._ann_re = [(_compile(path, k, "when.annotations key"), _compile(path, v, "when.annotations value"))
                      for k, v in ann.items()]
    if "commands" in when:
        cmds = when["commands"]
        if not isinstance(cmds, list):
            raise _fail(path, "'when.commands' must be a list of regular expressions")
        hf.commands = list(cmds)
        hf._cmd_re = [_compile(path, c, "when.commands") for c in cmds]
    return hf


def _legacy_list(path: str, doc: dict, plural: str, singular: str) -> list[str]:
    if plural != singular and plural in doc and singular in doc:
        raise _fail(path, f"both {plural!r} and {singular!r} are set")
    value = doc.get(plural, doc.get(singular, []))
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise _fail(path, f"{plural!r} must be a list of strings")
    return value


def _parse_legacy(path: str, doc: dict) -> HookFile:
    """The deprecated 0.1.0 schema (oci-hooks(5)): any condition matching injects the hook."""
    hpath = doc["hook"]
    if not hpath.startswith("/") or not os.path.exists(hpath):
        raise _fail(path, f"hook program {hpath!r} must be an absolute path that exists")
    arguments = _legacy_list(path, doc, "arguments", "arguments")
    stages = _legacy_list(path, doc, "stages", "stage")
    if not stages:
        raise _fail(path, "'stages' must list at least one stage")
    for st in stages:
        if st not in STAGES:
            raise _fail(path, f"unknown stage {st!r} (known: {', '.join(STAGES)})")
    cmds = _legacy_list(path, doc, "cmds", "cmd")
    anns = _legacy_list(path, doc, "annotations", "annotation")
    hbm = doc.get("hasbindmounts")
    if hbm is not None and not isinstance(hbm, bool):
        raise _fail(path, "'hasbindmounts' must be a boolean")
    hf = HookFile(path=path, hook={"path": hpath, "args": [hpath, *arguments]}, stages=stages, any_condition=True,
                  has_bind_mounts=hbm, commands=cmds)
    hf._cmd_re = [_compile(path, c, "cmds") for c in cmds]
    hf._ann_re = [(re.compile(".*"), _compile(path, a, "annotations")) for a in anns]
    hf.always = not (cmds or anns or hbm)
    return hf


def read_hooks_dirs(dirs: Sequence[str]) -> list[HookFile]:
    """Every hook file of *dirs* (later directories replace same-named files), in
    injection order (lower-cased file name)."""
    chosen: dict[str, str] = {}
    for d in dirs:
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            continue
        except NotADirectoryError:
            raise ConfigError(f"hooks directory {d} is not a directory") from None
        except OSError as exc:
            raise ConfigError(f"hooks directory {d}: {exc.strerror}") from None
        for n in names:
            if n.endswith(".json") and os.path.isfile(os.path.join(d, n)):
                chosen[n] = os.path.join(d, n)
    return [parse_hook_file(chosen[n]) for n in sorted(chosen, key=lambda s: (s.lower(), s))]


def _valid_hook(h: Any, where: str) -> dict[str, Any]:
    if not isinstance(h, dict) or not isinstance(h.get("path"), str) or not h["path"].startswith("/"):
        raise KpodError(f"{where}: an OCI hook must be a dict with an absolute 'path', got {h!r}")
    return dict(h)


def add_hook(spec: dict[str, Any], stage: str, hook: Mapping[str, Any]) -> None:
    if stage not in STAGES:
        raise KpodError(f"unknown OCI hook stage {stage!r} (known: {', '.join(STAGES)})")
    spec.setdefault("hooks", {}).setdefault(stage, []).append(dict(hook))


def apply_hooks(spec: dict[str, Any], container: Mapping[str, Any], *, dirs: Iterable[str] = (),
                has_bind_mounts: bool = False, plugin_hook=None) -> list[str]:
    """Inject matching hooks.d hooks, then the plugins' ``oci_hooks``, then run the plugins'
    ``oci_spec_modify``. Returns the names of the hook files that matched."""
    annotations = dict(spec.get("annotations") or {})
    matched = []
    for hf in read_hooks_dirs(list(dirs)):
        if hf.matches(spec, annotations, has_bind_mounts):
            matched.append(hf.name)
            for stage in hf.stages:
                add_hook(spec, stage, hf.hook)
    if plugin_hook is not None:
        for result in plugin_hook.oci_hooks(spec=spec, container=dict(container)) or []:
            if not result:
                continue
            if not isinstance(result, dict):
                raise KpodError(f"a plugin's oci_hooks returned {type(result).__name__}, expected a dict of stages")
            for stage, hooks in result.items():
                for h in hooks or []:
                    add_hook(spec, stage, _valid_hook(h, "oci_hooks"))
        plugin_hook.oci_spec_modify(spec=spec, container=dict(container))
    return matched
