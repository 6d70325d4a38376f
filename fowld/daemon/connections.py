"""The open connections of one supervised session, each with its byte counts (for live views)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from fowld.engine import events


@dataclass(frozen=True)
class Connection:
    """One open forwarded connection: bytes into the tunnel (in) and out of it (out) so far."""

    id: int
    service: str
    direction: str  # incoming | outgoing
    bytes_in: int = 0
    bytes_out: int = 0
    opened_usec: int = 0  # CLOCK_REALTIME, µs since the epoch


class OpenConnections:
    """Follows an engine session's stream events; ``current`` is what is open now."""

    def __init__(self) -> None:
        self._open: dict[int, Connection] = {}

    @property
    def current(self) -> tuple[Connection, ...]:
        return tuple(self._open.values())

    def follow(self, event: events.Event) -> None:
        match event:
            case events.StreamOpened(id, name, direction):
                self._open[id] = Connection(id, name, direction.value, opened_usec=time.time_ns() // 1000)
            case events.StreamBytes(id, into_tunnel, out_of_tunnel) if id in self._open:
                c = self._open[id]
                self._open[id] = dataclasses.replace(
                    c, bytes_in=c.bytes_in + into_tunnel, bytes_out=c.bytes_out + out_of_tunnel
                )
            case events.StreamClosed(id):
                self._open.pop(id, None)

    def clear(self) -> None:
        """The engine session ended: its streams with it (stream ids start again in the next)."""
        self._open.clear()
