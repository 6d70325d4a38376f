"""Running one asynchronous command on the reactor, and turning its failure into an exit code."""

from __future__ import annotations

import signal
from collections.abc import Callable

from twisted.internet.defer import CancelledError, ensureDeferred

from fowlctl import commands
from fowlctl.errors import CtlError, ExitCode
from fowlctl.output import Output


def run_async(command: Callable[[commands.Context], object], ctx: commands.Context) -> int:
    """Run one async command on the reactor; Ctrl-C cancels it (commands decide what that means)."""
    reactor = ctx.reactor
    outcome: list = []

    def start() -> None:
        d = ensureDeferred(command(ctx))
        # Ctrl-C cancels the command where it waits, instead of stopping the reactor under it.
        signal.signal(signal.SIGINT, lambda *_: reactor.callFromThread(d.cancel))
        d.addBoth(finish)

    def finish(result) -> None:
        outcome.append(result)
        reactor.stop()

    reactor.callWhenRunning(start)
    reactor.run()
    if not outcome:  # stopped by a signal other than SIGINT
        return ExitCode.INTERRUPTED
    result = outcome[0]
    if isinstance(result, int):
        return int(result)
    return _report_failure(result, ctx.out)


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
