# amaranth: UnusedElaboratable=no
"""UART receiver and transmitter (Amaranth simulator) against independent Python models.

The transmitter's line is compared cycle by cycle with a Python model of the 8N1 frame and of
when each byte is taken. The receiver is driven by a Python bit-banging model whose bit time
may be fractional (a rate off by +-2 %, a random sub-cycle phase), with framing errors, breaks,
glitches and output stalls; the bytes it delivers are compared with the bytes sent. A loopback
(transmitter pin into receiver pin) runs random bytes with random gaps and output stalls.
"""

import random

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from hdl.uart import UARTReceiver, UARTTransmitter


# --- models -------------------------------------------------------------------------------------

def frame_bits(byte, stop=1):
    """Line levels of one 8N1 frame: start, 8 data bits LSB first, stop."""
    return [0] + [(byte >> k) & 1 for k in range(8)] + [stop]


def bitbang(frames, bit_time, *, phase=0.0):
    """Line level for each cycle of a transmitter whose bits last ``bit_time`` cycles
    (fractional allowed). ``frames`` is a list of ``(idle_bits, levels)``: ``idle_bits`` bit times
    of high line, then one bit time per level. The line is sampled at cycle ``n`` at time
    ``n + phase``; it ends with two idle bit times."""
    edges = []                          # (start time, level) of each bit time
    time = 0.0
    for idle, levels in frames:
        for level in [1] * idle + list(levels):
            edges.append((time, level))
            time += bit_time
    edges.append((time, 1))
    end = time + 2 * bit_time
    samples = []
    position = 0
    n = 0
    while n + phase < end:
        while position + 1 < len(edges) and edges[position + 1][0] <= n + phase:
            position += 1
        samples.append(edges[position][1])
        n += 1
    return samples


# --- harness ------------------------------------------------------------------------------------

def run_receiver(divisor, line, *, ready=lambda cycle: 1):
    """Drive the receiver's pin with ``line`` (one level per cycle) and ``o.ready`` with
    ``ready(cycle)``; return the bytes taken and the cycles where ``error`` is high."""
    dut = UARTReceiver(divisor=divisor)
    received, errors = [], []

    async def testbench(ctx):
        for cycle, level in enumerate(line):
            ctx.set(dut.rx, level)
            ctx.set(dut.o.ready, ready(cycle))
            _, _, valid, taken, payload, error = await ctx.tick().sample(
                dut.o.valid, dut.o.ready, dut.o.payload, dut.error)
            if valid and taken:
                received.append(payload)
            if error:
                errors.append(cycle)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return received, errors


# --- parameters ---------------------------------------------------------------------------------

@pytest.mark.parametrize("core", [UARTReceiver, UARTTransmitter])
def test_divisor_checked(core):
    with pytest.raises(ValueError, match=r"^Divisor must be an integer of at least 4, not 3$"):
        core(divisor=3)
    with pytest.raises(TypeError, match=r"^Divisor must be an integer of at least 4, not 4\.0$"):
        core(divisor=4.0)
    with pytest.raises(TypeError, match=r"^Divisor must be an integer of at least 4, not True$"):
        core(divisor=True)
    with pytest.raises(TypeError):
        core(4)
    assert core(divisor=4).divisor == 4


# --- transmitter --------------------------------------------------------------------------------

@pytest.mark.parametrize("divisor", [4, 7, 12])
def test_transmitter_waveform(divisor):
    """Every cycle of ``tx`` and ``i.ready`` equals the model: byte ``j``, first offered in cycle
    ``offer_j``, is taken in cycle ``a_j = max(offer_j, a_{j-1} + 10*divisor)`` and its frame
    occupies cycles ``a_j + 1 .. a_j + 10*divisor``."""
    rng = random.Random(divisor)
    count = 30
    data = [rng.randrange(256) for _ in range(count)]
    gaps = [rng.choice([0, 0, 0, 1, 3, divisor * 3, divisor * 12]) for _ in range(count)]
    dut = UARTTransmitter(divisor=divisor)
    line, ready_seen, offers, accepts = [], [], [], []

    async def testbench(ctx):
        cycle = 0

        async def tick():
            nonlocal cycle
            line.append(ctx.get(dut.tx))
            ready_seen.append(ctx.get(dut.i.ready))
            await ctx.tick()
            cycle += 1

        for byte, gap in zip(data, gaps):
            ctx.set(dut.i.valid, 0)
            for _ in range(gap):
                await tick()
            ctx.set(dut.i.payload, byte)
            ctx.set(dut.i.valid, 1)
            offers.append(cycle)
            while not ctx.get(dut.i.ready):
                await tick()
            accepts.append(cycle)
            await tick()
        ctx.set(dut.i.valid, 0)
        for _ in range(10 * divisor + 5):
            await tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()

    expected_accepts = []
    free = 0
    for offer in offers:
        expected_accepts.append(max(offer, free))
        free = expected_accepts[-1] + 10 * divisor
    assert accepts == expected_accepts

    expected_line = [1] * len(line)
    for accept, byte in zip(expected_accepts, data):
        for k, level in enumerate(frame_bits(byte)):
            for j in range(divisor):
                expected_line[accept + 1 + k * divisor + j] = level
    assert line == expected_line
    # ready: low while a frame is on the line, except in its last cycle
    expected_ready = [1] * len(line)
    for accept in expected_accepts:
        for c in range(accept + 1, accept + 10 * divisor):
            expected_ready[c] = 0
    assert ready_seen == expected_ready
    assert any(gap == 0 for gap in gaps[1:])   # some frames went out back to back


# --- receiver -----------------------------------------------------------------------------------

@pytest.mark.parametrize("divisor", [12, 25])
@pytest.mark.parametrize("error", [-0.02, 0.0, 0.02])
def test_receiver_rate_error(divisor, error):
    """Bytes from a transmitter whose bit time is off by ``error`` (fractional accumulation,
    random phase), with random idle times down to none, arrive unchanged."""
    rng = random.Random(f"{divisor}{error}")
    data = [rng.randrange(256) for _ in range(24)] + [0x00, 0xff, 0x55, 0xaa]
    frames = [(rng.choice([0, 0, 1, 3]), frame_bits(byte)) for byte in data]
    line = bitbang(frames, divisor * (1 + error), phase=rng.random())
    received, errors = run_receiver(divisor, line)
    assert errors == []
    assert received == data


@pytest.mark.parametrize("divisor", [4, 5, 12])
def test_receiver_latency(divisor):
    """As documented: the middle sample of bit ``k`` is ``k*divisor + (divisor - 1)//2`` cycles
    after the first low pin sample, and a byte whose stop bit is sampled at edge ``n`` is first
    seen valid at edge ``n + 3``."""
    lead = 2 * divisor + 1
    line = [1] * lead + [level for level in frame_bits(0xa5) for _ in range(divisor)] \
        + [1] * 2 * divisor
    dut = UARTReceiver(divisor=divisor)
    valid_cycles = []

    async def testbench(ctx):
        for cycle, level in enumerate(line):
            ctx.set(dut.rx, level)
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            if valid:
                valid_cycles.append(cycle)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    stop_middle = lead + 9 * divisor + (divisor - 1) // 2
    assert valid_cycles[0] == stop_middle + 3
    assert len(valid_cycles) == len(line) - valid_cycles[0]    # held: o.ready is low


@pytest.mark.parametrize("divisor", [5, 12])
def test_receiver_framing_error(divisor):
    """A low stop bit pulses ``error`` once and drops the byte; a break (30 bit times low)
    gives one error; in both cases the next good byte is received."""
    frames = [
        (2, frame_bits(0x3c)),
        (0, frame_bits(0x81, stop=0)),      # framing error, then the line returns high
        (1, frame_bits(0x42)),
        (1, [0] * 30),                      # break
        (1, frame_bits(0x17)),
        (0, frame_bits(0xe8)),
    ]
    line = bitbang(frames, divisor)
    received, errors = run_receiver(divisor, line)
    assert received == [0x3c, 0x42, 0x17, 0xe8]
    assert len(errors) == 2
    # each error is a one-cycle pulse, the first one at the framing error's stop bit
    first_stop = (2 + 10 + 9) * divisor + (divisor - 1) // 2
    assert errors[0] == first_stop + 3
    break_start = (2 + 10 + 10 + 1 + 10 + 1) * divisor
    assert break_start < errors[1] < break_start + 30 * divisor


@pytest.mark.parametrize("divisor", [4, 12, 25])
def test_receiver_glitch(divisor):
    """Low pulses shorter than half a bit on an idle line are no byte and no error; a good
    byte after them is received."""
    line = [1] * 3 * divisor
    for width in range(1, (divisor + 1) // 2):      # width < divisor / 2
        line += [0] * width + [1] * 3 * divisor
    line += bitbang([(0, frame_bits(0x96))], divisor)
    received, errors = run_receiver(divisor, line)
    assert received == [0x96]
    assert errors == []


@pytest.mark.parametrize("divisor", [4, 12])
def test_receiver_overrun(divisor):
    """Two bytes arrive while ``o.ready`` is low: the first one is kept, the second one is
    dropped with one ``error`` pulse; after reading, a third byte is received."""
    frames = [(1, frame_bits(0x11)), (0, frame_bits(0x22)), (20, frame_bits(0x33))]
    line = bitbang(frames, divisor)
    read_at = (1 + 10 + 10 + 10) * divisor          # after the second frame, before the third
    received, errors = run_receiver(divisor, line, ready=lambda cycle: int(cycle >= read_at))
    assert received == [0x11, 0x33]
    second_stop = (1 + 10 + 9) * divisor + (divisor - 1) // 2
    assert errors == [second_stop + 3]


# --- loopback -----------------------------------------------------------------------------------

@pytest.mark.parametrize("divisor", [4, 5, 12, 25])
def test_loopback(divisor):
    """Transmitter pin into receiver pin; random bytes, random gaps before each byte, random
    ``o.ready`` stalls (short enough not to overrun): every byte arrives, in order."""
    rng = random.Random(divisor)
    count = {4: 60, 5: 60, 12: 40, 25: 25}[divisor]
    data = [rng.randrange(256) for _ in range(count)]
    tx = UARTTransmitter(divisor=divisor)
    rx = UARTReceiver(divisor=divisor)
    m = Module()
    m.submodules.tx = tx
    m.submodules.rx = rx
    m.d.comb += rx.rx.eq(tx.tx)
    received, errors = [], []
    done = []

    async def source(ctx):
        for byte in data:
            ctx.set(tx.i.valid, 0)
            for _ in range(rng.choice([0, 0, 0, 1, 2, divisor, 5 * divisor])):
                await ctx.tick()
            ctx.set(tx.i.payload, byte)
            ctx.set(tx.i.valid, 1)
            await ctx.tick().until(tx.i.ready)
        ctx.set(tx.i.valid, 0)
        await ctx.tick().repeat(20 * divisor)   # last frame, then the longest stall
        done.append(True)

    async def sink(ctx):
        # stalls shorter than 8 bit times, each after at least one ready cycle: a byte is
        # always taken before the next one (10 bit times later at the earliest) completes
        stall = 0
        while not done:
            if stall == 0 and rng.random() < 0.05:
                stall = rng.randrange(1, 8 * divisor)
                ctx.set(rx.o.ready, 0)
            elif stall:
                stall -= 1
                ctx.set(rx.o.ready, int(stall == 0))
            else:
                ctx.set(rx.o.ready, 1)
            _, _, valid, ready, payload, error = await ctx.tick().sample(
                rx.o.valid, rx.o.ready, rx.o.payload, rx.error)
            if valid and ready:
                received.append(payload)
            if error:
                errors.append(payload)

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    assert errors == []
    assert received == data
