"""Decompression engine: compressed frames (``docs/codec.md``) in as memory words, float elements
out, with one status entry per frame (SPEC section 5).

Inside, in stream order: a frame gate and a CRC-32 over the incoming words, a
:class:`hdl.packer.BitUnpacker`, the header reader (a small state machine here), the block
parser :class:`hdl.unzero.ZeroDecompressor`, one :class:`hdl.mx_dequantizer.MXDequantizer` per
built-in element choice, and an output stage that drops the block padding of every row.
"""

from amaranth.hdl import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.crc import catalog
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from golden.codebook import Codebook, LEVEL_BITS, _check_n_bits
from golden.codec import ELEMENT_IDS, CODEBOOK_ID, MAGIC, SHAPE_PRODUCT_LIMIT, VERSION
from golden.formats import FORMATS
from golden.mx import check_block
from golden.outliers import check_outliers
from .mx_dequantizer import MXDequantizer
from .mx_layouts import check_in_format, check_lanes, float_beat_layout
from .packer import BitUnpacker, packer_word_layout
from .frame_params import (ZeroMode, check_elements, check_max_ndim, check_word_bits,
                           element_code_bits)
from .unzero import DecodeError, ZeroDecompressor


__all__ = ["DecompressionEngine", "DecodeError", "status_layout"]


#: Depth of the queue of per-block tags beside the dequantizers (blocks in flight).
_TAG_DEPTH = 16


def status_layout(max_ndim):
    """One status entry per frame: ``code`` (:class:`DecodeError`), ``offset`` (word offset of
    the field where the error was found; the trailer's for an ok frame), ``ndim`` and ``dims``
    (``max_ndim`` dimensions, axis 0 first, 0 past ``ndim``; meaningful for an ok frame)."""
    return data.StructLayout({"code": DecodeError, "offset": 32, "ndim": 4,
                              "dims": data.ArrayLayout(32, max_ndim)})


class DecompressionEngine(wiring.Component):
    """Decodes compressed frames into float elements.

    Words of ``W`` bits enter on ``i`` (``last`` on each frame's final word, the trailer of a
    good frame). The elements of a good frame leave on ``o`` in C order, bit-exact
    :func:`golden.decompress` rounded to ``out_format`` (nearest even; NaN blocks as the
    canonical NaN): each row (the last axis, ``dims[-1]`` elements) as
    ``ceil(dims[-1] / lanes)`` beats, lanes past the row's end 0, ``last`` on the frame's
    final beat. A frame without elements (a zero dimension) has no beats. ``status`` carries
    one entry per frame, in frame order, when the frame has been decoded or rejected.

    Checks (``docs/codec.md`` "Decoding and errors", seen in stream order, so a field error may
    be reported for a frame whose CRC is also wrong): magic, version, the header fields
    (``BAD_FIELD``; the shape product below 2^53 is checked beside the payload and reported
    at the trailer), frames this build cannot decode (``UNSUPPORTED``: word width, block size,
    an element or codebook not among ``elems``, ``K`` above the build's, ``D``/``Mo`` other
    than the build's with ``K > 0``, ``ndim > max_ndim``), the payload (``RECORD_COUNT``,
    ``RLE_OVERRUN``, ``RUN_PAST_BLOCK``, ``TRUNCATED``), zero padding, the trailer's CRC-32
    of all earlier words (upper half 0 for ``W`` = 64) and that it is the word with ``last``
    (else ``TRAILING_GARBAGE``). On an error the rest of the frame's words are read and
    dropped; ``o`` never carries ``last`` for that frame (beats already sent stay sent; the
    status says to discard them), and the next frame decodes normally. The final block of a
    frame is held until its trailer is checked, so ``last`` only ever ends a good frame.

    Parameters
    ----------
    out_format : str
        ``"fp32"``, ``"bf16"`` or ``"fp16"``.
    elems : tuple
        Element choices, one :class:`MXDequantizer` each, selected per frame by the header:
        element names of :data:`golden.ELEMENT_IDS`, :class:`golden.Codebook` (levels fixed,
        taken for a frame whose levels equal them) and ints ``N`` (1..4: any ``N``-bit
        codebook, levels from the frame header).
    block : int
        ``B`` (power of two, 2..64); frames of other block sizes are unsupported.
    lanes : int
        Elements per output beat (power of two, 1..block).
    outliers : golden.OutlierFormat or None
        Most records per block (``k``) and their ``D``, ``Mo``; a frame may have ``K`` 0..k.
    word_bits : int
        ``W``, 32 or 64.
    max_ndim : int
        Most axes of a frame (1..15).

    Attributes
    ----------
    i : In(stream.Signature(packer_word_layout(word_bits)))
        Frame words: ``word``, ``last``.
    o : Out(stream.Signature(float_beat_layout(out_format, lanes)))
        Elements: ``data`` (``lanes`` codes), ``last``.
    status : Out(stream.Signature(status_layout(max_ndim)))
        One entry per frame. The engine waits (takes no more fields) while an entry is not
        taken.

    Throughput: the header takes about two cycles per field; blocks are parsed at one field a
    cycle (an rle block takes one more, see :class:`ZeroDecompressor`) and dequantized at ``lanes`` elements a cycle
    (:attr:`MXDequantizer.LATENCY` cycles of latency). Words of the next frame enter once the
    current frame's final field has been read.
    """

    def __init__(self, *, out_format="fp32", elems=("e4m3",), block=32, lanes=1,
                 outliers=None, word_bits=32, max_ndim=4):
        self._out_format_name = out_format
        self._out_format = check_in_format(out_format, "Output format")
        self._elems = check_elements(elems)
        self._block = check_block(block)
        self._lanes = check_lanes(lanes, self._block)
        self._outliers = check_outliers(outliers, self._block)
        self._word_bits = check_word_bits(word_bits)
        self._max_ndim = check_max_ndim(max_ndim)
        super().__init__({
            "i": In(stream.Signature(packer_word_layout(self._word_bits))),
            "o": Out(stream.Signature(float_beat_layout(out_format, self._lanes))),
            "status": Out(stream.Signature(status_layout(max_ndim))),
        })

    @property
    def elems(self):
        return self._elems

    @property
    def max_ndim(self):
        return self._max_ndim

    def elaborate(self, platform):
        m = Module()
        W, B, lanes = self._word_bits, self._block, self._lanes
        lw = W.bit_length() - 1
        lb = B.bit_length() - 1
        outliers = self._outliers
        k_max = outliers.k
        max_ndim = self._max_ndim
        elems = self._elems
        n_entries = len(elems)
        wmax = max(element_code_bits(e) for e in elems)
        loadable_bits = max((e for e in elems if isinstance(e, int)
                             and not isinstance(e, bool)), default=0)

        unpacker = m.submodules.unpacker = BitUnpacker(word_bits=W)
        parser = m.submodules.parser = ZeroDecompressor(
            block=B, lanes=lanes, word_bits=W, code_bits=wmax,
            outliers=outliers if k_max else None)
        crc = m.submodules.crc = catalog.CRC32_ISO_HDLC(data_width=W).create()

        # --- frame gate and CRC ------------------------------------------------------------
        gate = Signal()             # the current frame's final word is in: hold the next one
        frame_done = Signal()       # a field that used up the frame's final word is taken
        m.d.comb += [
            unpacker.i.payload.eq(self.i.payload),
            unpacker.i.valid.eq(self.i.valid & ~gate),
            self.i.ready.eq(unpacker.i.ready & ~gate),
            frame_done.eq(unpacker.o.valid & unpacker.o.ready & unpacker.o.payload.last),
            crc.data.eq(self.i.payload.word),
            crc.valid.eq(self.i.valid & self.i.ready & ~self.i.payload.last),
            crc.start.eq(frame_done),
        ]
        with m.If(self.i.valid & self.i.ready & self.i.payload.last):
            m.d.sync += gate.eq(1)
        with m.If(frame_done):
            m.d.sync += gate.eq(0)

        # --- request routing: header reader or block parser ---------------------------------
        (MAGIC_S, VERSION_S, FIELDS, SEED, NDIM, DIMS, LEVELS, HPAD, PAYLOAD, PPAD, TRAILER,
         PRODUCT, DRAIN) = range(13)
        state = Signal(range(13), init=MAGIC_S)
        req_valid = Signal(init=1)
        req_width = Signal(range(W + 1), init=32)
        in_payload = Signal()
        m.d.comb += in_payload.eq(state == PAYLOAD)
        m.d.comb += [
            unpacker.req.valid.eq(Mux(in_payload, parser.req.valid, req_valid)),
            unpacker.req.payload.width.eq(Mux(in_payload, parser.req.payload.width, req_width)),
            unpacker.req.payload.align.eq(0),
            parser.req.ready.eq(unpacker.req.ready & in_payload),
            parser.field.valid.eq(unpacker.o.valid & in_payload),
            parser.field.payload.eq(unpacker.o.payload),
        ]
        with m.If(unpacker.req.valid & unpacker.req.ready & ~in_payload):
            m.d.sync += req_valid.eq(0)

        # Bit position in the frame, and where the field in flight starts.
        pos = Signal(32 + lw + 1)
        field_start = Signal.like(pos)
        prev_start = Signal.like(pos)   # the field before: the parser fails it with one more
        with m.If(unpacker.req.valid & unpacker.req.ready):     # request in flight (err.spec)
            m.d.sync += [field_start.eq(pos), prev_start.eq(field_start),
                         pos.eq(pos + unpacker.req.payload.width)]
        with m.If(frame_done):
            m.d.sync += pos.eq(0)
        pad_width = Signal(range(W))
        m.d.comb += pad_width.eq(-pos[:lw])

        # --- frame registers -------------------------------------------------------------------
        zero_mode = Signal(ZeroMode)
        frame_k = Signal(range(k_max + 1))
        frame_n = Signal(3)
        sel = Signal(range(max(n_entries, 2)))
        ndim = Signal(4)
        dims = Signal(data.ArrayLayout(32, max_ndim))
        axis = Signal(range(16))
        n_lead = max(max_ndim - 1, 0)
        lead = Signal(data.ArrayLayout(32, max(n_lead, 1)))
        d_last = Signal(32)
        empty = Signal()
        level_index = Signal(5)
        previous_level = Signal(LEVEL_BITS)
        frame_levels = Signal(data.ArrayLayout(LEVEL_BITS, 1 << max(loadable_bits, 1)))
        fixed = [(e, elem) for e, elem in enumerate(elems) if isinstance(elem, Codebook)]
        matching = Signal(max(len(fixed), 1))

        # (a Mux chain, not an Array: Icarus leaves an always block on a constant index at X)
        frame_code_bits = C(element_code_bits(elems[0]), range(wmax + 1))
        for e, elem in enumerate(elems[1:], 1):
            frame_code_bits = Mux(sel == e, element_code_bits(elem), frame_code_bits)
        m.d.comb += [
            parser.cfg.zero_mode.eq(zero_mode),
            parser.cfg.code_bits.eq(frame_code_bits),
        ]
        if k_max:
            m.d.comb += parser.cfg.k.eq(frame_k)

        # --- status ---------------------------------------------------------------------------
        release = Signal()          # the frame's final block (held in the parser) may go
        release_ok = Signal()       # ... to the dequantizer (else it is dropped)
        with m.If(self.status.valid & self.status.ready):
            m.d.sync += self.status.valid.eq(0)

        def request(next_state, width):
            m.d.sync += [state.eq(next_state), req_valid.eq(1), req_width.eq(width)]

        def finish(code, frame_over, offset=None):
            m.d.sync += [
                self.status.valid.eq(1),
                self.status.payload.code.eq(code),
                self.status.payload.offset.eq((field_start if offset is None else offset) >> lw),
                self.status.payload.ndim.eq(ndim),
                self.status.payload.dims.eq(dims),
            ]
            # The frame's final block, held in the parser, goes on or is dropped (a previous
            # frame's final block still waiting there keeps its verdict).
            with m.If(~release):
                m.d.sync += [release.eq(parser.o.valid & parser.o.payload.last),
                             release_ok.eq(code == DecodeError.OK)]
            with m.If(frame_over):
                request(MAGIC_S, 32)
            with m.Else():
                request(DRAIN, W)

        # --- shape product (below 2^53), bit-serial beside the payload -------------------------
        limit_bits = SHAPE_PRODUCT_LIMIT.bit_length() - 1
        prod_busy = Signal()
        prod_big = Signal()
        prod = Signal(limit_bits)
        acc = Signal(limit_bits)
        prod_axis = Signal(range(max_ndim + 1))
        prod_bit = Signal(5)
        prod_start = Signal()
        with m.If(prod_start):
            m.d.sync += [prod_busy.eq(1), prod_big.eq(0), prod.eq(1), acc.eq(0),
                         prod_axis.eq(0), prod_bit.eq(31)]
        with m.Elif(prod_busy):
            dim = dims[prod_axis[:max(1, (max_ndim - 1).bit_length())]] if max_ndim > 1 \
                else dims[0]
            with m.If(prod_axis == max_ndim):
                m.d.sync += prod_busy.eq(0)
            with m.Elif(dim <= 1):
                m.d.sync += prod_axis.eq(prod_axis + 1)
            with m.Else():
                acc_next = Signal(64)
                m.d.comb += acc_next.eq((acc << 1) + Mux(dim.bit_select(prod_bit, 1), prod, 0))
                with m.If(acc_next >= SHAPE_PRODUCT_LIMIT):
                    m.d.sync += [prod_big.eq(1), prod_busy.eq(0)]
                with m.Elif(prod_bit == 0):
                    m.d.sync += [prod.eq(acc_next), acc.eq(0), prod_bit.eq(31),
                                 prod_axis.eq(prod_axis + 1)]
                with m.Else():
                    m.d.sync += [acc.eq(acc_next), prod_bit.eq(prod_bit - 1)]

        # --- block commands ---------------------------------------------------------------------
        cmd_valid = Signal()
        col = Signal(32)
        idx = Signal(data.ArrayLayout(32, max(n_lead, 1)))
        rem = Signal(33)
        m.d.comb += rem.eq(d_last - col)
        row_end = Signal()
        m.d.comb += row_end.eq(rem <= B)
        all_max = Signal()
        m.d.comb += all_max.eq(Cat(*(idx[s] == lead[s] - 1 for s in range(n_lead))).all()
                               if n_lead else 1)
        m.d.comb += [
            parser.cmd.valid.eq(cmd_valid),
            parser.cmd.payload.elements.eq(Mux(row_end, rem, B)),
            parser.cmd.payload.last.eq(row_end & all_max),
        ]
        with m.If(parser.cmd.valid & parser.cmd.ready):
            with m.If(row_end & all_max):
                m.d.sync += cmd_valid.eq(0)
            with m.Elif(row_end):
                m.d.sync += col.eq(0)
                carry = C(1, 1)
                for s in reversed(range(n_lead)):
                    at_max = idx[s] == lead[s] - 1
                    with m.If(carry):
                        m.d.sync += idx[s].eq(Mux(at_max, 0, idx[s] + 1))
                    carry = carry & at_max
            with m.Else():
                m.d.sync += col.eq(col + B)

        def start_payload():
            m.d.comb += prod_start.eq(1)
            with m.If(empty):
                request(TRAILER, W)
            with m.Else():
                m.d.sync += [state.eq(PAYLOAD), cmd_valid.eq(1), col.eq(0), idx.eq(0)]

        def end_header():
            with m.If(pad_width != 0):
                request(HPAD, pad_width)
            with m.Else():
                start_payload()

        # --- the header reader --------------------------------------------------------------------
        value = unpacker.o.payload.value
        truncated = unpacker.o.payload.truncated
        field_last = unpacker.o.payload.last
        may_take = ~self.status.valid & ~in_payload & (state != PRODUCT)
        with m.If(state == FIELDS):
            m.d.comb += unpacker.o.ready.eq(may_take & ~parser.o.valid)
        with m.Elif(in_payload):
            m.d.comb += unpacker.o.ready.eq(parser.field.ready)
        with m.Else():
            m.d.comb += unpacker.o.ready.eq(may_take)
        take = unpacker.o.valid & unpacker.o.ready & ~in_payload

        def checked(errors, proceed):
            """``errors``: (condition, code) pairs, in order; then a frame ending here is
            truncated; else ``proceed()``."""
            with m.If(truncated):
                finish(DecodeError.TRUNCATED, 1)
            for condition, code in errors:
                with m.Elif(condition):
                    finish(code, field_last)
            with m.Elif(field_last):
                finish(DecodeError.TRUNCATED, 1)
            with m.Else():
                proceed()

        with m.If(take):
            with m.Switch(state):
                with m.Case(MAGIC_S):
                    checked([(value[:32] != MAGIC, DecodeError.BAD_MAGIC)],
                            lambda: request(VERSION_S, 8))
                with m.Case(VERSION_S):
                    checked([(value[:8] != VERSION, DecodeError.BAD_VERSION)],
                            lambda: request(FIELDS, 32))
                with m.Case(FIELDS):
                    ww, zm, sr = value[0], value[1:3], value[5:10]
                    lbf, el, k, d, mo, n = (value[10:13], value[13:19], value[19:22],
                                            value[22:25], value[25:29], value[29:32])
                    is_cb = el == CODEBOOK_ID
                    bad = ((zm == 3) | (sr == 0) | (sr > 24) | (lbf == 0) | (lbf > 6)
                           | (~is_cb & (el >= len(ELEMENT_IDS))) | (n > 4)
                           | (is_cb != (n != 0)) | (k > 4) | (k >= (C(1, 7) << lbf))
                           | ~((k == 0) & (d == 0) & (mo == 0)) & ((d == 0) | (d > 6) | (mo > 12)))
                    found = Signal(name="element_found")
                    chosen = Signal.like(sel, name="element_chosen")
                    for e, elem in reversed(list(enumerate(elems))):
                        if isinstance(elem, str):
                            hit = ~is_cb & (el == ELEMENT_IDS.index(elem))
                        else:
                            hit = is_cb & (n == (elem.n_bits if isinstance(elem, Codebook)
                                                 else elem))
                        with m.If(hit):
                            m.d.comb += [found.eq(1), chosen.eq(e)]
                    d_build = outliers.exp_bits if k_max else 0
                    mo_build = outliers.man_bits if k_max else 0
                    unsupported = ((ww != (W == 64)) | (lbf != lb) | ~found | (k > k_max)
                                   | ((k != 0) & ((d != d_build) | (mo != mo_build))))

                    def fields_ok():
                        m.d.sync += [zero_mode.eq(zm), frame_n.eq(n), sel.eq(chosen)]
                        if k_max:
                            m.d.sync += frame_k.eq(k)
                        for j, (e, elem) in enumerate(fixed):
                            m.d.sync += matching[j].eq(n == elem.n_bits)
                        request(SEED, 32)
                    checked([(bad, DecodeError.BAD_FIELD),
                             (unsupported, DecodeError.UNSUPPORTED)], fields_ok)
                with m.Case(SEED):
                    checked([], lambda: request(NDIM, 4))
                with m.Case(NDIM):
                    def ndim_ok():
                        m.d.sync += [ndim.eq(value[:4]), axis.eq(0), dims.eq(0), d_last.eq(0),
                                     empty.eq(0)]
                        m.d.sync += [lead[s].eq(1) for s in range(n_lead)]
                        request(DIMS, 32)
                    checked([(value[:4] == 0, DecodeError.BAD_FIELD),
                             (value[:4] > max_ndim, DecodeError.UNSUPPORTED)], ndim_ok)
                with m.Case(DIMS):
                    def dims_ok():
                        dim = value[:32]
                        for a in range(max_ndim):
                            with m.If(axis == a):
                                m.d.sync += dims[a].eq(dim)
                        with m.If(dim == 0):
                            m.d.sync += empty.eq(1)
                        with m.If(axis + 1 == ndim):
                            m.d.sync += d_last.eq(dim)
                            with m.If(frame_n != 0):
                                m.d.sync += [level_index.eq(0)]
                                request(LEVELS, LEVEL_BITS)
                            with m.Else():
                                end_header()
                        with m.Else():
                            if n_lead:
                                m.d.sync += [lead[s].eq(lead[s + 1]) for s in range(n_lead - 1)]
                                m.d.sync += lead[n_lead - 1].eq(dim)
                            m.d.sync += axis.eq(axis + 1)
                            request(DIMS, 32)
                    checked([], dims_ok)
                with m.Case(LEVELS):
                    level = value[:LEVEL_BITS]
                    bad_level = Mux(level_index == 0, level != 0, level <= previous_level)
                    now = []
                    for j, (e, elem) in enumerate(fixed):
                        layout = data.ArrayLayout(LEVEL_BITS, len(elem.level_codes))
                        table = C(layout.const(list(elem.level_codes)).as_bits(), layout.size)
                        nb = elem.n_bits
                        same = table.word_select(level_index[:nb], LEVEL_BITS) == level
                        now.append(matching[j] & (same | (level_index >= (1 << nb))))
                    final_level = level_index + 1 == (C(1, 5) << frame_n)
                    picked = Signal(name="codebook_found")
                    pick = Signal.like(sel, name="codebook_chosen")
                    loadable = [(e, elem) for e, elem in enumerate(elems)
                                if isinstance(elem, int) and not isinstance(elem, bool)]
                    for e, elem in reversed(loadable):
                        with m.If(frame_n == elem):
                            m.d.comb += [picked.eq(1), pick.eq(e)]
                    for j, (e, elem) in reversed(list(enumerate(fixed))):
                        with m.If(now[j] & (frame_n == elem.n_bits)):
                            m.d.comb += [picked.eq(1), pick.eq(e)]

                    def level_ok():
                        m.d.sync += [previous_level.eq(level), level_index.eq(level_index + 1)]
                        if loadable_bits:
                            for j in range(1 << loadable_bits):
                                with m.If(level_index == j):
                                    m.d.sync += frame_levels[j].eq(level)
                        for j in range(len(fixed)):
                            m.d.sync += matching[j].eq(now[j])
                        with m.If(final_level):
                            m.d.sync += sel.eq(pick)
                            end_header()
                        with m.Else():
                            request(LEVELS, LEVEL_BITS)
                    checked([(bad_level, DecodeError.BAD_FIELD),
                             (final_level & ~picked, DecodeError.UNSUPPORTED)], level_ok)
                with m.Case(HPAD):
                    checked([(value != 0, DecodeError.NONZERO_PADDING)], start_payload)
                with m.Case(PPAD):
                    checked([(value != 0, DecodeError.NONZERO_PADDING)],
                            lambda: request(TRAILER, W))
                with m.Case(TRAILER):
                    crc_bad = value[:32] != crc.crc
                    if W == 64:
                        crc_bad = crc_bad | (value[32:] != 0)
                    with m.If(truncated):
                        finish(DecodeError.TRUNCATED, 1)
                    with m.Elif(~field_last):
                        finish(DecodeError.TRAILING_GARBAGE, 0)
                    with m.Elif(crc_bad):
                        finish(DecodeError.CRC_MISMATCH, 1)
                    with m.Elif(prod_busy):
                        m.d.sync += state.eq(PRODUCT)
                    with m.Elif(prod_big):
                        finish(DecodeError.BAD_FIELD, 1)
                    with m.Else():
                        finish(DecodeError.OK, 1)
                with m.Case(DRAIN):
                    with m.If(field_last):
                        request(MAGIC_S, 32)
                    with m.Else():
                        request(DRAIN, W)
        # The shape product of a frame whose trailer was good.
        with m.If((state == PRODUCT) & ~prod_busy & ~self.status.valid):
            finish(Mux(prod_big, DecodeError.BAD_FIELD, DecodeError.OK), 1)

        # The block parser: its errors, and the end of the payload.
        m.d.comb += parser.err.ready.eq(in_payload & ~self.status.valid)
        with m.If(parser.err.valid & parser.err.ready):
            m.d.sync += cmd_valid.eq(0)
            with m.If(parser.err.payload.spec):
                # A request went out after the failing field: drain from its field on.
                finish(parser.err.payload.code, C(0, 1), offset=prev_start)
                m.d.sync += req_valid.eq(0)
            with m.Else():
                finish(parser.err.payload.code, parser.err.payload.last)
        with m.Elif(in_payload & parser.o.valid & parser.o.payload.last):
            with m.If(pad_width != 0):
                request(PPAD, pad_width)
            with m.Else():
                request(TRAILER, W)

        # --- blocks to the dequantizers -------------------------------------------------------------
        blk = Signal.like(parser.o.payload)
        blk_valid = Signal()
        blk_sel = Signal.like(sel)
        blk_levels = Signal.like(frame_levels)
        tags = m.submodules.tags = SyncFIFOBuffered(
            width=len(sel) + len(blk.elements) + 1, depth=_TAG_DEPTH)
        blk_taken = Signal()
        final = parser.o.payload.last
        discard = final & release & ~release_ok
        go = ~final | (release & release_ok)
        # A block's tag is queued as it enters the block register: the dequantizer emits a
        # block's first beats before it accepts the block (with its last group).
        m.d.comb += parser.o.ready.eq(discard | (go & (~blk_valid | blk_taken) & tags.w_rdy))
        with m.If(blk_taken):
            m.d.sync += blk_valid.eq(0)
        with m.If(parser.o.valid & parser.o.ready):
            with m.If(final):
                m.d.sync += release.eq(0)
            with m.If(~discard):
                m.d.sync += [blk_valid.eq(1), blk.eq(parser.o.payload), blk_sel.eq(sel),
                             blk_levels.eq(frame_levels)]

        dequantizers = []
        for e, elem in enumerate(elems):
            kwargs = dict(block=B, out_format=self._out_format_name, lanes=lanes,
                          outliers=outliers if k_max else None)
            if isinstance(elem, str):
                dq = MXDequantizer(elem=elem, **kwargs)
            else:
                dq = MXDequantizer(codebook=elem, **kwargs)
            m.submodules[f"dequantizer{e}"] = dq
            dequantizers.append(dq)
            bits = element_code_bits(elem)
            m.d.comb += [
                dq.i.valid.eq(blk_valid & (blk_sel == e)),
                dq.i.payload.scale.eq(blk.scale),
                dq.i.payload.last.eq(0),
            ]
            for j in range(B):
                m.d.comb += dq.i.payload.codes[j].eq(blk.codes[j][:bits])
            if k_max:
                m.d.comb += [dq.i.payload.count.eq(blk.count),
                             dq.i.payload.outliers.eq(blk.outliers)]
            if isinstance(elem, int) and not isinstance(elem, bool):
                for j in range(1 << elem):
                    m.d.comb += dq.cfg.levels[j].eq(blk_levels[j])
            with m.If(dq.i.valid & dq.i.ready):
                m.d.comb += blk_taken.eq(1)
        m.d.comb += [
            tags.w_en.eq(parser.o.valid & parser.o.ready & ~discard),
            tags.w_data.eq(Cat(sel, parser.o.payload.elements, parser.o.payload.last)),
        ]

        # --- output: drop the padding of every row --------------------------------------------
        head_sel = tags.r_data[:len(sel)]
        head_elements = tags.r_data[len(sel):len(sel) + len(blk.elements)]
        head_final = tags.r_data[-1]
        beats = B // lanes
        beat = Signal(range(beats))
        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        got = Signal()
        got_data = Signal.like(dequantizers[0].o.payload.data)
        for e, dq in enumerate(dequantizers):
            m.d.comb += dq.o.ready.eq(advance & tags.r_rdy & (head_sel == e))
            with m.If(dq.o.valid & dq.o.ready):
                m.d.comb += [got.eq(1), got_data.eq(dq.o.payload.data)]
        first = Signal(range(B + 1))
        m.d.comb += first.eq(beat * lanes)
        with m.If(got):
            m.d.sync += beat.eq(Mux(beat == beats - 1, 0, beat + 1))
            m.d.comb += tags.r_en.eq(beat == beats - 1)
            with m.If(first < head_elements):
                m.d.sync += [
                    self.o.valid.eq(1),
                    self.o.payload.last.eq(head_final & (first + lanes >= head_elements)),
                ]
                for lane in range(lanes):
                    m.d.sync += self.o.payload.data[lane].eq(
                        Mux(first + lane < head_elements, got_data[lane], 0))
        return m
