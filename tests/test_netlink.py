"""Unit tests of fowld.wormhole.netlink's parser and of Liveness acting on a removed address."""

from __future__ import annotations

import socket
import struct
from types import SimpleNamespace

from twisted.internet.task import Clock

from fowld.wormhole import netlink
from fowld.wormhole.liveness import Liveness
from fowld.wormhole.netlink import IFA_ADDRESS, IFA_LOCAL, RTM_DELADDR, removed_addresses

RTM_NEWADDR = 20


def attribute(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def message(kind: int, family: int, *attributes: bytes) -> bytes:
    body = struct.pack("=BBBBI", family, 24, 0, 0, 2) + b"".join(attributes)
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def v4(address: str) -> bytes:
    return socket.inet_pton(socket.AF_INET, address)


def v6(address: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, address)


def test_removed_ipv4_address_is_the_local_one_not_the_point_to_point_peer():
    datagram = message(
        RTM_DELADDR,
        socket.AF_INET,
        attribute(IFA_ADDRESS, v4("10.0.0.1")),
        attribute(IFA_LOCAL, v4("10.0.0.2")),
    )
    assert removed_addresses(datagram) == ["10.0.0.2"]


def test_removed_ipv6_address_and_several_messages_in_one_datagram():
    datagram = b"".join(
        [
            message(RTM_NEWADDR, socket.AF_INET, attribute(IFA_LOCAL, v4("10.0.0.9"))),
            message(RTM_DELADDR, socket.AF_INET6, attribute(IFA_ADDRESS, v6("fd00::5"))),
            message(
                RTM_DELADDR, socket.AF_INET, attribute(8, b"eth0\0"), attribute(IFA_LOCAL, v4("192.168.1.7"))
            ),
        ]
    )
    assert removed_addresses(datagram) == ["fd00::5", "192.168.1.7"]


def test_malformed_messages_are_skipped_not_raised():
    good = message(RTM_DELADDR, socket.AF_INET, attribute(IFA_LOCAL, v4("10.0.0.2")))
    assert removed_addresses(good[:-2]) == []  # truncated: its length runs past the datagram
    assert removed_addresses(message(RTM_DELADDR, 99, attribute(IFA_LOCAL, b"xy"))) == []  # unknown family
    assert removed_addresses(message(RTM_DELADDR, socket.AF_INET, attribute(IFA_LOCAL, b"xy"))) == []
    bad_attribute = message(RTM_DELADDR, socket.AF_INET, struct.pack("=HH", 2, IFA_LOCAL))
    assert removed_addresses(bad_attribute + good) == ["10.0.0.2"]
    assert removed_addresses(b"\x03\0\0\0" + good) == []  # a header shorter than itself ends parsing


class Transport:
    disconnecting = False

    def __init__(self, host: str):
        self.host = host
        self.aborted = False

    def getHost(self) -> SimpleNamespace:
        return SimpleNamespace(host=self.host)

    def abortConnection(self) -> None:
        self.aborted = True


def test_only_connections_on_the_removed_address_are_dropped_and_only_if_it_is_really_gone():
    dilation = Transport("10.254.254.7")  # not an address of this machine
    mailbox = Transport("127.0.0.1")
    dilated = SimpleNamespace(_manager=SimpleNamespace(_connection=SimpleNamespace(transport=dilation)))
    wormhole = SimpleNamespace(
        _boss=SimpleNamespace(_RC=SimpleNamespace(_ws=SimpleNamespace(transport=mailbox)))
    )
    liveness = Liveness(Clock(), wormhole, dilated, 10.0)
    liveness.drop_paths_on("10.254.254.8")
    assert not dilation.aborted
    liveness.drop_paths_on("127.0.0.1")  # the kernel may report an address that still lives elsewhere
    assert not mailbox.aborted
    liveness.drop_paths_on("::ffff:10.254.254.7")
    assert dilation.aborted and not mailbox.aborted


def test_without_a_reactor_that_reads_fds_there_is_no_monitor():
    assert netlink.open_address_monitor(Clock(), print, print) is None
