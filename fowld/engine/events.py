"""What a session tells its front ends.

Every event is a frozen value. Front ends subscribe with ``Session.subscribe``
and translate events into their own language: JSON lines for ``--stdio``,
properties and signals for D-Bus.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from fowld.engine.pairing import PairingAgreed
from fowld.engine.status import SessionStatus


class Direction(enum.Enum):
    OUTGOING = "outgoing"  # a local program connected to our listener (client side)
    INCOMING = "incoming"  # the peer opened a stream to one of our services


@dataclass(frozen=True)
class StatusChanged:
    status: SessionStatus


@dataclass(frozen=True)
class Welcome:
    url: str
    welcome: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CodeAllocated:
    code: str


@dataclass(frozen=True)
class PeerConnected:
    verifier: str
    versions: dict


@dataclass(frozen=True)
class KeyAgreed:
    """SPAKE2 gave a key; the peer's versions (proof that it holds the same key) are still due."""


@dataclass(frozen=True)
class Paired:
    """Both sides asked for a pairing and agreed on one (``agreed.secret`` stays in memory)."""

    agreed: PairingAgreed = field(repr=False)


@dataclass(frozen=True)
class PairingDeclined:
    """This side asked for a pairing, but none was made; the session forwards as usual."""

    reason: str


@dataclass(frozen=True)
class PeerForgot:
    """The peer forgot the pairing: this side must forget it too."""


@dataclass(frozen=True)
class PeerAway:
    """The peer stops for now (its daemon is stopping) and will meet again."""


@dataclass(frozen=True)
class ServiceReady:
    """The peer listens for our service ``name``; its streams end at ``connect``."""

    name: str
    connect: str
    local_port: int | None  # the TCP port we connect to, when there is one
    peer_listen_port: int | None = None


@dataclass(frozen=True)
class ServiceFailed:
    """The peer refused (or could not open) a listener for our service."""

    name: str
    reason: str


@dataclass(frozen=True)
class ClientListening:
    """We listen for client ``name`` at ``listen``; streams go to the peer's service."""

    name: str
    listen: str
    port: int | None  # the bound TCP port, when TCP


@dataclass(frozen=True)
class ClientFailed:
    """We could not listen for client ``name``."""

    name: str
    reason: str


@dataclass(frozen=True)
class ClientStopped:
    name: str
    reason: str


@dataclass(frozen=True)
class Refused:
    """We refused something the peer asked for (policy, limits or malformed input)."""

    what: str  # "listener", "stream", "message"
    name: str | None
    reason: str


@dataclass(frozen=True)
class StreamOpened:
    id: int
    name: str
    direction: Direction


@dataclass(frozen=True)
class StreamBytes:
    """Bytes moved since the previous ``StreamBytes`` for this stream (coalesced).

    ``into_tunnel``: read from the local socket and sent to the peer.
    ``out_of_tunnel``: received from the peer and written to the local socket.
    """

    id: int
    into_tunnel: int
    out_of_tunnel: int


@dataclass(frozen=True)
class StreamClosed:
    id: int
    name: str
    direction: Direction
    total_into_tunnel: int
    total_out_of_tunnel: int
    reason: str | None  # None for a clean close
    refused: bool = False  # the far end refused the stream before any data


@dataclass(frozen=True)
class PeerUnreachable:
    """The peer has been unreachable since ``since`` (epoch seconds), ``seconds`` long."""

    since: float
    seconds: float


@dataclass(frozen=True)
class Pong:
    ping_id: object
    time_of_flight: float


@dataclass(frozen=True)
class Error:
    message: str


@dataclass(frozen=True)
class Closed:
    result: str


Event = (
    StatusChanged
    | Welcome
    | CodeAllocated
    | PeerConnected
    | KeyAgreed
    | Paired
    | PairingDeclined
    | PeerForgot
    | PeerAway
    | ServiceReady
    | ServiceFailed
    | ClientListening
    | ClientFailed
    | ClientStopped
    | Refused
    | StreamOpened
    | StreamBytes
    | StreamClosed
    | PeerUnreachable
    | Pong
    | Error
    | Closed
)
