"""The D-Bus API of fowld: names, interfaces, their members and signatures.

Each interface is declared once, here. The declaration gives txdbus what it
needs to dispatch calls and check signatures, and gives clients complete
introspection XML (with argument names and property annotations, which
txdbus's own XML lacks).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from xml.sax.saxutils import quoteattr

from txdbus import interface as txinterface

from fowld.dbus.names import (  # noqa: F401 (the API's names, for the adapter's modules)
    BUS_NAME,
    INTROSPECTABLE_INTERFACE,
    MANAGER_INTERFACE,
    MANAGER_PATH,
    OBJECT_MANAGER_INTERFACE,
    PEER_INTERFACE,
    PROPERTIES_INTERFACE,
    SESSION_INTERFACE,
    SESSION_PATH_PREFIX,
)


@dataclass(frozen=True)
class Arg:
    name: str
    type: str


@dataclass(frozen=True)
class Method:
    name: str
    inputs: tuple[Arg, ...] = ()
    outputs: tuple[Arg, ...] = ()


@dataclass(frozen=True)
class Signal:
    name: str
    args: tuple[Arg, ...] = ()


@dataclass(frozen=True)
class Property:
    name: str
    type: str
    # "true": PropertiesChanged carries the new value; "const": never changes.
    emits: str = "true"


@dataclass(frozen=True)
class Interface:
    name: str
    methods: tuple[Method, ...] = ()
    signals: tuple[Signal, ...] = ()
    properties: tuple[Property, ...] = ()

    def property(self, name: str) -> Property | None:
        return next((p for p in self.properties if p.name == name), None)

    @cached_property
    def dispatch(self) -> txinterface.DBusInterface:
        """The methods and signals as txdbus declares them, for call dispatch and signal emission.

        Properties are left out: ``ExportedObject`` serves them itself.
        """
        members = [txinterface.Method(m.name, _sig(m.inputs), _sig(m.outputs)) for m in self.methods]
        members += [txinterface.Signal(s.name, _sig(s.args)) for s in self.signals]
        return txinterface.DBusInterface(self.name, *members, noRegister=True)

    def xml(self, indent: str = "  ") -> str:
        lines = [f"{indent}<interface name={quoteattr(self.name)}>"]
        for m in self.methods:
            lines.append(f"{indent}  <method name={quoteattr(m.name)}>")
            lines += [_arg_xml(a, "in", indent + "    ") for a in m.inputs]
            lines += [_arg_xml(a, "out", indent + "    ") for a in m.outputs]
            lines.append(f"{indent}  </method>")
        for s in self.signals:
            lines.append(f"{indent}  <signal name={quoteattr(s.name)}>")
            lines += [_arg_xml(a, None, indent + "    ") for a in s.args]
            lines.append(f"{indent}  </signal>")
        for p in self.properties:
            lines.append(
                f'{indent}  <property name={quoteattr(p.name)} type={quoteattr(p.type)} access="read">'
            )
            lines.append(
                f'{indent}    <annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal"'
                f" value={quoteattr(p.emits)}/>"
            )
            lines.append(f"{indent}  </property>")
        lines.append(f"{indent}</interface>")
        return "\n".join(lines)


def _sig(args: tuple[Arg, ...]) -> str:
    return "".join(a.type for a in args)


def _arg_xml(arg: Arg, direction: str | None, indent: str) -> str:
    where = f" direction={quoteattr(direction)}" if direction else ""
    return f"{indent}<arg name={quoteattr(arg.name)} type={quoteattr(arg.type)}{where}/>"


def _args(*pairs: str) -> tuple[Arg, ...]:
    """``_args("s profile", "o session")``: type and name, as the reference documents them."""
    return tuple(Arg(name, type_) for type_, name in (p.split(" ", 1) for p in pairs))


MANAGER = Interface(
    MANAGER_INTERFACE,
    methods=(
        Method("Invite", _args("s profile"), _args("o session", "s code")),
        Method("Accept", _args("s profile", "s code"), _args("o session")),
        Method("InviteWith", _args("s profile", "a{sv} options"), _args("o session", "s code")),
        Method("AcceptWith", _args("s profile", "s code", "a{sv} options"), _args("o session")),
        Method("Start", _args("s profile"), _args("o session")),
        Method("InviteInline", _args("a{sv} profile", "a{sv} options"), _args("o session", "s code")),
        Method("AcceptInline", _args("a{sv} profile", "s code", "a{sv} options"), _args("o session")),
        Method("Forget", _args("s name")),
        Method("Reload", (), _args("as added", "as changed", "as removed")),
        Method("GetSession", _args("s id"), _args("o session")),
    ),
    properties=(
        Property("Version", "s", emits="const"),
        Property("Profiles", "aa{sv}"),
        Property("ProfileErrors", "a(ss)"),
        Property("Sessions", "ao"),
        Property("Pairings", "aa{sv}"),
        Property("PairingErrors", "a(ss)"),
    ),
)

SESSION = Interface(
    SESSION_INTERFACE,
    methods=(
        Method("Close"),
        Method("AddService", _args("s name", "s connect")),
        Method("RemoveService", _args("s name")),
        Method("AddClient", _args("s name", "s listen")),
        Method("RemoveClient", _args("s name")),
        Method("Ping", (), _args("d seconds")),
    ),
    signals=(
        Signal("StateChanged", _args("s state", "s reason")),
        Signal("ConnectionOpened", _args("u id", "s service", "s direction")),
        Signal(
            "ConnectionClosed",
            _args("u id", "s service", "s direction", "t bytes_in", "t bytes_out", "s reason"),
        ),
        Signal("ConnectionRefused", _args("s service", "s reason")),
    ),
    properties=(
        Property("Id", "s", emits="const"),
        Property("Profile", "s", emits="const"),
        Property("State", "s"),
        Property("StateReason", "s"),
        Property("Code", "s"),  # an invitation's fresh code while it waits for its peer, else ""
        Property("Verifier", "s"),
        Property("PeerConnected", "b"),
        Property("Path", "s"),
        Property("Hint", "s"),
        Property("Generation", "u"),
        Property("MailboxUrl", "s"),
        Property("MailboxState", "s"),
        Property("Services", "a(ssss)"),
        Property("Clients", "a(ssus)"),
        Property("BytesIn", "t"),
        Property("BytesOut", "t"),
        Property("OpenConnections", "u"),
        Property("TotalConnections", "t"),
        Property("Connections", "a(ussttt)"),
        Property("CreatedUSec", "t", emits="const"),
        Property("Restarts", "u"),
        Property("ClientReasons", "a(ss)"),
        Property("RefusedConnections", "t"),
        Property("LostConnections", "t"),
    ),
)

# Session properties whose changes are announced at most twice a second.
SESSION_COUNTERS = frozenset(
    {
        "BytesIn",
        "BytesOut",
        "OpenConnections",
        "TotalConnections",
        "Connections",
        "RefusedConnections",
        "LostConnections",
    }
)

PROPERTIES = Interface(
    PROPERTIES_INTERFACE,
    methods=(
        Method("Get", _args("s interface_name", "s property_name"), _args("v value")),
        Method("GetAll", _args("s interface_name"), _args("a{sv} properties")),
        Method("Set", _args("s interface_name", "s property_name", "v value")),
    ),
    signals=(
        Signal(
            "PropertiesChanged",
            _args("s interface_name", "a{sv} changed_properties", "as invalidated_properties"),
        ),
    ),
)

OBJECT_MANAGER = Interface(
    OBJECT_MANAGER_INTERFACE,
    methods=(Method("GetManagedObjects", (), _args("a{oa{sa{sv}}} objects")),),
    signals=(
        Signal("InterfacesAdded", _args("o object_path", "a{sa{sv}} interfaces_and_properties")),
        Signal("InterfacesRemoved", _args("o object_path", "as interfaces")),
    ),
)

INTROSPECTABLE = Interface(INTROSPECTABLE_INTERFACE, methods=(Method("Introspect", (), _args("s xml_data")),))

# txdbus answers Peer.Ping itself, for every object; GetMachineId is not offered.
PEER = Interface(PEER_INTERFACE, methods=(Method("Ping"),))

STANDARD_INTERFACES = (PROPERTIES, INTROSPECTABLE, PEER)

DOCTYPE = (
    '<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"\n'
    ' "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">'
)


def introspection_xml(interfaces: tuple[Interface, ...], children: list[str]) -> str:
    """The XML answer to Introspect for an object (or an inner node when ``interfaces`` is empty)."""
    lines = [DOCTYPE, "<node>"]
    lines += [i.xml() for i in interfaces]
    lines += [f"  <node name={quoteattr(child)}/>" for child in children]
    lines.append("</node>")
    return "\n".join(lines) + "\n"
