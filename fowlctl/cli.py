"""The ``fowlctl`` command line: parse arguments, run one command, exit with a meaningful code."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Sequence

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.task import react
from twisted.python.failure import Failure

from fowlctl import commands, pairings
from fowlctl.errors import CtlError, ExitCode
from fowlctl.output import Output

EXIT_CODES = """\
exit codes:
  0  success
  1  fowld refused or failed the request, the session failed, or a profile is invalid
  2  bad command line
  3  no session bus, or fowld is not running on it
  4  timed out (--timeout, or fowld did not answer)
  130  interrupted while waiting (the session keeps running)
"""

MAIN_EPILOG = f"""\
examples:
  fowlctl invite ssh-share          start a session, print the code to give your peer
  fowlctl accept ssh-join 7-crossover-clockwork
  fowlctl list                      every session, one line each
  fowlctl status 3                  details of session ssh-share-3 (id, number or prefix)
  fowlctl watch --json              live events as JSON lines
  fowlctl check ~/.config/fowl/profiles/*.yaml
  fowlctl invite ssh-share --pair bob   pair once; later `peer: bob` meets with no code
  fowlctl pairings                  the peers this computer meets again

Run `fowlctl COMMAND --help` for each command's own examples.

{EXIT_CODES}"""

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
        "start a session from PROFILE and print a new code for your peer",
        f"""\
{WAIT_EPILOG}
examples:
  fowlctl invite ssh-share                  print the code, wait for the peer
  fowlctl invite ssh-share --timeout 300    give up (and close the session) after 5 minutes
  fowlctl invite ssh-share --no-wait --json print {{"code": ..., "session": ...}} and return
""",
    ),
    "accept": (
        "join a peer's session with the CODE they gave you",
        f"""\
{WAIT_EPILOG}
examples:
  fowlctl accept ssh-join 7-crossover-clockwork
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
    for name in ("invite", "accept", "start"):
        p = made[name]
        p.add_argument("profile", metavar="PROFILE", help="profile name (see `fowlctl profiles`)")
        if name == "accept":
            p.add_argument(
                "code", metavar="CODE", help="the code your peer gave you, e.g. 7-crossover-clockwork"
            )
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
    made["check"].add_argument("files", metavar="FILE", nargs="+", help="profile files (NAME.yaml)")
    return parser


def run_async(command: Callable[[commands.Context], object], ctx: commands.Context) -> None:
    """Run one async command on the reactor and exit with its code.

    SIGINT and SIGTERM cancel the command where it waits (each command decides what
    that means: ``watch`` ends quietly with 0, a wait for a peer says the session keeps
    running); they never stop the reactor under it.
    """

    async def main(reactor) -> None:
        d = ensureDeferred(command(ctx))

        def cancel(signum: int, frame: object) -> None:
            reactor.callFromThread(d.cancel)

        def take_signals() -> None:  # once running: the reactor installs its own handlers first
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, cancel)

        reactor.callWhenRunning(take_signals)
        try:
            result = await d
        except BaseException:
            raise SystemExit(_report_failure(Failure(), ctx.out)) from None
        raise SystemExit(int(result))

    def start(reactor):
        return Deferred.fromCoroutine(main(reactor))

    react(start, _reactor=ctx.reactor)


def _report_failure(failure, out: Output) -> int:
    error = failure.value
    if isinstance(error, CancelledError):
        out.tell("fowlctl: interrupted")
        return ExitCode.INTERRUPTED
    if not isinstance(error, CtlError):
        out.tell(f"fowlctl: unexpected error: {failure.getTraceback()}")
        return ExitCode.FAILED
    return report_error(error, out)


def report_error(error: CtlError, out: Output) -> int:
    out.tell(f"fowlctl: {error.message}")
    if out.json_mode:
        out.result(
            "", {"error": {"name": error.name, "message": error.message, "exit_code": int(error.exit_code)}}
        )
    return int(error.exit_code)


def main(argv: Sequence[str] | None = None, reactor=None) -> None:
    args = build_parser().parse_args(argv)
    out = Output(json_mode=args.json)
    if args.command == "check":
        sys.exit(commands.check(args, out))
    if reactor is None:
        from twisted.internet import reactor
    run_async(HANDLERS[args.command], commands.Context(args, out, reactor))
