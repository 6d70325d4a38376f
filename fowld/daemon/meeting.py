"""A paired session: meets its peer again and again, with no code (docs/pairing.md).

A ``PairedSession`` keeps, besides the engine session that forwards (the
*active* one), a *standby*: an engine session waiting at this side's meeting
point of the current time slot, so that a peer that restarts meets it at
once. When this side has no working connection to the peer it also *seeks*:
it visits the peer's meeting points one after the other. A meeting counts
once Dilation connects through it: then it replaces the active session
(which is closed without telling the peer anything final). A meeting point
that fails (crowded by a squatter, a wrong password, a key from a dead side's
leftover message that never leads to a connection) is skipped until the next
slot.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from fowld.daemon.options import SessionOptions
from fowld.daemon.pairings import Pairing, PairingStore
from fowld.daemon.profiles import Profile, RestartPolicy
from fowld.daemon.supervisor import Mode, SupervisedSession
from fowld.engine import events, pairing
from fowld.engine.session import Session
from fowld.engine.status import Phase, SessionStatus

log = Logger()
STALE_AFTER = 2.5  # a key but no versions this long after: a dead side's leftover message
MEET_TIMEOUT = 8.0  # versions, but no Dilation connection this long after: not a live peer
SEEK_DWELL = 2.5  # how long a seeker waits at a meeting point where nobody answers
SEEK_PAUSE = 3.0  # between two rounds over all of the peer's meeting points
SEEK_AFTER_LOSS = 10.0  # a side that had its peer waits this long (the peer may come back by itself)
DOUBLE_MEETING_WINDOW = 15.0  # two meetings this close together: both sides restarted at once
STANDBY_RETRY = 1.0
# A standby moves to the slot's next point this often: a squatter beside it holds it a minute at most.
STANDBY_HOP = 60.0
_ENDED = (Phase.CLOSING, Phase.CLOSED, Phase.FAILED)
PEER_CLOSED = "peer closed the session"
PEER_FORGOT = "the peer forgot this pairing"


def clock(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(seconds))


def day(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


@dataclass(eq=False)
class Candidate:
    """An engine session at a meeting point, not yet a meeting."""

    session: Session
    point: pairing.MeetingPoint
    standby: bool  # waits at our own point; else it seeks at the peer's
    keyed: bool = False  # SPAKE2 gave a key: a meeting may be under way
    timers: list[IDelayedCall] = field(default_factory=list)

    def cancel(self) -> None:
        for timer in self.timers:
            if timer.active():
                timer.cancel()
        self.timers.clear()


class PairedSession(SupervisedSession):
    def __init__(
        self,
        session_id: str,
        profile: Profile,
        reactor: Any,
        options: SessionOptions,
        pairings: PairingStore,
        paired: Pairing,
    ):
        super().__init__(session_id, profile, Mode.PAIRED, reactor, options)
        self.pairing = paired
        self._pairings = pairings
        self._standby: Candidate | None = None
        self._seekers: list[Candidate] = []
        self._waves: list[list[pairing.MeetingPoint]] = []
        self._rounds = 0  # rounds of seeking since the peer was last reachable
        self._pause: IDelayedCall | None = None
        self._hops = 0  # standby moves so far: which of the slot's free points is next
        self._blocked: set[pairing.MeetingPoint] = set()
        # Peer points where a seeker found a stale claim: not revisited, or a sleeping peer's standby fills up
        self._stale_points: set[pairing.MeetingPoint] = set()
        self._met_at = -DOUBLE_MEETING_WINDOW  # monotonic time of the last meeting
        self._unreachable_since: float | None = None
        self._meeting_reason = ""
        self._timers: list[IDelayedCall] = []

    # timers --------------------------------------------------------------------------------------

    def _later(self, delay: float, f: Any, *args: Any) -> IDelayedCall:
        self._timers = [t for t in self._timers if t.active()]
        call = self._reactor.callLater(delay, f, *args)
        self._timers.append(call)
        return call

    def _stop_meeting(self) -> None:
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        self._timers.clear()
        for candidate in [self._standby, *self._seekers]:
            if candidate is not None:
                self._drop(candidate)

    # starting ------------------------------------------------------------------------------------

    def _launch(self) -> None:
        now = time.time()
        if self.pairing.expired(now):
            self._end_for_good(Phase.FAILED, self._expired_reason())
            return
        if self.pairing.expires is not None:
            self._later(self.pairing.expires - now, self._pairing_expired)
        if self.pairing.standby is not None:  # our own claim from before a crash may linger there
            self._blocked.add(pairing.MeetingPoint(*self.pairing.standby, self.pairing.role))
        self._unreachable_since = None
        self._publish(
            SessionStatus(
                mailbox_url=self.profile.mailbox,
                phase=Phase.WAITING,
                reason=(
                    f"meeting peer {self.pairing.peer_name!r} again (last met {day(self.pairing.last_met)})"
                ),
            )
        )
        self._open_standby()
        self._seek()

    def _expired_reason(self) -> str:
        return (
            f"pairing {self.pairing.name!r} expired on {day(self.pairing.expires or 0)}:"
            f" it can never meet again; pair anew with `fowlctl invite PROFILE --pair {self.pairing.name}`"
        )

    def _pairing_expired(self) -> None:
        reason = self._expired_reason()
        log.warn("session {id}: {reason}", id=self.id, reason=reason)
        self.close(reason=reason, why=f"pairing {self.pairing.peer_name!r} expired")

    def _end_for_good(self, phase: Phase, reason: str) -> None:
        self._closing = True
        self._stop_meeting()
        self._publish(dataclasses.replace(self.status, phase=phase, reason=reason))
        self._finish("failed" if phase is Phase.FAILED else "closed")

    # candidates ----------------------------------------------------------------------------------

    def _open(self, point: pairing.MeetingPoint, standby: bool) -> Candidate:
        session = self.new_engine(self.engine_config(None), self._candidate_event)
        candidate = Candidate(session, point, standby)
        if standby:
            self._standby = candidate
        else:
            self._seekers.append(candidate)
        session.startService()
        session.set_code(point.code(self.pairing.secret))
        return candidate

    def _drop(self, candidate: Candidate) -> bool:
        """Forget a candidate (closing its session); False if it was no longer one."""
        if not self._release(candidate):
            return False
        candidate.session.close(timeout=0, reason="meeting point left", final=False)
        return True

    def _release(self, candidate: Candidate) -> bool:
        """No longer count ``candidate`` as one (its session is left as it is)."""
        if candidate is self._standby:
            self._standby = None
        elif candidate in self._seekers:
            self._seekers.remove(candidate)
        else:
            return False
        candidate.cancel()
        return True

    def _open_standby(self) -> None:
        if self._closing or self.ended or self._standby is not None:
            return
        now = time.time()
        slot = pairing.slot_at(now)
        self._blocked = {p for p in self._blocked if p.slot >= slot - 1}
        free = [
            point
            for index in range(pairing.CANDIDATES)
            if (point := pairing.MeetingPoint(slot, index, self.pairing.role)) not in self._blocked
        ]
        next_slot = (slot + 1) * pairing.SLOT_SECONDS - now + 0.5
        if not free:  # every point of this slot is blocked: the next slot brings new ones
            self._later(next_slot, self._open_standby)
            return
        point = free[self._hops % len(free)]
        candidate = self._open(point, standby=True)
        self._pairings.touch(self.pairing.name, standby=(point.slot, point.index))
        hop = min(next_slot, STANDBY_HOP)
        candidate.timers.append(self._reactor.callLater(hop, self._rotate, candidate))

    def _rotate(self, candidate: Candidate) -> None:
        """Move the standby to the next meeting point (unless a meeting is under way there)."""
        if candidate is self._standby and not candidate.keyed:
            self._hops += 1
            self._drop(candidate)
            self._open_standby()

    def _seek(self) -> None:
        """Visit the peer's meeting points in waves: this slot's at once, then the neighbours'."""
        if self._closing or self.ended or self._seekers or self._connected():
            return
        if self._pause is not None and self._pause.active():
            return
        if not self._waves:
            points = pairing.meeting_points(pairing.other_role(self.pairing.role), time.time())
            slot = points[0].slot
            self._stale_points = {p for p in self._stale_points if p.slot >= slot - 1}
            points = [p for p in points if p not in self._stale_points]
            self._waves = [[p for p in points if p.slot == slot], [p for p in points if p.slot != slot]]
            self._waves = [wave for wave in self._waves if wave]
            self._rounds += 1
            if self._rounds > 1:  # not the first round since we lost the peer: pause first
                self._pause = self._later(SEEK_PAUSE, self._seek)
                return
        for point in self._waves.pop(0) if self._waves else ():
            candidate = self._open(point, standby=False)
            candidate.timers.append(self._reactor.callLater(SEEK_DWELL, self._nobody_there, candidate))
        if not self._seekers:  # nothing left to visit this round
            self._pause = self._later(SEEK_PAUSE, self._seek)

    def _nobody_there(self, candidate: Candidate) -> None:
        if not candidate.keyed:  # with a key, STALE_AFTER and MEET_TIMEOUT decide
            self._give_up(candidate, "nobody there")

    def _connected(self) -> bool:
        return self.session is not None and self.session.status.phase is Phase.CONNECTED

    def _candidate_event(self, session: Session, event: events.Event) -> None:
        candidate = next((c for c in [self._standby, *self._seekers] if c and c.session is session), None)
        if candidate is None:
            self._engine_event(session, event)  # the active session (or one already dropped)
            return
        match event:
            case events.KeyAgreed():
                candidate.keyed = True
                candidate.timers.append(self._reactor.callLater(STALE_AFTER, self._stale, candidate))
            case events.PeerConnected():
                candidate.timers.append(
                    self._reactor.callLater(MEET_TIMEOUT, self._give_up, candidate, "no connection")
                )
            case events.StatusChanged(status) if status.phase is Phase.CONNECTED:
                self._promote(candidate)
            case events.StatusChanged(status) if status.phase in _ENDED:
                self._give_up(candidate, status.reason or status.phase.value)

    def _stale(self, candidate: Candidate) -> None:
        if not candidate.session.status.verifier:
            if not candidate.standby:
                self._stale_points.add(candidate.point)
            self._give_up(candidate, "a key but no answer: a stale claim")

    def _give_up(self, candidate: Candidate, reason: str) -> None:
        if not self._drop(candidate):
            return
        if candidate.standby:
            log.info(
                "session {id}: meeting point {point} blocked ({reason}); using the next",
                id=self.id, point=(candidate.point.slot, candidate.point.index), reason=reason,
            )  # fmt: skip
            self._blocked.add(candidate.point)
            self._later(STANDBY_RETRY, self._open_standby)
        else:
            self._seek()

    # meetings ------------------------------------------------------------------------------------

    def _promote(self, candidate: Candidate) -> None:
        self._release(candidate)
        old, new = self.session, candidate.session
        now = time.monotonic()
        if (
            old is not None
            and now - self._met_at < DOUBLE_MEETING_WINDOW
            and old.status.phase is Phase.CONNECTED
            and (old.status.verifier or "") < (new.status.verifier or "")
        ):
            # Both sides restarted at once and met twice: both keep the smaller verifier.
            new.close(timeout=0, reason="met twice: the other meeting is kept", final=False)
        else:
            self.session = new
            self._met_at = now
            self._meeting_reason = "peer restarted, met again" if old is not None else "met the peer again"
            if old is not None:
                old.close(timeout=0, reason="replaced by a new meeting", final=False)
            self._unreachable_since = None
            self._rounds = 0
            self._waves = []
            self._pairings.touch(self.pairing.name)
            log.info("session {id}: {what}", id=self.id, what=self._meeting_reason)
            self._publish(dataclasses.replace(new.status, reason=self._meeting_reason))
        if self._connected():
            # Seekers with a key stay: one may be the same meeting as the peer's choice.
            for seeker in [s for s in self._seekers if not s.keyed]:
                self._drop(seeker)
        self._open_standby()

    # the active session --------------------------------------------------------------------------

    def _for_good(self, status: SessionStatus) -> bool:
        """Whether the active session's end ends this session (else: meet again)."""
        if self._closing or status.reason.startswith(PEER_FORGOT):
            return True
        return status.reason.startswith(PEER_CLOSED) and self.profile.restart is not RestartPolicy.ALWAYS

    def _engine_status(self, status: SessionStatus) -> None:
        if status.phase in _ENDED:
            if self._for_good(status):
                self._publish(status)
            return
        if status.phase is Phase.CONNECTED:
            if self._unreachable_since is not None:  # Dilation found the peer again by itself
                since, self._unreachable_since = self._unreachable_since, None
                self._meeting_reason = f"peer back (unreachable from {clock(since)} to {clock(time.time())})"
            reason = status.reason or self._meeting_reason
        else:
            if self._unreachable_since is None:
                self._unreachable_since = time.time()
                self._later(SEEK_AFTER_LOSS, self._seek)
            reason = f"peer unreachable since {clock(self._unreachable_since)}; waiting for it"
            if status.reason:
                reason += f" ({status.reason})"
        self._publish(dataclasses.replace(status, reason=reason))

    def _engine_event(self, session: Session, event: events.Event) -> None:
        if session is self.session and isinstance(event, events.PeerAway):
            # Not an end for good: this meeting is over, the next one comes when the peer is back.
            session.close(timeout=0, reason="the peer's fowld is stopping", final=False)
        super()._engine_event(session, event)

    def _engine_closed(self, session: Session, result: str) -> None:
        status = session.status
        if self._for_good(status):
            if status.reason.startswith(PEER_FORGOT):
                self._pairings.forget(self.pairing.name)
                reason = f"the peer forgot pairing {self.pairing.name!r}; it is forgotten here too"
                log.warn("session {id}: {reason}", id=self.id, reason=reason)
                self._publish(dataclasses.replace(status, reason=reason))
            self._stop_meeting()
            self._finish(result)
            return
        self.session = None
        since = self._unreachable_since or time.time()
        self._unreachable_since = since
        self._publish(
            dataclasses.replace(
                status,
                phase=Phase.WAITING,
                reason=f"peer unreachable since {clock(since)}; meeting it again ({status.reason or result})",
            )
        )
        self._open_standby()
        self._seek()

    # ending --------------------------------------------------------------------------------------

    def close(
        self,
        timeout: float | None = None,
        reason: str = "closed locally",
        final: bool = True,
        why: str | None = None,
    ) -> Deferred:
        self._closing = True
        self._stop_meeting()
        if self.session is None or self.session.status.phase in _ENDED:
            if not self.ended:
                self._end_for_good(Phase.CLOSED, reason)
            return self.when_finished()
        return super().close(timeout, reason, final, why)

    def forget(self) -> Deferred:
        """Forget the pairing here; a connected peer is told and forgets it too."""
        self._pairings.forget(self.pairing.name)
        reason = f"pairing {self.pairing.name!r} forgotten"
        if self._connected():
            self._closing = True
            self._stop_meeting()
            self.session.forget(reason)
            return self.when_finished()
        return self.close(reason=reason)
