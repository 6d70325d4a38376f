"""Exported objects: properties with batched change signals, introspection, ObjectManager.

txdbus dispatches method calls well, but announces every property change in
a signal of its own, sends ObjectManager signals from the wrong path and
describes every object as an ObjectManager. ``ObjectHandler`` and
``ExportedObject`` replace those parts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from txdbus import message
from txdbus.objects import DBusObject, DBusObjectHandler, dbusMethod

from fowld.dbus import api
from fowld.dbus.errors import property_read_only, translated, unknown_interface, unknown_property
from fowld.dbus.values import typed
from fowld.engine.limits import Limits

# Seconds between two announcements of fast-moving counters: the engine's own interval for
# byte reports. The first change after a quiet spell goes out at once (at the end of the
# reactor turn), so the two stages of coalescing never add up to twice the interval.
COUNTER_INTERVAL = Limits().bytes_report_interval


class ExportedObject(DBusObject):
    """An object with read-only properties, declared by ``api.Interface`` values.

    ``update()`` stores new values at once (Get sees them) and announces them
    in one PropertiesChanged per interface once the current reactor turn ends;
    properties listed as ``throttled`` are announced at most every
    ``COUNTER_INTERVAL`` seconds.
    """

    interfaces: tuple[api.Interface, ...] = ()

    def __init__(self, path: str, reactor: Any, throttled: Iterable[str] = ()):
        super().__init__(path)
        self._reactor = reactor
        self._throttled = frozenset(throttled)
        self._values: dict[str, dict[str, object]] = {i.name: {} for i in self.interfaces}
        self._pending: dict[str, dict[str, object]] = {}
        self._pending_throttled: dict[str, dict[str, object]] = {}
        self._flush_call: IDelayedCall | None = None
        self._throttled_call: IDelayedCall | None = None
        self._throttled_sent = float("-inf")  # when throttled properties were last announced

    def executeMethod(self, interfaceObj: Any, methodName: str, methodArguments: list, sender: str) -> Any:
        # The one place where the daemon's errors become D-Bus errors, for every method.
        run = super().executeMethod
        return translated(lambda: run(interfaceObj, methodName, methodArguments, sender))

    def getInterfaces(self):
        for spec in self.interfaces:
            yield spec.dispatch
        yield from super().getInterfaces()  # txdbus's Properties interface

    # properties ------------------------------------------------------------------------------

    def update(self, interface: api.Interface, values: dict[str, object]) -> None:
        """Set properties of ``interface``; changed ones are announced soon."""
        current = self._values[interface.name]
        for name, value in values.items():
            prop = interface.property(name)
            if prop is None:
                raise KeyError(f"{interface.name} has no property {name}")
            value = typed(prop.type, value)
            if name in current and current[name] == value:
                continue
            first = name not in current
            current[name] = value
            if first or prop.emits != "true":
                continue  # initial values travel in InterfacesAdded / GetAll
            if name in self._throttled:
                self._pending_throttled.setdefault(interface.name, {})[name] = value
                if self._throttled_call is None:
                    quiet = self._reactor.seconds() - self._throttled_sent >= COUNTER_INTERVAL
                    delay = 0 if quiet else COUNTER_INTERVAL
                    self._throttled_call = self._reactor.callLater(delay, self._flush_throttled)
            else:
                self._pending.setdefault(interface.name, {})[name] = value
                if self._flush_call is None:
                    self._flush_call = self._reactor.callLater(0, self.flush)

    def properties(self, interface_name: str) -> dict[str, object]:
        return dict(self._values.get(interface_name, {}))

    def interfaces_and_properties(self) -> dict[str, dict[str, object]]:
        """What GetManagedObjects and InterfacesAdded say about this object."""
        found = {i.name: self.properties(i.name) for i in self.interfaces}
        found.update({i.name: {} for i in api.STANDARD_INTERFACES})
        return found

    def flush(self) -> None:
        """Announce every pending change now."""
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        pending, self._pending = self._pending, {}
        self._send_changes(pending)
        self._flush_throttled()

    def _flush_throttled(self) -> None:
        if self._throttled_call is not None and self._throttled_call.active():
            self._throttled_call.cancel()
        self._throttled_call = None
        self._throttled_sent = self._reactor.seconds()
        pending, self._pending_throttled = self._pending_throttled, {}
        self._send_changes(pending)

    def _send_changes(self, pending: dict[str, dict[str, object]]) -> None:
        for interface_name, changed in pending.items():
            if changed:
                self.emitSignal("PropertiesChanged", interface_name, changed, [])

    def stop_announcing(self) -> None:
        """Drop pending announcements (the object is going away)."""
        for call in (self._flush_call, self._throttled_call):
            if call is not None and call.active():
                call.cancel()
        self._flush_call = self._throttled_call = None
        self._pending, self._pending_throttled = {}, {}

    # org.freedesktop.DBus.Properties -----------------------------------------------------------

    def _find(self, interface_name: str, property_name: str) -> object:
        names = [interface_name] if interface_name else list(self._values)
        for name in names:
            if name in self._values and property_name in self._values[name]:
                return self._values[name][property_name]
        if interface_name and not self._knows(interface_name):
            raise unknown_interface(f"{self.getObjectPath()} has no interface {interface_name}")
        raise unknown_property(f"{interface_name or self.getObjectPath()} has no property {property_name}")

    def _knows(self, interface_name: str) -> bool:
        return interface_name in self._values or any(
            i.name == interface_name for i in api.STANDARD_INTERFACES
        )

    @dbusMethod(api.PROPERTIES_INTERFACE, "Get")
    def _dbus_get(self, interface_name: str, property_name: str) -> object:
        return self._find(interface_name, property_name)

    @dbusMethod(api.PROPERTIES_INTERFACE, "GetAll")
    def _dbus_get_all(self, interface_name: str) -> dict[str, object]:
        if not interface_name:
            merged: dict[str, object] = {}
            for values in self._values.values():
                merged.update(values)
            return merged
        if not self._knows(interface_name):
            raise unknown_interface(f"{self.getObjectPath()} has no interface {interface_name}")
        return self.properties(interface_name)

    @dbusMethod(api.PROPERTIES_INTERFACE, "Set")
    def _dbus_set(self, interface_name: str, property_name: str, value: object) -> None:
        self._find(interface_name, property_name)
        raise property_read_only(f"{property_name} is read-only")


class ObjectHandler(DBusObjectHandler):
    """Routes calls like txdbus's handler, with complete introspection and honest ObjectManager.

    Objects are exported and removed silently: the manager object sends
    InterfacesAdded / InterfacesRemoved from its own path, as the
    specification asks.
    """

    def exportObject(self, dbusObject: ExportedObject) -> None:
        self.exports[dbusObject.getObjectPath()] = dbusObject
        dbusObject.setObjectHandler(self)

    def unexportObject(self, objectPath: str) -> None:
        obj = self.exports.pop(objectPath, None)
        if obj is not None:
            obj.setObjectHandler(None)

    def handleMethodCallMessage(self, msg: message.MethodCallMessage) -> None:
        if msg.member == "Introspect" and msg.interface in (None, api.INTROSPECTABLE_INTERFACE):
            self._introspect(msg)
        elif msg.member == "GetManagedObjects" and msg.interface in (None, api.OBJECT_MANAGER_INTERFACE):
            self._managed_objects(msg)
        else:
            super().handleMethodCallMessage(msg)

    def _reply(self, msg: message.MethodCallMessage, signature: str, value: object) -> None:
        if msg.expectReply:
            reply = message.MethodReturnMessage(
                msg.serial, body=[value], destination=msg.sender, signature=signature
            )
            self.conn.sendMessage(reply)

    def _introspect(self, msg: message.MethodCallMessage) -> None:
        path = msg.path
        obj = self.exports.get(path)
        prefix = path.rstrip("/") + "/"
        children = sorted({p[len(prefix) :].split("/", 1)[0] for p in self.exports if p.startswith(prefix)})
        if obj is None and not children:
            self._send_err(msg, "org.freedesktop.DBus.Error.UnknownObject", f"no object at {path}")
            return
        interfaces = tuple(obj.interfaces) + api.STANDARD_INTERFACES if obj is not None else ()
        self._reply(msg, "s", api.introspection_xml(interfaces, children))

    def _managed_objects(self, msg: message.MethodCallMessage) -> None:
        obj = self.exports.get(msg.path)
        if obj is None or api.OBJECT_MANAGER not in obj.interfaces:
            self._send_err(
                msg,
                "org.freedesktop.DBus.Error.UnknownMethod",
                f"{msg.path} is not an object manager (the manager is {api.MANAGER_PATH})",
            )
            return
        prefix = msg.path.rstrip("/") + "/"
        managed = {
            path: o.interfaces_and_properties()
            for path, o in sorted(self.exports.items())
            if path.startswith(prefix) and isinstance(o, ExportedObject)
        }
        self._reply(msg, "a{oa{sa{sv}}}", managed)
