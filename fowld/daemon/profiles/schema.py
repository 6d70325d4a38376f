"""Checking a profile: the tree of values becomes a ``Profile``, or a ``FILE:LINE`` error."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import NoReturn
from urllib.parse import urlsplit

from fowld.daemon.profiles.model import (
    BUILT_IN_DEFAULTS,
    ClientSpec,
    Profile,
    ProfileDefaults,
    ProfileError,
    RestartPolicy,
    ServiceSpec,
)
from fowld.daemon.profiles.reader import Entry, Value, describe
from fowld.engine import rules
from fowld.engine.endpoints import Address, EndpointError, parse_connect, parse_listen

# magic-wormhole reads relay hints as tcp:HOST:PORT, with IPv6 literals in brackets.
_TRANSIT_RELAY = re.compile(r"tcp:(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:]+\]):(?P<port>[0-9]{1,5})")

_TOP_KEYS = (
    "description",
    "mailbox",
    "transit-relay",
    "code-length",
    "services",
    "clients",
    "code",
    "peer",
    "lifetime",
    "autostart",
    "restart",
)
_SERVICE_KEYS = ("name", "connect", "listen-port")
_CLIENT_KEYS = ("name", "listen", "connect-port")
_SETTINGS_KEYS = ("mailbox", "transit-relay")


class _Checker:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, line: int | None, problem: str) -> NoReturn:
        raise ProfileError(self.source, line, problem)

    def mapping(self, value: Value, where: str, known: tuple[str, ...]) -> dict[str, Entry]:
        """Entries by key; null values count as absent. Rejects duplicate and unknown keys."""
        if value.shape != "mapping":
            self.fail(value.line, f"{where} must be a mapping of keys to values, found {describe(value)}")
        entries: dict[str, Entry] = {}
        prefix = "" if where.startswith("the ") else f"{where}: "  # the whole file needs no prefix
        for entry in value.data:
            if entry.key not in known:
                self.fail(entry.key_line, f"{prefix}{_unknown_key(entry.key, known)}")
            if entry.key in entries:
                first = entries[entry.key].key_line
                seen = f" (first at line {first})" if first is not None else ""
                self.fail(entry.key_line, f"{prefix}key {entry.key!r} appears twice{seen}")
            entries[entry.key] = entry
        return {k: e for k, e in entries.items() if not _is_null(e.value)}

    def text(self, entry: Entry, where: str) -> str:
        value = entry.value
        if value.shape != "scalar" or not isinstance(value.data, str):
            self.fail(value.line, f"{where} must be text, found {describe(value)}")
        return value.data

    def number(self, entry: Entry, where: str, low: int, high: int) -> int:
        value = entry.value
        data = value.data
        if value.shape != "scalar" or isinstance(data, bool) or not isinstance(data, int):
            self.fail(value.line, f"{where} must be a whole number, found {describe(value)}")
        if not low <= data <= high:
            self.fail(value.line, f"{where} must be between {low} and {high}, found {data}")
        return data

    def boolean(self, entry: Entry, where: str) -> bool:
        value = entry.value
        if value.shape != "scalar" or not isinstance(value.data, bool):
            self.fail(value.line, f"{where} must be true or false, found {describe(value)}")
        return value.data

    def address(self, entry: Entry, where: str, parse: Callable[[str | int], Address]) -> Address:
        value = entry.value
        data = value.data
        if value.shape != "scalar" or isinstance(data, bool) or not isinstance(data, str | int):
            self.fail(value.line, f"{where} must be an address, found {describe(value)}")
        try:
            # As written: YAML 1.1 would read 10:22 as the base-60 number 622.
            return parse(value.text if value.text is not None else data)
        except EndpointError as e:
            self.fail(value.line, f"{where}: {e}")

    def name(self, entry: Entry, where: str) -> str:
        name = self.text(entry, where)
        if not rules.NAME_PATTERN.fullmatch(name):
            self.fail(entry.value.line, f"{where} {name!r} {rules.NAME_RULE}")
        return name

    def items(self, entries: dict[str, Entry], key: str) -> list[Value]:
        if key not in entries:
            return []
        value = entries[key].value
        if value.shape != "list":
            self.fail(value.line, f"{key} must be a list, found {describe(value)}")
        return value.data

    def required(self, entries: dict[str, Entry], key: str, where: str, line: int | None) -> Entry:
        if key not in entries:
            self.fail(line, f"{where} has no {key!r}")
        return entries[key]


def _is_null(value: Value) -> bool:
    return value.shape == "scalar" and value.data is None


def _unknown_key(key: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key.replace("_", "-").lower(), known, n=1, cutoff=0.6)
    if close:
        return f"unknown key {key!r} (did you mean {close[0]!r}?)"
    return f"unknown key {key!r} (known keys: {', '.join(known)})"


def _check_unique(check: _Checker, found: list[tuple[object, str, Entry]]) -> None:
    """Fail on the second of two entries sharing a value (names, ports, listen addresses)."""
    first_lines: dict[object, int | None] = {}
    for key, where, entry in found:
        if key in first_lines:
            first = first_lines[key]
            seen = f" (first at line {first})" if first is not None else ""
            check.fail(entry.value.line, f"{where}: {key!r} is used twice{seen}")
        first_lines[key] = entry.value.line


def _services(check: _Checker, top: dict[str, Entry]) -> tuple[ServiceSpec, ...]:
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
            port = check.number(entries["listen-port"], f"{where}.listen-port", *rules.PORT_RANGE)
            ports.append((port, f"{where}.listen-port", entries["listen-port"]))
        names.append((name, f"{where}.name", name_entry))
        specs.append(ServiceSpec(name=name, connect=connect, listen_port=port))
    _check_unique(check, names)
    _check_unique(check, ports)
    return tuple(specs)


def _clients(check: _Checker, top: dict[str, Entry]) -> tuple[ClientSpec, ...]:
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
            port = check.number(entries["connect-port"], f"{where}.connect-port", *rules.PORT_RANGE)
        names.append((name, f"{where}.name", name_entry))
        specs.append(ClientSpec(name=name, listen=listen, connect_port=port))
    _check_unique(check, names)
    _check_unique(check, listeners)
    return tuple(specs)


def _mailbox(check: _Checker, entry: Entry) -> str:
    url = check.text(entry, "mailbox").strip()
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("ws", "wss") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a malformed port or IPv6 literal
        valid = False
    if not valid or any(c.isspace() for c in url):
        check.fail(entry.value.line, f"mailbox {url!r} must be a ws:// or wss:// URL")
    return url


def _transit_relay(check: _Checker, entry: Entry) -> str:
    relay = check.text(entry, "transit-relay").strip()
    m = _TRANSIT_RELAY.fullmatch(relay)
    if not m or not rules.is_port(int(m.group("port"))):
        check.fail(entry.value.line, f"transit-relay {relay!r} must look like tcp:HOST:PORT")
    return relay


def _code(check: _Checker, entry: Entry) -> str:
    code = check.text(entry, "code").strip()
    if not rules.CODE_PATTERN.fullmatch(code):
        # The code is a secret: say what is wrong without repeating it.
        check.fail(entry.value.line, f"code must look like {rules.CODE_SHAPE}")
    return code


def _duration(check: _Checker, entry: Entry, where: str) -> float:
    value = entry.value
    data = value.text if value.text is not None else value.data
    try:
        return rules.parse_duration(data, where)
    except rules.RuleError as e:
        check.fail(value.line, str(e))


def _restart(check: _Checker, entry: Entry) -> RestartPolicy:
    allowed = ", ".join(p.value for p in RestartPolicy)
    value = entry.value
    if value.shape == "scalar" and isinstance(value.data, str):
        try:
            return RestartPolicy(value.data)
        except ValueError:
            pass
    check.fail(value.line, f"restart must be one of {allowed}, found {describe(value)}")


def _meeting_places(check: _Checker, top: dict[str, Entry], defaults: ProfileDefaults) -> dict[str, str]:
    """The mailbox and transit relay the entries name, else those of ``defaults``."""
    return {
        "mailbox": _mailbox(check, top["mailbox"]) if "mailbox" in top else defaults.mailbox,
        "transit_relay": (
            _transit_relay(check, top["transit-relay"]) if "transit-relay" in top else defaults.transit_relay
        ),
    }


def check_settings(root: Value, source: str, base: ProfileDefaults = BUILT_IN_DEFAULTS) -> ProfileDefaults:
    """fowld's own settings: the mailbox and transit relay of profiles that name none.

    What ``root`` leaves out stays as in ``base``.
    """
    check = _Checker(source)
    top = check.mapping(root, "the settings file", _SETTINGS_KEYS)
    return ProfileDefaults(**_meeting_places(check, top, base))


def check_profile(
    root: Value, name: str, source: str, defaults: ProfileDefaults = BUILT_IN_DEFAULTS
) -> Profile:
    check = _Checker(source)
    if not isinstance(name, str) or not rules.NAME_PATTERN.fullmatch(name):
        check.fail(None, f"profile name {name!r} {rules.NAME_RULE}")
    top = check.mapping(root, "the profile", _TOP_KEYS)
    fields: dict[str, object] = _meeting_places(check, top, defaults)
    if "description" in top:
        fields["description"] = check.text(top["description"], "description")
    if "code-length" in top:
        fields["code_length"] = check.number(top["code-length"], "code-length", *rules.CODE_LENGTH_RANGE)
    services = _services(check, top)
    clients = _clients(check, top)
    if not services and not clients:
        line = next((top[k].key_line for k in ("services", "clients") if k in top), root.line)
        check.fail(line, "a profile must offer at least one service or want at least one client")
    if "code" in top:
        fields["code"] = _code(check, top["code"])
        if "code-length" in top:
            check.fail(top["code-length"].key_line, "code-length has no effect when code is set")
    if "peer" in top:
        fields["peer"] = check.name(top["peer"], "peer")
        if "code" in top:
            check.fail(top["peer"].key_line, "peer and code cannot be combined: a pairing needs no code")
    if "lifetime" in top:
        fields["lifetime"] = _duration(check, top["lifetime"], "lifetime")
    if "autostart" in top:
        fields["autostart"] = check.boolean(top["autostart"], "autostart")
        if fields["autostart"] and "code" not in top and "peer" not in top:
            check.fail(
                top["autostart"].key_line, "autostart needs a pairing (set 'peer') or a fixed code"
            )
    if "restart" in top:
        fields["restart"] = _restart(check, top["restart"])
    return Profile(name=name, services=services, clients=clients, source=source, **fields)
