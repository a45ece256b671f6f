"""Tests of block floating point / OCP MX in the golden model (``golden/mx.py``, SPEC section 2).

The reference below is written from the SPEC rules alone, with ml_dtypes casts for the
elements and ml_dtypes' E8M0 type for the scales:

* shared exponent ``E = floor(log2(max|x|)) - emax_elem`` clamped to ``[-127, 127]``, with
  ``floor(log2)`` read from the IEEE bit pattern; scale code ``E + 127``; an all-zero block
  gets code 0; a block with a NaN or Inf gets scale 0xFF and element codes 0;
* elements: ``x / 2^E`` clipped to +-max, then cast with ml_dtypes (RNE). Clipping first and
  casting then is the same as casting then clamping for RNE with saturation, because every
  value between max and the overflow threshold rounds to max anyway;
* ``int{w}`` elements: round-half-even of ``x / 2^E * 2^(w-2)`` clipped to
  ``+-(2^(w-1) - 1)``, two's complement codes.

Long sweeps run with ``LOWPREC_LONG=1``.
"""


import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, strategies as st

from golden import (MX_ELEMENTS, FloatFormat, decode_mx, encode_float, encode_mx,
                    quantize_mx, rng, shared_exponent)
from references import HYPOTHESIS, LONG, ML_TYPES


ML_ELEM = ML_TYPES
INT_ELEM = {f"int{w}": w for w in range(2, 9)}
BLOCKS = [2, 4, 8, 16, 32, 64]
#: Elements checked besides the OCP ones: any radix-2 format up to 16 bits works as element.
EXTRA_ELEMENTS = ["fp16", "bf16", "int4", "int2"]


def emax_of(elem):
    """floor(log2(max finite)) of the element; 0 for int{w} (SPEC 2)."""
    if elem in INT_ELEM:
        return 0
    return int(np.floor(np.log2(float(ml_dtypes.finfo(ML_ELEM[elem]).max))))


def code_width(elem):
    if elem in INT_ELEM:
        return INT_ELEM[elem]
    return {"e5m2": 8, "e4m3": 8, "e3m2": 6, "e2m3": 6, "e2m1": 4, "fp16": 16, "bf16": 16}[elem]


def store_dtype(elem):
    return np.uint16 if code_width(elem) > 8 else np.uint8


def floor_log2(a):
    """floor(log2(a)) for positive float64 ``a``, from the IEEE 754 bit pattern."""
    bits = np.asarray(a, dtype=np.float64).view(np.uint64)
    field = ((bits >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.int64)
    mant = (bits & np.uint64((1 << 52) - 1)).astype(np.float64)
    with np.errstate(divide="ignore"):
        sub = np.floor(np.log2(np.where(mant > 0, mant, 1))).astype(np.int64) - 1074
    return np.where(field == 0, sub, field - 1023)


def pad_blocks(x, block):
    x = np.asarray(x, dtype=np.float64)
    pad = -x.shape[-1] % block
    x = np.concatenate([x, np.zeros(x.shape[:-1] + (pad,))], axis=-1)
    return x, x.reshape(x.shape[:-1] + (x.shape[-1] // block, block))


def ref_exponent(blocks, elem):
    """(E unclamped, E clamped, special) per block."""
    special = ~np.isfinite(blocks).all(axis=-1)
    amax = np.where(np.isfinite(blocks), np.abs(blocks), 0.0).max(axis=-1)
    raw = np.where(amax > 0, floor_log2(np.where(amax > 0, amax, 1.0)) - emax_of(elem), -127)
    return raw, np.clip(raw, -127, 127), special


def ref_element_codes(v, elem):
    """RNE codes of the scaled values ``v`` (finite float64), saturating."""
    if elem in INT_ELEM:
        w = INT_ELEM[elem]
        kmax = 2 ** (w - 1) - 1
        k = np.clip(np.rint(v * 2.0 ** (w - 2)), -kmax, kmax).astype(np.int64)
        return k & ((1 << w) - 1)
    t = ML_ELEM[elem]
    top = float(ml_dtypes.finfo(t).max)
    with np.errstate(under="ignore"):
        v32 = np.clip(v, -top, top).astype(np.float32)
    return v32.astype(t).view(store_dtype(elem)).astype(np.int64)


def ref_element_values(codes, elem):
    if elem in INT_ELEM:
        w = INT_ELEM[elem]
        k = np.where(codes >= 1 << (w - 1), codes - (1 << w), codes)
        return k / 2.0 ** (w - 2)
    return codes.astype(store_dtype(elem)).view(ML_ELEM[elem]).astype(np.float64)


def ref_scale_values(scales):
    """E8M0 decode by ml_dtypes: 2^(code - 127), NaN for 0xFF."""
    return np.asarray(scales, dtype=np.uint8).view(ml_dtypes.float8_e8m0fnu).astype(np.float64)


def ref_mx(x, elem, block):
    """``(scales, codes, values)`` of x (values trimmed to the shape of x)."""
    x = np.asarray(x)
    padded, blocks = pad_blocks(x, block)
    _, e, special = ref_exponent(blocks, elem)
    with np.errstate(invalid="ignore"):
        v = np.where(special[..., None], 0.0, blocks * 2.0 ** (-e[..., None].astype(np.float64)))
    codes = ref_element_codes(v, elem)
    codes = np.where(special[..., None], 0, codes)
    scales = np.where(special, 0xFF, e + 127)
    values = ref_element_values(codes, elem) * ref_scale_values(scales)[..., None]
    values = values.reshape(padded.shape)[..., :x.shape[-1]]
    return scales, codes.reshape(padded.shape), values


def compare(x, elem, block, what=""):
    scales, codes = encode_mx(x, elem, block)
    want_s, want_c, want_v = ref_mx(x, elem, block)
    nb = -(-np.shape(x)[-1] // block)
    assert scales.dtype == np.uint8 and scales.shape == np.shape(x)[:-1] + (nb,)
    assert codes.dtype == store_dtype(elem) and codes.shape == np.shape(x)[:-1] + (nb * block,)
    bad = np.argwhere(scales != want_s)
    assert bad.size == 0, (f"{what} {elem} B={block}: scales differ at {bad[:4].tolist()}: "
                           f"got {scales[tuple(bad[0])]}, want {want_s[tuple(bad[0])]}")
    bad = np.argwhere(codes.astype(np.int64) != want_c)
    assert bad.size == 0, (
        f"{what} {elem} B={block}: codes differ at {bad[:4].tolist()}: "
        f"x={pad_blocks(x, block)[0][tuple(bad[0])]!r} got {codes[tuple(bad[0])]:#x}, "
        f"want {want_c[tuple(bad[0])]:#x}")
    got_v = quantize_mx(x, elem, block)
    assert got_v.shape == np.shape(x)
    np.testing.assert_array_equal(got_v, want_v, err_msg=f"{what} {elem} B={block}")
    np.testing.assert_array_equal(np.signbit(got_v), np.signbit(want_v))
    decoded = decode_mx(scales, codes, elem, block)
    assert decoded.shape == codes.shape
    np.testing.assert_array_equal(decoded[..., :np.shape(x)[-1]], want_v)
    if np.asarray(x).dtype != np.float64:
        assert_paths_agree(x, elem, block)
    return scales, codes


def assert_paths_agree(x, elem, block, *args, **kwargs):
    """float32/float16/bfloat16 inputs go through the golden model's bit-pattern path, float64
    ones through its float64 path: both give the same scales and codes."""
    x = np.asarray(x)
    s1, c1 = encode_mx(x, elem, block, *args, **kwargs)
    s2, c2 = encode_mx(x.astype(np.float64), elem, block, *args, **kwargs)
    np.testing.assert_array_equal(s1, s2, err_msg=f"{elem} B={block} {args} {kwargs} scales")
    np.testing.assert_array_equal(c1, c2, err_msg=f"{elem} B={block} {args} {kwargs} codes")


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

def random_rows(g, rows, cols, lo=-40, hi=40):
    """Normal data, a random power-of-two scale per row, as float32 (a few may overflow to
    +-Inf when the scale is near 2^127: NaN blocks)."""
    x = g.standard_normal((rows, cols)) * 2.0 ** g.integers(lo, hi, size=(rows, 1))
    with np.errstate(over="ignore"):
        return x.astype(np.float32)


def special_rows(block, g):
    """Rows of 2 blocks (+ a partial one) each exercising one SPEC rule."""
    cols = 2 * block + block // 2 + 1
    f32 = np.finfo(np.float32)
    rows = []
    rows.append(np.zeros(cols))                                     # all-zero
    rows.append(-np.zeros(cols))                                    # all negative zero
    sub = (g.integers(1, 1 << 23, size=cols).astype(np.uint32)).view(np.float32)
    rows.append(sub * g.choice([-1, 1], size=cols))                 # fp32 subnormals
    rows.append(np.full(cols, f32.smallest_subnormal))
    tiny = g.standard_normal(cols) * 2.0 ** -120                    # E clamps at -127
    rows.append(tiny)
    out = g.standard_normal(cols) * 1e-3
    out[::block] = 2.0 ** 20                                        # one huge outlier
    out[block // 2::block] = -3.0 * 2.0 ** 19
    rows.append(out)
    mx = g.standard_normal(cols)
    mx[1::block] = f32.max                                          # max finite fp32
    mx[2::block] = -f32.max
    rows.append(mx)
    rows.append(np.full(cols, f32.max))
    rows.append(np.full(cols, -f32.max))
    spec = g.standard_normal(cols)
    spec[0], spec[block + 1], spec[2 * block] = np.nan, np.inf, -np.inf   # NaN/Inf blocks
    rows.append(spec)
    pow2 = 2.0 ** g.integers(-130, 127, size=cols)                  # exact powers of two
    rows.append(pow2 * g.choice([-1, 1], size=cols))
    ties = g.integers(-300, 300, size=cols) / 16 + 1 / 32           # many exact ties
    ties[0] = 15.75
    rows.append(ties)
    return np.array(rows).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Against the reference
# --------------------------------------------------------------------------------------------

def test_mx_elements():
    assert MX_ELEMENTS == ("e5m2", "e4m3", "e3m2", "e2m3", "e2m1", "int8")
    assert [emax_of(e) for e in MX_ELEMENTS] == [15, 8, 4, 2, 2, 0]


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("elem", list(MX_ELEMENTS) + EXTRA_ELEMENTS)
def test_random_data(elem, block):
    g = np.random.default_rng(block * 7 + code_width(elem))
    cols = 5 * block + (block // 2 + 1 if block > 2 else 1)        # padding needed
    x = random_rows(g, 64, cols)
    compare(x, elem, block, "random")
    compare(random_rows(g, 16, 8 * block), elem, block, "random, no padding")
    # wide dynamic range within blocks: elements flush to zero or become subnormal
    y = (g.standard_normal((32, 4 * block)) * 2.0 ** g.integers(-20, 20, (32, 4 * block)))
    compare(y.astype(np.float32), elem, block, "wide range")


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("elem", list(MX_ELEMENTS) + EXTRA_ELEMENTS)
def test_special_data(elem, block):
    g = np.random.default_rng(block + 13 * code_width(elem))
    x = special_rows(block, g)
    scales, codes = compare(x, elem, block, "special")
    nb = scales.shape[-1]
    assert np.all(scales[0] == 0) and np.all(codes[0] == 0)               # all-zero: code 0
    assert np.all(scales[-3][:3] == 0xFF)                                  # NaN/Inf blocks
    assert np.all(codes[-3][:3 * block] == 0)
    q = quantize_mx(x, elem, block)
    assert np.all(np.isnan(q[-3][:min(3 * block, x.shape[1])]))
    assert not np.any(np.isnan(q[:-3])) and not np.any(np.isnan(q[-2:]))
    assert nb == 3
    # max finite fp32: E = 127 - emax (clamped at 127 for int elements, emax 0)
    assert np.all(scales[-5] == min(127 - emax_of(elem), 127) + 127)


@pytest.mark.parametrize("elem", list(MX_ELEMENTS) + EXTRA_ELEMENTS)
def test_scale_clamping_beyond_fp32(elem):
    """float64 inputs beyond the fp32 range: E clamps at 127 and the elements saturate; tiny
    ones: E clamps at -127 and the elements underflow."""
    x = np.array([[3 * 2.0 ** 300, -2.0 ** 290, 2.0 ** 200, 1.0],
                  [2.0 ** -300, -3 * 2.0 ** -301, 2.0 ** -140, -2.0 ** -136],
                  [2.0 ** 127, 2.0 ** 128, 2.0 ** 129, -2.0 ** 130]])
    compare(x, elem, 4, "float64")
    scales, _ = encode_mx(x, elem, 4)
    assert scales[0, 0] == 254
    assert scales[1, 0] == 0


@pytest.mark.parametrize("elem", MX_ELEMENTS)
def test_multidimensional(elem):
    g = np.random.default_rng(21)
    x = random_rows(g, 30, 70).reshape(2, 3, 5, 70)
    scales, codes = compare(x, elem, 32, "4-d")
    assert scales.shape == (2, 3, 5, 3) and codes.shape == (2, 3, 5, 96)
    # blocks run along the last axis only: each row is encoded on its own
    for idx in np.ndindex(2, 3, 5):
        s1, c1 = encode_mx(x[idx], elem, 32)
        np.testing.assert_array_equal(s1, scales[idx])
        np.testing.assert_array_equal(c1, codes[idx])
    # 1-d input, and a last axis shorter than one block
    compare(x[0, 0, 0], elem, 32, "1-d")
    compare(x[..., :5], elem, 32, "short")
    compare(x[..., :5], elem, 8, "short")
    # non-contiguous views and other float dtypes give the same result as their copies
    xt = np.swapaxes(x, 1, 3)[..., :3]
    np.testing.assert_array_equal(quantize_mx(xt, elem, 8),
                                  quantize_mx(np.ascontiguousarray(xt), elem, 8))
    with np.errstate(over="ignore"):                 # overflow to Inf: NaN blocks
        x16 = x.astype(np.float16)
    compare(x16, elem, 16, "float16 input")
    compare(x.astype(ml_dtypes.bfloat16), elem, 16, "bfloat16 input")


@pytest.mark.parametrize("elem", MX_ELEMENTS)
def test_padding(elem):
    g = np.random.default_rng(5)
    x = random_rows(g, 4, 45)
    scales, codes = encode_mx(x, elem, 16)
    assert codes.shape == (4, 48) and scales.shape == (4, 3)
    assert np.all(codes[:, 45:] == 0)                  # padding is +0
    q = quantize_mx(x, elem, 16)
    assert q.shape == (4, 45)
    np.testing.assert_array_equal(q, decode_mx(scales, codes, elem, 16)[:, :45])
    # padding never changes a block's maximum: same as padding by hand with zeros
    xp = np.concatenate([x, np.zeros((4, 3), np.float32)], axis=1)
    s2, c2 = encode_mx(xp, elem, 16)
    np.testing.assert_array_equal(s2, scales)
    np.testing.assert_array_equal(c2, codes)


@pytest.mark.parametrize("elem", list(MX_ELEMENTS) + EXTRA_ELEMENTS)
def test_shared_exponent(elem):
    g = np.random.default_rng(9)
    x = np.concatenate([random_rows(g, 20, 64), special_rows(32, g)[:, :64]])
    blocks = x.astype(np.float64).reshape(x.shape[0], -1, 32)
    e, nan = shared_exponent(blocks, elem)
    _, want_e, want_nan = ref_exponent(blocks, elem)
    np.testing.assert_array_equal(nan, want_nan)
    np.testing.assert_array_equal(e, want_e)


@pytest.mark.parametrize("elem", MX_ELEMENTS)
def test_decode_mx_every_scale(elem):
    """decode_mx for every E8M0 scale code and every element code."""
    w = code_width(elem)
    block = min(1 << w, 64)
    codes = np.tile(np.arange(1 << w), (256, 1))
    scales = np.repeat(np.arange(256)[:, None], (1 << w) // block, axis=1)
    got = decode_mx(scales, codes, elem, block)
    want = ref_element_values(codes, elem) * np.repeat(ref_scale_values(scales), block, axis=1)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got[:255]), np.signbit(want[:255]))
    assert np.all(np.isnan(got[255]))


@pytest.mark.skipif(not LONG, reason="long sweep: set LOWPREC_LONG=1")
@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("elem", list(MX_ELEMENTS) + EXTRA_ELEMENTS)
def test_random_data_long(elem, block):
    g = np.random.default_rng(1000 + block * 7 + code_width(elem))
    for _ in range(20):
        compare(random_rows(g, 2000, 7 * block + 1, -140, 127), elem, block, "long random")
        bits = g.integers(0, 0x7F800000, size=(2000, 4 * block)).astype(np.uint32)
        x = bits.view(np.float32) * g.choice([-1, 1], size=bits.shape).astype(np.float32)
        compare(x, elem, block, "long random bits")


# --------------------------------------------------------------------------------------------
# Other rounding modes and stochastic rounding
# --------------------------------------------------------------------------------------------

def scaled_inputs(x, scales, block):
    """x / 2^E for the padded array, 0 in NaN blocks (from the scale codes)."""
    padded, blocks = pad_blocks(x, block)
    s = scales.astype(np.int64)[..., None]
    with np.errstate(invalid="ignore"):
        v = np.where(s == 0xFF, 0.0, blocks * 2.0 ** (-(s - 127)).astype(np.float64))
    return v.reshape(padded.shape)


#: Custom elements that take other branches of the conversion (normal range below float32's,
#: no subnormals, a 16-bit one with few exponent bits).
CUSTOM_ELEMENTS = [FloatFormat("e8m3_b130", 8, 3, 130),
                   FloatFormat("e5m2_nosub", 5, 2, 15, subnormals=False),
                   FloatFormat("e3m12", 3, 12, 3, specials="none"), "dlfloat16"]


@pytest.mark.parametrize("elem", list(MX_ELEMENTS) + EXTRA_ELEMENTS + CUSTOM_ELEMENTS,
                         ids=str)
def test_input_paths_agree(elem):
    g = np.random.default_rng(17)
    for block in (2, 8, 32, 64):
        specials = special_rows(block, g)
        cols = specials.shape[1]                             # 2.5 blocks + 1: padding
        x = np.concatenate([random_rows(g, 10, cols, -150, 127), specials])
        bits = g.integers(0, 1 << 32, size=(10, cols), dtype=np.uint64)
        x = np.concatenate([x, bits.astype(np.uint32).view(np.float32)])
        with np.errstate(invalid="ignore"):                 # signalling NaNs
            for mode in ("nearest_even", "nearest_away", "toward_zero"):
                assert_paths_agree(x, elem, block, mode)
            for seed, sr_bits in [(0, 8), (5, 1), (2 ** 32 - 1, 13), (9, 24)]:
                assert_paths_agree(x, elem, block, "stochastic", seed, sr_bits=sr_bits)
            for dtype in (np.float16, ml_dtypes.bfloat16, np.int16, np.uint8):
                with np.errstate(over="ignore"):
                    assert_paths_agree(x.astype(dtype), elem, block)


@pytest.mark.parametrize("mode", ["nearest_away", "toward_zero"])
@pytest.mark.parametrize("elem", MX_ELEMENTS)
def test_other_modes_are_elementwise(elem, mode):
    """The scale does not depend on the rounding mode, and the elements are encode_float of
    x / 2^E with that mode (encode_float's modes are checked against brute force in
    test_golden_formats.py)."""
    g = np.random.default_rng(31)
    x = np.concatenate([random_rows(g, 20, 70), special_rows(32, g)[:, :70]])
    s0, _ = encode_mx(x, elem, 32)
    s, c = encode_mx(x, elem, 32, mode)
    np.testing.assert_array_equal(s, s0)
    np.testing.assert_array_equal(c, encode_float(scaled_inputs(x, s, 32), elem, mode))


def grid(elem):
    """Sorted non-negative finite values of the element and their magnitude codes."""
    w = code_width(elem)
    codes = np.arange(1 << (w - 1))
    values = ref_element_values(codes, elem)
    keep = np.isfinite(values)
    return values[keep], codes[keep]


def stochastic_ref(v, elem, r, sr_bits):
    """Documented rule on the element grid: up iff floor(rest * 2^R) + r >= 2^R; saturate."""
    values, codes = grid(elem)
    a = np.abs(v)
    i = np.searchsorted(values, a, side="right") - 1
    j = np.minimum(i + 1, len(values) - 1)
    gap = np.where(j > i, values[j] - values[i], 1.0)
    rest = np.where(j > i, (a - values[i]) / gap, 0.0)
    up = np.floor(np.ldexp(rest, sr_bits)) + r >= 2 ** sr_bits
    mag = codes[np.where(up, j, i)]
    w = code_width(elem)
    if elem in INT_ELEM:
        return np.where(np.signbit(v), -mag, mag) & ((1 << w) - 1)
    return mag | (np.signbit(v).astype(np.int64) << (w - 1))


@pytest.mark.parametrize("seed,sr_bits", [(0, 8), (1, 1), (0xDEADBEEF, 3), (2 ** 32 - 1, 13),
                                          (77, 16), (5, 24)])
@pytest.mark.parametrize("elem", MX_ELEMENTS)
def test_stochastic_stream_order(elem, seed, sr_bits):
    """Draw n goes to element n of the padded array in C order (padding and NaN blocks take
    draws too); the scale is the RNE one."""
    g = np.random.default_rng(seed % 1000 + sr_bits)
    x = np.concatenate([random_rows(g, 12, 70), special_rows(32, g)[:, :70]]).reshape(2, -1, 70)
    s_rne, _ = encode_mx(x, elem, 32)
    s, c = encode_mx(x, elem, 32, "stochastic", seed=seed, sr_bits=sr_bits)
    np.testing.assert_array_equal(s, s_rne)
    assert_paths_agree(x, elem, 32, "stochastic", seed=seed, sr_bits=sr_bits)
    v = scaled_inputs(x, s, 32)
    r = rng.draws(seed, v.size, sr_bits).reshape(v.shape)
    np.testing.assert_array_equal(
        c, encode_float(v, elem, "stochastic", random=r, sr_bits=sr_bits))
    np.testing.assert_array_equal(c.astype(np.int64), stochastic_ref(v, elem, r, sr_bits))
    np.testing.assert_array_equal(
        quantize_mx(x, elem, 32, "stochastic", seed, sr_bits=sr_bits),
        decode_mx(s, c, elem, 32)[..., :70])
    # the default stochastic draws: seed 0, 8 bits
    s, c = encode_mx(x, elem, 32, "stochastic")
    r = rng.draws(0, v.size, 8).reshape(v.shape)
    np.testing.assert_array_equal(c, encode_float(v, elem, "stochastic", random=r))


@pytest.mark.parametrize("elem", ["e4m3", "int8"])
def test_large_arrays(elem):
    """More elements than the golden model's internal chunks (2^16): rows straddle chunk
    boundaries; RNE against the reference, stochastic against the float64 path with the
    stream's draws."""
    g = np.random.default_rng(8)
    x = random_rows(g, 300, 700)
    x[7, 5] = np.nan
    x[150, 600:640] = 0
    compare(x, elem, 32, "large")
    s, c = encode_mx(x, elem, 32, "stochastic", seed=42, sr_bits=5)
    v = scaled_inputs(x, s, 32)
    r = rng.draws(42, v.size, 5).reshape(v.shape)
    np.testing.assert_array_equal(c.astype(np.int64), stochastic_ref(v, elem, r, 5))


@pytest.mark.parametrize("elem", ["e4m3", "e2m1", "int8"])
def test_stochastic_mx_unbiased(elem):
    """Many copies of a block: the mean of the stochastic MX values is within a few standard
    errors of x when the scaled remainders have 8 bits, and within 2^-8 ulp otherwise."""
    g = np.random.default_rng(3)
    values, _ = grid(elem)
    idx = g.integers(1, len(values) - 1, size=31)
    lo, hi = values[idx], values[idx + 1]
    k = g.integers(1, 256, size=idx.size)
    scaled = np.concatenate([[values[-1]], lo + k / 256 * (hi - lo)])   # block max sets E
    e = 5
    x = scaled * 2.0 ** e
    n = 4000
    q = quantize_mx(np.tile(x, (n, 1)), elem, 32, "stochastic", seed=99)
    s, _ = encode_mx(x[None], elem, 32)
    assert s[0, 0] == e + 127
    p = np.concatenate([[0.0], k / 256])
    gap = np.concatenate([[1.0], hi - lo]) * 2.0 ** e
    se = gap * np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(q.mean(axis=0) - x) <= 5 * se + 1e-300)


def test_stochastic_seeds_mx():
    g = np.random.default_rng(2)
    x = random_rows(g, 8, 64)
    a = encode_mx(x, "e4m3", 32, "stochastic", seed=3)[1]
    np.testing.assert_array_equal(a, encode_mx(x, "e4m3", 32, "stochastic", seed=3)[1])
    assert np.any(a != encode_mx(x, "e4m3", 32, "stochastic", seed=4)[1])
    assert np.any(a != encode_mx(x, "e4m3", 32, "stochastic", seed=3, sr_bits=9)[1])


# --------------------------------------------------------------------------------------------
# Property tests (hypothesis)
# --------------------------------------------------------------------------------------------

def mx_inputs():
    scalar = st.one_of(
        st.floats(-4, 4, width=32),
        st.floats(allow_nan=False, allow_infinity=False, width=32),
        st.sampled_from([0.0, -0.0, 1.0, 0.5, 448.0, 6.0, 7.5, 2.0 ** -149, 2.0 ** -133]),
    )
    rows = st.tuples(st.lists(scalar, min_size=1, max_size=140), st.integers(-150, 120))
    return rows.map(_finite_f32)


def _finite_f32(t):
    with np.errstate(over="ignore"):
        x = (np.array(t[0]) * 2.0 ** t[1]).astype(np.float32)
    return np.where(np.isfinite(x), x, np.float32(0))


def mx_property_test(elem):
    @HYPOTHESIS
    @given(x=mx_inputs(), block=st.sampled_from(BLOCKS), as64=st.booleans())
    def test(x, block, as64):
        xin = x.astype(np.float64) if as64 else x    # float64 and float32 paths
        x = x.astype(np.float64)
        # against the reference (RNE)
        want_s, want_c, want_v = ref_mx(x, elem, block)
        q = quantize_mx(xin, elem, block)
        np.testing.assert_array_equal(q, want_v)
        for mode in ("nearest_even", "nearest_away", "toward_zero"):
            q = quantize_mx(xin, elem, block, mode)
            # idempotence
            np.testing.assert_array_equal(quantize_mx(q, elem, block, mode), q)
            # sign symmetry
            np.testing.assert_array_equal(quantize_mx(-xin, elem, block, mode), -q)
            # error within half an element ulp at the block's scale (RNE, away), below one
            # ulp toward zero; saturated elements go to +-max * 2^E
            _, blocks = pad_blocks(x, block)
            _, e, _ = ref_exponent(blocks, elem)
            scale = np.repeat(2.0 ** e.astype(np.float64), block, axis=-1)[..., :x.size]
            v = x / scale
            values, _ = grid(elem)
            a = np.abs(v)
            i = np.searchsorted(values, a, side="right") - 1
            j = np.minimum(i + 1, len(values) - 1)
            lo, hi = values[i], np.where(values[i] == a, values[i], values[j])
            qa = np.abs(q / scale)
            assert np.all((qa == lo) | (qa == hi))
            inside = a <= values[-1]
            if mode != "toward_zero":
                assert np.all(np.abs(qa - a)[inside] <= (hi - lo)[inside] / 2)
            else:
                assert np.all(qa <= a)
        # power-of-two scaling commutes with MX quantization while E stays unclamped
        raw, _, _ = ref_exponent(pad_blocks(x, block)[1], elem)
        nonzero = pad_blocks(np.abs(x), block)[1].max(axis=-1) > 0
        for k in (-7, 3, 40):
            if np.all(((raw + k > -127) & (raw > -127) & (raw + k < 127) & (raw < 127))
                      | ~nonzero):
                np.testing.assert_array_equal(quantize_mx(x * 2.0 ** k, elem, block),
                                              quantize_mx(xin, elem, block) * 2.0 ** k)
    test.__name__ = f"test_properties_{elem}"
    return test


for _elem in list(MX_ELEMENTS) + ["int4", "fp16"]:
    globals()[f"test_properties_{_elem}"] = mx_property_test(_elem)
del _elem


# --------------------------------------------------------------------------------------------
# Bad arguments
# --------------------------------------------------------------------------------------------

X = np.ones((2, 64), dtype=np.float32)


def test_bad_element():
    with pytest.raises(ValueError, match=r"Element format must be one of .*not 'fp8'"):
        encode_mx(X, "fp8")
    with pytest.raises(ValueError, match="Element format must be one of"):
        quantize_mx(X, "mxfp4")
    with pytest.raises(ValueError, match="Element format must be one of"):
        decode_mx(np.zeros((2, 2), np.uint8), np.zeros((2, 64), np.uint8), "int9")
    with pytest.raises(TypeError, match="Element format must be a preset name or a FloatFormat"):
        encode_mx(X, 8)
    for elem in ("fp4_r4", "fp32"):
        with pytest.raises(ValueError, match="Element format must be a radix-2 format"):
            encode_mx(X, elem)
        with pytest.raises(ValueError, match="Element format must be a radix-2 format"):
            decode_mx(np.zeros((2, 2), np.uint8), np.zeros((2, 64), np.uint8), elem)
    # stochastic rounding with the radix-4 format: rejected as an element at all
    with pytest.raises(ValueError, match="Element format must be a radix-2 format"):
        encode_mx(X, "fp4_r4", rounding="stochastic")


@pytest.mark.parametrize("block", [0, 1, 3, 48, 128, 256, -32, True, False, 32.0, "32", None])
def test_bad_block(block):
    with pytest.raises(ValueError, match="Block size must be a power of two between 2 and 64"):
        encode_mx(X, "e4m3", block)
    with pytest.raises(ValueError, match="Block size must be a power of two between 2 and 64"):
        quantize_mx(X, "e4m3", block=block)
    with pytest.raises(ValueError, match="Block size must be a power of two between 2 and 64"):
        decode_mx(np.zeros((2, 2), np.uint8), np.zeros((2, 64), np.uint8), "e4m3", block)


def test_block_message():
    with pytest.raises(ValueError, match="^Block size must be a power of two between 2 and 64, "
                                         "not 48$"):
        encode_mx(X, "e4m3", 48)


def test_bad_rounding():
    with pytest.raises(ValueError, match=r"Rounding must be one of .*not 'even'"):
        encode_mx(X, "e4m3", 32, "even")
    with pytest.raises(ValueError, match="Rounding must be one of"):
        quantize_mx(X, "int8", rounding="up")


@pytest.mark.parametrize("seed,exc", [(-1, ValueError), (2 ** 32, ValueError),
                                      (1.5, TypeError)])
def test_bad_seed(seed, exc):
    with pytest.raises(exc, match="Seed must be an integer"):
        encode_mx(X, "e4m3", 32, "stochastic", seed)
    with pytest.raises(exc, match="Seed must be an integer"):
        quantize_mx(X, "e4m3", 32, "stochastic", seed=seed)


def test_bad_seed_rejected_in_every_mode():
    """As for encode_float: a bad seed is only noticed when rounding is stochastic."""
    with pytest.raises(ValueError, match="Seed must be an integer"):
        encode_mx(X, "e4m3", 32, "nearest_even", -1)


@pytest.mark.parametrize("sr_bits", [0, 25, 1.5, True])
def test_bad_sr_bits(sr_bits):
    for mode in ("stochastic", "nearest_even"):
        with pytest.raises(ValueError, match="Stochastic rounding bits must be an integer"):
            encode_mx(X, "e4m3", 32, mode, sr_bits=sr_bits)
    with pytest.raises(ValueError, match="Stochastic rounding bits"):
        quantize_mx(X, "e4m3", 32, "stochastic", sr_bits=sr_bits)


def test_decode_mx_shape_mismatch():
    s, c = encode_mx(X, "e4m3", 32)
    with pytest.raises(ValueError, match="Codes of shape .* do not match scales of shape"):
        decode_mx(s, c, "e4m3", 16)
    with pytest.raises(ValueError, match="Codes of shape"):
        decode_mx(s[:, :1], c, "e4m3", 32)
    with pytest.raises(ValueError, match="Codes of shape"):
        decode_mx(s[:1], c, "e4m3", 32)
    with pytest.raises(ValueError, match="Codes of shape"):
        decode_mx(s, c[:, :60], "e4m3", 32)
    with pytest.raises(ValueError, match="Codes of shape"):
        decode_mx(s[None], c, "e4m3", 32)


@pytest.mark.parametrize("x", [np.float32(1.0), 3.0, np.array(2.0)])
def test_zero_dimensional_input(x):
    with pytest.raises(ValueError, match="Input must have at least one axis"):
        encode_mx(x, "e4m3")
    with pytest.raises(ValueError, match="Input must have at least one axis"):
        quantize_mx(x, "e4m3")


@pytest.mark.parametrize("x", [np.ones((2, 32), dtype=complex), np.array([["1.0"] * 32]),
                               [["a"] * 32], np.array([[1, "x"]], dtype=object)])
def test_bad_input(x):
    with pytest.raises(TypeError, match="Input must be an array of real numbers"):
        encode_mx(x, "e4m3")
    with pytest.raises(TypeError, match="Input must be an array of real numbers"):
        quantize_mx(x, "int8")
