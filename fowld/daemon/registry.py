"""The daemon's sessions by id: ``<profile>-<N>``, N counting up from 1 for the daemon's life."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from fowld.daemon.ids import resolve_session_id
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

    def find(self, query: str) -> SupervisedSession:
        """The session ``query`` names: its id, its number or a unique prefix."""
        return self._sessions[resolve_session_id(query, self._sessions)]

    def fixed_code_session(self, profile_name: str) -> SupervisedSession | None:
        """The running supervised session of a profile (there is at most one: they share a code)."""
        return next(
            (
                s
                for s in self._sessions.values()
                if s.profile.name == profile_name and s.mode in (Mode.FIXED, Mode.PAIRED)
            ),
            None,
        )
