"""Amaranth cores of lowprec."""

from .float import RoundingMode, FloatUnpacker, FloatRounder
from .codebook import CodebookRounder
from .mx_quantizer import MXQuantizer, OutlierExtractor, NonUniformEncoder
from .mx_dequantizer import MXDequantizer, OutlierMerger, NonUniformDecoder
from .packer import BitPacker, BitUnpacker
from .frame_params import ZeroMode
from .zero import ZeroCompressor
from .unzero import ZeroDecompressor, DecodeError
from .compress_engine import CompressionEngine
from .decompress_engine import DecompressionEngine
from .mac import (mac_config_layout, AdderTree, GridRounder, ShiftMACUnit, MultiplierMACUnit,
                  ShiftMACArray, MultiplierMACArray)

__all__ = ["RoundingMode", "FloatUnpacker", "FloatRounder", "CodebookRounder",
           "MXQuantizer", "OutlierExtractor", "NonUniformEncoder",
           "MXDequantizer", "OutlierMerger", "NonUniformDecoder", "BitPacker",
           "BitUnpacker", "ZeroMode", "ZeroCompressor", "ZeroDecompressor", "DecodeError",
           "CompressionEngine", "DecompressionEngine", "mac_config_layout", "AdderTree",
           "GridRounder", "ShiftMACUnit", "MultiplierMACUnit", "ShiftMACArray",
           "MultiplierMACArray"]
