# amaranth: UnusedElaboratable=no
"""cocotb testbenches of the bit packer (BitPacker) against an independent reference.

The reference here accumulates fields in a Python int (the frame format of ``docs/codec.md``:
fields LSB-first, stream bit ``i`` is bit ``i mod W`` of word ``i // W``, flush pads with
zeros, ``last`` implies flush and a ``last`` field of width 0 at a word boundary adds one
all-zero word to carry ``last``). The reference words are themselves checked against
``golden.codec.BitWriter`` (the same fields written and aligned there give the same bytes, and
the frame ends fall on the words marked ``last``), and against a hand-computed example. Every
output word of the core is compared under random valid/ready stalls. CI runs 10^4 fields per
configuration; ``LOWPREC_LONG=1`` runs 10^5.
"""

import numpy as np
import pytest

from golden.codec import BitWriter
from hdl.packer import BitPacker, packer_field_layout, packer_word_layout
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
