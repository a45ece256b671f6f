"""MX/BFP quantizer: float elements in, blocks (E8M0 scale + element codes, and optionally
outlier records) out.

The hardware twin of :func:`golden.encode_blocks`. Two halves, as in ``golden/mx.py``:

* the *collector* unpacks each beat, ranks its lanes' magnitudes and merges them into the
  block's list of the ``K+1`` largest (:mod:`hdl.topk`; with ``K = 0`` this is the block
  maximum), keeps a NaN/Inf flag, and writes the unpacked beat into one of two block banks
  of a memory;
* the *converter* reads a finished bank beat by beat, scales each element by the shared
  exponent ``E`` (from the ``(K+1)``-th largest magnitude) and rounds it to the element format
  (:class:`hdl.float.FloatRounder`) or to the nearest codebook level
  (:class:`hdl.codebook.CodebookRounder`), assembling the codes of a block into the output
  payload; the ``K`` largest go through their own rounders into the outlier records and their
  slots carry code 0.

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

from golden.mx import SCALE_BIAS, SCALE_EMAX, SCALE_NAN, check_block
from golden.rng import check_sr_bits
from .codebook import CodebookRounder
from .float import FloatUnpacker, FloatRounder, exponent_range, unpacked_layout
from .mx_layouts import (check_in_format, check_lanes, check_block_element,
                         check_block_outliers, float_beat_layout, mx_block_layout,
                         quantizer_config_layout)
from .pipeline import delayed
from .rng import SeedMixer, StochasticDraws
from .topk import merge_top


__all__ = ["MXQuantizer", "OutlierExtractor", "NonUniformEncoder"]


class MXQuantizer(wiring.Component):
    """Quantizes a stream of floats into blocks with a shared exponent: MX/BFP, with outlier
    records (``outliers``) and codebook elements (``codebook``) as :func:`golden.encode_blocks`.

    Parameters
    ----------
    in_format : str
        Format of the incoming elements: ``"fp32"``, ``"bf16"`` or ``"fp16"`` bit patterns.
    elem : str or FloatFormat
        Element format of the blocks (``"e4m3"``, ``"int8"``, ...; any radix-2 format of at
        most 16 bits); default ``"e4m3"``. None when ``codebook`` is given.
    block : int
        Elements per block (power of two, 2..64).
    lanes : int
        Elements per input beat (power of two, 1..block).
    sr_bits : int
        Bits per stochastic-rounding draw (1..24).
    codebook : None, Codebook or int
        Codebook elements instead of ``elem``: a :class:`golden.Codebook` (levels fixed at
        elaboration) or an index width ``N`` (1..4; ``2^N`` levels loaded at run time through
        ``cfg.levels``).
    outliers : None or OutlierFormat
        Keep up to ``outliers.k`` (1..4, below ``block``) outliers per block in records of
        ``outliers.record_format``; ``cfg.outliers`` picks how many, per block.

    Attributes
    ----------
    i : In(stream.Signature(float_beat_layout(in_format, lanes)))
        Elements in stream order, ``lanes`` per beat; ``last`` marks the final beat of a frame.
    o : Out(stream.Signature(mx_block_layout(elem, block, codebook=, outliers=)))
        One block per beat: E8M0 ``scale``, element ``codes``, the outlier ``count`` and
        records (``outliers``: ``index`` in the block and ``code``; records from ``count`` on
        are zero), ``last`` on a frame's final block.
    cfg : In(quantizer_config_layout(...))
        ``rounding`` and ``seed``, sampled with the first beat of each frame (the generator of
        stochastic rounding restarts from the seed at every frame); ``outliers`` (count, 0..k)
        and ``levels`` (2^N codebook levels in units of 2^-8), sampled with the first beat of
        each block. Codebook elements take the nearest level; ``rounding`` then applies to
        the outlier records.
    """

    def __init__(self, *, in_format="fp32", elem=None, block=32, lanes=1, sr_bits=8,
                 codebook=None, outliers=None):
        self._in_format = check_in_format(in_format)
        self._element = check_block_element(elem, codebook)
        self._block = check_block(block)
        self._lanes = check_lanes(lanes, self._block)
        check_sr_bits(sr_bits)
        self._sr_bits = sr_bits
        self._outliers = check_block_outliers(outliers, self._block)
        self._cfg_layout = quantizer_config_layout(
            max_outliers=self._outliers.k,
            levels_bits=self._element.n_bits if self._element.loadable else None)
        super().__init__({
            "i":   In(stream.Signature(float_beat_layout(self._in_format, self._lanes))),
            "o":   Out(stream.Signature(mx_block_layout(elem, self._block, codebook=codebook,
                                                        outliers=outliers))),
            "cfg": In(self._cfg_layout),
        })

    @property
    def beats_per_block(self):
        return self._block // self._lanes

    def elaborate(self, platform):
        m = Module()
        lanes = self._lanes
        beats = self.beats_per_block
        k = self._outliers.k
        kept = k + 1                        # the K outliers and the largest of the rest
        element = self._element
        cfg_layout = self._cfg_layout
        unpacked = unpacked_layout(self._in_format)
        row = data.ArrayLayout(unpacked, lanes)
        lowest, highest = exponent_range(self._in_format)
        sig_bits = Shape.cast(unpacked["significand"].shape).width
        nothing = lowest - 1                # the exponent a zero element ranks with
        empty = lowest - 2                  # an unused place of a list ranks below zeros
        lane_bits = (lanes - 1).bit_length()
        index_bits = (self._block - 1).bit_length()

        # An entry of a ranked list: the magnitude as `rank` (exponent - empty: 0 for an unused
        # place, 1 for a zero) above the significand, so that one unsigned comparison of the
        # two (a single carry chain) ranks entries; with outliers also what a record needs.
        # Without outliers only the exponent matters.
        rank_shape = range(highest - empty + 1)
        entry_fields = {"significand": sig_bits} if k else {}
        entry_fields["rank"] = rank_shape
        if k:
            entry_fields.update({"sign": 1, "index": index_bits})
        entry = data.StructLayout(entry_fields)
        key_bits = (sig_bits if k else 0) + Shape.cast(rank_shape).width

        def at_least(a, b):
            return a.as_value()[:key_bits] >= b.as_value()[:key_bits]

        # Once ranked, an outlier needs only the significand bits its rounding can see: the
        # record's Mo + 1 bits, R more for a stochastic draw, and a sticky bit for the rest.
        record_sig_bits = min(sig_bits, self._outliers.man_bits + self._sr_bits + 2)
        record = data.StructLayout({
            "significand": record_sig_bits, "rank": rank_shape, "sign": 1,
            "index": index_bits})

        def as_record(m, ranked_entry, name):
            kept_record = Signal(record, name=name)
            cut = sig_bits - (record_sig_bits - 1)
            significand = ranked_entry.significand
            m.d.comb += [
                kept_record.significand.eq(
                    Cat(significand[:cut].any(), significand[cut:])
                    if record_sig_bits < sig_bits else significand),
                kept_record.rank.eq(ranked_entry.rank),
                kept_record.sign.eq(ranked_entry.sign),
                kept_record.index.eq(ranked_entry.index),
            ]
            return kept_record

        # ---- Collector, input pipeline: register the beat, unpack it, then rank the lanes,
        # one merge level per stage. All stages move together whenever the last one is empty
        # or its beat goes into a bank.
        pipe_advance = Signal()

        # A frame whose last beat ends inside a block continues with zero beats (marked
        # last) up to the block's end, while the input is held off.
        in_frame = Signal()
        frame_cfg = Signal(cfg_layout)
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
        # Rounding and seed hold for a frame; the per-block fields are taken from the port
        # with every beat, and the bank writer keeps those of a block's first beat.
        beat_cfg = Signal(cfg_layout)
        m.d.comb += [
            beat_cfg.eq(self.cfg),
            beat_cfg.rounding.eq(Mux(in_frame, frame_cfg.rounding, self.cfg.rounding)),
            beat_cfg.seed.eq(Mux(in_frame, frame_cfg.seed, self.cfg.seed)),
        ]

        beat = data.StructLayout({
            "valid": 1,
            "last":  1,                     # the beat ends its frame
            "first": 1,                     # the beat starts its frame
            "cfg":   cfg_layout,            # configuration of its frame (and block)
        })
        # The stages of unpacking, then a stage that registers the lanes and their entries.
        # The seed is hashed alongside.
        m.submodules.mixer = mixer = SeedMixer()
        m.d.comb += [
            mixer.en.eq(pipe_advance),
            mixer.seed.eq(beat_cfg.seed),
        ]
        mixed = delayed(m, mixer.mixed, FloatUnpacker.LATENCY - SeedMixer.LATENCY,
                        en=pipe_advance, name="mixed")
        stage = Signal(beat, name="raw")
        with m.If(pipe_advance):
            m.d.sync += [
                stage.valid.eq(self.i.valid | padding),
                stage.last.eq(self.i.payload.last | padding),
                stage.first.eq(~in_frame & ~padding),
                stage.cfg.eq(beat_cfg),
            ]
        stage = delayed(m, stage, FloatUnpacker.LATENCY - 1, en=pipe_advance, name="unpacking")
        unpacked_beat = Signal(beat, name="unpacked")
        with m.If(pipe_advance):
            m.d.sync += [
                unpacked_beat.eq(stage),
                unpacked_beat.cfg.seed.eq(mixed),
            ]
        unpacked_row = Signal(row)
        unpacked_special = Signal()
        lists = []                          # per lane, a ranked list of one entry
        specials = []
        for lane in range(lanes):
            unpacker = FloatUnpacker(self._in_format)
            m.submodules[f"unpack{lane}"] = unpacker
            m.d.comb += [
                unpacker.en.eq(pipe_advance),
                unpacker.code.eq(Mux(padding, 0, self.i.payload.data[lane])),
            ]
            specials.append(unpacker.inf | unpacker.nan)
            lane_entry = Signal(entry, name=f"lane{lane}")
            with m.If(pipe_advance):
                m.d.sync += [
                    unpacked_row[lane].eq(unpacker.value),
                    lane_entry.rank.eq(Mux(unpacker.zero, nothing - empty,
                                           unpacker.value.exponent - empty)),
                ]
                if k:
                    m.d.sync += [
                        lane_entry.significand.eq(unpacker.value.significand),
                        lane_entry.sign.eq(unpacker.value.sign),
                        lane_entry.index.eq(lane),      # the beat's part comes in at the bank
                    ]
            lists.append([lane_entry])
        with m.If(pipe_advance):
            m.d.sync += unpacked_special.eq(Cat(specials).any())

        stage, stage_row, stage_special = unpacked_beat, unpacked_row, unpacked_special
        level = 0
        while len(lists) > 1:
            next_stage = Signal(beat, name=f"tree{level}")
            next_row = Signal(row, name=f"tree{level}_row")
            next_special = Signal(name=f"tree{level}_special")
            next_lists = []
            for index, (lower, upper) in enumerate(zip(lists[0::2], lists[1::2])):
                length = min(kept, len(lower) + len(upper))
                merged = merge_top(m, lower, upper, length, at_least,
                                   name=f"tree{level}_{index}_merge")
                ranked = [Signal(entry, name=f"tree{level}_{index}_{j}") for j in range(length)]
                with m.If(pipe_advance):
                    m.d.sync += [place.eq(value) for place, value in zip(ranked, merged)]
                next_lists.append(ranked)
            with m.If(pipe_advance):
                m.d.sync += [
                    next_stage.eq(stage),
                    next_row.eq(stage_row),
                    next_special.eq(stage_special),
                ]
            stage, stage_row, stage_special, lists = next_stage, next_row, next_special, next_lists
            level += 1
        p2_valid, p2_row, p2_list, p2_special = stage.valid, stage_row, lists[0], stage_special
        p2_last, p2_first, p2_cfg = stage.last, stage.first, stage.cfg

        # ---- Collector, stage 3: write the beat into the bank, merge its ranked lanes into
        # the block's list. Two banks are shallow (2 * beats rows): on ECP5 distributed RAM is
        # faster than a block RAM's output; iCE40 has no distributed RAM.
        ram_style = {"ram_style": "distributed"} \
            if getattr(platform, "family", None) == "ecp5" else {}
        m.submodules.banks = banks = Memory(shape=row, depth=2 * beats, init=[],
                                            attrs=ram_style)
        write = banks.write_port()
        read = banks.read_port(domain="sync")

        full = Signal(2)                    # bank holds a finished block not yet read out
        descriptor = data.StructLayout({
            "peak":    rank_shape,      # the rank (exponent - empty) E comes from
            "records": data.ArrayLayout(record, k),     # the outliers, largest first
            "special": 1,                   # the block holds a NaN or an Inf
            "first":   1,                   # the block starts a frame
            "last":    1,                   # the block ends a frame
            "cfg":     cfg_layout,
        })
        descriptors = Array(Signal(descriptor, name=f"descriptor{b}") for b in range(2))

        write_bank = Signal()
        write_beat = Signal(range(beats))
        # The block's list so far. A block's first beat merges into an empty list; the
        # finished list goes into the descriptor one cycle after the block's last beat, so
        # that neither the emptying nor the descriptor lies on the merge's path (a converter
        # that starts on the block in that very cycle takes the list from `block_list`).
        block_list = [Signal(entry, name=f"block_ranked{j}") for j in range(kept)]
        fresh = Signal(init=1)              # the next beat starts a block
        finishing = Signal()                # block_list holds a finished block's list
        finishing_bank = Signal()
        finishing_count = Signal(range(kept))
        block_special = Signal()
        block_first = Signal()
        block_cfg = Signal(cfg_layout)

        bank_free = ~full.bit_select(write_bank, 1)
        step = Signal()
        m.d.comb += [
            pipe_advance.eq(~p2_valid | bank_free),
            step.eq(p2_valid & bank_free),
        ]
        starting = write_beat == 0
        beat_list = p2_list
        if k:
            # the position in the block: the beat's part joins the lane's
            beat_list = []
            for j, lane_entry in enumerate(p2_list):
                placed = Signal(entry, name=f"beat_ranked{j}")
                m.d.comb += [
                    placed.eq(lane_entry),
                    placed.index.eq(lane_entry.index[:lane_bits] | (write_beat << lane_bits)),
                ]
                beat_list.append(placed)
        ranked = merge_top(m, block_list, beat_list, kept, at_least, first_valid=~fresh,
                           name="block_merge")
        special = Signal()
        first = Signal()
        cfg = Signal(cfg_layout)
        m.d.comb += [
            special.eq(p2_special | (~starting & block_special)),
            first.eq(Mux(starting, p2_first, block_first)),
            cfg.eq(Mux(starting, p2_cfg, block_cfg)),
            write.addr.eq(write_bank * beats + write_beat),
            write.data.eq(p2_row),
            write.en.eq(step),
        ]
        with m.If(step):
            m.d.sync += [
                block_special.eq(special),
                block_first.eq(first),
                block_cfg.eq(cfg),
            ]
            m.d.sync += [place.eq(value) for place, value in zip(block_list, ranked)]
            m.d.sync += fresh.eq(write_beat == beats - 1)
            with m.If(write_beat == beats - 1):
                target = descriptors[write_bank]
                m.d.sync += [
                    target.special.eq(special),
                    target.first.eq(first),
                    target.last.eq(p2_last),
                    target.cfg.eq(cfg),
                    full.bit_select(write_bank, 1).eq(1),
                    finishing_bank.eq(write_bank),
                    finishing_count.eq(cfg.outliers if k else 0),
                    write_bank.eq(~write_bank),
                    write_beat.eq(0),
                ]
            with m.Else():
                m.d.sync += write_beat.eq(write_beat + 1)
        # The other bank cannot come round again before this: it needs a beat of its own.
        m.d.sync += finishing.eq(step & (write_beat == beats - 1))
        # E comes from the first entry after the block's outliers, or from the first of all
        # when the others are all zero.
        finished_peak = Signal(rank_shape)
        ranks = Array(place.rank for place in block_list)
        rest_rank = ranks[finishing_count]
        m.d.comb += finished_peak.eq(Mux(rest_rank == nothing - empty, block_list[0].rank,
                                         rest_rank))
        finished_records = [as_record(m, block_list[j], f"record{j}") for j in range(k)]
        with m.If(finishing):
            target = descriptors[finishing_bank]
            m.d.sync += target.peak.eq(finished_peak)
            m.d.sync += [target.records[j].eq(value) for j, value in enumerate(finished_records)]

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
        control_fields = {
            "valid":   1,
            "beat":    range(beats),
            "end":     1,               # final beat of the block
            "restart": 1,               # first beat of a frame: restart the generator
            "peak":    rank_shape,      # the rank (exponent - empty) E comes from
            "shared":  range(-SCALE_EMAX, SCALE_EMAX + 1),  # E, from stage 2 on
            "special": 1,
            "last":    1,
            "cfg":     cfg_layout,
        }
        if k:
            control_fields.update({
                "records":  data.ArrayLayout(record, k),     # outliers, largest first
                "outlier_lanes": lanes,     # lanes of this beat that are outliers (stage 3)
            })
        control = data.StructLayout(control_fields)
        s1 = Signal(control)
        with m.If(advance):
            m.d.sync += [
                s1.valid.eq(available),
                s1.beat.eq(read_beat),
                s1.end.eq(read_beat == beats - 1),
                s1.restart.eq(current.first & (read_beat == 0)),
                s1.special.eq(current.special),
                s1.last.eq(current.last),
                s1.cfg.eq(current.cfg),
            ]
            # A block whose list goes into its descriptor in this very cycle is read from the
            # list itself.
            just_finished = finishing & (finishing_bank == read_bank)
            m.d.sync += s1.peak.eq(Mux(just_finished, finished_peak, current.peak))
            for j in range(k):
                m.d.sync += s1.records[j].eq(Mux(just_finished, finished_records[j],
                                                 current.records[j]))
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
        emax = element.emax
        rank = s1.peak                  # the peak's exponent is rank + empty
        # The clamping compares the rank with constants, beside the subtraction.
        with m.If(advance):
            m.d.sync += [
                s2.eq(s1),
                s2.shared.eq(Mux((rank <= nothing - empty) |
                                 (rank < emax - SCALE_EMAX - empty),
                                 -SCALE_EMAX,
                                 Mux(rank > emax + SCALE_EMAX - empty, SCALE_EMAX,
                                     rank + (empty - emax)))),
                s2_row.eq(read.data),
            ]

        scaled_shape = Shape.cast(range(empty - SCALE_EMAX - emax,
                                        highest + SCALE_EMAX + 1))
        scaled_element = data.StructLayout({
            "sign": 1, "exponent": scaled_shape, "significand": sig_bits})
        s3 = Signal(control, name="s3")
        s3_row = Signal(data.ArrayLayout(scaled_element, lanes))
        scaled_record = data.StructLayout({
            "sign": 1, "exponent": scaled_shape, "significand": record_sig_bits})
        s3_records = Signal(data.ArrayLayout(scaled_record, k))
        with m.If(advance):
            m.d.sync += s3.eq(s2)
            for lane in range(lanes):
                m.d.sync += [
                    s3_row[lane].sign.eq(s2_row[lane].sign),
                    s3_row[lane].exponent.eq(s2_row[lane].exponent - s2.shared),
                    s3_row[lane].significand.eq(s2_row[lane].significand),
                ]
            # a record is scaled to the top binade of the elements: by 2^-(E + emax)
            for j in range(k):
                m.d.sync += [
                    s3_records[j].sign.eq(s2.records[j].sign),
                    s3_records[j].exponent.eq(s2.records[j].rank + (empty - emax) - s2.shared),
                    s3_records[j].significand.eq(s2.records[j].significand),
                ]
            if k:
                # which lanes of the beat are outliers of the block (from `count` on, none)
                m.d.sync += s3.outlier_lanes.eq(Cat(
                    Cat((s2.records[j].index == s2.beat * lanes + lane) &
                        (j < s2.cfg.outliers) for j in range(k)).any()
                    for lane in range(lanes)))

        # Stage 3 onwards: round every lane, with its stochastic-rounding draw.
        m.submodules.draws = draws = StochasticDraws(lanes=lanes, sr_bits=self._sr_bits)
        m.d.comb += [
            draws.seed.eq(s3.cfg.seed),
            draws.restart.eq(s3.restart),
            draws.advance.eq(s3.valid & advance),
        ]
        lane_codes = []
        for lane in range(lanes):
            if element.format is not None:
                rounder = FloatRounder(element.format, exponent_shape=scaled_shape,
                                       sig_bits=sig_bits, sr_bits=self._sr_bits, saturate=True)
                m.d.comb += [
                    rounder.mode.eq(s3.cfg.rounding),
                    rounder.draw.eq(draws.draws[lane]),
                ]
            else:
                rounder = CodebookRounder(element.n_bits, exponent_shape=scaled_shape,
                                          sig_bits=sig_bits, codebook=element.codebook)
                if element.loadable:
                    m.d.comb += rounder.levels.eq(s3.cfg.levels)
            m.submodules[f"round{lane}"] = rounder
            m.d.comb += [
                rounder.en.eq(advance),
                rounder.sign.eq(s3_row[lane].sign),
                rounder.exponent.eq(s3_row[lane].exponent),
                rounder.significand.eq(s3_row[lane].significand),
            ]
            lane_codes.append((rounder.code, type(rounder).LATENCY))

        # The outlier records: each takes the draw of its own position, captured when its
        # beat passes (the records are rounded with the block's last beat).
        record_codes = []
        for j in range(k):
            rounder = FloatRounder(self._outliers.record_format, exponent_shape=scaled_shape,
                                   sig_bits=record_sig_bits, sr_bits=self._sr_bits,
                                   saturate=True)
            m.submodules[f"record_round{j}"] = rounder
            kept_draw = Signal(self._sr_bits, name=f"record_draw{j}")
            draw = Signal(self._sr_bits, name=f"record_draw{j}_now")
            index = s3.records[j].index
            in_beat_now = index[lane_bits:] == s3.beat
            m.d.comb += draw.eq(kept_draw)
            for lane in range(lanes):
                with m.If(in_beat_now & (index[:lane_bits] == lane)):
                    m.d.comb += draw.eq(draws.draws[lane])
            with m.If(s3.valid & advance):
                m.d.sync += kept_draw.eq(draw)
            m.d.comb += [
                rounder.en.eq(advance),
                rounder.sign.eq(s3_records[j].sign),
                rounder.exponent.eq(s3_records[j].exponent),
                rounder.significand.eq(s3_records[j].significand),
                rounder.mode.eq(s3.cfg.rounding),
                rounder.draw.eq(draw),
            ]
            record_codes.append((rounder.code, FloatRounder.LATENCY))

        latency = max(latency for _, latency in lane_codes + record_codes)
        lane_codes = [delayed(m, code, latency - lag, en=advance, name=f"lane{lane}_code")
                      for lane, (code, lag) in enumerate(lane_codes)]
        record_codes = [delayed(m, code, latency - lag, en=advance, name=f"record{j}_code")
                        for j, (code, lag) in enumerate(record_codes)]
        stage = delayed(m, s3, latency, en=advance, name="rounding")

        # Output: collect the codes of a block into the payload; present it when complete.
        codes = self.o.payload.codes
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(advance & stage.valid):
            with m.Switch(stage.beat):
                for beat in range(beats):
                    with m.Case(beat):
                        for lane, code in enumerate(lane_codes):
                            outlier = stage.outlier_lanes[lane] if k else C(0, 1)
                            m.d.sync += codes[beat * lanes + lane].eq(
                                Mux(stage.special | outlier, 0, code))
            with m.If(stage.end):
                m.d.sync += [
                    self.o.valid.eq(1),
                    self.o.payload.scale.eq(Mux(stage.special, SCALE_NAN,
                                                stage.shared + SCALE_BIAS)),
                    self.o.payload.last.eq(stage.last),
                ]
                if k:
                    m.d.sync += self.o.payload.count.eq(stage.cfg.outliers)
                for j, code in enumerate(record_codes):
                    unused_record = stage.special | (j >= stage.cfg.outliers)
                    m.d.sync += [
                        self.o.payload.outliers[j].index.eq(
                            Mux(unused_record, 0, stage.records[j].index)),
                        self.o.payload.outliers[j].code.eq(Mux(unused_record, 0, code)),
                    ]
        return m


class OutlierExtractor(MXQuantizer):
    """The quantizer with outlier records: ``outliers`` is required (``k`` >= 1). Finds the
    ``K`` largest magnitudes of every block at one beat per cycle, takes the shared exponent
    from the rest and emits the records in the block's payload. See :class:`MXQuantizer`."""

    def __init__(self, *, outliers, **kwargs):
        if outliers is None or getattr(outliers, "k", 0) < 1:
            raise ValueError(f"An outlier extractor needs an OutlierFormat with k >= 1, "
                             f"not {outliers!r}")
        super().__init__(outliers=outliers, **kwargs)


class NonUniformEncoder(MXQuantizer):
    """The quantizer with codebook elements: ``codebook`` is required (a Codebook, fixed, or
    an index width for levels loaded through ``cfg.levels``). See :class:`MXQuantizer`."""

    def __init__(self, *, codebook, **kwargs):
        if codebook is None:
            raise ValueError("A non-uniform encoder needs a codebook, not None")
        super().__init__(codebook=codebook, **kwargs)
