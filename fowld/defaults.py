"""Protocol constants shared with upstream fowl, and the public defaults."""

APP_ID = "meejah.ca/wormhole/forward"
DEFAULT_MAILBOX = "ws://relay.magic-wormhole.io:4000/v1"
DEFAULT_TRANSIT_RELAY = "tcp:transit.magic-wormhole.io:4001"
