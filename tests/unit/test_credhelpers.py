"""Credential helpers: credHelpers / credsStore lookup order, the helper protocol, writes
through helpers, and the failures (missing, crashing, hanging, garbling helper)."""

from __future__ import annotations

import base64
import json
import os
import time

import pytest

from libpod_core.errors import ConfigError, InvalidArgument, NotFound
from libpod_core.registry import auth
from tests.helpers_credhelpers import NAME, FakeHelper

PROG = f"docker-credential-{NAME}"


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(data if isinstance(data, str) else json.dumps(data))


def read(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture
def helper(tmp_path):
    return FakeHelper(tmp_path / "helper")


@pytest.fixture
def env(tmp_path, helper):
    home = tmp_path / "home"
    home.mkdir()
    return {"HOME": str(home), "XDG_RUNTIME_DIR": str(tmp_path / "run"), "PATH": helper.env_path}


@pytest.fixture
def rw(env):
    return auth.write_path(environ=env)


@pytest.fixture
def docker_cfg(env):
    return os.path.join(env["HOME"], ".docker", "config.json")


# ------------------------------------------------------------------------------ lookup


def test_credhelpers_entry_uses_the_helper(env, rw, helper):
    helper.put("r.example:5000", "alice", "s3cret")
    write(rw, {"credHelpers": {"r.example:5000": NAME}})
    c = auth.get_credentials("r.example:5000/ns/img:tag", environ=env)
    assert (c.username, c.password, c.identity_token) == ("alice", "s3cret", None)
    assert PROG in c.source
    # the helper is asked for the registry, never a namespaced key
    assert helper.calls() == ["get r.example:5000"]
    assert "s3cret" not in repr(c)


def test_credhelpers_shadow_the_same_files_auths(env, rw, helper):
    # containers/image: a credHelpers entry answers for the file; the file's auths are skipped
    write(rw, {"credHelpers": {"r.example": NAME}, "auths": {"r.example": {"auth": b64("file:pw")}}})
    assert auth.get_credentials("r.example/x", environ=env) is None
    helper.put("r.example", "helperuser", "hp")
    assert auth.get_credentials("r.example/x", environ=env).username == "helperuser"


def test_helper_not_found_falls_through_to_next_file(env, rw, helper, docker_cfg):
    write(rw, {"credHelpers": {"r.example": NAME}})
    write(docker_cfg, {"auths": {"r.example": {"auth": b64("docker:pw")}}})
    c = auth.get_credentials("r.example", environ=env)
    assert c.username == "docker" and c.source == docker_cfg


def test_docker_config_credhelpers_are_read(env, helper, docker_cfg):
    helper.put("r.example", "bob", "pw")
    write(docker_cfg, {"credHelpers": {"r.example": NAME}})
    assert auth.get_credentials("r.example/a/b", environ=env).username == "bob"
    # an earlier file's auths entry wins over a later file's helper
    write(auth.write_path(environ=env), {"auths": {"r.example": {"auth": b64("first:pw")}}})
    assert auth.get_credentials("r.example/a/b", environ=env).username == "first"
    # ... and DOCKER_CONFIG moves the file
    other = os.path.join(env["HOME"], "dk")
    write(os.path.join(other, "config.json"), {"credHelpers": {"s.example": NAME}})
    helper.put("s.example", "carol", "pw")
    assert auth.get_credentials("s.example", environ={**env, "DOCKER_CONFIG": other}).username == "carol"


def test_credsstore_is_the_default_after_auths(env, rw, helper, docker_cfg):
    write(docker_cfg, {"credsStore": NAME})
    write(rw, {"auths": {"a.example": {"auth": b64("fileuser:pw")}}})
    helper.put("a.example", "storeuser", "x")
    helper.put("b.example", "storeuser", "y")
    assert auth.get_credentials("a.example/img", environ=env).username == "fileuser"
    c = auth.get_credentials("b.example/img", environ=env)
    assert (c.username, c.password) == ("storeuser", "y")
    assert auth.get_credentials("c.example/img", environ=env) is None
    # credHelpers win over credsStore
    write(docker_cfg, {"credsStore": "nonexistent-store", "credHelpers": {"b.example": NAME}})
    assert auth.get_credentials("b.example", environ=env).username == "storeuser"


def test_token_username_is_an_identity_token(env, rw, helper):
    helper.put("r.example", "<token>", "refresh-me")
    write(rw, {"credHelpers": {"r.example": NAME}})
    c = auth.get_credentials("r.example", environ=env)
    assert c.username == "" and c.password == "" and c.identity_token == "refresh-me"


def test_creds_flag_bypasses_helpers(env, rw):
    write(rw, {"credHelpers": {"r.example": "absent"}, "credsStore": "absent"})
    assert auth.get_credentials("r.example", creds="u:p", environ=env).username == "u"


def test_bad_credhelpers_values_name_the_file(env, rw):
    write(rw, {"credHelpers": {"r.example": 3}})
    with pytest.raises(ConfigError, match=f'{rw}.*credHelpers'):
        auth.get_credentials("r.example", environ=env)
    write(rw, {"credHelpers": []})
    with pytest.raises(ConfigError, match="credHelpers"):
        auth.get_credentials("r.example", environ=env)
    write(rw, {"credsStore": 1})
    with pytest.raises(ConfigError, match="credsStore"):
        auth.get_credentials("r.example", environ=env)


# ------------------------------------------------------------------------------ failures


def test_missing_helper(env, rw):
    write(rw, {"credHelpers": {"r.example": "nosuchhelper"}})
    with pytest.raises(auth.CredentialHelperError, match="docker-credential-nosuchhelper not found in \\$PATH"):
        auth.get_credentials("r.example", environ=env)
    write(rw, {"credHelpers": {"r.example": "../evil"}})
    with pytest.raises(auth.CredentialHelperError, match="invalid credential helper name"):
        auth.get_credentials("r.example", environ=env)


@pytest.mark.parametrize("mode,msg", [("crash", "exit status 3"), ("garbage", "invalid JSON answer")])
def test_crashing_or_garbling_helper(env, rw, helper, mode, msg):
    helper.put("r.example", "alice", "TOPSECRET")
    write(rw, {"credHelpers": {"r.example": NAME}})
    helper.set_mode(mode)
    with pytest.raises(auth.CredentialHelperError) as ei:
        auth.get_credentials("r.example", environ=env)
    assert PROG in str(ei.value) and msg in str(ei.value)
    assert "TOPSECRET" not in str(ei.value)
    assert auth.CredentialHelperError("x").exit_code == 125


def test_hanging_helper_times_out_and_is_killed(env, rw, helper, monkeypatch):
    monkeypatch.setattr(auth, "HELPER_TIMEOUT", 1.0)
    write(rw, {"credHelpers": {"r.example": NAME}})
    helper.set_mode("hang")
    t0 = time.monotonic()
    with pytest.raises(auth.CredentialHelperError, match=f"{PROG}: get timed out after 1s"):
        auth.get_credentials("r.example", environ=env)
    assert time.monotonic() - t0 < 10


def test_store_failure_does_not_leak_the_secret_or_write(env, rw, helper):
    write(rw, {"credHelpers": {"r.example": NAME}})
    before = open(rw).read()
    helper.set_mode("crash")
    with pytest.raises(auth.CredentialHelperError, match="store for r.example failed"):
        auth.set_credentials("r.example", "alice", "TOPSECRET", environ=env)
    assert open(rw).read() == before


# ------------------------------------------------------------------------------ writes


def test_login_stores_in_the_credhelpers_helper(env, rw, helper):
    write(rw, {"credHelpers": {"r.example:5000": NAME}})
    where = auth.set_credentials("r.example:5000", "alice", "pw", environ=env)
    assert where == f"credential helper: {PROG}"
    assert helper.store() == {"r.example:5000": ["alice", "pw"]}
    assert read(rw) == {"credHelpers": {"r.example:5000": NAME}}  # no secret in the file
    # a namespaced key cannot go to a helper
    with pytest.raises(InvalidArgument, match="namespaced key"):
        auth.set_credentials("r.example:5000/ns", "alice", "pw", environ=env)
    # other registries still go to the file
    auth.set_credentials("s.example", "bob", "pw", environ=env)
    assert "s.example" in read(rw)["auths"]


def test_only_the_rw_files_helpers_take_writes(env, rw, helper, docker_cfg):
    write(docker_cfg, {"credHelpers": {"r.example": NAME}, "credsStore": NAME})
    assert auth.set_credentials("r.example", "alice", "pw", environ=env) == rw
    assert helper.store() == {}


def test_credsstore_login_and_logout(env, rw, helper):
    write(rw, {"credsStore": NAME, "auths": {"r.example": {"auth": b64("old:pw")}}})
    assert auth.set_credentials("r.example", "alice", "new", environ=env) == f"credential helper: {PROG}"
    assert read(rw)["auths"] == {"r.example": {}}  # Docker's placeholder; the stale entry is gone
    assert auth.get_credentials("r.example", environ=env).password == "new"
    # namespaced keys stay in the file (auths come before credsStore)
    auth.set_credentials("r.example/ns", "nsuser", "pw", environ=env)
    assert auth.get_credentials("r.example/ns/img", environ=env).username == "nsuser"
    auth.remove_credentials("r.example", environ=env)
    assert helper.store() == {} and "r.example" not in read(rw)["auths"]


def test_logout_erases_from_the_helper(env, rw, helper):
    write(rw, {"credHelpers": {"r.example": NAME}})
    auth.set_credentials("r.example", "alice", "pw", environ=env)
    auth.remove_credentials("r.example", environ=env)
    assert helper.store() == {}
    with pytest.raises(NotFound, match="not logged into r.example"):
        auth.remove_credentials("r.example", environ=env)


def test_logout_helper_failure_leaves_the_file(env, rw, helper):
    write(rw, {"credHelpers": {"r.example": NAME}, "auths": {"r.example": {"auth": b64("a:b")}}})
    before = open(rw).read()
    helper.set_mode("crash")
    with pytest.raises(auth.CredentialHelperError, match="erase for r.example failed"):
        auth.remove_credentials("r.example", environ=env)
    assert open(rw).read() == before


def test_logout_all_erases_helpers_and_empties_the_file(env, rw, helper):
    helper.put("r.example", "alice", "pw")
    helper.put("unrelated.example", "zed", "pw")
    write(rw, {"credHelpers": {"r.example": NAME, "s.example": NAME},
               "auths": {"t.example": {"auth": b64("t:pw")}}, "other": 1})
    auth.remove_all_credentials(environ=env)
    # as podman: every credHelpers registry erased (s.example held nothing: fine),
    # then auths and credHelpers emptied; unknown keys stay
    assert helper.store() == {"unrelated.example": ["zed", "pw"]}
    assert read(rw) == {"auths": {}, "other": 1}


def test_logout_all_with_credsstore(env, rw, helper):
    write(rw, {"credsStore": NAME})
    auth.set_credentials("r.example", "alice", "pw", environ=env)
    helper.put("docker-only.example", "zed", "pw")
    auth.remove_all_credentials(environ=env)
    assert helper.store() == {"docker-only.example": ["zed", "pw"]}
    assert read(rw) == {"credsStore": NAME, "auths": {}}


def test_logout_all_failure_writes_nothing(env, rw, helper):
    write(rw, {"credHelpers": {"r.example": NAME}, "auths": {"t.example": {"auth": b64("t:pw")}}})
    before = open(rw).read()
    helper.set_mode("crash")
    with pytest.raises(auth.CredentialHelperError, match=PROG):
        auth.remove_all_credentials(environ=env)
    assert open(rw).read() == before


def test_helper_list(env, helper):
    helper.put("a.example", "u1", "p")
    assert auth.helper_list(NAME, environ=env) == {"a.example": "u1"}
    helper.set_mode("garbage")
    with pytest.raises(auth.CredentialHelperError, match="list: invalid JSON"):
        auth.helper_list(NAME, environ=env)
