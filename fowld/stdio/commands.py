"""``fowld --stdio`` input: one JSON command per line, validated.

Input kinds and fields are those of upstream fowld 26.8, so glue programs
written for it run unchanged; additions are additive (``listen`` / ``connect``
endpoint strings, ``remove-local`` / ``remove-remote``, ``status``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fowld.engine import rules
from fowld.engine.config import CLOSE_TIMEOUT

MAX_LINE = 65536
MAX_CLOSE_TIMEOUT = 3600


class CommandError(ValueError):
    """An input line that is not a valid command."""


@dataclass(frozen=True)
class Field:
    name: str
    kind: type | tuple[type, ...]
    required: bool = False


def _port(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if not rules.is_port(value):
        raise CommandError(f'"{name}" must be a port number {rules.PORT_TEXT}')
    return value


_COMMANDS: dict[str, tuple[Field, ...]] = {
    # "pair": ours, not upstream's: store a pairing of this name once the peer is connected
    "allocate-code": (Field("length", int), Field("pair", str)),
    "set-code": (Field("code", str, True), Field("pair", str)),
    "local": (
        Field("name", str, True),
        Field("local_listen_port", int),
        Field("remote_connect_port", int),
        Field("bind_interface", str),
        Field("listen", (str, int)),
    ),
    "remote": (
        Field("name", str, True),
        Field("local_connect_port", int),
        Field("remote_listen_port", int),
        Field("connect_address", str),
        Field("connect", (str, int)),
    ),
    "remove-local": (Field("name", str, True),),
    "remove-remote": (Field("name", str, True),),
    "session-close": (Field("timeout", (int, float)),),
    "ping": (Field("ping_id", (int, str), True),),
    "status": (Field("watch", bool),),
}
_PORT_FIELDS = {"local_listen_port", "remote_connect_port", "local_connect_port", "remote_listen_port"}


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_command(line: bytes | str) -> dict:
    """Validate one input line; returns the command as a dict with a "kind"."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError:
            raise CommandError("line is not UTF-8") from None
    try:
        command = json.loads(line, parse_constant=_refuse_constant)
    except ValueError as e:
        raise CommandError(f"invalid JSON: {e}") from None
    except RecursionError:
        raise CommandError("invalid JSON: nested too deeply") from None
    if not isinstance(command, dict):
        raise CommandError(f"expected a JSON object, got {type(command).__name__}")
    kind = command.get("kind")
    if not isinstance(kind, str):
        raise CommandError('missing "kind"')
    fields = _COMMANDS.get(kind)
    if fields is None:
        raise CommandError(f"unknown kind {kind!r} (known: {', '.join(sorted(_COMMANDS))})")
    for field in fields:
        value = command.get(field.name)
        if value is None:
            if field.required:
                raise CommandError(f'{kind}: "{field.name}" is missing')
            continue
        if isinstance(value, bool) and field.kind is not bool or not isinstance(value, field.kind):
            raise CommandError(f'{kind}: "{field.name}" has the wrong type ({type(value).__name__})')
        if field.name in _PORT_FIELDS:
            _port(value, field.name)
    timeout = command.get("timeout")
    if kind == "session-close" and timeout is not None and not 0 <= timeout <= MAX_CLOSE_TIMEOUT:
        raise CommandError(f'session-close: "timeout" must be 0-{MAX_CLOSE_TIMEOUT} seconds')
    if kind == "allocate-code" and command.get("length") is not None:
        try:
            rules.check_code_length(command["length"], 'allocate-code: "length"')
        except rules.RuleError as e:
            raise CommandError(str(e)) from None
    if command.get("pair") is not None:
        try:
            rules.check_name(command["pair"], f'{kind}: "pair"')
        except rules.RuleError as e:
            raise CommandError(str(e)) from None
    return command


def close_timeout(command: dict) -> float:
    """The timeout of a ``session-close`` command (validated), or the default."""
    timeout = command.get("timeout")
    return float(timeout) if timeout is not None else CLOSE_TIMEOUT
