"""Formal harnesses for :class:`hdl.packer.BitPacker` and :class:`hdl.packer.BitUnpacker`.

Every harness is an Amaranth elaboratable with a reset-less ``sync`` domain: every register
starts at its ``init`` value (the reset state), which the solver takes as the state at cycle 0,
so this is the same as a reset asserted at cycle 0 and released after. The free inputs of the
harness (its ``ports``) are chosen by the solver every cycle; ``Assume`` restricts them to what
a well-behaved environment does, ``Assert`` states what must hold, ``Cover`` what must be
reachable (so that the assertions are not vacuous).

Stream rules (``amaranth.lib.stream``): once a source raises ``valid``, it keeps ``valid`` high
and its ``payload`` unchanged until the sink takes the transfer (``valid & ready``). The
harnesses *assume* these rules for every stream the environment drives and *assert* them for
every stream the core drives.

- :class:`PackerStreamHarness`: BitPacker alone, free fields in and free ``o.ready``.
- :class:`UnpackerStreamHarness`: BitUnpacker alone, free words, free requests, free
  ``o.ready``.
- :class:`RoundTripHarness`: BitPacker -> BitUnpacker; a shadow FIFO of the fields the packer
  took turns them into read requests (same widths; ``align`` after a flushed field; a
  zero-width ``align`` request to end a frame whose padding is not used up) and the unpacker's
  every field must equal the field sent (value masked to its width), with the expected
  ``last`` and no ``truncated``.

``mutation`` builds a deliberately broken variant (a test-only wrapper around the core) whose
proof must fail: that the checks can fail at all is itself tested.
"""

from amaranth.hdl import *
from amaranth.lib import data, wiring

from hdl.packer import BitPacker, BitUnpacker


__all__ = ["PackerStreamHarness", "UnpackerStreamHarness", "RoundTripHarness"]


class _Harness(Elaboratable):
    def __init__(self):
        self.ports = []

    def _free(self, shape, name):
        """A free input: the solver picks its value every cycle."""
        sig = Signal(shape, name=name)
        self.ports.append(sig)
        return sig

    def _domain(self, m):
        cd = ClockDomain("sync", reset_less=True)
        m.domains.sync = cd
        self.ports.append(cd.clk)


def _stream_rule(m, valid, ready, payload, name, *, check):
    """``check`` (Assert or Assume) the stream rule on one stream: a cycle with ``valid`` and
    not ``ready`` is followed by ``valid`` and the same payload. Returns ``stalled``, high in
    the cycle after a stall."""
    payload = Value.cast(payload)
    stalled = Signal(name=f"{name}_stalled")           # previous cycle: valid & ~ready
    held = Signal(len(payload), name=f"{name}_held")   # previous cycle's payload
    m.d.sync += [stalled.eq(valid & ~ready), held.eq(payload)]
    m.d.comb += check(~stalled | valid, f"{name}_valid_held")
    m.d.comb += check(~stalled | (payload == held), f"{name}_payload_stable")
    return stalled


class _StallCorrupt(wiring.Component):
    """Test-only mutation: passes a stream through, but flips payload bit 0 in every cycle
    that follows a stall (valid high, ready low), i.e. exactly what the stream rule forbids."""

    def __init__(self, signature):
        super().__init__({"i": wiring.In(signature), "o": wiring.Out(signature)})

    def elaborate(self, platform):
        m = Module()
        stalled = Signal()
        m.d.sync += stalled.eq(self.o.valid & ~self.o.ready)
        payload = Value.cast(self.i.payload)
        m.d.comb += [
            self.o.valid.eq(self.i.valid),
            self.i.ready.eq(self.o.ready),
            Value.cast(self.o.payload).eq(payload ^ stalled),
        ]
        return m


class _SourceHarness(_Harness):
    """A core under the stream rule on its output ``o``, possibly behind a test-only mutation
    (one of ``MUTATIONS``); ``KIND`` names it in errors."""
    KIND = "stream"
    MUTATIONS = (None, "stall_corrupt")

    def __init__(self, *, word_bits, max_field_bits, mutation=None):
        super().__init__()
        if mutation not in self.MUTATIONS:
            raise ValueError(f"Unknown {self.KIND} mutation {mutation!r}")
        self.word_bits = word_bits
        self.max_field_bits = max_field_bits
        self.mutation = mutation

    def _output(self, m, dut):
        """``dut.o``, or the same stream through :class:`_StallCorrupt` with that mutation."""
        if self.mutation != "stall_corrupt":
            return dut.o
        m.submodules.corrupt = corrupt = _StallCorrupt(dut.o.signature)
        wiring.connect(m, dut.o, corrupt.i)
        return corrupt.o


class PackerStreamHarness(_SourceHarness):
    """BitPacker as a stream source on ``o``, fields from a free environment that obeys the
    stream rules.

    Asserts the stream rule on ``o``; assumes it on ``i``. Covers: a word taken after a stall,
    a word with ``last`` taken after a stall, and one field completing two words (a flush
    with more than ``W`` bits pending), the second word leaving while the first is stalled."""

    KIND = "packer stream"
    MUTATIONS = _SourceHarness.MUTATIONS + ("unreachable_cover",)

    def elaborate(self, platform):
        m = Module()
        self._domain(m)
        m.submodules.dut = dut = BitPacker(word_bits=self.word_bits,
                                           max_field_bits=self.max_field_bits)
        out = self._output(m, dut)

        f = self.max_field_bits
        m.d.comb += [
            dut.i.valid.eq(self._free(1, "in_valid")),
            dut.i.payload.value.eq(self._free(f, "in_value")),
            dut.i.payload.width.eq(self._free(range(f + 1), "in_width")),
            dut.i.payload.flush.eq(self._free(1, "in_flush")),
            dut.i.payload.last.eq(self._free(1, "in_last")),
            out.ready.eq(self._free(1, "out_ready")),
        ]
        _stream_rule(m, dut.i.valid, dut.i.ready, dut.i.payload, "i", check=Assume)
        stalled = _stream_rule(m, out.valid, out.ready, out.payload, "o", check=Assert)

        # Covers: not vacuous.
        m.d.comb += Cover(stalled & out.valid & out.ready, "word_taken_after_stall")
        m.d.comb += Cover(stalled & out.valid & out.ready & out.payload.last,
                          "last_word_taken_after_stall")
        # Two words completed by one field: o stays valid across a transfer without a field
        # having been taken in between.
        took_word = Signal()
        took_field = Signal()
        m.d.sync += [took_word.eq(out.valid & out.ready),
                     took_field.eq(dut.i.valid & dut.i.ready)]
        m.d.comb += Cover(took_word & ~took_field & out.valid,
                          "second_word_of_one_field")
        if self.mutation == "unreachable_cover":
            # Test-only: a cover that no trace reaches (a register that stays 0), so that a
            # cover run is seen to fail when a cover is not reached.
            never = Signal()
            m.d.sync += never.eq(never)
            m.d.comb += Cover(never, "unreachable")
        return m


class UnpackerStreamHarness(_SourceHarness):
    """BitUnpacker as a stream source on ``o``; words and requests from a free environment
    that obeys the stream rules. Covers: a field taken after a stall, a truncated field taken
    after a stall, a field with ``last`` taken after a stall."""
    KIND = "unpacker stream"

    def elaborate(self, platform):
        m = Module()
        self._domain(m)
        m.submodules.dut = dut = BitUnpacker(word_bits=self.word_bits,
                                             max_field_bits=self.max_field_bits)
        out = self._output(m, dut)

        w, f = self.word_bits, self.max_field_bits
        m.d.comb += [
            dut.i.valid.eq(self._free(1, "word_valid")),
            dut.i.payload.word.eq(self._free(w, "word_word")),
            dut.i.payload.last.eq(self._free(1, "word_last")),
            dut.req.valid.eq(self._free(1, "req_valid")),
            dut.req.payload.width.eq(self._free(range(f + 1), "req_width")),
            dut.req.payload.align.eq(self._free(1, "req_align")),
            out.ready.eq(self._free(1, "out_ready")),
        ]
        _stream_rule(m, dut.i.valid, dut.i.ready, dut.i.payload, "i", check=Assume)
        _stream_rule(m, dut.req.valid, dut.req.ready, dut.req.payload, "req", check=Assume)
        stalled = _stream_rule(m, out.valid, out.ready, out.payload, "o", check=Assert)

        m.d.comb += Cover(stalled & out.valid & out.ready, "field_taken_after_stall")
        m.d.comb += Cover(stalled & out.valid & out.ready & out.payload.truncated,
                          "truncated_field_taken_after_stall")
        m.d.comb += Cover(stalled & out.valid & out.ready & out.payload.last
                          & ~out.payload.truncated, "last_field_taken_after_stall")
        return m


class _BitFlip(wiring.Component):
    """Test-only mutation: passes a word stream through with the top bit of every word
    inverted (a wiring fault the round trip must catch)."""

    def __init__(self, signature, word_bits):
        self._word_bits = word_bits
        super().__init__({"i": wiring.In(signature), "o": wiring.Out(signature)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [
            self.o.valid.eq(self.i.valid),
            self.i.ready.eq(self.o.ready),
            self.o.payload.last.eq(self.i.payload.last),
            self.o.payload.word.eq(self.i.payload.word ^ (1 << (self._word_bits - 1))),
        ]
        return m


class RoundTripHarness(_Harness):
    """BitPacker -> BitUnpacker, every field read back.

    The environment sends free fields (stream rules assumed, ``width <= max_field_bits``) and
    stalls the unpacker's ``o`` at will. Every field the packer takes also enters a shadow FIFO
    of ``fifo_depth`` entries (the environment sends nothing while it is full) with its masked
    value, its width, whether it must be read with ``align`` (the field before it had
    ``flush`` or ``last``), its expected ``last`` and whether it leaves padding of a frame
    behind. The request side reads the FIFO head: a request of the same width (``align`` as
    stored), then, for a ``last`` field that does not end on a word boundary, a zero-width
    ``align`` request that skips the padding and must come back with ``last``. Request
    ``valid`` rises when a free input says so and obeys the stream rules.

    Asserted: the unpacker's ``o.valid`` is high exactly when a requested field is due (one
    cycle after the request, held while stalled), and then ``value`` equals the field sent
    masked to its width, ``last`` is as expected (the field ends on the frame's final word
    boundary, or the padding request) and ``truncated`` is low.

    Assumed: no ``last`` field of width 0 at a word boundary. The packer sends an all-zero
    word to carry ``last`` there, and no unpacker request skips that word and answers with
    ``last`` (a zero-width ``align`` request at a word boundary skips nothing; only a
    truncating read drops it); with ``allow_empty_last=True`` the round trip fails on it.

    ``values="free"``: every field value is free. ``values="one_hot"`` (for deeper bounds, the
    solver time being mostly in the data): one field of the solver's choice carries a single
    one bit anywhere, all other fields are zero; since the datapath only moves bits (shifts,
    masks, ORs) this still catches a bit lost, moved, or leaking into another field.

    Covers: a field straddling two words read back, a frame end read back (``last``), a frame
    end by padding request, a flushed field followed by an aligned read, a word held by the
    packer while the unpacker is full.
    """

    def __init__(self, *, word_bits, max_field_bits, fifo_depth=8, allow_empty_last=False,
                 values="free", mutation=None):
        super().__init__()
        if mutation not in (None, "bit_flip"):
            raise ValueError(f"Unknown round-trip mutation {mutation!r}")
        self.word_bits = word_bits
        self.max_field_bits = max_field_bits
        self.fifo_depth = fifo_depth
        self.allow_empty_last = allow_empty_last
        if values not in ("free", "one_hot"):
            raise ValueError(f"Values must be 'free' or 'one_hot', not {values!r}")
        self.values = values
        self.mutation = mutation

    def elaborate(self, platform):
        m = Module()
        self._domain(m)
        w, f, depth = self.word_bits, self.max_field_bits, self.fifo_depth
        m.submodules.packer = packer = BitPacker(word_bits=w, max_field_bits=f)
        m.submodules.unpacker = unpacker = BitUnpacker(word_bits=w, max_field_bits=f)
        if self.mutation == "bit_flip":
            m.submodules.flip = flip = _BitFlip(packer.o.signature, w)
            wiring.connect(m, packer.o, flip.i)
            wiring.connect(m, flip.o, unpacker.i)
        else:
            wiring.connect(m, packer.o, unpacker.i)

        # --- the field source ---------------------------------------------------------------
        field = packer.i.payload
        m.d.comb += [
            packer.i.valid.eq(self._free(1, "in_valid")),
            field.value.eq(self._free(f, "in_value")),
            field.width.eq(self._free(range(f + 1), "in_width")),
            field.flush.eq(self._free(1, "in_flush")),
            field.last.eq(self._free(1, "in_last")),
            unpacker.o.ready.eq(self._free(1, "out_ready")),
        ]
        _stream_rule(m, packer.i.valid, packer.i.ready, packer.i.payload, "i", check=Assume)
        m.d.comb += Assume(field.width <= f, "width_in_range")
        if self.values == "one_hot":
            # Data abstraction for deeper bounds: one field of the solver's choice carries a
            # single one bit, all others are zero (see the class docstring).
            pick = self._free(1, "pick")
            picked = Signal()
            tracked = Signal()
            m.d.comb += tracked.eq(pick & ~picked)
            m.d.comb += Assume(tracked | (field.value == 0), "untracked_fields_zero")
            m.d.comb += Assume((field.value & (field.value - 1)) == 0, "one_bit_set")
            with m.If(packer.i.valid & packer.i.ready & tracked):
                m.d.sync += picked.eq(1)

        # Shadow of the packer's write position within its word, and of the previous field's
        # flush/last.
        wpos = Signal(range(w))
        after_close = Signal()
        end = Signal(range(2 * w))
        m.d.comb += end.eq(wpos + field.width)
        at_boundary = Signal()
        m.d.comb += at_boundary.eq((end == 0) | (end == w))
        if not self.allow_empty_last:
            m.d.comb += Assume(~(packer.i.valid & field.last & (field.width == 0) & (wpos == 0)),
                               "no_empty_last_at_boundary")

        # --- shadow FIFO of the fields taken --------------------------------------------------
        entry_layout = {"value": f, "width": range(f + 1), "align": 1, "exp_last": 1,
                        "pad": 1, "straddle": 1}
        layout = data.StructLayout(entry_layout)
        entries = Array(Signal(layout, name=f"entry{k}") for k in range(depth))
        wr = Signal(range(depth))
        rd = Signal(range(depth))
        level = Signal(range(depth + 1))
        full = Signal()
        m.d.comb += full.eq(level == depth)
        m.d.comb += Assume(~(packer.i.valid & full), "fifo_not_overrun")

        push = Signal()
        pop = Signal()
        m.d.comb += push.eq(packer.i.valid & packer.i.ready)
        new = Signal(layout)
        mask = Cat(j < field.width for j in range(f))
        close = field.flush | field.last
        m.d.comb += [
            new.value.eq(field.value & mask),
            new.width.eq(field.width),
            new.align.eq(after_close),
            new.exp_last.eq(field.last & at_boundary),
            new.pad.eq(field.last & ~at_boundary),
            new.straddle.eq(end > w),
        ]
        with m.If(push):
            m.d.sync += [
                entries[wr].eq(new),
                wr.eq(Mux(wr == depth - 1, 0, wr + 1)),
                wpos.eq(Mux(close, 0, Mux(end >= w, end - w, end))),
                after_close.eq(close),
            ]
        with m.If(pop):
            m.d.sync += rd.eq(Mux(rd == depth - 1, 0, rd + 1))
        m.d.sync += level.eq(level + push - pop)

        # --- the request side ---------------------------------------------------------------
        head = entries[rd]
        padding = Signal()                  # the head's field is read; its padding request is due
        req = unpacker.req
        req_hold = Signal()
        go = self._free(1, "req_go")
        m.d.comb += [
            req.valid.eq((level != 0) & (go | req_hold)),
            req.payload.width.eq(Mux(padding, 0, head.width)),
            req.payload.align.eq(padding | head.align),
        ]
        m.d.sync += req_hold.eq(req.valid & ~req.ready)
        req_take = Signal()
        m.d.comb += req_take.eq(req.valid & req.ready)
        with m.If(req_take):
            with m.If(~padding & head.pad):
                m.d.sync += padding.eq(1)
            with m.Else():
                m.d.sync += padding.eq(0)
                m.d.comb += pop.eq(1)

        # --- expected field -----------------------------------------------------------------
        exp_valid = Signal()
        exp_value = Signal(f)
        exp_last = Signal()
        exp_straddle = Signal()
        exp_padding = Signal()
        exp_align = Signal()
        out = unpacker.o
        with m.If(out.valid & out.ready):
            m.d.sync += exp_valid.eq(0)
        with m.If(req_take):
            m.d.sync += [
                exp_valid.eq(1),
                exp_value.eq(Mux(padding, 0, head.value)),
                exp_last.eq(Mux(padding, 1, head.exp_last)),
                exp_straddle.eq(~padding & head.straddle),
                exp_padding.eq(padding),
                exp_align.eq(~padding & head.align),
            ]

        m.d.comb += [
            Assert(out.valid == exp_valid, "one_field_per_request"),
            Assert(~out.valid | (out.payload.value == exp_value), "value_round_trip"),
            Assert(~out.valid | (out.payload.last == exp_last), "last_round_trip"),
            Assert(~out.valid | ~out.payload.truncated, "never_truncated"),
        ]

        # --- covers -------------------------------------------------------------------------
        got = out.valid & out.ready
        m.d.comb += [
            Cover(got & exp_straddle, "straddling_field_read_back"),
            Cover(got & out.payload.last & ~exp_padding, "frame_end_on_field"),
            Cover(got & out.payload.last & exp_padding, "frame_end_by_padding_request"),
            Cover(got & exp_align & (out.payload.value != 0), "aligned_read_after_flush"),
            Cover(packer.o.valid & ~packer.o.ready, "word_held_while_unpacker_full"),
        ]
        return m
