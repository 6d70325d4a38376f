"""Network namespaces for fault tests: two peers and a hub, joined by veth pairs.

    alice (eth0 10.231.0.2/24) ---veth--- hub (br0 10.231.0.1/24) ---veth--- (eth0 10.231.0.3/24) bob

The hub runs the mailbox server and the transit relay; alice and bob each run
``fowld --stdio`` and the programs whose bytes they forward. The addresses
exist only inside these namespaces; nothing outside them is touched. Every
namespace is named ``fowlt-<pid>-<n>-<role>`` so that namespaces left behind
by a crashed run (whose pid is gone) can be found and removed.

``traffic_argv("sink", PORT)`` runs a program that reads one connection to its end and
``traffic_argv("source", PORT, BYTES, RATE)`` one that sends deterministic bytes at a steady rate;
both print JSON lines with progress and a SHA-256 of the bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import fowld
from harness.servers import ProcessGroup, mailbox_argv, relay_argv
from harness.wait import until

PREFIX = "fowlt"
SUBNET = "10.231.0"
HUB_ADDRESS = f"{SUBNET}.1"
MAILBOX_PORT = 4000
RELAY_PORT = 4001
IP_TIMEOUT = 10.0  # seconds for one `ip` command
PROGRESS_STEP = 1 << 20  # the traffic programs report every MiB
_numbers = itertools.count()


class NetnsError(RuntimeError):
    """A namespace command failed; the message carries its output."""


def unavailable_reason() -> str | None:
    """Why namespace tests cannot run here, or None if they can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    for tool in ("ip", "ss"):
        if shutil.which(tool) is None:
            return f"needs `{tool}` (Debian package: iproute2)"
    return None


def run(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=IP_TIMEOUT)
    if check and result.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def _owner_alive(name: str) -> bool:
    parts = name.split("-")
    if len(parts) < 2 or not parts[1].isdigit():
        return True  # not ours to judge
    return Path(f"/proc/{parts[1]}").exists()


def remove_stale_namespaces() -> list[str]:
    """Delete namespaces of earlier runs that crashed, and stop what still runs in them."""
    listed = run(["ip", "netns", "list"], check=False).stdout.split("\n")
    removed = []
    for name in (line.split()[0] for line in listed if line.strip()):
        if not name.startswith(PREFIX + "-") or _owner_alive(name):
            continue
        delete_namespace(name)
        removed.append(name)
    return removed


def delete_namespace(name: str) -> None:
    """Stop the processes inside ``name`` (by PID), then delete it; veths inside go with it."""
    pids = run(["ip", "netns", "pids", name], check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    run(["ip", "netns", "del", name], check=False)


@dataclass
class Side:
    """One peer's namespace and its single interface ``eth0``."""

    namespace: str
    address: str

    def exec(self, argv: Sequence[str | os.PathLike]) -> list[str]:
        """``argv`` run inside this namespace (``ip netns exec`` replaces itself with it)."""
        return ["ip", "netns", "exec", self.namespace, *map(str, argv)]

    def ip(self, *args: str) -> None:
        run(["ip", "-n", self.namespace, *args])

    def link(self, up: bool) -> None:
        self.ip("link", "set", "eth0", "up" if up else "down")

    def move_to(self, address: str) -> None:
        """Replace the interface address, as a new network or DHCP lease would."""
        self.ip("addr", "del", f"{self.address}/24", "dev", "eth0")
        self.ip("addr", "add", f"{address}/24", "dev", "eth0")
        self.address = address

    def reset_connections(self, *destinations: str) -> int:
        """Abort this side's TCP connections to any of ``destinations`` (``ADDR`` or ``ADDR:PORT``).

        The kernel sends RSTs, as a stateful firewall or a NAT reboot would; returns how many.
        """
        selector = ["(", *" or ".join(f"dst {d}" for d in destinations).split(), ")"]
        listed = run(self.exec(["ss", "-Htn", "state", "established", *selector])).stdout
        run(self.exec(["ss", "-K", "-t", *selector]))
        return len([line for line in listed.splitlines() if line.strip()])

    def block(self, address: str) -> None:
        """Silently drop everything this side sends to ``address``."""
        self.ip("route", "add", "blackhole", f"{address}/32")

    def listening(self, port: int) -> bool:
        listed = run(self.exec(["ss", "-Hltn", f"sport = :{port}"])).stdout
        return bool(listed.strip())

    def wait_listening(self, port: int, timeout: float, process: subprocess.Popen | None = None) -> None:
        until(
            lambda: self.listening(port),
            f"a listener on port {port} in {self.namespace}",
            timeout,
            0.1,
            process,
        )


@dataclass
class Topology:
    """hub, alice and bob; ``delete()`` removes everything."""

    hub: Side
    alice: Side
    bob: Side
    names: list[str] = field(default_factory=list)

    @classmethod
    def create(cls) -> Topology:
        base = f"{PREFIX}-{os.getpid()}-{next(_numbers)}"
        topology = cls(
            Side(f"{base}-hub", HUB_ADDRESS),
            Side(f"{base}-alice", f"{SUBNET}.2"),
            Side(f"{base}-bob", f"{SUBNET}.3"),
        )
        try:
            topology._build()
        except BaseException:
            topology.delete()
            raise
        return topology

    def _build(self) -> None:
        hub = self.hub
        for side in (hub, self.alice, self.bob):
            run(["ip", "netns", "add", side.namespace])
            self.names.append(side.namespace)
            side.ip("link", "set", "lo", "up")
        hub.ip("link", "add", "br0", "type", "bridge")
        hub.ip("addr", "add", f"{hub.address}/24", "dev", "br0")
        hub.ip("link", "set", "br0", "up")
        for port_name, side in (("alice", self.alice), ("bob", self.bob)):
            # both ends are created inside namespaces: the host's interfaces are never touched
            hub.ip("link", "add", port_name, "type", "veth", "peer", "name", "eth0", "netns", side.namespace)
            hub.ip("link", "set", port_name, "master", "br0")
            hub.ip("link", "set", port_name, "up")
            side.ip("addr", "add", f"{side.address}/24", "dev", "eth0")
            side.ip("link", "set", "eth0", "up")

    def delete(self) -> None:
        for name in reversed(self.names):
            delete_namespace(name)
        self.names.clear()

    @property
    def mailbox_url(self) -> str:
        return f"ws://{HUB_ADDRESS}:{MAILBOX_PORT}/v1"

    @property
    def relay_hint(self) -> str:
        return f"tcp:{HUB_ADDRESS}:{RELAY_PORT}"


def fowld_argv(topology: Topology, ping_interval: float | None, *extra: str) -> list[str]:
    """``fowld --stdio`` using the hub's servers; ``ping_interval`` None keeps the default."""
    options = ["--stdio", "--mailbox", topology.mailbox_url, "--transit-relay", topology.relay_hint, *extra]
    if ping_interval is not None:
        options += ["--ping-interval", str(ping_interval)]
    return fowld.fowld_argv(*options)


def peer_environment() -> dict[str, str]:
    """The environment for fowld in a namespace: it must offer its real addresses to the peer."""
    return {k: v for k, v in os.environ.items() if k != "FOWL_DIRECT_ADDRESSES"}


def traffic_argv(*args: str | int | float) -> list[str]:
    """This file run as one of the traffic programs."""
    root = str(Path(__file__).resolve().parents[1])
    program = f"import sys; sys.path.insert(0, {root!r}); from harness.netns import main; main()"
    return [sys.executable, "-c", program, *map(str, args)]


# traffic programs ---------------------------------------------------------


def _say(**message: Any) -> None:
    print(json.dumps(message), flush=True)


def sink(port: int) -> None:
    with socket.create_server(("127.0.0.1", port)) as server:
        _say(listening=port)
        conn, _ = server.accept()
    digest, received, reported = hashlib.sha256(), 0, 0
    with conn:
        while chunk := conn.recv(1 << 16):
            digest.update(chunk)
            received += len(chunk)
            if received - reported >= PROGRESS_STEP:
                reported = received
                _say(received=received)
    _say(done=True, received=received, sha256=digest.hexdigest())


def source(port: int, total: int, rate: float) -> None:
    """Send ``total`` bytes from a fixed seed at ``rate`` bytes/s, then close."""
    generator = random.Random(total)
    digest, sent, reported = hashlib.sha256(), 0, 0
    chunk_size = 1 << 16
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as conn:
        while sent < total:
            chunk = generator.randbytes(min(chunk_size, total - sent))
            conn.sendall(chunk)
            digest.update(chunk)
            sent += len(chunk)
            if sent - reported >= PROGRESS_STEP:
                reported = sent
                _say(sent=sent)
            ahead = started + sent / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            elif ahead < -1.0:
                started -= ahead + 1.0  # after a stall, no burst of more than a second's worth
    _say(done=True, sent=sent, sha256=digest.hexdigest())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="traffic programs for the namespace tests")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("sink").add_argument("port", type=int)
    src = commands.add_parser("source")
    src.add_argument("port", type=int)
    src.add_argument("bytes", type=int)
    src.add_argument("rate", type=float, help="bytes per second")
    args = parser.parse_args(argv)
    if args.command == "sink":
        sink(args.port)
    else:
        source(args.port, args.bytes, args.rate)


if __name__ == "__main__":
    main()


SETUP_STEP = 20.0  # seconds for one setup step in the namespaces


@dataclass
class Hub:
    side: Side
    mailbox: subprocess.Popen


def start_mailbox(processes: ProcessGroup, hub: Side) -> subprocess.Popen:
    """A mailbox server in the hub namespace, listening once this returns."""
    process = processes.spawn(hub.exec(mailbox_argv(HUB_ADDRESS, MAILBOX_PORT)), name="mailbox")
    hub.wait_listening(MAILBOX_PORT, SETUP_STEP, process)
    return process


def start_hub(topology: Topology, processes: ProcessGroup) -> Hub:
    """The hub with a mailbox server and a transit relay running."""
    relay = relay_argv(HUB_ADDRESS, RELAY_PORT)
    relay_process = processes.spawn(topology.hub.exec(relay), name="relay")
    mailbox = start_mailbox(processes, topology.hub)
    topology.hub.wait_listening(RELAY_PORT, SETUP_STEP, relay_process)
    return Hub(topology.hub, mailbox)
