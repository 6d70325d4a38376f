"""Running ``fowld --stdio``: one session, its JSON-lines controller and the reactor.

SIGTERM and SIGINT close the session gracefully: the reactor's shutdown
waits for the peer to hear our ``closing`` (bounded by the close timeout),
the ``closed`` line is written, and the process exits with status 0.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from twisted.internet import stdio, task
from twisted.internet.defer import Deferred

from fowld.engine.config import (
    CLOSE_TIMEOUT,
    DEFAULT_MAILBOX,
    DEFAULT_PEER_LOST_TIMEOUT,
    DEFAULT_PING_INTERVAL,
    DEFAULT_TRANSIT_RELAY,
)
from fowld.engine.session import Session, SessionConfig
from fowld.stdio.controller import StdioController


def config_from_args(args: argparse.Namespace, mailbox_url: str | None = None) -> SessionConfig:
    relay = args.transit_relay or DEFAULT_TRANSIT_RELAY
    return SessionConfig(
        mailbox_url=mailbox_url or args.mailbox or DEFAULT_MAILBOX,
        transit_relay=None if relay.lower() == "none" else relay,
        code_length=args.code_length,
        relay_only=args.relay_only,
        ping_interval=args.ping_interval or DEFAULT_PING_INTERVAL,
        peer_lost_timeout=(
            DEFAULT_PEER_LOST_TIMEOUT if args.peer_lost_timeout is None else args.peer_lost_timeout
        )
        or None,
    )


async def _serve(reactor: Any, args: argparse.Namespace) -> None:
    mailbox_url = None
    if args.embedded_mailbox:
        from fowld.mailbox import start_embedded_mailbox  # only then is the server imported

        try:
            embedded = await start_embedded_mailbox(reactor, args.embedded_mailbox)
        except Exception as e:
            print(f"fowld: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        reactor.addSystemEventTrigger("before", "shutdown", embedded.stop)
        mailbox_url = args.mailbox or embedded.url
    session = Session(config_from_args(args, mailbox_url), reactor)
    done: Deferred = Deferred()
    controller = StdioController(session, lambda code: done.called or done.callback(code))
    session.startService()
    stdio.StandardIO(controller, reactor=reactor)

    def stopping() -> Deferred:
        # a signal (or anything else) stops the reactor: close first, then let "closed" reach stdout
        closed = session.close(timeout=CLOSE_TIMEOUT, reason="fowld was stopped")
        return closed.addBoth(lambda _: task.deferLater(reactor, 0, lambda: None))

    reactor.addSystemEventTrigger("before", "shutdown", stopping)
    await done
    await task.deferLater(reactor, 0, lambda: None)  # let the "closed" line reach stdout


def run_stdio(args: argparse.Namespace) -> None:
    """Serve one session until it closes; exits the process (0, or 2 when it cannot start)."""
    task.react(lambda reactor: Deferred.fromCoroutine(_serve(reactor, args)))
