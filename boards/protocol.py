"""The UART link protocol, version 1, host side, without any I/O (see ``docs/board.md``).

Everything here works on bytes: :func:`encode_frame` and the ``encode_*`` helpers build request
frames, :class:`FrameDecoder` turns received bytes (in chunks of any size) back into
:class:`Frame` objects, and :meth:`Info.parse` / :func:`parse_status` read the answers of
``INFO`` and ``STATUS``. :mod:`boards.link` puts this on a serial port.

Frame: ``sync`` (``0x5A``), ``code`` (1 byte), ``length`` (2 bytes), ``payload``, ``crc``
(2 bytes), multi-byte fields little-endian; the CRC is CRC-16/XMODEM over ``code``, ``length``
and ``payload``.
"""

import binascii
import enum
import struct
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "SYNC", "PROTOCOL_VERSION", "MAGIC", "MAX_LENGTH", "LINK_COUNTERS", "INFO_HEADER_BYTES",
    "Command", "Status", "Frame", "FrameDecoder", "Port", "Info",
    "crc16", "encode_frame", "encode_info", "encode_status", "encode_write", "encode_read",
    "write_payload", "read_payload", "parse_status",
]

SYNC = 0x5A
PROTOCOL_VERSION = 1
MAGIC = b"LPRC"
#: Largest ``length`` a frame can carry (a 16-bit field).
MAX_LENGTH = 0xFFFF
#: The link counters, in the order they open the ``STATUS`` answer.
LINK_COUNTERS = ("ok", "bad_crc", "unknown_command", "too_long", "bad_request", "timeouts",
                 "garbage", "rx_errors")


class Command(enum.IntEnum):
    """Request codes."""
    INFO = 0x01
    STATUS = 0x02
    WRITE = 0x03
    READ = 0x04


class Status(enum.IntEnum):
    """Response codes: ``ACK``, or the reason for a NAK (a NAK has an empty payload)."""
    ACK = 0x00
    BAD_CRC = 0x01
    UNKNOWN_COMMAND = 0x02
    TOO_LONG = 0x03
    BAD_REQUEST = 0x04


def crc16(data):
    """CRC-16/XMODEM of ``data`` (polynomial 0x1021, initial value 0, no reflection, no XOR)."""
    return binascii.crc_hqx(bytes(data), 0)


def _check_byte(value, what):
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFF:
        raise ValueError(f"{what} must be an integer between 0 and 255, not {value!r}")


def encode_frame(code, payload=b""):
    """One frame: ``sync``, ``code``, ``length``, ``payload``, ``crc``."""
    _check_byte(code, "Frame code")
    payload = bytes(payload)
    if len(payload) > MAX_LENGTH:
        raise ValueError(f"Frame payload must be at most {MAX_LENGTH} bytes, not {len(payload)}")
    body = struct.pack("<BH", code, len(payload)) + payload
    return bytes([SYNC]) + body + struct.pack("<H", crc16(body))


def encode_info():
    """An ``INFO`` request."""
    return encode_frame(Command.INFO)


def encode_status():
    """A ``STATUS`` request."""
    return encode_frame(Command.STATUS)


def write_payload(port, records):
    """The payload of a ``WRITE`` request: ``port``, then ``records`` (packed, whole)."""
    _check_byte(port, "Port")
    return bytes([port]) + bytes(records)


def read_payload(port, max_records):
    """The payload of a ``READ`` request: ``port``, ``max_records``."""
    _check_byte(port, "Port")
    if not isinstance(max_records, int) or not 0 <= max_records <= 0xFFFF:
        raise ValueError(f"Record count must be an integer between 0 and 65535, "
                         f"not {max_records!r}")
    return struct.pack("<BH", port, max_records)


def encode_write(port, records):
    """A ``WRITE`` request offering ``records`` (whole records, already packed) to ``port``."""
    return encode_frame(Command.WRITE, write_payload(port, records))


def encode_read(port, max_records):
    """A ``READ`` request for up to ``max_records`` records from ``port``."""
    return encode_frame(Command.READ, read_payload(port, max_records))


@dataclass(frozen=True)
class Frame:
    """A received frame. ``crc_ok`` is false when its CRC did not match (then ``code`` and
    ``payload`` are whatever arrived and must not be trusted)."""
    code: int
    payload: bytes = b""
    crc_ok: bool = True


class FrameDecoder:
    """Incremental frame parser.

    :meth:`feed` takes received bytes in chunks of any size and returns the frames they
    complete. Bytes outside a frame that are not ``sync`` are dropped and counted in
    :attr:`garbage`. A frame whose CRC does not match is returned with ``crc_ok=False`` (and
    counted in :attr:`bad_crc`); the decoder then resynchronises on the next ``sync`` after
    that frame's first byte (so a ``sync`` inside the bad frame may start the next one; the
    bytes skipped on the way count as garbage). A ``length`` above ``max_length`` cannot be a
    real frame: its ``sync`` byte is dropped as garbage and the search goes on.
    """

    def __init__(self, *, max_length=MAX_LENGTH):
        if not isinstance(max_length, int) or not 0 <= max_length <= MAX_LENGTH:
            raise ValueError(f"Maximum length must be an integer between 0 and {MAX_LENGTH}, "
                             f"not {max_length!r}")
        self.max_length = max_length
        self.garbage = 0
        self.bad_crc = 0
        self._buf = bytearray()

    def reset(self):
        """Forget a partly received frame (the counters are kept)."""
        self._buf.clear()

    @property
    def pending(self):
        """Bytes held for a frame not yet complete."""
        return len(self._buf)

    def wanted(self):
        """Bytes still needed to complete the frame in progress (at least 1; the whole
        6-byte minimum when nothing is in progress)."""
        if len(self._buf) < 4:
            return 6 - len(self._buf)
        length = self._buf[2] | self._buf[3] << 8
        return max(1, 6 + length - len(self._buf))

    def feed(self, data):
        """Add received bytes; return the list of :class:`Frame` they complete, in order."""
        buf = self._buf
        buf += data
        frames = []
        while buf:
            start = buf.find(SYNC)
            if start < 0:
                self.garbage += len(buf)
                buf.clear()
                break
            if start:
                self.garbage += start
                del buf[:start]
            if len(buf) < 4:
                break
            length = buf[2] | buf[3] << 8
            if length > self.max_length:
                self.garbage += 1
                del buf[:1]
                continue
            end = 6 + length
            if len(buf) < end:
                break
            crc_ok = crc16(buf[1:end - 2]) == (buf[end - 2] | buf[end - 1] << 8)
            frames.append(Frame(buf[1], bytes(buf[4:end - 2]), crc_ok))
            if crc_ok:
                del buf[:end]
            else:
                self.bad_crc += 1
                del buf[:1]
        return frames


class Port(NamedTuple):
    """One port of a board top: ``direction`` is ``"sink"`` (host to core) or ``"source"``
    (core to host); ``record_bytes`` is the size of one record."""
    direction: str
    record_bytes: int


_INFO_HEADER = struct.Struct("<4sBBHIIIB")
INFO_HEADER_BYTES = _INFO_HEADER.size  # 21
_DIRECTIONS = ("sink", "source")


@dataclass(frozen=True)
class Info:
    """The ``INFO`` block. ``status_words`` is the word count of the ``STATUS`` answer (the
    link counters included)."""
    magic: bytes
    version: int
    ports: list
    max_payload: int
    build_id: int
    clock_hz: int
    baud: int
    status_words: int

    @classmethod
    def parse(cls, payload):
        payload = bytes(payload)
        if len(payload) < INFO_HEADER_BYTES:
            raise ValueError(f"Info block must be at least {INFO_HEADER_BYTES} bytes, "
                             f"not {len(payload)}")
        (magic, version, n_ports, max_payload, build_id, clock_hz, baud,
         status_words) = _INFO_HEADER.unpack_from(payload)
        if magic != MAGIC:
            raise ValueError(f"Info block magic must be {MAGIC!r}, not {magic!r}")
        if version != PROTOCOL_VERSION:
            raise ValueError(f"Protocol version must be {PROTOCOL_VERSION}, not {version}")
        expected = INFO_HEADER_BYTES + 3 * n_ports
        if len(payload) != expected:
            raise ValueError(f"Info block with {n_ports} ports must be {expected} bytes, "
                             f"not {len(payload)}")
        ports = []
        for n in range(n_ports):
            direction, record_bytes = struct.unpack_from(
                "<BH", payload, INFO_HEADER_BYTES + 3 * n)
            if direction >= len(_DIRECTIONS):
                raise ValueError(f"Port {n} direction must be 0 (sink) or 1 (source), "
                                 f"not {direction}")
            ports.append(Port(_DIRECTIONS[direction], record_bytes))
        return cls(magic, version, ports, max_payload, build_id, clock_hz, baud, status_words)

    def pack(self):
        """The block as the board sends it (the inverse of :meth:`parse`)."""
        head = _INFO_HEADER.pack(self.magic, self.version, len(self.ports), self.max_payload,
                                 self.build_id, self.clock_hz, self.baud, self.status_words)
        return head + b"".join(struct.pack("<BH", _DIRECTIONS.index(direction), record_bytes)
                               for direction, record_bytes in self.ports)


def parse_status(payload, names=()):
    """The ``STATUS`` answer as a dict: the :data:`LINK_COUNTERS`, then ``names`` for the top's
    own words; words beyond the names given are called ``word{n}`` (``n`` counting all words
    from 0). Names given for words that did not arrive are left out."""
    payload = bytes(payload)
    if len(payload) % 4:
        raise ValueError(f"Status payload must be a whole number of 32-bit words, "
                         f"not {len(payload)} bytes")
    words = struct.unpack(f"<{len(payload) // 4}I", payload)
    if len(words) < len(LINK_COUNTERS):
        raise ValueError(f"Status payload must hold at least the {len(LINK_COUNTERS)} link "
                         f"counters, not {len(words)} words")
    all_names = LINK_COUNTERS + tuple(names)
    return {(all_names[n] if n < len(all_names) else f"word{n}"): word
            for n, word in enumerate(words)}
