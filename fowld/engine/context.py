"""What the parts of one session's forwarding share: clock, limits, events, streams, subchannels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.protocol import Factory

from fowld.engine.limits import Limits
from fowld.engine.streams import Emit, StreamTable


class ForwardingError(ValueError):
    """A local request that cannot be carried out (duplicate or unknown name...)."""


@dataclass
class ForwardingContext:
    """Handed to services, clients and protocols instead of the registry that owns them."""

    reactor: Any
    limits: Limits
    emit: Emit
    streams: StreamTable
    dilated: Any = None  # the DilatedWormhole, once attached
    stopped: bool = False  # the session is ending: start nothing new

    def open_subchannel(self, subprotocol: str, factory: Factory) -> Deferred:
        if self.dilated is None or self.stopped:
            return fail(ForwardingError("not connected to a peer"))
        return self.dilated.connector_for(subprotocol).connect(factory)

