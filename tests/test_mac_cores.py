# amaranth: UnusedElaboratable=no
"""cocotb testbenches of the shift MAC cores (:mod:`hdl.mac`): ShiftMACUnit, MultiplierMACUnit,
ShiftMACArray and MultiplierMACArray against :func:`golden.mac.shift_mac`.

Every result is compared with the golden model by :class:`sim.mac.MACScoreboard` (frame, dot
product and unit named on a mismatch), under random valid/ready stalls on every stream, with
the don't-care inputs (``cfg`` off a frame's first beat, ``end`` without ``last``, ``a`` in
the padding lanes) random. Constructed sums hit the output format's rounding ties, its
overflow and underflow, and the exact accumulator's limit; ``LOWPREC_LONG=1`` runs more
frames.
"""

import math

import numpy as np
import pytest

from golden.formats import FORMATS, encode_float, decode_float
from golden.mac import shift_mac, products, product_lsb, max_shift, min_accumulator_bits
from hdl.mac import (ShiftMACUnit, MultiplierMACUnit, ShiftMACArray, MultiplierMACArray,
                     AdderTree, GridRounder)
from sim.mac import MACScoreboard, mac_expected, mac_rtl, sustained_macs_per_cycle
from references import LONG


pytestmark = pytest.mark.cocotb

ROUNDINGS = ("nearest_even", "nearest_away", "toward_zero", "stochastic")
KINDS = {"shift": False, "multiplier": True}


# ---- operands ----------------------------------------------------------------------------------

def random_frames(rng, *, count, lanes, units=None, T=(1, 6), n=(1, 40), large=False):
    """``count`` frames of random operands, every rounding mode, both phases, a new seed
    each; lengths ``n`` drawn from the range (rarely a multiple of ``lanes``)."""
    frames = []
    for f in range(count):
        t = int(rng.integers(T[0], T[1] + 1))
        length = int(rng.integers(n[0], n[1] + 1))
        shape = (t, length) if units is None else (t, units, length)
        a = rng.integers(-8, 8, shape)
        g = rng.integers(0, 16, (t, length))
        if large:                       # mostly the largest levels: sums far from zero
            g = np.where(rng.random(g.shape) < 0.7, (g & 8) | rng.integers(5, 8, g.shape), g)
        frames.append({"a": a, "g": g, "rounding": ROUNDINGS[f % 4], "phase": (f // 2) % 2,
                       "seed": int(rng.integers(0, 2 ** 32))})
    return frames


def _shifts(fmt, phase):
    """The product shift of each exponent field 1..7."""
    rlog = 2 if fmt == "fp4_r4" else 1
    return [rlog * (e - 1) + 1 - phase for e in range(1, 8)]


def granule(fmt, phase):
    """Exponent of the finest step of a sum of products."""
    return product_lsb(fmt) + _shifts(fmt, phase)[0]


def capacity(fmt, n, phase):
    """A sum magnitude that :func:`operands_for_sums` reaches with ``n`` lanes."""
    return max(n - 8, 0) * 8 * 2.0 ** (max_shift(fmt) - phase + product_lsb(fmt))


def operands_for_sums(targets, n, fmt, phase, rng):
    """Codes ``(a, g)`` of shape ``(len(targets), n)`` whose dot products are exactly
    ``targets`` (multiples of ``2^granule``): a greedy decomposition over the FP4 levels,
    the rest of the lanes zeros (``g`` = ±0 or ``a`` = 0) and cancelling pairs, shuffled."""
    shifts = _shifts(fmt, phase)
    unit = granule(fmt, phase)
    a = np.zeros((len(targets), n), np.int64)
    g = np.zeros((len(targets), n), np.int64)
    for t, value in enumerate(targets):
        scaled = value * 2.0 ** -unit
        assert scaled == int(scaled), f"{value} is not a multiple of 2^{unit}"
        rest = int(scaled)
        terms = []
        for e in range(7, 0, -1):
            weight = 1 << (shifts[e - 1] - shifts[0])
            while abs(rest) >= weight:
                q = min(8, abs(rest) // weight) * (1 if rest > 0 else -1)
                terms.append((q, e))
                rest -= q * weight
        if rest != 0 or len(terms) > n:
            raise ValueError(f"{value} needs more than {n} lanes")
        lanes = []
        for q, e in terms:                              # a x g, sign on either
            if q == 8 or (q != -8 and rng.random() < 0.5):
                lanes.append((-q, e | 8))
            else:
                lanes.append((q, e))
        while len(lanes) < n:
            if n - len(lanes) >= 2 and rng.random() < 0.5:
                x, e = int(rng.integers(-8, 8)), int(rng.integers(1, 8))
                lanes += [(x, e), (x, e | 8)]           # cancelling pair
            elif rng.random() < 0.5:
                lanes.append((int(rng.integers(-8, 8)), int(rng.choice([0, 8]))))
            else:
                lanes.append((0, int(rng.integers(0, 16))))
        order = rng.permutation(n)
        a[t] = [lanes[k][0] for k in order]
        g[t] = [lanes[k][1] for k in order]
    sums = np.ldexp(products(a, g, fmt, phase).sum(axis=1).astype(np.float64),
                    product_lsb(fmt))
    assert np.array_equal(sums, np.asarray(targets, np.float64))
    return a, g


def tie_targets(out_fmt, fmt, phase, n, rng, count):
    """Sums exactly halfway between two neighbours of ``out_fmt`` (normal and, where
    reachable, subnormal), both signs, kept LSB odd and even."""
    f = FORMATS[out_fmt]
    m, unit = f.man_bits, granule(fmt, phase)
    top = min(math.floor(math.log2(capacity(fmt, n, phase))) - 1,
              math.floor(math.log2(f.max_finite)))
    low = max(f.emin, unit + m + 1)
    targets = []
    if low <= top:
        for k in range(count):
            e = int(rng.integers(low, top + 1))
            mantissa = (1 << m) + (k % 2) + 2 * int(rng.integers(0, 1 << max(m - 1, 0)))
            value = (mantissa + 0.5) * 2.0 ** (e - m)
            if mantissa >= 1 << (m + 1) or value >= f.max_finite:
                continue
            targets.append(value if k % 4 < 2 else -value)
    if f.subnormals and f.emin - m - 1 >= unit:
        for k in range(min(count, 1 << m)):
            value = (k + 0.5) * 2.0 ** (f.emin - m)
            targets.append(value if k % 2 else -value)
    return targets


def edge_targets(out_fmt, fmt, phase, n):
    """Sums around the output overflow threshold (where reachable) and tiny sums that
    underflow (or not), both signs, and zero."""
    f = FORMATS[out_fmt]
    unit = 2.0 ** granule(fmt, phase)
    top = f.max_finite
    ulp = 2.0 ** (math.floor(math.log2(top)) - f.man_bits)
    values = [top - ulp, top, top + ulp / 2 - unit, top + ulp / 2, top + ulp / 2 + unit,
              top + ulp, top + 2 * ulp]
    values = [v for v in values if v <= capacity(fmt, n, phase) and v / unit == int(v / unit)]
    small = [k * unit for k in (1, 2, 3, 4, 5, 6, 8, 12, 16, 24)]
    if not f.subnormals:
        normal = 2.0 ** f.emin
        small += [v for v in (normal / 2, normal - unit, normal) if v / unit == int(v / unit)
                  and v <= capacity(fmt, n, phase)]
    targets = [0.0]
    for v in values + small:
        targets += [v, -v]
    return targets


def _kw(kind, **params):
    return dict(multiply=KINDS[kind], **params)


# ---- random operands ---------------------------------------------------------------------------

UNIT_CASES = [
    # kind, lanes, fmt
    ("shift", 1, "fp4_r4"), ("shift", 3, "fp4_r2"), ("shift", 8, "fp4_r4"),
    ("shift", 16, "fp4_r2"), ("multiplier", 1, "fp4_r2"), ("multiplier", 3, "fp4_r4"),
    ("multiplier", 8, "fp4_r2"), ("multiplier", 16, "fp4_r4"),
]


@pytest.mark.parametrize("kind, lanes, fmt", UNIT_CASES)
def test_unit_random(kind, lanes, fmt):
    """Random operands, every rounding mode, both phases, new seeds per frame, lengths not
    multiples of the lanes; stalls on both streams."""
    rng = np.random.default_rng(lanes * 10 + KINDS[kind])
    n = (1, 12) if lanes == 1 else (1, 5 * lanes)
    frames = random_frames(rng, count=24 if LONG else 8, lanes=lanes, n=n)
    frames += random_frames(rng, count=4, lanes=lanes, n=n, large=True)
    result = mac_rtl(frames, lanes=lanes, fmt=fmt, in_stall=0.3, out_stall=0.3, seed=lanes,
                     **_kw(kind))
    for got, frame in zip(result.values, frames):
        assert got.shape == (len(frame["g"]),)
    assert all(e[-1] and not e[:-1].any() for e in result.end)
    assert not any(o.any() for o in result.overflow)


ARRAY_CASES = [
    # kind, units, lanes, depth, reread
    ("shift", 1, 3, 256, 0.0),
    ("shift", 4, 8, 8, 0.2),            # fewer rows than results: reads in between
    ("multiplier", 4, 1, 4, 0.3),
    ("multiplier", 1, 16, 64, 0.1),
]


@pytest.mark.parametrize("kind, units, lanes, depth, reread", ARRAY_CASES)
def test_array_random(kind, units, lanes, depth, reread):
    """Random operands on ``units`` rows sharing ``g``; the host reads the result rows by
    address while writing (and re-reads some), with stalls on input, reads and output."""
    rng = np.random.default_rng(100 + units * 10 + lanes)
    n = (1, 10) if lanes == 1 else (1, 4 * lanes)
    frames = random_frames(rng, count=16 if LONG else 6, lanes=lanes, units=units, n=n,
                           T=(1, 8))
    frames += random_frames(rng, count=2, lanes=lanes, units=units, n=n, large=True)
    result = mac_rtl(frames, units=units, lanes=lanes, depth=depth, fmt="fp4_r4",
                     in_stall=0.3, out_stall=0.3, read_stall=0.3, reread=reread, seed=units,
                     **_kw(kind))
    for got, frame in zip(result.values, frames):
        assert got.shape == (len(frame["g"]), units)


# ---- every operand pair ------------------------------------------------------------------------

def _pair_codes(offset):
    """The a codes of :func:`all_pair_frames`, every a value moved ``offset`` places on."""
    lanes = np.arange(16)
    square_a = np.tile((lanes + offset) % 16 - 8, (16, 1))
    single_a = np.zeros((256, 16), np.int64)
    for pair in range(256):
        single_a[pair, pair % 16] = (pair // 16 + offset) % 16 - 8
    return square_a, single_a


def all_pair_frames(units=None):
    """Every (a, g) code pair, 16 x 16, in lanes = n = 16: a Latin square frame (dot product
    t, lane l: a = l - 8, g = (l + t) mod 16), then each pair alone in its own dot product
    (256 of them, in lane ``pair mod 16``) in phase 0 and in phase 1. Array unit ``p`` sees
    every a value moved ``p`` places on (so each unit also covers every pair)."""
    lanes = np.arange(16)
    square_g = (lanes[None, :] + lanes[:, None]) % 16
    single_g = np.zeros((256, 16), np.int64)
    for pair in range(256):
        single_g[pair, pair % 16] = pair % 16
    if units is None:
        square_a, single_a = _pair_codes(0)
    else:
        codes = [_pair_codes(p) for p in range(units)]
        square_a = np.stack([c[0] for c in codes], 1)
        single_a = np.stack([c[1] for c in codes], 1)
    return [
        {"a": square_a, "g": square_g, "phase": 0},
        {"a": square_a[::-1], "g": square_g, "phase": 1, "rounding": "toward_zero"},
        {"a": single_a, "g": single_g, "phase": 0},
        {"a": single_a, "g": single_g, "phase": 1, "rounding": "stochastic", "seed": 9},
    ]


@pytest.mark.parametrize("kind, units, fmt", [
    ("shift", None, "fp4_r4"), ("shift", None, "fp4_r2"), ("multiplier", None, "fp4_r4"),
    ("multiplier", None, "fp4_r2"), ("shift", 4, "fp4_r2"), ("multiplier", 4, "fp4_r4"),
])
def test_all_operand_pairs(kind, units, fmt):
    """All 16 x 16 operand pairs, alone (every product exact in fp16) and in sums."""
    frames = all_pair_frames(units)
    result = mac_rtl(frames, units=units, lanes=16, fmt=fmt, in_stall=0.2, out_stall=0.2,
                     seed=3, **_kw(kind))
    # the single products, decoded, are a * value(g) * 2^-phase
    g = np.arange(256) % 16
    level = np.where(g & 7, 2.0 ** ((2 if fmt == "fp4_r4" else 1) * ((g & 7) - 4)), 0.0)
    for index, phase in ((2, 0), (3, 1)):
        for p in range(units or 1):
            values = result.values[index] if units is None else result.values[index][:, p]
            a = (np.arange(256) // 16 + p) % 16 - 8
            want = a * np.where(g & 8, -level, level) * 2.0 ** -phase
            assert np.array_equal(decode_float(values, "fp16"), want), f"unit {p}"


# ---- longest accumulation ----------------------------------------------------------------------

LONGEST_CASES = [
    # kind, lanes, out_fmt, saturate, max_length
    ("shift", 16, "fp16", True, 128),
    ("multiplier", 1, "fp16", False, 128),
    ("shift", 3, "bf16", True, 128),
    ("multiplier", 16, "bf16", False, ...),        # the default, 4096
]


@pytest.mark.parametrize("kind, lanes, out_fmt, saturate, max_length", LONGEST_CASES)
def test_longest_accumulation(kind, lanes, out_fmt, saturate, max_length):
    """The longest dot products the exact accumulator allows (``max_length`` rounded up to
    whole beats), of a = -8 and the largest FP4 level of either sign (the accumulator's
    extreme, exact), and sums at the edge of the fp16 range; then one beat longer: flagged
    with ``overflow``, and the next frame is clean again."""
    rng = np.random.default_rng(lanes)
    limit = 4096 if max_length is ... else max_length
    longest = -(-limit // lanes) * lanes
    fmt = "fp4_r4"
    extreme_a = np.full((4, longest), -8)
    extreme_g = np.array([[7], [15], [7], [15]]) * np.ones(longest, np.int64)
    extreme_a[2:, 0] = 7                    # one lane off the extreme
    # sums around fp16's largest value and overflow threshold (65504, 65520) that this
    # length reaches (with 128 products: 65536 - 64 k only)
    edge = []
    for value in (65504.0, 65519.984375, 65520.0, 65520.015625, 65472.0, 65536.0, 65408.0):
        try:
            operands_for_sums([value], longest, fmt, 0, rng)
            edge += [value, -value]
        except ValueError:
            pass
    assert len(edge) >= 6
    edge_a, edge_g = operands_for_sums(edge, longest, fmt, 0, rng)
    frames = [
        {"a": np.concatenate([extreme_a, edge_a]), "g": np.concatenate([extreme_g, edge_g])},
        {"a": edge_a, "g": edge_g, "rounding": "toward_zero"},
        {"a": edge_a, "g": edge_g, "rounding": "nearest_away"},
        {"a": np.full((2, longest + 1), -8), "g": np.full((2, longest + 1), 7),
         "rounding": "stochastic", "seed": 4},                  # one beat too long
        {"a": extreme_a, "g": extreme_g, "rounding": "stochastic", "seed": 5},
    ]
    result = mac_rtl(frames, lanes=lanes, out_fmt=out_fmt, saturate=saturate,
                     max_length=max_length, in_stall=0.2, out_stall=0.2, seed=lanes,
                     **_kw(kind))
    assert [bool(o.any()) for o in result.overflow] == [False, False, False, True, False]
    assert result.overflow[3].all()
    # the extreme sums -+ longest * 8 * 2^6, exact in the accumulator
    total = longest * 8 * 64.0
    want = encode_float(np.array([-total, total]), out_fmt, "nearest_even", saturate)
    assert np.array_equal(result.values[0][:2], want)
    if out_fmt == "bf16" and limit == 128:
        assert np.array_equal(decode_float(result.values[0][:2], out_fmt), [-total, total])


def test_accumulator_width_is_tight():
    """The exact accumulator of the longest dot product needs its full width: the extreme
    sum is the most negative value it must hold (a sanity check of the sizing the test above
    relies on)."""
    for n in (1, 128, 4096):
        bits = min_accumulator_bits(n, "fp4_r4")
        extreme = n * 8 << max_shift("fp4_r4")
        assert extreme < 1 << (bits - 1) and extreme >= 1 << (bits - 2)


# ---- rounding ties, overflow and underflow in the output format --------------------------------

FORMAT_CASES = [
    # out_fmt, saturate, kind, lanes, fmt
    ("fp16", True, "shift", 16, "fp4_r4"),
    ("fp16", False, "multiplier", 8, "fp4_r4"),
    ("bf16", True, "shift", 8, "fp4_r2"),
    ("bf16", False, "shift", 16, "fp4_r4"),
    ("e4m3", True, "shift", 16, "fp4_r4"),
    ("e4m3", False, "multiplier", 16, "fp4_r2"),
    ("e5m2", True, "multiplier", 16, "fp4_r4"),
    ("e5m2", False, "shift", 16, "fp4_r4"),
    ("dlfloat16", True, "shift", 16, "fp4_r4"),
    ("dlfloat16", False, "multiplier", 8, "fp4_r2"),
    ("e3m2", True, "shift", 16, "fp4_r4"),     # reachable underflow (and subnormal ties)
    ("e2m1", False, "multiplier", 3, "fp4_r2"),
]


@pytest.mark.parametrize("out_fmt, saturate, kind, lanes, fmt", FORMAT_CASES)
def test_output_ties_overflow_underflow(out_fmt, saturate, kind, lanes, fmt):
    """Sums exactly halfway between two codes of the output format (kept LSB odd and even,
    both signs, subnormal where reachable), around the overflow threshold and tiny ones, in
    every rounding mode and both phases."""
    rng = np.random.default_rng(len(out_fmt) * 7 + lanes + saturate)
    n = 192 if lanes > 3 else 40
    frames = []
    for k in range(8 if LONG else 4):
        rounding, phase = ROUNDINGS[k % 4], k % 2 if k < 4 else 1 - k % 2
        ties = tie_targets(out_fmt, fmt, phase, n, rng, 12)
        targets = ties + edge_targets(out_fmt, fmt, phase, n)
        if k == 0:                  # the construction: ties are not representable, and
            codes = {mode: encode_float(np.array(ties), out_fmt, mode, saturate)
                     for mode in ("nearest_even", "nearest_away", "toward_zero")}
            assert len(ties) >= 8
            assert (codes["nearest_away"] != codes["toward_zero"]).all()
            assert (codes["nearest_even"] != codes["nearest_away"]).any()
            assert (codes["nearest_even"] == codes["nearest_away"]).any()
        a, g = operands_for_sums(targets, n, fmt, phase, rng)
        frames.append({"a": a, "g": g, "rounding": rounding, "phase": phase,
                       "seed": int(rng.integers(0, 2 ** 32))})
    result = mac_rtl(frames, lanes=lanes, fmt=fmt, out_fmt=out_fmt, saturate=saturate,
                     in_stall=0.3, out_stall=0.3, seed=lanes, **_kw(kind))
    assert len(result.values) == len(frames)
    # the edges were reached where the operands can reach them: overflow (to the largest
    # value, or Inf/NaN without saturation) and underflow (nonzero sums to zero)
    f = FORMATS[out_fmt]
    sums = np.concatenate([np.ldexp(products(fr["a"], fr["g"], fmt, fr["phase"]).sum(axis=1)
                                    .astype(np.float64), product_lsb(fmt)) for fr in frames])
    got = decode_float(np.concatenate(result.values), out_fmt)
    beyond = np.abs(sums) > f.max_finite + 2.0 ** (math.floor(math.log2(f.max_finite))
                                                    - f.man_bits)
    if capacity(fmt, n, 0) > 1.2 * f.max_finite:
        assert beyond.any()
        if saturate or f.specials == "none":
            assert (np.abs(got[beyond]) == f.max_finite).all()
        else:
            assert (~np.isfinite(got[beyond])).all()
    if 2.0 ** (f.emin - f.man_bits) > 2.0 ** granule(fmt, 1):
        assert ((got == 0) & (sums != 0)).any()


# ---- chunked accumulation ----------------------------------------------------------------------

def swamping_frames(rng, *, count, lanes, chunk, units=None):
    """Dot products whose chunked float sum differs from the exact one: large products
    first, then many small ones; long sums of the largest products that saturate the
    accumulator; random ones. Lengths are not multiples of ``chunk``."""
    frames = []
    for f in range(count):
        n = 3 * chunk + lanes + int(rng.integers(0, chunk))
        T = 6
        shape = (T, n) if units is None else (T, units, n)
        a = rng.integers(-8, 8, shape)
        g = rng.integers(0, 16, (T, n))
        g[:2, :chunk] = (g[:2, :chunk] & 8) | 7            # large head
        g[:2, chunk:] = (g[:2, chunk:] & 8) | rng.integers(1, 3, (2, n - chunk))
        g[2] = (g[2] & 8) | rng.integers(5, 8, n)         # large throughout
        frames.append({"a": a, "g": g, "rounding": ROUNDINGS[f % 4], "phase": f % 2,
                       "seed": int(rng.integers(0, 2 ** 32))})
    # saturation of the accumulator: -8 x 64 times n > 65504 / 512 (fp16)
    n = max(-(-200 // chunk) * chunk + 1, 201)
    shape = (2, n) if units is None else (2, units, n)
    frames.append({"a": np.full(shape, -8), "g": np.array([[7], [15]]) * np.ones(n, int),
                   "rounding": "nearest_even"})
    return frames


CHUNK_CASES = [
    # kind, units, lanes, acc, chunk (in lanes)
    ("shift", None, 4, "fp16", 1),
    ("multiplier", None, 8, "fp16", 4),
    ("multiplier", None, 3, "dlfloat16", 1),
    ("shift", None, 16, "dlfloat16", 4),
    ("shift", 4, 4, "fp16", 4),
    ("multiplier", 1, 8, "dlfloat16", 1),
]


@pytest.mark.parametrize("kind, units, lanes, acc, chunk", CHUNK_CASES)
def test_chunked_accumulation(kind, units, lanes, acc, chunk):
    """Chunk-based float accumulation (fp16, dlfloat16; chunk = lanes and 4 lanes) matches
    the golden model, and is not the exact sum (swamping, saturation)."""
    chunk *= lanes
    rng = np.random.default_rng(lanes * 3 + chunk)
    frames = swamping_frames(rng, count=6 if LONG else 3, lanes=lanes, chunk=chunk,
                             units=units)
    result = mac_rtl(frames, units=units, lanes=lanes, acc=acc, chunk=chunk, max_length=None,
                     in_stall=0.3, out_stall=0.3, seed=chunk, **_kw(kind))
    assert result.overflow is None
    differ = 0
    for got, frame in zip(result.values, frames):
        a, g = frame["a"], frame["g"]
        if units is not None:
            g = g[:, None, :]
        exact = shift_mac(a, g, "fp4_r4", frame.get("phase", 0), "exact", None, "fp16",
                          frame["rounding"], frame.get("seed", 0), units=units or 1)
        differ += int((np.asarray(got).reshape(exact.shape) != exact).sum())
    assert differ > 0, "the chunked sums should differ from the exact ones somewhere"
    # the saturating frame: the accumulator stops at fp16's largest value
    if acc == "fp16":
        last = np.asarray(result.values[-1]).reshape(2, -1)[:, 0]
        assert list(decode_float(last, "fp16")) == [-65504.0, 65504.0]


# ---- stochastic rounding -----------------------------------------------------------------------

SEEDS = [0, 1, 2 ** 32 - 1, 0x9E3779B9, 1, 12345]

STOCHASTIC_CASES = [
    # kind, units, lanes, acc, chunk, sr_bits, out_fmt
    ("shift", None, 8, "exact", None, 8, "e4m3"),
    ("multiplier", None, 3, "fp16", 6, 4, "fp16"),
    ("shift", 4, 4, "dlfloat16", 4, 12, "bf16"),
    ("multiplier", None, 1, "exact", None, 16, "e5m2"),
]


@pytest.mark.parametrize("kind, units, lanes, acc, chunk, sr_bits, out_fmt", STOCHASTIC_CASES)
def test_stochastic_seeds(kind, units, lanes, acc, chunk, sr_bits, out_fmt):
    """Stochastic rounding bit-exact over frames with a new seed each: the generator
    restarts per frame (the same seed and data give the same codes in a later frame) and
    another seed changes some codes."""
    rng = np.random.default_rng(lanes + (units or 0))
    n = 4 * lanes + 3 if lanes > 1 else 9
    shape = (12, n) if units is None else (12, units, n)
    a = rng.integers(-8, 8, shape)
    top = 6 if out_fmt == "e4m3" else 8        # sums inexact in out_fmt, mostly in range
    g = (rng.integers(0, 2, (12, n)) * 8) | rng.integers(1, top, (12, n))
    seeds = SEEDS * (3 if LONG else 1)
    frames = [{"a": a, "g": g, "rounding": "stochastic", "seed": s, "phase": k % 2}
              for k, s in enumerate(seeds)]
    frames[4]["phase"] = frames[1]["phase"]
    extra = {} if acc == "exact" else {"acc": acc, "chunk": chunk, "max_length": None}
    result = mac_rtl(frames, units=units, lanes=lanes, sr_bits=sr_bits, out_fmt=out_fmt,
                     in_stall=0.3, out_stall=0.3, seed=sr_bits, **extra, **_kw(kind))
    assert np.array_equal(result.values[1], result.values[4])          # seed 1 twice
    assert not np.array_equal(result.values[0], result.values[2])
    nearest = shift_mac(a, g if units is None else g[:, None, :],
                        "fp4_r4", frames[0]["phase"], acc, chunk, out_fmt, "nearest_even",
                        units=units or 1)
    assert not np.array_equal(np.asarray(result.values[0]).reshape(nearest.shape), nearest)


# ---- the checks themselves ---------------------------------------------------------------------

def test_scoreboard_reports_mismatch():
    """A wrong expected value fails the run, naming frame, dot product, unit, got and
    expected."""
    rng = np.random.default_rng(7)
    frames = random_frames(rng, count=2, lanes=4, units=2, n=(5, 8), T=(3, 3))
    core = ShiftMACArray(units=2, lanes=4)
    expected = [mac_expected(frame, core) for frame in frames]
    right = int(expected[1]["values"][2, 1])
    expected[1]["values"][2, 1] = right ^ 1
    with pytest.raises(AssertionError, match=rf"1 mismatches.*\n  frame 1, dot product 2, "
                       rf"unit 1: got {right:#06x} \(.*\), expected {right ^ 1:#06x}"):
        mac_rtl(frames, core=core, expected=expected, in_stall=0.2, out_stall=0.2)


def test_scoreboard_flags():
    """The scoreboard's other checks: end markers, overflow flags, counts (no simulation)."""
    exp = [{"values": np.array([[1], [2]]), "overflow": np.array([False, False]),
            "end": np.array([False, True])}]
    board = MACScoreboard(exp, out_fmt="fp16")
    assert board.report([{"values": np.array([1, 2]), "overflow": np.array([0, 0]),
                          "end": np.array([0, 1])}]) is None
    report = board.report([{"values": np.array([1, 3]), "overflow": np.array([0, 1]),
                            "end": np.array([1, 1])}])
    assert "frame 0, dot product 0: end got 1, expected 0" in report
    assert "frame 0, dot product 1: overflow got 1, expected 0" in report
    assert "frame 0, dot product 1, unit 0: got 0x0003 (1.78813934e-07), expected 0x0002" \
        in report
    assert "count" in board.report([{"values": np.array([1]), "overflow": np.array([0]),
                                     "end": np.array([1])}])
    assert "missing" in board.report([])
    # overflowing dot products have no meaningful value
    exp[0]["overflow"] = np.array([True, False])
    assert board.report([{"values": np.array([9, 2]), "overflow": np.array([1, 0]),
                          "end": np.array([0, 1])}]) is None


def test_mac_rtl_errors():
    frame = {"a": np.zeros((2, 4), int), "g": np.zeros((2, 4), int)}
    with pytest.raises(ValueError, match=r"a must have shape \(T, P, n\)"):
        mac_rtl([frame], units=2, lanes=4)
    with pytest.raises(ValueError, match="codes must lie"):
        mac_rtl([{"a": np.full((1, 4), 8), "g": np.zeros((1, 4), int)}], lanes=4)
    with pytest.raises(ValueError, match="unknown keys"):
        mac_rtl([dict(frame, sed=1)], lanes=4)
    with pytest.raises(ValueError, match="probability"):
        mac_rtl([frame], lanes=4, in_stall=1.0)
    with pytest.raises(ValueError, match="At least one frame"):
        mac_rtl([], lanes=4)


# ---- throughput --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, units, lanes, read_stall", [
    ("shift", 4, 8, 0.0), ("multiplier", 1, 16, 0.5), ("shift", None, 3, 0.0),
])
def test_sustained_macs_per_cycle(kind, units, lanes, read_stall):
    """Without input stalls a beat goes in every cycle: lanes x units MACs a cycle, for the
    array whatever the host's reads do (depth above the rows)."""
    rng = np.random.default_rng(5)
    frames = random_frames(rng, count=4, lanes=lanes, units=units, n=(3 * lanes, 6 * lanes),
                           T=(10, 20))
    rate = sustained_macs_per_cycle(frames, units=units, lanes=lanes, depth=128,
                                    read_stall=read_stall, out_stall=read_stall,
                                    **_kw(kind)) if units else \
        sustained_macs_per_cycle(frames, lanes=lanes, **_kw(kind))
    assert rate == lanes * (units or 1)


@pytest.mark.parametrize("chunk_beats, expected", [(2, 1.0), (4, 1.0), (1, 0.51)])
def test_chunked_array_rate(chunk_beats, expected):
    """A float accumulator's loop takes two cycles per chunk: chunks of two beats or more run
    at one beat per cycle, one-beat chunks at one beat every two cycles (the array holds its
    input off meanwhile)."""
    lanes, units = 4, 2
    rng = np.random.default_rng(9)
    frames = random_frames(rng, count=2, lanes=lanes, units=units, n=(8 * lanes, 8 * lanes),
                           T=(6, 6))
    rate = sustained_macs_per_cycle(frames, units=units, lanes=lanes, depth=64,
                                    acc="fp16", chunk=chunk_beats * lanes)
    assert rate == pytest.approx(expected * lanes * units, rel=0.03)


def test_sustained_rate_drops_with_stalls():
    rng = np.random.default_rng(6)
    frames = random_frames(rng, count=2, lanes=4, n=(12, 16), T=(10, 10))
    result = mac_rtl(frames, lanes=4, in_stall=0.5)
    assert result.macs_per_cycle < 3.5
    assert result.beats == sum(len(f["g"]) * -(-len(f["g"][0]) // 4) for f in frames)


# ---- parameter errors --------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [ShiftMACUnit, MultiplierMACUnit])
@pytest.mark.parametrize("params, error, match", [
    ({"lanes": 0}, ValueError, r"Lane count must be an integer between 1 and 64, not 0"),
    ({"lanes": 65}, ValueError, r"Lane count .* not 65"),
    ({"lanes": True}, ValueError, r"Lane count .* not True"),
    ({"lanes": 2.0}, ValueError, r"Lane count .* not 2\.0"),
    ({"lanes": 4, "fmt": "fp4"}, ValueError, r"FP4 format must be one of fp4_r4, fp4_r2"),
    ({"lanes": 4, "fmt": "e2m1"}, ValueError, r"FP4 format must be one of"),
    ({"lanes": 4, "acc": "exact", "chunk": 4}, ValueError, r"Chunk must be None with an exact"),
    ({"lanes": 4, "acc": "fp16"}, ValueError, r"Maximum length must be None|Chunk must be a "
                                              r"positive integer"),
    ({"lanes": 4, "acc": "fp16", "chunk": 6, "max_length": None}, ValueError,
     r"Chunk must be a multiple of the lane count 4, not 6"),
    ({"lanes": 4, "acc": "fp16", "chunk": 0, "max_length": None}, ValueError,
     r"Chunk must be a positive integer"),
    ({"lanes": 4, "acc": "fp16", "chunk": 4, "max_length": 100}, ValueError,
     r"Maximum length must be None with a float accumulator .*, not 100"),
    ({"lanes": 4, "acc": "fp32", "chunk": 4, "max_length": None}, ValueError,
     r"Accumulator format fp32 reaches 2\^127"),
    ({"lanes": 4, "acc": "fp4_r4", "chunk": 4, "max_length": None}, ValueError,
     r"Accumulator format must be a radix-2 float format"),
    ({"lanes": 4, "acc": "int8", "chunk": 4, "max_length": None}, ValueError,
     r"Accumulator format must be a radix-2 float format, not int8"),
    ({"lanes": 4, "acc": "float17", "chunk": 4, "max_length": None}, ValueError,
     r"Accumulator must be 'exact' or a radix-2 float format"),
    ({"lanes": 4, "out_fmt": "fp4_r4"}, ValueError, r"Output format must be a radix-2 float"),
    ({"lanes": 4, "out_fmt": "nope"}, ValueError, r"Output format must be one of .* not 'nope'"),
    ({"lanes": 4, "out_fmt": "int8"}, ValueError, r"Output format must be a radix-2 float "
                                                  r"format, not int8"),
    ({"lanes": 4, "max_length": 0}, ValueError, r"Maximum length must be an integer between 1 "
                                                r"and 2\*\*24, not 0"),
    ({"lanes": 4, "max_length": 2 ** 24 + 1}, ValueError, r"Maximum length .* not 16777217"),
    ({"lanes": 4, "max_length": None}, ValueError, r"Maximum length .* not None"),
    ({"lanes": 4, "sr_bits": 0}, ValueError, r"Stochastic rounding bits must be an integer "
                                             r"between 1 and 24, not 0"),
    ({"lanes": 4, "sr_bits": 25}, ValueError, r"Stochastic rounding bits .* not 25"),
    ({"lanes": 4, "saturate": 1}, TypeError, r"Saturate must be a bool, not 1"),
])
def test_unit_parameter_errors(cls, params, error, match):
    with pytest.raises(error, match=match):
        cls(**params)


@pytest.mark.parametrize("cls", [ShiftMACArray, MultiplierMACArray])
@pytest.mark.parametrize("params, match", [
    ({"units": 0, "lanes": 4}, r"Unit count must be an integer between 1 and 64, not 0"),
    ({"units": 65, "lanes": 4}, r"Unit count .* not 65"),
    ({"units": False, "lanes": 4}, r"Unit count .* not False"),
    ({"units": 2, "lanes": 4, "depth": 3}, r"Depth must be a power of two between 2 and 65536, "
                                           r"not 3"),
    ({"units": 2, "lanes": 4, "depth": 1}, r"Depth .* not 1"),
    ({"units": 2, "lanes": 4, "depth": 131072}, r"Depth .* not 131072"),
    ({"units": 2, "lanes": 4, "depth": True}, r"Depth .* not True"),
    ({"units": 2, "lanes": 0}, r"Lane count .* not 0"),
    ({"units": 2, "lanes": 4, "acc": "dlfloat16", "chunk": 2, "max_length": None},
     r"Chunk must be a multiple of the lane count 4, not 2"),
])
def test_array_parameter_errors(cls, params, match):
    with pytest.raises(ValueError, match=match):
        cls(**params)


def test_helper_parameter_errors():
    with pytest.raises(ValueError, match=r"Value count must be an integer between 1 and 4096"):
        AdderTree(count=0, width=4)
    with pytest.raises(ValueError, match=r"Value width must be a positive integer, not 0"):
        AdderTree(count=4, width=0)
    with pytest.raises(ValueError, match=r"Width must be an integer of at least 2, not 1"):
        GridRounder("fp16", width=1, lsb=-7)
    with pytest.raises(ValueError, match=r"Width 20 cannot hold the largest value of fp16"):
        GridRounder("fp16", width=20, lsb=-7)
    with pytest.raises(ValueError, match=r"The largest value of fp16 is not a multiple of 2\^6"):
        GridRounder("fp16", width=40, lsb=6)


def test_parameters_accepted():
    """The limits themselves are fine, and the units and their baselines agree on latency."""
    for cls in (ShiftMACUnit, MultiplierMACUnit):
        assert cls(lanes=64, max_length=2 ** 24).latency > 0
        assert cls(lanes=1, max_length=1).latency == cls(lanes=1, max_length=1).latency
    assert ShiftMACUnit(lanes=8).latency == MultiplierMACUnit(lanes=8).latency
    ShiftMACArray(units=64, lanes=1, depth=2)
    MultiplierMACArray(units=1, lanes=64, depth=65536, acc="fp16", chunk=64, max_length=None)
