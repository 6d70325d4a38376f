"""Real network faults between two fowld peers in network namespaces (see netns.py).

Each test builds its own namespaces: alice wants the service "data" and
listens for it; bob offers it, ending at a sink. A source in alice's namespace
pushes deterministic bytes through the forward at a steady rate while the test
breaks the network; the SHA-256 at the sink must equal the source's.
Timings and memory figures are printed (``pytest -s``) for docs/reliability.md.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from harness.faults import (
    LISTEN_PORT,
    MB,
    PING,
    RATE,
    RECOVERY_LIMIT,
    STEP,
    TOTAL,
    Pair,
    connect_pair,
    generation,
    soak,
    start_transfer,
    wait_reconnected,
)
from harness.netns import (
    HUB_ADDRESS,
    RELAY_PORT,
    Hub,
    Topology,
    peer_environment,
    start_mailbox,
)
from harness.peers import JsonLines, kind_is
from harness.servers import REPO_ROOT, ProcessGroup
from harness.stats import rss_kib

pytestmark = pytest.mark.netns

MAX_RSS_GROWTH_KIB = 64 * 1024  # a stalled 20 MB/s source must not pile up in fowld


def report(what: str, **figures: object) -> None:
    print(f"\n[durability] {what}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


# link faults --------------------------------------------------------------


def cut_link_once(processes: ProcessGroup, topology: Topology, pair: Pair, seconds: float = 10.0) -> dict:
    """One 100 MB transfer with alice's link down for ``seconds`` in the middle; figures."""
    before = {peer.label: generation(peer) for peer in pair.peers}
    marks = {peer.label: peer.mark() for peer in pair.peers}
    rss_before = {peer.label: rss_kib(peer.pid) for peer in pair.peers}
    transfer = start_transfer(processes, topology)
    transfer.wait_received(20 * MB, STEP)
    topology.alice.link(False)
    time.sleep(seconds)
    rss_peak = {peer.label: rss_kib(peer.pid) for peer in pair.peers}
    topology.alice.link(True)
    link_up = time.monotonic()
    resumed = transfer.resumed_after(link_up, RECOVERY_LIMIT)
    assert transfer.finish(TOTAL / RATE + RECOVERY_LIMIT) == TOTAL
    figures: dict = {"resumed_s": round(resumed, 2)}
    for peer in pair.peers:
        back, new = wait_reconnected(peer, marks[peer.label], before[peer.label], STEP)
        figures[f"{peer.label}_connected_after_up_s"] = round(back - link_up, 1)
        figures[f"{peer.label}_generation"] = f"{before[peer.label]}->{new}"
        growth = rss_peak[peer.label] - rss_before[peer.label]
        assert growth < MAX_RSS_GROWTH_KIB, f"{peer.label} grew {growth} KiB while the link was down"
        figures[f"{peer.label}_rss_kib"] = f"{rss_before[peer.label]}->{rss_peak[peer.label]}"
    return figures


@pytest.mark.timeout(150)
def test_link_cut_mid_transfer(topology: Topology, hub: Hub, processes: ProcessGroup) -> None:
    pair = connect_pair(processes, topology)
    figures = cut_link_once(processes, topology, pair)
    report("link cut 10 s", **figures)
    assert figures["resumed_s"] < RECOVERY_LIMIT


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_link_cut_twenty_times(topology: Topology, hub: Hub, processes: ProcessGroup) -> None:
    if os.environ.get("FOWL_SLOW") != "1":
        pytest.skip("slow (about 5 minutes): run with FOWL_SLOW=1")
    pair = connect_pair(processes, topology)
    start_rss = {peer.label: rss_kib(peer.pid) for peer in pair.peers}
    resumed = []
    for number in range(20):
        figures = cut_link_once(processes, topology, pair)
        resumed.append(figures["resumed_s"])
        report(f"link cut {number + 1}/20", **figures)
    end_rss = {peer.label: rss_kib(peer.pid) for peer in pair.peers}
    report(
        "twenty link cuts",
        passed=len(resumed),
        resumed_max_s=max(resumed),
        resumed_median_s=sorted(resumed)[len(resumed) // 2],
        rss_kib={name: f"{start_rss[name]}->{end_rss[name]}" for name in start_rss},
    )
    assert len(resumed) == 20


MAX_SOAK_GROWTH_KIB = 5 * 1024  # RSS after the last cut, against after the first


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_forty_cuts_keep_memory_flat(topology: Topology, hub: Hub, processes: ProcessGroup) -> None:
    """40 cuts of 5 s under a steady stream (bench/soak.py measures the same way)."""
    if os.environ.get("FOWL_SLOW") != "1":
        pytest.skip("slow (about 9 minutes): run with FOWL_SLOW=1")
    pair = connect_pair(processes, topology)
    minutes = 40 * 12 / 60 + 0.5
    result = soak(processes, topology, pair, minutes, cut_every=12, cut_for=5, rate=10 * MB)
    first, last = result.after_first_cut, result.rss_kib[-1][1:]
    report("forty cuts", cuts=result.cuts, recovered_max_s=max(result.recoveries), rss_kib=f"{first}->{last}")
    assert result.cuts >= 40, result.cuts
    for name, before, after in zip(("alice", "bob"), first, last, strict=True):
        assert after - before < MAX_SOAK_GROWTH_KIB, f"{name} grew {after - before} KiB over the cuts"


def move_each_side(processes: ProcessGroup, topology: Topology, ping: float | None, limit: float) -> None:
    """Each side in turn gets a new address mid-transfer; the old one is gone for good."""
    pair = connect_pair(processes, topology, ping)
    transfer = start_transfer(processes, topology)
    received = 20 * MB
    for peer, new_address in ((pair.alice, "10.231.0.12"), (pair.bob, "10.231.0.13")):
        transfer.wait_received(received, STEP)
        before = {p.label: generation(p) for p in pair.peers}
        marks = {p.label: p.mark() for p in pair.peers}
        pair.side(peer).move_to(new_address)
        moved = time.monotonic()
        resumed = transfer.resumed_after(moved, limit)
        figures: dict = {"ping": ping or "default", "resumed_s": round(resumed, 2)}
        for p in pair.peers:
            back, new = wait_reconnected(p, marks[p.label], before[p.label], limit)
            figures[f"{p.label}_connected_s"] = round(back - moved, 1)
            figures[f"{p.label}_generation"] = f"{before[p.label]}->{new}"
        report(f"{peer.label} moved to {new_address}", **figures)
        assert resumed < limit
        counts = [m["received"] for m in transfer.sink.lines if "received" in m]
        received = counts[-1] + 20 * MB
    assert transfer.finish(TOTAL / RATE + limit) == TOTAL


@pytest.mark.timeout(240)
def test_address_change_on_each_side(topology: Topology, hub: Hub, processes: ProcessGroup) -> None:
    move_each_side(processes, topology, PING, RECOVERY_LIMIT)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_address_change_with_default_ping(topology: Topology, hub: Hub, processes: ProcessGroup) -> None:
    """With the default 30 s interval a moved follower waits for the leader's pings (up to 60 s)."""
    if os.environ.get("FOWL_SLOW") != "1":
        pytest.skip("slow (up to 3 minutes): run with FOWL_SLOW=1")
    move_each_side(processes, topology, None, 2 * 30 + 15)


@pytest.mark.timeout(120)
def test_connection_reset(topology: Topology, hub: Hub, processes: ProcessGroup) -> None:
    """The kernel aborts the peer connection (RST), once from each side."""
    pair = connect_pair(processes, topology)
    transfer = start_transfer(processes, topology)
    received = 20 * MB
    for peer, other in ((pair.alice, pair.bob), (pair.bob, pair.alice)):
        transfer.wait_received(received, STEP)
        before = {p.label: generation(p) for p in pair.peers}
        marks = {p.label: p.mark() for p in pair.peers}
        # the peer connection, direct or through the relay
        relay = f"{HUB_ADDRESS}:{RELAY_PORT}"
        assert pair.side(peer).reset_connections(pair.side(other).address, relay) >= 1
        reset = time.monotonic()
        resumed = transfer.resumed_after(reset, RECOVERY_LIMIT)
        figures: dict = {"resumed_s": round(resumed, 2)}
        for p in pair.peers:
            back, new = wait_reconnected(p, marks[p.label], before[p.label], RECOVERY_LIMIT)
            figures[f"{p.label}_generation"] = f"{before[p.label]}->{new}"
            figures[f"{p.label}_connected_s"] = round(back - reset, 1)
        report(f"reset by {peer.label}", **figures)
        received += 20 * MB
    assert transfer.finish(TOTAL / RATE + RECOVERY_LIMIT) == TOTAL


@pytest.mark.timeout(90)
def test_direct_path_blocked_uses_relay(topology: Topology, hub: Hub, processes: ProcessGroup) -> None:
    topology.alice.block(topology.bob.address)
    topology.bob.block(topology.alice.address)
    pair = connect_pair(processes, topology)
    for peer in pair.peers:
        status = peer.find("status")[-1]
        assert status["path"] == "relay", status
        assert f"{HUB_ADDRESS}:{RELAY_PORT}" in status["hint"], status
    transfer = start_transfer(processes, topology, total=20 * MB)
    assert transfer.finish(STEP + 20 * MB / RATE) == 20 * MB


@pytest.mark.timeout(120)
def test_mailbox_restart_keeps_sessions(topology: Topology, hub: Hub, processes: ProcessGroup) -> None:
    pair = connect_pair(processes, topology)
    transfer = start_transfer(processes, topology)
    transfer.wait_received(20 * MB, STEP)
    marks = {peer.label: peer.mark() for peer in pair.peers}
    processes.stop(hub.mailbox)
    for peer in pair.peers:
        peer.wait_for(lambda m: m.get("kind") == "status" and m["mailbox"] != "connected", STEP)
    start_mailbox(processes, hub.side)
    restarted = time.monotonic()
    assert transfer.finish(TOTAL / RATE + STEP) == TOTAL
    # a new stream after the restart still goes through
    second = start_transfer(processes, topology, total=5 * MB)
    assert second.finish(STEP) == 5 * MB
    figures = {}
    for peer in pair.peers:
        back = peer.wait_seen(kind_is("status", mailbox="connected"), STEP, marks[peer.label]).at
        figures[f"{peer.label}_mailbox_back_s"] = round(back - restarted, 1)
        status = peer.find("status")[-1]
        assert status["phase"] == "connected", status
        errors = peer.find("error", marks[peer.label])
        assert not errors, errors
    report("mailbox restarted", **figures)


@pytest.mark.timeout(120)
def test_killed_peer_is_reported_lost(topology: Topology, hub: Hub, processes: ProcessGroup) -> None:
    ping = 1.0
    pair = connect_pair(processes, topology, ping, "--peer-lost-timeout", "10")
    assert topology.alice.listening(LISTEN_PORT)
    pair.bob.process.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    lost_at = pair.alice.wait_seen(
        lambda m: m.get("kind") == "status" and "peer lost" in m.get("reason", ""), 60.0
    ).at
    closed_at = pair.alice.wait_seen(kind_is("closed"), 30.0).at
    assert not topology.alice.listening(LISTEN_PORT)
    assert pair.alice.process.wait(STEP) == 0
    report("bob killed", lost_after_s=round(lost_at - killed, 1), closed_after_s=round(closed_at - killed, 1))
    assert lost_at - killed < 10 + 10  # --peer-lost-timeout 10, plus detection slack


@pytest.mark.timeout(60)
def test_vanished_address_is_noticed(topology: Topology) -> None:
    """The check fowld.wormhole.liveness relies on, run where the address really goes away."""
    alice = topology.alice
    probe = (
        "from fowld.wormhole.liveness import address_is_local as l; import sys; print(*map(l, sys.argv[1:]))"
    )

    def local(*addresses: str) -> list[str]:
        argv = alice.exec([sys.executable, "-c", probe, *addresses])
        return subprocess.run(argv, capture_output=True, text=True, check=True, cwd=REPO_ROOT).stdout.split()

    old = alice.address
    assert local(old, "127.0.0.1", "10.231.0.12") == ["True", "True", "False"]
    alice.move_to("10.231.0.12")
    assert local(old, "127.0.0.1", "10.231.0.12") == ["False", "True", "True"]


# Run in alice's namespace: one TCP connection from alice's address to itself, watched by a
# Liveness whose periodic check is an hour away, so only a notification can drop it in time.
NOTICED_PROBE = """
import json, sys, time
from types import SimpleNamespace
from twisted.internet import protocol, reactor
from fowld.wormhole import liveness

liveness.CHECK_INTERVAL = 3600.0
address = sys.argv[1]

def say(**line):
    print(json.dumps(line), flush=True)

class Client(protocol.Protocol):
    def connectionMade(self):
        connection = SimpleNamespace(transport=self.transport)
        dilated = SimpleNamespace(_manager=SimpleNamespace(_connection=connection))
        watch = liveness.Liveness(reactor, SimpleNamespace(), dilated, 3600.0)
        watch.startService()
        say(ready=True, notified=liveness._schedule_for(reactor).notified)

    def connectionLost(self, reason):
        say(dropped=time.monotonic(), reason=reason.type.__name__)
        reactor.stop()

server = reactor.listenTCP(0, protocol.Factory.forProtocol(protocol.Protocol), interface=address)
port = server.getHost().port
protocol.ClientCreator(reactor, Client).connectTCP(address, port, bindAddress=(address, 0))
reactor.callLater(60, reactor.stop)
reactor.run()
"""


@pytest.mark.timeout(60)
def test_removed_address_is_noticed_within_a_second_without_probing(
    topology: Topology, processes: ProcessGroup
) -> None:
    alice = topology.alice
    process = processes.spawn(
        alice.exec([sys.executable, "-c", NOTICED_PROBE, alice.address]),
        env=peer_environment(),
        stdout=subprocess.PIPE,
        cwd=REPO_ROOT,
        name="noticed-probe",
    )
    lines = JsonLines(process.stdout, "noticed-probe")
    ready = lines.wait_seen(lambda line: "ready" in line, STEP).line
    assert ready["notified"] is True  # netlink is there: no periodic bind() probes
    removed = time.monotonic()
    alice.move_to("10.231.0.12")
    dropped = lines.wait_seen(lambda line: "dropped" in line, 10.0).line
    report("address removed", dropped_after_s=round(dropped["dropped"] - removed, 3))
    assert dropped["reason"] == "ConnectionAborted"
    assert dropped["dropped"] - removed < 1.0
