"""Running ``fowld --stdio``: one session, its JSON-lines controller and the reactor."""

from __future__ import annotations

import argparse

from twisted.internet import reactor as default_reactor
from twisted.internet import stdio
from twisted.internet.defer import ensureDeferred

from fowld.engine.config import (
    DEFAULT_MAILBOX,
    DEFAULT_PEER_LOST_TIMEOUT,
    DEFAULT_PING_INTERVAL,
    DEFAULT_TRANSIT_RELAY,
)
from fowld.engine.session import Session, SessionConfig
from fowld.stdio.protocol import StdioController


def config_from_args(args: argparse.Namespace, mailbox_url: str | None = None) -> SessionConfig:
    relay = args.transit_relay or DEFAULT_TRANSIT_RELAY
    return SessionConfig(
        mailbox_url=mailbox_url or args.mailbox or DEFAULT_MAILBOX,
        transit_relay=None if relay.lower() == "none" else relay,
        code_length=args.code_length,
        relay_only=args.relay_only,
        ping_interval=args.ping_interval or DEFAULT_PING_INTERVAL,
        peer_lost_timeout=(
            DEFAULT_PEER_LOST_TIMEOUT if args.peer_lost_timeout is None else args.peer_lost_timeout or None
        ),
    )


def run_stdio(args: argparse.Namespace, reactor=default_reactor) -> int:
    exit_code: list[int] = []

    def done(code: int) -> None:
        exit_code.append(code)
        if reactor.running:
            reactor.callLater(0, reactor.stop)  # let the "closed" line reach stdout

    async def start() -> None:
        mailbox_url = None
        if args.embedded_mailbox:
            from fowld.wormhole.mailbox import start_embedded_mailbox

            embedded = await start_embedded_mailbox(reactor, args.embedded_mailbox)
            reactor.addSystemEventTrigger("before", "shutdown", embedded.stop)
            mailbox_url = args.mailbox or embedded.url
        session = Session(config_from_args(args, mailbox_url), reactor)
        controller = StdioController(session, done)
        session.startService()
        stdio.StandardIO(controller, reactor=reactor)

    def failed(failure) -> None:
        import sys

        print(f"fowld: {failure.getErrorMessage()}", file=sys.stderr)
        exit_code.append(2)
        reactor.stop()

    reactor.callWhenRunning(lambda: ensureDeferred(start()).addErrback(failed))
    reactor.run()
    return exit_code[0] if exit_code else 1
