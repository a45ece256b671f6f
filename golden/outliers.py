"""Outlier block floating point (SPEC section 3): the ``K`` largest magnitudes of a block leave
the shared-exponent computation and are kept in ancillary records.

Selection (the hardware's :mod:`hdl.topk`): the ``K`` largest magnitudes of a block are the
outliers; among equal magnitudes the lower index ranks first. The shared exponent is taken
from the ``(K+1)``-th largest magnitude, the largest of the others; when the others are all
zero (a block with at most ``K`` non-zero elements), from the block's largest magnitude, so
that a sparse block keeps its values in its records.

A record holds ``index`` (``log2 B`` bits, the outlier's position in its block) and ``code``,
the outlier as a small float of the *record format* ``1-D-Mo``: sign, exponent offset ``d``
(``D`` bits) and ``Mo`` mantissa bits, bias 1, subnormals, no Inf or NaN. The record value is

    ``|x| = 2^(E + emax) * 2^(d - 1) * (1 + m / 2^Mo)``  for ``d >= 1``,
    ``|x| = 2^(E + emax) * m / 2^Mo``                    for ``d == 0``,

where ``E`` is the block's shared exponent and ``emax`` the element's: ``d == 1`` is the
binade of the block's largest normal element, each step of ``d`` doubles the range, and
``d == 0`` covers the magnitudes below that binade (zero outliers of blocks with fewer than
``K`` non-zero elements, and blocks whose shared exponent was clamped to -127; an outlier
equal to the largest of the rest has ``d == 1``). Encoding is :func:`golden.formats.encode_float` of
``x / 2^(E + emax)`` in the record format, with the block's rounding mode (stochastic rounding
takes the draw of the outlier's own position in the stream) and saturation to the record's
largest value. An outlier's slot among the block's element codes carries code 0.
"""

from dataclasses import dataclass

import numpy as np

from .formats import FloatFormat


__all__ = ["MAX_OUTLIERS", "OutlierFormat", "check_outliers", "select_outliers"]


#: Largest number of outliers per block.
MAX_OUTLIERS = 4


def _check_int(value, what, low, high):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or not low <= value <= high:
        raise ValueError(f"{what} must be an integer between {low} and {high}, not {value!r}")
    return int(value)


@dataclass(frozen=True)
class OutlierFormat:
    """How many outliers a block keeps and how each is stored.

    Parameters
    ----------
    k : int
        Outliers per block, 0..4.
    exp_bits : int
        Width ``D`` of the exponent offset of a record, 1..6 bits.
    man_bits : int
        Width ``Mo`` of the mantissa of a record, 0..12 bits.
    """
    k: int = 1
    exp_bits: int = 4
    man_bits: int = 7

    def __post_init__(self):
        _check_int(self.k, "Outlier count", 0, MAX_OUTLIERS)
        _check_int(self.exp_bits, "Outlier exponent width", 1, 6)
        _check_int(self.man_bits, "Outlier mantissa width", 0, 12)

    @property
    def record_format(self):
        """The record's float format, ``1-D-Mo`` with bias 1, subnormals, no specials."""
        return FloatFormat(f"outlier_e{self.exp_bits}m{self.man_bits}", self.exp_bits,
                           self.man_bits, 1, specials="none", subnormals=True)

    def index_bits(self, block):
        """Width of a record's index for blocks of ``block`` elements."""
        return (block - 1).bit_length()

    def record_bits(self, block):
        """Width of a record: index and code."""
        return self.index_bits(block) + self.record_format.bits


def check_outliers(outliers, block):
    """``outliers`` as an :class:`OutlierFormat` (``None`` means no outliers)."""
    if outliers is None:
        return OutlierFormat(k=0)
    if not isinstance(outliers, OutlierFormat):
        raise TypeError(f"Outliers must be an OutlierFormat or None, not {outliers!r}")
    if outliers.k >= block:
        raise ValueError(f"Outlier count must be below the block size {block}, "
                         f"not {outliers.k}")
    return outliers


def select_outliers(magnitudes, k):
    """Positions of the ``k`` largest ``magnitudes`` of each block (last axis), largest first;
    equal magnitudes rank by lower index. Returns ``(index, peak)``: int64 indices of shape
    ``(..., k)`` and the magnitude that sets the shared exponent: the largest of the other
    elements, or the largest of all where the others are all zero."""
    order = np.argsort(-magnitudes, axis=-1, kind="stable")
    index = order[..., :k]
    peak = np.take_along_axis(magnitudes, order[..., k:k + 1], axis=-1)[..., 0]
    top = np.take_along_axis(magnitudes, order[..., :1], axis=-1)[..., 0]
    return index, np.where(peak > 0, peak, top)
