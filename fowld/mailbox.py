"""An embedded Magic Wormhole mailbox server.

Two fowld peers only need a mailbox to meet; for offline or LAN use, demos and
tests fowld can run one in-process instead of relying on a public server. It
keeps its channels in memory and records no usage statistics.

Run it on its own with ``python -m fowld.mailbox --listen tcp:4000``: it prints
the URL peers should use and serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
import time

from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.internet.task import deferLater, react
from twisted.logger import Logger
from twisted.protocols.policies import WrappingFactory
from twisted.python.failure import Failure
from wormhole_mailbox_server.database import create_channel_db
from wormhole_mailbox_server.server import make_server
from wormhole_mailbox_server.web import make_web_server

from fowld.engine.endpoints import (
    LOOPBACK_V4,
    LOOPBACK_V6,
    Address,
    EndpointError,
    parse_listen,
    server_endpoint,
)

DEFAULT_LISTEN = "tcp:4000:interface=127.0.0.1"
# Channels idle this long are forgotten; checked every PRUNE_INTERVAL seconds.
CHANNEL_LIFETIME = 11 * 60.0
PRUNE_INTERVAL = 5 * 60.0
_WILDCARDS = {"0.0.0.0": LOOPBACK_V4, "::": LOOPBACK_V6}

_log = Logger()


def mailbox_url(host: str, port: int) -> str:
    """The WebSocket URL clients use for a mailbox bound to ``host:port``.

    A wildcard bind is reachable through loopback on this machine, so the URL
    names loopback; peers elsewhere put this machine's address in its place.
    """
    host = _WILDCARDS.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"ws://{host}:{port}/v1"


def parse_mailbox_listen(listen: str) -> Address:
    """Validate where a mailbox listens: a TCP endpoint, loopback by default."""
    address = parse_listen(listen)
    if address.kind not in ("tcp", "tcp6"):
        raise EndpointError(
            f"mailbox listen address {listen!r}: clients reach a mailbox over TCP,"
            " use tcp:PORT[:interface=ADDRESS]"
        )
    return address


class EmbeddedMailbox(MultiService):
    """A mailbox server as a Twisted service, listening on one TCP endpoint.

    ``url`` is None until the service listens; ``when_ready()`` fires with it.
    """

    def __init__(self, reactor, listen: str = DEFAULT_LISTEN):
        super().__init__()
        self._endpoint = server_endpoint(reactor, parse_mailbox_listen(listen))
        self._server = make_server(create_channel_db(":memory:"))
        self._server.setServiceParent(self)
        pruner = TimerService(PRUNE_INTERVAL, self._prune)
        pruner.clock = reactor
        pruner.setServiceParent(self)
        # Wrapped so that stopping can drop every client, not only those inside a mailbox.
        self._connections = WrappingFactory(make_web_server(self._server, log_requests=False))
        self._port = None
        self._outcome: str | Failure | None = None
        self._waiters: list[Deferred] = []
        self.url: str | None = None

    def when_ready(self) -> Deferred:
        """A Deferred firing with the URL once listening, or failing if listening failed."""
        d = Deferred()
        if self._outcome is None:
            self._waiters.append(d)
        else:
            self._deliver(d)
        return d

    def _deliver(self, d: Deferred) -> None:
        if isinstance(self._outcome, Failure):
            d.errback(self._outcome)
        else:
            d.callback(self._outcome)

    def _settle(self, outcome: str | Failure) -> None:
        self._outcome = outcome
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            self._deliver(d)

    def _listening(self, port) -> None:
        self._port = port
        bound = port.getHost()
        self.url = mailbox_url(bound.host, bound.port)
        self._settle(self.url)

    def startService(self) -> None:
        super().startService()
        self._outcome = None
        d = self._endpoint.listen(self._connections)
        d.addCallbacks(self._listening, self._settle)

    def stopService(self) -> Deferred:
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        if self._port is not None:
            port, self._port = self._port, None
            await maybeDeferred(port.stopListening)
        await super().stopService()  # the server and its pruning timer
        # The server keeps its clients open when stopped; drop them so none outlive it.
        for wrapper in list(self._connections.protocols):
            wrapper.transport.abortConnection()
        self.url = None

    def stop(self) -> Deferred:
        return self.stopService()

    def _prune(self) -> None:
        now = time.time()
        try:
            self._server.prune_all_apps(now, now - CHANNEL_LIFETIME)
        except Exception:
            # A failed sweep must not end the timer: the next one may succeed.
            _log.failure("pruning idle mailbox channels failed")


async def start_embedded_mailbox(reactor, listen: str = DEFAULT_LISTEN) -> EmbeddedMailbox:
    """Start a mailbox on ``listen`` (loopback unless an interface is given)."""
    mailbox = EmbeddedMailbox(reactor, listen)
    mailbox.startService()
    try:
        await mailbox.when_ready()
    except Exception:
        await mailbox.stop()
        raise
    return mailbox


async def _serve(reactor, listen: str) -> None:
    # react() calls this before the reactor runs; announce the URL only once it does, so that
    # its SIGTERM handler is in place for whoever reads the URL and then stops us.
    await deferLater(reactor, 0, lambda: None)
    try:
        mailbox = await start_embedded_mailbox(reactor, listen)
    except CannotListenError as e:
        print(f"fowld mailbox: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    print(mailbox.url, flush=True)
    finished = Deferred()

    async def shut_down() -> None:
        await mailbox.stop()
        finished.callback(None)

    reactor.addSystemEventTrigger("before", "shutdown", lambda: ensureDeferred(shut_down()))
    await finished


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m fowld.mailbox",
        description="Run a Magic Wormhole mailbox server (in memory) for fowld peers.",
    )
    parser.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        help="Twisted endpoint to listen on, loopback unless an interface is given"
        f" (default: {DEFAULT_LISTEN})",
    )
    args = parser.parse_args(argv)
    try:
        address = parse_mailbox_listen(args.listen)
    except EndpointError as e:
        parser.error(str(e))
    react(_serve, (address.spec,))


if __name__ == "__main__":
    main()
