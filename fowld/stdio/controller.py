"""``fowld --stdio``: one session driven by JSON lines on stdin/stdout.

Every output line is one JSON object; logs go to stderr.

Output is flow-controlled: the controller is the producer of its stdout
transport, so when the program reading stdout falls behind (the pipe is
full and Twisted's buffer passes its limit) the controller is paused. While
paused, byte counts are added up per stream instead of written, one line per
stream and direction once the reader catches up: a reader that stops for good
costs a bounded amount of memory however much data flows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from fowld.daemon.pairings import PairingStore
from fowld.engine import events
from fowld.engine.endpoints import (
    EndpointError,
    connect_address_for_port,
    listen_address_for_port,
    parse_connect,
    parse_listen,
)
from fowld.engine.forwarder import ForwardingError
from fowld.engine.pairing import PairingRequest
from fowld.engine.session import Session, SessionError
from fowld.stdio.commands import MAX_LINE, CommandError, close_timeout, parse_command
from fowld.stdio.render import render_event, render_status


@implementer(IHalfCloseableProtocol, IPushProducer)
class StdioController(Protocol):
    """Reads commands from stdin, writes events to stdout, for one session."""

    def __init__(self, session: Session, on_done: Callable[[int], None]):
        self._session = session
        self._on_done = on_done
        self._watching = False
        self._line_number = 0
        self._buffer = b""
        self._discarding = False  # inside a line that was too long: drop it up to its end
        self._paused = False  # stdout's reader is behind
        self._held_bytes: dict[int, list[int]] = {}  # stream id -> [into, out of] while paused
        session.subscribe(self._event)
        session.when_closed().addCallback(self._closed)

    def connectionMade(self) -> None:
        self.transport.registerProducer(self, True)

    # output ------------------------------------------------------------------

    def send(self, message: dict) -> None:
        if self.transport is not None:
            self.transport.write(json.dumps(message).encode("utf-8") + b"\n")

    def _error(self, message: str) -> None:
        self.send({"kind": "error", "message": f"line {self._line_number}: {message}"})

    def _event(self, event: events.Event) -> None:
        if isinstance(event, events.StatusChanged):
            if self._watching:
                self.send(render_status(event.status))
            return
        if isinstance(event, events.StreamBytes) and self._paused:
            held = self._held_bytes.setdefault(event.id, [0, 0])
            held[0] += event.into_tunnel
            held[1] += event.out_of_tunnel
            return
        if isinstance(event, events.StreamClosed):
            self._release_bytes(event.id)  # its counts come before its end
        if isinstance(event, events.Paired):
            event = self._store_pairing(event)
        for line in render_event(event):
            self.send(line)

    def _store_pairing(self, event: events.Paired) -> events.Event:
        """Keep the pairing where the daemon finds it; a failure to write is what gets reported."""
        store = PairingStore()
        try:
            if store.exists(event.agreed.name):
                return events.PairingDeclined(f"a pairing named {event.agreed.name!r} exists already")
            store.store_new(event.agreed, self._session.config.mailbox_url)
        except OSError as e:
            return events.PairingDeclined(f"cannot write it: {e.strerror or e}")
        return event

    def _release_bytes(self, stream_id: int | None = None) -> None:
        ids = list(self._held_bytes) if stream_id is None else [stream_id]
        for held_id in ids:
            into, out = self._held_bytes.pop(held_id, (0, 0))
            for line in render_event(events.StreamBytes(held_id, into, out)):
                self.send(line)

    # IPushProducer, for stdout -------------------------------------------------

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._release_bytes()

    def stopProducing(self) -> None:
        self._paused = True

    # input -------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        # Not LineOnlyReceiver: it stops at an over-long line and drops what follows it in
        # the same read, and stdio must report that line and go on with the next ones.
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        for line in lines:
            if self._discarding:
                self._discarding = False  # the end of the over-long line
                continue
            self._line_number += 1
            if len(line) > MAX_LINE:
                self._error(f"longer than {MAX_LINE} bytes")
            else:
                self._line(line)
        if len(self._buffer) > MAX_LINE and not self._discarding:
            self._line_number += 1
            self._error(f"longer than {MAX_LINE} bytes")
            self._discarding = True
        if self._discarding:
            self._buffer = b""

    def _line(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            self._run(parse_command(line))
        except (CommandError, SessionError, ForwardingError, EndpointError) as e:
            self._error(str(e))

    def _run(self, command: dict) -> None:
        kind, session = command["kind"], self._session
        if command.get("pair") is not None:
            session.ask_pairing(PairingRequest(command["pair"]))
        if kind == "allocate-code":
            session.allocate_code(command.get("length"))
        elif kind == "set-code":
            session.set_code(command["code"])
        elif kind == "local":
            if command.get("listen") is not None:
                listen = parse_listen(command["listen"])
            else:
                listen = listen_address_for_port(
                    command.get("local_listen_port"), command.get("bind_interface")
                )
            session.add_client(command["name"], listen, command.get("remote_connect_port"))
        elif kind == "remote":
            if command.get("connect") is not None:
                address = parse_connect(command["connect"])
            elif command.get("local_connect_port") is not None:
                address = connect_address_for_port(
                    command["local_connect_port"], command.get("connect_address")
                )
            else:
                address = None  # connect where the peer asks, as upstream does
            session.add_service(
                command["name"], address, command.get("remote_listen_port"), command.get("connect_address")
            )
        elif kind == "remove-local":
            session.remove_client(command["name"])
        elif kind == "remove-remote":
            session.remove_service(command["name"])
        elif kind == "session-close":
            session.close(timeout=close_timeout(command))
        elif kind == "ping":
            self._ping(command["ping_id"])
        elif kind == "status":
            self._watching = bool(command.get("watch", self._watching))
            self.send(render_status(session.status))

    def _ping(self, ping_id: Any) -> None:
        def pong(seconds: float) -> None:
            self.send({"kind": "pong", "ping_id": ping_id, "time_of_flight": seconds})

        def failed(failure: Failure) -> None:
            self.send({"kind": "error", "message": f"ping {ping_id}: {failure.getErrorMessage()}"})

        self._session.ping().addCallbacks(pong, failed)

    # ending ------------------------------------------------------------------

    def readConnectionLost(self) -> None:
        # stdin closed: end the session gracefully (stdout stays open for "closed"), then exit
        self._session.close(reason="stdin closed")

    def writeConnectionLost(self) -> None:
        self._session.close(reason="stdout closed")

    def connectionLost(self, reason: Failure) -> None:
        self._session.close(reason="stdio closed")

    def _closed(self, result: str) -> None:
        self._release_bytes()
        self._on_done(0)
