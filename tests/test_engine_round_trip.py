# amaranth: UnusedElaboratable=no
"""Round trips through both engines (issue 4): RTL compress -> RTL decompress equals the
golden quantized values, and RTL compress -> golden decompress as well. Each engine alone is
compared word by word / element by element with the golden model in its own test file; this
file connects them, with configuration changes between frames and stalls on every stream."""

import dataclasses

import numpy as np
import pytest

import golden
from sim.compress import compress_rtl
from sim.decompress import decompress_rtl
from sim.stimulus import BITS_TYPES

pytestmark = pytest.mark.cocotb


def _frames(rng):
    relu = np.maximum(rng.standard_normal((3, 40)), 0).astype(np.float32)
    sparse = np.where(rng.random(70) < 0.9, 0, rng.standard_normal(70)).astype(np.float32)
    dense = (rng.standard_normal((2, 2, 16)) * 100).astype(np.float32)
    outliers = golden.OutlierFormat(2, 4, 3)
    return [
        (relu, golden.CompressionConfig(elem="e4m3", block=16, zero_mode="zvc",
                                        outliers=outliers)),
        (sparse, golden.CompressionConfig(elem="int4", block=16, zero_mode="rle",
                                          rounding="stochastic", seed=11,
                                          outliers=golden.OutlierFormat(0, 4, 3))),
        (dense, golden.CompressionConfig(elem="e4m3", block=16, zero_mode="none",
                                         rounding="toward_zero", outliers=outliers)),
        (np.zeros(5, np.float32), golden.CompressionConfig(elem="int4", block=16,
                                                           zero_mode="rle",
                                                           outliers=outliers)),
        (np.float32([-3.5]), golden.CompressionConfig(elem="e4m3", block=16, zero_mode="zvc",
                                                      outliers=outliers)),
    ]


@pytest.mark.parametrize("word_bits", [32, 64])
def test_rtl_compress_then_rtl_decompress(word_bits):
    rng = np.random.default_rng(word_bits)
    frames = [(x, dataclasses.replace(config, word_bits=word_bits))
              for x, config in _frames(rng)]
    build = dict(elems=("e4m3", "int4"), block=16, lanes=2,
                 outliers=golden.OutlierFormat(2, 4, 3), word_bits=word_bits)
    # check=True: every word equals golden.compress's
    packed = compress_rtl(frames, in_format="fp32", sr_bits=8, in_stall=0.2, out_stall=0.2,
                          seed=3, **build)
    # RTL -> golden
    for (x, config), frame in zip(frames, packed):
        np.testing.assert_array_equal(golden.decompress(frame),
                                      golden.quantize_mx(x, **config.quantize_options()))
    # RTL -> RTL: check=True compares every element with the golden model
    results = decompress_rtl(packed, out_format="fp32", in_stall=0.2, out_stall=0.3,
                             status_stall=0.3, seed=4, **build)
    for (x, config), (bits, status) in zip(frames, results):
        assert status["code"] == "OK" and status["dims"] == x.shape
        expected = golden.quantize_mx(x, **config.quantize_options()).astype(np.float32)
        got = np.asarray(bits, BITS_TYPES["fp32"]).view(np.float32)
        got = got.reshape(-1, got.shape[-1])[:, :x.shape[-1]].reshape(x.shape)
        np.testing.assert_array_equal(got, expected)
