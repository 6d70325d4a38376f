"""Talking to fowld on the session bus (txdbus, asynchronous)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from txdbus import client
from txdbus.error import DBusException, RemoteError, TimeOut

from fowlctl.errors import BusUnreachable, CtlError, FowldNotRunning, TimedOut, from_remote
from fowlctl.ids import SESSION_PATH_PREFIX, resolve_session_id
from fowlctl.model import ProfileView, SessionView, profile_from_dict, session_from_properties
from fowld.dbus.names import BUS_NAME, DBUS_NAME, DBUS_PATH, MANAGER_PATH
from fowld.dbus.names import MANAGER_INTERFACE as MANAGER
from fowld.dbus.names import OBJECT_MANAGER_INTERFACE as OBJECT_MANAGER
from fowld.dbus.names import PROPERTIES_INTERFACE as PROPERTIES
from fowld.dbus.names import SESSION_INTERFACE as SESSION

DBUS = DBUS_NAME

CALL_TIMEOUT = 15.0  # seconds; fowld answers most calls at once
SLOW_CALL_TIMEOUT = 60.0  # Invite waits up to 30 s for the mailbox to hand out a code
ACTIVATION_TIMEOUT = 60.0  # the bus itself gives an activated service 25 s to own its name
ACTIVATION_FAILED = (
    "fowld is not running and D-Bus activation could not start it"
    " (see `journalctl --user -u fowld`, or run `fowld`)"
)


def session_bus_address(environ: Mapping[str, str], explicit: str | None = None) -> str:
    """Where the session bus is: ``--bus``, ``$DBUS_SESSION_BUS_ADDRESS``, or ``$XDG_RUNTIME_DIR/bus``."""
    if explicit:
        return explicit
    address = environ.get("DBUS_SESSION_BUS_ADDRESS", "").strip()
    if address:
        return address
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    if runtime and Path(runtime, "bus").is_socket():
        return f"unix:path={Path(runtime, 'bus')}"
    raise BusUnreachable(
        "cannot find the session bus: DBUS_SESSION_BUS_ADDRESS is not set"
        " (log in to a desktop session, or pass --bus ADDRESS)"
    )


class Fowld:
    """A connection to fowld: method calls, properties and signals, with errors translated."""

    def __init__(self, connection: client.DBusClientConnection) -> None:
        self._connection = connection

    @classmethod
    async def connect(cls, reactor, address: str | None = None) -> Fowld:
        """Connect to the bus and make sure fowld is on it (raises CtlError otherwise)."""
        address = session_bus_address(os.environ, address)
        try:
            connection = await client.connect(reactor, address).addTimeout(CALL_TIMEOUT, reactor)
        except Exception as e:  # txdbus raises plain Exception for unusable addresses
            raise BusUnreachable(f"cannot connect to the session bus at {address}: {_reason(e)}") from None
        fowld = cls(connection)
        try:
            await fowld._ensure_running()
        except BaseException:
            fowld.disconnect()
            raise
        return fowld

    async def _ensure_running(self) -> None:
        """Make sure fowld owns its name, starting it by D-Bus activation where the bus can."""
        if await self._call(DBUS, DBUS_PATH, DBUS, "NameHasOwner", "s", [BUS_NAME]):
            return
        try:
            # Answers once fowld owns its name (the bus gives up after its own timeout). A bus
            # looks through its service directories again for a name it does not know, so an
            # activation file installed after the bus started is found here.
            await self._call(
                DBUS, DBUS_PATH, DBUS, "StartServiceByName", "su", [BUS_NAME, 0], timeout=ACTIVATION_TIMEOUT
            )
        except FowldNotRunning:
            raise  # ServiceUnknown: neither running nor activatable
        except TimedOut:
            raise TimedOut(
                f"fowld did not start within {ACTIVATION_TIMEOUT:g} s of being activated"
            ) from None
        except CtlError as e:
            raise FowldNotRunning(f"{ACTIVATION_FAILED}: {e.message}") from None

    def disconnect(self) -> None:
        self._connection.disconnect()

    def on_bus_lost(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` if the connection to the bus drops."""
        self._connection.notifyOnDisconnect(lambda _connection, _reason: callback())

    async def _call(
        self,
        destination: str,
        path: str,
        interface: str,
        method: str,
        signature: str | None = None,
        body: list | None = None,
        timeout: float = CALL_TIMEOUT,
        what: str = "",
    ):
        try:
            return await self._connection.callRemote(
                path,
                method,
                interface=interface,
                destination=destination,
                signature=signature,
                body=body,
                timeout=timeout,
                autoStart=False,
            )
        except RemoteError as e:
            raise from_remote(e.errName, e.message, what) from None
        except TimeOut:
            raise TimedOut(f"fowld did not answer within {timeout:g} s") from None
        except DBusException as e:
            raise CtlError(f"D-Bus error: {e}") from None

    async def call_manager(
        self,
        method: str,
        signature: str | None = None,
        body: list | None = None,
        timeout: float = CALL_TIMEOUT,
    ):
        return await self._call(BUS_NAME, MANAGER_PATH, MANAGER, method, signature, body, timeout)

    async def call_session(
        self,
        object_path: str,
        session_id: str,
        method: str,
        signature: str | None = None,
        body: list | None = None,
    ):
        what = f"session {session_id}"
        return await self._call(BUS_NAME, object_path, SESSION, method, signature, body, what=what)

    async def manager_property(self, name: str):
        return await self._call(BUS_NAME, MANAGER_PATH, PROPERTIES, "Get", "ss", [MANAGER, name])

    async def sessions(self) -> list[SessionView]:
        objects = await self._call(BUS_NAME, MANAGER_PATH, OBJECT_MANAGER, "GetManagedObjects")
        return [
            session_from_properties(path, interfaces[SESSION])
            for path, interfaces in objects.items()
            if path.startswith(SESSION_PATH_PREFIX) and SESSION in interfaces
        ]

    async def session(self, object_path: str, session_id: str = "") -> SessionView:
        """A session's current properties; SessionNotFound once it has gone."""
        what = f"session {session_id or object_path}"
        props = await self._call(BUS_NAME, object_path, PROPERTIES, "GetAll", "s", [SESSION], what=what)
        return session_from_properties(object_path, props)

    async def find_session(self, query: str) -> SessionView:
        """The session a user means by ``query`` (full id, number or unique prefix)."""
        sessions = await self.sessions()
        wanted = resolve_session_id(query, [s.id for s in sessions])
        return next(s for s in sessions if s.id == wanted)

    async def profiles(self) -> tuple[list[ProfileView], list[tuple[str, str]]]:
        profiles = await self.manager_property("Profiles")
        errors = await self.manager_property("ProfileErrors")
        return [profile_from_dict(p) for p in profiles], [(str(f), str(m)) for f, m in errors]

    async def subscribe(
        self, on_signal: Callable[[object], None], on_owner_change: Callable[[str], None]
    ) -> None:
        """Deliver every signal fowld emits, and changes of who owns its bus name.

        ``on_owner_change`` receives the new owner's unique name, "" when fowld left the bus.
        """
        await self._connection.addMatch(on_signal, sender=BUS_NAME, path_namespace=MANAGER_PATH)

        def owner_changed(message) -> None:
            _, _, new_owner = message.body
            on_owner_change(new_owner)

        await self._connection.addMatch(
            owner_changed,
            sender=DBUS,
            interface=DBUS,
            member="NameOwnerChanged",
            path=DBUS_PATH,
            arg=[(0, BUS_NAME)],
        )


def _reason(e: BaseException) -> str:
    """The useful end of txdbus's nested connection error messages."""
    text = str(e).rsplit("Last error:", 1)[-1]
    text = text.replace("An error occurred while connecting:", "").strip()
    text = re.sub(r"^\d+: ", "", text).rstrip(". ")  # a leading errno
    return text or type(e).__name__
