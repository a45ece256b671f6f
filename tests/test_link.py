"""The link controller (hdl/link.py) in Amaranth's simulator, at the byte level: requests
encoded and responses decoded by the host side of the protocol (boards/protocol.py, whose CRC
is Python's binascii.crc_hqx), records checked against what a FIFO behind the ports must give.
"""

import random
import struct

import pytest
from amaranth.hdl import *
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.sim import Simulator

from boards.protocol import (LINK_COUNTERS, Command, FrameDecoder, Info, Status, crc16,
                             encode_frame, encode_info, encode_read, encode_status,
                             encode_write, parse_status)
from hdl.link import LinkController, PortDirection


FIFO_DEPTH = 8
IDLE = 200
POLL = 16


class _Harness(Elaboratable):
    """Port ``a`` (12-bit records, 2 bytes) into a FIFO; port ``b`` (20 bits, 3 bytes) reads
    it back as ``a + 0x10000``; one status word from the test."""

    def __init__(self):
        self.link = LinkController(
            ports=[("a", PortDirection.SINK, 12), ("b", PortDirection.SOURCE, 20)],
            max_payload=64, idle_timeout=IDLE, poll_timeout=POLL, status_words=1,
            build_id=0xDEADBEEF, clock_hz=12_000_000, baud=3_000_000)

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = self.link
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=12, depth=FIFO_DEPTH)
        m.d.comb += [
            fifo.w_data.eq(link.a.payload), fifo.w_en.eq(link.a.valid),
            link.a.ready.eq(fifo.w_rdy),
            link.b.payload.eq(fifo.r_data + 0x10000), link.b.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(link.b.ready),
        ]
        return m


def run_link(script):
    """Run ``script(io)`` against a fresh harness; ``io`` has ``request(bytes)`` (returns the
    response frames decoded), ``send(bytes, gap)``, ``idle(cycles)``, ``rx_error()`` and
    ``set_status(value)``."""
    harness = _Harness()
    link = harness.link
    sim = Simulator(harness)
    sim.add_clock(1e-6)
    results = {}
    stalls = random.Random(7)

    class IO:
        def __init__(self, ctx):
            self.ctx = ctx
            self.link = link

        async def send(self, data, gap=2):
            ctx = self.ctx
            ctx.set(link.tx.ready, 0)
            for byte in data:
                ctx.set(link.rx.valid, 1)
                ctx.set(link.rx.payload, byte)
                await ctx.tick()
                ctx.set(link.rx.valid, 0)
                await ctx.tick().repeat(gap)

        async def idle(self, cycles):
            await self.ctx.tick().repeat(cycles)

        async def responses(self, cycles=3000):
            """Collect response bytes, ``tx.ready`` low in random cycles, until ``cycles``
            pass without ``tx.valid``."""
            ctx = self.ctx
            got, quiet = bytearray(), 0
            while quiet < cycles:
                ready = stalls.random() < 0.6
                ctx.set(link.tx.ready, ready)
                valid, byte = ctx.get(link.tx.valid), ctx.get(link.tx.payload)
                await ctx.tick()
                if valid and ready:
                    got.append(byte)
                quiet = 0 if valid else quiet + 1
            ctx.set(link.tx.ready, 0)
            return FrameDecoder().feed(bytes(got))

        async def request(self, data):
            await self.send(data)
            return await self.responses(cycles=100)

        async def rx_error(self):
            self.ctx.set(link.rx_error, 1)
            await self.ctx.tick()
            self.ctx.set(link.rx_error, 0)

        def set_status(self, value):
            self.ctx.set(link.status[0], value)

    async def testbench(ctx):
        results["value"] = await script(IO(ctx))

    sim.add_testbench(testbench)
    sim.run()
    return results["value"]


def ack(frames):
    assert len(frames) == 1, frames
    frame, = frames
    assert frame.crc_ok and frame.code == Status.ACK, frame
    return frame.payload


def nak(frames):
    assert len(frames) == 1, frames
    assert frames[0].crc_ok and frames[0].payload == b""
    return Status(frames[0].code)


def records(values, size):
    return b"".join(v.to_bytes(size, "little") for v in values)


def test_info_block():
    async def script(io):
        return Info.parse(ack(await io.request(encode_info())))
    info = run_link(script)
    assert info.build_id == 0xDEADBEEF and info.clock_hz == 12_000_000
    assert info.baud == 3_000_000 and info.max_payload == 64
    assert [(p.direction, p.record_bytes) for p in info.ports] == [("sink", 2), ("source", 3)]
    assert info.status_words == len(LINK_COUNTERS) + 1


def test_write_then_read_records():
    values = [0x000, 0xFFF, 0x5A5, 0x123, 0xA5A]

    async def script(io):
        accepted = ack(await io.request(encode_write(0, records(values, 2))))
        first = ack(await io.request(encode_read(1, 2)))
        rest = ack(await io.request(encode_read(1, 100)))
        empty = ack(await io.request(encode_read(1, 100)))
        return accepted, first, rest, empty
    accepted, first, rest, empty = run_link(script)
    assert struct.unpack("<H", accepted)[0] == len(values)
    assert first == records([v + 0x10000 for v in values[:2]], 3)
    assert rest == records([v + 0x10000 for v in values[2:]], 3)
    assert empty == b""


def test_write_stops_at_poll_timeout_and_takes_the_rest_later():
    values = list(range(1, 12))                        # 11 records, the FIFO holds 8

    async def script(io):
        first = ack(await io.request(encode_write(0, records(values, 2))))
        taken = struct.unpack("<H", first)[0]
        out = ack(await io.request(encode_read(1, 100)))
        second = ack(await io.request(encode_write(0, records(values[taken:], 2))))
        out += ack(await io.request(encode_read(1, 100)))
        return taken, struct.unpack("<H", second)[0], out
    taken, taken_later, out = run_link(script)
    assert taken == FIFO_DEPTH
    assert taken_later == len(values) - FIFO_DEPTH
    assert out == records([v + 0x10000 for v in values], 3)


def test_read_stops_when_the_buffer_is_full():
    async def script(io):
        for chunk in range(3):
            ack(await io.request(encode_write(0, records(range(8 * chunk, 8 * chunk + 8), 2))))
            while True:
                got = ack(await io.request(encode_read(1, 0xFFFF)))
                if len(got) < 63:
                    break
        return True
    assert run_link(script)


def test_naks_and_counters():
    async def script(io):
        answers = {}
        bad = bytearray(encode_info())
        bad[-1] ^= 0x40
        answers["bad_crc"] = nak(await io.request(bytes(bad)))
        answers["unknown"] = nak(await io.request(encode_frame(0x7E)))
        answers["too_long"] = nak(await io.request(encode_frame(Command.WRITE, bytes(65))))
        answers["wrong_direction"] = nak(await io.request(encode_write(1, b"\0\0\0")))
        answers["no_port"] = nak(await io.request(encode_read(9, 1)))
        answers["partial_record"] = nak(await io.request(encode_write(0, b"\1\2\3")))
        answers["no_records"] = nak(await io.request(encode_write(0, b"")))
        answers["info_payload"] = nak(await io.request(encode_frame(Command.INFO, b"\0")))
        answers["read_length"] = nak(await io.request(encode_frame(Command.READ, b"\1\0")))
        # Garbage between frames, an abandoned frame, a UART error.
        await io.send(b"\x00\x11\xA5")
        await io.send(encode_info()[:5])
        await io.idle(IDLE + 10)
        await io.rx_error()
        io.set_status(0x12345678)
        answers["status"] = parse_status(ack(await io.request(encode_status())), ["top"])
        return answers
    answers = run_link(script)
    assert answers["bad_crc"] == Status.BAD_CRC
    assert answers["unknown"] == Status.UNKNOWN_COMMAND
    assert answers["too_long"] == Status.TOO_LONG
    for what in ("wrong_direction", "no_port", "partial_record", "no_records", "info_payload",
                 "read_length"):
        assert answers[what] == Status.BAD_REQUEST, what
    assert answers["status"] == {
        "ok": 0, "bad_crc": 1, "unknown_command": 1, "too_long": 1, "bad_request": 6,
        "timeouts": 1, "garbage": 3, "rx_errors": 1, "top": 0x12345678}


def test_overlong_request_is_drained_then_the_next_one_is_answered():
    async def script(io):
        # The overlong payload contains sync bytes and a whole valid frame: all drained.
        payload = (encode_info() * 12)[:70]
        first = nak(await io.request(encode_frame(Command.WRITE, payload)))
        second = Info.parse(ack(await io.request(encode_info())))
        return first, second
    first, second = run_link(script)
    assert first == Status.TOO_LONG and second.build_id == 0xDEADBEEF


def test_response_crc_is_the_hosts():
    async def script(io):
        await io.send(encode_status())
        io.ctx.set(io.link.tx.ready, 1)
        raw = bytearray()
        for _ in range(400):
            valid, byte = io.ctx.get(io.link.tx.valid), io.ctx.get(io.link.tx.payload)
            await io.ctx.tick()
            if valid:
                raw.append(byte)
        return bytes(raw)
    raw = run_link(script)
    assert raw[0] == 0x5A and raw[1] == Status.ACK
    length = struct.unpack_from("<H", raw, 2)[0]
    assert len(raw) == 4 + length + 2
    assert struct.unpack_from("<H", raw, 4 + length)[0] == crc16(raw[1:4 + length])


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(ports=[("rx", PortDirection.SINK, 8)]), ValueError, "Port name must be a new"),
    (dict(ports=[("a", "sink", 8)]), TypeError, "Port direction must be a PortDirection"),
    (dict(ports=["a"]), TypeError, r"Port must be a \(name, PortDirection, layout\) tuple"),
    (dict(ports=[], max_payload=8), ValueError, "Payload buffer size must be an integer "
                                                "between 16 and 65535, not 8"),
    (dict(ports=[("a", PortDirection.SINK, 200)], max_payload=16), ValueError,
     "Record of port 'a' \\(25 bytes\\) does not fit a payload of 16 bytes"),
    (dict(ports=[], idle_timeout=3), ValueError, "Idle timeout must be an integer between"),
    (dict(ports=[], poll_timeout=0), ValueError, "Poll timeout must be an integer between"),
    (dict(ports=[], status_words=33), ValueError, "Status word count must be an integer"),
    (dict(ports=[], build_id=-1), ValueError, "Build ID must be an integer"),
])
def test_parameter_errors(kwargs, error, match):
    kwargs.setdefault("idle_timeout", 100)
    with pytest.raises(error, match=match):
        LinkController(**kwargs)
