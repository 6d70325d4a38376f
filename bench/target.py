"""The service behind every forward in the benchmark: an echo and a hashing sink.

Run as its own process (``python -m bench.target``) so its work never competes
with the measuring process for the GIL; it prints its TCP port on stdout and
serves on loopback until terminated.

A connection starts with one mode byte:

- ``E``: echo every byte back as it arrives.
- ``S`` + 8-byte big-endian length: read exactly that many bytes, reply with
  their SHA-256 digest (32 bytes), then wait for the client to close.
"""

from __future__ import annotations

import hashlib
import socket
import socketserver
import struct
import sys

ECHO = b"E"
SINK = b"S"
SINK_LENGTH = struct.Struct("!Q")
DIGEST_SIZE = hashlib.sha256().digest_size
IDLE_TIMEOUT = 120.0  # seconds a connection may stay silent before the server drops it
_BUFFER = 1 << 20


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Exactly ``size`` bytes, or fewer if the peer closed first."""
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _echo(sock: socket.socket) -> None:
    while data := sock.recv(65536):
        sock.sendall(data)


def _sink(sock: socket.socket) -> None:
    header = recv_exactly(sock, SINK_LENGTH.size)
    if len(header) < SINK_LENGTH.size:
        return
    (remaining,) = SINK_LENGTH.unpack(header)
    digest = hashlib.sha256()
    buffer = memoryview(bytearray(_BUFFER))
    while remaining:
        received = sock.recv_into(buffer, min(remaining, _BUFFER))
        if not received:
            return  # short: the client sees no digest and reports it
        digest.update(buffer[:received])
        remaining -= received
    sock.sendall(digest.digest())
    while sock.recv(4096):  # until the client closes
        pass


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(IDLE_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            mode = sock.recv(1)
            if mode == ECHO:
                _echo(sock)
            elif mode == SINK:
                _sink(sock)
        except OSError:
            pass  # the client went away; the measuring side reports what it missed


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    request_queue_size = 64


def main() -> None:
    server = _Server(("127.0.0.1", 0), _Handler)
    print(server.server_address[1], flush=True)
    sys.stdout.close()
    server.serve_forever()


if __name__ == "__main__":
    main()
