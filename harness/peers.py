"""Stdio daemons as real processes, and checked traffic through them.

``StdioPeer`` drives one JSON-lines daemon, ours (``fowld --stdio``) or
upstream fowl's ``fowld``: it sends commands, waits (bounded) for output lines
matching a predicate and keeps every line. ``HashServer`` and ``exchange``
move data through a forwarded service and check it by SHA-256 both ways.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.servers import LOOPBACK, ProcessGroup

STEP_TIMEOUT = 10.0  # seconds for one step (a code, a peer, a listener) on loopback
EXIT_TIMEOUT = 10.0  # seconds for a daemon to end after stdin closes

Predicate = Callable[[dict], bool]

# Upstream hard-codes the public transit relay and offers every local address for
# direct connections; point both at loopback so every connection stays on this host.
_UPSTREAM_LAUNCHER = """\
import sys
import wormhole.cli.public_relay as public_relay
from wormhole._dilation.connector import Connector
public_relay.TRANSIT_RELAY = sys.argv.pop(1)
Connector._get_listener_addresses = lambda self: ["127.0.0.1"]
from fowl.cli import fowld
sys.exit(fowld())
"""


def kind_is(kind: str, **fields: object) -> Predicate:
    """A predicate for a line of ``kind`` whose listed fields have these values."""
    return lambda line: line.get("kind") == kind and all(line.get(k) == v for k, v in fields.items())


@dataclass
class StdioPeer:
    """One running stdio daemon; ``lines`` holds every JSON line it printed so far."""

    process: subprocess.Popen
    group: ProcessGroup
    label: str
    lines: list[dict] = field(default_factory=list)
    bad_lines: list[bytes] = field(default_factory=list)  # output that is not a JSON object
    _buffer: bytearray = field(default_factory=bytearray)
    _eof: bool = False

    # commands ----------------------------------------------------------------

    def send(self, kind: str, **fields: object) -> None:
        line = json.dumps({"kind": kind, **fields}) + "\n"
        self.process.stdin.write(line.encode("utf-8"))
        self.process.stdin.flush()

    def close_stdin(self) -> None:
        self.process.stdin.close()

    # output ------------------------------------------------------------------

    def mark(self) -> int:
        """The index of the next line; pass it as ``since`` to ignore older lines."""
        self._read(0)
        return len(self.lines)

    def wait_for(self, predicate: Predicate, timeout: float = STEP_TIMEOUT, since: int = 0) -> dict:
        """The first line from index ``since`` on that matches; raises after ``timeout``."""
        deadline = time.monotonic() + timeout
        checked = since
        while True:
            for line in self.lines[checked:]:
                if predicate(line):
                    return line
            checked = max(checked, len(self.lines))
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._eof:
                raise AssertionError(
                    f"{self.label}: no matching line within {timeout}s"
                    f"{' (stdout closed)' if self._eof else ''}\n{self.describe()}"
                )
            self._read(remaining)

    def wait_kind(self, kind: str, timeout: float = STEP_TIMEOUT, since: int = 0, **fields: object) -> dict:
        return self.wait_for(kind_is(kind, **fields), timeout, since)

    def find(self, kind: str, since: int = 0, **fields: object) -> list[dict]:
        """Every line so far (from ``since``) of ``kind`` with these field values."""
        self._read(0)
        return [line for line in self.lines[since:] if kind_is(kind, **fields)(line)]

    def drain(self, seconds: float) -> None:
        """Collect output for ``seconds`` (to see that something does *not* happen)."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0 and not self._eof:
            self._read(remaining)

    def wait_exit(self, timeout: float = EXIT_TIMEOUT) -> int:
        """Read the rest of the output and return the exit code; raises after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self._eof:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.label}: still running after {timeout}s\n{self.describe()}")
            self._read(remaining)
        try:
            return self.process.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.label}: stdout closed but the process did not exit") from None

    def stop(self) -> int:
        """End the process by its PID (SIGTERM, then SIGKILL)."""
        return self.group.stop(self.process)

    def describe(self) -> str:
        _, err = self.group.output(self.process)
        shown = "\n".join(json.dumps(line) for line in self.lines[-40:])
        return f"last lines:\n{shown}\nstderr:\n{err[-2000:]}"

    def _read(self, timeout: float) -> None:
        """Wait up to ``timeout`` for output; parse every complete line."""
        if self._eof:
            return
        fd = self.process.stdout.fileno()
        readable, _, _ = select.select([fd], [], [], timeout)
        if not readable:
            return
        chunk = os.read(fd, 65536)
        if not chunk:
            self._eof = True
        self._buffer += chunk
        *complete, rest = self._buffer.split(b"\n")
        self._buffer = bytearray(rest)
        if self._eof and rest:
            complete.append(bytes(rest))
        for raw in complete:
            self._parse(bytes(raw))

    def _parse(self, raw: bytes) -> None:
        try:
            line = json.loads(raw)
        except ValueError:
            line = None
        if isinstance(line, dict):
            self.lines.append(line)
        else:
            self.bad_lines.append(raw)


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


def _spawn(group: ProcessGroup, argv: list, label: str, env: dict[str, str] | None = None) -> StdioPeer:
    process = group.spawn(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, name=label)
    return StdioPeer(process, group, label)


def start_ours(
    group: ProcessGroup, mailbox_url: str, transit_hint: str, *options: str, label: str = "ours"
) -> StdioPeer:
    """``fowld --stdio`` with this mailbox and transit relay (plus ``options``)."""
    argv = [sys.executable, "-m", "fowld", "--stdio", "--mailbox", mailbox_url]
    argv += ["--transit-relay", transit_hint]
    # direct connections on loopback only, instead of every address of this machine
    env = {**os.environ, "FOWL_DIRECT_ADDRESSES": LOOPBACK}
    return _spawn(group, [*argv, *options], label, env)


def start_upstream(
    group: ProcessGroup, upstream_python: Path, mailbox_url: str, transit_hint: str, label: str = "upstream"
) -> StdioPeer:
    """Upstream fowl's ``fowld`` (its stdio daemon) with this mailbox and transit relay."""
    argv = [upstream_python, "-c", _UPSTREAM_LAUNCHER, transit_hint, "--mailbox", mailbox_url]
    return _spawn(group, argv, label)


def pair(first: StdioPeer, second: StdioPeer, timeout: float = STEP_TIMEOUT) -> str:
    """``first`` allocates a code, ``second`` uses it; returns once both saw the peer."""
    first.send("allocate-code")
    code = first.wait_kind("code-allocated", timeout)["code"]
    second.send("set-code", code=code)
    verifiers = [peer.wait_kind("peer-connected", timeout)["verifier"] for peer in (first, second)]
    assert verifiers[0] == verifiers[1], f"verifiers differ: {verifiers}"
    return code


def wait_dilated(peer: StdioPeer, timeout: float = STEP_TIMEOUT) -> dict:
    """Poll ``status`` (ours only) until the Dilation connection is up; the status line."""
    deadline = time.monotonic() + timeout
    while True:
        since = peer.mark()
        peer.send("status")
        status = peer.wait_kind("status", since=since)
        if status["phase"] == "connected":
            return status
        if time.monotonic() >= deadline:
            raise AssertionError(f"{peer.label}: not connected after {timeout}s: {status}")
        time.sleep(0.05)


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

    def __init__(self, address: str | tuple[str, int], io_timeout: float = IO_TIMEOUT):
        self._io_timeout = io_timeout  # a connection silent this long is dropped
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
            conn.settimeout(self._io_timeout)
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


class StreamEnd:
    """How one side of a forwarded TCP stream saw it end: ``"eof"`` or ``"reset"``, and its bytes.

    A ``Sink`` reads a stream's bytes until it ends; a ``Pusher`` writes bytes into one
    until it fails. Both run in a thread and record ``ended`` and ``bytes``.
    """

    def __init__(self) -> None:
        self.bytes = 0
        self.ended: str | None = None
        self.done = threading.Event()

    def wait(self, timeout: float) -> str:
        if not self.done.wait(timeout):
            raise AssertionError(f"the stream had not ended after {timeout}s ({self.bytes} bytes)")
        return self.ended

    def _until_end(self, move: Callable[[], int]) -> None:
        """Call ``move`` (bytes moved, 0 at the end of file) until the stream ends; record how."""
        try:
            while moved := move():
                self.bytes += moved
            self.ended = "eof"
        except (ConnectionResetError, BrokenPipeError):
            self.ended = "reset"
        except OSError as e:
            self.ended = f"error: {e}"
        finally:
            self.done.set()


class Sink(StreamEnd):
    """A TCP server for one connection that reads everything and records how it ended."""

    def __init__(self) -> None:
        super().__init__()
        self._server = socket.create_server((LOOPBACK, 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        try:
            conn, _ = self._server.accept()
        except OSError:
            return  # stopped before anyone connected
        with conn:
            self._until_end(lambda: len(conn.recv(_CHUNK)))

    def stop(self) -> None:
        self._server.close()


class Pusher(StreamEnd):
    """Connects to ``address`` and writes deterministic bytes until the stream fails or ends."""

    def __init__(self, address: tuple[str, int]):
        super().__init__()
        self.sock = socket.create_connection(address, timeout=IO_TIMEOUT)
        self.sock.settimeout(None)
        threading.Thread(target=self._push, daemon=True).start()

    def _push(self) -> None:
        chunk = payload(_CHUNK, 7)
        self._until_end(lambda: self.sock.sendall(chunk) or len(chunk))

    def close(self) -> None:
        self.sock.close()

