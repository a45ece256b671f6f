"""Element number formats and conversion to and from them (SPEC section 1).

A :class:`FloatFormat` describes a sign-magnitude float (radix 2 or mantissa-less radix 4) or a
two's-complement fixed-point ``int{w}`` element, which is treated as a float with no exponent
bits: every code is "subnormal", value ``2^emin * m / 2^man_bits`` with ``emin = 1``, which is
``k / 2^(w-2)`` as SPEC section 2 requires. One rounding routine then serves every format.

Conversion (:func:`encode_float`) follows the same steps as the hardware rounder
(``FloatRounder`` in ``hdl/float.py``), so the two can be read side by side:

1. split ``|x|`` into the exponent of its leading one ``e`` and the significand;
2. the *quantum* exponent ``q``: ``max(e, emin) - man_bits`` (``e - man_bits`` for normals and
   ``emin`` below the normal range when the format has no subnormals);
3. ``n = floor(|x| / 2^q)`` and the remainder below it; the rounding mode decides the
   increment (stochastic rounding: the remainder truncated to ``R`` bits ``t`` plus an
   ``R``-bit draw ``r`` from :mod:`golden.rng`, rounding up iff ``t + r >= 2^R``);
4. the magnitude code ``((max(e, emin) + bias - 1) << man_bits) + n`` (which carries into the
   exponent by itself when ``n`` rounds up to ``2^(man_bits+1)``);
5. overflow: magnitude codes above the largest finite one saturate or become Inf/NaN;
6. the sign: a sign bit, or two's complement for ``int{w}``.

Inputs that are exactly float32 values (float32, float16, bfloat16, small integers, and
float64 arrays holding only float32 values) take these steps on their float32 bit patterns
with integer operations (:func:`_encode_radix2_bits`), chunk by chunk, for every format of up
to 23 mantissa bits whose values stay below 2^128; other inputs and formats take them on
float64 values (:func:`_encode_radix2`). Both give the same codes.

NaN input gives the format's canonical NaN (positive, quiet); formats without NaN give +0 (an
MX block that holds a NaN is marked by its scale instead). Inf input saturates with
``saturate=True`` and becomes Inf (``ieee``) or NaN (``fn``) otherwise. Formats without Inf/NaN
(``none``, ``zero_only``) always saturate, as ``ml_dtypes`` does.
"""

from dataclasses import dataclass

import numpy as np

from . import rng


__all__ = [
    "FloatFormat", "FORMATS", "ROUNDING_MODES", "int_format", "resolve_format",
    "encode_float", "decode_float", "quantize_float", "check_rounding",
]


ROUNDING_MODES = ("nearest_even", "nearest_away", "toward_zero", "stochastic")
_SPECIALS = ("ieee", "fn", "none", "zero_only")


@dataclass(frozen=True)
class FloatFormat:
    """A number format of SPEC section 1.

    Parameters
    ----------
    name : str
        Preset name, used in messages and reports.
    exp_bits, man_bits : int
        Widths of the exponent and mantissa fields, in bits.
    bias : int
        Exponent bias: a normal code with exponent field ``E`` has the value
        ``radix^(E - bias) * (1 + m / 2^man_bits)``.
    specials : str
        ``"ieee"`` (all-ones exponent is Inf/NaN), ``"fn"`` (only ``S.1..1.1..1`` is NaN),
        ``"none"`` (every code is a number), ``"zero_only"`` (exponent field 0 is ±0).
    subnormals : bool
        Whether exponent field 0 encodes subnormals (otherwise it encodes ±0 only).
    radix : int
        2, or 4 for the mantissa-less radix-4 FP4.
    twos_complement : bool
        Codes are two's complement integers (``int{w}`` elements) instead of sign-magnitude.
    """
    name: str
    exp_bits: int
    man_bits: int
    bias: int
    specials: str = "ieee"
    subnormals: bool = True
    radix: int = 2
    twos_complement: bool = False

    def __post_init__(self):
        if self.specials not in _SPECIALS:
            raise ValueError(f"Specials must be one of {', '.join(_SPECIALS)}, "
                             f"not {self.specials!r}")
        if self.radix not in (2, 4):
            raise ValueError(f"Radix must be 2 or 4, not {self.radix!r}")
        if self.radix == 4 and (self.man_bits != 0 or self.specials != "zero_only"):
            raise ValueError("Radix-4 formats must have no mantissa bits and specials 'zero_only'")
        if not 0 <= self.exp_bits <= 11 or not 0 <= self.man_bits <= 52:
            raise ValueError(f"Exponent bits must be 0..11 and mantissa bits 0..52, "
                             f"not {self.exp_bits} and {self.man_bits}")
        if self.specials == "ieee" and (self.exp_bits < 2 or self.man_bits < 1):
            raise ValueError("IEEE-style specials need at least 2 exponent and 1 mantissa bits")
        if 1 + self.exp_bits + self.man_bits > 32:
            raise ValueError(f"Codes must be at most 32 bits wide, not "
                             f"{1 + self.exp_bits + self.man_bits}")
        if self.twos_complement and self.exp_bits != 0:
            raise ValueError("Two's complement codes are only for formats with no exponent bits")

    # Derived properties; all are plain integers or floats.

    @property
    def bits(self):
        """Width of a code, in bits."""
        return 1 + self.exp_bits + self.man_bits

    @property
    def emin(self):
        """Exponent of the smallest normal value (radix 2)."""
        return 1 - self.bias

    @property
    def max_exp_field(self):
        """The largest exponent field of a finite value."""
        top = (1 << self.exp_bits) - 1
        return top - 1 if self.specials == "ieee" else top

    @property
    def max_code(self):
        """The magnitude code (sign bit clear) of the largest finite value."""
        if self.twos_complement:
            return (1 << self.man_bits) - 1
        code = (self.max_exp_field << self.man_bits) | ((1 << self.man_bits) - 1)
        if self.specials == "fn":
            code -= 1
        return code

    @property
    def nan_code(self):
        """The canonical NaN code, or ``None`` for formats without NaN."""
        if self.specials == "ieee":
            return (((1 << self.exp_bits) - 1) << self.man_bits) | (1 << (self.man_bits - 1))
        if self.specials == "fn":
            return (1 << (self.exp_bits + self.man_bits)) - 1
        return None

    @property
    def inf_code(self):
        """The +Inf code, or ``None`` for formats without Inf."""
        if self.specials == "ieee":
            return ((1 << self.exp_bits) - 1) << self.man_bits
        return None

    @property
    def max_finite(self):
        """The largest finite value."""
        return float(decode_float(self.max_code, self))

    @property
    def emax(self):
        """``floor(log2(max_finite))``: the element's ``emax`` of MX scaling."""
        return int(np.frexp(self.max_finite)[1]) - 1

    def __str__(self):
        return self.name


def int_format(width):
    """The ``int{width}`` element: two's complement, values ``k / 2^(width-2)``, symmetric."""
    if not isinstance(width, int) or not 2 <= width <= 8:
        raise ValueError(f"Integer element width must be between 2 and 8, not {width!r}")
    return FloatFormat(f"int{width}", exp_bits=0, man_bits=width - 1, bias=0,
                       specials="none", subnormals=True, twos_complement=True)


FORMATS = {
    "fp32":      FloatFormat("fp32",      8, 23, 127),
    "bf16":      FloatFormat("bf16",      8,  7, 127),
    "fp16":      FloatFormat("fp16",      5, 10,  15),
    "e5m2":      FloatFormat("e5m2",      5,  2,  15),
    "e4m3":      FloatFormat("e4m3",      4,  3,   7, specials="fn"),
    "e3m2":      FloatFormat("e3m2",      3,  2,   3, specials="none"),
    "e2m3":      FloatFormat("e2m3",      2,  3,   1, specials="none"),
    "e2m1":      FloatFormat("e2m1",      2,  1,   1, specials="none"),
    "fp4_r4":    FloatFormat("fp4_r4",    3,  0,   4, specials="zero_only", radix=4),
    "dlfloat16": FloatFormat("dlfloat16", 6,  9,  31, specials="fn", subnormals=False),
    **{f"int{w}": int_format(w) for w in range(2, 9)},
}


def resolve_format(fmt, *, what="Format"):
    """A :class:`FloatFormat` from a preset name or a :class:`FloatFormat`."""
    if isinstance(fmt, FloatFormat):
        return fmt
    if isinstance(fmt, str):
        try:
            return FORMATS[fmt]
        except KeyError:
            raise ValueError(f"{what} must be one of {', '.join(FORMATS)}, not {fmt!r}") from None
    raise TypeError(f"{what} must be a preset name or a FloatFormat, not {fmt!r}")


def check_rounding(rounding):
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"Rounding must be one of {', '.join(ROUNDING_MODES)}, not {rounding!r}")
    return rounding


def _code_dtype(fmt):
    return np.uint8 if fmt.bits <= 8 else np.uint16 if fmt.bits <= 16 else np.uint32


def decode_float(codes, fmt):
    """The float64 values of integer ``codes`` in format ``fmt`` (bits above the code ignored)."""
    fmt = resolve_format(fmt)
    if fmt.bits <= 16:
        # a lookup in the values of all 2^bits codes
        index = _code_index(codes, fmt)
        values = _decode_table(fmt).take(index.reshape(-1), mode="clip").reshape(index.shape)
        return values[()] if fmt.twos_complement else values    # the formula's result type
    return _decode_values(codes, fmt)


def _code_index(codes, fmt):
    """``codes & (2^bits - 1)`` as an array of non-negative integers."""
    codes = np.asarray(codes)
    mask = (1 << fmt.bits) - 1
    dtype = codes.dtype
    if dtype.isnative and (dtype.kind == "u" and dtype.itemsize <= 2
                           or dtype.kind == "i" and fmt.bits <= 8 * dtype.itemsize <= 16):
        codes = codes.view(f"u{dtype.itemsize}")     # the two's complement bits, as & sees them
        return codes if mask >= np.iinfo(codes.dtype).max else codes & mask
    return codes.astype(np.int64) & mask


_tables = {}


def _decode_table(fmt):
    """The values of the codes ``0 .. 2^bits - 1`` of a format of at most 16 bits."""
    if fmt not in _tables:
        table = _decode_values(np.arange(1 << fmt.bits), fmt)
        table.flags.writeable = False
        _tables[fmt] = table
    return _tables[fmt]


def _decode_values(codes, fmt):
    """:func:`decode_float` by the format's definition."""
    codes = np.asarray(codes).astype(np.int64) & ((1 << fmt.bits) - 1)
    man_mask = (1 << fmt.man_bits) - 1
    if fmt.twos_complement:
        signed = codes - ((codes >> (fmt.bits - 1)) << fmt.bits)
        return np.ldexp(signed.astype(np.float64), fmt.emin - fmt.man_bits)
    negative = (codes >> (fmt.bits - 1)) != 0
    exp_field = (codes >> fmt.man_bits) & ((1 << fmt.exp_bits) - 1)
    mantissa = codes & man_mask
    if fmt.radix == 4:
        value = np.where(exp_field == 0, 0.0, np.ldexp(1.0, 2 * (exp_field - fmt.bias)))
    else:
        normal = np.ldexp((mantissa + (1 << fmt.man_bits)).astype(np.float64),
                          exp_field - fmt.bias - fmt.man_bits)
        if fmt.subnormals:
            small = np.ldexp(mantissa.astype(np.float64), fmt.emin - fmt.man_bits)
        else:
            small = np.zeros(codes.shape)
        value = np.where(exp_field == 0, small, normal)
    all_ones = (1 << fmt.exp_bits) - 1
    if fmt.specials == "ieee":
        special = exp_field == all_ones
        value = np.where(special, np.where(mantissa == 0, np.inf, np.nan), value)
    elif fmt.specials == "fn":
        value = np.where((exp_field == all_ones) & (mantissa == man_mask), np.nan, value)
    return np.where(negative, -value, value)


def _check_real(x):
    x = np.asarray(x)
    if x.dtype.kind in "bcOSU" or x.dtype.kind == "V" and x.dtype.itemsize > 2:
        raise TypeError(f"Input must be an array of real numbers, not of dtype {x.dtype}")
    return x


def _as_float64(x):
    return _check_real(x).astype(np.float64)


def _as_float32_bits(x):
    """The float32 bit patterns of ``x`` (int32, C order) when every element converts to
    float32 exactly (float32, float16, bfloat16 and 8- or 16-bit integer inputs; float64
    inputs whose values all are float32 values), else None."""
    dtype = x.dtype
    if dtype == np.float64:
        with np.errstate(over="ignore", invalid="ignore"):
            x32 = x.astype(np.float32)
        same = x32 == x
        if not same.all() and not np.isnan(x[~same]).all():
            return None
        return np.ascontiguousarray(x32).view(np.int32)
    if not (dtype == np.float32 or dtype == np.float16 or dtype.name == "bfloat16"
            or dtype.kind in "iu" and dtype.itemsize <= 2):
        return None
    return np.ascontiguousarray(x, dtype=np.float32).view(np.int32)


_check_sr_bits = rng.check_sr_bits


def encode_float(x, fmt, rounding="nearest_even", saturate=True, seed=0, *, sr_bits=8,
                 random=None):
    """Integer codes of ``x`` in format ``fmt``.

    Parameters
    ----------
    x : array_like of float
        Values; any float dtype (float16, bfloat16, float32, float64).
    fmt : str or FloatFormat
        Target format.
    rounding : str
        One of :data:`ROUNDING_MODES`; rounding acts on the magnitude.
    saturate : bool
        Overflow policy: clamp to ±max finite (``True``) or go to Inf/NaN (``False``).
    seed : int
        32-bit seed of the stochastic-rounding generator (:mod:`golden.rng`); element ``n`` of
        ``x`` in C order takes draw ``n``.
    sr_bits : int
        Random bits per stochastic rounding, ``R`` (1..24).
    random : array_like of int, optional
        Explicit draws (one per element, ``R`` bits each) instead of the generator's.

    Returns
    -------
    ndarray of unsigned integers, the shape of ``x``.
    """
    fmt = resolve_format(fmt)
    check_rounding(rounding)
    sr_bits = _check_sr_bits(sr_bits)
    rng._check_seed(seed)
    if not isinstance(saturate, (bool, np.bool_)):
        raise TypeError(f"Saturate must be a bool, not {saturate!r}")
    x = _check_real(x)
    draws = None
    if rounding == "stochastic":
        if random is None:
            rng._check_seed(seed)
            random = rng._draws(seed, x.size, sr_bits).reshape(x.shape)
            draws = random.view(np.int32) if random.dtype == np.uint32 else random
        else:
            random = np.asarray(random).astype(np.int64)
            if random.shape != x.shape:
                raise ValueError(f"Random draws must have the shape of the input {x.shape}, "
                                 f"not {random.shape}")
            draws = _clip_draws(random, sr_bits)
        if fmt.radix == 4:
            raise ValueError(f"Rounding 'stochastic' is not supported for radix-4 format "
                             f"{fmt.name}")
    bits = _as_float32_bits(x)
    plan = None if bits is None else _bit_plan(fmt, rounding, sr_bits)
    if plan is not None and (rounding != "stochastic" or draws is not None):
        codes = np.empty(x.shape, _code_dtype(fmt))
        bits, codes = bits.reshape(-1), codes.reshape(-1)
        if draws is not None:
            draws = draws.reshape(-1)
        for start in range(0, bits.size, _CHUNK):
            part = slice(start, start + _CHUNK)
            _encode_bits(bits[part], plan, saturate, None if draws is None else draws[part],
                         out=codes[part])
        return codes.reshape(x.shape)
    x = x.astype(np.float64)
    if fmt.radix == 4:
        magnitude = _encode_radix4(np.abs(x), fmt, rounding)
    else:
        magnitude = _encode_radix2(np.abs(x), fmt, rounding, random, sr_bits)
    return _finish(x, magnitude, fmt, saturate)


def _clip_draws(random, sr_bits):
    """Explicit draws as int32 for the bit-pattern path, or None if they are too large for it.

    Only ``kept + draw >= 2^R`` matters, with ``0 <= kept < 2^R``: every draw below 0 acts as
    0 and every draw above ``2^R`` as ``2^R``.
    """
    if random.size and random.max() > 1 << 62:   # kept + draw would wrap around in int64
        return None
    return np.clip(random, 0, 1 << sr_bits).astype(np.int32)


def _encode_radix2(a, fmt, rounding, random, sr_bits):
    """Steps 1 to 4: the magnitude code before overflow handling (int64, may exceed max)."""
    with np.errstate(invalid="ignore"):
        safe = np.where(np.isfinite(a), a, 0.0)
    _, e2 = np.frexp(safe)
    exp = e2.astype(np.int64) - 1                               # exponent of the leading one
    exp = np.where(safe == 0, fmt.emin - 1, exp)                # zero: no leading one at all
    huge = exp > fmt.emin + (1 << fmt.exp_bits) + 1             # above any finite code
    exp = np.where(huge, 0, exp)
    safe = np.where(huge, 0.0, safe)
    normal = exp >= fmt.emin
    if fmt.subnormals:
        quantum = np.maximum(exp, fmt.emin) - fmt.man_bits
    else:
        quantum = np.where(normal, exp - fmt.man_bits, fmt.emin)
    scaled = np.ldexp(safe, -quantum)                           # exact: a power-of-two scaling
    n = np.floor(scaled)
    rest = scaled - n                                           # exact, in [0, 1)
    n = n.astype(np.int64)
    if rounding == "nearest_even":
        up = (rest > 0.5) | ((rest == 0.5) & ((n & 1) == 1))
    elif rounding == "nearest_away":
        up = rest >= 0.5
    elif rounding == "toward_zero":
        up = np.zeros(n.shape, dtype=bool)
    else:
        kept = np.floor(np.ldexp(rest, sr_bits)).astype(np.int64)
        up = kept + random >= (1 << sr_bits)
    n = n + up
    if fmt.subnormals:
        magnitude = ((np.maximum(exp, fmt.emin) + fmt.bias - 1) << fmt.man_bits) + n
    else:
        magnitude = np.where(normal, ((exp + fmt.bias - 1) << fmt.man_bits) + n,
                             n << fmt.man_bits)
    return np.where(huge, fmt.max_code + 1, magnitude)


def _encode_radix4(a, fmt, rounding):
    """Radix-4 levels ``4^(k - bias)``, ``k = 1..2^exp_bits-1``, chosen by the midpoint rule."""
    if rounding == "stochastic":
        raise ValueError(f"Rounding 'stochastic' is not supported for radix-4 format {fmt.name}")
    with np.errstate(invalid="ignore"):
        safe = np.where(np.isfinite(a), a, np.inf)
    top = (1 << fmt.exp_bits) - 1
    _, e2 = np.frexp(np.where(np.isinf(safe), 1.0, safe))
    lower = np.clip(np.floor_divide(e2.astype(np.int64) - 1, 2) + fmt.bias, 0, top)
    lower = np.where(safe == 0, 0, lower)
    lower_value = np.where(lower == 0, 0.0, np.ldexp(1.0, 2 * (lower - fmt.bias)))
    upper_value = np.ldexp(1.0, 2 * (lower + 1 - fmt.bias))
    midpoint = np.where(lower == 0, upper_value / 2, lower_value * 2.5)
    if rounding == "nearest_even":
        up = safe > midpoint
    elif rounding == "nearest_away":
        up = safe >= midpoint
    else:
        up = np.zeros(a.shape, dtype=bool)
    up &= safe >= lower_value
    return np.where(np.isinf(safe), top + 1, lower + up)


def _finish(x, magnitude, fmt, saturate):
    """Steps 5 and 6: overflow, specials and the sign."""
    nan = np.isnan(x)
    inf = np.isinf(x)
    overflow = (magnitude > fmt.max_code) | inf
    if saturate or fmt.specials in ("none", "zero_only"):
        magnitude = np.where(overflow, fmt.max_code, magnitude)
    else:
        magnitude = np.where(overflow, fmt.inf_code if fmt.specials == "ieee" else fmt.nan_code,
                             magnitude)
    negative = np.signbit(x)
    if fmt.twos_complement:
        code = np.where(negative, -magnitude, magnitude) & ((1 << fmt.bits) - 1)
    else:
        code = magnitude | (negative.astype(np.int64) << (fmt.bits - 1))
    code = np.where(nan, 0 if fmt.nan_code is None else fmt.nan_code, code)
    return code.astype(_code_dtype(fmt))


# The same steps on float32 bit patterns.
#
# Float32, float16 and bfloat16 inputs (and 8- and 16-bit integers) are exactly float32, so
# steps 1 to 6 can work on the integer bit patterns of float32 in place of float64 values:
# the exponent of the leading one and the significand come from the exponent and mantissa
# fields, ``floor(|x| / 2^q)`` and the bits below it from shifts. The arrays are processed in
# chunks of ``_CHUNK`` elements so that the temporaries stay in the cache.

_CHUNK = 1 << 16                 # a multiple of every MX block size
_F32_EXP_ONE = 1 << 23           # exponent field 1 / leading one of a float32 significand
_F32_INF = 0x7F800000            # |x| bit patterns above this are NaN


class _BitPlan:
    """Constants of the bit-pattern path for one format, rounding mode and ``R``.

    Exponents are those of step 4's code, ``e = exp + bias - 1`` (exp: of the leading one),
    so ``max(e, 0)`` is the exponent part of the magnitude code; significands have their
    leading one in bit ``23 + guard``.
    """

    def __init__(self, fmt, rounding, sr_bits, max_shift):
        self.fmt = fmt
        self.rounding = rounding
        self.radix = fmt.radix
        if fmt.radix == 4:
            top = (1 << fmt.exp_bits) - 1
            if rounding == "toward_zero":
                # the levels 4^(k - bias), k = 1..top: the code is the number of levels <= |x|
                self.thresholds = [4.0 ** (k - fmt.bias) for k in range(1, top + 1)]
            else:
                # the midpoints between successive levels (and between 0 and the first one):
                # the code is the number of midpoints below |x| (at or below for nearest_away)
                self.thresholds = [4.0 ** (1 - fmt.bias) / 2] + \
                    [4.0 ** (k - fmt.bias) * 2.5 for k in range(1, top + 1)]
            self.ok = all(np.isfinite(np.float32(t)) and float(np.float32(t)) == t
                          for t in self.thresholds)
            self.dtype = np.int32
            return
        man = fmt.man_bits
        self.man = man
        # Bits under the kept LSB that rounding looks at: R (stochastic), a guard bit
        # (nearest), none (toward zero).
        self.below = {"stochastic": sr_bits, "toward_zero": 0}.get(rounding, 1)
        # e from the float32 exponent field f: e = f - 127 + bias - 1
        self.f32_to_e = fmt.bias - 128
        # Significand bits under the quantum of a normal value: 23 - man_bits, plus guard
        # bits appended under the significand so that this is never less than `below`.
        self.guard = max(0, self.below - (23 - man))
        self.normal_drop = 23 - man + self.guard
        # At e <= lowest_e every significand bit lies more than `below` bits under the
        # quantum (all of it rounds to 0 by any mode): clamping e there keeps shifts small.
        self.lowest_e = -1 - self.below - (man if fmt.subnormals else 0)
        # Float32 subnormals and zeros, taken with exponent field 1 in step 1, are exact while
        # e <= tiny_e: below the normal range, or at its bottom for subnormal formats.
        self.tiny_e = 0 if fmt.subnormals else -1
        # The largest magnitude code, for f up to 255 (Inf/NaN) plus what MX scaling adds.
        bound = (max(255 + self.f32_to_e + max_shift, 0) << man) + (2 << man)
        fits32 = bound < 1 << 31 and fmt.bits <= 31 and 24 + self.guard <= 30
        self.dtype = np.int32 if fits32 else np.int64
        # Exact where float32 Inf overflows the format by itself (its largest value is below
        # 2^128) and the quantum never lies inside a float32 significand's last bit (s >= 0).
        self.ok = man <= 23 and fmt.max_exp_field - fmt.bias <= 127 and abs(fmt.bias) < 1 << 16


_plans = {}


def _bit_plan(fmt, rounding, sr_bits, max_shift=0):
    """The :class:`_BitPlan` of a conversion, or None where the bit-pattern path does not apply."""
    key = (fmt, rounding, sr_bits if rounding == "stochastic" else 0, max_shift)
    if key not in _plans:
        plan = _BitPlan(fmt, rounding, sr_bits, max_shift)
        _plans[key] = plan if plan.ok else None
    return _plans[key]


def _encode_bits(bits, plan, saturate, draws, *, a=None, scale_exp=None, tiny=None, out):
    """Codes of float32 bit patterns ``bits`` (int32, one chunk) into ``out``: steps 1 to 6.

    ``a`` is ``bits & 0x7FFFFFFF`` if already at hand. For MX, ``scale_exp`` is
    ``E - plan.f32_to_e`` per element, the input being ``x / 2^E``, and NaNs need no code
    (their block is all 0). ``tiny`` tells whether float32 subnormals and zeros need their
    exact exponent: where ``1 - scale_exp > plan.tiny_e``.
    """
    if plan.dtype != np.int32:
        bits = bits.astype(plan.dtype)
        a = None
    if a is None:
        a = bits & 0x7FFFFFFF
    if plan.radix == 4:
        magnitude = _encode_radix4_bits(a, plan)
    else:
        if tiny is None:
            tiny = 1 + plan.f32_to_e > plan.tiny_e
        magnitude = _encode_radix2_bits(a, plan, draws, scale_exp, tiny)
    _finish_bits(bits, a if scale_exp is None else None, magnitude, plan.fmt, saturate, out)


def _encode_radix2_bits(a, plan, draws, scale_exp, tiny):
    """Steps 1 to 4 on the bit patterns ``a`` of ``|x|``: the magnitude code before overflow
    handling (may exceed the largest one)."""
    # Step 1: the exponent of the leading one, as e = exp + bias - 1, and the significand. A
    # float32 subnormal is taken with exponent field 1 and no leading one: the same value.
    e = a >> 23
    np.maximum(e, 1, out=e)
    sig = e << 23
    np.subtract(a, sig, out=sig)
    sig += _F32_EXP_ONE
    if scale_exp is None:
        e += plan.f32_to_e
    else:
        e -= scale_exp
    if tiny:
        _normalise_tiny(a, e, sig, plan)
    if plan.guard:
        sig <<= plan.guard
    # Step 2: the quantum exponent q = max(exp, emin) - man_bits, as the number of
    # significand bits under it: s = max(e, 0) - e + 23 - man_bits (+ guard bits); without
    # subnormals q = emin below the normal range, which puts man_bits more bits under it.
    np.maximum(e, plan.lowest_e, out=e)
    kept_e = np.maximum(e, 0)
    drop = kept_e - e
    if not plan.fmt.subnormals:
        subnormal = e < 0
        np.add(drop, plan.man, out=drop, where=subnormal)
    # Step 3: n = floor(|x| / 2^q) and the `below` bits under it, t = sig >> (s - below); the
    # rounding mode decides the increment.
    drop += plan.normal_drop - plan.below
    t = sig >> drop
    if plan.rounding == "nearest_even":
        n = t >> 1
        increment = n | ((t << drop) != sig)        # odd or sticky (bits under the guard bit)
        increment &= t                              # ... and the guard bit, bit 0 of t
        increment &= 1
        n += increment
    elif plan.rounding == "nearest_away":
        n = t + 1                                   # the guard bit carries into n
        n >>= 1
    elif plan.rounding == "toward_zero":
        n = t
    else:
        # the R bits under n plus the draw carry into n iff they add up to 2^R or more
        n = t & ((1 << plan.below) - 1)
        n += draws
        n >>= plan.below
        n += t >> plan.below
    # Step 4: the magnitude code (max(e, 0) << man_bits) + n; without subnormals n counts
    # units of 2^emin below the normal range.
    if not plan.fmt.subnormals:
        np.left_shift(n, plan.man, out=n, where=subnormal)
    kept_e <<= plan.man
    kept_e += n
    return kept_e


def _normalise_tiny(a, e, sig, plan):
    """Step 1 for float32 subnormals and zeros whose exponent field 1 does not give an exact
    result: the exponent of the leading one and the normalised significand."""
    tiny = np.flatnonzero((a < _F32_EXP_ONE) & (e > plan.tiny_e))
    if not tiny.size:
        return
    mantissa = a[tiny]
    lead = (mantissa.astype(np.float32).view(np.int32) >> 23) - 127   # floor(log2), -127 at 0
    e[tiny] += lead - 23
    sig[tiny] = mantissa << np.minimum(23 - lead, 23).astype(mantissa.dtype)
    e[tiny[mantissa == 0]] = plan.lowest_e                           # no leading one at all


def _encode_radix4_bits(a, plan):
    """Radix-4 levels by the midpoint rule, on the bit patterns ``a`` of ``|x|``."""
    a = a.view(np.float32)
    code = np.zeros(a.shape, np.int32)
    above = np.greater_equal if plan.rounding in ("nearest_away", "toward_zero") else np.greater
    passed = np.empty(a.shape, bool)
    for threshold in plan.thresholds:
        above(a, np.float32(threshold), out=passed)
        code += passed
    return code


def _finish_bits(bits, a, magnitude, fmt, saturate, out):
    """Steps 5 and 6 on bit patterns: overflow, specials and the sign, into ``out``.

    Inf has exponent 128 and overflows every format of the bit-pattern path by itself. NaNs
    (``a > 0x7F800000``) are left alone if ``a`` is None.
    """
    if saturate or fmt.specials in ("none", "zero_only"):
        np.minimum(magnitude, fmt.max_code, out=magnitude)
    else:
        np.copyto(magnitude, fmt.inf_code if fmt.specials == "ieee" else fmt.nan_code,
                  where=magnitude > fmt.max_code)
    if fmt.twos_complement:
        negative = bits >> 31                       # 0 or -1
        magnitude ^= negative
        magnitude -= negative
        if fmt.bits not in (8, 16, 32):
            magnitude &= (1 << fmt.bits) - 1
    else:
        sign = bits >> (32 - fmt.bits)
        sign &= 1 << (fmt.bits - 1)
        magnitude |= sign
    if a is not None:
        nan = a > _F32_INF
        if nan.any():
            np.copyto(magnitude, 0 if fmt.nan_code is None else fmt.nan_code, where=nan)
    np.copyto(out, magnitude, casting="unsafe")


def quantize_float(x, fmt, rounding="nearest_even", saturate=True, seed=0, *, sr_bits=8):
    """``decode_float(encode_float(x, ...))``: the values ``x`` takes in format ``fmt``."""
    return decode_float(encode_float(x, fmt, rounding, saturate, seed, sr_bits=sr_bits), fmt)
