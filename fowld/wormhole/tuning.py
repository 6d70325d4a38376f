"""Socket tuning of the Dilation connection: TCP_NODELAY, prompt ACKs and large reads.

magic-wormhole 0.24 leaves Nagle's algorithm on for the TCP connection that
carries Dilation (direct or through the transit relay). A small record, such
as one keystroke or a 40-byte request, then waits for the peer's delayed ACK:
round trips of tens of milliseconds instead of well under one. Nothing public
exposes that socket; ``access`` reaches it, and this degrades to a logged
no-op if a future magic-wormhole changes that shape.

Prompt ACKs: TCP_NODELAY only covers what we send. A peer that leaves Nagle
on (upstream fowl 26.8, any magic-wormhole 0.24 user) sends its Dilation ack
record for our reply and holds its next record until our kernel ACKs that
small segment. Our kernel delays the ACK: having sent a reply soon after
receiving, the socket is in "pingpong" (interactive) mode, where an ACK waits
40 ms or more for data to ride on, and after reading an ack record we have none.
One Nagle + delayed-ACK stall per round trip: 44 ms instead of about 1 ms.
TCP_QUICKACK is one-shot, not a mode: setting it leaves pingpong mode and, if
an ACK is pending and the receive queue is empty, sends that ACK at once; the
next reply we send within the ACK timeout puts the socket back into pingpong
mode (net.ipv4.tcp_pingpong_thresh replies; 1 on current kernels). Set once,
it changes nothing, so it is set again after every read of the Dilation socket:
the read has emptied the queue, and the ACK owed for it goes out right then.
Measured against upstream on loopback: 44 ms round trips become about 1 ms.
Through a transit relay this covers our leg only; the relay's own delayed ACKs
towards a Nagle peer are out of our reach.

Large reads: Twisted reads 64 KiB at a time. Reading more per call means fewer
Dilation records, fewer acknowledgements and fewer state-machine steps per
byte; measured on bulk transfers, 512 KiB reads on both the Dilation and the
local sockets took about 30% less CPU per GB than 64 KiB.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from twisted.internet.interfaces import ITCPTransport
from twisted.logger import Logger

from fowld.wormhole.access import dilation_manager, dilation_transport

log = Logger()
_warned = False
_warned_quickack = False


READ_SIZE = 512 * 1024  # bytes per socket read, for Dilation and local stream sockets


def tune_transport(transport: object) -> None:
    """Large reads on any socket transport; no Nagle delay on TCP ones."""
    if hasattr(transport, "bufferSize"):
        transport.bufferSize = READ_SIZE
    if ITCPTransport.providedBy(transport):
        transport.setTcpNoDelay(True)


def tune_dilation_connection(dilated: object) -> bool:
    """Tune the current Dilation connection's socket; True if it was reachable."""
    global _warned
    if dilation_manager(dilated) is None:
        if not _warned:
            _warned = True
            log.warn("cannot reach the Dilation connection to tune it; latency may suffer")
        return False
    transport = dilation_transport(dilated)
    if transport is None:
        return False
    tune_transport(transport)
    ack_promptly(transport)
    return True


class _QuickAckAfterRead:
    """A transport's ``doRead`` followed by TCP_QUICKACK on its socket."""

    def __init__(self, read: Callable[[], object], sock: socket.socket):
        self._read = read
        self._sock = sock

    def __call__(self) -> object:
        result = self._read()
        if result is None:  # still connected
            try:
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            except OSError:
                pass  # closing under us: the next read reports it
        return result


def ack_promptly(transport: object) -> bool:
    """ACK what is read from ``transport``'s TCP socket without delay; True if in place.

    Idempotent (the Dilation status repeats for the same connection). Where the
    socket or TCP_QUICKACK is not available (not Linux, another transport) it
    logs once and does nothing: only a Nagle peer's round trips suffer.
    """
    global _warned_quickack
    if isinstance(getattr(transport, "doRead", None), _QuickAckAfterRead):
        return True
    sock = _tcp_socket(transport)
    if sock is None or not hasattr(socket, "TCP_QUICKACK"):
        if not _warned_quickack:
            _warned_quickack = True
            log.warn(
                "cannot set TCP_QUICKACK on the Dilation connection; a Nagle peer may see slow round trips"
            )
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    except OSError as e:
        log.warn("cannot set TCP_QUICKACK on the Dilation connection: {error}", error=e)
        return False
    # The reactor looks doRead up on the instance at every readable event.
    transport.doRead = _QuickAckAfterRead(transport.doRead, sock)
    return True


def _tcp_socket(transport: object) -> socket.socket | None:
    get_handle = getattr(transport, "getHandle", None)
    if not callable(get_handle) or not callable(getattr(transport, "doRead", None)):
        return None
    sock = get_handle()
    if not isinstance(sock, socket.socket) or sock.type != socket.SOCK_STREAM:
        return None
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    return sock
