"""Invitations nobody has joined: bounded in number, and closed when they expire.

Each waiting invitation holds a session, a mailbox connection and a nameplate
on the mailbox server. ``InviteGate`` refuses a new one past the daemon's or
the profile's limit, with a message that says which, and closes one that
nobody joined within the expiry.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fowld.daemon.errors import Failed
from fowld.daemon.options import InviteLimits
from fowld.daemon.supervisor import Mode, SupervisedSession
from fowld.engine.absence import duration


def waiting(session: SupervisedSession) -> bool:
    """An invitation whose peer has not come (yet)."""
    return session.mode is Mode.INVITE and not session.ended and session.status.verifier is None


class InviteGate:
    def __init__(self, limits: InviteLimits, reactor: Any):
        self.limits = limits
        self._reactor = reactor

    def check_room(self, sessions: Iterable[SupervisedSession], profile: str) -> None:
        """Raise ``Failed`` if another invitation (of ``profile``) would pass a limit."""
        pending = [s for s in sessions if waiting(s)]
        mine = sum(s.profile.name == profile for s in pending)
        if len(pending) >= self.limits.per_daemon:
            raise Failed(
                f"{len(pending)} invitations are waiting for a peer (limit {self.limits.per_daemon}, "
                "--max-invites): close one, or wait until one is joined or expires"
            )
        if mine >= self.limits.per_profile:
            raise Failed(
                f"{mine} invitations of profile {profile!r} are waiting for a peer (limit "
                f"{self.limits.per_profile}, --max-invites-per-profile): close one, or wait until "
                "one is joined or expires"
            )

    def expire(self, session: SupervisedSession) -> None:
        """Close ``session`` if nobody joined it within the expiry."""
        if not self.limits.expiry:
            return
        timer = self._reactor.callLater(self.limits.expiry, self._expired, session)
        session.when_finished().addBoth(lambda result: timer.active() and timer.cancel())

    def _expired(self, session: SupervisedSession) -> None:
        if waiting(session):
            waited = duration(self.limits.expiry)
            session.close(timeout=0, reason=f"invitation expired: nobody joined within {waited}")
