"""Element number formats and conversion to and from them (SPEC section 1).

A :class:`FloatFormat` describes a sign-magnitude float (radix 2 or mantissa-less radix 4) or a
two's-complement fixed-point ``int{w}`` element, which is treated as a float with no exponent
bits: every code is "subnormal", value ``2^emin * m / 2^man_bits`` with ``emin = 1``, which is
``k / 2^(w-2)`` as SPEC section 2 requires. One rounding routine then serves every format.

Conversion (:func:`encode_float`) follows the same steps as the hardware rounder in
``hdl/rounder.py``, so the two can be read side by side:

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


def _as_float64(x):
    x = np.asarray(x)
    if x.dtype.kind in "bcOSU" or x.dtype.kind == "V" and x.dtype.itemsize > 2:
        raise TypeError(f"Input must be an array of real numbers, not of dtype {x.dtype}")
    return x.astype(np.float64)


def _check_sr_bits(sr_bits):
    if isinstance(sr_bits, bool) or not isinstance(sr_bits, (int, np.integer)) \
            or not 1 <= sr_bits <= 24:
        raise ValueError(f"Stochastic rounding bits must be an integer between 1 and 24, "
                         f"not {sr_bits!r}")
    return int(sr_bits)


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
    if not isinstance(saturate, (bool, np.bool_)):
        raise TypeError(f"Saturate must be a bool, not {saturate!r}")
    x = _as_float64(x)
    if rounding == "stochastic":
        if random is None:
            random = rng.draws(seed, x.size, sr_bits).reshape(x.shape)
        else:
            random = np.asarray(random).astype(np.int64)
            if random.shape != x.shape:
                raise ValueError(f"Random draws must have the shape of the input {x.shape}, "
                                 f"not {random.shape}")
    if fmt.radix == 4:
        magnitude = _encode_radix4(np.abs(x), fmt, rounding)
    else:
        magnitude = _encode_radix2(np.abs(x), fmt, rounding, random, sr_bits)
    return _finish(x, magnitude, fmt, saturate)


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


def quantize_float(x, fmt, rounding="nearest_even", saturate=True, seed=0, *, sr_bits=8):
    """``decode_float(encode_float(x, ...))``: the values ``x`` takes in format ``fmt``."""
    return decode_float(encode_float(x, fmt, rounding, saturate, seed, sr_bits=sr_bits), fmt)
