"""How long the peer has been unreachable, told at growing intervals.

A session never ends by itself because its peer went away (a laptop may sleep
for hours); instead it says what it knows: since when the peer has been
unreachable. ``PeerAbsence`` is told whenever the session's phase changes and
calls back at the milestones below while the peer stays away, so a person or
a program can decide to give up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fowld.engine import events
from fowld.engine.status import Phase

# Seconds after the peer became unreachable at which this is reported again; then hourly.
MILESTONES = (30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)
HOURLY = 3600.0


@dataclass(frozen=True)
class Away:
    since: float  # wall-clock time (seconds since the epoch) the peer became unreachable
    seconds: float  # how long it has been unreachable

    @property
    def reason(self) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(self.since))
        return f"peer unreachable since {clock} ({duration(self.seconds)} ago)"


def duration(seconds: float) -> str:
    """``45 s``, ``5 min``, ``3 h 20 min``: precise enough for a person deciding to wait."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def next_milestone(elapsed: float) -> float:
    """The first milestone after ``elapsed`` seconds."""
    for milestone in MILESTONES:
        if milestone > elapsed:
            return milestone
    return (elapsed // HOURLY + 1) * HOURLY


class PeerAbsence:
    """Follows a session's phase; at each milestone of an outage, sets the session's reason
    (``update(reason=...)``) and emits ``PeerUnreachable``."""

    def __init__(
        self,
        reactor: Any,
        update: Callable[..., None],
        emit: Callable[[events.Event], None],
        wall_clock: Callable[[], float] = time.time,
    ):
        self._reactor = reactor
        self._update = update
        self._emit = emit
        self._wall_clock = wall_clock
        self._started: tuple[float, float] | None = None  # (reactor time, wall time) of the outage
        self._timer: Any = None

    @property
    def away(self) -> Away | None:
        if self._started is None:
            return None
        return Away(self._started[1], self._reactor.seconds() - self._started[0])

    def follow(self, phase: Phase) -> None:
        if phase is Phase.RECONNECTING:
            if self._started is None:
                self._started = (self._reactor.seconds(), self._wall_clock())
                self._schedule()
        else:
            self.stop()

    def stop(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer, self._started = None, None

    def _schedule(self) -> None:
        elapsed = self._reactor.seconds() - self._started[0]
        self._timer = self._reactor.callLater(next_milestone(elapsed) - elapsed, self._milestone)

    def _milestone(self) -> None:
        self._timer = None
        self._schedule()
        away = self.away
        self._update(reason=away.reason)
        self._emit(events.PeerUnreachable(away.since, away.seconds))
