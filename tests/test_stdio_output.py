"""``fowld --stdio`` output under a reader that stops: bounded memory, exact counts.

A real pipe and Twisted's real StandardIO transport; the session is a real
(unstarted) engine session whose event fan-out feeds the controller.
"""

from __future__ import annotations

import json
import os

import pytest_twisted
from twisted.internet import stdio, task

from fowld.engine import events
from fowld.engine.config import SessionConfig
from fowld.engine.session import Session
from fowld.stdio.controller import StdioController
from harness.wait import eventually, get_reactor

STREAMS = 8
EVENTS = 100_000
CHUNK = 1000  # bytes per direction in each event
BOUND = 1 << 20  # what the transport may hold for a reader that stopped


def _buffered(transport: stdio.StandardIO) -> int:
    writer = transport._writer
    return len(writer.dataBuffer) - writer.offset + writer._tempDataLen


@pytest_twisted.ensureDeferred
async def test_a_reader_that_stops_costs_bounded_memory_and_loses_no_count():
    reactor = get_reactor()
    session = Session(SessionConfig(mailbox_url="ws://127.0.0.1:9/v1"), reactor)  # never started
    stdin_read, stdin_write = os.pipe()
    stdout_read, stdout_write = os.pipe()
    os.set_blocking(stdout_read, False)
    controller = StdioController(session, lambda code: None)
    transport = stdio.StandardIO(controller, stdin=stdin_read, stdout=stdout_write, reactor=reactor)
    try:
        most = 0
        for i in range(EVENTS):
            session._emit(events.StreamBytes(i % STREAMS, CHUNK, CHUNK))
            if i % 500 == 0:
                await task.deferLater(reactor, 0, lambda: None)  # the writer runs, fills the pipe
                most = max(most, _buffered(transport))
        most = max(most, _buffered(transport))
        # Nobody read stdout: without flow control this would be ~10 MB of lines.
        assert most < BOUND, most

        totals = {"bytes-in": 0, "bytes-out": 0}
        expected = EVENTS * CHUNK
        pending = [b""]

        def all_counted() -> bool:
            """Read what the pipe holds now (the writer refills it between polls) and count it."""
            for _ in range(1000):
                try:
                    pending[0] += os.read(stdout_read, 1 << 16)
                except BlockingIOError:
                    break
            *lines, pending[0] = pending[0].split(b"\n")
            for line in lines:
                message = json.loads(line)
                totals[message["kind"]] += message["bytes"]
            return (totals["bytes-in"], totals["bytes-out"]) == (expected, expected)

        await eventually(all_counted, lambda: f"every byte counted (so far {totals})", 20, 0.01)
        assert totals == {"bytes-in": expected, "bytes-out": expected}  # every byte counted once
    finally:
        transport.loseConnection()
        for fd in (stdin_write, stdout_read):
            os.close(fd)
