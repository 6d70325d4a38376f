"""A contained fix for magic-wormhole 0.24's inbound flow control.

When a subchannel's reader is slow, Dilation pauses its connection by calling
``pauseProducing()`` on the connection protocol; in 0.24 that protocol has no
such method (AttributeError), so backpressure from a slow local reader cannot
work. We add the two methods, delegating to the TCP transport underneath: the
kernel's receive window then pushes back on the peer, and memory stays bounded.
Applied once, only when the methods are missing.
"""

from __future__ import annotations

from wormhole._dilation.connection import DilatedConnectionProtocol


def _pause(self: DilatedConnectionProtocol) -> None:
    if self.transport is not None:
        self.transport.pauseProducing()


def _resume(self: DilatedConnectionProtocol) -> None:
    if self.transport is not None:
        self.transport.resumeProducing()


def install() -> None:
    if not hasattr(DilatedConnectionProtocol, "pauseProducing"):
        DilatedConnectionProtocol.pauseProducing = _pause
        DilatedConnectionProtocol.resumeProducing = _resume
