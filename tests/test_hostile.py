"""A peer that breaks the wire protocol on purpose, against a real session.

Our side is a real ``fowld.engine.session.Session`` (small limits, so refusals come
quickly) offering an echo server as ``echo`` and wanting ``wanted``; the far
side is ``hostile_peer.HostilePeer`` on the same loopback mailbox. Every test
checks what the peer is told, that our side says why, that nothing is logged
as unhandled, and that the declared service still works afterwards.
"""

from __future__ import annotations

import collections
import gc
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import pytest_twisted
from hostile_peer import (
    CONTROL,
    STREAM,
    Echo,
    HostilePeer,
    RawChannel,
    against_fowld,
    echo_round_trip,
    flood,
    frame,
    listener_request,
    raw_frame,
)
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from fowld.engine import events
from fowld.engine.limits import Limits
from fowld.engine.session import Session, SessionConfig
from harness.stats import rss_kib
from harness.wait import eventually, get_reactor, sleep

LOOPBACK = "127.0.0.1"
STEP = 10.0  # seconds for any one step on loopback
LIMITS = Limits(
    max_streams=20,
    max_control_channels=8,
    max_pending_requests=4,
    pending_request_timeout=1.0,
    stream_open_timeout=1.0,
    early_data_limit=16 * 1024,
)


@dataclass
class Scene:
    session: Session
    peer: HostilePeer
    service_request: RawChannel  # the control channel our side opened to offer "echo"
    seen: list = field(default_factory=list)  # every session event
    logged_errors: list = field(default_factory=list)

    def refused(self, what: str) -> list[events.Refused]:
        return [e for e in self.seen if isinstance(e, events.Refused) and e.what == what]

    def of_type(self, kind: type) -> list:
        return [e for e in self.seen if isinstance(e, kind)]

    async def echo_round_trip(self) -> None:
        await echo_round_trip(self.peer)

    def assert_quiet(self) -> None:
        """Nothing logged as an error: no unhandled exception, no failed Deferred."""
        gc.collect()  # unhandled Deferred failures are logged when collected
        assert self.logged_errors == [], "\n".join(self.logged_errors)
        assert self.session.status.phase.value == "connected", self.session.status


def _error_observer(sink: list) -> Callable[[dict], None]:
    def observe(event: dict) -> None:
        level = event.get("log_level")
        if "log_failure" in event or level in (LogLevel.error, LogLevel.critical):
            failure = event.get("log_failure")
            sink.append(failure.getTraceback() if failure is not None else formatEvent(event))

    return observe


@pytest_twisted.async_yield_fixture
async def scene(mailbox):
    reactor = get_reactor()
    logged: list[str] = []
    observer = _error_observer(logged)
    globalLogPublisher.addObserver(observer)
    echo = await TCP4ServerEndpoint(reactor, 0, interface=LOOPBACK).listen(Factory.forProtocol(Echo))
    config = SessionConfig(mailbox_url=mailbox.url, transit_relay=None, limits=LIMITS)
    session = Session(config, reactor)
    seen: list = []
    session.subscribe(seen.append)
    session.add_service("echo", f"tcp:{LOOPBACK}:{echo.getHost().port}")
    session.add_client("wanted", "tcp:0")
    session.startService()
    peer = None
    try:
        session.allocate_code()
        code = await eventually(lambda: session.status.code, "no code allocated")
        peer = await HostilePeer.join(reactor, mailbox.url, code)
        request = await peer.incoming_control()
        assert await request.next_frame() == {
            "kind": "request-listener",
            "unique-name": "echo",
            "listen-port": None,
        }
        await eventually(lambda: session.status.phase.value == "connected", "session not connected")
        yield Scene(session, peer, request, seen, logged)
    finally:
        if peer is not None:
            await peer.close()
        await session.close(timeout=2.0).addTimeout(STEP, reactor)
        await echo.stopListening()
        globalLogPublisher.removeObserver(observer)


# --- streams (subprotocol "fowl") --------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_declared_service_echoes_for_the_peer(scene):
    await scene.echo_round_trip()
    closed = await eventually(lambda: scene.of_type(events.StreamClosed), "no stream closed event")
    assert closed[0].name == "echo" and closed[0].total_out_of_tunnel == 1 << 20
    scene.assert_quiet()


@pytest.mark.parametrize(
    ("opening", "reason"),
    [
        ({"unique-name": "nope"}, "no service named 'nope'"),
        ({"unique-name": "wanted"}, "no service named 'wanted'"),  # a client name is no service
        ({"unique-name": ""}, '"unique-name" must be a non-empty string'),
        ({"unique-name": "x" * 300}, "longer than 255"),
        ({"unique-name": 5}, '"unique-name" must be a non-empty string'),
        ({"unique-name": ["echo"]}, '"unique-name" must be a non-empty string'),
        ({"unique-name": "echo", "listen-port": "22"}, '"listen-port" must be a port number'),
        ({"unique-name": "echo", "listen-port": 70000}, '"listen-port" must be a port number'),
        ({"unique-name": "echo", "listen-port": True}, '"listen-port" must be a port number'),
        ({}, '"unique-name" must be a non-empty string'),
        ([1, 2, 3], "expected a msgpack map, got list"),
        ("echo", "expected a msgpack map, got str"),
        (None, "expected a msgpack map, got NoneType"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_bad_stream_opening_is_refused_on_the_wire(scene, opening, reason):
    channel = await scene.peer.open(STREAM)
    channel.send(frame(opening))
    reply = await channel.next_frame()
    assert reply["connected"] is False
    assert reason in reply["reason"]
    await channel.wait_closed()
    refusals = scene.refused("stream")
    assert len(refusals) == 1 and refusals[0].reason == reply["reason"]
    await scene.echo_round_trip()
    scene.assert_quiet()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (raw_frame(b"\xc1"), "undecodable msgpack"),  # 0xc1 is never valid msgpack
        (raw_frame(b"\x92\x01"), "undecodable msgpack"),  # an array cut short
        (raw_frame(b"\xa3ab"), "undecodable msgpack"),  # a string cut short
        (raw_frame(b"\xa2\xff\xfe"), "undecodable msgpack"),  # a string that is not UTF-8
        (raw_frame(b"\x81\x01\x02"), "undecodable msgpack"),  # a map with an integer key
        # what follows the opening message is stream data, not a second opening message
        (frame({"unique-name": "nope"}) + frame({"unique-name": "echo"}), "no service named 'nope'"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_malformed_stream_handshake_is_refused_on_the_wire(scene, data, reason):
    channel = await scene.peer.open(STREAM)
    channel.send(data)
    reply = await channel.next_frame()
    assert reply["connected"] is False and reason in reply["reason"], reply
    await channel.wait_closed()
    await scene.echo_round_trip()
    scene.assert_quiet()


@pytest_twisted.ensureDeferred
async def test_length_prefix_beyond_the_bytes_sent_times_out(scene):
    channel = await scene.peer.open(STREAM)
    started = time.monotonic()
    channel.send(raw_frame(b"\x81\xabunique-name", declared_length=1000))
    reply = await channel.next_frame(timeout=LIMITS.stream_open_timeout + STEP)
    waited = time.monotonic() - started
    assert reply["connected"] is False and "no opening message in time" in reply["reason"], reply
    assert LIMITS.stream_open_timeout * 0.9 <= waited < LIMITS.stream_open_timeout + 5, waited
    await channel.wait_closed()
    await scene.echo_round_trip()
    scene.assert_quiet()


@pytest_twisted.ensureDeferred
async def test_silent_stream_is_dropped_after_the_open_timeout(scene):
    channel = await scene.peer.open(STREAM)
    reply = await channel.next_frame(timeout=LIMITS.stream_open_timeout + STEP)
    assert reply["connected"] is False and "no opening message in time" in reply["reason"]
    await channel.wait_closed()
    scene.assert_quiet()


async def _echoed_back(scene: Scene, channel: RawChannel, early: bytes) -> None:
    """The stream to "echo" is accepted and its early data comes back whole; then it closes."""
    assert await channel.next_frame() == {"connected": True}
    assert await channel.read_exactly(len(early)) == early
    channel.close()
    await channel.wait_closed()
    scene.assert_quiet()


@pytest_twisted.ensureDeferred
async def test_early_data_in_its_own_record_reaches_the_service(scene):
    channel = await scene.peer.open(STREAM)
    channel.send(frame({"unique-name": "echo"}))
    early = os.urandom(LIMITS.early_data_limit // 2)
    channel.send(early)  # before our reply: kept, then delivered
    await _echoed_back(scene, channel, early)


@pytest_twisted.ensureDeferred
async def test_early_data_in_the_opening_record_is_data_not_frames(scene):
    """Bytes after the opening message are the user's, even when they look like a frame."""
    channel = await scene.peer.open(STREAM)
    early = raw_frame(b"\x80") + bytes(range(256)) * 16  # starts like an empty-map frame
    channel.send(frame({"unique-name": "echo"}) + early)  # one record: header and data together
    await _echoed_back(scene, channel, early)


@pytest_twisted.ensureDeferred
async def test_early_data_beyond_the_limit_in_one_record_is_refused(scene):
    """The limit must hold however the peer packs its records."""
    channel = await scene.peer.open(STREAM)
    # The first two bytes declare a frame longer than what follows, so no reader mistakes the
    # data for a second message: only the limit can refuse it.
    early = b"\xff\xff" + bytes(4 * LIMITS.early_data_limit - 2)
    channel.send(frame({"unique-name": "echo"}) + early)
    reply = await channel.next_frame()
    assert reply["connected"] is False and "too much data" in reply["reason"], reply
    await channel.wait_closed()
    scene.assert_quiet()


@pytest_twisted.ensureDeferred
async def test_huge_data_after_a_refused_opening_is_ignored(scene):
    channel = await scene.peer.open(STREAM)
    channel.send(frame({"unique-name": "nope"}))
    for _ in range(16):  # 16 MiB the peer was never invited to send
        channel.send(os.urandom(1 << 20))
    reply = await channel.next_frame()
    assert reply["connected"] is False and "nope" in reply["reason"]
    await channel.wait_closed()
    await eventually(lambda: scene.session.open_streams == 0, "refused stream still counted")
    await scene.echo_round_trip()
    scene.assert_quiet()


@pytest_twisted.ensureDeferred
async def test_flood_of_stream_opens_beyond_the_limit(scene):
    """1,000 opens at once: 20 (the limit) are served, the rest refused, the session lives."""
    opens = 1000
    channels = []
    for _ in range(opens):
        channel = await scene.peer.open(STREAM)
        channel.send(frame({"unique-name": "echo"}))
        channels.append(channel)
    replies = [await channel.next_frame() for channel in channels]
    accepted = [r for r in replies if r["connected"]]
    refused = [r for r in replies if not r["connected"]]
    assert len(accepted) == LIMITS.max_streams
    assert len(refused) == opens - LIMITS.max_streams
    assert {r["reason"] for r in refused} == {f"too many streams (limit {LIMITS.max_streams})"}
    assert scene.session.open_streams == LIMITS.max_streams
    for channel in channels:
        channel.close()
    await eventually(lambda: scene.session.open_streams == 0, "streams not all closed")
    await scene.echo_round_trip()
    scene.assert_quiet()


@pytest_twisted.ensureDeferred
async def test_opens_held_back_before_their_opening_messages_respect_the_limit(scene):
    """A peer may open many subchannels first and send every opening message later."""
    count = 3 * LIMITS.max_streams
    channels = [await scene.peer.open(STREAM) for _ in range(count)]
    for channel in channels:
        if channel.connected:  # those over the limit may be refused and closed already
            channel.send(frame({"unique-name": "echo"}))
    replies = [await channel.next_frame() for channel in channels]
    accepted = sum(1 for r in replies if r["connected"])
    assert accepted <= LIMITS.max_streams, f"{accepted} streams accepted, limit {LIMITS.max_streams}"
    assert scene.session.open_streams <= LIMITS.max_streams
    for channel in channels:
        channel.close()
    await eventually(lambda: scene.session.open_streams == 0, "streams not all closed")
    scene.assert_quiet()


def _live_objects() -> collections.Counter:
    gc.collect()
    return collections.Counter(type(o).__qualname__ for o in gc.get_objects())


@pytest_twisted.ensureDeferred
async def test_repeated_floods_leave_nothing_behind(scene):
    """After each flood is over, no kind of object is left accumulating in our process."""
    opens = 10 * LIMITS.max_streams
    await flood(scene.peer, opens)  # the first flood may warm caches up
    scene.seen.clear()
    before = _live_objects()
    for _ in range(3):
        accepted, _ = await flood(scene.peer, opens)
        assert accepted == LIMITS.max_streams
        await eventually(lambda: scene.session.open_streams == 0, "streams not all closed")
    scene.seen.clear()
    grown = {kind: n - before[kind] for kind, n in _live_objects().items() if n - before[kind] > 50}
    assert grown == {}, f"after {3 * opens} more opens, these grew: {grown}"
    scene.assert_quiet()


# --- control (subprotocol "fowl-commands") ------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_listener_request_for_an_undeclared_name_is_refused_after_the_wait(scene):
    channel = await scene.peer.open(CONTROL)
    started = time.monotonic()
    channel.send(listener_request("ghost"))
    reply = await channel.next_frame(timeout=LIMITS.pending_request_timeout + STEP)
    waited = time.monotonic() - started
    assert reply["kind"] == "listener-response" and reply["unique-name"] == "ghost"
    assert reply["listening"] is False and "ghost" in reply["reason"]
    assert LIMITS.pending_request_timeout * 0.9 <= waited < LIMITS.pending_request_timeout + 5, waited
    assert [e.name for e in scene.refused("listener")] == ["ghost"]
    scene.assert_quiet()


@pytest_twisted.ensureDeferred
async def test_pending_listener_requests_beyond_the_limit_are_refused_at_once(scene):
    channel = await scene.peer.open(CONTROL)
    names = [f"ghost-{i}" for i in range(LIMITS.max_pending_requests + 3)]
    started = time.monotonic()
    channel.send(b"".join(listener_request(name) for name in names))
    replies = [await channel.next_frame(timeout=LIMITS.pending_request_timeout + STEP) for _ in names]
    immediate, late = replies[:3], replies[3:]
    assert [r["unique-name"] for r in immediate] == names[LIMITS.max_pending_requests :]
    assert all(r["listening"] is False and "too many pending" in r["reason"] for r in immediate)
    assert sorted(r["unique-name"] for r in late) == names[: LIMITS.max_pending_requests]
    assert all(r["listening"] is False for r in late)
    assert time.monotonic() - started >= LIMITS.pending_request_timeout * 0.9
    assert scene.session._forwarder._clients._pending == {}
    scene.assert_quiet()


@pytest_twisted.ensureDeferred
async def test_listener_for_the_wanted_name_binds_loopback_once(scene):
    channel = await scene.peer.open(CONTROL)
    channel.send(listener_request("wanted"))
    reply = await channel.next_frame()
    assert reply == {"kind": "listener-response", "unique-name": "wanted", "listening": True}
    (listening,) = scene.of_type(events.ClientListening)
    assert listening.listen == "tcp:0:interface=127.0.0.1" and listening.port
    channel.send(listener_request("wanted"))  # a second listener for the same name
    again = await channel.next_frame()
    assert again["listening"] is False and "already listening" in again["reason"]
    channel.close()
    stopped = await eventually(lambda: scene.of_type(events.ClientStopped), "listener not stopped")
    assert stopped[0].name == "wanted"
    scene.assert_quiet()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (raw_frame(b"\xc1"), "undecodable msgpack"),
        (frame([1, 2]), "expected a msgpack map"),
        (frame({"kind": "explode"}), "unknown control message kind 'explode'"),
        (frame({"unique-name": "wanted"}), "unknown control message kind None"),
        (listener_request(7), '"unique-name" must be a non-empty string'),
        (listener_request("wanted", "22"), '"listen-port" must be a port number'),
        (listener_request("wanted", 0), '"listen-port" must be a port number'),
        (
            frame({"kind": "listener-response", "unique-name": "echo", "listening": "yes"}),
            '"listening" must be true or false',
        ),
    ],
)
@pytest_twisted.ensureDeferred
async def test_malformed_control_message_closes_that_channel(scene, data, reason):
    channel = await scene.peer.open(CONTROL)
    channel.send(data)
    await channel.wait_closed()
    assert bytes(channel.received) == b""  # nothing to answer to
    (refusal,) = scene.refused("message")
    assert reason in refusal.reason
    assert scene.of_type(events.ClientListening) == []
    await scene.echo_round_trip()
    scene.assert_quiet()


@pytest_twisted.ensureDeferred
async def test_partial_control_frame_holds_only_that_channel(scene):
    channel = await scene.peer.open(CONTROL)
    channel.send(raw_frame(b"\x83" + b"\xa1k" * 1000, declared_length=65535))  # never completed
    await scene.echo_round_trip()
    other = await scene.peer.open(CONTROL)
    other.send(listener_request("wanted"))
    assert (await other.next_frame())["listening"] is True
    assert channel.connected and bytes(channel.received) == b""
    scene.assert_quiet()


@pytest_twisted.ensureDeferred
async def test_unsolicited_listener_response_is_ignored(scene):
    channel = await scene.peer.open(CONTROL)
    channel.send(frame({"kind": "listener-response", "unique-name": "echo", "listening": True}))
    (refusal,) = await eventually(lambda: scene.refused("message"), "no refusal")
    assert refusal.name == "echo" and "unexpected" in refusal.reason
    channel.send(listener_request("wanted"))  # the channel is still usable
    assert (await channel.next_frame())["listening"] is True
    scene.assert_quiet()


@pytest_twisted.ensureDeferred
async def test_garbage_answer_to_our_service_request_fails_that_service_only(scene):
    scene.service_request.send(frame({"kind": "listener-response", "unique-name": "echo", "listening": 1}))
    await scene.service_request.wait_closed()
    (failed,) = scene.of_type(events.ServiceFailed)
    assert failed.name == "echo" and '"listening" must be true or false' in failed.reason
    channel = await scene.peer.open(CONTROL)
    channel.send(listener_request("wanted"))
    assert (await channel.next_frame())["listening"] is True
    scene.assert_quiet()


@pytest_twisted.ensureDeferred
async def test_flood_of_control_channels_beyond_the_limit(scene):
    opens = 4 * LIMITS.max_control_channels
    channels = [await scene.peer.open(CONTROL) for _ in range(opens)]
    await eventually(
        lambda: sum(c.closed.called for c in channels) >= opens - LIMITS.max_control_channels,
        "excess control channels not closed",
    )
    await sleep(0.2)  # would any more be closed?
    assert sum(c.closed.called for c in channels) == opens - LIMITS.max_control_channels
    refusals = scene.refused("listener")
    assert len(refusals) == opens - LIMITS.max_control_channels
    assert "too many control channels" in refusals[0].reason
    open_channels = [c for c in channels if not c.closed.called]
    open_channels[0].send(listener_request("wanted"))
    assert (await open_channels[0].next_frame())["listening"] is True
    scene.assert_quiet()


# --- the mailbox ---------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"\xff\xfe not json", b"[1, 2]", b'{"kind": "explode"}', b"null"])
@pytest_twisted.ensureDeferred
async def test_unknown_mailbox_message_is_refused_and_ignored(scene, payload):
    scene.peer.send_mailbox_message(payload)
    (refusal,) = await eventually(lambda: scene.refused("message"), "no refusal")
    assert "unknown mailbox message" in refusal.reason
    await scene.echo_round_trip()
    scene.assert_quiet()


# --- the other direction: the peer as a bad service ---------------------------------------


async def _connect_local(port: int) -> Protocol:
    class Collect(Protocol):
        def __init__(self) -> None:
            self.data = bytearray()
            self.lost: Deferred = Deferred()

        def dataReceived(self, data: bytes) -> None:
            self.data += data

        def connectionLost(self, reason: object) -> None:
            self.lost.callback(None)

    endpoint = TCP4ClientEndpoint(get_reactor(), LOOPBACK, port, timeout=STEP)
    return await endpoint.connect(Factory.forProtocol(Collect))


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (raw_frame(b"\xc1"), "undecodable msgpack"),
        (frame({"connected": "yes"}), '"connected" must be true or false'),
        (frame({"connected": False, "reason": {"nested": ["x"] * 5}}), "peer refused"),
        (frame({"connected": False}), "peer refused: no reason given"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_bad_stream_reply_from_the_peer_closes_the_local_connection(scene, reply, reason):
    control = await scene.peer.open(CONTROL)
    control.send(listener_request("wanted"))
    assert (await control.next_frame())["listening"] is True
    (listening,) = scene.of_type(events.ClientListening)
    local = await _connect_local(listening.port)
    stream = await scene.peer.incoming_stream()
    assert await stream.next_frame() == {"unique-name": "wanted"}
    stream.send(reply)
    await local.lost.addTimeout(STEP, get_reactor())
    assert bytes(local.data) == b""
    closed = await eventually(lambda: scene.of_type(events.StreamClosed), "stream not closed")
    assert closed[0].name == "wanted" and reason in (closed[0].reason or "")
    scene.assert_quiet()


# --- a real fowld process under a flood -------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_fowld_process_survives_floods_with_bounded_memory(mailbox, processes):
    async with against_fowld(processes, mailbox.url) as scene:
        fowld, peer = scene.fowld, scene.peer
        before = rss_kib(fowld.pid)
        limit = Limits().max_streams
        rss = []
        for _ in range(3):
            accepted, reasons = await flood(peer, 1000)
            assert accepted == limit
            assert reasons == {f"too many streams (limit {limit})"}
            await sleep(0.5)  # let the process finish its closing work
            rss.append(rss_kib(fowld.pid))
        await echo_round_trip(peer, 4 << 20)
        assert fowld.process.poll() is None, fowld.describe()
        # One flood may grow the heap once; later floods must reuse it, not add to it.
        assert rss[-1] - rss[0] < 8 * 1024, f"RSS {before} KiB before, then {rss} KiB"
        assert max(rss) - before < 64 * 1024, f"RSS {before} KiB before, then {rss} KiB"
        await scene.close_peer()
        await eventually(lambda: fowld.ended and fowld.process.poll() is not None, "fowld exited", STEP)
        assert fowld.process.returncode == 0, fowld.describe()
        lines = fowld.lines
        assert lines[-1]["kind"] == "closed"
        refused = [m for m in lines if m["kind"] == "error" and m.get("refused") == "stream"]
        assert len(refused) == 3 * (1000 - limit)
        _, stderr = processes.output(fowld.process)
        assert "Traceback" not in stderr and "Unhandled" not in stderr, stderr
        print(f"fowld RSS: {before} KiB after warm-up, {rss} KiB after each flood of 1000")
