"""A peer that speaks fowl's wire protocol by hand, so tests can send it garbage.

It joins a session with magic-wormhole directly (same app id and versions
as fowl), dilates, and then reads and writes raw bytes on ``fowl-commands``
and ``fowl`` subchannels. Framing is written here from the protocol facts,
not borrowed from ``fowld.engine.wire``: a test must not check our decoder with
itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgpack
import wormhole
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from harness.fowld import fowld_argv
from harness.peers import StdioPeer, start_stdio
from harness.servers import LOOPBACK, ProcessGroup
from harness.wait import eventually, get_reactor

APP_ID = "meejah.ca/wormhole/forward"
VERSIONS = {"fowl": {"features": ["core-v1"]}}
CONTROL = "fowl-commands"
STREAM = "fowl"
STEP_TIMEOUT = 10.0  # seconds for one step on loopback; generous for a loaded CI machine
_LENGTH = struct.Struct("!H")


def frame(message: Any) -> bytes:
    """Any msgpack-able value (maps or not) behind a 2-byte big-endian length."""
    return raw_frame(msgpack.packb(message, use_bin_type=True))


def raw_frame(body: bytes, declared_length: int | None = None) -> bytes:
    """``body`` behind a length prefix that may lie (``declared_length``)."""
    return _LENGTH.pack(len(body) if declared_length is None else declared_length) + body


def split_frame(data: bytes) -> tuple[Any, bytes] | None:
    """The first complete frame in ``data`` decoded, and the bytes after it; None if incomplete."""
    if len(data) < 2:
        return None
    (length,) = _LENGTH.unpack_from(data)
    if len(data) < 2 + length:
        return None
    return msgpack.unpackb(data[2 : 2 + length], raw=False), data[2 + length :]


class RawChannel(Protocol):
    """One Dilation subchannel seen as bytes: what arrived and whether it closed."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.closed: Deferred = Deferred()
        self._changed: list[Deferred] = []

    def connectionMade(self) -> None:
        self._notify()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        self._notify()

    def connectionLost(self, reason: Failure) -> None:
        self.connected = False
        if not self.closed.called:
            self.closed.callback(None)
        self._notify()

    def _notify(self) -> None:
        waiting, self._changed = self._changed, []
        for d in waiting:
            _fire(d)  # a timeout may have fired it already

    def send(self, data: bytes) -> None:
        self.transport.write(data)

    def close(self) -> None:
        if self.connected:
            self.transport.loseConnection()

    async def _wait(self, ready, what: str, timeout: float) -> None:
        reactor = get_reactor()
        deadline = reactor.seconds() + timeout
        while not ready():
            left = deadline - reactor.seconds()
            if left <= 0:
                raise TimeoutError(f"{what} within {timeout}s (received {bytes(self.received[:200])!r})")
            d: Deferred = Deferred()
            self._changed.append(d)
            timer = reactor.callLater(left, _fire, d)
            await d
            if timer.active():
                timer.cancel()

    async def next_frame(self, timeout: float = STEP_TIMEOUT) -> Any:
        """Wait for one whole frame from the other side, consume and decode it."""
        await self._wait(lambda: split_frame(bytes(self.received)) is not None, "no whole frame", timeout)
        message, rest = split_frame(bytes(self.received))
        self.received = bytearray(rest)
        return message

    async def read_exactly(self, count: int, timeout: float = STEP_TIMEOUT) -> bytes:
        await self._wait(lambda: len(self.received) >= count, f"fewer than {count} bytes", timeout)
        data, self.received = bytes(self.received[:count]), self.received[count:]
        return data

    async def wait_closed(self, timeout: float = STEP_TIMEOUT) -> None:
        await self._wait(lambda: self.closed.called, "the channel did not close", timeout)


def _fire(d: Deferred) -> None:
    if not d.called:
        d.callback(None)


class _Collect(Factory):
    """Subchannels the other side opens, queued for the test to take."""

    def __init__(self) -> None:
        self.queue: DeferredQueue = DeferredQueue()

    def buildProtocol(self, addr: object) -> RawChannel:
        channel = RawChannel()
        channel.factory = self
        self.queue.put(channel)
        return channel


class HostilePeer:
    """The far end of a session, driven by a test one raw frame at a time."""

    def __init__(self, reactor: Any, w: Any, dilated: Any):
        self._reactor = reactor
        self.wormhole = w
        self._dilated = dilated
        self._control = _Collect()
        self._streams = _Collect()
        self.versions: dict = {}

    @classmethod
    async def join(cls, reactor: Any, mailbox_url: str, code: str) -> HostilePeer:
        """Use ``code`` on ``mailbox_url`` and wait until Dilation is up (direct, no relay)."""
        w = wormhole.create(APP_ID, mailbox_url, reactor, versions=VERSIONS, dilation=True)
        w.set_code(code)
        dilated = w.dilate(transit_relay_location=None)
        peer = cls(reactor, w, dilated)
        dilated.listener_for(CONTROL).listen(peer._control)
        dilated.listener_for(STREAM).listen(peer._streams)
        peer.versions = await w.get_versions().addTimeout(STEP_TIMEOUT, reactor)
        await dilated.when_dilated().addTimeout(STEP_TIMEOUT, reactor)
        return peer

    async def open(self, subprotocol: str) -> RawChannel:
        """Open a subchannel of ours to the other side."""
        d = self._dilated.connector_for(subprotocol).connect(Factory.forProtocol(RawChannel))
        return await d.addTimeout(STEP_TIMEOUT, self._reactor)

    async def incoming_control(self, timeout: float = STEP_TIMEOUT) -> RawChannel:
        """The next ``fowl-commands`` subchannel the other side opened to us."""
        return await self._control.queue.get().addTimeout(timeout, self._reactor)

    async def incoming_stream(self, timeout: float = STEP_TIMEOUT) -> RawChannel:
        """The next ``fowl`` subchannel the other side opened to us."""
        return await self._streams.queue.get().addTimeout(timeout, self._reactor)

    def send_mailbox_message(self, payload: bytes) -> None:
        """An encrypted mailbox message, as fowl's closing handshake uses."""
        self.wormhole.send_message(payload)

    async def close(self) -> None:
        """Say ``{"closing": 0}`` as fowl does, then close the wormhole."""
        self.send_mailbox_message(json.dumps({"closing": 0}).encode())
        await self.wormhole.close().addTimeout(STEP_TIMEOUT, self._reactor)


# --- shared by the hostile-peer and resource-bound tests ----------------------


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


async def echo_round_trip(peer: HostilePeer, size: int = 1 << 20) -> None:
    """A legitimate stream to ``echo``: every byte comes back, hashes match."""
    channel = await peer.open(STREAM)
    channel.send(frame({"unique-name": "echo"}))
    assert await channel.next_frame() == {"connected": True}
    payload = os.urandom(size)
    channel.send(payload)
    returned = await channel.read_exactly(size, timeout=STEP_TIMEOUT)
    assert hashlib.sha256(returned).hexdigest() == hashlib.sha256(payload).hexdigest()
    channel.close()
    await channel.wait_closed()


async def flood(peer: HostilePeer, count: int) -> tuple[int, set[str]]:
    """Open ``count`` streams to ``echo`` at once, then close them; (accepted, refusal reasons)."""
    channels = []
    for _ in range(count):
        channel = await peer.open(STREAM)
        channel.send(frame({"unique-name": "echo"}))
        channels.append(channel)
    replies = [await channel.next_frame() for channel in channels]
    for channel in channels:
        channel.close()
    for channel in channels:
        await channel.wait_closed()
    return sum(r["connected"] for r in replies), {r["reason"] for r in replies if not r["connected"]}


def listener_request(name: Any, port: Any = None) -> bytes:
    return frame({"kind": "request-listener", "unique-name": name, "listen-port": port})


@dataclass
class AgainstFowld:
    """A real ``fowld --stdio`` offering "echo" (an echo server here) and wanting "wanted",
    joined by a hostile peer; ``close_peer()`` ends the peer's side early."""

    fowld: StdioPeer
    peer: HostilePeer | None = None

    async def close_peer(self) -> None:
        if self.peer is not None:
            peer, self.peer = self.peer, None
            await peer.close()


@contextlib.asynccontextmanager
async def against_fowld(processes: ProcessGroup, mailbox_url: str) -> AsyncIterator[AgainstFowld]:
    """Pair a hostile peer with a real fowld; yields once "echo" works through the tunnel
    (one warm-up round trip). The peer, fowld and the echo server are stopped afterwards."""
    reactor = get_reactor()
    echo = await TCP4ServerEndpoint(reactor, 0, interface=LOOPBACK).listen(Factory.forProtocol(Echo))
    options = ("--stdio", "--mailbox", mailbox_url, "--transit-relay", "none")
    scene = AgainstFowld(start_stdio(processes, fowld_argv(*options), "fowld"))
    try:
        fowld = scene.fowld
        fowld.send("remote", name="echo", connect=f"tcp:{LOOPBACK}:{echo.getHost().port}")
        fowld.send("local", name="wanted")
        fowld.send("allocate-code")
        (allocated,) = await eventually(lambda: fowld.find("code-allocated"), "a code")
        scene.peer = await HostilePeer.join(reactor, mailbox_url, allocated["code"])
        request = await scene.peer.incoming_control()
        assert (await request.next_frame())["unique-name"] == "echo"
        request.send(frame({"kind": "listener-response", "unique-name": "echo", "listening": True}))
        await echo_round_trip(scene.peer)
        yield scene
    finally:
        await scene.close_peer()
        scene.fowld.stop()
        await echo.stopListening()
