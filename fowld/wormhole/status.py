"""magic-wormhole's status objects, translated into fowld's own values.

``wormhole._status`` is a private module; this is the only place that reads it.
The engine describes sessions with the enums below and never sees the
library's classes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from wormhole import _status as wstatus


class MailboxState(enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    FAILED = "failed"
    CLOSED = "closed"


class PeerState(enum.Enum):
    NONE = "none"  # no peer seen yet
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"


_MAILBOX_STATES = {
    wstatus.Disconnected: MailboxState.DISCONNECTED,
    wstatus.Connecting: MailboxState.CONNECTING,
    wstatus.Connected: MailboxState.CONNECTED,
    wstatus.Failed: MailboxState.FAILED,
    wstatus.Closed: MailboxState.CLOSED,
}
_PEER_STATES = {
    wstatus.NoPeer: PeerState.NONE,
    wstatus.ConnectingPeer: PeerState.CONNECTING,
    wstatus.ConnectedPeer: PeerState.CONNECTED,
    wstatus.ReconnectingPeer: PeerState.RECONNECTING,
    wstatus.StoppedPeer: PeerState.STOPPED,
}


@dataclass(frozen=True)
class PeerConnection:
    """The Dilation connection in use: when it was made, until when it counts as alive."""

    connected_at: float
    expires_at: float
    hint: str  # e.g. "->tcp:127.0.0.1:33725" or "->relay:tcp:127.0.0.1:4001"

    @property
    def relayed(self) -> bool:
        return "relay" in self.hint


@dataclass(frozen=True)
class DilationView:
    """One Dilation status update, in fowld's terms."""

    mailbox: MailboxState
    peer: PeerState
    generation: int
    connection: PeerConnection | None  # set while the peer is connected


def mailbox_state(status: object) -> MailboxState:
    """The mailbox state of a ``WormholeStatus``."""
    connection = getattr(status, "mailbox_connection", None)
    return _MAILBOX_STATES.get(type(connection), MailboxState.DISCONNECTED)


def dilation_view(status: object) -> DilationView:
    """A ``DilationStatus`` as fowld describes it."""
    peer = getattr(status, "peer_connection", None)
    connection = None
    if isinstance(peer, wstatus.ConnectedPeer):
        connection = PeerConnection(peer.connected_at, peer.expires_at, peer.hint_description)
    return DilationView(
        mailbox=mailbox_state(getattr(status, "mailbox", None)),
        peer=_PEER_STATES.get(type(peer), PeerState.NONE),
        generation=int(getattr(status, "generation", 0)),
        connection=connection,
    )
