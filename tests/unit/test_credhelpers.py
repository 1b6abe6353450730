"""Credential helpers: credHelpers / credsStore lookup order, the helper protocol, writes
through helpers, the failures (missing, crashing, hanging, garbling helper), and
registries.conf's credential-helpers list of stores."""

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


# ------------------------------------------------------------------------------ registries.conf
# credential-helpers: the ordered list of credential stores (containers-registries.conf(5));
# "containers-auth.json" is the auth.json files above, any other NAME docker-credential-NAME.

AUTHJSON = auth.AUTH_FILE_HELPER
TWO = "kpodtwo"


@pytest.fixture
def two(tmp_path):
    """A second helper, docker-credential-kpodtwo, with its own store."""
    return FakeHelper(tmp_path / "helper2", TWO)


@pytest.fixture
def env2(env, two):
    return {**env, "PATH": two.bin + os.pathsep + env["PATH"]}


def test_default_stores_are_todays_behaviour(env, rw, helper):
    assert auth.credential_stores(None) == auth.credential_stores([]) == (AUTHJSON,)
    helper.put("h.example", "hu", "hp")
    write(rw, {"credHelpers": {"h.example": NAME}, "auths": {"f.example/ns": {"auth": b64("fu:fp")}}})
    for helpers in (None, [], [AUTHJSON]):
        assert auth.get_credentials("h.example/x", environ=env, credential_helpers=helpers).username == "hu"
        assert auth.get_credentials("f.example/ns/img", environ=env, credential_helpers=helpers).username == "fu"
        assert auth.get_credentials("f.example/other", environ=env, credential_helpers=helpers) is None
    assert auth.set_credentials("g.example", "gu", "gp", environ=env, credential_helpers=[]) == rw
    assert auth.list_credentials(environ=env, credential_helpers=[]) == {"f.example/ns": "fu", "g.example": "gu"}
    assert auth.remove_credentials("g.example", environ=env, credential_helpers=[AUTHJSON]) == rw
    with pytest.raises(NotFound, match="^not logged into g.example$"):
        auth.remove_credentials("g.example", environ=env, credential_helpers=None)


def test_helper_first_then_auth_json(env2, rw, two):
    write(rw, {"auths": {"a.example": {"auth": b64("file-a:pw")}, "b.example": {"auth": b64("file-b:pw")}}})
    two.put("a.example", "helper-a", "hs")
    helpers = [TWO, AUTHJSON]
    c = auth.get_credentials("a.example/ns/img:tag", environ=env2, credential_helpers=helpers)
    assert (c.username, c.password, c.source) == ("helper-a", "hs", f"credential helper {two.prog}")
    # the helper has nothing for b.example ("credentials not found"): the files answer
    assert auth.get_credentials("b.example/img", environ=env2, credential_helpers=helpers).username == "file-b"
    assert auth.get_credentials("c.example/img", environ=env2, credential_helpers=helpers) is None
    # helpers are asked for the registry, never a namespaced key
    assert two.calls() == ["get a.example", "get b.example", "get c.example"]


def test_auth_json_first_then_helper(env2, rw, helper, two):
    write(rw, {"auths": {"a.example": {"auth": b64("file-a:pw")}}})
    two.put("a.example", "helper-a", "hs")
    two.put("c.example", "helper-c", "hs")
    helpers = [AUTHJSON, TWO]
    assert auth.get_credentials("a.example", environ=env2, credential_helpers=helpers).username == "file-a"
    assert two.calls() == []  # the first store answered
    assert auth.get_credentials("c.example/x", environ=env2, credential_helpers=helpers).username == "helper-c"
    # the file's own helpers are part of the containers-auth.json store
    helper.put("d.example", "inner", "pw")
    write(rw, {"credHelpers": {"d.example": NAME}})
    assert auth.get_credentials("d.example", environ=env2, credential_helpers=helpers).username == "inner"
    # a store list without containers-auth.json never reads the files
    assert auth.get_credentials("a.example", environ=env2, credential_helpers=[TWO]).username == "helper-a"
    write(rw, "not json")
    assert auth.get_credentials("c.example", environ=env2, credential_helpers=[TWO]).username == "helper-c"


def test_login_stores_into_the_first_store(env2, rw, two):
    where = auth.set_credentials("r.example:5000", "alice", "pw", environ=env2, credential_helpers=[TWO, AUTHJSON])
    assert where == f"credential helper: {two.prog}"
    assert two.store() == {"r.example:5000": ["alice", "pw"]}
    assert not os.path.exists(rw)  # the file is not touched
    assert auth.store_helper("r.example:5000", environ=env2, credential_helpers=[TWO, AUTHJSON]) == (TWO, False)
    assert auth.set_credentials("s.example", "bob", "pw", environ=env2, credential_helpers=[AUTHJSON, TWO]) == rw
    assert "s.example" in read(rw)["auths"] and "s.example" not in two.store()
    # helpers hold registries only: a namespaced key is refused, nothing is written anywhere
    before = open(rw).read()
    with pytest.raises(InvalidArgument, match=f"namespaced key.*{two.prog}.*credential-helpers"):
        auth.set_credentials("t.example/ns", "carol", "pw", environ=env2, credential_helpers=[TWO, AUTHJSON])
    assert open(rw).read() == before and "t.example" not in two.store()


def test_login_failure_of_the_first_store_is_an_error(env2, rw, two):
    two.set_mode("crash")
    with pytest.raises(auth.CredentialHelperError, match=f"{two.prog}: store for r.example failed"):
        auth.set_credentials("r.example", "alice", "TOPSECRET", environ=env2, credential_helpers=[TWO, AUTHJSON])
    assert not os.path.exists(rw)  # no fallback to the next store
    with pytest.raises(auth.CredentialHelperError, match="docker-credential-nosuch not found"):
        auth.set_credentials("r.example", "alice", "pw", environ=env2, credential_helpers=["nosuch", AUTHJSON])
    assert not os.path.exists(rw)


def test_logout_removes_from_every_store(env2, rw, helper, two):
    helpers = [TWO, AUTHJSON]
    two.put("r.example", "alice", "pw")
    helper.put("r.example", "alice", "pw")
    write(rw, {"credHelpers": {"r.example": NAME}, "auths": {"r.example": {"auth": b64("a:b")},
                                                            "s.example": {"auth": b64("s:b")}}})
    assert auth.remove_credentials("r.example", environ=env2, credential_helpers=helpers) == rw
    assert two.store() == {} and helper.store() == {}
    assert read(rw)["auths"] == {"s.example": {"auth": b64("s:b")}}
    # in one store only: fine
    auth.remove_credentials("s.example", environ=env2, credential_helpers=helpers)
    two.put("t.example", "t", "pw")
    auth.remove_credentials("t.example", environ=env2, credential_helpers=helpers)
    assert two.store() == {}
    # in none: podman's error
    with pytest.raises(NotFound, match="^not logged into t.example$"):
        auth.remove_credentials("t.example", environ=env2, credential_helpers=helpers)
    with pytest.raises(NotFound, match="^not logged into t.example$"):
        auth.remove_credentials("t.example", environ=env2, credential_helpers=[TWO])
    # a namespaced key is never sent to an external helper
    calls = len(two.calls())
    auth.set_credentials("u.example/ns", "u", "pw", environ=env2)
    auth.remove_credentials("u.example/ns", environ=env2, credential_helpers=helpers)
    assert len(two.calls()) == calls


def test_logout_failure_of_one_store_does_not_stop_the_others(env2, rw, two):
    write(rw, {"auths": {"r.example": {"auth": b64("a:b")}}})
    two.set_mode("crash")
    with pytest.raises(auth.CredentialHelperError, match=f"{two.prog}: erase for r.example failed"):
        auth.remove_credentials("r.example", environ=env2, credential_helpers=[TWO, AUTHJSON])
    assert read(rw)["auths"] == {}  # as podman: the other stores are still cleaned


def test_logout_all_from_every_store(env2, rw, helper, two):
    two.put("a.example", "a", "pw")
    two.put("b.example", "b", "pw")
    helper.put("c.example", "c", "pw")
    helper.put("unrelated.example", "z", "pw")
    write(rw, {"credHelpers": {"c.example": NAME}, "auths": {"d.example": {"auth": b64("d:pw")}}})
    auth.remove_all_credentials(environ=env2, credential_helpers=[TWO, AUTHJSON, "notinstalled"])
    assert two.store() == {}
    assert sorted(c for c in two.calls() if c.startswith("erase")) == ["erase a.example", "erase b.example"]
    assert helper.store() == {"unrelated.example": ["z", "pw"]}  # only what the file named
    assert read(rw) == {"auths": {}}
    # without containers-auth.json in the list the files stay as they are
    write(rw, {"auths": {"d.example": {"auth": b64("d:pw")}}})
    auth.remove_all_credentials(environ=env2, credential_helpers=[TWO])
    assert "d.example" in read(rw)["auths"]


def test_list_credentials_of_every_store(env2, rw, two):
    write(rw, {"auths": {"a.example": {"auth": b64("file-a:pw")}}})
    two.put("a.example", "helper-a", "pw")
    two.put("b.example", "helper-b", "pw")
    assert auth.list_credentials(environ=env2, credential_helpers=[AUTHJSON, TWO, "notinstalled"]) == \
        {"a.example": "file-a", "b.example": "helper-b"}
    assert auth.list_credentials(environ=env2, credential_helpers=[TWO])["a.example"] == "helper-a"


def test_authfile_limits_only_the_auth_json_store(env2, tmp_path, two):
    # as podman (containers/image's prepareForEdit/getCredentials): --authfile picks the
    # containers-auth.json store's file; credential-helpers still decide the stores
    af = str(tmp_path / "explicit.json")
    write(af, {"auths": {"r.example": {"auth": b64("explicit:pw")}}})
    write(auth.write_path(environ=env2), {"auths": {"s.example": {"auth": b64("default:pw")}}})
    two.put("r.example", "helper-r", "pw")
    assert auth.get_credentials("r.example", af, environ=env2, credential_helpers=[TWO, AUTHJSON]).username == "helper-r"
    assert auth.get_credentials("r.example", af, environ=env2, credential_helpers=[AUTHJSON, TWO]).username == "explicit"
    # the default read/write file is not one of --authfile's files
    assert auth.get_credentials("s.example", af, environ=env2, credential_helpers=[AUTHJSON]) is None
    assert auth.get_credentials("r.example", af, environ=env2, credential_helpers=[TWO]).username == "helper-r"
    # REGISTRY_AUTH_FILE acts as --authfile
    env3 = {**env2, "REGISTRY_AUTH_FILE": af}
    assert auth.get_credentials("r.example", environ=env3, credential_helpers=[AUTHJSON, TWO]).username == "explicit"
    # login goes to the first store, logout to all
    assert auth.set_credentials("t.example", "t", "pw", af, environ=env2, credential_helpers=[TWO]) == \
        f"credential helper: {two.prog}"
    assert "t.example" not in read(af)["auths"]
    assert auth.set_credentials("t.example", "t", "pw", af, environ=env2, credential_helpers=[AUTHJSON, TWO]) == af
    auth.remove_credentials("t.example", af, environ=env2, credential_helpers=[AUTHJSON, TWO])
    assert "t.example" not in read(af)["auths"] and "t.example" not in two.store()


def test_missing_or_failing_store_at_lookup(env2, rw, two):
    with pytest.raises(auth.CredentialHelperError, match="^credential helper docker-credential-nosuch not found in \\$PATH$"):
        auth.get_credentials("r.example", environ=env2, credential_helpers=["nosuch"])
    # as containers/image: a failing store does not stop the lookup; its error is raised only
    # when no other store has credentials
    write(rw, {"auths": {"r.example": {"auth": b64("file:pw")}}})
    assert auth.get_credentials("r.example", environ=env2, credential_helpers=["nosuch", AUTHJSON]).username == "file"
    with pytest.raises(auth.CredentialHelperError, match="nosuch not found"):
        auth.get_credentials("s.example", environ=env2, credential_helpers=["nosuch", AUTHJSON])
    two.put("s.example", "alice", "TOPSECRET")
    two.set_mode("crash")
    with pytest.raises(auth.CredentialHelperError) as ei:
        auth.get_credentials("s.example", environ=env2, credential_helpers=["nosuch", TWO, AUTHJSON])
    msg = str(ei.value)
    assert msg.startswith("looking up credentials for s.example: ") and "\n" not in msg
    assert "docker-credential-nosuch not found" in msg and f"{two.prog}: get for s.example failed" in msg
    assert "TOPSECRET" not in msg
    # --creds still bypasses every store
    assert auth.get_credentials("s.example", creds="u:p", environ=env2, credential_helpers=["nosuch"]).username == "u"


@pytest.mark.parametrize("value", ['[""]', '["a/b"]', '["../evil"]', '["two words"]', '[" pass"]', '["pass\\n"]'])
def test_bad_helper_names_in_registries_conf(tmp_path, value):
    from libpod_core.registry.registries_conf import RegistriesConf

    conf = tmp_path / "registries.conf"
    conf.write_text(f"credential-helpers = {value}\n")
    with pytest.raises(ConfigError, match=f"^{conf}: key 'credential-helpers': .* is not a credential helper name"):
        RegistriesConf.load(str(conf))


def test_credential_helpers_from_registries_conf(tmp_path):
    from libpod_core.registry.registries_conf import RegistriesConf, credential_helpers
    from libpod_core.transports.base import SystemContext

    conf = tmp_path / "registries.conf"
    assert credential_helpers(path=str(conf)) == []  # missing file: the default store
    conf.write_text('credential-helpers = ["kpodtwo", "containers-auth.json"]\n')
    assert credential_helpers(SystemContext(registries_conf=str(conf))) == [TWO, AUTHJSON]
    with pytest.raises(ConfigError, match="credential-helpers.*array of strings"):
        RegistriesConf.from_string("credential-helpers = [1]\n")
    # a drop-in replaces the list; an empty one brings back the default
    d = tmp_path / "registries.conf.d"
    d.mkdir()
    (d / "50-helpers.conf").write_text('credential-helpers = ["pass"]\n')
    assert RegistriesConf.load(str(conf)).credential_helpers == ["pass"]
    (d / "60-reset.conf").write_text("credential-helpers = []\n")
    assert auth.credential_stores(RegistriesConf.load(str(conf)).credential_helpers) == (AUTHJSON,)


def test_make_client_asks_the_configured_stores(env2, tmp_path, two, monkeypatch):
    from libpod_core.registry.client import make_client
    from libpod_core.transports.base import SystemContext

    for k, v in env2.items():
        monkeypatch.setenv(k, v)
    conf = tmp_path / "registries.conf"
    conf.write_text(f'credential-helpers = ["{TWO}"]\n')
    two.put("r.example:5000", "alice", "pw")
    ctx = SystemContext(registries_conf=str(conf), authfile=str(tmp_path / "none.json"))
    client = make_client("r.example:5000", ctx, image="r.example:5000/ns/img")
    try:
        assert client.credentials.username == "alice"
    finally:
        client.close()
    # --creds: registries.conf is not even read
    conf.write_text('credential-helpers = ["bad/name"]\n')
    ctx.creds = "u:p"
    client = make_client("r.example:5000", ctx)
    try:
        assert client.credentials.username == "u"
    finally:
        client.close()
    ctx.creds = None
    with pytest.raises(ConfigError, match=f"{conf}: key 'credential-helpers'"):
        make_client("r.example:5000", ctx)
