"""Stream payloads and configuration of the MX cores.

Element ``k`` of an array field sits in the least significant bits (``lib.data`` order); the
first element of a beat is the first in stream order.
"""

from collections import namedtuple

from amaranth.lib import data

from golden.codebook import Codebook, LEVEL_BITS, _check_n_bits
from golden.formats import resolve_format
from golden.mx import check_block, check_element
from golden.outliers import check_outliers
from .float import RoundingMode


__all__ = ["IN_FORMATS", "check_in_format", "check_lanes", "BlockElement",
           "check_block_element", "check_block_outliers", "float_beat_layout",
           "record_layout", "mx_block_layout", "mx_config_layout", "levels_layout",
           "quantizer_config_layout", "dequantizer_config_layout"]


#: Float formats a quantizer reads and a dequantizer writes.
IN_FORMATS = ("fp32", "bf16", "fp16")


def check_in_format(fmt, what="Input format"):
    if not isinstance(fmt, str) or fmt not in IN_FORMATS:
        raise ValueError(f"{what} must be one of {', '.join(IN_FORMATS)}, not {fmt!r}")
    return resolve_format(fmt)


def check_lanes(lanes, block):
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1 \
            or lanes & (lanes - 1) or lanes > block:
        raise ValueError(f"Lane count must be a power of two between 1 and the block size "
                         f"{block}, not {lanes!r}")
    return lanes


#: What the element codes of a block are. ``format``: the element FloatFormat, or None for
#: codebook elements; ``codebook``: the Codebook fixed at elaboration, or None;
#: ``n_bits``: the index width of codebook elements (None for a float element);
#: ``loadable``: the levels come through the configuration port at run time;
#: ``bits``: width of a code; ``emax``: the element's emax (0 for codebooks).
BlockElement = namedtuple("BlockElement", "format codebook n_bits loadable bits emax")


def check_block_element(elem, codebook):
    """The element of a block core's ``elem`` and ``codebook`` parameters.

    ``codebook`` is None (elements of the float format ``elem``, default ``"e4m3"``), a
    :class:`golden.Codebook` (levels fixed at elaboration) or an int ``N`` (``2^N`` levels
    loaded at run time through the configuration port); with a codebook, ``elem`` must be None.
    """
    if codebook is None:
        fmt = check_element("e4m3" if elem is None else elem)
        return BlockElement(fmt, None, None, False, fmt.bits, fmt.emax)
    if elem is not None:
        raise ValueError("Give either an element format or a codebook, not both")
    if isinstance(codebook, Codebook):
        return BlockElement(None, codebook, codebook.n_bits, False, codebook.bits, 0)
    if isinstance(codebook, int) and not isinstance(codebook, bool):
        n_bits = _check_n_bits(codebook)
        return BlockElement(None, None, n_bits, True, n_bits + 1, 0)
    raise TypeError(f"Codebook must be None, a Codebook or an index width in bits, "
                    f"not {codebook!r}")


def check_block_outliers(outliers, block):
    """``outliers`` (None or an :class:`golden.OutlierFormat`) for blocks of ``block``; the
    format's ``k`` is the most outliers a block can have, the configuration picks 0..k."""
    return check_outliers(outliers, block)


def float_beat_layout(fmt, lanes):
    """``data``: ``lanes`` float codes; ``last``: the beat ends a frame."""
    return data.StructLayout({
        "data": data.ArrayLayout(resolve_format(fmt).bits, lanes),
        "last": 1,
    })


def record_layout(outliers, block):
    """One outlier record: ``index`` (position in the block) and ``code`` (record format)."""
    return data.StructLayout({
        "index": outliers.index_bits(block),
        "code":  outliers.record_format.bits,
    })


def mx_block_layout(elem, block, *, codebook=None, outliers=None):
    """One block: ``scale`` (E8M0 code, 0xFF for NaN), ``codes`` (``block`` element codes),
    with outliers ``count`` (records in use, 0..K) and ``outliers`` (K records, those from
    ``count`` on all zero), and ``last`` (the block ends a frame)."""
    element = check_block_element(elem, codebook)
    block = check_block(block)
    outliers = check_block_outliers(outliers, block)
    fields = {
        "scale": 8,
        "codes": data.ArrayLayout(element.bits, block),
    }
    if outliers.k:
        fields["count"] = range(outliers.k + 1)
        fields["outliers"] = data.ArrayLayout(record_layout(outliers, block), outliers.k)
    fields["last"] = 1
    return data.StructLayout(fields)


def levels_layout(n_bits):
    """``2^N`` codebook levels, each a :data:`golden.codebook.LEVEL_BITS`-bit integer in
    units of 2^-8."""
    return data.ArrayLayout(LEVEL_BITS, 1 << n_bits)


def quantizer_config_layout(*, max_outliers=0, levels_bits=None):
    """Run-time configuration of a quantizer: ``rounding`` and ``seed`` (taken per frame),
    ``outliers`` (count per block, 0..``max_outliers``, taken per block) when the core keeps
    outliers, ``levels`` (codebook, taken per block) when its codebook is loadable."""
    fields = {"rounding": RoundingMode, "seed": 32}
    if max_outliers:
        fields["outliers"] = range(max_outliers + 1)
    if levels_bits is not None:
        fields["levels"] = levels_layout(levels_bits)
    return data.StructLayout(fields)


def dequantizer_config_layout(levels_bits):
    """Run-time configuration of a dequantizer with a loadable codebook: ``levels``, taken
    with each block."""
    return data.StructLayout({"levels": levels_layout(levels_bits)})


#: Run-time configuration of a plain MX quantizer: rounding mode and stochastic-rounding seed.
mx_config_layout = quantizer_config_layout()
