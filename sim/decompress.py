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
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge


__all__ = ["frame_words", "engine_beats", "expected_frame", "decompress_rtl",
           "split_outputs", "decompress_test"]


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


def expected_frame(frame, *, out_format, lanes):
    """What a correct decoder gives for a frame: ``None`` when :func:`golden.decompress`
    raises :class:`golden.FrameError`; else ``(shape, bits)``, ``bits`` the golden values
    rounded to ``out_format`` (nearest even, overflow to Inf, as :class:`MXDequantizer`) as
    unsigned integers, shape ``(rows, ceil(dims[-1] / lanes) * lanes)`` with zeros past each
    row's end."""
    import golden
    from .stimulus import BITS_TYPES
    try:
        config, shape, blocks = golden.decompress_blocks(frame)
    except golden.FrameError:
        return None
    o = config.quantize_options()
    values = golden.decode_blocks(blocks, o["elem"], o["block"], outliers=o["outliers"],
                                  codebook=o["codebook"])
    rows = int(np.prod(shape[:-1], dtype=np.int64)) if len(shape) > 1 else 1
    length = shape[-1]
    width = -(-length // lanes) * lanes
    values = values.reshape(rows, -1)[:, :length] if rows and length else \
        np.zeros((rows, length))
    bits = np.zeros((rows, width), dtype=BITS_TYPES[out_format])
    if values.size:
        bits[:, :length] = golden.encode_float(values, out_format, "nearest_even",
                                               saturate=False)
    return shape, bits


def split_outputs(frames_expected, beats_data, beats_last, statuses):
    """Assign output beats to frames: the beats up to each ``last`` end the next good frame
    with beats; those before them belong to rejected frames (partial output). Returns a list
    of ``data`` arrays (``(beats, lanes)``) for the good frames (None for the others) and
    the number of beats given to rejected frames."""
    out = []
    start = 0
    ends = list(np.flatnonzero(np.asarray(beats_last)))
    end_iter = iter(ends)
    orphan = 0
    for expected in frames_expected:
        if expected is None or expected[1].size == 0:
            out.append(None if expected is None else beats_data[:0])
            continue
        n = expected[1].size // beats_data.shape[1]
        end = next(end_iter, None)
        if end is None:
            raise AssertionError(f"Output ended before a good frame's final beat "
                                 f"({len(ends)} beats with last for more good frames)")
        part = beats_data[start:end + 1]
        orphan += max(0, len(part) - n)
        out.append(part[len(part) - n:] if len(part) >= n else part)
        start = end + 1
    orphan += len(beats_data) - start
    return out, orphan


def decompress_rtl(frames, *, out_format="fp32", elems=("e4m3",), block=32, lanes=1,
                   outliers=None, word_bits=32, max_ndim=4, in_stall=0.0, out_stall=0.0,
                   status_stall=0.0, seed=0, simulator=None, waves=None, max_cycles=None,
                   max_idle_cycles=2000, check=True):
    """Decode ``frames`` (list of bytes) with the RTL engine in simulation.

    Returns a list with one ``(elements, status)`` per frame: ``elements`` the output bit
    patterns of a good frame (``status["code"] == "OK"``) in the frame's shape (unsigned
    integers of the output format), else None; ``status`` a dict with ``code`` (the
    :class:`DecodeError` name), ``offset``, ``ndim`` and ``dims``. With ``check``, every frame
    is compared with the golden model: a frame :func:`golden.decompress` rejects must have an
    error status, one it accepts must be ok with bit-exact elements (an
    :exc:`AssertionError` names the first difference). The run fails (AssertionError) when
    it exceeds ``max_cycles`` or nothing moves for ``max_idle_cycles`` cycles (a hang).
    """
    from hdl.decompress_engine import DecompressionEngine, DecodeError, status_layout
    from hdl.mx_layouts import float_beat_layout
    from .api import unpack_beats
    from .runner import SimulationFailed, default_simulator, run_testbench, waves_requested
    from .verilog import build_dir_for, to_verilog

    frames = [bytes(f) for f in frames]
    core = DecompressionEngine(out_format=out_format, elems=elems, block=block, lanes=lanes,
                               outliers=outliers, word_bits=word_bits, max_ndim=max_ndim)
    in_beats = engine_beats(frames, word_bits)
    expected = [expected_frame(f, out_format=out_format, lanes=lanes) for f in frames]
    n_out = sum(0 if e is None else e[1].size // lanes for e in expected)
    if max_cycles is None:
        max_cycles = int(2000 + 60 * (len(in_beats) / (1 - in_stall)
                                      + n_out / (1 - out_stall)) + 200 * len(frames))
    simulator = simulator or default_simulator()
    waves = waves_requested(waves)
    verilog_text = to_verilog(core, "top")
    build_dir = build_dir_for(verilog_text, "top")
    (build_dir / "runs").mkdir(exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(dir=build_dir / "runs", prefix=f"{simulator}-"))
    spec = {"in_beats": [f"{b:x}" for b in in_beats], "frames": len(frames),
            "in_stall": in_stall, "out_stall": out_stall, "status_stall": status_stall,
            "seed": seed, "max_cycles": max_cycles, "max_idle_cycles": max_idle_cycles}
    data_path, result_path = run_dir / "data.json", run_dir / "result.json"
    data_path.write_text(json.dumps(spec))
    env = {"LOWPREC_TB_DATA": str(data_path), "LOWPREC_TB_RESULT": str(result_path),
           "COCOTB_TRUST_INERTIAL_WRITES": "1"}
    context = (f"[{simulator}, in_stall={in_stall}, out_stall={out_stall}, "
               f"status_stall={status_stall}, seed={seed}; run directory {run_dir}]")
    try:
        run_testbench(build_dir / "top.v", "top", "sim.decompress", extra_env=env,
                      simulator=simulator, waves=waves, build_dir=build_dir,
                      timeout_s=300 + max_cycles / 500, test_dir=run_dir)
    except SimulationFailed as e:
        error = None
        if result_path.is_file():
            error = json.loads(result_path.read_text()).get("error")
        raise AssertionError(f"{error or e.message}\n{context}") from None
    result = json.loads(result_path.read_text())
    if not (waves or os.environ.get("LOWPREC_KEEP_RUNS")):
        shutil.rmtree(run_dir, ignore_errors=True)

    beats = unpack_beats(float_beat_layout(out_format, lanes),
                         [int(b, 16) for b in result["out_beats"]])
    status_columns = unpack_beats(status_layout(max_ndim),
                                  [int(b, 16) for b in result["status_beats"]])
    statuses = []
    for j in range(len(result["status_beats"])):
        ndim = int(status_columns["ndim"][j])
        statuses.append({
            "code": DecodeError(int(status_columns["code"][j])).name,
            "offset": int(status_columns["offset"][j]),
            "ndim": ndim,
            "dims": tuple(int(d) for d in status_columns["dims"][j][:ndim]),
        })
    if len(statuses) != len(frames):
        raise AssertionError(f"{len(statuses)} status entries for {len(frames)} frames "
                             f"{context}")
    data = np.asarray(beats["data"]).reshape(-1, lanes)
    lasts = np.asarray(beats["last"]).reshape(-1)
    accepted = [e if s["code"] == "OK" else None for e, s in zip(expected, statuses)]
    good = [None if s["code"] != "OK" else (e if e is not None else ((), np.zeros((0, lanes))))
            for e, s in zip(expected, statuses)]
    parts, orphan = split_outputs(good, data, lasts, statuses)
    results = []
    problems = []
    for j, (frame_expected, status, part) in enumerate(zip(expected, statuses, parts)):
        if status["code"] != "OK":
            results.append((None, status))
            if check and frame_expected is not None:
                problems.append(f"frame {j}: the golden model accepts it, the RTL reports "
                                f"{status}")
            continue
        if check and frame_expected is None:
            problems.append(f"frame {j}: the golden model rejects it, the RTL reports ok")
            results.append((None, status))
            continue
        shape, bits = frame_expected
        got = np.asarray(part).reshape(bits.shape).astype(bits.dtype) if part is not None \
            and np.asarray(part).size == bits.size else None
        if check:
            if tuple(status["dims"]) != tuple(shape):
                problems.append(f"frame {j}: status dims {status['dims']}, shape {shape}")
            if got is None:
                problems.append(f"frame {j}: {0 if part is None else np.asarray(part).size} "
                                f"elements out, expected {bits.size}")
            elif not np.array_equal(got, bits):
                bad = np.argwhere(got != bits)
                first = tuple(int(v) for v in bad[0])
                problems.append(f"frame {j}: {len(bad)} of {bits.size} elements differ, first "
                                f"at {first}: expected {int(bits[first]):#x}, got "
                                f"{int(got[first]):#x}")
        elements = None
        if got is not None:
            elements = got[:, :shape[-1]].reshape(shape) if bits.size else \
                np.zeros(shape, bits.dtype)
        elif bits.size == 0:
            elements = np.zeros(shape, bits.dtype)
        results.append((elements, status))
        if len(problems) >= 8:
            break
    if check and problems:
        raise AssertionError("\n".join(problems) + f"\n{context}")
    return results


# --- the cocotb testbench ------------------------------------------------------------------

@cocotb.test()
async def decompress_test(dut):
    """Send the frames' words on ``i``; take ``o`` and ``status`` until one status entry per
    frame has arrived and ``o`` has been idle for a while."""
    from .streams import StreamDriver, StreamSink

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
    cycle = progress_cycle = progress = 0
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
        now = driver.accepted + len(sink.received) + len(status.received)
        if now != progress:
            progress, progress_cycle = now, cycle
        elif cycle - progress_cycle > max_idle:
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
