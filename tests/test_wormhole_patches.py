"""Each contained fix to magic-wormhole, checked on the library's real classes.

Every probe runs against the *original* behaviour too, so that a release
which fixes a bug itself shows up here as a patch no longer needed.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from wormhole._boss import Boss
from wormhole._dilation.connection import Data, DilatedConnectionProtocol
from wormhole._dilation.connector import Connector
from wormhole._dilation.inbound import Inbound
from wormhole._dilation.outbound import Outbound

from fowld.wormhole import patches


@pytest.fixture(autouse=True)
def installed() -> tuple[str, ...]:
    return patches.install()


def test_this_release_is_one_the_fixes_were_written_for() -> None:
    assert patches.supported_release()
    assert not patches.supported_release("0.25.0")
    # conftest offers loopback only, so by now every fix is in place
    assert set(patches.applied()) == {p.name for p in patches.PATCHES}


def test_install_twice_changes_nothing() -> None:
    before = (DilatedConnectionProtocol.pauseProducing, Inbound.subchannel_closed)
    assert patches.install() == patches.applied()
    assert (DilatedConnectionProtocol.pauseProducing, Inbound.subchannel_closed) == before


class _Transport:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")


def test_pause_connection_reaches_the_tcp_transport() -> None:
    protocol = object.__new__(DilatedConnectionProtocol)
    protocol.transport = _Transport()
    protocol.pauseProducing()
    protocol.resumeProducing()
    assert protocol.transport.calls == ["pause", "resume"]
    protocol.transport = None
    protocol.pauseProducing()  # between connections: nothing to pause, no error


def _inbound_with_paused_subchannel() -> tuple[Inbound, object, _Transport]:
    inbound = object.__new__(Inbound)
    connection = _Transport()
    inbound._open_subchannels, inbound._paused_subchannels, inbound._connection = {}, set(), connection
    subchannel = object()
    inbound._open_subchannels[7] = subchannel
    inbound.subchannel_pauseProducing(subchannel)
    return inbound, subchannel, connection


def test_original_inbound_keeps_a_closed_paused_subchannel() -> None:
    # the bug the patch exists for, on the library's own code
    inbound, subchannel, _ = _inbound_with_paused_subchannel()
    patches._original_subchannel_closed(inbound, 7, subchannel)
    assert subchannel in inbound._paused_subchannels


def test_a_closed_paused_subchannel_is_forgotten_and_the_connection_resumes() -> None:
    inbound, subchannel, connection = _inbound_with_paused_subchannel()
    inbound.subchannel_closed(7, subchannel)
    assert subchannel not in inbound._paused_subchannels
    assert connection.calls == ["pause", "resume"]


def test_a_closed_boss_ignores_a_late_closed() -> None:
    # The transition exists: adding it again is refused by automat.
    closed_state, closed_input = Boss.__dict__["S4_closed"], Boss.__dict__["closed"]
    with pytest.raises(ValueError):
        closed_state.upon(closed_input, enter=closed_state, outputs=[])


def test_direct_addresses_narrow_the_hints_and_can_be_lifted() -> None:
    connector = SimpleNamespace()
    try:
        patches.advertise_direct_addresses(["192.0.2.1", "127.0.0.1"])
        assert Connector._get_listener_addresses(connector) == ["192.0.2.1", "127.0.0.1"]
        patches.advertise_direct_addresses(None)
        assert Connector._get_listener_addresses(connector) == patches._original_listener_addresses(connector)
    finally:
        patches.advertise_direct_addresses(["127.0.0.1"])  # as conftest set it for the whole run


class _Connection:
    def __init__(self) -> None:
        self.sent: list[object] = []
        self.transport = SimpleNamespace(registerProducer=lambda producer, streaming: None)

    def send_record(self, record: object) -> None:
        self.sent.append(record)


def _outbound_with_a_writer() -> tuple[Outbound, _Transport, _Connection]:
    outbound = object.__new__(Outbound)
    outbound.__attrs_post_init__()
    outbound._cooperator = None
    writer, connection = _Transport(), _Connection()
    outbound.subchannel_registerProducer(object(), writer, True)
    outbound.use_connection(connection)
    return outbound, writer, connection


def _write(outbound: Outbound, size: int) -> None:
    outbound.queue_and_send_record(outbound.build_record(Data, 1, b"x" * size))


def test_original_outbound_lets_writers_queue_without_bound() -> None:
    outbound, writer, _ = _outbound_with_a_writer()
    for _ in range(64):  # 64 MiB unacknowledged: nothing pauses the writer
        patches._original_queue_and_send(outbound, outbound.build_record(Data, 1, b"x" * (1 << 20)))
    assert "pause" not in writer.calls[1:]


def test_writers_pause_while_too_much_is_unacknowledged_and_resume_after_acks() -> None:
    outbound, writer, connection = _outbound_with_a_writer()
    writer.calls.clear()
    chunk = 256 * 1024
    for _ in range(patches.UNACKED_HIGH // chunk):
        _write(outbound, chunk)
    assert writer.calls == []  # at the bound, not above it
    _write(outbound, chunk)
    assert writer.calls == ["pause"] and patches.unacked_bytes(outbound) > patches.UNACKED_HIGH
    assert len(connection.sent) == patches.UNACKED_HIGH // chunk + 1  # queued records still go out
    outbound.pauseProducing()  # the TCP connection filled and drained again:
    outbound.resumeProducing()  # queued records go out, but the writer stays paused
    assert writer.calls == ["pause"]
    half = len(outbound._outbound_queue) // 2
    outbound.handle_ack(outbound._outbound_queue[half].seqnum)
    assert writer.calls == ["pause", "resume"]
    assert patches.unacked_bytes(outbound) <= patches.UNACKED_LOW
    outbound.handle_ack(outbound._outbound_queue[-1].seqnum)
    assert patches.unacked_bytes(outbound) == 0
