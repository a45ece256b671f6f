"""Run the decompression engine (:class:`hdl.decompress_engine.DecompressionEngine`) in cocotb
on compressed frames, and build its expected outputs from the golden model.

The engine has one input stream (``i``, frame words) and two output streams (``o``, float
beats; ``status``, one entry per frame), so it runs under its own small testbench,
:func:`decompress_test` in this module (the same drivers, sinks and stream-rule checks as
``sim.tb_stream``, with a second sink). :func:`decompress_rtl` is the Python entry point.

Frames are bytes whose length is a whole number of ``W``-bit words (:func:`frame_words`).
"""

import json
import os
import random
import time

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge


__all__ = ["frame_words", "engine_beats", "supported", "expected_frame", "check_results",
           "decompress_rtl", "decompress_test"]


def frame_words(frame, word_bits):
    """The ``W``-bit words (little-endian) of a frame; its length must be a whole number of
    words and at least one word."""
    frame = bytes(frame)
    size = word_bits // 8
    if not frame or len(frame) % size:
        raise ValueError(f"Frame length must be a positive multiple of {size} bytes, "
                         f"not {len(frame)}")
    return [int.from_bytes(frame[j:j + size], "little") for j in range(0, len(frame), size)]


def engine_beats(frames, word_bits):
    """Packed input beats (``{word, last}``) of a list of frames."""
    from hdl.packer import packer_word_layout
    from .api import pack_beats
    words, last = [], []
    for frame in frames:
        part = frame_words(frame, word_bits)
        words.extend(part)
        last.extend([0] * (len(part) - 1) + [1])
    return pack_beats(packer_word_layout(word_bits),
                      {"word": np.array(words, dtype=np.uint64),
                       "last": np.array(last, dtype=np.uint8)})


def supported(config, shape, *, elems, block, outliers=None, word_bits=32, max_ndim=4):
    """Whether an engine built with these parameters decodes a frame of ``config`` and
    ``shape`` (else it reports ``UNSUPPORTED``)."""
    import golden
    k_max = 0 if outliers is None else outliers.k
    if config.word_bits != word_bits or config.block != block or len(shape) > max_ndim:
        return False
    if config.k > k_max:
        return False
    if config.k and (config.outliers.exp_bits, config.outliers.man_bits) != \
            (outliers.exp_bits, outliers.man_bits):
        return False
    if config.codebook is None:
        return config.elem in elems
    n = config.codebook.n_bits
    return any(isinstance(e, golden.Codebook) and e.level_codes == config.codebook.level_codes
               or isinstance(e, int) and not isinstance(e, bool) and e == n for e in elems)


def expected_frame(frame, *, out_format, lanes, **build):
    """What a correct decoder built with ``build`` (the engine's ``elems``, ``block``,
    ``outliers``, ``word_bits``, ``max_ndim``) gives for a frame: ``None`` when
    :func:`golden.decompress` raises :class:`golden.FrameError`, ``"unsupported"`` for a valid
    frame the build cannot decode; else ``(shape, bits)``, ``bits`` the golden values rounded
    to ``out_format`` (nearest even, overflow to Inf, as :class:`MXDequantizer`) as unsigned
    integers, of shape ``(rows, ceil(dims[-1] / lanes) * lanes)``, zeros past each row's
    end."""
    import golden
    from .stimulus import BITS_TYPES
    try:
        config, shape, blocks = golden.decompress_blocks(frame)
    except golden.FrameError:
        return None
    if build and not supported(config, shape, **build):
        return "unsupported"
    rows = int(np.prod(shape[:-1], dtype=np.int64)) if len(shape) > 1 else 1
    length = shape[-1]
    width = -(-length // lanes) * lanes if rows else 0
    bits = np.zeros((rows, width), dtype=BITS_TYPES[out_format])
    if rows and length:
        # (decode_blocks only with elements: it allocates the padded shape, which NumPy
        # refuses for a zero-size frame whose other axes multiply beyond 2^63 bytes)
        o = config.quantize_options()
        values = golden.decode_blocks(blocks, o["elem"], o["block"], outliers=o["outliers"],
                                      codebook=o["codebook"])
        values = values.reshape(rows, -1)[:, :length]
        bits[:, :length] = golden.encode_float(values, out_format, "nearest_even",
                                               saturate=False)
    return shape, bits


def check_results(expected, statuses, data, lasts, *, lanes, context=""):
    """Compare the engine's outputs with the expected frames (:func:`expected_frame`).

    ``statuses``: one dict per frame (``code``, ``offset``, ``ndim``, ``dims``); ``data``:
    the ``o`` beats' data, ``(beats, lanes)``; ``lasts``: their ``last`` flags. A frame the
    golden model rejects must have an error status; an unsupported one ``UNSUPPORTED``; a good
    one ``OK``, its dims, and exactly its elements as beats ending with the only ``last``
    since the previous good frame's (beats of rejected frames in between are dropped: they
    are the partial output the status tells to discard). Returns a list of ``(elements or
    None, status)``; raises :exc:`AssertionError` listing the first problems."""
    problems = []
    if len(statuses) != len(expected):
        problems.append(f"{len(statuses)} status entries for {len(expected)} frames")
    data = np.asarray(data).reshape(-1, lanes)
    lasts = np.asarray(lasts).reshape(-1)
    ends = iter(np.flatnonzero(lasts))
    start = 0
    results = []
    for j, (want, status) in enumerate(zip(expected, statuses)):
        code = status["code"]
        if want is None or want == "unsupported":
            results.append((None, status))
            if code == "OK":
                problems.append(f"frame {j}: the golden model rejects it, the RTL reports ok")
            elif want == "unsupported" and code != "UNSUPPORTED":
                problems.append(f"frame {j}: unsupported by this build, the RTL reports {code}")
            continue
        if code != "OK":
            results.append((None, status))
            problems.append(f"frame {j}: the golden model accepts it, the RTL reports {status}")
            continue
        shape, bits = want
        if tuple(status["dims"]) != tuple(shape):
            problems.append(f"frame {j}: status dims {status['dims']}, frame shape {shape}")
        if bits.size == 0:
            results.append((np.zeros(shape, bits.dtype), status))
            continue
        n = bits.size // lanes
        end = next(ends, None)
        if end is None:
            problems.append(f"frame {j}: no beat with last (output ended)")
            break
        part = data[start:end + 1]
        start = end + 1
        if len(part) < n:
            problems.append(f"frame {j}: {len(part)} beats up to last, expected {n}")
            results.append((None, status))
            continue
        got = part[len(part) - n:].reshape(bits.shape).astype(bits.dtype)
        if not np.array_equal(got, bits):
            bad = np.argwhere(got != bits)
            first = tuple(int(v) for v in bad[0])
            problems.append(f"frame {j}: {len(bad)} of {bits.size} elements differ, first "
                            f"at {first}: expected {int(bits[first]):#x}, got "
                            f"{int(got[first]):#x}")
        results.append((got[:, :shape[-1]].reshape(shape), status))
        if len(problems) >= 8:
            break
    if not problems and next(ends, None) is not None:
        problems.append("more beats with last than good frames with elements")
    if problems:
        raise AssertionError("\n".join(problems[:8]) + (f"\n{context}" if context else ""))
    return results


def decompress_rtl(frames, *, out_format="fp32", elems=("e4m3",), block=32, lanes=1,
                   outliers=None, word_bits=32, max_ndim=4, in_stall=0.0, out_stall=0.0,
                   status_stall=0.0, seed=0, simulator=None, waves=None, max_cycles=None,
                   max_idle_cycles=2000, check=True):
    """Decode ``frames`` (list of bytes, whole ``W``-bit words) with the RTL engine in
    simulation, under random valid/ready stalls on all three streams.

    Returns a list with one ``(elements, status)`` per frame: ``elements`` the output bit
    patterns of a good frame in its shape (unsigned integers of the output format), else
    None; ``status`` a dict with ``code`` (the :class:`DecodeError` name), ``offset`` (word),
    ``ndim`` and ``dims``. With ``check`` (default) every frame is compared with the golden
    model by :func:`check_results`. The run fails (:exc:`AssertionError`) when it takes more
    than ``max_cycles`` cycles or nothing moves on any stream for ``max_idle_cycles`` cycles
    (a hang).
    """
    from hdl.decompress_engine import DecompressionEngine, DecodeError, status_layout
    from hdl.mx_layouts import float_beat_layout
    from .api import unpack_beats
    from .api import run_cocotb

    frames = [bytes(f) for f in frames]
    core = DecompressionEngine(out_format=out_format, elems=elems, block=block, lanes=lanes,
                               outliers=outliers, word_bits=word_bits, max_ndim=max_ndim)
    in_beats = engine_beats(frames, word_bits)
    build = dict(elems=core.elems, block=block, outliers=outliers, word_bits=word_bits,
                 max_ndim=max_ndim)
    expected = [expected_frame(f, out_format=out_format, lanes=lanes, **build)
                for f in frames]
    n_out = sum(e[1].size // lanes for e in expected if isinstance(e, tuple))
    if max_cycles is None:
        max_cycles = int(2000 + 8 * len(in_beats) / (1 - in_stall)
                         + 8 * n_out / (1 - out_stall) + 300 * len(frames))
    spec = {"in_beats": [f"{b:x}" for b in in_beats], "frames": len(frames),
            "in_stall": in_stall, "out_stall": out_stall, "status_stall": status_stall,
            "seed": seed, "max_cycles": max_cycles, "max_idle_cycles": max_idle_cycles}
    context = (f"in_stall={in_stall}, out_stall={out_stall}, status_stall={status_stall}, "
               f"seed={seed}")
    result, _ = run_cocotb(core, "sim.decompress", spec, simulator=simulator, waves=waves,
                           timeout_s=300 + max_cycles / 500, context=context)

    beats = unpack_beats(float_beat_layout(out_format, lanes),
                         [int(b, 16) for b in result["out_beats"]])
    columns = unpack_beats(status_layout(max_ndim),
                           [int(b, 16) for b in result["status_beats"]])
    statuses = []
    for j in range(len(result["status_beats"])):
        ndim = int(columns["ndim"][j])
        statuses.append({
            "code": DecodeError(int(columns["code"][j])).name,
            "offset": int(columns["offset"][j]),
            "ndim": ndim,
            "dims": tuple(int(d) for d in columns["dims"][j][:ndim]),
        })
    data = np.asarray(beats["data"]).reshape(-1, lanes)
    lasts = np.asarray(beats["last"]).reshape(-1)
    if check:
        return check_results(expected, statuses, data, lasts, lanes=lanes, context=context)
    # Unchecked: split the beats by the ok statuses' dims.
    from .stimulus import BITS_TYPES
    results, ends, start = [], iter(np.flatnonzero(lasts)), 0
    for status in statuses:
        dims = status["dims"]
        if status["code"] != "OK":
            results.append((None, status))
            continue
        rows = int(np.prod(dims[:-1], dtype=np.int64)) if len(dims) > 1 else 1
        width = -(-dims[-1] // lanes) * lanes
        n = rows * width // lanes
        if n == 0:
            results.append((np.zeros(dims, BITS_TYPES[out_format]), status))
            continue
        end = next(ends, None)
        part = data[start:end + 1] if end is not None else data[:0]
        start = start if end is None else end + 1
        if len(part) < n:
            results.append((None, status))
            continue
        got = part[len(part) - n:].reshape(rows, width)[:, :dims[-1]]
        results.append((got.astype(BITS_TYPES[out_format]).reshape(dims), status))
    return results


# --- the cocotb testbench ------------------------------------------------------------------

@cocotb.test()
async def decompress_test(dut):
    """Send the frames' words on ``i``; take ``o`` and ``status`` until one status entry per
    frame has arrived and ``o`` has been idle for a while."""
    from .streams import IdleWatchdog, StreamDriver, StreamSink

    with open(os.environ["LOWPREC_TB_DATA"]) as f:
        spec = json.load(f)
    in_beats = [int(b, 16) for b in spec["in_beats"]]
    n_frames = int(spec["frames"])
    max_cycles = int(spec["max_cycles"])
    max_idle = int(spec["max_idle_cycles"])
    rng = random.Random(spec.get("seed", 0))
    clk = dut.clk
    Clock(clk, 10, unit="ns").start()
    driver = StreamDriver(dut, "i", clk=clk, stall_prob=spec["in_stall"], rng=rng)
    sink = StreamSink(dut, "o", clk=clk, stall_prob=spec["out_stall"], rng=rng)
    status = StreamSink(dut, "status", clk=clk, stall_prob=spec["status_stall"], rng=rng)
    driver.send(in_beats)
    dut.rst.value = 1
    edge = RisingEdge(clk)
    for _ in range(2):
        await edge
    dut.rst.value = 0

    errors = []
    cycle = 0
    watchdog = IdleWatchdog(max_idle)
    quiet = 0
    start = time.perf_counter()
    driver.drive(cycle)
    sink.drive(cycle)
    status.drive(cycle)
    o_valid = dut.o__valid
    while True:
        if cycle >= max_cycles:
            errors.append(f"Not done after max_cycles={max_cycles} cycles (a hang?): "
                          f"{driver.accepted} of {len(in_beats)} words taken, "
                          f"{len(status.received)} of {n_frames} status entries")
            break
        await edge
        cycle += 1
        driver.sample()
        sink.sample(cycle)
        status.sample(cycle)
        driver.drive(cycle)
        sink.drive(cycle)
        status.drive(cycle)
        if watchdog.idle(cycle, driver.accepted + len(sink.received) + len(status.received)):
            errors.append(f"No transfer on any stream for {max_idle} cycles (a hang): "
                          f"{driver.accepted} of {len(in_beats)} words taken, "
                          f"{len(status.received)} of {n_frames} status entries")
            break
        if driver.done and len(status.received) >= n_frames:
            quiet = 0 if int(o_valid.value) else quiet + 1
            if quiet > 64:
                break
    seconds = time.perf_counter() - start
    for s in (sink, status):
        if s.violation_count:
            errors.append(f"{s.prefix}: {s.violation_count} stream protocol violations; "
                          f"first:\n  " + "\n  ".join(s.violations[:8]))
    if len(status.received) > n_frames:
        errors.append(f"status: {len(status.received)} entries for {n_frames} frames")
    error = "\n".join(errors) or None
    result = {"out_beats": ["0" if b is None else f"{b:x}" for b in sink.received],
              "status_beats": ["0" if b is None else f"{b:x}" for b in status.received],
              "cycles": cycle, "seconds": seconds, "error": error}
    path = os.environ.get("LOWPREC_TB_RESULT")
    if path:
        with open(f"{path}.tmp", "w") as f:
            json.dump(result, f)
        os.replace(f"{path}.tmp", path)
    if error:
        raise AssertionError(error)
