"""Bit packing of variable-width fields into ``W``-bit memory words (SPEC section 5).

The hardware twin of :class:`golden.codec.BitWriter` as ``docs/codec.md`` uses it: fields are
appended LSB-first to one bit stream, stream bit ``i`` is bit ``i mod W`` of word ``i // W``,
and a flush pads with zero bits to the next word boundary.

- :class:`BitPacker`: fields (value, width, flush, last) in, words (+ last) out;
- :class:`BitUnpacker`: words (+ last) and read requests (width, align) in, fields out, with a
  ``truncated`` flag when a frame ends before a request is satisfied.
"""

from amaranth.hdl import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


__all__ = ["BitPacker", "BitUnpacker", "packer_field_layout", "packer_word_layout",
           "unpacker_request_layout", "unpacker_field_layout"]


def _check_word_bits(word_bits):
    if not isinstance(word_bits, int) or isinstance(word_bits, bool) or word_bits < 1:
        raise ValueError(f"Word width must be a positive integer, not {word_bits!r}")
    return word_bits


def _check_max_field_bits(max_field_bits, word_bits):
    if max_field_bits is None:
        return word_bits
    if (not isinstance(max_field_bits, int) or isinstance(max_field_bits, bool)
            or not 1 <= max_field_bits <= word_bits):
        raise ValueError(f"Maximum field width must be an integer between 1 and the word "
                         f"width {word_bits}, not {max_field_bits!r}")
    return max_field_bits


def packer_field_layout(max_field_bits):
    """Payload of :attr:`BitPacker.i`: ``value`` (``max_field_bits``), ``width``
    (``range(max_field_bits + 1)``), ``flush`` and ``last`` (1 bit each)."""
    return data.StructLayout({"value": max_field_bits, "width": range(max_field_bits + 1),
                              "flush": 1, "last": 1})


def packer_word_layout(word_bits):
    """Payload of :attr:`BitPacker.o`: ``word`` (``word_bits``) and ``last`` (1 bit)."""
    return data.StructLayout({"word": word_bits, "last": 1})


class _WordFieldCore(wiring.Component):
    """What a packer and an unpacker share: the checked ``word_bits`` and ``max_field_bits``
    and a signature built from them by ``members(word_bits, max_field_bits)``."""

    def __init__(self, members, *, word_bits, max_field_bits):
        self._word_bits = _check_word_bits(word_bits)
        self._max_field_bits = _check_max_field_bits(max_field_bits, self._word_bits)
        super().__init__(members(self._word_bits, self._max_field_bits))

    @property
    def word_bits(self):
        return self._word_bits

    @property
    def max_field_bits(self):
        return self._max_field_bits


class BitPacker(_WordFieldCore):
    """Packs a stream of variable-width fields into ``W``-bit words.

    Every accepted field appends its ``width`` low bits of ``value`` to the bit stream
    (LSB-first: stream bit ``i`` is bit ``i mod W`` of word ``i // W``); a word leaves as soon
    as its ``W`` bits are known. The bits of ``value`` from ``width`` on are ignored; a field
    of width 0 appends nothing (but its ``flush``/``last`` still act).

    - ``flush``: after the field, zero bits up to the next word boundary, so that the partial
      word (if any) leaves; nothing is added when the stream is already at a boundary. This is
      :meth:`golden.codec.BitWriter.align`.
    - ``last``: the end of a frame; implies ``flush``. The frame's final word carries
      ``o.last``. The final word is the one holding the field's last bit or padding; when the
      ``last`` field has width 0 and the stream is at a word boundary (no bits pending, e.g. a
      frame that is empty or ended on a boundary with its previous field), one all-zero word is
      emitted to carry ``last`` (a word already sent cannot be marked any more). A frame
      therefore always ends with exactly one word with ``last``.

    Parameters
    ----------
    word_bits : int
        Width ``W`` of the output words (a positive integer; the frame format uses 32 or 64).
    max_field_bits : int or None
        Widest field, ``1 <= max_field_bits <= word_bits`` (None: ``word_bits``). A field then
        completes at most one word beyond those pending, which is what lets the packer take one
        field every cycle.

    Attributes
    ----------
    i : In(stream.Signature(packer_field_layout(max_field_bits)))
        Fields: ``value``, ``width`` (0..max_field_bits), ``flush``, ``last``.
    o : Out(stream.Signature(packer_word_layout(word_bits)))
        Words: ``word`` and ``last`` (on the frame's final word).

    Throughput and latency: one field per cycle while ``o.ready`` is high, whatever the
    widths, flushes and frame ends (``i.ready = ~o.valid | o.ready``). A word is valid
    :attr:`LATENCY` (1) cycle after the field that completes it is accepted, unless an earlier
    word is still waiting (a flush can complete two words with one field; the second leaves
    the cycle after the first). Inside: a ``2W``-bit accumulator with its count of pending
    bits (at most ``2W``) and a ``last`` flag per word slot; ``o.valid`` is ``count >= W``
    and ``o.word`` is the accumulator's low word (bits beyond the count are always zero).
    ``o.valid`` does not depend on ``o.ready``, and the payload is held until accepted.
    """

    #: Cycles from accepting the field that completes a word to that word being valid.
    LATENCY = 1

    def __init__(self, *, word_bits=32, max_field_bits=None):
        super().__init__(lambda w, f: {
            "i": In(stream.Signature(packer_field_layout(f))),
            "o": Out(stream.Signature(packer_word_layout(w))),
        }, word_bits=word_bits, max_field_bits=max_field_bits)

    def elaborate(self, platform):
        m = Module()
        w, f = self._word_bits, self._max_field_bits

        acc = Signal(2 * w)                 # pending bits, stream order from bit 0; zero above
        count = Signal(range(2 * w + 1))    # number of pending bits (padding included)
        last0 = Signal()                    # the word in acc[:w] ends a frame
        last1 = Signal()                    # the word in acc[w:] ends a frame

        # Handshakes as plain assignments (Icarus, amaranth issue 1629).
        m.d.comb += [
            self.o.valid.eq(count >= w),
            self.o.payload.word.eq(acc[:w]),
            self.o.payload.last.eq(last0),
            self.i.ready.eq(~self.o.valid | self.o.ready),
        ]

        # The state after this cycle's output transfer (if any): at most w pending bits when a
        # field is accepted, since fields are accepted only when no word is held back.
        shift = Signal()
        m.d.comb += shift.eq(self.o.valid & self.o.ready)
        kept = Signal(2 * w)
        kept_count = Signal(range(2 * w + 1))
        kept_last0 = Signal()
        kept_last1 = Signal()
        m.d.comb += [
            kept.eq(Mux(shift, acc[w:], acc)),
            kept_count.eq(Mux(shift, count - w, count)),
            kept_last0.eq(Mux(shift, last1, last0)),
            kept_last1.eq(Mux(shift, 0, last1)),
        ]

        # The accepted field, masked to its width, at the kept count (<= w).
        field = self.i.payload
        masked = Signal(f)
        m.d.comb += masked.eq(field.value & Cat(j < field.width for j in range(f)))
        base = Signal(range(w + 1))
        m.d.comb += base.eq(kept_count)
        appended = Signal(2 * w)
        m.d.comb += appended.eq(kept | (masked << base)[:2 * w])
        end = Signal(range(2 * w + 1))     # stream position after the field, <= 2w
        m.d.comb += end.eq(kept_count + field.width)
        # With flush/last: round up to a word boundary (end <= 2w, so 0, w or 2w); a last
        # field of width 0 at a boundary adds one all-zero word to carry ``last``.
        close = field.flush | field.last
        empty_last = field.last & (field.width == 0) & ((end == 0) | (end == w))
        rounded = Signal(range(2 * w + 1))
        with m.If(empty_last):
            m.d.comb += rounded.eq(end + w)
        with m.Elif(close & (end != 0) & (end <= w)):
            m.d.comb += rounded.eq(w)
        with m.Elif(close & (end > w)):
            m.d.comb += rounded.eq(2 * w)
        with m.Else():
            m.d.comb += rounded.eq(end)

        take = self.i.valid & self.i.ready
        with m.If(take):
            m.d.sync += [
                acc.eq(appended),
                count.eq(rounded),
                # The frame's final word is word rounded / w - 1 of the kept slots.
                last0.eq(kept_last0 | (field.last & (rounded == w))),
                last1.eq(kept_last1 | (field.last & (rounded == 2 * w))),
            ]
        with m.Else():
            m.d.sync += [
                acc.eq(kept),
                count.eq(kept_count),
                last0.eq(kept_last0),
                last1.eq(kept_last1),
            ]
        return m


def unpacker_request_layout(max_field_bits):
    """Payload of :attr:`BitUnpacker.req`: ``width`` (``range(max_field_bits + 1)``) and
    ``align`` (1 bit)."""
    return data.StructLayout({"width": range(max_field_bits + 1), "align": 1})


def unpacker_field_layout(max_field_bits):
    """Payload of :attr:`BitUnpacker.o`: ``value`` (``max_field_bits``), ``last`` and
    ``truncated`` (1 bit each)."""
    return data.StructLayout({"value": max_field_bits, "last": 1, "truncated": 1})


class BitUnpacker(_WordFieldCore):
    """Reads variable-width fields out of a stream of ``W``-bit words: the inverse of
    :class:`BitPacker` (and of :class:`golden.codec.BitWriter`; the reading side of
    :class:`golden.codec.BitReader`).

    Words arrive on ``i`` in frames (``i.last`` on a frame's final word; a frame has at least
    one word). Each request on ``req`` produces exactly one field on ``o``:

    - ``align``: first skip to the next word boundary of the frame (nothing when the read
      position already is on one);
    - then read ``width`` bits (0..max_field_bits), stream bit ``i`` being bit ``i mod W`` of
      word ``i // W``: ``o.value`` holds them in its low bits, zeros above.
    - ``o.last``: this request used up the frame's final word (its last bit read, or skipped by
      ``align``); the next request reads the next frame from its first bit. A consumer ends a
      frame with a zero-width ``align`` request, which skips the padding (without checking it)
      and comes back with ``last`` (unless the frame was already used up exactly).
    - ``o.truncated``: the request needed more bits than the frame had left. ``o.value`` holds
      the bits that were left (zeros above), ``o.last`` is 1 and the rest of the frame is
      dropped: the next request reads the next frame. A request waits (``req.ready`` low) only
      while neither enough bits nor the frame's final word have arrived, so a frame ending
      early never hangs the reader.

    Parameters
    ----------
    word_bits : int
        Width ``W`` of the input words (a positive integer; the frame format uses 32 or 64).
    max_field_bits : int or None
        Widest field, ``1 <= max_field_bits <= word_bits`` (None: ``word_bits``).

    Attributes
    ----------
    i : In(stream.Signature(packer_word_layout(word_bits)))
        Words: ``word`` and ``last``.
    req : In(stream.Signature(unpacker_request_layout(max_field_bits)))
        Read requests: ``width`` and ``align``.
    o : Out(stream.Signature(unpacker_field_layout(max_field_bits)))
        One field per request: ``value``, ``last``, ``truncated``.

    Throughput and latency: one request per cycle while ``o.ready`` is high and the words
    keep up (a field never needs more than the two words being read, and one word can be
    taken every cycle, also across frame boundaries). The field is valid :attr:`LATENCY` (1)
    cycle after its request is accepted. Inside: three word slots (``i.ready`` while one is
    free), a bit offset into the first, and a ``last`` flag per slot. ``req.ready`` depends on
    ``req.payload`` (whether the request can be served) and on ``o.ready``; ``o.valid`` does
    not depend on ``o.ready``, and the payload is held until accepted.
    """

    #: Cycles from accepting a request to its field being valid.
    LATENCY = 1

    def __init__(self, *, word_bits=32, max_field_bits=None):
        super().__init__(lambda w, f: {
            "i": In(stream.Signature(packer_word_layout(w))),
            "req": In(stream.Signature(unpacker_request_layout(f))),
            "o": Out(stream.Signature(unpacker_field_layout(f))),
        }, word_bits=word_bits, max_field_bits=max_field_bits)

    def elaborate(self, platform):
        m = Module()
        w, f = self._word_bits, self._max_field_bits

        slots = Signal(3 * w)               # words in stream order from slot 0; zero if empty
        count = Signal(range(4))            # words held
        lasts = Signal(3)                   # slot k holds a frame's final word
        offset = Signal(range(w))           # bits of slot 0 already read

        advance = Signal()
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(count < 3),
        ]

        request = self.req.payload
        start = Signal(range(w + 1))
        m.d.comb += start.eq(Mux(request.align & (offset != 0), w, offset))
        end = Signal(range(2 * w + 1))
        m.d.comb += end.eq(start + request.width)
        # Bits of the current frame in slots 0 and 1 (a field never reaches slot 2).
        frame_bits = Signal(range(2 * w + 1))
        m.d.comb += frame_bits.eq(Mux(count == 0, 0,
                                      Mux((count >= 2) & ~lasts[0], 2 * w, w)))
        frame_end = Signal()                # the frame's final word is in slot 0 or 1
        m.d.comb += frame_end.eq(((count >= 1) & lasts[0]) | ((count >= 2) & lasts[1]))
        fits = Signal()
        m.d.comb += fits.eq(end <= frame_bits)
        serve = Signal()
        m.d.comb += serve.eq(fits | frame_end)

        # Words dropped by the request: up to the frame's final word when truncated, else
        # those read or skipped to their end.
        drop = Signal(range(3))
        with m.If(~fits):
            m.d.comb += drop.eq(Mux(lasts[0], 1, 2))
        with m.Elif(end == 2 * w):
            m.d.comb += drop.eq(2)
        with m.Elif(end >= w):
            m.d.comb += drop.eq(1)
        with m.Else():
            m.d.comb += drop.eq(0)

        window = Signal(2 * w)              # the frame's bits in slots 0 and 1
        m.d.comb += window.eq(Mux(lasts[0], slots[:w], slots[:2 * w]))
        value = Signal(f)
        m.d.comb += value.eq((window >> start)[:f] & Cat(j < request.width for j in range(f)))

        m.d.comb += self.req.ready.eq(advance & serve)
        take = self.req.valid & self.req.ready
        with m.If(advance):
            m.d.sync += [
                self.o.valid.eq(self.req.valid & serve),
                self.o.payload.value.eq(value),
                self.o.payload.truncated.eq(~fits),
                self.o.payload.last.eq(~fits | ((drop >= 1) & lasts[0])
                                       | ((drop == 2) & lasts[1])),
            ]

        # Drop the used words, then append the incoming word at the first free slot.
        dropped = Signal(range(3))
        m.d.comb += dropped.eq(Mux(take, drop, 0))
        kept = Signal(3 * w)
        kept_count = Signal(range(4))
        kept_lasts = Signal(3)
        m.d.comb += [
            kept.eq(slots >> (dropped * w)),
            kept_count.eq(count - dropped),
            kept_lasts.eq(lasts >> dropped),
        ]
        load = self.i.valid & self.i.ready
        m.d.sync += [
            slots.eq(Mux(load, kept | (self.i.payload.word << (kept_count * w))[:3 * w], kept)),
            count.eq(kept_count + load),
            lasts.eq(Mux(load, kept_lasts | (self.i.payload.last << kept_count)[:3], kept_lasts)),
        ]
        with m.If(take):
            m.d.sync += offset.eq(Mux(~fits, 0, end - drop * w))
        return m
