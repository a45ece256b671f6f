"""The compression engine: floats in, compressed frames (``docs/codec.md``) out, byte for byte
:func:`golden.compress`.

One core: row padding, one :class:`~hdl.mx_quantizer.MXQuantizer` per built-in element choice,
a :class:`~hdl.zero.ZeroCompressor`, the header writer, a :class:`~hdl.packer.BitPacker` and the
CRC-32 trailer.
"""

from amaranth.hdl import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.crc import catalog
from amaranth.lib.wiring import In, Out

from golden.codebook import Codebook, LEVEL_BITS, _check_n_bits
from golden.codec import CODEBOOK_ID, ELEMENT_IDS, MAGIC, MAX_NDIM, VERSION
from golden.formats import FORMATS
from golden.mx import check_block
from golden.rng import check_sr_bits
from .float import RoundingMode
from .mx_layouts import check_block_outliers, check_in_format, check_lanes, levels_layout
from .mx_quantizer import MXQuantizer
from .packer import BitPacker, packer_word_layout
from .frame_params import (ZeroMode, check_elements, check_max_ndim, check_word_bits,
                           element_code_bits, element_id, element_levels)
from .zero import ZeroCompressor, zero_block_layout


__all__ = ["CompressionEngine", "compress_descriptor_layout", "compress_beat_layout"]


def _element_entries(elems):
    """``(element id, code bits, levels, elem, codebook)`` of each element choice (``codebook``
    a :class:`golden.Codebook` or the index width of a loadable one)."""
    return tuple((element_id(e), element_code_bits(e), element_levels(e),
                  e if isinstance(e, str) else None, None if isinstance(e, str) else e)
                 for e in check_elements(elems))


def compress_beat_layout(in_format, lanes):
    """Payload of :attr:`CompressionEngine.i`: ``data``, ``lanes`` float codes."""
    return data.StructLayout({"data": data.ArrayLayout(check_in_format(in_format).bits, lanes)})


def compress_descriptor_layout(*, elem_count=1, max_outliers=0, levels_bits=None, max_ndim=4):
    """Payload of :attr:`CompressionEngine.cfg`, one per frame:

    - ``element``: which of the engine's element choices (``range(elem_count)``);
    - ``rounding`` (:class:`~hdl.float.RoundingMode`) and ``seed`` (32 bits);
    - ``outliers``: ``K``, records per block (0..``max_outliers``), when the engine keeps
      outliers;
    - ``zero_mode`` (:class:`~hdl.zero.ZeroMode`);
    - ``levels``: ``2^N`` codebook levels (9 bits each, units of 2^-8), when an element choice
      is a loadable codebook (``N`` the widest such; a narrower one takes the first levels);
    - ``ndim`` (1..``max_ndim``) and ``dims`` (``max_ndim`` 32-bit sizes, axis 0 first; those
      from ``ndim`` on are ignored).

    A field outside its range (an ``element`` past the choices, ``K`` above the build's, zero
    mode 3, ``ndim`` 0 or above ``max_ndim``) makes the descriptor malformed: the engine pulses
    ``cfg_error`` and replaces each bad field (element 0, ``K`` = k, zero mode ``none``,
    ``ndim`` 1 or ``max_ndim``), so the frame it writes is still well formed.
    """
    fields = {"element": range(elem_count), "rounding": RoundingMode, "seed": 32}
    if max_outliers:
        fields["outliers"] = range(max_outliers + 1)
    fields["zero_mode"] = ZeroMode
    if levels_bits is not None:
        fields["levels"] = levels_layout(levels_bits)
    fields["ndim"] = range(max_ndim + 1)
    fields["dims"] = data.ArrayLayout(32, max_ndim)
    return data.StructLayout(fields)


class CompressionEngine(wiring.Component):
    """Compresses tensors of floats into frames of ``docs/codec.md``: the words of a frame are
    those of :func:`golden.compress` (little-endian) for the same tensor and configuration.

    For each frame the host sends a descriptor on ``cfg`` (element choice, rounding, seed,
    ``K``, zero mode, codebook levels, shape), then the tensor on ``i`` in C order, each row
    (the last axis) as ``ceil(dims[-1] / lanes)`` whole beats: lanes past a row's end are
    ignored (taken as +0). A frame with a zero dimension has no beats. The engine pads every row
    with +0 to a multiple of ``block`` (inserting zero beats while ``i`` waits), so the padded
    tensor is one quantizer frame, as :func:`golden.encode_blocks` pads the last axis, and
    stochastic rounding draws match. The frame leaves on ``o``: the header (written from the
    descriptor), the blocks (:class:`~hdl.zero.ZeroCompressor`), padding, and the CRC-32 word
    (``last``). Frames overlap: the descriptor of the next frame is taken as soon as the
    current one's beats are in and the queue has room (two descriptors; the back writes a
    frame's header from the queue and lets its descriptor go at the header's end).

    Parameters
    ----------
    in_format : str
        ``"fp32"``, ``"bf16"`` or ``"fp16"``: the input bit patterns.
    elems : tuple
        The element choices, each an element name of :data:`golden.codec.ELEMENT_IDS`, a
        :class:`golden.Codebook` (levels fixed) or an int ``N`` (1..4, a codebook of ``2^N``
        levels loaded per frame through ``cfg.levels``). One quantizer each; ``cfg.element``
        picks one per frame.
    block : int
        Elements per block (power of two, 2..64).
    lanes : int
        Elements per input beat (power of two, 1..block).
    sr_bits : int
        Bits per stochastic-rounding draw (1..24).
    outliers : None or OutlierFormat
        Outlier records of ``1-D-Mo`` with up to ``outliers.k`` per block; ``cfg.outliers``
        is the frame's ``K`` (0..k). The header carries ``D`` and ``Mo`` of this format whatever
        ``K`` (a frame with ``K = 0`` equals ``golden.compress`` with
        ``OutlierFormat(0, D, Mo)``); without outliers, ``K = D = Mo = 0``.
    word_bits : int
        Word width ``W``, 32 or 64.
    max_ndim : int
        Most axes of a tensor (1..15; default 4).

    Attributes
    ----------
    cfg : In(stream.Signature(compress_descriptor_layout(...)))
        One frame descriptor per frame (see :func:`compress_descriptor_layout`).
    i : In(stream.Signature(compress_beat_layout(in_format, lanes)))
        Element beats.
    o : Out(stream.Signature(packer_word_layout(word_bits)))
        Frame words, ``last`` on each frame's CRC word.
    cfg_error : Out(1)
        High for one cycle after a malformed descriptor was taken (see
        :func:`compress_descriptor_layout`).

    Throughput: ``min(lanes elements, W bits of frame)`` a cycle while ``o`` is ready, apart
    from the per-frame costs: the header (:attr:`header_steps` cycles, ``6 + max_ndim + 2^N``
    with ``2^N`` the most levels of a codebook choice), the final partial word and the CRC word
    (the trailer waits until every word before it has left: a few cycles), and the inserted
    row padding (one beat a cycle, like data). Compressible data run at ``lanes`` elements a
    cycle (the quantizer's rate); the worst case is incompressible data, e.g. ``none`` mode
    with 8-bit codes and ``lanes * 8 > W``, where the words limit the rate to ``W`` bits a
    cycle (``W / (w + 8 / B + ...)`` elements a cycle, with the block prefix). Frames
    overlap: the next descriptor and beats are taken while the previous frame drains.
    """

    def __init__(self, *, in_format="fp32", elems=("e4m3",), block=32, lanes=1, sr_bits=8,
                 outliers=None, word_bits=32, max_ndim=4):
        self._in_format_name = in_format
        self._in_format = check_in_format(in_format)
        self._entries = _element_entries(elems)
        self._elems = tuple(elems) if isinstance(elems, (tuple, list)) else (elems,)
        self._block = check_block(block)
        self._lanes = check_lanes(lanes, self._block)
        check_sr_bits(sr_bits)
        self._sr_bits = sr_bits
        self._outliers = check_block_outliers(outliers, self._block)
        self._word_bits = check_word_bits(word_bits)
        self._max_ndim = check_max_ndim(max_ndim)
        loadable = [e[4] for e in self._entries if isinstance(e[4], int)]
        self._levels_bits = max(loadable) if loadable else None
        self._desc_layout = compress_descriptor_layout(
            elem_count=len(self._entries), max_outliers=self._outliers.k,
            levels_bits=self._levels_bits, max_ndim=self._max_ndim)
        super().__init__({
            "cfg": In(stream.Signature(self._desc_layout)),
            "i":   In(stream.Signature(compress_beat_layout(in_format, self._lanes))),
            "o":   Out(stream.Signature(packer_word_layout(self._word_bits))),
            "cfg_error": Out(1),
        })

    @property
    def descriptor_layout(self):
        """Payload layout of :attr:`cfg` (:func:`compress_descriptor_layout`)."""
        return self._desc_layout

    @property
    def in_format(self):
        return self._in_format_name

    @property
    def elems(self):
        """The element choices, in ``cfg.element`` order."""
        return self._elems

    @property
    def block(self):
        return self._block

    @property
    def lanes(self):
        return self._lanes

    @property
    def sr_bits(self):
        return self._sr_bits

    @property
    def outliers(self):
        """The OutlierFormat (``k`` 0 without outliers)."""
        return self._outliers

    @property
    def word_bits(self):
        return self._word_bits

    @property
    def max_ndim(self):
        return self._max_ndim

    @property
    def levels_bits(self):
        """``N`` of ``cfg.levels`` (the widest loadable codebook), or None."""
        return self._levels_bits

    @property
    def header_steps(self):
        """Cycles of a frame's header (one field each)."""
        return 6 + self._max_ndim + max(e[2] for e in self._entries)

    def elaborate(self, platform):
        m = Module()
        lanes, block, k = self._lanes, self._block, self._outliers.k
        lb = block.bit_length() - 1
        w_bits = self._word_bits
        max_ndim = self._max_ndim
        entries = self._entries
        desc_layout = self._desc_layout
        widths = sorted({e[1] for e in entries})
        outliers = self._outliers if k else None

        # ---- Quantizers, one per element choice.
        quantizers = []
        for n, (_, _, _, elem, codebook) in enumerate(entries):
            q = MXQuantizer(in_format=self._in_format_name, elem=elem, block=block,
                            lanes=lanes, sr_bits=self._sr_bits, codebook=codebook,
                            outliers=outliers)
            m.submodules[f"quantizer{n}"] = q
            quantizers.append(q)

        # ---- Malformed descriptors: flagged, then each bad field replaced by the nearest valid
        # value, so that everything downstream only ever sees a well-formed frame.
        cfg_in = self.cfg.payload
        desc_ok = Signal(desc_layout)
        bad = []
        m.d.comb += desc_ok.eq(cfg_in)
        if len(entries) & (len(entries) - 1):
            bad.append(Value.cast(cfg_in.element) >= len(entries))
            with m.If(bad[-1]):
                m.d.comb += desc_ok.element.eq(0)
        if k and (k + 1) & k:
            bad.append(Value.cast(cfg_in.outliers) > k)
            with m.If(bad[-1]):
                m.d.comb += desc_ok.outliers.eq(k)
        bad.append(Value.cast(cfg_in.zero_mode) == 3)
        with m.If(bad[-1]):
            m.d.comb += desc_ok.zero_mode.eq(ZeroMode.NONE)
        bad.append(Value.cast(cfg_in.ndim) == 0)
        with m.If(bad[-1]):
            m.d.comb += desc_ok.ndim.eq(1)
        if (max_ndim + 1) & max_ndim:
            bad.append(Value.cast(cfg_in.ndim) > max_ndim)
            with m.If(bad[-1]):
                m.d.comb += desc_ok.ndim.eq(max_ndim)
        m.d.sync += self.cfg_error.eq(self.cfg.valid & self.cfg.ready & Cat(*bad).any())

        # Descriptors between the front and the back: a queue of two registers (the head is
        # the back's next frame). amaranth.lib.fifo.SyncFIFOBuffered(depth=2) is not used:
        # under Icarus 11 the engine took the wrong descriptor from it, and alone its r_rdy
        # stays X after reset.
        head = Signal(desc_layout)
        head_valid = Signal()
        tail = Signal(desc_layout)
        tail_valid = Signal()
        push = Signal()
        pop = Signal()
        with m.If(pop):
            with m.If(tail_valid):
                m.d.sync += [head.eq(tail), tail_valid.eq(0)]
            with m.Elif(push):
                m.d.sync += head.eq(desc_ok)
            with m.Else():
                m.d.sync += head_valid.eq(0)
        with m.Elif(push):
            with m.If(head_valid):
                m.d.sync += [tail.eq(desc_ok), tail_valid.eq(1)]
            with m.Else():
                m.d.sync += [head.eq(desc_ok), head_valid.eq(1)]

        # ---- Front: descriptors in, beats (with row padding) into the chosen quantizer.
        fdesc = Signal(desc_layout)
        running = Signal()
        # Positions count beats, not elements, and the last beat of a row and the last index
        # of an axis are kept rather than the sizes, so that the ends are equalities of
        # registers (no adder in front of the comparison).
        ll = lanes.bit_length() - 1
        row_len = Signal(32)
        last_beat = Signal(33 - ll)         # beats of the padded row, minus one
        row_beat = Signal(33 - ll)          # beat of the row of the next beat
        last_index = [Signal(32, name=f"last_index{a}") for a in range(max_ndim - 1)]
        index = [Signal(32, name=f"index{a}") for a in range(max_ndim - 1)]
        # `host`: the next beat comes from `i` (else it is padding). A register, set for the
        # next beat as one is taken, so that the handshake with `i` and the quantizer does not
        # wait for a 32-bit comparison.
        host = Signal()

        desc_in = desc_ok
        taken = Signal()
        m.d.comb += [
            self.cfg.ready.eq(~running & ~tail_valid),
            taken.eq(self.cfg.valid & self.cfg.ready),
            push.eq(taken),
        ]
        new_row_len = Signal(32)
        new_empty = Signal()
        # (Selections by Array rather than m.Switch: under Icarus a combinational process whose
        # selector never changes is never evaluated, amaranth issue 1629.)
        last_axis = [desc_in.dims[min(max(nd - 1, 0), max_ndim - 1)]
                     for nd in range(1 << len(desc_in.ndim))]
        m.d.comb += new_row_len.eq(Array(last_axis)[desc_in.ndim] if max_ndim > 1
                                   else desc_in.dims[0])
        m.d.comb += new_empty.eq(Cat((desc_in.dims[a] == 0) & (a < desc_in.ndim)
                                     for a in range(max_ndim)).any() | (desc_in.ndim == 0))
        with m.If(taken):
            m.d.sync += [
                fdesc.eq(desc_in),
                running.eq(~new_empty),
                host.eq(1),
                row_len.eq(new_row_len),
                last_beat.eq((((new_row_len + (block - 1)) >> lb) << (lb - ll)) - 1),
                row_beat.eq(0),
            ]
            for a in range(max_ndim - 1):
                m.d.sync += [
                    last_index[a].eq(Mux(a + 1 < desc_in.ndim, desc_in.dims[a] - 1, 0)),
                    index[a].eq(0),
                ]

        row_end = Signal()
        frame_end = Signal()
        m.d.comb += [
            row_end.eq(row_beat == last_beat),
            frame_end.eq(row_end & Cat(index[a] == last_index[a]
                                       for a in range(max_ndim - 1)).all()
                         if max_ndim > 1 else row_end),
        ]
        q_valid = Signal()
        q_ready = Signal()
        m.d.comb += [
            q_valid.eq(running & (~host | self.i.valid)),
            q_ready.eq(Array(q.i.ready for q in quantizers)[fdesc.element]),
            self.i.ready.eq(running & host & q_ready),
        ]
        beat = Signal(quantizers[0].i.payload.shape())
        for lane in range(lanes):
            m.d.comb += beat.data[lane].eq(
                Mux(host & (Cat(C(lane, ll), row_beat) < row_len), self.i.payload.data[lane], 0))
        m.d.comb += beat.last.eq(frame_end)
        for n, q in enumerate(quantizers):
            m.d.comb += [
                q.i.valid.eq(q_valid & (fdesc.element == n)),
                q.i.payload.eq(beat),
                q.cfg.rounding.eq(fdesc.rounding),
                q.cfg.seed.eq(fdesc.seed),
            ]
            if k:
                m.d.comb += q.cfg.outliers.eq(fdesc.outliers)
            if isinstance(entries[n][4], int):
                count = 1 << entries[n][4]
                m.d.comb += q.cfg.levels.as_value().eq(
                    fdesc.levels.as_value()[:count * LEVEL_BITS])
        with m.If(q_valid & q_ready):
            with m.If(row_end):
                m.d.sync += [row_beat.eq(0), host.eq(1)]   # (rows are not empty)
                for a in range(max_ndim - 1):
                    inner_done = Cat(index[b] == last_index[b]
                                     for b in range(a + 1, max_ndim - 1)).all() \
                        if a + 1 < max_ndim - 1 else C(1, 1)
                    with m.If(inner_done):
                        m.d.sync += index[a].eq(Mux(index[a] == last_index[a], 0, index[a] + 1))
                with m.If(frame_end):
                    m.d.sync += running.eq(0)
            with m.Else():
                m.d.sync += [row_beat.eq(row_beat + 1),
                             host.eq(Cat(C(0, ll), row_beat + 1) < row_len)]

        # ---- Back: header, blocks, padding, trailer, in frame order.
        m.submodules.zero = zero = ZeroCompressor(
            element_bits=tuple(widths), block=block, lanes=lanes, outliers=outliers,
            word_bits=w_bits)
        m.submodules.packer = packer = BitPacker(word_bits=w_bits, max_field_bits=w_bits)
        m.submodules.crc = crc = catalog.CRC32_ISO_HDLC(data_width=w_bits).create()

        # The header is written straight from the queue's head, which is let go at the
        # header's end: only the fields the blocks need are kept (`bdesc`), not the whole
        # descriptor once more.
        hdesc = head
        bdesc_fields = {"element": desc_layout.members["element"],
                        "zero_mode": desc_layout.members["zero_mode"]}
        if k:
            bdesc_fields["outliers"] = desc_layout.members["outliers"]
        # (and the compressor's code width, `width_select`: a register rather than a selection
        # by `bdesc.element`, which under Icarus would not be evaluated while the element stays
        # at its reset value, amaranth issue 1629)
        bdesc = Signal(data.StructLayout({**bdesc_fields,
                                          "width": range(len(widths))}))
        IDLE, HEADER, BLOCKS, DRAIN, TRAILER = range(5)
        state = Signal(range(5))
        steps = self.header_steps
        step = Signal(range(steps))
        got_last = Signal()                 # the frame's final block went into the compressor
        fill = Signal(range(w_bits))        # bits of the packer's partial word
        owed = Signal(range(8))             # words of the frame not yet out of the packer

        field_in = Signal()                 # a field goes towards the packer (see below)
        in_header = Signal()
        in_blocks = Signal()
        in_trailer = Signal()
        m.d.comb += [
            in_header.eq(state == HEADER),
            in_blocks.eq(state == BLOCKS),
            in_trailer.eq(state == TRAILER),
            pop.eq(in_header & field_in & (step == steps - 1)),
        ]
        b_empty = Signal()
        m.d.comb += b_empty.eq(Cat((hdesc.dims[a] == 0) & (a < hdesc.ndim)
                                   for a in range(max_ndim)).any() | (hdesc.ndim == 0))

        # What the chosen element writes into the header.
        elem_id = Signal(6)
        n_bits = Signal(3)
        level_count = Signal(range(17))
        level_values = [Signal(LEVEL_BITS, name=f"level{j}")
                        for j in range(max(e[2] for e in entries))]
        width_select = Signal(range(len(widths)))

        def by_element(values, element=hdesc.element):
            return Array(values)[element] if len(values) > 1 else values[0]
        m.d.comb += [
            elem_id.eq(by_element([C(e[0], 6) for e in entries])),
            n_bits.eq(by_element([C(e[2].bit_length() - 1 if e[2] else 0, 3)
                                  for e in entries])),
            level_count.eq(by_element([C(e[2], 5) for e in entries])),
            width_select.eq(by_element([C(widths.index(e[1]), len(width_select))
                                        for e in entries])),
        ]
        for j, level in enumerate(level_values):
            options = []
            for _, _, count, _, codebook in entries:
                if isinstance(codebook, Codebook) and j < count:
                    options.append(C(codebook.level_codes[j], LEVEL_BITS))
                elif isinstance(codebook, int) and j < count:
                    options.append(hdesc.levels[j])
                else:
                    options.append(C(0, LEVEL_BITS))
            m.d.comb += level.eq(by_element(options))

        header_value = Signal(w_bits)
        header_width = Signal(range(w_bits + 1))
        header_flush = Signal()
        d_bits, mo_bits = (self._outliers.exp_bits, self._outliers.man_bits) if k else (0, 0)
        k_field = Signal(3)
        m.d.comb += k_field.eq(hdesc.outliers if k else 0)
        fields = [
            (C(MAGIC, 32), 32),
            (Cat(C(VERSION, 8), C(int(w_bits == 64), 1), hdesc.zero_mode, hdesc.rounding,
                 C(self._sr_bits, 5), C(lb, 3), elem_id, k_field), 30),
            (Cat(C(d_bits, 3), C(mo_bits, 4), n_bits), 10),
            (hdesc.seed, 32),
            (hdesc.ndim, 4),
        ]
        values = [value for value, _ in fields]
        field_widths = [C(width, 6) for _, width in fields]
        for a in range(max_ndim):
            values.append(hdesc.dims[a])
            field_widths.append(Mux(a < hdesc.ndim, 32, 0))
        for j, level in enumerate(level_values):
            values.append(level)
            field_widths.append(Mux(j < level_count, LEVEL_BITS, 0))
        values.append(C(0, 1))
        field_widths.append(C(0, 6))
        assert len(values) == steps
        m.d.comb += [
            header_value.eq(Array(values)[step]),
            header_width.eq(Array(field_widths)[step]),
            header_flush.eq(step == steps - 1),
        ]

        # The compressor takes the chosen quantizer's blocks during the frame's blocks.
        take_blocks = Signal()
        m.d.comb += take_blocks.eq(in_blocks & ~got_last)
        zc_layout = zero_block_layout(max(widths), block, outliers)
        extended = []
        for n, q in enumerate(quantizers):
            payload = Signal(zc_layout, name=f"blocks{n}")
            m.d.comb += [
                payload.scale.eq(q.o.payload.scale),
                payload.last.eq(q.o.payload.last),
            ]
            m.d.comb += [payload.codes[j].eq(q.o.payload.codes[j]) for j in range(block)]
            if k:
                m.d.comb += [payload.count.eq(q.o.payload.count),
                             payload.outliers.eq(q.o.payload.outliers)]
            m.d.comb += q.o.ready.eq(take_blocks & (bdesc.element == n) & zero.i.ready)
            extended.append(payload)
        m.d.comb += [
            zero.i.valid.eq(take_blocks & Array(q.o.valid for q in quantizers)[bdesc.element]),
            zero.i.payload.eq(Array(extended)[bdesc.element]),
            zero.cfg.zero_mode.eq(bdesc.zero_mode),
        ]
        if len(widths) > 1:
            m.d.comb += zero.cfg.element.eq(bdesc.width)
        if k:
            m.d.comb += zero.cfg.outliers.eq(bdesc.outliers)

        # Fields into the packer, through a register: the choice among header, blocks and
        # trailer (and the compressor's field) is then not in front of the packer's shift in
        # the same cycle. `field_in`: a field goes into the register (the back advances).
        src_valid = Signal()
        field_ready = Signal()
        field = Signal(packer.i.payload.shape())
        field_valid = Signal()
        m.d.comb += [
            src_valid.eq(in_header | in_trailer | (in_blocks & zero.o.valid)),
            field_ready.eq(~field_valid | packer.i.ready),
            field_in.eq(src_valid & field_ready),
            zero.o.ready.eq(in_blocks & field_ready),
            packer.i.valid.eq(field_valid),
            packer.i.payload.eq(field),
        ]
        with m.If(field_in):
            m.d.sync += [
                field.value.eq(Mux(in_blocks, zero.o.payload.value,
                                   Mux(in_trailer, crc.crc, header_value))),
                field.width.eq(Mux(in_blocks, zero.o.payload.width,
                                   Mux(in_trailer, w_bits, header_width))),
                field.flush.eq(Mux(in_blocks, zero.o.payload.last, header_flush)),
                field.last.eq(in_trailer),
                field_valid.eq(1),
            ]
        with m.Elif(packer.i.ready):
            m.d.sync += field_valid.eq(0)
        packer_in = Signal()
        word_out = Signal()
        m.d.comb += [
            packer_in.eq(packer.i.valid & packer.i.ready),
            word_out.eq(packer.o.valid & packer.o.ready),
        ]
        # Mirror of the packer's fill, to know when every word of the frame has left.
        total = Signal(range(2 * w_bits))
        closes = Signal()
        rest = Signal(range(w_bits))
        pad_word = Signal()
        m.d.comb += [
            total.eq(fill + packer.i.payload.width),
            closes.eq(packer.i.payload.flush | packer.i.payload.last),
            rest.eq(total[:len(rest)]),
            pad_word.eq(closes & (rest != 0)),
        ]
        with m.If(packer_in):
            m.d.sync += [
                fill.eq(Mux(closes, 0, rest)),
                owed.eq(owed + total[len(rest)] + pad_word - word_out),
            ]
        with m.Elif(word_out):
            m.d.sync += owed.eq(owed - 1)

        with m.Switch(state):
            with m.Case(IDLE):
                with m.If(head_valid):
                    m.d.sync += [step.eq(0), state.eq(HEADER)]
            with m.Case(HEADER):
                with m.If(field_in):
                    m.d.sync += step.eq(step + 1)
                    with m.If(step == steps - 1):
                        m.d.sync += bdesc.eq(Cat(*(Value.cast(getattr(hdesc, name))
                                                   for name in bdesc_fields), width_select))
                        m.d.sync += [state.eq(Mux(b_empty, DRAIN, BLOCKS)), got_last.eq(0)]
            with m.Case(BLOCKS):
                with m.If(zero.i.valid & zero.i.ready & zero.i.payload.last):
                    m.d.sync += got_last.eq(1)
                with m.If(field_in & zero.o.payload.last):
                    m.d.sync += state.eq(DRAIN)
            with m.Case(DRAIN):
                with m.If((owed == 0) & ~field_valid):
                    m.d.sync += state.eq(TRAILER)
            with m.Case(TRAILER):
                with m.If(field_in):
                    m.d.sync += state.eq(IDLE)

        # ---- Output and CRC over every word but the trailer.
        wiring.connect(m, packer.o, wiring.flipped(self.o))
        m.d.comb += [
            crc.data.eq(packer.o.payload.word),
            crc.valid.eq(word_out & ~packer.o.payload.last),
            crc.start.eq(word_out & packer.o.payload.last),
        ]
        return m
