"""A peer that sleeps (SIGSTOP) comes back to the same session, with every byte intact.

By default no session ends because its peer is away: the awake side says
since when the peer has been unreachable (a ``peer-unreachable`` line and the
status reason) and waits. Two real ``fowld --stdio`` processes on loopback
with their default options (only the keep-alive is shorter, so the tests need
not wait for it); a hash-checked transfer runs through the sleep.

The slow test sleeps each side for 15 minutes, longer than the mailbox's
prune of idle channels (about 11 minutes): ``FOWL_SLOW=1``.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from harness.peers import StdioPeer, exchange, explained

LOOPBACK = "127.0.0.1"
MB = 1_000_000
PING = "1"  # seconds; the default 10 s only makes detection slower
SILENCE = 3600.0  # seconds the test's service waits on a quiet connection (its peer sleeps)


def _offer(service_side: StdioPeer, client_side: StdioPeer, server_port: int) -> int:
    service_side.send("remote", name="svc", local_connect_port=server_port)
    client_side.send("local", name="svc")
    port = client_side.wait_kind("listening", name="svc")["listening_port"]
    service_side.wait_kind("awaiting-connect", name="svc")
    return port


def _sleep_through_transfer(
    a: StdioPeer, b: StdioPeer, sleeper: StdioPeer, port: int, seconds: float
) -> None:
    """Transfer hash-checked bytes through ``port`` while ``sleeper`` is stopped for ``seconds``."""
    awake = b if sleeper is a else a
    code = _status(a)["code"]
    since = awake.mark()
    awake.send("status", watch=True)

    def sleep() -> None:
        sleeper.process.send_signal(signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            sleeper.process.send_signal(signal.SIGCONT)

    with explained(a, b):
        exchange((LOOPBACK, port), 8 * MB, 2 * MB, timeout=seconds + 120, midway=sleep)
        told = awake.find("peer-unreachable", since=since)
        assert told and told[-1]["seconds"] >= 30, awake.describe()
        statuses = awake.find("status", since=since)
        reasons = [s["reason"] for s in statuses]
        assert any(r.startswith("peer unreachable since") for r in reasons), reasons
        # every reconnecting status says why; none says so once connected again
        assert all(s["reason"] for s in statuses if s["phase"] == "reconnecting"), statuses
        for peer in (a, b):  # one session throughout: nobody closed or started afresh
            status = _status(peer)
            assert status["phase"] == "connected" and status["reason"] == "", status
            assert status["code"] == code, status
            assert not peer.find("closed"), peer.describe()
    awake.send("status", watch=False)


def _status(peer: StdioPeer) -> dict:
    since = peer.mark()
    peer.send("status")
    return peer.wait_kind("status", since=since)


@pytest.mark.timeout(240)
def test_a_sleeping_peer_comes_back_to_the_same_session(connected, hash_server):
    a, b = connected("--ping-interval", PING)
    port = _offer(a, b, hash_server(timeout=SILENCE).port)
    _sleep_through_transfer(a, b, a, port, 40)
    # the session goes on: a second transfer after the sleep
    exchange((LOOPBACK, port), 1 * MB, 1 * MB)


@pytest.mark.slow
@pytest.mark.timeout(2 * 15 * 60 + 600)
def test_each_side_sleeps_past_the_mailbox_prune(connected, hash_server):
    if os.environ.get("FOWL_SLOW") != "1":
        pytest.skip("slow (about 32 minutes): run with FOWL_SLOW=1")
    a, b = connected("--ping-interval", PING)
    port = _offer(a, b, hash_server(timeout=SILENCE).port)
    for sleeper in (a, b):
        started = time.monotonic()
        _sleep_through_transfer(a, b, sleeper, port, 15 * 60)
        took = time.monotonic() - started
        print(f"\n{sleeper.label} slept 15 min: transfer done {took:.1f} s after it began")
