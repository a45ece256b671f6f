# amaranth: UnusedElaboratable=no
"""cocotb testbenches of the quantizer with outlier records and codebook elements
(OutlierExtractor, NonUniformEncoder and both composed) against ``golden.encode_blocks``.

Every output beat (scale, codes, outlier count and records) is compared with the golden model
by the harness's scoreboard, under random valid/ready stalls. The data mixes the edge classes
of :func:`sim.stimulus.float_blocks` with those of :func:`sim.stimulus.outlier_blocks`
(heavy-tailed activations, K+1 equal maxima, negative outliers, outliers beyond their record's
range, fewer non-zeros than K, elements on codebook thresholds). Frames change the rounding,
seed, outlier count and (for a loadable codebook) the levels, so configuration changes at
block boundaries are exercised; one frame ends inside a block. CI runs 10^4 blocks per
configuration; ``LOWPREC_LONG=1`` runs 10^6.
"""

import numpy as np
import pytest

import golden
from golden import OutlierFormat
from hdl import MXQuantizer
from hdl.float import ROUNDING_NAMES
from hdl.mx_quantizer import OutlierExtractor, NonUniformEncoder
from sim.mx import Frame, run_quantizer, quantize_mx_rtl
from sim.stimulus import float_blocks, outlier_blocks
from references import LONG


BLOCKS = 1_000_000 if LONG else 10_000

pytestmark = pytest.mark.cocotb

OTHER_ROUNDING = {"stochastic": "nearest_even", "nearest_even": "stochastic",
                  "toward_zero": "stochastic", "nearest_away": "toward_zero"}

LAPLACE_CODEBOOK = golden.fit_codebook(
    np.random.default_rng(7).laplace(size=(256, 64)), 3, name="laplace3")
RELOADS = [golden.uniform(4), golden.log(4),
           golden.fit_codebook(np.random.default_rng(8).standard_t(3, size=(256, 64)), 4)]


def _data(blocks, block, in_format, k, codebook, rng):
    """Blocks of every edge class, in a random order."""
    codebook = codebook if isinstance(codebook, golden.Codebook) else None
    edge_elem = "e4m3" if codebook is not None else None
    third = blocks // 3
    parts = [
        float_blocks(third, block, in_format, edge_elem or "e2m1", rng),
        outlier_blocks(blocks - third, block, in_format, k, rng, codebook),
    ]
    data = np.concatenate(parts)
    return data[rng.permutation(len(data))]


def _frames(data, block, lanes, rounding, k, loadable, rng):
    """Frames over ``data``: a 2-D tensor, a frame with the other rounding mode and another
    outlier count, a run of one-block frames (configuration changes between consecutive
    blocks), a one-row frame ending inside a block (the core pads it)."""
    n = len(data)
    def frame(x, rounding, count=None):
        return Frame(x, rounding, int(rng.integers(0, 2 ** 32)),
                     outliers=count,
                     codebook=RELOADS[int(rng.integers(0, len(RELOADS)))] if loadable else None)
    rows = max(1, n // 8)
    frames = [frame(data[:rows * 4].reshape(rows, 4 * block), rounding)]
    rest = data[rows * 4:]
    half = len(rest) // 2
    frames.append(frame(rest[:half].reshape(-1), OTHER_ROUNDING[rounding],
                        int(rng.integers(0, k + 1)) if k else None))
    for single in rest[half:half + 48]:
        frames.append(frame(single, rounding, int(rng.integers(0, k + 1)) if k else None))
    tail = rest[half + 48:].reshape(-1)
    cut = max(lanes, (tail.size - block // 2) // lanes * lanes)
    frames.append(frame(tail[:cut], rounding))
    return frames


CONFIGS = [
    # in_format, elem, codebook, block, lanes, outliers, rounding, in_stall, out_stall
    ("fp32", "e4m3", None, 32, 8, OutlierFormat(1, 4, 7), "nearest_even", 0.3, 0.3),
    ("fp32", "e2m1", None, 32, 8, OutlierFormat(4, 3, 3), "stochastic", 0.3, 0.3),
    ("bf16", "int8", None, 16, 4, OutlierFormat(2, 4, 7), "stochastic", 0.2, 0.2),
    ("fp16", "e4m3", None, 8, 1, OutlierFormat(4, 2, 2), "toward_zero", 0.1, 0.5),
    ("fp32", "e4m3", None, 2, 1, OutlierFormat(1, 5, 10), "nearest_away", 0.5, 0.1),
    ("fp32", None, LAPLACE_CODEBOOK, 32, 8, None, "nearest_even", 0.3, 0.3),
    ("bf16", None, golden.log(2), 4, 2, OutlierFormat(1, 4, 7), "nearest_away", 0.2, 0.2),
    ("fp32", None, 4, 32, 16, OutlierFormat(2, 4, 7), "stochastic", 0.2, 0.4),
]


def _id(config):
    in_format, elem, codebook, block, lanes, outliers, rounding, *_ = config
    element = elem or (f"cb{codebook}" if isinstance(codebook, int) else codebook.name)
    k = f"-k{outliers.k}e{outliers.exp_bits}m{outliers.man_bits}" if outliers else ""
    return f"{in_format}-{element}-b{block}-x{lanes}{k}-{rounding}"


@pytest.mark.parametrize("config", CONFIGS, ids=[_id(c) for c in CONFIGS])
def test_block_quantizer(config):
    in_format, elem, codebook, block, lanes, outliers, rounding, in_stall, out_stall = config
    rng = np.random.default_rng(abs(hash(_id(config))) % 2 ** 32)
    k = outliers.k if outliers else 0
    data = _data(BLOCKS, block, in_format, k, codebook, rng)
    frames = _frames(data, block, lanes, rounding, k, isinstance(codebook, int), rng)
    results, run = run_quantizer(frames, elem=elem, codebook=codebook, block=block,
                                 lanes=lanes, in_format=in_format, outliers=outliers,
                                 in_stall=in_stall, out_stall=out_stall, seed=int(block))
    assert sum(r.scales.size for r in results) >= BLOCKS
    assert len(run.out_beats) >= BLOCKS


@pytest.mark.parametrize("sr_bits", [3, 16, 24])
def test_records_with_other_draw_widths(sr_bits):
    """Records keep only Mo + R + 2 significand bits after ranking (R = ``sr_bits``): exact
    for every rounding mode whatever R is (here with a 3-bit record mantissa, so that 24-bit
    fp32 significands are cut for R < 19)."""
    rng = np.random.default_rng(sr_bits)
    data = outlier_blocks(1500, 8, "fp32", 2, rng)
    frames = [Frame(data[:500].reshape(-1), "stochastic", 77),
              Frame(data[500:1000].reshape(-1), "nearest_even"),
              Frame(data[1000:].reshape(-1), "stochastic", 78, outliers=1)]
    run_quantizer(frames, elem="e2m1", block=8, lanes=2, sr_bits=sr_bits,
                  outliers=OutlierFormat(2, 4, 3), in_stall=0.2, out_stall=0.2)


def test_outlier_extractor_full_rate():
    """II = 1 with K = 4: with no stalls, 8 lanes take one beat per cycle (cycles = beats +
    the pipeline's latency)."""
    rng = np.random.default_rng(3)
    x = outlier_blocks(512, 32, "fp32", 4, rng).reshape(-1)
    _, run = run_quantizer([Frame(x, "stochastic", 5)], elem="e2m1", block=32, lanes=8,
                           outliers=OutlierFormat(4, 4, 7))
    beats = x.size // 8
    assert beats <= run.cycles <= beats + 40


def test_composed_path_matches_golden_entry_point():
    """MXQuantizer + outliers + codebook on heavy-tailed activations: the decoded RTL output
    equals ``golden.quantize_mx(x, codebook=..., outliers=...)``."""
    rng = np.random.default_rng(11)
    x = rng.standard_t(3, size=(16, 96)).astype(np.float32)
    codebook = golden.fit_codebook(x, 3)
    outliers = OutlierFormat(2, 4, 7)
    encoded = quantize_mx_rtl(x, codebook=codebook, block=32, lanes=4, outliers=outliers)
    values = golden.decode_blocks(encoded, codebook=codebook, block=32, outliers=outliers)
    expected = golden.quantize_mx(x, codebook=codebook, block=32, outliers=outliers)
    np.testing.assert_array_equal(values, expected)
    # and the outliers did their job: the error is below that without them
    plain = golden.quantize_mx(x, codebook=codebook, block=32)
    assert np.sum((values - x) ** 2) < np.sum((plain - x) ** 2)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"outliers": OutlierFormat(2), "block": 2}, ValueError,
     r"Outlier count must be below the block size 2, not 2"),
    ({"outliers": 3}, TypeError, r"Outliers must be an OutlierFormat or None, not 3"),
    ({"elem": "e4m3", "codebook": 3}, ValueError,
     r"Give either an element format or a codebook, not both"),
    ({"codebook": 5}, ValueError, r"Codebook index width must be between 1 and 4 bits"),
    ({"codebook": "log"}, TypeError, r"Codebook must be None, a Codebook or an index width"),
    ({"codebook": True}, TypeError, r"Codebook must be None, a Codebook or an index width"),
])
def test_parameter_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        MXQuantizer(**kwargs)


def test_named_cores():
    with pytest.raises(ValueError, match=r"An outlier extractor needs an OutlierFormat with "
                                         r"k >= 1, not None"):
        OutlierExtractor(outliers=None)
    with pytest.raises(ValueError, match=r"A non-uniform encoder needs a codebook, not None"):
        NonUniformEncoder(codebook=None)
    core = OutlierExtractor(outliers=OutlierFormat(2, 4, 7), elem="e2m1")
    assert set(core.cfg.shape().members) == {"rounding", "seed", "outliers"}
    core = NonUniformEncoder(codebook=4)
    assert set(core.cfg.shape().members) == {"rounding", "seed", "levels"}
    assert core.o.payload.shape()["codes"].shape.elem_shape == 5


def test_configuration_changes_between_blocks_of_a_frame():
    """Outlier count and codebook levels are taken with each block's first beat, also inside
    a frame: every block of one frame gets its own, set on the cycle its first beat goes
    in; each block must equal the golden model run with that block's configuration."""
    from hdl.mx_layouts import mx_block_layout
    from sim.api import pack_beats, run_stream
    from sim.mx import block_columns, quantizer_beats, _concat_columns
    rng = np.random.default_rng(21)
    block, lanes, n_blocks = 8, 4, 300
    outliers = OutlierFormat(2, 4, 7)
    books = [golden.uniform(3), golden.log(3), LAPLACE_CODEBOOK]
    x = outlier_blocks(n_blocks, block, "fp32", 2, rng).reshape(-1)
    in_beats, side = quantizer_beats([Frame(x, "nearest_away", 0, codebook=books[0])],
                                     in_format="fp32", block=block, lanes=lanes,
                                     codebook=3, outliers=outliers)
    columns = []
    for b in range(n_blocks):
        book = books[int(rng.integers(0, len(books)))]
        count = int(rng.integers(0, 3))
        side[b * block // lanes] = {"cfg": {
            "rounding": ROUNDING_NAMES["nearest_away"], "seed": 0, "outliers": count, "levels": list(book.level_codes)}}
        encoded = golden.encode_blocks(
            x[b * block:(b + 1) * block], block=block, rounding="nearest_away", codebook=book,
            outliers=OutlierFormat(count, 4, 7) if count else None)
        part = block_columns(encoded, block=block, max_outliers=2, count=count)
        part["last"][:] = b == n_blocks - 1
        columns.append(part)
    expected = pack_beats(mx_block_layout(None, block, codebook=3, outliers=outliers),
                          _concat_columns(columns))
    core = MXQuantizer(codebook=3, block=block, lanes=lanes, outliers=outliers)
    run_stream(core, in_beats, expected=expected, side=side, in_stall=0.3, out_stall=0.3)
