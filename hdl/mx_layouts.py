"""Stream payloads and configuration of the MX cores.

Element ``k`` of an array field sits in the least significant bits (``lib.data`` order); the
first element of a beat is the first in stream order.
"""

from amaranth.lib import data

from golden.formats import resolve_format
from golden.mx import check_block, check_element
from .float import RoundingMode


__all__ = ["IN_FORMATS", "check_in_format", "check_lanes", "float_beat_layout",
           "mx_block_layout", "mx_config_layout"]


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


def float_beat_layout(fmt, lanes):
    """``data``: ``lanes`` float codes; ``last``: the beat ends a frame."""
    return data.StructLayout({
        "data": data.ArrayLayout(resolve_format(fmt).bits, lanes),
        "last": 1,
    })


def mx_block_layout(elem, block):
    """One MX block: ``scale`` (E8M0 code, 0xFF for NaN), ``codes`` (``block`` element codes)
    and ``last`` (the block ends a frame)."""
    return data.StructLayout({
        "scale": 8,
        "codes": data.ArrayLayout(check_element(elem).bits, check_block(block)),
        "last":  1,
    })


#: Run-time configuration of a quantizer: rounding mode and stochastic-rounding seed.
mx_config_layout = data.StructLayout({
    "rounding": RoundingMode,
    "seed":     32,
})
