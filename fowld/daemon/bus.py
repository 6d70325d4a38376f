"""fowld on D-Bus: the manager object, one object per session, and the bus connection.

The objects translate: D-Bus calls become ``Manager`` and
``SupervisedSession`` calls, session events become properties and signals.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from txdbus import client
from txdbus.error import FailedToAcquireName
from txdbus.objects import dbusMethod

from fowld import __version__, events
from fowld.daemon import api
from fowld.daemon.errors import AlreadyExists, Failed, InvalidArgs
from fowld.daemon.exported import ExportedObject, ObjectHandler
from fowld.daemon.manager import Manager
from fowld.daemon.supervisor import SupervisedSession
from fowld.daemon.values import session_path, typed
from fowld.endpoints import EndpointError, parse_connect, parse_listen
from fowld.forwarder import ClientWant, ForwardingError
from fowld.profiles import Profile, ProfileChanges
from fowld.session import SessionError
from fowld.status import PeerState

log = Logger()
CLOSE_REPLY_TIMEOUT = 15.0  # Close() answers by then even if the mailbox is slow to say goodbye
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _check_name(kind: str, name: str) -> None:
    if not _NAME.fullmatch(name):
        raise InvalidArgs(f"{kind} name {name!r} must be 1-64 letters, digits, '.', '_' or '-'")


# --- sessions -------------------------------------------------------------------------------------


def _client_state(session: SupervisedSession, want: ClientWant | None, name: str) -> tuple[int, str]:
    if want is not None and want.port is not None:
        return getattr(want.port.getHost(), "port", 0), "listening"
    if name in session.client_failures:
        return 0, "failed"
    return 0, "waiting"


def session_properties(session: SupervisedSession) -> dict[str, object]:
    """Every property of a session object, from the session's current state."""
    status = session.status
    live = session.live_session
    offers = live.forwarder.services if live is not None else {}
    wants = live.forwarder.clients if live is not None else {}
    services = []
    for spec in session.services:
        offer = offers.get(spec.name)
        state, reason = (offer.state, offer.reason) if offer is not None else ("requesting", "")
        services.append((spec.name, spec.connect.spec, state, reason))
    clients = []
    for spec in session.clients:
        port, state = _client_state(session, wants.get(spec.name), spec.name)
        clients.append((spec.name, spec.listen.spec, port, state))
    return {
        "Id": session.id,
        "Profile": session.profile.name,
        "State": status.phase.value,
        "StateReason": status.reason,
        "Code": status.code or "",
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
        "CreatedUSec": session.created_usec,
        "Restarts": session.restarts,
    }


class SessionObject(ExportedObject):
    interfaces = (api.SESSION,)

    def __init__(self, session: SupervisedSession, reactor: Any):
        super().__init__(session_path(session.id), reactor, throttled=api.SESSION_COUNTERS)
        self.session = session
        self._reactor = reactor
        self._state = session.status.phase.value
        self.refresh()
        session.subscribe(self._event)

    def refresh(self) -> None:
        self.update(api.SESSION, session_properties(self.session))

    def _event(self, event: events.Event) -> None:
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
            raise Failed(f"ping failed: {failure.getErrorMessage() or failure.type.__name__}")

        return self.session.ping().addCallbacks(float, failed)


@contextmanager
def _failures_translated() -> Iterator[None]:
    """Engine refusals (closing session, duplicate names) become D-Bus Failed errors."""
    try:
        yield
    except (SessionError, ForwardingError, EndpointError) as e:
        raise Failed(str(e)) from None


# --- the manager ----------------------------------------------------------------------------------


def profile_summary(profile: Profile) -> dict[str, object]:
    """One entry of the Profiles property (values are variants)."""
    return {
        "name": profile.name,
        "description": profile.description,
        "path": profile.source,
        "services": typed("as", [f"{s.name} -> {s.connect.spec}" for s in profile.services]),
        "clients": typed("as", [f"{c.name} <- {c.listen.spec}" for c in profile.clients]),
        "autostart": profile.autostart,
        "has_code": profile.code is not None,
        "restart": profile.restart.value,
    }


class ManagerObject(ExportedObject):
    """``/org/fowl/Fowld1``: the Manager interface and the ObjectManager of all sessions."""

    interfaces = (api.MANAGER, api.OBJECT_MANAGER)

    def __init__(self, manager: Manager, reactor: Any, reload: Callable[[], ProfileChanges]):
        super().__init__(api.MANAGER_PATH, reactor)
        self.manager = manager
        self._reload = reload
        self._reactor = reactor
        self._objects: dict[str, SessionObject] = {}
        self.update(api.MANAGER, {"Version": __version__, "Sessions": []})
        self.profiles_changed()
        manager.add_listener(self)

    def export(self, handler: ObjectHandler) -> None:
        handler.exportObject(self)
        for obj in self._objects.values():
            handler.exportObject(obj)

    def _sessions_changed(self) -> None:
        self.update(api.MANAGER, {"Sessions": sorted(self._objects)})

    # ManagerListener ---------------------------------------------------------------------------

    def session_added(self, session: SupervisedSession) -> None:
        obj = SessionObject(session, self._reactor)
        self._objects[obj.getObjectPath()] = obj
        if self._objectHandler is not None:
            self._objectHandler.exportObject(obj)
            self.emitSignal("InterfacesAdded", obj.getObjectPath(), obj.interfaces_and_properties())
        self._sessions_changed()

    def session_changed(self, session: SupervisedSession) -> None:
        """Session objects follow their sessions themselves."""

    def session_removed(self, session: SupervisedSession) -> None:
        obj = self._objects.pop(session_path(session.id), None)
        if obj is None:
            return
        obj.refresh()
        obj.flush()  # the final state goes out before the object disappears
        obj.stop_announcing()
        if self._objectHandler is not None:
            self.emitSignal("InterfacesRemoved", obj.getObjectPath(), list(obj.interfaces_and_properties()))
            self._objectHandler.unexportObject(obj.getObjectPath())
        self._sessions_changed()

    def profiles_changed(self) -> None:
        store = self.manager.store
        self.update(
            api.MANAGER,
            {
                "Profiles": [profile_summary(p) for p in store.profiles],
                "ProfileErrors": [(e.source, str(e)) for e in store.errors],
            },
        )

    # methods -----------------------------------------------------------------------------------

    @dbusMethod(api.MANAGER_INTERFACE, "Invite")
    def _dbus_invite(self, profile: str) -> Deferred:
        d = self.manager.invite(profile)
        return d.addCallback(lambda result: (session_path(result[0].id), result[1]))

    @dbusMethod(api.MANAGER_INTERFACE, "Accept")
    def _dbus_accept(self, profile: str, code: str) -> str:
        return session_path(self.manager.accept(profile, code).id)

    @dbusMethod(api.MANAGER_INTERFACE, "Start")
    def _dbus_start(self, profile: str) -> str:
        return session_path(self.manager.start(profile).id)

    @dbusMethod(api.MANAGER_INTERFACE, "Reload")
    def _dbus_reload(self) -> tuple[list[str], list[str], list[str]]:
        changes = self._reload()
        return list(changes.added), list(changes.changed), list(changes.removed)

    @dbusMethod(api.MANAGER_INTERFACE, "GetSession")
    def _dbus_get_session(self, session_id: str) -> str:
        return session_path(self.manager.sessions.find(session_id).id)


# --- the connection -------------------------------------------------------------------------------


class BusError(Exception):
    """The daemon cannot serve on the bus; the message says why."""


class BusService(Service):
    """Connects to the session bus, exports the manager and owns ``org.fowl.Fowld1``.

    ``ready`` fires once the name is ours, or fails with a ``BusError``.
    ``on_lost`` is called if the bus connection drops while running.
    """

    def __init__(self, reactor: Any, manager_object: ManagerObject, on_lost: Callable[[str], None]):
        self._reactor = reactor
        self._manager_object = manager_object
        self._on_lost = on_lost
        self.connection: client.DBusClientConnection | None = None
        self.ready: Deferred = Deferred()

    def startService(self) -> None:
        super().startService()
        Deferred.fromCoroutine(self._connect()).chainDeferred(self.ready)

    async def _connect(self) -> None:
        try:
            connection = await client.connect(self._reactor, "session")
        except Exception as e:  # txdbus raises plain exceptions for missing or unusable addresses
            raise BusError(
                f"cannot connect to the session bus ({e}); is DBUS_SESSION_BUS_ADDRESS set?"
            ) from None
        connection.objHandler = ObjectHandler(connection)
        self._manager_object.export(connection.objHandler)
        try:
            await connection.requestBusName(api.BUS_NAME)
        except FailedToAcquireName:
            connection.disconnect()
            raise BusError(
                f"the bus name {api.BUS_NAME} is already owned: another fowld is running on this bus"
            ) from None
        self.connection = connection
        connection.notifyOnDisconnect(self._lost)

    def _lost(self, _connection: client.DBusClientConnection, reason: Failure) -> None:
        if self.running:
            self._on_lost(f"lost the connection to the session bus: {reason.getErrorMessage()}")

    def stopService(self) -> None:
        super().stopService()
        if self.connection is not None:
            self.connection.disconnect()
            self.connection = None
