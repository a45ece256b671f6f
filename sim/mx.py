"""Run the MX cores in simulation on NumPy arrays, and build their stimulus and expected beats
from the golden model.

A *frame* is one call of the golden model: a tensor, its rounding mode and seed. In a stream,
frames follow one another; the quantizer samples ``cfg`` with the first beat of each frame.
The elements of a frame go in C order. Rows of the last axis are padded with +0 to a multiple
of the block on the host, except for a one-row frame, which is padded to a multiple of the lane
count only, so that the core pads its final block itself.
"""

from dataclasses import dataclass

import numpy as np

import golden
from hdl import MXQuantizer, MXDequantizer
from hdl.float import ROUNDING_NAMES
from hdl.mx_layouts import (float_beat_layout, mx_block_layout, check_block_element,
                             check_block_outliers)
from .api import pack_beats, unpack_beats, run_stream
from .stimulus import BITS_TYPES, cast_to, float_bits


__all__ = ["Frame", "quantizer_beats", "quantizer_expected", "run_quantizer",
           "quantize_mx_rtl", "BlockFrame", "dequantizer_beats", "dequantizer_side",
           "dequantizer_expected", "run_dequantizer", "dequantize_mx_rtl", "cast_to"]


@dataclass
class Frame:
    """One tensor for the quantizer, with the configuration it is quantized with.

    ``outliers``: how many outliers its blocks keep (default: the core's maximum);
    ``codebook``: its levels, for a core whose codebook is loaded at run time."""
    x: np.ndarray
    rounding: str = "nearest_even"
    seed: int = 0
    outliers: int = None
    codebook: golden.Codebook = None


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


def _frame_outliers(frame, outliers):
    """The OutlierFormat a frame's blocks are encoded with (None for none) and its count."""
    if outliers is None or outliers.k == 0:
        return None, 0
    count = outliers.k if frame.outliers is None else frame.outliers
    if count == 0:
        return None, 0
    return golden.OutlierFormat(count, outliers.exp_bits, outliers.man_bits), count


def _frame_codebook(frame, codebook):
    """The Codebook a frame is encoded with (None for float elements)."""
    if isinstance(codebook, int) and not isinstance(codebook, bool):
        if frame.codebook is None or frame.codebook.n_bits != codebook:
            raise ValueError(f"A core with loadable {codebook}-bit codebook needs a codebook "
                             f"of that width in every frame, not {frame.codebook!r}")
        return frame.codebook
    return codebook


def quantizer_beats(frames, *, in_format, block, lanes, codebook=None, outliers=None):
    """Input beats (ints) and ``cfg`` side assignments for a list of :class:`Frame`."""
    data, last, side = [], [], {}
    count = 0
    for frame in frames:
        bits = float_bits(_stream_elements(frame.x, block, lanes), in_format)
        beats = bits.reshape(-1, lanes)
        cfg = {"rounding": ROUNDING_NAMES[frame.rounding], "seed": frame.seed}
        if outliers is not None and outliers.k:
            cfg["outliers"] = _frame_outliers(frame, outliers)[1]
        if isinstance(codebook, int) and not isinstance(codebook, bool):
            cfg["levels"] = list(_frame_codebook(frame, codebook).level_codes)
        side[count] = {"cfg": cfg}
        flags = np.zeros(len(beats), dtype=np.uint8)
        flags[-1] = 1
        data.append(beats)
        last.append(flags)
        count += len(beats)
    layout = float_beat_layout(in_format, lanes)
    beats = pack_beats(layout, {"data": np.concatenate(data), "last": np.concatenate(last)})
    return beats, side


def _payload_columns(scales, codes, index, records, count, max_outliers):
    """The payload columns (:func:`hdl.mx_layouts.mx_block_layout`) of one frame of blocks:
    flat ``scales``, ``codes`` of shape ``(blocks, block)``, ``index``/``records`` of shape
    ``(blocks, max_outliers)``, ``count`` per block; ``last`` on the frame's final block."""
    columns = {"scale": scales, "codes": codes}
    if max_outliers:
        columns["count"] = count
        columns["outliers"] = [{"index": index[:, j], "code": records[:, j]}
                               for j in range(max_outliers)]
    columns["last"] = (np.arange(scales.size) == scales.size - 1).astype(np.uint8)
    return columns


def block_columns(encoded, *, block, max_outliers, count):
    """The payload columns of :class:`golden.Blocks` for a core that keeps up to
    ``max_outliers`` records, ``count`` of them in use (the rest zero)."""
    scales = np.asarray(encoded.scales).reshape(-1)
    index = np.zeros((scales.size, max_outliers), np.int64)
    records = np.zeros((scales.size, max_outliers), np.int64)
    if count:
        index[:, :count] = np.asarray(encoded.outlier_index).reshape(-1, count)
        records[:, :count] = np.asarray(encoded.outlier_codes).reshape(-1, count)
    return _payload_columns(scales, np.asarray(encoded.codes).reshape(-1, block), index,
                            records, np.full(scales.size, count), max_outliers)


def _concat_columns(parts):
    if isinstance(parts[0], dict):
        return {name: _concat_columns([part[name] for part in parts]) for name in parts[0]}
    if isinstance(parts[0], list):
        return [_concat_columns([part[j] for part in parts]) for j in range(len(parts[0]))]
    return np.concatenate(parts)


def quantizer_expected(frames, *, elem=None, block, in_format, sr_bits=8, codebook=None,
                       outliers=None):
    """Golden :class:`golden.Blocks` per frame and the expected output beats."""
    results, columns = [], []
    max_outliers = 0 if outliers is None else outliers.k
    for frame in frames:
        x = cast_to(frame.x, in_format)
        frame_outliers, count = _frame_outliers(frame, outliers)
        encoded = golden.encode_blocks(x, elem, block, frame.rounding, frame.seed,
                                       sr_bits=sr_bits, outliers=frame_outliers,
                                       codebook=_frame_codebook(frame, codebook))
        results.append(encoded)
        columns.append(block_columns(encoded, block=block, max_outliers=max_outliers,
                                     count=count))
    layout = mx_block_layout(elem, block, codebook=codebook, outliers=outliers)
    return results, pack_beats(layout, _concat_columns(columns))


def run_quantizer(frames, *, elem=None, block=32, lanes=8, in_format="fp32", sr_bits=8,
                  codebook=None, outliers=None, in_stall=0.0, out_stall=0.0, seed=0,
                  simulator=None, waves=None):
    """Run :class:`hdl.MXQuantizer` on ``frames`` and compare every output beat with the golden
    model (raising ``AssertionError`` on the first mismatches). Returns the golden
    :class:`golden.Blocks` per frame and the :class:`sim.api.StreamResult`."""
    core = MXQuantizer(in_format=in_format, elem=elem, block=block, lanes=lanes,
                       sr_bits=sr_bits, codebook=codebook, outliers=outliers)
    in_beats, side = quantizer_beats(frames, in_format=in_format, block=block, lanes=lanes,
                                     codebook=codebook, outliers=outliers)
    results, expected = quantizer_expected(frames, elem=elem, block=block, in_format=in_format,
                                           sr_bits=sr_bits, codebook=codebook,
                                           outliers=outliers)
    run = run_stream(core, in_beats, expected=expected, side=side, in_stall=in_stall,
                     out_stall=out_stall, seed=seed, simulator=simulator, waves=waves)
    return results, run


def quantize_mx_rtl(x, *, elem=None, block=32, rounding="nearest_even", seed=0,
                    in_format="fp32", lanes=8, sr_bits=8, codebook=None, outliers=None,
                    simulator=None):
    """Encode ``x`` with the RTL quantizer in simulation. Without outliers: ``(scales,
    codes)`` shaped as :func:`golden.encode_mx` returns them; with ``outliers``: a
    :class:`golden.Blocks`. The outputs are the simulator's, decoded from the output beats
    (the comparison with the golden model is left to the caller). A loadable codebook is
    not supported here: pass the Codebook itself."""
    x = cast_to(x, in_format)
    frames = [Frame(x, rounding, seed)]
    core = MXQuantizer(in_format=in_format, elem=elem, block=block, lanes=lanes,
                       sr_bits=sr_bits, codebook=codebook, outliers=outliers)
    in_beats, side = quantizer_beats(frames, in_format=in_format, block=block, lanes=lanes,
                                     codebook=codebook, outliers=outliers)
    n_blocks = -(-x.shape[-1] // block) * (x.size // max(x.shape[-1], 1))
    run = run_stream(core, in_beats, expected_count=n_blocks, side=side, simulator=simulator)
    out = unpack_beats(mx_block_layout(elem, block, codebook=codebook, outliers=outliers),
                       run.out_beats)
    shape = x.shape[:-1] + (-1,)
    scales = np.asarray(out["scale"], dtype=np.uint8).reshape(shape)
    bits = codebook.bits if codebook is not None else golden.resolve_format(elem).bits
    dtype = np.uint8 if bits <= 8 else np.uint16
    codes = np.asarray(out["codes"]).astype(dtype).reshape(shape)
    if outliers is None or outliers.k == 0:
        return scales, codes
    index = np.stack([record["index"] for record in out["outliers"]], axis=-1).astype(np.uint8)
    records = np.stack([record["code"] for record in out["outliers"]], axis=-1).astype(np.uint16)
    return golden.Blocks(scales, codes, index.reshape(scales.shape + (-1,)),
                         records.reshape(scales.shape + (-1,)))


@dataclass
class BlockFrame:
    """One frame of encoded blocks for the dequantizer.

    Attributes
    ----------
    blocks : golden.Blocks or (scales, codes)
        The blocks (any leading shape; ``block`` codes per scale). Outlier records may be
        fewer than the core's ``k`` (the rest are zero records).
    count : None, int or array of int
        Records in use per block (one value for the frame, or one per block); None for all
        the records ``blocks`` has. Records from ``count`` on are sent as zeros.
    levels : None, golden.Codebook or sequence of golden.Codebook
        For a core with a loadable codebook: the levels of the frame, or of each block. The
        stimulus sets ``cfg.levels`` with each block whose levels differ from the previous
        block's.
    """
    blocks: object
    count: object = None
    levels: object = None


def _block_frames(frames, *, element, block, outliers):
    """Per frame ``(scales, codes, index, records, count, levels)``: flat arrays, ``index``
    and ``records`` of shape ``(blocks, k)`` with zeros from ``count`` on, ``levels`` a list
    of Codebooks (one per block) or None."""
    k = outliers.k
    out = []
    for frame in frames:
        if not isinstance(frame, BlockFrame):
            frame = BlockFrame(frame)
        blocks = frame.blocks
        if isinstance(blocks, golden.Blocks):
            scales, codes, index, records = (np.asarray(part) for part in blocks)
        else:
            scales, codes = (np.asarray(part) for part in blocks)
            index = records = np.zeros(scales.shape + (0,), dtype=np.uint8)
        scales = scales.reshape(-1)
        n = scales.size
        codes = codes.reshape(n, block)
        given = index.shape[-1]
        if given > k:
            raise ValueError(f"Blocks carry {given} outlier records, the core at most {k}")
        index = index.reshape(n, given)
        records = records.reshape(n, given)
        count = np.broadcast_to(given if frame.count is None else frame.count, (n,))
        count = np.asarray(count).astype(np.int64)
        if n and (count.min() < 0 or count.max() > given):
            raise ValueError(f"Outlier counts must be between 0 and {given}, not "
                             f"{count.min()}..{count.max()}")
        used = np.arange(k)[None, :] < count[:, None]
        index = np.where(used, np.pad(index, ((0, 0), (0, k - given))), 0)
        records = np.where(used, np.pad(records, ((0, 0), (0, k - given))), 0)
        levels = frame.levels
        if element.loadable:
            if levels is None:
                raise ValueError("Frames for a loadable codebook need levels")
            if isinstance(levels, golden.Codebook):
                levels = [levels] * n
            levels = list(levels)
            if len(levels) != n:
                raise ValueError(f"Frame has {n} blocks but levels for {len(levels)}")
            for codebook in levels:
                if not isinstance(codebook, golden.Codebook) \
                        or codebook.n_bits != element.n_bits:
                    raise ValueError(f"Levels must be Codebooks of {1 << element.n_bits} "
                                     f"levels, not {codebook!r}")
        elif levels is not None:
            raise ValueError("Levels are only for a core with a loadable codebook")
        elif element.codebook is not None:
            levels = [element.codebook] * n
        out.append((scales, codes, index, records, count, levels))
    return out


def dequantizer_beats(frames, *, elem=None, block, codebook=None, outliers=None):
    """Input beats for a list of frames: :class:`BlockFrame`, :class:`golden.Blocks` or
    ``(scales, codes)``. With a loadable codebook, :func:`dequantizer_side` gives the
    ``cfg`` assignments that go with them."""
    element = check_block_element(elem, codebook)
    outliers = check_block_outliers(outliers, block)
    parts = _block_frames(frames, element=element, block=block, outliers=outliers)
    columns = _concat_columns([_payload_columns(*part[:5], outliers.k) for part in parts])
    return pack_beats(mx_block_layout(elem, block, codebook=codebook, outliers=outliers),
                      columns)


def dequantizer_side(frames, *, block, codebook=None, outliers=None):
    """``cfg`` side assignments (``{beat: {"cfg": {"levels": [...]}}}``) for a core with a
    loadable codebook: one with the first block and with every block whose levels differ from
    the previous block's. Empty for other cores."""
    element = check_block_element(None, codebook) if codebook is not None else None
    if element is None or not element.loadable:
        return {}
    outliers = check_block_outliers(outliers, block)
    parts = _block_frames(frames, element=element, block=block, outliers=outliers)
    side, beat, previous = {}, 0, None
    for part in parts:
        for codebook_now in part[5]:
            if codebook_now.level_codes != previous:
                previous = codebook_now.level_codes
                side[beat] = {"cfg": {"levels": list(previous)}}
            beat += 1
    return side


def _decode_frame(part, *, element, block, outliers):
    """Golden float64 values of one normalised frame (see :func:`_block_frames`)."""
    scales, codes, index, records, count, levels = part
    n = scales.size
    values = np.empty((n, block))
    keys = [(int(c), None if levels is None else levels[b].level_codes)
            for b, c in enumerate(count)]
    groups = {}
    for b, key in enumerate(keys):
        groups.setdefault(key, []).append(b)
    for (c, _), rows in groups.items():
        rows = np.asarray(rows)
        codebook = None if levels is None else levels[rows[0]]
        fmt = golden.OutlierFormat(c, outliers.exp_bits, outliers.man_bits) if c else None
        blocks = golden.Blocks(scales[rows], codes[rows].reshape(-1), index[rows, :c],
                               records[rows, :c])
        values[rows] = golden.decode_blocks(
            blocks, None if codebook is not None else element.format, block, outliers=fmt,
            codebook=codebook).reshape(-1, block)
    return values


def dequantizer_expected(frames, *, elem=None, block, out_format, lanes, codebook=None,
                         outliers=None):
    """Golden output bit patterns per frame (flat, in stream order) and the expected output
    beats: ``golden.decode_blocks`` (with the records in use and the block's levels) rounded to
    ``out_format`` to nearest even, overflowing to Inf."""
    element = check_block_element(elem, codebook)
    outliers = check_block_outliers(outliers, block)
    parts = _block_frames(frames, element=element, block=block, outliers=outliers)
    results, data, last = [], [], []
    for part in parts:
        values = _decode_frame(part, element=element, block=block, outliers=outliers)
        bits = golden.encode_float(values.reshape(-1), out_format, "nearest_even",
                                   saturate=False)
        results.append(bits)
        beats = bits.reshape(-1, lanes)
        flags = np.zeros(len(beats), dtype=np.uint8)
        flags[-1] = 1
        data.append(beats)
        last.append(flags)
    beats = pack_beats(float_beat_layout(out_format, lanes),
                       {"data": np.concatenate(data), "last": np.concatenate(last)})
    return results, beats


def run_dequantizer(frames, *, elem=None, block=32, out_format="fp32", lanes=8, codebook=None,
                    outliers=None, in_stall=0.0, out_stall=0.0, seed=0, simulator=None,
                    waves=None):
    """Run :class:`hdl.MXDequantizer` on frames (:class:`BlockFrame`, :class:`golden.Blocks`
    or ``(scales, codes)``) and compare every output beat with the golden model. Returns the
    golden bit patterns per frame (flat) and the run."""
    core = MXDequantizer(elem=elem, block=block, out_format=out_format, lanes=lanes,
                         codebook=codebook, outliers=outliers)
    in_beats = dequantizer_beats(frames, elem=elem, block=block, codebook=codebook,
                                 outliers=outliers)
    side = dequantizer_side(frames, block=block, codebook=codebook, outliers=outliers)
    results, expected = dequantizer_expected(frames, elem=elem, block=block,
                                             out_format=out_format, lanes=lanes,
                                             codebook=codebook, outliers=outliers)
    run = run_stream(core, in_beats, expected=expected, side=side, in_stall=in_stall,
                     out_stall=out_stall, seed=seed, simulator=simulator, waves=waves)
    return results, run


def dequantize_mx_rtl(scales, codes=None, *, elem=None, block=32, out_format="fp32", lanes=8,
                      codebook=None, outliers=None, count=None, levels=None, simulator=None):
    """Decode blocks with the RTL dequantizer in simulation: float bit patterns shaped like
    the codes (uint32 for fp32, uint16 for bf16 and fp16). ``scales, codes`` are plain MX
    blocks; or give a :class:`golden.Blocks` as
    ``scales`` alone (with ``count`` and ``levels`` as in :class:`BlockFrame`)."""
    if codes is None:
        blocks = scales
        codes = np.asarray(blocks.codes)
    else:
        blocks = (scales, codes)
    codes = np.asarray(codes)
    frame = BlockFrame(blocks, count, levels)
    core = MXDequantizer(elem=elem, block=block, out_format=out_format, lanes=lanes,
                         codebook=codebook, outliers=outliers)
    in_beats = dequantizer_beats([frame], elem=elem, block=block, codebook=codebook,
                                 outliers=outliers)
    side = dequantizer_side([frame], block=block, codebook=codebook, outliers=outliers)
    run = run_stream(core, in_beats, expected_count=codes.size // lanes, side=side,
                     simulator=simulator)
    out = unpack_beats(float_beat_layout(out_format, lanes), run.out_beats)
    return np.asarray(out["data"]).astype(BITS_TYPES[out_format]).reshape(codes.shape)
