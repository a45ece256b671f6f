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
from hdl.zero import ZeroCompressor, ZERO_MODE_NAMES
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
        nb = np.asarray(blocks.scales).size
        assert len(fields) >= nb * block // lanes, f"frame {n}: too few fields"
