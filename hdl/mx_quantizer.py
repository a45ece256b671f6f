"""MX/BFP quantizer: float elements in, MX blocks (E8M0 scale + element codes) out.

The hardware twin of :func:`golden.encode_mx`. Two halves, as in ``golden/mx.py``:

* the *collector* unpacks each beat, keeps the running block maximum of the exponents and a
  NaN/Inf flag, and writes the unpacked beat into one of two block banks of a memory;
* the *converter* reads a finished bank beat by beat, scales each element by the shared
  exponent ``E`` and rounds it to the element format (:class:`hdl.float.FloatRounder`),
  assembling the codes of a block into the output payload.

The collector fills one bank while the converter empties the other, so a block of
``block / lanes`` beats enters every ``block / lanes`` cycles and the core accepts one beat per
cycle without bubbles whenever the output is ready. A frame whose final beat (``last``) ends
inside a block is padded with +0 elements to the block boundary, exactly as the golden model
pads the last axis; the input is held off (``i.ready`` low) while the padding is inserted.
"""

from amaranth.hdl import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden.mx import SCALE_BIAS, SCALE_EMAX, SCALE_NAN, check_block, check_element
from golden.rng import check_sr_bits
from .float import FloatUnpacker, FloatRounder, exponent_range, unpacked_layout
from .mx_layouts import (check_in_format, check_lanes, float_beat_layout, mx_block_layout,
                         mx_config_layout)
from .pipeline import delayed
from .rng import SeedMixer, StochasticDraws


__all__ = ["MXQuantizer"]


class MXQuantizer(wiring.Component):
    """Quantizes a stream of floats into MX blocks.

    Parameters
    ----------
    in_format : str
        Format of the incoming elements: ``"fp32"``, ``"bf16"`` or ``"fp16"`` bit patterns.
    elem : str or FloatFormat
        Element format of the blocks (``"e4m3"``, ``"int8"``, ...; any radix-2 format of at
        most 16 bits).
    block : int
        Elements per block (power of two, 2..64).
    lanes : int
        Elements per input beat (power of two, 1..block).
    sr_bits : int
        Bits per stochastic-rounding draw (1..24).

    Attributes
    ----------
    i : In(stream.Signature(float_beat_layout(in_format, lanes)))
        Elements in stream order, ``lanes`` per beat; ``last`` marks the final beat of a frame.
    o : Out(stream.Signature(mx_block_layout(elem, block)))
        One block per beat: E8M0 ``scale``, element ``codes``, ``last`` on a frame's final block.
    cfg : In(mx_config_layout)
        Rounding mode and seed, sampled with the first beat of each frame; the generator of
        stochastic rounding restarts from the seed at every frame.
    """

    def __init__(self, *, in_format="fp32", elem="e4m3", block=32, lanes=1, sr_bits=8):
        self._in_format = check_in_format(in_format)
        self._elem = check_element(elem)
        self._block = check_block(block)
        self._lanes = check_lanes(lanes, self._block)
        check_sr_bits(sr_bits)
        self._sr_bits = sr_bits
        super().__init__({
            "i":   In(stream.Signature(float_beat_layout(self._in_format, self._lanes))),
            "o":   Out(stream.Signature(mx_block_layout(self._elem, self._block))),
            "cfg": In(mx_config_layout),
        })

    @property
    def beats_per_block(self):
        return self._block // self._lanes

    def elaborate(self, platform):
        m = Module()
        lanes = self._lanes
        beats = self.beats_per_block
        element = unpacked_layout(self._in_format)
        row = data.ArrayLayout(element, lanes)
        lowest, highest = exponent_range(self._in_format)
        exponent_shape = Shape.cast(element["exponent"].shape)
        nothing = lowest - 1                # the exponent a zero element contributes to a maximum

        # ---- Collector, input pipeline: register the beat, unpack it, then reduce the lanes'
        # exponents to the beat's maximum, one tree level per stage. All stages move together
        # whenever the last one is empty or its beat goes into a bank.
        pipe_advance = Signal()

        # A frame whose last beat ends inside a block continues with zero beats (marked
        # last) up to the block's end, while the input is held off.
        in_frame = Signal()
        frame_cfg = Signal(mx_config_layout)
        in_beat = Signal(range(beats))
        padding = Signal()
        accepted = Signal()
        m.d.comb += [
            self.i.ready.eq(pipe_advance & ~padding),
            accepted.eq(self.i.valid & self.i.ready),
        ]
        with m.If(accepted | (padding & pipe_advance)):
            m.d.sync += in_beat.eq(Mux(in_beat == beats - 1, 0, in_beat + 1))
            with m.If(in_beat == beats - 1):
                m.d.sync += padding.eq(0)
            with m.Elif(accepted & self.i.payload.last):
                m.d.sync += padding.eq(1)
        with m.If(accepted):
            m.d.sync += in_frame.eq(~self.i.payload.last)
            with m.If(~in_frame):
                m.d.sync += frame_cfg.eq(self.cfg)

        beat = data.StructLayout({
            "valid": 1,
            "last":  1,                     # the beat ends its frame
            "first": 1,                     # the beat starts its frame
            "cfg":   mx_config_layout,      # configuration of its frame
        })
        # The stages of unpacking, then a stage that registers the lanes and their exponents.
        # The seed is hashed alongside.
        m.submodules.mixer = mixer = SeedMixer()
        m.d.comb += [
            mixer.en.eq(pipe_advance),
            mixer.seed.eq(Mux(in_frame, frame_cfg.seed, self.cfg.seed)),
        ]
        mixed = delayed(m, mixer.mixed, FloatUnpacker.LATENCY - SeedMixer.LATENCY,
                        en=pipe_advance, name="mixed")
        stage = Signal(beat, name="raw")
        with m.If(pipe_advance):
            m.d.sync += [
                stage.valid.eq(self.i.valid | padding),
                stage.last.eq(self.i.payload.last | padding),
                stage.first.eq(~in_frame & ~padding),
                stage.cfg.eq(Mux(in_frame, frame_cfg, self.cfg)),
            ]
        stage = delayed(m, stage, FloatUnpacker.LATENCY - 1, en=pipe_advance, name="unpacking")
        unpacked = Signal(beat, name="unpacked")
        with m.If(pipe_advance):
            m.d.sync += [
                unpacked.eq(stage),
                unpacked.cfg.seed.eq(mixed),
            ]
        unpacked_row = Signal(row)
        unpacked_special = Signal()
        peaks = [Signal(exponent_shape, name=f"peak{l}") for l in range(lanes)]
        specials = []
        for lane in range(lanes):
            unpacker = FloatUnpacker(self._in_format)
            m.submodules[f"unpack{lane}"] = unpacker
            m.d.comb += [
                unpacker.en.eq(pipe_advance),
                unpacker.code.eq(Mux(padding, 0, self.i.payload.data[lane])),
            ]
            specials.append(unpacker.inf | unpacker.nan)
            with m.If(pipe_advance):
                m.d.sync += [
                    unpacked_row[lane].eq(unpacker.value),
                    peaks[lane].eq(Mux(unpacker.zero, nothing, unpacker.value.exponent)),
                ]
        with m.If(pipe_advance):
            m.d.sync += unpacked_special.eq(Cat(specials).any())

        stage, stage_row, stage_special = unpacked, unpacked_row, unpacked_special
        level = 0
        while len(peaks) > 1:
            next_stage = Signal(beat, name=f"tree{level}")
            next_row = Signal(row, name=f"tree{level}_row")
            next_special = Signal(name=f"tree{level}_special")
            next_peaks = []
            for index, (a, b) in enumerate(zip(peaks[0::2], peaks[1::2])):
                larger = Signal(exponent_shape, name=f"tree{level}_peak{index}")
                with m.If(pipe_advance):
                    m.d.sync += larger.eq(Mux(a > b, a, b))
                next_peaks.append(larger)
            with m.If(pipe_advance):
                m.d.sync += [
                    next_stage.eq(stage),
                    next_row.eq(stage_row),
                    next_special.eq(stage_special),
                ]
            stage, stage_row, stage_special, peaks = next_stage, next_row, next_special, next_peaks
            level += 1
        p2_valid, p2_row, p2_peak, p2_special = stage.valid, stage_row, peaks[0], stage_special
        p2_last, p2_first, p2_cfg = stage.last, stage.first, stage.cfg

        # ---- Collector, stage 3: write the beat into the bank, accumulate the block maximum.
        # Two banks are shallow (2 * beats rows): on ECP5 distributed RAM is faster than a
        # block RAM's output; iCE40 has no distributed RAM.
        ram_style = {"ram_style": "distributed"} \
            if getattr(platform, "family", None) == "ecp5" else {}
        m.submodules.banks = banks = Memory(shape=row, depth=2 * beats, init=[],
                                            attrs=ram_style)
        write = banks.write_port()
        read = banks.read_port(domain="sync")

        full = Signal(2)                    # bank holds a finished block not yet read out
        descriptor = data.StructLayout({
            "peak":    exponent_shape,      # maximum exponent of the leading one
            "special": 1,                   # the block holds a NaN or an Inf
            "first":   1,                   # the block starts a frame
            "last":    1,                   # the block ends a frame
            "cfg":     mx_config_layout,
        })
        descriptors = Array(Signal(descriptor, name=f"descriptor{b}") for b in range(2))

        write_bank = Signal()
        write_beat = Signal(range(beats))
        block_peak = Signal(exponent_shape, init=nothing)   # reset at every block's end
        block_special = Signal()
        block_first = Signal()
        block_cfg = Signal(mx_config_layout)

        bank_free = ~full.bit_select(write_bank, 1)
        step = Signal()
        m.d.comb += [
            pipe_advance.eq(~p2_valid | bank_free),
            step.eq(p2_valid & bank_free),
        ]
        starting = write_beat == 0
        peak = Signal(exponent_shape)
        special = Signal()
        first = Signal()
        cfg = Signal(mx_config_layout)
        m.d.comb += [
            peak.eq(Mux(p2_peak > block_peak, p2_peak, block_peak)),
            special.eq(p2_special | (~starting & block_special)),
            first.eq(Mux(starting, p2_first, block_first)),
            cfg.eq(Mux(starting, p2_cfg, block_cfg)),
            write.addr.eq(write_bank * beats + write_beat),
            write.data.eq(p2_row),
            write.en.eq(step),
        ]
        with m.If(step):
            m.d.sync += [
                block_peak.eq(peak),
                block_special.eq(special),
                block_first.eq(first),
                block_cfg.eq(cfg),
            ]
            with m.If(write_beat == beats - 1):
                m.d.sync += [
                    descriptors[write_bank].eq(Cat(peak, special, first, p2_last, cfg)),
                    full.bit_select(write_bank, 1).eq(1),
                    write_bank.eq(~write_bank),
                    write_beat.eq(0),
                    block_peak.eq(nothing),
                ]
            with m.Else():
                m.d.sync += write_beat.eq(write_beat + 1)

        # ---- Converter. Everything below advances together unless the output is held.
        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)

        # Stage 0: issue the read of the next beat of the oldest full bank.
        read_bank = Signal()
        read_beat = Signal(range(beats))
        current = descriptors[read_bank]
        available = full.bit_select(read_bank, 1)
        m.d.comb += [
            read.addr.eq(read_bank * beats + read_beat),
            read.en.eq(advance),
        ]
        control = data.StructLayout({
            "valid":   1,
            "beat":    range(beats),
            "end":     1,               # final beat of the block
            "restart": 1,               # first beat of a frame: restart the generator
            "peak":    exponent_shape,  # the block's maximum exponent
            "shared":  range(-SCALE_EMAX, SCALE_EMAX + 1),  # E, from stage 2 on
            "special": 1,
            "last":    1,
            "cfg":     mx_config_layout,
        })
        s1 = Signal(control)
        with m.If(advance):
            m.d.sync += [
                s1.valid.eq(available),
                s1.beat.eq(read_beat),
                s1.end.eq(read_beat == beats - 1),
                s1.restart.eq(current.first & (read_beat == 0)),
                s1.peak.eq(current.peak),
                s1.special.eq(current.special),
                s1.last.eq(current.last),
                s1.cfg.eq(current.cfg),
            ]
            with m.If(available):
                with m.If(read_beat == beats - 1):
                    m.d.sync += [
                        read_beat.eq(0),
                        read_bank.eq(~read_bank),
                        full.bit_select(read_bank, 1).eq(0),
                    ]
                with m.Else():
                    m.d.sync += read_beat.eq(read_beat + 1)

        # Stage 1: the beat leaves the memory; stage 2: registered, with the shared exponent
        # E = clamp(peak - emax, -127, 127); stage 3: scaled by 2^-E.
        s2 = Signal(control, name="s2")
        s2_row = Signal(row)
        emax = self._elem.emax
        # The clamping compares the peak with constants, beside the subtraction.
        with m.If(advance):
            m.d.sync += [
                s2.eq(s1),
                s2.shared.eq(Mux((s1.peak == nothing) | (s1.peak < emax - SCALE_EMAX),
                                 -SCALE_EMAX,
                                 Mux(s1.peak > emax + SCALE_EMAX, SCALE_EMAX, s1.peak - emax))),
                s2_row.eq(read.data),
            ]
        scaled_shape = Shape.cast(range(nothing - SCALE_EMAX, highest + SCALE_EMAX + 1))
        scaled_element = data.StructLayout({
            "sign": 1, "exponent": scaled_shape, "significand": element["significand"].shape})
        s3 = Signal(control, name="s3")
        s3_row = Signal(data.ArrayLayout(scaled_element, lanes))
        with m.If(advance):
            m.d.sync += s3.eq(s2)
            for lane in range(lanes):
                m.d.sync += [
                    s3_row[lane].sign.eq(s2_row[lane].sign),
                    s3_row[lane].exponent.eq(s2_row[lane].exponent - s2.shared),
                    s3_row[lane].significand.eq(s2_row[lane].significand),
                ]

        # Stage 3 onwards: round every lane, with its stochastic-rounding draw.
        m.submodules.draws = draws = StochasticDraws(lanes=lanes, sr_bits=self._sr_bits)
        m.d.comb += [
            draws.seed.eq(s3.cfg.seed),
            draws.restart.eq(s3.restart),
            draws.advance.eq(s3.valid & advance),
        ]
        rounders = []
        for lane in range(lanes):
            rounder = FloatRounder(self._elem, exponent_shape=scaled_shape,
                                   sig_bits=Shape.cast(element["significand"].shape).width,
                                   sr_bits=self._sr_bits, saturate=True)
            m.submodules[f"round{lane}"] = rounder
            m.d.comb += [
                rounder.en.eq(advance),
                rounder.sign.eq(s3_row[lane].sign),
                rounder.exponent.eq(s3_row[lane].exponent),
                rounder.significand.eq(s3_row[lane].significand),
                rounder.mode.eq(s3.cfg.rounding),
                rounder.draw.eq(draws.draws[lane]),
            ]
            rounders.append(rounder)

        stage = delayed(m, s3, FloatRounder.LATENCY, en=advance, name="rounding")

        # Output: collect the codes of a block into the payload; present it when complete.
        codes = self.o.payload.codes
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(advance & stage.valid):
            with m.Switch(stage.beat):
                for beat in range(beats):
                    with m.Case(beat):
                        for lane, rounder in enumerate(rounders):
                            m.d.sync += codes[beat * lanes + lane].eq(
                                Mux(stage.special, 0, rounder.code))
            with m.If(stage.end):
                m.d.sync += [
                    self.o.valid.eq(1),
                    self.o.payload.scale.eq(Mux(stage.special, SCALE_NAN,
                                                stage.shared + SCALE_BIAS)),
                    self.o.payload.last.eq(stage.last),
                ]
        return m
