"""The ``fowlctl`` command line: parse arguments, run one command, exit with a meaningful code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from functools import partial

from fowlctl import adhoc, commands, forwards, pairings
from fowlctl.output import Output
from fowlctl.runner import run_async
from fowld import __version__

EXIT_CODES = """\
exit codes:
  0  success
  1  fowld refused or failed the request, the session failed, or a profile is invalid
  2  bad command line
  3  no session bus, or fowld is not running on it
  4  timed out (--timeout, nobody answered accept's code, or fowld did not answer)
  130  interrupted while waiting (the session keeps running)
"""

MAIN_EPILOG = f"""\
examples:
  fowlctl invite --offer ssh=tcp:localhost:22   share my SSH server; prints the code for the peer
  fowlctl accept 7-crossover-clockwork --want ssh=2222   the peer's SSH server at localhost:2222
  fowlctl invite ssh-share          start a session from a profile, print the code
  fowlctl accept ssh-join 7-crossover-clockwork
  fowlctl want 3 web 8080           one more forward in session 3 (also: offer, withdraw, unwant)
  fowlctl list                      every session, one line each
  fowlctl status 3                  details of session ssh-share-3 (id, number or prefix)
  fowlctl watch --json              live events as JSON lines
  fowlctl check ~/.config/fowl/profiles/*.yaml
  fowlctl invite ssh-share --pair bob   pair once; later `peer: bob` meets with no code
  fowlctl pairings                  the peers this computer meets again

Run `fowlctl COMMAND --help` for each command's own examples.

{EXIT_CODES}"""

ANSWER_TIMEOUT = 60.0  # seconds accept waits for a peer to answer the code at all
SESSION_HELP = "session id: the full id (ssh-share-3), its number (3), or a unique prefix (ssh-s)"
WAIT_EPILOG = """\
Without --no-wait, fowlctl waits until the peer is connected, then shows the
verifier (compare it with your peer's: if both match, nobody is in the middle)
and what is forwarded. With --json, it prints one JSON line when the session
starts and one when it is connected.
"""

# name -> (one-line help, epilog with examples)
COMMANDS: dict[str, tuple[str, str]] = {
    "invite": (
        "start a session and print a new code for your peer",
        f"""\
Give either a PROFILE (a file in ~/.config/fowl/profiles) or the forwards
themselves with --offer and --want; no file is needed then.
On a terminal the code is also shown as a QR code (--no-qr turns it off).
{WAIT_EPILOG}
examples:
  fowlctl invite --offer ssh=tcp:localhost:22   let the peer reach my SSH server
  fowlctl invite --want web=8080                reach the peer's web service at localhost:8080
  fowlctl invite --offer ssh=22 --mailbox ws://192.168.1.5:4000/v1
  fowlctl invite ssh-share                      the forwards of the profile ssh-share
  fowlctl invite ssh-share --timeout 300        give up (and close the session) after 5 minutes
  fowlctl invite ssh-share --no-wait --json     print {{"code": ..., "session": ...}} and return
""",
    ),
    "accept": (
        "join a peer's session with the CODE they gave you",
        f"""\
One word is the CODE; two words are PROFILE CODE. A code starts with a number
and a dash (7-crossover-clockwork). Without a PROFILE, say what to forward
with --want and --offer.
{WAIT_EPILOG}
examples:
  fowlctl accept 7-crossover-clockwork --want ssh=2222   the peer's ssh at localhost:2222
  fowlctl accept 7-crossover-clockwork --want ssh        on a free port, shown once connected
  fowlctl accept ssh-join 7-crossover-clockwork          the forwards of the profile ssh-join
  fowlctl accept web-preview 12-alpha-bravo --timeout 60
""",
    ),
    "start": (
        "start a profile that has a fixed code",
        f"""\
{WAIT_EPILOG}
examples:
  fowlctl start review            uses the `code:` written in review.yaml
  fowlctl start review --no-wait
""",
    ),
    "offer": (
        "offer the peer of a running session one more service",
        """\
ADDR is where the peer's streams for NAME end, as a profile's `connect`:
tcp:HOST:PORT, HOST:PORT, PORT (on localhost) or unix:path=FILE. The peer
reaches it once it wants NAME (fowlctl want SESSION NAME on its side).

examples:
  fowlctl offer adhoc-1 web tcp:localhost:8000
  fowlctl offer 3 db unix:path=/run/postgresql/.s.PGSQL.5432
""",
    ),
    "want": (
        "listen for one more of the peer's services in a running session",
        """\
LISTEN is where local programs connect, as a profile's `listen`: PORT,
tcp:PORT[:interface=ADDR] (loopback unless told) or unix:path=FILE. Without
LISTEN, a free loopback port, shown once the peer offers NAME.

examples:
  fowlctl want adhoc-1 web 8080
  fowlctl want 3 web              a free port; `fowlctl status 3` shows it
""",
    ),
    "withdraw": (
        "stop offering a service in a running session",
        """\
Connections already open through the service are closed.

examples:
  fowlctl withdraw adhoc-1 web
""",
    ),
    "unwant": (
        "stop listening for one of the peer's services in a running session",
        """\
The listener closes, and with it the connections made through it.

examples:
  fowlctl unwant adhoc-1 web
""",
    ),
    "list": (
        "list sessions: id, profile, state, peer path, connections, bytes",
        """\
BYTES shows bytes read from local programs into the tunnel (in) and bytes
written from the tunnel to local programs (out).

examples:
  fowlctl list
  fowlctl list --json | jq '.sessions[].id'
""",
    ),
    "status": (
        "show everything about one session, or about all of them",
        """\
examples:
  fowlctl status                  all sessions
  fowlctl status ssh-share-3      one session; also `status 3` or `status ssh-s`
  fowlctl status 3 --json
""",
    ),
    "close": (
        "close a session (its peer sees it end)",
        """\
examples:
  fowlctl close ssh-share-3
  fowlctl close 3
""",
    ),
    "ping": (
        "measure the round trip to a session's peer",
        """\
examples:
  fowlctl ping 3
  fowlctl ping ssh-share-3 --json
""",
    ),
    "watch": (
        "print fowld's events live, one line each, until Ctrl-C",
        """\
Events: sessions added and removed, state changes, connections opened and
closed, and fowld itself starting or stopping. Each line starts with the time.

examples:
  fowlctl watch
  fowlctl watch --json            JSON lines: {"time", "event", "session", ...}
""",
    ),
    "top": (
        "a live view of sessions and connections, with rates and totals (on a terminal)",
        """\
Redraws every second (--interval): each session with its state, peer path,
connections (open/all), rates and totals in and out, and beneath it each
open connection with its own. Ctrl-C quits. For scripts, use `fowlctl watch
--json` or `fowlctl list --json`: top draws only on a terminal.

examples:
  fowlctl top
  fowlctl top --interval 5
""",
    ),
    "profiles": (
        "list the profiles fowld loaded, and the files it could not load",
        """\
examples:
  fowlctl profiles
  fowlctl profiles --json
""",
    ),
    "reload": (
        "make fowld read its profiles again",
        """\
Sessions of unchanged profiles are untouched. Sessions of changed or removed
profiles keep running with the settings they started with; close them and
start them again to use the new settings.

examples:
  fowlctl reload
""",
    ),
    "check": (
        "validate profile files offline (fowld is not needed)",
        """\
Each invalid file is reported on stderr as FILE:LINE: problem, and the exit
code is 1 if any file is invalid. Valid files are summarised on stdout.

examples:
  fowlctl check ~/.config/fowl/profiles/*.yaml
  fowlctl invite ssh-share --pair bob   pair once; later `peer: bob` meets with no code
  fowlctl pairings                  the peers this computer meets again
  fowlctl check share.yaml --json
""",
    ),
}

COMMANDS.update(pairings.COMMANDS)

HANDLERS: dict[str, Callable[[commands.Context], object]] = {
    "pairings": pairings.pairings,
    "forget": pairings.forget,
    "invite": commands.invite,
    "accept": commands.accept,
    "start": commands.start,
    "list": commands.list_sessions,
    "status": commands.status,
    "close": commands.close,
    "ping": commands.ping,
    "watch": commands.watch,
    "top": commands.top,
    **{name: partial(forwards.change, command=name) for name in forwards.CHANGES},
    "profiles": commands.profiles,
    "reload": commands.reload,
}


def _common_options(suppress: bool) -> argparse.ArgumentParser:
    # Accepted before and after the command; SUPPRESS keeps a subcommand from
    # overwriting what was given before it.
    default = argparse.SUPPRESS if suppress else None
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="machine-readable output (stable keys)",
    )
    common.add_argument(
        "--bus",
        metavar="ADDRESS",
        default=default,
        help="D-Bus address of the session bus (default: $DBUS_SESSION_BUS_ADDRESS)",
    )
    return common


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fowlctl",
        description="Control fowld, which forwards TCP and UNIX streams between two computers.",
        epilog=MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common_options(suppress=False)],
    )
    parser.add_argument("--version", action="version", version=f"fowlctl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _common_options(suppress=True)
    made = {}
    for name, (help_text, epilog) in COMMANDS.items():
        made[name] = sub.add_parser(
            name,
            help=help_text,
            description=help_text[0].upper() + help_text[1:] + ".",
            epilog=epilog + (pairings.START_OPTIONS_EPILOG if name in ("invite", "accept") else ""),
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[common],
        )
    made["invite"].add_argument(
        "profile", metavar="PROFILE", nargs="?", help="profile name; or use --offer/--want"
    )
    made["accept"].add_argument(
        "profile", metavar="PROFILE", nargs="?", help="profile name; or use --want/--offer"
    )
    made["accept"].add_argument("code", metavar="CODE", help=adhoc.CODE_HELP)
    made["start"].add_argument("profile", metavar="PROFILE", help="profile name (see `fowlctl profiles`)")
    for name in ("invite", "accept"):
        adhoc.add_inline_options(made[name])
    made["accept"].add_argument(
        "--answer-timeout",
        type=_positive_seconds,
        default=ANSWER_TIMEOUT,
        metavar="SECONDS",
        help="give up (and close the session) when no peer has answered the code within SECONDS, "
        f"as when nobody is waiting with it (default {ANSWER_TIMEOUT:g})",
    )
    made["invite"].add_argument(
        "--no-qr", action="store_true", help="do not show the code as a QR code (shown only on a terminal)"
    )
    for name in ("invite", "accept", "start"):
        p = made[name]
        p.add_argument("--no-wait", action="store_true", help="return once the session has started")
        p.add_argument(
            "--timeout",
            type=_positive_seconds,
            metavar="SECONDS",
            help="stop waiting after SECONDS and close the session (default: wait until Ctrl-C)",
        )
        if name in ("invite", "accept"):
            pairings.add_start_options(p)
    pairings.add_commands(made)
    made["status"].add_argument("session", metavar="SESSION", nargs="?", help=SESSION_HELP)
    for name in ("close", "ping"):
        made[name].add_argument("session", metavar="SESSION", help=SESSION_HELP)
    for name in forwards.CHANGES:
        made[name].add_argument("session", metavar="SESSION", help=SESSION_HELP)
        made[name].add_argument("name", metavar="NAME", help="the service's name, as both sides call it")
    made["offer"].add_argument("address", metavar="ADDR", help="where the peer's streams end")
    made["want"].add_argument("listen", metavar="LISTEN", nargs="?", help="where local programs connect")
    made["top"].add_argument(
        "--interval", type=_positive_seconds, default=1.0, metavar="SECONDS", help="seconds between redraws"
    )
    made["check"].add_argument("files", metavar="FILE", nargs="+", help="profile files (NAME.yaml)")
    return parser


def _command_parser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The parser of one command, whose errors show that command's usage."""
    commands_action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return commands_action.choices[name]


def main(argv: Sequence[str] | None = None, reactor=None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("invite", "accept"):
        adhoc.resolve(_command_parser(parser, args.command), args)
    out = Output(json_mode=args.json)
    if args.command == "top" and not out.is_terminal():
        _command_parser(parser, "top").error(
            "top draws on a terminal; for scripts use `fowlctl watch --json` or `fowlctl list --json`"
        )
    if args.command == "check":
        sys.exit(commands.check(args, out))
    if reactor is None:
        from twisted.internet import reactor
    run_async(HANDLERS[args.command], commands.Context(args, out, reactor))
