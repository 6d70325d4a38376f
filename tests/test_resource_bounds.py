"""Memory stays bounded against a peer without limits and a local reader that lags.

Every case runs real ``fowld --stdio`` processes with their default limits
(``fowld/limits.py``) and reads their resident memory (``VmRSS``) from /proc.
The default run is short; ``FOWL_SLOW=1`` runs the sizes the figures in
docs/reliability.md come from.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
import pytest_twisted
from hostile_peer import (
    CONTROL,
    HostilePeer,
    RawChannel,
    against_fowld,
    echo_round_trip,
    flood,
    listener_request,
)

from fowld.engine.limits import Limits
from harness.peers import StdioPeer, explained, pair, start_ours, wait_dilated
from harness.servers import LOOPBACK
from harness.stats import rss_kib
from harness.wait import eventually

SLOW = os.environ.get("FOWL_SLOW") == "1"
SLOW_REASON = "slow: run with FOWL_SLOW=1"
RSS_BOUND_KIB = 16 * 1024  # growth allowed for one fowld process
LIMITS = Limits()  # what a fowld process runs with unless told otherwise
FLOOD_ROUND = 1000  # stream opens or listener requests sent at once


def _attempts(count: int, seconds: int) -> pytest.param:
    """A count of attempts; beyond the default run's, marked slow and skipped without FOWL_SLOW."""
    if count <= 2000:
        return pytest.param(count, id=str(count))
    marks = [pytest.mark.slow, pytest.mark.timeout(seconds), pytest.mark.skipif(not SLOW, reason=SLOW_REASON)]
    return pytest.param(count, id=str(count), marks=marks)


# --- a hostile peer against a real process ---------------------------------------------------


@dataclass
class Target:
    """A real ``fowld --stdio`` offering ``echo`` and wanting ``wanted``, joined by a hostile peer."""

    fowld: StdioPeer
    peer: HostilePeer

    def refusals(self, what: str) -> list[dict]:
        return [m for m in self.fowld.find("error") if m.get("refused") == what]

    def rss_kib(self) -> int:
        assert self.fowld.process.poll() is None, self.fowld.describe()
        return rss_kib(self.fowld.pid)


@pytest_twisted.async_yield_fixture
async def target(mailbox, processes) -> AsyncIterator[Target]:
    async with against_fowld(processes, mailbox.url) as scene:
        yield Target(scene.fowld, scene.peer)
        assert scene.fowld.process.poll() is None, scene.fowld.describe()
        _, stderr = processes.output(scene.fowld.process)
        assert "Traceback" not in stderr and "Unhandled" not in stderr, stderr[-3000:]


@pytest.mark.parametrize("attempts", [_attempts(2000, 120), _attempts(10_000, 600)])
@pytest_twisted.ensureDeferred
async def test_endless_stream_opens_keep_memory_bounded(target, attempts):
    before = target.rss_kib()
    started = time.monotonic()
    accepted = 0
    for _ in range(attempts // FLOOD_ROUND):
        served, reasons = await flood(target.peer, FLOOD_ROUND)
        assert served == LIMITS.max_streams
        assert reasons == {f"too many streams (limit {LIMITS.max_streams})"}
        accepted += served
    elapsed = time.monotonic() - started
    await echo_round_trip(target.peer, 4 << 20)
    after = target.rss_kib()

    def all_refusals() -> list[dict] | None:
        refusals = target.refusals("stream")
        return refusals if len(refusals) == attempts - accepted else None

    refused = await eventually(all_refusals, "not every refusal reported")
    assert {m["message"] for m in refused} == {
        f"refused stream: too many streams (limit {LIMITS.max_streams})"
    }
    print(f"\n{attempts} stream opens in {elapsed:.1f}s: RSS {before} -> {after} KiB ({after - before:+d})")
    assert after - before < RSS_BOUND_KIB, f"RSS {before} KiB before, {after} KiB after {attempts} opens"


async def _request_round(peer: HostilePeer, count: int) -> list[dict]:
    """One control channel: ``wanted`` once, then undeclared names; the answers given at once.

    At most ``max_pending_requests`` undeclared names may wait for a declaration; every
    other request is answered right away, so that many answers are read, then the channel
    is closed with the waiting ones still pending.
    """
    channel: RawChannel = await peer.open(CONTROL)
    names = ["wanted"] + [f"ghost-{i}" for i in range(count - 1)]
    channel.send(b"".join(listener_request(name) for name in names))
    replies = [await channel.next_frame() for _ in range(count - LIMITS.max_pending_requests)]
    channel.close()
    await channel.wait_closed()
    return replies


@pytest.mark.parametrize("attempts", [_attempts(2000, 120), _attempts(10_000, 600)])
@pytest_twisted.ensureDeferred
async def test_endless_listener_requests_keep_memory_bounded(target, attempts):
    before = target.rss_kib()
    started = time.monotonic()
    replies: list[dict] = []
    for _ in range(attempts // FLOOD_ROUND):
        replies += await _request_round(target.peer, FLOOD_ROUND)
    elapsed = time.monotonic() - started
    bound = [r for r in replies if r["listening"]]
    assert {r["unique-name"] for r in bound} == {"wanted"}
    # the only other answers: "too many pending", or "already listening" for a stop still under way
    reasons = {r["reason"] for r in replies if not r["listening"]}
    assert reasons <= {"too many pending listener requests", "already listening for 'wanted'"}, reasons
    too_many = [r for r in replies if not r["listening"] and r["reason"].startswith("too many pending")]
    assert len(too_many) >= attempts - (attempts // FLOOD_ROUND) * (1 + LIMITS.max_pending_requests)
    # a legitimate listener and a legitimate stream still work
    channel = await target.peer.open(CONTROL)
    channel.send(listener_request("wanted"))
    assert (await channel.next_frame())["listening"] is True
    await echo_round_trip(target.peer, 4 << 20)
    after = target.rss_kib()
    print(
        f"\n{attempts} listener requests in {elapsed:.1f}s: RSS {before} -> {after} KiB ({after - before:+d})"
    )
    assert after - before < RSS_BOUND_KIB, f"RSS {before} KiB before, {after} KiB after {attempts} requests"


# --- a slow local reader ---------------------------------------------------------------------

MB = 1_000_000
SLOW_RATE = 1 * MB  # bytes per second while the reader lags
SAMPLE_EVERY = 0.5  # seconds between RSS readings


class Source:
    """A local service that sends ``size`` deterministic bytes to its first client, then closes."""

    def __init__(self, size: int):
        self.size = size
        self.digest = hashlib.sha256()
        self.error: BaseException | None = None
        self._sock = socket.create_server((LOOPBACK, 0))
        self._sock.settimeout(30)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        block = hashlib.sha256(b"block").digest() * 2048  # 64 KiB
        try:
            conn, _ = self._sock.accept()
            with conn:
                conn.settimeout(60)
                left, counter = self.size, 0
                while left:
                    # numbered blocks, so a lost or repeated block changes the digest
                    chunk = (counter.to_bytes(8, "big") + block[8:])[:left]
                    conn.sendall(chunk)
                    self.digest.update(chunk)
                    left -= len(chunk)
                    counter += 1
        except OSError as e:
            self.error = e

    def close(self) -> None:
        self._sock.close()
        self._thread.join(5)


def read_slowly_then_fast(port: int, size: int, slow_seconds: float, poll: Callable[[], None]) -> bytes:
    """Read ``size`` bytes from a client listener: SLOW_RATE for ``slow_seconds``, then at full speed.

    ``poll`` is called between reads at least every SAMPLE_EVERY; returns the SHA-256 of the bytes.
    """
    digest = hashlib.sha256()
    received = 0
    started = time.monotonic()
    next_poll = started
    with socket.create_connection((LOOPBACK, port), timeout=60) as sock:
        while received < size:
            now = time.monotonic()
            if now >= next_poll:
                poll()
                next_poll = now + SAMPLE_EVERY
            slow = now - started < slow_seconds
            data = sock.recv(SLOW_RATE // 10 if slow else 1 << 20)
            if not data:
                break
            digest.update(data)
            received += len(data)
            if slow:
                time.sleep(len(data) / SLOW_RATE)
    assert received == size, f"got {received} of {size} bytes"
    return digest.digest()


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(200 * MB, id="200MB"),
        pytest.param(
            1000 * MB,
            id="1GB",
            marks=[
                pytest.mark.slow,
                pytest.mark.timeout(900),
                pytest.mark.skipif(not SLOW, reason=SLOW_REASON),
            ],
        ),
    ],
)
def test_slow_local_reader_keeps_both_sides_small(processes, mailbox, size):
    sender = start_ours(processes, mailbox.url, "none", label="sender")
    receiver = start_ours(processes, mailbox.url, "none", label="receiver")
    source = Source(size)
    try:
        with explained(sender, receiver):
            pair(sender, receiver)
            for peer in (sender, receiver):
                wait_dilated(peer)
            sender.send("remote", name="bulk", connect=f"tcp:{LOOPBACK}:{source.port}")
            receiver.send("local", name="bulk")
            port = receiver.wait_kind("listening", name="bulk")["listening_port"]
            peers = {"sender": sender, "receiver": receiver}
            baseline = {label: rss_kib(p.process.pid) for label, p in peers.items()}
            samples: dict[str, list[int]] = {label: [] for label in peers}

            def sample() -> None:
                for label, peer in peers.items():
                    peer.mark()  # keep its stdout pipe drained
                    samples[label].append(rss_kib(peer.process.pid))

            started = time.monotonic()
            got = read_slowly_then_fast(port, size, 10.0, sample)
            elapsed = time.monotonic() - started
            sample()
        assert source.error is None, source.error
        assert got == source.digest.digest(), "the bytes arrived damaged"
        growth = {label: max(samples[label]) - baseline[label] for label in peers}
        print(
            f"\n{size // MB} MB in {elapsed:.1f}s ({len(samples['sender'])} samples): "
            + ", ".join(
                f"{label} RSS {baseline[label]} KiB, max growth {growth[label]} KiB" for label in peers
            )
        )
        for label in peers:
            assert growth[label] <= RSS_BOUND_KIB, (
                f"{label}: RSS {baseline[label]} KiB, then {samples[label]}"
            )
    finally:
        source.close()
        for peer in (receiver, sender):
            peer.stop()
