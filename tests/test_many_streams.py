"""1,000 concurrent streams through one session, every one hash-checked in both directions.

All streams are opened first and each is held open at the service (the
HashServer waits for the bytes it was promised), so the session really
carries them all at once; then each sends its bytes up and checks the
digest and the bytes down.
"""

from __future__ import annotations

import os
import resource
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from fowld.engine.limits import Limits
from harness.peers import (
    HashServer,
    begin_exchange,
    complete_exchange,
    explained,
    pair,
    start_ours,
    wait_dilated,
)
from harness.wait import until

STREAMS = 1000
UP = DOWN = 4096
COMPLETING = 50  # streams finishing their exchange at once, after all were opened
LOOPBACK = "127.0.0.1"


@pytest.fixture
def open_files() -> None:
    """The test process holds every client socket and every service-side socket at once."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 3 * STREAMS + 100
    if hard < needed:
        pytest.skip(f"needs {needed} open files, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_default_stream_limit_admits_a_thousand_streams() -> None:
    assert Limits().max_streams >= STREAMS


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_thousand_concurrent_streams_through_one_session(processes, mailbox, transit_relay, open_files):
    if os.environ.get("FOWL_SLOW") != "1":
        pytest.skip("slow (about 30 s, 2,000 sockets): run with FOWL_SLOW=1")
    a, b = (start_ours(processes, mailbox.url, transit_relay.hint, label=label) for label in ("a", "b"))
    pair(a, b)
    for peer in (a, b):
        wait_dilated(peer)
    server = HashServer((LOOPBACK, 0), backlog=STREAMS, timeout=150.0)  # held until all are open
    try:
        since = b.mark()
        a.send("remote", name="hash", local_connect_port=server.port)
        b.send("local", name="hash")
        port = b.wait_kind("listening", since=since, name="hash")["listening_port"]
        started = time.monotonic()
        with explained(a, b):
            held = [begin_exchange((LOOPBACK, port), UP, DOWN, seed=n, timeout=60.0) for n in range(STREAMS)]
            until(
                lambda: server.connections == STREAMS or None, f"{STREAMS} streams reach the service", 120.0
            )
            opened = time.monotonic() - started
            with ThreadPoolExecutor(COMPLETING) as pool:
                list(pool.map(complete_exchange, held))  # re-raises the first failure
        checked = time.monotonic() - started
        print(f"\n{STREAMS} streams open at once after {opened:.1f} s, all checked after {checked:.1f} s")
        assert len(b.find("outgoing-connection", service_name="hash")) == STREAMS
        assert a.find("error") == b.find("error") == []
        for peer in (a, b):
            assert peer.find("outgoing-lost") == peer.find("incoming-lost") == []
    finally:
        server.stop()
