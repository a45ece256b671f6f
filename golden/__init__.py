"""The bit-exact NumPy golden model of lowprec (see ``../shared/SPEC.md`` and ``docs/``)."""

from .formats import (FloatFormat, FORMATS, ROUNDING_MODES, int_format, resolve_format,
                      encode_float, decode_float, quantize_float)
from .mx import MX_ELEMENTS, encode_mx, decode_mx, quantize_mx, shared_exponent
from . import rng

__all__ = [
    "FloatFormat", "FORMATS", "ROUNDING_MODES", "int_format", "resolve_format",
    "encode_float", "decode_float", "quantize_float",
    "MX_ELEMENTS", "encode_mx", "decode_mx", "quantize_mx", "shared_exponent", "rng",
]
