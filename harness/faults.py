"""Two ``fowld --stdio`` peers in network namespaces, a steady hash-checked stream, faults.

Shared by the namespace tests (tests/test_durability.py) and the soak benchmark
(bench/soak.py). Alice wants the service "data" and listens for it on
``LISTEN_PORT``; bob offers it, ending at a sink on ``SINK_PORT``. A source in
alice's namespace pushes deterministic bytes at a steady rate; the sink's
SHA-256 must equal the source's.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.netns import PROGRESS_STEP, Side, Topology, fowld_argv, peer_environment, traffic_argv
from harness.peers import JsonLines, StdioPeer
from harness.servers import REPO_ROOT, ProcessGroup
from harness.stats import rss_kib
from harness.wait import until

MB = 1_000_000
TOTAL = 100 * MB
RATE = 20 * MB  # bytes/s: slow enough that faults land mid-stream, fast enough for short tests
PING = 2.0  # --ping-interval for the peers: a silent path is replaced after 4 s
LISTEN_PORT = 7000  # alice's listener for "data" (each test has fresh namespaces)
SINK_PORT = 7100  # bob's sink
STEP = 20.0  # seconds for one setup step
RECOVERY_LIMIT = 60.0  # data must flow again within this many seconds of a fault's end

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



# soak: a steady stream, a link cut every few seconds --------------------------------------


@dataclass
class Soak:
    """What one soak run measured; ``rss_kib`` holds (seconds since start, alice, bob) samples."""

    cuts: int = 0
    recoveries: list[float] = field(default_factory=list)  # seconds until data flowed again
    rss_kib: list[tuple[float, int, int]] = field(default_factory=list)
    after_first_cut: tuple[int, int] = (0, 0)  # RSS of alice and bob once the first cut recovered
    sent: int = 0
    sha256: str = ""
    seconds: float = 0.0


def soak(
    processes: ProcessGroup,
    topology: Topology,
    pair: Pair,
    minutes: float,
    cut_every: float,
    cut_for: float,
    rate: float,
    say: Callable[[str], None] | None = None,
) -> Soak:
    """Stream at ``rate`` for ``minutes``, cutting alice's link for ``cut_for`` s every ``cut_every`` s.

    Cuts start on a fixed schedule (one every ``cut_every`` s from the start, or at once when
    a recovery took longer). Every byte is hash-checked at the end. ``say(text)``, if given,
    hears each cut's figures.
    """
    result = Soak()
    total = int(rate * minutes * 60)
    started = time.monotonic()
    transfer = start_transfer(processes, topology, total=total, rate=rate)
    transfer.wait_received(min(total, PROGRESS_STEP), STEP)

    def sample() -> None:
        alice, bob = (rss_kib(peer.pid) for peer in pair.peers)
        result.rss_kib.append((round(time.monotonic() - started, 1), alice, bob))

    sample()
    deadline = started + minutes * 60 - cut_every
    while (next_cut := started + (result.cuts + 1) * cut_every - cut_for) < deadline:
        time.sleep(max(0.0, next_cut - time.monotonic()))
        topology.alice.link(False)
        time.sleep(cut_for)
        topology.alice.link(True)
        result.recoveries.append(round(transfer.resumed_after(time.monotonic(), RECOVERY_LIMIT), 2))
        result.cuts += 1
        sample()
        if result.cuts == 1:
            result.after_first_cut = result.rss_kib[-1][1:]
        if say is not None:
            rss = result.rss_kib[-1][1:]
            say(f"cut {result.cuts}: data again after {result.recoveries[-1]} s, RSS KiB {rss}")
    result.sent = transfer.finish(total / rate + RECOVERY_LIMIT)
    result.sha256 = transfer.sink.wait_for(lambda m: m.get("done"), STEP)["sha256"]
    result.seconds = round(time.monotonic() - started, 1)
    sample()
    return result
