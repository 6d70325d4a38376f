"""Protocol constants shared with upstream fowl, and the public defaults."""

APP_ID = "meejah.ca/wormhole/forward"
DEFAULT_MAILBOX = "ws://relay.magic-wormhole.io:4000/v1"
DEFAULT_TRANSIT_RELAY = "tcp:transit.magic-wormhole.io:4001"
# Dilation keep-alive: the leader pings this often and replaces a path silent for two
# intervals. magic-wormhole's own default is 30 s; 10 s finds dead paths three times faster
# for one small record per interval.
DEFAULT_PING_INTERVAL = 10.0
# A stdio session with no peer connection for this long ends (its listeners close).
DEFAULT_PEER_LOST_TIMEOUT = 300.0
# A fixed-code daemon session with no peer connection for this long starts afresh, so it
# meets a peer that restarted (and waits on a fresh mailbox).
DAEMON_PEER_LOST_TIMEOUT = 60.0
