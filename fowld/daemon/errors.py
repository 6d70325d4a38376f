"""Errors the daemon's methods return; each has a D-Bus error name and a human message.

txdbus sends an exception's ``dbusErrorName`` as the error name and its
``str()`` as the message.
"""

from __future__ import annotations

ERROR_PREFIX = "org.fowl.Fowld1.Error."


class DaemonError(Exception):
    dbusErrorName = ERROR_PREFIX + "Failed"


class Failed(DaemonError):
    """The request was valid but could not be carried out."""


class ProfileNotFound(DaemonError):
    dbusErrorName = ERROR_PREFIX + "ProfileNotFound"


class InvalidProfile(DaemonError):
    dbusErrorName = ERROR_PREFIX + "InvalidProfile"


class NoCode(DaemonError):
    dbusErrorName = ERROR_PREFIX + "NoCode"


class SessionNotFound(DaemonError):
    dbusErrorName = ERROR_PREFIX + "SessionNotFound"


class AlreadyExists(DaemonError):
    dbusErrorName = ERROR_PREFIX + "AlreadyExists"


class InvalidArgs(DaemonError):
    """Bad arguments: the standard D-Bus error, so generic clients understand it."""

    dbusErrorName = "org.freedesktop.DBus.Error.InvalidArgs"


class UnknownInterface(DaemonError):
    dbusErrorName = "org.freedesktop.DBus.Error.UnknownInterface"


class UnknownProperty(DaemonError):
    dbusErrorName = "org.freedesktop.DBus.Error.UnknownProperty"


class PropertyReadOnly(DaemonError):
    dbusErrorName = "org.freedesktop.DBus.Error.PropertyReadOnly"
