"""What one daemon session refused or lost: counted, and logged once per kind a minute.

Refused streams (here, or by the peer) and streams cut by anything but a
close of their own are counted for D-Bus (``RefusedConnections``,
``LostConnections``); refused listeners and clients that cannot listen are
logged too, through ``RateLimitedLog`` so a burst cannot flood the log.
"""

from __future__ import annotations

from typing import Any

from fowld.daemon.ratelimit import RateLimitedLog
from fowld.engine import events


def stream_refusal(event: events.Event) -> tuple[str, str] | None:
    """(service, reason) if ``event`` is a stream refused, here or by the peer; else None.

    A refusal made here is a ``Refused`` event (the stream it refused, if it had an id,
    closes as refused too: not counted twice); the peer's arrives as a refused outgoing stream.
    """
    match event:
        case events.Refused("stream", name, reason):
            return name or "", reason
        case events.StreamClosed(_, name, events.Direction.OUTGOING, _, _, reason, True):
            return name, reason or "refused"
    return None


class Refusals:
    def __init__(self, session_id: str, reactor: Any):
        self.refused = 0  # streams refused here or by the peer
        self.lost = 0  # streams cut by anything but a close of their own
        self._id = session_id
        self._log = RateLimitedLog(reactor)

    def follow(self, event: events.Event) -> None:
        match event:
            case events.StreamClosed(_, name, _, _, _, reason, False) if reason is not None:
                self.lost += 1
                self._log.warn(f"lost {name}", f"session {self._id}: a {name!r} stream was cut: {reason}")
            case events.Refused(what, name, reason) if what != "stream":
                self._log.warn(what + reason, f"session {self._id}: refused {what} {name!r}: {reason}")
            case events.ClientFailed(name, reason):
                self._log.warn(f"listen {name}", f"session {self._id}: client {name!r}: {reason}")
        if (refusal := stream_refusal(event)) is not None:
            self.refused += 1
            name, reason = refusal
            self._log.warn(f"stream {reason}", f"session {self._id}: refused a {name!r} stream: {reason}")
