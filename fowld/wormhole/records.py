"""Fewer copies of large Dilation records (a ``patches.py`` fix: probed, version-gated).

A record longer than one Noise message (65,519 bytes of plaintext) travels
as one frame of several Noise messages. magic-wormhole 0.24 builds that frame
with ``frame += ciphertext`` and the plaintext on the way in with
``message += plaintext``, and its framer gathers a frame that arrives in
several reads with ``buffer += data``: every step copies everything so far,
so a 512 KiB record is copied about five times over at each of the three
places, and each copy of a new half-megabyte object also faults in fresh
pages. Here each side encrypts or decrypts the pieces and joins them once;
a data record's payload is not copied again to strip or add its 9-byte
header; and the framer keeps the reads of an incomplete frame aside, joining
them once the frame is whole. The bytes on the wire are exactly the same
(tests/test_wormhole_patches.py checks both directions against the library's
own code).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from twisted.logger import Logger
from wormhole._dilation import connection
from wormhole._dilation.connection import NoiseInvalidMessage, _Framer, _Record
from wormhole._dilation.encode import from_be4, to_be4

log = Logger()

PLAIN = connection.NOISE_MAX_PAYLOAD  # plaintext bytes per Noise message
SEALED = connection.NOISE_MAX_CIPHERTEXT  # the same message encrypted
DATA_HEADER = 9  # type, subchannel id, sequence number

_original_send_record = _Record.send_record
_original_add_and_parse = _Framer.add_and_parse
_decrypt_output = _Record.__dict__.get("decrypt_message")  # automat's output wrapper
_original_decrypt = getattr(_decrypt_output, "method", None)


def _encrypted_pieces(noise: Any, record: Any) -> list[bytes]:
    if isinstance(record, connection.Data) and len(record.data) + DATA_HEADER > PLAIN:
        data = record.data
        head = connection.T_DATA + to_be4(record.scid) + to_be4(record.seqnum)
        first = PLAIN - DATA_HEADER
        pieces = [noise.encrypt(head + data[:first])]
        pieces += [noise.encrypt(data[start : start + PLAIN]) for start in range(first, len(data), PLAIN)]
        return pieces
    message = connection.encode_record(record)
    return [noise.encrypt(message[start : start + PLAIN]) for start in range(0, len(message), PLAIN)]


def send_record(self: _Record, record: Any) -> None:
    pieces = _encrypted_pieces(self._noise, record)
    self._framer.send_frame(pieces[0] if len(pieces) == 1 else b"".join(pieces))


def decrypt_message(self: _Record, frame: bytes) -> Any:
    if len(frame) <= SEALED:
        return _original_decrypt(self, frame)
    try:
        pieces = [
            self._noise.decrypt(frame[start : start + SEALED]) for start in range(0, len(frame), SEALED)
        ]
    except NoiseInvalidMessage as e:
        log.warn("bad inbound noise frame: {error}", error=e)
        raise connection.Disconnect() from None  # what the library does with one
    first = pieces[0]
    if first[:1] == connection.T_DATA and len(first) >= DATA_HEADER:
        pieces[0] = first[DATA_HEADER:]
        return connection.Data(from_be4(first[5:9]), from_be4(first[1:5]), b"".join(pieces))
    return connection.parse_record(b"".join(pieces))


def add_and_parse(self: _Framer, data: bytes) -> Iterator[Any]:
    """The library's parser, fed only once the frame it waits for is complete."""
    pieces: list[bytes] | None = self.__dict__.get("_fowld_pieces")
    if pieces:
        self._fowld_missing -= len(data)
        pieces.append(data)
        if self._fowld_missing > 0:
            return  # still incomplete: nothing to parse, nothing copied
        data = b"".join(pieces)
        pieces.clear()
    yield from _original_add_and_parse(self, data)
    buffered = self._buffer
    if self._can_send_frames and len(buffered) >= 4:  # between frames, not in the prologue
        missing = 4 + from_be4(buffered[:4]) - len(buffered)
        if missing > 0:
            self._fowld_pieces, self._fowld_missing = [buffered], missing
            self._buffer = b""


def needed() -> bool:
    """Whether the library still builds large frames piece by piece (and its shape is known)."""
    return (
        _Record.send_record is _original_send_record
        and _Framer.add_and_parse is _original_add_and_parse
        and isinstance(_Framer.__dict__.get("_buffer"), bytes)
        and "_can_send_frames" in _Framer.__dict__
        and callable(_original_decrypt)
        and getattr(_original_decrypt, "__name__", "") == "decrypt_message"
        and hasattr(connection, "T_DATA")
    )


def apply() -> None:
    _Record.send_record = send_record
    _Framer.add_and_parse = add_and_parse
    object.__setattr__(_decrypt_output, "method", decrypt_message)  # automat keeps the output object
