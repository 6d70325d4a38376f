"""Daemon-wide settings for every supervised session (light to import: the CLI reads them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fowld.engine.config import CLOSE_TIMEOUT
from fowld.engine.pairing import PairingRequest


def _backoff(**policy: float) -> Callable[[int], float]:
    from twisted.application.internet import backoffPolicy  # the CLI need not import it

    return backoffPolicy(**policy)


@dataclass(frozen=True)
class InviteLimits:
    """Bounds on invitations nobody has joined yet: each holds a nameplate on the mailbox."""

    per_daemon: int = 64  # waiting invitations in all (--max-invites)
    per_profile: int = 16  # waiting invitations of one profile (--max-invites-per-profile)
    expiry: float = 3600.0  # seconds an invitation waits for its peer (--invite-expiry; 0: forever)


@dataclass(frozen=True)
class SessionOptions:
    """Daemon-wide settings for every session."""

    relay_only: bool = False
    ping_interval: float | None = None
    # A supervised session whose peer stays unreachable this long is restarted, so that
    # it can meet a restarted peer (which waits on a fresh mailbox). None: never (the
    # default: a peer that sleeps comes back to the same session).
    peer_lost_timeout: float | None = None
    retry_delay: Callable[[int], float] = field(default_factory=lambda: _backoff(maxDelay=300.0))
    close_timeout: float = CLOSE_TIMEOUT  # how long closing waits for the peer's goodbye
    invites: InviteLimits = field(default_factory=InviteLimits)
    # Per session, from an invite or accept: the pairing asked for, the session's lifetime
    # (overrides the profile's) and how long an invitation waits for someone to join.
    pairing: PairingRequest | None = None
    lifetime: float | None = None
    join_within: float | None = None
