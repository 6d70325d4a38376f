"""fowld as a D-Bus service on the session bus: ``fowld`` without ``--stdio``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from twisted.logger import Logger

log = Logger()

# Options that describe the single session of --stdio; in the daemon each profile says.
_STDIO_ONLY = ("mailbox", "transit_relay", "embedded_mailbox")


def run_daemon(args: argparse.Namespace) -> int:
    """Serve ``org.fowl.Fowld1`` until SIGTERM; returns the process exit status."""
    from fowld.daemon.profiles import profiles_dir
    from fowld.daemon.supervisor import SessionOptions
    from fowld.dbus.app import run
    from fowld.engine.config import DAEMON_PEER_LOST_TIMEOUT

    for name in _STDIO_ONLY:
        if getattr(args, name, None):
            option = "--" + name.replace("_", "-")
            log.warn("{option} is ignored by the daemon: each profile names its own", option=option)
    timeout = getattr(args, "peer_lost_timeout", None)
    if timeout is None:
        timeout = DAEMON_PEER_LOST_TIMEOUT
    if timeout is not None and not 0 <= timeout <= 86400:
        print("fowld: --peer-lost-timeout must be 0-86400 seconds", file=sys.stderr)
        return 2
    options = SessionOptions(
        relay_only=bool(getattr(args, "relay_only", False)),
        ping_interval=getattr(args, "ping_interval", None),
        peer_lost_timeout=timeout if timeout else None,
    )
    profiles = Path(args.profiles) if getattr(args, "profiles", None) else profiles_dir()
    return run(profiles, options)
