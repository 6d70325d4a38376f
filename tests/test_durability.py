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
from dataclasses import dataclass

import pytest

from harness.netns import (
    HUB_ADDRESS,
    PROGRESS_STEP,
    RELAY_PORT,
    Hub,
    Side,
    Topology,
    fowld_argv,
    peer_environment,
    start_mailbox,
    traffic_argv,
)
from harness.peers import JsonLines, StdioPeer, kind_is
from harness.servers import REPO_ROOT, ProcessGroup
from harness.stats import rss_kib
from harness.wait import until

pytestmark = pytest.mark.netns

MB = 1_000_000
TOTAL = 100 * MB
RATE = 20 * MB  # bytes/s: slow enough that faults land mid-stream, fast enough for short tests
PING = 2.0  # --ping-interval for the peers: a silent path is replaced after 4 s
LISTEN_PORT = 7000  # alice's listener for "data" (each test has fresh namespaces)
SINK_PORT = 7100  # bob's sink
STEP = 20.0  # seconds for one setup step
RECOVERY_LIMIT = 60.0  # data must flow again within this many seconds of a fault's end
MAX_RSS_GROWTH_KIB = 64 * 1024  # a stalled 20 MB/s source must not pile up in fowld


@dataclass
class Pair:
    alice: StdioPeer  # wants "data", listens on LISTEN_PORT
    bob: StdioPeer  # offers "data", connects to SINK_PORT
    topology: Topology

    @property
    def peers(self) -> tuple[StdioPeer, StdioPeer]:
        return self.alice, self.bob

    def side(self, peer: StdioPeer) -> Side:
        return self.topology.alice if peer is self.alice else self.topology.bob


def start_peer(
    processes: ProcessGroup, topology: Topology, side: Side, name: str, ping: float | None, *extra: str
) -> StdioPeer:
    process = processes.spawn(
        side.exec(fowld_argv(topology, ping, *extra)),
        env=peer_environment(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=REPO_ROOT,
        name=f"fowld-{name}",
    )
    return StdioPeer(process, processes, name)


def connect_pair(processes: ProcessGroup, topology: Topology, ping: float | None = PING, *extra: str) -> Pair:
    pair = Pair(
        start_peer(processes, topology, topology.alice, "alice", ping, *extra),
        start_peer(processes, topology, topology.bob, "bob", ping, *extra),
        topology,
    )
    for peer in pair.peers:
        peer.send("status", watch=True)
    pair.alice.send("allocate-code")
    code = pair.alice.wait_kind("code-allocated", STEP)["code"]
    pair.bob.send("set-code", code=code)
    pair.bob.send("remote", name="data", local_connect_port=SINK_PORT)
    pair.alice.send("local", name="data", local_listen_port=LISTEN_PORT)
    pair.alice.wait_kind("listening", STEP, name="data")
    for peer in pair.peers:
        peer.wait_kind("status", STEP, phase="connected")
    return pair


@dataclass
class Transfer:
    source: JsonLines
    sink: JsonLines

    def wait_received(self, count: int, timeout: float) -> float:
        """When the sink had at least ``count`` bytes."""
        return self.sink.wait_seen(lambda m: m.get("received", 0) >= count, timeout).at

    def finish(self, timeout: float) -> int:
        """Wait for both ends; assert every byte arrived intact; the byte count."""
        sent = self.source.wait_for(lambda m: m.get("done"), timeout)
        received = self.sink.wait_for(lambda m: m.get("done"), timeout)
        assert received["received"] == sent["sent"], (sent, received)
        assert received["sha256"] == sent["sha256"], (sent, received)
        return received["received"]

    def resumed_after(self, moment: float, timeout: float) -> float:
        """Seconds from ``moment`` until bytes the source sent after it reached the sink."""
        sent = [m["sent"] for m in self.source.lines if "sent" in m]
        beyond = (sent[-1] if sent else 0) + PROGRESS_STEP
        arrived = self.sink.wait_seen(lambda m: m.get("received", 0) >= beyond, timeout).at
        return max(arrived - moment, 0.0)


def start_transfer(
    processes: ProcessGroup, topology: Topology, total: int = TOTAL, rate: float = RATE
) -> Transfer:
    sink = processes.spawn(
        topology.bob.exec(traffic_argv("sink", SINK_PORT)), stdout=subprocess.PIPE, name="sink"
    )
    sink_lines = JsonLines(sink.stdout, "sink")
    sink_lines.wait_for(lambda m: "listening" in m, STEP)
    source = processes.spawn(
        topology.alice.exec(traffic_argv("source", LISTEN_PORT, total, rate)),
        stdout=subprocess.PIPE,
        name="source",
    )
    return Transfer(JsonLines(source.stdout, "source"), sink_lines)


def generation(peer: StdioPeer) -> int:
    return peer.find("status")[-1]["generation"]


def wait_reconnected(peer: StdioPeer, after: int, before: int, timeout: float) -> tuple[float, int]:
    """Wait until the peer has said "reconnecting" and is "connected" again, above generation ``before``.

    Looks at status lines from index ``after``; call it once data flows again. Returns when the
    last "reconnecting" was followed by "connected", and the new generation.
    """

    def back() -> tuple[float, int] | None:
        statuses = peer.timed(after, "status")
        phases = [m["phase"] for _, m in statuses]
        if "reconnecting" not in phases or phases[-1] != "connected":
            return None
        last_down = len(phases) - 1 - phases[::-1].index("reconnecting")
        at, line = next((t, m) for t, m in statuses[last_down:] if m["phase"] == "connected")
        return (at, line["generation"]) if line["generation"] > before else None

    def what() -> str:
        phases = [m["phase"] for m in peer.find("status", after)]
        return f"{peer.label}: reconnecting then connected; phases {phases[-12:]}"

    return until(back, what, timeout, 0.1)


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
