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

Each fix probes for the behaviour it corrects and is applied only if the
probe finds it, and only on the releases it was written for; ``install()``
is idempotent and ``applied()`` says what it did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import wormhole
from twisted.logger import Logger
from wormhole._boss import Boss
from wormhole._dilation.connection import DilatedConnectionProtocol
from wormhole._dilation.connector import Connector
from wormhole._dilation.inbound import Inbound

from fowld.wormhole import records

log = Logger()

# The releases these fixes were written against (pyproject pins magic-wormhole < 0.25).
SUPPORTED_RELEASES = ("0.24.",)

_original_listener_addresses = Connector._get_listener_addresses
_original_subchannel_closed = Inbound.subchannel_closed
_direct_addresses: tuple[str, ...] | None = None


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


PATCHES = (
    Patch("pause-connection", _connection_cannot_pause, _add_pause_methods),
    Patch("forget-closed-paused", _closed_subchannel_stays_paused, _forget_closed_subchannels),
    Patch("closed-boss-ignores-closed", _closed_boss_rejects_closed, _nothing_more),
    Patch("direct-addresses", _hints_not_yet_ours, _choose_direct_addresses),
    Patch("record-copies", records.needed, records.apply),
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
