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
        s1 = Signal(control)
        s1_codes = Signal(data.ArrayLayout(elem_bits, lanes))
        with m.If(advance):
            scale = self.i.payload.scale
            m.d.sync += [
                s1.valid.eq(self.i.valid),
                s1.last.eq(self.i.payload.last & (group == beats - 1)),
                s1.nan.eq(scale == SCALE_NAN),
                s1.shared.eq(scale - SCALE_BIAS),
                s1_codes.eq(self.i.payload.codes.as_value().word_select(group,
                                                                       lanes * elem_bits)),
            ]

        # Stage 1 onwards: unpack, scale and round every lane.
        lowest, highest = exponent_range(self._elem)
        scaled_shape = Shape.cast(range(lowest - 1 - SCALE_EMAX, highest + SCALE_EMAX + 2))
        rounders = []
        for lane in range(lanes):
            unpacker = FloatUnpacker(self._elem)
            rounder = FloatRounder(self._out_format, exponent_shape=scaled_shape,
                                   sig_bits=Shape.cast(element["significand"].shape).width,
                                   saturate=False)
            m.submodules[f"unpack{lane}"] = unpacker
            m.submodules[f"round{lane}"] = rounder
            m.d.comb += [
                unpacker.code.eq(s1_codes[lane]),
                rounder.en.eq(advance),
                rounder.sign.eq(unpacker.value.sign),
                rounder.exponent.eq(unpacker.value.exponent + s1.shared),
                rounder.significand.eq(unpacker.value.significand),
                rounder.inf.eq(unpacker.inf),
                rounder.nan.eq(unpacker.nan | s1.nan),
                rounder.mode.eq(RoundingMode.NEAREST_EVEN),
            ]
            rounders.append(rounder)

        stage = s1
        for index in range(FloatRounder.LATENCY):
            delayed = Signal(control, name=f"s{index + 2}")
            with m.If(advance):
                m.d.sync += delayed.eq(stage)
            stage = delayed

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
