"""The life cycle of one session as an explicit state machine.

While a session is open its phase follows what the mailbox and Dilation
report (``phase_for``): starting, waiting for the peer, connecting, connected,
reconnecting, in any order those reports allow. Ending is one way only: an
open session moves to ``closing`` and then to ``closed`` or ``failed``, or
straight to ``failed`` when the wormhole fails under it. Nothing leaves an
ended phase. ``Lifecycle`` refuses any other move, so a session can never,
say, reopen after it closed.
"""

from __future__ import annotations

from dataclasses import dataclass

from fowld.engine.status import Phase, SessionStatus
from fowld.wormhole.status import PeerState

OPEN = frozenset({Phase.STARTING, Phase.WAITING, Phase.CONNECTING, Phase.CONNECTED, Phase.RECONNECTING})
_MOVES: dict[Phase, frozenset[Phase]] = {
    **{phase: OPEN | {Phase.CLOSING, Phase.CLOSED, Phase.FAILED} for phase in OPEN},
    Phase.CLOSING: frozenset({Phase.CLOSED, Phase.FAILED}),
    Phase.CLOSED: frozenset(),
    Phase.FAILED: frozenset(),
}


class LifecycleError(RuntimeError):
    """A move the life cycle does not allow (a bug, never a peer's doing)."""


@dataclass(frozen=True)
class Ending:
    """How a session is ending: why, and the phase it ends in."""

    reason: str
    final: Phase = Phase.CLOSED  # CLOSED, or FAILED for a session that gave up


def phase_for(status: SessionStatus) -> Phase:
    """The open phase that the mailbox's and Dilation's reports describe."""
    if status.peer is PeerState.CONNECTED:
        return Phase.CONNECTED
    if status.peer is PeerState.RECONNECTING:
        return Phase.RECONNECTING
    if status.peer is PeerState.CONNECTING or status.verifier:
        return Phase.CONNECTING
    if status.code:
        return Phase.WAITING
    return Phase.STARTING


class Lifecycle:
    """Where one session is in its life, and whether its code has been asked for."""

    def __init__(self) -> None:
        self.phase = Phase.STARTING
        self.ending: Ending | None = None
        self.code_claimed = False

    @property
    def is_open(self) -> bool:
        return self.phase in OPEN

    def claim_code(self) -> bool:
        """Note that the session's one code is being set; False if it already was."""
        if self.code_claimed:
            return False
        self.code_claimed = True
        return True

    def next_phase(self, status: SessionStatus) -> Phase:
        """The phase ``status`` puts the session in: reports move only an open session."""
        return phase_for(status) if self.is_open else self.phase

    def move(self, to: Phase) -> None:
        if to is not self.phase and to not in _MOVES[self.phase]:
            raise LifecycleError(f"a session cannot move from {self.phase.value} to {to.value}")
        self.phase = to

    def begin_ending(self, ending: Ending) -> bool:
        """Start ending the session; False if it already is (the first ending wins)."""
        if not self.is_open:
            return False
        self.ending = ending
        self.move(Phase.CLOSING)
        return True

    def fail(self, reason: str) -> bool:
        """The wormhole failed under an open session; False if it was already ending."""
        if not self.is_open:
            return False
        self.ending = Ending(reason, Phase.FAILED)
        self.move(Phase.FAILED)
        return True


# What an open phase says when the change that led to it gave no reason of its own.
PHASE_REASONS = {Phase.RECONNECTING: "lost the connection to the peer; reconnecting"}


def fresh_reason(before: Phase, after: Phase, given: bool, reason: str) -> str:
    """The reason after a change: the one given, else the new open phase's own (an old one is stale)."""
    if given or after is before or after not in OPEN:
        return reason
    return PHASE_REASONS.get(after, "")


def final_result(ending: Ending, result: str | None, outcome: object) -> str:
    """What ``closed`` reports: ``result`` if known, never "happy" for a session that gave up."""
    if result is not None:
        return result
    if ending.final is Phase.FAILED:
        return f"failed: {ending.reason}"
    if isinstance(outcome, list) and outcome and outcome[-1][0]:
        return outcome[-1][1] or "happy"  # the wormhole's close result
    return "happy"

