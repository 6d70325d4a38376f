"""Honest endings: a stream cut by anything but its own side's close must not look complete.

Two real ``fowld --stdio`` processes on loopback; a program pushes bytes
through one side's listener into a sink behind the other side's service, and
the session ends under the live stream. Both local sockets must be reset (the
program sees an error, never an end of file), the stream must be reported
lost before ``closed``, and a session that gave up must not say "happy".
"""

from __future__ import annotations

import signal
import time

import pytest

from harness.peers import Pusher, Sink, explained

pytestmark = pytest.mark.timeout(90)

LOOPBACK = "127.0.0.1"
FLOWING = 1_000_000  # bytes through the stream before the session is ended under it


def _live_stream(a, b) -> tuple[Sink, Pusher]:
    """A stream from a program at ``b`` to a sink behind ``a``'s service, with bytes flowing."""
    sink = Sink()
    a.send("remote", name="sink", local_connect_port=sink.port)
    b.send("local", name="sink")
    port = b.wait_kind("listening", name="sink")["listening_port"]
    a.wait_kind("awaiting-connect", name="sink")
    pusher = Pusher((LOOPBACK, port))
    deadline = time.monotonic() + 20
    while sink.bytes < FLOWING:
        assert time.monotonic() < deadline, f"only {sink.bytes} bytes arrived"
        time.sleep(0.05)
    return sink, pusher


def _lost_before_closed(peer, kind: str) -> dict:
    lost = peer.wait_kind(kind)
    peer.wait_kind("closed")
    kinds = [line["kind"] for line in peer.lines]
    assert kinds.index(kind) < kinds.index("closed"), peer.describe()
    return lost


def test_a_lost_peer_resets_both_ends_and_is_no_success(connected):
    a, b = connected("--ping-interval", "1", "--peer-lost-timeout", "4")
    sink, pusher = _live_stream(a, b)
    a.process.send_signal(signal.SIGSTOP)
    try:
        with explained(a, b):
            assert pusher.wait(30) == "reset"  # the writing program is told, not left hanging
            lost = _lost_before_closed(b, "outgoing-lost")
            assert "peer lost" in lost["reason"], lost
            b.wait_kind("outgoing-done", id=lost["id"])
            assert b.wait_exit() == 0
            closed = b.lines[-1]
            assert closed["kind"] == "closed" and closed["result"].startswith("failed: peer lost"), closed
    finally:
        a.process.send_signal(signal.SIGCONT)
    # The sleeper wakes to a peer that gave up: its end of the stream is reset too.
    with explained(a, b):
        assert sink.wait(30) == "reset", f"the sink saw {sink.ended} after {sink.bytes} bytes"
        lost = _lost_before_closed(a, "incoming-lost")
        assert lost["service_name"] == "sink", lost
        assert a.wait_exit() == 0
    pusher.close()
    sink.stop()


def test_closing_the_session_under_a_stream_resets_it_on_both_sides(connected):
    a, b = connected()
    sink, pusher = _live_stream(a, b)
    b.send("session-close")
    with explained(a, b):
        assert pusher.wait(20) == "reset"
        assert sink.wait(20) == "reset", f"the sink saw {sink.ended} after {sink.bytes} bytes"
        lost = _lost_before_closed(b, "outgoing-lost")
        assert "session ended: closed locally" in lost["reason"], lost
        _lost_before_closed(a, "incoming-lost")
        for peer in (a, b):
            assert peer.wait_exit() == 0
    pusher.close()
    sink.stop()
