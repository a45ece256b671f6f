"""Zero decompression: the block parser of compressed frames (SPEC section 5, ``docs/codec.md``
"Blocks").

:class:`ZeroDecompressor` reads the fields of one block at a time through the read requests of a
:class:`hdl.packer.BitUnpacker` (``req`` out, ``field`` in) and emits the block, with its zero
codes restored, in the layout of :func:`hdl.mx_layouts.mx_block_layout` (codes held at the
widest code width of the build). :class:`DecodeError` lists what a frame decoder reports.
"""

from amaranth.lib import enum

from amaranth.hdl import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.mx import check_block
from golden.outliers import check_outliers
from .frame_params import ZeroMode, check_word_bits
from .mx_layouts import check_lanes
from .packer import unpacker_request_layout, unpacker_field_layout


__all__ = ["DecodeError", "ZeroDecompressor", "parser_block_layout",
           "parser_config_layout", "parser_command_layout", "parser_error_layout",
           "codes_per_request"]


class DecodeError(enum.Enum, shape=4):
    """Outcome of decoding a frame (the ``code`` of a status entry)."""
    OK = 0
    BAD_MAGIC = 1           #: word 0 is not ``LPCF``
    BAD_VERSION = 2         #: version is not 1
    BAD_FIELD = 3           #: a header field out of its range (docs/codec.md, check 6)
    UNSUPPORTED = 4         #: a valid frame this build cannot decode (W, B, element, K, D, ...)
    TRUNCATED = 5           #: the frame's words ended before a field was complete
    RLE_OVERRUN = 6         #: an rle block has more than ``B`` tokens
    RUN_PAST_BLOCK = 7      #: an rle token's code position lies past the end of its block
    RECORD_COUNT = 8        #: a block's record count is not ``K``
    NONZERO_PADDING = 9     #: header or payload padding not all zero
    CRC_MISMATCH = 10       #: trailer CRC (or its upper half with ``W`` = 64) wrong
    TRAILING_GARBAGE = 11   #: words between the padded payload and the final word


def _pow2_floor(n):
    return 1 << (n.bit_length() - 1)


def codes_per_request(*, block, lanes, word_bits, code_bits):
    """Element codes a ``none``/``zvc`` read request covers: ``min(lanes, 2^floor(log2(W /
    code_bits)))`` (a request is at most one word)."""
    return min(lanes, _pow2_floor(word_bits // code_bits), block)


def parser_config_layout(max_outliers, code_bits):
    """Per-frame configuration of :class:`ZeroDecompressor`: ``zero_mode``, ``k`` (records per
    block, 0..max_outliers) and ``code_bits`` (element code width ``w``, 1..code_bits)."""
    return data.StructLayout({"zero_mode": ZeroMode, "k": range(max_outliers + 1),
                              "code_bits": range(code_bits + 1)})


def parser_command_layout(block):
    """One command per block to parse: ``last`` and ``elements`` (0..block) are passed through
    to the block's output beat unchanged (the engine's tags: final block of the frame, element
    count of the block inside its row)."""
    return data.StructLayout({"last": 1, "elements": range(block + 1)})


def parser_block_layout(block, code_bits, outliers):
    """A parsed block: ``scale``, ``codes`` (``block`` codes of ``code_bits`` bits; narrower
    codes zero-extended), with outliers ``count`` and ``outliers`` (``k`` records ``{index,
    code}``, those from the frame's ``K`` on zero), then the command's ``last`` and
    ``elements``."""
    fields = {"scale": 8, "codes": data.ArrayLayout(code_bits, block)}
    if outliers.k:
        fields["count"] = range(outliers.k + 1)
        fields["outliers"] = data.ArrayLayout(data.StructLayout({
            "index": outliers.index_bits(block), "code": outliers.record_format.bits}),
            outliers.k)
    fields["last"] = 1
    fields["elements"] = range(block + 1)
    return data.StructLayout(fields)


def parser_error_layout():
    """``code`` (a :class:`DecodeError`), ``last`` (the failing field used up the frame's
    final word: nothing is left to drain) and ``spec`` (one more request, issued with the
    failing field before its value was checked, was accepted: its field is still to drain)."""
    return data.StructLayout({"code": DecodeError, "last": 1, "spec": 1})


class ZeroDecompressor(wiring.Component):
    """Parses the blocks of a frame's payload, one block per command.

    For each command on ``cmd`` the parser reads one block of ``docs/codec.md`` "Blocks"
    through read requests on ``req`` and the fields coming back on ``field`` (connect them to a
    :class:`hdl.packer.BitUnpacker`'s ``req`` and ``o``): ``scale`` and the record ``count``
    (one request), the ``K`` records (one request each), then the element codes by zero mode:

    - ``none``: one request per group of :func:`codes_per_request` codes (``G``);
    - ``zvc``: the mask (one request per ``min(B, W)`` bits), then one request per group of
      ``G`` codes, as wide as the group's non-zero codes (0 for an all-zero group);
    - ``rle``: ``n`` (one request), then one request per token (``run``, ``code``).

    The next request is issued in the cycle its predecessor's field is taken, so the parser
    reads one field per cycle while the unpacker keeps up: a ``none``/``zvc`` block takes
    ``1 + K + B / G`` cycles (plus ``B / min(B, W)`` for the zvc mask), an ``rle`` block
    ``3 + K + n`` (one token per cycle; the request after the count ``n`` waits a cycle). The
    block leaves on ``o`` (the codes of zeros are 0, records from ``K`` on are 0) with the
    command's ``last`` and ``elements``; the field completing a block waits for ``o`` to be
    empty (not for ``o.ready``).

    For timing, ``req`` does not depend on the value of the field being taken: the request
    that follows a field is worked out a cycle ahead from the parser's state and registered
    (only the first zvc code group, with a one-chunk mask, is as wide as a popcount of the
    mask field's first ``G`` bits), and ``cmd.ready`` does not depend on it either. A field
    failing a value check (``RECORD_COUNT``, ``RUN_PAST_BLOCK``) may thus have been followed
    by one more request; ``err.spec`` says so, and its field is the consumer's to drain.

    Errors, reported on ``err`` (one entry; the parser then waits for it to be taken and for
    a new command): a field cut short by the end of the frame or ending with the frame's
    final word (``TRUNCATED``: a payload field is always followed by the trailer), ``count``
    not ``K`` (``RECORD_COUNT``), rle ``n > B`` (``RLE_OVERRUN``), a token whose code position
    is ``B`` or more (``RUN_PAST_BLOCK``). ``err.last`` says the failing field used up the
    frame (nothing left to drain).

    Parameters
    ----------
    block : int
        ``B``, a power of two 2..64.
    lanes : int
        Elements per cycle to keep up with (power of two, 1..block); sets ``G``.
    word_bits : int
        ``W`` of the unpacker (32 or 64); fields are at most ``W`` bits.
    code_bits : int
        Widest element code ``w`` of the build (1..16); ``cfg.code_bits`` gives the frame's.
    outliers : golden.OutlierFormat or None
        Most records per block (``k``) and the record format (``D``, ``Mo``, fixed).

    Attributes
    ----------
    cfg : In(parser_config_layout(k, code_bits))
        ``zero_mode``, ``k`` and ``code_bits`` of the frame; hold them while blocks are parsed.
    cmd : In(stream.Signature(parser_command_layout(block)))
        One beat per block to parse.
    req : Out(stream.Signature(unpacker_request_layout(word_bits)))
        Read requests (``align`` is always 0).
    field : In(stream.Signature(unpacker_field_layout(word_bits)))
        The fields read.
    o : Out(stream.Signature(parser_block_layout(block, code_bits, outliers)))
        Parsed blocks.
    err : Out(stream.Signature(parser_error_layout()))
        Errors (``code``, ``last``, ``spec``).
    """

    def __init__(self, *, block, lanes, word_bits, code_bits, outliers=None):
        self._block = check_block(block)
        if isinstance(code_bits, bool) or not isinstance(code_bits, int) \
                or not 1 <= code_bits <= 16:
            raise ValueError(f"Code width must be an integer between 1 and 16, "
                             f"not {code_bits!r}")
        self._lanes = check_lanes(lanes, self._block)
        self._word_bits = check_word_bits(word_bits)
        self._code_bits = code_bits
        self._outliers = check_outliers(outliers, self._block)
        self._group = codes_per_request(block=self._block, lanes=lanes, word_bits=word_bits,
                                        code_bits=code_bits)
        k = self._outliers.k
        super().__init__({
            "cfg": In(parser_config_layout(k, code_bits)),
            "cmd": In(stream.Signature(parser_command_layout(self._block))),
            "req": Out(stream.Signature(unpacker_request_layout(word_bits))),
            "field": In(stream.Signature(unpacker_field_layout(word_bits))),
            "o": Out(stream.Signature(parser_block_layout(self._block, code_bits,
                                                          self._outliers))),
            "err": Out(stream.Signature(parser_error_layout())),
        })

    @property
    def group(self):
        """``G``: codes per ``none``/``zvc`` read request."""
        return self._group

    def elaborate(self, platform):
        m = Module()
        B, W, wmax, G = self._block, self._word_bits, self._code_bits, self._group
        lb = B.bit_length() - 1
        k_max = self._outliers.k
        r_bits = self._outliers.record_format.bits if k_max else 0
        groups = B // G
        chunk = min(B, W)
        chunks = B // chunk
        cfg = self.cfg
        w = cfg.code_bits
        code_mask = Cat(j < w for j in range(wmax))

        # State: the field being read (RECORD with ``prefix`` is the block's scale and count).
        IDLE, RECORD, MASK, CODES, COUNT, TOKEN, ERROR = range(7)
        state = Signal(range(7))
        work = Signal(parser_block_layout(B, wmax, self._outliers))
        mask = Signal(B)
        index = Signal(range(max(groups, chunks, k_max, 1) + 1))    # group/chunk/record
        tokens = Signal(range(B + 1))                                 # rle tokens left
        position = Signal(range(B + 1))                               # next rle code slot
        outstanding = Signal()
        hold_valid = Signal()
        hold = Signal(unpacker_request_layout(W))

        # The request issued this cycle (combinational), if any. It is chosen from registered
        # state only, never from the value of the field being taken: the unpacker's request
        # handshake (and its word slots) then does not wait on the checks of the field it has
        # just returned, which was the engine's critical loop. A field failing a value check
        # (RECORD_COUNT, RUN_PAST_BLOCK) has then been followed by one speculative request,
        # reported as ``err.spec`` so that the engine drains its field. The request after an
        # rle count (a token, or the next block when ``n`` is 0) depends on ``n``: it is
        # deferred to the next cycle through ``hold``.
        # Next values of the registers the request depends on (for the lookahead).
        prefix = Signal()   # the outstanding request is a block's scale and count
        state_d, index_d, tokens_d = Signal.like(state), Signal.like(index), Signal.like(tokens)
        mask_d, prefix_d = Signal.like(mask), Signal.like(prefix)
        m.d.comb += [state_d.eq(state), index_d.eq(index), tokens_d.eq(tokens),
                     mask_d.eq(mask), prefix_d.eq(prefix)]
        m.d.sync += [state.eq(state_d), index.eq(index_d), tokens.eq(tokens_d),
                     mask.eq(mask_d), prefix.eq(prefix_d)]
        pend_valid = Signal()   # a request follows the outstanding field
        pend_block = Signal()   # ... the next block's prefix, if a command waits
        pend_mask = Signal()    # ... the first code group, as wide as the mask field says
        pend_width = Signal(range(W + 1))
        pend_done = Signal()    # the outstanding field may complete a block

        issue = Signal()
        issue_width = Signal(range(W + 1))
        next_valid = Signal()       # a request follows the field being taken
        next_width = Signal(range(W + 1))
        defer = Signal()            # a request for the next cycle, decided by the field's value
        defer_width = Signal(range(W + 1))
        nxt = Signal.like(work)
        m.d.comb += nxt.eq(work)

        # A field that completes a block (``pend_done``) waits for ``o`` to be empty rather
        # than for ``o.ready``: the request handshake then does not wait on the engine's
        # block register and dequantizer (``o`` is drained long before the next block is
        # complete unless the output stalls).
        can_take = (~self.o.valid | ~pend_done) & ~self.err.valid
        m.d.comb += self.field.ready.eq(outstanding & can_take & (state != IDLE)
                                        & (state != ERROR))
        take = self.field.valid & self.field.ready
        value = self.field.payload.value
        field_last = self.field.payload.last
        truncated = self.field.payload.truncated

        # A held request is withdrawn while an error waits: after a failing field only the
        # request issued with it may be accepted (``err.spec``).
        m.d.comb += [
            self.req.valid.eq((hold_valid & ~self.err.valid) | issue),
            self.req.payload.width.eq(Mux(hold_valid, hold.width, issue_width)),
            self.req.payload.align.eq(0),
        ]
        with m.If(self.req.valid & self.req.ready):
            m.d.sync += [outstanding.eq(1), hold_valid.eq(0)]
        with m.Elif(take):
            m.d.sync += outstanding.eq(0)
        with m.If(issue & ~self.req.ready):
            m.d.sync += [hold_valid.eq(1), hold.width.eq(issue_width)]
        with m.If(defer):
            m.d.sync += [hold_valid.eq(1), hold.width.eq(defer_width)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.err.valid & self.err.ready):
            m.d.sync += [self.err.valid.eq(0), hold_valid.eq(0), outstanding.eq(0)]
            m.d.comb += state_d.eq(IDLE)

        prefix_width = 8 + Mux(cfg.k >= 4, 3, Mux(cfg.k >= 2, 2, Mux(cfg.k >= 1, 1, 0)))
        count_value = (value >> 8) & Mux(cfg.k >= 4, 7, Mux(cfg.k >= 2, 3, Mux(cfg.k >= 1, 1, 0)))

        def popcount(bits):
            return sum((bits[j] for j in range(len(bits))), C(0, range(len(bits) + 1)))

        def times_w(n):
            # ``n * w`` as shifted adds: a generic ``*`` maps to DSP blocks on the ECP5.
            return sum((Mux(n[j], w << j, 0) for j in range(len(n))), C(0, 1))

        def group_width(mask_value, g):
            return Mux(cfg.zero_mode == ZeroMode.ZVC,
                       times_w(popcount(mask_value.word_select(g, G))), G * w)

        def fail(code):
            m.d.sync += [
                self.err.valid.eq(1),
                self.err.payload.code.eq(code),
                self.err.payload.last.eq(field_last),
                self.err.payload.spec.eq(issue & self.req.ready),
            ]
            m.d.comb += state_d.eq(ERROR)

        def request_next(width):
            m.d.sync += [pend_valid.eq(1), pend_width.eq(width)]

        def next_block_request():
            m.d.sync += [pend_block.eq(1), pend_width.eq(prefix_width)]

        def start_block():
            # Start the next command (if any; ``cmd.ready`` is set apart, from the state alone).
            # Its prefix request is issued by the caller.
            with m.If(self.cmd.valid):
                m.d.sync += [
                    work.last.eq(self.cmd.payload.last),
                    work.elements.eq(self.cmd.payload.elements),
                ]
                m.d.comb += [
                    state_d.eq(RECORD),   # with ``prefix``: the scale and count come first
                    index_d.eq(0),
                    prefix_d.eq(1),
                ]
            with m.Else():
                m.d.comb += state_d.eq(IDLE)

        def body_request():
            with m.Switch(cfg.zero_mode):
                with m.Case(ZeroMode.ZVC):
                    request_next(chunk)
                with m.Case(ZeroMode.RLE):
                    request_next(lb + 1)
                with m.Default():
                    request_next(G * w)

        def body_start():
            with m.Switch(cfg.zero_mode):
                with m.Case(ZeroMode.ZVC):
                    m.d.comb += [state_d.eq(MASK), index_d.eq(0)]
                with m.Case(ZeroMode.RLE):
                    m.d.comb += state_d.eq(COUNT)
                with m.Default():
                    m.d.comb += [state_d.eq(CODES), index_d.eq(0)]

        def complete():
            m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(nxt)]
            start_block()


        mask_next = Signal(B)
        if chunks == 1:
            m.d.comb += mask_next.eq(value[:B])
        else:
            m.d.comb += mask_next.eq(mask)
            m.d.comb += mask_next.word_select(index[:(chunks - 1).bit_length()],
                                              chunk).eq(value[:chunk])
        g = index[:max(1, (groups - 1).bit_length())] if groups > 1 else C(0, 1)

        # The request that follows the field being read, worked out a cycle ahead from the
        # parser's next state and registered, so that the unpacker sees registers (and the
        # command's ``valid``) rather than the parser's decisions.
        g_d = index_d[:max(1, (groups - 1).bit_length())] if groups > 1 else C(0, 1)
        m.d.sync += [pend_valid.eq(0), pend_block.eq(0), pend_mask.eq(0), pend_done.eq(0)]
        with m.Switch(state_d):
            with m.Case(RECORD):
                with m.If(prefix_d):
                    with m.If(cfg.k != 0):
                        request_next(lb + r_bits)
                    with m.Else():
                        body_request()
                with m.Elif(index_d + 1 == cfg.k):
                    body_request()
                with m.Else():
                    request_next(lb + r_bits)
            with m.Case(MASK):
                with m.If(index_d == chunks - 1):
                    if chunks == 1:
                        # the first code group is in the mask field itself
                        m.d.sync += pend_mask.eq(1)
                    else:
                        request_next(group_width(mask_d, 0))
                with m.Else():
                    request_next(chunk)
            with m.Case(CODES):
                with m.If(index_d == groups - 1):
                    m.d.sync += pend_done.eq(1)
                    next_block_request()
                with m.Else():
                    request_next(group_width(mask_d, (g_d + 1)[:len(g_d)]))
            with m.Case(COUNT):
                m.d.sync += pend_done.eq(1)     # (when ``n`` is 0)
            with m.Case(TOKEN):
                with m.If(tokens_d == 1):
                    m.d.sync += pend_done.eq(1)
                    next_block_request()
                with m.Else():
                    request_next(lb + w)
        first_group = times_w(popcount(value[:G]))   # (zvc, one mask chunk)
        m.d.comb += [
            next_valid.eq(pend_valid | pend_mask | (pend_block & self.cmd.valid)),
            next_width.eq(Mux(pend_mask, first_group, pend_width) if chunks == 1
                          else pend_width),
        ]

        # (the width does not depend on whether the field is taken)
        m.d.comb += issue_width.eq(Mux(state == IDLE, prefix_width, next_width))
        # The command is taken in IDLE, and with a field that completes a block (not an rle
        # count) whatever its value: after a field failing its check the command is dropped
        # with the frame. So the engine's command counters do not wait on the field's checks.
        m.d.comb += self.cmd.ready.eq((state == IDLE)
                                      | (take & ~truncated & ~field_last & pend_done
                                         & (state != COUNT)))
        m.d.sync += work.eq(nxt)
        with m.If(state == IDLE):
            with m.If(self.cmd.valid):
                m.d.comb += issue.eq(1)
            start_block()
        with m.Elif(take & (truncated | field_last)):
            fail(DecodeError.TRUNCATED)
        with m.Elif(take):
            m.d.comb += issue.eq(next_valid)
            with m.Switch(state):
                with m.Case(RECORD):
                    with m.If(prefix):
                        m.d.comb += prefix_d.eq(0)
                        m.d.comb += [nxt.scale.eq(value[:8]), nxt.codes.eq(0)]
                        if k_max:
                            m.d.comb += [nxt.count.eq(cfg.k), nxt.outliers.eq(0)]
                        with m.If((cfg.k != 0) & (count_value != cfg.k)):
                            fail(DecodeError.RECORD_COUNT)
                        with m.Elif(cfg.k != 0):
                            m.d.comb += index_d.eq(0)
                        with m.Else():
                            body_start()
                    if k_max:
                        with m.Else():
                            record = nxt.outliers[index[:max(1, (k_max - 1).bit_length())]]
                            m.d.comb += [record.index.eq(value[:lb]),
                                         record.code.eq(value[lb:lb + r_bits])]
                            with m.If(index + 1 == cfg.k):
                                body_start()
                            with m.Else():
                                m.d.comb += index_d.eq(index + 1)
                with m.Case(MASK):
                    m.d.comb += mask_d.eq(mask_next)
                    with m.If(index == chunks - 1):
                        m.d.comb += [state_d.eq(CODES), index_d.eq(0)]
                    with m.Else():
                        m.d.comb += index_d.eq(index + 1)
                with m.Case(CODES):
                    bits = mask.word_select(g, G) if groups > 1 else mask[:G]
                    zvc = cfg.zero_mode == ZeroMode.ZVC
                    lanes_codes = []
                    for lane in range(G):
                        seen = popcount(bits[:lane]) if lane else C(0, 1)
                        slot = Mux(zvc, seen, lane)
                        code = (value >> times_w(slot))[:wmax] & code_mask
                        lanes_codes.append(Mux(zvc & ~bits[lane], 0, code))
                    if groups > 1:
                        m.d.comb += nxt.codes.as_value().word_select(g, G * wmax).eq(
                            Cat(*lanes_codes))
                    else:
                        m.d.comb += nxt.codes.as_value().eq(Cat(*lanes_codes))
                    with m.If(index == groups - 1):
                        complete()
                    with m.Else():
                        m.d.comb += index_d.eq(index + 1)
                with m.Case(COUNT):
                    n = value[:lb + 1]
                    with m.If(n > B):
                        fail(DecodeError.RLE_OVERRUN)
                    with m.Elif(n == 0):
                        # (the next command is taken in IDLE, with its request, next cycle)
                        m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(nxt)]
                        m.d.comb += state_d.eq(IDLE)
                    with m.Else():
                        m.d.comb += [defer.eq(1), defer_width.eq(lb + w)]
                        m.d.comb += [state_d.eq(TOKEN), tokens_d.eq(n)]
                        m.d.sync += position.eq(0)
                with m.Case(TOKEN):
                    run = value[:lb]
                    spot = Signal(range(2 * B + 1))
                    m.d.comb += spot.eq(position + run)
                    code = (value >> lb)[:wmax] & code_mask
                    with m.If(spot >= B):
                        fail(DecodeError.RUN_PAST_BLOCK)
                    with m.Else():
                        m.d.comb += nxt.codes[spot[:lb]].eq(code)
                        with m.If(tokens == 1):
                            complete()
                        with m.Else():
                            m.d.comb += tokens_d.eq(tokens - 1)
                            m.d.sync += position.eq(spot + 1)
        return m
