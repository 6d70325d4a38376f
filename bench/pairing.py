"""Meeting again: how soon a paired pair forwards after a restart or a wake.

    .venv/bin/python -m bench.pairing                 # 5 kill -9, 5 SIGTERM, 3 wakes after 60 s
    .venv/bin/python -m bench.pairing --runs 2 --wakes 1 --sleep 10 --json out.json

Two fowld daemons, each on its own private bus, pair once through a code
(``InviteWith``/``AcceptWith`` with ``pair``), then run ``peer:`` profiles with
``autostart``. Each run restarts the accepting side (kill -9, or SIGTERM and
a clean exit), and measures from the moment the new fowld owns its bus name to
the first byte a local program reads through the forward. A wake run stops the
accepting side with SIGSTOP for ``--sleep`` seconds and measures from SIGCONT
to the first byte. Everything is on loopback: a real mailbox server and
transit relay, started once.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness import servers
from harness.servers import REPO_ROOT

ProcessGroup = servers.ProcessGroup

BUS_NAME = "org.fowl.Fowld1"
MANAGER = "org.fowl.Fowld1.Manager"
PATH = "/org/fowl/Fowld1"
FIRST_BYTE_TIMEOUT = 60.0


def busctl(bus: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["busctl", f"--address={bus}", *args], capture_output=True, text=True, timeout=30)


class Greeter:
    """A local service that writes one byte to every connection."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"!")


def first_byte(port: int, timeout: float = FIRST_BYTE_TIMEOUT) -> float:
    """Monotonic time at which a byte first came through the forward on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.settimeout(2)
                if s.recv(1):
                    return time.monotonic()
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"no byte through port {port} within {timeout} s")


class Side:
    def __init__(self, group: ProcessGroup, root: Path, name: str, bus: str):
        self.group, self.bus, self.config = group, bus, root / name
        self.process: subprocess.Popen | None = None

    def write(self, profile: str, text: str) -> None:
        directory = self.config / "fowl" / "profiles"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{profile}.yaml").write_text(text)
        (directory / f"{profile}.yaml").chmod(0o600)

    def start(self) -> float:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.config),
            "XDG_CONFIG_HOME": str(self.config),
            "XDG_STATE_HOME": str(self.config / "state"),
            "DBUS_SESSION_BUS_ADDRESS": self.bus,
            "FOWL_DIRECT_ADDRESSES": "127.0.0.1",
            "PYTHONPATH": str(REPO_ROOT),
        }
        self.process = self.group.spawn([sys.executable, "-m", "fowld"], env=env, name="fowld")
        deadline = time.monotonic() + 15
        while busctl(self.bus, "status", BUS_NAME).returncode != 0:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"fowld did not start:\n{self.group.describe(self.process)}")
            time.sleep(0.02)
        return time.monotonic()

    def call(self, *args: str) -> list[str]:
        result = busctl(self.bus, "call", BUS_NAME, PATH, MANAGER, *args)
        if result.returncode != 0:
            raise RuntimeError(result.stderr)
        return result.stdout.split()


def setup(group: ProcessGroup, root: Path) -> tuple[Side, Side, int]:
    mailbox, relay = servers.start_mailbox(group), servers.start_transit_relay(group)
    buses = []
    for _ in ("alice", "bob"):
        directory = Path(tempfile.mkdtemp(prefix="fowl-bench-bus-"))
        buses.append(servers.start_dbus_bus(group, directory).address)
    alice, bob = Side(group, root, "alice", buses[0]), Side(group, root, "bob", buses[1])
    greeter, port = Greeter(), servers.free_port()
    head = f"mailbox: {mailbox.url}\ntransit-relay: {relay.hint}\n"
    share = head + f"services:\n  - {{name: hi, connect: 'tcp:127.0.0.1:{greeter.port}'}}\n"
    join = head + f"clients:\n  - {{name: hi, listen: 'tcp:{port}:interface=127.0.0.1'}}\n"
    alice.write("share", share)
    bob.write("join", join)
    alice.start()
    bob.start()
    out = alice.call("InviteWith", "sa{sv}", "share", "1", "pair", "s", "to-bob")
    code = out[-1].strip('"')
    bob.call("AcceptWith", "ssa{sv}", "join", code, "1", "pair", "s", "to-alice")
    first_byte(port)
    alice.write("again", share + "peer: to-bob\nautostart: true\n")
    bob.write("again", join + "peer: to-alice\nautostart: true\n")
    for side in (alice, bob):  # the one-time sessions end; the paired ones start
        side.group.stop(side.process)
        side.start()
    first_byte(port)
    return alice, bob, port


def measure(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="fowl-bench-pairing-") as root:
        group = ProcessGroup(Path(root) / "logs")
        try:
            alice, bob, port = setup(group, Path(root))
            results: dict[str, list[float]] = {"kill -9": [], "SIGTERM": [], "wake": []}
            for kind, sig in (("kill -9", signal.SIGKILL), ("SIGTERM", signal.SIGTERM)):
                for _ in range(args.runs):
                    time.sleep(1)
                    bob.process.send_signal(sig)
                    bob.process.wait(20)
                    up = bob.start()
                    results[kind].append(first_byte(port) - up)
            for _ in range(args.wakes):
                bob.process.send_signal(signal.SIGSTOP)
                time.sleep(args.sleep)
                bob.process.send_signal(signal.SIGCONT)
                woke = time.monotonic()
                results["wake"].append(first_byte(port) - woke)
        finally:
            group.stop_all()
    return {
        "runs": args.runs,
        "wakes": args.wakes,
        "sleep_seconds": args.sleep,
        "seconds": results,
        "median": {k: statistics.median(v) for k, v in results.items() if v},
    }


def main(argv: list[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="python -m bench pairing", description=__doc__, formatter_class=formatter
    )
    parser.add_argument("--runs", type=int, default=5, help="restarts of each kind (default 5)")
    parser.add_argument("--wakes", type=int, default=3, help="SIGSTOP/SIGCONT runs (default 3)")
    parser.add_argument("--sleep", type=float, default=60.0, help="seconds each sleep lasts (default 60)")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args(argv)
    report = measure(args)
    for kind, values in report["seconds"].items():
        if values:
            each = ", ".join(f"{v:.2f}" for v in values)
            print(f"{kind:8} median {report['median'][kind]:.2f} s  ({each})")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
