"""Codebook elements: the nearest of ``2^N`` magnitude levels (SPEC section 4).

:class:`CodebookRounder` is the hardware twin of :func:`golden.codebook.encode_codebook` on an
unpacked scaled value ``t = |x| / 2^E``, one value per cycle. It does not search the levels: it
counts the midpoints between adjacent levels that lie strictly below ``t``, which is the
nearest level's index, ties to the lower one, when the levels are sorted (as every
:class:`golden.Codebook` is).
"""

from amaranth.hdl import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.codebook import Codebook, LEVEL_BITS, LEVEL_FRAC_BITS, _check_n_bits

from .mx_layouts import levels_layout
from .pipeline import delayed


__all__ = ["MIDPOINT_FRAC_BITS", "MIDPOINT_BITS", "CodebookRounder"]


#: Fractional bits of a midpoint: the sum of two adjacent levels is the midpoint in units of
#: 2^-9, so one more fractional bit than a level and no rounding.
MIDPOINT_FRAC_BITS = LEVEL_FRAC_BITS + 1
#: Width of a midpoint (and of ``floor(t * 2^9)`` for ``t < 2``): the sum of two levels.
MIDPOINT_BITS = LEVEL_BITS + 1

# The exponent of the leading one of the largest magnitude below 2, the top of every
# codebook's range (``Codebook.emax`` is 0 for all codebooks).
_TOP_EXPONENT = MIDPOINT_BITS - 1 - MIDPOINT_FRAC_BITS
assert _TOP_EXPONENT == 0                   # the alignment below relies on it
# floor(t * 2^9) = (high << (exponent + _OFFSET)) >> _OFFSET, `high` being the significand's
# top MIDPOINT_BITS bits. _OFFSET is a power of two, so for the exponents that matter,
# -_OFFSET .. 0, the left-shift amount is the exponent's low bits with one bit flipped: no
# adder in front of the shifter. Below -_OFFSET everything is shifted out, as _OFFSET is at
# least MIDPOINT_BITS.
_OFFSET_LOG = (MIDPOINT_BITS - 1).bit_length()
_OFFSET = 1 << _OFFSET_LOG
# Stage 1 shifts by whole steps of _COARSE_STEP bits, stage 2 by the rest; the bits that
# stage 1 puts below _KEEP are below the binary point whatever stage 2 does.
_COARSE_LOG = 2
_COARSE_STEP = 1 << _COARSE_LOG
_KEEP = _OFFSET - (_COARSE_STEP - 1)
# The comparison bits are counted in groups of this many (one LUT4 per bit of a group's
# count on every FPGA family), and the group counts added in the last stage.
_COUNT_GROUP = 4


def _sum(values):
    """The sum of ``values`` by a balanced tree of adders (each result as wide as it needs)."""
    if len(values) == 1:
        return values[0]
    half = len(values) // 2
    return _sum(values[:half]) + _sum(values[half:])


class CodebookRounder(wiring.Component):
    """Codes ``sign << N | index`` of unpacked scaled values; pipelined, one value per cycle.

    The magnitude is ``t = significand / 2^(sig_bits - 1) * 2^exponent``, the significand
    having its leading one in the top bit (or being zero, for ``t = 0``). ``index`` is the
    number of midpoints ``M_j = L_j + L_(j+1)`` (``j = 0 .. 2^N - 2``; levels ``L`` as
    :data:`golden.codebook.LEVEL_BITS`-bit integers in units of 2^-8, so ``M_j`` in units of
    2^-9) that are strictly below ``t``: the index of the nearest level, ties to the lower, for
    sorted levels. Every ``t >= 2`` takes the top index. The result equals
    :func:`golden.codebook.encode_codebook` bit for bit; unsorted run-time levels are counted
    the same way (no sorting is assumed).

    Parameters
    ----------
    n_bits : int
        Index width ``N``, 1..4 (2 to 16 levels).
    exponent_shape : signed shape
        Shape of the incoming exponent (e.g. ``signed(10)``).
    sig_bits : int
        Width of the incoming significand, in bits (leading one included), at least 1.
    codebook : Codebook or None
        The levels, fixed at elaboration (its index width must be ``n_bits``); the midpoints
        are then constants and each comparison is against a constant. None: the levels come
        with each value through :attr:`levels`.

    Attributes
    ----------
    en : In(1)
        Advance the pipeline by one stage; every register holds while it is low.
    sign : In(1)
        Sign of the value (sampled when ``en`` is high); a zero keeps its sign.
    exponent : In(exponent_shape)
        Exponent of the leading one of ``t``.
    significand : In(sig_bits)
        Significand of ``t``, leading one in the top bit; all zero for ``t = 0`` (the exponent
        is then ignored). Only the top bit tells a non-zero ``t`` from zero, for the clamp of
        ``t >= 2``.
    levels : In(levels_layout(n_bits))
        Only without ``codebook``: the ``2^N`` levels for this value, sampled with it (they
        may change every cycle).
    code : Out(n_bits + 1)
        ``sign << N | index``, :attr:`LATENCY` enabled cycles after the inputs.
    """

    #: Enabled cycles from the inputs to :attr:`code`, the same for every parameter set.
    #: Stage 1: coarse alignment of ``t`` (and the run-time midpoints); 2: fine alignment;
    #: 3: the comparisons; 4 and 5: the count.
    LATENCY = 5

    def __init__(self, n_bits, *, exponent_shape, sig_bits, codebook=None):
        self._n_bits = _check_n_bits(n_bits)
        try:
            exponent_shape = Shape.cast(exponent_shape)
        except TypeError:
            raise TypeError(f"Exponent shape must be a signed shape, not "
                            f"{exponent_shape!r}") from None
        if not exponent_shape.signed:
            raise TypeError(f"Exponent shape must be signed, not {exponent_shape!r}")
        if isinstance(sig_bits, bool) or not isinstance(sig_bits, int) or sig_bits < 1:
            raise ValueError(f"Significand width must be a positive integer, not {sig_bits!r}")
        if codebook is not None:
            if not isinstance(codebook, Codebook):
                raise TypeError(f"Codebook must be None or a Codebook, not {codebook!r}")
            if codebook.n_bits != self._n_bits:
                raise ValueError(f"Codebook {codebook.name} has {len(codebook.levels)} levels "
                                 f"({codebook.n_bits} index bits), not the "
                                 f"{1 << self._n_bits} of an index width of {self._n_bits}")
        self._sig_bits = sig_bits
        self._codebook = codebook
        members = {
            "en":          In(1),
            "sign":        In(1),
            "exponent":    In(exponent_shape),
            "significand": In(sig_bits),
        }
        if codebook is None:
            members["levels"] = In(levels_layout(self._n_bits))
        members["code"] = Out(self._n_bits + 1)
        super().__init__(members)

    @property
    def n_bits(self):
        """Index width ``N``."""
        return self._n_bits

    @property
    def codebook(self):
        """The fixed codebook, or None when the levels come through :attr:`levels`."""
        return self._codebook

    def elaborate(self, platform):
        m = Module()
        count = (1 << self._n_bits) - 1          # midpoints
        # The significand padded to at least MIDPOINT_BITS bits: its top MIDPOINT_BITS bits,
        # `high`, are then floor(t * 2^9) for an exponent of 0, and the rest only ever
        # fraction bits, so that they need no shifter, only an OR.
        width = max(self._sig_bits, MIDPOINT_BITS)
        padded = Cat(C(0, width - self._sig_bits), self.significand)
        high = padded[width - MIDPOINT_BITS:]
        low = padded[:width - MIDPOINT_BITS]
        # The exponent, sign-extended so that bit _OFFSET_LOG and those above it exist.
        exponent = Signal(signed(max(len(self.exponent), _OFFSET_LOG + 1)))
        m.d.comb += exponent.eq(self.exponent)

        # Stage 1: the coarse part of the alignment, the cases at either end, and the bits
        # already known to be lost (the sticky bit), all from bits of the exponent and
        # reductions of the significand (no carry chains).
        shift = Cat(exponent[:_OFFSET_LOG], ~exponent[_OFFSET_LOG])   # exponent + _OFFSET
        coarse = shift[_COARSE_LOG:]
        nonzero = self.significand[-1]
        # t >= 2 exceeds every midpoint (a zero's exponent is arbitrary).
        huge = ~exponent[-1] & (exponent != 0) & nonzero
        # t < 2^-_OFFSET, below the binary point of floor(t * 2^9) altogether.
        tiny = exponent[-1] & ~exponent[_OFFSET_LOG:].all()
        window = MIDPOINT_BITS + _OFFSET - _KEEP      # what stage 2 can still move into T
        s1_top = Signal(window)
        s1_lost = Signal()
        s1_low = Signal()                    # the significand's bits below `high`
        s1_fine = Signal(_COARSE_LOG)
        with m.If(self.en):
            m.d.sync += [
                s1_low.eq(low.any() if len(low) else 0),
                s1_fine.eq(shift[:_COARSE_LOG]),
            ]
            with m.If(huge):                 # all ones: T = 2^10 - 1 and sticky
                m.d.sync += [s1_top.eq(C(-1, window)), s1_lost.eq(1)]
            with m.Elif(tiny):
                m.d.sync += [s1_top.eq(0), s1_lost.eq(high.any())]
            with m.Else():
                with m.Switch(coarse):
                    for step in range(_OFFSET // _COARSE_STEP + 1):
                        with m.Case(step):
                            moved = Cat(C(0, step * _COARSE_STEP), high)
                            m.d.sync += [
                                s1_top.eq(moved[_KEEP:]),
                                s1_lost.eq(moved[:_KEEP].any()),
                            ]
                    with m.Default():        # only for t >= 2 or zero: either way unused
                        m.d.sync += [s1_top.eq(0), s1_lost.eq(0)]

        # The midpoints 2 * M_j, compared below with 2T + sticky: a threshold is below t
        # exactly when 2T + sticky > 2 * M_j, so one comparison decides it, ties included.
        if self._codebook is None:
            levels = self.levels
            s1_mid = [Signal(MIDPOINT_BITS, name=f"s1_mid{j}") for j in range(count)]
            with m.If(self.en):
                m.d.sync += [mid.eq(levels[j] + levels[j + 1]) for j, mid in enumerate(s1_mid)]
            s2_mid = [Signal(MIDPOINT_BITS, name=f"s2_mid{j}") for j in range(count)]
            with m.If(self.en):
                m.d.sync += [s2.eq(s1) for s2, s1 in zip(s2_mid, s1_mid)]
            thresholds = [Cat(C(0, 1), mid) for mid in s2_mid]
        else:
            codes = self._codebook.level_codes
            thresholds = [2 * (codes[j] + codes[j + 1]) for j in range(count)]

        # Stage 2: the fine shift, and 2T + sticky (all ones for t >= 2, above every
        # threshold, whose largest is 2 * (2 * (2^9 - 1))).
        moved = s1_top << s1_fine
        point = _OFFSET - _KEEP              # where the binary point of t * 2^9 now lies
        s2_x = Signal(MIDPOINT_BITS + 1)
        with m.If(self.en):
            m.d.sync += s2_x.eq(Cat(s1_lost | s1_low | moved[:point].any(),
                                    moved[point:point + MIDPOINT_BITS]))

        # Stage 3: the comparisons, one per midpoint.
        s3_above = Signal(count)
        with m.If(self.en):
            m.d.sync += s3_above.eq(Cat(s2_x > threshold for threshold in thresholds))

        # Stages 4 and 5: their count (not a thermometer decode: levels loaded at run time
        # need not be sorted), by groups and then the groups' sum.
        groups = [[s3_above[i] for i in range(start, min(start + _COUNT_GROUP, count))]
                  for start in range(0, count, _COUNT_GROUP)]
        s4_counts = [Signal(range(len(group) + 1), name=f"s4_count{g}")
                     for g, group in enumerate(groups)]
        with m.If(self.en):
            m.d.sync += [c.eq(_sum(group)) for c, group in zip(s4_counts, groups)]

        sign = delayed(m, self.sign, self.LATENCY - 1, en=self.en, name="sign")
        with m.If(self.en):
            m.d.sync += self.code.eq(Cat(_sum(s4_counts)[:self._n_bits], sign))
        return m
