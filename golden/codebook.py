"""Non-uniform mantissas: codebooks of magnitude levels (SPEC section 4).

A :class:`Codebook` replaces the uniform steps of an element format by ``2^N`` magnitude
levels (``N`` = 1..4, so 2 to 16 levels). The levels lie in ``[0, 2)`` in units of ``2^E``,
where ``E`` is the block's shared exponent; a codebook element therefore has ``emax = 0``:
``E = floor(log2(max|x|))`` and every scaled magnitude ``t = |x| / 2^E`` of a block lies in
``[0, 2)``. Levels are fixed-point numbers with :data:`LEVEL_FRAC_BITS` fractional bits (a
level is stored in hardware as the :data:`LEVEL_BITS`-bit integer ``level * 2^8``).

An element code is ``sign << N | index``: the sign of ``x`` and the index of the level nearest
to the exact scaled magnitude ``t``; a ``t`` exactly halfway between two levels takes the lower
one. Equivalently, ``index`` is the number of thresholds ``(level[j] + level[j+1]) / 2`` that
are strictly below ``t`` (:func:`encode_codebook`); this is what the hardware counts
(``hdl/codebook.py``). Above the top level every magnitude takes the top level.
"""

from dataclasses import dataclass

import numpy as np

from .formats import FloatFormat


__all__ = ["LEVEL_FRAC_BITS", "LEVEL_BITS", "MAX_CODEBOOK_BITS", "LEVEL_FORMAT", "Codebook", "uniform",
           "log", "fit_codebook", "encode_codebook", "decode_codebook", "block_magnitudes"]


#: Fractional bits of a level: levels are multiples of 2^-8.
LEVEL_FRAC_BITS = 8
#: Width of a level in hardware: levels are integers 0 .. 2^9 - 1 in units of 2^-8.
LEVEL_BITS = LEVEL_FRAC_BITS + 1
#: Largest index width: at most 16 levels.
MAX_CODEBOOK_BITS = 4
#: A level as a number format: the level code zero-extended to a 10-bit two's complement
#: integer in units of 2^-8 (so a decoder can unpack it like any element code).
LEVEL_FORMAT = FloatFormat("level", 0, LEVEL_BITS, 0, specials="none", subnormals=True,
                           twos_complement=True)


def _check_n_bits(n_bits):
    if isinstance(n_bits, bool) or not isinstance(n_bits, (int, np.integer)) \
            or not 1 <= n_bits <= MAX_CODEBOOK_BITS:
        raise ValueError(f"Codebook index width must be between 1 and {MAX_CODEBOOK_BITS} bits "
                         f"(2 to {1 << MAX_CODEBOOK_BITS} levels), not {n_bits!r}")
    return int(n_bits)


@dataclass(frozen=True)
class Codebook:
    """``2^N`` sorted magnitude levels, the first 0, each a multiple of ``2^-8`` below 2.

    Parameters
    ----------
    levels : sequence of float
        The levels, strictly increasing, ``levels[0] == 0``, ``levels[-1] < 2``; their count
        is a power of two from 2 to 16.
    name : str
        Used in reports.
    """
    levels: tuple
    name: str = "custom"

    def __post_init__(self):
        try:
            levels = np.asarray(self.levels, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"Codebook levels must be a sequence of numbers, "
                            f"not {self.levels!r}") from None
        if levels.ndim != 1:
            raise ValueError(f"Codebook levels must be a flat sequence, not of shape "
                             f"{levels.shape}")
        count = levels.size
        if count < 2 or count > 1 << MAX_CODEBOOK_BITS or count & (count - 1):
            raise ValueError(f"Codebook must have a power-of-two number of levels between 2 and "
                             f"{1 << MAX_CODEBOOK_BITS}, not {count}")
        if not np.isfinite(levels).all():
            raise ValueError("Codebook levels must be finite")
        if levels[0] != 0:
            raise ValueError(f"The first codebook level must be 0, not {float(levels[0])!r}")
        if (np.diff(levels) <= 0).any():
            raise ValueError(f"Codebook levels must be strictly increasing, not "
                             f"{levels.tolist()}")
        if levels[-1] >= 2:
            raise ValueError(f"Codebook levels must be below 2, not {float(levels[-1])!r}")
        scaled = np.ldexp(levels, LEVEL_FRAC_BITS)
        if (scaled != np.round(scaled)).any():
            raise ValueError(f"Codebook levels must be multiples of 2^-{LEVEL_FRAC_BITS}, not "
                             f"{levels.tolist()}")
        object.__setattr__(self, "levels", tuple(float(v) for v in levels))

    @property
    def n_bits(self):
        """Width of a level index, ``N``."""
        return len(self.levels).bit_length() - 1

    @property
    def bits(self):
        """Width of an element code: sign and index."""
        return self.n_bits + 1

    @property
    def emax(self):
        """Exponent of the top of the levels' range, ``[0, 2)``: the codebook's ``emax``."""
        return 0

    @property
    def level_codes(self):
        """The levels as :data:`LEVEL_BITS`-bit integers (units of 2^-8)."""
        return tuple(int(v * (1 << LEVEL_FRAC_BITS)) for v in self.levels)

    @property
    def thresholds(self):
        """The ``2^N - 1`` midpoints between adjacent levels (float64, exact)."""
        levels = np.asarray(self.levels)
        return (levels[:-1] + levels[1:]) / 2

    def __str__(self):
        return self.name


def uniform(n_bits):
    """Uniform levels ``k / 2^(N-1)``, ``k = 0 .. 2^N - 1``: the magnitudes of ``int{N+1}``."""
    n_bits = _check_n_bits(n_bits)
    return Codebook(tuple(k / (1 << (n_bits - 1)) for k in range(1 << n_bits)),
                    name=f"uniform{n_bits}")


def log(n_bits):
    """0 and the top ``2^N - 1`` of the powers of two and their midpoints:
    ``1.5, 1, 0.75, 0.5, 0.375, ...``."""
    n_bits = _check_n_bits(n_bits)
    count = (1 << n_bits) - 1
    levels = [1.5 * 2.0 ** -(j // 2) if j % 2 == 0 else 2.0 ** -(j // 2) for j in range(count)]
    return Codebook(tuple([0.0] + levels[::-1]), name=f"log{n_bits}")


def block_magnitudes(x, block=32):
    """The scaled magnitudes ``t = |x| / 2^E`` that a codebook sees: ``E`` is the exponent of
    the largest finite magnitude of each block of the last axis (clamped to -127..127, as
    MX scales are); blocks with a NaN or Inf are left out. Returns a flat float64 array."""
    from .mx import _blocks, check_block, SCALE_EMAX
    block = check_block(block)
    blocks = _blocks(x, block)
    blocks = blocks.reshape(-1, block)
    blocks = blocks[np.isfinite(blocks).all(axis=-1)]
    a = np.abs(blocks)
    peak = a.max(axis=-1, initial=0.0)
    _, e2 = np.frexp(peak)
    exponent = np.clip(np.where(peak > 0, e2 - 1, -SCALE_EMAX), -SCALE_EMAX, SCALE_EMAX)
    return np.ldexp(a, -exponent[:, None]).reshape(-1)


def fit_codebook(samples, n_bits, *, block=32, iterations=100, name=None):
    """A codebook fitted to ``samples`` by Lloyd-Max (deterministic).

    The samples are cut into blocks of ``block`` along their last axis and scaled as a
    codebook element sees them (:func:`block_magnitudes`). The first level is held at 0; the
    others start at evenly spaced quantiles of the non-zero magnitudes and move to the mean
    of their cells (thresholds at midpoints) for ``iterations`` rounds or until they stop
    moving. The result is rounded to multiples of 2^-8 and kept strictly increasing.
    """
    n_bits = _check_n_bits(n_bits)
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) \
            or iterations < 1:
        raise ValueError(f"Iterations must be a positive integer, not {iterations!r}")
    t = np.sort(block_magnitudes(samples, block))
    if t.size == 0 or t[-1] == 0:
        raise ValueError("Samples must hold at least one finite non-zero value")
    count = 1 << n_bits
    nonzero = t[t > 0]
    levels = np.concatenate([[0.0], np.quantile(nonzero, (np.arange(1, count) - 0.5)
                                                / (count - 1))])
    prefix = np.concatenate([[0.0], np.cumsum(t)])
    for _ in range(iterations):
        bounds = np.searchsorted(t, (levels[:-1] + levels[1:]) / 2, side="right")
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [t.size]])
        sizes = ends - starts
        means = np.divide(prefix[ends] - prefix[starts], sizes, out=levels.copy(),
                          where=sizes > 0)
        means[0] = 0.0
        means = np.maximum.accumulate(means)
        if np.allclose(means, levels, rtol=0, atol=2.0 ** -(LEVEL_FRAC_BITS + 4)):
            levels = means
            break
        levels = means
    step = 2.0 ** -LEVEL_FRAC_BITS
    codes = np.round(levels / step).astype(np.int64)
    codes[0] = 0
    top = (2 << LEVEL_FRAC_BITS) - 1
    for j in range(1, count):               # strictly increasing, room left for the rest
        codes[j] = min(max(codes[j], codes[j - 1] + 1), top - (count - 1 - j))
    return Codebook(tuple(codes * step), name=name or f"fitted{n_bits}")


def _check_codebook(codebook):
    if not isinstance(codebook, Codebook):
        raise TypeError(f"Codebook must be a Codebook, not {codebook!r}")
    return codebook


def encode_codebook(x, codebook):
    """Codes ``sign << N | index`` of the values ``x`` (already scaled by ``2^-E``): ``index``
    of the level nearest to ``|x|``, ties to the lower level. NaN is not allowed."""
    codebook = _check_codebook(codebook)
    x = np.asarray(x, dtype=np.float64)
    if np.isnan(x).any():
        raise ValueError("Codebook encoding of NaN is undefined")
    index = np.searchsorted(codebook.thresholds, np.abs(x), side="left")
    dtype = np.uint8
    return (np.signbit(x).astype(dtype) << codebook.n_bits | index.astype(dtype))


def decode_codebook(codes, codebook):
    """The float64 values ``(-1)^sign * level[index]`` of codebook element codes."""
    codebook = _check_codebook(codebook)
    codes = np.asarray(codes).astype(np.int64)
    n = codebook.n_bits
    levels = np.asarray(codebook.levels)
    magnitude = levels[codes & ((1 << n) - 1)]
    return np.where((codes >> n) & 1, -magnitude, magnitude)
