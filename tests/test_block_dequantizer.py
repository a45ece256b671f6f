# amaranth: UnusedElaboratable=no
"""cocotb testbenches of the block dequantizer (MXDequantizer with outlier records and codebook
elements; OutlierMerger, NonUniformDecoder) against the golden model.

Every output beat is compared with ``golden.decode_blocks`` rounded to the output format by
the harness's scoreboard, under random valid/ready stalls. The golden values themselves are
checked against an independent decoder written here (ml_dtypes for float elements, the record
and level formulas of SPEC sections 3 and 4, NumPy/ml_dtypes casts for the output rounding),
so the hardware is checked against it too. Each configuration streams frames of: blocks that
``golden.encode_blocks`` makes from heavy-tailed data (Laplace, Student-t), edge blocks (NaN,
Inf, all zero, K+1 equal maxima, all outliers negative, saturated records, clamped scales),
blocks with fewer records in use than the core's K (per frame and per block), and arbitrary
blocks (any scale, code and record, duplicate record indices). CI runs 10^4 blocks per
configuration; ``LOWPREC_LONG=1`` runs 10^6.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

import golden
from hdl import MXDequantizer, OutlierMerger, NonUniformDecoder
from hdl.mx_layouts import check_block_element
from sim.mx import BlockFrame, run_dequantizer, dequantize_mx_rtl
from sim.stimulus import float_bits, from_bits
from references import LONG, ML_TYPES


BLOCKS = 1_000_000 if LONG else 10_000

pytestmark = pytest.mark.cocotb

OF = golden.OutlierFormat


# --- an independent reference decoder -------------------------------------------------------

def _element_values(codes, element):
    """Values of element codes (float element via ml_dtypes or the int formula)."""
    fmt = element.format
    if fmt.twos_complement:
        signed = np.where(codes >= 1 << (fmt.bits - 1), codes - (1 << fmt.bits), codes)
        return np.ldexp(signed.astype(np.float64), 2 - fmt.bits)
    return codes.astype(np.uint8).view(ML_TYPES[fmt.name]).astype(np.float64)


def _record_values(codes, outliers):
    """``(-1)^s 2^(d-1) (1 + m/2^Mo)`` for d >= 1, ``(-1)^s m/2^Mo`` for d == 0."""
    D, Mo = outliers.exp_bits, outliers.man_bits
    codes = codes.astype(np.int64)
    m = codes & ((1 << Mo) - 1)
    d = (codes >> Mo) & ((1 << D) - 1)
    magnitude = np.ldexp(np.where(d == 0, m, m + (1 << Mo)).astype(np.float64),
                         np.maximum(d, 1) - 1 - Mo)
    return np.where(codes >> (D + Mo) & 1, -magnitude, magnitude)


def _reference_values(frame, element, block, outliers):
    blocks = frame.blocks
    scales = np.asarray(blocks.scales).reshape(-1).astype(np.int64)
    n = scales.size
    codes = np.asarray(blocks.codes).reshape(n, block).astype(np.int64)
    if element.format is None:
        levels = frame.levels
        if levels is None:
            levels = [element.codebook] * n
        elif isinstance(levels, golden.Codebook):
            levels = [levels] * n
        table = np.array([cb.levels for cb in levels])
        n_bits = element.n_bits
        magnitude = np.take_along_axis(table, codes & ((1 << n_bits) - 1), axis=1)
        values = np.where(codes >> n_bits & 1, -magnitude, magnitude)
    else:
        values = _element_values(codes, element)
    values = np.ldexp(values, (scales - 127)[:, None])
    index = np.asarray(blocks.outlier_index).reshape(n, -1).astype(np.int64)
    records = np.asarray(blocks.outlier_codes).reshape(n, -1)
    count = np.broadcast_to(index.shape[1] if frame.count is None else frame.count, (n,))
    rows = np.arange(n)
    for r in reversed(range(index.shape[1])):          # the first record written last
        use = rows[r < count]
        values[use, index[use, r]] = np.ldexp(_record_values(records[use, r], outliers),
                                              scales[use] - 127 + element.emax)
    values[scales == 0xFF] = np.nan
    return values.reshape(-1)


def _check_against_reference(results, frames, element, block, outliers, out_format):
    """The golden bit patterns equal the reference values cast to ``out_format`` by NumPy /
    ml_dtypes (round to nearest even, overflow to Inf); NaN at the same places."""
    for number, (bits, frame) in enumerate(zip(results, frames)):
        values = _reference_values(frame, element, block, outliers)
        with np.errstate(over="ignore"):
            expected = float_bits(values, out_format).astype(np.int64)
        nan = np.isnan(values)
        got_nan = np.isnan(from_bits(bits, out_format).astype(np.float64))
        np.testing.assert_array_equal(got_nan, nan, err_msg=f"NaN positions, frame {number}")
        bad = np.nonzero(np.asarray(bits, np.int64)[~nan] != expected[~nan])[0]
        assert bad.size == 0, (f"frame {number}: {bad.size} differences from the reference, "
                               f"first at {np.flatnonzero(~nan)[bad[:5]]}")


# --- stimulus ---------------------------------------------------------------------------------

def _heavy(n, block, rng, kind, spread=(-40, 40)):
    """Heavy-tailed blocks, each scaled by ``2^j`` for a random ``j`` in ``spread``."""
    if kind == "laplace":
        x = rng.laplace(size=(n, block))
    else:
        x = rng.standard_t(2, size=(n, block))
    return x * np.exp2(rng.integers(*spread, size=(n, 1)))


EDGES = ("nan", "inf", "zeros", "ties", "negative", "saturated", "tiny", "huge", "single")


def _edge_blocks(n, block, k, rng):
    """Blocks of the edge classes (float64): NaN, ±Inf, ±0, K+1 equal maxima, the K largest all
    negative, outliers far beyond any record, magnitudes whose scale clamps at 2^-127 or
    2^127, a single non-zero element."""
    kinds = rng.integers(0, len(EDGES), n)
    out = rng.standard_normal((n, block))
    rows = np.arange(n)
    for j, name in enumerate(EDGES):
        sel = rows[kinds == j]
        if not sel.size:
            continue
        x = rng.standard_normal((sel.size, block))
        if name in ("nan", "inf"):
            x[np.arange(sel.size), rng.integers(0, block, sel.size)] = \
                np.nan if name == "nan" else rng.choice([-np.inf, np.inf], sel.size)
        elif name == "zeros":
            x = rng.choice([0.0, -0.0], size=x.shape)
        elif name == "ties":
            x = np.clip(x, -1.9, 1.9)
            for i in range(sel.size):
                where = rng.permutation(block)[:min(k + 1, block)]
                x[i, where] = rng.choice([-4.0, 4.0], where.size)
        elif name == "negative":
            x = np.abs(x)
            top = np.argsort(-x, axis=1, kind="stable")[:, :k]
            np.put_along_axis(x, top, -np.take_along_axis(x, top, axis=1) * 8, axis=1)
        elif name == "saturated":
            x *= 2.0 ** -30
            x[np.arange(sel.size), rng.integers(0, block, sel.size)] = \
                rng.choice([-1, 1], sel.size) * 2.0 ** rng.integers(10, 80, sel.size)
        elif name == "tiny":
            x *= 2.0 ** rng.integers(-160, -126, (sel.size, 1))
        elif name == "huge":
            x *= 2.0 ** rng.integers(120, 140, (sel.size, 1))
        elif name == "single":
            keep = rng.integers(0, block, sel.size)
            x[np.arange(block)[None, :] != keep[:, None]] = 0.0
        out[sel] = x
    return out


def _random_codebook(n_bits, rng):
    steps = np.sort(rng.choice(np.arange(1, 512), (1 << n_bits) - 1, replace=False))
    if rng.random() < 0.5:
        steps[-1] = 511                                 # the largest level there is
    return golden.Codebook(tuple(np.concatenate([[0], steps]) / 256), name="random")


def _level_runs(n, palette, rng):
    """A codebook per block, in runs of 1 to 8 blocks (1: a reload with every block)."""
    out = []
    while len(out) < n:
        codebook = palette[rng.integers(len(palette))]
        out.extend([codebook] * int(rng.integers(1, 9)))
    return out[:n]


def _select(encoded, choice, block):
    """Blocks taken row by row from several encodings of the same data."""
    n = encoded[0].scales.size
    parts = []
    for field in range(4):
        arrays = [np.asarray(e[field]).reshape(n, -1) for e in encoded]
        parts.append(np.stack(arrays)[choice, np.arange(n)])
    scales, codes, index, records = parts
    return golden.Blocks(scales.reshape(-1), codes.reshape(-1), index, records)


def _encode(x, cfg, element, block, outliers, levels, palette):
    """``golden.encode_blocks`` of ``x`` (n, block) with the core's element, or for a loadable
    codebook with each block's own levels."""
    if element.loadable:
        encoded = [golden.encode_blocks(x, None, block, outliers=outliers, codebook=cb)
                   for cb in palette]
        choice = np.array([palette.index(cb) for cb in levels])
        return _select(encoded, choice, block)
    return golden.encode_blocks(x, element.format, block, outliers=outliers,
                                codebook=element.codebook)


def _arbitrary(n, block, element, outliers, rng, levels):
    """Any scale, code, record and count; duplicate record indices in about half the blocks."""
    scales = rng.integers(0, 256, n)
    near = rng.random(n) < 0.6
    scales[near] = rng.integers(100, 150, near.sum())
    scales[rng.random(n) < 0.02] = 0xFF
    codes = rng.integers(0, 1 << element.bits, (n, block))
    k = outliers.k
    index = rng.integers(0, block, (n, k))
    if k >= 2:
        dup = rng.random(n) < 0.5
        source = rng.integers(0, k - 1, n)
        target = source + 1 + rng.integers(0, k - 1 - source)
        index[dup, target[dup]] = index[dup, source[dup]]
    records = rng.integers(0, 1 << outliers.record_format.bits, (n, k))
    count = rng.integers(0, k + 1, n)
    blocks = golden.Blocks(scales.astype(np.uint8), codes.reshape(-1), index, records)
    return BlockFrame(blocks, count=count, levels=levels)


def _frames(cfg, n_blocks, rng):
    """Frames of ``n_blocks`` blocks in all: data, edges, fewer records in use, arbitrary."""
    block = cfg["block"]
    # Most of the data inside the output format's range (fp16's is narrow).
    spread = (-20, 12) if cfg["out_format"] == "fp16" else (-40, 40)
    element = check_block_element(cfg.get("elem"), cfg.get("codebook"))
    outliers = cfg.get("outliers") or OF(0)
    k = outliers.k
    palette = None
    if element.loadable:
        samples = _heavy(400, block, rng, "student")
        palette = [golden.uniform(element.n_bits), golden.log(element.n_bits),
                   golden.fit_codebook(samples, element.n_bits, block=block),
                   _random_codebook(element.n_bits, rng)]

    def levels_for(n):
        return _level_runs(n, palette, rng) if palette else None

    sizes = np.array([0.5, 0.15, 0.15, 0.2]) * n_blocks
    n_data, n_edge, n_less, n_arb = (int(s) for s in sizes)
    n_arb = n_blocks - n_data - n_edge - n_less
    frames = []
    fmt = outliers if k else None
    # Heavy-tailed data, in two frames (Laplace, Student-t).
    for kind, n in (("laplace", n_data // 2), ("student", n_data - n_data // 2)):
        levels = levels_for(n)
        x = _heavy(n, block, rng, kind, spread)
        frames.append(BlockFrame(_encode(x, cfg, element, block, fmt, levels, palette),
                                 levels=levels))
    levels = levels_for(n_edge)
    x = _edge_blocks(n_edge, block, k, rng)
    frames.append(BlockFrame(_encode(x, cfg, element, block, fmt, levels, palette),
                             levels=levels))
    # Fewer records than the core keeps: blocks encoded with K - 1 records (a count for the
    # whole frame), then blocks with all K records of which a random number are in use.
    levels = levels_for(n_less)
    x = _heavy(n_less, block, rng, "laplace", spread)
    if k:
        half = n_less // 2
        less = OF(k - 1, outliers.exp_bits, outliers.man_bits) if k > 1 else None
        frames.append(BlockFrame(
            _encode(x[:half], cfg, element, block, less, levels[:half] if levels else None,
                    palette), count=k - 1, levels=levels[:half] if levels else None))
        rest = levels[half:] if levels else None
        frames.append(BlockFrame(_encode(x[half:], cfg, element, block, fmt, rest, palette),
                                 count=rng.integers(0, k + 1, n_less - half), levels=rest))
    else:
        frames.append(BlockFrame(_encode(x, cfg, element, block, fmt, levels, palette),
                                 levels=levels))
    arbitrary_levels = None
    if palette:
        arbitrary_levels = [_random_codebook(element.n_bits, rng) if rng.random() < 0.3
                            else cb for cb in levels_for(n_arb)]
    frames.append(_arbitrary(n_arb, block, element, outliers, rng, arbitrary_levels))
    return frames


# --- the configurations -----------------------------------------------------------------------

# Icarus simulates about 10^4 elements a second whatever the lane count: blocks are small
# where stalls are heavy, and only one configuration uses 32-element blocks.
_FITTED4 = golden.fit_codebook(np.random.default_rng(3).standard_t(3, (1000, 16)), 4, block=16)
CONFIGS = {
    "k1-e4m3-fp32-x4": dict(elem="e4m3", block=16, lanes=4, out_format="fp32",
                            outliers=OF(1, 4, 7), in_stall=0.3, out_stall=0.3),
    "k2-int8-bf16-x1": dict(elem="int8", block=8, lanes=1, out_format="bf16",
                            outliers=OF(2, 6, 12), in_stall=0.1, out_stall=0.1),
    "k4-e2m1-fp16-x8": dict(elem="e2m1", block=32, lanes=8, out_format="fp16",
                            outliers=OF(4, 3, 10), in_stall=0.5, out_stall=0.2),
    "uniform3-fp32-x8": dict(codebook=golden.uniform(3), block=8, lanes=8, out_format="fp32",
                             in_stall=0.9, out_stall=0.1),
    "log2-bf16-x8": dict(codebook=golden.log(2), block=8, lanes=8, out_format="bf16",
                         in_stall=0.1, out_stall=0.9),
    "fitted4-k2-fp16-x4": dict(codebook=_FITTED4, block=16, lanes=4, out_format="fp16",
                               outliers=OF(2, 2, 3), in_stall=0.3, out_stall=0.5),
    "loadable3-fp32-x4": dict(codebook=3, block=16, lanes=4, out_format="fp32",
                              in_stall=0.3, out_stall=0.3),
    "loadable2-k1-bf16-x1": dict(codebook=2, block=8, lanes=1, out_format="bf16",
                                 outliers=OF(1, 1, 0), in_stall=0.2, out_stall=0.2),
}


def _core_kwargs(cfg):
    return {key: cfg[key] for key in ("elem", "block", "lanes", "out_format", "codebook",
                                      "outliers") if key in cfg}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_block_dequantizer_matches_golden(name):
    cfg = CONFIGS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    frames = _frames(cfg, BLOCKS, rng)
    kwargs = _core_kwargs(cfg)
    results, run = run_dequantizer(frames, **kwargs, in_stall=cfg["in_stall"],
                                   out_stall=cfg["out_stall"],
                                   seed=int(rng.integers(0, 2 ** 31)))
    assert sum(f.blocks.scales.size for f in frames) == BLOCKS
    assert len(run.out_beats) * cfg["lanes"] == BLOCKS * cfg["block"]
    element = check_block_element(cfg.get("elem"), cfg.get("codebook"))
    _check_against_reference(results, frames, element, cfg["block"],
                             cfg.get("outliers") or OF(0), cfg["out_format"])


def test_first_record_wins_and_count_limits():
    """Hand-made records: duplicates (the first wins), records past ``count`` ignored (even
    when they name another element), an outlier slot whose element code is not 0."""
    block, k = 8, 3
    outliers = OF(k, 4, 7)
    one = 0b0_0001_0000000                              # record code of 2^0 (d = 1)
    two = 0b0_0010_0000000                              # 2^1
    six = 0b1_0011_1000000                              # -2^2 * 1.5
    scales = np.array([127, 127, 130, 127, 0xFF], np.uint8)
    codes = np.full((5, block), 0x38, np.int64)         # e4m3 1.0 everywhere
    index = np.array([[3, 3, 3], [2, 5, 2], [0, 1, 7], [6, 6, 0], [1, 2, 3]])
    records = np.array([[one, two, six], [six, two, one], [two, six, one],
                        [six, one, two], [one, one, one]])
    count = np.array([3, 3, 1, 2, 3])
    blocks = golden.Blocks(scales, codes.reshape(-1), index, records)
    bits = dequantize_mx_rtl(blocks, elem="e4m3", block=block, outliers=outliers,
                             count=count, lanes=2)
    values = bits.view(np.float32).reshape(5, block)
    # Records are in units of 2^(scale - 127 + emax), emax = 8 for e4m3.
    expected = np.ones((5, block))
    expected[0, 3] = 1.0 * 2 ** 8                       # records 0, 1, 2 all name 3: the first
    expected[1, [2, 5]] = [-6.0 * 2 ** 8, 2.0 * 2 ** 8]
    expected[2] = 8.0
    expected[2, 0] = 2.0 * 2 ** 11                      # count 1: records 1, 2 are ignored
    expected[3, 6] = -6.0 * 2 ** 8
    expected[4] = np.nan
    np.testing.assert_array_equal(values, expected)


@pytest.mark.parametrize("lanes", [1, 8])
def test_block_dequantizer_sustains_one_beat_per_cycle(lanes):
    """No stalls, levels reloaded with every block, outliers in use: one beat a cycle."""
    rng = np.random.default_rng(lanes)
    block, n = 16, 300
    outliers = OF(2, 4, 7)
    palette = [golden.uniform(3), golden.log(3)]
    levels = [palette[j % 2] for j in range(n)]
    x = _heavy(n, block, rng, "student")
    frame = BlockFrame(_select([golden.encode_blocks(x, None, block, outliers=outliers,
                                                     codebook=cb) for cb in palette],
                               np.arange(n) % 2, block), levels=levels)
    _, run = run_dequantizer([frame], codebook=3, outliers=outliers, block=block, lanes=lanes,
                             out_format="bf16")
    beats = n * block // lanes
    # One beat a cycle after the pipeline fills (the harness counts from the first input
    # valid to the last output beat); a bubble per block would add n cycles.
    assert run.cycles == beats + MXDequantizer.LATENCY, \
        f"{run.cycles} cycles for {beats} beats"


def test_levels_are_taken_with_the_first_group():
    """Amaranth simulation: ``cfg.levels`` changing while a block is being emitted (groups 1..)
    does not touch that block; the next block takes the levels present at its first group."""
    block, lanes = 4, 1
    dut = MXDequantizer(codebook=2, block=block, lanes=lanes, out_format="fp32")
    first, second = golden.uniform(2), golden.log(2)
    codes = np.array([[0, 1, 2, 3], [7, 6, 5, 1]])
    beats = [{"scale": 127, "codes": list(map(int, row)), "last": j}
             for j, row in enumerate(codes)]
    garbage = [[0, 500, 501, 502], [0, 3, 9, 27]]
    out = []

    async def testbench(ctx):
        ctx.set(dut.o.ready, 1)
        for number, beat in enumerate(beats):
            ctx.set(dut.i.payload, beat)
            ctx.set(dut.i.valid, 1)
            for group in range(block // lanes):
                levels = (first if number == 0 else second).level_codes if group == 0 \
                    else garbage[group % 2]
                ctx.set(dut.cfg.levels, list(levels))
                await ctx.tick()
        ctx.set(dut.i.valid, 0)
        for _ in range(40):
            await ctx.tick()

    async def collect(ctx):
        async for _, _, valid, data in ctx.tick().sample(dut.o.valid, dut.o.payload.data):
            if valid:                                   # o.ready is always high
                out.append(int(data[0]))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.add_process(collect)
    sim.run_until(1e-6)
    got = np.array(out, np.uint32).view(np.float32)
    expected = np.concatenate([golden.decode_codebook(codes[0], first),
                               golden.decode_codebook(codes[1], second)])
    np.testing.assert_array_equal(got, expected)


def test_named_cores_and_ports():
    loadable = MXDequantizer(codebook=3)
    assert "cfg" in loadable.signature.members
    assert "cfg" not in MXDequantizer(codebook=golden.log(3)).signature.members
    assert "cfg" not in MXDequantizer().signature.members
    merger = OutlierMerger(outliers=OF(2), elem="e5m2", block=16, lanes=4)
    assert isinstance(merger, MXDequantizer)
    payload = merger.signature.members["i"].signature.members["payload"].shape
    assert {name for name, _ in payload} == {"scale", "codes", "count", "outliers", "last"}
    decoder = NonUniformDecoder(codebook=2, outliers=OF(1))
    assert isinstance(decoder, MXDequantizer) and "cfg" in decoder.signature.members
    payload = MXDequantizer().signature.members["i"].signature.members["payload"].shape
    assert {name for name, _ in payload} == {"scale", "codes", "last"}


@pytest.mark.parametrize("make,error,match", [
    (lambda: MXDequantizer(elem="e4m3", codebook=golden.log(2)), ValueError,
     "Give either an element format or a codebook, not both"),
    (lambda: MXDequantizer(codebook=5), ValueError,
     "Codebook index width must be between 1 and 4 bits"),
    (lambda: MXDequantizer(codebook="log"), TypeError,
     "Codebook must be None, a Codebook or an index width in bits, not 'log'"),
    (lambda: MXDequantizer(outliers=2), TypeError,
     "Outliers must be an OutlierFormat or None, not 2"),
    (lambda: MXDequantizer(outliers=OF(4), block=4), ValueError,
     "Outlier count must be below the block size 4, not 4"),
    (lambda: MXDequantizer(elem="fp4_r4"), ValueError,
     "Element format must be a radix-2 format"),
    (lambda: MXDequantizer(codebook=2, lanes=3), ValueError,
     "Lane count must be a power of two between 1 and the block size 32, not 3"),
    (lambda: OutlierMerger(outliers=None), ValueError,
     "An outlier merger needs outliers with at least one record per block, not None"),
    (lambda: OutlierMerger(outliers=OF(0)), ValueError,
     "An outlier merger needs outliers with at least one record per block"),
    (lambda: NonUniformDecoder(codebook=None), ValueError,
     "A non-uniform decoder needs a codebook"),
])
def test_block_dequantizer_rejects_bad_parameters(make, error, match):
    with pytest.raises(error, match=match):
        make()
