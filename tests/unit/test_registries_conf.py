"""registries.conf v2: strict parsing, prefix matching, mirrors, blocking, short names."""

from __future__ import annotations

import pytest

from libpod_core.errors import ConfigError, InvalidArgument, PolicyDenied
from libpod_core.registry.registries_conf import RegistriesConf, resolve_pull_sources, short_name_candidates

C = RegistriesConf.from_string


def sources(conf_text: str, ref: str):
    return [(s.location, s.insecure, str(s.reference), s.mirror) for s in C(conf_text).resolve_pull_sources(ref)]


# ------------------------------------------------------------------------------ errors


ERRORS = [
    ("bogus = 1", "unknown key 'bogus'"),
    ("unqualified-search-registries = 'docker.io'", "must be an array of strings"),
    ("unqualified-search-registries = ['docker.io/library']", "is not a host[:port]"),
    ("short-name-mode = 'sometimes'", "is not one of enforcing"),
    ("short-name-mode = 1", "must be a string"),
    ("[[registry]]\nlocation = 'a.example'\ninsecure = 'yes'", "'registry[0].insecure' must be true or false"),
    ("[[registry]]\nlocation = 'a.example'\nblocked = 1", "registry[0].blocked"),
    ("[[registry]]\nlocation = 'a.example'\ncolour = 'red'", "unknown key registry[0].'colour'"),
    ("[[registry]]\nprefix = ''\nlocation = ''", "one of 'prefix' and 'location' must be set"),
    ("[[registry]]\nlocation = 'https://a.example'", "URI schemes are not supported"),
    ("[[registry]]\nlocation = 'a.example/UPPER'", "invalid location"),
    ("[[registry]]\nlocation = 'a.example/ns:tag'", "must not contain a tag or digest"),
    ("[[registry]]\nprefix = '*.example.com/foo'", "wildcard must be *.domain"),
    ("[[registry]]\nprefix = '*.example.com:5000'", "wildcard must be *.domain"),
    ("[[registry]]\nprefix = 'example.*.com'", "invalid"),
    ("[[registry]]\nlocation = 'a.example'\n[[registry]]\nlocation = 'a.example'", "defined more than once"),
    ("[[registry]]\nlocation = 'a.example'\n[[registry.mirror]]\ninsecure = true", "'location' must be set"),
    ("[[registry]]\nlocation = 'a.example'\n[[registry.mirror]]\nlocation = 'm.example'\nfoo = 1", "unknown key registry[0].mirror[0].'foo'"),
    ("[[registry]]\nlocation = 'a.example'\n[[registry.mirror]]\nlocation = 'm.example'\npull-from-mirror = 'some'",
     "is not one of all, digest-only, tag-only"),
    ("[[registry]]\nlocation = 'a.example'\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = 'm.example'\n"
     "pull-from-mirror = 'tag-only'", "at the same time"),
    ("[[registry]]\nlocation = 'a.example'\nmirror = 'm.example'", "must be an array of tables"),
    ("registry = 'x'", "must be an array of tables"),
    ("[aliases]\n'busybox:latest' = 'docker.io/library/busybox'", "must not contain a tag or digest"),
    ("[aliases]\n'quay.io/busybox' = 'docker.io/library/busybox'", "must be a short name"),
    ("[aliases]\nbusybox = 'busybox'", "must be fully qualified"),
    ("[aliases]\nbusybox = 'docker.io/library/busybox:1'", "must not contain a tag or digest"),
    ("[aliases]\nbusybox = 5", "must be a string"),
    ("aliases = 5", "must be a table"),
    ("[registries.search]\nregistries = ['a.example']\n[[registry]]\nlocation = 'b.example'", "mixing the v1 format"),
    ("unqualified-search-registries = ['b.example']\n[registries.search]\nregistries = ['a.example']", "mixing the v1 format"),
    ("[registries.other]\nregistries = []", "unknown key 'registries.other'"),
    ("[registries.search]\nlist = []", "unknown key 'registries.search.list'"),
    ("this is = not toml = ", "invalid TOML"),
]


@pytest.mark.parametrize("text,msg", ERRORS)
def test_errors_name_file_and_key(text, msg):
    with pytest.raises(ConfigError) as ei:
        C(text, "/etc/containers/test.conf")
    assert msg in str(ei.value)
    assert str(ei.value).startswith("/etc/containers/test.conf: ")


def test_load_file_and_dropins(tmp_path):
    main = tmp_path / "registries.conf"
    main.write_text("unqualified-search-registries = ['a.example']\nshort-name-mode = 'enforcing'\n"
                    "[[registry]]\nlocation = 'x.example'\ninsecure = true\n[aliases]\nfoo = 'a.example/foo'\nbar = 'a.example/bar'\n")
    d = tmp_path / "registries.conf.d"
    d.mkdir()
    (d / "10-first.conf").write_text("[aliases]\nbar = ''\nbaz = 'b.example/baz'\n")
    (d / "20-second.conf").write_text("unqualified-search-registries = ['b.example', 'c.example']\n"
                                      "[[registry]]\nlocation = 'x.example'\nblocked = true\n")
    (d / "ignored.txt").write_text("garbage = = =")
    conf = RegistriesConf.load(str(main))
    assert conf.search_registries == ["b.example", "c.example"]
    assert conf.short_name_mode == "enforcing"
    assert set(conf.aliases) == {"foo", "baz"}
    r = conf.find_registry("x.example/y")
    assert r.blocked and not r.insecure  # the drop-in's table replaced the main one
    assert conf.files == [str(main), str(d / "10-first.conf"), str(d / "20-second.conf")]
    (d / "30-bad.conf").write_text("nope = 1\n")
    with pytest.raises(ConfigError, match="30-bad.conf: unknown key 'nope'"):
        RegistriesConf.load(str(main))


def test_missing_file_is_empty(tmp_path):
    conf = RegistriesConf.load(str(tmp_path / "none.conf"))
    assert conf.search_registries == [] and conf.registries == []
    assert conf.short_name_mode == "permissive"
    assert [str(s.reference) for s in conf.resolve_pull_sources("q.example/a:1")] == ["q.example/a:1"]


def test_v1_format_is_converted():
    conf = C("[registries.search]\nregistries = ['a.example', 'b.example']\n"
             "[registries.insecure]\nregistries = ['i.example:5000']\n[registries.block]\nregistries = ['bad.example']\n")
    assert conf.search_registries == ["a.example", "b.example"]
    assert conf.is_insecure("i.example:5000/x")
    assert not conf.is_insecure("i.example/x")
    assert conf.is_blocked("bad.example/x")


# ------------------------------------------------------------------------------ matching


MATCH_CONF = """
[[registry]]
prefix = "example.com"
location = "example.com"
insecure = true

[[registry]]
prefix = "example.com/foo"
location = "internal.example.net/bar"

[[registry]]
prefix = "example.com/foo/special:v1"
location = "pinned.example.net/special"

[[registry]]
prefix = "*.wild.example"
insecure = true

[[registry]]
prefix = "*.deep.wild.example"
blocked = true
"""


@pytest.mark.parametrize("ref,prefix", [
    ("example.com/a:1", "example.com"),
    ("example.com/foo:1", "example.com/foo"),
    ("example.com/foo/img:1", "example.com/foo"),
    ("example.com/foobar/img:1", "example.com"),          # not at a path boundary
    ("example.com/foo/special:v1", "example.com/foo/special:v1"),
    ("example.com/foo/special:v2", "example.com/foo"),
    ("example.com:5000/a:1", None),                       # a port is not part of the host prefix
    ("a.wild.example/x:1", "*.wild.example"),
    ("x.deep.wild.example/x:1", "*.deep.wild.example"),   # the longer wildcard wins
    ("wild.example/x:1", None),                           # *. needs a subdomain
    ("other.example/x:1", None),
])
def test_find_registry_longest_prefix(ref, prefix):
    r = C(MATCH_CONF).find_registry(ref if "/" not in ref else __import__("libpod_core.reference", fromlist=["parse"]).parse(ref))
    assert (r.prefix if r else None) == prefix


def test_rewrite_to_location():
    assert sources(MATCH_CONF, "example.com/foo/img:1") == [
        ("internal.example.net/bar", False, "internal.example.net/bar/img:1", False)]
    assert sources(MATCH_CONF, "example.com/foo/special:v1") == [
        ("pinned.example.net/special", False, "pinned.example.net/special", False)]
    # wildcard: no rewrite, settings apply
    assert sources(MATCH_CONF, "a.wild.example/x:1") == [("a.wild.example", True, "a.wild.example/x:1", False)]


def test_blocked_is_policy_denied():
    conf = C(MATCH_CONF)
    with pytest.raises(PolicyDenied, match="blocked"):
        conf.resolve_pull_sources("x.deep.wild.example/x:1")
    with pytest.raises(PolicyDenied, match="blocked"):
        conf.push_destination("x.deep.wild.example/x:1")


MIRRORS = """
[[registry]]
prefix = "docker.io/library"
location = "docker.io/library"

[[registry.mirror]]
location = "mirror-all.example/lib"

[[registry.mirror]]
location = "mirror-digest.example/lib"
pull-from-mirror = "digest-only"
insecure = true

[[registry.mirror]]
location = "mirror-tag.example/lib"
pull-from-mirror = "tag-only"

[[registry]]
location = "quay.io"
mirror-by-digest-only = true

[[registry.mirror]]
location = "qmirror.example"
"""

D = "sha256:" + "a" * 64


def test_mirrors_for_tag_and_digest():
    assert sources(MIRRORS, "docker.io/library/busybox:1") == [
        ("mirror-all.example/lib", False, "mirror-all.example/lib/busybox:1", True),
        ("mirror-tag.example/lib", False, "mirror-tag.example/lib/busybox:1", True),
        ("docker.io/library", False, "docker.io/library/busybox:1", False),
    ]
    assert sources(MIRRORS, f"docker.io/library/busybox@{D}") == [
        ("mirror-all.example/lib", False, f"mirror-all.example/lib/busybox@{D}", True),
        ("mirror-digest.example/lib", True, f"mirror-digest.example/lib/busybox@{D}", True),
        ("docker.io/library", False, f"docker.io/library/busybox@{D}", False),
    ]
    assert sources(MIRRORS, "quay.io/a/b:1") == [("quay.io", False, "quay.io/a/b:1", False)]
    assert sources(MIRRORS, f"quay.io/a/b@{D}") == [("qmirror.example", False, f"qmirror.example/a/b@{D}", True),
                                                   ("quay.io", False, f"quay.io/a/b@{D}", False)]
    # push never uses mirrors nor rewrites
    d = C(MIRRORS).push_destination("docker.io/library/busybox:1")
    assert str(d.reference) == "docker.io/library/busybox:1" and not d.mirror


def test_module_functions(tmp_path):
    p = tmp_path / "r.conf"
    p.write_text("unqualified-search-registries = ['one.example']\n")
    assert [str(r) for r in short_name_candidates("img", path=str(p))] == ["one.example/img:latest"]
    assert [str(s.reference) for s in resolve_pull_sources("one.example/img:1", path=str(p))] == ["one.example/img:1"]


# ------------------------------------------------------------------------------ short names


SHORT = """
unqualified-search-registries = ["registry.fedoraproject.org", "docker.io"]
short-name-mode = "{mode}"

[aliases]
"fedora" = "registry.fedoraproject.org/fedora"
"opensuse/leap" = "registry.opensuse.org/opensuse/leap"
"""


@pytest.mark.parametrize("name,expected", [
    ("fedora", ["registry.fedoraproject.org/fedora:latest"]),
    ("fedora:39", ["registry.fedoraproject.org/fedora:39"]),
    (f"fedora@{D}", [f"registry.fedoraproject.org/fedora@{D}"]),
    ("opensuse/leap:15", ["registry.opensuse.org/opensuse/leap:15"]),
    ("quay.io/podman/stable", ["quay.io/podman/stable:latest"]),          # fully qualified
    ("docker.io/busybox", ["docker.io/library/busybox:latest"]),
    ("localhost/img:1", ["localhost/img:1"]),
])
def test_aliases_and_qualified_names(name, expected):
    conf = C(SHORT.format(mode="enforcing"))
    assert [str(r) for r in conf.short_name_candidates(name)] == expected


def test_enforcing_without_tty_is_an_error():
    conf = C(SHORT.format(mode="enforcing"), "/etc/containers/registries.conf")
    with pytest.raises(InvalidArgument) as ei:
        conf.short_name_candidates("busybox")
    msg = str(ei.value)
    assert "short-name resolution enforced but cannot prompt without a TTY" in msg
    assert "registry.fedoraproject.org/busybox:latest" in msg and "/etc/containers/registries.conf" in msg
    res = conf.resolve_short_name("busybox", interactive=True)
    assert res.prompt and [str(c) for c in res.candidates] == [
        "registry.fedoraproject.org/busybox:latest", "docker.io/library/busybox:latest"]


@pytest.mark.parametrize("mode", ["permissive", "disabled", ""])
def test_permissive_and_disabled_try_all(mode):
    conf = C(SHORT.format(mode=mode))
    res = conf.resolve_short_name("busybox:1.36")
    assert not res.prompt
    assert [str(c) for c in res.candidates] == ["registry.fedoraproject.org/busybox:1.36", "docker.io/library/busybox:1.36"]
    assert conf.resolve_short_name("busybox", interactive=True).prompt == (mode != "disabled")


def test_one_search_registry_needs_no_prompt():
    conf = C("unqualified-search-registries = ['docker.io']\nshort-name-mode = 'enforcing'\n")
    res = conf.resolve_short_name("busybox", interactive=True)
    assert not res.prompt and [str(c) for c in res.candidates] == ["docker.io/library/busybox:latest"]
    assert res.alias is None


def test_no_search_registries(tmp_path):
    with pytest.raises(InvalidArgument, match="did not resolve to an alias and no unqualified-search registries"):
        C("", "/x/registries.conf").short_name_candidates("busybox")
    with pytest.raises(InvalidArgument, match="invalid reference"):
        C("").short_name_candidates("Bad Name")
