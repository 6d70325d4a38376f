"""Socket tuning (fowld/tuning.py) against the real kernel: a Nagle peer gets prompt ACKs.

The peer is a plain socket with Nagle on, as upstream fowl's Dilation socket is;
ours is a Twisted TCP transport tuned the way the Dilation connection is. Each
round mimics one echo through Dilation: a request, our reply (which puts our
socket into delayed-ACK "pingpong" mode), the peer's small ack record, then the
peer's next request, which its Nagle holds until we ACK that ack record.
"""

from __future__ import annotations

import socket
import statistics
import time

import pytest_twisted
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread
from twisted.logger import globalLogPublisher

from fowld.wormhole import tuning

LOOPBACK = "127.0.0.1"
REQUEST = 69  # bytes of a small Dilation data record
ACK_RECORD = 25  # bytes of a Dilation ack record
ROUNDS = 20
HELD_BOUND = 0.020  # seconds, median; a delayed ACK holds the request at least 40 ms
IO_TIMEOUT = 10.0


class _Replier(Protocol):
    """Answers every REQUEST bytes of b"r" with as many b"R"; ack records get no answer."""

    def connectionMade(self) -> None:
        tuning.tune_transport(self.transport)
        self.armed = tuning.ack_promptly(self.transport)
        self.factory.connections.append(self)
        self._pending = 0

    def dataReceived(self, data: bytes) -> None:
        self._pending += data.count(b"r")
        while self._pending >= REQUEST:
            self._pending -= REQUEST
            self.transport.write(b"R" * REQUEST)


def _recv_exactly(sock: socket.socket, size: int) -> None:
    received = 0
    while received < size:
        chunk = sock.recv(size - received)
        assert chunk, "our side closed the connection"
        received += len(chunk)


def _nagle_peer(port: int) -> list[float]:
    """Seconds from each next request to our reply, ROUNDS times; Nagle stays on here."""
    held = []
    with socket.create_connection((LOOPBACK, port), timeout=IO_TIMEOUT) as sock:
        for _ in range(ROUNDS):
            sock.sendall(b"r" * REQUEST)
            _recv_exactly(sock, REQUEST)
            sock.sendall(b"k" * ACK_RECORD)  # the peer acknowledges our reply
            time.sleep(0.001)  # the peer's app answers; its next request follows
            start = time.perf_counter()
            sock.sendall(b"r" * REQUEST)
            _recv_exactly(sock, REQUEST)
            held.append(time.perf_counter() - start)
    return held


@pytest_twisted.inlineCallbacks
def test_a_nagle_peer_is_not_held_by_our_delayed_ack():
    from twisted.internet import reactor

    factory = Factory.forProtocol(_Replier)
    factory.connections = []
    port = reactor.listenTCP(0, factory, interface=LOOPBACK)
    try:
        held = yield deferToThread(_nagle_peer, port.getHost().port)
    finally:
        yield port.stopListening()
    (ours,) = factory.connections
    assert ours.armed
    median = statistics.median(held)
    assert median < HELD_BOUND, f"the peer's requests waited {median * 1e3:.1f} ms (median)"


@pytest_twisted.inlineCallbacks
def test_arming_twice_wraps_the_read_once():
    from twisted.internet import reactor

    factory = Factory.forProtocol(_Replier)
    factory.connections = []
    port = reactor.listenTCP(0, factory, interface=LOOPBACK)
    try:
        with socket.create_connection((LOOPBACK, port.getHost().port), timeout=IO_TIMEOUT) as sock:
            while not factory.connections:
                yield deferToThread(time.sleep, 0.01)
            transport = factory.connections[0].transport
            wrapped = transport.doRead
            assert tuning.ack_promptly(transport)  # the Dilation status repeats for one connection
            assert transport.doRead is wrapped
            sock.sendall(b"r" * REQUEST)
            yield deferToThread(_recv_exactly, sock, REQUEST)  # reads still reach the protocol
    finally:
        yield port.stopListening()


def test_an_unreachable_socket_is_a_logged_no_op(monkeypatch):
    monkeypatch.setattr(tuning, "_warned_quickack", False)
    monkeypatch.setattr(tuning, "_warned", False)
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        assert tuning.ack_promptly(object()) is False
        assert tuning.tune_dilation_connection(object()) is False  # no Dilation manager
    finally:
        globalLogPublisher.removeObserver(events.append)
    formats = [event.get("log_format", "") for event in events]
    assert any("TCP_QUICKACK" in text for text in formats), formats
    assert any("cannot reach the Dilation connection" in text for text in formats), formats
