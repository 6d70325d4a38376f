"""Contained adjustments to magic-wormhole 0.24's Dilation, applied in one place.

1. Inbound flow control. When a subchannel's reader is slow, Dilation pauses
   its connection by calling ``pauseProducing()`` on the connection protocol;
   in 0.24 that protocol has no such method (AttributeError), so backpressure
   from a slow local reader cannot work. We add the two methods, delegating to
   the TCP transport underneath: the kernel's receive window then pushes back
   on the peer, and memory stays bounded.

2. A closed subchannel stays in Dilation's set of paused subchannels when it
   was paused at the time (0.24 never removes it), which leaves the whole
   connection paused for good: every other stream stalls. We drop it from the
   set on close, resuming the connection if it was the last one paused.

3. When the wormhole failed (a "crowded" or reused code, an unwelcome server)
   its Boss is already closed when Dilation finishes stopping and reports
   ``closed`` again; 0.24 has no transition for that and logs an unhandled
   NoTransition. We let a closed Boss ignore it.

4. Which addresses are advertised for direct connections. Dilation offers the
   peer every address of every interface. ``advertise_direct_addresses`` narrows
   that list (for example to 127.0.0.1 when both peers share one machine, or to
   the one interface a LAN deployment should use).
"""

from __future__ import annotations

from collections.abc import Sequence

from wormhole._boss import Boss
from wormhole._dilation.connection import DilatedConnectionProtocol
from wormhole._dilation.connector import Connector
from wormhole._dilation.inbound import Inbound

_original_listener_addresses = Connector._get_listener_addresses
_original_subchannel_closed = Inbound.subchannel_closed
_direct_addresses: tuple[str, ...] | None = None


def _pause(self: DilatedConnectionProtocol) -> None:
    if self.transport is not None:
        self.transport.pauseProducing()


def _resume(self: DilatedConnectionProtocol) -> None:
    if self.transport is not None:
        self.transport.resumeProducing()


def _subchannel_closed(self: Inbound, scid: int, sc: object) -> None:
    _original_subchannel_closed(self, scid, sc)
    if sc in self._paused_subchannels:
        self.subchannel_stopProducing(sc)  # forget it; resume the connection if it was the last


def _listener_addresses(self: Connector) -> list[str]:
    if _direct_addresses is not None:
        return list(_direct_addresses)
    return _original_listener_addresses(self)


def advertise_direct_addresses(addresses: Sequence[str] | None) -> None:
    """Offer the peer only ``addresses`` for direct connections (None: all of them)."""
    global _direct_addresses
    _direct_addresses = tuple(addresses) if addresses is not None else None


def _let_closed_boss_ignore_closed() -> None:
    closed_state, closed_input = Boss.__dict__["S4_closed"], Boss.__dict__["closed"]
    try:
        closed_state.upon(closed_input, enter=closed_state, outputs=[])
    except ValueError:
        pass  # this magic-wormhole already allows it


def install() -> None:
    if not hasattr(DilatedConnectionProtocol, "pauseProducing"):
        DilatedConnectionProtocol.pauseProducing = _pause
        DilatedConnectionProtocol.resumeProducing = _resume
    Inbound.subchannel_closed = _subchannel_closed
    _let_closed_boss_ignore_closed()
    Connector._get_listener_addresses = _listener_addresses
