"""The daemon's sessions by id: ``<profile>-<N>``, N counting up from 1 for the daemon's life."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from fowld.daemon.errors import InvalidArgs, SessionNotFound
from fowld.daemon.supervisor import Mode, SupervisedSession


class SessionRegistry:
    def __init__(self) -> None:
        self._sessions: dict[str, SupervisedSession] = {}
        self._numbers = itertools.count(1)

    def new_id(self, profile_name: str) -> str:
        return f"{profile_name}-{next(self._numbers)}"

    def add(self, session: SupervisedSession) -> None:
        self._sessions[session.id] = session

    def remove(self, session: SupervisedSession) -> None:
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]

    def __iter__(self) -> Iterator[SupervisedSession]:
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)

    def find(self, text: str) -> SupervisedSession:
        """The session with id ``text``, or the only one whose id starts with it."""
        if not text:
            raise InvalidArgs("the session id is empty")
        if text in self._sessions:
            return self._sessions[text]
        matches = sorted(i for i in self._sessions if i.startswith(text))
        if len(matches) == 1:
            return self._sessions[matches[0]]
        if matches:
            raise SessionNotFound(f"{text!r} is ambiguous: it starts {', '.join(matches)}")
        raise SessionNotFound(f"no session {text!r}")

    def fixed_code_session(self, profile_name: str) -> SupervisedSession | None:
        """The running supervised session of a profile (there is at most one: they share a code)."""
        return next(
            (s for s in self._sessions.values() if s.profile.name == profile_name and s.mode is Mode.FIXED),
            None,
        )
