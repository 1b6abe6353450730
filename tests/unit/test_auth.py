"""auth.json: file order, key matching, reading Docker's files, atomic 0600 writes, --creds."""

from __future__ import annotations

import base64
import json
import os

import pytest

from libpod_core.errors import ConfigError, InvalidArgument, NotFound
from libpod_core.registry import auth


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


@pytest.fixture
def env(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    return {"HOME": str(home), "XDG_RUNTIME_DIR": str(tmp_path / "run")}


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(data if isinstance(data, str) else json.dumps(data))


# ------------------------------------------------------------------------------ file order


def test_default_file_order(env):
    files = auth.auth_files(environ=env)
    home = env["HOME"]
    assert [f.path for f in files] == [
        os.path.join(env["XDG_RUNTIME_DIR"], "containers", "auth.json"),
        os.path.join(home, ".config", "containers", "auth.json"),
        os.path.join(home, ".docker", "config.json"),
        os.path.join(home, ".dockercfg"),
    ]
    assert [f.writable for f in files] == [True, False, False, False]
    assert files[-1].legacy


def test_file_order_variants(env, tmp_path):
    assert auth.auth_files("/x/auth.json", environ=env)[0].path == "/x/auth.json"
    assert [f.path for f in auth.auth_files("/x/auth.json", environ=env)] == [
        "/x/auth.json", os.path.join(env["HOME"], ".docker", "config.json")]
    e2 = {**env, "REGISTRY_AUTH_FILE": "/y/a.json"}
    assert auth.write_path(environ=e2) == "/y/a.json"
    assert auth.write_path("/z.json", environ=e2) == "/z.json"  # the flag wins
    e3 = {"HOME": env["HOME"]}
    assert auth.write_path(environ=e3) == f"/run/containers/{os.geteuid()}/auth.json"
    e4 = {**env, "XDG_CONFIG_HOME": "/cfg", "DOCKER_CONFIG": "/dk"}
    paths = [f.path for f in auth.auth_files(environ=e4)]
    assert "/cfg/containers/auth.json" in paths and "/dk/config.json" in paths


# ------------------------------------------------------------------------------ keys


@pytest.mark.parametrize("image,keys", [
    ("my-registry.local/namespace/user/image:latest", ["my-registry.local/namespace/user/image",
                                                       "my-registry.local/namespace/user",
                                                       "my-registry.local/namespace", "my-registry.local"]),
    ("localhost:5000", ["localhost:5000"]),
    ("localhost:5000/a", ["localhost:5000/a", "localhost:5000"]),
    ("localhost:5000/a@sha256:" + "a" * 64, ["localhost:5000/a", "localhost:5000"]),
    ("index.docker.io/library/busybox", ["docker.io/library/busybox", "docker.io/library", "docker.io"]),
    ("https://quay.io", ["quay.io"]),
])
def test_lookup_keys(image, keys):
    assert auth.lookup_keys(image) == keys


@pytest.mark.parametrize("key,norm", [
    ("https://index.docker.io/v1/", "docker.io"),
    ("http://localhost:5000/v2/", "localhost:5000"),
    ("registry-1.docker.io", "docker.io"),
    ("quay.io/ns/repo/", "quay.io/ns/repo"),
    ("quay.io", "quay.io"),
])
def test_normalize_key(key, norm):
    assert auth.normalize_key(key) == norm


@pytest.mark.parametrize("key", ["quay.io", "localhost:5000", "quay.io/ns/repo", "127.0.0.1:5000/a", "[::1]:5000"])
def test_validate_key_ok(key):
    assert auth.validate_key(key) == key


@pytest.mark.parametrize("key,msg", [
    ("", "empty"),
    ("https://quay.io", "http"),
    ("quay.io/ns/repo:tag", "tag or digest"),
    ("quay.io/Bad", "invalid registry"),
    ("bad host", "invalid registry"),
])
def test_validate_key_errors(key, msg):
    with pytest.raises(InvalidArgument, match=msg):
        auth.validate_key(key)


# ------------------------------------------------------------------------------ reading


def test_most_specific_entry_wins(env):
    path = os.path.join(env["XDG_RUNTIME_DIR"], "containers", "auth.json")
    write(path, {"auths": {
        "reg.example/ns/app": {"auth": b64("app:Sekr1t")},
        "reg.example/ns": {"auth": b64("ns:2")},
        "reg.example": {"auth": b64("host:3")},
    }})
    c = auth.get_credentials("reg.example/ns/app:v1", environ=env)
    assert (c.username, c.password, c.source) == ("app", "Sekr1t", path)
    assert auth.get_credentials("reg.example/ns/other", environ=env).username == "ns"
    assert auth.get_credentials("reg.example/x", environ=env).username == "host"
    assert auth.get_credentials("reg.example", environ=env).username == "host"
    assert auth.get_credentials("other.example/x", environ=env) is None
    assert "Sekr1t" not in repr(c)  # no secret in repr


def test_docker_config_fallback_and_order(env):
    docker = os.path.join(env["HOME"], ".docker", "config.json")
    write(docker, {"auths": {"https://index.docker.io/v1/": {"auth": b64("dockeruser:pw")},
                             "localhost:5000": {"auth": b64("d:x")}}, "credsStore": "desktop"})
    c = auth.get_credentials("docker.io/library/busybox", environ=env)
    assert (c.username, c.password) == ("dockeruser", "pw")
    # the primary file wins over Docker's
    write(os.path.join(env["XDG_RUNTIME_DIR"], "containers", "auth.json"),
          {"auths": {"localhost:5000": {"auth": b64("p:y")}}})
    assert auth.get_credentials("localhost:5000/a", environ=env).username == "p"
    # ~/.config/containers/auth.json between them
    write(os.path.join(env["HOME"], ".config", "containers", "auth.json"),
          {"auths": {"docker.io": {"auth": b64("cfg:z")}}})
    assert auth.get_credentials("docker.io/library/busybox", environ=env).username == "cfg"


def test_legacy_dockercfg_and_tokens_and_empty_entries(env):
    write(os.path.join(env["HOME"], ".dockercfg"), {"legacy.example": {"auth": b64("old:pw")}})
    assert auth.get_credentials("legacy.example/x", environ=env).username == "old"
    write(os.path.join(env["XDG_RUNTIME_DIR"], "containers", "auth.json"),
          {"auths": {"tok.example": {"identitytoken": "refresh-me"}, "helper.example": {},
                     "legacy.example": {}}})
    c = auth.get_credentials("tok.example/x", environ=env)
    assert c.identity_token == "refresh-me" and c.username == ""
    assert auth.get_credentials("helper.example/x", environ=env) is None
    # an empty entry (a credential helper marker) does not hide later files
    assert auth.get_credentials("legacy.example/x", environ=env).username == "old"


def test_password_with_colon(env):
    write(os.path.join(env["XDG_RUNTIME_DIR"], "containers", "auth.json"),
          {"auths": {"r.example": {"auth": b64("u:pa:ss")}}})
    assert auth.get_credentials("r.example", environ=env).password == "pa:ss"


@pytest.mark.parametrize("content,msg", [
    ("{not json", "invalid JSON"),
    ("[]", "JSON object"),
    ({"auths": []}, '"auths" must be a JSON object'),
    ({"auths": {"r.example": "x"}}, 'entry "r.example" must be a JSON object'),
    ({"auths": {"r.example": {"auth": "!!!"}}}, "not valid base64"),
    ({"auths": {"r.example": {"auth": b64("nocolon")}}}, "USER:PASSWORD"),
    ({"auths": {"r.example": {"auth": 5}}}, "must be a string"),
])
def test_bad_files_name_the_file(env, content, msg):
    path = os.path.join(env["XDG_RUNTIME_DIR"], "containers", "auth.json")
    write(path, content)
    with pytest.raises(ConfigError) as ei:
        auth.get_credentials("r.example/x", environ=env)
    assert msg in str(ei.value) and path in str(ei.value)


def test_creds_flag_wins(env):
    write(os.path.join(env["XDG_RUNTIME_DIR"], "containers", "auth.json"),
          {"auths": {"r.example": {"auth": b64("file:pw")}}})
    c = auth.get_credentials("r.example/x", creds="flag:pw2", environ=env)
    assert (c.username, c.password, c.source) == ("flag", "pw2", "--creds")


# ------------------------------------------------------------------------------ writing


def test_set_credentials_atomic_0600(env):
    path = auth.set_credentials("r.example:5000", "alice", "s3cret", environ=env)
    assert path == os.path.join(env["XDG_RUNTIME_DIR"], "containers", "auth.json")
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o700
    data = json.load(open(path))
    assert data["auths"]["r.example:5000"]["auth"] == b64("alice:s3cret")
    # other entries and unknown keys survive
    data["credHelpers"] = {"x.example": "secretservice"}
    write(path, data)
    auth.set_credentials("r.example/ns/repo", "bob", "pw", environ=env)
    data = json.load(open(path))
    assert set(data["auths"]) == {"r.example:5000", "r.example/ns/repo"}
    assert data["credHelpers"] == {"x.example": "secretservice"}
    assert [n for n in os.listdir(os.path.dirname(path)) if n.startswith(".auth")] == []
    assert auth.get_credentials("r.example/ns/repo:v1", environ=env).username == "bob"
    assert auth.list_credentials(environ=env) == {"r.example:5000": "alice", "r.example/ns/repo": "bob"}


def test_set_credentials_replaces_docker_style_alias(env, tmp_path):
    f = str(tmp_path / "a.json")
    write(f, {"auths": {"https://index.docker.io/v1/": {"auth": b64("old:x")}}})
    auth.set_credentials("docker.io", "new", "y", f, environ=env)
    assert list(json.load(open(f))["auths"]) == ["docker.io"]


@pytest.mark.parametrize("user,msg", [("", "empty"), ("a:b", "colon")])
def test_set_credentials_bad_user(env, user, msg):
    with pytest.raises(InvalidArgument, match=msg):
        auth.set_credentials("r.example", user, "pw", environ=env)


def test_remove_credentials(env):
    path = auth.set_credentials("r.example", "alice", "pw", environ=env)
    auth.set_credentials("s.example", "bob", "pw", environ=env)
    auth.remove_credentials("r.example", environ=env)
    assert list(json.load(open(path))["auths"]) == ["s.example"]
    with pytest.raises(NotFound, match="not logged into r.example"):
        auth.remove_credentials("r.example", environ=env)
    write(os.path.join(env["HOME"], ".docker", "config.json"), {"auths": {"d.example": {"auth": b64("d:x")}}})
    with pytest.raises(NotFound, match="config.json"):
        auth.remove_credentials("d.example", environ=env)
    auth.remove_all_credentials(environ=env)
    assert json.load(open(path))["auths"] == {}


@pytest.mark.parametrize("creds,expected", [
    ("user:pass", ("user", "pass")),
    ("user:", ("user", "")),
    ("user", ("user", None)),
    ("user:pa:ss", ("user", "pa:ss")),
])
def test_parse_creds(creds, expected):
    assert auth.parse_creds(creds) == expected


@pytest.mark.parametrize("creds,msg", [("", "empty"), (":pass", "username")])
def test_parse_creds_errors(creds, msg):
    with pytest.raises(InvalidArgument, match=msg):
        auth.parse_creds(creds)


# ------------------------------------------------------------------------------ challenges


from libpod_core.registry.client import parse_link_next, parse_www_authenticate  # noqa: E402


@pytest.mark.parametrize("header,expected", [
    ('Basic realm="Registry Realm"', [("basic", {"realm": "Registry Realm"})]),
    ('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"',
     [("bearer", {"realm": "https://auth.example/token", "service": "registry.example",
                  "scope": "repository:a/b:pull,push"})]),
    ('Bearer realm="https://a/t", error="insufficient_scope", scope="repository:x:push"',
     [("bearer", {"realm": "https://a/t", "error": "insufficient_scope", "scope": "repository:x:push"})]),
    ('bearer realm=https://a/t,service=s', [("bearer", {"realm": "https://a/t", "service": "s"})]),
    ('Basic realm="a", Bearer realm="b",service="c"', [("basic", {"realm": "a"}), ("bearer", {"realm": "b", "service": "c"})]),
    ('Bearer realm="q\\"uoted"', [("bearer", {"realm": 'q"uoted'})]),
    ("", []),
])
def test_parse_www_authenticate(header, expected):
    assert parse_www_authenticate(header) == expected


@pytest.mark.parametrize("header,expected", [
    ('</v2/r/tags/list?n=2&last=b>; rel="next"', "/v2/r/tags/list?n=2&last=b"),
    ('<https://r.example/v2/x/tags/list?last=c>; rel=next', "https://r.example/v2/x/tags/list?last=c"),
    ('</a>; rel="prev", </b>; rel="next"', "/b"),
    ('</a>; rel="prev"', None),
    (None, None),
])
def test_parse_link_next(header, expected):
    assert parse_link_next(header) == expected
