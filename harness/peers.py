"""Stdio daemons as real processes, and checked traffic through them.

``JsonLines`` collects the JSON lines a process prints, with arrival times,
on a thread of its own (a full pipe would stall the process: upstream prints
a line per chunk). ``StdioPeer`` drives one JSON-lines daemon, ours
(``fowld --stdio``) or upstream fowl's ``fowld``: it sends commands and waits
(bounded) for output lines matching a predicate. ``HashServer`` and
``exchange`` move data through a forwarded service and check it by SHA-256
both ways.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, NamedTuple

from harness.fowld import fowld_argv
from harness.servers import LOOPBACK, ProcessGroup
from harness.wait import until

STEP_TIMEOUT = 10.0  # seconds for one step (a code, a peer, a listener) on loopback
EXIT_TIMEOUT = 10.0  # seconds for a daemon to end after stdin closes

Predicate = Callable[[dict], bool]

# Upstream hard-codes the public transit relay and offers every local address for
# direct connections; point both at loopback so every connection stays on this host
# (an empty relay argument: no relay at all). "relay-only" sets the Connector's own
# no_listen, as magic-wormhole does for --no-listen: no listener and no direct hints.
_UPSTREAM_LAUNCHER = """\
import sys
import wormhole.cli.public_relay as public_relay
from wormhole._dilation.connector import Connector
public_relay.TRANSIT_RELAY = sys.argv.pop(1) or None
Connector._get_listener_addresses = lambda self: ["127.0.0.1"]
if sys.argv.pop(1) == "relay-only":
    start = Connector.start
    def start_without_listening(self):
        self._no_listen = True
        start(self)
    Connector.start = start_without_listening
from fowl.cli import fowld
sys.exit(fowld())
"""


class PeerError(AssertionError):
    """A daemon printed a failure, ended, or did not print what was awaited in time."""


def kind_is(kind: str, **fields: object) -> Predicate:
    """A predicate for a line of ``kind`` whose listed fields have these values."""
    return lambda line: line.get("kind") == kind and all(line.get(k) == v for k, v in fields.items())


class Seen(NamedTuple):
    index: int
    at: float  # time.monotonic() when the line arrived
    line: dict


class JsonLines:
    """Every JSON object a stream carries (``lines``, arrival times in ``times``), read on a thread."""

    def __init__(self, stream: IO[bytes], label: str):
        self.label = label
        self.lines: list[dict] = []
        self.times: list[float] = []
        self.bad_lines: list[bytes] = []  # output that is not a JSON object
        self.ended = False
        self._changed = threading.Condition()
        self._stream = stream
        threading.Thread(target=self._read, name=f"lines-{label}", daemon=True).start()

    def _read(self) -> None:
        try:
            for raw in iter(self._stream.readline, b""):
                self._parse(raw.rstrip(b"\n"))
        except (OSError, ValueError):
            pass  # the pipe was closed under us while stopping
        with self._changed:
            self.ended = True
            self._changed.notify_all()

    def _parse(self, raw: bytes) -> None:
        try:
            line = json.loads(raw)
        except ValueError:
            line = None
        with self._changed:
            if isinstance(line, dict):
                self.lines.append(line)
                self.times.append(time.monotonic())
            else:
                self.bad_lines.append(raw)
            self._changed.notify_all()

    def mark(self) -> int:
        """The index of the next line; pass it as ``since`` to ignore older lines."""
        return len(self.lines)

    def wait_seen(
        self,
        predicate: Predicate,
        timeout: float = STEP_TIMEOUT,
        since: int = 0,
        fails: Predicate | None = None,
    ) -> Seen:
        """The first line from index ``since`` on that matches, with its index and arrival time.

        Raises PeerError after ``timeout``, when the output ends, or when a line
        matching ``fails`` comes first.
        """
        deadline = time.monotonic() + timeout
        checked = since
        with self._changed:
            while True:  # bounded: every turn waits on the condition until the deadline
                for index in range(checked, len(self.lines)):
                    line = self.lines[index]
                    if predicate(line):
                        return Seen(index, self.times[index], line)
                    if fails is not None and fails(line):
                        raise PeerError(f"{self.label} reported {json.dumps(line)}\n{self.describe()}")
                checked = max(checked, len(self.lines))
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.ended:
                    why = "output ended" if self.ended else f"no matching line within {timeout:g}s"
                    raise PeerError(f"{self.label}: {why}\n{self.describe()}")
                self._changed.wait(remaining)

    def wait_for(
        self,
        predicate: Predicate,
        timeout: float = STEP_TIMEOUT,
        since: int = 0,
        fails: Predicate | None = None,
    ) -> dict:
        """The first line from index ``since`` on that matches (see ``wait_seen``)."""
        return self.wait_seen(predicate, timeout, since, fails).line

    def wait_kind(self, kind: str, timeout: float = STEP_TIMEOUT, since: int = 0, **fields: object) -> dict:
        return self.wait_for(kind_is(kind, **fields), timeout, since)

    def find(self, kind: str, since: int = 0, **fields: object) -> list[dict]:
        """Every line so far (from ``since``) of ``kind`` with these field values."""
        return [line for line in self.lines[since:] if kind_is(kind, **fields)(line)]

    def timed(self, since: int = 0, kind: str | None = None) -> list[tuple[float, dict]]:
        """(arrival time, line) of every line so far from ``since`` (of ``kind``, if given)."""
        with self._changed:
            pairs = list(zip(self.times[since:], self.lines[since:], strict=True))
        return [(t, line) for t, line in pairs if kind is None or line.get("kind") == kind]

    def drain(self, seconds: float) -> None:
        """Collect output for ``seconds`` (to see that something does *not* happen)."""
        with self._changed:
            self._changed.wait_for(lambda: self.ended, seconds)

    def describe(self) -> str:
        shown = "\n".join(json.dumps(line) for line in self.lines[-40:])
        return f"last lines of {self.label}:\n{shown}"


class StdioPeer(JsonLines):
    """One running stdio daemon: commands to its stdin, its output lines as ``JsonLines``."""

    def __init__(self, process: subprocess.Popen, group: ProcessGroup, label: str):
        self.process = process
        self.group = group
        super().__init__(process.stdout, label)

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, kind: str, **fields: object) -> None:
        line = json.dumps({"kind": kind, **fields}) + "\n"
        self.process.stdin.write(line.encode("utf-8"))
        self.process.stdin.flush()

    def close_stdin(self) -> None:
        self.process.stdin.close()

    def wait_exit(self, timeout: float = EXIT_TIMEOUT) -> int:
        """Read the rest of the output and return the exit code; raises after ``timeout``."""
        deadline = time.monotonic() + timeout
        self.drain(timeout)
        if not self.ended:
            raise PeerError(f"{self.label}: still running after {timeout}s\n{self.describe()}")
        try:
            return self.process.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            raise PeerError(f"{self.label}: stdout closed but the process did not exit") from None

    def terminate(self) -> None:
        """Ask the process to end (SIGTERM by its PID) without waiting; ``stop`` waits."""
        if self.process.poll() is None:
            self.process.terminate()

    def stop(self) -> int:
        """End the process by its PID (SIGTERM, then SIGKILL)."""
        return self.group.stop(self.process)

    def describe(self) -> str:
        _, err = self.group.output(self.process)
        return f"{super().describe()}\nstderr (pid {self.pid}):\n{err[-2000:]}"


@contextlib.contextmanager
def explained(*peers: StdioPeer) -> Iterator[None]:
    """Add what ``peers`` printed to a failure inside the block."""
    try:
        yield
    except (AssertionError, OSError) as e:
        for peer in peers:
            peer.drain(0.3)  # the lines about the failure may still be on their way
        details = "\n".join(f"--- {peer.label}\n{peer.describe()}" for peer in peers)
        raise AssertionError(f"{e!r}\n{details}") from e


def start_stdio(
    group: ProcessGroup, argv: Sequence[str | os.PathLike], label: str, env: dict[str, str] | None = None
) -> StdioPeer:
    """Any JSON-lines daemon ``argv`` with pipes to drive it."""
    process = group.spawn(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, name=label)
    return StdioPeer(process, group, label)


def start_ours(
    group: ProcessGroup, mailbox_url: str, transit_hint: str, *options: str, label: str = "ours"
) -> StdioPeer:
    """``fowld --stdio`` with this mailbox and transit relay (plus ``options``)."""
    argv = fowld_argv("--stdio", "--mailbox", mailbox_url, "--transit-relay", transit_hint, *options)
    # direct connections on loopback only, instead of every address of this machine
    return start_stdio(group, argv, label, {**os.environ, "FOWL_DIRECT_ADDRESSES": LOOPBACK})


def upstream_argv(
    upstream_python: Path, mailbox_url: str, transit_hint: str | None, relay_only: bool = False
) -> list[str]:
    """Upstream fowl's ``fowld`` (its stdio daemon) on this mailbox; relay None: no relay.

    ``relay_only``: no direct connections, only through ``transit_hint``.
    """
    mode = "relay-only" if relay_only else "direct"
    launcher = [str(upstream_python), "-c", _UPSTREAM_LAUNCHER, transit_hint or "", mode]
    return [*launcher, "--mailbox", mailbox_url]


def start_upstream(
    group: ProcessGroup, upstream_python: Path, mailbox_url: str, transit_hint: str, label: str = "upstream"
) -> StdioPeer:
    """Upstream fowl's ``fowld`` with this mailbox and transit relay."""
    return start_stdio(group, upstream_argv(upstream_python, mailbox_url, transit_hint), label)


def pair(first: StdioPeer, second: StdioPeer, timeout: float = STEP_TIMEOUT) -> str:
    """``first`` allocates a code, ``second`` uses it; returns once both saw the peer."""
    first.send("allocate-code")
    code = first.wait_kind("code-allocated", timeout)["code"]
    second.send("set-code", code=code)
    verifiers = [peer.wait_kind("peer-connected", timeout)["verifier"] for peer in (first, second)]
    assert verifiers[0] == verifiers[1], f"verifiers differ: {verifiers}"
    return code


def status(peer: StdioPeer, timeout: float = STEP_TIMEOUT) -> dict:
    """Ask ``peer`` (ours only) for its status; the status line."""
    since = peer.mark()
    peer.send("status")
    return peer.wait_kind("status", timeout, since=since)


def wait_dilated(peer: StdioPeer, timeout: float = STEP_TIMEOUT) -> dict:
    """Poll ``status`` (ours only) until the Dilation connection is up; the status line."""

    def connected() -> dict | None:
        line = status(peer)
        return line if line["phase"] == "connected" else None

    return until(connected, f"{peer.label}: Dilation connected", timeout)


# --- checked traffic ---------------------------------------------------------

_HEADER = struct.Struct("!QQQ")  # bytes up, bytes down, seed of the bytes down
_DIGEST = hashlib.sha256().digest_size
_CHUNK = 1 << 16
IO_TIMEOUT = 10.0  # seconds any one socket operation may block


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _recv_exactly(sock: socket.socket, size: int, sink: Callable[[bytes], None]) -> int:
    received = 0
    while received < size:
        data = sock.recv(min(_CHUNK, size - received))
        if not data:
            break
        sink(data)
        received += len(data)
    return received


class HashServer:
    """A service that answers each connection with SHA-256(what it read) and a seeded payload.

    A client sends a header (bytes up, bytes down, seed), then the bytes up;
    the server replies with the digest of those bytes, the bytes down, then closes.
    """

    def __init__(self, address: str | tuple[str, int]):
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET6
        if isinstance(address, tuple) and ":" not in address[0]:
            family = socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.bind(address)
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.address = self._sock.getsockname()
        self.connections = 0
        self._open: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept_loop, daemon=True)
        self._accepter.start()

    @property
    def port(self) -> int:
        return self.address[1]

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self._open.add(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(IO_TIMEOUT)
            try:
                header = bytearray()
                if _recv_exactly(conn, _HEADER.size, header.extend) < _HEADER.size:
                    return
                up, down, seed = _HEADER.unpack(header)
                digest = hashlib.sha256()
                if _recv_exactly(conn, up, digest.update) < up:
                    return
                conn.sendall(digest.digest())
                conn.sendall(payload(down, seed))
            except OSError:
                return  # the client went away; the client side reports it
            finally:
                self._open.discard(conn)

    def stop(self) -> None:
        self._stopping.set()
        self._sock.close()
        self._accepter.join(IO_TIMEOUT)
        for conn in list(self._open):  # unblock threads still sending to a stuck client
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(IO_TIMEOUT)
        if isinstance(self.address, str) and os.path.exists(self.address):
            os.unlink(self.address)


def open_socket(address: str | tuple[str, int], timeout: float = IO_TIMEOUT) -> socket.socket:
    """Connect to a TCP ``(host, port)`` or a UNIX socket path."""
    if isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(address)
        return sock
    return socket.create_connection(address, timeout=timeout)


def exchange(
    address: str | tuple[str, int],
    up: int,
    down: int,
    seed: int = 1,
    read_delay: float = 0.0,
    timeout: float = IO_TIMEOUT,
    midway: Callable[[], None] | None = None,
) -> None:
    """Send ``up`` random bytes to a HashServer through ``address`` and get ``down`` back.

    ``read_delay``: seconds to wait before reading, so the bytes down fill every buffer.
    ``midway``: called once half of the bytes up are sent.
    Raises AssertionError unless both directions arrive complete and intact, and
    TimeoutError if any socket operation blocks longer than ``timeout``.
    """
    sent = os.urandom(up)
    with open_socket(address, timeout) as sock:
        half = up // 2
        sock.sendall(_HEADER.pack(up, down, seed) + sent[:half])
        if midway is not None:
            midway()
        sock.sendall(sent[half:])
        time.sleep(read_delay)
        echoed = bytearray()
        _recv_exactly(sock, _DIGEST, echoed.extend)
        got = hashlib.sha256()
        received = _recv_exactly(sock, down, got.update)
        try:
            trailing = sock.recv(1)
        except TimeoutError:
            raise AssertionError(
                f"all {down} bytes down arrived, but the connection was still open {timeout}s "
                "after the service closed its end"
            ) from None
    assert len(echoed) == _DIGEST, f"the connection closed before the reply ({bytes(echoed)!r})"
    assert bytes(echoed) == hashlib.sha256(sent).digest(), f"{up} bytes up arrived damaged or short"
    assert received == down, f"expected {down} bytes down, got {received}"
    assert got.digest() == hashlib.sha256(payload(down, seed)).digest(), "bytes down arrived damaged"
    assert trailing == b"", "extra bytes after the payload"


def run_concurrently(*calls: Callable[[], None], timeout: float = 30.0) -> None:
    """Run ``calls`` in threads at once; re-raise the first failure."""
    errors: list[BaseException] = []

    def run(call: Callable[[], None]) -> None:
        try:
            call()
        except BaseException as e:  # reported in the test's thread below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(call,), daemon=True) for call in calls]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0))
    if any(thread.is_alive() for thread in threads):
        raise AssertionError(f"traffic still running after {timeout}s")
    if errors:
        raise errors[0]
