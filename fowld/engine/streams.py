"""Forwarded streams: a local socket spliced to a Dilation subchannel.

One ``Stream`` joins two ``Protocol`` ends. Each end is the other's producer,
so a slow reader on either side pauses the writer on the other (memory stays
bounded). Byte counts are reported coalesced: at most one ``StreamBytes`` per
stream per ``Limits.bytes_report_interval``, with exact totals.

A stream ends cleanly only when one of its two programs closed its side (the
local one here, or the peer's, whose close arrives as the subchannel's). Any
other end (a refusal, a failed handshake, the session ending under it) resets
the local socket, so the program reading it sees an error instead of an end of
file that would make a cut stream look complete.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from fowld.engine import events
from fowld.engine.limits import Limits
from fowld.wormhole.tuning import tune_transport

Emit = Callable[[Any], None]


def describe(reason: Failure | BaseException | None) -> str | None:
    """A short human reason, or None for a clean close."""
    if isinstance(reason, BaseException):
        reason = Failure(reason)  # Dilation subchannels pass bare exceptions
    if reason is None or reason.check(ConnectionDone):
        return None
    return reason.getErrorMessage() or reason.type.__name__


class Stream:
    """One forwarded connection: counters, and the two ends once they exist."""

    def __init__(self, table: StreamTable, id: int, name: str, direction: events.Direction):
        self.table = table
        self.id = id
        self.name = name
        self.direction = direction
        self.into_tunnel = 0
        self.out_of_tunnel = 0
        self.reported_into = 0
        self.reported_out = 0
        self.local: Protocol | None = None
        self.tunnel: Protocol | None = None
        self.splicing = False
        self.refused = False
        self._reason: str | None = None
        self._closed_ends = 0
        self._done = False

    # data path ---------------------------------------------------------------

    def from_local(self, data: bytes) -> None:
        self.tunnel.transport.write(data)
        self.into_tunnel += len(data)
        self.table.mark_dirty(self)

    def from_tunnel(self, data: bytes) -> None:
        self.local.transport.write(data)
        self.out_of_tunnel += len(data)
        self.table.mark_dirty(self)

    def splice(self) -> None:
        """Both ends are up and the handshake is done: let bytes flow both ways."""
        self.splicing = True
        local, tunnel = self.local.transport, self.tunnel.transport
        local.registerProducer(tunnel, True)
        tunnel.registerProducer(local, True)
        local.resumeProducing()
        tunnel.resumeProducing()

    # closing -----------------------------------------------------------------

    def fail(self, reason: str, refused: bool = False) -> None:
        """End the stream early: reset the local socket, close the subchannel."""
        self.refused = self.refused or refused
        self._reason = self._reason or reason
        self._close_ends(reset=True)
        if self.local is None and self.tunnel is None:
            self._finish()

    def cut(self, reason: str) -> None:
        """The session ends under the stream: reset the local socket and end now.

        The subchannel is left to die with the wormhole: closing it would tell
        the peer the stream ended normally, and its close would never be
        acknowledged by a peer that is gone.
        """
        self._reason = self._reason or reason
        if self.splicing:
            for end in (self.local, self.tunnel):
                # an end already lost has no producer left (Dilation refuses a second unregister)
                if end is not None and end.connected and end.transport is not None:
                    end.transport.unregisterProducer()
        local = self.local
        if local is not None and local.connected and local.transport is not None:
            local.connected = False
            local.transport.abortConnection()
        self._finish()

    def end_lost(self, reason: Failure) -> None:
        if self._reason is None:
            self._reason = describe(reason)
        self._closed_ends += 1
        self._close_ends()
        expected = (self.local is not None) + (self.tunnel is not None)
        if self._closed_ends >= expected:
            self._finish()

    def _close_ends(self, reset: bool = False) -> None:
        for end in (self.local, self.tunnel):
            if end is not None and end.connected and end.transport is not None:
                end.connected = False  # lose each end once
                if self.splicing:
                    # A transport with a producer registered waits for that producer
                    # (possibly forever, if it is paused) instead of closing.
                    end.transport.unregisterProducer()
                if reset and end is self.local:
                    end.transport.abortConnection()
                else:
                    end.transport.loseConnection()

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self.table.finished(self, self._reason)


class StreamTable:
    """The streams of one session: ids, the concurrency limit and byte reports."""

    def __init__(self, reactor: Any, limits: Limits, emit: Emit):
        self._reactor = reactor
        self._limits = limits
        self._emit = emit
        self._streams: dict[int, Stream] = {}
        self._reserved = 0
        self._next_id = 1
        self._dirty: dict[int, Stream] = {}
        self._timer = None

    def __len__(self) -> int:
        return len(self._streams)

    def __iter__(self):
        return iter(list(self._streams.values()))

    def has_room(self) -> bool:
        return len(self._streams) + self._reserved < self._limits.max_streams

    def reserve(self) -> bool:
        """Hold a place for a stream whose opening message has not arrived yet."""
        if not self.has_room():
            return False
        self._reserved += 1
        return True

    def release(self) -> None:
        self._reserved -= 1

    def open(self, name: str, direction: events.Direction) -> Stream:
        stream = Stream(self, self._next_id, name, direction)
        self._next_id += 1
        self._streams[stream.id] = stream
        self._emit(events.StreamOpened(stream.id, name, direction))
        return stream

    def mark_dirty(self, stream: Stream) -> None:
        self._dirty[stream.id] = stream
        if self._timer is None:
            self._timer = self._reactor.callLater(self._limits.bytes_report_interval, self.flush)

    def flush(self) -> None:
        self._timer = None
        dirty, self._dirty = self._dirty, {}
        for stream in dirty.values():
            self._report(stream)

    def _report(self, stream: Stream) -> None:
        into = stream.into_tunnel - stream.reported_into
        out = stream.out_of_tunnel - stream.reported_out
        if into or out:
            stream.reported_into, stream.reported_out = stream.into_tunnel, stream.out_of_tunnel
            self._emit(events.StreamBytes(stream.id, into, out))

    def finished(self, stream: Stream, reason: str | None) -> None:
        self._streams.pop(stream.id, None)
        self._dirty.pop(stream.id, None)
        self._report(stream)
        self._emit(
            events.StreamClosed(
                stream.id,
                stream.name,
                stream.direction,
                stream.into_tunnel,
                stream.out_of_tunnel,
                reason,
                stream.refused,
            )
        )

    def cut_all(self, reason: str) -> None:
        """The session is ending: every open stream ends as lost, with ``reason``."""
        for stream in self:
            stream.cut(reason)

    def stop(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


class LocalEnd(Protocol):
    """The local socket of a stream: a user of our listener, or the service we connect to."""

    def __init__(self, stream: Stream | None = None):
        self.stream = stream

    def connectionMade(self) -> None:
        tune_transport(self.transport)  # interactive traffic: no Nagle; bulk: large reads
        # nothing may cross before the peer's handshake is done; splice() resumes us
        self.transport.pauseProducing()
        if self.stream is not None:
            self.stream.local = self

    def dataReceived(self, data: bytes) -> None:
        self.stream.from_local(data)

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:
        self.connected = False
        if self.stream is not None:
            self.stream.end_lost(reason)
