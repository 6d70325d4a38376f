"""Services this side offers: asking the peer to listen for each, and asking again later.

A peer that does not (or no longer) listen for one of our services may
declare it later: we ask again with an exponential back-off and jitter, so a
peer that never wants the service hears from us rarely.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import backoffPolicy
from twisted.internet.protocol import Factory

from fowld.engine import events, wire
from fowld.engine.context import ForwardingContext
from fowld.engine.control import ServiceRequester, close_subchannel
from fowld.engine.endpoints import Address, connect_address_for_port
from fowld.engine.status import ServiceState, ServiceStatus

# Ask again after about 1 s, then 2, 4, ... up to once a minute.
retry_delay = backoffPolicy(initialDelay=1.0, maxDelay=60.0, factor=2.0)


class ServiceOffer:
    """One service we offer: the control subchannel that asks for it, and its state."""

    def __init__(
        self,
        context: ForwardingContext,
        name: str,
        connect: Address | None,  # None: take the port the peer names (upstream `remote`)
        peer_listen_port: int | None = None,
        connect_host: str | None = None,
    ):
        self._context = context
        self.name = name
        self.connect = connect
        self.peer_listen_port = peer_listen_port
        self.connect_host = connect_host
        self.channel: ServiceRequester | None = None
        self.state = ServiceState.REQUESTING
        self.reason = ""
        self._removed = False
        self._attempts = 0  # requests since the peer last listened, for the back-off
        self._retry: Any = None  # IDelayedCall of the next request

    @property
    def status(self) -> ServiceStatus:
        connect = self.connect.spec if self.connect is not None else ""
        if self._removed:  # withdrawn (the session is closing): no longer asked for
            return ServiceStatus(self.name, connect)
        return ServiceStatus(self.name, connect, self.state, self.reason)

    def request(self) -> None:
        self._retry = None
        if self._removed or self._context.stopped:
            return
        self.state = ServiceState.REQUESTING
        self._attempts += 1
        factory = Factory.forProtocol(lambda: ServiceRequester(self, self._context.emit))
        d = self._context.open_subchannel(wire.CONTROL_SUBPROTOCOL, factory)
        d.addErrback(lambda f: self.failed(f"cannot open control channel: {f.getErrorMessage()}"))

    def answered(self, response: wire.ListenerResponse) -> None:
        if self._removed:
            return
        if not response.listening:
            self.failed(f"peer refused: {response.reason}", ask_again=True)
            return
        wanted = response.desired_port
        if self.connect is None:
            if wanted is None:
                self.failed("the peer named no port to connect to, and this service names none either")
                return
            self.connect = connect_address_for_port(wanted, self.connect_host)
        elif wanted is not None and self.connect.port not in (None, wanted):
            self.failed(f"peer wants port {wanted} but this service connects to {self.connect.port}")
            return
        self.state, self.reason, self._attempts = ServiceState.READY, "", 0
        self._context.emit(
            events.ServiceReady(self.name, self.connect.spec, self.connect.port, self.peer_listen_port)
        )

    def failed(self, reason: str, ask_again: bool = False) -> None:
        """The peer does not listen for us (now). ``ask_again``: it may later, so retry."""
        if self.state is ServiceState.FAILED or self._removed:
            return
        self.state, self.reason = ServiceState.FAILED, reason
        self._context.emit(events.ServiceFailed(self.name, reason))
        close_subchannel(self.channel)
        if ask_again and not self._context.stopped:
            # No request since the peer last listened (it stopped listening): start at 1 s too.
            delay = retry_delay(max(self._attempts - 1, 0))
            self._retry = self._context.reactor.callLater(delay, self.request)

    def channel_lost(self) -> None:
        self.channel = None
        if self.state is ServiceState.READY:
            self.failed("peer stopped listening", ask_again=True)

    def remove(self) -> None:
        self._removed = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        close_subchannel(self.channel)
