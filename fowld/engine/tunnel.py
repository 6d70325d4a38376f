"""The Dilation end of a forwarded stream (subprotocol ``fowl``).

``OutgoingTunnel``: we accepted a local connection for a client and ask the
peer to connect it to its service. ``IncomingTunnel``: the peer asks us to
connect one of our services; we check policy and limits first.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from fowld.engine import events, wire
from fowld.engine.context import ForwardingContext
from fowld.engine.endpoints import Address, EndpointError, client_endpoint
from fowld.engine.streams import LocalEnd, Stream

# Where a peer's stream for a name (and port) goes, or why it may not: (address, None) or (None, reason).
ServiceTarget = Callable[[str, int | None], tuple[Address | None, str | None]]


class _TunnelEnd(Protocol):
    stream: Stream | None = None
    _refused = False  # refused before a stream existed: ignore whatever else arrives

    def connectionMade(self) -> None:
        self._reader = wire.FrameReader()
        self._handshaking = True

    def dataReceived(self, data: bytes) -> None:
        if not self._handshaking:
            if self.stream is not None and self.stream.splicing:
                self.stream.from_tunnel(data)
            elif not self._refused:
                self.waiting_data(data)
            return
        try:
            message = self._reader.read_one(data)
        except wire.ProtocolError as e:
            self.handshake_failed(f"malformed handshake: {e}")
            return
        if message is not None:
            self._handshaking = False
            self.handshake(message, self._reader.take_rest())

    def connectionLost(self, reason: Failure) -> None:
        self.connected = False
        if self.stream is not None:
            self.stream.end_lost(reason)

    def handshake(self, message: dict, rest: bytes) -> None:
        raise NotImplementedError

    def waiting_data(self, data: bytes) -> None:
        """Bytes after the handshake message but before the stream is spliced."""
        self.handshake_failed("data sent before the stream was accepted")

    def handshake_failed(self, reason: str) -> None:
        raise NotImplementedError


class OutgoingTunnel(_TunnelEnd):
    def __init__(self, stream: Stream):
        self.stream = stream

    def connectionMade(self) -> None:
        super().connectionMade()
        self.stream.tunnel = self
        self.transport.write(wire.OpenStream(self.stream.name).encode())

    def handshake(self, message: dict, rest: bytes) -> None:
        try:
            reply = wire.parse_stream_reply(message)
        except wire.ProtocolError as e:
            self.handshake_failed(f"malformed reply: {e}")
            return
        if not reply.connected:
            self.stream.fail(f"peer refused: {reply.reason}", refused=True)
            return
        self.stream.splice()
        if rest:
            self.stream.from_tunnel(rest)

    def handshake_failed(self, reason: str) -> None:
        self.stream.fail(reason)


class IncomingTunnel(_TunnelEnd):
    _timeout = None
    _early = b""
    _reserved = False  # holds a place in the stream table until the stream opens

    def _release(self) -> None:
        if self._reserved:
            self._reserved = False
            self._context.streams.release()

    def __init__(self, context: ForwardingContext, service_target: ServiceTarget):
        self._context = context
        self._service_target = service_target

    def connectionMade(self) -> None:
        super().connectionMade()
        limits = self._context.limits
        # Count the stream from its first byte, so opens held back cannot pass the limit.
        if not self._context.streams.reserve():
            self._refuse_unaccounted(f"too many streams (limit {limits.max_streams})")
            return
        self._reserved = True
        self._timeout = self._context.reactor.callLater(
            limits.stream_open_timeout, self.handshake_failed, "no opening message in time"
        )

    def _cancel_timeout(self) -> None:
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()

    def _refuse_unaccounted(self, reason: str, name: str | None = None) -> None:
        """Refuse before a stream exists (limits, garbage): an event, no stream id."""
        self._release()
        self._refused, self._handshaking = True, False
        self._context.emit(events.Refused("stream", name, reason))
        self.transport.write(wire.StreamReply(False, reason).encode())
        self.transport.loseConnection()

    def handshake_failed(self, reason: str) -> None:
        self._cancel_timeout()
        if self.stream is not None:
            self._refuse_stream(reason)
        else:
            self._refuse_unaccounted(reason)

    def handshake(self, message: dict, rest: bytes) -> None:
        self._cancel_timeout()
        try:
            request = wire.parse_open_stream(message)
        except wire.ProtocolError as e:
            self._refuse_unaccounted(f"malformed opening message: {e}")
            return
        self._release()
        self.stream = self._context.streams.open(request.name, events.Direction.INCOMING)
        self.stream.tunnel = self
        target, refusal = self._service_target(request.name, request.listen_port)
        if refusal is not None:
            self._refuse_stream(refusal)
            return
        self._early = b""
        if rest:
            self.waiting_data(rest)  # the peer should wait for our reply; keep what it sent anyway
            if self.stream.refused or not self.connected:
                return
        factory = Factory.forProtocol(lambda: LocalEnd(self.stream))
        try:
            d = client_endpoint(self._context.reactor, target).connect(factory)
        except EndpointError as e:  # checked when parsed; kept so a stream never hangs unanswered
            self._connect_failed(Failure(e))
            return
        d.addCallbacks(self._connected, self._connect_failed)

    def _refuse_stream(self, reason: str) -> None:
        """Refuse a stream that exists (it has an id): tell the peer why, then close it."""
        if not self.stream.splicing and self.connected:
            self._context.emit(events.Refused("stream", self.stream.name, reason))
            self.transport.write(wire.StreamReply(False, reason).encode())
        self.stream.fail(reason, refused=not self.stream.splicing)

    def waiting_data(self, data: bytes) -> None:
        self._early += data
        if len(self._early) > self._context.limits.early_data_limit:
            self.handshake_failed("too much data sent before the stream was accepted")

    def connectionLost(self, reason: Failure) -> None:
        self._cancel_timeout()
        self._release()
        super().connectionLost(reason)

    def _connected(self, local: LocalEnd) -> None:
        if self.stream.refused or not self.connected:
            local.transport.loseConnection()
            return
        self.transport.write(wire.StreamReply(True).encode())
        self.stream.splice()
        if self._early:
            self.stream.from_tunnel(self._early)

    def _connect_failed(self, failure: Failure) -> None:
        self._refuse_stream(f"cannot connect to service: {failure.getErrorMessage()}")


class IncomingTunnelFactory(Factory):
    def __init__(self, context: ForwardingContext, service_target: ServiceTarget):
        self._context = context
        self._service_target = service_target

    def buildProtocol(self, addr: object) -> IncomingTunnel:
        protocol = IncomingTunnel(self._context, self._service_target)
        protocol.factory = self
        return protocol
