"""A network fault between two fowld D-Bus daemons, watched through their Session properties.

The namespaces of test_durability.py, but each peer is a real ``fowld`` daemon
on a private bus of its own (started inside its namespace; the bus socket is a
file, reachable from anywhere), pairing through autostart fixed-code profiles
that name the hub's mailbox and relay. A background poller reads each session's
``State`` and ``Generation`` with busctl while alice's link is cut mid-transfer.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_daemon import BUS_NAME, MANAGER, MANAGER_PATH, SESSION, fixed_profile
from test_durability import LISTEN_PORT, MB, SINK_PORT, STEP, report, start_transfer

from harness.fowld import daemon_env, spawn_fowld, write_profile
from harness.netns import Hub, Side, Topology
from harness.servers import REPO_ROOT, ProcessGroup, start_dbus_bus
from harness.wait import until

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(
        shutil.which("busctl") is None or shutil.which("dbus-daemon") is None,
        reason="busctl (systemd) and dbus-daemon (dbus) are needed",
    ),
]

CODE = "7-fowl-durability-test"
PING = 2  # --ping-interval: a silent path is replaced after 4 s
POLL = 0.2  # seconds between two property reads
TOTAL = 30 * MB
RATE = 3 * MB  # bytes/s: a 10 s transfer, so the cut lands in its middle
CUT = 10.0  # seconds alice's link stays down
LIMIT = 60.0  # the longest any single wait may take


@dataclass
class Daemon:
    """One peer's fowld on its own bus, inside its namespace."""

    name: str
    side: Side
    bus: str
    process: subprocess.Popen

    def busctl(self, *args: str) -> subprocess.CompletedProcess:
        argv = self.side.exec(["busctl", f"--address={self.bus}", "--json=short", *args])
        return subprocess.run(argv, capture_output=True, text=True, timeout=10)

    def session_path(self) -> str | None:
        result = self.busctl("get-property", BUS_NAME, MANAGER_PATH, MANAGER, "Sessions")
        paths = json.loads(result.stdout)["data"] if result.returncode == 0 else []
        return paths[0] if paths else None

    def state(self, path: str) -> tuple[str, int] | None:
        """(State, Generation) of the session at ``path``, or None if it cannot be read now."""
        result = self.busctl("get-property", BUS_NAME, path, SESSION, "State", "Generation")
        if result.returncode != 0:
            return None
        values = [json.loads(line)["data"] for line in result.stdout.splitlines() if line.strip()]
        return values[0], values[1]


@dataclass
class Poller:
    """Reads a daemon's session State and Generation every POLL seconds on a thread."""

    daemon: Daemon
    path: str
    samples: list[tuple[float, str, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"poll-{self.daemon.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(POLL):
            read = self.daemon.state(self.path)
            if read is not None:
                self.samples.append((time.monotonic(), *read))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(LIMIT)

    def latest(self) -> tuple[float, str, int] | None:
        return self.samples[-1] if self.samples else None

    def wait(self, state: str, timeout: float, above: int = -1, since: float = 0.0) -> tuple[float, int]:
        """First sample at or after ``since`` in ``state`` with Generation above ``above``."""

        def found() -> tuple[float, int] | None:
            matching = (
                (seen, generation)
                for seen, value, generation in list(self.samples)
                if seen >= since and value == state and generation > above
            )
            return next(matching, None)

        def what() -> str:
            tail = [(s, g) for _, s, g in self.samples[-8:]]
            return f"{self.daemon.name}: {state!r} above generation {above}; last samples {tail}"

        return until(found, what, timeout, POLL)

    def states_between(self, start: float, end: float) -> list[str]:
        return [value for seen, value, _ in self.samples if start <= seen <= end]


@pytest.fixture
def bus_directory() -> Iterator[Path]:
    # short: a UNIX socket path is limited to about 100 bytes
    with tempfile.TemporaryDirectory(prefix="fowld-nsbus-") as directory:
        yield Path(directory)


def start_daemon(
    processes: ProcessGroup,
    topology: Topology,
    side: Side,
    name: str,
    bus_dir: Path,
    config: Path,
    body: str,
) -> Daemon:
    """A bus and a fowld in ``side`` whose only profile pairs with CODE through the hub."""
    profile = fixed_profile(topology.mailbox_url, topology.relay_hint, CODE, "on-failure", body)
    write_profile(config / "fowl" / "profiles", "durability", profile)
    bus_dir.mkdir(parents=True, exist_ok=True)
    bus = start_dbus_bus(processes, bus_dir, STEP, wrap=side.exec).address
    environment = daemon_env(bus, config)
    del environment["FOWL_DIRECT_ADDRESSES"]  # offer the namespace's real address to the peer
    options = ("-v", "--ping-interval", str(PING), "daemon")
    process = spawn_fowld(
        processes, *options, env=environment, wrap=side.exec, cwd=REPO_ROOT, name=f"fowld-{name}"
    )
    return Daemon(name, side, bus, process)


def session_of(daemon: Daemon, timeout: float) -> str:
    what = f"{daemon.name}: an autostarted session"
    return until(daemon.session_path, what, timeout, POLL, process=daemon.process)


@pytest.mark.timeout(120)
def test_daemons_report_reconnecting_through_a_link_cut(
    topology: Topology, hub: Hub, processes: ProcessGroup, bus_directory: Path, tmp_path: Path
) -> None:
    client = f"clients:\n  - {{name: data, listen: 'tcp:{LISTEN_PORT}:interface=127.0.0.1'}}\n"
    service = f"services:\n  - {{name: data, connect: 'tcp:127.0.0.1:{SINK_PORT}'}}\n"
    alice = start_daemon(
        processes, topology, topology.alice, "alice", bus_directory / "a", tmp_path / "alice", client
    )
    bob = start_daemon(
        processes, topology, topology.bob, "bob", bus_directory / "b", tmp_path / "bob", service
    )
    started = time.monotonic()
    pollers = [Poller(d, session_of(d, STEP)) for d in (alice, bob)]
    try:
        before = {p.daemon.name: p.wait("connected", LIMIT)[1] for p in pollers}
        connected_s = round(time.monotonic() - started, 1)
        topology.alice.wait_listening(LISTEN_PORT, STEP, alice.process)

        transfer = start_transfer(processes, topology, total=TOTAL, rate=RATE)
        transfer.wait_received(6 * MB, STEP)
        topology.alice.link(False)
        cut = time.monotonic()
        time.sleep(CUT)
        topology.alice.link(True)
        link_up = time.monotonic()

        figures: dict = {"connected_s": connected_s}
        recovered = []
        for poller in pollers:
            name = poller.daemon.name
            back, generation = poller.wait("connected", LIMIT, above=before[name], since=cut)
            recovered.append("reconnecting" in poller.states_between(cut, back))
            figures[f"{name}_saw_reconnecting"] = recovered[-1]
            figures[f"{name}_generation"] = f"{before[name]}->{generation}"
            figures[f"{name}_connected_after_up_s"] = round(back - link_up, 1)
        assert any(recovered), {p.daemon.name: p.states_between(cut, time.monotonic()) for p in pollers}
        assert transfer.finish(TOTAL / RATE + LIMIT) == TOTAL
        figures["finished_after_up_s"] = round(time.monotonic() - link_up, 1)
        for poller in pollers:  # the same engine session resumed: no supervisor restart
            restarts = poller.daemon.busctl("get-property", BUS_NAME, poller.path, SESSION, "Restarts")
            assert json.loads(restarts.stdout)["data"] == 0, f"{poller.daemon.name} restarted its session"
        report("daemons through a 10 s link cut", **figures)
    finally:
        for poller in pollers:
            poller.stop()
