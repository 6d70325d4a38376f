"""The measuring side: round trips and checked bulk transfers to bench/target.py.

Every socket operation is bounded by ``IO_TIMEOUT``; every transfer ends with
the target's SHA-256 digest, compared with the digest of what was sent.
"""

from __future__ import annotations

import hashlib
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

from bench.target import DIGEST_SIZE, ECHO, SINK, SINK_LENGTH, recv_exactly
from harness import servers

IO_TIMEOUT = 30.0  # seconds any one send or receive may block
_BLOCK = 1 << 20  # payloads repeat one random block, so 200 MB need not sit in memory

Address = tuple[str, int]


class TransferError(RuntimeError):
    """Data went missing or arrived damaged."""


def start_target(group: servers.ProcessGroup) -> int:
    """Start bench/target.py (echo and sink) as a process of its own; its TCP port on loopback."""
    target = group.spawn(
        [sys.executable, "-m", "bench.target"], stdout=subprocess.PIPE, cwd=servers.REPO_ROOT
    )
    try:
        return int(servers.read_line(target.stdout, servers.START_TIMEOUT))
    except (TimeoutError, EOFError, ValueError) as e:
        raise servers.ServerError(f"the target did not start: {e}\n{group.describe(target)}") from None


def connect(address: Address) -> socket.socket:
    sock = socket.create_connection(address, timeout=IO_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def first_echo(address: Address) -> None:
    """One byte through the echo service and back: the forward works."""
    with connect(address) as sock:
        sock.sendall(ECHO + b"!")
        if recv_exactly(sock, 1) != b"!":
            raise TransferError("the first byte did not come back")


def round_trips(address: Address, count: int, size: int, budget: float) -> list[float]:
    """Seconds per sequential ``size``-byte request/response (at least one; stops after ``budget`` s)."""
    message = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    times: list[float] = []
    with connect(address) as sock:
        sock.sendall(ECHO)
        deadline = time.monotonic() + budget
        while len(times) < count and (not times or time.monotonic() < deadline):
            start = time.perf_counter()
            sock.sendall(message)
            if recv_exactly(sock, size) != message:
                raise TransferError(f"round trip {len(times) + 1}: the echo differs from the request")
            times.append(time.perf_counter() - start)
    return times


@dataclass(frozen=True)
class Payload:
    """``size`` pseudo-random bytes from ``seed``, produced in blocks."""

    size: int
    seed: int

    @cached_property
    def _block(self) -> bytes:
        return random.Random(self.seed).randbytes(min(self.size, _BLOCK))

    def chunks(self) -> Iterator[memoryview]:
        block = memoryview(self._block)
        remaining = self.size
        while remaining:
            chunk = block[: min(remaining, len(block))]
            remaining -= len(chunk)
            yield chunk

    @cached_property
    def digest(self) -> bytes:
        digest = hashlib.sha256()
        for chunk in self.chunks():
            digest.update(chunk)
        return digest.digest()


def _send(sock: socket.socket, payload: Payload) -> None:
    sock.sendall(SINK + SINK_LENGTH.pack(payload.size))
    for chunk in payload.chunks():
        sock.sendall(chunk)
    digest = recv_exactly(sock, DIGEST_SIZE)
    if len(digest) < DIGEST_SIZE:
        raise TransferError(f"{payload.size} bytes sent, but the sink closed without a digest")
    if digest != payload.digest:
        raise TransferError(f"SHA-256 mismatch after {payload.size} bytes")


def transfer(address: Address, payload: Payload) -> float:
    """Seconds to send ``payload`` through ``address`` until the sink's digest is back (checked)."""
    payload.digest  # noqa: B018 - hash before the clock starts
    with connect(address) as sock:
        start = time.perf_counter()
        _send(sock, payload)
        return time.perf_counter() - start


def parallel_transfer(address: Address, payloads: list[Payload], timeout: float) -> float:
    """Seconds for all ``payloads`` to cross at once, one stream each, from a common start."""
    for payload in payloads:
        payload.digest  # noqa: B018 - hash before the clock starts
    sockets = [connect(address) for _ in payloads]
    errors: list[BaseException] = []
    go = threading.Event()

    def run(sock: socket.socket, payload: Payload) -> None:
        try:
            go.wait(timeout)
            _send(sock, payload)
        except BaseException as e:  # re-raised in the caller's thread
            errors.append(e)

    threads = [
        threading.Thread(target=run, args=pair, daemon=True) for pair in zip(sockets, payloads, strict=True)
    ]
    try:
        for thread in threads:
            thread.start()
        start = time.perf_counter()
        go.set()
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0))
        elapsed = time.perf_counter() - start
    finally:
        for sock in sockets:
            sock.close()
    if any(thread.is_alive() for thread in threads):
        raise TransferError(f"parallel streams still running after {timeout:.0f}s")
    if errors:
        raise errors[0]
    return elapsed
