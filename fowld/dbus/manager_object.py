"""The manager on D-Bus (``/org/fowl/Fowld1``): starts sessions, lists profiles, manages objects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from txdbus.objects import dbusMethod

from fowld import __version__
from fowld.daemon.manager import INLINE_OPTIONS, Manager, StartOptions
from fowld.daemon.profiles import Profile, ProfileChanges
from fowld.daemon.supervisor import SupervisedSession
from fowld.dbus import api
from fowld.dbus.exported import ExportedObject, ObjectHandler
from fowld.dbus.names import session_path
from fowld.dbus.session_object import SessionObject
from fowld.dbus.values import typed


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
        "peer": profile.peer or "",
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
        self.pairings_changed()
        manager.add_listener(self)

    def export(self, handler: ObjectHandler) -> None:
        handler.exportObject(self)
        for obj in self._objects.values():
            handler.exportObject(obj)

    def _sessions_changed(self) -> None:
        self.update(api.MANAGER, {"Sessions": list(self._objects)})  # oldest first

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

    def pairings_changed(self) -> None:
        summaries, errors = self.manager.pairing_summaries()
        self.update(api.MANAGER, {"Pairings": summaries, "PairingErrors": errors})

    # methods -----------------------------------------------------------------------------------

    @dbusMethod(api.MANAGER_INTERFACE, "Invite")
    def _dbus_invite(self, profile: str) -> Deferred:
        d = self.manager.invite(profile)
        return d.addCallback(lambda result: (session_path(result[0].id), result[1]))

    @dbusMethod(api.MANAGER_INTERFACE, "Accept")
    def _dbus_accept(self, profile: str, code: str) -> str:
        return session_path(self.manager.accept(profile, code).id)

    @dbusMethod(api.MANAGER_INTERFACE, "InviteWith")
    def _dbus_invite_with(self, profile: str, options: dict) -> Deferred:
        d = self.manager.invite(profile, StartOptions.from_mapping(dict(options)))
        return d.addCallback(lambda result: (session_path(result[0].id), result[1]))

    @dbusMethod(api.MANAGER_INTERFACE, "AcceptWith")
    def _dbus_accept_with(self, profile: str, code: str, options: dict) -> str:
        return session_path(self.manager.accept(profile, code, StartOptions.from_mapping(dict(options))).id)

    @dbusMethod(api.MANAGER_INTERFACE, "InviteInline")
    def _dbus_invite_inline(self, profile: dict, options: dict) -> Deferred:
        inline, start = _split_inline_options(options)
        d = self.manager.invite_profile(self.manager.inline_profile(profile, inline), start)
        return d.addCallback(lambda result: (session_path(result[0].id), result[1]))

    @dbusMethod(api.MANAGER_INTERFACE, "AcceptInline")
    def _dbus_accept_inline(self, profile: dict, code: str, options: dict) -> str:
        inline, start = _split_inline_options(options)
        session = self.manager.accept_profile(self.manager.inline_profile(profile, inline), code, start)
        return session_path(session.id)

    @dbusMethod(api.MANAGER_INTERFACE, "Forget")
    def _dbus_forget(self, name: str) -> Deferred:
        return self.manager.forget(name).addCallback(lambda _: None)

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


def _split_inline_options(options: dict) -> tuple[dict, StartOptions]:
    """An inline invite's or accept's options: those of the inline profile, and a person's."""
    inline = {k: v for k, v in options.items() if k in INLINE_OPTIONS}
    start = StartOptions.from_mapping({k: v for k, v in options.items() if k not in INLINE_OPTIONS})
    return inline, start
