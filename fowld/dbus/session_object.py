"""A session on D-Bus: its properties and signals follow the session; its methods act on it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from twisted.internet.defer import Deferred, TimeoutError
from twisted.python.failure import Failure
from txdbus.objects import dbusMethod

from fowld.daemon.errors import AlreadyExists, Failed, InvalidArgs
from fowld.daemon.refusals import Refusals, stream_refusal
from fowld.daemon.supervisor import Mode, SupervisedSession
from fowld.dbus import api
from fowld.dbus.exported import ExportedObject
from fowld.dbus.names import session_path
from fowld.engine import events, rules
from fowld.engine.endpoints import EndpointError, parse_connect, parse_listen
from fowld.engine.forwarder import ForwardingError
from fowld.engine.session import SessionError
from fowld.engine.status import PeerState, Phase

CLOSE_REPLY_TIMEOUT = 15.0  # Close() answers by then even if the mailbox is slow to say goodbye
PING_TIMEOUT = 10.0


def _check_name(kind: str, name: str) -> None:
    try:
        rules.check_name(name, f"{kind} name")
    except rules.RuleError as e:
        raise InvalidArgs(str(e)) from None


def shown_code(session: SupervisedSession) -> str:
    """The code, only where a person must pass it on: an invitation's fresh code until the peer
    comes. A fixed code (reusable, so guessable again and again) and a code the peer gave us are
    never shown, nor any code once the peer is there."""
    waiting = session.status.phase in (Phase.STARTING, Phase.WAITING)
    return (session.status.code or "") if session.mode is Mode.INVITE and waiting else ""


def session_properties(session: SupervisedSession, refusals: Refusals) -> dict[str, object]:
    """Every property of a session object, from the session's current state."""
    status = session.status
    services = [(s.name, s.connect, s.state.value, s.reason) for s in session.service_statuses()]
    client_statuses = session.client_statuses()
    clients = [(c.name, c.listen, c.port, c.state.value) for c in client_statuses]
    return {
        "Id": session.id,
        "Profile": session.profile.name,
        "State": status.phase.value,
        "StateReason": status.reason,
        "Code": shown_code(session),
        "Verifier": status.verifier or "",
        "PeerConnected": status.peer is PeerState.CONNECTED,
        "Path": status.path.value,
        "Hint": status.hint,
        "Generation": status.generation,
        "MailboxUrl": status.mailbox_url,
        "MailboxState": status.mailbox.value,
        "Services": services,
        "Clients": clients,
        "BytesIn": session.bytes_in,
        "BytesOut": session.bytes_out,
        "OpenConnections": session.open_connections,
        "TotalConnections": session.total_connections,
        "Connections": [
            (c.id, c.service, c.direction, c.bytes_in, c.bytes_out, c.opened_usec)
            for c in session.connections.current
        ],
        "CreatedUSec": session.created_usec,
        "Restarts": session.restarts,
        "ClientReasons": [(c.name, c.reason) for c in client_statuses],
        "RefusedConnections": refusals.refused,
        "LostConnections": refusals.lost,
    }


class SessionObject(ExportedObject):
    interfaces = (api.SESSION,)

    def __init__(self, session: SupervisedSession, reactor: Any):
        super().__init__(session_path(session.id), reactor, throttled=api.SESSION_COUNTERS)
        self.session = session
        self._state = session.status.phase.value
        self._refusals = Refusals(session.id, reactor)  # counted and logged for the daemon
        self.refresh()
        session.subscribe(self._event)

    def refresh(self) -> None:
        self.update(api.SESSION, session_properties(self.session, self._refusals))

    def _event(self, event: events.Event) -> None:
        self._refusals.follow(event)
        self.refresh()
        match event:
            case events.StatusChanged(status) if status.phase.value != self._state:
                self._state = status.phase.value
                self.emitSignal("StateChanged", status.phase.value, status.reason)
            case events.StreamOpened(id, name, direction):
                self.emitSignal("ConnectionOpened", id, name, direction.value)
            case events.StreamClosed(id, name, direction, into_tunnel, out_of_tunnel, reason, _):
                self.emitSignal(
                    "ConnectionClosed", id, name, direction.value, into_tunnel, out_of_tunnel, reason or ""
                )
        if (refusal := stream_refusal(event)) is not None:
            self.emitSignal("ConnectionRefused", *refusal)

    @dbusMethod(api.SESSION_INTERFACE, "Close")
    def _dbus_close(self) -> Deferred:
        d = self.session.close()
        d.addTimeout(CLOSE_REPLY_TIMEOUT, self._reactor)
        # Past the timeout the session goes on closing in the background; the caller is told it ends.
        return d.addBoth(lambda _: None)

    @dbusMethod(api.SESSION_INTERFACE, "AddService")
    def _dbus_add_service(self, name: str, connect: str) -> None:
        _check_name("service", name)
        if any(s.name == name for s in self.session.services):
            raise AlreadyExists(f"session {self.session.id} already offers a service {name!r}")
        try:
            address = parse_connect(connect)
        except EndpointError as e:
            raise InvalidArgs(str(e)) from None
        with _failures_translated():
            self.session.add_service(name, address)
        self.refresh()

    @dbusMethod(api.SESSION_INTERFACE, "RemoveService")
    def _dbus_remove_service(self, name: str) -> None:
        if not any(s.name == name for s in self.session.services):
            raise InvalidArgs(f"session {self.session.id} offers no service {name!r}")
        with _failures_translated():
            self.session.remove_service(name)
        self.refresh()

    @dbusMethod(api.SESSION_INTERFACE, "AddClient")
    def _dbus_add_client(self, name: str, listen: str) -> None:
        _check_name("client", name)
        if any(c.name == name for c in self.session.clients):
            raise AlreadyExists(f"session {self.session.id} already has a client {name!r}")
        try:
            address = parse_listen(listen)
        except EndpointError as e:
            raise InvalidArgs(str(e)) from None
        with _failures_translated():
            self.session.add_client(name, address)
        self.refresh()

    @dbusMethod(api.SESSION_INTERFACE, "RemoveClient")
    def _dbus_remove_client(self, name: str) -> Deferred:
        if not any(c.name == name for c in self.session.clients):
            raise InvalidArgs(f"session {self.session.id} has no client {name!r}")
        with _failures_translated():
            d = self.session.remove_client(name)
        self.refresh()
        return d.addCallback(lambda _: self.refresh())

    @dbusMethod(api.SESSION_INTERFACE, "Ping")
    def _dbus_ping(self) -> Deferred:
        def failed(failure: Failure) -> None:
            if failure.check(TimeoutError):
                raise Failed(f"the peer did not answer within {PING_TIMEOUT:g} s")
            raise Failed(f"ping failed: {failure.getErrorMessage() or failure.type.__name__}")

        return self.session.ping(PING_TIMEOUT).addCallbacks(float, failed)


@contextmanager
def _failures_translated() -> Iterator[None]:
    """Engine refusals (closing session, duplicate names) become D-Bus Failed errors."""
    try:
        yield
    except (SessionError, ForwardingError, EndpointError) as e:
        raise Failed(str(e)) from None
