"""Session ids: how users name sessions (the daemon's rule), and how ids map to D-Bus object paths."""

from __future__ import annotations

from collections.abc import Iterable

from fowlctl.errors import AmbiguousSession, SessionNotFound
from fowld.daemon import errors as daemon_errors
from fowld.daemon import ids
from fowld.dbus.names import SESSION_PATH_PREFIX, id_from_path, unescape_path_element

session_number = ids.session_number


def resolve_session_id(query: str, known: Iterable[str]) -> str:
    """The one id ``query`` names; fowlctl's errors when it names none or several."""
    try:
        return ids.resolve_session_id(query, known)
    except daemon_errors.AmbiguousSession as e:
        raise AmbiguousSession(str(e)) from None
    except daemon_errors.SessionNotFound as e:
        raise SessionNotFound(str(e)) from None


__all__ = [
    "SESSION_PATH_PREFIX",
    "id_from_path",
    "resolve_session_id",
    "session_number",
    "unescape_path_element",
]
