"""Block floating point and OCP Microscaling (SPEC section 2).

The model has the two halves of the hardware quantizer (``hdl/mx_quantizer.py``):
:func:`shared_exponent` is its collector (block maximum, E8M0 scale, NaN flag) and the
element conversion is its converter (:func:`golden.formats.encode_float` of ``x / 2^E``).
For inputs that are exactly float32 values both run on float32 bit patterns, chunk by chunk
(:func:`_encode_mx_bits`): the block maximum is that of the bit patterns and dividing by
``2^E`` subtracts ``E`` from the exponents.

Blocks run along the last axis. A last axis whose length is not a multiple of ``block`` is
padded with +0 up to the next multiple; the padding takes part in everything the hardware
would see (it takes stochastic-rounding draws, it never changes a block's maximum), the
returned ``codes`` keep the padded length and :func:`quantize_mx` trims it again.
Stochastic-rounding draws follow stream order: the padded array flattened in C order.
"""

from collections import namedtuple

import numpy as np

from . import rng
from .codebook import Codebook, encode_codebook, decode_codebook
from .outliers import check_outliers, select_outliers
from .formats import resolve_format, check_rounding, encode_float, decode_float
from .formats import _as_float64, _check_sr_bits, _check_real, _as_float32_bits, _bit_plan
from .formats import _encode_bits, _code_dtype, _code_index, _decode_table
from .formats import _CHUNK, _F32_EXP_ONE, _F32_INF


__all__ = ["MX_ELEMENTS", "SCALE_BIAS", "SCALE_NAN", "check_block", "check_element",
           "check_element_or_codebook", "shared_exponent", "encode_mx", "decode_mx",
           "Blocks", "encode_blocks", "decode_blocks", "encode_outlier_bfp",
           "decode_outlier_bfp", "quantize_mx"]


#: The OCP MX v1.0 element formats (MXFP8, MXFP6, MXFP4, MXINT8); any radix-2 format of up to
#: 16 bits works as an element.
MX_ELEMENTS = ("e5m2", "e4m3", "e3m2", "e2m3", "e2m1", "int8")
SCALE_BIAS = 127
SCALE_NAN = 0xFF
SCALE_EMAX = 127


def check_block(block):
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) \
            or block < 2 or block > 64 or block & (block - 1):
        raise ValueError(f"Block size must be a power of two between 2 and 64, not {block!r}")
    return int(block)


def check_element(elem):
    fmt = resolve_format(elem, what="Element format")
    if fmt.radix != 2 or fmt.bits > 16:
        raise ValueError(f"Element format must be a radix-2 format of at most 16 bits, "
                         f"not {fmt.name}")
    return fmt


def _blocks(x, block):
    x = _as_float64(x)
    if x.ndim == 0:
        raise ValueError("Input must have at least one axis")
    pad = -x.shape[-1] % block
    if pad:
        x = np.concatenate([x, np.zeros(x.shape[:-1] + (pad,))], axis=-1)
    return x.reshape(x.shape[:-1] + (x.shape[-1] // block, block))


def shared_exponent(blocks, elem):
    """Per block of the last axis: ``(E, nan)``.

    ``E = clamp(floor(log2(max|x|)) - emax_elem, -127, 127)`` (int64; ``-127`` for an all-zero
    block) and ``nan``, true where the block holds a NaN or an Inf.
    """
    elem = check_element(elem)
    blocks = np.asarray(blocks)
    bits = _as_float32_bits(blocks) if blocks.ndim else None
    if bits is not None:
        # the same on float32 bit patterns: |x| is ordered like its bit pattern
        a = bits & 0x7FFFFFFF
        special = a >= _F32_INF
        nan = special.any(axis=-1)
        a[special] = 0
        exponent = _peak_exponent(a.max(axis=-1, initial=0), elem.emax)
        return np.clip(exponent.astype(np.int64), -SCALE_EMAX, SCALE_EMAX), nan
    special = ~np.isfinite(blocks)
    nan = special.any(axis=-1)
    peak = np.where(special, 0.0, np.abs(blocks)).max(axis=-1)
    _, e2 = np.frexp(peak)
    exponent = np.where(peak > 0, e2.astype(np.int64) - 1 - elem.emax, -SCALE_EMAX)
    return np.clip(exponent, -SCALE_EMAX, SCALE_EMAX), nan


def _peak_exponent(peak, emax):
    """``E`` from the bit patterns ``peak`` of the largest ``|x|`` of each block (int32)."""
    shape, peak = peak.shape, peak.reshape(-1)
    lead = peak >> 23                               # floor(log2(peak)) + 127 for normals
    small = np.flatnonzero(peak < _F32_EXP_ONE)     # subnormal (or zero) peaks
    if small.size:
        lead[small] = (peak[small].astype(np.float32).view(np.int32) >> 23) - 149
    exponent = lead - (127 + emax)
    exponent[peak == 0] = -SCALE_EMAX
    return np.clip(exponent, -SCALE_EMAX, SCALE_EMAX, out=exponent).reshape(shape)


def _block_peaks(a, block):
    """The largest bit pattern of each block of ``block`` consecutive elements of ``a``."""
    if block >= 16:
        return np.maximum.reduceat(a, np.arange(0, a.size, block))
    columns = a.reshape(-1, block)
    peak = columns[:, 0].copy()
    for j in range(1, block):
        np.maximum(peak, columns[:, j], out=peak)
    return peak


def _encode_mx_bits(bits, elem, block, plan, draws):
    """:func:`encode_mx` on the float32 bit patterns of the padded input, ``bits`` (int32,
    last axis a multiple of ``block``): collector and converter chunk by chunk."""
    scales_out = np.empty(bits.shape[:-1] + (bits.shape[-1] // block,), np.uint8)
    codes_out = np.empty(bits.shape, _code_dtype(elem))
    bits, codes, scales = bits.reshape(-1), codes_out.reshape(-1), scales_out.reshape(-1)
    emax = elem.emax
    # NaN blocks hold the codes of +0 (0 in any sensible format)
    zero_code = np.empty(1, codes.dtype)
    _encode_bits(np.zeros(1, np.int32), plan, True, np.zeros(1, np.int32), out=zero_code)
    for start in range(0, bits.size, _CHUNK):
        part = slice(start, start + _CHUNK)
        chunk = bits[part]
        # The collector: block maximum, NaN/Inf flag and E (see shared_exponent).
        a = chunk & 0x7FFFFFFF
        peak = _block_peaks(a, block)
        nan = peak >= _F32_INF
        exponent = _peak_exponent(peak, emax)
        # The converter: the codes of x / 2^E, saturating; all 0 in a NaN block.
        scale_exp = exponent - plan.f32_to_e
        _encode_bits(chunk, plan, True, None if draws is None else draws[part], a=a,
                     scale_exp=np.repeat(scale_exp, block),
                     tiny=bool((1 - scale_exp > plan.tiny_e).any()), out=codes[part])
        block_scales = scales[start // block:(start + chunk.size) // block]
        np.add(exponent, SCALE_BIAS, out=block_scales, casting="unsafe")
        if nan.any():
            codes[part].reshape(-1, block)[nan] = zero_code[0]
            block_scales[nan] = SCALE_NAN
    return scales_out, codes_out


def encode_mx(x, elem, block=32, rounding="nearest_even", seed=0, *, sr_bits=8):
    """MX/BFP-encode ``x`` along its last axis.

    Parameters
    ----------
    x : array_like of float
        Input values (any float dtype), at least one axis.
    elem : str or FloatFormat
        Element format: a preset name (``"e4m3"``, ``"int8"``, ...) or a radix-2 FloatFormat.
    block : int
        Elements per shared scale, a power of two from 2 to 64.
    rounding : str
        Element rounding, one of :data:`golden.formats.ROUNDING_MODES`. Elements saturate.
    seed, sr_bits : int
        Stochastic rounding generator seed and bits per draw (see :mod:`golden.rng`).

    Returns
    -------
    scales : ndarray of uint8, shape ``x.shape[:-1] + (nblocks,)``
        E8M0 scale codes, ``E + 127``; ``0xFF`` marks a block that held a NaN or Inf.
    codes : ndarray of unsigned integers, shape ``x.shape[:-1] + (nblocks * block,)``
        Element codes; all 0 in a NaN block.
    """
    elem = check_element(elem)
    block = check_block(block)
    check_rounding(rounding)
    sr_bits = _check_sr_bits(sr_bits)
    rng._check_seed(seed)
    x = _check_real(x)
    bits = _as_float32_bits(x) if x.ndim else None
    plan = None if bits is None else _bit_plan(elem, rounding, sr_bits, SCALE_EMAX)
    if plan is not None:
        pad = -x.shape[-1] % block
        if pad:
            padded = np.zeros(x.shape[:-1] + (x.shape[-1] + pad,), np.int32)   # +0
            padded[..., :x.shape[-1]] = bits
            bits = padded
        draws = None
        if rounding == "stochastic":
            rng._check_seed(seed)
            draws = rng._draws(seed, bits.size, sr_bits)
            draws = draws.view(np.int32) if draws.dtype == np.uint32 else draws
        return _encode_mx_bits(bits, elem, block, plan, draws)
    blocks = _blocks(x, block)
    exponent, nan = shared_exponent(blocks, elem)
    with np.errstate(invalid="ignore"):
        scaled = np.where(nan[..., None], 0.0, np.ldexp(blocks, -exponent[..., None]))
    codes = encode_float(scaled, elem, rounding, True, seed, sr_bits=sr_bits)
    scales = np.where(nan, SCALE_NAN, exponent + SCALE_BIAS).astype(np.uint8)
    return scales, codes.reshape(codes.shape[:-2] + (codes.shape[-2] * codes.shape[-1],))


def decode_mx(scales, codes, elem, block=32):
    """The float64 values of MX blocks: ``decode(code) * 2^(scale - 127)``, NaN where the
    scale is ``0xFF``. ``codes`` has ``block`` elements per scale along its last axis."""
    elem = check_element(elem)
    block = check_block(block)
    scales = np.asarray(scales)
    codes = np.asarray(codes)
    if codes.shape[:-1] != scales.shape[:-1] or codes.shape[-1] != scales.shape[-1] * block:
        raise ValueError(f"Codes of shape {codes.shape} do not match scales of shape "
                         f"{scales.shape} with block size {block}")
    scales = scales.astype(np.int64)
    if scales.size == 0 or scales.min() >= 0 and scales.max() <= SCALE_NAN:
        return _decode_mx_table(scales, codes, elem, block)
    values = decode_float(codes, elem).reshape(scales.shape + (block,))
    scales = scales[..., None]
    values = np.where(scales == SCALE_NAN, np.nan, np.ldexp(values, scales - SCALE_BIAS))
    return values.reshape(codes.shape)


#: 2^(scale - 127) for every E8M0 scale code (the NaN code is handled apart)
_SCALE_VALUES = np.ldexp(1.0, np.arange(256) - SCALE_BIAS)
_SCALE_VALUES[SCALE_NAN] = 1.0
_SCALE_VALUES.flags.writeable = False


def _decode_mx_table(scales, codes, elem, block):
    """:func:`decode_mx` for scales 0..255, chunk by chunk: element values from a table,
    multiplied by ``2^(scale - 127)`` (the same as ``ldexp``: a power of two)."""
    table = _decode_table(elem)
    values = np.empty(codes.shape)
    flat_values, flat_scales = values.reshape(-1), scales.reshape(-1)
    flat_codes = codes.reshape(-1)
    for start in range(0, flat_codes.size, _CHUNK):
        part = slice(start, start + _CHUNK)
        chunk = flat_values[part]
        table.take(_code_index(flat_codes[part], elem), mode="clip", out=chunk)
        block_scales = flat_scales[start // block:(start + chunk.size) // block]
        chunk *= np.repeat(_SCALE_VALUES[block_scales], block)
        nan = block_scales == SCALE_NAN
        if nan.any():
            chunk.reshape(-1, block)[nan] = np.nan
    return values


def check_element_or_codebook(elem, codebook):
    """The element of a block: the format ``elem`` or the :class:`Codebook` ``codebook``
    (exactly one of them)."""
    if codebook is not None:
        if elem is not None:
            raise ValueError("Give either an element format or a codebook, not both")
        if not isinstance(codebook, Codebook):
            raise TypeError(f"Codebook must be a Codebook or None, not {codebook!r}")
        return codebook
    if elem is None:
        raise ValueError("An element format or a codebook is required")
    return check_element(elem)


#: Encoded blocks: ``scales`` (uint8, one per block), ``codes`` (element codes, ``block`` per
#: scale), ``outlier_index`` (uint8, shape ``scales.shape + (K,)``: each record's position in
#: its block) and ``outlier_codes`` (record-format codes, the same shape).
Blocks = namedtuple("Blocks", "scales codes outlier_index outlier_codes")


def encode_blocks(x, elem=None, block=32, rounding="nearest_even", seed=0, *, sr_bits=8,
                  outliers=None, codebook=None):
    """Encode ``x`` along its last axis into blocks with a shared exponent: the one entry
    point for MX/BFP, outlier BFP (``outliers``) and codebook elements (``codebook``).

    Parameters are those of :func:`encode_mx`, and:

    outliers : OutlierFormat or None
        Keep the ``K`` largest magnitudes of every block in records (:mod:`golden.outliers`);
        the shared exponent comes from the other elements.
    codebook : Codebook or None
        Element codes are codebook levels (:mod:`golden.codebook`) instead of the format
        ``elem``; give one of the two. Codebook elements always take the nearest level;
        ``rounding`` then applies to the outlier records alone.

    Returns
    -------
    Blocks
        With ``K = 0`` the outlier arrays have a last axis of length 0. A block that holds a
        NaN or an Inf has scale 0xFF and all its codes, indices and records 0.
    """
    element = check_element_or_codebook(elem, codebook)
    block = check_block(block)
    check_rounding(rounding)
    sr_bits = _check_sr_bits(sr_bits)
    rng._check_seed(seed)
    outliers = check_outliers(outliers, block)
    x = _check_real(x)
    k = outliers.k
    if codebook is None and k == 0:
        scales, codes = encode_mx(x, element, block, rounding, seed, sr_bits=sr_bits)
        empty = np.zeros(scales.shape + (0,), np.uint8)
        return Blocks(scales, codes, empty, empty.copy())
    blocks = _blocks(x, block)
    special = ~np.isfinite(blocks)
    nan = special.any(axis=-1)
    finite = np.where(special, 0.0, blocks)
    index, peak = select_outliers(np.abs(finite), k)
    _, e2 = np.frexp(peak)
    emax = element.emax
    exponent = np.clip(np.where(peak > 0, e2.astype(np.int64) - 1 - emax, -SCALE_EMAX),
                       -SCALE_EMAX, SCALE_EMAX)
    scaled = np.ldexp(finite, -exponent[..., None])
    draws = None
    if rounding == "stochastic":
        draws = rng._draws(seed, blocks.size, sr_bits).astype(np.int64).reshape(blocks.shape)
    if codebook is not None:
        codes = encode_codebook(scaled, codebook)
    else:
        codes = encode_float(scaled, element, rounding, True, sr_bits=sr_bits, random=draws)
    record_format = outliers.record_format
    if k:
        np.put_along_axis(codes, index, 0, axis=-1)
        picked = np.take_along_axis(scaled, index, axis=-1)
        record_codes = encode_float(
            np.ldexp(picked, -emax), record_format, rounding, True, sr_bits=sr_bits,
            random=None if draws is None else np.take_along_axis(draws, index, axis=-1))
    else:
        record_codes = np.zeros(index.shape, np.uint8)
    codes[nan] = 0
    record_codes[nan] = 0
    index[nan] = 0
    scales = np.where(nan, SCALE_NAN, exponent + SCALE_BIAS).astype(np.uint8)
    # (an explicit last axis: -1 cannot be inferred for an empty tensor)
    flat = codes.reshape(codes.shape[:-2] + (codes.shape[-2] * codes.shape[-1],))
    return Blocks(scales, flat, index.astype(np.uint8),
                  record_codes)


def decode_blocks(blocks, elem=None, block=32, *, outliers=None, codebook=None):
    """The float64 values of :class:`Blocks` (the inverse of :func:`encode_blocks`, up to
    quantization): elements ``decode(code) * 2^(scale - 127)``, outlier slots rebuilt from
    their records (``decode(record) * 2^(scale - 127 + emax)``; where two records name the
    same slot the earlier one wins), all NaN where the scale is 0xFF."""
    element = check_element_or_codebook(elem, codebook)
    block = check_block(block)
    outliers = check_outliers(outliers, block)
    scales, codes, index, records = (np.asarray(part) for part in blocks)
    k = outliers.k
    if codes.shape[:-1] != scales.shape[:-1] or codes.shape[-1] != scales.shape[-1] * block:
        raise ValueError(f"Codes of shape {codes.shape} do not match scales of shape "
                         f"{scales.shape} with block size {block}")
    for name, part in (("Outlier indices", index), ("Outlier records", records)):
        if part.shape != scales.shape + (k,):
            raise ValueError(f"{name} must have shape {scales.shape + (k,)}, "
                             f"not {part.shape}")
    if index.size and (index.min() < 0 or index.max() >= block):
        raise ValueError(f"Outlier indices must be between 0 and {block - 1}")
    if codebook is None and k == 0:
        return decode_mx(scales, codes, element, block)
    if codebook is not None:
        values = decode_codebook(codes, codebook)
    else:
        values = decode_float(codes, element)
    values = values.reshape(scales.shape + (block,))
    scale_exp = scales.astype(np.int64) - SCALE_BIAS
    values = np.ldexp(values, scale_exp[..., None])
    if k:
        kept = np.ldexp(decode_float(records, outliers.record_format),
                        scale_exp[..., None] + element.emax)
        for j in reversed(range(k)):
            np.put_along_axis(values, index[..., j:j + 1].astype(np.int64), kept[..., j:j + 1],
                              axis=-1)
    values[scales == SCALE_NAN] = np.nan
    return values.reshape(codes.shape)


def encode_outlier_bfp(x, elem=None, block=32, k=1, exp_bits=4, man_bits=7,
                       rounding="nearest_even", seed=0, *, sr_bits=8, codebook=None):
    """Outlier BFP: :func:`encode_blocks` with ``OutlierFormat(k, exp_bits, man_bits)``."""
    from .outliers import OutlierFormat
    return encode_blocks(x, elem, block, rounding, seed, sr_bits=sr_bits, codebook=codebook,
                         outliers=OutlierFormat(k, exp_bits, man_bits))


def decode_outlier_bfp(blocks, elem=None, block=32, k=1, exp_bits=4, man_bits=7, *,
                       codebook=None):
    """The values of :func:`encode_outlier_bfp` blocks."""
    from .outliers import OutlierFormat
    return decode_blocks(blocks, elem, block, codebook=codebook,
                         outliers=OutlierFormat(k, exp_bits, man_bits))


def quantize_mx(x, elem=None, block=32, rounding="nearest_even", seed=0, *, sr_bits=8,
                outliers=None, codebook=None):
    """``decode_blocks(encode_blocks(x, ...))`` trimmed to the shape of ``x``: the values
    ``x`` takes after MX/BFP quantization, with outliers and codebook elements if asked."""
    x = np.asarray(x)
    encoded = encode_blocks(x, elem, block, rounding, seed, sr_bits=sr_bits, outliers=outliers,
                            codebook=codebook)
    return decode_blocks(encoded, elem, block, outliers=outliers,
                         codebook=codebook)[..., :x.shape[-1]]
