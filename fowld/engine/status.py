"""Immutable descriptions of a session's state.

A session never exposes flags: it publishes a new ``SessionStatus`` whenever
anything changes, and front ends (stdio, D-Bus) render it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


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


class Path(enum.Enum):
    UNKNOWN = "unknown"
    DIRECT = "direct"
    RELAY = "relay"


class Phase(enum.Enum):
    """The life cycle of one session, as users see it."""

    STARTING = "starting"  # talking to the mailbox, no code yet
    WAITING = "waiting"  # code known, waiting for the peer
    CONNECTING = "connecting"  # peer seen, Dilation connecting
    CONNECTED = "connected"  # Dilated: forwarding works
    RECONNECTING = "reconnecting"  # lost the peer connection, Dilation is retrying
    CLOSING = "closing"
    CLOSED = "closed"
    FAILED = "failed"


@dataclass(frozen=True)
class SessionStatus:
    phase: Phase = Phase.STARTING
    mailbox: MailboxState = MailboxState.DISCONNECTED
    mailbox_url: str = ""
    code: str | None = None
    verifier: str | None = None  # hex; equal on both sides when no one is in the middle
    peer: PeerState = PeerState.NONE
    peer_versions: dict = field(default_factory=dict, compare=False, hash=False)
    generation: int = 0  # Dilation generation: goes up on every reconnection
    path: Path = Path.UNKNOWN
    hint: str = ""  # description of the connection in use, e.g. "tcp:127.0.0.1:4001 (relay)"
    reason: str = ""  # why the last phase change happened (failures, closing)
