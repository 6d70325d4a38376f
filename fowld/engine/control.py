"""The control subprotocol ``fowl-commands``.

The side that offers a service opens one control subchannel per service and
asks the peer to listen for it (``ServiceRequester``). The side that wants the
service answers (``ControlResponder``), and keeps its listener only as long as
that subchannel stays open.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import maybeDeferred
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from fowld.engine import events, wire

if TYPE_CHECKING:
    from fowld.engine.forwarder import Forwarder, ServiceOffer


def close_subchannel(protocol: Protocol | None) -> None:
    """Close a subchannel once: Dilation raises if asked again before the peer acknowledges."""
    if protocol is not None and protocol.connected and not getattr(protocol, "closing", False):
        protocol.closing = True
        protocol.transport.loseConnection()


class ServiceRequester(Protocol):
    """Our side of one service's control subchannel."""

    def __init__(self, offer: ServiceOffer):
        self._offer = offer
        self._reader = wire.FrameReader()
        self._answered = False

    def connectionMade(self) -> None:
        self._offer.channel = self
        request = wire.RequestListener(self._offer.name, self._offer.peer_listen_port)
        self.transport.write(request.encode())

    def dataReceived(self, data: bytes) -> None:
        try:
            messages = [wire.parse_control(m) for m in self._reader.feed(data)]
        except wire.ProtocolError as e:
            self._offer.failed(f"malformed control message from peer: {e}")
            close_subchannel(self)
            return
        for message in messages:
            if self._answered or not isinstance(message, wire.ListenerResponse):
                self._offer.forwarder.emit(
                    events.Refused("message", self._offer.name, f"unexpected {message!r}")
                )
                continue
            self._answered = True
            self._offer.answered(message)

    def connectionLost(self, reason: Failure) -> None:
        self._offer.channel_lost()


class ControlResponder(Protocol):
    """The peer's control subchannel: it asks us to listen for services it offers."""

    def __init__(self, forwarder: Forwarder):
        self._forwarder = forwarder
        self._reader = wire.FrameReader()
        self.names: set[str] = set()  # clients listening on behalf of this channel
        self.counted = False

    def connectionMade(self) -> None:
        if not self._forwarder.control_channel_opened(self):
            limit = self._forwarder.limits.max_control_channels
            self._forwarder.emit(
                events.Refused("listener", None, f"too many control channels (limit {limit})")
            )
            close_subchannel(self)
            return
        self.counted = True

    def dataReceived(self, data: bytes) -> None:
        if not self.counted:
            return
        try:
            messages = [wire.parse_control(m) for m in self._reader.feed(data)]
        except wire.ProtocolError as e:
            self._forwarder.emit(events.Refused("message", None, f"malformed control message: {e}"))
            close_subchannel(self)
            return
        for message in messages:
            if not isinstance(message, wire.RequestListener):
                self._forwarder.emit(events.Refused("message", message.name, "unexpected listener-response"))
                continue
            d = maybeDeferred(self._forwarder.listener_requested, self, message)
            d.addCallback(self._reply)

    def _reply(self, response: wire.ListenerResponse) -> None:
        if self.connected:
            self.transport.write(response.encode())

    def connectionLost(self, reason: Failure) -> None:
        self.connected = False
        if self.counted:
            self._forwarder.control_channel_closed(self)


class ControlResponderFactory(Factory):
    def __init__(self, forwarder: Forwarder):
        self._forwarder = forwarder

    def buildProtocol(self, addr: object) -> ControlResponder:
        protocol = ControlResponder(self._forwarder)
        protocol.factory = self
        return protocol
