"""The daemon's connection to the session bus, and the name it owns there."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from txdbus import client
from txdbus.error import FailedToAcquireName

from fowld.dbus import api
from fowld.dbus.exported import ObjectHandler
from fowld.dbus.manager_object import ManagerObject


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
