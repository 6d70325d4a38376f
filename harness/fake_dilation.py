"""Two Dilated sides joined in memory, and a reactor whose TCP is in memory too: the engine with no network.

``dilated_pair(clock)`` gives two objects with the only two methods of
magic-wormhole's ``DilatedWormhole`` the engine calls:
``listener_for(name).listen(factory)`` and ``connector_for(name).connect(factory)``.
A subchannel opened on one side is delivered to the other side's factory for
that subprotocol (held until one listens, as Dilation does). Their transports
keep Dilation's rules for fully closeable protocols: each ``write`` arrives as one
``dataReceived``, on a later turn of ``clock``; ``loseConnection`` sends a close
the peer answers, and each side then sees ``connectionLost(ConnectionDone())``;
writing or closing again while the close is unanswered raises
``AlreadyClosedError``; pausing a subchannel holds what arrives for it, and a
second producer (or unregistering none) is an error. Nothing
else of magic-wormhole (mailbox, codes, status, reconnection) is imitated.

``MemoryReactor`` is Twisted's ``MemoryReactorClock`` (a ``Clock`` whose TCP
listens and connects in memory) with ports that remember whether they still
listen, so tests see the listeners a session opens and closes, and connect local
programs to them (``MemoryPort.connect``).
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure


class AlreadyClosedError(Exception):
    """A write or close on a subchannel whose close the peer has not answered yet."""


@dataclass(frozen=True)
class SubchannelAddress:
    subprotocol: str


class Subchannel:
    """One end of an in-memory subchannel: the transport its protocol writes to."""

    def __init__(self, clock: Clock, subprotocol: str):
        self._clock = clock
        self.address = SubchannelAddress(subprotocol)
        self.peer: Subchannel | None = None
        self.protocol: Protocol | None = None
        self.producer: Any = None  # registered, never throttled: memory has no slow link
        self.state = "open"  # then "closing" (we closed, unanswered) and "closed"
        self._paused = False
        self._inbox: deque[bytes | None] = deque()  # records for our protocol; None is a close

    # ITransport ----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.state != "open":
            raise AlreadyClosedError("write not allowed on closed subchannel")
        self._send(bytes(data))

    def writeSequence(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        if self.state == "closing":
            raise AlreadyClosedError("loseConnection not allowed on closing subchannel")
        if self.state == "open":
            self.state = "closing"
            self._send(None)

    def getHost(self) -> SubchannelAddress:
        return self.address

    def getPeer(self) -> SubchannelAddress:
        return self.address

    # IProducer (what arrives for us) and IConsumer ---------------------------------------------

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._deliver()

    def stopProducing(self) -> None:
        # The connection is shared by every subchannel: Dilation stops holding data back, closes nothing.
        self.resumeProducing()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        if self.producer is not None:
            raise ValueError(f"registering producer {producer} before {self.producer} was unregistered")
        self.producer = producer

    def unregisterProducer(self) -> None:
        if self.producer is None:
            raise KeyError("no producer registered")  # as Dilation's table of producers raises
        self.producer = None

    # between the two ends --------------------------------------------------------------------

    def attach(self, protocol: Protocol) -> None:
        self.protocol = protocol
        protocol.makeConnection(self)
        self._deliver()

    def _send(self, record: bytes | None) -> None:
        self._clock.callLater(0, self.peer._arrive, record)

    def _arrive(self, record: bytes | None) -> None:
        self._inbox.append(record)
        self._deliver()

    def _deliver(self) -> None:
        while self._inbox and self.protocol is not None and not self._paused and self.state != "closed":
            record = self._inbox.popleft()
            if record is not None:
                self.protocol.dataReceived(record)
                continue
            if self.state == "open":
                self._send(None)  # the peer closed first: answer its close
            self.state = "closed"
            self.protocol.connectionLost(ConnectionDone())


class _Listener:
    def __init__(self, side: FakeDilatedWormhole, subprotocol: str):
        self._side, self._subprotocol = side, subprotocol

    def listen(self, factory: Factory) -> Deferred:
        self._side._listen(self._subprotocol, factory)
        return succeed(None)  # the engine keeps no listening port for a subprotocol


class _Connector:
    def __init__(self, side: FakeDilatedWormhole, subprotocol: str):
        self._side, self._subprotocol = side, subprotocol

    def connect(self, factory: Factory) -> Deferred:
        return succeed(self._side._open(self._subprotocol, factory))


class FakeDilatedWormhole:
    """One side of an in-memory Dilation: ``listener_for`` and ``connector_for``, nothing more."""

    def __init__(self, clock: Clock):
        self._clock = clock
        self.peer: FakeDilatedWormhole | None = None
        self._factories: dict[str, Factory] = {}
        self._waiting: defaultdict[str, list[Subchannel]] = defaultdict(list)  # opens before a listen

    def listener_for(self, subprotocol: str) -> _Listener:
        return _Listener(self, subprotocol)

    def connector_for(self, subprotocol: str) -> _Connector:
        return _Connector(self, subprotocol)

    def _listen(self, subprotocol: str, factory: Factory) -> None:
        if subprotocol in self._factories:
            raise ValueError(f'Already listening for subprotocol "{subprotocol}"')
        self._factories[subprotocol] = factory
        for channel in self._waiting.pop(subprotocol, []):
            self._accept(channel)

    def _open(self, subprotocol: str, factory: Factory) -> Protocol:
        ours, theirs = Subchannel(self._clock, subprotocol), Subchannel(self._clock, subprotocol)
        ours.peer, theirs.peer = theirs, ours
        self._clock.callLater(0, self.peer._opened, theirs)  # the open goes before any data
        protocol = factory.buildProtocol(ours.address)
        ours.attach(protocol)
        return protocol

    def _opened(self, channel: Subchannel) -> None:
        if channel.address.subprotocol in self._factories:
            self._accept(channel)
        else:
            self._waiting[channel.address.subprotocol].append(channel)

    def _accept(self, channel: Subchannel) -> None:
        channel.attach(self._factories[channel.address.subprotocol].buildProtocol(channel.address))


def dilated_pair(clock: Clock) -> tuple[FakeDilatedWormhole, FakeDilatedWormhole]:
    """Two sides of one in-memory Dilation, delivering on turns of ``clock``."""
    left, right = FakeDilatedWormhole(clock), FakeDilatedWormhole(clock)
    left.peer, right.peer = right, left
    return left, right


class LocalTransport(StringTransport):
    """A local socket in memory: what was written to it, and a close that, as a socket's does,
    reaches its protocol on the next turn of the clock."""

    def __init__(self, clock: Clock, protocol: Protocol):
        super().__init__()
        self._clock = clock
        self.protocol = protocol
        self.closed = False

    def loseConnection(self) -> None:
        if not self.closed:
            self.closed = True
            super().loseConnection()
            self._clock.callLater(0, self.protocol.connectionLost, Failure(ConnectionDone()))


class MemoryPort:
    """A listening port of ``MemoryReactor``: where it listens, its factory, whether it still does."""

    def __init__(self, clock: Clock, address: Any, factory: Factory):
        self._clock = clock
        self.address = address
        self.factory = factory
        self.listening = True

    def connect(self) -> LocalTransport:
        """A local program connects: the transport of its new connection."""
        protocol = self.factory.buildProtocol(self.address)
        transport = LocalTransport(self._clock, protocol)
        protocol.makeConnection(transport)
        return transport

    def getHost(self) -> Any:
        return self.address

    def startListening(self) -> None:
        self.listening = True

    def stopListening(self) -> None:
        self.listening = False


class MemoryReactor(MemoryReactorClock):
    """A ``Clock`` with in-memory TCP: ``ports`` lists every listener opened on it."""

    def __init__(self) -> None:
        super().__init__()
        self.ports: list[MemoryPort] = []

    def listenTCP(self, port: int, factory: Factory, backlog: int = 50, interface: str = "") -> MemoryPort:
        address = super().listenTCP(port, factory, backlog, interface).getHost()
        listening = MemoryPort(self, address, factory)
        self.ports.append(listening)
        return listening
