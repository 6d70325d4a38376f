"""``fowld --stdio``: one session driven by JSON lines on stdin/stdout.

Input and output kinds are those of upstream fowld 26.8, so glue programs
written for it run unchanged. Additions are additive: ``listen`` / ``connect``
endpoint strings on ``local`` / ``remote``, ``remove-local`` /
``remove-remote``, and ``status`` (with ``"watch": true`` to follow changes).
Every output line is one JSON object; logs go to stderr.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from fowld.engine import events
from fowld.engine.endpoints import (
    EndpointError,
    connect_address_for_port,
    listen_address_for_port,
    parse_connect,
    parse_listen,
)
from fowld.engine.forwarder import ForwardingError
from fowld.engine.session import Session, SessionError
from fowld.engine.status import SessionStatus

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
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise CommandError(f'"{name}" must be a port number 1-65535')
    return value


_COMMANDS: dict[str, tuple[Field, ...]] = {
    "allocate-code": (Field("length", int),),
    "set-code": (Field("code", str, True),),
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
    if kind == "allocate-code" and command.get("length") is not None and not 1 <= command["length"] <= 32:
        raise CommandError('allocate-code: "length" must be 1-32')
    return command


def render_event(event: events.Event) -> list[dict]:
    """The output lines (upstream's kinds and fields) for one session event."""
    match event:
        case events.Welcome(url, welcome):
            return [{"kind": "welcome", "url": url, "welcome": welcome}]
        case events.CodeAllocated(code):
            return [{"kind": "code-allocated", "code": code}]
        case events.PeerConnected(verifier, versions):
            return [{"kind": "peer-connected", "verifier": verifier, "versions": versions}]
        case events.ClientListening(name, listen, port):
            return [{"kind": "listening", "name": name, "listening_port": port, "listen": listen}]
        case events.ClientFailed(name, reason):
            return [{"kind": "error", "message": f"cannot listen for {name!r}: {reason}", "name": name}]
        case events.ClientStopped(name, reason):
            return [{"kind": "listener-stopped", "name": name, "reason": reason}]
        case events.ServiceReady(name, connect, local_port, _):
            return [{"kind": "awaiting-connect", "name": name, "local_port": local_port, "connect": connect}]
        case events.ServiceFailed(name, reason):
            return [{"kind": "listening-failed", "name": name, "reason": reason}]
        case events.Refused(what, name, reason):
            return [{"kind": "error", "message": f"refused {what}: {reason}", "refused": what, "name": name}]
        case events.StreamOpened(id, name, direction):
            return [{"kind": f"{direction.value}-connection", "service_name": name, "id": id}]
        case events.StreamBytes(id, into, out):
            lines = []
            if into:
                lines.append({"kind": "bytes-in", "id": id, "bytes": into})
            if out:
                lines.append({"kind": "bytes-out", "id": id, "bytes": out})
            return lines
        case events.StreamClosed(id, name, events.Direction.OUTGOING, _, _, reason, _):
            lines = []
            if reason is not None:
                lines.append({"kind": "outgoing-lost", "service_name": name, "id": id, "reason": reason})
            lines.append({"kind": "outgoing-done", "service_name": name, "id": id})
            return lines
        case events.StreamClosed(id, name, events.Direction.INCOMING, _, _, reason, _):
            if reason is not None:
                return [{"kind": "incoming-lost", "id": id, "reason": reason, "service_name": name}]
            return [{"kind": "incoming-done", "id": id, "service_name": name}]
        case events.Error(message):
            return [{"kind": "error", "message": message}]
        case events.Closed(result):
            return [{"kind": "closed", "result": result}]
    return []


def render_status(status: SessionStatus) -> dict:
    return {
        "kind": "status",
        "phase": status.phase.value,
        "mailbox": status.mailbox.value,
        "mailbox_url": status.mailbox_url,
        "code": status.code,
        "verifier": status.verifier,
        "peer": status.peer.value,
        "generation": status.generation,
        "path": status.path.value,
        "hint": status.hint,
        "reason": status.reason,
    }


@implementer(IHalfCloseableProtocol)
class StdioController(Protocol):
    """Reads commands from stdin, writes events to stdout, for one session."""

    def __init__(self, session: Session, on_done: Callable[[int], None]):
        self._session = session
        self._on_done = on_done
        self._watching = False
        self._line_number = 0
        self._buffer = b""
        self._discarding = False  # inside a line that was too long: drop it up to its end
        session.subscribe(self._event)
        session.when_closed().addCallback(self._closed)

    def send(self, message: dict) -> None:
        if self.transport is not None:
            self.transport.write(json.dumps(message).encode("utf-8") + b"\n")

    def _error(self, message: str) -> None:
        self.send({"kind": "error", "message": f"line {self._line_number}: {message}"})

    def _event(self, event: events.Event) -> None:
        if isinstance(event, events.StatusChanged):
            if self._watching:
                self.send(render_status(event.status))
            return
        for line in render_event(event):
            self.send(line)

    def dataReceived(self, data: bytes) -> None:
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        for line in lines:
            if self._discarding:
                self._discarding = False  # the end of the over-long line
                continue
            self._line_number += 1
            if len(line) > MAX_LINE:
                self._error(f"longer than {MAX_LINE} bytes")
            else:
                self._line(line)
        if len(self._buffer) > MAX_LINE and not self._discarding:
            self._line_number += 1
            self._error(f"longer than {MAX_LINE} bytes")
            self._discarding = True
        if self._discarding:
            self._buffer = b""

    def _line(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            self._run(parse_command(line))
        except (CommandError, SessionError, ForwardingError, EndpointError) as e:
            self._error(str(e))

    def _run(self, command: dict) -> None:
        kind, session = command["kind"], self._session
        if kind == "allocate-code":
            session.allocate_code(command.get("length"))
        elif kind == "set-code":
            session.set_code(command["code"])
        elif kind == "local":
            if command.get("listen") is not None:
                listen = parse_listen(command["listen"])
            else:
                listen = listen_address_for_port(
                    command.get("local_listen_port"), command.get("bind_interface")
                )
            session.add_client(command["name"], listen, command.get("remote_connect_port"))
        elif kind == "remote":
            if command.get("connect") is not None:
                address = parse_connect(command["connect"])
            elif command.get("local_connect_port") is not None:
                address = connect_address_for_port(
                    command["local_connect_port"], command.get("connect_address")
                )
            else:
                address = None  # connect where the peer asks, as upstream does
            session.add_service(
                command["name"], address, command.get("remote_listen_port"), command.get("connect_address")
            )
        elif kind == "remove-local":
            session.remove_client(command["name"])
        elif kind == "remove-remote":
            session.remove_service(command["name"])
        elif kind == "session-close":
            timeout = command.get("timeout")
            session.close(timeout=float(timeout) if timeout is not None else 10.0)
        elif kind == "ping":
            self._ping(command["ping_id"])
        elif kind == "status":
            self._watching = bool(command.get("watch", self._watching))
            self.send(render_status(session.status))

    def _ping(self, ping_id: Any) -> None:
        def pong(seconds: float) -> None:
            self.send({"kind": "pong", "ping_id": ping_id, "time_of_flight": seconds})

        def failed(failure: Failure) -> None:
            self.send({"kind": "error", "message": f"ping {ping_id}: {failure.getErrorMessage()}"})

        self._session.ping().addCallbacks(pong, failed)

    def readConnectionLost(self) -> None:
        # stdin closed: end the session gracefully (stdout stays open for "closed"), then exit
        self._session.close(reason="stdin closed")

    def writeConnectionLost(self) -> None:
        self._session.close(reason="stdout closed")

    def connectionLost(self, reason: Failure) -> None:
        self._session.close(reason="stdio closed")

    def _closed(self, result: str) -> None:
        self._on_done(0)
