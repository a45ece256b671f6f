"""Tests of the 4-bit shift MAC golden model (``golden/mac.py``; SPEC section 6).

The reference below is written from SPEC 1 and 6 with ``fractions.Fraction`` loops, one
element at a time, and shares nothing with ``golden.mac`` or ``golden.formats``:

* FP4 codes: sign bit 3, exponent field ``e`` (bits 0-2); ``e = 0`` is 0, otherwise
  ``±4^(e-4) * 2^-phase`` (``fp4_r4``) or ``±2^(e-4) * 2^-phase`` (``fp4_r2``);
  INT4 codes are two's complement values -8..7;
* the dot product is the exact Fraction sum of ``a_i * value(g_i)``;
* chunk-based float accumulation: ``acc = round(acc + chunk_sum)`` to the accumulator format
  once per chunk (from 0, saturating at its largest finite value), then a final rounding to
  ``out_fmt``;
* rounding acts on the magnitude: the quantum is ``2^(max(e, emin) - man_bits)`` (subnormals)
  or ``2^(e - man_bits)`` / ``2^emin`` (no subnormals); stochastic rounding truncates the
  remainder below the quantum to ``R`` bits ``t`` and rounds up iff ``t + r >= 2^R``;
  a rounded magnitude above max finite saturates or gives Inf (ieee) / NaN (fn);
* codes are assembled from the rounded value by the format's definition;
* stochastic draws come from ``golden.rng.draws`` in the order of the module docstring of
  ``golden/mac.py``: event ``k`` of dot product ``t`` of unit ``p`` uses draws
  ``2 * ((t * K + k) * P + p)`` (accumulator) and ``... + 1`` (output).
"""

import math
from fractions import Fraction as F

import numpy as np
import pytest
from hypothesis import given, strategies as st

from golden import FloatFormat, decode_float, rng
from golden import mac
from golden.mac import (accumulator_bits, dequantize_fp4, fp4_shifts, max_shift,
                        min_accumulator_bits, min_accumulator_mantissa, product_lsb, products,
                        quantize_fp4, quantize_int4, shift_mac, variance_retention)
from references import HYPOTHESIS


MODES = ["nearest_even", "nearest_away", "toward_zero", "stochastic"]
FP4 = ["fp4_r4", "fp4_r2"]

#: (exp_bits, man_bits, bias, specials, subnormals) of the float formats used here, from
#: SPEC 1 (not from golden.FORMATS)
SPECS = {
    "fp32":      (8, 23, 127, "ieee", True),
    "bf16":      (8, 7, 127, "ieee", True),
    "fp16":      (5, 10, 15, "ieee", True),
    "e5m2":      (5, 2, 15, "ieee", True),
    "e4m3":      (4, 3, 7, "fn", True),
    "dlfloat16": (6, 9, 31, "fn", False),
}


# --------------------------------------------------------------------------------------------
# The reference
# --------------------------------------------------------------------------------------------

def pow2(e):
    return F(2) ** e


def fp4_value(g, fmt, phase):
    sign, e = g >> 3, g & 7
    if e == 0:
        return F(0)
    radix = 4 if fmt == "fp4_r4" else 2
    v = F(radix) ** (e - 4) / 2 ** phase
    return -v if sign else v


def floor_log2(x):
    """floor(log2(x)) of a positive Fraction."""
    e = x.numerator.bit_length() - x.denominator.bit_length()
    while pow2(e) > x:
        e -= 1
    while pow2(e + 1) <= x:
        e += 1
    return e


def max_finite(spec):
    E, M, bias, specials, _ = spec
    top = (1 << E) - 1
    if specials == "ieee":
        field, mant = top - 1, (1 << M) - 1
    elif specials == "fn":
        field, mant = top, (1 << M) - 2
    else:
        field, mant = top, (1 << M) - 1
    return pow2(field - bias) * (1 + F(mant, 1 << M))


def round_magnitude(x, spec, rounding, draw=None, R=8):
    """``x >= 0`` rounded to the format's grid, exponent unbounded above."""
    E, M, bias, specials, subnormals = spec
    if x == 0:
        return F(0)
    emin = 1 - bias
    e = floor_log2(x)
    if e >= emin:
        q = e - M
    else:
        q = emin - M if subnormals else emin
    scaled = x / pow2(q)
    n = math.floor(scaled)
    rest = scaled - n
    if rounding == "nearest_even":
        up = rest > F(1, 2) or (rest == F(1, 2) and n % 2 == 1)
    elif rounding == "nearest_away":
        up = rest >= F(1, 2)
    elif rounding == "toward_zero":
        up = False
    else:
        t = math.floor(rest * 2 ** R)
        up = t + draw >= 2 ** R
    return (n + int(up)) * pow2(q)


def round_signed(x, spec, rounding, saturate, draw=None, R=8):
    """``(negative, value, special)``: special is None, "inf" or "nan"."""
    negative = x < 0
    m = round_magnitude(abs(x), spec, rounding, draw, R)
    if m > max_finite(spec):
        if saturate or spec[3] == "none":
            m = max_finite(spec)
        else:
            return negative, None, "inf" if spec[3] == "ieee" else "nan"
    return negative, m, None


def encode(negative, m, special, spec):
    E, M, bias, specials, _ = spec
    if special == "inf":
        mag = ((1 << E) - 1) << M
    elif special == "nan":
        mag = (1 << (E + M)) - 1
    elif m == 0:
        mag = 0
    else:
        e = floor_log2(m)
        if e < 1 - bias:
            mant = m / pow2(1 - bias - M)
            assert mant.denominator == 1
            mag = int(mant)
        else:
            mant = (m / pow2(e) - 1) * 2 ** M
            assert mant.denominator == 1
            mag = ((e + bias) << M) | int(mant)
    return mag | (int(negative) << (E + M))


def spec_of(fmt):
    if isinstance(fmt, FloatFormat):
        return (fmt.exp_bits, fmt.man_bits, fmt.bias, fmt.specials, fmt.subnormals)
    return SPECS[fmt]


def ref_dot(a, g, fmt, phase, acc, chunk, out, rounding, saturate=True, acc_draws=None,
            out_draw=None, R=8):
    """One dot product: the output code."""
    terms = [F(int(x)) * fp4_value(int(y), fmt, phase) for x, y in zip(a, g)]
    if acc == "exact":
        total = sum(terms, F(0))
    else:
        total = F(0)
        for k in range(-(-len(terms) // chunk)):
            s = total + sum(terms[k * chunk:(k + 1) * chunk], F(0))
            neg, m, _ = round_signed(s, spec_of(acc), rounding, True,
                                     None if acc_draws is None else acc_draws[k], R)
            total = -m if neg else m
    neg, m, special = round_signed(total, spec_of(out), rounding, saturate, out_draw, R)
    return encode(neg, m, special, spec_of(out))


def ref_mac(a, g, fmt="fp4_r4", phase=0, acc="exact", chunk=None, out="fp16",
            rounding="nearest_even", seed=0, sr_bits=8, saturate=True, units=1):
    """shift_mac by the reference, draws in the documented order."""
    a, g = np.asarray(a), np.asarray(g)
    n = a.shape[-1]
    batch = np.broadcast_shapes(a.shape[:-1], g.shape[:-1])
    a2 = np.broadcast_to(a, batch + (n,)).reshape(-1, n)
    g2 = np.broadcast_to(g, batch + (n,)).reshape(-1, n)
    outputs = a2.shape[0]
    K = 1 if chunk is None else -(-n // chunk)
    draws = None
    if rounding == "stochastic":
        draws = [int(d) for d in rng.draws(seed, 2 * outputs * K, sr_bits)]
    codes = []
    for j in range(outputs):
        t, p = divmod(j, units)
        acc_draws = out_draw = None
        if draws is not None:
            base = [2 * ((t * K + k) * units + p) for k in range(K)]
            acc_draws = [draws[b] for b in base]
            out_draw = draws[base[K - 1] + 1]
        codes.append(ref_dot(a2[j], g2[j], fmt, phase, acc, chunk, out, rounding, saturate,
                             acc_draws, out_draw, sr_bits))
    return np.array(codes, dtype=np.int64).reshape(batch)


def operands(rng_, batch, n, spread=True):
    """Random INT4/FP4 codes; rows use different ranges of exponent fields so that the sums
    span small, cancelling and large values."""
    a = rng_.integers(-8, 8, batch + (n,))
    g = np.empty(batch + (n,), np.int64)
    flat = g.reshape(-1, n)
    for row in range(flat.shape[0]):
        lo = int(rng_.integers(0, 8)) if spread else 0
        hi = int(rng_.integers(lo, 8)) if spread else 7
        flat[row] = rng_.integers(lo, hi + 1, n) | (rng_.integers(0, 2, n) << 3)
    return a, g


# --------------------------------------------------------------------------------------------
# Against the reference
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FP4)
@pytest.mark.parametrize("phase", [0, 1])
@pytest.mark.parametrize("rounding", MODES)
@pytest.mark.parametrize("out", ["fp16", "bf16", "fp32", "e4m3", "dlfloat16"])
def test_exact_accumulator(fmt, phase, rounding, out):
    r = np.random.default_rng(hash((fmt, phase, rounding, out)) & 0xFFFF)
    for n in (1, 5, 37):
        a, g = operands(r, (7,), n)
        seed = int(r.integers(0, 2 ** 32))
        got = shift_mac(a, g, fmt, phase, out_fmt=out, rounding=rounding, seed=seed)
        want = ref_mac(a, g, fmt, phase, out=out, rounding=rounding, seed=seed)
        np.testing.assert_array_equal(got.astype(np.int64), want)


@pytest.mark.parametrize("fmt", FP4)
@pytest.mark.parametrize("phase", [0, 1])
@pytest.mark.parametrize("rounding", MODES)
@pytest.mark.parametrize("acc", ["fp16", "dlfloat16"])
@pytest.mark.parametrize("chunk", [1, 3, 8, 64])
def test_chunked_accumulator(fmt, phase, rounding, acc, chunk):
    r = np.random.default_rng(hash((fmt, phase, rounding, acc, chunk)) & 0xFFFF)
    for n, out in ((1, "fp32"), (20, "fp16"), (100, "fp32")):
        a, g = operands(r, (3, 2), n)
        seed = int(r.integers(0, 2 ** 32))
        sr_bits = int(r.integers(1, 25))
        kw = dict(acc=acc, chunk=chunk, out_fmt=out, rounding=rounding, seed=seed,
                  sr_bits=sr_bits)
        got = shift_mac(a, g, fmt, phase, **kw)
        want = ref_mac(a, g, fmt, phase, acc, chunk, out, rounding, seed, sr_bits)
        np.testing.assert_array_equal(got.astype(np.int64), want)


@pytest.mark.parametrize("units", [1, 2, 3, 6])
@pytest.mark.parametrize("acc,chunk", [("exact", None), ("fp16", 4), ("dlfloat16", 1)])
def test_stochastic_draw_order_units(units, acc, chunk):
    """The documented draw order with P units in lock step, on sums whose rounding depends
    on the draws (fp16 accumulator, e4m3 output), two different batch layouts."""
    r = np.random.default_rng(units * 7 + (chunk or 0))
    a = r.integers(-8, 8, (4, 6, 5))
    g = r.integers(4, 8, (4, 6, 5)) | (r.integers(0, 2, (4, 6, 5)) << 3)   # levels 1..8
    for seed in (0, 12345, 2 ** 32 - 1):
        kw = dict(acc=acc, chunk=chunk, out_fmt="e4m3", rounding="stochastic", seed=seed,
                  sr_bits=5, units=units)
        got = shift_mac(a, g, "fp4_r2", **kw)
        want = ref_mac(a, g, "fp4_r2", 0, acc, chunk, "e4m3", "stochastic", seed, 5,
                       units=units)
        np.testing.assert_array_equal(got.astype(np.int64), want)
    # with one event per dot product (K = 1) the indices are 2j and 2j + 1 for any P; with
    # K > 1 they depend on P, and so do the results
    if units > 1 and chunk != 1:
        other = shift_mac(a, g, "fp4_r2", acc=acc, chunk=chunk, out_fmt="e4m3",
                          rounding="stochastic", seed=1, sr_bits=5, units=1)
        mine = shift_mac(a, g, "fp4_r2", acc=acc, chunk=chunk, out_fmt="e4m3",
                         rounding="stochastic", seed=1, sr_bits=5, units=units)
        assert (other != mine).any() if acc == "fp16" else (other == mine).all()


@pytest.mark.parametrize("fmt", FP4)
@pytest.mark.parametrize("phase", [0, 1])
def test_all_operand_pairs(fmt, phase):
    """n = 1, out fp32: every INT4 x FP4 pair is exactly a * value(g)."""
    a, g = np.meshgrid(np.arange(-8, 8), np.arange(16), indexing="ij")
    got = shift_mac(a[..., None], g[..., None], fmt, phase, out_fmt="fp32")
    values = decode_float(got, "fp32")
    for i in range(16):
        for j in range(16):
            want = F(int(a[i, j])) * fp4_value(int(g[i, j]), fmt, phase)
            assert F(float(values[i, j])) == want, (a[i, j], g[i, j])
            code = int(got[i, j])
            assert code == encode(want < 0, abs(want), None, SPECS["fp32"]) or \
                (want == 0 and code in (0, 0x80000000))
    # products() is a * 2^shift in units of 2^LSB
    p = products(a, g, fmt, phase)
    negative, shift, zero = fp4_shifts(g, fmt, phase)
    lsb = product_lsb(fmt)
    for i in range(16):
        for j in range(16):
            want = F(int(a[i, j])) * fp4_value(int(g[i, j]), fmt, phase)
            assert F(int(p[i, j])) * pow2(lsb) == want
            if not zero[i, j]:
                sign = -1 if negative[i, j] else 1
                assert int(p[i, j]) == sign * int(a[i, j]) * 2 ** int(shift[i, j])
            assert zero[i, j] == ((g[i, j] & 7) == 0)
            assert negative[i, j] == (g[i, j] >= 8)


def test_lsb_and_max_shift():
    for fmt, log_radix in (("fp4_r4", 2), ("fp4_r2", 1)):
        levels = [abs(fp4_value(g, fmt, ph)) for g in range(1, 8) for ph in (0, 1)]
        assert pow2(product_lsb(fmt)) == min(levels)
        assert pow2(max_shift(fmt) + product_lsb(fmt)) == max(levels)
        g = np.arange(16)
        for phase in (0, 1):
            _, shift, zero = fp4_shifts(g, fmt, phase)
            assert shift[~zero].min() >= 0 and shift.max() <= max_shift(fmt)
    assert (product_lsb("fp4_r4"), max_shift("fp4_r4")) == (-7, 13)
    assert (product_lsb("fp4_r2"), max_shift("fp4_r2")) == (-4, 7)


# --------------------------------------------------------------------------------------------
# Accumulator sizing
# --------------------------------------------------------------------------------------------

def fits(value, bits):
    return -(1 << (bits - 1)) <= value <= (1 << (bits - 1)) - 1


@pytest.mark.parametrize("fmt", FP4)
@pytest.mark.parametrize("n", [1, 2, 3, 7, 16, 100, 1024, 4096, 65536])
def test_min_accumulator_bits_tight(fmt, n):
    """The worst sums (a = -8 times the largest level of either sign, n times) fit in
    min_accumulator_bits(n) two's complement bits and not in one fewer."""
    top = 7                                               # largest exponent field
    worst = [int(products(np.full(n, -8), np.full(n, code), fmt).sum())
             for code in (top, top | 8)]
    bits = min_accumulator_bits(n, fmt)
    assert all(fits(w, bits) for w in worst)
    assert not all(fits(w, bits - 1) for w in worst)
    # every other sum is smaller in magnitude
    per = max(abs(int(p)) for p in products(np.arange(-8, 8)[:, None], np.arange(16)[None], fmt,
                                            0).ravel())
    assert max(abs(w) for w in worst) == n * per
    # chunk: the width of min(n, chunk) products
    assert min_accumulator_bits(n, fmt, chunk=5) == min_accumulator_bits(min(n, 5), fmt)
    assert mac.chunk_sum_bits(n, fmt) == bits


@pytest.mark.parametrize("fmt", FP4)
@pytest.mark.parametrize("acc", ["fp16", "dlfloat16", "e4m3"])
@pytest.mark.parametrize("chunk", [1, 32, 64])
def test_accumulator_bits_tight(fmt, acc, chunk):
    """max finite of acc plus one worst chunk sum fits, and not in one bit fewer."""
    largest = max_finite(SPECS[acc]) / pow2(product_lsb(fmt))
    assert largest.denominator == 1
    worst = int(largest) + chunk * 8 * 2 ** max_shift(fmt)
    bits = accumulator_bits(acc, fmt, chunk=chunk)
    assert fits(worst, bits) and fits(-worst, bits) and not fits(worst, bits - 1)


def test_longest_exact_dot_product():
    """Lengths up to the float64 limit are accepted (checked before any work is done)."""
    for fmt in FP4:
        longest = ((1 << 52) - 1) // (8 << max_shift(fmt))
        assert min_accumulator_bits(longest, fmt) == 53
        assert min_accumulator_bits(longest + 1, fmt) == 54
        a = np.broadcast_to(np.int64(0), (longest + 1,))
        with pytest.raises(ValueError, match=f"length must be below {longest + 1}, not"):
            shift_mac(a, a, fmt)


# --------------------------------------------------------------------------------------------
# Ties, overflow, underflow
# --------------------------------------------------------------------------------------------

def fp2_operands(value_terms):
    """fp4_r2 codes (phase 0) for a list of (a, level exponent) terms."""
    a = np.array([t[0] for t in value_terms])
    g = np.array([t[1] + 4 for t in value_terms])
    return a, g


@pytest.mark.parametrize("rounding,expected", [
    ("nearest_even", [2048, 2052, 4096, -2048, -2052]),
    ("nearest_away", [2050, 2052, 4100, -2050, -2052]),
    ("toward_zero", [2048, 2050, 4096, -2048, -2050]),
])
def test_fp16_ties(rounding, expected):
    """Sums exactly half-way between fp16 neighbours: 2049, 2051 (step 2), 4098 (step 4)."""
    sums = [2049, 2051, 4098, -2049, -2051]
    rows_a, rows_g = [], []
    for s in sums:
        # 64 products of 4 * 2^3 = 2048, plus the remainder in ones (levels 2^0)
        sign = 1 if s > 0 else -1
        rest = abs(s) - 2048
        terms = [(4 * sign, 3)] * 64 + [(sign, 0)] * rest
        terms += [(0, 0)] * (2200 - len(terms))
        a, g = fp2_operands(terms)
        rows_a.append(a)
        rows_g.append(g)
    a, g = np.array(rows_a), np.array(rows_g)
    got = shift_mac(a, g, "fp4_r2", out_fmt="fp16", rounding=rounding)
    values = decode_float(got, "fp16")
    assert list(values) == expected
    if rounding == "nearest_even":
        assert list(values) == [float(np.float16(s)) for s in sums]
    # the same ties in the accumulator: chunk = n, fp16 acc, fp32 output
    got = shift_mac(a, g, "fp4_r2", acc="fp16", chunk=2200, out_fmt="fp32", rounding=rounding)
    assert list(decode_float(got, "fp32")) == expected


@pytest.mark.parametrize("out,max_code,inf_code", [
    ("fp16", 0x7BFF, 0x7C00), ("e4m3", 0x7E, 0x7F), ("e5m2", 0x7B, 0x7C)])
def test_output_overflow(out, max_code, inf_code):
    """Sums well above max finite (products of 7 * 64 in fp4_r4): saturate=True gives
    ±max finite, saturate=False ±Inf (ieee) or NaN (e4m3, fn), under every rounding."""
    bits = 1 + SPECS[out][0] + SPECS[out][1]
    sign = 1 << (bits - 1)
    n = int(math.ceil(max_finite(SPECS[out]) * F(3, 2) / (7 * 64)))
    a = np.full((2, n), 7)
    g = np.array([[7] * n, [15] * n])
    for rounding in MODES:
        got = shift_mac(a, g, out_fmt=out, rounding=rounding)
        assert list(got) == [max_code, max_code | sign]
        got = shift_mac(a, g, out_fmt=out, rounding=rounding, saturate=False)
        assert list(got) == [inf_code, inf_code | sign]
    if out == "fp16":
        # 65519 rounds to max finite, 65520 (half-way to 2^16) overflows, under RNE
        for s, want in ((65519, 0x7BFF), (65520, 0x7C00)):
            terms = [(7, 3)] * (s // 56) + [(1, 0)] * (s % 56)
            a1, g1 = fp2_operands(terms)
            assert shift_mac(a1, g1, "fp4_r2", out_fmt="fp16", saturate=False) == want
            assert shift_mac(a1, g1, "fp4_r2", out_fmt="fp16") == 0x7BFF


#: formats whose subnormals lie below the products' LSB (SPEC 1 parameters, bias raised):
#: e4m3 with bias 3 (min subnormal 2^-5) and e5m2 with bias 5 (min subnormal 2^-6)
TINY_E4M3 = FloatFormat("e4m3_b3", 4, 3, 3, specials="fn")
TINY_E5M2 = FloatFormat("e5m2_b5", 5, 2, 5)


def test_underflow_e4m3_e5m2():
    """The smallest results are exact in e4m3/e5m2 (their subnormals reach below 2^-7), and
    into formats with a coarser subnormal step they round to 0 or to min subnormal."""
    a = np.array([[1], [-1], [3], [2]])
    g = np.array([[1]])                                   # fp4_r4 4^-3, phase 1: 2^-7
    assert list(shift_mac(a, g, phase=1, out_fmt="e4m3")) == [0x04, 0x84, 0x0C, 0x08]
    assert list(shift_mac(a, g, phase=1, out_fmt="e5m2")) == [0x20, 0xA0, 0x26, 0x24]
    # e4m3_b3: min subnormal 2^-5; 2^-7 = 1/4, 3 * 2^-7 = 3/4, 2^-6 = 1/2 of it
    want = {"nearest_even": [0x00, 0x80, 0x01, 0x00], "nearest_away": [0x00, 0x80, 0x01, 0x01],
            "toward_zero": [0x00, 0x80, 0x00, 0x00]}
    for rounding, codes in want.items():
        assert list(shift_mac(a, g, phase=1, out_fmt=TINY_E4M3, rounding=rounding)) == codes
    # e5m2_b5: min subnormal 2^-6; 2^-7 = 1/2 of it
    want = {"nearest_even": [0x00, 0x80, 0x02, 0x01], "nearest_away": [0x01, 0x81, 0x02, 0x01],
            "toward_zero": [0x00, 0x80, 0x01, 0x01]}
    for rounding, codes in want.items():
        assert list(shift_mac(a, g, phase=1, out_fmt=TINY_E5M2, rounding=rounding)) == codes
    for fmt in (TINY_E4M3, TINY_E5M2):
        for rounding in MODES:
            assert (shift_mac(a, g, phase=1, out_fmt=fmt, rounding=rounding, seed=9)
                    == ref_mac(a, g, phase=1, out=fmt, rounding=rounding, seed=9)).all()


# --------------------------------------------------------------------------------------------
# Chunked against exact
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rounding", MODES[:3])
@pytest.mark.parametrize("fmt", FP4)
def test_chunk_equal_to_n_is_exact(rounding, fmt):
    """With one chunk of n products and out_fmt == acc, the accumulator rounding is the
    output rounding (idempotent), so chunked == exact; with a wide-enough accumulator (sums
    exactly representable) chunked == exact for any output format."""
    r = np.random.default_rng(5)
    n = 40
    a, g = operands(r, (60,), n)
    for acc in ("fp16", "dlfloat16"):
        chunked = shift_mac(a, g, fmt, acc=acc, chunk=n, out_fmt=acc, rounding=rounding)
        exact = shift_mac(a, g, fmt, out_fmt=acc, rounding=rounding)
        np.testing.assert_array_equal(chunked, exact)
        for out in ("e4m3", "bf16"):
            sums = [sum((F(int(x)) * fp4_value(int(y), fmt, 0) for x, y in zip(ra, rg)), F(0))
                    for ra, rg in zip(a, g)]
            representable = np.array([round_magnitude(abs(s), SPECS[acc], "toward_zero")
                                      == abs(s) and abs(s) <= max_finite(SPECS[acc])
                                      for s in sums])
            assert representable.sum() >= 10
            chunked = shift_mac(a, g, fmt, acc=acc, chunk=n, out_fmt=out, rounding=rounding)
            exact = shift_mac(a, g, fmt, out_fmt=out, rounding=rounding)
            np.testing.assert_array_equal(chunked[representable], exact[representable])


def test_swamping_fp16():
    """n = 4096 products of 1.75 in fp4_r2 (a = 7, level 2^-2): exactly 7168. An fp16
    accumulator fed one product at a time (chunk 1) stops growing at 4096, where its step 4
    exceeds twice the addend (swamping): the chunked sum is smaller in magnitude than the
    exact one. Chunks of 16 or more products are large enough to keep every chunk sum
    exact in fp16 here; chunks of 2..8 show that round-to-nearest can also err upwards."""
    n = 4096
    a = np.full((2, n), 7)
    g = np.array([[2] * n, [10] * n])                     # +2^-2, -2^-2
    exact = decode_float(shift_mac(a, g, "fp4_r2", out_fmt="fp32"), "fp32")
    assert list(exact) == [7168.0, -7168.0]
    results = {}
    for chunk in (1, 8, 16, 64):
        want = ref_mac(a, g, "fp4_r2", 0, "fp16", chunk, "fp32", "nearest_even")
        got = shift_mac(a, g, "fp4_r2", acc="fp16", chunk=chunk, out_fmt="fp32")
        np.testing.assert_array_equal(got.astype(np.int64), want)
        results[chunk] = decode_float(got, "fp32")
        assert results[chunk][0] == -results[chunk][1]
    assert results[1][0] < exact[0]
    assert results[1][0] == float(ref_value_swamp(1.75, n))
    assert results[1][0] == 4096.0
    assert results[8][0] == 7608.0 > exact[0]
    assert results[16][0] == results[64][0] == exact[0]
    # all ones: fp16 stops at 2048 (2048 + 1 is a tie, rounded to even 2048)
    ones = shift_mac(np.ones(n, int), np.full(n, 4), "fp4_r2", acc="fp16", chunk=1,
                     out_fmt="fp32")
    assert decode_float(ones, "fp32") == 2048.0
    assert decode_float(shift_mac(np.ones(n, int), np.full(n, 4), "fp4_r2", out_fmt="fp32"),
                        "fp32") == 4096.0


def ref_value_swamp(term, n):
    """Sequential float16 sums (NumPy's float16 arithmetic rounds each addition to nearest
    even): an independent value for the swamping example."""
    total = np.float16(0)
    for _ in range(n):
        total = np.float16(total + np.float16(term))
    return total


# --------------------------------------------------------------------------------------------
# Quantizers
# --------------------------------------------------------------------------------------------

def test_quantize_fp4_r4_thresholds():
    """SPEC 1: between 4^(n-1) and 4^n, the lower level iff |x| <= 4^n / 1.6; between 0 and
    4^-3 the arithmetic midpoint 4^-3 / 2; checked at every threshold and one ulp either side,
    both signs, both phases."""
    for phase in (0, 1):
        for k in range(-2, 4):                           # upper level 4^k, code field k + 4
            t = 4.0 ** k / 1.6
            assert t == 4.0 ** (k - 1) * 2.5             # exact in float64
            xs = np.array([np.nextafter(t, 0), t, np.nextafter(t, np.inf)]) / 2 ** phase
            for sign in (1, -1):
                codes = quantize_fp4(sign * xs, phase=phase)
                s = 8 if sign < 0 else 0
                assert list(codes) == [s | (k + 3), s | (k + 3), s | (k + 4)], (k, phase)
        t = 4.0 ** -3 / 2
        xs = np.array([np.nextafter(t, 0), t, np.nextafter(t, np.inf)]) / 2 ** phase
        assert list(quantize_fp4(xs, phase=phase)) == [0, 0, 1]
        # saturation
        big = np.array([64.0, 65.0, 1e30, np.inf]) / 2 ** phase
        assert list(quantize_fp4(big, phase=phase)) == [7, 7, 7, 7]
        assert list(quantize_fp4(-big, phase=phase)) == [15, 15, 15, 15]


def test_quantize_fp4_phase_grid():
    """Phase 1 is the phase-0 grid halved: quantize(x, phase 1) = quantize(2x, phase 0), and
    dequantize gives value / 2."""
    r = np.random.default_rng(3)
    x = r.standard_normal(2000) * 4.0 ** r.integers(-4, 4, 2000)
    for fmt in FP4:
        for rounding in MODES[:3]:
            np.testing.assert_array_equal(quantize_fp4(x, fmt, 1, rounding),
                                          quantize_fp4(2 * x, fmt, 0, rounding))
        codes = np.arange(16)
        for phase in (0, 1):
            want = [float(fp4_value(c, fmt, phase)) for c in codes]
            np.testing.assert_array_equal(dequantize_fp4(codes, fmt, phase), want)
            np.testing.assert_array_equal(dequantize_fp4(codes, fmt, phase, scale=8.0),
                                          np.array(want) * 8)
            # round trip: every level quantizes to itself
            back = quantize_fp4(dequantize_fp4(codes, fmt, phase), fmt, phase)
            nonzero = codes & 7 != 0
            np.testing.assert_array_equal(back[nonzero], codes[nonzero])
        # nearest level (midpoints of the radix-2 grid resolve by the format's rule; skip them)
        for phase in (0, 1):
            levels = np.array([float(fp4_value(c, fmt, phase)) for c in range(8)])
            got = dequantize_fp4(quantize_fp4(np.abs(x), fmt, phase), fmt, phase)
            clipped = np.minimum(np.abs(x), levels.max())
            dist = np.abs(clipped[:, None] - levels[None])
            best = dist.min(axis=1)
            assert (np.abs(got - clipped) == best).all()
        # scale: x / scale
        np.testing.assert_array_equal(quantize_fp4(x, fmt, scale=4.0), quantize_fp4(x / 4, fmt))


def test_quantize_fp4_r2_ties():
    """fp4_r2 ties (3 * 2^(k-1) between 2^(k-1) and 2^k) resolve by the rounding mode."""
    x = np.array([0.75, 1.5, 3.0, 6.0])                  # between 2^-1/1, 1/2, 2/4, 4/8
    assert list(quantize_fp4(x, "fp4_r2", rounding="nearest_away")) == [4, 5, 6, 7]
    assert list(quantize_fp4(x, "fp4_r2", rounding="toward_zero")) == [3, 4, 5, 6]
    ne = quantize_fp4(x, "fp4_r2", rounding="nearest_even")
    assert all(c in (lo, lo + 1) for c, lo in zip(ne, [3, 4, 5, 6]))


@pytest.mark.parametrize("rounding", MODES)
def test_quantize_int4(rounding):
    r = np.random.default_rng(11)
    x = r.standard_normal((50, 8)) * 3
    x[0, :4] = [0.5, 1.5, -2.5, 12.0]
    codes, scale = quantize_int4(x, rounding=rounding, seed=4, sr_bits=10)
    assert scale == np.abs(x).max() / 7
    assert codes.dtype == np.int8
    y = x / scale
    if rounding == "nearest_even":
        want = np.clip(np.rint(y), -8, 7)
    elif rounding == "nearest_away":
        want = np.clip(np.sign(y) * np.floor(np.abs(y) + 0.5), -8, 7)
    elif rounding == "toward_zero":
        want = np.clip(np.trunc(y), -8, 7)
    else:
        d = rng.draws(4, x.size, 10).reshape(x.shape).astype(np.float64)
        want = np.clip(np.floor(y + d / 1024), -8, 7)
    np.testing.assert_array_equal(codes, want)
    codes, scale = quantize_int4(x, scale=0.25)
    np.testing.assert_array_equal(codes, np.clip(np.rint(x * 4), -8, 7))
    assert quantize_int4(np.zeros(3))[1] == 1.0
    assert list(quantize_int4(np.array([0.5, 1.5, 2.5, -0.5]), scale=1.0)[0]) == [0, 2, 2, 0]
    assert list(quantize_int4(np.array([100.0, -100.0]), scale=1.0)[0]) == [7, -8]


# --------------------------------------------------------------------------------------------
# Variance retention
# --------------------------------------------------------------------------------------------

def test_variance_retention():
    assert variance_retention(1024, 23, trials=300) > 0.999
    low = variance_retention(4096, 2, trials=300)
    assert low < 0.5
    assert variance_retention(4096, 2, chunk=64, trials=300) > low
    assert variance_retention(4096, 6, chunk=64, trials=300) > variance_retention(
        4096, 6, trials=300)
    # more mantissa bits retain more
    vrr = [variance_retention(1024, m, trials=300) for m in (1, 2, 4, 8, 12)]
    assert vrr == sorted(vrr)
    assert abs(variance_retention(1, 23, trials=50) - 1) < 1e-5


def test_min_accumulator_mantissa_monotone():
    bits = [min_accumulator_mantissa(n, trials=200) for n in (16, 64, 256, 1024, 4096)]
    assert bits == sorted(bits) and bits[0] < bits[-1]
    chunked = [min_accumulator_mantissa(n, chunk=64, trials=200) for n in (256, 1024, 4096)]
    assert all(c <= b for c, b in zip(chunked, bits[2:]))
    m = bits[-1]
    assert variance_retention(4096, m, trials=200) >= 0.99
    assert variance_retention(4096, m - 1, trials=200) < 0.99
    assert min_accumulator_mantissa(64, target=0.5, trials=200) <= bits[1]


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

A1, G1 = np.array([1, 2]), np.array([3, 4])


@pytest.mark.parametrize("call,exc,match", [
    (lambda: shift_mac(A1, G1, "fp4"), ValueError, "FP4 format must be one of"),
    (lambda: mac.fp4_format(3), ValueError, "FP4 format must be one of"),
    (lambda: shift_mac(A1, G1, phase=2), ValueError, "Phase must be 0 or 1"),
    (lambda: shift_mac(A1, G1, phase=True), ValueError, "Phase must be 0 or 1"),
    (lambda: shift_mac(A1 * 1.0, G1), TypeError, "INT4 must be an array of integer codes"),
    (lambda: shift_mac(A1, G1 * 1.0), TypeError, "FP4 must be an array of integer codes"),
    (lambda: shift_mac(A1 + 7, G1), ValueError, "INT4 codes must lie between -8 and 7"),
    (lambda: shift_mac(A1, G1 + 12), ValueError, "FP4 codes must lie between 0 and 15"),
    (lambda: products(A1 - 10, G1), ValueError, "INT4 codes must lie between"),
    (lambda: dequantize_fp4(np.array([16])), ValueError, "FP4 codes must lie between"),
    (lambda: dequantize_fp4(np.array([1.0])), TypeError, "FP4 must be an array of integer"),
    (lambda: shift_mac(A1, G1, acc="fp99", chunk=4), ValueError,
     "Accumulator must be 'exact' or a radix-2 float format"),
    (lambda: shift_mac(A1, G1, acc=16, chunk=4), ValueError,
     "Accumulator must be 'exact' or a radix-2 float format"),
    (lambda: shift_mac(A1, G1, acc="fp4_r4", chunk=4), ValueError,
     "Accumulator format must be a radix-2 float format, not fp4_r4"),
    (lambda: shift_mac(A1, G1, acc="int8", chunk=4), ValueError,
     "Accumulator format must be a radix-2 float format, not int8"),
    (lambda: shift_mac(A1, G1, acc="bf16", chunk=4), ValueError,
     r"Accumulator format bf16 reaches 2\^127, more than the 2\^44"),
    (lambda: shift_mac(A1, G1, "fp4_r2", acc="fp32", chunk=4), ValueError,
     r"reaches 2\^127, more than the 2\^47"),
    (lambda: shift_mac(A1, G1, out_fmt="fp8"), ValueError, "Output format must be one of"),
    (lambda: shift_mac(A1, G1, out_fmt=16), TypeError, "Output format must be a preset name"),
    (lambda: shift_mac(A1, G1, out_fmt="fp4_r4"), ValueError,
     "Output format must be a radix-2 float format, not fp4_r4"),
    (lambda: shift_mac(A1, G1, out_fmt="int4"), ValueError,
     "Output format must be a radix-2 float format, not int4"),
    (lambda: shift_mac(A1, G1, chunk=4), ValueError, "Chunk must be None with an exact"),
    (lambda: shift_mac(A1, G1, acc="fp16"), ValueError, "Chunk must be a positive integer"),
    (lambda: shift_mac(A1, G1, acc="fp16", chunk=0), ValueError, "Chunk must be a positive"),
    (lambda: shift_mac(A1, G1, acc="fp16", chunk=True), ValueError, "Chunk must be a positive"),
    (lambda: shift_mac(A1, G1, acc="fp16", chunk=2.0), ValueError, "Chunk must be a positive"),
    (lambda: shift_mac(A1, G1, units=0), ValueError, "Units must be a positive integer"),
    (lambda: shift_mac(A1, G1, units=True), ValueError, "Units must be a positive integer"),
    (lambda: shift_mac(np.ones((3, 2), int), G1, units=2), ValueError,
     r"Units \(2\) must divide the number of outputs \(3\)"),
    (lambda: shift_mac(A1, G1, saturate=1), TypeError, "Saturate must be a bool"),
    (lambda: shift_mac(A1, G1, rounding="up"), ValueError, "Rounding must be one of"),
    (lambda: shift_mac(A1, G1, sr_bits=0), ValueError, "Stochastic rounding bits must be"),
    (lambda: shift_mac(A1, G1, sr_bits=25), ValueError, "Stochastic rounding bits must be"),
    (lambda: shift_mac(A1, G1, seed=-1), ValueError, "Seed must be an integer between"),
    (lambda: shift_mac(A1, G1, seed=1.5), TypeError, "Seed must be an integer"),
    (lambda: shift_mac(np.int64(1), G1), ValueError, "Operands must have at least one axis"),
    (lambda: shift_mac(A1, np.int64(1)), ValueError, "Operands must have at least one axis"),
    (lambda: shift_mac(A1, np.array([1, 2, 3])), ValueError,
     "Operands must have equal last axes, not 2 and 3"),
    (lambda: shift_mac(np.zeros((2, 0), int), np.zeros(0, int)), ValueError,
     "Dot products must have at least one element"),
    (lambda: shift_mac(np.ones((2, 3), int), np.ones((4, 3), int)), ValueError,
     r"Operand shapes \(2, 3\) and \(4, 3\) do not broadcast"),
    (lambda: min_accumulator_bits(0), ValueError, "Dot product length must be a positive"),
    (lambda: min_accumulator_bits(2.0), ValueError, "Dot product length must be a positive"),
    (lambda: min_accumulator_bits(4, chunk=0), ValueError, "Chunk must be a positive integer"),
    (lambda: min_accumulator_bits(4, "fp4_r3"), ValueError, "FP4 format must be one of"),
    (lambda: accumulator_bits("exact", chunk=4), ValueError, "Accumulator bits of 'exact'"),
    (lambda: accumulator_bits("bf16", chunk=4), ValueError, "reaches 2"),
    (lambda: variance_retention(16, 0), ValueError, "Mantissa bits must be an integer between"),
    (lambda: variance_retention(16, 53), ValueError, "Mantissa bits must be an integer between"),
    (lambda: variance_retention(16, True), ValueError, "Mantissa bits must be an integer"),
    (lambda: variance_retention(0, 4), ValueError, "Dot product length must be a positive"),
    (lambda: variance_retention(16, 4, chunk=-1), ValueError, "Chunk must be a positive"),
    (lambda: variance_retention(16, 4, trials=0), ValueError, "Trial count must be a positive"),
    (lambda: min_accumulator_mantissa(16, target=1.0), ValueError,
     "Target must be a number between 0 and 1"),
    (lambda: min_accumulator_mantissa(16, target=True), ValueError, "Target must be a number"),
    (lambda: min_accumulator_mantissa(16, target="0.9"), ValueError, "Target must be a number"),
    (lambda: quantize_fp4(np.ones(2), scale=3.0), ValueError,
     "Scale must be a positive power of two"),
    (lambda: quantize_fp4(np.ones(2), scale=-2.0), ValueError, "Scale must be a positive power"),
    (lambda: quantize_fp4(np.ones(2), scale=np.inf), ValueError, "Scale must be a positive"),
    (lambda: quantize_fp4(np.array(["a"])), TypeError, "Input must be an array of real numbers"),
    (lambda: quantize_fp4(np.ones(2), phase=-1), ValueError, "Phase must be 0 or 1"),
    (lambda: quantize_fp4(np.ones(2), rounding="stochastic"), ValueError,
     "Rounding 'stochastic' is not supported for radix-4 format fp4_r4"),
    (lambda: quantize_int4(np.array([True])), TypeError, "Input must be an array of real"),
    (lambda: quantize_int4(np.array([np.nan])), ValueError, "Input must be finite"),
    (lambda: quantize_int4(np.ones(2), scale=0.0), ValueError,
     "Scale must be a positive finite number"),
    (lambda: quantize_int4(np.ones(2), scale=True), ValueError, "Scale must be a positive"),
    (lambda: quantize_int4(np.ones(2), rounding="odd"), ValueError, "Rounding must be one of"),
    (lambda: quantize_int4(np.ones(2), rounding="stochastic", sr_bits=30), ValueError,
     "Stochastic rounding bits must be"),
])
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_stochastic_fp4_r2_quantizer():
    """Stochastic rounding of the radix-2 FP4 operands works (radix 2 only)."""
    x = np.full(4000, 1.25)                             # 1/4 of the way from 1 to 2
    codes = quantize_fp4(x, "fp4_r2", rounding="stochastic", seed=3)
    assert set(np.unique(codes)) == {4, 5}
    assert abs((codes == 5).mean() - 0.25) < 0.03


@pytest.mark.parametrize("chunk", [0, -5, 1.5, None])
def test_accumulator_bits_checks_chunk(chunk):
    with pytest.raises(ValueError, match="Chunk must be a positive integer"):
        accumulator_bits("fp16", chunk=chunk)


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

shapes = st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple)


@HYPOTHESIS
@given(data=st.data(), batch_a=shapes, batch_g=shapes, n=st.integers(1, 9),
       fmt=st.sampled_from(FP4), phase=st.integers(0, 1), rounding=st.sampled_from(MODES),
       acc=st.sampled_from([("exact", None), ("fp16", 1), ("fp16", 4), ("dlfloat16", 2)]),
       seed=st.integers(0, 2 ** 32 - 1))
def test_broadcasting_matches_reference(data, batch_a, batch_g, n, fmt, phase, rounding, acc,
                                        seed):
    """Random shapes (leading axes broadcast, missing axes prepended): shift_mac equals the
    reference over the explicitly broadcast operands in C order."""
    # make the batch shapes broadcastable: dimension 1 where they differ
    la, lg = len(batch_a), len(batch_g)
    width = max(la, lg)
    ba = (1,) * (width - la) + batch_a
    bg = (1,) * (width - lg) + batch_g
    bg = tuple(y if x in (1, y) or y == 1 else 1 for x, y in zip(ba, bg))
    batch_g = bg[width - lg:] if lg else ()
    arr = lambda shape, lo, hi: np.array(data.draw(st.lists(st.integers(lo, hi),
        min_size=int(np.prod(shape)), max_size=int(np.prod(shape)))), np.int64).reshape(shape)
    a = arr(batch_a + (n,), -8, 7)
    g = arr(batch_g + (n,), 0, 15)
    got = shift_mac(a, g, fmt, phase, acc=acc[0], chunk=acc[1], out_fmt="e5m2",
                    rounding=rounding, seed=seed, sr_bits=3)
    want = ref_mac(a, g, fmt, phase, acc[0], acc[1], "e5m2", rounding, seed, 3)
    assert got.shape == want.shape == np.broadcast_shapes(a.shape[:-1], g.shape[:-1])
    np.testing.assert_array_equal(got.astype(np.int64), want)


@HYPOTHESIS
@given(a=st.lists(st.integers(-8, 7), min_size=1, max_size=40), data=st.data(),
       fmt=st.sampled_from(FP4), phase=st.integers(0, 1),
       rounding=st.sampled_from(MODES[:3]),
       acc=st.sampled_from([("exact", None), ("fp16", 1), ("fp16", 8), ("dlfloat16", 3)]),
       out=st.sampled_from(["fp16", "e4m3", "bf16"]))
def test_sign_symmetry(a, data, fmt, phase, rounding, acc, out):
    """Flipping every FP4 sign negates the result (rounding acts on magnitudes, saturation is
    symmetric), and with the exact accumulator the value never exceeds the exact sum in
    magnitude under toward_zero."""
    g = np.array(data.draw(st.lists(st.integers(0, 15), min_size=len(a), max_size=len(a))))
    a = np.array(a)
    kw = dict(acc=acc[0], chunk=acc[1], out_fmt=out, rounding=rounding)
    plus = decode_float(shift_mac(a, g, fmt, phase, **kw), out)
    minus = decode_float(shift_mac(a, g ^ 8, fmt, phase, **kw), out)
    assert plus == -minus
    # (a chunk accumulator's own rounding may move the sum either way)
    if rounding == "toward_zero" and acc[0] == "exact":
        exact = float(sum(F(int(x)) * fp4_value(int(y), fmt, phase) for x, y in zip(a, g)))
        assert abs(plus) <= abs(exact)


@HYPOTHESIS
@given(a=st.lists(st.integers(-8, 7), min_size=1, max_size=30), data=st.data(),
       fmt=st.sampled_from(FP4), phase=st.integers(0, 1), units=st.sampled_from([1, 2, 4]),
       seed=st.integers(0, 2 ** 32 - 1))
def test_units_do_not_change_deterministic_results(a, data, fmt, phase, units, seed):
    """Units only reorder draws: deterministic roundings give the same results for any P,
    and stochastic results of unit p, dot product t equal those of a single-unit call on the
    draws that the documented order assigns to it (checked through the reference)."""
    n = len(a)
    g = np.array(data.draw(st.lists(st.integers(0, 15), min_size=4 * n, max_size=4 * n)))
    g = g.reshape(4, n)
    a = np.array(a)
    base = shift_mac(a, g, fmt, phase, acc="fp16", chunk=2, out_fmt="e4m3")
    assert (shift_mac(a, g, fmt, phase, acc="fp16", chunk=2, out_fmt="e4m3", units=units)
            == base).all()
    got = shift_mac(a, g, fmt, phase, acc="fp16", chunk=2, out_fmt="e4m3",
                    rounding="stochastic", seed=seed, units=units, sr_bits=2)
    want = ref_mac(a, g, fmt, phase, "fp16", 2, "e4m3", "stochastic", seed, 2, units=units)
    np.testing.assert_array_equal(got.astype(np.int64), want)
