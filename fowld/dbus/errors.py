"""D-Bus errors: the daemon's errors under their API names, and the adapter's own.

txdbus sends an exception's ``dbusErrorName`` as the error name and its
``str()`` as the message; ``translated`` gives a method call's outcome that
translation, for errors raised at once or later in a Deferred.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from fowld.daemon.errors import DaemonError
from fowld.dbus import names


class BusError(Exception):
    """An error as it travels on the bus: a name and a message."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.dbusErrorName = name


def to_bus_error(error: DaemonError) -> BusError:
    name = names.ERRORS.get(type(error).__name__, names.ERRORS["Failed"])
    return BusError(name, str(error))


def translated(call: Callable[[], Any]) -> Any:
    """Run ``call``; the daemon's errors it raises (now or in its Deferred) become bus errors."""

    def translate(failure: Failure) -> Failure:
        if failure.check(DaemonError):
            return Failure(to_bus_error(failure.value))
        return failure

    try:
        result = call()
    except DaemonError as e:
        raise to_bus_error(e) from None
    if isinstance(result, Deferred):
        result.addErrback(translate)
    return result


def unknown_interface(message: str) -> BusError:
    return BusError(names.UNKNOWN_INTERFACE, message)


def unknown_property(message: str) -> BusError:
    return BusError(names.UNKNOWN_PROPERTY, message)


def property_read_only(message: str) -> BusError:
    return BusError(names.PROPERTY_READ_ONLY, message)
