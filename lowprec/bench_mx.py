"""Benchmarks of the MX cores: synthesis rows, golden-model speed, simulator speed."""

import time

import numpy as np

import golden
from hdl import MXQuantizer, MXDequantizer
from . import bench, compression, tradeoffs


__all__ = ["register_all", "golden_speed", "simulator_speed"]


def register_all():
    for elem in ("e4m3", "int8"):
        for lanes in (1, 8):
            params = {"in_format": "fp32", "elem": elem, "block": 32, "lanes": lanes}
            bench.register(f"mx-quantizer-{elem}-x{lanes}",
                           lambda params=params: MXQuantizer(**params), params,
                           elements_per_cycle=lanes, quick=lanes == 1)
    for lanes in (1, 8):
        params = {"elem": "e4m3", "block": 32, "out_format": "fp32", "lanes": lanes}
        bench.register(f"mx-dequantizer-e4m3-x{lanes}",
                       lambda params=params: MXDequantizer(**params), params,
                       elements_per_cycle=lanes, quick=lanes == 1)
    # Outlier extractor and codebook encoder, one lane (II = 1: one element per cycle)
    for k in (1, 2, 4):
        params = {"in_format": "fp32", "elem": "e4m3", "block": 32, "lanes": 1,
                  "outliers": golden.OutlierFormat(k, 4, 7)}
        bench.register(f"outlier-extractor-e4m3-k{k}-x1",
                       lambda params=params: MXQuantizer(**params), params,
                       elements_per_cycle=1, quick=k == 1)
    params = {"in_format": "bf16", "elem": "e4m3", "block": 32, "lanes": 1,
              "outliers": golden.OutlierFormat(4, 4, 7)}
    bench.register("outlier-extractor-bf16-e4m3-k4-x1",
                   lambda params=params: MXQuantizer(**params), params, elements_per_cycle=1)
    for name, codebook in (("log3", golden.log(3)), ("log4", golden.log(4)),
                           ("loadable4", 4)):
        params = {"in_format": "fp32", "codebook": codebook, "block": 32, "lanes": 1}
        bench.register(f"nonuniform-encoder-{name}-x1",
                       lambda params=params: MXQuantizer(**params), params,
                       elements_per_cycle=1, quick=name == "log3")
    # and their decoders
    for name, params in (
            ("outlier-merger-e4m3-k2-x1", {"elem": "e4m3", "block": 32, "lanes": 1,
                                           "outliers": golden.OutlierFormat(2, 4, 7)}),
            ("nonuniform-decoder-loadable4-x1", {"codebook": 4, "block": 32, "lanes": 1})):
        bench.register(name, lambda params=params: MXDequantizer(**params), params,
                       elements_per_cycle=1, quick=False)
    # the word side of the frame format (issue 4)
    from hdl import BitPacker, BitUnpacker
    for word_bits in (32, 64):
        params = {"word_bits": word_bits}
        bench.register(f"bit-packer-w{word_bits}", lambda params=params: BitPacker(**params),
                       params, quick=word_bits == 32)
        bench.register(f"bit-unpacker-w{word_bits}",
                       lambda params=params: BitUnpacker(**params), params, quick=False)
    # the engines (issue 4): a small one-lane build and a four-lane build with two element
    # choices and outliers; elements/s is the peak rate (lanes a cycle, see docs/cores.md)
    from hdl import CompressionEngine, DecompressionEngine
    small = {"elems": ("e4m3",), "block": 32, "lanes": 1, "word_bits": 32}
    wide = {"elems": ("e4m3", "e2m1"), "block": 32, "lanes": 4, "word_bits": 64,
            "outliers": golden.OutlierFormat(2, 4, 3)}
    for name, params in (("e4m3-x1-w32", small), ("e4m3+e2m1-k2-x4-w64", wide)):
        quick = params is small
        cparams = {"in_format": "bf16", **params}
        bench.register(f"compression-engine-bf16-{name}",
                       lambda cparams=cparams: CompressionEngine(**cparams), cparams,
                       elements_per_cycle=params["lanes"], quick=quick)
        dparams = {"out_format": "bf16", **params}
        bench.register(f"decompression-engine-bf16-{name}",
                       lambda dparams=dparams: DecompressionEngine(**dparams), dparams,
                       elements_per_cycle=params["lanes"], quick=quick)
    bench.EXTRA_SECTIONS.extend([golden_speed, simulator_speed, tradeoffs.section,
                                compression.compression_section])


def golden_speed(*, quick):
    """``golden.quantize_mx`` on float32 input, elements/s per element format and rounding."""
    count = 1 << (20 if quick else 24)
    x = np.random.default_rng(0).standard_normal(count).astype(np.float32)
    rows = []
    for elem in golden.MX_ELEMENTS:
        for rounding in ("nearest_even", "stochastic"):
            start = time.perf_counter()
            golden.quantize_mx(x, elem, 32, rounding, seed=1)
            seconds = time.perf_counter() - start
            rows.append({"function": "quantize_mx", "elem": elem, "rounding": rounding,
                         "elements": count, "seconds": round(seconds, 3),
                         "Melem/s": round(count / seconds / 1e6, 2)})
    return f"Golden model speed (float32 input, block 32, {count} elements)", rows


def simulator_speed(*, quick):
    """Cycles per second of the MXQuantizer (e4m3, block 32, 8 lanes) under each simulator."""
    from sim.mx import Frame, run_quantizer
    from sim.runner import SimulatorUnavailable, check_simulator
    from sim.stimulus import float_blocks
    blocks = 250 if quick else 2000
    x = float_blocks(blocks, 32, "fp32", "e4m3", np.random.default_rng(1)).reshape(-1)
    rows = []
    for simulator in ("icarus", "verilator"):
        try:
            check_simulator(simulator)
        except SimulatorUnavailable as error:
            rows.append({"simulator": simulator, "error": str(error)})
            continue
        # The first run builds the simulation; the second is timed.
        run_quantizer([Frame(x[:32 * 8])], elem="e4m3", block=32, lanes=8,
                      simulator=simulator)
        _, run = run_quantizer([Frame(x, "stochastic", 1)], elem="e4m3", block=32, lanes=8,
                               simulator=simulator)
        rows.append({"simulator": simulator, "core": "MXQuantizer e4m3 B32 x8",
                     "cycles": run.cycles, "seconds": round(run.sim_seconds, 2),
                     "cycles/s": round(run.cycles / run.sim_seconds),
                     "elements/s": round(blocks * 32 / run.sim_seconds)})
    return "Simulation speed (cocotb, no stalls)", rows
