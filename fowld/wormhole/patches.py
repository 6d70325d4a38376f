"""Contained fixes to magic-wormhole 0.24's Dilation, each applied only where it is needed.

1. ``pause-connection``: when a subchannel's reader is slow, Dilation pauses
   its connection by calling ``pauseProducing()`` on the connection protocol,
   which in 0.24 has no such method (AttributeError), so backpressure from a
   slow local reader cannot work. We add the two methods, delegating to the
   TCP transport: the kernel's receive window then pushes back on the peer.
2. ``forget-closed-paused``: a subchannel closed while paused stays in
   Dilation's set of paused subchannels, which leaves the whole connection
   paused for good: every other stream stalls. We drop it on close, resuming
   the connection if it was the last one paused.
3. ``closed-boss-ignores-closed``: when the wormhole failed (a crowded or
   reused code, an unwelcome server) its Boss is already closed when Dilation
   finishes stopping and reports ``closed`` again; 0.24 has no transition for
   that and logs an unhandled NoTransition. A closed Boss ignores it.
4. ``direct-addresses``: not a bug fix but a choice: Dilation offers the peer
   every address of every interface for direct connections;
   ``advertise_direct_addresses`` narrows that list.
5. ``record-copies``: not a bug fix but a cost: a record larger than one
   Noise message is assembled by repeated concatenation, about five copies
   of a 512 KiB record per side; ``records.py`` joins the pieces once, with
   the same bytes on the wire.
6. ``bounded-unacked``: Dilation keeps every record it sent until the peer
   acknowledges it, to replay it on the next connection, and lets its
   subchannels write as fast as the TCP connection takes bytes. The queue of
   unacknowledged records is bounded only by the socket buffers, so every cut
   of a fast stream leaves megabytes queued (heap the allocator then keeps).
   We pause the subchannels' producers while more than ``UNACKED_HIGH`` bytes
   are unacknowledged and resume them below ``UNACKED_LOW``: a window on the
   bytes in flight.

Each fix probes for the behaviour it corrects and is applied only if the
probe finds it, and only on the releases it was written for; ``install()``
is idempotent and ``applied()`` says what it did.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import wormhole
from twisted.logger import Logger
from wormhole._boss import Boss
from wormhole._dilation.connection import DilatedConnectionProtocol
from wormhole._dilation.connector import Connector
from wormhole._dilation.inbound import Inbound
from wormhole._dilation.outbound import Outbound

from fowld.wormhole import records

log = Logger()

# The releases these fixes were written against (pyproject pins magic-wormhole < 0.25).
SUPPORTED_RELEASES = ("0.24.",)

_original_listener_addresses = Connector._get_listener_addresses
_original_subchannel_closed = Inbound.subchannel_closed
_direct_addresses: tuple[str, ...] | None = None
_original_queue_and_send = Outbound.queue_and_send_record
_original_handle_ack = Outbound.handle_ack
_original_next_producer = Outbound._get_next_unpaused_producer
# Bytes of unacknowledged records above which subchannels stop writing, and below which they
# resume. 2 MiB in flight carries 200 MB/s at a 10 ms round trip; a cut queues at most that.
UNACKED_HIGH = 2 << 20
UNACKED_LOW = 1 << 20


@dataclass(frozen=True)
class Patch:
    name: str
    needed: Callable[[], bool]  # probes the library for the behaviour this patch corrects
    apply: Callable[[], None]


# 1. pause-connection ------------------------------------------------------------------------


def _pause(self: DilatedConnectionProtocol) -> None:
    if self.transport is not None:
        self.transport.pauseProducing()


def _resume(self: DilatedConnectionProtocol) -> None:
    if self.transport is not None:
        self.transport.resumeProducing()


def _connection_cannot_pause() -> bool:
    return not hasattr(DilatedConnectionProtocol, "pauseProducing")


def _add_pause_methods() -> None:
    DilatedConnectionProtocol.pauseProducing = _pause
    DilatedConnectionProtocol.resumeProducing = _resume


# 2. forget-closed-paused ----------------------------------------------------------------------


class _ProbeManager:
    """Just enough of a Dilation manager for ``Inbound`` to be built in a probe."""


def _closed_subchannel_stays_paused() -> bool:
    if Inbound.subchannel_closed is _subchannel_closed:
        return False  # already ours
    try:
        inbound = object.__new__(Inbound)
        inbound._open_subchannels, inbound._paused_subchannels, inbound._connection = {}, set(), None
        subchannel = object()
        inbound._open_subchannels[1] = subchannel
        inbound._paused_subchannels.add(subchannel)
        _original_subchannel_closed(inbound, 1, subchannel)
        return subchannel in inbound._paused_subchannels
    except Exception:
        log.warn("cannot probe Dilation's inbound flow control; leaving it as it is")
        return False


def _subchannel_closed(self: Inbound, scid: int, sc: object) -> None:
    _original_subchannel_closed(self, scid, sc)
    if sc in self._paused_subchannels:
        self.subchannel_stopProducing(sc)  # forget it; resume the connection if it was the last


def _forget_closed_subchannels() -> None:
    Inbound.subchannel_closed = _subchannel_closed


# 3. closed-boss-ignores-closed ---------------------------------------------------------------


def _closed_boss_rejects_closed() -> bool:
    closed_state, closed_input = Boss.__dict__["S4_closed"], Boss.__dict__["closed"]
    try:
        closed_state.upon(closed_input, enter=closed_state, outputs=[])
    except ValueError:
        return False  # the transition exists (ours, or the library's own)
    return True  # the probe added the missing transition: that is the fix itself


def _nothing_more() -> None:
    """The probe of patch 3 already added the transition."""


# 4. direct-addresses --------------------------------------------------------------------------


def _listener_addresses(self: Connector) -> list[str]:
    if _direct_addresses is not None:
        return list(_direct_addresses)
    return _original_listener_addresses(self)


def _hints_not_yet_ours() -> bool:
    return Connector._get_listener_addresses is not _listener_addresses


def _choose_direct_addresses() -> None:
    Connector._get_listener_addresses = _listener_addresses


def advertise_direct_addresses(addresses: Sequence[str] | None) -> None:
    """Offer the peer only ``addresses`` for direct connections (None: all of them)."""
    global _direct_addresses
    _direct_addresses = tuple(addresses) if addresses is not None else None
    install()


# 6. bounded-unacked --------------------------------------------------------------------------


def _record_bytes(record: object) -> int:
    return len(getattr(record, "data", b"") or b"")  # Data records; Open and Close carry none


def unacked_bytes(outbound: Outbound) -> int:
    """Bytes of the records ``outbound`` has sent and the peer has not acknowledged."""
    return getattr(outbound, "_fowl_unacked", 0)


def _queue_and_send_record(self: Outbound, record: object) -> None:
    _original_queue_and_send(self, record)
    self._fowl_unacked = unacked_bytes(self) + _record_bytes(record)
    if self._fowl_unacked > UNACKED_HIGH and not getattr(self, "_fowl_held", False):
        self._fowl_held = True
        for producer in list(self._unpaused_producers):  # queued records still go out
            self._unpaused_producers.remove(producer)
            self._paused_producers.add(producer)
            producer.pauseProducing()


def _handle_ack(self: Outbound, resp_seqnum: int) -> None:
    acked = itertools.takewhile(lambda r: r.seqnum <= resp_seqnum, self._outbound_queue)
    retired = sum(_record_bytes(r) for r in acked)
    _original_handle_ack(self, resp_seqnum)
    self._fowl_unacked = max(0, unacked_bytes(self) - retired)
    if getattr(self, "_fowl_held", False) and self._fowl_unacked <= UNACKED_LOW:
        self._fowl_held = False
        if self._connection is not None and not self._paused:
            # the connection takes bytes: resume the producers as the connection would
            self._paused = True
            self.resumeProducing()


def _next_unpaused_producer(self: Outbound) -> object:
    if getattr(self, "_fowl_held", False):
        return None  # resumeProducing sends queued records but wakes no producer
    return _original_next_producer(self)


def _unacked_unbounded() -> bool:
    return Outbound.queue_and_send_record is not _queue_and_send_record


def _bound_unacked() -> None:
    Outbound.queue_and_send_record = _queue_and_send_record
    Outbound.handle_ack = _handle_ack
    Outbound._get_next_unpaused_producer = _next_unpaused_producer


PATCHES = (
    Patch("pause-connection", _connection_cannot_pause, _add_pause_methods),
    Patch("forget-closed-paused", _closed_subchannel_stays_paused, _forget_closed_subchannels),
    Patch("closed-boss-ignores-closed", _closed_boss_rejects_closed, _nothing_more),
    Patch("direct-addresses", _hints_not_yet_ours, _choose_direct_addresses),
    Patch("record-copies", records.needed, records.apply),
    Patch("bounded-unacked", _unacked_unbounded, _bound_unacked),
)
_applied: list[str] = []


def supported_release(version: str | None = None) -> bool:
    version = wormhole.__version__ if version is None else version
    return version.startswith(SUPPORTED_RELEASES)


def install() -> tuple[str, ...]:
    """Apply every fix this magic-wormhole still needs; returns the names applied so far."""
    if not supported_release():
        if not _applied:
            log.warn(
                "magic-wormhole {version} is not one fowld's fixes were written for; none applied",
                version=wormhole.__version__,
            )
        return applied()
    for patch in PATCHES:
        if patch.name not in _applied and patch.needed():
            patch.apply()
            _applied.append(patch.name)
    return applied()


def applied() -> tuple[str, ...]:
    return tuple(_applied)
