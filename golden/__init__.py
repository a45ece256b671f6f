"""The bit-exact NumPy golden model of lowprec (see ``../shared/SPEC.md`` and ``docs/``)."""

from .formats import (FloatFormat, FORMATS, ROUNDING_MODES, int_format, resolve_format,
                      encode_float, decode_float, quantize_float)
from .codebook import (Codebook, uniform, log, fit_codebook, encode_codebook, decode_codebook)
from .outliers import OutlierFormat
from .mx import (MX_ELEMENTS, encode_mx, decode_mx, quantize_mx, shared_exponent, Blocks,
                 encode_blocks, decode_blocks, encode_outlier_bfp, decode_outlier_bfp)
from .codec import (CompressionConfig, ELEMENT_IDS, FrameError, compress, decompress,
                    decompress_blocks, compression_report)
from .mac import (FP4_FORMATS, shift_mac, quantize_fp4, dequantize_fp4, quantize_int4,
                  min_accumulator_bits, variance_retention, min_accumulator_mantissa)
from . import rng, codebook, codec, mac

__all__ = [
    "FloatFormat", "FORMATS", "ROUNDING_MODES", "int_format", "resolve_format",
    "encode_float", "decode_float", "quantize_float",
    "Codebook", "uniform", "log", "fit_codebook", "encode_codebook", "decode_codebook",
    "OutlierFormat",
    "MX_ELEMENTS", "encode_mx", "decode_mx", "quantize_mx", "shared_exponent", "Blocks",
    "encode_blocks", "decode_blocks", "encode_outlier_bfp", "decode_outlier_bfp", "rng",
    "codebook", "CompressionConfig", "ELEMENT_IDS", "FrameError", "compress", "decompress",
    "decompress_blocks", "compression_report", "codec",
    "FP4_FORMATS", "shift_mac", "quantize_fp4", "dequantize_fp4", "quantize_int4",
    "min_accumulator_bits", "variance_retention", "min_accumulator_mantissa", "mac",
]
