# amaranth: UnusedElaboratable=no
"""cocotb testbenches of the decompression engine (DecompressionEngine with its block parser
ZeroDecompressor) against the golden codec.

Good frames: ``golden.compress`` then the RTL engine; every element must equal
``golden.decompress`` rounded to the output format, under random stalls on ``i``, ``o`` and
``status``. The frames cover the three zero modes, dense, sparse (50-95 % zeros), ReLU-like,
all-zero and NaN/Inf data, single elements, rows not a multiple of the block, 2-D and 3-D
shapes, zero-size shapes, K varying between frames (and frames without outliers), two element
formats and fixed/loadable codebooks switched between frames, W = 32 and 64.

Bad frames: bit flips in the header, payload and trailer (with the CRC left wrong, and
with it recomputed, so that the field and payload checks themselves are exercised),
truncations, appended words, random words, and frames the build does not support; each one is
followed by a good frame. Every frame's status must agree with the golden model (rejected by
it: an error; accepted: ok and exact), the run is bounded in cycles, and the good frame after
each bad one decodes exactly.
"""

import zlib

import numpy as np
import pytest

import golden
from hdl.decompress_engine import DecompressionEngine
from hdl.unzero import ZeroDecompressor
from sim.decompress import decompress_rtl, expected_frame, check_results, frame_words
from references import LONG


pytestmark = pytest.mark.cocotb

OF = golden.OutlierFormat
ZERO_MODES = ("none", "zvc", "rle")


# --- frames ------------------------------------------------------------------------------

def _data(kind, shape, rng):
    n = int(np.prod(shape))
    x = rng.standard_normal(n) * np.exp2(rng.integers(-6, 7, size=n) * (rng.random() < 0.5))
    if kind == "sparse":
        x[rng.random(n) < rng.uniform(0.5, 0.95)] = 0.0
    elif kind == "relu":
        x = np.maximum(x, 0.0)
    elif kind == "zeros":
        x[:] = 0.0
    elif kind == "special" and n:
        x[rng.integers(n)] = rng.choice([np.nan, np.inf, -np.inf])
        x[rng.random(n) < 0.3] = -0.0
    return x.reshape(shape)


KINDS = ("dense", "sparse", "relu", "zeros", "special")


def _shape(rng, block, max_ndim):
    pick = rng.integers(8)
    if pick == 0:
        return (1,)
    if pick == 1:
        return (int(rng.integers(1, 3 * block)),)
    if pick == 2:
        return (block * int(rng.integers(1, 3)),)
    if pick == 3 and max_ndim >= 2:
        return (int(rng.integers(1, 4)), int(rng.integers(1, 2 * block)))
    if pick == 4 and max_ndim >= 3:
        return (2, int(rng.integers(1, 3)), int(rng.integers(1, block + 3)))
    if pick == 5:
        return (int(rng.integers(1, 2 * block)),)
    return (int(rng.integers(1, 2 * block)),)


def _configs(build, rng):
    """A random CompressionConfig the build supports."""
    elems = build["elems"]
    elem = elems[rng.integers(len(elems))]
    outliers = build.get("outliers")
    k_max = 0 if outliers is None else outliers.k
    k = int(rng.integers(k_max + 1))
    frame_outliers = None if k == 0 and rng.random() < 0.5 else \
        (OF(k, outliers.exp_bits, outliers.man_bits) if k_max else None)
    codebook = None
    if isinstance(elem, golden.Codebook):
        codebook, elem = elem, None
    elif isinstance(elem, int):
        n = elem
        codebook = [golden.uniform(n), golden.log(n),
                    golden.fit_codebook(rng.standard_normal(512) ** 3, n)][rng.integers(3)]
        elem = None
    rounding = ("nearest_even", "stochastic", "toward_zero")[rng.integers(3)]
    return golden.CompressionConfig(
        elem=elem, codebook=codebook, block=build["block"], rounding=rounding,
        seed=int(rng.integers(1 << 32)), outliers=frame_outliers,
        zero_mode=ZERO_MODES[rng.integers(3)], word_bits=build["word_bits"])


def good_frames(build, count, rng, *, shapes=None):
    frames = []
    for j in range(count):
        config = _configs(build, rng)
        shape = shapes[j % len(shapes)] if shapes else \
            _shape(rng, build["block"], build.get("max_ndim", 4))
        x = _data(KINDS[j % len(KINDS)], shape, rng)
        frames.append(golden.compress(x, config))
    return frames


def _with_crc(body, word_bits):
    """``body`` (the frame without its trailer) with a correct trailer."""
    crc = zlib.crc32(body)
    return body + crc.to_bytes(word_bits // 8, "little")


def corrupt(frame, word_bits, rng):
    """A damaged copy of ``frame`` (whole words of ``word_bits``) and what was done."""
    size = word_bits // 8
    data = bytearray(frame)
    words = len(data) // size
    kind = rng.integers(9)
    if kind <= 2:       # bit flips: header, payload, trailer; CRC left wrong
        region = (0, min(len(data), 14)) if kind == 0 else \
            (len(data) - size, len(data)) if kind == 2 else (0, len(data))
        for _ in range(int(rng.integers(1, 4))):
            bit = int(rng.integers(8 * region[0], 8 * region[1]))
            data[bit // 8] ^= 1 << (bit % 8)
        return bytes(data), "flip"
    if kind <= 4:       # bit flips with the CRC recomputed: the field checks must catch it
        body = bytearray(data[:-size])
        limit = 14 if kind == 3 else len(body)
        for _ in range(int(rng.integers(1, 3))):
            bit = int(rng.integers(32, 8 * limit)) if kind == 3 else \
                int(rng.integers(0, 8 * limit))
            body[bit // 8] ^= 1 << (bit % 8)
        return _with_crc(bytes(body), word_bits), "flip+crc"
    if kind == 5:       # truncated
        keep = int(rng.integers(1, words))
        return bytes(data[:keep * size]), "truncated"
    if kind == 6:       # words appended (random, or the trailer repeated)
        extra = rng.integers(0, 256, size=size * int(rng.integers(1, 3)), dtype=np.uint8)
        if rng.random() < 0.3:
            extra = np.frombuffer(bytes(data[-size:]), np.uint8)
        return bytes(data) + extra.tobytes(), "appended"
    if kind == 7:       # random words, sometimes behind a good magic
        n = int(rng.integers(1, 12))
        words_ = rng.integers(0, 256, size=n * size, dtype=np.uint8).tobytes()
        if rng.random() < 0.5:
            words_ = bytes(data[:size]) + words_
        return words_, "random"
    # a payload word dropped or duplicated, the CRC recomputed
    body = bytearray(data[:-size])
    at = int(rng.integers(0, len(body) // size)) * size
    if rng.random() < 0.5:
        del body[at:at + size]
    else:
        body[at:at] = body[at:at + size]
    return _with_crc(bytes(body), word_bits), "shifted+crc"


# --- parameters -----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, match", [
    (dict(out_format="fp8"), ValueError, "Output format must be one of"),
    (dict(elems=()), ValueError, "Element choices must be a non-empty tuple"),
    (dict(elems=("e4m3", "fp16")), ValueError, "Element choice must be one of"),
    (dict(elems=(1.5,)), TypeError, "Element choice must be"),
    (dict(elems=("e4m3", "e4m3")), ValueError, "must not repeat"),
    (dict(elems=(2, 2)), ValueError, "must not repeat"),
    (dict(elems=(5,)), ValueError, "Codebook index width must be between 1 and"),
    (dict(elems=(golden.log(2), golden.log(2))), ValueError, "must not repeat"),
    (dict(block=48), ValueError, "Block size must be a power of two between 2 and 64"),
    (dict(block=128), ValueError, "Block size must be a power of two between 2 and 64"),
    (dict(block=8, lanes=16), ValueError, "Lane count must be a power of two between 1"),
    (dict(lanes=3), ValueError, "Lane count must be a power of two between 1"),
    (dict(outliers=2), TypeError, "Outliers must be an OutlierFormat or None"),
    (dict(block=4, outliers=OF(4, 3, 2)), ValueError, "Outlier count must be below"),
    (dict(word_bits=16), ValueError, "Word width must be 32 or 64 bits"),
    (dict(word_bits=True), ValueError, "Word width must be 32 or 64 bits"),
    (dict(max_ndim=0), ValueError, "Maximum number of axes must be an integer between 1"),
    (dict(max_ndim=16), ValueError, "Maximum number of axes must be an integer between 1"),
    (dict(max_ndim=2.0), ValueError, "Maximum number of axes must be an integer between 1"),
])
def test_engine_parameter_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        DecompressionEngine(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(block=3), "Block size must be a power of two"),
    (dict(lanes=16), "Lane count must be a power of two"),
    (dict(word_bits=48), "Word width must be 32 or 64 bits"),
    (dict(code_bits=0), "Code width must be an integer between 1 and 16"),
    (dict(code_bits=17), "Code width must be an integer between 1 and 16"),
])
def test_parser_parameter_errors(kwargs, match):
    params = dict(block=8, lanes=2, word_bits=32, code_bits=8)
    params.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ZeroDecompressor(**params)


def test_parser_group():
    assert ZeroDecompressor(block=32, lanes=8, word_bits=32, code_bits=8).group == 4
    assert ZeroDecompressor(block=32, lanes=8, word_bits=64, code_bits=8).group == 8
    assert ZeroDecompressor(block=8, lanes=2, word_bits=32, code_bits=4).group == 2


def test_engine_elements_normalised():
    engine = DecompressionEngine(elems="int4", block=8)
    assert engine.elems == ("int4",)
    assert engine.max_ndim == 4


# --- the checker can fail ------------------------------------------------------------------

def test_check_results_catches_errors():
    """check_results (what every cocotb test here ends with) rejects wrong outputs."""
    rng = np.random.default_rng(5)
    config = golden.CompressionConfig(elem="e4m3", block=8, zero_mode="zvc")
    frame = golden.compress(rng.standard_normal(11), config)
    want = expected_frame(frame, out_format="bf16", lanes=2)
    shape, bits = want
    data = bits.reshape(-1, 2).copy()
    lasts = np.zeros(len(data), np.uint8)
    lasts[-1] = 1
    ok = {"code": "OK", "offset": 0, "ndim": 1, "dims": shape}
    check_results([want], [ok], data, lasts, lanes=2)       # the right output passes
    bad = data.copy()
    bad[2, 1] ^= 1
    with pytest.raises(AssertionError, match="elements differ"):
        check_results([want], [ok], bad, lasts, lanes=2)
    with pytest.raises(AssertionError, match="no beat with last"):
        check_results([want], [ok], data, np.zeros_like(lasts), lanes=2)
    with pytest.raises(AssertionError, match="the RTL reports"):
        check_results([want], [dict(ok, code="CRC_MISMATCH")], data[:0], lasts[:0], lanes=2)
    with pytest.raises(AssertionError, match="the golden model rejects it"):
        check_results([None], [ok], data, lasts, lanes=2)
    with pytest.raises(AssertionError, match="status dims"):
        check_results([want], [dict(ok, dims=(12,))], data, lasts, lanes=2)
    with pytest.raises(AssertionError, match="unsupported by this build"):
        check_results(["unsupported"], [dict(ok, code="CRC_MISMATCH")], data[:0], lasts[:0],
                      lanes=2)


def test_frame_words():
    assert frame_words(bytes(range(8)), 32) == [0x03020100, 0x07060504]
    assert frame_words(bytes(range(8)), 64) == [0x0706050403020100]
    with pytest.raises(ValueError, match="multiple of 8 bytes"):
        frame_words(bytes(12), 64)


# --- good frames ----------------------------------------------------------------------------

BUILD_A = dict(out_format="bf16", elems=("e4m3", "int4"), block=8, lanes=2,
               outliers=OF(2, 3, 4), word_bits=32, max_ndim=3)
BUILD_B = dict(out_format="fp16", elems=(golden.log(2), 3, "e2m1"), block=16, lanes=4,
               outliers=None, word_bits=64, max_ndim=2)
BUILD_C = dict(out_format="bf16", elems=("int8",), block=32, lanes=1,
               outliers=OF(1, 2, 3), word_bits=32, max_ndim=4)

BUILDS = {"A": BUILD_A, "B": BUILD_B, "C": BUILD_C}
if LONG:
    BUILDS.update({
        "fp32_b64_l8_w64": dict(out_format="fp32", elems=("e5m2", "int2", "e3m2", 4),
                                block=64, lanes=8, outliers=OF(4, 6, 12), word_bits=64),
        "fp16_b4_l4_w32": dict(out_format="fp16", elems=("e2m3", golden.uniform(1)), block=4,
                               lanes=4, outliers=OF(3, 1, 0), word_bits=32, max_ndim=15),
        "bf16_b32_l4_w64": dict(out_format="bf16", elems=("int3", "int6", "int7", 2),
                                block=32, lanes=4, word_bits=64),
    })


def _build_of(params):
    return {key: params.get(key) for key in ("elems", "block", "outliers", "word_bits")} | \
        {"max_ndim": params.get("max_ndim", 4)}


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_good_frames(name):
    """Random supported frames of every kind, with stalls on all three streams."""
    params = BUILDS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    count = 400 if LONG else 60
    frames = good_frames(_build_of(params), count, rng)
    # zero-size frames and the edge shapes, in every zero mode
    for zm in ZERO_MODES:
        config = golden.CompressionConfig(elem=params["elems"][-1] if isinstance(
            params["elems"][-1], str) else "e4m3", block=params["block"], zero_mode=zm,
            word_bits=params["word_bits"])
        if config.elem in params["elems"]:
            for shape in ((0,), (3, 0), (1,), (params["block"] + 1,)):
                if len(shape) <= params.get("max_ndim", 4):
                    frames.append(golden.compress(_data("dense", shape, rng), config))
    order = rng.permutation(len(frames))
    frames = [frames[j] for j in order]
    results = decompress_rtl(frames, **params, in_stall=0.3, out_stall=0.3,
                             status_stall=0.3, seed=1)
    assert all(status["code"] == "OK" for _, status in results)
    # the returned elements are the golden values
    for frame, (elements, status) in zip(frames[:10], results[:10]):
        q = golden.decompress(frame)
        from sim.stimulus import from_bits
        got = from_bits(elements, params["out_format"]).astype(np.float64)
        want = q.astype(np.float32).astype(got.dtype) if params["out_format"] == "fp32" else \
            from_bits(expected_frame(frame, out_format=params["out_format"],
                                     lanes=1)[1].reshape(q.shape),
                      params["out_format"]).astype(np.float64)
        assert np.array_equal(got, want, equal_nan=True)


def test_no_stalls_back_to_back():
    """Frames with ready always high and words every cycle."""
    rng = np.random.default_rng(11)
    frames = good_frames(_build_of(BUILD_A), 20, rng)
    decompress_rtl(frames, **BUILD_A)


# --- bad frames -------------------------------------------------------------------------------

def _unsupported_frames(params, rng):
    """Valid frames this build does not decode."""
    frames = []
    x = rng.standard_normal(9)
    block, w = params["block"], params["word_bits"]
    other_block = 4 if block != 4 else 8
    frames.append(golden.compress(x, golden.CompressionConfig(elem="e4m3", block=other_block,
                                                               word_bits=w)))
    other_w = golden.compress(x, golden.CompressionConfig(elem="e4m3", block=block,
                                                          word_bits=96 - w))
    frames.append(other_w + bytes(-len(other_w) % (w // 8)))     # whole words of this W
    missing = [e for e in golden.ELEMENT_IDS if e not in params["elems"]]
    frames.append(golden.compress(x, golden.CompressionConfig(elem=missing[0], block=block,
                                                               word_bits=w)))
    frames.append(golden.compress(x, golden.CompressionConfig(
        elem=None, codebook=golden.uniform(4), block=block, word_bits=w)))
    frames.append(golden.compress(x.reshape(1, 1, 1, 1, 9), golden.CompressionConfig(
        elem="e4m3", block=block, word_bits=w)))
    outliers = params.get("outliers")
    k_max = 0 if outliers is None else outliers.k
    if k_max + 1 < block and k_max < 4:
        frames.append(golden.compress(x, golden.CompressionConfig(
            elem="e4m3", block=block, word_bits=w, outliers=OF(k_max + 1, 2, 2))))
    if k_max:
        frames.append(golden.compress(x, golden.CompressionConfig(
            elem="e4m3", block=block, word_bits=w,
            outliers=OF(1, outliers.exp_bits % 6 + 1, outliers.man_bits))))
    return frames


ROBUST = {"A": BUILD_A, "B": BUILD_B}


@pytest.mark.parametrize("name", sorted(ROBUST))
def test_bad_frames(name):
    """>= 500 damaged frames per build (1000+ in all), each followed by a good frame."""
    params = ROBUST[name]
    build = _build_of(params)
    rng = np.random.default_rng(100 + sum(map(ord, name)))
    count = 5000 if LONG else 520
    w = params["word_bits"]
    # small frames keep the run short
    shapes = [(1,), (3,), (params["block"] + 3,), (2, 5), (0,), (2 * params["block"],)]
    bases = good_frames(build, 40, rng, shapes=shapes)
    frames, kinds = [], []
    for j in range(count):
        bad, kind = corrupt(bases[rng.integers(len(bases))], w, rng)
        frames += [bad, bases[rng.integers(len(bases))]]
        kinds.append(kind)
    for frame in _unsupported_frames(params, rng):
        frames += [frame, bases[0]]
    rejected = sum(expected_frame(f, out_format="bf16", lanes=1) is None for f in frames[::2])
    assert rejected >= 0.9 * count     # most damage is caught by the golden model too
    for part in range(0, len(frames), 400):
        decompress_rtl(frames[part:part + 400], **params, in_stall=0.2, out_stall=0.2,
                       status_stall=0.2, seed=part)


def test_error_codes():
    """Each error of the layout gets its own code (hand-made frames, CRC made right)."""
    params = BUILD_A
    w = params["word_bits"]
    config = golden.CompressionConfig(elem="e4m3", block=8, zero_mode="rle",
                                      outliers=OF(2, 3, 4))
    x = np.arange(1.0, 12.0)
    good = golden.compress(x, config)
    words = frame_words(good, w)

    def frame_of(words_):
        return b"".join(v.to_bytes(4, "little") for v in words_)

    def patched(word, bit, width, value, crc=True):
        ws = list(words)
        ws[word] = (ws[word] & ~(((1 << width) - 1) << bit)) | (value << bit)
        body = frame_of(ws[:-1])
        return _with_crc(body, w) if crc else frame_of(ws)

    # One axis, no codebook, W = 32: header words 0-4 (padding from word 4 bit 12); block 0
    # at word 5: scale (8 bits), count (2), two records of 3 + 8 bits, then rle n (4 bits)
    # at word 6 bit 0 and the first token's run (3 bits) at word 6 bit 4.
    cases = [
        (patched(0, 0, 8, 0x4D), "BAD_MAGIC"),
        (patched(1, 0, 8, 2), "BAD_VERSION"),
        (patched(1, 9, 2, 3), "BAD_FIELD"),                 # zero mode 3
        (patched(1, 21, 6, 40), "BAD_FIELD"),               # element id 40
        (patched(1, 21, 6, 11), "UNSUPPORTED"),             # int8
        (patched(3, 8, 4, 0), "BAD_FIELD"),                 # ndim 0
        (patched(4, 31, 1, 1), "NONZERO_PADDING"),          # header padding
        (patched(5, 8, 2, 1), "RECORD_COUNT"),              # count 1 of K = 2
        (patched(6, 0, 4, 9), "RLE_OVERRUN"),               # n = 9 > B = 8
        (patched(6, 4, 3, 7), "RUN_PAST_BLOCK"),            # first code at 7, then past
        (patched(len(words) - 1, 0, 1, words[-1] & 1 ^ 1, crc=False), "CRC_MISMATCH"),
        (good[:-8], "TRUNCATED"),
        (good + good[-4:], "TRAILING_GARBAGE"),
    ]
    frames = []
    for frame, code in cases:
        want = expected_frame(frame, out_format="bf16", lanes=1, **_build_of(params))
        assert want == "unsupported" if code == "UNSUPPORTED" else want is None, code
        frames += [frame, good]
    results = decompress_rtl(frames, **params)
    codes = [status["code"] for _, status in results[::2]]
    assert codes == [code for _, code in cases]
    assert all(status["code"] == "OK" for _, status in results[1::2])
    assert results[2 * 10][1]["offset"] == len(words) - 1        # the CRC mismatch's word
    assert results[0][1]["offset"] == 0


def _set_bits(frame, bit, width, value, word_bits):
    """``frame`` with the field of ``width`` bits at stream bit ``bit`` set to ``value`` and
    the trailer recomputed."""
    size = word_bits // 8
    body = int.from_bytes(frame[:-size], "little")
    body = body & ~(((1 << width) - 1) << bit) | value << bit
    return _with_crc(body.to_bytes(len(frame) - size, "little"), word_bits)


def test_shape_product():
    """A frame without elements is still rejected when its shape's product (zeros counted as
    1) reaches 2^53 (``golden.codec.SHAPE_PRODUCT_LIMIT``), and accepted below (build A: three
    axes, W = 32; dims from bit 108)."""
    config = golden.CompressionConfig(elem="e4m3", block=8, word_bits=32)
    base = golden.compress(np.zeros((0, 3, 5)), config)
    assert golden.codec.SHAPE_PRODUCT_LIMIT == 1 << 53
    big = _set_bits(_set_bits(base, 140, 32, 1 << 31, 32), 172, 32, 1 << 22, 32)
    below = _set_bits(_set_bits(base, 140, 32, 1 << 31, 32), 172, 32, (1 << 22) - 1, 32)
    # 3 * 2^30 * b against 2^53: b = floor(2^23 / 3) is below, b + 1 above
    b = (1 << 23) // 3
    under = _set_bits(_set_bits(base, 140, 32, 3 << 30, 32), 172, 32, b, 32)
    over = _set_bits(_set_bits(base, 140, 32, 3 << 30, 32), 172, 32, b + 1, 32)
    assert expected_frame(big, out_format="bf16", lanes=2) is None
    assert expected_frame(over, out_format="bf16", lanes=2) is None
    assert expected_frame(below, out_format="bf16", lanes=2)[0] == (0, 1 << 31, (1 << 22) - 1)
    assert expected_frame(under, out_format="bf16", lanes=2)[0] == (0, 3 << 30, b)
    results = decompress_rtl([big, base, below, under, over, big], **BUILD_A)
    assert [status["code"] for _, status in results] == \
        ["BAD_FIELD", "OK", "OK", "OK", "BAD_FIELD", "BAD_FIELD"]
    assert results[2][1]["dims"] == (0, 1 << 31, (1 << 22) - 1)


def test_verilog():
    """The engine converts to Verilog (W = 64, a loadable and a fixed codebook, outliers)."""
    from amaranth.back import verilog
    engine = DecompressionEngine(out_format="fp16", elems=(golden.uniform(2), 3, "int5"),
                                 block=16, lanes=4, outliers=OF(1, 2, 2), word_bits=64)
    text = verilog.convert(engine, name="decompress_engine")
    assert "module decompress_engine" in text and "status__payload" in text


def test_hang_is_caught():
    """The harness's cycle bound fails a run that does not finish (here: too small a bound)."""
    rng = np.random.default_rng(3)
    frames = good_frames(_build_of(BUILD_A), 4, rng)
    with pytest.raises(AssertionError, match="max_cycles|No transfer"):
        decompress_rtl(frames, **BUILD_A, max_cycles=20)
