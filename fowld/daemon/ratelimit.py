"""Logging what the daemon refused, once per kind of refusal per interval.

A burst of refused connections (a program retrying against a stream limit, a
listener that cannot bind) must show up in the log without flooding it: the
first of each kind is logged at once; the ones after it within ``interval``
are counted and reported with the next line of that kind.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

log = Logger()
LOG_INTERVAL = 60.0  # seconds between two lines about the same kind of refusal


class RateLimitedLog:
    def __init__(self, reactor: Any, interval: float = LOG_INTERVAL):
        self._reactor = reactor
        self._interval = interval
        self._last: dict[str, tuple[float, int]] = {}  # key -> (logged at, suppressed since)

    def warn(self, key: str, message: str) -> bool:
        """Log ``message`` unless ``key`` was logged less than ``interval`` ago; True if logged."""
        now = self._reactor.seconds()
        logged_at, suppressed = self._last.get(key, (None, 0))
        if logged_at is not None and now - logged_at < self._interval:
            self._last[key] = (logged_at, suppressed + 1)
            return False
        more = f" ({suppressed} more like it in the last {now - logged_at:.0f} s)" if suppressed else ""
        log.warn("{message}{more}", message=message, more=more)
        self._last[key] = (now, 0)
        return True
