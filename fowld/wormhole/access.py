"""Reaching the parts of magic-wormhole 0.24 that have no public API.

Dilation's TCP connection (for socket tuning and dead-path checks), its ping
(for round-trip times) and the mailbox WebSocket (for its keep-alive) are only
reachable through private attributes. Every such attribute is read here and
nowhere else; each accessor answers None (or False) when the shape it expects
is not there, so a changed magic-wormhole degrades to doing less, never to a
crash.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def dilation_manager(dilated: Any) -> Any:
    """The Dilation manager behind a ``DilatedWormhole``, or None."""
    return getattr(dilated, "_manager", None)


def dilation_transport(dilated: Any) -> Any:
    """The TCP transport of the current Dilation connection, or None between generations."""
    connection = getattr(dilation_manager(dilated), "_connection", None)
    return getattr(connection, "transport", None)


def dilation_ever_connected(dilated: Any) -> bool:
    """Whether Dilation has had a peer connection at all (later losses count as outages)."""
    return bool(getattr(dilation_manager(dilated), "_made_first_connection", False))


def send_ping(dilated: Any, ping_id: bytes, on_pong: Callable[[float], None]) -> bool:
    """Send a Dilation ping; ``on_pong`` gets the round trip in seconds. False if impossible."""
    manager = dilation_manager(dilated)
    if manager is None or not hasattr(manager, "send_ping"):
        return False
    manager.send_ping(ping_id, on_pong)
    return True


def mailbox_protocol(wormhole: Any) -> Any:
    """The WebSocket protocol of the current mailbox connection, or None while reconnecting."""
    connector = getattr(getattr(wormhole, "_boss", None), "_RC", None)
    return getattr(connector, "_ws", None)
