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


# 5. record-copies ---------------------------------------------------------------------------


def _noise_pair() -> tuple[object, object]:
    from noise.connection import NoiseConnection

    ends = []
    for initiator in (True, False):
        end = NoiseConnection.from_name(b"Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s")
        end.set_psks(b"k" * 32)
        end.set_as_initiator() if initiator else end.set_as_responder()
        end.start_handshake()
        ends.append(end)
    sender, receiver = ends
    receiver.read_message(sender.write_message())
    sender.read_message(receiver.write_message())
    return sender, receiver


def _record_end(noise: object) -> tuple[object, list[bytes]]:
    from wormhole._dilation.connection import _Record

    frames: list[bytes] = []
    end = object.__new__(_Record)
    end._noise = noise
    end._framer = SimpleNamespace(send_frame=frames.append)
    return end, frames


@pytest.mark.parametrize("size", [0, 1000, 65519 - 9, 65519 - 8, 512 * 1024, 3 * 65519 + 7])
def test_large_records_cross_unchanged_between_ours_and_the_librarys_code(size: int) -> None:
    from wormhole._dilation.connection import Data, Open

    from fowld.wormhole import records

    assert "record-copies" in patches.applied()
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    for send, decrypt in (
        (records.send_record, records._original_decrypt),
        (records._original_send_record, records.decrypt_message),
        (records.send_record, records.decrypt_message),
    ):
        sender_noise, receiver_noise = _noise_pair()
        sender, frames = _record_end(sender_noise)
        receiver, _ = _record_end(receiver_noise)
        for record in (Data(7, 3, payload), Open(1, 5, "fowl"), Data(8, 3, b"")):
            send(sender, record)
            assert decrypt(receiver, frames[-1]) == record


def test_record_copies_are_needed_by_the_library_and_ours_once_applied() -> None:
    from wormhole._dilation.connection import _Framer, _Record

    from fowld.wormhole import records

    assert _Record.send_record is records.send_record
    assert _Framer.add_and_parse is records.add_and_parse
    assert _Record.__dict__["decrypt_message"].method is records.decrypt_message
    assert not records.needed()  # applied: a second install() leaves it alone


def _framer() -> tuple[object, list[bytes]]:
    from twisted.internet.interfaces import ITransport
    from wormhole._dilation.connection import _Framer
    from zope.interface import implementer

    written: list[bytes] = []

    @implementer(ITransport)
    class Transport:
        def write(self, data: bytes) -> None:
            written.append(data)

    framer = _Framer(Transport(), b"OUT\n\n", b"IN\n\n")
    framer.connectionMade()
    return framer, written


@pytest.mark.parametrize("read_size", [17, 4096, 65536, 524288, 10_000_000])
def test_frames_split_across_reads_parse_as_the_librarys_framer_parses_them(read_size: int) -> None:
    from wormhole._dilation.encode import to_be4

    from fowld.wormhole import records

    bodies = [b"a" * 10, bytes(range(256)) * 300, b"", b"z" * 70_000, b"q" * 3]
    stream = b"IN\n\n" + b"".join(to_be4(len(body)) + body for body in bodies)
    results = []
    for parse in (records._original_add_and_parse, records.add_and_parse):
        framer, _ = _framer()
        tokens = []
        for start in range(0, len(stream), read_size):
            tokens += [
                type(t).__name__ + ":" + str(len(getattr(t, "frame", b"")))
                for t in parse(framer, stream[start : start + read_size])
            ]
        tokens += [t.frame for t in parse(framer, b"") if hasattr(t, "frame")]  # nothing may be left behind
        results.append(tokens)
    assert results[0] == results[1]
    assert results[1] == ["Prologue:0", *(f"Frame:{len(body)}" for body in bodies)]


# 6. bounded-unacked --------------------------------------------------------------------------


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
