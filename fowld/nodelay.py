"""TCP_NODELAY on the Dilation connection.

magic-wormhole 0.24 leaves Nagle's algorithm on for the TCP connection that
carries Dilation (direct or through the transit relay). A small record, such
as one keystroke or a 40-byte request, then waits for the peer's delayed ACK:
round trips of tens of milliseconds instead of well under one. Nothing public
exposes that socket, so this module reaches it through the Dilation manager's
current connection, in one place, and degrades to a logged no-op if a future
magic-wormhole changes that shape.
"""

from __future__ import annotations

from twisted.internet.interfaces import ITCPTransport
from twisted.logger import Logger

log = Logger()
_warned = False


def set_nodelay_on_dilation(dilated: object) -> bool:
    """Disable Nagle on the current Dilation connection; True if it was set."""
    global _warned
    manager = getattr(dilated, "_manager", None)
    if manager is None or not hasattr(manager, "_connection"):
        if not _warned:
            _warned = True
            log.warn("cannot reach the Dilation connection to set TCP_NODELAY; latency may suffer")
        return False
    transport = getattr(manager._connection, "transport", None)
    if transport is not None and ITCPTransport.providedBy(transport):
        transport.setTcpNoDelay(True)
        return True
    return False
