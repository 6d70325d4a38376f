"""The peer-to-peer wire format (fowld/wire.py): facts, edge cases and fuzzing.

Anything a peer sends must end either as a well-formed value or as a
``ProtocolError``; nothing else may escape. ``FOWL_FUZZ_EXAMPLES`` sets how
many cases each property runs (200 by default; docs/security.md records a
large run).
"""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fowld.engine.wire import (
    MAX_MESSAGE,
    MAX_NAME,
    FrameReader,
    ListenerResponse,
    OpenStream,
    ProtocolError,
    RequestListener,
    StreamReply,
    pack,
    parse_control,
    parse_open_stream,
    parse_stream_reply,
)


def _body(data: bytes) -> object:
    """Decode one frame independently of fowld.engine.wire."""
    (length,) = struct.unpack("!H", data[:2])
    assert len(data) == 2 + length
    return msgpack.unpackb(data[2:], raw=False)


def _read_one(data: bytes) -> dict:
    reader = FrameReader()
    (message,) = reader.feed(data)
    assert reader.take_rest() == b""
    return message


# --- what goes on the wire ---------------------------------------------------------------


def test_frames_are_a_big_endian_length_then_a_msgpack_map():
    data = pack({"unique-name": "ssh"})
    assert data[:2] == struct.pack("!H", len(data) - 2)
    assert _body(data) == {"unique-name": "ssh"}


def test_messages_are_encoded_with_upstream_keys():
    assert _body(RequestListener("ssh", None).encode()) == {
        "kind": "request-listener",
        "unique-name": "ssh",
        "listen-port": None,
    }
    assert _body(ListenerResponse("ssh", True, desired_port=22).encode()) == {
        "kind": "listener-response",
        "unique-name": "ssh",
        "listening": True,
        "desired-port": 22,
    }
    assert _body(ListenerResponse("ssh", False).encode()) == {
        "kind": "listener-response",
        "unique-name": "ssh",
        "listening": False,
        "reason": "refused",
    }
    assert _body(OpenStream("ssh").encode()) == {"unique-name": "ssh"}
    assert _body(StreamReply(True).encode()) == {"connected": True}
    assert _body(StreamReply(False, "no such service").encode()) == {
        "connected": False,
        "reason": "no such service",
    }


def test_a_message_too_big_for_the_length_prefix_is_refused():
    pack({"reason": "x" * (MAX_MESSAGE - 100)})
    with pytest.raises(ProtocolError, match="exceeds 65535"):
        pack({"reason": "x" * MAX_MESSAGE})


# --- reading frames ------------------------------------------------------------------------


def test_reader_returns_whole_frames_and_keeps_a_partial_one():
    first, second = pack({"a": 1}), pack({"b": 2})
    reader = FrameReader()
    assert reader.feed(first + second[:3]) == [{"a": 1}]
    assert reader.feed(second[3:]) == [{"b": 2}]
    assert reader.feed(b"") == []


def test_reader_byte_by_byte_gives_the_same_messages():
    data = pack({"a": 1}) + pack({"b": [1, 2]}) + pack({})
    reader = FrameReader()
    got = [message for i in range(len(data)) for message in reader.feed(data[i : i + 1])]
    assert got == [{"a": 1}, {"b": [1, 2]}, {}]


def test_take_rest_hands_over_bytes_after_the_last_message():
    reader = FrameReader()
    assert reader.feed(pack({"unique-name": "ssh"}) + b"\xff") == [{"unique-name": "ssh"}]
    assert reader.take_rest() == b"\xff"
    assert reader.take_rest() == b""


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "undecodable msgpack"),
        (b"\xc1", "undecodable msgpack"),
        (b"\x92\x01", "undecodable msgpack"),
        (b"\xa2\xff\xfe", "undecodable msgpack"),  # str that is not UTF-8
        (b"\x81\x01\x02", "undecodable msgpack"),  # integer map key
        (b"\x80\x80", "undecodable msgpack"),  # two objects in one frame
        (b"\x92\x01\x02", "expected a msgpack map, got list"),
        (b"\xc0", "expected a msgpack map, got NoneType"),
        (b"\xa3ssh", "expected a msgpack map, got str"),
        (b"\xc4\x01x", "expected a msgpack map, got bytes"),
        (b"\x2a", "expected a msgpack map, got int"),
    ],
)
def test_reader_refuses_what_is_not_a_msgpack_map(body, problem):
    with pytest.raises(ProtocolError, match=problem):
        FrameReader().feed(struct.pack("!H", len(body)) + body)


def test_deep_nesting_is_a_protocol_error():
    body = b"\x81\xa1a" + b"\x91" * 60000 + b"\xc0"  # {"a": [[[...]]]}
    with pytest.raises(ProtocolError, match="undecodable msgpack"):
        FrameReader().feed(struct.pack("!H", len(body)) + body)


def test_a_partial_frame_is_held_not_decoded():
    reader = FrameReader()
    assert reader.feed(struct.pack("!H", MAX_MESSAGE) + b"\x80" * 1000) == []
    assert reader.take_rest() == struct.pack("!H", MAX_MESSAGE) + b"\x80" * 1000


# --- parsing messages ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"kind": "request-listener", "unique-name": "ssh"}, RequestListener("ssh", None)),
        ({"kind": "request-listener", "unique-name": "ssh", "listen-port": 22}, RequestListener("ssh", 22)),
        ({"kind": "request-listener", "unique-name": "n" * MAX_NAME}, RequestListener("n" * MAX_NAME, None)),
        (
            {"kind": "request-listener", "unique-name": "ssh", "listen-port": 65535},
            RequestListener("ssh", 65535),
        ),
        (
            {"kind": "listener-response", "unique-name": "ssh", "listening": True, "desired-port": 1},
            ListenerResponse("ssh", True, 1),
        ),
        (
            {"kind": "listener-response", "unique-name": "ssh", "listening": False},
            ListenerResponse("ssh", False, None, "no reason given"),
        ),
        (
            {"kind": "listener-response", "unique-name": "ssh", "listening": False, "reason": 7},
            ListenerResponse("ssh", False, None, "7"),
        ),
        (
            {"kind": "listener-response", "unique-name": "ssh", "listening": True, "reason": "ignored"},
            ListenerResponse("ssh", True, None, None),
        ),
    ],
)
def test_parse_control_accepts(message, expected):
    assert parse_control(message) == expected


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ({}, "unknown control message kind None"),
        ({"kind": "explode"}, "unknown control message kind 'explode'"),
        ({"kind": b"request-listener"}, "unknown control message kind"),
        ({"kind": "request-listener"}, '"unique-name" must be a non-empty string'),
        ({"kind": "request-listener", "unique-name": ""}, '"unique-name" must be a non-empty string'),
        ({"kind": "request-listener", "unique-name": b"ssh"}, '"unique-name" must be a non-empty string'),
        ({"kind": "request-listener", "unique-name": "n" * (MAX_NAME + 1)}, "longer than 255"),
        ({"kind": "request-listener", "unique-name": "ssh", "listen-port": 0}, "port number"),
        ({"kind": "request-listener", "unique-name": "ssh", "listen-port": 65536}, "port number"),
        ({"kind": "request-listener", "unique-name": "ssh", "listen-port": -22}, "port number"),
        ({"kind": "request-listener", "unique-name": "ssh", "listen-port": 22.0}, "port number"),
        ({"kind": "request-listener", "unique-name": "ssh", "listen-port": True}, "port number"),
        ({"kind": "request-listener", "unique-name": "ssh", "listen-port": "22"}, "port number"),
        ({"kind": "listener-response", "unique-name": "ssh"}, '"listening" must be true or false'),
        ({"kind": "listener-response", "unique-name": "ssh", "listening": 1}, '"listening" must be'),
        (
            {"kind": "listener-response", "unique-name": "ssh", "listening": True, "desired-port": 0},
            '"desired-port" must be a port number',
        ),
    ],
)
def test_parse_control_refuses(message, problem):
    with pytest.raises(ProtocolError, match=problem):
        parse_control(message)


def test_a_refusal_reason_is_cut_to_a_thousand_characters():
    response = parse_control(
        {"kind": "listener-response", "unique-name": "ssh", "listening": False, "reason": "r" * 5000}
    )
    assert response.reason == "r" * 1000
    assert parse_stream_reply({"connected": False, "reason": ["x"] * 5000}).reason.startswith("['x'")
    assert len(parse_stream_reply({"connected": False, "reason": ["x"] * 5000}).reason) == 1000


def test_parse_open_stream():
    assert parse_open_stream({"unique-name": "ssh"}) == OpenStream("ssh", None)
    assert parse_open_stream({"unique-name": "ssh", "listen-port": 2222}) == OpenStream("ssh", 2222)
    assert parse_open_stream({"unique-name": "ssh", "extra": {"ignored": True}}) == OpenStream("ssh")
    with pytest.raises(ProtocolError, match='"unique-name"'):
        parse_open_stream({"name": "ssh"})
    with pytest.raises(ProtocolError, match='"listen-port"'):
        parse_open_stream({"unique-name": "ssh", "listen-port": [22]})


def test_parse_stream_reply():
    assert parse_stream_reply({"connected": True}) == StreamReply(True, None)
    assert parse_stream_reply({"connected": False, "reason": "gone"}) == StreamReply(False, "gone")
    assert parse_stream_reply({"connected": False}) == StreamReply(False, "no reason given")
    for bad in ({}, {"connected": None}, {"connected": "true"}, {"connected": 0}):
        with pytest.raises(ProtocolError, match='"connected" must be true or false'):
            parse_stream_reply(bad)


# --- properties ----------------------------------------------------------------------------

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=40)
    | st.binary(max_size=40)
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=25,
)
_KNOWN_KEYS = {
    "kind": st.sampled_from(["request-listener", "listener-response", "explode", ""]) | _VALUES,
    "unique-name": st.text(max_size=300) | _VALUES,
    "listen-port": st.integers(-5, 70000) | _VALUES,
    "desired-port": st.integers(-5, 70000) | _VALUES,
    "listening": st.booleans() | _VALUES,
    "connected": st.booleans() | _VALUES,
    "reason": st.text(max_size=2000) | _VALUES,
}
# Mostly the keys the protocol uses, with any values; plus arbitrary other keys.
_MESSAGES = st.builds(
    lambda known, other: {**other, **known},
    st.fixed_dictionaries({}, optional=_KNOWN_KEYS),
    st.dictionaries(st.text(max_size=10), _VALUES, max_size=4),
)
_NAMES = st.text(min_size=1, max_size=MAX_NAME)
_PORTS = st.none() | st.integers(1, 65535)


@given(st.lists(st.binary(max_size=300), max_size=20))
def test_reader_over_arbitrary_chunks_raises_only_protocol_errors(chunks):
    reader = FrameReader()
    for chunk in chunks:
        try:
            messages = reader.feed(chunk)
        except ProtocolError:
            return  # a channel is closed after its first bad frame
        assert all(isinstance(m, dict) for m in messages)
    assert len(reader.take_rest()) <= 2 + MAX_MESSAGE


@given(st.lists(_MESSAGES, min_size=1, max_size=5), st.lists(st.integers(0, 10_000), max_size=10))
def test_reader_reassembles_frames_split_anywhere(messages, cuts):
    frames = []
    for message in messages:
        try:
            frames.append(pack(message))
        except ProtocolError:
            return  # too big for one frame: pack refuses it, the test is moot
    data = b"".join(frames)
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    reader = FrameReader()
    got = [m for a, b in zip(points, points[1:], strict=False) for m in reader.feed(data[a:b])]
    assert b"".join(pack(m) for m in got) == data  # bytes, so NaN compares equal to itself
    assert reader.take_rest() == b""


@given(_MESSAGES)
def test_parsers_raise_only_protocol_errors(message):
    for parse in (parse_control, parse_open_stream, parse_stream_reply):
        try:
            parse(message)
        except ProtocolError as e:
            assert str(e)


@given(_MESSAGES)
def test_parsers_over_the_wire_raise_only_protocol_errors(message):
    try:
        decoded = _read_one(pack(message))
    except ProtocolError:
        return  # too big for a frame, or a float key collision msgpack refuses
    for parse in (parse_control, parse_open_stream, parse_stream_reply):
        try:
            result = parse(decoded)
        except ProtocolError:
            continue
        name = getattr(result, "name", None)
        assert name is None or (isinstance(name, str) and 0 < len(name) <= MAX_NAME)


@given(_NAMES, _PORTS)
def test_request_listener_round_trip(name, port):
    assert parse_control(_read_one(RequestListener(name, port).encode())) == RequestListener(name, port)


@given(_NAMES, st.booleans(), _PORTS, st.none() | st.text(min_size=1, max_size=1000))
def test_listener_response_round_trip(name, listening, port, reason):
    sent = ListenerResponse(name, listening, port, reason)
    got = parse_control(_read_one(sent.encode()))
    assert (got.name, got.listening, got.desired_port) == (name, listening, port)
    assert got.reason == (None if listening else reason or "refused")


@given(_NAMES)
def test_open_stream_round_trip(name):
    assert parse_open_stream(_read_one(OpenStream(name).encode())) == OpenStream(name)


@given(st.booleans(), st.none() | st.text(min_size=1, max_size=1000))
def test_stream_reply_round_trip(connected, reason):
    got = parse_stream_reply(_read_one(StreamReply(connected, reason).encode()))
    assert got == StreamReply(connected, None if connected else reason or "refused")
