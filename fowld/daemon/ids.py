"""Session ids, and the one rule for what a user's query names.

A session id is ``PROFILE-N``, N a counter the daemon keeps across all its
sessions. Users may type the whole id, just N, or any prefix that only one id
starts with; the daemon (``GetSession``) and fowlctl resolve queries alike.
"""

from __future__ import annotations

from collections.abc import Iterable

from fowld.daemon.errors import AmbiguousSession, SessionNotFound

# More digits than any counter reaches: such a tail is not a session number (and Python
# refuses to convert thousands of digits at all).
MAX_NUMBER_DIGITS = 18


def session_number(session_id: str) -> int | None:
    """N of ``PROFILE-N``, or None when the id does not end in a number."""
    _, sep, tail = session_id.rpartition("-")
    if not sep or not tail.isdigit() or len(tail) > MAX_NUMBER_DIGITS:
        return None
    return int(tail)


def resolve_session_id(query: str, ids: Iterable[str]) -> str:
    """The one id ``query`` names: the id itself, its number, or a unique prefix.

    Raises SessionNotFound (or its kind AmbiguousSession) with a message listing what exists.
    """
    ids = sorted(set(ids))
    query = query.strip()
    if not query:
        raise SessionNotFound("a session id cannot be empty")
    if query in ids:
        return query
    if query.isdigit() and len(query) <= MAX_NUMBER_DIGITS:
        numbered = [i for i in ids if session_number(i) == int(query)]
        if len(numbered) == 1:
            return numbered[0]
    matches = [i for i in ids if i.startswith(query)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise AmbiguousSession(f"{query!r} is ambiguous: it matches several sessions: {', '.join(matches)}")
    known = ", ".join(ids) if ids else "there are no sessions"
    raise SessionNotFound(f"no session matches {query!r} ({known})")
