"""cocotb testbenches of MXQuantizer and MXDequantizer against the golden model.

Every output beat is compared with the golden model by the harness's scoreboard, under random
valid/ready stalls, on data with every edge class of :mod:`sim.stimulus`, over several frames
with configuration changes between them. CI runs 10^4 blocks per configuration;
``LOWPREC_LONG=1`` runs 10^6.
"""

import numpy as np
import pytest

import golden
from hdl import MXQuantizer, MXDequantizer
from sim.mx import Frame, run_quantizer, run_dequantizer, quantize_mx_rtl, dequantize_mx_rtl
from sim.stimulus import float_blocks, float_bits, cast_to
from references import LONG


BLOCKS = 1_000_000 if LONG else 10_000

pytestmark = pytest.mark.cocotb

OTHER_ROUNDING = {"stochastic": "nearest_even", "nearest_even": "stochastic",
                  "toward_zero": "stochastic", "nearest_away": "toward_zero"}


def _frames(in_format, elem, block, lanes, rounding, blocks, rng):
    """Frames covering ``blocks`` blocks: a 2-D tensor, a frame with the other rounding mode,
    a one-row frame whose length ends inside a block (the core pads it), a one-block frame."""
    data = float_blocks(blocks, block, in_format, elem, rng)
    half = blocks // 2
    quarter = blocks // 4
    rows = max(1, half // 4)
    main = data[:rows * 4].reshape(rows, 4 * block)
    other = data[rows * 4:half + quarter].reshape(-1)
    tail = data[half + quarter:-1].reshape(-1)
    cut = max(lanes, (tail.size - block // 2) // lanes * lanes)
    return [
        Frame(main, rounding, int(rng.integers(0, 2 ** 32))),
        Frame(other, OTHER_ROUNDING[rounding], int(rng.integers(0, 2 ** 32))),
        Frame(tail[:cut], rounding, int(rng.integers(0, 2 ** 32))),
        Frame(data[-1], rounding, 0),
    ]


# Icarus runs these cores at about 10^4 cycles/s: stalls are heaviest where beats are fewest.
QUANTIZER_CONFIGS = [
    # in_format, elem, block, lanes, rounding, in_stall, out_stall
    ("fp32", "e4m3", 32, 1, "nearest_even", 0.1, 0.1),
    ("fp32", "e4m3", 32, 8, "stochastic", 0.5, 0.5),
    ("fp32", "int8", 32, 8, "nearest_even", 0.1, 0.9),
    ("fp32", "int8", 32, 4, "stochastic", 0.2, 0.2),
    ("bf16", "e2m1", 16, 4, "stochastic", 0.3, 0.3),
    ("fp16", "e5m2", 8, 2, "nearest_even", 0.5, 0.5),
    ("fp32", "e3m2", 64, 16, "toward_zero", 0.2, 0.5),
    ("bf16", "e2m3", 2, 2, "nearest_away", 0.9, 0.2),
    ("fp16", "int4", 4, 1, "stochastic", 0.5, 0.5),
    ("fp32", "e2m1", 32, 32, "nearest_even", 0.3, 0.3),
]


@pytest.mark.parametrize("in_format,elem,block,lanes,rounding,in_stall,out_stall",
                         QUANTIZER_CONFIGS)
def test_quantizer_matches_golden(in_format, elem, block, lanes, rounding, in_stall, out_stall):
    rng = np.random.default_rng(hash((in_format, elem, block, lanes)) % 2 ** 32)
    frames = _frames(in_format, elem, block, lanes, rounding, BLOCKS, rng)
    results, run = run_quantizer(frames, elem=elem, block=block, lanes=lanes,
                                 in_format=in_format, in_stall=in_stall, out_stall=out_stall,
                                 seed=int(rng.integers(0, 2 ** 31)))
    assert sum(blocks.scales.size for blocks in results) >= BLOCKS - 1
    assert len(run.out_beats) == sum(blocks.scales.size for blocks in results)


@pytest.mark.parametrize("lanes", [1, 8, 32])
def test_quantizer_sustains_one_beat_per_cycle(lanes):
    rng = np.random.default_rng(lanes)
    block, blocks = 32, 400
    x = float_blocks(blocks, block, "fp32", "e4m3", rng).reshape(-1)
    _, run = run_quantizer([Frame(x, "stochastic", 3)], elem="e4m3", block=block, lanes=lanes)
    beats = blocks * block // lanes
    # One beat per cycle plus one block and the pipeline to fill: a bubble per block would
    # add >= blocks / 2.
    assert run.cycles <= beats + block // lanes + 24, f"{run.cycles} cycles for {beats} beats"


def test_quantizer_api_matches_golden_on_tensor():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 5, 70)).astype(np.float32)
    scales, codes = quantize_mx_rtl(x, elem="e2m3", block=16, rounding="stochastic", seed=99,
                                    lanes=4)
    expected = golden.encode_mx(x, "e2m3", 16, "stochastic", 99)
    np.testing.assert_array_equal(scales, expected[0])
    np.testing.assert_array_equal(codes, expected[1])


DEQUANTIZER_CONFIGS = [
    # elem, block, out_format, lanes, in_stall, out_stall
    ("e4m3", 32, "fp32", 4, 0.3, 0.3),
    ("e5m2", 32, "fp16", 8, 0.9, 0.1),
    ("int8", 32, "bf16", 16, 0.1, 0.5),
    ("e2m1", 16, "fp16", 4, 0.3, 0.3),
    ("e3m2", 8, "fp32", 8, 0.2, 0.9),
    ("e2m3", 4, "bf16", 1, 0.2, 0.2),
]


@pytest.mark.parametrize("elem,block,out_format,lanes,in_stall,out_stall", DEQUANTIZER_CONFIGS)
def test_dequantizer_matches_golden(elem, block, out_format, lanes, in_stall, out_stall):
    rng = np.random.default_rng(hash((elem, block, out_format, lanes)) % 2 ** 32)
    fmt = golden.resolve_format(elem)
    blocks = BLOCKS // 2
    # Arbitrary scale/code pairs: NaN scales, overflow and underflow of the output format.
    scales = rng.integers(0, 256, size=blocks).astype(np.uint8)
    scales[rng.random(blocks) < 0.5] = rng.integers(100, 150, size=blocks)[0]
    codes = rng.integers(0, 1 << fmt.bits, size=(blocks, block))
    # Blocks the quantizer makes from edge-class data of the same format.
    data = float_blocks(BLOCKS - blocks, block, out_format, elem, rng)
    made = golden.encode_mx(data, elem, block)
    frames = [(scales, codes.reshape(-1)),
              (made[0].reshape(-1), made[1].reshape(-1))]
    results, _ = run_dequantizer(frames, elem=elem, block=block, out_format=out_format,
                                 lanes=lanes, in_stall=in_stall, out_stall=out_stall,
                                 seed=int(rng.integers(0, 2 ** 31)))
    # The round trip is exact: what comes back is the golden quantized value itself.
    finite = (made[0] != 0xFF).reshape(-1)
    quantized = golden.decode_mx(made[0], made[1], elem, block).reshape(-1, block)[finite]
    back = results[1].reshape(-1, block)[finite]
    np.testing.assert_array_equal(back, float_bits(quantized, out_format))


def test_round_trip_through_both_cores():
    rng = np.random.default_rng(11)
    x = float_blocks(64, 32, "bf16", "e4m3", rng).reshape(8, -1)
    scales, codes = quantize_mx_rtl(x, elem="e4m3", block=32, in_format="bf16", lanes=8)
    bits = dequantize_mx_rtl(scales, codes, elem="e4m3", block=32, out_format="bf16", lanes=8)
    expected = float_bits(golden.quantize_mx(x, "e4m3", 32), "bf16")
    finite = np.repeat(scales != 0xFF, 32, axis=-1)
    np.testing.assert_array_equal(bits[finite], expected[finite])


@pytest.mark.parametrize("make,match", [
    (lambda: MXQuantizer(in_format="fp64"), "Input format must be one of fp32, bf16, fp16"),
    (lambda: MXQuantizer(elem="e9m9"), "Element format must be one of"),
    (lambda: MXQuantizer(elem="fp4_r4"), "Element format must be a radix-2 format"),
    (lambda: MXQuantizer(block=48), "Block size must be a power of two between 2 and 64, not 48"),
    (lambda: MXQuantizer(block=32, lanes=3), "Lane count must be a power of two between 1 and "
                                             "the block size 32, not 3"),
    (lambda: MXQuantizer(block=8, lanes=16), "Lane count must be a power of two"),
    (lambda: MXQuantizer(sr_bits=0), "Stochastic rounding bits must be an integer between 1 "
                                     "and 24, not 0"),
    (lambda: MXDequantizer(out_format="e4m3"), "Output format must be one of fp32, bf16, fp16"),
    (lambda: MXDequantizer(block=1), "Block size must be a power of two between 2 and 64"),
])
def test_cores_reject_bad_parameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()
