"""End-to-end forwarding between two ``fowld --stdio`` processes.

Real mailbox and transit relay on loopback, real processes, real sockets;
every byte forwarded is checked by SHA-256 in both directions. The tests at
the end drive the engine in-process, to lower its limits and to reach
refusals a well-behaved peer never provokes.
"""

from __future__ import annotations

import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory

from fowld.engine import events, wire
from fowld.engine.limits import Limits
from fowld.engine.session import Session, SessionConfig
from fowld.engine.status import Phase
from fowld.engine.tunnel import OutgoingTunnel
from harness.peers import (
    HashServer,
    StdioPeer,
    exchange,
    explained,
    open_socket,
    pair,
    run_concurrently,
    start_ours,
    wait_dilated,
)
from harness.servers import free_port
from harness.wait import eventually, get_reactor, until

pytestmark = pytest.mark.timeout(60)

LOOPBACK = "127.0.0.1"
MB = 1_000_000
# What a service sends back in most tests: several transport buffers, so local sockets
# pause their tunnels and closing must still work (test_large_reply_read_slowly_...).
REPLY = 1_000_000


@pytest.fixture
def start_peer(processes, mailbox, transit_relay) -> Callable[..., StdioPeer]:
    """``start_peer(*options, label=...)`` runs ``fowld --stdio`` on the test servers."""

    def start(*options: str, label: str = "ours") -> StdioPeer:
        return start_ours(processes, mailbox.url, transit_relay.hint, *options, label=label)

    return start


@pytest.fixture
def connected(start_peer) -> Callable[..., tuple[StdioPeer, StdioPeer]]:
    """``connected(*options)``: two daemons, "a" and "b", paired and Dilated."""

    def connect(*options: str) -> tuple[StdioPeer, StdioPeer]:
        a, b = start_peer(*options, label="a"), start_peer(*options, label="b")
        pair(a, b)
        for peer in (a, b):
            wait_dilated(peer)
        return a, b

    return connect


@pytest.fixture
def hash_server() -> Iterator[Callable[..., HashServer]]:
    """``hash_server(address=("127.0.0.1", 0))`` starts a HashServer; all stop after the test."""
    started: list[HashServer] = []

    def start(address: str | tuple[str, int] = (LOOPBACK, 0)) -> HashServer:
        server = HashServer(address)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: UNIX socket paths are limited to about 100 bytes."""
    with tempfile.TemporaryDirectory(prefix="fowld-") as directory:
        yield Path(directory)


def close_both(*peers: StdioPeer) -> None:
    """Close every stdin; each daemon must print "closed", exit 0 and print only JSON."""
    for peer in peers:
        peer.close_stdin()
    for peer in peers:
        assert peer.wait_exit() == 0, peer.describe()
        assert peer.lines[-1]["kind"] == "closed", peer.describe()
        assert peer.bad_lines == [], f"{peer.label} printed non-JSON lines: {peer.bad_lines[:3]}"


def _refused(address: tuple[str, int]) -> bool:
    """Whether a connection to ``address`` is refused now.

    A listener closes in the reactor turn after its "listener-stopped" line: poll it.
    """
    try:
        open_socket(address, timeout=2.0).close()
    except ConnectionRefusedError:
        return True
    return False


def offer(service_side: StdioPeer, client_side: StdioPeer, name: str, connect: str | int, **listen) -> dict:
    """Declare service ``name`` on one side and the client on the other; the "listening" line."""
    since = client_side.mark()
    if isinstance(connect, int):
        service_side.send("remote", name=name, local_connect_port=connect)
    else:
        service_side.send("remote", name=name, connect=connect)
    client_side.send("local", name=name, **listen)
    return client_side.wait_kind("listening", since=since, name=name)


def test_services_in_both_directions_at_once(connected, hash_server):
    a, b = connected()
    x, y, z = hash_server(), hash_server(), hash_server()
    to_x = offer(a, b, "x", x.port)["listening_port"]
    to_z = offer(a, b, "z", z.port)["listening_port"]
    to_y = offer(b, a, "y", y.port)["listening_port"]

    with explained(a, b):
        run_concurrently(
            lambda: exchange((LOOPBACK, to_x), 3 * MB, REPLY, seed=1),
            lambda: exchange((LOOPBACK, to_x), 1 * MB, REPLY // 2, seed=2),
            lambda: exchange((LOOPBACK, to_y), 2 * MB, REPLY, seed=3),
            lambda: exchange((LOOPBACK, to_z), 10, REPLY, seed=4),
        )

    assert (x.connections, y.connections, z.connections) == (2, 1, 1)
    for client, service, name, streams in ((b, a, "x", 2), (a, b, "y", 1), (b, a, "z", 1)):
        opened = client.find("outgoing-connection", service_name=name)
        assert len(opened) == streams, client.describe()
        for line in opened:
            client.wait_kind("outgoing-done", id=line["id"])
        accepted = service.find("incoming-connection", service_name=name)
        assert len(accepted) == streams, service.describe()
        for line in accepted:
            service.wait_kind("incoming-done", id=line["id"])
    for peer in (a, b):
        assert peer.find("outgoing-lost") == peer.find("incoming-lost") == []
    close_both(a, b)


def test_relay_only_path_carries_the_data(connected, hash_server, transit_relay):
    a, b = connected("--relay-only")
    server = hash_server()
    port = offer(a, b, "x", server.port)["listening_port"]
    with explained(a, b):
        exchange((LOOPBACK, port), 2 * MB, REPLY)
    for peer in (a, b):
        since = peer.mark()
        peer.send("status")
        status = peer.wait_kind("status", since=since)
        assert (status["phase"], status["path"]) == ("connected", "relay"), status
        assert f":{transit_relay.port}" in status["hint"], status
    close_both(a, b)


def test_unix_sockets_at_both_ends(connected, hash_server, short_dir):
    a, b = connected()
    server = hash_server(str(short_dir / "service.sock"))
    client_path = short_dir / "client.sock"
    listening = offer(a, b, "u", f"unix:path={server.address}", listen=f"unix:path={client_path}")
    assert listening["listening_port"] is None
    assert client_path.is_socket()
    awaiting = a.wait_kind("awaiting-connect", name="u")
    assert awaiting["connect"] == f"unix:path={server.address}"
    with explained(a, b):
        run_concurrently(
            lambda: exchange(str(client_path), 1 * MB, REPLY, seed=1),
            lambda: exchange(str(client_path), 2 * MB, REPLY // 2, seed=2),
        )
    assert server.connections == 2
    close_both(a, b)


def _ipv6_loopback_usable() -> bool:
    try:
        free_port("::1")
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback_usable(), reason="no usable IPv6 loopback (::1) here")
def test_ipv6_loopback_at_both_ends(connected, hash_server):
    a, b = connected()
    server = hash_server(("::1", 0))
    listening = offer(a, b, "v6", f"[::1]:{server.port}", listen="tcp:0:interface=::1")
    port = listening["listening_port"]
    with explained(a, b):
        exchange(("::1", port), 1 * MB, REPLY)
    # the listener is on ::1 only: nothing answers on the IPv4 loopback at that port
    with pytest.raises(ConnectionRefusedError):
        open_socket((LOOPBACK, port), timeout=2).close()
    assert server.connections == 1
    close_both(a, b)


def test_client_declared_after_the_peer_offered_still_gets_the_service(connected, hash_server):
    """Upstream refuses a service offered before the client is declared; we wait for it."""
    a, b = connected()
    server = hash_server()
    a.send("remote", name="late", local_connect_port=server.port)
    a.drain(3.0)  # Dilation is up: the request reached b, which waits for the declaration
    assert a.find("awaiting-connect") == a.find("listening-failed") == [], a.describe()

    b.send("local", name="late")
    port = b.wait_kind("listening", name="late")["listening_port"]
    a.wait_kind("awaiting-connect", name="late")
    with explained(a, b):
        exchange((LOOPBACK, port), 500_000, REPLY)
    close_both(a, b)


def test_refused_connection_at_the_target_closes_only_that_stream(connected, hash_server):
    a, b = connected()
    dead_port = free_port()  # nothing listens here
    port = offer(a, b, "svc", dead_port)["listening_port"]

    with open_socket((LOOPBACK, port)) as sock:
        assert sock.recv(1) == b"", "the forwarded connection should be closed"
    lost = b.wait_kind("outgoing-lost", service_name="svc")
    assert "refused" in lost["reason"], lost
    b.wait_kind("outgoing-done", id=lost["id"])
    incoming = a.wait_kind("incoming-lost", service_name="svc")
    assert "cannot connect" in incoming["reason"], incoming

    # the session and the listener survive: once the target is up, the same listener works
    server = hash_server((LOOPBACK, dead_port))
    with explained(a, b):
        exchange((LOOPBACK, port), 100_000, REPLY)
    assert server.connections == 1
    second = b.wait_kind("outgoing-connection", service_name="svc", since=b.lines.index(lost))
    b.wait_kind("outgoing-done", id=second["id"])
    assert b.find("outgoing-lost") == [lost]
    close_both(a, b)


def test_remove_and_add_services_mid_session(connected, hash_server):
    a, b = connected()
    first, second = hash_server(), hash_server()
    old_port = offer(a, b, "svc", first.port)["listening_port"]
    with explained(a, b):
        exchange((LOOPBACK, old_port), 1000, 1000)

    # the service side withdraws: the client side stops listening
    a.send("remove-remote", name="svc")
    stopped = b.wait_kind("listener-stopped", name="svc")
    assert stopped["reason"], stopped
    until(lambda: _refused((LOOPBACK, old_port)), "the old listener refusing connections", 2.0)

    # offered again, now ending at another server
    new_port = offer(a, b, "svc", second.port)["listening_port"]
    with explained(a, b):
        exchange((LOOPBACK, new_port), 2000, 2000)
    assert (first.connections, second.connections) == (1, 1)

    # the client side withdraws: its listener goes and the service side hears of it
    since = b.mark()
    b.send("remove-local", name="svc")
    assert b.wait_kind("listener-stopped", since=since, name="svc")["reason"] == "removed"
    failed = a.wait_kind("listening-failed", name="svc")
    assert failed["reason"], failed
    until(lambda: _refused((LOOPBACK, new_port)), "the removed listener refusing connections", 2.0)

    # both sides declare it again
    a.send("remove-remote", name="svc")
    port = offer(a, b, "svc", first.port)["listening_port"]
    with explained(a, b):
        exchange((LOOPBACK, port), 3000, 3000)
    assert first.connections == 2
    close_both(a, b)


def test_open_streams_outlive_their_removed_service_and_client(connected, hash_server):
    a, b = connected()
    server = hash_server()
    port = offer(a, b, "svc", server.port)["listening_port"]

    def remove_both() -> None:
        a.wait_kind("incoming-connection", service_name="svc")
        a.send("remove-remote", name="svc")
        b.wait_kind("listener-stopped", name="svc")
        b.send("remove-local", name="svc")

    with explained(a, b):
        exchange((LOOPBACK, port), 1 * MB, REPLY, midway=remove_both)
    done = b.wait_kind("outgoing-done", service_name="svc")
    assert b.find("outgoing-lost") == [] and a.find("incoming-lost") == []
    a.wait_kind("incoming-done", id=done["id"])
    close_both(a, b)


def test_client_removed_and_declared_again_listens_again(connected, hash_server):
    a, b = connected()
    server = hash_server()
    offer(a, b, "svc", server.port)
    b.send("remove-local", name="svc")
    a.wait_kind("listening-failed", name="svc")

    since = b.mark()
    b.send("local", name="svc")
    port = b.wait_kind("listening", since=since, name="svc", timeout=5)["listening_port"]
    with explained(a, b):
        exchange((LOOPBACK, port), 1000, 1000)
    close_both(a, b)


def test_large_reply_read_slowly_still_ends_the_connection(connected, hash_server):
    a, b = connected()
    server = hash_server()
    port = offer(a, b, "big", server.port)["listening_port"]
    # the reply fills every buffer before the client reads, then the service closes;
    # whether the close meets a paused tunnel depends on timing, hence a few tries
    with explained(a, b):
        for seed in range(3):
            exchange((LOOPBACK, port), 1000, 8 * MB, seed=seed, read_delay=0.3, timeout=3)
    for line in b.find("outgoing-connection", service_name="big"):
        b.wait_kind("outgoing-done", id=line["id"])
    close_both(a, b)


def test_byte_counts_are_exact_and_coalesced(connected, hash_server):
    a, b = connected()
    server = hash_server()
    port = offer(a, b, "bulk", server.port)["listening_port"]
    up, down = 50 * MB, REPLY
    started = time.monotonic()
    with explained(a, b):
        exchange((LOOPBACK, port), up, down)
    elapsed = time.monotonic() - started

    stream = b.wait_kind("outgoing-connection", service_name="bulk")["id"]
    b.wait_kind("outgoing-done", id=stream)
    incoming = a.wait_kind("incoming-connection", service_name="bulk")["id"]
    a.wait_kind("incoming-done", id=incoming)
    # header (24 bytes) and data up; digest (32 bytes) and data down
    sent, received = 24 + up, 32 + down
    for peer, stream_id, into, out in ((b, stream, sent, received), (a, incoming, received, sent)):
        ins = peer.find("bytes-in", id=stream_id)
        outs = peer.find("bytes-out", id=stream_id)
        assert sum(line["bytes"] for line in ins) == into, peer.describe()
        assert sum(line["bytes"] for line in outs) == out, peer.describe()
        # one report per stream per half second at most, plus the final one
        assert len(ins) <= elapsed / 0.5 + 2 and len(outs) <= elapsed / 0.5 + 2, (ins, outs, elapsed)
        assert len(ins) + len(outs) < 50
    close_both(a, b)


def test_ping_gets_a_pong_with_its_id(connected):
    a, b = connected()
    for peer in (a, b):
        peer.send("ping", ping_id=42)
        peer.send("ping", ping_id="text-id")
        for ping_id in (42, "text-id"):
            pong = peer.wait_kind("pong", ping_id=ping_id)
            assert 0 <= pong["time_of_flight"] < 5, pong
    close_both(a, b)


def test_status_watch_follows_the_session_to_its_end(connected):
    a, b = connected()
    since = a.mark()
    a.send("status", watch=True)
    first = a.wait_kind("status", since=since)
    assert first["phase"] == "connected" and first["peer"] == "connected", first
    assert first["verifier"] == b.find("peer-connected")[0]["verifier"]
    since = a.mark()
    a.send("session-close", timeout=5)
    a.wait_kind("status", since=since, phase="closed")
    phases = [line["phase"] for line in a.find("status", since=since)]
    assert phases[0] == "closing" and phases[-1] == "closed", phases
    assert a.wait_exit() == 0
    assert a.lines[-1] == {"kind": "closed", "result": "happy"}, a.describe()
    # b heard of the closing through the mailbox and ended too, stdin still open
    assert b.wait_exit() == 0
    assert b.lines[-1]["kind"] == "closed", b.describe()
    assert a.bad_lines == b.bad_lines == []


def test_stdin_eof_on_one_side_ends_both(connected, hash_server):
    a, b = connected()
    server = hash_server()
    port = offer(a, b, "svc", server.port)["listening_port"]
    with explained(a, b):
        exchange((LOOPBACK, port), 1000, 1000)
    a.close_stdin()
    for peer in (a, b):
        assert peer.wait_exit() == 0, peer.describe()
        assert peer.lines[-1] == {"kind": "closed", "result": "happy"}, peer.describe()
        assert peer.bad_lines == []
    assert b.find("listener-stopped", name="svc"), b.describe()


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_signal_closes_gracefully_and_the_peer_hears_it(connected, signal_name):
    a, b = connected()
    a.process.send_signal(getattr(signal, signal_name))
    assert a.wait_exit() == 0, a.describe()
    assert a.lines[-1] == {"kind": "closed", "result": "happy"}, a.describe()
    # the peer learns of it from our "closing" message at once, not from missed keep-alives
    closed = b.wait_kind("closed", timeout=5)
    assert closed == {"kind": "closed", "result": "happy"}, b.describe()
    assert b.wait_exit() == 0


def test_a_service_with_no_port_fails_clearly_when_the_peer_names_none(connected):
    a, b = connected()
    a.send("remote", name="where")  # connect where the peer says, as upstream's `remote` does
    b.send("local", name="where")  # ... and the peer says nothing
    failed = a.wait_kind("listening-failed", name="where")
    assert "named no port" in failed["reason"], a.describe()


def test_stdin_eof_before_any_peer_exits_cleanly(start_peer):
    lonely = start_peer(label="lonely")
    lonely.send("allocate-code")
    lonely.wait_kind("code-allocated")
    lonely.close_stdin()
    assert lonely.wait_exit() == 0
    assert lonely.lines[-1]["kind"] == "closed", lonely.describe()
    assert lonely.bad_lines == []


def test_wrong_code_ends_both_sides_with_the_reason(start_peer):
    a, b = start_peer(label="a"), start_peer(label="b")
    a.send("allocate-code")
    nameplate = a.wait_kind("code-allocated")["code"].split("-")[0]
    b.send("set-code", code=f"{nameplate}-not-the-words")
    for peer in (a, b):
        assert peer.wait_exit() == 0, peer.describe()
        assert "wrong code" in peer.wait_kind("error")["message"]
        closed = peer.lines[-1]
        assert closed["kind"] == "closed" and closed["result"].startswith("failed: wrong code"), closed
        assert peer.find("peer-connected") == []


def test_duplicate_declarations_are_refused(connected, hash_server):
    a, b = connected()
    server = hash_server()
    offer(a, b, "svc", server.port)
    for peer, kind, fields in ((a, "remote", {"local_connect_port": server.port}), (b, "local", {})):
        since = peer.mark()
        peer.send(kind, name="svc", **fields)
        assert "already exists" in peer.wait_kind("error", since=since)["message"]
    close_both(a, b)


# --- refusals a well-behaved peer never provokes, driven in-process --------------------


def _next_event(session: Session, wanted: Callable[[events.Event], bool], timeout: float = 10.0) -> Deferred:
    """Fires with the first matching event from now on, outside the engine's call stack."""
    got: Deferred = Deferred()
    seen: list[events.Event] = []

    def check(event: events.Event) -> None:
        if not seen and wanted(event):
            seen.append(event)
            unsubscribe()
            get_reactor().callLater(0, lambda: got.called or got.callback(event))

    unsubscribe = session.subscribe(check)
    got.addErrback(lambda failure: (unsubscribe(), failure)[1])
    return got.addTimeout(timeout, get_reactor())


async def _paired_sessions(mailbox_url: str, relay: str, limits: Limits) -> tuple[Session, Session]:
    config = SessionConfig(mailbox_url=mailbox_url, transit_relay=relay, limits=limits)
    first, second = Session(config, get_reactor()), Session(config, get_reactor())
    for session in (first, second):
        session.startService()
    code = _next_event(first, lambda e: isinstance(e, events.CodeAllocated))
    first.allocate_code()
    second.set_code((await code).code)
    await _next_event(first, lambda e: isinstance(e, events.PeerConnected))
    return first, second


async def _connected(session: Session) -> None:
    if session.status.phase is not Phase.CONNECTED:
        await _next_event(
            session, lambda e: isinstance(e, events.StatusChanged) and e.status.phase is Phase.CONNECTED
        )


async def _close(*sessions: Session) -> None:
    for session in sessions:
        await session.close(timeout=5).addTimeout(15, get_reactor())


async def _refuse_undeclared(service_side: Session, client_side: Session) -> tuple:
    """Offer "ghost", which the client side never declares; (refusal, failure, seconds waited)."""
    refused = _next_event(client_side, lambda e: isinstance(e, events.Refused))
    failed = _next_event(service_side, lambda e: isinstance(e, events.ServiceFailed))
    started = time.monotonic()
    service_side.add_service("ghost", f"tcp:localhost:{free_port()}")
    refusal, failure = await refused, await failed
    return refusal, failure, time.monotonic() - started


@pytest_twisted.ensureDeferred
async def test_undeclared_client_is_refused_after_the_bounded_wait(mailbox, transit_relay):
    limits = Limits(pending_request_timeout=1.0)
    service_side, client_side = await _paired_sessions(mailbox.url, transit_relay.hint, limits)
    try:
        refusal, failure, waited = await _refuse_undeclared(service_side, client_side)
        offer = service_side._forwarder._services["ghost"]
        await eventually(lambda: offer.channel is None, "its control channel closed", 5.0)
        state = offer.status.state.value
    finally:
        await _close(service_side, client_side)
    assert (refusal.what, refusal.name) == ("listener", "ghost")
    assert "no client named 'ghost'" in refusal.reason
    assert failure.name == "ghost" and "no client named 'ghost'" in failure.reason
    assert 1.0 <= waited < 5.0, waited
    assert state == "failed"
    assert "ghost" not in [c.name for c in client_side.clients()]


@pytest_twisted.ensureDeferred
async def test_session_closes_right_after_a_refused_service(mailbox, transit_relay):
    limits = Limits(pending_request_timeout=0.5)
    service_side, client_side = await _paired_sessions(mailbox.url, transit_relay.hint, limits)
    try:
        await _refuse_undeclared(service_side, client_side)
        result = await service_side.close(timeout=5).addTimeout(15, get_reactor())
    finally:
        await _close(client_side)
    assert result == "happy"


@pytest_twisted.ensureDeferred
async def test_stream_for_a_name_not_offered_is_refused(mailbox, transit_relay):
    opener, target = await _paired_sessions(mailbox.url, transit_relay.hint, Limits())
    try:
        await _connected(opener)
        refused = _next_event(target, lambda e: isinstance(e, events.Refused))
        closed = _next_event(opener, lambda e: isinstance(e, events.StreamClosed))
        # what a client listener does for a local connection, for a name the peer never offered
        context = opener._forwarder._context
        stream = context.streams.open("nothing-here", events.Direction.OUTGOING)
        factory = Factory.forProtocol(lambda: OutgoingTunnel(stream))
        await context.open_subchannel(wire.STREAM_SUBPROTOCOL, factory)
        refusal, end = await refused, await closed
    finally:
        await _close(opener, target)
    assert (refusal.what, refusal.name) == ("stream", "nothing-here")
    assert end.id == stream.id and end.refused
    assert "peer refused" in end.reason and "no service named 'nothing-here'" in end.reason
    assert (end.total_into_tunnel, end.total_out_of_tunnel) == (0, 0)
    assert target.open_streams == opener.open_streams == 0
