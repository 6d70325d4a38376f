"""Clients this side wants: listening for each once the peer offers it, and the connections made there.

The peer offers a service by asking us to listen for it on a control
subchannel (``ControlResponder``); we listen only for names declared here, and
only while that subchannel stays open. A request may come before the name is
declared: it then waits, bounded in number and time, for the declaration.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from fowld.engine import events, wire
from fowld.engine.context import ForwardingContext, ForwardingError
from fowld.engine.control import ControlResponder, close_subchannel
from fowld.engine.endpoints import Address, EndpointError, escape, parse_listen, server_endpoint
from fowld.engine.status import ClientState, ClientStatus
from fowld.engine.streams import LocalEnd
from fowld.engine.tunnel import OutgoingTunnel


class ClientWant:
    """One client we want: where it listens, and the listener while it does."""

    def __init__(self, name: str, listen: Address, connect_port: int | None = None):
        self.name = name
        self.listen = listen
        self.connect_port = connect_port
        self.port: Any = None  # IListeningPort while listening
        self.channel: ControlResponder | None = None
        self.failure = ""  # why the last attempt to listen failed

    @property
    def status(self) -> ClientStatus:
        if self.port is not None:
            bound = getattr(self.port.getHost(), "port", 0) or 0
            return ClientStatus(self.name, self.listen.spec, ClientState.LISTENING, bound)
        if self.failure:
            return ClientStatus(self.name, self.listen.spec, ClientState.FAILED, reason=self.failure)
        return ClientStatus(self.name, self.listen.spec)


class ClientConnection(LocalEnd):
    """A local program connected to one of our client listeners."""

    def __init__(self, context: ForwardingContext, name: str):
        super().__init__()
        self._context = context
        self._name = name

    def connectionMade(self) -> None:
        super().connectionMade()
        streams = self._context.streams
        if not streams.has_room():
            limit = self._context.limits.max_streams
            self._context.emit(events.Refused("stream", self._name, f"too many streams (limit {limit})"))
            self.transport.loseConnection()
            return
        self.stream = streams.open(self._name, events.Direction.OUTGOING)
        self.stream.local = self
        factory = Factory.forProtocol(lambda: OutgoingTunnel(self.stream))
        d = self._context.open_subchannel(wire.STREAM_SUBPROTOCOL, factory)
        d.addErrback(lambda f: self.stream.fail(f"cannot open stream: {f.getErrorMessage()}"))


class ClientRegistry:
    """The clients of one session, and the peer's control channels asking for them."""

    def __init__(self, context: ForwardingContext):
        self._context = context
        self.wanted: dict[str, ClientWant] = {}
        self._channels: set[ControlResponder] = set()
        self._pending: dict[str, list[tuple[Deferred, Any]]] = {}

    def add(self, name: str, listen: Address, connect_port: int | None = None) -> ClientWant:
        if name in self.wanted:
            raise ForwardingError(f"client {name!r} already exists")
        want = ClientWant(name, listen, connect_port)
        self.wanted[name] = want
        for waiter, timer in self._pending.pop(name, []):
            timer.cancel()
            waiter.callback(want)
        return want

    def remove(self, name: str) -> Deferred:
        want = self.wanted.pop(name, None)
        if want is None:
            raise ForwardingError(f"no client named {name!r}")
        close_subchannel(want.channel)
        return self._stop_listening(want, "removed")

    def _stop_listening(self, want: ClientWant, reason: str) -> Deferred:
        port, want.port, want.channel = want.port, None, None
        if port is None:
            return succeed(None)
        self._context.emit(events.ClientStopped(want.name, reason))
        return maybeDeferred(port.stopListening)

    # ListenerPolicy, for the peer's control channels ---------------------------------------

    def control_channel_opened(self, channel: ControlResponder) -> bool:
        if len(self._channels) >= self._context.limits.max_control_channels:
            return False
        self._channels.add(channel)
        return True

    def control_channel_closed(self, channel: ControlResponder) -> None:
        self._channels.discard(channel)
        for want in self.wanted.values():
            if want.channel is channel:
                self._stop_listening(want, "peer withdrew the service")

    def listener_requested(
        self, channel: ControlResponder, request: wire.RequestListener
    ) -> Deferred | wire.ListenerResponse:
        """The peer offers ``request.name``: listen for it if we want it."""
        want = self.wanted.get(request.name)
        if want is not None:
            return self._listen(channel, want, request)
        # The peer may have declared its service before we declared our client:
        # wait a bounded time for the declaration instead of refusing for good.
        waiting = sum(len(w) for w in self._pending.values())
        limits = self._context.limits
        if waiting >= limits.max_pending_requests:
            return self._refuse(request.name, "too many pending listener requests")
        waiter: Deferred = Deferred()
        timer = self._context.reactor.callLater(
            limits.pending_request_timeout, self._pending_expired, request.name, waiter
        )
        self._pending.setdefault(request.name, []).append((waiter, timer))
        waiter.addCallback(lambda want: self._listen(channel, want, request))
        return waiter

    def _pending_expired(self, name: str, waiter: Deferred) -> None:
        entries = [(w, t) for w, t in self._pending.get(name, []) if w is not waiter]
        if entries:
            self._pending[name] = entries
        else:
            self._pending.pop(name, None)
        waiter.callback(None)

    def _refuse(self, name: str, reason: str) -> wire.ListenerResponse:
        self._context.emit(events.Refused("listener", name, reason))
        return wire.ListenerResponse(name, False, reason=reason)

    def _listen(
        self, channel: ControlResponder, want: ClientWant | None, request: wire.RequestListener
    ) -> Deferred | wire.ListenerResponse:
        name = request.name
        if want is None or self.wanted.get(name) is not want:
            return self._refuse(name, f"no client named {name!r} is wanted here")
        if want.port is not None:
            return self._refuse(name, f"already listening for {name!r}")
        address = want.listen
        if request.listen_port is not None:
            if address.kind == "unix":
                return self._refuse(name, f"{name!r} listens on a UNIX socket, not a TCP port")
            if address.port == 0:
                address = parse_listen(
                    f"{address.kind}:{request.listen_port}:interface={escape(address.host)}"
                )
            elif address.port != request.listen_port:
                return self._refuse(
                    name, f"peer asked for port {request.listen_port}, we listen on {address.port}"
                )

        def listening(port: Any) -> wire.ListenerResponse:
            if self.wanted.get(name) is not want or not channel.connected or self._context.stopped:
                maybeDeferred(port.stopListening)
                return wire.ListenerResponse(name, False, reason="withdrawn while listening")
            want.port, want.channel, want.failure = port, channel, ""
            bound = getattr(port.getHost(), "port", None)
            self._context.emit(events.ClientListening(name, address.spec, bound))
            return wire.ListenerResponse(name, True, desired_port=want.connect_port)

        def failed(failure: Failure) -> wire.ListenerResponse:
            reason = f"cannot listen on {address.spec}: {failure.getErrorMessage()}"
            want.failure = reason
            self._context.emit(events.ClientFailed(name, reason))
            return wire.ListenerResponse(name, False, reason=reason)

        factory = Factory.forProtocol(lambda: ClientConnection(self._context, name))
        try:
            d = server_endpoint(self._context.reactor, address).listen(factory)
        except EndpointError as e:  # checked when parsed; kept so a listener never fails silently
            return failed(Failure(e))
        return d.addCallbacks(listening, failed)

    # ending ----------------------------------------------------------------------------------

    def stop(self) -> Deferred:
        """Answer every waiting request, close every control channel and listener."""
        for entries in self._pending.values():
            for waiter, timer in entries:
                timer.cancel()
                waiter.callback(None)
        self._pending.clear()
        for channel in list(self._channels):
            close_subchannel(channel)
        return gatherResults([self._stop_listening(w, "session closing") for w in self.wanted.values()])

    def statuses(self) -> tuple[ClientStatus, ...]:
        return tuple(want.status for want in self.wanted.values())
