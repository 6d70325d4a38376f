"""What can go wrong in fowlctl, each with a human message and an exit code."""

from __future__ import annotations

import enum

from fowld.dbus import names

NOT_RUNNING_MESSAGE = (
    "fowld is not running on the session bus (start it with `systemctl --user start fowld` or run `fowld`)"
)

# D-Bus errors meaning nobody owns the bus name we called.
_NOT_RUNNING_ERRORS = {names.SERVICE_UNKNOWN, names.NAME_HAS_NO_OWNER}
# D-Bus errors meaning the object we called went away: its session has ended.
_GONE_ERRORS = {names.UNKNOWN_OBJECT, names.UNKNOWN_METHOD, names.UNKNOWN_INTERFACE}
_TIMEOUT_ERRORS = {names.NO_REPLY, names.TIMEOUT}


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1  # fowld refused or failed the request, a session failed, a profile is invalid
    USAGE = 2  # bad command line
    UNAVAILABLE = 3  # no session bus, or fowld is not on it
    TIMEOUT = 4  # --timeout expired, or fowld did not answer in time
    INTERRUPTED = 130  # Ctrl-C while waiting


class CtlError(Exception):
    """An error shown to the user as ``fowlctl: MESSAGE``; ``name`` is stable for scripts."""

    exit_code = ExitCode.FAILED
    name = "org.fowl.fowlctl.Error.Failed"

    def __init__(self, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if name is not None:
            self.name = name


class BusUnreachable(CtlError):
    exit_code = ExitCode.UNAVAILABLE
    name = "org.fowl.fowlctl.Error.BusUnreachable"


class FowldNotRunning(CtlError):
    exit_code = ExitCode.UNAVAILABLE
    name = "org.fowl.fowlctl.Error.NotRunning"

    def __init__(self, message: str = NOT_RUNNING_MESSAGE) -> None:
        super().__init__(message)


class SessionNotFound(CtlError):
    name = names.ERRORS["SessionNotFound"]


class AmbiguousSession(CtlError):
    name = "org.fowl.fowlctl.Error.AmbiguousSession"


class SessionEnded(CtlError):
    """The session we were waiting for failed or closed."""

    name = "org.fowl.fowlctl.Error.SessionEnded"


class TimedOut(CtlError):
    exit_code = ExitCode.TIMEOUT
    name = "org.fowl.fowlctl.Error.TimedOut"


class NobodyAnswered(TimedOut):
    """accept: no peer showed up with the code (nobody holds its nameplate, or a typo)."""

    name = "org.fowl.fowlctl.Error.NobodyAnswered"


def from_remote(error_name: str, message: str, what: str = "") -> CtlError:
    """Translate a D-Bus error reply into the error fowlctl reports.

    ``what`` names the object called (e.g. "session web-3"), for errors whose own
    message cannot say which one went away.
    """
    if error_name in _NOT_RUNNING_ERRORS:
        return FowldNotRunning()
    if error_name in _GONE_ERRORS and what:
        return SessionNotFound(f"{what} no longer exists")
    if error_name in _TIMEOUT_ERRORS:
        return TimedOut(f"fowld did not answer in time ({message or error_name})", error_name)
    text = message.strip() or error_name
    return CtlError(text, error_name)
