"""Address-change notifications from the Linux kernel (rtnetlink), read by the reactor.

One ``AF_NETLINK`` / ``NETLINK_ROUTE`` socket per process, subscribed to the
IPv4 and IPv6 address groups, tells us the moment an address is removed
(``RTM_DELADDR``), so nothing has to ask every connection once a second
whether its local address still exists. Where the socket is refused (not
Linux, a sandbox without ``AF_NETLINK``) ``open_address_monitor`` returns
None and the caller keeps its periodic check.

The messages are parsed with ``struct``: a ``nlmsghdr``, an ``ifaddrmsg``,
then route attributes, of which ``IFA_LOCAL`` (IPv4: the local end even on
point-to-point links) or else ``IFA_ADDRESS`` is the address.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorFDSet
from twisted.logger import Logger

log = Logger()

RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100
RTM_DELADDR = 21
IFA_ADDRESS = 1
IFA_LOCAL = 2

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefix length, flags, scope, interface index
_ATTR = struct.Struct("=HH")  # rtattr: length, type
_FAMILIES = {socket.AF_INET: (socket.AF_INET, 4), socket.AF_INET6: (socket.AF_INET6, 16)}
RECEIVE_SIZE = 65536  # one datagram holds many messages; the kernel never splits one


def _align(length: int) -> int:
    return (length + 3) & ~3


def _address_of(family: int, attributes: bytes) -> str | None:
    found: dict[int, bytes] = {}
    offset = 0
    while offset + _ATTR.size <= len(attributes):
        length, kind = _ATTR.unpack_from(attributes, offset)
        if length < _ATTR.size or offset + length > len(attributes):
            break
        found[kind] = attributes[offset + _ATTR.size : offset + length]
        offset += _align(length)
    inet, size = _FAMILIES[family]
    raw = found.get(IFA_LOCAL) or found.get(IFA_ADDRESS)
    if raw is None or len(raw) != size:
        return None
    return socket.inet_ntop(inet, raw)


def removed_addresses(datagram: bytes) -> list[str]:
    """The addresses an rtnetlink datagram says were removed, in order; malformed parts are skipped."""
    removed = []
    offset = 0
    while offset + _HEADER.size <= len(datagram):
        length, kind, _flags, _seq, _port = _HEADER.unpack_from(datagram, offset)
        if length < _HEADER.size or offset + length > len(datagram):
            break
        body = datagram[offset + _HEADER.size : offset + length]
        if kind == RTM_DELADDR and len(body) >= _IFADDR.size:
            family = body[0]
            if family in _FAMILIES:
                address = _address_of(family, body[_IFADDR.size :])
                if address is not None:
                    removed.append(address)
        offset += _align(length)
    return removed


class AddressMonitor:
    """Reads address removals from the kernel in the reactor (an ``IReadDescriptor``).

    ``on_removed(address)`` is called for every removed address;
    ``on_overrun()`` when the kernel dropped notifications (our buffer was full),
    after which anything may have changed.
    """

    def __init__(
        self,
        reactor: Any,
        sock: socket.socket,
        on_removed: Callable[[str], object],
        on_overrun: Callable[[], object],
    ):
        self._reactor = reactor
        self._socket = sock
        self._on_removed = on_removed
        self._on_overrun = on_overrun
        reactor.addReader(self)

    def fileno(self) -> int:
        return self._socket.fileno()

    def logPrefix(self) -> str:
        return "netlink"

    def doRead(self) -> None:
        for _ in range(64):  # bounded: the rest waits for the next reactor turn
            try:
                datagram = self._socket.recv(RECEIVE_SIZE)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self._on_overrun()
                    continue
                raise
            for address in removed_addresses(datagram):
                self._on_removed(address)

    def connectionLost(self, reason: object) -> None:
        self.close()

    def close(self) -> None:
        if self._socket.fileno() != -1:
            self._reactor.removeReader(self)
            self._socket.close()


def open_address_monitor(
    reactor: Any, on_removed: Callable[[str], object], on_overrun: Callable[[], object]
) -> AddressMonitor | None:
    """Subscribe to address removals; None where netlink is refused or the reactor has no fds."""
    if not IReactorFDSet.providedBy(reactor) or not hasattr(socket, "AF_NETLINK"):
        return None
    try:
        sock = socket.socket(
            socket.AF_NETLINK,
            socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
            socket.NETLINK_ROUTE,
        )
    except OSError as e:
        log.info("no address notifications ({error}): checking addresses periodically", error=e)
        return None
    try:
        sock.bind((0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
    except OSError as e:
        sock.close()
        log.info("no address notifications ({error}): checking addresses periodically", error=e)
        return None
    return AddressMonitor(reactor, sock, on_removed, on_overrun)
