"""Run the MX cores in simulation on NumPy arrays, and build their stimulus and expected beats
from the golden model.

A *frame* is one call of the golden model: a tensor, its rounding mode and seed. In a stream,
frames follow one another; the quantizer samples ``cfg`` with the first beat of each frame.
The elements of a frame go in C order. Rows of the last axis are padded with +0 to a multiple
of the block on the host, except for a one-row frame, which is padded to a multiple of the lane
count only, so that the core pads its final block itself.
"""

from dataclasses import dataclass, field

import numpy as np

import golden
from hdl import MXQuantizer, MXDequantizer
from hdl.float import ROUNDING_NAMES
from hdl.mx_layouts import float_beat_layout, mx_block_layout
from .api import pack_beats, unpack_beats, run_stream
from .stimulus import cast_to, float_bits


__all__ = ["Frame", "quantizer_beats", "quantizer_expected", "run_quantizer",
           "quantize_mx_rtl", "dequantizer_beats", "dequantizer_expected", "run_dequantizer",
           "dequantize_mx_rtl", "cast_to"]


@dataclass
class Frame:
    """One tensor for the quantizer, with the configuration it is quantized with."""
    x: np.ndarray
    rounding: str = "nearest_even"
    seed: int = 0


def _stream_elements(x, block, lanes):
    x = np.asarray(x)
    rows = x.reshape(-1, x.shape[-1]) if x.ndim else x.reshape(1, 1)
    if rows.shape[0] == 1:
        pad = -rows.shape[1] % lanes
    else:
        pad = -rows.shape[1] % block
    if pad:
        rows = np.concatenate([rows, np.zeros((rows.shape[0], pad), dtype=rows.dtype)], axis=1)
    return rows.reshape(-1)


def quantizer_beats(frames, *, in_format, block, lanes):
    """Input beats (ints) and ``cfg`` side assignments for a list of :class:`Frame`."""
    data, last, side = [], [], {}
    count = 0
    for frame in frames:
        bits = float_bits(_stream_elements(frame.x, block, lanes), in_format)
        beats = bits.reshape(-1, lanes)
        side[count] = {"cfg": {"rounding": ROUNDING_NAMES[frame.rounding], "seed": frame.seed}}
        flags = np.zeros(len(beats), dtype=np.uint8)
        flags[-1] = 1
        data.append(beats)
        last.append(flags)
        count += len(beats)
    layout = float_beat_layout(in_format, lanes)
    beats = pack_beats(layout, {"data": np.concatenate(data), "last": np.concatenate(last)})
    return beats, side


def quantizer_expected(frames, *, elem, block, in_format, sr_bits=8):
    """Golden ``(scales, codes)`` per frame and the expected output beats."""
    results, scales_all, codes_all, last = [], [], [], []
    for frame in frames:
        x = cast_to(frame.x, in_format)
        scales, codes = golden.encode_mx(x, elem, block, frame.rounding, frame.seed,
                                         sr_bits=sr_bits)
        results.append((scales, codes))
        flat_scales = scales.reshape(-1)
        scales_all.append(flat_scales)
        codes_all.append(codes.reshape(-1, block))
        flags = np.zeros(flat_scales.size, dtype=np.uint8)
        flags[-1] = 1
        last.append(flags)
    beats = pack_beats(mx_block_layout(elem, block), {
        "scale": np.concatenate(scales_all),
        "codes": np.concatenate(codes_all),
        "last":  np.concatenate(last),
    })
    return results, beats


def run_quantizer(frames, *, elem, block=32, lanes=8, in_format="fp32", sr_bits=8,
                  in_stall=0.0, out_stall=0.0, seed=0, simulator=None, waves=None):
    """Run :class:`hdl.MXQuantizer` on ``frames`` and compare every output beat with the golden
    model (raising ``AssertionError`` on the first mismatches). Returns the golden results per
    frame and the :class:`sim.api.StreamResult`."""
    core = MXQuantizer(in_format=in_format, elem=elem, block=block, lanes=lanes,
                       sr_bits=sr_bits)
    in_beats, side = quantizer_beats(frames, in_format=in_format, block=block, lanes=lanes)
    results, expected = quantizer_expected(frames, elem=elem, block=block, in_format=in_format,
                                           sr_bits=sr_bits)
    run = run_stream(core, in_beats, expected=expected, side=side, in_stall=in_stall,
                     out_stall=out_stall, seed=seed, simulator=simulator, waves=waves)
    return results, run


def quantize_mx_rtl(x, *, elem, block=32, rounding="nearest_even", seed=0, in_format="fp32",
                    lanes=8, sr_bits=8, simulator=None):
    """MX-encode ``x`` with the RTL quantizer in simulation: ``(scales, codes)`` shaped as
    :func:`golden.encode_mx` returns them. The outputs are the simulator's, decoded from the
    output beats (the comparison with the golden model is left to the caller)."""
    x = cast_to(x, in_format)
    frames = [Frame(x, rounding, seed)]
    core = MXQuantizer(in_format=in_format, elem=elem, block=block, lanes=lanes,
                       sr_bits=sr_bits)
    in_beats, side = quantizer_beats(frames, in_format=in_format, block=block, lanes=lanes)
    n_blocks = -(-x.shape[-1] // block) * (x.size // max(x.shape[-1], 1))
    run = run_stream(core, in_beats, expected_count=n_blocks, side=side, simulator=simulator)
    out = unpack_beats(mx_block_layout(elem, block), run.out_beats)
    scales = np.asarray(out["scale"], dtype=np.uint8).reshape(x.shape[:-1] + (-1,))
    codes = np.asarray(out["codes"]).astype(golden.encode_float(0.0, elem).dtype)
    return scales, codes.reshape(x.shape[:-1] + (-1,))


def dequantizer_beats(frames, *, elem, block):
    """Input beats for a list of ``(scales, codes)`` frames (any leading shape)."""
    scales = np.concatenate([np.asarray(s).reshape(-1) for s, _ in frames])
    codes = np.concatenate([np.asarray(c).reshape(-1, block) for _, c in frames])
    last = np.concatenate([np.eye(1, np.asarray(s).size, np.asarray(s).size - 1,
                                  dtype=np.uint8)[0] for s, _ in frames])
    return pack_beats(mx_block_layout(elem, block), {"scale": scales, "codes": codes,
                                                     "last": last})


def dequantizer_expected(frames, *, elem, block, out_format, lanes):
    """Golden output bit patterns per frame and the expected output beats."""
    results, data, last = [], [], []
    for scales, codes in frames:
        values = golden.decode_mx(scales, codes, elem, block)
        bits = golden.encode_float(values, out_format, "nearest_even", saturate=False)
        results.append(bits)
        beats = bits.reshape(-1, lanes)
        flags = np.zeros(len(beats), dtype=np.uint8)
        flags[-1] = 1
        data.append(beats)
        last.append(flags)
    beats = pack_beats(float_beat_layout(out_format, lanes),
                       {"data": np.concatenate(data), "last": np.concatenate(last)})
    return results, beats


def run_dequantizer(frames, *, elem, block=32, out_format="fp32", lanes=8, in_stall=0.0,
                    out_stall=0.0, seed=0, simulator=None, waves=None):
    """Run :class:`hdl.MXDequantizer` on ``(scales, codes)`` frames and compare every output
    beat with the golden model. Returns the golden bit patterns per frame and the run."""
    core = MXDequantizer(elem=elem, block=block, out_format=out_format, lanes=lanes)
    in_beats = dequantizer_beats(frames, elem=elem, block=block)
    results, expected = dequantizer_expected(frames, elem=elem, block=block,
                                             out_format=out_format, lanes=lanes)
    run = run_stream(core, in_beats, expected=expected, in_stall=in_stall,
                     out_stall=out_stall, seed=seed, simulator=simulator, waves=waves)
    return results, run


def dequantize_mx_rtl(scales, codes, *, elem, block=32, out_format="fp32", lanes=8,
                      simulator=None):
    """Decode MX blocks with the RTL dequantizer in simulation: float bit patterns shaped like
    ``codes``."""
    core = MXDequantizer(elem=elem, block=block, out_format=out_format, lanes=lanes)
    in_beats = dequantizer_beats([(scales, codes)], elem=elem, block=block)
    run = run_stream(core, in_beats, expected_count=np.asarray(codes).size // lanes,
                     simulator=simulator)
    out = unpack_beats(float_beat_layout(out_format, lanes), run.out_beats)
    return np.asarray(out["data"]).reshape(np.asarray(codes).shape)
