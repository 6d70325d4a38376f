"""``fowld --stdio`` against upstream fowl 26.8's ``fowld``, in both roles.

Upstream runs from its own interpreter (``$FOWL_UPSTREAM_PYTHON``, default the
repository's ``.venv-upstream``); the tests skip when it is missing. Its known
defects are avoided, never relied on: it ignores stdin EOF (it is stopped by
PID), binds random-port listeners to 0.0.0.0 (we connect to 127.0.0.1 only),
refuses a service requested before it declared the client (it declares first),
refuses streams for its own service until it has handled our listener response
(we wait for its "awaiting-connect") and cannot answer ``ping``.
"""

from __future__ import annotations

import socket
import socketserver
import statistics
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from harness.peers import (
    IO_TIMEOUT,
    HashServer,
    StdioPeer,
    exchange,
    explained,
    pair,
    run_concurrently,
    start_ours,
    start_upstream,
    wait_dilated,
)
from harness.servers import free_port

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

LOOPBACK = "127.0.0.1"
MB = 1_000_000
REPLY = 32_000  # bytes a service sends back when ours is the client side (see test_forwarding)
NAMES = ("alpha", "beta")
ROUND_TRIPS = 50
MESSAGE = b"0123456789" * 4
# Upstream leaves Nagle on: a stall on our delayed ACK costs at least 40 ms (Linux's minimum
# delayed-ACK timeout) per round trip; prompt ACKs give ~1 ms, and 12 ms at a load of 9 on 2 CPUs.
ROUND_TRIP_BOUND = 0.020  # seconds, median


@pytest.fixture
def peers(upstream_python, processes, mailbox, transit_relay) -> tuple[StdioPeer, StdioPeer]:
    """(ours, upstream), started on the test servers, not yet paired."""
    ours = start_ours(processes, mailbox.url, transit_relay.hint, label="ours")
    upstream = start_upstream(processes, upstream_python, mailbox.url, transit_relay.hint)
    return ours, upstream


@pytest.fixture
def servers() -> Iterator[dict[str, HashServer]]:
    started = {name: HashServer((LOOPBACK, 0)) for name in NAMES}
    yield started
    for server in started.values():
        server.stop()


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def direct_peers(upstream_python, processes, mailbox) -> tuple[StdioPeer, StdioPeer]:
    """(ours, upstream) with no working transit relay: through a relay, its delayed ACKs
    would hold upstream's records too, and nothing on our side can change those."""
    ours = start_ours(processes, mailbox.url, "none", label="ours")
    nothing_there = f"tcp:{LOOPBACK}:{free_port()}"
    upstream = start_upstream(processes, upstream_python, mailbox.url, nothing_there)
    return ours, upstream


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer((LOOPBACK, 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(IO_TIMEOUT)


def _round_trips(port: int, count: int) -> list[float]:
    """Seconds per 40-byte echo through the forward, after one round trip that opens the stream."""
    times = []
    with socket.create_connection((LOOPBACK, port), timeout=IO_TIMEOUT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count + 1):
            start = time.perf_counter()
            sock.sendall(MESSAGE)
            echoed = b""
            while len(echoed) < len(MESSAGE):
                chunk = sock.recv(len(MESSAGE) - len(echoed))
                assert chunk, "the forward closed during the round trips"
                echoed += chunk
            assert echoed == MESSAGE
            times.append(time.perf_counter() - start)
    return times[1:]


@pytest.mark.parametrize("ours_side", ["service", "client"])
def test_round_trips_with_upstream_do_not_wait_for_delayed_acks(direct_peers, echo_port, ours_side):
    """Upstream's Nagle holds each small record until we ACK its previous one; we ACK at once."""
    ours, upstream = direct_peers
    service, client = (ours, upstream) if ours_side == "service" else (upstream, ours)
    client.send("local", name="echo")  # upstream must know its clients before our requests arrive
    service.send("remote", name="echo", local_connect_port=echo_port)
    pair(service, client)
    port = client.wait_kind("listening", name="echo")["listening_port"]
    service.wait_kind("awaiting-connect", name="echo")
    assert wait_dilated(ours)["path"] == "direct"

    with explained(ours, upstream):
        times = _round_trips(port, ROUND_TRIPS)
    median = statistics.median(times)
    assert median < ROUND_TRIP_BOUND, f"median round trip {median * 1e3:.1f} ms over {len(times)}"
    _ours_closes(ours, upstream)


def _through_both(ports: dict[str, int], up: int, down: int) -> None:
    """Checked traffic through both services at once, two streams each."""
    calls: list[Callable[[], None]] = []
    for seed, name in enumerate(NAMES):
        address = (LOOPBACK, ports[name])
        calls.append(lambda a=address, s=seed: exchange(a, up, down, seed=s))
        calls.append(lambda a=address, s=seed: exchange(a, up // 2, down // 2, seed=s + 10))
    run_concurrently(*calls)


def _ours_closes(ours: StdioPeer, upstream: StdioPeer) -> None:
    """stdin EOF ends ours cleanly, and upstream hears the session close."""
    ours.close_stdin()
    assert ours.wait_exit() == 0, ours.describe()
    assert ours.lines[-1] == {"kind": "closed", "result": "happy"}, ours.describe()
    assert ours.bad_lines == [], ours.bad_lines[:3]
    upstream.wait_kind("closed")
    upstream.stop()  # it does not exit by itself


def _two_connections_each_done(ours: StdioPeer, upstream: StdioPeer, servers: dict, direction: str) -> None:
    """Each service saw two connections, ours reported each (``incoming``/``outgoing``) done; close."""
    for name in NAMES:
        assert servers[name].connections == 2
        connections = ours.find(f"{direction}-connection", service_name=name)
        assert len(connections) == 2, ours.describe()
        for line in connections:
            ours.wait_kind(f"{direction}-done", id=line["id"])
    assert ours.find(f"{direction}-lost") == []
    _ours_closes(ours, upstream)


def test_ours_offers_and_upstream_wants(peers, servers):
    ours, upstream = peers
    for name in NAMES:  # upstream must know its clients before our requests arrive
        upstream.send("local", name=name)
        ours.send("remote", name=name, local_connect_port=servers[name].port)
    pair(ours, upstream)
    ports = {name: upstream.wait_kind("listening", name=name)["listening_port"] for name in NAMES}
    for name in NAMES:
        ours.wait_kind("awaiting-connect", name=name, local_port=servers[name].port)

    with explained(ours, upstream):
        _through_both(ports, 2 * MB, 1 * MB)

    _two_connections_each_done(ours, upstream, servers, "incoming")


def test_upstream_offers_and_ours_wants(peers, servers):
    ours, upstream = peers
    for name in NAMES:
        ours.send("local", name=name)
        upstream.send("remote", name=name, local_connect_port=servers[name].port)
    pair(upstream, ours)
    ports = {name: ours.wait_kind("listening", name=name)["listening_port"] for name in NAMES}
    for name in NAMES:
        upstream.wait_kind("awaiting-connect", name=name)

    with explained(ours, upstream):
        _through_both(ports, 2 * MB, REPLY)

    _two_connections_each_done(ours, upstream, servers, "outgoing")


def test_ours_declared_after_upstream_offered_still_gets_the_service(peers, servers):
    """Between two upstream peers this order fails for good; ours waits for the declaration."""
    ours, upstream = peers
    upstream.send("remote", name="alpha", local_connect_port=servers["alpha"].port)
    pair(upstream, ours)
    wait_dilated(ours)
    ours.drain(2.0)  # upstream's request has arrived and waits
    assert ours.find("listening") == [], ours.describe()

    ours.send("local", name="alpha")
    port = ours.wait_kind("listening", name="alpha")["listening_port"]
    upstream.wait_kind("awaiting-connect", name="alpha")
    with explained(ours, upstream):
        exchange((LOOPBACK, port), 1 * MB, REPLY)
    _ours_closes(ours, upstream)
