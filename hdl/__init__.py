"""Amaranth cores of lowprec."""

from .float import RoundingMode, FloatUnpacker, FloatRounder
from .mx_quantizer import MXQuantizer
from .mx_dequantizer import MXDequantizer, OutlierMerger, NonUniformDecoder

__all__ = ["RoundingMode", "FloatUnpacker", "FloatRounder", "MXQuantizer", "MXDequantizer",
           "OutlierMerger", "NonUniformDecoder"]
