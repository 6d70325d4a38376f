"""Immutable descriptions of a session's state and of each of its forwards.

A session never exposes flags: it publishes a new ``SessionStatus`` whenever
anything changes, and front ends (stdio, D-Bus) render it. Each service and
client has a frozen status of its own, worked out in one place (the engine).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from fowld.wormhole.status import MailboxState, PeerState


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


class ServiceState(enum.Enum):
    REQUESTING = "requesting"  # asking the peer to listen for it
    READY = "ready"  # the peer listens; its streams reach us
    FAILED = "failed"  # the peer refused or stopped listening (asked again later)


class ClientState(enum.Enum):
    WAITING = "waiting"  # for the peer to offer the service
    LISTENING = "listening"
    FAILED = "failed"  # could not listen


@dataclass(frozen=True)
class ServiceStatus:
    """A service this side offers."""

    name: str
    connect: str  # endpoint string where its streams end ("" until the peer names a port)
    state: ServiceState = ServiceState.REQUESTING
    reason: str = ""


@dataclass(frozen=True)
class ClientStatus:
    """A service this side wants from the peer."""

    name: str
    listen: str  # endpoint string
    state: ClientState = ClientState.WAITING
    port: int = 0  # the bound TCP port while listening, else 0
    reason: str = ""


__all__ = [
    "ClientState",
    "ClientStatus",
    "MailboxState",
    "Path",
    "PeerState",
    "Phase",
    "ServiceState",
    "ServiceStatus",
    "SessionStatus",
]
