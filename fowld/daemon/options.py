"""Daemon-wide settings for every supervised session (light to import: the CLI reads them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fowld.engine.config import CLOSE_TIMEOUT
from fowld.engine.pairing import PairingRequest

# A fixed-code session with no peer connection for this long starts afresh, so that it
# meets a peer that restarted (and waits on a fresh mailbox).
DAEMON_PEER_LOST_TIMEOUT = 60.0


def _backoff(**policy: float) -> Callable[[int], float]:
    from twisted.application.internet import backoffPolicy  # the CLI need not import it

    return backoffPolicy(**policy)


@dataclass(frozen=True)
class SessionOptions:
    """Daemon-wide settings for every session."""

    relay_only: bool = False
    ping_interval: float | None = None
    # A supervised session whose peer stays unreachable this long is restarted, so that
    # it can meet a restarted peer (which waits on a fresh mailbox). None: never.
    peer_lost_timeout: float | None = DAEMON_PEER_LOST_TIMEOUT
    retry_delay: Callable[[int], float] = field(default_factory=lambda: _backoff(maxDelay=300.0))
    close_timeout: float = CLOSE_TIMEOUT  # how long closing waits for the peer's goodbye
    # Per session, from an invite or accept: the pairing asked for, the session's lifetime
    # (overrides the profile's) and how long an invitation waits for someone to join.
    pairing: PairingRequest | None = None
    lifetime: float | None = None
    join_within: float | None = None
