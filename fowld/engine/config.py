"""Protocol constants shared with upstream fowl, the public defaults, and a session's settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from fowld.engine.limits import Limits
from fowld.engine.pairing import PairingRequest

APP_ID = "meejah.ca/wormhole/forward"
DEFAULT_MAILBOX = "ws://relay.magic-wormhole.io:4000/v1"
DEFAULT_TRANSIT_RELAY = "tcp:transit.magic-wormhole.io:4001"
# Dilation keep-alive: the leader pings this often and replaces a path silent for two
# intervals. magic-wormhole's own default is 30 s; 10 s finds dead paths three times faster
# for one small record per interval.
DEFAULT_PING_INTERVAL = 10.0
# A session with no peer connection for this long ends (--peer-lost-timeout); 0: never, the
# default, because a peer that sleeps (a laptop's lid closed for hours) comes back.
DEFAULT_PEER_LOST_TIMEOUT = 0.0
# How long closing waits for the peer's answer to our "closing" message.
CLOSE_TIMEOUT = 10.0
# Pending connections a listener queues (Twisted's default is 50). The kernel caps it at
# net.core.somaxconn (4096 on current Linux), so a burst of connections is accepted or
# refused at once instead of waiting in SYN retries.
LISTEN_BACKLOG = 65535
# Words in an allocated code, after its number.
DEFAULT_CODE_LENGTH = 2


@dataclass(frozen=True)
class SessionConfig:
    mailbox_url: str = DEFAULT_MAILBOX
    transit_relay: str | None = DEFAULT_TRANSIT_RELAY
    code_length: int = DEFAULT_CODE_LENGTH
    relay_only: bool = False  # never offer or use direct connections (Dilation no_listen)
    ping_interval: float = DEFAULT_PING_INTERVAL  # Dilation's keep-alive
    # end the session after this long without any peer connection (None: never)
    peer_lost_timeout: float | None = None
    limits: Limits = field(default_factory=Limits)
    pairing: PairingRequest | None = None  # ask the peer for a pairing of this name
