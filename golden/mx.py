"""Block floating point and OCP Microscaling (SPEC section 2).

The model has the two halves of the hardware quantizer (``hdl/mx_quantizer.py``):
:func:`shared_exponent` is its collector (block maximum, E8M0 scale, NaN flag) and the
element conversion is its converter (:func:`golden.formats.encode_float` of ``x / 2^E``).

Blocks run along the last axis. A last axis whose length is not a multiple of ``block`` is
padded with +0 up to the next multiple; the padding takes part in everything the hardware
would see (it takes stochastic-rounding draws, it never changes a block's maximum), the
returned ``codes`` keep the padded length and :func:`quantize_mx` trims it again.
Stochastic-rounding draws follow stream order: the padded array flattened in C order.
"""

import numpy as np

from .formats import FloatFormat, resolve_format, check_rounding, encode_float, decode_float
from .formats import _as_float64, _check_sr_bits


__all__ = ["MX_ELEMENTS", "SCALE_BIAS", "SCALE_NAN", "check_block", "check_element",
           "shared_exponent", "encode_mx", "decode_mx", "quantize_mx"]


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
    special = ~np.isfinite(blocks)
    nan = special.any(axis=-1)
    peak = np.where(special, 0.0, np.abs(blocks)).max(axis=-1)
    _, e2 = np.frexp(peak)
    exponent = np.where(peak > 0, e2.astype(np.int64) - 1 - elem.emax, -SCALE_EMAX)
    return np.clip(exponent, -SCALE_EMAX, SCALE_EMAX), nan


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
    blocks = _blocks(x, block)
    exponent, nan = shared_exponent(blocks, elem)
    with np.errstate(invalid="ignore"):
        scaled = np.where(nan[..., None], 0.0, np.ldexp(blocks, -exponent[..., None]))
    codes = encode_float(scaled, elem, rounding, True, seed, sr_bits=sr_bits)
    scales = np.where(nan, SCALE_NAN, exponent + SCALE_BIAS).astype(np.uint8)
    return scales, codes.reshape(codes.shape[:-2] + (-1,))


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
    values = decode_float(codes, elem).reshape(scales.shape + (block,))
    scales = scales.astype(np.int64)[..., None]
    values = np.where(scales == SCALE_NAN, np.nan, np.ldexp(values, scales - SCALE_BIAS))
    return values.reshape(codes.shape)


def quantize_mx(x, elem, block=32, rounding="nearest_even", seed=0, *, sr_bits=8):
    """``decode_mx(encode_mx(x, ...))`` trimmed to the shape of ``x``: the values ``x`` takes
    after MX quantization."""
    x = np.asarray(x)
    scales, codes = encode_mx(x, elem, block, rounding, seed, sr_bits=sr_bits)
    return decode_mx(scales, codes, elem, block)[..., :x.shape[-1]]
