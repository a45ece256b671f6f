# amaranth: UnusedElaboratable=no
"""The compression side of SPEC section 5: :class:`hdl.zero.ZeroCompressor` (Amaranth
simulation, its fields against the block fields of ``golden.codec``) and
:class:`hdl.compress_engine.CompressionEngine` (cocotb, every output word against
``golden.compress``), with random valid/ready stalls on every stream."""

import numpy as np
import pytest
from amaranth.sim import Simulator

import golden
from golden import OutlierFormat, CompressionConfig
from golden.codec import _block_fields
from hdl.frame_params import ZERO_MODE_NAMES
from hdl.zero import ZeroCompressor
from references import LONG


pytestmark = pytest.mark.cocotb


# ---- ZeroCompressor (Amaranth simulation) ----------------------------------------------------

def _bits_of(fields):
    """One integer holding the concatenated fields ``(value, width)`` and its length."""
    acc, pos = 0, 0
    for value, width in fields:
        acc |= (int(value) & ((1 << int(width)) - 1)) << pos
        pos += int(width)
    return acc, pos


def _expected_block_bits(config, blocks):
    values, widths = _block_fields(config, blocks)
    return _bits_of(zip(values.reshape(-1), widths.reshape(-1)))


def _sparse(rng, n, zeros):
    x = rng.standard_normal(n) * np.exp2(rng.integers(-6, 6, n))
    x[rng.random(n) < zeros] = 0.0
    return x


def run_zero(frames, *, widths, block, lanes, outliers, word_bits, stalls=(0.3, 0.3), seed=0):
    """Run the compressor on ``frames`` (``(config, blocks, element index)``); returns the
    fields of each frame as ``(value, width)`` lists, split at ``last``."""
    dut = ZeroCompressor(element_bits=widths, block=block, lanes=lanes, outliers=outliers,
                         word_bits=word_bits)
    k = 0 if outliers is None else outliers.k
    rng = np.random.default_rng(seed)
    beats = []
    for config, blocks, element in frames:
        codes = np.asarray(blocks.codes).reshape(-1, block)
        nb = codes.shape[0]
        kk = config.k
        index = np.asarray(blocks.outlier_index).reshape(nb, kk)
        records = np.asarray(blocks.outlier_codes).reshape(nb, kk)
        cfg = {"zero_mode": ZERO_MODE_NAMES[config.zero_mode]}
        if len(widths) > 1:
            cfg["element"] = element
        if k:
            cfg["outliers"] = kk
        for b in range(nb):
            payload = {"scale": int(np.asarray(blocks.scales).reshape(-1)[b]),
                       "codes": [int(c) for c in codes[b]], "last": int(b == nb - 1)}
            if k:
                payload["count"] = kk
                payload["outliers"] = [
                    {"index": int(index[b, j]) if j < kk else 0,
                     "code": int(records[b, j]) if j < kk else 0} for j in range(k)]
            beats.append((payload, cfg))
    out = []
    done = {}

    async def driver(ctx):
        for payload, cfg in beats:
            while rng.random() < stalls[0]:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
            ctx.set(dut.i.payload, payload)
            ctx.set(dut.cfg, cfg)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        frame = []
        while len(out) < len(frames):
            ready = int(rng.random() >= stalls[1])
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid and ready:
                assert payload.width <= dut.max_field_bits
                assert payload.flush == 0
                frame.append((payload.value, payload.width))
                if payload.last:
                    out.append(frame)
                    frame = []
        done["ok"] = True

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(driver)
    sim.add_testbench(sink)
    sim.run_until((2000 + 40 * len(beats) * block) * 1e-8)
    assert done.get("ok"), f"only {len(out)} of {len(frames)} frames came out: hung"
    return out


ZERO_CASES = [
    # widths, block, lanes, outliers, word_bits
    ((8,), 8, 2, None, 32),
    ((4, 8), 16, 4, OutlierFormat(2, 3, 2), 32),
    ((6,), 32, 1, OutlierFormat(4, 5, 8), 64),
    ((8, 5), 4, 4, OutlierFormat(1, 2, 1), 64),
    ((4,), 64, 8, OutlierFormat(3, 6, 12), 32),
]


@pytest.mark.parametrize("widths, block, lanes, outliers, word_bits", ZERO_CASES)
def test_zero_compressor(widths, block, lanes, outliers, word_bits):
    rng = np.random.default_rng(block * 7 + lanes)
    elems = {4: "e2m1", 5: "int5", 6: "e3m2", 8: "e4m3"}
    frames = []
    for f in range(12 if not LONG else 60):
        element = int(rng.integers(len(widths)))
        mode = ("none", "zvc", "rle")[f % 3]
        kk = 0 if outliers is None else int(rng.integers(outliers.k + 1))
        fmt = None if outliers is None else OutlierFormat(kk, outliers.exp_bits,
                                                           outliers.man_bits)
        config = CompressionConfig(elem=elems[widths[element]], block=block, outliers=fmt,
                                   zero_mode=mode, word_bits=word_bits)
        nblocks = int(rng.integers(1, 5))
        x = _sparse(rng, nblocks * block, rng.choice([0.0, 0.5, 0.9, 1.0]))
        if f == 5:
            x[:block] = -0.0
        blocks = golden.encode_blocks(x, **config.quantize_options())
        frames.append((config, blocks, element))
    out = run_zero(frames, widths=widths, block=block, lanes=lanes, outliers=outliers,
                   word_bits=word_bits, seed=block)
    for n, ((config, blocks, _), fields) in enumerate(zip(frames, out)):
        assert _bits_of(fields) == _expected_block_bits(config, blocks), f"frame {n}"
        # whole words but the final field
        assert all(width == word_bits for _, width in fields[:-1]), f"frame {n}"
        assert fields[-1][1] <= word_bits


# ---- CompressionEngine (cocotb) ---------------------------------------------------------------

from hdl.compress_engine import CompressionEngine               # noqa: E402
from sim.compress import compress_rtl                           # noqa: E402
from sim.stimulus import cast_to                                # noqa: E402


def _data(rng, shape, kind):
    n = int(np.prod(shape))
    if kind == "dense":
        x = rng.standard_normal(n) * np.exp2(rng.integers(-4, 5, n))
    elif kind == "relu":
        x = np.maximum(rng.standard_normal(n) * 3, 0)
    elif kind == "zeros":                  # +0 and -0 (whose code is not 0)
        x = np.zeros(n)
        x[rng.random(n) < 0.5] = -0.0
    elif kind == "zero+":
        x = np.zeros(n)
    elif kind == "special":                # NaN and Inf blocks among sparse data
        x = _sparse(rng, n, 0.5)
        x[rng.random(n) < 0.05] = np.nan
        x[rng.random(n) < 0.05] = -np.inf
    else:                                   # a fraction of zeros
        x = _sparse(rng, n, float(kind))
    return x.reshape(shape)


def _frames(rng, plan, make_config, in_format):
    """``plan``: (shape, data kind, zero mode, config extras); ``make_config`` builds the
    CompressionConfig from the zero mode and extras. The data are values of ``in_format``,
    so that the golden model sees what the engine sees."""
    frames = []
    for shape, kind, mode, extra in plan:
        x = cast_to(_data(rng, shape, kind), in_format).astype(np.float64)
        frames.append((x, make_config(mode, **extra)))
    return frames


def _check(frames, **params):
    out = compress_rtl(frames, **params)
    expected = [golden.compress(x, config) for x, config in frames]
    assert len(out) == len(expected)
    for n, (got, want) in enumerate(zip(out, expected)):
        assert got == want, f"frame {n} differs"


MODES = ("none", "zvc", "rle")


def _plan_a(rng):
    """Every data class in every zero mode, shapes of one to three axes, element switches."""
    plan = []
    shapes = [(37,), (1,), (8,), (3, 13), (2, 3, 5), (0,), (4, 0, 3), (2, 16), (5, 7)]
    kinds = ["dense", "0.5", "0.95", "relu", "zeros", "0.8", "zero+", "special"]
    for n in range(24 if not LONG else 96):
        shape = shapes[n % len(shapes)]
        extra = {"elem": ("e4m3", "e2m1")[(n // 2) % 2],
                 "rounding": ("nearest_even", "stochastic", "toward_zero",
                              "nearest_away")[n % 4],
                 "seed": int(rng.integers(0, 2 ** 32))}
        plan.append((shape, kinds[n % len(kinds)], MODES[n % 3], extra))
    return plan


@pytest.mark.parametrize("stalls", [(0.0, 0.0), (0.4, 0.4)])
def test_engine_two_elements(stalls):
    """fp16 in, e4m3 and e2m1 switched between frames, block 8, two lanes, W = 32."""
    rng = np.random.default_rng(11)
    frames = _frames(rng, _plan_a(rng), lambda mode, **e: CompressionConfig(
        block=8, zero_mode=mode, **e), "fp16")
    _check(frames, in_format="fp16", elems=("e4m3", "e2m1"), block=8, lanes=2,
           word_bits=32, in_stall=stalls[0], out_stall=stalls[1], seed=3)


def test_engine_outliers_codebooks():
    """bf16 in; int4, a loadable 2-bit codebook and a fixed 3-bit log codebook; outliers with
    K changing between frames; block 16, four lanes, W = 64; stalls everywhere."""
    rng = np.random.default_rng(12)
    fixed = golden.log(3)
    loads = [golden.uniform(2), golden.log(2), golden.Codebook((0.0, 0.25, 0.5, 1.0))]
    plan = []
    shapes = [(40,), (3, 21), (1,), (2, 2, 16), (9, 4), (16,), (7, 5)]
    kinds = ["dense", "0.6", "relu", "0.9", "zeros", "zero+", "special"]
    for n in range(15 if not LONG else 75):
        choice = n % 3
        extra = {"k": n % 3, "rounding": ("stochastic", "nearest_even")[n % 2],
                 "seed": int(rng.integers(0, 2 ** 32))}
        if choice == 0:
            extra["elem"] = "int4"
        elif choice == 1:
            extra["codebook"] = loads[n % len(loads)]
        else:
            extra["codebook"] = fixed
        plan.append((shapes[n % len(shapes)], kinds[n % len(kinds)], MODES[(n // 3) % 3],
                     extra))
    # golden.encode_blocks cannot encode an empty tensor with outliers or a codebook, so the
    # zero-dim frame is int4 with K = 0
    plan.insert(4, ((0, 4), "dense", "zvc", {"k": 0, "elem": "int4"}))

    def config(mode, k, elem=None, codebook=None, **e):
        return CompressionConfig(elem=elem, codebook=codebook, block=16, zero_mode=mode,
                                 outliers=OutlierFormat(k, 3, 2), word_bits=64, **e)
    frames = _frames(rng, plan, config, "bf16")
    _check(frames, in_format="bf16", elems=("int4", 2, fixed), block=16, lanes=4,
           outliers=OutlierFormat(2, 3, 2), word_bits=64, in_stall=0.3, out_stall=0.3, seed=5)


@pytest.mark.parametrize("word_bits", [32, 64])
def test_engine_lanes_equal_block(word_bits):
    """A block a beat (lanes = block = 4), one outlier, one axis only (max_ndim 1), e5m2."""
    rng = np.random.default_rng(13 + word_bits)
    plan = [((n * 3 + 1,), ("dense", "0.5", "zeros", "relu")[n % 4], MODES[n % 3],
             {"k": n % 2, "seed": n, "rounding": "stochastic" if n % 2 else "nearest_even"})
            for n in range(12)]
    plan.append(((0,), "dense", "rle", {"k": 0}))   # (golden: no empty tensor with K > 0)
    frames = _frames(rng, plan, lambda mode, k, **e: CompressionConfig(
        elem="e5m2", block=4, zero_mode=mode, outliers=OutlierFormat(k, 4, 3),
        word_bits=word_bits, sr_bits=5, **e), "fp32")
    _check(frames, in_format="fp32", elems="e5m2", block=4, lanes=4, sr_bits=5,
           outliers=OutlierFormat(1, 4, 3), word_bits=word_bits, max_ndim=1,
           in_stall=0.2, out_stall=0.5, seed=word_bits)


@pytest.mark.parametrize("lanes", [1, 8])
def test_engine_block32(lanes):
    """MX-sized blocks (32), int8 and e3m2, K up to 4, W = 32 (larger tensors and more frames
    with LOWPREC_LONG=1)."""
    rng = np.random.default_rng(lanes)
    plan = []
    shapes = [(4, 100), (1000,), (3, 2, 33), (0, 3)] if LONG else \
        [(2, 40), (70,), (3, 1, 33), (0, 3)]
    for n in range(30 if LONG else 8):
        shape = shapes[n % 4]
        plan.append((shape, ("dense", "0.5", "0.95", "relu", "zeros")[n % 5], MODES[n % 3],
                     {"elem": ("int8", "e3m2")[n % 2], "k": 0 if 0 in shape else n % 5,
                      "rounding": ("stochastic", "nearest_even")[n % 2], "seed": n}))
    frames = _frames(rng, plan, lambda mode, k, **e: CompressionConfig(
        block=32, zero_mode=mode, outliers=OutlierFormat(k, 5, 6), **e), "bf16")
    _check(frames, in_format="bf16", elems=("int8", "e3m2"), block=32, lanes=lanes,
           outliers=OutlierFormat(4, 5, 6), word_bits=32, in_stall=0.2, out_stall=0.2)


def test_engine_comparison_can_fail():
    """The words depend on what the test changes: a frame with another seed (stochastic
    rounding) or another zero mode is not what the engine writes."""
    import dataclasses
    rng = np.random.default_rng(14)
    x = cast_to(_data(rng, (2, 12), "0.5"), "fp16").astype(np.float64)
    config = CompressionConfig(elem="e4m3", block=8, rounding="stochastic", seed=1,
                               zero_mode="zvc")
    out = compress_rtl([(x, config)], in_format="fp16", elems=("e4m3",), block=8, lanes=2)
    assert out == [golden.compress(x, config)]
    assert out[0] != golden.compress(x, dataclasses.replace(config, seed=2))
    assert out[0] != golden.compress(x, dataclasses.replace(config, zero_mode="rle"))


@pytest.mark.parametrize("lanes, mode", [(2, "zvc"), (2, "rle"), (4, "none"), (4, "rle")])
def test_engine_throughput(lanes, mode):
    """With ``o`` always ready a frame takes ``max(input beats, output words)`` cycles, plus
    the header, the trailer and a fixed latency: e4m3 codes, block 8; with two lanes the input
    is the limit, with four (32 bits of codes a beat, plus the prefix) the output words."""
    from sim.compress import compress_cycles
    rng = np.random.default_rng(15)
    x = cast_to(_data(rng, (64, 32), "dense"), "fp16").astype(np.float64)
    config = CompressionConfig(elem="e4m3", block=8, zero_mode=mode)
    cycles = compress_cycles([(x, config)], in_format="fp16", elems=("e4m3",), block=8,
                             lanes=lanes)
    beats = x.size // lanes
    words = len(golden.compress(x, config)) // 4
    engine = CompressionEngine(in_format="fp16", elems=("e4m3",), block=8, lanes=lanes)
    bound = max(beats, words)
    assert bound <= cycles <= bound + engine.header_steps + 24, (cycles, beats, words)


# ---- parameter errors --------------------------------------------------------------------------

@pytest.mark.parametrize("params, error, match", [
    ({"in_format": "fp8"}, ValueError, r"Input format must be one of fp32, bf16, fp16, "
                                       r"not 'fp8'"),
    ({"elems": ()}, ValueError, r"Element choices must be a non-empty tuple"),
    ({"elems": ("e4m3", "fp16")}, ValueError, r"Element choice must be one of e5m2, .*, "
                                              r"not 'fp16'"),
    ({"elems": ("e4m3", 5)}, ValueError, r"Codebook index width must be between 1 and 4, "
                                         r"not 5"),
    ({"elems": ("e4m3", 2.0)}, TypeError, r"Element choice must be an element name, a "
                                          r"Codebook or a codebook index width, not 2.0"),
    ({"elems": ("e4m3", True)}, TypeError, r"Element choice must be .*, not True"),
    ({"block": 48}, ValueError, r"Block size must be a power of two between 2 and 64, not 48"),
    ({"block": 8, "lanes": 16}, ValueError, r"Lane count must be a power of two between 1 "
                                            r"and the block size 8, not 16"),
    ({"lanes": 3}, ValueError, r"Lane count must be a power of two"),
    ({"sr_bits": 25}, ValueError, r"Stochastic rounding bits must be an integer between 1 "
                                  r"and 24, not 25"),
    ({"block": 4, "outliers": OutlierFormat(4, 3, 2)}, ValueError,
     r"Outlier count must be below the block size 4, not 4"),
    ({"outliers": "k=2"}, TypeError, r"Outliers must be an OutlierFormat or None"),
    ({"word_bits": 16}, ValueError, r"Word width must be 32 or 64 bits, not 16"),
    ({"word_bits": True}, ValueError, r"Word width must be 32 or 64 bits, not True"),
    ({"max_ndim": 0}, ValueError, r"Maximum number of axes must be an integer between 1 and 15, "
                                  r"not 0"),
    ({"max_ndim": 16}, ValueError, r"Maximum number of axes must be an integer between 1 and 15, "
                                   r"not 16"),
])
def test_engine_parameter_errors(params, error, match):
    with pytest.raises(error, match=match):
        CompressionEngine(**params)


@pytest.mark.parametrize("params, error, match", [
    ({"element_bits": 0}, ValueError, r"Element code width must be an integer between 1 and "
                                      r"16, or a non-empty tuple of them, not 0"),
    ({"element_bits": (8, 17)}, ValueError, r"Element code width .*, not \(8, 17\)"),
    ({"element_bits": ()}, ValueError, r"Element code width .*, not \(\)"),
    ({"element_bits": [8]}, ValueError, r"Element code width .*, not \[8\]"),
    ({"block": 3}, ValueError, r"Block size must be a power of two between 2 and 64, not 3"),
    ({"lanes": 64}, ValueError, r"Lane count must be a power of two between 1 and the block "
                                r"size 32, not 64"),
    ({"outliers": OutlierFormat(4, 3, 2), "block": 2}, ValueError,
     r"Outlier count must be below the block size 2, not 4"),
    ({"word_bits": 48}, ValueError, r"Word width must be 32 or 64 bits, not 48"),
])
def test_zero_compressor_parameter_errors(params, error, match):
    params = {"element_bits": 8, "block": 32, **params}
    with pytest.raises(error, match=match):
        ZeroCompressor(**params)


def test_descriptor_errors():
    """The harness refuses frames the engine cannot write."""
    from sim.compress import engine_descriptor
    engine = CompressionEngine(in_format="fp16", elems=("e4m3", 2), block=8,
                               outliers=OutlierFormat(1, 3, 2))
    none = OutlierFormat(0, 3, 2)
    with pytest.raises(ValueError, match=r"no element choice for 'int4'"):
        engine_descriptor(engine, (4,), CompressionConfig(elem="int4", block=8, outliers=none))
    with pytest.raises(ValueError, match=r"block 16 \(engine 8\)"):
        engine_descriptor(engine, (4,), CompressionConfig(block=16, outliers=none))
    with pytest.raises(ValueError, match=r"outliers"):
        engine_descriptor(engine, (4,), CompressionConfig(block=8,
                                                           outliers=OutlierFormat(1, 2, 2)))
    with pytest.raises(ValueError, match=r"between 1 and 4 axes, not 5"):
        engine_descriptor(engine, (1, 1, 1, 1, 1), CompressionConfig(block=8,
                          outliers=OutlierFormat(0, 3, 2)))


# ---- malformed descriptors ---------------------------------------------------------------------

def test_malformed_descriptors_are_flagged_and_replaced():
    """Fields outside their range pulse ``cfg_error`` once and are replaced (element 0, K = k,
    zero mode none, ndim 1 or max_ndim): the frame written is golden.compress of the replaced
    configuration. A valid descriptor does not pulse. (Amaranth simulator: it watches the
    ``cfg_error`` output; frames without elements, so no beats are needed.)"""
    from amaranth.hdl import Shape
    from amaranth.sim import Simulator
    from sim.compress import engine_descriptor

    outliers = OutlierFormat(2, 3, 2)
    engine = CompressionEngine(in_format="fp16", elems=("e4m3", "e2m1", "int4"), block=8,
                               lanes=2, outliers=outliers, word_bits=32, max_ndim=4)
    layout = engine.descriptor_layout

    def patched(shape, config, **fields):
        value = engine_descriptor(engine, shape, config)
        for name, raw in fields.items():
            field = layout[name]
            width = Shape.cast(field.shape).width
            value &= ~(((1 << width) - 1) << field.offset)
            value |= raw << field.offset
        return value

    good = CompressionConfig(elem="e2m1", block=8, zero_mode="rle", outliers=OutlierFormat(1, 3, 2))
    fixed = CompressionConfig(elem="e4m3", block=8, zero_mode="none", outliers=outliers)
    cases = [  # (descriptor, expected frame, flagged)
        (patched((0,), good), golden.compress(np.zeros((0,), np.float32), good), False),
        (patched((0,), good, element=3, outliers=3, zero_mode=3),
         golden.compress(np.zeros((0,), np.float32), fixed), True),
        (patched((0,), good, ndim=0), golden.compress(np.zeros((0,), np.float32), good), True),
        (patched((0, 1, 1, 1), good, ndim=6),
         golden.compress(np.zeros((0, 1, 1, 1), np.float32), good), True),
        (patched((0, 5), good), golden.compress(np.zeros((0, 5), np.float32), good), False),
    ]
    sim = Simulator(engine)
    sim.add_clock(1e-6)
    words, errors = [], []

    async def testbench(ctx):
        ctx.set(engine.o.ready, 1)
        for descriptor, _, _ in cases:
            ctx.set(engine.cfg.valid, 1)
            ctx.set(engine.cfg.payload, layout.from_bits(descriptor))
            await ctx.tick().until(engine.cfg.ready)
            ctx.set(engine.cfg.valid, 0)
        await ctx.tick().repeat(400)

    async def watch(ctx):
        async for clk_edge, rst, o_valid, o_word, error in ctx.tick().sample(
                engine.o.valid, engine.o.payload, engine.cfg_error):
            if o_valid:
                words.append((int(o_word.word), int(o_word.last)))
            if error:
                errors.append(len(words))

    sim.add_testbench(testbench)
    sim.add_process(watch)
    sim.run()
    frames, current = [], []
    for word, last in words:
        current.append(word.to_bytes(4, "little"))
        if last:
            frames.append(b"".join(current))
            current = []
    assert frames == [expected for _, expected, _ in cases]
    assert len(errors) == sum(flagged for _, _, flagged in cases)
