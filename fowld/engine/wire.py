"""The peer-to-peer wire format, as spoken by upstream fowl 26.8.

Every structured message is a 2-byte big-endian length followed by a msgpack
map with string keys. Two Dilation subprotocols carry them:

- ``fowl-commands``: the service side asks ``request-listener``; the client
  side answers ``listener-response``.
- ``fowl``: a forwarded stream opens with ``{"unique-name": NAME}`` and the
  service side answers ``{"connected": bool, "reason": TEXT}``; raw bytes follow.

Everything that comes from the peer is validated here, so the rest of fowld
only ever sees well-formed values (or a ``ProtocolError`` saying what was wrong).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import msgpack

from fowld.engine import rules

CONTROL_SUBPROTOCOL = "fowl-commands"
STREAM_SUBPROTOCOL = "fowl"
MAX_MESSAGE = 0xFFFF  # the length prefix is 16 bits
MAX_NAME = 255  # longer service names are refused, keeping every reply small
_LENGTH = struct.Struct("!H")


class ProtocolError(ValueError):
    """A peer message that breaks the wire protocol."""


def pack(message: dict) -> bytes:
    body = msgpack.packb(message, use_bin_type=True)
    if len(body) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(body)} bytes exceeds {MAX_MESSAGE}")
    return _LENGTH.pack(len(body)) + body


def _decode(body: bytes) -> dict:
    try:
        message = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as e:  # msgpack raises many exception types for bad input
        raise ProtocolError(f"undecodable msgpack: {type(e).__name__}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"expected a msgpack map, got {type(message).__name__}")
    return message


class FrameReader:
    """Splits a byte stream into messages, holding at most one partial frame."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[dict]:
        """Return the complete messages in ``data``; a bad one raises ``ProtocolError``."""
        self._buffer += data
        messages = []
        while len(self._buffer) >= 2:
            (length,) = _LENGTH.unpack_from(self._buffer)
            if len(self._buffer) < 2 + length:
                break
            body, self._buffer = self._buffer[2 : 2 + length], self._buffer[2 + length :]
            messages.append(_decode(body))
        return messages

    def read_one(self, data: bytes) -> dict | None:
        """The first complete message, if there is one yet; what follows it stays buffered.

        For handshakes: after the opening message a stream carries raw bytes,
        which must not be parsed as frames.
        """
        self._buffer += data
        if len(self._buffer) < 2:
            return None
        (length,) = _LENGTH.unpack_from(self._buffer)
        if len(self._buffer) < 2 + length:
            return None
        body, self._buffer = self._buffer[2 : 2 + length], self._buffer[2 + length :]
        return _decode(body)

    def take_rest(self) -> bytes:
        """Bytes after the last complete message (stream data that followed a header)."""
        rest, self._buffer = self._buffer, b""
        return rest


def _name(message: dict, key: str = "unique-name") -> str:
    name = message.get(key)
    if not isinstance(name, str) or not name:
        raise ProtocolError(f'"{key}" must be a non-empty string')
    if len(name) > MAX_NAME:
        raise ProtocolError(f'"{key}" is longer than {MAX_NAME} characters')
    return name


def _optional_port(message: dict, key: str) -> int | None:
    port = message.get(key)
    if port is None:
        return None
    if not rules.is_port(port):
        raise ProtocolError(f'"{key}" must be a port number {rules.PORT_TEXT} or nil')
    return port


def _optional_reason(message: dict) -> str:
    reason = message.get("reason", "no reason given")
    return reason[:1000] if isinstance(reason, str) else repr(reason)[:1000]


# --- fowl-commands -----------------------------------------------------------


@dataclass(frozen=True)
class RequestListener:
    name: str
    listen_port: int | None

    def encode(self) -> bytes:
        return pack({"kind": "request-listener", "unique-name": self.name, "listen-port": self.listen_port})


@dataclass(frozen=True)
class ListenerResponse:
    name: str
    listening: bool
    desired_port: int | None = None
    reason: str | None = None

    def encode(self) -> bytes:
        message: dict = {
            "kind": "listener-response",
            "unique-name": self.name,
            "listening": self.listening,
        }
        if self.desired_port is not None:
            message["desired-port"] = self.desired_port
        if not self.listening:
            message["reason"] = self.reason or "refused"
        return pack(message)


def parse_control(message: dict) -> RequestListener | ListenerResponse:
    kind = message.get("kind")
    if kind == "request-listener":
        return RequestListener(_name(message), _optional_port(message, "listen-port"))
    if kind == "listener-response":
        listening = message.get("listening")
        if not isinstance(listening, bool):
            raise ProtocolError('"listening" must be true or false')
        return ListenerResponse(
            _name(message),
            listening,
            _optional_port(message, "desired-port"),
            None if listening else _optional_reason(message),
        )
    raise ProtocolError(f"unknown control message kind {kind!r}")


# --- fowl (streams) ----------------------------------------------------------


@dataclass(frozen=True)
class OpenStream:
    name: str
    listen_port: int | None = None

    def encode(self) -> bytes:
        return pack({"unique-name": self.name})


@dataclass(frozen=True)
class StreamReply:
    connected: bool
    reason: str | None = None

    def encode(self) -> bytes:
        if self.connected:
            return pack({"connected": True})
        return pack({"connected": False, "reason": self.reason or "refused"})


def parse_open_stream(message: dict) -> OpenStream:
    return OpenStream(_name(message), _optional_port(message, "listen-port"))


def parse_stream_reply(message: dict) -> StreamReply:
    connected = message.get("connected")
    if not isinstance(connected, bool):
        raise ProtocolError('"connected" must be true or false')
    return StreamReply(connected, None if connected else _optional_reason(message))
