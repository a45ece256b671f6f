"""Block dequantizer: MX/BFP blocks, with outlier records and codebook elements, in; float
elements out.

The hardware twin of :func:`golden.decode_blocks` followed by
``golden.encode_float(values, out_format, "nearest_even", saturate=False)``: overflow goes to
±Inf, which only arbitrary scale/code pairs can reach (blocks made by :class:`MXQuantizer` from
the same format come back exactly).

One mechanism serves every variant. Each lane unpacks its element with a
:class:`FloatUnpacker`: a float element's code as it is; a codebook element's level (looked up
for the code's index, a :data:`golden.codebook.LEVEL_BITS`-bit integer in units of 2^-8)
zero-extended to :data:`golden.codebook.LEVEL_FORMAT`, the sign taken from the code. With
outliers, the ``K`` records of the block are unpacked beside the lanes (record format
``1-D-Mo``), and each lane picks the first record ``r < count`` whose index names its
element, adding the element's ``emax`` to the record's exponent. The shared scale is then
added to the exponent and a :class:`FloatRounder` per lane rounds to the output format.
Each block beat is held for ``block / lanes`` cycles while its elements leave ``lanes`` at a
time: one output beat per cycle.
"""

import operator
from functools import reduce

from amaranth.hdl import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.codebook import LEVEL_BITS, LEVEL_FORMAT
from golden.mx import SCALE_BIAS, SCALE_NAN, check_block
from golden.outliers import OutlierFormat
from .float import FloatUnpacker, FloatRounder, RoundingMode, exponent_range
from .pipeline import delayed
from .mx_layouts import (check_in_format, check_lanes, check_block_element,
                         check_block_outliers, float_beat_layout, mx_block_layout,
                         levels_layout, dequantizer_config_layout)


__all__ = ["MXDequantizer", "OutlierMerger", "NonUniformDecoder"]


class MXDequantizer(wiring.Component):
    """Dequantizes a stream of blocks into floats.

    An element ``j`` of a block with scale code ``S`` becomes, rounded to ``out_format``
    (nearest even, ±Inf on overflow):

    - ``decode_float(record.code, outliers.record_format) * 2^(S - 127 + emax)`` if a record
      ``r < count`` has ``index == j`` (the first such record wins; ``emax`` is the element
      format's, 0 for a codebook);
    - otherwise ``decode_float(code, elem) * 2^(S - 127)`` for a float element, or
      ``(-1)^sign * level[index] * 2^(S - 127)`` for a codebook element, whose code is
      ``sign << N | index`` and whose levels are multiples of 2^-8 below 2;
    - NaN (canonical) for every element of a block with ``S = 0xFF``, and for a NaN element
      code.

    Parameters
    ----------
    elem : str or FloatFormat or None
        Element format of the blocks (radix 2, at most 16 bits); None means ``"e4m3"``
        without a codebook. Must be None with a codebook.
    block : int
        Elements per block (power of two, 2..64).
    out_format : str
        Format of the outgoing elements: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
    lanes : int
        Elements per output beat (power of two, 1..block).
    codebook : None, golden.Codebook or int
        Codebook elements instead of a float format: a :class:`golden.Codebook` (levels fixed
        at elaboration, as constants) or an index width ``N`` (1..4: ``2^N`` levels loaded at
        run time through ``cfg``).
    outliers : golden.OutlierFormat or None
        Outlier records per block: ``k`` (1..4, below ``block``) is the most a block carries
        (the block's ``count`` says how many are in use); ``exp_bits``/``man_bits`` give the
        record format. None or ``k = 0``: no records.

    Attributes
    ----------
    i : In(stream.Signature(mx_block_layout(elem, block, codebook=codebook, outliers=outliers)))
        One block per beat: ``scale``, ``codes``, with outliers ``count`` (0..k) and
        ``outliers`` (k records ``{index, code}``; those from ``count`` on are ignored and
        should be zero), and ``last``, which marks the final block of a frame.
    o : Out(stream.Signature(float_beat_layout(out_format, lanes)))
        Elements in stream order, ``lanes`` a beat; ``last`` on the final beat of a frame's
        final block.
    cfg : In(dequantizer_config_layout(N))
        Only with a loadable codebook (``codebook`` an int): ``levels``, ``2^N`` levels, each
        a 9-bit integer in units of 2^-8 (sorted, the first 0, as a :class:`golden.Codebook`'s
        ``level_codes``). Sampled when a block's first group of ``lanes`` elements enters the
        pipeline (the cycle ``i.valid`` is high with the block's first beat and the core
        advances) and used for all of that block's elements: a change takes effect at the
        next block boundary, never mid-block.

    Throughput and latency: one output beat per cycle while ``o.ready`` is high; an input
    block is accepted (``i.ready``) with its last group, ``block / lanes`` cycles after its
    first. The output beat of a group is valid :attr:`LATENCY` (13) cycles after the group
    entered (4 unpacking stages, 1 selecting and scaling, 7 rounding, 1 output register),
    whatever the element, codebook or outliers. ``o.valid`` does not depend on ``o.ready``;
    when ``o`` is held, the whole pipeline stops (``advance``).
    """

    #: Cycles from a group of ``lanes`` elements entering to its output beat being valid.
    LATENCY = FloatUnpacker.LATENCY + 1 + FloatRounder.LATENCY + 1

    def __init__(self, *, elem=None, block=32, out_format="fp32", lanes=1, codebook=None,
                 outliers=None):
        self._element = check_block_element(elem, codebook)
        self._block = check_block(block)
        self._outliers = check_block_outliers(outliers, self._block)
        self._out_format = check_in_format(out_format, "Output format")
        self._lanes = check_lanes(lanes, self._block)
        members = {
            "i": In(stream.Signature(mx_block_layout(elem, self._block, codebook=codebook,
                                                     outliers=outliers))),
            "o": Out(stream.Signature(float_beat_layout(self._out_format, self._lanes))),
        }
        if self._element.loadable:
            members["cfg"] = In(dequantizer_config_layout(self._element.n_bits))
        super().__init__(members)

    @property
    def element(self):
        """The blocks' element (:class:`hdl.mx_layouts.BlockElement`)."""
        return self._element

    @property
    def outliers(self):
        """The outlier format (``k = 0`` without outliers)."""
        return self._outliers

    @property
    def beats_per_block(self):
        return self._block // self._lanes

    def elaborate(self, platform):
        m = Module()
        lanes = self._lanes
        beats = self.beats_per_block
        element = self._element
        outliers = self._outliers
        k = outliers.k
        elem_bits = element.bits
        # What a lane unpacks: the element code, or the level a codebook code names.
        unpack_format = LEVEL_FORMAT if element.format is None else element.format

        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)

        # Stage 0: step through the lanes-wide groups of the held block.
        group = Signal(range(beats))
        first_group = Signal(init=1)                    # a register: group == 0
        m.d.comb += self.i.ready.eq(advance & (group == beats - 1))
        with m.If(advance & self.i.valid):
            m.d.sync += [
                group.eq(Mux(group == beats - 1, 0, group + 1)),
                first_group.eq(group == beats - 1),
            ]

        # The levels of a codebook element, as one vector of LEVEL_BITS-bit integers.
        if element.codebook is not None:
            layout = levels_layout(element.n_bits)
            levels = Const(layout.const(list(element.codebook.level_codes)).as_bits(),
                           layout.size)
        elif element.loadable:
            # Taken with the block's first group; held for its other groups.
            held = Signal(levels_layout(element.n_bits))
            with m.If(advance & self.i.valid & first_group):
                m.d.sync += held.eq(self.cfg.levels)
            levels = Mux(first_group, self.cfg.levels.as_value(), held.as_value())
        else:
            levels = None

        # ``shared``: the scale's exponent, scale - 127; ``shifted``: that plus the element's
        # emax, the exponent of a record's unit.
        control = data.StructLayout({"valid": 1, "last": 1, "nan": 1, "shared": signed(8),
                                     "shifted": signed(10)})
        # The codes of the current group. With a codebook, the first group's are a fixed slice
        # of the payload and the others' were selected a cycle earlier (the payload is held
        # through the block), so that no group-wide multiplexer lies in front of the level
        # lookup (Fmax); otherwise the group's codes are selected directly.
        all_codes = self.i.payload.codes.as_value()
        group_width = lanes * elem_bits
        if beats > 1 and levels is not None:
            following = Signal(range(beats), init=1 % beats)   # always (group + 1) % beats
            next_codes = Signal(group_width)
            with m.If(advance & self.i.valid):
                m.d.sync += [
                    following.eq(following + 1),
                    next_codes.eq(all_codes.word_select(following, group_width)),
                ]
            group_codes = Mux(first_group, all_codes[:group_width], next_codes)
        else:
            group_codes = all_codes.word_select(group, group_width)
        s1 = Signal(control, name="s1")
        with m.If(advance):
            scale = self.i.payload.scale
            m.d.sync += [
                s1.valid.eq(self.i.valid),
                s1.last.eq(self.i.payload.last & (group == beats - 1)),
                s1.nan.eq(scale == SCALE_NAN),
                s1.shared.eq(scale - SCALE_BIAS),
                s1.shifted.eq(scale - SCALE_BIAS + element.emax),
            ]
        unpacked = delayed(m, s1, FloatUnpacker.LATENCY - 1, en=advance, name="unpacking")

        # The records of the held block, unpacked beside the lanes (aligned with them).
        record_unpackers = []
        if k:
            record_format = outliers.record_format
            for r in range(k):
                unpacker = FloatUnpacker(record_format)
                m.submodules[f"unpack_record{r}"] = unpacker
                m.d.comb += [
                    unpacker.en.eq(advance),
                    unpacker.code.eq(self.i.payload.outliers[r].code),
                ]
                record_unpackers.append(unpacker)

        # Widths: significands left-aligned to the widest; exponents scaled by up to ±128.
        lowest, highest = exponent_range(unpack_format)
        sig_bits = unpack_format.man_bits + 1
        if k:
            record_low, record_high = exponent_range(record_format)
            lowest = min(lowest, record_low + element.emax)
            highest = max(highest, record_high + element.emax)
            sig_bits = max(sig_bits, record_format.man_bits + 1)
        scaled_shape = Shape.cast(range(lowest - 2 - 128, highest + 128 + 2))
        scaled_element = data.StructLayout({
            "sign": 1, "exponent": scaled_shape, "significand": sig_bits, "inf": 1, "nan": 1})

        def aligned(significand):
            return Cat(C(0, sig_bits - len(significand)), significand)

        # Unpack every lane, select it or a record (one stage, with the scale), then round.
        s2 = Signal(control, name="s2")
        s2_row = Signal(data.ArrayLayout(scaled_element, lanes))
        with m.If(advance):
            m.d.sync += s2.eq(unpacked)
        rounders = []
        for lane in range(lanes):
            unpacker = FloatUnpacker(unpack_format)
            rounder = FloatRounder(self._out_format, exponent_shape=scaled_shape,
                                   sig_bits=sig_bits, saturate=False)
            m.submodules[f"unpack{lane}"] = unpacker
            m.submodules[f"round{lane}"] = rounder
            m.d.comb += unpacker.en.eq(advance)
            code = group_codes.word_select(lane, elem_bits)
            sign = unpacker.value.sign
            if levels is None:
                m.d.comb += unpacker.code.eq(code)
            else:
                index = code[:element.n_bits]
                m.d.comb += unpacker.code.eq(levels.word_select(index, LEVEL_BITS))
                sign = delayed(m, code[element.n_bits], FloatUnpacker.LATENCY, en=advance,
                               name=f"sign{lane}_")
            if k:
                # The first record r < count that names this lane's element.
                position = group * lanes + lane
                matches = [(r < self.i.payload.count)
                           & (self.i.payload.outliers[r].index == position)
                           for r in range(k)]
                hit = Signal(k, name=f"hit{lane}")
                m.d.comb += hit.eq(Cat(match & ~Cat(*matches[:r]).any() if r else match
                                       for r, match in enumerate(matches)))
                hit = delayed(m, hit, FloatUnpacker.LATENCY, en=advance, name=f"hit{lane}_")
            # Select the element or its record (one-hot), then add the scale.
            row = s2_row[lane]
            exponent = unpacker.value.exponent
            significand = aligned(unpacker.value.significand)
            inf, nan, offset = unpacker.inf, unpacker.nan, unpacked.shared
            if k:
                chosen = hit.any()

                def either(element_value, record_values):
                    picked = [Mux(hit[r], value, 0) for r, value in enumerate(record_values)]
                    return Mux(chosen, reduce(operator.or_, picked), element_value)

                sign = either(sign, [record.value.sign for record in record_unpackers])
                exponent = either(exponent,
                                  [record.value.exponent for record in record_unpackers])
                significand = either(significand, [aligned(record.value.significand)
                                                   for record in record_unpackers])
                inf, nan = inf & ~chosen, nan & ~chosen
                offset = Mux(chosen, unpacked.shifted, unpacked.shared)
            with m.If(advance):
                m.d.sync += [
                    row.sign.eq(sign),
                    row.exponent.eq(exponent + offset),
                    row.significand.eq(significand),
                    row.inf.eq(inf),
                    row.nan.eq(nan | unpacked.nan),
                ]
            m.d.comb += [
                rounder.en.eq(advance),
                rounder.sign.eq(row.sign),
                rounder.exponent.eq(row.exponent),
                rounder.significand.eq(row.significand),
                rounder.inf.eq(row.inf),
                rounder.nan.eq(row.nan),
                rounder.mode.eq(RoundingMode.NEAREST_EVEN),
            ]
            rounders.append(rounder)

        stage = delayed(m, s2, FloatRounder.LATENCY, en=advance, name="rounding")

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(advance & stage.valid):
            m.d.sync += [
                self.o.valid.eq(1),
                self.o.payload.last.eq(stage.last),
            ]
            for lane, rounder in enumerate(rounders):
                m.d.sync += self.o.payload.data[lane].eq(rounder.code)
        return m


class OutlierMerger(MXDequantizer):
    """The block dequantizer configured to merge outlier records back into their blocks:
    :class:`MXDequantizer` with ``outliers`` required (``k >= 1``). Each element named by a
    record ``r < count`` takes the record's value ``decode(code) * 2^(scale - 127 + emax)``
    (the first such record wins); the others decode as plain MX/BFP or codebook elements.
    Parameters, ports and latency are those of :class:`MXDequantizer`."""

    def __init__(self, *, outliers, elem=None, block=32, out_format="fp32", lanes=1,
                 codebook=None):
        if outliers is None or isinstance(outliers, OutlierFormat) and outliers.k == 0:
            raise ValueError(f"An outlier merger needs outliers with at least one record per "
                             f"block, not {outliers!r}")
        super().__init__(elem=elem, block=block, out_format=out_format, lanes=lanes,
                         codebook=codebook, outliers=outliers)


class NonUniformDecoder(MXDequantizer):
    """The block dequantizer configured to decode codebook (non-uniform) elements:
    :class:`MXDequantizer` with ``codebook`` required, a :class:`golden.Codebook` (fixed
    levels) or an index width ``N`` (levels loaded through ``cfg``, taken per block).
    Element ``sign << N | index`` decodes to ``(-1)^sign * level[index] * 2^(scale - 127)``.
    Parameters, ports and latency are those of :class:`MXDequantizer` (``outliers`` too)."""

    def __init__(self, *, codebook, block=32, out_format="fp32", lanes=1, outliers=None):
        if codebook is None:
            raise ValueError("A non-uniform decoder needs a codebook (a Codebook or an index "
                             "width in bits), not None")
        super().__init__(block=block, out_format=out_format, lanes=lanes, codebook=codebook,
                         outliers=outliers)
