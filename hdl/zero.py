"""Zero compression of quantized blocks: blocks in, :class:`hdl.packer.BitPacker` fields out.

The compressing half of ``docs/codec.md`` "Blocks": the fields of one block, packed LSB-first,
are exactly the block's bits in the frame for the zero mode ``none``, ``zvc`` or ``rle``
(:class:`ZeroMode`), with the frame's outlier count ``K``.
"""



from amaranth.hdl import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.mx import check_block
from .mx_layouts import check_block_outliers, check_lanes, record_layout
from .frame_params import ZeroMode, ZERO_MODE_NAMES, check_word_bits
from .packer import packer_field_layout


__all__ = ["ZeroCompressor", "zero_block_layout", "zero_config_layout"]


def _check_element_bits(element_bits):
    single = isinstance(element_bits, int) and not isinstance(element_bits, bool)
    widths = (element_bits,) if single else element_bits
    if not isinstance(widths, tuple) or not widths or any(
            isinstance(w, bool) or not isinstance(w, int) or not 1 <= w <= 16 for w in widths):
        raise ValueError(f"Element code width must be an integer between 1 and 16, or a "
                         f"non-empty tuple of them, not {element_bits!r}")
    return widths


def zero_block_layout(code_bits, block, outliers=None):
    """One block in: ``scale``, ``codes`` (``block`` codes of ``code_bits``; a narrower
    element's codes zero-extended), with outliers ``count`` and ``outliers`` (records, as
    :func:`hdl.mx_layouts.mx_block_layout`), and ``last`` (the block ends a frame). A quantizer's
    :func:`~hdl.mx_layouts.mx_block_layout` with codes of the same width is this layout."""
    fields = {"scale": 8, "codes": data.ArrayLayout(code_bits, block)}
    if outliers is not None and outliers.k:
        fields["count"] = range(outliers.k + 1)
        fields["outliers"] = data.ArrayLayout(record_layout(outliers, block), outliers.k)
    fields["last"] = 1
    return data.StructLayout(fields)


def zero_config_layout(element_count=1, max_outliers=0):
    """Run-time configuration of a :class:`ZeroCompressor`, taken with a frame's first block:
    ``zero_mode`` (:class:`ZeroMode`), ``element`` (which of the code widths, when there are
    several) and ``outliers`` (``K``, 0..``max_outliers``, when there are outliers)."""
    fields = {"zero_mode": ZeroMode}
    if element_count > 1:
        fields["element"] = range(element_count)
    if max_outliers:
        fields["outliers"] = range(max_outliers + 1)
    return data.StructLayout(fields)


def _compact(m, items, token_bits, name):
    """Pack the valid ``(value, valid)`` items of ``items`` next to one another (in order,
    ``token_bits`` each, from bit 0). Returns ``(value, count)``."""
    total = len(items) * token_bits
    value = Signal(max(1, total), name=f"{name}_value")
    count = Signal(range(len(items) + 1), name=f"{name}_count")
    parts = []
    position = C(0, 1)
    for index, (item, valid) in enumerate(items):
        pos = Signal(range(index + 1), name=f"{name}_pos{index}")
        m.d.comb += pos.eq(position)
        placed = [Mux(pos == p, item << (p * token_bits), 0) for p in range(index + 1)]
        parts.append(Mux(valid, _or(placed), 0))
        position = pos + valid
    m.d.comb += [value.eq(_or(parts) if parts else 0), count.eq(position)]
    return value, count


def _tree_sum(values):
    """The sum of ``values`` as a balanced tree of adders (``sum`` would chain them)."""
    while len(values) > 1:
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]


def _or(values):
    result = values[0]
    for v in values[1:]:
        result = result | v
    return result


class ZeroCompressor(wiring.Component):
    """Zero compression of MX blocks into packer fields (``docs/codec.md``, "Blocks").

    A block of ``B`` codes enters as one beat and is taken apart in ``G = B / lanes`` units,
    one a cycle: unit ``j`` holds element group ``j``'s codes (``none``), its non-zero codes
    side by side (``zvc``) or its ``(run, code)`` tokens side by side (``rle``), and unit 0
    has the block prefix in front: the E8M0 scale, the record count (``ceil(log2(K+1))``
    bits, value ``K``), the ``K`` records (index, code), then the ``B``-bit non-zero mask
    (``zvc``) or the ``lb + 1``-bit non-zero count (``rle``). A zero is the code 0 (the code of
    -0 is not zero). A unit is formed into a register (with a spare one behind it, so that
    ``i.ready`` does not depend on ``o.ready``) and appended in a later cycle to a bit buffer
    (``unit bits + W`` wide) from which whole ``W``-bit fields leave, one a cycle; a frame's
    final field carries the rest (0..W bits) and ``last``. Concatenated LSB-first, the fields
    of a frame are exactly its blocks' bits.

    Throughput: one unit (``lanes`` codes) a cycle as long as the output keeps up, i.e.
    ``min(lanes codes, W bits)`` a cycle: a block every ``B / lanes`` cycles (the quantizer's
    rate) whenever its bits average at most ``W`` a group; incompressible blocks (e.g. ``none``
    with ``lanes * w > W``) leave at ``W`` bits a cycle. A frame's end costs the cycles of
    its last partial field. Latency: a block's first bits are in the buffer 3 cycles after
    the block is taken; a field leaves once ``W`` bits are pending (or at the frame's end).
    ``o.valid`` and ``o.payload`` come from registers (``width`` through one mux).

    Parameters
    ----------
    element_bits : int or tuple of int
        Width ``w`` of the element codes (1..16), or the widths a frame chooses from (through
        ``cfg.element``); narrower codes come in zero-extended to the widest.
    block : int
        Elements per block (power of two, 2..64).
    lanes : int
        Codes per group (power of two, 1..block).
    outliers : None or OutlierFormat
        Records of up to ``outliers.k`` outliers per block; ``cfg.outliers`` gives the frame's
        ``K`` (0..k), the ``count`` of its blocks.
    word_bits : int
        Word width ``W`` of the packer (32 or 64): the widest field.

    Attributes
    ----------
    i : In(stream.Signature(zero_block_layout(max(element_bits), block, outliers)))
        Blocks: ``scale``, ``codes``, records (``count`` is not used: it must be ``K``;
        records from ``K`` on are ignored), ``last`` on a frame's final block.
    o : Out(stream.Signature(packer_field_layout(word_bits)))
        Fields for a :class:`~hdl.packer.BitPacker`: ``value``, ``width`` (``W`` but for a
        frame's final field); ``flush`` 0; ``last`` on a frame's final field.
    cfg : In(zero_config_layout(len(element_bits), outliers.k))
        ``zero_mode``, ``element`` and ``outliers`` (``K``), taken with a frame's first block.
    """

    def __init__(self, *, element_bits, block, lanes=1, outliers=None, word_bits=32):
        self._widths = _check_element_bits(element_bits)
        self._block = check_block(block)
        self._lanes = check_lanes(lanes, self._block)
        self._outliers = check_block_outliers(outliers, self._block)
        self._word_bits = check_word_bits(word_bits)
        k = self._outliers.k
        lb = self._block.bit_length() - 1
        self._record_bits = (lb + self._outliers.record_format.bits) if k else 0
        wmax = max(self._widths)
        self._prefix_bits = 8 + k.bit_length() + k * self._record_bits + max(self._block, lb + 1)
        self._content_bits = self._lanes * (lb + wmax)
        self._unit_bits = self._prefix_bits + self._content_bits
        self._field_bits = self._word_bits
        self._cfg_layout = zero_config_layout(len(self._widths), k)
        super().__init__({
            "i":   In(stream.Signature(zero_block_layout(wmax, self._block,
                                                         outliers if k else None))),
            "o":   Out(stream.Signature(packer_field_layout(self._field_bits))),
            "cfg": In(self._cfg_layout),
        })

    @property
    def max_field_bits(self):
        """Widest field on ``o``: the word width ``W``. A :class:`~hdl.packer.BitPacker`
        behind needs at least this."""
        return self._field_bits

    @property
    def element_bits(self):
        return self._widths

    def elaborate(self, platform):
        m = Module()
        lanes, block = self._lanes, self._block
        groups = block // lanes
        lb = block.bit_length() - 1
        k = self._outliers.k
        wmax = max(self._widths)
        field = self._field_bits
        unit_bits = self._unit_bits

        # ---- The block being split into groups, and its frame's configuration.
        blk = Signal(self.i.payload.shape())
        blk_valid = Signal()
        cfg = Signal(self._cfg_layout)
        in_frame = Signal()
        group = Signal(range(groups))
        run = Signal(range(block + 1))      # rle: zero codes since the last non-zero one

        # ---- The unit register: the next unit (a group, with the prefix for group 0) is
        # formed from `blk` in one cycle and appended to the bit buffer in a later one, so that
        # forming it (compaction, prefix selection) and shifting it into place are not one
        # path. A spare register behind it (a skid buffer) takes a unit formed while the unit
        # register cannot be emptied, so that forming the next unit (and `i.ready`) depends on
        # registers only, not on the output's ready through the bit buffer: still one unit a
        # cycle.
        unit = Signal(unit_bits)
        unit_bits_ = Signal(range(unit_bits + 1))
        unit_last = Signal()                # the unit ends its frame
        unit_valid = Signal()
        spare = Signal(unit_bits)
        spare_bits = Signal(range(unit_bits + 1))
        spare_last = Signal()
        spare_valid = Signal()

        # ---- The bit buffer: units are appended to the pending bits; whole fields of W bits
        # leave from the bottom, and a frame's final field takes the rest (with `last`).
        capacity = unit_bits + field
        acc = Signal(capacity)
        pending = Signal(range(capacity + 1))
        ending = Signal()                   # the frame's final unit is in: send the rest

        # Registers kept with `pending` and `ending` (set from their next values), so that the
        # field offered on `o` is registers or one mux away from them: the packer behind
        # shifts it further in the same cycle.
        full_field = Signal()               # pending >= W
        final = Signal()                    # ending & (pending <= W): the field is the last
        m.d.comb += [
            self.o.valid.eq(full_field | ending),
            self.o.payload.value.eq(acc[:field]),
            self.o.payload.width.eq(Mux(full_field, field, pending)),
            self.o.payload.flush.eq(0),
            self.o.payload.last.eq(final),
        ]
        sent = Signal()
        m.d.comb += sent.eq(self.o.valid & self.o.ready)
        # A unit goes in at bit `pending` (a register), whatever the output does in the same
        # cycle; a field leaving then shifts the sum down by W. So the output's ready only
        # selects between finished values instead of steering the unit's shift (the sum is W
        # bits wider than the buffer for that: it holds the leaving field too).
        load = Signal()
        merged = Signal(capacity + field)
        # The bit counts after this cycle for each case (a unit in or not, a field out or
        # not), all from registers; load and send only select among them.
        with_unit = Signal(range(capacity + unit_bits + 1))
        m.d.comb += with_unit.eq(pending + unit_bits_)
        # Room left (capacity - pending), and with this cycle's field gone (+ W): registers
        # kept with `pending`, so that whether the unit fits is one comparison.
        room = Signal(range(capacity + 1), init=capacity)
        room_sent = Signal(range(capacity + field + 1), init=capacity + field)
        m.d.comb += [
            # The unit must fit in what stays after this cycle's field, if one leaves. A
            # frame's final unit waits for a stalled field, so that the field's `last` cannot
            # change while it is offered. (While `ending` no unit goes in, so a field that
            # leaves with a unit is a whole one.)
            load.eq(unit_valid & ~ending &
                    ((unit_bits_ <= room) | (sent & (unit_bits_ <= room_sent))) &
                    (~unit_last | ~self.o.valid | self.o.ready)),
            merged.eq(acc | (unit << pending)[:capacity + field]),
        ]
        after = Signal(capacity + field)
        m.d.comb += after.eq(Mux(load, merged, acc))
        # (A frame's final field, fewer than W bits, leaves with no unit coming in: `ending`;
        # the buffer is then empty.)
        cases = {}                          # (load, sent) -> bits pending after this cycle
        for unit_in in (0, 1):
            count = with_unit if unit_in else pending
            for out in (0, 1):
                n = Signal(range(capacity + field + 1), name=f"count_{unit_in}{out}")
                m.d.comb += n.eq(Mux(full_field, count - field, 0) if out else count)
                cases[(unit_in, out)] = n
        next_pending = Signal(range(capacity + 1))
        next_full = Signal()
        next_small = Signal()               # next_pending <= W
        next_ending = Signal()

        def pick(f):
            return Mux(load, Mux(sent, f(cases[(1, 1)]), f(cases[(1, 0)])),
                       Mux(sent, f(cases[(0, 1)]), f(cases[(0, 0)])))
        m.d.comb += [
            next_pending.eq(pick(lambda n: n)),
            next_full.eq(pick(lambda n: n >= field)),
            next_small.eq(pick(lambda n: n <= field)),
            next_ending.eq(Mux(load, unit_last, ending & ~(sent & final))),
        ]
        m.d.sync += [
            acc.eq(Mux(sent, after >> field, after[:capacity])),
            pending.eq(next_pending),
            room.eq(pick(lambda n: capacity - n)),
            room_sent.eq(pick(lambda n: capacity + field - n)),
            ending.eq(next_ending),
            full_field.eq(next_full),
            final.eq(next_ending & next_small),
        ]

        advance = Signal()                  # the next unit goes into the unit register
        finishing = Signal()                # the block's final group goes in now
        next_unit = Signal(unit_bits)
        next_bits = Signal(range(unit_bits + 1))
        next_last = Signal()                # the next unit ends its frame
        m.d.comb += [
            next_last.eq(blk.last & (group == groups - 1)),
            advance.eq(blk_valid & ~spare_valid),
            finishing.eq(advance & (group == groups - 1)),
            self.i.ready.eq(~blk_valid | finishing),
        ]
        with m.If(load | ~unit_valid):
            # The unit register takes the spare unit, else the one formed now (if any).
            m.d.sync += [
                unit.eq(Mux(spare_valid, spare, next_unit)),
                unit_bits_.eq(Mux(spare_valid, spare_bits, next_bits)),
                unit_last.eq(Mux(spare_valid, spare_last, next_last)),
                unit_valid.eq(spare_valid | advance),
                spare_valid.eq(0),
            ]
        with m.Elif(advance):
            m.d.sync += [
                spare.eq(next_unit),
                spare_bits.eq(next_bits),
                spare_last.eq(next_last),
                spare_valid.eq(1),
            ]

        # ---- The next unit, from the group's codes (always the low `lanes` codes of `blk`,
        # which shifts down a group as each unit is formed).
        codes = [blk.codes[lane] for lane in range(lanes)]
        nonzero = [code != 0 for code in codes]
        runs = []
        current = run
        for lane in range(lanes):
            runs.append(current)
            current = Mux(nonzero[lane], 0, current + 1)
        next_run = Signal(range(block + 1))
        m.d.comb += next_run.eq(current)

        content = Signal(self._content_bits)
        content_bits = Signal(range(self._content_bits + 1))
        variants = []                       # (element index, mode, value, width)
        for e, w in enumerate(self._widths):
            plain = Cat(code[:w] for code in codes)
            variants.append((e, ZeroMode.NONE, plain, lanes * w))
            value, count = _compact(m, [(code[:w], nz) for code, nz in zip(codes, nonzero)],
                                    w, f"zvc{e}")
            variants.append((e, ZeroMode.ZVC, value, count * w))
            tokens = [(Cat(r[:lb], code[:w]), nz) for r, code, nz in zip(runs, codes, nonzero)]
            value, count = _compact(m, tokens, lb + w, f"rle{e}")
            variants.append((e, ZeroMode.RLE, value, count * (lb + w)))
        # Selections by Array (expressions), not by m.Switch: under Icarus a combinational
        # process whose selector never changes is never evaluated (amaranth issue 1629).
        table = {(e, mode): (value, width) for e, mode, value, width in variants}
        choices = [table[(e, mode or ZeroMode.NONE)]
                   for e in range(len(self._widths))
                   for mode in (ZeroMode.NONE, ZeroMode.ZVC, ZeroMode.RLE, None)]
        select = Cat(cfg.zero_mode.as_value(), cfg.element) if len(self._widths) > 1 \
            else cfg.zero_mode.as_value()
        m.d.comb += [
            content.eq(Array(value for value, _ in choices)[select]),
            content_bits.eq(Array(width for _, width in choices)[select]),
        ]

        # The block prefix (group 0 only): scale, count, records, mask or non-zero count.
        # The non-zero count (an adder tree) is counted as the block is taken, so that it is
        # not in the same cycle as the unit's selections.
        mask = Cat(blk.codes[j] != 0 for j in range(block))
        population = Signal(range(block + 1))
        kk_now = cfg.outliers if k else C(0, 1)
        first_unit = Signal(unit_bits)
        first_bits = Signal(range(unit_bits + 1))
        heads = []
        for kk in range(k + 1):
            head = [blk.scale]
            if kk:
                head.append(C(kk, kk.bit_length()))
                head += [blk.outliers[j].as_value() for j in range(kk)]
            head_bits = 8 + kk.bit_length() + kk * self._record_bits
            for extra in ([], [mask], [population], []):
                bits = head_bits + sum(len(x) for x in extra)
                heads.append((Cat(*head, *extra, content), bits + content_bits))
        select = Cat(cfg.zero_mode.as_value(), kk_now) if k else cfg.zero_mode.as_value()
        m.d.comb += [
            first_unit.eq(Array(value for value, _ in heads)[select]),
            first_bits.eq(Array(bits for _, bits in heads)[select]),
        ]

        m.d.comb += [
            next_unit.eq(Mux(group == 0, first_unit, content)),
            next_bits.eq(Mux(group == 0, first_bits, content_bits)),
        ]
        with m.If(advance):
            m.d.sync += [
                blk.codes.eq(blk.codes.as_value() >> (lanes * wmax)),
                run.eq(next_run),
                group.eq(group + 1),
            ]
            with m.If(group == groups - 1):
                m.d.sync += [blk_valid.eq(0), group.eq(0)]

        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                blk.eq(self.i.payload),
                population.eq(_tree_sum([self.i.payload.codes[j] != 0 for j in range(block)])),
                blk_valid.eq(1),
                group.eq(0),
                run.eq(0),
                in_frame.eq(~self.i.payload.last),
            ]
            with m.If(~in_frame):
                m.d.sync += cfg.eq(self.cfg)
        return m
