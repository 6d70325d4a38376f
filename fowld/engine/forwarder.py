"""Named services and clients of one session, on top of a Dilated wormhole.

A **service** is offered to the peer: the peer listens for it, and streams
it opens end at our ``connect`` address. A **client** is wanted from the peer:
we listen at our ``listen`` address once the peer offers a service of that
name. The peer reaches only names declared here; both kinds can be added and
removed at any time.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, fail, gatherResults, maybeDeferred, succeed
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from fowld.engine import events, wire
from fowld.engine.control import ControlResponder, ControlResponderFactory, ServiceRequester, close_subchannel
from fowld.engine.endpoints import (
    Address,
    connect_address_for_port,
    escape,
    parse_listen,
    server_endpoint,
)
from fowld.engine.limits import Limits
from fowld.engine.streams import Emit, LocalEnd, StreamTable
from fowld.engine.tunnel import IncomingTunnelFactory, OutgoingTunnel


class ForwardingError(ValueError):
    """A local request that cannot be carried out (duplicate or unknown name...)."""


# A peer that does not (or no longer) listen for one of our services is asked again
# after 1 s, then 2, 4, ... up to once a minute.
RETRY_FIRST_DELAY = 1.0
RETRY_MAX_DELAY = 60.0


def _pick_free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServiceOffer:
    forwarder: Forwarder
    name: str
    connect: Address | None  # None: take the port the peer asks for (upstream `remote`)
    peer_listen_port: int | None = None
    connect_host: str | None = None
    channel: ServiceRequester | None = None
    state: str = "requesting"  # requesting | ready | failed | removed
    reason: str = ""
    attempts: int = 0  # requests since the peer last listened, for the retry back-off
    retry: Any = None  # IDelayedCall of the next request

    def request(self) -> None:
        self.retry = None
        if self.state == "removed" or self.forwarder.stopped:
            return
        self.state = "requesting"
        self.attempts += 1
        factory = Factory.forProtocol(lambda: ServiceRequester(self))
        d = self.forwarder.open_subchannel(wire.CONTROL_SUBPROTOCOL, factory)
        d.addErrback(lambda f: self.failed(f"cannot open control channel: {f.getErrorMessage()}"))

    def answered(self, response: wire.ListenerResponse) -> None:
        if self.state == "removed":
            return
        if not response.listening:
            self.failed(f"peer refused: {response.reason}", ask_again=True)
            return
        wanted = response.desired_port
        if self.connect is None:
            self.connect = connect_address_for_port(wanted or _pick_free_port(), self.connect_host)
        elif wanted is not None and self.connect.port not in (None, wanted):
            self.failed(f"peer wants port {wanted} but this service connects to {self.connect.port}")
            return
        self.state, self.reason, self.attempts = "ready", "", 0
        self.forwarder.emit(
            events.ServiceReady(self.name, self.connect.spec, self.connect.port, self.peer_listen_port)
        )

    def failed(self, reason: str, ask_again: bool = False) -> None:
        """The peer does not listen for us (now). ``ask_again``: it may later, so retry."""
        if self.state in ("failed", "removed"):
            return
        self.state, self.reason = "failed", reason
        self.forwarder.emit(events.ServiceFailed(self.name, reason))
        close_subchannel(self.channel)
        if ask_again and not self.forwarder.stopped:
            # The peer may declare (or re-declare) its client later: ask again, backing off
            # so that a peer which never wants this service hears from us rarely.
            delay = min(RETRY_MAX_DELAY, RETRY_FIRST_DELAY * 2 ** min(self.attempts - 1, 10))
            self.retry = self.forwarder.reactor.callLater(delay, self.request)

    def channel_lost(self) -> None:
        self.channel = None
        if self.state == "ready":
            self.failed("peer stopped listening", ask_again=True)

    def remove(self) -> None:
        self.state = "removed"
        if self.retry is not None and self.retry.active():
            self.retry.cancel()
        close_subchannel(self.channel)


@dataclass
class ClientWant:
    name: str
    listen: Address
    connect_port: int | None = None
    port: Any = None  # IListeningPort while listening
    channel: ControlResponder | None = None


class ClientConnection(LocalEnd):
    """A local program connected to one of our client listeners."""

    def __init__(self, forwarder: Forwarder, name: str):
        super().__init__()
        self._forwarder = forwarder
        self._name = name

    def connectionMade(self) -> None:
        super().connectionMade()
        streams = self._forwarder.streams
        if not streams.has_room():
            limit = self._forwarder.limits.max_streams
            self._forwarder.emit(events.Refused("stream", self._name, f"too many streams (limit {limit})"))
            self.transport.loseConnection()
            return
        self.stream = streams.open(self._name, events.Direction.OUTGOING)
        self.stream.local = self
        factory = Factory.forProtocol(lambda: OutgoingTunnel(self.stream))
        d = self._forwarder.open_subchannel(wire.STREAM_SUBPROTOCOL, factory)
        d.addErrback(lambda f: self.stream.fail(f"cannot open stream: {f.getErrorMessage()}"))


class Forwarder:
    def __init__(self, reactor: Any, limits: Limits, emit: Emit):
        self.reactor = reactor
        self.limits = limits
        self.emit = emit
        self.streams = StreamTable(reactor, limits, emit)
        self.services: dict[str, ServiceOffer] = {}
        self.clients: dict[str, ClientWant] = {}
        self._dilated = None
        self._control_channels: set[ControlResponder] = set()
        self._pending: dict[str, list[tuple[Deferred, Any]]] = {}
        self.stopped = False

    # wiring ------------------------------------------------------------------

    def attach(self, dilated: Any) -> None:
        """Start serving the peer's subchannels and ask for our services."""
        self._dilated = dilated
        dilated.listener_for(wire.CONTROL_SUBPROTOCOL).listen(ControlResponderFactory(self))
        dilated.listener_for(wire.STREAM_SUBPROTOCOL).listen(IncomingTunnelFactory(self))
        for offer in self.services.values():
            offer.request()

    def open_subchannel(self, subprotocol: str, factory: Factory) -> Deferred:
        if self._dilated is None or self.stopped:
            return fail(ForwardingError("not connected to a peer"))
        return self._dilated.connector_for(subprotocol).connect(factory)

    # services (offered here) -------------------------------------------------

    def add_service(
        self,
        name: str,
        connect: Address | None,
        peer_listen_port: int | None = None,
        connect_host: str | None = None,
    ) -> ServiceOffer:
        if name in self.services:
            raise ForwardingError(f"service {name!r} already exists")
        offer = ServiceOffer(self, name, connect, peer_listen_port, connect_host)
        self.services[name] = offer
        if self._dilated is not None:
            offer.request()
        return offer

    def remove_service(self, name: str) -> None:
        offer = self.services.pop(name, None)
        if offer is None:
            raise ForwardingError(f"no service named {name!r}")
        offer.remove()

    def service_target(self, name: str, listen_port: int | None) -> tuple[Address | None, str | None]:
        """Where a peer's stream for ``name`` goes, or why it may not."""
        offer = self.services.get(name)
        if offer is None or offer.connect is None:
            return None, f"no service named {name!r} is offered here"
        if listen_port is not None and offer.peer_listen_port not in (None, listen_port):
            return None, f"service {name!r} expects port {offer.peer_listen_port}, not {listen_port}"
        return offer.connect, None

    # clients (wanted from the peer) -----------------------------------------

    def add_client(self, name: str, listen: Address, connect_port: int | None = None) -> ClientWant:
        if name in self.clients:
            raise ForwardingError(f"client {name!r} already exists")
        want = ClientWant(name, listen, connect_port)
        self.clients[name] = want
        for waiter, timer in self._pending.pop(name, []):
            timer.cancel()
            waiter.callback(want)
        return want

    def remove_client(self, name: str) -> Deferred:
        want = self.clients.pop(name, None)
        if want is None:
            raise ForwardingError(f"no client named {name!r}")
        close_subchannel(want.channel)
        return self._stop_listening(want, "removed")

    def _stop_listening(self, want: ClientWant, reason: str) -> Deferred:
        port, want.port, want.channel = want.port, None, None
        if port is None:
            return succeed(None)
        self.emit(events.ClientStopped(want.name, reason))
        return maybeDeferred(port.stopListening)

    def control_channel_opened(self, channel: ControlResponder) -> bool:
        if len(self._control_channels) >= self.limits.max_control_channels:
            return False
        self._control_channels.add(channel)
        return True

    def control_channel_closed(self, channel: ControlResponder) -> None:
        self._control_channels.discard(channel)
        for want in self.clients.values():
            if want.channel is channel:
                self._stop_listening(want, "peer withdrew the service")

    def listener_requested(
        self, channel: ControlResponder, request: wire.RequestListener
    ) -> Deferred | wire.ListenerResponse:
        """The peer offers ``request.name``: listen for it if we want it."""
        want = self.clients.get(request.name)
        if want is not None:
            return self._listen(channel, want, request)
        # The peer may have declared its service before we declared our client:
        # wait a bounded time for the declaration instead of refusing for good.
        waiting = sum(len(w) for w in self._pending.values())
        if waiting >= self.limits.max_pending_requests:
            return self._refuse(request.name, "too many pending listener requests")
        waiter: Deferred = Deferred()
        timer = self.reactor.callLater(
            self.limits.pending_request_timeout, self._pending_expired, request.name, waiter
        )
        self._pending.setdefault(request.name, []).append((waiter, timer))
        waiter.addCallback(lambda want: self._listen(channel, want, request))
        return waiter

    def _pending_expired(self, name: str, waiter: Deferred) -> None:
        entries = self._pending.get(name, [])
        self._pending[name] = [(w, t) for w, t in entries if w is not waiter]
        if not self._pending[name]:
            del self._pending[name]
        waiter.callback(None)

    def _refuse(self, name: str, reason: str) -> wire.ListenerResponse:
        self.emit(events.Refused("listener", name, reason))
        return wire.ListenerResponse(name, False, reason=reason)

    def _listen(
        self, channel: ControlResponder, want: ClientWant | None, request: wire.RequestListener
    ) -> Deferred | wire.ListenerResponse:
        name = request.name
        if want is None or self.clients.get(name) is not want:
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
        factory = Factory.forProtocol(lambda: ClientConnection(self, name))
        d = server_endpoint(self.reactor, address).listen(factory)

        def listening(port: Any) -> wire.ListenerResponse:
            if self.clients.get(name) is not want or not channel.connected or self.stopped:
                maybeDeferred(port.stopListening)
                return wire.ListenerResponse(name, False, reason="withdrawn while listening")
            want.port, want.channel = port, channel
            bound = getattr(port.getHost(), "port", None)
            self.emit(events.ClientListening(name, address.spec, bound))
            return wire.ListenerResponse(name, True, desired_port=want.connect_port)

        def failed(failure: Failure) -> wire.ListenerResponse:
            reason = f"cannot listen on {address.spec}: {failure.getErrorMessage()}"
            self.emit(events.ClientFailed(name, reason))
            return wire.ListenerResponse(name, False, reason=reason)

        return d.addCallbacks(listening, failed)

    # shutting down -----------------------------------------------------------

    def stop(self) -> Deferred:
        """Stop listening, end every stream and control channel."""
        self.stopped = True
        for entries in self._pending.values():
            for waiter, timer in entries:
                timer.cancel()
                waiter.callback(None)
        self._pending.clear()
        self.streams.close_all("session closing")
        self.streams.stop()
        for offer in self.services.values():
            offer.remove()
        for channel in list(self._control_channels):
            close_subchannel(channel)
        stops = [self._stop_listening(want, "session closing") for want in self.clients.values()]
        return gatherResults(stops)
