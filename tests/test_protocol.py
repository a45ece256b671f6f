"""Host side of the UART link protocol: frame bytes, the decoder, INFO/STATUS parsing, and the
retry rules of :class:`boards.link.Link`."""

import struct

import pytest
from hypothesis import given, strategies as st

from boards.link import Link, LinkError, LinkNAK, LinkTimeout, open_serial
from boards.protocol import (LINK_COUNTERS, MAGIC, SYNC, Command, Frame, FrameDecoder, Info,
                             Port, Status, crc16, encode_frame, encode_info, encode_read,
                             encode_status, encode_write, parse_status)


def crc_xmodem_bitwise(data):
    """CRC-16/XMODEM computed bit by bit from its definition (independent of binascii)."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


# -- CRC and encoding -----------------------------------------------------------------------

def test_crc16_check_value():
    # The catalogued check value of CRC-16/XMODEM.
    assert crc16(b"123456789") == 0x31C3
    assert crc16(b"") == 0


@given(st.binary(max_size=300))
def test_crc16_matches_bitwise_definition(data):
    assert crc16(data) == crc_xmodem_bitwise(data)


def test_encode_frame_layout():
    frame = encode_frame(0x03, b"\x07\xAA\xBB")
    body = b"\x03\x03\x00\x07\xAA\xBB"
    assert frame == b"\x5A" + body + crc_xmodem_bitwise(body).to_bytes(2, "little")


def test_request_helpers():
    assert encode_info() == encode_frame(0x01)
    assert encode_status() == encode_frame(0x02)
    assert encode_write(2, b"\x01\x02\x03\x04") == encode_frame(0x03, b"\x02\x01\x02\x03\x04")
    assert encode_read(5, 0x1234) == encode_frame(0x04, b"\x05\x34\x12")


def test_encode_errors():
    with pytest.raises(ValueError, match=r"payload must be at most 65535 bytes, not 65536"):
        encode_frame(1, bytes(65536))
    encode_frame(1, bytes(65535))
    with pytest.raises(ValueError, match=r"Frame code must be an integer between 0 and 255, "
                                         r"not 256"):
        encode_frame(256)
    with pytest.raises(ValueError, match=r"Frame code .* not -1"):
        encode_frame(-1)
    with pytest.raises(ValueError, match=r"Port must be .* not 300"):
        encode_write(300, b"")
    with pytest.raises(ValueError, match=r"Record count must be .* not 65536"):
        encode_read(0, 65536)


# -- decoder --------------------------------------------------------------------------------

frames_st = st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=6)
# Bytes between frames: anything but the sync byte (a sync there would start a frame).
garbage_st = st.binary(max_size=8).map(lambda b: b.replace(bytes([SYNC]), b""))


def feed_in_chunks(decoder, data, cuts):
    cuts = sorted({c % (len(data) + 1) for c in cuts})
    frames = []
    for start, end in zip([0] + cuts, cuts + [len(data)]):
        frames += decoder.feed(data[start:end])
    return frames


@given(frames_st, st.data(), st.lists(st.integers(0, 10_000), max_size=20))
def test_decoder_round_trip_any_chunks(frames, data, cuts):
    stream = b""
    garbage = 0
    for code, payload in frames:
        junk = data.draw(garbage_st)
        garbage += len(junk)
        stream += junk + encode_frame(code, payload)
    tail = data.draw(garbage_st)
    stream += tail
    decoder = FrameDecoder()
    decoded = feed_in_chunks(decoder, stream, cuts)
    assert decoded == [Frame(code, payload) for code, payload in frames]
    assert decoder.garbage == garbage + len(tail)
    assert decoder.pending == 0


def test_decoder_bad_crc_then_resync():
    good = encode_frame(Status.ACK, b"\x01\x02")
    bad = bytearray(encode_frame(Status.ACK, b"\x10\x20\x30"))
    bad[4] ^= 0x01  # a bit of the first payload byte flipped in transit
    decoder = FrameDecoder()
    frames = decoder.feed(bytes(bad) + good)
    assert frames == [Frame(0, b"\x11\x20\x30", crc_ok=False), Frame(0, b"\x01\x02")]
    assert decoder.bad_crc == 1
    # Resynchronised on the next sync after the bad frame's start: its other bytes are garbage.
    assert decoder.garbage == len(bad) - 1


def test_decoder_resyncs_inside_truncated_frame():
    # A frame cut short (its length claims 5 bytes, only its header arrived) followed by a whole
    # frame: the bad "frame" swallows the start of the good one, fails its CRC, and the decoder
    # finds the good frame's sync inside it.
    good = encode_frame(Status.ACK, b"\x02\x00")
    frames = FrameDecoder().feed(b"\x5A\x00\x05\x00" + good)
    assert [f.crc_ok for f in frames] == [False, True]
    assert frames[1] == Frame(0, b"\x02\x00")


def test_decoder_max_length_and_wanted():
    decoder = FrameDecoder(max_length=4)
    assert decoder.feed(b"\x5A\x00\x64\x00") == []  # length 100 > 4: not a frame
    assert decoder.garbage == 4 and decoder.pending == 0
    assert decoder.wanted() == 6
    frame = encode_frame(0, b"\xAB\xCD")
    assert decoder.feed(frame[:5]) == []
    assert decoder.wanted() == len(frame) - 5
    assert decoder.feed(frame[5:]) == [Frame(0, b"\xAB\xCD")]
    with pytest.raises(ValueError, match=r"Maximum length must be .* not 70000"):
        FrameDecoder(max_length=70000)


# -- INFO and STATUS ------------------------------------------------------------------------

def info_bytes(*, magic=MAGIC, version=1, ports=((0, 4), (1, 3)), tail=b""):
    head = magic + struct.pack("<BBHIIIB", version, len(ports), 1024, 0xDEADBEEF, 12_000_000,
                               115_200, 11)
    return head + b"".join(struct.pack("<BH", d, r) for d, r in ports) + tail


def test_info_parse():
    info = Info.parse(info_bytes())
    assert info == Info(magic=b"LPRC", version=1, ports=[("sink", 4), ("source", 3)],
                        max_payload=1024, build_id=0xDEADBEEF, clock_hz=12_000_000,
                        baud=115_200, status_words=11)
    assert info.ports[1] == Port("source", 3) and info.ports[1].record_bytes == 3
    assert info.pack() == info_bytes()


def test_info_parse_errors():
    with pytest.raises(ValueError, match=r"at least 21 bytes, not 20"):
        Info.parse(info_bytes()[:20])
    with pytest.raises(ValueError, match=r"magic must be b'LPRC', not b'LPRD'"):
        Info.parse(info_bytes(magic=b"LPRD"))
    with pytest.raises(ValueError, match=r"Protocol version must be 1, not 2"):
        Info.parse(info_bytes(version=2))
    with pytest.raises(ValueError, match=r"with 2 ports must be 27 bytes, not 28"):
        Info.parse(info_bytes(tail=b"\x00"))
    with pytest.raises(ValueError, match=r"with 2 ports must be 27 bytes, not 26"):
        Info.parse(info_bytes()[:-1])
    with pytest.raises(ValueError, match=r"Port 1 direction must be 0 \(sink\) or 1 "
                                         r"\(source\), not 2"):
        Info.parse(info_bytes(ports=((0, 1), (2, 1))))


def test_parse_status():
    words = list(range(100, 111))
    payload = struct.pack("<11I", *words)
    status = parse_status(payload, ["in_count", "out_count"])
    assert list(status) == list(LINK_COUNTERS) + ["in_count", "out_count", "word10"]
    assert list(status.values()) == words
    assert parse_status(payload[:32]) == dict(zip(LINK_COUNTERS, words))
    with pytest.raises(ValueError, match=r"whole number of 32-bit words, not 33 bytes"):
        parse_status(payload[:33])
    with pytest.raises(ValueError, match=r"at least the 8 link counters, not 7 words"):
        parse_status(payload[:28])


# -- Link -----------------------------------------------------------------------------------
# These tests drive Link with a scripted fake transport, only to check the host class's retry,
# timeout and resend logic. The board itself (the RTL link controller behind the same
# protocol) is tested elsewhere, against this host code, in simulation.

class ScriptedTransport:
    """Answers each write() with the next entry of ``script``: bytes are made available to
    read(), None means silence (the response is lost)."""

    def __init__(self, script):
        self.script = list(script)
        self.sent = []
        self.rx = bytearray()
        self.timeout = None
        self.resets = 0

    def write(self, data):
        self.sent.append(bytes(data))
        answer = self.script.pop(0)
        if answer is not None:
            self.rx += answer
        return len(data)

    def read(self, n):
        data = bytes(self.rx[:n])
        del self.rx[:n]
        return data

    def reset_input_buffer(self):
        self.resets += 1
        self.rx.clear()


def ack(payload=b""):
    return encode_frame(Status.ACK, payload)


def nak(status):
    return encode_frame(status)


def accepted(n):
    return ack(struct.pack("<H", n))


def corrupt(frame):
    frame = bytearray(frame)
    frame[-1] ^= 0xFF
    return bytes(frame)


def make_link(script, **kwargs):
    transport = ScriptedTransport(script)
    return Link(transport, idle_gap=0, **kwargs), transport


def test_link_info_and_status():
    status_words = struct.pack("<9I", *range(9))
    link, transport = make_link([b"\x00\x13" + ack(info_bytes()), ack(status_words)])
    assert link.info() == Info.parse(info_bytes())
    assert link.max_payload == 1024
    assert link.status(["busy"]) == {**dict(zip(LINK_COUNTERS, range(8))), "busy": 8}
    assert transport.sent == [encode_info(), encode_status()]
    assert transport.timeout == 1.0


def test_link_bad_crc_is_retried():
    link, transport = make_link([nak(Status.BAD_CRC), nak(Status.BAD_CRC), accepted(2)])
    assert link.write(1, b"\x01\x02\x03\x04", 2) == 2
    assert transport.sent == [encode_write(1, b"\x01\x02\x03\x04")] * 3
    assert transport.resets == 0


def test_link_bad_crc_retries_exhausted():
    link, transport = make_link([nak(Status.BAD_CRC)] * 3, retries=2)
    with pytest.raises(LinkNAK, match=r"READ answered with BAD_CRC") as exc:
        link.read(1, 4, 2)
    assert exc.value.status is Status.BAD_CRC
    assert len(transport.sent) == 3


def test_link_other_nak_is_not_retried():
    link, transport = make_link([nak(Status.BAD_REQUEST)])
    with pytest.raises(LinkNAK, match=r"WRITE answered with BAD_REQUEST") as exc:
        link.write(9, b"\x00", 1)
    assert exc.value.status is Status.BAD_REQUEST
    assert len(transport.sent) == 1


@pytest.mark.parametrize("answer", [None, corrupt(accepted(1))])
def test_link_write_timeout_is_not_retried(answer):
    # The board may have taken the records: resending could duplicate them.
    link, transport = make_link([answer, accepted(1)])
    with pytest.raises(LinkTimeout, match=r"WRITE: .*not resent"):
        link.write(0, b"\x05", 1)
    assert len(transport.sent) == 1
    assert transport.resets == 1  # input flushed after the idle gap


def test_link_read_timeout_is_not_retried():
    link, transport = make_link([None])
    with pytest.raises(LinkTimeout, match=r"READ: no response within 1.0 s; not resent"):
        link.read(1, 4, 1)


def test_link_status_timeout_is_retried():
    words = struct.pack("<8I", *range(8))
    link, transport = make_link([None, corrupt(ack(words)), ack(words)])
    assert link.status() == dict(zip(LINK_COUNTERS, range(8)))
    assert transport.sent == [encode_status()] * 3
    assert transport.resets == 2


def test_link_info_timeout_retries_exhausted():
    link, transport = make_link([None] * 3, retries=2)
    with pytest.raises(LinkTimeout, match=r"INFO: no response within 1.0 s, 3 attempts"):
        link.info()
    assert len(transport.sent) == 3


def test_link_read_checks_whole_records():
    link, _ = make_link([ack(b"\x01\x02\x03\x04"), ack(b"\x01\x02\x03")])
    assert link.read(3, 2, 2) == b"\x01\x02\x03\x04"
    with pytest.raises(LinkError, match=r"READ answer of 3 bytes is not at most 2 records "
                                        r"of 2 bytes"):
        link.read(3, 2, 2)


def test_link_idle_gap_default():
    assert Link(ScriptedTransport([]), baud=115_200).idle_gap == 2500 / 115_200
    assert Link(ScriptedTransport([])).idle_gap == 0.01


def small_info(max_payload):
    return ack(Info(MAGIC, 1, [Port("sink", 2)], max_payload, 0, 1, 1, 8).pack())


def test_write_all_resends_and_drains():
    # max_payload 9: a WRITE carries the port byte and up to 4 records of 2 bytes.
    records = bytes(range(20))
    link, transport = make_link([small_info(9), accepted(3), accepted(0), accepted(4),
                                 accepted(3)])
    drains = []
    done = []
    assert link.write_all(0, records, 2, drain=lambda: drains.append(len(transport.sent)),
                          progress=done.append) == 10
    writes = transport.sent[1:]
    assert writes == [encode_write(0, records[0:8]), encode_write(0, records[6:14]),
                      encode_write(0, records[6:14]), encode_write(0, records[14:20])]
    assert drains == [2, 3]  # after the partial WRITE and after the one that took nothing
    assert done == [3, 7, 10]


def test_write_all_with_update_progress_and_giving_up():
    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    bar = Bar()
    link, transport = make_link([small_info(9), accepted(1)] + [accepted(0)] * 5)
    with pytest.raises(LinkError, match=r"Port 0 took no records in 5 WRITEs in a row "
                                        r"\(1 of 3 sent\)"):
        link.write_all(0, bytes(6), 2, progress=bar, max_stalls=5)
    assert bar.n == 1
    assert len(transport.sent) == 7


def test_write_all_argument_errors():
    link, _ = make_link([small_info(3)])
    with pytest.raises(ValueError, match=r"whole number of 2-byte records, not 3 bytes"):
        link.write_all(0, bytes(3), 2)
    with pytest.raises(ValueError, match=r"Records of 4 bytes do not fit in a payload of 3"):
        link.write_all(0, bytes(4), 4)


def test_open_serial_url():
    # pyserial's loop:// URL echoes what is written: the frame comes back whole.
    port = open_serial("loop://", 115_200, timeout=0.1)
    try:
        port.write(encode_frame(Command.STATUS, b"\x01"))
        assert FrameDecoder().feed(port.read(7)) == [Frame(Command.STATUS, b"\x01")]
        assert port.read(1) == b""
    finally:
        port.close()


def test_link_over_socket_url():
    # The simulator bridge is reached as socket://host:port; a tiny server stands in for it
    # here (it answers INFO once, then stays silent so STATUS times out and is retried).
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    answers = [ack(info_bytes()), None, ack(struct.pack("<8I", *range(8)))]

    def serve():
        conn, _ = server.accept()
        with conn:
            decoder = FrameDecoder()
            while answers:
                data = conn.recv(256)
                if not data:
                    break
                for _ in decoder.feed(data):
                    answer = answers.pop(0)
                    if answer is not None:
                        conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = server.getsockname()[1]
    with Link(open_serial(f"socket://127.0.0.1:{port}", 115_200, timeout=0.2),
              timeout=0.2, baud=115_200) as link:
        assert link.info().build_id == 0xDEADBEEF
        assert link.status()["rx_errors"] == 7
    thread.join(timeout=5)
    server.close()
