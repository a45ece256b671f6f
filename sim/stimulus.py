"""Test data with every edge class a number-format core must survive.

:func:`float_blocks` makes ``(n_blocks, block)`` arrays of a float format, each block drawn
from one class: random values over a wide exponent range, ReLU-like activations, ±0,
subnormals, ±Inf, NaN, the largest finite value, all-zero blocks, one huge outlier among small
values, and exact rounding ties of the element format after MX scaling.
"""

import ml_dtypes
import numpy as np

import golden


__all__ = ["NUMPY_TYPES", "BITS_TYPES", "cast_to", "float_bits", "from_bits", "EDGE_CLASSES",
           "float_blocks", "OUTLIER_CLASSES", "outlier_blocks"]


NUMPY_TYPES = {"fp32": np.float32, "fp16": np.float16, "bf16": ml_dtypes.bfloat16}
BITS_TYPES = {"fp32": np.uint32, "fp16": np.uint16, "bf16": np.uint16}


def cast_to(x, fmt):
    """``x`` rounded (to nearest even) to the NumPy type of ``fmt`` (fp32, fp16 or bf16)."""
    return np.asarray(x).astype(NUMPY_TYPES[fmt])


def float_bits(x, fmt):
    """Bit patterns of ``x`` in ``fmt`` as unsigned integers."""
    return cast_to(x, fmt).view(BITS_TYPES[fmt])


def from_bits(bits, fmt):
    return np.asarray(bits).astype(BITS_TYPES[fmt]).view(NUMPY_TYPES[fmt])


EDGE_CLASSES = ("random", "relu", "zeros", "signed_zeros", "subnormal", "inf", "nan",
                "max_finite", "outlier", "ties", "tiny_and_huge")


def float_blocks(n_blocks, block, in_format, elem, rng, classes=EDGE_CLASSES):
    """``(n_blocks, block)`` array of ``in_format`` values, each block of one edge class
    (chosen at random from ``classes``); ties are exact ties of ``elem`` after MX scaling."""
    fmt = golden.resolve_format(in_format)
    elem = golden.resolve_format(elem)
    dtype = NUMPY_TYPES[in_format]
    kinds = rng.choice(len(classes), size=n_blocks)
    out = np.zeros((n_blocks, block), dtype=np.float64)
    max_finite = fmt.max_finite
    min_normal = 2.0 ** fmt.emin
    min_sub = 2.0 ** (fmt.emin - fmt.man_bits)
    low_exp, high_exp = fmt.emin - fmt.man_bits, fmt.max_exp_field - fmt.bias
    for index, name in enumerate(classes):
        rows = np.nonzero(kinds == index)[0]
        if rows.size == 0:
            continue
        shape = (rows.size, block)
        if name == "random":
            exps = rng.integers(low_exp, high_exp + 1, size=(rows.size, 1))
            spread = rng.integers(-12, 1, size=shape)
            values = rng.uniform(1, 2, size=shape) * np.exp2(np.clip(exps + spread, low_exp,
                                                                     high_exp))
            values *= rng.choice([-1.0, 1.0], size=shape)
        elif name == "relu":
            values = np.maximum(0, rng.standard_normal(shape)) * np.exp2(
                rng.integers(-8, 8, size=(rows.size, 1)))
        elif name == "zeros":
            values = np.zeros(shape)
        elif name == "signed_zeros":
            values = rng.choice([0.0, -0.0], size=shape)
        elif name == "subnormal":
            values = rng.integers(0, 1 << fmt.man_bits, size=shape) * min_sub
            values *= rng.choice([-1.0, 1.0], size=shape)
        elif name in ("inf", "nan"):
            values = rng.standard_normal(shape)
            special = np.inf if name == "inf" else np.nan
            values[np.arange(rows.size), rng.integers(0, block, rows.size)] = special
            values *= rng.choice([-1.0, 1.0], size=shape)
        elif name == "max_finite":
            values = rng.uniform(-1, 1, size=shape) * max_finite
            values[np.arange(rows.size), rng.integers(0, block, rows.size)] = \
                rng.choice([-max_finite, max_finite], size=rows.size)
        elif name == "outlier":
            values = rng.standard_normal(shape) * 2.0 ** -6
            values[np.arange(rows.size), rng.integers(0, block, rows.size)] = \
                rng.choice([-1, 1], size=rows.size) * 2.0 ** rng.integers(6, 30, rows.size)
        elif name == "ties":
            # The block maximum fixes E; every other element is an exact midpoint between two
            # neighbouring element values (when the input format can hold it).
            top = rng.integers(-20, 20, size=(rows.size, 1))
            shared = top - elem.emax
            if elem.twos_complement:
                steps = rng.integers(0, 1 << elem.man_bits, size=shape)
                quantum = np.exp2(shared + elem.emin - elem.man_bits) * np.ones(shape)
            else:
                lead = rng.integers(elem.emin, elem.emax + 1, size=shape)
                quantum = np.exp2(shared + np.maximum(lead, elem.emin) - elem.man_bits)
                steps = rng.integers(1 << elem.man_bits, 1 << (elem.man_bits + 1), size=shape)
            values = (steps + 0.5) * quantum * rng.choice([-1.0, 1.0], size=shape)
            values = np.clip(values, -0.99 * 2.0 ** top, 0.99 * 2.0 ** top)
            values[:, 0] = 2.0 ** top[:, 0]
        elif name == "tiny_and_huge":
            values = rng.choice([min_sub, min_normal, max_finite, -min_sub, 0.0], size=shape)
        else:
            raise ValueError(f"Unknown edge class {name!r}")
        out[rows] = values
    with np.errstate(over="ignore"):
        return np.clip(out, -max_finite, max_finite, where=np.isfinite(out), out=out).astype(dtype)


OUTLIER_CLASSES = ("laplace", "student_t", "equal_maxima", "negative_outliers",
                   "overflowing_outliers", "few_nonzero", "codebook_ties")


def outlier_blocks(n_blocks, block, in_format, k, rng, codebook=None,
                   classes=OUTLIER_CLASSES):
    """``(n_blocks, block)`` array of ``in_format`` values for outlier and codebook cores,
    each block of one class: heavy-tailed activations (Laplace, Student-t with 3 degrees of
    freedom, at a random scale per block), ``k + 1`` or more equal largest magnitudes, ``k``
    negative outliers, outliers far beyond any record's range, fewer than ``k`` non-zero
    elements, and (with ``codebook``) elements exactly on the codebook's thresholds after
    scaling (where the input format can hold them)."""
    kinds = rng.choice(len(classes), size=n_blocks)
    out = np.zeros((n_blocks, block))
    thresholds = np.asarray(codebook.thresholds) if codebook is not None else \
        np.asarray(golden.uniform(3).thresholds)
    for index, name in enumerate(classes):
        rows = np.nonzero(kinds == index)[0]
        if rows.size == 0:
            continue
        shape = (rows.size, block)
        scale = np.exp2(rng.integers(-20, 20, size=(rows.size, 1)).astype(np.float64))
        every = np.arange(rows.size)
        if name == "laplace":
            values = rng.laplace(size=shape) * scale
        elif name == "student_t":
            values = rng.standard_t(3, size=shape) * scale
        elif name == "equal_maxima":
            values = rng.uniform(-1, 1, size=shape) * scale
            top = rng.uniform(1, 2, size=(rows.size, 1)) * scale
            for _ in range(k + 1 + int(rng.integers(0, 2))):
                where = rng.integers(0, block, size=rows.size)
                values[every, where] = top[:, 0] * rng.choice([-1.0, 1.0], size=rows.size)
        elif name == "negative_outliers":
            values = rng.standard_normal(shape) * scale
            for _ in range(max(k, 1)):
                where = rng.integers(0, block, size=rows.size)
                values[every, where] = -np.abs(values[every, where]) * \
                    np.exp2(rng.integers(3, 12, size=rows.size))
        elif name == "overflowing_outliers":
            values = rng.standard_normal(shape) * 2.0 ** -40
            for _ in range(max(k, 1)):
                where = rng.integers(0, block, size=rows.size)
                values[every, where] = rng.choice([-1.0, 1.0], size=rows.size) * \
                    np.exp2(rng.integers(20, 60, size=rows.size))
        elif name == "few_nonzero":
            values = np.zeros(shape)
            for _ in range(max(k - 1, 0)):
                where = rng.integers(0, block, size=rows.size)
                values[every, where] = rng.standard_normal(rows.size) * scale[:, 0]
        elif name == "codebook_ties":
            # the block's largest magnitude is 2^e (so E = e for a codebook), every other
            # element a threshold times 2^e
            values = rng.choice(thresholds, size=shape) * scale
            values *= rng.choice([-1.0, 1.0], size=shape)
            values[every, rng.integers(0, block, size=rows.size)] = scale[:, 0]
            for _ in range(k):
                where = rng.integers(0, block, size=rows.size)
                values[every, where] = scale[:, 0] * np.exp2(rng.integers(1, 6, rows.size))
        else:
            raise ValueError(f"Unknown outlier class {name!r}")
        out[rows] = values
    fmt = golden.resolve_format(in_format)
    with np.errstate(over="ignore"):
        out = np.clip(out, -fmt.max_finite, fmt.max_finite)
    return out.astype(NUMPY_TYPES[in_format])
