"""The names of fowld's D-Bus API, shared by the daemon and its clients (fowlctl).

Light to import: no D-Bus library is loaded here.
"""

from __future__ import annotations

import re

BUS_NAME = "org.fowl.Fowld1"
MANAGER_PATH = "/org/fowl/Fowld1"
SESSION_PATH_PREFIX = MANAGER_PATH + "/session/"
MANAGER_INTERFACE = "org.fowl.Fowld1.Manager"
SESSION_INTERFACE = "org.fowl.Fowld1.Session"
PROPERTIES_INTERFACE = "org.freedesktop.DBus.Properties"
OBJECT_MANAGER_INTERFACE = "org.freedesktop.DBus.ObjectManager"
INTROSPECTABLE_INTERFACE = "org.freedesktop.DBus.Introspectable"
PEER_INTERFACE = "org.freedesktop.DBus.Peer"
DBUS_NAME = "org.freedesktop.DBus"  # the bus itself
DBUS_PATH = "/org/freedesktop/DBus"

ERROR_PREFIX = BUS_NAME + ".Error."
STANDARD_ERROR_PREFIX = "org.freedesktop.DBus.Error."
# fowld's own errors, by the name of the daemon's error class; each has a human message.
ERRORS = {
    "Failed": ERROR_PREFIX + "Failed",
    "ProfileNotFound": ERROR_PREFIX + "ProfileNotFound",
    "InvalidProfile": ERROR_PREFIX + "InvalidProfile",
    "NoCode": ERROR_PREFIX + "NoCode",
    "NoPairing": ERROR_PREFIX + "NoPairing",
    "SessionNotFound": ERROR_PREFIX + "SessionNotFound",
    "AlreadyExists": ERROR_PREFIX + "AlreadyExists",
    # bad arguments: the standard error, so generic clients understand it
    "InvalidArgs": STANDARD_ERROR_PREFIX + "InvalidArgs",
}
UNKNOWN_INTERFACE = STANDARD_ERROR_PREFIX + "UnknownInterface"
UNKNOWN_PROPERTY = STANDARD_ERROR_PREFIX + "UnknownProperty"
UNKNOWN_OBJECT = STANDARD_ERROR_PREFIX + "UnknownObject"
UNKNOWN_METHOD = STANDARD_ERROR_PREFIX + "UnknownMethod"
PROPERTY_READ_ONLY = STANDARD_ERROR_PREFIX + "PropertyReadOnly"
SERVICE_UNKNOWN = STANDARD_ERROR_PREFIX + "ServiceUnknown"
NAME_HAS_NO_OWNER = STANDARD_ERROR_PREFIX + "NameHasNoOwner"
NO_REPLY = STANDARD_ERROR_PREFIX + "NoReply"
TIMEOUT = STANDARD_ERROR_PREFIX + "Timeout"

_ESCAPED = re.compile(r"_([0-9A-Fa-f]{2})")


def escape_path_element(text: str) -> str:
    """Escape ``text`` for one element of an object path: bytes outside [A-Za-z0-9] become ``_XX``."""
    if not text:
        return "_"
    return "".join(
        chr(b) if chr(b).isascii() and chr(b).isalnum() else f"_{b:02x}" for b in text.encode("utf-8")
    )


def unescape_path_element(element: str) -> str:
    """Undo ``escape_path_element``: ``_XX`` is the byte with hex value XX."""
    raw = bytearray()
    i = 0
    while i < len(element):
        m = _ESCAPED.match(element, i)
        if m:
            raw.append(int(m.group(1), 16))
            i = m.end()
        else:
            raw.extend(element[i].encode("utf-8"))
            i += 1
    return raw.decode("utf-8", errors="replace")


def session_path(session_id: str) -> str:
    return SESSION_PATH_PREFIX + escape_path_element(session_id)


def id_from_path(object_path: str) -> str:
    """The session id a session object path stands for (the path itself when it is not one)."""
    if not object_path.startswith(SESSION_PATH_PREFIX):
        return object_path
    return unescape_path_element(object_path[len(SESSION_PATH_PREFIX) :])
