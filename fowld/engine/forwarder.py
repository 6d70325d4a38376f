"""Named services and clients of one session, on top of a Dilated wormhole.

A **service** is offered to the peer: the peer listens for it, and streams
it opens end at our ``connect`` address (``services``). A **client** is wanted
from the peer: we listen at our ``listen`` address once the peer offers a
service of that name (``clients``). The peer reaches only names declared
here; both kinds can be added and removed at any time.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, gatherResults

from fowld.engine import wire
from fowld.engine.clients import ClientRegistry
from fowld.engine.context import ForwardingContext, ForwardingError
from fowld.engine.control import ControlResponderFactory
from fowld.engine.endpoints import Address
from fowld.engine.limits import Limits
from fowld.engine.services import ServiceOffer
from fowld.engine.status import ClientStatus, ServiceStatus
from fowld.engine.streams import Emit, StreamTable
from fowld.engine.tunnel import IncomingTunnelFactory


class Forwarder:
    def __init__(self, reactor: Any, limits: Limits, emit: Emit):
        self._context = ForwardingContext(reactor, limits, emit, StreamTable(reactor, limits, emit))
        self._services: dict[str, ServiceOffer] = {}
        self._clients = ClientRegistry(self._context)

    def attach(self, dilated: Any) -> None:
        """Start serving the peer's subchannels and ask for our services."""
        self._context.dilated = dilated
        control = ControlResponderFactory(self._context, self._clients)
        dilated.listener_for(wire.CONTROL_SUBPROTOCOL).listen(control)
        dilated.listener_for(wire.STREAM_SUBPROTOCOL).listen(
            IncomingTunnelFactory(self._context, self.service_target)
        )
        for offer in self._services.values():
            offer.request()

    # services (offered here) -------------------------------------------------

    def add_service(
        self,
        name: str,
        connect: Address | None,
        peer_listen_port: int | None = None,
        connect_host: str | None = None,
    ) -> None:
        if name in self._services:
            raise ForwardingError(f"service {name!r} already exists")
        offer = ServiceOffer(self._context, name, connect, peer_listen_port, connect_host)
        self._services[name] = offer
        if self._context.dilated is not None:
            offer.request()

    def remove_service(self, name: str) -> None:
        offer = self._services.pop(name, None)
        if offer is None:
            raise ForwardingError(f"no service named {name!r}")
        offer.remove()

    def service_target(self, name: str, listen_port: int | None) -> tuple[Address | None, str | None]:
        """Where a peer's stream for ``name`` goes, or why it may not."""
        offer = self._services.get(name)
        if offer is None or offer.connect is None:
            return None, f"no service named {name!r} is offered here"
        if listen_port is not None and offer.peer_listen_port not in (None, listen_port):
            return None, f"service {name!r} expects port {offer.peer_listen_port}, not {listen_port}"
        return offer.connect, None

    # clients (wanted from the peer) -----------------------------------------

    def add_client(self, name: str, listen: Address, connect_port: int | None = None) -> None:
        self._clients.add(name, listen, connect_port)

    def remove_client(self, name: str) -> Deferred:
        return self._clients.remove(name)

    # what there is -----------------------------------------------------------

    def service_statuses(self) -> tuple[ServiceStatus, ...]:
        return tuple(offer.status for offer in self._services.values())

    def client_statuses(self) -> tuple[ClientStatus, ...]:
        return self._clients.statuses()

    @property
    def open_streams(self) -> int:
        return len(self._context.streams)

    # shutting down -----------------------------------------------------------

    def stop(self, reason: str = "session closing") -> Deferred:
        """Stop listening, end every stream (as lost, with ``reason``) and control channel."""
        context = self._context
        context.stopped = True
        context.streams.cut_all(f"session ended: {reason}")
        context.streams.stop()
        for offer in self._services.values():
            offer.remove()
        return gatherResults([self._clients.stop()])


__all__ = ["Forwarder", "ForwardingError"]
