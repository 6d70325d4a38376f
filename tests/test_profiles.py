"""Profiles: every validation rule, the shipped examples, directory loading, fuzzing."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from fowld.daemon.profiles import (
    ClientSpec,
    Profile,
    ProfileError,
    RestartPolicy,
    ServiceSpec,
    fixed_code_advice,
    insecure_permission_warning,
    load_profile,
    load_profiles,
    parse_profile,
    profile_from_dict,
    profiles_dir,
)
from fowld.engine.config import DEFAULT_MAILBOX, DEFAULT_TRANSIT_RELAY
from fowld.engine.endpoints import EndpointError, parse_connect, parse_listen

REPO = Path(__file__).resolve().parent.parent
# Every key of the schema: top level, then service and client entries.
KEYS = "description mailbox transit-relay code-length services clients code peer lifetime".split()
KEYS += "autostart restart".split()
KEYS += "name connect listen-port listen connect-port".split()
SSH = "services:\n  - name: ssh\n    connect: tcp:localhost:22\n"


def write(directory: Path, name: str, text: str, mode: int = 0o600) -> Path:
    path = directory / name
    path.write_text(text)
    path.chmod(mode)
    return path


def error_of(directory: Path, text: str, name: str = "p.yaml") -> tuple[Path, ProfileError]:
    path = write(directory, name, text)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    return path, info.value


def endpoint_message(parse, text: str) -> str:
    with pytest.raises(EndpointError) as info:
        parse(text)
    return str(info.value)


# (profile text, line the error names, words the message must contain)
RULES = [
    # unknown keys: which one, and the closest known key
    ("description: x\n" + SSH + "servise: []\n", 5, "unknown key 'servise' (did you mean 'services'?)"),
    ("zebra: 1\n" + SSH, 1, "unknown key 'zebra' (known keys: description, mailbox,"),
    (
        SSH + "    listen_port: 2222\n",
        4,
        "services[0]: unknown key 'listen_port' (did you mean 'listen-port'?)",
    ),
    ("clients:\n  - name: web\n    conect-port: 80\n", 3, "did you mean 'connect-port'?"),
    (SSH + "restart: never\nrestart: always\n", 5, "key 'restart' appears twice (first at line 4)"),
    # types
    ("description: 42\n" + SSH, 1, "description must be text, found the number 42"),
    (SSH + "code-length: two\n", 4, "code-length must be a whole number, found the text 'two'"),
    (SSH + "code-length: true\n", 4, "code-length must be a whole number, found true"),
    (SSH + "code-length: 0\n", 4, "code-length must be between 1 and 8, found 0"),
    (SSH + "code-length: 9\n", 4, "code-length must be between 1 and 8, found 9"),
    (SSH + "autostart: maybe\n", 4, "autostart must be true or false, found the text 'maybe'"),
    ("services:\n  name: ssh\n", 2, "services must be a list, found a mapping"),
    ("clients: web\n", 1, "clients must be a list, found the text 'web'"),
    ("services:\n  - ssh\n", 2, "services[0] must be a mapping of keys to values, found the text"),
    (SSH + "    listen-port: 70000\n", 4, "services[0].listen-port must be between 1 and 65535"),
    (
        "clients:\n  - name: web\n    connect-port: '80'\n",
        3,
        "clients[0].connect-port must be a whole number, found the text '80'",
    ),
    (
        "services:\n  - name: ssh\n    connect: [22]\n",
        3,
        "services[0].connect must be an address, found a list",
    ),
    (
        SSH + "restart: sometimes\n",
        4,
        "restart must be one of never, on-failure, always, found the text 'sometimes'",
    ),
    (SSH + "restart: no\n", 4, "restart must be one of never, on-failure, always, found false"),
    ("- " + SSH, 1, "the profile must be a mapping of keys to values, found a list"),
    # required keys, reported at the entry that lacks them
    ("services:\n  - connect: 22\n", 2, "services[0] has no 'name'"),
    ("services:\n  - name: a\n    connect: 22\n  - name: b\n", 4, "services[1] has no 'connect'"),
    ("clients:\n  - listen: 8080\n", 2, "clients[0] has no 'name'"),
    # options Twisted would refuse: found when the profile loads, not when the peer asks
    (
        "clients:\n  - name: x\n    listen: unix:/tmp/x.sock:mode=zz\n",
        3,
        "clients[0].listen: listen address 'unix:/tmp/x.sock:mode=zz': bad option value",
    ),
    ("services:\n  - name: y\n    connect: tcp:h:22:bogus=1\n", 3, "unknown option 'bogus'"),
    # service and client names
    (
        "services:\n  - name: my ssh\n    connect: 22\n",
        2,
        "services[0].name 'my ssh' must be 1-64 characters of letters, digits",
    ),
    (f"clients:\n  - name: {'x' * 65}\n", 2, "clients[0].name 'xxxxxxxxx"),
    ("clients:\n  - name: ''\n", 2, "clients[0].name '' must be 1-64 characters"),
    (SSH + "  - name: ssh\n    connect: 23\n", 4, "services[1].name: 'ssh' is used twice (first at line 2)"),
    (
        "clients:\n  - name: web\n  - name: db\n  - name: web\n",
        4,
        "clients[2].name: 'web' is used twice (first at line 2)",
    ),
    # two listeners cannot share an address, nor two services ask for the same port
    (
        "clients:\n  - name: a\n    listen: 8080\n  - name: b\n    listen: tcp:8080\n",
        5,
        "clients[1].listen: 'tcp:8080:interface=127.0.0.1' is used twice (first at line 3)",
    ),
    (
        "services:\n  - {name: a, connect: 22, listen-port: 9}\n  - {name: b, connect: 23, listen-port: 9}\n",
        3,
        "services[1].listen-port: 9 is used twice (first at line 2)",
    ),
    # endpoint strings carry the endpoint parser's own explanation
    (
        "services:\n  - name: ssh\n    connect: tcp:localhost\n",
        3,
        "services[0].connect: " + endpoint_message(parse_connect, "tcp:localhost"),
    ),
    (
        "clients:\n  - name: dns\n    listen: 'unix:'\n",
        3,
        "clients[0].listen: " + endpoint_message(parse_listen, "unix:"),
    ),
    (
        "clients:\n  - name: web\n    listen: tcp:99999\n",
        3,
        "clients[0].listen: " + endpoint_message(parse_listen, "tcp:99999"),
    ),
    # codes
    (SSH + "code: hello-world\n", 4, "code must look like NUMBER-word-word..."),
    (SSH + "code: '7-'\n", 4, "code must look like NUMBER-word-word..."),
    (SSH + "code: ''\n", 4, "code must look like NUMBER-word-word..."),
    (SSH + "code: 17\n", 4, "code must be text, found the number 17"),
    (SSH + "autostart: true\n", 4, "autostart needs a pairing (set 'peer') or a fixed code"),
    (SSH + "code: 7-a-b\npeer: bob\n", 5, "peer and code cannot be combined"),
    (SSH + "peer: no/slash\n", 4, "peer 'no/slash' must be"),
    (SSH + "lifetime: soon\n", 4, "lifetime: a duration looks like 90s, 15m, 2h or 30d"),
    (SSH + "lifetime: 0m\n", 4, "lifetime must be more than 0"),
    (SSH + "code-length: 3\ncode: 4-purple-sausages\n", 4, "code-length has no effect when code"),
    # mailbox and transit relay
    (SSH + "mailbox: http://relay.example:4000/v1\n", 4, "must be a ws:// or wss:// URL"),
    (SSH + "mailbox: ws://\n", 4, "mailbox 'ws://' must be a ws:// or wss:// URL"),
    (SSH + "mailbox: ws://relay.example:99999/v1\n", 4, "must be a ws:// or wss:// URL"),
    (SSH + "mailbox: [ws://relay.example]\n", 4, "mailbox must be text, found a list"),
    (
        SSH + "transit-relay: relay.example:4001\n",
        4,
        "transit-relay 'relay.example:4001' must look like tcp:HOST:PORT",
    ),
    (SSH + "transit-relay: tcp:relay.example:0\n", 4, "must look like tcp:HOST:PORT"),
    # a profile must do something
    ("description: nothing to do\n", 1, "must offer at least one service or want at least one"),
    ("description: x\nservices: []\nclients:\n", 2, "must offer at least one service"),
    # YAML itself
    (
        "services:\n  - name: ssh\n   connect: 22\n",
        3,
        "invalid YAML: while parsing a block collection, expected <block end>",
    ),
    (
        "description: 'open\n",
        2,
        "invalid YAML: while scanning a quoted scalar, found unexpected end of stream",
    ),
    (SSH + "---\n" + SSH, 4, "invalid YAML: expected a single document in the stream, but found another"),
    ("description: \x07\n" + SSH, 1, "invalid YAML: special characters are not allowed"),
    ("", 1, "the profile is empty"),
    ("# only a comment\n", 1, "the profile is empty"),
    (SSH + "description: !!python/name:os.system x\n", 4, "cannot read 'x': could not determine"),
    (SSH + "description: 2024-13-01\n", 4, "cannot read '2024-13-01': month must be in 1..12"),
    (SSH + "description: !custom {a: 1}\n", 4, "unsupported YAML tag '!custom'"),
    # explicit tags on text their constructors cannot read
    (SSH + "code-length: !!int\n", 4, "cannot read ''"),
    (SSH + "autostart: !!bool maybe\n", 4, "cannot read 'maybe'"),
    (SSH + "description: !!timestamp soon\n", 4, "cannot read 'soon'"),
    (SSH + "description: !!binary A\n", 4, "cannot read 'A': failed to decode base64 data"),
    (SSH + "? [a, b]\n: c\n", 4, "a key must be a plain word"),
    ("services: &loop [*loop]\n", 1, "values are nested too deeply"),
    ("services:\n  - {<<: 5, connect: 22}\n", 2, "'<<' can only merge mappings"),
    ("services:\n  - &m {<<: *m, connect: 22}\n", 2, "values are nested too deeply"),
]


@pytest.mark.parametrize(("text", "line", "message"), RULES)
def test_each_rule_names_file_line_and_problem(tmp_path: Path, text: str, line: int, message: str):
    path, error = error_of(tmp_path, text)
    assert error.source == str(path)
    assert error.line == line
    assert str(error).startswith(f"{path}:{line}: ")
    assert message in str(error)


def test_a_bad_code_is_not_repeated_in_the_error(tmp_path: Path):
    _, error = error_of(tmp_path, SSH + "code: 12 secret words\n")
    assert "secret" not in str(error)
    assert error.line == 4


def test_a_profile_name_comes_from_a_valid_file_stem(tmp_path: Path):
    _, error = error_of(tmp_path, SSH, name="my profile.yaml")
    assert error.line is None  # the problem is in the file's name, not on a line
    assert str(error) == (
        f"{tmp_path / 'my profile.yaml'}: profile name 'my profile' must be 1-64 characters "
        "of letters, digits, '.', '_' or '-'"
    )
    assert load_profile(write(tmp_path, "a_b-1.2.yaml", SSH)).name == "a_b-1.2"


def test_undecodable_bytes_are_reported_on_their_line(tmp_path: Path):
    path = tmp_path / "p.yaml"
    path.write_bytes(SSH.encode() + b"description: caf\xe9\n")
    with pytest.raises(ProfileError, match=re.escape(f"{path}:4: not valid UTF-8 text")):
        load_profile(path)


def test_unreadable_and_oversized_files_are_errors(tmp_path: Path):
    with pytest.raises(ProfileError, match=re.escape(f"{tmp_path / 'gone.yaml'}: cannot read")):
        load_profile(tmp_path / "gone.yaml")
    big = write(tmp_path, "big.yaml", SSH + "description: " + "x" * 300_000 + "\n")
    with pytest.raises(ProfileError, match="larger than"):
        load_profile(big)


def test_alias_bombs_are_bounded(tmp_path: Path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    _, error = error_of(tmp_path, "\n".join(lines) + "\n")
    assert error.problem == "too many values (more than 10000)"
    _, error = error_of(tmp_path, "services: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nested too deeply" in str(error)


def test_a_complete_profile_keeps_every_value(tmp_path: Path):
    text = """\
description: Both directions
mailbox: wss://mailbox.example/v1
transit-relay: tcp:[::1]:4001
services:
  - name: ssh
    connect: unix:path=/run/ssh.sock
    listen-port: 2222
clients:
  - name: web
    listen: tcp6:8080
    connect-port: 8000
  - name: any
code: 7-some-long-shared-passphrase
autostart: true
restart: always
"""
    profile = load_profile(write(tmp_path, "both.yaml", text))
    assert profile == Profile(
        name="both",
        description="Both directions",
        mailbox="wss://mailbox.example/v1",
        transit_relay="tcp:[::1]:4001",
        services=(ServiceSpec("ssh", parse_connect("unix:path=/run/ssh.sock"), 2222),),
        clients=(
            ClientSpec("web", parse_listen("tcp6:8080"), 8000),
            ClientSpec("any", parse_listen("tcp:0"), None),
        ),
        code="7-some-long-shared-passphrase",
        autostart=True,
        restart=RestartPolicy.ALWAYS,
    )
    assert profile.source == str(tmp_path / "both.yaml")
    assert "passphrase" not in repr(profile)  # the code stays out of logs


def test_defaults_and_null_values(tmp_path: Path):
    text = "description:\nmailbox:\ncode:\nclients:\n  - name: web\n    listen:\n"
    profile = load_profile(write(tmp_path, "d.yaml", text))
    assert (profile.description, profile.mailbox, profile.transit_relay) == (
        "",
        DEFAULT_MAILBOX,
        DEFAULT_TRANSIT_RELAY,
    )
    assert (profile.code, profile.code_length, profile.autostart) == (None, 2, False)
    assert profile.restart is RestartPolicy.ON_FAILURE
    listen = profile.clients[0].listen
    assert (listen.kind, listen.host, listen.port) == ("tcp", "127.0.0.1", 0)  # loopback


def test_addresses_are_read_as_written_not_as_yaml_numbers():
    # YAML 1.1 reads an unquoted 10:22 as the base-60 number 622.
    profile = parse_profile("services:\n  - {name: a, connect: 10:22}\n", name="x")
    assert (profile.services[0].connect.host, profile.services[0].connect.port) == ("10", 22)


def test_merge_keys_and_anchors_work():
    text = "services:\n  - &base {name: a, connect: 22}\n  - {<<: *base, name: b}\n"
    profile = parse_profile(text, name="m")
    assert [(s.name, s.connect.port) for s in profile.services] == [("a", 22), ("b", 22)]


def test_same_name_may_be_offered_and_wanted():
    profile = parse_profile(SSH + "clients:\n  - name: ssh\n", name="x")
    assert (profile.services[0].name, profile.clients[0].name) == ("ssh", "ssh")


def test_text_and_dict_inputs_give_the_same_profile():
    data = {"services": [{"name": "ssh", "connect": 22, "listen-port": 2222}], "code-length": 3}
    from_text = parse_profile(yaml.safe_dump(data), name="inline", source="<bus>")
    from_dict = profile_from_dict(data, name="inline")
    assert from_text == from_dict
    assert from_text.source == "<bus>" and from_dict.source == "<dict>"


def test_dict_errors_have_no_line():
    with pytest.raises(ProfileError) as info:
        profile_from_dict({"services": [{"name": "ssh", "connect": "nowhere:x"}]}, name="d")
    assert info.value.line is None
    assert str(info.value).startswith("<dict>: services[0].connect: ")
    with pytest.raises(ProfileError, match=r"^<dict>: unknown key '3'"):
        profile_from_dict({3: "x"}, name="d")
    with pytest.raises(ProfileError, match="profile name"):
        profile_from_dict({"services": []}, name="no/slashes")


def test_equal_content_means_equal_profiles(tmp_path: Path):
    first = load_profile(write(tmp_path, "a.yaml", SSH))
    (tmp_path / "copy").mkdir()
    again = load_profile(write(tmp_path / "copy", "a.yaml", "# a comment\n" + SSH))
    assert first == again and hash(first) == hash(again)
    changed = load_profile(write(tmp_path, "a.yaml", SSH + "    listen-port: 2222\n"))
    assert changed != first
    assert load_profile(write(tmp_path, "b.yaml", SSH)) != first  # another name


def test_changes_since_names_added_removed_and_changed(tmp_path: Path):
    write(tmp_path, "keep.yaml", SSH)
    write(tmp_path, "edit.yaml", SSH)
    write(tmp_path, "drop.yaml", SSH)
    before = load_profiles(tmp_path)
    write(tmp_path, "edit.yaml", SSH.replace("22", "2022"))
    write(tmp_path, "keep.yaml", SSH + "# touched, same content\n")
    (tmp_path / "drop.yaml").unlink()
    write(tmp_path, "new.yaml", SSH)
    changes = load_profiles(tmp_path).changes_since(before)
    assert (changes.added, changes.removed, changes.changed) == (("new",), ("drop",), ("edit",))


def test_one_bad_profile_never_stops_the_others(tmp_path: Path):
    write(tmp_path, "good.yaml", SSH)
    bad = write(tmp_path, "bad.yaml", SSH + "restart: sometimes\n")
    write(tmp_path, "also-good.yaml", "clients:\n  - name: web\n")
    write(tmp_path, "old.yml", SSH)
    write(tmp_path, "README", "not a profile")
    write(tmp_path, ".hidden.yaml", "not: [valid")
    (tmp_path / "dir.yaml").mkdir()
    found = load_profiles(tmp_path)
    assert sorted(found.profiles) == ["also-good", "good"]
    assert [str(e) for e in found.errors] == [
        f"{bad}:4: restart must be one of never, on-failure, always, found the text 'sometimes'",
        f"{tmp_path / 'dir.yaml'}: cannot read: Is a directory",
        f"{tmp_path / 'old.yml'}: ignored: profile files must end in .yaml",
    ]


def test_a_missing_directory_is_empty_and_a_file_is_an_error(tmp_path: Path):
    empty = load_profiles(tmp_path / "absent")
    assert (dict(empty.profiles), empty.errors) == ({}, ())
    not_dir = write(tmp_path, "file", "x")
    (error,) = load_profiles(not_dir).errors
    assert str(error).startswith(f"{not_dir}: cannot list profiles")


def test_profiles_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert profiles_dir() == tmp_path / "cfg" / "fowl" / "profiles"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for unusable in ("", "relative/path"):
        monkeypatch.setenv("XDG_CONFIG_HOME", unusable)
        assert profiles_dir() == tmp_path / "home" / ".config" / "fowl" / "profiles"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert profiles_dir() == tmp_path / "home" / ".config" / "fowl" / "profiles"
    (tmp_path / "home/.config/fowl/profiles").mkdir(parents=True)
    write(tmp_path / "home/.config/fowl/profiles", "mine.yaml", SSH)
    assert list(load_profiles().profiles) == ["mine"]


CODED = SSH + "code: 3-quiet-lantern-fjord\n"


@pytest.mark.parametrize(
    ("text", "mode", "warned"),
    [
        (CODED, 0o600, None),
        (CODED, 0o640, "other users can read its fixed code"),
        (CODED, 0o604, "other users can read its fixed code"),
        (SSH, 0o644, None),  # nothing secret in it
        (SSH, 0o620, "other users can change what it forwards"),
        (CODED, 0o666, "other users can read its fixed code and other users can change"),
    ],
)
def test_permission_warning(tmp_path: Path, text: str, mode: int, warned: str | None):
    path = write(tmp_path, "p.yaml", text, mode)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    warning = insecure_permission_warning(path)
    if warned is None:
        assert warning is None
    else:
        assert warning.startswith(f"{path}: {warned}")
        assert warning.endswith(f"chmod go-rwx {path}")
    found = load_profiles(tmp_path)
    # Every fixed code is also advised against, whatever its permissions.
    advice = fixed_code_advice(path, load_profile(path))
    assert found.warnings == tuple(w for w in (warning, advice) if w)
    assert (advice is not None) == (text == CODED)


def test_shipped_profiles_load_and_explain_themselves():
    paths = sorted((REPO / "fowld" / "data" / "examples").glob("*.yaml"))
    names = {p.stem for p in paths}
    assert {"ssh-share", "ssh-join", "tty-share", "web-preview"} <= names
    for path in paths:
        profile = load_profile(path)
        assert profile.description, path
        assert path.read_text().startswith("#"), f"{path} should open with a comment"
    found = load_profiles(REPO / "fowld" / "data" / "examples")
    assert found.errors == () and set(found.profiles) == names
    share, join = found.profiles["ssh-share"], found.profiles["ssh-join"]
    assert share.services[0].name == join.clients[0].name  # the two halves fit together
    assert share.services[0].connect.port == 22
    tty = found.profiles["tty-share"].services[0]
    assert (tty.connect.port, tty.listen_port) == (8000, 8000)
    web = found.profiles["web-preview"].clients[0]
    assert (web.listen.host, web.listen.port, web.connect_port) == ("127.0.0.1", 8080, 8080)


def test_the_error_shown_in_the_docs_is_real(tmp_path: Path):
    docs = (REPO / "docs" / "profiles.md").read_text()
    section = docs.split("## When a profile is wrong", 1)[1]
    example = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    shown = re.search(r"```text\n(.*?)\n```", section, re.S).group(1)
    _, error = error_of(tmp_path, example, name="share.yaml")
    assert shown == str(error).replace(str(tmp_path), "~/.config/fowl/profiles")


def test_the_docs_describe_every_key():
    docs = (REPO / "docs" / "profiles.md").read_text()
    for key in KEYS:
        assert f"`{key}`" in docs, key


# --- fuzzing: nothing but ProfileError, whatever the input --------------------------------------

STRUCTURE = [": ", ":", "\n", "  ", "    ", "- ", "-", "[", "]", "{", "}", ", ", "? ", "# c"]
YAML_FEATURES = ["&a ", "*a", "&b ", "*b", "<<: ", "'", '"', "|\n", ">-\n", "---\n", "...\n"]
TAGS = ["!!int ", "!!binary ", "!!str ", "!!bool ", "!!float ", "!!timestamp ", "!!null "]
TAGS += ["!!set ", "!!omap ", "!!seq ", "!!map ", "!x ", "%YAML 1.1\n"]
VALUES = ["tcp:", "unix:path=", "tcp6:", "22", "0", "70000", "2024-13-01", "1:30", "yes", "~"]
VALUES += ["null", "ws://a", "7-a-b", "never", "ssh", "interface=::1", "1e9", ".inf"]
ODD = ["\t", "\x00", "\u00e9", "\\", "\r"]
TOKENS = KEYS + STRUCTURE + YAML_FEATURES + TAGS + VALUES + ODD
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=5)
    | st.sampled_from(["tcp:localhost:22", "8080", "7-a-b", "always"])
)
nested = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8) | st.integers(), inner, max_size=5)
    ),
    max_leaves=25,
)
# Shaped like a profile, so the checks past the first level run too.
entry = st.dictionaries(st.sampled_from(KEYS), nested, max_size=4)
shaped = st.fixed_dictionaries(
    {},
    optional={
        "services": st.lists(entry, max_size=3),
        "clients": st.lists(entry, max_size=3),
        **{
            k: nested
            for k in (
                "description",
                "mailbox",
                "transit-relay",
                "code-length",
                "code",
                "autostart",
                "restart",
            )
        },
    },
)


def check_outcome(outcome, source: str, lines: int | None):
    """A Profile, or a ProfileError that says where: never anything else."""
    if isinstance(outcome, Profile):
        assert outcome.services or outcome.clients
        return
    assert isinstance(outcome, ProfileError), repr(outcome)
    assert str(outcome).startswith(source + ":")
    if lines is None or outcome.line is None:
        return
    assert 1 <= outcome.line <= lines


def attempt(parse, *args, **kwargs):
    try:
        return parse(*args, **kwargs)
    except ProfileError as e:
        return e


@given(st.text(max_size=200))
def test_fuzz_arbitrary_text(text: str):
    check_outcome(
        attempt(parse_profile, text, name="f", source="f.yaml"), "f.yaml", len(text.splitlines()) + 1
    )


@given(st.lists(st.sampled_from(TOKENS), max_size=40).map("".join))
def test_fuzz_yaml_like_text(text: str):
    check_outcome(
        attempt(parse_profile, text, name="f", source="f.yaml"), "f.yaml", len(text.splitlines()) + 1
    )


@given(nested | shaped)
def test_fuzz_nested_values(data):
    check_outcome(attempt(profile_from_dict, data, name="f"), "<dict>", None)


@given(shaped)
def test_fuzz_text_and_dict_agree(data):
    try:
        text = yaml.safe_dump(data)
    except yaml.YAMLError:
        return  # binary and other values YAML cannot write: nothing to compare
    from_text = attempt(parse_profile, text, name="f", source="f.yaml")
    from_dict = attempt(profile_from_dict, data, name="f")
    check_outcome(from_text, "f.yaml", len(text.splitlines()) + 1)
    assert type(from_text) is type(from_dict)
    if isinstance(from_dict, Profile):
        assert from_text == from_dict
