"""Amaranth cores of lowprec."""

from .float import RoundingMode, FloatUnpacker, FloatRounder
from .codebook import CodebookRounder
from .mx_quantizer import MXQuantizer, OutlierExtractor, NonUniformEncoder
from .mx_dequantizer import MXDequantizer, OutlierMerger, NonUniformDecoder
from .packer import BitPacker, BitUnpacker

__all__ = ["RoundingMode", "FloatUnpacker", "FloatRounder", "CodebookRounder",
           "MXQuantizer", "OutlierExtractor", "NonUniformEncoder",
           "MXDequantizer", "OutlierMerger", "NonUniformDecoder", "BitPacker",
           "BitUnpacker"]
