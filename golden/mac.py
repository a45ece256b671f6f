"""The 4-bit shift MAC (SPEC section 6): INT4 times mantissa-less FP4, exact sums, rounding.

The model mirrors ``hdl/mac.py`` stage for stage:

1. **Products** (:func:`fp4_shifts`, :func:`products`). An FP4 code ``g`` (sign, 3-bit
   exponent field ``e``, no mantissa) is ``±radix^(e - bias) * 2^-phase``, or 0 for ``e = 0``.
   Every level is ``2^x`` with ``x = log2(radix) * (e - bias) - phase``, so the product with
   an INT4 code ``a`` (two's complement, -8..7) is the integer ``±a << shift`` in units of
   ``2^LSB`` where ``shift = x - LSB = log2(radix) * (e - 1) + 1 - phase`` and ``LSB`` is the
   smallest ``x`` of either phase (:func:`product_lsb`: -7 for ``fp4_r4``, -4 for ``fp4_r2``).
   Phase 1 is the odd phase of two-phase rounding: the FP4 operand's grid moved down by one
   binade. (The hardware shifts each lane by ``log2(radix) * (e - 1)`` and applies the
   remaining ``1 - phase`` once to each beat's sum, which is the same integer.)
2. **Chunk sums**: the integer products of ``chunk`` consecutive elements, summed exactly (the
   adder tree, ``chunk / lanes`` beats of it).
3. **Accumulation.** ``acc="exact"``: one exact integer sum of all products. With a float
   accumulator format (``fp16``, ``dlfloat16``, ...), chunk-based accumulation as in 8-bit
   float training: ``acc = round_acc(acc + chunk_sum)`` once per chunk, starting from 0, the
   rounding to ``acc`` being ``rounding`` with saturation at its largest finite value. The
   accumulator always holds an integer number of ``2^LSB`` (every format allowed here has
   its finest step at or below ``2^LSB`` wherever the sums can lie, and coarser steps are
   multiples of it), which is how the hardware stores it.
4. **Output rounding** of the sum to ``out_fmt`` with ``rounding`` (:func:`encode_float`).

Stochastic rounding (SPEC 1, :mod:`golden.rng`). A *rounding event* is the end of a chunk
(``chunk`` products, or the end of the dot product); with ``acc="exact"`` each dot product
has one event, at its end. Every event takes two draws per unit: with ``units = P`` units in
lock step (``ShiftMACArray``; ``P = 1`` for one ``ShiftMACUnit``), output element ``j`` (C
order over the output shape) belongs to unit ``p = j mod P`` and dot product ``t = j div P``
of that unit, and its event ``k`` (of ``K = ceil(n / chunk)``, or 1) uses draws

    2 * ((t * K + k) * P + p)        for the accumulator rounding (float accumulators), and
    2 * ((t * K + k) * P + p) + 1    for the output rounding (used at k = K - 1 only),

counted from the start of the call (a hardware *frame*), where the generator restarts.
"""

import math

import numpy as np

from . import rng
from .formats import FloatFormat, FORMATS, resolve_format, check_rounding, encode_float, \
    decode_float


__all__ = ["FP4_FORMATS", "INT4_MIN", "INT4_MAX", "fp4_format", "product_lsb", "fp4_shifts",
           "products", "shift_mac", "quantize_fp4", "dequantize_fp4", "quantize_int4",
           "min_accumulator_bits", "accumulator_bits", "chunk_sum_bits", "variance_retention",
           "min_accumulator_mantissa", "check_accumulator", "check_output_format",
           "check_chunk", "check_phase"]


#: The FP4 operand formats: radix-4 ``fp4_r4`` (SPEC 1) and its radix-2 variant ``fp4_r2``
#: (sign, 3-bit exponent, no mantissa; exponent field 0 is ±0; levels ``2^(e - 4)``).
FP4_FORMATS = {
    "fp4_r4": FORMATS["fp4_r4"],
    "fp4_r2": FloatFormat("fp4_r2", 3, 0, 4, specials="zero_only", radix=2),
}

INT4_MIN, INT4_MAX = -8, 7

#: Sums whose magnitude reaches 2^53 units of the products' LSB would not be exact in the
#: float64 arithmetic of this model.
_EXACT_LIMIT = 53


def fp4_format(fmt):
    """The :class:`FloatFormat` of an FP4 operand format name (``fp4_r4`` or ``fp4_r2``)."""
    if isinstance(fmt, FloatFormat) and fmt in FP4_FORMATS.values():
        return fmt
    if isinstance(fmt, str) and fmt in FP4_FORMATS:
        return FP4_FORMATS[fmt]
    raise ValueError(f"FP4 format must be one of {', '.join(FP4_FORMATS)}, not {fmt!r}")


def _radix_log(fmt):
    return 2 if fmt.radix == 4 else 1


def product_lsb(fmt="fp4_r4"):
    """Exponent of the products' unit: ``log2(radix) * (1 - bias) - 1`` (-7 for ``fp4_r4``)."""
    fmt = fp4_format(fmt)
    return _radix_log(fmt) * (1 - fmt.bias) - 1


def max_shift(fmt="fp4_r4"):
    """The largest product shift: ``log2(radix) * (2^exp_bits - 2) + 1`` (13 for ``fp4_r4``)."""
    fmt = fp4_format(fmt)
    return _radix_log(fmt) * ((1 << fmt.exp_bits) - 2) + 1


def check_phase(phase):
    if isinstance(phase, bool) or not isinstance(phase, (int, np.integer)) or phase not in (0, 1):
        raise ValueError(f"Phase must be 0 or 1, not {phase!r}")
    return int(phase)


def _check_codes(codes, name, low, high):
    codes = np.asarray(codes)
    if codes.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an array of integer codes, not of dtype {codes.dtype}")
    if codes.size and (codes.min() < low or codes.max() > high):
        raise ValueError(f"{name} codes must lie between {low} and {high}, "
                         f"not {codes.min()}..{codes.max()}")
    return codes.astype(np.int64)


def fp4_shifts(g, fmt="fp4_r4", phase=0):
    """``(negative, shift, zero)`` of FP4 codes ``g`` (0..15): the sign, the left shift that
    turns an INT4 value into the product in units of ``2^product_lsb(fmt)``, and whether the
    code is ±0."""
    fmt = fp4_format(fmt)
    phase = check_phase(phase)
    g = _check_codes(g, "FP4", 0, 15)
    exponent = g & 7
    shift = _radix_log(fmt) * (np.maximum(exponent, 1) - 1) + 1 - phase
    return (g >> 3) == 1, shift, exponent == 0


def products(a, g, fmt="fp4_r4", phase=0):
    """Exact integer products ``a * g`` in units of ``2^product_lsb(fmt)`` (int64, broadcast)."""
    a = _check_codes(a, "INT4", INT4_MIN, INT4_MAX)
    negative, shift, zero = fp4_shifts(g, fmt, phase)
    signed = np.where(negative, -a, a)
    return np.where(zero, 0, np.left_shift(signed, shift))


def check_accumulator(acc, fmt="fp4_r4"):
    """``"exact"`` or the accumulator's :class:`FloatFormat`; ValueError for a format whose
    range does not fit the exact float64 arithmetic of this model (and a sane register)."""
    if isinstance(acc, str) and acc == "exact":
        return "exact"
    try:
        acc_fmt = resolve_format(acc, what="Accumulator format")
    except (ValueError, TypeError):
        raise ValueError(f"Accumulator must be 'exact' or a radix-2 float format such as "
                         f"'fp16' or 'dlfloat16', not {acc!r}") from None
    if acc_fmt.radix != 2 or acc_fmt.twos_complement:
        raise ValueError(f"Accumulator format must be a radix-2 float format, not {acc_fmt.name}")
    limit = _EXACT_LIMIT - 2 + product_lsb(fmt)
    if acc_fmt.emax > limit:
        raise ValueError(f"Accumulator format {acc_fmt.name} reaches 2^{acc_fmt.emax}, more than "
                         f"the 2^{limit} a chunk accumulator may span above the products' unit "
                         f"2^{product_lsb(fmt)}; use fp16, dlfloat16 or a narrower format")
    return acc_fmt


def check_output_format(out_fmt):
    fmt = resolve_format(out_fmt, what="Output format")
    if fmt.radix != 2 or fmt.twos_complement:
        raise ValueError(f"Output format must be a radix-2 float format, not {fmt.name}")
    return fmt


def check_chunk(chunk, acc):
    """``chunk`` as an int (float accumulators) or None (``acc="exact"``)."""
    if acc == "exact":
        if chunk is not None:
            raise ValueError(f"Chunk must be None with an exact accumulator, not {chunk!r}; "
                             f"chunk-based accumulation needs a float accumulator format")
        return None
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"Chunk must be a positive integer number of products with a float "
                         f"accumulator, not {chunk!r}")
    return int(chunk)


def _check_units(units, outputs):
    if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
        raise ValueError(f"Units must be a positive integer, not {units!r}")
    if outputs % units:
        raise ValueError(f"Units ({units}) must divide the number of outputs ({outputs})")
    return int(units)


def _round_values(values, fmt, rounding, saturate, draws, sr_bits):
    """Codes of float64 ``values`` (exact) in ``fmt`` with explicit stochastic draws."""
    if rounding == "stochastic":
        return encode_float(values, fmt, rounding, saturate, sr_bits=sr_bits, random=draws)
    return encode_float(values, fmt, rounding, saturate)


def shift_mac(a, g, fmt="fp4_r4", phase=0, acc="exact", chunk=None, out_fmt="fp16",
              rounding="nearest_even", seed=0, *, sr_bits=8, saturate=True, units=1):
    """Dot products of INT4 codes ``a`` and FP4 codes ``g`` over their last axis.

    Parameters
    ----------
    a : array_like of int
        INT4 codes, -8..7 (two's complement values).
    g : array_like of int
        FP4 codes, 0..15 (bit 3 the sign, bits 0-2 the exponent field); broadcast against
        ``a``; the last axes (the dot product's length ``n``) must be equal.
    fmt : str
        ``"fp4_r4"`` (radix 4) or ``"fp4_r2"`` (radix 2).
    phase : int
        0, or 1 for the odd phase of two-phase rounding (every FP4 level halved).
    acc : str or FloatFormat
        ``"exact"`` (an integer accumulator wide enough for any sum) or a float accumulator
        format for chunk-based accumulation (its largest value at most ``2^(51 + LSB)``).
    chunk : int or None
        Products per chunk (float accumulators only; None with ``acc="exact"``).
    out_fmt : str or FloatFormat
        Format of the results (radix 2).
    rounding : str
        Rounding of the accumulator and the output, one of ``ROUNDING_MODES``.
    seed : int
        32-bit seed of the stochastic-rounding generator (draw order in the module docstring).
    sr_bits : int
        Random bits per stochastic rounding, ``R`` (1..24).
    saturate : bool
        Output overflow clamps to ±max finite (otherwise goes to Inf, or NaN for ``fn``
        formats). The accumulator always saturates.
    units : int
        Units working in lock step (``ShiftMACArray``'s ``P``), which sets the draw order; it
        must divide the number of outputs.

    Returns
    -------
    ndarray of unsigned integers: codes of ``out_fmt``, the broadcast shape of ``a`` and ``g``
    without the last axis.
    """
    fmt = fp4_format(fmt)
    phase = check_phase(phase)
    acc = check_accumulator(acc, fmt)
    chunk = check_chunk(chunk, acc)
    out = check_output_format(out_fmt)
    check_rounding(rounding)
    sr_bits = rng.check_sr_bits(sr_bits)
    rng._check_seed(seed)
    if not isinstance(saturate, (bool, np.bool_)):
        raise TypeError(f"Saturate must be a bool, not {saturate!r}")
    a, g = np.asarray(a), np.asarray(g)
    if a.ndim == 0 or g.ndim == 0:
        raise ValueError("Operands must have at least one axis (the dot product's)")
    n = a.shape[-1]
    if g.shape[-1] != n:
        raise ValueError(f"Operands must have equal last axes, not {a.shape[-1]} and {g.shape[-1]}")
    if n < 1:
        raise ValueError("Dot products must have at least one element")
    if min_accumulator_bits(n, fmt) > _EXACT_LIMIT:
        raise ValueError(f"Dot product length must be below {_max_exact_length(fmt) + 1}, not {n}")
    try:
        batch = np.broadcast_shapes(a.shape[:-1], g.shape[:-1])
    except ValueError:
        raise ValueError(f"Operand shapes {a.shape} and {g.shape} do not broadcast") from None
    prods = products(a, g, fmt, phase)                      # the shifts
    prods = np.broadcast_to(prods, batch + (n,)).reshape(-1, n)
    outputs = prods.shape[0]
    units = _check_units(units, outputs)
    events = 1 if chunk is None else -(-n // chunk)
    draws = None
    if rounding == "stochastic":
        draws = rng.draws(seed, 2 * outputs * events, sr_bits).astype(np.int64)
        # index 2 * ((t * K + k) * P + p) + which, for output j = t * P + p
        draws = draws.reshape(outputs // units, events, units, 2).transpose(0, 2, 1, 3)
        draws = draws.reshape(outputs, events, 2)
    lsb = product_lsb(fmt)
    if chunk is None:
        total = prods.sum(axis=1)                           # the adder tree and accumulator
    else:
        padded = np.zeros((outputs, events * chunk), np.int64)
        padded[:, :n] = prods
        sums = padded.reshape(outputs, events, chunk).sum(axis=2)
        total = np.zeros(outputs, np.int64)
        for k in range(events):
            value = np.ldexp((total + sums[:, k]).astype(np.float64), lsb)
            code = _round_values(value, acc, rounding, True,
                                 None if draws is None else draws[:, k, 0], sr_bits)
            total = np.ldexp(decode_float(code, acc), -lsb).astype(np.int64)
    value = np.ldexp(total.astype(np.float64), lsb)
    codes = _round_values(value, out, rounding, bool(saturate),
                          None if draws is None else draws[:, -1, 1], sr_bits)
    return codes.reshape(batch)


def _max_exact_length(fmt):
    per_product = 8 << max_shift(fmt)
    return ((1 << (_EXACT_LIMIT - 1)) - 1) // per_product


# Accumulator sizing.

def _check_length(n, what="Dot product length"):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{what} must be a positive integer, not {n!r}")
    return int(n)


def min_accumulator_bits(n, fmt="fp4_r4", *, chunk=None):
    """Two's complement bits that hold every sum of up to ``n`` products exactly (in units of
    ``2^product_lsb(fmt)``): the worst case is ``n`` products of ``-8`` and the largest FP4
    level of the opposite sign, ``±n * 8 * 2^max_shift``. With ``chunk``, the width of a
    chunk sum (``min(n, chunk)`` products) instead."""
    n = _check_length(n)
    fmt = fp4_format(fmt)
    if chunk is not None:
        n = min(n, _check_length(chunk, "Chunk"))
    return (n * (8 << max_shift(fmt))).bit_length() + 1


def chunk_sum_bits(chunk, fmt="fp4_r4"):
    """Width of a chunk's exact sum, :func:`min_accumulator_bits` of ``chunk`` products."""
    return min_accumulator_bits(chunk, fmt)


def accumulator_bits(acc, fmt="fp4_r4", *, chunk):
    """Two's complement bits of a chunk accumulator of format ``acc`` in units of the products'
    LSB: it holds ±max finite of ``acc`` plus one chunk sum before rounding."""
    fmt = fp4_format(fmt)
    acc = check_accumulator(acc, fmt)
    if acc == "exact":
        raise ValueError("Accumulator bits of 'exact' depend on the length: use "
                         "min_accumulator_bits")
    chunk = _check_length(chunk, "Chunk")
    largest = int(acc.max_finite * 2.0 ** -product_lsb(fmt))
    return (largest + (chunk * (8 << max_shift(fmt)))).bit_length() + 1


def _round_mantissa(x, man_bits):
    """``x`` rounded to ``man_bits`` fraction bits (nearest even), unbounded exponent."""
    mantissa, exponent = np.frexp(x)
    return np.ldexp(np.rint(np.ldexp(mantissa, man_bits + 1)), exponent - man_bits - 1)


def variance_retention(n, man_bits, *, chunk=None, trials=2000, seed=0):
    """Variance retention ratio (VRR) of a float accumulation of ``n`` products.

    In the spirit of Sakr et al. (*Accumulation bit-width scaling for ultra-low precision
    training*, ICLR 2019): when an accumulator of ``man_bits`` mantissa bits adds small terms
    to a large partial sum, their low bits are lost ("swamping"), which shows as a variance
    of the computed sums below the ``n * sigma^2`` of exact ones. This estimates
    ``Var(computed) / Var(exact)`` by Monte Carlo: ``trials`` dot products of ``n`` i.i.d.
    standard normal products (seeded NumPy generator), accumulated with round-to-nearest-even
    at every addition (exponent range unbounded; the terms themselves exact), in chunks of ``chunk`` exact partial sums
    when given. A VRR near 1 means the accumulator is wide enough; the paper's criterion
    for unhurt training is a VRR close to 1 (its cut-off lies around 0.99 and above).
    """
    n = _check_length(n)
    if isinstance(man_bits, bool) or not isinstance(man_bits, (int, np.integer)) \
            or not 1 <= man_bits <= 52:
        raise ValueError(f"Mantissa bits must be an integer between 1 and 52, not {man_bits!r}")
    if chunk is not None:
        chunk = _check_length(chunk, "Chunk")
    trials = _check_length(trials, "Trial count")
    terms = np.random.default_rng(seed).standard_normal((trials, n))
    exact = terms.sum(axis=1)
    if chunk is not None:
        events = -(-n // chunk)
        padded = np.zeros((trials, events * chunk))
        padded[:, :n] = terms
        terms = padded.reshape(trials, events, chunk).sum(axis=2)
    # the first term (or chunk sum) enters exactly: only the additions lose bits
    total = terms[:, 0]
    for column in terms.T[1:]:
        total = _round_mantissa(total + column, man_bits)
    return float(np.var(total) / np.var(exact))


def min_accumulator_mantissa(n, *, chunk=None, target=0.99, trials=2000, seed=0):
    """The fewest accumulator mantissa bits whose :func:`variance_retention` reaches
    ``target`` for dot products of length ``n`` (optionally chunked); at most 52."""
    if not isinstance(target, (float, int)) or isinstance(target, bool) or not 0 < target < 1:
        raise ValueError(f"Target must be a number between 0 and 1, not {target!r}")
    for man_bits in range(1, 53):
        if variance_retention(n, man_bits, chunk=chunk, trials=trials, seed=seed) >= target:
            return man_bits
    return 52


# Operand quantizers.

def quantize_fp4(x, fmt="fp4_r4", phase=0, rounding="nearest_even", *, scale=1.0, seed=0,
                 sr_bits=8):
    """FP4 codes of ``x / scale`` for the given phase: ``encode_float(x / scale * 2^phase)``,
    which for ``fp4_r4`` is the radix-4 midpoint rule of SPEC 1 (round to the lower level
    ``4^(k-1)`` iff ``|x| <= 4^k / 1.6``), saturating at the largest level; radix 2 rounds to
    nearest even (or by ``rounding``; stochastic rounding is radix 2 only)."""
    fmt = fp4_format(fmt)
    phase = check_phase(phase)
    if not isinstance(scale, (int, float, np.floating, np.integer)) or isinstance(scale, bool) \
            or not np.isfinite(scale) or scale <= 0 or np.log2(scale) != np.round(np.log2(scale)):
        raise ValueError(f"Scale must be a positive power of two, not {scale!r}")
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise TypeError(f"Input must be an array of real numbers, not of dtype {x.dtype}")
    return encode_float(np.ldexp(x.astype(np.float64), phase - int(np.log2(scale))), fmt,
                        rounding, True, seed, sr_bits=sr_bits)


def dequantize_fp4(codes, fmt="fp4_r4", phase=0, *, scale=1.0):
    """The values of FP4 codes for the given phase: ``decode_float(codes) * 2^-phase * scale``."""
    fmt = fp4_format(fmt)
    phase = check_phase(phase)
    _check_codes(codes, "FP4", 0, 15)
    return np.ldexp(decode_float(codes, fmt), -phase) * scale


def quantize_int4(x, scale=None, rounding="nearest_even", *, seed=0, sr_bits=8):
    """INT4 codes (-8..7, int8) of ``x / scale``, clamped; ``scale`` defaults to
    ``max|x| / 7`` (symmetric per-tensor scaling; 1 for an all-zero tensor). Returns
    ``(codes, scale)``."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise TypeError(f"Input must be an array of real numbers, not of dtype {x.dtype}")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError("Input must be finite to quantize to INT4")
    if scale is None:
        peak = float(np.abs(x).max()) if x.size else 0.0
        scale = peak / INT4_MAX if peak > 0 else 1.0
    elif isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating, np.integer)) \
            or not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"Scale must be a positive finite number, not {scale!r}")
    check_rounding(rounding)
    y = x / scale
    if rounding == "nearest_even":
        q = np.rint(y)
    elif rounding == "nearest_away":
        q = np.sign(y) * np.floor(np.abs(y) + 0.5)
    elif rounding == "toward_zero":
        q = np.trunc(y)
    else:
        sr_bits = rng.check_sr_bits(sr_bits)
        draw = rng.draws(seed, y.size, sr_bits).reshape(y.shape).astype(np.float64)
        q = np.floor(y + draw / (1 << sr_bits))
    return np.clip(q, INT4_MIN, INT4_MAX).astype(np.int8), float(scale)
