"""The ``fowld`` command: the D-Bus daemon by default, or one session on stdio."""

from __future__ import annotations

import argparse
import ipaddress
import os
import resource
import sys

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

from fowld import __version__
from fowld.engine.config import (
    DAEMON_PEER_LOST_TIMEOUT,
    DEFAULT_MAILBOX,
    DEFAULT_PEER_LOST_TIMEOUT,
    DEFAULT_PING_INTERVAL,
    DEFAULT_TRANSIT_RELAY,
)
from fowld.wormhole import patches as compat

EPILOG = """\
examples:
  fowld                                   run the D-Bus service (what systemd starts)
  fowld --stdio                           one session, JSON lines on stdin/stdout
  fowld --stdio --mailbox ws://127.0.0.1:4000/v1 --transit-relay tcp:127.0.0.1:4001
  fowld --stdio --embedded-mailbox tcp:4000   serve a mailbox in-process (offline/LAN)

stdio input (one JSON object per line):
  {"kind": "allocate-code"}                 or {"kind": "set-code", "code": "7-foo-bar"}
  {"kind": "remote", "name": "ssh", "local_connect_port": 22}       offer a service
  {"kind": "local", "name": "ssh", "local_listen_port": 2222}       want the peer's service
  {"kind": "session-close"}                 (closing stdin does the same)
see docs/stdio.md for every kind.
"""


def _env_addresses() -> list[str] | None:
    value = os.environ.get("FOWL_DIRECT_ADDRESSES", "").strip()
    return [a.strip() for a in value.split(",") if a.strip()] or None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fowld",
        description="Forward TCP and UNIX streams between two computers over Magic Wormhole Dilation.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fowld {__version__}")
    parser.add_argument("--stdio", action="store_true", help="run one session driven by JSON lines")
    parser.add_argument("--mailbox", metavar="URL", help=f"mailbox server (default {DEFAULT_MAILBOX})")
    parser.add_argument(
        "--transit-relay",
        metavar="HINT",
        help=f"transit relay for when no direct path works (default {DEFAULT_TRANSIT_RELAY}); "
        "'none' to use no relay",
    )
    parser.add_argument(
        "--embedded-mailbox",
        metavar="ENDPOINT",
        help="run a mailbox server in this process on ENDPOINT (e.g. tcp:4000) and use it",
    )
    parser.add_argument(
        "--relay-only", action="store_true", help="never connect directly; always go through the relay"
    )
    parser.add_argument(
        "--ping-interval",
        type=float,
        metavar="SECONDS",
        help="Dilation keep-alive interval; a path silent for two intervals is replaced "
        f"(default {DEFAULT_PING_INTERVAL:g})",
    )
    parser.add_argument(
        "--direct-address",
        action="append",
        metavar="ADDRESS",
        default=_env_addresses(),
        help="offer the peer only this address for direct connections (repeatable; "
        "default: every local address; env FOWL_DIRECT_ADDRESSES=a,b)",
    )
    parser.add_argument("--code-length", type=int, default=2, metavar="N", help="words in new codes")
    parser.add_argument(
        "command",
        nargs="?",
        choices=["daemon"],
        help="run the D-Bus service (the default without --stdio; what the systemd unit runs)",
    )
    parser.add_argument(
        "--profiles",
        metavar="DIR",
        help="daemon: where profiles are read (default $XDG_CONFIG_HOME/fowl/profiles)",
    )
    parser.add_argument(
        "--peer-lost-timeout",
        type=float,
        metavar="SECONDS",
        help="with no connection to the peer this long, the daemon restarts a fixed-code session "
        f"(to meet a restarted peer; default {DAEMON_PEER_LOST_TIMEOUT:g}) and a --stdio session "
        f"ends (default {DEFAULT_PEER_LOST_TIMEOUT:g}); 0 never",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output on stderr")
    return parser


def start_logging(verbosity: int) -> None:
    level = {0: LogLevel.warn, 1: LogLevel.info}.get(verbosity, LogLevel.debug)
    predicate = LogLevelFilterPredicate(defaultLogLevel=level)
    observer = FilteringLogObserver(textFileLogObserver(sys.stderr), [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def raise_file_limit() -> None:
    """Use the hard limit on open files: each session and stream holds a few sockets, and
    the usual soft limit of 1024 (kept for select() users) would cap us near 300 sessions."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass  # keep the soft limit; running out is reported per connection


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    start_logging(args.verbose)
    raise_file_limit()
    if args.code_length < 1 or args.code_length > 32:
        build_parser().error("--code-length must be 1-32")
    if args.ping_interval is not None and not 0.1 <= args.ping_interval <= 3600:
        build_parser().error("--ping-interval must be 0.1-3600 seconds")
    for address in args.direct_address or ():
        try:
            ipaddress.ip_address(address)
        except ValueError:
            build_parser().error(f"--direct-address {address!r} is not an IP address")
    compat.advertise_direct_addresses(args.direct_address)
    if args.stdio:
        from fowld.stdio.main import run_stdio

        sys.exit(run_stdio(args))
    from fowld.daemon import run_daemon

    sys.exit(run_daemon(args))
