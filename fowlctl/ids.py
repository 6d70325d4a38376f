"""Session ids: how users name sessions, and how ids map to D-Bus object paths.

A session id is ``PROFILE-N``, N a counter fowld keeps across all sessions.
Users may type the whole id, just N, or any prefix that only one id starts with.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from fowlctl.errors import AmbiguousSession, SessionNotFound

SESSION_PATH_PREFIX = "/org/fowl/Fowld1/session/"
_ESCAPED = re.compile(r"_([0-9A-Fa-f]{2})")


def unescape_path_element(element: str) -> str:
    """Undo fowld's escaping: ``_XX`` is the byte with hex value XX."""
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


def id_from_path(object_path: str) -> str:
    """The session id a session object path stands for (the path itself when it is not one)."""
    if not object_path.startswith(SESSION_PATH_PREFIX):
        return object_path
    return unescape_path_element(object_path[len(SESSION_PATH_PREFIX) :])


def session_number(session_id: str) -> int | None:
    """N of ``PROFILE-N``, or None when the id does not end in a number."""
    _, sep, tail = session_id.rpartition("-")
    return int(tail) if sep and tail.isdigit() else None


def resolve_session_id(query: str, ids: Iterable[str]) -> str:
    """The one id ``query`` names: the id itself, its number, or a unique prefix.

    Raises SessionNotFound or AmbiguousSession with a message listing what exists.
    """
    ids = sorted(set(ids))
    query = query.strip()
    if not query:
        raise SessionNotFound("a session id cannot be empty")
    if query in ids:
        return query
    if query.isdigit():
        numbered = [i for i in ids if session_number(i) == int(query)]
        if len(numbered) == 1:
            return numbered[0]
    matches = [i for i in ids if i.startswith(query)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise AmbiguousSession(f"{query!r} matches several sessions: {', '.join(matches)}")
    known = ", ".join(ids) if ids else "there are no sessions"
    raise SessionNotFound(f"no session matches {query!r} ({known})")
