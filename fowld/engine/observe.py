"""Fanning events and one-time results out to any number of observers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

log = Logger()


class Subscribers:
    """Calls every subscriber with each event; a failing subscriber is logged and the
    others still hear about it."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[Any], None]] = []

    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], None]:
        """Add ``callback``; returns a function that removes it again."""
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

    def emit(self, event: Any) -> None:
        for callback in list(self._callbacks):
            try:
                callback(event)
            except Exception:
                log.failure("event subscriber failed on {event!r}", event=event)


def observe(result: Deferred) -> Deferred:
    """A new Deferred firing with ``result``'s outcome, leaving ``result``'s chain as it was."""
    observer = Deferred()
    result.addBoth(lambda outcome: (observer.callback(outcome), outcome)[1])
    return observer
