"""Errors the daemon's requests fail with, each with a human message.

The D-Bus adapter gives each class its error name (``fowld.dbus.names.ERRORS``,
keyed by class name); nothing here knows about D-Bus.
"""

from __future__ import annotations


class DaemonError(Exception):
    """A request fowld refused or could not carry out; ``str()`` is the message for people."""


class Failed(DaemonError):
    """The request was valid but could not be carried out."""


class ProfileNotFound(DaemonError):
    pass


class InvalidProfile(DaemonError):
    pass


class NoCode(DaemonError):
    pass


class NoPairing(DaemonError):
    """No usable pairing of that name (never made, forgotten, expired or unreadable)."""


class SessionNotFound(DaemonError):
    pass


class AmbiguousSession(SessionNotFound):
    """A session query that more than one session matches."""


class AlreadyExists(DaemonError):
    pass


class InvalidArgs(DaemonError):
    """Bad arguments: a malformed code, name or address."""
