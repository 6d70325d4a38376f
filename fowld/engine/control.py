"""The control subprotocol ``fowl-commands``.

The side that offers a service opens one control subchannel per service and
asks the peer to listen for it (``ServiceRequester``). The side that wants the
service answers (``ControlResponder``), and keeps its listener only as long as
that subchannel stays open.
"""

from __future__ import annotations

from typing import Protocol as Interface

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from fowld.engine import events, wire
from fowld.engine.context import ForwardingContext
from fowld.engine.streams import Emit

log = Logger()


def close_subchannel(protocol: Protocol | None) -> None:
    """Close a subchannel once: Dilation raises if asked again before the peer acknowledges."""
    if protocol is not None and protocol.connected and not getattr(protocol, "closing", False):
        protocol.closing = True
        protocol.transport.loseConnection()


class OfferedService(Interface):
    """What a ``ServiceRequester`` needs of the service it asks for."""

    name: str
    peer_listen_port: int | None
    channel: Protocol | None

    def answered(self, response: wire.ListenerResponse) -> None: ...
    def failed(self, reason: str, ask_again: bool = False) -> None: ...
    def channel_lost(self) -> None: ...


class ListenerPolicy(Interface):
    """What a ``ControlResponder`` asks of the registry of wanted clients."""

    def control_channel_opened(self, channel: ControlResponder) -> bool: ...
    def control_channel_closed(self, channel: ControlResponder) -> None: ...
    def listener_requested(
        self, channel: ControlResponder, request: wire.RequestListener
    ) -> Deferred | wire.ListenerResponse: ...


class ServiceRequester(Protocol):
    """Our side of one service's control subchannel."""

    def __init__(self, offer: OfferedService, emit: Emit):
        self._offer = offer
        self._emit = emit
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
                self._emit(events.Refused("message", self._offer.name, f"unexpected {message!r}"))
                continue
            self._answered = True
            self._offer.answered(message)

    def connectionLost(self, reason: Failure) -> None:
        self._offer.channel_lost()


class ControlResponder(Protocol):
    """The peer's control subchannel: it asks us to listen for services it offers."""

    def __init__(self, context: ForwardingContext, policy: ListenerPolicy):
        self._context = context
        self._policy = policy
        self._reader = wire.FrameReader()
        self.counted = False

    def connectionMade(self) -> None:
        if not self._policy.control_channel_opened(self):
            limit = self._context.limits.max_control_channels
            self._context.emit(events.Refused("listener", None, f"too many control channels (limit {limit})"))
            close_subchannel(self)
            return
        self.counted = True

    def dataReceived(self, data: bytes) -> None:
        if not self.counted:
            return
        try:
            messages = [wire.parse_control(m) for m in self._reader.feed(data)]
        except wire.ProtocolError as e:
            self._context.emit(events.Refused("message", None, f"malformed control message: {e}"))
            close_subchannel(self)
            return
        for message in messages:
            if not isinstance(message, wire.RequestListener):
                self._context.emit(events.Refused("message", message.name, "unexpected listener-response"))
                continue
            d = maybeDeferred(self._policy.listener_requested, self, message)
            d.addErrback(self._unexpected, message.name)
            d.addCallback(self._reply)

    def _unexpected(self, failure: Failure, name: str) -> wire.ListenerResponse:
        # Every expected refusal is an answer already; this is a bug, but the peer still hears why.
        log.failure("listener request for {name!r} failed", failure, name=name)
        reason = f"cannot listen: {failure.getErrorMessage() or failure.type.__name__}"
        self._context.emit(events.ClientFailed(name, reason))
        return wire.ListenerResponse(name, False, reason=reason)

    def _reply(self, response: wire.ListenerResponse) -> None:
        if self.connected:
            self.transport.write(response.encode())

    def connectionLost(self, reason: Failure) -> None:
        self.connected = False
        if self.counted:
            self._policy.control_channel_closed(self)


class ControlResponderFactory(Factory):
    def __init__(self, context: ForwardingContext, policy: ListenerPolicy):
        self._context = context
        self._policy = policy

    def buildProtocol(self, addr: object) -> ControlResponder:
        protocol = ControlResponder(self._context, self._policy)
        protocol.factory = self
        return protocol
