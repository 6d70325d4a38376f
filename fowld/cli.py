"""The ``fowld`` command: the D-Bus daemon by default, or one session on stdio."""

from __future__ import annotations

import argparse
import ipaddress
import os
import resource
import sys
from pathlib import Path

from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

from fowld import __version__
from fowld.daemon.options import DAEMON_PEER_LOST_TIMEOUT, SessionOptions
from fowld.engine import rules
from fowld.engine.config import (
    DEFAULT_CODE_LENGTH,
    DEFAULT_MAILBOX,
    DEFAULT_PEER_LOST_TIMEOUT,
    DEFAULT_PING_INTERVAL,
    DEFAULT_TRANSIT_RELAY,
)

# Commands that set up the service rather than run it (fowld/install.py).
SETUP_COMMANDS = ("install", "uninstall")
# Options that describe the single session of --stdio; in the daemon each profile says.
_STDIO_ONLY = ("mailbox", "transit_relay", "embedded_mailbox")
MAX_PEER_LOST_TIMEOUT = 86400.0

EPILOG = """\
examples:
  fowld                                   run the D-Bus service (what systemd starts)
  fowld --stdio                           one session, JSON lines on stdin/stdout
  fowld --stdio --mailbox ws://127.0.0.1:4000/v1 --transit-relay tcp:127.0.0.1:4001
  fowld --stdio --embedded-mailbox tcp:4000   serve a mailbox in-process (offline/LAN)
  fowld install                           set up this fowld as your systemd user service
  fowld install --dry-run                 show what `fowld install` would write
  fowld uninstall                         stop it and remove what `fowld install` wrote

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
    parser.add_argument(
        "--code-length", type=int, default=DEFAULT_CODE_LENGTH, metavar="N", help="words in new codes"
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["daemon", *SETUP_COMMANDS],
        help="daemon: run the D-Bus service (the default without --stdio; what the systemd unit runs); "
        "install: write the systemd user unit (ExecStart= this fowld) and the D-Bus activation file, "
        "then reload your user manager; uninstall: stop the service and remove those files",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="install, uninstall: say what would change, change nothing"
    )
    parser.add_argument(
        "--force", action="store_true", help="install: replace unit files that `fowld install` did not write"
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
    if args.command in SETUP_COMMANDS:
        if args.stdio:
            build_parser().error(f"{args.command} takes no --stdio")
        if args.force and args.command != "install":
            build_parser().error("--force goes with install")
        from fowld import install

        sys.exit(install.main(args))
    if args.dry_run or args.force:
        build_parser().error("--dry-run and --force go with install and uninstall")
    start_logging(args.verbose)
    raise_file_limit()
    try:
        rules.check_code_length(args.code_length, "--code-length")
    except rules.RuleError as e:
        build_parser().error(str(e))
    if args.ping_interval is not None and not 0.1 <= args.ping_interval <= 3600:
        build_parser().error("--ping-interval must be 0.1-3600 seconds")
    for address in args.direct_address or ():
        try:
            ipaddress.ip_address(address)
        except ValueError:
            build_parser().error(f"--direct-address {address!r} is not an IP address")
    if args.direct_address:
        from fowld.wormhole.patches import advertise_direct_addresses

        advertise_direct_addresses(args.direct_address)
    if args.stdio:
        from fowld.stdio.main import run_stdio

        run_stdio(args)
    sys.exit(run_daemon(args))


def run_daemon(args: argparse.Namespace) -> int:
    """Serve ``org.fowl.Fowld1`` until SIGTERM; returns the process exit status."""
    from fowld.daemon.profiles import profiles_dir
    from fowld.dbus.app import run

    log = Logger()
    for name in _STDIO_ONLY:
        if getattr(args, name, None):
            option = "--" + name.replace("_", "-")
            log.warn("{option} is ignored by the daemon: each profile names its own", option=option)
    timeout = DAEMON_PEER_LOST_TIMEOUT if args.peer_lost_timeout is None else args.peer_lost_timeout
    if not 0 <= timeout <= MAX_PEER_LOST_TIMEOUT:
        print(f"fowld: --peer-lost-timeout must be 0-{MAX_PEER_LOST_TIMEOUT:g} seconds", file=sys.stderr)
        return 2
    options = SessionOptions(
        relay_only=args.relay_only,
        ping_interval=args.ping_interval,
        peer_lost_timeout=timeout or None,
    )
    return run(Path(args.profiles) if args.profiles else profiles_dir(), options)
