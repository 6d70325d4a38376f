"""Running one asynchronous command on the reactor, and turning its failure into an exit code."""

from __future__ import annotations

import signal
from collections.abc import Callable

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.task import react
from twisted.python.failure import Failure

from fowlctl import commands
from fowlctl.errors import CtlError, ExitCode
from fowlctl.output import Output


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
