"""Float unpacking and rounding: the arithmetic shared by every conversion core.

:class:`FloatUnpacker` turns a code of any radix-2 :class:`golden.FloatFormat` (including the
two's-complement ``int{w}`` elements) into sign, exponent of the leading one, normalised
significand and special flags. :class:`FloatRounder` turns such an unpacked value back into a
code of another format with any rounding mode; it is the hardware twin of
:func:`golden.formats.encode_float` and follows the same numbered steps.
"""

from amaranth.hdl import *
from amaranth.lib import enum, data, wiring
from amaranth.lib.wiring import In, Out

from golden.rng import check_sr_bits

from golden.formats import resolve_format


__all__ = ["RoundingMode", "ROUNDING_NAMES", "exponent_range", "unpacked_layout",
           "FloatUnpacker", "FloatRounder"]


class RoundingMode(enum.Enum, shape=2):
    """Rounding of the magnitude, as :data:`golden.formats.ROUNDING_MODES`."""
    NEAREST_EVEN = 0
    NEAREST_AWAY = 1
    TOWARD_ZERO  = 2
    STOCHASTIC   = 3


#: Golden-model names of :class:`RoundingMode` members.
ROUNDING_NAMES = {
    "nearest_even": RoundingMode.NEAREST_EVEN,
    "nearest_away": RoundingMode.NEAREST_AWAY,
    "toward_zero":  RoundingMode.TOWARD_ZERO,
    "stochastic":   RoundingMode.STOCHASTIC,
}


def _check_hw_format(fmt, what):
    fmt = resolve_format(fmt, what=what)
    if fmt.radix != 2:
        raise ValueError(f"{what} must be a radix-2 format, not {fmt.name}")
    return fmt


def exponent_range(fmt):
    """``(lowest, highest)`` exponent of the leading one of a finite non-zero value."""
    fmt = resolve_format(fmt)
    lowest = fmt.emin - fmt.man_bits if fmt.subnormals else fmt.emin
    if fmt.twos_complement:
        return lowest, fmt.emin      # -2^(w-1) has magnitude 2^man * 2^(emin - man)
    return lowest, fmt.max_exp_field - fmt.bias


def unpacked_layout(fmt, *, margin=1):
    """Layout of an unpacked value of ``fmt``: ``sign``, ``exponent`` (signed, of the leading
    one, with ``margin`` spare values at each end) and ``significand`` (``man_bits + 1`` bits,
    leading one in the top bit, all zero for a zero)."""
    fmt = resolve_format(fmt)
    lowest, highest = exponent_range(fmt)
    return data.StructLayout({
        "sign":        1,
        "exponent":    range(lowest - margin, highest + margin + 1),
        "significand": fmt.man_bits + 1,
    })


def _count_zeros(leaves):
    """(all zero, leading zeros) of a power-of-two list of parts, most significant last, each
    part given as (all zero, leading zeros) of a power-of-two number of bits. A balanced tree
    that only selects and concatenates (no adders)."""
    if len(leaves) == 1:
        return leaves[0]
    half = len(leaves) // 2
    low_zero, low_count = _count_zeros(leaves[:half])
    high_zero, high_count = _count_zeros(leaves[half:])
    return low_zero & high_zero, Mux(high_zero, Cat(low_count, 1), Cat(high_count, 0))


def _padded_bits(value, width):
    size = 1 << max(width - 1, 0).bit_length()
    return [C(0, 1)] * (size - width) + [value[i] for i in range(width)]


def _bit_leaves(bits):
    return [(~bit, C(0, 0)) for bit in bits]


class FloatUnpacker(wiring.Component):
    """Unpacks codes of a radix-2 format; pipelined, one code per cycle.

    Parameters
    ----------
    fmt : str or FloatFormat
        Format of the code.

    Attributes
    ----------
    en : In(1)
        Advance the pipeline by one stage.
    code : In(fmt.bits)
        The code (sampled when ``en`` is high).
    value : Out(unpacked_layout(fmt))
        Sign, exponent of the leading one (as a power of two) and normalised significand; the
        significand is zero for ±0, and the fields are meaningless for Inf/NaN.
        :attr:`LATENCY` advances after the code.
    zero, inf, nan : Out(1)
        The code is ±0, ±Inf, NaN (with :attr:`value`).
    """

    LATENCY = 4

    def __init__(self, fmt):
        self._fmt = _check_hw_format(fmt, "Format")
        super().__init__({
            "en":    In(1),
            "code":  In(self._fmt.bits),
            "value": Out(unpacked_layout(self._fmt)),
            "zero":  Out(1),
            "inf":   Out(1),
            "nan":   Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        fmt = self._fmt
        man = fmt.man_bits
        width = man + 1

        # Stage 1: register the code.
        code = Signal(fmt.bits)
        with m.If(self.en):
            m.d.sync += code.eq(self.code)

        # Stage 2: the integer significand M (man+1 bits; a subnormal mantissa sits one place
        # up, so that shifting M by its leading zeros brings the leading one to the top), the
        # flags, and the leading zeros of each 8-bit group of M.
        s2_sign = Signal()
        s2_integer = Signal(width)
        s2_normal = Signal()
        s2_exp_field = Signal(max(fmt.exp_bits, 1))
        s2_flags = Signal(3)                # zero, inf, nan
        if fmt.twos_complement:
            negative = code[-1]
            integer = Mux(negative, -code.as_signed(), code)[:width]
            counted = integer
            sign, normal, exp_field = negative, C(0), C(0)
            flags = Cat(integer == 0, 0, 0)
        else:
            exp_field = code[man:man + fmt.exp_bits]
            mantissa = code[:man]
            normal = exp_field != 0
            integer = Mux(normal, Cat(mantissa, 1), Cat(C(0, 1), mantissa))
            counted = Cat(C(0, 1), mantissa)    # what a subnormal shifts; normals shift by 0
            sign = code[-1]
            all_ones = (1 << fmt.exp_bits) - 1
            if fmt.specials == "ieee":
                inf = (exp_field == all_ones) & (mantissa == 0)
                nan = (exp_field == all_ones) & (mantissa != 0)
            elif fmt.specials == "fn":
                inf = C(0)
                nan = (exp_field == all_ones) & (mantissa == (1 << man) - 1)
            else:
                inf = nan = C(0)
            flags = Cat(~normal & ((mantissa == 0) | (not fmt.subnormals)), inf, nan)
        bits = _padded_bits(counted, width)
        group = min(8, len(bits))
        groups = [_count_zeros(_bit_leaves(bits[i:i + group]))
                  for i in range(0, len(bits), group)]
        s2_groups = [(Signal(name=f"s2_zero{i}"), Signal(len(count), name=f"s2_count{i}"))
                     for i, (_, count) in enumerate(groups)]
        with m.If(self.en):
            m.d.sync += [
                s2_sign.eq(sign),
                s2_integer.eq(integer),
                s2_normal.eq(normal),
                s2_exp_field.eq(exp_field),
                s2_flags.eq(flags),
            ]
            for (zero, count), (s2_zero, s2_count) in zip(groups, s2_groups):
                m.d.sync += [s2_zero.eq(zero), s2_count.eq(count)]

        # Stage 3: the leading zeros of M from those of its groups.
        all_zero, total = _count_zeros(s2_groups)
        s3_sign = Signal()
        s3_integer = Signal(width)
        s3_zeros = Signal(range(width + 1))
        s3_normal = Signal()
        s3_exp_field = Signal.like(s2_exp_field)
        s3_flags = Signal(3)
        with m.If(self.en):
            m.d.sync += [
                s3_sign.eq(s2_sign),
                s3_integer.eq(s2_integer),
                s3_zeros.eq(Mux(s2_normal, 0, Mux(all_zero, width, total))),
                s3_normal.eq(s2_normal),
                s3_exp_field.eq(s2_exp_field),
                s3_flags.eq(s2_flags),
            ]

        # Stage 4: normalise M and place the exponent of its leading one.
        with m.If(self.en):
            if fmt.twos_complement:
                exponent = fmt.emin - s3_zeros
            else:
                exponent = Mux(s3_normal, s3_exp_field - fmt.bias, fmt.emin - 1 - s3_zeros)
            m.d.sync += [
                self.value.sign.eq(s3_sign),
                self.value.exponent.eq(exponent),
                self.value.significand.eq((s3_integer << s3_zeros)[:width]),
                Cat(self.zero, self.inf, self.nan).eq(s3_flags),
            ]
        return m


class FloatRounder(wiring.Component):
    """Rounds an unpacked value to a code of a radix-2 format; pipelined, one value per cycle.

    The value is ``(-1)^sign * significand * 2^(exponent - sig_bits + 1)``, the significand
    having its leading one in the top bit (or being zero).

    Parameters
    ----------
    fmt : str or FloatFormat
        Target format.
    exponent_shape : signed shape
        Shape of the incoming exponent.
    sig_bits : int
        Width of the incoming significand, in bits (leading one included).
    sr_bits : int
        Width of a stochastic-rounding draw, in bits (1..24).
    saturate : bool
        Overflow clamps to ±max finite (otherwise goes to Inf, or NaN for ``fn`` formats;
        formats without Inf/NaN always saturate).

    Attributes
    ----------
    en : In(1)
        Advance the pipeline by one stage.
    sign, exponent, significand : In
        The value (sampled when ``en`` is high).
    inf, nan : In(1)
        The value is ±Inf or NaN.
    mode : In(RoundingMode)
        Rounding of the magnitude.
    draw : In(sr_bits)
        Random integer for stochastic rounding, added below the kept LSB.
    code : Out(fmt.bits)
        The rounded code, :attr:`LATENCY` advances after the inputs.
    """

    LATENCY = 7

    def __init__(self, fmt, *, exponent_shape, sig_bits, sr_bits=8, saturate=True):
        self._fmt = _check_hw_format(fmt, "Target format")
        exponent_shape = Shape.cast(exponent_shape)
        if not exponent_shape.signed:
            raise TypeError(f"Exponent shape must be signed, not {exponent_shape!r}")
        if not isinstance(sig_bits, int) or sig_bits < 1:
            raise ValueError(f"Significand width must be a positive integer, not {sig_bits!r}")
        check_sr_bits(sr_bits)
        self._exponent_shape = exponent_shape
        self._sig_bits = sig_bits
        self._sr_bits = sr_bits
        self._saturate = bool(saturate) or self._fmt.specials in ("none", "zero_only")
        super().__init__({
            "en":          In(1),
            "sign":        In(1),
            "exponent":    In(exponent_shape),
            "significand": In(sig_bits),
            "inf":         In(1),
            "nan":         In(1),
            "mode":        In(RoundingMode),
            "draw":        In(sr_bits),
            "code":        Out(self._fmt.bits),
        })

    def elaborate(self, platform):
        m = Module()
        fmt = self._fmt
        man = fmt.man_bits
        R = self._sr_bits
        # The significand is padded to at least man_bits + 1 bits so that the shift below
        # never moves left.
        width = max(self._sig_bits, man + 1)
        base_shift = width - 1 - man
        max_shift = width + R                # shifts everything out, leaving only the sticky bit
        top_lead = fmt.max_exp_field - fmt.bias + 1 if fmt.exp_bits else fmt.emin
        exponent = self.exponent

        # Stages 0 and 1: where the kept LSB lies (step 2) and the exponent part of the code
        # (step 4). Below the normal range the LSB moves `extra` places up, `extra` being
        # emin - exponent (plus man_bits without subnormals); the comparisons are against
        # constants, beside the subtraction.
        lowest_normal = fmt.emin if fmt.subnormals else fmt.emin + man
        limit = max_shift - base_shift
        s0_normal = Signal()                 # in the normal range
        s0_huge = Signal()                   # certainly above the largest finite value
        s0_out = Signal()                    # so far below that everything is shifted out
        s0_extra = Signal(range(limit + 1))
        s0_exp_code = Signal(range((1 << fmt.exp_bits) + 1))
        s0_sig = Signal(width)
        s0 = [Signal(1, name="s0_sign"), Signal(1, name="s0_inf"), Signal(1, name="s0_nan"),
              Signal(RoundingMode, name="s0_mode"), Signal(R, name="s0_draw")]
        nonzero = self.significand[-1]
        with m.If(self.en):
            m.d.sync += [
                s0_normal.eq((exponent >= fmt.emin) & nonzero),
                s0_huge.eq((exponent > top_lead) & nonzero),
                s0_out.eq(exponent < lowest_normal - limit),
                s0_extra.eq(lowest_normal - exponent),
                s0_exp_code.eq(exponent + fmt.bias - 1),
                s0_sig.eq(self.significand << (width - self._sig_bits)),
                Cat(*s0).eq(Cat(self.sign, self.inf, self.nan, self.mode, self.draw)),
            ]

        s1_shift = Signal(range(max_shift + 1))
        s1_exp_code = Signal.like(s0_exp_code)
        s1_flush = Signal()                  # no subnormals and below the normal range
        s1_huge = Signal()
        s1_sig = Signal(width)
        s1 = [Signal.like(s) for s in s0]
        with m.If(self.en):
            m.d.sync += [
                s1_sig.eq(s0_sig),
                s1_huge.eq(s0_huge),
                s1_exp_code.eq(Mux(s0_normal & ~s0_huge, s0_exp_code, 0)),
                s1_flush.eq(~s0_normal & (not fmt.subnormals)),
                s1_shift.eq(Mux(s0_normal, base_shift,
                                Mux(s0_out, max_shift, base_shift + s0_extra))),
                Cat(*s1).eq(Cat(*s0)),
            ]

        # Stages 2 and 3: the kept integer n, the R bits below it and a sticky bit (step 3),
        # shifting first by whole groups of 8 bits, then by the rest.
        extended = Signal(width + R)
        m.d.comb += extended.eq(s1_sig << R)
        groups = -(-(width + R) // 8)
        s2_shifted = Signal(width + R)
        s2_sticky = Signal()
        s2_fine = Signal(3)
        s2_exp_code = Signal.like(s1_exp_code)
        s2_flush = Signal()
        s2_huge = Signal()
        s2 = [Signal.like(s) for s in s1]
        coarse = s1_shift[3:]
        group_any = Cat((extended[8 * g:8 * g + 8] != 0) for g in range(groups))
        with m.If(self.en):
            m.d.sync += [
                s2_shifted.eq(extended >> (coarse * 8)),
                s2_sticky.eq((group_any & ~(C(-1, groups) << coarse)) != 0),
                s2_fine.eq(s1_shift[:3]),
                s2_exp_code.eq(s1_exp_code),
                s2_flush.eq(s1_flush),
                s2_huge.eq(s1_huge),
                Cat(*s2).eq(Cat(*s1)),
            ]

        s3_kept = Signal(man + 2)
        s3_fraction = Signal(R)
        s3_sticky = Signal()
        s3_exp_code = Signal.like(s1_exp_code)
        s3_flush = Signal()
        s3_huge = Signal()
        s3 = [Signal.like(s) for s in s1]
        with m.If(self.en):
            shifted = s2_shifted >> s2_fine
            m.d.sync += [
                s3_kept.eq(shifted[R:]),
                s3_fraction.eq(shifted[:R]),
                s3_sticky.eq(s2_sticky | ((s2_shifted[:8] & ~(C(-1, 8) << s2_fine)) != 0)),
                s3_exp_code.eq(s2_exp_code),
                s3_flush.eq(s2_flush),
                s3_huge.eq(s2_huge),
                Cat(*s3).eq(Cat(*s2)),
            ]
        s3_sign, s3_inf, s3_nan, s3_mode, s3_draw = s3

        # Stage 4: the rounding increment (step 3).
        guard = s3_fraction[-1]
        rest = Signal()
        m.d.comb += rest.eq((s3_fraction[:-1] != 0) | s3_sticky if R > 1 else s3_sticky)
        increment = Signal()
        with m.Switch(s3_mode):
            with m.Case(RoundingMode.NEAREST_EVEN):
                m.d.comb += increment.eq(guard & (rest | s3_kept[0]))
            with m.Case(RoundingMode.NEAREST_AWAY):
                m.d.comb += increment.eq(guard)
            with m.Case(RoundingMode.TOWARD_ZERO):
                m.d.comb += increment.eq(0)
            with m.Case(RoundingMode.STOCHASTIC):
                m.d.comb += increment.eq((s3_fraction + s3_draw)[R])
        s4_rounded = Signal(man + 2)
        s4_exp_code = Signal.like(s1_exp_code)
        s4_flush = Signal()
        s4_overflow = Signal()
        s4 = [Signal(1, name="s4_sign"), Signal(1, name="s4_nan")]
        with m.If(self.en):
            m.d.sync += [
                s4_rounded.eq(s3_kept + increment),
                s4_exp_code.eq(s3_exp_code),
                s4_flush.eq(s3_flush),
                s4_overflow.eq(s3_huge | s3_inf),
                Cat(*s4).eq(Cat(s3_sign, s3_nan)),
            ]

        # Stage 5: the magnitude code (step 4).
        magnitude_width = fmt.exp_bits + man + 2
        s5_magnitude = Signal(magnitude_width)
        s5_overflow = Signal()
        s5 = [Signal(1, name="s5_sign"), Signal(1, name="s5_nan")]
        with m.If(self.en):
            m.d.sync += [
                s5_magnitude.eq(Mux(s4_flush, s4_rounded << man,
                                    (s4_exp_code << man) + s4_rounded)),
                s5_overflow.eq(s4_overflow),
                Cat(*s5).eq(Cat(*s4)),
            ]
        s5_sign, s5_nan = s5

        # Stage 6: overflow, specials and the sign (steps 5 and 6).
        final = Signal(magnitude_width)
        with m.If(s5_overflow | (s5_magnitude > fmt.max_code)):
            if self._saturate:
                m.d.comb += final.eq(fmt.max_code)
            else:
                m.d.comb += final.eq(fmt.inf_code if fmt.specials == "ieee" else fmt.nan_code)
        with m.Else():
            m.d.comb += final.eq(s5_magnitude)
        with m.If(self.en):
            if fmt.twos_complement:
                signed = Mux(s5_sign, -final, final)
            else:
                signed = Cat(final[:fmt.bits - 1], s5_sign)
            m.d.sync += self.code.eq(Mux(s5_nan, fmt.nan_code or 0, signed))
        return m
