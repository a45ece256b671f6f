"""The 4-bit shift MAC (SPEC section 6): INT4 x mantissa-less FP4 dot products without
multipliers, the hardware twin of :func:`golden.mac.shift_mac`.

A unit takes ``lanes`` operand pairs a beat. The stages follow the golden model's steps:

1. **products**: FP4 code ``g`` (sign, exponent ``e``) selects a left shift of the INT4 code
   ``a``, ``log2(radix) * (e - 1)`` places, negated for a negative ``g``, zero for
   ``e = 0``;
2. **adder tree**: an exact sum of the beat's products, one register level per tree level,
   moved up one more place in the even phase (``phase = 0``): an integer in units of
   ``2^product_lsb``, the same as the golden model's sum of ``products``;
3. **accumulation**: an exact integer over the dot product's beats (``acc="exact"``), or
   exact chunk sums of ``chunk`` products added into a float accumulator held as an integer
   in units of ``2^product_lsb`` and rounded to the accumulator format's grid by
   :class:`GridRounder` after every chunk (a loop of two stages: sum, then rounding; two
   chunk ends on consecutive beats hold the input for one cycle, so chunks and dot products
   of two beats or more run at one beat per cycle);
4. **output rounding**: normalisation (leading-one detection and a shift) and a
   :class:`~hdl.float.FloatRounder` to ``out_fmt``.

Stochastic rounding takes two draws per unit per *event* (the end of a chunk, or of a dot
product with the exact accumulator) from one :class:`~hdl.rng.StochasticDraws` generator, in
the order documented in :mod:`golden.mac`; it restarts from the seed at every frame.

:class:`ShiftMACUnit` is one unit with stream output; :class:`ShiftMACArray` is ``units``
units sharing the ``g`` operand and the control, writing result rows into a memory bank
that a host reads back through a stream. :class:`MultiplierMACUnit` and
:class:`MultiplierMACArray` compute the same with ``*`` on the decoded FP4 operand, as the
baseline that shows what the shifts save.
"""

from amaranth.hdl import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden.mac import (fp4_format, product_lsb, max_shift, check_accumulator, check_chunk,
                        check_output_format, min_accumulator_bits, chunk_sum_bits,
                        accumulator_bits)
from golden.rng import check_sr_bits
from .float import RoundingMode, FloatRounder
from .pipeline import delayed
from .rng import StochasticDraws, SeedMixer


__all__ = ["mac_config_layout", "AdderTree", "GridRounder", "ShiftMACUnit",
           "MultiplierMACUnit", "ShiftMACArray", "MultiplierMACArray"]


#: Run-time configuration of a frame: ``rounding`` (accumulator and output), ``phase`` (0, or
#: 1 for the odd phase: every FP4 level halved) and the 32-bit stochastic-rounding ``seed``.
mac_config_layout = data.StructLayout({
    "rounding": RoundingMode,
    "phase":    1,
    "seed":     32,
})


def _check_lanes(lanes):
    if isinstance(lanes, bool) or not isinstance(lanes, int) or not 1 <= lanes <= 64:
        raise ValueError(f"Lane count must be an integer between 1 and 64, not {lanes!r}")
    return lanes


def _check_units(units):
    if isinstance(units, bool) or not isinstance(units, int) or not 1 <= units <= 64:
        raise ValueError(f"Unit count must be an integer between 1 and 64, not {units!r}")
    return units


def _tree_levels(count):
    return max(count - 1, 0).bit_length()


def adder_tree(m, values, *, en, name):
    """The sum of ``values`` (signed), one register level per tree level (registers load
    while ``en`` is high); returns ``(sum, levels)``."""
    values = list(values)
    level = 0
    while len(values) > 1:
        pairs = []
        for index in range(0, len(values), 2):
            pair = values[index:index + 2]
            total = pair[0] + pair[1] if len(pair) == 2 else pair[0]
            register = Signal(signed(max(v.shape().width for v in pair) + len(pair) - 1),
                              name=f"{name}_l{level}_{index // 2}")
            with m.If(en):
                m.d.sync += register.eq(total)
            pairs.append(register)
        values = pairs
        level += 1
    return values[0], level


class AdderTree(wiring.Component):
    """Exact sum of ``count`` signed values, pipelined, one register level per tree level.

    Parameters
    ----------
    count : int
        Values per sum (1..4096).
    width : int
        Width of each value, in bits (signed).

    Attributes
    ----------
    en : In(1)
        Advance the pipeline by one stage.
    i : In(ArrayLayout(signed(width), count))
        The values.
    o : Out(signed(width + ceil(log2(count))))
        Their sum, :attr:`latency` advances later (combinational for ``count = 1``).
    """

    def __init__(self, *, count, width):
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 4096:
            raise ValueError(f"Value count must be an integer between 1 and 4096, not {count!r}")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"Value width must be a positive integer, not {width!r}")
        self._count = count
        self.latency = _tree_levels(count)
        super().__init__({
            "en": In(1),
            "i":  In(data.ArrayLayout(signed(width), count)),
            "o":  Out(signed(width + self.latency)),
        })

    def elaborate(self, platform):
        m = Module()
        total, _ = adder_tree(m, [self.i[k] for k in range(self._count)], en=self.en,
                              name="sum")
        m.d.comb += self.o.eq(total)
        return m


def _one_hot_index(one_hot, width):
    """The index of the set bit of a one-hot value (binary encoder)."""
    bits = []
    for bit in range(max(width - 1, 0).bit_length()):
        bits.append(Cat(one_hot[j] for j in range(width) if (j >> bit) & 1).any())
    return Cat(*bits) if bits else C(0, 1)


class GridRounder(wiring.Component):
    """Rounds a magnitude to the grid of a float format, saturating; combinational.

    The chunk accumulator's rounding: ``magnitude`` counts units of ``2^lsb``; ``rounded``
    is the magnitude of ``encode_float(magnitude * 2^lsb, fmt, mode, saturate=True)`` in
    the same units (exact when every value of ``fmt`` in range is a multiple of ``2^lsb``,
    which :func:`golden.mac.check_accumulator` ensures for the MAC's accumulators; the
    rounding modes act on magnitudes, so the sign stays outside).

    The bits under the format's quantum form a mask ``M`` (ones under the kept LSB), found
    from the leading one without an encoder: bit ``i`` is under the quantum iff the value has
    a one ``man_bits + 1`` or more places above it (or ``i`` lies under the quantum of the
    format's lowest binade). The rounding adds an increment under the kept LSB and clears
    the masked bits: nearest even ``M >> 1`` plus the kept LSB (as the carry in), nearest
    away the top bit of ``M``, stochastic the draw placed right under the kept LSB. A
    magnitude above the largest finite value rounds to it (rounding is monotonic and that
    value lies on the grid), so saturation needs no comparison after the addition.

    Parameters
    ----------
    fmt : str or FloatFormat
        The grid's format (radix 2).
    width : int
        Width of the signed accumulator, in bits: ``magnitude`` and ``rounded`` have
        ``width - 1`` bits, which must hold the largest finite value.
    lsb : int
        Exponent of ``magnitude``'s unit.
    sr_bits : int
        Width of a stochastic-rounding draw (1..24).

    Attributes
    ----------
    magnitude : In(width - 1)
    mode : In(RoundingMode)
    draw : In(sr_bits)
    rounded : Out(width - 1)
    """

    def __init__(self, fmt, *, width, lsb, sr_bits=8):
        self._fmt = check_output_format(fmt)
        if isinstance(width, bool) or not isinstance(width, int) or width < 2:
            raise ValueError(f"Width must be an integer of at least 2, not {width!r}")
        self._width = width
        self._lsb = lsb
        self._sr_bits = check_sr_bits(sr_bits)
        largest = self._fmt.max_finite * 2.0 ** -lsb
        if largest != int(largest):
            raise ValueError(f"The largest value of {self._fmt.name} is not a multiple of "
                             f"2^{lsb}")
        self._largest = int(largest)
        if self._largest >= 1 << (width - 1):
            raise ValueError(f"Width {width} cannot hold the largest value of {self._fmt.name} "
                             f"in units of 2^{lsb}")
        super().__init__({
            "magnitude": In(width - 1),
            "mode":      In(RoundingMode),
            "draw":      In(self._sr_bits),
            "rounded":   Out(width - 1),
        })

    def elaborate(self, platform):
        m = Module()
        fmt, R = self._fmt, self._sr_bits
        width = self._width - 1
        man = fmt.man_bits
        magnitude = self.magnitude

        # above[j]: the magnitude has a one at bit j or higher (each an OR tree, not a chain)
        above = Signal(width + 1)
        for j in range(width):
            m.d.comb += above[j].eq(magnitude[j:].any())

        def has_one_from(j):
            return above[min(max(j, 0), width)] if j < width else C(0, 1)

        # The lowest binade's quantum: bits under it always round; without subnormals a
        # value under the normal range rounds on the grid of 2^emin itself.
        normal_lead = fmt.emin - self._lsb             # lead bit of the smallest normal
        floor_shift = normal_lead - man if fmt.subnormals else normal_lead
        normal = has_one_from(normal_lead)
        mask = Signal(width)
        for i in range(width):
            in_normal = has_one_from(i + man + 1) | C(i < normal_lead - man, 1)
            m.d.comb += mask[i].eq(Mux(normal, in_normal, C(i < floor_shift, 1)))
        one_hot = Signal(width + 1)                    # 2^shift: the kept LSB's weight
        m.d.comb += one_hot.eq(~Cat(mask, C(0, 1)) & Cat(C(1, 1), mask))
        shift = Signal(range(width + 1))
        m.d.comb += shift.eq(_one_hot_index(one_hot, width + 1))

        increment = Signal(width + 1)
        carry = Signal()
        with m.Switch(self.mode):
            with m.Case(RoundingMode.NEAREST_EVEN):
                m.d.comb += [
                    increment.eq(mask >> 1),
                    carry.eq((magnitude & one_hot[:width]).any() & mask[0]),
                ]
            with m.Case(RoundingMode.NEAREST_AWAY):
                m.d.comb += increment.eq(mask & ~(mask >> 1))
            with m.Case(RoundingMode.TOWARD_ZERO):
                m.d.comb += increment.eq(0)
            with m.Case(RoundingMode.STOCHASTIC):
                m.d.comb += increment.eq((self.draw << shift) >> R)
        rounded = Signal(width + 1)
        m.d.comb += rounded.eq((magnitude + increment + carry) & ~Cat(mask, C(0, 1)))
        m.d.comb += self.rounded.eq(Mux(magnitude > self._largest, self._largest, rounded))
        return m


def _leading_one(m, value, width, *, name):
    """The index of the leading one of an unsigned ``value`` (0 for zero), as a tree of
    ``log2(width)`` levels: the upper half's index when it has a one, else the lower's."""
    def lead_of(bits):
        if len(bits) == 1:
            return C(0, 1), bits[0]
        half = 1 << ((len(bits) - 1).bit_length() - 1)        # a power of two below len
        low_index, low_any = lead_of(bits[:half])
        high_index, high_any = lead_of(bits[half:])
        half_bits = half.bit_length() - 1
        high = Cat(high_index, C(0, half_bits))[:half_bits]    # below half: just a top bit
        low = Cat(low_index, C(0, half_bits))[:half_bits]
        return Mux(high_any, Cat(high, C(1, 1)), Cat(low, C(0, 1))), low_any | high_any

    index, _ = lead_of([value[j] for j in range(width)])
    lead = Signal(range(max(width, 2)), name=name)
    m.d.comb += lead.eq(index)
    return lead


def _running_sum(m, addend, *, restart, valid, en, width, name):
    """The sum of ``addend`` over the valid beats since the last one with ``restart``
    (combinational, this beat included); its register ``name`` loads on ``en & valid``."""
    held = Signal(signed(width), name=name)
    total = Signal(signed(width), name=f"{name}_total")
    m.d.comb += total.eq(Mux(restart, 0, held) + addend)
    with m.If(en & valid):
        m.d.sync += held.eq(total)
    return total


class _MACCore(Elaboratable):
    """The control and ``units`` datapaths shared by the units and arrays.

    Inputs (plain signals set by the owner): ``en`` (the stages from the accumulator on
    advance), ``valid``, ``a`` (a list of ``units`` ArrayLayout(4, lanes) values), ``g``,
    ``last``, ``end``, ``cfg``. ``ready``: the beat offered is taken when ``valid`` and
    ``ready`` are high (``en``, except while the float accumulator's loop is busy). Outputs,
    :attr:`latency` advances after the beat that ends a dot product: ``out_valid``,
    ``out_values`` (a list of codes), ``out_end``, ``out_overflow``.
    """

    def __init__(self, *, units, lanes, fmt, acc, chunk, out_fmt, max_length, sr_bits,
                 saturate, multiply):
        self.units, self.lanes = units, lanes
        self.fmt, self.acc, self.chunk, self.out_fmt = fmt, acc, chunk, out_fmt
        self.sr_bits, self.saturate, self.multiply = sr_bits, saturate, multiply
        self.lsb = product_lsb(fmt)
        # products before the phase's shift, which is applied once to each tree's sum
        self.product_width = 5 + max_shift(fmt) - 1
        self.tree_levels = _tree_levels(lanes)
        if acc == "exact":
            self.max_beats = -(-max_length // lanes)
            self.sum_width = min_accumulator_bits(self.max_beats * lanes, fmt)
            # the seed hash (4 stages) must be ready where the generator sits
            self.tree_stages = max(self.tree_levels, SeedMixer.LATENCY - 1)
            self.generator_stage = 1 + self.tree_stages
            accumulate = 1                   # the accumulator and result register
        else:
            self.chunk_beats = chunk // lanes
            self.chunk_width = chunk_sum_bits(chunk, fmt)
            self.sum_width = accumulator_bits(acc, fmt, chunk=chunk)
            self.tree_stages = max(self.tree_levels, SeedMixer.LATENCY - 2)
            self.generator_stage = 2 + self.tree_stages
            accumulate = 2                   # the loop's two stages
        # products, tree (+ chunk sums), accumulation, normalisation (3), rounder
        self.latency = self.generator_stage + accumulate + 3 + FloatRounder.LATENCY

        self.en = Signal()
        self.ready = Signal()
        self.valid = Signal()
        self.a = [Signal(data.ArrayLayout(4, lanes), name=f"a{p}") for p in range(units)]
        self.g = Signal(data.ArrayLayout(4, lanes))
        self.last = Signal()
        self.end = Signal()
        self.cfg = Signal(mac_config_layout)
        self.out_valid = Signal()
        self.out_values = [Signal(out_fmt.bits, name=f"out_value{p}") for p in range(units)]
        self.out_end = Signal()
        self.out_overflow = Signal()

    def _product(self, m, a, g):
        """The product of INT4 code ``a`` and FP4 code ``g`` in units of ``2^(lsb + 1)``:
        ``±a << log2(radix) * (e - 1)``; the phase's one further place is added to the sum."""
        rlog = 2 if self.fmt.radix == 4 else 1
        exponent = g[:3]
        negative = g[3]
        steps = Signal(3)                        # e - 1: the shift in units of log2(radix)
        m.d.comb += steps.eq(exponent - 1)
        shift = steps * rlog if rlog > 1 else steps
        value = a.as_signed()
        if self.multiply:
            decoded = Signal(signed(max_shift(self.fmt) + 1))
            m.d.comb += decoded.eq(Mux(exponent == 0, 0,
                                       Mux(negative, -(C(1, 1) << shift), C(1, 1) << shift)))
            return value * decoded
        signed_a = Signal(signed(5))
        m.d.comb += signed_a.eq(Mux(negative, -value, value))
        return Mux(exponent == 0, 0, signed_a << shift)

    def elaborate(self, platform):
        m = Module()
        units, lanes = self.units, self.lanes
        exact = self.acc == "exact"
        # `en` moves the accumulator and everything after it; `up` the stages before it,
        # which hold while the float accumulator's loop is busy with the previous chunk.
        en = self.en
        up = self.ready
        hazard = Signal()
        m.d.comb += up.eq(en & ~hazard)
        take = up & self.valid

        # Frame and dot-product bookkeeping at the input.
        in_frame = Signal()
        frame_cfg = Signal(mac_config_layout)
        beat_cfg = Signal(mac_config_layout)
        m.d.comb += beat_cfg.eq(Mux(in_frame, frame_cfg, self.cfg))
        fresh = Signal(init=1)                   # no event yet in this frame
        first = Signal(init=1)                   # the next beat starts a dot product
        frame_end = self.last & self.end
        if exact:
            beats = Signal(range(self.max_beats + 2))
            too_long = Signal()                  # the dot product so far exceeds max_length
            beat_over = beats >= self.max_beats
            event = self.last
            chunk_start = first
        else:
            chunk_beat = Signal(range(max(self.chunk_beats, 2)))
            chunk_end = chunk_beat == self.chunk_beats - 1
            event = self.last | chunk_end
            chunk_start = chunk_beat == 0
        with m.If(take):
            m.d.sync += in_frame.eq(~frame_end)
            with m.If(~in_frame):
                m.d.sync += frame_cfg.eq(self.cfg)
            m.d.sync += first.eq(self.last)
            with m.If(frame_end):
                m.d.sync += fresh.eq(1)
            with m.Elif(event):
                m.d.sync += fresh.eq(0)
            if exact:
                m.d.sync += beats.eq(Mux(self.last, 0, Mux(beat_over, beats, beats + 1)))
                m.d.sync += too_long.eq(Mux(self.last, 0, too_long | beat_over))
            else:
                m.d.sync += chunk_beat.eq(Mux(event, 0, chunk_beat + 1))

        flags_layout = data.StructLayout({
            "valid": 1, "last": 1, "end": 1, "first": 1, "chunk_start": 1, "event": 1,
            "restart": 1, "overflow": 1, "phase": 1, "mode": RoundingMode,
        })
        flags = Signal(flags_layout)
        m.d.comb += [
            flags.valid.eq(self.valid),
            flags.last.eq(self.last),
            flags.end.eq(frame_end),
            flags.first.eq(first),
            flags.chunk_start.eq(chunk_start),
            flags.event.eq(event),
            flags.restart.eq(fresh & event),
            flags.mode.eq(beat_cfg.rounding),
            flags.phase.eq(beat_cfg.phase),
        ]
        if exact:
            m.d.comb += flags.overflow.eq(too_long | beat_over)

        m.submodules.mixer = mixer = SeedMixer()
        m.d.comb += [mixer.en.eq(up), mixer.seed.eq(beat_cfg.seed)]
        mixed = delayed(m, mixer.mixed, self.generator_stage - SeedMixer.LATENCY, en=up,
                        name="mixed")

        # Stage 1: products. Stages 2..: the adder trees, padded to tree_stages.
        p1_flags = Signal(flags_layout)
        with m.If(up):
            m.d.sync += p1_flags.eq(flags)
        sums = []
        for p in range(units):
            products = []
            for lane in range(lanes):
                product = Signal(signed(self.product_width), name=f"u{p}_p{lane}")
                with m.If(up):
                    m.d.sync += product.eq(self._product(m, self.a[p][lane], self.g[lane]))
                products.append(product)
            total, levels = adder_tree(m, products, en=up, name=f"u{p}_tree")
            sums.append(delayed(m, total, self.tree_stages - levels, en=up, name=f"u{p}_pad"))
        t_flags = delayed(m, p1_flags, self.tree_stages, en=up, name="t_flags")
        # the even phase's levels are twice the odd phase's: one shift per sum, not per lane
        for p in range(units):
            phased = Signal(signed(sums[p].shape().width + 1), name=f"u{p}_sum")
            m.d.comb += phased.eq(Mux(t_flags.phase, sums[p], sums[p] << 1))
            sums[p] = phased

        # The generator: two draws per unit per event.
        m.submodules.draws = draws = StochasticDraws(lanes=2 * units, sr_bits=self.sr_bits)
        m.d.comb += draws.seed.eq(mixed)

        # The accumulation's results as sign and magnitude (or two's complement: exact).
        results = [Signal(self.sum_width, name=f"u{p}_result") for p in range(units)]
        result_signs = [Signal(name=f"u{p}_result_sign") for p in range(units)]
        out_draws = [Signal(self.sr_bits, name=f"u{p}_out_draw") for p in range(units)]
        r_flags = Signal(flags_layout)
        if exact:
            m.d.comb += [
                draws.restart.eq(t_flags.restart),
                draws.advance.eq(up & t_flags.valid & t_flags.event),
            ]
            for p in range(units):
                total = _running_sum(m, sums[p], restart=t_flags.first, valid=t_flags.valid,
                                     en=en, width=self.sum_width, name=f"u{p}_acc")
                with m.If(en):
                    m.d.sync += [
                        results[p].eq(total),
                        result_signs[p].eq(total < 0),
                        out_draws[p].eq(draws.draws[2 * p + 1]),
                    ]
            with m.If(en):
                m.d.sync += [r_flags.eq(t_flags), r_flags.valid.eq(t_flags.valid & t_flags.last)]
        else:
            self._chunk_accumulators(m, up, en, hazard, t_flags, sums, draws, results,
                                     result_signs, out_draws, r_flags, flags_layout)

        # Normalisation: the magnitude; its leading one; the significand shifted up.
        width = self.sum_width
        exponent_shape = signed(max(abs(self.lsb), abs(self.lsb + width)).bit_length() + 2)
        n_flags = delayed(m, r_flags, 3, en=en, name="n_flags")
        for p in range(units):
            n0_sign = Signal(name=f"u{p}_n0_sign")
            n0_magnitude = Signal(width, name=f"u{p}_n0_magnitude")
            n0_draw = Signal(self.sr_bits, name=f"u{p}_n0_draw")
            with m.If(en):
                if exact:
                    m.d.sync += n0_magnitude.eq(Mux(result_signs[p], -results[p], results[p]))
                else:
                    m.d.sync += n0_magnitude.eq(results[p])
                m.d.sync += [n0_sign.eq(result_signs[p]), n0_draw.eq(out_draws[p])]
            lead = _leading_one(m, n0_magnitude, width, name=f"u{p}_lead")
            n1_sign = Signal(name=f"u{p}_n1_sign")
            n1_magnitude = Signal(width, name=f"u{p}_n1_magnitude")
            n1_lead = Signal.like(lead, name=f"u{p}_n1_lead")
            n1_zeros = Signal(range(max(width, 2)), name=f"u{p}_n1_zeros")
            n1_draw = Signal(self.sr_bits, name=f"u{p}_n1_draw")
            n2_sign = Signal(name=f"u{p}_n2_sign")
            n2_exponent = Signal(exponent_shape, name=f"u{p}_n2_exponent")
            n2_significand = Signal(width, name=f"u{p}_n2_significand")
            n2_draw = Signal(self.sr_bits, name=f"u{p}_n2_draw")
            with m.If(en):
                m.d.sync += [
                    n1_sign.eq(n0_sign), n1_magnitude.eq(n0_magnitude), n1_lead.eq(lead),
                    n1_zeros.eq(width - 1 - lead),
                    n1_draw.eq(n0_draw),
                    n2_sign.eq(n1_sign), n2_draw.eq(n1_draw),
                    n2_exponent.eq(n1_lead + self.lsb),
                    n2_significand.eq(n1_magnitude << n1_zeros),
                ]
            m.submodules[f"u{p}_rounder"] = rounder = FloatRounder(
                self.out_fmt, exponent_shape=exponent_shape, sig_bits=width,
                sr_bits=self.sr_bits, saturate=self.saturate)
            m.d.comb += [
                rounder.en.eq(en),
                rounder.sign.eq(n2_sign),
                rounder.exponent.eq(n2_exponent),
                rounder.significand.eq(n2_significand),
                rounder.inf.eq(0),
                rounder.nan.eq(0),
                rounder.mode.eq(n_flags.mode),
                rounder.draw.eq(n2_draw),
                self.out_values[p].eq(rounder.code),
            ]
        o_flags = delayed(m, n_flags, FloatRounder.LATENCY, en=en, name="o_flags")
        m.d.comb += [
            self.out_valid.eq(o_flags.valid),
            self.out_end.eq(o_flags.end),
            self.out_overflow.eq(o_flags.overflow),
        ]
        return m

    def _chunk_accumulators(self, m, up, en, hazard, t_flags, sums, draws, results,
                            result_signs, out_draws, r_flags, flags_layout):
        """Chunk sums, then the float accumulators: a loop of two stages per event.

        ``c``: the chunk sum of an event, and the generator's draws. ``l1``: the sum of
        accumulator and chunk sum as sign and magnitude (one addition with the accumulator's
        sign folded into a conditional complement, then the absolute value). The accumulator
        (sign and magnitude) takes the rounded magnitude at the end of ``l1``. An event in
        ``c`` while ``l1`` holds one would read a stale accumulator: ``hazard`` holds it (and
        everything before it) for that cycle, so dot products and chunks of two beats or
        more run at one beat per cycle.
        """
        c_flags = Signal(flags_layout)
        with m.If(up):
            m.d.sync += [c_flags.eq(t_flags), c_flags.valid.eq(t_flags.valid & t_flags.event)]
        l1_flags = Signal(flags_layout)
        m.d.comb += hazard.eq(c_flags.valid & l1_flags.valid)
        with m.If(en):
            m.d.sync += l1_flags.eq(c_flags)
            with m.If(hazard):
                m.d.sync += l1_flags.valid.eq(0)
        m.d.comb += [
            draws.restart.eq(c_flags.restart),
            draws.advance.eq(up & c_flags.valid),
        ]
        acc_fresh = Signal(init=1)               # the next event starts a dot product
        with m.If(en & l1_flags.valid):
            m.d.sync += acc_fresh.eq(l1_flags.last)
        width = self.sum_width
        for p in range(self.units):
            chunk_total = _running_sum(m, sums[p], restart=t_flags.chunk_start,
                                       valid=t_flags.valid, en=up, width=self.chunk_width,
                                       name=f"u{p}_chunk")
            chunk_sum = Signal(signed(self.chunk_width), name=f"u{p}_chunk_sum")
            with m.If(up):
                m.d.sync += chunk_sum.eq(chunk_total)

            acc_sign = Signal(name=f"u{p}_acc_sign")
            acc_magnitude = Signal(width - 1, name=f"u{p}_acc_magnitude")
            # (-1)^sign * magnitude as the complement of the magnitude plus a carry in
            flip = Signal(name=f"u{p}_flip")
            operand = Signal(width, name=f"u{p}_operand")
            total = Signal(signed(width), name=f"u{p}_loop_total")
            m.d.comb += [
                flip.eq(acc_sign & ~acc_fresh),
                operand.eq(Mux(acc_fresh, 0, acc_magnitude) ^ flip.replicate(width)),
                total.eq(chunk_sum + operand.as_signed() + flip),
            ]
            l1_sign = Signal(name=f"u{p}_l1_sign")
            l1_magnitude = Signal(width - 1, name=f"u{p}_l1_magnitude")
            l1_acc_draw = Signal(self.sr_bits, name=f"u{p}_l1_acc_draw")
            l1_out_draw = Signal(self.sr_bits, name=f"u{p}_l1_out_draw")
            with m.If(en):
                m.d.sync += [
                    l1_sign.eq(total < 0),
                    l1_magnitude.eq(Mux(total < 0, -total, total)),
                    l1_acc_draw.eq(draws.draws[2 * p]),
                    l1_out_draw.eq(draws.draws[2 * p + 1]),
                ]
            m.submodules[f"u{p}_grid"] = grid = GridRounder(
                self.acc, width=width, lsb=self.lsb, sr_bits=self.sr_bits)
            m.d.comb += [
                grid.magnitude.eq(l1_magnitude),
                grid.mode.eq(l1_flags.mode),
                grid.draw.eq(l1_acc_draw),
            ]
            # a sum that rounds to zero is +0, as the golden model's integer accumulator
            sign = l1_sign & (grid.rounded != 0)
            with m.If(en):
                with m.If(l1_flags.valid):
                    m.d.sync += [acc_sign.eq(sign), acc_magnitude.eq(grid.rounded)]
                m.d.sync += [
                    results[p].eq(grid.rounded),
                    result_signs[p].eq(sign),
                    out_draws[p].eq(l1_out_draw),
                ]
        with m.If(en):
            m.d.sync += [r_flags.eq(l1_flags), r_flags.valid.eq(l1_flags.valid & l1_flags.last)]


class _MACParameters:
    """Parameter checks shared by the units and arrays."""

    def _check_parameters(self, *, lanes, fmt, acc, chunk, out_fmt, max_length, sr_bits,
                          saturate):
        self._lanes = _check_lanes(lanes)
        self._fmt = fp4_format(fmt)
        self._acc = check_accumulator(acc, self._fmt)
        self._chunk = check_chunk(chunk, self._acc)
        if self._chunk is not None and self._chunk % self._lanes:
            raise ValueError(f"Chunk must be a multiple of the lane count {self._lanes}, "
                             f"not {self._chunk}")
        self._out_fmt = check_output_format(out_fmt)
        if self._acc == "exact":
            if isinstance(max_length, bool) or not isinstance(max_length, int) \
                    or not 1 <= max_length <= 1 << 24:
                raise ValueError(f"Maximum length must be an integer between 1 and 2**24, "
                                 f"not {max_length!r}")
        elif max_length is not None:
            raise ValueError(f"Maximum length must be None with a float accumulator (it never "
                             f"overflows), not {max_length!r}")
        self._max_length = max_length
        self._sr_bits = check_sr_bits(sr_bits)
        if not isinstance(saturate, bool):
            raise TypeError(f"Saturate must be a bool, not {saturate!r}")
        self._saturate = saturate

    def _core(self, units):
        return _MACCore(units=units, lanes=self._lanes, fmt=self._fmt, acc=self._acc,
                        chunk=self._chunk, out_fmt=self._out_fmt, max_length=self._max_length,
                        sr_bits=self._sr_bits, saturate=self._saturate,
                        multiply=self._MULTIPLY)

    @property
    def latency(self):
        """Cycles from the beat that ends a dot product to its result, without stalls."""
        core = self._core(1)
        core._MustUse__silence = True        # built only to read its stage counts
        return core.latency


def _default_max_length(acc, max_length):
    """``max_length``, or its default when not given: 4096 products (exact), None (float)."""
    if max_length is ...:
        return 4096 if acc == "exact" else None
    return max_length


class ShiftMACUnit(_MACParameters, wiring.Component):
    """Dot products of INT4 and FP4 codes with shifts, an exact adder tree, accumulation and
    rounding: :func:`golden.mac.shift_mac` with ``units=1``; pipelined, one beat per cycle.

    Parameters
    ----------
    lanes : int
        Operand pairs per beat, ``L`` (1..64).
    fmt : str
        FP4 operand format, ``"fp4_r4"`` or ``"fp4_r2"``.
    acc : str or FloatFormat
        ``"exact"`` or a chunk accumulator format (``"fp16"``, ``"dlfloat16"``, ...).
    chunk : int or None
        Products per chunk, a multiple of ``lanes`` (float accumulators only).
    out_fmt : str or FloatFormat
        Format of the results (radix 2).
    max_length : int or None
        Exact accumulator only: the longest dot product, in products (default 4096), which
        sizes the accumulator (:func:`golden.mac.min_accumulator_bits`); longer ones are
        flagged with ``overflow``. None with a float accumulator.
    sr_bits : int
        Bits of a stochastic-rounding draw (1..24).
    saturate : bool
        Output overflow clamps to ±max finite (otherwise Inf, or NaN for ``fn`` formats).

    Attributes
    ----------
    i : In(stream.Signature(...))
        Beats: ``a`` (``lanes`` INT4 codes, two's complement), ``g`` (``lanes`` FP4 codes),
        ``last`` (the beat ends a dot product), ``end`` (read with ``last``: the dot product
        ends a frame).
    cfg : In(mac_config_layout)
        ``rounding``, ``phase`` and ``seed``, sampled with the first beat of each frame; the
        stochastic-rounding generator restarts from the seed with every frame.
    o : Out(stream.Signature(...))
        One result per dot product: ``value`` (an ``out_fmt`` code), ``end`` (the frame's last
        result) and, with the exact accumulator, ``overflow`` (the dot product was longer
        than ``max_length``; ``value`` is then meaningless).
    """

    _MULTIPLY = False

    def __init__(self, *, lanes, fmt="fp4_r4", acc="exact", chunk=None, out_fmt="fp16",
                 max_length=..., sr_bits=8, saturate=True):
        self._check_parameters(lanes=lanes, fmt=fmt, acc=acc, chunk=chunk, out_fmt=out_fmt,
                               max_length=_default_max_length(acc, max_length),
                               sr_bits=sr_bits, saturate=saturate)
        out_fields = {"value": self._out_fmt.bits, "end": 1}
        if self._acc == "exact":
            out_fields["overflow"] = 1
        super().__init__({
            "i":   In(stream.Signature(data.StructLayout({
                "a":    data.ArrayLayout(4, self._lanes),
                "g":    data.ArrayLayout(4, self._lanes),
                "last": 1,
                "end":  1,
            }))),
            "cfg": In(mac_config_layout),
            "o":   Out(stream.Signature(data.StructLayout(out_fields))),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self._core(1)
        # every stage advances while the output register is empty or being read
        m.d.comb += [
            core.en.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(core.ready),
            core.valid.eq(self.i.valid),
            core.a[0].eq(self.i.payload.a),
            core.g.eq(self.i.payload.g),
            core.last.eq(self.i.payload.last),
            core.end.eq(self.i.payload.end),
            core.cfg.eq(self.cfg),
            self.o.valid.eq(core.out_valid),
            self.o.payload.value.eq(core.out_values[0]),
            self.o.payload.end.eq(core.out_end),
        ]
        if self._acc == "exact":
            m.d.comb += self.o.payload.overflow.eq(core.out_overflow)
        return m


class MultiplierMACUnit(ShiftMACUnit):
    """:class:`ShiftMACUnit` with every product computed by ``*`` on the decoded FP4 operand
    (``±2^shift`` as a signed integer): the baseline that shows what the shifts save. Same
    parameters, ports, latency and results."""

    _MULTIPLY = True


class ShiftMACArray(_MACParameters, wiring.Component):
    """``units`` :class:`ShiftMACUnit` datapaths in lock step sharing one broadcast FP4
    operand (a GEMM tile: one ``g`` vector against ``units`` rows of ``a``), writing result
    rows into a memory bank that a host reads back through a stream.

    The array never holds its input off (``i.ready`` is high) except with a float accumulator
    when chunk ends come on consecutive beats (chunks or dot products of one beat), one cycle
    each; it never waits for the host. A result row is written
    :attr:`latency` cycles after the beat that ends its dot product, at row ``rows mod depth``,
    and :attr:`rows` counts the rows written since reset; the host reads rows by address.
    Results are :func:`golden.mac.shift_mac` with ``units=units``.

    Parameters
    ----------
    units : int
        Units, ``P`` (1..64).
    depth : int
        Rows of the result memory (a power of two, 2..65536).
    lanes, fmt, acc, chunk, out_fmt, max_length, sr_bits, saturate
        As :class:`ShiftMACUnit`.

    Attributes
    ----------
    i : In(stream.Signature(...))
        Beats: ``a`` (``units`` rows of ``lanes`` INT4 codes), ``g`` (``lanes`` FP4 codes,
        shared), ``last``, ``end`` as :class:`ShiftMACUnit`.
    cfg : In(mac_config_layout)
        As :class:`ShiftMACUnit`.
    read : In(stream.Signature(range(depth)))
        Addresses of rows to read.
    o : Out(stream.Signature(...))
        The rows read, in order: ``values`` (``units`` ``out_fmt`` codes), ``end``, and with
        the exact accumulator ``overflow`` (any unit's dot product was too long).
    rows : Out(32)
        Rows written since reset (wraps at 2^32).
    """

    _MULTIPLY = False

    def __init__(self, *, units, lanes, depth=256, fmt="fp4_r4", acc="exact", chunk=None,
                 out_fmt="fp16", max_length=..., sr_bits=8, saturate=True):
        self._units = _check_units(units)
        if isinstance(depth, bool) or not isinstance(depth, int) or not 2 <= depth <= 65536 \
                or depth & (depth - 1):
            raise ValueError(f"Depth must be a power of two between 2 and 65536, not {depth!r}")
        self._depth = depth
        self._check_parameters(lanes=lanes, fmt=fmt, acc=acc, chunk=chunk, out_fmt=out_fmt,
                               max_length=_default_max_length(acc, max_length),
                               sr_bits=sr_bits, saturate=saturate)
        row = {"values": data.ArrayLayout(self._out_fmt.bits, self._units), "end": 1}
        if self._acc == "exact":
            row["overflow"] = 1
        self._row = data.StructLayout(row)
        super().__init__({
            "i":    In(stream.Signature(data.StructLayout({
                "a":    data.ArrayLayout(data.ArrayLayout(4, self._lanes), self._units),
                "g":    data.ArrayLayout(4, self._lanes),
                "last": 1,
                "end":  1,
            }))),
            "cfg":  In(mac_config_layout),
            "read": In(stream.Signature(range(depth))),
            "o":    Out(stream.Signature(self._row)),
            "rows": Out(32),
        })

    @property
    def depth(self):
        """Rows of the result memory."""
        return self._depth

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self._core(self._units)
        m.d.comb += [
            core.en.eq(1),
            self.i.ready.eq(core.ready),
            core.valid.eq(self.i.valid),
            core.g.eq(self.i.payload.g),
            core.last.eq(self.i.payload.last),
            core.end.eq(self.i.payload.end),
            core.cfg.eq(self.cfg),
        ]
        for p in range(self._units):
            m.d.comb += core.a[p].eq(self.i.payload.a[p])

        m.submodules.bank = bank = Memory(shape=self._row, depth=self._depth, init=[])
        write = bank.write_port()
        row = Signal(self._row)
        m.d.comb += row.end.eq(core.out_end)
        for p in range(self._units):
            m.d.comb += row.values[p].eq(core.out_values[p])
        if self._acc == "exact":
            m.d.comb += row.overflow.eq(core.out_overflow)
        m.d.comb += [
            write.en.eq(core.out_valid),
            write.addr.eq(self.rows),
            write.data.eq(row),
        ]
        with m.If(core.out_valid):
            m.d.sync += self.rows.eq(self.rows + 1)

        # Reads: a synchronous port enabled only when a request is taken, so its data holds
        # while the output waits.
        read = bank.read_port(domain="sync", transparent_for=(write,))
        m.d.comb += [
            self.read.ready.eq(~self.o.valid | self.o.ready),
            read.en.eq(self.read.ready),
            read.addr.eq(self.read.payload),
            self.o.payload.eq(read.data),
        ]
        with m.If(self.read.ready):
            m.d.sync += self.o.valid.eq(self.read.valid)
        return m


class MultiplierMACArray(ShiftMACArray):
    """:class:`ShiftMACArray` built from :class:`MultiplierMACUnit` datapaths (``*`` on the
    decoded FP4 operand), as the baseline. Same parameters, ports and results."""

    _MULTIPLY = True
