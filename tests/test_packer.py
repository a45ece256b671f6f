# amaranth: UnusedElaboratable=no
"""Bit packer (BitPacker, cocotb) and unpacker (BitUnpacker, Amaranth simulator) against
independent references.

The reference here accumulates fields in a Python int (the frame format of ``docs/codec.md``:
fields LSB-first, stream bit ``i`` is bit ``i mod W`` of word ``i // W``, flush pads with
zeros, ``last`` implies flush and a ``last`` field of width 0 at a word boundary adds one
all-zero word to carry ``last``). The reference words are themselves checked against
``golden.codec.BitWriter`` (the same fields written and aligned there give the same bytes, and
the frame ends fall on the words marked ``last``), and against a hand-computed example. Every
output word of the core is compared under random valid/ready stalls. CI runs 10^4 fields per
configuration; ``LOWPREC_LONG=1`` runs 10^5.

The unpacker has two input streams (words and read requests), which the one-input cocotb
harness does not drive, so it runs in the Amaranth simulator with random idle cycles on both
inputs and random ``o.ready`` lows; its reference reads each frame with
``golden.codec.BitReader``. About 2000-5000 requests and 300 frames per configuration.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden.codec import BitReader, BitWriter
from hdl import BitPacker
from hdl.packer import BitUnpacker, packer_field_layout, packer_word_layout
from sim.api import pack_beats, run_stream, unpack_beats
from references import LONG


FIELDS = 100_000 if LONG else 10_000

pytestmark = pytest.mark.cocotb


# --- reference ----------------------------------------------------------------------------------

def reference_words(values, widths, flush, last, word_bits):
    """``(words, lasts)`` of the packed stream: Python-int accumulation, field by field."""
    words, lasts = [], []
    mask = (1 << word_bits) - 1
    acc = pos = 0
    for value, width, fl, la in zip(values, widths, flush, last):
        value, width = int(value), int(width)
        acc |= (value & ((1 << width) - 1)) << pos
        pos += width
        completed = 0
        while pos >= word_bits:
            words.append(acc & mask)
            lasts.append(0)
            acc >>= word_bits
            pos -= word_bits
            completed += 1
        if fl or la:
            if pos:
                words.append(acc)
                lasts.append(int(la))
                acc = pos = 0
            elif la and completed:
                lasts[-1] = 1           # the field's last bit ended the word just completed
            elif la:
                words.append(0)         # nothing pending: an all-zero word carries last
                lasts.append(1)
    return words, lasts, pos


def check_reference_with_bitwriter(values, widths, flush, last, word_bits, words, lasts):
    """The reference words equal :class:`golden.codec.BitWriter`'s bytes for the same fields
    (with its ``align`` for flush/last, and ``W`` zero bits for a ``last`` of width 0 at a
    boundary), and ``last`` marks exactly the words where the writer's frames end."""
    writer = BitWriter()
    ends = []
    for value, width, fl, la in zip(values, widths, flush, last):
        width = int(width)
        if la and width == 0 and writer.pos % word_bits == 0:
            writer.write(0, word_bits)
        writer.write(int(value) & ((1 << width) - 1), width)
        if fl or la:
            writer.align(word_bits)
        if la:
            ends.append(writer.pos // word_bits - 1)
    writer.align(word_bits)
    got = b"".join(int(word).to_bytes(word_bits // 8, "little") for word in words)
    assert writer.getvalue() == got, "reference words differ from golden.codec.BitWriter"
    assert np.flatnonzero(lasts).tolist() == ends, "last is not on the frames' final words"


# --- stimulus -----------------------------------------------------------------------------------

def random_fields(n, max_field_bits, rng, flush_p=0.05, last_p=0.03):
    """Widths 0..max (both ends favoured), values with random bits above the width, random
    flush and last (also runs of empty frames and zero-width flushes); the final field is a
    ``last``."""
    kind = rng.random(n)
    widths = rng.integers(0, max_field_bits + 1, n)
    widths[kind < 0.15] = max_field_bits
    widths[(kind >= 0.15) & (kind < 0.25)] = 0
    values = rng.integers(0, np.iinfo(np.uint64).max, n, dtype=np.uint64, endpoint=True) \
        >> np.uint64(64 - max_field_bits)
    flush = (rng.random(n) < flush_p).astype(np.int64)
    last = (rng.random(n) < last_p).astype(np.int64)
    # A few bursts of empty frames and of zero-width flushes.
    for start in rng.integers(0, n - 4, max(1, n // 2000)):
        widths[start:start + 3] = 0
        last[start:start + 3] = 1
    for start in rng.integers(0, n - 4, max(1, n // 2000)):
        widths[start:start + 3] = 0
        flush[start:start + 3] = 1
    last[-1] = 1
    return values, widths, flush, last


def run_packer(values, widths, flush, last, *, word_bits, max_field_bits, in_stall=0.0,
               out_stall=0.0, seed=0):
    words, lasts, pending = reference_words(values, widths, flush, last, word_bits)
    assert pending == 0
    check_reference_with_bitwriter(values, widths, flush, last, word_bits, words, lasts)
    core = BitPacker(word_bits=word_bits, max_field_bits=max_field_bits)
    in_beats = pack_beats(packer_field_layout(max_field_bits),
                          {"value": np.asarray(values, np.uint64), "width": widths,
                           "flush": flush, "last": last})
    expected = pack_beats(packer_word_layout(word_bits),
                          {"word": np.array(words, np.uint64), "last": np.array(lasts)})
    run = run_stream(core, in_beats, expected=expected, in_stall=in_stall,
                     out_stall=out_stall, seed=seed)
    out = unpack_beats(packer_word_layout(word_bits), run.out_beats)
    return words, lasts, out, run


# --- tests --------------------------------------------------------------------------------------

CONFIGS = {
    "w32": dict(word_bits=32, max_field_bits=32, in_stall=0.1, out_stall=0.9),
    "w32-balanced": dict(word_bits=32, max_field_bits=32, in_stall=0.5, out_stall=0.5),
    "w64": dict(word_bits=64, max_field_bits=64, in_stall=0.9, out_stall=0.1),
    "w64-f17": dict(word_bits=64, max_field_bits=17, in_stall=0.3, out_stall=0.7),
    "w32-f9": dict(word_bits=32, max_field_bits=9, in_stall=0.6, out_stall=0.2),
    "w8-f8": dict(word_bits=8, max_field_bits=8, in_stall=0.2, out_stall=0.6),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_packer_matches_reference(name):
    cfg = CONFIGS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    fields = random_fields(FIELDS, cfg["max_field_bits"], rng)
    words, lasts, out, run = run_packer(*fields, word_bits=cfg["word_bits"],
                                        max_field_bits=cfg["max_field_bits"],
                                        in_stall=cfg["in_stall"], out_stall=cfg["out_stall"],
                                        seed=int(rng.integers(0, 2 ** 31)))
    # run_stream compared every beat; check the decoded words once more here.
    np.testing.assert_array_equal(out["word"].astype(np.uint64), np.array(words, np.uint64))
    np.testing.assert_array_equal(out["last"], lasts)
    assert sum(lasts) == int(fields[3].sum())


def test_packer_hand_example():
    """W = 8, computed by hand: 0xFD:3 -> 101, 3:2 -> 11 (0x1D so far, 5 bits), 0xAB:8 with
    flush -> 0x157D, words 0x7D, 0x15; a zero-width flush at a boundary adds nothing; 1:1 with
    last -> 0x01 last; an empty frame -> 0x00 last; 0xFF:8 then a zero-width last -> 0xFF,
    0x00 last; 0x13C:8 with last ending on the boundary -> 0x3C last."""
    fields = [(0xFD, 3, 0, 0), (0x3, 2, 0, 0), (0xAB, 8, 1, 0), (0x7, 0, 1, 0), (0x1, 1, 0, 1),
              (0x5, 0, 0, 1), (0xFF, 8, 0, 0), (0x0, 0, 0, 1), (0x3C, 8, 0, 1)]
    values, widths, flush, last = (np.array(column) for column in zip(*fields))
    expected = [(0x7D, 0), (0x15, 0), (0x01, 1), (0x00, 1), (0xFF, 0), (0x00, 1), (0x3C, 1)]
    words, lasts, out, _ = run_packer(values, widths, flush, last, word_bits=8,
                                      max_field_bits=8, in_stall=0.5, out_stall=0.5)
    assert list(zip(words, lasts)) == expected
    assert list(zip(out["word"].tolist(), out["last"].tolist())) == expected


def _cycles_without_stalls(widths, flush, last, word_bits, latency):
    """Cycle count the harness reports for one field accepted every cycle: field ``k`` enters
    in cycle ``k``; a word is valid ``latency`` cycles after the field that completes it,
    and one word leaves per cycle. The harness counts from the first input valid to the edge
    after the last output beat (hence + 1)."""
    pos, done = 0, []                   # done: index of the field completing each word
    for k, (width, fl, la) in enumerate(zip(widths, flush, last)):
        before = pos
        pos += int(width)
        if la and width == 0 and before % word_bits == 0:
            pos += word_bits
        if fl or la:
            pos = -(-pos // word_bits) * word_bits
        done.extend([k] * (pos // word_bits - len(done)))
    t = -1
    for k in done:
        t = max(k + latency, t + 1)
    return t + 1


@pytest.mark.parametrize("word_bits", [32, 64])
def test_packer_takes_one_field_per_cycle(word_bits):
    """No stalls: one field accepted every cycle (also with flushes that complete two words
    with one field and empty frames); the run takes exactly the cycles of that schedule."""
    rng = np.random.default_rng(word_bits)
    n = 2000
    values, widths, flush, last = random_fields(n, word_bits, rng, flush_p=0.2, last_p=0.1)
    _, _, _, run = run_packer(values, widths, flush, last, word_bits=word_bits,
                              max_field_bits=word_bits)
    assert run.cycles == _cycles_without_stalls(widths, flush, last, word_bits,
                                                BitPacker.LATENCY)
    # Full-width fields: one word per field, each the cycle after its field.
    full = np.full(n, word_bits)
    zeros = np.zeros(n, np.int64)
    ends = zeros.copy()
    ends[-1] = 1
    _, _, _, run = run_packer(values, full, zeros, ends, word_bits=word_bits,
                              max_field_bits=word_bits)
    assert run.cycles == n + BitPacker.LATENCY


@pytest.mark.parametrize("kwargs,match", [
    (dict(word_bits=0), "Word width must be a positive integer, not 0"),
    (dict(word_bits="32"), "Word width must be a positive integer, not '32'"),
    (dict(word_bits=True), "Word width must be a positive integer, not True"),
    (dict(word_bits=32, max_field_bits=0),
     "Maximum field width must be an integer between 1 and the word width 32, not 0"),
    (dict(word_bits=32, max_field_bits=33),
     "Maximum field width must be an integer between 1 and the word width 32, not 33"),
    (dict(word_bits=64, max_field_bits=8.0),
     "Maximum field width must be an integer between 1 and the word width 64, not 8.0"),
])
def test_packer_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BitPacker(**kwargs)


def test_packer_ports():
    core = BitPacker(word_bits=64, max_field_bits=20)
    assert (core.word_bits, core.max_field_bits) == (64, 20)
    assert BitPacker().max_field_bits == 32
    field = core.signature.members["i"].signature.members["payload"].shape
    assert [(name, f.shape) for name, f in field] == \
        [("value", packer_field_layout(20)["value"].shape), ("width", range(21)),
         ("flush", packer_field_layout(20)["flush"].shape),
         ("last", packer_field_layout(20)["last"].shape)]
    word = core.signature.members["o"].signature.members["payload"].shape
    assert {name for name, _ in word} == {"word", "last"}
    assert word.size == 65


# --- BitUnpacker (Amaranth simulator) ----------------------------------------------------------

def reference_reads(frames, requests, word_bits):
    """Fields ``(value, last, truncated)`` for ``requests`` ``(width, align)`` read from
    ``frames`` (lists of words), with :class:`golden.codec.BitReader` on each frame's bytes."""
    out = []
    number = 0
    reader = None
    for width, align in requests:
        if reader is None:
            data = b"".join(int(word).to_bytes(word_bits // 8, "little")
                            for word in frames[number])
            reader = BitReader(data, word_bits=word_bits)
        if align:
            reader.pos = min(reader.limit, -(-reader.pos // word_bits) * word_bits)
        if reader.pos + width <= reader.limit:
            value = reader.read(width)
            truncated = 0
        else:
            left = reader.limit - reader.pos
            value, truncated = reader.peek(reader.pos, left), 1
            reader.pos = reader.limit
        last = int(reader.pos == reader.limit)
        out.append((value, last, truncated))
        if last:
            reader = None
            number += 1
    assert number == len(frames), "requests must use up every frame"
    return out


def random_reads(n_frames, word_bits, max_field_bits, rng):
    """Frames of 1..6 random words and requests that read them: random widths (0..max, both
    ends favoured) and aligns, frames ended by a zero-width align, by reading to the end or
    by a truncating request."""
    frames, requests = [], []
    for _ in range(n_frames):
        words = int(rng.integers(1, 7))
        frames.append([int(x) for x in rng.integers(0, 1 << 62, words, dtype=np.uint64)
                       * 4 + rng.integers(0, 4, words, dtype=np.uint64)
                       >> np.uint64(64 - word_bits)] if word_bits < 64 else
                      [int(x) for x in rng.integers(0, np.iinfo(np.uint64).max, words,
                                                    dtype=np.uint64, endpoint=True)])
        total, pos = words * word_bits, 0
        ending = rng.integers(0, 3)
        while True:
            kind = rng.random()
            width = int(max_field_bits if kind < 0.15 else 0 if kind < 0.25
                        else rng.integers(0, max_field_bits + 1))
            align = int(rng.random() < 0.1)
            start = -(-pos // word_bits) * word_bits if align else pos
            if start + width > total:
                if ending == 2:                 # a truncating request ends the frame
                    requests.append((width, align))
                    break
                width = total - start           # read exactly to the end
            requests.append((width, align))
            pos = start + width
            if pos == total:
                break
            if ending == 0 and pos > total - word_bits and rng.random() < 0.3:
                requests.append((0, 1))         # skip the rest (padding) of the final word
                break
    return frames, requests


def run_unpacker(frames, requests, *, word_bits, max_field_bits, stalls=(0.0, 0.0, 0.0),
                 seed=0):
    """Simulate :class:`BitUnpacker` with random idle cycles on ``i`` and ``req`` and random
    ``o.ready`` lows (probabilities ``stalls``); returns the fields and the cycles from the
    first request to the last field."""
    dut = BitUnpacker(word_bits=word_bits, max_field_bits=max_field_bits)
    words = [(word, int(k == len(frame) - 1)) for frame in frames
             for k, word in enumerate(frame)]
    rng = np.random.default_rng(seed)
    out = []
    cycles = {}

    def driver(stream, beats, stall, make):
        async def process(ctx):
            for beat in beats:
                while rng.random() < stall:
                    ctx.set(stream.valid, 0)
                    await ctx.tick()
                ctx.set(stream.payload, make(beat))
                ctx.set(stream.valid, 1)
                await ctx.tick().until(stream.ready)
                # the payload may change now: it was taken at that edge
            ctx.set(stream.valid, 0)
        return process

    async def sink(ctx):
        count = 0
        while len(out) < len(requests):
            ready = int(rng.random() >= stalls[2])
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            count += 1
            if valid and ready:
                out.append((payload.value, payload.last, payload.truncated))
        cycles["n"] = count
        for _ in range(8):                      # no extra fields
            ctx.set(dut.o.ready, 1)
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            assert not valid, "a field beyond the requests"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(driver(dut.i, words, stalls[0],
                             lambda b: {"word": b[0], "last": b[1]}))
    sim.add_testbench(driver(dut.req, requests, stalls[1],
                             lambda r: {"width": r[0], "align": r[1]}))
    sim.add_testbench(sink)
    limit = 1000 + 20 * (len(words) + 2 * len(requests)) / (1 - max(stalls))
    sim.run_until(limit * 1e-8)
    assert len(out) == len(requests), f"{len(out)} fields for {len(requests)} requests " \
        f"after {limit:.0f} cycles: hung"
    return out, cycles["n"]


UNPACKER_CONFIGS = {
    "w32": dict(word_bits=32, max_field_bits=32, stalls=(0.3, 0.2, 0.5)),
    "w64": dict(word_bits=64, max_field_bits=64, stalls=(0.1, 0.5, 0.9)),
    "w32-f11": dict(word_bits=32, max_field_bits=11, stalls=(0.9, 0.1, 0.1)),
    "w8-f8": dict(word_bits=8, max_field_bits=8, stalls=(0.5, 0.5, 0.5)),
}


@pytest.mark.parametrize("name", list(UNPACKER_CONFIGS))
def test_unpacker_matches_reference(name):
    cfg = UNPACKER_CONFIGS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    frames, requests = random_reads(300, cfg["word_bits"], cfg["max_field_bits"], rng)
    expected = reference_reads(frames, requests, cfg["word_bits"])
    got, _ = run_unpacker(frames, requests, word_bits=cfg["word_bits"],
                          max_field_bits=cfg["max_field_bits"], stalls=cfg["stalls"],
                          seed=int(rng.integers(0, 2 ** 31)))
    bad = [k for k, (a, b) in enumerate(zip(got, expected)) if a != b]
    assert not bad, f"{len(bad)} fields differ, first {bad[0]}: {got[bad[0]]} != " \
        f"{expected[bad[0]]}"
    assert sum(t for _, _, t in expected) > 0 and sum(l for _, l, _ in expected) == len(frames)


def test_unpacker_round_trip_with_packer_reference():
    """Fields packed by the reference writer come back from the unpacker: widths as written,
    ``align`` where a flush was; after a frame's ``last`` field, a zero-width align skips its
    padding and a W-bit read takes the all-zero word that carries ``last`` of a frame ending
    on a boundary (reads the consumer derives from the frame length)."""
    rng = np.random.default_rng(7)
    w = 32
    values, widths, flush, last = random_fields(3000, w, rng, flush_p=0.05, last_p=0.01)
    words, lasts, _ = reference_words(values, widths, flush, last, w)
    ends = np.flatnonzero(lasts)
    frames = [list(map(int, f)) for f in np.split(np.array(words, dtype=object), ends[:-1] + 1)]
    requests, written, is_field = [], [], []
    number, pos, align = 0, 0, False
    for value, width, fl, la in zip(values, widths, flush, last):
        width = int(width)
        if align:
            pos = -(-pos // w) * w
        requests.append((width, int(align)))
        written.append(int(value) & ((1 << width) - 1))
        is_field.append(True)
        pos += width
        align = bool(fl)
        if la:
            total = len(frames[number]) * w
            if pos % w:
                requests.append((0, 1))
                is_field.append(False)
                pos = -(-pos // w) * w
            if pos < total:                     # the zero word that carries last
                assert total - pos == w
                requests.append((w, 0))
                is_field.append(False)
            number, pos, align = number + 1, 0, False
    expected = reference_reads(frames, requests, w)
    got, _ = run_unpacker(frames, requests, word_bits=w, max_field_bits=w,
                          stalls=(0.3, 0.3, 0.3), seed=3)
    assert got == expected
    assert [v for (v, _, _), f in zip(got, is_field) if f] == written
    assert not any(t for _, _, t in got)
    assert all(v == 0 for (v, _, _), f in zip(got, is_field) if not f)
    assert sum(l for _, l, _ in got) == len(frames)


def test_unpacker_one_field_per_cycle():
    """No stalls: unaligned full-width reads (two words each) and narrow reads, frame after
    frame, one field every cycle after the first words have arrived."""
    w = 32
    frames = [[0x1234567 * k + j for j in range(40)] for k in range(1, 4)]
    requests = []
    for _ in frames:
        requests += [(5, 0)] + [(w, 0)] * 39 + [(w - 5, 0)]      # 40 words, ends exactly
    expected = reference_reads(frames, requests, w)
    got, cycles = run_unpacker(frames, requests, word_bits=w, max_field_bits=w)
    assert got == expected
    # The first word is taken in cycle 0, request k in cycle k + 1 (also the first of each
    # frame), its field leaves LATENCY cycles later; the sink counts the edge after it: a
    # bubble anywhere (e.g. at a frame boundary or an unaligned two-word read) adds a cycle.
    assert cycles == len(requests) + BitUnpacker.LATENCY + 1, cycles


@pytest.mark.parametrize("kwargs,match", [
    (dict(word_bits=-8), "Word width must be a positive integer, not -8"),
    (dict(word_bits=8, max_field_bits=9),
     "Maximum field width must be an integer between 1 and the word width 8, not 9"),
])
def test_unpacker_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BitUnpacker(**kwargs)
