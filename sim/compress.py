"""Run :class:`hdl.compress_engine.CompressionEngine` in cocotb on NumPy tensors.

Python side: :func:`compress_rtl` (tensors and :class:`golden.CompressionConfig` in, one frame
of bytes per tensor out, every word checked against :func:`golden.compress` unless told
otherwise), :func:`engine_descriptor` and :func:`engine_beats` (the ``cfg`` and ``i`` beats of a
frame, packed through the engine's layouts). Simulator side: the cocotb test
:func:`compress_test`, which drives the two input streams ``cfg`` and ``i`` and reads ``o``,
each with random stalls (:mod:`sim.streams`), and is driven by a JSON file as
:mod:`sim.tb_stream` is.

The heavy imports (Amaranth, NumPy, the golden model) happen inside the Python-side functions,
so that the testbench module stays light inside the simulator.
"""

import json
import os
import random
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from sim.streams import IdleWatchdog, Scoreboard, StreamDriver, StreamSink, StreamTimeout


__all__ = ["compress_rtl", "compress_cycles", "run_compress", "engine_descriptor", "engine_beats", "engine_element",
           "compress_test"]


# ---- Python side -------------------------------------------------------------------------------

def engine_element(engine, config):
    """Index of the engine's element choice that ``config`` (a CompressionConfig) uses."""
    from golden.codebook import Codebook
    for n, elem in enumerate(engine.elems):
        if config.codebook is None:
            if isinstance(elem, str) and elem == config.elem:
                return n
        elif isinstance(elem, Codebook):
            if elem.levels == config.codebook.levels:
                return n
        elif isinstance(elem, int) and not isinstance(elem, bool):
            if elem == config.codebook.n_bits:
                return n
    raise ValueError(f"The engine has no element choice for "
                     f"{config.codebook or config.elem!r} (choices {engine.elems!r})")


def _check_config(engine, config):
    what = []
    if config.block != engine.block:
        what.append(f"block {config.block} (engine {engine.block})")
    if config.sr_bits != engine.sr_bits:
        what.append(f"sr_bits {config.sr_bits} (engine {engine.sr_bits})")
    if config.word_bits != engine.word_bits:
        what.append(f"word_bits {config.word_bits} (engine {engine.word_bits})")
    o, eo = config.outliers, engine.outliers
    if eo.k == 0 and config.k:
        what.append("outliers (the engine keeps none)")
    elif eo.k and (o is None or o.k > eo.k or (o.exp_bits, o.man_bits)
                   != (eo.exp_bits, eo.man_bits)):
        what.append(f"outliers {o!r} (engine {eo!r}: give OutlierFormat(K, D, Mo) with "
                    f"K <= {eo.k} and the engine's D, Mo)")
    if what:
        raise ValueError(f"Frame configuration does not fit the engine: {', '.join(what)}")


def engine_descriptor(engine, shape, config):
    """The packed ``cfg`` payload of a frame of ``shape`` compressed with ``config``."""
    from hdl.float import ROUNDING_NAMES
    from hdl.frame_params import ZERO_MODE_NAMES
    from .api import pack
    _check_config(engine, config)
    if not 1 <= len(shape) <= engine.max_ndim:
        raise ValueError(f"Tensor must have between 1 and {engine.max_ndim} axes, "
                         f"not {len(shape)}")
    element = engine_element(engine, config)
    value = {
        "element": element,
        "rounding": ROUNDING_NAMES[config.rounding],
        "seed": config.seed,
        "zero_mode": ZERO_MODE_NAMES[config.zero_mode],
        "ndim": len(shape),
        "dims": [int(d) for d in shape] + [0] * (engine.max_ndim - len(shape)),
    }
    if engine.outliers.k:
        value["outliers"] = config.k
    if engine.levels_bits is not None:
        levels = [0] * (1 << engine.levels_bits)
        if isinstance(engine.elems[element], int):
            codes = config.codebook.level_codes
            levels[:len(codes)] = codes
        value["levels"] = levels
    return pack(engine.descriptor_layout, value)


def engine_beats(engine, x, *, filler=None):
    """The packed ``i`` beats of tensor ``x``: each row as whole beats; the lanes past a row's
    end get ``filler`` bit patterns (random ones with a ``numpy.random.Generator``, which the
    engine must ignore; default zeros)."""
    import numpy as np
    from amaranth.hdl import Shape
    from hdl.compress_engine import compress_beat_layout
    from .api import pack_beats
    from .stimulus import float_bits
    x = np.asarray(x)
    lanes, fmt = engine.lanes, engine.in_format
    if x.size == 0:
        return []
    rows = float_bits(x.reshape(-1, x.shape[-1]), fmt).astype(np.int64)
    pad = -rows.shape[1] % lanes
    if pad:
        fill = np.zeros((rows.shape[0], pad), np.int64)
        if filler is not None:
            fill = filler.integers(0, 1 << Shape.cast(compress_beat_layout(fmt, 1)).width, fill.shape)
        rows = np.concatenate([rows, fill], axis=1)
    return pack_beats(compress_beat_layout(fmt, lanes), {"data": rows.reshape(-1, lanes)})


def compress_rtl(frames, **kwargs):
    """Compress ``frames`` (a list of ``(x, CompressionConfig)``) with one
    :class:`~hdl.compress_engine.CompressionEngine` in cocotb; returns the frames as bytes
    (little-endian words). Keywords: those of :func:`run_compress`."""
    return run_compress(frames, **kwargs)[0]


def compress_cycles(frames, **kwargs):
    """Clock cycles from the first descriptor offered to the last word received, when
    compressing ``frames`` (keywords of :func:`run_compress`)."""
    return run_compress(frames, **kwargs)[1]


def run_compress(frames, *, check=True, in_stall=0.0, out_stall=0.0, seed=0, simulator=None,
                 waves=None, engine=None, **engine_params):
    """Compress ``frames`` (a list of ``(x, CompressionConfig)``) with one
    :class:`~hdl.compress_engine.CompressionEngine` (``engine``, or one built from
    ``engine_params``) in cocotb; returns ``(frames as bytes, cycles)``: the frames as
    little-endian words, and the clock cycles from the first descriptor offered to the last
    word received.

    ``check``: compare every word with :func:`golden.compress` of ``x`` rounded to the
    engine's input format (what the engine sees) inside the testbench (the failure names the
    first differing words). ``in_stall``: probability of an idle cycle before
    each beat on ``cfg`` and ``i``; ``out_stall``: of ``o.ready`` low in a cycle. The lanes past
    each row's end carry random bits."""
    import numpy as np
    import golden
    from hdl.compress_engine import CompressionEngine
    from hdl.packer import packer_word_layout
    from .api import unpack_beats
    from .stimulus import cast_to
    from .api import run_cocotb
    from .decompress import engine_beats as frame_beats

    if engine is None:
        engine = CompressionEngine(**engine_params)
    elif engine_params:
        raise ValueError("Give either an engine or its parameters, not both")
    rng = np.random.default_rng(seed)
    descriptors, beats, expected = [], [], []
    padded_beats = 0
    for x, config in frames:
        x = np.asarray(x)
        descriptors.append(engine_descriptor(engine, x.shape, config))
        beats += engine_beats(engine, x, filler=rng)
        if x.size:
            rows = x.size // x.shape[-1]
            padded_beats += rows * -(-x.shape[-1] // engine.block) * \
                (engine.block // engine.lanes)
        if check:
            # the engine sees the in_format values
            expected.append(golden.compress(cast_to(x, engine.in_format)
                                            .astype(np.float64), config))
    w = engine.word_bits
    layout = packer_word_layout(w)
    # the golden frames as the word beats the engine must send (the decoder's input beats)
    exp_words = frame_beats(expected, w) if check else None

    stall = max(in_stall, out_stall)
    work = padded_beats + len(frames) * (engine.header_steps + 16) + \
        (len(exp_words) if exp_words else padded_beats * engine.lanes)
    max_cycles = int(2000 + 20 * work / (1.0 - stall))
    spec = {
        "cfg_beats": [f"{b:x}" for b in descriptors],
        "in_beats": [f"{b:x}" for b in beats],
        "expected": None if exp_words is None else [f"{b:x}" for b in exp_words],
        "frames": len(frames),
        "in_stall": float(in_stall), "out_stall": float(out_stall), "seed": int(seed),
        "max_cycles": max_cycles, "max_idle_cycles": 10_000,
    }
    result, _ = run_cocotb(engine, "sim.compress", spec, simulator=simulator, waves=waves,
                           timeout_s=300 + max_cycles / 1000,
                           context=f"in_stall={in_stall}, out_stall={out_stall}, seed={seed}")
    received = [int(b, 16) for b in result["out_beats"]]
    columns = unpack_beats(layout, received)
    out, current = [], b""
    for word, last in zip(columns["word"].tolist(), columns["last"].tolist()):
        current += int(word).to_bytes(w // 8, "little")
        if last:
            out.append(current)
            current = b""
    if current:
        out.append(current)
    return out, result["span"]


# ---- Simulator side ----------------------------------------------------------------------------

@cocotb.test()
async def compress_test(dut):
    """Send the descriptors on ``cfg`` and the beats on ``i``; receive ``o`` until the number
    of frames have ended (``last``), and compare with ``expected`` when given."""
    with open(os.environ["LOWPREC_TB_DATA"]) as f:
        spec = json.load(f)
    clk = dut.clk
    Clock(clk, 10, unit="ns").start()
    rng = random.Random(spec["seed"])
    cfg = StreamDriver(dut, "cfg", clk=clk, stall_prob=spec["in_stall"],
                       rng=random.Random(rng.random()))
    beats = StreamDriver(dut, "i", clk=clk, stall_prob=spec["in_stall"],
                         rng=random.Random(rng.random()))
    sink = StreamSink(dut, "o", clk=clk, stall_prob=spec["out_stall"],
                      rng=random.Random(rng.random()))
    cfg.send([int(b, 16) for b in spec["cfg_beats"]])
    beats.send([int(b, 16) for b in spec["in_beats"]])
    expected = spec.get("expected")
    expected = None if expected is None else [int(b, 16) for b in expected]
    frames = spec["frames"]
    last_bit = None

    dut.rst.value = 1
    edge = RisingEdge(clk)
    for _ in range(2):
        await edge
    dut.rst.value = 0

    width = len(dut.o__payload)
    last_bit = 1 << (width - 1)         # `last` is the payload's top bit (word, then last)
    received = sink.received
    errors = []
    cycle = 0
    watchdog = IdleWatchdog(spec["max_idle_cycles"])
    ended = 0
    start = time.perf_counter()
    for port in (cfg, beats):
        port.drive(0)
    sink.drive(0)
    try:
        while ended < frames or not (cfg.done and beats.done):
            if cycle >= spec["max_cycles"]:
                raise StreamTimeout(f"Not done after {cycle} cycles: {cfg.accepted} "
                                    f"descriptors, {beats.accepted} beats accepted, "
                                    f"{ended} of {frames} frames out")
            await edge
            cycle += 1
            cfg.sample()
            beats.sample()
            before = len(received)
            sink.sample(cycle)
            if len(received) > before and received[-1] is not None \
                    and received[-1] & last_bit:
                ended += 1
            cfg.drive(cycle)
            beats.drive(cycle)
            sink.drive(cycle)
            if watchdog.idle(cycle, cfg.accepted + beats.accepted + len(received)):
                raise StreamTimeout(f"No transfer for {spec['max_idle_cycles']} cycles: "
                                    f"{cfg.accepted} descriptors, {beats.accepted} beats "
                                    f"accepted, {ended} of {frames} frames out")
        for _ in range(16):                 # nothing more may come out
            await edge
            cycle += 1
            sink.sample(cycle)
            sink.drive(cycle, ready=True)
    except StreamTimeout as e:
        errors.append(str(e))
        if os.environ.get("LOWPREC_DEBUG"):
            for name in ("state", "owed", "fill", "step", "got_last", "running", "pos",
                         "row_len", "padded", "head_valid", "tail_valid"):
                try:
                    errors.append(f"  {name} = {getattr(dut, name).value}")
                except AttributeError:
                    pass
    if expected is not None:
        report = Scoreboard(expected, name="o").report(received)
        if report is not None:
            errors.append(report)
    if sink.violation_count:
        errors.append(f"o: {sink.violation_count} stream protocol violations; first:\n  "
                      + "\n  ".join(sink.violations[:8]))
    error = "\n".join(errors) or None
    path = os.environ.get("LOWPREC_TB_RESULT")
    if path:
        with open(f"{path}.tmp", "w") as f:
            span = None if sink.last_cycle is None or cfg.first_valid_cycle is None \
                else sink.last_cycle - cfg.first_valid_cycle
            json.dump({"out_beats": ["0" if b is None else f"{b:x}" for b in received],
                       "cycles": cycle, "span": span, "seconds": time.perf_counter() - start,
                       "error": error}, f)
        os.replace(f"{path}.tmp", path)
    if error:
        raise AssertionError(error)
