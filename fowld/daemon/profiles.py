"""Forwarding profiles: YAML files declaring what one side offers and wants.

A profile at ``$XDG_CONFIG_HOME/fowl/profiles/NAME.yaml`` describes one
session: the services this side offers to the peer, the clients it wants from
the peer, and how to reach the mailbox. Everything is validated when the file
is loaded, and every problem is reported as ``FILE:LINE: what is wrong``.
"""

from __future__ import annotations

import difflib
import enum
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import yaml

from fowld.engine.config import DEFAULT_MAILBOX, DEFAULT_TRANSIT_RELAY
from fowld.engine.endpoints import Address, EndpointError, parse_connect, parse_listen

DEFAULT_CODE_LENGTH = 2
PROFILE_SUFFIX = ".yaml"
MAX_PROFILE_BYTES = 256 * 1024  # profiles are a few lines long; refuse anything absurd

# The schema nests three levels deep; the bounds stop alias loops and alias bombs.
_MAX_DEPTH = 16
_MAX_VALUES = 10_000

_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_CODE = re.compile(r"[0-9]+(-[A-Za-z0-9]+)+")
# magic-wormhole reads relay hints as tcp:HOST:PORT, with IPv6 literals in brackets.
_TRANSIT_RELAY = re.compile(r"tcp:(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:]+\]):(?P<port>[0-9]{1,5})")

# What YAML counts as a line break, so that every line number agrees with PyYAML's marks.
_YAML_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")

_TOP_KEYS = (
    "description",
    "mailbox",
    "transit-relay",
    "code-length",
    "services",
    "clients",
    "code",
    "autostart",
    "restart",
)
_SERVICE_KEYS = ("name", "connect", "listen-port")
_CLIENT_KEYS = ("name", "listen", "connect-port")


class ProfileError(ValueError):
    """A profile that cannot be used; ``str()`` reads ``SOURCE:LINE: problem``."""

    def __init__(self, source: str, line: int | None, problem: str) -> None:
        self.source = source
        self.line = line  # None when the input has no lines (dicts, file names)
        self.problem = problem
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {problem}")


class RestartPolicy(enum.Enum):
    NEVER = "never"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"


@dataclass(frozen=True)
class ServiceSpec:
    """A service offered to the peer: its streams end at ``connect``."""

    name: str
    connect: Address
    listen_port: int | None = None  # port the peer should listen on


@dataclass(frozen=True)
class ClientSpec:
    """A service wanted from the peer: local programs reach it at ``listen``."""

    name: str
    listen: Address
    connect_port: int | None = None  # port the peer should connect to


@dataclass(frozen=True)
class Profile:
    """A validated profile. Equal profiles describe the same session, wherever they came from."""

    name: str
    services: tuple[ServiceSpec, ...] = ()
    clients: tuple[ClientSpec, ...] = ()
    description: str = ""
    mailbox: str = DEFAULT_MAILBOX
    transit_relay: str = DEFAULT_TRANSIT_RELAY
    code_length: int = DEFAULT_CODE_LENGTH
    code: str | None = field(default=None, repr=False)  # a secret: keep it out of logs
    autostart: bool = False
    restart: RestartPolicy = RestartPolicy.ON_FAILURE
    source: str = field(default="<string>", compare=False)


@dataclass(frozen=True)
class ProfileChanges:
    """Names of profiles that appeared, disappeared or changed between two loads."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProfileSet:
    """Everything found in a profiles directory: the good, the bad and the risky."""

    profiles: Mapping[str, Profile] = field(default_factory=dict)
    errors: tuple[ProfileError, ...] = ()
    warnings: tuple[str, ...] = ()

    def changes_since(self, previous: ProfileSet) -> ProfileChanges:
        old, new = previous.profiles, self.profiles
        return ProfileChanges(
            added=tuple(sorted(new.keys() - old.keys())),
            removed=tuple(sorted(old.keys() - new.keys())),
            changed=tuple(sorted(n for n in new.keys() & old.keys() if new[n] != old[n])),
        )


# --- Reading: YAML nodes or Python objects become one located tree -------------------------


@dataclass(frozen=True)
class _Value:
    """One value of a profile and the line it came from (None when there are no lines)."""

    data: object  # a scalar, a list of _Value ("list"), or a list of _Entry ("mapping")
    line: int | None
    shape: str  # "scalar", "list" or "mapping"
    text: str | None = None  # a YAML scalar as written, before YAML typed it


@dataclass(frozen=True)
class _Entry:
    key: str
    key_line: int | None
    value: _Value


class _Reader:
    """Builds the located tree, bounding depth and size whatever the input holds."""

    def __init__(self, source: str, loader: yaml.SafeLoader | None = None) -> None:
        self.source = source
        self.loader = loader
        self.budget = _MAX_VALUES

    def _spend(self, line: int | None, depth: int) -> None:
        self.budget -= 1
        if self.budget < 0:
            raise ProfileError(self.source, line, f"too many values (more than {_MAX_VALUES})")
        if depth > _MAX_DEPTH:
            raise ProfileError(self.source, line, "values are nested too deeply")

    def from_node(self, node: yaml.Node, depth: int = 0) -> _Value:
        line = node.start_mark.line + 1
        self._spend(line, depth)
        if isinstance(node, yaml.ScalarNode):
            try:
                data = self.loader.construct_object(node, deep=True)
            except Exception as e:  # PyYAML's typed constructors raise anything on bad text
                reason = getattr(e, "problem", None) or str(e)
                raise ProfileError(
                    self.source, line, f"cannot read {_shorten(node.value)!r}: {reason}"
                ) from None
            return _Value(data, line, "scalar", text=node.value)
        if isinstance(node, yaml.SequenceNode):
            self._check_tag(node, "tag:yaml.org,2002:seq", line)
            return _Value([self.from_node(n, depth + 1) for n in node.value], line, "list")
        entries = [
            _Entry(key_node.value, key_node.start_mark.line + 1, self.from_node(value, depth + 1))
            for key_node, value in self._pairs(node, depth)
        ]
        return _Value(entries, line, "mapping")

    def _pairs(self, node: yaml.MappingNode, depth: int) -> list[tuple[yaml.ScalarNode, yaml.Node]]:
        """A mapping's key/value nodes with ``<<`` merge keys applied.

        Keys written in the mapping win over merged ones, and earlier merged mappings win
        over later ones, as YAML's merge key type says. Keys written twice stay twice, so
        that the checks can report them.
        """
        line = node.start_mark.line + 1
        self._spend(line, depth)
        self._check_tag(node, "tag:yaml.org,2002:map", line)
        own, merged = [], []
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise ProfileError(self.source, key_line, "a key must be a plain word")
            if key_node.tag != "tag:yaml.org,2002:merge":
                own.append((key_node, value_node))
                continue
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    raise ProfileError(self.source, key_line, "'<<' can only merge mappings")
                merged.extend(self._pairs(source, depth + 1))
        seen = {key_node.value for key_node, _ in own}
        for key_node, value_node in merged:
            if key_node.value not in seen:
                seen.add(key_node.value)
                own.append((key_node, value_node))
        return own

    def _check_tag(self, node: yaml.Node, expected: str, line: int) -> None:
        if node.tag != expected:
            raise ProfileError(self.source, line, f"unsupported YAML tag {node.tag!r}")

    def from_python(self, obj: object, depth: int = 0) -> _Value:
        self._spend(None, depth)
        if isinstance(obj, Mapping):
            entries = [
                _Entry(k if isinstance(k, str) else repr(k), None, self.from_python(v, depth + 1))
                for k, v in obj.items()
            ]
            return _Value(entries, None, "mapping")
        if isinstance(obj, list | tuple):
            return _Value([self.from_python(v, depth + 1) for v in obj], None, "list")
        return _Value(obj, None, "scalar")


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(value: _Value) -> str:
    """What a value is, in the words of someone writing YAML."""
    if value.shape != "scalar":
        return f"a {value.shape}"
    data = value.data
    if data is None:
        return "nothing (null)"
    if isinstance(data, bool):
        return f"{str(data).lower()} (a yes/no value)"
    if isinstance(data, int | float):
        return f"the number {data}"
    if isinstance(data, str):
        return f"the text {_shorten(data)!r}"
    return f"a value of type {type(data).__name__}"


# --- Checking: the located tree becomes a Profile -------------------------------------------


class _Checker:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, line: int | None, problem: str) -> NoReturn:
        raise ProfileError(self.source, line, problem)

    def mapping(self, value: _Value, where: str, known: tuple[str, ...]) -> dict[str, _Entry]:
        """Entries by key; null values count as absent. Rejects duplicate and unknown keys."""
        if value.shape != "mapping":
            self.fail(value.line, f"{where} must be a mapping of keys to values, found {_describe(value)}")
        entries: dict[str, _Entry] = {}
        prefix = f"{where}: " if where != "the profile" else ""
        for entry in value.data:
            if entry.key not in known:
                self.fail(entry.key_line, f"{prefix}{_unknown_key(entry.key, known)}")
            if entry.key in entries:
                first = entries[entry.key].key_line
                seen = f" (first at line {first})" if first is not None else ""
                self.fail(entry.key_line, f"{prefix}key {entry.key!r} appears twice{seen}")
            entries[entry.key] = entry
        return {k: e for k, e in entries.items() if not _is_null(e.value)}

    def text(self, entry: _Entry, where: str) -> str:
        value = entry.value
        if value.shape != "scalar" or not isinstance(value.data, str):
            self.fail(value.line, f"{where} must be text, found {_describe(value)}")
        return value.data

    def number(self, entry: _Entry, where: str, low: int, high: int) -> int:
        value = entry.value
        data = value.data
        if value.shape != "scalar" or isinstance(data, bool) or not isinstance(data, int):
            self.fail(value.line, f"{where} must be a whole number, found {_describe(value)}")
        if not low <= data <= high:
            self.fail(value.line, f"{where} must be between {low} and {high}, found {data}")
        return data

    def boolean(self, entry: _Entry, where: str) -> bool:
        value = entry.value
        if value.shape != "scalar" or not isinstance(value.data, bool):
            self.fail(value.line, f"{where} must be true or false, found {_describe(value)}")
        return value.data

    def address(self, entry: _Entry, where: str, parse: Callable[[str | int], Address]) -> Address:
        value = entry.value
        data = value.data
        if value.shape != "scalar" or isinstance(data, bool) or not isinstance(data, str | int):
            self.fail(value.line, f"{where} must be an address, found {_describe(value)}")
        try:
            # As written: YAML 1.1 would read 10:22 as the base-60 number 622.
            return parse(value.text if value.text is not None else data)
        except EndpointError as e:
            self.fail(value.line, f"{where}: {e}")

    def name(self, entry: _Entry, where: str) -> str:
        name = self.text(entry, where)
        if not _NAME.fullmatch(name):
            self.fail(entry.value.line, f"{where} {name!r} {_NAME_RULE}")
        return name

    def items(self, entries: dict[str, _Entry], key: str) -> list[_Value]:
        if key not in entries:
            return []
        value = entries[key].value
        if value.shape != "list":
            self.fail(value.line, f"{key} must be a list, found {_describe(value)}")
        return value.data

    def required(self, entries: dict[str, _Entry], key: str, where: str, line: int | None) -> _Entry:
        if key not in entries:
            self.fail(line, f"{where} has no {key!r}")
        return entries[key]


_NAME_RULE = "must be 1-64 characters of letters, digits, '.', '_' or '-'"


def _is_null(value: _Value) -> bool:
    return value.shape == "scalar" and value.data is None


def _unknown_key(key: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key.replace("_", "-").lower(), known, n=1, cutoff=0.6)
    if close:
        return f"unknown key {key!r} (did you mean {close[0]!r}?)"
    return f"unknown key {key!r} (known keys: {', '.join(known)})"


def _check_unique(check: _Checker, found: list[tuple[object, str, _Entry]]) -> None:
    """Fail on the second of two entries sharing a value (names, ports, listen addresses)."""
    first_lines: dict[object, int | None] = {}
    for key, where, entry in found:
        if key in first_lines:
            first = first_lines[key]
            seen = f" (first at line {first})" if first is not None else ""
            check.fail(entry.value.line, f"{where}: {key!r} is used twice{seen}")
        first_lines[key] = entry.value.line


def _services(check: _Checker, top: dict[str, _Entry]) -> tuple[ServiceSpec, ...]:
    specs, names, ports = [], [], []
    for i, item in enumerate(check.items(top, "services")):
        where = f"services[{i}]"
        entries = check.mapping(item, where, _SERVICE_KEYS)
        name_entry = check.required(entries, "name", where, item.line)
        connect_entry = check.required(entries, "connect", where, item.line)
        name = check.name(name_entry, f"{where}.name")
        connect = check.address(connect_entry, f"{where}.connect", parse_connect)
        port = None
        if "listen-port" in entries:
            port = check.number(entries["listen-port"], f"{where}.listen-port", 1, 65535)
            ports.append((port, f"{where}.listen-port", entries["listen-port"]))
        names.append((name, f"{where}.name", name_entry))
        specs.append(ServiceSpec(name=name, connect=connect, listen_port=port))
    _check_unique(check, names)
    _check_unique(check, ports)
    return tuple(specs)


def _clients(check: _Checker, top: dict[str, _Entry]) -> tuple[ClientSpec, ...]:
    specs, names, listeners = [], [], []
    for i, item in enumerate(check.items(top, "clients")):
        where = f"clients[{i}]"
        entries = check.mapping(item, where, _CLIENT_KEYS)
        name_entry = check.required(entries, "name", where, item.line)
        name = check.name(name_entry, f"{where}.name")
        listen = parse_listen("tcp:0")
        if "listen" in entries:
            listen = check.address(entries["listen"], f"{where}.listen", parse_listen)
            if listen.port != 0:  # port 0 picks a fresh port each time: never a clash
                listeners.append((listen.spec, f"{where}.listen", entries["listen"]))
        port = None
        if "connect-port" in entries:
            port = check.number(entries["connect-port"], f"{where}.connect-port", 1, 65535)
        names.append((name, f"{where}.name", name_entry))
        specs.append(ClientSpec(name=name, listen=listen, connect_port=port))
    _check_unique(check, names)
    _check_unique(check, listeners)
    return tuple(specs)


def _mailbox(check: _Checker, entry: _Entry) -> str:
    url = check.text(entry, "mailbox").strip()
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("ws", "wss") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a malformed port or IPv6 literal
        valid = False
    if not valid or any(c.isspace() for c in url):
        check.fail(entry.value.line, f"mailbox {url!r} must be a ws:// or wss:// URL")
    return url


def _transit_relay(check: _Checker, entry: _Entry) -> str:
    relay = check.text(entry, "transit-relay").strip()
    m = _TRANSIT_RELAY.fullmatch(relay)
    if not m or not 1 <= int(m.group("port")) <= 65535:
        check.fail(entry.value.line, f"transit-relay {relay!r} must look like tcp:HOST:PORT")
    return relay


def _code(check: _Checker, entry: _Entry) -> str:
    code = check.text(entry, "code").strip()
    if not _CODE.fullmatch(code):
        # The code is a secret: say what is wrong without repeating it.
        check.fail(entry.value.line, "code must look like NUMBER-word-word..., e.g. 7-guitarist-revenge")
    return code


def _restart(check: _Checker, entry: _Entry) -> RestartPolicy:
    allowed = ", ".join(p.value for p in RestartPolicy)
    value = entry.value
    if value.shape == "scalar" and isinstance(value.data, str):
        try:
            return RestartPolicy(value.data)
        except ValueError:
            pass
    check.fail(value.line, f"restart must be one of {allowed}, found {_describe(value)}")


def _profile(root: _Value, name: str, source: str) -> Profile:
    check = _Checker(source)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        check.fail(None, f"profile name {name!r} {_NAME_RULE}")
    top = check.mapping(root, "the profile", _TOP_KEYS)
    fields: dict[str, object] = {}
    if "description" in top:
        fields["description"] = check.text(top["description"], "description")
    if "mailbox" in top:
        fields["mailbox"] = _mailbox(check, top["mailbox"])
    if "transit-relay" in top:
        fields["transit_relay"] = _transit_relay(check, top["transit-relay"])
    if "code-length" in top:
        fields["code_length"] = check.number(top["code-length"], "code-length", 1, 8)
    services = _services(check, top)
    clients = _clients(check, top)
    if not services and not clients:
        line = next((top[k].key_line for k in ("services", "clients") if k in top), root.line)
        check.fail(line, "a profile must offer at least one service or want at least one client")
    if "code" in top:
        fields["code"] = _code(check, top["code"])
        if "code-length" in top:
            check.fail(top["code-length"].key_line, "code-length has no effect when code is set")
    if "autostart" in top:
        fields["autostart"] = check.boolean(top["autostart"], "autostart")
        if fields["autostart"] and "code" not in top:
            check.fail(top["autostart"].key_line, "autostart needs a fixed code (set 'code')")
    if "restart" in top:
        fields["restart"] = _restart(check, top["restart"])
    return Profile(name=name, services=services, clients=clients, source=source, **fields)


# --- Public entry points ---------------------------------------------------------------------


def _yaml_error(source: str, text: str, e: yaml.YAMLError) -> ProfileError:
    if isinstance(e, yaml.reader.ReaderError):
        line = len(_YAML_LINE_BREAK.findall(text[: e.position])) + 1
        char = f" (character #x{e.character:04x})" if isinstance(e.character, int) else ""
        return ProfileError(source, line, f"invalid YAML: {e.reason}{char}")
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        what = ", ".join(part for part in (e.context, e.problem) if part)
        return ProfileError(source, line, f"invalid YAML: {what}")
    return ProfileError(source, None, f"invalid YAML: {e}")


def parse_profile(text: str, name: str, source: str = "<string>") -> Profile:
    """Validate a profile written as YAML text."""
    try:
        loader = yaml.SafeLoader(text)  # checks for unprintable characters already
    except yaml.YAMLError as e:
        raise _yaml_error(source, text, e) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise ProfileError(source, 1, "the profile is empty")
        return _profile(_Reader(source, loader).from_node(node), name, source)
    except yaml.YAMLError as e:
        raise _yaml_error(source, text, e) from None
    except RecursionError:
        raise ProfileError(source, None, "values are nested too deeply") from None
    finally:
        loader.dispose()


def profile_from_dict(data: Mapping, name: str, source: str = "<dict>") -> Profile:
    """Validate a profile given as Python values (as decoded from YAML, JSON or D-Bus)."""
    return _profile(_Reader(source).from_python(data), name, source)


def load_profile(path: str | os.PathLike) -> Profile:
    """Load and validate one profile file; its name is the file name without ``.yaml``."""
    path = Path(path)
    source = str(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_PROFILE_BYTES + 1)
    except OSError as e:
        raise ProfileError(source, None, f"cannot read: {e.strerror or e}") from None
    if len(raw) > MAX_PROFILE_BYTES:
        raise ProfileError(source, None, f"larger than {MAX_PROFILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ProfileError(source, line, "not valid UTF-8 text") from None
    return parse_profile(text, name=path.stem, source=source)


def profiles_dir() -> Path:
    """Where profiles live: ``$XDG_CONFIG_HOME/fowl/profiles``, by default under ``~/.config``."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    # The XDG spec says relative paths are invalid and must be ignored.
    config = Path(base) if os.path.isabs(base) else Path.home() / ".config"
    return config / "fowl" / "profiles"


def insecure_permission_warning(path: str | os.PathLike, profile: Profile | None = None) -> str | None:
    """A warning when other users could read a profile's code or change the profile."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    problems = []
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        if profile is None:
            try:
                profile = load_profile(path)
            except ProfileError:
                return None  # reported as an error by whoever loads it
        if profile.code is not None:
            problems.append("other users can read its fixed code")
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        problems.append("other users can change what it forwards")
    if not problems:
        return None
    return f"{path}: {' and '.join(problems)}; fix with: chmod go-rwx {path}"


def load_profiles(directory: str | os.PathLike | None = None) -> ProfileSet:
    """Load every ``*.yaml`` profile in a directory; a bad file never stops the others."""
    directory = Path(directory) if directory is not None else profiles_dir()
    try:
        paths = sorted(p for p in directory.iterdir() if not p.name.startswith("."))
    except FileNotFoundError:
        return ProfileSet()
    except OSError as e:
        problem = f"cannot list profiles: {e.strerror or e}"
        return ProfileSet(errors=(ProfileError(str(directory), None, problem),))
    profiles, errors, warnings = {}, [], []
    for path in paths:
        if path.suffix == ".yml":
            problem = f"ignored: profile files must end in {PROFILE_SUFFIX}"
            errors.append(ProfileError(str(path), None, problem))
            continue
        if path.suffix != PROFILE_SUFFIX:
            continue
        try:
            profile = load_profile(path)
        except ProfileError as e:
            errors.append(e)
            continue
        profiles[profile.name] = profile
        if warning := insecure_permission_warning(path, profile):
            warnings.append(warning)
    return ProfileSet(profiles=profiles, errors=tuple(errors), warnings=tuple(warnings))
