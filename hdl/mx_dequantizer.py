"""MX/BFP dequantizer: MX blocks in, float elements out.

The hardware twin of :func:`golden.decode_mx` followed by rounding to the output float
format (round to nearest even; overflow to ±Inf, which only arbitrary scale/code pairs can
reach: blocks made by :class:`MXQuantizer` from the same format come back exactly).
Each block beat is held for ``block / lanes`` cycles while its elements leave ``lanes`` at a
time: one output beat per cycle.
"""

from amaranth.hdl import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.mx import SCALE_BIAS, SCALE_EMAX, SCALE_NAN, check_block, check_element
from .float import FloatUnpacker, FloatRounder, RoundingMode, exponent_range, unpacked_layout
from .pipeline import delayed
from .mx_layouts import check_in_format, check_lanes, float_beat_layout, mx_block_layout


__all__ = ["MXDequantizer"]


class MXDequantizer(wiring.Component):
    """Dequantizes a stream of MX blocks into floats.

    Parameters
    ----------
    elem : str or FloatFormat
        Element format of the blocks.
    block : int
        Elements per block (power of two, 2..64).
    out_format : str
        Format of the outgoing elements: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
    lanes : int
        Elements per output beat (power of two, 1..block).

    Attributes
    ----------
    i : In(stream.Signature(mx_block_layout(elem, block)))
        One block per beat; ``last`` marks the final block of a frame.
    o : Out(stream.Signature(float_beat_layout(out_format, lanes)))
        Elements in stream order; ``last`` on the final beat of a frame's final block.
    """

    def __init__(self, *, elem="e4m3", block=32, out_format="fp32", lanes=1):
        self._elem = check_element(elem)
        self._block = check_block(block)
        self._out_format = check_in_format(out_format, "Output format")
        self._lanes = check_lanes(lanes, self._block)
        super().__init__({
            "i": In(stream.Signature(mx_block_layout(self._elem, self._block))),
            "o": Out(stream.Signature(float_beat_layout(self._out_format, self._lanes))),
        })

    @property
    def beats_per_block(self):
        return self._block // self._lanes

    def elaborate(self, platform):
        m = Module()
        lanes = self._lanes
        beats = self.beats_per_block
        elem_bits = self._elem.bits
        element = unpacked_layout(self._elem)

        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)

        # Stage 0: step through the lanes-wide groups of the held block.
        group = Signal(range(beats))
        m.d.comb += self.i.ready.eq(advance & (group == beats - 1))
        with m.If(advance & self.i.valid):
            m.d.sync += group.eq(Mux(group == beats - 1, 0, group + 1))

        control = data.StructLayout({"valid": 1, "last": 1, "nan": 1, "shared": signed(8)})
        group_codes = self.i.payload.codes.as_value().word_select(group, lanes * elem_bits)
        s1 = Signal(control, name="s1")
        with m.If(advance):
            scale = self.i.payload.scale
            m.d.sync += [
                s1.valid.eq(self.i.valid),
                s1.last.eq(self.i.payload.last & (group == beats - 1)),
                s1.nan.eq(scale == SCALE_NAN),
                s1.shared.eq(scale - SCALE_BIAS),
            ]
        unpacked = delayed(m, s1, FloatUnpacker.LATENCY - 1, en=advance, name="unpacking")

        # Unpack every lane, then scale it (one stage), then round.
        lowest, highest = exponent_range(self._elem)
        scaled_shape = Shape.cast(range(lowest - 1 - SCALE_EMAX, highest + SCALE_EMAX + 2))
        scaled_element = data.StructLayout({
            "sign": 1, "exponent": scaled_shape, "significand": element["significand"].shape,
            "inf": 1, "nan": 1})
        s2 = Signal(control, name="s2")
        s2_row = Signal(data.ArrayLayout(scaled_element, lanes))
        with m.If(advance):
            m.d.sync += s2.eq(unpacked)
        rounders = []
        for lane in range(lanes):
            unpacker = FloatUnpacker(self._elem)
            rounder = FloatRounder(self._out_format, exponent_shape=scaled_shape,
                                   sig_bits=Shape.cast(element["significand"].shape).width,
                                   saturate=False)
            m.submodules[f"unpack{lane}"] = unpacker
            m.submodules[f"round{lane}"] = rounder
            m.d.comb += [
                unpacker.en.eq(advance),
                unpacker.code.eq(group_codes.word_select(lane, elem_bits)),
            ]
            with m.If(advance):
                m.d.sync += [
                    s2_row[lane].sign.eq(unpacker.value.sign),
                    s2_row[lane].exponent.eq(unpacker.value.exponent + unpacked.shared),
                    s2_row[lane].significand.eq(unpacker.value.significand),
                    s2_row[lane].inf.eq(unpacker.inf),
                    s2_row[lane].nan.eq(unpacker.nan | unpacked.nan),
                ]
            m.d.comb += [
                rounder.en.eq(advance),
                rounder.sign.eq(s2_row[lane].sign),
                rounder.exponent.eq(s2_row[lane].exponent),
                rounder.significand.eq(s2_row[lane].significand),
                rounder.inf.eq(s2_row[lane].inf),
                rounder.nan.eq(s2_row[lane].nan),
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
